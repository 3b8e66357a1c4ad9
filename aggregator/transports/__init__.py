"""The transport registry: name -> transport. The one list of transports: the CLIs' choices, the
tests' parameters, the benchmark's cells and the peers' support are all derived from it, by the
transports' own attributes (``transport_names(kind="datagram")``, ``reliable=True``, ...).

See ``base.py`` for the interface and the class tree.
"""

from __future__ import annotations

from .base import AddressInUse, BadAddress, Binding, ListenOptions, Transport, TransportError
from .fifo import FifoTransport
from .seqpacket import SeqpacketTransport
from .tcp import TcpTransport
from .udp import UdpTransport
from .unixgram import UnixDatagramTransport
from .unixsock import UnixStreamTransport

TRANSPORTS: dict[str, Transport] = {
    t.name: t
    for t in (
        UnixStreamTransport(), UnixDatagramTransport(), TcpTransport(), UdpTransport(), FifoTransport(),
        SeqpacketTransport(),
    )
}
TRANSPORT_NAMES = tuple(TRANSPORTS)


def transport_names(**attributes) -> tuple[str, ...]:
    """The registered transports whose attributes equal every one given, in registry order:
    ``transport_names(kind="stream", reliable=True)``, ``transport_names(address_kind="path")``."""
    return tuple(name for name, t in TRANSPORTS.items() if all(getattr(t, k) == v for k, v in attributes.items()))


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
    "transport_names",
]
