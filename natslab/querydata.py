"""Test data for distributed queries: per host, a log of a given size carrying four tokens at known
frequencies, with the exact count of each recorded (the classic distributed-grep test method).

Tokens and their default frequencies (the share of lines that carry the token; ``TokenRates``)::

    everywhere   50% of lines on every host
    unique       0.01% of lines, on host 1 only
    even         25% of lines, on even-numbered hosts only (h2, h4, ...)
    heavy        50% of lines on host 1, 5% on the others

Each line draws each token independently (seeded per host: the same seed gives the same lines),
so a line can carry several; a token appears at most once per line and nowhere else (the words
around them are checked to contain none of them, in any case), so "lines containing the token" is
exactly the count recorded. A line is a loglab record::

    {"ts_ns":...,"producer":"h1-g0","seq":7,"pid":1,"level":"info","msg":"GET /api/v1/orders heavy ..."}

How it gets into the host's ``aggregated_logs.jsonl``:

* by default through the host's real aggregator: ``producers`` real ``producer`` processes per host
  (``--lines-from``, in the host's namespace) send the prepared lines over the aggregator's Unix
  socket, and the aggregator adds ``received_ns`` and ``transport`` as for any message;
* ``direct=True`` (fast, for big files): the host's aggregator is stopped, the records are appended
  with ``received_ns`` (synthetic, 0.1-1 ms after ``ts_ns``) and ``"transport":"direct"``, and the
  aggregator is started again.

Records of other runs (``loglab hosts produce``) carry none of the tokens, so the counts stay exact
whatever else the file holds.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from producers.messages import LEVELS

TOKENS = ("everywhere", "unique", "even", "heavy")

_WORDS = (
    "GET POST PUT DELETE /api/v1/orders /api/v1/users /api/v2/cart /healthz /metrics status=200 status=201 status=404 "
    "status=500 cache hit miss user session opened closed shard db commit rollback retry queue depth worker request "
    "served in ms bytes upstream timeout connection reset by peer checkpoint written rotation done lag tls handshake ok "
    "failed slow query index scan batch flushed compaction started finished replica sync leader elected disk usage memory "
    "pressure gc pause thread pool saturated client server accepted refused backoff"
).split()
# Nothing around the tokens may contain one, or the recorded counts would be wrong.
assert not any(t in w.lower() for t in TOKENS for w in _WORDS + list(LEVELS))

DEFAULT_MB = 60.0
AGGREGATOR_SUFFIX_BYTES = len(',"received_ns":1764434807123456789,"transport":"unixsock"')


@dataclass(frozen=True)
class TokenRates:
    everywhere: float = 0.5
    unique: float = 0.0001
    even: float = 0.25
    heavy_first: float = 0.5
    heavy_other: float = 0.05

    def for_host(self, index: int) -> dict[str, float]:
        """Per token, the share of lines of host ``index`` (1-based) that carry it."""
        return {
            "everywhere": self.everywhere,
            "unique": self.unique if index == 1 else 0.0,
            "even": self.even if index % 2 == 0 else 0.0,
            "heavy": self.heavy_first if index == 1 else self.heavy_other,
        }

    @classmethod
    def parse(cls, text: str) -> "TokenRates":
        """``everywhere=0.5,unique=0.0001,even=0.25,heavy=0.5/0.05`` (heavy: host 1 / the others)."""
        values = asdict(cls())
        for item in filter(None, (s.strip() for s in text.split(","))):
            key, _, value = item.partition("=")
            if key == "heavy":
                first, _, other = value.partition("/")
                values["heavy_first"] = float(first)
                values["heavy_other"] = float(other or first)
            elif key in ("everywhere", "unique", "even"):
                values[key] = float(value)
            else:
                raise ValueError(f"unknown token {key!r} (everywhere, unique, even, heavy)")
        rates = cls(**values)
        if not all(0.0 <= v <= 1.0 for v in asdict(rates).values()):
            raise ValueError("a frequency is a share of lines, between 0 and 1")
        return rates


@dataclass
class HostData:
    """What was written to one host: lines and the count of each token (exact)."""

    host: str
    lines: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKENS, 0))
    bytes_written: int = 0  # the generated lines (through the aggregator, it adds its fields)


class HostLog:
    """The lines of host ``index``: deterministic for (seed, index)."""

    def __init__(self, host: str, index: int, rates: TokenRates, seed: int = 0, producers: int = 4) -> None:
        self.host = host
        self.rates = list(rates.for_host(index).items())
        self.rng = random.Random(seed * 1_000_003 + index)
        self.producers = [f"{host}-g{i}" for i in range(producers)]
        self.seqs = [0] * producers
        self.data = HostData(host)

    def line(self, ts_ns: int) -> tuple[int, bytes]:
        """One record (no newline) and the index of the producer that sends it."""
        rng = self.rng
        words = rng.choices(_WORDS, k=rng.randint(14, 26))
        words.append(f"id={rng.getrandbits(48):012x}")
        words.append(f"latency_ms={rng.randint(1, 5000)}")
        for token, rate in self.rates:
            if rate and rng.random() < rate:
                words.insert(rng.randrange(len(words) + 1), token)
                self.data.tokens[token] += 1
        k = rng.randrange(len(self.producers))
        seq = self.seqs[k]
        self.seqs[k] += 1
        level = LEVELS[rng.randrange(len(LEVELS))]
        text = (f'{{"ts_ns":{ts_ns},"producer":"{self.producers[k]}","seq":{seq},"pid":{k + 1},'
                f'"level":"{level}","msg":"{" ".join(words)}"}}')  # fmt: skip
        self.data.lines += 1
        return k, text.encode()


def lines_for(target_bytes: int, average_line: int) -> int:
    return max(1, target_bytes // average_line)


def generate(host: str, index: int, target_bytes: int, rates: TokenRates, seed: int, producers: int, direct: bool,
             start_ns: int, spacing_ns: int = 250_000) -> tuple[list[list[bytes]], HostData]:  # fmt: skip
    """The lines of one host, per producer, newline-terminated; ``direct``: with the fields the
    aggregator would add. Stops once ``target_bytes`` of final records are reached."""
    log = HostLog(host, index, rates, seed, producers)
    per_producer: list[list[bytes]] = [[] for _ in range(producers)]
    rng = random.Random(seed + 7919 * index)
    total = 0
    ts = start_ns
    suffix = AGGREGATOR_SUFFIX_BYTES
    while total < target_bytes:
        k, line = log.line(ts)
        if direct:
            line = line[:-1] + b',"received_ns":%d,"transport":"direct"}' % (ts + rng.randint(100_000, 1_000_000))
            total += len(line) + 1
        else:
            total += len(line) + 1 + suffix
        per_producer[k].append(line + b"\n")
        log.data.bytes_written += len(line) + 1
        ts += spacing_ns
    return per_producer, log.data


def fill(pipeline, mb: float = DEFAULT_MB, rates: TokenRates = TokenRates(), seed: int = 0, producers: int = 4,
         direct: bool = False, echo=None) -> dict[str, HostData]:  # fmt: skip
    """Fill every host of ``pipeline`` (a running ``natslab.pipeline.Pipeline``) with ``mb`` MB of
    generated records; return the exact counts per host. Through the aggregators, every host's
    producers run at once; ``direct``, the hosts are written one after another."""
    out: dict[str, HostData] = {}
    scratch = Path(tempfile.mkdtemp(prefix="ll-querydata-"))
    # Records of this fill sit just before now: a time range in "minutes ago" finds them.
    start_ns = time.time_ns() - int(mb * 1e6 / 256) * 250_000
    say = echo or (lambda text: None)
    try:
        started = []
        for index, h in enumerate(pipeline.hosts.hosts, 1):
            t0 = time.monotonic()
            per_producer, out[h.name] = generate(h.name, index, int(mb * 1e6), rates, seed, producers, direct, start_ns)
            if direct:
                _append_direct(pipeline, h, per_producer)
                say(f"fill: {h.name}: {out[h.name].lines} records appended, {_counts(out[h.name])} ({time.monotonic() - t0:.1f} s)")
            else:
                started.append((h, _start_producers(pipeline, h, per_producer, scratch)))
        for h, (before, procs) in started:
            _finish_producers(pipeline, h, before, procs, out[h.name])
            say(f"fill: {h.name}: {out[h.name].lines} records through its aggregator, {_counts(out[h.name])}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def _start_producers(pipeline, h, per_producer: list[list[bytes]], scratch: Path):
    """Real producers, in the host's namespace, sending the prepared lines to its aggregator."""
    from benchmarks.processes import ProducerProc, count_lines

    before = count_lines(pipeline.output(h))
    procs = []
    for k, lines in enumerate(per_producer):
        if lines:
            path = scratch / f"{h.name}-g{k}.jsonl"
            path.write_bytes(b"".join(lines))
            proc = ProducerProc("unixsock", pipeline.addresses[h.name], f"{h.name}-g{k}", len(lines), scratch, "--quiet",
                                "--batch", "64", "--lines-from", str(path), netns=h.netns, name=f"fill-{h.name}-g{k}")  # fmt: skip
            procs.append(pipeline.group.start(proc))
    return before, procs


def _finish_producers(pipeline, h, before: int, procs, data: HostData) -> None:
    from benchmarks.processes import count_lines, wait_until

    for proc in procs:
        proc.wait(600)
        if proc.returncode() != 0:
            raise RuntimeError(f"{proc.name} exited {proc.returncode()}:\n{proc.tail()}")
    # The producers are done; the aggregator writes what it holds on its own schedule.
    path = pipeline.output(h)
    wait_until(lambda: count_lines(path) >= before + data.lines, f"{data.lines} records in {path}", 120, 0.05)


def _append_direct(pipeline, host, per_producer: list[list[bytes]]) -> None:
    """Stop the host's aggregator (it owns and locks the file), append, start it again."""
    agg = pipeline.aggregator(host)
    if agg.running():
        agg.stop()
    with open(pipeline.output(host), "ab") as f:
        for i in range(max(len(lines) for lines in per_producer)):
            # Interleave the producers, as an aggregator's output does.
            f.write(b"".join(lines[i] for lines in per_producer if i < len(lines)))
    pipeline.start_aggregator(host)


def _counts(d: HostData) -> str:
    return ", ".join(f"{t} {n}" for t, n in d.tokens.items())


# -- the record of what was filled, beside the lab's state ----------------------------------------

def save_expected(path: Path, filled: dict[str, HostData], rates: TokenRates, seed: int) -> dict:
    """Add this fill's counts to those already recorded in ``path`` (fills accumulate)."""
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        record = {"version": 1, "hosts": {}, "fills": []}
    for host, d in filled.items():
        h = record["hosts"].setdefault(host, {"lines": 0, "tokens": dict.fromkeys(TOKENS, 0)})
        h["lines"] += d.lines
        for t, n in d.tokens.items():
            h["tokens"][t] = h["tokens"].get(t, 0) + n
    record["fills"].append({"rates": asdict(rates), "seed": seed, "at_unix_ns": time.time_ns(),
                            "hosts": {h: asdict(d) for h, d in filled.items()}})  # fmt: skip
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)
    return record
