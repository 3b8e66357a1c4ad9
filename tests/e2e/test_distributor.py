"""The distribute stage: LOGS -> distributor replicas -> weighted analyzers, acknowledged end to end
(issue 14). Real nats-server, real distributor, analyzer and distributor-http processes, started
through ``natslab.distribution``. Every check is on counts: the analyzers' ledgers (each
acknowledged record, written before its acknowledgement) unioned and sequence-checked, the
consumer's ack floor, the dead-letter stream, ``/analyzer/stats``. Timings are never asserted.
"""

from __future__ import annotations

import signal
import subprocess

import httpx
import pytest

from benchmarks.processes import console_script, nats_unavailable, wait_until
from natslab.distribution import Distribution

pytestmark = pytest.mark.skipif(nats_unavailable() is not None, reason=str(nats_unavailable()))

# Quick reactions for tests: short ack timeout, heartbeats and hold; frequent stats.
FAST = ("--ack-timeout", "0.5", "--heartbeat-timeout", "0.6", "--down-hold", "0.5", "--stats-interval", "0.1")
BEAT = ("--heartbeat", "0.1", "--stats-interval", "0.2", "--drain", "0.1")
WEIGHTS = {"a1": 0.4, "a2": 0.3, "a3": 0.2, "a4": 0.1}


@pytest.fixture
def dist(tmp_path):
    d = Distribution(tmp_path / "d", distributor_args=FAST, analyzer_args=BEAT).start()
    try:
        yield d
    finally:
        d.close()


def ledger_counts(d: Distribution) -> dict[str, int]:
    return {aid: len(rows) for aid, rows in d.ledger_records().items()}


def assert_all_acked_exactly_once(d: Distribution, expected: dict[str, int]) -> None:
    d.wait_all_acked(120)
    result = d.check(expected)
    assert result.missing == 0 and result.duplicates == 0 and result.received == sum(expected.values()), result.to_dict()


def test_the_stream_is_routed_in_exact_proportion_and_every_message_acknowledged_once(dist):
    for aid, w in WEIGHTS.items():
        dist.analyzer(aid, w)
    dist.distributor("d1")
    expected = dist.fill("h1", producers=2, count=5000)
    assert_all_acked_exactly_once(dist, expected)
    assert ledger_counts(dist) == {"a1": 4000, "a2": 3000, "a3": 2000, "a4": 1000}  # one epoch, 10,000 = whole cycles
    dist.proc("d1").stop()
    s = dist.distributor_stats("d1")
    assert s["received"] == s["source_acked"] == 10_000 and s["redelivered"] == 0 and s["handed_back"] == 0
    epoch = s["epoch"]["analyzers"]
    assert all(a["max_ahead"] < 1 and a["max_behind"] < 1 for a in epoch.values()), epoch
    # The analyzers (still running) rewrite their stats files once a second: wait for the last one.
    wait_until(lambda: sum(dist.analyzer_stats(a).get("messages", 0) for a in WEIGHTS) == 10_000, "the analyzers' stats files say 10,000")


def test_two_replicas_share_the_consumer_without_double_routing(dist):
    for aid in ("a1", "a2", "a3"):
        dist.analyzer(aid, WEIGHTS[aid])
    dist.distributor("d1")
    dist.distributor("d2")
    expected = dist.fill("h1", producers=4, count=4500)
    assert_all_acked_exactly_once(dist, expected)
    for name in ("d1", "d2"):
        dist.proc(name).stop()
    s1, s2 = dist.distributor_stats("d1"), dist.distributor_stats("d2")
    assert s1["received"] > 0 and s2["received"] > 0  # both took part
    assert s1["received"] + s2["received"] == 18_000 and s1["redelivered"] + s2["redelivered"] == 0
    counts = ledger_counts(dist)
    exact = {"a1": 18_000 * 4 / 9, "a2": 18_000 * 3 / 9, "a3": 18_000 * 2 / 9}
    assert all(abs(counts[a] - exact[a]) < 2 for a in exact), counts  # < 1 message per replica off the share


def test_an_analyzer_killed_mid_stream_fails_over_with_no_loss_and_is_taken_back(dist):
    for aid in ("a1", "a2", "a3"):
        dist.analyzer(aid, 1, "--slow-ms", "0.1")  # ~10,000 msg/s each: the kill lands mid-stream
    dist.distributor("d1")
    expected = dist.fill("h1", producers=3, count=8000)
    wait_until(lambda: ledger_counts(dist)["a2"] >= 1000, "a2 took 1000 messages", 60)
    dist.proc("a2").stop(signal.SIGKILL)
    dist.wait_all_acked(120)
    result = dist.check(expected)
    assert result.missing == 0, result.to_dict()
    s = wait_until(lambda: (s := dist.distributor_stats("d1")) and "a2" not in s["online"] and s, "a2 offline for d1", 30)
    assert s["failovers"] >= 1 and s["failover_messages"] > 0
    # Duplicates come only from the failover: at most the messages moved, and counted.
    assert result.duplicates <= s["failover_messages"], (result.duplicates, s["failover_messages"])
    assert ledger_counts(dist)["a2"] < 8000
    # Back: the same id registers again and takes its share of new messages.
    before = ledger_counts(dist)["a2"]
    dist.analyzer("a2", 1)
    wait_until(lambda: "a2" in dist.distributor_stats("d1").get("online", {}), "a2 online again", 30)
    more = dist.fill("h1", producers=1, count=3000, prefix="q")
    dist.wait_all_acked(60)
    assert dist.check({**expected, **more}).missing == 0
    assert ledger_counts(dist)["a2"] - before >= 900  # a third of 3000, give or take the epoch's start


def test_a_wedged_analyzer_is_marked_down_and_its_messages_go_to_the_others(dist):
    dist.analyzer("a1", 1, "--fail-after", "300")  # stops acknowledging, keeps heartbeating
    dist.analyzer("a2", 1)
    dist.distributor("d1")
    expected = dist.fill("h1", producers=2, count=2000)
    assert_all_acked_exactly_once(dist, expected)  # whatever a1 dropped was delivered to a2
    s = wait_until(lambda: (s := dist.distributor_stats("d1")) and s["failovers"] >= 1 and s, "a failover counted", 30)
    assert s["analyzers"]["a1"]["failures"] >= 1 and s["analyzers"]["a1"]["failed_over"] > 0
    a1 = wait_until(lambda: (a := dist.analyzer_stats("a1")) and a.get("wedged") and a, "a1 wedged", 30)
    assert 300 <= a1["messages"] < 4000 and a1["ignored_after_fail"] > 0


def test_a_message_no_analyzer_takes_goes_to_the_dead_letter_stream_counted(dist):
    dist.analyzer("a1", 1)
    dist.analyzer("a2", 2)
    dist.distributor("d1", "--max-attempts", "3")
    expected = dist.fill("h1", producers=1, count=500)
    dist.publish("logs.h1", [b"not json at all", b'{"no": "producer"}', b"[1, 2, 3]"])
    dist.wait_all_acked(60)
    assert dist.check(expected).missing == 0
    dead = dist.deadletters()
    assert sorted(payload for _, payload, _ in dead) == sorted([b"not json at all", b'{"no": "producer"}', b"[1, 2, 3]"])
    assert all(subject == "deadletter.logs.h1" and headers.get("Loglab-Reason") for subject, _, headers in dead)
    assert all(set(headers["Loglab-Refused-By"].split(",")) == {"a1", "a2"} for _, _, headers in dead)
    s = wait_until(lambda: (s := dist.distributor_stats("d1")) and s.get("dead_lettered") == 3 and s, "3 dead-lettered", 30)
    assert s["source_acked"] == 500 and s["refusals"] == 6  # each refused by both analyzers


def test_register_and_deregister_through_http_and_through_the_bucket(dist):
    dist.analyzer("a1", 1)
    dist.analyzer("b1", 1, "--no-register")  # heartbeats, but nobody registered it yet
    dist.distributor("d1")
    http = httpx.Client(base_url=dist.http(), timeout=10)

    def analyzers() -> dict:
        return http.get("/analyzer/stats").json()["analyzers"]

    assert analyzers()["b1"]["online"] is False and analyzers()["b1"]["offline_reason"] == "not registered"
    r = http.post("/analyzer/register", json={"id": "b1", "weight": 3})
    assert r.status_code == 200 and r.json()["registered"]["by"] == "http"
    wait_until(lambda: analyzers()["b1"]["online"], "b1 online after POST /analyzer/register")
    wait_until(lambda: "b1" in dist.distributor_stats("d1").get("online", {}), "d1 routes to b1")
    first = dist.fill("h1", producers=1, count=400)
    dist.wait_all_acked(60)
    assert ledger_counts(dist) == {"a1": 100, "b1": 300}
    # A weight change through HTTP shows at once.
    assert http.put("/analyzer/b1/weight", json={"weight": 0.5}).status_code == 200
    assert analyzers()["b1"]["weight"] == 0.5
    assert http.put("/analyzer/nobody/weight", json={"weight": 1}).status_code == 404
    assert http.put("/analyzer/b1/weight", json={"weight": -1}).status_code == 400
    # Deregistered through HTTP: no more messages for b1.
    assert http.post("/analyzer/deregister", json={"id": "b1"}).status_code == 200
    assert http.post("/analyzer/deregister", json={"id": "b1"}).status_code == 404
    wait_until(lambda: "b1" not in dist.distributor_stats("d1").get("online", {"b1": 1}), "d1 stops routing to b1")
    second = dist.fill("h1", producers=1, count=200, prefix="q")
    dist.wait_all_acked(60)
    assert ledger_counts(dist)["b1"] == 300 and dist.check({**first, **second}).missing == 0
    # Through the bucket: distributor-ctl deregisters a1, and the stats show it at once.
    out = subprocess.run([console_script("distributor-ctl"), "deregister", "a1", "--servers", dist.servers], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    wait_until(lambda: analyzers()["a1"]["offline_reason"] == "not registered", "a1 deregistered in /analyzer/stats", 10)
    # A stopped analyzer deregisters itself at exit.
    dist.analyzer("a3", 2)
    wait_until(lambda: analyzers().get("a3", {}).get("online"), "a3 online")
    assert dist.proc("a3").stop() == 0
    assert analyzers().get("a3", {"online": False})["online"] is False


def test_messages_sent_over_http_reach_the_analyzers(dist):
    dist.analyzer("a1", 1)
    dist.distributor("d1")
    http = httpx.Client(base_url=dist.http(), timeout=10)
    assert http.post("/message/send", json={"host": "web1", "producer": "x", "seq": 0, "level": "error"}).json() == {"published": 1, "stream": "LOGS"}
    assert http.post("/message/send", json=[{"host": "web1", "producer": "x", "seq": i} for i in range(1, 50)]).json()["published"] == 49
    assert http.post("/message/send", content=b"{nope").status_code == 400
    assert http.post("/message/send", json=[1, 2]).status_code == 400
    dist.wait_all_acked(60)
    assert dist.check({"web1/x": 50}).missing == 0
    a1 = wait_until(lambda: (a := dist.analyzer_stats("a1")) and a.get("messages") == 50 and a, "a1's stats file says 50")
    assert a1["per_host"] == {"web1": 50} and a1["per_level"]["error"] == 1 and a1["duplicates"] == 0


@pytest.mark.parametrize("argv", [["distributor"], ["analyzer"], ["distributor-http"], ["distributor-ctl"], ["distributor-ctl", "weight"]])
def test_the_commands_explain_themselves(argv):
    r = subprocess.run([console_script(argv[0]), *argv[1:], "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and len(r.stdout) > 200, r.stdout + r.stderr
