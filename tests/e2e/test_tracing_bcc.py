"""The BCC tracer (benchmarks.tracing): exact window counts against a known workload.

Workload: the real aggregator and one real producer sending 23 x K messages of 200 bytes, one
send per message. The producer connects, then sleeps until its --start-at-ns; the window opens
while it sleeps and closes once the aggregator has written everything, so the producer's
interpreter start-up is outside it. The window counts only this run's processes (their pids), so
another logprod/logagg on the machine cannot change the numbers.
"""

from __future__ import annotations

import os

import pytest

from aggregator.transports import TRANSPORT_NAMES, get_transport
from aggregator.transports.datagram import DATAGRAMS_PER_CALL
from benchmarks.tracing import SyscallTracer, TracingUnavailable, available, summarize
from benchmarks.tracing.client import log2_buckets, percentile_from_buckets
from benchmarks.tracing.workload import run_workload

K = 4
N = 23 * K
SIZE = 200
# The syscall each producer makes once per message: Python's socket.send() is sendto(2) on
# x86_64; the fifo producer uses os.write().
# The producer sends one message per syscall: sendto on every socket, write on the FIFO (a file).
PRODUCER_SEND = {name: "sendto" for name in TRANSPORT_NAMES} | {"fifo": "write"}

_ok, _why = available()
needs_bpf = pytest.mark.skipif(not _ok, reason=f"BCC tracing cannot run here: {_why}")


@pytest.fixture(scope="module")
def tracer():
    ok, why = available()
    if not ok:
        pytest.skip(f"BCC tracing cannot run here: {why}")
    with SyscallTracer(comms=("logprod", "logagg")) as t:
        yield t


def _burst(tracer, transport: str, count: int) -> tuple[dict, dict]:
    run = run_workload(transport, count=count, size=SIZE, tracer=tracer, lead_s=2.0)
    assert run["producer_exit_statuses"] == [0]
    return run, run["trace"]


# -- exact counts ---------------------------------------------------------------------------------
@needs_bpf
def test_window_counts_every_producer_send_exactly_and_only_those(tracer):
    run, trace = _burst(tracer, "unixsock", N)
    assert run["messages_received"] == N
    prod = trace["comms"]["logprod"]
    send = prod["by_syscall"]["sendto"]
    assert send["count"] == N
    assert send["bytes"] == N * SIZE
    assert send["completed"] == N and send["errors"] == 0
    assert prod["data_syscalls"] == N, prod["by_syscall"]
    # start-up (imports, connect) happened before the window: no openat, no connect
    assert "openat" not in prod["by_syscall"] and "connect" not in prod["by_syscall"]
    agg = trace["comms"]["logagg"]
    assert agg["recv_bytes"] == N * SIZE
    assert "sendto" not in agg["by_syscall"]


@needs_bpf
def test_window_with_zero_messages_has_no_data_syscalls(tracer):
    run, trace = _burst(tracer, "unixsock", 0)
    assert run["messages_received"] == 0
    assert trace["comms"]["logprod"]["data_syscalls"] == 0
    # the aggregator's only read is the one that sees the producer's EOF
    assert trace["comms"]["logagg"]["recv_syscalls"] <= 1
    assert trace["comms"]["logagg"]["recv_bytes"] == 0


@needs_bpf
@pytest.mark.parametrize("transport", TRANSPORT_NAMES)
def test_each_transport_sends_one_syscall_per_message(tracer, transport):
    run, trace = _burst(tracer, transport, N)
    assert run["messages_received"] == N
    prod = trace["comms"]["logprod"]
    assert prod["by_syscall"][PRODUCER_SEND[transport]]["count"] == N
    assert prod["send_syscalls"] == N
    agg = trace["comms"]["logagg"]
    t = get_transport(transport)
    if t.kind == "datagram":
        # datagrams: one per recvfrom/recvmsg, or many per recvmmsg (its return value)
        single = sum(e["returned_data"] for n, e in agg["by_syscall"].items() if n in ("recvfrom", "recvmsg", "read"))
        received = single + agg["recv_mmsg_messages"]
        if t.connected:
            # A connected message socket (SOCK_SEQPACKET): once the producer has closed, recvmmsg
            # fills the rest of its batch with end-of-file entries and counts them in its return
            # value. The aggregator tells them from messages (mmsg.receive_messages); the tracer,
            # which sees only the return value, cannot. The read that meets the close may also
            # fall after the window. So: every message, and at most one batch more.
            assert N <= received <= N + DATAGRAMS_PER_CALL, agg["by_syscall"]
        else:
            assert received == N, agg["by_syscall"]
    else:
        assert agg["recv_bytes"] == N * SIZE, agg["by_syscall"]


@needs_bpf
def test_summary_gives_syscalls_per_message_and_send_latency(tracer):
    _, trace = _burst(tracer, "unixsock", N)
    summary = summarize(trace, {"logprod": N, "logagg": N})
    prod = summary["logprod"]
    assert prod["data_syscalls_per_message"] == 1.0
    assert prod["top"][0] == {"syscall": "sendto", "count": N, "per_message": 1.0}
    assert prod["bytes_per_data_syscall"] == SIZE
    lat = prod["latency_ns"]["sendto"]
    assert lat["count"] == N
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
    assert summary["logagg"]["syscalls_per_message"] > 0


@needs_bpf
def test_windows_are_independent(tracer):
    tracer.open_window()
    empty = tracer.close_window()
    # a window no process of ours ran in: only (possibly) other logprod/logagg processes, never ours
    _, trace = _burst(tracer, "unixsock", N)
    assert trace["comms"]["logprod"]["by_syscall"]["sendto"]["count"] == N
    assert set(empty["comms"]) == {"logprod", "logagg"}


# -- no root: a reason, not a crash -----------------------------------------------------------------
def test_available_says_why_without_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    ok, why = available()
    assert not ok
    assert "not root" in why
    with pytest.raises(TracingUnavailable, match="not root"):
        SyscallTracer().start()


# -- percentiles from log2 buckets (pure functions) -------------------------------------------------
def test_log2_slots_map_to_bccs_bucket_bounds():
    assert log2_buckets({"0": 1, "1": 2, "11": 3}) == [[0, 0, 1], [1, 1, 2], [1024, 2047, 3]]


def test_percentiles_interpolate_inside_the_bucket_holding_the_rank():
    buckets = [[1024, 2047, 90], [2048, 4095, 9], [65536, 131071, 1]]
    assert percentile_from_buckets(buckets, 50) == pytest.approx(1024 + 1024 * 50 / 90)
    assert 2048 <= percentile_from_buckets(buckets, 95) < 4096
    assert 2048 <= percentile_from_buckets(buckets, 99) <= 4096
    assert percentile_from_buckets(buckets, 100) == pytest.approx(131072)
    assert percentile_from_buckets([], 50) is None
