"""Regenerate tests/data/bench_results_v3/ (a small, deterministic, synthetic results directory).

``tests/data/bench_results/`` was written by schema version 1 (``point``, no ``kind``, latency from
the receipt stamp) and is kept as it is: the tests read it to check that old results still load.
This script writes the current version into ``bench_results_v3/``, which the report and compare
tests read.

Run: .venv/bin/python tests/data/make_bench_fixture.py
Two systems x three transports x two scenarios (one a 2-point rate sweep), 3 repeats + 1 warm-up,
made-up numbers with a fixed seed; 50 latency samples per run; trace data on the loglab runs.
"""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from benchmarks.results import (  # noqa: E402
    BenchParams,
    LatencyRecord,
    ProcessStats,
    ResultsWriter,
    RunRecord,
    Workload,
)
from benchmarks.results.seqcheck import analyze_output, expected_counts  # noqa: E402

ENV = {
    "hostname": "fixture", "kernel": "6.1.0-fixture", "machine": "x86_64", "cpu_model": "Fixture CPU @ 3.0GHz",
    "cpu_count": 4, "python": "3.11.2", "packages": {"loglab": "0.1.0", "orjson": "3.9.0"},
    "syslog_ng": "3.38.1", "git": {"commit": "0" * 40, "dirty": False},
    "sysctls": {"net.core.rmem_max": "212992", "net.unix.max_dgram_qlen": "512"},
}  # fmt: skip


def main(out: Path = HERE / "bench_results_v3") -> None:
    rng = random.Random(42)
    shutil.rmtree(out, ignore_errors=True)
    points = {"capacity": [Workload(2, 100, 200, 0.0, 64)], "loss": [Workload(2, 100, 200, 5000.0, 1), Workload(2, 100, 200, 20000.0, 1)]}
    params = BenchParams(repeats=3, warmups=1, systems=["loglab", "syslog-ng"], transports=["unixsock", "unixgram", "udp"],
                         scenarios=[{"name": k, "description": f"fixture {k}", "workloads": [vars(p) for p in v]} for k, v in points.items()])  # fmt: skip
    w = ResultsWriter(out, ENV, params)
    w.set_peer("syslog-ng", True, "", "3.38.1")
    w.set_tracing(True, "", "bcc")
    speed = {"loglab": 1.0, "syslog-ng": 0.6}
    for scenario, pts in points.items():
        transports = ["unixsock", "unixgram", "udp"] if scenario == "capacity" else ["unixgram", "udp"]
        for point in pts:
            for transport in transports:
                for system in ("loglab", "syslog-ng"):
                    # a warm-up, three measured repeats, then the traced run (trace data on loglab's)
                    for i, (warm, traced) in enumerate([(True, False), (False, False), (False, False), (False, False), (False, True)]):
                        repeat = 0 if warm else i - 1
                        start = 1_700_000_000_000_000_000 + rng.randrange(10**9)
                        lost = 0 if transport == "unixsock" else int(point.rate / 1000 * rng.random())
                        lines = []
                        for p in range(point.producers):
                            for s in range(point.count):
                                if s < lost:
                                    continue
                                intended = start + s * 10_000
                                lines.append({"producer": f"p{p}", "seq": s, "intended_ns": intended,
                                              "received_ns": intended + int(rng.lognormvariate(10, 0.5) / speed[system])})  # fmt: skip
                        # The observer sees each line after its receipt (the write comes after it).
                        observed = [r["received_ns"] + int(rng.lognormvariate(11, 0.5)) for r in lines]
                        seq = analyze_output(lines, expected_counts(point.producers, point.count), observed=observed)
                        window_ns = int(0.01e9 / speed[system] * (1 + 0.1 * rng.random()))
                        n = seq.received
                        run = RunRecord(
                            system=system, transport=transport, scenario=scenario, workload=point, repeat=repeat, is_warmup=warm, traced=traced,
                            window_start_ns=start, window_end_ns=start + window_ns, expected=seq.expected, sent=seq.expected,
                            seq=seq, latency=LatencyRecord.from_samples(seq.observed_latencies_ns, 50),
                            receipt_latency=LatencyRecord.from_samples(seq.latencies_ns, 50),
                            memory={"steady_pss_bytes": int((30 if system == "loglab" else 8) * 2**20 * (1 + 0.05 * rng.random())),
                                    "peak_pss_bytes": int((35 if system == "loglab" else 9) * 2**20), "samples": 5, "interval_s": 0.1},
                            aggregator=ProcessStats(n * 3e-6 / speed[system], n * 2e-6, n * 1e-6, 10, 2, 30 << 20),
                            producers=ProcessStats(n * 2e-6, n * 1e-6, n * 1e-6, 5, 1, 20 << 20),
                            udp_snmp_before={"RcvbufErrors": 0, "InErrors": 0} if transport == "udp" else None,
                            udp_snmp_after={"RcvbufErrors": lost, "InErrors": lost} if transport == "udp" else None,
                            socket={"rcvbuf": 212992},
                            trace={"producer": {"syscalls_per_message": 1.0 if point.batch == 1 else 0.02, "top": {"write": 300}},
                                   "aggregator": {"syscalls_per_message": 1.5, "top": [{"syscall": "recvfrom", "count": 600, "per_message": 1.0}]}}
                            if system == "loglab" and traced else None,
                            trace_skipped="fixture: peer not traced" if system != "loglab" and traced else None,
                        )  # fmt: skip
                        w.add_run(run)
    w.close()


if __name__ == "__main__":
    main()
