"""The bpftrace tools in bpftrace/: each parses, attaches, and sees a known workload, exactly.

The workload is real: the aggregator and one producer sending 23 x K messages over unixsock (one
sendto each), then a udp burst into a deliberately tiny receive buffer (for datagram_drops.bt).
All tools run at once around it (bpftrace start-up is seconds per tool), as root, each given
this test process's pid as its PID filter: the workload's aggregators and producers are this
process's children, so the counts are exact even while other logprod/logagg processes run on
the machine (other tests, other worktrees).

A decoy burst with the same process names runs inside the same window, outside this process's
tree (``setsid --fork``): the filtered tools must leave it out, and syscount.bt without a PID
(what the old producer_syscalls.bt and aggregator_syscalls.bt did) must count it.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.tracing.client import bpf_reason
from benchmarks.tracing.workload import run_workload

ROOT = Path(__file__).resolve().parents[2]
BT_DIR = ROOT / "bpftrace"
SCRIPTS = sorted(p.stem for p in BT_DIR.glob("*.bt"))
REQUIRED = {"syscount", "syscall_latency", "aggregator_sched_latency", "transport_io", "datagram_drops"}
# The documented names of the one syscall counter: a wrapper each, and its process name.
WRAPPERS = {"producer_syscalls": "logprod", "aggregator_syscalls": "logagg"}
# Tools whose last parameter is PID (datagram_drops says in its header why it has none).
PID_TOOLS = {"syscount", "syscall_latency", "aggregator_sched_latency", "transport_io"}
K = 3
N = 23 * K  # messages in the unixsock burst: one sendto each
SIZE = 200
UDP_N = 23 * 50  # into a 4 KB receive buffer: most are dropped
DECOY_N = 23 * 5  # the decoy's unixsock burst, outside this process's tree
PRODUCERS = 2  # one in each of this test's bursts
AGGREGATORS = 2


def _skip_reason() -> str | None:
    reason = bpf_reason()
    if reason:
        return reason
    if shutil.which("bpftrace") is None:
        return "bpftrace is not installed (make setup-tracing)"
    return None


needs_bpf = pytest.mark.skipif(_skip_reason() is not None, reason=f"bpftrace cannot run here: {_skip_reason()}")


def test_every_required_tool_and_documented_name_exists():
    assert REQUIRED <= set(SCRIPTS)
    for name in WRAPPERS:
        assert os.access(BT_DIR / f"{name}.sh", os.X_OK), f"{name}.sh is missing or not executable"


@pytest.mark.parametrize("name", SCRIPTS)
def test_tool_has_the_bpftrace_tools_header_and_a_real_example(name):
    text = (BT_DIR / f"{name}.bt").read_text()
    head = text.split("*/", 1)[0]
    assert text.startswith("#!/usr/bin/env bpftrace\n")
    assert f" * {name}.bt\t" in head, "the header starts with the tool's name and what it does"
    assert f"USAGE: sudo bpftrace bpftrace/{name}.bt" in head
    assert "Overhead" in head
    assert re.search(r"Attach time: [^\n]*\d", head), "the header states the measured attach time"
    assert "RLIMIT_MEMLOCK" in head, "the header explains bpftrace 0.17's RLIMIT_MEMLOCK message"
    assert "kprobe" not in text.split("*/", 1)[1], "tracepoints only: this kernel has no kprobes"
    example = BT_DIR / f"{name}_example.txt"
    assert example.is_file(), f"{example.name} is missing"
    assert "Attaching" in example.read_text(), "the example holds captured output"


@pytest.mark.parametrize("name", SCRIPTS)
def test_pid_is_the_last_parameter_of_every_tool_that_filters_on_a_process_name(name):
    head = (BT_DIR / f"{name}.bt").read_text().split("*/", 1)[0]
    usage = re.search(r"USAGE: sudo bpftrace bpftrace/\S+\.bt([^\n(]*)", head)[1].split()
    if name in PID_TOOLS:
        assert usage[-1] == "[PID]", usage
        assert " * PID\t0 or left out: every " in head, "the header says what PID selects"
    else:
        assert "[PID]" not in usage
        assert "No PID parameter" in head, "the header says why there is no PID filter"


@pytest.mark.parametrize("name, comm", WRAPPERS.items())
def test_documented_name_is_a_thin_wrapper_of_syscount_with_its_example(name, comm):
    text = (BT_DIR / f"{name}.sh").read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert f"# {name}.sh\t" in text
    assert f"# USAGE: sudo bpftrace/{name}.sh [PID]" in text
    assert f'\nexec bpftrace "$(dirname "$0")/syscount.bt" {comm} "$@"\n' in text
    example = (BT_DIR / f"{name}_example.txt").read_text()
    assert f"# sudo bpftrace/{name}.sh " in example, "captured through the wrapper"
    assert f'Counting syscalls of comm "{comm}" in pid ' in example, "captured with the PID filter"


def test_bpftrace_readme_names_every_tool_and_wrapper():
    readme = (BT_DIR / "README.md").read_text()
    for name in SCRIPTS:
        assert f"`{name}.bt" in readme
    for name in WRAPPERS:
        assert f"`{name}.sh" in readme


def _tool_args(name: str) -> list[str]:
    return ["logprod"] if name == "syscount" else []


@needs_bpf
@pytest.mark.parametrize("name", SCRIPTS)
def test_tool_parses(name):
    run = subprocess.run(
        ["bpftrace", "-d", str(BT_DIR / f"{name}.bt"), *_tool_args(name)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr[-2000:]


# -- running the tools ------------------------------------------------------------------------------
# Each runs with "-c cat" and a pipe as stdin: closing the pipe ends cat, and bpftrace stops when
# its -c command ends, then prints. A SIGINT would do the same, but bpftrace 0.17 loses one that
# arrives while it is not waiting in epoll_wait() (it then polls forever); closing a pipe cannot
# be lost.
_CAT = shutil.which("cat") or "/bin/cat"


def _start(argv: list[str]) -> subprocess.Popen:
    pipe = subprocess.PIPE
    return subprocess.Popen([*argv, "-B", "none", "-c", _CAT], stdin=pipe, stdout=pipe, stderr=pipe, bufsize=0)


def _stop(proc: subprocess.Popen, head: str, name: str) -> str:
    out, err = proc.communicate(timeout=60)  # closes stdin first: cat ends, then bpftrace
    assert proc.returncode == 0, f"{name}: {err.decode()[-2000:]}"
    return head + out.decode()


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

    bpftrace prints BEGIN's output only once every probe is attached. Raw reads (no Python
    buffering), so select() never waits on bytes already read."""
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


def _decoy_burst() -> dict:
    """A burst by another aggregator and producer with the same names, outside this process's tree.

    setsid --fork returns at once and leaves the workload to init: none of its processes has this
    test process as an ancestor. Its JSON summary arrives when it is done (the pipe's EOF)."""
    run = subprocess.run(
        ["setsid", "--fork", sys.executable, "-m", "benchmarks.tracing.workload", "unixsock",
         "--count", str(DECOY_N), "--size", str(SIZE)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120,
    )  # fmt: skip
    assert run.stdout, f"the decoy burst printed nothing: {run.stderr.decode()[-2000:]}"
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def traced():
    """Every tool's output (filtered on this process's tree) around this test's unixsock and lossy
    udp bursts and a decoy burst; plus syscount.bt without a PID for both names."""
    reason = _skip_reason()
    if reason:
        pytest.skip(f"bpftrace cannot run here: {reason}")
    me = str(os.getpid())
    commands = {name: ["bpftrace", str(BT_DIR / f"{name}.bt"), me] for name in PID_TOOLS - {"syscount"}}
    commands["datagram_drops"] = ["bpftrace", str(BT_DIR / "datagram_drops.bt")]
    for name, comm in WRAPPERS.items():  # syscount.bt through its documented names, and without a PID
        commands[name] = [str(BT_DIR / f"{name}.sh"), me]
        commands[f"syscount {comm} (no PID)"] = ["bpftrace", str(BT_DIR / "syscount.bt"), comm]
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, argv in commands.items():
            procs[name] = _start(argv)
        deadline = time.monotonic() + 120
        heads = {name: _wait_for_begin(p, deadline) for name, p in procs.items()}
        decoy = _decoy_burst()
        burst = run_workload("unixsock", count=N, size=SIZE, lead_s=2.0)
        udp = run_workload("udp", count=UDP_N, size=SIZE, lead_s=2.0, aggregator_args=["--rcvbuf", "4096"])
        outputs = {name: _stop(p, heads[name], name) for name, p in procs.items()}
        yield {"outputs": outputs, "unixsock": burst, "udp": udp, "decoy": decoy}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


@needs_bpf
def test_the_known_workload_and_the_decoy_ran(traced):
    assert traced["unixsock"]["producer_exit_statuses"] == [0]
    assert traced["unixsock"]["messages_received"] == N
    assert traced["decoy"]["producer_exit_statuses"] == [0]
    assert traced["decoy"]["messages_received"] == DECOY_N


@needs_bpf
def test_producer_syscalls_counts_exactly_this_tests_producers(traced):
    out = traced["outputs"]["producer_syscalls"]
    assert f'Counting syscalls of comm "logprod" in pid {os.getpid()} and below' in out
    counts = scalars(out)
    # what the old producer_syscalls.bt counted for these bursts on a quiet machine
    assert counts[("syscalls", "sendto")] == N + UDP_N, "one sendto per message, the decoy's left out"
    for per_process in ("socket", "connect", "exit_group"):
        assert counts[("syscalls", per_process)] == PRODUCERS, per_process
    assert counts[("total", "")] == sum(v for (m, _), v in counts.items() if m in ("syscalls", "syscalls_by_id"))


@needs_bpf
def test_aggregator_syscalls_counts_this_tests_aggregators_and_not_the_producer_send(traced):
    out = traced["outputs"]["aggregator_syscalls"]
    assert f'Counting syscalls of comm "logagg" in pid {os.getpid()} and below' in out
    counts = scalars(out)
    assert counts.get(("syscalls", "recvfrom"), 0) >= 1
    assert counts.get(("syscalls", "epoll_wait"), 0) >= 1
    assert counts.get(("syscalls", "sendto"), 0) < N, "the producer's sends are not the aggregator's"
    assert counts[("syscalls", "bind")] == AGGREGATORS, "one address each: the decoy's is left out"
    assert counts[("syscalls", "listen")] == 1, "the unixsock aggregator's, not the decoy's"


@needs_bpf
@pytest.mark.parametrize("name, comm", WRAPPERS.items())
def test_pid_filter_leaves_out_a_process_of_the_same_name_that_syscount_without_pid_counts(traced, name, comm):
    filtered = scalars(traced["outputs"][name])
    unfiltered = scalars(traced["outputs"][f"syscount {comm} (no PID)"])
    assert f'Counting syscalls of comm "{comm}"... Hit Ctrl-C' in traced["outputs"][f"syscount {comm} (no PID)"]
    # without a PID it counts what the old tools counted: every process of that name
    for key, value in filtered.items():
        assert unfiltered.get(key, 0) >= value, key
    if comm == "logprod":
        assert unfiltered[("syscalls", "sendto")] >= N + UDP_N + DECOY_N, "the decoy producer is counted"
        assert filtered[("syscalls", "sendto")] == N + UDP_N
    else:
        assert unfiltered[("syscalls", "bind")] >= AGGREGATORS + 1, "the decoy aggregator is counted"
        assert filtered[("syscalls", "bind")] == AGGREGATORS


@needs_bpf
def test_syscall_latency_has_a_histogram_entry_for_every_producer_send(traced):
    out = traced["outputs"]["syscall_latency"]
    calls = scalars(out)
    hists = histogram_totals(out)
    assert calls[("calls", "logprod, sendto")] == N + UDP_N
    assert hists[("ns", "logprod, sendto")] == N + UDP_N
    assert ("calls", "logagg, sendto") not in calls
    assert hists.get(("ns", "logagg, epoll_wait"), 0) >= 1


@needs_bpf
def test_aggregator_sched_latency_sees_the_aggregator_woken_and_run(traced):
    out = traced["outputs"]["aggregator_sched_latency"]
    assert f'"logagg" in pid {os.getpid()} and below' in out
    wakeups = scalars(out).get(("wakeups", ""), 0)
    assert wakeups >= 1
    assert histogram_totals(out).get(("wakeup_to_run_ns", ""), 0) == wakeups


@needs_bpf
def test_transport_io_counts_the_producers_sends_and_their_bytes(traced):
    counts = scalars(traced["outputs"]["transport_io"])
    assert counts[("calls", "logprod, sendto")] == N + UDP_N
    assert counts[("bytes", "logprod, sendto")] == (N + UDP_N) * SIZE
    # the stream aggregator reads the burst in far fewer calls than messages; the decoy
    # aggregator's DECOY_N messages are not among its bytes
    assert 1 <= counts.get(("calls", "logagg, recvfrom"), 0)
    assert N * SIZE <= counts.get(("bytes", "logagg, recvfrom"), 0) < (N + DECOY_N) * SIZE
    # the udp aggregator takes its datagrams with recvmmsg: every one received, counted
    assert counts[("messages", "logagg, recvmmsg")] == traced["udp"]["messages_received"]


@needs_bpf
def test_datagram_drops_counts_each_udp_message_the_aggregator_lost(traced):
    udp = traced["udp"]
    port = udp["aggregator_stats"]["address"].rsplit(":", 1)[1]
    assert udp["producer_exit_statuses"] == [0], "udp sends succeed even when the receiver drops"
    lost = UDP_N - udp["messages_received"]
    assert lost > 0, "a 4 KB receive buffer should overflow in a fast burst"
    assert scalars(traced["outputs"]["datagram_drops"]).get(("udp_rcvbuf_drops", port), 0) == lost


@needs_bpf
def test_syscount_without_a_process_name_prints_its_usage():
    run = subprocess.run(
        ["bpftrace", "-B", "none", str(BT_DIR / "syscount.bt")], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "USAGE: bpftrace syscount.bt COMM [PID]" in run.stdout


def test_embedded_syscall_name_table_matches_the_shared_one():
    from benchmarks.tracing.syscall_table import bpftrace_table

    text = (BT_DIR / "syscount.bt").read_text()
    embedded = "\n".join(line for line in text.splitlines() if line.startswith("\t@name["))
    assert embedded == bpftrace_table()
