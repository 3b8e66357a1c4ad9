"""--workers N: several receiving processes behind one address (aggregator/workers.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import psutil
import pytest

from aggregator.counters import merge_counters
from aggregator.transports import TRANSPORT_NAMES, get_transport, transport_names
from aggregator.transports.base import SingleReader
from benchmarks.faults.checks import (
    assert_address_released,
    assert_sent_messages_written_once,
    stop_mid_stream,
)
from benchmarks.processes import (
    AGGREGATOR,
    jsonl,
    run_cli,
    seqs_by_producer,
    wait_until,
)
from benchmarks.run.measure import process_tree_stats

# One connection per client, a byte stream on it: a client's close ends its partial line.
CONNECTION_STREAMS = transport_names(kind="stream", connected=True)
ONE_READER = [t for t in TRANSPORT_NAMES if isinstance(get_transport(t).sharing, SingleReader)]


def worker_pids(agg) -> list[int]:
    return [c.pid for c in psutil.Process(agg.pid).children()]


def holds_open(pid: int, path) -> bool:
    fd_dir = f"/proc/{pid}/fd"
    links = set()
    for fd in os.listdir(fd_dir):
        try:
            links.add(os.readlink(f"{fd_dir}/{fd}"))
        except OSError:
            pass
    return str(path) in links


@pytest.mark.timeout(90)
@pytest.mark.parametrize("transport", transport_names(connected=True))
def test_connections_are_handed_to_the_workers_in_turn_and_every_line_arrives_once_in_order(lab, transport):
    agg = lab.aggregator(transport, "--workers", "2")
    assert len(worker_pids(agg)) == 2
    producers = lab.run_producers(transport, agg.address, 4, 3000, "--batch", "16")
    assert all(p.returncode() == 0 for p in producers)
    agg.wait_lines(12_000)
    assert agg.stop() == 0, agg.stderr_text()
    by_producer = seqs_by_producer(agg.records())
    # A connection belongs to one worker: each producer's lines stay in order.
    assert by_producer == {f"p{i}": list(range(3000)) for i in range(4)}
    stats = agg.stats()
    assert stats["workers"] == 2
    assert (stats["messages_written"], stats["connections_opened"], stats["connections_closed"]) == (12_000, 4, 4)
    assert [w["connections_opened"] for w in stats["per_worker"]] == [2, 2]  # round robin
    assert [w["messages_written"] for w in stats["per_worker"]] == [6000, 6000]
    assert_address_released(transport, agg.address)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("transport", ["udp"])
def test_at_a_moderate_rate_one_worker_reads_the_shared_datagram_socket_in_order(lab, transport):
    agg = lab.aggregator(transport, "--workers", "2")
    producers = lab.run_producers(transport, agg.address, 2, 500, "--rate", "250")
    assert all(p.returncode() == 0 for p in producers)
    agg.wait_lines(1000)
    assert agg.stop() == 0, agg.stderr_text()
    # 500 msg/s never leaves a backlog of 192 datagrams: the helper is never called in.
    assert seqs_by_producer(agg.records()) == {f"p{i}": list(range(500)) for i in range(2)}
    stats = agg.stats()
    assert stats["workers"] == 2 and stats["kernel_drops"] == 0
    assert [w["messages_written"] for w in stats["per_worker"]] == [1000, 0]
    assert_address_released(transport, agg.address)


@pytest.mark.timeout(90)
def test_a_datagram_flood_calls_the_helper_in_and_every_datagram_is_written_or_counted_dropped(lab):
    agg = lab.aggregator("udp", "--workers", "2", "--stats-interval", "0.2")
    host, _, port = agg.address.rpartition(":")
    n = 100_000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, int(port)))
        for i in range(n):  # as fast as Python can: far more than one reader takes per turn
            s.send(b'{"producer":"flood","seq":%d}' % i)
    wait_until(lambda: sum(w["messages_written"] for w in _stats_or_empty(agg)) + _drops(agg) >= n, "the flood read")
    assert agg.stop() == 0, agg.stderr_text()
    stats = agg.stats()
    primary, helper = (w["messages_written"] for w in stats["per_worker"])
    assert helper > 0, f"the helper never read (primary {primary})"
    seqs = [r["seq"] for r in agg.records()]
    assert len(seqs) == len(set(seqs)) == stats["messages_written"]
    assert stats["messages_written"] + stats["kernel_drops"] == n  # nothing unaccounted for


def _stats_or_empty(agg) -> list[dict]:
    try:
        return agg.stats()["per_worker"]
    except (FileNotFoundError, KeyError, ValueError):
        return []


def _drops(agg) -> int:
    try:
        return agg.stats()["kernel_drops"] or 0
    except (FileNotFoundError, KeyError, ValueError):
        return 0


@pytest.mark.timeout(120)
def test_sigterm_mid_stream_with_workers_loses_nothing_the_kernel_accepted(lab):
    count = 50_000
    agg, producers = stop_mid_stream(lab, "unixsock", count, [], ["--workers", "2"])
    assert any(p.summary()["sent"] < count for p in producers), "nobody was stopped mid-stream"
    written = assert_sent_messages_written_once(agg, producers)
    assert agg.stats()["messages_written"] == written
    assert_address_released("unixsock", agg.address)


@pytest.mark.timeout(90)
def test_sigusr1_gives_every_worker_the_new_output_opened_and_locked_by_the_supervisor(lab):
    agg = lab.aggregator("unixsock", "--workers", "2")
    before = lab.run_producers("unixsock", agg.address, 2, 200, prefix="before")  # one per worker
    assert all(p.returncode() == 0 for p in before)
    agg.wait_lines(400)
    rotated = agg.output.with_name(agg.output.name + ".1")
    os.rename(agg.output, rotated)
    agg.send(signal.SIGUSR1)
    wait_until(agg.output.exists, f"{agg.output} recreated after SIGUSR1")
    # The supervisor opens (and locks) the new files and hands them to every worker.
    wait_until(lambda: all(holds_open(pid, agg.output) for pid in [agg.pid, *worker_pids(agg)]), "every worker switched")
    after = lab.run_producers("unixsock", agg.address, 2, 300, prefix="after")  # again one per worker
    assert all(p.returncode() == 0 for p in after)
    assert agg.stop() == 0, agg.stderr_text()
    assert {r["producer"] for r in jsonl(rotated)} == {"before0", "before1"}
    new = jsonl(agg.output)
    assert {r["producer"] for r in new} == {"after0", "after1"} and len(new) == 600
    assert [w["output_reopens"] for w in agg.stats()["per_worker"]] == [1, 1]


@pytest.mark.timeout(60)
def test_a_worker_that_dies_stops_the_aggregator_with_exit_1_and_says_which(lab):
    agg = lab.aggregator("tcp", "--workers", "2")
    victim = worker_pids(agg)[1]
    os.kill(victim, signal.SIGKILL)
    rc = agg.wait(30)
    assert rc == 1
    assert f"worker 1 (pid {victim}) killed by signal 9" in agg.stderr_text()
    assert_address_released("tcp", agg.address)


@pytest.mark.timeout(60)
def test_workers_drain_and_exit_when_the_supervisor_is_killed(lab):
    agg = lab.aggregator("unixsock", "--workers", "2")
    workers = worker_pids(agg)
    client = lab.client("unixsock", agg.address)
    client.send(b'{"seq":0}\n')
    agg.wait_lines(1)
    agg.send(signal.SIGKILL)
    agg.wait(10)
    client.close()  # the worker holding it drains it and exits: no orphan keeps serving
    wait_until(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in workers), "workers gone")
    assert [r["seq"] for r in agg.records()] == [0]


@pytest.mark.timeout(60)
def test_duration_stops_every_worker(lab):
    agg = lab.aggregator("udp", "--workers", "2", "--duration", "1")
    assert agg.wait(30) == 0, agg.stderr_text()
    assert agg.stats()["workers"] == 2


@pytest.mark.parametrize("transport", ONE_READER)
def test_one_reader_transports_refuse_more_than_one_worker_and_say_why(lab, transport):
    why = get_transport(transport).sharing.reason
    r = run_cli(AGGREGATOR, transport, "--address", str(lab.sockdir / f"w.{transport}"), "--workers", "2")
    assert r.returncode == 2
    assert f"{transport} has one reader only" in r.stderr and why in r.stderr


@pytest.mark.timeout(60)
def test_workers_0_means_one_per_cpu_and_one_on_a_one_reader_transport(lab):
    agg = lab.aggregator("udp", "--workers", "0")
    assert len(worker_pids(agg)) == len(os.sched_getaffinity(0)) or len(os.sched_getaffinity(0)) == 1
    assert agg.stop() == 0
    for transport in ONE_READER:
        single = lab.aggregator(transport, "--workers", "0")
        assert worker_pids(single) == []  # the single-process aggregator itself
        assert json.loads(single.ready_file.read_text())["workers"] == 1
        assert single.stop() == 0


def test_merged_counters_sum_per_worker_figures_and_keep_shared_ones():
    a = {"transport": "udp", "messages_written": 3, "rejected": {"invalid_json": 1}, "started_unix_ns": 10,
         "stopped_unix_ns": 50, "kernel_drops": 7, "effective_rcvbuf": 4096, "connections_open_peak": 2}
    b = {"transport": "udp", "messages_written": 4, "rejected": {"invalid_json": 2, "not_an_object": 1},
         "started_unix_ns": 12, "stopped_unix_ns": 40, "kernel_drops": 7, "effective_rcvbuf": 4096, "connections_open_peak": 1}
    m = merge_counters([a, b])
    assert m.messages_written == 7
    assert m.rejected == {"invalid_json": 3, "not_an_object": 1}
    assert (m.started_unix_ns, m.stopped_unix_ns) == (10, 50)
    assert (m.kernel_drops, m.effective_rcvbuf) == (7, 4096)  # one shared socket: not summed
    assert m.connections_open_peak == 3


def test_the_benchmark_counts_cpu_of_child_processes():
    # loglab's workers are children of the process the harness started: their CPU is its cost.
    child_burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\ntime.sleep(60)"
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess,sys,time\np=subprocess.Popen([sys.executable,'-c',{child_burn!r}])\ntime.sleep(60)"])
    try:
        proc = psutil.Process(parent.pid)
        before = process_tree_stats(proc)
        wait_until(lambda: proc.children() and sum(c.cpu_times().user + c.cpu_times().system for c in proc.children()) >= 0.3, "the child burned its CPU")
        after = process_tree_stats(proc)
        assert after.cpu_s - before.cpu_s >= 0.25
    finally:
        for c in psutil.Process(parent.pid).children(recursive=True):
            c.kill()
        parent.kill()
        parent.wait()


def test_unixgram_reports_its_kernel_queue_limit_and_the_loop_does_not_pause_on_it(tmp_path):
    # net.unix.max_dgram_qlen datagrams fill a unixgram queue; a coalescing pause longer than that
    # blocks every sender (measured: p99 55-115 ms at 40k msg/s with qlen 10), so none is taken.
    from aggregator.server import _small_queue
    from aggregator.transports import TRANSPORTS, ListenOptions

    qlen = int(open("/proc/sys/net/unix/max_dgram_qlen").read())
    binding = TRANSPORTS["unixgram"].listen(str(tmp_path / "q.sock"), ListenOptions())
    try:
        (endpoint,) = binding.endpoints
        assert endpoint.queue_limit == qlen
        assert _small_queue(endpoint) == (qlen < 32)
    finally:
        binding.endpoints[0].sock.close()
        binding.cleanup()
    udp = TRANSPORTS["udp"].listen("127.0.0.1:0", ListenOptions())
    try:
        assert udp.endpoints[0].queue_limit is None and not _small_queue(udp.endpoints[0])
    finally:
        udp.endpoints[0].sock.close()
