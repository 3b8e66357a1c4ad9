"""Log messages of an exact size, built cheaply.

A message is one JSON object on one line, ``size`` bytes including the newline::

    {"ts_ns":...,"intended_ns":...,"producer":"p1","seq":7,"pid":123,"level":"info","msg":"..."}

``msg`` is padding chosen so every line has the requested size whatever the width of the numbers.
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
) * 800  # 68 KB: enough padding for the largest message a datagram can carry


class MessageFactory:
    def __init__(self, producer_id: str, pid: int, size: int, seed: int) -> None:
        self.size = size
        rng = random.Random(seed)
        # Seeded choices drawn once and cycled: drawing two random numbers per message would
        # cost the producer more than formatting it, and steal CPU from the system under test.
        self._choices = [(rng.choice(LEVELS).encode(), rng.randrange(64)) for _ in range(_CHOICES)]
        self._head = b'{"ts_ns":%d,"intended_ns":%d,"producer":' + orjson.dumps(producer_id).replace(b"%", b"%%") + (
            b',"seq":%%d,"pid":%d,"level":"%%s","msg":"' % pid
        )
        self._filler = _FILLER.encode()

    def min_size(self, count: int) -> int:
        """The smallest size that fits the widest header of ``count`` messages, with no padding."""
        widest = self._head % (10**18 * 9, 10**18 * 9, max(count - 1, 0), max(LEVELS, key=len).encode())
        return len(widest) + len(b'"}\n')

    def build(self, seq: int, ts_ns: int, intended_ns: int) -> bytes:
        level, start = self._choices[seq & (_CHOICES - 1)]
        head = self._head % (ts_ns, intended_ns, seq, level)
        return head + self._filler[start : start + self.size - len(head) - 3] + b'"}\n'
