"""What a fault scenario does to the machine: a small tmpfs to fill (root only), unmounted and
removed whatever happens, and another user to be."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


@contextlib.contextmanager
def tmpfs(size: str):
    """Mount a tmpfs of ``size`` on a fresh directory; always unmounted and removed."""
    mnt = Path(tempfile.mkdtemp(prefix="loglab-tmpfs-"))
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mnt)], capture_output=True, text=True)
        if r.returncode != 0:
            raise PermissionError(f"cannot mount tmpfs: {r.stderr.strip()}")
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        shutil.rmtree(mnt, ignore_errors=True)


def remount(mnt: Path, size: str) -> None:
    """Give the tmpfs ``size``: the disk has room again."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True, capture_output=True)


def can_mount_tmpfs() -> str | None:
    """None if possible, else why not (the reason a skip gives)."""
    if os.geteuid() != 0:
        return "not root: cannot mount a tmpfs"
    try:
        with tmpfs("64k"):
            return None
    except PermissionError as exc:
        return str(exc)


def nobody_ids() -> tuple[int, int] | None:
    import pwd

    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid
