"""Statistics for benchmark results: percentiles, latency summaries, spreads of repeats, ratios.

Pure functions on plain numbers; nothing here starts a process or reads a file.

Definitions (the report and the tests rely on them)
---------------------------------------------------
* Percentile: **nearest rank**. For ``n`` sorted values and ``0 < q <= 100`` the q-th percentile is
  the value at 1-based rank ``ceil(q / 100 * n)``; ``q = 0`` is the minimum. It is always one of the
  samples (no interpolation), so ``p100 == max`` and, for 1000 samples ``1..1000``, ``p99.9 == 999``.
  The rank is computed in exact decimal arithmetic, so ``q = 99.9`` does not fall foul of float
  rounding (``99.9 / 100 * 1000`` is 999.0000000000001 in floats).
* Median of repeats: :func:`statistics.median` (mean of the two middle values for an even count).
* Spread: the repeats' median with their minimum and maximum (pyperf/hyperfine style: every raw
  value is kept in the results; the spread is computed from them when needed).
* Within noise: two spreads whose ``[min, max]`` ranges overlap cannot be ranked.
* Ratio of two spreads ``a / b``: the ratio of the medians, with the range
  ``[min(a) / max(b), max(a) / min(b)]``, i.e. the extremes over every pairing of an ``a`` repeat
  with a ``b`` repeat (conservative: it does not assume repeat ``i`` of one system has anything to
  do with repeat ``i`` of the other).
* Latency histogram: HDR-style, log-linear: values ``< 2**SUB_BITS`` ns get one bucket each; above
  that, every power-of-two range ``[2**k, 2**(k+1))`` is split into ``2**SUB_BITS`` equal buckets,
  so a bucket is at most ``1 / 2**SUB_BITS`` (3.1 %) of its values wide. Negative latencies (a peer
  whose receipt stamp precedes the send, see ``benchmarks/peers/syslog_ng.py``) go into one bucket
  ``[min, -1]``. Buckets are ``[low_ns, high_ns, count]`` with inclusive bounds, empty ones left out.
"""

from __future__ import annotations

import bisect
import math
import statistics
from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable, Sequence

PERCENTILE_METHOD = "nearest rank: the value at 1-based rank ceil(q/100 * n) of the sorted samples (q=0: minimum)"
LATENCY_PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 50), ("p90", 90), ("p99", 99), ("p99_9", 99.9))
SUB_BITS = 5  # histogram: 32 linear sub-buckets per power of two
DEFAULT_MAX_SAMPLES = 20_000


def nearest_rank(n: int, q: float) -> int:
    """The 1-based nearest rank of the q-th percentile among ``n`` values (1..n)."""
    if n <= 0:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile out of range: {q}")
    if q == 0:
        return 1
    rank = math.ceil(Decimal(str(q)) / Decimal(100) * n)
    return min(max(int(rank), 1), n)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank q-th percentile (0..100) of values already sorted ascending."""
    return sorted_values[nearest_rank(len(sorted_values), q) - 1]


def latency_summary(samples_ns: Iterable[int]) -> dict:
    """Exact summary of every latency sample (ns): count, min, mean, p50, p90, p99, p99.9, max.

    Returns ``{"count", "min_ns", "mean_ns", "p50_ns", "p90_ns", "p99_ns", "p99_9_ns", "max_ns",
    "negative"}`` (``negative``: samples below zero, see the module docstring). With no samples,
    ``count`` is 0 and the other values are None (``negative`` 0).
    """
    values = sorted(samples_ns)
    n = len(values)
    out: dict = {"count": n}
    if not n:
        out.update({"min_ns": None, "mean_ns": None, **{f"{name}_ns": None for name, _ in LATENCY_PERCENTILES}, "max_ns": None})
        out["negative"] = 0
        return out
    out["min_ns"] = int(values[0])
    out["mean_ns"] = float(math.fsum(values) / n)
    for name, q in LATENCY_PERCENTILES:
        out[f"{name}_ns"] = int(percentile(values, q))
    out["max_ns"] = int(values[-1])
    out["negative"] = bisect.bisect_left(values, 0)  # sorted: the negatives are a prefix
    return out


def subsample(samples: Sequence[int], limit: int = DEFAULT_MAX_SAMPLES) -> list[int]:
    """At most ``limit`` samples, evenly spaced over ``samples`` in their given order.

    With ``n > limit``, the kept indices are ``floor(i * n / limit)`` for ``i in range(limit)``
    (deterministic; the first sample is always kept). The order is kept (arrival order when the
    samples come from an output file), so a reader can still plot latency over time.
    """
    n = len(samples)
    if limit <= 0:
        return []
    if n <= limit:
        return [int(x) for x in samples]
    return [int(samples[(i * n) // limit]) for i in range(limit)]


def _bucket_of(value: int) -> tuple[int, int]:
    """(low, high) inclusive bounds of the histogram bucket holding ``value`` (>= 0)."""
    if value < (1 << SUB_BITS):
        return value, value
    k = value.bit_length() - 1  # value in [2**k, 2**(k+1))
    width = 1 << (k - SUB_BITS)
    low = (value // width) * width
    return low, low + width - 1


def histogram(samples_ns: Iterable[int]) -> list[list[int]]:
    """HDR-style log-linear histogram of every sample (see the module docstring)."""
    counts: dict[tuple[int, int], int] = {}
    neg_min = None
    neg_count = 0
    for v in samples_ns:
        v = int(v)
        if v < 0:
            neg_count += 1
            neg_min = v if neg_min is None or v < neg_min else neg_min
            continue
        key = _bucket_of(v)
        counts[key] = counts.get(key, 0) + 1
    out = [[low, high, n] for (low, high), n in sorted(counts.items())]
    if neg_count:
        out.insert(0, [neg_min, -1, neg_count])
    return out


@dataclass(frozen=True)
class Spread:
    """A figure over repeats: median with min and max, and every value it came from."""

    median: float
    min: float
    max: float
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    def overlaps(self, other: "Spread") -> bool:
        """True when the two [min, max] ranges overlap: too noisy to rank the two."""
        return self.min <= other.max and other.min <= self.max

    def format(self, fmt: str = "{:.3g}", scale: float = 1.0) -> str:
        """``median [min–max]`` (just the median for one repeat)."""
        m = fmt.format(self.median * scale)
        if self.n == 1:
            return m
        return f"{m} [{fmt.format(self.min * scale)}–{fmt.format(self.max * scale)}]"


def spread(values: Iterable[float | None]) -> Spread | None:
    """The spread of the repeats' values; None values (not measured) are left out; None if none."""
    vals = tuple(float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v)))
    if not vals:
        return None
    return Spread(float(statistics.median(vals)), min(vals), max(vals), vals)


def ranges_overlap(a: Spread, b: Spread) -> bool:
    return a.overlaps(b)


@dataclass(frozen=True)
class Ratio:
    """``a / b`` of two spreads: ratio of medians, with the min/max over all pairings."""

    median: float
    min: float
    max: float

    def format(self) -> str:
        return f"{self.median:.2f}x (range {self.min:.2f}–{self.max:.2f})"


def ratio(a: Spread, b: Spread) -> Ratio | None:
    """a / b (see the module docstring); None when a denominator is zero or negative."""
    if b.median <= 0 or b.min <= 0 or b.max <= 0 or a.min < 0:
        return None
    return Ratio(a.median / b.median, a.min / b.max, a.max / b.min)
