"""Scan one file for a query: the fastest tool available, as a child process, argv lists only.

Tools, in order of preference (``pick_scanner("auto")``): ripgrep (``rg``, Debian's ``ripgrep``,
installed by ``scripts/setup-query.sh``), GNU ``grep``, and ``python -m shipper.query.pyscan``.
Each runs as a child process, so a pathological pattern costs the child, never the agent's event
loop, and the deadline can always stop it (SIGKILL). If the agent itself dies: a streaming scanner
gets SIGPIPE at its next write; ripgrep cannot backtrack, so a count ends with its file; grep (whose
backreferences can backtrack) runs under ``setpriv --pdeathsig KILL`` and the Python scanner sets
PR_SET_PDEATHSIG itself and ends at its own deadline. (A ``preexec_fn`` would do it for all, but it
makes Python fork the agent instead of vfork: ~5 ms more per scan, measured.) The pattern is passed
after ``--`` in an argv list: no shell ever sees it, so ``$(...)``, backticks and ``;`` are only
characters to search for.

Regular-expression dialects: ripgrep's (Rust ``regex``: no backreferences or look-around, so no
catastrophic backtracking), ``grep -E`` (POSIX extended), Python's ``re`` on bytes. The common
subset (classes, alternation, anchors, repetition) means the same in all three.

Field filters and the time range (``RecordFilter``) apply after the text match, to the lines the
scanner prints: only those are parsed as JSON.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson

from .protocol import Query

SCANNERS = ("rg", "grep", "python")
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Scanner:
    """One scanning tool: ``name`` (rg, grep, python) and how to call it."""

    name: str
    executable: str

    def argv(self, q: Query, path: Path | str, count: bool) -> list[str]:
        """The child's argv: options from the query's fields, then ``--``, the pattern, the file."""
        if self.name == "rg":
            # --no-config: no RIPGREP_CONFIG_PATH surprises; --text: never "binary file matches";
            # an explicit path is searched whatever .gitignore says.
            opts = ["--no-config", "--text", "--no-filename", "--no-line-number", "--color", "never"]
            opts += ["--fixed-strings"] if q.fixed else []
            opts += ["--ignore-case"] if q.ignore_case else ["--case-sensitive"]
        elif self.name == "grep":
            opts = ["--text", "--no-filename", "--color=never", "--fixed-strings" if q.fixed else "--extended-regexp"]
            opts += ["--ignore-case"] if q.ignore_case else []
        else:
            opts = ["-m", "shipper.query.pyscan"] + (["--fixed"] if q.fixed else [])
            opts += ["--ignore-case"] if q.ignore_case else []
        opts += ["--invert-match"] if q.invert else []
        opts += ["--count"] if count else []
        return [*self.wrapper, self.executable, *opts, "--", q.pattern, str(path)]

    @property
    def wrapper(self) -> list[str]:
        """grep can backtrack (backreferences): it must not outlive the agent."""
        setpriv = shutil.which("setpriv") if self.name == "grep" else None
        return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def pick_scanner(preference: str = "auto") -> Scanner:
    """The scanner to use: ``auto`` = the first of rg, grep, python found; or one by name
    (ValueError if that one is not installed)."""
    names = SCANNERS if preference == "auto" else (preference,)
    for name in names:
        if name == "python":
            return Scanner("python", sys.executable)
        if name not in SCANNERS:
            raise ValueError(f"unknown scanner {name!r}; choose from auto, {', '.join(SCANNERS)}")
        path = shutil.which(name)
        if path is not None:
            return Scanner(name, path)
    raise ValueError(f"scanner {preference!r} is not installed")


def scan_env(scanner: Scanner) -> dict | None:
    """grep's speed and its idea of a character depend on the locale: C.UTF-8, the same for every
    agent whatever the environment it was started from (rg and Python do not read the locale)."""
    if scanner.name != "grep":
        return None
    return {**os.environ, "LC_ALL": "C.UTF-8"}


def die_with_parent() -> None:
    """SIGKILL this process when its parent (the agent) dies (the Python scanner calls it first)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the agent's deadline still kills it
        pass


# -- which files ------------------------------------------------------------------------------------

_ROTATED_SUFFIX = re.compile(r"^[.-][0-9][0-9A-Za-z_-]*$")  # NAME.1, NAME.2, NAME-20250101


def files_for(current: Path, rotated: bool) -> list[Path]:
    """The file to scan, and with ``rotated`` its rotated siblings (``NAME.1``, ``NAME-20250101``:
    a suffix that starts with a digit; compressed ones are not searched), oldest first: the
    highest number first, then the current file last, so matches come out in time order."""
    current = Path(current)
    out = []
    if rotated:
        try:
            siblings = list(current.parent.iterdir())
        except FileNotFoundError:
            siblings = []
        for p in siblings:
            rest = p.name[len(current.name):]
            if p.name.startswith(current.name) and _ROTATED_SUFFIX.match(rest) and not rest.endswith((".gz", ".zst", ".xz", ".bz2")):
                if p.is_file():
                    out.append(p)
        out.sort(key=lambda p: _oldest_first(p.name[len(current.name) + 1 :]))
    out.append(current)
    return out


def _oldest_first(suffix: str) -> tuple:
    """Sort key: logrotate's numbers, highest (oldest) first, then dated names in date order."""
    if suffix.isdigit() and len(suffix) < 6:
        return (0, -int(suffix), "")
    return (1, 0, suffix)


# -- after the text match ---------------------------------------------------------------------------


class RecordFilter:
    """Field equality (``level=error``) and a half-open ``received_ns`` range, on parsed records.

    A field's value compares as text with a string; with a number, numerically when the filter's
    value is a number (``seq=5``); ``true``/``false``/``null`` with JSON's literals. A line that is
    not a JSON object, or lacks the field, does not match."""

    def __init__(self, q: Query) -> None:
        self.fields = [(k, v, _as_number(v)) for k, v in q.fields.items()]
        self.since = q.since_ns
        self.until = q.until_ns

    def __call__(self, line: bytes) -> bool:
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(rec, dict):
            return False
        if self.since is not None or self.until is not None:
            t = rec.get("received_ns")
            if not isinstance(t, int) or isinstance(t, bool):
                return False
            if (self.since is not None and t < self.since) or (self.until is not None and t >= self.until):
                return False
        for key, text, number in self.fields:
            value = rec.get(key, _MISSING)
            if value is _MISSING or not _equal(value, text, number):
                return False
        return True


_MISSING = object()


def _as_number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None


def _equal(value, text: str, number) -> bool:
    if isinstance(value, str):
        return value == text
    if value is None:
        return text == "null"
    if isinstance(value, bool):
        return text == ("true" if value else "false")
    if isinstance(value, (int, float)):
        return number is not None and value == number
    return False  # objects and arrays never equal a filter's text
