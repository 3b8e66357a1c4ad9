"""Per-producer sequence check of an aggregator's (or a peer's) output, and latency samples, in one pass.

``analyze_output(source, expected)`` reads output records (the contract's form: the producer's
object + ``received_ns``) and checks, per producer id, the ``seq`` numbers ``0 .. expected-1``:

* ``received``   distinct sequence numbers seen (in range or not): the messages delivered;
* ``missing``    in-range sequence numbers never seen (lost): ``expected - received_in_range``;
* ``duplicates`` records whose (producer, seq) was already seen (each extra copy counts once);
* ``reordered``  records (not duplicates) whose seq is lower than the highest seq already seen from
                 the same producer, i.e. that arrived after a later message of their producer.
                 A gap alone (loss) is not reordering;
* ``out_of_range`` distinct seqs ``>= expected`` (or any seq of a producer not in ``expected``).

Records that are not JSON objects or lack an integer ``producer``/``seq`` count as ``bad_lines``.

Latency: for the first copy of every message, ``received_ns - intended_ns`` (falling back to
``ts_ns`` when ``intended_ns`` is absent). ``intended_ns`` is the producer's scheduled send time,
so a stalled producer does not hide the stall (no coordinated omission). The samples are kept in
output order in ``SeqCheckResult.latencies_ns`` (an ``array('q')``, not persisted); build the
persisted form with ``results.LatencyRecord.from_samples(result.latencies_ns)``.

Speed: one pass, ``orjson.loads`` per line, a bytearray per producer for "seen": about 1 µs of
bookkeeping per line on top of parsing (2 million lines: a few seconds).
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import orjson

MAX_SEQ = 1 << 32  # a seq beyond this is treated as a bad line, not as a reason to allocate 4 GiB
MAX_MISSING_RANGES = 10


@dataclass
class ProducerCheck:
    """The sequence check of one producer (see the module docstring for each count)."""

    producer: str
    expected: int
    received: int = 0
    missing: int = 0
    duplicates: int = 0
    reordered: int = 0
    out_of_range: int = 0
    missing_ranges: list[list[int]] = field(default_factory=list)  # first MAX_MISSING_RANGES [first, last]

    def to_dict(self) -> dict:
        return {
            "producer": self.producer,
            "expected": self.expected,
            "received": self.received,
            "missing": self.missing,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "out_of_range": self.out_of_range,
            "missing_ranges": [list(r) for r in self.missing_ranges],
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "ProducerCheck":
        return cls(**{**d, "missing_ranges": [list(r) for r in d.get("missing_ranges", [])]})


@dataclass
class SeqCheckResult:
    """Totals over all producers, the per-producer checks, and (not persisted) the latency samples."""

    expected: int = 0
    received: int = 0  # distinct messages delivered (sum of producers' ``received``)
    missing: int = 0
    duplicates: int = 0
    reordered: int = 0
    out_of_range: int = 0
    records: int = 0  # output records read (valid ones, duplicates included)
    bad_lines: int = 0
    unexpected_producers: list[str] = field(default_factory=list)
    first_received_ns: int | None = None
    last_received_ns: int | None = None
    producers: dict[str, ProducerCheck] = field(default_factory=dict)
    latencies_ns: array | None = field(default=None, compare=False, repr=False)  # the receipt stamp's
    observed_latencies_ns: array | None = field(default=None, compare=False, repr=False)  # the observer's

    @property
    def loss_fraction(self) -> float | None:
        """missing / expected (None when nothing was expected)."""
        return self.missing / self.expected if self.expected else None

    @property
    def ok(self) -> bool:
        """Every expected message exactly once, in order, nothing else."""
        return not (self.missing or self.duplicates or self.reordered or self.out_of_range or self.bad_lines or self.unexpected_producers)

    def to_dict(self) -> dict:
        """The persisted form (without ``latencies_ns``)."""
        return {
            "expected": self.expected,
            "received": self.received,
            "missing": self.missing,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "out_of_range": self.out_of_range,
            "records": self.records,
            "bad_lines": self.bad_lines,
            "unexpected_producers": list(self.unexpected_producers),
            "first_received_ns": self.first_received_ns,
            "last_received_ns": self.last_received_ns,
            "producers": {k: p.to_dict() for k, p in self.producers.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "SeqCheckResult":
        d = dict(d)
        d["producers"] = {k: ProducerCheck.from_dict(p) for k, p in d.get("producers", {}).items()}
        d["unexpected_producers"] = list(d.get("unexpected_producers", []))
        d.pop("latencies_ns", None)
        d.pop("observed_latencies_ns", None)
        return cls(**d)


def _lines(source) -> Iterable:
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            yield from f
    else:
        yield from source


def _missing_ranges(seen: bytearray, expected: int, limit: int = MAX_MISSING_RANGES) -> list[list[int]]:
    out: list[list[int]] = []
    i = seen.find(0, 0, expected)
    while i != -1 and len(out) < limit:
        j = seen.find(1, i, expected)
        last = (expected if j == -1 else j) - 1
        out.append([i, last])
        if j == -1:
            break
        i = seen.find(0, j, expected)
    return out


def analyze_output(source, expected: Mapping[str, int], *, keep_latencies: bool = True,
                   observed: Iterable[int] | None = None) -> SeqCheckResult:  # fmt: skip
    """Check ``source`` against ``expected`` = {producer id: messages it was asked to send}.

    ``source``: a path to a JSON-lines file, or an iterable with one item per line of the output,
    in order: the line (bytes/str), its parsed record (dict), or None for a line that is not a
    record. Producers in ``expected`` that sent nothing count as all missing; producers in the
    output but not in ``expected`` are listed in ``unexpected_producers`` and their messages count
    as ``out_of_range``.

    ``observed``: one stamp per line of the same output, in order (the latency observer's,
    ``run/observer.py``); each record's observed latency is its stamp minus its intended send
    time (``observed_latencies_ns``), beside the one from its own ``received_ns``.
    """
    loads = orjson.loads
    # per producer: [seen bytearray, expected, max_seq, received, duplicates, reordered, out_of_range]
    states: dict = {}
    for pid, n in expected.items():
        states[pid] = [bytearray(int(n)), int(n), -1, 0, 0, 0, 0]
    latencies = array("q")
    lat_append = latencies.append
    observed_latencies = array("q")
    stamps = iter(observed) if observed is not None else None
    no_stamp = object()
    records = bad = 0
    first = last = None
    for item in _lines(source):
        stamp = next(stamps, no_stamp) if stamps is not None else no_stamp
        if item is None:
            bad += 1
            continue
        if isinstance(item, dict):
            rec = item
        else:
            try:
                rec = loads(item)
            except orjson.JSONDecodeError:
                if not item.strip():
                    continue  # a blank line is not a record
                bad += 1
                continue
        try:
            pid = rec["producer"]
            seq = rec["seq"]
        except (KeyError, TypeError):
            bad += 1
            continue
        if type(seq) is not int or seq < 0 or seq >= MAX_SEQ or not isinstance(pid, (str, int)):
            bad += 1
            continue
        st = states.get(pid)
        if st is None:
            st = states[pid] = [bytearray(), 0, -1, 0, 0, 0, 0]
        records += 1
        seen = st[0]
        if seq >= len(seen):
            seen.extend(bytes(max(seq + 1, 2 * len(seen)) - len(seen)))
        if seen[seq]:
            st[4] += 1
            continue
        seen[seq] = 1
        st[3] += 1
        if seq < st[2]:
            st[5] += 1
        else:
            st[2] = seq
        if seq >= st[1]:
            st[6] += 1
        if keep_latencies and stamp is not no_stamp:
            sent_ns = rec.get("intended_ns", rec.get("ts_ns"))
            if type(sent_ns) is int:
                observed_latencies.append(stamp - sent_ns)
        received_ns = rec.get("received_ns")
        if type(received_ns) is int:
            if first is None or received_ns < first:
                first = received_ns
            if last is None or received_ns > last:
                last = received_ns
            if keep_latencies:
                sent_ns = rec.get("intended_ns", rec.get("ts_ns"))
                if type(sent_ns) is int:
                    lat_append(received_ns - sent_ns)

    result = SeqCheckResult(records=records, bad_lines=bad, first_received_ns=first, last_received_ns=last)
    for pid, (seen, n, _max_seq, received, dups, reordered, out_of_range) in states.items():
        in_range = received - out_of_range
        check = ProducerCheck(
            producer=str(pid),
            expected=n,
            received=received,
            missing=n - in_range,
            duplicates=dups,
            reordered=reordered,
            out_of_range=out_of_range,
            missing_ranges=_missing_ranges(seen, n) if in_range < n else [],
        )
        result.producers[str(pid)] = check
        if pid not in expected:
            result.unexpected_producers.append(str(pid))
        result.expected += n
        result.received += received
        result.missing += check.missing
        result.duplicates += dups
        result.reordered += reordered
        result.out_of_range += out_of_range
    result.latencies_ns = latencies if keep_latencies else None
    result.observed_latencies_ns = observed_latencies if keep_latencies and observed is not None else None
    return result


def expected_counts(producers: int, count: int, prefix: str = "p") -> dict[str, int]:
    """The ids ``measure.Workload.producer_args`` gives (``p0``, ``p1``, ...) -> ``count`` each."""
    return {f"{prefix}{i}": count for i in range(producers)}


__all__ = ["ProducerCheck", "SeqCheckResult", "analyze_output", "expected_counts"]
