"""Real-world peers the benchmark runs side by side with loglab's own aggregator.

Each peer receives the very same producers' traffic on one of loglab's transports and has the face
of ``benchmarks.run.systems.System``: ``name``, ``comm``, ``pid``, ``output_path``, ``start()``,
``stop()``, ``read_records()``, and the class methods ``available()`` (can it run here, and if not
why), ``version()`` and ``supports(transport)`` (a transport it has no source for is skipped by the
bench, and the report says so). A new peer is a module here and a line in ``PEERS``.
"""

from .syslog_ng import SyslogNgPeer

PEERS = {SyslogNgPeer.name: SyslogNgPeer}

__all__ = ["PEERS", "SyslogNgPeer"]
