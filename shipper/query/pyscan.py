"""``python -m shipper.query.pyscan [--fixed] [--ignore-case] [--invert-match] [--count] -- PATTERN FILE``:
the query agent's last-resort scanner, for machines with neither ripgrep nor grep. It behaves like
``grep`` for the agent: matching lines on stdout (or their count with ``--count``), exit 0 when
something matched, 1 when nothing did, 2 on an error (a bad pattern, an unreadable file).

Python's ``re`` backtracks, so a pathological pattern can run for ever on one line: the agent kills
this process at the query's deadline, and ``--deadline S`` (optional) makes it end itself too
(SIGALRM with its default action ends the process even inside the regex engine's C code).
Bytes in, bytes out: lines are never decoded, so any encoding passes through unchanged.
"""

from __future__ import annotations

import re
import signal
import sys

BLOCK = 1 << 20


def main(argv: list[str]) -> int:
    fixed = ignore_case = invert = count = False
    deadline = 0
    args = list(argv)
    while args and args[0] != "--":
        opt = args.pop(0)
        if opt == "--fixed":
            fixed = True
        elif opt == "--ignore-case":
            ignore_case = True
        elif opt == "--invert-match":
            invert = True
        elif opt == "--count":
            count = True
        elif opt == "--deadline" and args:
            deadline = max(1, int(float(args.pop(0)) + 0.999))
        else:
            print(f"pyscan: unknown option {opt!r}", file=sys.stderr)
            return 2
    if len(args) != 3:
        print("pyscan: usage: pyscan [options] -- PATTERN FILE", file=sys.stderr)
        return 2
    _, pattern, path = args
    from .scan import die_with_parent

    die_with_parent()  # this scanner backtracks: it must not outlive the agent that started it
    if deadline:
        signal.alarm(deadline)
    try:
        needle = pattern.encode()
        if fixed and not ignore_case:
            matches = lambda line: needle in line  # noqa: E731
        else:
            flags = re.IGNORECASE if ignore_case else 0
            regex = re.compile(re.escape(needle) if fixed else needle, flags)
            matches = lambda line: regex.search(line) is not None  # noqa: E731
    except re.error as exc:
        print(f"pyscan: bad pattern: {exc}", file=sys.stderr)
        return 2
    try:
        f = open(path, "rb")
    except OSError as exc:
        print(f"pyscan: {path}: {exc.strerror}", file=sys.stderr)
        return 2
    n = 0
    out = sys.stdout.buffer
    with f:
        tail = b""
        while True:
            block = f.read(BLOCK)
            if not block:
                lines = [tail] if tail else []
            else:
                block = tail + block
                cut = block.rfind(b"\n")
                if cut < 0:
                    tail = block
                    continue
                lines, tail = block[:cut].split(b"\n"), block[cut + 1 :]
            kept = [line for line in lines if matches(line) != invert]
            n += len(kept)
            if kept and not count:
                out.write(b"\n".join(kept) + b"\n")
            if not block:
                break
    if count:
        out.write(b"%d\n" % n)
    out.flush()
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
