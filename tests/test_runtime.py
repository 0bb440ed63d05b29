"""ORT runtime: runners, feeds checking, benchmark, evaluate, hints type, results JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

import workbench as wb
from workbench.runtime import BenchResult, open_runner


def _ref_mlp(m, x):
    w = {t.name: np.frombuffer(t.raw_data, np.float32).reshape(t.dims) for t in m.graph.initializer}
    h = np.maximum(x @ w["w1"] + w["b1"], 0)
    return h @ w["w2"] + w["b2"]


def test_runner_matches_numpy(tmodels):
    m = tmodels.mlp()
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    run = open_runner(m, "cpu")
    out = run({"x": x})
    assert list(out) == ["y"]
    assert np.allclose(out["y"], _ref_mlp(m, x), atol=1e-5)
    assert run.precision_ran == "f32" and run.device.name == "cpu"


def test_feeds_are_cast_to_model_dtype(tmodels):
    run = open_runner(tmodels.mlp(), "cpu")
    x64 = np.ones((1, 16), np.float64)
    assert run({"x": x64})["y"].dtype == np.float32
    assert np.allclose(run({"x": x64.tolist()})["y"], run({"x": x64.astype(np.float32)})["y"])


def test_wrong_input_name_is_clear(tmodels):
    run = open_runner(tmodels.mlp(), "cpu")
    with pytest.raises(wb.InputError, match="no input 'image'.*inputs are: x"):
        run({"image": np.ones((1, 16), np.float32)})
    with pytest.raises(wb.InputError, match="missing feed for model input 'x'"):
        run({})


def test_unknown_device(tmodels):
    with pytest.raises(wb.InputError, match="unknown device 'tpu9'"):
        open_runner(tmodels.mlp(), "tpu9")


def test_benchmark_fields(tmodels):
    m = tmodels.mlp()
    ds = wb.random_dataset(m, n=3, dims={"N": 4})
    r = wb.benchmark(m, dataset=ds, warmup=2, runs=30)
    assert isinstance(r, BenchResult)
    assert r.runs == 30 and len(r.times_ms) == 30 and r.batch == 4
    assert 0 < r.p10_ms <= r.median_ms <= r.p90_ms
    assert r.throughput == pytest.approx(4 / (r.median_ms / 1e3))
    assert r.precision_ran == "f32" and r.device == "cpu" and not r.simulated
    again = BenchResult.from_json(r.to_json())
    assert again == r
    json.loads(r.to_json())


def test_benchmark_min_time(tmodels):
    r = wb.benchmark(tmodels.mlp(), min_time=0.2, warmup=1)
    assert r.runs >= 5


def test_evaluate_demo_cnn(demo_cnn, demo_data):
    acc = wb.evaluate(demo_cnn, demo_data, wb.demo.accuracy)
    assert acc >= 0.95


def test_evaluate_rejects_bad_validation_fn(tmodels):
    m = tmodels.mlp()
    ds = wb.random_dataset(m, n=2)
    with pytest.raises(wb.InputError, match="returned str"):
        wb.evaluate(m, ds, lambda run, d: "0.9")
    with pytest.raises(wb.InputError, match="raised ZeroDivisionError"):
        wb.evaluate(m, ds, lambda run, d: 1 / 0)
    with pytest.raises(wb.InputError, match="finite"):
        wb.evaluate(m, ds, lambda run, d: float("nan"))
    assert wb.evaluate(m, ds, lambda run, d: np.float32(0.5)) == 0.5


def test_hint_type():
    h = wb.Hint("PERFORMANCE", "fp16")
    assert h.execution_mode == "performance" and h.inference_precision == "f16"
    assert h.label == "performance/f16"
    assert wb.Hint.parse("accuracy") == wb.Hint("accuracy")
    assert wb.Hint.parse("bf16") == wb.Hint("performance", "bf16")
    with pytest.raises(wb.InputError, match="execution mode"):
        wb.Hint("fastest")
    with pytest.raises(wb.InputError, match="inference precision"):
        wb.Hint("accuracy", "int4")
    with pytest.raises(AttributeError):
        h.execution_mode = "accuracy"  # frozen


def test_caller_model_not_mutated_by_runtime(tmodels):
    m = tmodels.mlp()
    before = m.SerializeToString()
    wb.benchmark(m, runs=3)
    wb.evaluate(m, wb.random_dataset(m, n=1), lambda run, d: 1.0)
    assert m.SerializeToString() == before
