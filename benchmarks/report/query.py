"""The query scenario's part of the report (``loglab bench --scenarios query``, natslab/querybench.py):
the latency chart per token, the tables and the sentences that say how close each goal is, where
the time goes and why one token costs more than another. From result records only.

A query run is one cell: ``figures["mode"]`` (the floor or the distributed query, counts only or full
output), ``figures["token"]``, ``figures["cache"]`` (warm, cold), with every trial's seconds in
``figures["trials_s"]`` (ten or more) and, per trial, what each host scanned, matched and returned
and the CPU of each component. A cell's figures are over all its trials (of every pass): mean, one
standard deviation and p95, as the classic distributed-grep write-up plotted them.
"""

from __future__ import annotations

import statistics

from ..results import RunRecord, stats
from .blocks import BulletList, Chart, Heading, Paragraph, Table

SCENARIO = "query"
TOKENS = ("everywhere", "unique", "even", "heavy")
CACHES = ("warm", "cold")
FLOOR_COUNT, QUERY_COUNT, FLOOR_FULL, QUERY_FULL, COMMAND = (
    "floor --count", "querier --count", "floor (full output)", "querier (full output)", "querier command --count")  # fmt: skip
MODES = (FLOOR_COUNT, QUERY_COUNT, FLOOR_FULL, QUERY_FULL, COMMAND)
GOAL_RATIO = 1.2  # the goal: a distributed --count within 1.2x of the floor
CHART_NAME = "query_latency"

Cells = dict[tuple[str, str, str], list[RunRecord]]


def query_runs(runs: list[RunRecord]) -> list[RunRecord]:
    return [r for r in runs if r.scenario == SCENARIO and r.kind == "bench" and not r.is_warmup and r.ok and r.figures.get("trials_s")]


def cells_of(runs: list[RunRecord]) -> Cells:
    out: Cells = {}
    for r in runs:
        f = r.figures
        out.setdefault((f["mode"], f["token"], f["cache"]), []).append(r)
    return out


def samples(cells: Cells, mode: str, token: str, cache: str) -> list[float]:
    return sorted(s for r in cells.get((mode, token, cache), []) for s in r.figures["trials_s"])


def mean(cells: Cells, mode: str, token: str, cache: str) -> float | None:
    s = samples(cells, mode, token, cache)
    return statistics.fmean(s) if s else None


def _std(s: list[float]) -> float:
    return statistics.stdev(s) if len(s) > 1 else 0.0


def _ms(s: list[float]) -> str:
    """``mean ± std [p95]`` in ms."""
    if not s:
        return "–"
    return f"{statistics.fmean(s) * 1e3:.1f} ± {_std(s) * 1e3:.1f} [{stats.percentile(s, 95) * 1e3:.1f}]"


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e5 else f"{n_bytes / 1e3:.1f} kB"


def _fig(cells: Cells, mode: str, token: str, cache: str, key: str) -> float | None:
    sel = [r.figures[key] for r in cells.get((mode, token, cache), []) if r.figures.get(key) is not None]
    return statistics.fmean(sel) if sel else None


def ratio(cells: Cells, mode: str, floor: str, token: str, cache: str) -> float | None:
    a, b = mean(cells, mode, token, cache), mean(cells, floor, token, cache)
    return a / b if a and b else None


def caches_in(cells: Cells) -> list[str]:
    return [c for c in CACHES if any(k[2] == c for k in cells)]


def setup_text(runs: list[RunRecord]) -> str:
    f = runs[0].figures
    passes = len({r.repeat for r in runs})
    trials = min(len(r.figures["trials_s"]) for r in runs if r.figures["mode"] != COMMAND)
    notes = "; ".join(dict.fromkeys(n for r in runs for n in r.notes))
    return (f"{f['hosts']} hosts x {f['bytes_per_host'] / 1e6:.1f} MB of generated records, scanned with {f['scanner']}; "
            f"NATS with {f['nats_nodes']} node(s); {trials} trials per cell and pass, {passes} pass(es), the modes' order "
            f"rotated per trial; cold cache: the page cache dropped before every trial. {notes}.")  # fmt: skip


# -- the chart --------------------------------------------------------------------------------------


def latency_chart(runs: list[RunRecord]) -> bytes:
    """The classic chart: latency per token, mean and one standard deviation over the trials, each
    distributed mode beside its floor; warm and cold cache side by side; log scale."""
    from .charts import _png, plt

    cells = cells_of(runs)
    caches = caches_in(cells)
    modes = [m for m in MODES if any(k[0] == m for k in cells)]
    fig, axes = plt.subplots(1, len(caches), figsize=(6.5 * len(caches), 4.6), squeeze=False, layout="constrained")
    width = 0.8 / max(1, len(modes))
    for ax, cache in zip(axes[0], caches):
        for j, mode in enumerate(modes):
            means, stds = [], []
            for token in TOKENS:
                s = samples(cells, mode, token, cache)
                means.append(statistics.fmean(s) * 1e3 if s else float("nan"))
                stds.append(_std(s) * 1e3)
            xs = [i + (j - (len(modes) - 1) / 2) * width for i in range(len(TOKENS))]
            ax.bar(xs, means, width, yerr=stds, capsize=3, label=mode, edgecolor="black", linewidth=0.4,
                   hatch="//" if mode.startswith("floor") else "")  # fmt: skip
        n = min((len(r.figures["trials_s"]) for r in runs if r.figures["cache"] == cache and r.figures["mode"] != COMMAND), default=0)
        n_command = min((len(r.figures["trials_s"]) for r in runs if r.figures["cache"] == cache and r.figures["mode"] == COMMAND), default=0)
        ax.set_title(f"{cache} cache ({n} trials per bar" + (f", the command {n_command}" if n_command else "") + "; error bars: 1 std)", fontsize=10)
        ax.set_xticks(range(len(TOKENS)), TOKENS)
        ax.set_ylabel("latency (ms, log scale)")
        ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3, which="both")
    f0 = runs[0].figures
    fig.suptitle(f"Distributed query latency per token: {f0['hosts']} hosts x {f0['bytes_per_host'] / 1e6:.0f} MB, "
                 f"{f0['scanner']}, NATS {f0['nats_nodes']} node(s)", fontsize=11)  # fmt: skip
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    return _png(fig)


def chart(runs: list[RunRecord]) -> Chart:
    return Chart(CHART_NAME, "Distributed query latency per token",
                 "Bars: mean over the trials, whiskers one standard deviation (log scale). Hatched: the floor, the "
                 "scanning tool run directly on the four hosts' files at once; plain: through the query agents and "
                 "NATS to the querier. --count returns only counts; full output returns every matching line.",
                 latency_chart(runs))  # fmt: skip


# -- tables and sentences ---------------------------------------------------------------------------


def latency_table(cells: Cells, cache: str) -> Table:
    header = ["token", FLOOR_COUNT, QUERY_COUNT, "count / floor", FLOOR_FULL, QUERY_FULL, "full / floor", "delivered to the querier"]
    if any(k[0] == COMMAND and k[2] == cache for k in cells):
        header.append(COMMAND)
    rows = []
    for token in TOKENS:
        rc, rf = ratio(cells, QUERY_COUNT, FLOOR_COUNT, token, cache), ratio(cells, QUERY_FULL, FLOOR_FULL, token, cache)
        mb, rate = _fig(cells, QUERY_FULL, token, cache, "bytes_out_per_trial"), _fig(cells, QUERY_FULL, token, cache, "delivered_mb_per_s")
        row = [token, _ms(samples(cells, FLOOR_COUNT, token, cache)), _ms(samples(cells, QUERY_COUNT, token, cache)),
               f"{rc:.2f}x" if rc else "–", _ms(samples(cells, FLOOR_FULL, token, cache)), _ms(samples(cells, QUERY_FULL, token, cache)),
               f"{rf:.2f}x" if rf else "–", f"{_size(mb)} at {rate:.0f} MB/s" if mb is not None and rate else "–"]  # fmt: skip
        if len(header) > len(row):
            row.append(_ms(samples(cells, COMMAND, token, cache)))
        rows.append(row)
    return Table(header, rows)


def goal_lines(cells: Cells, rerun: Cells | None) -> list[str]:
    """How close the distributed --count is to 1.2x its floor, per cache: the worst token, both runs."""
    lines = []
    for cache in caches_in(cells):
        per_run = []
        for c in [cells] + ([rerun] if rerun else []):
            ratios = {t: ratio(c, QUERY_COUNT, FLOOR_COUNT, t, cache) for t in TOKENS}
            ratios = {t: v for t, v in ratios.items() if v}
            if ratios:
                per_run.append(ratios)
        if not per_run:
            continue
        worst = max(max(r.values()) for r in per_run)
        met = "met" if worst <= GOAL_RATIO else "NOT met"
        runs = "; rerun: ".join(", ".join(f"{t} {v:.2f}x" for t, v in r.items()) for r in per_run)
        lines.append(f"**{cache} cache, `querier --count` against the floor (goal: within {GOAL_RATIO}x): {met}**, worst "
                     f"{worst:.2f}x ({runs}).")  # fmt: skip
        full = [(t, ratio(cells, QUERY_FULL, FLOOR_FULL, t, cache), _fig(cells, QUERY_FULL, t, cache, "delivered_mb_per_s")) for t in TOKENS]
        full = [(t, r, m) for t, r, m in full if r]
        if full:
            lines.append(f"{cache} cache, full output (first run): " + ", ".join(f"{t} {r:.2f}x the floor ({m:.0f} MB/s delivered)" for t, r, m in full) + ".")
    return lines


def per_host_table(cells: Cells) -> Table:
    """Bytes scanned per second on each host, from the agent's own scan time (receipt of the query to
    the end of its scanner), --count and full output."""
    hosts = sorted({h for rs in cells.values() for r in rs for h in r.figures.get("per_host", {})}, key=lambda h: (len(h), h))
    header = ["cache", "mode", "token"] + hosts
    rows = []
    for cache in caches_in(cells):
        for mode in (QUERY_COUNT, QUERY_FULL):
            for token in TOKENS:
                sel = cells.get((mode, token, cache)) or []
                if not sel:
                    continue
                rate = lambda h: statistics.fmean(r.figures["per_host"][h]["scanned_mb_per_s"] for r in sel)  # noqa: E731
                rows.append([cache, mode, token] + [f"{rate(h):.0f}" for h in hosts])
    return Table(header, rows)


CPU_PARTS = (("scanners", "mean_scanner_cpu_s"), ("agents", "mean_agent_cpu_s"), ("NATS servers", "mean_nats_cpu_s"), ("querier", "mean_querier_cpu_s"))


def time_table(cells: Cells, cache: str = "warm") -> Table:
    header = ["query", "latency ms", *(f"{name} CPU ms" for name, _ in CPU_PARTS), "cores busy", "agents waiting on acks ms (mean per host)",
              "first data ms (mean per host)"]  # fmt: skip
    rows = []
    for token in TOKENS:
        for mode in (QUERY_COUNT, QUERY_FULL):
            sel = cells.get((mode, token, cache)) or []
            if not sel:
                continue
            wall = _fig(cells, mode, token, cache, "mean_s")
            cpu = [_fig(cells, mode, token, cache, key) or 0.0 for _, key in CPU_PARTS]
            hosts = list(sel[0].figures["per_host"])
            wait = statistics.fmean(r.figures["per_host"][h]["wait_s"] for r in sel for h in hosts)
            first = [t["hosts"][h]["first_data_s"] for r in sel for t in r.figures["trials"] for h in hosts if t["hosts"][h]["first_data_s"] is not None]
            rows.append([f"{token} ({'full' if mode == QUERY_FULL else 'count'})", f"{wall * 1e3:.1f}", *(f"{c * 1e3:.0f}" for c in cpu),
                         f"{sum(cpu) / wall:.2f}", f"{wait * 1e3:.1f}", f"{statistics.fmean(first) * 1e3:.1f}" if first else "–"])  # fmt: skip
    return Table(header, rows)


def time_lines(cells: Cells, cache: str = "warm") -> list[str]:
    """Where the time of the heaviest full-output query goes, in words, from the CPU figures."""
    full = [(t, _fig(cells, QUERY_FULL, t, cache, "bytes_out_per_trial") or 0.0) for t in TOKENS if cells.get((QUERY_FULL, t, cache))]
    if not full:
        return []
    token = max(full, key=lambda x: x[1])[0]
    wall = _fig(cells, QUERY_FULL, token, cache, "mean_s")
    cpu = {name: _fig(cells, QUERY_FULL, token, cache, key) or 0.0 for name, key in CPU_PARTS}
    top = max(cpu, key=cpu.get)
    count = mean(cells, QUERY_COUNT, token, cache)
    floor = mean(cells, FLOOR_FULL, token, cache)
    sel = cells[(QUERY_FULL, token, cache)]
    hosts = list(sel[0].figures["per_host"])
    wait = statistics.fmean(r.figures["per_host"][h]["wait_s"] for r in sel for h in hosts)
    scan = statistics.fmean(r.figures["per_host"][h]["scan_s"] for r in sel for h in hosts)
    return [
        f"The heaviest answer, `{token}` with full output ({cache} cache): {_fig(cells, QUERY_FULL, token, cache, 'bytes_out_per_trial') / 1e6:.1f} MB "
        f"delivered in {wall * 1e3:.0f} ms ({_fig(cells, QUERY_FULL, token, cache, 'delivered_mb_per_s'):.0f} MB/s), against "
        f"{count * 1e3:.0f} ms for its count and {floor * 1e3:.0f} ms for the tool printing the same lines into pipes.",
        "CPU per query: " + ", ".join(f"{name} {v * 1e3:.0f} ms" for name, v in cpu.items()) +
        f"; on average {sum(cpu.values()) / wall:.2f} cores busy over the query. The largest part is the {top} "
        f"({cpu[top] / sum(cpu.values()):.0%} of the CPU).",
        f"Each agent spent {wait * 1e3:.0f} ms of its {scan * 1e3:.0f} ms answering waiting for the querier's acks (its window "
        f"of unacknowledged messages full): " + ("delivery through NATS to the querier and back sets the pace, not the scan."
                                                 if wait > 0.3 * scan else "delivery kept up with the scan."),
    ]  # fmt: skip


def tokens_table(cells: Cells, cache: str = "warm") -> Table:
    any_full = next((rs[0] for k, rs in cells.items() if k[0] == QUERY_FULL), None)
    hosts = sorted(any_full.figures["expected"], key=lambda h: (len(h), h)) if any_full else []
    header = ["token", *(f"{h}: matching lines" for h in hosts), "MB returned", "count ms", "full ms", "full - count ms", "ms per MB returned"]
    rows = []
    for token in TOKENS:
        sel = cells.get((QUERY_FULL, token, cache)) or []
        if not sel:
            continue
        f = sel[0].figures
        mb = _fig(cells, QUERY_FULL, token, cache, "bytes_out_per_trial") / 1e6
        c, full = mean(cells, QUERY_COUNT, token, cache), mean(cells, QUERY_FULL, token, cache)
        extra = (full - c) * 1e3 if c is not None else None
        rows.append([token, *(f"{f['expected'][h][token]:,} ({f['expected'][h][token] / f['lines'][h]:.1%})" for h in hosts), f"{mb:.1f}",
                     f"{c * 1e3:.1f}" if c is not None else "–", f"{full * 1e3:.1f}", f"{extra:.1f}" if extra is not None else "–",
                     f"{extra / mb:.1f}" if extra is not None and mb >= 1 else "–"])  # fmt: skip
    return Table(header, rows)


def tokens_lines(cells: Cells, cache: str = "warm") -> list[str]:
    """Why one token costs more: a least-squares line of full-output latency over the megabytes
    returned, across the tokens, and the spread of the count latencies (the same bytes scanned)."""
    pts = [((_fig(cells, QUERY_FULL, t, cache, "bytes_out_per_trial") or 0) / 1e6, mean(cells, QUERY_FULL, t, cache)) for t in TOKENS]
    pts = [(x, y) for x, y in pts if y is not None]
    counts = {t: mean(cells, QUERY_COUNT, t, cache) for t in TOKENS}
    counts = {t: v for t, v in counts.items() if v is not None}
    lines = []
    if len(pts) >= 3 and len({x for x, _ in pts}) > 1:
        slope, intercept = statistics.linear_regression([x for x, _ in pts], [y for _, y in pts])
        r = statistics.correlation([x for x, _ in pts], [y for _, y in pts])
        lines.append(f"Full output ({cache} cache): across the four tokens, latency ≈ {intercept * 1e3:.0f} ms + {slope * 1e3:.1f} ms per MB "
                     f"returned (least squares, r = {r:.3f}): what a token costs is the bytes its matches return, i.e. its "
                     f"match density times the line length, not the search.")  # fmt: skip
    if counts:
        lo, hi = min(counts, key=counts.get), max(counts, key=counts.get)
        floors = {t: mean(cells, FLOOR_COUNT, t, cache) for t in counts}
        floors = {t: v for t, v in floors.items() if v is not None}
        text = (f"Counts only ({cache} cache), the same {_fig(cells, QUERY_COUNT, lo, cache, 'bytes_per_host') / 1e6:.0f} MB scanned "
                f"per host for every token: from {counts[lo] * 1e3:.0f} ms ({lo}) to {counts[hi] * 1e3:.0f} ms ({hi}), "
                f"{counts[hi] / counts[lo] - 1:.0%} apart")  # fmt: skip
        if floors:
            flo, fhi = min(floors, key=floors.get), max(floors, key=floors.get)
            text += (f"; the tool alone from {floors[flo] * 1e3:.0f} ms ({flo}) to {floors[fhi] * 1e3:.0f} ms ({fhi}), "
                     f"{floors[fhi] / floors[flo] - 1:.0%} apart")
        lines.append(text + ".")
    return lines


def differences(a: Cells, b: Cells) -> list:
    """Each cell's mean latency in the first run against the rerun."""
    rows, changes = [], []
    for cache in caches_in(a):
        for mode in MODES:
            for token in TOKENS:
                x, y = mean(a, mode, token, cache), mean(b, mode, token, cache)
                if x and y:
                    changes.append((abs(y / x - 1), f"{cache} {mode} {token}", x, y))
                    rows.append([cache, mode, token, f"{x * 1e3:.1f}", f"{y * 1e3:.1f}", f"{(y / x - 1) * 100:+.1f} %"])
    if not changes:
        return [Paragraph("The two runs share no cell of the query scenario.")]
    changes.sort()
    worst = changes[-1]
    median = changes[len(changes) // 2][0]
    return [Paragraph(f"Mean latency of each cell, first run against the rerun: median change {median * 100:.1f} %, largest "
                      f"{worst[0] * 100:.1f} % ({worst[1]}: {worst[2] * 1e3:.1f} then {worst[3] * 1e3:.1f} ms)."),
            Table(["cache", "mode", "token", "first ms", "rerun ms", "change"], rows)]  # fmt: skip


def query_blocks(runs: list[RunRecord], rerun: list[RunRecord] | None = None, level: int = 2, chart_block: bool = True,
                 chart_ref: str | None = None) -> list:  # fmt: skip
    """Everything the query scenario measured, as report blocks. ``chart_block``: include the chart
    (a report); ``chart_ref``: instead, a Markdown image link to a chart drawn elsewhere (the README)."""
    runs = query_runs(runs)
    if not runs:
        return []
    cells = cells_of(runs)
    other = cells_of(query_runs(rerun)) if rerun else None
    h = lambda text: Heading(min(level + 1, 3), text)  # noqa: E731
    blocks: list = [Heading(level, "Distributed query: every host's logs at once") if level <= 2 else h("Distributed query"),
                    Paragraph(setup_text(runs))]  # fmt: skip
    if chart_block:
        blocks.append(chart(runs))
    elif chart_ref:
        blocks.append(Paragraph(f"![Distributed query latency per token]({chart_ref})"))
    blocks += [h("How close to the floor"), BulletList(goal_lines(cells, other))]
    for cache in caches_in(cells):
        blocks += [Paragraph(f"**Latency per token, {cache} cache**{' (first run)' if other is not None else ''} (ms: mean ± one "
                             f"standard deviation [p95] over every trial)"),
                   latency_table(cells, cache)]  # fmt: skip
    blocks += [h("Where the time goes"), BulletList(time_lines(cells)), time_table(cells),
               Paragraph("CPU: on-CPU time per query of the scanners (children of the agents), the agents (the shippers' "
                         "query side), the NATS servers and the querier, from /proc, averaged over the trials. Cores busy: "
                         "their sum over the wall time.")]  # fmt: skip
    blocks += [h("Why one token costs more than another"), BulletList(tokens_lines(cells) + tokens_lines(cells, "cold")), tokens_table(cells)]
    blocks += [h("Bytes scanned per second, per host (MB/s)"),
               Paragraph("Each agent's file size over its own scan time (receipt of the query to the end of its scanner, "
                         "waiting for the querier included), mean over the trials; the four hosts share the machine's cores."),
               per_host_table(cells)]  # fmt: skip
    if other is not None:
        blocks += [h("How much the two runs differed")] + differences(cells, other)
    return blocks


__all__ = ["CHART_NAME", "MODES", "SCENARIO", "cells_of", "chart", "latency_chart", "query_blocks", "query_runs"]
