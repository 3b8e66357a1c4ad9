"""Read the LOGS stream back: print records, or count them and check every (host, producer)'s
sequence, like ``benchmarks/seqcheck.py`` does for one aggregator's output.

The stream is read through an ephemeral pull consumer (deliver all, no acks: reading changes
nothing) up to the last message stored when the read began. A record's host is its subject's last
token (``logs.<host>``); the sequence check keys each producer as ``<host>/<producer>``, so the
same producer id on two hosts is two producers. The stream's own timestamp of each message (from
its JetStream metadata) stands as ``received_ns``, so ``latencies_ns`` are producer intended send
time -> stored in the stream: the pipeline's end-to-end latency.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import orjson

from benchmarks.results.seqcheck import SeqCheckResult, analyze_output
from shipper.stream import STREAM, SUBJECT_PREFIX

FETCH = 2000


@dataclass
class StreamRead:
    messages: int = 0  # messages read
    stream_last_seq: int = 0
    per_host: dict[str, int] = field(default_factory=dict)
    bad_payloads: int = 0
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    seq: SeqCheckResult | None = None


async def read_stream(servers: list[str], subject: str = "logs.>", on_record=None, limit: int | None = None,
                      timeout: float = 120.0) -> tuple[StreamRead, list[dict]]:  # fmt: skip
    """Every message of ``subject`` stored when the call began, as check records
    ``{"producer": "<host>/<id>", "seq", "intended_ns", "received_ns" (stream time)}``.
    ``on_record(host, payload_bytes)`` sees each raw payload (for printing)."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    out = StreamRead()
    records: list[dict] = []
    deadline = time.monotonic() + timeout

    async def settled(call):
        """``call()``, asked again while the cluster is settling (a node just back, a leader being
        elected: JetStream's API requests time out meanwhile), until the read's deadline."""
        delay = 0.2
        while True:
            try:
                return await call()
            except nats.errors.TimeoutError:
                if time.monotonic() + delay >= deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    nc = await nats.connect(servers, connect_timeout=3, max_reconnect_attempts=5)
    try:
        js = nc.jetstream(timeout=10)
        info = await settled(lambda: js.stream_info(STREAM))
        out.stream_last_seq = info.state.last_seq
        if info.state.messages == 0:
            return out, records
        # An ephemeral consumer; one a timed-out request did create goes away after 30 s idle.
        sub = await settled(lambda: js.pull_subscribe(
            subject, stream=STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0),
        ))  # fmt: skip
        whole = subject in ("logs.>", ">")
        loads = orjson.loads
        prefix_len = len(SUBJECT_PREFIX)
        done = False
        while not done and time.monotonic() < deadline:
            try:
                msgs = await sub.fetch(FETCH, timeout=2)
            except nats.errors.TimeoutError:
                # Nothing came: the end of this subject, or a cluster still settling (a node that
                # just came back). The consumer's own count tells which.
                try:
                    if not whole and (await sub.consumer_info()).num_pending == 0:
                        break
                except nats.errors.Error:
                    pass
                continue
            for m in msgs:
                # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts ns>.<pending>
                parts = m.reply.rsplit(".", 4)
                sseq, ts, pending = int(parts[1]), int(parts[3]), int(parts[4])
                host = m.subject[prefix_len:]
                out.messages += 1
                out.per_host[host] = out.per_host.get(host, 0) + 1
                if out.first_ts_ns is None:
                    out.first_ts_ns = ts
                out.last_ts_ns = ts
                if on_record is not None:
                    on_record(host, m.data)
                try:
                    rec = loads(m.data)
                    records.append({"producer": f"{host}/{rec['producer']}", "seq": rec["seq"], "received_ns": ts,
                                    "intended_ns": rec.get("intended_ns", rec.get("ts_ns"))})  # fmt: skip
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    out.bad_payloads += 1
                # The whole stream: up to the last message stored when the read began. A consumer on a
                # replica still catching up (a node just back) can say "0 pending" before that.
                if (sseq >= out.stream_last_seq if whole else pending == 0) or (limit is not None and out.messages >= limit):
                    done = True
                    break
        await sub.unsubscribe()
    finally:
        await nc.close()
    return out, records


def check(records: list[dict], expected: dict[str, int]) -> SeqCheckResult:
    """Per (host, producer): every seq 0..n-1 exactly once (``expected``: ``"<host>/<id>" -> n``)."""
    return analyze_output(records, expected)


def expected_for(hosts: list[str], producers: int, count: int, prefix: str = "p") -> dict[str, int]:
    return {f"{h}/{prefix}{i}": count for h in hosts for i in range(producers)}


def format_check(read: StreamRead, result: SeqCheckResult) -> str:
    """One line per host and a total: records, distinct, missing, duplicates, reordered."""
    rows = [("host", "records", "distinct", "missing", "duplicates", "reordered")]
    per_host: dict[str, list[int]] = {}
    for key, p in result.producers.items():
        host = key.split("/", 1)[0]
        acc = per_host.setdefault(host, [0, 0, 0, 0, 0])
        acc[0] += p.received + p.duplicates
        acc[1] += p.received
        acc[2] += p.missing
        acc[3] += p.duplicates
        acc[4] += p.reordered
    for host in sorted(per_host):
        rows.append((host, *map(str, per_host[host])))
    rows.append(("total", str(result.records), str(result.received), str(result.missing), str(result.duplicates), str(result.reordered)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    verdict = "OK: every (host, producer, seq) exactly once" if exactly_once(result) else "FAILED"
    extra = f"; {result.reordered} out of order (across a retry)" if result.reordered else ""
    return "\n".join(lines) + f"\n{verdict}{extra} ({read.messages} messages read, stream last seq {read.stream_last_seq})"


def exactly_once(result: SeqCheckResult) -> bool:
    """Nothing missing, nothing doubled, nothing unexpected (order aside: see ``format_check``)."""
    return not (result.missing or result.duplicates or result.out_of_range or result.bad_lines or result.unexpected_producers)
