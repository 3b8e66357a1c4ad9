"""The systems under test: loglab's own aggregator, and peers (syslog-ng) behind the same face.

A system receives the workload on one transport and exposes what the runner measures: its pid
(CPU, memory, context switches via psutil), its output (records with ``received_ns``), and
counters of its own where it has them.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Protocol

import orjson

from aggregator.transports import TRANSPORTS

VENV_BIN = Path(sys.executable).parent


def command(name: str) -> str:
    """A console script of this package: beside the running interpreter (the venv), else PATH."""
    candidate = VENV_BIN / name
    return str(candidate) if candidate.exists() else name


class System(Protocol):
    name: str
    comm: str  # the receiving process's name, as tracers see it
    pid: int
    output_path: Path

    def start(self, timeout: float = 10.0) -> str: ...
    def stop(self, timeout: float = 10.0) -> dict: ...
    def read_records(self) -> Iterator[dict]: ...


def address_for(transport: str, workdir: Path) -> str:
    """A fresh address per run: a path in the run's own directory, or loopback port 0."""
    return {
        "unixsock": str(workdir / "agg.sock"),
        "unixgram": str(workdir / "agg.dgram"),
        "fifo": str(workdir / "agg.fifo"),
    }.get(transport, "127.0.0.1:0")


def read_line(pipe, timeout: float) -> str:
    """One line from a child's pipe, or TimeoutError: readiness without blind sleeps."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = pipe.fileno()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError("no line from child process in time")
        chunk = os.read(fd, 1)
        if not chunk:
            raise EOFError("child process closed its output")
        buf += chunk
    return buf.decode().rstrip("\n")


class LoglabSystem:
    name = "loglab"
    comm = "logagg"

    def __init__(
        self, transport: str, workdir: Path, *, rcvbuf: int | None = None, workers: int = 1, extra_args: list[str] | None = None
    ) -> None:
        self.transport = transport
        self.workers = workers  # --workers (0 = one per CPU; a FIFO always has one reader)
        self.workdir = workdir
        self.output_path = workdir / "aggregated_logs.jsonl"
        self.stats_path = workdir / "aggregator.stats.json"
        self.stderr_path = workdir / "aggregator.stderr"
        self.rcvbuf = rcvbuf
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None
        self.pid = 0
        self.address = ""

    def start(self, timeout: float = 10.0) -> str:
        args = [
            command("aggregator"),
            self.transport,
            "--address",
            address_for(self.transport, self.workdir),
            "--output",
            str(self.output_path),
            "--stats-file",
            str(self.stats_path),
            *self.extra_args,
        ]
        if self.rcvbuf is not None:
            args += ["--rcvbuf", str(self.rcvbuf)]
        if self.workers != 1 and TRANSPORTS[self.transport].parallel is not None:
            args += ["--workers", str(self.workers)]
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        try:
            line = read_line(self.proc.stdout, timeout)
        except (TimeoutError, EOFError):
            self.stop()
            raise RuntimeError(f"aggregator did not start: {self.stderr_path.read_text()[-2000:]}") from None
        self.address = line.removeprefix("listening on ").strip()
        return self.address

    def stop(self, timeout: float = 10.0) -> dict:
        proc = self.proc
        if proc is None:
            return {}
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.proc = None
        self._stderr.close()
        if proc.stdout:
            proc.stdout.close()
        stats = json.loads(self.stats_path.read_text()) if self.stats_path.exists() else {}
        stats["exit_code"] = proc.returncode
        return stats

    def read_records(self) -> Iterator[dict]:
        with open(self.output_path, "rb") as f:
            for line in f:
                yield orjson.loads(line)

    def version(self) -> str:
        from importlib.metadata import version

        return version("loglab")
