"""Compare two benchmark results: ``compare(a_path, b_path, force=False) -> ComparisonResult``.

Like pyperf: results from different environments (``environment.COMPARED_KEYS``: kernel, machine,
CPU model and count, Python, msgspec, orjson, sysctls) are refused with ``EnvironmentMismatch`` unless
``force``; with ``force`` the differences are kept in ``ComparisonResult.env_differences``.
Rows pair the measured runs of A and B with the same (system, transport, scenario, workload);
each metric (``metrics.COMPARED``, in the report's units) is a Spread (median [min–max] over
repeats) on each side, ``change = B/A`` of the medians, and ``within_noise`` when the min–max
ranges overlap. ``format_table`` prints the rows; two results that share no cell raise
``NoCommonCells``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import stats
from .environment import environment_differences
from .metrics import COMPARED, Metric
from .store import load_results


class EnvironmentMismatch(RuntimeError):
    """A and B ran in different environments; ``differences`` = [(key, a, b)]."""

    def __init__(self, differences):
        self.differences = differences
        lines = "\n".join(f"  {k}: {a!r} != {b!r}" for k, a, b in differences)
        super().__init__(f"results come from different environments (use force to compare anyway):\n{lines}")


class NoCommonCells(RuntimeError):
    """A and B share no cell: nothing can be compared (different workloads, transports, ...)."""


@dataclass
class Row:
    kind: str
    system: str
    transport: str
    scenario: str
    workload: str  # the workload's short label: the offered rate is always in it
    metric: Metric
    a: stats.Spread | None
    b: stats.Spread | None

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
        return "B better" if self.metric.better(self.b, self.a) else "B worse"


@dataclass
class ComparisonResult:
    a_path: str
    b_path: str
    rows: list[Row] = field(default_factory=list)
    env_differences: list = field(default_factory=list)
    forced: bool = False

    @property
    def shared_cells(self) -> int:
        return len({(r.kind, r.system, r.transport, r.scenario, r.workload) for r in self.rows if r.a and r.b})


def _key(r):
    return (r.kind, r.system, r.transport, r.scenario, r.workload.short_label() if r.workload else "")


def compare(a_path, b_path, force: bool = False) -> ComparisonResult:
    return compare_results(load_results(a_path), load_results(b_path), str(a_path), str(b_path), force)


def compare_results(a, b, a_path: str = "A", b_path: str = "B", force: bool = False) -> ComparisonResult:
    """``compare`` of two loaded ``Results``."""
    diffs = environment_differences(a.environment, b.environment)
    if diffs and not force:
        raise EnvironmentMismatch(diffs)
    result = ComparisonResult(a_path, b_path, env_differences=diffs, forced=force)
    groups: dict = {}
    for side, res in (("a", a), ("b", b)):
        for r in res.measured():
            if r.status == "ok":
                groups.setdefault(_key(r), {"a": [], "b": []})[side].append(r)
    for key in sorted(groups):
        ga, gb = groups[key]["a"], groups[key]["b"]
        for metric in COMPARED:
            sa, sb = metric.spread(ga), metric.spread(gb)
            if sa or sb:
                result.rows.append(Row(*key, metric, sa, sb))
    if not result.shared_cells:
        only = lambda side: sorted({f"{k[3]} {k[2]} {k[1]} ({k[4]})" for k, g in groups.items() if g[side]})  # noqa: E731
        raise NoCommonCells(
            f"{a_path} and {b_path} share no cell (scenario, transport, system and workload): nothing to compare.\n"
            f"  A has: {'; '.join(only('a')[:6]) or 'no measured runs'}{' ...' if len(only('a')) > 6 else ''}\n"
            f"  B has: {'; '.join(only('b')[:6]) or 'no measured runs'}{' ...' if len(only('b')) > 6 else ''}"
        )
    return result


def format_table(result: ComparisonResult) -> str:
    header = ["system", "transport", "scenario", "workload", "metric", "A", "B", "B/A", "verdict"]
    rows = [
        [r.system, r.transport, r.scenario, r.workload, r.metric.label, r.metric.format(r.a), r.metric.format(r.b),
         f"{r.change:.2f}x" if r.change is not None else "–", r.verdict]
        for r in result.rows
    ]  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.append("")
    lines.append(f"{result.shared_cells} cells in both; figures: median [min–max] over repeats; "
                 "'within noise' when the two ranges overlap.")  # fmt: skip
    if result.env_differences:
        lines.append("")
        lines.append("WARNING: compared despite different environments (forced):")
        lines += [f"  {k}: {a!r} != {b!r}" for k, a, b in result.env_differences]
    return "\n".join(lines)
