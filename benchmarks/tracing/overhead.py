"""The BCC tracer's overhead: the same burst with and without tracing, alternated.

USAGE: python -m benchmarks.tracing.overhead [--transport unixsock] [--producers 2]
           [--count 20000] [--size 200] [--repeat 3] [--per-syscall] [--json PATH]

Each repeat runs the burst untraced (no BPF program loaded), then traced (the agent attached and
its window open over the burst, counting only this run's processes), so drift hits both alike. Throughput is messages
received / (burst start -> the aggregator's receipt of the last message). Reports the medians and
the traced run's slowdown in percent. ``--per-syscall`` adds the cost of one counted syscall
(``dd bs=1``: a syscall-bound process), the number that explains the slowdown. Needs root.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from .client import SyscallTracer, TracingUnavailable, available
from .workload import run_workload


def measure_overhead(
    transport: str = "unixsock", *, producers: int = 2, count: int = 20000, size: int = 200, repeat: int = 3
) -> dict:
    """Plain data: throughput of each run untraced and traced (alternated), medians, overhead."""
    ok, why = available()
    if not ok:
        raise TracingUnavailable(why)
    untraced, traced, syscalls_per_message = [], [], []
    for _ in range(repeat):
        untraced.append(run_workload(transport, producers=producers, count=count, size=size)["messages_per_s"])
        with SyscallTracer(comms=("logprod", "logagg")) as tracer:
            run = run_workload(transport, producers=producers, count=count, size=size, tracer=tracer)
        traced.append(run["messages_per_s"])
        comms = run["trace"]["comms"]
        syscalls_per_message.append({c: round(comms[c]["syscalls"] / max(1, run["messages_received"]), 3) for c in comms})
    med_untraced, med_traced = statistics.median(untraced), statistics.median(traced)
    return {
        "transport": transport,
        "producers": producers,
        "count_per_producer": count,
        "size": size,
        "repeat": repeat,
        "messages_per_s_untraced": untraced,
        "messages_per_s_traced": traced,
        "median_untraced": med_untraced,
        "median_traced": med_traced,
        # positive = tracing slowed the burst down
        "overhead_percent": round(100.0 * (1 - med_traced / med_untraced), 1),
        "syscalls_per_message_traced": syscalls_per_message,
    }


def per_syscall_cost(syscalls: int = 400_000, repeat: int = 5) -> dict:
    """Added ns per syscall of a traced process, from ``dd bs=1`` (one read + one write per byte).

    The tracer is told to count comm "dd": the cost of a counted syscall (enter + exit programs,
    map updates). Medians of ``repeat`` runs each way, alternated.
    """
    import subprocess
    import time

    ok, why = available()
    if not ok:
        raise TracingUnavailable(why)
    cmd = ["/usr/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={syscalls // 2}", "status=none"]

    def timed() -> float:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        return time.perf_counter() - t0

    plain, traced = [], []
    with SyscallTracer(comms=("dd",)) as tracer:
        for _ in range(repeat):
            plain.append(timed())  # probes attached, window closed: near-free early return
            tracer.open_window()
            traced.append(timed())
            result = tracer.close_window()
    counted = result["comms"]["dd"]["syscalls"]
    no_bpf = [timed() for _ in range(repeat)]
    med = statistics.median
    return {
        "syscalls_counted_per_run": counted,
        "seconds_no_bpf": med(no_bpf),
        "seconds_window_closed": med(plain),
        "seconds_traced": med(traced),
        "ns_per_syscall_no_bpf": round(med(no_bpf) / counted * 1e9, 1),
        "added_ns_per_counted_syscall": round((med(traced) - med(no_bpf)) / counted * 1e9, 1),
        "added_ns_per_syscall_window_closed": round((med(plain) - med(no_bpf)) / counted * 1e9, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", default="unixsock")
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the result here")
    parser.add_argument("--per-syscall", action="store_true", help="also measure the added ns per traced syscall (dd bs=1)")
    args = parser.parse_args(argv)
    try:
        result = measure_overhead(
            args.transport, producers=args.producers, count=args.count, size=args.size, repeat=args.repeat
        )
        if args.per_syscall:
            result["per_syscall"] = per_syscall_cost()
    except TracingUnavailable as exc:
        print(f"tracing skipped: {exc.reason}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
