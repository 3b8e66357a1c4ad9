"""What an analyzer computes from the records it receives (no I/O, so tests drive it directly):

* counts per host, per producer (``<host>/<producer>``) and per level;
* an error-rate window: records of level ``error`` (and ``fatal``/``critical``) among all records
  of the last ``window_s`` seconds, in one-second buckets;
* a per-producer sequence check: each ``seq`` seen marks a bit, so a second sighting is a
  **duplicate**; ``gaps`` are the sequence numbers below the highest seen that this analyzer has not
  seen. With several analyzers, one analyzer's gaps are mostly the others' share: the union of every
  analyzer's sightings (``--ledger`` files) is what proves nothing was lost.

A record is one JSON object with at least ``producer`` and ``seq`` (the producer's format); anything
else is refused (``refused``), so the distributor offers it to another analyzer and, in the end, to
the dead-letter stream.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import orjson

ERROR_LEVELS = frozenset({"error", "fatal", "critical"})


# Seqs below this are marked in a bitmap (at most 8 MiB per producer); above, in a set: a record
# with a huge seq (2**60) must not make the analyzer allocate its bitmap up to there.
BITMAP_SEQS = 1 << 26


@dataclass
class ProducerSeq:
    seen: bytearray = field(default_factory=bytearray)  # one bit per seq below BITMAP_SEQS
    seen_high: set = field(default_factory=set)  # the seqs seen at or above BITMAP_SEQS
    received: int = 0  # distinct seqs seen
    duplicates: int = 0
    max_seq: int = -1

    def add(self, seq: int) -> bool:
        """Mark ``seq``; False if it was seen before (a duplicate)."""
        if seq >= BITMAP_SEQS:
            if seq in self.seen_high:
                self.duplicates += 1
                return False
            self.seen_high.add(seq)
            self.received += 1
            self.max_seq = max(self.max_seq, seq)
            return True
        byte, bit = seq >> 3, 1 << (seq & 7)
        seen = self.seen
        if byte >= len(seen):
            seen.extend(bytes(min(max(byte + 1 - len(seen), len(seen)), BITMAP_SEQS // 8 - len(seen))))
        if seen[byte] & bit:
            self.duplicates += 1
            return False
        seen[byte] |= bit
        self.received += 1
        if seq > self.max_seq:
            self.max_seq = seq
        return True

    @property
    def gaps(self) -> int:
        return self.max_seq + 1 - self.received

    def to_dict(self) -> dict:
        return {"received": self.received, "duplicates": self.duplicates, "max_seq": self.max_seq, "gaps": self.gaps}


class ErrorWindow:
    """Errors among records over the last ``window_s`` seconds, in one-second buckets."""

    def __init__(self, window_s: int = 10, clock=time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self.buckets: deque[list[int]] = deque()  # [second, records, errors]

    def add(self, records: int, errors: int) -> None:
        now = int(self.clock())
        b = self.buckets
        if b and b[-1][0] == now:
            b[-1][1] += records
            b[-1][2] += errors
        else:
            b.append([now, records, errors])
        self._trim(now)

    def _trim(self, now: int) -> None:
        while self.buckets and self.buckets[0][0] <= now - self.window_s:
            self.buckets.popleft()

    def figures(self) -> dict:
        self._trim(int(self.clock()))
        records = sum(b[1] for b in self.buckets)
        errors = sum(b[2] for b in self.buckets)
        return {"window_s": self.window_s, "records": records, "errors": errors, "error_rate": errors / records if records else 0.0}


class Analysis:
    def __init__(self, window_s: int = 10) -> None:
        self.per_host: dict[str, int] = {}
        self.per_level: dict[str, int] = {}
        self.producers: dict[str, ProducerSeq] = {}
        self.window = ErrorWindow(window_s)
        self.messages = 0  # records accepted (acknowledged)
        self.duplicates = 0
        self.refused = 0

    def add_batch(self, lines: list[bytes]) -> tuple[list[int], list[tuple[str, int]]]:
        """Analyze ``<host> <json>`` lines. Returns the indices refused and the (key, seq) accepted."""
        loads = orjson.loads
        per_host, per_level, producers = self.per_host, self.per_level, self.producers
        refused: list[int] = []
        accepted: list[tuple[str, int]] = []
        errors = 0
        for i, line in enumerate(lines):
            host, _, data = line.partition(b" ")
            try:
                rec = loads(data)
                producer, seq = rec["producer"], rec["seq"]
                if not isinstance(seq, int) or seq < 0 or not isinstance(producer, str):
                    raise TypeError
            except (orjson.JSONDecodeError, KeyError, TypeError):
                refused.append(i)
                continue
            h = host.decode(errors="replace")
            key = f"{h}/{producer}"
            ps = producers.get(key)
            if ps is None:
                ps = producers[key] = ProducerSeq()
            if not ps.add(seq):
                self.duplicates += 1
            per_host[h] = per_host.get(h, 0) + 1
            level = rec.get("level", "none")
            if not isinstance(level, str):
                level = "none"
            per_level[level] = per_level.get(level, 0) + 1
            if level in ERROR_LEVELS:
                errors += 1
            accepted.append((key, seq))
        self.messages += len(accepted)
        self.refused += len(refused)
        self.window.add(len(accepted), errors)
        return refused, accepted

    def figures(self) -> dict:
        gaps = sum(p.gaps for p in self.producers.values())
        return {"messages": self.messages, "duplicates": self.duplicates, "refused": self.refused, "gaps": gaps,
                "per_host": dict(sorted(self.per_host.items())), "per_level": dict(sorted(self.per_level.items())),
                "error_window": self.window.figures(),
                "producers": {k: p.to_dict() for k, p in sorted(self.producers.items())}}  # fmt: skip
