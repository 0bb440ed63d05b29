"""Which nodes a device can run, and why not: ``query_model(model, device) -> CapabilityReport``.

Real ORT devices are asked through ONNX Runtime's own kernel registry
(:mod:`workbench.runtime.kernels`); OpenVINO devices through OpenVINO's ``query_model``;
simulated device profiles through their declaration (op list, exclusions, static shapes,
control flow) and then the CPU kernel registry, since the simulation runs on the ORT CPU.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass
from typing import Any

import onnx

from ..model import ensure_node_names, load_model
from ..results import Result, html_table
from ..runtime import kernels
from ..tensor_types import inferred, tensor_types
from .registry import Device, DeviceProfile, profile_of, resolve_device

_LOW_PRECISION = {"f16": onnx.TensorProto.FLOAT16, "bf16": onnx.TensorProto.BFLOAT16}
_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE}


@dataclass(frozen=True)
class NodeSupport(Result):
    """One node's verdict on one device."""

    node: str
    op: str
    supported: bool
    reason: str


@dataclass(frozen=True)
class CapabilityReport(Result):
    """Per-node support of one device, each verdict with its reason."""

    device: str
    simulated: bool
    nodes: tuple[NodeSupport, ...]

    _summary_exclude = ("nodes",)

    def __getitem__(self, node: str) -> NodeSupport:
        for n in self.nodes:
            if n.node == node:
                return n
        raise KeyError(f"no node {node!r} in the capability report of {self.device}")

    def is_supported(self, node: str) -> bool:
        """Can the device run ``node``?"""
        return self[node].supported

    @property
    def reasons(self) -> dict[str, str]:
        """Node name → reason."""
        return {n.node: n.reason for n in self.nodes}

    @property
    def unsupported(self) -> tuple[NodeSupport, ...]:
        return tuple(n for n in self.nodes if not n.supported)

    @property
    def label(self) -> str:
        return f"{self.device} (simulated)" if self.simulated else self.device

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per op type: how many nodes the device runs and why the others not."""
        by_op: dict[str, list[NodeSupport]] = collections.defaultdict(list)
        for n in self.nodes:
            by_op[n.op].append(n)
        rows = []
        for op, ns in sorted(by_op.items()):
            bad = [n for n in ns if not n.supported]
            rows.append(
                {
                    "op": op,
                    "nodes": len(ns),
                    "supported": len(ns) - len(bad),
                    "why not": "; ".join(sorted({n.reason for n in bad})),
                }
            )
        return rows

    def _repr_html_(self) -> str:
        ok = sum(n.supported for n in self.nodes)
        return html_table(
            self.summary_rows(),
            title=f"{self.label}: {ok} of {len(self.nodes)} nodes supported",
        )

    def __str__(self) -> str:
        ok = sum(n.supported for n in self.nodes)
        lines = [f"{self.label}: {ok}/{len(self.nodes)} nodes supported"]
        lines += [f"  {n.node} ({n.op}): {n.reason}" for n in self.unsupported]
        return "\n".join(lines)


def _opsets(model: onnx.ModelProto) -> dict[str, int]:
    return {
        ("" if o.domain in ("", "ai.onnx") else o.domain): o.version for o in model.opset_import
    }


def _graph_attrs(node: onnx.NodeProto) -> list[str]:
    return [
        a.name
        for a in node.attribute
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    ]


def _label(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


class _Context:
    """Types, shapes and opsets of one model, computed once for every node check."""

    def __init__(self, model: onnx.ModelProto, want_shapes: bool):
        self.model = model
        self.types = tensor_types(model)
        self.opsets = _opsets(model)
        self.constants = {i.name for i in model.graph.initializer}
        self.shapes: dict[str, tuple[Any, ...] | None] = {}
        if want_shapes:
            g = inferred(model).graph
            for vi in list(g.input) + list(g.output) + list(g.value_info):
                tt = vi.type.tensor_type
                self.shapes[vi.name] = (
                    tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
                    if tt.HasField("shape")
                    else None
                )

    def opset(self, node: onnx.NodeProto) -> int:
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        return self.opsets.get(domain, 0)

    def kernel(
        self, node: onnx.NodeProto, provider: str, as_type: int | None = None
    ) -> tuple[bool, str]:
        def t(name: str) -> int | None:
            if not name:
                return None
            found = self.types.get(name)
            return as_type if as_type is not None and found in _FLOATS else found

        return kernels.kernel_for(
            node.op_type,
            node.domain,
            self.opset(node),
            [t(i) for i in node.input],
            [t(o) for o in node.output],
            provider=provider,
        )


def _check_profile(node: onnx.NodeProto, profile: DeviceProfile, ctx: _Context) -> tuple[bool, str]:
    op = _label(node)
    if node.name in profile.exclude:
        return False, f"node {node.name!r} is excluded by profile {profile.name}"
    if node.op_type in profile.exclude or op in profile.exclude:
        return False, f"{op} is excluded by profile {profile.name}"
    if node.op_type == "Constant":
        return True, "constant: folded into its consumer's subgraph"
    if profile.ops is not None and node.op_type not in profile.ops and op not in profile.ops:
        return False, f"{op} is not in profile {profile.name}'s op list"
    bodies = _graph_attrs(node)
    if bodies and (profile.ops is None or node.op_type not in profile.ops):
        return False, (
            f"subgraph op: {op} has body graph(s) {', '.join(bodies)}; control flow stays on "
            f"another device unless profile {profile.name} lists {node.op_type!r} in ops"
        )
    if profile.static_shapes:
        for name in node.input:
            if not name or name in ctx.constants:
                continue
            shape = ctx.shapes.get(name)
            if shape is None or any(d is None for d in shape):
                dims = (
                    "unknown"
                    if shape is None
                    else "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"
                )
                return False, (
                    f"dynamic shape: input {name!r} has shape {dims}; profile {profile.name} "
                    "needs static shapes (fix the input dimensions)"
                )
    ok, why = ctx.kernel(node, kernels.CPU)
    if not ok:
        return False, f"type not supported: {why} (the simulation runs on the ORT CPU)"
    reason = f"{op} runs on {profile.name} in {profile.precision} (simulated)"
    if profile.precision in _LOW_PRECISION and any(
        ctx.types.get(i) in _FLOATS for i in node.input if i
    ):  # the emulation (registry.EmulatedRunner) rounds whatever kernel this CPU has
        reason += (
            f"; emulated: the ORT CPU computes in f32 and rounds the node's inputs and outputs "
            f"through {profile.precision}"
        )
    return True, reason


def _check_ort(node: onnx.NodeProto, provider: str, ctx: _Context) -> tuple[bool, str]:
    if node.op_type == "Constant":
        return True, "constant: folded into its consumer's subgraph"
    if provider not in kernels.providers_with_kernels():
        return True, f"{provider} exposes no kernel registry in this build; assumed supported"
    ok, why = ctx.kernel(node, provider)
    return ok, (why if ok else f"type not supported: {why}")


def _openvino_supported(model: onnx.ModelProto, device: Device) -> dict[str, str] | None:
    """ONNX tensor name → OV op name for every op OpenVINO says ``device`` supports."""
    try:
        from ..runtime.openvino import core
    except ImportError:
        return None
    try:
        ov_model = core().read_model(model.SerializeToString(), b"")
        supported = core().query_model(ov_model, device.provider or "CPU")
    except Exception:  # OpenVINO cannot read the model: reported per node by the caller
        return None
    out: dict[str, str] = {}
    for op in ov_model.get_ordered_ops():
        if op.get_friendly_name() in supported:
            for o in op.outputs():
                for name in o.get_names():
                    out[name] = op.get_friendly_name()
    return out


def query_model(model: onnx.ModelProto | str | os.PathLike[str], device: Any) -> CapabilityReport:
    """For every top-level node: can ``device`` run it, and why (not)?

    Nodes are named deterministically first (:func:`workbench.model.ensure_node_names`), so the
    names match :func:`workbench.affinity` and the renders.
    """
    m = ensure_node_names(model if isinstance(model, onnx.ModelProto) else load_model(model))
    dev = resolve_device(device)
    profile = profile_of(dev) if dev.backend == "profile" else None
    ctx = _Context(m, want_shapes=bool(profile and profile.static_shapes))
    ov_supported = _openvino_supported(m, dev) if dev.backend == "openvino" else None
    verdicts = []
    for node in m.graph.node:
        if profile is not None:
            ok, why = _check_profile(node, profile, ctx)
        elif dev.backend == "openvino":
            if ov_supported is None:
                ok, why = False, "OpenVINO cannot read or query this model"
            elif node.op_type == "Constant" or all(o in ov_supported for o in node.output if o):
                ok, why = True, f"OpenVINO {dev.provider} supports {_label(node)}"
            else:
                ok, why = False, f"OpenVINO {dev.provider} query_model does not list {_label(node)}"
        else:
            ok, why = _check_ort(node, dev.provider or kernels.CPU, ctx)
        verdicts.append(NodeSupport(node.name, _label(node), ok, why))
    return CapabilityReport(device=dev.name, simulated=dev.simulated, nodes=tuple(verdicts))
