"""``aggregator TRANSPORT ...``: receive JSON log lines and write them to one JSONL file."""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

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
from .workers import Supervisor, cpu_count, effective_workers

# The command line is argparse's, not the CLI framework the lab's other commands use (typer):
# this process serves for days, and typer's parsing imports pydantic and importlib.metadata,
# about 12 MiB of a receiving process's memory for a parse done once (README "Memory").

_TRANSPORT_HELP = "How producers reach the aggregator: " + "; ".join(
    f"{name} = {t.description}" for name, t in TRANSPORTS.items()
)
_DESCRIPTION = (
    "Receive log messages over TRANSPORT (JSON objects, syslog messages from real programs, or "
    "any text: see --format) and append them, one JSON object per line, to OUTPUT with two "
    "fields added: received_ns (wall-clock ns at receipt) and transport. Invalid "
    "input goes to the rejects file beside OUTPUT (*.rejects.jsonl) with its reason. "
    "Signals: SIGTERM/SIGINT drain and exit 0; SIGUSR1 or SIGHUP reopens OUTPUT and the "
    "rejects file (after rotation, as log daemons do for logrotate)."
)


def _octal(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal file mode such as 0600") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError("file mode must be within 0000..0777")
    return mode


def _thread_count(text: str) -> int:
    """--threads: N >= 1, or auto (0: one per CPU)."""
    if text == "auto":
        return 0
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{text!r}: a number from 1 to {MAX_WORKERS}, or auto")
    return n


def _number(kind, low=None, high=None):
    """An argparse type: ``kind`` (int or float) within [low, high]."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if value != value or (low is not None and value < low) or (high is not None and value > high):  # NaN too
            bounds = f"{low if low is not None else '-inf'}..{high if high is not None else 'inf'}"
            raise argparse.ArgumentTypeError(f"{text} is not within {bounds}")
        return value

    return parse


# Descriptors the aggregator needs besides its connections (epoll, signal socketpair, output,
# rejects, stats temp files, /proc reads, --workers channels), kept free under the fd limit.
_RESERVED_FDS = 32
MAX_WORKERS = 1024


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aggregator", description=_DESCRIPTION, allow_abbrev=False,
                                usage="%(prog)s TRANSPORT [--address ADDRESS] [--output OUTPUT] [options] (--help: all)",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("transport", choices=list(TRANSPORTS), metavar="TRANSPORT", help=_TRANSPORT_HELP + ".")
    p.add_argument(
        "--address", "-a", default=None,
        help="Filesystem path (unixsock, unixgram, fifo) or HOST:PORT (tcp, udp; port 0 = any free port). "
        "Default: a file in the private directory $XDG_RUNTIME_DIR/loglab-UID (or /tmp/loglab-UID), "
        "or 127.0.0.1:5140.",
    )  # fmt: skip
    p.add_argument("--output", "-o", type=Path, default=Path("aggregated_logs.jsonl"), help="Output file (appended to).")
    p.add_argument("--stats-file", type=Path, help="Write counters as JSON here at exit (and every --stats-interval).")
    p.add_argument("--stats-interval", type=_number(float, 0.1, MAX_SECONDS), help="Seconds between stats-file updates.")
    p.add_argument("--duration", type=_number(float, 0.0, MAX_SECONDS), help="Stop (and drain) after this many seconds (0: at once).")
    p.add_argument(
        "--max-line-bytes", type=_number(int, 64, MAX_LINE_BYTES_LIMIT), default=65536,
        help="Longest accepted message; longer ones are rejected (line_too_long / datagram_truncated). At most 16 MiB: "
        "memory is bounded by it per connection (see README 'Memory').",
    )  # fmt: skip
    p.add_argument(
        "--max-connections", type=_number(int, 1), default=1024,
        help="Open connections at most (stream sockets; lowered to what the fd limit allows, and said so). "
        "Beyond it, new connections wait in the kernel's listen backlog until one closes; none is ever "
        "accepted and then dropped.",
    )  # fmt: skip
    p.add_argument("--drain-timeout", type=_number(float, 0.0, MAX_SECONDS), default=5.0,
                   help="At shutdown, wait at most this long for open connections to finish.")  # fmt: skip
    p.add_argument(
        "--rcvbuf", type=_number(int, 0, 2**31 - 1), default=4 * 1024 * 1024,
        help="Datagram sockets: receive buffer to request, bytes (SO_RCVBUFFORCE when permitted; 0 = kernel default). "
        "The effective size is printed.",
    )  # fmt: skip
    p.add_argument(
        "--max-dgram-qlen", type=_number(int, 1, 2**31 - 1),
        help="unixgram: raise net.unix.max_dgram_qlen (the datagrams the kernel queues before senders block; 10 "
        "by default, 512 with systemd) to this before the socket is made. Root only; the whole network "
        "namespace; never lowered; kept after exit. The effective value is printed.",
    )  # fmt: skip
    p.add_argument("--socket-mode", type=_octal, default="0600", help="File mode of the Unix socket / FIFO (octal).")
    p.add_argument("--fsync", choices=FSYNC_MODES, default="never",
                   help="never: fsync only at clean exit; interval: every --fsync-interval s; always: after every write.")  # fmt: skip
    p.add_argument("--fsync-interval", type=_number(float, 0.0, MAX_SECONDS), default=1.0,
                   help="Seconds between fsyncs with --fsync interval.")  # fmt: skip
    p.add_argument(
        "--flush-interval", type=_number(float, 0.0, MAX_SECONDS), default=DEFAULT_FLUSH_INTERVAL_S,
        help="Output is written when 256 KiB are pending or the oldest pending line is this many seconds old "
        "(0 = every loop turn), and, with --idle-flush, as soon as a loop turn finds little to read. A crash (not "
        "a clean stop) can lose at most this much.",
    )  # fmt: skip
    p.add_argument(
        "--idle-flush", action=argparse.BooleanOptionalAction, default=False,
        help="Also write pending lines as soon as a loop turn reads few messages (the loop is about to wait): at "
        "moderate rates lines reach the file in about a millisecond instead of --flush-interval, for one write(2) "
        "per such turn (more CPU per message; README 'Latency or CPU'). Under load turns are full and lines are "
        "written per 256 KiB or --flush-interval either way.",
    )  # fmt: skip
    p.add_argument("--max-backlog-bytes", type=_number(int, 1), default=DEFAULT_MAX_BACKLOG_BYTES,
                   help="Output backlog (bytes not yet written) at which reading pauses.")  # fmt: skip
    p.add_argument(
        "--coalesce-us", type=_number(int, 0, 100_000), default=DEFAULT_COALESCE_US,
        help="After a loop turn that read few messages, wait this many microseconds before the next poll so "
        "the next turn gathers several: fewer wakeups and reads per message at moderate rates, at most this "
        "much added latency. 0 = off.",
    )  # fmt: skip
    p.add_argument("--peer-credentials", action=argparse.BooleanOptionalAction, default=False,
                   help="unixsock: add the connecting process's peer_pid, peer_uid, peer_gid (SO_PEERCRED) to every record.")  # fmt: skip
    p.add_argument("--ready-file", type=Path, help="When listening, write {transport, address, pid, ...} as JSON here (atomically).")
    p.add_argument(
        "--rejects-burst", type=_number(int, 1), default=DEFAULT_REJECTS_BURST,
        help="Rejects written one by one per --rejects-interval at most, by the whole aggregator (shared out among "
        "--workers); the rest are counted and summarised (as journald's RateLimitBurst).",
    )  # fmt: skip
    p.add_argument("--rejects-interval", type=_number(float, 0.001, MAX_SECONDS), default=DEFAULT_REJECTS_INTERVAL_S,
                   help="Seconds of one rejects rate-limit window.")  # fmt: skip
    p.add_argument("--max-rejects-bytes", type=_number(int, 4096), default=DEFAULT_MAX_REJECTS_BYTES,
                   help="Size at which the rejects file stops growing (until it is rotated); later rejects are only counted.")  # fmt: skip
    p.add_argument(
        "--format", dest="input_format", choices=FORMATS, default=DEFAULT_FORMAT,
        help="What a message is. json: a JSON object (anything else is rejected). syslog: an RFC 5424 or RFC 3164 "
        "message, or bare <PRI>msg (Python's SysLogHandler), read into facility, severity, timestamp, hostname, "
        "app_name, procid, msgid, structured_data and message; a JSON object in the message is merged into the "
        "record; a header that cannot be read is kept as message and counted (syslog_malformed). raw: any "
        "text becomes {\"message\": ...}. auto: per message, one starting with { takes the json path (at its "
        "cost), one starting with <DIGITS the syslog path, anything else is rejected as with json.",
    )  # fmt: skip
    p.add_argument(
        "--framing", choices=FRAMINGS, default=DEFAULT_FRAMING,
        help="unixsock, tcp (and fifo: newline only): how messages are delimited in the byte stream. auto: RFC "
        "6587 octet counting (LENGTH SP MSG) when a connection's first byte is a digit, else newline; a NUL byte "
        "also ends a message. newline, octet: that one, always. lenprefix (unixsock, tcp): [4-byte big-endian "
        "length][1-byte severity 0-7][payload] frames, the payload read as --format says.",
    )  # fmt: skip
    p.add_argument(
        "--workers", type=_number(int, 0, MAX_WORKERS), default=1,
        help="Receiving processes (0 = one per CPU). unixsock, tcp: connections are handed to the "
        "workers in turn; udp: all read the one socket; fifo, unixgram: 1 only (one reader keeps each "
        "sender's order). More than one uses more cores; see README 'Workers' for what changes (udp "
        "order across workers).",
    )  # fmt: skip
    p.add_argument(
        "--threads", type=_thread_count, default=1, metavar="N|auto",
        help="Event loops in this one process (auto = one per CPU). One writer: the lines of every loop go to "
        "one output under a lock, so no line is ever torn. unixsock, tcp, seqpacket: the main thread keeps its "
        "connections while it keeps up and spreads them over the other loops when it falls behind; udp: the "
        "others read the one socket when it has a backlog; fifo, unixgram: 1 (one reader). Needs the native hot "
        "path (else 1). See README 'Several cores in one process'.",
    )  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    transport, address, output, stats_file, ready_file = a.transport, a.address, a.output, a.stats_file, a.ready_file
    max_line_bytes, max_connections, workers, rcvbuf = a.max_line_bytes, a.max_connections, a.workers, a.rcvbuf
    name = transport
    t = TRANSPORTS[name]
    workers, workers_error = effective_workers(workers, t)
    if workers_error:
        _fail(workers_error, 2)
    if workers > 1 and a.threads != 1:
        _fail("--threads and --workers > 1 cannot be combined: choose one way to use several cores", 2)
    threads, threads_note = 1, None
    if a.threads != 1:  # threading only where it is used: the idle footprint stays one thread's
        from .threads import effective_threads

        threads, threads_note = effective_threads(a.threads, t.sharing, cpu_count(), hotpath.IMPLEMENTATION == "native")
    if threads_note:
        print(f"aggregator: --threads {a.threads or 'auto'}: {t.name} reads with 1 thread: {threads_note}", file=sys.stderr, flush=True)
    framing_error = framing_unsupported(a.framing, t)
    if framing_error:
        _fail(framing_error, 2)
    mode = a.socket_mode  # argparse applies _octal to the default text too
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
        transport=name, output=output, stats_file=stats_file, stats_interval=a.stats_interval, ready_file=ready_file,
        duration=a.duration, max_line_bytes=max_line_bytes, max_connections=_connection_limit(max_connections, workers),
        drain_timeout=a.drain_timeout, max_backlog_bytes=a.max_backlog_bytes, coalesce_us=a.coalesce_us,
        peer_credentials=a.peer_credentials, fsync=a.fsync, fsync_interval=a.fsync_interval, flush_interval=a.flush_interval,
        idle_flush=a.idle_flush,
        rejects_burst=a.rejects_burst, rejects_interval=a.rejects_interval, max_rejects_bytes=a.max_rejects_bytes, workers=workers,
        threads=threads, format=a.input_format, framing=a.framing,
    )  # fmt: skip
    options = ListenOptions(max_line_bytes=max_line_bytes, socket_mode=mode, rcvbuf=rcvbuf or None, max_dgram_qlen=a.max_dgram_qlen,
                            framing=a.framing)

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
    aggregator.use_threads(threads, t.sharing)
    counters = aggregator.counters
    aggregator.install_signal_handlers()  # before anyone is told we are ready
    try:
        if "stats file" in targets:
            counters.write(targets["stats file"])  # now, not at exit: a path that cannot be written fails the start
        _announce(name, binding, output, rcvbuf, targets.get("ready file"), os.getpid(), threads=threads)
    except (OSError, UnsafePath) as exc:
        _close_binding(binding)
        sink.close()
        _close_targets(targets)
        _fail(f"cannot write {_what_failed(exc, targets)}: {reason(exc)}", 2)
    ok = aggregator.run()
    _close_targets(targets)
    print(aggregator.total_counters().summary(), file=sys.stderr, flush=True)
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


def _announce(name: str, binding, output: Path, rcvbuf, ready_file: Target | None, pid: int, workers: int = 1,
              threads: int = 1) -> None:  # fmt: skip
    """Readiness: the ready file, then "listening on ADDRESS" on stdout (what scripts wait for);
    details on stderr. Raises OSError if the ready file cannot be written (nothing printed yet)."""
    if ready_file is not None:
        ready_file.write((json.dumps({"transport": name, "address": binding.address, "pid": pid, "workers": workers, "threads": threads,
                                      **binding.info}) + "\n").encode())
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
    if threads > 1:
        info += f" threads={threads}"
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
            raise SystemExit(2)
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
    raise SystemExit(code)


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
    main()


