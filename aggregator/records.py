"""Validation and encoding: framed lines in, output bytes and rejects out.

A valid message is a UTF-8 JSON object. The aggregator adds two fields, ``received_ns`` (wall-clock
ns of the read that returned the message) and ``transport``, and writes one line per message.

Hot path: the producer's bytes are validated with ``orjson.loads`` and then written as they came,
with the added fields spliced in before the closing brace. That avoids
re-serialising every message, which would cost about as much again as parsing it. The slow path (re-serialise with
orjson) is taken only when splicing would be wrong: an empty object, trailing whitespace, an
embedded newline (only possible in a datagram) or a field the aggregator itself sets (the
aggregator's value wins).
"""

from __future__ import annotations

import orjson

from .framing import INVALID_JSON, INVALID_UTF8, NOT_AN_OBJECT, Reject

_loads = orjson.loads
_dumps = orjson.dumps
_JSONDecodeError = orjson.JSONDecodeError


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
) -> tuple[int, int]:
    """Validate ``lines`` and append their output form to ``out``.

    ``extra_fields`` (e.g. the peer's credentials) are added to every record, before
    ``received_ns``. ``newline_free`` says no line can hold a newline (true of stream framing;
    a datagram can). Returns ``(written, empty)``: how many lines were valid, and how many were
    empty (skipped, counted by the caller, not rejects). Invalid lines go to ``rejects``.
    """
    extra = b"," + _dumps(extra_fields)[1:-1] if extra_fields else b""
    # Fields the aggregator sets: an object that already has one takes the slow path, where the
    # aggregator's value replaces it (splicing would duplicate the key).
    added = frozenset(("received_ns", "transport", *extra_fields)) if extra_fields else None
    suffix = extra + b',"received_ns":%d,"transport":"%s"}\n' % (received_ns, transport.encode())

    append = out.append
    written = 0
    empty = 0
    for line in lines:
        try:
            obj = _loads(line)
        except _JSONDecodeError:
            if not line:
                empty += 1
            else:
                rejects.append(Reject.of(classify_invalid(line), line))
            continue
        if type(obj) is not dict:
            rejects.append(Reject.of(NOT_AN_OBJECT, line))
            continue
        if (
            line[-1] == 125  # ord("}"): no trailing whitespace to step over
            and obj  # "{}" has no field to put a comma after
            and (newline_free or 10 not in line)  # a datagram may hold a newline: re-serialise
            and ("received_ns" not in obj and "transport" not in obj if added is None else added.isdisjoint(obj))
        ):
            # One piece per message: fewer, larger pieces make the sink's join much cheaper.
            append(line[:-1] + suffix)
        else:
            if extra_fields:
                obj.update(extra_fields)
            obj["received_ns"] = received_ns
            obj["transport"] = transport
            append(_dumps(obj, option=orjson.OPT_APPEND_NEWLINE))
        written += 1
    return written, empty
