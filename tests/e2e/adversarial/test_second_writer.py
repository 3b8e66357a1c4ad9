"""A second aggregator never touches a running one's files (issue 9, item 1).

Before the fix, a refused second start first ran the torn-tail repair on the live output: a write
in progress looked torn, and ``ftruncate`` cut lines out of the running aggregator's file.
"""

from __future__ import annotations

import pytest

from benchmarks.faults.scenarios import second_start
from benchmarks.processes import AGGREGATOR, AggregatorProc, Client, run_cli


@pytest.mark.timeout(60)
def test_refused_start_on_the_same_address_leaves_the_live_output_untouched(tmp_path):
    with AggregatorProc("unixsock", tmp_path / "a") as first:
        with Client("unixsock", first.address) as c:
            c.send(b'{"seq":0}\n')
            first.wait_lines(1)
        # What a write in progress looks like from outside: a line without its newline yet.
        with open(first.output, "ab") as f:
            f.write(b'{"seq":1,"msg":"being writt')
        before = first.output.read_bytes()
        result = run_cli(AGGREGATOR, "unixsock", "--address", first.address, "--output", first.output)
        assert result.returncode != 0
        assert "already listening" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert first.output.read_bytes() == before, "a refused start modified the running aggregator's output"
        assert first.running()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", ["output", "rejects"])
def test_second_writer_of_the_same_output_is_refused_and_names_the_first(tmp_path, which):
    with AggregatorProc("unixsock", tmp_path / "a") as first:
        with Client("unixsock", first.address) as c:
            c.send(b'{"seq":0}\nnot json\n')
            first.wait_lines(1)
            first.wait_rejects(1)
        out = first.output if which == "output" else tmp_path / "other.jsonl"
        if which == "rejects":
            # "out" (no .jsonl) has the same rejects file as "out.jsonl": it is refused too.
            out = first.output.with_suffix("")
        before_out, before_rej = first.output.read_bytes(), first.rejects.read_bytes()
        second = AggregatorProc("unixsock", tmp_path / "b", output=out)
        result = run_cli(*second.command)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert "another aggregator" in result.stderr and f"pid {first.pid}" in result.stderr, result.stderr
        assert first.output.read_bytes() == before_out
        assert first.rejects.read_bytes() == before_rej
        assert first.stop() == 0


@pytest.mark.timeout(120)
def test_torture_second_start_loses_nothing_under_load(tmp_path):
    (row,) = second_start(tmp_path, 0.1)
    assert row.ok, row
    assert row.lost == 0 and row.written == row.sent == row.expected, row
    assert row.figures["refused"] == row.figures["attempts"], row
