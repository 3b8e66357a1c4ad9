"""Membership and weights, kept in a JetStream key-value bucket so that every distributor replica,
the HTTP front and the control command see the same analyzers with the same weights.

Bucket ``ANALYZERS`` (history 1: only the latest value of each key is kept)::

    member.<id>   {"id", "weight", "registered_ns", "by"}     written at registration (the analyzer at
                                                              start, POST /analyzer/register, distributor-ctl);
                                                              a weight change rewrites it; deleted at deregistration
    beat.<id>     {"ns", "pid", "messages", "duplicates"}     the analyzer's heartbeat (every --heartbeat s)
    down.<id>     {"by", "reason", "at_ns"}                   a distributor whose delivery timed out

An analyzer is **online** when it is registered, its last heartbeat is younger than
``heartbeat_timeout``, and it is not marked down, or its down mark is older than ``down_hold`` and a
heartbeat came after it (a returning analyzer is taken back; a wedged one that still heartbeats is
tried again once per ``down_hold``). Ages are judged by the server's timestamp of each entry
against this host's clock (one machine here; across machines, as good as their clocks).

Bucket ``DISTRIBUTORS``: ``d.<distributor id>`` = that replica's counters per analyzer (written
every stats interval), read by ``GET /analyzer/stats``.

nats-server 2.9.10 has what this needs: KV buckets (streams ``KV_<bucket>``, one message per
subject), watches (ordered push consumers, last per subject, then every update), deletes as
``KV-Operation: DEL`` markers. It has no per-key TTL (2.11), hence heartbeats judged by age.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from dataclasses import dataclass, field
from typing import Callable

import orjson

BUCKET = "ANALYZERS"
STATS_BUCKET = "DISTRIBUTORS"
MEMBER, BEAT, DOWN, STATS = "member.", "beat.", "down.", "d."
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
HEARTBEAT_S = 0.5
HEARTBEAT_TIMEOUT_S = 1.5
DOWN_HOLD_S = 2.0
MAX_WEIGHT = 1e9


def valid_id(analyzer_id: str) -> bool:
    """An id is one subject token and one key token: letters, digits, _ and -, at most 64."""
    return bool(ID_RE.match(analyzer_id or ""))


def check_weight(weight) -> float:
    """A weight is a positive finite number (relative: normalised among the analyzers online)."""
    try:
        w = float(weight)
    except (TypeError, ValueError):
        raise ValueError(f"weight must be a positive number, not {weight!r}") from None
    if not (math.isfinite(w) and 0 < w <= MAX_WEIGHT):
        raise ValueError(f"weight must be a positive number up to {MAX_WEIGHT:g}, not {weight!r}")
    return w


def check_id(analyzer_id: str) -> str:
    if not valid_id(analyzer_id):
        raise ValueError(f"analyzer id {analyzer_id!r}: 1 to 64 letters, digits, '_' or '-'")
    return analyzer_id


# -- the buckets ---------------------------------------------------------------------------------


async def ensure_buckets(js, replicas: int = 1):
    """The two buckets (created when missing; creating an existing one with the same settings is a
    no-op on the server, so replicas starting together do not race). Returns (analyzers, stats)."""
    from nats.js.api import KeyValueConfig, StorageType

    out = []
    for name in (BUCKET, STATS_BUCKET):
        try:
            out.append(await js.key_value(name))
        except Exception:  # BucketNotFoundError (or a stream not found in its place)
            storage = StorageType.FILE if name == BUCKET else StorageType.MEMORY
            out.append(await js.create_key_value(KeyValueConfig(bucket=name, history=1, replicas=replicas, storage=storage)))
    return out[0], out[1]


def _dump(obj) -> bytes:
    return orjson.dumps(obj)


async def register(kv, analyzer_id: str, weight: float, by: str) -> dict:
    value = {"id": check_id(analyzer_id), "weight": check_weight(weight), "registered_ns": time.time_ns(), "by": by}
    await kv.put(MEMBER + analyzer_id, _dump(value))
    return value


async def registration(kv, analyzer_id: str) -> dict | None:
    """The member entry of ``analyzer_id``, or None when it is not registered."""
    from nats.js.errors import KeyDeletedError, KeyNotFoundError

    try:
        entry = await kv.get(MEMBER + check_id(analyzer_id))
    except (KeyNotFoundError, KeyDeletedError):
        return None
    return orjson.loads(entry.value) if entry.value else None


async def deregister(kv, analyzer_id: str) -> bool:
    """Delete the member entry (and its heartbeat and down mark). False if it was not registered."""
    was = await registration(kv, analyzer_id)
    for prefix in (MEMBER, BEAT, DOWN):
        await kv.delete(prefix + analyzer_id)
    return was is not None


async def set_weight(kv, analyzer_id: str, weight: float) -> dict:
    """Change a registered analyzer's weight (KeyError when it is not registered)."""
    current = await registration(kv, analyzer_id)
    if current is None:
        raise KeyError(analyzer_id)
    current["weight"] = check_weight(weight)
    await kv.put(MEMBER + analyzer_id, _dump(current))
    return current


async def heartbeat(kv, analyzer_id: str, info: dict) -> None:
    await kv.put(BEAT + analyzer_id, _dump({"ns": time.time_ns(), **info}))


async def mark_down(kv, analyzer_id: str, by: str, reason: str) -> None:
    await kv.put(DOWN + analyzer_id, _dump({"by": by, "reason": reason, "at_ns": time.time_ns()}))


# -- one replica's view ----------------------------------------------------------------------------


@dataclass
class AnalyzerState:
    id: str
    weight: float | None = None  # None: not registered (a heartbeat without a member entry)
    registered_ns: int = 0
    by: str = ""
    beat_ns: int = 0  # server time of the last heartbeat
    beat: dict = field(default_factory=dict)
    down_ns: int = 0  # server time of the last down mark (0: none)
    down: dict = field(default_factory=dict)

    def why_offline(self, now_ns: int, heartbeat_timeout: float, down_hold: float) -> str | None:
        """None when online, else the reason."""
        if self.weight is None:
            return "not registered"
        if not self.beat_ns:
            return "no heartbeat yet"
        if now_ns - self.beat_ns > heartbeat_timeout * 1e9:
            return f"missed heartbeat ({(now_ns - self.beat_ns) / 1e9:.1f} s)"
        if self.down_ns and (now_ns - self.down_ns < down_hold * 1e9 or self.beat_ns <= self.down_ns):
            return f"marked down: {self.down.get('reason', '?')}"
        return None


class MembershipView:
    """The analyzers as one replica sees them, from the bucket's entries."""

    def __init__(self, heartbeat_timeout: float = HEARTBEAT_TIMEOUT_S, down_hold: float = DOWN_HOLD_S, clock=time.time_ns) -> None:
        self.heartbeat_timeout = heartbeat_timeout
        self.down_hold = down_hold
        self.clock = clock
        self.analyzers: dict[str, AnalyzerState] = {}

    def apply(self, key: str, value: bytes, deleted: bool, ts_ns: int) -> None:
        prefix, _, aid = key.partition(".")
        prefix += "."
        if prefix not in (MEMBER, BEAT, DOWN) or not aid:
            return
        st = self.analyzers.get(aid) or self.analyzers.setdefault(aid, AnalyzerState(aid))
        data = {}
        if not deleted and value:
            with contextlib.suppress(orjson.JSONDecodeError):
                data = orjson.loads(value)
        if prefix == MEMBER:
            if deleted or not data:
                st.weight = None
            else:
                try:
                    st.weight = check_weight(data.get("weight"))
                except ValueError:
                    st.weight = None
                st.registered_ns, st.by = data.get("registered_ns", 0), data.get("by", "")
        elif prefix == BEAT:
            st.beat_ns, st.beat = (0, {}) if deleted else (ts_ns, data)
        else:
            st.down_ns, st.down = (0, {}) if deleted else (ts_ns, data)
        if st.weight is None and not st.beat_ns and not st.down_ns:
            del self.analyzers[aid]

    def mark_down_here(self, analyzer_id: str, reason: str) -> None:
        """This replica's own verdict, before its mark comes back through the bucket."""
        st = self.analyzers.get(analyzer_id)
        if st is not None:
            st.down_ns, st.down = self.clock(), {"reason": reason}

    def online(self) -> dict[str, float]:
        now = self.clock()
        return {a.id: a.weight for a in self.analyzers.values()
                if a.why_offline(now, self.heartbeat_timeout, self.down_hold) is None}  # fmt: skip

    def describe(self) -> dict[str, dict]:
        now = self.clock()
        out = {}
        for a in sorted(self.analyzers.values(), key=lambda a: a.id):
            why = a.why_offline(now, self.heartbeat_timeout, self.down_hold)
            out[a.id] = {"weight": a.weight, "registered": a.weight is not None, "online": why is None, "offline_reason": why,
                         "registered_by": a.by, "last_heartbeat_age_s": (now - a.beat_ns) / 1e9 if a.beat_ns else None,
                         "analyzer_counters": a.beat}  # fmt: skip
        return out


class Membership:
    """Watches the bucket into a ``MembershipView`` and calls ``on_change(online)`` whenever the
    online analyzers or their weights change: at an update, and at a heartbeat or down-hold expiry
    (checked every ``tick`` s)."""

    def __init__(self, kv, view: MembershipView, on_change: Callable[[dict[str, float]], None] | None = None,
                 tick: float = 0.05) -> None:  # fmt: skip
        self.kv = kv
        self.view = view
        self.on_change = on_change
        self.tick = tick
        self.current: dict[str, float] | None = None
        self.synced = asyncio.Event()  # the bucket's contents at start have been read
        self.revision = 0  # the bucket's sequence of the newest entry applied to the view
        self._tasks: list[asyncio.Task] = []
        self._watcher = None

    async def start(self) -> None:
        self._watcher = await self.kv.watchall()
        self._tasks = [asyncio.create_task(self._watch()), asyncio.create_task(self._expire())]
        await asyncio.wait_for(self.synced.wait(), 30)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()

    def check(self) -> None:
        online = self.view.online()
        if online != self.current:
            self.current = online
            if self.on_change is not None:
                self.on_change(online)

    async def _watch(self) -> None:
        async for entry in self._watcher:
            if entry is None:  # the initial contents are all in
                self.synced.set()
                self.check()
                continue
            ts = int(entry.created.timestamp() * 1e9) if entry.created is not None else time.time_ns()
            self.view.apply(entry.key, entry.value or b"", entry.operation in ("DEL", "PURGE"), ts)
            if entry.revision and entry.revision > self.revision:
                self.revision = entry.revision
            if entry.delta == 0:
                self.synced.set()
            if self.synced.is_set():
                self.check()

    async def caught_up(self, timeout: float = 2.0) -> bool:
        """Wait until the view holds every entry the bucket had when called: after a write of its
        own (a weight, a registration), the writer's next read shows it. False on timeout."""
        last = (await self.kv.status()).stream_info.state.last_seq
        deadline = time.monotonic() + timeout
        while self.revision < last:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.002)
        self.check()
        return True

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            if self.synced.is_set():
                self.check()
