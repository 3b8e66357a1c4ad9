"""Syslog messages: the headers real senders put in front of their messages, read into record
fields; and the headers a producer renders (both sides in one module, as the transports keep
both sides, so the producer and the parser cannot disagree).

Forms read (``parse``), each what some real sender sends::

    RFC 5424        <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [SP [BOM]MSG]
                    (logger's default for remote servers, rsyslog's RSYSLOG_SyslogProtocol23Format)
    RFC 3164        <PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG      (remote senders, relays)
    local 3164      <PRI>Mmm dd hh:mm:ss TAG[PID]: MSG               (glibc syslog(3), logger on a
                                                                      local socket: no hostname)
    bare            <PRI>MSG                                         (Python's SysLogHandler)

A 3164 stamp may also be an RFC 3339 one (rsyslog's and syslog-ng's ISO forwarding templates).
After the stamp, a word that ends in ``:`` (with an optional ``[PID]``) is the tag; otherwise the
first word is the hostname and the tag, if any, follows it (RFC 3164 section 4.1.2's order). A
message right after the stamp that starts with ``{`` has neither.

Fields (names from RFC 5424; absent when the message does not carry them, or carries the NILVALUE
``-``): ``facility`` and ``severity`` (names, below), ``timestamp`` (the text as sent) and
``timestamp_ns`` (when it parses: RFC 3339 with its offset; a 3164 stamp in the aggregator's
local time zone, its year the one that puts it nearest the receipt time), ``hostname``,
``app_name``, ``procid``, ``msgid``, ``structured_data`` (5424: ``{SD-ID: {PARAM: VALUE}}``) and
``message``. Trailing NULs, CRs and newlines are stripped; so is a 5424 message's BOM.

A header that starts well (``<PRI>``) but goes wrong later (a 5424 header cut short, structured
data that does not close) is not a reason to lose the line: the fields read so far are kept, the
rest of the line after ``<PRI>`` becomes ``message``, and the caller counts it
(``syslog_malformed``). So does a line with no valid ``<PRI>`` at all under ``--format syslog``.

Merging (``record_line``): when the message, after an optional ``@cee:`` cookie (CEE, as
rsyslog's mmjsonparse reads it), is a JSON object, its members go into the record instead of
``message``, written as sent (numbers of any size, key order). A member with a header field's name
keeps the message's value, and the header's value is kept as ``syslog_NAME`` (unless the message
has that too: the message wins); members named like a field the aggregator adds (``received_ns``,
``transport``, the peer's credentials) are replaced by the aggregator's, as in the JSON path.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import datetime
from functools import lru_cache

import orjson

from .records import without_members

_dumps = orjson.dumps
_loads = orjson.loads

# RFC 5424 6.2.1, by code. The short names of syslog(3) and rsyslog/syslog-ng's configs.
FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
    "ntp", "security", "console", "solaris-cron", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
)  # fmt: skip
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
MAX_PRI = len(FACILITIES) * 8 - 1  # 191

HEADER_FIELDS = ("facility", "severity", "timestamp", "timestamp_ns", "hostname", "app_name", "procid", "msgid",
                 "structured_data")  # fmt: skip
RENAMED_PREFIX = "syslog_"  # a header field the message's JSON also has is kept under this prefix

_PRI = re.compile(rb"<(\d{1,3})>")
_TRAILING = b"\x00\r\n"
_BOM = b"\xef\xbb\xbf"
_NIL = b"-"
_CEE = b"@cee:"
_JSON_WHITESPACE = b" \t\r\n"


def parse(line: bytes, received_ns: int) -> tuple[dict, bytes | None, bool]:
    """Read one syslog message (any form above): ``(header fields, message or None, malformed)``.
    Never raises on any bytes but UnicodeDecodeError, for header text that is not UTF-8 (the
    caller turns it into an ``invalid_utf8`` reject)."""
    line = line.rstrip(_TRAILING)
    m = _PRI.match(line)
    if m is None or int(m[1]) > MAX_PRI:
        return {}, line, True  # no header to read: all of it is the message
    pri = int(m[1])
    header = {"facility": FACILITIES[pri >> 3], "severity": SEVERITIES[pri & 7]}
    rest = line[m.end() :]
    if rest[:2] == b"1 ":
        return _rfc5424(header, rest)
    return _rfc3164(header, rest, received_ns)


# -- RFC 5424 ---------------------------------------------------------------------------------------

# VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP: each a run of PRINTUSASCII.
_5424_HEAD = re.compile(rb"1 ([!-~]+) ([!-~]+) ([!-~]+) ([!-~]+) ([!-~]+) ")
_SD_NAME = rb'[!#-<>-\\^-~]{1,32}'  # PRINTUSASCII except '=', ' ', ']' and '"'
_SD_ELEMENT = re.compile(rb"\[(" + _SD_NAME + rb')((?: ' + _SD_NAME + rb'="(?:[^"\\]|\\.)*")*)\]', re.DOTALL)
_SD_PARAM = re.compile(rb" (" + _SD_NAME + rb')="((?:[^"\\]|\\.)*)"', re.DOTALL)
_SD_ESCAPE = re.compile(rb'\\(["\\\]])')  # RFC 5424 6.3.3: only these three are escapes


def _rfc5424(header: dict, rest: bytes) -> tuple[dict, bytes | None, bool]:
    m = _5424_HEAD.match(rest)
    if m is None:
        return header, rest, True
    stamp, host, app, procid, msgid = m.groups()
    if stamp != _NIL:
        header["timestamp"] = stamp.decode()
        ns = rfc3339_ns(stamp)
        if ns is not None:
            header["timestamp_ns"] = ns
    for name, value in (("hostname", host), ("app_name", app), ("procid", procid), ("msgid", msgid)):
        if value != _NIL:
            header[name] = value.decode()
    pos = m.end()
    if rest[pos : pos + 1] == _NIL:
        pos += 1
    else:
        sd: dict = {}
        while rest[pos : pos + 1] == b"[":
            element = _SD_ELEMENT.match(rest, pos)
            if element is None:
                return header, rest, True  # structured data that does not close
            params = sd.setdefault(element[1].decode(), {})
            for name, value in _SD_PARAM.findall(element[2]):
                params[name.decode()] = _SD_ESCAPE.sub(rb"\1", value).decode()
            pos = element.end()
        if not sd:
            return header, rest, True  # neither "-" nor an element
        header["structured_data"] = sd
    if pos == len(rest):
        return header, None, False
    if rest[pos : pos + 1] != b" ":
        return header, rest, True
    message = rest[pos + 1 :]
    if message.startswith(_BOM):
        message = message[len(_BOM) :]
    return header, message, False


_OFFSET = re.compile(rb"Z|[+-]\d\d:\d\d", re.IGNORECASE)


def rfc3339_ns(stamp: bytes) -> int | None:
    """ns since the epoch of an RFC 3339 stamp (``2026-11-29T16:20:01.123456+01:00``), or None.
    By slicing, not a regex: every message has one, and only its seconds are worth a cache."""
    if len(stamp) < 20:
        return None
    if stamp[-1] in b"Zz":
        offset, fraction = b"Z", stamp[19:-1]
    else:
        offset, fraction = stamp[-6:], stamp[19:-6]
    if fraction:
        digits = fraction[1:]
        if fraction[:1] != b"." or not 1 <= len(digits) <= 9 or not digits.isdigit():
            return None
        ns = int(digits.ljust(9, b"0"))
    else:
        ns = 0
    seconds = _rfc3339_seconds(stamp[:19], offset)
    return None if seconds is None else seconds * 1_000_000_000 + ns


@lru_cache(maxsize=1024)
def _rfc3339_seconds(date_time: bytes, offset: bytes) -> int | None:
    # Cached: a stream of messages shares a handful of seconds.
    if not _OFFSET.fullmatch(offset) or date_time[10:11] not in (b"T", b"t"):
        return None
    try:
        dt = datetime.strptime(date_time[:10].decode() + "T" + date_time[11:].decode(), "%Y-%m-%dT%H:%M:%S")
    except (ValueError, UnicodeDecodeError):
        return None  # out-of-range fields (month 13, a leap second): the text is kept, no ns
    seconds = calendar.timegm(dt.timetuple())
    if offset not in (b"Z", b"z"):
        sign = 1 if offset[:1] == b"+" else -1
        seconds -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
    return seconds


# -- RFC 3164 ---------------------------------------------------------------------------------------

_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")
_TAG = rb'([^\s\[\]:{"]{1,48})(?:\[([^\s\]]{1,128})\])?:(?: |\Z)'  # TAG[PID]: no space, bracket, colon, brace, quote
# One match for the usual forms: the stamp (classic, or RFC 3339), then a tag (the local form;
# tried first), or a hostname and maybe a tag (the remote form), or neither (a message that
# starts with "{" right after the stamp).
_3164 = re.compile(
    rb"(?:((?:" + b"|".join(_MONTHS) + rb") [ \d]\d \d\d:\d\d:\d\d)"
    rb"|(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d))) "
    rb"(?:" + _TAG + rb"|([A-Za-z0-9][A-Za-z0-9._:%\-]{0,254}) (?:" + _TAG + rb")?)?",
    re.IGNORECASE,
)


def _rfc3164(header: dict, rest: bytes, received_ns: int) -> tuple[dict, bytes | None, bool]:
    m = _3164.match(rest)
    if m is None:
        return header, rest, False  # bare <PRI>MSG (Python's SysLogHandler): no tag is guessed
    bsd, iso, tag, pid, host, tag_after_host, pid_after_host = m.groups()
    if bsd is not None:
        header["timestamp"] = bsd.decode()
        ns = _bsd_stamp_ns(bsd, received_ns // _DAY_NS)
    else:
        header["timestamp"] = iso.decode()
        ns = rfc3339_ns(iso)
    if ns is not None:
        header["timestamp_ns"] = ns
    if host is not None:
        header["hostname"] = host.decode()
        tag, pid = tag_after_host, pid_after_host
    if tag is not None:
        header["app_name"] = tag.decode()
        if pid is not None:
            header["procid"] = pid.decode()
    return header, rest[m.end() :], False


_DAY_NS = 86_400 * 1_000_000_000


@lru_cache(maxsize=4096)
def _bsd_stamp_ns(stamp: bytes, received_day: int) -> int | None:
    """A 3164 stamp (``Mmm dd hh:mm:ss ``) has no year and no zone: the sender's local time, here
    taken as the aggregator's, in the year (the receipt's, the one before or after) that puts it
    nearest the receipt's day. Cached: a stream of messages shares a handful of stamps."""
    month = _MONTHS.index(stamp[:3].capitalize()) + 1
    day, hour, minute, second = int(stamp[4:6]), int(stamp[7:9]), int(stamp[10:12]), int(stamp[13:15])
    received_s = received_day * 86_400 + 43_200
    year = time.localtime(received_s).tm_year
    best = None
    for y in (year - 1, year, year + 1):
        try:
            datetime(y, month, day, hour, minute, second)
        except ValueError:
            continue  # Feb 29 of another year, a leap second: that year cannot be it
        seconds = int(time.mktime((y, month, day, hour, minute, second, 0, 0, -1)))
        if best is None or abs(seconds - received_s) < abs(best - received_s):
            best = seconds
    return None if best is None else best * 1_000_000_000


# -- records ------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _probe_for(added: tuple[str, ...]):
    """A msgspec decoder that validates a JSON object and tells which of the names that matter
    to a merge it holds (header fields, their ``syslog_`` names, the aggregator's fields), the
    names, the probe value that means "none of them", what decoding raises, and a struct's values.
    msgspec is imported here, at the first syslog message with a JSON body: a receiving process
    that never sees one does not hold it (README "Memory")."""
    import msgspec

    names = (*HEADER_FIELDS, *(RENAMED_PREFIX + f for f in HEADER_FIELDS), *added)
    attrs = [f"f{i}" for i in range(len(names))]
    probe = msgspec.defstruct("MergeProbe", [(a, msgspec.Raw, msgspec.UNSET) for a in attrs], rename=dict(zip(attrs, names)))
    errors = (msgspec.DecodeError, RecursionError)
    return msgspec.json.Decoder(probe).decode, names, probe(), errors, msgspec.structs.astuple, msgspec.UNSET


def json_members(obj: bytes, added: tuple[str, ...]) -> tuple[bytes, set[str]] | None:
    """The members of the JSON object ``obj`` as text (no braces; members named in ``added``
    cut out), and the names of interest it holds; None if ``obj`` is not a JSON object. Raises
    UnicodeDecodeError for an object that is not UTF-8."""
    decode, names, none_present, probe_errors, astuple, unset = _probe_for(added)
    try:
        seen = decode(obj)
        present = () if seen == none_present else {name for name, value in zip(names, astuple(seen)) if value is not unset}
    except probe_errors:
        try:  # past msgspec's nesting limit orjson decides, as in the JSON path
            value = _loads(obj)
        except orjson.JSONDecodeError:
            return None
        if type(value) is not dict:
            return None
        present = {name for name in names if name in value}
    if not obj.isascii():
        obj.decode("utf-8")
    if present and not present.isdisjoint(added):
        kept = without_members(obj, added)
        members = kept[1:]
    else:
        members = obj.strip(_JSON_WHITESPACE)[1:-1].strip(_JSON_WHITESPACE)
    if b"\n" in members:
        members = members.replace(b"\n", b" ")  # outside strings (where JSON has none): whitespace
    return members, present


def record_line(header: dict, message: bytes | None, suffix: bytes, added: tuple[str, ...]) -> bytes:
    """One output line: the header fields, then the message's JSON members or ``message``, then
    ``suffix`` (``,"received_ns":...,"transport":"..."}\\n``, as ``records.encode_lines`` builds
    it). Raises UnicodeDecodeError for a message that is not UTF-8."""
    if message is not None:
        text = message.lstrip(b" \t")
        if text[:5] == _CEE:
            text = text[5:].lstrip(b" \t")
        merged = json_members(text, added) if text[:1] == b"{" else None
        if merged is not None:
            return merged_line(header, *merged, suffix)
        header["message"] = message.decode("utf-8")
    return merged_line(header, b"", (), suffix)


def merged_line(header: dict, members: bytes, present, suffix: bytes) -> bytes:
    """``header``'s fields and a JSON object's ``members`` (``json_members``) in one line. A
    header field the object also has (``present``) keeps the object's value; the header's moves
    to ``syslog_NAME``, unless the object has that name too."""
    for name in [name for name in header if name in present]:
        value = header.pop(name)
        if RENAMED_PREFIX + name not in present:
            header[RENAMED_PREFIX + name] = value
    head = _dumps(header)[1:-1] if header else b""
    body = head + b"," + members if head and members else head or members
    return b"{" + body + suffix if body else b"{" + suffix[1:]


# -- the producer's side -------------------------------------------------------------------------------


def pri(facility: str, severity: str) -> bytes:
    """``<PRI>`` for a facility and severity name."""
    return b"<%d>" % (FACILITIES.index(facility) * 8 + SEVERITIES.index(severity))


def rfc3164_stamp(ts_ns: int) -> bytes:
    """``Mmm dd hh:mm:ss`` in local time (the day padded with a space, as glibc does)."""
    return _bsd_stamp(ts_ns // 1_000_000_000)


@lru_cache(maxsize=64)
def _bsd_stamp(seconds: int) -> bytes:
    t = time.localtime(seconds)
    return b"%s %2d %02d:%02d:%02d" % (_MONTHS[t.tm_mon - 1], t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def rfc5424_stamp(ts_ns: int) -> bytes:
    """RFC 3339 in UTC with microseconds: ``2026-11-29T16:20:01.123456Z`` (always 27 bytes)."""
    seconds, ns = divmod(ts_ns, 1_000_000_000)
    return b"%s.%06dZ" % (_iso_second(seconds), ns // 1000)


@lru_cache(maxsize=64)
def _iso_second(seconds: int) -> bytes:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode()


def _sd_value(value: str) -> bytes:
    return value.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"]", b"\\]")


def format_rfc5424(facility: str, severity: str, timestamp: bytes | None, hostname: str | None, app_name: str | None,
                   procid: str | None, msgid: str | None, structured_data: dict | None, message: bytes | None) -> bytes:  # fmt: skip
    """An RFC 5424 message (no framing). ``None`` fields are the NILVALUE."""

    def field(value) -> bytes:
        return _NIL if value is None else (value if isinstance(value, bytes) else str(value).encode())

    sd = _NIL
    if structured_data:
        sd = b"".join(
            b"[" + sd_id.encode() + b"".join(b" %s=\"%s\"" % (k.encode(), _sd_value(v)) for k, v in params.items()) + b"]"
            for sd_id, params in structured_data.items()
        )
    head = b"%s1 %s %s %s %s %s %s" % (pri(facility, severity), field(timestamp), field(hostname), field(app_name),
                                        field(procid), field(msgid), sd)  # fmt: skip
    return head if message is None else head + b" " + message


def format_rfc3164(facility: str, severity: str, timestamp: bytes, hostname: str | None, tag: str, procid: str | None,
                   message: bytes) -> bytes:  # fmt: skip
    """An RFC 3164 message: ``<PRI>Mmm dd hh:mm:ss [HOST ]TAG[[PID]]: MSG`` (no framing)."""
    host = b"" if hostname is None else hostname.encode() + b" "
    pid = b"" if procid is None else b"[%s]" % procid.encode()
    return b"%s%s %s%s%s: %s" % (pri(facility, severity), timestamp, host, tag.encode(), pid, message)
