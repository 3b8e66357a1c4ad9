"""The shipper's counters: what it read, sent, had acknowledged, retried and deduplicated.

The same names appear in the stats file (``--stats-file``), the stderr summary at exit and the
README. Once stopped, every line read was shipped (``lines_shipped`` + ``dedup_hits`` counts each
acknowledged publish) or is behind the checkpoint, to be read again by the next run.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aggregator.files import replace_atomically


@dataclass
class ShipperCounters:
    host: str = ""
    file: str = ""
    subject: str = ""
    lines_read: int = 0  # lines read from the file (a line read again after a retry counts again)
    lines_shipped: int = 0  # publishes acknowledged as stored
    dedup_hits: int = 0  # publishes acknowledged as duplicates (already stored: a replay)
    bytes_shipped: int = 0  # payload bytes of lines_shipped
    batches: int = 0  # batches fully acknowledged
    publish_errors: int = 0  # publishes refused by the server (e.g. stream full) or failed to send
    publish_errors_by_reason: dict[str, int] = field(default_factory=dict)
    ack_timeouts: int = 0  # batches whose acknowledgements did not all come within --ack-timeout
    retries: int = 0  # times the shipper went back to its checkpoint and published again
    inflight_peak: int = 0  # most publishes awaiting acknowledgement at once
    checkpoint_offset: int = 0  # acknowledged offset in the current file
    checkpoint_writes: int = 0
    lag_bytes: int = 0  # bytes in the file(s) not yet acknowledged
    rotations_followed: int = 0
    truncations: int = 0
    checkpoint_file_missing: int = 0  # the checkpoint's file was gone at start: started at 0 of --file
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    reconnects: int = 0
    started_unix_ns: int = 0
    stopped_unix_ns: int = 0

    def publish_error(self, reason: str, n: int = 1) -> None:
        self.publish_errors += n
        self.publish_errors_by_reason[reason] = self.publish_errors_by_reason.get(reason, 0) + n

    def to_dict(self) -> dict:
        d = asdict(self)
        d["written_at_unix_ns"] = time.time_ns()
        return d

    def write(self, path: Path, extra: dict | None = None) -> None:
        """Atomically (a reader never sees half a file; a failed write leaves no temp file)."""
        replace_atomically(path, (json.dumps({**self.to_dict(), **(extra or {})}, indent=2, sort_keys=True) + "\n").encode())

    def summary(self) -> str:
        errors = ", ".join(f"{k}={v}" for k, v in sorted(self.publish_errors_by_reason.items())) or "none"
        return (
            f"shipper: {self.file} -> {self.subject}: {self.lines_read} lines read, {self.lines_shipped} shipped, "
            f"{self.dedup_hits} dedup hits, {self.batches} batches, {self.publish_errors} publish errors ({errors}), "
            f"{self.ack_timeouts} ack timeouts, {self.retries} retries, lag {self.lag_bytes} bytes, "
            f"{self.rotations_followed} rotations followed; connects {self.connects}, disconnects {self.disconnects}"
        )
