"""Every transport end to end: real ``aggregator`` and ``producer`` processes, exact counts."""

from __future__ import annotations

import json
import os
import time

import pytest

from aggregator import hotpath
from aggregator.transports import TRANSPORT_NAMES, get_transport, transport_names
from benchmarks.processes import AggregatorProc, duplicates, seqs_by_producer

STREAM_TRANSPORTS = transport_names(kind="stream")
TRANSPORTS = TRANSPORT_NAMES

PRODUCERS = 4
COUNT = 500  # per producer
PRODUCER_FIELDS = {"ts_ns", "intended_ns", "producer", "seq", "pid", "level", "msg"}


def rate_args(transport: str) -> list[str]:
    # udp may drop when the receiver falls behind: a modest rate keeps the kernel buffer from
    # overflowing, so exactness can be required of it too.
    return ["--rate", "2000"] if transport == "udp" else []


def check_delivery(agg, producers, transport: str, t0: int, t1: int, ordered: bool, hot_path: str = hotpath.describe()) -> None:
    total = sum(p.count for p in producers)
    raw = agg.output.read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.split(b"\n")[:-1]
    assert len(lines) == total, f"{len(lines)} lines in the output, expected {total}"
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    pid_of = {p.id: p.pid for p in producers}
    for r in records:
        assert set(r) == PRODUCER_FIELDS | {"received_ns", "transport"}, r
        assert r["transport"] == transport
        assert type(r["received_ns"]) is int
        assert t0 <= r["received_ns"] <= t1
        assert r["pid"] == pid_of[r["producer"]]
    by_producer = seqs_by_producer(records)
    assert set(by_producer) == set(pid_of)
    for p in producers:
        seqs = by_producer[p.id]
        assert duplicates(seqs) == [], f"{p.id}: duplicated seqs"
        assert sorted(seqs) == list(range(p.count)), f"{p.id}: missing {sorted(set(range(p.count)) - set(seqs))[:20]}"
        if ordered:
            assert seqs == list(range(p.count)), f"{p.id}: out of order"

    stats = agg.stats()
    assert stats["transport"] == transport
    assert stats["hot_path"] == hot_path
    assert stats["messages_written"] == total
    assert stats["messages_received"] == total
    assert stats["rejected"] == {}
    assert stats["empty_lines"] == 0
    assert stats["bytes_received"] == 200 * total  # --size 200 (the default), newline included
    if transport in STREAM_TRANSPORTS and transport != "fifo":
        assert stats["connections_opened"] == len(producers)
        assert stats["connections_closed"] == len(producers)
    assert agg.reject_records() == []


def run_and_check(lab, transport: str, producer_args: list[str], env: dict | None = None, agg_args: tuple = ()) -> None:
    t0 = time.time_ns()
    agg = lab.aggregator(transport, *agg_args, env=env)
    producers = lab.run_producers(transport, agg.address, PRODUCERS, COUNT, *producer_args)
    for p in producers:
        assert p.returncode() == 0, p.stderr_text()
        summary = p.summary()
        assert summary["sent"] == COUNT
        assert summary["errors"] == {}
    assert agg.stop() == 0, agg.stderr_text()
    t1 = time.time_ns()
    hot_path = f"python ({hotpath.CHOICE_ENV}=python)" if env else hotpath.describe()
    check_delivery(agg, producers, transport, t0, t1, ordered=transport in STREAM_TRANSPORTS, hot_path=hot_path)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_message_arrives_exactly_once(lab, transport):
    run_and_check(lab, transport, rate_args(transport))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("threads", ["1", "2"], ids=["threads1", "threads2"])
@pytest.mark.parametrize("transport", STREAM_TRANSPORTS)
def test_batched_writes_arrive_exactly_once(lab, transport, threads):
    # --threads 2: the connections spread over two loops writing through one sink (fifo: one reader).
    run_and_check(lab, transport, ["--batch", "64"], agg_args=("--threads", threads))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("transport", ["unixsock", "unixgram"])
def test_the_pure_python_hot_path_delivers_the_same_and_says_so(lab, transport):
    # The fallback where the C extension is missing, chosen here by the environment.
    run_and_check(lab, transport, ["--batch", "64"], env={**os.environ, hotpath.CHOICE_ENV: "python"})


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_message_size_is_kept(lab, transport):
    agg = lab.aggregator(transport)
    (p,) = lab.run_producers(transport, agg.address, 1, 50, "--size", "1000")
    assert p.returncode() == 0, p.stderr_text()
    assert agg.stop() == 0
    records = agg.records()
    assert sorted(r["seq"] for r in records) == list(range(50))
    stats = agg.stats()
    assert stats["bytes_received"] == 50 * 1000
    for r in records:
        # the producer's line, newline included, was exactly --size bytes
        original = {k: v for k, v in r.items() if k not in ("received_ns", "transport")}
        assert len(json.dumps(original, separators=(",", ":"))) + 1 == 1000


@pytest.mark.timeout(90)
@pytest.mark.parametrize("transport", transport_names(reliable=True))
def test_a_new_connection_every_n_messages_loses_nothing_and_each_is_a_connection(lab, transport):
    # --per-connection: what many short-lived programs do (the bench's churn scenario).
    agg = lab.aggregator(transport)
    producers = lab.run_producers(transport, agg.address, 2, 100, "--per-connection", 7, "--batch", 4)
    assert all(p.returncode() == 0 for p in producers)
    assert [p.summary()["connections"] for p in producers] == [15, 15]  # ceil(100 / 7)
    agg.wait_lines(200)
    assert agg.stop() == 0
    assert seqs_by_producer(agg.records()) == {"p0": list(range(100)), "p1": list(range(100))}
    if get_transport(transport).connected:
        assert agg.stats()["connections_opened"] == 30


@pytest.mark.timeout(90)
def test_unixgram_queue_is_raised_when_asked_inside_its_own_network_namespace(lab, tmp_path):
    # net.unix.max_dgram_qlen is per network namespace: raised in a namespace of the test's own,
    # the machine's value is left alone.
    from natslab.hosts import Hosts, namespaces_unavailable

    why = namespaces_unavailable()
    if why is not None:
        pytest.skip(why)
    with open("/proc/sys/net/unix/max_dgram_qlen") as f:
        machine_value = f.read()
    with Hosts(1, tmp_path / "hosts", mode="netns") as hosts:
        (host,) = hosts.hosts
        agg = AggregatorProc("unixgram", tmp_path / "agg", "--max-dgram-qlen", "700", netns=host.netns)
        lab.add(agg)
        agg.start()
        assert agg.stop() == 0, agg.stderr_text()
        assert "max_dgram_qlen requested=700 effective=700" in agg.stderr_text()
        assert agg.stats()["effective_max_dgram_qlen"] == 700
    with open("/proc/sys/net/unix/max_dgram_qlen") as f:
        assert f.read() == machine_value
