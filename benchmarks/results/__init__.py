"""Results as plain data (hyperfine/pyperf style): the record model (``model``), the results
directory (``store``), the statistics every figure uses (``stats``), the per-producer sequence
check (``seqcheck``), the machine's description (``environment``) and ``compare``."""

from __future__ import annotations

from . import stats
from .model import (
    INDEX,
    KIND,
    KINDS,
    RUNS_DIR,
    SCHEMA_VERSION,
    BenchParams,
    LatencyRecord,
    ProcessStats,
    Results,
    ResultsError,
    RunRecord,
    Workload,
)
from .store import ResultsWriter, load_results, write_bundle

__all__ = [
    "INDEX", "KIND", "KINDS", "RUNS_DIR", "SCHEMA_VERSION", "BenchParams", "LatencyRecord", "ProcessStats", "Results",
    "ResultsError", "ResultsWriter", "RunRecord", "Workload", "load_results", "stats", "write_bundle",
]  # fmt: skip
