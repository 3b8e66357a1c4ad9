"""Addresses: filesystem paths for Unix sockets and FIFOs, HOST:PORT for inet sockets.

Safety rules for paths (the aggregator may run as root):
* the default lives in a private directory, ``$XDG_RUNTIME_DIR/loglab-UID`` (or the temp
  directory), created 0700 and refused if it is a symlink, not ours, or open to others;
* an existing path is replaced only if it is a socket/FIFO nobody is serving (stale, from a
  crashed run); a live one is refused, and so is anything else (regular file, symlink). Liveness
  is judged by what is at the path (a socket of any type, or a FIFO), never by what the new
  transport would be: a live unixsock socket is not "stale" to an ``aggregator fifo``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from .base import AddressInUse, BadAddress

DEFAULT_INET_HOST = "127.0.0.1"  # loopback unless asked otherwise, never 0.0.0.0 by default
DEFAULT_INET_PORT = 5140


def private_runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"loglab-{os.getuid()}"


def default_unix_path(filename: str) -> str:
    return str(private_runtime_dir() / filename)


def ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` 0700, or check an existing one is really private and ours."""
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise BadAddress(f"{directory} is not a directory (a symlink?); refusing to use it")
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise BadAddress(
            f"{directory} is not private (owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}); "
            "refusing to put the socket there"
        )


# sun_path is 108 bytes, the terminating NUL included.
MAX_UNIX_PATH_BYTES = 107


def prepare_path(path: str, what: str) -> None:
    """Make ``path`` free to bind/create: remove a stale socket/FIFO, refuse anything else."""
    if not path:
        raise BadAddress(f"{what}: the address must be a filesystem path")
    size = len(os.fsencode(path))
    if size > MAX_UNIX_PATH_BYTES:
        raise BadAddress(
            f"{what}: {path} is {size} bytes long; a Unix socket path holds at most {MAX_UNIX_PATH_BYTES} "
            "(108 with its terminating NUL, sun_path): choose a shorter one"
        )
    parent = Path(path).parent
    if parent == private_runtime_dir():
        ensure_private_dir(parent)
    elif not parent.is_dir():
        raise BadAddress(f"{what}: directory {parent} does not exist")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise AddressInUse(f"{path} is a symlink; refusing to follow or replace it")
    if not (stat.S_ISSOCK(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        raise AddressInUse(f"{path} exists and is not a socket or FIFO; refusing to replace it")
    if path_is_live(path, st):
        kind = "FIFO" if stat.S_ISFIFO(st.st_mode) else "socket"
        raise AddressInUse(f"an aggregator is already listening on {path} (a live {kind}); refusing to replace it")
    os.unlink(path)  # stale: left by a run that crashed


@contextlib.contextmanager
def file_mode(mode: int) -> Iterator[None]:
    """Create files with exactly ``mode``: no window in which the socket is open to others."""
    old = os.umask(0o777 & ~mode)
    try:
        yield
    finally:
        os.umask(old)


def path_is_live(path: str, st: os.stat_result) -> bool:
    """Is someone serving what is at ``path``? A socket is probed with every socket type (a
    connect of the wrong type fails with EPROTOTYPE, which says nothing about liveness); a FIFO
    is live while it has a reader."""
    if stat.S_ISFIFO(st.st_mode):
        return fifo_has_reader(path)
    for sock_type in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET):
        probe = socket.socket(socket.AF_UNIX, sock_type)
        probe.setblocking(False)  # a live listener whose backlog is full would make connect() wait
        try:
            probe.connect(path)
            return True
        except BlockingIOError:
            return True  # EAGAIN: a listener is there, its backlog full
        except (ConnectionRefusedError, FileNotFoundError):
            return False  # the right type, and nobody there: stale
        except PermissionError:
            return True  # someone else's live socket; do not touch it
        except OSError as exc:
            if exc.errno != errno.EPROTOTYPE:
                return True  # cannot tell: treat it as live, never unlink what may be in use
        finally:
            probe.close()
    return True


def fifo_has_reader(path: str) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no reader: stale
            return False
        if exc.errno == errno.ENOENT:
            return False
        return True  # e.g. EACCES: someone else's; do not touch it
    os.close(fd)
    return True


def parse_inet(address: str) -> tuple[int, tuple]:
    """``HOST:PORT`` or ``[V6HOST]:PORT`` -> (family, sockaddr). Port 0 = any free port."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise BadAddress(f"bad address {address!r}: expected HOST:PORT, e.g. 127.0.0.1:5140")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise BadAddress(f"bad port in {address!r}: expected 0..65535") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICSERV)
    except socket.gaierror as exc:
        raise BadAddress(f"bad host in {address!r}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def format_inet(sockaddr: tuple) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind_or_explain(sock: socket.socket, target, shown: str) -> None:
    try:
        sock.bind(target)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(f"address {shown} is already in use (another aggregator?)") from None
        raise BadAddress(f"cannot bind {shown}: {exc.strerror}") from None


class UnixPathAddressing:
    """Addressing hooks for AF_UNIX sockets: a filesystem path, private by default."""

    address_kind = "path"
    default_filename: str
    socket_type: int

    def default_address(self) -> str:
        return default_unix_path(self.default_filename)

    def _bind_address(self, address: str, options) -> tuple[int, str]:
        prepare_path(address, self.name)
        return socket.AF_UNIX, address

    def _bind(self, sock: socket.socket, path: str, options) -> Callable[[], None]:
        with file_mode(options.socket_mode):
            _bind_or_explain(sock, path, path)
        os.chmod(path, options.socket_mode)
        return remove_if_ours(path)

    def _connect_address(self, address: str) -> tuple[int, str]:
        return socket.AF_UNIX, address

    def _bound_address(self, sock: socket.socket) -> str:
        return sock.getsockname()


class InetAddressing:
    """Addressing hooks for tcp/udp: HOST:PORT, loopback by default."""

    address_kind = "inet"
    def default_address(self) -> str:
        return f"{DEFAULT_INET_HOST}:{DEFAULT_INET_PORT}"

    def _bind_address(self, address: str, options) -> tuple[int, tuple]:
        return parse_inet(address)

    def _bind(self, sock: socket.socket, sockaddr: tuple, options) -> Callable[[], None]:
        _bind_or_explain(sock, sockaddr, format_inet(sockaddr))
        return lambda: None

    def _connect_address(self, address: str) -> tuple[int, tuple]:
        return parse_inet(address)

    def _bound_address(self, sock: socket.socket) -> str:
        return format_inet(sock.getsockname())


def remove_if_ours(path: str) -> Callable[[], None]:
    """A cleanup that unlinks ``path`` only if it is still the file we created (same inode), so
    stopping one aggregator never removes the socket of another that replaced it."""
    inode = os.lstat(path).st_ino

    def cleanup() -> None:
        try:
            if os.lstat(path).st_ino == inode:
                os.unlink(path)
        except FileNotFoundError:
            pass

    return cleanup
