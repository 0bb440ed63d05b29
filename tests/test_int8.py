"""Static int8 (QDQ) quantization: accuracy of the defaults, determinism, ORT fusion, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import workbench as wb
from workbench.metrics import sqnr
from workbench.precision.int8 import quantize_int8, quantized_nodes
from workbench.runtime.ort import session_options


def optimized_graph(model: onnx.ModelProto, tmp_path: Path) -> onnx.ModelProto:
    """The graph ONNX Runtime actually runs on CPU (all optimizations, as every session)."""
    path = tmp_path / "optimized.onnx"
    ort.InferenceSession(
        model.SerializeToString(), session_options(str(path)), providers=["CPUExecutionProvider"]
    )
    return onnx.load(str(path))


def unfused_qdq_pairs(model: onnx.ModelProto) -> list[str]:
    """DequantizeLinear nodes fed directly by a QuantizeLinear: pure overhead left by fusion."""
    q_outputs = {o for n in model.graph.node if n.op_type == "QuantizeLinear" for o in n.output}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in q_outputs
    ]


@pytest.fixture(scope="module")
def outlier(request):
    import models

    m = models.outlier_channel_cnn()
    return (
        m,
        models.labelled_feeds(m, 32, seed=1, uniform=True),
        models.labelled_feeds(m, 200, seed=2, uniform=True),
    )


def test_outlier_channel_per_tensor_collapses_per_channel_survives(outlier, tmodels):
    model, cal, val = outlier
    before = model.SerializeToString()
    per_tensor = quantize_int8(model, cal, per_channel=False, auto_float=False)
    per_channel = quantize_int8(model, cal, auto_float=False)
    assert model.SerializeToString() == before  # caller's model untouched
    acc_tensor = wb.evaluate(per_tensor, val, tmodels.agreement)
    acc_channel = wb.evaluate(per_channel, val, tmodels.agreement)
    assert acc_tensor < 0.5, acc_tensor  # every conv1 weight but the outlier channel is 0
    assert acc_channel > 0.9, acc_channel
    x = np.stack([item[0] for item in val])
    ref = wb.open_runner(model)({"x": x})["y"]
    assert sqnr(wb.open_runner(per_channel)({"x": x})["y"], ref) > 15
    assert sqnr(wb.open_runner(per_tensor)({"x": x})["y"], ref) < 5

    # measured auto_float finds the collapsed first layer and keeps it float
    rescued = quantize_int8(model, cal, per_channel=False)
    info = json.loads(next(p.value for p in rescued.metadata_props if p.key == "workbench.int8"))
    assert "conv1" in info["auto_float"] and "conv1" not in quantized_nodes(rescued)
    assert wb.evaluate(rescued, val, tmodels.agreement) > 0.8


def test_deterministic_and_no_temp_files_left(outlier, tmp_path, monkeypatch):
    model, cal, _ = outlier
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # this test's own temp root
    a = quantize_int8(model, cal, calibration="entropy")
    b = quantize_int8(model, list(cal.feeds()), calibration="entropy")  # list of feed dicts
    assert a.SerializeToString() == b.SerializeToString()
    assert list(tmp_path.iterdir()) == []  # work folders (ours and ORT's) removed
    onnx.checker.check_model(a)


def test_concurrent_calls_match_sequential(outlier):
    from concurrent.futures import ThreadPoolExecutor

    model, cal, _ = outlier
    expected = quantize_int8(model, cal).SerializeToString()
    stdout = sys.stdout
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: quantize_int8(model, cal).SerializeToString(), range(2)))
    assert results == [expected, expected]
    assert sys.stdout is stdout  # ORT's chatter redirection fully undone


def test_demo_cnn_keeps_accuracy_and_fuses(demo_cnn, demo_data, tmp_path):
    cal = wb.demo.demo_dataset("train", n=64)
    q = quantize_int8(wb.demo.demo_model_path("cnn"), cal)  # a path works too
    base = wb.evaluate(demo_cnn, demo_data, wb.demo.accuracy)
    acc = wb.evaluate(q, demo_data, wb.demo.accuracy)
    assert acc >= base - 0.01, (base, acc)
    info = json.loads(next(p.value for p in q.metadata_props if p.key == "workbench.int8"))
    assert info["per_channel"] and info["calibration"] == "percentile"
    # auto_float may leave only the first/last layer float, and only when it measurably helps
    assert set(info["auto_float"]) <= {"conv1", "fc2"}
    everything = ["conv1", "conv2", "flatten", "fc1", "fc2"]
    assert quantized_nodes(q) == [n for n in everything if n not in info["auto_float"]]
    opt = optimized_graph(q, tmp_path)
    ops = [n.op_type for n in opt.graph.node]
    assert ops.count("QLinearConv") + ops.count("Conv") == 2 and "QGemm" in ops, ops
    assert unfused_qdq_pairs(opt) == []
    assert wb.open_runner(q).precision_ran == "int8"

    full = quantize_int8(demo_cnn, cal, auto_float=False)
    assert quantized_nodes(full) == everything
    ops = [n.op_type for n in optimized_graph(full, tmp_path).graph.node]
    assert ops.count("QLinearConv") == 2 and ops.count("QGemm") == 2, ops
    assert "Conv" not in ops and "Gemm" not in ops


def test_excluded_gemm_really_runs_float(tmodels, tmp_path):
    """ORT's WeightBiasQuantization would re-quantize an excluded Gemm per tensor at load time."""
    model = tmodels.int8_ruining_mlp()
    cal = tmodels.labelled_feeds(model, 32, seed=1)
    val = tmodels.labelled_feeds(model, 200, seed=2)
    q = quantize_int8(model, cal, exclude_nodes=["fc3"])
    assert "fc3" not in quantized_nodes(q)
    opt = optimized_graph(q, tmp_path)
    by_name = {n.name: n.op_type for n in opt.graph.node}
    assert by_name["fc3"] in ("Gemm", "FusedGemm"), by_name
    assert [by_name[f"fc{i}"] for i in (1, 2, 4, 5)] == ["QGemm"] * 4
    assert unfused_qdq_pairs(opt) == []
    assert wb.evaluate(q, val, tmodels.agreement) > 0.9
    assert wb.evaluate(quantize_int8(model, cal), val, tmodels.agreement) < 0.5


def test_batchnorm_folded_and_unnamed_nodes(tmodels):
    model = tmodels.conv_bn()  # unnamed nodes: names come from ensure_node_names
    cal = tmodels.labelled_feeds(model, 32, seed=1, uniform=True)
    val = tmodels.labelled_feeds(model, 200, seed=2, uniform=True)
    q = quantize_int8(model, cal)
    assert "BatchNormalization" not in {n.op_type for n in q.graph.node}  # folded first
    assert {"Conv_1", "Conv_2"} <= set(quantized_nodes(q))
    assert wb.evaluate(q, val, tmodels.agreement) > 0.9
    # excluding a BatchNorm that was folded away keeps the conv it was folded into float
    kept = quantize_int8(model, cal, exclude_nodes=["BatchNormalization_2"], auto_float=False)
    assert "Conv_2" not in quantized_nodes(kept) and "Conv_1" in quantized_nodes(kept)


def test_input_errors(outlier, tmp_path, monkeypatch):
    import tempfile

    # the model is staged to a work folder first: a refused call leaves none behind (even
    # while the traceback keeps the quantizer alive)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model, cal, _ = outlier
    with pytest.raises(wb.InputError, match="no node named 'nope'"):
        quantize_int8(model, cal, exclude_nodes=["nope"])
    with pytest.raises(wb.InputError, match="calibration"):
        quantize_int8(model, cal, calibration="median")
    with pytest.raises(wb.InputError, match="empty"):
        quantize_int8(model, [])
    with pytest.raises(wb.InputError, match="no input 'image'") as raised:
        quantize_int8(model, [{"image": np.zeros((1, 1, 8, 8), np.float32)}])
    assert raised.traceback and list(tmp_path.iterdir()) == []


def test_progress_and_cancel(outlier):
    from workbench.progress import CancelToken, cancellable, progress_sink

    model, cal, _ = outlier
    events = []
    with progress_sink(lambda desc, done, total, post: events.append((desc, done, total))):
        quantize_int8(model, cal)
    assert ("int8 calibration (percentile)", len(cal), len(cal)) in events

    token = CancelToken()
    calls = []

    def cancel_midway(desc, done, total, post):
        calls.append(done)
        if done == 3:
            token.cancel()

    with cancellable(token), progress_sink(cancel_midway), pytest.raises(wb.OperationCancelled):
        quantize_int8(model, cal)
    assert max(calls) < len(cal)


def test_cli_convert_int8(tmp_path):
    """`workbench convert --to int8 / int8-ac` calls quantize_int8 / accuracy control."""
    cli = [sys.executable, "-m", "workbench.cli", "convert", str(wb.demo.demo_model_path("cnn"))]
    for target in ("int8", "int8-ac"):
        out = tmp_path / f"cnn_{target}.onnx"
        res = subprocess.run(
            [*cli, "--to", target, "--data", "demo", "--max-drop", "0.01", "-o", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stderr
        assert wb.open_runner(wb.load_model(out)).precision_ran == "int8"


def test_nothing_quantizable_comes_back_marked_and_exclusions_are_refused(tmodels, outlier):
    """A model ORT's quantizer leaves float comes back as ORT's plain quantize_static would,
    with a warning and a note; excluding every node is a caller mistake and raises."""
    from workbench.precision.int8 import int8_info

    model = tmodels.make(
        [onnx.helper.make_node("Cos", ["x"], ["y"], name="cos")],
        [tmodels.vi("x", tmodels.F, ["N", 8])],
        [tmodels.vi("y", tmodels.F, ["N", 8])],
    )
    data = [{"x": np.ones((1, 8), np.float32)}]
    with pytest.warns(UserWarning, match="Cos"):
        q = quantize_int8(model, data)
    assert not quantized_nodes(q)
    assert any("returned without int8 nodes" in n for n in int8_info(q)["notes"])
    with pytest.warns(UserWarning, match="Cos"):
        r = wb.quantize_with_accuracy_control(model, data, data, lambda run, ds: 1.0)
    assert r.reverted == () and any("without int8 nodes" in n for n in r.notes)
    cnn, cal, _ = outlier
    names = [n.name for n in cnn.graph.node]
    with pytest.raises(wb.UnsupportedError, match="none is returned"):
        quantize_int8(cnn, cal, exclude_nodes=names)
