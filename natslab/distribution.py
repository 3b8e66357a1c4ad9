"""The distribute stage in the lab: a NATS deployment with the stream ``LOGS``, distributors,
analyzers and the HTTP front, started and stopped together. Used by the tests, the ``distribute``
bench scenario and the README's walk-through, so all of them start it the same way.

::

    with Distribution(workdir) as d:                          # one NATS node, LOGS created
        d.analyzer("a1", 0.4); d.analyzer("a2", 0.6)          # registered, heartbeating
        d.distributor("d1")                                   # bound to the shared consumer
        expected = d.fill("h1", producers=2, count=5000)      # records published into LOGS
        d.wait_source_acked(10_000)                           # the consumer's ack floor
        result = d.check(expected)                            # the analyzers' ledgers, unioned

``fill`` publishes records in the producer's own format (``producers.messages``) straight into the
stream, with acknowledgements, so a run starts with a known stream: what the distributor then does
is all that is measured. ``check`` reads every analyzer's ledger (each acknowledged
``host/producer seq``, written before its acknowledgement, so a SIGKILLed analyzer's count too) and
runs the project's sequence check on the union: missing = lost, duplicates = delivered twice.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from benchmarks.processes import ProcGroup, analyzer_proc, distributor_http_proc, distributor_proc, free_ports, wait_until
from benchmarks.results.seqcheck import SeqCheckResult, analyze_output
from shipper.stream import STREAM, subject_for

from .cluster import NatsDeployment
from .hosts import run_async


async def publish_records(servers: list[str], subject: str, payloads: list[bytes], window: int = 4000) -> int:
    """Publish ``payloads`` to ``subject`` with JetStream acknowledgements, ``window`` at a time."""
    import nats

    nc = await nats.connect(servers, pending_size=64 << 20)
    try:
        js = nc.jetstream(timeout=30, publish_async_max_pending=window)
        for start in range(0, len(payloads), window):
            futures = [await js.publish_async(subject, p) for p in payloads[start:start + window]]
            await asyncio.gather(*futures)
    finally:
        await nc.close()
    return len(payloads)


def producer_records(producer: str, count: int, size: int = 200, start_seq: int = 0) -> list[bytes]:
    """``count`` records of ``producer`` (seq ``start_seq``..), in the producer's own format."""
    from producers.messages import MessageFactory

    factory = MessageFactory(producer, 4242, size, seed=hash(producer) & 0xFFFF)
    now = time.time_ns()
    return [factory.build(seq, now, now).rstrip(b"\n") for seq in range(start_seq, start_seq + count)]


class Distribution:
    def __init__(self, workdir: Path, nats_nodes: int = 1, distributor_args: tuple = (), analyzer_args: tuple = ()) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.group = ProcGroup()
        self.nats = NatsDeployment(self.workdir / "nats", self.group, nats_nodes)
        self.distributor_args = tuple(distributor_args)
        self.analyzer_args = tuple(analyzer_args)
        self.analyzers: dict[str, float] = {}
        self.distributors: list[str] = []
        self.http_url: str | None = None

    def start(self) -> "Distribution":
        try:
            self.nats.start()
            self.nats.ensure_stream()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        self.group.close()

    def __enter__(self) -> "Distribution":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def servers(self) -> str:
        return self.nats.servers

    # -- processes --------------------------------------------------------------------------------
    def analyzer(self, analyzer_id: str, weight: float, *args, wait: bool = True):
        self.analyzers[analyzer_id] = weight
        proc = analyzer_proc(analyzer_id, self.workdir, self.servers, weight, *self.analyzer_args, *args)
        return self.group.start(proc, wait=wait)

    def distributor(self, name: str, *args, wait: bool = True):
        if name not in self.distributors:
            self.distributors.append(name)
        return self.group.start(distributor_proc(name, self.workdir, self.servers, *self.distributor_args, *args), wait=wait)

    def http(self, *args, name: str = "http") -> str:
        (port,) = free_ports(1)
        self.group.start(distributor_http_proc(name, self.workdir, self.servers, port, *args))
        self.http_url = f"http://127.0.0.1:{port}"
        return self.http_url

    def register(self, weights: dict[str, float]) -> None:
        """Register analyzers (started with ``--no-register``) in the bucket, all through one
        connection, a few milliseconds apart: a start line for a measurement."""
        from distributor import membership as mb

        urls = self.nats.urls

        async def put():
            import nats

            nc = await nats.connect(urls, connect_timeout=2)
            try:
                kv, _ = await mb.ensure_buckets(nc.jetstream(timeout=5))
                for aid, w in weights.items():
                    await mb.register(kv, aid, w, by="lab")
            finally:
                await nc.close()

        run_async(put, timeout=30)

    def proc(self, name: str):
        return self.group[name]

    # -- the stream -------------------------------------------------------------------------------
    def fill(self, host: str, producers: int, count: int, size: int = 200, prefix: str = "p") -> dict[str, int]:
        """Publish ``producers`` x ``count`` records from ``host`` into LOGS; the expected counts."""
        payloads = []
        for i in range(producers):
            payloads += producer_records(f"{prefix}{i}", count, size)
        self.publish(subject_for(host), payloads)
        return {f"{host}/{prefix}{i}": count for i in range(producers)}

    def publish(self, subject: str, payloads: list[bytes]) -> None:
        urls = self.nats.urls
        run_async(lambda: publish_records(urls, subject, payloads), timeout=600)

    def _js_call(self, fn, timeout: float = 30.0):
        urls = self.nats.urls

        async def call():
            import nats

            nc = await nats.connect(urls, connect_timeout=2, max_reconnect_attempts=2)
            try:
                return await fn(nc.jetstream(timeout=5))
            finally:
                await nc.close()

        return run_async(call, timeout=timeout)

    def consumer_state(self, consumer: str = "distributor") -> dict:
        async def info(js):
            ci = await js.consumer_info(STREAM, consumer)
            return {"ack_floor": ci.ack_floor.stream_seq, "num_ack_pending": ci.num_ack_pending, "num_pending": ci.num_pending,
                    "num_redelivered": ci.num_redelivered, "delivered": ci.delivered.stream_seq}  # fmt: skip

        return self._js_call(info)

    def stream_last_seq(self) -> int:
        async def info(js):
            return (await js.stream_info(STREAM)).state.last_seq

        return self._js_call(info)

    def wait_all_acked(self, timeout: float = 120.0, consumer: str = "distributor") -> dict:
        """Until the consumer has acknowledged everything in the stream (ack floor = last seq)."""
        last = self.stream_last_seq()

        def done():
            try:
                st = self.consumer_state(consumer)
            except Exception:  # the consumer not created yet, a node restarting
                return None
            return st if st["ack_floor"] >= last and st["num_ack_pending"] == 0 else None

        return wait_until(done, f"every message of {STREAM} (last seq {last}) acknowledged by consumer {consumer}", timeout, interval=0.1)

    def deadletters(self) -> list[tuple[str, bytes, dict]]:
        """Every message of the dead-letter stream: (subject, payload, headers)."""
        from distributor.sources import DEADLETTER_STREAM

        async def read(js):
            from nats.js.errors import NotFoundError

            try:
                n = (await js.stream_info(DEADLETTER_STREAM)).state.messages
            except NotFoundError:
                return []
            out = []
            for seq in range(1, n + 1):
                m = await js.get_msg(DEADLETTER_STREAM, seq)
                out.append((m.subject, m.data, dict(m.headers or {})))
            return out

        return self._js_call(read)

    # -- what the analyzers and distributors say --------------------------------------------------
    def analyzer_stats(self, analyzer_id: str) -> dict:
        try:
            return json.loads((self.workdir / f"{analyzer_id}.stats.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def distributor_stats(self, name: str) -> dict:
        try:
            return json.loads((self.workdir / f"{name}.stats.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def ledger_records(self) -> dict[str, list[tuple[str, int]]]:
        """Per analyzer: every (host/producer, seq) it acknowledged, in order."""
        out = {}
        for aid in self.analyzers:
            path = self.workdir / f"{aid}.ledger"
            rows = []
            if path.exists():
                for line in path.read_text().splitlines():
                    key, _, seq = line.rpartition(" ")
                    rows.append((key, int(seq)))
            out[aid] = rows
        return out

    def check(self, expected: dict[str, int]) -> SeqCheckResult:
        """The union of the analyzers' ledgers against ``expected`` (missing = lost)."""
        records = [{"producer": k, "seq": s} for rows in self.ledger_records().values() for k, s in rows]
        return analyze_output(records, expected)
