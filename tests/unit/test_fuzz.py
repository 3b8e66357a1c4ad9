"""Fuzzing the framing and validation path (hypothesis, bounded budget; derandomized so the suite
is reproducible). Invariants for any input bytes cut into any reads:

* nothing raises;
* every framed line is either written (exactly one output line, a JSON object holding the two
  added fields), rejected with a known reason and a bounded prefix, or counted as empty;
* bytes are conserved: framed lines + rejected lengths + newlines = bytes in (stream framing).

A last test throws seeded random garbage at a live aggregator and checks its counters add up.
"""

from __future__ import annotations

import json
import math

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.framing import (
    REJECT_PREFIX_BYTES,
    REJECT_REASONS,
    frame_datagram,
)
from aggregator.transports import transport_names

DATAGRAM = transport_names(kind="datagram")

BUDGET = settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=20)


@st.composite
def hostile_lines(draw) -> bytes:
    """Mostly JSON-shaped bytes, then mutated: the inputs most likely to reach deep into the path."""
    kind = draw(st.sampled_from(["raw", "json", "mutated"]))
    if kind == "raw":
        return draw(st.binary(max_size=300))
    data = orjson.dumps(draw(json_values))
    if kind == "mutated" and data:
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        data = bytes(data)
    return data


def _check_encoded(hot_path, lines: list[bytes], rejects: list, transport: str) -> int:
    out: list[bytes] = []
    extra = {"peer_pid": 1, "peer_uid": 2, "peer_gid": 3}
    written, empty = hot_path.encode_lines(lines, 123, transport, out, rejects, extra)
    text = b"".join(out)
    produced = text.split(b"\n")
    assert produced.pop() == b""  # ends with a newline
    assert len(produced) == written
    for line in produced:
        obj = orjson.loads(line)
        assert type(obj) is dict and obj["received_ns"] == 123 and obj["transport"] == transport
        assert obj["peer_uid"] == 2
    for r in rejects:
        assert r.reason in REJECT_REASONS and len(r.data) <= REJECT_PREFIX_BYTES and r.length >= len(r.data)
    return written + empty


@BUDGET
@given(parts=st.lists(hostile_lines(), max_size=12), cuts=st.lists(st.integers(0, 4000), max_size=8),
       max_line=st.integers(1, 400), trailing=st.booleans())
def test_any_bytes_in_any_reads_are_written_rejected_or_empty_and_bytes_are_conserved(hot_path, parts, cuts, max_line, trailing):
    stream = b"\n".join(parts) + (b"\n" if trailing else b"")
    framer = hot_path.LineFramer(max_line)
    lines: list[bytes] = []
    framing_rejects: list = []
    start = 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts) + [len(stream)]:
        framer.feed(stream[start:cut], lines, framing_rejects)
        start = max(start, cut)
    framer.close(framing_rejects)
    assert all(len(line) <= max_line and b"\n" not in line and b"\0" not in line for line in lines)
    terminators = stream.count(b"\n") + stream.count(b"\0")  # a NUL ends a message as a newline does
    assert sum(map(len, lines)) + sum(r.length for r in framing_rejects) + terminators == len(stream)
    content_rejects: list = []
    accounted = _check_encoded(hot_path, lines, content_rejects, "unixsock")
    assert accounted + len(content_rejects) == len(lines)


@BUDGET
@given(payload=hostile_lines() | st.binary(max_size=200), newline=st.sampled_from([b"", b"\n", b"\r\n"]))
def test_any_datagram_is_written_rejected_or_empty(hot_path, payload, newline):
    line = frame_datagram(payload + newline)
    rejects: list = []
    accounted = _check_encoded(hot_path, [line], rejects, "udp")
    assert accounted + len(rejects) == 1


@BUDGET
@given(obj=st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_any_object_is_written_as_itself_plus_the_added_fields(hot_path, obj):
    out: list[bytes] = []
    rejects: list = []
    written, _ = hot_path.encode_lines([orjson.dumps(obj)], 7, "tcp", out, rejects)
    assert (written, rejects) == (1, [])
    got = orjson.loads(b"".join(out))
    assert got == {**obj, "received_ns": 7, "transport": "tcp"}


def _orjson_verdict(line: bytes):
    """The reference: what orjson alone says of a line (the validator before msgspec)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return obj if type(obj) is dict else None


def _holds_number_beyond_a_double(line: bytes) -> bool:
    """The one documented difference: valid JSON whose number orjson cannot hold (1e999)."""
    def walk(v):
        if isinstance(v, float):
            return math.isinf(v)
        if isinstance(v, dict):
            return any(map(walk, v.values()))
        return isinstance(v, list) and any(map(walk, v))
    try:
        return walk(json.loads(line))
    except ValueError:
        return False


@BUDGET
@given(line=hostile_lines(), wrap=st.sampled_from(["", "obj", "ws"]))
def test_fast_validator_accepts_exactly_what_orjson_accepts(hot_path, line, wrap):
    # The hot path validates with msgspec plus a UTF-8 check; orjson is the reference. Wrapping puts
    # the (mutated) value inside an object, where msgspec skips it without building it.
    if wrap == "obj":
        line = b'{"k":' + line + b',"z":1}'
    elif wrap == "ws":
        line = b" " + line + b"\t"
    reference = _orjson_verdict(line)
    out: list[bytes] = []
    rejects: list = []
    written, empty = hot_path.encode_lines([line], 5, "udp", out, rejects)
    if reference is None:
        assert written == 0 or _holds_number_beyond_a_double(line), f"accepted what orjson refuses: {line!r}"
    else:
        assert (written, rejects) == (1, []), f"refused what orjson accepts: {line!r}"
        assert orjson.loads(b"".join(out)) == {**reference, "received_ns": 5, "transport": "udp"}


@pytest.mark.parametrize(
    "line",
    [b'{"a":"\xff"}', b'{"\xc0\xaf":1}', b'{"a":"\xed\xa0\x80"}', b'{"a":"\xf4\x90\x80\x80"}', b'{"a":["\xc3"]}'],
)
def test_bad_utf8_inside_a_skipped_value_is_rejected(hot_path, line):
    # msgspec does not look at the bytes of strings it skips: the UTF-8 check must catch these.
    rejects: list = []
    assert hot_path.encode_lines([line], 5, "udp", [], rejects) == (0, 0)
    assert [r.reason for r in rejects] == ["invalid_utf8"]


def test_number_beyond_a_double_is_kept_as_written_even_when_fields_are_replaced(hot_path):
    # The documented difference from orjson (see aggregator/records.py): numbers pass through.
    out: list[bytes] = []
    rejects: list = []
    assert hot_path.encode_lines([b'{"a":1e999}', b'{"a":1e999,"transport":"x"}'], 5, "udp", out, rejects) == (2, 0)
    assert out == [b'{"a":1e999,"received_ns":5,"transport":"udp"}\n'] * 2
    assert rejects == []


