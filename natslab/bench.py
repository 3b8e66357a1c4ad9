"""``loglab bench --scenarios pipeline``: producers -> aggregator -> file -> shipper -> JetStream,
measured, beside the ceilings of the client library and of the server.

Per repeat, for JetStream with 1 replica (one node) and with 3 (a three-node cluster), all on
loopback (one host: the figures are the pipeline's, not the network's):

* ``shipper`` at a fixed rate: 4 producers x 12,500 msg/s of 200-byte lines into one aggregator
  (the issue's target, 50,000 msg/s), for ``seconds`` (default 4). Throughput is messages in the
  stream / (last stream timestamp - start); it equals the offered rate when the shipper keeps up.
  Latency: producer's intended send time -> the stream's timestamp of the message (from the
  read-back), so time spent in the aggregator, the file, the shipper and the server all counts.
* ``shipper`` flat out: the same messages written as fast as the producers can (batch 64): what
  the shipper sustains when it is the bottleneck (the file is the buffer).
* ``nats-py publish_async``: the same lines (the flat-out run's file) published from memory with
  nats.py's own pending-ack machinery and a Nats-Msg-Id each: the client's ceiling.
* ``nats-py core publish``: the same lines with plain ``publish`` and no JetStream: the ceiling of
  one Python publisher against the server, without persistence.

CPU: on-CPU time (schedstat) over the window of the shipper process (or the ceiling publisher), of
the aggregator, and of every nats-server node (``system_stats.nats_cpu_s``); per message
delivered. Results go through ``benchmarks/results.py`` (RunRecord, with the ``shipper`` field).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from benchmarks.run.measure import processes_stats, stats_delta
from benchmarks.results import LatencyRecord, ProcessStats, ResultsWriter, RunRecord, Workload
from benchmarks.results.seqcheck import SeqCheckResult

from .cluster import NatsDeployment
from .pipeline import Pipeline
from benchmarks.processes import ProcGroup, nats_unavailable

PRODUCERS = 4
SIZE = 200
TARGET_RATE = 50_000.0


def _nats_pids(d: NatsDeployment) -> list[int]:
    return [d.node_proc(i).pid for i in range(len(d.nodes))]


def shipper_run(workdir: Path, nodes: int, rate: float, count: int, repeat: int, keep_lines: Path | None = None) -> RunRecord:
    batch = 64 if not rate else 1
    point = Workload(PRODUCERS, count, SIZE, rate, batch)
    with Pipeline(workdir, hosts=1, nats_nodes=nodes, mode="loopback") as p:
        h = p.hosts.hosts[0]
        ship, agg, nats_pids = p.shipper(h).pid, p.aggregator(h).pid, _nats_pids(p.nats)
        b_ship, b_agg, b_nats = processes_stats([ship]), processes_stats([agg]), processes_stats(nats_pids)
        start_ns = time.time_ns()
        procs = p.start_producers(PRODUCERS, count, "--rate", rate, "--size", SIZE, "--batch", batch)
        for proc in procs:
            proc.wait(600)
        p.wait_stream_messages(PRODUCERS * count, 600)
        a_ship, a_agg, a_nats = processes_stats([ship]), processes_stats([agg]), processes_stats(nats_pids)
        stats = p.shipper_stats(h)
        read, result = p.readback(p.expected(PRODUCERS, count))
        if keep_lines is not None:
            shutil.copyfile(p.output(h), keep_lines)
        describe = p.describe()
    record = RunRecord(
        system="shipper", transport=f"jetstream-R{nodes}", scenario="pipeline", workload=point, repeat=repeat,
        window_start_ns=start_ns, window_end_ns=result.last_received_ns or time.time_ns(), expected=PRODUCERS * count,
        sent=PRODUCERS * count, seq=result,
        latency=LatencyRecord.from_samples(result.latencies_ns) if result.latencies_ns else None,
        aggregator=stats_delta(a_agg, b_agg), shipper=stats_delta(a_ship, b_ship),
        system_stats={"nats_nodes": nodes, "nats_cpu_s": a_nats.cpu_s - b_nats.cpu_s, "shipper_counters": stats,
                      "stream_messages_read": read.messages},
        notes=[describe],
    )  # fmt: skip
    if result.missing or result.duplicates:
        record.errors.append(f"{result.missing} missing, {result.duplicates} duplicates in the stream")
    return record


def ceiling_run(workdir: Path, nodes: int, mode: str, lines: Path, repeat: int) -> RunRecord:
    n = sum(1 for _ in open(lines, "rb"))
    point = Workload(1, n, SIZE, 0.0, 500)
    group = ProcGroup()
    try:
        d = NatsDeployment(workdir / "nats", group, nodes).start()
        d.ensure_stream()
        nats_pids = _nats_pids(d)
        b_nats = processes_stats(nats_pids)
        start_ns = time.time_ns()
        out = subprocess.run([sys.executable, "-m", "natslab.ceiling", "--servers", d.servers, "--lines", str(lines), "--mode", mode],
                             capture_output=True, text=True, timeout=600)  # fmt: skip
        a_nats = processes_stats(nats_pids)
    finally:
        group.close()
    if out.returncode != 0:
        raise RuntimeError(f"ceiling publisher failed: {out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    seq = SeqCheckResult(expected=n, received=res["messages"], records=res["messages"])
    system = "nats-py publish_async" if mode == "jetstream" else "nats-py core publish"
    return RunRecord(
        system=system, transport=f"jetstream-R{nodes}" if mode == "jetstream" else "core-nats", scenario="pipeline",
        workload=point, repeat=repeat, window_start_ns=start_ns, window_end_ns=start_ns + int(res["seconds"] * 1e9),
        expected=n, sent=n, seq=seq, shipper=ProcessStats(cpu_s=res["cpu_s"]),
        system_stats={"nats_nodes": nodes, "nats_cpu_s": a_nats.cpu_s - b_nats.cpu_s, "publisher": res},
        notes=["the same lines published from memory by one Python process (natslab/ceiling.py)"],
    )  # fmt: skip


def run_pipeline_bench(writer: ResultsWriter, repeat: int = 2, scale: float = 1.0, seconds: float = 4.0, echo=print) -> bool:
    """Every run of the pipeline scenario, written through ``writer`` as it finishes."""
    why = nats_unavailable()
    if why:
        writer.note(f"pipeline scenario skipped: {why}")
        echo(f"bench: pipeline skipped: {why}")
        return True
    rate_each = TARGET_RATE / PRODUCERS
    count_rate = max(100, int(rate_each * seconds * scale))
    count_max = max(100, int(50_000 * scale))
    ok = True
    for r in range(repeat):
        for nodes in (1, 3):
            workdir = Path(tempfile.mkdtemp(prefix="loglab-pipe-"))
            try:
                lines = workdir / "lines.jsonl"
                plan = [
                    ("shipper @50k/s", lambda: shipper_run(workdir / "rate", nodes, rate_each, count_rate, r)),
                    ("shipper flat out", lambda: shipper_run(workdir / "max", nodes, 0.0, count_max, r, keep_lines=lines)),
                    ("nats-py publish_async", lambda: ceiling_run(workdir / "js", nodes, "jetstream", lines, r)),
                ]
                if nodes == 1:
                    plan.append(("nats-py core publish", lambda: ceiling_run(workdir / "core", nodes, "core", lines, r)))
                for label, fn in plan:
                    t0 = time.monotonic()
                    try:
                        record = fn()
                    except Exception as exc:  # one broken run must not lose the others
                        record = RunRecord(system=label, transport=f"jetstream-R{nodes}", scenario="pipeline",
                                           workload=Workload(PRODUCERS, 0, SIZE, 0.0, 0), repeat=r, status="failed",
                                           errors=[f"{type(exc).__name__}: {exc}"])  # fmt: skip
                    writer.add_run(record)
                    ok &= record.status == "ok" and not record.errors
                    echo(f"[pipeline R{nodes} repeat {r + 1}] {label}: {_summary(record)} ({time.monotonic() - t0:.0f} s)")
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    return ok


def _summary(r: RunRecord) -> str:
    if r.status != "ok":
        return "FAILED: " + "; ".join(r.errors)
    d = r.derived
    parts = [f"{d.get('messages_per_s') or 0:,.0f} msg/s"]
    if d.get("shipper_cpu_us_per_msg") is not None:
        parts.append(f"{d['shipper_cpu_us_per_msg']:.1f} us CPU/msg (publisher)")
    if r.latency:
        s = r.latency.summary
        parts.append(f"p50 {s['p50_ns'] / 1e6:.1f} ms p99 {s['p99_ns'] / 1e6:.1f} ms")
    if r.errors:
        parts.append("ERROR: " + "; ".join(r.errors))
    return ", ".join(parts)
