"""Simulated hosts: network namespaces on a private bridge inside a namespace of the lab's own.

::

    root namespace (this machine; nothing of the lab is attached to it)
      ll<ID>-lab   the lab's namespace: bridge ll0 (198.18.<N>.254/24), one veth end per host
        ├── ll<ID>-h1   veth eth0 198.18.<N>.1/24, lo   (its own aggregator, producers, shipper, NATS node)
        ├── ll<ID>-h2   veth eth0 198.18.<N>.2/24, lo
        └── ll<ID>-h3   ...

The hosts have no default route and the lab's namespace has no link to the root namespace, so no
packet can leave the machine. 198.18.0.0/15 is the range reserved for network benchmark tests (RFC
2544): no real network uses it. Unix sockets are not separated by network namespaces, so each host
gets its own directory. ``Hosts.close()`` kills what runs inside and deletes every namespace, and
``Hosts`` is a context manager so this happens on failure too; ``remove_stale(prefix)`` deletes
namespaces a killed lab left behind.

Without the privilege to create namespaces (not root, no ``ip``, a sandbox that forbids it),
``Hosts(..., mode="auto")`` falls back to loopback: every host is 127.0.0.1 with its own directory,
and ``mode``/``fallback_reason`` say so (the lab's output and reports print them).

The lab's own processes (the NATS client that creates the stream, the read-back) reach the hosts'
addresses from the lab namespace: ``run_async(factory, netns=...)`` runs a coroutine in a thread that
entered that namespace with setns(2) (a thread's network namespace is its own; sockets keep the
namespace they were created in).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNET = 0x40000000
SUBNET_BASE = "198.18"


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip() or r.returncode}")
    return r


def namespaces_unavailable() -> str | None:
    """None if this process can create network namespaces, else why not (the skip reason)."""
    if os.geteuid() != 0:
        return "not root: creating network namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    name = f"llprobe{os.getpid()}"
    r = _ip("netns", "add", name, check=False)
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip()}"
    try:
        r = _ip("link", "add", "llprobebr", "type", "bridge", netns=name, check=False)
        if r.returncode != 0:
            return f"cannot create a bridge in a namespace: {r.stderr.strip()}"
    finally:
        _ip("netns", "del", name, check=False)
    return None


@dataclass
class Host:
    name: str  # h1, h2, ...: also the shipper's --host and the subject logs.<name>
    address: str  # where its servers listen: 198.18.N.i in a namespace, else 127.0.0.1
    netns: str | None
    dir: Path


class Hosts:
    """N hosts: ``with Hosts(3, workdir) as hosts: ...`` (``mode`` "netns", "loopback" or "auto")."""

    def __init__(self, n: int, workdir: Path, mode: str = "auto", lab_id: str | None = None) -> None:
        self.n = n
        self.workdir = Path(workdir)
        self.lab_id = lab_id or secrets.token_hex(2)
        self.prefix = f"ll{self.lab_id}"
        self.lab_ns: str | None = None
        self.hosts: list[Host] = []
        self.fallback_reason: str | None = None
        self.subnet = f"{SUBNET_BASE}.{int(self.lab_id, 16) % 250}"
        if mode not in ("auto", "netns", "loopback"):
            raise ValueError(f"mode must be auto, netns or loopback, not {mode!r}")
        if mode == "loopback":
            self.mode, self.fallback_reason = "loopback", "loopback asked for"
        else:
            why = namespaces_unavailable()
            if why is not None and mode == "netns":
                raise RuntimeError(f"network namespaces unavailable: {why}")
            self.mode = "loopback" if why else "netns"
            self.fallback_reason = why

    def describe(self) -> str:
        if self.mode == "netns":
            return f"{self.n} hosts in network namespaces {self.prefix}-h1..h{self.n} on a private bridge ({self.subnet}.0/24) in {self.lab_ns}"
        return f"{self.n} hosts as processes on loopback (no namespaces: {self.fallback_reason})"

    def create(self) -> "Hosts":
        try:
            if self.mode == "netns":
                self._create_namespaces()
            else:
                for i in range(1, self.n + 1):
                    self.hosts.append(Host(f"h{i}", "127.0.0.1", None, self._host_dir(i)))
        except BaseException:
            self.close()
            raise
        return self

    def _host_dir(self, i: int) -> Path:
        d = self.workdir / f"h{i}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _create_namespaces(self) -> None:
        lab = self.lab_ns = f"{self.prefix}-lab"
        _ip("netns", "add", lab)
        _ip("link", "set", "lo", "up", netns=lab)
        _ip("link", "add", "ll0", "type", "bridge", netns=lab)
        _ip("addr", "add", f"{self.subnet}.254/24", "dev", "ll0", netns=lab)
        _ip("link", "set", "ll0", "up", netns=lab)
        for i in range(1, self.n + 1):
            ns = f"{self.prefix}-h{i}"
            _ip("netns", "add", ns)
            self.hosts.append(Host(f"h{i}", f"{self.subnet}.{i}", ns, self._host_dir(i)))
            _ip("link", "set", "lo", "up", netns=ns)
            # The pair is made inside the host's namespace, its bridge end moved to the lab's:
            # neither end ever exists in the root namespace.
            _ip("link", "add", "eth0", "type", "veth", "peer", "name", f"b{i}", netns=ns)
            _ip("link", "set", f"b{i}", "netns", lab, netns=ns)
            _ip("addr", "add", f"{self.subnet}.{i}/24", "dev", "eth0", netns=ns)
            _ip("link", "set", "eth0", "up", netns=ns)
            _ip("link", "set", f"b{i}", "master", "ll0", netns=lab)
            _ip("link", "set", f"b{i}", "up", netns=lab)

    def close(self) -> None:
        """Kill every process left in the lab's namespaces and delete them (idempotent)."""
        if self.mode != "netns":
            return
        remove_stale(self.prefix)
        self.lab_ns = None

    def __enter__(self) -> "Hosts":
        return self.create()

    def __exit__(self, *exc) -> None:
        self.close()

    def to_state(self) -> dict:
        return {"n": self.n, "lab_id": self.lab_id, "mode": self.mode, "fallback_reason": self.fallback_reason,
                "lab_ns": self.lab_ns, "subnet": self.subnet,
                "hosts": [{"name": h.name, "address": h.address, "netns": h.netns, "dir": str(h.dir)} for h in self.hosts]}  # fmt: skip

    @classmethod
    def from_state(cls, d: dict, workdir: Path) -> "Hosts":
        self = cls.__new__(cls)
        self.n, self.workdir, self.lab_id = d["n"], Path(workdir), d["lab_id"]
        self.prefix, self.mode, self.fallback_reason = f"ll{self.lab_id}", d["mode"], d.get("fallback_reason")
        self.lab_ns, self.subnet = d.get("lab_ns"), d["subnet"]
        self.hosts = [Host(h["name"], h["address"], h["netns"], Path(h["dir"])) for h in d["hosts"]]
        return self


def remove_stale(prefix: str = "ll") -> list[str]:
    """Delete the namespaces named ``<prefix>-*`` (a lab's), killing what still runs in them."""
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    names = [line.split()[0] for line in r.stdout.splitlines() if line.split() and line.split()[0].startswith(prefix + "-")]
    for name in names:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        _ip("netns", "del", name, check=False)
    return names


# -- running the lab's own client code inside a namespace --------------------------------------

_libc = None


def _setns(name: str) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def run_async(factory, netns: str | None = None, timeout: float | None = None):
    """``asyncio.run(factory())``; with ``netns``, in a thread that entered that namespace (the
    calling thread stays where it is). Returns the coroutine's result or raises its exception."""
    if netns is None:
        return asyncio.run(factory())
    box: dict = {}

    def target() -> None:
        try:
            _setns(netns)
            box["result"] = asyncio.run(factory())
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    t = threading.Thread(target=target, name=f"netns-{netns}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"code in namespace {netns} still running after {timeout} s")
    if "error" in box:
        raise box["error"]
    return box.get("result")
