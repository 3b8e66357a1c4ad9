"""The benchmark report: ``render(results_dir)`` -> report.md, report.html and PNG charts.

Reads only the results files (``results.load_results``), so it can be re-run without re-running
the benchmark. Warm-up runs are left out of every figure (their count is stated). A *group* is one
(scenario, sweep point); each chart has one panel per group (at most ``MAX_PANELS``).

The report is built as a list of blocks (heading, paragraph, table, chart); one small renderer per
format (Markdown, HTML) turns the blocks into text. Charts are drawn with matplotlib's Agg backend,
written as PNG files next to the report and embedded in the HTML as base64 data URIs.

Every figure is "median [min–max]" over the measured repeats (stats.Spread); "too noisy to rank"
means the min–max ranges overlap. Ratios loglab/syslog-ng: ratio of medians, range over all
pairings of repeats (stats.ratio).
"""

from __future__ import annotations

import base64
import html
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import stats  # noqa: E402
from .results import Results, RunRecord, load_results  # noqa: E402

MAX_PANELS = 8
PEER = "syslog-ng"
OWN = "loglab"
SYSTEM_STYLE = {OWN: {"hatch": "", "ls": "-"}, PEER: {"hatch": "//", "ls": "--"}}

try:
    from aggregator.transports import TRANSPORTS

    TRANSPORT_ORDER = list(TRANSPORTS)
    DATAGRAM = {n for n, t in TRANSPORTS.items() if getattr(t, "kind", "") == "datagram"}
except Exception:  # pragma: no cover - the report must work from results alone
    TRANSPORT_ORDER, DATAGRAM = ["unixsock", "unixgram", "tcp", "udp", "fifo"], {"unixgram", "udp"}


@dataclass
class Chart:
    name: str  # file stem
    title: str
    caption: str
    png: bytes = b""


@dataclass
class ReportFiles:
    md: Path
    html: Path
    charts: list[Path]


# -- data helpers -----------------------------------------------------------------------------------
def _group_key(r: RunRecord) -> tuple:
    p = r.point
    return (r.scenario, p.producers, p.count, p.size, p.rate, p.batch)


def _groups(runs: list[RunRecord]) -> dict[tuple, list[RunRecord]]:
    out: dict[tuple, list[RunRecord]] = defaultdict(list)
    for r in runs:
        out[_group_key(r)].append(r)
    return dict(out)


def _group_label(runs: list[RunRecord]) -> str:
    return f"{runs[0].scenario}: {runs[0].point.label()}"


def _color(transport: str) -> str:
    """One colour per transport in every chart (the system is told by line style / hatch)."""
    i = TRANSPORT_ORDER.index(transport) if transport in TRANSPORT_ORDER else len(TRANSPORT_ORDER) + hash(transport) % 3
    return f"C{i % 10}"


def _order(names) -> list[str]:
    names = set(names)
    return [t for t in TRANSPORT_ORDER if t in names] + sorted(names - set(TRANSPORT_ORDER))


def _systems(runs) -> list[str]:
    s = {r.system for r in runs}
    return [x for x in (OWN, PEER) if x in s] + sorted(s - {OWN, PEER})


def _metric(runs: list[RunRecord], system: str, transport: str, fn) -> stats.Spread | None:
    return stats.spread(fn(r) for r in runs if r.system == system and r.transport == transport and r.status == "ok")


def _d(key):
    return lambda r: r.derived.get(key)


def _lat(key):
    return lambda r: (r.latency.summary.get(key) if r.latency else None)


def _loss_pct(r):
    v = r.derived.get("loss_fraction")
    return None if v is None else v * 100


# -- charts -----------------------------------------------------------------------------------------
def _png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _panels(n: int, height: float = 3.2):
    n = max(1, min(n, MAX_PANELS))
    fig, axes = plt.subplots(n, 1, figsize=(9, height * n), squeeze=False, layout="constrained")
    return fig, [a[0] for a in axes]


def _bar_chart(groups, fn, ylabel: str, title: str, scale: float = 1.0):
    fig, axes = _panels(len(groups))
    for ax, runs in zip(axes, list(groups.values())[:MAX_PANELS]):
        transports = _order(r.transport for r in runs)
        systems = _systems(runs)
        width = 0.8 / max(1, len(systems))
        for j, system in enumerate(systems):
            xs, meds, lo, hi = [], [], [], []
            for i, t in enumerate(transports):
                s = _metric(runs, system, t, fn)
                if s is None:
                    continue
                xs.append(i + (j - (len(systems) - 1) / 2) * width)
                meds.append(s.median * scale)
                lo.append((s.median - s.min) * scale)
                hi.append((s.max - s.median) * scale)
            if xs:
                ax.bar(xs, meds, width, yerr=[lo, hi], capsize=4, label=f"{system} (median, whiskers min–max)",
                       hatch=SYSTEM_STYLE.get(system, {}).get("hatch", ""), edgecolor="black", alpha=0.85)  # fmt: skip
        ax.set_xticks(range(len(transports)), transports)
        ax.set_xlabel("transport")
        ax.set_ylabel(ylabel)
        ax.set_title(_group_label(runs), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _png(fig)


def _latency_percentiles(groups):
    names = [("p50_ns", "p50"), ("p90_ns", "p90"), ("p99_ns", "p99"), ("p99_9_ns", "p99.9"), ("max_ns", "max")]
    fig, axes = _panels(len(groups))
    for ax, runs in zip(axes, list(groups.values())[:MAX_PANELS]):
        for t in _order(r.transport for r in runs):
            for system in _systems(runs):
                xs, meds, lo, hi = [], [], [], []
                for i, (key, _) in enumerate(names):
                    s = _metric(runs, system, t, _lat(key))
                    if s is None:
                        continue
                    med = max(s.median / 1e3, 1e-3)
                    xs.append(i)
                    meds.append(med)
                    lo.append(med - max(s.min / 1e3, 1e-3))
                    hi.append(max(s.max / 1e3, 1e-3) - med)
                if xs:
                    ax.errorbar(xs, meds, yerr=[lo, hi], capsize=3, marker="o", ls=SYSTEM_STYLE.get(system, {}).get("ls", ":"),
                                color=_color(t), label=f"{t} / {system}")  # fmt: skip
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), [n for _, n in names])
        ax.set_xlabel("percentile of end-to-end latency")
        ax.set_ylabel("latency (µs, log scale)")
        ax.set_title(_group_label(runs), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle("End-to-end latency percentiles (intended send -> receipt)")
    return _png(fig)


def _latency_cdf(groups):
    fig, axes = _panels(len(groups))
    for ax, runs in zip(axes, list(groups.values())[:MAX_PANELS]):
        for t in _order(r.transport for r in runs):
            for system in _systems(runs):
                samples = sorted(
                    s for r in runs if r.system == system and r.transport == t and r.latency for s in r.latency.samples_ns
                )
                if not samples:
                    continue
                n = len(samples)
                xs = [max(s / 1e3, 1e-3) for s in samples]
                ys = [(i + 1) / n for i in range(n)]
                ax.plot(xs, ys, ls=SYSTEM_STYLE.get(system, {}).get("ls", ":"), color=_color(t), label=f"{t} / {system}")
        ax.set_xscale("log")
        ax.set_xlabel("end-to-end latency (µs, log scale)")
        ax.set_ylabel("fraction of messages ≤ x")
        ax.set_ylim(0, 1.01)
        ax.set_title(_group_label(runs), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Latency CDF (stored samples of all measured repeats pooled)")
    return _png(fig)


def _loss_chart(runs: list[RunRecord]):
    dgram = [r for r in runs if r.transport in DATAGRAM and r.point.rate > 0]
    rates = {r.point.offered_rate for r in dgram}
    fig, axes = _panels(1, 4)
    ax = axes[0]
    if len(rates) >= 2:
        for t in _order(r.transport for r in dgram):
            for system in _systems(dgram):
                pts = []
                for rate in sorted(rates):
                    sel = [r for r in dgram if r.point.offered_rate == rate]
                    s = _metric(sel, system, t, _loss_pct)
                    if s is not None:
                        pts.append((rate, s))
                if pts:
                    ax.errorbar([p[0] for p in pts], [p[1].median for p in pts],
                                yerr=[[p[1].median - p[1].min for p in pts], [p[1].max - p[1].median for p in pts]],
                                capsize=3, marker="o", ls=SYSTEM_STYLE.get(system, {}).get("ls", ":"), color=_color(t), label=f"{t} / {system}")  # fmt: skip
        ax.set_xlabel("offered rate, all producers (messages/s)")
        title = "Loss versus offered rate (datagram transports)"
    else:
        keys, meds, errs = [], [], [[], []]
        for t in _order(r.transport for r in runs):
            for system in _systems(runs):
                s = _metric(runs, system, t, _loss_pct)
                if s is not None:
                    keys.append(f"{t}\n{system}")
                    meds.append(s.median)
                    errs[0].append(s.median - s.min)
                    errs[1].append(s.max - s.median)
        ax.bar(range(len(keys)), meds, yerr=errs, capsize=4, edgecolor="black", label="loss (median, whiskers min–max)")
        ax.set_xticks(range(len(keys)), keys, fontsize=7)
        ax.set_xlabel("transport / system")
        title = "Messages lost (all scenarios pooled)"
    ax.set_ylabel("messages lost (% of expected)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title)
    return _png(fig)


def _ratio_chart(groups):
    fig, axes = _panels(len(groups))
    for ax, runs in zip(axes, list(groups.values())[:MAX_PANELS]):
        transports = _order(r.transport for r in runs)
        for j, (key, label) in enumerate((("messages_per_s", "messages/s"), ("agg_cpu_us_per_msg", "aggregator CPU per message"))):
            xs, meds, lo, hi = [], [], [], []
            for i, t in enumerate(transports):
                q = _ratio(runs, t, key)
                if q is None:
                    continue
                xs.append(i + (j - 0.5) * 0.4)
                meds.append(q.median)
                lo.append(q.median - q.min)
                hi.append(q.max - q.median)
            if xs:
                ax.bar(xs, meds, 0.4, yerr=[lo, hi], capsize=4, edgecolor="black", label=f"{label} (ratio of medians, whiskers: range over pairings)")
        ax.axhline(1.0, color="black", lw=1)
        ax.set_xticks(range(len(transports)), transports)
        ax.set_xlabel("transport")
        ax.set_ylabel("loglab / syslog-ng (x)")
        ax.set_title(_group_label(runs), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("loglab relative to syslog-ng (1.0 = equal)")
    return _png(fig)


def _ratio(runs, transport, key) -> stats.Ratio | None:
    a = _metric(runs, OWN, transport, _d(key))
    b = _metric(runs, PEER, transport, _d(key))
    return stats.ratio(a, b) if a and b else None


def trace_side(trace: dict | None, side: str) -> dict | None:
    """The producer/aggregator part of a run's ``trace`` (see results.py for the keys accepted)."""
    if not trace:
        return None
    aliases = {"producer": ("producer", "logprod"), "aggregator": ("aggregator", "logagg", "syslog-ng")}[side]
    for k in aliases:
        if isinstance(trace.get(k), dict):
            return trace[k]
    return None


def _spm(side: dict | None):
    if not side:
        return None
    return side.get("syscalls_per_message", side.get("syscalls_per_msg"))


def _syscall_chart(runs):
    keys, prod, agg = [], [], []
    for t in _order(r.transport for r in runs):
        for system in _systems(runs):
            p = _metric(runs, system, t, lambda r: _spm(trace_side(r.trace, "producer")))
            a = _metric(runs, system, t, lambda r: _spm(trace_side(r.trace, "aggregator")))
            if p or a:
                keys.append(f"{t}\n{system}")
                prod.append(p.median if p else 0)
                agg.append(a.median if a else 0)
    fig, axes = _panels(1, 4)
    ax = axes[0]
    x = range(len(keys))
    ax.bar(x, prod, label="producer side", edgecolor="black")
    ax.bar(x, agg, bottom=prod, label="aggregator side", edgecolor="black", hatch="//")
    ax.set_xticks(x, keys, fontsize=7)
    ax.set_xlabel("transport / system")
    ax.set_ylabel("syscalls per message (median over repeats)")
    ax.set_title("Syscalls per message, stacked by side (all scenarios pooled)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


# -- blocks -----------------------------------------------------------------------------------------
def _fmt(s: stats.Spread | None, fmt="{:.3g}", scale=1.0) -> str:
    return s.format(fmt, scale) if s else "–"


def _tables(groups) -> list:
    blocks: list = []
    for runs in groups.values():
        blocks.append(("h3", _group_label(runs)))
        header = ["transport", "system", "n", "messages/s", "MB/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs",
                  "agg CPU µs/msg", "prod CPU µs/msg", "loss %", "dup", "reord", "agg peak RSS MiB", "agg ctx sw"]  # fmt: skip
        rows = []
        for t in _order(r.transport for r in runs):
            for system in _systems(runs):
                sel = [r for r in runs if r.transport == t and r.system == system]
                if not sel:
                    continue
                m = lambda fn: _metric(runs, system, t, fn)  # noqa: E731
                rows.append([
                    t, system, str(len([r for r in sel if r.status == "ok"])),
                    _fmt(m(_d("messages_per_s")), "{:,.0f}"), _fmt(m(_d("mb_per_s")), "{:.1f}"),
                    _fmt(m(_lat("p50_ns")), "{:.0f}", 1e-3), _fmt(m(_lat("p99_ns")), "{:.0f}", 1e-3),
                    _fmt(m(_lat("p99_9_ns")), "{:.0f}", 1e-3), _fmt(m(_lat("max_ns")), "{:.0f}", 1e-3),
                    _fmt(m(_d("agg_cpu_us_per_msg")), "{:.2f}"), _fmt(m(_d("prod_cpu_us_per_msg")), "{:.2f}"),
                    _fmt(m(_loss_pct), "{:.2f}"),
                    _fmt(m(lambda r: r.seq.duplicates if r.seq else None), "{:.0f}"),
                    _fmt(m(lambda r: r.seq.reordered if r.seq else None), "{:.0f}"),
                    _fmt(m(lambda r: r.aggregator.peak_rss_bytes if r.aggregator else None), "{:.1f}", 1 / 2**20),
                    _fmt(m(lambda r: (r.aggregator.voluntary_ctx_switches + r.aggregator.involuntary_ctx_switches) if r.aggregator else None), "{:,.0f}"),
                ])  # fmt: skip
        blocks.append(("table", header, rows))
    return blocks


def _verdicts(groups) -> list[str]:
    lines = []
    for runs in groups.values():
        g = _group_label(runs)
        transports = _order(r.transport for r in runs)
        for t in transports:
            for key, label, higher_better in (("messages_per_s", "messages/s", True), ("agg_cpu_us_per_msg", "aggregator CPU per message", False)):
                a, b = _metric(runs, OWN, t, _d(key)), _metric(runs, PEER, t, _d(key))
                if not (a and b):
                    continue
                q = stats.ratio(a, b)
                if q is None:
                    continue
                noise = " — too noisy to rank (ranges overlap)" if a.overlaps(b) else ""
                lines.append(f"[{g}] {t}: loglab {q.median:.2f}x syslog-ng {label} (range {q.min:.2f}–{q.max:.2f}){noise}")
        # ranking of transports by messages/s, per system
        for system in _systems(runs):
            spreads = [(t, _metric(runs, system, t, _d("messages_per_s"))) for t in transports]
            spreads = sorted([x for x in spreads if x[1]], key=lambda x: -x[1].median)
            if len(spreads) < 2:
                continue
            parts = [spreads[0][0]]
            for (t0, s0), (t1, s1) in zip(spreads, spreads[1:]):
                parts.append(("≈ " if s0.overlaps(s1) else "> ") + t1)
            tied = [f"{t0}/{t1}" for (t0, s0), (t1, s1) in zip(spreads, spreads[1:]) if s0.overlaps(s1)]
            tail = f" (≈: too noisy to rank: {', '.join(tied)})" if tied else ""
            lines.append(f"[{g}] {system} messages/s ranking: {' '.join(parts)}{tail}")
        for t in transports:
            for system in _systems(runs):
                s = _metric(runs, system, t, _loss_pct)
                if s and s.max > 0:
                    lines.append(f"[{g}] {t} / {system}: lost {s.format('{:.2f}')} % of messages")
    return lines or ["Not enough measured runs to compute a verdict."]


def _overhead_rows(measured: list[RunRecord], traced: list[RunRecord]) -> list[list[str]]:
    rows = []
    for r in traced:
        same = [m for m in measured if _group_key(m) == _group_key(r) and m.transport == r.transport and m.system == r.system]
        cells = []
        for key in ("messages_per_s", "agg_cpu_us_per_msg"):
            base = stats.spread(m.derived.get(key) for m in same)
            value = r.derived.get(key)
            if base is None or value is None or not base.median:
                cells.append("–")
                continue
            change = (value / base.median - 1) * 100
            noise = " (within noise)" if base.min <= value <= base.max else ""
            cells.append(f"{change:+.1f} %{noise}")
        rows.append([r.scenario, r.transport, r.system, *cells])
    return rows


def _soak_blocks(res: Results, charts: list) -> list:
    """A soak (``loglab soak --out RESULTS_DIR``) stored beside the results: its chart and table."""
    path = res.path.parent / "soak.json" if res.path else None
    if path is None or not path.exists():
        return []
    import json

    from .faults.soak import plot_soak

    soak = json.loads(path.read_text())
    tmp = path.with_name(".soak-chart.png")
    plot_soak(soak, tmp)
    png = tmp.read_bytes()
    tmp.unlink()
    chart = Chart("soak", "Soak: memory, file descriptors and delivery over time",
                  "Top: the aggregator's resident memory; middle: its open file descriptors; bottom: messages sent but "
                  "not yet written (in flight; returns to 0 on reliable transports). Flat lines mean no growth.", png)  # fmt: skip
    charts.append(chart)
    rows = [[t, e["sent"], e["written"], e["lost"], f"{e['rss_first_bytes'] / 2**20:.1f} → {e['rss_last_bytes'] / 2**20:.1f}",
             f"{e['fds_first']} → {e['fds_last']}", e["verdict"]["no_growth"], e["verdict"]["no_loss"]]
            for t, e in soak["transports"].items()]  # fmt: skip
    return [("h2", "Soak"), ("chart", chart),
            ("table", ["transport", "sent", "written", "lost", "RSS MiB first → last", "fds first → last", "no growth", "no loss"], rows)]  # fmt: skip


def _loglab_workers(runs) -> dict[str, str]:
    """Per transport, the worker counts loglab's runs had (from each run's own stats file)."""
    seen: dict[str, set] = defaultdict(set)
    for r in runs:
        if r.system == "loglab" and r.system_stats:
            seen[r.transport].add(r.system_stats.get("workers", 1))
    return {t: "/".join(map(str, sorted(n))) for t, n in sorted(seen.items())}


def build_blocks(res: Results) -> tuple[list, list[Chart]]:
    measured = res.measured()
    traced = res.traced()
    warmups = len(res.runs) - len(measured) - len(traced)
    groups = _groups(measured)
    blocks: list = [("h1", "loglab benchmark report")]
    blocks.append(("p", f"{len(measured)} measured runs, {warmups} warm-up runs (left out of every figure), "
                        f"{len(traced)} traced runs (syscall figures only). "
                        f"Results {'complete' if res.complete else 'INCOMPLETE (the benchmark did not finish)'}; "
                        f"schema_version {res.schema_version}. Figures: median [min–max] over repeats."))  # fmt: skip
    workers = _loglab_workers(measured)
    if workers:
        blocks.append(("p", "loglab's receiving processes (--workers; syslog-ng runs its own threads): "
                            + ", ".join(f"{t} {n}" for t, n in workers.items()) + "."))  # fmt: skip
    notes = list(res.notes)
    if res.peer and not res.peer.get("available", True):
        notes.append(f"Peer {res.peer.get('name', PEER)} unavailable: {res.peer.get('reason') or 'no reason given'}")
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
    if notes:
        blocks += [("h2", "Notes"), ("ul", sorted(set(notes), key=notes.index))]
    blocks += [("h2", "Verdict"), ("ul", _verdicts(groups))]

    charts: list[Chart] = []
    if groups:
        charts.append(Chart("throughput", "Throughput per transport",
                            "Bars: median delivered messages/s over the measured window, per transport; loglab plain, syslog-ng hatched; "
                            "whiskers: min and max over repeats. Overlapping whiskers: too noisy to rank.",
                            _bar_chart(groups, _d("messages_per_s"), "delivered messages/s", "Throughput per transport")))  # fmt: skip
        if any(r.latency for r in measured):
            charts.append(Chart("latency_percentiles", "Latency percentiles",
                                "Each line is one transport/system (solid loglab, dashed syslog-ng): the median over repeats of each "
                                "latency percentile, from the producer's intended send time to receipt (µs, log scale); "
                                "error bars: min–max over repeats. Lower is better.", _latency_percentiles(groups)))  # fmt: skip
            charts.append(Chart("latency_cdf", "Latency CDF",
                                "Fraction of messages (y) delivered within a latency (x, µs, log scale), from the stored samples of all "
                                "measured repeats pooled; further left is better, a long tail to the right means outliers. "
                                "Values ≤ 0 (a peer's receipt stamp before the send) are drawn at 0.001 µs.", _latency_cdf(groups)))  # fmt: skip
        charts.append(Chart("cpu_per_message", "Aggregator CPU per message",
                            "Bars: median on-CPU time of the receiver (loglab's aggregator with its workers, or syslog-ng with its threads) over the window, "
                            "divided by messages delivered (µs per message); whiskers min–max over repeats. Lower is better.",
                            _bar_chart(groups, _d("agg_cpu_us_per_msg"), "aggregator CPU (µs per message)", "Aggregator CPU per message")))  # fmt: skip
        charts.append(Chart("loss", "Loss",
                            "Percentage of expected messages missing from the output (sequence check), median with min–max over repeats. "
                            "With several offered rates: x is the rate offered by all producers together (datagram transports only).",
                            _loss_chart(measured)))  # fmt: skip
        ratio_groups = {k: v for k, v in groups.items() if {OWN, PEER} <= {r.system for r in v}}
        if ratio_groups:
            charts.append(Chart("peer_ratio", "loglab / syslog-ng",
                                "Bars: loglab's median divided by syslog-ng's median, per transport (above 1: loglab delivers more "
                                "messages/s, or uses more CPU per message). Whiskers: the smallest and largest ratio over every pairing "
                                "of a loglab repeat with a syslog-ng repeat.", _ratio_chart(ratio_groups)))  # fmt: skip
        if any(trace_side(r.trace, "producer") or trace_side(r.trace, "aggregator") for r in traced):
            charts.append(Chart("syscalls", "Syscalls per message",
                                "Bars: syscalls per message counted by the tracer in the window of the traced run (one extra run per "
                                "cell, left out of every other figure), producer side below, aggregator side stacked on top "
                                "(median over the traced runs of all scenarios). Fewer is cheaper.", _syscall_chart(traced)))  # fmt: skip
    if charts:
        blocks.append(("h2", "Charts"))
        blocks += [("chart", c) for c in charts]
    blocks += [("h2", "Results per scenario")] + _tables(groups)
    if any(r.trace for r in traced):
        rows = []
        for t in _order(r.transport for r in traced):
            for system in _systems(traced):
                p = _metric(traced, system, t, lambda r: _spm(trace_side(r.trace, "producer")))
                a = _metric(traced, system, t, lambda r: _spm(trace_side(r.trace, "aggregator")))
                top = next((_top(trace_side(r.trace, "aggregator")) for r in traced if r.transport == t and r.system == system and r.trace), "")
                if p or a:
                    rows.append([t, system, _fmt(p, "{:.2f}"), _fmt(a, "{:.2f}"), top])
        blocks += [("h2", "Tracing"), ("table", ["transport", "system", "producer syscalls/msg", "aggregator syscalls/msg", "aggregator top syscalls"], rows)]
        blocks += [("p", "Tracer overhead: each traced run against the median of the untraced repeats of the same cell "
                         "(negative: the traced run was slower / used more CPU). Within the untraced min–max range means "
                         "the overhead is not distinguishable from noise.")]  # fmt: skip
        blocks.append(("table", ["scenario", "transport", "system", "msg/s traced vs untraced", "agg CPU/msg traced vs untraced"], _overhead_rows(measured, traced)))
    soak = _soak_blocks(res, charts)
    blocks += soak
    blocks += _pipeline_blocks([r for r in measured if r.scenario == "pipeline"])
    blocks += [("h2", "Workload parameters"), ("table", ["parameter", "value"], [[k, _short(v)] for k, v in res.params.items()])]
    env_rows = []
    for k, v in res.environment.items():
        if isinstance(v, dict):
            env_rows += [[f"{k}.{kk}", _short(vv)] for kk, vv in v.items()]
        else:
            env_rows.append([k, _short(v)])
    blocks += [("h2", "Environment"), ("table", ["key", "value"], env_rows)]
    return blocks, charts


def _pipeline_blocks(runs: list[RunRecord]) -> list:
    """The pipeline scenario (natslab/bench.py): the shipper against nats-py's ceilings."""
    if not runs:
        return []
    header = ["workload", "system", "stream", "n", "messages/s", "p50 ms", "p99 ms", "p99.9 ms",
              "publisher CPU µs/msg", "nats-server CPU µs/msg", "aggregator CPU µs/msg", "missing", "dup"]  # fmt: skip
    rows = []
    for runs_g in _groups(runs).values():
        p = runs_g[0].point
        load = f"{p.producers}x{p.rate:,.0f}/s" if p.rate else f"{p.producers} flat out" if p.producers > 1 else "from memory"
        for t in _order(r.transport for r in runs_g):
            for system in _systems(runs_g):
                sel = [r for r in runs_g if r.transport == t and r.system == system and r.status == "ok"]
                if not sel:
                    continue
                m = lambda fn: _metric(runs_g, system, t, fn)  # noqa: E731
                rows.append([load, system, t, str(len(sel)), _fmt(m(_d("messages_per_s")), "{:,.0f}"),
                             _fmt(m(_lat("p50_ns")), "{:.1f}", 1e-6), _fmt(m(_lat("p99_ns")), "{:.1f}", 1e-6),
                             _fmt(m(_lat("p99_9_ns")), "{:.1f}", 1e-6), _fmt(m(_d("shipper_cpu_us_per_msg")), "{:.1f}"),
                             _fmt(m(_d("nats_cpu_us_per_msg")), "{:.1f}"), _fmt(m(_d("agg_cpu_us_per_msg")), "{:.2f}"),
                             _fmt(m(lambda r: r.seq.missing if r.seq else None), "{:.0f}"),
                             _fmt(m(lambda r: r.seq.duplicates if r.seq else None), "{:.0f}")])  # fmt: skip
    return [("h2", "Pipeline: producers -> aggregator -> shipper -> JetStream"),
            ("p", "Latency: the producer's intended send time to the stream's timestamp of the message. Publisher CPU: "
                  "the shipper, or the ceiling's Python publisher (nats-py from memory). Median [min–max] over repeats."),
            ("table", header, rows)]  # fmt: skip


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
        return "; ".join(", ".join(f"{k}={_short(x)}" for k, x in d.items() if k != "points") for d in v)
    text = str(v)
    return text if len(text) <= 300 else text[:297] + "..."


# -- renderers --------------------------------------------------------------------------------------
def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + b[1] + "\n")
        elif kind == "p":
            out.append(b[1] + "\n")
        elif kind == "ul":
            out.append("\n".join(f"- {x}" for x in b[1]) + "\n")
        elif kind == "table":
            out.append("| " + " | ".join(map(_md_cell, b[1])) + " |")
            out.append("|" + "---|" * len(b[1]))
            out += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in b[2]]
            out.append("")
        elif kind == "chart":
            c = b[1]
            out.append(f"### {c.title}\n\n![{c.title}]({c.name}.png)\n\n*{c.caption}*\n")
    return "\n".join(out)


def to_html(blocks) -> str:
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>loglab benchmark report</title>",
           "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;font-size:12px}"
           "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}.cap{font-style:italic;color:#444}</style></head><body>"]  # fmt: skip
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{e(b[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{e(b[1])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in b[1]) + "</ul>")
        elif kind == "table":
            out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in b[1]) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in b[2]]
            out.append("</table>")
        elif kind == "chart":
            c = b[1]
            data = base64.b64encode(c.png).decode()
            out.append(f"<h3>{e(c.title)}</h3><img alt='{e(c.title)}' src='data:image/png;base64,{data}'><p class='cap'>{e(c.caption)}</p>")
    out.append("</body></html>")
    return "\n".join(out)


def render(results_dir, out_dir=None) -> ReportFiles:
    """Render ``report.md``, ``report.html`` and ``<chart>.png`` files into ``out_dir`` (default:
    the results directory) from the results files only."""
    res = load_results(results_dir)
    out = Path(out_dir) if out_dir else Path(res.path).parent
    out.mkdir(parents=True, exist_ok=True)
    blocks, charts = build_blocks(res)
    paths = []
    for c in charts:
        p = out / f"{c.name}.png"
        p.write_bytes(c.png)
        paths.append(p)
    md, ht = out / "report.md", out / "report.html"
    md.write_text(to_markdown(blocks), encoding="utf-8")
    ht.write_text(to_html(blocks), encoding="utf-8")
    return ReportFiles(md, ht, paths)


__all__ = ["render", "build_blocks", "ReportFiles", "trace_side"]
