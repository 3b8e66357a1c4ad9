"""The transport interface.

Class tree (in the manner of CPython's socketserver: transports differ by a few class attributes
over one shared flow per kind)::

    Transport                         name, kind, address handling, listen(), connect()
     +-- StreamSocketTransport        stream.py: accept loop, newline framing per connection
     |    +-- UnixStreamTransport     unixsock.py  (AF_UNIX, SOCK_STREAM)
     |    +-- TcpTransport            tcp.py       (AF_INET/AF_INET6, SOCK_STREAM)
     +-- DatagramSocketTransport      datagram.py: one message per datagram, MSG_TRUNC detection
     |    +-- UnixDatagramTransport   unixgram.py  (AF_UNIX, SOCK_DGRAM)
     |    +-- UdpTransport            udp.py       (AF_INET/AF_INET6, SOCK_DGRAM)
     +-- FifoTransport                fifo.py: one named pipe shared by all writers, newline framing

The aggregator's event loop (``aggregator.server``) sees only what ``listen()`` returns: a
``Binding`` with an optional ``Listener`` (produces new ``Endpoint``s) and ``Endpoint``s (file
descriptors it can read framed messages from). Producers see only what ``connect()`` returns: a
``Sender`` whose ``send()`` writes one whole buffer or raises ``OSError``.

Hooks a subclass may override are the class attributes and the few ``_``-prefixed methods named
in each kind module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Protocol

from ..framing import Reject


class TransportError(Exception):
    """A problem the user can fix (bad address, address in use, ...): printed, not traced."""

    exit_code = 1


class BadAddress(TransportError):
    exit_code = 2


class AddressInUse(TransportError):
    exit_code = 1


@dataclass
class ListenOptions:
    max_line_bytes: int = 65536
    socket_mode: int = 0o600  # Unix socket / FIFO file mode
    rcvbuf: int | None = None  # datagram sockets: requested receive buffer, bytes
    pipe_size: int | None = 1 << 20  # fifo: requested pipe capacity, bytes


class Endpoint(Protocol):
    """Something the event loop reads messages from: a connection, a datagram socket, a FIFO."""

    label: str  # who is on the other side, for the rejects file
    peer_fields: dict | None  # who is on the other side, as record fields (--peer-credentials)
    newline_free: bool  # framing guarantees no message holds a newline (newline framing does)
    # Optional: how many messages the kernel queues before senders block (None: bytes-bound, or
    # large). A small queue turns the loop's coalescing pause off: senders would wait during it.
    queue_limit: int | None
    # Optional: True when several processes read this endpoint (--workers on a datagram socket);
    # the loop then asks the kernel to wake one of them per event (EPOLLEXCLUSIVE).
    shared_by_processes: bool

    def fileno(self) -> int:
        """What to wait on. May change across ``read`` calls (a --workers helper waits on a
        wake-up descriptor until it is called in); the loop then watches the new one."""
        ...

    def read(self, buf: memoryview, lines: list[bytes], rejects: list[Reject]) -> tuple[int, int, bool]:
        """Read what is available without blocking; append framed messages to ``lines``.

        Returns ``(bytes_read, read_calls, finished)``; ``finished`` means the endpoint has
        nothing more to give (EOF, or drained) and the loop should close it.
        """
        ...

    def begin_drain(self) -> None:
        """Shutdown has begun: arrange for ``read`` to report ``finished`` once drained."""
        ...

    def close(self, rejects: list[Reject]) -> None:
        """Close; an unfinished line becomes a reject."""
        ...


class Listener(Protocol):
    """Where new endpoints come from: a listening socket, or (``--workers``) the channel on which
    the supervisor hands a worker its connections."""

    drained: bool  # nothing more will come (after begin_drain, or the supervisor's channel closed)

    def fileno(self) -> int: ...

    def accept(self, limit: int | None) -> list[Endpoint]:
        """Accept up to ``limit`` pending connections (None: all), non-blocking. Raises OSError
        only when none could be accepted for lack of resources (EMFILE, ...)."""
        ...

    def begin_drain(self) -> None:
        """Shutdown has begun: refuse new connections where the kernel can, keep what is pending
        acceptable; ``accept`` then sets ``drained`` once nothing more is pending."""
        ...

    def connection_closed(self) -> None:
        """One of the connections this listener gave has been closed."""
        ...

    def close(self) -> None: ...


@dataclass
class Binding:
    """What a listening transport hands the event loop."""

    address: str
    listener: Listener | None = None
    endpoints: list[Endpoint] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # effective buffer sizes etc., for stats and logs
    cleanup: Callable[[], None] = lambda: None  # removes socket/FIFO files


class Sender(Protocol):
    def send(self, data: bytes) -> None:
        """Write all of ``data`` as the producer does: kept whole (one datagram on datagram
        transports; at most ``atomic_write_limit`` bytes where writers share a pipe) or OSError."""
        ...

    def write_all(self, data: bytes) -> None:
        """Write all of ``data`` however the transport splits it (a raw or hostile client's
        write: no atomicity promised; one message on message transports)."""
        ...

    def close(self) -> None: ...


class Transport(ABC):
    name: ClassVar[str]
    kind: ClassVar[str]  # "stream" or "datagram": how messages are framed
    address_kind: ClassVar[str]  # "path" (a filesystem path) or "inet" (HOST:PORT)
    description: ClassVar[str]
    # Delivers everything the sender was told was sent, blocking the sender when full (udp: no).
    reliable: ClassVar[bool] = True
    # A connection per producer (accepted from a listener; peer credentials, hand-off to workers).
    connected: ClassVar[bool] = False
    # At a stop, shutdown(SHUT_RD) makes senders' next write fail, so everything the kernel
    # accepted can be read to the end and nothing more can arrive: an exact drain (AF_UNIX).
    # Otherwise the drain waits for senders to close, bounded by --drain-timeout.
    shutdown_read_on_drain: ClassVar[bool] = False
    # Largest single write the transport keeps whole when several writers share it (PIPE_BUF
    # for a FIFO); None when every write is whole by construction (sockets).
    atomic_write_limit: ClassVar[int | None] = None
    # How --workers shares the transport among receiving processes (aggregator/workers.py):
    # "handoff": the supervisor accepts and hands each connection to one worker (stream sockets);
    # "shared": the workers share the one socket (datagrams: each is whole, whoever reads it);
    #   worker 0 reads it, the others are called in when it falls behind (datagram.py);
    # None: one reader only (a FIFO: a line can straddle two reads; unixgram: one reader keeps
    #   each sender's datagrams in order), with the reason in ``single_reader_reason``.
    parallel: ClassVar[str | None] = None
    single_reader_reason: ClassVar[str] = ""

    @abstractmethod
    def default_address(self) -> str: ...

    @abstractmethod
    def listen(self, address: str, options: ListenOptions) -> Binding: ...

    @abstractmethod
    def connect(self, address: str, timeout: float | None = None) -> Sender:
        """The producer side. ``timeout``: a deadline on each operation (None: block, which is
        backpressure); a client of the lab's uses one so that a stuck test fails, not hangs."""
