"""The benchmark report: ``render(results_dir)`` -> report.md, report.html and PNG charts.

Reads only the results files (``results.load_results``), so it can be re-run without re-running
the benchmark. ``content`` builds the report as blocks (``blocks``), ``charts`` draws them,
``data`` computes the figures, and each renderer in ``RENDERERS`` writes one format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..results import load_results
from .content import build_blocks
from .data import trace_side
from .html import HtmlRenderer
from .markdown import MarkdownRenderer

RENDERERS = (MarkdownRenderer(), HtmlRenderer())


@dataclass
class ReportFiles:
    md: Path
    html: Path
    charts: list[Path]


def default_out_dir(results) -> Path:
    """Where a report goes without --out: into a results directory, or beside a bundle file as
    ``NAME-report/`` (``docs/results/query-a.json.gz`` -> ``docs/results/query-a-report/``)."""
    results = Path(results)
    return results if results.is_dir() or results.suffix == "" else results.with_name(results.name.split(".")[0] + "-report")


def render(results_dir, out_dir=None) -> ReportFiles:
    """Render every format of ``RENDERERS`` and the chart PNGs into ``out_dir`` (default: the
    results directory) from the results files only."""
    res = load_results(results_dir)
    out = Path(out_dir) if out_dir else Path(res.path).parent
    out.mkdir(parents=True, exist_ok=True)
    blocks, charts = build_blocks(res)
    paths = []
    for c in charts:
        p = out / f"{c.name}.png"
        p.write_bytes(c.png)
        paths.append(p)
    written = {}
    for renderer in RENDERERS:
        path = out / renderer.filename
        path.write_text(renderer.render(blocks), encoding="utf-8")
        written[renderer.filename] = path
    return ReportFiles(written["report.md"], written["report.html"], paths)


__all__ = ["RENDERERS", "ReportFiles", "build_blocks", "default_out_dir", "render", "trace_side"]
