"""The distributing loop: stream -> router -> analyzers, acknowledged end to end.

::

    LOGS (durable pull consumer, explicit ack, shared by every replica)
      │ pull requests (<= --pull-batch each, <= 2 outstanding), while fewer than --max-pending
      ▼ messages are in hand
    incoming (in hand)  ── no analyzer online: wait (the stream keeps the rest) ──┐
      │ one fetch's worth (<= --batch), routed by the exact schedule (router.py)  │
      ▼                                                                           │
    one delivery per analyzer: PUB analyzer.<id>.in (protocol.py), reply = our ack inbox
      │                                  │ no ack within --ack-timeout: the analyzer is marked down
      │ ack {batch ids}                  │ (here at once, then in the bucket for the others), and
      ▼                                  ▼ every delivery in flight to it goes back to incoming
    +ACK each source message        failover: routed again among the others (attempts + 1)
      refused by an analyzer: offered to another one; after --max-attempts, or when every online
      analyzer refused it: stored in stream DEADLETTER (deadletter.<subject>), then +ACK

* The source message is acknowledged to the stream only after an analyzer acknowledged it (or the
  dead-letter stream stored it): a crash of the distributor loses nothing (the stream redelivers
  after ``--ack-wait``; at a clean stop what is in hand is NAKed, so redelivered at once).
* Messages held longer than a third of ``--ack-wait`` get a progress acknowledgement (+WPI), so the
  stream never hands them to another replica while this one still owns them: replicas do not
  double-route.
* Duplicates can only come from a failover (an analyzer that processed a batch but whose ack came
  too late): ``failover_messages`` counts the candidates, ``duplicates_confirmed`` the late acks.
* Membership changes (membership.py) start a new epoch of the router between two batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from shipper.stream import STREAM, SUBJECT_PREFIX

from . import membership as mb
from .counters import DistributorCounters
from .protocol import decode_ack, deliver_subject, encode_batch
from .router import Router
from .sources import DEADLETTER_PREFIX, ensure_consumer, ensure_deadletter_stream, pull_subject


@dataclass
class Options:
    servers: list[str]
    id: str = ""
    consumer: str = "distributor"
    batch: int = 500
    pull_batch: int = 1000
    max_pending: int = 20_000
    ack_timeout: float = 2.0
    max_attempts: int = 5
    ack_wait: float = 30.0
    heartbeat_timeout: float = mb.HEARTBEAT_TIMEOUT_S
    down_hold: float = mb.DOWN_HOLD_S
    stats_file: Path | None = None
    stats_interval: float = 1.0
    drain_timeout: float = 5.0
    replicas: int = 1

    def __post_init__(self) -> None:
        if not self.id:
            self.id = f"d-{socket.gethostname().split('.')[0]}-{os.getpid()}"


@dataclass(slots=True)
class Held:
    """A source message in our hands, until the stream is told what became of it."""

    host: str
    data: bytes
    reply: str  # the stream's ack subject
    since: float  # monotonic: taken, or last progress acknowledgement
    attempts: int = 0
    refused_by: tuple = ()


@dataclass(slots=True)
class Delivery:
    id: int
    analyzer: str
    items: list
    sent: float


@dataclass
class Distributor:
    opts: Options
    counters: DistributorCounters = field(default_factory=DistributorCounters)

    def __post_init__(self) -> None:
        o = self.opts
        c = self.counters
        c.id, c.consumer, c.started_unix_ns = o.id, o.consumer, time.time_ns()
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        self.nc = None
        self.js = None
        self.kv = None
        self.stats_kv = None
        self.router = Router()
        self.view = mb.MembershipView(o.heartbeat_timeout, o.down_hold)
        self.membership: mb.Membership | None = None
        self.incoming: deque[Held] = deque()
        self.inflight: dict[int, Delivery] = {}
        self.in_hand = 0
        self.next_batch = 1
        self.pulls: deque[list] = deque()  # outstanding pull requests: [remaining, expires_at]
        self.ack_inbox = ""
        self.pull_inbox = ""
        self.dead_tasks: set[asyncio.Task] = set()
        # Batches failed over, by id: a late acknowledgement of one is a confirmed duplicate.
        self.failed_over_batches: OrderedDict[int, tuple[str, int]] = OrderedDict()
        self._said: set[str] = set()
        self.closing = False

    def say(self, text: str, once: str | None = None) -> None:
        if once is not None:
            if once in self._said:
                return
            self._said.add(once)
        print(f"distributor: {text}", file=sys.stderr, flush=True)

    # -- lifecycle --------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        tasks: list[asyncio.Task] = []
        try:
            if not await self._connect():
                return 0
            print(f"distributing {STREAM} (consumer {self.opts.consumer}) as {self.opts.id} via {','.join(self.opts.servers)}", flush=True)
            tasks = [asyncio.create_task(f()) for f in (self._stats_loop, self._timeouts_loop, self._progress_loop)]
            await self._route_loop()
            await self._drain()
        finally:
            for t in tasks:
                t.cancel()
            await self._close()
        print(self.counters.summary(), file=sys.stderr, flush=True)
        return 0

    async def _connect(self) -> bool:
        import nats

        o = self.opts
        delay = 0.1
        while not self.stopping.is_set():
            nc = None
            try:
                nc = await nats.connect(
                    o.servers, name=f"distributor-{o.id}", allow_reconnect=True, max_reconnect_attempts=-1,
                    reconnect_time_wait=0.25, connect_timeout=2, pending_size=32 << 20, skip_subject_validation=True,
                    disconnected_cb=self._on_disconnect, reconnected_cb=self._on_reconnect, error_cb=self._on_error,
                )  # fmt: skip
                js = nc.jetstream(timeout=5)
                await js.stream_info(STREAM)
                await ensure_consumer(js, o.consumer, o.ack_wait, o.max_pending)
                await ensure_deadletter_stream(js, o.replicas)
                self.kv, self.stats_kv = await mb.ensure_buckets(js, o.replicas)
                self.nc, self.js = nc, js
                self.ack_inbox = nc.new_inbox()
                self.pull_inbox = nc.new_inbox()
                await nc.subscribe(self.ack_inbox, cb=self._on_ack, pending_msgs_limit=-1, pending_bytes_limit=-1)
                await nc.subscribe(self.pull_inbox, cb=self._on_pulled, pending_msgs_limit=-1, pending_bytes_limit=-1)
                self.membership = mb.Membership(self.kv, self.view, self._on_membership)
                await self.membership.start()
                self.counters.connects += 1
                return True
            except Exception as exc:  # no server yet, no stream yet, no JetStream leader yet
                self.say(f"cannot connect or find stream {STREAM} yet ({type(exc).__name__}: {exc}); retrying", once=f"c:{type(exc).__name__}")
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
                delay = min(2.0, delay * 2)
        return False

    async def _close(self) -> None:
        self.closing = True
        if self.membership is not None:
            await self.membership.stop()
        self.counters.stopped_unix_ns = time.time_ns()
        await self._publish_stats()
        self._write_stats()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), 5)

    async def _on_disconnect(self) -> None:
        if not self.closing:
            self.counters.disconnects += 1

    async def _on_reconnect(self) -> None:
        self.counters.reconnects += 1
        self.pulls.clear()  # requests made before are gone with the old connection

    async def _on_error(self, exc: Exception) -> None:
        self.say(f"nats: {type(exc).__name__}: {exc}", once=f"e:{type(exc).__name__}")

    # -- membership -------------------------------------------------------------------------------
    def _on_membership(self, online: dict[str, float]) -> None:
        if self.router.set_weights(online):
            self.counters.epochs += 1
            for aid in online:
                self.counters.analyzer(aid)
            self.wake.set()

    # -- taking from the stream -------------------------------------------------------------------
    async def _on_pulled(self, msg) -> None:
        headers = msg.headers
        if headers and "Status" in headers:  # 408 request expired, 409 ..., 404 no messages
            if self.pulls:
                self.pulls.popleft()
            return
        if self.pulls:
            head = self.pulls[0]
            head[0] -= 1
            if head[0] <= 0:
                self.pulls.popleft()
        reply = msg.reply
        if reply.rsplit(".", 5)[1] != "1":  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
            self.counters.redelivered += 1
        self.incoming.append(Held(msg.subject[len(SUBJECT_PREFIX):], msg.data, reply, time.monotonic()))
        self.in_hand += 1
        self.counters.received += 1
        self.wake.set()

    async def _pull(self) -> None:
        """Keep up to two pull requests outstanding while there is room in hand."""
        now = time.monotonic()
        while self.pulls and self.pulls[0][1] < now:  # expired and its status lost: forget it
            self.pulls.popleft()
        o = self.opts
        requested = sum(p[0] for p in self.pulls)
        room = o.max_pending - self.in_hand - requested
        if len(self.pulls) >= 2 or room < min(o.pull_batch, o.max_pending) // 2 or not self.router.online:
            return
        n = min(o.pull_batch, room)
        expires = 1.0
        self.pulls.append([n, now + expires + 1.0])
        body = orjson.dumps({"batch": n, "expires": int(expires * 1e9)})
        await self.nc.publish(pull_subject(o.consumer), body, reply=self.pull_inbox)

    # -- routing ------------------------------------------------------------------------------------
    async def _route_loop(self) -> None:
        o = self.opts
        while not self.stopping.is_set():
            if self.in_hand > self.counters.in_hand_peak:
                self.counters.in_hand_peak = self.in_hand
            if self.nc.is_connected:
                await self._pull()
            if not self.incoming or not self.router.online:
                if self.incoming and not self.router.online:
                    self.counters.waits_no_analyzer += 1
                    self.say("no analyzer online: holding messages (the stream keeps the rest)", once="noanalyzer")
                self.wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 0.05)
                continue
            self._said.discard("noanalyzer")
            items = [self.incoming.popleft() for _ in range(min(o.batch, len(self.incoming)))]
            await self._dispatch(items)
            await asyncio.sleep(0)  # let acks and pulled messages in

    async def _dispatch(self, items: list[Held]) -> None:
        """Route ``items``: fresh ones by the schedule, refused ones to an analyzer that has not
        refused them; too many attempts: dead letter."""
        o = self.opts
        groups: dict[str, list[Held]] = {}
        fresh = []
        for it in items:
            if it.attempts >= o.max_attempts:
                self._dead_letter(it, f"{it.attempts} attempts")
            elif it.refused_by:
                online = [a for a in sorted(self.router.weights, key=lambda a: (-self.router.weights[a], a)) if a not in it.refused_by]
                if online:
                    groups.setdefault(online[0], []).append(it)
                else:
                    self._dead_letter(it, "refused by every analyzer online")
            else:
                fresh.append(it)
        if fresh:
            for it, aid in zip(fresh, self.router.route(len(fresh))):
                group = groups.get(aid)
                if group is None:
                    group = groups[aid] = []
                group.append(it)
        now = time.monotonic()
        publish = self.nc.publish
        c = self.counters
        for aid, group in groups.items():
            bid = self.next_batch
            self.next_batch += 1
            lines = []
            for it in group:
                it.attempts += 1
                lines.append(it.host.encode() + b" " + it.data)
            self.inflight[bid] = Delivery(bid, aid, group, now)
            ac = c.analyzer(aid)
            ac.routed += len(group)
            ac.batches += 1
            c.routed += len(group)
            c.batches += 1
            try:
                await publish(deliver_subject(aid), encode_batch(bid, lines), reply=self.ack_inbox)
            except Exception as exc:  # disconnected with a full buffer: the timeout will fail it over
                self.say(f"delivery to {aid} failed to send ({type(exc).__name__}); it will be retried", once=f"p:{type(exc).__name__}")

    # -- acknowledgements ---------------------------------------------------------------------------
    async def _on_ack(self, msg) -> None:
        try:
            aid, batch_ids, refused = decode_ack(msg.data)
        except (ValueError, KeyError, TypeError):
            return
        now = time.monotonic()
        c = self.counters
        publish = self.nc.publish
        ac = c.analyzer(aid)
        for bid in batch_ids:
            d = self.inflight.get(bid)
            if d is None or d.analyzer != aid:
                gone = self.failed_over_batches.pop(bid, None)
                if gone is not None and gone[0] == aid:  # processed here and failed over: twice
                    ac.late_acks += gone[1]
                    c.duplicates_confirmed += gone[1]
                continue
            del self.inflight[bid]
            ac.ack_ms.append((now - d.sent) * 1e3)
            bad = set(refused.get(bid, ()))
            for i, it in enumerate(d.items):
                if i in bad:
                    it.refused_by += (aid,)
                    ac.refused += 1
                    c.refusals += 1
                    self.incoming.appendleft(it)
                    continue
                await publish(it.reply, b"")
                ac.acked += 1
                c.source_acked += 1
                self.in_hand -= 1
        if refused:
            self.wake.set()

    def _fail_over(self, analyzer_id: str, reason: str) -> None:
        """``analyzer_id`` did not acknowledge in time: mark it down (here now, in the bucket for the
        other replicas) and route everything in flight to it again."""
        c = self.counters
        ac = c.analyzer(analyzer_id)
        ac.failures += 1
        c.failovers += 1
        self.view.mark_down_here(analyzer_id, reason)
        self.membership.check()
        moved = [d for d in self.inflight.values() if d.analyzer == analyzer_id]
        for d in moved:
            del self.inflight[d.id]
            self.failed_over_batches[d.id] = (analyzer_id, len(d.items))
            for it in reversed(d.items):
                self.incoming.appendleft(it)
            ac.failed_over += len(d.items)
            c.failover_messages += len(d.items)
        while len(self.failed_over_batches) > 100_000:
            self.failed_over_batches.popitem(last=False)
        self.say(f"{analyzer_id} marked down ({reason}): {sum(len(d.items) for d in moved)} messages in flight routed again")
        task = asyncio.ensure_future(mb.mark_down(self.kv, analyzer_id, self.opts.id, reason))
        self.dead_tasks.add(task)
        task.add_done_callback(self.dead_tasks.discard)
        self.wake.set()

    async def _timeouts_loop(self) -> None:
        o = self.opts
        tick = max(0.01, min(0.1, o.ack_timeout / 10))
        while True:
            await asyncio.sleep(tick)
            deadline = time.monotonic() - o.ack_timeout
            late = {d.analyzer for d in self.inflight.values() if d.sent < deadline}
            for aid in sorted(late):
                self._fail_over(aid, f"no acknowledgement within {o.ack_timeout:g} s")

    async def _progress_loop(self) -> None:
        """+WPI for messages held long (waiting for an analyzer, or retried), so the stream does not
        redeliver them to another replica while we still own them."""
        o = self.opts
        every = o.ack_wait / 3
        while True:
            await asyncio.sleep(min(1.0, every / 2))
            now = time.monotonic()
            old = now - every
            held = list(self.incoming)
            for d in list(self.inflight.values()):
                held.extend(d.items)
            for it in held:
                if it.since < old:
                    it.since = now
                    with contextlib.suppress(Exception):
                        await self.nc.publish(it.reply, b"+WPI")

    # -- dead letter --------------------------------------------------------------------------------
    def _dead_letter(self, it: Held, reason: str) -> None:
        task = asyncio.ensure_future(self._store_dead_letter(it, reason))
        self.dead_tasks.add(task)
        task.add_done_callback(self.dead_tasks.discard)

    async def _store_dead_letter(self, it: Held, reason: str) -> None:
        headers = {"Loglab-Reason": reason, "Loglab-Attempts": str(it.attempts),
                   "Loglab-Refused-By": ",".join(it.refused_by), "Loglab-Distributor": self.opts.id}  # fmt: skip
        try:
            await self.js.publish(f"{DEADLETTER_PREFIX}{SUBJECT_PREFIX}{it.host}", it.data, headers=headers, timeout=5)
        except Exception as exc:  # keep it: offered again (attempts stay above the limit)
            self.counters.dead_letter_errors += 1
            self.say(f"dead-letter publish failed ({type(exc).__name__}: {exc}); will retry", once=f"dl:{type(exc).__name__}")
            self.incoming.append(it)
            await asyncio.sleep(0.5)
            self.wake.set()
            return
        await self.nc.publish(it.reply, b"")
        self.counters.dead_lettered += 1
        self.in_hand -= 1

    # -- stop -----------------------------------------------------------------------------------------
    async def _drain(self) -> None:
        """At SIGTERM: no new pulls; wait (bounded) for the deliveries in flight; hand back the rest."""
        deadline = time.monotonic() + self.opts.drain_timeout
        while (self.inflight or self.dead_tasks) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        # Messages pulled but not routed, or whose delivery was not acknowledged: back to the stream
        # now (NAK), not after --ack-wait; an analyzer that acknowledges later gives a duplicate.
        rest = list(self.incoming)
        for d in self.inflight.values():
            rest.extend(d.items)
        for it in rest:
            with contextlib.suppress(Exception):
                await self.nc.publish(it.reply, b"-NAK")
        self.counters.handed_back += len(rest)
        self.in_hand -= len(rest)
        self.incoming.clear()
        self.inflight.clear()
        if rest:
            self.say(f"handed {len(rest)} messages back to the stream (NAK): another replica takes them now")
        with contextlib.suppress(Exception):
            await self.nc.flush(2)

    # -- stats ------------------------------------------------------------------------------------------
    def stats(self) -> dict:
        r = self.router
        return {"epoch": r.epoch_figures(), "epochs_closed": r.epochs[-50:], "online": dict(r.weights),
                "membership": self.view.describe(), "in_hand": self.in_hand, "inflight_batches": len(self.inflight)}  # fmt: skip

    def _write_stats(self) -> None:
        if self.opts.stats_file is not None:
            self.counters.write(self.opts.stats_file, self.stats())

    async def _publish_stats(self) -> None:
        if self.stats_kv is None or self.nc is None or not self.nc.is_connected:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.stats_kv.put(mb.STATS + self.opts.id, self.counters.dumps({"online": dict(self.router.weights)})), 2)

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.opts.stats_interval)
            self._write_stats()
            await self._publish_stats()
