"""Issue 16's targets table (benchmarks/report/targets.py): a target is met only when its whole
range meets it, not met when none of it does, and not settled when the range straddles it."""

from __future__ import annotations

from types import SimpleNamespace

from benchmarks.report.targets import MET, NOT_MET, UNSETTLED, target_rows, targets_blocks
from benchmarks.results.model import Workload

CAPACITY = Workload(4, 1000, 200, 0.0, 64)
EFFICIENCY = Workload(4, 1000, 200, 10_000.0, 1)


def run(system, transport, scenario, workload, **derived):
    return SimpleNamespace(system=system, transport=transport, scenario=scenario, workload=workload, status="ok",
                           derived=derived, latency=None, system_stats={})  # fmt: skip


def capacity(system, transport, *rates):
    return [run(system, transport, "capacity", CAPACITY, messages_per_s=r) for r in rates]


def verdicts(runs) -> dict:
    return {(row[0], row[1]): row[-1] for row in target_rows(runs)}


def test_a_ratio_target_is_judged_on_the_whole_range():
    runs = (capacity("loglab", "unixsock", 100, 110, 120) + capacity("rawcopy", "unixsock", 90, 95, 99)
            + capacity("loglab", "tcp", 80, 100, 120) + capacity("rawcopy", "tcp", 95, 100, 105)
            + capacity("loglab", "fifo", 50, 55, 60) + capacity("rawcopy", "fifo", 100, 100, 100))  # fmt: skip
    v = verdicts(runs)
    assert v[("capacity >= 1.0x rawcopy", "unixsock")] == MET  # worst 100 / best 99 >= 1
    assert v[("capacity >= 1.0x rawcopy", "tcp")] == UNSETTLED  # 80/105 .. 120/95
    assert v[("capacity >= 1.0x rawcopy", "fifo")] == NOT_MET
    assert ("capacity >= 1.5x syslog-ng", "unixsock") not in v  # syslog-ng did not run: no row


def test_lower_is_better_targets_and_absolute_bounds():
    runs = [run("loglab", "udp", "efficiency", EFFICIENCY, agg_cpu_us_per_msg=c) for c in (2.0, 2.1)]
    runs += [run("syslog-ng", "udp", "efficiency", EFFICIENCY, agg_cpu_us_per_msg=c) for c in (5.0, 5.2)]
    runs += [run("loglab", "udp", "capacity", CAPACITY, loss_fraction=f, peak_mem_mib=m) for f, m in ((0.10, 30), (0.2, 45))]
    runs += [run("syslog-ng", "udp", "capacity", CAPACITY, loss_fraction=f) for f in (0.0, 0.01)]
    v = verdicts(runs)
    assert v[("CPU/msg at 4x10,000/s <= 0.5x syslog-ng's", "udp")] == MET  # 2.1 / 5.0 = 0.42
    assert v[("udp loss at capacity <= syslog-ng's", "udp")] == NOT_MET  # 10-20 % against 0-1 %
    assert v[("peak memory at capacity <= 40 MiB", "udp")] == UNSETTLED  # 30 and 45


def test_no_target_cell_gives_no_block():
    assert targets_blocks(capacity("loglab", "unixsock", 1, 2)) == []
