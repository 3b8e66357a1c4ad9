"""udp: UDP over loopback by default. One message per datagram; the kernel drops when the
receive buffer is full (counted in /proc/net/snmp Udp RcvbufErrors), and the sender is not told."""

from __future__ import annotations

from .addresses import InetAddressing
from .datagram import DatagramSocketTransport


class UdpTransport(InetAddressing, DatagramSocketTransport):
    name = "udp"
    description = "UDP socket (127.0.0.1 by default): unreliable, may drop under load"
    reliable = False
    max_datagram_bytes = 65535  # an IP datagram's length field: no UDP payload is longer
