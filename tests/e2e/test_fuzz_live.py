"""Seeded garbage into a live aggregator: it survives, and its counters add up (the properties of
the framing and validation themselves are in tests/unit/test_fuzz.py)."""

from __future__ import annotations

import random

import pytest

from aggregator.transports import transport_names
from benchmarks.processes import AggregatorProc, Client, count_lines

DATAGRAM = transport_names(kind="datagram")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("transport", ["unixsock", "unixgram"])
def test_live_aggregator_survives_seeded_garbage_and_its_counters_add_up(tmp_path, transport):
    rng = random.Random(20261121)
    payloads = []
    for _ in range(500):
        n = rng.randrange(0, 600)
        b = bytes(rng.randrange(256) for _ in range(n))
        if rng.random() < 0.3:
            b = b'{"k":' + b + b"}"
        # On a byte stream a newline and a NUL both end a message: neither inside one.
        payloads.append(b.replace(b"\n", b"").replace(b"\0", b"") if transport not in DATAGRAM else b)
    # The first byte of a connection chooses its framing (a digit: octet counting): a JSON line first.
    payloads.insert(0, b'{"first":true}')
    with AggregatorProc(transport, tmp_path / "agg", "--max-line-bytes", 256) as agg:
        with Client(transport, agg.address) as c:
            for p in payloads:
                c.send(p + b"\n")
            c.send(b'{"last":true}\n')
        agg.wait_lines(1)
        assert agg.stop() == 0, agg.stderr_text()
        s = agg.stats()
        assert s["messages_received"] == s["messages_written"] + s["rejected_total"]
        assert s["messages_written"] == count_lines(agg.output)
        assert s["rejected_total"] == count_lines(agg.rejects)
        assert s["messages_received"] + s["empty_lines"] == len(payloads) + 1
        assert agg.records()[-1]["last"] is True
