"""``--workers N``: N receiving processes behind one address, so the aggregator can use N cores.

One Python process runs one core at most (the GIL), and on a machine shared with its producers it
gets one scheduler share however busy it is; syslog-ng, multi-threaded, gets several. Workers are
forked copies of the single-process aggregator: each runs the same event loop
(``aggregator.server``) with its own counters and its own output buffer. The supervisor (the
process that was started) only distributes, forwards signals and merges counters::

    supervisor                                      worker i (forked; an Aggregator each)
      stream sockets ("handoff"): listens,    ──fd──► HandoffListener -> connections -> loop
        accepts, passes each connection        SCM_RIGHTS
        to the next worker in turn
      datagram sockets ("shared"): binds once; worker 0 reads the socket, the others are called
        in (eventfd) when it finds a backlog (see DatagramEndpoint); a datagram is whole whoever
        reads it
      fifo: refused (a line can straddle two reads, so a FIFO has one reader)
      SIGTERM/SIGINT/--duration: stop accepting, then SIGTERM each worker (each drains)
      SIGUSR1: forwarded (each worker reopens the output)
      --stats-file: each worker writes its own; the supervisor merges them (and lists them)

Output: every worker has the output file open ``O_APPEND`` and writes blocks of whole lines; each
``write`` is appended whole, so lines never interleave. Order: a connection belongs to one worker,
so a stream producer's lines stay in order; on a shared datagram socket, while helpers read too,
two workers' blocks can land in either order (udp never promised order).
One guarantee is weaker than with one process: a short write (disk full) is completed by a later
write, and another worker's block can land in between, tearing that line.
"""

from __future__ import annotations

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
from .transports.base import Binding, ListenOptions, Transport

_KILL_GRACE_S = 10.0  # after the workers' own drain deadline, before the supervisor SIGKILLs them


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def effective_workers(requested: int, transport: Transport) -> tuple[int, str | None]:
    """``requested`` (0 = one per CPU) -> (workers, error). A FIFO has one reader whatever is
    asked with 0; an explicit N > 1 on it is an error the user should hear about."""
    if transport.parallel is None:
        if requested > 1:
            return 1, (
                f"--workers {requested}: {transport.name} has one reader only (a line can straddle two "
                "reads of a FIFO); use --workers 1"
            )
        return 1, None
    return (requested or cpu_count()), None


def _die_with_parent() -> None:
    """A worker whose supervisor is gone (even SIGKILLed) gets SIGTERM and drains: no orphans
    left holding the address."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Supervisor:
    """Forks the workers, feeds them connections, relays signals, waits, merges counters."""

    def __init__(
        self,
        workers: int,
        transport: Transport,
        binding: Binding,
        make_worker: Callable[[int, Binding, Path], "object"],
        *,
        listen_options: ListenOptions,
        release_parent_sink: Callable[[], None],
        drain_timeout: float,
        stats_file: Path | None,
        stats_interval: float | None,
        duration: float | None,
    ) -> None:
        self.n = workers
        self.transport = transport
        self.binding = binding
        self.make_worker = make_worker  # (index, binding, stats path) -> Aggregator, in the child
        self.listen_options = listen_options
        self.release_parent_sink = release_parent_sink
        self.drain_timeout = drain_timeout
        self.stats_file = stats_file
        self.stats_interval = stats_interval
        self.duration = duration
        self._stats_dir = Path(tempfile.mkdtemp(prefix="loglab-workers-"))
        self.pids: list[int] = []
        self._pidfds: dict[int, int] = {}  # pidfd -> worker index
        self._status: dict[int, int] = {}  # worker index -> exit code
        self._channels: list[socket.socket] = []  # handoff: the supervisor's ends
        self._next = 0
        self._stop_requested = False
        self._stopping = False
        self._failed: list[str] = []

    def worker_stats_path(self, index: int) -> Path:
        return self._stats_dir / f"worker-{index}.json"

    # -- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Fork the workers; return once every one has its signal handlers in place (so a
        SIGTERM right after "listening" is a graceful stop, as with one process)."""
        handoff = self.transport.parallel == "handoff"
        self._supervisor_pid = os.getpid()
        # Shared datagram socket: worker 0 reads it, the others help when it cannot keep up.
        self._help_fd = None if handoff else os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        ready_r, ready_w = os.pipe()
        child_ends: list[socket.socket] = []
        if handoff:
            for _ in range(self.n):
                parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                self._channels.append(parent_end)
                child_ends.append(child_end)
        # Signals that arrive while forking wait until the handlers below are installed.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1})
        try:
            for i in range(self.n):
                pid = os.fork()
                if pid == 0:
                    os.close(ready_r)
                    for j, end in enumerate(child_ends):
                        if j != i:
                            end.close()  # another worker's: a dead worker's channel must refuse
                    self._run_child(i, child_ends[i] if handoff else None, ready_w)  # never returns
                self.pids.append(pid)
                self._pidfds[os.pidfd_open(pid)] = i
            os.close(ready_w)
            for end in child_ends:
                end.close()
            if self._help_fd is not None:
                os.close(self._help_fd)  # the workers' now
            if not handoff:
                for endpoint in self.binding.endpoints:  # the workers read them; not the supervisor
                    endpoint.sock.close()
            self.release_parent_sink()
            self._await_ready(ready_r)
        finally:
            os.close(ready_r)
            self._install_signals()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1})

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

    def _run_child(self, index: int, channel: socket.socket | None, ready_w: int) -> None:
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
            if channel is not None:
                binding = self.transport.handoff_binding(self.binding.address, channel, self.listen_options)
            else:
                for endpoint in self.binding.endpoints:
                    endpoint.share(self._help_fd, helper=index > 0)
                binding = Binding(address=self.binding.address, endpoints=self.binding.endpoints, info=self.binding.info)
            aggregator = self.make_worker(index, binding, self.worker_stats_path(index))
            aggregator.install_signal_handlers()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1})
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

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGUSR1, lambda *_: self._signal_workers(signal.SIGUSR1))

    def run(self) -> int:
        """Serve until every worker has exited; return the exit code (0: all workers exited 0)."""
        ep = select.epoll()
        listener = self.binding.listener
        ep.register(self._wake_r.fileno(), select.EPOLLIN)
        if listener is not None and not self._stop_requested:
            ep.register(listener.fileno(), select.EPOLLIN)
        for fd in self._pidfds:
            ep.register(fd, select.EPOLLIN)
        start = time.monotonic()
        stop_at = start + self.duration if self.duration is not None else None
        next_stats = start + self.stats_interval if self.stats_interval and self.stats_file else None
        kill_at = None
        try:
            while self._pidfds:
                now = time.monotonic()
                if stop_at is not None and now >= stop_at:
                    self._stop_requested = True
                if self._stop_requested and not self._stopping:
                    self._begin_stop(ep)
                    kill_at = now + self.drain_timeout + _KILL_GRACE_S
                if kill_at is not None and now >= kill_at:
                    self._failed.append("workers did not finish their drain; killed")
                    self._signal_workers(signal.SIGKILL)
                    kill_at = None
                if next_stats is not None and now >= next_stats:
                    self.write_stats()
                    next_stats = now + self.stats_interval
                due = [t for t in (stop_at, next_stats, kill_at) if t is not None]
                timeout = max(0.0, min(due) - now) if due else -1
                for fd, _ in ep.poll(timeout):
                    if fd == self._wake_r.fileno():
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except BlockingIOError:
                            pass
                    elif listener is not None and fd == listener.fileno():
                        self._hand_off(listener)
                    elif fd in self._pidfds:
                        ep.unregister(fd)
                        self._reap(fd)
        finally:
            signal.set_wakeup_fd(-1)
            ep.close()
            for ch in self._channels:
                ch.close()
            if listener is not None and not self._stopping:
                listener.close()
            self.binding.cleanup()
        self.write_stats()
        return 1 if self._failed or any(self._status.values()) else 0

    def _hand_off(self, listener) -> None:
        """Accept what is pending; pass each connection to the next worker able to take it."""
        while True:
            try:
                conn, _ = listener.sock.accept()
            except BlockingIOError:
                return
            except OSError:  # EMFILE and the like: try again on the next wakeup
                return
            with conn:
                for _ in range(self.n):
                    channel = self._channels[self._next]
                    self._next = (self._next + 1) % self.n
                    try:
                        socket.send_fds(channel, [b"c"], [conn.fileno()], socket.MSG_DONTWAIT)
                    except OSError:
                        continue  # that worker is gone or its queue is full: the next one
                    break
                # else: no worker could take it; closing refuses the connection

    def _begin_stop(self, ep) -> None:
        """New connections are refused from here on; each worker then drains what it has."""
        self._stopping = True
        listener = self.binding.listener
        if listener is not None:
            try:
                ep.unregister(listener.fileno())
            except (OSError, ValueError):
                pass
            listener.close()
        self._signal_workers(signal.SIGTERM)

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
        return merged, parts

    def write_stats(self) -> None:
        if self.stats_file is None:
            return
        merged, parts = self.merged_counters()
        extra = {"workers": self.n, "per_worker": parts, "supervisor_failures": list(self._failed)}
        try:
            merged.write(self.stats_file, extra)
        except OSError as exc:
            print(f"aggregator: cannot write stats file {self.stats_file}: {exc}", file=sys.stderr)

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
