"""Connections are never accepted and then dropped (issue 9, items 2 and 9).

Before the fix the accept loop took the whole backlog, counted connections whose client had
already closed as open until their EOF was read, and closed the excess after the kernel had
accepted their data: churning clients lost most of their lines, and an fd limit below
``--max-connections`` left connections neither served nor refused while the loop spun on EMFILE.
"""

from __future__ import annotations

import socket

import pytest

from aggregator.transports import transport_names
from benchmarks.faults.scenarios import connection_churn
from benchmarks.processes import AggregatorProc, jsonl


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", transport_names(connected=True))
def test_churning_clients_lose_nothing_at_a_tiny_connection_limit(tmp_path, transport):
    (row,) = connection_churn(tmp_path, 0.05, transports=(transport,), max_connections=2)
    assert row.lost == 0 and row.written == row.sent, row
    assert row.ok, row


@pytest.mark.timeout(120)
def test_fd_limit_below_max_connections_serves_everyone_without_spinning(tmp_path):
    total = 300
    agg = AggregatorProc("unixsock", tmp_path / "agg", "--max-connections", 1024, stats_interval=0.2)
    agg.argv = ["prlimit", "--nofile=200:200", "--", *agg.argv]
    with agg:
        socks = []
        try:
            for i in range(total):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(30)
                s.connect(agg.address)  # waits in the listen backlog once the aggregator is full
                s.sendall(b'{"producer":"c","seq":%d}\n' % i)
                socks.append(s)
            st = agg.wait_stats(lambda st: st["connections_open_peak"] > 0 and st["accept_paused"] >= 1, "accepting paused")
            assert st["effective_max_connections"] < 200, st
            assert st["accept_errors"] == 0, st  # the limit was derived: accept() never hit EMFILE
            lines_while_held = agg.wait_stats(lambda st: st["messages_written"] >= st["effective_max_connections"], "the first ones served")
            assert lines_while_held["connections_open_peak"] <= lines_while_held["effective_max_connections"]
        finally:
            for s in socks:
                s.close()
        agg.wait_lines(total, 60)
        assert agg.stop() == 0, agg.stderr_text()
        st = agg.stats()
    assert sorted(r["seq"] for r in jsonl(agg.output)) == list(range(total))
    assert st["connections_opened"] == st["connections_closed"] == total
    assert st["accept_errors"] == 0
    assert "max connections" in agg.stderr_text() and "fd limit" in agg.stderr_text(), agg.stderr_text()
