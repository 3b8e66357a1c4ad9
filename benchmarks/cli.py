"""``loglab``: the lab's command line. ``bench`` measures, ``report`` renders, ``compare`` diffs."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from aggregator.transports import TRANSPORT_NAMES

from .peers import PEERS
from .run.suite import default_suite

PEER_NAMES = tuple(PEERS)

STANDARD_SCENARIOS = tuple(dict.fromkeys(s.name for s in default_suite()))

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="loglab's lab: compare log transports (unixsock, unixgram, tcp, udp, fifo) with evidence.",
)


def _split_transports(text: str) -> tuple[str, ...]:
    chosen = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in chosen if t not in TRANSPORT_NAMES]
    if unknown or not chosen:
        raise typer.BadParameter(f"unknown transport(s) {', '.join(unknown) or text!r}; choose from {', '.join(TRANSPORT_NAMES)}")
    return chosen


@app.command(
    help=(
        "Run the transport comparison and write results (JSON, raw samples, environment) to --out, "
        "then render the report there. Without workload options it runs the standard suite "
        f"({', '.join(STANDARD_SCENARIOS)}); any workload option runs one custom "
        "scenario instead, and an option given several values (--producers 1,2,4) sweeps it."
    )
)
def bench(
    transports: str = typer.Option(",".join(TRANSPORT_NAMES), help="Comma-separated transports to run."),
    scenarios: Optional[str] = typer.Option(
        None,
        help=f"Standard-suite scenarios to run (default: all): {','.join(STANDARD_SCENARIOS)}; and pipeline "
        "(producers -> aggregator -> shipper -> JetStream R1 and R3, with nats-py's ceilings; needs nats-server; "
        "only when named); distribute (LOGS -> distributor(s) -> four weighted analyzers: throughput from the "
        "stream and through HTTP under Locust, fairness through weight changes and a failure, failover timing, the "
        "router alone; needs nats-server; only when named; the report renders its tables and charts); and query "
        "(distributed query latency per token on 4 hosts x 60 MB x --scale, warm and cold cache, beside the scanning "
        "tool's floor; >= 10 trials per cell, --repeat passes; only when named).",
    ),
    producers: Optional[str] = typer.Option(None, help="Producers per run (list = sweep), e.g. 1,2,4,8."),
    count: Optional[str] = typer.Option(None, help="Messages per producer (list = sweep)."),
    size: Optional[str] = typer.Option(None, help="Bytes per message line (list = sweep), e.g. 64,512,4096."),
    rate: Optional[str] = typer.Option(None, help="Messages/s per producer, 0 = as fast as possible (list = sweep)."),
    batch: Optional[str] = typer.Option(None, help="Lines per write on stream transports (list = sweep)."),
    per_connection: Optional[str] = typer.Option(
        None, help="Messages per connection: a new connection every N messages, 0 = one (list = sweep)."
    ),
    message_format: Optional[str] = typer.Option(
        None, "--format", help="The producers' --format (list = sweep): json, rfc3164, rfc5424."
    ),
    framing: Optional[str] = typer.Option(
        None, help="The producers' --framing on unixsock and tcp (list = sweep): newline, octet, lenprefix."
    ),
    repeat: int = typer.Option(3, min=1, help="Measured repeats per cell."),
    warmup: int = typer.Option(1, min=0, help="Warm-up runs per system and transport, before its first cell (kept in the results, flagged, left out of figures)."),
    peer: str = typer.Option(
        ",".join(PEER_NAMES),
        help=f"Run the same workload through these peers too (comma-separated, of benchmarks/peers: {', '.join(PEER_NAMES)}), "
        "or none. A peer asked for that cannot run here is said at the start and in the summary, and the exit status is 1.",
    ),
    trace: Optional[bool] = typer.Option(
        None, "--trace/--no-trace", help="One extra traced run per cell (capacity and efficiency; every cell of a custom run) with the BCC tracer (default: on when available)."
    ),
    rcvbuf: int = typer.Option(4 * 1024 * 1024, min=0, help="Receive buffer for datagram sockets, both systems (bytes)."),
    workers: int = typer.Option(
        1,
        min=0,
        help="loglab's --workers: receiving processes. 1, the aggregator's own default, is what is judged against "
        "the peers and the reference; 0 = one per CPU (a FIFO and unixgram always have one reader).",
    ),
    loglab_args: str = typer.Option(
        "", "--loglab-args", help="More options for loglab's aggregator, as one string (e.g. \"--idle-flush\"): to measure a setting "
        "against the default. Recorded in the results' parameters."),
    out: Optional[Path] = typer.Option(None, help="Results directory (default: results/YYYYmmdd-HHMMSS)."),
    scale: float = typer.Option(1.0, min=0.0001, help="Multiply the standard suite's message counts (quick looks: 0.1)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Render report.md and report.html at the end."),
) -> None:
    from producers.messages import FORMATS, FRAMINGS

    from .run import bench as bench_mod
    from .run.suite import custom_scenario, default_suite, parse_list, restrict

    chosen = _split_transports(transports)
    pipeline = bool(scenarios) and "pipeline" in {s.strip() for s in scenarios.split(",")}
    distribute = bool(scenarios) and "distribute" in {s.strip() for s in scenarios.split(",")}
    query = bool(scenarios) and "query" in {s.strip() for s in scenarios.split(",")}
    if pipeline or distribute or query:
        scenarios = ",".join(s for s in scenarios.split(",") if s.strip() and s.strip() not in ("pipeline", "distribute", "query")) or None
    try:
        lists = dict(
            producers=parse_list(producers, int),
            count=parse_list(count, int),
            size=parse_list(size, int),
            rate=parse_list(rate, float),
            batch=parse_list(batch, int),
            format=_choices(message_format, FORMATS, "--format"),
            framing=_choices(framing, FRAMINGS, "--framing"),
            per_connection=parse_list(per_connection, int),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    peers = [] if peer.strip() in ("", "none") else [p.strip() for p in peer.split(",") if p.strip()]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise typer.BadParameter(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEER_NAMES)}, or none")
    if (pipeline or distribute or query) and scenarios is None and all(v is None for v in lists.values()):
        suite = []  # the scenarios that run only when named, alone
    elif any(v is not None for v in lists.values()):
        if scenarios:
            raise typer.BadParameter("--scenarios selects standard-suite scenarios; it cannot be combined with workload options")
        suite = [custom_scenario(**lists, transports=chosen)]
    else:
        suite = restrict(default_suite(scale), chosen)
        if scenarios:
            wanted = {s.strip() for s in scenarios.split(",") if s.strip()}
            known = {s.name for s in suite}
            if wanted - known:
                raise typer.BadParameter(f"unknown scenario(s) {', '.join(sorted(wanted - known))}; choose from {', '.join(sorted(known))}")
            suite = [s for s in suite if s.name in wanted]
    out_dir = out or Path("results") / time.strftime("%Y%m%d-%H%M%S")
    ok = bench_mod.run_bench(
        suite,
        out_dir=out_dir,
        repeat=repeat,
        warmup=warmup,
        peers=peers,
        trace=trace,
        rcvbuf=rcvbuf or None,
        argv=sys.argv,
        workers=workers,
        loglab_args=shlex.split(loglab_args),
        extra=_nats_runs(repeat, scale, pipeline, distribute, query) if pipeline or distribute or query else None,
    )
    if report:
        from .report import render

        written = render(out_dir)
        print(f"report: {written.html} (and {written.md.name}, {len(written.charts)} charts)", file=sys.stderr)
    if not ok:
        raise typer.Exit(1)


def _choices(text: str | None, allowed: tuple[str, ...], option: str) -> list[str] | None:
    """``"json,rfc5424"`` -> ``["json", "rfc5424"]``, each one of ``allowed``; None stays None."""
    if text is None:
        return None
    chosen = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in chosen if v not in allowed]
    if bad or not chosen:
        raise ValueError(f"{option}: unknown {', '.join(bad) or repr(text)}; choose from {', '.join(allowed)}")
    return chosen


def _nats_runs(repeat: int, scale: float, pipeline: bool, distribute: bool, query: bool):
    """The scenarios that run only when named (they need nats-server), after the suite, into the same results."""

    def run(writer) -> bool:
        echo = lambda t: print(t, file=sys.stderr, flush=True)  # noqa: E731
        ok = True
        if pipeline:
            from natslab.bench import run_pipeline_bench

            ok &= run_pipeline_bench(writer, repeat=repeat, scale=scale, echo=echo)
        if distribute:
            from natslab.distribute_bench import run_distribute_bench

            ok &= run_distribute_bench(writer, repeat=repeat, scale=scale, echo=echo)
        if query:
            from natslab.querybench import run_query_bench

            ok &= run_query_bench(writer, repeat=repeat, scale=scale, echo=echo)
        return ok

    return run


@app.command(
    help=(
        "Render report.md and a self-contained report.html (with PNG charts) from results: a directory written by "
        "`loglab bench` (the report goes into it) or a bundle file (into --out). With --findings README.md, instead "
        "rewrite that README's findings section (between its <!-- findings:NAME: ... --> markers) from these results, "
        "with --rerun for the run-to-run differences; --check only says whether the README still matches (exit 1 if not)."
    )
)
def report(
    results: Path = typer.Argument(..., exists=True, help="A results directory, or a bundle file (.json or .json.gz)."),
    out: Optional[Path] = typer.Option(None, help="Where to write the report (default: the results directory; for a bundle, BUNDLE-report/)."),
    rerun: Optional[Path] = typer.Option(None, exists=True, help="With --findings: a second run of the same workloads, to check the claims against."),
    findings: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="A README to rewrite the findings section of."),
    section: str = typer.Option("bench", help="With --findings: which section (bench, pipeline, ...)."),
    check: bool = typer.Option(False, "--check", help="With --findings: change nothing; exit 1 if the section differs from what these results render."),
) -> None:
    from .report import default_out_dir, render
    from .results import ResultsError, load_results

    if findings is None:
        if check or rerun is not None:
            raise typer.BadParameter("--check and --rerun go with --findings")
        default = default_out_dir(results)
        try:
            written = render(results, out or default)
        except ResultsError as exc:
            print(f"loglab report: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        print(f"{written.md}\n{written.html}")
        return
    from .report.findings import FindingsError, command_for, render_section, update

    try:
        a = load_results(results)
        b = load_results(rerun) if rerun is not None else None
        command = command_for(section, str(results), str(rerun) if rerun else None, str(findings))
        matched = update(findings, section, render_section(section, a, b, str(results), str(rerun) if rerun else None, command), check)
    except (ResultsError, FindingsError) as exc:
        print(f"loglab report: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    if check and not matched:
        print(f"loglab report: {findings}'s findings:{section} section differs from what {results} renders; run: {command}", file=sys.stderr)
        raise typer.Exit(1)
    print(f"{findings}: findings:{section} {'unchanged' if matched else 'rewritten'}")


@app.command(
    help=(
        "Pack a results directory into one file small enough to commit (gzip when OUT ends in .gz): every "
        "run with its summary and histogram whole, at most --max-samples raw latency samples per run "
        "(evenly spaced). `loglab report` and `loglab compare` read the file like the directory."
    )
)
def bundle(
    results: Path = typer.Argument(..., exists=True, help="A results directory (or a bundle to thin again)."),
    out: Path = typer.Argument(..., help="The file to write, e.g. docs/results/bench-a.json.gz."),
    max_samples: int = typer.Option(250, min=1, help="Raw latency samples kept per run (the charts need a few hundred; every figure is computed before thinning)."),
) -> None:
    from .results import ResultsError, load_results
    from .results.store import write_bundle

    try:
        loaded = load_results(results)
    except ResultsError as exc:
        print(f"loglab bundle: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bundle(loaded, out, max_samples=max_samples)
    print(f"{out}: {len(loaded.runs)} runs, {out.stat().st_size // 1024} KiB")


@app.command(
    help=(
        "Compare two results (directories or results.json) cell by cell: median [min–max] on each side, the "
        "change B/A, and whether it is within noise (overlapping ranges). Refuses results from different "
        "environments (kernel, CPU, Python, msgspec, orjson, sysctls) unless --force."
    )
)
def compare(
    a: Path = typer.Argument(..., exists=True, help="Results A (the baseline)."),
    b: Path = typer.Argument(..., exists=True, help="Results B."),
    force: bool = typer.Option(False, "--force", help="Compare even if the environments differ (the differences are listed)."),
) -> None:
    from .results import ResultsError
    from .results.compare import EnvironmentMismatch, NoCommonCells, format_table
    from .results.compare import compare as compare_results

    try:
        result = compare_results(a, b, force=force)
    except (EnvironmentMismatch, ResultsError) as exc:
        print(f"loglab compare: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    except NoCommonCells as exc:
        print(f"loglab compare: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(format_table(result))


@app.command(
    help=(
        "Fault and overload scenarios with bounded time: producers SIGKILLed mid-line, the aggregator "
        "SIGTERMed and SIGKILLed mid-stream, udp overload, a full disk, 1,000 connections, a 100 MB line, "
        "fsync modes, connection churn, a second start on a running aggregator, a rotation on a full "
        "disk, a worker SIGKILLed mid-write; and shipping into NATS (ship_*: shipper SIGKILL, a node "
        "killed, NATS down 30 s, rotation, a full stream). Prints what was sent, written, rejected and "
        "lost against what each scenario expects; exit 1 if any scenario fails."
    )
)
def torture(
    scenarios: Optional[str] = typer.Option(None, help="Comma-separated scenarios (default: all)."),
    scale: float = typer.Option(1.0, min=0.01, help="Multiply message counts (0.3: a quick run)."),
    out: Optional[Path] = typer.Option(
        None, help="A results directory to write the runs into, as they complete (kind 'torture'; added to what it holds; "
        "'loglab report' renders them)."
    ),
) -> None:
    from .faults.torture import SCENARIOS, failed
    from .faults.torture import main as torture_main

    names = [n.strip() for n in scenarios.split(",")] if scenarios else None
    if names and set(names) - set(SCENARIOS):
        raise typer.BadParameter(f"unknown scenario(s); choose from {', '.join(SCENARIOS)}")
    runs = torture_main(names, scale=scale, out_dir=out)
    if failed(runs):
        raise typer.Exit(1)


@app.command(
    help=(
        "Soak: every transport at a steady rate for DURATION seconds, sampling the aggregator's RSS, open "
        "fds and delivery over time. Writes the runs (kind 'soak') into the results directory --out (a bench "
        "results directory works: its report then includes the soak) and soak.png beside them. Exit 1 on growth "
        "or on loss on a reliable transport."
    )
)
def soak(
    duration: float = typer.Option(120.0, min=1.0, help="Seconds per transport (all run at once)."),
    rate: float = typer.Option(2000.0, min=1.0, help="Messages/s per producer."),
    producers: int = typer.Option(2, min=1, help="Producers per transport."),
    out: Path = typer.Option(Path("results/soak"), help="Results directory to add the soak's runs to."),
) -> None:
    from .faults.soak import plot_soak, run_soak, summary_table

    out.mkdir(parents=True, exist_ok=True)
    runs = run_soak(duration_s=duration, rate=rate, producers=producers, out_dir=out)
    print(summary_table(runs))
    plot_soak(runs, out / "soak.png")
    print(f"soak: {out / 'results.json'}, {out / 'soak.png'}", file=sys.stderr)
    if not all(r.ok for r in runs):
        raise typer.Exit(1)


# Shipping beyond one machine (issue 13): loglab nats up/down, loglab hosts up/produce/readback/down,
# loglab readback. They live with the lab they drive, in natslab/.
from natslab.cli import register as _register_shipping  # noqa: E402

_register_shipping(app)


def main() -> None:
    app()
