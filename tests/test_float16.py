"""float16 / bfloat16 conversion (issue 4): every failure family converts, checks, runs and agrees."""

from __future__ import annotations

import re

import models
import numpy as np
import onnx
import pytest

import workbench as wb
from workbench.cli import main
from workbench.data import random_dataset
from workbench.errors import InputError, OperationCancelled
from workbench.model import ensure_node_names
from workbench.precision.float16 import Float16Result, convert_float16, convertible_nodes
from workbench.progress import CancelToken, cancellable, progress_sink
from workbench.runtime.ort import make_session
from workbench.tensor_types import tensor_types

FP16 = onnx.TensorProto.FLOAT16
BF16 = onnx.TensorProto.BFLOAT16
FP32 = onnx.TensorProto.FLOAT

FAMILIES = models.FLOAT16_FAMILIES


def _feeds(model: onnx.ModelProto, seed: int = 0, **dims: int) -> dict[str, np.ndarray]:
    if model.graph.name == "f16_int_bool_string":
        x = np.random.default_rng(seed).standard_normal((3, 4)).astype(np.float32)
        return {"x": x, "s": np.array(["a", "<b>", "c"], dtype=object)}
    return next(random_dataset(model, n=1, seed=seed, dims={"N": 2, "T": 3, **dims}).feeds())


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return make_session(model).run(None, feeds)


def _assert_agree(reference, converted, feeds, tol: float, low_inputs: bool = False) -> None:
    """Same outputs (floats within ``tol`` relative to the output's scale; others exactly)."""
    onnx.checker.check_model(converted, full_check=True)
    expected = _run(ensure_node_names(reference), feeds)
    fed = {
        k: v.astype(np.float16) if low_inputs and v.dtype == np.float32 else v
        for k, v in feeds.items()
    }
    got = _run(converted, fed)
    assert len(got) == len(expected)
    for e, g in zip(expected, got, strict=True):
        assert e.shape == g.shape
        if e.dtype.kind == "f":
            scale = max(1.0, float(np.max(np.abs(e)))) if e.size else 1.0
            np.testing.assert_allclose(g.astype(np.float64), e, rtol=tol, atol=tol * scale)
        else:
            assert e.dtype == g.dtype and np.array_equal(e, g)


_VARIANTS = {"fp16": ("float16", True, 1e-2), "fp16-low-io": ("float16", False, 1e-2)}
_VARIANTS["bf16"] = ("bfloat16", True, 5e-2)
# 1e6·x as a float16 *output* overflows by definition (auto mixed precision's job)
_CASES = [
    pytest.param(family, *args, id=f"{family}-{vid}")
    for family in FAMILIES
    for vid, args in _VARIANTS.items()
    if not (family == "f16_extreme_constants" and vid == "fp16-low-io")
]


@pytest.mark.parametrize(("family", "dtype", "keep", "tol"), _CASES)
def test_family_converts_checks_runs_and_agrees(tmodels, family, dtype, keep, tol):
    model = getattr(tmodels, family)()
    before = model.SerializeToString()
    converted = convert_float16(model, dtype=dtype, keep_io_types=keep)
    assert model.SerializeToString() == before, "the caller's model was mutated"
    _assert_agree(model, converted, _feeds(model), tol, low_inputs=not keep)


@pytest.mark.parametrize("opset", range(11, 22))
def test_opsets_11_to_21(tmodels, opset):
    model = tmodels.f16_opset(opset)
    feeds = _feeds(model)
    _assert_agree(model, convert_float16(model), feeds, 1e-2)
    r = convert_float16(model, dtype="bfloat16", report=True)
    _assert_agree(model, r.model, feeds, 5e-2)
    upgraded = [n for n in r.notes if "upgraded to 13" in n]
    # Cast to bfloat16 needs opset 13: older models are upgraded with onnx.version_converter
    assert bool(upgraded) == (opset < 13)
    assert model.opset_import[0].version == opset  # the caller's model is untouched


def test_float_only_inputs_follow_the_kernel_registry(tmodels):
    model = tmodels.f16_float_only_inputs()
    r = convert_float16(model, report=True)
    types = tensor_types(r.model)
    nodes = {n.name: n for n in r.model.graph.node}
    # Resize: X in float16, scales stay tensor(float) (schema), roi stays float (no kernel lists it)
    resize = nodes["resize"]
    assert types[resize.input[0]] == FP16
    assert types[resize.input[1]] == FP32 and types[resize.input[2]] == FP32
    assert "Range" in r.kept_float["range"] and "float32" in r.kept_float["range"]
    assert "NonMaxSuppression" in r.kept_float["nms"]
    assert "attribute" in r.kept_float["noise"]
    assert types[nodes["topk"].input[1]] == onnx.TensorProto.INT64
    assert "topk" in r.converted and "topk" in r.runs_in_float32
    # the reasons are ORT's registry talking, not a hand-kept list
    assert "CPUExecutionProvider has no TopK kernel for" in r.runs_in_float32["topk"]
    assert "T=float16" in r.runs_in_float32["topk"]


def test_bfloat16_runs_on_cpu_and_says_what_ran(tmodels):
    model = tmodels.attention_block()
    r = convert_float16(model, dtype="bfloat16", report=True)
    assert isinstance(r, Float16Result)
    # Transpose has a bfloat16 CPU kernel; MatMul does not: it computes in float32
    assert "k_t" in r.converted
    assert "no MatMul kernel for T=bfloat16" in r.kept_float["q_proj"]
    assert "stored as bfloat16" in r.kept_float["q_proj"]
    weights = {t.name: t.data_type for t in r.model.graph.initializer}
    assert weights["wq"] == BF16
    _assert_agree(model, r.model, _feeds(model), 5e-2)


def test_keep_io_types_list(tmodels):
    model = tmodels.f16_extreme_constants()
    converted = convert_float16(model, keep_io_types=["y1e6", "ytiny"])
    ins = {i.name: i.type.tensor_type.elem_type for i in converted.graph.input}
    outs = {o.name: o.type.tensor_type.elem_type for o in converted.graph.output}
    assert ins == {"x": FP16}
    assert outs == {"y30k": FP16, "y1e6": FP32, "ytiny": FP32}
    with pytest.raises(InputError, match="not inputs or outputs"):
        convert_float16(model, keep_io_types=["nope"])


def test_constants_exact_out_of_range_kept_and_flush_reported(tmodels):
    model = tmodels.f16_extreme_constants()
    r = convert_float16(model, report=True)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in r.model.graph.initializer}
    assert inits["c30k"].dtype == np.float16 and np.all(inits["c30k"] == 30000)
    # 1e6 is never clipped to 65504 or inf: tensor and node stay float32
    assert inits["c1e6"].dtype == np.float32 and np.all(inits["c1e6"] == 1e6)
    assert "beyond the float16 range" in r.kept_float["mul_1e6"]
    assert r.flushed_to_zero == {"tiny": 2}
    assert any("became 0" in n for n in r.notes)
    x = {"x": np.array([[1.5, -2.0, 0.25, 3.0]], np.float32)}
    got = _run(r.model, x)
    np.testing.assert_array_equal(got[1], x["x"] * np.float32(1e6))


def test_shared_initializer_with_a_blocked_consumer(tmodels):
    model = tmodels.f16_shared_initializer()
    r = convert_float16(model, block_nodes=["mm2"], report=True)
    assert r.kept_float == {"mm2": "listed in block_nodes"}
    assert set(r.converted) == {"mm1", "add_w", "relu"}
    inits = {t.name: t.data_type for t in r.model.graph.initializer}
    assert inits["w"] == FP32  # one stored copy; the converted consumers share one cast
    casts_of_w = [n for n in r.model.graph.node if n.op_type == "Cast" and n.input[0] == "w"]
    assert len(casts_of_w) == 1
    _assert_agree(model, r.model, _feeds(model), 1e-2)
    ops = convert_float16(model, block_ops=["MatMul"], report=True)
    assert set(ops.kept_float) == {"mm1", "mm2"}


def test_block_nodes_use_ensure_node_names_names(tmodels):
    model = tmodels.unnamed_nodes()
    names = [n.name for n in ensure_node_names(model).graph.node]
    assert len(set(names)) == len(names)
    r = convert_float16(model, block_nodes=[names[0], names[4]], report=True)
    assert set(r.kept_float) == {names[0], names[4]}
    assert [n.name for n in r.model.graph.node if n.op_type != "Cast"] == names
    with pytest.raises(InputError, match="ensure_node_names"):
        convert_float16(model, block_nodes=["missing"])


def test_cast_nodes_are_reused_not_stacked(tmodels):
    model = tmodels.f16_casts()
    r = convert_float16(model, report=True)
    nodes = {n.name: n for n in r.model.graph.node}
    to = {
        n: next(a.i for a in nodes[n].attribute if a.name == "to")
        for n in nodes
        if n.startswith("cast_")
    }
    assert to["cast_float"] == FP16 and to["cast_int_to_float"] == FP16
    assert to["cast_double"] == onnx.TensorProto.DOUBLE  # doubles are not ours to change
    # the cast feeding output y stays a float32 cast instead of getting a second cast after it
    assert to["cast_out"] == FP32 and r.kept_float["cast_out"] == "graph output 'y' needs float32"


def test_control_flow_boundaries_float_bodies_converted(tmodels):
    model = tmodels.f16_if()
    r = convert_float16(model, report=True)
    assert "control flow" in r.kept_float["if"]
    assert {"then_mm", "then_tanh", "else_sigmoid"} <= set(r.converted)
    for sign in (1.0, -1.0):  # both branches
        feeds = {"x": sign * np.abs(_feeds(model)["x"])}
        _assert_agree(model, r.model, feeds, 1e-2)


def test_other_domains_untouched(tmodels):
    model = tmodels.f16_other_domains()
    r = convert_float16(model, report=True)
    assert "no ONNX schema for com.microsoft.Gelu" in r.kept_float["ms_gelu"]
    assert "ai.onnx.ml.Normalizer" in r.kept_float["ml_normalizer"]
    assert set(r.converted) == {"relu", "add"}
    # without the exporter's value_info the custom op's output type is unknown: its consumer
    # is left alone (the fixed float output of Normalizer still lets Add convert)
    del model.graph.value_info[:]
    r = convert_float16(model, report=True)
    assert (
        r.kept_float["ml_normalizer"] == "the type of an input of ai.onnx.ml.Normalizer is unknown"
    )
    assert "add" in r.converted
    _assert_agree(model, r.model, _feeds(model), 1e-2)


def test_dynamic_shapes_run_at_several_sizes(tmodels):
    model = tmodels.f16_dynamic()
    converted = convert_float16(model)
    for n, t in ((1, 5), (3, 2)):
        _assert_agree(model, converted, _feeds(model, N=n, T=t), 1e-2)


def test_convertible_nodes_matches_the_conversion(tmodels):
    model = tmodels.f16_float_only_inputs()
    plan = convertible_nodes(model, block_ops=["Relu"])
    r = convert_float16(model, block_ops=["Relu"], report=True)
    assert plan == {**{n: None for n in r.converted}, **r.kept_float}
    assert plan["relu"] == "op type Relu is in block_ops"
    assert set(plan) == set(r.converted) | set(r.kept_float)


def test_path_input_external_data_and_determinism(tmodels, tmp_path):
    path = tmodels.with_external_data(tmp_path / "ext")
    from_path = convert_float16(path)
    from_proto = convert_float16(wb.load_model(path))
    assert from_path.SerializeToString() == from_proto.SerializeToString()
    assert (
        from_proto.SerializeToString() == convert_float16(wb.load_model(path)).SerializeToString()
    )
    assert all(t.data_type == FP16 for t in from_path.graph.initializer)


def test_result_round_trip_and_escaped_html(tmodels):
    model = tmodels.mlp()
    model.graph.node[2].name = "<relu & co>"
    r = convert_float16(model, block_nodes=["<relu & co>"], report=True)
    html = r._repr_html_()
    assert "&lt;relu &amp; co&gt;" in html and "<relu" not in html
    assert "<table" in html and "computes" in html
    back = Float16Result.from_json(r.to_json())
    assert back.kept_float == r.kept_float and back.converted == r.converted
    assert back.model.SerializeToString() == r.model.SerializeToString()
    assert "kept <relu & co>: listed in block_nodes" in str(r)


def test_blocked_chain_gets_one_cast_per_boundary(tmodels):
    model = tmodels.chain(400)
    r = convert_float16(model, block_ops=["Relu"], report=True)
    assert len(r.kept_float) == 100
    # each blocked Relu needs its input in float32 and its output back in float16
    assert r.casts_inserted == 200 + 2  # + model input and output
    _assert_agree(model, r.model, _feeds(model), 1e-2)


def test_progress_and_cancel_on_big_models(tmodels):
    model = tmodels.chain(2100)
    events: list[tuple[str, int, int | None]] = []
    with progress_sink(lambda desc, done, total, post: events.append((desc, done, total))):
        convert_float16(model)
    assert {d for d, _, _ in events} >= {"float16: planning", "float16: inserting casts"}
    token = CancelToken()
    token.cancel()
    with cancellable(token), pytest.raises(OperationCancelled):
        convert_float16(model)


def test_bad_dtype_and_argument_errors(tmodels, tmp_path):
    with pytest.raises(InputError, match="float16"):
        convert_float16(tmodels.mlp(), dtype="int4")
    with pytest.raises(wb.ModelLoadError, match="not found"):
        convert_float16(tmp_path / "missing.onnx")


def test_cli_convert(tmodels, tmp_path, capsys):
    src = tmp_path / "cnn.onnx"
    wb.save_model(tmodels.small_cnn(), src)
    out = tmp_path / "cnn16.onnx"
    assert main(["convert", str(src), "--to", "fp16", "-o", str(out), "--report"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"\((fp16|f16)\): 8 nodes converted", printed) and "casts inserted" in printed
    converted = wb.load_model(out)
    assert converted.graph.initializer[0].data_type == FP16
    _assert_agree(tmodels.small_cnn(), converted, _feeds(converted), 1e-2)
    out_bf = tmp_path / "cnn_bf16.onnx"
    args = ["convert", str(src), "--to", "bf16", "-o", str(out_bf), "--block-op", "Conv"]
    assert main([*args, "--no-keep-io-types"]) == 0
    bf = wb.load_model(out_bf)
    assert bf.graph.input[0].type.tensor_type.elem_type == BF16
    assert main(["convert", str(src), "--to", "fp16", "-o", str(out), "--block-node", "x"]) == 2
    assert main(["convert", str(tmp_path / "nope.onnx"), "--to", "fp16", "-o", str(out)]) == 2
    assert main(["convert", str(src), "--to", "mixed", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("workbench: error:") for line in err)
    assert "--data" in err[2]


@pytest.mark.slow
def test_over_2gb_external_data_streams(tmodels, tmp_path):
    import shutil

    if shutil.disk_usage(tmp_path).free < 5 * 2**30:
        pytest.skip("needs 5 GiB of free disk for the 2.1 GB model and its f16 copy")
    try:
        _check_over_2gb(tmodels, tmp_path)
    finally:  # pytest keeps recent tmp dirs: don't leave gigabytes behind
        for name in ("big", "big16.onnx", "big16.onnx.data"):
            target = tmp_path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()


def _check_over_2gb(tmodels, tmp_path):
    path = tmodels.f16_big_external(tmp_path / "big", gigabytes=2.1)
    data_size = (tmp_path / "big" / "big.onnx.data").stat().st_size
    assert data_size > 2**31
    r = convert_float16(path, report=True)
    assert r.weights_converted == len(r.model.graph.initializer)
    out = wb.save_model(r.model, tmp_path / "big16.onnx")
    del r
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    idx = np.array([0, 5, 4095], np.int64)
    (y,) = session.run(None, {"idx": idx})
    n_tables = round(data_size / (4096 * 1024 * 4))
    row = (idx % 64)[:, None] + np.arange(1024)[None, :] / 1024
    expected = np.float16(row) * n_tables  # each table stores the same rows
    np.testing.assert_allclose(y.astype(np.float32), expected, rtol=2e-2)


def test_initializers_listed_as_inputs_keep_their_data_type(tmodels):
    model = tmodels.mlp()
    for t in model.graph.initializer:
        model.graph.input.append(onnx.helper.make_tensor_value_info(t.name, FP32, list(t.dims)))
    converted = convert_float16(model, keep_io_types=False)
    feeds = {"x": _feeds(model)["x"]}
    _assert_agree(model, converted, feeds, 1e-2, low_inputs=True)


def test_cli_convert_dispatches_mixed_and_int8(tmp_path, capsys):
    src = wb.demo.demo_model_path("cnn")  # --data demo needs the demo model's own path
    mixed = tmp_path / "mixed.onnx"
    assert main(["convert", str(src), "--to", "mixed", "--data", "demo", "-o", str(mixed)]) == 0
    assert "(mixed):" in capsys.readouterr().out
    onnx.checker.check_model(wb.load_model(mixed))
    q = tmp_path / "int8.onnx"
    args = ["convert", str(src), "--to", "int8", "--data", "demo", "--calibration", "minmax"]
    assert main([*args, "-o", str(q)]) == 0
    assert any(n.op_type == "QuantizeLinear" for n in wb.load_model(q).graph.node)


def test_require_kernel_for_float16_keeps_weights_low_and_compute_float(tmodels):
    model = tmodels.mlp()
    r = convert_float16(model, require_kernel=True, report=True)
    assert r.converted == ()
    assert "no MatMul kernel for T=float16" in r.kept_float["fc1"]
    assert all(t.data_type == FP16 for t in r.model.graph.initializer)
    _assert_agree(model, r.model, _feeds(model), 1e-2)


def test_bfloat16_low_io_model_runs_in_ort(tmodels):
    import ml_dtypes
    import onnxruntime as ort

    model = tmodels.small_cnn()
    converted = convert_float16(model, dtype="bfloat16", keep_io_types=False)
    session = make_session(converted)
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(ml_dtypes.bfloat16)
    feed = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(x.view(np.uint16), BF16)
    (out,) = session.run_with_ort_values(None, {"x": feed})
    assert out.data_type() == "tensor(bfloat16)" and out.shape() == [2, 3]


def test_cli_convert_refuses_to_overwrite_its_input(tmp_path, capsys):
    src = tmp_path / "model.onnx"
    src.write_bytes(wb.demo.demo_model_path("mlp").read_bytes())
    before = src.read_bytes()
    assert (
        main(["convert", str(src), "--to", "fp16", "-o", str(tmp_path / "." / "model.onnx")]) == 2
    )
    assert "refusing to overwrite the input model" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_conversion_leaves_the_garbage_collector_alone(tmodels):
    import gc

    model = tmodels.chain(300)
    seen: list[bool] = []

    def watch(phase: str, info: dict) -> None:
        seen.append(gc.isenabled())

    was = gc.isenabled()
    gc.callbacks.append(watch)
    try:
        convert_float16(model)
    finally:
        gc.callbacks.remove(watch)
    assert gc.isenabled() == was
    if was:  # thousands of IR objects: automatic collections run unless someone paused them
        assert seen, "the collector never ran during conversion"
