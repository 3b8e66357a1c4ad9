"""unixgram keeps each sender's order in every configuration (issue 9, item 8).

Before the fix ``--workers 2`` let a second process read the shared unixgram socket under load,
and each producer had lines out of order (3-6 at the efficiency workload, ~50 flat out), while the
README promised order. One reader keeps a Unix datagram socket's queue order; so unixgram, like
the FIFO, has one reader whatever ``--workers`` says, and an explicit N > 1 is refused.
"""

from __future__ import annotations

import subprocess

import pytest

from benchmarks.processes import (
    AGGREGATOR,
    AggregatorProc,
    producer_summary,
    reap,
    short_tempdir,
    start_producer,
)


@pytest.mark.timeout(30)
def test_more_than_one_unixgram_reader_is_refused_with_the_reason(tmp_path):
    d = short_tempdir()
    try:
        result = subprocess.run([AGGREGATOR, "unixgram", "--address", str(d / "g.sock"), "--workers", "2",
                                 "--output", str(tmp_path / "o.jsonl")], capture_output=True, text=True, timeout=20)
    finally:
        import shutil

        shutil.rmtree(d, ignore_errors=True)
    assert result.returncode == 2, result
    assert "one reader" in result.stderr and "order" in result.stderr, result.stderr


@pytest.mark.timeout(120)
def test_unixgram_at_capacity_with_workers_0_keeps_every_producers_order(tmp_path):
    n = 20_000
    with AggregatorProc("unixgram", tmp_path / "agg", "--workers", 0) as agg:
        procs = [start_producer("unixgram", agg.address, f"p{i}", n, tmp_path) for i in range(4)]
        try:
            for p in procs:
                assert p.wait(90) == 0
        finally:
            reap(procs)
        agg.wait_lines(4 * n, 60)
        assert agg.stop() == 0, agg.stderr_text()
        records = agg.records()
    for i in range(4):
        seqs = [r["seq"] for r in records if r["producer"] == f"p{i}"]
        assert seqs == list(range(producer_summary(tmp_path, f"p{i}")["sent"])), f"p{i} out of order"
