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
    records = lab.through_peer(peer, PRODUCERS, PER_PRODUCER, "--format", fmt, "--framing", framing, "--rate", "2000")
    assert all(r["level"] for r in records)


def test_rsyslog_refuses_what_it_has_no_input_for(tmp_path):
    with pytest.raises(ValueError, match="no input for a named pipe"):
        RsyslogPeer("fifo", tmp_path)
    with pytest.raises(ValueError, match="no lenprefix framing"):
        RsyslogPeer("tcp", tmp_path, framing="lenprefix")
