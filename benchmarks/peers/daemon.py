"""What the peers share: a log daemon of the machine's, run by the lab in the foreground with a
generated config, listening on one of loglab's transports, writing ``<receipt time>\\t<message>``
lines to a file of its run directory; found where the setup put it, started and awaited through
``processes.Proc``, stopped and cleaned up whatever happened.

A peer (``syslog_ng.py``, ``rsyslog.py``) is a ``LogDaemonPeer`` that says:

* ``name``, ``comm`` (what tracers see), ``INPUTS`` (loglab transport -> the daemon's input for
  it: the transports it supports; ``UNSUPPORTED`` says why not for the others), and
  ``OCTET_COUNTED``, the transports on which it reads RFC 6587 octet counting (``supports``: every
  input reads newline framing and every producer format; none reads lenprefix frames);
* ``binary()``, ``version()``, ``available()``;
* ``_render_config(address_spec)``, ``_argv()``, ``_address_spec(...)``, and its readiness,
  drain and counters where it has them;
* ``_receipt_ns(stamp)``: its receipt time as written in the output line.

Everything else is here: the address (a path in the run directory, or 127.0.0.1 and a free port,
retried on a lost race: daemons cannot bind port 0), readiness observed in ``/proc`` (the process
holds the listening socket, found by inode in ``/proc/net/{unix,tcp,udp}`` against
``/proc/PID/fd``, or has the FIFO open), the datagram receive buffer (the daemons set SO_RCVBUF,
which the kernel caps at ``net.core.rmem_max``; the aggregator uses SO_RCVBUFFORCE: so the peer
borrows the daemon's socket with pidfd_getfd, as root, and applies SO_RCVBUFFORCE too), the stop
(drain, SIGTERM, SIGKILL if it hangs) and reading the output back into records.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import ClassVar, Iterator

import orjson

from aggregator.transports import get_transport

from ..processes import Proc, free_ports

# Where scripts/setup-peer.sh unpacks a daemon whose package conflicts with the one installed
# (Debian's rsyslog and syslog-ng-core both provide system-log-daemon).
PEERS_DIR = Path(os.environ.get("LOGLAB_PEERS_DIR", "/opt/loglab/peers"))
# Daemons live in /usr/sbin on Debian, which is not on a non-root user's PATH.
_SEARCH_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_SYS_PIDFD_GETFD = 438  # same number on every Linux architecture (since 5.6)

_version_cache: dict[tuple[str, ...], str] = {}


def find_binary(name: str, package: str) -> tuple[str | None, Path | None]:
    """``(path, unpacked root)`` of the daemon ``name``: installed (PATH, /usr/sbin), else
    unpacked by the setup under ``PEERS_DIR/package`` (then its root, for its module path)."""
    found = shutil.which(name)
    if found:
        return found, None
    for d in _SEARCH_DIRS:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p, None
    root = PEERS_DIR / package
    for d in _SEARCH_DIRS:
        p = root / d.lstrip("/") / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p), root
    return None, None


def multiarch_dir(root: Path, *parts: str) -> Path | None:
    """``root/usr/lib/<multiarch>/PARTS`` of an unpacked package (its modules), or None."""
    found = sorted(glob.glob(str(root / "usr" / "lib" / "*" / Path(*parts))))
    return Path(found[0]) if found else None


def version_output(*argv: str) -> str:
    """The output of a version command (cached; empty when it fails)."""
    if argv not in _version_cache:
        try:
            out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
            _version_cache[argv] = out.stdout if out.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            _version_cache[argv] = ""
    return _version_cache[argv]


# -- what a process holds, from /proc ------------------------------------------------------------------


def _fd_links(pid: int) -> dict[int, str]:
    links = {}
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return links
    for name in names:
        try:
            links[int(name)] = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            pass
    return links


def socket_inodes(pid: int) -> dict[int, int]:
    """inode -> descriptor of every socket ``pid`` holds."""
    return {int(target[8:-1]): fd for fd, target in _fd_links(pid).items() if target.startswith("socket:[")}


def inet_listeners(table: str, port: int) -> set[int]:
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


_SO_ACCEPTCON = 0x10000  # /proc/net/unix Flags: the socket listens


def unix_bound(path: str, listening: bool = False) -> set[int]:
    """Inodes of the Unix sockets bound to ``path`` (/proc/net/unix); ``listening``: only those
    that accept connections already (bound is not yet listening: a connect would be refused)."""
    inodes = set()
    try:
        with open("/proc/net/unix") as f:
            next(f, None)
            for line in f:
                parts = line.split(None, 7)
                if len(parts) == 8 and parts[7].rstrip("\n") == path:
                    if not listening or int(parts[3], 16) & _SO_ACCEPTCON:
                        inodes.add(int(parts[6]))
    except OSError:
        pass
    return inodes


def borrow_fd(pid: int, target_fd: int) -> int:
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


class LogDaemonPeer:
    """One daemon listening on one loglab transport; see the module docstring for what a
    subclass provides."""

    name: ClassVar[str]
    comm: ClassVar[str]
    trace_comms: ClassVar[tuple[str, ...]] = ()  # its threads' names, where they differ from comm (the tracer counts them as comm)
    INPUTS: ClassVar[dict[str, str]]  # loglab transport -> the daemon's input for it
    UNSUPPORTED: ClassVar[dict[str, str]] = {}  # loglab transport -> why the daemon has no input for it
    OCTET_COUNTED: ClassVar[frozenset[str]] = frozenset()  # transports on which it reads RFC 6587 octet counting
    config_name: ClassVar[str] = "daemon.conf"
    output_name: ClassVar[str] = "daemon.out"

    @classmethod
    def supports(cls, transport: str, fmt: str = "json", framing: str = "newline") -> bool:
        return cls.unsupported(transport, fmt, framing) is None

    @classmethod
    def unsupported(cls, transport: str, fmt: str = "json", framing: str = "newline") -> str | None:
        """Why this peer cannot serve the cell (None: it can). Every peer reads newline framing; RFC 6587
        octet counting only on its ``OCTET_COUNTED`` transports; no peer reads lenprefix frames."""
        if transport not in cls.INPUTS:
            return cls.UNSUPPORTED.get(transport, f"{cls.name} has no input for {transport}")
        if framing == "newline" or (framing == "octet" and transport in cls.OCTET_COUNTED):
            return None
        if framing == "octet":
            return f"{cls.name}'s {cls.INPUTS[transport]} input has no octet-counted framing"
        return f"{cls.name} has no {framing} framing"

    def __init__(self, transport: str, workdir: Path, *, rcvbuf: int | None = None, workers: int | None = None,
                 max_connections: int = 1024, max_line_bytes: int = 65536, pipe_size: int | None = 1 << 20,
                 fmt: str = "json", framing: str = "newline") -> None:  # fmt: skip
        why = self.unsupported(transport, fmt, framing)
        if why:
            raise ValueError(f"{self.name} cannot serve {transport} ({fmt}, {framing}): {why}")
        self.transport = transport
        self.format = fmt
        self.framing = framing
        self._input = self.INPUTS[transport]
        t = get_transport(transport)
        self._inet = t.address_kind == "inet"  # else a path: a Unix socket or the FIFO
        self._connected = t.connected
        self._datagram = t.kind == "datagram"
        self._fifo = t.address_kind == "path" and t.kind == "stream" and not t.connected
        self.workdir = Path(workdir)
        self.rcvbuf = rcvbuf or None
        self.max_connections = max_connections
        self.max_line_bytes = max_line_bytes
        self.pipe_size = pipe_size
        self.config_path = self.workdir / self.config_name
        self.pid_path = self.workdir / f"{self.comm}.pid"
        self.stderr_path = self.workdir / "daemon.err"  # the Proc's (named "daemon") stderr file
        self.output_path = self.workdir / self.output_name
        self.config_text = ""
        self.address = ""
        self.pid = 0
        self.proc: Proc | None = None
        self.parse_errors = 0
        self.bad_lines: list[bytes] = []  # the first few lines that did not parse, for diagnosis
        self.effective_rcvbuf: int | None = None  # datagram inputs: SO_RCVBUF as the kernel has it
        self._pipe_fd: int | None = None
        self._unix_path: str | None = None

    # -- what a subclass provides ------------------------------------------------------------------------
    @classmethod
    def available(cls) -> tuple[bool, str]:
        raise NotImplementedError

    @classmethod
    def version(cls) -> str:
        raise NotImplementedError

    def _render_config(self, address_spec: str) -> str:
        raise NotImplementedError

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _address_spec(self, port: int | None, path: str | None) -> str:
        """How the config names the address: a port on 127.0.0.1, or a path."""
        raise NotImplementedError

    def _receipt_ns(self, stamp: bytes) -> int:
        raise NotImplementedError

    def _ready(self) -> bool:
        """Anything besides the listening socket the daemon must have before it is ready."""
        return True

    def _bind_failed(self, stderr: str) -> bool:
        return "Address already in use" in stderr

    def _drain(self, deadline: float, quiet: float) -> bool:
        """Wait until the daemon has written everything it took in: here, until the output has
        not grown for ``quiet`` seconds (a daemon with counters does better)."""
        last, since = -1, time.monotonic()
        while True:
            size = self.output_path.stat().st_size if self.output_path.exists() else 0
            now = time.monotonic()
            if size != last:
                last, since = size, now
            elif now - since >= quiet:
                return True
            if now >= deadline or not self.proc.running():
                return False
            time.sleep(0.02)

    def _summary(self) -> dict:
        """The daemon's own counters at the stop (what it has)."""
        return {}

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> str:
        if self.proc is not None:
            raise RuntimeError(f"{self.name} peer already started")
        ok, why = self.available()
        if not ok:
            raise RuntimeError(why)
        self.workdir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        attempts = 8 if self._inet else 1  # a daemon cannot bind port 0: a free port can be lost to a race
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
        raise RuntimeError(f"{self.name} did not start on {self.transport}: {last_error or 'timeout'}")

    def _prepare_address(self) -> tuple[str, str]:
        if self._inet:
            (port,) = free_ports(1, kind=socket.SOCK_STREAM if self._connected else socket.SOCK_DGRAM)
            return self._address_spec(port, None), f"127.0.0.1:{port}"
        path = str(self.workdir / f"{self.comm}.{self.transport}")
        self._unix_path = path
        if self._fifo:
            self._make_fifo(path)
        else:
            with_suppressed_enoent(os.unlink, path)
        return self._address_spec(None, path), path

    def _make_fifo(self, path: str) -> None:
        """Create the FIFO ourselves and hold it open so we can size its buffer like the
        aggregator does (F_SETPIPE_SZ; the daemons have no such option). A pipe's buffer belongs
        to the pipe while any end is open, and the daemon opens this same pipe."""
        with_suppressed_enoent(os.unlink, path)
        os.mkfifo(path, 0o600)
        if self.pipe_size:
            self._pipe_fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                fcntl.fcntl(self._pipe_fd, _F_SETPIPE_SZ, self.pipe_size)
            except OSError:
                pass  # over /proc/sys/fs/pipe-max-size without CAP_SYS_RESOURCE: keep the default

    def _stale_files(self) -> list:
        """Files a previous run may have left that readiness must not mistake for this one's."""
        return []

    def _spawn(self) -> None:
        for p in (self.pid_path, *self._stale_files()):
            with_suppressed_enoent(os.unlink, p)
        # Readiness is observed by _await_ready (the listening socket): the daemons print no
        # line that says it.
        self.proc = Proc("daemon", self._argv(), self.workdir, cwd=self.workdir).start(wait=False)
        self.pid = self.proc.pid

    def _stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-2000:].strip()
        except OSError:
            return ""

    def _listener_inodes(self, address: str) -> set[int]:
        if not self._inet:
            return unix_bound(address, listening=self._connected)
        return inet_listeners("tcp" if self._connected else "udp", int(address.rsplit(":", 1)[1]))

    def _listening(self, address: str) -> bool:
        if self._fifo:
            return address in _fd_links(self.pid).values()
        return bool(self._listener_inodes(address) & socket_inodes(self.pid).keys())

    def _await_ready(self, address: str, deadline: float) -> str:
        delay = 0.001
        while True:
            if not self.proc.running():
                return "bind-failed" if self._bind_failed(self._stderr_tail()) else "exited"
            if self._listening(address) and self._ready():
                return "ready"
            if time.monotonic() >= deadline:
                return "timeout"
            time.sleep(delay)  # polling an observable condition, with a short backoff
            delay = min(delay * 2, 0.02)

    def _tune_rcvbuf(self) -> None:
        """Give the datagram socket the receive buffer the aggregator would get for --rcvbuf: the
        same socket object (borrowed), so the daemon gets that buffer. Without the privilege the
        daemon's own setting stands. Either way ``effective_rcvbuf`` records what the kernel has."""
        if not self._datagram:
            return
        try:
            inodes = socket_inodes(self.pid)
            target = next((inodes[i] for i in self._listener_inodes(self.address) if i in inodes), None)
            if target is None:
                return
            fd = borrow_fd(self.pid, target)
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

    def stop(self, timeout: float = 10.0, *, drain_quiet: float = 0.2) -> dict:
        """Drain (up to half the timeout), SIGTERM, reap (SIGKILL when it hangs), clean up."""
        proc = self.proc
        if proc is None:
            return {}
        start = time.monotonic()
        drained = proc.running() and self._drain(start + timeout / 2, drain_quiet)
        summary = self._summary()
        killed = self._reap(kill=False, timeout=max(0.5, timeout - (time.monotonic() - start)))
        self._cleanup_files()
        summary.update(drained=drained, exit_code=proc.returncode(), killed=killed, effective_rcvbuf=self.effective_rcvbuf)
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

    def _files_to_remove(self) -> list:
        return [self._unix_path, self.pid_path]

    def _cleanup_files(self) -> None:
        if self._pipe_fd is not None:
            os.close(self._pipe_fd)
            self._pipe_fd = None
        for p in self._files_to_remove():
            if p:
                with_suppressed_enoent(os.unlink, p)

    def __enter__(self):
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

    # -- output ------------------------------------------------------------------------------------------
    def read_records(self) -> Iterator[dict | None]:
        """Each received message as the producer's object plus ``received_ns`` and ``transport``.

        Lines that are not ``<receipt time>\\t<JSON object>`` are counted in ``parse_errors``
        (the first 20 kept in ``bad_lines``) and yield None (one item per line, in order: the
        observer pairs records with lines by position). Both are reset per call.
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
                    received_ns = self._receipt_ns(ts)
                    obj = orjson.loads(msg)
                    if not isinstance(obj, dict):
                        raise ValueError("not an object")
                except (ValueError, TypeError):  # orjson.JSONDecodeError is a ValueError
                    self.parse_errors += 1
                    if len(self.bad_lines) < 20:
                        self.bad_lines.append(raw[:200])
                    yield None  # one item per line: the observer's stamps stay aligned
                    continue
                obj["received_ns"] = received_ns
                obj["transport"] = self.transport
                yield obj


def with_suppressed_enoent(fn, path) -> None:
    try:
        fn(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
