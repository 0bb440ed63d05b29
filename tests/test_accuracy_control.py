"""int8 with accuracy control: reverts exactly the harmful op, few evaluations, honest failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from matplotlib.figure import Figure

import workbench as wb
from workbench.precision.accuracy_control import AccuracyControlResult
from workbench.precision.int8 import quantized_nodes
from workbench.runtime.ort import session_options


@pytest.fixture(scope="module")
def ruining():
    import models

    m = models.int8_ruining_mlp()
    return m, models.labelled_feeds(m, 32, seed=1), models.labelled_feeds(m, 200, seed=2)


@pytest.fixture(scope="module")
def controlled(ruining):
    import models

    model, cal, val = ruining
    return wb.quantize_with_accuracy_control(model, cal, val, models.agreement, max_drop=0.05)


def test_reverts_exactly_the_ruining_op(ruining, controlled, tmp_path):
    model, _, val = ruining
    r = controlled
    assert r.baseline_metric == 1.0
    assert r.quantized_metric < 0.5  # fc3 alone ruins int8
    assert r.reverted == ("fc3",)
    assert r.reverted_nodes[0][1] == pytest.approx(r.final_metric - r.quantized_metric)
    assert r.drop <= 0.05 and r.final_metric >= 0.95
    assert max(r.ranking, key=r.ranking.get) == "fc3"
    assert r.evaluations <= 4  # float, all int8, 1 reverted (ranking runs need no validation)
    assert quantized_nodes(r.model) == ["fc1", "fc2", "fc4", "fc5"]
    # the returned model runs fc3 in float and fuses every other Q/DQ in ORT's optimized graph
    path = tmp_path / "opt.onnx"
    ort.InferenceSession(
        r.model.SerializeToString(), session_options(str(path)), providers=["CPUExecutionProvider"]
    )
    ops = {n.name: n.op_type for n in onnx.load(str(path)).graph.node}
    assert ops["fc3"] in ("Gemm", "FusedGemm")
    assert [ops[f"fc{i}"] for i in (1, 2, 4, 5)] == ["QGemm"] * 4
    import models

    assert wb.evaluate(r.model, val, models.agreement) == r.final_metric


def test_two_independent_ruining_ops_are_both_found(tmodels):
    model = tmodels.int8_ruining_mlp(ruined=("fc2", "fc4"))
    cal = tmodels.labelled_feeds(model, 32, seed=1)
    val = tmodels.labelled_feeds(model, 200, seed=2)
    r = wb.quantize_with_accuracy_control(model, cal, val, tmodels.agreement, max_drop=0.05)
    assert sorted(r.reverted) == ["fc2", "fc4"]
    assert all(gain > 0.3 for _, gain in r.reverted_nodes)  # either one alone still ruins it
    assert sorted(r.ranking, key=r.ranking.get)[-2:] in (["fc2", "fc4"], ["fc4", "fc2"])
    assert r.evaluations <= 6


def test_result_round_trip_html_and_plot(controlled):
    r = controlled
    back = AccuracyControlResult.from_json(r.to_json())
    assert back.reverted_nodes == r.reverted_nodes and back.ranking == r.ranking
    assert back.model.SerializeToString() == r.model.SerializeToString()
    html = r._repr_html_()
    assert "fc3" in html and "<svg" in html
    fig = r.plot()
    assert isinstance(fig, Figure)
    bars = fig.axes[0].patches
    assert len(bars) == len(r.ranking)


def test_unreachable_raises_with_best(ruining):
    import models

    model, cal, val = ruining
    with pytest.raises(wb.AccuracyNotReachedError, match="max_reverted=0") as info:
        wb.quantize_with_accuracy_control(
            model, cal, val, models.agreement, max_drop=0.05, max_reverted=0
        )
    best = info.value.best
    assert isinstance(best, AccuracyControlResult)
    assert best.reverted_nodes == () and quantized_nodes(best.model)  # still an int8 model

    # max_drop=0 needs every node in float here: refused rather than a silent float model
    with pytest.raises(wb.AccuracyNotReachedError, match="float model") as info:
        wb.quantize_with_accuracy_control(model, cal, val, models.agreement, max_drop=0.0)
    assert quantized_nodes(info.value.best.model)
    assert "fc3" in info.value.best.reverted


def test_demo_cnn_with_real_metric(demo_cnn, demo_data):
    cal = wb.demo.demo_dataset("train", n=64)
    r = wb.quantize_with_accuracy_control(
        demo_cnn, cal, demo_data, wb.demo.accuracy, max_drop=0.01, drop_type="relative"
    )
    assert r.drop <= 0.01 and r.final_metric >= 0.97
    assert r.evaluations == 2 and r.reverted_nodes == ()
    assert wb.open_runner(r.model).precision_ran == "int8"


def test_prefix_that_leaves_only_a_flatten_is_a_float_model(demo_cnn, demo_data):
    """Reverting conv1/conv2/fc1/fc2 leaves Flatten between float neighbours: ORT keeps it float,
    so that 'int8' model is really float — it must not be evaluated or returned."""
    images = np.stack([image for image, _ in demo_data])
    reference = wb.open_runner(demo_cnn)({"image": images})["logits"]

    def closeness(run, dataset):  # higher is better; 0 only for float-identical logits
        logits = run({"image": np.stack([image for image, _ in dataset])})["logits"]
        return -float(np.abs(logits - reference).mean())

    cal = wb.demo.demo_dataset("train", n=64)
    with pytest.raises(wb.AccuracyNotReachedError, match="float model") as info:
        wb.quantize_with_accuracy_control(demo_cnn, cal, demo_data, closeness, max_drop=0.0)
    best = info.value.best
    assert quantized_nodes(best.model) and best.drop > 0
    assert any(np.isnan(h["metric"]) for h in best.history)  # the float prefix, not evaluated


def test_input_errors(ruining):
    import models

    model, cal, val = ruining
    ok = models.agreement
    cases = [
        (dict(validation_dataset=wb.Dataset([])), "validation_dataset is empty"),
        (dict(calibration_dataset=[]), "calibration_dataset is empty"),
        (dict(max_drop=-0.1), "max_drop"),
        (dict(drop_type="percent"), "drop_type"),
        (dict(validation_fn=lambda run, ds: "high"), "must return a number"),
        (dict(validation_fn=lambda run, ds: 1 / 0), "ZeroDivisionError"),
        (dict(validation_fn=None), "callable"),
    ]
    for override, message in cases:
        kwargs = dict(
            model=model, calibration_dataset=cal, validation_dataset=val, validation_fn=ok
        )
        kwargs.update(override)
        with pytest.raises(wb.InputError, match=message):
            wb.quantize_with_accuracy_control(**kwargs)


def test_cancel_returns_nothing(ruining):
    import models

    from workbench.progress import CancelToken, cancellable

    model, cal, val = ruining
    token = CancelToken()
    calls = []

    def cancelling(run, dataset):
        calls.append(1)
        if len(calls) == 2:  # after the float baseline and the all-int8 evaluation
            token.cancel("stop")
        return models.agreement(run, dataset)

    with cancellable(token), pytest.raises(wb.OperationCancelled):
        wb.quantize_with_accuracy_control(model, cal, val, cancelling, max_drop=0.05)
    assert len(calls) == 2


def test_model_path_input(tmp_path: Path, ruining):
    import models

    model, cal, val = ruining
    path = tmp_path / "m.onnx"
    wb.save_model(model, path)
    r = wb.quantize_with_accuracy_control(str(path), cal, val, models.agreement, max_drop=0.05)
    assert r.reverted == ("fc3",)


def test_hostile_node_name_is_escaped(tmodels):
    model = tmodels.int8_ruining_mlp()
    evil = '<img src=x onerror="alert(1)">'
    for node in model.graph.node:
        if node.name == "fc3":
            node.name = evil
    cal = tmodels.labelled_feeds(model, 32, seed=1)
    val = tmodels.labelled_feeds(model, 200, seed=2)
    r = wb.quantize_with_accuracy_control(model, cal, val, tmodels.agreement, max_drop=0.05)
    assert r.reverted == (evil,)
    html = r._repr_html_()
    assert evil not in html and "&lt;img src=x" in html


def test_ctrl_c_propagates_and_cleans_up(ruining, tmp_path, monkeypatch):
    import tempfile

    import models

    model, cal, val = ruining
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    calls = []

    def interrupted(run, dataset):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return models.agreement(run, dataset)

    with pytest.raises(KeyboardInterrupt):
        wb.quantize_with_accuracy_control(model, cal, val, interrupted, max_drop=0.05)
    assert list(tmp_path.iterdir()) == []
