"""``producer TRANSPORT --id ID --count N ...``: send N JSON log lines to the aggregator."""

from __future__ import annotations

import enum
import errno
import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from aggregator.framing import framing_unsupported
from aggregator.procname import set_process_name
from aggregator.transports import TRANSPORTS, TransportError

from .messages import FORMATS, FRAMINGS, FileLines, MessageFactory

TransportName = enum.Enum("TransportName", {name: name for name in TRANSPORTS}, type=str)  # typer's choices
MessageFormat = enum.Enum("MessageFormat", {f: f for f in FORMATS}, type=str)
MessageFraming = enum.Enum("MessageFraming", {f: f for f in FRAMINGS}, type=str)

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)

# Errors after which a stream cannot go on (the peer is gone); datagram errors are per message.
_FATAL_STREAM_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
# ... except these, on a reliable datagram transport (unixgram): the receiving socket was closed
# (ECONNREFUSED), the socket is disconnected since (ENOTCONN), or the file is gone (ENOENT).
# Going on would only count the same error for every message left.
_RECEIVER_GONE = (errno.ECONNREFUSED, errno.ENOTCONN, errno.ENOENT)


class _stop:
    """SIGTERM/SIGINT: stop and write the summary. A write in progress is finished and counted
    first, so ``sent`` is exact: interrupting it would leave its lines sent but uncounted."""

    requested = False
    sending = False


def _interrupt(*_: object) -> None:
    _stop.requested = True
    if not _stop.sending:
        raise KeyboardInterrupt  # waiting (a rate limit, the start barrier): stop at once


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno, type(exc).__name__) if exc.errno else type(exc).__name__


def _connect(transport, address: str, timeout: float):
    """Connect, retrying while nobody listens yet (an aggregator still starting up)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            return transport.connect(address)
        except (ConnectionRefusedError, FileNotFoundError):
            if time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


@app.command(
    help=(
        "Send COUNT JSON log messages (exactly SIZE bytes each on the wire) to an aggregator over "
        "TRANSPORT. Each is an object with ts_ns, intended_ns, producer, seq (0..COUNT-1), pid, level "
        "and msg; as a line, or as the message of a syslog header (--format), octet-counted or "
        "length-prefixed (--framing). Exit status 0 only if every message was sent."
    )
)
def main(
    transport: TransportName = typer.Argument(..., help="unixsock, unixgram, tcp, udp or fifo.", show_default=False),
    producer_id: str = typer.Option(..., "--id", help="This producer's id (the 'producer' field)."),
    count: int = typer.Option(..., "--count", "-n", min=0, help="Messages to send."),
    address: Optional[str] = typer.Option(None, "--address", "-a", help="Aggregator address (default: the aggregator's default for TRANSPORT)."),
    size: int = typer.Option(200, min=1, help="Bytes per message on the wire: newline, syslog header and framing included."),
    message_format: MessageFormat = typer.Option(
        "json",
        "--format",
        help="json: the object alone. rfc3164: '<PRI>Mmm dd hh:mm:ss HOST logprod[PID]: {...}'. rfc5424: "
        "'<PRI>1 TIMESTAMP HOST logprod PID - - {...}'. Facility user, the severity of the level.",
    ),
    framing: MessageFraming = typer.Option(
        "newline",
        help="newline: one message per line. octet (unixsock, tcp): RFC 6587 octet counting, LENGTH SP MSG. "
        "lenprefix (unixsock, tcp): [4-byte big-endian length][severity byte][payload]. Datagram transports "
        "always send one message per datagram.",
    ),
    rate: float = typer.Option(0.0, min=0.0, help="Messages per second (absolute schedule, no drift); 0 = as fast as possible."),
    interval_ms: Optional[float] = typer.Option(None, min=0.0, help="Milliseconds between messages (another way to give --rate)."),
    batch: int = typer.Option(
        1,
        min=1,
        help="Stream transports: up to K lines per write (fifo: also at most 4096 bytes per write). "
        "Datagram transports always send one message per datagram.",
    ),
    seed: int = typer.Option(0, help="Seed for the level and padding choices (reproducible content)."),
    start_at_ns: Optional[int] = typer.Option(
        None, help="Connect first, then wait until this wall-clock time (ns since the epoch) to start sending."
    ),
    start_on_stdin: bool = typer.Option(
        False,
        help="Connect first, print 'ready' on stdout, then wait for a line on stdin before sending "
        "(a start barrier for harnesses and tracers).",
    ),
    connect_timeout: float = typer.Option(5.0, min=0.0, help="Keep retrying the connection this long if nobody listens yet."),
    per_connection: int = typer.Option(
        0,
        min=0,
        help="Open a new connection (a new socket; the FIFO reopened) after every N messages, as many "
        "short-lived programs would; 0 = one connection for the whole run.",
    ),
    summary_json: Optional[Path] = typer.Option(None, help="Write the exit summary as JSON here."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary on stderr."),
    lines_from: Optional[Path] = typer.Option(
        None, help="Send the first --count lines of this file, unchanged and in order, instead of generated "
        "messages (--size and --seed are then unused): prepared content, e.g. the query test data."
    ),
) -> None:
    name = transport.value
    t = TRANSPORTS[name]
    if interval_ms is not None:
        if rate:
            _fail("give --rate or --interval-ms, not both", 2)
        rate = 1000.0 / interval_ms if interval_ms > 0 else 0.0
    if framing.value != "newline":
        why = framing_unsupported(framing.value, t)
        if why:
            _fail(why, 2)
    set_process_name("logprod")
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    address = address or t.default_address()
    if lines_from is not None:
        if message_format.value != "json" or framing.value != "newline":
            _fail("--lines-from sends the file's lines unchanged: it takes no --format or --framing", 2)
        try:
            factory = FileLines(lines_from, count)
        except (OSError, ValueError) as exc:
            _fail(f"--lines-from: {exc}", 2)
        size = factory.size
    else:
        factory = MessageFactory(producer_id, os.getpid(), size, seed, message_format.value, framing.value)
    if size < factory.min_size(count):
        _fail(f"--size {size} is too small: these messages need at least {factory.min_size(count)} bytes", 2)
    limit = t.atomic_write_limit
    if limit is not None and size > limit:
        _fail(
            f"--size {size} is over {limit} bytes (PIPE_BUF): {name} writes that large could interleave "
            "with other producers' lines, so they are refused",
            2,
        )
    per_write = batch if t.kind == "stream" else 1
    if batch > 1 and t.kind != "stream":
        print(f"producer: --batch ignored: {name} sends one message per datagram", file=sys.stderr)

    connect_started = time.time_ns()

    def write_summary(**figures) -> None:
        # Written whatever happens, even when nothing could be sent, so that a script (or the lab)
        # reading it learns what was sent and why, rather than finding no file.
        if summary_json is not None:
            summary = {"producer": producer_id, "transport": name, "address": address, "requested": count, **figures}
            summary_json.write_text(json.dumps(summary) + "\n")

    def never_connected(error: str) -> None:
        write_summary(sent=0, errors={f"connect:{error}": 1}, interrupted=False, connections=0)

    try:
        sender = _connect(t, address, connect_timeout)
    except TransportError as exc:
        never_connected(type(exc).__name__)
        _fail(str(exc), exc.exit_code)
    except OSError as exc:
        never_connected(_errno_name(exc))
        hint = ""
        if isinstance(exc, (ConnectionRefusedError, FileNotFoundError)):
            hint = f" (is an aggregator running? start one with: aggregator {name} --address {address})"
        _fail(f"cannot connect to {name} {address}: {exc.strerror or exc}{hint}", 1)
    connect_ns = time.time_ns() - connect_started

    if start_on_stdin:
        print("ready", flush=True)
        sys.stdin.readline()
    if start_at_ns is not None:
        delay = (start_at_ns - time.time_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)

    errors: Counter[str] = Counter()
    sent = 0
    first_send_ns = last_send_ns = 0
    period_ns = int(1e9 / rate) if rate > 0 else 0
    schedule_start = time.time_ns()
    interrupted = False
    time_ns = time.time_ns
    build = factory.build
    batch = factory.batch
    send = sender.send
    # fifo: a write of at most PIPE_BUF bytes is atomic, so a write holds at most that many lines.
    lines_per_write = per_write if limit is None else max(1, min(per_write, limit // size))
    if per_connection:
        lines_per_write = min(lines_per_write, per_connection)
    connections = 1
    on_this_connection = 0
    seq = 0
    try:
        while seq < count:
            if per_connection and on_this_connection >= per_connection:
                sender.close()
                try:
                    sender = _connect(t, address, connect_timeout)
                except OSError as exc:
                    errors[f"reconnect:{_errno_name(exc)}"] += 1
                    break
                send = sender.send
                connections += 1
                on_this_connection = 0
            room = per_connection - on_this_connection if per_connection else lines_per_write
            first = seq
            if period_ns:
                intended = schedule_start + seq * period_ns
                wait = intended - time_ns()
                if wait > 0:
                    time.sleep(wait / 1e9)
                lines = []
                now = time_ns()
                while seq < count and len(lines) < min(lines_per_write, room):
                    intended = schedule_start + seq * period_ns
                    if intended > now and lines:
                        break  # not due yet: send what is due now
                    lines.append(build(seq, now, intended))
                    seq += 1
                data = lines[0] if len(lines) == 1 else b"".join(lines)
            else:
                # As fast as possible: every line of a write is sent now (one template, one format).
                now = time_ns()
                seq = min(count, seq + lines_per_write, seq + room)
                data = batch(first, seq - first, now) if seq - first > 1 else build(first, now, now)
            _stop.sending = True  # a stop signal now waits for this write and its count
            try:
                send(data)
                sent += seq - first
                on_this_connection += seq - first
            except _FATAL_STREAM_ERRORS as exc:
                errors[_errno_name(exc)] += 1
                break
            except OSError as exc:
                errors[_errno_name(exc)] += 1
                if t.kind == "stream" or (t.reliable and exc.errno in _RECEIVER_GONE):
                    break
                continue  # a datagram lost: count it, go on
            finally:
                _stop.sending = False
            if not first_send_ns:
                first_send_ns = now
            last_send_ns = now
            if _stop.requested:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
    finally:
        try:
            sender.close()
        except OSError:
            pass

    write_summary(sent=sent, errors=dict(errors), interrupted=interrupted, connect_ns=connect_ns, connections=connections,
                  first_send_ns=first_send_ns, last_send_ns=last_send_ns)  # fmt: skip
    if not quiet:
        elapsed = (last_send_ns - first_send_ns) / 1e9
        rate_text = f" ({sent / elapsed:,.0f} msg/s)" if elapsed > 0 else ""
        errors_text = ", ".join(f"{k}={v}" for k, v in sorted(errors.items())) or "none"
        print(
            f"producer {producer_id}: {name} {address}: sent {sent}/{count} in {elapsed:.3f} s{rate_text}, errors: {errors_text}",
            file=sys.stderr,
        )
    if sent != count:
        raise typer.Exit(1)


def _fail(message: str, code: int) -> None:
    print(f"producer: error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def run() -> None:
    """Entry point. Exits with os._exit once the work is done: interpreter teardown costs a
    producer ~25 ms of CPU, spent while the system under test is still being measured."""
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
