"""The output and the rejects file hold whole lines only, whatever happens (issue 9, items 3, 4, 7).

Before the fix: a rotation while the disk was full left ``out.jsonl.1`` ending in half a line and
the new file starting with the rest; a worker SIGKILLed mid-write left its half line in the middle
of the file, followed by the other worker's lines; rejects written on a full disk were torn, and
the error named the output file and promised a retry that never came.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.faults.machine import can_mount_tmpfs, remount, tmpfs
from benchmarks.faults.scenarios import rotation_full_disk, worker_kill
from benchmarks.processes import AggregatorProc, Client

NEEDS_TMPFS = can_mount_tmpfs()


def _all_json(data: bytes) -> list[dict]:
    assert data == b"" or data.endswith(b"\n"), f"ends in a torn line: ...{data[-80:]!r}"
    return [json.loads(line) for line in data.split(b"\n")[:-1]]


@pytest.mark.skipif(NEEDS_TMPFS is not None, reason=f"needs a tmpfs to fill: {NEEDS_TMPFS}")
@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["unixsock", "fifo"])
def test_rotation_while_the_disk_is_full_never_tears_a_line(tmp_path, transport):
    (row,) = rotation_full_disk(tmp_path, 1.0, transports=(transport,))
    assert row.ok, row
    assert row.lost == 0 and row.written == row.sent, row


@pytest.mark.timeout(60)
def test_a_dead_workers_half_line_is_moved_to_rejects_before_anyone_appends(tmp_path):
    # What a worker SIGKILLed in the middle of write(2) leaves: the head of a line, no newline.
    # (The torture scenario below kills real workers; this reproduces the state exactly.)
    with AggregatorProc("unixsock", tmp_path / "agg", "--workers", 2, "--flush-interval", 0) as agg:
        with Client("unixsock", agg.address) as c:
            c.send(b'{"seq":0}\n')
            agg.wait_lines(1)
            with open(agg.output, "ab") as f:
                f.write(b'{"seq":"half of a dead worker\'s li')
            c.send(b'{"seq":1}\n')
            agg.wait_lines(2)
        assert agg.stop() == 0, agg.stderr_text()
        records = _all_json(agg.output.read_bytes())
        rejects = agg.reject_records()
        stats = agg.stats()
    assert [r["seq"] for r in records] == [0, 1]
    (torn,) = rejects
    assert torn["reason"] == "torn_line_dead_worker"
    assert torn["data"] == '{"seq":"half of a dead worker\'s li'
    assert stats["rejected"] == {"torn_line_dead_worker": 1}


@pytest.mark.timeout(180)
def test_torture_worker_kill_leaves_only_whole_lines(tmp_path):
    rows = worker_kill(tmp_path, 0.2)
    assert rows and all(r.ok for r in rows), rows
    for r in rows:
        assert r.figures["torn_lines_in_output"] == 0, r


@pytest.mark.skipif(NEEDS_TMPFS is not None, reason=f"needs a tmpfs to fill: {NEEDS_TMPFS}")
@pytest.mark.timeout(120)
def test_rejects_on_a_full_disk_are_whole_named_and_retried(tmp_path):
    bad = [b"not json %06d " % i + b"x" * 200 + b"\n" for i in range(3000)]
    with tmpfs("256k") as mnt:
        with AggregatorProc("unixsock", tmp_path / "agg", output=mnt / "out.jsonl", stats_interval=0.2) as agg:
            with Client("unixsock", agg.address) as c:
                for line in bad:
                    c.send(line)
                c.send(b'{"seq":0}\n')
                agg.wait_stats(lambda s: s["rejected"].get("invalid_json", 0) == len(bad) and s["rejects_write_errors"] > 0, "rejects counted, disk full")
                remount(mnt, "64m")
                agg.wait_stats(lambda s: s["rejects_pending_bytes"] == 0, "held rejects written once space returned")
            assert agg.stop() == 0, agg.stderr_text()
            rejects = _all_json(agg.rejects.read_bytes())
            stats = agg.stats()
        err = agg.stderr_text()
    assert f"cannot write {agg.rejects}" in err, err
    assert f"rejects writable again ({agg.rejects})" in err, err
    written = [r for r in rejects if r["reason"] == "invalid_json"]
    summaries = [r for r in rejects if r["reason"] == "suppressed"]
    # Every reject is either in the file or counted in a summary record: none vanished.
    assert len(written) + sum(s["count"] for s in summaries) == len(bad)
    assert stats["rejects_suppressed"] == sum(s["count"] for s in summaries)
    assert [r["data"][:16] for r in written] == sorted(r["data"][:16] for r in written)
