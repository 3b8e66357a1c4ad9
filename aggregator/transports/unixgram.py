"""unixgram: AF_UNIX SOCK_DGRAM. One message per datagram.

Unlike udp, a blocking sender waits when the receiver's queue is full
(``net.unix.max_dgram_qlen`` datagrams, or the receive buffer), so nothing is dropped. At
shutdown, ``shutdown(SHUT_RD)`` makes senders' next send fail with EPIPE, so the drain is exact.
"""

from __future__ import annotations

import socket

from .addresses import UnixPathAddressing
from .base import SingleReader
from .datagram import DatagramSocketTransport


class UnixDatagramTransport(UnixPathAddressing, DatagramSocketTransport):
    name = "unixgram"
    description = "Unix domain datagram socket (AF_UNIX, SOCK_DGRAM): reliable locally, senders block when full"
    socket_type = socket.SOCK_DGRAM
    default_filename = "unixgram.sock"
    shutdown_read_on_drain = True
    # One reader: a Unix datagram socket's queue is in send order, so one reader keeps each
    # sender's order; two readers interleave their batches in the output (measured before this:
    # each producer had 3-50 lines out of order with --workers 2). Its senders block at a queue
    # of net.unix.max_dgram_qlen datagrams, so a second reader rarely had anything to take.
    sharing = SingleReader("one reader keeps each sender's datagrams in order")

    def _queue_limit(self) -> int | None:
        # AF_UNIX datagram sockets queue at most net.unix.max_dgram_qlen datagrams (10 unless
        # systemd raised it to 512), whatever the receive buffer.
        try:
            with open("/proc/sys/net/unix/max_dgram_qlen") as f:
                return int(f.read())
        except (OSError, ValueError):
            return None
