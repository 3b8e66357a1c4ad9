"""The aggregator's cost per message, stage by stage, for each implementation of its hot path.

``python -m benchmarks.hotpath_cost [--out DIR] [--messages N] [--repeat R] [--profile-seconds S]``

Microbenchmarks, in one process, on the producer's own 200-byte JSON lines cut into 64 KiB reads
as the aggregator reads them (``aggregator/hotpath.py``; ``python`` is the pure-Python path,
``native`` the C extension):

* ``framing``     newline framing of the reads (python: ``LineFramer.feed``; native: the C framer,
                  timed inside the extension by ``stage_costs``, no Python objects made);
* ``validation``  deciding each line is a UTF-8 JSON object without the added fields (python: the
                  msgspec probe and the ASCII check ``encode_lines`` runs; native: the C validator);
* ``splice``      the output line, ``line[:-1] + suffix`` (native: copied into one block);
* ``path``        the whole per-read call the event loop makes (``hotpath.frame_and_encode``);
                  ``path - framing - validation - splice`` is the glue (loop, lists, calls);
* ``write``       the sink's share: joining the output pieces and one ``write(2)`` per 256 KiB to
                  a file in ``--dir``;
* ``recv``, ``poll`` the syscalls per message: one ``recv_into`` of 64 KiB from an AF_UNIX stream
                  socket, one ``epoll.poll`` per read (the same for both implementations).

Every figure is ns per message, the median [min-max] over ``--repeat`` passes, the
implementations interleaved so that a drift in the machine touches both alike.

With ``--profile-seconds S``, each implementation also serves 4 producers sending flat out
(unixsock, batches of 64) for S seconds under ``perf record``; the top symbols of the aggregator
(kernel and user space, by share of its samples), its messages per second and CPU per message are
kept. Without perf (or permission), that part is skipped with the reason.

``--out DIR`` writes a results directory (``benchmarks/results``: one ``RunRecord`` of kind
"micro" per implementation, the figures in ``figures``, the raw samples kept).
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aggregator import hotpath
from aggregator.records import ADDED_FIELDS, probe_for, suffix_for

READ_BYTES = 64 * 1024  # server.READ_BYTES: one read
FLUSH_BYTES = 256 * 1024  # sink.FLUSH_BYTES: one write
RECEIVED_NS = 1_795_000_000_000_000_000
TRANSPORT = "unixsock"
STAGES = ("framing", "validation", "splice", "glue", "path", "write", "recv", "poll")


def _reads(n: int, size: int) -> list[bytes]:
    from producers.messages import MessageFactory

    factory = MessageFactory("p0", 4242, size, 0)
    data = b"".join(factory.batch(first, min(64, n - first), RECEIVED_NS - 1000) for first in range(0, n, 64))
    return [data[i : i + READ_BYTES] for i in range(0, len(data), READ_BYTES)]


def _per_message(start_ns: int, n: int) -> float:
    return (time.perf_counter_ns() - start_ns) / n


def time_path(implementation: hotpath.Implementation, reads: list[bytes], n: int) -> tuple[float, list[list[bytes]]]:
    """ns per message of the event loop's per-read call; and the output pieces, per read."""
    framer = implementation.LineFramer(65536)
    outputs: list[list[bytes]] = []
    written = 0
    rejects: list = []
    start = time.perf_counter_ns()
    for data in reads:
        out: list[bytes] = []
        written += hotpath.frame_and_encode(framer, [data], RECEIVED_NS, TRANSPORT, out, rejects)[1]
        outputs.append(out)
    elapsed = _per_message(start, n)
    if written != n or rejects:
        raise AssertionError(f"{implementation.name}: {written} of {n} written, {len(rejects)} rejects")
    return elapsed, outputs


def python_stages(reads: list[bytes], n: int) -> dict[str, float]:
    """framing, validation and splice of the Python path, each timed alone."""
    framer = hotpath.PythonLineFramer(65536)
    per_read: list[list[bytes]] = []
    start = time.perf_counter_ns()
    for data in reads:
        lines: list[bytes] = []
        framer.feed(data, lines, [])
        per_read.append(lines)
    framing = _per_message(start, n)
    probe = probe_for(ADDED_FIELDS)[0]
    start = time.perf_counter_ns()
    for lines in per_read:
        for line in lines:
            probe(line)
            line.isascii()
    validation = _per_message(start, n)
    suffix, _ = suffix_for(RECEIVED_NS, TRANSPORT)
    start = time.perf_counter_ns()
    for lines in per_read:
        out: list[bytes] = []
        append = out.append
        for line in lines:
            append(line[:-1] + suffix)
    splice = _per_message(start, n)
    return {"framing": framing, "validation": validation, "splice": splice}


def native_stages(reads: list[bytes], n: int) -> dict[str, float]:
    suffix, added = suffix_for(RECEIVED_NS, TRANSPORT)
    framing, validation, splice, lines = hotpath.stage_costs(reads, suffix, added, 1)
    if lines != n:
        raise AssertionError(f"native stages framed {lines} lines, not {n}")
    return {"framing": framing / n, "validation": validation / n, "splice": splice / n}


def time_write(outputs: list[list[bytes]], n: int, directory: Path) -> float:
    """The sink's work on the output pieces: a join per read (``OutputSink.add``), then a join and
    one write per 256 KiB (``LineFile._write_backlog``)."""
    fd, path = tempfile.mkstemp(dir=directory, prefix="hotpath-cost-", suffix=".jsonl")
    try:
        backlog: list[bytes] = []
        pending = 0
        start = time.perf_counter_ns()
        for out in outputs:
            block = b"".join(out)
            backlog.append(block)
            pending += len(block)
            if pending >= FLUSH_BYTES:
                os.write(fd, backlog[0] if len(backlog) == 1 else b"".join(backlog))
                backlog, pending = [], 0
        if backlog:
            os.write(fd, b"".join(backlog))
        elapsed = _per_message(start, n)
    finally:
        os.close(fd)
        os.unlink(path)
    return elapsed


def time_syscalls(reads: list[bytes], n: int) -> dict[str, float]:
    """One recv_into per 64 KiB read and one epoll.poll per read, timed alone (the send is not)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    epoll = select.epoll()
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        b.setblocking(False)
        epoll.register(b.fileno(), select.EPOLLIN)
        buf = memoryview(bytearray(READ_BYTES))
        recv_ns = poll_ns = 0
        for data in reads:
            a.sendall(data)
            t0 = time.perf_counter_ns()
            epoll.poll(0)
            t1 = time.perf_counter_ns()
            got = 0
            while got < len(data):
                got += b.recv_into(buf[: len(data) - got])
            recv_ns += time.perf_counter_ns() - t1
            poll_ns += t1 - t0
    finally:
        epoll.close()
        a.close()
        b.close()
    return {"recv": recv_ns / n, "poll": poll_ns / n}


def one_pass(name: str, reads: list[bytes], n: int, directory: Path) -> dict[str, float]:
    implementation = hotpath.IMPLEMENTATIONS[name]
    path, outputs = time_path(implementation, reads, n)
    stages = python_stages(reads, n) if name == "python" else native_stages(reads, n)
    figures = {**stages, "path": path, "glue": path - sum(stages.values()), "write": time_write(outputs, n, directory)}
    figures.update(time_syscalls(reads, n))
    return figures


# -- the profile: the aggregator serving producers, under perf -------------------------------------------


def _perf_unavailable() -> str | None:
    if shutil.which("perf") is None:
        return "perf is not installed (linux-perf)"
    probe = subprocess.run(["perf", "record", "-o", "/dev/null", "-q", "--", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"perf record fails here: {probe.stderr.strip()[:200]}"
    return None


def profile(name: str, seconds: float, workdir: Path, producers: int = 4) -> dict:
    """Serve ``producers`` flat-out producers (unixsock, batches of 64) for ``seconds``; perf records
    the aggregator meanwhile. Returns its throughput, CPU per message and top symbols."""
    from benchmarks.processes import AggregatorProc, ProcGroup, ProducerProc, proc_cpu_seconds

    env = {**os.environ, hotpath.CHOICE_ENV: name}
    group = ProcGroup()
    try:
        agg = group.start(AggregatorProc("unixsock", workdir / name, env=env, stats_interval=0.5))
        count = 50_000_000  # more than the window takes: the producers are stopped at its end
        procs = [group.start(ProducerProc("unixsock", agg.address, f"p{i}", count, workdir / name, "--batch", "64",
                                          "--quiet", barrier=True, summary=False)) for i in range(producers)]  # fmt: skip
        for p in procs:
            p.go()
        time.sleep(0.5)  # past the producers' start-up: the window is the steady state
        before = agg.wait_stats(lambda s: True, "stats")
        cpu0, t0 = proc_cpu_seconds(agg.pid), time.monotonic()
        perf_data = workdir / f"{name}.perf.data"
        subprocess.run(["perf", "record", "-F", "999", "-g", "-o", str(perf_data), "-p", str(agg.pid), "--", "sleep", str(seconds)],
                       capture_output=True, check=True)  # fmt: skip
        cpu1, t1 = proc_cpu_seconds(agg.pid), time.monotonic()
        after = agg.wait_stats(lambda s: s["messages_written"] > before["messages_written"], "stats after the window")
        # The stats file is written every 0.5 s: count messages over the stats' own interval.
        messages = after["messages_written"] - before["messages_written"]
        interval = (after["written_at_unix_ns"] - before["written_at_unix_ns"]) / 1e9
        report = subprocess.run(["perf", "report", "-i", str(perf_data), "--stdio", "--no-children", "--sort", "dso,sym",
                                 "--percent-limit", "0.7", "-g", "none", "-q"], capture_output=True, text=True, check=True)  # fmt: skip
    finally:
        group.close()
    top = []
    for line in report.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0].endswith("%"):
            top.append({"percent": float(parts[0].rstrip("%")), "dso": parts[1], "symbol": parts[2].strip()})
    rate = messages / interval
    return {"messages_per_s": rate, "cpu_us_per_msg": (cpu1 - cpu0) / max(rate * (t1 - t0), 1) * 1e6,
            "cpu_share": (cpu1 - cpu0) / (t1 - t0), "hot_path": after.get("hot_path"), "top_symbols": top,
            "perf_report": report.stdout}  # fmt: skip


# -- main ---------------------------------------------------------------------------------------------------


def _summary(samples: list[float]) -> dict:
    return {"median_ns": statistics.median(samples), "min_ns": min(samples), "max_ns": max(samples), "samples_ns": samples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000, help="messages per pass (default 200,000)")
    parser.add_argument("--size", type=int, default=200, help="bytes per message line (default 200)")
    parser.add_argument("--repeat", type=int, default=7, help="passes per implementation, interleaved (default 7)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the write stage writes (default: the temp dir)")
    parser.add_argument("--profile-seconds", type=float, default=0, help="also profile a serving aggregator this long (0: no)")
    parser.add_argument("--out", type=Path, help="write a results directory here")
    args = parser.parse_args(argv)
    names = list(hotpath.IMPLEMENTATIONS)
    if "native" not in names:
        print(f"hotpath_cost: only the python path: {hotpath.NATIVE_MISSING}", file=sys.stderr)
    reads = _reads(args.messages, args.size)
    samples: dict[str, dict[str, list[float]]] = {name: {stage: [] for stage in STAGES} for name in names}
    for i in range(args.repeat):
        for name in names:
            for stage, value in one_pass(name, reads, args.messages, args.dir).items():
                samples[name][stage].append(value)
        print(f"pass {i + 1}/{args.repeat} done", file=sys.stderr, flush=True)
    figures = {name: {stage: _summary(v) for stage, v in by_stage.items()} for name, by_stage in samples.items()}
    print(f"{'ns per message':<14}" + "".join(f"{name:>26}" for name in names))
    for stage in STAGES:
        cells = [f"{figures[n][stage]['median_ns']:8.1f} [{figures[n][stage]['min_ns']:6.1f}-{figures[n][stage]['max_ns']:6.1f}]" for n in names]
        print(f"{stage:<14}" + "".join(f"{c:>26}" for c in cells))
    profiles: dict[str, dict] = {}
    why_not = _perf_unavailable() if args.profile_seconds else "not asked (--profile-seconds 0)"
    if args.profile_seconds and why_not is None:
        workdir = Path(tempfile.mkdtemp(prefix="loglab-hotpath-profile-"))
        try:
            for name in names:
                profiles[name] = profile(name, args.profile_seconds, workdir)
                p = profiles[name]
                print(f"profile {name}: {p['messages_per_s']:,.0f} msg/s, {p['cpu_us_per_msg']:.2f} us CPU/msg "
                      f"({p['cpu_share']:.0%} of a core); top: " + ", ".join(f"{t['symbol']} {t['percent']:.1f}%" for t in p["top_symbols"][:5]))  # fmt: skip
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    elif args.profile_seconds:
        print(f"profile skipped: {why_not}", file=sys.stderr)
    if args.out:
        _write_results(args, names, figures, profiles, why_not)
    return 0


def _write_results(args, names: list[str], figures: dict, profiles: dict, profile_skipped: str | None) -> None:
    from benchmarks.results.environment import collect_environment
    from benchmarks.results.model import RunRecord
    from benchmarks.results.store import ResultsWriter

    params = {"scenario": "hotpath-cost", "messages": args.messages, "size": args.size, "repeats": args.repeat,
              "read_bytes": READ_BYTES, "flush_bytes": FLUSH_BYTES, "profile_seconds": args.profile_seconds,
              "argv": sys.argv}  # fmt: skip
    writer = ResultsWriter(args.out, collect_environment(), params)
    for name in names:
        prof = profiles.get(name)
        if prof is not None:
            (args.out / f"perf-report-{name}.txt").write_text(prof.pop("perf_report"))
        run = RunRecord(system=f"loglab-{name}", transport=TRANSPORT, scenario="hotpath-cost", kind="micro",
                        figures={"ns_per_message": figures[name], "profile": prof},
                        notes=[f"hot path implementation: {name}"] + ([f"profile skipped: {profile_skipped}"] if prof is None else []))  # fmt: skip
        writer.add_run(run)
    writer.close()
    print(f"results in {args.out}")


if __name__ == "__main__":
    sys.exit(main())
