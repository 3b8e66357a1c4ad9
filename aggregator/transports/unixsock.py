"""unixsock: AF_UNIX SOCK_STREAM. Newline framing; the peer's pid/uid via SO_PEERCRED."""

from __future__ import annotations

import socket
import struct

from .addresses import UnixPathAddressing
from .stream import StreamSocketTransport

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    return _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))


class UnixStreamTransport(UnixPathAddressing, StreamSocketTransport):
    name = "unixsock"
    description = "Unix domain stream socket (AF_UNIX, SOCK_STREAM): reliable, ordered, backpressure"
    socket_type = socket.SOCK_STREAM
    default_filename = "unixsock.sock"
    shutdown_read_on_drain = True

    def _peer(self, conn: socket.socket, addr) -> tuple[str, dict | None]:
        # The kernel's word on who connected (at connect time): not forgeable by the client.
        pid, uid, gid = peer_credentials(conn)
        return f"pid={pid},uid={uid},gid={gid}", {"peer_pid": pid, "peer_uid": uid, "peer_gid": gid}
