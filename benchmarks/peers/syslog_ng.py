"""syslog-ng as a benchmark peer: the same producers, a real log daemon on the other end.

Interface (the face of ``benchmarks.systems.System`` plus a few extras; what every peer shares
is in ``daemon.py``)::

    ok, why = SyslogNgPeer.available()      # (True, "") or (False, reason); no process started
    SyslogNgPeer.version()                  # "3.38.1" ("" if not available); also on instances
    SyslogNgPeer.supports(transport, fmt, framing)

    peer = SyslogNgPeer(transport, workdir, rcvbuf=None, max_connections=1024,
                        max_line_bytes=65536, pipe_size=1 << 20, fetch_limit=500,
                        fmt="json", framing="newline")
    address = peer.start(timeout=10.0)      # loglab address format: a path (unixsock, unixgram,
                                            # fifo) or "127.0.0.1:PORT" (tcp, udp)
    peer.pid, peer.config_text, peer.output_path, peer.address, peer.name == "syslog-ng"
    peer.stats()                            # live counters from the control socket (dict)
    peer.effective_rcvbuf                   # datagram kinds: SO_RCVBUF of syslog-ng's socket
    peer.kill()                             # error path: SIGKILL, no drain, clean up
    with SyslogNgPeer(...) as peer: ...     # stop() on exit (kill() if an exception escapes)
    summary = peer.stop(timeout=10.0)       # drains, SIGTERM, reaps, removes socket/fifo; dict:
        # messages_received, messages_written, messages_dropped, messages_queued,
        # truncated_messages, drained (bool), exit_code, killed (bool), effective_rcvbuf,
        # counters {raw name: n}
    for rec in peer.read_records(): ...     # producer's JSON object + received_ns (int, ns)
                                            # + transport; after the loop:
    peer.parse_errors, peer.bad_lines       # lines that were not "<ts>\\t<JSON object>"

``transport`` is one of loglab's names; it maps onto syslog-ng sources as
unixsock -> ``unix-stream()``, unixgram -> ``unix-dgram()``, tcp -> ``tcp()``, udp -> ``udp()``,
fifo -> ``pipe()`` (seqpacket: none). ``fmt`` is the producer's ``--format``: ``json`` lines are
read with ``flags(no-parse)`` (the line is the message), ``rfc3164`` with syslog-ng's default
parser and ``rfc5424`` with ``flags(syslog-protocol)``, so ``${MSG}`` is the JSON object either
way; ``framing`` ``octet`` is served on tcp (``network(transport("framed"))``; ``unix-stream()``
has no framed mode), ``lenprefix`` nowhere. Everything syslog-ng touches lives in ``workdir``: config, control socket,
persist file, pid file, stderr (its internal log), the output file and the socket / FIFO.
The process runs in the foreground (``-F``), so ``pid`` is the daemon itself (no supervisor) and
the harness can measure it with psutil.

Output. The ``file()`` destination writes ``${R_UNIXTIME}\\t${MSG}\\n``: the receipt time with
microsecond precision (``frac-digits(6)``; syslog-ng keeps timestamps in microseconds, there is
nothing finer) and the message. JSON sources use ``flags(no-parse)``, so ``MSG`` is the producer's
JSON object exactly as sent, without its line terminator: syslog-ng splits stream input on ``\\n`` and,
for datagrams (``unix-dgram()``, ``udp()``), strips trailing newlines, so the contract's
newline-terminated datagrams give no blank lines. ``received_ns`` is that receipt time in ns.
It is syslog-ng's own receipt stamp, taken from a clock cached per read job, so the messages of
one job share it (see "Receipt time at saturation" below); the aggregator stamps each read.
A datagram holding several lines stays one message (with embedded newlines), which shows up as
parse errors: the contract sends one line per datagram.

Readiness (``start``) is observed, not slept on (``daemon.py``): the listening socket, and here
the control socket too. Datagram receive buffer: with ``rcvbuf`` the source gets ``so-rcvbuf()``,
and the peer applies SO_RCVBUFFORCE as the aggregator does (``daemon.py``).

Stop: first wait until syslog-ng is idle (its source counter has not moved for ``drain_quiet``
seconds and the destination has written everything it received: nothing queued), then SIGTERM,
wait, SIGKILL if it hangs. syslog-ng does write its queue out on a clean exit, but what it has
not read by then is not guaranteed to be read; the drain makes "every message that reached
syslog-ng is in the file" independent of that, and ``drained`` in the summary says whether it
caught up within the time allowed.

Receipt time at saturation: syslog-ng stamps a message with a clock cached when the read job
starts, and one job reads up to ``log-fetch-limit`` messages (``fetch_limit``, 500 here for
throughput). While syslog-ng keeps up, a job only reads what is already there, so the stamp is the
receive time to within microseconds. When it is saturated (data keeps arriving during a job), the
later messages of a job carry a stamp taken before they were even sent: ``received_ns`` can be up
to one job's duration (~ms at 500) early, even before ``ts_ns``. For latency numbers under
saturation use ``fetch_limit=10`` (syslog-ng's default: stamps within tens of microseconds, but a
peak ingest rate about 3x lower here: ~100k vs ~300-460k msg/s of 200 bytes on unixsock from one
fast C sender, loggen, on a shared 2-core machine).
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

from .daemon import LogDaemonPeer, find_binary, version_output

__all__ = ["SyslogNgPeer", "TRANSPORT_DRIVERS"]

# loglab transport name -> syslog-ng source driver: the transports this peer supports. A
# transport of the registry missing here is one syslog-ng has no source for (seqpacket): the
# bench skips that cell for this peer and the report says so.
TRANSPORT_DRIVERS = {
    "unixsock": "unix-stream",
    "unixgram": "unix-dgram",
    "tcp": "tcp",
    "udp": "udp",
    "fifo": "pipe",
}
# The source flags that make ${MSG} the producer's JSON object, per producer --format.
_FORMAT_FLAGS = {"json": "no-parse", "rfc3164": None, "rfc5424": "syslog-protocol"}


def _parse_receipt_ns(ts: bytes) -> int:
    sec, _, frac = ts.partition(b".")
    return int(sec) * 1_000_000_000 + (int(frac[:9].ljust(9, b"0")) if frac else 0)


class SyslogNgPeer(LogDaemonPeer):
    """One syslog-ng instance listening on one loglab transport; see the module docstring."""

    name = "syslog-ng"
    comm = "syslog-ng"  # what tracers see (every thread keeps the name)
    INPUTS = TRANSPORT_DRIVERS
    OCTET_COUNTED = frozenset({"tcp"})  # network(transport("framed")); unix-stream() has no framed mode
    UNSUPPORTED = {"seqpacket": "syslog-ng has no SOCK_SEQPACKET source"}
    config_name = "syslog-ng.conf"
    output_name = "syslog-ng.out"

    def __init__(self, transport: str, workdir: Path, *, fetch_limit: int = 500, **kw) -> None:
        super().__init__(transport, workdir, **kw)
        self.fetch_limit = fetch_limit
        self.binary = self.binary_path()
        self.pid_path = self.workdir / "syslog-ng.pid"
        self.control_path = self.workdir / "syslog-ng.ctl"
        self.persist_path = self.workdir / "syslog-ng.persist"
        self.last_stats: dict[str, int] = {}

    # ---------------------------------------------------------------- availability
    @staticmethod
    def binary_path() -> str | None:
        return find_binary("syslog-ng", "syslog-ng-core")[0]

    @classmethod
    def available(cls) -> tuple[bool, str]:
        binary = cls.binary_path()
        if binary is None:
            return False, "syslog-ng is not installed (run scripts/setup-peer.sh as root: it installs syslog-ng-core)"
        if not version_output(binary, "--version"):
            return False, f"{binary} --version failed"
        return True, ""

    @classmethod
    def version(cls) -> str:
        binary = cls.binary_path()
        if binary is None:
            return ""
        out = version_output(binary, "--version")
        m = re.search(r"Installer-Version:\s*(\S+)", out) or re.search(r"syslog-ng \d+ \(([^)]+)\)", out)
        return m.group(1) if m else ""

    def _config_version(self) -> str:
        # The grammar version the binary declares ("Config version: 3.35" in 3.38.1).
        m = re.search(r"Config version:\s*(\d+\.\d+)", version_output(self.binary or "", "--version"))
        return m.group(1) if m else "3.35"

    # ---------------------------------------------------------------- configuration
    def _address_spec(self, port: int | None, path: str | None) -> str:
        return f'ip("127.0.0.1") port({port})' if port is not None else f'"{path}"'

    def _window(self) -> int:
        """Flow-control window per connection (stream) or per source (dgram, pipe)."""
        if self._connected:
            return max(1000, 2 * self.fetch_limit)
        return max(20000, 2 * self.fetch_limit)

    def _source(self, address_spec: str) -> str:
        """The source driver with its options, each followed by why (the comments go into the
        generated config too, so ``config_text`` explains itself)."""
        driver = TRANSPORT_DRIVERS[self.transport]
        flags = _FORMAT_FLAGS[self.format]
        if flags is None and not self._inet:
            flags = "expect-hostname"  # a local source assumes none, and the producer's 3164 header has one
        opts: list[tuple[str, str]] = [
            (address_spec, "a path in the run's directory, or 127.0.0.1 and a port picked free"),
            (f"flags({flags})" if flags else "flags()", {
                "no-parse": "the raw line is the message: no syslog header parsing at all",
                "syslog-protocol": "the producer sends RFC 5424: parsed, ${MSG} is its JSON object",
                "expect-hostname": "the producer sends RFC 3164 with a hostname: parsed, ${MSG} is its JSON object",
                None: "the producer sends RFC 3164: parsed (the default), ${MSG} is its JSON object",
            }[flags]),
            (
                f"log-fetch-limit({self.fetch_limit})",
                "messages per read job (default 10): fewer wakeups per message, ~3x the peak "
                "ingest rate; also the receipt-stamp granularity at saturation",
            ),
        ]  # fmt: skip
        if self.framing == "octet":
            driver = "network"
            opts.append(('transport("framed")', "RFC 6587 octet counting, as the producer's --framing octet sends"))
        if self._connected:
            opts.append((
                f"max-connections({self.max_connections})",
                "as many producers as the aggregator accepts (defaults: tcp 10, unix-stream 256)",
            ))
            opts.append((
                f"log-iw-size({self._window() * self.max_connections})",
                f"flow-control window, split evenly among max-connections: {self._window()} "
                "in flight per connection, 2x the fetch limit so reading overlaps writing",
            ))
        elif self._datagram:
            opts.append((
                f"log-iw-size({self._window()})",
                "one socket, one deep window: bursts wait in syslog-ng, not the kernel buffer",
            ))
        else:
            opts.append((
                f"log-iw-size({self._window()})",
                "one FIFO, one deep window"
                + (f" (pipe buffer set to {self.pipe_size} bytes by the peer, as the aggregator does)" if self.pipe_size else ""),
            ))
        if not self._inet and not self._fifo:
            opts.append(("perm(0600)", "socket file mode, as the aggregator's default --socket-mode"))
        if self._datagram and self.rcvbuf:
            opts.append((
                f"so-rcvbuf({int(self.rcvbuf)})",
                "kernel receive buffer as the aggregator's --rcvbuf (SO_RCVBUF, capped by "
                "rmem_max; the peer then applies SO_RCVBUFFORCE like the aggregator)",
            ))
        if self._inet and self._connected:
            opts.append(("so-keepalive(no)", "local, short-lived connections: no keepalive probes"))
        width = max(len(o) for o, _ in opts)
        body = "\n".join(f"        {o.ljust(width)}  # {why}" for o, why in opts)
        return f"{driver}(\n{body}\n    )"

    def _render_config(self, address_spec: str) -> str:
        # log-msg-size: the longest message kept whole. The aggregator accepts lines up to
        # max_line_bytes (64 KiB) without the newline; a little headroom so such a line is never
        # split or truncated by syslog-ng (UDP itself tops out at 65507 bytes).
        msg_size = self.max_line_bytes + 1024
        fifo_size = self._window() * (self.max_connections if self._connected else 1)
        return f"""@version: {self._config_version()}
# Generated by loglab benchmarks/peers/syslog_ng.py for transport {self.transport}, {self.format} {self.framing}.
# A high-throughput receiver that must not lose messages, tuned as an operator would for this
# benchmark. Nothing here touches system paths: sources, output, control socket, persist file and
# pid file are all in the run's work directory.
options {{
    log-msg-size({msg_size});   # lines up to {self.max_line_bytes} bytes (+newline) arrive whole
    frac-digits(6);             # R_UNIXTIME with microseconds (syslog-ng's finest resolution)
    threaded(yes);              # multi-threaded I/O workers (the default; stated for the record)
    use-dns(no);                # no reverse lookups of peers ...
    dns-cache(no);
    use-fqdn(no);
    keep-hostname(yes);         # ... and no hostname rewriting: the raw line is all we keep
    chain-hostnames(no);
    check-hostname(no);
    mark-freq(0);               # no MARK messages in the output
    stats-freq(0);              # no periodic statistics messages in the internal log
    stats-level(1);             # per-driver counters (written/queued/dropped) for stop()'s drain
    create-dirs(no);
    time-reopen(1);             # a failed destination is retried after 1 s, not 60 s
}};

source s_loglab {{
    {self._source(address_spec)};
}};

destination d_out {{
    file("{self.output_path}"
        # receipt time, a tab, the message; MSG never holds the line terminator.
        template("${{R_UNIXTIME}}\\t${{MSG}}\\n")
        template-escape(no)     # the JSON goes out byte for byte
        # Up to 1000 messages per write() under load; syslog-ng also writes as soon as its queue
        # runs empty, so a single message still reaches the file within ~1 ms.
        flush-lines(1000)
        fsync(no)               # like the aggregator's default --fsync never
        # Destination queue: as large as all source windows together, so with flow control the
        # windows, not this queue, bound what is in flight and nothing is dropped here.
        log-fifo-size({fifo_size})
    );
}};

log {{
    source(s_loglab);
    destination(d_out);
    # Reliable sources (unix-stream, tcp, pipe) are never dropped by syslog-ng: when the
    # destination lags, reading stops and the producers feel backpressure from the kernel.
    # For datagram sources it also stops reading, so any loss is in the kernel's socket buffer,
    # exactly where the aggregator's datagram loss happens.
    flags(flow-control);
}};
"""

    def _stale_files(self) -> list:
        return [self.control_path]  # readiness waits for it to appear

    def _argv(self) -> list[str]:
        return self.command(self.config_path, self.workdir)

    @classmethod
    def command(cls, config: Path, workdir: Path) -> list[str]:
        """A foreground syslog-ng on ``config`` with its pid file, control socket and persist file
        in ``workdir`` (the peer's, and any other syslog-ng the lab runs: a forwarding client)."""
        return [
            cls.binary_path() or "syslog-ng",
            "-F",  # foreground: the pid we get is the daemon, no supervisor
            "-e",  # its internal log to stderr (our file), not to a system log
            f"--cfgfile={config}",
            f"--pidfile={workdir / 'syslog-ng.pid'}",
            f"--control={workdir / 'syslog-ng.ctl'}",
            f"--persist-file={workdir / 'syslog-ng.persist'}",
            "--no-caps",  # do not fiddle with capabilities (root or not)
        ]

    def _ready(self) -> bool:
        return self.control_path.exists()  # stop() drains through it

    def _bind_failed(self, stderr: str) -> bool:
        return "Error binding socket" in stderr or "Address already in use" in stderr

    def _receipt_ns(self, stamp: bytes) -> int:
        return _parse_receipt_ns(stamp)

    def _files_to_remove(self) -> list:
        return [*super()._files_to_remove(), self.control_path]

    # ---------------------------------------------------------------- counters
    def _control(self, command: str, timeout: float = 2.0) -> str:
        """One command on syslog-ng's control socket (what syslog-ng-ctl does)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.control_path))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"".join(chunks[-2:]).endswith(b"\n.\n") or chunks[-1] == b".\n":
                    break
        return b"".join(chunks).decode(errors="replace")

    def stats(self) -> dict[str, int]:
        """syslog-ng's counters, keyed "component;id;instance;type" (state column dropped)."""
        text = self._control("STATS")
        counters: dict[str, int] = {}
        for line in text.splitlines():
            parts = line.split(";")
            if len(parts) != 6 or parts[0] == "SourceName":
                continue
            try:
                counters[";".join((parts[0], parts[1], parts[2], parts[4]))] = int(parts[5])
            except ValueError:
                pass
        self.last_stats = counters
        return counters

    def counts(self) -> dict[str, int]:
        """syslog-ng's own message counts now: received, written, dropped, queued, truncated."""
        return self._summarize(self.stats())

    @staticmethod
    def _summarize(counters: dict[str, int]) -> dict[str, int]:
        def total(component: str, kind: str) -> int:
            return sum(v for k, v in counters.items() if k.startswith(component + ";") and k.endswith(";" + kind))

        return {
            "messages_received": counters.get("source;s_loglab;;processed", 0),
            "messages_written": total("dst.file", "written"),
            "messages_dropped": total("dst.file", "dropped"),
            "messages_queued": total("dst.file", "queued"),
            "truncated_messages": total("dst.file", "truncated_count"),
        }

    def _drain(self, deadline: float, quiet: float) -> bool:
        """Wait until syslog-ng is idle (its source counter has not moved for ``quiet`` seconds)
        and has written all it received (nothing queued); False on timeout."""
        last_received = -1
        since = time.monotonic()
        while True:
            try:
                s = self.counts()
            except OSError:
                return False
            now = time.monotonic()
            if s["messages_received"] != last_received:
                last_received = s["messages_received"]
                since = now
            caught_up = s["messages_queued"] == 0 and (
                s["messages_written"] + s["messages_dropped"] >= s["messages_received"]
            )
            if caught_up and now - since >= quiet:
                return True
            if now >= deadline or not self.proc.running():
                return False
            time.sleep(0.02)

    def _summary(self) -> dict:
        return {**self._summarize(self.last_stats), "counters": dict(self.last_stats)}
