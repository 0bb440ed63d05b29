"""Device profiles that simulate: emulated numerics and roofline latency estimates (issue 16)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench.hardware.estimate import estimate_latency, estimate_nodes, transfer_ms
from workbench.hardware.registry import PROFILES_DIR, DeviceProfile, shipped_profiles


def _matmul_relu(m: int = 4, k: int = 16, n: int = 8, seed: int = 0) -> onnx.ModelProto:
    r = np.random.default_rng(seed)
    w = helper.make_tensor("w", TensorProto.FLOAT, [k, n], r.standard_normal((k, n)).ravel())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
         helper.make_node("Relu", ["h"], ["y"], name="relu")],
        "mm_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [w],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _round(a: np.ndarray, dtype) -> np.ndarray:
    return a.astype(dtype).astype(np.float32)


def test_shipped_profiles_declare_roofline_numbers_with_sources():
    for p in shipped_profiles():
        assert p.peak_ops and p.memory_bandwidth > 0 and p.link_bandwidth > 0, p.name
        assert p.peak(p.precision) > 0
        text = (PROFILES_DIR / f"{p.name}.toml").read_text(encoding="utf-8")
        assert "Source" in text and ("datasheet" in text.lower() or "brief" in text), p.name


def test_profile_validation_of_roofline_fields(tmp_path):
    p = DeviceProfile("x", peak_ops={"FP16": 2e12, "f32": 1e12}, memory_bandwidth=1e11)
    assert p.peak("f16") == 2e12 and p.peak("int8") == 1e12  # undeclared: the f32 peak
    assert DeviceProfile.from_json(p.to_json()) == p
    with pytest.raises(wb.InputError, match="peak_ops"):
        DeviceProfile("bad", peak_ops={"f8": 1e12})
    with pytest.raises(wb.InputError, match="memory_bandwidth"):
        DeviceProfile("bad", memory_bandwidth=-1)
    f = tmp_path / "p.toml"
    f.write_text('name = "t"\nprecision = "f16"\nmemory_bandwidth = 1e9\n[peak_ops]\nf16 = 5e12\n')
    loaded = DeviceProfile.from_toml(f)
    assert loaded.peak("f16") == 5e12 and loaded.memory_bandwidth == 1e9


@pytest.mark.parametrize("precision,dtype", [("f16", np.float16), ("bf16", ml_dtypes.bfloat16)])
def test_float_profile_numerics_are_rounding_at_every_supported_node(precision, dtype):
    m = _matmul_relu()
    x = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)
    w = onnx.numpy_helper.to_array(m.graph.initializer[0])
    # what a device computing both nodes in low precision returns (accumulating in f32)
    h = _round(_round(x, dtype) @ _round(w, dtype), dtype)
    expected = _round(np.maximum(_round(h, dtype), 0), dtype)
    runner = wb.open_runner(m, DeviceProfile("lp", precision=precision))
    got = runner({"x": x})["y"]
    np.testing.assert_allclose(got, expected, rtol=0, atol=float(np.abs(expected).max()) * 1e-2)
    assert runner.precision_ran == precision
    assert any("emulated" in n for n in runner.notes)
    f32 = wb.open_runner(m, "cpu")({"x": x})["y"]
    assert not np.array_equal(got, f32)


def test_profile_excluding_a_node_keeps_it_in_f32():
    m = _matmul_relu()
    x = np.random.default_rng(2).standard_normal((4, 16)).astype(np.float32)
    only_relu = DeviceProfile("r", precision="f16", ops=("Relu",))
    got = wb.open_runner(m, only_relu)({"x": x})["y"]
    h = wb.open_runner(m, "cpu")({"x": x})["y"]  # relu(matmul) in f32
    np.testing.assert_array_equal(got, _round(_round(h, np.float16), np.float16))


def test_int8_profile_calibrates_on_the_callers_data(tmodels):
    m = tmodels.mlp()
    calib = wb.random_dataset(m, n=4, seed=3, dims={"N": 2})
    feeds = calib[0]
    runner = wb.open_runner(m, "npu-sim", calibration=calib)
    assert not any("random inputs" in n for n in runner.notes)
    direct = wb.open_runner(wb.quantize_int8(m, calib), "cpu")(feeds)["y"]
    np.testing.assert_array_equal(runner(feeds)["y"], direct)


def test_roofline_terms_follow_the_profile_numbers():
    m = _matmul_relu(m=8, k=32, n=16)
    p = DeviceProfile("r", precision="f16", peak_ops={"f16": 1e9, "f32": 5e8},
                      memory_bandwidth=1e6, node_overhead_us=1.0)  # fmt: skip
    est = {e.node: e for e in estimate_nodes(m, p)}
    mm = est["mm"]
    assert mm.flops == 2 * 8 * 32 * 16 and mm.precision == "f16"
    nbytes = 2 * (8 * 32 + 32 * 16 + 8 * 16)  # inputs + output at 2 bytes (f16)
    assert mm.bytes == nbytes
    expected = max(mm.flops / 1e9, nbytes / 1e6) * 1e3 + 1e-3
    assert mm.time_ms == pytest.approx(expected)
    total = estimate_latency(m, p, boundary_bytes=[1e6])
    assert total.estimated and "roofline" in total.notes[0]
    assert total.transfer_ms == pytest.approx(transfer_ms(p, 1e6))
    assert total.latency_ms == pytest.approx(
        sum(e.time_ms for e in est.values()) + total.transfer_ms
    )
    cached = DeviceProfile("c", precision="f16", peak_ops={"f16": 1e9}, memory_bandwidth=1e6,
                           cache_bytes=1e9)  # all weights stay on chip  # fmt: skip
    assert {e.node: e for e in estimate_nodes(m, cached)}["mm"].bytes == nbytes - 2 * 32 * 16
    f32 = estimate_latency(m, p, precision="f32")
    assert f32.latency_ms > total.latency_ms - total.transfer_ms  # f32: half the peak, 2x bytes


def test_estimate_scales_with_batch(tmodels):
    m = tmodels.mlp()
    p = next(p for p in shipped_profiles() if p.name == "gpu-sim")
    one = estimate_latency(m, p, input_shapes={"x": (1, 16)})
    big = estimate_latency(m, p, input_shapes={"x": (4096, 16)})
    assert big.latency_ms > one.latency_ms
    assert "estimated" in big._repr_html_()


def test_estimate_for_device_follows_the_hint(tmodels):
    from workbench.hardware.estimate import estimate_for_device

    m = tmodels.attention_block()
    ds = wb.random_dataset(m, n=1, dims={"N": 2})
    fast = estimate_for_device(m, "gpu-sim", dataset=ds)
    exact = estimate_for_device(m, "gpu-sim", hint="accuracy", dataset=ds)
    assert fast.precision == "f16" and exact.precision == "f32"
    assert fast.estimated and exact.latency_ms > fast.latency_ms
    with pytest.raises(wb.InputError, match="real device"):
        estimate_for_device(m, "cpu")
