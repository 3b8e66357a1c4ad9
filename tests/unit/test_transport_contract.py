"""The transport contract, run in-process for every transport of the registry: listen, connect,
send, frame, bad input, drain, clean-up. A new transport is tested by being registered.

What differs between transports comes from their own attributes (``kind``: newline framing or
one message per send; ``connected``: a listener hands out one endpoint per producer;
``address_kind``: a path to clean up, or HOST:PORT), never from their names.
"""

from __future__ import annotations

import os
import select
import shutil
import threading
import time

import pytest

from aggregator.framing import DATAGRAM_TRUNCATED, LINE_TOO_LONG, PARTIAL_LINE_AT_CLOSE
from aggregator.transports import (
    TRANSPORT_NAMES,
    ListenOptions,
    get_transport,
    transport_names,
)
from benchmarks.processes import address_for, short_tempdir

MAX = 1024  # --max-line-bytes for these tests


class Harness:
    """One listening transport read in-process: what the event loop does, minus the loop."""

    def __init__(self, name: str) -> None:
        self.t = get_transport(name)
        self.dir = short_tempdir("loglab-c-")
        self.binding = self.t.listen(address_for(name, self.dir), ListenOptions(max_line_bytes=MAX))
        self.endpoints = list(self.binding.endpoints)
        self.buf = memoryview(bytearray(64 * 1024))

    def connect(self):
        return self.t.connect(self.binding.address, timeout=10)

    def read_endpoint(self, e, lines: list, rejects: list):
        """``e.read``, then, for a byte stream whose framing the event loop does
        (``line_framer``, which a connection may choose at its first byte), that framing: framed
        lines either way."""
        chunks: list[bytes] = []
        result = e.read(self.buf, chunks, rejects)
        if e.line_framer is None:
            lines += chunks
            return result
        for chunk in chunks:
            e.line_framer.feed(chunk, lines, rejects)
        return result

    def _accept(self) -> None:
        if self.binding.listener is not None:
            self.endpoints += self.binding.listener.accept(None)

    def read(self, want_lines: int = 0, want_rejects: int = 0, timeout: float = 10.0):
        """Read every endpoint until ``want_lines`` lines and ``want_rejects`` rejects arrived."""
        lines, rejects = [], []
        deadline = time.monotonic() + timeout
        while len(lines) < want_lines or len(rejects) < want_rejects:
            assert time.monotonic() < deadline, f"only {lines} and {rejects} arrived"
            self._accept()
            fds = [e.fileno() for e in self.endpoints] + ([self.binding.listener.fileno()] if self.binding.listener else [])
            select.select(fds, [], [], 0.05)
            for e in list(self.endpoints):
                _, _, finished = self.read_endpoint(e, lines, rejects)
                if finished:
                    e.close(rejects)
                    self.endpoints.remove(e)
        return lines, rejects

    def read_available(self, quiet: float = 0.3):
        """Whatever arrives until nothing more has for ``quiet`` seconds (unreliable transports)."""
        lines, rejects = [], []
        last = time.monotonic()
        while time.monotonic() - last < quiet:
            self._accept()
            select.select([e.fileno() for e in self.endpoints], [], [], 0.05)
            for e in self.endpoints:
                before = len(lines)
                self.read_endpoint(e, lines, rejects)
                if len(lines) > before:
                    last = time.monotonic()
        return lines, rejects

    def close(self) -> None:
        """Close what listens and remove its file (idempotent)."""
        for e in self.endpoints:
            e.close([])
        self.endpoints = []
        if self.binding.listener is not None:
            self.binding.listener.close()
        self.binding.cleanup()


@pytest.fixture(params=TRANSPORT_NAMES)
def h(request):
    harness = Harness(request.param)
    try:
        yield harness
    finally:
        harness.close()
        shutil.rmtree(harness.dir, ignore_errors=True)


def test_a_message_sent_arrives_framed_once(h):
    sender = h.connect()
    sender.send(b'{"seq":0}\n')
    lines, rejects = h.read(1)
    assert lines == [b'{"seq":0}'] and rejects == []
    sender.close()


def test_many_messages_arrive_in_order(h):
    # Sent from another thread: a sender blocks once the kernel's queue is full (backpressure).
    sender = h.connect()
    thread = threading.Thread(target=lambda: [sender.send(b'{"seq":%d}\n' % i) for i in range(500)])
    thread.start()
    if h.t.reliable:
        lines, _ = h.read(500)
        thread.join(10)
        assert lines == [b'{"seq":%d}' % i for i in range(500)]
    else:  # may drop when its receive buffer is full, but never duplicates or reorders here
        lines, _ = h.read(1)
        thread.join(10)
        lines += h.read_available()[0]
        seqs = [int(line[7:-1]) for line in lines]
        assert seqs and seqs == sorted(set(seqs)), seqs
    sender.close()


def test_framing_follows_the_transports_kind(h):
    sender = h.connect()
    if h.t.kind == "stream":  # newline framing: one write may carry several lines, a line may span writes
        sender.send(b'{"a":1}\n{"b":2}\n{"c"')
        sender.send(b':3}\n')
        lines, _ = h.read(3)
        assert lines == [b'{"a":1}', b'{"b":2}', b'{"c":3}']
    else:  # one message per send; its line ending is optional, a newline inside it is kept
        sender.send(b'{"a":\n1}')
        sender.send(b'{"b":2}\n')
        lines, _ = h.read(2)
        assert lines == [b'{"a":\n1}', b'{"b":2}']
    sender.close()


def test_a_message_over_the_limit_is_rejected_with_its_size_and_the_next_one_arrives(h):
    sender = h.connect()
    big = b'{"x":"' + b"x" * (2 * MAX) + b'"}'
    if h.t.kind == "stream":
        sender.write_all(big + b"\n")
    else:
        sender.send(big)
    sender.send(b'{"after":1}\n')
    lines, rejects = h.read(1, 1)
    assert lines == [b'{"after":1}']
    (reject,) = rejects
    assert reject.reason == (LINE_TOO_LONG if h.t.kind == "stream" else DATAGRAM_TRUNCATED)
    assert reject.length == len(big)
    sender.close()


@pytest.mark.parametrize("h", transport_names(kind="stream", connected=True), indirect=True)
def test_a_connection_closed_mid_line_leaves_a_partial_line_reject(h):
    # Only a byte stream of one producer's own can end mid-line (on a shared FIFO the fragment
    # would join the next writer's line: see README, "Not promised").
    sender = h.connect()
    sender.send(b'{"whole":1}\n{"half"')
    sender.close()
    lines, rejects = h.read(1, 1)
    assert lines == [b'{"whole":1}'] and [r.reason for r in rejects] == [PARTIAL_LINE_AT_CLOSE]


def test_a_drain_reads_what_was_sent_before_it_and_then_finishes(h):
    sender = h.connect()
    for i in range(10):
        sender.send(b'{"seq":%d}\n' % i)
    h._accept()
    if h.binding.listener is not None:
        h.binding.listener.begin_drain()
    lines = []
    deadline = time.monotonic() + 10
    for e in h.endpoints:
        e.begin_drain()
    sender.close()  # senders of a drain without a shutdown signal must close for it to end
    while h.endpoints:
        assert time.monotonic() < deadline, f"drain did not finish; read {len(lines)}"
        h._accept()
        select.select([e.fileno() for e in h.endpoints] or [], [], [], 0.05)
        for e in list(h.endpoints):
            _, _, finished = h.read_endpoint(e, lines, [])
            if finished:
                e.close([])
                h.endpoints.remove(e)
    assert lines == [b'{"seq":%d}' % i for i in range(10)]


def test_clean_up_removes_the_path_and_frees_the_address(h):
    address = h.binding.address
    h.close()
    if h.t.address_kind == "path":
        assert not os.path.lexists(address)
    again = h.t.listen(address if h.t.address_kind == "path" else address, ListenOptions(max_line_bytes=MAX))
    for e in again.endpoints:
        e.close([])
    if again.listener is not None:
        again.listener.close()
    again.cleanup()


def test_connect_without_a_listener_fails_clearly(tmp_path):
    for name in TRANSPORT_NAMES:
        t = get_transport(name)
        if t.address_kind != "path":
            continue  # connectionless or refused only later: covered end to end
        with pytest.raises(OSError):
            t.connect(str(tmp_path / f"nobody.{name}"))
