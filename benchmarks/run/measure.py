"""One measured run: start a system, start the producers behind a barrier, measure, tear down.

Timeline of a run::

    system.start()            aggregator (or peer) listening; its start-up is not measured
    observer starts           the latency observer follows the system's output file (observer.py)
    producers start           each connects, prints "ready", waits on stdin (start barrier)
    -- window opens --        CPU/ctx-switch snapshot of the system (and of each producer),
                              tracer window opened, udp kernel counters read, memory sampling
                              started, then "go"
    producers send, exit      exit status and rusage reaped with wait4
    quiescence                the system's output stops growing (all it will write is written)
    -- window closes --       CPU snapshot, tracer window closed, udp counters read again
    system.stop()             SIGTERM, drain, exit; then the observer writes its stamps; the
                              output is analysed afterwards

So CPU per message counts only the work of the window (no interpreter start-up, no imports),
on both sides.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from pathlib import Path

import psutil

from ..processes import ProducerProc, observer_proc
from ..results import ProcessStats, RunRecord, Workload
from .systems import System

QUIET_PERIOD_S = 0.3  # output unchanged this long = the system has written all it will
MAX_QUIESCE_S = 30.0


def producer_for(transport: str, workload: Workload, address: str, index: int, workdir: Path) -> ProducerProc:
    """Producer ``p{index}`` of ``workload`` on ``transport``, behind the start barrier (not started)."""
    w = workload
    shape = [] if (w.format, w.framing) == ("json", "newline") else ["--format", w.format, "--framing", w.framing]
    return ProducerProc(
        transport, address, f"p{index}", w.count, workdir, "--size", w.size, "--rate", w.rate, "--batch", w.batch,
        "--per-connection", w.per_connection, "--seed", index, "--quiet", *shape, barrier=True,
    )  # fmt: skip


def read_udp_snmp() -> dict[str, int]:
    """The kernel's UDP counters (/proc/net/snmp): RcvbufErrors counts datagrams dropped for a
    full receive buffer, InErrors all receive errors."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    names, values = rows[0][1:], rows[1][1:]
    return {k: int(v) for k, v in zip(names, values)}


def _peak_rss(pid: int) -> int:
    """VmHWM: the process's peak resident set, which psutil does not expose."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _schedstat_cpu_s(pid: int) -> float:
    """On-CPU time of every thread of ``pid``, in seconds, at ns resolution."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError):
        return float("nan")
    return total / 1e9


def process_tree_stats(proc: psutil.Process) -> ProcessStats:
    """The process and its descendants (loglab's --workers are child processes; syslog-ng's
    threads are counted per thread by schedstat). Peak RSS is the sum of each process's own
    peak, so pages shared after fork count once per process: an upper bound."""
    total = ProcessStats()
    try:
        tree = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        tree = [proc]
    for p in tree:
        try:
            with p.oneshot():
                cpu = p.cpu_times()
                ctx = p.num_ctx_switches()
        except psutil.Error:
            continue  # exited meanwhile
        total.cpu_s += _schedstat_cpu_s(p.pid)
        total.user_s += cpu.user
        total.system_s += cpu.system
        total.voluntary_ctx_switches += ctx.voluntary
        total.involuntary_ctx_switches += ctx.involuntary
        total.peak_rss_bytes += _peak_rss(p.pid)
    return total


def processes_stats(pids: list[int]) -> ProcessStats:
    """Several processes (each with its descendants) summed, peak RSS the largest; a process gone
    already is left out. The NATS scenarios' CPU snapshots (natslab/bench.py, distribute_bench.py)."""
    total = ProcessStats()
    for pid in pids:
        try:
            s = process_tree_stats(psutil.Process(pid))
        except psutil.Error:
            continue
        total.cpu_s += s.cpu_s
        total.user_s += s.user_s
        total.system_s += s.system_s
        total.voluntary_ctx_switches += s.voluntary_ctx_switches
        total.involuntary_ctx_switches += s.involuntary_ctx_switches
        total.peak_rss_bytes = max(total.peak_rss_bytes, s.peak_rss_bytes)
    return total


def process_tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants: what a tracer must follow for one system."""
    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return [pid]


def stats_delta(after: ProcessStats, before: ProcessStats) -> ProcessStats:
    return ProcessStats(
        after.cpu_s - before.cpu_s,
        after.user_s - before.user_s,
        after.system_s - before.system_s,
        after.voluntary_ctx_switches - before.voluntary_ctx_switches,
        after.involuntary_ctx_switches - before.involuntary_ctx_switches,
        after.peak_rss_bytes,
    )


MEMORY_INTERVAL_S = 0.1


def _pss_bytes(pid: int) -> int | None:
    """The process's proportional set size (shared pages divided among their sharers, so a process
    tree's sum is its footprint, not the sum of its RSS, which counts pages shared after fork once
    per process)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


class MemorySampler(threading.Thread):
    """Samples the PSS of ``pid``'s process tree every MEMORY_INTERVAL_S until ``stop()``:
    ``result()`` is the steady figure (the median sample) and the peak (the largest)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[int] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            total, seen = 0, False
            for pid in process_tree_pids(self.pid):
                pss = _pss_bytes(pid)
                if pss is not None:
                    total, seen = total + pss, True
            if seen:
                self.samples.append(total)
            if self._stop_event.wait(MEMORY_INTERVAL_S):
                return

    def stop(self) -> dict | None:
        self._stop_event.set()
        self.join()
        if not self.samples:
            return None
        return {"steady_pss_bytes": int(statistics.median(self.samples)), "peak_pss_bytes": max(self.samples),
                "samples": len(self.samples), "interval_s": MEMORY_INTERVAL_S}  # fmt: skip


def _wait_quiet(path: Path, deadline: float) -> None:
    """Wait until ``path`` has not grown for QUIET_PERIOD_S (bounded by ``deadline``)."""
    last = -1
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        size = path.stat().st_size if path.exists() else 0
        now = time.monotonic()
        if size != last:
            last, stable_since = size, now
        elif now - stable_since >= QUIET_PERIOD_S:
            return
        time.sleep(0.05)


def stamps_path(workdir: Path) -> Path:
    """Where ``run_measurement`` leaves the observer's stamps of the run in ``workdir``."""
    return workdir / "observer" / "stamps.bin"


def run_measurement(system: System, transport: str, workload: Workload, workdir: Path, record: RunRecord, *,
                    tracer=None, timeout: float = 120.0) -> list[dict]:  # fmt: skip
    """Run ``workload`` over ``transport`` against ``system`` (constructed, not started), filling
    ``record`` with what was measured (window, process costs, memory, kernel counters, the system's
    own stats, the trace); always tear down. Returns the producers' summaries; the observer's
    stamps are left at ``stamps_path(workdir)``."""
    m = record
    summaries: list[dict] = []
    producers: list[ProducerProc] = []
    address = system.start()
    # Its own directory: the observer watches the output's directory, where its files would be noise.
    observer = observer_proc(system.output_path, stamps_path(workdir), workdir / "observer")
    sampler: MemorySampler | None = None
    try:
        observer.start()
        agg = psutil.Process(system.pid)
        for i in range(workload.producers):
            producers.append(producer_for(transport, workload, address, i, workdir).start(wait=False))
        ready_before: list[ProcessStats] = []
        for p in producers:
            p.wait_ready(30.0)  # connected, waiting on stdin
            ready_before.append(process_tree_stats(psutil.Process(p.pid)))
        is_udp = transport == "udp"  # the kernel's Udp counters say what it dropped
        if is_udp:
            m.udp_snmp_before = read_udp_snmp()
        if tracer is not None:
            # Only this run's processes: other logprod/logagg may run on the machine meanwhile.
            tracer.open_window(pids=[*process_tree_pids(system.pid), *(p.pid for p in producers)])
        agg_before = process_tree_stats(agg)
        sampler = MemorySampler(system.pid)
        sampler.start()
        m.window_start_ns = time.time_ns()
        for p in producers:  # the barrier: every producer is connected; go
            p.go()
        deadline = time.monotonic() + timeout
        producer_total = ProcessStats()
        for p, before in zip(producers, ready_before):
            status, usage = _wait4(p, deadline)
            code = os.waitstatus_to_exitcode(status)
            p.popen.returncode = code  # reaped here (for its rusage): tell Popen
            if code != 0:
                m.notes.append(f"producer {p.id} exited {code}")
            producer_total.cpu_s += usage.ru_utime + usage.ru_stime - before.cpu_s
            producer_total.user_s += usage.ru_utime - before.user_s
            producer_total.system_s += usage.ru_stime - before.system_s
            producer_total.voluntary_ctx_switches += usage.ru_nvcsw - before.voluntary_ctx_switches
            producer_total.involuntary_ctx_switches += usage.ru_nivcsw - before.involuntary_ctx_switches
            producer_total.peak_rss_bytes = max(producer_total.peak_rss_bytes, usage.ru_maxrss * 1024)
        m.producers = producer_total
        m.producers_done_ns = time.time_ns()
        _wait_quiet(system.output_path, time.monotonic() + MAX_QUIESCE_S)
        m.aggregator = stats_delta(process_tree_stats(agg), agg_before)
        m.memory = sampler.stop()
        sampler = None
        m.window_end_ns = time.time_ns() - int(QUIET_PERIOD_S * 1e9)
        if tracer is not None:
            m.trace = tracer.close_window()
        if is_udp:
            m.udp_snmp_after = read_udp_snmp()
        for p in producers:
            if p.summary_path.exists():
                summaries.append(p.summary())
    finally:
        if sampler is not None:
            sampler.stop()
        for p in producers:
            p.close()
        try:
            m.system_stats = system.stop()
        finally:
            # After the stop: lines a drain writes late are stamped late, as they are.
            observer.stop()
            observer.close()
    return summaries


def _wait4(p: ProducerProc, deadline: float):
    """wait4 with a deadline: the child's own rusage (CPU, ctx switches, peak RSS)."""
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            return status, usage
        if time.monotonic() >= deadline:
            os.kill(p.pid, signal.SIGKILL)  # not p.kill(): that reaps it, and its rusage with it
            pid, status, usage = os.wait4(p.pid, 0)
            return status, usage
        time.sleep(0.01)


