"""``querier --servers URL[,URL] [--count] [--json] [--timeout S] [-F|--fixed-strings] [-i] PATTERN``:
grep every host's logs at once through their shippers' query agents.

The interface above is fixed so that scripts can rely on it; the other options add to it. Exit
status (the worst case wins, in this order):

    4  some host did not answer in time (timeout: slow or hung), or stopped at its deadline
    3  some host has no agent subscribed (no responders: dead, or not started)
    5  some host answered with an error (a bad pattern, an unreadable file) or was busy
    2  the querier itself could not run (bad option, NATS unreachable, no host known)
    1  every host answered, nothing matched
    0  every host answered, something matched
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from datetime import datetime
from typing import List, Optional

import typer

from shipper.query import protocol as p
from shipper.stream import server_urls

EXIT_MATCH, EXIT_NO_MATCH, EXIT_USAGE, EXIT_NO_RESPONDERS, EXIT_SLOW, EXIT_HOST_ERROR = 0, 1, 2, 3, 4, 5

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


def _fail(text: str, code: int = EXIT_USAGE) -> None:
    print(f"querier: error: {text}", file=sys.stderr)
    raise typer.Exit(code)


_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now_ns: int | None = None) -> int:
    """A time on ``received_ns``'s scale (ns since the epoch) from: an integer (ns), ``@SECONDS``
    (like ``date +%s``, decimals allowed), ISO 8601 (``2025-06-01T12:00:00Z``; without a zone,
    local time), or ``-N[smhd]`` before now."""
    text = text.strip()
    now_ns = time.time_ns() if now_ns is None else now_ns
    if text.isdigit():
        return int(text)
    if text.startswith("@"):
        return int(float(text[1:]) * 1e9)
    m = _RELATIVE.match(text)
    if m:
        return now_ns - int(float(m.group(1)) * _UNIT_S[m.group(2)] * 1e9)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time (ns integer, @SECONDS, ISO 8601 or -N[smhd])") from None
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def exit_status(answers) -> int:
    statuses = {a.status for a in answers}
    if statuses & {p.TIMEOUT, p.DEADLINE}:
        return EXIT_SLOW
    if p.NO_RESPONDERS_STATUS in statuses:
        return EXIT_NO_RESPONDERS
    if statuses - {p.OK}:
        return EXIT_HOST_ERROR
    return EXIT_MATCH if any(a.matches for a in answers) else EXIT_NO_MATCH


def natural_key(host: str) -> list:
    """h2 before h10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", host)]


async def resolve_hosts(nc, named: list[str] | None) -> tuple[list[str], dict[str, str]]:
    """The hosts to ask (``named``, else every host in the registry, naturally sorted) and, from
    the registry, a note per host for when it does not answer."""
    from shipper.query.registry import registered

    try:
        entries = await registered(nc)
    except Exception as exc:  # no JetStream: only --hosts can say which hosts exist
        if not named:
            raise RuntimeError(f"cannot read the registry of agents ({type(exc).__name__}: {exc}); name the hosts with --hosts") from None
        entries = []
    notes = {}
    for e in entries:
        started = datetime.fromtimestamp(e.started_unix_ns / 1e9).isoformat(timespec="seconds")
        if e.stopped_unix_ns:
            stopped = datetime.fromtimestamp(e.stopped_unix_ns / 1e9).isoformat(timespec="seconds")
            notes[e.host] = f"its agent (pid {e.pid}) stopped cleanly at {stopped}"
        else:
            notes[e.host] = f"its agent (pid {e.pid}, started {started}) did not stop cleanly: crashed, or the host is down"
    hosts = named or sorted(notes, key=natural_key)
    return hosts, notes


async def run_query(servers: list[str], query: p.Query, timeout: float, output_factory, hosts: list[str] | None = None):
    """Connect, find the hosts, scatter the query, gather the answers; ``output_factory(hosts)``
    makes the output. Returns (answers, output)."""
    import nats

    from .gather import scatter_gather

    try:
        nc = await nats.connect(servers, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0, name="querier")
    except Exception as exc:
        raise ConnectionError(f"cannot reach NATS at {','.join(servers)}: {type(exc).__name__}: {exc}") from None
    try:
        names, notes = await resolve_hosts(nc, hosts)
        if not names:
            raise RuntimeError("no query agent is registered (are the shippers running?); name hosts with --hosts")
        output = output_factory(names)
        answers = await scatter_gather(nc, names, query, output, timeout, notes)
        return answers, output
    finally:
        # Closing is the cancellation: agents still answering get a 503 on their next message.
        await nc.close()


@app.command(
    help=(
        "Search every host's aggregated log at once. Sends one query per host (NATS request/reply to "
        "loglab.query.HOST, no queue group) to the query agents inside the shippers; each scans its "
        "file with ripgrep, grep or Python and streams the matching lines back. Each host's answer is "
        "printed as one block, never interleaved with another's, then a summary per host: matches, bytes "
        "scanned, time. Hosts come from the agents' registry (or --hosts); a host whose agent is not "
        "subscribed is reported as 'no responders' at once, one that does not answer by --timeout as "
        "'timeout' (slow). PATTERN is a regular expression (ripgrep's syntax, or grep -E's) unless -F. "
        "Field filters and the time range apply to the JSON records after the text match. Exit status: "
        "0 matches, 1 none, 2 querier error, 3 a host with no responders, 4 a host too slow, 5 a host's error."
    )
)
def main(
    pattern: str = typer.Argument(..., help="What to search for (a regular expression unless -F); after -- if it starts with -."),
    servers: str = typer.Option(..., "--servers", "-s", help="Comma-separated NATS URLs, e.g. nats://127.0.0.1:4222."),
    count: bool = typer.Option(False, "--count", "-c", help="Counts only: no lines cross the network."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per host and line: host, status, matches, bytes_scanned, elapsed_s, ... and records (unless --count)."),
    timeout: float = typer.Option(10.0, "--timeout", "-t", min=0.01, max=p.MAX_TIMEOUT_S, help="Seconds to wait for every host; agents stop scanning a little before."),
    fixed: bool = typer.Option(False, "--fixed-strings", "-F", help="PATTERN is a fixed string, not a regular expression."),
    ignore_case: bool = typer.Option(False, "--ignore-case", "-i", help="Ignore case."),
    invert: bool = typer.Option(False, "--invert-match", "-v", help="Lines that do NOT match."),
    max_count: Optional[int] = typer.Option(None, "--max-count", "-m", min=1, help="At most N matching records per host (after the filters)."),
    field: Optional[List[str]] = typer.Option(None, "--field", help="KEY=VALUE: only records whose field KEY equals VALUE (repeatable, all must hold), e.g. level=error."),
    since: Optional[str] = typer.Option(None, help="Only records with received_ns >= this: ns, @SECONDS, ISO 8601, or -10m (before now)."),
    until: Optional[str] = typer.Option(None, help="Only records with received_ns < this (same forms as --since)."),
    rotated: bool = typer.Option(False, "--rotated", help="Also search the rotated files beside each host's current one (NAME.1, NAME-DATE)."),
    hosts: Optional[str] = typer.Option(None, "--hosts", help="Comma-separated hosts to ask (default: every host in the registry)."),
    order: str = typer.Option("host", help="Blocks in host order (host) or in the order answers complete (completion)."),
    chunk_kb: int = typer.Option(p.DEFAULT_CHUNK_BYTES // 1024, min=1, max=8192, help="Agents send at most this many KiB per message."),
    window: int = typer.Option(p.DEFAULT_WINDOW, min=1, max=256, help="Messages per host in flight before the agent waits for the querier."),
) -> None:
    from .gather import agent_timeout
    from .output import BlockPrinter, summary_table

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `querier ... | head` ends like grep does
    urls = server_urls(servers)
    if not urls:
        _fail("--servers names no URL")
    if order not in ("host", "completion"):
        _fail("--order is host or completion")
    fields = {}
    for item in field or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--field {item!r}: expected KEY=VALUE")
        fields[key] = value
    try:
        since_ns = parse_time(since) if since else None
        until_ns = parse_time(until) if until else None
    except ValueError as exc:
        _fail(str(exc))
    named = None
    if hosts:
        from shipper.stream import valid_host

        named = [h.strip() for h in hosts.split(",") if h.strip()]
        bad = [h for h in named if not valid_host(h)]
        if bad:
            _fail(f"--hosts: {', '.join(map(repr, bad))} cannot be host names (one subject token each)")
    query = p.Query(id=_query_id(), pattern=pattern, fixed=fixed, ignore_case=ignore_case, invert=invert, count_only=count,
                    max_results=max_count, fields=fields, since_ns=since_ns, until_ns=until_ns, rotated=rotated,
                    timeout_s=agent_timeout(timeout), chunk_bytes=chunk_kb * 1024, window=window)  # fmt: skip
    try:
        query.validate()
    except ValueError as exc:
        _fail(str(exc))
    out = sys.stdout.buffer
    try:
        answers, printer = asyncio.run(
            run_query(urls, query, timeout, lambda names: BlockPrinter(out, names, order, json_out, count), named)
        )
    except (ConnectionError, RuntimeError) as exc:
        _fail(str(exc))
    printer.close()
    if not json_out:
        out.write((summary_table(answers) + "\n").encode())
        out.flush()
    raise typer.Exit(exit_status(answers))


def _query_id() -> str:
    import secrets

    return secrets.token_hex(8)


def run() -> None:
    app()
