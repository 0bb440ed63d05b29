"""Instrumented fp32 runs for mixed precision: tensor ranges and a rounding probe.

Both build a new model with ``onnx_ir`` from the caller's (never mutating it) and run it in
ONNX Runtime:

* :func:`tensor_ranges` exposes every float32 tensor of the main graph as an output and
  records max |x|, the smallest nonzero |x| and how many nonzero values are below a threshold;
* :func:`rounding_probe` puts a switch ``Where(mask[j], round(x), x)`` on every float input
  and output of each probed node ``j``, where ``round`` is a Cast round-trip through
  float16/bfloat16 (weights are rounded once in numpy). One session then simulates any set of
  nodes computing in the low precision — the node set is just the ``mask`` input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from ..progress import check_cancelled
from ..runtime import prepare_feeds
from ..runtime.ort import _np_type, make_session, session_options
from ..tensor_types import inferred

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
    return ir.from_proto(inferred(model))


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


def _round_array(array: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values as stored in ``dtype`` and read back."""
    if dtype == "bfloat16":
        import ml_dtypes

        return array.astype(ml_dtypes.bfloat16).astype(np.float32)
    with np.errstate(over="ignore"):
        return array.astype(np.float16).astype(np.float32)


class _ProbeBuilder:
    """Inserts the rounding switches; one Cast round-trip per value, one Where per use."""

    def __init__(self, m: ir.Model, dtype: str):
        self.g = m.graph
        self.dtype = dtype
        self.to = onnx.TensorProto.BFLOAT16 if dtype == "bfloat16" else onnx.TensorProto.FLOAT16
        self.rounded: dict[int, ir.Value] = {}  # id(value) → its rounded twin
        self.count = 0

    def _name(self, what: str) -> str:
        self.count += 1
        return f"__wb_probe_{what}{self.count}"

    def twin(self, x: ir.Value, before: list[ir.Node]) -> ir.Value:
        """The rounded version of ``x`` (constants rounded in numpy, activations by Cast)."""
        if id(x) in self.rounded:
            return self.rounded[id(x)]
        const = x.const_value if x.is_initializer() else None
        if const is not None:
            r = ir.Value(
                name=self._name("w"),
                const_value=ir.tensor(_round_array(const.numpy().astype(np.float32), self.dtype)),
            )
            self.g.register_initializer(r)
        else:
            c1 = ir.node("Cast", [x], {"to": self.to}, name=self._name("lo"))
            c2 = ir.node("Cast", c1.outputs, {"to": onnx.TensorProto.FLOAT}, name=self._name("hi"))
            before.extend((c1, c2))
            r = c2.outputs[0]
        r.dtype = _FLOAT
        self.rounded[id(x)] = r
        return r

    def switch(self, cond: ir.Value, rounded: ir.Value, x: ir.Value) -> ir.Node:
        w = ir.node("Where", [cond, rounded, x], name=self._name("where"))
        w.outputs[0].dtype = _FLOAT
        return w

    def probe_node(self, node: ir.Node, cond: ir.Value, before: list[ir.Node]) -> None:
        for i, x in enumerate(node.inputs):
            if x is not None and _is_float(x):
                w = self.switch(cond, self.twin(x, before), x)
                before.append(w)
                self.rounded[id(w.outputs[0])] = self.rounded[id(x)]
                node.replace_input_with(i, w.outputs[0])
        self.g.insert_before(node, before)
        after: list[ir.Node] = []
        for y in node.outputs:
            if not _is_float(y):
                continue
            uses = list(y.uses())
            r = self.twin(y, after)
            w = self.switch(cond, r, y)
            after.append(w)
            self.rounded[id(w.outputs[0])] = r  # rounding a switched value = rounding y
            for use in uses:
                use.node.replace_input_with(use.idx, w.outputs[0])
            if y.is_graph_output():  # the graph output keeps its name, on the switched value
                pos = [id(v) for v in self.g.outputs].index(id(y))
                name = y.name
                y.name = self._name("raw")
                w.outputs[0].name = name
                self.g.outputs[pos] = w.outputs[0]
        if after:
            self.g.insert_after(node, after)


def rounding_probe(
    model: onnx.ModelProto, probed: Sequence[str], dtype: str
) -> Callable[[np.ndarray, Feeds], dict[str, np.ndarray]]:
    """A function ``run(mask, feeds)`` giving the outputs with the nodes ``probed[mask]`` rounded.

    ``mask`` is a bool vector over ``probed``; all False rounds nothing (the probe's own fp32
    reference). Rounding covers each selected node's float32 inputs (activations and weights)
    and outputs, i.e. what a low-precision kernel reads and writes. One session serves every
    mask, so measuring a node set costs one run per item, not a conversion and a session.
    """
    m = _typed_ir(model)
    g = m.graph
    select = ir.Value(
        name=_SELECT, type=ir.TensorType(ir.DataType.BOOL), shape=ir.Shape([len(probed)])
    )
    g.inputs.append(select)
    by_name = {n.name: n for n in g}
    builder = _ProbeBuilder(m, dtype)
    for j, name in enumerate(probed):
        index = ir.Value(name=f"__wb_probe_j{j}", const_value=ir.tensor(np.array(j, np.int64)))
        g.register_initializer(index)
        cond = ir.node("Gather", [select, index], name=f"__wb_probe_sel{j}")
        builder.probe_node(by_name[name], cond.outputs[0], [cond])
    # the probe is a measuring device: no optimization may fuse away its Cast round-trips,
    # and skipping them keeps session creation fast on big graphs
    options = session_options()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = make_session(ir.to_proto(m), options=options)
    specs = {i.name: _np_type(i.type) for i in session.get_inputs() if i.name != _SELECT}
    names = [o.name for o in session.get_outputs()]

    def run(mask: np.ndarray, feeds: Feeds) -> dict[str, np.ndarray]:
        fd = prepare_feeds(feeds, specs)
        fd[_SELECT] = np.asarray(mask, dtype=bool)
        return dict(zip(names, session.run(None, fd), strict=True))

    return run
