"""The raw-copy reference reader as a benchmark peer: the floor, not a competitor.

``rawcopy.c`` (beside this file) is about 200 lines of C that receive on one of loglab's
transports and copy every whole line to a file with its receipt time, and do nothing else: no
validation, no parsing, no rejects, no counters. Its capacity and CPU per message say what the
kernel and one C reader cost; loglab's aggregator is measured against it (issue 16's targets:
capacity at least 1.0x and CPU per message no higher, on every transport).

The lab builds it itself, with the machine's C compiler (``make setup`` installs one), on first
use: into ``$XDG_CACHE_HOME/loglab`` (``~/.cache/loglab``), named by the source's hash, so an
edit rebuilds it and concurrent builds cannot see a half-written binary (built aside, then
renamed). ``available()`` says why not when there is no compiler or the build fails.

It serves every transport, with newline framing and the producer's JSON lines: it copies lines
and parses nothing, so a syslog header would stay in front of the JSON object the bench reads
back (``unsupported`` says so, and the formats scenario skips those cells); no octet or lenprefix
framing. Output: ``<receipt time in ns>\\t<line>\\n``, one clock read per read(2) or
recvmmsg(2) (as loglab stamps a read). Readiness, stop (output quiet, SIGTERM) and reading back
are ``daemon.py``'s.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from aggregator.transports import TRANSPORTS

from .daemon import LogDaemonPeer

__all__ = ["RawCopyPeer"]

SOURCE = Path(__file__).with_name("rawcopy.c")
CFLAGS = ("-O2", "-Wall", "-Wextra")

def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "loglab"


def _mode(transport: str) -> str:
    """rawcopy's MODE for a loglab transport, from the transport's own attributes."""
    t = TRANSPORTS[transport]
    if t.kind == "datagram":
        return "seqpacket" if t.connected else "dgram"
    return "stream" if t.connected else "fifo"


@functools.cache
def build() -> tuple[str | None, str]:
    """``(path of the binary, "")``, building it if needed, or ``(None, why not)``; once per process."""
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:12]
    binary = _cache_dir() / f"rawcopy-{digest}"
    if binary.is_file() and os.access(binary, os.X_OK):
        return str(binary), ""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None, "no C compiler to build the raw-copy reader (make setup installs gcc)"
    binary.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".rawcopy-", dir=binary.parent)
    os.close(fd)
    try:
        done = subprocess.run([cc, *CFLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)  # fmt: skip
        if done.returncode != 0:
            return None, f"building the raw-copy reader failed: {done.stderr.strip()[-500:]}"
        os.chmod(tmp, 0o755)
        os.replace(tmp, binary)  # atomic: a concurrent build replaces it with the same bytes
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return str(binary), ""


class RawCopyPeer(LogDaemonPeer):
    """The raw-copy reader on one loglab transport; see the module docstring."""

    name = "rawcopy"
    comm = "rawcopy"
    INPUTS = {name: _mode(name) for name in TRANSPORTS}  # every transport, derived from the registry
    config_name = "rawcopy.args"
    output_name = "rawcopy.out"

    @classmethod
    def unsupported(cls, transport: str, fmt: str = "json", framing: str = "newline") -> str | None:
        if fmt != "json":  # the bench reads the JSON object back from each line: a header would hide it
            return f"rawcopy parses nothing: a {fmt} header would stay in front of the JSON message it copies"
        return super().unsupported(transport, fmt, framing)

    @classmethod
    def available(cls) -> tuple[bool, str]:
        binary, why = build()
        return binary is not None, why

    @classmethod
    def version(cls) -> str:
        """The source's hash: what was measured (there is no release)."""
        binary, _ = build()
        return binary.rsplit("-", 1)[1] if binary else ""

    def _address_spec(self, port: int | None, path: str | None) -> str:
        return f"inet {port}" if port is not None else f"unix {path}"

    def _render_config(self, address_spec: str) -> str:
        # No configuration file: the "config" is the command line, kept for the run's record.
        self._family, self._address = address_spec.split(" ", 1)
        return " ".join(self._argv()) + "\n"

    def _argv(self) -> list[str]:
        binary, why = build()
        if binary is None:
            raise RuntimeError(why)
        return [binary, self._input, self._family, self._address, str(self.output_path)]

    def _bind_failed(self, stderr: str) -> bool:
        return "Address already in use" in stderr

    def _receipt_ns(self, stamp: bytes) -> int:
        return int(stamp)
