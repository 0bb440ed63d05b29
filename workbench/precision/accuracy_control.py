"""int8 within a maximum accuracy drop: revert the fewest nodes to float, found by ranked search.

Three named steps, after starting from exactly the model :func:`quantize_int8` makes with the
same options (same bytes; its sha256 is in the result):

1. **rank** — every quantized node's own impact, in one pass: a single instrumented ONNX Runtime
   session (:class:`BypassProbe`) switches each quantized tensor between its Q/DQ value and its
   float value, so "only node *j* in int8" is one run per item, not one quantization per node.
   The top few are re-measured with the real per-node quantization (``verify_top``).
2. **search** — galloping then binary search over how many top-ranked nodes to revert
   (``log2`` validation calls, not one per node).
3. **prune** — a leave-one-out pass over the chosen set drops nodes that are not needed and
   measures each remaining node's gain.

Reverting re-quantizes with ``nodes_to_exclude`` (Q/DQ stay where ORT fuses them) and gives
reverted Conv/Gemm their own DequantizeLinear so ORT does not re-quantize them at load time
(see :func:`workbench.precision.int8.keep_float`). An unreachable target raises
:class:`AccuracyNotReachedError` carrying the best result — a float model is never returned.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx import numpy_helper

from ..data import Dataset, as_dataset
from ..errors import AccuracyNotReachedError, InputError, OperationCancelled, WorkbenchError
from ..figures import figure_svg, ranking_plot
from ..model import model_digest
from ..progress import check_cancelled, quiet, task, track
from ..results import Result, html_table
from ..runtime import call_validation, open_runner, prepare_feeds
from ..runtime.base import RunConfig
from ..runtime.ort import _np_type, make_session, session_options
from ..tensor_types import inferred_ir
from .int8 import (
    DEFAULT_CALIBRATION,
    Int8Quantizer,
    int8_model,
    output_noise,
    quantized_nodes,
    run_outputs,
)

DROP_TYPES = ("absolute", "relative")
#: ``ranking=`` methods: one instrumented session, or one real quantization per node (reference)
RANKINGS = ("one-pass", "per-node")
_SELECT = "__wb_int8_select"


@dataclass(frozen=True)
class AccuracyControlResult(Result):
    """Outcome of :func:`quantize_with_accuracy_control`.

    ``reverted_nodes`` lists ``(node, gain)`` in revert order, ``gain`` being the measured metric
    lost when that node is quantized again; ``ranking`` maps every quantized node to its
    measured impact (output noise power, % of the signal, with only that node in int8).
    ``start_sha256`` identifies the starting model: :func:`quantize_int8`'s, same options.
    """

    model: onnx.ModelProto
    baseline_metric: float
    quantized_metric: float
    final_metric: float
    drop: float
    max_drop: float
    drop_type: str
    reverted_nodes: tuple[tuple[str, float], ...]
    ranking: dict[str, float]
    evaluations: int
    seconds: float
    int8_nodes: int = 0
    history: tuple[dict[str, Any], ...] = ()
    notes: tuple[str, ...] = ()
    start_sha256: str = ""
    reduce_range: bool | None = None
    ranking_seconds: float = 0.0

    _summary_exclude = ("ranking", "history")

    @property
    def reverted(self) -> tuple[str, ...]:
        """Names of the nodes left in float, in revert order."""
        return tuple(name for name, _ in self.reverted_nodes)

    def plot(self, top: int = 20) -> Any:
        """Bar chart of the impact ranking; reverted nodes in red (matplotlib Figure)."""
        return _plot(self, top)

    def summary_rows(self) -> list[dict[str, Any]]:
        reverted = ", ".join(f"{n} ({_gain_text(g)})" for n, g in self.reverted_nodes) or "none"
        return [
            {"field": "float baseline", "value": f"{self.baseline_metric:.6g}"},
            {"field": "all int8 (quantize_int8)", "value": f"{self.quantized_metric:.6g}"},
            {"field": "final", "value": f"{self.final_metric:.6g}"},
            {
                "field": "drop",
                "value": f"{self.drop:.4g} ({self.drop_type}, max {self.max_drop:.4g})",
            },
            {"field": "reverted to float", "value": reverted},
            {"field": "int8 nodes", "value": str(self.int8_nodes)},
            {"field": "reduce_range", "value": str(self.reduce_range)},
            {"field": "evaluations", "value": str(self.evaluations)},
            {"field": "seconds", "value": f"{self.seconds:.2f}"},
            *({"field": "note", "value": n} for n in self.notes),
        ]

    def _repr_html_(self) -> str:
        table = html_table(self.summary_rows(), title="AccuracyControlResult")
        if not self.ranking:
            return table
        return table + "<div>" + figure_svg(self.plot()) + "</div>"


def _plot(result: AccuracyControlResult, top: int = 20) -> Any:
    return ranking_plot(
        result.ranking,
        "int8 impact per node (accuracy control)",
        "output noise power with only this node in int8 (% of signal)",
        top=top,
        highlight=frozenset(result.reverted),
        highlight_label="reverted to float",
    )


class _Evaluations:
    """Validation calls with a cache keyed by the reverted set, and the drop arithmetic."""

    def __init__(
        self,
        quantizer: Int8Quantizer,
        validation_fn: Callable[[Any, Any], Any],
        validation_dataset: Any,
        max_drop: float,
        drop_type: str,
        fixed: tuple[str, ...],
        progress: Any,
    ):
        self.q = quantizer
        self.fn = validation_fn
        self.data = validation_dataset
        self.max_drop = max_drop
        self.drop_type = drop_type
        self.fixed = fixed  # excluded by the caller or kept float by quantize_int8's auto_float
        self.auto: tuple[str, ...] = ()  # of those, the ones auto_float kept
        self.progress = progress
        self.cache: dict[frozenset[str], float] = {}
        self.evaluations = 0
        self.baseline = math.nan
        self.history: list[dict[str, Any]] = []

    def evaluate_model(self, model: onnx.ModelProto, label: str, reverted: int) -> float:
        runner = open_runner(model, "cpu")
        try:
            value = call_validation(self.fn, runner, self.data)
        finally:
            runner.close()
        self.evaluations += 1
        self.progress.update(postfix=f"{label}: {value:.4g}")
        if not math.isnan(self.baseline):
            self.history.append(
                {
                    "reverted": reverted,
                    "metric": value,
                    "drop": self.drop(value),
                    "ok": self.ok(value),
                }
            )
        return value

    def model(self, reverted: Iterable[str]) -> onnx.ModelProto:
        """The int8 model with ``reverted`` (and the fixed nodes) in float."""
        return self.q.quantize(self.fixed + tuple(sorted(reverted)), auto_float=self.auto)

    def metric(self, reverted: Iterable[str]) -> float:
        """Metric with ``reverted`` in float; NaN (never passing) when nothing int8 is left."""
        key = frozenset(reverted)
        if key not in self.cache:
            model = self.model(key)
            if not quantized_nodes(model):
                # e.g. only a Flatten left between float neighbours: ORT leaves it float too,
                # so this is a float model — not an answer, and not worth an evaluation
                self.cache[key] = math.nan
                self.history.append(
                    {"reverted": len(key), "metric": math.nan, "drop": math.nan, "ok": False}
                )
            else:
                self.cache[key] = self.evaluate_model(model, f"{len(key)} reverted", len(key))
        return self.cache[key]

    def drop(self, value: float) -> float:
        d = self.baseline - value
        if self.drop_type == "relative":
            d = d / abs(self.baseline) if self.baseline else (0.0 if d == 0 else math.inf)
        return d

    def ok(self, value: float) -> bool:
        # a tiny tolerance keeps max_drop=0 reachable when int8 matches float up to rounding
        return self.drop(value) <= self.max_drop + 1e-12


# --------------------------------------------------------------------------- step 1: rank


class BypassProbe:
    """One ORT session running any set of quantized nodes in int8 and the rest in float.

    Built from the QDQ model: every use of a ``DequantizeLinear`` output becomes
    ``Where(select[t], dq_output, float_value)``, the float value being the tensor the
    ``QuantizeLinear`` read (activations) or the float weight of the prepared model (constants).
    A tensor is int8 when any of its owners (the quantized nodes reading it, and the node
    producing it) is in the int8 set. A Relu/Clip that ORT folded into a Q range is put back on
    the float path; the probe is only trusted when, with every node float, it reproduces the
    float model. Q/DQ is simulated in float (no integer kernels, no fusion: optimizations are
    off), which is why accuracy control re-measures the top of the ranking with real quantized
    models. Same switch-by-input design as the float16 rounding probe
    (:func:`workbench.precision._instrument.rounding_probe`).
    """

    def __init__(
        self,
        qdq: onnx.ModelProto,
        prepared: onnx.ModelProto,
        candidates: Sequence[str],
        model_dir: str | None = None,
    ):
        # ``prepared`` may be light: its float weights are then referenced in ``model_dir``
        # (ORT reads them from there), never loaded here
        self._model_dir = model_dir
        m = inferred_ir(qdq)  # element types on intermediate values
        self._graph = m.graph
        self._candidates = frozenset(candidates)
        self._prepared_nodes = {n.name: n for n in prepared.graph.node}
        self._prepared_producer = {o: n for n in prepared.graph.node for o in n.output}
        self._prepared_inits = {i.name: i for i in prepared.graph.initializer}
        self._select = ir.Value(name=_SELECT, type=ir.TensorType(ir.DataType.BOOL))
        self.owners: list[frozenset[str]] = []
        for dq in list(self._graph):
            if dq.op_type == "DequantizeLinear":
                self._switch(dq)
        self._select.shape = ir.Shape([len(self.owners)])
        self._graph.inputs.append(self._select)
        options = session_options(None, RunConfig(model_dir=model_dir))
        # a measuring device: nothing may fuse its Q/DQ away; unoptimized sessions start fast
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self._session = make_session(ir.to_proto(m), options=options)
        inputs = self._session.get_inputs()
        self._specs = {i.name: _np_type(i.type) for i in inputs if i.name != _SELECT}
        self._names = [o.name for o in self._session.get_outputs()]

    def _float_value(self, dq: ir.Node, uses: list[Any]) -> ir.Value | None:
        """The float tensor behind ``dq`` (None when it cannot be found: no switch)."""
        src = dq.inputs[0]
        producer = src.producer() if src is not None else None
        if producer is not None and producer.op_type == "QuantizeLinear":
            return self._restore_folded(producer.inputs[0])
        for use in uses:  # a quantized constant: the prepared model's float initializer
            node = self._prepared_nodes.get(use.node.name)
            if node is not None and use.idx < len(node.input):
                init = self._prepared_inits.get(node.input[use.idx])
                if init is not None and init.data_type == onnx.TensorProto.FLOAT:
                    value = ir.Value(
                        name=f"__wb_float_{len(self.owners)}_{init.name}",
                        # an external weight stays a reference (read lazily, by ORT)
                        const_value=ir.serde.deserialize_tensor(init, self._model_dir or ""),
                    )
                    value.dtype, value.shape = ir.DataType.FLOAT, ir.Shape(tuple(init.dims))
                    self._graph.register_initializer(value)
                    return value
        return None

    def _restore_folded(self, value: ir.Value) -> ir.Value:
        """``value`` through the Relu/Clip ORT folded into its Q range (uint8 zero point).

        The quantizer drops a Relu/Clip after Conv/MatMul and gives its output name to the
        producer's output; the float path must apply it again.
        """
        folded = self._prepared_producer.get(value.name)
        mine = value.producer()
        if folded is None or mine is None or folded.name == mine.name:
            return value
        if folded.op_type not in ("Relu", "Clip"):
            raise ValueError(f"{value.name!r}: producer {folded.name!r} of the float model is gone")
        inputs: list[ir.Value | None] = [value]
        for name in folded.input[1:]:  # Clip's min/max (constants in the prepared model)
            init = self._prepared_inits.get(name)
            if name and init is None:
                raise ValueError(f"Clip {folded.name!r} has a non-constant bound {name!r}")
            bound = None
            if init is not None:
                bound = ir.Value(
                    name=f"__wb_int8_bound{len(self.owners)}_{name}",
                    const_value=ir.tensor(numpy_helper.to_array(init)),
                )
                self._graph.register_initializer(bound)
            inputs.append(bound)
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in folded.attribute}
        node = ir.node(folded.op_type, inputs, attributes, name=f"__wb_int8_{folded.name}")
        node.outputs[0].dtype = value.dtype
        self._graph.insert_after(mine, node)
        return node.outputs[0]

    def _producing_candidate(self, value: ir.Value) -> str | None:
        """The candidate whose output ``value`` is, looking through Relu/Clip and Q/DQ."""
        for _ in range(8):
            node = value.producer()
            if node is None:
                return None
            if node.name in self._candidates:
                return node.name
            if node.op_type not in ("Relu", "Clip", "QuantizeLinear", "DequantizeLinear"):
                return None
            value = node.inputs[0]
        return None

    def _switch(self, dq: ir.Node) -> None:
        out = dq.outputs[0]
        uses = list(out.uses())
        owners = {u.node.name for u in uses if u.node.name in self._candidates}
        value = self._float_value(dq, uses)
        if value is None or out.dtype not in (None, value.dtype):
            return
        if (owner := self._producing_candidate(value)) is not None:
            owners.add(owner)
        # no candidate owner (e.g. read only by an op ORT quantizes but that is not a whole
        # int8 node): switched too, always float, so "all float" really is the float model
        j = len(self.owners)
        self.owners.append(frozenset(owners))
        index = ir.Value(name=f"__wb_int8_j{j}", const_value=ir.tensor(np.array(j, np.int64)))
        self._graph.register_initializer(index)
        cond = ir.node("Gather", [self._select, index], name=f"__wb_int8_sel{j}")
        where = ir.node("Where", [cond.outputs[0], out, value], name=f"__wb_int8_where{j}")
        where.outputs[0].dtype = value.dtype
        self._graph.insert_after(dq, [cond, where])
        for use in uses:
            use.node.replace_input_with(use.idx, where.outputs[0])
        if out.is_graph_output():  # the output keeps its name, on the switched value
            pos = [id(v) for v in self._graph.outputs].index(id(out))
            name, out.name = out.name, f"__wb_int8_raw{j}"
            where.outputs[0].name = name
            self._graph.outputs[pos] = where.outputs[0]

    def run(self, int8: Iterable[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs with the nodes ``int8`` quantized and every other candidate in float."""
        chosen = frozenset(int8)
        fd = prepare_feeds(feeds, self._specs)
        fd[_SELECT] = np.array([bool(o & chosen) for o in self.owners], dtype=bool)
        return list(self._session.run(None, fd))


def _rank_per_node(
    q: Int8Quantizer,
    candidates: list[str],
    feeds: list[dict[str, np.ndarray]],
    fixed: tuple[str, ...],
    reference: list[list[np.ndarray]],
    measured: Sequence[str] | None = None,
) -> dict[str, float]:
    """Impact of each ``measured`` candidate (default all) on the real model with only it int8.

    One ``quantize_static`` and one session per node: the reference method (and the check of
    the one-pass ranking's top entries).
    """
    impact: dict[str, float] = {}
    for name in track(list(measured or candidates), "int8 ranking (real model per node)"):
        others = tuple(n for n in candidates if n != name)
        model = q.quantize(fixed + others)
        impact[name] = 100.0 * output_noise(run_outputs(model, feeds), reference)
    return impact


def _rank_one_pass(
    probe: BypassProbe,
    candidates: list[str],
    feeds: list[dict[str, np.ndarray]],
    reference: list[list[np.ndarray]],
) -> dict[str, float]:
    """Impact of each candidate with only it in int8, from one instrumented session.

    Raises ValueError when the probe with every candidate in float does not reproduce the float
    model (``reference``): its numbers would not mean what they claim.
    """
    float_run = [probe.run((), f) for f in feeds]
    if output_noise(float_run, reference) > 1e-6:
        raise ValueError("the probe's float path does not reproduce the float model")
    batch = _one_batch(feeds, float_run, probe)
    if batch is not None:  # the same numbers from one run per candidate instead of one per item
        feeds, float_run = [batch], [probe.run((), batch)]
    impact: dict[str, float] = {}
    for name in track(candidates, "int8 ranking (one pass)"):
        check_cancelled()
        outputs = [probe.run((name,), f) for f in feeds]
        impact[name] = 100.0 * output_noise(outputs, float_run)
    return impact


def _probe_impact(
    start: onnx.ModelProto | None,
    q: Int8Quantizer,
    candidates: list[str],
    feeds: list[dict[str, np.ndarray]],
    fixed: tuple[str, ...],
    reference: list[list[np.ndarray]],
) -> tuple[dict[str, float], str]:
    """One-pass impact from the start model; from a model with Relu/Clip kept if that fails."""
    if start is not None:
        try:
            probe = BypassProbe(start, q.prepared, candidates, q.model_dir)
            return _rank_one_pass(probe, candidates, feeds, reference), "the start model"
        except OperationCancelled:
            raise
        except Exception:  # one more quantization: the same model with folded activations kept
            pass
    probe = BypassProbe(q.simulation_model(fixed), q.prepared, candidates, q.model_dir)
    return _rank_one_pass(probe, candidates, feeds, reference), "a Relu/Clip-keeping QDQ model"


def _one_batch(
    feeds: list[dict[str, np.ndarray]], reference: list[list[np.ndarray]], probe: BypassProbe
) -> dict[str, np.ndarray] | None:
    """``feeds`` stacked along axis 0 when that is provably a batch axis, else None.

    Only when every item has the same shapes and the stacked run reproduces every item's
    outputs (a model whose axis 0 is not a batch, e.g. a recurrent state, fails the check).
    """
    if len(feeds) < 2 or any(
        f.keys() != feeds[0].keys()
        or any(np.shape(f[k]) != np.shape(feeds[0][k]) or not np.ndim(f[k]) for k in f)
        for f in feeds
    ):
        return None
    batch = {k: np.concatenate([np.asarray(f[k]) for f in feeds]) for k in feeds[0]}
    try:
        stacked = probe.run((), batch)
    except Exception:  # a static batch dimension
        return None
    for i, outs in enumerate(stacked):
        parts = [r[i] for r in reference]
        if outs.shape[:1] != (sum(len(p) for p in parts),) or not np.allclose(
            outs, np.concatenate(parts), rtol=1e-4, atol=1e-5
        ):
            return None
    return batch


def rank(
    q: Int8Quantizer,
    candidates: list[str],
    feeds: list[dict[str, np.ndarray]],
    fixed: tuple[str, ...],
    method: str = "one-pass",
    verify_top: int = 3,
    start: onnx.ModelProto | None = None,
) -> tuple[dict[str, float], str]:
    """Step 1: each candidate's impact (output noise %, only it in int8) and how it was measured.

    ``one-pass`` ranks all candidates in one instrumented session, then re-measures the
    ``verify_top`` highest with real per-node quantizations; ``per-node`` measures every
    candidate that way. A probe that cannot be built falls back to ``per-node`` (noted).
    """
    with quiet():
        reference = run_outputs(q.prepared_path, feeds)
        if method == "per-node":
            return _rank_per_node(q, candidates, feeds, fixed, reference), "per node (reference)"
        try:
            impact, source = _probe_impact(start, q, candidates, feeds, fixed, reference)
        except WorkbenchError:
            raise
        except Exception as e:  # our probe failed on this graph: the plain per-node method
            how = f"per node (one-pass probe failed: {type(e).__name__}: {str(e)[:120]})"
            return _rank_per_node(q, candidates, feeds, fixed, reference), how
        top = sorted(candidates, key=lambda n: (-impact[n], candidates.index(n)))[:verify_top]
        real = _rank_per_node(q, candidates, feeds, fixed, reference, top) if top else {}
    how = (
        f"one pass ({len(candidates)} nodes, 1 session on {source}), top {len(top)} re-measured "
        "per node"
    )
    return {**impact, **real}, how


# --------------------------------------------------------------------------- step 2: search


def search(ev: _Evaluations, order: Sequence[str], limit: int) -> int | None:
    """Step 2: length of the shortest passing prefix of ``order`` (at most ``limit``), or None.

    Galloping (1, 2, 4, …) then binary search; reverting every node (a float model) is never a
    valid answer, and a prefix that leaves only float nodes evaluates to NaN (never passing).
    """
    found: int | None = None
    low, k = 0, 1
    top = min(limit, len(order) - 1)
    while k <= top:
        value = ev.metric(order[:k])
        if math.isnan(value):  # only float left: valid prefixes are shorter
            top = k - 1
            break
        if ev.ok(value):
            found = k
            break
        low = k
        k *= 2
    while found is None and top > low:  # the longest allowed prefix that is still int8
        value = ev.metric(order[:top])
        if not math.isnan(value):
            found = top if ev.ok(value) else None
            break
        top -= 1
    if found is None:
        return None
    lo, hi = low + 1, found
    while lo < hi:  # smallest passing prefix in (low, found]
        mid = (lo + hi) // 2
        if ev.ok(ev.metric(order[:mid])):
            hi = mid
        else:
            lo = mid + 1
    return hi


# --------------------------------------------------------------------------- step 3: prune


def prune_set(
    ev: _Evaluations, chosen: Sequence[str], order: Sequence[str], limit: int
) -> tuple[tuple[str, float], ...]:
    """Step 3: leave-one-out over ``chosen`` (when at most ``limit`` nodes), with each gain.

    Drops nodes the target does not need; a kept node's gain is the metric lost when it alone
    is quantized again (else the difference of the ranked prefixes ending before/at it).
    """
    chosen = list(chosen)
    gains: dict[str, float] = {}
    if len(chosen) <= limit:
        for name in reversed(list(chosen)):
            rest = [n for n in chosen if n != name]
            without = ev.metric(rest)
            if ev.ok(without):
                chosen = rest
            else:
                gains[name] = ev.metric(chosen) - without
    gains = {**_prefix_gains(chosen, order, ev.cache), **gains}
    return tuple((n, gains[n]) for n in chosen)


# --------------------------------------------------------------------------- the verb


@dataclass
class _Run:
    """What every result of one accuracy-control call shares."""

    q: Int8Quantizer
    ev: _Evaluations
    start: onnx.ModelProto
    quantized_metric: float
    max_drop: float
    drop_type: str
    started: float
    ranking: dict[str, float]
    notes: tuple[str, ...] = ()
    ranking_seconds: float = 0.0

    def result(self, reverted: tuple[tuple[str, float], ...]) -> AccuracyControlResult:
        names = tuple(n for n, _ in reverted)
        model = self.ev.model(names) if names else self.start
        final = self.ev.metric(names)
        q = self.q
        return AccuracyControlResult(
            model=model,
            baseline_metric=self.ev.baseline,
            quantized_metric=self.quantized_metric,
            final_metric=final,
            drop=self.ev.drop(final),
            max_drop=self.max_drop,
            drop_type=self.drop_type,
            reverted_nodes=reverted,
            ranking=self.ranking,
            evaluations=self.ev.evaluations,
            seconds=time.perf_counter() - self.started,
            int8_nodes=len(quantized_nodes(model)),
            history=tuple(self.ev.history),
            notes=(
                "started from quantize_int8's model with the same options "
                f"(sha256 {_sha256(self.start)[:16]}…)",
                f"calibration: {q.calibration}, per_channel={q.per_channel}, "
                f"reduce_range={q.reduce_range} ({q.reduce_range_reason}); "
                f"preparation: {q.prepare_note}",
                *self.notes,
                *dict.fromkeys(q.notes),
            ),
            start_sha256=_sha256(self.start),
            reduce_range=q.reduce_range,
            ranking_seconds=self.ranking_seconds,
        )

    def not_reached(self, order: Sequence[str], limit: int, max_reverted: int | None) -> None:
        """Raise :class:`AccuracyNotReachedError` with the best int8 result found."""
        cache = self.ev.cache
        best_set = max(
            (s for s in cache if len(s) <= limit and not math.isnan(cache[s])),
            key=lambda s: (cache[s], -len(s)),
        )
        names = tuple(n for n in order if n in best_set)
        gains = _prefix_gains(names, order, cache)
        best = self.result(tuple((n, gains[n]) for n in names))
        why = (
            f"reverting up to max_reverted={max_reverted} node(s)"
            if max_reverted is not None and max_reverted < len(order)
            else f"anything short of reverting all {len(order)} quantized nodes (a float model)"
        )
        raise AccuracyNotReachedError(
            f"max_drop={self.max_drop} ({self.drop_type}) not reached with {why}: best drop "
            f"{best.drop:.4g} with {len(names)} node(s) in float (baseline "
            f"{self.ev.baseline:.6g}, all int8 {self.quantized_metric:.6g}); relax max_drop, "
            "raise max_reverted, or try another calibration",
            best=best,
        )


def _sha256(model: onnx.ModelProto) -> str:
    return model_digest(model)


def _check_args(
    max_drop: Any, drop_type: str, max_reverted: Any, validation_fn: Any, validation: Any,
    ranking: str,
) -> None:  # fmt: skip
    if drop_type not in DROP_TYPES:
        raise InputError(f"unknown drop_type {drop_type!r}; use 'absolute' or 'relative'")
    if ranking not in RANKINGS:
        raise InputError(f"unknown ranking {ranking!r}; use one of {', '.join(RANKINGS)}")
    if not isinstance(max_drop, (int, float)) or math.isnan(max_drop) or max_drop < 0:
        raise InputError(f"max_drop must be a number >= 0, got {max_drop!r}")
    if max_reverted is not None and (not isinstance(max_reverted, int) or max_reverted < 0):
        raise InputError(f"max_reverted must be None or an int >= 0, got {max_reverted!r}")
    if not callable(validation_fn):
        raise InputError(
            f"validation_fn must be callable as validation_fn(run, dataset) -> float, got "
            f"{type(validation_fn).__name__}"
        )
    if validation is None or (hasattr(validation, "__len__") and len(validation) == 0):
        raise InputError("validation_dataset is empty; give at least one item")


def _start(
    q: Int8Quantizer, ev: _Evaluations, exclude: tuple[str, ...], auto_float: bool, items: int
) -> tuple[onnx.ModelProto, list[str]]:
    """quantize_int8's model for these options, and the nodes accuracy control may revert."""
    start, kept = int8_model(q, exclude, auto_float, items)
    ev.fixed, ev.auto = exclude + kept, kept
    # empty when ORT quantizes nothing: quantize_int8 returned the model with a note
    return start, [n for n in quantized_nodes(start) if n not in ev.fixed]


def quantize_with_accuracy_control(
    model: str | os.PathLike[str] | onnx.ModelProto,
    calibration_dataset: Dataset | Iterable[Mapping[str, Any]],
    validation_dataset: Any,
    validation_fn: Callable[[Any, Any], Any],
    max_drop: float = 0.01,
    drop_type: str = "absolute",
    max_reverted: int | None = None,
    *,
    per_channel: bool = True,
    calibration: str = DEFAULT_CALIBRATION,
    exclude_nodes: Iterable[str] = (),
    auto_float: bool = True,
    auto_float_items: int = 16,
    ranking: str = "one-pass",
    ranking_items: int = 16,
    verify_top: int = 3,
    prune: int = 32,
    **int8_options: Any,
) -> AccuracyControlResult:
    """int8 QDQ model whose ``validation_fn`` metric drops at most ``max_drop`` from float.

    Starts from exactly :func:`quantize_int8`'s model for the same options (``per_channel``,
    ``calibration``, ``exclude_nodes``, ``auto_float``… and ``int8_options`` such as
    ``reduce_range`` or ``target``), then :func:`rank` → :func:`search` → :func:`prune_set`.
    ``validation_fn(run, validation_dataset) -> float`` (higher is better) receives
    ``validation_dataset`` unchanged. ``drop_type`` is ``"absolute"`` or ``"relative"`` (to the
    float baseline); ``max_reverted`` caps how many nodes may go back to float. ``ranking_items``
    feeds (validation items when they give feeds, else calibration data) rank the nodes
    (``ranking``: ``"one-pass"`` or the reference ``"per-node"``; ``verify_top`` re-measured
    for real); a chosen set of at most ``prune`` nodes gets a leave-one-out pass.

    Raises :class:`AccuracyNotReachedError` (``.best`` = best result found) when the target
    needs more than ``max_reverted`` nodes or every node in float; :class:`InputError` for
    empty datasets, a bad ``validation_fn``, ``max_drop < 0`` or an unknown ``drop_type``.
    """
    started = time.perf_counter()
    _check_args(max_drop, drop_type, max_reverted, validation_fn, validation_dataset, ranking)
    calibration_dataset = as_dataset(calibration_dataset, "calibration_dataset")
    quantizer = Int8Quantizer(
        model, calibration_dataset, per_channel=per_channel, calibration=calibration,
        exclude_nodes=exclude_nodes, **int8_options,
    )  # fmt: skip
    exclude = quantizer.exclude
    with quantizer as q, task("int8 accuracy control", None) as progress:
        ev = _Evaluations(
            q, validation_fn, validation_dataset, float(max_drop), drop_type, exclude, progress
        )
        ev.baseline = ev.evaluate_model(q.source_path, "float", 0)
        start, candidates = _start(q, ev, exclude, auto_float, auto_float_items)
        quantized = ev.cache[frozenset()] = ev.evaluate_model(start, "all int8", 0)
        run = _Run(q, ev, start, quantized, float(max_drop), drop_type, started, {})
        if ev.ok(quantized) or not candidates:  # nothing int8: quantize_int8's noted model
            return run.result(())
        t0 = time.perf_counter()
        feeds = _ranking_feeds(validation_dataset, calibration_dataset, ranking_items)
        run.ranking, how = rank(q, candidates, feeds, ev.fixed, ranking, verify_top, start)
        run.ranking_seconds, run.notes = time.perf_counter() - t0, (f"ranking: {how}",)
        order = sorted(candidates, key=lambda n: (-run.ranking[n], candidates.index(n)))
        limit = len(order) if max_reverted is None else min(max_reverted, len(order))
        found = search(ev, order, limit)
        if found is None:
            run.not_reached(order, limit, max_reverted)
        return run.result(prune_set(ev, order[:found], order, prune))


def _prefix_gains(chosen: Sequence[str], order: Sequence[str], cache: Mapping) -> dict[str, float]:
    """Each node's gain as the metric difference of the ranked prefixes ending before/at it.

    NaN where those prefixes were not evaluated (the search skipped them): shown as unmeasured.
    """
    gains = {}
    for name in chosen:
        before = frozenset(order[: order.index(name)])
        after = before | {name}
        if before in cache and after in cache:
            gains[name] = cache[after] - cache[before]
        else:
            gains[name] = math.nan
    return gains


def _gain_text(gain: float) -> str:
    return "gain not measured" if math.isnan(gain) else f"{gain:+.4g}"


def _ranking_feeds(validation: Any, calibration: Dataset, n: int) -> list[dict[str, np.ndarray]]:
    """Up to ``n`` feeds for the ranking runs: validation items when they give feeds."""
    source = validation if isinstance(validation, Dataset) else calibration
    try:
        feeds = [f for _, f in zip(range(max(n, 1)), source.feeds(), strict=False)]
    except InputError:  # validation items are not feeds (no transform): use calibration data
        feeds = [f for _, f in zip(range(max(n, 1)), calibration.feeds(), strict=False)]
    return feeds
