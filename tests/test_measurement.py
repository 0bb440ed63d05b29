"""The measurement protocol: per-item scores, warm-up, pooled rounds with intervals, one record
per distinct setting, performance mode (OpenVINO THROUGHPUT + async queue) and batch."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import workbench as wb
from workbench import metrics
from workbench.runtime import (
    SETTLE_MAX_RUNS,
    SETTLE_WINDOW,
    call_validation,
    open_runner,
    prepare_dataset,
    timed_runs,
    warm_up,
)

FAST = dict(min_time=0.05, rounds=2, warmup=1, bench_items=4)


def _run(feeds):
    return feeds


@pytest.mark.parametrize(
    ("value", "metric", "scores"),
    [
        (0.75, 0.75, ()),
        (np.float32(0.5), 0.5, ()),
        (np.array(0.25), 0.25, ()),
        (np.array([1.0, 0.0, 1.0, 1.0]), 0.75, (1.0, 0.0, 1.0, 1.0)),
        ([0.5, 1.5], 1.0, (0.5, 1.5)),
        (metrics.ItemScores([1, 1, 0]), 2 / 3, (1.0, 1.0, 0.0)),
    ],
)
def test_validation_returns_a_number_or_per_item_scores(value, metric, scores):
    got, items = call_validation(lambda run, d: value, _run, None, with_scores=True)
    assert got == pytest.approx(metric) and items == pytest.approx(scores)
    assert call_validation(lambda run, d: value, _run, None) == pytest.approx(metric)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.ones((2, 2)), "shape"),
        (np.array([]), "shape"),
        (np.array([1.0, np.nan]), "non-finite"),
        ("high", "must return a number"),
        (float("inf"), "finite"),
    ],
)
def test_bad_validation_results_are_clear_errors(value, match):
    def bad_metric(run, data):
        return value

    with pytest.raises(wb.InputError, match=match) as e:
        call_validation(bad_metric, _run, None)
    assert "bad_metric" in str(e.value)


def test_builtin_metrics_carry_per_item_scores():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    acc = metrics.top1(logits, [1, 0, 0])
    assert acc == pytest.approx(2 / 3) and isinstance(acc, float)
    assert acc.items.tolist() == [1.0, 1.0, 0.0]
    agree = metrics.agreement(logits, logits[[0, 1, 1]])
    assert agree.items.tolist() == [1.0, 1.0, 0.0]
    again = pickle.loads(pickle.dumps(acc))
    assert again == acc and again.items.tolist() == acc.items.tolist()
    assert str(acc) == str(float(acc))


def test_hint_performance_mode():
    h = wb.Hint.parse("bf16/throughput")
    assert (h.execution_mode, h.inference_precision, h.performance_mode) == (
        "performance",
        "bf16",
        "throughput",
    )
    assert h.label == "performance/bf16/throughput"
    assert wb.Hint.parse(h.label) == h and wb.Hint.parse("accuracy/latency").label == (
        "accuracy/latency"
    )
    assert wb.Hint(performance_mode="THROUGHPUT").performance_mode == "throughput"
    with pytest.raises(wb.InputError, match="performance mode"):
        wb.Hint(performance_mode="fast")
    with pytest.raises(wb.InputError, match="two values"):
        wb.Hint.parse("latency/throughput")


def test_warm_up_runs_until_settled(demo_cnn):
    runner = open_runner(demo_cnn, "cpu")
    prepared, batch = prepare_dataset(runner, wb.random_dataset(demo_cnn, n=2))
    done = warm_up(runner, prepared, min_runs=2)
    # at least the minimum plus two windows to compare, at most the cap
    assert 2 + 2 * SETTLE_WINDOW <= done <= SETTLE_MAX_RUNS + SETTLE_WINDOW
    assert len(timed_runs(runner, prepared, runs=7)) == 7 and batch == 1
    assert len(timed_runs(runner, prepared, min_time=0.01)) >= 5


def test_records_pool_rounds_with_intervals(tmodels):
    model = tmodels.mlp(in_features=16, out_features=4)
    data = tmodels.labelled_feeds(model, 32)
    calls = []

    def per_item(run, dataset):
        calls.append(1)
        x = np.stack([it[0] for it in dataset])
        out = next(iter(run({"x": x}).values()))
        return (out.argmax(1) == np.asarray([it[1] for it in dataset])).astype(float)

    s = wb.explore(model, data, per_item, variants=("f32",),
                   hints=("performance", "accuracy", "performance/latency"),
                   batch_sizes=(1, 4), **FAST)  # fmt: skip
    # ORT ignores hints: one setting, evaluated once, one record per batch size
    assert len(calls) == 1
    assert [(r.hints, r.batch) for r in s.records] == [
        (("performance", "accuracy", "performance/latency"), 1),
        (("performance", "accuracy", "performance/latency"), 4),
    ]
    one, four = s.records
    assert one.accuracy == four.accuracy == pytest.approx(1.0)  # labels are the f32 argmax
    assert len(one.scores) == 32 and one.accuracy_ci[0] <= 1.0 <= one.accuracy_ci[1]
    for r in s.records:
        assert r.ok and r.runs == len(r.times_ms) >= 2 * 5  # two rounds of ≥ 5 runs pooled
        lo, hi = r.latency_ci_ms
        assert lo <= r.latency_ms <= hi
        assert r.latency_ms == pytest.approx(float(np.median(r.times_ms)))
        assert r.throughput == pytest.approx(r.batch * 1e3 / r.latency_ms)
        assert r.throughput_ci[0] <= r.throughput <= r.throughput_ci[1]
    # a float metric gives no per-item interval
    plain = wb.explore(model, data, tmodels.agreement, variants=("f32",),
                       hints=("performance",), **FAST)  # fmt: skip
    assert plain.records[0].scores == () and plain.records[0].accuracy_ci is None


def test_fixed_batch_model_fails_only_the_larger_batch(tmodels):
    model = tmodels.mlp(in_features=8, out_features=3)
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_value = 1  # a model exported with batch 1 baked in
    model.graph.output[0].type.tensor_type.shape.dim[0].Clear()
    data = wb.random_dataset(model, n=4)
    s = wb.explore(model, data, lambda run, d: 1.0, variants=("f32",), hints=("performance",),
                   batch_sizes=(1, 2), **FAST)  # fmt: skip
    by = {r.batch: r for r in s.records}
    assert by[1].ok
    assert not by[2].ok and by[2].error.startswith("batch 2:") and by[2].accuracy == 1.0


def test_openvino_throughput_mode_is_a_setting(demo_cnn):
    pytest.importorskip("openvino")
    data = wb.demo.demo_dataset("test", n=40)
    hints = ("performance", "performance/latency", "throughput")
    s = wb.explore(demo_cnn, data, wb.demo.accuracy, variants=("f32",), hints=hints,
                   devices=("openvino:CPU",), batch_sizes=(1, 4), **FAST)  # fmt: skip
    # the default performance hint IS latency mode: same compiled settings, one record
    modes = {r.hints: r.performance_mode for r in s.records}
    assert modes == {("performance", "performance/latency"): "latency",
                     ("performance/throughput",): "throughput"}  # fmt: skip
    for r in s.records:
        assert r.ok and r.throughput > 0 and r.throughput_ci[0] <= r.throughput_ci[1]
        if r.performance_mode == "throughput":  # from the async queue, not from latency
            assert any("streams" in n for n in r.notes)
    accs = {r.accuracy for r in s.records}
    assert len(accs) == 1  # same precision, same items: same metric


def test_simulated_devices_report_roofline_estimates(demo_cnn):
    from workbench.hardware.estimate import estimate_for_device

    data = wb.demo.demo_dataset("test", n=40)
    s = wb.explore(demo_cnn, data, wb.demo.accuracy, variants=("f32",),
                   hints=("performance", "accuracy"), devices=("cpu", "gpu-sim"),
                   batch_sizes=(1, 2), **FAST)  # fmt: skip
    sim = [r for r in s.records if r.device == "gpu-sim"]
    real = [r for r in s.records if r.device == "cpu"]
    assert sim and all(r.simulated and r.estimated and r.ok for r in sim)
    assert not any(r.estimated for r in real) and all(r.times_ms for r in real)
    feeds = list(data.feeds())[:4]
    for r in sim:  # never timed on this CPU: the estimate itself, labelled, without noise
        assert r.times_ms == () and r.latency_ci_ms is None and r.runs == 0
        batched = [{"image": np.concatenate([f["image"] for f in feeds[: r.batch]])}]
        est = estimate_for_device(demo_cnn, "gpu-sim", r.hint, batched)
        assert r.latency_ms == pytest.approx(est.latency_ms)
        assert any("estimated" in n for n in r.notes)
    # accuracy is still measured: the emulated numerics ran on the CPU
    assert all(0 < r.accuracy <= 1 for r in sim)


def test_benchmark_on_a_simulated_device_is_an_estimate(demo_cnn):
    from workbench.hardware.estimate import estimate_for_device

    r = wb.benchmark(demo_cnn, "gpu-sim")
    assert r.estimated and r.simulated and r.runs == 0 and r.ci_ms is None
    assert r.median_ms == pytest.approx(estimate_for_device(demo_cnn, "gpu-sim").latency_ms)
    real = wb.benchmark(demo_cnn, "cpu", runs=12)
    assert not real.estimated and real.ci_ms[0] <= real.median_ms <= real.ci_ms[1]
