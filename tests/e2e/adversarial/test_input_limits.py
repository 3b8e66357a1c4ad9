"""Input the aggregator must bound or accept (issue 9, items 10, 11, 12 and 13).

Before the fix: an existing 40 MB output without a newline took seconds to scan and was truncated
to nothing; 1 MB of ``x\\n`` made a 78 MB rejects file; datagram transports preallocated 64
buffers of ``--max-line-bytes`` each; and a dozen small inputs gave tracebacks or wrong answers.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from benchmarks.processes import (
    AGGREGATOR,
    PRODUCER,
    AggregatorProc,
    Client,
    proc_status,
    run_cli,
    short_tempdir,
)

# -- item 10: a foreign output file ----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_large_file_without_a_newline_is_refused_and_left_intact(tmp_path):
    out = tmp_path / "foreign.jsonl"
    data = os.urandom(1024).hex().encode() * 20_000  # 40 MB, no newline
    out.write_bytes(data)
    result = run_cli(*AggregatorProc("unixsock", tmp_path / "agg", output=out).command)
    assert result.returncode == 1, result
    assert "not a line" in result.stderr and "refusing" in result.stderr, result.stderr
    assert out.stat().st_size == len(data) and out.read_bytes() == data


@pytest.mark.timeout(60)
def test_a_torn_tail_is_moved_whole_never_cut_to_a_prefix(tmp_path):
    head = b'{"seq":0}\n'
    torn = b'{"seq":1,"pad":"' + b"p" * 100_000  # longer than a reject's usual 512-byte prefix
    out = tmp_path / "out.jsonl"
    out.write_bytes(head + torn)
    with AggregatorProc("unixsock", tmp_path / "agg", output=out) as agg:
        assert agg.stop() == 0
        (reject,) = agg.reject_records()
    assert out.read_bytes() == head
    assert reject["reason"] == "torn_line_at_start"
    assert reject["data"].encode() == torn and reject["length"] == len(torn) and reject["truncated"] is False
    assert f"moved {len(torn)} bytes" in agg.stderr_text(), agg.stderr_text()


# -- item 11: rejects amplification ----------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_flood_of_garbage_cannot_grow_the_rejects_file_without_bound(tmp_path):
    flood = b"x\n" * (512 * 1024)  # 1 MB, 524,288 rejects
    with AggregatorProc("unixsock", tmp_path / "agg", "--rejects-burst", 1000, "--rejects-interval", 3600) as agg:
        with Client("unixsock", agg.address) as c:
            c.send(flood)
            c.send(b'{"after":"the flood"}\n')
        agg.wait_lines(1)
        assert agg.stop() == 0, agg.stderr_text()
        stats = agg.stats()
        rejects = agg.reject_records()
    assert stats["rejected"] == {"invalid_json": 512 * 1024}
    kept = [r for r in rejects if r["reason"] == "invalid_json"]
    (summary,) = [r for r in rejects if r["reason"] == "suppressed"]
    assert len(kept) == 1000
    assert summary["count"] == 512 * 1024 - 1000 == stats["rejects_suppressed"]
    assert summary["by_reason"] == {"invalid_json": 512 * 1024 - 1000}
    assert agg.rejects.stat().st_size < 400_000  # was 78 MB


@pytest.mark.timeout(60)
def test_the_rejects_file_stops_at_its_size_limit(tmp_path):
    with AggregatorProc("unixsock", tmp_path / "agg", "--max-rejects-bytes", 100_000) as agg:
        with Client("unixsock", agg.address) as c:
            c.send(b"not json " * 50 + b"\n" * 1 + (b"y" * 300 + b"\n") * 5000)
            c.send(b'{"after":1}\n')
        agg.wait_lines(1)
        assert agg.stop() == 0, agg.stderr_text()
        stats = agg.stats()
        rejects = agg.reject_records()
    assert agg.rejects.stat().st_size <= 100_000 + 1024  # the limit, plus the one summary that says so
    assert stats["rejected"]["invalid_json"] == 5001
    written = sum(1 for r in rejects if r["reason"] == "invalid_json")
    assert written + stats["rejects_suppressed"] == 5001
    assert rejects[-1]["reason"] == "suppressed" and rejects[-1]["why"] == "rejects_file_full"


# -- item 12: memory on datagram transports ---------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", ["unixgram", "udp"])
def test_datagram_memory_does_not_grow_with_max_line_bytes(tmp_path, transport):
    with AggregatorProc(transport, tmp_path / "agg", "--max-line-bytes", 4 * 1024 * 1024) as agg:
        with Client(transport, agg.address) as c:
            c.send(b'{"big":"' + b"b" * 60_000 + b'"}')
        agg.wait_lines(1)
        rss = proc_status(agg.pid)["VmRSS"]
        assert agg.stop() == 0
    assert rss < 80 * 1024 * 1024, f"idle RSS {rss >> 20} MiB with --max-line-bytes 4 MiB (was 289 MiB)"


@pytest.mark.timeout(30)
def test_max_line_bytes_beyond_its_limit_is_a_clear_error(tmp_path):
    result = run_cli(AGGREGATOR, "unixgram", "--address", str(tmp_path / "s"), "--max-line-bytes", 1_000_000_000, "--output", tmp_path / "o.jsonl")
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    assert "--max-line-bytes" in result.stderr


# -- item 13: the smaller ones ----------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", ["unixsock", "unixgram"])
def test_a_whitespace_only_line_is_empty_on_every_transport(tmp_path, transport):
    with AggregatorProc(transport, tmp_path / "agg") as agg:
        with Client(transport, agg.address) as c:
            for msg in (b"\r\n", b" \t \n", b'{"ok":1}\n'):
                c.send(msg)
        agg.wait_lines(1)
        assert agg.stop() == 0
        stats = agg.stats()
    assert stats["empty_lines"] == 2 and stats["rejected_total"] == 0, stats


@pytest.mark.timeout(30)
def test_a_socket_path_over_the_kernel_limit_is_explained(tmp_path):
    d = short_tempdir()
    try:
        path = d / ("s" * (120 - len(str(d)) - 1))
        assert len(str(path)) == 120
        result = run_cli(AGGREGATOR, "unixsock", "--address", path, "--output", tmp_path / "o.jsonl")
    finally:
        import shutil

        shutil.rmtree(d, ignore_errors=True)
    assert result.returncode == 2, result
    assert "None" not in result.stderr and "108" in result.stderr, result.stderr


@pytest.mark.timeout(30)
def test_an_out_of_range_rcvbuf_is_a_clear_error(tmp_path):
    result = run_cli(AGGREGATOR, "udp", "--address", "127.0.0.1:0", "--rcvbuf", 3_000_000_000, "--output", tmp_path / "o.jsonl")
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr and "--rcvbuf" in result.stderr, result.stderr


@pytest.mark.timeout(30)
def test_a_ready_file_in_a_missing_directory_fails_before_listening_and_leaves_nothing(tmp_path):
    d = short_tempdir()
    try:
        sock = d / "agg.sock"
        result = run_cli(AGGREGATOR, "unixsock", "--address", sock, "--output", tmp_path / "o.jsonl",
                       "--ready-file", tmp_path / "missing" / "ready.json", "--duration", 5)
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr and "ready" in result.stderr, result.stderr
        assert "listening on" not in result.stdout
        assert not sock.exists(), "the socket was left behind"
    finally:
        import shutil

        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.timeout(30)
def test_an_empty_address_is_refused_not_taken_as_the_default(tmp_path):
    result = run_cli(AGGREGATOR, "unixsock", "--address", "", "--output", tmp_path / "o.jsonl", "--duration", 0)
    assert result.returncode == 2, result
    assert "empty" in result.stderr, result.stderr
    assert "listening on" not in result.stdout


@pytest.mark.timeout(30)
def test_an_unwritable_stats_file_is_an_error_at_start(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    result = run_cli(AGGREGATOR, "udp", "--address", "127.0.0.1:0", "--output", tmp_path / "o.jsonl",
                   "--stats-file", tmp_path / "missing-dir" / "stats.json", "--duration", 0)
    assert result.returncode == 2, result
    assert "stats file" in result.stderr and "listening on" not in result.stdout, result


@pytest.mark.timeout(60)
def test_a_valid_300_deep_record_carrying_received_ns_is_kept(tmp_path):
    deep = b'{"received_ns":1,"transport":"x","n":' + b"[" * 300 + b"]" * 300 + b"}"
    with AggregatorProc("unixsock", tmp_path / "agg") as agg:
        with Client("unixsock", agg.address) as c:
            c.send(deep + b"\n")
        agg.wait_lines(1)
        assert agg.stop() == 0
        (line,) = agg.output.read_bytes().splitlines()
        stats = agg.stats()
    assert stats["rejected_total"] == 0, stats
    assert line.count(b"[") == 300 and line.count(b'"received_ns"') == 1 and line.count(b'"transport"') == 1
    assert b'"transport":"unixsock"' in line


@pytest.mark.timeout(60)
def test_a_unixgram_producer_stops_when_the_aggregator_goes_and_writes_its_summary(tmp_path):
    with AggregatorProc("unixgram", tmp_path / "agg") as agg:
        summary = tmp_path / "p.json"
        p = subprocess.Popen([PRODUCER, "unixgram", "--address", agg.address, "--id", "p", "--count", "100000000",
                              "--rate", "2000", "--summary-json", str(summary), "--quiet"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            agg.wait_lines(100)
            assert agg.stop() == 0
            rc = p.wait(30)  # before the fix: went on through ENOTCONN errors until killed
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert rc == 1
    s = json.loads(summary.read_text())
    assert s["sent"] >= 100
    assert sum(s["errors"].values()) == 1, s  # one error says the aggregator is gone; then it stops
