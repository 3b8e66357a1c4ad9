"""Helpers for the fault, hostile-client, security and fuzz tests, and for benchmarks/torture.py
and benchmarks/soak.py (plain functions, no pytest dependency).

* ``Aggregator``: one ``aggregator`` subprocess. Readiness is its stdout line ``listening on ADDR``
  plus its ``--ready-file``; never a sleep. ``close()`` kills it if still running and removes what
  it left (socket files are removed by the aggregator itself on a clean stop).
* ``Client``: a raw client sending exact bytes over any transport.
* ``tmpfs(size)``: a small tmpfs (root only), unmounted on exit whatever happens.
* ``wait_until``: polls a condition with a deadline (for conditions without a signal of their own).
* ``proc_status(pid)``: VmRSS / VmHWM (bytes) and the open-fd count of a process.
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
from pathlib import Path

import orjson

from aggregator.sink import rejects_path_for as rejects_path  # the product's own rule, not a copy

BIN = Path(sys.executable).parent
AGGREGATOR = str(BIN / "aggregator") if (BIN / "aggregator").exists() else (shutil.which("aggregator") or "aggregator")
PRODUCER = str(BIN / "producer") if (BIN / "producer").exists() else (shutil.which("producer") or "producer")

TRANSPORTS = ("unixsock", "unixgram", "tcp", "udp", "fifo")
STREAM = ("unixsock", "tcp", "fifo")
SOCKET_STREAM = ("unixsock", "tcp")
DATAGRAM = ("unixgram", "udp")
RELIABLE = ("unixsock", "unixgram", "tcp", "fifo")
PATHS = ("unixsock", "unixgram", "fifo")

DEADLINE = 30.0


def wait_until(predicate, what: str, timeout: float = DEADLINE, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        time.sleep(interval)


def whole_lines(path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    lines.pop()
    return lines


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def jsonl(path: Path) -> list[dict]:
    # orjson: the stdlib's recursion limit is below the accepted depth (1024); the stdlib for what
    # orjson refuses but the aggregator keeps (a number beyond a double, such as 1e400).
    records = []
    for line in whole_lines(path):
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            records.append(json.loads(line))
    return records


def seqs_of(records: list[dict], producer: str) -> list[int]:
    return [r["seq"] for r in records if r.get("producer") == producer]


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


def short_tempdir(prefix: str = "loglab-f-") -> Path:
    """AF_UNIX paths are limited to 107 bytes; pytest's tmp_path may be longer."""
    return Path(tempfile.mkdtemp(prefix=prefix))


class Aggregator:
    def __init__(self, transport: str, workdir: Path, *args, address: str | None = None, output: Path | None = None,
                 sockdir: Path | None = None, env: dict | None = None, stats_interval: float | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.transport = transport
        self.workdir = workdir
        self.output = output or workdir / "out.jsonl"
        self.rejects = rejects_path(self.output)
        self.stats_file = workdir / "stats.json"
        self.ready_file = workdir / "ready.json"
        self.stderr_path = workdir / "aggregator.stderr"
        self._own_sockdir = None
        if address is None:
            if transport in PATHS:
                if sockdir is None:
                    sockdir = self._own_sockdir = short_tempdir()
                address = str(sockdir / f"{transport}.sock")
            else:
                address = "127.0.0.1:0"
        where = [] if address == "default" else ["--address", address]
        self.command = [AGGREGATOR, transport, *where, "--output", str(self.output),
                        "--stats-file", str(self.stats_file), "--ready-file", str(self.ready_file), *map(str, args)]
        if stats_interval:
            self.command += ["--stats-interval", str(stats_interval)]
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.address: str | None = None

    def start(self, timeout: float = DEADLINE) -> "Aggregator":
        with contextlib.suppress(FileNotFoundError):
            self.ready_file.unlink()
        self._err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err, env=self.env)
        line = _first_line(self.proc, timeout)
        if not line or not line.startswith("listening on "):
            self.close()
            raise AssertionError(f"aggregator not ready: {line!r} rc={self.proc.returncode}\n{self.stderr()}")
        self.address = line[len("listening on "):]
        wait_until(lambda: self.ready_file.exists() or self.proc.poll() is not None, "ready file", timeout)
        assert json.loads(self.ready_file.read_text())["pid"] == self.proc.pid
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout: float = DEADLINE) -> int:
        if self.running():
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"aggregator still running {timeout} s after {sig!r}:\n{self.stderr()}") from None

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(10)
            if self.proc.stdout:
                self.proc.stdout.close()
        if getattr(self, "_err", None) is not None:
            self._err.close()
            self._err = None
        if self._own_sockdir is not None:
            shutil.rmtree(self._own_sockdir, ignore_errors=True)

    def __enter__(self) -> "Aggregator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stats(self) -> dict:
        return json.loads(self.stats_file.read_text())

    def records(self) -> list[dict]:
        return jsonl(self.output)

    def reject_records(self) -> list[dict]:
        return jsonl(self.rejects)

    def wait_lines(self, n: int, timeout: float = DEADLINE) -> None:
        def enough():
            if not self.running():
                raise AssertionError(f"aggregator exited {self.proc.returncode}:\n{self.stderr()}")
            return count_lines(self.output) >= n
        wait_until(enough, f"{n} lines in {self.output}", timeout)

    def wait_rejects(self, n: int, timeout: float = DEADLINE) -> None:
        wait_until(lambda: count_lines(self.rejects) >= n, f"{n} rejects in {self.rejects}", timeout)

    def wait_stats(self, predicate, what: str, timeout: float = DEADLINE) -> dict:
        """Needs ``stats_interval``: wait until the periodic stats file satisfies ``predicate``."""
        def check():
            try:
                s = self.stats()
            except (FileNotFoundError, json.JSONDecodeError):
                return None
            return s if predicate(s) else None
        return wait_until(check, what, timeout, interval=0.05)


def _first_line(proc: subprocess.Popen, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    data = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or (not sel.select(left) and proc.poll() is not None):
                return None
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                return None
            data += chunk
    return data.split(b"\n", 1)[0].decode()


class Client:
    """Raw bytes to an aggregator: a connection (stream), a connected datagram socket, or a FIFO fd."""

    def __init__(self, transport: str, address: str, timeout: float = DEADLINE) -> None:
        self.transport = transport
        self.sock = None
        self.fd = None
        if transport == "fifo":
            self.fd = os.open(address, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.set_blocking(self.fd, True)
            return
        if transport in PATHS:
            family, target = socket.AF_UNIX, address
        else:
            host, _, port = address.rpartition(":")
            family, target = socket.AF_INET, (host, int(port))
        kind = socket.SOCK_DGRAM if transport in DATAGRAM else socket.SOCK_STREAM
        self.sock = socket.socket(family, kind)
        self.sock.settimeout(timeout)
        self.sock.connect(target)

    def send(self, data: bytes) -> None:
        if self.fd is not None:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        elif self.transport in DATAGRAM:
            assert self.sock.send(data) == len(data)
        else:
            self.sock.sendall(data)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def producer(transport: str, address: str, pid_id: str, count: int, workdir: Path, *args) -> subprocess.Popen:
    """Start a real ``producer``; its summary goes to ``workdir/<id>.json``."""
    return subprocess.Popen(
        [PRODUCER, transport, "--address", address, "--id", pid_id, "--count", str(count), "--quiet",
         "--summary-json", str(workdir / f"{pid_id}.json"), *map(str, args)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def producer_summary(workdir: Path, pid_id: str) -> dict:
    return json.loads((workdir / f"{pid_id}.json").read_text())


def reap(procs, timeout: float = DEADLINE) -> None:
    """Kill whatever is still running among ``procs`` (Popen objects) and wait for them."""
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout)


# A child that writes N whole lines and then half a line, says "ok", and waits to be killed: a
# producer SIGKILLed mid-line. Deterministic, unlike killing a real producer at a random moment.
HALF_LINE_WRITER = r"""
import json, os, socket, sys
transport, address, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if transport == "fifo":
    fd = os.open(address, os.O_WRONLY)
    write = lambda b: os.write(fd, b)
else:
    if transport == "tcp":
        host, _, port = address.rpartition(":"); s = socket.create_connection((host, int(port)))
    else:
        s = socket.socket(socket.AF_UNIX); s.connect(address)
    write = s.sendall
for i in range(n):
    write(json.dumps({"producer": "victim", "seq": i}).encode() + b"\n")
write(b'{"producer": "victim", "seq": ' + str(n).encode() + b', "msg": "cut he')
print("ok", flush=True)
sys.stdin.read()
"""
HALF_LINE_TAIL = lambda n: b'{"producer": "victim", "seq": ' + str(n).encode() + b', "msg": "cut he'


def start_half_line_writer(transport: str, address: str, n: int) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HALF_LINE_WRITER, transport, address, str(n)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ok\n"
    return p


@contextlib.contextmanager
def tmpfs(size: str):
    """Mount a tmpfs of ``size`` on a fresh directory; always unmounted and removed."""
    mnt = Path(tempfile.mkdtemp(prefix="loglab-tmpfs-"))
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mnt)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise PermissionError(f"cannot mount tmpfs: {r.stderr.strip()}")
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        shutil.rmtree(mnt, ignore_errors=True)


def remount(mnt: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True, capture_output=True)


def can_mount_tmpfs() -> str | None:
    """None if possible, else why not."""
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
