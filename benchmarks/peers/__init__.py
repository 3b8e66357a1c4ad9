"""Real-world peers the benchmark runs side by side with loglab's own aggregator.

Each peer receives the very same producers' traffic on one of loglab's transports and has the face
of ``benchmarks.run.systems.System``: ``name``, ``comm``, ``pid``, ``output_path``, ``start()``,
``stop()``, ``read_records()``, and the class methods ``available()`` (can it run here, and if not
why), ``version()``, ``supports(transport, fmt, framing)`` and ``unsupported(...)`` (why not: a
cell it has no input for is skipped by the bench, and the report says so). What they share is in
``daemon.py``. A new peer is a module here and a line in ``PEERS``.
"""

from .rawcopy import RawCopyPeer
from .rsyslog import RsyslogPeer
from .syslog_ng import SyslogNgPeer

# rawcopy is not a log daemon but the floor: a C reader that copies lines and nothing else.
PEERS = {SyslogNgPeer.name: SyslogNgPeer, RsyslogPeer.name: RsyslogPeer, RawCopyPeer.name: RawCopyPeer}

__all__ = ["PEERS", "RawCopyPeer", "RsyslogPeer", "SyslogNgPeer"]
