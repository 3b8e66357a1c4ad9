"""tcp: TCP over loopback by default. Newline framing; Nagle off on the producer side."""

from __future__ import annotations

import socket

from .addresses import InetAddressing, format_inet
from .stream import StreamSocketTransport


class TcpTransport(InetAddressing, StreamSocketTransport):
    name = "tcp"
    description = "TCP socket (127.0.0.1 by default): reliable, ordered, backpressure"

    def _configure_listener(self, sock: socket.socket) -> None:
        # A restarted aggregator can rebind while old connections sit in TIME_WAIT; Linux still
        # refuses a second live listener on the same port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def _configure_sender(self, sock: socket.socket) -> None:
        # One message per write: Nagle plus delayed ACKs would hold small writes for up to 40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _peer(self, conn: socket.socket, addr) -> tuple[str, dict | None]:
        return (format_inet(addr) if addr else "tcp peer (gone)"), None
