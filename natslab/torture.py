"""``loglab torture`` scenarios of shipping beyond one machine (issue 13): the long versions of the
guarantees ``tests/test_shipper.py`` checks quickly.

Each runs 3 hosts (network namespaces when possible, else loopback, and the row says which) with
producers on every host, a shipper per host and NATS, injects one fault mid-stream, and reads the
whole stream back: ``written`` is the distinct (host, producer, seq) in the stream, ``ok`` means
every one exactly once. ``figures`` hold duplicates, dedup hits, retries and what the fault cost.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from .pipeline import Pipeline
from benchmarks.faults.rows import finish, skipped, torture_run
from benchmarks.results import RunRecord
from benchmarks.processes import nats_unavailable, wait_until
from .readback import exactly_once

PRODUCERS = 4


def _n(base: int, scale: float) -> int:
    return max(1, int(base * scale))


def _skipped(name: str) -> list[RunRecord] | None:
    why = nats_unavailable()
    return [skipped(name, why)] if why else None


def _sent(p: Pipeline, procs) -> int:
    """What the producers were told was sent (0 for one that never connected)."""
    return sum(proc.sent for proc in procs)


def _finish_row(name: str, p: Pipeline, procs, count: int, t0: float, figures: dict, notes: str) -> RunRecord:
    for proc in procs:
        proc.wait(300)
    expected = p.expected(PRODUCERS, count)
    total = sum(expected.values())
    p.wait_stream_messages(total, 300)
    read, result = p.readback(expected)
    stats = [p.shipper_stats(h) for h in p.hosts.hosts]
    row = torture_run(name, f"R{p.nats_nodes} {p.hosts.mode}", sent=_sent(p, procs), written=result.received, rejected=0,
              expected_written=total)  # fmt: skip
    row.ok = exactly_once(result)
    row.figures = {"duplicates_in_stream": result.duplicates, "reordered": result.reordered, "missing": result.missing,
                   "dedup_hits": sum(s.get("dedup_hits", 0) for s in stats), "retries": sum(s.get("retries", 0) for s in stats),
                   "publish_errors": sum(s.get("publish_errors", 0) for s in stats), "hosts": p.describe(), **figures}  # fmt: skip
    row.notes = [f"{notes}; dup {result.duplicates}, dedup hits {row.figures['dedup_hits']}, retries {row.figures['retries']}"]
    return finish(row, t0)


def _pipeline(workdir: Path, nodes: int = 3, **kw) -> Pipeline:
    return Pipeline(workdir, hosts=3, nats_nodes=nodes, mode="auto",
                    shipper_args=("--stats-interval", "0.2", "--backoff-max", "2"), **kw)  # fmt: skip


def shipper_sigkill(workdir: Path, scale: float) -> list[RunRecord]:
    """Every host's shipper SIGKILLed twice mid-stream and restarted."""
    if (skip := _skipped("ship_shipper_sigkill")) is not None:
        return skip
    t0, count = time.monotonic(), _n(20_000, scale)
    with _pipeline(workdir) as p:
        procs = p.start_producers(PRODUCERS, count, "--rate", 2000)
        kills = 0
        for fraction in (0.25, 0.6):
            p.wait_stream_messages(int(3 * PRODUCERS * count * fraction), 300)
            for h in p.hosts.hosts:
                p.shipper(h).stop(signal.SIGKILL)
                kills += 1
                p.start_shipper(h)
        return [_finish_row("ship_shipper_sigkill", p, procs, count, t0, {"kills": kills}, f"{kills} SIGKILLs")]


def node_kill(workdir: Path, scale: float) -> list[RunRecord]:
    """The stream's leader (one node of three) SIGKILLed mid-stream, brought back later."""
    if (skip := _skipped("ship_nats_node_kill")) is not None:
        return skip
    t0, count = time.monotonic(), _n(20_000, scale)
    with _pipeline(workdir) as p:
        procs = p.start_producers(PRODUCERS, count, "--rate", 2000)
        total = 3 * PRODUCERS * count
        p.wait_stream_messages(total // 4, 300)
        leader = p.nats.stream_leader()
        before = p.stream_state()["messages"]
        killed = time.monotonic()
        p.nats.kill_node(leader)
        p.wait_stream_messages(before + 3000, 300)
        resumed_s = time.monotonic() - killed
        p.wait_stream_messages(total // 2, 300)
        p.nats.restart_node(leader)
        figures = {"killed_node": p.nats.nodes[leader].name, "seconds_until_the_stream_grew_again": round(resumed_s, 2)}
        return [_finish_row("ship_nats_node_kill", p, procs, count, t0, figures,
                            f"leader {p.nats.nodes[leader].name} killed; stream grew again after {resumed_s:.1f} s")]  # fmt: skip


def nats_down(workdir: Path, scale: float, outage_s: float = 30.0) -> list[RunRecord]:
    """The whole three-node deployment down for 30 s mid-stream: shippers wait with flat memory,
    aggregators go on (the files are the buffer), and everything is shipped once NATS is back."""
    if (skip := _skipped("ship_nats_down_30s")) is not None:
        return skip
    t0, rate = time.monotonic(), 1000
    count = int(rate * (outage_s + 15))  # producers run through the outage and past it
    with _pipeline(workdir) as p:
        procs = p.start_producers(PRODUCERS, count, "--rate", rate)
        p.wait_stream_messages(3 * PRODUCERS * rate * 3, 300)
        pids = [p.shipper(h).pid for h in p.hosts.hosts]
        rss0 = [_rss(pid) for pid in pids]
        for i in range(len(p.nats.nodes)):
            p.nats.kill_node(i)
        down_at = time.monotonic()
        peak = list(rss0)
        while time.monotonic() - down_at < outage_s:  # the outage: sample the shippers' memory
            time.sleep(1.0)
            peak = [max(a, _rss(pid)) for a, pid in zip(peak, pids)]
        lag = sum(p.shipper_stats(h).get("lag_bytes", 0) for h in p.hosts.hosts)
        for i in range(len(p.nats.nodes)):
            p.nats.restart_node(i)
        back = time.monotonic()
        growth = max(b - a for a, b in zip(rss0, peak))
        row = _finish_row("ship_nats_down_30s", p, procs, count, t0,
                          {"outage_s": outage_s, "lag_bytes_at_end_of_outage": lag, "shipper_rss_growth_bytes_max": growth,
                           "catch_up_s": round(time.monotonic() - back, 1)},
                          f"{outage_s:.0f} s outage, {lag >> 20} MiB waiting in the files, shipper RSS +{growth >> 10} KiB at most")  # fmt: skip
        row.ok = row.ok and growth < 32 << 20
        return [row]


def rotation(workdir: Path, scale: float) -> list[RunRecord]:
    """Every host's output rotated twice mid-stream (mv, then SIGUSR1 to its aggregator)."""
    if (skip := _skipped("ship_rotation")) is not None:
        return skip
    t0, count = time.monotonic(), _n(20_000, scale)
    with _pipeline(workdir, nodes=1) as p:
        procs = p.start_producers(PRODUCERS, count, "--rate", 2000)
        for k, fraction in enumerate((0.3, 0.6), 1):
            for h in p.hosts.hosts:
                wait_until(lambda: p.output(h).exists() and p.output(h).stat().st_size >= 200 * PRODUCERS * count * fraction / k,
                           "output grown", 300, interval=0.05)  # fmt: skip
                p.rotate(h, f".{k}")
        row = _finish_row("ship_rotation", p, procs, count, t0, {}, "2 rotations per host")
        followed = sum(p.shipper_stats(h).get("rotations_followed", 0) for h in p.hosts.hosts)
        row.ok = row.ok and followed == 6 and row.figures["reordered"] == 0
        row.figures["rotations_followed"] = followed
        return [row]


def stream_full(workdir: Path, scale: float) -> list[RunRecord]:
    """LOGS limited to 2 MiB: publishers are refused, shippers wait; the operator raises the limit
    and everything arrives, nothing old dropped."""
    if (skip := _skipped("ship_stream_full")) is not None:
        return skip
    t0, count = time.monotonic(), _n(10_000, scale)
    with _pipeline(workdir, nodes=1, stream_max_bytes=2 << 20) as p:
        procs = p.start_producers(PRODUCERS, count, "--rate", 5000)
        wait_until(lambda: all(p.shipper_stats(h).get("publish_errors", 0) > 0 for h in p.hosts.hosts), "every shipper refused", 300)
        full = p.stream_state()
        for proc in procs:
            proc.wait(300)
        p.nats.update_max_bytes(1 << 30)
        row = _finish_row("ship_stream_full", p, procs, count, t0, {"stream_when_full": full},
                          f"refused at {full['messages']} messages / {full['bytes']} bytes")  # fmt: skip
        row.ok = row.ok and full["bytes"] <= 2 << 20
        return [row]


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


SCENARIOS = {
    "ship_shipper_sigkill": shipper_sigkill,
    "ship_nats_node_kill": node_kill,
    "ship_nats_down_30s": nats_down,
    "ship_rotation": rotation,
    "ship_stream_full": stream_full,
}
