"""The query scenario's report (benchmarks/report/query.py) and its README findings section, from
records built by the bench's own record builder (natslab/querybench.py) with known trial times."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from benchmarks.cli import app
from benchmarks.report import render
from benchmarks.report.query import COMMAND, FLOOR_COUNT, FLOOR_FULL, QUERY_COUNT, QUERY_FULL, TOKENS
from benchmarks.results import ResultsWriter
from natslab.querybench import cell_record

HOSTS = ("h1", "h2", "h3", "h4")
MB = 1e6


def _trial(seconds: float, out_bytes: int, distributed: bool) -> dict:
    t = {"seconds": seconds, "bytes_out": out_bytes, "scanner_cpu_s": seconds / 2}
    if distributed:
        t.update(querier_cpu_s=seconds * 0.8, agent_cpu_s=seconds * 0.3, nats_cpu_s=seconds * 0.2,
                 hosts={h: {"matches": 10, "bytes_scanned": 60 * MB, "bytes_returned": out_bytes / 4, "elapsed_s": seconds,
                            "scan_s": seconds * 0.9, "wait_s": seconds * 0.5, "first_data_s": 0.01, "tool": "rg"} for h in HOSTS})  # fmt: skip
    return t


def _results(tmp_path: Path, name: str, count_ratio: float) -> Path:
    """Floors of 100 ms (count) and 200 ms (full); the querier's count at ``count_ratio`` x its floor;
    full output costs 10 ms per MB returned, tokens returning 0, 5, 15 and 30 MB."""
    context = {"hosts": 4, "bytes_per_host": 60 * MB, "scanner": "rg", "nats_nodes": 3,
               "expected": {h: dict.fromkeys(TOKENS, 10) for h in HOSTS}, "lines": dict.fromkeys(HOSTS, 100)}  # fmt: skip
    w = ResultsWriter(tmp_path / name, {"cpu_count": 2, "git": {"commit": "abc"}}, {"repeats": 1})
    returned = dict(zip(TOKENS, (30, 0, 15, 5)))
    for cache in ("warm", "cold"):
        slow = 2.0 if cache == "cold" else 1.0
        for token in TOKENS:
            mb = returned[token]
            cells = {FLOOR_COUNT: (0.1 * slow, 0, False), QUERY_COUNT: (0.1 * slow * count_ratio, 0, True),
                     FLOOR_FULL: (0.2 * slow, mb * MB, False), QUERY_FULL: (0.15 * slow + 0.01 * mb, mb * MB, True)}  # fmt: skip
            if cache == "warm":
                cells[COMMAND] = (0.4, 200, False)
            for mode, (s, out, distributed) in cells.items():
                trials = [_trial(s * (0.99 if i % 2 else 1.01), out, distributed) for i in range(10)]
                w.add_run(cell_record(mode, token, cache, 0, trials, ["synthetic"], context))
    w.close()
    return tmp_path / name


def test_the_report_draws_the_chart_and_says_whether_the_count_goal_is_met(tmp_path):
    far = _results(tmp_path, "far", count_ratio=1.5)
    written = render(far)
    text = written.md.read_text()
    assert (far / "query_latency.png").stat().st_size > 10_000 and "query_latency.png" in text
    assert "goal: within 1.2x): NOT met**, worst 1.50x" in text
    assert "| everywhere | 100.0 ± 1.1 [101.0] | 150.0 ± 1.6 [151.5] | 1.50x |" in text  # mean ± std [p95], ms
    assert "≈ 150 ms + 10.0 ms per MB returned" in text  # the fitted cost of returning lines (warm)
    near = render(_results(tmp_path, "near", count_ratio=1.1)).md.read_text()
    assert "goal: within 1.2x): met**, worst 1.10x" in near


def test_the_readme_section_holds_both_runs_and_how_they_differed(tmp_path):
    a, b = _results(tmp_path, "a", 1.1), _results(tmp_path, "b", 1.3)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- findings:query: (to be rendered) -->\n<!-- findings:query end -->\n")
    r = CliRunner().invoke(app, ["report", str(a), "--rerun", str(b), "--findings", str(readme), "--section", "query"])
    assert r.exit_code == 0, r.output
    text = readme.read_text()
    assert f"<!-- findings:query: loglab report {a} --rerun {b} --findings {readme} --section query -->" in text
    assert "NOT met**, worst 1.30x (everywhere 1.10x" in text and "; rerun: everywhere 1.30x" in text
    assert f"![Distributed query latency per token]({a}/query_latency.png)" in text
    assert "median change 0.0 %, largest 18.2 % (" in text  # the count cells: 1.3 / 1.1 - 1
    check = CliRunner().invoke(app, ["report", str(a), "--rerun", str(b), "--findings", str(readme), "--section", "query", "--check"])
    assert check.exit_code == 0, check.output

