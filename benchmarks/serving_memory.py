"""Memory of an idle aggregator (default options), per transport and hot path, and its floor.

``python -m benchmarks.serving_memory [--out DIR] [--idle-seconds S]``

Each aggregator is started through ``benchmarks.processes`` with its default options, left idle
``--idle-seconds`` after it is ready, then its RSS (``VmRSS``) and PSS (``smaps_rollup``) are read
and it is stopped. The floor is an interpreter of the same venv that only imports what serving
needs (``aggregator.cli``, which imports the server, the sink and every transport), and a bare
one (``python -c pass``), read the same way. ``--out DIR`` writes a results directory (one
``RunRecord`` of kind "micro" per figure, in ``figures``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aggregator import hotpath
from aggregator.transports import TRANSPORT_NAMES

MIB = 1024 * 1024
_READ = "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"


def process_memory(pid: int) -> dict:
    """RSS and PSS of ``pid``, bytes."""
    with open(f"/proc/{pid}/status") as f:
        rss = int(f.read().split("VmRSS:")[1].split()[0]) * 1024
    pss = None
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"rss_bytes": rss, "pss_bytes": pss}


def interpreter_rss(code: str) -> int:
    """RSS of this venv's interpreter after running ``code`` (bytes)."""
    out = subprocess.run([sys.executable, "-c", f"{code}\n{_READ}"], capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1]) * 1024


def idle_aggregator(transport: str, implementation: str, idle_s: float, workdir: Path) -> dict:
    from benchmarks.processes import AggregatorProc

    env = {**os.environ, hotpath.CHOICE_ENV: implementation}
    with AggregatorProc(transport, workdir / f"{transport}-{implementation}", env=env) as agg:
        time.sleep(idle_s)  # idle on purpose: what a receiving process holds while nothing comes
        figures = process_memory(agg.pid)
        agg.stop()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=float, default=1.0, help="idle time before reading (default 1 s)")
    parser.add_argument("--out", type=Path, help="write a results directory here")
    args = parser.parse_args(argv)
    started_ns = time.time_ns()
    rows: list[tuple[str, str, dict]] = [
        ("python", "bare interpreter", {"rss_bytes": interpreter_rss("pass")}),
        ("python", "serving imports", {"rss_bytes": interpreter_rss("import aggregator.cli")}),
    ]
    with tempfile.TemporaryDirectory(prefix="loglab-memory-") as tmp:
        for transport in TRANSPORT_NAMES:
            for implementation in hotpath.IMPLEMENTATIONS:
                rows.append((f"loglab-{implementation}", transport, idle_aggregator(transport, implementation, args.idle_seconds, Path(tmp))))
    ended_ns = time.time_ns()
    for system, what, figures in rows:
        pss = figures.get("pss_bytes")
        print(f"{system:<16} {what:<18} RSS {figures['rss_bytes'] / MIB:6.2f} MiB" + (f"  PSS {pss / MIB:6.2f} MiB" if pss else ""))
    if args.out:
        from benchmarks.results.environment import collect_environment
        from benchmarks.results.model import RunRecord
        from benchmarks.results.store import ResultsWriter

        writer = ResultsWriter(args.out, collect_environment(), {"scenario": "idle-memory", "idle_seconds": args.idle_seconds,
                                                                  "argv": sys.argv})  # fmt: skip
        for system, what, figures in rows:
            transport = what if what in TRANSPORT_NAMES else "none"
            writer.add_run(RunRecord(system=system, transport=transport, scenario="idle-memory", kind="micro", figures=figures,
                                     notes=[what], window_start_ns=started_ns, window_end_ns=ended_ns))  # fmt: skip
        writer.close()
        print(f"results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
