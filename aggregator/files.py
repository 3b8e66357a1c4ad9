"""Files the aggregator writes besides its output: never through a name another user can plant.

* ``replace_atomically``: the stats and ready files are written to a temp file of an unpredictable
  name (``mkstemp``: ``O_CREAT | O_EXCL``, so nothing planted is ever opened) in the target's
  directory, then renamed over the target (``rename`` replaces a planted symlink or FIFO, it
  never follows or opens it). A reader never sees half a file.
* ``check_owned_regular_file``: what a path must be before the aggregator writes it: a regular
  file owned by this user with one name. A symlink, FIFO, device, another user's file or a hard
  link is refused (a FIFO would hang the start-up or hand every line to whoever reads it).
* ``check_writable_target``: the same for a file that is replaced as a whole (stats, ready),
  checked at start so that a bad path fails at once, not at exit.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


class UnsafePath(Exception):
    """A path the aggregator must not write: printed, not traced."""


def file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISLNK, "symlink, never followed"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISDIR, "directory"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return kind
    return "special file"


def check_owned_regular_file(st: os.stat_result, path: Path) -> None:
    """Refuse anything but a regular file of ours with one name (see the module doc)."""
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"{path} is not a regular file (it is a {file_kind(st.st_mode)}); refusing to write to it")
    if st.st_uid != os.geteuid():
        raise UnsafePath(
            f"{path} is owned by uid {st.st_uid}, not by this process (uid {os.geteuid()}); "
            "refusing to write a file another user controls"
        )
    if st.st_nlink > 1:
        raise UnsafePath(f"{path} has {st.st_nlink} hard links; refusing (another name may point at a file we must not write)")


def check_writable_target(path: Path, what: str) -> None:
    """At start: ``path`` can be written by ``replace_atomically`` (directory exists, nothing
    unsafe at the path). Raises UnsafePath with ``what`` ("stats file", ...) in the message."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UnsafePath(f"cannot use {path} as the {what}: {exc.strerror}") from None
    if st is not None:
        try:
            check_owned_regular_file(st, path)
        except UnsafePath as exc:
            raise UnsafePath(f"{what}: {exc}") from None
    if not path.parent.is_dir():
        raise UnsafePath(f"cannot write the {what} {path}: directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise UnsafePath(f"cannot write the {what} {path}: directory {path.parent} is not writable")


def replace_atomically(path: Path, data: bytes, mode: int = 0o644, fsync: bool = False) -> None:
    """Write ``data`` as the whole new content of ``path`` (see the module doc). ``fsync``: on
    disk before the rename, so that even a machine crash leaves the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
