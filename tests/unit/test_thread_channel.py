"""aggregator/threads.py in one process: how many threads, the channel to a reader, the counters."""

from __future__ import annotations

import select

from aggregator.counters import Counters, merge_counters
from aggregator.threads import ThreadChannel, counters_snapshot, effective_threads
from aggregator.transports.base import Endpoint, HandOff, SharedSocket, SingleReader


def test_thread_count_follows_the_transport_sharing_and_the_hot_path():
    assert effective_threads(1, HandOff(), 8, native=True) == (1, None)
    assert effective_threads(0, HandOff(), 8, native=True) == (8, None)  # auto: one per CPU
    assert effective_threads(3, SharedSocket(), 8, native=True) == (3, None)
    n, why = effective_threads(2, SingleReader("one reader keeps order"), 8, native=True)
    assert n == 1 and "one reader keeps order" in why
    n, why = effective_threads(2, HandOff(), 8, native=False)
    assert n == 1 and "GIL" in why


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_a_reader_takes_what_it_is_handed_within_its_limit_and_drains_at_end():
    closed = []
    channel = ThreadChannel(on_closed=lambda: closed.append(1))
    handed = [Endpoint() for _ in range(3)]
    for endpoint in handed:
        channel.hand(endpoint)
    assert channel.open == 3 and readable(channel.fileno())
    assert channel.accept(2) == handed[:2]
    assert readable(channel.fileno())  # one still waiting: the loop comes back for it
    channel.end()
    assert not channel.drained
    assert channel.accept(None) == handed[2:]
    assert channel.drained  # ended and nothing left
    channel.connection_closed()
    assert channel.open == 2 and closed == [1]  # the main thread's count, and its wake-up
    channel.release()


def test_reader_counters_merge_into_exact_totals():
    main = Counters(transport="tcp", messages_received=5, messages_written=4, started_unix_ns=10)
    main.reject("invalid_json")
    reader = Counters(transport="tcp", messages_received=7, messages_written=5, started_unix_ns=10)
    reader.reject("invalid_json")
    reader.reject("not_an_object")
    merged = merge_counters([counters_snapshot(main), counters_snapshot(reader)])
    assert (merged.messages_received, merged.messages_written) == (12, 9)
    assert merged.rejected == {"invalid_json": 2, "not_an_object": 1}
    assert merged.messages_received == merged.messages_written + merged.rejected_total
    assert merged.started_unix_ns == 10 and merged.transport == "tcp"
