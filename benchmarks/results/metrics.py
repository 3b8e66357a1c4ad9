"""The figures the report and ``compare`` show, each once: its name, unit, format and direction.

A figure of one cell (a scenario, a workload, a transport and a system) is the ``Spread`` of its
value over the measured repeats (``Metric.spread``); two cells are ranked only when both have at
least ``MIN_REPEATS_TO_RANK`` repeats and their ranges do not overlap (``significantly_better``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from . import stats
from .model import RunRecord

MIN_REPEATS_TO_RANK = 3


@dataclass(frozen=True)
class Metric:
    key: str
    label: str  # with its unit: what a table header or a compare row says
    get: Callable[[RunRecord], float | None]
    fmt: str
    higher_is_better: bool

    def spread(self, runs: Iterable[RunRecord]) -> stats.Spread | None:
        return stats.spread(self.get(r) for r in runs if r.status == "ok")

    def format(self, s: stats.Spread | None) -> str:
        return s.format(self.fmt) if s else "–"

    def better(self, a: stats.Spread, b: stats.Spread) -> bool:
        """``a``'s median is the better one (ties: not better)."""
        return a.median > b.median if self.higher_is_better else a.median < b.median


def significantly_better(metric: Metric, a: stats.Spread, b: stats.Spread) -> bool:
    """``a`` beats ``b`` beyond noise: enough repeats on both sides and ranges apart."""
    return a.n >= MIN_REPEATS_TO_RANK and b.n >= MIN_REPEATS_TO_RANK and not a.overlaps(b) and metric.better(a, b)


def _derived(key: str, scale: float = 1.0):
    def get(r: RunRecord):
        v = r.derived.get(key)
        return None if v is None else v * scale

    return get


def _latency(key: str, which: str = "latency"):
    def get(r: RunRecord):
        rec = getattr(r, which)
        v = rec.summary.get(key) if rec else None
        return None if v is None else v / 1e3  # ns -> µs

    return get


def trace_side(trace: dict | None, side: str) -> dict | None:
    """The producer/aggregator part of a run's ``trace`` (see model.py for the keys accepted)."""
    if not trace:
        return None
    aliases = {"producer": ("producer", "logprod"), "aggregator": ("aggregator", "logagg", "syslog-ng", "rsyslogd")}[side]
    for k in aliases:
        if isinstance(trace.get(k), dict):
            return trace[k]
    return None


def syscalls_per_message(side: dict | None):
    if not side:
        return None
    return side.get("syscalls_per_message", side.get("syscalls_per_msg"))


def _syscalls(side: str):
    return lambda r: syscalls_per_message(trace_side(r.trace, side))


MESSAGES_PER_S = Metric("messages_per_s", "messages/s", _derived("messages_per_s"), "{:,.0f}", True)
RECEIVER_CPU = Metric("agg_cpu_us_per_msg", "receiver CPU µs/msg", _derived("agg_cpu_us_per_msg"), "{:.2f}", False)
PRODUCER_CPU = Metric("prod_cpu_us_per_msg", "producer CPU µs/msg", _derived("prod_cpu_us_per_msg"), "{:.2f}", False)
LOSS = Metric("loss_pct", "loss %", _derived("loss_fraction", 100.0), "{:.2f}", False)
P50 = Metric("p50_us", "p50 latency µs", _latency("p50_ns"), "{:,.0f}", False)
P99 = Metric("p99_us", "p99 latency µs", _latency("p99_ns"), "{:,.0f}", False)
P99_9 = Metric("p99_9_us", "p99.9 latency µs", _latency("p99_9_ns"), "{:,.0f}", False)
MAX_LATENCY = Metric("max_us", "max latency µs", _latency("max_ns"), "{:,.0f}", False)
RECEIPT_P99 = Metric("receipt_p99_us", "p99 receipt-stamp latency µs", _latency("p99_ns", "receipt_latency"), "{:,.0f}", False)
STEADY_MEMORY = Metric("steady_mem_mib", "steady memory MiB", _derived("steady_mem_mib"), "{:.1f}", False)
PEAK_MEMORY = Metric("peak_mem_mib", "peak memory MiB", _derived("peak_mem_mib"), "{:.1f}", False)
RECEIVER_SYSCALLS = Metric("agg_syscalls_per_msg", "receiver syscalls/msg", _syscalls("aggregator"), "{:.2f}", False)
PRODUCER_SYSCALLS = Metric("prod_syscalls_per_msg", "producer syscalls/msg", _syscalls("producer"), "{:.2f}", False)

# What ``loglab compare`` lists for every cell the two results share.
COMPARED = (MESSAGES_PER_S, RECEIVER_CPU, LOSS, P99, RECEIPT_P99, STEADY_MEMORY, PEAK_MEMORY)
