"""The systems under test: loglab's own aggregator, and the peers (``benchmarks/peers``), behind one face.

A system receives the workload on one transport and exposes what the runner measures: its pid
(CPU, memory, context switches via psutil), its output (records with ``received_ns``), and
counters of its own where it has them. ``SYSTEMS`` maps a name to its class; each class says
whether it can run here (``available``) and which transports, input formats and framings it
serves (``supports``; ``unsupported`` says why not).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Protocol

import orjson

from aggregator.framing import framing_unsupported
from aggregator.transports import TRANSPORTS

from ..peers import PEERS
from ..processes import AggregatorProc, address_for


class System(Protocol):
    name: str
    comm: str  # the receiving process's name, as tracers see it
    pid: int
    output_path: Path

    def start(self, timeout: float = 10.0) -> str: ...
    def stop(self, timeout: float = 10.0) -> dict: ...
    def read_records(self) -> Iterator[dict | None]:
        """One item per line of ``output_path``, in file order: the record, or None for a line
        that is not one (so the latency observer's stamps, one per line, stay aligned)."""
        ...


class LoglabSystem:
    """loglab's aggregator, started through ``benchmarks.processes`` like everywhere else."""

    name = "loglab"
    comm = "logagg"

    @staticmethod
    def available() -> tuple[bool, str]:
        return True, ""

    @staticmethod
    def version() -> str:
        from importlib.metadata import version

        return version("loglab")

    @classmethod
    def supports(cls, transport: str, fmt: str = "json", framing: str = "newline") -> bool:
        return cls.unsupported(transport, fmt, framing) is None

    @staticmethod
    def unsupported(transport: str, fmt: str = "json", framing: str = "newline") -> str | None:
        if transport not in TRANSPORTS:
            return f"no transport {transport}"
        return None if framing == "newline" else framing_unsupported(framing, TRANSPORTS[transport])

    def __init__(self, transport: str, workdir: Path, *, rcvbuf: int | None = None, workers: int = 1,
                 extra_args: list[str] | None = None, fmt: str = "json", framing: str = "newline") -> None:  # fmt: skip
        self.transport = transport
        self.workers = workers  # --workers (0 = one per CPU; a one-reader transport always has one)
        self.workdir = workdir
        args = list(extra_args or [])
        if framing == "lenprefix":
            args += ["--framing", "lenprefix"]  # the only framing not told from a connection's first byte
        if rcvbuf is not None:
            args += ["--rcvbuf", str(rcvbuf)]
        if workers != 1 and TRANSPORTS[transport].sharing.workers(workers, 1)[1] is None:
            args += ["--workers", str(workers)]  # a one-reader transport refuses N > 1: it gets 1
        self.proc = AggregatorProc(transport, workdir, *args, address=address_for(transport, workdir))
        self.output_path = self.proc.output
        self.pid = 0
        self.address = ""

    def start(self, timeout: float = 10.0) -> str:
        try:
            self.proc.start(timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"aggregator did not start: {exc}") from None
        self.pid = self.proc.pid
        self.address = self.proc.address
        return self.address

    def stop(self, timeout: float = 10.0) -> dict:
        if not self.pid:
            return {}
        try:
            code = self.proc.stop(timeout=timeout)
        except AssertionError:  # did not stop in time: killed
            code = self.proc.returncode()
        self.proc.close()
        try:
            stats = self.proc.stats()
        except (FileNotFoundError, ValueError):
            stats = {}
        stats["exit_code"] = code
        self.pid = 0
        return stats

    def read_records(self) -> Iterator[dict | None]:
        with open(self.output_path, "rb") as f:
            for line in f:
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError:
                    yield None


SYSTEMS = {LoglabSystem.name: LoglabSystem, **PEERS}


def make_system(name: str, transport: str, workdir: Path, *, rcvbuf: int | None = None, workers: int = 1,
                fmt: str = "json", framing: str = "newline", loglab_args: list[str] | None = None):  # fmt: skip
    try:
        cls = SYSTEMS[name]
    except KeyError:
        raise ValueError(f"unknown system {name!r}; known: {', '.join(SYSTEMS)}") from None
    extra = {"extra_args": loglab_args} if cls is LoglabSystem and loglab_args else {}  # the peers have their own configs
    return cls(transport, workdir, rcvbuf=rcvbuf, workers=workers, fmt=fmt, framing=framing, **extra)
