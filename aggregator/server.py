"""The aggregator's core: one process, one event loop (selectors -> epoll), every endpoint.

The core knows nothing of transports. It sees a ``Binding`` (see ``transports/base.py``): an
optional listener that yields endpoints, and endpoints that yield framed messages. Per turn::

    select() -> for each ready endpoint: read (large reads, framing) -> validate + encode
             -> one write of every encoded line of the turn to the sink

Work per message is one ``orjson.loads`` and a splice (see ``records.py``); syscalls are per read
and per turn, not per message (except datagrams: one recv each, which Python cannot batch).

Shutdown (SIGTERM, SIGINT, ``--duration``): stop accepting, tell every endpoint to drain (see
each transport's ``begin_drain``), keep reading until every endpoint is finished or
``--drain-timeout`` passes, then read once more what the kernel still holds, close, flush, fsync.

Backpressure: when the output cannot be written (disk full, ...) and the backlog exceeds
``max_backlog_bytes``, the loop stops reading. Stream producers then block in the kernel; datagram
senders lose messages in the kernel, where it counts them.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import sys
import time
from pathlib import Path

from .counters import Counters
from .framing import Reject
from .records import encode_lines
from .sink import OutputSink
from .transports.base import Binding, Endpoint

READ_BUFFER_BYTES = 256 * 1024  # one read; large reads mean few syscalls per message
DEFAULT_MAX_BACKLOG_BYTES = 64 * 1024 * 1024

_ACCEPT, _READ, _WAKE = "accept", "read", "wake"


class Aggregator:
    def __init__(
        self,
        binding: Binding,
        sink: OutputSink,
        counters: Counters,
        *,
        transport_name: str,
        max_connections: int = 1024,
        drain_timeout: float = 5.0,
        stats_file: Path | None = None,
        stats_interval: float | None = None,
        duration: float | None = None,
        max_backlog_bytes: int = DEFAULT_MAX_BACKLOG_BYTES,
        peer_credentials: bool = False,
    ) -> None:
        self.binding = binding
        self.sink = sink
        self.counters = counters
        self.transport_name = transport_name
        self.max_connections = max_connections
        self.drain_timeout = drain_timeout
        self.stats_file = stats_file
        self.stats_interval = stats_interval
        self.duration = duration
        self.max_backlog_bytes = max_backlog_bytes
        self.peer_credentials = peer_credentials
        self._selector = selectors.DefaultSelector()
        self._connections: set[Endpoint] = set()  # accepted via the listener
        self._endpoints: set[Endpoint] = set()  # every endpoint being read
        self._stop_requested = False
        self._reopen_requested = False
        self._draining = False
        self._paused = False
        self._buffer = memoryview(bytearray(READ_BUFFER_BYTES))

    # -- signals ------------------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        self._stop_requested = True

    def request_reopen(self, *_: object) -> None:
        self._reopen_requested = True

    def _install_signals(self) -> socket.socket:
        # Handlers only set flags; the wakeup fd makes select() return at once.
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGUSR1, self.request_reopen)
        self._wake_w = wake_w
        return wake_r

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> bool:
        """Serve until stopped; return True if everything accepted was written."""
        wake = self._install_signals()
        sel = self._selector
        sel.register(wake, selectors.EVENT_READ, (_WAKE, wake))
        if self.binding.listener is not None:
            sel.register(self.binding.listener, selectors.EVENT_READ, (_ACCEPT, self.binding.listener))
        for endpoint in self.binding.endpoints:
            self._add_endpoint(endpoint)
        if self.sink.torn_at_start:
            self._record_rejects(self.sink.torn_at_start, time.time_ns(), str(self.sink.output))
        start = time.monotonic()
        stop_at = start + self.duration if self.duration else None
        next_stats = start + self.stats_interval if self.stats_interval else None
        drain_deadline = None
        try:
            while True:
                now = time.monotonic()
                if stop_at is not None and now >= stop_at:
                    self._stop_requested = True
                if self._stop_requested and not self._draining:
                    drain_deadline = now + self.drain_timeout
                    self._begin_drain()
                if self._draining and (not self._endpoints or now >= drain_deadline):
                    break
                if next_stats is not None and now >= next_stats:
                    self.write_stats()
                    next_stats = now + self.stats_interval
                if self._reopen_requested:
                    self._reopen_requested = False
                    self.sink.reopen()
                    self.counters.output_reopens += 1
                self._check_backpressure()
                deadlines = [d for d in (stop_at, next_stats, drain_deadline) if d is not None]
                timeout = max(0.0, min(deadlines) - now) if deadlines else None
                if self._paused:
                    timeout = 0.1 if timeout is None else min(timeout, 0.1)
                self._turn(sel.select(timeout))
            self._final_read()
        finally:
            signal.set_wakeup_fd(-1)
            for endpoint in list(self._endpoints):
                self._close_endpoint(endpoint)
            if self.binding.listener is not None and not self._draining:
                self.binding.listener.close()
            self.binding.cleanup()
            ok = self.sink.close(deadline=time.monotonic() + self.drain_timeout)
            wake.close()
            self._wake_w.close()
            sel.close()
            self.counters.stopped_unix_ns = time.time_ns()
            self.write_stats()
        return ok

    def _turn(self, events: list) -> None:
        out: list[bytes] = []
        for key, _ in events:
            what, obj = key.data
            if what is _READ:
                self._read(obj, out)
            elif what is _ACCEPT:
                self._accept(obj)
            else:
                try:
                    while obj.recv(4096):
                        pass
                except BlockingIOError:
                    pass
        if out:
            self.sink.write(out)
        elif self.sink.backlog_bytes:
            self.sink.flush()

    def _read(self, endpoint: Endpoint, out: list[bytes]) -> None:
        lines: list[bytes] = []
        rejects: list[Reject] = []
        nbytes, calls, finished = endpoint.read(self._buffer, lines, rejects)
        received_ns = time.time_ns()
        c = self.counters
        c.bytes_received += nbytes
        c.read_calls += calls
        if lines:
            # messages_received = written + rejected: the rejects are counted as they are recorded
            extra = endpoint.peer_fields if self.peer_credentials else None
            written, empty = encode_lines(lines, received_ns, self.transport_name, out, rejects, extra)
            c.messages_received += written
            c.messages_written += written
            c.empty_lines += empty
        if finished:
            self._close_endpoint(endpoint, rejects)
        if rejects:
            self._record_rejects(rejects, received_ns, endpoint.label)

    def _record_rejects(self, rejects: list[Reject], received_ns: int, source: str) -> None:
        for r in rejects:
            self.counters.reject(r.reason)
        self.counters.messages_received += len(rejects)
        self.sink.write_rejects(rejects, received_ns, source)

    def _accept(self, listener) -> None:
        for conn in listener.accept():
            if len(self._connections) >= self.max_connections:
                listener.refuse(conn)
                self.counters.connections_rejected += 1
                continue
            self.counters.connections_opened += 1
            self._connections.add(conn)
            self.counters.connections_open_peak = max(self.counters.connections_open_peak, len(self._connections))
            self._add_endpoint(conn)

    def _add_endpoint(self, endpoint: Endpoint) -> None:
        self._endpoints.add(endpoint)
        if not self._paused:
            self._selector.register(endpoint, selectors.EVENT_READ, (_READ, endpoint))

    def _close_endpoint(self, endpoint: Endpoint, rejects: list[Reject] | None = None) -> None:
        if endpoint not in self._endpoints:
            return
        self._endpoints.discard(endpoint)
        if not self._paused:
            self._selector.unregister(endpoint)
        own_rejects: list[Reject] = [] if rejects is None else rejects
        endpoint.close(own_rejects)
        if rejects is None and own_rejects:
            self._record_rejects(own_rejects, time.time_ns(), endpoint.label)
        if endpoint in self._connections:
            self._connections.discard(endpoint)
            self.counters.connections_closed += 1

    # -- shutdown -----------------------------------------------------------------------------
    def _begin_drain(self) -> None:
        self._draining = True
        listener = self.binding.listener
        if listener is not None:
            self._selector.unregister(listener)
            listener.close()  # new connections are refused from here on
        out: list[bytes] = []
        for endpoint in list(self._endpoints):
            endpoint.begin_drain()
            if not self._paused:
                self._read(endpoint, out)  # an idle endpoint may be finished already
        if out:
            self.sink.write(out)

    def _final_read(self) -> None:
        """Drain deadline (or all finished): take what the kernel still holds, then close."""
        out: list[bytes] = []
        for endpoint in list(self._endpoints):
            for _ in range(64):  # bounded: a peer still writing cannot keep us here
                before = self.counters.bytes_received
                if endpoint not in self._endpoints:
                    break
                self._read(endpoint, out)
                if self.counters.bytes_received == before:
                    break
        if out:
            self.sink.write(out)

    # -- backpressure -------------------------------------------------------------------------
    def _check_backpressure(self) -> None:
        if not self._paused and self.sink.backlog_bytes > self.max_backlog_bytes:
            self._paused = True
            self.counters.reading_paused += 1
            for endpoint in self._endpoints:
                self._selector.unregister(endpoint)
            print(
                f"aggregator: output backlog {self.sink.backlog_bytes} bytes; reading paused",
                file=sys.stderr,
                flush=True,
            )
        elif self._paused:
            self.sink.flush()
            if self.sink.backlog_bytes <= self.max_backlog_bytes // 2:
                self._paused = False
                for endpoint in self._endpoints:
                    self._selector.register(endpoint, selectors.EVENT_READ, (_READ, endpoint))
                print("aggregator: reading resumed", file=sys.stderr, flush=True)

    # -- stats --------------------------------------------------------------------------------
    def write_stats(self) -> None:
        c = self.counters
        s = self.sink
        c.output_write_calls = s.write_calls
        c.output_bytes = s.bytes_written
        c.output_write_errors = s.write_errors
        c.fsync_calls = s.fsync_calls
        if self.stats_file is not None:
            try:
                c.write(self.stats_file)
            except OSError as exc:
                print(f"aggregator: cannot write stats file {self.stats_file}: {exc}", file=sys.stderr)
