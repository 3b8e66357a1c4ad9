"""A known workload for the tracers: one real aggregator, P real producers, N messages each.

Used by the tracing tests, by ``python -m benchmarks.tracing.overhead`` and to capture the
``bpftrace/*_example.txt`` files. The window (when a tracer is given) covers exactly the burst:

    aggregator listening -> producers started with --start-at-ns T -> every producer connected
    and asleep until T (its /proc/PID/syscall shows clock_nanosleep) -> open window -> T: burst
    -> producers exit -> aggregator has written every message (or went quiet) -> close window

so interpreter start-up, imports and connect are outside it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from aggregator.transports import TRANSPORT_NAMES
from benchmarks.processes import (
    AggregatorProc,
    ProcGroup,
    ProducerProc,
    count_lines,
    short_tempdir,
)

_SLEEP_SYSCALLS = {"230", "35"}  # clock_nanosleep, nanosleep (x86_64): time.sleep()


def _asleep(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/syscall").read_text().split()[0] in _SLEEP_SYSCALLS
    except (OSError, IndexError):
        return False


def _last_received_ns(path: Path) -> int | None:
    """received_ns of the output's last line (lines are appended in the order received)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            lines = f.read().splitlines()
        return int(json.loads(lines[-1])["received_ns"]) if lines else None
    except (OSError, ValueError, KeyError, IndexError):
        return None


class WorkloadError(RuntimeError):
    pass


def run_workload(
    transport: str = "unixsock",
    *,
    producers: int = 1,
    count: int = 92,
    size: int = 200,
    tracer=None,
    lead_s: float = 2.0,
    timeout_s: float = 60.0,
    quiet_s: float = 1.0,
    producer_args: list[str] | None = None,
    aggregator_args: list[str] | None = None,
    workdir: str | os.PathLike | None = None,
    only_these_pids: bool = True,
) -> dict:
    """Run the burst; returns plain data (counts, timing and, with ``tracer``, its window result).

    ``tracer``: a started ``SyscallTracer`` (its window is opened and closed around the burst).
    ``only_these_pids``: the window counts only this run's aggregator and producers (other
    ``logprod``/``logagg`` processes on the machine are left out).
    ``lead_s``: seconds from starting the producers to the burst (they must connect in it).

    The aggregator and producers are this process's children (``Proc``), so a tracer's PID
    filter given this process's pid (or its parent's) covers them.
    """
    own_dir = workdir is None
    base = short_tempdir("loglab-trace-") if own_dir else Path(workdir)
    with ProcGroup() as group:
        if own_dir:
            group.on_close(lambda: shutil.rmtree(base, ignore_errors=True))
        agg = AggregatorProc(transport, base, *(aggregator_args or []), output=base / "out.jsonl")
        group.start(agg)
        start_at_ns = time.time_ns() + int(lead_s * 1e9)
        procs = [
            group.start(ProducerProc(transport, agg.address, f"p{i}", count, base, "--size", size,
                                     "--start-at-ns", start_at_ns, "--quiet", *(producer_args or []),
                                     summary=False))
            for i in range(producers)
        ]  # fmt: skip
        # Every producer connected and waiting for T: only then open the window.
        while not all(_asleep(p.pid) or not p.running() for p in procs):
            if time.time_ns() >= start_at_ns:
                raise WorkloadError(f"producers were not ready within lead_s={lead_s} s (raise it)")
            time.sleep(0.005)
        failed = [p for p in procs if not p.running()]
        if failed:
            raise WorkloadError(f"a producer exited before the burst: {failed[0].tail()}")
        window_opened_early_s = (start_at_ns - time.time_ns()) / 1e9
        if tracer is not None:
            tracer.open_window(pids=[agg.pid, *(p.pid for p in procs)] if only_these_pids else None)
        deadline = time.monotonic() + timeout_s
        statuses = [p.wait(timeout=max(0.1, deadline - time.monotonic())) for p in procs]
        producers_done_ns = time.time_ns()
        expected = producers * count
        seen, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            n = count_lines(agg.output)
            if n >= expected:
                break
            if n != seen:
                seen, last_change = n, time.monotonic()
            elif time.monotonic() - last_change > quiet_s:
                break  # datagrams lost: nothing more will come
            time.sleep(0.01)
        all_written_ns = time.time_ns()
        trace = tracer.close_window() if tracer is not None else None
        agg.stop(signal.SIGTERM, timeout=30)
        agg_stats = agg.stats() if agg.stats_file.exists() else {}
        received = count_lines(agg.output)
        last_ns = _last_received_ns(agg.output)
        span_s = (last_ns - start_at_ns) / 1e9 if last_ns else None
        return {
            "transport": transport,
            "producers": producers,
            "count_per_producer": count,
            "size": size,
            "producer_exit_statuses": statuses,
            "messages_received": received,
            "aggregator_stats": agg_stats,
            "burst_to_producers_done_s": (producers_done_ns - start_at_ns) / 1e9,
            "burst_to_all_written_s": (all_written_ns - start_at_ns) / 1e9,
            "window_opened_before_burst_s": window_opened_early_s,
            # burst start (--start-at-ns) to the aggregator's receipt of the last message
            "burst_to_last_received_s": span_s,
            "messages_per_s": round(received / span_s, 1) if span_s and span_s > 0 else None,
            "trace": trace,
        }


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        description="Run a known loglab burst (real aggregator + producers); print what happened as JSON."
    )
    parser.add_argument("transport", choices=TRANSPORT_NAMES)
    parser.add_argument("--producers", type=int, default=1)
    parser.add_argument("--count", type=int, default=92, help="messages per producer")
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--rcvbuf", type=int, help="aggregator --rcvbuf (datagram transports)")
    parser.add_argument("--trace", action="store_true", help="count syscalls in the burst with the BCC tracer")
    args = parser.parse_args(argv)
    agg_args = ["--rcvbuf", str(args.rcvbuf)] if args.rcvbuf is not None else []
    if args.trace:
        from .client import SyscallTracer

        with SyscallTracer() as tracer:
            result = run_workload(args.transport, producers=args.producers, count=args.count, size=args.size,
                                  tracer=tracer, aggregator_args=agg_args)  # fmt: skip
    else:
        result = run_workload(args.transport, producers=args.producers, count=args.count, size=args.size,
                              aggregator_args=agg_args)  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0 if all(s == 0 for s in result["producer_exit_statuses"]) else 1


if __name__ == "__main__":
    sys.exit(main())
