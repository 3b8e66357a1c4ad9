"""The raw-copy reference reader (benchmarks/peers/rawcopy.c), built by the lab, really receives
loglab's producers on every transport of the registry: every message once, whole, read back as
the producer's object with its receipt time. And it copies lines as they come, without judging
them: a line split across writes arrives whole, a line that is not JSON arrives as it was sent.
Skipped only where the machine has no C compiler (then ``available()`` says so).
"""

from __future__ import annotations

import socket

import pytest

from aggregator.transports import transport_names
from benchmarks.peers import RawCopyPeer
from benchmarks.processes import wait_until

PRODUCERS, PER_PRODUCER = 2, 300


def _need_rawcopy() -> None:
    ok, why = RawCopyPeer.available()
    if not ok:
        pytest.skip(f"raw-copy reader unavailable: {why}")


@pytest.mark.parametrize("transport", transport_names())
def test_every_producer_message_reaches_rawcopy_once(lab, transport):
    _need_rawcopy()
    lab.through_peer(RawCopyPeer(transport, lab.workdir / "rawcopy"), PRODUCERS, PER_PRODUCER, "--rate", "2000", "--batch", "4")


def test_rawcopy_copies_lines_unjudged_and_whole(lab):
    _need_rawcopy()
    peer = RawCopyPeer("unixsock", lab.workdir / "rawcopy")
    lab.on_close(peer.kill)
    address = peer.start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(address)
        s.sendall(b'not json at all\n{"half": ')
        wait_until(lambda: peer.output_path.exists() and peer.output_path.stat().st_size > 0, "the first line copied")
        s.sendall(b'"line"}\nno newline at the end')
    peer.stop()
    lines = [line.split(b"\t", 1) for line in peer.output_path.read_bytes().splitlines()]
    assert [msg for _, msg in lines] == [b"not json at all", b'{"half": "line"}', b"no newline at the end"]
    assert all(stamp.isdigit() for stamp, _ in lines)
    records = list(peer.read_records())  # one item per line; None where it is no JSON object
    assert [r is not None for r in records] == [False, True, False] and peer.parse_errors == 2


def test_rawcopy_refuses_what_it_cannot_copy_back_as_records(tmp_path):
    # It parses nothing: a syslog header would stay in front of the JSON object; no counted framing.
    assert RawCopyPeer.supports("tcp") and RawCopyPeer.supports("seqpacket")
    for fmt in ("rfc3164", "rfc5424"):
        assert "parses nothing" in RawCopyPeer.unsupported("tcp", fmt)
        with pytest.raises(ValueError, match="parses nothing"):
            RawCopyPeer("unixgram", tmp_path, fmt=fmt)
    assert RawCopyPeer.unsupported("tcp", "json", "octet") and RawCopyPeer.unsupported("tcp", "json", "lenprefix")
