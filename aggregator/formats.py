"""Input formats (``aggregator --format``): how a framed message becomes an output line.

* ``json``   a UTF-8 JSON object per message: ``records.encode_lines``, exactly (the hot path);
* ``syslog`` RFC 5424, RFC 3164 (with or without hostname) and bare ``<PRI>msg``, read into
  record fields (``syslog.py``); a JSON object in the message is merged into the record;
* ``raw``    any non-empty UTF-8 message becomes ``{"message": ...}``;
* ``auto``   (the default) per message: one that starts with ``{`` after whitespace takes the JSON
  path, at the JSON path's cost (``encode_lines`` offers only the lines its validator refuses to
  the syslog reader); one that starts with ``<`` and a digit takes the syslog path; anything else
  is rejected as in ``json``.

Every format adds the same fields (``received_ns``, ``transport``, the peer's credentials with
``--peer-credentials``) through the same ``suffix``. A ``Decoder`` is one event loop's reader of
the chosen format, with its running count of syslog headers it could not read
(``syslog_malformed``: kept, with what could be read, never rejected for the header).

``--framing lenprefix`` frames carry a severity byte before each payload; the stream framer hands
those on as ``severity byte + payload`` (``framing.LenPrefixFramer``) and ``encode_severity_framed``
reads them: the severity (0-7) becomes the record's ``severity`` (a syslog payload's own header
is read, the frame's severity replacing its ``<PRI>``'s), the payload is read as ``--format`` says.
"""

from __future__ import annotations

from .framing import INVALID_JSON, INVALID_UTF8, NOT_AN_OBJECT, Reject
from .hotpath import encode_lines, encoder_for  # the native one where built: same results as records.encode_lines
from .records import classify_invalid, suffix_for, _dumps, _loads, _JSONDecodeError
from .syslog import SEVERITIES, json_members, merged_line, parse, record_line

FORMATS = ("auto", "json", "syslog", "raw")
DEFAULT_FORMAT = "auto"
_TRAILING = b"\x00\r"  # a raw message keeps its text; a CR of CRLF and a C string's NUL are not text
_SPACE = b" \t\r\n\x00"


def _looks_like_syslog(line: bytes) -> bool:
    return line[:1] == b"<" and line[1:2].isdigit()


class Decoder:
    """One event loop's reader of the format ``fmt`` (one of ``FORMATS``). ``encode`` has
    ``records.encode_lines``'s signature and returns ``(written, empty)``; ``malformed`` counts
    syslog headers that could not be read (the messages are kept)."""

    def __init__(self, fmt: str = DEFAULT_FORMAT) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
        self.format = fmt
        self.malformed = 0
        self.encode = {"json": encode_lines, "auto": self._auto, "syslog": self._syslog, "raw": self._raw}[fmt]
        # JSON lines are what the native hot path validates itself; other formats it hands back.
        self.reads_json = fmt in ("json", "auto")
        self._json_or_syslog = encoder_for(self._syslog_if_it_is)  # auto's JSON path, what it refuses to syslog

    # -- per format -------------------------------------------------------------------------------
    def _auto(self, lines, received_ns, transport, out, rejects, extra_fields=None, *, newline_free=False):
        if lines and lines[0][:1] == b"<":
            # A batch from a syslog sender (one look per batch, not per line): each syslog line
            # straight to the syslog path, without first failing the JSON validator.
            return self._mostly_syslog(lines, received_ns, transport, out, rejects, extra_fields, newline_free)
        return self._json_or_syslog(lines, received_ns, transport, out, rejects, extra_fields, newline_free=newline_free)

    def _mostly_syslog(self, lines, received_ns, transport, out, rejects, extra_fields, newline_free) -> tuple[int, int]:
        suffix, added = suffix_for(received_ns, transport, extra_fields)
        written = empty = 0
        for line in lines:
            if _looks_like_syslog(line):
                encoded = self.syslog_line(line, received_ns, suffix, added)
                if type(encoded) is bytes:
                    out.append(encoded)
                    written += 1
                else:
                    rejects.append(encoded)
            else:  # anything else as auto reads it, in order
                w, e = encode_lines([line], received_ns, transport, out, rejects, extra_fields, newline_free=newline_free)
                written += w
                empty += e
        return written, empty

    def _syslog_if_it_is(self, line: bytes, received_ns: int, suffix: bytes, added: tuple) -> bytes | Reject | None:
        return self.syslog_line(line, received_ns, suffix, added) if _looks_like_syslog(line) else None

    def _syslog(self, lines, received_ns, transport, out, rejects, extra_fields=None, *, newline_free=False):
        suffix, added = suffix_for(received_ns, transport, extra_fields)
        return self._each(lines, out, rejects, lambda line: self.syslog_line(line, received_ns, suffix, added))

    def _raw(self, lines, received_ns, transport, out, rejects, extra_fields=None, *, newline_free=False):
        suffix, added = suffix_for(received_ns, transport, extra_fields)
        return self._each(lines, out, rejects, lambda line: raw_line(line, suffix))

    @staticmethod
    def _each(lines, out, rejects, one, header_bytes: int = 0) -> tuple[int, int]:
        """``one(line)`` for each line not empty (after its ``header_bytes``, a frame's severity)."""
        written = empty = 0
        for line in lines:
            if not line[header_bytes:].strip(_SPACE):
                empty += 1
                continue
            encoded = one(line)
            if type(encoded) is bytes:
                out.append(encoded)
                written += 1
            else:
                rejects.append(encoded)
        return written, empty

    # -- one message ----------------------------------------------------------------------------
    def syslog_line(self, line: bytes, received_ns: int, suffix: bytes, added: tuple, severity: int | None = None) -> bytes | Reject:
        """A syslog message's output line (``severity``: a lenprefix frame's, replacing the
        ``<PRI>``'s), or an ``invalid_utf8`` reject."""
        try:
            header, message, malformed = parse(line, received_ns)
            if malformed:
                self.malformed += 1
            if severity is not None:
                header["severity"] = SEVERITIES[severity]
            return record_line(header, message, suffix, added)
        except UnicodeDecodeError:
            return Reject.of(INVALID_UTF8, line)

    def encode_severity_framed(self, lines, received_ns, transport, out, rejects, extra_fields=None, *, newline_free=False):
        """``--framing lenprefix``: each line is a severity byte and a payload (see the module doc)."""
        suffix, added = suffix_for(received_ns, transport, extra_fields)
        return self._each(lines, out, rejects, lambda line: self._severity_framed(line, received_ns, suffix, added), 1)

    def _severity_framed(self, line: bytes, received_ns: int, suffix: bytes, added: tuple) -> bytes | Reject:
        code, payload = line[0], line[1:]
        if code >= len(SEVERITIES):
            self.malformed += 1  # kept: a severity byte out of range loses the severity, not the line
            code = None
        fmt = self.format
        if fmt == "syslog" or (fmt == "auto" and _looks_like_syslog(payload)):
            return self.syslog_line(payload, received_ns, suffix, added, code)
        header = {} if code is None else {"severity": SEVERITIES[code]}
        try:
            if fmt == "raw":
                return raw_line(payload, suffix, header)
            return _json_payload(header, payload, suffix, added)
        except UnicodeDecodeError:
            return Reject.of(INVALID_UTF8, payload)


def _json_payload(header: dict, payload: bytes, suffix: bytes, added: tuple) -> bytes | Reject:
    """A lenprefix payload under ``--format json`` or ``auto``: a JSON object, merged with the
    frame's severity; anything else is rejected with the JSON path's reason."""
    body = payload.strip(_SPACE)
    merged = json_members(body, added) if body[:1] == b"{" else None
    if merged is not None:
        return merged_line(header, *merged, suffix)
    try:
        value = _loads(payload)
    except _JSONDecodeError:
        return Reject.of(classify_invalid(payload), payload)
    return Reject.of(NOT_AN_OBJECT if type(value) is not dict else INVALID_JSON, payload)


def raw_line(line: bytes, suffix: bytes, header: dict | None = None) -> bytes | Reject:
    """``{"message": ...}`` (after ``header``'s fields) for any UTF-8 text."""
    text = line.rstrip(_TRAILING)
    try:
        fields = {**header, "message": text.decode("utf-8")} if header else {"message": text.decode("utf-8")}
    except UnicodeDecodeError:
        return Reject.of(INVALID_UTF8, line)
    return _dumps(fields)[:-1] + suffix


__all__ = ["DEFAULT_FORMAT", "FORMATS", "Decoder", "INVALID_JSON", "raw_line"]
