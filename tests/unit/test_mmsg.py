"""recvmmsg for Python (aggregator/transports/mmsg.py): lengths, truncation, and on a connected
message socket, an empty message told apart from end of file."""

from __future__ import annotations

import socket

import pytest

from aggregator.transports.mmsg import CREDENTIALS_SPACE, MultiReceiver, shared_receiver


def test_lengths_are_real_even_when_truncated():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        r = MultiReceiver(4, 8)
        for msg in (b"one", b"x" * 20, b""):
            a.send(msg)
        assert r.receive(b.fileno()) == [3, 20, 0]
        assert bytes(r.view[0:3]) == b"one" and bytes(r.view[8:16]) == b"x" * 8
        with pytest.raises(BlockingIOError):
            r.receive(b.fileno())


def test_seqpacket_empty_messages_are_messages_and_end_of_file_is_not():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with b:
        b.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        r = MultiReceiver(4, 16, CREDENTIALS_SPACE)
        for msg in (b"x", b"", b"", b"y" * 40, b""):
            a.send(msg)
        assert r.receive_messages(b.fileno()) == ([1, 0, 0, 40], False)  # a full batch: 4 of 5
        assert r.receive_messages(b.fileno()) == ([0], False)  # the last, empty; then EAGAIN
        with pytest.raises(BlockingIOError):
            r.receive_messages(b.fileno())
        a.send(b"")
        a.send(b"last")
        a.close()
        # Two messages, then end of file (which recvmmsg would report as more zeros).
        assert r.receive_messages(b.fileno()) == ([0, 4], True)
        assert r.receive_messages(b.fileno()) == ([], True)


def test_shared_receiver_is_one_per_shape():
    assert shared_receiver(2, 64) is shared_receiver(2, 64)
    assert shared_receiver(2, 64) is not shared_receiver(2, 64, CREDENTIALS_SPACE)


def test_shared_receiver_is_one_per_thread():
    # --threads: each loop reads into its own arena; two loops in one would mix their messages.
    import threading

    other = []
    t = threading.Thread(target=lambda: other.append(shared_receiver(2, 64)))
    t.start()
    t.join()
    assert other[0] is not shared_receiver(2, 64)
