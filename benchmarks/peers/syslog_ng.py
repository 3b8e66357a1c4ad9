"""syslog-ng as a benchmark peer: the same producers, a real log daemon on the other end.

Interface (the face of ``benchmarks.systems.System`` plus a few extras)::

    ok, why = SyslogNgPeer.available()      # (True, "") or (False, reason); no process started
    SyslogNgPeer.version()                  # "3.38.1" ("" if not available); also on instances

    peer = SyslogNgPeer(transport, workdir, rcvbuf=None, max_connections=1024,
                        max_line_bytes=65536, pipe_size=1 << 20, fetch_limit=500)
    address = peer.start(timeout=10.0)      # loglab address format: a path (unixsock, unixgram,
                                            # fifo) or "127.0.0.1:PORT" (tcp, udp)
    peer.pid, peer.config_text, peer.output_path, peer.address, peer.name == "syslog-ng"
    peer.stats()                            # live counters from the control socket (dict)
    peer.effective_rcvbuf                   # datagram kinds: SO_RCVBUF of syslog-ng's socket
    peer.kill()                             # error path: SIGKILL, no drain, clean up
    with SyslogNgPeer(...) as peer: ...     # stop() on exit (kill() if an exception escapes)
    summary = peer.stop(timeout=10.0)       # drains, SIGTERM, reaps, removes socket/fifo; dict:
        # messages_received, messages_written, messages_dropped, messages_queued,
        # truncated_messages, drained (bool), exit_code, killed (bool), effective_rcvbuf,
        # counters {raw name: n}
    for rec in peer.read_records(): ...     # producer's JSON object + received_ns (int, ns)
                                            # + transport; after the loop:
    peer.parse_errors, peer.bad_lines       # lines that were not "<ts>\\t<JSON object>"

``transport`` is one of loglab's names; it maps onto syslog-ng sources as
unixsock -> ``unix-stream()``, unixgram -> ``unix-dgram()``, tcp -> ``tcp()``, udp -> ``udp()``,
fifo -> ``pipe()``. Everything syslog-ng touches lives in ``workdir``: config, control socket,
persist file, pid file, stderr (its internal log), the output file and the socket / FIFO.
The process runs in the foreground (``-F``), so ``pid`` is the daemon itself (no supervisor) and
the harness can measure it with psutil.

Output. The ``file()`` destination writes ``${R_UNIXTIME}\\t${MSG}\\n``: the receipt time with
microsecond precision (``frac-digits(6)``; syslog-ng keeps timestamps in microseconds, there is
nothing finer) and the raw line. Sources use ``flags(no-parse)``, so ``MSG`` is the producer's JSON
object exactly as sent, without its line terminator: syslog-ng splits stream input on ``\\n`` and,
for datagrams (``unix-dgram()``, ``udp()``), strips trailing newlines, so the contract's
newline-terminated datagrams give no blank lines. ``received_ns`` is that receipt time in ns.
It is syslog-ng's own receipt stamp, taken from a clock cached per read job, so the messages of
one job share it (see "Receipt time at saturation" below); the aggregator stamps each read.
A datagram holding several lines stays one message (with embedded newlines), which shows up as
parse errors: the contract sends one line per datagram.

Readiness (``start``) is observed, not slept on: the process must hold the listening socket
(matched by inode in ``/proc/net/{unix,tcp,tcp6,udp,udp6}`` against ``/proc/PID/fd``) or have the
FIFO open, and its control socket must exist. syslog-ng cannot bind port 0, so tcp/udp pick a free
port and retry with another one when syslog-ng reports that the bind failed.

Datagram receive buffer: with ``rcvbuf`` the source gets ``so-rcvbuf()``, which syslog-ng sets
with SO_RCVBUF (capped by net.core.rmem_max); the aggregator uses SO_RCVBUFFORCE. So after start
the peer borrows syslog-ng's socket (pidfd_getfd, root) and applies SO_RCVBUFFORCE too;
``effective_rcvbuf`` is the size the kernel reports for syslog-ng's socket either way.

Stop: first wait until syslog-ng is idle (its source counter has not moved for ``drain_quiet``
seconds and the destination has written everything it received: nothing queued), then SIGTERM,
wait, SIGKILL if it hangs. syslog-ng does write its queue out on a clean exit, but what it has
not read by then is not guaranteed to be read; the drain makes "every message that reached
syslog-ng is in the file" independent of that, and ``drained`` in the summary says whether it
caught up within the time allowed.

Receipt time at saturation: syslog-ng stamps a message with a clock cached when the read job
starts, and one job reads up to ``log-fetch-limit`` messages (``fetch_limit``, 500 here for
throughput). While syslog-ng keeps up, a job only reads what is already there, so the stamp is the
receive time to within microseconds. When it is saturated (data keeps arriving during a job), the
later messages of a job carry a stamp taken before they were even sent: ``received_ns`` can be up
to one job's duration (~ms at 500) early, even before ``ts_ns``. For latency numbers under
saturation use ``fetch_limit=10`` (syslog-ng's default: stamps within tens of microseconds, but a
peak ingest rate about 3x lower here: ~100k vs ~300-460k msg/s of 200 bytes on unixsock from one
fast C sender, loggen, on a shared 2-core machine).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import orjson

from aggregator.transports import get_transport

from ..processes import Proc, free_ports

__all__ = ["SyslogNgPeer", "TRANSPORT_DRIVERS"]

# loglab transport name -> syslog-ng source driver: the transports this peer supports. A
# transport of the registry missing here is one syslog-ng has no source for (seqpacket): the
# bench skips that cell for this peer and the report says so.
TRANSPORT_DRIVERS = {
    "unixsock": "unix-stream",
    "unixgram": "unix-dgram",
    "tcp": "tcp",
    "udp": "udp",
    "fifo": "pipe",
}
# Grouped by the registry's own attributes: connection per producer, or one socket for all.
_STREAM = {t for t in TRANSPORT_DRIVERS if get_transport(t).connected}
_DGRAM = {t for t in TRANSPORT_DRIVERS if get_transport(t).kind == "datagram"}

# syslog-ng lives in /usr/sbin on Debian, which is not on a non-root user's PATH.
_SEARCH_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin", "/opt/syslog-ng/sbin")
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

_version_cache: dict[str, str] = {}


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in _SEARCH_DIRS:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def _version_output(binary: str) -> str:
    if binary not in _version_cache:
        try:
            out = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
            )
            _version_cache[binary] = out.stdout if out.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            _version_cache[binary] = ""
    return _version_cache[binary]


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _fd_targets(pid: int) -> set[str]:
    targets = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return targets
    for name in names:
        try:
            targets.add(os.readlink(f"{fd_dir}/{name}"))
        except OSError:
            pass
    return targets


def _inet_listeners(table: str, port: int) -> set[int]:
    """Inodes of sockets bound to local PORT in /proc/net/TABLE (tcp: LISTEN state only)."""
    inodes = set()
    for path in (f"/proc/net/{table}", f"/proc/net/{table}6"):
        try:
            with open(path) as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) < 10:
                        continue
                    local, state, inode = parts[1], parts[3], parts[9]
                    if int(local.rsplit(":", 1)[1], 16) != port:
                        continue
                    if table == "tcp" and state != "0A":  # TCP_LISTEN
                        continue
                    inodes.add(int(inode))
        except OSError:
            pass
    return inodes


def _unix_bound(path: str) -> set[int]:
    inodes = set()
    try:
        with open("/proc/net/unix") as f:
            next(f, None)
            for line in f:
                parts = line.split(None, 7)
                if len(parts) == 8 and parts[7].rstrip("\n") == path:
                    inodes.add(int(parts[6]))
    except OSError:
        pass
    return inodes


_SYS_PIDFD_GETFD = 438  # same number on every Linux architecture (since 5.6)
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def _borrow_fd(pid: int, target_fd: int) -> int:
    """A duplicate of another process's descriptor (pidfd_getfd; needs ptrace rights, e.g. root
    or the same user with ptrace_scope 0). Raises OSError when not possible."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        fd = libc.syscall(_SYS_PIDFD_GETFD, pidfd, target_fd, 0)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return fd
    finally:
        os.close(pidfd)


def _parse_receipt_ns(ts: bytes) -> int:
    sec, _, frac = ts.partition(b".")
    return int(sec) * 1_000_000_000 + (int(frac[:9].ljust(9, b"0")) if frac else 0)


class SyslogNgPeer:
    """One syslog-ng instance listening on one loglab transport; see the module docstring."""

    name = "syslog-ng"
    comm = "syslog-ng"  # what tracers see (every thread keeps the name)

    @staticmethod
    def supports(transport: str) -> bool:
        return transport in TRANSPORT_DRIVERS

    def __init__(
        self,
        transport: str,
        workdir: Path,
        *,
        rcvbuf: int | None = None,
        workers: int | None = None,  # loglab's option; syslog-ng runs threads of its own
        max_connections: int = 1024,
        max_line_bytes: int = 65536,
        pipe_size: int | None = 1 << 20,
        fetch_limit: int = 500,
        binary: str | None = None,
    ) -> None:
        if transport not in TRANSPORT_DRIVERS:
            raise ValueError(f"unknown transport {transport!r}; one of {', '.join(TRANSPORT_DRIVERS)}")
        self.transport = transport
        self._driver = TRANSPORT_DRIVERS[transport]
        self._inet = get_transport(transport).address_kind == "inet"  # else a path: a Unix socket or the FIFO
        self.workdir = Path(workdir)
        self.rcvbuf = rcvbuf or None
        self.max_connections = max_connections
        self.max_line_bytes = max_line_bytes
        self.pipe_size = pipe_size
        self.fetch_limit = fetch_limit
        self.binary = binary or _which("syslog-ng")
        self.config_path = self.workdir / "syslog-ng.conf"
        self.pid_path = self.workdir / "syslog-ng.pid"
        self.control_path = self.workdir / "syslog-ng.ctl"
        self.persist_path = self.workdir / "syslog-ng.persist"
        self.stderr_path = self.workdir / "daemon.err"  # the Proc's (named "daemon") stderr file
        self.output_path = self.workdir / "syslog-ng.out"
        self.config_text = ""
        self.address = ""
        self.pid = 0
        self.proc: Proc | None = None
        self.parse_errors = 0
        self.bad_lines: list[bytes] = []  # the first few lines that did not parse, for diagnosis
        self.last_stats: dict[str, int] = {}
        self.effective_rcvbuf: int | None = None  # datagram sources: SO_RCVBUF as the kernel has it
        self._pipe_fd: int | None = None
        self._unix_path: str | None = None

    # ---------------------------------------------------------------- availability
    @staticmethod
    def available() -> tuple[bool, str]:
        binary = _which("syslog-ng")
        if binary is None:
            return False, "syslog-ng is not installed (run scripts/setup-peer.sh as root: apt-get install syslog-ng-core)"
        if not _version_output(binary):
            return False, f"{binary} --version failed"
        return True, ""

    @staticmethod
    def version() -> str:
        binary = _which("syslog-ng")
        if binary is None:
            return ""
        m = re.search(r"Installer-Version:\s*(\S+)", _version_output(binary)) or re.search(
            r"syslog-ng \d+ \(([^)]+)\)", _version_output(binary)
        )
        return m.group(1) if m else ""

    def _config_version(self) -> str:
        # The grammar version the binary declares ("Config version: 3.35" in 3.38.1).
        m = re.search(r"Config version:\s*(\d+\.\d+)", _version_output(self.binary or ""))
        return m.group(1) if m else "3.35"

    # ---------------------------------------------------------------- configuration
    def _window(self) -> int:
        """Flow-control window per connection (stream) or per source (dgram, pipe)."""
        if self.transport in _STREAM:
            return max(1000, 2 * self.fetch_limit)
        return max(20000, 2 * self.fetch_limit)

    def _source(self, address_spec: str) -> str:
        """The source driver with its options, each followed by why (the comments go into the
        generated config too, so ``config_text`` explains itself)."""
        driver = TRANSPORT_DRIVERS[self.transport]
        opts: list[tuple[str, str]] = [
            (address_spec, "a path in the run's directory, or 127.0.0.1 and a port picked free"),
            ("flags(no-parse)", "the raw line is the message: no syslog header parsing at all"),
            (
                f"log-fetch-limit({self.fetch_limit})",
                "messages per read job (default 10): fewer wakeups per message, ~3x the peak "
                "ingest rate; also the receipt-stamp granularity at saturation",
            ),
        ]
        if self.transport in _STREAM:
            opts.append((
                f"max-connections({self.max_connections})",
                "as many producers as the aggregator accepts (defaults: tcp 10, unix-stream 256)",
            ))
            opts.append((
                f"log-iw-size({self._window() * self.max_connections})",
                f"flow-control window, split evenly among max-connections: {self._window()} "
                "in flight per connection, 2x the fetch limit so reading overlaps writing",
            ))
        elif self.transport in _DGRAM:
            opts.append((
                f"log-iw-size({self._window()})",
                "one socket, one deep window: bursts wait in syslog-ng, not the kernel buffer",
            ))
        else:
            opts.append((
                f"log-iw-size({self._window()})",
                "one FIFO, one deep window"
                + (f" (pipe buffer set to {self.pipe_size} bytes by the peer, as the aggregator does)" if self.pipe_size else ""),
            ))
        if not self._inet and self._driver != "pipe":
            opts.append(("perm(0600)", "socket file mode, as the aggregator's default --socket-mode"))
        if self.transport in _DGRAM and self.rcvbuf:
            opts.append((
                f"so-rcvbuf({int(self.rcvbuf)})",
                "kernel receive buffer as the aggregator's --rcvbuf (SO_RCVBUF, capped by "
                "rmem_max; the peer then applies SO_RCVBUFFORCE like the aggregator)",
            ))
        if self._driver == "tcp":
            opts.append(("so-keepalive(no)", "local, short-lived connections: no keepalive probes"))
        width = max(len(o) for o, _ in opts)
        body = "\n".join(f"        {o.ljust(width)}  # {why}" for o, why in opts)
        return f"{driver}(\n{body}\n    )"

    def _render_config(self, address_spec: str) -> str:
        # log-msg-size: the longest message kept whole. The aggregator accepts lines up to
        # max_line_bytes (64 KiB) without the newline; a little headroom so such a line is never
        # split or truncated by syslog-ng (UDP itself tops out at 65507 bytes).
        msg_size = self.max_line_bytes + 1024
        fifo_size = self._window() * (self.max_connections if self.transport in _STREAM else 1)
        return f"""@version: {self._config_version()}
# Generated by loglab benchmarks/peers/syslog_ng.py for transport {self.transport}.
# A high-throughput receiver that must not lose messages, tuned as an operator would for this
# benchmark. Nothing here touches system paths: sources, output, control socket, persist file and
# pid file are all in the run's work directory.
options {{
    log-msg-size({msg_size});   # lines up to {self.max_line_bytes} bytes (+newline) arrive whole
    frac-digits(6);             # R_UNIXTIME with microseconds (syslog-ng's finest resolution)
    threaded(yes);              # multi-threaded I/O workers (the default; stated for the record)
    use-dns(no);                # no reverse lookups of peers ...
    dns-cache(no);
    use-fqdn(no);
    keep-hostname(yes);         # ... and no hostname rewriting: the raw line is all we keep
    chain-hostnames(no);
    check-hostname(no);
    mark-freq(0);               # no MARK messages in the output
    stats-freq(0);              # no periodic statistics messages in the internal log
    stats-level(1);             # per-driver counters (written/queued/dropped) for stop()'s drain
    create-dirs(no);
    time-reopen(1);             # a failed destination is retried after 1 s, not 60 s
}};

source s_loglab {{
    {self._source(address_spec)};
}};

destination d_out {{
    file("{self.output_path}"
        # receipt time, a tab, the raw line; MSG never holds the line terminator.
        template("${{R_UNIXTIME}}\\t${{MSG}}\\n")
        template-escape(no)     # the JSON goes out byte for byte
        # Up to 1000 messages per write() under load; syslog-ng also writes as soon as its queue
        # runs empty, so a single message still reaches the file within ~1 ms.
        flush-lines(1000)
        fsync(no)               # like the aggregator's default --fsync never
        # Destination queue: as large as all source windows together, so with flow control the
        # windows, not this queue, bound what is in flight and nothing is dropped here.
        log-fifo-size({fifo_size})
    );
}};

log {{
    source(s_loglab);
    destination(d_out);
    # Reliable sources (unix-stream, tcp, pipe) are never dropped by syslog-ng: when the
    # destination lags, reading stops and the producers feel backpressure from the kernel.
    # For datagram sources it also stops reading, so any loss is in the kernel's socket buffer,
    # exactly where the aggregator's datagram loss happens.
    flags(flow-control);
}};
"""

    # ---------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 10.0) -> str:
        if self.proc is not None:
            raise RuntimeError("syslog-ng peer already started")
        ok, why = self.available()
        if not ok:
            raise RuntimeError(why)
        self.workdir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        attempts = 8 if self._inet else 1  # syslog-ng cannot bind port 0: a free port can be lost to a race
        last_error = ""
        for _ in range(attempts):
            spec, address = self._prepare_address()
            self.config_text = self._render_config(spec)
            self.config_path.write_text(self.config_text)
            self.output_path.unlink(missing_ok=True)
            self._spawn()
            state = self._await_ready(address, deadline)
            if state == "ready":
                self.address = address
                self._tune_rcvbuf()
                return address
            last_error = self._stderr_tail()
            self._reap(kill=True)
            if state != "bind-failed":
                break
        self._cleanup_files()
        raise RuntimeError(f"syslog-ng did not start on {self.transport}: {last_error or 'timeout'}")

    def _prepare_address(self) -> tuple[str, str]:
        if self._inet:
            (port,) = free_ports(1, kind=socket.SOCK_STREAM if get_transport(self.transport).connected else socket.SOCK_DGRAM)
            return f'ip("127.0.0.1") port({port})', f"127.0.0.1:{port}"
        path = str(self.workdir / f"syslog-ng.{self.transport}")
        self._unix_path = path
        if self._driver == "pipe":
            self._make_fifo(path)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        return f'"{path}"', path

    def _make_fifo(self, path: str) -> None:
        """Create the FIFO ourselves and hold it open so we can size its buffer like the
        aggregator does (F_SETPIPE_SZ; syslog-ng's pipe() has no such option). A pipe's buffer
        belongs to the pipe while any end is open, and syslog-ng opens this same pipe."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.mkfifo(path, 0o600)
        if self.pipe_size:
            self._pipe_fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                fcntl.fcntl(self._pipe_fd, _F_SETPIPE_SZ, self.pipe_size)
            except OSError:
                pass  # over /proc/sys/fs/pipe-max-size without CAP_SYS_RESOURCE: keep the default

    def _spawn(self) -> None:
        for p in (self.control_path, self.pid_path):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        args = [
            self.binary,
            "-F",  # foreground: the pid we get is the daemon, no supervisor
            "-e",  # its internal log to stderr (our file), not to a system log
            f"--cfgfile={self.config_path}",
            f"--pidfile={self.pid_path}",
            f"--control={self.control_path}",
            f"--persist-file={self.persist_path}",
            "--no-caps",  # do not fiddle with capabilities (root or not)
        ]
        # Readiness is observed by _await_ready (the listening socket and the control socket):
        # syslog-ng prints no line that says it.
        self.proc = Proc("daemon", args, self.workdir, cwd=self.workdir).start(wait=False)
        self.pid = self.proc.pid

    def _stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-2000:].strip()
        except OSError:
            return ""

    def _listening(self, address: str) -> bool:
        pid = self.pid
        if self._driver == "pipe":
            return address in _fd_targets(pid)
        mine = _socket_inodes(pid)
        if not self._inet:
            return bool(_unix_bound(address) & mine)
        port = int(address.rsplit(":", 1)[1])
        return bool(_inet_listeners(self.transport, port) & mine)

    def _listener_fd(self) -> int | None:
        """syslog-ng's descriptor number for its source socket (None for fifo / not found)."""
        if self._driver == "pipe":
            return None
        if not self._inet:
            wanted = _unix_bound(self.address)
        else:
            wanted = _inet_listeners(self.transport, int(self.address.rsplit(":", 1)[1]))
        fd_dir = f"/proc/{self.pid}/fd"
        for name in os.listdir(fd_dir):
            try:
                target = os.readlink(f"{fd_dir}/{name}")
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in wanted:
                return int(name)
        return None

    def _tune_rcvbuf(self) -> None:
        """Give the datagram socket the receive buffer the aggregator would get for --rcvbuf.

        syslog-ng's so-rcvbuf() uses SO_RCVBUF, which the kernel silently caps at
        net.core.rmem_max; the aggregator uses SO_RCVBUFFORCE when permitted. To compare like
        with like we borrow syslog-ng's socket (pidfd_getfd) and apply SO_RCVBUFFORCE to it:
        the same socket object, so syslog-ng gets that buffer. Without the privilege the
        so-rcvbuf() result stands. Either way ``effective_rcvbuf`` records what the kernel has."""
        if self.transport not in _DGRAM:
            return
        try:
            target = self._listener_fd()
            if target is None:
                return
            fd = _borrow_fd(self.pid, target)
        except (OSError, AttributeError):
            return
        try:
            with socket.socket(fileno=fd) as sock:
                try:
                    if self.rcvbuf:
                        try:
                            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, int(self.rcvbuf))
                        except OSError:
                            pass
                    self.effective_rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                finally:
                    sock.detach()
        finally:
            os.close(fd)

    def _await_ready(self, address: str, deadline: float) -> str:
        delay = 0.001
        while True:
            if not self.proc.running():
                err = self._stderr_tail()
                if "Error binding socket" in err or "Address already in use" in err:
                    return "bind-failed"
                return "exited"
            if self.control_path.exists() and self._listening(address):
                return "ready"
            if time.monotonic() >= deadline:
                return "timeout"
            time.sleep(delay)  # polling an observable condition, with a short backoff
            delay = min(delay * 2, 0.02)

    # ---------------------------------------------------------------- counters
    def _control(self, command: str, timeout: float = 2.0) -> str:
        """One command on syslog-ng's control socket (what syslog-ng-ctl does)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.control_path))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"".join(chunks[-2:]).endswith(b"\n.\n") or chunks[-1] == b".\n":
                    break
        return b"".join(chunks).decode(errors="replace")

    def stats(self) -> dict[str, int]:
        """syslog-ng's counters, keyed "component;id;instance;type" (state column dropped)."""
        text = self._control("STATS")
        counters: dict[str, int] = {}
        for line in text.splitlines():
            parts = line.split(";")
            if len(parts) != 6 or parts[0] == "SourceName":
                continue
            try:
                counters[";".join((parts[0], parts[1], parts[2], parts[4]))] = int(parts[5])
            except ValueError:
                pass
        self.last_stats = counters
        return counters

    def counts(self) -> dict[str, int]:
        """syslog-ng's own message counts now: received, written, dropped, queued, truncated."""
        return self._summarize(self.stats())

    @staticmethod
    def _summarize(counters: dict[str, int]) -> dict[str, int]:
        def total(component: str, kind: str) -> int:
            return sum(v for k, v in counters.items() if k.startswith(component + ";") and k.endswith(";" + kind))

        return {
            "messages_received": counters.get("source;s_loglab;;processed", 0),
            "messages_written": total("dst.file", "written"),
            "messages_dropped": total("dst.file", "dropped"),
            "messages_queued": total("dst.file", "queued"),
            "truncated_messages": total("dst.file", "truncated_count"),
        }

    def _drain(self, deadline: float, quiet: float) -> bool:
        """Wait until syslog-ng is idle and has written all it received; False on timeout."""
        last_received = -1
        since = time.monotonic()
        while True:
            try:
                s = self.counts()
            except OSError:
                return False
            now = time.monotonic()
            if s["messages_received"] != last_received:
                last_received = s["messages_received"]
                since = now
            caught_up = s["messages_queued"] == 0 and (
                s["messages_written"] + s["messages_dropped"] >= s["messages_received"]
            )
            if caught_up and now - since >= quiet:
                return True
            if now >= deadline or not self.proc.running():
                return False
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0, *, drain_quiet: float = 0.2) -> dict:
        """Drain (up to half the timeout), SIGTERM, reap (SIGKILL when it hangs), clean up."""
        proc = self.proc
        if proc is None:
            return {}
        start = time.monotonic()
        drained = False
        if proc.running():
            drained = self._drain(start + timeout / 2, drain_quiet)
        summary = self._summarize(self.last_stats)
        killed = self._reap(kill=False, timeout=max(0.5, timeout - (time.monotonic() - start)))
        self._cleanup_files()
        summary.update(
            drained=drained,
            exit_code=proc.returncode(),
            killed=killed,
            effective_rcvbuf=self.effective_rcvbuf,
            counters=dict(self.last_stats),
        )
        return summary

    def kill(self) -> None:
        """SIGKILL without draining and clean up (for error paths; stop() is the normal way)."""
        self._reap(kill=True)
        self._cleanup_files()

    def _reap(self, *, kill: bool, timeout: float = 5.0) -> bool:
        """Terminate the process (SIGKILL right away when kill=True); True if it was killed."""
        proc, killed = self.proc, False
        if proc is None:
            return False
        if proc.running():
            proc.send(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout)
            except AssertionError:  # hung: SIGKILL
                proc.kill()
                killed = True
        self.proc = None
        return killed or kill

    def _cleanup_files(self) -> None:
        if self._pipe_fd is not None:
            os.close(self._pipe_fd)
            self._pipe_fd = None
        for p in (self._unix_path, self.control_path, self.pid_path):
            if p:
                try:
                    os.unlink(p)
                except OSError as e:
                    if e.errno != errno.ENOENT:
                        raise

    def __enter__(self) -> "SyslogNgPeer":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            if exc[0] is None:
                self.stop()
            else:
                self.kill()

    def __del__(self) -> None:  # last resort: never leave a daemon behind
        proc = getattr(self, "proc", None)
        if proc is not None and proc.running():
            proc.kill()

    # ---------------------------------------------------------------- output
    def read_records(self) -> Iterator[dict | None]:
        """Each received message as the producer's object plus ``received_ns`` and ``transport``.

        Lines that are not ``<receipt time>\\t<JSON object>`` are counted in ``parse_errors``
        (the first 20 kept in ``bad_lines``) and yield None (one item per line, in order).
        Both are reset per call.
        """
        self.parse_errors = 0
        self.bad_lines = []
        try:
            f = open(self.output_path, "rb")
        except FileNotFoundError:
            return
        with f:
            for raw in f:
                line = raw[:-1] if raw.endswith(b"\n") else raw
                ts, tab, msg = line.partition(b"\t")
                try:
                    if not tab:
                        raise ValueError("no tab")
                    received_ns = _parse_receipt_ns(ts)
                    obj = orjson.loads(msg)
                    if not isinstance(obj, dict):
                        raise ValueError("not an object")
                except ValueError:  # orjson.JSONDecodeError is a ValueError
                    self.parse_errors += 1
                    if len(self.bad_lines) < 20:
                        self.bad_lines.append(raw[:200])
                    yield None  # one item per line: the observer's stamps stay aligned
                    continue
                obj["received_ns"] = received_ns
                obj["transport"] = self.transport
                yield obj
