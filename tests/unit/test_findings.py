"""README findings rendered from committed results (benchmarks/report/findings.py, `loglab report
--findings`): the README's own sections must match what their committed results render."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from benchmarks.cli import app

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "bench_results_v3"


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
