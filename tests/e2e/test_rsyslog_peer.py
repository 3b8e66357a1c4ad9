"""The rsyslog peer really receives loglab's producers: every message once, read back as the
producer's object, on each of its inputs and in each form it serves (JSON lines, an RFC 3164 and an
RFC 5424 header, octet counting). Skipped only where rsyslog is not installed or unpacked
(scripts/setup-peer.sh), with its reason.
"""

from __future__ import annotations

import pytest

from benchmarks.peers import RsyslogPeer

PRODUCERS, PER_PRODUCER = 2, 300

CASES = [  # transport, the producer's --format, --framing: one per rsyslog input module
    ("unixsock", "json", "newline"),  # imptcp on a Unix socket
    ("unixgram", "rfc3164", "newline"),  # imuxsock
    ("tcp", "rfc5424", "octet"),  # imtcp, RFC 6587 octet counting
    ("udp", "json", "newline"),  # imudp, at a rate its buffer takes
]


@pytest.mark.parametrize(("transport", "fmt", "framing"), CASES)
def test_every_producer_message_reaches_rsyslog_once(lab, transport, fmt, framing):
    ok, why = RsyslogPeer.available()
    if not ok:
        pytest.skip(f"rsyslog unavailable: {why}")
    peer = RsyslogPeer(transport, lab.workdir / "rsyslog", fmt=fmt, framing=framing)
    lab.on_close(peer.kill)  # whatever happens; kill() after a clean stop does nothing
    address = peer.start()
    options = ["--format", fmt, "--framing", framing, "--rate", "2000"]
    for p in lab.run_producers(transport, address, PRODUCERS, PER_PRODUCER, *options):
        assert p.returncode() == 0, p.tail()
    summary = peer.stop()
    assert summary["exit_code"] == 0 and not summary["killed"], summary
    records = list(peer.read_records())
    assert peer.parse_errors == 0, peer.bad_lines
    seen = sorted((r["producer"], r["seq"]) for r in records)
    assert seen == sorted((f"p{i}", s) for i in range(PRODUCERS) for s in range(PER_PRODUCER))
    assert all(r["transport"] == transport and r["received_ns"] > 0 and r["level"] for r in records)


def test_rsyslog_refuses_what_it_has_no_input_for(tmp_path):
    with pytest.raises(ValueError, match="no input for a named pipe"):
        RsyslogPeer("fifo", tmp_path)
    with pytest.raises(ValueError, match="no lenprefix framing"):
        RsyslogPeer("tcp", tmp_path, framing="lenprefix")
