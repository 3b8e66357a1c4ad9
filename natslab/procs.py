"""One way to start and stop the shipping lab's processes: nats-server, aggregator, producer, shipper.

Self-contained on purpose (the project-wide process module of issue 10 will fold it in). Every
process the lab starts is a ``Proc``:

* started with its stdout and stderr in files of its own directory (so a process outlives the
  command that started it: ``loglab hosts up`` returns, ``loglab hosts down`` stops them);
* optionally inside a network namespace (``netns=NAME``: the command is run through
  ``ip netns exec NAME``, which execs it, so the pid is the process's own and signals reach it);
* ready when a line it prints says so (``ready_line``: nats-server's "Server is ready", the
  aggregator's "listening on", the shipper's "shipping"), awaited with a deadline by reading its
  log file, never with a fixed sleep. A process that exits before it is ready fails the start with
  the tail of its stderr;
* stopped with SIGTERM and a deadline, then SIGKILL (``stop``), or killed at once (``kill``).

``ProcGroup`` owns everything a test, a torture scenario or a lab command starts and stops it all,
newest first, whatever happened (``with ProcGroup() as g:``). Its ``to_state``/``from_state`` let
a later command stop processes an earlier command left running (by pid, after checking the pid is
still the same process: its start time is recorded).

Free ports: ``free_ports(n)`` binds port 0 n times on loopback and reads the ports back (they are
released just before use; a server that loses the race fails to start, and the caller retries).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.faultlib import wait_until  # the project's one polling helper (with a deadline)

BIN = Path(sys.executable).parent
START_TIMEOUT = 30.0  # generous: the machine has two cores shared with everything else
STOP_TIMEOUT = 20.0


def console_script(name: str) -> str:
    """A console script of this package: beside the running interpreter (the venv), else PATH."""
    candidate = BIN / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def nats_server_binary() -> str | None:
    """nats-server from PATH or Debian's /usr/sbin (not on a non-root PATH), or None."""
    return shutil.which("nats-server") or next((p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if os.access(p, os.X_OK)), None)


def nats_unavailable() -> str | None:
    """None when nats-server can be run, else why not (the reason a skip reports)."""
    if nats_server_binary() is None:
        return "nats-server is not installed (make setup-lab installs Debian's nats-server as root)"
    try:
        import nats  # noqa: F401
    except ImportError:
        return "the nats-py client is not installed (make setup)"
    return None


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports the kernel says are free now (bind port 0, read, release)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22): with the pid
    it names a process uniquely, so a recorded pid is never mistaken for a recycled one. None when
    there is no such process, or only its zombie (exited, not yet reaped by its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Proc:
    """One process of the lab. ``name`` is unique within its group (``nats-n1``, ``shipper-h2``)."""

    name: str
    argv: list[str]
    workdir: Path
    netns: str | None = None
    ready_line: str | None = None  # a line starting with this on stdout or stderr = ready ("*TEXT": containing TEXT)
    env: dict | None = None
    pid: int = 0
    started: int | None = None
    popen: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"{self.name}.out"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"{self.name}.err"

    @property
    def command(self) -> list[str]:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return prefix + [str(a) for a in self.argv]

    def start(self, timeout: float = START_TIMEOUT, wait: bool = True) -> "Proc":
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            # A session of its own: a terminal's Ctrl-C or the starter's exit does not reach it;
            # only this module (or a test's cleanup) stops it.
            self.popen = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=self.env, start_new_session=True
            )
        self.pid = self.popen.pid
        self.started = _start_time(self.pid)
        if wait and self.ready_line is not None:
            self.wait_ready(timeout)
        return self

    def output(self) -> str:
        text = []
        for path in (self.stdout_path, self.stderr_path):
            with contextlib.suppress(FileNotFoundError):
                text.append(path.read_text(errors="replace"))
        return "\n".join(text)

    def ready_text(self) -> str | None:
        """The first line that says the process is ready (or None yet)."""
        anywhere = self.ready_line.startswith("*")  # "*TEXT": TEXT anywhere (after a log prefix)
        text = self.ready_line[1:] if anywhere else self.ready_line
        for line in self.output().splitlines():
            if (text in line) if anywhere else line.startswith(text):
                return line
        return None

    def wait_ready(self, timeout: float = START_TIMEOUT) -> str:
        def ready():
            line = self.ready_text()
            if line is None and not self.running():
                raise RuntimeError(f"{self.name} exited ({self.returncode()}) before it was ready: {self.command}\n{self.tail()}")
            return line

        try:
            return wait_until(ready, f"{self.name} ready ({self.ready_line!r})", timeout)
        except AssertionError:
            self.kill()
            raise RuntimeError(f"{self.name} not ready after {timeout} s: {self.command}\n{self.tail()}") from None

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-n:])

    def running(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.pid > 0 and self.started is not None and _start_time(self.pid) == self.started

    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def send(self, sig: int) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int | None:
        """Wait for the exit; the exit status when this process is our child, else None."""
        if self.popen is not None:
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{self.name} still running after {timeout} s\n{self.tail()}") from None
        wait_until(lambda: not self.running(), f"{self.name} (pid {self.pid}) to exit", timeout)
        return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """Signal (SIGTERM), wait up to ``timeout``; SIGKILL if it is still running then."""
        self.send(sig)
        try:
            return self.wait(timeout)
        except AssertionError:
            self.kill()
            return self.returncode()

    def kill(self) -> None:
        self.send(signal.SIGKILL)
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            self.wait(10)

    def to_state(self) -> dict:
        return {"name": self.name, "argv": self.argv, "workdir": str(self.workdir), "netns": self.netns,
                "ready_line": self.ready_line, "pid": self.pid, "started": self.started}  # fmt: skip

    @classmethod
    def from_state(cls, d: dict) -> "Proc":
        return cls(d["name"], d["argv"], Path(d["workdir"]), d.get("netns"), d.get("ready_line"), None, d["pid"], d.get("started"))


class ProcGroup:
    """Every process one test, scenario or lab command starts; ``close()`` stops them all."""

    def __init__(self) -> None:
        self.procs: dict[str, Proc] = {}

    def start(self, proc: Proc, timeout: float = START_TIMEOUT, wait: bool = True) -> Proc:
        old = self.procs.get(proc.name)
        if old is not None and old.running():
            raise RuntimeError(f"{proc.name} is already running (pid {old.pid})")
        self.procs[proc.name] = proc  # registered before the start: a failed start is cleaned up too
        return proc.start(timeout, wait)

    def __getitem__(self, name: str) -> Proc:
        return self.procs[name]

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        return self.procs[name].stop(sig, timeout)

    def close(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop everything, newest first (shippers before the servers they talk to)."""
        for proc in reversed(list(self.procs.values())):
            with contextlib.suppress(Exception):
                proc.stop(signal.SIGTERM, timeout)

    def __enter__(self) -> "ProcGroup":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def to_state(self) -> list[dict]:
        return [p.to_state() for p in self.procs.values()]

    @classmethod
    def from_state(cls, items: list[dict]) -> "ProcGroup":
        group = cls()
        for d in items:
            group.procs[d["name"]] = Proc.from_state(d)
        return group


# -- the project's processes -------------------------------------------------------------------

def aggregator_proc(name: str, workdir: Path, transport: str, address: str, output: Path, *args, netns: str | None = None) -> Proc:
    """An ``aggregator``; ready at "listening on ADDR" (the address is then ``listening_address``)."""
    argv = [console_script("aggregator"), transport, "--address", address, "--output", output,
            "--stats-file", workdir / f"{name}.stats.json", "--ready-file", workdir / f"{name}.ready.json", *args]  # fmt: skip
    return Proc(name, [str(a) for a in argv], workdir, netns, ready_line="listening on ")


def listening_address(proc: Proc) -> str:
    line = proc.ready_text() or ""
    return line[len("listening on "):].strip()


def producer_proc(name: str, workdir: Path, transport: str, address: str, producer_id: str, count: int, *args,
                  netns: str | None = None) -> Proc:  # fmt: skip
    """A ``producer`` (no readiness: it runs to completion; its summary is ``NAME.summary.json``)."""
    argv = [console_script("producer"), transport, "--address", address, "--id", producer_id, "--count", count,
            "--quiet", "--summary-json", workdir / f"{name}.summary.json", *args]  # fmt: skip
    return Proc(name, [str(a) for a in argv], workdir, netns)


def shipper_proc(name: str, workdir: Path, file: Path, servers: str, host: str, *args, netns: str | None = None) -> Proc:
    """A ``shipper``; ready when it says "shipping" (connected, the LOGS stream exists)."""
    argv = [console_script("shipper"), "--file", file, "--servers", servers, "--host", host,
            "--checkpoint", workdir / f"{name}.checkpoint.json", "--stats-file", workdir / f"{name}.stats.json", *args]  # fmt: skip
    return Proc(name, [str(a) for a in argv], workdir, netns, ready_line="shipping ")


def nats_proc(name: str, workdir: Path, config: Path, netns: str | None = None) -> Proc:
    """A ``nats-server -c CONFIG``; ready at its log line "Server is ready" (client port listening).
    JetStream in a cluster needs more (a meta leader): ``natslab.cluster`` waits for that."""
    return Proc(name, [nats_server_binary() or "nats-server", "-c", str(config)], workdir, netns, ready_line="*Server is ready")
