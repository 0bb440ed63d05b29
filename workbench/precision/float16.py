"""float16 / bfloat16 conversion that keeps the model type-consistent and runnable.

The pass works on an ``onnx_ir`` copy in four linear steps:

1. **name** every node exactly as :func:`workbench.model.ensure_node_names` does (block lists
   and reports use these names) and find element types (schema type constraints first; ONNX
   shape inference, on a copy without tensor data, only for what they leave open);
2. **decide** per node, from the ONNX schema and ONNX Runtime's kernel registry
   (:mod:`workbench.runtime.kernels`), which of its float32 type constraints go to the low
   precision. Fixed ``tensor(float)`` positions (Resize ``scales``, NonMaxSuppression boxes …),
   constraints no kernel registers (Resize ``roi``), attribute-typed outputs, unknown custom
   ops, blocked nodes, control-flow boundaries and inputs holding constants beyond the target
   range stay float32, each with a reason;
3. **store** every float32 value once: outputs of converted nodes in low precision, constants
   (initializers, ``Constant``, ``ConstantOfShape``) and ``Cast(to=FLOAT)`` outputs in low
   precision only when no consumer needs float32;
4. **cast** where a consumer needs another type than the value is stored in — one ``Cast`` per
   (graph, value, type), placed right after the producer (or at the top of the consuming
   graph for inputs, initializers and outer-scope values).

float16 nodes that ONNX Runtime's CPU provider has no float16 kernel for are still stored in
float16 (they compute in float16 where a provider has the kernel; on CPU ORT runs them in float32
through its own inserted casts) and are listed in ``Float16Result.runs_in_float32``. bfloat16 has no such fallback in
ORT, so a node goes to bfloat16 only where a kernel exists; elsewhere it computes in float32 while
its weights are stored in bfloat16 and cast at use.

Speed (``benchmarks/bench_float16.py``): linear in the number of nodes, so ≥ 20× faster than
onnxconverter-common once ops are blocked (it is quadratic there). On a plain 10,000-node chain
it is ~3× slower: the onnx-ir round trip (``from_proto`` + ``to_proto``) alone costs ~1.8× the
reference's whole conversion, and the cyclic GC passing over the ~30 IR objects per node
another ~1.6× (the pass no longer pauses the GC: that is process-wide state). Matching the
reference there would take a proto-level path that plans from name → producer/consumer maps
and edits a copied GraphProto in place, creating no per-node Python objects.
"""

from __future__ import annotations

import contextlib
import functools
import html
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
import onnx_ir as ir

from ..errors import InputError, UnsupportedError
from ..model import (
    ensure_node_names,
    iter_graphs,
    load_light,
    read_external_data,
)
from ..precisions import (
    ALIASES,
    DTYPE_NAMES,
    LOW_FLOATS,
    NUMPY_TYPES,
    ONNX_TYPES,
    canonical,
    limits,
)
from ..progress import task
from ..results import Result, html_table
from ..runtime import kernels
from ..tensor_types import graph_value_types, schema_type_constraints
from .opset import default_opset, upgrade_opset

F32 = ir.DataType.FLOAT
#: progress bars only for models at least this big (small ones finish instantly)
#: Cast to bfloat16 exists from this opset on (older models are upgraded first)
BFLOAT16_OPSET = 13
_PROGRESS_MIN_NODES = 2000
_PROGRESS_MIN_BYTES = 256 << 20
_STEP = 256
#: constants up to this size are read once and kept for the conversion step
_CACHE_BYTES = 1 << 16
#: ops whose float32 output type comes from an attribute this pass knows how to rewrite
_FREE_OUTPUT_OPS = ("Cast", "Constant", "ConstantOfShape")

_CONSTANT_TYPES = {
    "value_float": ir.DataType.FLOAT,
    "value_floats": ir.DataType.FLOAT,
    "value_int": ir.DataType.INT64,
    "value_ints": ir.DataType.INT64,
    "value_string": ir.DataType.STRING,
    "value_strings": ir.DataType.STRING,
}


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True)
class Float16Result(Result):
    """What :func:`convert_float16` did (``report=True``).

    ``converted``: nodes whose float tensors are now in ``dtype`` (they compute in ``dtype`` on a
    device with such kernels). ``kept_float``: node → why it stays float32 (block list, constant
    out of range, no kernel, control flow, schema). ``runs_in_float32``: converted nodes that
    ``provider`` has no ``dtype`` kernel for, so ONNX Runtime computes them in float32 there.
    ``flushed_to_zero``: constant → how many non-zero values became 0.
    ``constant_errors``: constant kept float32 because its ``dtype`` form would be too far off →
    its largest relative rounding error (see ``max_constant_error`` of :func:`convert_float16`).
    """

    model: onnx.ModelProto
    dtype: str
    converted: tuple[str, ...]
    kept_float: dict[str, str]
    casts_inserted: int
    runs_in_float32: dict[str, str] = field(default_factory=dict)
    flushed_to_zero: dict[str, int] = field(default_factory=dict)
    constant_errors: dict[str, float] = field(default_factory=dict)
    weights_converted: int = 0
    provider: str = kernels.CPU
    notes: tuple[str, ...] = ()

    _MAX_ROWS: ClassVar[int] = 200

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per float node: stored precision, what it computes in on ``provider``, why."""
        rows: list[dict[str, Any]] = []
        for name in self.converted:
            why = self.runs_in_float32.get(name)
            rows.append(
                {
                    "node": name,
                    "stored": self.dtype,
                    "computes": "float32" if why else self.dtype,
                    "reason": why or "",
                }
            )
        for name, reason in self.kept_float.items():
            rows.append(
                {"node": name, "stored": "float32", "computes": "float32", "reason": reason}
            )
        return rows

    def _repr_html_(self) -> str:
        rows = self.summary_rows()
        title = (
            f"{self.dtype}: {len(self.converted)} nodes converted, {len(self.kept_float)} kept "
            f"float32, {self.casts_inserted} casts, {self.weights_converted} weights converted"
        )
        if len(rows) > self._MAX_ROWS:
            extra = len(rows) - self._MAX_ROWS
            rows = rows[: self._MAX_ROWS] + [{"node": f"… {extra} more rows (see .to_dict())"}]
        notes = "".join(f"<p>{html.escape(n)}</p>" for n in self.notes)
        return html_table(rows, ["node", "stored", "computes", "reason"], title=title) + notes

    def __str__(self) -> str:
        lines = [
            f"{self.dtype}: {len(self.converted)} nodes converted ({len(self.runs_in_float32)} "
            f"compute in float32 on {self.provider}), {len(self.kept_float)} kept float32, "
            f"{self.casts_inserted} casts inserted, {self.weights_converted} weights converted"
        ]
        lines += [f"  kept {n}: {r}" for n, r in list(self.kept_float.items())[:20]]
        if len(self.kept_float) > 20:
            lines.append(f"  … {len(self.kept_float) - 20} more kept float32")
        lines += [f"  flushed to zero: {n} ({c} values)" for n, c in self.flushed_to_zero.items()]
        lines += [
            f"  kept float32 (rounding error {e:.3g}): {n}" for n, e in self.constant_errors.items()
        ]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    __repr__ = __str__


# ----------------------------------------------------------------------------- loading & naming


def _has_map(t: onnx.TypeProto) -> bool:
    if t.HasField("map_type"):
        return True
    if t.HasField("sequence_type"):
        return _has_map(t.sequence_type.elem_type)
    if t.HasField("optional_type"):
        return _has_map(t.optional_type.elem_type)
    return False


def ir_from_proto(proto: onnx.ModelProto) -> tuple[ir.Model, dict[str, onnx.TypeProto]]:
    """``ir.from_proto``, also for models with map-typed values (``ai.onnx.ml`` ZipMap
    outputs), which onnx-ir cannot read yet: their types are cleared on a copy and returned by
    value name, for :func:`restore_types` to put back after ``ir.to_proto``."""
    g = proto.graph
    saved = {vi.name: vi.type for vi in (*g.input, *g.output, *g.value_info) if _has_map(vi.type)}
    if not saved:
        return ir.from_proto(proto), {}
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)  # only models with map types (small scikit-learn ones) pay this
    kept: dict[str, onnx.TypeProto] = {}
    for vi in (*copy.graph.input, *copy.graph.output, *copy.graph.value_info):
        if vi.name in saved:
            kept[vi.name] = onnx.TypeProto()
            kept[vi.name].CopyFrom(vi.type)
            vi.ClearField("type")
    return ir.from_proto(copy), kept


def restore_types(proto: onnx.ModelProto, saved: dict[str, onnx.TypeProto]) -> None:
    """Put back the value types :func:`ir_from_proto` cleared (``proto`` is a new model)."""
    g = proto.graph
    for vi in (*g.input, *g.output, *g.value_info):
        if vi.name in saved:
            vi.type.CopyFrom(saved[vi.name])


def _load_ir(
    model: Any, min_opset: int = 0
) -> tuple[onnx.ModelProto, ir.Model, dict[str, onnx.TypeProto], tuple[str, ...]]:
    """(proto, ir.Model, cleared map types, notes) from a path (external data memory-mapped,
    never read twice) or a proto; below ``min_opset`` the model is upgraded first (noted).

    A caller's ModelProto is only read: the IR wraps its tensors and every change goes to new
    objects.
    """
    if isinstance(model, onnx.ModelProto):
        proto, notes = _at_least(model, min_opset)
        return (proto, *ir_from_proto(proto), notes)
    if not isinstance(model, (str, os.PathLike)):
        raise InputError(
            f"convert_float16 expects a path or onnx.ModelProto, got {type(model).__name__}"
        )
    path = Path(model)
    proto, _ = load_light(path)  # references validated, weights memory-mapped below
    proto, notes = _at_least(proto, min_opset)
    m, saved = ir_from_proto(proto)
    ir.external_data.set_base_dir(m.graph, path.parent)
    return proto, m, saved, notes


def _at_least(proto: onnx.ModelProto, opset: int) -> tuple[onnx.ModelProto, tuple[str, ...]]:
    """``proto`` upgraded to ``opset`` when it imports an older default opset (else as is)."""
    if not 0 < default_opset(proto) < opset:
        return proto, ()
    up, note = upgrade_opset(proto, opset, "Cast to bfloat16 needs it")
    return (up, (note,)) if up is not None else (proto, ())


def _value_types(
    proto: onnx.ModelProto, m: ir.Model, graphs: list[ir.Graph]
) -> dict[ir.Value, ir.DataType]:
    """Element type of every tensor value: declared in the IR, else derived, else inferred.

    Schema type constraints give most types in one cheap pass; ONNX shape inference (on a
    tensor-free copy) runs only when some node output is still unknown. Types are kept beside
    the IR instead of written into it, so the output gets no value_info the input did not have.
    Not onnx-ir's ShapeInferencePass: it writes every inferred type and shape into the model
    (new value_info in the output) and always runs ONNX inference, which the schema pass
    usually makes unnecessary.
    """
    found: dict[ir.Value, ir.DataType] = {}
    opsets = dict(m.opset_imports)
    for graph in graphs:
        for v in _values(graph):
            if isinstance(v.type, ir.TensorType):
                found[v] = v.type.dtype
        _propagate_unknown(graph, found, opsets)
    if all(v in found for g in graphs for node in g for v in node.outputs):
        return found
    for types, graph in zip(graph_value_types(proto), graphs, strict=True):
        for v in _values(graph):
            if v not in found and v.type is None and v.name in types:
                found[v] = ir.DataType(types[v.name])
        _propagate_unknown(graph, found, opsets)
    return found


def _propagate_unknown(
    graph: ir.Graph, found: dict[ir.Value, ir.DataType], opsets: dict[str, int]
) -> None:
    """Types ONNX inference left out (it stops after an op it cannot infer, e.g. a custom op).

    Fixed schema types (``tensor(float)``) and constraints bound by a typed input are enough.
    """
    for node in graph:
        if all(v in found for v in node.outputs):
            continue
        domain = "" if node.domain == "ai.onnx" else node.domain
        if node.op_type == "Constant" and not domain:
            attr = next(iter(node.attributes.values()), None)
            if attr is not None and attr.name in _CONSTANT_TYPES:
                found[node.outputs[0]] = _CONSTANT_TYPES[attr.name]
            elif attr is not None and attr.type == ir.AttributeType.TENSOR:
                found[node.outputs[0]] = attr.value.dtype
            continue
        rules = _output_rules(
            node.op_type, domain, opsets.get(domain, 0), len(node.inputs), len(node.outputs)
        )
        for out, (fixed, sources) in zip(node.outputs, rules, strict=True):
            if out in found:
                continue
            if fixed is not None:
                found[out] = fixed
                continue
            for i in sources:
                v = node.inputs[i]
                if v is not None and v in found:
                    found[out] = found[v]
                    break


@functools.cache
def _output_rules(
    op: str, domain: str, opset: int, n_in: int, n_out: int
) -> tuple[tuple[ir.DataType | None, tuple[int, ...]], ...]:
    """Per output: (fixed schema type, or input positions sharing its type constraint)."""
    io = kernels.io_constraints(op, domain, opset)
    if io is None:
        return ((None, ()),) * n_out
    ins, outs = io
    rules = []
    for j in range(n_out):
        param = _param(outs, j)
        fixed = None
        if param is not None and param.startswith("tensor("):
            with contextlib.suppress(ValueError):
                fixed = ir.DataType(onnx.TensorProto.DataType.Value(param[7:-1].upper()))
        sources = () if param is None else tuple(i for i in range(n_in) if _param(ins, i) == param)
        rules.append((fixed, sources))
    return tuple(rules)


def _ir_graphs(graph: ir.Graph) -> Iterator[ir.Graph]:
    """``graph`` and its subgraphs in the same order as :func:`workbench.model.iter_graphs`."""
    yield graph
    for node in graph:
        for attr in node.attributes.values():
            if attr.type == ir.AttributeType.GRAPH:
                yield from _ir_graphs(attr.value)
            elif attr.type == ir.AttributeType.GRAPHS:
                for g in attr.value:
                    yield from _ir_graphs(g)


def _skeleton(graph: ir.Graph, out: onnx.GraphProto) -> None:
    """Fill ``out`` with nodes carrying only names, op types and subgraphs (no tensors)."""
    for node in graph:
        p = out.node.add()
        p.name = node.name or ""
        p.op_type = node.op_type
        for attr in node.attributes.values():
            if attr.type == ir.AttributeType.GRAPH:
                a = p.attribute.add()
                a.name, a.type = attr.name, onnx.AttributeProto.GRAPH
                _skeleton(attr.value, a.g)
            elif attr.type == ir.AttributeType.GRAPHS:
                a = p.attribute.add()
                a.name, a.type = attr.name, onnx.AttributeProto.GRAPHS
                for g in attr.value:
                    _skeleton(g, a.graphs.add())


def _name_nodes(m: ir.Model, graphs: list[ir.Graph]) -> list[ir.Node]:
    """Give every node its :func:`ensure_node_names` name; return all nodes in that order.

    ensure_node_names runs on a tensor-free skeleton so a multi-GB model is never copied.
    Not onnx-ir's NameFixPass: block lists, reports and mixed precision name nodes the way
    :func:`ensure_node_names` does (the public contract), and NameFixPass names differently.
    """
    nodes = [n for g in graphs for n in g]
    names = {n.name for n in nodes}
    if len(names) == len(nodes) and "" not in names and None not in names:
        return nodes  # ensure_node_names would change nothing
    skeleton = onnx.ModelProto()
    _skeleton(m.graph, skeleton.graph)
    named = ensure_node_names(skeleton)
    new_names = [n.name for g in iter_graphs(named.graph) for n in g.node]
    for node, name in zip(nodes, new_names, strict=True):
        node.name = name
    return nodes


def _param(params: Sequence[str], i: int) -> str | None:
    if not params:
        return None
    return params[i] if i < len(params) else params[-1]


# ----------------------------------------------------------------------------- planning


@dataclass
class _Decision:
    low_in: frozenset[int] = frozenset()  # input positions that take the low dtype
    low_out: frozenset[int] = frozenset()  # output positions produced in the low dtype
    reason: str | None = None  # why the node stays float32 (None: converted)
    storage_ok: bool = False  # computes float32, but its constant inputs may be stored low
    note: str | None = None  # converted, but the provider computes it in float32


@dataclass
class _Options:
    dtype: str
    low: ir.DataType
    keep_inputs: frozenset[str]
    keep_outputs: frozenset[str]
    block_ops: frozenset[str]
    block_nodes: frozenset[str]
    provider: str
    require_kernel: bool
    max_constant_error: float


class _Plan:
    """All decisions for one model; both :func:`convert_float16` and :func:`convertible_nodes`."""

    def __init__(
        self,
        m: ir.Model,
        graphs: list[ir.Graph],
        opts: _Options,
        nodes: list[ir.Node],
        types: dict[ir.Value, ir.DataType],
        progress: bool,
    ):
        self.m = m
        self.types = types
        #: element type of a tensor value (None: unknown, not a tensor, or a missing input)
        self.t = types.get
        self.o = opts
        self.nodes = nodes
        self.progress = progress
        self.low_str = kernels.type_string(int(opts.low))
        self.lim = limits(opts.dtype)
        self.limit = self.lim.max
        self.opsets = dict(m.opset_imports)
        if "ai.onnx" in self.opsets and "" not in self.opsets:
            self.opsets[""] = self.opsets["ai.onnx"]
        self.graphs = graphs
        self.constants: dict[ir.Value, str] = {}  # float32 constant value → what holds it
        self.wide: dict[ir.Value, float] = {}  # constant → largest finite |x| beyond the range
        #: constant → relative rounding error beyond ``max_constant_error`` (e.g. subnormals)
        self.lossy: dict[ir.Value, float] = {}
        self.small: dict[ir.Value, np.ndarray] = {}  # small constants' data, read once
        self.decisions: dict[ir.Node, _Decision] = {}
        self._static_cache: dict[tuple, tuple[_Decision, tuple[int, ...]] | None] = {}
        self._cast_ok: dict[int, bool] = {}
        self.free: dict[ir.Node, str | None] = {}  # Cast/Constant/ConstantOfShape → reason kept
        #: values stored in the low dtype (a dict: insertion order keeps runs deterministic)
        self.stored_low: dict[ir.Value, None] = {}
        self.notes: list[str] = []
        self.saved_types: dict[str, onnx.TypeProto] = {}  # see ir_from_proto
        self._scan_constants()
        self._decide_all()
        self._choose_storage()

    # ---- helpers

    def opset(self, domain: str) -> int:
        return self.opsets.get("" if domain == "ai.onnx" else domain, 0)

    def _task(self, desc: str, total: int):
        return task(desc, total, disable=not self.progress)

    # ---- constants

    def _scan_constants(self) -> None:
        """Find float32 constants and those holding finite values beyond the target range."""
        for g in self.graphs:
            inputs = set(g.inputs)
            for v in g.initializers.values():
                if v.const_value is not None and v.const_value.dtype == F32 and v not in inputs:
                    self.constants[v] = f"initializer {v.name!r}"
        for node in self.nodes:
            if node.op_type in ("Constant", "ConstantOfShape") and node.domain in ("", "ai.onnx"):
                out = node.outputs[0]
                if self.t(out) == F32 or (self.t(out) is None and _const_attr(node)):
                    self.constants[out] = f"{node.op_type} {node.name!r}"
        with self._task(f"{self.o.dtype}: checking constants", len(self.constants)) as t:
            for i, v in enumerate(self.constants):
                arr = _constant_array(v)
                if arr is not None and arr.nbytes <= _CACHE_BYTES:
                    self.small[v] = arr  # read once: converted from here if it goes low
                if arr is not None and arr.size:
                    self._check_constant(v, arr)
                arr = None  # drop the view into the memory map before unmapping it
                _release(v)
                if i % _STEP == _STEP - 1:
                    t.update(_STEP)

    def _check_constant(self, v: ir.Value, arr: np.ndarray) -> None:
        """Record ``v`` in ``wide`` (finite values beyond the range) or ``lossy`` (rounding error
        above the bound) — either keeps its consumers in float32."""
        a = np.abs(arr)
        peak = float(np.max(a))
        if not np.isfinite(peak):
            a = a[np.isfinite(a)]
            peak = float(a.max()) if a.size else 0.0
        if peak > self.limit:
            self.wide[v] = peak
            return
        error = constant_error(a, self.o.dtype, self.o.max_constant_error, peak)
        if error > self.o.max_constant_error:
            self.lossy[v] = error

    def _constant_reason(self, v: ir.Value) -> str | None:
        """Why constant ``v`` may not be stored in the low dtype (None: it may)."""
        if v in self.wide:
            return (
                f"holds values up to {self.wide[v]:.6g}, beyond the {self.o.dtype} range "
                f"(±{self.limit:.6g}); kept float32 instead of clipping"
            )
        if v in self.lossy:
            return (
                f"loses up to {self.lossy[v]:.3g} of its value in {self.o.dtype} (subnormal or "
                f"rounded beyond max_constant_error={self.o.max_constant_error:.3g}); kept float32"
            )
        return None

    # ---- node decisions

    def _decide_all(self) -> None:
        with self._task(f"{self.o.dtype}: planning", len(self.nodes)) as t:
            for i, node in enumerate(self.nodes):
                if self._is_free(node):
                    self.free[node] = None
                else:
                    d = self._decide(node)
                    if d is not None:
                        self.decisions[node] = d
                if i % _STEP == _STEP - 1:
                    t.update(_STEP)

    def _is_free(self, node: ir.Node) -> bool:
        """Nodes whose float32 output type is an attribute we rewrite (Cast to, Constant value)."""
        if node.op_type not in _FREE_OUTPUT_OPS or node.domain not in ("", "ai.onnx"):
            return False
        if node.op_type == "Cast":
            if self.t(node.outputs[0]) != F32:
                return False
        elif node.outputs[0] not in self.constants:
            return False
        # the rewritten attribute must be allowed by the schema (ConstantOfShape-9: no bfloat16)
        allowed = schema_type_constraints(node.op_type, node.domain, self.opset(node.domain))
        _, outs = kernels.io_constraints(node.op_type, node.domain, self.opset(node.domain)) or (
            [],
            [],
        )
        return self.low_str in allowed.get(_param(outs, 0) or "", ())

    def _storage_note(self) -> str:
        if not self.o.require_kernel:
            return ""
        return f"; computes in float32 (its constant inputs are stored as {self.o.dtype})"

    def _decide(self, node: ir.Node) -> _Decision | None:
        t = self.t
        in_sig = tuple(None if v is None else t(v, 0) for v in node.inputs)
        out_sig = tuple(t(v, 0) if v.name else None for v in node.outputs)
        if F32 not in in_sig and F32 not in out_sig:
            return None
        op, domain = node.op_type, node.domain
        label = f"{domain}.{op}" if domain not in ("", "ai.onnx") else op
        if node.attributes and any(
            a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
            for a in node.attributes.values()
        ):
            return _Decision(
                reason=f"control flow ({label}): its inputs and outputs stay float32 so every "
                "branch/iteration agrees; the nodes inside are converted"
            )
        if node.name in self.o.block_nodes:
            return _Decision(reason="listed in block_nodes")
        if op in self.o.block_ops:
            return _Decision(reason=f"op type {op} is in block_ops")
        opset = self.opset(domain)
        key = (op, domain, opset, in_sig, out_sig)
        if key not in self._static_cache:
            self._static_cache[key] = self._static(op, domain, opset, label, in_sig, out_sig)
        decision, low_positions = self._static_cache[key]
        if (self.wide or self.lossy) and (decision.low_in or decision.low_out):
            for i in low_positions:
                why = self._constant_reason(node.inputs[i])
                if why is not None:
                    return _Decision(reason=f"input {node.inputs[i].name!r} {why}")
        return decision

    def _static(
        self,
        op: str,
        domain: str,
        opset: int,
        label: str,
        in_sig: tuple[int | None, ...],
        out_sig: tuple[int | None, ...],
    ) -> tuple[_Decision, tuple[int, ...]]:
        """Decision for an op with these element types (same for every such node; cached).

        Also returns the float32 input positions that could go low (checked for wide constants).
        """
        io = kernels.io_constraints(op, domain, opset)
        if io is None:
            return _Decision(
                reason=f"no ONNX schema for {label} (opset {opset}); left unchanged"
            ), ()
        allowed = schema_type_constraints(op, domain, opset)
        ins, outs = io
        in_c = {i: _param(ins, i) for i, x in enumerate(in_sig) if x == F32}
        out_c = {i: _param(outs, i) for i, x in enumerate(out_sig) if x == F32}
        if any(x == 0 and _param(ins, i) in allowed for i, x in enumerate(in_sig)):
            return _Decision(reason=f"the type of an input of {label} is unknown"), ()
        if 0 in out_sig:  # e.g. a sequence: converting the inputs would change it unseen
            return _Decision(reason=f"the type of an output of {label} is unknown"), ()
        in_params = set(ins)
        cand: set[str] = set()
        for c in (*in_c.values(), *out_c.values()):
            types = allowed.get(c or "")
            if types is None:  # a fixed tensor(float) position
                continue
            if c not in in_params:
                return _Decision(
                    reason=f"the output type of {label} is set by an attribute; kept float32"
                ), ()
            if self.low_str in types:
                cand.add(c)
        if not cand:
            return _Decision(
                reason=f"the ONNX schema of {label} (opset {opset}) takes float32 here, "
                f"not {self.o.dtype}"
            ), ()
        chosen, reason, storage_ok, note = self._registry_choice(
            op, domain, opset, cand, label, (in_sig, ins), (out_sig, outs)
        )
        decision = _Decision(
            low_in=frozenset(i for i, c in in_c.items() if c in chosen),
            low_out=frozenset(i for i, c in out_c.items() if c in chosen),
            reason=reason,
            storage_ok=storage_ok,
            note=note,
        )
        return decision, tuple(i for i, c in in_c.items() if c in cand)

    def _registry_choice(
        self,
        op: str,
        domain: str,
        opset: int,
        cand: set[str],
        label: str,
        ins: tuple[tuple[int | None, ...], Sequence[str]],
        outs: tuple[tuple[int | None, ...], Sequence[str]],
    ) -> tuple[frozenset[str], str | None, bool, str | None]:
        """(constraints going low, reason kept float32, storage_ok, note) from the registry."""
        provider = self.o.provider

        def types(chosen: Iterable[str]) -> tuple[list[int | None], list[int | None]]:
            low = set(chosen)
            return tuple(  # type: ignore[return-value]
                [
                    None
                    if not t
                    else int(self.o.low if t == F32 and _param(params, i) in low else t)
                    for i, t in enumerate(sig)
                ]
                for sig, params in (ins, outs)
            )

        ks = kernels.kernels(op, domain, opset, provider)
        best: frozenset[str] = frozenset()
        for k in ks:
            if not all(
                c not in k.constraints
                or "tensor(float)" in k.constraints[c]
                or self.low_str in k.constraints[c]
                for c in cand
            ):
                continue
            got = frozenset(c for c in cand if self.low_str in k.constraints.get(c, ()))
            if len(got) > len(best):
                best = got
        if best and kernels.kernel_for(op, domain, opset, *types(best), provider=provider)[0]:
            return best, None, False, None
        ok32, why32 = kernels.kernel_for(op, domain, opset, *types(()), provider=provider)
        if not ok32:
            return frozenset(), f"{why32}; left unchanged", False, None
        _, why_low = kernels.kernel_for(op, domain, opset, *types(cand), provider=provider)
        if self.o.require_kernel:
            return frozenset(), f"{why_low}{self._storage_note()}", True, None
        # constraints no registered kernel lists (e.g. Resize roi) are read as float32 by ORT
        listed = frozenset(c for c in cand if not ks or any(c in k.constraints for k in ks))
        if not listed:
            return (
                frozenset(),
                f"{provider} reads every float input of {label} as float32",
                False,
                None,
            )
        return listed, None, False, f"{why_low}; ONNX Runtime computes it in float32 there"

    # ---- storage

    def required(self, node: ir.Node, i: int, v: ir.Value) -> tuple[ir.DataType | None, bool]:
        """(type input ``i`` of ``node`` needs — None: any —, may it be a low-stored constant)."""
        if node in self.free and node.op_type == "Cast":
            opset = self.opset(node.domain)
            if opset not in self._cast_ok:
                ok, _ = kernels.kernel_for("Cast", "", opset, [int(self.o.low)], None)
                self._cast_ok[opset] = ok
            return (None if self._cast_ok[opset] else F32), False
        d = self.decisions.get(node)
        if d is not None and i in d.low_in:
            return self.o.low, False
        return F32, bool(d is not None and d.storage_ok and v in self.constants)

    def output_required(self, graph: ir.Graph, v: ir.Value) -> ir.DataType:
        if graph is self.m.graph and v.name not in self.o.keep_outputs:
            return self.o.low
        return F32

    def _choose_storage(self) -> None:
        for node, d in self.decisions.items():
            for j in d.low_out:
                self.stored_low[node.outputs[j]] = None
        for v in self.m.graph.inputs:
            # an input that is also an initializer (IR < 4) keeps its stored data's type
            if self.t(v) == F32 and v.name not in self.o.keep_inputs and v.const_value is None:
                self.stored_low[v] = None
        outputs = {v: g for g in self.graphs for v in g.outputs}
        sources = [v for v in self.constants if v.producer() is None or v.producer() in self.free]
        sources += [n.outputs[0] for n in self.free if n.op_type == "Cast"]
        for v in sources:
            node = v.producer()
            if node is not None and node.name in self.o.block_nodes:
                self.free[node] = "listed in block_nodes"
                continue
            if node is not None and node.op_type in self.o.block_ops:
                self.free[node] = f"op type {node.op_type} is in block_ops"
                continue
            want_low, need32, who = False, False, ""
            for use in v.uses():
                req, storage_ok = self.required(use.node, use.idx, v)
                if req == self.o.low or (storage_ok and req == F32):
                    want_low = True
                elif req == F32:
                    need32, who = True, who or use.node.name
            if v in outputs:
                if self.output_required(outputs[v], v) == F32:
                    need32, who = True, who or f"graph output {v.name!r}"
                else:
                    want_low = True
            reason = self._constant_reason(v)
            if reason is None and need32:
                reason = f"{who} needs float32"
            elif reason is None and not want_low:
                reason = "no consumer computes in low precision"
            if reason is None:
                self.stored_low[v] = None
            if node is not None:
                self.free[node] = reason

    # ---- report

    def node_status(self) -> dict[str, str | None]:
        """Float node name → None (converted) or why it stays float32, in graph order."""
        status: dict[str, str | None] = {}
        for node in self.nodes:
            if node in self.free:
                status[node.name] = self.free[node]
            elif node in self.decisions:
                d = self.decisions[node]
                status[node.name] = d.reason
        return status


def _const_attr(node: ir.Node) -> ir.Attr | None:
    for key in ("value", "value_float", "value_floats"):
        if key in node.attributes:
            return node.attributes[key]
    return None


def _constant_array(v: ir.Value) -> np.ndarray | None:
    """float32 data of a constant value (initializer, Constant, ConstantOfShape)."""
    if v.const_value is not None:
        return v.const_value.numpy()
    node = v.producer()
    if node is None:
        return None
    attr = _const_attr(node)
    if attr is None:  # ConstantOfShape without value: float32 zeros
        return np.zeros(1, np.float32) if node.op_type == "ConstantOfShape" else None
    if attr.type == ir.AttributeType.TENSOR:
        arr = attr.value.numpy()
        return arr if arr.dtype == np.float32 else None
    return np.asarray(attr.value, np.float32)


def constant_error(magnitudes: np.ndarray, dtype: str, bound: float, peak: float) -> float:
    """Largest relative error ``|low(x) − x| / |x|`` of a constant stored in ``dtype``.

    ``magnitudes``: |x| of the constant's finite values; ``peak``: their maximum. Values below
    ``bound · peak`` are left out: rounding them away moves the tensor by less than ``bound``
    of its scale (they still count in ``flushed_to_zero``). Normal values round within half
    the type's epsilon, so when ``bound`` is at least that only the subnormal range is checked
    (linear time, no copy of the whole tensor in the low type).
    """
    lim = limits(dtype)
    floor = bound * peak
    if bound >= lim.eps / 2:
        picked = magnitudes[(magnitudes < lim.tiny) & (magnitudes > 0) & (magnitudes >= floor)]
    else:
        picked = magnitudes[(magnitudes > 0) & (magnitudes >= floor) & (magnitudes <= lim.max)]
    if not picked.size:
        return 0.0
    picked = picked.astype(np.float32)
    back = picked.astype(NUMPY_TYPES[canonical(dtype)]).astype(np.float32)
    return float(np.max(np.abs(back - picked) / picked))


def _release(v: ir.Value) -> None:
    """Unmap external data after reading so resident memory stays near one tensor."""
    release = getattr(v.const_value, "release", None)
    if release is not None:
        with contextlib.suppress(BufferError):  # an array still uses the map: freed with it
            release()


# ----------------------------------------------------------------------------- rewriting


class _Rewriter:
    def __init__(self, plan: _Plan):
        self.p = plan
        self.low = plan.o.low
        self.casts = 0
        self.flushed: dict[str, int] = {}
        self.weights = 0
        self.taken = {v.name for g in plan.graphs for v in _values(g) if v.name}
        self.taken |= {n.name for n in plan.nodes}
        self.first = {g: (next(iter(g), None)) for g in plan.graphs}
        self.cache: dict[tuple[int, ir.Value, ir.DataType], ir.Value] = {}
        self.f32 = {v for v, t in plan.types.items() if t == F32}

    def unique(self, base: str) -> str:
        name, k = base, 0
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def run(self) -> None:
        p = self.p
        nodes = list(p.nodes)
        with p._task(f"{p.o.dtype}: converting values", len(p.stored_low)) as t:
            for i, v in enumerate(p.stored_low):
                self.store_low(v)
                if i % _STEP == _STEP - 1:
                    t.update(_STEP)
        with p._task(f"{p.o.dtype}: inserting casts", len(nodes)) as t:
            for k, node in enumerate(nodes):
                for i, v in enumerate(node.inputs):
                    if v is None or v not in self.f32:
                        continue
                    req, _ = p.required(node, i, v)
                    have = self.low if v in p.stored_low else F32
                    if req is not None and req != have:
                        node.replace_input_with(i, self.cast(node.graph, v, req))
                if k % _STEP == _STEP - 1:
                    t.update(_STEP)
        for g in p.graphs:
            self.fix_outputs(g)

    def store_low(self, v: ir.Value) -> None:
        node = v.producer()
        if v.type is not None:  # declared in the input (value_info, I/O): keep it accurate
            v.dtype = self.low
        if v in self.p.constants:
            arr = self.p.small.pop(v, None)
            if arr is None:
                arr = _constant_array(v)
            low = self.to_low(arr, v.name or (node.name if node else "?"))
            del arr
            shape = v.const_value.shape if v.const_value is not None else None
            tensor = _SerializeOnce(low, dtype=self.low, shape=shape, name=v.name)
            self.weights += 1
            if v.const_value is not None:  # an initializer (or a Constant the IR folded)
                _release(v)
                v.const_value = tensor
            if node is not None:  # Constant / ConstantOfShape: the attribute holds the data
                for key in ("value", "value_float", "value_floats"):
                    node.attributes.pop(key, None)
                node.attributes["value"] = ir.AttrTensor("value", tensor)
        elif node is not None and node.op_type == "Cast":
            node.attributes["to"] = ir.AttrInt64("to", int(self.low))

    def to_low(self, arr: np.ndarray, name: str) -> np.ndarray:
        low = arr.astype(self.low.numpy())
        zeros = int(np.count_nonzero((low == 0) & (arr != 0)))
        if zeros:
            self.flushed[name] = zeros
        return low

    def cast(self, graph: ir.Graph, v: ir.Value, to: ir.DataType) -> ir.Value:
        key = (id(graph), v, to)
        if key in self.cache:
            return self.cache[key]
        out = self._new_cast(graph, v, to, self.unique(f"{v.name}_{_short(to)}"))
        self.cache[key] = out
        return out

    def _new_cast(self, graph: ir.Graph, v: ir.Value, to: ir.DataType, name: str) -> ir.Value:
        node = ir.Node(
            "",
            "Cast",
            [v],
            [ir.AttrInt64("to", int(to))],
            num_outputs=1,
            name=self.unique(f"Cast_{v.name}_{_short(to)}"),
        )
        out = node.outputs[0]
        out.name = name
        out.dtype = to
        if v.shape is not None:
            out.shape = ir.Shape(v.shape)
        producer = v.producer()
        if producer is not None and producer.graph is graph:
            graph.insert_after(producer, node)
        elif self.first[graph] is not None:
            graph.insert_before(self.first[graph], node)
        else:
            graph.append(node)
        self.casts += 1
        return out

    def fix_outputs(self, graph: ir.Graph) -> None:
        p = self.p
        for i, v in enumerate(list(graph.outputs)):
            if v not in self.f32:
                continue
            req = p.output_required(graph, v)
            have = self.low if v in p.stored_low else F32
            if req == have:
                continue
            if graph is not p.m.graph:
                graph.outputs[i] = self.cast(graph, v, req)
            elif v.producer() is not None:
                # the model's output keeps its name: the producer's value is renamed instead
                original = v.name
                v.name = self.unique(f"{original}_{_short(have)}")
                self.taken.discard(original)
                graph.outputs[i] = self._new_cast(graph, v, req, original)
            else:
                p.notes.append(
                    f"graph output {v.name!r} is also a graph input/initializer and stays "
                    f"{_short(have)}"
                )


class _SerializeOnce(ir.Tensor):
    """A converted weight whose array is dropped as soon as it is serialized.

    ``ir.to_proto`` would otherwise hold every converted array and the new proto at once.
    """

    def tobytes(self) -> bytes:
        data = super().tobytes()
        self._raw = np.empty(0, self._raw.dtype)  # the proto owns the bytes from here on
        return data


def _to_proto(plan: _Plan) -> onnx.ModelProto:
    """Serialize, then drop the IR's converted arrays at once (not at the next GC cycle)."""
    for g in plan.graphs:
        io = {*g.inputs, *g.outputs}
        for v in g.initializers.values():
            if v not in io:  # the tensor carries its type: no value_info needed
                v.type = None
                v.shape = None
    proto = ir.to_proto(plan.m)
    restore_types(proto, plan.saved_types)
    for g in plan.graphs:
        for v in g.initializers.values():
            v.const_value = None
    plan.small.clear()
    return proto


def _values(graph: ir.Graph) -> Iterator[ir.Value]:
    yield from graph.inputs
    yield from graph.initializers.values()
    for node in graph:
        yield from node.outputs


def _short(t: ir.DataType) -> str:
    return {ir.DataType.FLOAT: "fp32", ir.DataType.FLOAT16: "fp16"}.get(t, "bf16")


# ----------------------------------------------------------------------------- public API


def dtype_name(dtype: str) -> str:
    """``'fp16'`` → ``'float16'``, ``'bf16'`` → ``'bfloat16'`` (names from
    :mod:`workbench.precisions`); anything else raises InputError naming the choices."""
    return DTYPE_NAMES[canonical(dtype, LOW_FLOATS, what="dtype")]


def default_constant_error(dtype: str) -> float:
    """Default ``max_constant_error``: the type's machine epsilon (2⁻¹⁰ for float16, 2⁻⁷ for
    bfloat16). Normal values round within half of it, so by default exactly the constants with
    subnormal or flushed values that matter at their tensor's scale keep float32."""
    return limits(dtype).eps


def _options(
    m: ir.Model,
    dtype: str,
    keep_io_types: bool | Iterable[str],
    block_ops: Iterable[str],
    block_nodes: Iterable[str],
    provider: str,
    require_kernel: bool | None,
    nodes: list[ir.Node],
    max_constant_error: float | None = None,
) -> _Options:
    name = dtype_name(dtype)
    low = ir.DataType(ONNX_TYPES[canonical(name)])
    bound = default_constant_error(name) if max_constant_error is None else max_constant_error
    if not bound >= 0:
        raise InputError(f"max_constant_error must be >= 0, got {max_constant_error!r}")
    ins = [v.name for v in m.graph.inputs if v.name]
    outs = [v.name for v in m.graph.outputs if v.name]
    if keep_io_types is True:
        keep_in, keep_out = set(ins), set(outs)
    elif keep_io_types is False or keep_io_types is None:
        keep_in, keep_out = set(), set()
    else:
        wanted = {keep_io_types} if isinstance(keep_io_types, str) else set(keep_io_types)
        unknown = sorted(wanted - set(ins) - set(outs))
        if unknown:
            raise InputError(
                f"keep_io_types names {unknown} are not inputs or outputs of the model; "
                f"inputs: {ins}, outputs: {outs}"
            )
        keep_in, keep_out = wanted & set(ins), wanted & set(outs)
    blocked_nodes = {block_nodes} if isinstance(block_nodes, str) else set(block_nodes)
    names = {n.name for n in nodes}
    missing = sorted(blocked_nodes - names)
    if missing:
        example = ", ".join(sorted(names)[:5])
        raise InputError(
            f"block_nodes {missing} are not nodes of the model (names as given by "
            f"workbench.model.ensure_node_names, e.g. {example})"
        )
    if low == ir.DataType.BFLOAT16:
        opset = m.opset_imports.get("", m.opset_imports.get("ai.onnx", 0))
        if 0 < opset < BFLOAT16_OPSET:  # _load_ir upgrades; here only when it could not
            raise UnsupportedError(
                f"bfloat16 needs opset {BFLOAT16_OPSET} or later (Cast to bfloat16); the model "
                f"uses opset {opset} and onnx.version_converter could not upgrade it"
            )
    return _Options(
        dtype=name,
        low=low,
        keep_inputs=frozenset(keep_in),
        keep_outputs=frozenset(keep_out),
        block_ops=frozenset({block_ops} if isinstance(block_ops, str) else block_ops),
        block_nodes=frozenset(blocked_nodes),
        provider=provider,
        require_kernel=(name == "bfloat16") if require_kernel is None else require_kernel,
        max_constant_error=float(bound),
    )


def _plan(
    model: Any,
    dtype: str,
    keep_io_types: bool | Iterable[str],
    block_ops: Iterable[str],
    block_nodes: Iterable[str],
    provider: str,
    require_kernel: bool | None,
    max_constant_error: float | None = None,
) -> _Plan:
    bf16 = ALIASES.get(str(dtype).strip().lower()) == "bf16"
    proto, m, saved, upgrade_notes = _load_ir(model, BFLOAT16_OPSET if bf16 else 0)
    graphs = list(_ir_graphs(m.graph))
    nodes = _name_nodes(m, graphs)
    opts = _options(
        m, dtype, keep_io_types, block_ops, block_nodes, provider, require_kernel, nodes,
        max_constant_error,
    )  # fmt: skip
    types = _value_types(proto, m, graphs)
    del proto
    weight_bytes = sum(
        v.const_value.nbytes for g in graphs for v in g.initializers.values() if v.const_value
    )
    big = len(nodes) >= _PROGRESS_MIN_NODES or weight_bytes >= _PROGRESS_MIN_BYTES
    plan = _Plan(m, graphs, opts, nodes, types, progress=big)
    plan.saved_types = saved
    plan.notes.extend(upgrade_notes)
    return plan


def convertible_nodes(
    model: Any,
    dtype: str = "float16",
    keep_io_types: bool | Iterable[str] = True,
    block_ops: Iterable[str] = (),
    block_nodes: Iterable[str] = (),
    provider: str = kernels.CPU,
    require_kernel: bool | None = None,
    max_constant_error: float | None = None,
) -> dict[str, str | None]:
    """Which nodes :func:`convert_float16` would put in ``dtype``, without converting.

    Returns node name → ``None`` if the node would be converted, else the reason it stays
    float32 — computed by the same planner as :func:`convert_float16` with the same arguments.
    Only nodes touching float32 tensors are listed (integer/bool/string nodes are not).
    Names are those of :func:`workbench.model.ensure_node_names`. Cheap: weights are only
    scanned for their range, nothing is converted.
    """
    plan = _plan(
        model, dtype, keep_io_types, block_ops, block_nodes, provider, require_kernel,
        max_constant_error,
    )  # fmt: skip
    return plan.node_status()


def convert_float16(
    model: Any,
    dtype: str = "float16",
    keep_io_types: bool | Iterable[str] = True,
    block_ops: Iterable[str] = (),
    block_nodes: Iterable[str] = (),
    report: bool = False,
    provider: str = kernels.CPU,
    require_kernel: bool | None = None,
    max_constant_error: float | None = None,
    *,
    keep_references: bool = False,
) -> onnx.ModelProto | Float16Result:
    """Convert a float32 model to float16 or bfloat16; the result passes the checker and runs in ORT.

    ``model``: path (external data is memory-mapped, never loaded twice) or ModelProto (never
    mutated). ``keep_io_types``: True keeps every float32 graph input/output float32 (casts at
    the boundary), False makes them ``dtype``, a list keeps just those names. ``block_ops``: op
    types kept float32. ``block_nodes``: node names kept float32 — names as given by
    :func:`workbench.model.ensure_node_names` (unnamed/duplicate nodes get deterministic names).
    ``provider``: whose kernel registry decides which inputs may be low precision.
    ``require_kernel``: convert a node only where ``provider`` has a ``dtype`` kernel (default:
    True for bfloat16, since ONNX Runtime has no bfloat16 fallback; False for float16, where ORT
    CPU computes kernel-less float16 nodes in float32 itself).

    Constants beyond the ``dtype`` range keep their consumers in float32 (never clipped), and so
    do constants whose ``dtype`` form is more than ``max_constant_error`` off relative to the
    value (default: the type's epsilon, so subnormals such as 1e-6 in float16 stay float32);
    values negligible at their tensor's scale that are flushed to zero are reported. Returns the new ModelProto, or with ``report=True`` a
    :class:`Float16Result` saying which nodes were converted, which stayed float32 and why.
    Weights of a path's external data that stay float32 are read into the result, which then
    stands alone; ``keep_references=True`` leaves them as references into the source's folder
    (for callers that keep working from that folder, e.g. on models over 2 GB).
    """
    plan = _plan(
        model, dtype, keep_io_types, block_ops, block_nodes, provider, require_kernel,
        max_constant_error,
    )  # fmt: skip
    rw = _Rewriter(plan)
    rw.run()
    proto = _to_proto(plan)
    if not keep_references and not isinstance(model, onnx.ModelProto):
        # weights kept float32 still point into the source's data file: read them in, so the
        # result stands on its own (it is saved or run anywhere)
        read_external_data(proto, Path(model).parent)
    return _report(plan, rw, proto) if report else proto


def _report(plan: _Plan, rw: _Rewriter, proto: onnx.ModelProto) -> Float16Result:
    """The :class:`Float16Result` of a finished conversion."""
    status = plan.node_status()
    runs32 = {
        n.name: d.note for n, d in plan.decisions.items() if d.reason is None and d.note is not None
    }
    notes = list(plan.notes)
    if rw.flushed:
        total = sum(rw.flushed.values())
        notes.append(
            f"{total} non-zero constant values are below the smallest {plan.o.dtype} and became "
            f"0 in {len(rw.flushed)} tensors (see flushed_to_zero)"
        )
    unused = sorted(set(plan.o.block_ops) - {n.op_type for n in plan.nodes})
    if unused:
        notes.append(f"block_ops {unused} match no node of the model")
    return Float16Result(
        model=proto,
        dtype=plan.o.dtype,
        converted=tuple(n for n, r in status.items() if r is None),
        kept_float={n: r for n, r in status.items() if r is not None},
        casts_inserted=rw.casts,
        runs_in_float32=runs32,
        flushed_to_zero=dict(rw.flushed),
        constant_errors={_holder(v): e for v, e in plan.lossy.items()},
        weights_converted=rw.weights,
        provider=plan.o.provider,
        notes=tuple(notes),
    )


def _holder(v: ir.Value) -> str:
    """Name of a constant: its value name, else the Constant node producing it."""
    node = v.producer()
    return v.name or (node.name if node is not None else "?")
