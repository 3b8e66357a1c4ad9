"""aggregator.hotpath: the native hot path against the Python reference, differentially.

The framing, records and fuzz tests run against both implementations (the ``hot_path``
fixture); here, the same inputs go through both and every observable must match: the records
written (byte for byte), the rejects (reason, prefix, length, order), the counts, the partial line
held between reads and the rejects at close. The inputs are hostile on purpose: JSON objects
written every way (whitespace, escapes, unicode, forged added fields, depth, big numbers), then
mutated, cut into arbitrary reads, with over-long lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator import hotpath, records

BUDGET = settings(max_examples=600, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
PYTHON = hotpath.IMPLEMENTATIONS["python"]


@pytest.fixture(scope="module")
def native() -> hotpath.Implementation:
    implementation = hotpath.IMPLEMENTATIONS.get("native")
    if implementation is None:
        pytest.skip(f"no native hot path in this installation: {hotpath.NATIVE_MISSING}")
    return implementation


_keys = st.sampled_from(["a", "msg", "transport", "received_ns", "peer_pid", "é", "k\u2603", ""]) | st.text(max_size=6)
_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=12) | st.sampled_from(["\ud7ff", "\U0001f600", "\x00", "\x1f", "\"\\/"]))  # fmt: skip
_values = st.recursive(_scalars, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_keys, kids, max_size=3), max_leaves=10)
_ODD_TEXT = [b'"\\ud83d\\ude00"', b'"\\ud800"', b'"\\u00e9"', b'1e999', b'-0.0E+00', b'01', b'"\xc3"', b'"\xed\xa0\x80"',
             b'"\xf4\x90\x80\x80"', b'"a\tb"', b'[' * 300 + b']' * 300, b'"\\u0000"', b'tru', b'"\\x"']  # fmt: skip


@st.composite
def lines(draw) -> bytes:
    """One line as a producer (or an attacker) might send it."""
    kind = draw(st.sampled_from(["object", "object", "object", "styled", "odd", "mutated", "raw", "blank"]))
    if kind == "raw":
        return draw(st.binary(max_size=80))
    if kind == "blank":
        return draw(st.sampled_from([b"", b" ", b"\r", b"\t \r"]))
    # Leading whitespace: the fast splice keeps it, the careful one strips it; both must agree.
    lead = draw(st.sampled_from([b"", b"", b" ", b"\t"]))
    if kind == "odd":  # a value the validators may disagree on, inside an object
        key = draw(st.sampled_from([b'"a"', b'"transport"', b'"tr\\u0061nsport"', b'"received_ns"']))
        return lead + b"{" + key + b":" + draw(st.sampled_from(_ODD_TEXT)) + draw(st.sampled_from([b"}", b',"z":1}', b"} "]))
    obj = draw(st.dictionaries(_keys, _values, max_size=5))
    if kind == "styled":
        style = draw(st.sampled_from([{"separators": (", ", ": ")}, {"indent": 1}, {"ensure_ascii": False}]))
        data = json.dumps(obj, **style).encode()
        data = draw(st.sampled_from([b"", b" ", b"\t"])) + data + draw(st.sampled_from([b"", b" ", b"\r", b" \r"]))
    else:
        data = lead + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()  # big ints too
    if kind == "mutated" and data:
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, 3))):
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
        data = bytes(buf)
    return data


def _run_stream(implementation, max_line: int, chunks: list[bytes], extra: dict | None):
    framer = implementation.LineFramer(max_line)
    seen = []
    for i in range(0, len(chunks), 2):  # two chunks per read: a read may span several recv calls
        out: list[bytes] = []
        rejects: list = []
        counts = hotpath.frame_and_encode(framer, chunks[i : i + 2], 42, "unixsock", out, rejects, extra)
        seen.append((counts, b"".join(out), rejects, framer.pending_bytes))
    at_close: list = []
    framer.close(at_close)
    return seen, at_close


@BUDGET
@given(parts=st.lists(lines(), max_size=16), cuts=st.lists(st.integers(0, 3000), max_size=6),
       max_line=st.integers(1, 600), credentials=st.booleans(), trailing=st.booleans())  # fmt: skip
def test_a_stream_gives_the_same_records_rejects_and_counts_either_way(native, parts, cuts, max_line, credentials, trailing):
    stream = b"\n".join(part.replace(b"\n", b" ") for part in parts) + (b"\n" if trailing else b"")
    bounds = [0, *sorted(c % (len(stream) + 1) for c in cuts), len(stream)]
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:])]
    extra = {"peer_pid": 7, "peer_uid": 1000, "peer_gid": 1000} if credentials else None
    assert _run_stream(native, max_line, chunks, extra) == _run_stream(PYTHON, max_line, chunks, extra)


@BUDGET
@given(batch=st.lists(lines(), max_size=12), newline_free=st.booleans(), credentials=st.booleans())
def test_framed_messages_give_the_same_records_rejects_and_counts_either_way(native, batch, newline_free, credentials):
    if newline_free:
        batch = [line.replace(b"\n", b" ") for line in batch]
    extra = {"peer_pid": 7, "peer_uid": 1000, "peer_gid": 1000} if credentials else None
    results = []
    for implementation in (native, PYTHON):
        out: list[bytes] = []
        rejects: list = []
        counts = implementation.encode_lines(list(batch), 42, "udp", out, rejects, extra, newline_free=newline_free)
        results.append((counts, b"".join(out), rejects))
    assert results[0] == results[1]


def test_valid_lines_never_reach_the_python_encoder(native):
    # The point of the native path: the Python encoder sees only what the C code could not
    # accept for certain (here: a forged added field, bad UTF-8, not an object), in order.
    handed: list[list[bytes]] = []

    def encode(batch, *args, **kwargs):
        handed.append(list(batch))
        return records.encode_lines(batch, *args, **kwargs)

    data = b'{"a":1}\n{"transport":"x"}\n{"b":"\xc3\xa9"}\n\n{"c":"\xff"}\n[1]\n{"d":{}}\n'
    out: list[bytes] = []
    rejects: list = []
    counts = hotpath.frame_and_encode(native.LineFramer(100), [data], 5, "tcp", out, rejects, None, encode)
    assert counts == (7, 4, 1)
    assert handed == [[b'{"transport":"x"}'], [b'{"c":"\xff"}', b"[1]"]]
    assert [r.reason for r in rejects] == ["invalid_utf8", "not_an_object"]
    assert [json.loads(line)["transport"] for line in b"".join(out).splitlines()] == ["tcp"] * 4


def test_line_too_long_rejects_come_before_content_rejects_of_the_same_read(native):
    # As the Python path orders them: the framer's rejects for the whole read, then the encoder's.
    for implementation in (native, PYTHON):
        rejects: list = []
        hotpath.frame_and_encode(implementation.LineFramer(8), [b"[1]\n" + b"x" * 20 + b"\n"], 5, "tcp", [], rejects)
        assert [r.reason for r in rejects] == ["line_too_long", "not_an_object"]


def _describe_with(choice: str) -> str:
    env = {**os.environ, hotpath.CHOICE_ENV: choice}
    code = "from aggregator import hotpath; print(hotpath.describe())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_the_python_path_can_be_chosen_and_says_why():
    assert _describe_with("python") == f"python ({hotpath.CHOICE_ENV}=python)"


def test_the_native_path_is_chosen_automatically_when_built(native):
    assert _describe_with("auto") == "native"
    assert hotpath.describe() in ("native", f"python ({hotpath.CHOICE_ENV}=python)")


def test_native_framer_refuses_a_non_positive_limit(native):
    with pytest.raises(ValueError):
        native.LineFramer(0)


def test_every_line_goes_to_the_encoder_when_the_input_is_not_json(native):
    # --format raw or syslog (issue 12): a valid JSON line is a message like any other there.
    handed: list[bytes] = []

    def encode(batch, *args, **kwargs):
        handed.extend(batch)
        return len(batch), 0

    counts = hotpath.frame_and_encode(native.LineFramer(100), [b'{"a":1}\n<13>hi\n'], 5, "tcp", [], [], None, encode, json=False)
    assert counts == (2, 2, 0)
    assert handed == [b'{"a":1}', b"<13>hi"]


@given(data=st.binary(max_size=300).map(lambda b: b.replace(b"\x01", b"\n").replace(b"\x02", b"\x00")),
       cuts=st.lists(st.integers(0, 300), max_size=5), max_line=st.integers(1, 40))  # fmt: skip
@settings(max_examples=300, deadline=None, derandomize=True)
def test_a_nul_ends_a_line_when_asked_as_a_newline_does(native, data, cuts, max_line):
    # For syslog clients that end messages with a NUL (issue 12's framing): the same lines,
    # rejects and held bytes as the same stream with every NUL made a newline.
    def frame(framer, stream):
        bounds = [0, *sorted(c % (len(stream) + 1) for c in cuts), len(stream)]
        lines: list[bytes] = []
        rejects: list = []
        held = []
        for a, b in zip(bounds, bounds[1:]):
            framer.feed(stream[a:b], lines, rejects)
            held.append(framer.pending_bytes)
        framer.close(rejects)
        return lines, rejects, held

    assert frame(native.LineFramer(max_line, nul_ends_line=True), data) == frame(PYTHON.LineFramer(max_line), data.replace(b"\0", b"\n"))
