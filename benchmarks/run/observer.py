"""The one latency observer: it follows a system's output file and stamps each line as it appears.

Every system of the bench (loglab and each peer) writes its lines to a file, and each system has
its own idea of when it received a message (loglab's ``received_ns`` is taken at the read; a
peer may stamp a whole read batch at once, even before the producer's send time). This observer
measures all of them the same way, from outside: the time at which a line is *in the output
file*, readable by anyone, minus the producer's intended send time.

How: a separate process (``python -m benchmarks.run.observer FILE STAMPS``) watches the file's
directory with inotify. At each change it reads the file from where it stopped to its end and
takes the clock (CLOCK_REALTIME, the producers' clock) *after* the read returned, so every line
that read completed was in the file before its stamp: an observed latency can never be negative.
Lines completed by one read share its stamp; the stamps are kept as runs ``(lines, t_ns)``, a few
thousand per run whatever the message rate. On SIGTERM it reads once more, writes the runs to
STAMPS and exits.

Resolution: the delay from a write to the observer's read is an inotify wake-up and a read
(tens of microseconds on an idle core); the machine's two cores are shared with the system and
its producers, so under load it can be more. The same holds for every system measured.

``ObservedStamps.load(STAMPS).per_line()`` gives one stamp per line of the file, in file order,
for the sequence check (``results.seqcheck.analyze_output(..., observed=...)``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import signal
import struct
import sys
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
READ_CHUNK = 4 << 20
READY_LINE = "observing"
_MAGIC = b"LLOBS1\n"


def _libc():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    return libc


@dataclass
class ObservedStamps:
    """Runs of (lines completed, stamp ns), in file order."""

    lines: array  # 'q'
    stamps_ns: array  # 'q'

    @property
    def total_lines(self) -> int:
        return sum(self.lines)

    def per_line(self) -> Iterator[int]:
        """One stamp per line of the observed file, in order."""
        for n, t in zip(self.lines, self.stamps_ns):
            for _ in range(n):
                yield t

    def dump(self, path: Path) -> None:
        data = _MAGIC + struct.pack("<q", len(self.lines)) + self.lines.tobytes() + self.stamps_ns.tobytes()
        tmp = Path(path).with_name(Path(path).name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "ObservedStamps":
        data = Path(path).read_bytes()
        if not data.startswith(_MAGIC):
            raise ValueError(f"{path}: not an observer's stamps file")
        (n,) = struct.unpack_from("<q", data, len(_MAGIC))
        start = len(_MAGIC) + 8
        lines, stamps = array("q"), array("q")
        lines.frombytes(data[start : start + 8 * n])
        stamps.frombytes(data[start + 8 * n : start + 16 * n])
        return cls(lines, stamps)


class Follower:
    """Reads ``path`` from where it stopped to its end; counts the lines each read completed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.fd: int | None = None
        self.lines = array("q")
        self.stamps = array("q")

    def _open(self) -> bool:
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return False
        return True

    def catch_up(self) -> None:
        if not self._open():
            return
        while True:
            chunk = os.read(self.fd, READ_CHUNK)
            if not chunk:
                return
            now = time.time_ns()  # after the read: every line it completed was in the file
            n = chunk.count(b"\n")
            if n:
                self.lines.append(n)
                self.stamps.append(now)

    def stamps_so_far(self) -> ObservedStamps:
        return ObservedStamps(self.lines, self.stamps)


def observe(path: Path, out: Path, stop_fd: int) -> ObservedStamps:
    """Follow ``path`` until ``stop_fd`` is readable; write and return the stamps."""
    libc = _libc()
    ino = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if ino < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    # The directory, not the file: the file may not exist yet (a peer creates it at its first line).
    wd = libc.inotify_add_watch(ino, os.fsencode(path.parent), IN_MODIFY | IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO)
    if wd < 0:
        raise OSError(ctypes.get_errno(), f"inotify_add_watch {path.parent}")
    follower = Follower(path)
    follower.catch_up()
    print(READY_LINE, flush=True)
    poller = select.poll()
    poller.register(ino, select.POLLIN)
    poller.register(stop_fd, select.POLLIN)
    try:
        while True:
            events = poller.poll(1000)  # bounded: a missed event costs at most a second
            if any(fd == stop_fd for fd, _ in events):
                break
            try:
                while os.read(ino, 65536):  # drain the events; which file changed matters little
                    pass
            except BlockingIOError:
                pass
            follower.catch_up()
        follower.catch_up()
    finally:
        os.close(ino)
    stamps = follower.stamps_so_far()
    stamps.dump(out)
    return stamps


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m benchmarks.run.observer FILE STAMPS_OUT  (stops on SIGTERM)", file=sys.stderr)
        return 2
    path, out = Path(args[0]).absolute(), Path(args[1])
    stop_r, stop_w = os.pipe()
    signal.signal(signal.SIGTERM, lambda *_: os.write(stop_w, b"x"))
    signal.signal(signal.SIGINT, lambda *_: os.write(stop_w, b"x"))
    stamps = observe(path, out, stop_r)
    print(f"observer: {stamps.total_lines} lines in {len(stamps.lines)} reads of {path}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
