"""OpenVINO backend: devices from the plugin, hint resolution with this machine's CPU flags."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import workbench as wb
from workbench.runtime import open_runner
from workbench.runtime.hints import requested_precision

ov = pytest.importorskip("openvino")

from workbench.runtime.openvino import (  # noqa: E402
    default_precision,
    device_capabilities,
    list_devices,
)

CAPS = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")  # this machine's ISA, e.g. BF16
HAS = {p: c in CAPS for p, c in (("f16", "FP16"), ("bf16", "BF16"), ("int8", "INT8"))}


def _expected_ran(hint: str) -> str:
    """What the OpenVINO CPU plugin runs an f32 model in, from OPTIMIZATION_CAPABILITIES."""
    h = wb.Hint.parse(hint)
    if h.execution_mode == "accuracy":
        return "f32"  # accuracy never lowers precision
    if h.inference_precision is None:
        return default_precision("CPU")
    if h.inference_precision == "f16":  # no f16 arithmetic: the plugin picks bf16 or f32
        return "f16" if HAS["f16"] else "bf16" if HAS["bf16"] else "f32"
    if h.inference_precision == "bf16":
        return "bf16" if HAS["bf16"] else "f32"
    return "f32"


def test_devices_listed_with_capabilities():
    devs = {d.name: d for d in wb.devices()}
    assert "openvino:CPU" in devs
    cpu = devs["openvino:CPU"]
    assert cpu.backend == "openvino" and not cpu.simulated and cpu.provider == "CPU"
    expected = {"f32"} | {p for p, ok in HAS.items() if ok} | {default_precision("CPU")}
    assert set(cpu.precisions) == expected
    assert set(device_capabilities("CPU")) <= set(cpu.precisions)
    assert [d.name for d in list_devices()] == [
        f"openvino:{d}" for d in ov.Core().available_devices
    ]


@pytest.mark.parametrize(
    "hint",
    ["performance", "accuracy", "performance/f32", "performance/f16", "performance/bf16",
     "accuracy/f16"],
)  # fmt: skip
def test_openvino_resolution_table(demo_cnn, demo_data, hint):
    """Requested vs ran on this CPU; never reports f16 unless the plugin really runs f16."""
    run = open_runner(demo_cnn, "openvino:CPU", hint)
    h = wb.Hint.parse(hint)
    assert run.precision_requested == requested_precision(h)
    assert run.precision_ran == _expected_ran(hint), run.notes
    if run.precision_requested not in ("default", run.precision_ran):
        assert any(
            f"requested {run.precision_requested}, ran {run.precision_ran}" in n for n in run.notes
        )
    if h.inference_precision in ("f16", "bf16") and not HAS[h.inference_precision]:
        assert any("not honoured" in n or "never lowers" in n for n in run.notes)
    if hint == "accuracy/f16":
        assert any("never lowers precision" in n for n in run.notes)
    # same answers as ONNX Runtime on real data
    acc = wb.demo.accuracy(run, demo_data)
    ref = wb.evaluate(demo_cnn, demo_data, wb.demo.accuracy, device="cpu")
    tolerance = 0.0 if run.precision_ran == "f32" else 0.02
    assert abs(acc - ref) <= tolerance


def test_openvino_outputs_match_ort(tmodels):
    m = tmodels.mlp()
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    a = open_runner(m, "openvino:CPU", "accuracy")({"x": x})["y"]
    b = open_runner(m, "cpu")({"x": x})["y"]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_openvino_int8_model_reports_int8(tmodels, tmp_path):
    m = tmodels.small_cnn()
    q = wb.quantize_int8(m, wb.random_dataset(m, n=8, dims={"N": 1}), auto_float=False)
    perf = open_runner(q, "openvino:CPU", "performance")
    assert perf.precision_ran == ("int8" if HAS["int8"] else "f32")
    acc = open_runner(q, "openvino:CPU", "accuracy")
    # the stored int8 model stays int8 under an accuracy hint, and the result says so
    assert acc.precision_requested == "f32"
    if acc.precision_ran != "f32":
        assert any("requested f32" in n for n in acc.notes)


def test_openvino_benchmark_and_evaluate(demo_cnn, demo_data):
    expected = _expected_ran("performance/f16")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = wb.benchmark(
            demo_cnn, "openvino:CPU", "performance/f16", dataset=demo_data.take(4), runs=20
        )
    said = [str(w.message) for w in caught if issubclass(w.category, wb.PrecisionWarning)]
    # a notebook user sees a warning exactly when f16 did not run
    assert bool(said) == (expected != "f16")
    if said:
        assert f"requested f16, ran {expected}" in said[0]
    assert r.device == "openvino:CPU" and r.runs == 20
    assert r.precision_requested == "f16" and r.precision_ran == _expected_ran("performance/f16")
    assert 0 < r.p10_ms <= r.median_ms <= r.p90_ms


def test_openvino_bad_model_is_clear(tmodels):
    with pytest.raises(wb.UnsupportedError, match="OpenVINO CPU cannot compile"):
        open_runner(tmodels.unknown_op_model(), "openvino:CPU")
