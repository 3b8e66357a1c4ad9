"""Per-host blocks that never interleave, with memory bounded whatever the answers hold.

One host at a time is *live*: its data goes straight to the output as it arrives. Every other
host's data goes to its spool (a ``SpooledTemporaryFile``: memory up to ``spool_bytes``, then a
temporary file), and is written out as one piece when its turn comes:

* ``order="host"``: blocks in the order of the hosts list; the first host is live, and when it
  is done the next one's spool is written out and it becomes live in turn;
* ``order="completion"``: a host that is done while nobody is live is written out at once; else
  the first host to send data is live, and when it is done the finished hosts follow in the order
  they finished.

Text blocks::

    == h1 /srv/h1/aggregated_logs.jsonl          (again when the block moves on to another file)
    {"ts_ns":...}                                 the matching lines, unchanged
    == h1: 1234 matches, 62.9 MB scanned in 0.112 s (rg)

JSON (``--json``): one object per host and line, ``{"host", "records": [...], "status",
"matches", "bytes_scanned", "elapsed_s", ...}`` (``records`` left out with ``--count``); the
records are the lines themselves (the aggregator writes JSON objects), streamed the same way.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

import orjson

from shipper.query import protocol as p

from .gather import HostAnswer, Output

SPOOL_BYTES = 8 << 20


@dataclass
class Block:
    host: str
    spool: tempfile.SpooledTemporaryFile | None = None
    segments: list[list[int]] = field(default_factory=list)  # [file index, bytes] in spool order
    live: bool = False
    opened: bool = False  # its header (text) or its object's start (JSON) is written
    printed: bool = False  # all of it is written
    file_index: int | None = None
    records: int = 0  # JSON: records written, for the commas
    answer: HostAnswer | None = None


class BlockPrinter(Output):
    def __init__(self, out, hosts: list[str], order: str = "host", json: bool = False, count_only: bool = False,
                 spool_bytes: int = SPOOL_BYTES) -> None:  # fmt: skip
        if order not in ("host", "completion"):
            raise ValueError("order is host or completion")
        self.out = out
        self.blocks = {h: Block(h) for h in hosts}
        self.hosts = list(hosts)
        self.order = order
        self.json = json
        self.count_only = count_only
        self.spool_bytes = spool_bytes
        self.live: Block | None = None
        self.next_in_order = 0  # order "host": index of the next block to print
        self.finished: list[Block] = []  # order "completion": done, waiting for the live one

    # -- from the gatherer ------------------------------------------------------------------------
    def data(self, answer: HostAnswer, file_index: int, lines: bytes) -> None:
        b = self.blocks[answer.host]
        b.answer = answer
        turn = self.order == "completion" or (self.next_in_order < len(self.hosts) and self.hosts[self.next_in_order] == b.host)
        if self.live is None and turn:
            self._go_live(b)
        if b.live:
            self._write(b, file_index, lines)
            return
        if b.spool is None:
            b.spool = tempfile.SpooledTemporaryFile(max_size=self.spool_bytes, prefix="querier-")
        b.spool.write(lines)
        if b.segments and b.segments[-1][0] == file_index:
            b.segments[-1][1] += len(lines)
        else:
            b.segments.append([file_index, len(lines)])

    def done(self, answer: HostAnswer) -> None:
        b = self.blocks[answer.host]
        b.answer = answer
        if b.live:
            self._close(b)
            self.live = None
        elif self.order == "completion":
            self.finished.append(b)
        self._advance()

    def close(self) -> None:
        """Every block not written yet (hosts that never finished) goes out now, in order."""
        for h in self.hosts:
            b = self.blocks[h]
            if not b.printed and b.answer is not None:
                if not b.live:
                    self._go_live(b)
                self._close(b)
        self.out.flush()

    # -- order ------------------------------------------------------------------------------------
    def _advance(self) -> None:
        if self.live is not None:
            return
        if self.order == "completion":
            while self.finished:
                b = self.finished.pop(0)
                self._go_live(b)
                self._close(b)
            self.live = None
            return
        while self.next_in_order < len(self.hosts):
            b = self.blocks[self.hosts[self.next_in_order]]
            if b.printed:
                self.next_in_order += 1
                continue
            if b.answer is None:
                return  # nothing from it yet: it goes live with its first data
            self._go_live(b)
            if not b.answer.done:
                return
            self._close(b)
            self.live = None
            self.next_in_order += 1

    def _go_live(self, b: Block) -> None:
        """Make ``b`` the live block: write what it spooled, then its data goes straight out."""
        self.live = b
        b.live = True
        if b.spool is not None:
            b.spool.seek(0)
            for index, size in b.segments:
                remaining = size
                while remaining:
                    piece = b.spool.read(min(remaining, 1 << 20))
                    remaining -= len(piece)
                    self._write(b, index, piece)
            b.spool.close()
            b.spool, b.segments = None, []

    # -- writing ----------------------------------------------------------------------------------
    def _files(self, b: Block) -> list[p.FileSummary]:
        a = b.answer
        return (a.summary.files if a and a.summary else a.files) if a else []

    def _write(self, b: Block, file_index: int, lines: bytes) -> None:
        if self.json:
            if not b.opened:
                self.out.write(b'{"host":' + orjson.dumps(b.host) + (b"" if self.count_only else b',"records":['))
                b.opened = True
            if lines:
                body, n = _as_json_array_items(lines)
                self.out.write((b"," if b.records else b"") + body)
                b.records += n
            return
        if not b.opened or b.file_index != file_index:
            files = self._files(b)
            path = files[file_index].path if file_index < len(files) else f"file #{file_index}"
            self.out.write(f"== {b.host} {path}\n".encode())
            b.opened = True
            b.file_index = file_index
        self.out.write(lines)

    def _close(self, b: Block) -> None:
        a = b.answer
        if self.json:
            if not b.opened:
                self._write(b, 0, b"")
            rest = {k: v for k, v in a.to_dict().items() if k != "host"}
            tail = orjson.dumps(rest)
            self.out.write((b"," if self.count_only else b"],") + tail[1:] + b"\n")
        elif b.opened:
            self.out.write(f"== {b.host}: {host_line(a)}\n".encode())
        b.printed = True
        b.live = False
        self.out.flush()


def _as_json_array_items(lines: bytes) -> tuple[bytes, int]:
    """Newline-terminated JSON lines -> ``a,b,c`` (and how many). Lines that are not one JSON
    object each (a torn last line of a live file) become JSON strings, so the output stays JSON."""
    n = lines.count(b"\n")
    body = lines[:-1] if lines.endswith(b"\n") else lines
    if body.startswith(b"{") and body.endswith(b"}") and body.count(b"}\n{") == n - 1:
        return body.replace(b"\n", b","), n
    items = []
    for line in body.split(b"\n"):
        try:
            orjson.loads(line)
            ok = line.startswith(b"{")
        except orjson.JSONDecodeError:
            ok = False
        items.append(line if ok else orjson.dumps(line.decode(errors="replace")))
    return b",".join(items), len(items)


# -- the human summary ----------------------------------------------------------------------------


def host_line(a: HostAnswer) -> str:
    """``1234 matches, 62.9 MB scanned in 0.112 s (rg)``, or what went wrong."""
    elapsed = f"{a.done_s:.3f} s" if a.done_s is not None else "?"
    if a.status == p.OK:
        return f"{a.matches} matches, {a.bytes_scanned / 1e6:.1f} MB scanned in {elapsed} ({a.tool})"
    if a.status == p.NO_RESPONDERS_STATUS:
        return f"no responders after {elapsed}: {a.error}{'; ' + a.note if a.note else ''}"
    if a.status == p.TIMEOUT:
        return f"timeout (slow): {a.error}{'; ' + a.note if a.note else ''}"
    extra = f", {a.matches} matches before it" if a.status == p.DEADLINE else ""
    return f"{a.status}: {a.error}{extra} ({elapsed})"


def summary_table(answers: list[HostAnswer]) -> str:
    rows = [("host", "status", "matches", "scanned_MB", "elapsed_s", "scan_MB/s", "returned_MB", "tool")]
    for a in answers:
        scan_s = a.summary.scan_s if a.summary else 0.0
        answered = a.status in (p.OK, p.DEADLINE)
        rows.append((
            a.host, a.status, str(a.matches) if answered or a.matches else "-",
            f"{a.bytes_scanned / 1e6:.1f}" if answered else "-",
            f"{a.done_s:.3f}" if a.done_s is not None else "-",
            f"{a.bytes_scanned / 1e6 / scan_s:.0f}" if answered and scan_s > 0 else "-",
            f"{a.bytes_received / 1e6:.1f}" if a.bytes_received else "0.0" if answered else "-",
            a.tool or "-",
        ))  # fmt: skip
    ok = [a for a in answers if a.status == p.OK]
    rows.append(("all", f"{len(ok)}/{len(answers)} ok", str(sum(a.matches for a in answers)),
                 f"{sum(a.bytes_scanned for a in answers) / 1e6:.1f}",
                 f"{max((a.done_s or 0) for a in answers):.3f}" if answers else "-", "-",
                 f"{sum(a.bytes_received for a in answers) / 1e6:.1f}", ""))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 or i == 7 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    for a in answers:
        if a.status != p.OK:
            lines.append(f"{a.host}: {host_line(a)}")
    return "\n".join(lines)
