"""The sink: the output file and the rejects file, each written by one aggregator, whole lines only.

Ownership (``open_log_file``)
    A path is refused unless it is a regular file owned by this user with a single link (a
    symlink, FIFO, device, another user's file or a hard link planted at the path is never opened
    for writing; a FIFO would hang the start-up or hand every line to whoever reads it). Each file
    is then locked with ``flock(LOCK_EX)`` for as long as the process (or its ``--workers``) writes
    it: a second aggregator pointed at the same output or rejects file is refused, naming the
    first one's pid, before it has touched a byte.

Whole lines (``LineFile``)
    Lines are queued and written in large blocks of whole lines. A short write (disk full) is
    cut back at once with ``ftruncate`` to the last whole line it wrote, and the rest stays queued
    and goes first next time: when ``write`` has returned, the file holds whole lines only, so a
    rotation (``mv`` + SIGUSR1) or a stop can never leave half a line behind. A line can be torn
    only by a process that dies inside ``write(2)`` (SIGKILL, a machine crash); such a tail is
    repaired where it is provably no one else's:

    * at start, under the exclusive lock: the last line, if it has no newline, is moved whole to
      the rejects file (``torn_line_at_start``; fsynced there before the output is truncated) and
      every byte moved is logged. A tail longer than any line loglab writes is not a torn line of
      ours: the aggregator refuses to start rather than destroy it.
    * under ``--workers``, every write happens under a POSIX record lock shared by the workers,
      after checking the file ends in a newline; a tail left by a worker that died mid-write is
      moved to the rejects file (``torn_line_dead_worker``) before anyone appends.

Errors
    A write error (ENOSPC, EIO, ...) is reported once per error streak, naming the file, counted,
    and retried every ``RETRY_INTERVAL_S``; what could not be written is kept. The output backlog
    is bounded by the event loop, which stops reading when it is full.

Rejects (``RejectsWriter``)
    One JSON record per reject, written as they come (they are rare), whole, retried like the
    output. Their growth is bounded, as journald bounds a noisy service: at most ``burst``
    records per ``interval`` seconds, at most ``max_bytes`` in the file (until it is rotated) and
    at most ``MAX_REJECTS_BACKLOG`` bytes held while the disk is full. What is not written is
    counted per reason and summarised in one ``{"reason": "suppressed", ...}`` record when its
    window ends; the counters count every reject either way.

``--fsync``: ``never`` (only at a clean exit), ``interval`` (every ``fsync_interval`` s while data
was written), ``always`` (after every write).
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import orjson

from .files import Directory, UnsafePath, check_owned_regular_file
from .framing import TORN_LINE_AT_START, TORN_LINE_DEAD_WORKER, Reject
from .settings import FSYNC_MODES, MAX_LINE_BYTES_LIMIT, Settings

FLUSH_BYTES = 256 * 1024  # write as soon as this much is pending (or after --flush-interval)
RETRY_INTERVAL_S = 0.5  # after a write error (disk full, ...): how often to try again
LOCK_RETRY_S = 0.001  # --workers: another worker holds the write lock; try again this soon

# The longest line loglab can write: --max-line-bytes at its maximum plus the added fields. A
# tail without a newline longer than this is not a torn line of ours (see the module doc).
MAX_OUTPUT_LINE_BYTES = MAX_LINE_BYTES_LIMIT + 64 * 1024
# A rejects record holds its data as escaped text: up to 4 bytes per byte (``\xNN``).
MAX_REJECTS_LINE_BYTES = 4 * MAX_OUTPUT_LINE_BYTES + 64 * 1024
MAX_REJECTS_BACKLOG = 1024 * 1024  # rejects held while their file cannot be written


class SinkError(UnsafePath):
    """An output or rejects path the aggregator must not (or cannot) write: printed, not traced."""


def rejects_path_for(output: Path) -> Path:
    """``aggregated_logs.jsonl`` -> ``aggregated_logs.rejects.jsonl`` (beside the output)."""
    name = output.name
    stem = name[: -len(".jsonl")] if name.endswith(".jsonl") else name
    return output.with_name(stem + ".rejects.jsonl")


# -- ownership ------------------------------------------------------------------------------------


def lock_holder(fd: int) -> int | None:
    """The pid holding an flock on ``fd``'s file, from /proc/locks (None if it cannot be told)."""
    st = os.fstat(fd)
    suffix = f":{st.st_ino}"
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:"
    try:
        with open("/proc/locks") as f:
            for line in f:
                # "1: FLOCK  ADVISORY  WRITE 1234 fe:01:5678 0 EOF"; waiters are marked "->"
                parts = line.split()
                if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5].startswith(device) and parts[5].endswith(suffix):
                    return int(parts[4])
    except (OSError, ValueError):
        pass
    return None


def open_log_file(directory: Directory, name: str) -> int:
    """Open ``name`` in ``directory`` for appending (created 0644 if missing), refuse what we must
    not write, and take the exclusive lock that says this process writes it. Raises SinkError."""
    path = directory.path / name
    try:
        check_owned_regular_file(directory.lstat(name), path)  # before open(): opening a FIFO or device has effects
    except FileNotFoundError:
        pass
    except UnsafePath as exc:
        raise SinkError(str(exc)) from None
    except OSError as exc:
        raise SinkError(f"cannot open {path}: {exc.strerror}") from None
    try:
        # O_NONBLOCK: should a FIFO be swapped in after the check, open() fails or returns at
        # once instead of hanging; O_RDWR: the torn-tail checks read the file's last bytes.
        fd = directory.open(name, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SinkError(f"{path} is a symlink; it is never followed") from None
        if exc.errno == errno.ENXIO:
            raise SinkError(f"{path} is not a regular file (it is a FIFO); refusing to write to it") from None
        raise SinkError(f"cannot open {path}: {exc.strerror}") from None
    try:
        try:
            check_owned_regular_file(os.fstat(fd), path)
        except UnsafePath as exc:
            raise SinkError(str(exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = lock_holder(fd)
            who = f" (pid {holder})" if holder is not None else ""
            raise SinkError(
                f"{path} is being written by another aggregator{who}; refusing to write it too "
                "(choose another --output, or stop the other one)"
            ) from None
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _same_file(directory: Directory, name: str, fd: int) -> bool:
    """Is ``name`` in ``directory`` (not following a symlink) the file open as ``fd``?"""
    try:
        a, b = directory.lstat(name), os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


_FALLOC_FL_KEEP_SIZE = 1


def reserve(fd: int, offset: int, length: int) -> None:
    """Allocate ``length`` bytes at ``offset`` without changing the file's size (fallocate with
    FALLOC_FL_KEEP_SIZE), so a write there cannot fail for want of space. Raises OSError
    (ENOSPC); where the file system cannot reserve, checks the free space instead."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    if libc.fallocate(fd, _FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return
    err = ctypes.get_errno()
    if err not in (errno.EOPNOTSUPP, errno.ENOSYS):
        raise OSError(err, os.strerror(err))
    st = os.fstatvfs(fd)
    if st.f_bavail * st.f_frsize < length + (1 << 20):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _say(message: str) -> None:
    print(f"aggregator: {message}", file=sys.stderr, flush=True)


# -- one file of whole lines ----------------------------------------------------------------------


class LineFile:
    """An append-only file that holds whole lines only: a queue of whole-line blocks and the
    writes, short-write cut-backs, error reporting and retries of one file."""

    def __init__(self, path: Path, fd: int, *, what: str, max_line_bytes: int) -> None:
        self.path = path
        self.fd = fd
        self.what = what  # "output" or "rejects", for messages
        self.max_line_bytes = max_line_bytes  # bound of a torn tail we may have written
        self.shared = False  # --workers: writes under a lock shared by the workers (see module doc)
        self._backlog: list[bytes] = []
        self.backlog_bytes = 0
        self.retry_at = 0.0
        self.error: str | None = None  # the current error streak, reported once
        self.write_calls = 0
        self.write_errors = 0
        self.bytes_written = 0
        self.dirty = False
        self.on_dead_writer_tail = None  # (tail bytes) -> None: where a dead worker's half line goes
        self._cut_pending = 0  # a short write's torn head that ftruncate could not cut yet
        self.lock_busy = False  # --workers: another worker held the write lock at the last try

    @property
    def waiting(self) -> bool:
        """Writes are held back until ``retry_at``: an error streak, or another worker's lock."""
        return self.error is not None or self.lock_busy

    @property
    def pending(self) -> bool:
        return bool(self._backlog)

    def add(self, block: bytes) -> None:
        self._backlog.append(block)
        self.backlog_bytes += len(block)

    def write_pending(self) -> bool:
        """Write the backlog in one block. True when it is empty afterwards."""
        if not self._backlog and not self._cut_pending:
            return True
        if self.shared:
            # Never wait on the lock: a worker stopped (SIGSTOP) while it holds it would stall
            # every other one, signals and all. Busy: keep the lines, try again very soon.
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (BlockingIOError, PermissionError):
                self.lock_busy = True
                self.retry_at = time.monotonic() + LOCK_RETRY_S
                return False
            self.lock_busy = False
            try:
                return self._repair_dead_writer_tail() and self._write_backlog()
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN)
        return self._write_backlog()

    def unwritten_lines(self) -> int:
        """Lines still held (an exit on a full disk): they were never written."""
        return sum(block.count(b"\n") for block in self._backlog)

    def held(self) -> bytes:
        return b"".join(self._backlog)

    def _write_backlog(self) -> bool:
        if self._cut_pending and not self._cut_torn_head(self._cut_pending):
            return False
        if not self._backlog:
            return True
        data = self._backlog[0] if len(self._backlog) == 1 else b"".join(self._backlog)
        while data:
            try:
                n = os.write(self.fd, data)
            except OSError as exc:
                self._keep(data, exc)
                return False
            self.write_calls += 1
            self.dirty = True
            if n < len(data):
                # Short write (disk nearly full): cut the head of an unfinished line off again at
                # once; the whole line goes first next time. Then stop as on ENOSPC: writing the
                # same bytes again now would only be cut again.
                whole = data.rfind(b"\n", 0, n) + 1
                self.bytes_written += whole
                self.backlog_bytes -= whole
                data = data[whole:]
                if n > whole:
                    self._cut_torn_head(n - whole)
                self._keep(data, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
                return False
            self.bytes_written += n
            self.backlog_bytes -= n
            data = b""
        self._backlog = []
        if self.error is not None:
            _say(f"{self.what} writable again ({self.path})")
            self.error = None
        return True

    def _cut_torn_head(self, nbytes: int) -> bool:
        try:
            os.ftruncate(self.fd, os.fstat(self.fd).st_size - nbytes)
        except OSError as exc:
            self._cut_pending = nbytes  # tried again before the next write
            self._report(exc)
            return False
        self._cut_pending = 0
        return True

    def _keep(self, data: bytes, exc: OSError | None) -> None:
        self._backlog = [data] if data else []
        self.retry_at = time.monotonic() + RETRY_INTERVAL_S
        if exc is not None:
            self._report(exc)

    def _report(self, exc: OSError) -> None:
        self.write_errors += 1
        what = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        if self.error != what:
            self.error = what
            _say(
                f"cannot write {self.path}: {exc.strerror} ({what}); keeping {self.backlog_bytes} bytes, "
                f"retrying every {RETRY_INTERVAL_S:g} s"
            )

    # -- torn tails -------------------------------------------------------------------------------
    def torn_tail(self) -> tuple[int, bytes] | None:
        """(offset, bytes) of a last line without its newline, or None. Raises SinkError when the
        tail is longer than any line loglab writes (so not ours to touch)."""
        size = os.fstat(self.fd).st_size
        if size == 0 or os.pread(self.fd, 1, size - 1) == b"\n":
            return None
        chunks = []
        pos = size
        while pos > 0:
            step = min(1 << 16, pos)
            pos -= step
            block = os.pread(self.fd, step, pos)
            nl = block.rfind(b"\n")
            if nl != -1:
                chunks.append(block[nl + 1 :])
                pos += nl + 1
                break
            chunks.append(block)
            if size - pos > self.max_line_bytes:
                raise SinkError(
                    f"{self.path} ends with more than {self.max_line_bytes} bytes without a newline: not a line "
                    f"loglab wrote (a foreign file?); refusing to modify it (move it away or choose another "
                    f"--output)"
                )
        chunks.reverse()
        return pos, b"".join(chunks)

    def truncate_tail(self, offset: int, tail: bytes, why: str) -> None:
        os.ftruncate(self.fd, offset)
        os.fsync(self.fd)
        _say(f"{self.path}: moved {len(tail)} bytes (offset {offset}, no newline: {why}) to the rejects file")

    def _repair_dead_writer_tail(self) -> bool:
        """Under the workers' lock: move a dead worker's half line away before appending. False
        when it cannot be moved yet (the rejects file cannot be written): nothing is appended
        after it meanwhile, and the output waits as on any write error."""
        try:
            found = self.torn_tail()
        except SinkError as exc:
            # Longer than any line of ours: someone appended without the lock. Not ours to cut;
            # said once, and writing goes on after it.
            _say(str(exc))
            return True
        except OSError as exc:
            self._keep(b"".join(self._backlog), exc)
            return False
        if found is None or self.on_dead_writer_tail is None:
            return True
        offset, tail = found
        try:
            self.on_dead_writer_tail(tail)
            self.truncate_tail(offset, tail, "left by a worker that died in write(2)")
        except SinkError as exc:
            if self.error != "torn tail":
                self.error = "torn tail"  # an error streak like any other: reported once, retried
                _say(f"{exc}; nothing is appended to {self.path} until it can be, retrying every {RETRY_INTERVAL_S:g} s")
            self.retry_at = time.monotonic() + RETRY_INTERVAL_S
            return False
        except OSError as exc:
            self._keep(b"".join(self._backlog), exc)
            return False
        return True

    # -- lifecycle --------------------------------------------------------------------------------
    def switch_to(self, fd: int) -> None:
        """Write to ``fd`` from now on (after a rotation); the old file is synced and closed."""
        if fd == self.fd:
            return
        old, self.fd = self.fd, fd
        try:
            os.fsync(old)
        except OSError:
            pass
        os.close(old)
        self._cut_pending = 0  # a torn head, if any, stays in the old file: it cannot be cut now

    def sync(self) -> bool:
        try:
            os.fsync(self.fd)
        except OSError as exc:
            self._report(exc)
            return False
        self.dirty = False
        return True

    def close(self) -> None:
        os.close(self.fd)


# -- rejects ---------------------------------------------------------------------------------------


class RejectsWriter:
    """The rejects file: records written whole as they come, their growth bounded (module doc)."""

    def __init__(self, file: LineFile, transport: str, *, burst: int, interval: float, max_bytes: int) -> None:
        self.file = file
        self.transport = transport
        self.burst = burst
        self.interval = interval
        self.max_bytes = max_bytes
        self.suppressed_total = 0
        self._window_end = 0.0
        self._window_count = 0
        self._suppressed: dict[str, int] = {}  # this window's, by reason
        self._whys: list[str] = []  # this window's bounds that suppressed, in order
        self._first_ns = self._last_ns = 0
        self._full_reported = False

    def record(self, r: Reject, received_ns: int, source: str) -> bytes:
        return orjson.dumps(
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

    def add(self, rejects: list[Reject], received_ns: int, source: str, *, always: bool = False) -> None:
        """Queue the records of ``rejects`` (or count them, past a bound) and try to write.
        ``always``: records that must not be summarised (a torn tail's bytes, kept whole)."""
        now = time.monotonic()
        if now >= self._window_end:
            self._close_window(received_ns)
            self._window_end = now + self.interval
            self._window_count = 0
        lines = []
        size = self._file_size() if not always else 0
        held = self.file.backlog_bytes
        for r in rejects:
            line = self.record(r, received_ns, source)
            if not always:
                # Every bound, record by record (not once per batch: one read can hold
                # thousands of rejects, which would overshoot the bounds by as many).
                if held + len(line) > MAX_REJECTS_BACKLOG and lines:
                    # Write what this batch has so far (if the file takes it, there is room again).
                    self.file.add(b"".join(lines))
                    lines = []
                    if not self.file.waiting or now >= self.file.retry_at:
                        self.file.write_pending()
                    held = self.file.backlog_bytes
                why = self._over_a_bound(size + len(line), held + len(line))
                if why is not None:
                    self._suppress(r.reason, why, received_ns)
                    continue
                self._window_count += 1
            size += len(line)
            held += len(line)
            lines.append(line)
        if lines:
            self.file.add(b"".join(lines))
        if not self.file.waiting or now >= self.file.retry_at:
            self.file.write_pending()

    def _file_size(self) -> int:
        try:
            return os.fstat(self.file.fd).st_size + self.file.backlog_bytes
        except OSError:
            return self.file.backlog_bytes

    def _over_a_bound(self, size: int, held: int) -> str | None:
        """Which bound a record would break: the file's size (with it), the bytes held while the
        file cannot be written (with it), or this window's count."""
        if size > self.max_bytes:
            return "rejects_file_full"
        if held > MAX_REJECTS_BACKLOG:
            return "rejects_file_failing"
        if self._window_count >= self.burst:
            return "rate_limit"
        return None

    @property
    def window_due(self) -> float | None:
        """When this window's summary is due (monotonic), if it suppressed anything."""
        return self._window_end if self._suppressed else None

    def _suppress(self, reason: str, why: str, received_ns: int) -> None:
        self.suppressed_total += 1
        self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
        if not self._first_ns:
            self._first_ns = received_ns
        self._last_ns = received_ns
        if why not in self._whys:
            self._whys.append(why)

    def _close_window(self, now_ns: int | None = None) -> None:
        """Summarise what this window suppressed in one record (one only once the file is full)."""
        if not self._suppressed:
            return
        full = "rejects_file_full" in self._whys
        if not (full and self._full_reported):
            self._full_reported = full
            summary = {
                "reason": "suppressed",
                "count": sum(self._suppressed.values()),
                "by_reason": dict(sorted(self._suppressed.items())),
                "why": ",".join(self._whys),
                "first_ns": self._first_ns,
                "last_ns": self._last_ns,
                "transport": self.transport,
                "received_ns": now_ns or time.time_ns(),
            }
            notes = {
                "rejects_file_full": f"the rejects file reached {self.max_bytes} bytes: later rejects are only counted until it is rotated",
                "rate_limit": f"more than {self.burst} rejects in {self.interval:g} s: the rest of that window is only counted",
                "rejects_file_failing": "the rejects file could not be written and its backlog was full: counted only",
            }
            summary["note"] = "; ".join(notes[w] for w in self._whys)
            self.file.add(orjson.dumps(summary, option=orjson.OPT_APPEND_NEWLINE))
        self._suppressed = {}
        self._whys = []
        self._first_ns = self._last_ns = 0

    def tick(self, now: float) -> None:
        """Housekeeping: end a window whose time is up, so its summary is not held back."""
        if self._suppressed and now >= self._window_end:
            self._close_window()
            self._window_end = now + self.interval
            self._window_count = 0
        if self.file.pending and now >= self.file.retry_at:
            self.file.write_pending()

    def finish(self) -> None:
        self._close_window()

    def account_unwritten(self) -> int:
        """At exit, what could not be written (a full disk): count the held rejects records as
        suppressed (by reason, from the records themselves), so that records written plus
        suppressed is every reject; returns how many."""
        lost = 0
        for line in self.file.held().split(b"\n"):
            if not line:
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if record.get("reason") == "suppressed":
                continue  # a summary: its count is in suppressed_total already
            lost += 1
        self.suppressed_total += lost
        return lost

    def reopened(self) -> None:
        self._full_reported = False


# -- the sink ---------------------------------------------------------------------------------------


class OutputSink:
    """The output and rejects files of one aggregator (see the module doc)."""

    def __init__(self, output: Path, settings: Settings | None = None, **overrides) -> None:
        """``settings`` (default: the defaults, for ``transport=""``) with ``overrides`` by name."""
        settings = replace(settings or Settings(transport=""), output=output, **overrides)
        fsync, fsync_interval, flush_interval = settings.fsync, settings.fsync_interval, settings.flush_interval
        transport = settings.transport
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {FSYNC_MODES}")
        self.output = output
        self.rejects_path = rejects_path_for(output)
        self.fsync_mode = fsync
        self.fsync_interval = fsync_interval
        self.flush_interval = flush_interval
        self.transport = transport
        self._pending_since: float | None = None  # when the oldest unwritten line was queued
        self._last_fsync = time.monotonic()
        self.fsync_calls = 0
        self.reopens = 0
        self.torn_at_start: list[Reject] = []  # moved to the rejects file at start: count them
        self.torn_dead_worker: list[Reject] = []  # moved while running (--workers): count them
        # The directory is opened once: later reopens resolve names in it, never the path again.
        try:
            self.dir = Directory(output.parent)
        except UnsafePath as exc:
            raise SinkError(str(exc)) from None
        try:
            fd = open_log_file(self.dir, output.name)
            try:
                rejects_fd = open_log_file(self.dir, self.rejects_path.name)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            self.dir.close()
            raise
        self.out = LineFile(output, fd, what="output", max_line_bytes=MAX_OUTPUT_LINE_BYTES)
        self.rejects = RejectsWriter(
            LineFile(self.rejects_path, rejects_fd, what="rejects", max_line_bytes=MAX_REJECTS_LINE_BYTES),
            transport, burst=settings.rejects_burst, interval=settings.rejects_interval, max_bytes=settings.max_rejects_bytes,
        )
        self.unwritten_lines = 0  # at close: output lines that could not be written (a full disk)
        try:
            self._repair_at_start()
        except BaseException:
            self.out.close()
            self.rejects.file.close()
            self.dir.close()
            raise

    # -- start-up ---------------------------------------------------------------------------------
    def _repair_at_start(self) -> None:
        """Under the exclusive locks, a tail without a newline is a crash's torn line: the rejects
        file's own is rewritten as a record; the output's is moved whole to the rejects file
        (fsynced there first, so a crash in between duplicates it rather than losing it)."""
        rejects_file = self.rejects.file
        found = rejects_file.torn_tail()
        if found is not None:
            # Its own torn record is rewritten in place as a record: the space for it is reserved
            # first, so the cut cannot be followed by a failed write (a full disk refuses the
            # start instead, with nothing changed).
            offset, tail = found
            reject = Reject(TORN_LINE_AT_START, tail, len(tail))
            record = self.rejects.record(reject, time.time_ns(), str(self.rejects_path))
            try:
                reserve(rejects_file.fd, offset, len(record))
            except OSError as exc:
                raise SinkError(
                    f"{self.rejects_path} ends in a torn record ({len(tail)} bytes) and there is no room to rewrite it "
                    f"as a record ({exc.strerror}); refusing to start, nothing changed"
                ) from None
            rejects_file.truncate_tail(offset, tail, "a rejects record torn by a crash")
            rejects_file.add(record)
            if not rejects_file.write_pending() or not rejects_file.sync():
                raise SinkError(f"cannot rewrite the torn record of {self.rejects_path}")
            self.torn_at_start.append(reject)
        found = self.out.torn_tail()
        if found is not None:
            offset, tail = found
            self._move_torn(tail, TORN_LINE_AT_START, self.output)
            self.out.truncate_tail(offset, tail, "a line torn by a crash")

    def _move_torn(self, tail: bytes, reason: str, source: Path) -> None:
        reject = Reject(reason, tail, len(tail))  # whole: a torn line is kept, never cut to a prefix
        self.rejects.add([reject], time.time_ns(), str(source), always=True)
        if not self.rejects.file.write_pending() or not self.rejects.file.sync():
            raise SinkError(f"cannot move a torn line of {source} to {self.rejects_path}; refusing to truncate it")
        (self.torn_at_start if reason == TORN_LINE_AT_START else self.torn_dead_worker).append(reject)

    def share_between_processes(self) -> None:
        """--workers: from now on every write checks for, and repairs, a dead worker's torn tail
        under a lock the workers share (module doc)."""
        for f in (self.out, self.rejects.file):
            f.shared = True
        self.out.on_dead_writer_tail = lambda tail: self._move_torn(tail, TORN_LINE_DEAD_WORKER, self.output)
        self.rejects.file.on_dead_writer_tail = lambda tail: self._torn_rejects_record(tail)

    def _torn_rejects_record(self, tail: bytes) -> None:
        # A half record of the rejects file itself: rewritten as a record after the cut (the cut
        # happens first, in LineFile, then this record is appended by the next write).
        reject = Reject(TORN_LINE_DEAD_WORKER, tail, len(tail))
        self.rejects.file.add(self.rejects.record(reject, time.time_ns(), str(self.rejects_path)))
        self.torn_dead_worker.append(reject)

    # -- output -----------------------------------------------------------------------------------
    @property
    def backlog_bytes(self) -> int:
        return self.out.backlog_bytes

    def add(self, chunks: list[bytes]) -> None:
        """Queue whole lines; they are written once FLUSH_BYTES are pending or the flush interval
        has passed since the oldest (see ``flush_due``)."""
        self.out.add(b"".join(chunks))
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        if (self.out.backlog_bytes >= FLUSH_BYTES or self.flush_interval <= 0) and not self.out.waiting:
            self.flush()  # while failing, retries wait for RETRY_INTERVAL_S (flush_due), not every add

    @property
    def writable_backlog(self) -> bool:
        """Lines are pending and the output is not waiting out a failed write (a full disk)."""
        return self._pending_since is not None and not self.out.waiting

    def write(self, chunks: list[bytes]) -> None:
        """Queue whole lines and write at once."""
        self.add(chunks)
        self.flush()

    @property
    def flush_due(self) -> float | None:
        """When the pending output must be written (monotonic), or None if nothing is pending;
        also when held rejects are retried, and when a rejects window's summary is due."""
        due = None
        if self._pending_since is not None:
            due = self._pending_since + self.flush_interval
            if self.out.waiting:
                due = max(due, self.out.retry_at)
        for other in (self.rejects.file.retry_at if self.rejects.file.pending else None, self.rejects.window_due):
            if other is not None:
                due = other if due is None else min(due, other)
        return due

    def flush_if_due(self, now: float) -> None:
        self.rejects.tick(now)
        due = self.flush_due
        if due is not None and now >= due:
            self.flush()

    def flush(self) -> bool:
        """Write the output backlog (and rejects held back). True when the output's is empty."""
        rejects = self.rejects.file
        if rejects.pending and (not rejects.waiting or time.monotonic() >= rejects.retry_at):
            rejects.write_pending()
        if not self.out.pending:
            return True
        if not self.out.write_pending():
            return False
        self._pending_since = None
        if self.out.dirty and (
            self.fsync_mode == "always"
            or (self.fsync_mode == "interval" and time.monotonic() - self._last_fsync >= self.fsync_interval)
        ):
            self.sync()
        return True

    @property
    def failing(self) -> bool:
        return self.out.error is not None

    def sync(self) -> None:
        if self.out.sync() and self.rejects.file.sync():
            self.fsync_calls += 1
            self._last_fsync = time.monotonic()

    def write_rejects(self, rejects: list[Reject], received_ns: int, source: str) -> None:
        if rejects:
            self.rejects.add(rejects, received_ns, source)

    # -- lifecycle --------------------------------------------------------------------------------
    def reopen(self) -> None:
        """SIGUSR1: an external rotator moved the files away; start new ones at the names in the
        directory opened at start, with the same checks and locks (a file still at its name, not
        rotated, is kept). On failure keep writing to the files already open."""
        opened: list[int] = []
        try:
            fds = []
            for f in (self.out, self.rejects.file):
                if _same_file(self.dir, f.path.name, f.fd):
                    fds.append(f.fd)
                else:
                    opened.append(open_log_file(self.dir, f.path.name))
                    fds.append(opened[-1])
        except SinkError as exc:
            for fd in opened:
                os.close(fd)
            _say(f"cannot reopen the output: {exc}; still writing to the files already open")
            return
        self.switch_to(*fds)

    def switch_to(self, fd: int, rejects_fd: int) -> None:
        """Write to these (already checked and locked) files from now on: what is queued is
        written to the old files first if it can be, else to the new ones, whole either way."""
        self.flush()
        self.rejects.finish()
        self.rejects.file.write_pending()
        self.out.switch_to(fd)
        self.rejects.file.switch_to(rejects_fd)
        self.rejects.reopened()
        self.reopens += 1

    def release(self) -> None:
        """Close this process's descriptors without writing (a --workers supervisor's copy)."""
        if self.out.pending:
            raise RuntimeError("release() with output pending: it would be lost")
        self.out.close()
        self.rejects.file.close()
        self.dir.close()

    def close(self, deadline: float | None = None) -> bool:
        """Flush (retrying until ``deadline``), fsync, close. True if nothing was left unwritten."""
        self.rejects.finish()
        while not self.flush() or self.rejects.file.pending:
            if deadline is None or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        ok = not self.out.pending
        self.unwritten_lines = self.out.unwritten_lines()
        if self.rejects.file.pending:
            lost = self.rejects.account_unwritten()
            _say(f"{lost} rejects records ({self.rejects.file.backlog_bytes} bytes) could not be written to "
                 f"{self.rejects_path}; they are counted in rejects_suppressed")
        self.sync()
        self.out.close()
        self.rejects.file.close()
        self.dir.close()
        return ok
