"""The results directory: written as the run goes (``ResultsWriter``), read back whole
(``load_results``), or bundled into one file (``write_bundle``). The layout and the record schema
are described in ``model.py``; reports and ``compare`` read only what this module loads."""

from __future__ import annotations

import gzip
import re
import time
from dataclasses import asdict, replace
from pathlib import Path

import orjson

from aggregator.files import replace_atomically

from . import stats
from .model import INDEX, KIND, RUNS_DIR, SCHEMA_VERSION, BenchParams, Results, ResultsError, RunRecord


def _atomic_write(path: Path, data: bytes) -> None:
    replace_atomically(path, data, fsync=True)  # a crash keeps the previous index, never half of one


def _dump(obj, indent: bool = True) -> bytes:
    opts = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    if indent:
        opts |= orjson.OPT_INDENT_2
    return orjson.dumps(obj, option=opts) + b"\n"


class ResultsWriter:
    """Persists runs as they finish: ``add_run`` writes the run file, then the index.

    ``ResultsWriter(out_dir, environment, params)``; ``params`` a BenchParams or a dict.
    ``append=True`` adds to the results already in ``out_dir`` (a soak beside a benchmark).
    """

    def __init__(self, out_dir, environment: dict, params: BenchParams | dict, append: bool = False) -> None:
        self.out_dir = Path(out_dir)
        (self.out_dir / RUNS_DIR).mkdir(parents=True, exist_ok=True)
        if append and self.path.exists():
            self.header = orjson.loads(self.path.read_bytes())
            if self.header.get("kind") != KIND:
                raise ResultsError(f"{self.path} is not a loglab results file")
            self.header["schema_version"] = SCHEMA_VERSION
            self.header["complete"] = False
            self._flush()
            return
        self.header = {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "created_ns": time.time_ns(),
            "updated_ns": time.time_ns(),
            "complete": False,
            "environment": environment,
            "params": asdict(params) if isinstance(params, BenchParams) else dict(params),
            "peer": None,
            "tracing": None,
            "notes": [],
            "runs": [],
        }
        self._flush()

    @property
    def path(self) -> Path:
        return self.out_dir / INDEX

    def set_peer(self, name: str, available: bool, reason: str = "", version: str | None = None) -> None:
        """Add a peer asked for (whether it could run, and why not); the first is also ``peer``."""
        entry = {"name": name, "available": available, "reason": reason, "version": version}
        self.header.setdefault("peers", []).append(entry)
        if self.header.get("peer") is None:
            self.header["peer"] = entry
        self._flush()

    def set_tracing(self, enabled: bool, reason: str = "", tool: str | None = None) -> None:
        self.header["tracing"] = {"enabled": enabled, "reason": reason, "tool": tool}
        self._flush()

    def note(self, text: str) -> None:
        self.header["notes"].append(text)
        self._flush()

    def add_run(self, run: RunRecord) -> Path:
        """Compute ``derived``, write the run file, then the index. Returns the run file's path."""
        run.compute_derived()
        n = len(self.header["runs"]) + 1
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{run.kind}-{run.system}-{run.transport}-{run.scenario}-r{run.repeat}")
        name = f"{n:04d}-{slug}{'-warmup' if run.is_warmup else ''}{'-traced' if run.traced else ''}.json"
        path = self.out_dir / RUNS_DIR / name
        _atomic_write(path, _dump(run.to_dict(), indent=False))
        self.header["runs"].append(
            {"file": f"{RUNS_DIR}/{name}", "kind": run.kind, "system": run.system, "transport": run.transport, "scenario": run.scenario,
             "repeat": run.repeat, "is_warmup": run.is_warmup, "traced": run.traced, "status": run.status}
        )  # fmt: skip
        self._flush()
        return path

    def close(self) -> None:
        self.header["complete"] = True
        self._flush()

    def _flush(self) -> None:
        self.header["updated_ns"] = time.time_ns()
        _atomic_write(self.path, _dump(self.header))


def load_results(path) -> Results:
    """Read a results directory, its ``results.json``, or a bundle (runs inline; ``.gz`` too)."""
    path = Path(path)
    index = path / INDEX if path.is_dir() else path
    try:
        raw = index.read_bytes()
        data = orjson.loads(gzip.decompress(raw) if index.suffix == ".gz" else raw)
    except FileNotFoundError:
        raise ResultsError(f"no results file at {index}") from None
    except (orjson.JSONDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise ResultsError(f"{index} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ResultsError(f"{index} is not a loglab results file")
    version = data.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ResultsError(f"{index} has schema_version {version!r}; this loglab reads up to {SCHEMA_VERSION}")
    runs = []
    for entry in data.get("runs", []):
        if "file" in entry:
            run_path = index.parent / entry["file"]
            try:
                runs.append(RunRecord.from_dict(orjson.loads(run_path.read_bytes()), version))
            except (OSError, orjson.JSONDecodeError) as exc:
                raise ResultsError(f"cannot read run file {run_path}: {exc}") from None
        else:
            runs.append(RunRecord.from_dict(entry, version))
    return Results(
        environment=data.get("environment") or {},
        params=data.get("params") or {},
        runs=runs,
        peer=data.get("peer"),
        peers=list(data.get("peers") or ([data["peer"]] if data.get("peer") else [])),
        tracing=data.get("tracing"),
        notes=list(data.get("notes") or []),
        complete=bool(data.get("complete")),
        schema_version=version,
        path=index,
    )


def write_bundle(results: Results, path, max_samples: int | None = None) -> None:
    """One self-contained JSON file (runs inline) that ``load_results`` reads too; gzip-compressed
    when ``path`` ends in ``.gz``. ``max_samples``: keep at most that many stored latency samples
    per run (evenly spaced; the summary and histogram, computed from every sample, are kept whole),
    so that results small enough to commit keep every figure the report shows."""
    runs = [_thin(r, max_samples) for r in results.runs] if max_samples is not None else results.runs
    header = {
        "schema_version": SCHEMA_VERSION, "kind": KIND, "created_ns": time.time_ns(), "updated_ns": time.time_ns(),
        "complete": results.complete, "environment": results.environment, "params": results.params,
        "peer": results.peer, "peers": results.peers, "tracing": results.tracing, "notes": results.notes,
        "runs": [r.to_dict() for r in runs],
    }  # fmt: skip
    data = _dump(header, indent=not str(path).endswith(".gz"))
    _atomic_write(Path(path), gzip.compress(data, mtime=0) if str(path).endswith(".gz") else data)


def _thin(run: RunRecord, max_samples: int) -> RunRecord:
    changes = {}
    for name in ("latency", "receipt_latency"):
        rec = getattr(run, name)
        if rec is not None and len(rec.samples_ns) > max_samples:
            changes[name] = replace(rec, samples_ns=stats.subsample(rec.samples_ns, max_samples))
    return replace(run, **changes) if changes else run
