"""Roofline latency estimates for simulated device profiles.

A node's time is ``max(FLOPs / peak ops/s in its precision, bytes moved / memory bandwidth)``
plus the profile's per-node overhead; a partitioned run adds, per boundary tensor, the
profile's transfer latency plus bytes / link bandwidth. FLOPs and bytes come from the shapes
ONNX shape inference gives (dynamic dimensions taken from example feeds, else 1). Every figure
here is an *estimate* and is labelled as such wherever it is shown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from ..data import as_dataset
from ..errors import InputError
from ..model import ensure_node_names
from ..results import Result, html_table
from ..runtime.hints import as_hint
from ..tensor_types import inferred
from .registry import profile_of, resolve_device

#: bytes per element when a node computes in a precision (activations and weights)
_ITEMSIZE = {"f32": 4, "f16": 2, "bf16": 2, "int8": 1}
#: ops whose cost is a matrix product (2 FLOPs per multiply-accumulate)
_MATMUL_OPS = {"MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "FusedMatMul", "QGemm"}
_CONV_OPS = {"Conv", "ConvInteger", "QLinearConv", "ConvTranspose"}
#: ops that only move data: no arithmetic, bytes only
_MOVE_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Size",
             "Constant", "Transpose", "Concat", "Split", "Slice", "Gather", "Expand", "Cast",
             "QuantizeLinear", "DequantizeLinear"}  # fmt: skip


@dataclass(frozen=True)
class NodeEstimate(Result):
    """The roofline terms of one node."""

    node: str
    op: str
    precision: str
    flops: float
    bytes: float
    time_ms: float
    bound: str  # "compute" | "memory" | "overhead"


@dataclass(frozen=True)
class LatencyEstimate(Result):
    """An estimated latency: the sum of per-node roofline times (+ transfers). Never measured."""

    device: str
    precision: str
    latency_ms: float
    nodes: tuple[NodeEstimate, ...]
    transfer_ms: float = 0.0
    estimated: bool = True
    notes: tuple[str, ...] = ()

    _summary_exclude = ("nodes",)

    def _repr_html_(self) -> str:
        rows = [
            {"node": n.node, "op": n.op, "precision": n.precision, "GFLOP": n.flops / 1e9,
             "MB": n.bytes / 1e6, "ms (estimated)": n.time_ms, "bound": n.bound}
            for n in sorted(self.nodes, key=lambda n: -n.time_ms)[:30]
        ]  # fmt: skip
        title = (
            f"{self.device}: {self.latency_ms:.4g} ms estimated ({self.precision}, roofline; "
            f"transfers {self.transfer_ms:.3g} ms)"
        )
        return html_table(rows, title=title)


def _dims(vi: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else 1 for d in t.shape.dim)


def static_shapes(
    model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None
) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape with every dynamic dimension fixed (from ``input_shapes``, else 1)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        given = (input_shapes or {}).get(vi.name)
        dims = vi.type.tensor_type.shape.dim
        for k, d in enumerate(dims):
            value = int(given[k]) if given is not None and k < len(given) else None
            if value is not None or not d.HasField("dim_value"):
                d.Clear()
                d.dim_value = value if value is not None else 1
    done = inferred(m, data_prop=True)
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in (*done.graph.input, *done.graph.value_info, *done.graph.output):
        dims = _dims(vi)
        if dims is not None:
            shapes[vi.name] = dims
    for t in model.graph.initializer:
        shapes[t.name] = tuple(int(d) for d in t.dims)
    return shapes


def _size(shape: tuple[int, ...] | None) -> float:
    return float(np.prod(shape, dtype=np.float64)) if shape is not None else 0.0


def node_flops(node: onnx.NodeProto, shapes: Mapping[str, tuple[int, ...]]) -> float:
    """Arithmetic operations of one node (multiply-accumulate = 2), from inferred shapes."""
    out = _size(shapes.get(node.output[0])) if node.output else 0.0
    op = node.op_type
    if op in _CONV_OPS:
        w_index = 3 if op == "QLinearConv" else 1
        w = shapes.get(node.input[w_index]) if len(node.input) > w_index else None
        if w is None or len(w) < 2:
            return out
        per_output = float(np.prod(w[1:], dtype=np.float64))  # (Cin / group) * kernel size
        if op == "ConvTranspose":
            x = shapes.get(node.input[0])
            return 2.0 * _size(x) * w[1] * float(np.prod(w[2:], dtype=np.float64)) if x else out
        return 2.0 * out * per_output
    if op in _MATMUL_OPS:
        a_index = 0
        a = shapes.get(node.input[a_index]) if node.input else None
        if a is None or not a:
            return out
        trans_a = any(x.name == "transA" and x.i for x in node.attribute)
        k = a[-2] if trans_a and len(a) >= 2 else a[-1]
        return 2.0 * out * k
    if op in _MOVE_OPS:
        return 0.0
    return out  # elementwise, pooling, normalizations: about one operation per output value


def _node_bytes(
    node: onnx.NodeProto,
    shapes: Mapping[str, tuple[int, ...]],
    itemsize: int,
    resident: frozenset[str] | set[str] = frozenset(),
) -> float:
    """Bytes a node reads and writes; ``resident`` tensors (weights kept on chip) are free."""
    names = [t for t in (*node.input, *node.output) if t and t not in resident]
    return itemsize * sum(_size(shapes.get(t)) for t in names)


def _resident(model: onnx.ModelProto, profile: Any) -> set[str]:
    """The weights, when all of them fit the profile's on-chip memory (re-used every run)."""
    weights = {
        t.name: float(np.prod(t.dims, dtype=np.float64)) * 4 for t in model.graph.initializer
    }
    return set(weights) if sum(weights.values()) <= float(profile.cache_bytes) else set()


def estimate_nodes(
    model: onnx.ModelProto,
    profile: Any,
    precision_of: Mapping[str, str] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> tuple[NodeEstimate, ...]:
    """Roofline time of every main-graph node of ``model`` on ``profile`` (a DeviceProfile).

    ``precision_of`` maps node → precision it computes in (default: the profile's precision
    for nodes it supports, f32 otherwise).
    """
    m = ensure_node_names(model)
    shapes = static_shapes(m, input_shapes)
    bandwidth = float(profile.memory_bandwidth)
    overhead_ms = float(profile.node_overhead_us) / 1e3
    resident = _resident(m, profile)
    out = []
    for node in m.graph.node:
        if node.op_type == "Constant":
            continue
        if precision_of is not None:
            precision = precision_of.get(node.name, "f32") or "f32"
        else:
            precision = profile.precision if profile.accepts(node.op_type, node.name) else "f32"
        flops = node_flops(node, shapes)
        nbytes = _node_bytes(node, shapes, _ITEMSIZE.get(precision, 4), resident)
        compute_ms = flops / profile.peak(precision) * 1e3 if flops else 0.0
        memory_ms = nbytes / bandwidth * 1e3
        bound = "compute" if compute_ms >= memory_ms else "memory"
        if overhead_ms > max(compute_ms, memory_ms):
            bound = "overhead"
        out.append(
            NodeEstimate(
                node=node.name, op=node.op_type, precision=precision, flops=flops, bytes=nbytes,
                time_ms=max(compute_ms, memory_ms) + overhead_ms, bound=bound,
            )
        )  # fmt: skip
    return tuple(out)


def transfer_ms(profile: Any, nbytes: float) -> float:
    """Estimated time to move ``nbytes`` across one device boundary of ``profile``."""
    return float(profile.transfer_latency_us) / 1e3 + nbytes / float(profile.link_bandwidth) * 1e3


def estimate_latency(
    model: onnx.ModelProto,
    profile: Any,
    precision: str | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    boundary_bytes: Sequence[float] = (),
) -> LatencyEstimate:
    """Estimated latency of ``model`` on ``profile``: nodes + one transfer per boundary.

    ``precision`` overrides the profile's precision (e.g. ``"f32"`` in accuracy mode);
    ``boundary_bytes`` lists the bytes crossing each device boundary of a partitioned run.
    """
    if not hasattr(profile, "peak"):
        raise InputError(f"estimates need a DeviceProfile, got {type(profile).__name__}")
    prec = precision or profile.precision
    m = ensure_node_names(model)
    precision_of = {
        n.name: (prec if profile.accepts(n.op_type, n.name) else "f32") for n in m.graph.node
    }
    nodes = estimate_nodes(m, profile, precision_of, input_shapes)
    moves = sum(transfer_ms(profile, b) for b in boundary_bytes)
    total = sum(n.time_ms for n in nodes) + moves
    notes = (
        f"estimated by a roofline model from {profile.name}'s declared peak ops/s and memory "
        "bandwidth; not measured",
    )
    return LatencyEstimate(
        device=profile.name,
        precision=prec,
        latency_ms=total if math.isfinite(total) else float("nan"),
        nodes=nodes,
        transfer_ms=moves,
        notes=notes,
    )


def estimate_for_device(
    model: onnx.ModelProto, device: Any, hint: Any = None, dataset: Any = None
) -> LatencyEstimate:
    """Estimated latency of ``model`` on a simulated ``device`` (name, Device or profile) with
    ``hint``: accuracy mode keeps f16/bf16 profiles in f32 (as :func:`open_profile` runs them);
    dynamic input dimensions come from the first item of ``dataset`` when given.

    This is what sweeps and ``benchmark`` report for simulated devices, with
    ``Record.estimated = True``.
    """
    dev = resolve_device(device)
    if dev.backend != "profile":
        raise InputError(f"{dev.name} is a real device: measure it, do not estimate it")
    profile = profile_of(dev)
    h = as_hint(hint)
    precision = profile.precision
    if h.execution_mode == "accuracy" and precision in ("f16", "bf16"):
        precision = "f32"  # accuracy mode never lowers precision
    shapes = None
    if dataset is not None:
        first = next(iter(as_dataset(dataset).feeds()), None)
        shapes = {k: np.asarray(v).shape for k, v in (first or {}).items()}
    return estimate_latency(model, profile, precision=precision, input_shapes=shapes)
