"""Metrics: accuracy, agreement with a reference, error statistics, cosine similarity, SQNR."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def top1(logits: np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Share of rows whose arg-max equals the label."""
    logits = _f64(logits).reshape(len(labels), -1)
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(labels)))


def agreement(outputs: np.ndarray, reference: np.ndarray) -> float:
    """Share of rows whose arg-max matches the reference's arg-max (top-1 agreement)."""
    a = _f64(outputs).reshape(len(outputs), -1)
    b = _f64(reference).reshape(len(reference), -1)
    return float(np.mean(np.argmax(a, axis=-1) == np.argmax(b, axis=-1)))


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


def within_tolerance(x: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> bool:
    """``|x - ref| <= atol + rtol * |ref|`` everywhere, with NaN/inf counted as failures."""
    a, b = _f64(x), _f64(ref)
    if a.shape != b.shape or not np.all(np.isfinite(a)):
        return False
    return bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(b)))


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
