"""benchmarks.report.render from the stored fixture tests/data/bench_results_v3 (make_bench_fixture.py)."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from benchmarks.report import render, trace_side
from benchmarks.results import ResultsWriter

FIXTURE = Path(__file__).parents[1] / "data" / "bench_results_v3"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def rendered(tmp_path):
    return render(FIXTURE, tmp_path)


def test_report_files_and_charts_exist(rendered, tmp_path):
    assert rendered.md.exists() and rendered.html.exists()
    names = {p.stem for p in rendered.charts}
    assert {"throughput", "latency_percentiles", "latency_cdf", "cpu_per_message", "loss", "peer_ratio", "syscalls"} <= names
    for p in rendered.charts:
        assert p.parent == tmp_path
        w, h = png_size(p.read_bytes())
        assert w > 200 and h > 200 and p.stat().st_size > 5000


def test_html_is_self_contained_with_every_chart_embedded(rendered):
    html = rendered.html.read_text()
    assert html.count("data:image/png;base64,") == len(rendered.charts)
    assert "<img alt='Throughput per transport' src='data:" in html
    assert 'src="' not in html and ".png'" not in html


def test_markdown_has_the_answer_then_tables_captions_environment(rendered):
    md = rendered.md.read_text()
    for heading in ("## Which transport, and why", "### The transports at a glance (loglab)", "## loglab and its peers",
                    "## Details", "## Results per scenario", "## Workload parameters", "## Environment", "## Tracing"):
        assert heading in md, heading
    assert "- Survives a slow aggregator: unixsock lost nothing" in md
    assert "| udp | best effort (drops); ordered |" in md
    assert "![Throughput per transport](throughput.png)" in md
    assert md.count("\n*") >= len(rendered.charts)  # a caption line under each chart
    assert "Fixture CPU" in md
    assert "14 warm-ups" in md
    assert "14 traced runs" in md  # one per cell and system, kept out of the headline figures
    assert "tracing skipped in 7 run(s): fixture: peer not traced" in md  # the peer's 7 traced runs
    assert "Tracer overhead" in md and ("OUTSIDE noise" in md or "within noise" in md)


def test_the_answer_and_the_glance_table_come_first_and_fit_a_screen(rendered):
    # What a first-time reader sees first: the answer and one table, before any chart or detail.
    md = rendered.md.read_text()
    lines = md.splitlines()
    answer_at = lines.index("## Which transport, and why")
    details_at = lines.index("## Details")
    assert answer_at <= 4 and md.index("![") > md.index("## Details")
    first_screen = lines[:details_at]
    assert len(first_screen) <= 40, len(first_screen)
    glance = [line for line in lines[lines.index("### The transports at a glance (loglab)"):] if line.startswith("|")]
    assert len(glance[0].split("|")) - 2 <= 10  # columns
    html = rendered.html.read_text()
    top = html[: html.index("<h2>Details</h2>")]
    assert "<img" not in top and len(top) < 12_000
    assert top.index("<h2>Which transport, and why</h2>") < top.index("<table>")


def test_fewer_than_three_repeats_are_said_and_nothing_is_ranked(tmp_path):
    from benchmarks.results import load_results, write_bundle

    res = load_results(FIXTURE)
    res.params["repeats"] = 1
    res.runs = [r for r in res.runs if r.repeat == 0 or r.is_warmup or r.traced]
    write_bundle(res, tmp_path / "one.json")
    md = render(tmp_path / "one.json", tmp_path / "out").md.read_text()
    assert "Only 1 repeat(s) per cell" in md and "nothing is ranked" in md


def test_a_transport_is_named_best_only_with_3_repeats_and_ranges_apart():
    from benchmarks.report.content import _rank
    from benchmarks.results import stats
    from benchmarks.results.metrics import RECEIVER_CPU

    apart = {"a": stats.spread([1.0, 1.1, 1.2]), "b": stats.spread([2.0, 2.1, 2.2])}
    text, winner = _rank(RECEIVER_CPU, apart, "µs")
    assert winner == "a" and text.startswith("**a**: 1.10 [1.00–1.20] µs (next: b 2.10 [2.00–2.20])")
    overlapping = {"a": stats.spread([1.0, 1.5, 2.1]), "b": stats.spread([2.0, 2.1, 2.2])}
    text, winner = _rank(RECEIVER_CPU, overlapping, "µs")
    assert winner is None and "cannot be ranked" in text and "ranges overlap" in text
    single = {"a": stats.spread([1.0]), "b": stats.spread([2.0])}
    text, winner = _rank(RECEIVER_CPU, single, "µs")
    assert winner is None and "fewer than 3 repeats" in text


def test_report_notes_unavailable_peer_and_skipped_tracing(tmp_path):
    w = ResultsWriter(tmp_path, {"kernel": "k"}, {})
    w.set_peer("syslog-ng", False, "syslog-ng not installed")
    w.set_tracing(False, "not root")
    files = render(tmp_path)
    md = files.md.read_text()
    assert "Peer syslog-ng unavailable: syslog-ng not installed" in md
    assert "Tracing skipped: not root" in md
    assert "INCOMPLETE" in md


def test_trace_side_accepts_roles_and_comm_names():
    assert trace_side({"producer": {"a": 1}}, "producer") == {"a": 1}
    assert trace_side({"logagg": {"b": 2}}, "aggregator") == {"b": 2}
    assert trace_side(None, "producer") is None


def test_render_defaults_to_results_dir(tmp_path):
    copy = tmp_path / "r"
    shutil.copytree(FIXTURE, copy)
    files = render(copy)
    assert files.md.parent == copy


def test_report_says_how_many_workers_loglab_ran_per_transport():
    from types import SimpleNamespace as Run

    from benchmarks.report.content import loglab_workers

    runs = [Run(system="loglab", transport="tcp", system_stats={"workers": 2}),
            Run(system="loglab", transport="fifo", system_stats={"messages_written": 5}),  # single process
            Run(system="syslog-ng", transport="tcp", system_stats={"messages_written": 5})]  # fmt: skip
    assert loglab_workers(runs) == {"fifo": "1", "tcp": "2"}


