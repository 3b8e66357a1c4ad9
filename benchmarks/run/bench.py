"""`loglab bench`: plan the runs, execute them one by one, persist each as it finishes.

Order of runs, for each scenario, sweep point and transport::

    warm-ups (every system)  ->  repeat 1 (every system)  ->  repeat 2 ...  ->  traced run (every system)

Systems alternate within a repeat (loglab, syslog-ng, rsyslog, loglab, ...) so that a drift in the
machine's speed touches them alike, as paired benchmarking does. A cell a system cannot serve (a
transport, input format or framing it has no input for) is skipped and said; a peer asked for
that cannot run here is said in the summary, and the bench exits non-zero. Warm-ups are measured and kept in the
results, flagged, and left out of every figure. With ``--trace`` each cell gets one extra run
with the tracer attached: syscall figures come from it, headline figures never do, and the
tracer's overhead is the traced run against the untraced median.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from aggregator.transports import TRANSPORTS

from ..peers import PEERS
from ..results.environment import collect_environment
from .measure import run_measurement, stamps_path
from .observer import ObservedStamps
from ..results import BenchParams, LatencyRecord, ResultsWriter, RunRecord, Workload
from ..results.seqcheck import analyze_output, expected_counts
from .suite import Scenario, for_transport
from .systems import SYSTEMS, make_system
from ..tracing import SyscallTracer, summarize
from ..tracing import available as tracing_available


@dataclass(frozen=True)
class RunSpec:
    scenario: str
    workload: Workload  # as the transport carries it (see suite.for_transport)
    transport: str
    system: str
    repeat: int  # index among the measured repeats (warm-ups count separately)
    warmup: bool = False
    traced: bool = False

    def label(self) -> str:
        kind = "warm-up" if self.warmup else ("traced" if self.traced else f"repeat {self.repeat + 1}")
        w = self.workload
        rate = "max" if not w.rate else f"{w.rate:g}/s"
        shape = "" if (w.format, w.framing) == ("json", "newline") else f" {w.format} {w.framing}"
        return (f"{self.scenario:<10} {self.transport:<8} {self.system:<9} {kind:<9} {w.producers}p x {w.count} x {w.size}B @ {rate} "
                f"batch {w.batch}{shape}")  # fmt: skip

    def record(self) -> RunRecord:
        """The record this run fills (kind "bench")."""
        return RunRecord(system=self.system, transport=self.transport, scenario=self.scenario, workload=self.workload,
                         repeat=self.repeat, is_warmup=self.warmup, traced=self.traced, expected=self.workload.expected)  # fmt: skip


def plan_runs(scenarios: list[Scenario], systems: list[str], repeat: int, warmup: int, trace: bool) -> list[RunSpec]:
    """Every run, in order. Per cell (scenario point x transport): ``repeat`` measured runs with
    the systems interleaved (so drift on the machine hits both alike), then one traced run per
    system if ``trace`` and the scenario asks for it. ``warmup`` runs per system and transport
    come before that transport's first cell (cold page cache, first start of the peer): warming
    every cell again cost a fifth of the benchmark's time and changed no figure beyond noise."""
    runs = []
    warmed: set[str] = set()
    for scenario in scenarios:
        for sweep_point in scenario.workloads:
            for transport in scenario.transports:
                w = for_transport(sweep_point, transport)
                if w is None:
                    continue  # no system could: a counted framing on a message transport
                serving = [s for s in systems if SYSTEMS[s].supports(transport, w.format, w.framing)]
                if transport not in warmed:
                    warmed.add(transport)
                    for k in range(warmup):
                        runs += [RunSpec(scenario.name, w, transport, s, k, warmup=True) for s in serving]
                for r in range(repeat):
                    runs += [RunSpec(scenario.name, w, transport, s, r) for s in serving]
                if trace and scenario.traced:
                    runs += [RunSpec(scenario.name, w, transport, s, repeat, traced=True) for s in serving]
    return runs


def unserved(scenarios: list[Scenario], systems: list[str]) -> list[str]:
    """What a system cannot serve (a peer with no input for a transport, a format or a framing):
    one note each, with the peer's reason, for the results and the report, instead of a failed run."""
    cells = dict.fromkeys((t, w.format, w.framing) for s in scenarios for p in s.workloads for t in s.transports
                          if (w := for_transport(p, t)) is not None)  # fmt: skip
    notes = []
    for system in systems:
        for transport, fmt, framing in cells:
            why = SYSTEMS[system].unsupported(transport, fmt, framing)
            if why:
                shape = "" if (fmt, framing) == ("json", "newline") else f" {fmt} {framing}"
                notes.append(f"{system}: its {transport}{shape} cells were skipped: {why}")
    return list(dict.fromkeys(notes))


def execute(spec: RunSpec, *, rcvbuf: int | None, workers: int = 1, tracer=None, loglab_args: list[str] | None = None) -> RunRecord:
    """One run, measured and checked, as a RunRecord. Its files live in a short-lived directory
    under /tmp (a Unix socket path must stay under 108 bytes), removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="loglab-run-"))
    record = spec.record()
    try:
        w = spec.workload
        system = make_system(spec.system, spec.transport, workdir, rcvbuf=rcvbuf, workers=workers, fmt=w.format, framing=w.framing,
                             loglab_args=loglab_args)  # fmt: skip
        summaries = run_measurement(system, spec.transport, w, workdir, record, tracer=tracer if spec.traced else None)
        stamps = ObservedStamps.load(stamps_path(workdir))
        seq = analyze_output(system.read_records(), expected_counts(w.producers, w.count), observed=stamps.per_line())
        _check(record, seq, summaries, system.comm)
        return record
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _check(record: RunRecord, seq, summaries: list[dict], receiver_comm: str) -> None:
    """What the output says (sequence check, latency) and what went wrong, onto ``record``."""
    record.sent = sum(s.get("sent", 0) for s in summaries)
    for summary in summaries:
        for name, n in summary.get("errors", {}).items():
            record.producer_errors[name] = record.producer_errors.get(name, 0) + n
    record.seq = seq
    record.window_end_ns = seq.last_received_ns or record.window_end_ns
    record.latency = LatencyRecord.from_samples(seq.observed_latencies_ns) if seq.observed_latencies_ns else None
    record.receipt_latency = LatencyRecord.from_samples(seq.latencies_ns) if seq.latencies_ns else None
    if record.latency and record.latency.summary.get("negative"):
        # Impossible unless the clock stepped back: the observer stamps after reading the line.
        record.errors.append(f"{record.latency.summary['negative']} negative observed latencies (clock stepped?)")
    stats = record.system_stats
    record.socket = {k: stats.get(k) for k in ("effective_rcvbuf", "effective_pipe_size") if stats.get(k) is not None}
    if record.trace is not None:
        # The tracer counts every comm it was given; keep the two sides of this run only.
        per_comm = summarize(record.trace, {"logprod": record.sent, receiver_comm: seq.received})
        record.trace = {"producer": per_comm.get("logprod"), "aggregator": per_comm.get(receiver_comm)}
    if stats.get("exit_code") not in (0, None):
        record.errors.append(f"{record.system} exited with {stats.get('exit_code')}")
    if seq.missing and TRANSPORTS[record.transport].reliable:
        record.errors.append(f"{seq.missing} messages lost on a reliable transport")


def run_bench(
    suite: list[Scenario],
    *,
    out_dir: Path,
    repeat: int,
    warmup: int,
    peers: list[str],
    trace: bool | None,
    rcvbuf: int | None,
    argv: list[str],
    workers: int = 1,
    extra=None,
    loglab_args: list[str] | None = None,
) -> bool:
    """Run ``suite`` on loglab and the ``peers`` asked for; persist every run as it finishes.
    False if any run failed or lost messages on a reliable transport, or a peer asked for could
    not run here (said at the start and in the summary). ``extra(writer) -> bool``: more runs
    into the same results (the pipeline scenario, natslab/bench.py), after the suite's."""
    systems = ["loglab"]
    peer_info = []
    for peer in peers:
        if peer not in PEERS:
            raise ValueError(f"unknown peer {peer!r} (known: {', '.join(PEERS)})")
        ok, why = PEERS[peer].available()
        peer_info.append((peer, ok, why, PEERS[peer].version() if ok else None))
        if ok:
            systems.append(peer)
        else:
            print(f"bench: PEER {peer} UNAVAILABLE: {why}; it is left out and the bench will exit non-zero", file=sys.stderr)
    missing = [f"{name} ({why})" for name, ok, why, _ in peer_info if not ok]
    tracing_ok, tracing_why = tracing_available()
    if trace is None:
        trace = tracing_ok
        if not tracing_ok:
            print(f"bench: tracing skipped: {tracing_why}", file=sys.stderr)
    elif trace and not tracing_ok:
        print(f"bench: --trace asked for, but tracing is unavailable: {tracing_why}", file=sys.stderr)
        trace = False
    elif not trace:
        tracing_why = "disabled with --no-trace"

    environment = collect_environment(peer_versions={name: version for name, ok, _, version in peer_info if ok})
    params = BenchParams(
        repeats=repeat,
        warmups=warmup,
        systems=systems,
        transports=sorted({t for s in suite for t in s.transports}),
        scenarios=[
            {"name": s.name, "description": s.description, "transports": list(s.transports), "workloads": [asdict(w) for w in s.workloads]}
            for s in suite
        ],
        argv=list(argv),
        extra={"rcvbuf": rcvbuf, "loglab_workers": workers, "loglab_args": list(loglab_args or [])},
    )
    writer = ResultsWriter(out_dir, environment, params)
    for info in peer_info:
        writer.set_peer(*info)
    writer.set_tracing(bool(trace), "" if trace else tracing_why, "bcc" if trace else None)
    for note in unserved(suite, systems):
        print(f"bench: {note}", file=sys.stderr)
        writer.note(note)
    runs = plan_runs(suite, systems, repeat, warmup, bool(trace))
    print(f"bench: {len(runs)} runs ({', '.join(systems)}; {repeat} repeats, {warmup} warm-ups); results in {out_dir}", file=sys.stderr)
    progress = Progress(len(runs))
    all_ok = True
    groups = {SYSTEMS[s].comm: SYSTEMS[s].trace_comms for s in systems if getattr(SYSTEMS[s], "trace_comms", ())}
    tracer = SyscallTracer(comms=("logprod", *(SYSTEMS[s].comm for s in systems)), groups=groups) if trace else None
    try:
        if tracer is not None:
            tracer.start()
        for spec in runs:
            progress.start(spec)
            try:
                record = execute(spec, rcvbuf=rcvbuf, workers=workers, tracer=tracer, loglab_args=loglab_args)
            except Exception as exc:  # one broken run must not lose the others
                record = spec.record()
                record.status = "failed"
                record.errors.append(f"{type(exc).__name__}: {exc}")
            writer.add_run(record)
            all_ok &= record.status == "ok" and not record.errors
            progress.finish(_run_summary(record))
        if extra is not None:
            all_ok &= extra(writer)
    finally:
        if tracer is not None:
            tracer.stop()
        writer.close()
    if missing:
        print(f"bench: NOT COMPARED: peer(s) asked for but unavailable here: {'; '.join(missing)}", file=sys.stderr)
    return all_ok and not missing


def _run_summary(r: RunRecord) -> str:
    if r.status != "ok":
        return f"FAILED: {'; '.join(r.errors)}"
    d = r.derived
    text = f"{d['messages_per_s']:>10,.0f} msg/s" if d.get("messages_per_s") else "       - msg/s"
    if d.get("agg_cpu_us_per_msg") is not None:
        text += f"  {d['agg_cpu_us_per_msg']:5.2f} us/msg"
    if r.latency and r.latency.summary.get("p99_ns") is not None:
        text += f"  p99 {r.latency.summary['p99_ns'] / 1e3:,.0f} us"
    if r.seq and r.seq.missing:
        text += f"  lost {r.seq.missing:,} ({r.seq.missing / r.seq.expected:.1%})"
    if r.errors:
        text += f"  ERROR: {'; '.join(r.errors)}"
    return text


class Progress:
    """One line per run on stderr: position, what runs, and an ETA from the runs so far."""

    def __init__(self, total: int, stream=sys.stderr) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.stream = stream

    def start(self, spec: RunSpec) -> None:
        width = len(str(self.total))
        print(f"[{self.done + 1:>{width}}/{self.total}] {spec.label()} ...", end="", file=self.stream, flush=True)

    def finish(self, summary: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        print(f" {summary}  (eta {_duration(eta)})", file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
