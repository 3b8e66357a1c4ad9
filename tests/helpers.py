"""Process helpers for loglab's end-to-end tests.

The real CLIs run as subprocesses: ``aggregator`` on a fresh address (port 0 for tcp/udp, a path in
a short private temp directory for unixsock/unixgram/fifo), ``producer`` with ``--summary-json``.

* Readiness is awaited, never slept for: an aggregator is ready when it has printed its first
  stdout line, ``listening on ADDR``, and written its ``--ready-file``.
* Conditions that have no signal of their own ("the output holds N lines") are awaited with
  ``wait_until``, which polls the condition and fails with a message after a generous deadline.
* ``Lab`` owns everything a test starts (processes, raw client sockets, FIFO fds, the socket
  directory) and ``Lab.cleanup()`` kills and removes all of it, whether the test passed or not.

Use it through the ``lab`` fixture in ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from aggregator.sink import rejects_path_for as rejects_path  # noqa: F401 - used by the tests
from benchmarks.faultlib import DEADLINE, Client, count_lines, wait_until  # noqa: F401 - used by the tests
from benchmarks.faultlib import whole_lines as read_lines  # whole lines, each without its newline

BIN_DIR = Path(sys.executable).parent
AGGREGATOR = str(BIN_DIR / "aggregator") if (BIN_DIR / "aggregator").exists() else (shutil.which("aggregator") or "aggregator")
PRODUCER = str(BIN_DIR / "producer") if (BIN_DIR / "producer").exists() else (shutil.which("producer") or "producer")

TRANSPORTS = ("unixsock", "unixgram", "tcp", "udp", "fifo")
STREAM_TRANSPORTS = ("unixsock", "tcp", "fifo")
DATAGRAM_TRANSPORTS = ("unixgram", "udp")
RELIABLE_TRANSPORTS = ("unixsock", "unixgram", "tcp", "fifo")
PATH_TRANSPORTS = ("unixsock", "unixgram", "fifo")
INET_TRANSPORTS = ("tcp", "udp")

START_TIMEOUT = 20.0  # seconds to wait for "listening on" (generous: the machine is shared)
WAIT_TIMEOUT = DEADLINE  # default deadline of wait_until and of process exits

_PATH_NAMES = {"unixsock": "agg.sock", "unixgram": "agg.dgram", "fifo": "agg.fifo"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in read_lines(path)]


def seqs_by_producer(records: list[dict]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in records:
        out.setdefault(r["producer"], []).append(r["seq"])
    return out


def duplicates(values) -> list:
    return sorted(v for v, n in Counter(values).items() if n > 1)


def _read_first_line(proc: subprocess.Popen, timeout: float) -> str | None:
    """The first stdout line of ``proc``, or None if it exits (or the deadline passes) first."""
    deadline = time.monotonic() + timeout
    data = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not sel.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                return None
            data += chunk
    return data.split(b"\n", 1)[0].decode()


class AggregatorProcess:
    """One ``aggregator`` subprocess with its files in ``workdir``."""

    def __init__(
        self,
        transport: str,
        workdir: Path,
        *,
        address: str | None,
        output: Path | None = None,
        args: tuple | list = (),
        env: dict | None = None,
        stats: bool = True,
        ready_file: bool = True,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.transport = transport
        self.workdir = workdir
        self.requested_address = address
        self.address: str | None = None
        self.output = output or workdir / "aggregated_logs.jsonl"
        self.rejects = rejects_path(self.output)
        self.stats_file = workdir / "stats.json" if stats else None
        self.ready_file = workdir / "ready.json" if ready_file else None
        self.stderr_path = workdir / "aggregator.stderr"
        self.args = list(args)
        self.env = env
        self.proc: subprocess.Popen | None = None
        self._stderr = None

    @property
    def command(self) -> list[str]:
        cmd = [AGGREGATOR, self.transport, "--output", str(self.output)]
        if self.requested_address is not None:
            cmd += ["--address", self.requested_address]
        if self.stats_file is not None:
            cmd += ["--stats-file", str(self.stats_file)]
        if self.ready_file is not None:
            cmd += ["--ready-file", str(self.ready_file)]
        return cmd + self.args

    def start(self, timeout: float = START_TIMEOUT, wait_ready_file: bool = True) -> "AggregatorProcess":
        """Start and wait for "listening on ADDR" (and, unless told not to, the ready file)."""
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, env=self.env
        )
        line = _read_first_line(self.proc, timeout)
        if line is None or not line.startswith("listening on "):
            self.kill()
            raise AssertionError(
                f"aggregator did not become ready (first stdout line {line!r}, exit {self.proc.returncode}); "
                f"command {self.command}; stderr:\n{self.stderr_text()}"
            )
        self.address = line[len("listening on ") :]
        if self.ready_file is not None and wait_ready_file:
            info = wait_until(self._ready_info, f"ready file {self.ready_file}", timeout)
            assert info["address"] == self.address, info
            assert info["pid"] == self.proc.pid, info
            assert info["transport"] == self.transport, info
        return self

    def _ready_info(self) -> dict | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"aggregator exited {self.proc.returncode} before its ready file:\n{self.stderr_text()}")
        try:
            return json.loads(self.ready_file.read_text())
        except FileNotFoundError:
            return None

    # -- control --------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = WAIT_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"aggregator still running after {timeout} s; stderr:\n{self.stderr_text()}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = WAIT_TIMEOUT) -> int:
        """Signal (SIGTERM by default) and wait for the exit status."""
        if self.running():
            self.send_signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    # -- results --------------------------------------------------------------------------------
    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def output_lines(self) -> list[bytes]:
        return read_lines(self.output)

    def records(self) -> list[dict]:
        return read_jsonl(self.output)

    def reject_records(self) -> list[dict]:
        return read_jsonl(self.rejects)

    def stats(self) -> dict:
        return json.loads(self.stats_file.read_text())

    def wait_for_output_lines(self, n: int, timeout: float = WAIT_TIMEOUT) -> None:
        def enough():
            if self.proc.poll() is not None:
                raise AssertionError(f"aggregator exited {self.proc.returncode}:\n{self.stderr_text()}")
            return count_lines(self.output) >= n

        wait_until(enough, f"{n} lines in {self.output}", timeout)

    def wait_for_rejects(self, n: int, timeout: float = WAIT_TIMEOUT) -> None:
        wait_until(lambda: count_lines(self.rejects) >= n, f"{n} lines in {self.rejects}", timeout)


class ProducerProcess:
    """One ``producer`` subprocess; ``summary()`` is its ``--summary-json``."""

    def __init__(
        self, transport: str, address: str, producer_id: str, count: int, workdir: Path, args=(), barrier: bool = False
    ) -> None:
        self.id = producer_id
        self.count = count
        self.summary_path = workdir / f"producer-{producer_id}.json"
        self.stderr_path = workdir / f"producer-{producer_id}.stderr"
        self.command = [
            PRODUCER, transport, "--address", address, "--id", producer_id, "--count", str(count),
            "--summary-json", str(self.summary_path), *map(str, args),
        ]  # fmt: skip
        if barrier:
            self.command.append("--start-on-stdin")
        self._stderr = open(self.stderr_path, "wb")
        pipe = subprocess.PIPE if barrier else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.command, stdin=pipe, stdout=pipe, stderr=self._stderr)

    def wait_connected(self, timeout: float = START_TIMEOUT) -> None:
        """With the start barrier: wait for 'ready' (connected, not sending yet)."""
        line = _read_first_line(self.proc, timeout)
        if line != "ready":
            self.kill()
            raise AssertionError(f"producer {self.id} did not connect (got {line!r}):\n{self.stderr_text()}")

    def go(self) -> None:
        """Lift the start barrier."""
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float = WAIT_TIMEOUT) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"producer {self.id} still running after {timeout} s") from None
        self._close()
        return rc

    def summary(self) -> dict:
        return json.loads(self.summary_path.read_text())

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self._close()

    def _close(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout, self._stderr):
            if f is not None and not f.closed:
                with contextlib.suppress(OSError):
                    f.close()


class RawClient(Client):
    """A client of the aggregator driven by the test itself: exact bytes, one connection (the
    raw client of ``benchmarks.faultlib``, with this suite's default deadline)."""

    def __init__(self, transport: str, address: str) -> None:
        super().__init__(transport, address, timeout=WAIT_TIMEOUT)


class Lab:
    """Everything one test starts, and its cleanup."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
        self.sockdir = Path(tempfile.mkdtemp(prefix="loglab-t-"))
        self.aggregators: list[AggregatorProcess] = []
        self.producers: list[ProducerProcess] = []
        self.clients: list[RawClient] = []
        self._n = 0

    def _next(self, what: str) -> str:
        self._n += 1
        return f"{what}{self._n}"

    def address_for(self, transport: str) -> str:
        if transport in INET_TRANSPORTS:
            return "127.0.0.1:0"
        return str(self.sockdir / f"{self._next('a')}-{_PATH_NAMES[transport]}")

    def aggregator(
        self,
        transport: str,
        *args,
        address: str | None = "auto",
        output: Path | None = None,
        env: dict | None = None,
        start: bool = True,
    ) -> AggregatorProcess:
        """Start an aggregator and wait until it listens. ``address=None`` leaves the default."""
        if address == "auto":
            address = self.address_for(transport)
        agg = AggregatorProcess(
            transport, self.tmp_path / self._next("agg"), address=address, output=output, args=args, env=env
        )
        self.aggregators.append(agg)
        if start:
            agg.start()
        return agg

    def start_producers(
        self, transport: str, address: str, n: int, count: int, *args, prefix: str = "p", together: bool = False
    ) -> list[ProducerProcess]:
        """Start ``n`` producers. ``together``: all connect first, then all start sending at once
        (``--start-on-stdin``), so every one of them is mid-stream when the first output appears."""
        workdir = self.tmp_path / self._next("producers")
        workdir.mkdir(parents=True)
        started = [ProducerProcess(transport, address, f"{prefix}{i}", count, workdir, args, together) for i in range(n)]
        self.producers.extend(started)
        if together:
            for p in started:
                p.wait_connected()
            for p in started:
                p.go()
        return started

    def run_producers(self, transport: str, address: str, n: int, count: int, *args, timeout: float = 60.0, prefix: str = "p"):
        """Run ``n`` producers to completion; return them (exit codes checked by the caller)."""
        started = self.start_producers(transport, address, n, count, *args, prefix=prefix)
        deadline = time.monotonic() + timeout
        for p in started:
            p.wait(max(0.1, deadline - time.monotonic()))
        return started

    def connect(self, transport: str, address: str) -> RawClient:
        client = RawClient(transport, address)
        self.clients.append(client)
        return client

    def cleanup(self) -> None:
        for client in self.clients:
            with contextlib.suppress(OSError):
                client.close()
        for p in self.producers:
            p.kill()
        for agg in self.aggregators:
            agg.kill()
        shutil.rmtree(self.sockdir, ignore_errors=True)


def run_cli(*args, timeout: float = WAIT_TIMEOUT, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``aggregator``/``producer`` to completion (for commands expected to exit by themselves)."""
    return subprocess.run(
        [str(a) for a in args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=env
    )
