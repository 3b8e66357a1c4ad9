"""Validation and encoding: framed lines in, output bytes and rejects out.

A valid message is a UTF-8 JSON object. The aggregator adds two fields, ``received_ns`` (wall-clock
ns of the read that returned the message) and ``transport``, and writes one line per message.

Hot path, per line (about 0.35 us for a 200-byte line, against 0.8 us when every line was parsed
into a dict with orjson):

1. ``msgspec`` checks the JSON grammar (RFC 8259: every value, escape and number, at any depth)
   while decoding into a *probe*: a struct whose only fields are the ones the aggregator sets.
   Other fields are checked and skipped, never turned into Python objects; that allocation was
   most of the cost of validating with ``orjson.loads``.
2. UTF-8: msgspec does not check the bytes of strings it skips, so a line that is not pure ASCII
   is decoded once with Python's strict UTF-8 codec (which refuses overlongs and surrogates, as
   orjson does).
3. The producer's bytes are written as they came, with the added fields spliced in before the
   closing brace. Re-serialising every message would cost about as much again as parsing it.

A record that already holds a field the aggregator sets (the probe saw it) has those top-level
members cut out of its text (``without_members``: a scan for the top level that skips strings
whole, never parsing values), so the aggregator's value replaces them and no key appears twice;
its other members are kept byte for byte, at any depth. Lines the fast validator refuses go
through orjson, which gives the reject its reason (bad UTF-8, bad JSON, not an object). A line of
JSON whitespace only (a CRLF blank line, say) is empty, as an empty datagram is: counted, not
rejected.

Numbers are passed through as written: a number beyond a double's range (``1e999``) is valid JSON
and kept, with or without fields to replace.
"""

from __future__ import annotations

import re
from functools import lru_cache

import orjson

from .framing import INVALID_JSON, INVALID_UTF8, NOT_AN_OBJECT, Reject

_loads = orjson.loads
_dumps = orjson.dumps
_JSONDecodeError = orjson.JSONDecodeError
_JSON_WHITESPACE = b" \t\r\n"
_NEWLINE = 10
_CLOSE_BRACE = 125  # ord("}")
_NEEDS_CARE = frozenset(b" \t\r\n{")  # before the closing brace: whitespace, or "{}" (no field)
ADDED_FIELDS = ("received_ns", "transport")


@lru_cache(maxsize=16)
def probe_for(fields: tuple[str, ...]):
    """A decoder that validates a whole line but keeps only ``fields`` (raw, if present), the
    probe value that means "none of them present", and the errors the decoder raises on a line it
    refuses: DecodeError (and its ValidationError subclass, for non-objects); RecursionError past
    msgspec's nesting limit, which is lower than orjson's (orjson then decides).

    msgspec is imported here, on the first line to validate: with the native hot path
    (``hotpath.py``) a serving process may never need it (3.7 MiB of memory)."""
    import msgspec

    names = [f"f{i}" for i in range(len(fields))]  # JSON keys need not be identifiers: rename
    probe = msgspec.defstruct(
        "FieldProbe", [(n, msgspec.Raw, msgspec.UNSET) for n in names], rename=dict(zip(names, fields))
    )
    return msgspec.json.Decoder(probe).decode, probe(), (msgspec.DecodeError, RecursionError)


def suffix_for(received_ns: int, transport: str, extra_fields: dict | None = None) -> tuple[bytes, tuple[str, ...]]:
    """What every output record ends with (``extra_fields``, then the two added fields, the closing
    brace and the newline, with a leading comma), and the names of the fields it sets."""
    extra = b"," + _dumps(extra_fields)[1:-1] if extra_fields else b""
    added = (*ADDED_FIELDS, *extra_fields) if extra_fields else ADDED_FIELDS
    return extra + b',"received_ns":%d,"transport":"%s"}\n' % (received_ns, transport.encode()), added


def classify_invalid(line: bytes) -> str:
    """Why orjson refused a line: bad UTF-8 is told apart from bad JSON."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return INVALID_UTF8
    return INVALID_JSON


def encode_lines(
    lines: list[bytes],
    received_ns: int,
    transport: str,
    out: list[bytes],
    rejects: list[Reject],
    extra_fields: dict | None = None,
    *,
    newline_free: bool = False,
    other=None,
) -> tuple[int, int]:
    """Validate ``lines`` and append their output form to ``out``.

    ``extra_fields`` (e.g. the peer's credentials) are added to every record, before
    ``received_ns``. ``newline_free`` says no line can hold a newline (true of stream framing;
    a datagram can). Returns ``(written, empty)``: how many lines were valid, and how many were
    empty (skipped, counted by the caller, not rejects). Invalid lines go to ``rejects``.

    ``other`` (``--format auto``, see ``formats.py``): a line the JSON validator refuses is first
    offered to ``other(line, received_ns, suffix, added)``, which returns its output line, a
    Reject, or None ("not mine": the line is judged as JSON). Valid JSON never reaches it, so
    the JSON path costs the same with or without it.
    """
    suffix, added = suffix_for(received_ns, transport, extra_fields)
    probe, none_present, probe_errors = probe_for(added)

    append = out.append
    written = 0
    empty = 0
    for line in lines:
        try:
            seen = probe(line)
        except probe_errors:
            if not line.strip(_JSON_WHITESPACE):
                empty += 1
                continue
            if other is not None:
                encoded = other(line, received_ns, suffix, added)
                if encoded is not None:
                    if type(encoded) is bytes:
                        append(encoded)
                        written += 1
                    else:
                        rejects.append(encoded)
                    continue
            seen = None  # orjson decides, and names the reason if it refuses too
        else:
            if not line.isascii():
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    rejects.append(Reject.of(INVALID_UTF8, line))
                    continue
        if seen == none_present:
            if line[-1] == _CLOSE_BRACE and line[-2] not in _NEEDS_CARE and (newline_free or _NEWLINE not in line):
                # One piece per message: fewer, larger pieces make the sink's join much cheaper.
                append(line[:-1] + suffix)
            else:
                append(_splice_with_care(line, suffix))
        else:
            encoded = _replace_added(line, added, suffix, validated=seen is not None)
            if type(encoded) is str:
                rejects.append(Reject.of(encoded, line))
                continue
            append(encoded)
        written += 1
    return written, empty


def _splice_with_care(line: bytes, suffix: bytes) -> bytes:
    """The splice for a valid object with surrounding whitespace, no field ("{}"), or newlines
    (only a datagram can hold one; in valid JSON it can only be whitespace, so it becomes a space)."""
    body = line.strip(_JSON_WHITESPACE)
    if _NEWLINE in body:
        body = body.replace(b"\n", b" ")
    inner = body[:-1].rstrip(_JSON_WHITESPACE)
    # A non-empty object's last value ends in '"', a digit, 'e', 'l', ']' or '}'; never in '{'.
    return inner + suffix[1:] if inner.endswith(b"{") else inner + suffix


def _replace_added(line: bytes, added: tuple[str, ...], suffix: bytes, *, validated: bool) -> bytes | str:
    """The output line of a record that may carry fields the aggregator sets, or a reject reason.

    ``validated``: the fast validator accepted the line (and saw one of ``added``). Otherwise
    orjson decides: it tells bad UTF-8 from bad JSON from "not an object" (and should the two
    validators disagree, as past msgspec's nesting limit, orjson's accepting wins).
    """
    if not validated:
        try:
            obj = _loads(line)
        except _JSONDecodeError:
            return classify_invalid(line)
        if type(obj) is not dict:
            return NOT_AN_OBJECT
        if not any(name in obj for name in added):
            return _splice_with_care(line, suffix)
    kept = without_members(line, added)
    if _NEWLINE in kept:
        kept = kept.replace(b"\n", b" ")  # outside strings (where JSON has none): whitespace
    return kept + suffix if kept else b"{" + suffix[1:]


# Tokens of the scan for top-level members: a whole string (an escaped quote cannot end it), or a
# structural character outside strings. Values are never parsed, so depth costs nothing.
_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\],]', re.DOTALL)
_OPEN, _CLOSE, _COMMA, _QUOTE = frozenset(b"{["), frozenset(b"}]"), 44, 34


def without_members(line: bytes, names: tuple[str, ...]) -> bytes:
    """``b"{" + the members of the JSON object ``line`` not named in ``names``, comma-joined``
    (no closing brace; empty if none are left). ``line`` must be a valid JSON object."""
    kept: list[bytes] = []
    depth = 0
    start = 0
    key: bytes | None = None
    for m in _STRUCTURE.finditer(line):
        c = line[m.start()]
        if c == _QUOTE:
            if depth == 1 and key is None:
                key = m.group()  # the first string of a member is its key
            continue
        if c in _OPEN:
            depth += 1
            if depth == 1:
                start = m.end()
        elif c in _CLOSE or c == _COMMA:
            if depth == 1 and key is not None:
                if _loads(key) not in names:
                    kept.append(line[start : m.start()].strip(_JSON_WHITESPACE))
                key = None
                start = m.end()
            if c != _COMMA:
                depth -= 1
    return b"{" + b",".join(kept) if kept else b""
