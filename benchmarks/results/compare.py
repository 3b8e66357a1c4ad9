"""Compare two benchmark results: ``compare(a_path, b_path, force=False) -> ComparisonResult``.

Like pyperf: results from different environments (``environment.COMPARED_KEYS``: kernel, machine,
CPU model and count, Python, msgspec, orjson, sysctls) are refused with ``EnvironmentMismatch`` unless
``force``; with ``force`` the differences are kept in ``ComparisonResult.env_differences``.
Rows pair the measured runs of A and B with the same (system, transport, scenario, sweep point);
each metric is a Spread (median [min–max] over repeats) on each side, ``change = B/A`` of the
medians, and ``within_noise`` when the min–max ranges overlap. ``format_table`` prints the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import stats
from .environment import environment_differences
from .store import load_results

METRICS = (  # (derived key, label, higher is better)
    ("messages_per_s", "messages/s", True),
    ("agg_cpu_us_per_msg", "agg CPU µs/msg", False),
    ("loss_fraction", "loss fraction", False),
)
LATENCY_METRICS = (("p99_ns", "p99 latency ns", False),)


class EnvironmentMismatch(RuntimeError):
    """A and B ran in different environments; ``differences`` = [(key, a, b)]."""

    def __init__(self, differences):
        self.differences = differences
        lines = "\n".join(f"  {k}: {a!r} != {b!r}" for k, a, b in differences)
        super().__init__(f"results come from different environments (use force to compare anyway):\n{lines}")


@dataclass
class Row:
    kind: str
    system: str
    transport: str
    scenario: str
    workload: str
    metric: str
    a: stats.Spread | None
    b: stats.Spread | None
    higher_is_better: bool

    @property
    def change(self) -> float | None:
        """B / A of the medians."""
        if self.a and self.b and self.a.median:
            return self.b.median / self.a.median
        return None

    @property
    def within_noise(self) -> bool | None:
        return self.a.overlaps(self.b) if self.a and self.b else None

    @property
    def verdict(self) -> str:
        if self.a is None or self.b is None:
            return "only in A" if self.a else "only in B"
        if self.within_noise:
            return "within noise"
        better = (self.b.median > self.a.median) == self.higher_is_better
        return "B better" if better else "B worse"


@dataclass
class ComparisonResult:
    a_path: str
    b_path: str
    rows: list[Row] = field(default_factory=list)
    env_differences: list = field(default_factory=list)
    forced: bool = False


def _key(r):
    return (r.kind, r.system, r.transport, r.scenario, r.workload.label() if r.workload else "")


def compare(a_path, b_path, force: bool = False) -> ComparisonResult:
    a, b = load_results(a_path), load_results(b_path)
    diffs = environment_differences(a.environment, b.environment)
    if diffs and not force:
        raise EnvironmentMismatch(diffs)
    result = ComparisonResult(str(a_path), str(b_path), env_differences=diffs, forced=force)
    groups: dict = {}
    for side, res in (("a", a), ("b", b)):
        for r in res.measured():
            if r.status == "ok":
                groups.setdefault(_key(r), {"a": [], "b": []})[side].append(r)
    for key in sorted(groups):
        ga, gb = groups[key]["a"], groups[key]["b"]
        for metric, label, hib in METRICS:
            sa = stats.spread(r.derived.get(metric) for r in ga)
            sb = stats.spread(r.derived.get(metric) for r in gb)
            if sa or sb:
                result.rows.append(Row(*key, label, sa, sb, hib))
        for metric, label, hib in LATENCY_METRICS:
            sa = stats.spread(r.latency.summary.get(metric) for r in ga if r.latency)
            sb = stats.spread(r.latency.summary.get(metric) for r in gb if r.latency)
            if sa or sb:
                result.rows.append(Row(*key, label, sa, sb, hib))
    return result


def format_table(result: ComparisonResult) -> str:
    header = ["system", "transport", "scenario", "metric", "A", "B", "B/A", "verdict"]
    rows = [
        [r.system, r.transport, r.scenario, r.metric, r.a.format() if r.a else "–", r.b.format() if r.b else "–",
         f"{r.change:.2f}x" if r.change is not None else "–", r.verdict]
        for r in result.rows
    ]  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in [header, *rows]]
    if result.env_differences:
        lines.append("")
        lines.append("WARNING: compared despite different environments (forced):")
        lines += [f"  {k}: {a!r} != {b!r}" for k, a, b in result.env_differences]
    return "\n".join(lines)
