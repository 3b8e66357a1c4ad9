"""The ``distribute`` scenario (``natslab/distribute_bench.py``, issue 14) in the report and the
README: blocks and charts from its ``RunRecord``s alone.

Its runs are not transport cells: each carries its own figures (``figures["part"]``: none for a
throughput run, ``"fairness"`` for the weight-change-and-failure run, ``"router"`` for the router
alone), so the report's generic tables leave them out and this module renders them:

* throughput per path (from the stream through one distributor and two replicas, through HTTP under
  Locust), against the issue's targets, with CPU per message of each process and the ledgers' check;
* fairness: the largest deviation from the exact share per analyzer and epoch, and the failover
  timings (kill -> routed without it, back -> routed to again), messages moved, duplicates, loss;
* the router alone: picks per second against the number of analyzers, and each design's deviation;
* the two charts: share within each epoch against weight over time, and the router's picks/s.

Figures are median [min–max] over the repeats (``results.stats.spread``).
"""

from __future__ import annotations

from ..results import RunRecord, stats
from .blocks import BulletList, Chart, Heading, Paragraph, Table

DISTRIBUTE = "distribute"


def distribute_runs(runs: list[RunRecord]) -> list[RunRecord]:
    """The measured runs of the scenario that completed (a failed one is listed by ``failures``)."""
    return [r for r in runs if r.scenario == DISTRIBUTE and not r.is_warmup and r.ok]


def failures(runs: list[RunRecord]) -> list[str]:
    return [f"{r.system} repeat {r.repeat + 1}: {'; '.join(r.errors)}" for r in runs if r.scenario == DISTRIBUTE and not r.ok]


def _fmt(s: stats.Spread | None, f: str = "{:,.0f}") -> str:
    if s is None:
        return "–"
    return f.format(s.median) if s.n == 1 else f"{f.format(s.median)} [{f.format(s.min)}–{f.format(s.max)}]"


def _throughput(runs: list[RunRecord]) -> list[RunRecord]:
    return [r for r in runs if r.figures.get("part") is None and r.figures.get("messages_per_s")]


def _path(r: RunRecord) -> str:
    return f"{r.system} ({r.transport})"


def paths(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """Throughput runs by path, in the order they were run."""
    out: dict[str, list[RunRecord]] = {}
    for r in _throughput(runs):
        out.setdefault(_path(r), []).append(r)
    return out


def target_verdict(rates: list[float], target: float) -> str:
    if min(rates) >= target:
        return "met"
    return "not met" if max(rates) < target else "met in some repeats only"


def _per_msg(r: RunRecord, role: str) -> float | None:
    """CPU µs per message of one role in a throughput run (the record keeps the distributor(s) as
    ``aggregator`` in stream runs and as ``producers`` in HTTP runs; see distribute_bench)."""
    http = r.system == "distributor-http"
    if role == "distributor":
        return r.producers.cpu_s / r.expected * 1e6 if http and r.producers and r.expected else r.figures.get("distributor_cpu_us_per_msg")
    if role == "analyzers":
        return None if http else r.figures.get("analyzers_cpu_us_per_msg")
    if role == "nats":
        return r.system_stats.get("nats_cpu_s", 0) / r.expected * 1e6 if r.expected else None
    return r.figures.get("ingress_cpu_us_per_msg")


def throughput_table(runs: list[RunRecord]) -> Table:
    rows = []
    for path, sel in paths(runs).items():
        target = sel[0].figures["target_messages_per_s"]
        rates = [r.figures["messages_per_s"] for r in sel]
        cpu = [_fmt(stats.spread(_per_msg(r, role) for r in sel), "{:.1f}") for role in ("distributor", "analyzers", "nats", "ingress")]
        rows.append([path, str(len(sel)), _fmt(stats.spread(rates)), f"{target:,.0f}: {target_verdict(rates, target)}", *cpu,
                     str(sum(r.seq.missing for r in sel if r.seq)), str(sum(r.seq.duplicates for r in sel if r.seq))])  # fmt: skip
    return Table(["path", "repeats", "messages/s", "target", "distributor CPU µs/msg", "analyzers CPU µs/msg",
                  "nats-server CPU µs/msg", "HTTP ingress CPU µs/msg", "missing", "duplicates"], rows)  # fmt: skip


def _fairness(runs: list[RunRecord]) -> list[RunRecord]:
    return [r for r in runs if r.figures.get("part") == "fairness"]


def _analyzer_ids(record: RunRecord) -> list[str]:
    return sorted({a for e in record.figures["epochs"] for a in (*e["weights"], *e["analyzers"])})


def epochs_table(record: RunRecord) -> Table:
    ids = _analyzer_ids(record)
    rows = []
    for e in record.figures["epochs"]:
        cells = [f"{max(e['analyzers'][a]['max_ahead'], e['analyzers'][a]['max_behind']):.2f}" if a in e["analyzers"] else "–" for a in ids]
        weights = ", ".join(f"{a} {w:g}" for a, w in sorted(e["weights"].items()))
        rows.append([str(e["epoch"]), weights, f"{e['messages']:,}", *cells])
    return Table(["epoch", "weights online", "messages", *ids], rows)


def failover_table(runs: list[RunRecord]) -> Table:
    rows = []
    for r in _fairness(runs):
        f = r.figures
        secs = lambda v: f"{v:.2f}" if v is not None else "not seen"  # noqa: E731
        rows.append([str(r.repeat + 1), "; ".join(f"{e['event']} @{e['t_s']:.1f}" for e in f["events"]),
                     f"{f['max_deviation_messages']:.2f}", secs(f["failover_detect_s"]), secs(f["return_s"]),
                     f"{f['failover_messages']:,}", f"{f['duplicates_confirmed']:,}", str(r.seq.duplicates if r.seq else "?"),
                     str(r.seq.missing if r.seq else "?")])  # fmt: skip
    return Table(["repeat", "events (s after start)", "largest deviation (msg)", "kill -> routed without it (s)",
                  "back -> routed to again (s)", "messages failed over", "confirmed duplicates (late acks)",
                  "duplicates (ledgers)", "lost (ledgers)"], rows)  # fmt: skip


def _router(runs: list[RunRecord]) -> list[RunRecord]:
    return [r for r in runs if r.figures.get("part") == "router"]


def router_table(runs: list[RunRecord]) -> Table:
    router = _router(runs)
    algos = list(dict.fromkeys(r.figures["algorithm"] for r in router))
    rows = []
    for n in sorted({r.figures["analyzers"] for r in router}):
        cells = []
        for a in algos:
            sel = [r for r in router if r.figures["algorithm"] == a and r.figures["analyzers"] == n]
            dev = [r.figures["max_deviation_messages"] for r in sel if r.figures["max_deviation_messages"] is not None]
            cells.append(_fmt(stats.spread(r.figures["picks_per_s"] for r in sel)) + (f" (dev {max(dev):.5f})" if dev else ""))
        rows.append([f"{n:,}", *cells])
    return Table(["analyzers", *algos], rows)


def distribute_blocks(runs: list[RunRecord], level: int = 2) -> list:
    """Every table of the scenario (nothing when the results hold none of its runs)."""
    all_runs = runs
    runs = distribute_runs(runs)
    failed = failures(all_runs)
    if not runs and not failed:
        return []
    sub = level + 1
    blocks: list = [Heading(level, "Distributing: LOGS -> distributor(s) -> weighted analyzers")]
    if failed:
        blocks.append(BulletList([f"FAILED: {f}" for f in failed]))
    if paths(runs):
        blocks += [Heading(sub, "Throughput"),
                   Paragraph("From the stream: LOGS pre-filled, four analyzers weighted 0.4/0.3/0.2/0.1; messages acknowledged to "
                             "the stream between the first and the last acknowledgement. Through HTTP: Locust headless (16 users, "
                             "each an agent posting as fast as answered) against distributor-http, one message per request (the "
                             "reference design's interface) or 20; messages stored by the ingress / Locust's run time. Missing and "
                             "duplicates: the union of the analyzers' ledgers against what was sent. Median [min–max] over repeats."),
                   throughput_table(runs)]  # fmt: skip
    fair = _fairness(runs)
    if fair:
        blocks += [Heading(sub, "Fairness and failover"),
                   Paragraph("Largest deviation from the exact share, in messages, per analyzer and epoch (the larger of ahead and "
                             "behind over every prefix of the epoch; the schedule's bound is < 1), first repeat. A new epoch starts "
                             "at every membership or weight change."),
                   epochs_table(fair[0]), failover_table(runs)]  # fmt: skip
    if _router(runs):
        blocks += [Heading(sub, "The router alone"),
                   Paragraph("Picks per second (one Python thread), median [min–max] over repeats; in brackets: the largest "
                             "deviation from the exact share over 20,000 picks, in messages (the EDF schedule's exactly, at every "
                             "size; the others' for up to 100 analyzers)."),
                   router_table(runs)]  # fmt: skip
    return blocks


# -- charts -----------------------------------------------------------------------------------------


def fairness_chart(record: RunRecord) -> Chart:
    from .charts import _png, plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    ids = _analyzer_ids(record)
    for k, aid in enumerate(ids):
        ts, share, target = [], [], []
        for row in record.series:
            total = sum(row["routed_epoch"].values())
            weights = row["weights"]
            if total < 50:  # the first messages of an epoch: a share of a few is noise
                continue
            ts.append(row["t_s"])
            share.append(row["routed_epoch"].get(aid, 0) / total)
            target.append(weights.get(aid, 0) / sum(weights.values()) if weights else 0)
        ax.plot(ts, share, color=f"C{k}", label=f"{aid}: share within the epoch")
        ax.plot(ts, target, color=f"C{k}", linestyle="--", linewidth=1, label=f"{aid}: weight / total online")
    for e in record.figures["events"]:
        ax.axvline(e["t_s"], color="grey", linewidth=0.8)
        ax.text(e["t_s"], 0.98, " " + e["event"], rotation=90, va="top", fontsize=8, color="grey")
    ax.set_xlabel("seconds since the distributor started")
    ax.set_ylabel("share of the epoch's messages")
    ax.set_ylim(0, 1)
    ax.set_title("Routed share against weight, through weight changes and a failure")
    ax.legend(fontsize=7, ncol=2, loc="upper right", bbox_to_anchor=(1, 0.85))
    return Chart("distribute_fairness", "Distribute: share against weight over time",
                 "Solid: each analyzer's share of the messages routed in the current epoch (the distributor's stats every 0.1 s); "
                 "dashed: its weight over the total weight online. Grey lines: the events (a weight change, a SIGKILL, the "
                 "analyzer back, another weight change). First repeat.", _png(fig))  # fmt: skip


def router_chart(runs: list[RunRecord]) -> Chart:
    from .charts import _png, plt

    router = _router(runs)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for a in dict.fromkeys(r.figures["algorithm"] for r in router):
        points = []
        for n in sorted({r.figures["analyzers"] for r in router}):
            s = stats.spread(r.figures["picks_per_s"] for r in router if r.figures["algorithm"] == a and r.figures["analyzers"] == n)
            if s:
                points.append((n, s.median))
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=a)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("analyzers")
    ax.set_ylabel("picks per second (one Python thread)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return Chart("distribute_router", "Distribute: the router alone",
                 "Median picks per second over repeats against the number of analyzers (log-log): the distributor's exact EDF "
                 "schedule (a scan up to 16 analyzers, two heaps beyond), nginx's smooth weighted round-robin (O(n) per pick) and "
                 "the Go design's random weight tree (O(log n), proportional only on average).", _png(fig))  # fmt: skip


def distribute_charts(runs: list[RunRecord]) -> list[Chart]:
    runs = distribute_runs(runs)
    charts = []
    fair = _fairness(runs)
    if fair:
        charts.append(fairness_chart(fair[0]))
    if _router(runs):
        charts.append(router_chart(runs))
    return charts


__all__ = ["DISTRIBUTE", "distribute_blocks", "distribute_charts", "distribute_runs", "paths", "target_verdict"]
