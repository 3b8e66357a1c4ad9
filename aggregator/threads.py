"""``--threads N``: one process, N reader threads, one writer: several cores, and the output is
still written by one owner of the files, so a line is never torn (as with one thread).

The main thread runs the aggregator's own event loop (``server.Aggregator``: signals, the
listener, housekeeping, stats, its share of the endpoints). The other N-1 threads each run an
event loop of their own (another ``Aggregator``, not the owner: no signals, no files of its own)
over the endpoints it is given. The GIL is released where the work is: ``epoll``, ``recv``,
``recvmmsg`` (ctypes), the native hot path's framing, validation and splice (``hotpath.py``) and
``write(2)``; what stays under the GIL (the loop's bookkeeping) is serialised::

    main thread (the owner)                            reader thread i (an Aggregator each)
      signals, --duration, stats (merged), reopen       its own epoll, read buffer, decoder,
      listener: accepts within --max-connections;       counters
        keeps its connections while it keeps up;   ──►  ThreadChannel -> connections
        falling behind, moves those beyond an even ◄──  "one of mine closed" (count, wake)
        share to the least-loaded readers, and     ──►  "end": no more connections (a stop)
        hands new ones to the least-loaded loop
      udp: reads the one socket; calls helpers in       udp: its own copy of the endpoint on
        (eventfd) on a backlog, as --workers does        the same socket, on standby until called
      fifo, unixgram: one reader (the main thread)
                 │                                                │
                 └──────────── SharedSink.add(whole lines) ◄──────┘
                               one OutputSink under one lock: one writer at a time, whole blocks

Spreading on load, not at once: one loop reading four connections wakes once per turn for all
four; four connections spread over two loops cost two wakeups, and the GIL's hand-overs, for the
same messages (measured at 4 x 10,000 msg/s: 30-60% more CPU per message on unixsock and tcp when
connections were spread at accept). So the main loop keeps every connection until a read of one
of them needs more than one full read buffer (``server.SPREAD_READ_CALLS``: it is falling
behind); then it moves the connections beyond an even share to the readers (between turns, after
handing what it read from them to the sink, so each connection's lines stay in order), and for
``server.SPREAD_HOLD_S`` after the last such read new connections go to the least-loaded loop.
A moved connection stays where it is. ``connections_spread`` counts the moves.

Why this keeps "never torn": every block handed to the sink is whole lines, and the sink is one
``OutputSink`` whose every call runs under one lock, so its short-write repair and its single
file offset work exactly as with one thread; no process other than this one appends. Counters
stay exact: each loop counts its own (no sharing, no lock per message), and the stats merge them
(``counters.merge_counters``) at each write; the connection count the limit is checked against is
kept under a lock (per connection, not per message). Order: a connection is read by one loop at a time
and moves only between turns, so each stream producer's lines stay in order; on udp, while a helper reads too, two loops' blocks
can land in either order (as with ``--workers``).

The pure-Python hot path (no C extension) holds the GIL for the framing and validation, so
threads would only add hand-offs: the aggregator then runs one thread, and says why.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
import traceback
from dataclasses import fields, replace
from typing import Callable

from .counters import Counters
from .settings import Settings
from .sink import OutputSink
from .transports.base import Binding, Endpoint, Listener


def effective_threads(requested: int, sharing, cpus: int, native: bool) -> tuple[int, str | None]:
    """``requested`` (0 = one per CPU) -> (threads, why fewer than asked, if so)."""
    if requested == 1:
        return 1, None
    if not native:
        return 1, "the pure-Python hot path holds the GIL while it works (build the C extension: make setup)"
    n, why_not = sharing.workers(requested, cpus)
    if why_not is not None:
        return 1, f"one reader only ({why_not})"
    return n, None


class SharedSink:
    """One ``OutputSink`` used by several threads: every call under one lock. Attributes are the
    sink's (read without the lock: figures for stats and scheduling, never acted on half-made)."""

    def __init__(self, sink: OutputSink) -> None:
        self._sink = sink
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self._sink, name)

    def add(self, chunks: list[bytes]) -> None:
        with self._lock:
            self._sink.add(chunks)

    def write_rejects(self, rejects, received_ns: int, source: str) -> None:
        with self._lock:
            self._sink.write_rejects(rejects, received_ns, source)

    def flush(self) -> bool:
        with self._lock:
            return self._sink.flush()

    @property
    def flush_due(self) -> float | None:
        with self._lock:  # computed from several fields a writer changes together
            return self._sink.flush_due

    def flush_if_due(self, now: float) -> None:
        with self._lock:
            self._sink.flush_if_due(now)

    def reopen(self) -> None:
        with self._lock:
            self._sink.reopen()

    def close(self, deadline: float | None = None) -> bool:
        with self._lock:
            return self._sink.close(deadline)


class ThreadChannel(Listener):
    """A reader thread's listener: the connections the main thread hands it (already accepted and
    adopted), an eventfd to wake its loop, and the count of its open ones, which the main thread
    checks --max-connections against. Drained at "end"."""

    def __init__(self, on_closed: Callable[[], None]) -> None:
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._queue: collections.deque[Endpoint] = collections.deque()
        self._lock = threading.Lock()
        self._ended = False
        self._on_closed = on_closed
        self.open = 0  # handed over and not yet closed (under _lock)
        self.drained = False

    # main thread side
    def hand(self, endpoint: Endpoint) -> None:
        with self._lock:
            self._queue.append(endpoint)
            self.open += 1
        os.eventfd_write(self._fd, 1)

    def end(self) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
        os.eventfd_write(self._fd, 1)

    # reader thread side (the Listener interface)
    def fileno(self) -> int:
        return self._fd

    def accept(self, limit: int | None) -> list[Endpoint]:
        try:
            os.eventfd_read(self._fd)
        except BlockingIOError:
            pass
        taken: list[Endpoint] = []
        with self._lock:
            while self._queue and (limit is None or len(taken) < limit):
                taken.append(self._queue.popleft())
            if self._ended and not self._queue:
                self.drained = True
        if self._queue:
            os.eventfd_write(self._fd, 1)  # more than the limit: come back
        return taken

    def connection_closed(self) -> None:
        with self._lock:
            self.open -= 1
        self._on_closed()

    def close(self) -> None:
        pass  # the eventfd outlives the loop: the main thread may still hand or end (then ``release``)

    def release(self) -> None:
        """After the reader thread has exited: the eventfd, and what was handed but never taken."""
        for endpoint in self._queue:
            endpoint.close([])
        os.close(self._fd)


def counters_snapshot(c: Counters) -> dict:
    """A reader's counters as ``merge_counters`` reads them, taken while it runs (a dict copy is
    one step under the GIL; the ints are read whole)."""
    snap = {f.name: getattr(c, f.name) for f in fields(Counters)}
    snap["rejected"] = dict(c.rejected)
    return snap


class ReaderThreads:
    """The N-1 reader threads beside the main thread's loop (index 0 is the main thread's)."""

    def __init__(self, n: int, binding: Binding, sharing, make_loop: Callable[[Binding, Settings, Counters], object],
                 settings: Settings, counters: Counters, wake_owner: Callable[[], None]) -> None:  # fmt: skip
        self.n = n
        self._wake_owner = wake_owner
        self.failures: list[str] = []
        self._next = 0
        self._lock = threading.Lock()
        self._finished = 0  # reader loops that have returned
        self._shared = sharing.prepare()  # udp: the eventfd that calls helpers in
        self._shared.worker_endpoints(binding.endpoints, 0)  # the main thread's are the primary
        self.channels = [ThreadChannel(wake_owner) for _ in range(n - 1)]
        # The main thread enforces --max-connections; a reader takes what it is handed.
        # The owner writes the stats (merged) and sets the sink-wide figures on its own counters only.
        reader_settings = replace(settings, duration=None, stats_file=None, stats_interval=None, max_connections=1 << 30)
        self.loops = []
        for i, channel in enumerate(self.channels, start=1):
            endpoints = self._shared.worker_endpoints([e.copy_for_reader() for e in binding.endpoints], i)
            reader_counters = Counters(transport=counters.transport, address=counters.address, started_unix_ns=counters.started_unix_ns,
                                       hot_path=counters.hot_path)  # fmt: skip
            loop = make_loop(Binding(address=binding.address, listener=channel, endpoints=endpoints), reader_settings, reader_counters)
            loop.owner = False
            self.loops.append(loop)
        self._threads = [threading.Thread(target=self._run, args=(loop,), name=f"reader-{i}", daemon=True)
                         for i, loop in enumerate(self.loops, start=1)]  # fmt: skip

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def _run(self, loop) -> None:
        try:
            loop.run()
        except BaseException:
            traceback.print_exc()
            self.failures.append(f"{threading.current_thread().name} failed")  # the owner stops (server._housekeeping)
        finally:
            with self._lock:
                self._finished += 1
            self._wake_owner()  # the owner's drain may be complete now

    @property
    def running(self) -> bool:
        """Some reader has not finished (told before the owner is woken, so it sees it)."""
        return self._finished < len(self.loops)

    def open_elsewhere(self) -> int:
        return sum(ch.open for ch in self.channels)

    def hand_off(self, endpoint: Endpoint, own_open: int) -> bool:
        """Give ``endpoint`` to the least-loaded loop (round robin among equals). False: the
        main thread's loop is that one, and keeps it."""
        loads = [own_open] + [ch.open for ch in self.channels]
        least = min(loads)
        for k in range(self.n):
            i = (self._next + k) % self.n
            if loads[i] == least:
                self._next = (i + 1) % self.n
                break
        if i == 0:
            return False
        self.channels[i - 1].hand(endpoint)
        return True

    def take_over(self, endpoint: Endpoint, share: int) -> bool:
        """Move ``endpoint`` (the main loop's, no longer watched there) to the least-loaded
        reader below ``share`` connections. False if every reader has its share."""
        channel = min(self.channels, key=lambda ch: ch.open)
        if channel.open >= share:
            return False
        channel.hand(endpoint)
        return True

    def end(self) -> None:
        """No more connections: each reader drains what it has, then stops."""
        for ch in self.channels:
            ch.end()

    def join(self, timeout: float) -> None:
        self.end()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            print(f"aggregator: reader threads {stuck} did not finish their drain", file=sys.stderr, flush=True)
            self.failures.append(f"{stuck} did not finish their drain")
            return  # their descriptors stay: closing them under a running loop would be worse
        for ch in self.channels:
            ch.release()
        self._shared.close()

    def counters(self) -> list[dict]:
        return [counters_snapshot(loop.counters) for loop in self.loops]
