"""What the report says, as blocks (``blocks.py``): the notes, verdicts, charts and tables, built from
result records only. Warm-up runs are left out of every figure (their count is stated); traced
runs give the syscall figures only. A *group* is one (scenario, workload).

Every figure is "median [min–max]" over the measured repeats (stats.Spread); "too noisy to rank"
means the min–max ranges overlap. Ratios loglab/syslog-ng: ratio of medians, range over all
pairings of repeats (stats.ratio).
"""

from __future__ import annotations

from collections import defaultdict

from ..results import Results, RunRecord, stats
from .blocks import BulletList, Chart, Heading, Paragraph, Table
from .charts import bar_chart, format_chart, latency_cdf, latency_percentiles, loss_chart, ratio_chart, syscall_chart
from .data import (
    OWN,
    PEER,
    derived,
    group_key,
    group_label,
    groups_of,
    latency,
    loss_pct,
    metric,
    order,
    syscalls_per_message,
    systems,
    trace_side,
)


def fmt(s: stats.Spread | None, fmt="{:.3g}", scale=1.0) -> str:
    return s.format(fmt, scale) if s else "–"


def _tables(groups) -> list:
    blocks: list = []
    for runs in groups.values():
        blocks.append(Heading(3, group_label(runs)))
        header = ["transport", "system", "n", "messages/s", "MB/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs",
                  "agg CPU µs/msg", "prod CPU µs/msg", "loss %", "dup", "reord", "agg peak RSS MiB", "agg ctx sw"]  # fmt: skip
        rows = []
        for t in order(r.transport for r in runs):
            for system in systems(runs):
                sel = [r for r in runs if r.transport == t and r.system == system]
                if not sel:
                    continue
                m = lambda fn: metric(runs, system, t, fn)  # noqa: E731
                rows.append([
                    t, system, str(len([r for r in sel if r.status == "ok"])),
                    fmt(m(derived("messages_per_s")), "{:,.0f}"), fmt(m(derived("mb_per_s")), "{:.1f}"),
                    fmt(m(latency("p50_ns")), "{:.0f}", 1e-3), fmt(m(latency("p99_ns")), "{:.0f}", 1e-3),
                    fmt(m(latency("p99_9_ns")), "{:.0f}", 1e-3), fmt(m(latency("max_ns")), "{:.0f}", 1e-3),
                    fmt(m(derived("agg_cpu_us_per_msg")), "{:.2f}"), fmt(m(derived("prod_cpu_us_per_msg")), "{:.2f}"),
                    fmt(m(loss_pct), "{:.2f}"),
                    fmt(m(lambda r: r.seq.duplicates if r.seq else None), "{:.0f}"),
                    fmt(m(lambda r: r.seq.reordered if r.seq else None), "{:.0f}"),
                    fmt(m(lambda r: r.aggregator.peak_rss_bytes if r.aggregator else None), "{:.1f}", 1 / 2**20),
                    fmt(m(lambda r: (r.aggregator.voluntary_ctx_switches + r.aggregator.involuntary_ctx_switches) if r.aggregator else None), "{:,.0f}"),
                ])  # fmt: skip
        blocks.append(Table(header, rows))
    return blocks


def _verdicts(groups) -> list[str]:
    lines = []
    for runs in groups.values():
        g = group_label(runs)
        transports = order(r.transport for r in runs)
        peers = [s for s in systems(runs) if s != OWN]
        for t in transports:
            for key, label, higher_better in (("messages_per_s", "messages/s", True), ("agg_cpu_us_per_msg", "aggregator CPU per message", False)):
                for peer in peers:
                    a, b = metric(runs, OWN, t, derived(key)), metric(runs, peer, t, derived(key))
                    if not (a and b):
                        continue
                    q = stats.ratio(a, b)
                    if q is None:
                        continue
                    noise = " — too noisy to rank (ranges overlap)" if a.overlaps(b) else ""
                    lines.append(f"[{g}] {t}: loglab {q.median:.2f}x {peer} {label} (range {q.min:.2f}–{q.max:.2f}){noise}")
        # ranking of transports by messages/s, per system
        for system in systems(runs):
            spreads = [(t, metric(runs, system, t, derived("messages_per_s"))) for t in transports]
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
            for system in systems(runs):
                s = metric(runs, system, t, loss_pct)
                if s and s.max > 0:
                    lines.append(f"[{g}] {t} / {system}: lost {s.format('{:.2f}')} % of messages")
    return lines or ["Not enough measured runs to compute a verdict."]


def _overhead_rows(measured: list[RunRecord], traced: list[RunRecord]) -> list[list[str]]:
    rows = []
    for r in traced:
        same = [m for m in measured if group_key(m) == group_key(r) and m.transport == r.transport and m.system == r.system]
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


def _format_blocks(measured: list[RunRecord], traced: list[RunRecord], charts: list) -> list:
    """The cost of each input format and framing (the formats scenario, or any runs whose
    workloads differ only in them), the systems side by side."""
    runs = [r for r in measured if r.scenario == "formats"]
    if not runs:
        return []
    header = ["transport", "format", "framing", "system", "n", "agg CPU µs/msg", "agg syscalls/msg", "prod CPU µs/msg",
              "prod syscalls/msg", "messages/s", "p99 µs", "loss %"]  # fmt: skip
    rows = []
    for t in order(r.transport for r in runs):
        shapes = dict.fromkeys((r.workload.format, r.workload.framing) for r in runs if r.transport == t)
        for form, framing in shapes:
            sel = [r for r in runs if r.transport == t and (r.workload.format, r.workload.framing) == (form, framing)]
            tr = [r for r in traced if r.scenario == "formats" and r.transport == t and (r.workload.format, r.workload.framing) == (form, framing)]
            for system in systems(sel):
                m = lambda fn, src=sel: metric(src, system, t, fn)  # noqa: E731
                rows.append([t, form, framing, system, str(len([r for r in sel if r.system == system and r.status == "ok"])),
                             fmt(m(derived("agg_cpu_us_per_msg")), "{:.2f}"),
                             fmt(m(lambda r: syscalls_per_message(trace_side(r.trace, "aggregator")), tr), "{:.2f}"),
                             fmt(m(derived("prod_cpu_us_per_msg")), "{:.2f}"),
                             fmt(m(lambda r: syscalls_per_message(trace_side(r.trace, "producer")), tr), "{:.2f}"),
                             fmt(m(derived("messages_per_s")), "{:,.0f}"), fmt(m(latency("p99_ns")), "{:.0f}", 1e-3),
                             fmt(m(loss_pct), "{:.2f}")])  # fmt: skip
    chart = Chart("formats", "Cost per input format",
                  "Bars: median on-CPU time of the receiver per message delivered (µs), per input format and framing of the "
                  "producer (x), one bar per system (loglab plain, syslog-ng hatched //, rsyslog dotted), one panel per "
                  "transport; whiskers min–max over repeats. A missing bar: the system has no input for that format or "
                  "framing (see Notes). Lower is better.", format_chart(runs))  # fmt: skip
    charts.append(chart)
    return [Heading(2, "Input formats"),
            Paragraph("What each input format and framing costs at the same offered rate (the formats scenario): the "
                      "producer's JSON line alone, or as the message of an RFC 3164 or RFC 5424 header, newline-framed, "
                      "octet-counted (RFC 6587) or in lenprefix frames. loglab reads every one with --format auto "
                      "(lenprefix with --framing lenprefix); syslog-ng and rsyslog parse the header and keep the message. "
                      "Syscalls per message from the traced run of each cell."),
            chart, Table(header, rows)]  # fmt: skip


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


def build_blocks(res: Results) -> tuple[list, list[Chart]]:
    measured = res.measured()
    traced = res.traced()
    warmups = len(res.runs) - len(measured) - len(traced)
    groups = groups_of(measured)
    blocks: list = [Heading(1, "loglab benchmark report")]
    blocks.append(Paragraph(f"{len(measured)} measured runs, {warmups} warm-up runs (left out of every figure), "
                        f"{len(traced)} traced runs (syscall figures only). "
                        f"Results {'complete' if res.complete else 'INCOMPLETE (the benchmark did not finish)'}; "
                        f"schema_version {res.schema_version}. Figures: median [min–max] over repeats."))  # fmt: skip
    workers = loglab_workers(measured)
    if workers:
        blocks.append(Paragraph("loglab's receiving processes (--workers; syslog-ng runs its own threads): "
                            + ", ".join(f"{t} {n}" for t, n in workers.items()) + "."))  # fmt: skip
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
    if notes:
        blocks += [Heading(2, "Notes"), BulletList(sorted(set(notes), key=notes.index))]
    blocks += [Heading(2, "Verdict"), BulletList(_verdicts(groups))]

    charts: list[Chart] = []
    if groups:
        charts.append(Chart("throughput", "Throughput per transport",
                            "Bars: median delivered messages/s over the measured window, per transport; loglab plain, syslog-ng hatched; "
                            "whiskers: min and max over repeats. Overlapping whiskers: too noisy to rank.",
                            bar_chart(groups, derived("messages_per_s"), "delivered messages/s", "Throughput per transport")))  # fmt: skip
        if any(r.latency for r in measured):
            charts.append(Chart("latency_percentiles", "Latency percentiles",
                                "Each line is one transport/system (solid loglab, dashed syslog-ng): the median over repeats of each "
                                "latency percentile, from the producer's intended send time to receipt (µs, log scale); "
                                "error bars: min–max over repeats. Lower is better.", latency_percentiles(groups)))  # fmt: skip
            charts.append(Chart("latency_cdf", "Latency CDF",
                                "Fraction of messages (y) delivered within a latency (x, µs, log scale), from the stored samples of all "
                                "measured repeats pooled; further left is better, a long tail to the right means outliers. "
                                "Values ≤ 0 (a peer's receipt stamp before the send) are drawn at 0.001 µs.", latency_cdf(groups)))  # fmt: skip
        charts.append(Chart("cpu_per_message", "Aggregator CPU per message",
                            "Bars: median on-CPU time of the receiver (loglab's aggregator with its workers, or syslog-ng with its threads) over the window, "
                            "divided by messages delivered (µs per message); whiskers min–max over repeats. Lower is better.",
                            bar_chart(groups, derived("agg_cpu_us_per_msg"), "aggregator CPU (µs per message)", "Aggregator CPU per message")))  # fmt: skip
        charts.append(Chart("loss", "Loss",
                            "Percentage of expected messages missing from the output (sequence check), median with min–max over repeats. "
                            "With several offered rates: x is the rate offered by all producers together (datagram transports only).",
                            loss_chart(measured)))  # fmt: skip
        ratio_groups = {k: v for k, v in groups.items() if {OWN, PEER} <= {r.system for r in v}}
        if ratio_groups:
            charts.append(Chart("peer_ratio", "loglab / syslog-ng",
                                "Bars: loglab's median divided by syslog-ng's median, per transport (above 1: loglab delivers more "
                                "messages/s, or uses more CPU per message). Whiskers: the smallest and largest ratio over every pairing "
                                "of a loglab repeat with a syslog-ng repeat.", ratio_chart(ratio_groups)))  # fmt: skip
        if any(trace_side(r.trace, "producer") or trace_side(r.trace, "aggregator") for r in traced):
            charts.append(Chart("syscalls", "Syscalls per message",
                                "Bars: syscalls per message counted by the tracer in the window of the traced run (one extra run per "
                                "cell, left out of every other figure), producer side below, aggregator side stacked on top "
                                "(median over the traced runs of all scenarios). Fewer is cheaper.", syscall_chart(traced)))  # fmt: skip
    if charts:
        blocks.append(Heading(2, "Charts"))
        blocks += list(charts)
    blocks += [Heading(2, "Results per scenario")] + _tables(groups)
    if any(r.trace for r in traced):
        rows = []
        for t in order(r.transport for r in traced):
            for system in systems(traced):
                p = metric(traced, system, t, lambda r: syscalls_per_message(trace_side(r.trace, "producer")))
                a = metric(traced, system, t, lambda r: syscalls_per_message(trace_side(r.trace, "aggregator")))
                top = next((_top(trace_side(r.trace, "aggregator")) for r in traced if r.transport == t and r.system == system and r.trace), "")
                if p or a:
                    rows.append([t, system, fmt(p, "{:.2f}"), fmt(a, "{:.2f}"), top])
        blocks += [Heading(2, "Tracing"), Table(["transport", "system", "producer syscalls/msg", "aggregator syscalls/msg", "aggregator top syscalls"], rows)]
        blocks += [Paragraph("Tracer overhead: each traced run against the median of the untraced repeats of the same cell "
                         "(negative: the traced run was slower / used more CPU). Within the untraced min–max range means "
                         "the overhead is not distinguishable from noise.")]  # fmt: skip
        blocks.append(Table(["scenario", "transport", "system", "msg/s traced vs untraced", "agg CPU/msg traced vs untraced"], _overhead_rows(measured, traced)))
    blocks += _format_blocks(measured, traced, charts)
    blocks += _soak_blocks(res, charts)
    blocks += _torture_blocks(res)
    blocks += _pipeline_blocks([r for r in measured if r.scenario == "pipeline"])
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
                m = lambda fn: metric(runs_g, system, t, fn)  # noqa: E731
                rows.append([load, system, t, str(len(sel)), fmt(m(derived("messages_per_s")), "{:,.0f}"),
                             fmt(m(latency("p50_ns")), "{:.1f}", 1e-6), fmt(m(latency("p99_ns")), "{:.1f}", 1e-6),
                             fmt(m(latency("p99_9_ns")), "{:.1f}", 1e-6), fmt(m(derived("shipper_cpu_us_per_msg")), "{:.1f}"),
                             fmt(m(derived("nats_cpu_us_per_msg")), "{:.1f}"), fmt(m(derived("agg_cpu_us_per_msg")), "{:.2f}"),
                             fmt(m(lambda r: r.seq.missing if r.seq else None), "{:.0f}"),
                             fmt(m(lambda r: r.seq.duplicates if r.seq else None), "{:.0f}")])  # fmt: skip
    return [Heading(2, "Pipeline: producers -> aggregator -> shipper -> JetStream"),
            Paragraph("Latency: the producer's intended send time to the stream's timestamp of the message. Publisher CPU: "
                  "the shipper, or the ceiling's Python publisher (nats-py from memory). Median [min–max] over repeats."),
            Table(header, rows)]  # fmt: skip


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


