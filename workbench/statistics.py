"""Intervals and paired tests behind every figure the workbench reports.

- Latency: the median of per-run times. Its interval is the union of the distribution-free
  order-statistic interval, a *circular block bootstrap* (blocks of ~√n consecutive runs, so
  correlated neighbours widen the interval instead of hiding in it) and a *batch-medians*
  interval (5 contiguous batches, t-widened: the machine's speed shifting between rounds).
- Two latencies: the ratio of medians, with a bootstrap interval (draws widened to the
  batch-medians error when that is larger), tested on the log scale against a minimum
  relevant effect (``margin``): differences smaller than ``margin`` (default
  :data:`LATENCY_MARGIN`) are ties, because the run-to-run spread inside one session cannot see
  the offsets between two sessions of the same computation (memory placement, thread pinning).
- Accuracy: the mean of per-item scores. 0/1 scores get a Wilson interval, other scores a
  bootstrap interval. Two variants are compared *paired on the same items*: McNemar's exact
  test for 0/1 scores, Wilcoxon's signed-rank test otherwise; the interval of the mean paired
  difference is a bootstrap.
- Many comparisons at once are corrected with Holm's step-down method (:func:`holm`).

Everything is deterministic given ``seed``.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

from .errors import InputError
from .results import Result

#: bootstrap resamples for intervals, and for the spread of each record in comparisons
N_BOOT = 2000
N_BOOT_COMPARE = 1000
#: contiguous batches for the batch-medians standard error (level shifts between rounds)
BATCHES = 5
#: latency differences below this fraction are ties (see the module docstring and
#: ``docs/measurement.md``; calibrated by ``benchmarks/bench_ties.py``)
LATENCY_MARGIN = 0.05
#: accuracies given as one number (no per-item scores) closer than this are equal
NUMBER_TOLERANCE = 1e-6

ArrayLike = Sequence[float] | np.ndarray


def _clean(samples: ArrayLike, what: str) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise InputError(f"{what}: no finite values to compute an interval from")
    return x


def _alpha(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")
    return 1.0 - confidence


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([abs(int(seed)), *stream])


def is_binary(scores: ArrayLike) -> bool:
    """Are all scores 0 or 1 (correct / wrong per item)?"""
    x = np.asarray(scores, dtype=np.float64)
    return bool(x.size) and bool(np.all((x == 0.0) | (x == 1.0)))


# ----------------------------------------------------------------------------- one sample


def block_medians(
    samples: ArrayLike, n_boot: int = N_BOOT, seed: int = 0, stream: int = 1
) -> np.ndarray:
    """Medians of ``n_boot`` circular-block-bootstrap resamples of a time-ordered series
    (``stream`` picks an independent random stream for the same ``seed``)."""
    x = _clean(samples, "block_medians")
    n = x.size
    block = max(1, round(math.sqrt(n)))
    nblocks = -(-n // block)
    starts = _rng(seed, stream).integers(0, n, size=(n_boot, nblocks))
    idx = (starts[:, :, None] + np.arange(block)).reshape(n_boot, -1)[:, :n] % n
    return np.median(x[idx], axis=1)


def _order_statistic_ci(xs: np.ndarray, alpha: float) -> tuple[float, float]:
    """Distribution-free interval for the median from order statistics (binomial(n, ½))."""
    n = xs.size
    j = int(_st.binom.ppf(alpha / 2, n, 0.5))
    if _st.binom.cdf(j, n, 0.5) > alpha / 2:
        j -= 1
    if j < 0:  # too few samples to reach the confidence: the whole range
        return float(xs[0]), float(xs[-1])
    return float(xs[j]), float(xs[n - 1 - j])


def median_ci(samples: ArrayLike, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Confidence interval of the median of per-run times (in their unit).

    The union of the order-statistic interval (exact for independent runs), the block
    bootstrap percentile interval (honest when neighbouring runs are correlated) and the
    batch-medians interval (honest when the machine's speed shifts between rounds). With
    fewer than 6 runs no 95% interval exists from order statistics: the full range is returned.
    """
    alpha = _alpha(confidence)
    x = _clean(samples, "median_ci")
    if x.size == 1:
        return float(x[0]), float(x[0])
    lo, hi = _order_statistic_ci(np.sort(x), alpha)
    meds = block_medians(x, seed=seed)
    blo, bhi = np.quantile(meds, [alpha / 2, 1 - alpha / 2])
    lo, hi = min(lo, blo), max(hi, bhi)
    if np.all(x > 0):
        half = z_value(confidence) * batch_se(np.log(x))
        centre = float(np.log(np.median(x)))
        lo, hi = min(lo, math.exp(centre - half)), max(hi, math.exp(centre + half))
    return float(lo), float(hi)


def batch_se(series: ArrayLike, batches: int = BATCHES) -> float:
    """Standard error of a series' median from the medians of ``batches`` contiguous batches
    (batch means, as in simulation output analysis), widened by t(batches−1)/z so a normal
    quantile gives a t-interval at 95%. 0 when there are fewer than 2 values per batch."""
    x = np.asarray(series, dtype=np.float64).ravel()
    if x.size < 2 * batches:
        return 0.0
    meds = np.array([np.median(b) for b in np.array_split(x, batches)])
    widen = _st.t.ppf(0.975, batches - 1) / _st.norm.ppf(0.975)
    return float(meds.std(ddof=1) / math.sqrt(batches) * widen)


def z_value(confidence: float) -> float:
    """Two-sided standard-normal quantile for ``confidence`` (1.96 at 95%)."""
    return float(_st.norm.ppf(0.5 + confidence / 2))


def normal_sf(x: float) -> float:
    """Standard-normal survival function P(Z > x)."""
    return float(_st.norm.sf(x))


def _wilson(k: float, n: int, alpha: float) -> tuple[float, float]:
    z = _st.norm.ppf(1 - alpha / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_ci(scores: ArrayLike, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Confidence interval of the mean of per-item scores.

    0/1 scores (accuracy): Wilson score interval, which stays sensible at 0% or 100% and for
    few items. Other scores: percentile bootstrap of the mean over items.
    """
    alpha = _alpha(confidence)
    x = _clean(scores, "mean_ci")
    if is_binary(x):
        lo, hi = _wilson(float(x.sum()), x.size, alpha)
        return float(lo), float(hi)
    if x.size == 1 or np.all(x == x[0]):
        return float(x[0]), float(x[0])
    idx = _rng(seed, 2).integers(0, x.size, size=(N_BOOT, x.size))
    lo, hi = np.quantile(x[idx].mean(axis=1), [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def metric_step(scores: ArrayLike) -> float:
    """The smallest change of the mean the scores can show (1/n for 0/1 scores); 0 if unknown."""
    x = np.asarray(scores, dtype=np.float64).ravel()
    if x.size == 0:
        return 0.0
    gaps = np.diff(np.unique(x))
    gap = float(gaps.min()) if gaps.size else (1.0 if is_binary(x) else 0.0)
    return gap / x.size


# ----------------------------------------------------------------------------- comparisons


@dataclass(frozen=True)
class Comparison(Result):
    """One comparison of ``a`` against ``b``.

    ``estimate``: latency ratio a/b (medians) or accuracy difference a−b (means);
    ``ci``: its interval; ``p_value`` raw, ``p_adjusted`` after a multiple-comparison
    correction (``correction`` names it); ``test`` names the test.
    """

    what: str
    estimate: float
    ci: tuple[float, float]
    p_value: float
    test: str
    p_adjusted: float | None = None
    correction: str = ""

    def significant(self, confidence: float = 0.95) -> bool:
        """Is the difference beyond noise at ``confidence`` (after the correction, if any)?"""
        p = self.p_value if self.p_adjusted is None else self.p_adjusted
        return p < 1.0 - confidence


@dataclass(frozen=True)
class LogSpread:
    """A positive quantity on the log scale: point estimate, bootstrap draws (or a std error)."""

    point: float
    se: float
    draws: np.ndarray | None = None


def log_spread(
    samples: ArrayLike | None = None,
    *,
    point: float | None = None,
    ci: tuple[float, float] | None = None,
    confidence: float = 0.95,
    seed: int = 0,
) -> LogSpread:
    """Spread of a median latency (or any positive figure) on the log scale.

    From per-run ``samples`` when there are any (block bootstrap of the median); else from a
    ``point`` and its ``ci`` (normal on the log scale); else the point alone (no spread).
    """
    x = np.asarray(samples, dtype=np.float64).ravel() if samples is not None else np.empty(0)
    x = x[np.isfinite(x) & (x > 0)]
    if x.size >= 2:
        draws = _log_block_medians(x.tobytes(), seed)
        spread, shifts = float(draws.std()), batch_se(np.log(x))
        if shifts > spread > 0:  # level shifts between batches: widen the draws to match
            centre = draws.mean()
            draws = centre + (draws - centre) * (shifts / spread)
        return LogSpread(float(np.log(np.median(x))), max(spread, shifts), draws)
    if point is None or not point > 0:
        if x.size == 1:
            return LogSpread(float(np.log(x[0])), 0.0)
        raise InputError("log_spread needs per-run samples or a positive point estimate")
    se = 0.0
    if ci is not None and ci[0] is not None and ci[1] is not None and 0 < ci[0] <= ci[1]:
        se = (math.log(ci[1]) - math.log(ci[0])) / (2 * _st.norm.ppf(0.5 + confidence / 2))
    return LogSpread(math.log(point), float(se))


@functools.lru_cache(maxsize=512)
def _log_block_medians(data: bytes, seed: int) -> np.ndarray:
    """Memoised: tables, plots and the recommendation compare the same records many times.
    The random stream follows the data, so a record gets the same draws in every comparison
    and two records get independent ones."""
    x = np.frombuffer(data, dtype=np.float64)
    draws = np.log(block_medians(x, N_BOOT_COMPARE, seed, stream=zlib.crc32(data)))
    draws.setflags(write=False)
    return draws


def ratio_test(a: LogSpread, b: LogSpread, margin: float = LATENCY_MARGIN) -> tuple[float, float]:
    """(ratio a/b, p-value) for "the ratio differs from 1 by more than ``margin``".

    A minimum-effect test on the log scale with the bootstrap standard error: |log ratio| must
    exceed log(1 + margin) by more than the noise allows.
    """
    d = a.point - b.point
    se = math.hypot(a.se, b.se)
    excess = abs(d) - math.log1p(max(margin, 0.0))
    if se == 0.0:
        p = 0.0 if excess > 0 else 1.0
    else:
        p = min(1.0, 2.0 * float(_st.norm.sf(excess / se)))
    return math.exp(d), p


def ratio_ci(a: LogSpread, b: LogSpread, confidence: float = 0.95) -> tuple[float, float]:
    """Interval of the ratio a/b: percentiles of independent bootstrap draws, else normal."""
    alpha = _alpha(confidence)
    if a.draws is not None and b.draws is not None:
        lo, hi = np.quantile(a.draws - b.draws, [alpha / 2, 1 - alpha / 2])
    else:
        z = _st.norm.ppf(1 - alpha / 2) * math.hypot(a.se, b.se)
        lo, hi = a.point - b.point - z, a.point - b.point + z
    return float(math.exp(lo)), float(math.exp(hi))


def compare_latency(
    a_times: ArrayLike,
    b_times: ArrayLike,
    confidence: float = 0.95,
    seed: int = 0,
    margin: float = LATENCY_MARGIN,
) -> Comparison:
    """Median latency of ``a`` over ``b`` (ratio < 1: a is faster), with interval and p-value."""
    a = log_spread(a_times, seed=seed)
    b = log_spread(b_times, seed=seed)
    ratio, p = ratio_test(a, b, margin)
    return Comparison(
        "latency ratio",
        ratio,
        ratio_ci(a, b, confidence),
        p,
        f"block bootstrap of medians, minimum effect {margin:.0%}",
    )


def paired_test(a: ArrayLike, b: ArrayLike) -> tuple[float, str]:
    """(p-value, test name) for per-item scores of two variants on the same items."""
    x, y = _paired(a, b)
    d = x - y
    if not np.any(d):
        return 1.0, "identical item scores"
    if is_binary(x) and is_binary(y):
        wins, losses = int(np.sum(d > 0)), int(np.sum(d < 0))
        return float(_st.binomtest(wins, wins + losses, 0.5).pvalue), "McNemar exact"
    return float(_st.wilcoxon(d, zero_method="wilcox").pvalue), "Wilcoxon signed-rank"


def paired_ci(
    a: ArrayLike, b: ArrayLike, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap interval of the mean paired difference a−b over items."""
    alpha = _alpha(confidence)
    x, y = _paired(a, b)
    d = x - y
    if not np.any(d):
        return 0.0, 0.0
    idx = _rng(seed, 3).integers(0, d.size, size=(N_BOOT, d.size))
    lo, hi = np.quantile(d[idx].mean(axis=1), [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _paired(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.size != y.size or x.size == 0:
        raise InputError(
            f"paired scores need the same items: got {x.size} and {y.size} scores; "
            "evaluate both variants on the same dataset"
        )
    return x, y


def compare_scores(
    a: ArrayLike, b: ArrayLike, confidence: float = 0.95, seed: int = 0
) -> Comparison:
    """Mean per-item score of ``a`` minus ``b`` on the same items, with a paired test."""
    p, test = paired_test(a, b)
    x, y = _paired(a, b)
    return Comparison(
        "accuracy difference", float((x - y).mean()), paired_ci(a, b, confidence, seed), p, test
    )


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error control, any dependence)."""
    p = np.asarray(p_values, dtype=np.float64).ravel()
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return out


__all__ = [
    "LATENCY_MARGIN",
    "BATCHES",
    "N_BOOT",
    "Comparison",
    "LogSpread",
    "batch_se",
    "block_medians",
    "compare_latency",
    "compare_scores",
    "holm",
    "is_binary",
    "log_spread",
    "mean_ci",
    "median_ci",
    "metric_step",
    "normal_sf",
    "paired_ci",
    "paired_test",
    "ratio_ci",
    "ratio_test",
    "z_value",
]
