"""Affinity modes and errors; acyclic, minimal partitions; partitioned runs and profiles."""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from workbench.hardware.partition import PartitionedModel, group_nodes
from workbench.hardware.registry import DeviceProfile, shipped_profiles

NPU_OPS = next(p for p in shipped_profiles() if p.name == "npu-sim").ops
#: the npu-sim op set in f32, so partitioned runs can be compared bit for bit
NPU32 = DeviceProfile("npu32", ops=NPU_OPS, precision="f32")


def _assert_acyclic(part: PartitionedModel) -> None:
    """Every subgraph only reads tensors produced by earlier subgraphs or graph inputs."""
    produced: set[str] = set(part.inputs)
    for sg in part.subgraphs:
        assert set(sg.inputs) <= produced, (sg.name, set(sg.inputs) - produced)
        produced |= set(sg.outputs)
        assert {o.name for o in sg.model.graph.output} == set(sg.outputs)


def _naive_split(model, assignments) -> int:
    """Subgraphs when cutting the model's node order at every device change."""
    devs = [assignments[n.name] for n in model.graph.node]
    return 1 + sum(a != b for a, b in zip(devs, devs[1:], strict=False))


# ----------------------------------------------------------------------------- affinity


def test_auto_affinity_first_supporting_device(tmodels):
    m = tmodels.attention_block()
    aff = wb.affinity(m, "npu-sim,cpu")
    assert aff.mode == "auto" and aff.device_names == ("npu-sim", "cpu")
    assert aff.assignments["q_proj"] == "npu-sim"
    assert aff.assignments["softmax"] == "cpu" and aff.assignments["ln"] == "cpu"
    assert "Softmax is not in profile npu-sim's op list" in aff.reasons["softmax"]
    assert aff.counts() == {"npu-sim": 9, "cpu": 2}
    html = aff._repr_html_()
    assert "npu-sim (simulated)" in html
    assert type(aff).from_json(aff.to_json()) == aff


def test_manual_and_combined_affinity(tmodels):
    m = tmodels.mlp()
    manual = {"fc1": "cpu", "fc1_bias": "cpu", "relu": "npu-sim", "fc2": "npu-sim"}
    with pytest.raises(wb.InputError, match=r"no device for node 'fc2_bias' \(Add\).*combined"):
        wb.affinity(m, ["npu-sim", "cpu"], mode="manual", manual=manual)
    full = wb.affinity(m, ["npu-sim", "cpu"], mode="manual", manual={**manual, "fc2_bias": "cpu"})
    assert full.assignments == {**manual, "fc2_bias": "cpu"}
    assert set(full.reasons.values()) == {"manual"}
    comb = wb.affinity(m, ["npu-sim", "cpu"], mode="combined", manual={"relu": "cpu"})
    assert comb.assignments["relu"] == "cpu" and comb.reasons["relu"] == "manual"
    assert comb.assignments["fc1"] == "npu-sim" and comb.reasons["fc1"] == "first supporting device"


def test_manual_errors_name_node_op_and_device(tmodels):
    m = tmodels.attention_block()
    with pytest.raises(wb.UnsupportedError, match=r"node 'softmax' \(Softmax\) cannot run on device 'npu-sim'.*op list"):  # fmt: skip
        wb.affinity(m, ["npu-sim", "cpu"], mode="combined", manual={"softmax": "npu-sim"})
    with pytest.raises(wb.InputError, match=r"node 'q_proj' \(MatMul\) on device 'gpu-sim'.*not among"):  # fmt: skip
        wb.affinity(m, ["npu-sim", "cpu"], mode="combined", manual={"q_proj": "gpu-sim"})
    with pytest.raises(wb.InputError, match=r"names node 'nope', which is not in the model"):
        wb.affinity(m, ["npu-sim", "cpu"], mode="combined", manual={"nope": "cpu"})
    with pytest.raises(wb.InputError, match="unknown affinity mode"):
        wb.affinity(m, ["cpu"], mode="greedy")
    with pytest.raises(wb.UnsupportedError, match=r"no device can run node 'ln' \(LayerNormalization\)"):  # fmt: skip
        wb.affinity(m, ["npu-sim"])


def test_affinity_names_unnamed_nodes_first(tmodels):
    m = tmodels.unnamed_nodes()
    aff = wb.affinity(m, ["cpu"])
    names = list(aff.assignments)
    assert all(names) and len(set(names)) == len(m.graph.node)
    assert names == list(wb.affinity(m, ["cpu"]).assignments)  # deterministic
    assert m.graph.node[0].name == ""  # the caller's model is untouched
    manual = {n: "cpu" for n in names}
    assert wb.affinity(m, ["cpu"], mode="manual", manual=manual).assignments == manual


# ----------------------------------------------------------------------------- partition


def test_cycle_trap_stays_acyclic_and_runs_exactly(tmodels):
    m = tmodels.cycle_trap()
    aff = wb.affinity(m, [NPU32, "cpu"])
    # the naive "merge connected same-device nodes" would put these three together: a cycle
    assert [aff.assignments[n] for n in ("a_mm", "b_softmax", "c_add", "d_relu")] == [
        "npu32", "cpu", "npu32", "npu32"
    ]  # fmt: skip
    part = wb.partition(m, aff)
    _assert_acyclic(part)
    assert [sg.nodes for sg in part.subgraphs] == [("a_mm",), ("b_softmax",), ("c_add", "d_relu")]
    assert part.subgraphs[2].boundary_inputs == ("a", "b")
    assert part.subgraphs[2].boundary_bytes == 2 * 2 * 8 * 4
    feeds = wb.random_dataset(m, n=1)[0]
    np.testing.assert_array_equal(part.run(feeds)["y"], wb.open_runner(m, "cpu")(feeds)["y"])


def test_transformer_fewer_subgraphs_than_naive_split(tmodels):
    m = tmodels.transformer_like(blocks=24)
    aff = wb.affinity(m, ["npu-sim", "cpu"])
    groups, devs, absorbed, naive = group_nodes(m, aff.assignments)
    assert naive == _naive_split(m, aff.assignments) == 288
    assert len(groups) <= 8 * 24  # 8 device changes per block are unavoidable
    assert len(groups) < naive
    # shape-only pieces (Shape → Gather) run with the NPU region instead of splitting it
    assert "b0.shape" in absorbed and "shape-only" in absorbed["b0.shape"]
    assert sorted(n for g in groups for n in g) == sorted(n.name for n in m.graph.node)
    for g, d in zip(groups, devs, strict=True):
        assert {aff.assignments[n] for n in g if n not in absorbed} <= {d}


def test_random_dags_acyclic_and_never_worse_than_naive(tmodels):
    for seed in range(12):
        m = tmodels.random_dag(n_nodes=30, seed=seed)
        rng = np.random.default_rng(seed)
        names = [n.name for n in m.graph.node]
        assignments = {n: ("a", "b", "c")[int(rng.integers(0, 2 + seed % 2))] for n in names}
        groups, devs, _, naive = group_nodes(m, assignments)
        assert len(groups) <= naive
        where = {n: k for k, g in enumerate(groups) for n in g}
        assert sorted(where) == sorted(names)
        for node in m.graph.node:  # every edge goes forward: the quotient graph is acyclic
            for i in node.input:
                producer = next((p.name for p in m.graph.node if i in p.output), None)
                if producer is not None:
                    assert where[producer] <= where[node.name]
        for g, d in zip(groups, devs, strict=True):
            assert {assignments[n] for n in g} == {d}


def test_partitioned_run_equals_plain_run(tmodels, demo_cnn):
    cases = ((tmodels.detector_like(), {}, {}), (demo_cnn, {"N": 3}, {"flatten": "cpu"}))
    for m, dims, manual in cases:
        aff = wb.affinity(m, [NPU32, "cpu"], mode="combined", manual=manual)
        part = wb.partition(m, aff)
        _assert_acyclic(part)
        assert len({sg.device for sg in part.subgraphs}) == 2
        feeds = wb.random_dataset(m, n=1, dims=dims)[0]
        plain = wb.open_runner(m, "cpu")(feeds)
        got = part.run(feeds)
        assert list(got) == list(plain)
        for k in plain:
            np.testing.assert_array_equal(got[k], plain[k])


def test_transformer_partitioned_run_close_to_plain(tmodels):
    # ORT fuses LayerNorm/GELU/attention patterns inside one session, but not across
    # subgraphs, so the last bits may differ; with graph optimizations off they are equal.
    m = tmodels.transformer_like(blocks=2)
    part = wb.partition(m, wb.affinity(m, [NPU32, "cpu"]))
    _assert_acyclic(part)
    feeds = wb.random_dataset(m, n=1, dims={"N": 2})[0]
    np.testing.assert_allclose(
        part.run(feeds)["y"], wb.open_runner(m, "cpu")(feeds)["y"], rtol=1e-5, atol=1e-5
    )


def test_f16_partition_changes_numerics_within_tolerance(tmodels):
    m = tmodels.attention_block()
    aff = wb.affinity(m, ["gpu-sim", "cpu"], mode="combined", manual={"softmax": "cpu"})
    part = wb.partition(m, aff)
    assert [sg.device for sg in part.subgraphs] == ["gpu-sim", "cpu", "gpu-sim"]
    feeds = wb.random_dataset(m, n=1, dims={"N": 2})[0]
    ref = wb.open_runner(m, "cpu")(feeds)["y"]
    err = np.abs(part.run(feeds)["y"] - ref).max()
    assert 0 < err < 2e-2


def test_profile_per_subgraph(tmodels):
    m = tmodels.cycle_trap()
    part = wb.partition(m, wb.affinity(m, ["edge-cpu-sim", "cpu"], mode="combined",
                                       manual={"b_softmax": "cpu"}))  # fmt: skip
    prof = part.profile(wb.random_dataset(m, n=1)[0], runs=5)
    assert [r.subgraph for r in prof.rows] == [sg.name for sg in part.subgraphs]
    assert prof.runs == 5 and prof.total_ms > 0
    first, second, third = prof.rows
    assert first.simulated and first.device == "edge-cpu-sim"
    assert first.simulated_ms == pytest.approx(first.median_ms / 0.25)
    assert second.boundary_bytes == 64 and third.boundary_bytes == 128
    assert prof.boundary_bytes == 64 + 128
    assert first.bytes_out == 64  # 'a' goes to both later subgraphs, counted once
    fig = prof.plot()
    assert len(fig.axes[0].patches) == 3
    html = prof._repr_html_()
    assert "<svg" in html and "edge-cpu-sim (simulated)" in html
    again = type(prof).from_json(prof.to_json())
    assert again == prof
    rebuilt = PartitionedModel.from_json(part.to_json())
    assert rebuilt == part
    feeds = wb.random_dataset(m, n=1)[0]
    np.testing.assert_array_equal(rebuilt.run(feeds)["y"], part.run(feeds)["y"])
    # simulated subgraphs get a roofline estimate incl. one transfer per boundary tensor
    from workbench.hardware.estimate import estimate_latency, transfer_ms
    from workbench.hardware.registry import profile_of

    edge = profile_of(part.device("edge-cpu-sim"))
    sg0 = part.subgraphs[0]
    x = wb.random_dataset(m, n=1)[0]
    expected = estimate_latency(sg0.model, edge, input_shapes={k: v.shape for k, v in x.items()})
    assert first.estimated_ms == pytest.approx(expected.latency_ms)
    for r in prof.rows:  # real devices are measured, never estimated
        assert (r.estimated_ms is not None) == r.simulated
    assert third.estimated_ms > estimate_latency(part.subgraphs[2].model, edge).latency_ms
    assert prof.estimated_total_ms == pytest.approx(
        sum(r.estimated_ms if r.simulated else r.median_ms for r in prof.rows)
    )
    assert transfer_ms(edge, 64) > transfer_ms(edge, 0)


def test_partition_opens_subgraphs_with_the_hint(tmodels):
    m = tmodels.attention_block()
    aff = wb.affinity(m, ["gpu-sim", "cpu"], mode="combined", manual={"softmax": "cpu"})
    feeds = wb.random_dataset(m, n=1, dims={"N": 2})[0]
    exact = wb.partition(m, aff, hint="accuracy")
    assert exact.hint == "accuracy"
    np.testing.assert_array_equal(exact.run(feeds)["y"], wb.open_runner(m, "cpu")(feeds)["y"])
    fast = wb.partition(m, aff)
    assert not np.array_equal(fast.run(feeds)["y"], exact.run(feeds)["y"])  # f16 emulated


def test_partition_rejects_foreign_affinity(tmodels):
    aff = wb.affinity(tmodels.mlp(), ["cpu"])
    with pytest.raises(wb.InputError, match=r"no device for node 'a_mm'.*another model"):
        wb.partition(tmodels.cycle_trap(), aff)
    part = wb.partition(tmodels.mlp(), aff)
    with pytest.raises(wb.InputError, match="missing feed for model input 'x'"):
        part.run({})


def test_partition_across_real_backends(tmodels):
    pytest.importorskip("openvino")  # optional extra: OpenVINO CPU next to ONNX Runtime CPU
    m = tmodels.attention_block()
    aff = wb.affinity(m, ["openvino:CPU", "cpu"], mode="combined", manual={"softmax": "cpu"})
    part = wb.partition(m, aff)
    assert [sg.device for sg in part.subgraphs] == ["openvino:CPU", "cpu", "openvino:CPU"]
    assert not any(sg.simulated for sg in part.subgraphs)
    feeds = wb.random_dataset(m, n=1, dims={"N": 2})[0]
    np.testing.assert_allclose(
        part.run(feeds)["y"], wb.open_runner(m, "cpu")(feeds)["y"], rtol=2e-2, atol=2e-2
    )


def test_partition_and_profile_can_be_cancelled(tmodels):
    from workbench.progress import CancelToken, cancellable

    m = tmodels.cycle_trap()
    aff = wb.affinity(m, [NPU32, "cpu"])
    token = CancelToken()
    token.cancel("stop")
    with cancellable(token), pytest.raises(wb.OperationCancelled, match="stop"):
        wb.partition(m, aff)
    part = wb.partition(m, aff)
    with cancellable(token), pytest.raises(wb.OperationCancelled):
        part.profile(wb.random_dataset(m, n=1)[0], runs=3)


def test_outer_scope_values_of_subgraph_ops_cross_boundaries(tmodels):
    m = tmodels.if_outer_scope()
    aff = wb.affinity(m, ["edge-cpu-sim", "cpu"])
    assert aff.assignments == {"relu": "edge-cpu-sim", "branch": "cpu", "tanh": "edge-cpu-sim"}
    part = wb.partition(m, aff)
    _assert_acyclic(part)
    branch = part.subgraphs[1]
    assert branch.nodes == ("branch",) and set(branch.inputs) == {"flag", "h"}  # h is implicit
    plain = wb.open_runner(m, "cpu")
    for flag in (False, True):
        feeds = {"x": np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4), "flag": np.array(flag)}
        np.testing.assert_array_equal(part.run(feeds)["y"], plain(feeds)["y"])
    dot = wb.subgraphs_dot(part)
    assert dot.count("-> t0") == 1 and "t0 -> n1" in dot  # h drawn into the If
