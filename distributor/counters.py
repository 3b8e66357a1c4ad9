"""The distributor's counters: what it took from the stream, routed, had acknowledged, moved on a
failure, dead-lettered and saw twice. The same names appear in the stats file (``--stats-file``),
the stderr summary at exit, ``GET /analyzer/stats`` and the README.

Once stopped, every message taken from the stream was acknowledged to the stream (``source_acked``:
an analyzer acknowledged it, or ``dead_lettered``: stored in the dead-letter stream) or handed back
(``handed_back``: negatively acknowledged at exit, so the stream redelivers it at once).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, field

import orjson

from aggregator.files import replace_atomically

LATENCY_SAMPLES = 2048  # the last batches' acknowledgement times kept per analyzer


@dataclass
class AnalyzerCounters:
    routed: int = 0  # messages sent to it (a message sent again after a failure counts again)
    acked: int = 0  # messages it acknowledged (then acknowledged to the stream)
    refused: int = 0  # messages it refused (not a JSON log record): offered to another, or dead-lettered
    batches: int = 0  # deliveries (one per batch)
    failures: int = 0  # deliveries not acknowledged within --ack-timeout (it was then marked down)
    failed_over: int = 0  # messages taken back from it after a failure and routed to the others
    late_acks: int = 0  # messages it acknowledged after they had been failed over: delivered twice
    ack_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES), repr=False)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "ack_ms"}
        samples = sorted(self.ack_ms)
        d["ack_latency_ms"] = {"samples": len(samples), "p50": _pct(samples, 0.5), "p99": _pct(samples, 0.99),
                               "max": samples[-1] if samples else None}  # fmt: skip
        return d


def _pct(sorted_samples: list[float], q: float) -> float | None:
    if not sorted_samples:
        return None
    return sorted_samples[min(len(sorted_samples) - 1, int(q * len(sorted_samples)))]


@dataclass
class DistributorCounters:
    id: str = ""
    consumer: str = ""
    received: int = 0  # messages taken from the stream (a redelivery counts again)
    redelivered: int = 0  # of those, delivered by the stream before (a replica stopped or timed out)
    source_acked: int = 0  # acknowledged to the stream after an analyzer acknowledged them
    dead_lettered: int = 0  # stored in the dead-letter stream after --max-attempts, then acknowledged
    dead_letter_errors: int = 0  # dead-letter publishes that failed (the message is kept and retried)
    handed_back: int = 0  # negatively acknowledged at exit (the stream redelivers them at once)
    routed: int = 0
    batches: int = 0
    failovers: int = 0  # analyzers marked down after a delivery timed out
    failover_messages: int = 0  # messages routed again after a failure: possible duplicates
    duplicates_confirmed: int = 0  # messages acknowledged by two analyzers (a late acknowledgement)
    refusals: int = 0
    waits_no_analyzer: int = 0  # times routing paused because no analyzer was online
    epochs: int = 0  # membership or weight changes seen
    in_hand_peak: int = 0  # most messages held at once (taken, not yet acknowledged to the stream)
    connects: int = 0
    disconnects: int = 0
    reconnects: int = 0
    started_unix_ns: int = 0
    stopped_unix_ns: int = 0
    analyzers: dict[str, AnalyzerCounters] = field(default_factory=dict)

    def analyzer(self, analyzer_id: str) -> AnalyzerCounters:
        c = self.analyzers.get(analyzer_id)
        if c is None:
            c = self.analyzers[analyzer_id] = AnalyzerCounters()
        return c

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "analyzers"}
        d["analyzers"] = {k: v.to_dict() for k, v in sorted(self.analyzers.items())}
        d["written_at_unix_ns"] = time.time_ns()
        return d

    def dumps(self, extra: dict | None = None) -> bytes:
        return orjson.dumps({**self.to_dict(), **(extra or {})}, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"

    def write(self, path, extra: dict | None = None) -> None:
        """Atomically (a reader never sees half a file)."""
        replace_atomically(path, self.dumps(extra))

    def summary(self) -> str:
        per = "; ".join(f"{k}: {v.acked} acked ({v.routed} routed, {v.failures} failures)" for k, v in sorted(self.analyzers.items()))
        return (
            f"distributor {self.id}: {self.received} received, {self.source_acked} acknowledged after an analyzer did, "
            f"{self.dead_lettered} dead-lettered, {self.handed_back} handed back; {self.failovers} failovers "
            f"({self.failover_messages} messages moved, {self.duplicates_confirmed} confirmed duplicates); "
            f"{self.epochs} epochs; {per or 'no analyzer'}"
        )
