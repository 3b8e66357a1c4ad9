"""aggregator.syslog and aggregator.formats: syslog headers read into record fields, JSON messages
merged, the four input formats; properties: the reader never raises, never loses a message, and
reads back what the producer renders."""

from __future__ import annotations

import calendar
import json
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator import hotpath
from aggregator.formats import Decoder
from aggregator.hotpath import IMPLEMENTATIONS
from aggregator.framing import INVALID_JSON, INVALID_UTF8, NOT_AN_OBJECT, REJECT_REASONS, Reject, lenprefix_frame
from aggregator.records import encode_lines
from aggregator.syslog import FACILITIES, SEVERITIES, format_rfc3164, format_rfc5424, parse, rfc3164_stamp, rfc5424_stamp
from producers.messages import FORMATS, MessageFactory

# 2026-11-29 16:20:01.5 UTC: the receipt time of every example.
RECEIVED_NS = calendar.timegm((2026, 11, 29, 16, 20, 1)) * 1_000_000_000 + 500_000_000
BUDGET = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys in output record: {keys}"
    return dict(pairs)


def run(fmt: str, lines: list[bytes], extra=None, received_ns=RECEIVED_NS, framed=False):
    decoder = Decoder(fmt)
    out: list[bytes] = []
    rejects: list[Reject] = []
    encode = decoder.encode_severity_framed if framed else decoder.encode
    written, empty = encode(list(lines), received_ns, "unixgram", out, rejects, extra)
    data = b"".join(out)
    records = [json.loads(line, object_pairs_hook=no_duplicate_keys) for line in data.split(b"\n")[:-1]]
    assert len(records) == written and (not data or data.endswith(b"\n"))
    return records, rejects, empty, decoder.malformed


def one(fmt: str, line: bytes, **kw) -> dict:
    records, rejects, empty, _ = run(fmt, [line], **kw)
    assert (rejects, empty) == ([], 0)
    (record,) = records
    assert record.pop("received_ns") == kw.get("received_ns", RECEIVED_NS)
    assert record.pop("transport") == "unixgram"
    return record


def local_ns(year, month, day, hour, minute, second) -> int:
    return int(time.mktime((year, month, day, hour, minute, second, 0, 0, -1))) * 1_000_000_000


# -- the forms real senders send ---------------------------------------------------------------------


def test_rfc5424_with_structured_data_bom_and_every_field():
    line = (b'<165>1 2026-11-29T16:20:01.123456+01:00 mymachine.example.com evntslog 4242 ID47 '
            b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"] '
            b"\xef\xbb\xbfAn application event log entry")  # fmt: skip
    assert one("syslog", line) == {
        "facility": "local4", "severity": "notice",
        "timestamp": "2026-11-29T16:20:01.123456+01:00",
        "timestamp_ns": calendar.timegm((2026, 11, 29, 15, 20, 1)) * 1_000_000_000 + 123_456_000,
        "hostname": "mymachine.example.com", "app_name": "evntslog", "procid": "4242", "msgid": "ID47",
        "structured_data": {"exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
                            "examplePriority@32473": {"class": "high"}},
        "message": "An application event log entry",
    }  # fmt: skip


def test_rfc5424_nil_fields_are_absent_and_escapes_in_parameters_are_read():
    line = b'<14>1 - - - - - [x@1 a="q\\"b\\\\s\\]e" b="\\n"]'
    assert one("syslog", line) == {
        "facility": "user", "severity": "info",
        "structured_data": {"x@1": {"a": 'q"b\\s]e', "b": "\\n"}},  # only \" \\ \] are escapes (RFC 5424 6.3.3)
    }  # fmt: skip


def test_rfc3164_from_a_remote_sender():
    line = b"<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed for lonvick on /dev/pts/8"
    assert one("syslog", line) == {
        "facility": "auth", "severity": "crit", "timestamp": "Oct 11 22:14:15",
        "timestamp_ns": local_ns(2026, 10, 11, 22, 14, 15), "hostname": "mymachine", "app_name": "su", "procid": "230",
        "message": "'su root' failed for lonvick on /dev/pts/8",
    }  # fmt: skip


def test_rfc3164_from_glibc_on_a_local_socket_has_no_hostname():
    assert one("syslog", b"<13>Nov 29 16:20:01 tag[123]: msg") == {
        "facility": "user", "severity": "notice", "timestamp": "Nov 29 16:20:01",
        "timestamp_ns": local_ns(2026, 11, 29, 16, 20, 1), "app_name": "tag", "procid": "123", "message": "msg",
    }  # fmt: skip
    assert one("syslog", b"<13>Nov  9 16:20:01 root: hello")["app_name"] == "root"  # logger's local form


def test_bare_pri_and_message_from_pythons_syslog_handler_with_its_nul():
    assert one("syslog", b"<14>hello world: not a tag\x00") == {"facility": "user", "severity": "info",
                                                                "message": "hello world: not a tag"}  # fmt: skip


def test_a_3164_stamp_takes_the_year_nearest_the_receipt():
    # Sent on Dec 31, received just after midnight on Jan 1: last year, not this one.
    received = local_ns(2027, 1, 1, 0, 0, 2) + 7
    record = one("syslog", b"<13>Dec 31 23:59:59 host app: x", received_ns=received)
    assert record["timestamp_ns"] == local_ns(2026, 12, 31, 23, 59, 59)


def test_a_stamp_that_does_not_parse_is_kept_as_text_without_ns():
    record = one("syslog", b"<13>1 2026-13-45T99:00:00Z h a p m - x")
    assert record["timestamp"] == "2026-13-45T99:00:00Z" and "timestamp_ns" not in record


# -- JSON in the message ----------------------------------------------------------------------------


def test_a_json_message_is_merged_with_its_values_as_sent():
    record = one("syslog", b'<14>1 2026-11-29T16:20:01Z h app 7 - - {"n":1e999,"big":123456789012345678901234567890,"k":[1,{"a":null}]}')
    assert record["n"] == float("inf") and record["big"] == 123456789012345678901234567890 and record["k"] == [1, {"a": None}]
    assert "message" not in record and record["app_name"] == "app"
    raw = run("syslog", [b'<14>{"n":1e999}'])[0]
    assert raw  # kept as written: the output line holds 1e999, not an error


def test_a_field_the_message_shares_with_the_header_keeps_the_messages_value():
    record = one("syslog", b'<11>Nov 29 16:20:01 host app[5]: {"severity":"debug","hostname":"inner","x":1}')
    assert (record["severity"], record["syslog_severity"]) == ("debug", "err")
    assert (record["hostname"], record["syslog_hostname"]) == ("inner", "host")
    assert record["x"] == 1 and record["app_name"] == "app"


def test_fields_the_aggregator_adds_replace_the_messages():
    records, _, _, _ = run("syslog", [b'<14>{"transport":"forged","received_ns":1,"peer_uid":0,"x":2}'], extra={"peer_uid": 1000})
    assert records == [{"facility": "user", "severity": "info", "x": 2, "peer_uid": 1000, "received_ns": RECEIVED_NS, "transport": "unixgram"}]


def test_a_cee_cookie_is_read_and_anything_that_is_not_an_object_stays_text():
    assert one("syslog", b'<14>@cee: {"a":1}') == {"facility": "user", "severity": "info", "a": 1}
    for text in (b"[1,2]", b'{"a":', b"@cee: nope", b'{"a":1} trailing'):
        assert one("syslog", b"<14>" + text)["message"] == text.decode()


# -- never lost for its header ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "fields", "message"),
    [
        (b"<13>1 cut short", {"facility": "user", "severity": "notice"}, "1 cut short"),
        (b'<13>1 - h a p m [x@1 a="open', {"facility": "user", "severity": "notice", "hostname": "h", "app_name": "a",
                                            "procid": "p", "msgid": "m"}, '1 - h a p m [x@1 a="open'),  # fmt: skip
        (b"<999>out of range", {}, "<999>out of range"),
        (b"no header at all", {}, "no header at all"),
    ],
)
def test_a_malformed_header_is_kept_as_message_and_counted(line, fields, message):
    records, rejects, empty, malformed = run("syslog", [line])
    assert (rejects, empty, malformed) == ([], 0, 1)
    record = records[0]
    del record["received_ns"], record["transport"]
    assert record == {**fields, "message": message}


def test_text_that_is_not_utf8_is_rejected_not_written():
    _, rejects, _, _ = run("syslog", [b"<14>caf\xe9", b'<14>{"a":"\xff"}', b"<14>1 - h\xff a - - - x"])
    assert [r.reason for r in rejects] == [INVALID_UTF8] * 3


# -- the formats ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_auto_sends_a_syslog_line_inside_a_json_batch_to_the_syslog_path(implementation, monkeypatch):
    """A batch that starts as JSON (the hot path's batch, native or not) with a syslog line in it:
    the line the JSON validator refuses goes to the syslog reader, in its place."""
    monkeypatch.setattr(hotpath, "ACTIVE", IMPLEMENTATIONS[implementation])
    records, rejects, empty, malformed = run("auto", [b'{"a":1}', b"<14>hi", b'{"b":2}', b"nope"])
    assert [(r.get("a"), r.get("message"), r.get("b")) for r in records] == [(1, None, None), (None, "hi", None), (None, None, 2)]
    assert [r.reason for r in rejects] == [INVALID_JSON] and (empty, malformed) == (0, 0)


def test_auto_takes_json_to_the_json_path_byte_for_byte_and_syslog_to_the_syslog_path():
    json_lines = [b'{"a":1}', b' {"b":[1,2]} ', b'{"transport":"x","c":1e999}']
    out: list[bytes] = []
    encode_lines(json_lines, RECEIVED_NS, "unixgram", out, [], None)
    decoder = Decoder("auto")
    auto_out: list[bytes] = []
    assert decoder.encode(json_lines, RECEIVED_NS, "unixgram", auto_out, [], None) == (3, 0)
    assert b"".join(auto_out) == b"".join(out)  # the native path hands back one block per run of lines
    records, rejects, empty, malformed = run("auto", [b"<14>hi", b'{"a":1}', b"hello", b"42", b"<x>no", b"", b"<999>z"])
    assert [r.get("message") for r in records] == ["hi", None, "<999>z"]  # in order; <999> is kept, counted
    assert [r.reason for r in rejects] == [INVALID_JSON, NOT_AN_OBJECT, INVALID_JSON]  # as with --format json
    assert (empty, malformed) == (1, 1)


def test_json_format_rejects_syslog_as_it_always_did():
    _, rejects, _, _ = run("json", [b"<14>hello"])
    assert [r.reason for r in rejects] == [INVALID_JSON]


def test_raw_format_keeps_any_text_and_rejects_only_bad_utf8():
    records, rejects, empty, _ = run("raw", [b"plain text\r", b'{"a":1}', b"<14>x\x00", b"", b"\xff"])
    assert [r["message"] for r in records] == ["plain text", '{"a":1}', "<14>x"]
    assert empty == 1 and [r.reason for r in rejects] == [INVALID_UTF8]


def test_lenprefix_frames_add_their_severity_to_any_format():
    frames = [lenprefix_frame(3, b'{"a":1}')[4:], lenprefix_frame(6, b"<13>Nov 29 16:20:01 app: x")[4:],
              lenprefix_frame(9, b'{"b":2}')[4:], lenprefix_frame(4, b"")[4:], lenprefix_frame(2, b"text")[4:]]  # fmt: skip
    records, rejects, empty, malformed = run("auto", frames, framed=True)
    assert [(r.get("severity"), r.get("a"), r.get("b"), r.get("message")) for r in records] == [
        ("err", 1, None, None), ("info", None, None, "x"), (None, None, 2, None)]  # fmt: skip
    assert records[1]["app_name"] == "app" and records[1]["facility"] == "user"  # the payload's own header
    assert (empty, malformed, [r.reason for r in rejects]) == (1, 1, [INVALID_JSON])  # severity 9: kept, counted
    raw, _, _, _ = run("raw", frames[-1:], framed=True)
    assert [(r["severity"], r["message"]) for r in raw] == [("crit", "text")]


# -- properties -----------------------------------------------------------------------------------------

_token = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E).filter(lambda c: c not in '[]"= '), min_size=1, max_size=12)
_hostname = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,20}", fullmatch=True)
_json_object = st.dictionaries(st.text(max_size=8), st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10) | st.booleans(), max_size=5)


@st.composite
def syslog_lines(draw) -> bytes:
    """Syslog-shaped bytes: real forms, then maybe mutated, or any bytes behind a PRI."""
    kind = draw(st.sampled_from(["5424", "3164", "bare", "mutated", "any"]))
    pri = b"<%d>" % draw(st.integers(0, 250))
    if kind == "any":
        return pri + draw(st.binary(max_size=120))
    message = orjson.dumps(draw(_json_object)) if draw(st.booleans()) else draw(st.text(max_size=30)).encode()
    if kind == "5424":
        line = b"%s1 %s %s %s %s %s - %s" % (pri, rfc5424_stamp(draw(st.integers(0, 2**62))), *(draw(_token).encode() for _ in range(4)), message)
    elif kind == "3164":
        line = pri + rfc3164_stamp(draw(st.integers(0, 2**62))) + b" " + draw(_token).encode() + b": " + message
    else:
        line = pri + message
    if kind == "mutated" and line:
        data = bytearray(line)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        line = bytes(data)
    return line


@BUDGET
@given(lines=st.lists(syslog_lines() | st.binary(max_size=80), max_size=8), fmt=st.sampled_from(["syslog", "auto", "raw"]),
       framed=st.booleans())  # fmt: skip
def test_the_reader_never_raises_and_never_loses_a_message(lines, fmt, framed):
    if framed:
        lines = [bytes((b % 10,)) + line for b, line in zip(range(3, 200), lines)]
    records, rejects, empty, malformed = run(fmt, lines, extra={"peer_pid": 1}, framed=framed)
    assert len(records) + len(rejects) + empty == len(lines)  # written, rejected with a reason, or empty
    assert all(r.reason in REJECT_REASONS for r in rejects)
    assert all(r["received_ns"] == RECEIVED_NS and r["transport"] == "unixgram" and r["peer_pid"] == 1 for r in records)


@BUDGET
@given(facility=st.sampled_from(FACILITIES), severity=st.sampled_from(SEVERITIES), ts_ns=st.integers(0, 2**62),
       host=st.none() | _token, app=st.none() | _token, procid=st.none() | _token, msgid=st.none() | _token,
       sd=st.dictionaries(_token, st.dictionaries(_token, st.text(max_size=8), max_size=3), max_size=2),
       body=_json_object | st.text(min_size=1, max_size=30).filter(lambda t: t.strip(" \t\r\n\x00") == t and not t.startswith(("{", "@cee:")))
       )  # fmt: skip
def test_an_rfc5424_message_reads_back_as_rendered(facility, severity, ts_ns, host, app, procid, msgid, sd, body):
    message = orjson.dumps(body) if isinstance(body, dict) else body.encode()
    line = format_rfc5424(facility, severity, rfc5424_stamp(ts_ns), host, app, procid, msgid, sd, message)
    parsed = parse(line, RECEIVED_NS)
    expected = {"facility": facility, "severity": severity, "timestamp": rfc5424_stamp(ts_ns).decode(),
                "timestamp_ns": ts_ns // 1000 * 1000,
                **{k: v for k, v in (("hostname", host), ("app_name", app), ("procid", procid), ("msgid", msgid)) if v is not None},
                **({"structured_data": sd} if sd else {})}  # fmt: skip
    assert parsed == (expected, message, False)


@BUDGET
@given(severity=st.sampled_from(SEVERITIES), ts_s=st.integers(10**9, 2 * 10**9), host=st.none() | _hostname,
       tag=_token.filter(lambda t: ":" not in t and "{" not in t), procid=st.none() | _token.filter(lambda t: "]" not in t),
       message=st.text(max_size=30).map(lambda t: t.strip(" \t\r\n\x00")))  # fmt: skip
def test_an_rfc3164_message_reads_back_as_rendered(severity, ts_s, host, tag, procid, message):
    line = format_rfc3164("daemon", severity, rfc3164_stamp(ts_s * 10**9), host, tag, procid, message.encode())
    parsed = parse(line, ts_s * 10**9 + 3)
    assert parsed[0] == {"facility": "daemon", "severity": severity, "timestamp": rfc3164_stamp(ts_s * 10**9).decode(),
                             "timestamp_ns": ts_s * 10**9, **({"hostname": host} if host else {}), "app_name": tag,
                             **({"procid": procid} if procid else {})}  # fmt: skip
    assert parsed[1:] == (message.encode(), False)


@BUDGET
@given(fmt=st.sampled_from(FORMATS), seq=st.integers(0, 10**6), ts_ns=st.integers(10**18, 2 * 10**18), size=st.integers(320, 600),
       producer=st.text(min_size=1, max_size=6))  # fmt: skip
def test_what_the_producer_renders_reads_back_as_its_object(fmt, seq, ts_ns, size, producer):
    factory = MessageFactory(producer, 4242, size, 0, fmt, hostname="host-1")
    line = factory.build(seq, ts_ns, ts_ns - 5)
    assert len(line) == size
    record = one("auto", line.rstrip(b"\n"), received_ns=ts_ns + 1)
    assert {k: record[k] for k in ("ts_ns", "intended_ns", "producer", "seq", "pid")} == {
        "ts_ns": ts_ns, "intended_ns": ts_ns - 5, "producer": producer, "seq": seq, "pid": 4242}  # fmt: skip
    if fmt != "json":
        level = record["level"]
        assert record["severity"] == {"warn": "warning", "error": "err"}.get(level, level)
        assert (record["facility"], record["hostname"], record["app_name"], record["procid"]) == ("user", "host-1", "logprod", "4242")
        assert record["timestamp_ns"] // 10**9 == ts_ns // 10**9
