"""fifo: a named pipe shared by every producer. Newline framing.

* The aggregator creates the FIFO and keeps a write end of its own open, so the read end never
  sees EOF when the last producer leaves: no EOF/reopen cycle and no busy loop between writers.
  At shutdown it closes its write end; reading then ends at EOF once every producer has gone
  (or at ``--drain-timeout``).
* All producers share one byte stream. The kernel keeps a write of at most PIPE_BUF (4096) bytes
  whole; larger writes can interleave with other writers. So a producer writes whole lines of at
  most PIPE_BUF bytes per write and refuses larger messages (``atomic_write_limit``).
* The pipe's capacity is raised (``F_SETPIPE_SZ``, default 1 MiB, capped by
  ``/proc/sys/fs/pipe-max-size``) so a burst does not block producers at 64 KiB.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import stat

from ..framing import Reject
from ..hotpath import new_line_framer
from .addresses import default_unix_path, file_mode, prepare_path, remove_if_ours
from .base import BadAddress, Binding, Endpoint, ListenOptions, SingleReader, Transport
from .stream import MAX_READS_PER_TURN

PIPE_BUF = getattr(select, "PIPE_BUF", 4096)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


class FifoEndpoint(Endpoint):
    __slots__ = ("_fd", "_keepalive_fd", "label", "line_framer")
    peer_fields = None  # writers to a FIFO are anonymous
    newline_free = True

    def __init__(self, read_fd: int, keepalive_fd: int, label: str, max_line_bytes: int) -> None:
        self._fd = read_fd
        self._keepalive_fd: int | None = keepalive_fd
        self.label = label
        self.line_framer = new_line_framer(max_line_bytes)  # the loop frames what read() returns

    def fileno(self) -> int:
        return self._fd

    def read(self, buf: memoryview, lines: list[bytes], rejects: list[Reject]) -> tuple[int, int, bool]:
        total = calls = 0
        size = len(buf)
        for _ in range(MAX_READS_PER_TURN):
            try:
                n = os.readv(self._fd, [buf])
            except BlockingIOError:
                break
            calls += 1
            if n == 0:  # every writer, our own included, has closed: drained
                return total, calls, True
            total += n
            lines.append(buf[:n].tobytes())  # framed by the loop, with line_framer
            if n < size:
                break
        return total, calls, False

    def begin_drain(self) -> None:
        if self._keepalive_fd is not None:
            os.close(self._keepalive_fd)
            self._keepalive_fd = None

    def close(self, rejects: list[Reject]) -> None:
        self.begin_drain()
        self.line_framer.close(rejects)
        os.close(self._fd)


class FifoSender:
    """Producer side: blocking writes of at most PIPE_BUF bytes, each kept whole by the kernel."""

    def __init__(self, fd: int, timeout: float | None = None) -> None:
        self.fd = fd
        self.timeout = timeout

    def send(self, data: bytes) -> None:
        if len(data) > PIPE_BUF:
            raise ValueError(f"fifo writes above PIPE_BUF ({PIPE_BUF} bytes) could interleave")
        n = os.write(self.fd, data)
        if n != len(data):  # cannot happen for <= PIPE_BUF in blocking mode; guard anyway
            raise OSError(f"short fifo write: {n} of {len(data)} bytes")

    def write_all(self, data: bytes) -> None:
        """Any size, in as many writes as the pipe takes (no atomicity past PIPE_BUF), each
        waiting at most ``timeout`` for room."""
        view = memoryview(data)
        while view:
            if self.timeout is not None and not select.select([], [self.fd], [], self.timeout)[1]:
                raise TimeoutError(f"the FIFO stayed full for {self.timeout} s")
            view = view[os.write(self.fd, view) :]

    def close(self) -> None:
        os.close(self.fd)


class FifoTransport(Transport):
    name = "fifo"
    kind = "stream"
    description = "named pipe (FIFO) shared by all producers: reliable, writes <= 4096 bytes atomic"
    atomic_write_limit = PIPE_BUF
    address_kind = "path"
    sharing = SingleReader("a line can straddle two reads of a FIFO")

    def default_address(self) -> str:
        return default_unix_path("logs.fifo")

    def listen(self, address: str, options: ListenOptions) -> Binding:
        prepare_path(address, self.name)
        with file_mode(options.socket_mode):
            os.mkfifo(address, options.socket_mode)
        cleanup = remove_if_ours(address)
        try:
            read_fd = os.open(address, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            keepalive_fd = os.open(address, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            cleanup()
            raise
        pipe_size = None
        if options.pipe_size:
            try:
                fcntl.fcntl(read_fd, _F_SETPIPE_SZ, options.pipe_size)
            except OSError:
                pass  # over pipe-max-size for an unprivileged user: keep the default
            pipe_size = fcntl.fcntl(read_fd, _F_GETPIPE_SZ)
        return Binding(
            address=address,
            endpoints=[FifoEndpoint(read_fd, keepalive_fd, address, options.max_line_bytes)],
            info={"effective_pipe_size": pipe_size},
            cleanup=cleanup,
        )

    def connect(self, address: str, timeout: float | None = None) -> FifoSender:
        try:
            # Non-blocking open fails at once (ENXIO) when nobody reads, instead of hanging.
            fd = os.open(address, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                raise ConnectionRefusedError(errno.ECONNREFUSED, f"no aggregator is reading the FIFO {address}") from None
            raise
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.close(fd)
            raise BadAddress(f"{address} is not a FIFO")
        os.set_blocking(fd, True)  # a full pipe blocks the producer: backpressure, no loss
        return FifoSender(fd, timeout)
