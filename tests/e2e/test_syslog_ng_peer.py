"""The syslog-ng peer really receives loglab's traffic on all five transports.

Each test runs a private syslog-ng (config, sockets, control socket and persist file under
tmp_path) and sends contract-format lines from a small in-test sender: 3 producers, each on its
own connection / socket / FIFO descriptor, concurrently. Then every (producer, seq) must be in
read_records() exactly once, with received_ns. Skipped only when syslog-ng is not installed and
scripts/setup-peer.sh cannot install it (not root, no apt).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from aggregator.transports import TRANSPORT_NAMES, get_transport, transport_names
from benchmarks.peers import daemon
from benchmarks.peers.syslog_ng import SyslogNgPeer
from benchmarks.processes import Client

ROOT = Path(__file__).resolve().parents[2]
# The registry's transports that syslog-ng has a source driver for.
TRANSPORTS = [t for t in TRANSPORT_NAMES if SyslogNgPeer.supports(t)]
INET = transport_names(address_kind="inet")
PRODUCERS = 3
PER_PRODUCER = 400


@pytest.fixture(scope="session")
def syslog_ng_installed() -> None:
    ok, why = SyslogNgPeer.available()
    if not ok:
        # Idempotent; installs syslog-ng-core when root with apt, else explains and exits 0.
        out = subprocess.run(
            ["bash", str(ROOT / "scripts" / "setup-peer.sh")], capture_output=True, text=True, timeout=600
        )
        daemon._version_cache.clear()
        ok, why = SyslogNgPeer.available()
        if not ok:
            pytest.skip(f"syslog-ng unavailable and not installable here: {why}; setup-peer.sh said: {out.stdout.strip()}")


@pytest.fixture
def make_peer(syslog_ng_installed, tmp_path):
    """Peers started by a test; killed (and their files removed) even when the test fails."""
    peers: list[SyslogNgPeer] = []

    def make(transport: str, **kw) -> SyslogNgPeer:
        peer = SyslogNgPeer(transport, tmp_path / f"peer-{transport}-{len(peers)}", **kw)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        if peer.proc is not None:
            peer.kill()


def contract_line(producer: str, seq: int, size: int = 200) -> bytes:
    """One message as docs/CONTRACT.md describes it: a JSON object, exactly SIZE bytes with '\\n'."""
    now = time.time_ns()
    obj = {"ts_ns": now, "intended_ns": now, "producer": producer, "seq": seq, "pid": os.getpid(), "level": "info", "msg": ""}
    obj["msg"] = "x" * (size - len(orjson.dumps(obj)) - 1)
    line = orjson.dumps(obj) + b"\n"
    assert len(line) == size
    return line


def send_all(peer: SyslogNgPeer, transport: str, address: str, producers: int, count: int) -> None:
    """PRODUCERS concurrent senders, COUNT lines each. UDP has no backpressure: to test the peer
    rather than the kernel's buffer, UDP senders wait (polling syslog-ng's own counter) until it
    has taken in what was sent before sending the next chunk."""
    sent = [0]
    lock = threading.Lock()
    chunk = 50

    def caught_up(target: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while peer.counts()["messages_received"] < target:
            assert time.monotonic() < deadline, "syslog-ng did not take in the UDP datagrams in time"
            time.sleep(0.002)

    def produce(i: int) -> None:
        sender = Client(transport, address)
        try:
            for seq in range(count):
                sender.send(contract_line(f"p{i}", seq))
                if transport == "udp":
                    with lock:
                        sent[0] += 1
                        mine = sent[0]
                    if seq % chunk == chunk - 1:
                        caught_up(mine)
        finally:
            sender.close()

    with ThreadPoolExecutor(producers) as pool:
        for f in [pool.submit(produce, i) for i in range(producers)]:
            f.result()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_message_arrives_once(make_peer, transport):
    peer = make_peer(transport, rcvbuf=4 << 20 if get_transport(transport).kind == "datagram" else None)
    address = peer.start(timeout=10)
    assert peer.pid > 0 and Path(f"/proc/{peer.pid}").exists()
    assert "flags(no-parse)" in peer.config_text
    if transport in INET:
        assert address.startswith("127.0.0.1:") and int(address.rsplit(":", 1)[1]) > 0
    else:
        assert Path(address).exists() and Path(address).is_relative_to(peer.workdir)

    send_all(peer, transport, address, PRODUCERS, PER_PRODUCER)
    summary = peer.stop(timeout=10)

    assert summary["drained"] and summary["exit_code"] == 0 and not summary["killed"]
    assert summary["messages_received"] == summary["messages_written"] == PRODUCERS * PER_PRODUCER
    assert summary["messages_dropped"] == 0
    records = list(peer.read_records())
    assert peer.parse_errors == 0, peer.bad_lines
    keys = [(r["producer"], r["seq"]) for r in records]
    assert len(keys) == len(set(keys)), "duplicates"
    assert set(keys) == {(f"p{i}", s) for i in range(PRODUCERS) for s in range(PER_PRODUCER)}
    for r in records:
        assert isinstance(r["received_ns"], int)
        # A wall-clock ns stamp near the send time. Under saturation syslog-ng's cached receipt
        # clock may precede the send stamp by up to one read job (see the peer's docstring).
        assert r["ts_ns"] - 50_000_000 <= r["received_ns"] <= r["ts_ns"] + 60_000_000_000
        assert r["transport"] == transport
        assert set(r) >= {"ts_ns", "intended_ns", "producer", "seq", "pid", "level", "msg"}
        assert len(orjson.dumps({k: r[k] for k in r if k not in ("received_ns", "transport")})) == 199
    # The process is gone and its socket / FIFO / control socket removed.
    assert peer.proc is None
    if transport not in INET:
        assert not Path(address).exists()
    assert not peer.control_path.exists()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_64k_lines_arrive_whole(make_peer, transport):
    peer = make_peer(transport)
    address = peer.start()
    # UDP's largest payload is 65507 bytes; everything else takes a 64 KiB line.
    sizes = [65507 if transport == "udp" else 65536, 200]
    sender = Client(transport, address)
    try:
        for seq, size in enumerate(sizes):
            sender.send(contract_line("big", seq, size))
    finally:
        sender.close()
    peer.stop()
    records = list(peer.read_records())
    assert peer.parse_errors == 0
    got = {r["seq"]: len(r["msg"]) for r in records}
    assert got == {seq: len(orjson.loads(contract_line("big", seq, size))["msg"]) for seq, size in enumerate(sizes)}


def test_tcp_port_in_use_is_retried(make_peer, monkeypatch):
    """syslog-ng cannot bind port 0: a port picked free but taken meanwhile must be retried."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real = daemon.free_ports
        ports = iter([taken])
        monkeypatch.setattr(daemon, "free_ports", lambda n, **kw: [p] if (p := next(ports, None)) else real(n, **kw))
        peer = make_peer("tcp")
        address = peer.start()
        assert address != f"127.0.0.1:{taken}"
        Client("tcp", address).close()
        assert peer.stop()["exit_code"] == 0


def test_read_records_counts_bad_lines(tmp_path):
    """Unparseable output lines are counted, not raised, and hold their place as None (the
    latency observer pairs records with output lines by position; no syslog-ng needed)."""
    peer = SyslogNgPeer("unixsock", tmp_path)
    good = b'{"producer":"p","seq":1,"ts_ns":5}'
    peer.output_path.write_bytes(
        b"1700000000.123456\t" + good + b"\n" + b"garbage without tab\n" + b"1700000000.5\t{not json\n" + b"1700000001.000001\t[1]\n"
    )
    records = list(peer.read_records())
    assert records == [{"producer": "p", "seq": 1, "ts_ns": 5, "received_ns": 1_700_000_000_123_456_000, "transport": "unixsock"}, None, None, None]
    assert peer.parse_errors == 3 and len(peer.bad_lines) == 3


def test_available_and_version(syslog_ng_installed):
    assert SyslogNgPeer.available() == (True, "")
    assert SyslogNgPeer.version()[0].isdigit()


def test_unknown_transport_rejected(tmp_path):
    with pytest.raises(ValueError):
        SyslogNgPeer("carrier-pigeon", tmp_path)
