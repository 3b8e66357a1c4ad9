"""``analyzer --servers URL[,URL] --id ID --weight W [--stats-file PATH]``: take the records the
distributor routes here, analyze them, acknowledge them."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Optional

import typer

from distributor import membership as mb
from shipper.stream import server_urls

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command(
    help=(
        "An analyzer: registers ID with weight W in the bucket ANALYZERS (so every distributor replica routes "
        "it a W-proportional share of the stream LOGS), heartbeats every --heartbeat s, and takes deliveries on "
        "analyzer.ID.in. It analyzes every record: counts per host, producer and level, an error-rate window, "
        "and a per-producer sequence check (duplicates, and gaps below the highest seq seen: with several "
        "analyzers mostly the others' share). It acknowledges deliveries once analyzed (--ack-every N: in "
        "groups of N messages); a record that is not a JSON log record with producer and seq is refused (the "
        "distributor offers it to another analyzer, then to the dead-letter stream). The stats file (JSON: id, "
        "weight, messages acknowledged, duplicates, refused, gaps, per_host, per_level, error_window, producers) "
        "is written every --stats-interval s (at most 1) and at exit. Prints 'analyzer ID ready' on stdout once "
        "registered. SIGTERM/SIGINT: deregister, acknowledge what arrived, print a summary, exit 0."
    )
)
def main(
    servers: str = typer.Option(..., "--servers", "-s", help="Comma-separated NATS URLs."),
    id: str = typer.Option(..., "--id", help="This analyzer's id: 1 to 64 letters, digits, '_' or '-'."),
    weight: float = typer.Option(..., "--weight", help="Relative weight (any positive number; normalised among the analyzers online)."),
    stats_file: Optional[Path] = typer.Option(None, help="Write the analysis and counters here (JSON) every --stats-interval s and at exit."),
    stats_interval: float = typer.Option(1.0, min=0.05, max=1.0, help="Seconds between stats-file updates (at most 1)."),
    ack_every: int = typer.Option(1, min=1, help="Acknowledge in groups: once this many messages are analyzed (a batch at least), or 5 ms after the oldest."),
    fail_after: Optional[int] = typer.Option(None, min=0, help="Chaos: stop acknowledging after this many messages (still heartbeating: a wedged analyzer)."),
    slow_ms: float = typer.Option(0.0, min=0.0, help="Chaos: hold each record this many milliseconds before acknowledging it."),
    heartbeat: float = typer.Option(mb.HEARTBEAT_S, min=0.05, help="Seconds between heartbeats (distributors take an analyzer offline after 3 missed ones by default)."),
    register: bool = typer.Option(True, "--register/--no-register", help="Register at start and deregister at exit (--no-register: someone else registers ID, e.g. POST /analyzer/register)."),
    ledger: Optional[Path] = typer.Option(None, help="Append 'HOST/PRODUCER SEQ' of every acknowledged record here, written before the acknowledgement (the lab's loss check)."),
    weight_file: Optional[Path] = typer.Option(None, help="The analyzer changes its own weight to the number in this file when it changes (checked at each heartbeat)."),
    window: int = typer.Option(10, min=1, help="Seconds of the error-rate window."),
    drain: float = typer.Option(0.5, min=0.0, help="At SIGTERM, after deregistering, keep taking deliveries this long."),
    replicas: Optional[int] = typer.Option(None, min=1, max=5, help="Replicas of the buckets if this analyzer creates them (default: the number of --servers URLs, at most 3)."),
) -> None:
    from aggregator.procname import set_process_name

    from .serve import Analyzer, Options

    urls = server_urls(servers)
    try:
        mb.check_id(id)
        mb.check_weight(weight)
        if not urls:
            raise ValueError("--servers names no URL")
    except ValueError as exc:
        print(f"analyzer: error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    set_process_name("loganalyze")
    opts = Options(
        servers=urls, id=id, weight=weight, stats_file=stats_file, stats_interval=stats_interval, ack_every=ack_every,
        fail_after=fail_after, slow_ms=slow_ms, heartbeat=heartbeat, register=register, ledger=ledger,
        weight_file=weight_file, window_s=window, drain=drain, replicas=replicas or min(3, len(urls)),
    )  # fmt: skip
    raise typer.Exit(asyncio.run(Analyzer(opts).run()))


def run() -> None:
    app()
