"""Real-world peers the benchmark runs side by side with loglab's own aggregator.

Each peer receives the very same producers' traffic on one of loglab's transports and exposes the
face of ``benchmarks.systems.System``: ``name``, ``pid``, ``output_path``, ``start()``, ``stop()``,
``read_records()`` and ``version()``, plus ``available()`` to say whether it can run here.
"""

from .syslog_ng import SyslogNgPeer

__all__ = ["SyslogNgPeer"]
