"""Log messages of an exact size, built cheaply, in the format and framing asked for.

A message is one JSON object, ``size`` bytes on the wire with its framing::

    {"ts_ns":...,"intended_ns":...,"producer":"p1","seq":7,"pid":123,"level":"info","msg":"..."}\\n

``msg`` is padding chosen so every message has the requested size whatever the width of the
numbers. With ``fmt`` ``rfc3164`` or ``rfc5424`` the object is the message of a syslog header
(facility user, the severity of ``level``, the send time as the stamp, this host, ``logprod``,
the pid), as ``aggregator/syslog.py`` renders and reads it::

    <14>Nov 29 16:20:01 host logprod[123]: {"ts_ns":...}\\n
    <14>1 2026-11-29T16:20:01.123456Z host logprod 123 - - {"ts_ns":...}\\n

and with ``framing`` ``octet`` (RFC 6587: ``LENGTH SP MSG``) or ``lenprefix`` (``[4-byte length]
[severity][payload]``, ``aggregator/framing.py``) in place of the newline. ``size`` counts every
byte on the wire (header and framing included), so formats compare at the same bytes per message.

Sending as fast as possible, a producer must cost less per message than the aggregator it loads,
or a capacity run measures the producers. ``batch`` therefore renders a whole write with one
C-level format call from a cached template (a few times cheaper per message than ``build``):
every line of one write shares its send time, so between two writes of the same shape only the
timestamps and ``seq`` change (and a syslog header's stamp, rendered once per write).
``ts_ns`` is the clock just before the write; ``intended_ns`` the time the schedule wanted the
message sent (the same as ``ts_ns`` when sending as fast as possible). Latency measured from
``intended_ns`` includes time the producer spent blocked, so a stalled receiver cannot hide its
delay behind a late send (no coordinated omission).
"""

from __future__ import annotations

import socket
import random

import orjson

from aggregator.framing import lenprefix_header
from aggregator.syslog import SEVERITIES, pri, rfc3164_stamp, rfc5424_stamp

_CHOICES = 4096  # a power of two
LEVELS = ("debug", "info", "info", "info", "info", "warn", "error")  # mostly info, like real logs
_FILLER = (
    "the quick brown fox jumps over the lazy dog while the aggregator counts every byte; "
) * 800  # 68 KB, repeated for larger lines


_TEMPLATES_KEPT = 4096  # at most one per (batch start mod _CHOICES, batch length, widths)
_TS_AT = len(b'{"ts_ns":')


FORMATS = ("json", "rfc3164", "rfc5424")
FRAMINGS = ("newline", "octet", "lenprefix")
# The producer's levels as syslog severities (and lenprefix severity bytes).
SEVERITY_OF_LEVEL = {"debug": "debug", "info": "info", "warn": "warning", "error": "err"}
APP_NAME = "logprod"


class MessageFactory:
    def __init__(self, producer_id: str, pid: int, size: int, seed: int, fmt: str = "json", framing: str = "newline",
                 hostname: str | None = None) -> None:  # fmt: skip
        if fmt not in FORMATS or framing not in FRAMINGS:
            raise ValueError(f"format must be one of {FORMATS}, framing one of {FRAMINGS}")
        self.size = size
        self.format = fmt
        self.framing = framing
        self._producer_json = orjson.dumps(producer_id)
        self._templates: dict[tuple[int, int, int, int], bytes] = {}
        rng = random.Random(seed)
        # Seeded choices drawn once and cycled: drawing two random numbers per message would
        # cost the producer more than formatting it, and steal CPU from the system under test.
        self._choices = [(rng.choice(LEVELS).encode(), rng.randrange(64)) for _ in range(_CHOICES)]
        self._head = b'{"ts_ns":%d,"intended_ns":%d,"producer":' + orjson.dumps(producer_id).replace(b"%", b"%%") + (
            b',"seq":%%d,"pid":%d,"level":"%%s","msg":"' % pid
        )
        # Padding for the largest line asked for: a line is at most 63 (the padding's start) +
        # size bytes into it. (A fixed 68 KB once made every larger --size silently ~67 KB.)
        self._filler = (_FILLER * (1 + (size + 64) // len(_FILLER))).encode()
        self._plain = fmt == "json" and framing == "newline"  # today's line: no header, no counted frame
        self._stamp = {"json": None, "rfc3164": rfc3164_stamp, "rfc5424": rfc5424_stamp}[fmt]
        host = (hostname or socket.gethostname()).encode()
        # What follows the stamp up to the JSON object (the same for every message).
        self._after_stamp = {
            "json": b"",
            "rfc3164": b" %s %s[%d]: " % (host, APP_NAME.encode(), pid),
            "rfc5424": b" %s %s %d - - " % (host, APP_NAME.encode(), pid),
        }[fmt]
        self._stamp_len = len(self._stamp(0)) + len(self._after_stamp) if self._stamp else 0
        severities = {level.encode(): SEVERITIES.index(SEVERITY_OF_LEVEL[level]) for level in set(LEVELS)}
        self._pri = {lv: (pri("user", SEVERITIES[sev]) + (b"1 " if fmt == "rfc5424" else b"") if self._stamp else b"")
                     for lv, sev in severities.items()}  # fmt: skip
        # Bytes of a message that are not its JSON object: the same for every level (the PRI of
        # user.debug .. user.err is always two digits), so the object's size is fixed.
        overhead_no_frame = len(next(iter(self._pri.values()))) + self._stamp_len
        if framing == "newline":
            message_len = size - 1
            self._frame = {lv: (b"", b"\n") for lv in severities}
        elif framing == "octet":
            message_len = _octet_message_len(size)
            self._frame = {lv: (b"%d " % message_len, b"") for lv in severities}
        else:
            message_len = size - 5
            self._frame = {lv: (lenprefix_header(sev, message_len), b"") for lv, sev in severities.items()}
        self._json_len = message_len - overhead_no_frame

    def min_size(self, count: int) -> int:
        """The smallest size that fits the widest header of ``count`` messages, with no padding."""
        widest = self._head % (10**18 * 9, 10**18 * 9, max(count - 1, 0), max(LEVELS, key=len).encode())
        overhead = self.size - self._json_len  # framing and syslog header: fixed for this factory
        return len(widest) + len(b'"}') + overhead

    def build(self, seq: int, ts_ns: int, intended_ns: int) -> bytes:
        level, start = self._choices[seq & (_CHOICES - 1)]
        head = self._head % (ts_ns, intended_ns, seq, level)
        if self._plain:
            return head + self._filler[start : start + self.size - len(head) - 3] + b'"}\n'
        body = head + self._filler[start : start + self._json_len - len(head) - 2] + b'"}'
        prefix, suffix = self._frame[level]
        if self._stamp is not None:
            body = self._pri[level] + self._stamp(ts_ns) + self._after_stamp + body
        return prefix + body + suffix

    def batch(self, first_seq: int, n: int, ts_ns: int) -> bytes:
        """Messages ``first_seq`` .. ``first_seq + n - 1`` sent at ``ts_ns`` (= their intended
        time), joined; the same bytes as ``build`` gives for each of them."""
        seq_width = len(str(first_seq))
        if n < 2 or len(str(first_seq + n - 1)) != seq_width:
            # A batch whose seqs change width (9999 -> 10000) has no single shape: build each.
            return b"".join([self.build(seq, ts_ns, ts_ns) for seq in range(first_seq, first_seq + n)])
        # A line's padding depends on its level and padding choice (seq mod _CHOICES) and on the
        # widths of its numbers: batches alike in all of these share one template.
        key = (first_seq & (_CHOICES - 1), n, seq_width, len(str(ts_ns)))
        template = self._templates.get(key)
        if template is None:
            template = b"".join([self._template_line(seq, ts_ns) for seq in range(first_seq, first_seq + n)])
            if len(self._templates) < _TEMPLATES_KEPT:
                self._templates[key] = template
        ts = b"%d" % ts_ns  # rendered once; "%s" of bytes is a copy, "%d" a conversion per line
        if self._stamp is None:
            args = [ts, ts, 0] * n
            args[2::3] = range(first_seq, first_seq + n)
        else:
            args = [self._stamp(ts_ns), ts, ts, 0] * n  # the syslog stamp: rendered once per write
            args[3::4] = range(first_seq, first_seq + n)
        return template % tuple(args)

    def _template_line(self, seq: int, ts_ns: int) -> bytes:
        """``build(seq, ts_ns, ts_ns)`` with ``%s`` where the syslog stamp, ts_ns and intended_ns
        are, ``%d`` for seq."""
        line = self.build(seq, ts_ns, ts_ns)
        level = self._choices[seq & (_CHOICES - 1)][0]
        lead = len(self._frame[level][0]) + len(self._pri[level])  # the frame's prefix and the PRI
        stamp_len = len(self._stamp(ts_ns)) if self._stamp is not None else 0
        json_at = lead + stamp_len + len(self._after_stamp)
        ts, seq_text = b"%d" % ts_ns, b"%d" % seq
        ts_at = json_at + _TS_AT
        ts_end = ts_at + len(ts)
        intended_at = ts_end + len(b',"intended_ns":')
        intended_end = intended_at + len(ts)
        seq_at = intended_end + len(b',"producer":') + len(self._producer_json) + len(b',"seq":')
        seq_end = seq_at + len(seq_text)
        if (line[ts_at:ts_end], line[intended_at:intended_end], line[seq_at:seq_end]) != (ts, ts, seq_text):
            raise AssertionError("the message layout changed: update MessageFactory._template_line")
        stamp_hole = b"%s" if self._stamp is not None else b""
        literal = [line[:lead], line[lead + stamp_len : ts_at], line[ts_end:intended_at], line[intended_end:seq_at], line[seq_end:]]
        a, b, c, d, e = (part.replace(b"%", b"%%") for part in literal)
        return a + stamp_hole + b + b"%s" + c + b"%s" + d + b"%d" + e


def _octet_message_len(size: int) -> int:
    """The message length L with ``len(str(L)) + 1 + L == size`` (an octet-counted frame of
    exactly ``size`` bytes), or, for the sizes no count fits (12, 103, 1004, ...), the frame one
    byte shorter."""
    for target in (size, size - 1):
        for digits in range(1, 12):
            length = target - 1 - digits
            if length >= 0 and len(str(length)) == digits:
                return length
    return 0


class FileLines:
    """``producer --lines-from FILE``: the lines of FILE, sent in order, unchanged, instead of
    generated messages (the query test data's generator, ``natslab/querydata.py``, prepares them).
    The same face as ``MessageFactory``: each call takes the next lines; the seq and time arguments
    are ignored (the lines carry their own)."""

    def __init__(self, path, count: int) -> None:
        with open(path, "rb") as f:
            self.lines = [line if line.endswith(b"\n") else line + b"\n" for line in f]
        if count > len(self.lines):
            raise ValueError(f"{path} holds {len(self.lines)} lines, fewer than --count {count}")
        self.size = max((len(line) for line in self.lines), default=1)  # the longest: PIPE_BUF batching
        self.next = 0

    def min_size(self, count: int) -> int:
        return 0

    def build(self, seq: int, ts_ns: int, intended_ns: int) -> bytes:
        line = self.lines[self.next]
        self.next += 1
        return line

    def batch(self, first_seq: int, n: int, ts_ns: int) -> bytes:
        data = b"".join(self.lines[self.next : self.next + n])
        self.next += n
        return data
