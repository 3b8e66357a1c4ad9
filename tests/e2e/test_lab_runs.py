"""Soak and torture runs, short ones, written into one results directory and rendered."""

from __future__ import annotations

import pytest

from benchmarks.report import render


@pytest.mark.timeout(120)
def test_soak_and_torture_runs_land_in_the_results_and_the_report(tmp_path):
    # One results model for every kind of run: a (short) soak and a torture scenario write into
    # the same directory, and the report renders both from it.
    from benchmarks.faults.soak import run_soak
    from benchmarks.faults.torture import main as torture_main
    from benchmarks.results import load_results

    out = tmp_path / "results"
    soak = run_soak(duration_s=1.0, rate=200.0, producers=1, sample_interval_s=0.2, transports=("unixsock", "udp"), out_dir=out)
    assert [r.transport for r in soak] == ["unixsock", "udp"]
    assert all(r.kind == "soak" and len(r.series) >= 2 and r.sent == 200 for r in soak), soak
    assert soak[0].lost == 0 and soak[0].figures["no_loss"] is True
    runs = torture_main(["huge_line"], scale=0.1, out_dir=out, echo=lambda *_: None)
    assert [r.kind for r in runs] == ["torture"] and runs[0].ok, runs
    res = load_results(out)
    assert [r.kind for r in res.runs] == ["soak", "soak", "torture"]
    files = render(out)
    md = files.md.read_text()
    assert "## Soak" in md and "soak.png" in md and "## Torture" in md and "no_newline_100MB" in md
