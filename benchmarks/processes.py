"""One way to start and stop the project's processes: aggregators, producers, shippers, nats-server,
and the peers (which build their own command lines but start, await and stop through ``Proc``).

Every process the lab starts, in a test, a benchmark run, a torture or soak scenario, a tracing
workload or a lab command, is a ``Proc``:

* started with its stdout and stderr in files of its own directory (so a process can outlive the
  command that started it: ``loglab hosts up`` returns, ``loglab hosts down`` stops it), in a
  session of its own (a terminal's Ctrl-C reaches the harness, which stops it);
* optionally inside a network namespace (``netns``: run through ``ip netns exec``, which execs,
  so the pid is the process's own and signals reach it);
* ready when a line it prints says so (``ready_line``: the aggregator's "listening on", a
  producer's "ready" at its start barrier, nats-server's "Server is ready", the shipper's
  "shipping"), or when a predicate holds (``wait_for``, for daemons that print nothing useful);
  always with a deadline, never a fixed sleep. A process that exits before it is ready fails the
  start with the tail of its output;
* stopped with a signal and a deadline, then SIGKILL (``stop``), or killed at once (``kill``).

``ProcGroup`` owns what one test, scenario or command starts (processes, raw clients, scratch
directories) and stops it all, newest first, whatever happened. ``Lab`` is the group the tests and
the torture scenarios use: it adds fresh addresses and the common starts.

Addresses come from the transport registry (``address_for``): a path in a short private
directory for the path transports (AF_UNIX paths are limited to 107 bytes), port 0 on loopback
for the inet ones. So a new transport is served by being registered.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import orjson

from aggregator.sink import rejects_path_for
from aggregator.transports import TRANSPORTS, get_transport

BIN = Path(sys.executable).parent
DEADLINE = 30.0  # generous: the machine has two cores shared with everything else
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


# -- small shared tools ----------------------------------------------------------------------------


def wait_until(predicate, what: str, timeout: float = DEADLINE, interval: float = 0.01):
    """Poll ``predicate`` until it returns something true; fail with ``what`` after ``timeout``.
    For conditions that have no signal of their own ("the output holds N lines")."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        time.sleep(interval)


def console_script(name: str) -> str:
    """A console script of this package: beside the running interpreter (the venv), else PATH."""
    candidate = BIN / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


AGGREGATOR = console_script("aggregator")
PRODUCER = console_script("producer")


def free_ports(n: int, host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> list[int]:
    """``n`` distinct ports the kernel says are free now (bind port 0, read, release). A server
    that loses the race to another process fails to start; callers that can, retry."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, kind)
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def short_tempdir(prefix: str = "loglab-") -> Path:
    """A fresh private directory under /tmp: AF_UNIX paths must stay under 108 bytes, which
    pytest's tmp_path can exceed."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def address_for(transport: str, directory: Path, name: str = "agg") -> str:
    """A fresh address for ``transport``: a path in ``directory``, or loopback port 0."""
    t = get_transport(transport)
    return str(directory / f"{name}.{transport}") if t.address_kind == "path" else "127.0.0.1:0"


def whole_lines(path: Path) -> list[bytes]:
    """The whole lines of ``path`` (each without its newline); a torn last line is left out."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    lines.pop()
    return lines


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def jsonl(path: Path) -> list[dict]:
    """Every whole line of ``path`` as JSON. orjson: the stdlib's recursion limit is below the
    accepted depth (1024); the stdlib for what orjson refuses but the aggregator keeps (1e400)."""
    records = []
    for line in whole_lines(path):
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            records.append(json.loads(line))
    return records


def seqs_of(records: list[dict], producer: str) -> list[int]:
    """The ``seq`` of ``producer``'s records, in output order."""
    return [r["seq"] for r in records if r.get("producer") == producer]


def seqs_by_producer(records: list[dict]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in records:
        out.setdefault(r["producer"], []).append(r["seq"])
    return out


def duplicates(values) -> list:
    from collections import Counter

    return sorted(v for v, n in Counter(values).items() if n > 1)


def proc_status(pid: int) -> dict:
    """VmRSS/VmHWM in bytes and the number of open fds of ``pid``."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22): with the pid
    it names a process uniquely, so a recorded pid is never mistaken for a recycled one. None when
    there is no such process, or only its zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


# -- any process -------------------------------------------------------------------------------------


@dataclass
class Proc:
    """One process of the lab. ``name`` is unique within its group (``aggregator``, ``p3``,
    ``nats-n1``, ``shipper-h2``) and names its output files in ``workdir``."""

    name: str
    argv: list[str]
    workdir: Path
    netns: str | None = None
    ready_line: str | None = None  # a line starting with this on stdout or stderr = ready ("*TEXT": containing TEXT)
    env: dict | None = None
    stdin_pipe: bool = False  # a pipe on stdin (a producer's start barrier), else /dev/null
    cwd: Path | None = None
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
            self.popen = subprocess.Popen(
                self.command, stdin=subprocess.PIPE if self.stdin_pipe else subprocess.DEVNULL, stdout=out, stderr=err,
                env=self.env, cwd=self.cwd, start_new_session=True,
            )  # fmt: skip
        self.pid = self.popen.pid
        self.started = _start_time(self.pid)
        if wait and self.ready_line is not None:
            self.wait_ready(timeout)
        return self

    def log_text(self) -> str:
        text = []
        for path in (self.stdout_path, self.stderr_path):
            with contextlib.suppress(FileNotFoundError):
                text.append(path.read_text(errors="replace"))
        return "\n".join(text)

    def stdout_text(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.stdout_path.read_text(errors="replace")
        return ""

    def stderr_text(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.stderr_path.read_text(errors="replace")
        return ""

    def ready_text(self) -> str | None:
        """The first line that says the process is ready (or None yet)."""
        anywhere = self.ready_line.startswith("*")  # "*TEXT": TEXT anywhere (after a log prefix)
        text = self.ready_line[1:] if anywhere else self.ready_line
        for line in self.log_text().splitlines():
            if (text in line) if anywhere else line.startswith(text):
                return line
        return None

    def wait_ready(self, timeout: float = START_TIMEOUT) -> str:
        return self.wait_for(self.ready_text, f"{self.ready_line!r}", timeout)

    def wait_for(self, predicate: Callable[[], object], what: str, timeout: float = START_TIMEOUT):
        """Wait for ``predicate`` while the process runs: a readiness without a line of its own.
        The process is killed and the start fails (with its output) if it exits or the deadline
        passes first."""

        def ready():
            value = predicate()
            if not value and not self.running():
                raise RuntimeError(f"{self.name} exited ({self.returncode()}) before it was ready: {self.command}\n{self.tail()}")
            return value

        try:
            return wait_until(ready, f"{self.name} ready ({what})", timeout)
        except AssertionError:
            self.kill()
            raise RuntimeError(f"{self.name} not ready after {timeout} s: {self.command}\n{self.tail()}") from None

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

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

    def wait(self, timeout: float = DEADLINE) -> int | None:
        """Wait for the exit; the exit status when this process is our child, else None."""
        if self.popen is not None:
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{self.name} still running after {timeout} s\n{self.tail()}") from None
        wait_until(lambda: not self.running(), f"{self.name} (pid {self.pid}) to exit", timeout)
        return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """Signal (SIGTERM) and wait up to ``timeout`` for the exit status; SIGKILL if it is still
        running then, and fail: a process that does not stop when asked is a defect to see."""
        self.send(sig)
        try:
            return self.wait(timeout)
        except AssertionError:
            self.kill()
            raise

    def kill(self) -> None:
        self.send(signal.SIGKILL)
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            self.wait(10)

    def close(self) -> None:
        """Kill if still running and release the pipes: the clean-up of a test or scenario."""
        self.kill()
        if self.popen is not None and self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()

    def to_state(self) -> dict:
        return {"name": self.name, "argv": self.argv, "workdir": str(self.workdir), "netns": self.netns,
                "ready_line": self.ready_line, "pid": self.pid, "started": self.started}  # fmt: skip

    @classmethod
    def from_state(cls, d: dict) -> "Proc":
        return cls(d["name"], d["argv"], Path(d["workdir"]), d.get("netns"), d.get("ready_line"), pid=d["pid"], started=d.get("started"))


# -- the aggregator ------------------------------------------------------------------------------------


class AggregatorProc(Proc):
    """An ``aggregator``: ready at "listening on ADDR" and its ready file (pid checked); its
    output, rejects and stats files are in ``workdir`` unless given.

    ``address``: None = a fresh one (``address_for``, in a short private directory this object
    removes); "default" = the aggregator's own default (no ``--address``); or the address itself.
    Use it as a context manager (started on enter, killed and cleaned up on exit), or through a
    ``ProcGroup``.
    """

    def __init__(self, transport: str, workdir: Path, *args, address: str | None = None, output: Path | None = None,
                 stats_interval: float | None = None, env: dict | None = None, netns: str | None = None,
                 name: str = "aggregator") -> None:  # fmt: skip
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.transport = transport
        self.output = Path(output) if output is not None else workdir / "aggregated_logs.jsonl"
        self.rejects = rejects_path_for(self.output)
        self.stats_file = workdir / f"{name}.stats.json"
        self.ready_file = workdir / f"{name}.ready.json"
        self._own_dir: Path | None = None
        if address is None:
            self._own_dir = short_tempdir("loglab-a-") if get_transport(transport).address_kind == "path" else None
            address = address_for(transport, self._own_dir or workdir)
        self.requested_address = address
        self.address: str | None = None
        where = [] if address == "default" else ["--address", address]
        argv = [AGGREGATOR, transport, *where, "--output", self.output, "--stats-file", self.stats_file,
                "--ready-file", self.ready_file, *args]  # fmt: skip
        if stats_interval:
            argv += ["--stats-interval", stats_interval]
        super().__init__(name, [str(a) for a in argv], workdir, netns, "listening on ", env)

    def start(self, timeout: float = START_TIMEOUT, wait: bool = True, wait_ready_file: bool = True) -> "AggregatorProc":
        """Start and wait for "listening on ADDR" and (unless told not to) the ready file."""
        with contextlib.suppress(FileNotFoundError):
            self.ready_file.unlink()
        super().start(timeout, wait)
        if wait and self.ready_line is not None:
            self.address = self.ready_text()[len("listening on "):].strip()
        if wait and (wait_ready_file or self.address is None):
            # ready_line None: stdout is not ours to read (a test gives it a dead terminal).
            info = self.wait_for(self._ready_info, f"ready file {self.ready_file}", timeout)
            if info.get("pid") != self.pid or info.get("address") != (self.address or info.get("address")):
                raise RuntimeError(f"ready file {self.ready_file} does not match: {info}")
            self.address = info["address"]
        return self

    def _ready_info(self) -> dict | None:
        try:
            return json.loads(self.ready_file.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def close(self) -> None:
        super().close()
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def __enter__(self) -> "AggregatorProc":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what it wrote ------------------------------------------------------------------------------
    def stats(self) -> dict:
        return json.loads(self.stats_file.read_text())

    def records(self) -> list[dict]:
        return jsonl(self.output)

    def output_lines(self) -> list[bytes]:
        return whole_lines(self.output)

    def reject_records(self) -> list[dict]:
        return jsonl(self.rejects)

    def _alive(self) -> None:
        if not self.running():
            raise AssertionError(f"aggregator exited ({self.returncode()}):\n{self.tail()}")

    def wait_lines(self, n: int, timeout: float = DEADLINE) -> None:
        """Until the output holds at least ``n`` whole lines."""
        wait_until(lambda: self._alive() or count_lines(self.output) >= n, f"{n} lines in {self.output}", timeout)

    def wait_rejects(self, n: int, timeout: float = DEADLINE) -> None:
        wait_until(lambda: count_lines(self.rejects) >= n, f"{n} lines in {self.rejects}", timeout)

    def wait_stats(self, predicate, what: str, timeout: float = DEADLINE) -> dict:
        """With ``stats_interval``: until the periodic stats file satisfies ``predicate``."""

        def check():
            try:
                s = self.stats()
            except (FileNotFoundError, json.JSONDecodeError):
                return None
            return s if predicate(s) else None

        return wait_until(check, what, timeout, interval=0.05)


# -- producers ---------------------------------------------------------------------------------------------


class ProducerProc(Proc):
    """A ``producer``: runs to completion; its summary is ``NAME.summary.json`` in ``workdir``.
    ``barrier``: it connects, says "ready" and waits for ``go()`` (``--start-on-stdin``).
    ``summary=False``: no summary file (a tracer counting the producer's syscalls must not see
    the file it would write at the end)."""

    def __init__(self, transport: str, address: str, producer_id: str, count: int, workdir: Path, *args,
                 barrier: bool = False, summary: bool = True, netns: str | None = None,
                 name: str | None = None) -> None:  # fmt: skip
        self.id = producer_id
        self.count = count
        name = name or f"producer-{producer_id}"
        self.summary_path = Path(workdir) / f"{name}.summary.json"
        wants_summary = ["--summary-json", self.summary_path] if summary else []
        argv = [PRODUCER, transport, "--address", address, "--id", producer_id, "--count", count,
                *wants_summary, *args]  # fmt: skip
        if barrier:
            argv.append("--start-on-stdin")
        super().__init__(name, [str(a) for a in argv], Path(workdir), netns, "ready" if barrier else None, stdin_pipe=barrier)

    def go(self) -> None:
        """Lift the start barrier."""
        self.popen.stdin.write(b"go\n")
        self.popen.stdin.close()

    def summary(self) -> dict:
        return json.loads(self.summary_path.read_text())

    @property
    def sent(self) -> int:
        """What the producer was told was sent; 0 if it never connected (no summary then)."""
        try:
            return self.summary()["sent"]
        except FileNotFoundError:
            return 0


def start_producer(transport: str, address: str, producer_id: str, count: int, workdir: Path, *args) -> ProducerProc:
    """A started ``producer --quiet`` (its summary: ``producer_summary(workdir, producer_id)``)."""
    return ProducerProc(transport, address, producer_id, count, workdir, "--quiet", *args).start()


def producer_summary(workdir: Path, producer_id: str) -> dict:
    """The summary of the producer ``producer_id`` started in ``workdir`` (FileNotFoundError if
    it wrote none: it never connected)."""
    return json.loads((Path(workdir) / f"producer-{producer_id}.summary.json").read_text())


def shipper_proc(name: str, workdir: Path, file: Path, servers: str, host: str, *args, netns: str | None = None) -> Proc:
    """A ``shipper``; ready when it says "shipping" (connected, the LOGS stream exists, its query
    agent answering), or with ``--no-ship`` "answering queries"."""
    argv = [console_script("shipper"), "--file", file, "--servers", servers, "--host", host,
            "--checkpoint", workdir / f"{name}.checkpoint.json", "--stats-file", workdir / f"{name}.stats.json", *args]  # fmt: skip
    ready = "answering queries " if "--no-ship" in [str(a) for a in args] else "shipping "
    return Proc(name, [str(a) for a in argv], workdir, netns, ready_line=ready)


def querier_argv(servers: str, *args, netns: str | None = None) -> list[str]:
    """A ``querier`` command line, inside ``netns`` (the lab's namespace when the hosts are
    namespaces: their NATS nodes are reachable only from there)."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return prefix + [console_script("querier"), "--servers", servers, *(str(a) for a in args)]


def querier_proc(name: str, workdir: Path, servers: str, *args, netns: str | None = None) -> Proc:
    """A ``querier`` run as a ``Proc`` (its output in files of ``workdir``): to kill it mid-answer."""
    return Proc(name, [console_script("querier"), "--servers", servers, *(str(a) for a in args)], workdir, netns)


def distributor_proc(name: str, workdir: Path, servers: str, *args, netns: str | None = None) -> Proc:
    """A ``distributor`` (replica ``--id NAME``); ready when it says "distributing" (connected, the
    consumer, the buckets and the dead-letter stream exist, the membership read). Its stats file:
    ``NAME.stats.json`` in ``workdir``."""
    argv = [console_script("distributor"), "--servers", servers, "--id", name, "--stats-file", workdir / f"{name}.stats.json", *args]
    return Proc(name, [str(a) for a in argv], workdir, netns, ready_line="distributing ")


def analyzer_proc(analyzer_id: str, workdir: Path, servers: str, weight: float, *args, netns: str | None = None) -> Proc:
    """An ``analyzer --id ID --weight W``; ready when it says "analyzer ID ready" (subscribed,
    registered, first heartbeat sent). Its stats file ``ID.stats.json`` and ledger ``ID.ledger`` (every
    acknowledged record) are in ``workdir``."""
    argv = [console_script("analyzer"), "--servers", servers, "--id", analyzer_id, "--weight", weight,
            "--stats-file", workdir / f"{analyzer_id}.stats.json", "--ledger", workdir / f"{analyzer_id}.ledger", *args]  # fmt: skip
    return Proc(analyzer_id, [str(a) for a in argv], workdir, netns, ready_line=f"analyzer {analyzer_id} ready")


def distributor_http_proc(name: str, workdir: Path, servers: str, port: int, *args, netns: str | None = None) -> Proc:
    """A ``distributor-http`` (FastAPI on uvicorn) on 127.0.0.1:PORT; ready at its "serving" line."""
    argv = [console_script("distributor-http"), "--servers", servers, "--listen", f"127.0.0.1:{port}", *args]
    return Proc(name, [str(a) for a in argv], workdir, netns, ready_line="serving ")


def locust_proc(name: str, workdir: Path, locustfile: Path, host: str, users: int, seconds: float, *args) -> Proc:
    """Locust, headless: ``users`` users (spawned at once) against ``host`` for ``seconds``; its
    CSV statistics go to ``workdir/NAME_stats.csv``. Runs to completion (no ready line)."""
    argv = [console_script("locust"), "-f", locustfile, "--headless", "--host", host, "-u", users, "-r", users,
            "--run-time", f"{max(1, int(seconds))}s", "--csv", workdir / name, "--only-summary", "--stop-timeout", "5", *args]  # fmt: skip
    return Proc(name, [str(a) for a in argv], workdir)


def observer_proc(file: Path, stamps: Path, workdir: Path) -> Proc:
    """The latency observer (``benchmarks/run/observer.py``) following ``file``; ready when it
    watches. SIGTERM makes it read once more and write its stamps to ``stamps``."""
    argv = [sys.executable, "-m", "benchmarks.run.observer", file, stamps]
    return Proc("observer", [str(a) for a in argv], workdir, ready_line="observing")


def nats_server_binary() -> str | None:
    """nats-server from PATH or Debian's /usr/sbin (not on a non-root PATH), or None."""
    return shutil.which("nats-server") or next((p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if os.access(p, os.X_OK)), None)


def nats_unavailable() -> str | None:
    """None when nats-server can be run, else why not (the reason a skip reports)."""
    if nats_server_binary() is None:
        return "nats-server is not installed (make setup-lab installs Debian's nats-server as root)"
    if importlib.util.find_spec("nats") is None:
        return "the nats-py client is not installed (make setup)"
    return None


def nats_proc(name: str, workdir: Path, config: Path, netns: str | None = None) -> Proc:
    """A ``nats-server -c CONFIG``; ready at its log line "Server is ready" (client port listening).
    JetStream in a cluster needs more (a meta leader): ``natslab.cluster`` waits for that."""
    return Proc(name, [nats_server_binary() or "nats-server", "-c", str(config)], workdir, netns, ready_line="*Server is ready")


# -- raw clients ----------------------------------------------------------------------------------------------


class Client:
    """Exact bytes to an aggregator, as a client of our own or a hostile one would send them:
    through the transport's own ``connect`` (so every registered transport has one), with a
    deadline on every operation so a stuck test fails instead of hanging."""

    def __init__(self, transport: str, address: str, timeout: float = DEADLINE) -> None:
        self.transport = transport
        self.sender = get_transport(transport).connect(address, timeout=timeout)

    def send(self, data: bytes) -> None:
        """All of ``data``: one message on message transports, any split on byte streams."""
        self.sender.write_all(data)

    def close(self) -> None:
        if self.sender is not None:
            with contextlib.suppress(OSError):
                self.sender.close()
            self.sender = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# A child that writes N whole lines and then half a line, says "ok", and waits to be killed: a
# producer SIGKILLed mid-line. Deterministic, unlike killing a real producer at a random moment.
_HALF_LINE_WRITER = r"""
import json, sys
from aggregator.transports import get_transport
transport, address, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
sender = get_transport(transport).connect(address)
for i in range(n):
    sender.write_all(json.dumps({"producer": "victim", "seq": i}).encode() + b"\n")
sender.write_all(b'{"producer": "victim", "seq": ' + str(n).encode() + b', "msg": "cut he')
print("ok", flush=True)
sys.stdin.read()
"""


def half_line_tail(n: int) -> bytes:
    return b'{"producer": "victim", "seq": ' + str(n).encode() + b', "msg": "cut he'


def start_half_line_writer(transport: str, address: str, n: int) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", _HALF_LINE_WRITER, transport, address, str(n)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    if p.stdout.readline() != b"ok\n":
        p.kill()
        raise RuntimeError("the half-line writer did not start")
    return p


# -- groups ------------------------------------------------------------------------------------------------------


class ProcGroup:
    """Everything one test, scenario or lab command starts: processes (by name), raw clients and
    scratch directories; ``close()`` stops and removes it all, newest first, whatever happened."""

    def __init__(self) -> None:
        self.procs: dict[str, Proc] = {}
        self._cleanups: list[Callable[[], None]] = []

    def start(self, proc: Proc, timeout: float = START_TIMEOUT, wait: bool = True) -> Proc:
        old = self.procs.get(proc.name)
        if old is not None and old.running():
            raise RuntimeError(f"{proc.name} is already running (pid {old.pid})")
        self.procs[proc.name] = proc  # registered before the start: a failed start is cleaned up too
        return proc.start(timeout, wait)

    def add(self, proc: Proc) -> Proc:
        """Own ``proc`` (not started yet) so that it is cleaned up with the group."""
        self.procs[proc.name] = proc
        return proc

    def on_close(self, cleanup: Callable[[], None]) -> None:
        self._cleanups.append(cleanup)

    def __getitem__(self, name: str) -> Proc:
        return self.procs[name]

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        return self.procs[name].stop(sig, timeout)

    def close(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop everything, newest first (clients before the servers they talk to)."""
        for cleanup in reversed(self._cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        for proc in reversed(list(self.procs.values())):
            with contextlib.suppress(Exception):
                if proc.running():
                    proc.stop(signal.SIGTERM, timeout)
            with contextlib.suppress(Exception):
                proc.close()

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


class Lab(ProcGroup):
    """The group the tests (``lab`` fixture) and the torture scenarios start things with: fresh
    addresses in a short private directory, and the common starts. Everything is killed and
    removed at ``close()``, pass or fail."""

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.workdir = Path(workdir)
        self.sockdir = short_tempdir("loglab-t-")
        self.on_close(lambda: shutil.rmtree(self.sockdir, ignore_errors=True))
        self._n = 0

    def _next(self, what: str) -> str:
        self._n += 1
        return f"{what}{self._n}"

    def address_for(self, transport: str) -> str:
        return address_for(transport, self.sockdir, self._next("a"))

    def aggregator(self, transport: str, *args, address: str | None = "auto", output: Path | None = None,
                   env: dict | None = None, stats_interval: float | None = None, start: bool = True) -> AggregatorProc:  # fmt: skip
        """An aggregator on a fresh address (``address=None``: its default), started and ready
        unless ``start=False``."""
        name = self._next("agg")
        agg = AggregatorProc(
            transport, self.workdir / name, *args, address=self.address_for(transport) if address == "auto" else (address or "default"),
            output=output, env=env, stats_interval=stats_interval, name="aggregator",
        )  # fmt: skip
        self.procs[name] = agg
        return agg.start() if start else agg

    def producers(self, transport: str, address: str, n: int, count: int, *args, prefix: str = "p",
                  together: bool = False) -> list[ProducerProc]:  # fmt: skip
        """Start ``n`` producers. ``together``: all connect first, then all start sending at once
        (``--start-on-stdin``), so every one of them is mid-stream when the first line lands."""
        workdir = self.workdir / self._next("producers")
        started = []
        for i in range(n):
            p = ProducerProc(transport, address, f"{prefix}{i}", count, workdir, "--quiet", *args, barrier=together)
            self.procs[f"{workdir.name}/{p.name}"] = p
            started.append(p.start())
        if together:
            for p in started:
                p.go()
        return started

    def run_producers(self, transport: str, address: str, n: int, count: int, *args, timeout: float = 60.0,
                      prefix: str = "p") -> list[ProducerProc]:  # fmt: skip
        """Run ``n`` producers to completion; return them (exit codes checked by the caller)."""
        started = self.producers(transport, address, n, count, *args, prefix=prefix)
        deadline = time.monotonic() + timeout
        for p in started:
            p.wait(max(0.1, deadline - time.monotonic()))
        return started

    def through_peer(self, peer, n: int, count: int, *args) -> list[dict]:
        """Start ``peer`` (a benchmarks.peers daemon), run ``n`` producers of ``count`` messages
        (``args``: more producer options) into it, stop it cleanly, and return its records, after
        checking that every producer's every message arrived once and every line parsed."""
        self.on_close(peer.kill)  # whatever happens; kill() after a clean stop does nothing
        address = peer.start()
        for p in self.run_producers(peer.transport, address, n, count, *args):
            assert p.returncode() == 0, p.tail()
        summary = peer.stop()
        assert summary["exit_code"] == 0 and not summary["killed"], summary
        records = list(peer.read_records())
        assert peer.parse_errors == 0, peer.bad_lines
        seen = sorted((r["producer"], r["seq"]) for r in records)
        assert seen == sorted((f"p{i}", s) for i in range(n) for s in range(count))
        assert all(r["transport"] == peer.transport and r["received_ns"] > 0 for r in records)
        return records

    def client(self, transport: str, address: str) -> Client:
        client = Client(transport, address)
        self.on_close(client.close)
        return client


def run_cli(*args, timeout: float = DEADLINE, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command to completion (one expected to exit by itself), output captured as text."""
    return subprocess.run([str(a) for a in args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=env)


def reap(procs, timeout: float = DEADLINE) -> None:
    """Kill whatever still runs among ``procs`` (``Proc`` or Popen objects) and wait for them."""
    for p in procs:
        if isinstance(p, Proc):
            p.close()
        elif p.poll() is None:
            p.kill()
    for p in procs:
        if not isinstance(p, Proc):
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout)


TRANSPORT_NAMES = tuple(TRANSPORTS)
