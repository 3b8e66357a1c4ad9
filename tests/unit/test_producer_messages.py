"""producers.messages: the batch path renders exactly what build() renders, line for line."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.messages import FORMATS, FRAMINGS, MessageFactory


def built(factory: MessageFactory, first: int, n: int, ts_ns: int) -> bytes:
    return b"".join(factory.build(seq, ts_ns, ts_ns) for seq in range(first, first + n))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    producer_id=st.text(min_size=1, max_size=8),  # "%" and non-ASCII included: the template escapes
    size=st.integers(120, 600),
    seed=st.integers(0, 3),
    first=st.integers(0, 10**7) | st.sampled_from([0, 9, 95, 9990, 99_999, 4090]),
    n=st.integers(1, 70),
    ts_ns=st.integers(0, 10**20),
)
def test_batch_is_the_built_lines_joined(producer_id, size, seed, first, n, ts_ns):
    factory = MessageFactory(producer_id, 4242, size, seed)
    if size < factory.min_size(first + n):
        return
    expected = built(factory, first, n, ts_ns)
    assert factory.batch(first, n, ts_ns) == expected
    assert factory.batch(first, n, ts_ns) == expected  # again, from the cached template


def test_a_cached_template_serves_later_batches_of_the_same_shape():
    factory = MessageFactory("p0", 1, 200, 0)
    for start in range(100_000, 100_000 + 64 * 200, 64):  # 200 batches, 64 shapes
        assert factory.batch(start, 64, 1_795_000_000_000_000_000 + start) == built(
            factory, start, 64, 1_795_000_000_000_000_000 + start
        )
    assert len(factory._templates) == 64


def test_batch_lines_are_exact_size_json_with_consecutive_seqs():
    factory = MessageFactory("p7", 99, 200, 1)
    lines = factory.batch(500, 64, 1_795_000_000_000_000_000).split(b"\n")
    assert lines.pop() == b""
    assert all(len(line) + 1 == 200 for line in lines)
    records = [orjson.loads(line) for line in lines]
    assert [r["seq"] for r in records] == list(range(500, 564))
    assert {r["ts_ns"] for r in records} == {r["intended_ns"] for r in records} == {1_795_000_000_000_000_000}


@settings(max_examples=30, deadline=None, derandomize=True)
@given(size=st.sampled_from([68_000, 69_000, 100_000, 300_000, 1_000_000]) | st.integers(60_000, 400_000),
       seq=st.integers(0, 10**6))  # fmt: skip
def test_large_lines_are_exactly_the_size_asked_for(size, seq):
    # Padding ran out at 68 KB: --size 300000 sent 67 KB lines, saying nothing.
    line = MessageFactory("big", 4242, size, 1).build(seq, 1_700_000_000_000_000_000, 1_700_000_000_000_000_000)
    assert len(line) == size and line.endswith(b'"}\n')
    assert orjson.loads(line)["seq"] == seq


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    fmt=st.sampled_from(FORMATS),
    framing=st.sampled_from(FRAMINGS),
    size=st.integers(300, 700),
    first=st.integers(0, 10**7) | st.sampled_from([0, 9, 95, 4090]),
    n=st.integers(1, 70),
    ts_ns=st.integers(10**18, 2 * 10**18),
)
def test_every_format_and_framing_batches_exactly_what_it_builds_at_the_size_asked(fmt, framing, size, first, n, ts_ns):
    factory = MessageFactory("p%1", 4242, size, 1, fmt, framing, hostname="h")
    assert factory.batch(first, n, ts_ns) == built(factory, first, n, ts_ns)
    if framing == "lenprefix":
        frames = [factory.build(seq, ts_ns, ts_ns) for seq in range(first, first + 3)]
        assert all(len(f) == size and int.from_bytes(f[:4], "big") == size - 4 for f in frames)
    elif framing == "octet":
        frame = factory.build(first, ts_ns, ts_ns)
        count, _, message = frame.partition(b" ")
        assert len(frame) == size and int(count) == len(message)
    else:
        assert len(factory.build(first, ts_ns, ts_ns)) == size
