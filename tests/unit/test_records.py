"""aggregator.records.encode_lines: validation and the output form of each message.

Every test runs against each hot path implementation (the ``hot_path`` fixture): the Python
reference and the native ``encode_lines`` must give the same records, rejects and counts."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.framing import INVALID_JSON, INVALID_UTF8, NOT_AN_OBJECT, Reject
from aggregator.transports import TRANSPORT_NAMES

RECEIVED_NS = 1_700_000_000_123_456_789
TRANSPORT = "unixsock"


def encode(hot_path, lines, transport=TRANSPORT, received_ns=RECEIVED_NS, extra_fields=None):
    out: list[bytes] = []
    rejects: list[Reject] = []
    written, empty = hot_path.encode_lines(list(lines), received_ns, transport, out, rejects, extra_fields)
    return out, rejects, written, empty


def output_lines(out: list[bytes]) -> list[bytes]:
    """The encoder's output chunks joined as the sink writes them, split into lines."""
    data = b"".join(out)
    assert data == b"" or data.endswith(b"\n")
    return data.split(b"\n")[:-1]


def no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys in output record: {keys}"
    return dict(pairs)


def parse_strict(line: bytes) -> dict:
    return json.loads(line, object_pairs_hook=no_duplicate_keys)


def encode_one(hot_path, line: bytes, **kw) -> dict:
    out, rejects, written, empty = encode(hot_path, [line], **kw)
    assert rejects == []
    assert (written, empty) == (1, 0)
    lines = output_lines(out)
    assert len(lines) == 1, lines
    return parse_strict(lines[0])


def with_fields(obj: dict, transport=TRANSPORT, received_ns=RECEIVED_NS) -> dict:
    return {**obj, "received_ns": received_ns, "transport": transport}


# -- valid input -------------------------------------------------------------------------------


def test_output_is_the_input_object_plus_received_ns_and_transport(hot_path):
    line = b'{"ts_ns":1,"producer":"p0","seq":7,"level":"info","msg":"hello"}'
    record = encode_one(hot_path, line)
    assert record == with_fields(json.loads(line))
    assert type(record["received_ns"]) is int


def test_every_line_of_a_batch_is_encoded_in_order(hot_path):
    lines = [b'{"seq":%d}' % i for i in range(100)]
    out, rejects, written, empty = encode(hot_path, lines)
    assert (written, empty, rejects) == (100, 0, [])
    assert [parse_strict(x) for x in output_lines(out)] == [with_fields({"seq": i}) for i in range(100)]


@pytest.mark.parametrize("transport", TRANSPORT_NAMES)
def test_transport_field_names_the_transport(hot_path, transport):
    assert encode_one(hot_path, b'{"a":1}', transport=transport)["transport"] == transport


@pytest.mark.parametrize("line", [b"{}", b"{ }", b" {}  "])
def test_empty_object(hot_path, line):
    assert encode_one(hot_path, line) == with_fields({})


@pytest.mark.parametrize("line", [b'{"a":1} ', b'{"a":1}\t', b'{"a":1}\r', b'  {"a":1}  ', b'{"a":1 }'])
def test_surrounding_whitespace(hot_path, line):
    assert encode_one(hot_path, line) == with_fields({"a": 1})


@pytest.mark.parametrize("line", [b'{"a":\n1}', b'{\n"a":1,\n"b":"x"\n}\n', b'\n{"a":1}'])
def test_embedded_newline_from_a_datagram_stays_one_output_line(hot_path, line):
    record = encode_one(hot_path, line)
    assert record == with_fields(json.loads(line))


@pytest.mark.parametrize(
    ("line", "others"),
    [
        (b'{"received_ns":5,"a":1}', {"a": 1}),
        (b'{"a":1,"transport":"forged"}', {"a": 1}),
        (b'{"transport":"forged","received_ns":"yesterday"}', {}),
        (b'{"received\\u005fns":5,"a":1}', {"a": 1}),  # the same key, escaped
    ],
)
def test_aggregator_fields_already_present_aggregator_value_wins(hot_path, line, others):
    record = encode_one(hot_path, line)  # parse_strict also refuses duplicate keys
    assert record == with_fields(others)


def test_nested_fields_named_like_aggregator_fields_are_left_alone(hot_path):
    record = encode_one(hot_path, b'{"inner":{"transport":"x","received_ns":1}}')
    assert record == with_fields({"inner": {"transport": "x", "received_ns": 1}})


def test_extra_fields_are_added_to_every_record(hot_path):
    extra = {"peer_pid": 42, "peer_uid": 1000, "peer_gid": 1000}
    record = encode_one(hot_path, b'{"a":1}', extra_fields=extra)
    assert record == {"a": 1, **extra, "received_ns": RECEIVED_NS, "transport": TRANSPORT}


def test_extra_fields_already_present_appear_once_with_the_aggregator_value(hot_path):
    # --peer-credentials: the kernel's word on the peer must not be forgeable by the client, and a
    # record must not carry the key twice (consumers differ on which duplicate wins).
    extra = {"peer_pid": 42, "peer_uid": 1000, "peer_gid": 1000}
    record = encode_one(hot_path, b'{"peer_pid":1,"peer_uid":0,"a":1}', extra_fields=extra)
    assert record == {"a": 1, **extra, "received_ns": RECEIVED_NS, "transport": TRANSPORT}


def test_escaped_nul_is_valid_and_kept(hot_path):
    record = encode_one(hot_path, b'{"a":"x\\u0000y"}')
    assert record == with_fields({"a": "x\x00y"})


def test_unicode_is_kept(hot_path):
    obj = {"msg": "h\u00e9llo \u2603 \U0001f600"}
    record = encode_one(hot_path, json.dumps(obj, ensure_ascii=False).encode())
    assert record == with_fields(obj)


# -- rejects -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"[1,2,3]", NOT_AN_OBJECT),
        (b'"a string"', NOT_AN_OBJECT),
        (b"42", NOT_AN_OBJECT),
        (b"null", NOT_AN_OBJECT),
        (b"true", NOT_AN_OBJECT),
        (b'{"a":"\xff"}', INVALID_UTF8),
        (b'{"a":"\xc3\x28"}', INVALID_UTF8),
        (b"\xff\xfe{}", INVALID_UTF8),
        (b'{"a":1', INVALID_JSON),
        (b"not json", INVALID_JSON),
        (b'{"a":1}{"b":2}', INVALID_JSON),
        (b'{"a":1}\n{"b":2}', INVALID_JSON),  # two objects in one datagram
        (b"{'a':1}", INVALID_JSON),
        (b'{"a":NaN}', INVALID_JSON),
        (b'{"a":"x\x00y"}', INVALID_JSON),  # raw NUL inside a string
        (b'{"a":1}\x00', INVALID_JSON),  # NUL after the object
        (b"\x00", INVALID_JSON),
    ],
)
def test_invalid_lines_are_rejected_with_their_reason(hot_path, line, reason):
    out, rejects, written, empty = encode(hot_path, [line])
    assert out == []
    assert (written, empty) == (0, 0)
    assert rejects == [Reject(reason, line, len(line))]


@pytest.mark.parametrize(("depth", "accepted"), [(900, True), (1000, True), (5000, False)])
def test_deep_nesting_never_crashes_and_follows_orjson(hot_path, depth, accepted):
    # msgspec stops at a lower depth (RecursionError) than orjson: such lines go to orjson.
    line = b'{"a":' + b"[" * depth + b"]" * depth + b"}"
    out, rejects, written, _ = encode(hot_path, [line])
    assert written == (1 if accepted else 0)
    assert [r.reason for r in rejects] == ([] if accepted else [INVALID_JSON])


@pytest.mark.parametrize("depth", [300, 1000])
def test_a_deep_record_carrying_added_fields_keeps_its_values_and_gets_ours(hot_path, depth):
    # Its forged field is cut out of the text, nothing else is re-encoded: depth costs nothing
    # (it was rejected past orjson's 254 levels of output before).
    line = b'{"transport":"forged","a":' + b"[" * depth + b"]" * depth + b',"received_ns":1}'
    out, rejects, written, _ = encode(hot_path, [line, b'{"ok":1}'])
    assert written == 2 and rejects == []
    assert out[0] == b'{"a":' + b"[" * depth + b"]" * depth + b',"received_ns":%d,"transport":"%s"}\n' % (RECEIVED_NS, TRANSPORT.encode())


@pytest.mark.parametrize(
    "line",
    [b'{"transport" :"x" , "k" : 1 }', b'{"k":{"transport":"nested stays"},"transport":"x"}', b'{"transport\\u0000":1,"transport":2}',
     b'{"a":"\\"transport\\":","transport":"x"}', b'{"transport":"x"}', b'{"transport":[{"]":"}"}],"z":"}"}'],
)
def test_replacing_added_fields_keeps_every_other_member_as_it_was(hot_path, line):
    out, rejects, written, _ = encode(hot_path, [line])
    assert written == 1 and rejects == []
    got = parse_strict(out[0])
    expected = with_fields({k: v for k, v in parse_strict(line).items() if k not in ("transport", "received_ns")})
    assert got == expected


@pytest.mark.parametrize("blank", [b"", b"\r", b"   ", b" \t\r\n "])
def test_empty_and_whitespace_only_lines_are_counted_not_rejected(hot_path, blank):
    # A CRLF blank line on a stream is b"\r": as empty as an empty datagram.
    out, rejects, written, empty = encode(hot_path, [blank, b'{"a":1}', blank])
    assert (written, empty, rejects) == (1, 2, [])
    assert [parse_strict(x) for x in output_lines(out)] == [with_fields({"a": 1})]


def test_rejects_do_not_disturb_the_lines_around_them(hot_path):
    lines = [b'{"seq":0}', b"[0]", b'{"seq":1}', b"\xff", b'{"seq":2}', b"{", b'{"seq":3}']
    out, rejects, written, empty = encode(hot_path, lines)
    assert written == 4
    assert [r.reason for r in rejects] == [NOT_AN_OBJECT, INVALID_UTF8, INVALID_JSON]
    assert [parse_strict(x)["seq"] for x in output_lines(out)] == [0, 1, 2, 3]


def test_reject_data_is_a_bounded_prefix_with_the_full_length(hot_path):
    line = b"[" + b"1," * 5000 + b"1]"
    _, rejects, _, _ = encode(hot_path, [line])
    assert rejects[0].reason == NOT_AN_OBJECT
    assert rejects[0].length == len(line)
    assert line.startswith(rejects[0].data)
    assert len(rejects[0].data) < len(line)


# -- property ----------------------------------------------------------------------------------

_keys = st.text(max_size=12)
_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
_values = st.recursive(_scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(_keys, kids, max_size=4), max_leaves=12)
_objects = st.dictionaries(_keys, _values, max_size=8)
_styles = st.sampled_from(
    [
        dict(separators=(",", ":"), ensure_ascii=False),
        dict(separators=(", ", ": "), ensure_ascii=True),
        dict(indent=None, ensure_ascii=False),
        dict(indent=1, ensure_ascii=False),  # newlines inside: only a datagram can carry this
    ]
)


@settings(max_examples=300, deadline=None)
@given(_objects, _styles, st.sampled_from(["", " ", "\t", "\r"]))
def test_any_json_object_comes_out_as_itself_plus_the_two_fields(hot_path, obj, style, trailing):
    line = (json.dumps(obj, **style) + trailing).encode()
    record = encode_one(hot_path, line)
    expected = with_fields(obj)
    assert record == expected
