"""The shipping loop: file -> JetStream, batches with asynchronous acknowledgements, go-back-N.

::

    Follower.read()  ─ Chunk (whole lines + offsets) ─►  one batch: a publish per line to logs.<host>,
         ▲                                                  header Nats-Msg-Id = <host>.<dev>.<ino>.<head>.<offset>,
         │ rewind to the checkpoint                         reply subject <inbox>.<batch>.<i> (one wildcard
         │ on any failure                                   subscription collects every PubAck)
         │                                                        │
    checkpoint (atomic file) ◄── the oldest batches, once every ack of each has come, in order

* At most ``max_inflight`` batches (of at most ``batch_lines`` lines / ``batch_bytes`` bytes) await
  acknowledgement, so memory is bounded whatever the server does; the file is the buffer.
* A PubAck with ``"duplicate": true`` is a message the stream already held (a replay after a
  crash or a retry): counted in ``dedup_hits``, not stored twice.
* Any failure (an error PubAck such as "maximum bytes exceeded" when the stream is full, a batch
  not fully acknowledged within ``ack_timeout``, a disconnection, a publish that raises) drops every
  batch in flight, rewinds the file to the checkpoint and publishes again after a backoff (doubling
  from ``backoff_initial`` up to ``backoff_max``; reset by the next acknowledged batch): first a
  probe of one line, then a window that doubles per acknowledged batch up to ``max_inflight``. Messages
  the server had stored come back as duplicates; order per producer can change only across such a
  retry (a later message stored before an earlier one that failed).
* nats.py's own ``publish_async`` does the same per message with a Future and a semaphore, but its
  futures never time out by themselves (nats-py 2.16, ``nats/js/client.py``): a message lost with a
  dead server would hold its slot for ever. Hence our own reply subjects and deadline per batch.
* SIGTERM/SIGINT: stop reading, wait (at most ``drain_timeout``) for the batches in flight, save
  the checkpoint, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import checkpoint as cpmod
from .counters import ShipperCounters
from .follower import Chunk, Follower
from .stream import DEFAULT_MAX_BYTES, ensure_stream, subject_for

MSG_ID = "Nats-Msg-Id"


@dataclass
class Options:
    file: Path
    servers: list[str]
    host: str
    checkpoint: Path
    stats_file: Path | None = None
    stats_interval: float = 1.0
    batch_lines: int = 500
    batch_bytes: int = 1 << 20
    max_inflight: int = 8  # batches
    ack_timeout: float = 5.0
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    drain_timeout: float = 10.0
    checkpoint_interval: float = 0.2
    rotate_grace: float = 1.0
    poll_max: float = 0.02
    replicas: int = 1
    stream_max_bytes: int = DEFAULT_MAX_BYTES
    create_stream: bool = True
    pending_size: int = 8 << 20  # nats-py's buffer while reconnecting


@dataclass
class Batch:
    id: int
    chunk: Chunk
    sent_at: float
    remaining: int
    size: int
    dups: int = 0
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.remaining == 0


@dataclass
class Backoff:
    initial: float
    cap: float
    current: float = 0.0

    def next(self) -> float:
        self.current = self.initial if not self.current else min(self.cap, self.current * 2)
        return self.current

    def reset(self) -> None:
        self.current = 0.0


def say_once(said: set[str], prefix: str, text: str, once: str | None = None) -> None:
    """A line on stderr; with ``once``, only the first time that key is said (a retry loop's
    reason is said once, not every backoff). The query agent says its lines the same way."""
    if once is not None:
        if once in said:
            return
        said.add(once)
    print(f"{prefix}{text}", file=sys.stderr, flush=True)


@dataclass
class Shipper:
    opts: Options
    counters: ShipperCounters = field(default_factory=ShipperCounters)
    stopping: asyncio.Event | None = None  # shared with what runs beside the shipper (the query agent)
    extra_stats: Callable[[], dict] | None = None  # more sections for the stats file (the agent's "query")

    def __post_init__(self) -> None:
        o = self.opts
        self.subject = subject_for(o.host)
        c = self.counters
        c.host, c.file, c.subject = o.host, str(o.file), self.subject
        c.started_unix_ns = time.time_ns()
        self.stopping = self.stopping or asyncio.Event()
        self.nc = None
        self.inbox = ""
        self.inflight: dict[int, Batch] = {}
        self.order: deque[Batch] = deque()
        self.next_batch = 0
        self.failure: str | None = None
        self.acked: cpmod.Checkpoint | None = None
        self.saved: cpmod.Checkpoint | None = None
        self.last_save = 0.0
        self.backoff = Backoff(o.backoff_initial, o.backoff_max)
        self._said: set[str] = set()
        self.closing = False
        # After a failure, one probe of one line, then the window of batches in flight doubles with
        # each acknowledged batch up to max_inflight: an unavailable stream costs one refused
        # publish per retry, not a whole window's.
        self.window = o.max_inflight
        self.probe = False

    # -- logging ----------------------------------------------------------------------------------
    def say(self, text: str, once: str | None = None) -> None:
        say_once(self._said, "shipper: ", text, once)

    # -- lifecycle --------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        o = self.opts
        self.acked = self.saved = cpmod.load(o.checkpoint)
        self.follower = Follower(o.file, self.acked, self.counters, o.rotate_grace)
        if self.acked is not None and self.follower.file != self.acked.file:
            self.acked = None  # the checkpoint's file is gone: start over at 0 of --file
        stats_task = asyncio.create_task(self._stats_loop())
        try:
            if await self._connect():
                print(f"shipping {o.file} to {self.subject} (stream LOGS) via {','.join(o.servers)}", flush=True)
                await self._ship()
                await self._drain()
        finally:
            stats_task.cancel()
            self._save_checkpoint(force=True)
            self.counters.stopped_unix_ns = time.time_ns()
            self._update_lag()
            self._write_stats()
            if self.nc is not None:
                self.closing = True
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.nc.close(), 5)
            self.follower.close()
        print(self.counters.summary(), file=sys.stderr, flush=True)
        return 0

    async def _sleep(self, seconds: float) -> None:
        """Sleep, or less if asked to stop meanwhile."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def _connect(self) -> bool:
        import nats

        o = self.opts
        while not self.stopping.is_set():
            nc = None
            try:
                nc = await nats.connect(
                    o.servers, name=f"shipper-{o.host}", allow_reconnect=True, max_reconnect_attempts=-1,
                    reconnect_time_wait=0.25, connect_timeout=2, ping_interval=5, max_outstanding_pings=2,
                    pending_size=o.pending_size, skip_subject_validation=True,
                    disconnected_cb=self._on_disconnect, reconnected_cb=self._on_reconnect, error_cb=self._on_error,
                )  # fmt: skip
                js = nc.jetstream(timeout=5)
                if o.create_stream:
                    if await ensure_stream(js, o.replicas, o.stream_max_bytes):
                        self.say(f"created stream LOGS (replicas {o.replicas}, max_bytes {o.stream_max_bytes}, discard new)")
                else:
                    await js.stream_info("LOGS")
                self.inbox = nc.new_inbox() + "."
                await nc.subscribe(self.inbox + "*.*", cb=self._on_ack, pending_msgs_limit=-1, pending_bytes_limit=-1)
                self.nc = nc
                self.counters.connects += 1
                self.backoff.reset()
                return True
            except Exception as exc:  # no server, no JetStream leader yet, ...: wait and try again
                self.counters.connect_failures += 1
                self.say(f"cannot connect or set up the stream yet ({type(exc).__name__}: {exc}); retrying", once=f"connect:{type(exc).__name__}")
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()
                await self._sleep(self.backoff.next())
        return False

    async def _on_disconnect(self) -> None:
        if self.closing:
            return
        self.counters.disconnects += 1
        self._fail("disconnected")

    async def _on_reconnect(self) -> None:
        self.counters.reconnects += 1

    async def _on_error(self, exc: Exception) -> None:
        self.say(f"nats: {type(exc).__name__}: {exc}", once=f"error:{type(exc).__name__}")

    # -- acknowledgements -------------------------------------------------------------------------
    async def _on_ack(self, msg) -> None:
        tail = msg.subject[len(self.inbox):]
        bid = int(tail.partition(".")[0])
        batch = self.inflight.get(bid)
        if batch is None:
            return  # a batch dropped by a retry: its replay will be acknowledged (as duplicates)
        data = msg.data
        if not data or b'"error"' in data:
            reason = "no responders" if not data else _error_text(data)
            batch.error = reason
            self.counters.publish_error(reason)
            self._fail(reason)
            return
        if b'"duplicate"' in data:  # nats-server 2.9 writes ``"duplicate": true`` (with a space)
            batch.dups += 1
        batch.remaining -= 1
        if batch.remaining == 0:
            self._advance()

    def _advance(self) -> None:
        """Move the acknowledged position over the oldest batches that are complete."""
        c = self.counters
        order = self.order
        while order and order[0].done:
            b = order.popleft()
            del self.inflight[b.id]
            n = len(b.chunk.lines)
            c.lines_shipped += n - b.dups
            c.dedup_hits += b.dups
            c.bytes_shipped += b.size
            c.batches += 1
            self.acked = cpmod.Checkpoint(b.chunk.file, b.chunk.end, str(self.opts.file))
            self.probe = False
            self.window = min(self.opts.max_inflight, self.window * 2)
        self.backoff.reset()

    def _fail(self, reason: str) -> None:
        if self.order and self.failure is None:
            self.failure = reason

    # -- the loop ---------------------------------------------------------------------------------
    async def _ship(self) -> None:
        o = self.opts
        idle = 0.0
        while not self.stopping.is_set():
            if self.failure is not None:
                await self._retry()
                continue
            if self.order and time.monotonic() - self.order[0].sent_at > o.ack_timeout:
                self.counters.ack_timeouts += 1
                self.failure = "ack_timeout"
                continue
            self._save_checkpoint()
            if len(self.order) >= self.window or (self.probe and self.order) or not self.nc.is_connected:
                await asyncio.sleep(0.001 if self.nc.is_connected else 0.05)
                continue
            chunk = self.follower.read(1 if self.probe else o.batch_lines, o.batch_bytes)
            if chunk is None:
                if self.follower.switch_if_rotated(all_acked=not self.order):
                    new = self.follower.file
                    self.say(f"rotation: finished the old file, now reading {o.file} (inode {new.ino if new else '?'})")
                    # Nothing of the new file is acknowledged yet: its offset 0 (once it has a line).
                    self.acked = cpmod.Checkpoint(new, 0, str(o.file)) if new is not None else None
                    continue
                idle = min(o.poll_max, idle * 2 or 0.001)
                await asyncio.sleep(idle)
                continue
            idle = 0.0
            await self._publish(chunk)

    async def _publish(self, chunk: Chunk) -> None:
        bid = self.next_batch
        self.next_batch += 1
        batch = Batch(bid, chunk, time.monotonic(), len(chunk.lines), sum(map(len, chunk.lines)))
        self.inflight[bid] = batch
        self.order.append(batch)
        inflight = sum(b.remaining for b in self.order)
        if inflight > self.counters.inflight_peak:
            self.counters.inflight_peak = inflight
        reply = f"{self.inbox}{bid}."
        key = f"{self.opts.host}.{chunk.file.key}."
        publish = self.nc.publish
        subject = self.subject
        try:
            for i, (line, offset) in enumerate(zip(chunk.lines, chunk.offsets)):
                await publish(subject, line, reply=reply + str(i), headers={MSG_ID: key + str(offset)})
        except Exception as exc:  # buffer full while reconnecting, connection closed, ...
            reason = type(exc).__name__
            self.counters.publish_error(reason)
            self.failure = self.failure or reason

    async def _retry(self) -> None:
        """Go back to the last acknowledged position and publish again after a backoff."""
        reason, self.failure = self.failure, None
        self.counters.retries += 1
        self.window, self.probe = 1, True
        self.inflight.clear()
        self.order.clear()
        current = self.follower.file
        if current is not None:
            acked = self.acked
            self.follower.rewind(current, acked.offset if acked is not None and acked.file == current else 0)
        delay = self.backoff.next()
        self.say(f"retrying from the checkpoint after: {reason} (backoff up to {self.opts.backoff_max} s)", once=f"retry:{reason}")
        await self._sleep(delay)

    async def _drain(self) -> None:
        """After SIGTERM: wait for the batches in flight (what was read), bounded."""
        deadline = time.monotonic() + self.opts.drain_timeout
        while self.order and self.failure is None and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if self.order:
            n = sum(len(b.chunk.lines) for b in self.order)
            self.say(f"stopping with {n} lines read but not acknowledged ({self.failure or 'drain timeout'}); "
                     "the checkpoint stays before them, the next run ships them")  # fmt: skip

    # -- checkpoint and stats ---------------------------------------------------------------------
    def _save_checkpoint(self, force: bool = False) -> None:
        acked = self.acked
        if acked is None or acked == self.saved:
            return
        now = time.monotonic()
        if not force and now - self.last_save < self.opts.checkpoint_interval:
            return
        cpmod.save(self.opts.checkpoint, acked)
        self.saved = acked
        self.last_save = now
        self.counters.checkpoint_writes += 1
        self.counters.checkpoint_offset = acked.offset

    def _update_lag(self) -> None:
        acked = self.acked.offset if self.acked is not None and self.acked.file == self.follower.file else 0
        self.counters.lag_bytes = self.follower.lag_bytes(acked)

    def _write_stats(self) -> None:
        if self.opts.stats_file is not None:
            extra = self.extra_stats() if self.extra_stats is not None else {}
            self.counters.write(self.opts.stats_file, {"inflight": sum(b.remaining for b in self.order), **extra})

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.opts.stats_interval)
            self._update_lag()
            self._write_stats()


def _error_text(data: bytes) -> str:
    """The description of an error PubAck, e.g. "maximum bytes exceeded"."""
    import json

    try:
        err = json.loads(data).get("error", {})
        return str(err.get("description") or err.get("err_code") or "error")
    except (ValueError, AttributeError):
        return "error"
