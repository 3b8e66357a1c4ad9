"""benchmarks.compare: refusal on different environments, success with force, noise marking."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import orjson
import pytest

from benchmarks.results.compare import EnvironmentMismatch, NoCommonCells, compare, format_table

FIXTURE = Path(__file__).parents[1] / "data" / "bench_results_v3"


def copy_fixture(dst: Path, env_change=None, scale_speed=None) -> Path:
    shutil.copytree(FIXTURE, dst)
    index = dst / "results.json"
    data = orjson.loads(index.read_bytes())
    if env_change:
        env = copy.deepcopy(data["environment"])
        env_change(env)
        data["environment"] = env
        index.write_bytes(orjson.dumps(data))
    if scale_speed:
        for f in (dst / "runs").glob("*.json"):
            run = orjson.loads(f.read_bytes())
            if run["system"] == "loglab" and run["transport"] == "unixsock":
                run["derived"]["messages_per_s"] *= scale_speed
            f.write_bytes(orjson.dumps(run))
    return dst


def test_same_environment_compares_and_identical_runs_are_within_noise(tmp_path):
    b = copy_fixture(tmp_path / "b")
    result = compare(FIXTURE, b)
    assert result.rows and not result.env_differences
    assert all(r.verdict == "within noise" for r in result.rows)
    assert "within noise" in format_table(result)


@pytest.mark.parametrize(
    "change, key",
    [
        (lambda e: e.update(kernel="6.9.9"), "kernel"),
        (lambda e: e.update(cpu_count=64), "cpu_count"),
        (lambda e: e.update(cpu_model="Other CPU"), "cpu_model"),
        (lambda e: e.update(python="3.12.0"), "python"),
        (lambda e: e["sysctls"].update({"net.core.rmem_max": "26214400"}), "sysctls.net.core.rmem_max"),
    ],
)
def test_different_environment_is_refused_unless_forced(tmp_path, change, key):
    b = copy_fixture(tmp_path / "b", env_change=change)
    with pytest.raises(EnvironmentMismatch) as info:
        compare(FIXTURE, b)
    assert [d[0] for d in info.value.differences] == [key]
    assert key in str(info.value)
    forced = compare(FIXTURE, b, force=True)
    assert forced.forced and forced.env_differences[0][0] == key
    assert "WARNING: compared despite different environments" in format_table(forced)


def test_git_commit_and_loglab_version_do_not_block(tmp_path):
    b = copy_fixture(tmp_path / "b", env_change=lambda e: (e["git"].update(commit="f" * 40), e["packages"].update(loglab="0.2.0")))
    assert compare(FIXTURE, b).env_differences == []


def test_clear_speedup_is_not_noise(tmp_path):
    b = copy_fixture(tmp_path / "b", scale_speed=3.0)
    rows = [r for r in compare(FIXTURE, b).rows if (r.system, r.transport, r.metric.label) == ("loglab", "unixsock", "messages/s")]
    assert len(rows) == 1
    assert rows[0].change == pytest.approx(3.0)
    assert not rows[0].within_noise and rows[0].verdict == "B better"


def test_rows_name_the_offered_rate_and_use_the_reports_units(tmp_path):
    b = copy_fixture(tmp_path / "b")
    result = compare(FIXTURE, b)
    loss_rows = {r.workload for r in result.rows if r.scenario == "loss"}
    assert loss_rows == {"2 x 5,000/s, 200 B", "2 x 20,000/s, 200 B"}  # one label per offered rate
    text = format_table(result)
    assert "e+" not in text  # no scientific notation
    p99 = next(r for r in result.rows if r.metric.key == "p99_us")
    assert r"p99 latency µs" in text and p99.metric.format(p99.a) in text
    assert f"{result.shared_cells} cells in both" in text


def test_results_sharing_no_cell_are_an_error_that_says_what_each_has(tmp_path):
    b = copy_fixture(tmp_path / "b")
    for f in (b / "runs").glob("*.json"):
        run = orjson.loads(f.read_bytes())
        run["workload"]["producers"] = 7  # another workload everywhere
        f.write_bytes(orjson.dumps(run))
    with pytest.raises(NoCommonCells) as info:
        compare(FIXTURE, b)
    assert "share no cell" in str(info.value)
    assert "A has: capacity" in str(info.value) and "7 x max" in str(info.value)


def test_loglab_compare_exits_1_when_no_cell_is_shared_and_0_otherwise(tmp_path):
    from typer.testing import CliRunner

    from benchmarks.cli import app

    same = copy_fixture(tmp_path / "same")
    ok = CliRunner().invoke(app, ["compare", str(FIXTURE), str(same)])
    assert ok.exit_code == 0 and "within noise" in ok.output
    other = copy_fixture(tmp_path / "other")
    for f in (other / "runs").glob("*.json"):
        run = orjson.loads(f.read_bytes())
        run["workload"]["size"] = 999
        f.write_bytes(orjson.dumps(run))
    bad = CliRunner().invoke(app, ["compare", str(FIXTURE), str(other)])
    assert bad.exit_code == 1 and "share no cell" in bad.output
