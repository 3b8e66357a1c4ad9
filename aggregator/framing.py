"""Framing: turning bytes read from a transport into messages.

Two kinds, shared by every transport of that kind (see ``aggregator.transports``):

* ``LineFramer`` for byte streams (unixsock, tcp, fifo): messages end at ``\\n``. Bytes after the
  last newline of a read are held until the next read. A line that grows past ``max_line_bytes``
  without a newline is not buffered further: its first bytes are kept for the rejects file, the
  rest is counted and dropped until the next newline, where reading resumes. Memory per
  connection is therefore bounded by ``max_line_bytes`` plus one read.
* ``frame_datagram`` for datagram sockets (unixgram, udp): one datagram is one message; one
  trailing newline is optional and removed.

Framers never validate: a framed line is just bytes. Validation lives in ``aggregator.records``.
"""

from __future__ import annotations

from dataclasses import dataclass

# How much of a rejected input is kept in the rejects file. Over-long input is kept as its first
# bytes plus its full length, so a hostile client cannot make the rejects file grow without bound.
REJECT_PREFIX_BYTES = 512


@dataclass(slots=True)
class Reject:
    """A message the aggregator could not accept, with why. ``data`` is a bounded prefix."""

    reason: str
    data: bytes
    length: int

    @classmethod
    def of(cls, reason: str, data: bytes, length: int | None = None) -> "Reject":
        return cls(reason, data[:REJECT_PREFIX_BYTES], len(data) if length is None else length)


# Reject reasons. The same names appear in the rejects file, the stats file and the docs.
INVALID_JSON = "invalid_json"
INVALID_UTF8 = "invalid_utf8"
NOT_AN_OBJECT = "not_an_object"
LINE_TOO_LONG = "line_too_long"
DATAGRAM_TRUNCATED = "datagram_truncated"
PARTIAL_LINE_AT_CLOSE = "partial_line_at_close"
TORN_LINE_AT_START = "torn_line_at_start"
TORN_LINE_DEAD_WORKER = "torn_line_dead_worker"
REJECT_REASONS = (
    INVALID_JSON,
    INVALID_UTF8,
    NOT_AN_OBJECT,
    LINE_TOO_LONG,
    DATAGRAM_TRUNCATED,
    PARTIAL_LINE_AT_CLOSE,
    TORN_LINE_AT_START,
    TORN_LINE_DEAD_WORKER,
)


class LineFramer:
    """Newline framing for one byte stream. One instance per connection (or per FIFO)."""

    __slots__ = ("max_line_bytes", "_pending", "_discarding", "_discard_prefix", "_discard_len")

    def __init__(self, max_line_bytes: int) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self.max_line_bytes = max_line_bytes
        self._pending = b""  # bytes of an unfinished line, never longer than max_line_bytes
        self._discarding = False  # inside an over-long line: drop until the next newline
        self._discard_prefix = b""
        self._discard_len = 0

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def feed(self, data: bytes, lines: list[bytes], rejects: list[Reject]) -> None:
        """Append the complete lines in ``data`` (without their newline) to ``lines``.

        Over-long lines go to ``rejects`` instead. Empty lines are passed on as ``b""``; the
        caller decides what they mean.
        """
        if not data:
            return
        start = 0
        if self._discarding or self._pending:
            first_nl = data.find(b"\n")
            if first_nl == -1:
                self._hold(data)
                return
            head = data[:first_nl]
            if self._discarding:
                rejects.append(
                    Reject(LINE_TOO_LONG, self._discard_prefix, self._discard_len + len(head))
                )
                self._discarding = False
                self._discard_prefix = b""
                self._discard_len = 0
            else:
                line = self._pending + head
                self._pending = b""
                if len(line) > self.max_line_bytes:
                    rejects.append(Reject.of(LINE_TOO_LONG, line))
                else:
                    lines.append(line)
            start = first_nl + 1
        last_nl = data.rfind(b"\n", start)
        if last_nl == -1:
            self._hold(data[start:] if start else data)
            return
        block = data[start:last_nl] if start else data[:last_nl]
        new_lines = block.split(b"\n")
        if len(block) > self.max_line_bytes:
            # Only a block longer than the limit can hold an over-long line; check each then.
            limit = self.max_line_bytes
            for line in new_lines:
                if len(line) > limit:
                    rejects.append(Reject.of(LINE_TOO_LONG, line))
                else:
                    lines.append(line)
        else:
            lines.extend(new_lines)
        if last_nl + 1 < len(data):
            self._hold(data[last_nl + 1 :])

    def _hold(self, tail: bytes) -> None:
        if self._discarding:
            self._discard_len += len(tail)
            return
        pending = self._pending + tail if self._pending else tail
        if len(pending) > self.max_line_bytes:
            self._discarding = True
            self._discard_prefix = pending[:REJECT_PREFIX_BYTES]
            self._discard_len = len(pending)
            self._pending = b""
        else:
            self._pending = pending

    def close(self, rejects: list[Reject]) -> None:
        """End of stream: an unfinished line is a reject, never silently dropped."""
        if self._discarding:
            rejects.append(Reject(LINE_TOO_LONG, self._discard_prefix, self._discard_len))
        elif self._pending:
            rejects.append(Reject.of(PARTIAL_LINE_AT_CLOSE, self._pending))
        self._pending = b""
        self._discarding = False
        self._discard_prefix = b""
        self._discard_len = 0


def frame_datagram(payload: bytes | memoryview) -> bytes:
    """One datagram is one message; a single trailing newline (or CRLF) is optional.

    Takes a memoryview of the receive buffer too, and copies out only the message itself.
    """
    n = len(payload)
    if n and payload[-1] == 10:  # indexing bytes or a memoryview gives an int
        n -= 2 if n > 1 and payload[-2] == 13 else 1
    return bytes(payload[:n])
