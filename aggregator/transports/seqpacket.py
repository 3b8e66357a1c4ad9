"""seqpacket: AF_UNIX SOCK_SEQPACKET. A connection per producer, one message per send.

Connection-oriented like unixsock (a listener, peer credentials, hand-off to workers, an exact
drain with ``shutdown(SHUT_RD)``) and message-preserving like unixgram (no framing: one ``send``
is one message, an optional trailing newline dropped; one longer than ``--max-line-bytes`` is a
``datagram_truncated`` reject with its real length). Reliable and ordered: a sender blocks when
its socket's send buffer is full, and nothing is dropped.

Reading: up to 64 messages per ``recvmmsg`` call into one receive arena per event loop (a loop
reads its connections in turn, so they share it rather than hold megabytes each; ``--threads``:
one arena per thread). On
SOCK_SEQPACKET an empty message and end of file both read as 0 bytes; ``SO_PASSCRED`` makes the
kernel attach credentials to every real message, so the two are told apart exactly
(``MultiReceiver.receive_messages``).
"""

from __future__ import annotations

import socket

from ..framing import Reject
from .base import Endpoint, ListenOptions
from .datagram import DatagramSender, frame_messages, receive_slots
from .unixsock import UnixStreamTransport

# recvmmsg calls per connection per event-loop turn: a busy producer cannot starve the others.
MAX_CALLS_PER_TURN = 4


class SeqpacketConnection(Endpoint):
    __slots__ = ("sock", "label", "peer_fields", "max_bytes", "_fd", "_shape", "_arena_of_loop")
    newline_free = False  # a message may hold newlines inside its JSON

    def __init__(self, sock: socket.socket, label: str, peer_fields: dict | None, max_bytes: int) -> None:
        sock.setblocking(False)
        # Credentials on every message: how an empty message is told from end of file.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock = sock
        self._fd = sock.fileno()
        self.label = label
        self.peer_fields = peer_fields
        self.max_bytes = max_bytes
        from .mmsg import CREDENTIALS_SPACE, shared_receiver  # ctypes, only where it is used (1 MiB)

        self._shape = (*receive_slots(max_bytes, None), CREDENTIALS_SPACE)
        self._arena_of_loop = shared_receiver

    def fileno(self) -> int:
        return self._fd

    def read(self, buf: memoryview, lines: list[bytes], rejects: list[Reject]) -> tuple[int, int, bool]:
        # The reading loop's arena, asked at every read: under --threads a connection may move to
        # another loop between two reads, and two loops must never receive into one arena.
        receiver = self._arena_of_loop(*self._shape)
        total = calls = 0
        for _ in range(MAX_CALLS_PER_TURN):
            try:
                lengths, at_end = receiver.receive_messages(self._fd)
            except BlockingIOError:
                break
            except ConnectionError:  # reset: what was read is kept
                return total, calls, True
            calls += 1
            total += frame_messages(receiver.view, receiver.size, lengths, self.max_bytes, lines, rejects)
            if at_end:
                return total, calls, True
            if len(lengths) < receiver.vlen:  # the queue is empty: skip the EAGAIN probe
                break
        return total, calls, False

    def begin_drain(self) -> None:
        # The producer's next send fails with EPIPE; what was queued is read, then end of file.
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def close(self, rejects: list[Reject]) -> None:
        self.sock.close()  # messages are whole or absent: nothing partial to reject


class SeqpacketTransport(UnixStreamTransport):
    name = "seqpacket"
    description = (
        "Unix domain sequenced-packet socket (AF_UNIX, SOCK_SEQPACKET): a connection per producer, "
        "reliable, ordered, message boundaries kept, backpressure"
    )
    kind = "datagram"  # message boundaries kept: no newline framing
    socket_type = socket.SOCK_SEQPACKET
    default_filename = "seqpacket.sock"
    sender = DatagramSender  # one send, one message

    def listen(self, address: str, options: ListenOptions):
        # The receive arena is allocated once, at start (before --workers fork), as the datagram
        # transports' is: memory does not jump at the first connection.
        from .mmsg import CREDENTIALS_SPACE, shared_receiver

        shared_receiver(*receive_slots(options.max_line_bytes, None), CREDENTIALS_SPACE)
        return super().listen(address, options)

    def adopt(self, conn: socket.socket, addr, options: ListenOptions) -> SeqpacketConnection:
        label, peer_fields = self._peer(conn, addr)
        return SeqpacketConnection(conn, label, peer_fields, options.max_line_bytes)
