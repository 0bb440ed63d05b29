"""Hint resolution (OpenVINO semantics) and the precision ONNX Runtime really ran."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import workbench as wb
from workbench.runtime import kernels, open_runner
from workbench.runtime.hints import (
    HintPlan,
    requested_precision,
    resolve_hint,
    summarize_precisions,
)
from workbench.runtime.ort import executed_precisions, needs_graph_check, ort_precisions

HINTS = ("performance", "accuracy", "performance/f32", "performance/f16", "performance/bf16")


# (hint, supported) -> (requested, asked-for precision, dynamic quantization, honoured)
@pytest.mark.parametrize(
    "hint, supported, expected",
    [
        ("performance", ("f32", "int8"), ("default", None, True, True)),
        ("accuracy", ("f32", "bf16"), ("f32", "f32", False, True)),
        ("accuracy/f16", ("f32", "f16"), ("f32", "f32", False, False)),
        ("performance/f16", ("f32", "f16"), ("f16", "f16", True, True)),
        ("performance/f16", ("f32", "bf16"), ("f16", "f16", True, False)),
        ("performance/bf16", ("f32",), ("bf16", "bf16", True, False)),
        ("performance/f32", ("f32",), ("f32", "f32", True, True)),
    ],
)
def test_resolve_hint_table(hint, supported, expected):
    plan = resolve_hint(hint, supported, "dev")
    assert isinstance(plan, HintPlan)
    got = (plan.precision_requested, plan.inference_precision)
    assert got + (plan.dynamic_quantization, plan.honoured) == expected
    # a request that is not honoured always says why, naming the device
    assert bool(plan.notes) == (not plan.honoured)
    if plan.notes:
        assert "dev" in plan.notes[0]
    assert HintPlan.from_json(plan.to_json()) == plan


def test_requested_and_summary():
    assert requested_precision(wb.Hint("accuracy", "f16")) == "f32"
    assert requested_precision(wb.Hint()) == "default"
    assert requested_precision(wb.Hint.parse("bf16")) == "bf16"
    assert summarize_precisions({}) == "f32"
    assert summarize_precisions({"f32": 3, "int8": 1}) == "int8"
    assert summarize_precisions({"f32": 1, "f16": 5}) == "f16+f32"
    assert summarize_precisions({"f32": 2, "f16": 2}) == "f32+f16"


def _registry_precisions(provider: str) -> set[str]:
    found = set()
    for name, t in (("f32", "float"), ("f16", "float16"), ("bf16", "bfloat16")):
        if any(
            f"tensor({t})" in ts
            for op in ("Conv", "MatMul", "Gemm")
            for k in kernels.kernels(op, "", None, provider)
            for ts in k.constraints.values()
        ):
            found.add(name)
    if kernels.kernels("QLinearConv", "", None, provider):
        found.add("int8")
    return found


def test_ort_devices_list_registry_precisions():
    cpu = next(d for d in wb.devices() if d.name == "cpu")
    assert set(cpu.precisions) == _registry_precisions(kernels.CPU)
    assert cpu.precisions == ort_precisions()
    assert "f32" in cpu.precisions


def _quantized_mlp(tmodels, tmp_path):
    m = tmodels.mlp()
    return wb.quantize_int8(m, wb.random_dataset(m, n=8, dims={"N": 2}), auto_float=False)


def _expected_ort(model):
    """What ORT CPU should report for each test model, from its kernel registry."""
    f16_matmul, _ = kernels.kernel_for(
        "MatMul", "", 17, [onnx.TensorProto.FLOAT16] * 2, provider=kernels.CPU
    )
    f16_ln, _ = kernels.kernel_for(
        "LayerNormalization", "", 17, [onnx.TensorProto.FLOAT16] * 3, provider=kernels.CPU
    )
    return {
        "mlp": "f32",
        "f16_mlp": "f16" if f16_matmul else "f32",
        "f16_ln": "f16" if f16_ln else "f32",
        "int8": "int8",
    }[model]


def test_ort_resolution_table(tmodels, tmp_path):
    """Every hint × stored precision on ORT CPU: requested, ran and notes, checked against the
    kernel registry (ORT runs the stored model; where a kernel is missing it computes in f32)."""
    cases = {
        "mlp": tmodels.mlp(),
        "f16_mlp": tmodels.f16_mlp(),
        "f16_ln": tmodels.f16_layernorm(),
        "int8": _quantized_mlp(tmodels, tmp_path),
    }
    x = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    table = []
    for name, model in cases.items():
        expected = _expected_ort(name)
        ref = None
        for hint in HINTS:
            run = open_runner(model, "cpu", hint)
            h = wb.Hint.parse(hint)
            assert run.precision_requested == requested_precision(h)
            assert run.precision_ran == expected, (name, hint, run.notes)
            mismatch = run.precision_requested not in ("default", run.precision_ran)
            if mismatch:  # never silent: the note names both precisions
                assert any(
                    f"requested {run.precision_requested}, ran {run.precision_ran}" in n
                    for n in run.notes
                )
            feeds = {"x": x[:, : model.graph.input[0].type.tensor_type.shape.dim[1].dim_value]}
            out = run(feeds)
            # hints do not change what ORT computes: identical outputs for every hint
            ref = out if ref is None else ref
            np.testing.assert_array_equal(next(iter(out.values())), next(iter(ref.values())))
            table.append((name, hint, run.precision_requested, run.precision_ran))
    assert len(table) == len(cases) * len(HINTS)


def test_unhonoured_request_warns(tmodels):
    with pytest.warns(wb.PrecisionWarning, match="cpu: requested f16, ran f32"):
        open_runner(tmodels.mlp(), "cpu", "performance/f16")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", wb.PrecisionWarning)
        open_runner(tmodels.mlp(), "cpu", "accuracy")  # honoured: no warning
        open_runner(tmodels.mlp(), "cpu", "performance")


def test_f16_model_fallback_is_explained(tmodels):
    run = open_runner(tmodels.f16_mlp(), "cpu", "performance/f16")
    fell_back = _expected_ort("f16_mlp") == "f32"  # no f16 MatMul kernel in this ORT build
    explained = [n for n in run.notes if "computed every compute node in f32" in n]
    assert bool(explained) == fell_back
    if fell_back:
        assert "MatMul" in explained[0] or "Gemm" in explained[0]


def test_graph_check_only_for_low_precision_models(tmodels):
    assert not needs_graph_check(tmodels.mlp())
    assert needs_graph_check(tmodels.f16_mlp())
    assert needs_graph_check(tmodels.f16_layernorm())


def test_executed_precisions_propagates_types(tmodels):
    """On a hand-made graph: Cast switches the type, ops follow their first float input."""
    from onnx import TensorProto, helper

    H = TensorProto.FLOAT16
    nodes = [
        helper.make_node("Cast", ["x"], ["xh"], to=H),
        helper.make_node("Relu", ["xh"], ["r"]),
        helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
        helper.make_node("Sigmoid", ["rf"], ["y"]),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    ran = executed_precisions(helper.make_model(g))
    assert dict(ran["f16"]) == {"Relu": 1}
    assert dict(ran["f32"]) == {"Sigmoid": 1}


def test_executed_precisions_follow_subgraphs():
    """An f16 computation inside an If branch is counted, and the If's output is typed."""
    from onnx import TensorProto, helper

    H = TensorProto.FLOAT16

    def branch(name, op):
        return helper.make_graph(
            [helper.make_node(op, ["xh"], [f"{name}_y"])],
            name,
            [],
            [helper.make_tensor_value_info(f"{name}_y", H, [1])],
        )

    nodes = [
        helper.make_node("Cast", ["x"], ["xh"], to=H),
        helper.make_node(
            "If", ["c"], ["yh"], then_branch=branch("t", "Relu"), else_branch=branch("e", "Neg")
        ),
        helper.make_node("Sigmoid", ["yh"], ["y"]),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", H, [1])],
    )
    ran = executed_precisions(helper.make_model(g))
    assert dict(ran["f16"]) == {"Relu": 1, "Neg": 1, "Sigmoid": 1}
    assert "f32" not in ran
