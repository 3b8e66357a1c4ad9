"""The sink: whole lines only, torn tails repaired at start, symlinks refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aggregator.framing import TORN_LINE_AT_START, Reject
from aggregator.sink import OutputSink, SinkError, rejects_path_for

WHOLE = b'{"seq":0}\n{"seq":1}\n'


def open_sink(path: Path) -> OutputSink:
    return OutputSink(path, transport="unixsock")


# -- rejects path ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "rejects"),
    [
        ("aggregated_logs.jsonl", "aggregated_logs.rejects.jsonl"),
        ("/var/log/x/out.jsonl", "/var/log/x/out.rejects.jsonl"),
        ("out.log", "out.log.rejects.jsonl"),
    ],
)
def test_rejects_file_sits_beside_the_output(output, rejects):
    assert rejects_path_for(Path(output)) == Path(rejects)


# -- torn tail at start (unit) -----------------------------------------------------------------


def test_torn_last_line_is_moved_to_rejects_and_the_file_truncated(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_bytes(WHOLE + b'{"seq":2,"msg":"cut')
    sink = open_sink(out)
    try:
        assert sink.torn_at_start == [Reject(TORN_LINE_AT_START, b'{"seq":2,"msg":"cut', 19)]
        assert out.read_bytes() == WHOLE
    finally:
        sink.close()


def test_file_of_whole_lines_is_left_alone(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_bytes(WHOLE)
    sink = open_sink(out)
    sink.close()
    assert sink.torn_at_start == []
    assert out.read_bytes() == WHOLE


@pytest.mark.parametrize("content", [b"", None], ids=["empty", "missing"])
def test_empty_or_missing_output_needs_no_repair(tmp_path, content):
    out = tmp_path / "out.jsonl"
    if content is not None:
        out.write_bytes(content)
    sink = open_sink(out)
    sink.close()
    assert sink.torn_at_start == []
    assert out.read_bytes() == b""


def test_file_without_any_newline_is_truncated_to_empty(tmp_path):
    out = tmp_path / "out.jsonl"
    torn = b'{"seq":0,"msg":"never finished'
    out.write_bytes(torn)
    sink = open_sink(out)
    sink.close()
    assert sink.torn_at_start == [Reject(TORN_LINE_AT_START, torn, len(torn))]
    assert out.read_bytes() == b""


@pytest.mark.parametrize("torn_len", [65535, 65536, 65537, 200_000])
def test_torn_tail_longer_than_one_scan_block(tmp_path, torn_len):
    out = tmp_path / "out.jsonl"
    long_line = b'{"pad":"' + b"p" * 100_000 + b'"}\n'  # whole lines can be long too
    torn = b"t" * torn_len
    out.write_bytes(WHOLE + long_line + torn)
    sink = open_sink(out)
    sink.close()
    (reject,) = sink.torn_at_start
    assert reject.reason == TORN_LINE_AT_START
    assert reject.length == torn_len
    assert reject.data == torn  # whole: a torn line is moved, never cut to a prefix
    assert out.read_bytes() == WHOLE + long_line
    (record,) = [json.loads(x) for x in rejects_path_for(out).read_bytes().splitlines()]
    assert record["data"].encode() == torn and record["truncated"] is False


def test_writes_after_the_repair_append_whole_lines(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_bytes(WHOLE + b'{"seq":2')
    sink = open_sink(out)
    sink.write([b'{"seq":3}\n', b'{"seq":4}\n'])
    sink.write([])
    assert sink.close() is True
    assert out.read_bytes() == WHOLE + b'{"seq":3}\n{"seq":4}\n'


def test_rejects_are_written_as_json_lines(tmp_path):
    out = tmp_path / "out.jsonl"
    sink = open_sink(out)
    sink.write_rejects([Reject.of("invalid_utf8", b"bad \xff"), Reject("line_too_long", b"x" * 10, 99)], 123, "src")
    sink.close()
    first, second = [json.loads(line) for line in rejects_path_for(out).read_bytes().splitlines()]
    assert first == {
        "reason": "invalid_utf8", "received_ns": 123, "transport": "unixsock", "source": "src",
        "length": 5, "truncated": False, "data": "bad \\xff",
    }  # fmt: skip
    assert second["reason"] == "line_too_long"
    assert second["length"] == 99
    assert second["truncated"] is True


# -- torn tail at start (end to end) -----------------------------------------------------------


# -- symlinks ----------------------------------------------------------------------------------


def test_sink_refuses_an_output_symlink(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"precious\n")
    link = tmp_path / "out.jsonl"
    link.symlink_to(target)
    with pytest.raises(SinkError, match="symlink, never followed"):
        open_sink(link)
    assert target.read_bytes() == b"precious\n"


