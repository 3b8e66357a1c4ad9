"""The report's charts, drawn with matplotlib's Agg backend from result records only: PNG bytes that
the content embeds (HTML) or writes beside the report (Markdown). One panel per group (at most
``MAX_PANELS``); one colour per transport, one line style or hatch per system."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..results import RunRecord  # noqa: E402
from .data import (  # noqa: E402
    DATAGRAM,
    SYSTEM_STYLE,
    color,
    group_label,
    latency,
    loss_pct,
    metric,
    order,
    ratio,
    syscalls_per_message,
    systems,
    trace_side,
)

MAX_PANELS = 8


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


def bar_chart(groups, fn, ylabel: str, title: str, scale: float = 1.0):
    fig, axes = _panels(len(groups))
    for ax, runs in zip(axes, list(groups.values())[:MAX_PANELS]):
        transports = order(r.transport for r in runs)
        shown = systems(runs)
        width = 0.8 / max(1, len(shown))
        for j, system in enumerate(shown):
            xs, meds, lo, hi = [], [], [], []
            for i, t in enumerate(transports):
                s = metric(runs, system, t, fn)
                if s is None:
                    continue
                xs.append(i + (j - (len(shown) - 1) / 2) * width)
                meds.append(s.median * scale)
                lo.append((s.median - s.min) * scale)
                hi.append((s.max - s.median) * scale)
            if xs:
                ax.bar(xs, meds, width, yerr=[lo, hi], capsize=4, label=f"{system} (median, whiskers min–max)",
                       hatch=SYSTEM_STYLE.get(system, {}).get("hatch", ""), edgecolor="black", alpha=0.85)  # fmt: skip
        ax.set_xticks(range(len(transports)), transports)
        ax.set_xlabel("transport")
        ax.set_ylabel(ylabel)
        ax.set_title(group_label(runs), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _png(fig)


def latency_percentiles(groups):
    names = [("p50_ns", "p50"), ("p90_ns", "p90"), ("p99_ns", "p99"), ("p99_9_ns", "p99.9"), ("max_ns", "max")]
    fig, axes = _panels(len(groups))
    for ax, runs in zip(axes, list(groups.values())[:MAX_PANELS]):
        for t in order(r.transport for r in runs):
            for system in systems(runs):
                xs, meds, lo, hi = [], [], [], []
                for i, (key, _) in enumerate(names):
                    s = metric(runs, system, t, latency(key))
                    if s is None:
                        continue
                    med = max(s.median / 1e3, 1e-3)
                    xs.append(i)
                    meds.append(med)
                    lo.append(med - max(s.min / 1e3, 1e-3))
                    hi.append(max(s.max / 1e3, 1e-3) - med)
                if xs:
                    ax.errorbar(xs, meds, yerr=[lo, hi], capsize=3, marker="o", ls=SYSTEM_STYLE.get(system, {}).get("ls", ":"),
                                color=color(t), label=f"{t} / {system}")  # fmt: skip
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), [n for _, n in names])
        ax.set_xlabel("percentile of latency to the output file")
        ax.set_ylabel("latency (µs, log scale)")
        ax.set_title(group_label(runs), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Latency percentiles: intended send -> the line is in the output file (one observer for every system)")
    return _png(fig)


def latency_cdf(groups):
    fig, axes = _panels(len(groups))
    for ax, runs in zip(axes, list(groups.values())[:MAX_PANELS]):
        for t in order(r.transport for r in runs):
            for system in systems(runs):
                samples = sorted(
                    s for r in runs if r.system == system and r.transport == t and r.latency for s in r.latency.samples_ns
                )
                if not samples:
                    continue
                n = len(samples)
                xs = [max(s / 1e3, 1e-3) for s in samples]
                ys = [(i + 1) / n for i in range(n)]
                ax.plot(xs, ys, ls=SYSTEM_STYLE.get(system, {}).get("ls", ":"), color=color(t), label=f"{t} / {system}")
        ax.set_xscale("log")
        ax.set_xlabel("latency to the output file (µs, log scale)")
        ax.set_ylabel("fraction of messages ≤ x")
        ax.set_ylim(0, 1.01)
        ax.set_title(group_label(runs), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Latency CDF (stored samples of all measured repeats pooled)")
    return _png(fig)


def loss_chart(runs: list[RunRecord]):
    dgram = [r for r in runs if r.transport in DATAGRAM and r.workload.rate > 0]
    rates = {r.workload.offered_rate for r in dgram}
    fig, axes = _panels(1, 4)
    ax = axes[0]
    if len(rates) >= 2:
        for t in order(r.transport for r in dgram):
            for system in systems(dgram):
                pts = []
                for rate in sorted(rates):
                    sel = [r for r in dgram if r.workload.offered_rate == rate]
                    s = metric(sel, system, t, loss_pct)
                    if s is not None:
                        pts.append((rate, s))
                if pts:
                    ax.errorbar([p[0] for p in pts], [p[1].median for p in pts],
                                yerr=[[p[1].median - p[1].min for p in pts], [p[1].max - p[1].median for p in pts]],
                                capsize=3, marker="o", ls=SYSTEM_STYLE.get(system, {}).get("ls", ":"), color=color(t), label=f"{t} / {system}")  # fmt: skip
        ax.set_xlabel("offered rate, all producers (messages/s)")
        title = "Loss versus offered rate (datagram transports)"
    else:
        keys, meds, errs = [], [], [[], []]
        for t in order(r.transport for r in runs):
            for system in systems(runs):
                s = metric(runs, system, t, loss_pct)
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


def ratio_chart(groups):
    fig, axes = _panels(len(groups))
    for ax, runs in zip(axes, list(groups.values())[:MAX_PANELS]):
        transports = order(r.transport for r in runs)
        for j, (key, label) in enumerate((("messages_per_s", "messages/s"), ("agg_cpu_us_per_msg", "aggregator CPU per message"))):
            xs, meds, lo, hi = [], [], [], []
            for i, t in enumerate(transports):
                q = ratio(runs, t, key)
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
        ax.set_title(group_label(runs), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("loglab relative to syslog-ng (1.0 = equal)")
    return _png(fig)


def syscall_chart(groups):
    """Syscalls per message per side, one panel per scenario group: never pooled across batch sizes
    or rates (64 lines per write and one per write are different costs)."""
    fig, axes = _panels(len(groups), 3.6)
    for ax, runs in zip(axes, list(groups.values())[:MAX_PANELS]):
        keys, prod, agg = [], [], []
        for t in order(r.transport for r in runs):
            for system in systems(runs):
                p = metric(runs, system, t, lambda r: syscalls_per_message(trace_side(r.trace, "producer")))
                a = metric(runs, system, t, lambda r: syscalls_per_message(trace_side(r.trace, "aggregator")))
                if p or a:
                    keys.append(f"{t}\n{system}")
                    prod.append(p.median if p else 0)
                    agg.append(a.median if a else 0)
        x = range(len(keys))
        ax.bar(x, prod, label="producer side", edgecolor="black")
        ax.bar(x, agg, bottom=prod, label="receiver side", edgecolor="black", hatch="//")
        ax.set_xticks(x, keys, fontsize=7)
        ax.set_ylabel("syscalls per message")
        ax.set_title(group_label(runs), fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Syscalls per message, stacked by side (traced run of each cell)")
    return _png(fig)


def format_chart(runs):
    """Receiver CPU per message per input format and framing (x), a bar per system, a panel per
    transport (the formats scenario)."""
    transports = order(r.transport for r in runs)
    fig, axes = _panels(len(transports))
    for ax, t in zip(axes, transports[:MAX_PANELS]):
        sel = [r for r in runs if r.transport == t]
        shapes = list(dict.fromkeys((r.workload.format, r.workload.framing) for r in sel))
        shown = systems(sel)
        width = 0.8 / max(1, len(shown))
        for j, system in enumerate(shown):
            xs, meds, lo, hi = [], [], [], []
            for i, shape in enumerate(shapes):
                s = metric([r for r in sel if (r.workload.format, r.workload.framing) == shape], system, t,
                           lambda r: r.derived.get("agg_cpu_us_per_msg"))  # fmt: skip
                if s is None:
                    continue
                xs.append(i + (j - (len(shown) - 1) / 2) * width)
                meds.append(s.median)
                lo.append(s.median - s.min)
                hi.append(s.max - s.median)
            if xs:
                ax.bar(xs, meds, width, yerr=[lo, hi], capsize=4, label=system, edgecolor="black", alpha=0.85,
                       hatch=SYSTEM_STYLE.get(system, {}).get("hatch", ""))  # fmt: skip
        ax.set_xticks(range(len(shapes)), [f"{f}\n{fr}" for f, fr in shapes], fontsize=8)
        ax.set_ylabel("receiver CPU (µs per message)")
        ax.set_title(f"{t}: {sel[0].workload.producers} producers x {sel[0].workload.rate:,.0f} msg/s", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Cost per input format and framing")
    return _png(fig)
