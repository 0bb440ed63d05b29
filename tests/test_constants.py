"""No silent precision loss in constants (issue 18 item 2): float16, bfloat16, mixed precision."""

from __future__ import annotations

import models
import numpy as np
import onnx
import pytest
from onnx import helper

from workbench.errors import InputError
from workbench.precision.float16 import constant_error, convert_float16
from workbench.precision.mixed import auto_mixed_precision
from workbench.precisions import limits
from workbench.runtime import open_runner


def _x(n: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)}


def _init_types(model: onnx.ModelProto) -> dict[str, int]:
    return {t.name: t.data_type for t in model.graph.initializer}


def _rel_error_of(value: float, dtype) -> float:
    """What storing ``value`` in ``dtype`` does to it, computed here as the reference."""
    back = float(np.asarray(value, np.float32).astype(dtype).astype(np.float32))
    return abs(back - value) / abs(value)


def test_subnormal_scalar_keeps_its_consumer_float32():
    m = models.f16_tiny_constant()
    r = convert_float16(m, report=True)
    # 1e6 is beyond float16, 1e-6 is a float16 subnormal: both multiplications stay float32
    assert "beyond the float16 range" in r.kept_float["scale_up"]
    assert "loses up to" in r.kept_float["scale_down"]
    expected = _rel_error_of(1e-6, np.float16)
    assert expected > limits("f16").eps  # the case is real on this numpy
    assert r.constant_errors["micro"] == pytest.approx(expected, rel=1e-4)
    assert _init_types(r.model)["micro"] == onnx.TensorProto.FLOAT
    assert "relu" in r.converted
    x = _x()
    ref = open_runner(m)(x)["y"]
    got = open_runner(r.model)(x)["y"]
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_bound_is_an_option():
    m = models.f16_tiny_constant()
    loose = convert_float16(m, report=True, max_constant_error=0.05)
    assert "scale_down" in loose.converted and not loose.constant_errors
    x = _x()
    ref, got = open_runner(m)(x)["y"], open_runner(loose.model)(x)["y"]
    err = float(np.max(np.abs(got - ref) / np.abs(ref)))
    assert err > limits("f16").eps  # what the default bound protects against
    # an exact bound of 0 flags any rounding, also of normal values
    strict = convert_float16(models.mixed_sensitive(), report=True, max_constant_error=0.0)
    assert strict.constant_errors
    with pytest.raises(InputError, match="max_constant_error"):
        convert_float16(m, max_constant_error=-1.0)


def test_normal_values_and_negligible_tiny_entries_pass_the_default_bound():
    eps16 = limits("f16").eps
    a = np.abs(np.array([1000.3, 0.1, 3.3], np.float32))
    assert constant_error(a, "float16", eps16, float(a.max())) <= eps16 / 2
    # 1e-9 next to 0.5 moves the tensor by 2e-9 of its scale: reported as flushed, not kept
    b = np.abs(np.array([1e-9, 0.0, 0.5], np.float32))
    assert constant_error(b, "float16", eps16, 0.5) == 0.0
    r = convert_float16(models.f16_extreme_constants(), report=True)
    assert r.flushed_to_zero == {"tiny": 2} and "tiny" not in r.constant_errors


def test_same_rule_in_bfloat16():
    n = helper.make_node
    tiny = 1e-39  # bfloat16 subnormal (smallest normal 1.18e-38)
    inits = [
        models.tensor("big", np.array(1e30, np.float32)),
        models.tensor("t", np.array(tiny, np.float32)),
    ]
    nodes = [n("Mul", ["x", "big"], ["a"], name="up"), n("Mul", ["a", "t"], ["y"], name="down")]
    m = models.make(
        nodes, [models.vi("x", shape=["N", 4])], [models.vi("y", shape=["N", 4])], inits
    )
    r = convert_float16(m, dtype="bf16", report=True)
    # computed in float32 by the converter, in float64 here
    assert r.constant_errors["t"] == pytest.approx(_rel_error_of(tiny, _bf16()), rel=1e-4)
    assert _init_types(r.model)["t"] == onnx.TensorProto.FLOAT
    assert _init_types(r.model)["big"] == onnx.TensorProto.BFLOAT16
    x = _x()
    np.testing.assert_allclose(open_runner(r.model)(x)["y"], open_runner(m)(x)["y"], rtol=1e-2)


def _bf16():
    import ml_dtypes

    return ml_dtypes.bfloat16


def test_mixed_precision_applies_the_same_rule():
    m = models.f16_tiny_constant()
    feeds = [_x(seed=s) for s in range(3)]
    r = auto_mixed_precision(m, feeds)
    assert "loses up to" in r.kept_float["scale_down"]["reason"]
    ref, got = open_runner(m), open_runner(r.model)
    for fd in feeds:
        np.testing.assert_allclose(got(fd)["y"], ref(fd)["y"], rtol=1e-5)
    loose = auto_mixed_precision(m, feeds, max_constant_error=0.05, max_evaluations=3)
    assert (
        "scale_down" not in loose.kept_float
        or "loses" not in loose.kept_float["scale_down"]["reason"]
    )
