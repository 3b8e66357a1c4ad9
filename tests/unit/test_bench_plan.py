"""benchmarks.run.bench.plan_runs: which runs a benchmark makes, in which order."""

from __future__ import annotations

from aggregator.transports import TRANSPORT_NAMES
from benchmarks.run.bench import plan_runs, unserved
from benchmarks.run.suite import default_suite
from benchmarks.run.systems import SYSTEMS


def test_default_suite_plan_warms_each_transport_once_and_traces_capacity_and_efficiency_only():
    suite = default_suite()
    runs = plan_runs(suite, ["loglab", "syslog-ng"], repeat=3, warmup=1, trace=True)
    warmups = [r for r in runs if r.warmup]
    # Every transport of the registry, for every system that serves it (a peer may lack a source).
    assert sorted((r.transport, r.system) for r in warmups) == sorted(
        (t, s) for t in TRANSPORT_NAMES for s in ("loglab", "syslog-ng") if SYSTEMS[s].supports(t)
    )
    for w in warmups:  # before the first measured run of its transport
        first = next(i for i, r in enumerate(runs) if r.transport == w.transport and not r.warmup)
        assert runs.index(w) < first
    assert {r.scenario for r in runs if r.traced} == {"capacity", "efficiency"}
    cells = {(r.scenario, r.workload, r.transport) for r in runs}
    served = sum(SYSTEMS[s].supports(t) for (_, _, t) in cells for s in ("loglab", "syslog-ng"))
    assert len([r for r in runs if not r.warmup and not r.traced]) == served * 3
    # The two systems alternate within a cell, so drift on the machine hits both alike.
    measured = [r for r in runs if not r.warmup and not r.traced]
    assert [r.system for r in measured[:4]] == ["loglab", "syslog-ng", "loglab", "syslog-ng"]


def test_no_trace_means_no_traced_runs_and_no_warmup_means_none():
    runs = plan_runs(default_suite(), ["loglab"], repeat=2, warmup=0, trace=False)
    assert not any(r.traced or r.warmup for r in runs)


def test_a_peer_without_a_source_for_a_transport_is_planned_out_and_said(monkeypatch):
    # A peer says which transports it serves; the plan leaves it out of the others, with a note.
    monkeypatch.setattr(SYSTEMS["syslog-ng"], "supports", staticmethod(lambda t: t != "udp"))
    runs = plan_runs(default_suite(), ["loglab", "syslog-ng"], repeat=1, warmup=0, trace=False)
    assert not [r for r in runs if r.system == "syslog-ng" and r.transport == "udp"]
    assert [r for r in runs if r.system == "loglab" and r.transport == "udp"]
    assert unserved(default_suite(), ["loglab", "syslog-ng"]) == ["syslog-ng has no udp source: its udp cells were skipped"]
