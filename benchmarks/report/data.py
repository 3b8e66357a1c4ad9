"""What the report computes from runs: groups (one scenario and workload), per-cell spreads
(median [min–max] over repeats), ratios to the peer, and the orders transports and systems are
shown in. Shared by the content and the charts; reads only result records."""

from __future__ import annotations

from collections import defaultdict

from ..results import RunRecord, stats
from ..results.metrics import syscalls_per_message, trace_side  # noqa: F401  (the report's names for them)

PEER = "syslog-ng"
OWN = "loglab"
SYSTEM_STYLE = {OWN: {"hatch": "", "ls": "-"}, PEER: {"hatch": "//", "ls": "--"}, "rsyslog": {"hatch": "..", "ls": ":"}}

try:  # the registry's order; the report must still work from results alone
    from aggregator.transports import TRANSPORTS

    TRANSPORT_ORDER = list(TRANSPORTS)
    DATAGRAM = {n for n, t in TRANSPORTS.items() if t.kind == "datagram"}
except Exception:  # pragma: no cover
    TRANSPORT_ORDER, DATAGRAM = [], set()


def group_key(r: RunRecord) -> tuple:
    p = r.workload
    return (r.scenario, p.producers, p.count, p.size, p.rate, p.batch, p.per_connection, p.format, p.framing)


def groups_of(runs: list[RunRecord]) -> dict[tuple, list[RunRecord]]:
    out: dict[tuple, list[RunRecord]] = defaultdict(list)
    for r in runs:
        if r.workload is not None:  # runs without producers (the query scenario) have a part of their own
            out[group_key(r)].append(r)
    return dict(out)


def top_rate_runs(measured: list[RunRecord], scenario: str, system: str = OWN) -> dict[str, list[RunRecord]]:
    """transport -> the measured runs of ``scenario`` by ``system`` (its highest-rate point when swept)."""
    sel = [r for r in measured if r.scenario == scenario and r.system == system and r.workload]
    if not sel:
        return {}
    top = max(r.workload.offered_rate for r in sel)
    out: dict[str, list[RunRecord]] = defaultdict(list)
    for r in sel:
        if r.workload.offered_rate == top:
            out[r.transport].append(r)
    return dict(out)


def group_label(runs: list[RunRecord]) -> str:
    return f"{runs[0].scenario}: {runs[0].workload.label()}"


def color(transport: str) -> str:
    """One colour per transport in every chart (the system is told by line style / hatch)."""
    i = TRANSPORT_ORDER.index(transport) if transport in TRANSPORT_ORDER else len(TRANSPORT_ORDER) + hash(transport) % 3
    return f"C{i % 10}"


def order(names) -> list[str]:
    names = set(names)
    return [t for t in TRANSPORT_ORDER if t in names] + sorted(names - set(TRANSPORT_ORDER))


def systems(runs) -> list[str]:
    s = {r.system for r in runs}
    return [x for x in (OWN, PEER) if x in s] + sorted(s - {OWN, PEER})


def metric(runs: list[RunRecord], system: str, transport: str, fn) -> stats.Spread | None:
    return stats.spread(fn(r) for r in runs if r.system == system and r.transport == transport and r.status == "ok")


def derived(key):
    return lambda r: r.derived.get(key)


def latency(key):
    return lambda r: (r.latency.summary.get(key) if r.latency else None)


def loss_pct(r):
    v = r.derived.get("loss_fraction")
    return None if v is None else v * 100




def ratio(runs, transport, key) -> stats.Ratio | None:
    a = metric(runs, OWN, transport, derived(key))
    b = metric(runs, PEER, transport, derived(key))
    return stats.ratio(a, b) if a and b else None
