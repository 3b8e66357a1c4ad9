"""soak: a bounded soak run, a steady rate over every transport at once, sampled over time.

USAGE (as a function; wire it into ``loglab``/``make bench`` tooling, not the unit suite):
    from benchmarks.faults.soak import run_soak, plot_soak
    result = run_soak(duration_s=120, rate=2000, producers=2, sample_interval_s=1.0, out_json=Path("soak.json"))
    plot_soak(result, Path("soak.png"))

One aggregator per transport (all five run side by side), each fed by ``producers`` producers at
``rate`` messages/s each for ``duration_s``. Every ``sample_interval_s`` the aggregator's RSS, its
open file descriptors and its ``messages_written`` (from ``--stats-interval``) are sampled. At the
end the producers' summaries give what was sent; ``lost = sent - written``.

Result (plain data, raw samples kept)::

    {"version": 1, "kind": "loglab-soak", "params": {...}, "started_unix_ns": ...,
     "transports": {"unixsock": {"samples": [{"t_s", "rss_bytes", "fds", "written", "expected"}...],
                                 "sent", "written", "rejected", "lost",
                                 "rss_first_bytes", "rss_last_bytes", "rss_growth_bytes",
                                 "fds_first", "fds_last", "verdict": {"no_growth", "no_loss"}}, ...}}

``expected`` is what the producers' schedules had sent by the sample's time (rate x time since each
producer's first send, from their summaries), so ``expected - written`` over time is the in-flight
lag plus any loss; the final ``lost`` is exact. ``no_growth``: the RSS of the last
quarter of samples is within 5 MiB of the second quarter's (after warm-up) and fds do not grow.
``no_loss`` is required on reliable transports; udp's loss is reported, not judged.

How the report should plot it (``plot_soak`` does this from the JSON alone): three panels sharing
the x axis (seconds), one line per transport: (1) RSS in MiB, (2) open fds, (3) cumulative loss
(``expected - written``, which returns to 0 at the end on reliable transports).
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path


from aggregator.transports import TRANSPORT_NAMES, get_transport, transport_names

from ..processes import AggregatorProc, proc_status, producer_summary, reap, start_producer

RELIABLE = transport_names(reliable=True)

VERSION = 1
MIB = 1 << 20


def run_soak(duration_s: float = 120.0, rate: float = 2000.0, producers: int = 2, sample_interval_s: float = 1.0,
             transports=TRANSPORT_NAMES, workdir: Path | None = None, out_json: Path | None = None) -> dict:
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="loglab-soak-")) if own else workdir
    count = int(rate * duration_s)
    aggs: dict[str, AggregatorProc] = {}
    procs: dict[str, list] = {}
    result = {"version": VERSION, "kind": "loglab-soak", "started_unix_ns": time.time_ns(),
              "params": {"duration_s": duration_s, "rate_per_producer": rate, "producers": producers,
                         "sample_interval_s": sample_interval_s, "messages_per_producer": count},
              "transports": {}}
    try:
        for t in transports:
            aggs[t] = AggregatorProc(t, workdir / t / "agg", stats_interval=max(0.1, sample_interval_s / 2)).start()
            result["transports"][t] = {"samples": []}
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
                result["transports"][t]["samples"].append({
                    "t_s": round(elapsed, 3), "unix_ns": time.time_ns(), "rss_bytes": st["VmRSS"], "fds": st["fds"],
                    "written": written, "expected": None})
            if all(p.poll() is not None for ps in procs.values() for p in ps) or elapsed > duration_s + 60:
                break
            next_sample += sample_interval_s
            time.sleep(max(0.0, next_sample - time.monotonic()))
        for t in transports:
            if not get_transport(t).reliable:
                time.sleep(0.2)  # the last datagrams in the socket buffer (udp has no drain signal)
            aggs[t].stop(signal.SIGTERM, timeout=60)
            s = aggs[t].stats()
            sent = 0
            starts = []
            for i in range(producers):
                try:
                    summary = producer_summary(workdir / t, f"{t}-p{i}")
                except FileNotFoundError:
                    continue
                sent += summary["sent"]
                starts.append(summary["first_send_ns"])
            samples = result["transports"][t]["samples"]
            for x in samples:  # what the producers' schedules had sent by then (from their first send)
                x["expected"] = sum(min(count, max(0, int((x["unix_ns"] - s0) / 1e9 * rate))) for s0 in starts if s0)
            q = max(1, len(samples) // 4)
            mid = [x["rss_bytes"] for x in samples[q:2 * q]] or [samples[0]["rss_bytes"]]
            last = [x["rss_bytes"] for x in samples[-q:]]
            entry = result["transports"][t]
            entry.update({
                "sent": sent, "written": s["messages_written"], "rejected": s["rejected_total"],
                "lost": sent - s["messages_written"] - s["rejected_total"],
                "rss_first_bytes": samples[0]["rss_bytes"], "rss_last_bytes": samples[-1]["rss_bytes"],
                "rss_growth_bytes": max(last) - max(mid), "fds_first": samples[0]["fds"], "fds_last": samples[-1]["fds"],
            })
            entry["verdict"] = {
                "no_growth": entry["rss_growth_bytes"] < 5 * MIB and samples[-1]["fds"] <= samples[0]["fds"] + 2,
                "no_loss": entry["lost"] == 0 if t in RELIABLE else None,
            }
            if out_json is not None:
                out_json.write_text(json.dumps(result, indent=1) + "\n")
    finally:
        for ps in procs.values():
            reap(ps)
        for a in aggs.values():
            a.close()
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    if out_json is not None:
        out_json.write_text(json.dumps(result, indent=1) + "\n")
    return result


def summary_table(result: dict) -> str:
    lines = ["transport  sent      written   lost   rss first->last MiB  fds first->last  no_growth  no_loss"]
    for t, e in result["transports"].items():
        lines.append(f"{t:<10} {e['sent']:<9} {e['written']:<9} {e['lost']:<6} "
                     f"{e['rss_first_bytes'] / MIB:6.1f} -> {e['rss_last_bytes'] / MIB:6.1f}      "
                     f"{e['fds_first']:>3} -> {e['fds_last']:<3}        {e['verdict']['no_growth']!s:<9}  {e['verdict']['no_loss']}")
    return "\n".join(lines)


def plot_soak(result: dict, path: Path) -> Path:
    """Three panels from the result alone: RSS (MiB), open fds, expected - written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for t, e in result["transports"].items():
        ts = [s["t_s"] for s in e["samples"]]
        axes[0].plot(ts, [s["rss_bytes"] / MIB for s in e["samples"]], label=t)
        axes[1].plot(ts, [s["fds"] for s in e["samples"]], label=t)
        axes[2].plot(ts, [s["expected"] - s["written"] for s in e["samples"]], label=t)
    axes[0].set_ylabel("aggregator RSS (MiB)")
    axes[1].set_ylabel("open fds")
    axes[2].set_ylabel("expected - written (msgs)")
    axes[2].set_xlabel("seconds")
    axes[0].legend(ncol=5, fontsize="small")
    p = result["params"]
    fig.suptitle(f"soak: {p['producers']} x {p['rate_per_producer']:g} msg/s per transport for {p['duration_s']:g} s")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    duration = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    res = run_soak(duration_s=duration, out_json=Path("soak.json"))
    print(summary_table(res))
    plot_soak(res, Path("soak.png"))
