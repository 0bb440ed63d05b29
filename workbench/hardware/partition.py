"""Acyclic subgraphs from an affinity, and their chained execution.

``partition(model, affinity) -> PartitionedModel``:

1. Constant-only and shape-only pieces (``Constant``, ``Shape → Gather → Concat`` feeding a
   ``Reshape`` ...) are absorbed into the device of their consumer instead of forming tiny
   subgraphs of their own.
2. Two seeds are cut from topological orders, each at every device change: the model's own
   order (the naive split OpenVINO's HETERO does) and a device-greedy order that stays on one
   device while it has ready nodes. Both seeds are acyclic by construction.
3. Same-device groups are merged pairwise wherever no path leaves the pair and comes back
   (checked on the transitive closure kept as bitsets), so the result stays acyclic. The
   smaller result wins, hence never more subgraphs than the naive split.
4. Each group becomes its own model through an ``onnx_ir.GraphView`` of its nodes, cloned (what
   ``onnx_ir.convenience.extract`` does, minus its whole-graph scan per call).

``PartitionedModel.run`` chains one session per subgraph through its device's runner (an f16
profile really runs its part in f16); ``.profile`` times every subgraph and counts the bytes
crossing each boundary.
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from ..data import Dataset, onnx_to_numpy_dtype
from ..errors import InputError, UnsupportedError
from ..figures import figure_svg, ranking_plot
from ..formatting import format_bytes
from ..model import dtype_name, ensure_node_names, load_model
from ..progress import quiet, task
from ..results import Result, html_table
from ..runtime import prepare_feeds
from ..runtime.hints import Hint, as_hint
from ..tensor_types import inferred_ir
from .affinity import Affinity
from .capability import query_model
from .estimate import estimate_latency
from .execution import open_runner
from .registry import Device, open_profile, profile_of

#: ops computing on shapes that stay with their consumer (structural, not a capability list)
_SHAPE_ARITHMETIC = frozenset(
    {"Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Add", "Sub", "Mul", "Div",
     "Equal", "Where", "Identity", "ReduceProd", "Max", "Min", "Neg", "Floor", "Ceil"}
)  # fmt: skip
_RANDOM = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}
)
#: beyond this many groups, merges are only tried within this window of the topological order
_MERGE_WINDOW = 512


# --------------------------------------------------------------------------- graph analysis


def _outer_refs(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph body reads from enclosing scopes (implicit inputs of its node)."""
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    used: set[str] = set()
    for node in graph.node:
        used.update(i for i in node.input if i)
        for a in node.attribute:
            bodies = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for b in bodies:
                used |= _outer_refs(b)
        defined.update(node.output)
    return used - defined


def node_inputs(node: onnx.NodeProto) -> list[str]:
    """A node's inputs: explicit ones, then names its subgraph bodies read from outside."""
    ins = [i for i in node.input if i]
    for a in node.attribute:
        bodies = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
        for b in bodies:
            ins += sorted(_outer_refs(b) - set(ins))
    return list(dict.fromkeys(ins))


class _Dag:
    """Top-level node dependencies of a model (implicit subgraph inputs included)."""

    def __init__(self, model: onnx.ModelProto):
        g = model.graph
        self.nodes = list(g.node)
        self.names = [n.name for n in self.nodes]
        self.initializers = {i.name for i in g.initializer}
        self.graph_inputs = [i.name for i in g.input if i.name not in self.initializers]
        self.graph_outputs = [o.name for o in g.output]
        self.inputs = [node_inputs(n) for n in self.nodes]
        self.producer: dict[str, int] = {}
        for i, n in enumerate(self.nodes):
            for o in n.output:
                if o:
                    self.producer[o] = i
        self.consumers: dict[str, list[int]] = {}
        for i, ins in enumerate(self.inputs):
            for t in ins:
                self.consumers.setdefault(t, []).append(i)
        self.preds = [
            sorted({self.producer[t] for t in ins if t in self.producer}) for ins in self.inputs
        ]
        self.succs: list[list[int]] = [[] for _ in self.nodes]
        for i, ps in enumerate(self.preds):
            for p in ps:
                self.succs[p].append(i)

    def topo_order(self, labels: list[str] | None = None) -> list[int]:
        """Kahn's order; with ``labels``, stay on the current device while it has ready nodes."""
        indeg = [len(p) for p in self.preds]
        ready: dict[str, list[int]] = {}

        def push(i: int) -> None:
            heapq.heappush(ready.setdefault(labels[i] if labels else "", []), i)

        for i, d in enumerate(indeg):
            if d == 0:
                push(i)
        order: list[int] = []
        current = None
        while len(order) < len(self.nodes):
            live = {k: v for k, v in ready.items() if v}
            if not live:
                raise InputError("the model graph has a cycle; it is not a valid ONNX model")
            if current not in live:  # switch to the device of the earliest ready node
                current = min(live, key=lambda k: live[k][0])
            i = heapq.heappop(ready[current])
            order.append(i)
            for s in self.succs[i]:
                indeg[s] -= 1
                if indeg[s] == 0:
                    push(s)
        return order


def _absorb(dag: _Dag, labels: list[str], can_take: Any) -> tuple[list[str], dict[str, str]]:
    """Move constant-only and shape-only nodes to their first consumer's device."""
    const = set(dag.initializers)
    shape: set[str] = set()
    kind: dict[int, str] = {}
    order = dag.topo_order()
    for i in order:
        n = dag.nodes[i]
        ins = dag.inputs[i]
        has_body = any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute
        )
        if has_body or n.op_type in _RANDOM:
            continue
        if n.op_type == "Constant" or (ins and all(t in const for t in ins)):
            kind[i] = "constant-only"
            const.update(o for o in n.output if o)
        elif n.op_type in ("Shape", "Size") or (
            n.op_type in _SHAPE_ARITHMETIC
            and any(t in shape for t in ins)
            and all(t in shape or t in const for t in ins)
        ):
            kind[i] = "shape-only"
            shape.update(o for o in n.output if o)
    position = {i: k for k, i in enumerate(order)}
    out = list(labels)
    absorbed: dict[str, str] = {}
    for i in reversed(order):
        if i not in kind:
            continue
        users = sorted({c for o in dag.nodes[i].output for c in dag.consumers.get(o, [])},
                       key=position.__getitem__)  # fmt: skip
        if not users:
            continue
        target = out[users[0]]
        if target != out[i] and can_take(target, dag.names[i]):
            absorbed[dag.names[i]] = (
                f"{kind[i]}: moved from {out[i]} to {target}, the device of its consumer "
                f"{dag.names[users[0]]!r}"
            )
            out[i] = target
    return out, absorbed


def _runs(order: list[int], labels: list[str]) -> list[list[int]]:
    """Cut a topological order at every device change."""
    groups: list[list[int]] = []
    for i in order:
        if groups and labels[groups[-1][0]] == labels[i]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _bits(x: int):
    while x:
        low = x & -x
        yield low.bit_length() - 1
        x ^= low


def _merge(dag: _Dag, labels: list[str], groups: list[list[int]]) -> list[list[int]]:
    """Merge same-device groups wherever the quotient graph stays acyclic.

    ``groups`` must be in a topological order of the quotient graph. Transitive closure as
    bitsets: merging X and Y is safe iff no group lies on a path between them.
    """
    count = len(groups)
    group_of = {i: g for g, members in enumerate(groups) for i in members}
    succ: list[set[int]] = [set() for _ in range(count)]
    for i, ss in enumerate(dag.succs):
        for s in ss:
            if group_of[i] != group_of[s]:
                succ[group_of[i]].add(group_of[s])
    desc = [0] * count
    for g in range(count - 1, -1, -1):
        for s in succ[g]:
            desc[g] |= (1 << s) | desc[s]
    anc = [0] * count
    for g in range(count):
        for s in succ[g]:
            anc[s] |= (1 << g) | anc[g]
    members = [list(m) for m in groups]
    alive = [True] * count
    live = (1 << count) - 1  # bits of merged-away groups stay in the sets; masked out here
    device = [labels[m[0]] for m in groups]
    changed = True
    while changed:
        changed = False
        for i in range(count):
            if not alive[i]:
                continue
            for j in range(i + 1, min(count, i + 1 + _MERGE_WINDOW)):
                if not alive[j] or device[j] != device[i]:
                    continue
                di, dj, ai, aj = desc[i], desc[j], anc[i], anc[j]
                if (di & aj | dj & ai) & live:
                    continue  # a group between them would make the merged pair a cycle
                both = (1 << i) | (1 << j)
                # only groups related to one of the pair learn something new
                for z in _bits((ai ^ aj) & live & ~both):
                    desc[z] |= dj if ai >> z & 1 else (1 << i) | di
                for z in _bits((di ^ dj) & live & ~both):
                    anc[z] |= aj if di >> z & 1 else (1 << i) | ai
                desc[i], anc[i] = (di | dj) & ~both, (ai | aj) & ~both
                members[i] += members[j]
                alive[j] = False
                live &= ~(1 << j)
                changed = True
    return [members[g] for g in range(count) if alive[g]]


def _order_groups(dag: _Dag, groups: list[list[int]], position: dict[int, int]) -> list[list[int]]:
    """Groups in a topological order of the quotient graph; members in topological order."""
    group_of = {i: g for g, members in enumerate(groups) for i in members}
    succ: list[set[int]] = [set() for _ in groups]
    indeg = [0] * len(groups)
    for i, ss in enumerate(dag.succs):
        for s in ss:
            a, b = group_of[i], group_of[s]
            if a != b and b not in succ[a]:
                succ[a].add(b)
                indeg[b] += 1
    first = [min(position[i] for i in m) for m in groups]
    ready = [(first[g], g) for g in range(len(groups)) if indeg[g] == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, g = heapq.heappop(ready)
        out.append(sorted(groups[g], key=position.__getitem__))
        for s in succ[g]:
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(ready, (first[s], s))
    if len(out) != len(groups):  # would be a bug in _merge; never hand out a cyclic plan
        raise RuntimeError("internal error: partition produced a cyclic subgraph graph")
    return out


def group_nodes(
    model: onnx.ModelProto, assignments: Mapping[str, str], can_take: Any = None
) -> tuple[list[list[str]], list[str], dict[str, str], int]:
    """Node names grouped into acyclic same-device subgraphs (in execution order).

    Returns (groups, device of each group, absorbed node → reason, naive split count). ``model``
    must already have unique node names. ``can_take(device, node)`` says whether a device may
    receive an absorbed constant/shape node (default: always).
    """
    dag = _Dag(model)
    missing = [n for n in dag.names if n not in assignments]
    if missing:
        raise InputError(
            f"the affinity has no device for node {missing[0]!r} "
            f"({dag.nodes[dag.names.index(missing[0])].op_type}); was it computed for another "
            "model? Recompute it with workbench.affinity(model, devices)"
        )
    labels = [assignments[n] for n in dag.names]
    model_order = list(range(len(dag.nodes)))
    if any(p >= i for i, ps in enumerate(dag.preds) for p in ps):
        model_order = dag.topo_order()
    naive = _runs(model_order, labels)
    absorbed_labels, absorbed = _absorb(dag, labels, can_take or (lambda d, n: True))
    candidates = [
        (absorbed_labels, _runs(dag.topo_order(absorbed_labels), absorbed_labels), absorbed),
        (absorbed_labels, _runs(model_order, absorbed_labels), absorbed),
        (labels, _runs(dag.topo_order(labels), labels), {}),
        (labels, naive, {}),
    ]
    best = None
    for lab, seed, absd in candidates:
        merged = _merge(dag, lab, seed)
        if best is None or len(merged) < len(best[1]):
            best = (lab, merged, absd)
        if len(best[1]) < len(naive):  # the later seeds only guard against losing to naive
            break
    lab, merged, absd = best  # type: ignore[misc]
    position = {i: k for k, i in enumerate(dag.topo_order())}
    ordered = _order_groups(dag, merged, position)
    return (
        [[dag.names[i] for i in g] for g in ordered],
        [lab[g[0]] for g in ordered],
        absd,
        len(naive),
    )


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Subgraph(Result):
    """One device's share of the model: its nodes, I/O and the bytes it receives."""

    name: str
    device: str
    simulated: bool
    nodes: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    boundary_inputs: tuple[str, ...]  # inputs produced by another subgraph
    boundary_bytes: int | None  # bytes of boundary_inputs when shapes are static
    model: onnx.ModelProto = field(repr=False)

    _summary_exclude = ("model",)

    @property
    def label(self) -> str:
        return f"{self.name} · {self.device}" + (" (simulated)" if self.simulated else "")


@dataclass(frozen=True)
class SubgraphProfile(Result):
    """Timing of one subgraph over the profiled runs."""

    subgraph: str
    device: str
    simulated: bool
    precision_ran: str
    nodes: int
    median_ms: float
    mean_ms: float
    simulated_ms: float  # median_ms / the profile's speed factor (real devices: median_ms)
    boundary_bytes: int  # bytes received from other subgraphs per run
    bytes_out: int  # bytes handed to other subgraphs or returned per run
    #: roofline estimate for simulated devices (transfers into it included); None when real
    estimated_ms: float | None = None


@dataclass(frozen=True)
class PartitionProfile(Result):
    """Per-subgraph time and boundary bytes (the per-subgraph perf counters of HETERO)."""

    model: str
    runs: int
    rows: tuple[SubgraphProfile, ...]
    total_ms: float  # median end-to-end time of the chained run
    boundary_bytes: int
    notes: tuple[str, ...] = ()
    #: measured real subgraphs + estimated simulated ones (labelled *estimated*), or None
    estimated_total_ms: float | None = None

    def summary_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "subgraph": r.subgraph,
                "device": r.device + (" (simulated)" if r.simulated else ""),
                "ran": r.precision_ran,
                "nodes": r.nodes,
                "median ms": r.median_ms,
                "simulated ms": r.simulated_ms,
                "estimated ms": r.estimated_ms,
                "boundary bytes in": r.boundary_bytes,
                "bytes out": r.bytes_out,
            }
            for r in self.rows
        ]

    def plot(self):
        """Bar plot of median time per subgraph; simulated devices highlighted."""
        values = {f"{r.subgraph} · {r.device}": r.median_ms for r in self.rows}
        simulated = {f"{r.subgraph} · {r.device}" for r in self.rows if r.simulated}
        top = 20
        shown = f", slowest {top} of {len(values)}" if len(values) > top else ""
        return ranking_plot(
            values,
            title=f"{self.model}: time per subgraph (median of {self.runs} runs, CPU{shown})",
            top=top,
            xlabel="ms",
            highlight=simulated,
            highlight_label="simulated device (run on CPU)",
        )

    def _repr_html_(self) -> str:
        table = html_table(
            self.summary_rows(),
            title=f"{self.model}: {len(self.rows)} subgraphs, {self.total_ms:.3f} ms end to end, "
            f"{self.boundary_bytes:,} boundary bytes per run",
        )
        return table + figure_svg(self.plot())


def _nbytes(vi: Any) -> int | None:
    """Bytes of an onnx_ir value with a static shape and known dtype, else None."""
    if vi.type is None or vi.shape is None or not vi.shape.is_static():
        return None
    return int(int(np.prod([int(d) for d in vi.shape], dtype=np.int64)) * vi.dtype.itemsize)


@dataclass(frozen=True)
class PartitionedModel(Result):
    """A model cut into acyclic per-device subgraphs, runnable as a chain."""

    model: str
    devices: tuple[Device, ...]
    subgraphs: tuple[Subgraph, ...]
    inputs: dict[str, int]  # graph input → ONNX element type
    outputs: tuple[str, ...]
    naive_count: int  # subgraphs when splitting at every device change in model order
    absorbed: dict[str, str]
    ops: dict[str, str]  # node → op type (for renders)
    tensors: dict[str, str]  # boundary tensor → "dtype[shape] · bytes" (for renders)
    hint: str = ""  # the execution hint every subgraph opens with ("" = default)

    _summary_exclude = ("subgraphs", "ops", "tensors", "absorbed", "devices")

    def __post_init__(self) -> None:
        object.__setattr__(self, "_runners", None)  # opened lazily; not part of the value

    def device(self, name: str) -> Device:
        for d in self.devices:
            if d.name == name:
                return d
        raise KeyError(name)

    def summary_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "subgraph": s.name,
                "device": s.device + (" (simulated)" if s.simulated else ""),
                "nodes": len(s.nodes),
                "inputs": ", ".join(s.inputs),
                "outputs": ", ".join(s.outputs),
                "boundary bytes": s.boundary_bytes,
            }
            for s in self.subgraphs
        ]

    def _repr_html_(self) -> str:
        return html_table(
            self.summary_rows(),
            title=f"{self.model}: {len(self.subgraphs)} subgraphs "
            f"(splitting at every device change: {self.naive_count})",
        )

    # -- execution

    def _check_feeds(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        specs = {k: onnx_to_numpy_dtype(v) for k, v in self.inputs.items()}
        return prepare_feeds(feeds, specs, f"partitioned model {self.model!r}")

    def _open(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        """One runner per subgraph; int8 profiles calibrate on these feeds' boundary values."""
        cached = self._runners
        if cached is not None:
            return cached

        need_calibration = any(
            d.backend == "profile" and profile_of(d).precision == "int8" for d in self.devices
        )
        env = dict(feeds)
        runners = []
        with task(f"open {len(self.subgraphs)} subgraph sessions", len(self.subgraphs)) as t:
            for sg in self.subgraphs:
                dev = self.device(sg.device)
                sub = {n: env[n] for n in sg.inputs} if need_calibration else {}
                with quiet():  # conversions inside show no bars of their own
                    if dev.backend == "profile":
                        calibration = Dataset([sub]) if need_calibration else None
                        runner = open_profile(
                            sg.model, dev, as_hint(self.hint or None), calibration=calibration
                        )
                    else:
                        runner = open_runner(sg.model, dev, self.hint or None)
                if need_calibration:  # float reference values calibrate the next int8 part
                    reference = open_runner(sg.model, "cpu")
                    env.update(reference(sub))
                    reference.close()
                runners.append(runner)
                t.update()
        object.__setattr__(self, "_runners", runners)
        return runners

    def close(self) -> None:
        """Release the subgraph sessions."""
        for r in self._runners or ():
            r.close()
        object.__setattr__(self, "_runners", None)

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run the subgraphs in order, each on its device; returns the model's outputs."""
        env: dict[str, Any] = self._check_feeds(feeds)
        for sg, runner in zip(self.subgraphs, self._open(env), strict=True):
            env.update(runner({n: env[n] for n in sg.inputs}))
        return {o: env[o] for o in self.outputs}

    __call__ = run

    def profile(
        self, feeds: Mapping[str, Any], runs: int = 20, warmup: int = 2
    ) -> PartitionProfile:
        """Median time of every subgraph over ``runs`` chained runs, and bytes crossing boundaries."""
        if runs < 1:
            raise InputError(f"profile needs runs >= 1, got {runs}")
        feeds = self._check_feeds(feeds)
        runners = self._open(feeds)
        times, totals, env = self._time_chain(feeds, runners, runs, warmup)
        rows = self._profile_rows(runners, times, env)
        notes = tuple(
            f"{sg.name} on {sg.device}: {note}"
            for sg, r in zip(self.subgraphs, runners, strict=True)
            for note in r.notes
        )
        return PartitionProfile(
            model=self.model,
            runs=runs,
            rows=tuple(rows),
            total_ms=float(np.median(totals) * 1e3),
            boundary_bytes=sum(r.boundary_bytes for r in rows),
            notes=notes,
            estimated_total_ms=_estimated_total(rows),
        )

    def _time_chain(
        self, feeds: dict[str, np.ndarray], runners: list[Any], runs: int, warmup: int
    ) -> tuple[list[list[float]], list[float], dict[str, Any]]:
        """Seconds per subgraph and per chained run, and the values of the last run."""
        times: list[list[float]] = [[] for _ in self.subgraphs]
        totals: list[float] = []
        clock = time.perf_counter
        env: dict[str, Any] = {}
        with task("profile subgraphs", warmup + runs) as t:
            for k in range(warmup + runs):
                env = dict(feeds)
                start = clock()
                for i, (sg, runner) in enumerate(zip(self.subgraphs, runners, strict=True)):
                    prepared = runner.prepare({n: env[n] for n in sg.inputs})
                    t0 = clock()
                    outs = runner.run_prepared(prepared)
                    if k >= warmup:
                        times[i].append(clock() - t0)
                    env.update(zip(runner.output_names, outs, strict=True))
                if k >= warmup:
                    totals.append(clock() - start)
                t.update()
        return times, totals, env

    def _profile_rows(
        self, runners: list[Any], times: list[list[float]], env: Mapping[str, Any]
    ) -> list[SubgraphProfile]:
        outputs_used = set(self.outputs)
        crossing = {n for sg in self.subgraphs for n in sg.boundary_inputs}
        rows = []
        for sg, runner, ts in zip(self.subgraphs, runners, times, strict=True):
            dev = self.device(sg.device)
            ms = np.asarray(ts) * 1e3
            out_names = [n for n in sg.outputs if n in crossing or n in outputs_used]
            rows.append(
                SubgraphProfile(
                    subgraph=sg.name,
                    device=sg.device,
                    simulated=sg.simulated,
                    precision_ran=runner.precision_ran,
                    nodes=len(sg.nodes),
                    median_ms=float(np.median(ms)),
                    mean_ms=float(ms.mean()),
                    simulated_ms=float(np.median(ms)) / _speed(dev),
                    estimated_ms=_estimate(sg, dev, env),
                    boundary_bytes=int(sum(np.asarray(env[n]).nbytes for n in sg.boundary_inputs)),
                    bytes_out=int(sum(np.asarray(env[n]).nbytes for n in out_names)),
                )
            )
        return rows


def _estimate(sg: Subgraph, dev: Device, env: Mapping[str, Any]) -> float | None:
    """Roofline estimate of a simulated subgraph, with one transfer per boundary tensor."""
    if dev.backend != "profile":
        return None
    shapes = {n: np.asarray(env[n]).shape for n in sg.inputs}
    moved = [np.asarray(env[n]).nbytes for n in sg.boundary_inputs]
    return estimate_latency(sg.model, profile_of(dev), input_shapes=shapes,
                            boundary_bytes=moved).latency_ms  # fmt: skip


def _estimated_total(rows: list[SubgraphProfile]) -> float | None:
    """Measured real subgraphs plus estimated simulated ones (None without simulated ones)."""
    if not any(r.estimated_ms is not None for r in rows):
        return None
    return float(sum(r.estimated_ms if r.estimated_ms is not None else r.median_ms for r in rows))


def _speed(device: Device) -> float:
    if device.backend != "profile":
        return 1.0

    return profile_of(device).speed


# --------------------------------------------------------------------------- partition


def _type_text(value: Any) -> str:
    dtype = dtype_name(int(value.dtype)) if value.dtype is not None else "?"
    dims = "?" if value.shape is None else ",".join(str(d) for d in value.shape)
    return f"{dtype}[{dims}]"


def _absorb_rule(m: onnx.ModelProto, devices: Mapping[str, Device]) -> Any:
    """``can_take(device, node)``: may ``device`` receive an absorbed constant/shape node?"""
    reports: dict[str, Any] = {}

    def can_take(device: str, node: str) -> bool:
        dev = devices[device]
        if dev.simulated:  # shape/constant work is folded or done on the host there
            return True
        if device not in reports:
            reports[device] = query_model(m, dev)
        return reports[device].is_supported(node)

    return can_take


class _Extractor:
    """Cuts node groups out of one model as standalone subgraph models (onnx_ir views)."""

    def __init__(self, m: onnx.ModelProto, groups: list[list[str]]):
        self.m = m
        self.ir_model = inferred_ir(m, data_prop=True)  # tensor-free: fine beyond 2 GB
        self.values = ir.convenience.create_value_mapping(self.ir_model.graph)
        self.ir_nodes = {node.name: node for node in self.ir_model.graph}
        self.dag = _Dag(m)
        self.index = {n: i for i, n in enumerate(self.dag.names)}
        self.graph_outputs = set(self.dag.graph_outputs)
        self.owner: dict[str, int] = {}  # tensor → index of the group producing it
        for k, g in enumerate(groups):
            for name in g:
                for o in self.dag.nodes[self.index[name]].output:
                    if o:
                        self.owner[o] = k

    def io(self, k: int, names: list[str]) -> tuple[list[str], list[str], list[str]]:
        """Inputs, outputs and initializers of group ``k`` (its nodes ``names``)."""
        dag, members = self.dag, set(names)
        ins: list[str] = []
        for name in names:
            for t in dag.inputs[self.index[name]]:
                if t not in dag.initializers and self.owner.get(t) != k and t not in ins:
                    ins.append(t)
        outs = [
            o
            for name in names
            for o in dag.nodes[self.index[name]].output
            if o
            and (
                o in self.graph_outputs
                or any(dag.names[c] not in members for c in dag.consumers.get(o, []))
            )
        ]
        inits = dict.fromkeys(
            t for name in names for t in dag.inputs[self.index[name]] if t in dag.initializers
        )
        return ins, outs, list(inits)

    def model(self, names: list[str], ins: list[str], outs: list[str], inits: list[str],
              graph_name: str) -> onnx.ModelProto:  # fmt: skip
        """The group as a model: the view onnx_ir's extract() builds, without its whole-graph
        scan per subgraph."""
        graph = self.ir_model.graph
        sub = ir.GraphView(
            [self.values[t] for t in ins],
            [self.values[t] for t in outs],
            nodes=[self.ir_nodes[name] for name in names],
            initializers=[self.values[t] for t in inits],
            opset_imports=graph.opset_imports,
        ).clone()
        for v in sub.inputs:
            if v.type is None:
                raise UnsupportedError(
                    f"tensor {v.name!r} crosses from one device to another but its type "
                    "is unknown (shape inference failed); add value_info for it"
                )
        sub.name = graph_name
        sub_model = ir.Model(
            sub,
            ir_version=self.ir_model.ir_version,
            producer_name="precision-workbench partition",
            functions=list(self.ir_model.functions.values()),
        )
        return ir.serde.serialize_model(sub_model)

    def boundary(
        self, ins: list[str], tensors: dict[str, str]
    ) -> tuple[tuple[str, ...], int | None]:
        """Inputs produced by another group, and their bytes (None with a dynamic shape);
        records each one's "dtype[shape] · bytes" label in ``tensors``."""
        boundary = tuple(n for n in ins if n in self.owner)
        sizes = [_nbytes(self.values[n]) for n in boundary]
        for n, size in zip(boundary, sizes, strict=True):
            tensors[n] = f"{_type_text(self.values[n])} · {format_bytes(size)}"
        return boundary, None if None in sizes else int(sum(sizes))  # type: ignore[arg-type]


def _whole(m: onnx.ModelProto, names: list[str], device: Device) -> Subgraph:
    """The whole model as the only subgraph (works for models onnx-ir cannot read, e.g. maps)."""
    initializers = {i.name for i in m.graph.initializer}
    sub = onnx.ModelProto()
    sub.CopyFrom(m)
    sub.graph.name = f"{m.graph.name or 'model'}_sg0_{device.name}"
    return Subgraph(
        name="sg0",
        device=device.name,
        simulated=device.simulated,
        nodes=tuple(names),
        inputs=tuple(i.name for i in m.graph.input if i.name not in initializers),
        outputs=tuple(o.name for o in m.graph.output),
        boundary_inputs=(),
        boundary_bytes=0,
        model=sub,
    )


def _extract(
    m: onnx.ModelProto,
    groups: list[list[str]],
    group_devices: list[str],
    devices: Mapping[str, Device],
) -> tuple[list[Subgraph], dict[str, str]]:
    """One Subgraph per group that feeds anything (dead groups are dropped)."""
    if len(groups) == 1:  # one device takes everything: the model itself, nothing to cut
        return [_whole(m, groups[0], devices[group_devices[0]])], {}
    ex = _Extractor(m, groups)
    subgraphs: list[Subgraph] = []
    tensors: dict[str, str] = {}
    with task(f"extract {len(groups)} subgraphs", len(groups)) as t:
        for k, (names, device) in enumerate(zip(groups, group_devices, strict=True)):
            ins, outs, inits = ex.io(k, names)
            t.update()
            if not outs:  # dead code: nothing downstream needs it
                continue
            graph_name = f"{m.graph.name or 'model'}_sg{len(subgraphs)}_{device}"
            proto = ex.model(names, ins, outs, inits, graph_name)
            boundary, nbytes = ex.boundary(ins, tensors)
            subgraphs.append(
                Subgraph(
                    name=f"sg{len(subgraphs)}",
                    device=device,
                    simulated=devices[device].simulated,
                    nodes=tuple(names),
                    inputs=tuple(ins),
                    outputs=tuple(outs),
                    boundary_inputs=boundary,
                    boundary_bytes=nbytes,
                    model=proto,
                )
            )
    return subgraphs, tensors


def partition(
    model: onnx.ModelProto | str | os.PathLike[str],
    affinity: Affinity,
    hint: Hint | str | None = None,
) -> PartitionedModel:
    """Cut ``model`` into as few acyclic same-device subgraphs as possible (see module doc).

    ``hint`` is the execution hint each subgraph is opened with when the model runs.
    """
    if not isinstance(affinity, Affinity):
        raise InputError(
            f"partition needs an Affinity from workbench.affinity(), got {type(affinity).__name__}"
        )
    m = ensure_node_names(model if isinstance(model, onnx.ModelProto) else load_model(model))
    devices = {d.name: d for d in affinity.devices}
    groups, group_devices, absorbed, naive = group_nodes(
        m, affinity.assignments, _absorb_rule(m, devices)
    )
    subgraphs, tensors = _extract(m, groups, group_devices, devices)
    initializers = {i.name for i in m.graph.initializer}
    return PartitionedModel(
        model=m.graph.name or "model",
        devices=tuple(affinity.devices),
        subgraphs=tuple(subgraphs),
        inputs={
            i.name: i.type.tensor_type.elem_type
            for i in m.graph.input
            if i.name not in initializers
        },
        outputs=tuple(o.name for o in m.graph.output),
        naive_count=naive,
        absorbed=absorbed,
        ops={n.name: n.op_type for n in m.graph.node},
        tensors=tensors,
        hint=as_hint(hint).label if hint is not None else "",
    )
