"""One tiny real `loglab bench`: real aggregators and producers, seconds not minutes.

Asserts on counts and files, never on speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.results import SCHEMA_VERSION, load_results

LOGLAB = str(Path(sys.executable).parent / "loglab")


@pytest.mark.timeout(180)
def test_tiny_bench_writes_results_runs_and_a_report(tmp_path):
    out = tmp_path / "results"
    # capacity at scale 0.004: 4 producers x 600 messages (unixsock) or x 200 (udp); one warm-up,
    # two repeats.
    proc = subprocess.run(
        [LOGLAB, "bench", "--transports", "unixsock,udp", "--scenarios", "capacity", "--scale", "0.004",
         "--repeat", "2", "--warmup", "1", "--peer", "none", "--no-trace", "--out", str(out)],
        capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "[6/6]" in proc.stderr  # progress: one line per run (2 transports x (1 warm-up + 2 repeats))

    index = json.loads((out / "results.json").read_text())
    assert index["schema_version"] == SCHEMA_VERSION and index["complete"] is True
    assert index["tracing"]["enabled"] is False and "no-trace" in index["tracing"]["reason"]
    assert len(index["runs"]) == 6 and all((out / r["file"]).exists() for r in index["runs"])
    assert index["environment"]["cpu_count"] >= 1 and "sysctls" in index["environment"]

    res = load_results(out)
    assert len(res.measured()) == 4 and sum(r.is_warmup for r in res.runs) == 2
    for r in res.runs:
        assert r.status == "ok" and r.errors == []
        n = 2400 if r.transport == "unixsock" else 800
        assert r.expected == n and r.sent == n
        assert r.seq.duplicates == 0
        if r.transport == "unixsock":  # reliable: every message exactly once, every latency sample kept
            assert r.seq.received == n and r.seq.missing == 0
            assert r.latency.samples_total == n
            assert r.system_stats["messages_written"] == n
            assert r.system_stats.get("workers", 1) == len(os.sched_getaffinity(0))  # bench default: one per CPU
        assert r.seq.received + r.seq.missing == n
        assert r.aggregator.cpu_s > 0 and r.derived["messages_per_s"] > 0
    udp = [r for r in res.runs if r.transport == "udp"]
    assert all(r.udp_snmp_before is not None and r.udp_snmp_after is not None for r in udp)

    for name in ("report.md", "report.html", "throughput.png", "cpu_per_message.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
