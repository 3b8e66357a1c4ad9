"""The analyzer's life: register in the bucket, take deliveries, acknowledge them in groups,
heartbeat, deregister at a clean exit.

::

    start: connect, subscribe analyzer.<id>.in, register member.<id> {weight} (unless --no-register),
           heartbeat beat.<id> every --heartbeat s, print "analyzer <id> ready"
    each delivery (distributor/protocol.py): analyze every record (analysis.py), write the accepted
           (host/producer, seq) to --ledger (write(2) before the ack: a SIGKILL keeps them), then
           acknowledge: at once, or once --ack-every messages are done (grouped, per distributor),
           never later than ACK_FLUSH_S after the oldest
    SIGTERM/SIGINT: deregister (the distributors stop routing here), finish and acknowledge what
           arrived (--drain s), write the stats file, print the summary, exit 0

Chaos: ``--fail-after N`` stops acknowledging after N messages (it keeps heartbeating: a wedged
analyzer, found by the distributors' ack timeout); ``--slow-ms`` holds each record that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aggregator.files import replace_atomically
from distributor import membership as mb
from distributor.protocol import ACK_FLUSH_S, decode_batch, deliver_subject, encode_ack

from .analysis import Analysis


@dataclass
class Options:
    servers: list[str]
    id: str
    weight: float
    stats_file: Path | None = None
    stats_interval: float = 1.0
    ack_every: int = 1
    fail_after: int | None = None
    slow_ms: float = 0.0
    heartbeat: float = mb.HEARTBEAT_S
    register: bool = True
    ledger: Path | None = None
    weight_file: Path | None = None
    window_s: int = 10
    drain: float = 0.5
    replicas: int = 1


class Analyzer:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.analysis = Analysis(opts.window_s)
        self.stopping = asyncio.Event()
        self.nc = None
        self.kv = None
        self.weight = opts.weight
        self.pending: dict[str, list] = {}  # ack subject -> [batch ids, refused, messages, first_at]
        self.batches = 0
        self.acks_sent = 0
        self.wedged = False
        self.ignored = 0  # messages received after --fail-after, never acknowledged
        self.ledger_fd: int | None = None
        self.started_ns = time.time_ns()

    def say(self, text: str) -> None:
        print(f"analyzer {self.opts.id}: {text}", file=sys.stderr, flush=True)

    async def run(self) -> int:
        import nats

        o = self.opts
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        if o.ledger is not None:
            self.ledger_fd = os.open(o.ledger, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        tasks = []
        try:
            self.nc = await nats.connect(o.servers, name=f"analyzer-{o.id}", max_reconnect_attempts=-1, reconnect_time_wait=0.25,
                                         connect_timeout=2, pending_size=32 << 20, skip_subject_validation=True)  # fmt: skip
            self.kv, _ = await mb.ensure_buckets(self.nc.jetstream(timeout=5), o.replicas)
            await self.nc.subscribe(deliver_subject(o.id), cb=self._on_delivery, pending_msgs_limit=-1, pending_bytes_limit=-1)
            await self.nc.flush()
            if o.register:
                await mb.register(self.kv, o.id, self.weight, by="analyzer")
            await mb.heartbeat(self.kv, o.id, self._beat())
            tasks = [asyncio.create_task(f()) for f in (self._heartbeat_loop, self._stats_loop, self._flush_loop)]
            print(f"analyzer {o.id} ready (weight {self.weight:g}) on {deliver_subject(o.id)}", flush=True)
            await self.stopping.wait()
            await self._stop()
        finally:
            for t in tasks:
                t.cancel()
            self._write_stats()
            if self.nc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.nc.close(), 5)
            if self.ledger_fd is not None:
                os.close(self.ledger_fd)
        print(self.summary(), file=sys.stderr, flush=True)
        return 0

    async def _stop(self) -> None:
        o = self.opts
        with contextlib.suppress(Exception):
            if o.register:
                await mb.deregister(self.kv, o.id)
            else:
                await self.kv.delete(mb.BEAT + o.id)
        # Deliveries already sent to us still arrive for a moment: take and acknowledge them.
        await asyncio.sleep(o.drain)
        await self._flush_acks(force=True)
        with contextlib.suppress(Exception):
            await self.nc.flush(2)

    # -- deliveries -------------------------------------------------------------------------------
    async def _on_delivery(self, msg) -> None:
        o = self.opts
        try:
            batch_id, lines = decode_batch(msg.data)
        except ValueError:
            return
        if self.wedged or (o.fail_after is not None and self.analysis.messages >= o.fail_after):
            if not self.wedged:
                self.say(f"--fail-after {o.fail_after}: no longer acknowledging (still heartbeating)")
            self.wedged = True
            self.ignored += len(lines)
            return
        if o.slow_ms:
            await asyncio.sleep(o.slow_ms * len(lines) / 1000)
        refused, accepted = self.analysis.add_batch(lines)
        if self.ledger_fd is not None and accepted:
            os.write(self.ledger_fd, "".join(f"{k} {s}\n" for k, s in accepted).encode())
        self.batches += 1
        p = self.pending.get(msg.reply)
        if p is None:
            p = self.pending[msg.reply] = [[], {}, 0, time.monotonic()]
        p[0].append(batch_id)
        if refused:
            p[1][batch_id] = refused
        p[2] += len(lines)
        if p[2] >= o.ack_every:
            await self._send_ack(msg.reply)

    async def _send_ack(self, subject: str) -> None:
        p = self.pending.pop(subject, None)
        if p is None:
            return
        await self.nc.publish(subject, encode_ack(self.opts.id, p[0], p[1]))
        self.acks_sent += 1

    async def _flush_acks(self, force: bool = False) -> None:
        old = time.monotonic() - ACK_FLUSH_S
        for subject in [s for s, p in self.pending.items() if force or p[3] <= old]:
            await self._send_ack(subject)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(ACK_FLUSH_S)
            if self.pending:
                await self._flush_acks()

    # -- membership ---------------------------------------------------------------------------------
    def _beat(self) -> dict:
        return {"pid": os.getpid(), "messages": self.analysis.messages, "duplicates": self.analysis.duplicates, "wedged": self.wedged}

    async def _heartbeat_loop(self) -> None:
        o = self.opts
        while True:
            await asyncio.sleep(o.heartbeat)
            with contextlib.suppress(Exception):
                await self._maybe_new_weight()
                await mb.heartbeat(self.kv, o.id, self._beat())

    async def _maybe_new_weight(self) -> None:
        """--weight-file: the analyzer changes its own weight when the file says so."""
        path = self.opts.weight_file
        if path is None:
            return
        try:
            weight = mb.check_weight(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        if weight != self.weight:
            await mb.set_weight(self.kv, self.opts.id, weight)
            self.say(f"weight {self.weight:g} -> {weight:g} (from {path})")
            self.weight = weight

    # -- stats ----------------------------------------------------------------------------------------
    def stats(self) -> dict:
        return {"id": self.opts.id, "weight": self.weight, **self.analysis.figures(), "batches": self.batches,
                "ack_messages_sent": self.acks_sent, "ack_every": self.opts.ack_every, "wedged": self.wedged,
                "ignored_after_fail": self.ignored, "started_unix_ns": self.started_ns, "written_at_unix_ns": time.time_ns()}  # fmt: skip

    def _write_stats(self) -> None:
        if self.opts.stats_file is not None:
            replace_atomically(self.opts.stats_file, (json.dumps(self.stats(), indent=2) + "\n").encode())

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.opts.stats_interval)
            self._write_stats()

    def summary(self) -> str:
        a = self.analysis
        w = a.window.figures()
        levels = ", ".join(f"{k} {v}" for k, v in sorted(a.per_level.items())) or "none"
        return (f"analyzer {self.opts.id} (weight {self.weight:g}): {a.messages} messages acknowledged in {self.batches} batches "
                f"({self.acks_sent} acks), {a.duplicates} duplicates, {a.refused} refused; {len(a.per_host)} hosts, "
                f"{len(a.producers)} producers; levels: {levels}; error rate over the last {w['window_s']} s {w['error_rate']:.3f}")  # fmt: skip
