"""aggregator.framing: LineFramer, OctetFramer and LenPrefixFramer (byte streams) and frame_datagram
(message transports).

Every LineFramer test runs against each hot path implementation (the ``hot_path`` fixture):
the Python framer and the native one must frame, reject and hold exactly alike."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.framing import (
    LINE_TOO_LONG,
    PARTIAL_LINE_AT_CLOSE,
    REJECT_PREFIX_BYTES,
    LenPrefixFramer,
    LineFramer,
    OctetFramer,
    Reject,
    frame_datagram,
    lenprefix_frame,
    octet_frame,
    stream_framer,
)


def feed_all(framer, chunks) -> tuple[list[bytes], list[Reject]]:
    lines: list[bytes] = []
    rejects: list[Reject] = []
    for chunk in chunks:
        framer.feed(chunk, lines, rejects)
    return lines, rejects


def assert_bounded_prefix(reject: Reject, line: bytes, max_line: int) -> None:
    """An over-long line is kept as its first bytes: at most REJECT_PREFIX_BYTES, and at least
    what the framer had to look at to know the line was too long (how reads split the line
    decides how much of it was seen at once)."""
    assert reject.data == line[: len(reject.data)]
    assert min(REJECT_PREFIX_BYTES, max_line + 1) <= len(reject.data) <= REJECT_PREFIX_BYTES


def close(framer) -> list[Reject]:
    rejects: list[Reject] = []
    framer.close(rejects)
    return rejects


# -- LineFramer: examples --------------------------------------------------------------------


def test_one_line_per_read(hot_path):
    framer = hot_path.LineFramer(100)
    lines, rejects = feed_all(framer, [b'{"a":1}\n', b'{"b":2}\n'])
    assert lines == [b'{"a":1}', b'{"b":2}']
    assert rejects == []
    assert close(framer) == []


def test_line_split_across_reads_is_joined(hot_path):
    framer = hot_path.LineFramer(100)
    lines, rejects = feed_all(framer, [b'{"a"', b":", b"1", b"}", b"\n"])
    assert lines == [b'{"a":1}']
    assert rejects == []
    assert framer.pending_bytes == 0


def test_newline_alone_in_a_read_ends_the_held_line(hot_path):
    framer = hot_path.LineFramer(100)
    lines, _ = feed_all(framer, [b"abc", b"\n", b"def\n"])
    assert lines == [b"abc", b"def"]


def test_many_lines_per_read(hot_path):
    framer = hot_path.LineFramer(100)
    data = b"".join(b"line %d\n" % i for i in range(1000))
    lines, rejects = feed_all(framer, [data])
    assert lines == [b"line %d" % i for i in range(1000)]
    assert rejects == []


def test_many_lines_with_a_held_head_and_tail(hot_path):
    framer = hot_path.LineFramer(100)
    lines, rejects = feed_all(framer, [b"he", b"ad\nmid1\nmid2\nta", b"il\n"])
    assert lines == [b"head", b"mid1", b"mid2", b"tail"]
    assert rejects == []


def test_bytes_after_the_last_newline_are_held_until_the_next_read(hot_path):
    framer = hot_path.LineFramer(100)
    lines, _ = feed_all(framer, [b"one\ntw"])
    assert lines == [b"one"]
    assert framer.pending_bytes == 2
    framer.feed(b"o\n", lines, [])
    assert lines == [b"one", b"two"]


def test_empty_lines_are_passed_on_as_empty_bytes(hot_path):
    framer = hot_path.LineFramer(100)
    lines, rejects = feed_all(framer, [b"\n\na\n\n", b"\n"])
    assert lines == [b"", b"", b"a", b"", b""]
    assert rejects == []


def test_empty_read_changes_nothing(hot_path):
    framer = hot_path.LineFramer(100)
    lines, rejects = feed_all(framer, [b"ab", b"", b"c\n"])
    assert lines == [b"abc"]
    assert rejects == []


def test_line_of_exactly_max_line_bytes_is_accepted(hot_path):
    framer = hot_path.LineFramer(10)
    lines, rejects = feed_all(framer, [b"0123456789\n", b"01234", b"56789", b"\n"])
    assert lines == [b"0123456789", b"0123456789"]
    assert rejects == []


def test_line_one_byte_over_the_limit_is_rejected(hot_path):
    framer = hot_path.LineFramer(10)
    lines, rejects = feed_all(framer, [b"0123456789A\nok\n"])
    assert lines == [b"ok"]
    assert rejects == [Reject(LINE_TOO_LONG, b"0123456789A", 11)]


def test_over_long_line_in_one_read_is_rejected_and_the_next_line_kept(hot_path):
    framer = hot_path.LineFramer(64)
    long = b"x" * 5000
    lines, rejects = feed_all(framer, [b"before\n" + long + b"\nafter\n"])
    assert lines == [b"before", b"after"]
    assert len(rejects) == 1
    r = rejects[0]
    assert r.reason == LINE_TOO_LONG
    assert r.length == 5000
    assert r.data == long[:REJECT_PREFIX_BYTES]


def test_over_long_line_across_reads_resumes_at_the_next_newline(hot_path):
    max_line = 64
    framer = hot_path.LineFramer(max_line)
    long = bytes(range(1, 256)).replace(b"\n", b"") * 40  # 10160 bytes, no newline (nor NUL, which ends a line too)
    chunks = [b"good1\n" + long[:30]] + [long[i : i + 100] for i in range(30, len(long), 100)]
    chunks += [b"\ngood2\ngo", b"od3\n"]
    lines, rejects = feed_all(framer, [])
    for chunk in chunks:
        framer.feed(chunk, lines, rejects)
        # memory per connection stays bounded while the over-long line streams past
        assert framer.pending_bytes <= max_line
    assert lines == [b"good1", b"good2", b"good3"]
    assert len(rejects) == 1
    assert rejects[0].reason == LINE_TOO_LONG
    assert rejects[0].length == len(long)
    assert_bounded_prefix(rejects[0], long, max_line)
    assert close(framer) == []


def test_over_long_line_whose_newline_starts_the_next_read(hot_path):
    framer = hot_path.LineFramer(8)
    lines, rejects = feed_all(framer, [b"abcdefghijk", b"\nok\n"])
    assert lines == [b"ok"]
    assert rejects == [Reject(LINE_TOO_LONG, b"abcdefghijk", 11)]


def test_reject_prefix_is_bounded_even_for_a_huge_line(hot_path):
    framer = hot_path.LineFramer(1024)
    long = b"y" * 200_000
    lines, rejects = feed_all(framer, [long[:70_000], long[70_000:], b"\n{}\n"])
    assert lines == [b"{}"]
    assert len(rejects) == 1
    assert len(rejects[0].data) == REJECT_PREFIX_BYTES
    assert rejects[0].length == 200_000


def test_partial_line_at_close_goes_to_rejects(hot_path):
    framer = hot_path.LineFramer(100)
    lines, rejects = feed_all(framer, [b'{"a":1}\n{"b":'])
    assert lines == [b'{"a":1}']
    assert rejects == []
    assert close(framer) == [Reject(PARTIAL_LINE_AT_CLOSE, b'{"b":', 5)]


def test_over_long_partial_line_at_close_is_line_too_long(hot_path):
    framer = hot_path.LineFramer(10)
    feed_all(framer, [b"z" * 25])
    assert close(framer) == [Reject(LINE_TOO_LONG, b"z" * 25, 25)]


def test_close_after_whole_lines_rejects_nothing(hot_path):
    framer = hot_path.LineFramer(100)
    feed_all(framer, [b"a\nb\n"])
    assert close(framer) == []


def test_framer_is_reusable_after_close(hot_path):
    framer = hot_path.LineFramer(10)
    feed_all(framer, [b"x" * 30])
    close(framer)
    lines, rejects = feed_all(framer, [b"fresh\n"])
    assert lines == [b"fresh"]
    assert rejects == []


def test_max_line_bytes_must_be_positive(hot_path):
    with pytest.raises(ValueError):
        hot_path.LineFramer(0)


# -- LineFramer: property ----------------------------------------------------------------------

_line = st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"").replace(b"\0", b""))


@st.composite
def _chunked(draw):
    max_line = draw(st.integers(min_value=1, max_value=40))
    lines = draw(st.lists(_line, max_size=25))
    tail = draw(st.one_of(st.just(b""), _line))  # bytes after the last newline, if any
    data = b"".join(line + b"\n" for line in lines) + tail
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(data)), max_size=30)))
    bounds = [0, *cuts, len(data)]
    chunks = [data[a:b] for a, b in zip(bounds, bounds[1:])]
    return max_line, lines, tail, chunks


@settings(max_examples=400, deadline=None)
@given(_chunked())
def test_any_chunking_yields_the_original_lines_and_rejects_the_long_ones(hot_path, case):
    max_line, lines, tail, chunks = case
    framer = hot_path.LineFramer(max_line)
    got_lines: list[bytes] = []
    got_rejects: list[Reject] = []
    for chunk in chunks:
        framer.feed(chunk, got_lines, got_rejects)
        assert framer.pending_bytes <= max_line
    framer.close(got_rejects)

    assert got_lines == [line for line in lines if len(line) <= max_line]
    rejected = [line for line in lines if len(line) > max_line] + ([tail] if tail else [])
    expected = [(LINE_TOO_LONG, len(line)) for line in lines if len(line) > max_line]
    if tail:
        expected.append((LINE_TOO_LONG if len(tail) > max_line else PARTIAL_LINE_AT_CLOSE, len(tail)))
    assert [(r.reason, r.length) for r in got_rejects] == expected
    for reject, line in zip(got_rejects, rejected):
        if reject.reason == LINE_TOO_LONG:
            assert_bounded_prefix(reject, line, max_line)
        else:
            assert reject.data == line  # a partial line within the limit is kept whole


# -- frame_datagram ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b'{"a":1}', b'{"a":1}'),  # a datagram without newline is a whole message
        (b'{"a":1}\n', b'{"a":1}'),  # one trailing newline is optional and removed
        (b'{"a":1}\r\n', b'{"a":1}'),
        (b'{"a":1}\n\n', b'{"a":1}\n'),  # only one
        (b'{"a":\n1}', b'{"a":\n1}'),  # an embedded newline stays: one datagram, one message
        (b"\n", b""),
        (b"", b""),
    ],
)
def test_frame_datagram(payload, message):
    assert frame_datagram(payload) == message


@given(st.binary(max_size=200))
def test_frame_datagram_removes_at_most_one_line_ending(payload):
    framed = frame_datagram(payload)
    assert payload.startswith(framed)
    assert payload[len(framed) :] in (b"", b"\n", b"\r\n")
    if not payload.endswith(b"\r"):
        assert frame_datagram(payload + b"\n") == payload


# -- OctetFramer (RFC 6587 octet counting) and LenPrefixFramer ---------------------------------------


def test_octet_counted_messages_may_hold_newlines_and_nuls():
    framer = OctetFramer(100)
    lines, rejects = feed_all(framer, [octet_frame(b"<14>a\nb") + octet_frame(b"x\x00y") + b"\n" + octet_frame(b"")])
    assert lines == [b"<14>a\nb", b"x\x00y", b""]  # the newline between frames is skipped, not a message
    assert rejects == [] and close(framer) == []


def test_an_octet_count_over_the_limit_is_rejected_and_the_connection_goes_on():
    framer = OctetFramer(10)
    big = b"y" * 1000
    data = octet_frame(b"ok") + octet_frame(big) + octet_frame(b"after")
    lines, rejects = feed_all(framer, [data[i : i + 7] for i in range(0, len(data), 7)])
    assert lines == [b"ok", b"after"]
    assert [(r.reason, r.length, r.data) for r in rejects] == [(LINE_TOO_LONG, 1000, big[:REJECT_PREFIX_BYTES])]
    assert close(framer) == []


def test_a_sender_that_does_not_count_octets_is_read_newline_framed_from_there():
    framer = OctetFramer(100)
    lines, rejects = feed_all(framer, [b"3 abc", b"12:00 lunch\n", b'{"a":1}\n'])
    assert lines == [b"abc", b"12:00 lunch", b'{"a":1}']
    assert rejects == []


def test_octet_frame_cut_at_close_is_a_partial_line():
    framer = OctetFramer(100)
    assert feed_all(framer, [b"10 abc"]) == ([], [])
    assert [(r.reason, r.data) for r in close(framer)] == [(PARTIAL_LINE_AT_CLOSE, b"10 abc")]


def test_auto_framing_is_told_by_a_connections_first_byte():
    assert type(stream_framer("auto", ord("1"), 100)) is OctetFramer
    assert type(stream_framer("auto", ord("<"), 100)) is LineFramer
    assert type(stream_framer("auto", ord("{"), 100)) is LineFramer
    assert type(stream_framer("newline", ord("1"), 100)) is LineFramer
    assert type(stream_framer("lenprefix", ord("<"), 100)) is LenPrefixFramer


def test_lenprefix_frames_are_severity_and_payload_and_an_oversize_one_is_skipped():
    framer = LenPrefixFramer(8)
    data = lenprefix_frame(3, b"payload") + lenprefix_frame(6, b"p" * 100) + lenprefix_frame(7, b"")
    lines, rejects = feed_all(framer, [data[i : i + 3] for i in range(0, len(data), 3)])
    assert lines == [b"\x03payload", b"\x07"]
    assert [(r.reason, r.length) for r in rejects] == [(LINE_TOO_LONG, 101)]
    framer.feed(lenprefix_frame(3, b"ab")[:6], lines, rejects)
    assert [r.reason for r in close(framer)] == [PARTIAL_LINE_AT_CLOSE]


_message = st.binary(max_size=60)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(max_line=st.integers(1, 40), messages=st.lists(_message, max_size=20), counted=st.sampled_from(["octet", "lenprefix"]),
       cuts=st.lists(st.integers(0, 3000), max_size=30), tail=st.integers(0, 6))  # fmt: skip
def test_counted_frames_split_across_any_reads_yield_the_messages(max_line, messages, counted, cuts, tail):
    if counted == "octet":
        framer, frames, message_of = OctetFramer(max_line), [octet_frame(m) for m in messages], (lambda m: m)
    else:
        framer, frames, message_of = LenPrefixFramer(max_line), [lenprefix_frame(5, m) for m in messages], (lambda m: b"\x05" + m)
    data = b"".join(frames)
    last = frames[-1] if frames else b""
    partial = last[:tail] if 0 < tail < len(last) else b""  # the last frame cut short by a close
    if partial:
        data = data[: -len(last)] + partial
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    lines, rejects = feed_all(framer, [data[a:b] for a, b in zip(bounds, bounds[1:])])
    rejects += close(framer)
    assert framer.pending_bytes == 0
    whole = messages[:-1] if partial else messages
    assert lines == [message_of(m) for m in whole if len(m) <= max_line]
    expected = [(LINE_TOO_LONG, len(message_of(m))) for m in whole if len(m) > max_line]
    if partial:
        header_read = b" " in partial if counted == "octet" else len(partial) >= 4
        if header_read and len(messages[-1]) > max_line:  # skipped by its count: rejected with it
            expected.append((LINE_TOO_LONG, len(message_of(messages[-1]))))
        else:
            expected.append((PARTIAL_LINE_AT_CLOSE, len(partial)))
    assert [(r.reason, r.length) for r in rejects] == expected
    assert all(len(r.data) <= REJECT_PREFIX_BYTES for r in rejects)
