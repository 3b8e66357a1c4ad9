"""The venv side of loglab's BCC tracer: start the agent, open and close windows, get plain data.

bcc's Python module is Debian's (``python3-bpfcc``, for ``/usr/bin/python3``); the benchmark runs
in the venv's interpreter. So the BPF side runs as a child of the system interpreter
(``agent.py``, stdlib + bcc only) and this module talks to it over a line protocol::

    with SyscallTracer(comms=("logprod", "logagg")) as tracer:   # start(): compiled + loaded
        ... start the processes, let them connect ...
        tracer.open_window()                 # counting starts (returns once the flag is set)
        ... the measured burst ...
        result = tracer.close_window()       # counting stops; plain dict (see window_result)
    summary = summarize(result, messages={"logprod": n, "logagg": n})

``available()`` says, without root and without starting anything heavy, whether tracing can work
here and if not, why (the reason goes into reports and test skips).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable, Mapping

from .syscall_table import (
    DATA_SYSCALLS,
    LATENCY_SYSCALLS,
    RECV_SYSCALLS,
    SEND_SYSCALLS,
    WAIT_SYSCALLS,
    syscall_name,
    syscall_numbers,
)

SYSTEM_PYTHON = "/usr/bin/python3"
AGENT = Path(__file__).with_name("agent.py")
TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
RESULT_VERSION = 1
PERCENTILE_METHOD = (
    "estimated from log2 histograms: linear interpolation inside the power-of-two bucket "
    "[2^(k-1), 2^k) ns that holds the rank, so within a factor of 2 of the true value"
)
# read/write-like syscalls return a byte count; sendmmsg/recvmmsg return a message count.
_BYTE_RETURNING = ("read", "write", "readv", "writev", "pread64", "pwrite64", "sendto", "recvfrom", "sendmsg", "recvmsg")
_MESSAGE_RETURNING = ("sendmmsg", "recvmmsg")


class TracingUnavailable(RuntimeError):
    """Tracing cannot run here; ``reason`` says why (for reports and test skips)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def kernel_headers_present(release: str | None = None) -> bool:
    moddir = Path("/lib/modules") / (release or os.uname().release)
    return (moddir / "build" / "include").is_dir() or (moddir / "source" / "include").is_dir()


def tracefs_present() -> bool:
    return any((Path(d) / "events" / "raw_syscalls").is_dir() for d in TRACEFS_DIRS)


def ensure_tracefs() -> bool:
    """Mount tracefs if it is missing and we are root (some VMs boot without it). True if present."""
    if not tracefs_present() and os.geteuid() == 0 and shutil.which("mount"):
        subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"], capture_output=True)
    return tracefs_present()


def bpf_reason() -> str | None:
    """Why BPF tracing cannot work here (root, BPF, tracepoints), or None. No bcc/bpftrace checks."""
    if os.geteuid() != 0:
        return "not root: loading BPF programs needs root (run the benchmark/tests with sudo)"
    if not Path("/proc/sys/kernel/unprivileged_bpf_disabled").exists():
        return "this kernel has no BPF syscall (CONFIG_BPF_SYSCALL is off)"
    if not ensure_tracefs():
        return "no tracepoints: tracefs is not mounted at /sys/kernel/tracing and could not be mounted"
    return None


def available(probe: bool = False) -> tuple[bool, str]:
    """(True, "") when the BCC tracer can run here, else (False, why).

    Cheap checks (root, BPF, tracefs, bcc importable by the system Python, kernel headers); with
    ``probe=True`` also starts the agent once (compiles and attaches: about a second).
    """
    reason = bpf_reason()
    if reason:
        return False, reason
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False, f"{SYSTEM_PYTHON} not found: bcc's module is Debian's python3-bpfcc (scripts/setup-tracing.sh)"
    check = subprocess.run([SYSTEM_PYTHON, "-I", "-c", "import bcc"], capture_output=True, text=True)
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["?"])[-1]
        return False, f"bcc is not importable by {SYSTEM_PYTHON} ({last}): install python3-bpfcc (make setup-tracing)"
    if not kernel_headers_present():
        return False, (
            f"no kernel headers for {os.uname().release} (/lib/modules/{os.uname().release}/build): "
            "bcc compiles at run time (make setup-tracing installs or links them)"
        )
    if probe:
        try:
            with SyscallTracer(comms=("logprod",)):
                pass
        except TracingUnavailable as exc:
            return False, exc.reason
    return True, ""


class SyscallTracer:
    """Counts syscalls and their latency per process name (comm) and syscall, inside windows.

    ``comms``: process names to count (15 bytes at most, as the kernel keeps them).
    ``groups``: a name of ``comms`` -> the thread names counted as it (rsyslog names its threads
    ``in:imtcp``, ``rs:main Q:Reg``, ...: they are its process's work, under one name).
    ``latency``: syscall names that get latency histograms (default: data-carrying + waiting ones);
    ``None`` = every syscall.
    """

    def __init__(
        self,
        comms: Iterable[str] = ("logprod", "logagg"),
        *,
        groups: Mapping[str, Iterable[str]] | None = None,
        latency: Iterable[str] | None = tuple(sorted(LATENCY_SYSCALLS)),
        python: str = SYSTEM_PYTHON,
        startup_timeout: float = 60.0,
        reply_timeout: float = 30.0,
    ) -> None:
        self.comms = tuple(c[:15] for c in comms)
        if not self.comms:
            raise ValueError("SyscallTracer needs at least one comm")
        self.groups = {name[:15]: tuple(dict.fromkeys(m[:15] for m in members if m[:15] != name[:15]))
                       for name, members in (groups or {}).items()}  # fmt: skip
        self._counted = tuple(dict.fromkeys([*self.comms, *(m for members in self.groups.values() for m in members)]))
        self.latency = None if latency is None else tuple(latency)
        self.python = python
        self.startup_timeout = startup_timeout
        self.reply_timeout = reply_timeout
        self.info: dict = {}  # the agent's "ready" payload: attach_ms, bcc version, pid
        self._proc: subprocess.Popen | None = None
        self._buffer = b""
        self._stderr = None
        self._open = False

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "SyscallTracer":
        """Start the agent: compiled, loaded and verified (about 1 s). The probes are attached only
        while a window is open. Raises TracingUnavailable with the reason if it cannot run."""
        if self._proc is not None:
            return self
        reason = bpf_reason()
        if reason:
            raise TracingUnavailable(reason)
        latency_ids = "all" if self.latency is None else ",".join(map(str, syscall_numbers(self.latency)))
        cmd = [
            self.python, "-I", str(AGENT),
            "--comms", ",".join(self._counted),
            "--latency-ids", latency_ids,
            "--byte-ids", ",".join(map(str, syscall_numbers(_BYTE_RETURNING))),
            "--msg-ids", ",".join(map(str, syscall_numbers(_MESSAGE_RETURNING))),
        ]  # fmt: skip
        try:
            # stderr to a file: compiler warnings must never fill a pipe and stall the agent
            self._stderr = tempfile.TemporaryFile()
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, bufsize=0
            )
            self._buffer = b""
        except OSError as exc:
            self._stderr.close()
            raise TracingUnavailable(f"cannot run {self.python}: {exc.strerror or exc}") from None
        try:
            word, payload = self._read_reply(self.startup_timeout)
        except TracingUnavailable:
            self._kill()
            raise
        if word != "ready":
            self._kill()
            raise TracingUnavailable(f"BCC agent did not start: {payload.get('reason', payload)}")
        self.info = payload
        return self

    def stop(self) -> None:
        """Detach the probes and end the agent (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.stdin.write(b"quit\n")
                proc.stdin.close()
                proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            for f in (proc.stdin, proc.stdout, self._stderr):
                if f and not f.closed:
                    f.close()
            self._stderr = None

    def __enter__(self) -> "SyscallTracer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- windows ---------------------------------------------------------------------------------
    def open_window(self, pids: Iterable[int] | None = None) -> None:
        """Clear the counts, attach the probes and start counting; returns once counting.

        ``pids``: count only these processes (tgids; still grouped by comm). Use it when other
        ``logprod``/``logagg`` processes may run on the machine (another benchmark, a test).
        """
        pid_list = sorted({int(p) for p in pids}) if pids else []
        word, payload = self._command("open " + ",".join(map(str, pid_list)) if pid_list else "open")
        if word != "opened":
            raise RuntimeError(f"BCC agent: open failed: {payload}")
        self._open = True

    def close_window(self) -> dict:
        """Stop counting and return the window's counts as plain data (see ``window_result``)."""
        word, payload = self._command("close")
        self._open = False
        if word != "result":
            raise RuntimeError(f"BCC agent: close failed: {payload}")
        return window_result(merge_comms(payload, self.groups), self.comms, self.info)

    # -- plumbing --------------------------------------------------------------------------------
    def _command(self, cmd: str) -> tuple[str, dict]:
        if self._proc is None:
            raise RuntimeError("SyscallTracer is not started (call start() or use it as a context manager)")
        try:
            self._proc.stdin.write(cmd.encode() + b"\n")
        except OSError:
            raise RuntimeError(f"BCC agent has gone: {self._stderr_tail()}") from None
        return self._read_reply(self.reply_timeout)

    def _read_reply(self, timeout: float) -> tuple[str, dict]:
        """The agent's next reply line. Raw reads into our own buffer, so select() never sleeps
        on a line that was already read."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buffer:
                raw, _, self._buffer = self._buffer.partition(b"\n")
                word, _, rest = raw.decode(errors="replace").strip().partition(" ")
                if word in ("ready", "opened", "result", "error", "bye"):
                    return word, json.loads(rest or "{}")
                # anything else (a library's chatter on stdout) is ignored
            left = deadline - time.monotonic()
            if left <= 0:
                raise TracingUnavailable(f"BCC agent did not answer within {timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                self._proc.wait()
                raise TracingUnavailable(
                    f"BCC agent exited (status {self._proc.returncode}): {self._stderr_tail()}"
                )
            self._buffer += chunk

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:])

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            self._proc.stdout.close()
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


# -- results ------------------------------------------------------------------------------------
def log2_buckets(hist: Mapping[str, int]) -> list[list[int]]:
    """bcc's bpf_log2l slots -> [[low_ns, high_ns, count], ...] (slot k holds 2^(k-1)..2^k-1)."""
    out = []
    for slot in sorted(int(s) for s in hist):
        low = (1 << slot) >> 1
        high = (1 << slot) - 1 if slot else 0
        out.append([low, high, int(hist[str(slot)])])
    return out


def percentile_from_buckets(buckets: list[list[int]], q: float) -> float | None:
    """The q-th percentile (0..100) estimated from log2 buckets (see PERCENTILE_METHOD)."""
    total = sum(b[2] for b in buckets)
    if total == 0:
        return None
    rank = q / 100.0 * total
    seen = 0
    for low, high, n in buckets:
        if n and seen + n >= rank:
            fraction = (rank - seen) / n
            return low + (high + 1 - low) * fraction
        seen += n
    return float(buckets[-1][1])


def merge_comms(raw: dict, groups: Mapping[str, Iterable[str]]) -> dict:
    """The agent's raw window with each group's members' counts added to the group's name: every
    count and every latency histogram slot summed, so the merged figures are exact."""
    by_comm = raw.get("by_comm", {})
    for name, members in groups.items():
        merged = by_comm.setdefault(name, {})
        for member in members:
            for nr, s in by_comm.pop(member, {}).items():
                into = merged.setdefault(nr, {**{k: 0 for k in s if k != "log2_hist"}, "log2_hist": {}})
                for k, v in s.items():
                    if k != "log2_hist":
                        into[k] = into.get(k, 0) + v
                for slot, n in s["log2_hist"].items():
                    into["log2_hist"][slot] = into["log2_hist"].get(slot, 0) + n
    return raw


def window_result(raw: dict, comms: Iterable[str], info: Mapping | None = None) -> dict:
    """The agent's raw window (syscall numbers, slots) -> named, totalled, with percentiles.

    ``{"version", "tool", "window_s", "percentile_method", "comms": {COMM: {"syscalls",
    "data_syscalls", "send_syscalls", "recv_syscalls", "wait_syscalls", "data_bytes", "send_bytes",
    "recv_bytes", "send_mmsg_messages", "recv_mmsg_messages", "errors", "by_syscall": {NAME: {"nr",
    "count", "completed", "errors", "eagain", "returned_data", "bytes", "mmsg_messages", "mean_ns",
    "p50_ns", "p90_ns", "p99_ns", "log2_hist_ns": [[low, high, n], ...]}}}}}``.

    ``count``: calls entered in the window; ``completed``: of those, returned before it closed
    (the latency fields count these); ``returned_data``: calls that returned > 0; ``bytes``: sum of
    the return values of read/write-like calls; ``mmsg_messages``: of sendmmsg/recvmmsg.
    ``by_syscall`` is ordered by count, largest first; latency fields are present for the
    syscalls with histograms (data and wait syscalls by default).
    """
    out_comms: dict[str, dict] = {}
    for comm in comms:
        per = raw.get("by_comm", {}).get(comm, {})
        by_syscall: dict[str, dict] = {}
        for nr_text, s in per.items():
            nr = int(nr_text)
            name = syscall_name(nr)
            entry = {
                "nr": nr,
                "count": s["count"],
                "completed": s["completed"],
                "errors": s["errors"],
                "eagain": s["eagain"],
                "returned_data": s["positive"],
                "bytes": s["bytes"],
                "mmsg_messages": s["messages"],
                "mean_ns": round(s["total_ns"] / s["completed"]) if s["completed"] else None,
            }
            if s["log2_hist"]:
                buckets = log2_buckets(s["log2_hist"])
                for q in (50, 90, 99):
                    value = percentile_from_buckets(buckets, q)
                    entry[f"p{q}_ns"] = None if value is None else round(value)
                entry["log2_hist_ns"] = buckets
            by_syscall[name] = entry
        by_syscall = dict(sorted(by_syscall.items(), key=lambda kv: (-kv[1]["count"], kv[0])))

        def total(names: frozenset[str] | None, field: str = "count") -> int:
            return sum(e[field] for n, e in by_syscall.items() if names is None or n in names)

        out_comms[comm] = {
            "syscalls": total(None),
            "data_syscalls": total(DATA_SYSCALLS),
            "send_syscalls": total(SEND_SYSCALLS),
            "recv_syscalls": total(RECV_SYSCALLS),
            "wait_syscalls": total(WAIT_SYSCALLS),
            "data_bytes": total(DATA_SYSCALLS, "bytes"),
            "send_bytes": total(SEND_SYSCALLS, "bytes"),
            "recv_bytes": total(RECV_SYSCALLS, "bytes"),
            # datagrams/lines handed over by sendmmsg/recvmmsg (their return value)
            "send_mmsg_messages": total(SEND_SYSCALLS, "mmsg_messages"),
            "recv_mmsg_messages": total(RECV_SYSCALLS, "mmsg_messages"),
            "errors": total(None, "errors"),
            "by_syscall": by_syscall,
        }
    return {
        "version": RESULT_VERSION,
        "tool": "bcc",
        "bcc_version": (info or {}).get("bcc"),
        "attach_ms": (info or {}).get("attach_ms"),
        "window_s": raw.get("window_ns", 0) / 1e9,
        "percentile_method": PERCENTILE_METHOD,
        "comms": out_comms,
    }


def summarize(result: dict, messages: Mapping[str, int] | int, top: int = 5) -> dict:
    """Per comm: syscalls per message, the top syscalls, latency percentiles of the data syscalls.

    ``messages``: messages handled in the window, per comm (producers' sent, aggregator's received)
    or one number for all. Plain data for the benchmark's result file::

        {COMM: {"messages", "syscalls", "syscalls_per_message", "data_syscalls",
                "data_syscalls_per_message", "bytes_per_data_syscall",
                "top": [{"syscall", "count", "per_message"}, ...],
                "latency_ns": {NAME: {"count", "p50", "p90", "p99", "mean"}}}}
    """
    out: dict[str, dict] = {}
    for comm, c in result["comms"].items():
        n = messages if isinstance(messages, int) else messages.get(comm, 0)

        def per(x: int) -> float | None:
            return round(x / n, 4) if n else None

        latency = {
            name: {"count": e["completed"], "p50": e.get("p50_ns"), "p90": e.get("p90_ns"), "p99": e.get("p99_ns"), "mean": e["mean_ns"]}
            for name, e in c["by_syscall"].items()
            if name in DATA_SYSCALLS and "p50_ns" in e
        }
        out[comm] = {
            "messages": n,
            "syscalls": c["syscalls"],
            "syscalls_per_message": per(c["syscalls"]),
            "data_syscalls": c["data_syscalls"],
            "data_syscalls_per_message": per(c["data_syscalls"]),
            "bytes_per_data_syscall": round(c["data_bytes"] / c["data_syscalls"], 1) if c["data_syscalls"] else None,
            "top": [
                {"syscall": name, "count": e["count"], "per_message": per(e["count"])}
                for name, e in list(c["by_syscall"].items())[:top]
            ],
            "latency_ns": latency,
        }
    return out
