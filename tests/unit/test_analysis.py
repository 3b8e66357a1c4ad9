"""The analyzer's analysis and the membership rules, in process: counts, the sequence check, the
error window, refused records; who is online after heartbeats, down marks and deregistration."""

from __future__ import annotations

import orjson
import pytest

from analyzer.analysis import Analysis, ErrorWindow
from distributor.membership import BEAT, DOWN, MEMBER, MembershipView, check_id, check_weight


def line(host: str, producer: str, seq: int, level: str = "info") -> bytes:
    return host.encode() + b" " + orjson.dumps({"producer": producer, "seq": seq, "level": level})


def test_counts_duplicates_and_gaps_per_host_and_producer():
    a = Analysis()
    refused, accepted = a.add_batch([line("h1", "p0", 0), line("h1", "p0", 2), line("h2", "p0", 0, "error"), line("h1", "p0", 2)])
    assert refused == [] and len(accepted) == 4
    f = a.figures()
    assert f["messages"] == 4 and f["duplicates"] == 1
    assert f["per_host"] == {"h1": 3, "h2": 1} and f["per_level"] == {"error": 1, "info": 3}
    assert f["producers"]["h1/p0"] == {"received": 2, "duplicates": 1, "max_seq": 2, "gaps": 1}  # seq 1 not seen here
    assert f["producers"]["h2/p0"]["gaps"] == 0


def test_records_that_are_not_json_log_records_are_refused_by_index():
    a = Analysis()
    refused, accepted = a.add_batch([b"h1 not json", line("h1", "p0", 0), b'h1 {"seq": 1}', b'h1 {"producer": "p", "seq": -1}', b"h1 [1]"])
    assert refused == [0, 2, 3, 4] and accepted == [("h1/p0", 0)]
    assert a.figures()["refused"] == 4


def test_a_large_seq_grows_the_bitmap_and_is_still_checked():
    a = Analysis()
    a.add_batch([line("h", "p", 1_000_003), line("h", "p", 1_000_003), line("h", "p", 7)])
    p = a.figures()["producers"]["h/p"]
    assert p["received"] == 2 and p["duplicates"] == 1 and p["max_seq"] == 1_000_003


def test_a_huge_seq_is_checked_without_a_bitmap_up_to_it():
    a = Analysis()
    a.add_batch([line("h", "p", 2**62), line("h", "p", 2**62), line("h", "p", 3)])
    p = a.producers["h/p"]
    assert (p.received, p.duplicates, p.max_seq) == (2, 1, 2**62) and len(p.seen) < 1 << 20


def test_the_error_window_forgets_what_is_older_than_the_window():
    now = [100.0]
    w = ErrorWindow(window_s=10, clock=lambda: now[0])
    w.add(100, 5)
    now[0] = 105.0
    w.add(100, 15)
    assert w.figures() == {"window_s": 10, "records": 200, "errors": 20, "error_rate": 0.1}
    now[0] = 112.0
    assert w.figures()["records"] == 100


def view_at(now_s: float) -> MembershipView:
    return MembershipView(heartbeat_timeout=1.5, down_hold=2.0, clock=lambda: int(now_s * 1e9))


def put(v: MembershipView, key: str, value: dict | None, at_s: float) -> None:
    v.apply(key, orjson.dumps(value) if value is not None else b"", value is None, int(at_s * 1e9))


def test_online_needs_a_registration_and_a_fresh_heartbeat():
    v = view_at(10.0)
    put(v, BEAT + "a", {"messages": 0}, 9.5)
    assert v.online() == {}  # heartbeating, not registered
    put(v, MEMBER + "a", {"weight": 0.5}, 9.0)
    assert v.online() == {"a": 0.5}
    v.clock = lambda: int(11.1 * 1e9)  # last beat 1.6 s ago: missed
    assert v.online() == {} and v.describe()["a"]["offline_reason"].startswith("missed heartbeat")
    put(v, BEAT + "a", {}, 11.0)
    assert v.online() == {"a": 0.5}  # a returning one is taken back
    put(v, MEMBER + "a", None, 11.05)
    assert v.online() == {} and v.describe()["a"]["offline_reason"] == "not registered"


def test_a_down_mark_holds_then_a_later_heartbeat_takes_the_analyzer_back():
    v = view_at(10.0)
    put(v, MEMBER + "a", {"weight": 1}, 1.0)
    put(v, BEAT + "a", {}, 9.9)
    put(v, DOWN + "a", {"reason": "no acknowledgement"}, 9.95)
    assert v.online() == {}
    v.clock = lambda: int(11.5 * 1e9)
    put(v, BEAT + "a", {}, 11.0)  # a beat after the mark, but the hold (2 s) is not over
    assert v.online() == {}
    put(v, BEAT + "a", {}, 12.4)
    v.clock = lambda: int(12.5 * 1e9)
    assert v.online() == {"a": 1.0}


@pytest.mark.parametrize("bad", ["", "a.b", "a b", "*", "x" * 65])
def test_ids_are_one_subject_token(bad):
    with pytest.raises(ValueError):
        check_id(bad)


@pytest.mark.parametrize("bad", [0, -2, "x", None, float("inf"), 1e10])
def test_weights_are_positive_finite_numbers(bad):
    with pytest.raises(ValueError):
        check_weight(bad)
