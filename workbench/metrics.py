"""Metrics: accuracy, agreement with a reference, error statistics, cosine similarity, SQNR."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


class ItemScores(float):
    """A metric value (the mean) that also carries the per-item scores it averages.

    It is a plain ``float`` everywhere a number is expected, so built-in metrics stay usable as
    ordinary metrics; :func:`workbench.runtime.call_validation` reads ``.items`` to give
    sweeps per-item confidence intervals and paired tests.
    """

    items: np.ndarray

    def __new__(cls, items: Sequence[float] | np.ndarray) -> ItemScores:
        arr = np.asarray(items, dtype=np.float64).ravel()
        self = super().__new__(cls, float(arr.mean()) if arr.size else float("nan"))
        arr.setflags(write=False)
        self.items = arr
        return self

    def __reduce__(self) -> tuple[type[ItemScores], tuple[np.ndarray]]:
        return (ItemScores, (self.items,))

    def __repr__(self) -> str:
        return f"ItemScores({float(self)!r}, n={self.items.size})"

    def __str__(self) -> str:
        return float.__repr__(self)


def top1_items(logits: np.ndarray, labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """Per-row 1.0 / 0.0: is the row's arg-max the label?"""
    logits = _f64(logits).reshape(len(labels), -1)
    return (np.argmax(logits, axis=-1) == np.asarray(labels)).astype(np.float64)


def top1(logits: np.ndarray, labels: Sequence[int] | np.ndarray) -> ItemScores:
    """Share of rows whose arg-max equals the label (a float carrying the per-row scores)."""
    return ItemScores(top1_items(logits, labels))


def agreement_items(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-row 1.0 / 0.0: does the row's arg-max match the reference's arg-max?"""
    a = _f64(outputs).reshape(len(outputs), -1)
    b = _f64(reference).reshape(len(reference), -1)
    return (np.argmax(a, axis=-1) == np.argmax(b, axis=-1)).astype(np.float64)


def agreement(outputs: np.ndarray, reference: np.ndarray) -> ItemScores:
    """Share of rows whose arg-max matches the reference's (top-1 agreement; carries per-row
    scores)."""
    return ItemScores(agreement_items(outputs, reference))


def max_abs_error(x: np.ndarray, ref: np.ndarray) -> float:
    d = np.abs(_f64(x) - _f64(ref))
    return float(np.max(d)) if d.size else 0.0


def mean_abs_error(x: np.ndarray, ref: np.ndarray) -> float:
    d = np.abs(_f64(x) - _f64(ref))
    return float(np.mean(d)) if d.size else 0.0


def _rel(x: np.ndarray, ref: np.ndarray, eps: float) -> np.ndarray:
    r = _f64(ref)
    return np.abs(_f64(x) - r) / np.maximum(np.abs(r), eps)


def max_rel_error(x: np.ndarray, ref: np.ndarray, eps: float = 1e-6) -> float:
    d = _rel(x, ref, eps)
    return float(np.max(d)) if d.size else 0.0


def mean_rel_error(x: np.ndarray, ref: np.ndarray, eps: float = 1e-6) -> float:
    d = _rel(x, ref, eps)
    return float(np.mean(d)) if d.size else 0.0


def cosine(x: np.ndarray, ref: np.ndarray) -> float:
    """Cosine similarity of the flattened tensors (1.0 for two zero tensors)."""
    a, b = _f64(x).ravel(), _f64(ref).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def sqnr(x: np.ndarray, ref: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when identical)."""
    r = _f64(ref)
    noise = np.sum((_f64(x) - r) ** 2)
    if noise == 0:
        return float("inf")
    signal = np.sum(r**2)
    if signal == 0:
        return float("-inf")
    return float(10 * np.log10(signal / noise))


def tolerance_ratio(x: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> float:
    """``max |x − ref| / (atol + rtol·|ref|)``: ≤ 1 means within tolerance (0 when equal).

    Non-finite values must match exactly (NaN where the reference has NaN, the same infinity);
    any other NaN/inf, or a shape mismatch, gives ``inf``. With ``rtol = atol = 0`` any
    difference gives ``inf``.
    """
    a, b = _f64(x), _f64(ref)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not (fa.all() and fb.all()):
        same = (fa == fb) & (np.isnan(a) == np.isnan(b)) & ((a == b) | fa | np.isnan(a))
        if not same.all():
            return float("inf")
        a, b = a[fa], b[fa]
    diff = np.abs(a - b)
    denom = atol + rtol * np.abs(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(diff == 0, 0.0, diff / denom)
    return float(np.max(r)) if r.size else 0.0


def within_tolerance(x: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> bool:
    """``|x - ref| <= atol + rtol * |ref|`` everywhere: :func:`tolerance_ratio` ≤ 1 (NaN/inf
    pass only where the reference has the same value)."""
    return tolerance_ratio(x, ref, rtol, atol) <= 1.0


def error_stats(x: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """All error metrics at once for one output tensor."""
    return {
        "max_abs": max_abs_error(x, ref),
        "mean_abs": mean_abs_error(x, ref),
        "max_rel": max_rel_error(x, ref),
        "mean_rel": mean_rel_error(x, ref),
        "cosine": cosine(x, ref),
        "sqnr_db": sqnr(x, ref),
    }
