"""README findings rendered from committed results (benchmarks/report/findings.py, `loglab report
--findings`): the README's own sections must match what their committed results render."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from benchmarks.cli import app
from benchmarks.report.findings import sections_in

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "bench_results_v3"
README = ROOT / "README.md"


def _readme(tmp_path: Path) -> Path:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nbefore\n\n<!-- findings:bench: (to be rendered) -->\n<!-- findings:bench end -->\n\nafter\n")
    return readme


def _invoke(*args) -> "object":
    return CliRunner().invoke(app, [str(a) for a in args])


def test_findings_are_written_between_the_markers_and_then_check_clean(tmp_path):
    readme = _readme(tmp_path)
    first = _invoke("report", FIXTURE, "--findings", readme)
    assert first.exit_code == 0 and "rewritten" in first.output
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n\n<!-- findings:bench: loglab report ") and text.endswith("<!-- findings:bench end -->\n\nafter\n")
    assert "Survives a slow aggregator" in text and "18,952 [18,826–19,858]" in text  # the fixture's unixsock capacity
    assert _invoke("report", FIXTURE, "--findings", readme, "--check").exit_code == 0
    readme.write_text(text.replace("18,952 [18,826–19,858]", "99,999 [18,826–19,858]"))  # a figure edited by hand
    stale = _invoke("report", FIXTURE, "--findings", readme, "--check")
    assert stale.exit_code == 1 and "differs" in stale.output


def test_a_winner_the_rerun_does_not_confirm_is_not_claimed(tmp_path):
    rerun = tmp_path / "rerun"
    shutil.copytree(FIXTURE, rerun)
    for f in (rerun / "runs").glob("*.json"):
        run = orjson.loads(f.read_bytes())
        if run["system"] == "loglab" and run["transport"] == "unixsock" and run["seq"]:
            run["seq"]["missing"] = 5  # the rerun lost messages on it: no longer a safe pick
            run["derived"]["loss_fraction"] = 5 / run["seq"]["expected"]
        f.write_bytes(orjson.dumps(run))
    readme = _readme(tmp_path)
    assert _invoke("report", FIXTURE, "--rerun", rerun, "--findings", readme).exit_code == 0
    text = readme.read_text()
    assert "Survives a slow aggregator: cannot be ranked, the two runs disagree" in text
    assert "How much the two runs differed" in text and "--rerun" in text.splitlines()[4]


def test_a_readme_without_the_section_is_a_clear_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# nothing here\n")
    result = _invoke("report", FIXTURE, "--findings", readme)
    assert result.exit_code == 2 and "no findings section 'bench'" in result.output
    assert readme.read_text() == "# nothing here\n"


@pytest.mark.parametrize("args", [["--check"], ["--rerun", FIXTURE]])
def test_findings_options_without_findings_are_refused(args):
    assert _invoke("report", FIXTURE, *args).exit_code != 0


def test_a_bundle_renders_the_same_findings_as_its_directory(tmp_path):
    """`loglab bundle` packs results into the one file that gets committed; thinning the raw samples
    must not change a figure the findings show (they come from the whole-sample summaries)."""
    bundle = tmp_path / "b" / "bench.json.gz"
    packed = _invoke("bundle", FIXTURE, bundle, "--max-samples", "3")
    assert packed.exit_code == 0 and bundle.is_file(), packed.output
    from_dir, from_bundle = _readme(tmp_path), tmp_path / "README2.md"
    from_bundle.write_text(_readme(tmp_path / "b").read_text())
    assert _invoke("report", FIXTURE, "--findings", from_dir).exit_code == 0
    assert _invoke("report", bundle, "--findings", from_bundle).exit_code == 0
    def rendered(readme: Path, source: Path) -> str:  # the marker names the source and the README
        return readme.read_text().replace(str(source), "SRC").replace(str(readme), "README")

    assert rendered(from_dir, FIXTURE) == rendered(from_bundle, bundle)
    runs = orjson.loads(__import__("gzip").decompress(bundle.read_bytes()))["runs"]
    assert runs and all(len(r["latency"]["samples_ns"]) <= 3 for r in runs if r.get("latency"))


def test_bundle_of_nothing_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _invoke("bundle", tmp_path / "empty", tmp_path / "x.json.gz")
    assert result.exit_code == 2 and "no results file" in result.output and not (tmp_path / "x.json.gz").exists()


def _pipeline_run(system: str, stream: str, rate_each: float, delivered_per_s: float, repeat: int):
    from benchmarks.results import RunRecord, Workload

    run = RunRecord(system=system, transport=stream, scenario="pipeline", workload=Workload(4, 1000, 200, rate_each, 1), repeat=repeat)
    run.derived = {"messages_per_s": delivered_per_s}
    return run


@pytest.mark.parametrize(
    ("delivered", "verdict"),
    [((50_000, 49_800), "**met**"), ((21_000, 27_000), "**not met**"), ((49_900, 30_000), "met in some runs only")],
)
def test_the_pipeline_target_is_judged_from_every_run(delivered, verdict):
    """The shipper's fixed-rate cell says whether it kept up with what was offered, in both runs
    (the first run and the rerun): a target met once and missed once is not called met."""
    from benchmarks.report.findings import render_section
    from benchmarks.results import Results

    a, b = (Results(environment={}, params={}, runs=[_pipeline_run("shipper @50k/s", "jetstream-R3", 12_500, d, 0)]) for d in delivered)
    text = render_section("pipeline", a, b, "a.json.gz", "b.json.gz", "loglab report a.json.gz")
    line = next(line for line in text.splitlines() if line.startswith("Offered 50,000 msg/s into jetstream-R3"))
    low, high = sorted(delivered)
    assert f"delivered {low:,}–{high:,} msg/s over 2 runs" in line and line.endswith(f"{verdict}.")


def test_torture_findings_show_both_runs_and_a_scenario_that_failed(tmp_path):
    from benchmarks.faults.rows import finish, torture_run
    from benchmarks.report.findings import render_section
    from benchmarks.results import Results

    def run(written: int):
        return finish(torture_run("ship_rotation", "R1 netns", sent=1200, written=written, expected_written=1200, notes="2 rotations per host"), 0.0)

    a = Results(environment={"git": {"commit": "abc"}}, params={}, runs=[run(1200)])
    b = Results(environment={}, params={}, runs=[run(1199)])
    text = render_section("torture", a, b, "a.json.gz", "b.json.gz", "loglab report a.json.gz --section torture")
    assert "`a.json.gz`: 1 scenarios, 1 held" in text and "`b.json.gz`: 1 scenarios, 0 held" in text
    rows = [line for line in text.splitlines() if line.startswith("| ship_rotation")]
    assert len(rows) == 2 and "| yes |" in rows[0] and "| NO |" in rows[1] and "1199 lines written, 1200 expected" in rows[1]


def test_every_findings_section_of_the_readme_matches_its_committed_results(monkeypatch):
    # The README names, in each section's first marker, the command that renders it from results
    # committed in the repository; a figure typed by hand, or results changed without a re-render,
    # fail here.
    monkeypatch.chdir(ROOT)
    sections = sections_in(README.read_text(encoding="utf-8"))
    assert "bench" in sections, "README.md has no generated findings:bench section"
    for name, (command, _) in sections.items():
        argv = shlex.split(command)
        assert argv[:2] == ["loglab", "report"], command
        result = _invoke(*argv[1:], "--check")
        assert result.exit_code == 0, f"findings:{name} is stale: {result.output}"


# -- the formats and json-path sections: built from in-memory results with known figures -----------


def _results(runs, commit="abc"):
    from benchmarks.results.model import Results

    env = {"cpu_count": 2, "kernel": "6.1", "python": "3.11", "git": {"commit": commit}, "peers": {"syslog-ng": "3.38.1", "rsyslog": "8.2302.0"}}
    return Results(environment=env, params={"repeats": 3}, runs=runs)


def _run(system, transport, cpu_us, scenario="formats", fmt="json", framing="newline", rate=10_000.0):
    from benchmarks.results import RunRecord, Workload

    workload = Workload(4, 10_000, 200, rate, 1, format=fmt, framing=framing)
    return RunRecord(system=system, transport=transport, scenario=scenario, workload=workload,
                     derived={"agg_cpu_us_per_msg": cpu_us, "messages_per_s": 40_000.0})  # fmt: skip


def _render(name, a, b=None):
    from benchmarks.report.findings import render_section

    return render_section(name, a, b, "a.json.gz", "b.json.gz" if b else None, "(cmd)")


def test_formats_findings_show_each_format_against_the_systems_json_lines_and_the_rerun():
    runs = [_run(s, "tcp", cpu, fmt=f, framing=fr) for s, base in (("loglab", 2.0), ("rsyslog", 10.0))
            for f, fr, k in (("json", "newline", 1.0), ("rfc5424", "octet", 1.5)) for cpu in (base * k, base * k * 1.1, base * k * 0.9)]
    rerun = [_run(r.system, r.transport, r.derived["agg_cpu_us_per_msg"] * 2, fmt=r.workload.format, framing=r.workload.framing) for r in runs]
    text = _render("formats", _results(runs), _results(rerun))
    # loglab's RFC 5424 octet-counted cell costs 1.5x its JSON lines; the rerun's median doubled
    assert "| tcp | rfc5424 | octet | loglab | 3 | 3.00 [2.70–3.30] | 1.50x | 6.00 [5.40–6.60] |" in text, text
    assert "| tcp | json | newline | rsyslog | 3 | 10.00 [9.00–11.00] | 1.00x |" in text
    assert "rsyslog 8.2302.0" in text and "How much the two runs differed" in text


def test_formats_findings_refuse_results_without_the_scenario():
    from benchmarks.report.findings import FindingsError

    with pytest.raises(FindingsError, match="no run of the formats scenario"):
        _render("formats", _results([_run("loglab", "tcp", 2.0, scenario="efficiency")]))


def test_json_path_findings_name_a_slower_new_code_beyond_noise():
    base = [_run("loglab", t, cpu, scenario="efficiency") for t in ("tcp", "unixgram") for cpu in (2.0, 2.1, 1.9)]
    new = [_run("loglab", "tcp", cpu, scenario="efficiency") for cpu in (3.0, 3.1, 2.9)]  # slower, ranges apart
    new += [_run("loglab", "unixgram", cpu, scenario="efficiency") for cpu in (2.05, 2.0, 1.95)]
    text = _render("json-path", _results(base, "main1"), _results(new, "new1"))
    assert "| efficiency | 4 x 10,000/s, 200 B | tcp | receiver CPU µs/msg | 2.00 [1.90–2.10] | 3.00 [2.90–3.10] | 1.50x | new code worse |" in text, text
    assert "| unixgram | receiver CPU µs/msg | 2.00 [1.90–2.10] | 2.00 [1.95–2.05] | 1.00x | within noise |" in text
    assert "1 of " in text and "worse beyond noise" in text
    from benchmarks.report.findings import FindingsError

    with pytest.raises(FindingsError, match="compares two results"):
        _render("json-path", _results(base))
