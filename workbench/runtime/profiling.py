"""Per-layer profiles from the runtimes themselves, mapped back to the original ONNX nodes.

* ONNX Runtime: a session with ``enable_profiling`` (its JSON trace written under a temporary
  ``profile_file_prefix``, never the current directory) and the optimized graph it saves. An
  executed kernel (``a2_nchwc``, ``fused Conv``, ``QLinearConv``) is mapped to the original
  nodes it replaced by data flow: kernels joined by tensors the original model does not have
  form one layer, and the layer covers every original node between the original tensors it
  reads and the ones it writes.
* OpenVINO (optional extra, imported lazily): the compiled runtime model gives every executed
  layer its ``runtimePrecision``, ``primitiveType`` and ``originalLayersNames``; ``PERF_COUNT``
  gives its time per request.

Both return :class:`LayerRow` s and the whole-model time measured in the same runs, so the
layer times can be checked against it.
"""

from __future__ import annotations

import collections
import importlib
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from ..errors import InputError, UnsupportedError
from ..progress import task
from ..results import Result
from .base import DEFAULT_CONFIG, Device, Feeds, RunConfig, prepare_feeds
from .hints import Hint, summarize_precisions
from .ort import _GLUE_OPS, _np_type, make_session, node_output_type, node_precision
from .ort import session_options as ort_session_options


@dataclass(frozen=True)
class LayerRow(Result):
    """One executed layer: the original nodes it covers, what ran, and its mean time per run."""

    node: str  # the main original node ('' for layers the runtime inserted, e.g. reorders)
    nodes: tuple[str, ...]  # every original node fused into this layer
    op: str  # the main original node's op type (the runtime's layer type when inserted)
    precision: str  # what it computed in: f32, f16, bf16, int8 ('' for data movement)
    implementation: str  # OpenVINO exec type / ORT provider and kernel(s)
    time_ms: float  # mean over the profiled runs
    layer: str = ""  # the runtime's own name for the layer


@dataclass(frozen=True)
class LayerTimes:
    """What a profiling run measured (internal; :class:`workbench.layers.LayerProfile` wraps it)."""

    rows: tuple[LayerRow, ...]
    total_ms: float  # mean whole-model time of the same runs, as the runtime measured it
    wall_ms: float  # mean wall-clock time of a run call with profiling on
    runs: int
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------- mapping helpers


class _Original:
    """Original model facts used to map executed layers back: producers, node ops, order."""

    def __init__(self, model: onnx.ModelProto):
        g = model.graph
        self.nodes = {n.name: n for n in g.node}
        self.order = {n.name: k for k, n in enumerate(g.node)}
        self.producer = {o: n.name for n in g.node for o in n.output if o}
        self.tensors = set(self.producer) | {i.name for i in g.input}
        self.tensors |= {t.name for t in g.initializer}

    def cone(self, outputs: Sequence[str], stop: Callable[[str], bool]) -> list[str]:
        """Original nodes computing ``outputs`` from the tensors where ``stop`` is true."""
        found: set[str] = set()
        todo = [t for t in outputs if t in self.producer]
        while todo:
            t = todo.pop()
            node = self.producer.get(t)
            if node is None or node in found or stop(t):
                continue
            found.add(node)
            todo.extend(i for i in self.nodes[node].input if i and not stop(i))
        return sorted(found, key=self.order.__getitem__)

    def main(self, nodes: Sequence[str], prefer: Sequence[str] = ()) -> str:
        """The node that names a fused layer: its first compute node, else the node the
        kernel is named after (``prefer``), else its first node."""
        for n in nodes:
            if self.nodes[n].op_type not in _GLUE_OPS:
                return n
        return next((n for n in prefer if n in nodes), nodes[0] if nodes else "")


def node_precisions(graph: onnx.GraphProto) -> dict[str, str]:
    """Node name → the precision it computes in, from element types propagated through the
    graph (ORT's saved optimized graph has stale value_info): int8 kernels and integer inputs
    are int8; otherwise the type of the first float input; '' for glue and untyped nodes."""
    types = {i.name: i.type.tensor_type.elem_type for i in graph.input}
    types.update({t.name: t.data_type for t in graph.initializer})
    out: dict[str, str] = {}
    for node in graph.node:
        out[node.name] = node_precision(node, types)
        produced = node_output_type(node, types)
        for o in node.output:
            if o and produced:
                types[o] = produced
    return out


#: ORT's renames: prefixes/suffixes it adds to node and tensor names when it rewrites a graph
_PREFIXES = re.compile(r"^(InsertedPrecisionFreeCast_|FusedBack_|fused |Fused_)+")
_SUFFIXES = re.compile(r"((_token_\d+)|_nchwc|_fused|_Output|_output_\d+)+$")


def _strip(name: str) -> str:
    return _SUFFIXES.sub("", _PREFIXES.sub("", name))


class _Optimized:
    """ORT's optimized graph with each kernel's anchor (the original node its name keeps) and
    each tensor's original equivalent (through renames and inserted data-movement nodes)."""

    def __init__(self, graph: onnx.GraphProto, orig: _Original):
        self.nodes = list(graph.node)
        self.orig = orig
        self.producer = {o: k for k, n in enumerate(self.nodes) for o in n.output if o}
        self.inits = {t.name for t in graph.initializer}
        self.anchor = [self._anchor(n.name) for n in self.nodes]
        self.glue = [n.op_type in _GLUE_OPS for n in self.nodes]

    def _anchor(self, name: str) -> str | None:
        for cand in (name, _strip(name)):
            if cand in self.orig.nodes:
                return cand
            if cand in self.orig.producer:
                return self.orig.producer[cand]
        return None

    def original(self, tensor: str, depth: int = 0) -> str | None:
        """The original tensor ``tensor`` holds (renamed, cast or transposed), or None."""
        for cand in (tensor, _strip(tensor)):
            if cand in self.orig.tensors:
                return cand
        k = self.producer.get(tensor)
        if k is None or not self.glue[k] or depth > 32:
            return None
        data = [i for i in self.nodes[k].input if i and i not in self.inits]
        return self.original(data[0], depth + 1) if len(data) == 1 else None

    def groups(self) -> list[list[int]]:
        """Kernels joined into layers through tensors with no original equivalent, unless
        both kernels keep the names of different original nodes."""
        parent = list(range(len(self.nodes)))
        named = [{a} - {None} for a in self.anchor]  # anchors per union-find root

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for k, n in enumerate(self.nodes):
            for i in n.input:
                p = self.producer.get(i)
                if p is None or i in self.inits or self.original(i) is not None:
                    continue
                a, b = find(k), find(p)
                if a != b and len(named[a] | named[b]) <= 1:
                    parent[a] = b
                    named[b] |= named[a]
        out: dict[int, list[int]] = collections.defaultdict(list)
        for k in range(len(self.nodes)):
            out[find(k)].append(k)
        return list(out.values())


def _attach_qdq(covered: dict[int, list[str]], orig: _Original) -> None:
    """Give unclaimed DequantizeLinear/QuantizeLinear nodes to the layer of the node they feed
    (or are fed by): ORT folds them into its QLinear kernels."""
    owner = {n: g for g, ns in covered.items() for n in ns}
    consumers: dict[str, list[str]] = collections.defaultdict(list)
    for name, node in orig.nodes.items():
        for i in node.input:
            consumers[i].append(name)
    for name in sorted(orig.nodes, key=orig.order.__getitem__):
        node = orig.nodes[name]
        if name in owner or node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        near = [c for o in node.output for c in consumers.get(o, ())]
        if node.op_type == "QuantizeLinear":
            near = [orig.producer[i] for i in node.input[:1] if i in orig.producer] + near
        target = next((owner[n] for n in near if n in owner), None)
        if target is not None:
            covered[target].append(name)
            owner[name] = target


def map_ort_layers(
    optimized: onnx.ModelProto | None, original: onnx.ModelProto
) -> dict[str, tuple[str, tuple[str, ...], str]]:
    """Optimized node name → (layer id, original nodes it covers, precision it ran in).

    Kernels of one layer share the layer id (its main original node, or the kernel's own name
    for nodes ORT inserted). Without the optimized graph, original names map to themselves.
    """
    orig = _Original(original)
    if optimized is None:
        return {n: (n, (n,), "") for n in orig.nodes}
    opt = _Optimized(optimized.graph, orig)
    precisions = node_precisions(optimized.graph)
    groups = opt.groups()
    anchors = [{opt.anchor[k] for k in g} - {None} for g in groups]
    base_stop = {i.name for i in original.graph.input} | {
        t.name for t in original.graph.initializer
    }
    # outputs of each group's anchors: the cone of one layer stops at another layer's nodes
    anchored = {o: gi for gi, a in enumerate(anchors) for n in a for o in orig.nodes[n].output}
    covered: dict[int, list[str]] = {}
    for gi, group in enumerate(groups):
        reads = {opt.original(i) for k in group for i in opt.nodes[k].input if i}
        writes = [opt.original(o) for k in group for o in opt.nodes[k].output if o]
        # a kernel named after a node computes that node's outputs even when ORT renamed them
        writes += [o for a in anchors[gi] for o in orig.nodes[a].output if o]

        def stop(t: str, gi: int = gi, reads: set = reads) -> bool:
            return t in base_stop or t in reads or anchored.get(t, gi) != gi

        cone = orig.cone([w for w in writes if w], stop)
        covered[gi] = sorted(set(cone) | anchors[gi], key=orig.order.__getitem__)
    _attach_qdq(covered, orig)
    out: dict[str, tuple[str, tuple[str, ...], str]] = {}
    for gi, group in enumerate(groups):
        nodes = sorted(covered[gi], key=orig.order.__getitem__)
        layer = orig.main(nodes, sorted(anchors[gi])) if nodes else opt.nodes[group[0]].name
        ran = [precisions.get(opt.nodes[k].name, "") for k in group if not opt.glue[k]]
        precision = next((p for p in ran if p), "")
        for k in group:
            out[opt.nodes[k].name] = (layer, tuple(nodes), precision)
    return out


# --------------------------------------------------------------------------- ONNX Runtime


def _trace_runs(events: list[dict[str, Any]], skip: int) -> tuple[list[dict], list[float]]:
    """Node kernel events and whole-run durations (µs) of the runs after the first ``skip``."""
    runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: e["ts"],
    )[skip:]
    if not runs:
        return [], []
    start = runs[0]["ts"]
    kernels = [
        e
        for e in events
        if e.get("cat") == "Node"
        and str(e.get("name", "")).endswith("_kernel_time")
        and e["ts"] >= start
    ]
    return kernels, [float(e["dur"]) for e in runs]


def _load_optimized(path: str) -> onnx.ModelProto | None:
    try:
        return onnx.load(path, load_external_data=False)
    except Exception:  # not written (EP-compiled graphs) or unreadable: map by names instead
        return None


def profile_ort(
    model: onnx.ModelProto,
    provider: str,
    feeds: Sequence[Feeds],
    runs: int = 10,
    warmup: int = 2,
    config: RunConfig = DEFAULT_CONFIG,
) -> LayerTimes:
    """Per-layer times of ``model`` on ORT ``provider`` (``enable_profiling`` trace)."""
    with tempfile.TemporaryDirectory(prefix="wb-prof-") as tmp:
        so = ort_session_options(os.path.join(tmp, "optimized.onnx"), config)
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "ort_profile")
        session = make_session(model, provider, so)
        specs = {i.name: _np_type(i.type) for i in session.get_inputs()}
        prepared = [prepare_feeds(f, specs) for f in feeds]
        wall = _timed_runs(lambda fd: session.run(None, fd), prepared, runs, warmup, "ORT")
        trace = session.end_profiling()
        with open(trace, encoding="utf-8") as fh:
            events = json.load(fh)
        optimized = _load_optimized(so.optimized_model_filepath)
    kernels, totals = _trace_runs(events, warmup)
    mapping = map_ort_layers(optimized, model)
    top = {n.name for n in (optimized or model).graph.node}
    rows = _ort_rows(kernels, mapping, top, len(totals) or 1, onnx_model_nodes(model))
    notes = () if optimized is not None else ("optimized graph unavailable: mapped by names",)
    return LayerTimes(
        rows=rows,
        total_ms=float(np.mean(totals)) / 1e3 if totals else float("nan"),
        wall_ms=wall,
        runs=len(totals),
        notes=notes,
    )


def onnx_model_nodes(model: onnx.ModelProto) -> dict[str, str]:
    """Node name → op type of the main graph."""
    return {n.name: n.op_type for n in model.graph.node}


def _ort_rows(
    kernels: list[dict[str, Any]],
    mapping: Mapping[str, tuple[str, tuple[str, ...], str]],
    top: set[str],
    runs: int,
    ops: Mapping[str, str],
) -> tuple[LayerRow, ...]:
    """Kernel events summed per layer (body kernels of If/Loop are inside their node's time)."""
    time_us: dict[str, float] = collections.defaultdict(float)
    impl: dict[str, dict[str, None]] = collections.defaultdict(dict)
    facts: dict[str, tuple[tuple[str, ...], str]] = {}
    order: dict[str, int] = {}
    for e in kernels:
        name = e["name"][: -len("_kernel_time")]
        if name not in top:
            continue
        layer, nodes, precision = mapping.get(name, (name, (), ""))
        args = e.get("args", {})
        provider = str(args.get("provider", "")).replace("ExecutionProvider", "")
        impl[layer][f"{provider}:{args.get('op_name', '?')}"] = None
        time_us[layer] += float(e["dur"])
        facts[layer] = (nodes, precision)
        order.setdefault(layer, len(order))
    rows = []
    for layer in sorted(order, key=order.__getitem__):
        nodes, precision = facts[layer]
        rows.append(
            LayerRow(
                node=layer if layer in ops else "",
                nodes=nodes,
                op=ops.get(layer, next(iter(impl[layer])).split(":")[-1]),
                precision=precision,
                implementation=" + ".join(impl[layer]),
                time_ms=time_us[layer] / runs / 1e3,
                layer=layer,
            )
        )
    return tuple(rows)


def _timed_runs(run: Any, prepared: list[Any], runs: int, warmup: int, what: str) -> float:
    """Run ``warmup`` + ``runs`` times (cycling feeds); mean wall ms of the timed runs."""
    if runs < 1:
        raise InputError(f"layer profiling needs runs >= 1, got {runs}")
    total = 0.0
    with task(f"profile layers ({what})", warmup + runs) as t:
        for k in range(warmup + runs):
            t0 = time.perf_counter()
            run(prepared[k % len(prepared)])
            if k >= warmup:
                total += time.perf_counter() - t0
            t.update()
    return total / runs * 1e3


# --------------------------------------------------------------------------- OpenVINO


def _ov_original_names(names: str, orig: _Original) -> tuple[str, ...]:
    """ONNX node names from ``originalLayersNames`` (OpenVINO also names ops after their
    output tensor and adds suffixes such as ``/WithoutBiases``)."""
    found: dict[str, None] = {}
    for raw in names.split(","):
        raw = raw.strip()
        for cand in (raw, raw.split("/")[0], raw.rsplit("/sink_port", 1)[0]):
            node = cand if cand in orig.nodes else orig.producer.get(cand)
            if node is not None:
                found[node] = None
                break
    return tuple(sorted(found, key=orig.order.__getitem__))


def profile_openvino(
    model: onnx.ModelProto,
    device: Device,
    hint: Hint,
    feeds: Sequence[Feeds],
    runs: int = 10,
    warmup: int = 2,
    config: RunConfig = DEFAULT_CONFIG,
) -> LayerTimes:
    """Per-layer times of ``model`` compiled by OpenVINO (runtime model + ``PERF_COUNT``)."""
    ovb = importlib.import_module("workbench.runtime.openvino")  # optional extra
    properties, _, _ = ovb.compile_config(hint, device, config)
    properties["PERF_COUNT"] = True
    try:
        compiled = ovb.compile_model(model, device.provider or "CPU", properties, config.model_dir)
    except (RuntimeError, ValueError) as e:
        raise UnsupportedError(
            f"OpenVINO {device.provider or 'CPU'} cannot compile model {model.graph.name!r}: "
            f"{str(e).strip()[:600]}"
        ) from e
    request = compiled.create_infer_request()
    specs = {p.get_any_name(): np.dtype(p.get_element_type().to_dtype()) for p in compiled.inputs}
    prepared = [prepare_feeds(f, specs) for f in feeds]
    # the CPU plugin's counters are running means over every request so far: keep the
    # cumulative sums after the warmup and at the end, and take the difference
    cumulative: list[dict[str, float]] = [{}, {}]
    latencies: list[float] = []

    def run(fd: Feeds) -> None:
        try:
            request.infer(fd, share_inputs=True)
        except RuntimeError as e:
            raise UnsupportedError(
                f"OpenVINO could not run the model: {str(e).strip()[:600]}"
            ) from e
        done = len(latencies) + 1
        latencies.append(request.latency if done > warmup else math.nan)  # ms, OpenVINO's
        if done in (warmup, warmup + runs):
            cumulative[done != warmup] = {
                p.node_name: p.real_time.total_seconds() * 1e3 * done
                for p in request.profiling_info
            }

    wall = _timed_runs(run, prepared, runs, warmup, "OpenVINO")
    per_layer = {k: v - cumulative[0].get(k, 0.0) for k, v in cumulative[1].items()}
    rows = _ov_rows(compiled, _Original(model), per_layer, runs)
    total = float(np.nanmean(latencies)) if runs else math.nan
    return LayerTimes(rows=rows, total_ms=total, wall_ms=wall, runs=runs)


def _ov_rows(
    compiled: Any, orig: _Original, per_layer: Mapping[str, float], runs: int
) -> tuple[LayerRow, ...]:
    layers: list[dict[str, Any]] = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        name = op.get_friendly_name()
        exec_ms = per_layer.get(name, 0.0) / runs
        layer_type = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        if layer_type in ("Input", "Output", "Parameter", "Result", "Const") or exec_ms <= 0:
            continue
        names = info["originalLayersNames"].astype(str) if "originalLayersNames" in info else ""
        precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else ""
        primitive = info["primitiveType"].astype(str) if "primitiveType" in info else "?"
        layers.append({"name": name, "type": layer_type, "ms": exec_ms,
                       "nodes": list(_ov_original_names(names, orig)),
                       "precision": _ov_precision(precision) if layer_type != "Reorder" else "",
                       "impl": f"{layer_type}:{primitive}"})  # fmt: skip
    _claim_renamed(layers, orig)
    rows = []
    for layer in layers:
        nodes = tuple(sorted(layer["nodes"], key=orig.order.__getitem__))
        main = orig.main(nodes) if nodes else ""
        rows.append(
            LayerRow(node=main, nodes=nodes, op=orig.nodes[main].op_type if main else layer["type"],
                     precision=layer["precision"], implementation=layer["impl"],
                     time_ms=layer["ms"], layer=layer["name"])
        )  # fmt: skip
    return tuple(rows)


#: OpenVINO layer types that hold a convolution / matrix product
_HEAVY_LAYERS = {"Convolution", "Deconvolution", "FullyConnected", "MatMul", "GroupConvolution"}
_HEAVY_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}


def _claim_renamed(layers: list[dict[str, Any]], orig: _Original, depth: int = 8) -> None:
    """Give original nodes OpenVINO renamed while fusing (``Conv`` folded with its
    BatchNormalization into ``Multiply_123``, ``Add/Clip/Mul/Div`` into ``HSwish_45``) to the
    layer next to them: a convolution/matmul to the neighbouring convolution/matmul layer
    that holds no such node yet, anything else to the layer upstream (fusions absorb what
    follows a compute op), else downstream."""
    owner = {n: k for k, layer in enumerate(layers) for n in layer["nodes"]}
    consumers: dict[str, list[str]] = collections.defaultdict(list)
    for name, node in orig.nodes.items():
        for i in node.input:
            consumers[i].append(name)

    def nearest(start: str, step: Any) -> int | None:
        frontier, seen = [start], {start}
        for _ in range(depth):
            nxt = []
            for n in frontier:
                for m in step(n):
                    if m in owner:
                        return owner[m]
                    if m not in seen:
                        seen.add(m)
                        nxt.append(m)
            frontier = nxt
        return None

    up = lambda n: [orig.producer[i] for i in orig.nodes[n].input if i in orig.producer]  # noqa: E731
    down = lambda n: [c for o in orig.nodes[n].output for c in consumers.get(o, ())]  # noqa: E731
    for name in sorted(orig.nodes, key=orig.order.__getitem__):
        op = orig.nodes[name].op_type
        if name in owner or op in _GLUE_OPS:
            continue
        candidates = [nearest(name, down), nearest(name, up)]
        if op in _HEAVY_OPS:
            free = [k for k in candidates if k is not None and layers[k]["type"] in _HEAVY_LAYERS
                    and not any(orig.nodes[n].op_type == op for n in layers[k]["nodes"])]  # fmt: skip
            target = free[0] if free else None
        else:
            target = candidates[1] if candidates[1] is not None else candidates[0]
        if target is not None:
            layers[target]["nodes"].append(name)
            owner[name] = target


def _ov_precision(name: str) -> str:
    name = name.strip().lower()
    return {"i8": "int8", "u8": "int8", "i4": "int8", "u4": "int8"}.get(name, name)


def precision_ran(rows: Sequence[LayerRow]) -> str:
    """The summary precision of the compute layers (``"f32+bf16"`` when mixed)."""
    return summarize_precisions(collections.Counter(r.precision for r in rows if r.precision))


def profile_runtime(
    model: onnx.ModelProto,
    device: Device,
    hint: Hint,
    feeds: Sequence[Feeds],
    runs: int = 10,
    warmup: int = 2,
    config: RunConfig = DEFAULT_CONFIG,
) -> LayerTimes:
    """Per-layer times on a real ``device`` (backend ``ort`` or ``openvino``)."""
    if not feeds:
        raise InputError("layer profiling needs at least one feeds dict")
    if device.backend == "ort":
        return profile_ort(model, device.provider or "CPUExecutionProvider", feeds, runs, warmup,
                           config)  # fmt: skip
    if device.backend == "openvino":
        return profile_openvino(model, device, hint, feeds, runs, warmup, config)
    raise InputError(
        f"device {device.name!r} (backend {device.backend!r}) has no runtime profiler; "
        "simulated profiles get estimated layer times from workbench.layers.layer_profile"
    )


__all__ = [
    "LayerRow",
    "LayerTimes",
    "map_ort_layers",
    "node_precisions",
    "precision_ran",
    "profile_openvino",
    "profile_ort",
    "profile_runtime",
]
