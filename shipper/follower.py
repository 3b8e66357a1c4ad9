"""Follow the aggregator's output file from a checkpoint, across rotations, whole lines only.

``Follower(path, checkpoint)`` opens the file the checkpoint names:

* the file at ``path`` if it has the checkpoint's device, inode and first-line hash (resumed at
  the checkpoint's offset; at 0 if the file is now shorter: it was truncated in place);
* else a file in the same directory with that identity: the file was rotated (``mv``) while the
  shipper was down. It is finished first, then ``path`` is read from 0;
* else (the checkpoint's file is gone) ``path`` from 0, counted in ``checkpoint_file_missing``.

``read(max_lines, max_bytes)`` returns a ``Chunk`` of whole lines (a line still being written is
left for the next read) with the byte offset of each. Rotation (the aggregator's SIGUSR1 reopen
after ``mv``): when ``path`` names another inode, the old file is read to its end; the switch to the
new file happens in ``switch_if_rotated`` only when the caller says everything read is acknowledged
(so a checkpoint always names one file) and the old file has not grown for ``rotate_grace``
seconds (an aggregator with several workers reopens in each worker, at nearly the same moment).

The aggregator only appends whole lines; a file shorter than the read position was truncated, and
reading restarts at 0 (counted in ``truncations``).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import Checkpoint, FileId

READ_BYTES = 1 << 20


@dataclass
class Chunk:
    file: FileId
    lines: list[bytes]  # without their newline
    offsets: list[int]  # byte offset of each line in ``file``
    end: int  # offset just past the last line


def _head_hash(fd: int) -> str | None:
    """blake2b of the file's first line (48 bits, hex), or None while it has no whole line."""
    data = os.pread(fd, 65536 + 2, 0)
    nl = data.find(b"\n")
    if nl < 0:
        if len(data) <= 65536:
            return None
        first = data  # a first line longer than 64 KiB: its first 64 KiB name the file well enough
    else:
        first = data[:nl]
    return hashlib.blake2b(first, digest_size=6).hexdigest()


class _Open:
    """One open file: its fd, identity (once it has a first line) and read position."""

    def __init__(self, fd: int, st: os.stat_result, offset: int = 0) -> None:
        self.fd = fd
        self.dev, self.ino = st.st_dev, st.st_ino
        self.offset = offset
        self.id: FileId | None = None
        self.identify()

    def identify(self) -> FileId | None:
        if self.id is None:
            head = _head_hash(self.fd)
            if head is not None:
                self.id = FileId(self.dev, self.ino, head)
        return self.id

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        os.close(self.fd)


class Follower:
    def __init__(self, path: Path, checkpoint: Checkpoint | None, counters, rotate_grace: float = 1.0) -> None:
        self.path = Path(path)
        self.counters = counters
        self.rotate_grace = rotate_grace
        self.current: _Open | None = None
        self._rotation_seen_at: float | None = None
        self._old_size_at: tuple[int, float] | None = None
        self._resume(checkpoint)

    # -- opening --------------------------------------------------------------------------------
    def _open_path(self) -> _Open | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        return _Open(fd, os.fstat(fd))

    def _resume(self, cp: Checkpoint | None) -> None:
        if cp is None:
            self.current = self._open_path()
            return
        candidates = [self.path] + sorted(p for p in self.path.parent.iterdir() if p != self.path)
        for candidate in candidates:
            try:
                st = candidate.stat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) != (cp.file.dev, cp.file.ino) or not candidate.is_file():
                continue
            fd = os.open(candidate, os.O_RDONLY | os.O_CLOEXEC)
            opened = _Open(fd, os.fstat(fd))
            if opened.id is not None and opened.id.head == cp.file.head:
                if opened.size() < cp.offset:
                    self.counters.truncations += 1
                    opened.offset = 0
                else:
                    opened.offset = cp.offset
                self.current = opened  # when it is not ``path``, switch_if_rotated moves on after it
                return
            opened.close()  # same inode, another file (inode reused): not ours
        self.counters.checkpoint_file_missing += 1
        self.current = self._open_path()

    # -- reading --------------------------------------------------------------------------------
    @property
    def file(self) -> FileId | None:
        return self.current.identify() if self.current is not None else None

    def read(self, max_lines: int, max_bytes: int = READ_BYTES) -> Chunk | None:
        """Up to ``max_lines`` whole lines (at most ``max_bytes`` unless one line is longer)."""
        cur = self.current
        if cur is None:
            self.current = cur = self._open_path()
            if cur is None:
                return None
        if cur.identify() is None:
            return None
        size = cur.size()
        if size < cur.offset:  # truncated in place (copytruncate): start again at 0
            self.counters.truncations += 1
            cur.offset = 0
            cur.id = None
            if cur.identify() is None:
                return None
        if size == cur.offset:
            return None
        want = min(max_bytes, size - cur.offset)
        data = os.pread(cur.fd, want, cur.offset)
        last = data.rfind(b"\n")
        while last < 0 and len(data) < size - cur.offset:  # one line longer than max_bytes
            data = os.pread(cur.fd, min(len(data) * 2, size - cur.offset), cur.offset)
            last = data.rfind(b"\n")
        if last < 0:
            return None  # a line still being written
        # Split only as many lines as asked for (a 1 MiB read holds ~5,000 lines of 200 bytes; splitting
        # them all to keep 500 cost a fifth of the shipper's CPU).
        lines = data[:last].split(b"\n", max_lines)
        if len(lines) > max_lines:
            lines.pop()
        offsets = []
        pos = cur.offset
        append = offsets.append
        for line in lines:
            append(pos)
            pos += len(line) + 1
        chunk = Chunk(cur.id, lines, offsets, pos)
        cur.offset = pos
        self.counters.lines_read += len(lines)
        return chunk

    def rewind(self, file: FileId, offset: int) -> None:
        """Read again from ``offset`` (the last acknowledged position) of the current file."""
        assert self.current is not None and self.current.id == file, (file, self.current and self.current.id)
        self.current.offset = offset

    # -- rotation -------------------------------------------------------------------------------
    def rotated(self) -> bool:
        """``path`` now names another file (or none) than the one being read."""
        cur = self.current
        if cur is None:
            return False
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # moved, not replaced yet: keep reading the old file
        return (st.st_dev, st.st_ino) != (cur.dev, cur.ino)

    def switch_if_rotated(self, all_acked: bool) -> bool:
        """Move to the new file when the old one is read to its end, everything read from it is
        acknowledged (``all_acked``) and it has stopped growing for ``rotate_grace`` s."""
        cur = self.current
        if cur is None or not self.rotated():
            self._old_size_at = None
            return False
        now = time.monotonic()
        size = cur.size()
        if self._old_size_at is None or self._old_size_at[0] != size:
            self._old_size_at = (size, now)
        if not all_acked or cur.offset < size or now - self._old_size_at[1] < self.rotate_grace:
            return False
        new = self._open_path()
        if new is None:
            return False
        cur.close()
        self.current = new
        self._old_size_at = None
        self.counters.rotations_followed += 1
        return True

    def lag_bytes(self, acked_offset: int) -> int:
        """Bytes written but not yet acknowledged: the rest of the current file, plus the new file
        behind a rotation."""
        cur = self.current
        if cur is None:
            return 0
        lag = max(0, cur.size() - acked_offset)
        if self.rotated():
            try:
                lag += os.stat(self.path).st_size
            except FileNotFoundError:
                pass
        return lag

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None
