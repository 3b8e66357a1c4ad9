"""Datagram sockets (unixgram, udp): one bound socket; one message per datagram.

Shared by both: reading up to 64 datagrams per system call with ``recvmmsg`` (``mmsg.py``;
Python's own socket calls read one), truncation detection with ``MSG_TRUNC`` (the kernel then
returns the real length, so an oversize datagram is rejected with its true size), and the receive buffer request
(``SO_RCVBUFFORCE`` when permitted, else ``SO_RCVBUF``, which the kernel silently caps at
``net.core.rmem_max``; the effective size is read back and reported).

Subclasses take their addressing hooks from ``addresses.py``, as stream sockets do.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import ClassVar

from ..framing import DATAGRAM_TRUNCATED, REJECT_PREFIX_BYTES, Reject, frame_datagram
from .base import Binding, Endpoint, ListenOptions, SharedSocket, Transport

# recvmmsg batch size, and batches per turn at most, so the loop still turns under a flood.
DATAGRAMS_PER_CALL = 64
MAX_CALLS_PER_TURN = 8
# The receive buffers are allocated (and touched) once: DATAGRAMS_PER_CALL slots of the longest
# accepted datagram, but at most RECEIVE_ARENA_BYTES in all (fewer slots when messages may be
# long; never fewer than one), and no slot longer than the longest datagram the transport can
# carry. So memory no longer grows with --max-line-bytes times 64 (289 MiB at 4 MiB before).
RECEIVE_ARENA_BYTES = 4 * 1024 * 1024


def receive_slots(max_bytes: int, max_datagram: int | None) -> tuple[int, int]:
    """(slots, slot size) of the receive arena for messages of at most ``max_bytes``."""
    size = max_bytes + 2  # room for an optional line ending: the limit is on the message
    if max_datagram is not None:
        size = min(size, max_datagram + 1)  # +1: a datagram can never be truncated then
    return max(1, min(DATAGRAMS_PER_CALL, RECEIVE_ARENA_BYTES // size)), size


def frame_messages(view: memoryview, size: int, lengths: list[int], max_bytes: int, lines: list[bytes],
                   rejects: list[Reject]) -> int:  # fmt: skip
    """Frame one batch of received messages (buffer ``i`` of ``size`` bytes at ``i * size`` in
    ``view``, real length ``lengths[i]``): each becomes a line, or a ``datagram_truncated``
    reject with its real length when longer than ``max_bytes``. Returns the bytes received."""
    total = 0
    offset = 0
    append = lines.append
    for n in lengths:
        total += n
        if n <= max_bytes:
            append(frame_datagram(view[offset : offset + n]))
        else:  # rare: over the limit, unless only by its newline
            message = frame_datagram(view[offset : offset + min(n, size)])
            if n <= size and len(message) <= max_bytes:
                append(message)
            else:
                rejects.append(Reject(DATAGRAM_TRUNCATED, message[:REJECT_PREFIX_BYTES], n))
        offset += size
    return total


_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_SO_MEMINFO = 55  # Linux: u32 sk_meminfo[SK_MEMINFO_VARS]
_MEMINFO = struct.Struct("9I")
SK_MEMINFO_RMEM_ALLOC = 0  # bytes queued for reading (skb truesize: an empty message counts too)
SK_MEMINFO_DROPS = 8


def socket_meminfo(sock: socket.socket, index: int) -> int | None:
    """One figure of the socket's SO_MEMINFO (None where the kernel does not give it)."""
    try:
        return _MEMINFO.unpack(sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, _MEMINFO.size))[index]
    except OSError:
        return None


def set_receive_buffer(sock: socket.socket, size: int | None) -> int:
    """Request ``size`` bytes of receive buffer; return what the kernel granted."""
    if size:
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


# --workers on a datagram socket: a helper goes back to standby after this many turns in a row
# that found the queue nearly empty (with the coalescing pause, a few milliseconds).
QUIET_TURNS_TO_STANDBY = 32
BACKLOG_CALLS = 4  # a turn that needed this many recvmmsg calls found a backlog (>= 192 waiting)


class DatagramEndpoint(Endpoint):
    """One datagram socket. Under ``--workers`` several processes (under ``--threads``, several
    threads, each with its own copy: ``copy_for_reader``) share it, in one of two roles:

    * the *primary* (worker 0) always reads it; when a turn finds a backlog (``BACKLOG_CALLS``
      batches, or more, were waiting) it calls for help on ``help_fd``, an eventfd;
    * a *helper* (the other workers) waits on ``help_fd`` instead (its ``fileno()`` is the eventfd
      while on standby); called, it reads the socket too, and goes back to standby once the
      queue has stayed nearly empty for ``QUIET_TURNS_TO_STANDBY`` turns.

    So at moderate rates one process reads (one wakeup per batch, order kept, CPU per message as
    with one process), and under a flood every worker does.
    """

    __slots__ = (
        "sock", "label", "max_bytes", "draining", "help_fd", "standby", "queue_limit",
        "_fd", "_receiver", "_shutdown_read_on_drain", "_quiet_turns", "_is_helper", "_max_datagram",
    )  # fmt: skip
    peer_fields = None  # datagram senders are anonymous (no connection to ask)
    newline_free = False  # a datagram may hold newlines inside its JSON

    def __init__(
        self, sock: socket.socket, label: str, max_bytes: int, shutdown_read_on_drain: bool = False,
        queue_limit: int | None = None, max_datagram: int | None = None,
    ) -> None:
        sock.setblocking(False)
        self.queue_limit = queue_limit
        self._shutdown_read_on_drain = shutdown_read_on_drain
        self.sock = sock
        self._fd = sock.fileno()
        self.label = label
        self.max_bytes = max_bytes
        self.draining = False
        self.help_fd: int | None = None  # --workers: the eventfd that calls helpers in
        self.standby = False
        self._is_helper = False
        self._quiet_turns = 0
        self._max_datagram = max_datagram
        from .mmsg import MultiReceiver  # ctypes: loaded by the receiving processes that need it only (1 MiB)

        self._receiver = MultiReceiver(*receive_slots(max_bytes, max_datagram))

    def copy_for_reader(self) -> "DatagramEndpoint":
        """The same socket (a duplicate descriptor) with buffers of its own, for another reader
        thread (--threads): each thread reads into its own arena."""
        return DatagramEndpoint(self.sock.dup(), self.label, self.max_bytes, self._shutdown_read_on_drain, self.queue_limit,
                                self._max_datagram)  # fmt: skip

    def share(self, help_fd: int, helper: bool) -> None:
        """Under --workers: read this socket as the primary, or as a helper (see the class doc)."""
        self.help_fd = help_fd
        self._is_helper = self.standby = helper

    @property
    def shared_by_processes(self) -> bool:
        """Several workers or threads read this socket (each loop then asks for one wakeup per
        event, EPOLLEXCLUSIVE, across processes and epoll instances alike)."""
        return self.help_fd is not None

    def fileno(self) -> int:
        return self.help_fd if self.standby else self._fd

    def read(self, buf: memoryview, lines: list[bytes], rejects: list[Reject]) -> tuple[int, int, bool]:
        if self.standby:
            if self.draining:
                return 0, 0, True  # the primary drains the socket
            try:
                os.eventfd_read(self.help_fd)  # take the call (resets the counter)
            except BlockingIOError:
                return 0, 0, False  # another helper took it
            self.standby = False
            self._quiet_turns = 0
        total, calls, finished, full = self._read_socket(lines, rejects)
        # A backlog: BACKLOG_CALLS full batches or more were waiting. One full batch is no reason
        # to wake a second process: at moderate rates a scheduling hiccup of a millisecond leaves
        # that much. (On unixgram the senders block at net.unix.max_dgram_qlen, 10 here, 512 with
        # systemd, so a backlog, and a helper, is rare there.)
        backlog = full or calls >= BACKLOG_CALLS
        if backlog and self.help_fd is not None and not self._is_helper:
            try:
                os.eventfd_write(self.help_fd, 1)
            except OSError:
                pass
        elif self._is_helper and not self.draining:
            self._quiet_turns = 0 if backlog else self._quiet_turns + 1
            if self._quiet_turns >= QUIET_TURNS_TO_STANDBY:
                self.standby = True
        return total, calls, finished

    def _read_socket(self, lines: list[bytes], rejects: list[Reject]) -> tuple[int, int, bool, bool]:
        """Up to MAX_CALLS_PER_TURN batches. Returns (bytes, calls, finished, queue still full)."""
        total = calls = 0
        receiver = self._receiver
        view = receiver.view
        size = receiver.size
        max_bytes = self.max_bytes
        vlen = receiver.vlen
        for _ in range(MAX_CALLS_PER_TURN):
            try:
                lengths = receiver.receive(self._fd)
            except BlockingIOError:
                return total, calls, self.draining, False
            except ConnectionRefusedError:
                continue  # an ICMP error queued on the socket; not ours to act on
            calls += 1
            total += frame_messages(view, size, lengths, max_bytes, lines, rejects)
            if len(lengths) < vlen:  # the queue is empty: no need to ask again
                return total, calls, self.draining, False
        return total, calls, False, True

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped on this socket (receive buffer full): SO_MEMINFO's
        SK_MEMINFO_DROPS, the same figure as the ``drops`` column of /proc/net/udp."""
        return socket_meminfo(self.sock, SK_MEMINFO_DROPS)

    def begin_drain(self) -> None:
        if self._shutdown_read_on_drain:
            self.sock.shutdown(socket.SHUT_RD)  # senders now get EPIPE: nothing can slip in late
        self.draining = True  # the next read that empties the queue finishes this endpoint

    def close(self, rejects: list[Reject]) -> None:
        self.sock.close()


class DatagramSender:
    """Producer side: a connected datagram socket; each send is one message."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, data: bytes) -> None:
        n = self.sock.send(data)
        if n != len(data):  # cannot happen for datagrams; guard the invariant anyway
            raise OSError(f"short datagram send: {n} of {len(data)} bytes")

    write_all = send  # a datagram is whole or not sent

    def close(self) -> None:
        self.sock.close()


class DatagramSocketTransport(Transport):
    kind = "datagram"
    sharing = SharedSocket()
    max_datagram_bytes: ClassVar[int | None] = None  # the longest datagram the transport carries, if bounded
    # shutdown_read_on_drain: AF_UNIX yes. UDP has no such signal (and refuses shutdown on an
    # unconnected socket): what arrives after the last read is lost, as UDP may lose anything.

    def listen(self, address: str, options: ListenOptions) -> Binding:
        family, bind_address = self._bind_address(address, options)
        queue_info = self._prepare_queue(options)  # before the socket: the kernel reads it at creation
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            rcvbuf = set_receive_buffer(sock, options.rcvbuf)
            cleanup = self._bind(sock, bind_address, options)
        except BaseException:
            sock.close()
            raise
        bound = self._bound_address(sock)
        return Binding(
            address=bound,
            endpoints=[DatagramEndpoint(sock, bound, options.max_line_bytes, self.shutdown_read_on_drain, self._queue_limit(),
                                        self.max_datagram_bytes)],
            info={"effective_rcvbuf": rcvbuf, "requested_rcvbuf": options.rcvbuf, **queue_info},
            cleanup=cleanup,
        )

    def _queue_limit(self) -> int | None:
        """Datagrams the kernel queues before senders block; None when bounded by bytes only."""
        return None

    def _prepare_queue(self, options: ListenOptions) -> dict:
        """Before the socket is made: adjust what bounds the kernel's queue; what it now is (info)."""
        return {}

    def connect(self, address: str, timeout: float | None = None) -> DatagramSender:
        family, target = self._connect_address(address)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.settimeout(timeout)
            sock.connect(target)
        except BaseException:
            sock.close()
            raise
        return DatagramSender(sock)
