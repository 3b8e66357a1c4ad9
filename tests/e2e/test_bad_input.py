"""Bad input end to end: raw clients against a real aggregator.

Each reject reason lands in ``<output>.rejects.jsonl`` with its reason and in the stats file's
``rejected`` counter, and the connection (or the aggregator) keeps working for the next good line.
"""

from __future__ import annotations

import json

import pytest

from aggregator.transports import TRANSPORT_NAMES, transport_names

# One connection per client, a byte stream on it: a client's close ends its partial line.
CONNECTION_STREAMS = transport_names(kind="stream", connected=True)

DATAGRAM_TRANSPORTS = transport_names(kind="datagram")
STREAM_TRANSPORTS = transport_names(kind="stream")
TRANSPORTS = TRANSPORT_NAMES

MAX_LINE = 1024
GOOD = {"producer": "test", "seq": 1, "msg": "good"}
GOOD_LINE = json.dumps(GOOD).encode()

CONTENT_REJECTS = [
    ("invalid_json", b'{"msg": "no closing brace"'),
    ("not_an_object", b'["an", "array"]'),
    ("invalid_utf8", b'{"msg": "bad \xff\xfe bytes"}'),
]


def assert_good_line_arrives(agg, transport: str, n: int = 1) -> None:
    agg.wait_lines(n)
    records = agg.records()
    assert len(records) == n
    last = records[-1]
    assert {k: v for k, v in last.items() if k not in ("received_ns", "transport")} == GOOD
    assert last["transport"] == transport
    assert type(last["received_ns"]) is int


def assert_stopped_with(agg, rejected: dict, written: int) -> None:
    assert agg.stop() == 0, agg.stderr_text()
    stats = agg.stats()
    assert stats["rejected"] == rejected
    assert stats["rejected_total"] == sum(rejected.values())
    assert stats["messages_written"] == written
    assert stats["messages_received"] == written + sum(rejected.values())
    assert len(agg.records()) == written
    assert len(agg.reject_records()) == sum(rejected.values())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("reason", "payload"), CONTENT_REJECTS, ids=[r for r, _ in CONTENT_REJECTS])
def test_bad_message_is_rejected_and_the_connection_keeps_working(lab, transport, reason, payload):
    agg = lab.aggregator(transport)
    client = lab.client(transport, agg.address)
    client.send(payload + b"\n")  # a line, or a datagram with its optional newline
    agg.wait_rejects(1)
    (reject,) = agg.reject_records()
    assert reject["reason"] == reason
    assert reject["transport"] == transport
    assert reject["length"] == len(payload)
    assert reject["truncated"] is False
    assert reject["data"] == payload.decode("utf-8", "backslashreplace")
    assert type(reject["received_ns"]) is int

    client.send(GOOD_LINE + b"\n")  # the same connection
    assert_good_line_arrives(agg, transport)
    client.close()
    assert_stopped_with(agg, {reason: 1}, written=1)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", STREAM_TRANSPORTS)
def test_line_too_long_is_rejected_and_reading_resumes_at_the_next_newline(lab, transport):
    agg = lab.aggregator(transport, "--max-line-bytes", str(MAX_LINE))
    client = lab.client(transport, agg.address)
    # Valid JSON, so only its length can be the reason; sent in pieces, as a slow writer would.
    long = b'{"pad":"' + b"x" * 5000 + b'"}'
    for i in range(0, len(long), 700):
        client.send(long[i : i + 700])
    client.send(b"\n")
    agg.wait_rejects(1)
    (reject,) = agg.reject_records()
    assert reject["reason"] == "line_too_long"
    assert reject["length"] == len(long)
    assert reject["truncated"] is True
    assert 0 < len(reject["data"]) <= 512  # a bounded prefix...
    assert long.decode().startswith(reject["data"])  # ...of the line

    client.send(GOOD_LINE + b"\n")  # the same connection
    assert_good_line_arrives(agg, transport)
    # the over-long line and a good one in a single write: only the long one is lost
    client.send(long + b"\n" + GOOD_LINE + b"\n")
    assert_good_line_arrives(agg, transport, 2)
    client.close()
    assert_stopped_with(agg, {"line_too_long": 2}, written=2)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", DATAGRAM_TRANSPORTS)
def test_datagram_over_max_line_bytes_is_rejected_as_truncated(lab, transport):
    agg = lab.aggregator(transport, "--max-line-bytes", str(MAX_LINE))
    client = lab.client(transport, agg.address)
    big = b'{"pad":"' + b"x" * 2000 + b'"}'
    client.send(big)
    agg.wait_rejects(1)
    (reject,) = agg.reject_records()
    assert reject["reason"] == "datagram_truncated"
    assert reject["length"] == len(big)  # the true size, not what fitted the buffer
    assert reject["truncated"] is True
    assert 0 < len(reject["data"]) <= 512
    assert big.decode().startswith(reject["data"])

    client.send(GOOD_LINE + b"\n")  # the same socket
    assert_good_line_arrives(agg, transport)
    client.close()
    assert_stopped_with(agg, {"datagram_truncated": 1}, written=1)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_message_of_exactly_max_line_bytes_is_accepted_with_its_newline(lab, transport):
    # --max-line-bytes is the longest accepted message; the newline that ends it is optional on
    # datagrams and a terminator on streams, so it does not count on either.
    agg = lab.aggregator(transport, "--max-line-bytes", str(MAX_LINE))
    client = lab.client(transport, agg.address)
    exact = b'{"pad":"' + b"x" * (MAX_LINE - 10) + b'"}'
    assert len(exact) == MAX_LINE
    client.send(exact + b"\n")
    client.send(GOOD_LINE + b"\n")
    agg.wait_lines(1)
    client.close()
    assert agg.stop() == 0
    stats = agg.stats()
    assert stats["rejected"] == {}
    assert stats["messages_written"] == 2
    assert [len(r["pad"]) for r in agg.records() if "pad" in r] == [MAX_LINE - 10]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", CONNECTION_STREAMS)
def test_partial_line_at_close_goes_to_rejects_and_the_aggregator_keeps_working(lab, transport):
    agg = lab.aggregator(transport)
    client = lab.client(transport, agg.address)
    client.send(GOOD_LINE + b"\n" + b'{"msg": "cut off')
    client.close()
    agg.wait_rejects(1)
    (reject,) = agg.reject_records()
    assert reject["reason"] == "partial_line_at_close"
    assert reject["data"] == '{"msg": "cut off'
    assert reject["length"] == len(b'{"msg": "cut off')
    assert_good_line_arrives(agg, transport)

    again = lab.client(transport, agg.address)
    again.send(GOOD_LINE + b"\n")
    assert_good_line_arrives(agg, transport, 2)
    again.close()
    assert_stopped_with(agg, {"partial_line_at_close": 1}, written=2)


@pytest.mark.timeout(60)
def test_partial_line_in_a_fifo_goes_to_rejects_at_shutdown(lab):
    # A FIFO is one byte stream shared by every writer: a writer leaving mid-line cannot be told
    # apart from a slow one, so the unfinished line is a reject only when the aggregator stops.
    agg = lab.aggregator("fifo")
    client = lab.client("fifo", agg.address)
    client.send(GOOD_LINE + b"\n" + b'{"msg": "cut off')
    assert_good_line_arrives(agg, "fifo")
    client.close()
    assert agg.stop() == 0
    (reject,) = agg.reject_records()
    assert reject["reason"] == "partial_line_at_close"
    assert reject["data"] == '{"msg": "cut off'
    stats = agg.stats()
    assert stats["rejected"] == {"partial_line_at_close": 1}
    assert stats["messages_written"] == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_empty_messages_are_counted_not_rejected(lab, transport):
    agg = lab.aggregator(transport)
    client = lab.client(transport, agg.address)
    if transport in DATAGRAM_TRANSPORTS:
        client.send(b"\n")
        client.send(b"")
        client.send(GOOD_LINE + b"\n")
        empty = 2
    else:
        client.send(b"\n\n" + GOOD_LINE + b"\n\n")
        empty = 3
    assert_good_line_arrives(agg, transport)
    client.close()
    assert agg.stop() == 0
    stats = agg.stats()
    assert stats["empty_lines"] == empty
    assert stats["rejected"] == {}
    assert stats["messages_written"] == 1
    assert agg.reject_records() == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", CONNECTION_STREAMS)
def test_every_reason_on_one_connection_in_one_write(lab, transport):
    agg = lab.aggregator(transport, "--max-line-bytes", str(MAX_LINE))
    client = lab.client(transport, agg.address)
    lines = [GOOD_LINE]
    for _, payload in CONTENT_REJECTS:
        lines += [payload, GOOD_LINE]
    lines += [b"{" + b" " * 3000 + b"}", GOOD_LINE]
    client.send(b"\n".join(lines) + b"\n")
    agg.wait_lines(5)
    client.close()
    assert_stopped_with(
        agg, {"invalid_json": 1, "not_an_object": 1, "invalid_utf8": 1, "line_too_long": 1}, written=5
    )
    assert sorted(r["reason"] for r in agg.reject_records()) == ["invalid_json", "invalid_utf8", "line_too_long", "not_an_object"]
