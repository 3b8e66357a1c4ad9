"""The shipper and the stream: every (host, producer, seq) exactly once in JetStream, through
crashes, node loss, a whole outage, rotation and a full stream (issue 13).

Real nats-server processes on free loopback ports, real aggregators, producers and shippers, all
started through ``natslab`` (the pipeline's one process module). The multi-host test runs in real
network namespaces where the machine allows them (CI is root), and says why it is skipped where
not. Each check is the read-back's sequence check; timings are never asserted.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from benchmarks.processes import console_script, nats_unavailable, wait_until
from natslab.hosts import namespaces_unavailable
from natslab.pipeline import Pipeline
from natslab.readback import exactly_once, format_check, read_stream

pytestmark = pytest.mark.skipif(nats_unavailable() is not None, reason=str(nats_unavailable()))

# Quick reactions for tests: short ack deadline and backoff, frequent stats.
FAST = ("--ack-timeout", "2", "--backoff-max", "0.5", "--stats-interval", "0.1", "--rotate-grace", "0.3")


def assert_exactly_once(p: Pipeline, producers: int, count: int) -> None:
    read, result = p.readback(p.expected(producers, count))
    assert exactly_once(result), format_check(read, result)
    assert read.messages == len(p.hosts.hosts) * producers * count


@pytest.fixture
def pipeline(tmp_path):
    made = []

    def make(**kw) -> Pipeline:
        kw.setdefault("shipper_args", FAST)
        p = Pipeline(tmp_path / f"p{len(made)}", **kw)
        made.append(p)
        return p.start()

    yield make
    for p in made:
        p.close()


def test_every_line_reaches_the_stream_once_with_its_payload_unchanged(pipeline):
    p = pipeline()
    h = p.hosts.hosts[0]
    p.run_producers(3, 2000)
    p.wait_stream_messages(6000)
    payloads: list[bytes] = []
    read, _ = p.nats.client(lambda: read_stream(p.nats.urls, "logs.h1", on_record=lambda host, data: payloads.append(data)))
    assert payloads == p.output(h).read_bytes().split(b"\n")[:-1]  # the file's lines, in order, without newline
    assert_exactly_once(p, 3, 2000)
    s = p.shipper_stats(h)
    assert s["lines_shipped"] == 6000 and s["dedup_hits"] == 0 and s["publish_errors"] == 0


def test_sigterm_ships_what_was_read_saves_the_checkpoint_and_exits_0(pipeline):
    p = pipeline()
    h = p.hosts.hosts[0]
    p.run_producers(2, 3000)
    p.wait_stream_messages(6000)
    assert p.shipper(h).stop(signal.SIGTERM) == 0
    cp = json.loads((h.dir / "shipper-h1.checkpoint.json").read_text())
    assert cp["offset"] == p.output(h).stat().st_size
    s = p.shipper_stats(h)
    assert s["lines_shipped"] == 6000 and s["lag_bytes"] == 0
    # A restart from that checkpoint ships only what is new.
    p.start_shipper(h)
    p.run_producers(2, 1000, prefix="q")
    p.wait_stream_messages(8000)
    read, result = p.readback({**p.expected(2, 3000), **p.expected(2, 1000, "q")})
    assert exactly_once(result), format_check(read, result)
    assert p.shipper_stats(h)["dedup_hits"] == 0


def test_a_replay_from_a_lost_checkpoint_is_dropped_by_the_duplicate_window(pipeline):
    """The Nats-Msg-Id (host, file identity, offset) makes a replay idempotent: the whole file
    shipped twice is stored once, and the second run counts every line as a dedup hit."""
    p = pipeline()
    h = p.hosts.hosts[0]
    p.run_producers(2, 2000)
    p.wait_stream_messages(4000)
    assert p.shipper(h).stop() == 0
    (h.dir / "shipper-h1.checkpoint.json").unlink()
    p.start_shipper(h)
    wait_until(lambda: p.shipper_stats(h).get("dedup_hits") == 4000, "the replay acknowledged as duplicates", 60)
    assert p.stream_state()["messages"] == 4000
    assert_exactly_once(p, 2, 2000)


def test_shipper_sigkilled_mid_stream_then_restarted_ships_every_line_exactly_once(pipeline):
    p = pipeline(shipper_args=FAST + ("--checkpoint-interval", "0.5"))
    h = p.hosts.hosts[0]
    producers = p.start_producers(4, 5000, "--rate", 4000)
    p.wait_stream_messages(3000)
    p.shipper(h).stop(signal.SIGKILL)
    killed_at = p.stream_state()["messages"]
    p.start_shipper(h)
    for proc in producers:
        proc.wait(60)
    p.wait_stream_messages(20000)
    assert_exactly_once(p, 4, 5000)
    assert 0 < killed_at < 20000  # the kill really came mid-stream


def test_the_stream_leader_of_three_nodes_killed_mid_stream_then_back_loses_and_doubles_nothing(pipeline):
    p = pipeline(nats_nodes=3)
    producers = p.start_producers(4, 5000, "--rate", 3000)
    p.wait_stream_messages(3000)
    leader = p.nats.stream_leader()  # the hardest node to lose: the stream's leader
    p.nats.kill_node(leader)
    p.wait_stream_messages(9000)  # the two survivors keep a quorum, elect a leader: shipping goes on
    p.nats.restart_node(leader)
    for proc in producers:
        proc.wait(60)
    p.wait_stream_messages(20000)
    assert_exactly_once(p, 4, 5000)


def test_whole_nats_down_mid_stream_the_shipper_waits_with_bounded_memory_and_catches_up(pipeline):
    p = pipeline()
    h = p.hosts.hosts[0]
    producers = p.start_producers(4, 6000, "--rate", 3000)
    p.wait_stream_messages(2000)
    p.nats.kill_node(0)
    shipper_pid = p.shipper(h).pid
    rss = [_rss(shipper_pid)]
    for proc in producers:  # the aggregator goes on while NATS is down: the file is the buffer
        proc.wait(60)
        rss.append(_rss(shipper_pid))
    s = p.shipper_stats(h)
    assert s["lag_bytes"] > 0 and s["retries"] + s["disconnects"] > 0
    p.nats.restart_node(0)
    p.wait_stream_messages(24000)
    assert_exactly_once(p, 4, 6000)
    # Bounded memory: at most the in-flight window (8 batches) and nats-py's 8 MiB reconnect buffer.
    assert max(rss) - rss[0] < 24 << 20, rss


def test_rotation_mid_stream_finishes_the_old_file_before_the_new_one(pipeline):
    p = pipeline()
    h = p.hosts.hosts[0]
    producers = p.start_producers(4, 5000, "--rate", 4000)
    wait_until(lambda: p.output(h).exists() and p.output(h).read_bytes().count(b"\n") >= 5000, "5000 lines written", 60)
    rotated = p.rotate(h)
    for proc in producers:
        proc.wait(60)
    p.wait_stream_messages(20000)
    read, result = p.readback(p.expected(4, 5000))
    assert exactly_once(result), format_check(read, result)
    assert result.reordered == 0  # the old file was finished before the new one
    assert p.shipper_stats(h)["rotations_followed"] == 1
    assert rotated.exists() and p.output(h).stat().st_size > 0


def test_stream_full_refuses_publishers_the_shipper_waits_and_nothing_is_dropped(pipeline):
    p = pipeline(stream_max_bytes=256 * 1024)
    h = p.hosts.hosts[0]
    p.run_producers(2, 3000)  # 6000 x ~300 stored bytes: more than the stream may hold
    s = wait_until(lambda: (s := p.shipper_stats(h)) and s.get("publish_errors", 0) > 0 and s, "publishers refused", 60)
    assert any("maximum bytes" in reason for reason in s["publish_errors_by_reason"]), s
    full = p.stream_state()
    assert 0 < full["messages"] < 6000 and full["bytes"] <= 256 * 1024  # refused, nothing old dropped
    p.nats.update_max_bytes(64 << 20)  # the operator makes room
    p.wait_stream_messages(6000)
    assert_exactly_once(p, 2, 3000)


@pytest.mark.skipif(namespaces_unavailable() is not None, reason=f"network namespaces unavailable: {namespaces_unavailable()}")
def test_three_hosts_in_namespaces_ship_into_a_three_node_cluster_exactly_once(pipeline):
    p = pipeline(hosts=3, nats_nodes=3, mode="netns")
    assert p.hosts.mode == "netns"
    for h in p.hosts.hosts:  # isolated: a route to the lab's bridge only, nothing out of the machine
        routes = subprocess.run(["ip", "-n", h.netns, "route"], capture_output=True, text=True).stdout
        assert "default" not in routes and routes.strip().startswith(p.hosts.subnet)
    p.run_producers(2, 2000, "--rate", 5000)
    p.wait_stream_messages(12000)
    assert_exactly_once(p, 2, 2000)
    namespaces = [h.netns for h in p.hosts.hosts] + [p.hosts.lab_ns]
    p.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in listed for ns in namespaces)  # torn down


def test_readback_command_checks_sequences_and_exits_1_on_a_gap(pipeline):
    p = pipeline()
    p.run_producers(2, 500)
    p.wait_stream_messages(1000)
    base = [console_script("loglab"), "readback", "--servers", p.nats.servers, "--expect-hosts", "h1", "--producers", "2"]
    ok = subprocess.run([*base, "--count", "500"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "exactly once" in ok.stdout, ok.stdout + ok.stderr
    gap = subprocess.run([*base, "--count", "501"], capture_output=True, text=True, timeout=60)  # one more than sent
    assert gap.returncode == 1 and "FAILED" in gap.stdout


@pytest.mark.parametrize("argv", [["shipper"], ["loglab", "nats", "up"], ["loglab", "hosts", "up"], ["loglab", "hosts", "produce"],
                                  ["loglab", "hosts", "readback"], ["loglab", "hosts", "down"], ["loglab", "readback"]])  # fmt: skip
def test_new_commands_explain_themselves(argv):
    r = subprocess.run([console_script(argv[0]), *argv[1:], "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and len(r.stdout) > 300, r.stdout + r.stderr


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
