"""Checks on an aggregator run that the tests and the fault scenarios share: plain functions that
raise AssertionError with a message that says what was wrong (no pytest dependency)."""

from __future__ import annotations

import os
import signal
import socket

from aggregator.transports import get_transport

from ..processes import count_lines, duplicates, seqs_by_producer


def assert_address_released(transport: str, address: str) -> None:
    """After a stop: the socket or FIFO file is gone; a connected inet listener refuses."""
    t = get_transport(transport)
    if t.address_kind == "path":
        assert not os.path.lexists(address), f"{address} left behind"
    elif t.connected:
        host, _, port = address.rpartition(":")
        with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.connect((host.strip("[]"), int(port)))
            except ConnectionRefusedError:
                return
            raise AssertionError(f"{address} still accepts connections")


def assert_sent_messages_written_once(agg, producers) -> int:
    """Every message a producer reports as sent is in the output exactly once; returns the total."""
    raw = agg.output.read_bytes()
    assert raw.endswith(b"\n"), "the output must end with a newline (whole lines only)"
    by_producer = seqs_by_producer(agg.records())
    total = 0
    for p in producers:
        sent = p.summary()["sent"]
        seqs = by_producer.get(p.id, [])
        assert duplicates(seqs) == [], f"{p.id}: duplicated"
        missing = sorted(set(range(sent)) - set(seqs))
        assert missing == [], f"{p.id}: reported {sent} sent, {len(missing)} missing from the output, first {missing[:10]}"
        assert set(seqs) <= set(range(p.count))
        total += len(seqs)
    return total


def stop_mid_stream(lab, transport: str, count: int, producer_args: list[str], agg_args: list[str], producers: int = 4):
    """An aggregator with ``producers`` producers all sending at once, SIGTERMed once some lines
    are written and while they are still going; returns (aggregator, producers) once all exited."""
    agg = lab.aggregator(transport, *agg_args)
    started = lab.producers(transport, agg.address, producers, count, *producer_args, together=True)
    agg.wait_lines(200)
    at_signal = count_lines(agg.output)
    agg.send(signal.SIGTERM)
    for p in started:
        p.wait(60)
    rc = agg.wait(20)  # the producers are done: the drain ends now, well before --drain-timeout
    assert rc == 0, agg.stderr_text()
    assert at_signal < producers * count, "the producers had finished before SIGTERM: not a mid-stream test"
    return agg, started
