"""Issue 16's targets, judged from a bench's results: each target, per transport, met or not,
with its range over the repeats.

The targets (one run of ``loglab bench``, the same producers for every system):

* capacity at least 1.0x the raw-copy C reader (``rawcopy``) and at least 1.5x syslog-ng;
* udp loss at capacity no higher than syslog-ng's;
* CPU per message at 4 x 10,000 msg/s no higher than the raw-copy reader's, and at most 0.5x
  syslog-ng's;
* p99 latency to the file under 1 ms at 5 x 2,000 msg/s on the Unix transports;
* peak memory (PSS) at most 40 MiB at capacity.

A verdict is read off the ranges, never the medians alone: **met** when every repeat pairing meets
it (a ratio's whole range, ``stats.ratio``: the worst loglab repeat against the best reference
repeat), **not met** when none does, and **not settled** when the range straddles the target.
Idle memory (at most 20 MiB per receiving process) is not a bench figure: ``benchmarks/serving_memory.py``
measures it, and the README's findings:idle-memory section renders it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..results import RunRecord, stats
from ..results.metrics import LOSS, MESSAGES_PER_S, P99, PEAK_MEMORY, RECEIVER_CPU, Metric
from .blocks import Heading, Paragraph, Table
from .data import OWN, PEER, order, top_rate_runs

REFERENCE = "rawcopy"

try:  # the registry says which transports are Unix ones; the report still renders from results alone
    from aggregator.transports import TRANSPORTS

    UNIX = {n for n, t in TRANSPORTS.items() if t.address_kind == "path"}
except Exception:  # pragma: no cover
    UNIX = {"unixsock", "unixgram", "fifo", "seqpacket"}

MET, NOT_MET, UNSETTLED = "met", "NOT met", "not settled (range straddles the target)"


@dataclass(frozen=True)
class Target:
    label: str
    scenario: str
    metric: Metric
    against: str | None  # another system (a ratio), or None (an absolute bound)
    bound: float  # the ratio, or the absolute value, not to cross
    at_least: bool  # True: the figure must be >= bound; False: <= bound (or < for latency)
    transports: frozenset | None = None  # None: every transport both systems ran
    beside: str | None = None  # an absolute bound: a system whose figure is shown for context (not judged)

    def unit(self) -> str:
        return "x" if self.against else ""


TARGETS = (
    Target("capacity >= 1.0x rawcopy", "capacity", MESSAGES_PER_S, REFERENCE, 1.0, True),
    Target("capacity >= 1.5x syslog-ng", "capacity", MESSAGES_PER_S, PEER, 1.5, True),
    Target("udp loss at capacity <= syslog-ng's", "capacity", LOSS, PEER, 0.0, False, frozenset({"udp"})),
    Target("CPU/msg at 4x10,000/s <= rawcopy's", "efficiency", RECEIVER_CPU, REFERENCE, 1.0, False),
    Target("CPU/msg at 4x10,000/s <= 0.5x syslog-ng's", "efficiency", RECEIVER_CPU, PEER, 0.5, False),
    Target("p99 to file at 5x2,000/s < 1 ms (Unix transports)", "latency", P99, None, 1000.0, False, frozenset(UNIX), REFERENCE),
    Target("peak memory at capacity <= 40 MiB", "capacity", PEAK_MEMORY, None, 40.0, False),
)


def _cell(runs: list[RunRecord], scenario: str, system: str, transport: str, metric: Metric) -> stats.Spread | None:
    sel = top_rate_runs(runs, scenario, system).get(transport)  # a swept scenario: its highest point
    return metric.spread(sel) if sel else None


def _verdict(low: float, high: float, bound: float, at_least: bool) -> str:
    if at_least:
        return MET if low >= bound else NOT_MET if high < bound else UNSETTLED
    return MET if high <= bound else NOT_MET if low > bound else UNSETTLED


def judge(target: Target, runs: list[RunRecord], transport: str) -> list[str] | None:
    """One table row: target, transport, loglab, the reference, loglab / reference, verdict; None
    when the cell was not run by both."""
    mine = _cell(runs, target.scenario, OWN, transport, target.metric)
    if mine is None:
        return None
    if target.against is None:
        context = _cell(runs, target.scenario, target.beside, transport, target.metric) if target.beside else None
        return [target.label, transport, target.metric.format(mine), f"({target.beside} {target.metric.format(context)})" if context else "–",
                "–", _verdict(mine.min, mine.max, target.bound, target.at_least)]  # fmt: skip
    other = _cell(runs, target.scenario, target.against, transport, target.metric)
    if other is None:
        return None
    if target.metric is LOSS:  # a difference, not a ratio: syslog-ng's loss can be 0
        verdict = _verdict(mine.min - other.max, mine.max - other.min, target.bound, target.at_least)
        return [target.label, transport, target.metric.format(mine), f"{target.against} {target.metric.format(other)}", "–", verdict]
    r = stats.ratio(mine, other)
    if r is None:
        return None
    return [target.label, transport, target.metric.format(mine), f"{target.against} {target.metric.format(other)}",
            f"{r.median:.2f}x [{r.min:.2f}–{r.max:.2f}]", _verdict(r.min, r.max, target.bound, target.at_least)]  # fmt: skip


def target_rows(runs: list[RunRecord]) -> list[list[str]]:
    rows = []
    for target in TARGETS:
        transports = order(r.transport for r in runs if r.scenario == target.scenario and r.system == OWN)
        for t in transports:
            if target.transports is not None and t not in target.transports:
                continue
            row = judge(target, runs, t)
            if row is not None:
                rows.append(row)
    return rows


def targets_blocks(runs: list[RunRecord], level: int = 2, workers: dict[str, str] | None = None) -> list:
    """The targets table, or nothing when no target's cells were run (no reference, no scenario)."""
    rows = target_rows(runs)
    if not rows:
        return []
    met = sum(r[-1] == MET for r in rows)
    missed = sum(r[-1] == NOT_MET for r in rows)
    run_as = ""
    if workers:
        run_as = " loglab ran with --workers " + ", ".join(f"{n} on {t}" for t, n in workers.items()) + "."
    return [Heading(level, "Targets (issue 16)"),
            Paragraph(f"{met} of {len(rows)} met, {missed} not met, {len(rows) - met - missed} not settled. Median [min–max] over the "
                      "repeats; a ratio's range pairs the worst repeat of one system with the best of the other, and a target is "
                      f"met only when its whole range meets it.{run_as}"),
            Table(["target", "transport", "loglab", "against", "loglab / against", "verdict"], rows)]  # fmt: skip
