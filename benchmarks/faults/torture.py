"""``loglab torture``: every fault scenario by name, run in turn, printed as one table of what was
sent, written, rejected and lost against what each expects, and stored as rows (``--out``).

USAGE (as a function; ``loglab torture`` wires it):
    from benchmarks.faults.torture import main
    rows = main(scenarios=None, scale=1.0, workdir=None, out_json=None)

The registry holds the aggregator's scenarios (``scenarios.py``) and shipping's
(``natslab/torture.py``). Results are plain data (``out_json``: ``{"version": 1, "kind":
"loglab-torture", "rows": [...]}``), written as each scenario completes.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from natslab.torture import SCENARIOS as _SHIPPING

from .rows import VERSION, Row
from .scenarios import SCENARIOS as _AGGREGATOR

SCENARIOS = {**_AGGREGATOR, **_SHIPPING}


def format_table(rows: list[Row]) -> str:
    head = ("scenario", "transport", "sent", "written", "rejected", "lost", "expected", "ok", "s", "notes")
    body = [(r.scenario, r.transport, r.sent, r.written, r.rejected, r.lost,
             "-" if r.expected_written is None else r.expected_written, "yes" if r.ok else "NO", r.seconds, r.notes)
            for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) if i in (0, 1, 9) else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, body)])


def main(scenarios: list[str] | None = None, *, scale: float = 1.0, workdir: Path | None = None,
         out_json: Path | None = None, echo=print) -> list[Row]:
    """Run the named scenarios (all by default); print and return the table's rows.

    ``scale`` multiplies message counts (0.2 for a quick run). Files go to ``workdir`` (a temp
    directory, removed afterwards, by default). Rows are written to ``out_json`` as they complete.
    """
    names = scenarios or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; choose from {list(SCENARIOS)}")
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="loglab-torture-")) if own else workdir
    rows: list[Row] = []
    try:
        for name in names:
            try:
                got = SCENARIOS[name](workdir / name, scale)
            except Exception as exc:  # a failed scenario is a row, not the end of the run
                got = [Row(name, "-", ok=False, notes=f"error: {type(exc).__name__}: {str(exc)[:200]}")]
            rows.extend(got)
            for r in got:
                echo(f"torture: {r.scenario} {r.transport}: {'ok' if r.ok else 'FAILED'} {r.notes}")
            if out_json is not None:
                out_json.write_text(json.dumps({"version": VERSION, "kind": "loglab-torture",
                                                "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    echo(format_table(rows))
    return rows


if __name__ == "__main__":
    args = sys.argv[1:]
    scale = 1.0
    if args and args[0].startswith("--scale="):
        scale = float(args.pop(0).split("=", 1)[1])
    result = main(args or None, scale=scale)
    sys.exit(0 if all(r.ok for r in result) else 1)
