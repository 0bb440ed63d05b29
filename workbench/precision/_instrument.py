"""Instrumented fp32 runs for mixed precision: tensor ranges and per-node rounding probes.

Both build a new model with ``onnx_ir`` from the caller's (never mutating it) and run it once
per dataset item in ONNX Runtime:

* :func:`tensor_ranges` exposes every float32 tensor of the main graph as an output and
  records max |x|, the smallest nonzero |x| and how many nonzero values are below a threshold;
* :func:`rounding_probe` inserts, around each probed node, ``Where(sel == j, round(x), x)`` on
  its float inputs and outputs, where ``round`` is a Cast round-trip through float16/bfloat16.
  Feeding ``sel = j`` rounds exactly node ``j`` in an otherwise fp32 model, so one session
  measures every node's effect on the outputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from ..progress import check_cancelled
from ..runtime import kernels, prepare_feeds
from ..runtime.ort import _np_type, make_session, session_options

Feeds = dict[str, np.ndarray]
_FLOAT = ir.DataType.FLOAT
_SELECT = "__wb_probe_select"


@dataclass(frozen=True)
class TensorRange:
    """Magnitudes one float tensor reached on the dataset (finite values only)."""

    max_abs: float
    min_nonzero: float  # inf when every value is zero
    nonzero: int
    tiny: int  # nonzero values below the threshold given to tensor_ranges


def _is_float(value: ir.Value) -> bool:
    return value.dtype == _FLOAT


def _top_level_floats(graph: ir.Graph) -> list[ir.Value]:
    """Float32 values produced by main-graph nodes, in graph order, without duplicates."""
    seen: set[str] = set()
    out: list[ir.Value] = []
    for node in graph:
        for v in node.outputs:
            if v.name and v.name not in seen and _is_float(v):
                seen.add(v.name)
                out.append(v)
    return out


def _typed_ir(model: onnx.ModelProto) -> ir.Model:
    """IR model with inferred element types on intermediate values (where ONNX can infer them)."""
    with contextlib.suppress(Exception):  # unknown domains: keep the declared types
        model = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    return ir.from_proto(model)


def _update(stats: dict[str, list[float]], name: str, array: np.ndarray, tiny: float) -> None:
    a = np.abs(np.asarray(array, dtype=np.float64)).ravel()
    a = a[np.isfinite(a)]
    nz = a[a > 0]
    s = stats.setdefault(name, [0.0, np.inf, 0, 0])
    if nz.size:
        s[0] = max(s[0], float(nz.max()))
        s[1] = min(s[1], float(nz.min()))
        s[2] += int(nz.size)
        s[3] += int(np.count_nonzero(nz < tiny))


def tensor_ranges(
    model: onnx.ModelProto, feeds: Sequence[Feeds], tiny: float
) -> dict[str, TensorRange]:
    """Range of every float32 tensor (graph inputs, initializers, main-graph intermediates).

    One ONNX Runtime session with every float intermediate added as a graph output, run once
    per item. ``tiny`` is the threshold counted in :attr:`TensorRange.tiny`.
    """
    m = _typed_ir(model)
    g = m.graph
    present = {v.name for v in g.outputs}
    for v in _top_level_floats(g):
        if v.name not in present:
            g.outputs.append(v)
    session = make_session(ir.to_proto(m))
    names = [o.name for o in session.get_outputs()]
    stats: dict[str, list[float]] = {}
    for init in g.initializers.values():
        if init.dtype == _FLOAT and init.const_value is not None:
            _update(stats, init.name, init.const_value.numpy(), tiny)
    specs = {i.name: _np_type(i.type) for i in session.get_inputs()}
    for raw in feeds:
        check_cancelled()
        fd = prepare_feeds(raw, specs)
        for k, v in fd.items():
            if v.dtype.kind == "f":
                _update(stats, k, v, tiny)
        for name, arr in zip(names, session.run(None, fd), strict=True):
            if isinstance(arr, np.ndarray) and arr.dtype.kind == "f":
                _update(stats, name, arr, tiny)
    return {k: TensorRange(v[0], v[1], int(v[2]), int(v[3])) for k, v in stats.items()}


def rounding_probe(
    model: onnx.ModelProto, probed: Sequence[str], dtype: str
) -> Callable[[np.ndarray, Feeds], dict[str, np.ndarray]]:
    """A function ``run(mask, feeds)`` giving the outputs with the nodes ``probed[mask]`` rounded.

    ``mask`` is a bool vector over ``probed``; all False rounds nothing (the probe's own fp32
    reference). Rounding covers each selected node's float32 inputs (activations and weights)
    and outputs, i.e. what a low-precision kernel reads and writes.
    """
    to = onnx.TensorProto.BFLOAT16 if dtype == "bfloat16" else onnx.TensorProto.FLOAT16
    m = _typed_ir(model)
    g = m.graph
    select = ir.Value(
        name=_SELECT, type=ir.TensorType(ir.DataType.BOOL), shape=ir.Shape([len(probed)])
    )
    g.inputs.append(select)
    by_name = {n.name: n for n in g}
    outputs = {id(v) for v in g.outputs}
    for j, name in enumerate(probed):
        node = by_name[name]
        index = ir.Value(name=f"__wb_probe_j{j}", const_value=ir.tensor(np.array(j, np.int64)))
        g.register_initializer(index)
        cond = ir.node("Gather", [select, index], name=f"__wb_probe_sel{j}")
        added = [cond]

        def rounded(
            x: ir.Value, tag: str, cond: ir.Value = cond.outputs[0], added: list = added
        ) -> ir.Node:
            c1 = ir.node("Cast", [x], {"to": to}, name=f"{tag}_lo")
            c2 = ir.node("Cast", c1.outputs, {"to": onnx.TensorProto.FLOAT}, name=f"{tag}_hi")
            w = ir.node("Where", [cond, c2.outputs[0], x], name=f"{tag}_where")
            w.outputs[0].dtype = _FLOAT
            added.extend((c1, c2, w))
            return w

        for i, x in enumerate(node.inputs):
            if x is not None and _is_float(x):
                w = rounded(x, f"__wb_probe{j}_in{i}")
                node.replace_input_with(i, w.outputs[0])
        g.insert_before(node, added)
        after: list[ir.Node] = []
        for k, y in enumerate(node.outputs):
            if not _is_float(y):
                continue
            consumers = list(y.uses())
            was_output = id(y) in outputs
            start = len(added)
            w = rounded(y, f"__wb_probe{j}_out{k}")
            after.extend(added[start:])
            for use in consumers:
                use.node.replace_input_with(use.idx, w.outputs[0])
            if was_output:  # keep the graph output's name on the rounded value
                pos = [id(v) for v in g.outputs].index(id(y))
                out_name = y.name
                y.name = f"{out_name}__wb_raw"
                w.outputs[0].name = out_name
                g.outputs[pos] = w.outputs[0]
        if after:
            g.insert_after(node, after)
    # the probe is a measuring device: basic optimizations keep session creation fast on big
    # graphs, and no fusion may remove the Cast round-trips
    options = session_options()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = make_session(ir.to_proto(m), options=options)
    specs = {i.name: _np_type(i.type) for i in session.get_inputs() if i.name != _SELECT}
    names = [o.name for o in session.get_outputs()]

    def run(mask: np.ndarray, feeds: Feeds) -> dict[str, np.ndarray]:
        fd = prepare_feeds(feeds, specs)
        fd[_SELECT] = np.asarray(mask, dtype=bool)
        return dict(zip(names, session.run(None, fd), strict=True))

    return run


def cast_roundtrip_supported(dtype: str) -> bool:
    """Whether the CPU provider can Cast float32 to ``dtype`` (needed by the probe)."""
    to = onnx.TensorProto.BFLOAT16 if dtype == "bfloat16" else onnx.TensorProto.FLOAT16
    return kernels.kernel_for("Cast", "", 21, [onnx.TensorProto.FLOAT], [to])[0]
