"""Layer profiles, layer errors, their comparison and renders (issue 16)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import numpy as np
import onnx
import pytest

import workbench as wb
from workbench import metrics
from workbench.layers import LayerError, LayerProfile, compare_layers, precision_facts
from workbench.model import ensure_node_names
from workbench.runtime import kernels
from workbench.runtime.ort import _GLUE_OPS

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def _compute_nodes(model: onnx.ModelProto) -> set[str]:
    return {n.name for n in model.graph.node if n.op_type not in _GLUE_OPS}


def _check_rows(profile: LayerProfile, model: onnx.ModelProto) -> None:
    model = ensure_node_names(model)  # unnamed nodes get the names every report uses
    names = {n.name for n in model.graph.node}
    for r in profile.rows:
        assert set(r.nodes) <= names, r
        assert r.node == "" or r.node in r.nodes, r
        assert r.time_ms >= 0 and r.implementation
    covered = {n for r in profile.rows for n in r.nodes}
    compute = _compute_nodes(model)
    assert len(covered & compute) >= 0.8 * len(compute), (compute - covered, profile.rows)


@pytest.mark.parametrize("build", ["small_cnn", "attention_block", "conv_bn", "mlp"])
def test_ort_layer_profile_maps_to_original_nodes_and_adds_up(tmodels, build, tmp_path):
    m = getattr(tmodels, build)()
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the profiler's JSON must not land in the working directory
    try:
        p = wb.layer_profile(m, "cpu", runs=5, warmup=1)
    finally:
        os.chdir(cwd)
    assert list(tmp_path.iterdir()) == []
    _check_rows(p, m)
    assert not p.estimated and p.runs == 5 and p.device == "cpu"
    # kernels run inside the run call: their sum cannot exceed the whole-model time
    assert 0 < p.layer_ms <= p.total_ms * 1.001 + 1e-3, (p.layer_ms, p.total_ms)
    assert p.total_ms <= p.wall_ms * 1.5 + 0.05
    back = LayerProfile.from_json(p.to_json())
    assert back == p
    html = p._repr_html_()
    assert "<svg" in html and m.graph.name in html


def test_fused_nodes_are_listed(tmodels):
    m = tmodels.small_cnn()  # Conv + Relu: ORT fuses them into one kernel
    p = wb.layer_profile(m, "cpu", runs=3, warmup=1)
    rows = p.node_rows()
    assert rows["conv1"] is rows["relu1"], p.rows
    assert rows["conv1"].node == "conv1" and rows["conv1"].op == "Conv"


def test_qdq_profile_reports_int8_layers_with_their_qdq_nodes(tmodels):
    m = tmodels.small_cnn()
    q = wb.quantize_int8(m, wb.random_dataset(m, n=4, seed=0))
    p = wb.layer_profile(q, "cpu", runs=3, warmup=1)
    _check_rows(p, q)
    conv = p.node_rows()["conv1"]
    has_qconv = bool(kernels.kernels("QLinearConv", "", None, kernels.CPU))
    assert (conv.precision == "int8") == has_qconv, conv
    if has_qconv:
        assert any(q.graph.node[i].op_type == "DequantizeLinear" for i in range(len(q.graph.node))
                   if q.graph.node[i].name in conv.nodes)  # fmt: skip


def test_f16_profile_precision_follows_the_kernel_registry(tmodels):
    m = tmodels.small_cnn()
    f16 = wb.convert_float16(m)
    p = wb.layer_profile(f16, "cpu", runs=3, warmup=1)
    _check_rows(p, f16)
    opset = next(o.version for o in f16.opset_import if o.domain in ("", "ai.onnx"))
    ok, _ = kernels.kernel_for("Conv", "", opset, [onnx.TensorProto.FLOAT16] * 3)
    assert p.node_rows()["conv1"].precision == ("f16" if ok else "f32")


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino extra not installed")
def test_openvino_layer_profile_uses_runtime_precision(tmodels):
    from workbench.runtime.openvino import device_capabilities

    m = tmodels.small_cnn()
    p = wb.layer_profile(m, "openvino:CPU", runs=3, warmup=1)
    _check_rows(p, m)
    caps = set(device_capabilities("CPU")) | {"f32"}
    for r in p.rows:
        if r.node and r.op == "Conv":
            assert r.precision in caps, r
    # perf counters of one request vs its latency, both from OpenVINO in the same runs
    assert p.total_ms > 0 and 0 < p.layer_ms <= 2 * p.total_ms + 0.1


def test_simulated_profile_is_estimated(tmodels):
    m = tmodels.small_cnn()
    p = wb.layer_profile(m, "gpu-sim")
    assert p.estimated and p.simulated and np.isnan(p.wall_ms)
    assert p.node_rows()["conv1"].precision == "f16"
    assert "estimated" in p._repr_html_() and "estimated" in precision_facts(p)
    acc = wb.layer_profile(m, "gpu-sim", hint="accuracy")
    assert acc.node_rows()["conv1"].precision == "f32"


def test_precision_facts_counts_layers(tmodels):
    m = tmodels.conv_stack(size=8, channels=4, layers=3)
    p = wb.layer_profile(m, "cpu", runs=2, warmup=1)
    facts = precision_facts(p)
    convs = sum(1 for r in p.rows if r.op == "Conv" and r.precision)
    assert f"of {convs} Conv ran" in facts and facts.endswith("on cpu")


def _direct_error(ref, var, ds, output):
    a = np.concatenate([np.asarray(wb.open_runner(ref, "cpu")(f)[output], np.float64).ravel()
                        for f in ds.feeds()])  # fmt: skip
    b = np.concatenate([np.asarray(wb.open_runner(var, "cpu")(f)[output], np.float64).ravel()
                        for f in ds.feeds()])  # fmt: skip
    return metrics.cosine(b, a), metrics.sqnr(b, a), float(np.abs(b - a).max())


def _variants(tmodels):
    m = tmodels.small_cnn()
    ds = wb.random_dataset(m, n=3, seed=1)
    yield "int8", m, wb.quantize_int8(m, ds), ds
    yield "f16", m, wb.convert_float16(m), ds
    yield "bf16", m, wb.convert_float16(m, dtype="bfloat16"), ds
    yield "mixed", m, wb.convert_float16(m, block_ops=("Gemm",)), ds
    for build in ("f16_if", "f16_loop"):
        cf = getattr(tmodels, build)()
        cds = wb.random_dataset(cf, n=3, seed=2)
        yield build, cf, wb.convert_float16(cf), cds


def test_layer_error_output_matches_direct_computation(tmodels):
    for name, ref, var, ds in _variants(tmodels):
        e = wb.layer_error(ref, var, ds)
        out = ref.graph.output[0].name
        row = next(r for r in e.rows if r.tensor == out)
        cos, snr, mx = _direct_error(ref, var, ds, out)
        assert row.cosine == pytest.approx(cos, abs=1e-9), name
        assert row.sqnr_db == pytest.approx(snr, rel=1e-6), name
        assert row.max_abs == pytest.approx(mx, rel=1e-6, abs=1e-12), name
        assert len(e.rows) >= 3, (name, e.rows)
        assert LayerError.from_json(e.to_json()) == e


def test_layer_error_qdq_compares_dequantized_tensor_and_bodies(tmodels):
    m = tmodels.small_cnn()
    ds = wb.random_dataset(m, n=3, seed=1)
    q = wb.quantize_int8(m, ds)
    e = wb.layer_error(m, q, ds)
    dq = {n.output[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    assert any(r.variant_tensor in dq for r in e.rows), e.rows
    loop = tmodels.f16_loop()
    e2 = wb.layer_error(loop, wb.convert_float16(loop), wb.random_dataset(loop, n=2))
    assert "body_mm" in {r.node for r in e2.rows}  # a node inside the Loop body


def test_first_divergence_follows_threshold(tmodels):
    m = tmodels.mlp()
    ds = wb.random_dataset(m, n=2, seed=0)
    f16 = wb.convert_float16(m)
    strict = wb.layer_error(m, f16, ds, threshold_db=1e6)
    assert strict.first_divergent == strict.rows[0].tensor
    assert wb.layer_error(m, f16, ds, threshold_db=-1e6).first_divergent is None
    assert wb.layer_error(m, m, ds).first_divergent is None  # identical models


def test_compare_layers_marks_precision_changes(tmodels):
    m = tmodels.small_cnn()
    q = wb.quantize_int8(m, wb.random_dataset(m, n=4))
    a = wb.layer_profile(m, "cpu", runs=3, warmup=1)
    b = wb.layer_profile(q, "cpu", runs=3, warmup=1)
    c = compare_layers(a, b)
    conv = next(r for r in c.rows if r.node == "conv1")
    assert conv.precision_a == "f32" and conv.precision_changed == (conv.precision_b != "f32")
    assert conv.ratio == pytest.approx(conv.time_b_ms / conv.time_a_ms)
    assert "<svg" in c._repr_html_()
    json.loads(c.to_json())
    with pytest.raises(wb.InputError):
        compare_layers(a, "b")  # type: ignore[arg-type]


def test_layers_dot_colours_by_precision_and_error(tmodels):
    m = tmodels.small_cnn()
    ds = wb.random_dataset(m, n=2)
    p = wb.layer_profile(m, "cpu", runs=2, warmup=1)
    dot = wb.layers_dot(p)
    assert "precision ran" in dot and "conv1" in dot and " ms" in dot
    assert dot.count(" -> ") >= len(p.rows) - 1
    e = wb.layer_error(m, wb.convert_float16(m), ds, threshold_db=1e6)
    dot_e = wb.layers_dot(e)
    assert "SQNR" in dot_e and "first divergence" in dot_e
    collapsed = wb.layers_dot(p, collapse=True)
    assert "collapsed" in collapsed
    if shutil.which("dot"):
        assert dot.render("svg").startswith(b"<?xml") or b"<svg" in dot.render("svg")
    with pytest.raises(wb.InputError):
        wb.layers_dot("not a result")  # type: ignore[arg-type]


def test_hostile_names_are_escaped_in_layers_dot(tmodels):
    m = tmodels.hostile_names()
    p = wb.layer_profile(m, "cpu", runs=2, warmup=1)
    dot = wb.layers_dot(p)
    if shutil.which("dot"):
        dot.render("svg")


def test_layers_panel_drives_the_api(tmodels):
    pytest.importorskip("ipywidgets")
    from workbench.widgets.layers_tab import LayersPanel

    m = tmodels.small_cnn()
    ds = wb.random_dataset(m, n=2)
    panel = LayersPanel(m, ds, variant=wb.convert_float16(m), background=False)
    panel.color_by.value = "error"
    panel.compare.value = "gpu-sim"
    panel.job.run_button.click()
    assert panel.job.state == "done", panel.job.error
    assert isinstance(panel.profile, LayerProfile) and panel.other.estimated
    assert panel.comparison is not None and isinstance(panel.error, LayerError)
    assert "layers" in panel.summary.value and "conv1" in panel.table.value
    no_variant = LayersPanel(m, ds, background=False)
    no_variant.color_by.value = "error"
    no_variant.job.run_button.click()
    assert no_variant.job.state == "error" and "variant" in no_variant.job.error


def _corpus_cases():
    import corpus  # tests/corpus.py: cached real models (several exporters, old opsets)

    return sorted(corpus.available().items())


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", "openvino:CPU"])
def test_layer_verbs_on_the_real_model_corpus(device):
    if device != "cpu" and not HAS_OPENVINO:
        pytest.skip("openvino extra not installed")
    import corpus

    cases = _corpus_cases()
    if not cases:
        pytest.skip("corpus not fetched (python tests/corpus.py fetch)")
    for name, path in cases:
        m = wb.load_model(path)
        ds = wb.Dataset(corpus.feeds(name, 2))
        try:
            p = wb.layer_profile(m, device, dataset=ds, runs=3, warmup=1)
        except wb.UnsupportedError:  # OpenVINO cannot read every model (ai.onnx.ml, ...)
            assert device != "cpu", name
            continue
        _check_rows(p, m)
        if device == "cpu":
            assert p.layer_ms <= p.total_ms * 1.001 + 1e-3, name
        try:
            variant = wb.convert_float16(m)
        except wb.WorkbenchError:  # a model the converter refuses is not this test's subject
            continue
        e = wb.layer_error(m, variant, ds)
        out = [r for r in e.rows if r.tensor in {o.name for o in m.graph.output}]
        for row in out:
            cos, snr, mx = _direct_error(m, variant, ds, row.tensor)
            assert row.cosine == pytest.approx(cos, abs=1e-9), (name, row.tensor)
            assert row.max_abs == pytest.approx(mx, rel=1e-6, abs=1e-12), (name, row.tensor)
