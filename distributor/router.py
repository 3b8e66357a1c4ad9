"""Which analyzer takes the next message: an exact, deterministic weighted schedule.

The schedule is earliest-deadline-first with release times over the Pfair windows of each
analyzer (Baruah et al.'s proportionate fairness, on one "processor": the stream). With integer
weights ``a_i`` summing to ``W``, analyzer ``i``'s ``k``-th message of an epoch may take slot ``t``
(0-based: the ``t``-th message routed in the epoch) only when::

    release  floor((k-1) * W / a_i)  <=  t  <  ceil(k * W / a_i)  deadline

and among the analyzers released at ``t`` the one with the earliest deadline takes it (ties: the
smaller id). Then, after every ``n`` messages of the epoch and for every analyzer,
``|count_i - n * a_i / W| < 1``: each analyzer is less than one message off its exact share, at
every prefix, for any number of analyzers and any weights (the ``lag`` bound of Pfair scheduling;
EDF is optimal for unit jobs on one processor, and with the weights summing to the whole some
analyzer is always released). Checked by hypothesis in ``tests/unit/test_router.py``.

Two shapes of the same rule, with identical choices (a test compares them):

* up to ``SCAN_LIMIT`` analyzers, a scan of two small lists per message;
* beyond, two heaps (waiting, by release; ready, by deadline): O(log n) per message.

Weights are relative: any positive numbers, taken exactly as the decimals they print as
(``exact_weights``: 0.4/0.3/0.2/0.1 -> 4/3/2/1), so "the exact share" is exact, not a float's.
A membership or weight change starts a new epoch (counts from zero): the bound holds within each.

For comparison (``loglab bench --scenarios distribute``, the router-alone part) this module also
has the two designs the issue names: nginx's smooth weighted round-robin (``SmoothWeightedRoundRobin``:
exact per cycle, but between cycle ends it can stray beyond one message: 1.02 with 8 analyzers),
and a weight tree with random draws like the Go design's (``WeightTree``: O(log n), proportional
only on average, straying by about sqrt(n) messages after n).
"""

from __future__ import annotations

import heapq
import math
import random
from fractions import Fraction
from functools import reduce
from typing import Mapping

SCAN_LIMIT = 16  # analyzers: below, a scan of plain lists beats two heaps in CPython


def exact_weights(weights: Mapping[str, float]) -> dict[str, int]:
    """Positive weights as integers in exactly the same ratios: each weight is read as the decimal
    it prints as (0.1 is 1/10, not the binary float nearest to it), scaled by the least common
    multiple of the denominators and divided by the greatest common divisor."""
    fractions = {}
    for key, w in weights.items():
        try:
            fw = float(w)
        except (TypeError, ValueError):
            fw = math.nan
        if not (math.isfinite(fw) and fw > 0):
            raise ValueError(f"weight of {key!r} must be a positive number, not {w!r}")
        fractions[key] = Fraction(w) if isinstance(w, (int, Fraction)) else Fraction(repr(fw))
    if not fractions:
        return {}
    lcm = reduce(math.lcm, (f.denominator for f in fractions.values()), 1)
    ints = {k: f.numerator * (lcm // f.denominator) for k, f in fractions.items()}
    g = reduce(math.gcd, ints.values())
    return {k: v // g for k, v in ints.items()}


class Schedule:
    """One epoch's schedule over fixed weights: ``pick()`` -> the index of the next analyzer in
    ``ids`` (sorted). Tracks, per analyzer, the largest deviation from the exact share seen at any
    prefix, as exact integers scaled by ``W`` (``over``: ahead of the share, ``under``: behind)."""

    def __init__(self, weights: Mapping[str, float], heap: bool | None = None) -> None:
        ints = exact_weights(weights)
        self.ids = sorted(ints)
        self.a = [ints[i] for i in self.ids]
        self.W = sum(self.a)
        n = len(self.ids)
        self.counts = [0] * n
        self.t = 0  # messages routed in this epoch
        self.over = [0] * n  # max over prefixes of (count_i * W - t * a_i), >= 0
        self.under = [0] * n  # max over prefixes of (t * a_i - count_i * W), >= 0
        self.heap = n > SCAN_LIMIT if heap is None else heap
        W = self.W
        # The first message of each: released at 0, deadline ceil(W / a).
        self.release = [0] * n
        self.deadline = [-(-W // a) for a in self.a]
        if self.heap:
            self.ready = [(self.deadline[i], i) for i in range(n)]
            heapq.heapify(self.ready)
            self.waiting: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self.ids)

    def _advance(self, i: int) -> None:
        """Analyzer ``i`` took slot ``t``: its next window, and the deviation bookkeeping."""
        a, W, t = self.a[i], self.W, self.t
        c = self.counts[i]
        behind = t * a - c * W  # just before this message: the most behind it gets
        if behind > self.under[i]:
            self.under[i] = behind
        c += 1
        self.counts[i] = c
        ahead = c * W - (t + 1) * a  # just after: the most ahead it gets
        if ahead > self.over[i]:
            self.over[i] = ahead
        self.release[i] = c * W // a
        self.deadline[i] = -(-(c + 1) * W // a)
        self.t = t + 1

    def pick(self) -> int:
        if not self.a:
            raise LookupError("no analyzer to route to")
        t = self.t
        if self.heap:
            waiting, ready = self.waiting, self.ready
            while waiting and waiting[0][0] <= t:
                _, i = heapq.heappop(waiting)
                heapq.heappush(ready, (self.deadline[i], i))
            _, best = heapq.heappop(ready)
            self._advance(best)
            if self.release[best] <= self.t:
                heapq.heappush(ready, (self.deadline[best], best))
            else:
                heapq.heappush(waiting, (self.release[best], best))
            return best
        release, deadline = self.release, self.deadline
        best, best_d = -1, 0
        for i in range(len(release)):
            if release[i] <= t and (best < 0 or deadline[i] < best_d):
                best, best_d = i, deadline[i]
        self._advance(best)
        return best

    def picks(self, n: int) -> list[int]:
        pick = self.pick
        return [pick() for _ in range(n)]

    def close_epoch(self) -> None:
        """Account for the end of the epoch: the analyzers not picked lately are behind now."""
        t, W = self.t, self.W
        for i, a in enumerate(self.a):
            behind = t * a - self.counts[i] * W
            if behind > self.under[i]:
                self.under[i] = behind

    def deviation(self) -> dict[str, dict]:
        """Per analyzer: routed, exact share so far, and the largest deviations (in messages)."""
        W, t = self.W, self.t
        return {
            id_: {"weight_int": a, "routed": c, "exact_share": t * a / W if W else 0.0,
                  "max_ahead": self.over[i] / W, "max_behind": self.under[i] / W}
            for i, (id_, a, c) in enumerate(zip(self.ids, self.a, self.counts))
        }  # fmt: skip


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round-robin (``ngx_http_upstream_get_peer``): add each weight to its
    current value, take the largest, subtract the total from it. O(n) per pick. For comparison."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        ints = exact_weights(weights)
        self.ids = sorted(ints)
        self.a = [ints[i] for i in self.ids]
        self.W = sum(self.a)
        self.current = [0] * len(self.a)

    def pick(self) -> int:
        cur, a = self.current, self.a
        best = 0
        for i in range(len(a)):
            cur[i] += a[i]
            if cur[i] > cur[best]:
                best = i
        cur[best] -= self.W
        return best


class WeightTree:
    """A weight tree with random draws, like the Go design's router: a complete binary tree of
    subtree sums over the weights; a pick draws ``r`` in ``[0, total)`` and descends, O(log n); a
    weight changes in O(log n). Proportional only on average. For comparison."""

    def __init__(self, weights: Mapping[str, float], seed: int = 1) -> None:
        self.ids = sorted(weights)
        n = len(self.ids)
        self.size = 1
        while self.size < n:
            self.size *= 2
        self.tree = [0.0] * (2 * self.size)
        for i, id_ in enumerate(self.ids):
            self.tree[self.size + i] = float(weights[id_])
        for j in range(self.size - 1, 0, -1):
            self.tree[j] = self.tree[2 * j] + self.tree[2 * j + 1]
        self.random = random.Random(seed).random

    def update(self, i: int, weight: float) -> None:
        j = self.size + i
        self.tree[j] = float(weight)
        j //= 2
        while j:
            self.tree[j] = self.tree[2 * j] + self.tree[2 * j + 1]
            j //= 2

    def pick(self) -> int:
        tree = self.tree
        r = self.random() * tree[1]
        j = 1
        size = self.size
        while j < size:
            left = tree[2 * j]
            if r < left:
                j = 2 * j
            else:
                r -= left
                j = 2 * j + 1
        return min(j - size, len(self.ids) - 1)


class Router:
    """The schedule across epochs: ``set_weights`` starts a new epoch when the online analyzers or
    their weights changed; ``route(n)`` assigns the next ``n`` messages. Keeps each closed epoch's
    figures (``epochs``, the last ``keep`` of them) for the stats file and the fairness table."""

    def __init__(self, keep: int = 200, clock=None) -> None:
        import time

        self.clock = clock or time.time_ns
        self.schedule: Schedule | None = None
        self.weights: dict[str, float] = {}
        self.epoch = 0
        self.started_ns = self.clock()
        self.epochs: list[dict] = []
        self.keep = keep

    def set_weights(self, weights: Mapping[str, float]) -> bool:
        """New epoch if ``weights`` (online analyzer -> weight) differ from the current ones."""
        weights = dict(weights)
        if weights == self.weights and self.schedule is not None:
            return False
        self._close()
        self.weights = weights
        self.schedule = Schedule(weights) if weights else None
        self.epoch += 1
        self.started_ns = self.clock()
        return True

    def _close(self) -> None:
        if self.schedule is None or not self.schedule.t:
            return
        self.schedule.close_epoch()
        self.epochs.append(self.epoch_figures(closed=True))
        del self.epochs[: -self.keep]

    def epoch_figures(self, closed: bool = False) -> dict:
        s = self.schedule
        return {"epoch": self.epoch, "started_ns": self.started_ns, "ended_ns": self.clock() if closed else None,
                "weights": dict(self.weights), "messages": s.t if s else 0, "analyzers": s.deviation() if s else {}}  # fmt: skip

    @property
    def online(self) -> bool:
        return self.schedule is not None

    def route(self, n: int) -> list[str]:
        """The analyzer of each of the next ``n`` messages (LookupError when none is online)."""
        s = self.schedule
        if s is None:
            raise LookupError("no analyzer online")
        ids = s.ids
        return [ids[i] for i in s.picks(n)]
