"""Scatter-gather: one query to every host's agent at once, each answer collected apart.

::

    for each host: PUB loglab.query.<host>  reply <inbox>.<host>     (one flush: all leave together)
    SUB <inbox>.*  ─► per host: 503 status       -> no_responders (no agent subscribed: dead host)
                               accepted/progress -> alive; ack
                               data              -> output.data(), then ack (the agent's window moves)
                               final             -> Summary; done
    deadline: hosts without a final are "timeout" (slow), with what they sent so far

Acks go out only after the output took the data (written, or spooled), so a slow terminal slows
the agents down instead of filling memory. Closing the connection at the end is the cancellation:
an agent still scanning gets a 503 on its next message and stops.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from shipper.query import protocol as p


@dataclass
class HostAnswer:
    """What one host answered, as the querier saw it."""

    host: str
    status: str = "pending"  # then p.OK, DEADLINE, ERROR, BUSY, NO_RESPONDERS_STATUS or TIMEOUT
    agent: str | None = None
    tool: str = ""
    files: list[p.FileSummary] = field(default_factory=list)
    summary: p.Summary | None = None
    matches_so_far: int = 0  # from progress and data before the final
    bytes_received: int = 0
    data_messages: int = 0
    sent_at: float = 0.0
    accepted_s: float | None = None
    first_data_s: float | None = None
    last_data_s: float | None = None
    done_s: float | None = None
    error: str | None = None
    note: str | None = None  # why a host did not answer (the registry's view of it)

    @property
    def done(self) -> bool:
        return self.status != "pending"

    @property
    def matches(self) -> int:
        return self.summary.matches if self.summary is not None else self.matches_so_far

    @property
    def bytes_scanned(self) -> int:
        return self.summary.bytes_scanned if self.summary is not None else 0

    def to_dict(self) -> dict:
        s = self.summary
        return {
            "host": self.host, "status": self.status, "matches": self.matches, "bytes_scanned": self.bytes_scanned,
            "elapsed_s": self.done_s, "bytes_returned": self.bytes_received, "tool": self.tool or None,
            "scan_s": s.scan_s if s else None, "wait_s": s.wait_s if s else None, "filter_s": s.filter_s if s else None,
            "accepted_s": self.accepted_s, "first_data_s": self.first_data_s, "last_data_s": self.last_data_s,
            "files": [{"path": f.path, "size": f.size, "matches": f.matches, "status": f.status} for f in (s.files if s else self.files)],
            "lines_too_long": s.lines_too_long if s else 0, "error": self.error, "note": self.note,
        }  # fmt: skip


class Output:
    """What the gatherer hands the answers to (``querier.output`` implements it)."""

    def data(self, answer: HostAnswer, file_index: int, lines: bytes) -> None: ...

    def done(self, answer: HostAnswer) -> None: ...


def agent_timeout(timeout: float) -> float:
    """The agents' deadline: a little before the querier's own, so that their final ("deadline",
    with partial counts) still arrives in time."""
    return max(0.05, min(timeout * 0.9, timeout - 0.2))


async def scatter_gather(nc, hosts: list[str], query: p.Query, output: Output, timeout: float,
                         notes: dict[str, str] | None = None) -> list[HostAnswer]:  # fmt: skip
    """Ask every host in ``hosts``; return their answers (in ``hosts`` order) once all are in or
    ``timeout`` s have passed."""
    answers = {h: HostAnswer(h) for h in hosts}
    notes = notes or {}
    pending = set(hosts)
    all_done = asyncio.Event()
    inbox = nc.new_inbox()
    prefix = len(inbox) + 1

    def finish(a: HostAnswer, status: str) -> None:
        a.status = status
        if status in (p.NO_RESPONDERS_STATUS, p.TIMEOUT):
            a.note = notes.get(a.host)  # the registry's view of a host that did not answer
        a.done_s = time.monotonic() - a.sent_at
        pending.discard(a.host)
        output.done(a)
        if not pending:
            all_done.set()

    async def on_msg(msg) -> None:
        a = answers.get(msg.subject[prefix:])
        headers = msg.headers or {}
        if a is None or a.done:
            if msg.reply:  # a second agent for a host, or a late one: let it finish, not stall
                await nc.publish(msg.reply, b"")
            return
        now = time.monotonic() - a.sent_at
        kind = headers.get(p.KIND)
        if headers.get(p.STATUS) == p.NO_RESPONDERS:
            a.error = a.error or f"no agent subscribed to {p.subject_for(a.host)}"
            finish(a, p.NO_RESPONDERS_STATUS)
            return
        agent = headers.get(p.AGENT)
        if a.agent is None:
            a.agent = agent
        elif agent != a.agent:
            a.error = f"two agents answer for {a.host} ({a.agent}, {agent}): host names must be unique"
        if kind == p.DATA:
            if a.first_data_s is None:
                a.first_data_s = now
            a.last_data_s = now
            a.bytes_received += len(msg.data)
            a.data_messages += 1
            a.matches_so_far += msg.data.count(b"\n")
            output.data(a, int(headers.get(p.FILE, "0")), msg.data)
        elif kind == p.ACCEPTED:
            acc = p.Accepted.decode(msg.data)
            a.accepted_s, a.tool, a.files = now, acc.tool, acc.files
        elif kind == p.PROGRESS:
            import msgspec

            a.matches_so_far = max(a.matches_so_far, msgspec.json.decode(msg.data, type=p.Progress).matches)
        elif kind == p.FINAL:
            a.summary = p.Summary.decode(msg.data)
            a.tool = a.summary.tool or a.tool
            a.error = a.error or a.summary.error
            finish(a, p.ERROR if a.error and a.summary.status == p.OK else a.summary.status)
        if msg.reply:
            await nc.publish(msg.reply, b"")

    sub = await nc.subscribe(inbox + ".*", cb=on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1)
    try:
        body = query.encode()
        started = time.monotonic()
        for h in hosts:
            answers[h].sent_at = started
            await nc.publish(p.subject_for(h), body, reply=f"{inbox}.{h}")
        await nc.flush(timeout=max(1, int(timeout)))
        if pending:
            try:
                await asyncio.wait_for(all_done.wait(), max(0.0, timeout - (time.monotonic() - started)))
            except asyncio.TimeoutError:
                pass
        for h in list(pending):
            a = answers[h]
            if a.accepted_s is None:
                a.error = a.error or f"no answer within {timeout:g} s (subscribed, but slow or hung)"
            else:
                a.error = a.error or f"no final answer within {timeout:g} s ({a.matches_so_far} matches so far)"
            finish(a, p.TIMEOUT)
    finally:
        await sub.unsubscribe()
    return [answers[h] for h in hosts]
