"""The sink: the output file and the rejects file.

* Output is written with ``os.write`` in large blocks (when ``FLUSH_BYTES`` are pending, or
  ``flush_interval`` after the oldest pending line, not per message or per wakeup) to a file opened ``O_APPEND | O_NOFOLLOW`` (a symlink planted at the path is refused,
  never followed).
* Lines are whole: a block holds whole lines only, and a short write (disk full) keeps the rest
  in the backlog, which is retried before anything newer, so the file never holds a torn line
  unless the process dies between a short write and its retry. That torn tail is repaired at the
  next start: moved to the rejects file with reason ``torn_line_at_start``.
* Write errors (ENOSPC, EIO, ...) are reported on stderr (once per error streak), counted, and
  retried every ``RETRY_INTERVAL_S``; the backlog is bounded by the event loop, which stops reading while it is full, so
  stream producers are blocked by the kernel instead of the aggregator growing without bound.
* ``--fsync``: ``never`` (only at clean exit), ``interval`` (every ``fsync_interval`` s while
  data was written), ``always`` (after every write).
"""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path

import orjson

from .framing import TORN_LINE_AT_START, Reject

FSYNC_MODES = ("never", "interval", "always")
FLUSH_BYTES = 256 * 1024  # write as soon as this much is pending
DEFAULT_FLUSH_INTERVAL_S = 0.01  # ... or when the oldest pending line is this old
RETRY_INTERVAL_S = 0.5  # after a write error (disk full, ...): how often to try again


def rejects_path_for(output: Path) -> Path:
    """``aggregated_logs.jsonl`` -> ``aggregated_logs.rejects.jsonl`` (beside the output)."""
    name = output.name
    stem = name[: -len(".jsonl")] if name.endswith(".jsonl") else name
    return output.with_name(stem + ".rejects.jsonl")


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)


class OutputSink:
    def __init__(
        self,
        output: Path,
        *,
        fsync: str = "never",
        fsync_interval: float = 1.0,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL_S,
        transport: str = "",
    ) -> None:
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {FSYNC_MODES}")
        self.output = output
        self.rejects_path = rejects_path_for(output)
        self.fsync_mode = fsync
        self.fsync_interval = fsync_interval
        self.flush_interval = flush_interval
        self._pending_since: float | None = None  # when the oldest unwritten line was queued
        self._retry_at = 0.0  # after a write error: when to try again
        self.transport = transport
        self._backlog: list[bytes] = []  # whole-line blocks not yet written, oldest first
        self.backlog_bytes = 0
        self._dirty = False
        self._last_fsync = time.monotonic()
        self._error: str | None = None  # the current error streak, reported once
        self.write_calls = 0
        self.write_errors = 0
        self.bytes_written = 0
        self.fsync_calls = 0
        self.reopens = 0
        self.torn_at_start: list[Reject] = []
        self._torn_bytes = 0  # bytes of an unfinished line at the file's end after a short write
        self._repair_torn_tail()
        self._fd = _open_append(output)
        self._rejects_fd = _open_append(self.rejects_path)

    # -- start-up -----------------------------------------------------------------------------
    def _repair_torn_tail(self) -> None:
        """A crash can leave a last line without its newline: move it to rejects, truncate."""
        try:
            fd = os.open(self.output, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return
            # Scan backwards for the last newline, in blocks, without reading the whole file.
            pos = size
            tail = b""
            while pos > 0:
                step = min(65536, pos)
                pos -= step
                block = os.pread(fd, step, pos)
                nl = block.rfind(b"\n")
                if nl != -1:
                    tail = block[nl + 1 :] + tail
                    pos += nl + 1
                    break
                tail = block + tail
            if tail:
                self.torn_at_start.append(Reject.of(TORN_LINE_AT_START, tail))
                os.ftruncate(fd, pos)
        finally:
            os.close(fd)

    # -- writing ------------------------------------------------------------------------------
    def add(self, chunks: list[bytes]) -> None:
        """Queue whole lines; they are written once FLUSH_BYTES are pending or the flush
        interval has passed since the oldest (see ``flush_due``)."""
        block = b"".join(chunks)
        self._backlog.append(block)
        self.backlog_bytes += len(block)
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        if (self.backlog_bytes >= FLUSH_BYTES or self.flush_interval <= 0) and self._error is None:
            self.flush()  # while failing, retries wait for RETRY_INTERVAL_S (flush_due), not every add

    def write(self, chunks: list[bytes]) -> None:
        """Queue whole lines and write at once."""
        self.add(chunks)
        self.flush()

    @property
    def flush_due(self) -> float | None:
        """When the pending output must be written (monotonic), or None if nothing is pending."""
        if self._pending_since is None:
            return None
        due = self._pending_since + self.flush_interval
        return due if self._error is None else max(due, self._retry_at)

    def flush_if_due(self, now: float) -> None:
        due = self.flush_due
        if due is not None and now >= due:
            self.flush()

    def flush(self) -> bool:
        """Write the backlog in one block. True when it is empty afterwards."""
        if not self._backlog:
            return True
        data = self._backlog[0] if len(self._backlog) == 1 else b"".join(self._backlog)
        while data:
            try:
                n = os.write(self._fd, data)
            except OSError as exc:
                self._backlog = [data]
                self._retry_at = time.monotonic() + RETRY_INTERVAL_S
                self._report_error(exc)
                return False
            self.write_calls += 1
            self.bytes_written += n
            self.backlog_bytes -= n
            self._dirty = True
            if n < len(data):  # short write (disk nearly full): the rest goes first, next time
                nl = data.rfind(b"\n", 0, n)
                self._torn_bytes = n - nl - 1 if nl != -1 else self._torn_bytes + n
            else:
                self._torn_bytes = 0
            data = data[n:]
        self._backlog = []
        self._pending_since = None
        if self._error is not None:
            print(f"aggregator: output writable again ({self.output})", file=sys.stderr, flush=True)
            self._error = None
        if self.fsync_mode == "always" and self._dirty:
            self.sync()
        elif self.fsync_mode == "interval" and self._dirty:
            if time.monotonic() - self._last_fsync >= self.fsync_interval:
                self.sync()
        return True

    def _report_error(self, exc: OSError) -> None:
        self.write_errors += 1
        what = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        if self._error != what:
            self._error = what
            print(
                f"aggregator: cannot write {self.output}: {exc.strerror} ({what}); "
                f"keeping {self.backlog_bytes} bytes and retrying",
                file=sys.stderr,
                flush=True,
            )

    @property
    def failing(self) -> bool:
        return self._error is not None

    def sync(self) -> None:
        try:
            os.fsync(self._fd)
            os.fsync(self._rejects_fd)
        except OSError as exc:
            self._report_error(exc)
            return
        self.fsync_calls += 1
        self._dirty = False
        self._last_fsync = time.monotonic()

    def write_rejects(self, rejects: list[Reject], received_ns: int, source: str) -> None:
        """Rejects are rare: one JSON line each, written at once (small, bounded records)."""
        if not rejects:
            return
        lines = []
        for r in rejects:
            lines.append(
                orjson.dumps(
                    {
                        "reason": r.reason,
                        "received_ns": received_ns,
                        "transport": self.transport,
                        "source": source,
                        "length": r.length,
                        "truncated": r.length > len(r.data),
                        # Kept as text so the file stays JSON; undecodable bytes as \\xNN.
                        "data": r.data.decode("utf-8", "backslashreplace"),
                    },
                    option=orjson.OPT_APPEND_NEWLINE,
                )
            )
        data = b"".join(lines)
        try:
            while data:
                n = os.write(self._rejects_fd, data)
                data = data[n:]
        except OSError as exc:
            self._report_error(exc)

    # -- lifecycle ----------------------------------------------------------------------------
    def reopen(self) -> None:
        """SIGUSR1: an external rotator moved the file away; start a new one at the path."""
        self.flush()
        old, old_rejects = self._fd, self._rejects_fd
        try:
            new = _open_append(self.output)
            try:
                new_rejects = _open_append(self.rejects_path)
            except OSError:
                os.close(new)
                raise
        except OSError as exc:
            # E.g. a symlink planted at the path (never followed): keep writing to the open files.
            print(
                f"aggregator: cannot reopen {self.output}: {exc.strerror}"
                + (" (a symlink? it is never followed)" if exc.errno == errno.ELOOP else "")
                + "; still writing to the files already open",
                file=sys.stderr,
                flush=True,
            )
            return
        self._fd, self._rejects_fd = new, new_rejects
        for fd in (old, old_rejects):
            try:
                os.fsync(fd)
            except OSError:
                pass
            os.close(fd)
        self.reopens += 1

    def release(self) -> None:
        """Close this process's descriptors without writing: ``--workers``' supervisor, whose
        workers (forked with the same open files) do all the writing."""
        if self._backlog:
            raise RuntimeError("release() with output pending: it would be lost")
        os.close(self._fd)
        os.close(self._rejects_fd)

    def close(self, deadline: float | None = None) -> bool:
        """Flush (retrying until ``deadline``), fsync, close. True if nothing was left unwritten."""
        while not self.flush():
            if deadline is None or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        ok = not self._backlog
        if self._torn_bytes:
            # A short write left a line's head in the file and its rest could not follow: cut
            # the head off so the file holds whole lines only (the loss is reported by the caller).
            try:
                os.ftruncate(self._fd, os.fstat(self._fd).st_size - self._torn_bytes)
                self._torn_bytes = 0
            except OSError as exc:
                self._report_error(exc)
        self.sync()
        os.close(self._fd)
        os.close(self._rejects_fd)
        return ok
