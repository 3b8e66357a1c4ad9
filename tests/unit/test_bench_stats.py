"""benchmarks.stats: nearest-rank percentiles, latency summary, subsampling, histogram, spreads, ratios."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.results import stats


def test_nearest_rank_percentiles_of_1_to_1000_are_exact_samples():
    values = list(range(1, 1001))
    assert stats.percentile(values, 50) == 500
    assert stats.percentile(values, 90) == 900
    assert stats.percentile(values, 99) == 990
    assert stats.percentile(values, 99.9) == 999  # float 99.9/100*1000 would round up to rank 1000
    assert stats.percentile(values, 100) == 1000
    assert stats.percentile(values, 0) == 1


def test_nearest_rank_on_small_sample_rounds_rank_up():
    values = [15, 20, 35, 40, 50]  # the textbook nearest-rank example
    assert stats.percentile(values, 5) == 15
    assert stats.percentile(values, 30) == 20
    assert stats.percentile(values, 40) == 20
    assert stats.percentile(values, 50) == 35
    assert stats.percentile(values, 100) == 50


def test_latency_summary_known_samples_in_any_order():
    samples = list(range(1000, 0, -1))  # 1000..1 ns, reversed
    s = stats.latency_summary(samples)
    assert s == {
        "count": 1000, "min_ns": 1, "mean_ns": 500.5, "p50_ns": 500, "p90_ns": 900, "p99_ns": 990,
        "p99_9_ns": 999, "max_ns": 1000, "negative": 0,
    }  # fmt: skip


def test_latency_summary_counts_negative_samples_and_handles_empty():
    assert stats.latency_summary([-5, -1, 0, 3])["negative"] == 2
    empty = stats.latency_summary([])
    assert empty["count"] == 0 and empty["p99_ns"] is None


def test_subsample_keeps_limit_evenly_spaced_in_order():
    out = stats.subsample(list(range(100)), 10)
    assert out == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert stats.subsample([3, 1, 2], 10) == [3, 1, 2]


@given(st.lists(st.integers(min_value=-10**6, max_value=10**12), max_size=300))
def test_histogram_counts_every_sample_in_a_bucket_that_contains_it(samples):
    hist = stats.histogram(samples)
    assert sum(n for _, _, n in hist) == len(samples)
    for v in samples:
        assert any(lo <= v <= hi for lo, hi, _ in hist)
    for lo, hi, _ in hist:
        if lo >= 32:
            assert (hi - lo + 1) / lo <= 1 / 32  # relative width bound


def test_spread_and_overlap():
    a = stats.spread([10, 12, 11])
    b = stats.spread([11.5, 13, 14])
    c = stats.spread([20, 21])
    assert (a.median, a.min, a.max) == (11, 10, 12)
    assert c.median == 20.5
    assert a.overlaps(b) and not a.overlaps(c)
    assert stats.spread([None, None]) is None
    assert a.format("{:.0f}") == "11 [10–12]"


def test_ratio_uses_medians_and_all_pairings():
    r = stats.ratio(stats.spread([18, 20, 22]), stats.spread([9, 10, 11]))
    assert r.median == pytest.approx(2.0)
    assert r.min == pytest.approx(18 / 11)
    assert r.max == pytest.approx(22 / 9)
    assert stats.ratio(stats.spread([1]), stats.spread([0])) is None
