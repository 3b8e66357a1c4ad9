"""The transport registry: name -> transport. The CLIs' choices come from here.

See ``base.py`` for the interface and the class tree.
"""

from __future__ import annotations

from .base import AddressInUse, BadAddress, Binding, ListenOptions, Transport, TransportError
from .fifo import FifoTransport
from .tcp import TcpTransport
from .udp import UdpTransport
from .unixgram import UnixDatagramTransport
from .unixsock import UnixStreamTransport

TRANSPORTS: dict[str, Transport] = {
    t.name: t for t in (UnixStreamTransport(), UnixDatagramTransport(), TcpTransport(), UdpTransport(), FifoTransport())
}
TRANSPORT_NAMES = tuple(TRANSPORTS)


def get_transport(name: str) -> Transport:
    try:
        return TRANSPORTS[name]
    except KeyError:
        raise BadAddress(f"unknown transport {name!r}; choose one of: {', '.join(TRANSPORT_NAMES)}") from None


__all__ = [
    "AddressInUse",
    "BadAddress",
    "Binding",
    "ListenOptions",
    "TRANSPORTS",
    "TRANSPORT_NAMES",
    "Transport",
    "TransportError",
    "get_transport",
]
