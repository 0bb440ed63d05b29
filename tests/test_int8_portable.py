"""int8 on real-model shapes, on any CPU: reduce_range pinned both ways, degenerate ranges,
old opsets, nothing written to the current directory, one quantization path, no global state."""

from __future__ import annotations

import hashlib
import logging
import sys

import numpy as np
import onnx
import pytest

import workbench as wb
from workbench.cpu import CpuInfo, cpu_info
from workbench.metrics import sqnr
from workbench.precision.accuracy_control import rank
from workbench.precision.int8 import (
    Int8Quantizer,
    int8_info,
    int8_model,
    ort_refusal,
    quantize_int8,
    quantized_nodes,
    target_reduce_range,
)


def plain_quantize_static(model: onnx.ModelProto, feeds, tmp_path, **kw) -> onnx.ModelProto:
    """ORT's own ``quantize_static`` (QDQ, per-channel), the reference int8 must never lose to."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    class Reader:
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    src, dst = tmp_path / "plain_in.onnx", tmp_path / "plain_out.onnx"
    onnx.save_model(model, src)
    quantize_static(
        str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True, **kw
    )
    return onnx.load_model(str(dst))


def outputs(model: onnx.ModelProto, feeds) -> np.ndarray:
    run = wb.open_runner(model)
    return np.concatenate([next(iter(run(f).values())) for f in feeds])


def weight_extremes(model: onnx.ModelProto) -> int:
    """Largest |q| over the int8 weights (DequantizeLinear of int8 initializers)."""
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    arrays = [
        inits[n.input[0]]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in inits
        and inits[n.input[0]].dtype == np.int8
    ]
    return max(int(np.abs(a.astype(np.int32)).max()) for a in arrays)


@pytest.mark.parametrize("reduce_range", [True, False])
def test_reduce_range_pinned_both_ways(tmodels, reduce_range):
    model = tmodels.outlier_channel_cnn()
    cal = tmodels.labelled_feeds(model, 32, seed=1, uniform=True)
    val = tmodels.labelled_feeds(model, 100, seed=2, uniform=True)
    q = quantize_int8(model, cal, reduce_range=reduce_range, auto_float=False)
    info = int8_info(q)
    assert info["reduce_range"] is reduce_range and info["reduce_range_reason"] == "explicit"
    # 7-bit weights use [-64, 63]; full range reaches 127 on the largest weight of a channel
    assert weight_extremes(q) == (64 if reduce_range else 127)
    assert wb.evaluate(q, val, tmodels.agreement) > 0.8  # either way (VNNI or not)


def test_reduce_range_default_follows_the_target(tmodels):
    assert target_reduce_range(["avx2", "fma"])[0] is True
    assert target_reduce_range(["avx2", "avx512_vnni"])[0] is False
    assert target_reduce_range(["avx2", "avx_vnni"])[0] is False
    assert target_reduce_range(())[0] is False  # unknown flags: full range
    vnni_cpu = CpuInfo(model="t", cores=1, flags=("avx512_vnni",), arch="x86_64")
    assert target_reduce_range(vnni_cpu)[0] is False
    with pytest.raises(wb.InputError, match="CPU flags"):
        target_reduce_range("avx2")
    model = tmodels.int8_ruining_mlp()
    cal = tmodels.labelled_feeds(model, 8, seed=1)
    for flags, expected in ((["avx2"], True), (["avx512_vnni"], False)):
        info = int8_info(quantize_int8(model, cal, target=flags, auto_float=False))
        assert info["reduce_range"] is expected, info
    # no target: this machine, whatever it is (derived from what it reports, not pinned)
    here = int8_info(quantize_int8(model, cal, auto_float=False))
    assert here["reduce_range"] is target_reduce_range(cpu_info())[0]
    assert "this machine" in here["reduce_range_reason"]


def test_integer_input_with_constant_range(tmodels, tmp_path):
    """tf2onnx/VAD-like: an int64 sample rate reaches float math as a constant 16000.0."""
    model = tmodels.int8_sample_rate_mlp()
    cal, val = tmodels.sample_rate_feeds(32, seed=1), tmodels.sample_rate_feeds(16, seed=2)
    ref = outputs(model, val)
    plain = plain_quantize_static(model, cal, tmp_path)  # MinMax: the library's default
    assert ort_refusal(plain) is None
    for calibration in ("percentile", "entropy", "minmax"):
        q = quantize_int8(model, cal, calibration=calibration)
        assert ort_refusal(q) is None and quantized_nodes(q)
        notes = int8_info(q)["notes"]
        if calibration == "percentile":  # the 2048-bin histogram of 16000.0 cannot be built
            assert any("'sr_f'" in n and "min/max range used" in n for n in notes), notes
        assert sqnr(outputs(q, val), ref) >= min(20.0, sqnr(outputs(plain, val), ref) - 3)


@pytest.mark.parametrize("opset", [11, 12])
def test_old_opset_per_channel_upgrades(tmodels, tmp_path, opset):
    """PaddlePaddle-style opset 11/12: per-channel DequantizeLinear needs opset 13."""
    model = tmodels.old_opset_cnn(opset)
    r = np.random.default_rng(0)
    cal = [{"x": r.uniform(0, 1, (1, 3, 8, 8)).astype(np.float32)} for _ in range(16)]
    val = [{"x": r.uniform(0, 1, (4, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    q = quantize_int8(model, cal, auto_float=False)
    assert ort_refusal(q) is None
    info = int8_info(q)
    assert any(f"opset {opset} upgraded to 13" in n for n in info["notes"]), info
    # (MatMul+Add may come back fused into one Gemm by ORT's pre-processing)
    assert info["per_channel"] and {"conv1", "conv2"} <= set(quantized_nodes(q))
    assert len(quantized_nodes(q)) >= 4
    assert sqnr(outputs(q, val), outputs(model, val)) > 20
    # per-tensor needs no upgrade and keeps the model's opset
    flat = quantize_int8(model, cal, per_channel=False)
    assert ort_refusal(flat) is None
    assert not any("upgraded" in n for n in int8_info(flat)["notes"])
    assert [o.version for o in flat.opset_import if o.domain == ""] == [opset]


def test_nothing_written_to_the_current_directory(tmodels, tmp_path, monkeypatch):
    """ORT's symbolic shape inference saves sym_shape_infer_temp.onnx into the cwd when it
    cannot finish (here: a com.microsoft Inverse); quantize_int8 must not let it."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    model = tmodels.int8_contrib_inverse()
    r = np.random.default_rng(0)
    cal = [{"x": (np.eye(4) * 2 + r.uniform(0, 0.5, (4, 4))).astype(np.float32)} for _ in range(8)]
    q = quantize_int8(model, cal)
    assert ort_refusal(q) is None and "matmul" in quantized_nodes(q)
    assert "onnx shapes only" in int8_info(q)["prepared"]
    ruin = tmodels.int8_ruining_mlp()
    data = tmodels.labelled_feeds(ruin, 16, seed=1)
    wb.quantize_with_accuracy_control(ruin, data, data, tmodels.agreement, max_drop=0.05)
    assert list(work.iterdir()) == []


def test_accuracy_control_starts_from_quantize_int8_bytes(tmodels):
    model = tmodels.int8_ruining_mlp()
    cal = tmodels.labelled_feeds(model, 32, seed=1)
    val = tmodels.labelled_feeds(model, 100, seed=2)
    for reduce_range in (True, False):
        options = dict(calibration="entropy", reduce_range=reduce_range)
        expected = quantize_int8(model, cal, **options).SerializeToString()
        r = wb.quantize_with_accuracy_control(
            model, cal, val, tmodels.agreement, max_drop=0.05, **options
        )
        assert r.start_sha256 == hashlib.sha256(expected).hexdigest()
        assert any("started from quantize_int8's model" in n for n in r.notes)
        assert r.reduce_range is reduce_range and int8_info(r.model)["reduce_range"] is reduce_range
        assert r.reverted == ("fc3",)
        # all-int8 metric is quantize_int8's metric
        assert r.quantized_metric == wb.evaluate(
            onnx.load_model_from_string(expected), val, tmodels.agreement
        )


def test_one_pass_ranking_matches_per_node(tmodels):
    model = tmodels.int8_ruining_mlp(ruined=("fc2", "fc4"))
    cal = tmodels.labelled_feeds(model, 16, seed=1)
    feeds = list(cal.feeds())
    with Int8Quantizer(model, cal) as q:
        start, kept = int8_model(q, (), False, 0)
        candidates = quantized_nodes(start)
        one, how = rank(q, candidates, feeds, (), "one-pass", verify_top=0)
        per, _ = rank(q, candidates, feeds, (), "per-node")
    assert "one pass" in how
    assert (
        set(sorted(one, key=one.get)[-2:])
        == set(sorted(per, key=per.get)[-2:])
        == {
            "fc2",
            "fc4",
        }
    )
    for name in candidates:  # simulated Q/DQ in float vs ORT's integer kernels: close
        assert one[name] == pytest.approx(per[name], rel=0.2, abs=0.05), (name, one, per)


def test_one_pass_ranking_restores_folded_relus(demo_cnn):
    """ORT folds Relu into the uint8 Q range: the probe puts it back on the float path, so the
    start model itself serves (no extra quantization) and agrees with per-node ranking."""
    cal = wb.demo.demo_dataset("train", n=32)
    feeds = list(cal.take(8).feeds())
    with Int8Quantizer(demo_cnn, cal) as q:
        start, kept = int8_model(q, (), True, 8)
        candidates = [n for n in quantized_nodes(start) if n not in kept]
        one, how = rank(q, candidates, feeds, kept, "one-pass", 0, start)
        per, _ = rank(q, candidates, feeds, kept, "per-node")
    assert "start model" in how
    assert max(one, key=one.get) == max(per, key=per.get)
    for name in candidates:
        assert one[name] == pytest.approx(per[name], rel=0.5, abs=1e-3), (name, one, per)


def test_process_state_untouched_during_calls(tmodels):
    """No stdout swap, no root log level change, even while the work runs (other threads see
    the process as it is)."""
    model = tmodels.int8_ruining_mlp()
    cal = tmodels.labelled_feeds(model, 16, seed=1)
    stdout, level = sys.stdout, logging.getLogger().level
    seen = []

    def metric(run, dataset):
        seen.append((sys.stdout is stdout, logging.getLogger().level == level))
        return tmodels.agreement(run, dataset)

    wb.quantize_with_accuracy_control(model, cal, cal, metric, max_drop=0.05)
    assert seen and all(a and b for a, b in seen)
    assert sys.stdout is stdout and logging.getLogger().level == level


def test_bad_calibration_item_is_one_clear_error(tmodels):
    model = tmodels.int8_ruining_mlp()
    good = {"x": np.zeros((1, 16), np.float32)}
    with pytest.raises(wb.InputError, match="'x'.*calibration data item 1"):
        quantize_int8(model, [good, {"x": np.zeros((16,), np.float32)}])


@pytest.mark.slow
def test_never_worse_than_plain_quantize_static_on_the_corpus(corpus_models, tmp_path):
    """Where ORT's plain quantize_static (QDQ, per-channel) gives a model ORT loads, so does
    quantize_int8 — and it agrees with float32 at least as well, up to a small margin."""
    import corpus

    for name, path in corpus_models.items():
        items = corpus.feeds(name, 4)
        ref = corpus.reference_outputs(path, items)
        try:
            plain = plain_quantize_static(wb.load_model(path), items, tmp_path)
        except Exception:  # the library itself fails: nothing to compare against
            continue
        if ort_refusal(plain) is not None:
            plain_agreement = -1.0  # the library's model does not even load
        else:
            plain_agreement = corpus.agreement(corpus.run_all(plain, items), ref)
        ours = quantize_int8(path, items)  # (a PrecisionWarning where nothing is int8)
        assert ort_refusal(ours) is None, name
        ours_agreement = corpus.agreement(corpus.run_all(ours, items), ref)
        assert ours_agreement >= plain_agreement - 0.05, (name, ours_agreement, plain_agreement)
