"""Instrumented fp32 runs for mixed precision: tensor ranges and a rounding probe.

Both build a new model with ``onnx_ir`` from the caller's (never mutating it) and run it in
ONNX Runtime:

* :func:`tensor_ranges` exposes every float32 tensor as an output — main-graph values
  directly, values inside If/Loop/Scan bodies as extra outputs of their node (an If's other
  branch yields an empty tensor, Loop/Scan stack them per iteration) — and records max |x|,
  the smallest nonzero |x| and how many nonzero values are below a threshold;
* :func:`rounding_probe` puts a switch ``Where(mask[j], round(x), x)`` on every float input
  and output of each probed node ``j`` — in the main graph or inside If/Loop/Scan bodies —
  where ``round`` is a Cast round-trip through float16/bfloat16 (weights held in the proto are
  rounded once in numpy; weights left in external-data files get the Cast round-trip too, so
  their rounded copy is computed per run and never held). One session then simulates any set
  of nodes computing in the low precision — the node set is just the ``mask`` input.

Both take a *light* model too (weights left in external-data files, ``model_dir`` the folder
they resolve against): ONNX Runtime then reads the weights from disk and Python never holds
them (:func:`workbench.model.stage_model`).

What the probe models, exactly (:data:`SIMULATION`): storage rounding of every tensor a node
reads and writes. What it does not model: rounding *inside* a kernel — accumulation of
reductions (ReduceSum/ReduceMean, Softmax's sum, LayerNormalization's mean and variance, the
dot products of MatMul/Gemm/Conv) in the low type. Hardware accumulating long reductions in
float16 can lose more than the probe predicts; most float16 kernels (ONNX Runtime CUDA/CPU,
oneDNN, cuBLAS) accumulate in float32, which is what the probe assumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from ..precisions import NUMPY_TYPES, ONNX_TYPES, canonical
from ..progress import check_cancelled
from ..runtime import prepare_feeds
from ..runtime.base import RunConfig
from ..runtime.ort import _np_type, make_session, session_options
from ..tensor_types import graph_value_types, inferred
from .float16 import ir_from_proto, restore_types

Feeds = dict[str, np.ndarray]
_FLOAT = ir.DataType.FLOAT
_SELECT = "__wb_probe_select"
#: what :func:`rounding_probe` simulates (quoted in MixedPrecisionResult.simulation)
SIMULATION = (
    "storage rounding: each converted node's float inputs, weights and outputs rounded to the "
    "target type, computation and accumulation in float32 (as float16 kernels that accumulate "
    "in float32 do); not modelled: accumulation in the low type inside reductions (ReduceSum, "
    "Softmax, LayerNormalization variance, long MatMul/Conv dot products)"
)


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


def _typed_ir(
    model: onnx.ModelProto, model_dir: str | None = None
) -> tuple[ir.Model, dict[str, onnx.TypeProto]]:
    """IR model with inferred element types on intermediate values (where ONNX can infer them);
    external tensors resolve against ``model_dir`` (read only on demand).

    Not onnx-ir's ShapeInferencePass: it logs a warning per value ONNX inference leaves out
    (routine in models with custom ops) and strict mode fails where ours falls back.
    """
    m, saved = ir_from_proto(inferred(model))
    if model_dir:
        ir.external_data.set_base_dir(m.graph, model_dir)
    return m, saved


def _options(model_dir: str | None) -> ort.SessionOptions:
    """Session options; a light model's external data is read from ``model_dir``."""
    return session_options(None, RunConfig(model_dir=model_dir))


def _const_array(v: ir.Value) -> np.ndarray:
    """An initializer's values; an external tensor's are read from its file (just its bytes:
    onnx-ir would map the whole file, as much address space as the model, per tensor)."""
    t = v.const_value
    assert t is not None
    if not isinstance(t, ir.ExternalTensor) or t.dtype.bitwidth % 8 or not t.size:
        return t.numpy()
    dt = np.dtype(t.dtype.numpy()).newbyteorder("<")
    return np.fromfile(t.path, dt, count=t.size, offset=t.offset or 0).reshape(t.shape.numpy())


#: values per step of :func:`_update` (its float64 temporaries stay near 64 MB, not the
#: tensor's size several times over)
_CHUNK = 1 << 22


def _update(stats: dict[str, list[float]], name: str, array: np.ndarray, tiny: float) -> None:
    flat = np.asarray(array).reshape(-1)
    s = stats.setdefault(name, [0.0, np.inf, 0, 0])
    for start in range(0, flat.size, _CHUNK):
        a = np.abs(flat[start : start + _CHUNK].astype(np.float64))
        a = a[np.isfinite(a)]
        nz = a[a > 0]
        if nz.size:
            s[0] = max(s[0], float(nz.max()))
            s[1] = min(s[1], float(nz.min()))
            s[2] += int(nz.size)
            s[3] += int(np.count_nonzero(nz < tiny))


def tensor_ranges(
    model: onnx.ModelProto, feeds: Sequence[Feeds], tiny: float, model_dir: str | None = None
) -> dict[str, TensorRange]:
    """Range of every float32 tensor (graph inputs, initializers, intermediates in the main
    graph and in If/Loop/Scan bodies).

    One ONNX Runtime session with every float intermediate added as a graph output, run once
    per item. ``tiny`` is the threshold counted in :attr:`TensorRange.tiny`. Where ONNX Runtime
    cannot run the body instrumentation (e.g. a Loop value whose shape changes between
    iterations cannot be stacked), only main-graph values are measured. ``model_dir``: the
    folder a light ``model``'s external data resolves against (weights read from disk by ONNX
    Runtime, and read one tensor at a time for their ranges).
    """
    m, saved = _typed_ir(model, model_dir)
    g = m.graph
    present = {v.name for v in g.outputs}
    for v in _top_level_floats(g):
        if v.name not in present:
            g.outputs.append(v)
    flat = ir.to_proto(m)
    restore_types(flat, saved)
    session, alias = _ranges_session(model, flat, feeds, _options(model_dir))
    names = [alias.get(o.name, o.name) for o in session.get_outputs()]
    stats: dict[str, list[float]] = {}
    for init in g.initializers.values():
        if init.dtype == _FLOAT and init.const_value is not None:
            _update(stats, init.name, _const_array(init), tiny)
    specs = _specs(session)
    for raw in feeds:
        check_cancelled()
        fd = prepare_feeds(raw, specs)
        for k, v in fd.items():
            if v.dtype.kind == "f":
                _update(stats, k, v, tiny)
        for name, arr in zip(names, session.run(None, fd), strict=True):
            if isinstance(arr, np.ndarray) and arr.dtype.kind == "f":
                _update(stats, name, arr, tiny)
    for body in _bodies(flat.graph):
        for t in body.initializer:
            if t.data_type == onnx.TensorProto.FLOAT:
                _update(stats, t.name, onnx.numpy_helper.to_array(t, model_dir or ""), tiny)
    return {k: TensorRange(v[0], v[1], int(v[2]), int(v[3])) for k, v in stats.items()}


def _ranges_session(
    model: onnx.ModelProto,
    flat: onnx.ModelProto,
    feeds: Sequence[Feeds],
    options: ort.SessionOptions,
) -> tuple[ort.InferenceSession, dict[str, str]]:
    """(session over ``flat`` with body values exposed too, output name → body value name);
    main-graph values only where the model has no bodies or ORT cannot run the exposure.

    Never two sessions at once: a failed exposure's session is gone before the fallback's."""
    if next(_bodies(flat.graph), None) is None:  # no control flow: no copy of the model
        return make_session(flat, options=options), {}
    exposed = onnx.ModelProto()
    exposed.CopyFrom(flat)  # a light model's copy is its structure only
    floats = {k for types in graph_value_types(model) for k, t in types.items() if t == _FLOAT}
    alias: dict[str, str] = {}
    _expose_bodies(exposed.graph, floats, alias)
    for node in exposed.graph.node:
        for out in node.output:
            if out in alias:
                exposed.graph.output.append(onnx.helper.make_tensor_value_info(out, 1, None))
    if not alias:
        return make_session(flat, options=options), {}
    session = None
    try:
        session = make_session(exposed, options=options)
        if feeds:  # a body value whose shape changes between iterations fails only at run time
            session.run(None, prepare_feeds(feeds[0], _specs(session)))
    except Exception:  # noqa: BLE001 - any ORT failure: fall back to main-graph values
        session = None
    del exposed
    if session is None:
        return make_session(flat, options=options), {}
    return session, alias


def _specs(session: ort.InferenceSession) -> dict[str, np.dtype]:
    return {i.name: _np_type(i.type) for i in session.get_inputs()}


def _bodies(graph: onnx.GraphProto):
    """Every subgraph below ``graph`` (depth first)."""
    for node in graph.node:
        for a in node.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for sub in subs:
                yield sub
                yield from _bodies(sub)


def _expose_bodies(graph: onnx.GraphProto, floats: set[str], alias: dict[str, str]) -> None:
    """Make the float values computed in If/Loop/Scan bodies extra outputs of their node.

    Inner bodies first, so a nested value surfaces through each enclosing node in turn.
    ``alias`` maps each added output name to the body value it carries. Edited on a proto
    copy: onnx-ir has no pass for this, and a node's outputs are fixed in the IR.
    """
    for node in graph.node:
        subs = {a.name: a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH}
        if not subs or node.domain not in ("", "ai.onnx"):
            continue
        for sub in subs.values():
            _expose_bodies(sub, floats, alias)
        if node.op_type == "If" and set(subs) == {"then_branch", "else_branch"}:
            then_g, else_g = subs["then_branch"], subs["else_branch"]
            for own, other in ((then_g, else_g), (else_g, then_g)):
                for name in _produced_floats(own, floats):
                    out = _fresh(alias, name)
                    own.output.append(onnx.helper.make_tensor_value_info(name, 1, None))
                    empty = onnx.helper.make_tensor(f"{out}_empty", 1, [0], [])
                    other.node.append(
                        onnx.helper.make_node("Constant", [], [f"{out}_empty"], value=empty)
                    )
                    other.output.append(onnx.helper.make_tensor_value_info(f"{out}_empty", 1, None))
                    node.output.append(out)
        elif node.op_type in ("Loop", "Scan") and "body" in subs:
            body = subs["body"]
            added = 0
            for name in _produced_floats(body, floats):
                body.output.append(onnx.helper.make_tensor_value_info(name, 1, None))
                node.output.append(_fresh(alias, name))
                added += 1
            for a in node.attribute:  # Scan: one axis/direction per scan output
                if a.name in ("scan_output_axes", "scan_output_directions"):
                    a.ints.extend([0] * added)


def _produced_floats(body: onnx.GraphProto, floats: set[str]) -> list[str]:
    outputs = {o.name for o in body.output}
    return [
        v
        for n in body.node
        for v in n.output
        if v and v not in outputs and (v in floats or v.startswith("__wb_range"))
    ]


def _fresh(alias: dict[str, str], name: str) -> str:
    out = f"__wb_range{len(alias)}"
    alias[out] = alias.get(name, name)
    return out


def _round_array(array: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values as stored in ``dtype`` and read back."""
    with np.errstate(over="ignore"):
        return array.astype(NUMPY_TYPES[canonical(dtype)]).astype(np.float32)


class _ProbeBuilder:
    """Inserts the rounding switches; one Cast round-trip per value, one Where per use."""

    def __init__(self, m: ir.Model, dtype: str):
        self.g = m.graph  # rounded weights live here: visible in every body as outer scope
        self.dtype = dtype
        self.to = ONNX_TYPES[canonical(dtype)]
        #: (id(graph), id(value)) → its rounded twin, computed in that graph (a twin made in a
        #: body is not visible outside it)
        self.rounded: dict[tuple[int, int], ir.Value] = {}
        self.count = 0

    def _name(self, what: str) -> str:
        self.count += 1
        return f"__wb_probe_{what}{self.count}"

    def twin(self, x: ir.Value, before: list[ir.Node], graph: ir.Graph) -> ir.Value:
        """The rounded version of ``x`` usable in ``graph`` (constants held in the model rounded
        in numpy; activations and weights left in external-data files by a Cast round-trip,
        computed per run, so the session holds no rounded copy of them)."""
        key = (id(graph), id(x))
        if key in self.rounded:
            return self.rounded[key]
        const = x.const_value if x.is_initializer() else None
        if const is not None and not isinstance(const, ir.ExternalTensor):
            r = ir.Value(
                name=self._name("w"),
                const_value=ir.tensor(_round_array(const.numpy().astype(np.float32), self.dtype)),
            )
            self.g.register_initializer(r)
        else:
            c1 = ir.node("Cast", [x], {"to": self.to}, name=self._name("lo"))
            c2 = ir.node("Cast", c1.outputs, {"to": onnx.TensorProto.FLOAT}, name=self._name("hi"))
            c1.outputs[0].name = self._name("lo_v")
            c2.outputs[0].name = self._name("hi_v")
            before.extend((c1, c2))
            r = c2.outputs[0]
        r.dtype = _FLOAT
        self.rounded[key] = r
        return r

    def switch(self, cond: ir.Value, rounded: ir.Value, x: ir.Value) -> ir.Node:
        w = ir.node("Where", [cond, rounded, x], name=self._name("where"))
        # every value gets a unique name: each body has its own naming authority, and its
        # automatic names would shadow the main graph's
        w.outputs[0].name = self._name("where_v")
        w.outputs[0].dtype = _FLOAT
        return w

    def probe_node(self, node: ir.Node, cond: ir.Value, before: list[ir.Node]) -> None:
        g = node.graph
        assert g is not None
        for i, x in enumerate(node.inputs):
            if x is not None and _is_float(x):
                r = self.twin(x, before, g)
                w = self.switch(cond, r, x)
                before.append(w)
                self.rounded[(id(g), id(w.outputs[0]))] = r
                node.replace_input_with(i, w.outputs[0])
        g.insert_before(node, before)
        after: list[ir.Node] = []
        for y in node.outputs:
            if not _is_float(y):
                continue
            uses = list(y.uses())
            r = self.twin(y, after, g)
            w = self.switch(cond, r, y)
            after.append(w)
            self.rounded[(id(g), id(w.outputs[0]))] = r  # rounding a switched value = rounding y
            for use in uses:
                use.node.replace_input_with(use.idx, w.outputs[0])
            positions = [k for k, v in enumerate(g.outputs) if v is y]
            if positions:  # the graph output keeps its name, on the switched value
                name = y.name
                y.name = self._name("raw")
                w.outputs[0].name = name
                for pos in positions:
                    g.outputs[pos] = w.outputs[0]
        if after:
            g.insert_after(node, after)


def rounding_probe(
    model: onnx.ModelProto, probed: Sequence[str], dtype: str, model_dir: str | None = None
) -> RoundingProbe:
    """A function ``run(mask, feeds)`` giving the outputs with the nodes ``probed[mask]`` rounded.

    ``probed`` may name nodes of the main graph and of If/Loop/Scan bodies (at any depth).

    ``mask`` is a bool vector over ``probed``; all False rounds nothing (the probe's own fp32
    reference). Rounding covers each selected node's float32 inputs (activations and weights)
    and outputs, i.e. what a low-precision kernel reads and writes (:data:`SIMULATION` says
    what is not modelled). One session serves every
    mask, so measuring a node set costs one run per item, not a conversion and a session.
    ``model_dir``: the folder a light ``model``'s external data resolves against; those weights
    are read by ONNX Runtime from disk (once) and rounded per run by their Cast round-trip.
    """
    m, saved = _typed_ir(model, model_dir)
    g = m.graph
    select = ir.Value(
        name=_SELECT, type=ir.TensorType(ir.DataType.BOOL), shape=ir.Shape([len(probed)])
    )
    g.inputs.append(select)
    by_name = {n.name: n for graph in m.graphs() for n in graph}
    builder = _ProbeBuilder(m, dtype)
    for j, name in enumerate(probed):
        index = ir.Value(name=f"__wb_probe_j{j}", const_value=ir.tensor(np.array(j, np.int64)))
        g.register_initializer(index)
        cond = ir.node("Gather", [select, index], name=f"__wb_probe_sel{j}")
        cond.outputs[0].dtype = ir.DataType.BOOL
        cond.outputs[0].name = f"__wb_probe_sel{j}_v"
        builder.probe_node(by_name[name], cond.outputs[0], [cond])
    # the probe is a measuring device: no optimization may fuse away its Cast round-trips,
    # and skipping them keeps session creation fast on big graphs
    options = _options(model_dir)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    # in graph order: the switches of a weight depend on graph inputs and initializers only,
    # and ORT's default order runs them all first, every rounded weight alive at once (+1×
    # the weights per run); nodes are inserted right before their consumer, so graph order
    # computes each weight's twin just before its use and frees it right after
    options.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    proto = ir.to_proto(m)
    del m, by_name, builder  # the IR's tensors: only the proto (light or complete) is needed
    restore_types(proto, saved)
    return RoundingProbe(proto, options, reopen=bool(model_dir))


class RoundingProbe:
    """``probe(mask, feeds)``: the outputs with the nodes ``probed[mask]`` rounded (see
    :func:`rounding_probe`). :meth:`release` frees the session (its weights) until the next
    call — for a light model, whose session is re-created from the small proto and reads the
    weights from disk again; a complete model's session is kept (``reopen`` False)."""

    def __init__(self, proto: onnx.ModelProto, options: ort.SessionOptions, reopen: bool):
        self._options = options
        self._proto = proto if reopen else None
        self._session: ort.InferenceSession | None = make_session(proto, options=options)
        session = self._session
        self._specs = {i.name: _np_type(i.type) for i in session.get_inputs() if i.name != _SELECT}
        self._names = [o.name for o in session.get_outputs()]

    def release(self) -> None:
        if self._proto is not None:
            self._session = None

    def __call__(self, mask: np.ndarray, feeds: Feeds) -> dict[str, np.ndarray]:
        if self._session is None:
            assert self._proto is not None
            self._session = make_session(self._proto, options=self._options)
        fd = prepare_feeds(feeds, self._specs)
        fd[_SELECT] = np.asarray(mask, dtype=bool)
        return dict(zip(self._names, self._session.run(None, fd), strict=True))
