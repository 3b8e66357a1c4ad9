"""``loglab bench --scenarios distribute``: the distribute stage measured (issue 14).

Per repeat, on one NATS node on loopback (one machine: the figures are the stage's, not a network's):

* **stream, one distributor** / **stream, two replicas**: ``LOGS`` pre-filled with 4 producers x
  50,000 records of 200 bytes (x ``scale``), four analyzers weighted 0.4/0.3/0.2/0.1, then the
  distributor(s) started. Throughput = messages acknowledged to the stream / time, from the first
  acknowledgement to the last, read from the consumer's ack floor every 50 ms (start-up excluded).
  CPU per message of the distributor(s), the analyzers and nats-server over that window.
* **HTTP under Locust**: the same stage with ``distributor-http`` in front, the stream empty, Locust
  headless (``distributor/locustfile.py``, 16 users, each an agent posting as fast as answered) for
  ``http_seconds``, with 1 message per request (the reference design's interface) and with 20.
  Messages/s = messages the ingress had stored / Locust's run time; then every one must reach an
  analyzer (ledger union: missing, duplicates).
* **fairness and failover**: four analyzers (0.4/0.3/0.2/0.1, each held 0.1 ms per record so the
  run lasts), the stream pre-filled; during the run: a4's weight -> 0.4 (``distributor-ctl``), a2
  SIGKILLed, a2 back, a1's weight -> 0.1. The distributor's stats file every 0.1 s gives the share
  of each analyzer within each epoch against its weight (the chart); its closed epochs give the
  largest deviation from the exact share per analyzer and epoch (the table); the kill and return
  times against the epochs' start times give the failover timing; the ledgers prove 0 lost.
* **router alone**: picks per second against the number of analyzers (1 to 10,000) for the
  distributor's schedule, nginx's smooth weighted round-robin and the Go design's random weight
  tree; and each one's largest deviation from the exact share.

Every run is a ``RunRecord`` (scenario ``distribute``) in the results directory; the report renders
them (``benchmarks/report/distribute.py``: the tables and the two charts), and so does the README's
``distribute`` findings section, from the results files alone.
"""

from __future__ import annotations

import csv
import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path


from benchmarks.processes import console_script, locust_proc, nats_unavailable, wait_until
from benchmarks.results import ResultsWriter, RunRecord, Workload
from benchmarks.run.measure import processes_stats, stats_delta

from .distribution import Distribution

WEIGHTS = {"a1": 0.4, "a2": 0.3, "a3": 0.2, "a4": 0.1}
PRODUCERS, COUNT, SIZE = 4, 50_000, 200
TARGET_STREAM, TARGET_HTTP = 50_000.0, 10_000.0
HTTP_USERS = 16
ROUTER_SIZES = (1, 10, 100, 1000, 10_000)
DISTRIBUTOR_ARGS = ("--stats-interval", "0.1")


def _pids(d: Distribution, names) -> list[int]:
    return [d.proc(n).pid for n in names if d.proc(n).running()]


def _ack_floor_window(d: Distribution, last: int, timeout: float) -> tuple[int, int, int]:
    """Poll the consumer's ack floor until it reaches ``last``: (first ns, done ns, floor at first)."""
    first_ns = first_floor = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            st = d.consumer_state()
        except Exception:  # the consumer not bound yet
            time.sleep(0.05)
            continue
        now = time.time_ns()
        if first_ns is None and st["ack_floor"] > 0:
            first_ns, first_floor = now, st["ack_floor"]
        if st["ack_floor"] >= last and st["num_ack_pending"] == 0:
            return first_ns or now, now, first_floor or 0
        time.sleep(0.02)
    raise AssertionError(f"not every message acknowledged within {timeout} s")


def stream_run(workdir: Path, replicas: int, scale: float, repeat: int) -> RunRecord:
    count = max(1000, int(COUNT * scale))
    point = Workload(PRODUCERS, count, SIZE, 0.0, 500)
    with Distribution(workdir, distributor_args=DISTRIBUTOR_ARGS) as d:
        # The analyzers run but are not registered yet: the distributors start, find no analyzer
        # online and take nothing; registering the four (ms apart) is the start line for all replicas.
        for aid, w in WEIGHTS.items():
            d.analyzer(aid, w, "--no-register")
        expected = d.fill("h1", PRODUCERS, count, SIZE)
        last = d.stream_last_seq()
        names = [f"d{i + 1}" for i in range(replicas)]
        for n in names:
            d.distributor(n)
        nats_pids, an_pids = [d.nats.node_proc(0).pid], _pids(d, WEIGHTS)
        b_n, b_a, b_d = processes_stats(nats_pids), processes_stats(an_pids), processes_stats(_pids(d, names))
        d.register(WEIGHTS)
        first_ns, done_ns, first_floor = _ack_floor_window(d, last, 600)
        a_d, a_n, a_a = processes_stats(_pids(d, names)), processes_stats(nats_pids), processes_stats(an_pids)
        for n in names:
            d.proc(n).stop()
        result = d.check(expected)
        dstats = {n: d.distributor_stats(n) for n in names}
        routed = {aid: sum(s["analyzers"].get(aid, {}).get("acked", 0) for s in dstats.values()) for aid in WEIGHTS}
    rate_window = last - first_floor
    record = RunRecord(
        system="distributor" if replicas == 1 else f"distributor x{replicas}", transport="jetstream-R1", scenario="distribute",
        workload=point, repeat=repeat, window_start_ns=first_ns, window_end_ns=done_ns, expected=last, sent=last,
        seq=result, aggregator=stats_delta(a_d, b_d), producers=stats_delta(a_a, b_a),
        system_stats={"nats_cpu_s": a_n.cpu_s - b_n.cpu_s, "distributors": dstats, "acked_per_analyzer": routed,
                      "messages_in_window": rate_window},
        figures={"messages_per_s": rate_window / ((done_ns - first_ns) / 1e9) if done_ns > first_ns else None,
                 "target_messages_per_s": TARGET_STREAM, "replicas": replicas, "weights": WEIGHTS,
                 "distributor_cpu_us_per_msg": (a_d.cpu_s - b_d.cpu_s) / last * 1e6,
                 "analyzers_cpu_us_per_msg": (a_a.cpu_s - b_a.cpu_s) / last * 1e6,
                 "nats_cpu_us_per_msg": (a_n.cpu_s - b_n.cpu_s) / last * 1e6},
        notes=["aggregator = the distributor process(es), producers = the four analyzers (CPU over the window)",
               "throughput: acknowledged to the stream between the first and the last acknowledgement (consumer ack floor, 50 ms polls)"],
    )  # fmt: skip
    if result.missing or result.duplicates:
        record.errors.append(f"{result.missing} missing, {result.duplicates} duplicates across the analyzers")
    return record


def http_run(workdir: Path, per_request: int, seconds: float, repeat: int) -> RunRecord:
    import distributor

    locustfile = Path(distributor.__file__).parent / "locustfile.py"
    with Distribution(workdir, distributor_args=DISTRIBUTOR_ARGS) as d:
        for aid, w in WEIGHTS.items():
            d.analyzer(aid, w)
        d.distributor("d1")
        url = d.http()
        pids = {"ingress": [d.proc("http").pid], "distributor": [d.proc("d1").pid], "nats": [d.nats.node_proc(0).pid]}
        before = {k: processes_stats(v) for k, v in pids.items()}
        start_ns = time.time_ns()
        loc = d.group.start(locust_proc("locust", workdir, locustfile, url, HTTP_USERS, seconds, "--message-size", SIZE,
                                        "--messages-per-request", per_request, "--agent-host", "http"), wait=False)  # fmt: skip
        loc.wait(seconds + 60)
        end_ns = time.time_ns()
        after = {k: processes_stats(v) for k, v in pids.items()}
        stats = _locust_aggregate(workdir / "locust_stats.csv")
        ingress = wait_until(lambda: _get_json(url + "/analyzer/stats"), "ingress stats", 10)["ingress"]
        d.wait_all_acked(300)
        ledgers = d.ledger_records()
        seen: dict[str, int] = {}
        for rows in ledgers.values():
            for k, s in rows:
                seen[k] = max(seen.get(k, -1), s)
        result = d.check({k: s + 1 for k, s in seen.items()})
        locust_log = loc.tail(5)
    published = ingress["published"]
    run_s = stats.get("run_s") or seconds
    record = RunRecord(
        system="distributor-http", transport=f"http x{per_request}/request", scenario="distribute",
        workload=Workload(HTTP_USERS, 0, SIZE, 0.0, per_request), repeat=repeat, window_start_ns=start_ns, window_end_ns=end_ns,
        expected=published, sent=published, seq=result,
        aggregator=stats_delta(after["ingress"], before["ingress"]), producers=stats_delta(after["distributor"], before["distributor"]),
        system_stats={"nats_cpu_s": after["nats"].cpu_s - before["nats"].cpu_s, "locust": stats, "ingress": ingress},
        figures={"messages_per_s": published / run_s, "requests_per_s": stats.get("requests_per_s"), "request_failures": stats.get("failures"),
                 "request_p50_ms": stats.get("p50_ms"), "request_p99_ms": stats.get("p99_ms"), "target_messages_per_s": TARGET_HTTP,
                 "messages_per_request": per_request, "users": HTTP_USERS,
                 "ingress_cpu_us_per_msg": (after["ingress"].cpu_s - before["ingress"].cpu_s) / published * 1e6 if published else None},
        notes=[f"Locust headless, {HTTP_USERS} users, {seconds:.0f} s; aggregator = distributor-http, producers = the distributor",
               "locust: " + " | ".join(locust_log.splitlines()[-2:])],
    )  # fmt: skip
    if result.missing or result.duplicates or stats.get("failures"):
        record.errors.append(f"{result.missing} missing, {result.duplicates} duplicates, {stats.get('failures')} failed requests")
    return record


def _get_json(url: str):
    import httpx

    try:
        return httpx.get(url, timeout=5).json()
    except Exception:
        return None


def _locust_aggregate(path: Path) -> dict:
    with open(path, newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    n = int(row["Request Count"])
    rps = float(row["Requests/s"])
    return {"requests": n, "failures": int(row["Failure Count"]), "requests_per_s": rps, "run_s": n / rps if rps else None,
            "p50_ms": float(row["50%"] or 0), "p99_ms": float(row["99%"] or 0)}  # fmt: skip


def fairness_run(workdir: Path, repeat: int) -> RunRecord:
    # Not scaled: the run must outlast its events (about 10 s with the analyzers held 0.1 ms per record).
    count = 60_000
    events: list[dict] = []
    series: list[dict] = []
    # --max-pending 5000: routing runs at most that far ahead of the acknowledgements, so epochs follow the events.
    with Distribution(workdir, distributor_args=DISTRIBUTOR_ARGS + ("--ack-timeout", "1.0", "--heartbeat-timeout", "1.0", "--max-pending", "5000"),
                      analyzer_args=("--heartbeat", "0.2")) as d:  # fmt: skip
        for aid, w in WEIGHTS.items():
            d.analyzer(aid, w, "--slow-ms", "0.1")
        expected = d.fill("h1", PRODUCERS, count, SIZE)
        d.distributor("d1")
        t0 = time.time_ns()
        plan = [(1.5, "weight a4 0.4", lambda: _ctl(d, "weight", "a4", "0.4")),
                (3.0, "SIGKILL a2", lambda: d.proc("a2").stop(signal.SIGKILL)),
                (5.0, "a2 back", lambda: d.analyzer("a2", WEIGHTS["a2"], "--slow-ms", "0.1", wait=False)),
                (7.0, "weight a1 0.1", lambda: _ctl(d, "weight", "a1", "0.1"))]  # fmt: skip
        last = d.stream_last_seq()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            now = time.time_ns()
            while plan and (now - t0) / 1e9 >= plan[0][0]:
                _, what, act = plan.pop(0)
                events.append({"t_s": (time.time_ns() - t0) / 1e9, "ns": time.time_ns(), "event": what})
                act()
            s = d.distributor_stats("d1")
            if s:
                ep = s["epoch"]
                series.append({"t_s": (now - t0) / 1e9, "epoch": ep["epoch"], "weights": ep["weights"],
                               "routed_epoch": {a: v["routed"] for a, v in ep["analyzers"].items()},
                               "routed_total": {a: v["routed"] for a, v in s["analyzers"].items()}})  # fmt: skip
            if not plan and s and s.get("source_acked", 0) >= last:
                break
            time.sleep(0.1)
        d.wait_all_acked(120)
        d.proc("d1").stop()
        s = d.distributor_stats("d1")
        result = d.check(expected)
    epochs = [*s["epochs_closed"], s["epoch"]]
    kill = next(e["ns"] for e in events if e["event"] == "SIGKILL a2")
    back = next(e["ns"] for e in events if e["event"] == "a2 back")
    down_epoch = next((e for e in epochs if e["started_ns"] > kill and "a2" not in e["weights"]), None)
    up_epoch = next((e for e in epochs if e["started_ns"] > back and "a2" in e["weights"]), None)
    worst = max((a["max_ahead"], a["max_behind"]) for e in epochs for a in e["analyzers"].values())
    record = RunRecord(
        system="distributor", transport="jetstream-R1", scenario="distribute", workload=Workload(PRODUCERS, count, SIZE, 0.0, 500),
        repeat=repeat, window_start_ns=t0, window_end_ns=time.time_ns(), expected=PRODUCERS * count, sent=PRODUCERS * count, seq=result,
        system_stats={"distributor": {k: v for k, v in s.items() if k not in ("membership",)}},
        figures={"part": "fairness", "events": events, "epochs": epochs, "max_deviation_messages": max(worst),
                 "failover_detect_s": (down_epoch["started_ns"] - kill) / 1e9 if down_epoch else None,
                 "return_s": (up_epoch["started_ns"] - back) / 1e9 if up_epoch else None,
                 "failover_messages": s["failover_messages"], "duplicates_confirmed": s["duplicates_confirmed"]},
        series=series, notes=["analyzers held 0.1 ms per record (--slow-ms 0.1) so that the run lasts through the changes"],
    )  # fmt: skip
    if result.missing:
        record.errors.append(f"{result.missing} lost")
    return record


def _ctl(d: Distribution, *args) -> None:
    subprocess.run([console_script("distributor-ctl"), *args, "--servers", d.servers], check=True, capture_output=True, timeout=30)


def router_runs(repeat: int, budget_s: float = 0.3) -> list[RunRecord]:
    from distributor.router import Schedule, SmoothWeightedRoundRobin, WeightTree

    out = []
    for n in ROUTER_SIZES:
        rng = random.Random(n)
        weights = {f"a{i}": rng.randint(1, 100) for i in range(n)}
        for name, make in (("edf (loglab)", Schedule), ("smooth wrr (nginx)", SmoothWeightedRoundRobin), ("random tree (Go design)", WeightTree)):
            algo = make(weights)
            picks, t0 = 0, time.perf_counter()
            chunk = 1000 if n < 1000 or name != "smooth wrr (nginx)" else 20
            while time.perf_counter() - t0 < budget_s:
                for _ in range(chunk):
                    algo.pick()
                picks += chunk
            elapsed = time.perf_counter() - t0
            if make is Schedule:  # exact: the schedule tracks its own deviation in integers
                exact = Schedule(weights)
                exact.picks(20_000)
                exact.close_epoch()
                deviation = max(max(a["max_ahead"], a["max_behind"]) for a in exact.deviation().values())
            else:
                deviation = _deviation(make(weights), weights, 20_000) if n <= 100 else None
            figures = {"part": "router", "algorithm": name, "analyzers": n, "picks": picks, "picks_per_s": picks / elapsed,
                       "max_deviation_messages": deviation}  # fmt: skip
            out.append(RunRecord(system=f"router: {name}", transport="in-process", scenario="distribute",
                                 workload=Workload(producers=n, count=picks, size=0, rate=0.0, batch=1), repeat=repeat,
                                 expected=None, figures=figures, seconds=elapsed,
                                 notes=["the router alone: workload.producers = analyzers, workload.count = picks timed"]))  # fmt: skip
    return out


def _deviation(algo, weights: dict, picks: int) -> float:
    ids = sorted(weights)
    total = sum(weights.values())
    share = [weights[i] / total for i in ids]
    counts = [0] * len(ids)
    worst = 0.0
    for n in range(1, picks + 1):
        counts[algo.pick()] += 1
        for i, s in enumerate(share):
            dev = abs(counts[i] - n * s)
            if dev > worst:
                worst = dev
    return worst


def run_distribute_bench(writer: ResultsWriter, repeat: int = 2, scale: float = 1.0, http_seconds: float = 10.0, echo=print) -> bool:
    why = nats_unavailable()
    if why:
        writer.note(f"distribute scenario skipped: {why}")
        echo(f"bench: distribute skipped: {why}")
        return True
    ok = True
    for r in range(repeat):
        plan = [("stream, one distributor", lambda w: [stream_run(w, 1, scale, r)]),
                ("stream, two replicas", lambda w: [stream_run(w, 2, scale, r)]),
                ("HTTP, 1 message/request", lambda w: [http_run(w, 1, http_seconds, r)]),
                ("HTTP, 20 messages/request", lambda w: [http_run(w, 20, http_seconds, r)]),
                ("fairness and failover", lambda w: [fairness_run(w, r)]),
                ("router alone", lambda w: router_runs(r))]  # fmt: skip
        for label, fn in plan:
            workdir = Path(tempfile.mkdtemp(prefix="loglab-dist-"))
            t0 = time.monotonic()
            try:
                records = fn(workdir)
            except Exception as exc:  # one broken run must not lose the others
                records = [RunRecord(system=label, transport="jetstream-R1", scenario="distribute", repeat=r, status="failed",
                                     workload=Workload(PRODUCERS, 0, SIZE, 0.0, 0), errors=[f"{type(exc).__name__}: {exc}"])]  # fmt: skip
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            for record in records:
                writer.add_run(record)
                ok &= record.ok
            echo(f"[distribute repeat {r + 1}] {label}: {_summary(records)} ({time.monotonic() - t0:.0f} s)")
    return ok


def _summary(records: list[RunRecord]) -> str:
    r = records[0]
    if not r.ok:
        return "FAILED: " + "; ".join(r.errors)
    f = r.figures
    if f.get("part") == "router":
        return ", ".join(f"{x.figures['algorithm']} n={x.figures['analyzers']}: {x.figures['picks_per_s']:,.0f}/s" for x in records[-3:])
    if f.get("part") == "fairness":
        return (f"max deviation {f['max_deviation_messages']:.2f} msg, failover detected in {f['failover_detect_s']}, "
                f"{f['failover_messages']} moved, {r.seq.missing} lost")  # fmt: skip
    rate = f"{f['messages_per_s']:,.0f} msg/s" if f.get("messages_per_s") else "too short to time"
    return f"{rate}, {r.seq.missing} missing, {r.seq.duplicates} duplicates"
