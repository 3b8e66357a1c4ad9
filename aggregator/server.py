"""The aggregator's core: one process, one event loop (epoll), every endpoint.

The core knows nothing of transports. It sees a ``Binding`` (see ``transports/base.py``): an
optional listener that yields endpoints, and endpoints that yield framed messages. Per turn::

    epoll.poll() -> for each ready endpoint: read (large reads, framing) -> validate + encode
                 -> hand the encoded lines to the sink, which writes them in large blocks

Work per message is framing, one validation and a splice, in one native pass per read where the
C extension is built (``hotpath.py``; else ``framing.py`` and ``records.py``; input formats other
than JSON: ``formats.py``, chosen by ``--format``); syscalls are per
read and per turn, not per message. The output is written when 256 KiB are pending or
``--flush-interval`` has passed since the oldest pending line (``received_ns`` is taken at read
time, so this costs no measured latency; a crash can lose at most that interval of output, which
a clean stop never does). After a turn with few messages the loop pauses ``--coalesce-us`` so the
next turn gathers several (see ``COALESCE_BELOW``). ``select.epoll`` is used directly: the ``selectors`` wrapper costs a
few microseconds per wakeup, which at one message per wakeup is a third of the work.

Connections: at most ``max_connections`` are open; at the limit the loop stops accepting (the
listener is not watched) and the kernel's listen backlog holds newcomers, pushing back on them
once full; each closed connection makes room again. A connection is never accepted and then
closed unread: its client was told its data was sent. ``accept`` failing for lack of descriptors
(EMFILE, ...) pauses accepting for ``ACCEPT_RETRY_S``, never a busy loop.

Shutdown (SIGTERM, SIGINT, ``--duration``): stop new connections where the kernel can (see each
listener's ``begin_drain``), accept every connection already established, whatever the limit, and
tell every endpoint to drain (see each transport's ``begin_drain``); keep reading until every
endpoint is finished or ``--drain-timeout`` passes, then read once more what the kernel still
holds, close, flush, fsync.

Backpressure: when the output cannot be written (disk full, ...) and the backlog exceeds
``max_backlog_bytes``, the loop stops reading. Stream producers then block in the kernel; datagram
senders lose messages in the kernel, where it counts them.

Several cores in one process (``--threads N``, ``threads.py``): the loop in the main thread is the
*owner* (signals, listener, stats, the sink's lifecycle); reader threads run more loops of this
class (``owner`` False) over connections the owner moves to them when it falls behind
(``SPREAD_READ_CALLS``), or over their own copy of a shared datagram socket. Every loop hands
whole-line blocks to the one sink, under its lock; each counts in its own ``Counters``, merged
for the stats file (``total_counters``). Backpressure, the drain and the connection limit hold
across them: each loop pauses on the shared backlog, the owner ends the readers when its listener
is drained and waits for them before closing the sink, and the limit counts every loop's
connections.
"""

from __future__ import annotations

import select
import signal
import socket
import sys
import time

from .counters import Counters
from .formats import Decoder
from .framing import Reject
from .hotpath import frame_and_encode
from .files import UnsafePath, reason
from .settings import Settings
from .sink import OutputSink
from .transports.base import Binding, Endpoint

# One read. 64 KiB already makes reads rare per message (~330 lines of 200 bytes), and stays in
# cache: at capacity on tcp, 256 KiB reads cost 1.1-1.6 us of CPU per message, 64 KiB 0.7-1.0.
READ_BUFFER_BYTES = 64 * 1024

# Coalescing: after a turn that read fewer messages than this, pause --coalesce-us before the
# next poll so that the next turn finds several messages waiting (like NIC interrupt moderation).
# At one message per wakeup, the poll and the read cost more than the message itself.
# It is off while an endpoint's kernel queue holds fewer messages than twice COALESCE_BELOW
# (``queue_limit``; unixgram: net.unix.max_dgram_qlen, 10 without systemd's 512): its senders
# would block during the pause. Measured on unixgram at 40k msg/s: p99 55-115 ms with the pause,
# under 1 ms without.
COALESCE_BELOW = 16
ACCEPT_RETRY_S = 0.1  # after accept() failed for lack of descriptors
# --threads: the main thread's loop keeps every connection while it keeps up (one loop, one
# wakeup per turn: the CPU per message of one thread). A read of one connection that needed
# SPREAD_READ_CALLS calls or more found more than a full read waiting (64 KiB on a byte stream,
# about 330 lines of 200 bytes; 64 messages on seqpacket): the loop is falling behind. It then
# spreads its connections evenly over the reader threads, and hands new ones to the least-loaded
# loop until SPREAD_HOLD_S after the last such read.
SPREAD_READ_CALLS = 2
SPREAD_HOLD_S = 1.0
MAX_POLL_S = 3600.0  # no single wait longer than this (epoll takes at most ~24 days)

_ACCEPT, _READ, _WAKE = "accept", "read", "wake"


def _small_queue(endpoint: Endpoint) -> bool:
    return endpoint.queue_limit is not None and endpoint.queue_limit < 2 * COALESCE_BELOW


# SIGTERM/SIGINT: drain and stop. SIGUSR1 and SIGHUP: reopen the output and rejects files, as
# log daemons do for logrotate (SIGHUP also arrives when the terminal of a foreground aggregator
# closes: a reopen, not a death without a drain).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
REOPEN_SIGNALS = (signal.SIGUSR1, signal.SIGHUP)
HANDLED_SIGNALS = {*STOP_SIGNALS, *REOPEN_SIGNALS}


class Aggregator:
    """The event loop of one receiving process, configured by ``settings`` (``settings.py``)."""

    def __init__(self, binding: Binding, sink: OutputSink, counters: Counters, settings: Settings) -> None:
        self.binding = binding
        self.sink = sink
        self.counters = counters
        self.settings = settings
        self.transport_name = settings.transport
        self.max_connections = settings.max_connections
        self.drain_timeout = settings.drain_timeout
        self.stats_file = settings.stats_file
        self.stats_interval = settings.stats_interval
        self.duration = settings.duration
        self.max_backlog_bytes = settings.max_backlog_bytes
        self.peer_credentials = settings.peer_credentials
        self.coalesce_us = settings.coalesce_us
        self.idle_flush = settings.idle_flush
        self.decoder = Decoder(settings.format)
        self._epoll = select.epoll()
        self._by_fd: dict[int, tuple[str, object]] = {}  # fd -> (what, endpoint/listener/wake)
        self._next_due = 0.0  # when housekeeping must run next (monotonic)
        self._flags_set = False
        self._finished = False
        self._wake: socket.socket | None = None
        self._connections: set[Endpoint] = set()  # accepted via the listener
        self._endpoints: set[Endpoint] = set()  # every endpoint being read
        self._stop_requested = False
        self._reopen_requested = False
        self._draining = False
        self._paused = False
        self._accepting = False  # the listener is watched (not at the connection limit, not failing)
        self._accept_retry_at: float | None = None  # after an accept() error: when to try again
        self._accept_errno: int | None = None  # the last accept() error, reported once per kind
        self._listener_drained = binding.listener is None
        self.stats_write_failed = False
        self._buffer = memoryview(bytearray(READ_BUFFER_BYTES))
        self._small_queues = 0  # endpoints whose kernel queue is too small to pause on
        # --threads: the loop in the main thread owns signals, files, stats and the listener; a
        # reader thread's loop is not the owner (``threads.py``). ``readers``: the owner's threads.
        self.owner = True
        self.readers = None
        self._falling_behind = False  # --threads: this turn found a backlog (SPREAD_READ_CALLS)
        self._spread_until = 0.0  # --threads: new connections go to the least-loaded loop until then
        self._handed_output = False  # lines (or rejects) handed to the sink may still be pending

    def use_threads(self, n: int, sharing) -> None:
        """Read with ``n`` loops in all: this one and ``n - 1`` reader threads, sharing the
        transport as ``sharing`` says (``threads.py``). Call before ``run``."""
        if n <= 1:
            return
        from .threads import ReaderThreads, SharedSink

        self.sink = SharedSink(self.sink)
        make_loop = lambda binding, settings, counters: type(self)(binding, self.sink, counters, settings)  # noqa: E731
        self.readers = ReaderThreads(n, self.binding, sharing, make_loop, self.settings, self.counters, self._wake_owner)

    def _wake_owner(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already due to wake, or stopped

    # -- signals ------------------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        self._stop_requested = True

    def request_reopen(self, *_: object) -> None:
        self._reopen_requested = True

    def install_signal_handlers(self) -> None:
        """Take over the stop and reopen signals. Call before announcing readiness: a signal that
        arrives between "listening" and the loop must still mean a graceful stop."""
        if self._wake is None:
            self._wake = self._install_signals()

    def _make_wake(self) -> socket.socket:
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._wake_w = wake_w
        return wake_r

    def _install_signals(self) -> socket.socket:
        # Handlers only set flags; the wakeup fd makes poll() return at once.
        wake_r = self._make_wake()
        wake_w = self._wake_w
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        for sig in STOP_SIGNALS:
            signal.signal(sig, self.request_stop)
        for sig in REOPEN_SIGNALS:
            signal.signal(sig, self.request_reopen)
        return wake_r

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> bool:
        """Serve until stopped; return True if everything accepted was written."""
        if self.owner:
            self.install_signal_handlers()
        elif self._wake is None:
            self._wake = self._make_wake()  # a reader thread: no signals (the owner's)
        wake = self._wake
        self._watch(wake.fileno(), _WAKE, wake)
        self._flags_set = self._stop_requested or self._reopen_requested  # signals before the loop
        if self.binding.listener is not None:
            self._resume_accepting()
        for endpoint in self.binding.endpoints:
            self._add_endpoint(endpoint)
        if self.owner:
            self._count_moved_torn_lines(self.sink.torn_at_start)
        if self.readers is not None:
            self.readers.start()
        start = time.monotonic()
        self._stop_at = start + self.duration if self.duration is not None else None
        self._next_stats = start + self.stats_interval if self.stats_interval else None
        self._drain_deadline: float | None = None
        poll = self._epoll.poll
        monotonic = time.monotonic
        sleep = time.sleep
        coalesce = self.coalesce_us / 1e6
        idle_flush, sink = self.idle_flush, self.sink
        try:
            self._housekeeping(start)
            while not self._finished:
                # The hot path: poll, read every ready endpoint, hand the lines to the sink.
                # Housekeeping (signals, stats, deadlines, backpressure) runs only when due.
                timeout = min(self._next_due - monotonic(), MAX_POLL_S)
                if self._turn(poll(timeout if timeout > 0 else 0)) < COALESCE_BELOW:
                    # A light turn: the loop is about to wait (the pause below, or the next poll).
                    # With --idle-flush, write what is pending now, while the CPU would idle anyway:
                    # lines then wait for 256 KiB or --flush-interval only under load.
                    if idle_flush and sink.writable_backlog:
                        sink.flush()
                    if coalesce and not self._small_queues:
                        sleep(coalesce)
                now = monotonic()
                if now >= self._next_due or self._flags_set:
                    self._housekeeping(now)
            self._final_read()
        finally:
            if self.owner:
                signal.set_wakeup_fd(-1)
            for endpoint in list(self._endpoints):
                self._close_endpoint(endpoint)
            listener = self.binding.listener
            if listener is not None and (not self._listener_drained or listener.stays_open_after_drain):
                listener.close()
            self.binding.cleanup()
            if self.readers is not None:  # each drains on its own deadline, set when it was ended
                self.readers.join(self.drain_timeout + 1.0)
            wake.close()
            self._wake_w.close()
            self._epoll.close()
            if self.owner:
                ok = self._close_output()
            else:  # a reader thread: the owner closes the sink (what it cannot write, it reports)
                self.sink.flush()
                ok = True
        return ok

    def _close_output(self) -> bool:
        ok = self.sink.close(deadline=time.monotonic() + self.drain_timeout)
        if self.readers is not None and self.readers.failures:
            ok = False
        # Counted as written when handed to the sink; what a full disk kept out is not.
        self.counters.messages_unwritten = self.sink.unwritten_lines
        self.counters.messages_written -= self.sink.unwritten_lines
        self.counters.stopped_unix_ns = time.time_ns()
        self.stats_write_failed = not self.write_stats()
        return ok

    def _housekeeping(self, now: float) -> None:
        self._flags_set = False
        if self.readers is not None and self.readers.failures and not self._stop_requested:
            print(f"aggregator: {'; '.join(self.readers.failures)}; stopping", file=sys.stderr, flush=True)
            self._stop_requested = True  # as a dead worker stops --workers: exit 1, said why
        if self._stop_at is not None and now >= self._stop_at:
            self._stop_requested = True
        if self._stop_requested and not self._draining:
            self._drain_deadline = now + self.drain_timeout
            self._begin_drain()
        if self._draining and not self._listener_drained and self._accept_retry_at is not None and now >= self._accept_retry_at:
            self._accept(self.binding.listener)  # connections still waiting for a descriptor
        if self._draining and ((not self._endpoints and self._listener_drained and not self._readers_running())
                               or now >= self._drain_deadline):  # fmt: skip
            self._finished = True
            return
        if not self._accepting and not self._draining and self._accept_retry_at is not None and now >= self._accept_retry_at:
            self._resume_accepting()
        if not self._accepting and self.readers is not None and self._accept_retry_at is None:
            self._resume_accepting()  # a reader thread closed a connection: room again
        if self._next_stats is not None and now >= self._next_stats:
            self.write_stats()
            self._next_stats = now + self.stats_interval
        if self._reopen_requested:
            self._reopen_requested = False
            self.sink.reopen()
        flush_due = None
        if self.owner or self._handed_output:
            self.sink.flush_if_due(now)
            flush_due = self.sink.flush_due
            # A reader thread wakes for the shared sink's deadline only while lines it handed over
            # may be pending, not for every other loop's (an idle reader would wake 100 times a second).
            self._handed_output = flush_due is not None
        self._count_moved_torn_lines(self.sink.torn_dead_worker)
        self._check_backpressure()
        due = [d for d in (self._stop_at, self._next_stats, self._drain_deadline, flush_due, self._accept_retry_at) if d is not None]
        if self._paused:
            due.append(now + 0.1)  # retry the stalled output
        self._next_due = min(due) if due else now + MAX_POLL_S

    def _spread(self, out: list[bytes]) -> None:
        """--threads, this loop is falling behind: move its connections beyond an even share to
        the least-loaded reader threads. What it read from them is handed to the sink first
        (``out``), so each connection's lines stay in order across the move."""
        self._falling_behind = False
        if self._draining or self._paused:
            return
        self._spread_until = time.monotonic() + SPREAD_HOLD_S
        readers = self.readers
        share = -(-self._open_connections() // readers.n)  # an even share, rounded up
        movable = [c for c in self._connections if c in self._endpoints]
        if len(movable) <= share:
            return
        if out:
            self.sink.add(out)
            out.clear()
        for conn in movable[share:]:
            if not readers.take_over(conn, share):
                break  # every reader has its share
            self._unwatch(conn.fileno())
            self._endpoints.discard(conn)
            self._connections.discard(conn)
            if _small_queue(conn):
                self._small_queues -= 1
            self.counters.connections_opened -= 1  # counted again by the loop that takes it
            self.counters.connections_spread += 1

    def _readers_running(self) -> bool:
        return self.readers is not None and self.readers.running

    def _open_connections(self) -> int:
        """Open connections, the reader threads' included (what --max-connections bounds)."""
        return len(self._connections) + (self.readers.open_elsewhere() if self.readers is not None else 0)

    def _turn(self, events: list) -> int:
        """Serve one poll's events; return how many messages were read."""
        out: list[bytes] = []
        messages = 0
        by_fd = self._by_fd
        for fd, _ in events:
            what, obj = by_fd[fd]
            if what is _READ:
                messages += self._read(obj, out)
            elif what is _ACCEPT:
                self._accept(obj)
            else:
                self._flags_set = True  # a signal arrived: run housekeeping now
                try:
                    while obj.recv(4096):
                        pass
                except BlockingIOError:
                    pass
        if self._falling_behind:
            self._spread(out)
        if out:
            self.sink.add(out)
            self._handed_output = True
            if self.sink.backlog_bytes > self.max_backlog_bytes and not self._paused:
                self._check_backpressure()  # now, not at the next housekeeping: the bound holds
            flush_due = self.sink.flush_due
            if flush_due is not None and flush_due < self._next_due:
                self._next_due = flush_due
        return messages

    def _watch(self, fd: int, what: str, obj) -> None:
        self._by_fd[fd] = (what, obj)
        # An endpoint several processes read (--workers on a datagram socket) wakes one of them
        # per event, not all: the others would only find the queue already emptied.
        shared = what is _READ and obj.shared_by_processes
        self._epoll.register(fd, select.EPOLLIN | (select.EPOLLEXCLUSIVE if shared else 0))

    def _unwatch(self, fd: int) -> None:
        del self._by_fd[fd]
        self._epoll.unregister(fd)

    def _read(self, endpoint: Endpoint, out: list[bytes]) -> int:
        """Read one endpoint; encoded lines go to ``out``. Returns the messages read."""
        lines: list[bytes] = []
        rejects: list[Reject] = []
        fd = endpoint.fileno()
        nbytes, calls, finished = endpoint.read(self._buffer, lines, rejects)
        if calls >= SPREAD_READ_CALLS and self.readers is not None and not finished:
            self._falling_behind = True
        if endpoint.fileno() != fd and not self._paused and endpoint in self._endpoints:
            # The endpoint now waits on another descriptor (a --workers helper between standby
            # and reading): watch that one instead.
            self._unwatch(fd)
            self._watch(endpoint.fileno(), _READ, endpoint)
        received_ns = time.time_ns()
        c = self.counters
        c.bytes_received += nbytes
        c.read_calls += calls
        messages = 0
        if lines:
            # messages_received = written + rejected: the rejects are counted as they are recorded
            extra = endpoint.peer_fields if self.peer_credentials else None
            framer = endpoint.line_framer
            if framer is not None:  # unframed bytes: framing, validation and splice in one pass
                messages, written, empty = frame_and_encode(framer, lines, received_ns, self.transport_name, out, rejects, extra,
                                                            self.decoder.encode, json=self.decoder.reads_json)  # fmt: skip
            else:
                messages = len(lines)
                encode = self.decoder.encode_severity_framed if endpoint.severity_framed else self.decoder.encode
                written, empty = encode(lines, received_ns, self.transport_name, out, rejects, extra, newline_free=endpoint.newline_free)
            c.messages_received += written
            c.messages_written += written
            c.empty_lines += empty
        if finished:
            self._close_endpoint(endpoint, rejects)
        if rejects:
            self._record_rejects(rejects, received_ns, endpoint.label)
        return messages

    def _count_moved_torn_lines(self, moved: list[Reject]) -> None:
        """Torn lines the sink moved to the rejects file itself: counted here, once."""
        for r in moved:
            self.counters.reject(r.reason)
        self.counters.messages_received += len(moved)
        moved.clear()

    def _record_rejects(self, rejects: list[Reject], received_ns: int, source: str) -> None:
        for r in rejects:
            self.counters.reject(r.reason)
        self.counters.messages_received += len(rejects)
        self.sink.write_rejects(rejects, received_ns, source)
        self._handed_output = True
        due = self.sink.flush_due  # a summary, or a retry, may now be due before anything else
        if due is not None and due < self._next_due:
            self._next_due = due

    def _accept(self, listener) -> None:
        """Accept what the connection limit has room for (while draining: everything already
        established). At the limit, or when accept() fails for lack of descriptors, stop
        watching the listener: the kernel's backlog holds the rest (see the module doc)."""
        room = None if self._draining else self.max_connections - self._open_connections()
        if room is not None and room <= 0:
            self._pause_accepting()
            return
        try:
            accepted = listener.accept(room)
        except OSError as exc:
            self.counters.accept_errors += 1
            if exc.errno != self._accept_errno:
                print(f"aggregator: cannot accept connections: {exc.strerror}; retrying every {ACCEPT_RETRY_S:g} s",
                      file=sys.stderr, flush=True)
            self._accept_errno = exc.errno
            self._pause_accepting(retry=True)
            return
        self._accept_retry_at = None
        readers = self.readers
        spreading = readers is not None and time.monotonic() < self._spread_until
        for conn in accepted:
            if spreading and readers.hand_off(conn, len(self._connections)):
                continue  # that thread's loop counts it
            self.counters.connections_opened += 1
            self._connections.add(conn)
            self._add_endpoint(conn)
            if self._draining:
                # Taken in after the drain began: it drains too (AF_UNIX: its sender gets EPIPE,
                # and what the kernel accepted is read to EOF, so it finishes and frees its fd).
                conn.begin_drain()
        if accepted:
            self.counters.connections_open_peak = max(self.counters.connections_open_peak, self._open_connections())
        if listener.drained:
            # Nothing more can come: the listener drained after a stop, or (--workers) the
            # supervisor closed its channel, which means stop.
            if not self._draining:
                self.request_stop()
                self._flags_set = True
            self._close_listener()
        elif self._draining:
            if not self._accepting:  # after a retry: watch it again until it is drained
                self._accepting = True
                self._watch(listener.fileno(), _ACCEPT, listener)
        elif self._open_connections() >= self.max_connections:
            self._pause_accepting()

    def _pause_accepting(self, retry: bool = False) -> None:
        if self._accepting:
            self._unwatch(self.binding.listener.fileno())
            self._accepting = False
            if not retry:
                self.counters.accept_paused += 1
        if retry:
            self._accept_retry_at = time.monotonic() + ACCEPT_RETRY_S
            self._next_due = min(self._next_due, self._accept_retry_at)

    def _resume_accepting(self) -> None:
        listener = self.binding.listener
        if self._accepting or self._listener_drained or self._draining or listener is None:
            return
        if self._open_connections() >= self.max_connections:
            return
        self._accept_retry_at = None
        self._accepting = True
        self._watch(listener.fileno(), _ACCEPT, listener)

    def _close_listener(self) -> None:
        """Nothing more will come from the listener: stop accepting. One that stays open after
        it is drained (a worker's channel: rotations still come through it) stays watched."""
        listener = self.binding.listener
        self._listener_drained = True
        self._accept_retry_at = None
        if self.readers is not None:
            self.readers.end()  # everything accepted has been handed over: the threads may drain
        if listener.stays_open_after_drain:
            return
        if self._accepting:
            self._unwatch(listener.fileno())
            self._accepting = False
        listener.close()
        if self._draining and not self._endpoints:
            self._flags_set = True  # the drain may be complete now

    def _add_endpoint(self, endpoint: Endpoint) -> None:
        self._endpoints.add(endpoint)
        if _small_queue(endpoint):
            self._small_queues += 1
        if not self._paused:
            self._watch(endpoint.fileno(), _READ, endpoint)

    def _note_kernel_drops(self, endpoint: Endpoint) -> None:
        drops = endpoint.kernel_drops()  # datagram sockets count them; others say None
        if drops is not None:
            self.counters.kernel_drops = drops

    def _close_endpoint(self, endpoint: Endpoint, rejects: list[Reject] | None = None) -> None:
        if endpoint not in self._endpoints:
            return
        self._note_kernel_drops(endpoint)
        self._endpoints.discard(endpoint)
        if _small_queue(endpoint):
            self._small_queues -= 1
        if not self._paused:
            self._unwatch(endpoint.fileno())
        own_rejects: list[Reject] = [] if rejects is None else rejects
        endpoint.close(own_rejects)
        if rejects is None and own_rejects:
            self._record_rejects(own_rejects, time.time_ns(), endpoint.label)
        if endpoint in self._connections:
            self._connections.discard(endpoint)
            self.counters.connections_closed += 1
            listener = self.binding.listener
            if listener is not None:
                listener.connection_closed()  # a --workers supervisor counts its workers' connections
            if not self._accepting and self._accept_retry_at is None:
                self._resume_accepting()  # room again
        if self._draining and not self._endpoints and self._listener_drained:
            self._next_due = 0.0  # the last one finished: end the drain now, not at its deadline
            self._flags_set = True

    # -- shutdown -----------------------------------------------------------------------------
    def _begin_drain(self) -> None:
        self._draining = True
        listener = self.binding.listener
        if listener is not None and not self._listener_drained:
            # Refuse new connections where the kernel can, then take in every connection already
            # established (in the backlog, or still coming from a --workers supervisor): their
            # clients were told their data was sent. The listener stays watched until drained.
            listener.begin_drain()
            if not self._accepting:
                self._accepting = True
                self._watch(listener.fileno(), _ACCEPT, listener)
            self._accept(listener)
        elif self.readers is not None:
            self.readers.end()  # no listener (udp): nothing more to hand over
        out: list[bytes] = []
        for endpoint in list(self._endpoints):
            endpoint.begin_drain()
            if not self._paused:
                self._read(endpoint, out)  # an idle endpoint may be finished already
        if out:
            self.sink.add(out)
        self.sink.flush()

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
            self.sink.add(out)
        self.sink.flush()

    # -- backpressure -------------------------------------------------------------------------
    def _check_backpressure(self) -> None:
        if not self._paused and self.sink.backlog_bytes > self.max_backlog_bytes:
            self._paused = True
            self.counters.reading_paused += 1
            for endpoint in self._endpoints:
                self._unwatch(endpoint.fileno())
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
                    self._watch(endpoint.fileno(), _READ, endpoint)
                print("aggregator: reading resumed", file=sys.stderr, flush=True)

    # -- stats --------------------------------------------------------------------------------
    def _note_all_kernel_drops(self) -> None:
        for endpoint in self._endpoints:
            self._note_kernel_drops(endpoint)

    def total_counters(self) -> Counters:
        """This loop's counters, with the reader threads' added (``threads.py``)."""
        if self.readers is None:
            return self.counters
        from .counters import merge_counters
        from .threads import counters_snapshot

        merged = merge_counters([counters_snapshot(self.counters), *self.readers.counters()])
        merged.connections_open_peak = self.counters.connections_open_peak  # counted across threads here
        return merged

    def write_stats(self) -> bool:
        c = self.counters
        s = self.sink
        c.syslog_malformed = self.decoder.malformed
        self._count_moved_torn_lines(s.torn_dead_worker)
        c.output_write_calls = s.out.write_calls
        c.output_bytes = s.out.bytes_written
        c.output_write_errors = s.out.write_errors
        c.fsync_calls = s.fsync_calls
        c.output_reopens = s.reopens
        c.rejects_suppressed = s.rejects.suppressed_total
        c.rejects_write_errors = s.rejects.file.write_errors
        c.rejects_pending_bytes = s.rejects.file.backlog_bytes
        self._note_all_kernel_drops()
        if self.stats_file is None:
            return True
        try:
            if self.readers is None:
                c.write(self.stats_file)
            else:
                self.total_counters().write(self.stats_file, {"threads": self.readers.n, "per_thread": self.readers.counters()})
        except (OSError, UnsafePath) as exc:
            print(f"aggregator: cannot write stats file {self.stats_file.path}: {reason(exc)}", file=sys.stderr, flush=True)
            return False
        return True
