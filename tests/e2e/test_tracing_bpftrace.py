"""The bpftrace scripts in bpftrace/: each parses, attaches, and sees a known workload.

The workload is real: the aggregator and one producer sending 23 x K messages over unixsock (one
sendto each), then a udp burst into a deliberately tiny receive buffer (for datagram_drops.bt).
All scripts run at once around it (bpftrace start-up is seconds per script), as root. The scripts
count every process with the comm they filter on, so counts are "at least": another logprod on
the machine can only add to them.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.tracing.client import bpf_reason
from benchmarks.tracing.workload import run_workload

ROOT = Path(__file__).resolve().parents[2]
BT_DIR = ROOT / "bpftrace"
SCRIPTS = sorted(p.stem for p in BT_DIR.glob("*.bt"))
REQUIRED = {
    "producer_syscalls",
    "aggregator_syscalls",
    "syscall_latency",
    "aggregator_sched_latency",
    "transport_io",
    "datagram_drops",
}
K = 3
N = 23 * K  # messages in the unixsock burst: one sendto each
SIZE = 200
UDP_N = 23 * 50  # into a 4 KB receive buffer: most are dropped


def _skip_reason() -> str | None:
    reason = bpf_reason()
    if reason:
        return reason
    if shutil.which("bpftrace") is None:
        return "bpftrace is not installed (make setup-tracing)"
    return None


needs_bpf = pytest.mark.skipif(_skip_reason() is not None, reason=f"bpftrace cannot run here: {_skip_reason()}")


def test_every_required_script_exists():
    assert REQUIRED <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_has_the_bpftrace_tools_header_and_a_real_example(name):
    text = (BT_DIR / f"{name}.bt").read_text()
    head = text.split("*/", 1)[0]
    assert text.startswith("#!/usr/bin/env bpftrace\n")
    assert f" * {name}.bt\t" in head, "the header starts with the tool's name and what it does"
    assert f"USAGE: sudo bpftrace bpftrace/{name}.bt" in head
    assert "Overhead" in head
    assert "kprobe" not in text.split("*/", 1)[1], "tracepoints only: this kernel has no kprobes"
    example = BT_DIR / f"{name}_example.txt"
    assert example.is_file(), f"{example.name} is missing"
    assert "Attaching" in example.read_text(), "the example holds captured output"


@needs_bpf
@pytest.mark.parametrize("name", SCRIPTS)
def test_script_parses(name):
    run = subprocess.run(["bpftrace", "-d", str(BT_DIR / f"{name}.bt")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]


# -- output parsing ---------------------------------------------------------------------------------
_SCALAR = re.compile(r"^@(\w+)(?:\[(.*)\])?: (-?\d+)$", re.M)
_HIST_HEAD = re.compile(r"^@(\w+)(?:\[(.*)\])?: $")
_HIST_ROW = re.compile(r"^\[[^\]]*[\])]\s+(\d+) \|")


def scalars(text: str) -> dict[tuple[str, str], int]:
    return {(m[1], m[2] or ""): int(m[3]) for m in _SCALAR.finditer(text)}


def histogram_totals(text: str) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = {}
    current = None
    for line in text.splitlines():
        head = _HIST_HEAD.match(line)
        if head:
            current = (head[1], head[2] or "")
            totals[current] = 0
            continue
        row = _HIST_ROW.match(line)
        if row and current is not None:
            totals[current] += int(row[1])
        elif not line.strip():
            current = None
    return totals


def _wait_for_begin(proc: subprocess.Popen, deadline: float) -> str:
    """Read stdout until the BEGIN message ("... Hit Ctrl-C to end."): the probes are attached.

    Raw reads (no Python buffering), so select() never waits on bytes already read."""
    seen = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline and b"Hit Ctrl-C" not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        seen += chunk
    if b"Hit Ctrl-C" in seen:
        return seen.decode()
    proc.kill()
    raise AssertionError(f"bpftrace did not attach: {seen!r} {proc.stderr.read()[-2000:]!r}")


@pytest.fixture(scope="module")
def traced():
    """Every script's output around one unixsock burst and one lossy udp burst."""
    reason = _skip_reason()
    if reason:
        pytest.skip(f"bpftrace cannot run here: {reason}")
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name in SCRIPTS:
            procs[name] = subprocess.Popen(
                ["bpftrace", "-B", "none", str(BT_DIR / f"{name}.bt")],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
            )
        deadline = time.monotonic() + 60
        heads = {name: _wait_for_begin(p, deadline) for name, p in procs.items()}
        burst = run_workload("unixsock", count=N, size=SIZE, lead_s=2.0, only_these_pids=False)
        udp = run_workload("udp", count=UDP_N, size=SIZE, lead_s=2.0, aggregator_args=["--rcvbuf", "4096"])
        outputs = {}
        for name, p in procs.items():
            p.send_signal(signal.SIGINT)
        for name, p in procs.items():
            out, err = p.communicate(timeout=30)
            assert p.returncode == 0, f"{name}: {err.decode()[-2000:]}"
            outputs[name] = heads[name] + out.decode()
        yield {"outputs": outputs, "unixsock": burst, "udp": udp}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


@needs_bpf
def test_the_known_workload_ran(traced):
    assert traced["unixsock"]["producer_exit_statuses"] == [0]
    assert traced["unixsock"]["messages_received"] == N


@needs_bpf
def test_producer_syscalls_counts_every_send_of_the_burst_for_logprod(traced):
    counts = scalars(traced["outputs"]["producer_syscalls"])
    assert counts.get(("syscalls", "sendto"), 0) >= N
    assert counts[("total", "")] >= N


@needs_bpf
def test_aggregator_syscalls_sees_the_aggregator_read_and_not_the_producer_send(traced):
    counts = scalars(traced["outputs"]["aggregator_syscalls"])
    assert counts.get(("syscalls", "recvfrom"), 0) >= 1
    assert counts.get(("syscalls", "epoll_wait"), 0) >= 1
    assert counts.get(("syscalls", "sendto"), 0) < N, "the producer's sends are not the aggregator's"


@needs_bpf
def test_syscall_latency_has_a_histogram_entry_for_every_producer_send(traced):
    out = traced["outputs"]["syscall_latency"]
    calls = scalars(out)
    hists = histogram_totals(out)
    assert calls.get(("calls", "logprod, sendto"), 0) >= N
    assert hists.get(("ns", "logprod, sendto"), 0) >= N
    assert ("calls", "logagg, sendto") not in calls
    assert hists.get(("ns", "logagg, epoll_wait"), 0) >= 1


@needs_bpf
def test_aggregator_sched_latency_sees_the_aggregator_woken_and_run(traced):
    out = traced["outputs"]["aggregator_sched_latency"]
    wakeups = scalars(out).get(("wakeups", ""), 0)
    assert wakeups >= 1
    assert histogram_totals(out).get(("wakeup_to_run_ns", ""), 0) == wakeups


@needs_bpf
def test_transport_io_counts_the_producers_sends_and_their_bytes(traced):
    counts = scalars(traced["outputs"]["transport_io"])
    assert counts.get(("calls", "logprod, sendto"), 0) >= N
    assert counts.get(("bytes", "logprod, sendto"), 0) >= N * SIZE
    # the stream aggregator reads the burst in far fewer calls than messages
    assert 1 <= counts.get(("calls", "logagg, recvfrom"), 0)
    assert counts.get(("bytes", "logagg, recvfrom"), 0) >= N * SIZE


@needs_bpf
def test_datagram_drops_counts_each_udp_message_the_aggregator_lost(traced):
    udp = traced["udp"]
    port = udp["aggregator_stats"]["address"].rsplit(":", 1)[1]
    assert udp["producer_exit_statuses"] == [0], "udp sends succeed even when the receiver drops"
    lost = UDP_N - udp["messages_received"]
    assert lost > 0, "a 4 KB receive buffer should overflow in a fast burst"
    assert scalars(traced["outputs"]["datagram_drops"]).get(("udp_rcvbuf_drops", port), 0) == lost


@pytest.mark.parametrize("name", ["producer_syscalls", "aggregator_syscalls"])
def test_embedded_syscall_name_table_matches_the_shared_one(name):
    from benchmarks.tracing.syscall_table import bpftrace_table

    text = (BT_DIR / f"{name}.bt").read_text()
    embedded = "\n".join(line for line in text.splitlines() if line.startswith("\t@name["))
    assert embedded == bpftrace_table()
