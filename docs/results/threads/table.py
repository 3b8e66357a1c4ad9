"""Markdown tables: loglab --threads 1 vs N, from pairs of results dirs (same round), with ranges."""
import sys, statistics
from collections import defaultdict
from benchmarks.results.store import load_results

def collect(dirs):
    v = defaultdict(list)  # (scenario, transport, system) -> [(msg/s, cpu, loss)]
    for d in dirs:
        for run in load_results(d).runs:
            if run.is_warmup or run.traced or run.status != "ok":
                continue
            dv = run.derived
            v[(run.scenario, run.transport, run.system)].append((dv["messages_per_s"], dv["agg_cpu_us_per_msg"], 100 * (dv.get("loss_fraction") or 0)))
    return v

def rng(xs, fmt):
    xs = sorted(xs)
    return f"{fmt(statistics.median(xs))} ({fmt(xs[0])}-{fmt(xs[-1])})"

one, many, label = collect(sys.argv[1].split(",")), collect(sys.argv[2].split(",")), sys.argv[3]
k = lambda x: f"{x/1e3:,.0f}k"
c = lambda x: f"{x:.2f}"
l = lambda x: f"{x:.1f}"
print(f"| transport | capacity msg/s, threads 1 | capacity, threads {label} | ratio | syslog-ng | CPU us/msg at 4x10k, threads 1 | threads {label} | ratio | syslog-ng |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for t in ("unixsock", "tcp", "fifo", "unixgram", "udp"):
    a, b = one[("capacity", t, "loglab")], many[("capacity", t, "loglab")]
    sa, sb = one[("capacity", t, "syslog-ng")] + many[("capacity", t, "syslog-ng")], None
    ea, eb = one[("efficiency", t, "loglab")], many[("efficiency", t, "loglab")]
    es = one[("efficiency", t, "syslog-ng")] + many[("efficiency", t, "syslog-ng")]
    if not a or not b:
        continue
    r1 = statistics.median([x[0] for x in b]) / statistics.median([x[0] for x in a])
    r2 = statistics.median([x[1] for x in eb]) / statistics.median([x[1] for x in ea])
    print(f"| {t} | {rng([x[0] for x in a], k)} | {rng([x[0] for x in b], k)} | {r1:.2f} | {rng([x[0] for x in sa], k)} | {rng([x[1] for x in ea], c)} | {rng([x[1] for x in eb], c)} | {r2:.2f} | {rng([x[1] for x in es], c)} |")
t = "udp"
a, b = one[("capacity", t, "loglab")], many[("capacity", t, "loglab")]
s = one[("capacity", t, "syslog-ng")] + many[("capacity", t, "syslog-ng")]
if a and b:
    print(f"\nudp loss at capacity (4 x 50,000 as fast as possible), %: threads 1 {rng([x[2] for x in a], l)}; threads {label} {rng([x[2] for x in b], l)}; syslog-ng {rng([x[2] for x in s], l)}")
for key in sorted(k2 for k2 in one if k2[0] == "loss"):
    pass
