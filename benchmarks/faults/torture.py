"""``loglab torture``: every fault scenario by name, run in turn, printed as one table of what was
sent, written, rejected and lost against what each expects, and stored as runs of kind "torture"
in a results directory (``--out``), the same one ``loglab report`` reads.

USAGE (as a function; ``loglab torture`` wires it):
    from benchmarks.faults.torture import main
    runs = main(scenarios=None, scale=1.0, workdir=None, out_dir=None)

The registry holds the aggregator's scenarios (``scenarios.py``) and shipping's
(``natslab/torture.py``). Each run is written as its scenario completes.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from natslab.torture import SCENARIOS as _SHIPPING

from ..results import ResultsWriter, RunRecord
from ..results.environment import collect_environment
from .scenarios import SCENARIOS as _AGGREGATOR

SCENARIOS = {**_AGGREGATOR, **_SHIPPING}


def failed(runs: list[RunRecord]) -> list[RunRecord]:
    """The runs that did not hold (a skipped scenario is not a failure: its capability is absent)."""
    return [r for r in runs if r.status != "skipped" and not r.ok]


def format_table(runs: list[RunRecord]) -> str:
    head = ("scenario", "transport", "sent", "written", "rejected", "lost", "expected", "ok", "s", "notes")
    body = [(r.scenario, r.transport, r.sent, r.written, r.rejected, r.lost, "-" if r.expected is None else r.expected,
             r.status if r.status == "skipped" else ("yes" if r.ok else "NO"), r.seconds, "; ".join(r.notes + r.errors))
            for r in runs]  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) if i in (0, 1, 9) else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, body)])


def main(scenarios: list[str] | None = None, *, scale: float = 1.0, workdir: Path | None = None,
         out_dir: Path | None = None, echo=print) -> list[RunRecord]:  # fmt: skip
    """Run the named scenarios (all by default); print and return their runs.

    ``scale`` multiplies message counts (0.2 for a quick run). Files go to ``workdir`` (a temp
    directory, removed afterwards, by default). Runs are written to the results directory
    ``out_dir`` (added to what it holds) as they complete.
    """
    names = scenarios or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; choose from {list(SCENARIOS)}")
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="loglab-torture-")) if own else workdir
    writer = None
    if out_dir is not None:
        writer = ResultsWriter(out_dir, collect_environment(), {"torture": {"scenarios": names, "scale": scale}, "argv": sys.argv},
                               append=True)  # fmt: skip
    runs: list[RunRecord] = []
    try:
        for name in names:
            try:
                got = SCENARIOS[name](workdir / name, scale)
            except Exception as exc:  # a failed scenario is a run, not the end of the run
                run = RunRecord(system="loglab", transport="-", scenario=name, kind="torture", status="failed")
                run.errors.append(f"error: {type(exc).__name__}: {str(exc)[:200]}")
                got = [run]
            runs.extend(got)
            for r in got:
                verdict = r.status if r.status == "skipped" else ("ok" if r.ok else "FAILED")
                echo(f"torture: {r.scenario} {r.transport}: {verdict} {'; '.join(r.notes + r.errors)}")
                if writer is not None:
                    writer.add_run(r)
    finally:
        if writer is not None:
            writer.close()
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    echo(format_table(runs))
    return runs
