"""One tiny real `loglab bench`: real aggregators and producers, seconds not minutes.

Asserts on counts and files, never on speed."""

from __future__ import annotations

import json
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
            assert r.latency.samples_total == n and r.receipt_latency.samples_total == n
            assert r.system_stats["messages_written"] == n
            assert r.system_stats.get("workers", 1) == 1  # bench default: the aggregator's own (one process)
        assert r.seq.received + r.seq.missing == n
        assert r.aggregator.cpu_s > 0 and r.derived["messages_per_s"] > 0
        # The observer stamps a line only after reading it: never before the intended send time.
        assert r.latency.summary["negative"] == 0 and r.latency.summary["min_ns"] >= 0
        assert r.memory["samples"] >= 1 and 0 < r.memory["steady_pss_bytes"] <= r.memory["peak_pss_bytes"]
        assert r.derived["peak_mem_mib"] >= r.derived["steady_mem_mib"] > 0
    udp = [r for r in res.runs if r.transport == "udp"]
    assert all(r.udp_snmp_before is not None and r.udp_snmp_after is not None for r in udp)

    for name in ("report.md", "report.html", "throughput.png", "cpu_per_message.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(120)
def test_the_observer_stamps_each_line_after_the_aggregator_received_it(tmp_path):
    # Alignment check: one observer stamp per output line, in order. A line is written after it is
    # received, so for every record the observer's stamp is at or after loglab's received_ns; a
    # stamp paired with the wrong line would break this within a few lines.
    from benchmarks.results.seqcheck import analyze_output, expected_counts
    from benchmarks.run.measure import run_measurement, stamps_path
    from benchmarks.run.observer import ObservedStamps
    from benchmarks.run.systems import make_system
    from benchmarks.results import RunRecord, Workload

    w = Workload(3, 3000, 200, 20_000.0, 1)
    system = make_system("loglab", "unixsock", tmp_path)
    record = RunRecord(system="loglab", transport="unixsock", scenario="t", workload=w, expected=w.expected)
    run_measurement(system, "unixsock", w, tmp_path, record)
    stamps = ObservedStamps.load(stamps_path(tmp_path))
    assert stamps.total_lines == 9000 and len(stamps.lines) > 1  # several reads, not one at the end
    observed = list(stamps.per_line())
    records = list(system.read_records())
    assert len(observed) == len(records) == 9000
    assert all(t >= r["received_ns"] for t, r in zip(observed, records))
    seq = analyze_output(records, expected_counts(3, 3000), observed=observed)
    assert seq.ok and len(seq.observed_latencies_ns) == len(seq.latencies_ns) == 9000
    assert min(seq.observed_latencies_ns) >= 0
