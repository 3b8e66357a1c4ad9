"""A torture scenario's result is a ``RunRecord`` of kind "torture" (the one run record of the
lab, ``benchmarks/results/model.py``): what was sent, written, rejected and lost, against what the
scenario expects (``expected``; ``ok`` says whether it held), with the scenario's own figures.
``lost`` = sent - written - rejected (rejected: lines the producers sent that the aggregator
refused, such as a killed producer's half line)."""

from __future__ import annotations

import time

from ..results import RunRecord


def torture_run(scenario: str, transport: str, *, sent: int = 0, written: int = 0, rejected: int = 0,
                expected_written: int | None = None, notes: str = "", system: str = "loglab") -> RunRecord:  # fmt: skip
    """The record of one row of a torture scenario (``expected_written``: lines that must be in the
    output, None when the scenario has no exact count)."""
    return RunRecord(system=system, transport=transport, scenario=scenario, kind="torture", sent=sent, written=written,
                     rejected=rejected, expected=expected_written, notes=[notes] if notes else [])  # fmt: skip


def skipped(scenario: str, why: str) -> RunRecord:
    """A scenario that cannot run here (the capability is absent), and why: status "skipped"."""
    run = torture_run(scenario, "-", notes=f"skipped: {why}")
    run.status = "skipped"
    return run


def scaled(base: int, scale: float) -> int:
    """``base`` messages times ``scale``, at least one."""
    return max(1, int(base * scale))


def finish(run: RunRecord, t0: float) -> RunRecord:
    """Fill ``seconds``; ``ok`` also requires the expected count, when there is one."""
    run.seconds = round(time.monotonic() - t0, 2)
    if run.expected is not None and run.written != run.expected:
        run.errors.append(f"{run.written} lines written, {run.expected} expected")
    run.compute_derived()
    return run
