"""What the report says, as blocks (``blocks.py``), built from result records only.

The order is the reader's: **the answer first** (which transport for which need, each sentence
citing its figures), then one table of the transports at a glance per workload class, then loglab
beside its peers in one compact table, then the details (charts, per-scenario tables, tracing,
torture, soak, pipeline, query, parameters, environment).

Every figure is "median [min–max]" over the measured repeats (``stats.Spread``); warm-ups are left
out (their count is stated) and traced runs give the syscall figures only. A transport is named
better than another only when both cells have at least 3 repeats and their ranges do not overlap
(``metrics.significantly_better``); otherwise the sentence says they cannot be ranked.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ..results import Results, RunRecord, stats
from ..results.metrics import (
    LOSS,
    MESSAGES_PER_S,
    MIN_REPEATS_TO_RANK,
    P50,
    P99,
    PEAK_MEMORY,
    PRODUCER_CPU,
    PRODUCER_SYSCALLS,
    RECEIPT_P99,
    RECEIVER_CPU,
    RECEIVER_SYSCALLS,
    STEADY_MEMORY,
    Metric,
    significantly_better,
)
from .blocks import BulletList, Chart, Heading, Paragraph, Table
from .charts import bar_chart, format_chart, latency_cdf, latency_percentiles, loss_chart, ratio_chart, syscall_chart
from .distribute import DISTRIBUTE, distribute_blocks, distribute_charts
from .data import OWN, PEER, derived, group_key, group_label, groups_of, loss_pct, order, systems, top_rate_runs
from .targets import targets_blocks

try:  # the transports' declared properties; the report still renders from results alone without them
    from aggregator.transports import TRANSPORTS
except Exception:  # pragma: no cover
    TRANSPORTS = {}

# The standard suite's scenarios (benchmarks/run/suite.py) and what each one answers.
CAPACITY, EFFICIENCY, LATENCY, CHURN, LOSS_SWEEP = "capacity", "efficiency", "latency", "churn", "loss"
STANDARD = (CAPACITY, EFFICIENCY, LATENCY, CHURN, LOSS_SWEEP)
FORMATS = "formats"  # the cost of each input format and framing: a section of its own
P99_MS = Metric("p99_ms", "p99 latency ms", lambda r: P99.get(r) / 1e3 if P99.get(r) is not None else None, "{:.1f}", False)


def fmt(s: stats.Spread | None, f="{:.3g}", scale=1.0) -> str:
    return s.format(f, scale) if s else "–"


# -- selecting cells -------------------------------------------------------------------------------


def _workload(measured, scenario: str, short: bool = False) -> str:
    """The workload(s) ``_runs`` picks for ``scenario``: its highest offered rate (capacity has one
    workload for the stream transports and one for the message transports). ``short``: the load
    only (producers x rate), for a sentence."""
    sel = [r.workload for r in measured if r.scenario == scenario and r.workload]
    if not sel:
        return ""
    top = max(w.offered_rate for w in sel)
    label = (lambda w: w.load_label()) if short else (lambda w: w.short_label())
    return " | ".join(dict.fromkeys(label(w) for w in sel if w.offered_rate == top))


def _cells(metric: Metric, by_transport: dict[str, list[RunRecord]]) -> dict[str, stats.Spread]:
    return {t: s for t, runs in by_transport.items() if (s := metric.spread(runs)) is not None}


# -- the answer --------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """One line of the answer: the need, the sentence with its figures, and what it concludes
    (``winner``: the transport named best beyond noise, or None), so two runs can be checked
    against each other (``findings.py``)."""

    need: str
    sentence: str
    winner: str | None

    def text(self) -> str:
        return f"{self.need}: {self.sentence}."


def _rank(metric: Metric, cells: dict[str, stats.Spread], unit_text: str) -> tuple[str, str | None]:
    """The best transport with its figure and the runner-up's, or the group that cannot be told
    apart from it, and why; and the winner (None when it cannot be named)."""
    items = sorted(cells.items(), key=lambda kv: kv[1].median, reverse=metric.higher_is_better)
    if not items:
        return "not measured", None
    best, s = items[0]
    cite = lambda t, x: f"{t} {metric.format(x)}"  # noqa: E731
    if len(items) == 1:
        return f"**{best}** ({cite(best, s)} {unit_text}; the only one measured)", best
    tied = [(t, x) for t, x in items[1:] if not significantly_better(metric, s, x)]
    if not tied:
        t2, x2 = items[1]
        return f"**{best}**: {metric.format(s)} {unit_text} (next: {cite(t2, x2)})", best
    few = any(x.n < MIN_REPEATS_TO_RANK for _, x in [items[0], *tied])
    why = f"fewer than {MIN_REPEATS_TO_RANK} repeats" if few else "their ranges overlap"
    group = ", ".join(cite(t, x) for t, x in [items[0], *tied])
    return f"cannot be ranked among {group} {unit_text} ({why})", None


def _churn_n(measured) -> int:
    return max((r.workload.per_connection for r in measured if r.scenario == CHURN and r.workload), default=0)


def _lossless(measured, transport: str) -> bool:
    runs = [r for r in measured if r.system == OWN and r.transport == transport and r.seq]
    return bool(runs) and all(r.seq.missing == 0 for r in runs)


def _losses(runs: list[RunRecord], transport: str) -> str:
    """"nothing lost", or in how many runs it lost and the worst one's workload: a median over
    every scenario would hide that the loss is all in one (flat out)."""
    mine = [r for r in runs if r.system == OWN and r.transport == transport and r.seq]
    lossy = [r for r in mine if r.seq.missing]
    if not lossy:
        return "nothing lost"
    worst = max(lossy, key=lambda r: LOSS.get(r) or 0.0)
    return (f"lost messages in {len(lossy)} of {len(mine)} runs, up to {LOSS.get(worst):.2f} % "
            f"({worst.scenario}, {worst.workload.load_label()})")  # fmt: skip


def answer(measured: list[RunRecord]) -> list[Verdict]:
    """The need -> transport lines, from the standard scenarios present in ``measured``."""
    out: list[Verdict] = []
    cpu = _cells(RECEIVER_CPU, top_rate_runs(measured, EFFICIENCY))
    reliable = {t: s for t, s in cpu.items() if getattr(TRANSPORTS.get(t), "reliable", False) and _lossless(measured, t)}
    if reliable:
        out.append(Verdict("Reliable and cheapest", *_rank(RECEIVER_CPU, reliable, f"µs CPU/msg at {_workload(measured, EFFICIENCY, True)}")))
    p99 = _cells(P99_MS, top_rate_runs(measured, LATENCY))
    if p99:
        out.append(Verdict("Lowest latency", *_rank(P99_MS, p99, f"ms p99 to the file at {_workload(measured, LATENCY, True)}")))
    capacity = top_rate_runs(measured, CAPACITY)
    if capacity:
        overload = [r for r in measured if r.system == OWN and r.scenario in (CAPACITY, LOSS_SWEEP)]
        lossy = [t for t in order(r.transport for r in overload) if not _lossless(overload, t)]
        safe = {t: s for t, s in _cells(MESSAGES_PER_S, capacity).items() if t not in lossy}
        text, winner = "", None
        if safe:
            ranked, winner = _rank(MESSAGES_PER_S, safe, "messages/s")
            text = f"{', '.join(order(safe))} lost nothing (producers were slowed); most taken: {ranked}"
        if lossy:
            text += ("; " if safe else "") + "; ".join(f"{t} {_losses(overload, t)}" for t in lossy)
        out.append(Verdict("Survives a slow aggregator", text, winner))
    churn = _cells(RECEIVER_CPU, top_rate_runs(measured, CHURN))
    if churn:
        out.append(Verdict("Many short-lived producers", *_rank(RECEIVER_CPU, churn, f"µs CPU/msg, reconnecting every {_churn_n(measured)} messages")))
    inet = [t for t, tr in TRANSPORTS.items() if getattr(tr, "address_kind", None) == "inet"]
    crossing = {t: s for t, s in cpu.items() if t in inet}
    if crossing:
        parts = [f"{t} {RECEIVER_CPU.format(crossing[t])} µs CPU/msg, {_losses(measured, t)}" for t in order(crossing)]
        safe_inet = {t: s for t, s in crossing.items() if _lossless(measured, t)}
        winner = None
        text = "; ".join(parts)
        if len(safe_inet) == 1:
            winner = next(iter(safe_inet))
            text = f"**{winner}**, the only one that lost nothing: {text}"
        elif safe_inet:
            ranked, winner = _rank(RECEIVER_CPU, safe_inet, "µs/msg")
            text += f"; lossless: {ranked}"
        out.append(Verdict(f"Crosses a machine boundary (only {', '.join(order(crossing))} can)", text, winner))
    return out


def _guarantee(measured: list[RunRecord], t: str) -> str:
    """Delivery (declared, and checked against the runs) and order (measured). A producer that
    reconnects (churn) may land on another worker each time: its order across connections is
    counted apart."""
    tr = TRANSPORTS.get(t)
    runs = [r for r in measured if r.system == OWN and r.transport == t and r.seq]
    missing = sum(r.seq.missing for r in runs)
    steady = [r for r in runs if not (r.workload and r.workload.per_connection)]
    churn = [r for r in runs if r.workload and r.workload.per_connection]
    reordered = sum(r.seq.reordered for r in steady)
    delivered = sum(r.seq.expected for r in steady)
    reliable = getattr(tr, "reliable", None)
    if reliable is None:
        delivery = "?"
    elif reliable:
        delivery = "all (blocks)" if not missing else f"LOST {missing:,} (a defect)"
    else:
        delivery = "best effort (drops)"
    order_text = "ordered" if not reordered else f"{reordered:,} of {delivered:,} reordered"
    across = sum(r.seq.reordered for r in churn)
    if across:
        order_text += f"; {across:,} of {sum(r.seq.expected for r in churn):,} across reconnects"
    return f"{delivery}; {order_text}"


def _glance_standard(measured: list[RunRecord], traced: list[RunRecord]) -> Table:
    cols = [
        (f"capacity msg/s ({_workload(measured, CAPACITY, True)})", MESSAGES_PER_S, top_rate_runs(measured, CAPACITY)),
        (f"CPU µs/msg ({_workload(measured, EFFICIENCY, True)})", RECEIVER_CPU, top_rate_runs(measured, EFFICIENCY)),
        (f"p99 ms to file ({_workload(measured, LATENCY, True)})", P99_MS, top_rate_runs(measured, LATENCY)),
        (f"CPU µs/msg, reconnecting ({_workload(measured, CHURN, True)})", RECEIVER_CPU, top_rate_runs(measured, CHURN)),
        (f"loss % ({_workload(measured, LOSS_SWEEP, True) or 'capacity'})", LOSS, top_rate_runs(measured, LOSS_SWEEP) or top_rate_runs(measured, CAPACITY)),
        ("syscalls/msg (receiver, efficiency)", RECEIVER_SYSCALLS, top_rate_runs(traced, EFFICIENCY)),
    ]  # fmt: skip
    cols = [c for c in cols if c[2]]
    memory = top_rate_runs(measured, CAPACITY) or top_rate_runs(measured, EFFICIENCY)
    transports = order({r.transport for r in measured if r.system == OWN and r.scenario in STANDARD})
    header = ["transport", "delivery; order", *(c[0] for c in cols), "memory MiB steady / peak"]
    rows = []
    for t in transports:
        row = [t, _guarantee(measured, t)]
        for _, m, by_t in cols:
            row.append(m.format(m.spread(by_t.get(t, []))) if t in by_t else "–")
        steady, peak = STEADY_MEMORY.spread(memory.get(t, [])), PEAK_MEMORY.spread(memory.get(t, []))
        row.append(f"{steady.median:.1f} / {peak.median:.1f}" if steady and peak else "–")  # ranges: in the details
        rows.append(row)
    return Table(header, rows)


def _glance_point(runs: list[RunRecord], traced: list[RunRecord]) -> Table:
    """A custom workload point: the same questions, for this one workload."""
    header = ["transport", "delivery; order", "messages/s", "CPU µs/msg", "p99 ms to file", "loss %", "syscalls/msg", "memory MiB steady / peak"]
    rows = []
    for t in order(r.transport for r in runs if r.system == OWN):
        sel = [r for r in runs if r.system == OWN and r.transport == t]
        tr = [r for r in traced if r.system == OWN and r.transport == t and group_key(r) == group_key(sel[0])]
        rows.append([t, _guarantee(sel, t), MESSAGES_PER_S.format(MESSAGES_PER_S.spread(sel)), RECEIVER_CPU.format(RECEIVER_CPU.spread(sel)),
                     P99_MS.format(P99_MS.spread(sel)), LOSS.format(LOSS.spread(sel)), RECEIVER_SYSCALLS.format(RECEIVER_SYSCALLS.spread(tr)),
                     f"{STEADY_MEMORY.format(STEADY_MEMORY.spread(sel))} / {PEAK_MEMORY.format(PEAK_MEMORY.spread(sel))}"])  # fmt: skip
    return Table(header, rows)


def _peers(measured: list[RunRecord], level: int = 2) -> list:
    """loglab beside every peer, one row per transport and system, one compact table."""
    present = systems(measured)
    if len(present) < 2:
        return []
    standard = any(r.scenario in STANDARD for r in measured)
    if standard:
        cols = [("capacity msg/s", MESSAGES_PER_S, CAPACITY), ("CPU µs/msg", RECEIVER_CPU, EFFICIENCY),
                ("p99 ms to file", P99_MS, LATENCY), ("CPU µs/msg, churn", RECEIVER_CPU, CHURN)]  # fmt: skip
        cols = [c for c in cols if any(r.scenario == c[2] for r in measured)]
    else:
        cols = [("messages/s", MESSAGES_PER_S, None), ("CPU µs/msg", RECEIVER_CPU, None), ("p99 ms to file", P99_MS, None)]
    mem_scenario = CAPACITY if any(r.scenario == CAPACITY for r in measured) else None
    header = ["transport", "system", *(c[0] for c in cols), "loss % (max)", "memory MiB steady / peak"]
    rows = []
    for t in order(r.transport for r in measured):
        serving = [s for s in present if any(r.transport == t and r.system == s for r in measured)]
        if len(serving) < 2:
            continue
        for system in serving:
            row = [t, system]
            for _, m, scenario in cols:
                sel = top_rate_runs(measured, scenario, system).get(t, []) if scenario else [r for r in measured if r.system == system and r.transport == t]
                row.append(m.format(m.spread(sel)))
            mine = [r for r in measured if r.system == system and r.transport == t]
            lost = [LOSS.spread([r for r in mine if group_key(r) == k]) for k in {group_key(r) for r in mine}]
            worst = max((x for x in lost if x), key=lambda x: x.median, default=None)
            row.append(LOSS.format(worst))
            mem = top_rate_runs(measured, mem_scenario, system).get(t, []) if mem_scenario else mine
            row.append(f"{STEADY_MEMORY.format(STEADY_MEMORY.spread(mem))} / {PEAK_MEMORY.format(PEAK_MEMORY.spread(mem))}")
            rows.append(row)
    if not rows:
        return []
    return [Heading(level, "loglab and its peers"),
            Paragraph("The same producers and workloads against each system; latency measured the same way for all (the observer), "
                      "memory as PSS of the receiving processes. A peer missing from a transport has no source for it (see Notes)."),
            Table(header, rows)]  # fmt: skip


# -- details -----------------------------------------------------------------------------------------


def _tables(groups) -> list:
    blocks: list = []
    metrics = [MESSAGES_PER_S, P50, P99, RECEIPT_P99, RECEIVER_CPU, LOSS, STEADY_MEMORY, PEAK_MEMORY]
    for runs in groups.values():
        blocks.append(Heading(3, group_label(runs)))
        header = ["transport", "system", "n", *(m.label for m in metrics), "dup / reord"]
        rows = []
        for t in order(r.transport for r in runs):
            for system in systems(runs):
                sel = [r for r in runs if r.transport == t and r.system == system]
                if not sel:
                    continue
                ok = [r for r in sel if r.status == "ok"]
                dup = stats.spread(r.seq.duplicates for r in ok if r.seq)
                reord = stats.spread(r.seq.reordered for r in ok if r.seq)
                rows.append([t, system, str(len(ok)), *(m.format(m.spread(sel)) for m in metrics),
                             f"{fmt(dup, '{:,.0f}')} / {fmt(reord, '{:,.0f}')}"])  # fmt: skip
        blocks.append(Table(header, rows))
    return blocks


def _overhead_rows(measured: list[RunRecord], traced: list[RunRecord]) -> list[list[str]]:
    rows = []
    for r in traced:
        same = [m for m in measured if group_key(m) == group_key(r) and m.transport == r.transport and m.system == r.system]
        cells = []
        for metric in (MESSAGES_PER_S, RECEIVER_CPU):
            base = metric.spread(same)
            value = metric.get(r)
            if base is None or value is None or not base.median:
                cells.append("–")
                continue
            change = (value / base.median - 1) * 100
            noise = "within noise" if base.min <= value <= base.max else "OUTSIDE noise"
            cells.append(f"{change:+.1f} % ({noise})")
        rows.append([r.scenario, r.transport, r.system, *cells])
    return rows


FORMATS_INTRO = ("What each input format and framing costs at the same offered rate (the formats scenario): the "
                 "producer's JSON line alone, or as the message of an RFC 3164 or RFC 5424 header, newline-framed, "
                 "octet-counted (RFC 6587) or in lenprefix frames. loglab reads every one with --format auto "
                 "(lenprefix with --framing lenprefix); syslog-ng and rsyslog parse the header and keep the message. "
                 "'vs JSON lines': the receiver's CPU per message against its own JSON, newline-framed cell on the same "
                 "transport (median over median). Syscalls per message from the traced run of each cell.")  # fmt: skip


def format_table(measured: list[RunRecord], traced: list[RunRecord], rerun: list[RunRecord] | None = None) -> Table | None:
    """One row per transport, format and framing, and system (the formats scenario); with ``rerun``
    (the measured runs of a second run), its receiver CPU per message beside the first's."""
    runs = [r for r in measured if r.scenario == FORMATS]
    if not runs:
        return None
    shown = (RECEIVER_CPU, RECEIVER_SYSCALLS, PRODUCER_CPU, PRODUCER_SYSCALLS, MESSAGES_PER_S, P99, LOSS)
    header = ["transport", "format", "framing", "system", "n", RECEIVER_CPU.label, "vs JSON lines",
              *(["receiver CPU µs/msg, rerun"] if rerun is not None else []), *(m.label for m in shown[1:])]  # fmt: skip
    rows = []
    for t in order(r.transport for r in runs):
        for shape in dict.fromkeys((r.workload.format, r.workload.framing) for r in runs if r.transport == t):
            for system in systems([r for r in runs if r.transport == t]):
                def cell(r: RunRecord, shape=shape, system=system) -> bool:
                    return r.scenario == FORMATS and r.transport == t and r.system == system and (r.workload.format, r.workload.framing) == shape

                sel = [r for r in runs if cell(r)]
                if not sel:
                    continue
                json_lines = RECEIVER_CPU.spread(r for r in runs if cell(r, ("json", "newline")))
                tr = [r for r in traced if cell(r)]
                spreads = [m.spread(tr if m in (RECEIVER_SYSCALLS, PRODUCER_SYSCALLS) else sel) for m in shown]
                relative = f"{spreads[0].median / json_lines.median:.2f}x" if spreads[0] and json_lines and json_lines.median else "–"
                again = [RECEIVER_CPU.format(RECEIVER_CPU.spread(r for r in rerun if cell(r)))] if rerun is not None else []
                rows.append([t, *shape, system, str(len([r for r in sel if r.status == "ok"])), RECEIVER_CPU.format(spreads[0]),
                             relative, *again, *(m.format(s) for m, s in zip(shown[1:], spreads[1:]))])  # fmt: skip
    return Table(header, rows)


def _format_blocks(measured: list[RunRecord], traced: list[RunRecord], charts: list) -> list:
    """The cost of each input format and framing (the formats scenario), the systems side by side."""
    table = format_table(measured, traced)
    if table is None:
        return []
    runs = [r for r in measured if r.scenario == FORMATS]
    chart = Chart("formats", "Cost per input format",
                  "Bars: median on-CPU time of the receiver per message delivered (µs), per input format and framing of the "
                  "producer (x), one bar per system (loglab plain, syslog-ng hatched //, rsyslog dotted), one panel per "
                  "transport; whiskers min–max over repeats. A missing bar: the system has no input for that format or "
                  "framing (see Notes). Lower is better.", format_chart(runs))  # fmt: skip
    charts.append(chart)
    return [Heading(2, "Input formats"), Paragraph(FORMATS_INTRO), chart, table]


def _tracing(measured: list[RunRecord], traced: list[RunRecord], charts: list) -> list:
    if not any(r.trace for r in traced):
        return []
    groups = groups_of([r for r in traced if r.trace])
    chart = Chart("syscalls", "Syscalls per message",
                  "One panel per scenario (never pooled: 64 lines per write and one per write cost differently). Bars: "
                  "syscalls per message counted by the tracer in the window of the traced run (one extra run per cell, left "
                  "out of every other figure), producer side below, receiver side stacked on top. Fewer is cheaper.",
                  syscall_chart(groups))  # fmt: skip
    charts.append(chart)
    rows = []
    for runs in groups.values():
        for t in order(r.transport for r in runs):
            for system in systems(runs):
                sel = [r for r in runs if r.transport == t and r.system == system]
                p, a = PRODUCER_SYSCALLS.spread(sel), RECEIVER_SYSCALLS.spread(sel)
                top = next((_top(r.trace.get("aggregator")) for r in sel if r.trace), "")
                if p or a:
                    rows.append([group_label(runs), t, system, PRODUCER_SYSCALLS.format(p), RECEIVER_SYSCALLS.format(a), top])
    return [Heading(2, "Tracing"), chart,
            Table(["scenario", "transport", "system", "producer syscalls/msg", "receiver syscalls/msg", "receiver top syscalls"], rows),
            Paragraph("Tracer overhead: each traced run against the median of the untraced repeats of the same cell, as "
                      "traced / untraced - 1. messages/s: negative means the traced run was slower. CPU µs/msg: positive means "
                      "the traced run used more CPU per message. 'within noise': inside the untraced repeats' min–max range."),
            Table(["scenario", "transport", "system", "messages/s, traced vs untraced", "CPU µs/msg, traced vs untraced"],
                  _overhead_rows(measured, traced))]  # fmt: skip


def _charts(groups, measured) -> list[Chart]:
    charts: list[Chart] = []
    if not groups:
        return charts
    charts.append(Chart("throughput", "Throughput per transport",
                        "Bars: median delivered messages/s over the measured window, per transport; loglab plain, peers hatched; "
                        "whiskers: min and max over repeats. At a fixed offered rate every transport that keeps up delivers that rate: "
                        "only capacity ranks throughput.",
                        bar_chart(groups, derived("messages_per_s"), "delivered messages/s", "Throughput per transport")))  # fmt: skip
    if any(r.latency for r in measured):
        charts.append(Chart("latency_percentiles", "Latency percentiles",
                            "Each line is one transport/system (solid loglab, dashed peers): the median over repeats of each latency "
                            "percentile, from the producer's intended send time to the moment the line is in the output file, as one "
                            "observer outside every system sees it (µs, log scale); error bars: min–max over repeats. Lower is better.",
                            latency_percentiles(groups)))  # fmt: skip
        charts.append(Chart("latency_cdf", "Latency CDF",
                            "Fraction of messages (y) in the output file within a latency (x, µs, log scale) of their intended send "
                            "time, from the stored samples of all measured repeats pooled; further left is better, a long tail to the "
                            "right means outliers.", latency_cdf(groups)))  # fmt: skip
    charts.append(Chart("cpu_per_message", "Receiver CPU per message",
                        "Bars: median on-CPU time of the receiver (loglab's aggregator with its workers, or a peer with its threads) "
                        "over the window, divided by messages delivered (µs per message); whiskers min–max over repeats. Lower is better.",
                        bar_chart(groups, derived("agg_cpu_us_per_msg"), "receiver CPU (µs per message)", "Receiver CPU per message")))  # fmt: skip
    charts.append(Chart("loss", "Loss",
                        "Percentage of expected messages missing from the output (sequence check), median with min–max over repeats; "
                        "x: the rate offered by all producers together (transports that may lose, and the datagram transports).",
                        loss_chart(measured)))  # fmt: skip
    ratio_groups = {k: v for k, v in groups.items() if {OWN, PEER} <= {r.system for r in v}}
    if ratio_groups:
        charts.append(Chart("peer_ratio", "loglab / syslog-ng",
                            "Bars: loglab's median divided by syslog-ng's median, per transport (above 1: loglab delivers more "
                            "messages/s, or uses more CPU per message). Whiskers: the smallest and largest ratio over every pairing "
                            "of a loglab repeat with a syslog-ng repeat.", ratio_chart(ratio_groups)))  # fmt: skip
    return charts


def _soak_blocks(res: Results, charts: list) -> list:
    """Soak runs (``loglab soak --out RESULTS_DIR``) stored with the results: their chart and table."""
    runs = res.of_kind("soak")
    if not runs:
        return []
    import tempfile
    from pathlib import Path

    from ..faults.soak import plot_soak

    with tempfile.TemporaryDirectory() as tmp:
        png = plot_soak(runs, Path(tmp) / "soak.png").read_bytes()
    chart = Chart("soak", "Soak: memory, file descriptors and delivery over time",
                  "Top: the aggregator's resident memory; middle: its open file descriptors; bottom: messages sent but "
                  "not yet written (in flight; returns to 0 on reliable transports). Flat lines mean no growth.", png)  # fmt: skip
    charts.append(chart)
    rows = [[r.transport, r.sent, r.written, r.lost, f"{r.figures['rss_first_bytes'] / 2**20:.1f} → {r.figures['rss_last_bytes'] / 2**20:.1f}",
             f"{r.figures['fds_first']} → {r.figures['fds_last']}", r.figures["no_growth"], r.figures["no_loss"]] for r in runs]  # fmt: skip
    return [Heading(2, "Soak"), chart,
            Table(["transport", "sent", "written", "lost", "RSS MiB first → last", "fds first → last", "no growth", "no loss"], rows)]  # fmt: skip


def _torture_blocks(res: Results) -> list:
    """Torture runs (``loglab torture --out RESULTS_DIR``): what each scenario sent, wrote and lost."""
    runs = res.of_kind("torture")
    if not runs:
        return []
    rows = [[r.scenario, r.transport, r.sent, r.written, r.rejected, r.lost, "–" if r.expected is None else r.expected,
             r.status if r.status == "skipped" else ("yes" if r.ok else "NO"), "; ".join(r.notes + r.errors)] for r in runs]  # fmt: skip
    return [Heading(2, "Torture"),
            Paragraph("Fault scenarios (loglab torture): lost = sent - written - rejected; ok when every expectation of "
                      "the scenario held."),
            Table(["scenario", "transport", "sent", "written", "rejected", "lost", "expected", "ok", "notes"], rows)]  # fmt: skip


def loglab_workers(runs) -> dict[str, str]:
    """Per transport, the worker counts loglab's runs had (from each run's own stats file)."""
    seen: dict[str, set] = defaultdict(set)
    for r in runs:
        if r.system == "loglab" and r.system_stats:
            seen[r.transport].add(r.system_stats.get("workers", 1))
    return {t: "/".join(map(str, sorted(n))) for t, n in sorted(seen.items())}


def _notes(res: Results) -> list[str]:
    notes = list(res.notes)
    for peer in res.peers or ([res.peer] if res.peer else []):
        if not peer.get("available", True):
            notes.append(f"Peer {peer.get('name', PEER)} unavailable: {peer.get('reason') or 'no reason given'}")
    if res.tracing and not res.tracing.get("enabled", False):
        notes.append(f"Tracing skipped: {res.tracing.get('reason') or 'no reason given'}")
    for r in res.runs:
        for e in r.errors:
            notes.append(f"{r.system}/{r.transport}/{r.scenario} repeat {r.repeat}: {e}")
    skipped: dict[tuple, int] = defaultdict(int)
    for r in res.runs:
        if r.trace_skipped:
            skipped[(r.system, r.trace_skipped)] += 1
    for (system, reason), n in skipped.items():
        notes.append(f"{system}: tracing skipped in {n} run(s): {reason}")
    return sorted(set(notes), key=notes.index)


def _context(res: Results, measured: list[RunRecord], traced: list[RunRecord]) -> str:
    env = res.environment
    repeats = res.params.get("repeats")
    warmups = len([r for r in res.runs if r.kind == "bench"]) - len(measured) - len(traced)
    machine = f"{env.get('cpu_count', '?')} CPUs ({env.get('cpu_model', '?')}), Linux {env.get('kernel', '?')}"
    workers = loglab_workers(measured)
    w = ", ".join(sorted({n for n in workers.values()}))
    return (f"{', '.join(systems(measured)) or 'no system'}; {len(measured)} measured runs, {repeats} repeats per cell "
            f"({warmups} warm-ups and {len(traced)} traced runs left out); loglab with {w or '?'} receiving process(es)"
            f"{', hot path ' + env['hot_path'] if env.get('hot_path') else ''}; "
            f"{machine}. 200-byte messages unless said. Median [min–max] over the repeats. "
            f"{'' if res.complete else 'INCOMPLETE: the benchmark did not finish.'}").rstrip()  # fmt: skip


def build_blocks(res: Results) -> tuple[list, list[Chart]]:
    # Transport cells: runs of producers into a system. The distribute scenario's runs and the query
    # scenario's (no producers) are rendered by their own parts.
    cells = [r for r in res.measured() if r.workload is not None and r.scenario != DISTRIBUTE]
    measured = [r for r in cells if r.status == "ok"] or cells
    traced = res.traced()
    groups = groups_of(cells)
    blocks: list = [Heading(1, "loglab benchmark report")]
    if measured or not any(r.scenario in ("query", DISTRIBUTE) for r in res.measured()):
        blocks.append(Paragraph(_context(res, measured, traced)))
    repeats = res.params.get("repeats") or 0
    if groups and repeats < MIN_REPEATS_TO_RANK:
        blocks.append(Paragraph(f"Only {repeats} repeat(s) per cell: every figure is a single sample or nearly, and nothing "
                                f"is ranked (ranking needs {MIN_REPEATS_TO_RANK} repeats and ranges that do not overlap)."))  # fmt: skip
    if groups:
        blocks.append(Heading(2, "Which transport, and why"))
        verdicts = answer(measured)
        if verdicts:
            blocks.append(BulletList([v.text() for v in verdicts]))
        if any(r.scenario in STANDARD for r in measured):
            blocks += [Heading(3, "The transports at a glance (loglab)"), _glance_standard(measured, traced)]
        for runs in groups_of([r for r in measured if r.scenario not in (*STANDARD, FORMATS) and r.kind == "bench"]).values():
            blocks += [Heading(3, f"The transports at a glance: {group_label(runs)}"), _glance_point(runs, traced)]
        blocks.append(Paragraph("Latency is from the producer's intended send time to the line being in the output file, "
                                "measured by one observer outside every system; loglab writes its output every 256 KiB or "
                                "--flush-interval (10 ms by default), and that wait is part of it. Memory: PSS of the receiving "
                                "processes, median and largest of samples taken every 100 ms."))  # fmt: skip
    blocks += _peers(measured)
    notes = _notes(res)
    if notes:
        blocks += [Heading(2, "Notes"), BulletList(notes)]
    charts = _charts(groups, cells)
    if groups:
        blocks.append(Heading(2, "Details"))
        blocks += targets_blocks(measured, level=3, workers=loglab_workers(measured))
        blocks += list(charts)
        blocks += [Heading(2, "Results per scenario")] + _tables(groups)
    blocks += _tracing(cells, traced, charts)
    blocks += _format_blocks(cells, traced, charts)
    blocks += _soak_blocks(res, charts)
    blocks += _torture_blocks(res)
    blocks += _pipeline_blocks([r for r in res.measured() if r.scenario == "pipeline"])
    dist_charts = distribute_charts(res.measured())
    blocks += distribute_blocks(res.measured()) + dist_charts
    charts += dist_charts
    blocks += _query_blocks(res, charts)
    blocks += [Heading(2, "Workload parameters"), Table(["parameter", "value"], [[k, _short(v)] for k, v in res.params.items()])]
    env_rows = []
    for k, v in res.environment.items():
        if isinstance(v, dict):
            env_rows += [[f"{k}.{kk}", _short(vv)] for kk, vv in v.items()]
        else:
            env_rows.append([k, _short(v)])
    blocks += [Heading(2, "Environment"), Table(["key", "value"], env_rows)]
    return blocks, charts


def _pipeline_blocks(runs: list[RunRecord]) -> list:
    """The pipeline scenario (natslab/bench.py): the shipper against nats-py's ceilings."""
    if not runs:
        return []
    header = ["workload", "system", "stream", "n", "messages/s", "p50 ms", "p99 ms", "p99.9 ms",
              "publisher CPU µs/msg", "nats-server CPU µs/msg", "aggregator CPU µs/msg", "missing", "dup"]  # fmt: skip
    rows = []
    for runs_g in groups_of(runs).values():
        p = runs_g[0].workload
        load = f"{p.producers}x{p.rate:,.0f}/s" if p.rate else f"{p.producers} flat out" if p.producers > 1 else "from memory"
        for t in order(r.transport for r in runs_g):
            for system in systems(runs_g):
                sel = [r for r in runs_g if r.transport == t and r.system == system and r.status == "ok"]
                if not sel:
                    continue
                lat = lambda key: stats.spread((r.latency or r.receipt_latency).summary.get(key) for r in sel if (r.latency or r.receipt_latency))  # noqa: E731
                m = lambda key: stats.spread(r.derived.get(key) for r in sel)  # noqa: E731
                rows.append([load, system, t, str(len(sel)), fmt(m("messages_per_s"), "{:,.0f}"),
                             fmt(lat("p50_ns"), "{:.1f}", 1e-6), fmt(lat("p99_ns"), "{:.1f}", 1e-6),
                             fmt(lat("p99_9_ns"), "{:.1f}", 1e-6), fmt(m("shipper_cpu_us_per_msg"), "{:.1f}"),
                             fmt(m("nats_cpu_us_per_msg"), "{:.1f}"), fmt(m("agg_cpu_us_per_msg"), "{:.2f}"),
                             fmt(stats.spread(r.seq.missing for r in sel if r.seq), "{:.0f}"),
                             fmt(stats.spread(r.seq.duplicates for r in sel if r.seq), "{:.0f}")])  # fmt: skip
    return [Heading(2, "Pipeline: producers -> aggregator -> shipper -> JetStream"),
            Paragraph("Latency: the producer's intended send time to the stream's timestamp of the message. Publisher CPU: "
                  "the shipper, or the ceiling's Python publisher (nats-py from memory). Median [min–max] over repeats."),
            Table(header, rows)]  # fmt: skip


def _query_blocks(res: Results, charts: list) -> list:
    """The query scenario (natslab/querybench.py): its chart joins the report's charts."""
    from .query import query_blocks

    blocks = query_blocks(res.measured())
    charts += [b for b in blocks if isinstance(b, Chart)]
    return blocks


def _top(side: dict | None) -> str:
    if not side or not side.get("top"):
        return ""
    top = side["top"]
    if isinstance(top, dict):
        items = list(top.items())[:5]
    else:
        items = [(e.get("syscall"), e.get("per_message", e.get("count"))) for e in top[:5]]
    return ", ".join(f"{k} {v}" for k, v in items)


def _short(v) -> str:
    if isinstance(v, list) and v and isinstance(v[0], dict):
        return "; ".join(", ".join(f"{k}={_short(x)}" for k, x in d.items() if k not in ("points", "workloads")) for d in v)
    text = str(v)
    return text if len(text) <= 300 else text[:297] + "..."


__all__ = ["build_blocks", "fmt", "loglab_workers", "loss_pct"]
