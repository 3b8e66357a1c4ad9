"""The transport interface.

Transports differ by a few class attributes over one shared flow per kind, in the manner of
CPython's socketserver: ``Transport`` here; ``StreamSocketTransport`` (``stream.py``: a listener,
one connection per producer), ``DatagramSocketTransport`` (``datagram.py``: one bound socket, one
message per datagram) and ``FifoTransport`` below it; each concrete transport is one module,
registered in ``__init__.py``. ARCHITECTURE.md draws the tree.

The aggregator's event loop (``aggregator.server``) sees only what ``listen()`` returns: a
``Binding`` with an optional ``Listener`` (produces new ``Endpoint``s) and ``Endpoint``s (file
descriptors it can read framed messages from). Both are base classes here, with defaults for what
most of them do not have, so the loop never asks an object whether it has an attribute.
Producers see only what ``connect()`` returns: a ``Sender``.

How ``--workers`` shares a transport among receiving processes is a small strategy object, the
transport's ``sharing`` (``HandOff``, ``SharedSocket``, ``SingleReader``); ``aggregator/workers.py``
asks it, never the transport's name.

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
    max_dgram_qlen: int | None = None  # unixgram: raise net.unix.max_dgram_qlen to this first (root)
    framing: str = "auto"  # byte streams: --framing (framing.FRAMINGS)


class Endpoint:
    """Something the event loop reads messages from: a connection, a datagram socket, a FIFO."""

    __slots__ = ()
    label: str = ""  # who is on the other side, for the rejects file
    peer_fields: dict | None = None  # who is on the other side, as record fields (--peer-credentials)
    newline_free: bool = False  # framing guarantees no message holds a newline (newline framing does)
    # Newline framing done by the event loop, through the hot path (``aggregator/hotpath.py``):
    # ``read`` then appends the bytes it read, unframed, to ``lines``, and the loop frames and
    # encodes them in one pass with this framer (``hotpath.new_line_framer``). None: ``read``
    # appends framed messages.
    line_framer = None
    # Each message is a severity byte and a payload (--framing lenprefix): read by
    # formats.Decoder.encode_severity_framed.
    severity_framed: bool = False
    # How many messages the kernel queues before senders block (None: bytes-bound, or large). A
    # small queue turns the loop's coalescing pause off: senders would wait during it.
    queue_limit: int | None = None
    # Several processes read this endpoint (--workers on a shared socket): the loop then asks
    # the kernel to wake one of them per event (EPOLLEXCLUSIVE).
    shared_by_processes: bool = False

    def fileno(self) -> int:
        """What to wait on. May change across ``read`` calls (a --workers helper waits on a
        wake-up descriptor until it is called in); the loop then watches the new one."""
        raise NotImplementedError

    def read(self, buf: memoryview, lines: list[bytes], rejects: list[Reject]) -> tuple[int, int, bool]:
        """Read what is available without blocking; append framed messages to ``lines`` (or the
        bytes read, in order, when ``line_framer`` is set: the loop frames them).

        Returns ``(bytes_read, read_calls, finished)``; ``finished`` means the endpoint has
        nothing more to give (EOF, or drained) and the loop should close it.
        """
        raise NotImplementedError

    def begin_drain(self) -> None:
        """Shutdown has begun: arrange for ``read`` to report ``finished`` once drained."""

    def close(self, rejects: list[Reject]) -> None:
        """Close; an unfinished line becomes a reject."""
        raise NotImplementedError

    def kernel_drops(self) -> int | None:
        """Messages the kernel dropped on this endpoint (a full datagram buffer), if it counts them."""
        return None

    def copy_for_reader(self) -> "Endpoint":
        """The same source for another reader thread (--threads on a shared socket)."""
        raise NotImplementedError(f"{type(self).__name__} has one reader")


class Listener:
    """Where new endpoints come from: a listening socket, or (``--workers``) the channel on which
    the supervisor hands a worker its connections."""

    drained: bool = False  # nothing more will come (after begin_drain, or the supervisor said so)
    # Still watched after it is drained, until the process exits (a worker's channel: rotations
    # still come through it while the worker drains).
    stays_open_after_drain: ClassVar[bool] = False

    def fileno(self) -> int:
        raise NotImplementedError

    def accept(self, limit: int | None) -> list[Endpoint]:
        """Accept up to ``limit`` pending connections (None: all), non-blocking. Raises OSError
        only when none could be accepted for lack of resources (EMFILE, ...)."""
        raise NotImplementedError

    def begin_drain(self) -> None:
        """Shutdown has begun: refuse new connections where the kernel can, keep what is pending
        acceptable; ``accept`` then sets ``drained`` once nothing more is pending."""

    def connection_closed(self) -> None:
        """One of the connections this listener gave has been closed."""

    def close(self) -> None:
        raise NotImplementedError


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


# -- how --workers shares a transport -------------------------------------------------------------


class Sharing:
    """How several receiving processes (``--workers``) share one transport: a strategy the
    supervisor asks (``aggregator/workers.py``), never a name it branches on."""

    supervisor_accepts: ClassVar[bool] = False  # the supervisor accepts and hands connections over

    def workers(self, requested: int, cpus: int) -> tuple[int, str | None]:
        """``requested`` (0 = one per CPU) -> (workers, why not more than one, if asked for more)."""
        return (requested or cpus), None

    def prepare(self) -> "Shared":
        """In the supervisor, before forking: what the workers will share."""
        return Shared()


class Shared:
    """What a ``Sharing`` prepared for the workers: nothing, unless a subclass says otherwise."""

    def worker_endpoints(self, endpoints: list[Endpoint], index: int) -> list[Endpoint]:
        """In worker ``index``, after forking: the endpoints it reads itself."""
        return []

    def close(self) -> None:
        """In the supervisor, after forking: its own copy is not needed."""


class HandOff(Sharing):
    """Stream sockets: the supervisor accepts and hands each connection to one worker (a
    connection, and so each producer's order, stays with its worker)."""

    supervisor_accepts = True


class SharedSocket(Sharing):
    """One socket read by every worker (a datagram is whole whoever reads it): worker 0 reads it,
    the others are called in through an eventfd when it finds a backlog (``DatagramEndpoint``)."""

    def prepare(self) -> "Shared":
        return _HelpCall()


class _HelpCall(Shared):
    def __init__(self) -> None:
        import os

        self.help_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def worker_endpoints(self, endpoints: list[Endpoint], index: int) -> list[Endpoint]:
        for endpoint in endpoints:
            endpoint.share(self.help_fd, helper=index > 0)
        return endpoints

    def close(self) -> None:
        import os

        os.close(self.help_fd)


class SingleReader(Sharing):
    """One reader only, whatever is asked, with the reason (a FIFO: a line can straddle two reads;
    unixgram: one reader keeps each sender's order)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def workers(self, requested: int, cpus: int) -> tuple[int, str | None]:
        return 1, (self.reason if requested > 1 else None)


class Transport(ABC):
    name: ClassVar[str]
    kind: ClassVar[str]  # "stream" (a byte stream, newline framing) or "datagram" (message boundaries kept)
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
    # How --workers shares the transport among receiving processes (see ``Sharing``).
    sharing: ClassVar[Sharing] = SingleReader("one reader")

    @abstractmethod
    def default_address(self) -> str: ...

    @abstractmethod
    def listen(self, address: str, options: ListenOptions) -> Binding: ...

    @abstractmethod
    def connect(self, address: str, timeout: float | None = None) -> Sender:
        """The producer side. ``timeout``: a deadline on each operation (None: block, which is
        backpressure); a client of the lab's uses one so that a stuck test fails, not hangs."""
