"""Intervals and paired tests (workbench.statistics): coverage, error rates, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from workbench import statistics as S
from workbench.errors import InputError


def test_median_ci_covers_the_true_median():
    # lognormal(0, 0.3) has median exactly 1.0
    hits = 0
    for i in range(200):
        x = np.random.default_rng(i).lognormal(0.0, 0.3, 60)
        lo, hi = S.median_ci(x, seed=i)
        assert lo <= np.median(x) <= hi
        hits += lo <= 1.0 <= hi
    assert hits >= 0.93 * 200


def test_median_ci_small_samples_and_determinism():
    assert S.median_ci([2.0]) == (2.0, 2.0)
    # fewer than 6 runs: no 95% order-statistic interval exists, the range is returned
    assert S.median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)
    x = np.random.default_rng(0).normal(10, 1, 40)
    assert S.median_ci(x, seed=3) == S.median_ci(x, seed=3)
    lo90, hi90 = S.median_ci(x, confidence=0.8)
    lo, hi = S.median_ci(x)
    assert lo <= lo90 <= hi90 <= hi
    with pytest.raises(InputError):
        S.median_ci([])
    with pytest.raises(InputError):
        S.median_ci(x, confidence=1.5)


def test_median_ci_widens_with_drift():
    """Runs that drift (correlated neighbours) get a wider interval than shuffled runs."""
    rng = np.random.default_rng(1)
    drift = np.repeat(rng.normal(0, 0.2, 8), 50)  # 8 rounds with their own level
    x = 5.0 + drift + rng.normal(0, 0.05, drift.size)
    lo, hi = S.median_ci(x)
    slo, shi = S.median_ci(rng.permutation(x))
    assert hi - lo > 1.5 * (shi - slo)


def test_mean_ci_binary_is_wilson_and_continuous_covers():
    scores = np.r_[np.ones(57), np.zeros(7)]
    ref = st.binomtest(57, 64).proportion_ci(0.95, method="wilson")
    assert S.mean_ci(scores) == pytest.approx((ref.low, ref.high))
    lo, hi = S.mean_ci(np.ones(64))  # 100% correct still leaves room below
    assert hi == pytest.approx(1.0) and lo < 0.97
    hits = 0
    for i in range(200):
        x = np.random.default_rng(i).exponential(1.0, 80)
        lo, hi = S.mean_ci(x, seed=i)
        hits += lo <= 1.0 <= hi
    assert hits >= 0.9 * 200


def test_metric_step():
    assert S.metric_step(np.r_[np.ones(60), np.zeros(4)]) == pytest.approx(1 / 64)
    assert S.metric_step(np.ones(64)) == pytest.approx(1 / 64)  # binary even if all correct
    assert S.metric_step([0.0, 0.5, 1.0, 1.0]) == pytest.approx(0.5 / 4)
    assert S.metric_step([]) == 0.0


def test_paired_tests():
    rng = np.random.default_rng(0)
    a = (rng.random(200) < 0.8).astype(float)
    assert S.paired_test(a, a.copy()) == (1.0, "identical item scores")
    b = a.copy()
    wrong = np.flatnonzero(a == 1)[:10]
    b[wrong] = 0.0  # 10 discordant pairs, all one way
    p, test = S.paired_test(a, b)
    assert test == "McNemar exact" and p == pytest.approx(2 * 0.5**10)
    c = S.compare_scores(b, a)
    assert c.estimate == pytest.approx(-10 / 200)
    assert c.ci[0] <= c.estimate <= c.ci[1] <= 0.0
    x = rng.normal(0, 1, 50)
    p, test = S.paired_test(x + 0.5, x + rng.normal(0, 0.1, 50))
    assert test == "Wilcoxon signed-rank" and p < 1e-6
    with pytest.raises(InputError, match="same items"):
        S.paired_test([1.0, 0.0], [1.0])


def test_paired_test_false_positive_rate_under_the_null():
    """Exchangeable scores (no real difference) are called different in ≤ ~5% of trials."""
    fp = 0
    for i in range(300):
        rng = np.random.default_rng(i)
        difficulty = rng.beta(8, 1.5, 100)  # per-item chance of being right, same for both
        a = (rng.random(100) < difficulty).astype(float)
        b = (rng.random(100) < difficulty).astype(float)
        fp += S.paired_test(a, b)[0] < 0.05
    assert fp <= 0.07 * 300


def _holm_reference(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def test_holm_matches_its_definition():
    for seed in range(20):
        p = np.random.default_rng(seed).random(12) ** 3
        adj = S.holm(p)
        assert adj == pytest.approx(_holm_reference(list(p)))
        assert np.all(adj >= p)
    assert S.holm([]).size == 0


def test_compare_latency_ties_and_separates():
    rng = np.random.default_rng(0)
    same = [S.compare_latency(rng.lognormal(0, 0.1, 300), rng.lognormal(0, 0.1, 300), seed=i)
            for i in range(20)]  # fmt: skip
    assert sum(c.significant() for c in same) <= 1
    assert np.mean([c.ci[0] < 1.0 < c.ci[1] for c in same]) >= 0.85
    slow = S.compare_latency(rng.lognormal(math.log(2), 0.1, 300), rng.lognormal(0, 0.1, 300))
    assert slow.significant() and slow.ci[0] < 2.0 < slow.ci[1]
    # below the minimum effect: a real but tiny difference is a tie by design
    tiny = S.compare_latency(np.full(50, 1.02), np.full(50, 1.0))
    assert not tiny.significant()
    assert S.compare_latency(np.full(50, 1.02), np.full(50, 1.0), margin=0.0).significant()


def test_log_spread_from_interval():
    s = S.log_spread(point=10.0, ci=(9.0, 11.0))
    assert s.point == pytest.approx(math.log(10.0)) and s.se > 0 and s.draws is None
    assert S.log_spread(point=10.0).se == 0.0
    with pytest.raises(InputError):
        S.log_spread()


def test_level_shifts_between_rounds_are_noise():
    """A shared machine switches between a fast and a slow state for long stretches; two
    identical settings that caught the slow state for different shares of their runs tie."""
    rng = np.random.default_rng(3)

    def series(slow_share):
        n = 3000
        level = np.where(np.arange(n) < slow_share * n, 1.6, 1.0)
        return level * rng.lognormal(0, 0.02, n)

    a, b = series(4 / 6), series(1 / 6)
    assert np.median(a) / np.median(b) > 1.4  # the medians alone would call a 1.5× slower
    assert not S.compare_latency(a, b).significant()
    assert S.batch_se(np.log(a)) > 0.05
    lo, hi = S.median_ci(a)
    assert hi - lo > 0.2 * np.median(a)  # the interval shows the shift
    # a steady 2× difference is still found
    assert S.compare_latency(series(0) * 2, series(0)).significant()
