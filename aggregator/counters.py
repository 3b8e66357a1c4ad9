"""Counters: what the aggregator did, with names that say what they count.

The same names appear in the stats file (``--stats-file``), the stderr summary and the docs.
Invariant once the aggregator has stopped: ``messages_received == messages_written +
sum(rejected.values()) + messages_unwritten``; empty lines are not messages and are counted
apart. ``messages_unwritten`` is 0 unless a stop found the output disk still full.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields

from .files import Target


@dataclass
class Counters:
    transport: str = ""
    address: str = ""
    messages_received: int = 0  # messages framed (valid or not)
    messages_written: int = 0  # valid messages written to the output file
    messages_unwritten: int = 0  # valid messages a stop could not write (the disk still full at --drain-timeout)
    bytes_received: int = 0  # raw bytes read from the transport
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count
    empty_lines: int = 0  # blank lines on stream transports / empty datagrams (skipped)
    syslog_malformed: int = 0  # messages kept although their syslog header could not be read (--format syslog/auto)
    connections_opened: int = 0
    connections_closed: int = 0
    connections_open_peak: int = 0
    # Connections are never accepted and then dropped: at the limit, accepting pauses and the
    # kernel's listen backlog holds (and, when full, pushes back on) the newcomers.
    effective_max_connections: int | None = None  # --max-connections, or less if the fd limit says so
    accept_paused: int = 0  # times accepting paused because effective_max_connections were open
    accept_errors: int = 0  # accept() failures (EMFILE, ENFILE, ...): accepting retried 0.1 s later
    connections_spread: int = 0  # --threads: connections the main loop moved to a reader thread when it fell behind
    read_calls: int = 0  # read/recv system calls that returned data or EOF
    output_write_calls: int = 0  # write(2) calls on the output file
    output_bytes: int = 0
    output_write_errors: int = 0  # failed writes (e.g. ENOSPC); the data is kept and retried
    output_reopens: int = 0  # SIGUSR1 reopens
    fsync_calls: int = 0
    reading_paused: int = 0  # times reading stopped because the output backlog was full
    rejects_suppressed: int = 0  # rejects counted in `rejected` but summarised, not written one by one
    rejects_write_errors: int = 0  # failed writes of the rejects file (kept and retried)
    rejects_pending_bytes: int = 0  # rejects records held, not yet written (disk full)
    started_unix_ns: int = 0
    stopped_unix_ns: int = 0
    effective_rcvbuf: int | None = None  # datagram sockets: what the kernel granted
    kernel_drops: int | None = None  # datagram sockets: datagrams the kernel dropped (buffer full)
    effective_pipe_size: int | None = None  # fifo: what the kernel granted
    effective_max_dgram_qlen: int | None = None  # unixgram: net.unix.max_dgram_qlen when the socket was made
    hot_path: str = ""  # "native" (the C extension) or "python (why)": hotpath.describe()

    def reject(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + n

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rejected_total"] = self.rejected_total
        d["written_at_unix_ns"] = time.time_ns()
        return d

    def write(self, target: Target, extra: dict | None = None) -> None:
        """Write atomically (``files.Target``) so a reader never sees half a file."""
        target.write((json.dumps({**self.to_dict(), **(extra or {})}, indent=2, sort_keys=True) + "\n").encode())

    def summary(self) -> str:
        rejected = ", ".join(f"{k}={v}" for k, v in sorted(self.rejected.items())) or "none"
        return (
            f"aggregator: {self.transport} {self.address}: "
            f"{self.messages_received} received, {self.messages_written} written, "
            f"{self.rejected_total} rejected ({rejected}), {self.empty_lines} empty lines, "
            f"{self.bytes_received} bytes in; connections {self.connections_opened} opened, "
            f"{self.connections_closed} closed, accepting paused {self.accept_paused} times"
            + (f"; {self.syslog_malformed} with a malformed syslog header (kept)" if self.syslog_malformed else "")
            + (f"; {self.kernel_drops} datagrams dropped by the kernel" if self.kernel_drops else "")
            + (f"; {self.rejects_suppressed} rejects summarised, not written one by one" if self.rejects_suppressed else "")
        )


# How per-worker counters combine (--workers): most are sums; these are not.
_EARLIEST = {"started_unix_ns"}
_LATEST = {"stopped_unix_ns"}
# One socket read by every worker reports the same figures to each: not summed.
_SAME_FOR_ALL = {"effective_rcvbuf", "effective_pipe_size", "effective_max_dgram_qlen", "kernel_drops", "transport", "address",
                 "hot_path"}


def merge_counters(parts: list[dict]) -> Counters:
    """One Counters from the stats files of several workers. ``connections_open_peak`` becomes
    the sum of the workers' peaks: an upper bound of the peak they reached together."""
    merged = Counters()
    names = [f.name for f in fields(Counters)]
    for name in names:
        values = [p[name] for p in parts if p.get(name) is not None]
        if not values:
            continue
        if name == "rejected":
            total: dict[str, int] = {}
            for v in values:
                for reason, n in v.items():
                    total[reason] = total.get(reason, 0) + n
            setattr(merged, name, total)
        elif name in _EARLIEST:
            setattr(merged, name, min(values))
        elif name in _LATEST:
            setattr(merged, name, max(values))
        elif name in _SAME_FOR_ALL:
            setattr(merged, name, max(values) if name == "kernel_drops" else values[0])
        else:
            setattr(merged, name, sum(values))
    return merged
