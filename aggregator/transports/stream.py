"""Connection-oriented sockets: one listening socket, one connection per producer.

Shared by all of them: the accept loop, the hand-off to workers, the drain at shutdown, and for
byte streams (unixsock, tcp) framing per connection (``--framing``: newline or octet counting
told from the connection's first byte, or lenprefix; see ``framing.py``) with large
non-blocking reads. A
message socket changes ``socket_type``, ``adopt`` (what a connection reads) and ``sender``.
Subclasses set the class attributes and address hooks:

* the addressing hooks (``_bind_address``, ``_bind``, ``_connect_address``, ``_bound_address``,
  ``default_address``), shared by address kind in ``addresses.py`` (Unix path or inet);
* ``_peer(conn, addr)``: who is on the other side (a label for the rejects file, and record
  fields for ``--peer-credentials``);
* ``shutdown_read_on_drain``: on AF_UNIX, ``shutdown(SHUT_RD)`` makes the peer's next write fail
  with EPIPE, so after it everything the kernel accepted can be read to EOF and nothing more can
  arrive: an exact drain (on the listening socket, it refuses new connections while the backlog
  stays acceptable). TCP has no such signal; its drain waits for the peer to close, bounded by
  ``--drain-timeout``.
"""

from __future__ import annotations

import socket
from typing import ClassVar

from ..framing import Reject, stream_framer
from ..hotpath import new_line_framer
from .base import Binding, Endpoint, HandOff, ListenOptions, Listener, Sender, Transport

# Reads per connection per event-loop turn: enough to empty a socket buffer, few enough that one
# busy producer cannot starve the others.
MAX_READS_PER_TURN = 4


class StreamConnection(Endpoint):
    __slots__ = ("sock", "label", "peer_fields", "framer", "line_framer", "newline_free", "severity_framed", "_fd",
                 "_shutdown_read_on_drain", "_framing", "_max_line_bytes")  # fmt: skip

    def __init__(
        self, sock: socket.socket, label: str, peer_fields: dict | None, max_line_bytes: int, shutdown_read_on_drain: bool,
        framing: str = "auto",
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._fd = sock.fileno()
        self.label = label
        self.peer_fields = peer_fields
        # Chosen at the first byte (--framing auto: octet counting when it is a digit). Newline
        # framing is the event loop's, through the hot path: ``line_framer`` set, ``read`` appends
        # the bytes unframed; a counted framing (``framer``) frames them here.
        self.framer = None
        self.line_framer = None
        self.newline_free = True  # newline framing's messages hold none; a counted one's may
        self._framing = framing
        self._max_line_bytes = max_line_bytes
        self.severity_framed = framing == "lenprefix"
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
            if self.framer is None and self.line_framer is None:
                framer = stream_framer(self._framing, buf[0], self._max_line_bytes, line_framer=new_line_framer)
                if framer.newline_free:  # newline framing: the event loop's, through the hot path
                    self.line_framer = framer
                else:
                    self.framer = framer
                    self.newline_free = False
            if self.line_framer is not None:
                lines.append(buf[:n].tobytes())  # framed by the loop, with line_framer
            else:
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
        if self.line_framer is not None:
            self.line_framer.close(rejects)
        elif self.framer is not None:
            self.framer.close(rejects)
        self.sock.close()


class StreamListener(Listener):
    """The listening socket. ``accept`` takes at most what the event loop has room for: the rest
    waits in the kernel's backlog (see ``aggregator.server``)."""

    def __init__(self, sock: socket.socket, transport: "StreamSocketTransport", options: ListenOptions) -> None:
        self.sock = sock
        self.transport = transport
        self.options = options
        self.drained = False  # after begin_drain: the backlog was found empty
        self._draining = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self, limit: int | None) -> list[StreamConnection]:
        """Accept up to ``limit`` pending connections (None: all), non-blocking. Raises OSError
        (EMFILE, ENFILE, ENOBUFS, ...) only when it could accept none."""
        accepted: list[StreamConnection] = []
        while limit is None or len(accepted) < limit:
            try:
                conn, addr = self.sock.accept()
            except BlockingIOError:
                self.drained = self._draining
                break
            except ConnectionAbortedError:
                continue  # the client gave up before we got to it: nothing of its was accepted
            except OSError:
                if accepted:
                    break
                raise
            accepted.append(self.transport.adopt(conn, addr, self.options))
        return accepted

    def begin_drain(self) -> None:
        """Stop new connections where the kernel can: on AF_UNIX, ``shutdown(SHUT_RD)`` on the
        listening socket refuses every later connect while what is in the backlog can still be
        accepted, so the drain is exact. TCP has no such call (it would reset the backlog): a
        connection that arrives between the last accept and the close is reset."""
        self._draining = True
        if self.transport.shutdown_read_on_drain:
            try:
                self.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


class StreamSender:
    """Producer side: a blocking socket, so a full receiver blocks the producer (backpressure)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    write_all = send

    def close(self) -> None:
        self.sock.close()


class StreamSocketTransport(Transport):
    """Connection-oriented sockets: a listener, one connection per producer, handed off to
    workers. A subclass may change the socket type (``socket_type``), what an accepted
    connection reads (``adopt``) and what a producer writes through (``sender``)."""

    kind = "stream"
    connected = True
    sharing = HandOff()
    socket_type: ClassVar[int] = socket.SOCK_STREAM
    sender: ClassVar[type] = StreamSender

    def listen(self, address: str, options: ListenOptions) -> Binding:
        family, bind_address = self._bind_address(address, options)
        sock = socket.socket(family, self.socket_type)
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
        return StreamConnection(conn, label, peer_fields, options.max_line_bytes, self.shutdown_read_on_drain, options.framing)

    def connect(self, address: str, timeout: float | None = None) -> Sender:
        family, target = self._connect_address(address)
        sock = socket.socket(family, self.socket_type)
        try:
            sock.settimeout(timeout)
            sock.connect(target)
            self._configure_sender(sock)
        except BaseException:
            sock.close()
            raise
        return self.sender(sock)

    # hooks -----------------------------------------------------------------------------------
    def _configure_listener(self, sock: socket.socket) -> None:
        pass

    def _configure_sender(self, sock: socket.socket) -> None:
        pass

    def _peer(self, conn: socket.socket, addr) -> tuple[str, dict | None]:
        """Who connected: a label for the rejects file, and fields for records (or None)."""
        return str(addr), None
