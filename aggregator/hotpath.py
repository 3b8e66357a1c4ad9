"""The hot path: newline framing, JSON validation and the splice of the added fields, per read.

Two implementations behind the same two functions, chosen once at import:

* ``native``: the C extension ``aggregator._hotpath`` (``aggregator/native/hotpath.c``, built by
  the package's normal install). One call per read frames every line after the connection's
  partial line, validates each (strict RFC 8259 and strict UTF-8, by hand: no library), and
  copies the valid ones with the added fields spliced in into one output block, with the GIL
  released. Lines it cannot accept for certain (invalid, not an object, carrying a field the
  aggregator sets, a surrogate escape, deeper than 256 levels) are handed back, in order and in
  runs, to the Python encoder, which decides them and names the reject reason: the records,
  rejects, reasons and counters are therefore the Python path's, and
  ``tests/unit/test_hotpath.py`` checks it differentially.
* ``python``: ``framing.LineFramer`` then ``records.encode_lines``, the reference. Chosen
  automatically when the extension is missing (no compiler at install), or asked for with
  ``LOGLAB_HOT_PATH=python`` (``native`` makes a missing extension an error). ``IMPLEMENTATION``
  and ``FALLBACK_REASON`` say which one runs and why; the stats file and the bench environment
  report them (``hot_path``).

The interface (what the event loop and the transports use):

* ``new_line_framer(max_line_bytes)``: a framer for one byte stream (``feed``, ``close``,
  ``pending_bytes``: ``framing.LineFramer``'s interface, whichever implementation);
* ``frame_and_encode(framer, chunks, received_ns, transport, out, rejects, extra_fields, encode)``
  -> ``(messages, written, empty)``: frame one read's ``chunks`` and encode the lines; ``encode``
  (``records.encode_lines``' signature) decides what the native path hands back;
* ``encode_lines``: ``records.encode_lines`` for already framed messages (datagrams), natively.

``IMPLEMENTATIONS`` holds every implementation this installation has (the tests run each).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable

from . import records
from .framing import LineFramer as PythonLineFramer
from .records import suffix_for

CHOICE_ENV = "LOGLAB_HOT_PATH"  # auto (default), native, python
CHOICES = ("auto", "native", "python")


@dataclass(frozen=True)
class Implementation:
    """One implementation of the hot path: its framer type and its ``encode_lines``."""

    name: str
    LineFramer: type
    encode_lines: Callable


def _import_native():
    try:
        from . import _hotpath
    except ImportError as exc:
        return None, f"the C extension is not built ({exc}); reinstall with a C compiler and Python headers (make setup)"
    return _hotpath, None


def _native_encoder(fallback: Callable) -> Callable:
    """``records.encode_lines``, natively (same results), handing what it cannot accept for certain
    to ``fallback`` (``records.encode_lines``, or it with ``other`` bound: ``encoder_for``)."""

    def encode(lines: list[bytes], received_ns: int, transport: str, out: list[bytes], rejects: list,
               extra_fields: dict | None = None, *, newline_free: bool = False) -> tuple[int, int]:  # fmt: skip
        suffix, added = suffix_for(received_ns, transport, extra_fields)
        return _native.encode_lines(lines, suffix, added, out, rejects, fallback, (received_ns, transport, out, rejects, extra_fields),
                                    newline_free)  # fmt: skip

    return encode


_native, NATIVE_MISSING = _import_native()
# Every implementation this installation has (the tests run each); the chosen one is ACTIVE.
IMPLEMENTATIONS = {"python": Implementation("python", PythonLineFramer, records.encode_lines)}
if _native is not None:
    # NUL ends a line in both (framing.LineFramer's rule, for syslog clients over streams).
    IMPLEMENTATIONS["native"] = Implementation("native", functools.partial(_native.LineFramer, nul_ends_line=True), _native_encoder(records.encode_lines))


def _choose() -> tuple[Implementation, str | None]:
    choice = os.environ.get(CHOICE_ENV, "auto") or "auto"
    if choice not in CHOICES:
        raise ValueError(f"{CHOICE_ENV}={choice!r}: one of {', '.join(CHOICES)}")
    if choice == "python":
        return IMPLEMENTATIONS["python"], f"{CHOICE_ENV}=python"
    if _native is None:
        if choice == "native":
            raise ImportError(f"{CHOICE_ENV}=native: {NATIVE_MISSING}")
        return IMPLEMENTATIONS["python"], NATIVE_MISSING
    return IMPLEMENTATIONS["native"], None


ACTIVE, FALLBACK_REASON = _choose()
# The native stages timed alone, inside the extension (benchmarks/hotpath_cost.py); None without it.
stage_costs = _native.stage_costs if _native is not None else None
IMPLEMENTATION = ACTIVE.name
encode_lines = ACTIVE.encode_lines


def describe() -> str:
    """One line for the stats file and the bench environment."""
    return IMPLEMENTATION if FALLBACK_REASON is None else f"python ({FALLBACK_REASON})"


def encoder_for(other) -> Callable:
    """``encode_lines`` of the chosen implementation with ``records.encode_lines``' ``other`` (what
    to do with a line the JSON validator refuses) bound once, not per call: the ``auto`` format's
    JSON path is called once per read, and a partial per call cost it a few per cent at moderate
    rates on datagram transports (measured against the code before input formats)."""
    fallback = functools.partial(records.encode_lines, other=other)
    return fallback if ACTIVE.name == "python" else _native_encoder(fallback)


def new_line_framer(max_line_bytes: int):
    """A newline framer for one byte stream, of the chosen implementation. A NUL byte ends a
    message as a newline does (``framing.LineFramer``'s rule: Python's ``SysLogHandler`` over a
    stream ends each message with a NUL only)."""
    return ACTIVE.LineFramer(max_line_bytes)


def frame_and_encode(framer, chunks: list[bytes], received_ns: int, transport: str, out: list[bytes], rejects: list,
                     extra_fields: dict | None = None, encode=records.encode_lines, *, json: bool = True) -> tuple[int, int, int]:  # fmt: skip
    """Frame ``chunks`` (one read's bytes, in order) with the connection's ``framer`` (either
    implementation's), then encode the lines into ``out``: line_too_long rejects first in
    ``rejects``, then the content rejects in line order. ``encode`` (``records.encode_lines``'
    signature) decides every line the native path does not accept itself; ``json`` False (an
    input format other than JSON) hands it every line. Returns ``(messages framed, written, empty)``."""
    if type(framer) is PythonLineFramer:
        lines: list[bytes] = []
        for chunk in chunks:
            framer.feed(chunk, lines, rejects)
        if not lines:
            return 0, 0, 0
        written, empty = encode(lines, received_ns, transport, out, rejects, extra_fields, newline_free=True)
        return len(lines), written, empty
    suffix, added = suffix_for(received_ns, transport, extra_fields)
    return framer.frame_and_encode(chunks, suffix, added, out, rejects, encode, (received_ns, transport, out, rejects, extra_fields), json)
