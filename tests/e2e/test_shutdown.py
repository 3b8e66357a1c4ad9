"""Shutdown: SIGTERM/SIGINT drain without loss, --duration, SIGUSR1 reopen."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from aggregator.transports import TRANSPORT_NAMES, transport_names
from benchmarks.faults.checks import (
    assert_address_released,
    assert_sent_messages_written_once,
    stop_mid_stream,
)
from benchmarks.processes import (
    AggregatorProc,
    Client,
    jsonl,
    wait_until,
)

PATH_TRANSPORTS = transport_names(address_kind="path")

PRODUCERS = 4


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "transport, agg_args",
    [(t, []) for t in transport_names(reliable=True, shutdown_read_on_drain=True)]
    + [("unixsock", ["--threads", "2"])],  # each loop drains its own connections (aggregator/threads.py)
)
def test_sigterm_mid_stream_loses_nothing_the_kernel_accepted_and_stops_the_producers(lab, transport, agg_args):
    # unixsock: shutdown(SHUT_RD) at drain, so the producers' next write fails (EPIPE) and what
    # the kernel accepted is read to EOF. unixgram: the queue is read until empty; later sends fail.
    count = 50_000  # far more than can be sent before the signal: the aggregator stops them
    agg, producers = stop_mid_stream(lab, transport, count, [], agg_args)
    assert any(p.summary()["sent"] < count for p in producers), "nobody was stopped mid-stream"
    written = assert_sent_messages_written_once(agg, producers)
    stats = agg.stats()
    assert stats["messages_written"] == written
    assert stats["rejected"] == {}
    assert_address_released(transport, agg.address)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", transport_names(reliable=True, shutdown_read_on_drain=False))
def test_sigterm_mid_stream_reads_until_the_producers_close(lab, transport):
    # tcp and fifo have no "stop writing" signal: the aggregator keeps reading until every
    # producer has closed (bounded by --drain-timeout, generous here), so every message arrives.
    count = 1500
    agg, producers = stop_mid_stream(lab, transport, count, ["--rate", "1500"], ["--drain-timeout", "120"])
    for p in producers:
        assert p.returncode() == 0, p.stderr_text()
        assert p.summary()["sent"] == count
    written = assert_sent_messages_written_once(agg, producers)
    assert written == PRODUCERS * count
    stats = agg.stats()
    assert stats["messages_written"] == PRODUCERS * count
    assert stats["rejected"] == {}
    assert_address_released(transport, agg.address)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("transport", TRANSPORT_NAMES)
def test_idle_aggregator_stops_on_signal_with_exit_0_and_removes_its_socket(lab, transport, sig):
    agg = lab.aggregator(transport)
    assert agg.stop(sig) == 0, agg.stderr_text()
    assert_address_released(transport, agg.address)
    assert agg.output.exists()
    assert agg.output.read_bytes() == b""
    stats = agg.stats()
    assert stats["messages_received"] == 0
    assert stats["stopped_unix_ns"] >= stats["started_unix_ns"] > 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", ["unixsock", "fifo"])
def test_duration_stops_the_aggregator_with_exit_0(lab, transport):
    agg = lab.aggregator(transport, "--duration", "2")
    client = lab.client(transport, agg.address)
    client.send(b'{"seq":0}\n{"seq":1}\n{"seq":2}\n')
    client.close()
    rc = agg.wait(30)  # no signal: it stops by itself
    assert rc == 0, agg.stderr_text()
    assert [r["seq"] for r in agg.records()] == [0, 1, 2]
    assert agg.output.read_bytes().endswith(b"\n")
    assert_address_released(transport, agg.address)
    assert agg.stats()["messages_written"] == 3


@pytest.mark.timeout(90)
def test_sigusr1_reopens_the_output_after_rotation(lab):
    agg = lab.aggregator("unixsock")
    (a,) = lab.run_producers("unixsock", agg.address, 1, 300, prefix="before")
    assert a.returncode() == 0
    agg.wait_lines(300)

    rotated = agg.output.with_name("aggregated_logs.jsonl.1")
    os.rename(agg.output, rotated)
    agg.send(signal.SIGUSR1)
    # The reopen creates a fresh file at the path: that is the signal that it happened.
    wait_until(agg.output.exists, f"{agg.output} recreated after SIGUSR1")

    (b,) = lab.run_producers("unixsock", agg.address, 1, 200, prefix="after")
    assert b.returncode() == 0
    assert agg.stop() == 0, agg.stderr_text()

    old = jsonl(rotated)
    new = jsonl(agg.output)
    assert sorted(r["seq"] for r in old) == list(range(300))
    assert {r["producer"] for r in old} == {"before0"}
    assert sorted(r["seq"] for r in new) == list(range(200))
    assert {r["producer"] for r in new} == {"after0"}
    assert rotated.read_bytes().endswith(b"\n")
    assert agg.output.read_bytes().endswith(b"\n")
    stats = agg.stats()
    assert stats["output_reopens"] == 1
    assert stats["messages_written"] == 500


@pytest.mark.timeout(60)
def test_output_ends_with_a_newline_after_sigterm_with_a_partial_line_pending(lab):
    agg = lab.aggregator("tcp", "--drain-timeout", "0.5")
    client = lab.client("tcp", agg.address)
    client.send(b'{"seq":0}\n{"seq":1}\n{"seq":')  # stays connected, mid-line
    agg.wait_lines(2)
    assert agg.stop() == 0  # the drain timeout ends the wait for this connection
    assert agg.output.read_bytes().endswith(b"\n")
    assert [r["seq"] for r in agg.records()] == [0, 1]
    assert [r["reason"] for r in agg.reject_records()] == ["partial_line_at_close"]
    assert Path(agg.rejects).read_bytes().endswith(b"\n")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_right_after_readiness_is_a_graceful_stop(lab, sig):
    # Once "listening on" is printed a harness may stop the aggregator at any moment: the signal
    # must already mean "drain and exit 0" (not death by the default action, socket left behind).
    # The window is short, so it is tried several times.
    failures = []
    for _ in range(8):
        agg = lab.aggregator("unixsock", start=False)
        agg.start(wait_ready_file=False)  # act on the first readiness signal, as a harness would
        rc = agg.stop(sig)
        if rc != 0 or os.path.lexists(agg.address):
            failures.append((rc, os.path.lexists(agg.address), agg.stderr_text().strip().splitlines()[-1:]))
    assert failures == [], f"{len(failures)}/8 stops right after readiness were not graceful: {failures[:3]}"


def _refuses_connections(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.timeout(90)
def test_drain_ends_when_the_last_tcp_producer_closes_not_at_the_drain_timeout(lab):
    agg = lab.aggregator("tcp", "--drain-timeout", "120")
    client = lab.client("tcp", agg.address)
    client.send(b'{"seq":0}\n')
    agg.wait_lines(1)
    agg.send(signal.SIGTERM)
    # The listener closes when the drain begins: that is the signal to wait for.
    wait_until(lambda: _refuses_connections(agg.address), "the drain to begin (listener closed)")
    client.send(b'{"seq":1}\n')  # still read while draining
    agg.wait_lines(2)
    client.close()  # the last producer leaves: nothing is left to wait for
    rc = agg.wait(15)  # far less than --drain-timeout 120
    assert rc == 0, agg.stderr_text()
    assert [r["seq"] for r in agg.records()] == [0, 1]


# The aggregator's stdout and stderr on a terminal that is then closed (what `aggregator unixsock &`
# in a shell whose window is closed sees): every later write to it fails with EIO.
_DEAD_TERMINAL = r"""
import os, pty, sys
master, slave = pty.openpty()
os.dup2(slave, 1); os.dup2(slave, 2); os.close(slave)
os.close(master)
os.execvp(sys.argv[1], sys.argv[1:])
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_reopens_the_output_and_a_closed_terminal_does_not_stop_the_aggregator(tmp_path, workers):
    agg = AggregatorProc("unixsock", tmp_path / "agg", "--workers", workers, stats_interval=0.1)
    agg.argv = [sys.executable, "-c", _DEAD_TERMINAL, *agg.argv]
    agg.ready_line = None  # stdout is the dead terminal: readiness from the ready file
    with agg:
        with Client("unixsock", agg.address) as c:
            for i in range(5):
                c.send(b'{"seq":%d}\n' % i)
            agg.wait_lines(5)
            rotated = agg.output.with_name("rotated.jsonl")
            agg.output.rename(rotated)
            os.killpg(agg.pid, signal.SIGHUP)  # the terminal's hangup reaches the whole process group
            agg.wait_stats(lambda s: s["output_reopens"] >= 1, "the reopen after SIGHUP")
            for i in range(5, 8):
                c.send(b'{"seq":%d}\n' % i)
            agg.wait_lines(3)
        assert agg.stop() == 0
        assert [json.loads(line)["seq"] for line in rotated.read_bytes().splitlines()] == [0, 1, 2, 3, 4]
        assert [r["seq"] for r in agg.records()] == [5, 6, 7]
        stats = agg.stats()
        assert stats["messages_written"] == 8 and stats["output_reopens"] >= 1
