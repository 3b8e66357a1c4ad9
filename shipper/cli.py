"""``shipper --file PATH --servers nats://HOST:PORT[,...] --host NAME``: ship the aggregator's output
into the JetStream stream ``LOGS``, subject ``logs.NAME``, losing and doubling nothing."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Optional

import typer

from .stream import DEFAULT_MAX_BYTES, DUPLICATE_WINDOW_S, valid_host

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command(
    help=(
        "Follow FILE (the aggregator's output) from a checkpoint and publish each line, unchanged and "
        "without its newline, to the JetStream stream LOGS on subject logs.HOST, in batches with "
        "asynchronous acknowledgements. The checkpoint moves only after the server acknowledged; each "
        "message carries a Nats-Msg-Id made of HOST, the file's identity (device, inode, first-line "
        "hash) and the line's byte offset, so a replay after a crash is dropped by the stream's "
        f"duplicate window ({DUPLICATE_WINDOW_S:.0f} s). When NATS is down, slow or the stream is full "
        "the shipper waits and retries with backoff; the file is the buffer and memory stays bounded. "
        "Rotation (mv + the aggregator's SIGUSR1 reopen) is followed by inode: the old file is read to "
        "its end first. Creates the stream LOGS (subjects logs.>, discard new) if it does not exist. "
        "Prints 'shipping FILE to logs.HOST ...' on stdout once connected. SIGTERM/SIGINT: ship what "
        "was read, save the checkpoint, exit 0. Counters go to --stats-file and to stderr at exit."
    )
)
def main(
    file: Path = typer.Option(..., "--file", "-f", help="The file to ship (the aggregator's --output); it may not exist yet."),
    servers: str = typer.Option(..., "--servers", "-s", help="Comma-separated NATS URLs, e.g. nats://127.0.0.1:4222,nats://127.0.0.1:4223."),
    host: str = typer.Option(..., "--host", help="This host's name: the subject is logs.NAME (one subject token: no dots, spaces or wildcards)."),
    checkpoint: Optional[Path] = typer.Option(None, help="Checkpoint file (default: FILE.shipper-checkpoint.json beside FILE)."),
    stats_file: Optional[Path] = typer.Option(None, help="Write counters as JSON here every --stats-interval s and at exit."),
    stats_interval: float = typer.Option(1.0, min=0.05, help="Seconds between stats-file updates."),
    batch_lines: int = typer.Option(500, min=1, help="Lines per batch at most."),
    batch_bytes: int = typer.Option(1 << 20, min=1024, help="Bytes per batch at most (a longer line goes alone)."),
    max_inflight: int = typer.Option(8, min=1, help="Batches awaiting acknowledgement at most: bounds memory and replays."),
    ack_timeout: float = typer.Option(5.0, min=0.1, help="Seconds for every acknowledgement of a batch to come; then retry from the checkpoint."),
    backoff_max: float = typer.Option(5.0, min=0.01, help="Longest wait between retries (the wait doubles from 0.1 s up to this)."),
    drain_timeout: float = typer.Option(10.0, min=0.0, help="At SIGTERM, wait at most this long for the batches in flight."),
    checkpoint_interval: float = typer.Option(0.2, min=0.0, help="Write the checkpoint at most this often (and at exit); it only ever lags."),
    rotate_grace: float = typer.Option(1.0, min=0.0, help="After a rotation, switch to the new file once the old one has not grown for this long."),
    replicas: Optional[int] = typer.Option(None, min=1, max=5, help="Replicas if the shipper creates LOGS (default: the number of --servers URLs, at most 3)."),
    stream_max_bytes: int = typer.Option(DEFAULT_MAX_BYTES, min=1, help="max_bytes if the shipper creates LOGS (publishers are refused beyond it)."),
    create_stream: bool = typer.Option(True, "--create-stream/--no-create-stream", help="Create LOGS if missing (else wait for it)."),
) -> None:
    from aggregator.procname import set_process_name

    from .ship import Options, Shipper

    if not valid_host(host):
        print(f"shipper: error: --host {host!r} must be one subject token (no dots, spaces, * or >)", file=sys.stderr)
        raise typer.Exit(2)
    urls = [u.strip() for u in servers.split(",") if u.strip()]
    if not urls:
        print("shipper: error: --servers names no URL", file=sys.stderr)
        raise typer.Exit(2)
    checkpoint = checkpoint or file.with_name(file.name + ".shipper-checkpoint.json")
    set_process_name("logship")
    opts = Options(
        file=file, servers=urls, host=host, checkpoint=checkpoint, stats_file=stats_file, stats_interval=stats_interval,
        batch_lines=batch_lines, batch_bytes=batch_bytes, max_inflight=max_inflight, ack_timeout=ack_timeout,
        backoff_max=backoff_max, drain_timeout=drain_timeout, checkpoint_interval=checkpoint_interval,
        rotate_grace=rotate_grace, replicas=replicas or min(3, len(urls)), stream_max_bytes=stream_max_bytes,
        create_stream=create_stream,
    )  # fmt: skip
    try:
        code = asyncio.run(Shipper(opts).run())
    except ValueError as exc:  # a corrupt checkpoint: never restart from 0 silently
        print(f"shipper: error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def run() -> None:
    app()
