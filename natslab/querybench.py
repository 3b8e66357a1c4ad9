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
NATS servers and the querier (where the time goes). The report reads them back
(``benchmarks/report/query.py``: the chart, the tables, the README's ``query`` findings).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil

from benchmarks.processes import nats_unavailable
from benchmarks.report.query import COMMAND, FLOOR_COUNT, FLOOR_FULL, QUERY_COUNT, QUERY_FULL, SCENARIO
from benchmarks.results import ResultsWriter, RunRecord, stats

from .pipeline import Pipeline
from .querydata import DEFAULT_MB, TOKENS, TokenRates, fill

HOSTS = 4
TRIALS = 10
NATS_NODES = 3
MODES = (FLOOR_COUNT, QUERY_COUNT, FLOOR_FULL, QUERY_FULL)  # timed in turn, every trial
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


def cell_record(mode: str, token: str, cache: str, rep: int, trials: list[dict], notes: list[str], context: dict) -> RunRecord:
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
    # Trial seconds live in figures, not in ``latency`` (the observer's send-to-file latency of
    # producer runs): a query's latency is another quantity.
    return RunRecord(system=mode, transport="nats" if mode.startswith("querier") else "local", scenario=SCENARIO, workload=None,
                     repeat=rep, figures=fig, notes=list(notes), seconds=sum(secs))  # fmt: skip


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
                            r = cell_record(m, token, cache, rep, cells[m], notes, context)
                            ok &= _check(r, filled, token)
                            writer.add_run(r)
                        f = {m: cells[m] for m in MODES}
                        echo(f"[query pass {rep + 1} {cache}] {token:<10} " + "  ".join(
                            f"{m}: {statistics.fmean(t['seconds'] for t in f[m]) * 1e3:7.1f} ms" for m in MODES) +
                            f"  ({time.monotonic() - t0:.0f} s)")  # fmt: skip
                for token in TOKENS:  # the command as an operator runs it (the first run, untimed, warms up)
                    try:
                        runs = [await asyncio.to_thread(command_trial, p.nats.servers, token, p.hosts.lab_ns) for _ in range(COMMAND_TRIALS + 1)]
                    except (RuntimeError, subprocess.SubprocessError) as exc:  # said in the results, the other cells kept
                        writer.note(f"query scenario: the querier command failed for {token}: {exc}")
                        echo(f"[query] the querier command failed for {token}: {exc}")
                        ok = False
                        continue
                    writer.add_run(cell_record(COMMAND, token, "warm", rep, runs[1:], notes, context))
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
    r.ok = not r.errors  # a failed cell is named in the report's notes, never plotted
    return r.ok


def _fs_of(path: Path) -> str:
    try:
        out = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True, text=True, timeout=10).stdout.split()
        return out[-1] if out else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"
