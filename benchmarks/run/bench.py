"""`loglab bench`: plan the runs, execute them one by one, persist each as it finishes.

Order of runs, for each scenario, sweep point and transport::

    warm-ups (every system)  ->  repeat 1 (every system)  ->  repeat 2 ...  ->  traced run (every system)

Systems alternate within a repeat (loglab, syslog-ng, loglab, ...) so that a drift in the machine's
speed touches both alike, as paired benchmarking does. Warm-ups are measured and kept in the
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
from .measure import Measurement, Workload, run_measurement
from ..results import BenchParams, LatencyRecord, ResultsWriter, RunRecord, SweepPoint
from ..results.seqcheck import analyze_output, expected_counts
from .suite import Point, Scenario
from .systems import SYSTEMS, make_system
from ..tracing import SyscallTracer, summarize
from ..tracing import available as tracing_available


@dataclass(frozen=True)
class RunSpec:
    scenario: str
    point: Point
    transport: str
    system: str
    repeat: int  # index among the measured repeats (warm-ups count separately)
    warmup: bool = False
    traced: bool = False

    @property
    def workload(self) -> Workload:
        return self.point.workload(self.transport)

    def label(self) -> str:
        kind = "warm-up" if self.warmup else ("traced" if self.traced else f"repeat {self.repeat + 1}")
        return f"{self.scenario:<10} {self.transport:<8} {self.system:<9} {kind:<9} {_point_text(self.point)}"


def _point_text(p: Point) -> str:
    rate = "max" if not p.rate else f"{p.rate:g}/s"
    return f"{p.producers}p x {p.count} x {p.size}B @ {rate} batch {p.batch}"


def plan_runs(scenarios: list[Scenario], systems: list[str], repeat: int, warmup: int, trace: bool) -> list[RunSpec]:
    """Every run, in order. Per cell (scenario point x transport): ``repeat`` measured runs with
    the systems interleaved (so drift on the machine hits both alike), then one traced run per
    system if ``trace`` and the scenario asks for it. ``warmup`` runs per system and transport
    come before that transport's first cell (cold page cache, first start of the peer): warming
    every cell again cost a fifth of the benchmark's time and changed no figure beyond noise."""
    runs = []
    warmed: set[str] = set()
    for scenario in scenarios:
        for point in scenario.points:
            for transport in scenario.transports:
                serving = [s for s in systems if SYSTEMS[s].supports(transport)]
                if transport not in warmed:
                    warmed.add(transport)
                    for w in range(warmup):
                        runs += [RunSpec(scenario.name, point, transport, s, w, warmup=True) for s in serving]
                for r in range(repeat):
                    runs += [RunSpec(scenario.name, point, transport, s, r) for s in serving]
                if trace and scenario.traced:
                    runs += [RunSpec(scenario.name, point, transport, s, repeat, traced=True) for s in serving]
    return runs


def unserved(scenarios: list[Scenario], systems: list[str]) -> list[str]:
    """What a system cannot serve (a peer with no source for a transport): one note each, for
    the results and the report, instead of a failed run."""
    transports = dict.fromkeys(t for s in scenarios for t in s.transports)
    return [f"{s} has no {t} source: its {t} cells were skipped" for s in systems for t in transports if not SYSTEMS[s].supports(t)]


def execute(spec: RunSpec, *, rcvbuf: int | None, workers: int = 1, tracer=None) -> RunRecord:
    """One run, measured and checked, as a RunRecord. Its files live in a short-lived directory
    under /tmp (a Unix socket path must stay under 108 bytes), removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="loglab-run-"))
    try:
        system = make_system(spec.system, spec.transport, workdir, rcvbuf=rcvbuf, workers=workers)
        workload = spec.workload
        m: Measurement = run_measurement(system, workload, workdir, tracer=tracer if spec.traced else None)
        seq = analyze_output(system.read_records(), expected_counts(workload.producers, workload.count))
        return _record(spec, m, seq, system.comm)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _record(spec: RunSpec, m: Measurement, seq, receiver_comm: str) -> RunRecord:
    w = spec.workload
    sent = sum(s.get("sent", 0) for s in m.producer_summaries)
    errors: dict[str, int] = {}
    for summary in m.producer_summaries:
        for name, n in summary.get("errors", {}).items():
            errors[name] = errors.get(name, 0) + n
    record = RunRecord(
        system=spec.system,
        transport=spec.transport,
        scenario=spec.scenario,
        point=SweepPoint(w.producers, w.count, w.size, w.rate, w.batch),
        repeat=spec.repeat,
        is_warmup=spec.warmup,
        traced=spec.traced,
        window_start_ns=m.window_start_ns,
        window_end_ns=seq.last_received_ns or m.window_end_ns,
        producers_done_ns=m.producers_done_ns,
        expected=w.expected,
        sent=sent,
        seq=seq,
        latency=LatencyRecord.from_samples(seq.latencies_ns) if seq.latencies_ns else None,
        aggregator=m.aggregator,
        producers=m.producers,
        udp_snmp_before=m.udp_snmp_before,
        udp_snmp_after=m.udp_snmp_after,
        socket={k: m.system_stats.get(k) for k in ("effective_rcvbuf", "effective_pipe_size") if m.system_stats.get(k) is not None},
        system_stats=m.system_stats,
        producer_errors=errors,
    )
    if m.trace is not None:
        # The tracer counts every comm it was given; keep the two sides of this run only.
        per_comm = summarize(m.trace, {"logprod": sent, receiver_comm: seq.received})
        record.trace = {"producer": per_comm.get("logprod"), "aggregator": per_comm.get(receiver_comm)}
    if any(code != 0 for code in m.producer_exit_codes):
        record.notes.append(f"producer exit codes {m.producer_exit_codes}")
    if m.system_stats.get("exit_code") not in (0, None):
        record.errors.append(f"{spec.system} exited with {m.system_stats.get('exit_code')}")
    if seq.missing and TRANSPORTS[spec.transport].reliable:
        record.errors.append(f"{seq.missing} messages lost on a reliable transport")
    return record


def run_bench(
    suite: list[Scenario],
    *,
    out_dir: Path,
    repeat: int,
    warmup: int,
    peer: str | None,
    trace: bool | None,
    rcvbuf: int | None,
    argv: list[str],
    workers: int = 1,
    extra=None,
) -> bool:
    """Run ``suite``; persist every run as it finishes. False if any run failed or lost messages
    on a reliable transport. ``extra(writer) -> bool``: more runs into the same results (the
    pipeline scenario, natslab/bench.py), after the suite's."""
    systems = ["loglab"]
    peer_info = None
    if peer is not None:
        if peer not in PEERS:
            raise ValueError(f"unknown peer {peer!r} (known: {', '.join(PEERS)})")
        ok, why = PEERS[peer].available()
        peer_info = (peer, ok, why, PEERS[peer].version() if ok else None)
        if ok:
            systems.append(peer)
        else:
            print(f"bench: peer {peer} unavailable: {why}", file=sys.stderr)
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

    environment = collect_environment(syslog_ng_version=peer_info[3] if peer_info else None)
    params = BenchParams(
        repeats=repeat,
        warmups=warmup,
        systems=systems,
        transports=sorted({t for s in suite for t in s.transports}),
        scenarios=[
            {"name": s.name, "description": s.description, "transports": list(s.transports), "points": [asdict(p) for p in s.points]}
            for s in suite
        ],
        argv=list(argv),
        extra={"rcvbuf": rcvbuf, "loglab_workers": workers},
    )
    writer = ResultsWriter(out_dir, environment, params)
    if peer_info:
        writer.set_peer(*peer_info)
    writer.set_tracing(bool(trace), "" if trace else tracing_why, "bcc" if trace else None)
    for note in unserved(suite, systems):
        print(f"bench: {note}", file=sys.stderr)
        writer.note(note)
    runs = plan_runs(suite, systems, repeat, warmup, bool(trace))
    print(f"bench: {len(runs)} runs ({', '.join(systems)}; {repeat} repeats, {warmup} warm-ups); results in {out_dir}", file=sys.stderr)
    progress = Progress(len(runs))
    all_ok = True
    tracer = SyscallTracer(comms=("logprod", "logagg", "syslog-ng")) if trace else None
    try:
        if tracer is not None:
            tracer.start()
        for spec in runs:
            progress.start(spec)
            try:
                record = execute(spec, rcvbuf=rcvbuf, workers=workers, tracer=tracer)
            except Exception as exc:  # one broken run must not lose the others
                record = RunRecord(
                    system=spec.system, transport=spec.transport, scenario=spec.scenario,
                    point=SweepPoint(**asdict(spec.point)), repeat=spec.repeat, is_warmup=spec.warmup,
                    traced=spec.traced, status="failed", errors=[f"{type(exc).__name__}: {exc}"],
                )  # fmt: skip
            writer.add_run(record)
            all_ok &= record.status == "ok" and not record.errors
            progress.finish(_run_summary(record))
        if extra is not None:
            all_ok &= extra(writer)
    finally:
        if tracer is not None:
            tracer.stop()
        writer.close()
    return all_ok


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
