"""The README's findings: sections rendered from results committed in the repository, never typed.

A section of README.md is delimited by two markers; the first one holds the command that renders
it, so the README says where each of its figures comes from::

    <!-- findings:bench: loglab report docs/results/bench-a.json.gz --rerun docs/results/bench-b.json.gz --findings README.md -->
    ... generated Markdown ...
    <!-- findings:bench end -->

``loglab report RESULTS [--rerun RESULTS_B] --findings README.md [--section NAME]`` rewrites the
section between them; with ``--check`` it only says whether the README still matches (the test
suite runs that for every section, so a figure that drifts from its committed results fails).

A claim is stated only if it is robust: a "best transport" that the rerun does not confirm (a
different winner, or none beyond noise) is written as "cannot be ranked", with both runs' figures.
The rerun also gives "how much two runs differed", per figure, from ``compare``.

Sections (``SECTIONS``): ``bench`` (the standard suite: the answer, the transports at a glance,
loglab beside its peers, syscalls, tracer overhead, run-to-run differences), ``pipeline`` (the
shipper into JetStream: whether each offered rate was delivered in every run, then the table),
``torture`` (fault scenarios: sent, arrived, what each cost), ``distribute`` (the distributor and its
analyzers: targets over every repeat of both runs, exactness, failover, the tables, the differences;
``benchmarks/report/distribute.py``) and ``query`` (distributed query latency per token against its
floor, ``report/query.py``). A new stage adds its own renderer here.
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path
from typing import Callable

from ..results import Results, stats
from . import default_out_dir
from ..results.compare import NoCommonCells, compare_results
from ..results.metrics import COMPARED, LOSS, MESSAGES_PER_S, P99, PRODUCER_SYSCALLS, RECEIVER_CPU, RECEIVER_SYSCALLS
from .blocks import BulletList, Heading, Paragraph, Table
from .content import (
    CAPACITY,
    EFFICIENCY,
    FORMATS_INTRO,
    STANDARD,
    _glance_standard,
    _overhead_rows,
    _peers,
    _pipeline_blocks,
    _torture_blocks,
    answer,
    format_table,
    loglab_workers,
)
from .data import group_label, groups_of, order, systems
from .markdown import MarkdownRenderer

MARKER = re.compile(r"<!-- findings:(?P<name>[\w-]+): (?P<command>[^\n]*?) -->\n(?P<body>.*?)<!-- findings:(?P=name) end -->\n?", re.S)


class FindingsError(ValueError):
    """The README has no such section, or its markers are malformed."""


def _measured(res: Results):
    return [r for r in res.measured() if r.status == "ok"]


def _when(runs) -> str:
    """The day the first run's window opened (UTC), or "?"."""
    return time.strftime("%Y-%m-%d", time.gmtime(runs[0].window_start_ns / 1e9)) if runs and runs[0].window_start_ns else "?"


def _commit(env: dict) -> str:
    return ((env.get("git") or {}).get("commit") or "?")[:10]


def _provenance(res: Results, source: str, peers: bool = True) -> str:
    env = res.environment
    when, commit = _when(res.runs), _commit(env)
    workers = ", ".join(sorted(set(loglab_workers(_measured(res)).values()))) or "?"
    return (f"`{source}`: {len(res.measured())} measured runs of {res.params.get('repeats', '?')} repeats per cell, "
            f"{when}, commit {commit}; {env.get('cpu_count', '?')} CPUs ({env.get('cpu_model', '?')}), Linux "
            f"{env.get('kernel', '?')}, Python {env.get('python', '?')}"
            + (f", syslog-ng {env.get('syslog_ng') or '–'}; loglab with {workers} receiving process(es)." if peers else "."))  # fmt: skip


def _differences(a: Results, b: Results, title: str) -> list:
    try:
        result = compare_results(a, b, force=True)
    except NoCommonCells as exc:
        return [Paragraph(f"The two runs share no cell: {exc}")]
    rows = []
    for metric in COMPARED:
        pairs = [r for r in result.rows if r.metric is metric and r.a and r.b and r.change is not None]
        if not pairs:
            continue
        changes = sorted(abs(r.change - 1) for r in pairs)
        worst = max(pairs, key=lambda r: abs(r.change - 1))
        beyond = sum(1 for r in pairs if not r.within_noise)
        rows.append([metric.label, str(len(pairs)), f"{changes[len(changes) // 2] * 100:.1f} %",
                     f"{abs(worst.change - 1) * 100:.1f} % ({worst.scenario} {worst.workload}, {worst.transport}, {worst.system}: "
                     f"{metric.format(worst.a)} then {metric.format(worst.b)})", f"{beyond} of {len(pairs)}"])  # fmt: skip
    env = ", ".join(k for k, _, _ in result.env_differences)
    return [Heading(3, title),
            Paragraph("Each figure of the first run against the same cell of the rerun (B/A of the medians). Beyond noise: "
                      "the two runs' min–max ranges do not overlap." + (f" The environments differ in: {env}." if env else "")),
            Table(["figure", "cells", "median change", "largest change", "beyond noise"], rows)]  # fmt: skip


def _syscalls(res: Results) -> list:
    traced = [r for r in res.traced() if r.trace and r.scenario in (CAPACITY, EFFICIENCY)]
    if not traced:
        return []
    rows = []
    for runs in groups_of(traced).values():
        for t in order(r.transport for r in runs):
            for system in systems(runs):
                sel = [r for r in runs if r.transport == t and r.system == system]
                p, a = PRODUCER_SYSCALLS.spread(sel), RECEIVER_SYSCALLS.spread(sel)
                if p or a:
                    rows.append([group_label(runs), t, system, PRODUCER_SYSCALLS.format(p), RECEIVER_SYSCALLS.format(a)])
    overhead = _overhead_rows(res.measured(), res.traced())
    cells = [c for row in overhead for c in row[3:] if c != "–"]
    outside = [c for c in cells if "OUTSIDE" in c]
    changes = [float(c.split(" %")[0]) for c in cells]
    note = (f"The tracer's cost (traced run against the untraced repeats, traced / untraced - 1): {len(outside)} of "
            f"{len(cells)} figures outside the untraced repeats' range; changes from {min(changes):+.1f} % to "
            f"{max(changes):+.1f} % (messages/s: negative = slower with the tracer; CPU per message: positive = more CPU)."
            if cells else "")  # fmt: skip
    return [Heading(3, "Syscalls per message (traced runs; one per cell)"),
            Table(["scenario", "transport", "system", "producer syscalls/msg", "receiver syscalls/msg"], rows),
            *([Paragraph(note)] if note else [])]


def bench_findings(a: Results, b: Results | None, source_a: str, source_b: str | None) -> list:
    measured = _measured(a)
    if not any(r.scenario in STANDARD for r in measured):
        raise FindingsError(f"{source_a} holds no run of the standard suite ({', '.join(STANDARD)})")
    blocks: list = [Paragraph(_provenance(a, source_a) + (f" Rerun: {_provenance(b, source_b)}" if b else ""))]
    lines = []
    verdicts_b = {v.need: v for v in answer(_measured(b))} if b else {}
    for v in answer(measured):
        other = verdicts_b.get(v.need)
        if b is None or (other is not None and other.winner == v.winner):
            lines.append(v.text() + (" The rerun agrees." if b is not None and v.winner else ""))
        else:
            rerun = other.sentence if other else "not measured"
            lines.append(f"{v.need}: cannot be ranked, the two runs disagree (first run: {v.sentence}; rerun: {rerun}).")
    blocks += [Heading(3, "Which transport, and why"), BulletList(lines),
               Heading(3, "The transports at a glance (loglab, first run)"), _glance_standard(measured, a.traced()),
               Paragraph("Latency: the producer's intended send time to the line being in the output file, seen by one observer "
                         "outside every system (loglab's output is written every 256 KiB or --flush-interval, 10 ms by default, "
                         "and that wait is part of it). Memory: PSS of the receiving processes, median / largest of samples "
                         "every 100 ms. Median [min–max] over the repeats.")]  # fmt: skip
    blocks += _peers(measured, level=3)
    blocks += _syscalls(a)
    if b is not None:
        blocks += _differences(a, b, "How much the two runs differed")
    return blocks


def pipeline_findings(a: Results, b: Results | None, source_a: str, source_b: str | None) -> list:
    runs = [r for r in a.measured() if r.scenario == "pipeline"]
    if not runs:
        raise FindingsError(f"{source_a} holds no run of the pipeline scenario")
    blocks = [Paragraph(_provenance(a, source_a, peers=False) + (f" Rerun: {_provenance(b, source_b, peers=False)}" if b else ""))]
    blocks += [Paragraph(line) for line in _rate_targets(a, b)]
    blocks += [blk for blk in _pipeline_blocks(runs) if not isinstance(blk, Heading)]
    if b is not None:
        blocks += _differences(a, b, "How much the two runs differed")
    return blocks


# Delivered within 1 % of what was offered counts as keeping up (the last messages of a bounded run
# are in flight when the window closes).
KEPT_UP = 0.99


def _rate_targets(*results: Results | None) -> list[str]:
    """For each fixed-rate shipper cell, whether it delivered what was offered, in every run given:
    the pipeline's target (issue 13: 50,000 msg/s into three nodes) is one of these cells."""
    lines = []
    cells: dict[tuple, list] = {}
    for res in results:
        for r in (res.measured() if res else []):
            if r.scenario == "pipeline" and r.status == "ok" and r.workload.rate and r.system.startswith("shipper"):
                cells.setdefault((r.workload.offered_rate, r.transport), []).append(r)
    for (offered, stream), runs in sorted(cells.items()):
        rates = [r.derived.get("messages_per_s") or 0.0 for r in runs]
        lo, hi = min(rates), max(rates)
        verdict = "**met**" if lo >= KEPT_UP * offered else "**not met**" if hi < KEPT_UP * offered else "met in some runs only"
        lines.append(f"Offered {offered:,.0f} msg/s into {stream}: delivered {lo:,.0f}–{hi:,.0f} msg/s over {len(runs)} runs "
                     f"({lo / offered:.0%}–{hi / offered:.0%} of it): {verdict}.")  # fmt: skip
    return lines


def torture_findings(a: Results, b: Results | None, source_a: str, source_b: str | None) -> list:
    """Fault scenarios (``loglab torture --out``): what each sent, what arrived, what it cost; with a
    rerun, both runs' rows, so that a scenario which held once and failed once shows as such."""
    if not a.of_kind("torture"):
        raise FindingsError(f"{source_a} holds no torture run (write them with loglab torture --out DIR)")
    blocks = [Paragraph(_torture_provenance(a, source_a))]
    blocks += [blk for blk in _torture_blocks(a) if not isinstance(blk, Heading)]
    if b is not None:
        if not b.of_kind("torture"):
            raise FindingsError(f"{source_b} holds no torture run")
        blocks += [Paragraph("The rerun: " + _torture_provenance(b, source_b))]
        blocks += [blk for blk in _torture_blocks(b) if isinstance(blk, Table)]
    return blocks


def _torture_provenance(res: Results, source: str) -> str:
    env = res.environment
    runs = res.of_kind("torture")
    held = sum(1 for r in runs if r.ok)
    return (f"`{source}`: {len(runs)} scenarios, {held} held, commit {_commit(env)}; "
            f"{env.get('cpu_count', '?')} CPUs, Linux {env.get('kernel', '?')}.")  # fmt: skip


def distribute_findings(a: Results, b: Results | None, source_a: str, source_b: str | None) -> list:
    """The distribute stage (``loglab bench --scenarios distribute``): the issue's targets judged over
    every repeat of both runs, the exactness bound, failover without loss, the first run's tables,
    and how much the two runs differed."""
    from . import distribute as dist

    runs_a = dist.distribute_runs(a.measured())
    if not runs_a:
        raise FindingsError(f"{source_a} holds no completed run of the distribute scenario")
    runs_b = dist.distribute_runs(b.measured()) if b is not None else []
    if b is not None and not runs_b:
        raise FindingsError(f"{source_b} holds no completed run of the distribute scenario")
    both = runs_a + runs_b
    blocks: list = [Paragraph(_distribute_provenance(a, source_a) + (f" Rerun: {_distribute_provenance(b, source_b)}" if b else ""))]
    runs_label = "both runs" if b is not None else "the run"
    lines = []
    paths_a, paths_b = dist.paths(runs_a), dist.paths(runs_b)
    for path, sel in dist.paths(both).items():
        target = sel[0].figures["target_messages_per_s"]
        rates = [r.figures["messages_per_s"] for r in sel]
        each = "; ".join(f"{name} {_spread_text([r.figures['messages_per_s'] for r in p.get(path, [])])}"
                         for name, p in (("first run", paths_a), ("rerun", paths_b)) if p.get(path))  # fmt: skip
        lines.append(f"{path}: {each} msg/s. Target {target:,.0f} msg/s: **{dist.target_verdict(rates, target)}** "
                     f"(over {len(sel)} repeats of {runs_label}).")  # fmt: skip
    fair = [r for r in both if r.figures.get("part") == "fairness"]
    if fair:
        worst = max(r.figures["max_deviation_messages"] for r in fair)
        lost = sum(r.seq.missing for r in fair if r.seq)
        detect = _spread_text([r.figures["failover_detect_s"] for r in fair], "{:.2f}")
        back = _spread_text([r.figures["return_s"] for r in fair], "{:.2f}")
        lines.append(f"Exactness: the largest deviation from the exact share, over every analyzer, epoch and prefix of "
                     f"{len(fair)} weight-change-and-failure runs ({runs_label}): {worst:.2f} message (bound: < 1 per replica).")
        lines.append(f"Failover: an analyzer SIGKILLed mid-run is routed around {detect} s after the kill, and taken back "
                     f"{back} s after it returns; {sum(r.figures['failover_messages'] for r in fair):,} messages failed over, "
                     f"{sum(r.figures['duplicates_confirmed'] for r in fair):,} confirmed duplicates (late acks), "
                     f"{sum(r.seq.duplicates for r in fair if r.seq):,} records analyzed twice and {lost} lost (the analyzers' ledgers).")  # fmt: skip
    blocks.append(BulletList(lines))
    blocks += [Heading(4, "Against the two reference designs, point by point"), _reference_designs(both)]
    blocks += dist.distribute_blocks(runs_a, level=3)[1:]  # its title is the README's own heading
    if b is not None:
        blocks += [Heading(4, "How much the two runs differed"), _distribute_differences(runs_a, runs_b)]
    return blocks


def _reference_designs(runs: list) -> Table:
    """The issue's two reference designs against loglab's distributor, each loglab cell filled from
    the runs (every repeat of both runs): what the designs do is from their descriptions in the issue."""
    from . import distribute as dist

    def rate(path_prefix: str) -> str:
        sel = [r.figures["messages_per_s"] for p, rs in dist.paths(runs).items() if p.startswith(path_prefix) for r in rs]
        return _spread_text(sel) + " msg/s" if sel else "not measured"

    router = [r for r in runs if r.figures.get("part") == "router"]

    def picks(algo_prefix: str, n: int) -> str:
        return _spread_text([r.figures["picks_per_s"] for r in router if r.figures["algorithm"].startswith(algo_prefix) and r.figures["analyzers"] == n])

    def deviation(algo_prefix: str, n: int) -> str:
        devs = [r.figures["max_deviation_messages"] for r in router if r.figures["algorithm"].startswith(algo_prefix)
                and r.figures["analyzers"] == n and r.figures["max_deviation_messages"] is not None]  # fmt: skip
        return f"{max(devs):.3g}" if devs else "–"

    fair = [r for r in runs if r.figures.get("part") == "fairness"]
    worst = f"{max(r.figures['max_deviation_messages'] for r in fair):.2f}" if fair else "–"
    lost = sum(r.seq.missing for r in fair if r.seq)
    rows = [
        ["routing", "random weighted draw: proportions hold only on average",
         "random draw down an O(log n) weight-balanced tree: the same",
         f"deterministic EDF over each analyzer's Pfair window: largest deviation from the exact share {worst} message over "
         f"every epoch of {len(fair)} runs with weight changes and a failure (bound < 1 per replica)"],
        ["share over 20,000 picks, 10 analyzers (largest deviation at any prefix)", "random: like the tree",
         f"random tree: {deviation('random', 10)} messages", f"{deviation('edf', 10)} message (always below 1)"],
        ["router cost, 10,000 analyzers (one Python thread)", "–", f"O(log n): {picks('random', 10_000)} picks/s (its tree, modelled here)",
         f"O(log n) heaps: {picks('edf', 10_000)} picks/s (smooth WRR, O(n): {picks('smooth', 10_000)})"],
        ["a newly registered analyzer", "registers and deregisters (redis)", "inserted into the tree more than once: extra share",
         "one key per analyzer in a KV bucket: a re-registration replaces its weight; a change starts a new epoch at once"],
        ["delivery", "a lock held across a blocking HTTP call; a failed call drops the message",
         "ACKs with sequence numbers; failover to the remaining analyzers",
         f"the stream's message is acknowledged only after an analyzer's ack: {lost} lost over {len(fair)} runs with a SIGKILLed "
         f"analyzer, {sum(r.figures['failover_messages'] for r in fair):,} messages failed over, "
         f"{sum(r.figures['duplicates_confirmed'] for r in fair):,} confirmed duplicates; refused ones to a dead-letter stream"],
        ["failover timing", "–", "–",
         f"routed around {_spread_text([r.figures['failover_detect_s'] for r in fair], '{:.2f}')} s after a SIGKILL (ack timeout "
         f"1 s in that run), taken back {_spread_text([r.figures['return_s'] for r in fair], '{:.2f}')} s after it returns"],
        ["shared state, replicas", "redis; analyzers register and deregister", "in the process",
         f"JetStream KV bucket seen by every replica; replicas share one durable consumer: two replicas {rate('distributor x2')}"],
        ["throughput", "uvicorn/asyncio HTTP, Locust load", "binary TCP, \"10k+ messages/second\"",
         f"from the stream, one distributor: {rate('distributor (')}; HTTP, 1 message/request: {rate('distributor-http (http x1/')}; "
         f"20/request: {rate('distributor-http (http x20/')}"],
    ]  # fmt: skip
    return Table(["point", "Python design", "Go design", "loglab (measured here)"], rows)


def _spread_text(values, f: str = "{:,.0f}") -> str:
    from ..results import stats

    s = stats.spread(values)
    if s is None:
        return "–"
    return f.format(s.median) if s.n == 1 else f"{f.format(s.median)} [{f.format(s.min)}–{f.format(s.max)}]"


def _distribute_provenance(res: Results, source: str) -> str:
    from .distribute import distribute_runs

    env = res.environment
    runs = distribute_runs(res.measured())
    return (f"`{source}`: {len(runs)} runs ({len({r.repeat for r in runs})} repeats), {_when(runs)}, commit "
            f"{_commit(env)}; {env.get('cpu_count', '?')} CPUs ({env.get('cpu_model', '?')}), "
            f"Linux {env.get('kernel', '?')}, Python {env.get('python', '?')}.")  # fmt: skip


def _distribute_differences(runs_a: list, runs_b: list) -> Table:
    """Each figure's median in both runs, B/A, and whether the repeats' ranges overlap."""
    from ..results import stats
    from . import distribute as dist

    def figure(runs, pick):
        return stats.spread(pick(r) for r in runs)

    rows = []
    candidates = [(f"{path}: messages/s", lambda r, p=path: r.figures["messages_per_s"] if dist.paths([r]).get(p) else None, "{:,.0f}")
                  for path in dist.paths(runs_a)]  # fmt: skip
    candidates += [("kill -> routed without it (s)", lambda r: r.figures.get("failover_detect_s"), "{:.2f}"),
                   ("back -> routed to again (s)", lambda r: r.figures.get("return_s"), "{:.2f}"),
                   ("largest deviation (messages)", lambda r: r.figures.get("max_deviation_messages") if r.figures.get("part") == "fairness" else None, "{:.2f}")]  # fmt: skip
    for algo in dict.fromkeys(r.figures["algorithm"] for r in runs_a if r.figures.get("part") == "router"):
        for n in (10, 10_000):
            candidates.append((f"router {algo}, {n:,} analyzers: picks/s",
                               lambda r, a=algo, n=n: r.figures["picks_per_s"] if r.figures.get("algorithm") == a and r.figures.get("analyzers") == n else None,
                               "{:,.0f}"))  # fmt: skip
    for label, pick, f in candidates:
        sa, sb = figure(runs_a, pick), figure(runs_b, pick)
        if sa is None or sb is None:
            continue
        change = f"{(sb.median / sa.median - 1) * 100:+.1f} %" if sa.median else "–"
        rows.append([label, _spread_text(sa.values, f), _spread_text(sb.values, f), change, "no" if sa.overlaps(sb) else "yes"])
    return Table(["figure", "first run", "rerun", "change (medians)", "beyond noise (ranges apart)"], rows)


def _peer_versions(res: Results) -> str:
    peers = res.environment.get("peers") or {}
    return ", ".join(f"{name} {version}" for name, version in peers.items()) or "no peer"


def formats_findings(a: Results, b: Results | None, source_a: str, source_b: str | None) -> list:
    """The formats scenario (``loglab bench --scenarios formats``): each input format and framing,
    every system; with a rerun, its receiver CPU per message beside the first run's."""
    table = format_table(_measured(a), a.traced(), _measured(b) if b is not None else None)
    if table is None:
        raise FindingsError(f"{source_a} holds no run of the formats scenario (loglab bench --scenarios formats)")
    blocks = [Paragraph(_provenance(a, source_a) + f" Peers: {_peer_versions(a)}."
                        + (f" Rerun: {_provenance(b, source_b)}" if b else "")),
              Paragraph(FORMATS_INTRO), table]  # fmt: skip
    notes = [n for n in a.notes if "skipped" in n or "unavailable" in n]
    if notes:
        blocks.append(BulletList(notes))
    if b is not None:
        blocks += _differences(a, b, "How much the two runs differed")
    return blocks


JSON_PATH_METRICS = (RECEIVER_CPU, MESSAGES_PER_S, P99)


def comparison_findings(label_a: str, label_b: str, what: str, metrics=None,
                        system: str | None = None) -> Callable[[Results, Results | None, str, str | None], list]:  # fmt: skip
    """A renderer for the same workloads run two ways (two checkouts, or two settings): ``a`` as
    ``label_a``, ``b`` as ``label_b``; B/A per cell of ``metrics`` (default: CPU per message,
    messages/s, p99), of ``system`` only when given, and whether the ranges are apart."""
    metrics = metrics or JSON_PATH_METRICS

    def render(a: Results, b: Results | None, source_a: str, source_b: str | None) -> list:
        if b is None:
            raise FindingsError(f"this section compares two results: RESULTS ({label_a}) and --rerun ({label_b})")
        try:
            result = compare_results(a, b, force=True)
        except NoCommonCells as exc:
            raise FindingsError(str(exc)) from None
        rows = [[r.scenario, r.workload, r.transport, r.metric.label, r.metric.format(r.a), r.metric.format(r.b),
                 f"{r.change:.2f}x", r.verdict.replace("B ", f"{label_b} ")]
                for r in result.rows if r.metric in metrics and (system is None or r.system == system)
                and r.a and r.b and r.change is not None]  # fmt: skip
        worse = [r for r in rows if r[-1] == f"{label_b} worse"]
        return [Paragraph(f"{label_a.capitalize()}: {_provenance(a, source_a)} {label_b.capitalize()}: {_provenance(b, source_b)}"),
                Table(["scenario", "workload", "transport", "figure", label_a, label_b, f"{what}", "verdict"], rows),
                Paragraph(f"{len(worse)} of {len(rows)} figures worse beyond noise (ranges apart)."
                          + (" The environments differ in: " + ", ".join(k for k, _, _ in result.env_differences) + "."
                             if result.env_differences else ""))]  # fmt: skip

    return render


# The same JSON workloads through two checkouts: the baseline (before input formats) and the new code.
json_path_findings = comparison_findings("baseline", "new code", "new / baseline")
# The same checkout's aggregator without and with --idle-flush (README "Latency or CPU").
idle_flush_findings = comparison_findings("without", "with --idle-flush", "with / without")
# loglab with one event loop and with two (--threads 2), the same checkout (README "Several cores in one process").
threads_findings = comparison_findings("1 thread", "2 threads", "2 / 1", (MESSAGES_PER_S, RECEIVER_CPU, LOSS), system="loglab")


def query_findings(a: Results, b: Results | None, source_a: str, source_b: str | None) -> list:
    """The query scenario: how close to the floor, the latency per token, where the time goes, why
    tokens differ, and how the rerun differed. The chart is the one ``loglab report SOURCE_A`` draws
    (``SOURCE_A-report/query_latency.png``, committed beside the results), linked, not embedded."""
    from .query import CHART_NAME, query_blocks, query_runs

    if not query_runs(a.measured()):
        raise FindingsError(f"{source_a} holds no run of the query scenario")
    env = a.environment
    rerun = f" Rerun: `{source_b}`, commit {(b.environment.get('git') or {}).get('commit', '?')[:10]}." if b else ""
    blocks = [Paragraph(f"`{source_a}`: commit {(env.get('git') or {}).get('commit', '?')[:10]}; {env.get('cpu_count', '?')} CPUs "
                        f"({env.get('cpu_model', '?')}), Linux {env.get('kernel', '?')}, Python {env.get('python', '?')}.{rerun}")]  # fmt: skip
    chart = (default_out_dir(source_a) / f"{CHART_NAME}.png").as_posix()
    blocks += query_blocks(a.measured(), b.measured() if b else None, level=3, chart_block=False, chart_ref=chart)
    return blocks


HOTPATH_STAGES = ("framing", "validation", "splice", "glue", "path", "write", "recv", "poll")


def hotpath_cost_findings(a: Results, b: Results | None, source_a: str, source_b: str | None) -> list:
    """Per-message cost by stage (``python -m benchmarks.hotpath_cost --out``), before (the Python
    path) and after (the native one), in every run given; then where a serving aggregator's time
    goes flat out (``perf``'s top symbols), per implementation, from the first run."""
    runs_by = [(source, {r.system: r for r in res.runs if r.scenario == "hotpath-cost"}) for source, res in ((source_a, a), (source_b, b)) if res]
    if not runs_by[0][1]:
        raise FindingsError(f"{source_a} holds no hotpath-cost figure (python -m benchmarks.hotpath_cost --out DIR)")
    systems_seen = sorted(runs_by[0][1], key=lambda name: name != "loglab-python")  # before, then after
    header = ["stage (ns per message)"] + [f"{name.removeprefix('loglab-')}, `{source}`" for source, _ in runs_by for name in systems_seen]
    rows = []
    for stage in HOTPATH_STAGES:
        row = [stage]
        for _, runs in runs_by:
            for name in systems_seen:
                cell = ((runs.get(name).figures if runs.get(name) else {}).get("ns_per_message") or {}).get(stage)
                row.append("–" if not cell else stats.Spread(cell["median_ns"], cell["min_ns"], cell["max_ns"], tuple(cell["samples_ns"])).format("{:,.0f}"))
        rows.append(row)
    p = a.params
    blocks = [Paragraph(f"{p.get('messages', '?'):,} messages of {p.get('size', '?')} bytes in {p.get('read_bytes', 0) // 1024} KiB reads, "
                        f"{p.get('repeats', '?')} passes per run, the two paths interleaved; median [min–max] over the passes. "
                        "`path` is the whole per-read call the event loop makes, `glue` what it spends beyond framing, validation "
                        "and splice; `write` is the sink's share (one write(2) per 256 KiB), `recv` and `poll` the syscalls per "
                        "message at 64 KiB per read. "
                        + "; ".join(f"`{source}`: commit {_commit(res.environment)}" for (source, _), res in zip(runs_by, (a, b))) + "."),
              Table(header, rows)]  # fmt: skip
    tops = []
    for name in systems_seen:
        prof = (runs_by[0][1][name].figures or {}).get("profile") or {}
        if prof.get("top_symbols"):
            symbols = ", ".join(f"{t['symbol'].split('] ', 1)[-1]} {t['percent']:.0f} %" for t in prof["top_symbols"][:5])
            tops.append(f"{name.removeprefix('loglab-')}: {prof['messages_per_s']:,.0f} msg/s at {prof['cpu_us_per_msg']:.2f} µs of "
                        f"CPU per message; top of its samples: {symbols}.")  # fmt: skip
    if tops:
        blocks.append(Paragraph("Serving 4 producers flat out on unixsock under `perf record` (first run): " + " ".join(tops)))
    return blocks


IDLE_TARGET_MIB = 20.0  # issue 16: at most 20 MiB RSS per idle receiving process


def idle_memory_findings(a: Results, b: Results | None, source_a: str, source_b: str | None) -> list:
    """Idle memory (``python -m benchmarks.serving_memory --out``): RSS and PSS of an idle aggregator
    with default options, per transport and hot path, beside its floor (a bare interpreter, and one
    that imported what serving needs); the 20 MiB target judged in every run given."""
    runs_by = [(source, [r for r in res.runs if r.scenario == "idle-memory"]) for source, res in ((source_a, a), (source_b, b)) if res]
    if not runs_by[0][1]:
        raise FindingsError(f"{source_a} holds no idle-memory figure (python -m benchmarks.serving_memory --out DIR)")
    mib = 1024 * 1024

    def key(r) -> tuple[str, str]:
        return r.system, r.transport if r.transport != "none" else (r.notes[0] if r.notes else "?")

    figures = [{key(r): r.figures for r in runs} for _, runs in runs_by]
    rows = []
    for k in figures[0]:
        row = [k[0], k[1]]
        for f in figures:
            fig = f.get(k) or {}
            rss, pss = fig.get("rss_bytes"), fig.get("pss_bytes")
            row.append("–" if rss is None else f"{rss / mib:.1f}" + ("" if pss is None else f" / {pss / mib:.1f}"))
        rows.append(row)
    serving = [(k, f[k]["rss_bytes"] / mib) for f in figures for k in f if k[0].startswith("loglab") and f[k].get("rss_bytes")]
    over = sorted({f"{k[0]} {k[1]}" for k, v in serving if v > IDLE_TARGET_MIB})
    worst = max(v for _, v in serving)
    verdict = (f"At most {IDLE_TARGET_MIB:.0f} MiB RSS per idle receiving process: "
               + ("met in every run, every transport and hot path" if not over else f"NOT met by {', '.join(over)}")
               + f" (largest {worst:.1f} MiB).")  # fmt: skip
    header = ["system", "transport (or floor)", *(f"RSS / PSS MiB, `{source}`" for source, _ in runs_by)]
    envs = "; ".join(f"`{source}`: {_when(runs)}, commit {_commit(res.environment)}"
                     for (source, runs), res in zip(runs_by, (a, b)))  # fmt: skip
    return [Paragraph(f"{envs}. Each aggregator started with default options, idle {a.params.get('idle_seconds', '?')} s after "
                      "it said it was listening, then VmRSS and PSS (smaps_rollup) read. The floor: this venv's interpreter bare, "
                      "and after importing what serving needs (`aggregator.cli`)."),
            Table(header, rows), Paragraph(verdict)]  # fmt: skip


def targets_findings(a: Results, b: Results | None, source_a: str, source_b: str | None) -> list:
    """Issue 16's targets (``report/targets.py``), judged in the first run, with the rerun's verdict
    beside each: a target is settled only where both runs say the same."""
    from .targets import target_rows, targets_blocks

    measured = [r for r in _measured(a) if r.status == "ok"]
    blocks = targets_blocks(measured, level=3, workers=loglab_workers(measured))
    if not blocks:
        raise FindingsError(f"{source_a} holds no cell of a target (capacity, efficiency or latency with rawcopy or syslog-ng)")
    blocks.insert(0, Paragraph(_provenance(a, source_a) + (f" Rerun: {_provenance(b, source_b)}" if b else "")))
    if b is not None:
        rerun = {(row[0], row[1]): row for row in target_rows([r for r in _measured(b) if r.status == "ok"])}
        table = blocks[-1]
        table.header.extend(["rerun", "rerun verdict"])
        for row in table.rows:
            other = rerun.get((row[0], row[1]))
            figure = (other[4] if other[4] != "–" else other[2]) if other else "–"  # the ratio, or the absolute figure
            row.extend([figure, other[5] if other else "not measured"])
    return blocks


SECTIONS: dict[str, Callable[[Results, Results | None, str, str | None], list]] = {
    "bench": bench_findings,
    "pipeline": pipeline_findings,
    "formats": formats_findings,
    "json-path": json_path_findings,
    "json-path-rerun": json_path_findings,
    "json-path-reversed": json_path_findings,
    "json-path-native": json_path_findings,
    "json-path-native-rerun": json_path_findings,
    "idle-flush": idle_flush_findings,
    "idle-flush-rerun": idle_flush_findings,
    "threads": threads_findings,
    "threads-rerun": threads_findings,
    "torture": torture_findings,
    "distribute": distribute_findings,
    "query": query_findings,
    "targets": targets_findings,
    "idle-memory": idle_memory_findings,
    "hotpath-cost": hotpath_cost_findings,
}


def render_section(name: str, a: Results, b: Results | None, source_a: str, source_b: str | None, command: str) -> str:
    if name not in SECTIONS:
        raise FindingsError(f"unknown findings section {name!r}; known: {', '.join(SECTIONS)}")
    body = MarkdownRenderer().render(SECTIONS[name](a, b, source_a, source_b)).rstrip() + "\n"
    return f"<!-- findings:{name}: {command} -->\n{body}<!-- findings:{name} end -->\n"


def command_for(name: str, source_a: str, source_b: str | None, readme: str) -> str:
    rerun = f" --rerun {shlex.quote(source_b)}" if source_b else ""
    section = "" if name == "bench" else f" --section {name}"
    return f"loglab report {shlex.quote(source_a)}{rerun} --findings {shlex.quote(readme)}{section}"


def sections_in(text: str) -> dict[str, tuple[str, str]]:
    """name -> (the command in its begin marker, its current body)."""
    return {m["name"]: (m["command"], m["body"]) for m in MARKER.finditer(text)}


def replace_section(text: str, name: str, rendered: str) -> str:
    for m in MARKER.finditer(text):
        if m["name"] == name:
            return text[: m.start()] + rendered + text[m.end() :]
    raise FindingsError(
        f"no findings section {name!r} in the README: add the two markers where it belongs:\n"
        f"<!-- findings:{name}: (the command) -->\n<!-- findings:{name} end -->"
    )


def update(readme: Path, name: str, rendered: str, check: bool) -> bool:
    """Write the section (or, with ``check``, only compare); True if the README already matched."""
    text = readme.read_text(encoding="utf-8")
    new = replace_section(text, name, rendered)
    if new != text and not check:
        readme.write_text(new, encoding="utf-8")
    return new == text


__all__ = ["SECTIONS", "FindingsError", "command_for", "render_section", "replace_section", "sections_in", "update"]
