"""The distribute scenario in the report and the README (benchmarks/report/distribute.py, the
``distribute`` findings section): targets judged over every repeat of both runs, the tables from the
runs' own figures, its runs kept out of the transport tables (the README's section is checked against
its committed results by test_findings.py, like every section)."""

from __future__ import annotations

import pytest

from benchmarks.report.content import build_blocks
from benchmarks.report.findings import FindingsError, render_section
from benchmarks.report.markdown import MarkdownRenderer
from benchmarks.results import Results, RunRecord, Workload
from benchmarks.results.seqcheck import SeqCheckResult

WEIGHTS = {"a1": 0.4, "a2": 0.3, "a3": 0.2, "a4": 0.1}


def _seq(missing: int = 0) -> SeqCheckResult:
    return SeqCheckResult(expected=1000, received=1000 - missing, missing=missing, duplicates=0)


def stream(rate: float, repeat: int, replicas: int = 1) -> RunRecord:
    return RunRecord(system="distributor" if replicas == 1 else f"distributor x{replicas}", transport="jetstream-R1",
                     scenario="distribute", workload=Workload(4, 1000, 200, 0.0, 500), repeat=repeat, expected=4000, seq=_seq(),
                     system_stats={"nats_cpu_s": 0.04},
                     figures={"messages_per_s": rate, "target_messages_per_s": 50_000.0, "distributor_cpu_us_per_msg": 11.0,
                              "analyzers_cpu_us_per_msg": 6.0})  # fmt: skip


def fairness(repeat: int, worst: float, missing: int = 0) -> RunRecord:
    epoch = {"epoch": 1, "started_ns": 1, "ended_ns": 2, "weights": WEIGHTS, "messages": 1000,
             "analyzers": {a: {"max_ahead": worst, "max_behind": 0.5, "routed": 250} for a in WEIGHTS}}  # fmt: skip
    return RunRecord(system="distributor", transport="jetstream-R1", scenario="distribute", workload=Workload(4, 1000, 200, 0.0, 500),
                     repeat=repeat, expected=4000, seq=_seq(missing),
                     figures={"part": "fairness", "events": [{"t_s": 3.0, "ns": 3, "event": "SIGKILL a2"}], "epochs": [epoch],
                              "max_deviation_messages": worst, "failover_detect_s": 0.9, "return_s": 1.1,
                              "failover_messages": 400, "duplicates_confirmed": 2})  # fmt: skip


def router(repeat: int, algorithm: str, n: int, picks_per_s: float, deviation: float | None) -> RunRecord:
    return RunRecord(system=f"router: {algorithm}", transport="in-process", scenario="distribute", expected=None,
                     workload=Workload(n, 1000, 0, 0.0, 1), repeat=repeat,
                     figures={"part": "router", "algorithm": algorithm, "analyzers": n, "picks_per_s": picks_per_s,
                              "max_deviation_messages": deviation})  # fmt: skip


def results(rates: list[float], worst: float = 0.9, missing: int = 0) -> Results:
    runs = [stream(rate, i) for i, rate in enumerate(rates)] + [fairness(0, worst, missing)]
    runs += [router(0, "edf (loglab)", n, 5e5, 0.99) for n in (10, 10_000)] + [router(0, "random tree (Go design)", n, 8e5, 40.0) for n in (10, 10_000)]
    return Results(environment={"git": {"commit": "abcdef123456"}, "cpu_count": 2}, params={"repeats": len(rates)}, runs=runs)


def render(a: Results, b: Results | None) -> str:
    return render_section("distribute", a, b, "a.json.gz", "b.json.gz" if b else None, "loglab report a.json.gz --section distribute")


@pytest.mark.parametrize(
    ("first", "rerun", "verdict"),
    [([52_000, 55_000], [51_000, 60_000], "**met**"), ([52_000, 55_000], [41_000, 60_000], "**met in some repeats only**"),
     ([30_000, 35_000], [31_000, 32_000], "**not met**")],
)  # fmt: skip
def test_the_stream_target_is_judged_over_every_repeat_of_both_runs(first, rerun, verdict):
    text = render(results(first), results(rerun))
    line = next(line for line in text.splitlines() if line.startswith("- distributor (jetstream-R1):"))
    assert f"Target 50,000 msg/s: {verdict} (over 4 repeats of both runs)" in line


def test_the_section_holds_the_bound_the_loss_the_tables_and_how_the_runs_differed():
    text = render(results([50_000, 60_000], worst=0.8), results([40_000, 45_000], worst=0.95, missing=3))
    assert "largest deviation from the exact share, over every analyzer, epoch and prefix of 2 weight-change-and-failure runs (both runs): 0.95" in text
    assert "800 messages failed over, 4 confirmed duplicates (late acks), 0 records analyzed twice and 3 lost" in text
    assert "Against the two reference designs, point by point" in text and "random tree: 40 messages" in text
    diff = next(line for line in text.splitlines() if line.startswith("| distributor (jetstream-R1): messages/s"))
    assert "55,000 [50,000–60,000] | 42,500 [40,000–45,000] | -22.7 % | yes |" in diff  # ranges apart
    assert "| 1 | a1 0.1, a2 0.3, a3 0.2, a4 0.4 |" not in text and "| 1 | a1 0.4, a2 0.3, a3 0.2, a4 0.1 | 1,000 | 0.80 |" in text


def test_results_without_the_scenario_are_a_clear_error():
    empty = Results(environment={}, params={}, runs=[stream(1.0, 0)][:0])
    with pytest.raises(FindingsError, match="no completed run of the distribute scenario"):
        render(empty, None)


def test_the_report_keeps_distribute_runs_out_of_the_transport_tables():
    blocks, charts = build_blocks(results([50_000, 60_000]))
    text = MarkdownRenderer().render(blocks)
    assert "## Distributing: LOGS -> distributor(s) -> weighted analyzers" in text
    assert "transports at a glance" not in text.lower() and "Results per scenario" not in text
    assert {c.name for c in charts} == {"distribute_fairness", "distribute_router"} and all(c.png.startswith(b"\x89PNG") for c in charts)
