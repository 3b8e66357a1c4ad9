"""``distributor --servers nats://HOST:PORT[,...]``: route the ``LOGS`` stream to the analyzers in
proportion to their weights, acknowledged end to end."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Optional

import typer

from shipper.stream import server_urls

from . import membership as mb

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command(
    help=(
        "Consume the JetStream stream LOGS through a durable pull consumer (explicit acknowledgements; shared "
        "by every replica started with the same --consumer, each message going to one replica) and route each "
        "message to one analyzer, in proportion to the analyzers' weights: an exact schedule (earliest deadline "
        "first over each analyzer's share), so between two membership or weight changes every analyzer is less "
        "than one message off its exact share. Messages go in batches, one delivery per analyzer per batch. A "
        "source message is acknowledged to the stream only after its analyzer acknowledged it. An analyzer that "
        "does not acknowledge within --ack-timeout is marked down and what was in flight to it goes to the others "
        "(failover); a message no analyzer takes after --max-attempts goes to the dead-letter stream DEADLETTER. "
        "Membership and weights come from the key-value bucket ANALYZERS (analyzers register, heartbeat and "
        "deregister there; see distributor-ctl and distributor-http). Prints 'distributing LOGS ...' on stdout once "
        "ready. SIGTERM/SIGINT: wait for the deliveries in flight (at most --drain-timeout), hand the rest back to "
        "the stream (NAK), exit 0. Counters go to --stats-file, to the bucket DISTRIBUTORS and to stderr at exit."
    )
)
def main(
    servers: str = typer.Option(..., "--servers", "-s", help="Comma-separated NATS URLs, e.g. nats://127.0.0.1:4222,nats://127.0.0.1:4223."),
    id: Optional[str] = typer.Option(None, "--id", help="This replica's name in stats and logs (default d-HOST-PID)."),
    consumer: str = typer.Option("distributor", help="The durable consumer's name: replicas with the same name share the work."),
    batch: int = typer.Option(500, min=1, help="Messages routed together (one delivery per analyzer per batch)."),
    pull_batch: int = typer.Option(1000, min=1, help="Messages asked of the stream per pull request."),
    max_pending: int = typer.Option(20_000, min=1, help="Messages in hand at most (taken from the stream, not yet acknowledged to it)."),
    ack_timeout: float = typer.Option(2.0, min=0.05, help="Seconds for an analyzer to acknowledge a delivery; then it is marked down and the delivery fails over."),
    max_attempts: int = typer.Option(5, min=1, help="Deliveries of one message (failures and refusals) before it goes to the dead-letter stream."),
    ack_wait: float = typer.Option(30.0, min=1.0, help="The consumer's ack wait if this replica creates it (messages held longer get progress acks)."),
    heartbeat_timeout: float = typer.Option(mb.HEARTBEAT_TIMEOUT_S, min=0.05, help="An analyzer whose last heartbeat is older is offline."),
    down_hold: float = typer.Option(mb.DOWN_HOLD_S, min=0.0, help="An analyzer marked down stays down at least this long (then it is tried again if it heartbeats)."),
    stats_file: Optional[Path] = typer.Option(None, help="Write counters, the current epoch and membership as JSON here every --stats-interval s and at exit."),
    stats_interval: float = typer.Option(1.0, min=0.05, help="Seconds between stats updates (file and bucket)."),
    drain_timeout: float = typer.Option(5.0, min=0.0, help="At SIGTERM, wait at most this long for the deliveries in flight."),
    replicas: Optional[int] = typer.Option(None, min=1, max=5, help="Replicas of the buckets and dead-letter stream if this replica creates them (default: the number of --servers URLs, at most 3)."),
) -> None:
    from aggregator.procname import set_process_name

    from .distribute import Distributor, Options

    urls = server_urls(servers)
    if not urls:
        print("distributor: error: --servers names no URL", file=sys.stderr)
        raise typer.Exit(2)
    if id is not None and not mb.valid_id(id):
        print(f"distributor: error: --id {id!r}: 1 to 64 letters, digits, '_' or '-'", file=sys.stderr)
        raise typer.Exit(2)
    if not mb.valid_id(consumer):
        print(f"distributor: error: --consumer {consumer!r}: 1 to 64 letters, digits, '_' or '-'", file=sys.stderr)
        raise typer.Exit(2)
    set_process_name("logdist")
    opts = Options(
        servers=urls, id=id or "", consumer=consumer, batch=batch, pull_batch=pull_batch, max_pending=max_pending,
        ack_timeout=ack_timeout, max_attempts=max_attempts, ack_wait=ack_wait, heartbeat_timeout=heartbeat_timeout,
        down_hold=down_hold, stats_file=stats_file, stats_interval=stats_interval, drain_timeout=drain_timeout,
        replicas=replicas or min(3, len(urls)),
    )  # fmt: skip
    raise typer.Exit(asyncio.run(Distributor(opts).run()))


def run() -> None:
    app()
