"""The output and rejects files through a running aggregator: a torn tail repaired at start, a
symlink at either path refused. (The sink itself is unit-tested in tests/unit/test_sink.py.)"""

from __future__ import annotations

import json

import pytest

from aggregator.sink import rejects_path_for
from benchmarks.processes import AGGREGATOR, run_cli

WHOLE = b'{"seq":0}\n{"seq":1}\n'


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


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", ["unixsock", "unixgram"])
def test_idle_flush_writes_a_line_long_before_the_flush_interval(lab, transport):
    """With --idle-flush, a line reaches the file when the loop goes quiet, not when the (here
    hour-long) --flush-interval ends: without the option this wait would time out."""
    agg = lab.aggregator(transport, "--idle-flush", "--flush-interval", 3600)
    client = lab.client(transport, agg.address)
    client.send(b'{"n":1}\n')
    agg.wait_lines(1, timeout=20)
    client.send(b'{"n":2}\n')
    agg.wait_lines(2, timeout=20)
    client.close()
    assert [r["n"] for r in agg.records()] == [1, 2]
