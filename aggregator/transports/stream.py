"""Stream sockets (unixsock, tcp): one listening socket, one connection per producer.

Shared by both: the accept loop, newline framing per connection, large non-blocking reads, and
the drain at shutdown. Subclasses set the class attributes and address hooks:

* the addressing hooks (``_bind_address``, ``_bind``, ``_connect_address``, ``_bound_address``,
  ``default_address``), shared by address kind in ``addresses.py`` (Unix path or inet);
* ``_peer(conn, addr)``: who is on the other side (a label for the rejects file, and record
  fields for ``--peer-credentials``);
* ``shutdown_read_on_drain``: on AF_UNIX, ``shutdown(SHUT_RD)`` makes the peer's next write fail
  with EPIPE, so after it everything the kernel accepted can be read to EOF and nothing more can
  arrive: an exact drain. TCP has no such signal; its drain waits for the peer to close, bounded
  by ``--drain-timeout``.
"""

from __future__ import annotations

import socket
from typing import ClassVar

from ..framing import LineFramer, Reject
from .base import Binding, ListenOptions, Transport

# Reads per connection per event-loop turn: enough to empty a socket buffer, few enough that one
# busy producer cannot starve the others.
MAX_READS_PER_TURN = 4


class StreamConnection:
    __slots__ = ("sock", "label", "peer_fields", "framer", "_fd", "_shutdown_read_on_drain")
    newline_free = True

    def __init__(
        self, sock: socket.socket, label: str, peer_fields: dict | None, max_line_bytes: int, shutdown_read_on_drain: bool
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._fd = sock.fileno()
        self.label = label
        self.peer_fields = peer_fields
        self.framer = LineFramer(max_line_bytes)
        self._shutdown_read_on_drain = shutdown_read_on_drain

    def fileno(self) -> int:
        return self._fd

    def read(self, buf: memoryview, lines: list[bytes], rejects: list[Reject]) -> tuple[int, int, bool]:
        total = calls = 0
        recv_into = self.sock.recv_into
        size = len(buf)
        for _ in range(MAX_READS_PER_TURN):
            try:
                n = recv_into(buf)
            except BlockingIOError:
                break
            except ConnectionError:  # reset by peer: what was read is kept; the rest is gone
                return total, calls, True
            calls += 1
            if n == 0:
                return total, calls, True
            total += n
            self.framer.feed(buf[:n].tobytes(), lines, rejects)
            if n < size:  # the socket is (very likely) empty: skip the EAGAIN probe
                break
        return total, calls, False

    def begin_drain(self) -> None:
        if self._shutdown_read_on_drain:
            try:
                self.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def close(self, rejects: list[Reject]) -> None:
        self.framer.close(rejects)
        self.sock.close()


class StreamListener:
    def __init__(self, sock: socket.socket, transport: "StreamSocketTransport", options: ListenOptions) -> None:
        self.sock = sock
        self.transport = transport
        self.options = options

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> list[StreamConnection]:
        accepted = []
        while True:
            try:
                conn, addr = self.sock.accept()
            except BlockingIOError:
                return accepted
            except OSError:  # e.g. EMFILE: try again on the next turn
                return accepted
            accepted.append(self.transport.adopt(conn, addr, self.options))

    def refuse(self, endpoint: StreamConnection) -> None:
        endpoint.sock.close()

    def close(self) -> None:
        self.sock.close()


class HandoffListener:
    """A worker's listener under ``--workers``: connections accepted by the supervisor arrive as
    file descriptors (SCM_RIGHTS) on ``channel``, one per message. See ``aggregator/workers.py``."""

    def __init__(self, channel: socket.socket, transport: "StreamSocketTransport", options: ListenOptions) -> None:
        channel.setblocking(False)
        self.channel = channel
        self.transport = transport
        self.options = options

    def fileno(self) -> int:
        return self.channel.fileno()

    def accept(self) -> list[StreamConnection]:
        accepted = []
        while True:
            try:
                _, fds, _, _ = socket.recv_fds(self.channel, 1, 1)
            except BlockingIOError:
                return accepted
            if not fds:  # the supervisor closed its end
                return accepted
            conn = socket.socket(fileno=fds[0])
            try:
                addr = conn.getpeername()
            except OSError:  # the peer is already gone: read what it sent, then EOF
                addr = None
            accepted.append(self.transport.adopt(conn, addr, self.options))

    def refuse(self, endpoint: StreamConnection) -> None:
        endpoint.sock.close()

    def close(self) -> None:
        self.channel.close()


class StreamSender:
    """Producer side: a blocking socket, so a full receiver blocks the producer (backpressure)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


class StreamSocketTransport(Transport):
    kind = "stream"
    parallel = "handoff"
    shutdown_read_on_drain: ClassVar[bool] = False

    def listen(self, address: str, options: ListenOptions) -> Binding:
        family, bind_address = self._bind_address(address, options)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._configure_listener(sock)
            cleanup = self._bind(sock, bind_address, options)
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return Binding(
            address=self._bound_address(sock),
            listener=StreamListener(sock, self, options),
            cleanup=cleanup,
        )

    def adopt(self, conn: socket.socket, addr, options: ListenOptions) -> StreamConnection:
        """An accepted connection, ready for the event loop."""
        label, peer_fields = self._peer(conn, addr)
        return StreamConnection(conn, label, peer_fields, options.max_line_bytes, self.shutdown_read_on_drain)

    def handoff_binding(self, address: str, channel: socket.socket, options: ListenOptions) -> Binding:
        """A worker's binding under ``--workers``: its connections come from the supervisor."""
        return Binding(address=address, listener=HandoffListener(channel, self, options))

    def connect(self, address: str) -> StreamSender:
        family, target = self._connect_address(address)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.connect(target)
            self._configure_sender(sock)
        except BaseException:
            sock.close()
            raise
        return StreamSender(sock)

    # hooks -----------------------------------------------------------------------------------
    def _configure_listener(self, sock: socket.socket) -> None:
        pass

    def _configure_sender(self, sock: socket.socket) -> None:
        pass

    def _peer(self, conn: socket.socket, addr) -> tuple[str, dict | None]:
        """Who connected: a label for the rejects file, and fields for records (or None)."""
        return str(addr), None
