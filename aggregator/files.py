"""Files the aggregator writes besides its output: never through a name another user can plant.

* ``replace_atomically``: the stats and ready files are written to a temp file of an unpredictable
  name (``os.urandom``, created ``O_CREAT | O_EXCL``, so nothing planted is ever opened; not
  ``tempfile`` or ``secrets``, whose imports would cost a serving process 4 MiB) in the target's
  directory, then renamed over the target (``rename`` replaces a planted symlink or FIFO, it
  never follows or opens it). A reader never sees half a file.
* ``check_owned_regular_file``: what a path must be before the aggregator writes it: a regular
  file owned by this user with one name. A symlink, FIFO, device, another user's file or a hard
  link is refused (a FIFO would hang the start-up or hand every line to whoever reads it).
* ``check_writable_target``: the same for a file that is replaced as a whole (stats, ready),
  checked at start so that a bad path fails at once, not at exit.
* ``Directory`` and ``Target``: the aggregator's own files are resolved relative to directories
  opened once at start, so a directory component swapped for a symlink later cannot redirect a
  write; a target locked by another process (an aggregator's output) is never replaced.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path


class UnsafePath(Exception):
    """A path the aggregator must not write: printed, not traced."""


def reason(exc: Exception) -> str:
    """What went wrong, for a message: an OSError's strerror, else the exception's text."""
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


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


def _fill(fd: int, data: bytes, mode: int, fsync: bool) -> None:
    """Write ``data`` into the new temp file ``fd`` (closed after), with ``mode``, on disk if ``fsync``."""
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def _new_temp(name: str, where: Path, create) -> tuple[int, str]:
    """A new file ``.NAME.RANDOM.tmp``, created by ``create(temp name)`` (O_CREAT | O_EXCL): its fd
    and name. The name is unpredictable, so another user cannot plant it in advance."""
    for _ in range(16):
        tmp = f".{name}.{os.urandom(6).hex()}.tmp"
        try:
            return create(tmp), tmp
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no unused temp name", str(where))


_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def replace_atomically(path: Path, data: bytes, mode: int = 0o644, fsync: bool = False) -> None:
    """Write ``data`` as the whole new content of ``path`` (see the module doc). ``fsync``: on
    disk before the rename, so that even a machine crash leaves the old file or the new one."""
    fd, name = _new_temp(path.name, path.parent, lambda tmp: os.open(path.parent / tmp, _CREATE_NEW, 0o600))
    tmp = path.parent / name
    try:
        _fill(fd, data, mode, fsync)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Directory:
    """A directory opened once (the path the user gave is followed then, and never again): names
    in it are resolved with ``*at()`` calls on its descriptor, so a directory component swapped
    for a symlink later (a rotation's ``mv``, or another user in a directory they own) can never
    redirect a reopen or a stats write."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise UnsafePath(f"cannot use directory {self.path}: {exc.strerror}") from None

    def lstat(self, name: str) -> os.stat_result:
        return os.stat(name, dir_fd=self.fd, follow_symlinks=False)

    def open(self, name: str, flags: int, mode: int = 0o644) -> int:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.fd)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def unlink(self, name: str) -> None:
        os.unlink(name, dir_fd=self.fd)

    def close(self) -> None:
        os.close(self.fd)


class Target:
    """A file written whole each time (the stats or ready file): through a temp file of an
    unpredictable name (``O_CREAT | O_EXCL``: nothing planted is ever opened) in its directory,
    then renamed over it (``rename`` replaces a planted symlink or FIFO, never follows or opens
    it), all relative to the directory opened at start. A target that another process holds
    locked (an aggregator's output or rejects file) is never replaced."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self.name = self.path.name
        try:
            self.dir = Directory(self.path.parent)
        except UnsafePath as exc:
            raise UnsafePath(f"cannot write the {what} {self.path}: {exc}") from None

    def check(self) -> None:
        """At start: nothing unsafe at the path, and the directory is writable."""
        try:
            st = self.dir.lstat(self.name)
        except FileNotFoundError:
            st = None
        if st is not None:
            try:
                check_owned_regular_file(st, self.path)
            except UnsafePath as exc:
                raise UnsafePath(f"{self.what}: {exc}") from None
            self._refuse_if_locked()
        if not os.access(self.dir.path, os.W_OK | os.X_OK):
            raise UnsafePath(f"cannot write the {self.what} {self.path}: directory {self.path.parent} is not writable")

    def _refuse_if_locked(self) -> None:
        try:
            fd = self.dir.open(self.name, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return
        except OSError:
            return  # not ours to read: check() has said what is wrong with it
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UnsafePath(
                f"{self.what} {self.path} is locked by another process (an aggregator's output?); refusing to replace it"
            ) from None
        finally:
            os.close(fd)

    def write(self, data: bytes, mode: int = 0o644, fsync: bool = False) -> None:
        """Replace the target's content with ``data`` (see the class doc). Raises OSError, or
        UnsafePath when the target is locked by another process."""
        self._refuse_if_locked()
        fd, tmp = _new_temp(self.name, self.path.parent, lambda name: self.dir.open(name, _CREATE_NEW, 0o600))
        try:
            _fill(fd, data, mode, fsync)
            self.dir.rename(tmp, self.name)
        except BaseException:
            try:
                self.dir.unlink(tmp)
            except OSError:
                pass
            raise

    def close(self) -> None:
        self.dir.close()
