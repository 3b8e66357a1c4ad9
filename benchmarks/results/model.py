"""Results as plain data: one workload model and one run record for every kind of run (a benchmark
cell, a torture scenario, a soak), so the report and ``compare`` read them all the same way.

Layout of a results directory (written as the run goes, hyperfine style)::

    RESULTS_DIR/results.json            the index: header + one short entry per finished run;
                                        rewritten atomically (tmp file, fsync, rename) after each run
    RESULTS_DIR/runs/NNNN-SYSTEM-TRANSPORT-SCENARIO-rR[-warmup].json
                                        one RunRecord each, written atomically *before* the index
                                        names it, so a crash keeps every finished run

Reports and ``compare`` read only these files (``load_results``).

results.json (``schema_version`` 3)::

    {"schema_version": 3, "kind": "loglab-bench-results",
     "created_ns", "updated_ns": int, "complete": bool (True after ResultsWriter.close()),
     "environment": {...}           environment.collect_environment()
     "params": {...}                BenchParams: repeats, warmups, systems, transports,
                                    scenarios [{name, description, transports, points[...]}], argv, extra
     "peer": {"name", "available", "reason", "version"} | null   (the first of "peers")
     "peers": [{"name", "available", "reason", "version"}]     (every peer asked for)
     "tracing": {"enabled", "reason", "tool"} | null
     "notes": [str],
     "runs": [{"file": "runs/0001-....json", "kind", "system", "transport", "scenario", "repeat",
               "is_warmup", "status"}]}

Each run file is a RunRecord (``RunRecord.to_dict``); the main fields::

    kind "bench"|"torture"|"soak"|"micro"  (what made it: loglab bench, loglab torture, loglab soak;
                                   micro: an in-process microbenchmark, its figures in ``figures``,
                                   e.g. benchmarks/hotpath_cost.py)
    system "loglab"|"syslog-ng"|..., transport, scenario,
    workload {producers, count, size, rate, batch, per_connection, format, framing} | null  (null: a
             torture scenario whose workload is its own, said in its notes; format and framing are
             the producer's, "json" and "newline" when absent),
    repeat (0-based, counted separately for warm-ups and measured runs), is_warmup,
    traced (the extra run per cell with the tracer attached; left out of headline figures),
    status "ok"|"failed",
    window_start_ns, window_end_ns, producers_done_ns, expected, sent,
    seq {expected, received, missing, duplicates, reordered, out_of_range, records, bad_lines,
         unexpected_producers, first_received_ns, last_received_ns, producers {id: {...}}}
    latency {summary {count, min_ns, mean_ns, p50_ns, p90_ns, p99_ns, p99_9_ns, max_ns, negative},
             samples_ns [<= 20,000, evenly subsampled, output order], samples_total,
             histogram [[low_ns, high_ns, count]], percentile_method} | null
             the observer's: intended send time -> the line is in the output file (run/observer.py)
    receipt_latency {...the same...} | null   the system's own receipt stamp (received_ns) - intended
    memory {steady_pss_bytes, peak_pss_bytes, samples, interval_s} | null
             the receiver's process tree, PSS sampled over the window (median, max)
    aggregator, producers: ProcessStats {cpu_s, user_s, system_s, voluntary_ctx_switches,
             involuntary_ctx_switches, peak_rss_bytes} | null   (producers: summed; rss: the max)
    udp_snmp_before, udp_snmp_after: {Udp counter: int} | null    (/proc/net/snmp)
    socket {"rcvbuf": int, "sndbuf": int, ...} (effective sizes), system_stats {...} (the system's
    own counters), producer_errors {"EAGAIN": n}, trace {...} | null, trace_skipped str | null,
    errors [str], notes [str],
    derived {messages_per_s, mb_per_s, loss_fraction, agg_cpu_us_per_msg, prod_cpu_us_per_msg,
             steady_mem_mib, peak_mem_mib,
             udp_rcvbuf_errors, udp_in_errors, window_s,
             shipper_cpu_us_per_msg, nats_cpu_us_per_msg}     (RunRecord.compute_derived)
    shipper: ProcessStats | null    (pipeline scenario: the shipper, or the ceiling's publisher)
    written, rejected: int | null   (torture, soak: lines in the output and rejects, as counted by
                                     the scenario; bench runs count delivery in ``seq``)
    figures {...}                   what a scenario measured beyond the common fields
    series [{...}]                  samples over time (soak: t_s, rss_bytes, fds, written, expected)
    seconds: float | null           how long a torture scenario or soak took
Derived figures: ``window_s = (window_end_ns - window_start_ns) / 1e9``; ``messages_per_s =
seq.received / window_s``; ``mb_per_s = messages_per_s * workload.size / 1e6`` (MB = 10^6 bytes of
producer message lines); ``agg_cpu_us_per_msg = aggregator.cpu_s / seq.received * 1e6``;
``prod_cpu_us_per_msg = producers.cpu_s / (sent or expected) * 1e6``; udp counters: after - before.

``trace`` (optional, from the tracer; the report reads these keys and ignores the rest)::

    {"producer":   {"syscalls_per_message": float, "top": [{"syscall", "count", "per_message"}]
                                                          or {name: count}, ...},
     "aggregator": {...same...},
     "overhead": {...} (free form), ...}

``benchmarks.tracing.summarize`` keys its output by comm (``logprod``/``logagg``/``syslog-ng``);
the report accepts those too (``logprod`` = producer; ``logagg``/``syslog-ng`` = aggregator) and
``syscalls_per_msg`` as an alias.

History: 1 (2026-11) first version (``traced`` added before any results were published); still 1
with the optional ``shipper`` ProcessStats and the derived ``shipper_cpu_us_per_msg`` and
``nats_cpu_us_per_msg`` (pipeline scenario, issue 13). 2 (2026-11, issue 10): ``point`` is
``workload``, and ``kind``, ``written``, ``rejected``, ``figures``, ``series``, ``seconds`` are new,
so torture and soak store their runs here too instead of in formats of their own. Version 1 files
are read as version 2 (``point`` -> ``workload``, ``kind`` "bench"). 3 (2026-11, issue 11): ``latency`` is
the observer's (one observer for every system), the system's own stamp moved to
``receipt_latency``; ``memory``; ``workload.per_connection``; each run file carries its own
``schema_version``. Versions 1 and 2 are read with their ``latency`` as ``receipt_latency``. Still 3 with the optional
``workload.format`` and ``workload.framing`` and the header's ``peers`` (issue 12: input formats,
rsyslog as a second peer); files without them read as JSON lines and the one ``peer``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping


from . import stats
from .seqcheck import SeqCheckResult

SCHEMA_VERSION = 3
KINDS = ("bench", "torture", "soak", "micro")
KIND = "loglab-bench-results"
INDEX = "results.json"
RUNS_DIR = "runs"


class ResultsError(ValueError):
    """A results file that cannot be read (missing, not ours, or a newer schema)."""


@dataclass(frozen=True)
class Workload:
    """What the producers send: the one workload model of a benchmark cell, a sweep point, a
    torture scenario or a soak. The transport is the run's, not the workload's."""

    producers: int = 4
    count: int = 10_000  # messages per producer
    size: int = 200  # bytes per message line, newline included
    rate: float = 0.0  # messages/s per producer; 0 = as fast as possible
    batch: int = 1  # lines per write (stream transports; datagrams carry one message each)
    # Messages per connection: every producer opens a new connection (a new socket, or reopens
    # the FIFO) after this many messages, as short-lived programs do; 0 = one for the whole run.
    per_connection: int = 0
    format: str = "json"  # the producer's --format: json, rfc3164, rfc5424
    framing: str = "newline"  # the producer's --framing on byte streams: newline, octet, lenprefix

    @property
    def offered_rate(self) -> float:
        """Messages/s offered by all producers together (0 = unbounded)."""
        return self.rate * self.producers

    @property
    def expected(self) -> int:
        return self.producers * self.count

    def label(self) -> str:
        rate = "unbounded" if not self.rate else f"{self.rate:,.0f}/s each"
        churn = f", a new connection every {self.per_connection}" if self.per_connection else ""
        shape = "" if (self.format, self.framing) == ("json", "newline") else f", {self.format} {self.framing}"
        return f"{self.producers} producers x {self.count:,} msgs, {self.size} B, rate {rate}, batch {self.batch}{churn}{shape}"

    def load_label(self) -> str:
        """Producers and their rate: ``4 x 10,000/s`` (``max`` = unbounded)."""
        return f"{self.producers} x {f'{self.rate:,.0f}/s' if self.rate else 'max'}"

    def short_label(self) -> str:
        """A row label: ``4 x 10,000/s, 200 B`` (offered rate always shown; ``max`` = unbounded)."""
        extra = f", batch {self.batch}" if self.batch > 1 else ""
        extra += f", {self.per_connection}/conn" if self.per_connection else ""
        extra += "" if (self.format, self.framing) == ("json", "newline") else f", {self.format} {self.framing}"
        return f"{self.load_label()}, {self.size} B{extra}"


@dataclass
class ProcessStats:
    """CPU and scheduling cost of a process (or a sum of processes) over the window.

    ``cpu_s`` is the precise on-CPU time (ns-resolution ``/proc/PID/task/*/schedstat`` for live
    processes, µs-resolution rusage for reaped ones); ``user_s``/``system_s`` are the kernel's
    tick-sampled split (10 ms ticks), so they are coarse on short windows and need not add up to
    exactly ``cpu_s``. Peak RSS: VmHWM (the max over producers when summed).
    """

    cpu_s: float = 0.0
    user_s: float = 0.0
    system_s: float = 0.0
    voluntary_ctx_switches: int = 0
    involuntary_ctx_switches: int = 0
    peak_rss_bytes: int = 0


@dataclass
class LatencyRecord:
    summary: dict  # stats.latency_summary over every sample
    samples_ns: list[int]  # at most max_samples, evenly subsampled
    samples_total: int
    histogram: list[list[int]]  # stats.histogram over every sample
    percentile_method: str = stats.PERCENTILE_METHOD

    @classmethod
    def from_samples(cls, samples_ns, max_samples: int = stats.DEFAULT_MAX_SAMPLES) -> "LatencyRecord":
        return cls(stats.latency_summary(samples_ns), stats.subsample(samples_ns, max_samples), len(samples_ns), stats.histogram(samples_ns))


@dataclass
class RunRecord:
    system: str
    transport: str
    scenario: str
    workload: Workload | None = None
    repeat: int = 0
    kind: str = "bench"  # see KINDS
    is_warmup: bool = False
    traced: bool = False  # the extra run with the tracer attached: syscall figures, never headline ones
    status: str = "ok"
    window_start_ns: int = 0
    window_end_ns: int = 0
    producers_done_ns: int | None = None
    expected: int | None = 0
    sent: int | None = None
    seq: SeqCheckResult | None = None
    # The observer's latency (benchmarks/run/observer.py): intended send time -> the line is in the
    # output file, measured the same way for every system. receipt_latency: the system's own
    # receipt stamp (loglab's received_ns; a peer's), a second, labelled figure.
    latency: LatencyRecord | None = None
    receipt_latency: LatencyRecord | None = None
    # The receiver's memory over the window: PSS of its process tree, sampled (measure.py).
    memory: dict | None = None
    aggregator: ProcessStats | None = None
    producers: ProcessStats | None = None
    udp_snmp_before: dict | None = None
    udp_snmp_after: dict | None = None
    socket: dict = field(default_factory=dict)
    system_stats: dict = field(default_factory=dict)
    producer_errors: dict = field(default_factory=dict)
    trace: dict | None = None
    trace_skipped: str | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    derived: dict = field(default_factory=dict)
    shipper: ProcessStats | None = None  # the pipeline scenario: the shipper (or the ceiling publisher)
    written: int | None = None  # torture, soak: lines in the output (bench runs: seq.received)
    rejected: int | None = None
    figures: dict = field(default_factory=dict)  # what a scenario measured beyond the common fields
    series: list[dict] = field(default_factory=list)  # samples over time (soak)
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok" and not self.errors

    @ok.setter
    def ok(self, value: bool) -> None:
        self.status = "ok" if value else "failed"

    @property
    def lost(self) -> int | None:
        """Sent but neither written nor rejected (torture, soak)."""
        if self.sent is None or self.written is None:
            return None
        return self.sent - self.written - (self.rejected or 0)

    @property
    def delivered(self) -> int:
        return self.seq.received if self.seq else 0

    def compute_derived(self) -> dict:
        """Fill ``derived`` from the raw fields (see the module docstring) and return it."""
        d: dict[str, Any] = {}
        window_s = (self.window_end_ns - self.window_start_ns) / 1e9 if self.window_end_ns > self.window_start_ns else None
        d["window_s"] = window_s
        delivered = self.delivered
        d["messages_per_s"] = delivered / window_s if window_s and self.seq else None
        size = self.workload.size if self.workload else None
        d["mb_per_s"] = d["messages_per_s"] * size / 1e6 if d["messages_per_s"] is not None and size else None
        d["loss_fraction"] = self.seq.loss_fraction if self.seq else None
        d["agg_cpu_us_per_msg"] = self.aggregator.cpu_s / delivered * 1e6 if self.aggregator and delivered else None
        sent = self.sent if self.sent is not None else self.expected
        d["prod_cpu_us_per_msg"] = self.producers.cpu_s / sent * 1e6 if self.producers and sent else None
        mem = self.memory or {}
        d["steady_mem_mib"] = mem["steady_pss_bytes"] / 2**20 if mem.get("steady_pss_bytes") else None
        d["peak_mem_mib"] = mem["peak_pss_bytes"] / 2**20 if mem.get("peak_pss_bytes") else None
        d["shipper_cpu_us_per_msg"] = self.shipper.cpu_s / delivered * 1e6 if self.shipper and delivered else None
        nats_cpu = self.system_stats.get("nats_cpu_s") if self.system_stats else None
        d["nats_cpu_us_per_msg"] = nats_cpu / delivered * 1e6 if nats_cpu is not None and delivered else None
        for name, key in (("udp_rcvbuf_errors", "RcvbufErrors"), ("udp_in_errors", "InErrors")):
            b, a = self.udp_snmp_before or {}, self.udp_snmp_after or {}
            d[name] = a[key] - b[key] if key in a and key in b else None
        self.derived = d
        return d

    def to_dict(self) -> dict:
        out = {"schema_version": SCHEMA_VERSION}  # per run: a directory can hold runs of several versions
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "seq":
                v = v.to_dict() if v is not None else None
            elif f.name in ("workload", "latency", "receipt_latency", "aggregator", "producers", "shipper") and v is not None:
                v = asdict(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, d: Mapping, version: int = SCHEMA_VERSION) -> "RunRecord":
        d = dict(d)
        version = d.pop("schema_version", version)
        if "point" in d and "workload" not in d:  # schema version 1
            d["workload"] = d.pop("point")
        if version < 3:  # latency was the system's own receipt stamp; no observer then
            d["receipt_latency"] = d.pop("latency", None)
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}  # newer optional fields are ignored
        if d.get("workload") is not None:
            d["workload"] = Workload(**d["workload"])
        if d.get("seq") is not None:
            d["seq"] = SeqCheckResult.from_dict(d["seq"])
        for key in ("latency", "receipt_latency"):
            if d.get(key) is not None:
                d[key] = LatencyRecord(**d[key])
        for role in ("aggregator", "producers", "shipper"):
            if d.get(role) is not None:
                d[role] = ProcessStats(**d[role])
        return cls(**d)


@dataclass
class BenchParams:
    """What was asked for: the workload parameters the report prints."""

    repeats: int = 1
    warmups: int = 0
    systems: list[str] = field(default_factory=lambda: ["loglab"])
    transports: list[str] = field(default_factory=list)
    scenarios: list[dict] = field(default_factory=list)  # {name, description, transports, workloads: [Workload dicts]}
    argv: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


@dataclass
class Results:
    """A loaded results directory (or bundle)."""

    environment: dict
    params: dict
    runs: list[RunRecord]
    peer: dict | None = None
    peers: list[dict] = field(default_factory=list)  # every peer asked for (``peer`` is the first)
    tracing: dict | None = None
    notes: list[str] = field(default_factory=list)
    complete: bool = False
    schema_version: int = SCHEMA_VERSION
    path: Path | None = None

    def measured(self) -> list[RunRecord]:
        """The benchmark runs every headline figure comes from: no warm-ups, no traced runs."""
        return [r for r in self.runs if r.kind == "bench" and not r.is_warmup and not r.traced]

    def traced(self) -> list[RunRecord]:
        """The benchmark runs made with the tracer attached (syscall figures, tracer overhead)."""
        return [r for r in self.runs if r.kind == "bench" and r.traced and not r.is_warmup]

    def of_kind(self, kind: str) -> list[RunRecord]:
        return [r for r in self.runs if r.kind == kind]


