"""``--workers N``: N receiving processes behind one address, so the aggregator can use N cores.

One Python process runs one core at most (the GIL), and on a machine shared with its producers it
gets one scheduler share however busy it is; syslog-ng, multi-threaded, gets several. Workers are
forked copies of the single-process aggregator: each runs the same event loop
(``aggregator.server``) with its own counters and its own output buffer. The supervisor (the
process that was started) owns the address and the files, distributes, and merges counters. How a
transport is shared is its ``sharing`` strategy (``transports/base.py``)::

    supervisor                                          worker i (forked; an Aggregator each)
      owns the output and rejects files (their flock)   writes to the same open files
      HandOff (stream sockets): listens, accepts, ──c + fd──►  WorkerChannel -> connections
        hands each connection to the next worker  ◄──x + n───  "n of my connections closed"
        with room, over a SOCK_SEQPACKET channel   ──e───────►  "no more connections" (a stop)
      SharedSocket (udp): binds once; worker 0 reads the socket, the others are called in
        (eventfd) when it finds a backlog (see DatagramEndpoint)
      SingleReader (fifo, unixgram): --workers N > 1 is refused (``effective_workers``)
      SIGUSR1: opens and locks the new files, sends  ──o + 2 fds─►  switch to them (queued per
        worker until its channel takes it: a worker never stays on a rotated file)
      SIGTERM/SIGINT/--duration: stop new connections, accept what is established and hand it
        over (within each worker's share: a worker never gets more descriptors than it can take),
        then "e" on every channel; SIGCONT + SIGTERM each worker (each drains)
      --stats-file: each worker writes its own; the supervisor merges them (and lists them)

Connections: the supervisor counts each worker's open connections (handed over, minus those the
worker reports closed) and hands a connection only to a worker below its share of
``--max-connections`` (the shares add up to it exactly); when every worker is full it stops
accepting, and the kernel's backlog holds the newcomers. A connection is never accepted and then
dropped, during a stop included.

Output: every worker appends blocks of whole lines to the same files, each ``write`` under a
POSIX record lock the workers share (taken without waiting: a stopped worker cannot stall the
others), after checking that the file ends in a newline: a short write is cut back at once
(``aggregator.sink``), and a half line left by a worker killed inside ``write(2)`` is moved to the
rejects file before anyone appends. So the output holds whole lines only, as with one process.
Order: a connection belongs to one worker, so a stream producer's lines stay in order; on a
shared udp socket, while helpers read too, two workers' blocks can land in either order.
"""

from __future__ import annotations

import collections
import json
import os
import select
import signal
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

from .counters import Counters, merge_counters
from .files import Target, UnsafePath, reason
from .server import HANDLED_SIGNALS, REOPEN_SIGNALS, STOP_SIGNALS
from .settings import Settings, share
from .sink import OutputSink
from .transports.base import Binding, ListenOptions, Listener, Transport

_KILL_GRACE_S = 10.0  # after the workers' own drain deadline, before the supervisor SIGKILLs them
_ACCEPT_RETRY_S = 0.1  # after accept() failed for lack of descriptors
_MAX_POLL_S = 3600.0

# Channel messages (SOCK_SEQPACKET keeps each whole): supervisor -> worker
_CONNECTION = b"c"  # + the connection's fd
_FILES = b"o"  # + the new output and rejects fds (after a rotation)
_END = b"e"  # no more connections will come (a stop); the channel stays open for rotations
# worker -> supervisor
_CLOSED = b"x"  # + 4 bytes: how many of its connections were closed


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def effective_workers(requested: int, transport: Transport) -> tuple[int, str | None]:
    """``requested`` (0 = one per CPU) -> (workers, error), as the transport's sharing allows:
    a one-reader transport has one reader whatever is asked with 0, and an explicit N > 1 on it
    is an error the user should hear about."""
    n, why_not = transport.sharing.workers(requested, cpu_count())
    if why_not is not None:
        return n, f"--workers {requested}: {transport.name} has one reader only ({why_not}); use --workers 1"
    return n, None


def _die_with_parent() -> None:
    """A worker whose supervisor is gone (even SIGKILLed) gets SIGTERM and drains: no orphans
    left holding the address."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _fds_payload(fds: list[int]) -> list[tuple[int, int, bytes]]:
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))]


class WorkerChannel(Listener):
    """A worker's end of its channel to the supervisor, as the event loop's listener: it yields
    the connections the supervisor hands over, switches the sink to new files on a rotation, and
    reports closed connections back. It is drained at "e" (or EOF: the supervisor is gone), and
    stays watched after that: a rotation can still come while the worker drains."""

    stays_open_after_drain = True

    def __init__(self, channel: socket.socket, transport: Transport, options: ListenOptions, on_files: Callable[[int, int], None]) -> None:
        channel.setblocking(False)
        self.channel = channel
        self.transport = transport
        self.options = options
        self.on_files = on_files
        self.drained = False
        self._unreported = 0

    def fileno(self) -> int:
        return self.channel.fileno()

    def accept(self, limit: int | None) -> list:
        accepted = []
        self._report()
        while limit is None or len(accepted) < limit:
            try:
                data, fds, flags, _ = socket.recv_fds(self.channel, 16, 2)
            except BlockingIOError:
                break
            except ConnectionResetError:
                data, fds = b"", []
            if not data:
                self.drained = True  # the supervisor is gone
                break
            if flags & socket.MSG_CTRUNC:  # cannot happen within the share the supervisor keeps
                print("aggregator: a worker could not receive a descriptor (fd limit)", file=sys.stderr, flush=True)
            kind = data[:1]
            if kind == _FILES and len(fds) == 2:
                self.on_files(fds[0], fds[1])
            elif kind == _CONNECTION and len(fds) == 1:
                conn = socket.socket(fileno=fds[0])
                try:
                    addr = conn.getpeername()
                except OSError:  # the peer is already gone: read what it sent, then EOF
                    addr = None
                accepted.append(self.transport.adopt(conn, addr, self.options))
            elif kind == _END:
                self.drained = True
            else:
                for fd in fds:
                    os.close(fd)
        return accepted

    def connection_closed(self) -> None:
        self._unreported += 1
        self._report()

    def _report(self) -> None:
        """Tell the supervisor how many connections closed (retried until the channel takes it)."""
        if self._unreported:
            try:
                self.channel.send(_CLOSED + self._unreported.to_bytes(4, "little"), socket.MSG_DONTWAIT)
                self._unreported = 0
            except OSError:
                pass  # full for now (the next close or turn retries), or the supervisor is gone

    def close(self) -> None:
        self._report()
        self.channel.close()


class Supervisor:
    """Forks the workers, feeds them connections, relays signals and rotations, merges counters."""

    def __init__(self, transport: Transport, binding: Binding, settings: Settings,
                 make_worker: Callable[[int, Binding, Settings, Target], "object"], *, sink: OutputSink,
                 listen_options: ListenOptions) -> None:  # fmt: skip
        self.n = settings.workers
        self.transport = transport
        self.sharing = transport.sharing
        self.binding = binding
        self.settings = settings
        self.make_worker = make_worker  # (index, binding, the worker's settings, its stats file) -> Aggregator, in the child
        self.sink = sink
        self.listen_options = listen_options
        # Each worker's share of --max-connections; the shares add up to it exactly.
        self.shares = [share(settings.max_connections, self.n, i) for i in range(self.n)]
        self.stats_target = Target(settings.stats_file, "stats file") if settings.stats_file else None
        self.stats_write_failed = False
        self._stats_dir = Path(tempfile.mkdtemp(prefix="loglab-workers-"))
        self.pids: list[int] = []
        self._pidfds: dict[int, int] = {}  # pidfd -> worker index
        self._status: dict[int, int] = {}  # worker index -> exit code
        self._channels: list[socket.socket] = []  # the supervisor's ends, one per worker
        self._open = [0] * self.n  # connections each worker holds (handed over - reported closed)
        self._next = 0
        self._unsent: collections.deque[socket.socket] = collections.deque()  # accepted, not handed over yet
        # Per worker, control messages its channel has not taken yet, in order (a rotation's files,
        # then "e"): sent before any further connection, as soon as the channel is writable.
        self._outbox: list[collections.deque[tuple[bytes, list[int]]]] = [collections.deque() for _ in range(self.n)]
        self._accepting = False
        self._accept_retry_at: float | None = None
        self._listener_done = binding.listener is None
        self._ended = False  # "e" sent on every channel
        self._stop_requested = False
        self._reopen_requested = False
        self._stopping = False
        self._failed: list[str] = []
        self.accept_paused = 0
        self.accept_errors = 0

    def worker_stats_path(self, index: int) -> Path:
        return self._stats_dir / f"worker-{index}.json"

    # -- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Fork the workers; return once every one has its signal handlers in place (so a
        SIGTERM right after "listening" is a graceful stop, as with one process)."""
        self._supervisor_pid = os.getpid()
        shared = self.sharing.prepare()
        ready_r, ready_w = os.pipe()
        child_ends: list[socket.socket] = []
        for _ in range(self.n):
            parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            parent_end.setblocking(False)
            self._channels.append(parent_end)
            child_ends.append(child_end)
        # Signals that arrive while forking wait until the handlers below are installed.
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            for i in range(self.n):
                pid = os.fork()
                if pid == 0:
                    os.close(ready_r)
                    for j, end in enumerate(child_ends):
                        if j != i:
                            end.close()  # another worker's: a dead worker's channel must refuse
                    self._run_child(i, child_ends[i], shared, ready_w)  # never returns
                self.pids.append(pid)
                self._pidfds[os.pidfd_open(pid)] = i
            os.close(ready_w)
            for end in child_ends:
                end.close()
            shared.close()  # the workers' now
            for endpoint in self.binding.endpoints:  # the workers read them; not the supervisor
                endpoint.close([])
            self._await_ready(ready_r)
        finally:
            os.close(ready_r)
            self._install_signals()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)

    def _await_ready(self, ready_r: int) -> None:
        got = 0
        deadline = time.monotonic() + 30.0
        while got < self.n and time.monotonic() < deadline:
            r, _, _ = select.select([ready_r], [], [], 0.5)
            if r:
                data = os.read(ready_r, self.n)
                if not data:
                    break  # every worker closed the pipe: some died before getting ready
                got += len(data)
        if got < self.n:
            self._failed.append(f"only {got} of {self.n} workers started")
            self.request_stop()

    def _run_child(self, index: int, channel: socket.socket, shared, ready_w: int) -> None:
        code = 1
        try:
            _die_with_parent()
            if os.getppid() != self._supervisor_pid:
                return  # the supervisor died before the line above took effect
            if self.binding.listener is not None:
                self.binding.listener.close()  # the supervisor accepts; a worker never does
            for other in self._channels:
                other.close()
            for fd in self._pidfds:
                os.close(fd)
            self.sink.share_between_processes()
            if index:
                self.sink.torn_at_start.clear()  # repaired once before the fork, counted once (worker 0)
            listener = WorkerChannel(channel, self.transport, self.listen_options, self.sink.switch_to)
            endpoints = shared.worker_endpoints(self.binding.endpoints, index)
            binding = Binding(address=self.binding.address, listener=listener, endpoints=endpoints, info=self.binding.info)
            worker_settings = self.settings.for_worker(index)
            self.sink.rejects.burst = worker_settings.rejects_burst  # the shares add up to --rejects-burst
            aggregator = self.make_worker(index, binding, worker_settings, Target(self.worker_stats_path(index), "worker stats file"))
            aggregator.install_signal_handlers()
            for sig in REOPEN_SIGNALS:  # rotations come from the supervisor, with the files
                signal.signal(sig, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
            os.write(ready_w, b"r")
            os.close(ready_w)
            code = 0 if aggregator.run() else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    # -- run -----------------------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        self._stop_requested = True

    def request_reopen(self, *_: object) -> None:
        self._reopen_requested = True

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for sig in STOP_SIGNALS:
            signal.signal(sig, self.request_stop)
        for sig in REOPEN_SIGNALS:
            signal.signal(sig, self.request_reopen)

    def run(self) -> int:
        """Serve until every worker has exited; return the exit code (0: all workers exited 0)."""
        self._ep = ep = select.epoll()
        ep.register(self._wake_r.fileno(), select.EPOLLIN)
        for fd in self._pidfds:
            ep.register(fd, select.EPOLLIN)
        self._channel_index = {ch.fileno(): i for i, ch in enumerate(self._channels)}
        for ch in self._channels:
            ep.register(ch.fileno(), select.EPOLLIN)
        if not self._stop_requested:
            self._resume_accepting()
        start = time.monotonic()
        duration = self.settings.duration
        interval = self.settings.stats_interval
        stop_at = start + duration if duration is not None else None
        next_stats = start + interval if interval and self.stats_target else None
        kill_at = None
        listener = self.binding.listener
        try:
            while self._pidfds:
                now = time.monotonic()
                if stop_at is not None and now >= stop_at:
                    self._stop_requested = True
                if self._stop_requested and not self._stopping:
                    self._begin_stop()
                    kill_at = now + self.settings.drain_timeout + _KILL_GRACE_S
                if self._reopen_requested:
                    self._reopen_requested = False
                    self._reopen()
                if kill_at is not None and now >= kill_at:
                    alive = [i for i in range(self.n) if i not in self._status]
                    message = f"workers {alive} did not finish their drain within --drain-timeout; killed (their unwritten lines are lost)"
                    print(f"aggregator: {message}", file=sys.stderr, flush=True)
                    self._failed.append(message)
                    self._signal_workers(signal.SIGKILL)
                    kill_at = None
                if self._accept_retry_at is not None and now >= self._accept_retry_at:
                    self._accept_retry_at = None
                    self._hand_off()
                if next_stats is not None and now >= next_stats:
                    self.write_stats()
                    next_stats = now + interval
                due = [t for t in (stop_at, next_stats, kill_at, self._accept_retry_at) if t is not None]
                timeout = min(max(0.0, min(due) - now), _MAX_POLL_S) if due else _MAX_POLL_S
                for fd, events in ep.poll(timeout):
                    if fd == self._wake_r.fileno():
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except BlockingIOError:
                            pass
                    elif listener is not None and not self._listener_done and fd == listener.fileno():
                        self._hand_off()
                    elif fd in self._channel_index:
                        self._serve_channel(self._channel_index[fd], events)
                    elif fd in self._pidfds:
                        ep.unregister(fd)
                        self._reap(fd)
        finally:
            signal.set_wakeup_fd(-1)
            ep.close()
            for conn in self._unsent:
                conn.close()
            for ch in self._channels:
                ch.close()
            if listener is not None and not self._listener_done:
                listener.close()
            self.binding.cleanup()
        self.stats_write_failed = not self.write_stats()
        return 1 if self._failed or any(self._status.values()) else 0

    # -- connections ---------------------------------------------------------------------------
    def _worker_with_room(self, advance: bool = True) -> int | None:
        """The next worker in turn that is alive and below its share (a stop included: a worker
        never gets more descriptors than its share, which its fd limit allows)."""
        for k in range(self.n):
            i = (self._next + k) % self.n
            if i not in self._status and self._open[i] < self.shares[i]:
                if advance:
                    self._next = (i + 1) % self.n
                return i
        return None

    def _hand_off(self) -> None:
        """Hand over what is waiting, then accept and hand over while a worker has room. With no
        room (or every channel full), stop watching the listener: the kernel's backlog waits."""
        listener = self.binding.listener
        while True:
            if self._unsent:
                if not self._send_unsent():
                    self._pause_accepting()
                    return
                continue
            if self._listener_done:
                self._maybe_end()
                return
            if self._worker_with_room(advance=False) is None:
                self._pause_accepting()
                return
            try:
                conn, _ = listener.sock.accept()
            except BlockingIOError:
                if self._stopping:
                    self._finish_listener()
                else:
                    self._resume_accepting()
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # EMFILE and the like: try again shortly, never spin
                self.accept_errors += 1
                if self.accept_errors == 1:
                    print(f"aggregator: cannot accept connections: {exc.strerror}; retrying every {_ACCEPT_RETRY_S:g} s",
                          file=sys.stderr, flush=True)
                self._pause_accepting(retry=True)
                return
            self._unsent.append(conn)

    def _send_unsent(self) -> bool:
        """Pass the oldest unsent connection to a worker with room. False if none can take it now
        (then a channel's writability or a close report calls us again)."""
        conn = self._unsent[0]
        for _ in range(self.n):
            i = self._worker_with_room()
            if i is None:
                return False
            if self._outbox[i] and not self._flush_outbox(i):
                continue  # a rotation (or the end) goes first; its channel is full
            try:
                self._channels[i].sendmsg([_CONNECTION], _fds_payload([conn.fileno()]), socket.MSG_DONTWAIT)
            except BlockingIOError:
                self._watch_writable(i)
                continue  # that worker's channel is full: the next one
            except OSError:
                continue  # that worker is gone
            self._unsent.popleft()
            conn.close()
            self._open[i] += 1
            return True
        return False

    def _watch_writable(self, i: int) -> None:
        try:
            self._ep.modify(self._channels[i].fileno(), select.EPOLLIN | select.EPOLLOUT)
        except OSError:
            pass

    def _serve_channel(self, i: int, events: int) -> None:
        ch = self._channels[i]
        if events & select.EPOLLOUT:
            self._ep.modify(ch.fileno(), select.EPOLLIN)
            self._flush_outbox(i)
        while True:
            try:
                data = ch.recv(16)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:  # the worker is gone; its pidfd says how
                self._ep.unregister(ch.fileno())
                del self._channel_index[ch.fileno()]
                self._outbox[i].clear()
                break
            if data[:1] == _CLOSED and len(data) == 5:
                self._open[i] -= int.from_bytes(data[1:5], "little")
        if self._unsent or (not self._accepting and not self._listener_done and self._accept_retry_at is None):
            self._hand_off()  # room again (or a channel writable again)
        self._maybe_end()

    def _pause_accepting(self, retry: bool = False) -> None:
        listener = self.binding.listener
        if self._accepting and listener is not None:
            self._ep.unregister(listener.fileno())
            self._accepting = False
            if not retry and not self._stopping:
                self.accept_paused += 1
        if retry:
            self._accept_retry_at = time.monotonic() + _ACCEPT_RETRY_S

    def _resume_accepting(self) -> None:
        listener = self.binding.listener
        if listener is None or self._accepting or self._listener_done:
            return
        self._accepting = True
        self._ep.register(listener.fileno(), select.EPOLLIN)

    def _finish_listener(self) -> None:
        """Stopping, and the backlog is empty: close the listener."""
        listener = self.binding.listener
        if self._accepting:
            self._ep.unregister(listener.fileno())
            self._accepting = False
        listener.close()
        self._listener_done = True
        self._maybe_end()

    def _maybe_end(self) -> None:
        """Stopping, the listener done and everything handed over: "e" on every channel tells each
        worker that no more connections will come (its drain can end). The channels stay open:
        a rotation during the drain still reaches every worker."""
        if not (self._stopping and self._listener_done and not self._unsent) or self._ended:
            return
        self._ended = True
        for i in range(self.n):
            if i not in self._status:
                self._outbox[i].append((_END, []))
                self._flush_outbox(i)

    def _begin_stop(self) -> None:
        """New connections are refused from here on (AF_UNIX: at once; see StreamListener); what
        is already established is accepted and handed over; each worker then drains."""
        self._stopping = True
        listener = self.binding.listener
        # SIGCONT first: a worker stopped by SIGSTOP could hold the shared write lock, and
        # could neither drain nor let the others write.
        self._signal_workers(signal.SIGCONT)
        if listener is not None and not self._listener_done:
            listener.begin_drain()
            self._resume_accepting()
            self._hand_off()
        self._signal_workers(signal.SIGTERM)
        self._maybe_end()

    # -- rotation -------------------------------------------------------------------------------
    def _reopen(self) -> None:
        """SIGUSR1: open and lock the new files here (the owner), then give every worker the same
        open files, queued until its channel takes them: no worker stays on a rotated file."""
        before = self.sink.reopens
        self.sink.reopen()
        if self.sink.reopens == before:
            return  # refused and reported by the sink: everyone keeps the files already open
        files = [self.sink.out.fd, self.sink.rejects.file.fd]
        for i in range(self.n):
            if i not in self._status:
                # The newest files replace a rotation still queued: the older ones are moot. The
                # supervisor's own descriptors are sent, so they must stay open until taken: the
                # kernel takes its reference at sendmsg, so the sink may close its old ones then.
                box = self._outbox[i]
                self._outbox[i] = collections.deque(m for m in box if m[0] != _FILES)
                self._outbox[i].appendleft((_FILES, files))
                self._flush_outbox(i)

    def _flush_outbox(self, i: int) -> bool:
        """Send worker ``i``'s queued control messages in order. False if its channel is full
        (it is then watched for room)."""
        box = self._outbox[i]
        while box:
            kind, fds = box[0]
            try:
                self._channels[i].sendmsg([kind], _fds_payload(fds) if fds else [], socket.MSG_DONTWAIT)
            except BlockingIOError:
                self._watch_writable(i)
                return False
            except OSError:
                box.clear()  # the worker is gone: nothing to deliver
                return True
            box.popleft()
        return True

    # -- workers --------------------------------------------------------------------------------
    def _signal_workers(self, sig: int) -> None:
        for i, pid in enumerate(self.pids):
            if i not in self._status:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def _reap(self, pidfd: int) -> None:
        index = self._pidfds.pop(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(self.pids[index], 0)
        code = os.waitstatus_to_exitcode(status)
        self._status[index] = code
        self._outbox[index].clear()
        if not self._stopping:
            how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
            self._failed.append(f"worker {index} (pid {self.pids[index]}) {how}")
            print(f"aggregator: worker {index} (pid {self.pids[index]}) {how}; stopping", file=sys.stderr, flush=True)
            self._stop_requested = True

    # -- counters ------------------------------------------------------------------------------
    def merged_counters(self) -> tuple[Counters, list[dict]]:
        parts = []
        for i in range(self.n):
            try:
                parts.append(json.loads(self.worker_stats_path(i).read_text()))
            except (OSError, ValueError):
                pass  # not written yet (or the worker died before writing)
        merged = merge_counters(parts)
        merged.address = self.binding.address
        merged.accept_paused += self.accept_paused  # the supervisor accepts for stream transports
        merged.accept_errors += self.accept_errors
        return merged, parts

    def write_stats(self) -> bool:
        if self.stats_target is None:
            return True
        merged, parts = self.merged_counters()
        missing = [i for i in range(self.n) if not self.worker_stats_path(i).exists()]
        extra = {"workers": self.n, "per_worker": parts, "supervisor_failures": list(self._failed),
                 "workers_without_stats": missing}  # fmt: skip
        try:
            merged.write(self.stats_target, extra)
        except (OSError, ValueError, UnsafePath) as exc:
            print(f"aggregator: cannot write stats file {self.stats_target.path}: {reason(exc)}",
                  file=sys.stderr, flush=True)  # fmt: skip
            return False
        return True

    def cleanup(self) -> None:
        for i in range(self.n):
            try:
                self.worker_stats_path(i).unlink()
            except OSError:
                pass
        try:
            self._stats_dir.rmdir()
        except OSError:
            pass
        if self.stats_target is not None:
            self.stats_target.close()
