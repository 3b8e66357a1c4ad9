"""The query pieces in process: scanners against an oracle, argv safety, record filters, the query's
validation, the block printer's contiguity and bounded memory, time parsing, the test-data generator.

The scanners run for real (rg, grep when installed; Python always) on generated files; the agent and
querier over NATS are in tests/e2e/test_query.py.
"""

from __future__ import annotations

import io
import subprocess

import orjson
import pytest

from natslab.querydata import TOKENS, TokenRates, generate
from querier.cli import exit_status, natural_key, parse_time
from querier.gather import HostAnswer
from querier.output import BlockPrinter
from shipper.query import protocol as p
from shipper.query.scan import SCANNERS, RecordFilter, files_for, pick_scanner, scan_env


def _available() -> list[str]:
    out = []
    for name in SCANNERS:
        try:
            pick_scanner(name)
            out.append(name)
        except ValueError:
            pass
    return out


AVAILABLE = _available()


@pytest.fixture(scope="module")
def host_file(tmp_path_factory):
    """Two hosts' worth of generated records (host 2: every token can occur), with a few odd lines."""
    path = tmp_path_factory.mktemp("scan") / "aggregated_logs.jsonl"
    per_producer, data = generate("h2", 2, 300_000, TokenRates(unique=0.01), seed=3, producers=3, direct=True, start_ns=10**18)
    lines = [line for lines in per_producer for line in lines]
    lines += [b'{"msg":"Heavy EVERYWHERE in capitals"}\n', b'{"msg":"--help -e $(touch x) `id`; ls"}\n']
    path.write_bytes(b"".join(lines))
    return path, data


def _run(scanner_name: str, q: p.Query, path, count: bool) -> tuple[int, bytes]:
    s = pick_scanner(scanner_name)
    argv = s.argv(q, path, count)
    r = subprocess.run(argv, capture_output=True, env=scan_env(s), timeout=60)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, r.stdout


def _oracle(path, needle: bytes, ignore_case=False, invert=False) -> list[bytes]:
    lines = path.read_bytes().split(b"\n")[:-1]
    if ignore_case:
        return [line for line in lines if (needle.lower() in line.lower()) != invert]
    return [line for line in lines if (needle in line) != invert]


@pytest.mark.parametrize("scanner", AVAILABLE)
@pytest.mark.parametrize("pattern,fixed,ignore_case,invert", [
    ("heavy", False, False, False), ("everywhere", True, False, False), ("HEAVY", False, True, False),
    ("unique", False, False, True), ("$(touch x)", True, False, False), ("--help", True, False, False),
    ("`id`; ls", True, False, False),
])  # fmt: skip
def test_every_scanner_matches_the_same_lines_as_an_oracle(host_file, scanner, pattern, fixed, ignore_case, invert):
    path, _ = host_file
    q = p.Query(id="t", pattern=pattern, fixed=fixed, ignore_case=ignore_case, invert=invert)
    expected = _oracle(path, pattern.encode(), ignore_case, invert)
    rc, out = _run(scanner, q, path, count=False)
    assert out.split(b"\n")[:-1] == expected
    rc, out = _run(scanner, q, path, count=True)
    assert int(out.split()[0] if out.strip() else 0) == len(expected)
    assert rc == (0 if expected else 1)


@pytest.mark.parametrize("scanner", AVAILABLE)
def test_generated_token_counts_are_what_the_generator_recorded(host_file, scanner):
    path, data = host_file
    for token in TOKENS:
        _, out = _run(scanner, p.Query(id="t", pattern=token), path, count=True)
        # + the capitalised line is not matched case-sensitively, so exactly the record.
        assert int(out.split()[0] if out.strip() else 0) == data.tokens[token], token


def test_the_pattern_is_one_argument_after_double_dash_and_no_shell_is_involved():
    for name in AVAILABLE:
        s = pick_scanner(name)
        argv = s.argv(p.Query(id="t", pattern="$(reboot); `halt` | rm -rf /"), "/x/f", count=False)
        assert argv[-3:] == ["--", "$(reboot); `halt` | rm -rf /", "/x/f"]
        assert s.executable in argv and not {"sh", "bash", "-c"} & {a.rsplit("/", 1)[-1] for a in argv}


def test_a_regular_expression_is_one_in_every_scanner(host_file):
    path, _ = host_file
    q = p.Query(id="t", pattern=r'"level":"(error|warn)".*heavy')
    counts = {name: int(_run(name, q, path, count=True)[1].split()[0]) for name in AVAILABLE}
    assert len(set(counts.values())) == 1 and next(iter(counts.values())) > 0, counts


def test_record_filter_fields_and_time_range_are_exact():
    lines = [orjson.dumps({"level": lv, "seq": i, "ok": i % 2 == 0, "received_ns": 1000 + i, "n": None}) for i, lv in
             enumerate(["info", "error", "error", "warn"])]  # fmt: skip
    f = RecordFilter(p.Query(id="t", pattern="x", fields={"level": "error"}, since_ns=1002, until_ns=1004))
    assert [f(line) for line in lines] == [False, False, True, False]
    assert [RecordFilter(p.Query(id="t", pattern="x", fields={"seq": "3"}))(line) for line in lines] == [False, False, False, True]
    assert [RecordFilter(p.Query(id="t", pattern="x", fields={"ok": "true"}))(line) for line in lines] == [True, False, True, False]
    assert RecordFilter(p.Query(id="t", pattern="x", fields={"n": "null"}))(lines[0])
    assert not RecordFilter(p.Query(id="t", pattern="x", fields={"missing": ""}))(lines[0])
    assert not RecordFilter(p.Query(id="t", pattern="x", since_ns=0))(b"not json")
    assert not RecordFilter(p.Query(id="t", pattern="x", since_ns=0))(b'{"received_ns": "1001"}')  # not a number


@pytest.mark.parametrize("bad", [
    {"pattern": ""}, {"pattern": "a\0b"}, {"id": "has space"}, {"id": "a.b"}, {"max_results": 0},
    {"timeout_s": 0}, {"chunk_bytes": 10}, {"window": 0}, {"fields": {"": "x"}}, {"v": 99},
])  # fmt: skip
def test_a_query_that_is_not_one_is_refused_with_a_reason(bad):
    q = {"id": "abc", "pattern": "x", **bad}
    with pytest.raises(ValueError):
        p.Query.decode(orjson.dumps(q))


def test_a_query_that_is_not_json_is_refused():
    for data in (b"", b"rm -rf /", b"[1]", b'{"pattern": 1, "id": "a"}'):
        with pytest.raises(ValueError):
            p.Query.decode(data)


def _answer(host: str, status=p.OK, matches=0, files=("/f",)) -> HostAnswer:
    a = HostAnswer(host, files=[p.FileSummary(f, 1) for f in files])
    a.status, a.done_s = status, 0.01
    a.summary = p.Summary(host=host, status=status, matches=matches, files=a.files)
    return a


def _interleaved_feed(printer: BlockPrinter, hosts: list[str], chunks: int, finish_order: list[str]) -> dict[str, list[bytes]]:
    """Data from every host in round-robin (the worst case for interleaving); hosts finish in
    ``finish_order``, each right after its last chunk."""
    sent = {h: [] for h in hosts}
    answers = {h: HostAnswer(h, files=[p.FileSummary(f"/{h}/a", 1), p.FileSummary(f"/{h}/b", 1)]) for h in hosts}
    for i in range(chunks):
        for h in hosts:
            lines = [b'{"host":"%s","i":%d,"j":%d}' % (h.encode(), i, j) for j in range(3)]
            sent[h] += lines
            printer.data(answers[h], 0 if i < chunks // 2 else 1, b"\n".join(lines) + b"\n")
    for h in finish_order:
        a = answers[h]
        a.status, a.done_s = p.OK, 0.1
        a.summary = p.Summary(host=h, status=p.OK, matches=len(sent[h]), files=a.files)
        printer.done(a)
    printer.close()
    return sent


@pytest.mark.parametrize("order", ["host", "completion"])
def test_blocks_never_interleave_and_spill_to_disk_beyond_the_spool(order):
    out = io.BytesIO()
    hosts = ["h1", "h2", "h3", "h4"]
    finish = ["h3", "h1", "h4", "h2"]
    printer = BlockPrinter(out, hosts, order=order, spool_bytes=256)  # tiny: every spool goes to disk
    sent = _interleaved_feed(printer, hosts, 40, finish)
    blocks: list[tuple[str, list[bytes]]] = []
    for line in out.getvalue().split(b"\n")[:-1]:
        if line.startswith(b"== "):
            host = line[3:].split()[0].rstrip(b":").decode()
            if not blocks or blocks[-1][0] != host:
                blocks.append((host, []))
            continue
        blocks[-1][1].append(line)
    assert [h for h, _ in blocks] == (hosts if order == "host" else ["h1", "h3", "h4", "h2"])  # h1 was live when h3 finished
    for host, lines in blocks:
        assert lines == sent[host]
    text = out.getvalue().decode()
    assert text.count("== h2 /h2/a") == 1 and text.count("== h2 /h2/b") == 1 and text.count("== h2: 120 matches") == 1


def test_json_output_is_one_valid_object_per_host_with_its_records():
    out = io.BytesIO()
    hosts = ["h1", "h2"]
    sent = _interleaved_feed(BlockPrinter(out, hosts, order="host", json=True, spool_bytes=100), hosts, 6, ["h2", "h1"])
    objects = [orjson.loads(line) for line in out.getvalue().split(b"\n")[:-1]]
    assert [o["host"] for o in objects] == hosts
    for o in objects:
        assert o["records"] == [orjson.loads(line) for line in sent[o["host"]]]
        assert {"status", "matches", "bytes_scanned", "elapsed_s"} <= set(o)


def test_json_count_output_has_no_records_and_a_torn_line_stays_valid_json():
    out = io.BytesIO()
    printer = BlockPrinter(out, ["h1"], json=True, count_only=True)
    printer.done(_answer("h1", matches=7))
    printer.close()
    (obj,) = [orjson.loads(line) for line in out.getvalue().split(b"\n")[:-1]]
    assert obj["matches"] == 7 and "records" not in obj
    out = io.BytesIO()
    printer = BlockPrinter(out, ["h1"], json=True)
    a = HostAnswer("h1", files=[p.FileSummary("/f", 1)])
    printer.data(a, 0, b'{"a":1}\n{"b":\n')
    a.status = p.OK
    printer.done(a)
    printer.close()
    assert orjson.loads(out.getvalue())["records"] == [{"a": 1}, '{"b":']


def test_exit_status_tells_slow_from_dead_from_errors():
    assert exit_status([_answer("h1", matches=1), _answer("h2")]) == 0
    assert exit_status([_answer("h1"), _answer("h2")]) == 1
    assert exit_status([_answer("h1", matches=1), _answer("h2", p.NO_RESPONDERS_STATUS)]) == 3
    assert exit_status([_answer("h1", p.TIMEOUT), _answer("h2", p.NO_RESPONDERS_STATUS)]) == 4
    assert exit_status([_answer("h1", p.DEADLINE)]) == 4
    assert exit_status([_answer("h1", matches=1), _answer("h2", p.ERROR)]) == 5
    assert exit_status([_answer("h1", p.BUSY)]) == 5


def test_times_and_host_order():
    now = 1_700_000_000 * 10**9
    assert parse_time("123", now) == 123
    assert parse_time("@1700000000.5", now) == 1_700_000_000_500_000_000
    assert parse_time("-10m", now) == now - 600 * 10**9
    assert parse_time("2023-11-14T22:13:20Z", now) == now
    with pytest.raises(ValueError):
        parse_time("yesterday", now)
    assert sorted(["h10", "h2", "h1"], key=natural_key) == ["h1", "h2", "h10"]


def test_rotated_files_come_oldest_first_and_only_when_asked(tmp_path):
    current = tmp_path / "aggregated_logs.jsonl"
    for name in ["aggregated_logs.jsonl", "aggregated_logs.jsonl.1", "aggregated_logs.jsonl.2", "aggregated_logs.jsonl.10",
                 "aggregated_logs.jsonl.3.gz", "aggregated_logs.jsonl.shipper-checkpoint.json", "aggregated_logs.rejects.jsonl"]:  # fmt: skip
        (tmp_path / name).write_text("x\n")
    assert files_for(current, rotated=False) == [current]
    assert [f.name for f in files_for(current, rotated=True)] == [
        "aggregated_logs.jsonl.10", "aggregated_logs.jsonl.2", "aggregated_logs.jsonl.1", "aggregated_logs.jsonl"]


def test_the_generator_is_exact_and_deterministic():
    per_producer, data = generate("h1", 1, 200_000, TokenRates(unique=0.01), seed=5, producers=2, direct=False, start_ns=0)
    lines = [line for lines in per_producer for line in lines]
    for token in TOKENS:
        assert sum(token.encode() in line.lower() for line in lines) == data.tokens[token], token
    assert data.tokens["unique"] > 0 and data.tokens["even"] == 0  # host 1 is odd
    assert all(orjson.loads(line)["producer"].startswith("h1-g") for line in lines)
    again, _ = generate("h1", 1, 200_000, TokenRates(unique=0.01), seed=5, producers=2, direct=False, start_ns=0)
    assert again == per_producer
    assert TokenRates.parse("heavy=0.4/0.1,unique=0.5").for_host(3) == {"everywhere": 0.5, "unique": 0.0, "even": 0.0, "heavy": 0.1}
    with pytest.raises(ValueError):
        TokenRates.parse("rare=0.1")
