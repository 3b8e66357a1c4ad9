"""benchmarks.run.bench.plan_runs: which runs a benchmark makes, in which order."""

from __future__ import annotations

from benchmarks.run.bench import plan_runs
from benchmarks.run.suite import default_suite


def test_default_suite_plan_warms_each_transport_once_and_traces_capacity_and_efficiency_only():
    suite = default_suite()
    runs = plan_runs(suite, ["loglab", "syslog-ng"], repeat=3, warmup=1, trace=True)
    warmups = [r for r in runs if r.warmup]
    assert sorted((r.transport, r.system) for r in warmups) == sorted(
        (t, s) for t in ("unixsock", "unixgram", "tcp", "udp", "fifo") for s in ("loglab", "syslog-ng")
    )
    for w in warmups:  # before the first measured run of its transport
        first = next(i for i, r in enumerate(runs) if r.transport == w.transport and not r.warmup)
        assert runs.index(w) < first
    assert {r.scenario for r in runs if r.traced} == {"capacity", "efficiency"}
    cells = {(r.scenario, r.workload, r.transport) for r in runs}
    assert len([r for r in runs if not r.warmup and not r.traced]) == len(cells) * 3 * 2
    # The two systems alternate within a cell, so drift on the machine hits both alike.
    measured = [r for r in runs if not r.warmup and not r.traced]
    assert [r.system for r in measured[:4]] == ["loglab", "syslog-ng", "loglab", "syslog-ng"]


def test_no_trace_means_no_traced_runs_and_no_warmup_means_none():
    runs = plan_runs(default_suite(), ["loglab"], repeat=2, warmup=0, trace=False)
    assert not any(r.traced or r.warmup for r in runs)
