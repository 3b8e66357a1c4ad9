"""The latency observer's pieces in-process: its stamps file, and a follower that counts lines
as a file grows (the process itself runs in tests/e2e/test_bench_e2e.py)."""

from __future__ import annotations

from array import array

import pytest

from benchmarks.run.observer import Follower, ObservedStamps


def test_stamps_round_trip_and_expand_one_per_line(tmp_path):
    s = ObservedStamps(array("q", [2, 1, 3]), array("q", [10, 20, 30]))
    s.dump(tmp_path / "st")
    back = ObservedStamps.load(tmp_path / "st")
    assert list(back.lines) == [2, 1, 3] and list(back.stamps_ns) == [10, 20, 30]
    assert list(back.per_line()) == [10, 10, 20, 30, 30, 30] and back.total_lines == 6


def test_a_file_that_is_not_a_stamps_file_is_refused(tmp_path):
    (tmp_path / "x").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not an observer"):
        ObservedStamps.load(tmp_path / "x")


def test_follower_stamps_a_line_when_its_newline_arrives_and_never_before(tmp_path):
    path = tmp_path / "out.jsonl"
    f = Follower(path)
    f.catch_up()  # the file does not exist yet: nothing, no error
    with open(path, "ab", buffering=0) as out:
        out.write(b'{"a":1}\n{"b":')  # one whole line, one half
        f.catch_up()
        out.write(b'2}\n{"c":3}\n')
        f.catch_up()
        f.catch_up()  # nothing new: no run added
    s = f.stamps_so_far()
    assert list(s.lines) == [1, 2]
    assert s.stamps_ns[0] <= s.stamps_ns[1]
