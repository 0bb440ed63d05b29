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


# ---- bad data gets one line naming the input, what was expected and what came


def test_feeds_checked_against_model_inputs(tmodels):
    from workbench.data import check_dataset, check_feeds, input_specs

    specs = input_specs(tmodels.mlp())
    assert str(specs["x"]) == "float32[N, 16]"
    ok = check_feeds({"x": np.ones((3, 16))}, specs)  # float64 → float32, dynamic batch
    assert ok["x"].dtype == np.float32 and ok["x"].shape == (3, 16)
    with pytest.raises(wb.InputError, match=r"input 'x'.*expected float32\[N, 16\] \(rank 2\), "):
        check_feeds({"x": np.ones((3, 15), np.float32)}, specs)
    with pytest.raises(wb.InputError, match=r"got float32\[16\] \(rank 1\).*batch axis"):
        check_feeds({"x": np.ones(16, np.float32)}, specs)
    with pytest.raises(wb.InputError, match="input 'x'.*got text values"):
        check_feeds({"x": np.array([["a"] * 16])}, specs)
    with pytest.raises(wb.InputError, match="no input 'y'.*inputs are: x"):
        check_feeds({"y": np.ones((1, 16))}, specs)
    with pytest.raises(wb.InputError, match="input 'x' of calibration data item 1: expected"):
        check_dataset(tmodels.mlp(), wb.Dataset([{"x": np.ones((1, 16))}, {"x": np.ones((1, 4))}]),
                      "calibration data")  # fmt: skip


def test_integer_inputs_refuse_lossy_values():
    from workbench.data import InputSpec, check_input

    spec = InputSpec(np.dtype(np.int32), ("N", 4))
    assert check_input("ids", np.arange(4.0)[None], spec).dtype == np.int32  # whole numbers
    with pytest.raises(wb.InputError, match="input 'ids': expected int32 values, got float64"):
        check_input("ids", np.full((1, 4), 0.5), spec)
    with pytest.raises(wb.InputError, match="int32 cannot hold exactly"):
        check_input("ids", np.full((1, 4), 2**40), spec)


def test_runner_reports_wrong_rank_before_running(tmodels):
    from workbench.data import input_specs
    from workbench.runtime import prepare_feeds

    specs = input_specs(tmodels.mlp())
    with pytest.raises(wb.InputError, match=r"input 'x' of cpu: expected float32\[N, 16\]"):
        prepare_feeds({"x": np.ones((2, 2, 16))}, specs, "cpu")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"1,2,3\n4,5,6\n", "looks like a text file"),
        (b"\x93NUMPY\x01\x00", "single .npy array"),
        (bytes(range(256)), "not a numpy .npz archive"),
        (b"PK\x03\x04truncated", "damaged or truncated"),
    ],
)
def test_npz_errors_are_one_line_without_pickle_advice(tmp_path, content, message):
    from workbench.data import dataset_from_npz

    path = tmp_path / "data.npz"
    path.write_bytes(content)
    with pytest.raises(wb.InputError, match=message) as e:
        dataset_from_npz(path)
    assert "allow_pickle" not in str(e.value) and "\n" not in str(e.value)


def test_npz_with_objects_is_refused_not_unpickled(tmp_path):
    from workbench.data import dataset_from_npz

    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(wb.InputError, match="Python objects") as e:
        dataset_from_npz(tmp_path / "obj.npz")
    assert "allow_pickle" not in str(e.value)
    np.savez(tmp_path / "ok.npz", x=np.zeros((5, 16), np.float32))
    assert len(dataset_from_npz(tmp_path / "ok.npz")) == 5


def test_scalar_inputs_stay_scalars():
    from workbench.data import InputSpec
    from workbench.runtime import prepare_feeds

    out = prepare_feeds({"sr": np.array(16000)}, {"sr": InputSpec(np.dtype(np.int64), ())})
    assert out["sr"].shape == () and out["sr"].dtype == np.int64
    with pytest.raises(wb.InputError, match=r"input 'sr': expected int64\[\] \(rank 0\)"):
        prepare_feeds({"sr": np.array([16000])}, {"sr": InputSpec(np.dtype(np.int64), ())})
