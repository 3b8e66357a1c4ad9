"""Datagram sockets (unixgram, udp): one bound socket; one message per datagram.

Shared by both: reading every queued datagram per turn (Python has no recvmmsg, so one recv per
datagram is the floor), truncation detection with ``MSG_TRUNC`` (the kernel then returns the real
length, so an oversize datagram is rejected with its true size), and the receive buffer request
(``SO_RCVBUFFORCE`` when permitted, else ``SO_RCVBUF``, which the kernel silently caps at
``net.core.rmem_max``; the effective size is read back and reported).

Subclasses take their addressing hooks from ``addresses.py``, as stream sockets do.
"""

from __future__ import annotations

import socket

from ..framing import DATAGRAM_TRUNCATED, REJECT_PREFIX_BYTES, Reject, frame_datagram
from .base import Binding, ListenOptions, Transport

# Datagrams read per turn at most, so the loop still turns (signals, stats) under a flood.
MAX_DATAGRAMS_PER_TURN = 512

_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def set_receive_buffer(sock: socket.socket, size: int | None) -> int:
    """Request ``size`` bytes of receive buffer; return what the kernel granted."""
    if size:
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


class DatagramEndpoint:
    __slots__ = ("sock", "label", "max_bytes", "draining", "_fd")
    peer_fields = None  # datagram senders are anonymous (no connection to ask)

    def __init__(self, sock: socket.socket, label: str, max_bytes: int) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._fd = sock.fileno()
        self.label = label
        self.max_bytes = max_bytes
        self.draining = False

    def fileno(self) -> int:
        return self._fd

    def read(self, buf: memoryview, lines: list[bytes], rejects: list[Reject]) -> tuple[int, int, bool]:
        total = calls = 0
        recv_into = self.sock.recv_into
        max_bytes = self.max_bytes
        append = lines.append
        for _ in range(MAX_DATAGRAMS_PER_TURN):
            try:
                n = recv_into(buf, max_bytes, socket.MSG_TRUNC)
            except BlockingIOError:
                return total, calls, self.draining
            except ConnectionRefusedError:
                continue  # an ICMP error queued on the socket; not ours to act on
            calls += 1
            total += n
            if n > max_bytes:
                rejects.append(Reject(DATAGRAM_TRUNCATED, buf[: min(max_bytes, REJECT_PREFIX_BYTES)].tobytes(), n))
            elif n and buf[n - 1] == 10:  # the optional trailing newline: drop it while copying
                append(frame_datagram(buf[:n].tobytes()) if n > 1 and buf[n - 2] == 13 else buf[: n - 1].tobytes())
            else:
                append(buf[:n].tobytes())
        return total, calls, False

    def begin_drain(self) -> None:
        self.draining = True  # the next EAGAIN means the kernel's queue is empty

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
            endpoints=[DatagramEndpoint(sock, bound, options.max_line_bytes)],
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
