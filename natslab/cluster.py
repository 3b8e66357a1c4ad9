"""A JetStream deployment the lab starts and stops: one nats-server, or a three-node cluster.

Each node gets a generated config and a private store directory under the deployment's directory::

    server_name: n1
    listen: "ADDR:PORT"             client port
    http: "ADDR:PORT"               monitoring (/varz, /jsz)
    jetstream { store_dir: "DIR/n1/store", max_memory_store: 64MB, max_file_store: ... }
    cluster { name: loglab, listen: "ADDR:PORT", routes: [the other nodes] }   (three nodes only)

On loopback every port is a free one (``benchmarks.processes.free_ports``; a node that loses the race for its
port is started again on new ones). On namespaced hosts each node listens on its host's own
address with the standard ports (4222 clients, 6222 routes, 8222 monitoring): nothing else lives
in those namespaces.

Readiness: each node's "Server is ready" log line, then the JetStream API answering through a
client (a cluster elects its meta leader after the routes are up). ``ensure_stream`` creates ``LOGS``
with the deployment's replicas (1, or 3 on a cluster) and waits until it answers.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from shipper.stream import DEFAULT_MAX_BYTES, STREAM, ensure_stream

from .hosts import run_async
from benchmarks.processes import Proc, ProcGroup, free_ports, nats_proc

JS_READY_TIMEOUT = 60.0


@dataclass
class NatsNode:
    name: str
    address: str
    port: int
    cluster_port: int
    http_port: int
    store: Path
    netns: str | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.address}:{self.port}"


class NatsDeployment:
    """``nodes`` nats-servers. ``places``: one (address, netns) per node (default: loopback)."""

    def __init__(self, workdir: Path, group: ProcGroup, nodes: int = 1, places: list[tuple[str, str | None]] | None = None,
                 max_file_store: str = "8GB", control_netns: str | None = None) -> None:  # fmt: skip
        if nodes not in (1, 3):
            raise ValueError("a deployment is one node or a three-node cluster")
        self.workdir = Path(workdir)
        self.group = group
        self.places = places or [("127.0.0.1", None)] * nodes
        self.max_file_store = max_file_store
        self.control_netns = control_netns  # where the lab's own client runs (the lab namespace)
        self.nodes: list[NatsNode] = []
        self.replicas = nodes
        for i, (address, netns) in enumerate(self.places[:nodes], 1):
            if netns is None:
                port, cport, hport = free_ports(3, address)
            else:
                port, cport, hport = 4222, 6222, 8222
            self.nodes.append(NatsNode(f"n{i}", address, port, cport, hport, self.workdir / f"n{i}" / "store", netns))

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def servers(self) -> str:
        return ",".join(self.urls)

    def proc_name(self, node: NatsNode) -> str:
        return f"nats-{node.name}"

    def config_text(self, node: NatsNode) -> str:
        lines = [
            f"server_name: {node.name}",
            f'listen: "{node.address}:{node.port}"',
            f'http: "{node.address}:{node.http_port}"',
            "jetstream {",
            f'  store_dir: "{node.store}"',
            "  max_memory_store: 64MB",
            f"  max_file_store: {self.max_file_store}",
            "}",
        ]
        if len(self.nodes) > 1:
            routes = ", ".join(f'"nats-route://{o.address}:{o.cluster_port}"' for o in self.nodes if o is not node)
            lines += ["cluster {", "  name: loglab", f'  listen: "{node.address}:{node.cluster_port}"', f"  routes: [{routes}]", "}"]
        return "\n".join(lines) + "\n"

    def _proc(self, node: NatsNode) -> Proc:
        d = self.workdir / node.name
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "nats.conf"
        conf.write_text(self.config_text(node))
        return nats_proc(self.proc_name(node), d, conf, netns=node.netns)

    def start_node(self, node: NatsNode, attempts: int = 3) -> None:
        for attempt in range(attempts):
            try:
                self.group.start(self._proc(node))
                return
            except RuntimeError as exc:
                if "address already in use" not in str(exc) or node.netns is not None or attempt == attempts - 1:
                    raise
                # Lost a port race: new ports. Nodes started before name the old route port, but
                # routes are gossiped: this node dials them, and they learn of it.
                node.port, node.cluster_port, node.http_port = free_ports(3, node.address)

    def start(self, timeout: float = JS_READY_TIMEOUT) -> "NatsDeployment":
        for node in self.nodes:
            self.start_node(node)
        self.wait_jetstream(timeout)
        return self

    def node_proc(self, i: int) -> Proc:
        return self.group[self.proc_name(self.nodes[i])]

    def kill_node(self, i: int) -> None:
        self.node_proc(i).stop(signal.SIGKILL, 10)

    def restart_node(self, i: int) -> None:
        self.start_node(self.nodes[i])

    def stop(self) -> None:
        for i in range(len(self.nodes)):
            name = self.proc_name(self.nodes[i])
            if name in self.group.procs:
                self.group[name].stop(signal.SIGTERM)

    # -- client-side checks (run in the lab's namespace when the nodes live in namespaces) ---------
    def client(self, factory, timeout: float | None = None):
        return run_async(factory, netns=self.control_netns, timeout=timeout)

    def _retry(self, action, what: str, timeout: float) -> None:
        """Run ``action(js)`` through a fresh connection until it succeeds (a cluster still electing,
        a node still starting), at most ``timeout`` s."""
        urls = self.urls

        async def attempt() -> None:
            import nats

            deadline = time.monotonic() + timeout
            last = None
            while time.monotonic() < deadline:
                try:
                    nc = await nats.connect(urls, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0)
                    try:
                        await action(nc.jetstream(timeout=5))
                        return
                    finally:
                        await nc.close()
                except Exception as exc:  # not elected yet, node still starting
                    last = exc
                await asyncio.sleep(0.1)
            raise RuntimeError(f"{what}: not done after {timeout} s on {urls}: {last!r}")

        self.client(attempt)

    def wait_jetstream(self, timeout: float = JS_READY_TIMEOUT) -> None:
        """Until the JetStream API answers (a cluster: until its meta leader is elected)."""

        async def ready(js) -> None:
            await js.account_info()

        self._retry(ready, "JetStream ready", timeout)

    def ensure_stream(self, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = JS_READY_TIMEOUT) -> None:
        """Create LOGS (replicas = nodes) unless it exists, and wait until it answers."""
        replicas = self.replicas

        async def create(js) -> None:
            await ensure_stream(js, replicas, max_bytes)
            await js.stream_info(STREAM)

        self._retry(create, f"create stream {STREAM}", timeout)

    def stream_leader(self) -> int:
        """Index of the node that leads LOGS now (0 on one node)."""
        if len(self.nodes) == 1:
            return 0
        urls = self.urls

        async def leader() -> str:
            import nats

            nc = await nats.connect(urls, connect_timeout=2)
            try:
                return (await nc.jetstream(timeout=5).stream_info(STREAM)).cluster.leader
            finally:
                await nc.close()

        name = self.client(leader, timeout=30)
        return next(i for i, n in enumerate(self.nodes) if n.name == name)

    def update_max_bytes(self, max_bytes: int) -> None:
        """Change LOGS's size limit (the operator freeing room: the stream-full scenario)."""
        urls = self.urls

        async def update() -> None:
            import nats

            nc = await nats.connect(urls, connect_timeout=2)
            try:
                js = nc.jetstream(timeout=5)
                info = await js.stream_info(STREAM)
                info.config.max_bytes = max_bytes
                await js.update_stream(info.config)
            finally:
                await nc.close()

        self.client(update)

    def to_state(self) -> dict:
        return {"workdir": str(self.workdir), "replicas": self.replicas, "control_netns": self.control_netns,
                "nodes": [{**vars(n), "store": str(n.store), "url": n.url} for n in self.nodes]}  # fmt: skip

    @classmethod
    def from_state(cls, d: dict, group: ProcGroup) -> "NatsDeployment":
        """The deployment an earlier command started (its processes are in ``group``)."""
        self = cls.__new__(cls)
        self.workdir, self.group, self.replicas = Path(d["workdir"]), group, d["replicas"]
        self.control_netns, self.max_file_store = d.get("control_netns"), "8GB"
        self.nodes = [NatsNode(n["name"], n["address"], n["port"], n["cluster_port"], n["http_port"], Path(n["store"]), n["netns"])
                      for n in d["nodes"]]  # fmt: skip
        self.places = [(n.address, n.netns) for n in self.nodes]
        return self
