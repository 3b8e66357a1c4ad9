"""benchmarks.run.bench.plan_runs: which runs a benchmark makes, in which order."""

from __future__ import annotations

from aggregator.transports import TRANSPORT_NAMES
from benchmarks.run.bench import plan_runs, unserved
from benchmarks.run.suite import default_suite
from benchmarks.run.systems import SYSTEMS

SYSTEM_NAMES = ["loglab", "syslog-ng", "rsyslog"]


def test_default_suite_plan_warms_each_transport_once_and_traces_capacity_efficiency_and_formats_only():
    suite = default_suite()
    runs = plan_runs(suite, SYSTEM_NAMES, repeat=3, warmup=1, trace=True)
    warmups = [r for r in runs if r.warmup]
    # Every transport of the registry, for every system that serves it (a peer may lack a source).
    assert sorted((r.transport, r.system) for r in warmups) == sorted(
        (t, s) for t in TRANSPORT_NAMES for s in SYSTEM_NAMES if SYSTEMS[s].supports(t)
    )
    for w in warmups:  # before the first measured run of its transport
        first = next(i for i, r in enumerate(runs) if r.transport == w.transport and not r.warmup)
        assert runs.index(w) < first
    assert {r.scenario for r in runs if r.traced} == {"capacity", "efficiency", "formats"}
    cells = {(r.scenario, r.workload, r.transport) for r in runs}
    served = sum(SYSTEMS[s].supports(t, w.format, w.framing) for (_, w, t) in cells for s in SYSTEM_NAMES)
    assert len([r for r in runs if not r.warmup and not r.traced]) == served * 3
    # The systems alternate within a cell, so drift on the machine hits them alike.
    measured = [r for r in runs if not r.warmup and not r.traced]
    assert [r.system for r in measured[:6]] == SYSTEM_NAMES * 2


def test_formats_cells_are_planned_where_a_transport_can_carry_them_and_skipped_with_a_reason_per_peer():
    suite = [s for s in default_suite() if s.name == "formats"]
    runs = plan_runs(suite, SYSTEM_NAMES, repeat=1, warmup=0, trace=False)
    cells = {(r.transport, r.workload.format, r.workload.framing, r.system) for r in runs}
    # unixgram carries each message in its own datagram: no counted framing there, for anyone.
    assert {c for c in cells if c[0] == "unixgram"} == {("unixgram", f, "newline", s) for f in ("json", "rfc3164", "rfc5424")
                                                        for s in SYSTEM_NAMES}  # fmt: skip
    assert ("tcp", "json", "lenprefix", "loglab") in cells and ("tcp", "rfc5424", "octet", "rsyslog") in cells
    assert not [c for c in cells if c[2] == "lenprefix" and c[3] != "loglab"]
    notes = unserved(suite, SYSTEM_NAMES)
    assert "syslog-ng: its tcp json lenprefix cells were skipped: syslog-ng has no lenprefix framing" in notes
    assert not [n for n in notes if n.startswith("loglab")]


def test_no_trace_means_no_traced_runs_and_no_warmup_means_none():
    runs = plan_runs(default_suite(), ["loglab"], repeat=2, warmup=0, trace=False)
    assert not any(r.traced or r.warmup for r in runs)


def test_a_peer_without_a_source_for_a_transport_is_planned_out_and_said(monkeypatch):
    # A peer says which transports it serves; the plan leaves it out of the others, with a note.
    suite = [s for s in default_suite() if s.name != "formats"]
    monkeypatch.setattr(SYSTEMS["syslog-ng"], "INPUTS", {t: d for t, d in SYSTEMS["syslog-ng"].INPUTS.items() if t != "udp"})
    runs = plan_runs(suite, ["loglab", "syslog-ng"], repeat=1, warmup=0, trace=False)
    assert not [r for r in runs if r.system == "syslog-ng" and r.transport == "udp"]
    assert [r for r in runs if r.system == "loglab" and r.transport == "udp"]
    assert unserved(suite, ["loglab", "syslog-ng"]) == [
        "syslog-ng: its udp cells were skipped: syslog-ng has no input for udp",
        "syslog-ng: its seqpacket cells were skipped: syslog-ng has no SOCK_SEQPACKET source",
    ]
