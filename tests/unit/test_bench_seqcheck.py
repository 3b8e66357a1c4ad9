"""benchmarks.seqcheck.analyze_output on crafted outputs: loss, duplicates, reordering, latency."""

from __future__ import annotations

import orjson

from benchmarks.results.seqcheck import SeqCheckResult, analyze_output


def rec(producer, seq, intended=1000, received=1500):
    return {"producer": producer, "seq": seq, "intended_ns": intended, "received_ns": received, "transport": "udp"}


def write_jsonl(path, records, extra_lines=()):
    with open(path, "wb") as f:
        for r in records:
            f.write(orjson.dumps(r) + b"\n")
        for line in extra_lines:
            f.write(line)
    return path


def test_complete_in_order_output_is_ok(tmp_path):
    path = write_jsonl(tmp_path / "out.jsonl", [rec(p, s) for s in range(23) for p in ("p0", "p1")])
    r = analyze_output(path, {"p0": 23, "p1": 23})
    assert r.ok
    assert (r.expected, r.received, r.missing, r.duplicates, r.reordered) == (46, 46, 0, 0, 0)
    assert r.loss_fraction == 0


def test_lost_messages_are_counted_with_their_ranges():
    seqs = [0, 1, 2, 5, 6, 9]  # 3, 4, 7, 8 lost; 9 of 10 is the last
    r = analyze_output([rec("p0", s) for s in seqs], {"p0": 10})
    assert r.missing == 4 and r.received == 6
    assert r.producers["p0"].missing_ranges == [[3, 4], [7, 8]]
    assert r.reordered == 0  # a gap is not reordering
    assert r.loss_fraction == 0.4


def test_producer_that_sent_nothing_is_all_missing():
    r = analyze_output([rec("p0", 0)], {"p0": 1, "p1": 5})
    assert r.producers["p1"].missing == 5 and r.missing == 5
    assert r.producers["p1"].missing_ranges == [[0, 4]]


def test_duplicates_count_each_extra_copy():
    seqs = [0, 1, 1, 2, 2, 2, 3]
    r = analyze_output([rec("p0", s) for s in seqs], {"p0": 4})
    assert r.duplicates == 3 and r.missing == 0 and r.received == 4 and r.records == 7


def test_reordering_counts_messages_arriving_after_a_later_one():
    seqs = [0, 2, 1, 3, 6, 4, 5, 7]  # 1 arrives after 2; 4 and 5 after 6
    r = analyze_output([rec("p0", s) for s in seqs], {"p0": 8})
    assert r.reordered == 3 and r.missing == 0 and r.duplicates == 0


def test_reordering_is_per_producer():
    records = [rec("p0", 0), rec("p1", 5), rec("p0", 1), rec("p1", 6), rec("p0", 2)]
    r = analyze_output(records, {"p0": 3, "p1": 7})
    assert r.reordered == 0
    assert r.producers["p1"].missing == 5


def test_out_of_range_unexpected_producers_and_bad_lines(tmp_path):
    path = write_jsonl(
        tmp_path / "out.jsonl",
        [rec("p0", 0), rec("p0", 9), rec("zz", 0), {"producer": "p0"}],
        extra_lines=[b"not json\n", b"\n", b'{"producer": "p0", "seq": "x"}\n'],
    )
    r = analyze_output(path, {"p0": 2})
    assert r.out_of_range == 2  # p0 seq 9 and zz's message
    assert r.unexpected_producers == ["zz"]
    assert r.bad_lines == 3  # missing seq, not JSON, string seq (blank line ignored)
    assert r.producers["p0"].missing == 1
    assert not r.ok


def test_latency_samples_from_intended_time_first_copies_only():
    records = [rec("p0", 0, 100, 350), rec("p0", 1, 200, 260), rec("p0", 1, 200, 999)]
    records.append({"producer": "p0", "seq": 2, "ts_ns": 300, "received_ns": 310})  # no intended_ns: ts_ns
    r = analyze_output(records, {"p0": 3})
    assert list(r.latencies_ns) == [250, 60, 10]
    assert (r.first_received_ns, r.last_received_ns) == (260, 350)


def test_accepts_byte_lines_and_round_trips_to_dict():
    lines = [orjson.dumps(rec("p0", s)) + b"\n" for s in (0, 2, 1)]
    r = analyze_output(lines, {"p0": 4})
    back = SeqCheckResult.from_dict(orjson.loads(orjson.dumps(r.to_dict())))
    assert back == r
    assert back.missing == 1 and back.reordered == 1
