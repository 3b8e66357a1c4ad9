"""The query agent: one per host, inside the shipper (or alone: ``shipper --no-ship``).

::

    loglab.query.<host> ──► _on_query: decode + validate, refuse when max_queries run ("busy")
                                 │ a task per query, deadline = timeout_s from receipt
                                 ▼
                            accepted ─► for each file (rotated ones first when asked):
                                          scanner child (scan.py): rg | grep | pyscan, argv list
                                          stdout ─► whole lines ─► RecordFilter (if fields/time range)
                                                 ─► Reply.data(): chunks <= chunk_bytes, at most
                                                    ``window`` unacknowledged (else stop reading the
                                                    pipe: the scanner blocks, memory stays bounded)
                                     ─► final (Summary)

* ``--count`` without filters asks the scanner for the count (``rg --count``): nothing but a
  number crosses the pipe. With filters, lines are parsed (only those the text matched).
* The deadline kills the scanner (SIGKILL) and the final says ``deadline`` with what was found.
* Cancellation: every message but the final asks for an ack; the server answers 503 (no
  responders) when the querier's inbox is gone, and the query's task is cancelled at once (its
  scanner killed). A long scan with nothing to send sends ``progress`` every 0.5 s, which is how
  a ``--count`` query notices its querier went away.
* The registry (KV bucket ``LOGLAB_AGENTS``, key = host) tells queriers which hosts exist, so a
  host whose agent died is named ("no responders") rather than forgotten. A clean stop marks the
  entry stopped; it stays, since the host is still one of the deployment's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import msgspec

from . import protocol as p
from ..ship import say_once
from .registry import register
from .scan import RecordFilter, Scanner, files_for, pick_scanner, scan_env

READ_BYTES = 256 * 1024
MAX_LINE_BYTES = 8 << 20  # a matching line longer than this is counted (lines_too_long), not sent
STDERR_KEEP = 4096
PAYLOAD_HEADROOM = 4096  # headers and protocol overhead under the server's max_payload
REGISTER_WAIT_S = 30.0  # before saying "answering queries" without being in the registry yet


@dataclass
class AgentOptions:
    servers: list[str]
    host: str
    file: Path
    scanner: str = "auto"
    max_queries: int = 4
    replicas: int = 1
    register: bool = True


@dataclass
class QueryCounters:
    """What the agent answered; in the shipper's stats file under ``query``."""

    queries: int = 0
    ok: int = 0
    deadline: int = 0
    errors: int = 0
    busy: int = 0
    cancelled: int = 0  # the querier went away (503 on an ack) or the agent stopped
    invalid: int = 0  # not a query (refused with an error final)
    active: int = 0
    matches: int = 0
    bytes_scanned: int = 0
    bytes_returned: int = 0
    scanner: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class QuerierGone(Exception):
    """The querier's inbox has no subscriber any more (a 503 on an ack)."""


@dataclass
class Reply:
    """The answer stream of one query: chunking, the ack window, and the querier's liveness."""

    nc: object
    subject: str
    agent: str
    ack_prefix: str  # <agent inbox>.<query token>.
    window: int
    chunk: int
    max_payload: int
    inflight: int = 0
    seq: int = 0
    sent_at: float = field(default_factory=time.monotonic)
    wait_s: float = 0.0
    bytes_returned: int = 0
    lines_too_long: int = 0
    gone: bool = False
    buf: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self.acked = asyncio.Event()

    def on_ack(self, gone: bool) -> None:
        if gone:
            self.gone = True
        else:
            self.inflight = max(0, self.inflight - 1)
        self.acked.set()

    async def send(self, kind: str, body: bytes = b"", headers: dict | None = None, ack: bool = True) -> None:
        if ack and kind != p.PROGRESS and self.inflight >= self.window:
            started = time.monotonic()
            while self.inflight >= self.window and not self.gone:
                self.acked.clear()
                await self.acked.wait()
            self.wait_s += time.monotonic() - started
        if self.gone:
            raise QuerierGone
        hdrs = {p.KIND: kind, p.AGENT: self.agent, **(headers or {})}
        reply = f"{self.ack_prefix}{self.seq}" if ack else ""
        self.seq += 1
        await self.nc.publish(self.subject, body, reply=reply, headers=hdrs)
        self.inflight += ack
        self.sent_at = time.monotonic()

    async def data(self, lines: bytes, file_index: int) -> None:
        """Queue whole lines; send every full chunk (cut at a line's end)."""
        self.buf += lines
        while len(self.buf) >= self.chunk:
            await self._send_piece(file_index, self.chunk)

    async def flush(self, file_index: int) -> None:
        while self.buf:
            await self._send_piece(file_index, self.chunk)

    async def _send_piece(self, file_index: int, limit: int) -> None:
        cut = self.buf.rfind(b"\n", 0, limit)
        if cut < 0:  # one line longer than a chunk: alone, if the server takes it
            cut = self.buf.find(b"\n")
            cut = len(self.buf) - 1 if cut < 0 else cut
        piece = bytes(self.buf[: cut + 1])
        del self.buf[: cut + 1]
        if len(piece) > self.max_payload:
            self.lines_too_long += 1
            return
        self.bytes_returned += len(piece)
        await self.send(p.DATA, piece, {p.FILE: str(file_index)})


class QueryAgent:
    def __init__(self, opts: AgentOptions, stopping: asyncio.Event) -> None:
        self.opts = opts
        self.stopping = stopping
        self.scanner: Scanner = pick_scanner(opts.scanner)
        self.counters = QueryCounters(scanner=self.scanner.name)
        self.ready = asyncio.Event()
        self.nc = None
        self.agent_id = ""
        self.ack_inbox = ""
        self.replies: dict[str, Reply] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        self._next = 0
        self._said: set[str] = set()
        self.registration: p.Registration | None = None
        self.registering: asyncio.Task | None = None

    def say(self, text: str, once: str | None = None) -> None:
        say_once(self._said, "shipper: query agent: ", text, once)

    # -- lifecycle --------------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect (retrying until stopped), subscribe, register, answer until ``stopping``."""
        try:
            if not await self._connect():
                return
            self.ready.set()
            await self.stopping.wait()
        finally:
            await self._close()

    async def _connect(self) -> bool:
        import nats
        from nats.nuid import NUID

        o = self.opts
        delay = 0.1
        while not self.stopping.is_set():
            nc = None
            try:
                nc = await nats.connect(o.servers, name=f"query-agent-{o.host}", allow_reconnect=True, max_reconnect_attempts=-1,
                                        reconnect_time_wait=0.25, connect_timeout=2, ping_interval=5, max_outstanding_pings=2,
                                        pending_size=32 << 20, error_cb=self._on_error)  # fmt: skip
                self.agent_id = NUID().next().decode()
                self.ack_inbox = nc.new_inbox()
                await nc.subscribe(self.ack_inbox + ".*.*", cb=self._on_ack, pending_msgs_limit=-1, pending_bytes_limit=-1)
                await nc.subscribe(p.subject_for(o.host), cb=self._on_query, pending_msgs_limit=-1, pending_bytes_limit=-1)
                await nc.flush(timeout=5)
                self.nc = nc
                if o.register:
                    await self._register(nc)
                print(f"answering queries for {o.file} on {p.subject_for(o.host)} (scanner {self.scanner.name}) via {','.join(o.servers)}",
                      flush=True)  # fmt: skip
                return True
            except Exception as exc:  # no server yet: wait and try again
                self.say(f"cannot connect yet ({type(exc).__name__}: {exc}); retrying", once=f"connect:{type(exc).__name__}")
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()
                self.nc = None
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
                delay = min(delay * 2, 2.0)
        return False

    async def _register(self, nc) -> None:
        """Put this host in the registry before saying it answers, so that a querier started after
        that finds it. JetStream may still be electing its leaders (a three-node cluster under load
        takes seconds): retry with backoff; past REGISTER_WAIT_S, say so, answer queries anyway
        (hosts named with --hosts reach it) and keep trying in the background until it is in."""
        o = self.opts
        self.registration = p.Registration(host=o.host, file=str(o.file), agent=self.agent_id, pid=os.getpid(),
                                           started_unix_ns=time.time_ns())  # fmt: skip
        self.registering = asyncio.create_task(self._register_until_done(nc, self.registration))
        done, _ = await asyncio.wait({self.registering}, timeout=REGISTER_WAIT_S)
        if not done:
            self.say(f"not in the registry after {REGISTER_WAIT_S:g} s; answering queries meanwhile (queriers find this host "
                     f"with --hosts until it is), still trying")  # fmt: skip

    async def _register_until_done(self, nc, reg: p.Registration) -> None:
        delay = 0.1
        while not self.stopping.is_set():
            try:
                await register(nc, reg, self.opts.replicas)
                return
            except Exception as exc:  # no JetStream yet, a leader election, a timeout
                self.say(f"registry not reachable yet ({type(exc).__name__}: {exc}); retrying", once=f"register:{type(exc).__name__}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            delay = min(delay * 2, 2.0)

    async def _close(self) -> None:
        if self.registering is not None:
            self.registering.cancel()
            await asyncio.gather(self.registering, return_exceptions=True)
        for task in list(self.tasks.values()):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        nc, self.nc = self.nc, None
        if nc is None:
            return
        if self.registration is not None:
            self.registration.stopped_unix_ns = time.time_ns()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(register(nc, self.registration, self.opts.replicas), 3)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 5)

    async def _on_error(self, exc: Exception) -> None:
        self.say(f"nats: {type(exc).__name__}: {exc}", once=f"error:{type(exc).__name__}")

    # -- messages ---------------------------------------------------------------------------------
    async def _on_ack(self, msg) -> None:
        token = msg.subject[len(self.ack_inbox) + 1 :].partition(".")[0]
        reply = self.replies.get(token)
        if reply is None:
            return  # a query already over
        gone = bool(msg.headers) and msg.headers.get(p.STATUS) == p.NO_RESPONDERS
        reply.on_ack(gone)
        if gone:
            task = self.tasks.get(token)
            if task is not None:
                task.cancel()

    async def _on_query(self, msg) -> None:
        c = self.counters
        c.queries += 1
        if not msg.reply:
            c.invalid += 1
            return  # nobody to answer
        try:
            q = p.Query.decode(msg.data)
        except ValueError as exc:
            c.invalid += 1
            await self._final_only(msg.reply, p.Summary(host=self.opts.host, status=p.ERROR, error=str(exc), tool=self.scanner.name))
            return
        if len(self.tasks) >= self.opts.max_queries:
            c.busy += 1
            await self._final_only(msg.reply, p.Summary(host=self.opts.host, status=p.BUSY, tool=self.scanner.name,
                                                        error=f"{len(self.tasks)} queries running (at most {self.opts.max_queries})"))  # fmt: skip
            return
        self._next += 1
        token = f"q{self._next}"
        self.tasks[token] = asyncio.create_task(self._answer(token, q, msg.reply), name=f"query-{token}")

    async def _final_only(self, subject: str, summary: p.Summary) -> None:
        with contextlib.suppress(Exception):
            await self.nc.publish(subject, summary.encode(), headers={p.KIND: p.FINAL, p.AGENT: self.agent_id})

    # -- one query --------------------------------------------------------------------------------
    async def _answer(self, token: str, q: p.Query, subject: str) -> None:
        c = self.counters
        c.active += 1
        started = time.monotonic()
        max_payload = max(4096, self.nc.max_payload - PAYLOAD_HEADROOM)
        reply = Reply(self.nc, subject, self.agent_id, f"{self.ack_inbox}.{token}.", q.window, min(q.chunk_bytes, max_payload), max_payload)
        self.replies[token] = reply
        summary = p.Summary(host=self.opts.host, status=p.OK, tool=self.scanner.name)
        ticker = None
        try:
            files = files_for(self.opts.file, q.rotated)
            summary.files = [p.FileSummary(str(f), _size(f)) for f in files]
            await reply.send(p.ACCEPTED, p.Accepted(host=self.opts.host, agent=self.agent_id, tool=self.scanner.name,
                                                    files=summary.files).encode())  # fmt: skip
            ticker = asyncio.create_task(self._progress(reply, summary))
            try:
                async with asyncio.timeout(q.timeout_s):
                    for i, fs in enumerate(summary.files):
                        if fs.size < 0:
                            fs.status, fs.size = "missing", 0
                            continue
                        if await self._scan_file(q, i, fs, summary, reply):
                            break  # max_results reached
            except TimeoutError:
                summary.status = p.DEADLINE
                summary.error = f"deadline of {q.timeout_s:g} s passed; scanner stopped"
            ticker.cancel()
            summary.scan_s = time.monotonic() - started
            summary.wait_s, summary.bytes_returned, summary.lines_too_long = reply.wait_s, reply.bytes_returned, reply.lines_too_long
            await reply.send(p.FINAL, summary.encode(), ack=False)
            c.ok += summary.status == p.OK
            c.deadline += summary.status == p.DEADLINE
            c.errors += summary.status == p.ERROR
        except (QuerierGone, asyncio.CancelledError):
            c.cancelled += 1  # the querier went away, or the agent is stopping: nobody to answer
        except Exception as exc:  # a bug or a NATS failure: say it to the querier if possible
            c.errors += 1
            summary.status, summary.error = p.ERROR, f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                await reply.send(p.FINAL, summary.encode(), ack=False)
        finally:
            if ticker is not None:
                ticker.cancel()
            c.active -= 1
            c.matches += summary.matches
            c.bytes_scanned += summary.bytes_scanned
            c.bytes_returned += reply.bytes_returned
            self.replies.pop(token, None)
            self.tasks.pop(token, None)

    async def _progress(self, reply: Reply, summary: p.Summary) -> None:
        """While nothing else is sent: a progress message every PROGRESS_S. It asks for an ack, so a
        querier that went away is noticed during a long count, and also while the window is full
        (a querier killed with our data unacknowledged sends no more acks: only a new message can
        draw the server's 503). Beyond the window on purpose: a few bytes per PROGRESS_S."""
        while True:
            await asyncio.sleep(p.PROGRESS_S)
            if time.monotonic() - reply.sent_at >= p.PROGRESS_S:
                body = msgspec.json.encode(p.Progress(summary.matches, summary.bytes_scanned))
                try:
                    await reply.send(p.PROGRESS, body)
                except QuerierGone:
                    return

    async def _scan_file(self, q: p.Query, index: int, fs: p.FileSummary, summary: p.Summary, reply: Reply) -> bool:
        """Scan one file; True when max_results was reached (no more files)."""
        direct_count = q.count_only and not q.filtered
        argv = self.scanner.argv(q, fs.path, count=direct_count)
        if self.scanner.name == "python":
            argv[3:3] = ["--deadline", str(q.timeout_s)]  # after "-m shipper.query.pyscan"
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, env=scan_env(self.scanner))  # fmt: skip
        errors = asyncio.create_task(_read_some(proc.stderr, STDERR_KEEP))
        stopped_early = False
        before = summary.matches
        try:
            if direct_count:
                out = await proc.stdout.read()
                n = int(out.split()[0]) if out.strip() else 0
                if q.max_results is not None and summary.matches + n >= q.max_results:
                    n, stopped_early = q.max_results - summary.matches, True
                summary.matches += n
            else:
                stopped_early = await self._stream(q, proc.stdout, index, summary, reply)
                await reply.flush(index)
            rc = await _reap(proc, kill=stopped_early)
            err = (await errors).decode(errors="replace").strip()
            if not stopped_early and rc not in (0, 1):
                summary.status = p.ERROR
                summary.error = f"{self.scanner.name} exited {rc}: {err or 'no message'}"
                fs.status = "error"
        finally:
            await _reap(proc, kill=True)  # the deadline, a cancel: never leave a scanner behind
            errors.cancel()
        fs.matches = summary.matches - before
        summary.bytes_scanned += fs.size
        return stopped_early or summary.status == p.ERROR

    async def _stream(self, q: p.Query, stdout, index: int, summary: p.Summary, reply: Reply) -> bool:
        """Scanner output -> whole lines -> filter -> reply; True when max_results was reached."""
        keep = RecordFilter(q) if q.filtered else None
        limit = q.max_results
        tail = b""
        skipping = False  # inside a line longer than MAX_LINE_BYTES: dropped up to its end
        while True:
            data = await stdout.read(READ_BYTES)
            if not data:
                if not tail or skipping:
                    return False
                data, tail = tail + b"\n", b""
            else:
                if skipping:
                    nl = data.find(b"\n")
                    if nl < 0:
                        continue
                    data, skipping = data[nl + 1 :], False
                data = tail + data if tail else data
                cut = data.rfind(b"\n")
                if cut < 0:
                    tail = data
                    if len(tail) > MAX_LINE_BYTES:
                        tail, skipping = b"", True
                        reply.lines_too_long += 1
                    continue
                data, tail = data[: cut + 1], data[cut + 1 :]
            if keep is not None:
                t0 = time.perf_counter()
                kept = [line for line in data.split(b"\n")[:-1] if keep(line)]
                summary.filter_s += time.perf_counter() - t0
                n = len(kept)
                data = b"\n".join(kept) + b"\n" if kept else b""
            else:
                n = data.count(b"\n")
            done = limit is not None and summary.matches + n >= limit
            if done:
                n = limit - summary.matches
                data = data[: _after_nth_newline(data, n)]
            summary.matches += n
            if data and not q.count_only:
                await reply.data(data, index)
            if done:
                return True


async def _reap(proc, kill: bool) -> int:
    """Wait for a scanner's exit (SIGKILL first if ``kill``). What is left in its stdout pipe is
    read and dropped first: asyncio (3.11) finishes wait() only once every pipe saw its end, and a
    pipe we stopped reading (max_results, a full window) would otherwise never see it. Bounded:
    the child is gone, so the pipe holds at most its capacity."""
    if proc.returncode is None and kill:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    while await proc.stdout.read(READ_BYTES):
        pass
    return await proc.wait()


async def _read_some(stream, keep: int) -> bytes:
    """Read a child's stderr to its end (so it never blocks on a full pipe), keeping the start."""
    kept = b""
    while True:
        data = await stream.read(65536)
        if not data:
            return kept
        if len(kept) < keep:
            kept += data[: keep - len(kept)]


def _after_nth_newline(data: bytes, n: int) -> int:
    pos = 0
    for _ in range(n):
        pos = data.index(b"\n", pos) + 1
    return pos


def _size(path: Path) -> int:
    """Size now, or -1 when the file does not exist (a host with nothing written yet)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1
