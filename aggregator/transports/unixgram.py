"""unixgram: AF_UNIX SOCK_DGRAM. One message per datagram.

Unlike udp, a blocking sender waits when the receiver's queue is full
(``net.unix.max_dgram_qlen`` datagrams, or the receive buffer), so nothing is dropped. At
shutdown, ``shutdown(SHUT_RD)`` makes senders' next send fail with EPIPE, so the drain is exact.

The queue is 10 datagrams by default: too few for the event loop to coalesce (it then never
pauses, see ``server.COALESCE_BELOW``). ``--max-dgram-qlen N`` raises the sysctl to N before the
socket is made, as systemd raises it to 512 at boot: only as root (CAP_NET_ADMIN), for the whole
network namespace, never lowered, and kept after the aggregator exits (as systemd's is). The
effective value is printed and in the stats, whether it could be raised or not.
"""

from __future__ import annotations

import socket
import sys

MAX_DGRAM_QLEN = "/proc/sys/net/unix/max_dgram_qlen"

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
            with open(MAX_DGRAM_QLEN) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def _prepare_queue(self, options) -> dict:
        requested = options.max_dgram_qlen
        current = self._queue_limit()
        if requested and current is not None and current < requested:
            try:
                with open(MAX_DGRAM_QLEN, "w") as f:
                    f.write(f"{requested}\n")
            except OSError as exc:
                print(f"aggregator: cannot raise net.unix.max_dgram_qlen from {current} to {requested}: "
                      f"{exc.strerror} (root is needed); senders block at {current} queued datagrams",
                      file=sys.stderr, flush=True)  # fmt: skip
        return {"effective_max_dgram_qlen": self._queue_limit(), "requested_max_dgram_qlen": requested}
