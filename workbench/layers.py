"""Why a variant is slow or wrong, layer by layer.

* :func:`layer_profile` — every executed layer with the original ONNX nodes fused into it, the
  precision it ran in, its implementation and its mean time (ONNX Runtime's profiler,
  OpenVINO's runtime model and performance counters; simulated profiles: roofline
  *estimates*).
* :func:`layer_error` — every tensor both models compute, compared on a dataset (cosine,
  SQNR, max |error|), and the first tensor where the variant diverges.
* :func:`compare_layers` — which layers got faster or slower and which changed precision
  between two profiles (two variants, two devices).
* :func:`precision_facts` — one sentence of layer facts for recommendations.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .data import Dataset, as_dataset, random_dataset
from .errors import InputError
from .figures import PALETTE, clip_label, figure_svg
from .hardware.estimate import estimate_nodes
from .hardware.execution import open_runner
from .hardware.partition import node_inputs
from .hardware.registry import profile_of, resolve_device
from .metrics import cosine, sqnr
from .model import complete_model, ensure_node_names, light_model, load_model
from .progress import check_cancelled, task
from .results import Result, html_table
from .runtime import DEFAULT_CONFIG, RunConfig
from .runtime.hints import as_hint
from .runtime.ort import _GLUE_OPS
from .runtime.profiling import LayerRow, precision_ran, profile_runtime
from .tensor_types import tensor_types

ModelLike = onnx.ModelProto | str | os.PathLike[str]

__all__ = [
    "LayerComparison",
    "LayerError",
    "LayerProfile",
    "LayerRow",
    "TensorError",
    "compare_layers",
    "layer_error",
    "layer_profile",
    "precision_facts",
]


def _proto(model: ModelLike) -> onnx.ModelProto:
    return ensure_node_names(model if isinstance(model, onnx.ModelProto) else load_model(model))


# --------------------------------------------------------------------------- layer profile


@dataclass(frozen=True)
class LayerProfile(Result):
    """Per-layer time and precision of one model on one device (``estimated`` for profiles)."""

    model: str
    device: str
    hint: str
    simulated: bool
    estimated: bool
    precision_ran: str
    rows: tuple[LayerRow, ...]
    total_ms: float  # whole-model time the runtime measured in the same runs (or the estimate)
    wall_ms: float  # mean wall time of a profiled run call (nan for estimates)
    runs: int
    ops: dict[str, str]  # original node → op type (coverage, renders)
    notes: tuple[str, ...] = ()
    edges: tuple[tuple[str, str], ...] = ()  # original node → node data flow (renders)

    _summary_exclude = ("rows", "ops", "edges")

    @property
    def layer_ms(self) -> float:
        """Sum of the layer times."""
        return float(sum(r.time_ms for r in self.rows))

    @property
    def coverage(self) -> float:
        """Fraction of the model's compute nodes (not glue) that some row covers."""
        compute = {n for n, op in self.ops.items() if op not in _GLUE_OPS}
        covered = {n for r in self.rows for n in r.nodes}
        return len(compute & covered) / len(compute) if compute else 1.0

    def node_rows(self) -> dict[str, LayerRow]:
        """Original node → the row (layer) it ran in."""
        return {n: r for r in self.rows for n in r.nodes}

    def summary_rows(self) -> list[dict[str, Any]]:
        unit = "ms (estimated)" if self.estimated else "ms"
        return [
            {"layer": r.node or f"({r.layer})", "op": r.op, "fused nodes": len(r.nodes),
             "precision": r.precision, "implementation": r.implementation, unit: r.time_ms}
            for r in self.rows
        ]  # fmt: skip

    def plot(self, top: int = 20) -> Figure:
        """Bars of the slowest layers, coloured by the precision they ran in."""
        return _precision_bars(self, top)

    def _repr_html_(self) -> str:
        what = "estimated" if self.estimated else f"mean of {self.runs} runs"
        title = (
            f"{self.model} on {self.device}{' (simulated)' if self.simulated else ''}: "
            f"{len(self.rows)} layers, {self.layer_ms:.4g} ms in layers, {self.total_ms:.4g} ms "
            f"whole model ({what}); ran {self.precision_ran}"
        )
        return html_table(self.summary_rows(), title=title) + figure_svg(self.plot())


def _precision_bars(profile: LayerProfile, top: int) -> Figure:
    rows = sorted(profile.rows, key=lambda r: -r.time_ms)[:top][::-1]
    colors = precision_colors([r.precision for r in profile.rows])
    fig = Figure(figsize=(7, 0.3 * max(len(rows), 3) + 1.3), layout="constrained")
    ax = fig.subplots()
    ax.barh(range(len(rows)), [r.time_ms for r in rows],
            color=[colors[r.precision] for r in rows])  # fmt: skip
    ax.set_yticks(range(len(rows)),
                  labels=[clip_label(f"{r.node or r.layer} ({r.op})") for r in rows], fontsize=8)  # fmt: skip
    ax.set_xlabel("ms per run" + (" (estimated)" if profile.estimated else ""))
    ax.set_title(f"{profile.model} on {profile.device}: slowest layers", fontsize=10)
    ax.legend(handles=[Patch(color=c, label=p or "data movement") for p, c in colors.items()],
              fontsize=8, loc="lower right")  # fmt: skip
    return fig


def precision_colors(precisions: Sequence[str]) -> dict[str, str]:
    """Precision → colour, the same in plots and graph renders."""
    fixed = {"f32": PALETTE[0], "f16": PALETTE[2], "bf16": PALETTE[4], "int8": PALETTE[1],
             "": "#dddddd"}  # fmt: skip
    out = {}
    for k, p in enumerate(dict.fromkeys(precisions)):
        out[p] = fixed.get(p, PALETTE[(5 + k) % len(PALETTE)])
    return out


def node_edges(model: onnx.ModelProto) -> tuple[tuple[str, str], ...]:
    """(producer, consumer) node pairs of the main graph, subgraph bodies' outer reads included."""
    producer = {o: n.name for n in model.graph.node for o in n.output if o}
    edges = {
        (producer[t], n.name)
        for n in model.graph.node
        for t in node_inputs(n)
        if t in producer and producer[t] != n.name
    }
    return tuple(sorted(edges))


def _feeds(model: onnx.ModelProto, dataset: Any, n: int = 4) -> list[dict[str, np.ndarray]]:
    data = random_dataset(model, n=1, seed=0) if dataset is None else as_dataset(dataset)
    feeds = []
    for fd in data.feeds():
        feeds.append(fd)
        if len(feeds) >= n:
            break
    if not feeds:
        raise InputError("layer profiling needs a dataset with at least one item")
    return feeds


def layer_profile(
    model: ModelLike,
    device: Any = "cpu",
    hint: Any = None,
    dataset: Dataset | None = None,
    runs: int = 20,
    warmup: int = 3,
    config: RunConfig = DEFAULT_CONFIG,
) -> LayerProfile:
    """Per-layer profile of ``model`` on ``device`` with ``hint`` (see module doc).

    Real devices are profiled by their runtime (``runs`` runs after ``warmup``, feeds from
    ``dataset`` or random inputs); simulated profiles get roofline estimates of their nodes in
    the precision the profile runs them in, labelled *estimated*.
    """
    dev = resolve_device(device)
    h = as_hint(hint)
    with contextlib.ExitStack() as stack:
        if dev.backend != "profile":  # the runtime reads a light model's weights from disk
            m, folder = light_model(model, stack)
        else:  # estimates take the whole model
            m, folder = _proto(model), None
        feeds = _feeds(m, dataset)
        ops = {n.name: n.op_type for n in m.graph.node}
        if dev.backend == "profile":
            return _estimated_profile(m, dev, h, feeds, ops)
        times = profile_runtime(m, dev, h, feeds, runs=runs, warmup=warmup,
                                config=config.reading(folder))  # fmt: skip
    return LayerProfile(
        model=m.graph.name or "model", device=dev.name, hint=h.label, simulated=dev.simulated,
        estimated=False, precision_ran=precision_ran(times.rows), rows=times.rows,
        total_ms=times.total_ms, wall_ms=times.wall_ms, runs=times.runs, ops=ops,
        notes=times.notes, edges=node_edges(m),
    )  # fmt: skip


def _estimated_profile(
    m: onnx.ModelProto, dev: Any, hint: Any, feeds: list[dict[str, np.ndarray]], ops: dict
) -> LayerProfile:
    profile = profile_of(dev)
    precision = profile.precision
    if hint.execution_mode == "accuracy" and precision in ("f16", "bf16"):
        precision = "f32"  # accuracy mode never lowers precision (as open_profile)
    types = tensor_types(m)
    float_nodes = {
        n.name
        for n in m.graph.node
        if any(types.get(t) == onnx.TensorProto.FLOAT for t in (*n.input, *n.output) if t)
    }
    precision_of = {
        n.name: precision if profile.accepts(n.op_type, n.name) and n.name in float_nodes else "f32"
        for n in m.graph.node
    }
    shapes = {k: v.shape for k, v in feeds[0].items()}
    estimates = estimate_nodes(m, profile, precision_of, shapes)
    rows = tuple(
        LayerRow(node=e.node, nodes=(e.node,), op=e.op,
                 precision="" if e.op in _GLUE_OPS else e.precision,
                 implementation=f"roofline estimate ({e.bound}-bound)", time_ms=e.time_ms,
                 layer=e.node)
        for e in estimates
    )  # fmt: skip
    total = float(sum(r.time_ms for r in rows))
    return LayerProfile(
        model=m.graph.name or "model", device=dev.name, hint=hint.label, simulated=True,
        estimated=True, precision_ran=precision_ran(rows), rows=rows, total_ms=total,
        wall_ms=math.nan, runs=0, ops=ops, edges=node_edges(m),
        notes=(f"estimated: roofline model of {profile.name} (peak ops/s, memory bandwidth "
               "from its profile); not measured",),
    )  # fmt: skip


def precision_facts(profile: LayerProfile, top: int = 3) -> str:
    """Layer facts for a recommendation's reasons, e.g. ``"12 of 53 Conv ran f32 on
    openvino:CPU"`` (the ops taking the most time; only ops with a minority precision)."""
    by_op: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    time_of: dict[str, float] = collections.defaultdict(float)
    for r in profile.rows:
        if r.precision and r.node:
            by_op[r.op][r.precision] += 1
            time_of[r.op] += r.time_ms
    facts = []
    for op in sorted(by_op, key=lambda o: -time_of[o])[:top]:
        counts = by_op[op]
        total = sum(counts.values())
        for precision, n in counts.most_common():
            facts.append(f"{n} of {total} {op} ran {precision}")
    where = profile.device + (" (estimated)" if profile.estimated else "")
    return f"{'; '.join(facts)} on {where}" if facts else ""


# --------------------------------------------------------------------------- layer error


@dataclass(frozen=True)
class TensorError(Result):
    """One tensor both models compute: how far the variant's value is from the reference's."""

    tensor: str
    node: str  # reference node producing it
    op: str
    variant_tensor: str  # what was compared (e.g. the dequantized tensor of a QDQ model)
    cosine: float
    sqnr_db: float
    max_abs: float


@dataclass(frozen=True)
class LayerError(Result):
    """Per-tensor error of a variant against its reference, in reference graph order."""

    model: str
    device: str
    items: int
    threshold_db: float
    rows: tuple[TensorError, ...]
    first_divergent: str | None  # first tensor whose SQNR drops below threshold_db
    notes: tuple[str, ...] = ()
    ops: dict[str, str] = dataclasses.field(default_factory=dict)  # reference node → op
    edges: tuple[tuple[str, str], ...] = ()  # reference node → node data flow (renders)

    _summary_exclude = ("rows", "ops", "edges")

    def node_errors(self) -> dict[str, TensorError]:
        """Reference node → the error of (its first) output."""
        out: dict[str, TensorError] = {}
        for r in self.rows:
            out.setdefault(r.node, r)
        return out

    def summary_rows(self) -> list[dict[str, Any]]:
        return [
            {"tensor": r.tensor, "node": r.node, "op": r.op, "cosine": r.cosine,
             "SQNR dB": r.sqnr_db, "max |err|": r.max_abs,
             "": "first divergence" if r.tensor == self.first_divergent else ""}
            for r in self.rows
        ]  # fmt: skip

    def _repr_html_(self) -> str:
        first = self.first_divergent or f"none (all above {self.threshold_db:g} dB)"
        title = (
            f"{self.model} on {self.device}: error per tensor over {self.items} items; "
            f"first divergence: {first}"
        )
        return html_table(self.summary_rows(), title=title)


@dataclass(frozen=True)
class _Exposed:
    """A tensor made visible as a graph output: its output name and where it comes from."""

    output: str
    tensor: str
    node: str
    op: str


def _exposed(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[_Exposed]]:
    """A copy of ``model`` with every float tensor it computes visible as a graph output, in
    graph order: main-graph tensors directly; tensors inside Loop/Scan bodies as extra scan
    outputs (one slice per iteration) and inside If branches as extra branch outputs (the
    branch not taken gives an empty tensor, so only runs taking the same branch compare).
    """
    types = tensor_types(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    present = {o.name for o in g.output}
    found: list[_Exposed] = []
    for node in list(g.node):
        for body_value in _expose_body(node, types):
            elem = types.get(body_value.tensor, onnx.TensorProto.FLOAT)
            elem = onnx.TensorProto.FLOAT if elem == onnx.TensorProto.BFLOAT16 else elem
            g.output.append(onnx.helper.make_tensor_value_info(body_value.output, elem, None))
            found.append(body_value)
        for t in node.output:
            if t and types.get(t) in _FLOATS:
                name, elem = _readable(g, t, types[t])
                if name not in present:
                    g.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
                    present.add(name)
                found.append(_Exposed(name, t, node.name, node.op_type))
    return out, found


def _readable(graph: onnx.GraphProto, t: str, elem: int) -> tuple[str, int]:
    """A name holding ``t`` in a type numpy can read (bfloat16 is cast to float32 in-graph)."""
    if elem != onnx.TensorProto.BFLOAT16:
        return t, elem
    name = f"__wb_f32_{t}"
    graph.node.append(onnx.helper.make_node("Cast", [t], [name], to=onnx.TensorProto.FLOAT))
    return name, onnx.TensorProto.FLOAT


def _body_floats(body: onnx.GraphProto, types: dict[str, int]) -> list[tuple[str, onnx.NodeProto]]:
    done = {o.name for o in body.output}
    return [(t, n) for n in body.node for t in n.output
            if t and t not in done and types.get(t) in _FLOATS]  # fmt: skip


def _expose_body(node: onnx.NodeProto, types: dict[str, int]) -> list[_Exposed]:
    """Add the float intermediates of ``node``'s bodies as extra outputs of ``node``."""
    graphs = {a.name: a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH}
    exposed: list[_Exposed] = []
    if node.op_type in ("Loop", "Scan") and "body" in graphs:
        body = graphs["body"]
        for t, inner in _body_floats(body, types):
            name, elem = _readable(body, t, types[t])
            body.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
            exposed.append(_Exposed(f"__wb_body_{node.name}_{t}", t, inner.name, inner.op_type))
            node.output.append(exposed[-1].output)
        for a in node.attribute:  # Scan: one direction/axis per scan output, if listed
            if a.name in ("scan_output_directions", "scan_output_axes") and a.ints:
                a.ints.extend([0] * (len(exposed)))
    elif node.op_type == "If" and len(graphs) == 2:
        for name, branch in graphs.items():
            other = graphs["else_branch" if name == "then_branch" else "then_branch"]
            for t, inner in _body_floats(branch, types):
                empty = f"__wb_empty_{t}"
                name, elem = _readable(branch, t, types[t])
                branch.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
                other.node.append(onnx.helper.make_node(
                    "Constant", [], [empty], value=onnx.helper.make_tensor(empty, elem, [0], [])
                ))  # fmt: skip
                other.output.append(onnx.helper.make_tensor_value_info(empty, elem, None))
                exposed.append(_Exposed(f"__wb_body_{node.name}_{t}", t, inner.name, inner.op_type))
                node.output.append(exposed[-1].output)
    return exposed


_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
           onnx.TensorProto.DOUBLE}  # fmt: skip


def _dequantized(model: onnx.ModelProto) -> dict[str, str]:
    """Tensor → the DequantizeLinear output that carries it in a QDQ model (Q → DQ pairs)."""
    consumers: dict[str, list[onnx.NodeProto]] = collections.defaultdict(list)
    for n in model.graph.node:
        for i in n.input[:1]:
            consumers[i].append(n)
    out = {}
    for n in model.graph.node:
        if n.op_type != "QuantizeLinear":
            continue
        dq = [c for c in consumers.get(n.output[0], []) if c.op_type == "DequantizeLinear"]
        if dq:
            out[n.input[0]] = dq[0].output[0]
    return out


def layer_error(
    reference: ModelLike,
    variant: ModelLike,
    dataset: Any,
    device: Any = "cpu",
    threshold_db: float = 20.0,
    max_items: int = 16,
) -> LayerError:
    """Compare every tensor ``reference`` (run on the CPU) and ``variant`` (on ``device``) both
    compute, over up to ``max_items`` items of ``dataset``.

    QDQ variants are compared on the float tensor after dequantization; f16/bf16 tensors are
    cast back to float; tensors are matched by name (precision passes keep names), including
    those inside If/Loop/Scan bodies. ``first_divergent`` is the first tensor (graph order)
    whose SQNR is below ``threshold_db``.
    """
    dev = resolve_device(device)
    with contextlib.ExitStack() as stack:
        # one instrumented model built, run and freed at a time; big models run light (the
        # runtime reads their weights from disk), only per-tensor values are kept
        ref, ref_dir = light_model(reference, stack, "reference")
        var, var_dir = light_model(variant, stack, "variant")
        feeds = _feeds(ref, dataset, n=max_items)
        ref_x, ref_found = _exposed(ref)  # light models: copies of the structure alone
        var_x, var_found = _exposed(var)
        dq = _dequantized(var)
        var_by_tensor = {e.tensor: e.output for e in var_found}
        pairs = {e.output: var_by_tensor.get(dq.get(e.tensor, e.tensor)) for e in ref_found}
        pairs = {k: v for k, v in pairs.items() if v is not None}
        ref_vals = _values(ref, ref_x, ref_dir, "cpu", feeds, set(pairs))
        del ref_x
        var_vals = _values(var, var_x, var_dir, dev, feeds, set(pairs.values()))
        del var_x
    rows, notes = _error_rows(ref_found, pairs, ref_vals, var_vals)
    first = next((r.tensor for r in rows if r.sqnr_db < threshold_db), None)
    return LayerError(
        model=ref.graph.name or "model", device=dev.name, items=len(feeds),
        threshold_db=float(threshold_db), rows=tuple(rows), first_divergent=first,
        notes=tuple(notes), ops={n.name: n.op_type for n in ref.graph.node}, edges=node_edges(ref),
    )  # fmt: skip


def _values(
    model: onnx.ModelProto,
    exposed: onnx.ModelProto,
    folder: str | None,
    device: Any,
    feeds: list,
    names: set[str],
) -> dict[str, np.ndarray]:
    """Tensor values over ``feeds``: intermediates from the exposed copy, graph outputs from
    the model itself (extra outputs can stop a runtime fusing or dropping casts, which would
    change the very outputs being judged). One runner at a time, freed before the next;
    a light model (``folder``) is opened with its weights read from there."""
    outputs = {o.name for o in model.graph.output}
    dev = resolve_device(device)
    config = DEFAULT_CONFIG.reading(folder)
    with task(f"layer error: {model.graph.name or 'model'} on {dev.name}", 2) as t:
        values = _collect(_runnable(exposed, folder, dev), dev, config, feeds, names - outputs)
        t.update()
        values.update(_collect(_runnable(model, folder, dev), dev, config, feeds, names & outputs))
        t.update()
    return values


def _runnable(model: onnx.ModelProto, folder: str | None, dev: Any) -> onnx.ModelProto:
    """Simulated profiles convert the model themselves: they get its weights."""
    return complete_model(model, folder) if dev.backend == "profile" else model


def _collect(
    model: onnx.ModelProto, dev: Any, config: RunConfig, feeds: list, names: set[str]
) -> dict[str, np.ndarray]:
    """The ``names`` outputs of ``model`` over ``feeds``, each flattened and concatenated over
    the items in the dtype the runtime gave (cast to float64 only when compared)."""
    if not names:
        return {}
    got: dict[str, list[np.ndarray]] = collections.defaultdict(list)
    runner = open_runner(model, dev, config=config)
    try:
        for fd in feeds:
            check_cancelled()
            for k, v in runner(fd).items():
                if k in names:
                    got[k].append(np.asarray(v).ravel())
    finally:
        runner.close()
        del runner
    return {k: np.concatenate(v) for k, v in got.items()}


def _errors(ref: np.ndarray, var: np.ndarray) -> dict[str, float]:
    """Cosine, SQNR and max |error| of ``var`` against ``ref``; a variant tensor with inf/NaN
    (e.g. f16 overflow) where the reference is finite is reported as fully wrong."""
    if not ref.size:
        return {"cosine": 1.0, "sqnr_db": math.inf, "max_abs": 0.0}
    if not (np.isfinite(ref).all() and np.isfinite(var).all()):
        same = np.array_equal(ref, var, equal_nan=True)
        return {"cosine": 1.0 if same else math.nan, "sqnr_db": math.inf if same else -math.inf,
                "max_abs": 0.0 if same else math.inf}  # fmt: skip
    return {"cosine": cosine(var, ref), "sqnr_db": sqnr(var, ref),
            "max_abs": float(np.max(np.abs(var - ref)))}  # fmt: skip


def _error_rows(
    found: list[_Exposed], pairs: dict[str, str], ref_vals: dict, var_vals: dict
) -> tuple[list[TensorError], list[str]]:
    rows, notes = [], []
    for e in found:
        if e.output not in pairs:
            continue
        a, b = ref_vals.get(e.output), var_vals.get(pairs[e.output])
        if a is not None and b is not None:
            a, b = a.astype(np.float64), b.astype(np.float64)
        if a is None or b is None or a.shape != b.shape:
            notes.append(f"{e.tensor}: not compared (missing, or shapes differ between runs)")
            continue
        rows.append(TensorError(tensor=e.tensor, node=e.node, op=e.op,
                                variant_tensor=pairs[e.output], **_errors(a, b)))  # fmt: skip
    return rows, notes


# --------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class LayerDelta(Result):
    """One layer in two profiles."""

    node: str
    op: str
    time_a_ms: float | None
    time_b_ms: float | None
    precision_a: str
    precision_b: str

    @property
    def ratio(self) -> float | None:
        """time b / time a (< 1: faster in b)."""
        if not self.time_a_ms or self.time_b_ms is None:
            return None
        return self.time_b_ms / self.time_a_ms

    @property
    def precision_changed(self) -> bool:
        return self.precision_a != self.precision_b


@dataclass(frozen=True)
class LayerComparison(Result):
    """Which layers got faster or slower, and which changed precision, from ``a`` to ``b``."""

    a: str
    b: str
    rows: tuple[LayerDelta, ...]
    total_a_ms: float
    total_b_ms: float
    estimated: bool = False

    _summary_exclude = ("rows",)

    def summary_rows(self) -> list[dict[str, Any]]:
        return [
            {"layer": r.node, "op": r.op, "a ms": r.time_a_ms, "b ms": r.time_b_ms,
             "b / a": r.ratio, "a precision": r.precision_a, "b precision": r.precision_b,
             "changed": "precision" if r.precision_changed else ""}
            for r in self.rows
        ]  # fmt: skip

    def plot(self, top: int = 20) -> Figure:
        """Time change per layer (b − a), largest changes first; precision changes marked."""
        rows = [r for r in self.rows if r.time_a_ms is not None and r.time_b_ms is not None]
        rows = sorted(rows, key=lambda r: -abs(r.time_b_ms - r.time_a_ms))[:top][::-1]  # type: ignore[operator]
        fig = Figure(figsize=(7, 0.3 * max(len(rows), 3) + 1.3), layout="constrained")
        ax = fig.subplots()
        deltas = [r.time_b_ms - r.time_a_ms for r in rows]  # type: ignore[operator]
        colors = [PALETTE[3] if d > 0 else PALETTE[2] for d in deltas]
        ax.barh(range(len(rows)), deltas, color=colors,
                hatch=None, edgecolor=["black" if r.precision_changed else "none" for r in rows])  # fmt: skip
        ax.set_yticks(range(len(rows)), fontsize=8, labels=[
            clip_label(f"{r.node} ({r.precision_a}→{r.precision_b})" if r.precision_changed
                       else r.node) for r in rows])  # fmt: skip
        ax.axvline(0, color="#555555", lw=0.8)
        unit = "ms (estimated)" if self.estimated else "ms"
        ax.set_xlabel(f"time in b − time in a, {unit} (red: slower, green: faster)")
        ax.set_title(f"{clip_label(self.a)} → {clip_label(self.b)}", fontsize=10)
        return fig

    def _repr_html_(self) -> str:
        changed = sum(r.precision_changed for r in self.rows)
        title = (
            f"a = {self.a} ({self.total_a_ms:.4g} ms), b = {self.b} ({self.total_b_ms:.4g} ms); "
            f"{changed} layers changed precision"
        )
        return html_table(self.summary_rows(), title=title) + figure_svg(self.plot())


def compare_layers(a: LayerProfile, b: LayerProfile) -> LayerComparison:
    """Layer-by-layer comparison of two profiles (two variants, or one model on two devices).

    Layers are matched by the original nodes they cover, so a layer fused differently in
    ``b`` is compared with the layer holding its main node.
    """
    for x in (a, b):
        if not isinstance(x, LayerProfile):
            raise InputError(f"compare_layers needs two LayerProfiles, got {type(x).__name__}")
    in_b = b.node_rows()
    rows, seen = [], set()
    for r in a.rows:
        key = r.node or r.layer
        other = in_b.get(r.node) if r.node else None
        seen.add(id(other))
        rows.append(LayerDelta(node=key, op=r.op, time_a_ms=r.time_ms,
                               time_b_ms=other.time_ms if other else None,
                               precision_a=r.precision,
                               precision_b=other.precision if other else ""))  # fmt: skip
    for r in b.rows:
        if id(r) not in seen:
            rows.append(LayerDelta(node=r.node or r.layer, op=r.op, time_a_ms=None,
                                   time_b_ms=r.time_ms, precision_a="",
                                   precision_b=r.precision))  # fmt: skip
    label = lambda p: f"{p.model} on {p.device} ({p.hint})"  # noqa: E731
    return LayerComparison(
        a=label(a), b=label(b), rows=tuple(rows), total_a_ms=a.layer_ms, total_b_ms=b.layer_ms,
        estimated=a.estimated or b.estimated,
    )  # fmt: skip
