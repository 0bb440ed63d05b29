"""Devices: profiles (TOML, validation, simulated labels), profile runners, capability reasons."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import workbench as wb
from workbench.hardware.registry import (
    Device,
    DeviceProfile,
    devices_table,
    resolve_device,
    shipped_profiles,
)
from workbench.runtime import kernels
from workbench.runtime.hints import PrecisionWarning

FLOAT16 = onnx.TensorProto.FLOAT16


def test_shipped_profiles_listed_after_real_devices_and_simulated():
    devs = wb.devices()
    names = [d.name for d in devs]
    assert names[0] == "cpu" and not devs[0].simulated
    shipped = {p.name: p for p in shipped_profiles()}
    assert {"gpu-sim", "npu-sim", "edge-cpu-sim"} <= set(shipped)
    assert shipped["gpu-sim"].precision == "f16" and shipped["npu-sim"].precision == "int8"
    assert shipped["edge-cpu-sim"].precision == "f32" and shipped["edge-cpu-sim"].speed < 1
    first_profile = min(names.index(n) for n in shipped)
    assert all(not d.simulated for d in devs[:first_profile])
    for d in devs[first_profile:]:
        assert d.simulated and d.backend == "profile" and d.label.endswith("(simulated)")
    table = devices_table()
    assert "npu-sim (simulated)" in table and "<td>cpu</td>" in table


def test_profile_validation_and_device():
    p = DeviceProfile("acc", ops=["Conv", "Relu"], precision="FP16", exclude=["relu7"], speed=2)
    assert p.ops == ("Conv", "Relu") and p.precision == "f16" and p.exclude == ("relu7",)
    d = p.as_device()
    assert isinstance(d, Device) and d.backend == "profile" and d.simulated
    assert d.precisions == ("f16",) and d.profile == p
    assert resolve_device(p) == d
    assert Device.from_json(d.to_json()) == d
    with pytest.raises(wb.InputError, match="unknown precision 'f8'"):
        DeviceProfile("bad", precision="f8")
    with pytest.raises(wb.InputError, match="speed must be a positive number"):
        DeviceProfile("bad", speed=0)
    with pytest.raises(wb.InputError, match="ops must be a list"):
        DeviceProfile("bad", ops="Conv")


def test_profile_from_toml(tmp_path):
    path = tmp_path / "dsp.toml"
    path.write_text('name = "dsp"\nprecision = "int8"\nops = ["Conv"]\nspeed = 4.0\n')
    p = DeviceProfile.from_toml(path)
    assert p == DeviceProfile("dsp", ops=("Conv",), precision="int8", speed=4.0)
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nflops = 3\n')
    with pytest.raises(wb.InputError, match=r"unknown key\(s\) flops"):
        DeviceProfile.from_toml(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("name = [")
    with pytest.raises(wb.InputError, match="not valid TOML"):
        DeviceProfile.from_toml(broken)


def test_f32_profile_runs_exactly_like_cpu(tmodels):
    m = tmodels.mlp()
    feeds = wb.random_dataset(m, n=1, dims={"N": 3})[0]
    runner = wb.open_runner(m, "edge-cpu-sim")
    assert runner.device.simulated and runner.precision_ran == "f32"
    assert any("simulated" in n for n in runner.notes)
    np.testing.assert_array_equal(runner(feeds)["y"], wb.open_runner(m, "cpu")(feeds)["y"])


def test_f16_profile_changes_numerics_within_tolerance(tmodels):
    m = tmodels.attention_block()
    feeds = wb.random_dataset(m, n=1, dims={"N": 2})[0]
    ref = wb.open_runner(m, "cpu")(feeds)["y"]
    runner = wb.open_runner(m, "gpu-sim")
    out = runner(feeds)["y"]
    assert runner.precision_requested == "default"  # no hint: the profile's own precision
    # honest: what the CPU computed ("f16+f32" where this ORT build has f16 kernels for some
    # of the block's ops, "f32" where it has none), judged from its kernel registry
    opset = m.opset_import[0].version
    any_f16 = any(
        kernels.kernel_for(n.op_type, n.domain, opset, [FLOAT16] * len(n.input))[0]
        for n in m.graph.node
    )
    assert ("f16" in runner.precision_ran) == any_f16, runner.precision_ran
    err = np.abs(out - ref).max()
    assert 0 < err < 2e-2, err  # f16 really ran, and stayed close


def test_accuracy_hint_runs_f16_profile_in_f32(tmodels):
    m = tmodels.attention_block()
    feeds = wb.random_dataset(m, n=1, dims={"N": 2})[0]
    runner = wb.open_runner(m, "gpu-sim", hint="accuracy")
    assert runner.precision_requested == "f32" and runner.precision_ran == "f32"
    np.testing.assert_array_equal(runner(feeds)["y"], wb.open_runner(m, "cpu")(feeds)["y"])


def test_int8_profile_reports_int8(tmodels):
    m = tmodels.mlp()
    feeds = wb.random_dataset(m, n=1, dims={"N": 4})[0]
    with pytest.warns(PrecisionWarning, match="npu-sim: requested f16, ran int8"):
        runner = wb.open_runner(m, "npu-sim", hint="performance/f16")
    assert runner.precision_ran == "int8" and runner.precision_requested == "f16"
    assert any("does not support f16" in n for n in runner.notes)
    assert any("random inputs" in n for n in runner.notes)
    out = runner(feeds)["y"]
    ref = wb.open_runner(m, "cpu")(feeds)["y"]
    assert out.shape == ref.shape and np.isfinite(out).all()


def test_capability_reasons(tmodels):
    m = tmodels.capability_cases()
    cpu = wb.query_model(m, "cpu")
    assert cpu["relu"].supported and "has a Relu kernel" in cpu["relu"].reason
    assert not cpu["relu16"].supported
    assert "type not supported" in cpu.reasons["relu16"] and "int16" in cpu.reasons["relu16"]
    assert cpu.is_supported("branch")  # ORT runs If itself

    npu = wb.query_model(m, "npu-sim")
    assert npu.simulated and npu.label == "npu-sim (simulated)"
    assert "not in profile npu-sim's op list" in npu["tanh"].reason
    assert npu.is_supported("relu") and "int8" in npu["relu"].reason

    gpu = wb.query_model(m, "gpu-sim")
    assert "subgraph op" in gpu["branch"].reason and "then_branch" in gpu["branch"].reason
    has_f16_tanh, _ = kernels.kernel_for("Tanh", "", m.opset_import[0].version, [FLOAT16])
    if not has_f16_tanh:  # what this ORT build's kernel registry says, not a constant
        assert "computes in f32" in gpu["tanh"].reason

    strict = DeviceProfile("strict", exclude=["Tanh", "branch"], static_shapes=True)
    rep = wb.query_model(m, strict)
    assert "dynamic shape" in rep["relu"].reason and "'x'" in rep["relu"].reason
    assert "Tanh is excluded" in rep["tanh"].reason
    assert "node 'branch' is excluded" in rep["branch"].reason
    assert [n.node for n in rep.unsupported] == ["relu", "branch", "tanh", "relu16"]
    html = rep._repr_html_()
    assert "strict (simulated)" in html and "dynamic shape" in html
    assert type(rep).from_json(rep.to_json()) == rep


def test_capability_names_unnamed_nodes(tmodels):
    rep = wb.query_model(tmodels.unnamed_nodes(), "cpu")
    names = [n.node for n in rep.nodes]
    assert all(names) and len(set(names)) == len(names)
    assert names == [n.node for n in wb.query_model(tmodels.unnamed_nodes(), "cpu").nodes]


def test_openvino_capability_from_its_query_model(tmodels):
    pytest.importorskip("openvino")  # optional extra
    rep = wb.query_model(tmodels.mlp(), "openvino:CPU")
    assert not rep.simulated and all(n.supported for n in rep.nodes)
    assert rep["fc1"].reason == "OpenVINO CPU supports MatMul"
