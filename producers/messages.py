"""Log messages of an exact size, built cheaply.

A message is one JSON object on one line, ``size`` bytes including the newline::

    {"ts_ns":...,"intended_ns":...,"producer":"p1","seq":7,"pid":123,"level":"info","msg":"..."}

``msg`` is padding chosen so every line has the requested size whatever the width of the numbers.

Sending as fast as possible, a producer must cost less per message than the aggregator it loads,
or a capacity run measures the producers. ``batch`` therefore renders a whole write with one
C-level format call from a cached template (a few times cheaper per message than ``build``):
every line of one write shares its send time, so between two writes of the same shape only the
timestamps and ``seq`` change.
``ts_ns`` is the clock just before the write; ``intended_ns`` the time the schedule wanted the
message sent (the same as ``ts_ns`` when sending as fast as possible). Latency measured from
``intended_ns`` includes time the producer spent blocked, so a stalled receiver cannot hide its
delay behind a late send (no coordinated omission).
"""

from __future__ import annotations

import random

import orjson

_CHOICES = 4096  # a power of two
LEVELS = ("debug", "info", "info", "info", "info", "warn", "error")  # mostly info, like real logs
_FILLER = (
    "the quick brown fox jumps over the lazy dog while the aggregator counts every byte; "
) * 800  # 68 KB, repeated for larger lines


_TEMPLATES_KEPT = 4096  # at most one per (batch start mod _CHOICES, batch length, widths)
_TS_AT = len(b'{"ts_ns":')


class MessageFactory:
    def __init__(self, producer_id: str, pid: int, size: int, seed: int) -> None:
        self.size = size
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

    def min_size(self, count: int) -> int:
        """The smallest size that fits the widest header of ``count`` messages, with no padding."""
        widest = self._head % (10**18 * 9, 10**18 * 9, max(count - 1, 0), max(LEVELS, key=len).encode())
        return len(widest) + len(b'"}\n')

    def build(self, seq: int, ts_ns: int, intended_ns: int) -> bytes:
        level, start = self._choices[seq & (_CHOICES - 1)]
        head = self._head % (ts_ns, intended_ns, seq, level)
        return head + self._filler[start : start + self.size - len(head) - 3] + b'"}\n'

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
        args = [ts, ts, 0] * n
        args[2::3] = range(first_seq, first_seq + n)
        return template % tuple(args)

    def _template_line(self, seq: int, ts_ns: int) -> bytes:
        """``build(seq, ts_ns, ts_ns)`` with ``%s`` where ts_ns and intended_ns are, ``%d`` for seq."""
        line = self.build(seq, ts_ns, ts_ns)
        ts, seq_text = b"%d" % ts_ns, b"%d" % seq
        ts_end = _TS_AT + len(ts)
        intended_at = ts_end + len(b',"intended_ns":')
        intended_end = intended_at + len(ts)
        seq_at = intended_end + len(b',"producer":') + len(self._producer_json) + len(b',"seq":')
        seq_end = seq_at + len(seq_text)
        if (line[_TS_AT:ts_end], line[intended_at:intended_end], line[seq_at:seq_end]) != (ts, ts, seq_text):
            raise AssertionError("the message layout changed: update MessageFactory._template_line")
        literal = [line[:_TS_AT], line[ts_end:intended_at], line[intended_end:seq_at], line[seq_end:]]
        a, b, c, d = (part.replace(b"%", b"%%") for part in literal)
        return a + b"%s" + b + b"%s" + c + b"%d" + d


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
