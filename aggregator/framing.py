"""Framing: turning bytes read from a transport into messages.

Shared by every transport of a kind (see ``aggregator.transports``), chosen by ``--framing``
(``Settings.framing``), never by a transport's name:

* ``LineFramer`` for byte streams (unixsock, tcp, fifo): messages end at ``\\n`` or at a NUL byte
  (Python's ``SysLogHandler`` ends each message with a NUL and no newline; a raw NUL can never be
  inside valid JSON). Bytes after the last terminator of a read are held until the next read. A
  line that grows past ``max_line_bytes`` without one is not buffered further: its first bytes
  are kept for the rejects file, the rest is counted and dropped until the next terminator, where
  reading resumes. Memory per connection is therefore bounded by ``max_line_bytes`` plus one read.
* ``OctetFramer``: RFC 6587 octet counting, ``LENGTH SP MESSAGE`` (``logger --octet-count``,
  rsyslog and syslog-ng's framed senders). With ``--framing auto`` (the default) a connection
  whose first byte is a digit is octet-counted, any other newline-framed, as rsyslog and
  syslog-ng decide it. A count over ``max_line_bytes`` is a ``line_too_long`` reject (its first
  bytes kept, the rest skipped by count) and the connection goes on; a frame that does not start
  with ``DIGITS SP`` means the sender is not octet-counting after all: the connection is read
  newline-framed from there. CR, LF and NUL between frames are skipped.
* ``LenPrefixFramer`` (``--framing lenprefix``): ``[4-byte big-endian length][1-byte severity]
  [payload]``, the binary frames of a well-known Go log distributor's emitters; the length counts
  the bytes after it (severity and payload). Each message is handed on as ``severity + payload``
  for ``formats.Decoder.encode_severity_framed``.
* ``frame_datagram`` for message sockets (unixgram, udp, seqpacket): one datagram is one message;
  one trailing newline is optional and removed.

Framers never validate: a framed line is just bytes. Validation lives in ``aggregator.records``
(JSON) and ``aggregator.formats`` (the other input formats).
"""

from __future__ import annotations

import struct
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
    """Newline (and NUL) framing for one byte stream. One instance per connection (or per FIFO)."""

    __slots__ = ("max_line_bytes", "_pending", "_discarding", "_discard_prefix", "_discard_len")
    newline_free = True  # no message it frames holds a newline

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
        """Append the complete lines in ``data`` (without their newline or NUL) to ``lines``.

        Over-long lines go to ``rejects`` instead. Empty lines are passed on as ``b""``; the
        caller decides what they mean.
        """
        if not data:
            return
        if b"\0" in data:  # a memchr per read: NUL ends a message as a newline does
            data = data.replace(b"\0", b"\n")
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


# -- counted framings ----------------------------------------------------------------------------

FRAMINGS = ("auto", "newline", "octet", "lenprefix")
DEFAULT_FRAMING = "auto"
_SEPARATORS = frozenset(b"\r\n\0")  # between octet-counted frames, where some senders put them
_MAX_COUNT_DIGITS = 10
_LENGTH = struct.Struct(">I")


class _CountedFramer:
    """What the counted framings share: a held incomplete frame (at most its header plus
    ``max_line_bytes``), and an over-long message skipped by its count, its first bytes kept."""

    __slots__ = ("max_line_bytes", "_held", "_skip", "_skip_prefix", "_skip_len")
    newline_free = False  # a counted message may hold any byte

    def __init__(self, max_line_bytes: int) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self.max_line_bytes = max_line_bytes
        self._held = b""
        self._skip = 0  # bytes of an over-long message still to drop
        self._skip_prefix = b""
        self._skip_len = 0

    @property
    def pending_bytes(self) -> int:
        return len(self._held)

    def _skip_over(self, data: bytes, rejects: list[Reject]) -> bytes:
        """Drop what is left of an over-long message; return the bytes after it."""
        take = min(self._skip, len(data))
        if len(self._skip_prefix) < REJECT_PREFIX_BYTES:
            self._skip_prefix += data[: min(take, REJECT_PREFIX_BYTES - len(self._skip_prefix))]
        self._skip -= take
        if not self._skip:
            rejects.append(Reject(LINE_TOO_LONG, self._skip_prefix, self._skip_len))
            self._skip_prefix = b""
        return data[take:]

    def _too_long(self, buf: bytes, start: int, length: int, rejects: list[Reject]) -> int:
        """A message of ``length`` bytes at ``start``, over the limit: rejected now if all of it
        is here, else skipped as it comes. Returns where reading goes on in ``buf``."""
        end = start + length
        if end <= len(buf):
            rejects.append(Reject(LINE_TOO_LONG, buf[start : start + REJECT_PREFIX_BYTES], length))
            return end
        self._skip = end - len(buf)
        self._skip_prefix = buf[start : start + REJECT_PREFIX_BYTES]
        self._skip_len = length
        return len(buf)

    def close(self, rejects: list[Reject]) -> None:
        """End of stream: an unfinished frame is a reject, never silently dropped."""
        if self._skip:
            rejects.append(Reject(LINE_TOO_LONG, self._skip_prefix, self._skip_len))
        elif self._held:
            rejects.append(Reject.of(PARTIAL_LINE_AT_CLOSE, self._held))
        self._held = self._skip_prefix = b""
        self._skip = self._skip_len = 0


class OctetFramer(_CountedFramer):
    """RFC 6587 octet counting for one connection (see the module doc)."""

    __slots__ = ("_fallback",)

    def __init__(self, max_line_bytes: int) -> None:
        super().__init__(max_line_bytes)
        self._fallback: LineFramer | None = None  # the sender turned out not to count octets

    @property
    def pending_bytes(self) -> int:
        return self._fallback.pending_bytes if self._fallback is not None else len(self._held)

    def feed(self, data: bytes, lines: list[bytes], rejects: list[Reject]) -> None:
        if self._fallback is not None:
            self._fallback.feed(data, lines, rejects)
            return
        if self._skip:
            data = self._skip_over(data, rejects)
        buf = self._held + data if self._held else data
        pos, n = 0, len(buf)
        while pos < n:
            if buf[pos] in _SEPARATORS:
                pos += 1
                continue
            space = buf.find(b" ", pos, pos + _MAX_COUNT_DIGITS + 1)
            digits = buf[pos:space] if space != -1 else buf[pos : pos + _MAX_COUNT_DIGITS + 1]
            if not digits.isdigit() or len(digits) > _MAX_COUNT_DIGITS:
                # Not "DIGITS SP": the sender does not count octets. Newline framing from here.
                self._fallback = LineFramer(self.max_line_bytes)
                self._held = b""
                self._fallback.feed(buf[pos:], lines, rejects)
                return
            if space == -1:
                break  # the count is not all here yet
            length = int(digits)
            if length > self.max_line_bytes:
                pos = self._too_long(buf, space + 1, length, rejects)
                continue
            end = space + 1 + length
            if end > n:
                break  # the message is not all here yet
            lines.append(buf[space + 1 : end])
            pos = end
        self._held = buf[pos:] if pos < n else b""

    def close(self, rejects: list[Reject]) -> None:
        if self._fallback is not None:
            self._fallback.close(rejects)
            self._fallback = None
        super().close(rejects)


class LenPrefixFramer(_CountedFramer):
    """``[4-byte big-endian length][severity][payload]`` for one connection; each message is
    handed on as ``severity + payload`` (the length's bytes)."""

    __slots__ = ()

    def feed(self, data: bytes, lines: list[bytes], rejects: list[Reject]) -> None:
        if self._skip:
            data = self._skip_over(data, rejects)
        buf = self._held + data if self._held else data
        pos, n = 0, len(buf)
        while n - pos >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buf, pos)
            start = pos + _LENGTH.size
            if length > self.max_line_bytes + 1:  # the payload is over the limit (+1: the severity byte)
                pos = self._too_long(buf, start, length, rejects)
                continue
            end = start + length
            if end > n:
                break
            lines.append(buf[start:end])
            pos = end
        self._held = buf[pos:] if pos < n else b""


def framing_unsupported(framing: str, transport) -> str | None:
    """Why ``framing`` cannot be had on ``transport`` (None: it can), for the aggregator's and the
    producer's ``--framing`` alike. A counted framing needs a byte stream per sender: a
    connection (a FIFO is one stream every writer shares)."""
    if framing in ("auto", "newline") and transport.kind == "stream":
        return None
    if framing == "auto":
        return None  # message transports keep their own boundaries
    if transport.kind != "stream":
        return (f"--framing {framing}: {transport.name} keeps message boundaries itself (one message per datagram "
                "or send); leave --framing out")  # fmt: skip
    if not transport.connected:
        return f"--framing {framing} needs a connection per sender (unixsock, tcp); {transport.name} is one stream every writer shares"
    return None


def stream_framer(framing: str, first_byte: int, max_line_bytes: int, line_framer=LineFramer):
    """The framer of one byte stream under ``--framing`` (``auto``: octet counting when its first
    byte is a digit, else newline). ``line_framer`` makes the newline framer (the event loop's
    passes the hot path's, ``hotpath.new_line_framer``)."""
    if framing == "lenprefix":
        return LenPrefixFramer(max_line_bytes)
    if framing == "octet" or (framing == "auto" and 48 <= first_byte <= 57):
        return OctetFramer(max_line_bytes)
    return line_framer(max_line_bytes)


def octet_frame(message: bytes) -> bytes:
    """``message`` octet-counted (the producer's side of ``OctetFramer``)."""
    return b"%d %s" % (len(message), message)


def lenprefix_header(severity: int, payload_len: int) -> bytes:
    """The 5 bytes before a lenprefix payload of ``payload_len`` bytes (the producer's side)."""
    return _LENGTH.pack(payload_len + 1) + bytes((severity,))


def lenprefix_frame(severity: int, payload: bytes) -> bytes:
    """``payload`` with its severity (0-7) in a lenprefix frame (the producer's side)."""
    return lenprefix_header(severity, len(payload)) + payload
