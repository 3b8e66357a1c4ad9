"""The aggregator's torture scenarios: the heavier reliability checks, each bounded (seconds to a
minute), each a plain function ``scenario(workdir: Path, scale: float) -> list[RunRecord]`` with exact
expected figures (``benchmarks/faults/rows.py``). ``loglab torture`` runs them
(``benchmarks/faults/torture.py``); the tests call them at a small scale.

Every process is started through ``benchmarks.processes`` and every transport list comes from the
registry's attributes, so a new transport is tortured by being registered.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from aggregator.transports import get_transport, transport_names

from ..processes import (
    AGGREGATOR,
    AggregatorProc,
    Client,
    ProducerProc,
    proc_cpu_seconds,
    proc_status,
    producer_summary,
    reap,
    run_cli,
    seqs_of,
    short_tempdir,
    start_half_line_writer,
    start_producer,
    whole_lines,
)
from ..results import RunRecord
from .machine import can_mount_tmpfs, remount, tmpfs
from .rows import finish, scaled, skipped, torture_run


def _sent(wd: Path, pid_id: str) -> int:
    """What a producer says it sent; 0 if it never connected (it writes no summary then)."""
    try:
        return producer_summary(wd, pid_id)["sent"]
    except FileNotFoundError:
        return 0


# -- scenarios ----------------------------------------------------------------------------------

def producer_sigkill(workdir: Path, scale: float) -> list[RunRecord]:
    """Connected stream transports: a producer SIGKILLed mid-line next to 4 healthy ones."""
    rows = []
    for transport in transport_names(kind="stream", connected=True):
        t0 = time.monotonic()
        n, victim_lines = scaled(20000, scale), scaled(1000, scale)
        wd = workdir / f"sigkill-{transport}"
        with AggregatorProc(transport, wd / "agg") as agg:
            procs = [start_producer(transport, agg.address, f"p{i}", n, wd, "--rate", 20000) for i in range(4)]
            try:
                victim = start_half_line_writer(transport, agg.address, victim_lines)
                victim.kill()
                victim.wait()
                for p in procs:
                    p.wait(120)
            finally:
                reap(procs)
            agg.wait_rejects(1)
            agg.stop()
            s = agg.stats()
            recs = agg.records()
        sent = sum(_sent(wd, f"p{i}") for i in range(4)) + victim_lines + 1
        row = torture_run("producer_sigkill_mid_line", transport, sent=sent, written=s["messages_written"],
                  rejected=s["rejected_total"], expected_written=4 * n + victim_lines)
        row.ok = seqs_of(recs, "victim") == list(range(victim_lines)) and s["rejected"] == {"partial_line_at_close": 1}
        row.notes = ["half line -> partial_line_at_close"]
        rows.append(finish(row, t0))
    return rows


def aggregator_sigterm(workdir: Path, scale: float) -> list[RunRecord]:
    """SIGTERM mid-stream on each reliable transport; what the producers were told was sent is written."""
    rows = []
    for transport in transport_names(reliable=True):
        t0 = time.monotonic()
        wd = workdir / f"sigterm-{transport}"
        # An exact drain (AF_UNIX) stops the producers (EPIPE, then ECONNREFUSED); the others are
        # read until the producers close, so they get a finite count and a long drain timeout.
        finite = not get_transport(transport).shutdown_read_on_drain
        count = scaled(20000, scale) if finite else 10_000_000
        with AggregatorProc(transport, wd / "agg", "--drain-timeout", 60) as agg:
            procs = [start_producer(transport, agg.address, f"p{i}", count, wd, "--rate", 20000) for i in range(4)]
            try:
                agg.wait_lines(5000)
                agg.stop()
                for p in procs:
                    p.wait(120)
            finally:
                reap(procs)
            s = agg.stats()
            recs = agg.records()
        sent = sum(_sent(wd, f"p{i}") for i in range(4))
        row = torture_run("aggregator_sigterm_mid_stream", transport, sent=sent, written=s["messages_written"],
                  rejected=s["rejected_total"], expected_written=sent)
        row.ok = all(set(range(_sent(wd, f"p{i}"))) <= set(seqs_of(recs, f"p{i}")) for i in range(4))
        row.notes = ["producers stopped by the drain" if not finite else "read until producers closed"]
        rows.append(finish(row, t0))
    return rows


def aggregator_sigkill(workdir: Path, scale: float) -> list[RunRecord]:
    """SIGKILL mid-stream, restart on the same output: whole lines only, clean append."""
    t0 = time.monotonic()
    wd = workdir / "sigkill-agg"
    wd.mkdir(parents=True, exist_ok=True)
    out = wd / "out.jsonl"
    sockdir = short_tempdir("loglab-tt-")
    try:
        first = AggregatorProc("unixsock", wd / "a1", output=out, address=str(sockdir / "unixsock.sock"))
        with first:
            procs = [start_producer("unixsock", first.address, f"p{i}", 10_000_000, wd, "--rate", 20000) for i in range(4)]
            try:
                first.wait_lines(scaled(20000, scale))
                first.send(signal.SIGKILL)
                first.wait()
                for p in procs:
                    p.wait(30)
            finally:
                reap(procs)
        sent = sum(_sent(wd, f"p{i}") for i in range(4))
        raw = out.read_bytes()
        torn = not raw.endswith(b"\n")
        kept = len(whole_lines(out))
        second = AggregatorProc("unixsock", wd / "a2", output=out, address=first.address)
        with second:
            n2 = scaled(5000, scale)
            procs = [start_producer("unixsock", second.address, f"q{i}", n2, wd) for i in range(4)]
            try:
                for p in procs:
                    p.wait(60)
            finally:
                reap(procs)
            second.stop()
            s2 = second.stats()
        records = [json.loads(line) for line in whole_lines(out)]
        gapless = all(seqs_of(records, f"p{i}") == list(range(len(seqs_of(records, f"p{i}")))) for i in range(4))
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)
    row = torture_run("aggregator_sigkill_then_restart", "unixsock", sent=sent + 4 * n2, written=kept + s2["messages_written"],
              rejected=s2["rejected"].get("torn_line_at_start", 0), expected_written=None)
    row.ok = gapless and len(records) == kept + 4 * n2 and out.read_bytes().endswith(b"\n")
    row.notes = [f"lost = unflushed tail at SIGKILL (<= --flush-interval); torn line at kill: {torn}"]
    return [finish(row, t0)]


def udp_overload(workdir: Path, scale: float) -> list[RunRecord]:
    """udp outrun by producers: loss is counted by the kernel and by the sequence check."""
    t0 = time.monotonic()
    wd = workdir / "udp"
    n = scaled(100_000, scale)

    def rcvbuf_errors() -> int:
        lines = Path("/proc/net/snmp").read_text().splitlines()
        head, vals = [l.split() for l in lines if l.startswith("Udp:")][:2]
        return int(vals[head.index("RcvbufErrors")])

    before = rcvbuf_errors()
    with AggregatorProc("udp", wd / "agg", "--rcvbuf", 65536) as agg:
        procs = [start_producer("udp", agg.address, f"p{i}", n, wd) for i in range(4)]
        try:
            for p in procs:
                p.wait(120)
        finally:
            reap(procs)
        time.sleep(0.5)  # let the aggregator empty its socket before the stop (not a correctness wait)
        agg.stop()
        s = agg.stats()
        recs = agg.records()
    kernel = rcvbuf_errors() - before
    sent = sum(_sent(wd, f"p{i}") for i in range(4))
    missing = sum(n - len(set(seqs_of(recs, f"p{i}"))) for i in range(4))
    row = torture_run("udp_overload", "udp", sent=sent, written=s["messages_written"], rejected=s["rejected_total"])
    # The sequence check and the aggregator's own kernel_drops (SO_MEMINFO) account for every loss.
    row.ok = missing == sent - s["messages_written"] == s.get("kernel_drops")
    row.notes = [f"aggregator kernel_drops {s.get('kernel_drops')}; seq gaps {missing}; RcvbufErrors +{kernel} (machine-wide)"]
    row.figures = {"kernel_rcvbuf_errors": kernel, "seq_missing": missing, "effective_rcvbuf": s.get("effective_rcvbuf"), "kernel_drops": s.get("kernel_drops")}
    return [finish(row, t0)]


def disk_full(workdir: Path, scale: float) -> list[RunRecord]:
    """Output on a 1 MiB tmpfs: producers block, memory bounded, resume when space returns."""
    why = can_mount_tmpfs()
    if why:
        return [skipped("disk_full_stall_resume", why)]
    rows = []
    for transport in transport_names(reliable=True):
        t0 = time.monotonic()
        wd = workdir / f"diskfull-{transport}"
        n = 100_000  # 20 MB: more than socket/pipe buffers hold whatever the scale
        with tmpfs("1m") as mnt:
            with AggregatorProc(transport, wd / "agg", "--max-backlog-bytes", 1 << 20, output=mnt / "out.jsonl", stats_interval=0.2) as agg:
                base = proc_status(agg.pid)["VmRSS"]
                p = start_producer(transport, agg.address, "p", n, wd)
                try:
                    agg.wait_stats(lambda s: s["reading_paused"] >= 1, "reading paused", 60)
                    cpu0, w0 = proc_cpu_seconds(agg.pid), time.monotonic()
                    time.sleep(1.0)
                    cpu = (proc_cpu_seconds(agg.pid) - cpu0) / (time.monotonic() - w0)
                    blocked = p.running()
                    hwm = proc_status(agg.pid)["VmHWM"]
                    remount(mnt, "128m")
                    p.wait(120)
                finally:
                    reap([p])
                agg.wait_lines(n, 60)
                agg.stop()
                s = agg.stats()
        row = torture_run("disk_full_stall_resume", transport, sent=_sent(wd, "p"), written=s["messages_written"],
                  rejected=s["rejected_total"], expected_written=n)
        row.ok = blocked and cpu < 0.5
        row.figures = {"rss_growth_bytes": hwm - base, "stalled_cpu_fraction": round(cpu, 3),
                       "write_errors": s["output_write_errors"], "reading_paused": s["reading_paused"]}
        row.notes = [f"producer blocked={blocked}, RSS +{(hwm - base) >> 10} KiB, CPU {cpu:.0%} while stalled"]
        rows.append(finish(row, t0))
    return rows


def connection_flood(workdir: Path, scale: float) -> list[RunRecord]:
    """1000 connections, each sending a line and staying open, against --max-connections 900
    (the connected transports): 900 are served at once, the other 100 wait in the kernel's backlog
    and are served as the first ones close. None is accepted and dropped."""
    rows = []
    total, limit = 1000, 900
    for transport in transport_names(connected=True):
        t0 = time.monotonic()
        wd = workdir / f"flood-{transport}"
        with AggregatorProc(transport, wd / "agg", "--max-connections", limit, stats_interval=0.2) as agg:
            socks = []
            try:
                for i in range(total):
                    c = Client(transport, agg.address)
                    socks.append(c)
                    c.send(b'{"producer":"c","seq":%d}\n' % i)
                held = agg.wait_stats(lambda st: st["messages_written"] >= limit and st["accept_paused"] >= 1, "the limit reached", 60)
                for s in socks[:limit]:
                    s.close()
                agg.wait_lines(total, 60)
            finally:
                for s in socks:
                    s.close()
            agg.stop()
            st = agg.stats()
        row = torture_run("connection_flood", transport, sent=total, written=st["messages_written"], rejected=st["rejected_total"],
                  expected_written=total)
        row.ok = held["connections_open_peak"] <= limit and st["connections_opened"] == total
        row.figures = {"served_while_at_the_limit": held["messages_written"], "accept_paused": st["accept_paused"],
                       "connections_open_peak": st["connections_open_peak"]}
        row.notes = [(f"{held['messages_written']} served at the limit, the other {total - held['messages_written']} waited "
                     f"in the backlog; peak {st['connections_open_peak']} open")]
        rows.append(finish(row, t0))
    return rows


def huge_line(workdir: Path, scale: float) -> list[RunRecord]:
    """100 MB without a newline: bounded memory, one line_too_long reject, service continues."""
    t0 = time.monotonic()
    size = 100 * 1024 * 1024
    wd = workdir / "hugeline"
    with AggregatorProc("unixsock", wd / "agg") as agg:
        base = proc_status(agg.pid)["VmRSS"]
        with Client("unixsock", agg.address) as c:
            chunk = b"A" * (1 << 20)
            for _ in range(size >> 20):
                c.send(chunk)
            c.send(b'\n{"ok":1}\n')
        agg.wait_lines(1)
        hwm = proc_status(agg.pid)["VmHWM"]
        agg.stop()
        s = agg.stats()
        (rej,) = agg.reject_records()
    row = torture_run("no_newline_100MB", "unixsock", sent=2, written=s["messages_written"], rejected=s["rejected_total"],
              expected_written=1)
    row.ok = rej["reason"] == "line_too_long" and rej["length"] == size
    row.figures = {"rss_base_bytes": base, "rss_peak_bytes": hwm, "rss_growth_bytes": hwm - base}
    row.notes = [f"RSS base {base >> 20} MiB, peak {hwm >> 20} MiB (+{(hwm - base) >> 10} KiB)"]
    return [finish(row, t0)]


def fsync_cost(workdir: Path, scale: float) -> list[RunRecord]:
    """The same workload with --fsync never|interval|always, at full speed (writes are 256 KiB
    blocks) and at a steady 4 x 2000 msg/s (a write every --flush-interval, 10 ms): messages/s,
    aggregator CPU per message, fsyncs. Output on the working directory's disk.

    Measured as ``loglab bench`` measures: the producers start, connect and wait at a barrier
    before the window opens, so their interpreters' start-up (which once made ``always`` look
    faster than ``never``) is outside it; the window closes when every line is written."""
    rows = []
    for rate, n in ((0, scaled(50_000, scale)), (2000, scaled(10_000, scale))):
        for mode in ("never", "interval", "always"):
            t0 = time.monotonic()
            wd = workdir / f"fsync-{mode}-{rate}"
            with AggregatorProc("unixsock", wd / "agg", "--fsync", mode, "--fsync-interval", 1.0) as agg:
                procs = [ProducerProc("unixsock", agg.address, f"p{i}", n, wd, "--rate", rate, "--quiet", barrier=True)
                         for i in range(4)]  # fmt: skip
                try:
                    for p in procs:
                        p.start()  # connected, waiting at the barrier
                    cpu0 = proc_cpu_seconds(agg.pid)
                    w0 = time.monotonic()
                    for p in procs:
                        p.go()
                    for p in procs:
                        p.wait(300)
                finally:
                    reap(procs)
                agg.wait_lines(4 * n, 300)
                wall = time.monotonic() - w0
                cpu = proc_cpu_seconds(agg.pid) - cpu0
                agg.stop()
                s = agg.stats()
            load = "max" if not rate else f"4x{rate}/s"
            row = torture_run(f"fsync_{mode}_{load}", "unixsock", sent=4 * n, written=s["messages_written"],
                      rejected=s["rejected_total"], expected_written=4 * n)
            row.figures = {"load": load, "msgs_per_s": round(4 * n / wall), "cpu_us_per_msg": round(cpu / (4 * n) * 1e6, 2),
                           "fsync_calls": s["fsync_calls"], "output_write_calls": s["output_write_calls"]}
            row.notes = [(f"{4 * n / wall:,.0f} msg/s, {cpu / (4 * n) * 1e6:.2f} us CPU/msg, "
                         f"{s['fsync_calls']} fsyncs / {s['output_write_calls']} writes")]
            rows.append(finish(row, t0))
    return rows



# -- issue 9: the adversarial probe's scenarios -------------------------------------------------

# A client that opens a connection, sends one line and closes, as fast as it can, N times; it
# prints how many lines it was told were sent and how many connects or sends failed. The
# transport's own connect, without a timeout: when the listen backlog is full, connect() waits
# (the kernel's push-back); a socket with a timeout is non-blocking underneath, and AF_UNIX then
# fails with EAGAIN instead.
CHURN_CLIENT = r"""
import sys
from aggregator.transports import get_transport
transport, address, name, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t = get_transport(transport)
sent = errors = 0
for i in range(n):
    try:
        sender = t.connect(address)
    except OSError as exc:
        errors += 1
        print("error", type(exc).__name__, exc, file=sys.stderr)
        continue
    try:
        sender.write_all(b'{"producer":"%s","seq":%d}\n' % (name.encode(), i))
        sent += 1
    except OSError as exc:
        errors += 1
        print("error", type(exc).__name__, exc, file=sys.stderr)
    finally:
        sender.close()
print(sent, errors, flush=True)
"""


def connection_churn(workdir: Path, scale: float, transports: tuple[str, ...] | None = None,
                     max_connections: int | None = None) -> list[RunRecord]:  # fmt: skip
    """Three clients doing connect -> one line -> close as fast as they can (issue 9, item 2).
    Every line a client was told was sent must be written once: connections over
    ``--max-connections`` wait in the kernel's backlog, they are never accepted and dropped."""
    rows = []
    for transport in transports or transport_names(connected=True):
        t0 = time.monotonic()
        wd = workdir / f"churn-{transport}"
        # Fewer over IP: each closed connection holds an ephemeral port in TIME_WAIT.
        per_client = scaled(10_000 if get_transport(transport).address_kind == "path" else 5_000, scale)
        limit_args = ("--max-connections", max_connections) if max_connections else ()
        with AggregatorProc(transport, wd / "agg", *limit_args) as agg:
            clients = [subprocess.Popen([sys.executable, "-c", CHURN_CLIENT, transport, agg.address, f"c{k}", str(per_client)],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for k in range(3)]
            try:
                outs = [c.communicate(timeout=300) for c in clients]
            finally:
                reap(clients)
            counts = [out.split() for out, _ in outs]
            sent_by = {f"c{k}": int(c[0]) if c else 0 for k, c in enumerate(counts)}
            client_errors = sum(int(c[1]) for c in counts if c)
            agg.wait_lines(sum(sent_by.values()), 60)
            agg.stop()
            s = agg.stats()
            recs = agg.records()
        row = torture_run("connection_churn", transport, sent=sum(sent_by.values()), written=s["messages_written"],
                  rejected=s["rejected_total"], expected_written=3 * per_client)
        once = all(sorted(seqs_of(recs, name)) == list(range(per_client)) for name in sent_by)
        row.ok = once and row.sent == 3 * per_client
        row.figures = {"connections_opened": s["connections_opened"], "accept_paused": s.get("accept_paused"), "client_errors": client_errors,
                       "connections_open_peak": s["connections_open_peak"], "max_connections": max_connections or 1024}
        row.notes = [(f"{s['connections_opened']} connections, peak {s['connections_open_peak']} open, "
                     f"accepting paused {s.get('accept_paused')} times")]
        rows.append(finish(row, t0))
    return rows


def second_start(workdir: Path, scale: float) -> list[RunRecord]:
    """A second aggregator started again and again on a running one's address and output while it
    runs flat out (issue 9, item 1): every start is refused, and the first loses nothing."""
    t0 = time.monotonic()
    wd = workdir / "second-start"
    attempts = max(6, int(45 * scale))
    refused = 0
    with AggregatorProc("unixsock", wd / "first") as first:
        procs = [start_producer("unixsock", first.address, f"p{i}", 100_000_000, wd, "--batch", 16) for i in range(4)]
        try:
            first.wait_lines(10_000)
            for k in range(attempts):
                # Half on the same address and output (the defaults run twice), half on another
                # address with the same output: both must be refused before touching anything.
                address = first.address if k % 2 == 0 else str(Path(first.address).with_name(f"other-{k}.sock"))
                r = run_cli(AGGREGATOR, "unixsock", "--address", address, "--output", first.output, timeout=60)
                refused += r.returncode != 0 and ("already listening" in r.stderr or "another aggregator" in r.stderr)
            for p in procs:
                p.send(signal.SIGINT)  # the producer writes its summary: what it was told was sent
            for p in procs:
                p.wait(60)
        finally:
            reap(procs)
        first.stop()
        s = first.stats()
        recs = first.records()
    sent = sum(_sent(wd, f"p{i}") for i in range(4))
    row = torture_run("second_start_refused", "unixsock", sent=sent, written=len(recs), rejected=s["rejected_total"], expected_written=sent)
    row.ok = refused == attempts and all(sorted(seqs_of(recs, f"p{i}")) == list(range(_sent(wd, f"p{i}"))) for i in range(4))
    row.figures = {"attempts": attempts, "refused": refused, "stats_written": s["messages_written"]}
    row.notes = [f"{refused}/{attempts} second starts refused while the first ran flat out"]
    return [finish(row, t0)]


def rotation_full_disk(workdir: Path, scale: float, transports: tuple[str, ...] | None = None) -> list[RunRecord]:
    """Rotate (mv + SIGUSR1) while the disk is full and part of a line is pending (issue 9,
    item 3): the old file ends in a whole line, the new one starts with one."""
    why = can_mount_tmpfs()
    if why:
        return [skipped("rotation_full_disk", why)]
    rows = []
    for transport in transports or transport_names(reliable=True):
        t0 = time.monotonic()
        wd = workdir / f"rotate-{transport}"
        n = 20_000  # 4 MB against a 1 MiB disk, whatever the scale
        with tmpfs("1m") as mnt:
            out = mnt / "out.jsonl"
            with AggregatorProc(transport, wd / "agg", "--max-backlog-bytes", 1 << 20, output=out, stats_interval=0.1) as agg:
                p = start_producer(transport, agg.address, "p", n, wd)
                try:
                    agg.wait_stats(lambda st: st["output_write_errors"] >= 1, "the disk full", 60)
                    os.rename(out, mnt / "out.jsonl.1")
                    agg.send(signal.SIGUSR1)
                    agg.wait_stats(lambda st: st["output_reopens"] >= 1, "the reopen", 60)
                    remount(mnt, "128m")
                    p.wait(120)
                finally:
                    reap([p])
                agg.wait_stats(lambda st: st["messages_written"] >= n, "every line handed to the sink (the stop writes them)", 60)
                agg.stop()
                s = agg.stats()
            old, new = (mnt / "out.jsonl.1").read_bytes(), out.read_bytes()
        torn = sum(1 for data in (old, new) if data and not data.endswith(b"\n"))
        records, bad = [], 0
        for line in old.split(b"\n") + new.split(b"\n"):
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                bad += 1
        row = torture_run("rotation_full_disk", transport, sent=_sent(wd, "p"), written=len(records), rejected=s["rejected_total"], expected_written=n)
        row.ok = torn == 0 and bad == 0 and seqs_of(records, "p") == list(range(n))
        row.figures = {"old_file_bytes": len(old), "new_file_bytes": len(new), "files_ending_torn": torn, "unparsable_lines": bad,
                       "write_errors": s["output_write_errors"]}
        row.notes = [f"old file {len(old)} B, new {len(new)} B; torn files {torn}, unparsable lines {bad}"]
        rows.append(finish(row, t0))
    return rows


def worker_kill(workdir: Path, scale: float) -> list[RunRecord]:
    """SIGKILL one of two workers while four producers run flat out (issue 9, item 4), several
    trials: the output holds whole lines only, each producer's lines a gapless prefix."""
    import psutil

    t0 = time.monotonic()
    trials = max(2, int(10 * scale))
    sent = written = rejected = torn_lines = repaired = 0
    gapless = True
    for trial in range(trials):
        wd = workdir / f"worker-kill-{trial}"
        with AggregatorProc("unixsock", wd / "agg", "--workers", 2, "--flush-interval", 0) as agg:
            procs = [start_producer("unixsock", agg.address, f"p{i}", 100_000_000, wd, "--batch", 64) for i in range(4)]
            try:
                agg.wait_lines(20_000 * (trial % 3 + 1))
                victim = psutil.Process(agg.pid).children()[trial % 2]
                victim.kill()
                agg.wait(60)  # the supervisor stops the other worker, which drains
                for p in procs:
                    if p.running():
                        p.send(signal.SIGINT)
                for p in procs:
                    p.wait(60)
            finally:
                reap(procs)
            lines = whole_lines(agg.output)
            sent += sum(_sent(wd, f"p{i}") for i in range(4))
            records = []
            for line in lines:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    torn_lines += 1
            written += len(records)
            rejects = agg.reject_records() if agg.rejects.exists() else []
            repaired += sum(1 for r in rejects if r["reason"].startswith("torn_line"))
            rejected += len(rejects)
            for i in range(4):
                seqs = seqs_of(records, f"p{i}")
                gapless = gapless and seqs == list(range(len(seqs)))
    row = torture_run("worker_sigkill", "unixsock", sent=sent, written=written, rejected=rejected)
    row.ok = torn_lines == 0 and gapless and agg.output.read_bytes().endswith(b"\n")
    row.figures = {"trials": trials, "torn_lines_in_output": torn_lines, "torn_lines_repaired": repaired, "gapless_prefixes": gapless}
    row.notes = [(f"{trials} trials: {torn_lines} torn lines in the output, {repaired} moved to rejects; "
                 "lost = the killed worker's unwritten lines and kernel buffers")]
    return [finish(row, t0)]


SCENARIOS = {
    "producer_sigkill": producer_sigkill,
    "aggregator_sigterm": aggregator_sigterm,
    "aggregator_sigkill": aggregator_sigkill,
    "udp_overload": udp_overload,
    "disk_full": disk_full,
    "connection_flood": connection_flood,
    "connection_churn": connection_churn,
    "huge_line": huge_line,
    "fsync_cost": fsync_cost,
    "second_start": second_start,
    "rotation_full_disk": rotation_full_disk,
    "worker_kill": worker_kill,
}
