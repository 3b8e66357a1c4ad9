"""soak: a bounded soak run, a steady rate over every transport at once, sampled over time.

USAGE (as a function; ``loglab soak`` wires it):
    from benchmarks.faults.soak import run_soak, plot_soak
    runs = run_soak(duration_s=120, rate=2000, producers=2, sample_interval_s=1.0, out_dir=Path("results/x"))
    plot_soak(runs, Path("soak.png"))

One aggregator per transport (all of the registry's, side by side), each fed by ``producers``
producers at ``rate`` messages/s each for ``duration_s``. Every ``sample_interval_s`` the
aggregator's RSS, its open file descriptors and its ``messages_written`` (from
``--stats-interval``) are sampled. At the end the producers' summaries give what was sent;
``lost = sent - written - rejected``.

Each transport is one run of kind "soak" (the lab's one run record, written to a results
directory with ``out_dir``, beside a benchmark's if there is one; ``loglab report`` draws it):
``series`` holds the raw samples ``{t_s, unix_ns, rss_bytes, fds, written, expected}``, ``figures``
the summary (``rss_first_bytes``, ``rss_last_bytes``, ``rss_growth_bytes``, ``fds_first``,
``fds_last``, ``no_growth``, ``no_loss``), ``sent``/``written``/``rejected`` the counts.

``expected`` is what the producers' schedules had sent by the sample's time (rate x time since each
producer's first send, from their summaries), so ``expected - written`` over time is the in-flight
lag plus any loss; the final ``lost`` is exact. ``no_growth``: the RSS of the last quarter of
samples is within 5 MiB of the second quarter's (after warm-up) and fds do not grow. ``no_loss``
is required on reliable transports; an unreliable transport's loss is reported, not judged.

How the report plots it (``plot_soak`` does this from the runs alone): three panels sharing the x
axis (seconds), one line per transport: (1) RSS in MiB, (2) open fds, (3) ``expected - written``
(which returns to 0 at the end on reliable transports).
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from aggregator.transports import TRANSPORT_NAMES, get_transport

from ..processes import AggregatorProc, proc_status, producer_summary, reap, start_producer
from ..results import ResultsWriter, RunRecord, Workload
from ..results.environment import collect_environment

MIB = 1 << 20


def run_soak(duration_s: float = 120.0, rate: float = 2000.0, producers: int = 2, sample_interval_s: float = 1.0,
             transports=TRANSPORT_NAMES, workdir: Path | None = None, out_dir: Path | None = None) -> list[RunRecord]:  # fmt: skip
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="loglab-soak-")) if own else workdir
    count = int(rate * duration_s)
    workload = Workload(producers, count, 200, rate, 1)
    aggs: dict[str, AggregatorProc] = {}
    procs: dict[str, list] = {}
    runs = {t: RunRecord(system="loglab", transport=t, scenario="soak", kind="soak", workload=workload, expected=workload.expected)
            for t in transports}  # fmt: skip
    t0 = time.monotonic()
    try:
        for t in transports:
            aggs[t] = AggregatorProc(t, workdir / t / "agg", stats_interval=max(0.1, sample_interval_s / 2)).start()
        start = time.monotonic()
        for t in transports:
            procs[t] = [start_producer(t, aggs[t].address, f"{t}-p{i}", count, workdir / t, "--rate", rate) for i in range(producers)]
        next_sample = start
        while True:
            now = time.monotonic()
            elapsed = now - start
            for t in transports:
                st = proc_status(aggs[t].pid)
                try:
                    written = aggs[t].stats()["messages_written"]
                except (FileNotFoundError, json.JSONDecodeError):
                    written = 0
                runs[t].series.append({"t_s": round(elapsed, 3), "unix_ns": time.time_ns(), "rss_bytes": st["VmRSS"],
                                       "fds": st["fds"], "written": written, "expected": None})  # fmt: skip
            if all(not p.running() for ps in procs.values() for p in ps) or elapsed > duration_s + 60:
                break
            next_sample += sample_interval_s
            time.sleep(max(0.0, next_sample - time.monotonic()))
        for t in transports:
            _finish(runs[t], aggs[t], workdir / t, producers, rate, count, t0)
    finally:
        for ps in procs.values():
            reap(ps)
        for a in aggs.values():
            a.close()
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    if out_dir is not None:
        writer = ResultsWriter(out_dir, collect_environment(), {"soak": {"duration_s": duration_s, "rate_per_producer": rate,
                               "producers": producers, "sample_interval_s": sample_interval_s}}, append=True)  # fmt: skip
        for run in runs.values():
            writer.add_run(run)
        writer.close()
    return list(runs.values())


def _finish(run: RunRecord, agg: AggregatorProc, workdir: Path, producers: int, rate: float, count: int, t0: float) -> None:
    t = run.transport
    if not get_transport(t).reliable:
        time.sleep(0.2)  # the last datagrams in the socket buffer (no drain signal on an unreliable transport)
    agg.stop(signal.SIGTERM, timeout=60)
    s = agg.stats()
    starts = []
    run.sent = 0
    for i in range(producers):
        try:
            summary = producer_summary(workdir, f"{t}-p{i}")
        except FileNotFoundError:
            continue
        run.sent += summary["sent"]
        starts.append(summary["first_send_ns"])
    samples = run.series
    for x in samples:  # what the producers' schedules had sent by then (from their first send)
        x["expected"] = sum(min(count, max(0, int((x["unix_ns"] - s0) / 1e9 * rate))) for s0 in starts if s0)
    q = max(1, len(samples) // 4)
    mid = [x["rss_bytes"] for x in samples[q : 2 * q]] or [samples[0]["rss_bytes"]]
    last = [x["rss_bytes"] for x in samples[-q:]]
    run.written, run.rejected = s["messages_written"], s["rejected_total"]
    run.figures = {
        "rss_first_bytes": samples[0]["rss_bytes"], "rss_last_bytes": samples[-1]["rss_bytes"],
        "rss_growth_bytes": max(last) - max(mid), "fds_first": samples[0]["fds"], "fds_last": samples[-1]["fds"],
    }  # fmt: skip
    run.figures["no_growth"] = run.figures["rss_growth_bytes"] < 5 * MIB and samples[-1]["fds"] <= samples[0]["fds"] + 2
    run.figures["no_loss"] = run.lost == 0 if get_transport(t).reliable else None
    if not run.figures["no_growth"]:
        run.errors.append(f"grew: RSS +{run.figures['rss_growth_bytes'] / MIB:.1f} MiB, fds {run.figures['fds_first']} -> {run.figures['fds_last']}")
    if run.figures["no_loss"] is False:
        run.errors.append(f"{run.lost} messages lost on a reliable transport")
    run.seconds = round(time.monotonic() - t0, 2)


def summary_table(runs: list[RunRecord]) -> str:
    lines = ["transport  sent      written   lost   rss first->last MiB  fds first->last  no_growth  no_loss"]
    for r in runs:
        f = r.figures
        lines.append(f"{r.transport:<10} {r.sent:<9} {r.written:<9} {r.lost:<6} "
                     f"{f['rss_first_bytes'] / MIB:6.1f} -> {f['rss_last_bytes'] / MIB:6.1f}      "
                     f"{f['fds_first']:>3} -> {f['fds_last']:<3}        {f['no_growth']!s:<9}  {f['no_loss']}")  # fmt: skip
    return "\n".join(lines)


def plot_soak(runs: list[RunRecord], path: Path) -> Path:
    """Three panels from the runs alone: RSS (MiB), open fds, expected - written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for r in runs:
        ts = [s["t_s"] for s in r.series]
        axes[0].plot(ts, [s["rss_bytes"] / MIB for s in r.series], label=r.transport)
        axes[1].plot(ts, [s["fds"] for s in r.series], label=r.transport)
        axes[2].plot(ts, [(s["expected"] or 0) - s["written"] for s in r.series], label=r.transport)
    axes[0].set_ylabel("aggregator RSS (MiB)")
    axes[1].set_ylabel("open fds")
    axes[2].set_ylabel("expected - written (msgs)")
    axes[2].set_xlabel("seconds")
    axes[0].legend(ncol=5, fontsize="small")
    w = runs[0].workload
    fig.suptitle(f"soak: {w.producers} x {w.rate:g} msg/s per transport, {w.count:,} messages each")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    duration = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    result = run_soak(duration_s=duration)
    print(summary_table(result))
    plot_soak(result, Path("soak.png"))
