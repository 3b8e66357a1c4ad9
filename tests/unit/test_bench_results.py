"""benchmarks.results: the results directory round trip, persistence per run, schema checks."""

from __future__ import annotations

import orjson
import pytest

from benchmarks.results import (
    SCHEMA_VERSION,
    BenchParams,
    LatencyRecord,
    ProcessStats,
    ResultsError,
    ResultsWriter,
    RunRecord,
    Workload,
    load_results,
    write_bundle,
)  # fmt: skip
from benchmarks.results.environment import collect_environment
from benchmarks.results.seqcheck import analyze_output

ENV = {"kernel": "6.1.0", "cpu_model": "X", "cpu_count": 2, "python": "3.11.2", "sysctls": {"net.core.rmem_max": "1"}}


def make_run(repeat=0, warm=False, transport="udp"):
    seq = analyze_output([{"producer": "p0", "seq": s, "intended_ns": 10 * s, "received_ns": 10 * s + 7 + s} for s in range(9)], {"p0": 10})
    return RunRecord(
        system="loglab", transport=transport, scenario="capacity", workload=Workload(1, 10, 200, 0.0, 1), repeat=repeat,
        is_warmup=warm, window_start_ns=1_000_000_000, window_end_ns=1_500_000_000, expected=10, sent=10, seq=seq,
        latency=LatencyRecord.from_samples(seq.latencies_ns, 4),
        aggregator=ProcessStats(0.0009, 0.0005, 0.0004, 3, 1, 1 << 20), producers=ProcessStats(0.001, 0, 0, 1, 0, 1 << 20),
        udp_snmp_before={"RcvbufErrors": 5, "InErrors": 6}, udp_snmp_after={"RcvbufErrors": 6, "InErrors": 8},
        socket={"rcvbuf": 4096}, trace={"producer": {"syscalls_per_message": 1.0}}, notes=["n"],
    )  # fmt: skip


def test_write_then_read_gives_equal_records(tmp_path):
    w = ResultsWriter(tmp_path, ENV, BenchParams(repeats=2, warmups=1, transports=["udp"]))
    runs = [make_run(0, True), make_run(0), make_run(1)]
    for r in runs:
        w.add_run(r)
    w.set_peer("syslog-ng", False, "not installed")
    w.close()
    res = load_results(tmp_path)
    assert res.runs == runs
    assert res.environment == ENV
    assert res.params["repeats"] == 2
    assert res.peer == {"name": "syslog-ng", "available": False, "reason": "not installed", "version": None}
    assert res.complete and res.schema_version == SCHEMA_VERSION
    assert [r.is_warmup for r in res.runs] == [True, False, False]
    assert len(res.measured()) == 2


def test_each_run_is_persisted_before_close(tmp_path):
    w = ResultsWriter(tmp_path, ENV, {"repeats": 1})
    w.add_run(make_run())
    res = load_results(tmp_path / "results.json")  # as a crash would leave it
    assert len(res.runs) == 1 and not res.complete
    assert not list(tmp_path.glob(".*.tmp"))


def test_derived_figures(tmp_path):
    r = make_run()
    d = r.compute_derived()
    assert d["window_s"] == 0.5
    assert d["messages_per_s"] == 18.0  # 9 delivered / 0.5 s
    assert d["mb_per_s"] == 18.0 * 200 / 1e6
    assert d["loss_fraction"] == 0.1
    assert d["agg_cpu_us_per_msg"] == pytest.approx(100.0)
    assert d["prod_cpu_us_per_msg"] == pytest.approx(100.0)
    assert (d["udp_rcvbuf_errors"], d["udp_in_errors"]) == (1, 2)
    assert r.latency.summary["p50_ns"] == 11 and r.latency.samples_total == 9 and len(r.latency.samples_ns) == 4


def test_bundle_round_trip(tmp_path):
    w = ResultsWriter(tmp_path / "d", ENV, {})
    w.add_run(make_run())
    write_bundle(load_results(tmp_path / "d"), tmp_path / "bundle.json")
    assert load_results(tmp_path / "bundle.json").runs == load_results(tmp_path / "d").runs


def test_newer_schema_and_foreign_files_are_refused(tmp_path):
    (tmp_path / "results.json").write_bytes(orjson.dumps({"kind": "loglab-bench-results", "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ResultsError, match="schema_version"):
        load_results(tmp_path)
    (tmp_path / "other.json").write_bytes(b"{}")
    with pytest.raises(ResultsError, match="not a loglab results file"):
        load_results(tmp_path / "other.json")
    with pytest.raises(ResultsError, match="no results file"):
        load_results(tmp_path / "missing")


def test_collect_environment_has_the_compared_keys():
    env = collect_environment(syslog_ng_version="3.38.1")
    for key in ("kernel", "machine", "cpu_model", "cpu_count", "python", "packages", "git", "sysctls"):
        assert key in env
    assert "net.core.rmem_max" in env["sysctls"] and "net.unix.max_dgram_qlen" in env["sysctls"]
    assert env["syslog_ng"] == "3.38.1"
    orjson.dumps(env)  # plain data


def test_version_1_results_are_read_as_version_2(tmp_path):
    # The committed fixture was written by schema version 1: "point", no "kind".
    from pathlib import Path

    fixture = Path(__file__).parents[1] / "data" / "bench_results"
    assert orjson.loads((fixture / "results.json").read_bytes())["schema_version"] == 1
    res = load_results(fixture)
    assert res.schema_version == 1 and res.runs
    assert all(r.kind == "bench" and isinstance(r.workload, Workload) for r in res.runs)
    assert {r.workload.rate for r in res.runs if r.scenario == "loss"} == {5000.0, 20000.0}


def test_torture_and_soak_runs_share_the_results_directory(tmp_path):
    w = ResultsWriter(tmp_path, ENV, {"repeats": 1})
    w.add_run(make_run())
    w.add_run(RunRecord(system="loglab", transport="unixsock", scenario="connection_churn", kind="torture",
                        sent=30, written=29, rejected=1, expected=29, figures={"accept_paused": 3}))  # fmt: skip
    w.close()
    w2 = ResultsWriter(tmp_path, ENV, {}, append=True)  # a soak added beside the benchmark
    w2.add_run(RunRecord(system="loglab", transport="udp", scenario="soak", kind="soak", workload=Workload(2, 100, 200, 50.0, 1),
                         series=[{"t_s": 0.0, "rss_bytes": 1}], sent=200, written=200, rejected=0))  # fmt: skip
    w2.close()
    res = load_results(tmp_path)
    assert [r.kind for r in res.runs] == ["bench", "torture", "soak"]
    assert len(res.measured()) == 1 and [r.scenario for r in res.of_kind("torture")] == ["connection_churn"]
    (torture,) = res.of_kind("torture")
    assert torture.lost == 0 and torture.ok and torture.figures == {"accept_paused": 3}
    assert res.of_kind("soak")[0].series == [{"t_s": 0.0, "rss_bytes": 1}]
