"""``shipper --file PATH --servers nats://HOST:PORT[,...] --host NAME``: ship the aggregator's output
into the JetStream stream ``LOGS``, subject ``logs.NAME``, losing and doubling nothing; and answer
queries about that file (``querier``) on ``loglab.query.NAME`` (``shipper/query/``).
``--no-ship``: answer queries only."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Optional

import typer

from .stream import DEFAULT_MAX_BYTES, DUPLICATE_WINDOW_S, server_urls, valid_host

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
        "was read, save the checkpoint, exit 0. Counters go to --stats-file and to stderr at exit. "
        "The same process answers queries about FILE (and its rotated files when asked) from the querier "
        "command, on subject loglab.query.HOST (request/reply, no queue group): it scans with ripgrep, grep or "
        "Python in a child process, streams the matching lines back under the server's payload limit with "
        "bounded memory, stops at each query's deadline and when the querier goes away. It prints "
        "'answering queries for FILE ...' once subscribed and listed in the registry (KV bucket LOGLAB_AGENTS). "
        "--no-ship answers queries without shipping."
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
    ship: bool = typer.Option(True, "--ship/--no-ship", help="--no-ship: do not ship; only answer queries (the file need not exist yet)."),
    query: bool = typer.Option(True, "--query/--no-query", help="Answer queries about FILE on loglab.query.HOST (--no-query: ship only)."),
    query_scanner: str = typer.Option("auto", help="The scanning tool: auto (rg, else grep, else python), rg, grep or python."),
    query_max: int = typer.Option(4, min=1, help="Queries answered at once at most; more are refused as busy (each runs a scanner)."),
) -> None:
    from aggregator.procname import set_process_name

    from .ship import Options

    if not valid_host(host):
        print(f"shipper: error: --host {host!r} must be one subject token (no dots, spaces, * or >)", file=sys.stderr)
        raise typer.Exit(2)
    urls = server_urls(servers)
    if not urls:
        print("shipper: error: --servers names no URL", file=sys.stderr)
        raise typer.Exit(2)
    if not ship and not query:
        print("shipper: error: --no-ship and --no-query leave nothing to do", file=sys.stderr)
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
    agent_opts = None
    if query:
        from .query.agent import AgentOptions
        from .query.scan import pick_scanner

        try:
            pick_scanner(query_scanner)
        except ValueError as exc:
            print(f"shipper: error: --query-scanner: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        agent_opts = AgentOptions(servers=urls, host=host, file=file, scanner=query_scanner, max_queries=query_max, replicas=opts.replicas)
    try:
        code = asyncio.run(_serve(opts, agent_opts, ship))
    except ValueError as exc:  # a corrupt checkpoint: never restart from 0 silently
        print(f"shipper: error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


async def _serve(opts, agent_opts, ship: bool) -> int:
    """The shipper and the query agent side by side in one event loop, stopped by one signal."""
    import signal

    from .ship import Shipper

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    agent = agent_task = None
    if agent_opts is not None:
        from .query.agent import QueryAgent

        agent = QueryAgent(agent_opts, stopping)
        agent_task = asyncio.create_task(agent.run())
        # Ready to answer before "shipping" is said: whoever waits for the shipper can query it.
        ready = asyncio.create_task(agent.ready.wait())
        stop = asyncio.create_task(stopping.wait())
        await asyncio.wait([ready, stop, agent_task], return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        stop.cancel()
    query_stats = (lambda: {"query": agent.counters.to_dict()}) if agent is not None else None
    try:
        if ship:
            return await Shipper(opts, stopping=stopping, extra_stats=query_stats).run()
        await _answer_only(opts, stopping, query_stats)
        return 0
    finally:
        stopping.set()
        if agent_task is not None:
            await agent_task


async def _answer_only(opts, stopping: asyncio.Event, query_stats) -> None:
    """--no-ship: the stats file holds the host, the file and the agent's counters."""
    import json
    import time

    from aggregator.files import replace_atomically

    def write() -> None:
        if opts.stats_file is not None:
            stats = {"host": opts.host, "file": str(opts.file), "written_at_unix_ns": time.time_ns(), **query_stats()}
            replace_atomically(opts.stats_file, (json.dumps(stats, indent=2, sort_keys=True) + "\n").encode())

    while not stopping.is_set():
        write()
        try:
            await asyncio.wait_for(stopping.wait(), opts.stats_interval)
        except asyncio.TimeoutError:
            pass
    write()


def run() -> None:
    app()
