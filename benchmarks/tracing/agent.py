"""loglab's BCC agent: counts syscalls and their latency, per process name and syscall, in a window.

Runs under the system interpreter that has Debian's ``bcc`` module (``/usr/bin/python3``), as a
child of ``benchmarks.tracing.client.SyscallTracer`` (the venv side). Standalone on purpose: it
imports only the standard library and ``bcc``, so it runs the same whatever the venv holds.

USAGE: /usr/bin/python3 -I agent.py --comms logprod,logagg [--latency-ids 0,1,...|all] [--byte-ids 0,1,...]
           [--msg-ids 299,307]

Protocol (one line each way, UTF-8; replies are ``WORD JSON``):

    (agent starts, compiles, attaches)      -> ready {"comms": [...], "attach_ms": ..., "bcc": ...}
                                               or: error {"reason": "..."} and exit status 2
    open [PID,PID...]  (clear the maps, start counting; with pids: only those processes)
                                            -> opened {"t_ns": ..., "pids": [...]}
    close  (stop counting, read the maps)   -> result {...}       (see Agent.close)
    quit   (or end of input)                -> bye, then detach and exit 0

Kernel side (tracepoints only: this machine has no kprobes). The raw tracepoints ``sys_enter`` /
``sys_exit`` (the same events as ``raw_syscalls:*``, without building a trace record: about half
the cost per syscall) do the work. ``sys_enter`` checks the window flag (a one-slot BPF array the
agent flips) and the task's comm against the targets (optionally also its pid), counts in a per-CPU
array indexed [target][syscall number] and stores the entry time per thread (in place, no
allocation per syscall); ``sys_exit`` turns that into a log2 latency histogram (ns), a total, an
error count, the calls that returned > 0, and the sum of the return values: bytes for
read/write-like calls, messages for recvmmsg/sendmmsg. Only syscalls that enter while the window
is open are counted; one that has not returned when the window closes is counted but has no
latency (``count - completed``). The programs are attached only while a window is open (and
return at once if the flag is 0), so a started tracer costs nothing between windows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

PROGRAM = r"""
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>

#define NR_MAX 512   /* syscall numbers counted: 0..511 (x86_64 has < 470) */
#define SLOTS 64     /* log2 latency slots */

struct stats_t { u64 count; u64 completed; u64 errors; u64 eagain; u64 positive; u64 bytes; u64 messages; u64 total_ns; };
struct start_t { u64 ts; u32 target; u32 id; };

BPF_ARRAY(window, u32, 1);       /* 0 closed, 1 open (by comm), 2 open (by comm, pids in "pids") */
BPF_HASH(pids, u32, u8, 4096);   /* tgids allowed when window == 2 */
BPF_HASH(start, u32, struct start_t, 65536);                  /* tid -> syscall in flight */
BPF_PERCPU_ARRAY(stats, struct stats_t, NTARGETS * NR_MAX);   /* [target][nr] */
BPF_PERCPU_ARRAY(hist, u64, NTARGETS * NLAT * SLOTS);         /* [target][latency index][slot] */

static __always_inline int target_index(void)
{
    char c[TASK_COMM_LEN] = {};
    bpf_get_current_comm(&c, sizeof(c));
    TARGET_TESTS
    return -1;
}

static __always_inline int returns_bytes(u32 id)
{
    return BYTE_IDS_TEST;
}

static __always_inline int returns_messages(u32 id)
{
    return MSG_IDS_TEST;
}

static __always_inline int latency_index(u32 id)
{
    LATENCY_TESTS
    return -1;
}

RAW_TRACEPOINT_PROBE(sys_enter)
{
    u32 zero = 0;
    u32 *open = window.lookup(&zero);
    if (open == 0 || *open == 0)
        return 0;
    int t = target_index();
    if (t < 0)
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (*open == 2) {
        u32 tgid = pid_tgid >> 32;
        if (pids.lookup(&tgid) == 0)
            return 0;
    }
    u32 id = (u32)ctx->args[1];
    if (id >= NR_MAX)
        return 0;
    u32 idx = (u32)t * NR_MAX + id;
    struct stats_t *s = stats.lookup(&idx);
    if (s)
        s->count++;
    u32 tid = (u32)pid_tgid;
    struct start_t st = {.ts = bpf_ktime_get_ns(), .target = t, .id = id};
    struct start_t *old = start.lookup(&tid);
    if (old)
        *old = st;          /* in place: no allocation per syscall */
    else
        start.update(&tid, &st);
    return 0;
}

RAW_TRACEPOINT_PROBE(sys_exit)
{
    u32 zero = 0;
    u32 *open = window.lookup(&zero);
    if (open == 0 || *open == 0)
        return 0;
    if (target_index() < 0)  /* cheap test before the hash lookup, for everyone else */
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct start_t *stp = start.lookup(&tid);
    if (stp == 0 || stp->ts == 0)
        return 0;
    u64 delta = bpf_ktime_get_ns() - stp->ts;
    u32 t = stp->target;
    u32 id = stp->id;
    stp->ts = 0;
    long ret = (long)ctx->args[1];
    if (t >= NTARGETS || id >= NR_MAX)
        return 0;
    u32 idx = t * NR_MAX + id;
    struct stats_t *s = stats.lookup(&idx);
    if (s == 0)
        return 0;
    s->completed++;
    s->total_ns += delta;
    if (ret < 0) {
        s->errors++;
        if (ret == -11)
            s->eagain++;
    } else if (ret > 0) {
        s->positive++;
        if (returns_bytes(id))
            s->bytes += ret;
        else if (returns_messages(id))
            s->messages += ret;
    }
    int li = latency_index(id);
    if (li >= 0) {
        u32 slot = bpf_log2l(delta);
        if (slot >= SLOTS)
            slot = SLOTS - 1;
        u32 hidx = (t * NLAT + (u32)li) * SLOTS + slot;
        u64 *h = hist.lookup(&hidx);
        if (h)
            (*h)++;
    }
    return 0;
}
"""

TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


def _reply(word: str, payload: dict) -> None:
    sys.stdout.write(f"{word} {json.dumps(payload, separators=(',', ':'))}\n")
    sys.stdout.flush()


def _fail(reason: str) -> "None":
    _reply("error", {"reason": reason})
    sys.exit(2)


def ensure_tracefs() -> bool:
    """Tracepoints are found through tracefs; mount it if this (root) process can."""
    def present() -> bool:
        return any(os.path.isdir(os.path.join(d, "events", "raw_syscalls")) for d in TRACEFS_DIRS)

    if present():
        return True
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"], capture_output=True)
    return present()


def _comm_test(index: int, name: str) -> str:
    raw = name.encode()[:15]
    parts = [f"c[{i}] == {b}" for i, b in enumerate(raw)] + [f"c[{len(raw)}] == 0"]
    return f"if ({' && '.join(parts)}) return {index};"


def _ids_test(ids: list[int]) -> str:
    return " || ".join(f"id == {i}" for i in ids) or "0"


NR_MAX = 512  # as in the C above
SLOTS = 64


def build_program(comms: list[str], latency_ids: list[int] | None, byte_ids: list[int], msg_ids: list[int]) -> str:
    """The C text for these targets. ``latency_ids`` None: histograms for every syscall."""
    text = PROGRAM.replace("TARGET_TESTS", "\n    ".join(_comm_test(i, c) for i, c in enumerate(comms)))
    text = text.replace("BYTE_IDS_TEST", _ids_test(byte_ids))
    text = text.replace("MSG_IDS_TEST", _ids_test(msg_ids))
    if latency_ids is None:
        tests, nlat = "if (id < NR_MAX) return (int)id;", NR_MAX
    else:
        tests = "\n    ".join(f"if (id == {nr}) return {i};" for i, nr in enumerate(latency_ids))
        nlat = max(1, len(latency_ids))
    text = text.replace("LATENCY_TESTS", tests)
    text = text.replace("NTARGETS", str(len(comms)))
    return text.replace("NLAT", str(nlat))


class Agent:
    def __init__(self, comms: list[str], latency_ids: list[int] | None, byte_ids: list[int], msg_ids: list[int]) -> None:
        from bcc import BPF  # imported here so that a missing bcc becomes an "error" reply

        self.comms = comms
        self.latency_ids = list(range(NR_MAX)) if latency_ids is None else latency_ids
        self.bpf = BPF(text=build_program(comms, latency_ids, byte_ids, msg_ids))  # compiles, attaches
        self.window = self.bpf["window"]
        self.opened_ns = 0
        # Attached only while a window is open: a loaded but closed tracer then costs the machine's
        # syscalls nothing (attached with the flag at 0 it would cost ~100 ns each).
        self._detach()

    _PROBES = ((b"sys_enter", b"raw_tracepoint__sys_enter"), (b"sys_exit", b"raw_tracepoint__sys_exit"))

    def _attach(self) -> None:
        for tp, fn in self._PROBES:
            if tp not in self.bpf.raw_tracepoint_fds:
                self.bpf.attach_raw_tracepoint(tp=tp, fn_name=fn)

    def _detach(self) -> None:
        for tp, _ in self._PROBES:
            if tp in self.bpf.raw_tracepoint_fds:
                self.bpf.detach_raw_tracepoint(tp=tp)

    def _flag(self, value: int) -> None:
        self.window[self.window.Key(0)] = self.window.Leaf(value)

    def open(self, pids: list[int]) -> dict:
        self._flag(0)
        for name in ("start", "stats", "hist", "pids"):
            self.bpf[name].clear()  # arrays: every element zeroed
        table = self.bpf["pids"]
        for pid in pids:
            table[table.Key(pid)] = table.Leaf(1)
        self._attach()
        self.opened_ns = time.monotonic_ns()
        self._flag(2 if pids else 1)
        return {"t_ns": self.opened_ns, "pids": pids}

    def close(self) -> dict:
        self._flag(0)
        closed_ns = time.monotonic_ns()
        self._detach()
        fields = ("count", "completed", "errors", "eagain", "positive", "bytes", "messages", "total_ns")
        per: dict[str, dict] = {c: {} for c in self.comms}
        for key, per_cpu in self.bpf["stats"].items():
            totals = {f: sum(getattr(v, f) for v in per_cpu) for f in fields}
            if not totals["count"]:
                continue
            target, nr = divmod(key.value, NR_MAX)
            per[self.comms[target]][str(nr)] = {**totals, "log2_hist": {}}
        nlat = len(self.latency_ids)
        for key, per_cpu in self.bpf["hist"].items():
            n = sum(per_cpu)
            if not n:
                continue
            rest, slot = divmod(key.value, SLOTS)
            target, li = divmod(rest, nlat)
            entry = per[self.comms[target]].get(str(self.latency_ids[li]))
            if entry is not None:
                entry["log2_hist"][str(slot)] = n
        return {
            "window_ns": closed_ns - self.opened_ns if self.opened_ns else 0,
            "opened_ns": self.opened_ns,
            "closed_ns": closed_ns,
            "by_comm": per,
        }

    def detach(self) -> None:
        self._flag(0)
        self.bpf.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comms", required=True, help="comma-separated process names (max 15 bytes each)")
    parser.add_argument("--latency-ids", default="all", help="syscall numbers with latency histograms, or 'all'")
    parser.add_argument("--byte-ids", default="", help="syscall numbers whose return value is a byte count")
    parser.add_argument("--msg-ids", default="", help="syscall numbers whose return value is a message count (sendmmsg, recvmmsg)")
    args = parser.parse_args()
    comms = [c for c in args.comms.split(",") if c]
    latency_ids = None if args.latency_ids == "all" else [int(x) for x in args.latency_ids.split(",") if x]
    byte_ids = [int(x) for x in args.byte_ids.split(",") if x]
    msg_ids = [int(x) for x in args.msg_ids.split(",") if x]
    if not comms:
        _fail("no --comms given")
    if os.geteuid() != 0:
        _fail("not root (loading BPF programs needs root or CAP_BPF+CAP_PERFMON)")
    if not ensure_tracefs():
        _fail("tracefs is not mounted and could not be mounted: no tracepoints (run scripts/setup-tracing.sh)")
    started = time.monotonic()
    try:
        agent = Agent(comms, latency_ids, byte_ids, msg_ids)
    except ImportError as exc:
        _fail(f"cannot import bcc under {sys.executable}: {exc} (install python3-bpfcc: scripts/setup-tracing.sh)")
    except Exception as exc:  # compile or attach failure: headers, BPF, tracepoints
        _fail(f"cannot load the BPF program: {type(exc).__name__}: {exc}".strip())
    import bcc

    _reply(
        "ready",
        {
            "comms": comms,
            "attach_ms": round((time.monotonic() - started) * 1000, 1),
            "bcc": getattr(bcc, "__version__", "?"),
            "pid": os.getpid(),
        },
    )
    try:
        for line in sys.stdin:
            cmd = line.strip()
            word, _, rest = cmd.partition(" ")
            if word == "open":
                try:
                    pids = [int(x) for x in rest.split(",") if x.strip()]
                except ValueError:
                    _reply("error", {"reason": f"bad pid list {rest!r}"})
                    continue
                _reply("opened", agent.open(pids))
            elif cmd == "close":
                _reply("result", agent.close())
            elif cmd == "quit":
                break
            elif cmd:
                _reply("error", {"reason": f"unknown command {cmd!r}"})
    except KeyboardInterrupt:
        pass
    finally:
        agent.detach()
    _reply("bye", {})
    return 0


if __name__ == "__main__":
    sys.exit(main())
