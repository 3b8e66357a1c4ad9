"""Cost per message of each input path, in one process: framing and reading, no syscalls.

``python -m benchmarks.format_cost [--messages N] [--size B] [--read-bytes B] [--repeat R] [--out FILE]``

The producer's own messages (200 bytes by default, ``producers/messages.py``) in each format and
framing, cut into 64 KiB reads as the aggregator reads them under load (``--read-bytes 200``: one
message per read, as at a moderate rate, where what is paid per read shows), through the stream framer and the
decoder of ``--format auto`` (and ``json``/``syslog``/``raw`` where they differ): what each path
costs the aggregator per message on top of the system calls, which ``loglab bench`` measures
whole. Repeated, the median and min-max printed (ns per message) and written as JSON with
``--out``.

``json-encode_lines`` is the JSON path called as the aggregator called it before input formats
existed (``LineFramer`` + ``records.encode_lines``): run this file with an older checkout first on
the path (``PYTHONPATH=OLD python benchmarks/format_cost.py``: the file from here, the aggregator
and producer from there) and only that path is measured, so the two can be compared with the same
figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from aggregator.framing import LineFramer
from aggregator.records import encode_lines

READ_BYTES = 64 * 1024
RECEIVED_NS = 1_795_000_000_000_000_000


def _reads(data: bytes, read_bytes: int = READ_BYTES) -> list[bytes]:
    return [data[i : i + read_bytes] for i in range(0, len(data), read_bytes)]


def _messages(fmt: str, framing: str, n: int, size: int) -> bytes:
    from producers.messages import MessageFactory

    try:
        factory = MessageFactory("p0", 4242, size, 0, fmt, framing, hostname="host")
    except TypeError:  # an older producer: JSON lines only
        factory = MessageFactory("p0", 4242, size, 0)
    return b"".join(factory.batch(first, min(64, n - first), RECEIVED_NS - 1000) for first in range(0, n, 64))


def _time_path(reads: list[bytes], make_framer, encode, n: int) -> float:
    """ns per message for one pass: every read framed, then its lines encoded (as the loop does)."""
    framer = make_framer()
    out: list[bytes] = []
    rejects: list = []
    written = 0
    start = time.perf_counter_ns()
    for data in reads:
        lines: list[bytes] = []
        framer.feed(data, lines, rejects)
        written += encode(lines, RECEIVED_NS, "tcp", out, rejects, None, newline_free=True)[0]
        out.clear()
    elapsed = time.perf_counter_ns() - start
    if written != n or rejects:
        raise AssertionError(f"expected {n} messages written, got {written} and {len(rejects)} rejects")
    return elapsed / n


def paths(n: int, size: int, read_bytes: int = READ_BYTES) -> dict:
    """name -> (reads, framer factory, encode). Only the JSON path on a checkout without formats."""
    json_reads = _reads(_messages("json", "newline", n, size), read_bytes)
    found = {"json-encode_lines": (json_reads, lambda: LineFramer(65536), encode_lines)}
    try:
        from aggregator.formats import Decoder
        from aggregator.framing import OctetFramer, LenPrefixFramer
    except ImportError:
        return found
    for fmt in ("auto", "json"):
        found[f"json-format-{fmt}"] = (json_reads, lambda: LineFramer(65536), Decoder(fmt).encode)
    for fmt in ("rfc3164", "rfc5424"):
        reads = _reads(_messages(fmt, "newline", n, size), read_bytes)
        found[f"{fmt}-format-auto"] = (reads, lambda: LineFramer(65536), Decoder("auto").encode)
        found[f"{fmt}-format-syslog"] = (reads, lambda: LineFramer(65536), Decoder("syslog").encode)
    found["json-format-raw"] = (json_reads, lambda: LineFramer(65536), Decoder("raw").encode)
    found["json-octet-auto"] = (_reads(_messages("json", "octet", n, size), read_bytes), lambda: OctetFramer(65536), Decoder("auto").encode)
    found["json-lenprefix-auto"] = (_reads(_messages("json", "lenprefix", n, size), read_bytes), lambda: LenPrefixFramer(65536),
                                    Decoder("auto").encode_severity_framed)  # fmt: skip
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000, help="messages per pass (default 200,000)")
    parser.add_argument("--size", type=int, default=200, help="bytes per message on the wire (default 200)")
    parser.add_argument("--read-bytes", type=int, default=READ_BYTES, help="bytes per read (default 65536; 200: one message per read)")
    parser.add_argument("--repeat", type=int, default=7, help="passes per path, interleaved (default 7)")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    found = paths(args.messages, args.size, args.read_bytes)
    samples: dict[str, list[float]] = {name: [] for name in found}
    for _ in range(args.repeat):  # interleaved: a drift in the machine's speed touches every path alike
        for name, (reads, make_framer, encode) in found.items():
            samples[name].append(_time_path(reads, make_framer, encode, args.messages))
    result = {name: {"median_ns": statistics.median(v), "min_ns": min(v), "max_ns": max(v), "samples_ns": v}
              for name, v in samples.items()}  # fmt: skip
    width = max(map(len, result))
    for name, r in result.items():
        print(f"{name:<{width}}  {r['median_ns']:7.0f} ns/msg  [{r['min_ns']:.0f}-{r['max_ns']:.0f}]")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"messages": args.messages, "size": args.size, "read_bytes": args.read_bytes, "repeat": args.repeat, "python": sys.version.split()[0],
                       "paths": result}, f, indent=2)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
