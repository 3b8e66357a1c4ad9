"""The whole pipeline on N simulated hosts: per host an aggregator, producers and a shipper, and a
NATS deployment they ship into. Used by the tests, ``loglab torture``, ``loglab bench`` (scenario
``pipeline``) and ``loglab hosts``, so all of them start and stop it the same way.

::

    with Pipeline(workdir, hosts=3, nats_nodes=3, mode="auto") as p:   # namespaces when possible
        p.run_producers(4, 10_000, "--rate", 5000)                      # on every host, to completion
        p.wait_stream_messages(3 * 4 * 10_000)
        read, result = p.readback(p.expected(4, 10_000))                # every (host, producer, seq) once?

Placement: NATS node i runs on host i (namespaces), so a three-node cluster needs three hosts;
on loopback every node is a process on 127.0.0.1 with free ports. Each host has its own directory
(Unix sockets are not separated by network namespaces) and its aggregator listens on a Unix socket
there; the socket's directory is a short one under /tmp (socket paths are limited to 107 bytes).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

from shipper.stream import DEFAULT_MAX_BYTES, STREAM

from .cluster import NatsDeployment
from .hosts import Host, Hosts
from benchmarks.processes import AggregatorProc, Proc, ProcGroup, ProducerProc, shipper_proc, wait_until
from .readback import check, expected_for, read_stream

OUTPUT = "aggregated_logs.jsonl"


class Pipeline:
    def __init__(self, workdir: Path, hosts: int = 1, nats_nodes: int = 1, mode: str = "loopback",
                 stream_max_bytes: int = DEFAULT_MAX_BYTES, shipper_args: tuple = (), aggregator_args: tuple = (),
                 lab_id: str | None = None) -> None:  # fmt: skip
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.group = ProcGroup()
        self.hosts = Hosts(hosts, self.workdir, mode=mode, lab_id=lab_id)
        self.nats_nodes = nats_nodes
        self.stream_max_bytes = stream_max_bytes
        self.shipper_args = tuple(shipper_args)
        self.aggregator_args = tuple(aggregator_args)
        self.sockdir = Path(tempfile.mkdtemp(prefix="ll-sock-"))
        self.nats: NatsDeployment | None = None
        self.addresses: dict[str, str] = {}
        self._producer_runs = 0

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> "Pipeline":
        try:
            self.hosts.create()
            hs = self.hosts.hosts
            if self.hosts.mode == "netns":
                if self.nats_nodes > len(hs):
                    raise ValueError(f"{self.nats_nodes} NATS nodes need as many hosts (have {len(hs)})")
                places = [(h.address, h.netns) for h in hs[: self.nats_nodes]]
            else:
                places = None
            self.nats = NatsDeployment(self.workdir / "nats", self.group, self.nats_nodes, places,
                                       control_netns=self.hosts.lab_ns)  # fmt: skip
            self.nats.start()
            self.nats.ensure_stream(self.stream_max_bytes)
            for h in hs:
                self.start_aggregator(h)
            for h in hs:
                self.start_shipper(h)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop everything (shippers first, then aggregators, then NATS) and delete the hosts."""
        try:
            self.group.close()
        finally:
            self.hosts.close()
            shutil.rmtree(self.sockdir, ignore_errors=True)

    def __enter__(self) -> "Pipeline":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> str:
        kind = "one NATS node (R1)" if self.nats_nodes == 1 else f"a {self.nats_nodes}-node NATS cluster (R{self.nats_nodes})"
        return f"{self.hosts.describe()}; {kind}"

    # -- per host ---------------------------------------------------------------------------------
    def host(self, name: str) -> Host:
        return next(h for h in self.hosts.hosts if h.name == name)

    def output(self, host: Host) -> Path:
        return host.dir / OUTPUT

    def start_aggregator(self, host: Host) -> Proc:
        sock = self.sockdir / f"{host.name}.sock"
        proc = self.group.start(AggregatorProc("unixsock", host.dir, *self.aggregator_args, address=str(sock),
                                               output=self.output(host), netns=host.netns, name=f"agg-{host.name}"))  # fmt: skip
        self.addresses[host.name] = proc.address
        return proc

    def start_shipper(self, host: Host, *extra, wait: bool = True) -> Proc:
        proc = shipper_proc(f"shipper-{host.name}", host.dir, self.output(host), self.nats.servers, host.name,
                            "--replicas", self.nats_nodes, *self.shipper_args, *extra, netns=host.netns)  # fmt: skip
        proc.argv = [str(a) for a in proc.argv]
        return self.group.start(proc, wait=wait)

    def shipper(self, host: Host) -> Proc:
        return self.group[f"shipper-{host.name}"]

    def aggregator(self, host: Host) -> Proc:
        return self.group[f"agg-{host.name}"]

    def shipper_stats(self, host: Host) -> dict:
        try:
            return json.loads((host.dir / f"shipper-{host.name}.stats.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def rotate(self, host: Host, suffix: str = ".1") -> Path:
        """External rotation: ``mv`` the output aside, then SIGUSR1 the aggregator (it reopens)."""
        out = self.output(host)
        rotated = out.with_name(out.name + suffix)
        os.rename(out, rotated)
        self.aggregator(host).send(signal.SIGUSR1)
        return rotated

    # -- producers --------------------------------------------------------------------------------
    def start_producers(self, producers: int, count: int, *args, hosts: list[Host] | None = None, prefix: str = "p") -> list[Proc]:
        """``producers`` producers (ids p0, p1, ... with ``prefix`` p) on every host (in its namespace)."""
        self._producer_runs += 1
        started = []
        for h in hosts or self.hosts.hosts:
            for i in range(producers):
                name = f"prod{self._producer_runs}-{h.name}-{prefix}{i}"
                started.append(self.group.start(ProducerProc("unixsock", self.addresses[h.name], f"{prefix}{i}", count, h.dir,
                                                             "--quiet", *args, netns=h.netns, name=name)))  # fmt: skip
        return started

    def run_producers(self, producers: int, count: int, *args, timeout: float = 300.0, prefix: str = "p") -> list[Proc]:
        started = self.start_producers(producers, count, *args, prefix=prefix)
        for p in started:
            p.wait(timeout)
            if p.returncode() != 0:
                raise RuntimeError(f"{p.name} exited {p.returncode()}:\n{p.tail()}")
        return started

    def expected(self, producers: int, count: int, prefix: str = "p") -> dict[str, int]:
        return expected_for([h.name for h in self.hosts.hosts], producers, count, prefix)

    # -- the stream -------------------------------------------------------------------------------
    def stream_state(self) -> dict:
        servers = self.nats.urls

        async def info() -> dict:
            import nats

            nc = await nats.connect(servers, connect_timeout=2, max_reconnect_attempts=2)
            try:
                st = (await nc.jetstream(timeout=5).stream_info(STREAM)).state
                return {"messages": st.messages, "bytes": st.bytes, "last_seq": st.last_seq}
            finally:
                await nc.close()

        return self.nats.client(info, timeout=30)

    def wait_stream_messages(self, n: int, timeout: float = 120.0) -> dict:
        def enough():
            try:
                st = self.stream_state()
            except Exception:  # a node restarting: ask again
                return None
            return st if st["messages"] >= n else None

        return wait_until(enough, f"{n} messages in stream {STREAM}", timeout, interval=0.2)

    def wait_shipped(self, timeout: float = 120.0) -> None:
        """Until every shipper has acknowledged its whole file (lag 0 in its stats)."""
        for h in self.hosts.hosts:
            size = lambda: self.output(h).stat().st_size if self.output(h).exists() else 0  # noqa: E731
            wait_until(lambda: (s := self.shipper_stats(h)) and s.get("lag_bytes") == 0 and s.get("checkpoint_offset") == size(),
                       f"shipper on {h.name} caught up", timeout, interval=0.1)  # fmt: skip

    # -- state, for lab commands that outlive one another (loglab hosts up / produce / down) -----------
    def save_state(self, path: Path) -> None:
        state = {"version": 1, "workdir": str(self.workdir), "nats_nodes": self.nats_nodes, "sockdir": str(self.sockdir),
                 "addresses": self.addresses, "hosts": self.hosts.to_state(), "nats": self.nats.to_state(),
                 "procs": self.group.to_state(), "producer_runs": self._producer_runs, "expected": getattr(self, "expected_total", {}),
                 "shipper_args": list(self.shipper_args)}  # fmt: skip
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load_state(cls, path: Path) -> "Pipeline":
        d = json.loads(Path(path).read_text())
        self = cls.__new__(cls)
        self.workdir, self.nats_nodes, self.sockdir = Path(d["workdir"]), d["nats_nodes"], Path(d["sockdir"])
        self.stream_max_bytes, self.shipper_args, self.aggregator_args = DEFAULT_MAX_BYTES, tuple(d.get("shipper_args", ())), ()
        self.addresses, self._producer_runs = d["addresses"], d["producer_runs"]
        self.expected_total = d.get("expected", {})
        self.group = ProcGroup.from_state(d["procs"])
        self.hosts = Hosts.from_state(d["hosts"], self.workdir)
        self.nats = NatsDeployment.from_state(d["nats"], self.group)
        return self

    def readback(self, expected: dict[str, int]):
        read, records = self.nats.client(lambda: read_stream(self.nats.urls), timeout=300)
        return read, check(records, expected)
