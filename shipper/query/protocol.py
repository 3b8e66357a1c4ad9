"""The query protocol between ``querier`` and the agents: one definition for both sides.

Subjects (core NATS, request/reply, no queue group)::

    loglab.query.<host>     the agent of <host> subscribes; the querier publishes one query per host,
                            reply subject <querier inbox>.<host>. A query to a host whose agent is not
                            subscribed comes back at once as the server's 503 status ("no responders"),
                            which is how a dead host is told apart from a slow one.

A query is data, never a command line: the JSON body below (``Query``). The agent builds the
scanner's argv from it (``scan.py``); the pattern is an argument after ``--``, never parsed by a
shell.

The answer: messages to the reply subject, each with headers ``Loglab-Kind`` and ``Loglab-Agent``:

* ``accepted``: JSON ``{host, agent, tool, files: [{path, size}]}``, sent before scanning;
* ``data``: whole matching lines, newline-terminated, at most ``chunk_bytes`` (a longer line goes
  alone, up to the server's payload limit); header ``Loglab-File`` (index into ``files``);
* ``progress``: JSON ``{matches, bytes_scanned}``, sent when nothing else was for ``PROGRESS_S``;
* ``final``: JSON ``Summary``. ``accepted``, ``data`` and ``progress`` carry a reply subject (the
  agent's ``<inbox>.<query id>.<n>``): the querier answers each, empty, once it has written or
  spooled it. The agent keeps at most ``window`` messages unanswered, so memory on both sides is
  bounded by ``window x chunk_bytes`` whatever the match count; when the querier goes away, the
  server answers the agent's next message with a 503 and the agent cancels the query.

A deadline (``timeout_s``) bounds every query on the agent: the scanner is killed when it passes,
and the final says ``deadline`` with what was found until then.
"""

from __future__ import annotations

import re

import msgspec

QUERY_PREFIX = "loglab.query."
REGISTRY_BUCKET = "LOGLAB_AGENTS"
VERSION = 1

KIND = "Loglab-Kind"
AGENT = "Loglab-Agent"
FILE = "Loglab-File"
STATUS = "Status"  # the server's own status header (503: no responders)
NO_RESPONDERS = "503"

ACCEPTED, DATA, PROGRESS, FINAL = "accepted", "data", "progress", "final"
PROGRESS_S = 0.5

# Final statuses an agent sends; the querier adds NO_RESPONDERS_STATUS and TIMEOUT for hosts that
# sent no final.
OK, DEADLINE, ERROR, BUSY = "ok", "deadline", "error", "busy"
NO_RESPONDERS_STATUS, TIMEOUT = "no_responders", "timeout"

DEFAULT_CHUNK_BYTES = 256 * 1024
DEFAULT_WINDOW = 8
MAX_PATTERN_BYTES = 64 * 1024
MAX_TIMEOUT_S = 3600.0
_QUERY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def subject_for(host: str) -> str:
    return QUERY_PREFIX + host


class Query(msgspec.Struct, kw_only=True):
    """What the querier asks. Field filters and the time range apply after the text match."""

    id: str
    pattern: str
    fixed: bool = False  # a fixed string, not a regular expression
    ignore_case: bool = False
    invert: bool = False  # lines that do NOT match
    count_only: bool = False
    max_results: int | None = None  # per host, after the filters
    fields: dict[str, str] = {}  # record field -> value, all must be equal (level=error)
    since_ns: int | None = None  # received_ns >= since_ns
    until_ns: int | None = None  # received_ns < until_ns
    rotated: bool = False  # also the rotated files beside the current one
    timeout_s: float = 10.0  # the agent's deadline, from when it receives the query
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    window: int = DEFAULT_WINDOW
    v: int = VERSION

    @property
    def filtered(self) -> bool:
        """Records must be parsed (field filters or a time range), not only matched as text."""
        return bool(self.fields) or self.since_ns is not None or self.until_ns is not None

    def validate(self) -> None:
        """Raise ValueError with a reason the querier can print."""
        if self.v != VERSION:
            raise ValueError(f"protocol version {self.v}; this agent speaks {VERSION}")
        if not _QUERY_ID.match(self.id):
            raise ValueError("query id must be 1-64 letters, digits, _ or -")
        if not self.pattern:
            raise ValueError("empty pattern")
        if "\0" in self.pattern or len(self.pattern.encode()) > MAX_PATTERN_BYTES:
            raise ValueError(f"pattern must hold no NUL byte and be at most {MAX_PATTERN_BYTES} bytes")
        if self.max_results is not None and self.max_results < 1:
            raise ValueError("max_results must be at least 1")
        if not 0 < self.timeout_s <= MAX_TIMEOUT_S:
            raise ValueError(f"timeout_s must be in (0, {MAX_TIMEOUT_S:.0f}]")
        if not 1024 <= self.chunk_bytes <= 8 << 20:
            raise ValueError("chunk_bytes must be in [1024, 8 MiB]")
        if not 1 <= self.window <= 256:
            raise ValueError("window must be in [1, 256]")
        if any(not k for k in self.fields):
            raise ValueError("a field filter needs a field name")

    def encode(self) -> bytes:
        return msgspec.json.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> "Query":
        """Decode and validate (ValueError on anything wrong)."""
        try:
            q = msgspec.json.decode(data, type=cls)
        except msgspec.DecodeError as exc:
            raise ValueError(f"not a query: {exc}") from None
        q.validate()
        return q


class FileSummary(msgspec.Struct):
    path: str
    size: int  # bytes when the scan of this file started
    matches: int = 0
    status: str = OK  # or "missing", "error: ..."


class Summary(msgspec.Struct, kw_only=True):
    """The agent's final word on one query."""

    host: str
    status: str  # OK, DEADLINE, ERROR, BUSY
    matches: int = 0
    bytes_scanned: int = 0
    bytes_returned: int = 0  # payload of the data messages
    scan_s: float = 0.0  # from receipt of the query to the end of the last scanner
    wait_s: float = 0.0  # of which waiting for the querier's acks (flow control)
    filter_s: float = 0.0  # of which parsing records for field filters / the time range
    tool: str = ""
    files: list[FileSummary] = []
    lines_too_long: int = 0  # matching lines longer than the payload limit: counted, not sent
    error: str | None = None

    def encode(self) -> bytes:
        return msgspec.json.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> "Summary":
        return msgspec.json.decode(data, type=cls)


class Accepted(msgspec.Struct, kw_only=True):
    host: str
    agent: str
    tool: str
    files: list[FileSummary] = []

    def encode(self) -> bytes:
        return msgspec.json.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> "Accepted":
        return msgspec.json.decode(data, type=cls)


class Progress(msgspec.Struct):
    matches: int
    bytes_scanned: int


class Registration(msgspec.Struct, kw_only=True):
    """An agent's entry in the registry (KV bucket ``REGISTRY_BUCKET``, key = host)."""

    host: str
    file: str
    agent: str
    pid: int
    started_unix_ns: int
    stopped_unix_ns: int | None = None  # set at a clean stop; a crashed agent leaves it None
