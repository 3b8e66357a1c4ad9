"""One row of a torture scenario: what was sent, written, rejected and lost, against what the
scenario expects (``expected_written``; ``ok`` says whether it held), with free-form figures.
``lost`` = sent - written - rejected (rejected: lines the producers sent that the aggregator
refused, such as a killed producer's half line)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

VERSION = 1


@dataclass
class Row:
    scenario: str
    transport: str
    sent: int = 0
    written: int = 0
    rejected: int = 0
    lost: int = 0
    expected_written: int | None = None
    ok: bool = True
    seconds: float = 0.0
    notes: str = ""
    figures: dict = field(default_factory=dict)


def scaled(base: int, scale: float) -> int:
    """``base`` messages times ``scale``, at least one."""
    return max(1, int(base * scale))


def finish(row: Row, t0: float) -> Row:
    """Fill ``lost`` and ``seconds``; ``ok`` also requires the expected count, when there is one."""
    row.lost = row.sent - row.written - row.rejected
    row.seconds = round(time.monotonic() - t0, 2)
    if row.expected_written is not None:
        row.ok = row.ok and row.written == row.expected_written
    return row
