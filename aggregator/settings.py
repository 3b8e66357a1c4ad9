"""The aggregator's options, as one object: the CLI builds it, and the event loop
(``server.Aggregator``), the supervisor (``workers.Supervisor``) and the sink read it, instead of
a dozen parameters passed along by hand. Defaults and limits live here; ``aggregator --help``
explains each option."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_MAX_BACKLOG_BYTES = 64 * 1024 * 1024
DEFAULT_COALESCE_US = 200
DEFAULT_FLUSH_INTERVAL_S = 0.01
FSYNC_MODES = ("never", "interval", "always")
MAX_LINE_BYTES_LIMIT = 16 * 1024 * 1024  # memory is bounded by it per connection (README "Memory")
DEFAULT_REJECTS_BURST = 10_000  # records per interval, as journald's RateLimitBurst
DEFAULT_REJECTS_INTERVAL_S = 30.0  # as journald's RateLimitIntervalSec
DEFAULT_MAX_REJECTS_BYTES = 64 * 1024 * 1024
MAX_SECONDS = 1e9  # durations and intervals: beyond this (31 years) a value is a mistake, not a wish


@dataclass(frozen=True)
class Settings:
    transport: str
    output: Path = Path("aggregated_logs.jsonl")
    stats_file: Path | None = None
    stats_interval: float | None = None
    ready_file: Path | None = None
    duration: float | None = None
    max_line_bytes: int = 65536
    max_connections: int = 1024  # the effective limit (after the fd limit), for the whole aggregator
    drain_timeout: float = 5.0
    max_backlog_bytes: int = DEFAULT_MAX_BACKLOG_BYTES
    coalesce_us: int = DEFAULT_COALESCE_US
    peer_credentials: bool = False
    fsync: str = "never"
    fsync_interval: float = 1.0
    flush_interval: float = DEFAULT_FLUSH_INTERVAL_S
    idle_flush: bool = False  # --idle-flush: write pending lines when a loop turn finds little to read (server.run)
    rejects_burst: int = DEFAULT_REJECTS_BURST
    rejects_interval: float = DEFAULT_REJECTS_INTERVAL_S
    max_rejects_bytes: int = DEFAULT_MAX_REJECTS_BYTES
    workers: int = 1
    threads: int = 1  # --threads: event loops in this process (threads.py); the effective number
    format: str = "auto"  # --format: formats.FORMATS
    framing: str = "auto"  # --framing: framing.FRAMINGS (byte streams)

    def for_worker(self, index: int) -> "Settings":
        """Worker ``index``'s share of the aggregator-wide bounds (the sums are the bounds: no
        rounding up per worker); the supervisor stops the workers, so they have no duration."""
        return replace(
            self,
            max_connections=share(self.max_connections, self.workers, index),
            rejects_burst=max(1, share(self.rejects_burst, self.workers, index)),
            duration=None,
        )


def share(total: int, parts: int, index: int) -> int:
    """Part ``index`` of ``total`` split into ``parts`` as evenly as possible: the parts add up
    to ``total`` exactly (3 over 2 workers: 2 and 1)."""
    return total // parts + (1 if index < total % parts else 0)
