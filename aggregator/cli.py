"""``aggregator TRANSPORT ...``: receive JSON log lines and write them to one JSONL file."""

from __future__ import annotations

import enum
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from . import hotpath
from .counters import Counters
from .files import Target, UnsafePath, reason
from .formats import DEFAULT_FORMAT, FORMATS
from .framing import DEFAULT_FRAMING, FRAMINGS, framing_unsupported
from .procname import set_process_name
from .server import Aggregator
from .settings import (
    DEFAULT_COALESCE_US,
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_MAX_BACKLOG_BYTES,
    DEFAULT_MAX_REJECTS_BYTES,
    DEFAULT_REJECTS_BURST,
    DEFAULT_REJECTS_INTERVAL_S,
    FSYNC_MODES,
    MAX_LINE_BYTES_LIMIT,
    MAX_SECONDS,
    Settings,
)
from .sink import OutputSink, rejects_path_for
from .transports import TRANSPORTS, ListenOptions, TransportError
from .workers import Supervisor, effective_workers

TransportName = enum.Enum("TransportName", {name: name for name in TRANSPORTS}, type=str)
FsyncMode = enum.Enum("FsyncMode", {m: m for m in FSYNC_MODES}, type=str)
InputFormat = enum.Enum("InputFormat", {f: f for f in FORMATS}, type=str)
Framing = enum.Enum("Framing", {f: f for f in FRAMINGS}, type=str)

_TRANSPORT_HELP = "How producers reach the aggregator: " + "; ".join(
    f"{name} = {t.description}" for name, t in TRANSPORTS.items()
)

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


def _octal(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an octal file mode such as 0600") from None
    if not 0 <= mode <= 0o777:
        raise typer.BadParameter("file mode must be within 0000..0777")
    return mode


# Descriptors the aggregator needs besides its connections (epoll, signal socketpair, output,
# rejects, stats temp files, /proc reads, --workers channels), kept free under the fd limit.
_RESERVED_FDS = 32
MAX_WORKERS = 1024


@app.command(
    help=(
        "Receive log messages over TRANSPORT (JSON objects, syslog messages from real programs, or "
        "any text: see --format) and append them, one JSON object per line, to OUTPUT with two "
        "fields added: received_ns (wall-clock ns at receipt) and transport. Invalid "
        "input goes to the rejects file beside OUTPUT (*.rejects.jsonl) with its reason. "
        "Signals: SIGTERM/SIGINT drain and exit 0; SIGUSR1 or SIGHUP reopens OUTPUT and the "
        "rejects file (after rotation, as log daemons do for logrotate)."
    )
)
def main(
    transport: TransportName = typer.Argument(..., help=_TRANSPORT_HELP, show_default=False),
    address: Optional[str] = typer.Option(
        None,
        "--address",
        "-a",
        help="Filesystem path (unixsock, unixgram, fifo) or HOST:PORT (tcp, udp; port 0 = any free port). "
        "Default: a file in the private directory $XDG_RUNTIME_DIR/loglab-UID (or /tmp/loglab-UID), "
        "or 127.0.0.1:5140.",
    ),
    output: Path = typer.Option(Path("aggregated_logs.jsonl"), "--output", "-o", help="Output file (appended to)."),
    stats_file: Optional[Path] = typer.Option(None, help="Write counters as JSON here at exit (and every --stats-interval)."),
    stats_interval: Optional[float] = typer.Option(None, min=0.1, max=MAX_SECONDS, help="Seconds between stats-file updates."),
    duration: Optional[float] = typer.Option(None, min=0.0, max=MAX_SECONDS, help="Stop (and drain) after this many seconds (0: at once)."),
    max_line_bytes: int = typer.Option(
        65536,
        min=64,
        max=MAX_LINE_BYTES_LIMIT,
        help="Longest accepted message; longer ones are rejected (line_too_long / datagram_truncated). At most 16 MiB: "
        "memory is bounded by it per connection (see README 'Memory').",
    ),
    max_connections: int = typer.Option(
        1024,
        min=1,
        help="Open connections at most (stream sockets; lowered to what the fd limit allows, and said so). "
        "Beyond it, new connections wait in the kernel's listen backlog until one closes; none is ever "
        "accepted and then dropped.",
    ),
    drain_timeout: float = typer.Option(5.0, min=0.0, max=MAX_SECONDS, help="At shutdown, wait at most this long for open connections to finish."),
    rcvbuf: Optional[int] = typer.Option(
        4 * 1024 * 1024,
        min=0,
        max=2**31 - 1,
        help="Datagram sockets: receive buffer to request, bytes (SO_RCVBUFFORCE when permitted; 0 = kernel default). The effective size is printed.",
    ),
    max_dgram_qlen: Optional[int] = typer.Option(
        None,
        min=1,
        max=2**31 - 1,
        help="unixgram: raise net.unix.max_dgram_qlen (the datagrams the kernel queues before senders block; 10 "
        "by default, 512 with systemd) to this before the socket is made. Root only; the whole network "
        "namespace; never lowered; kept after exit. The effective value is printed.",
    ),
    socket_mode: str = typer.Option("0600", help="File mode of the Unix socket / FIFO (octal)."),
    fsync: FsyncMode = typer.Option(
        "never", help="never: fsync only at clean exit; interval: every --fsync-interval s; always: after every write."
    ),
    fsync_interval: float = typer.Option(1.0, min=0.0, max=MAX_SECONDS, help="Seconds between fsyncs with --fsync interval."),
    flush_interval: float = typer.Option(
        DEFAULT_FLUSH_INTERVAL_S,
        min=0.0,
        max=MAX_SECONDS,
        help="Output is written when 256 KiB are pending or the oldest pending line is this many seconds old "
        "(0 = every loop turn). A crash (not a clean stop) can lose at most this much.",
    ),
    max_backlog_bytes: int = typer.Option(
        DEFAULT_MAX_BACKLOG_BYTES, min=1, help="Output backlog (bytes not yet written) at which reading pauses."
    ),
    coalesce_us: int = typer.Option(
        DEFAULT_COALESCE_US,
        min=0,
        max=100_000,
        help="After a loop turn that read few messages, wait this many microseconds before the next poll so "
        "the next turn gathers several: fewer wakeups and reads per message at moderate rates, at most this "
        "much added latency. 0 = off.",
    ),
    peer_credentials: bool = typer.Option(
        False,
        help="unixsock: add the connecting process's peer_pid, peer_uid, peer_gid (SO_PEERCRED) to every record.",
    ),
    ready_file: Optional[Path] = typer.Option(None, help="When listening, write {transport, address, pid, ...} as JSON here (atomically)."),
    rejects_burst: int = typer.Option(
        DEFAULT_REJECTS_BURST, min=1, help="Rejects written one by one per --rejects-interval at most, by the whole aggregator (shared out among --workers); the rest are counted and summarised (as journald's RateLimitBurst)."
    ),
    rejects_interval: float = typer.Option(DEFAULT_REJECTS_INTERVAL_S, min=0.001, max=MAX_SECONDS, help="Seconds of one rejects rate-limit window."),
    max_rejects_bytes: int = typer.Option(
        DEFAULT_MAX_REJECTS_BYTES, min=4096, help="Size at which the rejects file stops growing (until it is rotated); later rejects are only counted."
    ),
    input_format: InputFormat = typer.Option(
        DEFAULT_FORMAT,
        "--format",
        help="What a message is. json: a JSON object (anything else is rejected). syslog: an RFC 5424 or RFC 3164 "
        "message, or bare <PRI>msg (Python's SysLogHandler), read into facility, severity, timestamp, hostname, "
        "app_name, procid, msgid, structured_data and message; a JSON object in the message is merged into the "
        "record; a header that cannot be read is kept as message and counted (syslog_malformed). raw: any "
        "text becomes {\"message\": ...}. auto: per message, one starting with { takes the json path (at its "
        "cost), one starting with <DIGITS the syslog path, anything else is rejected as with json.",
    ),
    framing: Framing = typer.Option(
        DEFAULT_FRAMING,
        help="unixsock, tcp (and fifo: newline only): how messages are delimited in the byte stream. auto: RFC "
        "6587 octet counting (LENGTH SP MSG) when a connection's first byte is a digit, else newline; a NUL byte "
        "also ends a message. newline, octet: that one, always. lenprefix (unixsock, tcp): [4-byte big-endian "
        "length][1-byte severity 0-7][payload] frames, the payload read as --format says.",
    ),
    workers: int = typer.Option(
        1,
        min=0,
        max=MAX_WORKERS,
        help="Receiving processes (0 = one per CPU). unixsock, tcp: connections are handed to the "
        "workers in turn; udp: all read the one socket; fifo, unixgram: 1 only (one reader keeps each "
        "sender's order). More than one uses more cores; see README 'Workers' for what changes (udp "
        "order across workers).",
    ),
) -> None:
    name = transport.value
    t = TRANSPORTS[name]
    workers, workers_error = effective_workers(workers, t)
    if workers_error:
        _fail(workers_error, 2)
    framing_error = framing_unsupported(framing.value, t)
    if framing_error:
        _fail(framing_error, 2)
    mode = _octal(socket_mode)
    if address is None:
        address = t.default_address()
    elif not address:
        _fail("--address is empty; give a path or HOST:PORT, or leave the option out for the default", 2)
    targets = {}
    for path, what in ((stats_file, "stats file"), (ready_file, "ready file")):
        if path is None:
            continue
        same = [f for f in (output, rejects_path_for(output)) if os.path.abspath(f) == os.path.abspath(path)]
        if same:
            _fail(f"the {what} {path} is the {'output' if same[0] == output else 'rejects'} file; choose another path", 2)
        try:
            targets[what] = Target(path, what)
            targets[what].check()
        except UnsafePath as exc:
            _close_targets(targets)
            _fail(str(exc), 2)
    set_process_name("logagg")
    settings = Settings(
        transport=name, output=output, stats_file=stats_file, stats_interval=stats_interval, ready_file=ready_file,
        duration=duration, max_line_bytes=max_line_bytes, max_connections=_connection_limit(max_connections, workers),
        drain_timeout=drain_timeout, max_backlog_bytes=max_backlog_bytes, coalesce_us=coalesce_us,
        peer_credentials=peer_credentials, fsync=fsync.value, fsync_interval=fsync_interval, flush_interval=flush_interval,
        rejects_burst=rejects_burst, rejects_interval=rejects_interval, max_rejects_bytes=max_rejects_bytes, workers=workers,
        format=input_format.value, framing=framing.value,
    )  # fmt: skip
    options = ListenOptions(max_line_bytes=max_line_bytes, socket_mode=mode, rcvbuf=rcvbuf or None, max_dgram_qlen=max_dgram_qlen,
                            framing=framing.value)

    # The address first: a second aggregator on a live address is refused before it touches any
    # file (its start-up would otherwise lock, or worse repair, the running one's output).
    try:
        binding = t.listen(address, options)
    except TransportError as exc:
        _close_targets(targets)
        _fail(str(exc), exc.exit_code)
    except OSError as exc:
        _close_targets(targets)
        _fail(f"cannot listen on {address}: {exc.strerror or exc}", 1)
    try:
        sink = OutputSink(output, settings)
    except UnsafePath as exc:
        _close_binding(binding)
        _close_targets(targets)
        _fail(str(exc), 1)
    except OSError as exc:
        _close_binding(binding)
        _close_targets(targets)
        _fail(f"cannot open output {exc.filename or output}: {exc.strerror}", 1)

    def make_aggregator(worker_binding, worker_settings: Settings, stats) -> Aggregator:
        counters = Counters(transport=name, address=binding.address, started_unix_ns=time.time_ns())
        counters.effective_rcvbuf = binding.info.get("effective_rcvbuf")
        counters.effective_pipe_size = binding.info.get("effective_pipe_size")
        counters.effective_max_dgram_qlen = binding.info.get("effective_max_dgram_qlen")
        counters.effective_max_connections = worker_settings.max_connections if t.connected else None
        counters.hot_path = hotpath.describe()
        aggregator = Aggregator(worker_binding, sink, counters, worker_settings)
        aggregator.stats_file = stats
        return aggregator

    if workers > 1:
        _run_supervisor(t, binding, options, sink, settings, targets, rcvbuf, make_aggregator)
        return
    aggregator = make_aggregator(binding, settings, targets.get("stats file"))
    counters = aggregator.counters
    aggregator.install_signal_handlers()  # before anyone is told we are ready
    try:
        if "stats file" in targets:
            counters.write(targets["stats file"])  # now, not at exit: a path that cannot be written fails the start
        _announce(name, binding, output, rcvbuf, targets.get("ready file"), os.getpid())
    except (OSError, UnsafePath) as exc:
        _close_binding(binding)
        sink.close()
        _close_targets(targets)
        _fail(f"cannot write {_what_failed(exc, targets)}: {reason(exc)}", 2)
    ok = aggregator.run()
    _close_targets(targets)
    print(counters.summary(), file=sys.stderr, flush=True)
    if not ok:
        _fail(f"could not write everything to {output} before exit", 1)
    if aggregator.stats_write_failed:
        _fail(f"everything was written to {output}, but the stats file {stats_file} could not be", 1)


def _what_failed(exc: Exception, targets: dict) -> str:
    filename = exc.filename if isinstance(exc, OSError) else None
    return str(filename or ", ".join(str(t.path) for t in targets.values()) or "the stats or ready file")


def _close_targets(targets: dict) -> None:
    for target in targets.values():
        target.close()


def _connection_limit(requested: int, workers: int) -> int:
    """``--max-connections``, lowered to what the fd limit leaves, and said so: accept() must
    never fail for want of descriptors. Each connection is one fd in the process that reads it
    (a worker's share with --workers); every process needs some of its own, and a supervisor two
    per worker (channel and pidfd). The soft limit is raised as far as the hard one allows."""
    in_use = len(os.listdir("/proc/self/fd"))
    per_process = -(-requested // workers)
    wanted = in_use + _RESERVED_FDS + max(per_process, 2 * workers if workers > 1 else 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY:
        return requested
    room = soft - in_use - _RESERVED_FDS  # connections one process can hold
    limits = f"RLIMIT_NOFILE soft {soft}, hard {'unlimited' if hard == resource.RLIM_INFINITY else hard}"
    if workers > 1 and 2 * workers > room:
        _fail(f"--workers {workers} needs {2 * workers + in_use + _RESERVED_FDS} file descriptors in the supervisor; the fd "
              f"limit ({limits}) allows {soft}: use fewer workers or raise it (ulimit -n)", 2)  # fmt: skip
    if room < 1:
        _fail(f"the fd limit ({limits}) leaves no room for a connection; raise it (ulimit -n)", 2)
    allowed = room * workers
    if allowed < requested:
        print(f"aggregator: max connections {allowed}, not {requested}: the fd limit ({limits}) allows no more; "
              "raise it with ulimit -n", file=sys.stderr, flush=True)  # fmt: skip
        return allowed
    return requested


def _close_binding(binding) -> None:
    """Undo a successful listen: close what it opened and remove its socket or FIFO file."""
    if binding.listener is not None:
        binding.listener.close()
    for endpoint in binding.endpoints:
        try:
            endpoint.close([])
        except OSError:
            pass
    binding.cleanup()


def _announce(name: str, binding, output: Path, rcvbuf, ready_file: Target | None, pid: int, workers: int = 1) -> None:
    """Readiness: the ready file, then "listening on ADDRESS" on stdout (what scripts wait for);
    details on stderr. Raises OSError if the ready file cannot be written (nothing printed yet)."""
    if ready_file is not None:
        ready_file.write((json.dumps({"transport": name, "address": binding.address, "pid": pid, "workers": workers, **binding.info}) + "\n").encode())
    print(f"listening on {binding.address}", flush=True)
    info = f"aggregator: {name} output={output} rejects={rejects_path_for(output)}"
    if binding.info.get("effective_rcvbuf") is not None:
        info += f" rcvbuf requested={rcvbuf or 'default'} effective={binding.info['effective_rcvbuf']}"
    if binding.info.get("effective_pipe_size") is not None:
        info += f" pipe_size={binding.info['effective_pipe_size']}"
    if binding.info.get("effective_max_dgram_qlen") is not None:
        requested = binding.info.get("requested_max_dgram_qlen")
        info += f" max_dgram_qlen requested={requested or 'unchanged'} effective={binding.info['effective_max_dgram_qlen']}"
    if workers > 1:
        info += f" workers={workers}"
    info += f" hot_path={hotpath.describe()}"
    print(info, file=sys.stderr, flush=True)


def _run_supervisor(t, binding, options, sink, settings: Settings, targets: dict, rcvbuf, make_aggregator) -> None:
    """--workers N > 1: fork N aggregators behind this one address (see aggregator/workers.py)."""
    supervisor = None
    try:
        supervisor = Supervisor(
            t, binding, settings, lambda index, worker_binding, worker_settings, stats: make_aggregator(
                worker_binding, worker_settings, stats),
            sink=sink, listen_options=options,
        )  # fmt: skip
        supervisor.start()
    except OSError as exc:
        _close_binding(binding)
        sink.release()
        _close_targets(targets)
        _fail(f"cannot start {settings.workers} workers: {exc.strerror or exc}", 1)
    try:
        try:
            if supervisor.stats_target is not None and not supervisor.write_stats():
                raise OSError(0, "cannot write it", str(settings.stats_file))
            _announce(t.name, binding, settings.output, rcvbuf, targets.get("ready file"), os.getpid(), settings.workers)
        except (OSError, UnsafePath) as exc:
            supervisor.request_stop()
            print(f"aggregator: error: cannot write {_what_failed(exc, targets)}: {reason(exc)}",
                  file=sys.stderr, flush=True)  # fmt: skip
            supervisor.run()
            raise typer.Exit(2)
        code = supervisor.run()
        merged, _ = supervisor.merged_counters()
        merged.transport = t.name
        print(merged.summary(), file=sys.stderr, flush=True)
    finally:
        supervisor.cleanup()
        sink.release()
        _close_targets({k: v for k, v in targets.items() if k != "stats file"})  # the supervisor closes its own
    if code:
        _fail(f"a worker failed or could not write everything to {settings.output}; see above", 1)
    if supervisor.stats_write_failed:
        _fail(f"everything was written to {settings.output}, but the stats file {settings.stats_file} could not be", 1)


def _fail(message: str, code: int) -> None:
    print(f"aggregator: error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


class _OutlivesItsTerminal:
    """stdout/stderr that survive the terminal closing. A foreground aggregator gets SIGHUP then
    (a reopen: see server.REOPEN_SIGNALS) and keeps serving, but every later write to the dead
    terminal fails with EIO: a lost status line is better than an aggregator that dies at its
    next message without a drain."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError:
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            pass

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def run() -> None:
    sys.stdout = _OutlivesItsTerminal(sys.stdout)
    sys.stderr = _OutlivesItsTerminal(sys.stderr)
    app()


