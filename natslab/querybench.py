"""``loglab bench --scenarios query``: distributed query latency, measured like the classic distributed
log querier (per token, ten trials or more, mean and one standard deviation), beside its floor.

Setup: four hosts (network namespaces; loopback processes where impossible, said in the notes),
``--no-ship`` shippers answering queries, a three-node NATS cluster on hosts 1-3 (the lab's
default deployment), each host filled with ``60 MB x scale`` of generated records
(``querydata.fill(direct=True)``). The querier runs in the bench process, in the lab's namespace,
connected once: a trial is one ``scatter_gather`` from the first publish to the last final.

Per token (everywhere, unique, even, heavy), per cache state (warm; cold: page cache dropped
before every trial, when root), ``trials`` trials of each mode, the modes' order rotated per trial:

* ``floor --count``: the scanning tool itself (``rg --count``, the agents' own argv) on the four
  files at once, as four processes (the hosts share this machine's two cores): the floor a
  distributed ``--count`` is measured against (goal: within 1.2x);
* ``querier --count``: the distributed count;
* ``floor (full output)``: the tool printing every matching line into a pipe that is read and
  dropped, four at once;
* ``querier (full output)``: every matching line delivered to the querier (counted and dropped,
  as ``querier > /dev/null`` would);
* ``querier command --count`` (warm only): the ``querier`` process end to end, Python start,
  NATS connection and registry read included: what an operator waits for.

Each (mode, token, cache) is one ``RunRecord`` (kind "bench", scenario "query") with every trial's
seconds in ``figures["trials_s"]`` and per trial: what each host scanned, matched and returned, its
scan time and its wait on the querier's acks, and CPU seconds of the scanners, the agents, the
NATS servers and the querier (where the time goes). ``plot_query_latency`` draws the chart from
results files only; ``summary_markdown`` writes the tables the README quotes.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from benchmarks.processes import ProcGroup, console_script, nats_unavailable
from benchmarks.results import LatencyRecord, ResultsWriter, RunRecord, load_results, stats

from .pipeline import Pipeline
from .querydata import DEFAULT_MB, TOKENS, TokenRates, fill

HOSTS = 4
TRIALS = 10
NATS_NODES = 3
FLOOR_COUNT, QUERY_COUNT, FLOOR_FULL, QUERY_FULL, COMMAND = (
    "floor --count", "querier --count", "floor (full output)", "querier (full output)", "querier command --count")  # fmt: skip
MODES = (FLOOR_COUNT, QUERY_COUNT, FLOOR_FULL, QUERY_FULL)
COMMAND_TRIALS = 5
TIMEOUT_S = 300.0


def drop_caches_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "not root: dropping the page cache needs root (cold-cache trials skipped)"
    if not os.access("/proc/sys/vm/drop_caches", os.W_OK):
        return "/proc/sys/vm/drop_caches is not writable here (cold-cache trials skipped)"
    return None


def drop_caches() -> None:
    """Write back, then drop clean pages: the next read of every file comes from the disk."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


class _Sink:
    """The querier's output when measuring: counted, dropped (``querier > /dev/null``)."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.bytes += len(data)

    def flush(self) -> None:
        pass


def _cpu(pids: list[int], children: bool = False) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += (t.children_user + t.children_system) if children else (t.user + t.system)
    return total


def floor_trial(argvs: list[list[str]]) -> dict:
    """The tool on every file at once; each output pipe read and dropped. Wall seconds, bytes out,
    CPU seconds (from wait4's rusage of each child)."""
    started = time.perf_counter()
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL) for a in argvs]
    out = [0] * len(procs)

    def drain(i: int) -> None:
        fd = procs[i].stdout.fileno()
        while data := os.read(fd, 1 << 20):
            out[i] += len(data)

    readers = [threading.Thread(target=drain, args=(i,)) for i in range(len(procs))]
    for t in readers:
        t.start()
    cpu = 0.0
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
    for t in readers:
        t.join()
    seconds = time.perf_counter() - started
    for proc in procs:
        proc.stdout.close()
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"{proc.args} exited {proc.returncode}")
    return {"seconds": seconds, "bytes_out": sum(out), "scanner_cpu_s": cpu}


async def query_trial(nc, hosts: list[str], q, agent_pids: list[int], nats_pids: list[int]) -> dict:
    from querier.gather import scatter_gather
    from querier.output import BlockPrinter

    sink = _Sink()
    printer = BlockPrinter(sink, hosts, order="host", count_only=q.count_only)
    cpu0 = (_cpu(agent_pids), _cpu(agent_pids, children=True), _cpu(nats_pids), time.thread_time())
    started = time.perf_counter()
    answers = await scatter_gather(nc, hosts, q, printer, TIMEOUT_S)
    seconds = time.perf_counter() - started
    querier_cpu = time.thread_time() - cpu0[3]
    printer.close()
    cpu1 = (_cpu(agent_pids), _cpu(agent_pids, children=True), _cpu(nats_pids))
    bad = [f"{a.host}: {a.status} {a.error or ''}" for a in answers if a.status != "ok"]
    if bad:
        raise RuntimeError("; ".join(bad))
    return {
        "seconds": seconds, "bytes_out": sink.bytes, "querier_cpu_s": querier_cpu,
        "agent_cpu_s": cpu1[0] - cpu0[0], "scanner_cpu_s": cpu1[1] - cpu0[1], "nats_cpu_s": cpu1[2] - cpu0[2],
        "hosts": {a.host: {"matches": a.matches, "bytes_scanned": a.bytes_scanned, "bytes_returned": a.bytes_received,
                           "elapsed_s": a.done_s, "scan_s": a.summary.scan_s, "wait_s": a.summary.wait_s,
                           "first_data_s": a.first_data_s, "tool": a.tool} for a in answers},
    }  # fmt: skip


def command_trial(servers: str, token: str, netns: str | None) -> dict:
    from benchmarks.processes import querier_argv

    argv = querier_argv(servers, "--count", "--json", "--", token, netns=netns)
    started = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
    seconds = time.perf_counter() - started
    if r.returncode not in (0, 1):
        raise RuntimeError(f"querier exited {r.returncode}: {r.stderr[-500:]}")
    return {"seconds": seconds, "bytes_out": len(r.stdout)}


def _summary(values: list[float]) -> dict:
    s = sorted(values)
    return {"mean_s": statistics.fmean(s), "std_s": statistics.stdev(s) if len(s) > 1 else 0.0,
            "p95_s": stats.percentile(s, 95), "min_s": s[0], "max_s": s[-1], "n": len(s)}  # fmt: skip


def _record(mode: str, token: str, cache: str, rep: int, trials: list[dict], notes: list[str], context: dict) -> RunRecord:
    secs = [t["seconds"] for t in trials]
    fig = {"mode": mode, "token": token, "cache": cache, "trials_s": secs, **_summary(secs),
           "bytes_out_per_trial": statistics.fmean(t["bytes_out"] for t in trials), "trials": trials, **context}  # fmt: skip
    scanned = context["bytes_per_host"] * HOSTS
    fig["scanned_mb_per_s"] = scanned / 1e6 / fig["mean_s"]
    fig["delivered_mb_per_s"] = fig["bytes_out_per_trial"] / 1e6 / fig["mean_s"]
    if trials and "hosts" in trials[0]:
        per_host = {}
        for h in trials[0]["hosts"]:
            rows = [t["hosts"][h] for t in trials]
            per_host[h] = {"matches": rows[0]["matches"], "bytes_scanned": rows[0]["bytes_scanned"],
                           "bytes_returned": statistics.fmean(r["bytes_returned"] for r in rows),
                           "scan_s": statistics.fmean(r["scan_s"] for r in rows), "wait_s": statistics.fmean(r["wait_s"] for r in rows),
                           "scanned_mb_per_s": statistics.fmean(r["bytes_scanned"] / 1e6 / r["scan_s"] for r in rows if r["scan_s"] > 0)}  # fmt: skip
        fig["per_host"] = per_host
        for key in ("querier_cpu_s", "agent_cpu_s", "scanner_cpu_s", "nats_cpu_s"):
            fig[f"mean_{key}"] = statistics.fmean(t[key] for t in trials)
    elif trials and "scanner_cpu_s" in trials[0]:
        fig["mean_scanner_cpu_s"] = statistics.fmean(t["scanner_cpu_s"] for t in trials)
    return RunRecord(system=mode, transport="nats" if mode.startswith("querier") else "local", scenario="query", workload=None,
                     repeat=rep, latency=LatencyRecord.from_samples([int(s * 1e9) for s in secs]), figures=fig, notes=list(notes),
                     window_start_ns=0, window_end_ns=0)  # fmt: skip


def run_query_bench(writer: ResultsWriter, repeat: int = 1, scale: float = 1.0, trials: int = TRIALS, echo=print) -> bool:
    """Every run of the query scenario, written through ``writer`` as each cell finishes."""
    why = nats_unavailable()
    if why:
        writer.note(f"query scenario skipped: {why}")
        echo(f"bench: query skipped: {why}")
        return True
    trials = max(TRIALS, trials)
    mb = DEFAULT_MB * scale
    cold_why = drop_caches_unavailable()
    caches = ["warm"] if cold_why else ["warm", "cold"]
    if cold_why:
        writer.note(f"query scenario: {cold_why}")
    workdir = Path(tempfile.mkdtemp(prefix="loglab-query-", dir=_big_tmp()))
    ok = True
    try:
        with Pipeline(workdir, hosts=HOSTS, nats_nodes=NATS_NODES, mode="auto", shipper_args=("--no-ship",)) as p:
            echo(f"[query] {p.describe()}; filling {HOSTS} x {mb:g} MB")
            filled = fill(p, mb, TokenRates(), seed=0, direct=True, echo=lambda t: echo(f"[query] {t}"))
            ok &= _run(p, writer, filled, caches, repeat, trials, mb, echo)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return ok


def _big_tmp() -> str | None:
    """Not tmpfs: the files must come from a disk for the cold-cache trials to mean anything."""
    return os.environ.get("LOGLAB_QUERY_DIR") or ("/var/tmp" if os.path.isdir("/var/tmp") else None)


def _run(p: Pipeline, writer: ResultsWriter, filled, caches: list[str], repeat: int, trials: int, mb: float, echo) -> bool:
    from shipper.query.protocol import Query
    from shipper.query.scan import pick_scanner

    hosts = [h.name for h in p.hosts.hosts]
    files = [p.output(h) for h in p.hosts.hosts]
    sizes = [f.stat().st_size for f in files]
    scanner = pick_scanner("auto")
    agent_pids = [p.shipper(h).pid for h in p.hosts.hosts]
    nats_pids = [p.nats.node_proc(i).pid for i in range(len(p.nats.nodes))]
    notes = [p.describe(), f"scanner {scanner.name} ({scanner.executable}); files of {', '.join(f'{s / 1e6:.1f}' for s in sizes)} MB on "
             f"{_fs_of(files[0])}", f"{os.cpu_count()} CPUs shared by the four hosts, NATS and the querier"]  # fmt: skip
    context = {"hosts": HOSTS, "bytes_per_host": statistics.fmean(sizes), "scanner": scanner.name, "nats_nodes": NATS_NODES,
               "expected": {h: d.tokens for h, d in filled.items()}, "lines": {h: d.lines for h, d in filled.items()}}  # fmt: skip
    ok = True

    async def session() -> None:
        nonlocal ok
        import nats

        nc = await nats.connect(p.nats.urls, connect_timeout=5, name="query-bench")
        try:
            for rep in range(repeat):
                for cache in caches:
                    for token in TOKENS:
                        cells: dict[str, list[dict]] = {m: [] for m in MODES}
                        queries = {QUERY_COUNT: Query(id="bench", pattern=token, count_only=True, timeout_s=TIMEOUT_S),
                                   QUERY_FULL: Query(id="bench", pattern=token, timeout_s=TIMEOUT_S)}  # fmt: skip
                        floors = {FLOOR_COUNT: [scanner.argv(queries[QUERY_COUNT], f, count=True) for f in files],
                                  FLOOR_FULL: [scanner.argv(queries[QUERY_FULL], f, count=False) for f in files]}  # fmt: skip
                        if cache == "warm":  # one untimed round: everything in the page cache, code paths hot
                            for m in MODES:
                                await _trial(m, nc, hosts, queries, floors, agent_pids, nats_pids)
                        t0 = time.monotonic()
                        for i in range(trials):
                            for m in MODES[i % len(MODES):] + MODES[: i % len(MODES)]:
                                if cache == "cold":
                                    drop_caches()
                                cells[m].append(await _trial(m, nc, hosts, queries, floors, agent_pids, nats_pids))
                        for m in MODES:
                            r = _record(m, token, cache, rep, cells[m], notes, context)
                            ok &= _check(r, filled, token)
                            writer.add_run(r)
                        f = {m: cells[m] for m in MODES}
                        echo(f"[query pass {rep + 1} {cache}] {token:<10} " + "  ".join(
                            f"{m}: {statistics.fmean(t['seconds'] for t in f[m]) * 1e3:7.1f} ms" for m in MODES) +
                            f"  ({time.monotonic() - t0:.0f} s)")  # fmt: skip
                for token in TOKENS:  # the command as an operator runs it (the first run, untimed, warms up)
                    runs = [await asyncio.to_thread(command_trial, p.nats.servers, token, p.hosts.lab_ns) for _ in range(COMMAND_TRIALS + 1)]
                    writer.add_run(_record(COMMAND, token, "warm", rep, runs[1:], notes, context))
        finally:
            await nc.close()

    p.nats.client(session)
    return ok


async def _trial(mode: str, nc, hosts, queries, floors, agent_pids, nats_pids) -> dict:
    if mode in floors:
        return await asyncio.to_thread(floor_trial, floors[mode])
    return await query_trial(nc, hosts, queries[mode], agent_pids, nats_pids)


def _check(r: RunRecord, filled, token: str) -> bool:
    """Every distributed trial counted exactly what the generator wrote."""
    for t in r.figures["trials"]:
        for h, row in t.get("hosts", {}).items():
            if row["matches"] != filled[h].tokens[token]:
                r.errors.append(f"{h}: {row['matches']} matches, the generator wrote {filled[h].tokens[token]}")
    return not r.errors


def _fs_of(path: Path) -> str:
    try:
        out = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True, text=True, timeout=10).stdout.split()
        return out[-1] if out else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


# -- reading the results back: the chart and the tables (results files only) ---------------------

def query_runs(results_dir) -> list[RunRecord]:
    return [r for r in load_results(results_dir).runs if r.scenario == "query" and r.kind == "bench" and r.figures]


def _cells(runs: list[RunRecord]) -> dict[tuple, list[RunRecord]]:
    out: dict[tuple, list[RunRecord]] = {}
    for r in runs:
        f = r.figures
        out.setdefault((f["mode"], f["token"], f["cache"]), []).append(r)
    return out


def plot_query_latency(results_dir, png: Path | None = None) -> Path:
    """The classic chart: latency per token, mean and one standard deviation over the trials, the
    distributed query beside its floor; warm and cold cache side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = query_runs(results_dir)
    cells = _cells(runs)
    caches = [c for c in ("warm", "cold") if any(k[2] == c for k in cells)]
    modes = [m for m in (FLOOR_COUNT, QUERY_COUNT, FLOOR_FULL, QUERY_FULL, COMMAND) if any(k[0] == m for k in cells)]
    fig, axes = plt.subplots(1, len(caches), figsize=(6.5 * len(caches), 4.6), squeeze=False, sharey=False)
    width = 0.8 / max(1, len(modes))
    for ax, cache in zip(axes[0], caches):
        for j, mode in enumerate(modes):
            means, stds = [], []
            for token in TOKENS:
                sel = cells.get((mode, token, cache), [])
                samples = [s for r in sel for s in r.figures["trials_s"]]
                means.append(statistics.fmean(samples) * 1e3 if samples else math.nan)
                stds.append(statistics.stdev(samples) * 1e3 if len(samples) > 1 else 0.0)
            xs = [i + (j - (len(modes) - 1) / 2) * width for i in range(len(TOKENS))]
            ax.bar(xs, means, width, yerr=stds, capsize=3, label=mode)
        n = max((len(r.figures["trials_s"]) for r in runs), default=0)
        passes = len({r.repeat for r in runs})
        ax.set_title(f"{cache} cache ({n} trials x {passes} pass{'es' if passes > 1 else ''}; error bars: 1 std)")
        ax.set_xticks(range(len(TOKENS)), TOKENS)
        ax.set_ylabel("latency (ms)")
        ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3, which="both")
    f0 = runs[0].figures if runs else {}
    fig.suptitle(f"Distributed query latency per token: {f0.get('hosts', HOSTS)} hosts x {f0.get('bytes_per_host', 0) / 1e6:.0f} MB, "
                 f"{f0.get('scanner', '?')}, NATS {f0.get('nats_nodes', '?')} nodes", fontsize=11)  # fmt: skip
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    png = Path(png or Path(results_dir) / "query_latency.png")
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def summary_markdown(dirs: list) -> str:
    """Tables for the README: per token and cache, each mode's mean ± std and p95, the ratio to
    the floor, delivered MB/s and where the CPU went; with two results directories or more, each
    figure per directory (the run-to-run spread)."""
    all_cells = [(_cells(query_runs(d)), Path(d).name) for d in dirs]
    lines = []
    names = " / ".join(name for _, name in all_cells)
    for cache in ("warm", "cold"):
        if not any(k[2] == cache for cells, _ in all_cells for k in cells):
            continue
        lines += [f"**{cache} cache** (ms, mean ± std [p95]; runs {names})", "",
                  "| token | " + " | ".join(MODES) + " | count / floor | full: MB delivered, MB/s |",
                  "|---" * (len(MODES) + 3) + "|"]  # fmt: skip
        for token in TOKENS:
            row = [token]
            for m in MODES:
                row.append(" / ".join(_ms(cells.get((m, token, cache))) for cells, _ in all_cells))
            ratios = []
            for cells, _ in all_cells:
                a, b = _mean(cells.get((QUERY_COUNT, token, cache))), _mean(cells.get((FLOOR_COUNT, token, cache)))
                ratios.append(f"{a / b:.2f}x" if a and b else "-")
            row.append(" / ".join(ratios))
            full = []
            for cells, _ in all_cells:
                sel = cells.get((QUERY_FULL, token, cache)) or []
                if sel:
                    mb = statistics.fmean(r.figures["bytes_out_per_trial"] for r in sel) / 1e6
                    full.append(f"{mb:.1f} MB, {statistics.fmean(r.figures['delivered_mb_per_s'] for r in sel):.0f} MB/s")
            row.append(" / ".join(full) or "-")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines += ["**Where the time goes** (full output, warm cache, first run; CPU seconds per query, on 2 cores)", "",
              "| token | latency ms | scanners | agents | NATS | querier | agents waiting on acks (mean per host) | bytes scanned/s per host (MB/s) |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    cells = all_cells[0][0]
    for token in TOKENS:
        for mode in (QUERY_FULL, QUERY_COUNT):
            sel = cells.get((mode, token, "warm")) or []
            if not sel:
                continue
            f = lambda key: statistics.fmean(r.figures[key] for r in sel)  # noqa: E731
            hosts = sel[0].figures["per_host"]
            wait = statistics.fmean(statistics.fmean(r.figures["per_host"][h]["wait_s"] for h in hosts) for r in sel)
            rate = ", ".join(f"{h} {statistics.fmean(r.figures['per_host'][h]['scanned_mb_per_s'] for r in sel):.0f}" for h in hosts)
            lines.append(f"| {token} ({'full' if mode == QUERY_FULL else 'count'}) | {f('mean_s') * 1e3:.1f} | {f('mean_scanner_cpu_s'):.3f} | "
                         f"{f('mean_agent_cpu_s'):.3f} | {f('mean_nats_cpu_s'):.3f} | {f('mean_querier_cpu_s'):.3f} | {wait * 1e3:.1f} ms | {rate} |")  # fmt: skip
    lines.append("")
    lines += ["**Why tokens differ** (per host: matching lines and their share, bytes returned by a full query)", "",
              "| token | " + " | ".join(f"h{i}" for i in range(1, HOSTS + 1)) + " | MB returned (all hosts) |", "|---" * (HOSTS + 2) + "|"]
    for token in TOKENS:
        sel = cells.get((QUERY_FULL, token, "warm")) or []
        if not sel:
            continue
        f = sel[0].figures
        row = [token]
        for i in range(1, HOSTS + 1):
            h = f"h{i}"
            n, total = f["expected"][h][token], f["lines"][h]
            row.append(f"{n} ({n / total:.1%})")
        row.append(f"{f['bytes_out_per_trial'] / 1e6:.1f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _mean(sel) -> float | None:
    samples = [s for r in sel or [] for s in r.figures["trials_s"]]
    return statistics.fmean(samples) if samples else None


def _ms(sel) -> str:
    samples = sorted(s for r in sel or [] for s in r.figures["trials_s"])
    if not samples:
        return "-"
    std = statistics.stdev(samples) if len(samples) > 1 else 0.0
    return f"{statistics.fmean(samples) * 1e3:.1f} ± {std * 1e3:.1f} [{stats.percentile(samples, 95) * 1e3:.1f}]"
