"""Distributed query (issue 15): the querier against the query agents of four hosts.

Four hosts in network namespaces (loopback processes where the machine cannot make namespaces: the
first test says why), each with a real aggregator filled by real producers with the generated
token records (``natslab/querydata.py``), a shipper whose query agent answers, and one NATS node.
Counts are checked against the generator's record and against the files themselves; timings are
never asserted (a dead host must be reported long before the querier's deadline, which is what
"does not hang" means here).
"""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from benchmarks.processes import Client, querier_argv, querier_proc, run_cli, wait_until
from natslab.hosts import namespaces_unavailable
from natslab.pipeline import Pipeline
from natslab.querydata import TOKENS, TokenRates, fill
from benchmarks.processes import nats_unavailable

pytestmark = pytest.mark.skipif(nats_unavailable() is not None, reason=str(nats_unavailable()))

STATS = ("--stats-interval", "0.1")
MB_PER_HOST = 1.0  # the cancel test needs more output than the pipes and buffers hold (~450 KB)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    mode = "netns" if namespaces_unavailable() is None else "loopback"
    p = Pipeline(tmp_path_factory.mktemp("query"), hosts=4, nats_nodes=1, mode=mode, shipper_args=STATS)
    try:
        p.start()
        filled = fill(p, MB_PER_HOST, TokenRates(unique=0.002), seed=15)
        yield p, filled
    finally:
        p.close()


def query(p: Pipeline, *args, timeout: float = 60):
    return run_cli(*querier_argv(p.nats.servers, *args, netns=p.hosts.lab_ns), timeout=timeout)


def query_json(p: Pipeline, *args, timeout: float = 60) -> tuple[int, dict]:
    r = query(p, "--json", *args, timeout=timeout)
    objects = [json.loads(line) for line in r.stdout.splitlines()]
    return r.returncode, {o["host"]: o for o in objects}


def file_lines(p: Pipeline, host) -> list[bytes]:
    return p.output(host).read_bytes().split(b"\n")[:-1]


def records(p: Pipeline, host) -> list[dict]:
    return [json.loads(line) for line in file_lines(p, host)]


def scanners_of(p: Pipeline, host) -> list[psutil.Process]:
    return psutil.Process(p.shipper(host).pid).children()


def test_the_hosts_are_network_namespaces_where_the_machine_allows(lab):
    p, _ = lab
    if p.hosts.mode != "netns":
        pytest.skip(f"hosts run as processes on loopback: {p.hosts.fallback_reason}")
    assert len({h.netns for h in p.hosts.hosts}) == 4 and p.hosts.lab_ns


def test_each_tokens_count_on_each_of_four_hosts_is_exactly_the_generators(lab):
    p, filled = lab
    for token in TOKENS:
        code, answers = query_json(p, "--count", token)
        assert set(answers) == {"h1", "h2", "h3", "h4"}
        for h in p.hosts.hosts:
            a = answers[h.name]
            assert a["status"] == "ok", a
            assert a["matches"] == filled[h.name].tokens[token], (token, h.name, a)
            assert a["matches"] == sum(token.encode() in line for line in file_lines(p, h))
            assert a["bytes_scanned"] == p.output(h).stat().st_size and a["elapsed_s"] > 0
            assert "records" not in a
        assert code == (0 if any(filled[h].tokens[token] for h in filled) else 1)
    assert filled["h1"].tokens["unique"] > 0 and all(filled[h].tokens["unique"] == 0 for h in ("h2", "h3", "h4"))
    assert filled["h2"].tokens["even"] > 0 and filled["h3"].tokens["even"] == 0


def test_the_text_summary_names_every_host_and_the_exit_status_says_whether_anything_matched(lab):
    p, filled = lab
    r = query(p, "--count", "unique")
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:5]}
    assert sorted(rows) == ["h1", "h2", "h3", "h4"]
    assert rows["h1"][1:3] == ["ok", str(filled["h1"].tokens["unique"])] and rows["h2"][1:3] == ["ok", "0"]
    assert r.returncode == 0
    nothing = query(p, "--count", "-F", "no such text anywhere")
    assert nothing.returncode == 1, nothing.stdout + nothing.stderr


@pytest.mark.parametrize("order", ["host", "completion"])
def test_output_blocks_never_interleave_under_concurrent_answers(lab, order):
    """Small chunks and a small window make the four answers arrive interleaved on the wire;
    each host's lines must still come out as one block, exactly its matching lines, in order."""
    p, _ = lab
    r = query(p, "everywhere", "--chunk-kb", "2", "--window", "2", "--order", order)
    assert r.returncode == 0, r.stderr
    blocks: list[tuple[str, list[bytes]]] = []
    out = r.stdout.encode()
    body = out[: out.rindex(b"\nhost ") + 1]  # the blocks, then the summary table
    for line in body.split(b"\n")[:-1]:
        if line.startswith(b"== "):
            host = line[3:].split()[0].rstrip(b":").decode()
            if not blocks or blocks[-1][0] != host:
                blocks.append((host, []))
        else:
            blocks[-1][1].append(line)
    names = [h for h, _ in blocks]
    assert sorted(names) == ["h1", "h2", "h3", "h4"]  # each host exactly once: contiguous
    if order == "host":
        assert names == ["h1", "h2", "h3", "h4"]
    for host, lines in blocks:
        assert lines == [line for line in file_lines(p, p.host(host)) if b"everywhere" in line]
    # The answers really were concurrent: their data arrived in overlapping intervals.
    _, answers = query_json(p, "everywhere", "--chunk-kb", "2", "--window", "2", "--order", order)
    spans = sorted((a["first_data_s"], a["last_data_s"]) for a in answers.values())
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), spans


def test_json_output_holds_each_hosts_records(lab):
    p, _ = lab
    code, answers = query_json(p, "-i", "UNIQUE")
    assert code == 0
    for h in p.hosts.hosts:
        assert answers[h.name]["records"] == [r for r in records(p, h) if "unique" in r["msg"]]
        assert answers[h.name]["matches"] == len(answers[h.name]["records"])


def test_field_filters_and_time_ranges_are_exact(lab):
    p, _ = lab
    everything = {h.name: records(p, h) for h in p.hosts.hosts}
    times = sorted(r["received_ns"] for rs in everything.values() for r in rs)
    since, until = times[len(times) // 4], times[3 * len(times) // 4]
    cases = [
        (["--field", "level=error"], lambda r: r["level"] == "error"),
        (["--field", "producer=h2-g1", "--field", "level=info"], lambda r: r["producer"] == "h2-g1" and r["level"] == "info"),
        (["--since", str(since), "--until", str(until)], lambda r: since <= r["received_ns"] < until),
        (["--since", str(since), "--field", "level=warn"], lambda r: since <= r["received_ns"] and r["level"] == "warn"),
    ]
    for options, keep in cases:
        expected = {h: [r for r in rs if "heavy" in r["msg"] and keep(r)] for h, rs in everything.items()}
        _, counted = query_json(p, "--count", "heavy", *options)
        _, listed = query_json(p, "heavy", *options)
        for h in everything:
            assert counted[h]["matches"] == len(expected[h]), (options, h)
            assert listed[h]["records"] == expected[h], (options, h)
        assert sum(map(len, expected.values())) > 0, options  # the case tests something


def test_invert_and_max_count(lab):
    p, filled = lab
    _, inverted = query_json(p, "--count", "-v", "everywhere")
    _, limited = query_json(p, "-m", "5", "heavy")
    for h in p.hosts.hosts:
        assert inverted[h.name]["matches"] == len(file_lines(p, h)) - filled[h.name].tokens["everywhere"]
        assert limited[h.name]["records"] == [r for r in records(p, h) if "heavy" in r["msg"]][:5]


def test_shell_metacharacters_are_searched_literally_and_run_nothing(lab, tmp_path):
    p, _ = lab
    h1 = p.host("h1")
    markers = [tmp_path / f"ran-{i}" for i in range(3)]
    texts = [f"$(touch {markers[0]})", f"`touch {markers[1]}`", f"; touch {markers[2]}"]
    line = json.dumps({"producer": "meta", "seq": 0, "msg": " and ".join(texts)})
    before = len(file_lines(p, h1))
    with Client("unixsock", p.addresses["h1"]) as c:
        c.send(line.encode() + b"\n")
    wait_until(lambda: len(file_lines(p, h1)) > before, "the record in h1's file")
    for text in texts:
        fixed = query(p, "-F", text)
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert json.loads(fixed.stdout.split("\n")[1])["producer"] == "meta"  # the block's one line
        as_regex = query(p, "--count", text)
        assert as_regex.returncode in (0, 1), as_regex.stdout + as_regex.stderr
    assert not any(m.exists() for m in markers)


def test_a_dead_host_is_named_at_once_and_a_stopped_one_is_reported_slow(lab):
    p, filled = lab
    h3, h2 = p.host("h3"), p.host("h2")
    p.shipper(h3).stop(signal.SIGKILL)
    try:
        t0 = time.monotonic()
        code, answers = query_json(p, "--count", "heavy", "--timeout", "60", timeout=30)  # a hang would exceed 30 s
        assert code == 3
        assert answers["h3"]["status"] == "no_responders" and "did not stop cleanly" in answers["h3"]["note"]
        assert answers["h3"]["elapsed_s"] < 60  # named at once (the server's 503), not at the deadline
        assert all(answers[h]["status"] == "ok" and answers[h]["matches"] == filled[h].tokens["heavy"] for h in ("h1", "h2", "h4"))
        text = query(p, "--count", "heavy", timeout=30)
        assert text.returncode == 3 and "h3: no responders" in text.stdout
        os.kill(p.shipper(h2).pid, signal.SIGSTOP)  # subscribed but answering nothing: slow
        try:
            code, answers = query_json(p, "--count", "heavy", "--timeout", "2", timeout=30)
        finally:
            os.kill(p.shipper(h2).pid, signal.SIGCONT)
        assert code == 4
        assert answers["h2"]["status"] == "timeout" and answers["h3"]["status"] == "no_responders"
        assert answers["h1"]["status"] == "ok"
        assert time.monotonic() - t0 < 60
    finally:
        p.start_shipper(h3)
    code, answers = query_json(p, "--count", "heavy")
    assert code == 0 and answers["h3"]["matches"] == filled["h3"].tokens["heavy"]


def test_the_querier_going_away_cancels_every_hosts_scan(lab, tmp_path):
    p, _ = lab
    proc = querier_proc("querier-gone", tmp_path, p.nats.servers, "-v", "no such text", "--chunk-kb", "1", "--window", "1",
                        "--timeout", "300", netns=p.hosts.lab_ns)  # fmt: skip
    p.group.start(proc)
    try:
        wait_until(lambda: proc.stdout_path.exists() and proc.stdout_path.stat().st_size > 10_000, "the querier mid-answer", 60)
        proc.send(signal.SIGSTOP)  # the agents fill their window and wait, their scanners blocked
        busy = wait_until(lambda: [h for h in p.hosts.hosts if scanners_of(p, h)], "scanners running", 30)
        before = {h.name: p.shipper_stats(h)["query"]["cancelled"] for h in busy}
        proc.kill()  # SIGKILL: its connection closes; the agents' next message draws a 503
    finally:
        proc.close()
    for h in busy:
        wait_until(lambda: not scanners_of(p, h), f"{h.name}'s scanner stopped", 20)  # long before --timeout 300
        wait_until(lambda: p.shipper_stats(h)["query"]["cancelled"] > before[h.name], f"{h.name} counted a cancel", 20)
        assert p.shipper_stats(h)["query"]["active"] == 0


def test_a_pathological_pattern_is_stopped_at_the_deadline_and_the_host_answers_after(lab):
    """The Python scanner (the fallback) backtracks exponentially on (a+)+$: the agent kills it at
    the deadline. This host also runs --no-ship: an agent without shipping answers the same."""
    p, filled = lab
    h4 = p.host("h4")
    with Client("unixsock", p.addresses["h4"]) as c:
        c.send(json.dumps({"producer": "evil", "seq": 0, "msg": "a" * 48 + "!"}).encode() + b"\n")
    wait_until(lambda: b'"evil"' in p.output(h4).read_bytes(), "the record in h4's file")
    p.shipper(h4).stop()
    p.start_shipper(h4, "--no-ship", "--query-scanner", "python")
    try:
        code, answers = query_json(p, "--hosts", "h4", "--timeout", "3", "(a+)+$", timeout=60)
        assert code == 4 and answers["h4"]["status"] == "deadline" and answers["h4"]["tool"] == "python"
        wait_until(lambda: not scanners_of(p, h4), "the python scanner killed", 10)
        code, answers = query_json(p, "--hosts", "h4", "--count", "heavy")
        assert code == 0 and answers["h4"]["matches"] == filled["h4"].tokens["heavy"] and answers["h4"]["tool"] == "python"
    finally:
        p.shipper(h4).stop()
        p.start_shipper(h4)


def test_rotated_files_are_searched_when_asked(lab):
    """Last: it rotates h1's file."""
    p, filled = lab
    h1 = p.host("h1")
    rotated = p.rotate(h1)
    wait_until(lambda: p.output(h1).exists(), "the aggregator reopened its output")
    with Client("unixsock", p.addresses["h1"]) as c:
        for i in range(3):
            c.send(json.dumps({"producer": "after", "seq": i, "msg": "heavy after the rotation"}).encode() + b"\n")
    wait_until(lambda: len(file_lines(p, h1)) == 3, "3 records in the new file")
    _, current = query_json(p, "--hosts", "h1", "--count", "heavy")
    _, both = query_json(p, "--hosts", "h1", "--count", "heavy", "--rotated")
    assert current["h1"]["matches"] == 3
    assert both["h1"]["matches"] == filled["h1"].tokens["heavy"] + 3
    assert [f["path"] for f in both["h1"]["files"]] == [str(rotated), str(p.output(h1))]


@pytest.mark.parametrize("argv", [["querier"], ["loglab", "hosts", "fill"], ["loglab", "hosts", "query"]])
def test_the_query_commands_explain_themselves(argv):
    from benchmarks.processes import console_script

    r = run_cli(console_script(argv[0]), *argv[1:], "--help")
    assert r.returncode == 0 and len(r.stdout) > 300, r.stdout + r.stderr
