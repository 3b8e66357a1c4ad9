"""Files and addresses another user can plant (issue 9, items 5 and 6).

Before the fix: stats and ready files went through ``NAME.<pid>.tmp`` in the target directory (a
symlink planted there had its target overwritten); a FIFO at the output path hung the start-up or
received every line; and a live socket or FIFO was judged by what the *new* transport would be,
so ``aggregator fifo`` unlinked a live unixsock aggregator's socket, and the reverse.
"""

from __future__ import annotations

import os
import stat
import time

import pytest

from aggregator.transports import transport_names
from benchmarks.faults.machine import nobody_ids
from benchmarks.processes import (
    AggregatorProc,
    Client,
    run_cli,
    short_tempdir,
    wait_until,
)

IS_ROOT = os.geteuid() == 0



def _plant(target, pids, precious) -> list:
    links = [target.with_name(f".{target.name}.{pid}.tmp") for pid in pids]
    for link in links:
        link.symlink_to(precious)
    return links


@pytest.mark.timeout(60)
def test_a_symlink_at_the_old_predictable_stats_temp_name_is_not_followed(tmp_path):
    precious = tmp_path / "precious"
    precious.write_bytes(b"do not touch\n")
    with AggregatorProc("unixsock", tmp_path / "agg", stats_interval=0.3) as agg:
        planted = _plant(agg.stats_file, [agg.pid], precious)
        after = time.time_ns()
        agg.wait_stats(lambda s: s["written_at_unix_ns"] > after, "a periodic stats write after the plant")
        assert agg.stop() == 0, agg.stderr_text()
    assert precious.read_bytes() == b"do not touch\n"
    assert planted[0].is_symlink()


@pytest.mark.timeout(60)
def test_a_symlink_at_the_old_predictable_ready_temp_name_is_not_followed(tmp_path):
    precious = tmp_path / "precious"
    precious.write_bytes(b"do not touch\n")
    agg = AggregatorProc("unixsock", tmp_path / "agg")
    agg.workdir.mkdir(parents=True, exist_ok=True)
    last = int(open("/proc/sys/kernel/ns_last_pid").read())  # the aggregator's pid comes soon after
    planted = _plant(agg.ready_file, range(last + 1, last + 300), precious)
    with agg:
        assert agg.pid in range(last + 1, last + 300), "the machine is busy: pids moved on too fast"
        assert agg.stop() == 0, agg.stderr_text()
    assert precious.read_bytes() == b"do not touch\n"
    assert all(link.is_symlink() for link in planted)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("reader", [False, True], ids=["no-reader", "with-reader"])
def test_fifo_at_the_output_path_is_refused_at_once(tmp_path, reader):
    out = tmp_path / "out.jsonl"
    os.mkfifo(out)
    fd = os.open(out, os.O_RDONLY | os.O_NONBLOCK) if reader else None
    try:
        agg = AggregatorProc("unixsock", tmp_path / "agg", output=out)
        result = run_cli(*agg.command, timeout=20)  # before the fix: hung (no reader) or served the reader
        assert result.returncode == 1, result
        assert "not a regular file" in result.stderr, result.stderr
        if fd is not None:
            assert os.read(fd, 4096) == b""  # no writer ever opened it: nothing reached its reader
    finally:
        if fd is not None:
            os.close(fd)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("which", ["output", "stats"])
@pytest.mark.skipif(not IS_ROOT or nobody_ids() is None, reason="needs root (to create a file owned by another user) and a 'nobody' user")
def test_a_file_owned_by_another_user_is_refused(tmp_path, which):
    uid, gid = nobody_ids()
    agg = AggregatorProc("unixsock", tmp_path / "agg")
    path = agg.output if which == "output" else agg.stats_file
    path.write_bytes(b"theirs\n")
    os.chown(path, uid, gid)
    result = run_cli(*agg.command)
    assert result.returncode in (1, 2), result
    assert "owned by uid" in result.stderr, result.stderr
    assert path.read_bytes() == b"theirs\n"


@pytest.mark.timeout(30)
def test_a_hard_linked_output_is_refused(tmp_path):
    precious = tmp_path / "precious"
    precious.write_bytes(b"do not touch, no newline")
    agg = AggregatorProc("unixsock", tmp_path / "agg")
    os.link(precious, agg.output)
    result = run_cli(*agg.command)
    assert result.returncode == 1, result
    assert "hard links" in result.stderr, result.stderr
    assert precious.read_bytes() == b"do not touch, no newline"


@pytest.mark.timeout(60)
def test_a_fifo_planted_before_a_reopen_is_refused_and_writing_goes_on(tmp_path):
    with AggregatorProc("unixsock", tmp_path / "agg", "--flush-interval", 0) as agg:
        with Client("unixsock", agg.address) as c:
            c.send(b'{"seq":0}\n')
            agg.wait_lines(1)
            os.rename(agg.output, agg.output.with_name("out.jsonl.1"))
            os.mkfifo(agg.output)
            agg.send(__import__("signal").SIGUSR1)
            wait_until(lambda: "cannot reopen" in agg.stderr_text(), "the refused reopen reported")
            c.send(b'{"seq":1}\n')
            wait_until(lambda: agg.output.with_name("out.jsonl.1").read_bytes().count(b"\n") == 2, "seq 1 in the old file")
        assert agg.stop() == 0, agg.stderr_text()
    assert stat.S_ISFIFO(os.lstat(agg.output).st_mode)
    assert "not a regular file" in agg.stderr_text()


PATH_TRANSPORTS = transport_names(address_kind="path")
LIVE_PAIRS = [(a, b) for a in PATH_TRANSPORTS for b in PATH_TRANSPORTS if a != b]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("live", "newcomer"), LIVE_PAIRS)
def test_a_live_address_is_never_taken_over_by_another_transport(tmp_path, live, newcomer):
    sockdir = short_tempdir()
    try:
        path = sockdir / "shared-path"
        with AggregatorProc(live, tmp_path / "live", address=str(path)) as first:
            before = os.lstat(path)
            second = AggregatorProc(newcomer, tmp_path / "second", address=str(path))
            result = run_cli(*second.command)
            assert result.returncode != 0, result
            assert "already listening" in result.stderr, result.stderr
            after = os.lstat(path)
            assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode), "the live address was replaced"
            with Client(live, first.address) as c:
                c.send(b'{"still":"served"}\n')
                first.wait_lines(1)
            assert first.stop() == 0
    finally:
        import shutil

        shutil.rmtree(sockdir, ignore_errors=True)
