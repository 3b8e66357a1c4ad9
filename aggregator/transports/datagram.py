"""Datagram sockets (unixgram, udp): one bound socket; one message per datagram.

Shared by both: reading up to 64 datagrams per system call with ``recvmmsg`` (``mmsg.py``;
Python's own socket calls read one), truncation detection with ``MSG_TRUNC`` (the kernel then
returns the real length, so an oversize datagram is rejected with its true size), and the receive buffer request
(``SO_RCVBUFFORCE`` when permitted, else ``SO_RCVBUF``, which the kernel silently caps at
``net.core.rmem_max``; the effective size is read back and reported).

Subclasses take their addressing hooks from ``addresses.py``, as stream sockets do.
"""

from __future__ import annotations

import socket
import struct
from typing import ClassVar

from ..framing import DATAGRAM_TRUNCATED, REJECT_PREFIX_BYTES, Reject, frame_datagram
from .mmsg import MultiReceiver
from .base import Binding, ListenOptions, Transport

# recvmmsg batch size, and batches per turn at most, so the loop still turns under a flood.
DATAGRAMS_PER_CALL = 64
MAX_CALLS_PER_TURN = 8

_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_SO_MEMINFO = 55  # Linux: u32 sk_meminfo[SK_MEMINFO_VARS]; index 8 = SK_MEMINFO_DROPS
_MEMINFO = struct.Struct("9I")


def set_receive_buffer(sock: socket.socket, size: int | None) -> int:
    """Request ``size`` bytes of receive buffer; return what the kernel granted."""
    if size:
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


class DatagramEndpoint:
    __slots__ = ("sock", "label", "max_bytes", "draining", "shared_by_processes", "_fd", "_receiver", "_shutdown_read_on_drain")
    peer_fields = None  # datagram senders are anonymous (no connection to ask)
    newline_free = False  # a datagram may hold newlines inside its JSON

    def __init__(self, sock: socket.socket, label: str, max_bytes: int, shutdown_read_on_drain: bool = False) -> None:
        sock.setblocking(False)
        self._shutdown_read_on_drain = shutdown_read_on_drain
        self.sock = sock
        self._fd = sock.fileno()
        self.label = label
        self.max_bytes = max_bytes
        self.draining = False
        self.shared_by_processes = False  # set under --workers: every worker reads this socket
        # Room for the optional line terminator: the limit is on the message, not the newline.
        self._receiver = MultiReceiver(DATAGRAMS_PER_CALL, max_bytes + 2)

    def fileno(self) -> int:
        return self._fd

    def read(self, buf: memoryview, lines: list[bytes], rejects: list[Reject]) -> tuple[int, int, bool]:
        # ``buf`` (the loop's stream buffer) is not used: datagrams land in the receiver's own.
        total = calls = 0
        receiver = self._receiver
        view = receiver.view
        size = receiver.size
        max_bytes = self.max_bytes
        append = lines.append
        for _ in range(MAX_CALLS_PER_TURN):
            try:
                lengths = receiver.receive(self._fd)
            except BlockingIOError:
                return total, calls, self.draining
            except ConnectionRefusedError:
                continue  # an ICMP error queued on the socket; not ours to act on
            calls += 1
            offset = 0
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
            if len(lengths) < DATAGRAMS_PER_CALL:  # the queue is empty: no need to ask again
                return total, calls, self.draining
        return total, calls, False

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped on this socket (receive buffer full): SO_MEMINFO's
        SK_MEMINFO_DROPS, the same figure as the ``drops`` column of /proc/net/udp."""
        try:
            return _MEMINFO.unpack(self.sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, _MEMINFO.size))[8]
        except OSError:
            return None

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

    def close(self) -> None:
        self.sock.close()


class DatagramSocketTransport(Transport):
    kind = "datagram"
    parallel = "shared"
    # AF_UNIX: shutdown(SHUT_RD) makes every later send fail with EPIPE, so draining the queue
    # after it is exact. UDP has no such signal (and refuses shutdown on an unconnected socket):
    # what arrives after the last read is lost, as UDP may lose anything.
    shutdown_read_on_drain: ClassVar[bool] = False

    def listen(self, address: str, options: ListenOptions) -> Binding:
        family, bind_address = self._bind_address(address, options)
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
            endpoints=[DatagramEndpoint(sock, bound, options.max_line_bytes, self.shutdown_read_on_drain)],
            info={"effective_rcvbuf": rcvbuf, "requested_rcvbuf": options.rcvbuf},
            cleanup=cleanup,
        )

    def connect(self, address: str) -> DatagramSender:
        family, target = self._connect_address(address)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.connect(target)
        except BaseException:
            sock.close()
            raise
        return DatagramSender(sock)
