"""--threads N: one process, N event loops, one writer (aggregator/threads.py)."""

from __future__ import annotations

import json
import os
import signal
import socket

import pytest

from aggregator import hotpath
from aggregator.transports import get_transport, transport_names
from aggregator.transports.base import SingleReader
from benchmarks.faults.checks import assert_address_released
from benchmarks.processes import AGGREGATOR, jsonl, run_cli, seqs_by_producer, wait_until

ONE_READER = [t for t in transport_names() if isinstance(get_transport(t).sharing, SingleReader)]
needs_native = pytest.mark.skipif(hotpath.IMPLEMENTATION != "native", reason="--threads needs the native hot path (make setup builds it)")


def whole_json_lines(path) -> list[dict]:
    """Every line of ``path`` parsed on its own: a torn or interleaved line fails here."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.split(b"\n")[:-1]]


def send_lines(client, client_id: int, first: int, last: int, extra: bytes = b"") -> None:
    """Lines ``first``..``last - 1`` of ``client_id`` (about 1000 bytes each), then ``extra``, in one
    write: a hundred are more than one 64 KiB read, and fit the socket's buffers while the reader
    is stopped."""
    pad = b"x" * 950
    messages = [b'{"producer":"c%d","seq":%d,"pad":"%s"}\n' % (client_id, i, pad) for i in range(first, last)]
    client.send(b"".join(messages) + extra)


@needs_native
@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", transport_names(connected=True))
def test_many_connections_flat_out_with_threads_every_line_whole_once_and_in_order(lab, transport):
    # Flat out, the main loop usually falls behind and moves connections (not asserted: that
    # depends on the machine; the test below makes it happen). seqpacket has no byte-stream
    # backlog a stopped reader could build, so this is where its moves are exercised.
    agg = lab.aggregator(transport, "--threads", "2")
    producers = lab.run_producers(transport, agg.address, 8, 2000, "--batch", "16")
    assert all(p.returncode() == 0 for p in producers)
    agg.wait_lines(16_000)
    assert agg.stop() == 0, agg.stderr_text()
    assert seqs_by_producer(whole_json_lines(agg.output)) == {f"p{i}": list(range(2000)) for i in range(8)}
    stats = agg.stats()
    assert (stats["threads"], stats["messages_received"], stats["messages_written"]) == (2, 16_000, 16_000)
    assert (stats["connections_opened"], stats["connections_closed"]) == (8, 8)


@needs_native
@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", transport_names(connected=True, kind="stream", shutdown_read_on_drain=True))
def test_a_loop_that_falls_behind_spreads_its_connections_and_the_threads_drain_reopen_and_reject(lab, transport):
    agg = lab.aggregator(transport, "--threads", "2")
    agg.send(signal.SIGSTOP)  # a backlog, made deterministically: the kernel queues, nobody reads
    clients = [lab.client(transport, agg.address) for _ in range(4)]
    for i, client in enumerate(clients):
        send_lines(client, i, 0, 100)  # more than one read's worth waiting on each
    agg.send(signal.SIGCONT)
    agg.wait_lines(400)
    # The first read found a backlog: two of the four connections moved to the reader thread.
    rotated = agg.output.with_name(agg.output.name + ".1")
    os.rename(agg.output, rotated)
    agg.send(signal.SIGUSR1)
    wait_until(agg.output.exists, f"{agg.output} recreated after SIGUSR1")
    for i, client in enumerate(clients):
        send_lines(client, i, 100, 200, b"not json %d\n" % i)
    agg.wait_lines(400)
    agg.send(signal.SIGTERM)  # the clients still connected: each loop drains its own to EOF
    assert agg.wait(30) == 0, agg.stderr_text()
    assert seqs_by_producer(whole_json_lines(rotated)) == {f"c{i}": list(range(100)) for i in range(4)}
    assert seqs_by_producer(whole_json_lines(agg.output)) == {f"c{i}": list(range(100, 200)) for i in range(4)}
    stats = agg.stats()
    assert stats["connections_spread"] == 2
    (reader,) = stats["per_thread"]
    assert reader["connections_opened"] == reader["connections_closed"] == 2
    assert reader["messages_written"] >= 200  # at least the two moved clients' lines after the move
    assert reader["rejected"] == {"invalid_json": 2}  # theirs, counted once, in the totals too
    assert stats["rejected"] == {"invalid_json": 4} and stats["messages_written"] == 800
    assert (stats["connections_opened"], stats["connections_closed"], stats["output_reopens"]) == (4, 4, 1)
    assert sorted(r["reason"] for r in agg.reject_records()) == ["invalid_json"] * 4
    assert_address_released(transport, agg.address)


@needs_native
@pytest.mark.timeout(120)
def test_the_connection_limit_holds_across_threads_and_nobody_is_refused(lab):
    agg = lab.aggregator("unixsock", "--threads", "2", "--max-connections", "2")
    producers = lab.run_producers("unixsock", agg.address, 6, 3000, "--batch", "16")
    assert all(p.returncode() == 0 for p in producers)
    agg.wait_lines(18_000)
    assert agg.stop() == 0, agg.stderr_text()
    assert seqs_by_producer(whole_json_lines(agg.output)) == {f"p{i}": list(range(3000)) for i in range(6)}
    stats = agg.stats()
    assert stats["connections_open_peak"] <= 2
    assert stats["connections_opened"] == stats["connections_closed"] == 6


@needs_native
@pytest.mark.timeout(90)
def test_a_udp_flood_calls_a_reader_thread_in_and_every_datagram_is_written_or_counted_dropped(lab):
    agg = lab.aggregator("udp", "--threads", "2", "--stats-interval", "0.2")
    host, _, port = agg.address.rpartition(":")
    n = 100_000
    # A backlog, made deterministically: while the aggregator is stopped the socket's buffer fills
    # (the rest is dropped by the kernel, and counted); sending as fast as Python can is not
    # always faster than the native path reads, and then no helper is ever called in.
    agg.send(signal.SIGSTOP)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, int(port)))
            for i in range(n):
                s.send(b'{"producer":"flood","seq":%d}' % i)
    finally:
        agg.send(signal.SIGCONT)
    wait_until(lambda: _accounted(agg) >= n, "every datagram written or counted dropped")  # read before the stop
    assert agg.stop() == 0, agg.stderr_text()
    stats = agg.stats()
    seqs = [r["seq"] for r in whole_json_lines(agg.output)]
    assert len(seqs) == len(set(seqs)) == stats["messages_written"]
    assert stats["messages_written"] + stats["kernel_drops"] == n  # nothing unaccounted for
    assert stats["per_thread"][0]["messages_written"] > 0, "the reader thread never read"


@pytest.mark.parametrize("transport", ONE_READER)
def test_one_reader_transports_read_with_one_thread_and_say_why(lab, transport):
    agg = lab.aggregator(transport, "--threads", "2")
    assert agg.stop() == 0
    assert f"--threads 2: {transport} reads with 1 thread" in agg.stderr_text()
    assert json.loads(agg.ready_file.read_text())["threads"] == 1


def test_the_pure_python_hot_path_reads_with_one_thread_and_says_why(lab):
    agg = lab.aggregator("unixsock", "--threads", "2", env={**os.environ, hotpath.CHOICE_ENV: "python"})
    (p,) = lab.run_producers("unixsock", agg.address, 1, 100)
    assert p.returncode() == 0
    assert agg.stop() == 0
    assert "pure-Python hot path holds the GIL" in agg.stderr_text()
    assert len(jsonl(agg.output)) == 100 and "threads" not in agg.stats()


@pytest.mark.parametrize("args", [["--threads", "0"], ["--threads", "many"], ["--threads", "2", "--workers", "2"]])
def test_bad_thread_counts_are_refused(lab, args):
    r = run_cli(AGGREGATOR, "unixsock", "--address", str(lab.sockdir / "t.sock"), *args)
    assert r.returncode == 2 and "--threads" in r.stderr


def _accounted(agg) -> int:
    """Datagrams written or dropped by the kernel so far, from the periodic stats (0 until written)."""
    try:
        stats = agg.stats()
    except (FileNotFoundError, ValueError):
        return 0
    return stats.get("messages_written", 0) + (stats.get("kernel_drops") or 0)
