"""The sink: whole lines only, torn tails repaired at start, symlinks refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aggregator.framing import TORN_LINE_AT_START, Reject
from aggregator.sink import OutputSink, SinkError, rejects_path_for
from benchmarks.processes import AGGREGATOR, run_cli

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


@pytest.mark.timeout(60)
def test_aggregator_repairs_a_torn_output_at_start(lab, tmp_path):
    out = tmp_path / "logs" / "aggregated_logs.jsonl"
    out.parent.mkdir()
    out.write_bytes(WHOLE + b'{"seq":2,"msg":"cut')
    agg = lab.aggregator("unixsock", output=out)
    client = lab.client("unixsock", agg.address)
    client.send(b'{"seq":3}\n')
    agg.wait_lines(3)
    client.close()
    assert agg.stop() == 0, agg.stderr_text()
    assert out.read_bytes().startswith(WHOLE)
    assert [json.loads(line)["seq"] for line in out.read_bytes().splitlines()] == [0, 1, 3]
    (reject,) = agg.reject_records()
    assert agg.rejects == out.parent / "aggregated_logs.rejects.jsonl"
    assert reject["reason"] == "torn_line_at_start"
    assert reject["data"] == '{"seq":2,"msg":"cut'
    assert reject["length"] == 19
    stats = agg.stats()
    assert stats["rejected"] == {"torn_line_at_start": 1}
    assert stats["messages_written"] == 1


# -- symlinks ----------------------------------------------------------------------------------


def test_sink_refuses_an_output_symlink(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"precious\n")
    link = tmp_path / "out.jsonl"
    link.symlink_to(target)
    with pytest.raises(SinkError, match="symlink, never followed"):
        open_sink(link)
    assert target.read_bytes() == b"precious\n"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", ["output", "rejects"])
def test_aggregator_refuses_a_symlink_at_the_output_or_rejects_path_for(lab, tmp_path, which):
    target = tmp_path / "target"
    target.write_bytes(b"precious no newline")  # a followed symlink would be 'repaired' too
    out = tmp_path / "out.jsonl"
    link = out if which == "output" else rejects_path_for(out)
    link.symlink_to(target)
    result = run_cli(AGGREGATOR, "unixsock", "--address", lab.address_for("unixsock"), "--output", out)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "symlink" in result.stderr
    assert str(link) in result.stderr, f"the error must name the offending path {link}:\n{result.stderr}"
    assert target.read_bytes() == b"precious no newline"
    assert link.is_symlink()
