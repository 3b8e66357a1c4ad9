"""The shipper's checkpoint: which file (device, inode, and a hash of its first line) and the byte
offset up to which every line has been acknowledged by JetStream.

It moves only after acknowledgements, so it may lag (a restart then republishes lines the stream
already holds, and the stream's duplicate window drops them), never lead. Written atomically: a
temporary file in the same directory (``mkstemp``), fsync, ``os.replace``; a reader (or a restart
after a machine crash) sees the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from aggregator.files import replace_atomically

VERSION = 1


@dataclass(frozen=True)
class FileId:
    """A file's identity: (device, inode) and a short hash of its first line. The hash tells a new
    file apart from an old one whose inode the filesystem reused."""

    dev: int
    ino: int
    head: str

    @property
    def key(self) -> str:
        """The part of every Nats-Msg-Id that names the file."""
        return f"{self.dev:x}.{self.ino:x}.{self.head}"


@dataclass(frozen=True)
class Checkpoint:
    file: FileId
    offset: int  # every line before this byte offset of ``file`` is acknowledged
    path: str = ""  # where the file was when the checkpoint was written (informative)

    def to_dict(self) -> dict:
        return {"version": VERSION, "file": asdict(self.file), "offset": self.offset, "path": self.path}

    @classmethod
    def from_dict(cls, d: dict) -> "Checkpoint":
        return cls(FileId(**d["file"]), int(d["offset"]), d.get("path", ""))


def load(path: Path) -> Checkpoint | None:
    """The saved checkpoint, or None if there is none yet. A corrupt one is an error (never
    silently restart from 0, which would replay the whole file beyond the duplicate window)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError(f"{path}: not a version-{VERSION} shipper checkpoint")
    return Checkpoint.from_dict(data)


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Atomically, on disk before the rename: a crash leaves the old checkpoint or the new one."""
    replace_atomically(path, (json.dumps(checkpoint.to_dict()) + "\n").encode(), mode=0o600, fsync=True)
