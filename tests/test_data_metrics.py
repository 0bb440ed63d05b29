"""Dataset, random_dataset and metrics."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import workbench as wb
from workbench import metrics


def test_dataset_items_and_feeds():
    items = [(np.full((2,), i, np.float32), i) for i in range(3)]
    ds = wb.Dataset(items, transform=lambda it: {"x": it[0]})
    assert len(ds) == 3
    assert list(ds)[1][1] == 1
    feeds = list(ds.feeds())
    assert feeds[2]["x"].tolist() == [2.0, 2.0]
    assert len(ds.take(2)) == 2


def test_dataset_without_transform_must_hold_feeds():
    ds = wb.Dataset([np.zeros(3)])
    with pytest.raises(wb.InputError, match="transform"):
        list(ds.feeds())


def test_random_dataset_signatures(tmodels):
    m = tmodels.make(
        [
            onnx.helper.make_node("Identity", ["a"], ["o1"]),
            onnx.helper.make_node("Identity", ["b"], ["o2"]),
        ],
        [
            tmodels.vi("a", onnx.TensorProto.FLOAT, ["batch", 3]),
            tmodels.vi("b", onnx.TensorProto.INT64, [2]),
        ],
        [
            tmodels.vi("o1", onnx.TensorProto.FLOAT, ["batch", 3]),
            tmodels.vi("o2", onnx.TensorProto.INT64, [2]),
        ],
    )
    ds = wb.random_dataset(m, n=4, seed=1, dims={"batch": 5})
    f = list(ds.feeds())
    assert len(f) == 4
    assert f[0]["a"].shape == (5, 3) and f[0]["a"].dtype == np.float32
    assert f[0]["b"].dtype == np.int64 and f[0]["b"].min() >= 0 and f[0]["b"].max() < 10
    again = list(wb.random_dataset(m, n=4, seed=1, dims={"batch": 5}).feeds())
    assert np.array_equal(f[3]["a"], again[3]["a"])
    assert wb.random_dataset(m, n=1).feeds().__next__()["a"].shape == (1, 3)
    with pytest.raises(wb.InputError):
        wb.random_dataset(m, n=0)


def test_metrics_values():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert metrics.top1(logits, [1, 0, 0]) == pytest.approx(2 / 3)
    assert metrics.agreement(logits, logits * 2) == 1.0
    x, ref = np.array([1.0, 2.0, 4.0]), np.array([1.0, 2.5, 4.0])
    assert metrics.max_abs_error(x, ref) == 0.5
    assert metrics.mean_abs_error(x, ref) == pytest.approx(0.5 / 3)
    assert metrics.max_rel_error(x, ref) == pytest.approx(0.2)
    assert metrics.cosine(ref, ref) == pytest.approx(1.0)
    assert metrics.cosine(np.array([1.0, 0]), np.array([0.0, 1])) == pytest.approx(0.0)
    assert metrics.sqnr(ref, ref) == float("inf")
    assert metrics.sqnr(x, ref) == pytest.approx(10 * np.log10(np.sum(ref**2) / 0.25))
    assert metrics.within_tolerance(x, ref, rtol=0.25, atol=0)
    assert not metrics.within_tolerance(x, ref, rtol=0.1, atol=0)
    assert not metrics.within_tolerance(np.array([np.inf]), np.array([1.0]), 1, 1)
    assert set(metrics.error_stats(x, ref)) == {
        "max_abs",
        "mean_abs",
        "max_rel",
        "mean_rel",
        "cosine",
        "sqnr_db",
    }
