"""Automatic mixed precision: the largest set of nodes that can run in float16/bfloat16.

The search, cheapest evidence first:

1. **Ranges** — one instrumented fp32 pass records every float tensor's range on the dataset.
   A node reading or writing a value beyond the target type's range (or mostly below its
   smallest normal) stays float32 up front. This is decided from the measured fp32 values, not
   from a run of the converted model: ONNX Runtime on CPU computes most f16 ops in f32 behind
   inserted casts and would hide the overflow.
2. **Judge** — a candidate (the kept-float set) passes only if two runs on every dataset item
   meet the criterion: the rounding simulation (``_instrument.rounding_probe``: one fp32
   session in which every converted node rounds its inputs, weights and outputs to the target
   type) and, only if that passes, the converted model itself in ONNX Runtime. The simulation
   costs one run per item and no conversion, and catches the storage precision loss the CPU
   kernels hide, as the ranges catch the overflow. It does not model accumulation in the low
   type inside reductions (``_instrument.SIMULATION`` says exactly what it models; the result
   repeats it and shows its predicted error next to the measured one).
3. **All candidates** — evaluation 1 converts everything not kept by step 1. Often enough.
4. **Sensitivity** — otherwise the same probe measures, by adaptive group testing on the
   ``probe_items`` items evaluation 1 hurt most, how far the outputs move when only some nodes
   are rounded; groups above a small threshold are split until single nodes. Nodes are ranked
   by that share.
5. **Search** — evaluations over "how many of the most sensitive nodes stay float": start at
   the count the probe predicts, gallop up, then bisect, so evaluations grow like ``log N``; a
   few more re-try small kept sets in halving groups.

Every candidate model is built by :func:`workbench.precision.float16.convert_float16` with the
kept-float set as ``block_nodes``; nothing here converts types itself. Nodes inside
If/Loop/Scan bodies are candidates of their own: their values' ranges are measured (exposed as
extra outputs of the enclosing node), the probe rounds them one by one, they are ranked and
kept float individually. Where ONNX Runtime cannot expose a body's values, its nodes are
checked against the enclosing node's inputs and outputs. Constants whose low-precision form is more than
``max_constant_error`` off keep their consumers float32 (the converter's rule, same in
float16 and bfloat16).

Memory: a model with external data (or at least :data:`workbench.model.STAGE_BYTES` of weights) is worked on
*light* (:class:`_Workspace`): its structure in Python, its weights in files that ONNX Runtime
reads itself (``RunConfig(model_dir=...)``), one session at a time — the probe's session is
released while a candidate runs and re-created from disk after —, each candidate written to a
work folder and opened from there. Peak RSS (``benchmarks/bench_large.py`` verb ``mixed``): 2.2×
the model at 1 GB, 1.7× at 2.1 GB — the probe's session (weights mapped by ONNX Runtime, 1×,
plus ~1 GB of per-run rounded copies) or a candidate's session, whichever is larger. The
result's model stands alone (float16 weights 0.5×, kept float32 ones 1×, in memory).
"""

from __future__ import annotations

import contextlib
import heapq
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..data import Dataset, as_dataset
from ..errors import InputError, WorkbenchError
from ..figures import figure_data_uri, ranking_plot
from ..metrics import max_abs_error, tolerance_ratio
from ..model import (
    check_external_data,
    iter_graphs,
    iter_tensors,
    light_model,
    read_external_data,
    save_model,
    tensor_nbytes,
)
from ..precisions import limits
from ..progress import check_cancelled, quiet, task
from ..results import Result, html_table
from ..runtime import call_validation, open_runner
from ..runtime.base import DEFAULT_CONFIG, RunConfig
from ._instrument import SIMULATION, TensorRange, rounding_probe, tensor_ranges
from .float16 import convert_float16, convertible_nodes, dtype_name

Feeds = dict[str, np.ndarray]

#: default cap on full evaluations (the search itself needs ~2·log2(N); the rest refines)
DEFAULT_MAX_EVALUATIONS = 40
#: dataset items the sensitivity probe runs on (those the all-candidates model hurt most).
#: Chosen with ``benchmarks/bench_mixed.py --probe-items`` (evaluations / converted share, all
#: within tolerance): demo CNN 13 evaluations with 1 item, 11 with 2, 8 with 4 and 8; Silero
#: VAD (corpus) 17 / 77% with 1 item, 15 / 88% with 2, 4 and 8; the test models the same for
#: every count. More items cost more probe runs (capped by PROBE_MAX_RUNS), not evaluations.
PROBE_ITEMS = 4
#: groups the probe may measure per probed node (at least 64, at most 1024 in all); splitting
#: stops earlier once every group is below the threshold
PROBE_GROUPS_PER_NODE = 2
#: at most this many probe runs (groups × items) in all: several items must not multiply the
#: probe's cost on big models (a detector's run takes ~0.1 s), so more items mean fewer groups
PROBE_MAX_RUNS = 2048
#: a probe group moving the outputs by less than this share of the tolerance is not split
PROBE_THRESHOLD = 0.1
#: a tensor with more than this share of its nonzero values below the smallest normal
#: value of the target type counts as underflowing (flush to zero / subnormal precision)
UNDERFLOW_SHARE = 0.5
#: refinement (re-trying kept nodes in halving groups) only for kept sets up to this size,
#: with at most this many evaluations
REFINE_MAX_KEPT = 32
REFINE_TRIES = 8
#: metric drop allowed when validation_fn is given without max_drop
DEFAULT_MAX_DROP = 0.01


@dataclass(frozen=True)
class MixedPrecisionResult(Result):
    """Outcome of :func:`auto_mixed_precision`.

    ``kept_float`` maps every float-computing node left in float32 to ``{"reason": ...,
    "error": ...}`` (the measured value behind the decision: max |x| or smallest |x| for range
    decisions, the probe's error share in tolerance units for sensitive nodes, None when the
    converter decided). ``converted_fraction`` is the share of float-computing nodes in
    ``dtype``. ``history`` lists each evaluation (phase, nodes kept float in all and from the
    ranking, max abs error, tolerance ratio or metric of the real run, the simulated value,
    whether the converted model was built, accepted). ``sensitivity``: node → probe error
    share. ``predicted_error`` / ``measured_error``: for the returned model, the rounding
    simulation's worst tolerance ratio (or metric, with a validation_fn) next to the one
    measured running it in ONNX Runtime — when they differ a lot, the simulation (described in
    ``simulation``) or the CPU kernels were not representative.
    """

    model: onnx.ModelProto
    dtype: str
    kept_float: dict[str, dict[str, Any]]
    converted: tuple[str, ...]
    converted_fraction: float
    evaluations: int
    max_error: dict[str, float]
    history: tuple[dict[str, Any], ...]
    sensitivity: dict[str, float] = field(default_factory=dict)
    criterion: str = ""
    baseline_metric: float | None = None
    metric: float | None = None
    seconds: float = 0.0
    notes: tuple[str, ...] = ()
    predicted_error: float | None = None
    measured_error: float | None = None
    simulation: str = SIMULATION

    _summary_exclude = ("model", "kept_float", "converted", "history", "sensitivity")

    def summary_rows(self) -> list[dict[str, Any]]:
        total = len(self.converted) + len(self.kept_float)
        rows: list[dict[str, Any]] = [
            {"field": "dtype", "value": self.dtype},
            {
                "field": "converted",
                "value": f"{self.converted_fraction:.1%} ({len(self.converted)} of {total} "
                "float nodes)",
            },
            {"field": "kept float", "value": len(self.kept_float)},
            {"field": "criterion", "value": self.criterion},
            {
                "field": "evaluations",
                "value": f"{self.evaluations} ({self.models_built} converted models built and run)",
            },
            {
                "field": "max error",
                "value": ", ".join(f"{k}: {v:.3g}" for k, v in self.max_error.items()),
            },
            {"field": "predicted vs measured", "value": self._predicted_vs_measured()},
            {"field": "simulation", "value": self.simulation},
            {"field": "seconds", "value": f"{self.seconds:.2f}"},
        ]
        if self.baseline_metric is not None:
            rows.insert(
                4, {"field": "metric", "value": f"{self.baseline_metric:.6g} → {self.metric:.6g}"}
            )
        rows += [{"field": "note", "value": n} for n in self.notes]
        return rows

    def _predicted_vs_measured(self) -> str:
        unit = "metric" if self.baseline_metric is not None else "× tolerance"

        def fmt(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.3g}"

        return (
            f"rounding simulation {fmt(self.predicted_error)} {unit}, ONNX Runtime "
            f"{fmt(self.measured_error)} {unit}"
        )

    @property
    def models_built(self) -> int:
        """Evaluations that built and ran the converted model (the others were rejected by the
        rounding simulation alone)."""
        return sum(1 for h in self.history if h.get("ran_converted", True))

    def kept_rows(self) -> list[dict[str, Any]]:
        """One row per kept-float node, most sensitive first."""
        order = sorted(self.kept_float, key=lambda k: (-self.sensitivity.get(k, -1.0), k))
        return [
            {
                "node": k,
                "reason": self.kept_float[k]["reason"],
                "error": self.kept_float[k]["error"],
            }
            for k in order
        ]

    def sensitivity_plot(self, top: int = 20):
        """Bar chart of the most sensitive nodes (probe error in tolerance units); kept-float
        nodes in red."""
        return ranking_plot(
            self.sensitivity,
            title=f"{self.dtype} sensitivity (top {top})",
            xlabel="output error when only this node is rounded (× tolerance)",
            top=top,
            highlight=frozenset(self.kept_float),
            highlight_label="kept float",
        )

    def _repr_html_(self) -> str:
        parts = [html_table(self.summary_rows(), title="MixedPrecisionResult")]
        if self.kept_float:
            parts.append(html_table(self.kept_rows(), title="Kept in float32"))
        if self.history:
            parts.append(html_table(list(self.history), title="Evaluations"))
        if self.sensitivity:
            uri = figure_data_uri(self.sensitivity_plot())
            parts.append(f'<img alt="sensitivity" src="{uri}"/>')
        return "<div>" + "".join(parts) + "</div>"

    def __str__(self) -> str:
        lines = [f"{r['field']:>12}: {r['value']}" for r in self.summary_rows()]
        rows = self.kept_rows()
        lines += [f"  kept {r['node']}: {r['reason']}" for r in rows[:20]]
        if len(rows) > 20:
            lines.append(f"  … {len(rows) - 20} more kept float32 (see .kept_float)")
        return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


def _top_level_owner(model: onnx.ModelProto) -> dict[str, str]:
    """Node name → name of its main-graph ancestor (itself for main-graph nodes)."""
    owner: dict[str, str] = {}
    for node in model.graph.node:
        owner[node.name] = node.name
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                for g in iter_graphs(sub):
                    for inner in g.node:
                        owner[inner.name] = node.name
    return owner


def _range_verdict(
    node: onnx.NodeProto, ranges: dict[str, TensorRange], dtype: str
) -> tuple[str, float] | None:
    """(reason, measured value) when a tensor of ``node`` does not fit ``dtype``, else None."""
    lim = limits(dtype)
    biggest, smallest_normal = lim.max, lim.tiny
    worst: tuple[str, float] | None = None
    for role, names in (("input", node.input), ("output", node.output)):
        for name in names:
            r = ranges.get(name)
            if r is None or r.nonzero == 0:
                continue
            if r.max_abs > biggest:
                return (
                    f"overflow: {role} {name!r} reaches |x| = {r.max_abs:.4g} in fp32, beyond "
                    f"{dtype}'s max {biggest:.6g}",
                    r.max_abs,
                )
            share = r.tiny / r.nonzero
            if worst is None and share > UNDERFLOW_SHARE:
                worst = (
                    f"underflow: {share:.0%} of the nonzero values of {role} {name!r} are below "
                    f"{dtype}'s smallest normal {smallest_normal:.3g} (min {r.min_nonzero:.3g})",
                    r.min_nonzero,
                )
    return worst


@dataclass
class _Evaluation:
    accepted: bool
    ratio: float | None  # tolerance ratio of the real run (tolerance mode)
    simulated: float | None  # same for the rounding simulation (or its metric)
    metric: float | None  # validation metric of the real run (validation mode)
    max_error: dict[str, float]
    failure: str = ""
    ran: bool = True  # False: rejected by the simulation, the converted model never built
    items: tuple[float, ...] = ()  # simulated tolerance ratio per dataset item


class _Workspace:
    """The model as one search works on it, never holding its weights several times.

    ``named``: the model with its nodes named (:func:`ensure_node_names`). Small models without
    external data are complete in memory as given (``folder`` None, ``source`` = ``named``).
    Others are *light*: ``named`` is their structure and their weights stay in files in
    ``folder`` — a path's own folder for a model with external data, a work folder for a big
    proto or inline file (weights streamed out by :func:`stage_model`). Sessions read them with
    ``RunConfig(model_dir=folder)``, the converter memory-maps them from ``source`` (the light
    file), and each converted candidate is written to a private work folder
    (:meth:`save_candidate`) and opened from disk. :meth:`complete` reads a model's references
    into it, for a result that stands alone.
    """

    def __init__(self, model: onnx.ModelProto | str | os.PathLike[str]):
        self._stack = contextlib.ExitStack()
        self.named, self.folder = light_model(model, self._stack, "model")
        self.source: onnx.ModelProto | Path = self.named
        if self.folder is None:
            return
        # the converter reads the weights from the file (and names nodes as ensure_node_names):
        # the caller's file when its data is used in place, else the staged copy
        in_place = not isinstance(model, onnx.ModelProto) and (
            Path(model).resolve().parent == Path(self.folder).resolve()
        )
        self.source = Path(model) if in_place else Path(self.folder, "model.onnx")
        work = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="wb-mixed-"))
        self.candidate = Path(work, "candidate.onnx")

    @property
    def config(self) -> RunConfig:
        """Run configuration of sessions over ``named``."""
        if self.folder is None:
            return DEFAULT_CONFIG
        return DEFAULT_CONFIG.reading(self.folder)

    def save_candidate(self, model: onnx.ModelProto) -> Path:
        """Write a converted candidate to the work folder, standing alone: its converted
        weights streamed from ``model``, the float32 ones it still references copied there
        file to file (``model`` is left as it was)."""
        assert self.folder is not None
        kept_name = self.candidate.name + ".f32"
        moved: list[tuple[onnx.TensorProto, list[tuple[str, str]]]] = []
        try:
            sources = check_external_data(model, self.folder)  # in iter_tensors order
            external = [t for t in iter_tensors(model) if _is_ext(t)]
            with open(self.candidate.parent / kept_name, "wb") as out:
                for t, source in zip(external, sources, strict=True):
                    info = {e.key: e.value for e in t.external_data}
                    out.write(b"\0" * (-out.tell() % 4096))  # page-aligned: ORT maps it
                    offset = out.tell()
                    length = _copy_range(source, int(info.get("offset", 0) or 0),
                                         tensor_nbytes(t), out)  # fmt: skip
                    moved.append((t, [(e.key, e.value) for e in t.external_data]))
                    del t.external_data[:]
                    for key, value in (("location", kept_name), ("offset", str(offset)),
                                       ("length", str(length))):  # fmt: skip
                        e = t.external_data.add()
                        e.key, e.value = key, value
            save_model(model, self.candidate, external_data=True)
        finally:
            for t, entries in moved:  # the caller's references, as they were
                del t.external_data[:]
                for key, value in entries:
                    e = t.external_data.add()
                    e.key, e.value = key, value
        return self.candidate

    def drop_candidate(self) -> None:
        if self.folder is not None:
            for f in self.candidate.parent.glob(self.candidate.name + "*"):
                f.unlink()

    def complete(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """``model`` with every tensor it references in ``folder`` read into it (changes
        ``model``: the result returned to the user must stand alone)."""
        if self.folder is not None:
            read_external_data(model, self.folder)
        return model

    def close(self) -> None:
        self._stack.close()


def _is_ext(t: onnx.TensorProto) -> bool:
    return t.data_location == onnx.TensorProto.EXTERNAL


def _copy_range(source: Path, offset: int, length: int, out: Any) -> int:
    """Append ``length`` bytes of ``source`` from ``offset`` to the open file ``out``."""
    with open(source, "rb") as fh:
        fh.seek(offset)
        left = length
        while left:
            chunk = fh.read(min(left, 64 << 20))
            if not chunk:
                raise WorkbenchError(f"{source} ends before its referenced data")
            out.write(chunk)
            left -= len(chunk)
    return length


class _Probe:
    """The rounding probe over the candidates (main graph and bodies), with its references."""

    def __init__(
        self,
        model: onnx.ModelProto,
        probed: list[str],
        feeds: list[Feeds],
        dtype: str,
        model_dir: str | None = None,
    ):
        self.probed = probed
        self.index = {name: i for i, name in enumerate(probed)}
        self.run = rounding_probe(model, probed, dtype, model_dir)
        self.refs = [self.run(self.mask(()), fd) for fd in feeds]

    def mask(self, names: Iterable[str]) -> np.ndarray:
        m = np.zeros(len(self.probed), bool)
        for name in names:
            if name in self.index:
                m[self.index[name]] = True
        return m

    def runner(self, mask: np.ndarray) -> Callable[[Feeds], dict[str, np.ndarray]]:
        """``run(feeds)`` of the simulated model (for validation_fn)."""
        return lambda feeds: self.run(mask, feeds)


# --------------------------------------------------------------------------- the search


class _Search:
    """State of one auto_mixed_precision call: reference outputs, judge, cache and history.

    A candidate is accepted only if both the real converted model (ONNX Runtime) and the
    rounding simulation (every converted node's inputs, weights and outputs rounded) meet the
    criterion: ORT on CPU computes most float16 nodes in float32 and would otherwise accept
    precision the model loses on hardware that really computes in float16.
    """

    def __init__(
        self,
        ws: _Workspace,
        data: Any,
        feeds: list[Feeds],
        dtype: str,
        validation_fn: Callable[[Any, Any], Any] | None,
        rtol: float,
        atol: float,
        max_drop: float,
        fixed_block: Sequence[str],
        candidates: Sequence[str],
        max_constant_error: float | None = None,
    ):
        self.ws = ws
        self.model = model = ws.named
        self.data = data
        self.feeds = feeds
        self.dtype = dtype
        self.validation_fn = validation_fn
        self.rtol, self.atol, self.max_drop = rtol, atol, max_drop
        self.fixed_block = tuple(fixed_block)
        self.candidates = list(candidates)
        self.max_constant_error = max_constant_error
        self.cache: dict[frozenset[str], _Evaluation] = {}
        self.history: list[dict[str, Any]] = []
        self.probe: _Probe | None = None
        self.last_items: list[float] = []
        runner = open_runner(model, "cpu", config=ws.config)
        try:
            self.output_names = list(runner.output_names)
            self.reference = [runner(f) for f in feeds]
            self.baseline = (
                call_validation(validation_fn, runner, data) if validation_fn is not None else None
            )
        finally:
            runner.close()
        del runner  # the session's weights go now (an ORT runner's close keeps its session)
        self.notes: list[str] = []
        if self.candidates:
            try:  # candidates in graph order: each body's nodes are contiguous (group testing)
                self.probe = _Probe(model, self.candidates, feeds, dtype, ws.folder)
            except WorkbenchError as e:  # e.g. ops ORT cannot run with the probe's switches
                self.notes.append(
                    f"rounding simulation unavailable ({str(e)[:200]}); candidates judged by "
                    "ONNX Runtime alone, which on CPU may hide float16 precision loss, and "
                    "ranked in graph order"
                )

    def build(self, kept: Iterable[str]) -> onnx.ModelProto:
        block = sorted(set(self.fixed_block) | set(kept))
        with quiet():
            return convert_float16(
                self.ws.source,
                keep_references=True,  # kept float32 weights: copied file to file when saved
                dtype=self.dtype,
                keep_io_types=True,
                block_nodes=tuple(block),
                max_constant_error=self.max_constant_error,
            )

    def _compare(
        self, outputs: Iterable[dict[str, np.ndarray]]
    ) -> tuple[bool, float, dict[str, float]]:
        """(all within tolerance, worst tolerance ratio, max abs error per output) vs fp32.

        Outputs that are not tensors (e.g. ZipMap's list of maps) are not compared: the
        tensors they are built from are outputs too or feed the compared ones."""
        names = [n for n in self.output_names if isinstance(self.reference[0].get(n), np.ndarray)]
        max_err = dict.fromkeys(names, 0.0)
        ok = True
        self.last_items = []  # worst tolerance ratio per item (the probe picks the worst items)
        for outs, ref in zip(outputs, self.reference, strict=True):
            worst = 0.0
            for name in names:
                a, b = np.asarray(outs[name]), ref[name]
                err = max_abs_error(a, b) if a.shape == b.shape else math.inf
                max_err[name] = max(max_err[name], err if math.isfinite(err) else math.inf)
                ratio = tolerance_ratio(a, b, self.rtol, self.atol)
                worst = max(worst, ratio)
                ok = ok and ratio <= 1.0
            self.last_items.append(worst)
        return ok, max(self.last_items, default=0.0), max_err

    def measure(self, kept: Sequence[str], model: onnx.ModelProto | None = None) -> _Evaluation:
        """Judge a candidate: the rounding simulation first (one run per item on the probe's
        session), then — only if that passes — the converted model in ONNX Runtime."""
        sim: float | None = None
        item_errors: tuple[float, ...] = ()
        if self.probe is not None:
            converted = set(self.candidates) - set(kept)
            mask = self.probe.mask(converted)
            if self.validation_fn is None:
                runs = (self.probe.run(mask, fd) for fd in self.feeds)
                sim_ok, sim, sim_err = self._compare(runs)
            else:
                sim = call_validation(self.validation_fn, self.probe.runner(mask), self.data)
                assert self.baseline is not None
                sim_ok, sim_err = self.baseline - sim <= self.max_drop + 1e-12, {}
            item_errors = tuple(self.last_items) if self.validation_fn is None else ()
            if not sim_ok:
                return _Evaluation(False, None, sim, None, sim_err, ran=False, items=item_errors)
        try:
            runner = self._open_candidate(kept, model)
        except WorkbenchError as e:  # a candidate ORT cannot load is a rejected candidate
            self.ws.drop_candidate()
            return _Evaluation(False, None, sim, None, {}, f"ONNX Runtime rejected it: {e}")
        try:
            ok, ratio, max_err = self._compare(runner(fd) for fd in self.feeds)
            if self.validation_fn is None:
                items = item_errors or tuple(self.last_items)
                return _Evaluation(ok, ratio, sim, None, max_err, items=items)
            metric = call_validation(self.validation_fn, runner, self.data)
            assert self.baseline is not None
            accepted = self.baseline - metric <= self.max_drop + 1e-12
            return _Evaluation(accepted, None, sim, metric, max_err)
        finally:
            runner.close()
            self.ws.drop_candidate()

    def _open_candidate(self, kept: Sequence[str], model: onnx.ModelProto | None) -> Any:
        """A runner over the converted candidate; a light one is written to the work folder
        and opened from there (ONNX Runtime reads its weights, Python drops its copy)."""
        if model is None:
            model = self.build(kept)
        if self.ws.folder is None:
            return open_runner(model, "cpu")
        if self.probe is not None:  # one model's weights in ORT at a time
            self.probe.run.release()
        path = self.ws.save_candidate(model)
        del model
        return open_runner(path, "cpu")

    def close_probe(self) -> None:
        """Free the probe's session (its weights) once no candidate needs simulating."""
        self.probe = None

    def evaluate(self, kept: Sequence[str], phase: str, bar: Any) -> _Evaluation:
        key = frozenset(kept)
        if key in self.cache:
            return self.cache[key]
        check_cancelled()
        result = self.measure(kept)
        self.cache[key] = result
        entry: dict[str, Any] = {
            "evaluation": len(self.history) + 1,
            "phase": phase,
            "kept_float": len(self.fixed_block) + len(kept),  # all float32 nodes
            "searched_kept": len(kept),  # of which from the sensitivity ranking
            "error": max(result.max_error.values(), default=math.inf),
            "tolerance_ratio": result.ratio,
            "metric": result.metric,
            "simulated": result.simulated,
            "ran_converted": result.ran,
            "accepted": result.accepted,
        }
        if result.failure:
            entry["failure"] = result.failure
        self.history.append(entry)
        sim = (
            f"simulated {self.dtype} {result.simulated:.3g}" if result.simulated is not None else ""
        )
        if result.metric is not None:
            what = f"metric {result.metric:.4g}, {sim}"
        elif result.ratio is not None:
            what = f"error {result.ratio:.3g}× tol, {sim}"
        else:
            what = f"rejected ({sim or result.failure[:60]})"
        bar.update(postfix=f"eval {entry['evaluation']}: {entry['kept_float']} kept float, {what}")
        return result


def _probe_sensitivity(
    probe: _Probe, feeds: list[Feeds], items: list[int], rtol: float, atol: float
) -> tuple[dict[str, float], int]:
    """Per-node output error (tolerance units) with only that node rounded.

    Adaptive group testing over the graph order: a group whose rounding moves the outputs by
    more than PROBE_THRESHOLD is split in halves, largest effect first; a group below it shares
    its effect evenly. Returns (node → score, groups measured).
    """
    n = len(probe.probed)

    def effect(lo: int, hi: int) -> float:
        check_cancelled()
        mask = np.zeros(n, bool)
        mask[lo:hi] = True
        worst = 0.0
        for i in items:
            outs, ref = probe.run(mask, feeds[i]), probe.refs[i]
            for name, b in ref.items():
                if np.asarray(b).dtype.kind == "f":
                    worst = max(worst, tolerance_ratio(outs[name], b, rtol, atol))
            if hi - lo > 1 and worst > PROBE_THRESHOLD:
                break  # the group gets split anyway: its exact size does not matter
        return worst

    scores: dict[str, float] = {}
    measured = 1
    limit = min(1024, max(64, PROBE_GROUPS_PER_NODE * n), max(64, PROBE_MAX_RUNS // len(items)))
    # (−effect, lo, hi, effect, measured?): a right half is not measured when its left half is
    # clean — the parent's effect must then sit in it; single nodes are always measured
    heap: list[tuple[float, int, int, float, bool]] = []
    root = effect(0, n)
    heapq.heappush(heap, (-root, 0, n, root, True))
    while heap:
        _, lo, hi, e, known = heapq.heappop(heap)
        if hi - lo == 1 and not known:
            e = effect(lo, hi)
            measured += 1
        if hi - lo == 1 or e <= PROBE_THRESHOLD or measured + 2 > limit:
            share = e / (hi - lo) if math.isfinite(e) else e
            for i in range(lo, hi):
                scores[probe.probed[i]] = share
            continue
        mid = (lo + hi) // 2
        left = effect(lo, mid)
        measured += 1
        heapq.heappush(heap, (-left, lo, mid, left, True))
        if left <= PROBE_THRESHOLD:
            heapq.heappush(heap, (-e, mid, hi, e, False))
        else:
            right = effect(mid, hi)
            measured += 1
            heapq.heappush(heap, (-right, mid, hi, right, True))
    return scores, measured


def _predict_kept(ranked: list[str], scores: dict[str, float]) -> int:
    """Smallest k (≥ 1) such that the rest's probe errors, added in quadrature (independent
    rounding errors), fit the tolerance."""
    tail = 0.0
    suffix = [0.0] * (len(ranked) + 1)
    for i in range(len(ranked) - 1, -1, -1):
        tail += min(scores.get(ranked[i], 0.0), 1e30) ** 2
        suffix[i] = tail
    for k in range(len(ranked) + 1):
        if suffix[k] <= 1.0:
            return max(k, 1)
    return len(ranked)


def auto_mixed_precision(
    model: onnx.ModelProto | str | os.PathLike[str],
    dataset: Dataset | Iterable[Any],
    dtype: str = "float16",
    validation_fn: Callable[[Any, Any], Any] | None = None,
    rtol: float = 1e-2,
    atol: float = 1e-3,
    max_drop: float | None = None,
    max_evaluations: int | None = None,
    seed: int = 0,
    max_constant_error: float | None = None,
    probe_items: int = PROBE_ITEMS,
) -> MixedPrecisionResult:
    """Convert as many nodes as possible to ``dtype`` while outputs stay close to fp32.

    Without ``validation_fn``: every output on every dataset item within ``rtol``/``atol`` of
    fp32. With it: ``validation_fn(run, dataset)`` (higher is better, ``dataset`` passed as
    given) drops by at most ``max_drop`` (default 0.01). ``dataset`` is a
    :class:`workbench.Dataset` (its ``feeds()`` feed the model) or a list of feeds dicts.
    ``max_evaluations`` caps evaluations (default 40); each judges one candidate on every item,
    first by the float16 rounding simulation and, if that passes, by running the converted
    model. Nodes whose fp32 values overflow (or mostly underflow) ``dtype`` stay float32
    whatever the runtime does; so do consumers of constants more than ``max_constant_error``
    off in ``dtype`` (see :func:`~workbench.precision.float16.convert_float16`). Nodes inside
    If/Loop/Scan bodies are candidates like any other. ``probe_items``: dataset items the
    sensitivity probe uses. Nothing convertible gives a result with 0% converted. Returns a
    :class:`MixedPrecisionResult`; deterministic for a given model, dataset and ``seed``
    (which orders equally telling items for the sensitivity probe).
    """
    start = time.perf_counter()
    dtype = dtype_name(dtype)
    drop, budget = _check_arguments(
        rtol, atol, validation_fn, max_drop, max_evaluations, probe_items
    )
    feeds = list(as_dataset(dataset).feeds())
    criterion = _criterion(rtol, atol, len(feeds), validation_fn, drop)
    ws = _Workspace(model)
    try:
        named = ws.named
        with quiet():
            # node touching float32 → None (the converter would convert it) or why it stays float
            verdicts = convertible_nodes(ws.source, dtype, max_constant_error=max_constant_error)
        with task(f"mixed precision ({dtype})", total=None) as bar:
            kept, candidates = _initial_kept(named, feeds, dtype, verdicts, ws.folder)
            bar.update(postfix="fp32 ranges")
            search = _Search(
                ws, dataset, feeds, dtype, validation_fn, rtol, atol, drop, list(kept),
                candidates, max_constant_error,
            )  # fmt: skip
            notes: list[str] = []
            sensitivity, ranked, final_kept = _run_search(
                search, budget, seed, probe_items, bar, notes
            )
            _explain_kept(kept, final_kept, sensitivity, ranked, dtype)
            final_model, final_eval, converted = _final(search, final_kept, verdicts, kept)
    finally:
        ws.close()
    total = len(verdicts)
    return MixedPrecisionResult(
        model=final_model,
        dtype=dtype,
        kept_float={k: kept[k] for k in verdicts if k in kept},
        converted=converted,
        converted_fraction=(len(converted) / total) if total else 0.0,
        evaluations=len(search.history),
        max_error=final_eval.max_error,
        history=tuple(search.history),
        sensitivity=sensitivity,
        criterion=criterion,
        baseline_metric=search.baseline,
        metric=final_eval.metric if validation_fn is not None else None,
        seconds=time.perf_counter() - start,
        notes=(*notes, *search.notes),
        predicted_error=final_eval.simulated,
        measured_error=final_eval.ratio if validation_fn is None else final_eval.metric,
    )


def _criterion(
    rtol: float, atol: float, n_items: int, validation_fn: Callable | None, drop: float
) -> str:
    if validation_fn is None:
        return f"outputs within rtol={rtol:g}, atol={atol:g} of fp32 on {n_items} items"
    return f"{getattr(validation_fn, '__name__', 'validation_fn')} drops by ≤ {drop:g}"


def _check_arguments(
    rtol: float,
    atol: float,
    validation_fn: Callable[[Any, Any], Any] | None,
    max_drop: float | None,
    max_evaluations: int | None,
    probe_items: int,
) -> tuple[float, int]:
    """(allowed metric drop, evaluation budget), or InputError for a bad argument."""
    if probe_items < 1:
        raise InputError(f"probe_items must be >= 1, got {probe_items}")
    if rtol < 0 or atol < 0:
        raise InputError(f"rtol and atol must be >= 0, got rtol={rtol}, atol={atol}")
    if validation_fn is None and max_drop is not None:
        raise InputError(
            "max_drop needs a validation_fn(run, dataset) -> float to measure the drop"
        )
    if validation_fn is not None and not callable(validation_fn):
        raise InputError(f"validation_fn must be callable, got {type(validation_fn).__name__}")
    if max_evaluations is not None and max_evaluations < 0:
        raise InputError(f"max_evaluations must be >= 0, got {max_evaluations}")
    drop = DEFAULT_MAX_DROP if max_drop is None else float(max_drop)
    budget = DEFAULT_MAX_EVALUATIONS if max_evaluations is None else int(max_evaluations)
    return drop, budget


def _initial_kept(
    named: onnx.ModelProto,
    feeds: list[Feeds],
    dtype: str,
    verdicts: dict[str, str | None],
    model_dir: str | None = None,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(nodes kept float before any evaluation — converter reasons and fp32 ranges —, the
    remaining candidates in graph order)."""
    kept: dict[str, dict[str, Any]] = {
        name: {"reason": f"converter: {reason}", "error": None}
        for name, reason in verdicts.items()
        if reason is not None
    }
    ranges = tensor_ranges(named, feeds, tiny=limits(dtype).tiny, model_dir=model_dir)
    owner = _top_level_owner(named)
    by_name = {n.name: n for g in iter_graphs(named.graph) for n in g.node}
    candidates: list[str] = []
    for name in verdicts:
        if name in kept:
            continue
        node = by_name[name]
        verdict = _range_verdict(node, ranges, dtype)
        measured = any(v in ranges for v in node.output)
        if verdict is None and owner.get(name, name) != name and not measured:
            # body values ONNX Runtime could not expose: judge by the enclosing node's I/O
            verdict = _range_verdict(by_name[owner[name]], ranges, dtype)
        if verdict is not None:
            kept[name] = {"reason": verdict[0], "error": verdict[1]}
        else:
            candidates.append(name)
    return kept, candidates


def _run_search(
    search: _Search, budget: int, seed: int, probe_items: int, bar: Any, notes: list[str]
) -> tuple[dict[str, float], list[str], list[str]]:
    """(sensitivity, ranking, kept set): evaluation 1, then the probe and the search."""
    if not search.candidates:
        notes.append(f"no node can run in {search.dtype}: the model is returned unchanged")
        return {}, [], []
    if budget == 0:
        notes.append("max_evaluations=0: no candidate evaluated; the model stays float32")
        return {}, [], list(search.candidates)
    if search.evaluate([], "all candidates", bar).accepted:
        return {}, [], []
    sensitivity, ranked = _rank(search, search.feeds, probe_items, seed)
    bar.update(postfix="sensitivity probe")
    kept = _search_kept(search, ranked, sensitivity, budget, bar, notes)
    return sensitivity, ranked, kept


def _explain_kept(
    kept: dict[str, dict[str, Any]],
    final_kept: list[str],
    sensitivity: dict[str, float],
    ranked: list[str],
    dtype: str,
) -> None:
    """Add the searched kept-float nodes to ``kept`` with the measurement behind each."""
    rank_of = {name: i + 1 for i, name in enumerate(ranked)}
    for name in final_kept:
        score = sensitivity.get(name)
        rank = rank_of.get(name)
        reason = (
            f"sensitive: rank {rank} of {len(ranked)}; its share of the output error in "
            f"{dtype} is {score:.3g}× the tolerance"
            if rank is not None and score is not None
            else "not converted: no evaluated candidate converting it was accepted"
        )
        kept[name] = {"reason": reason, "error": score}


def _final(
    search: _Search,
    final_kept: list[str],
    verdicts: dict[str, str | None],
    kept: dict[str, dict[str, Any]],
) -> tuple[onnx.ModelProto, _Evaluation, tuple[str, ...]]:
    """(returned model, its evaluation, converted nodes). The probe's session is freed before
    the final conversion; a light model's result is completed from the work folder."""
    if len(final_kept) == len(search.candidates):
        search.close_probe()
        zero = dict.fromkeys(search.output_names, 0.0)
        model = search.model
        if search.ws.folder is not None:  # the unchanged model, weights read back in
            model = onnx.ModelProto()
            model.CopyFrom(search.model)
            search.ws.complete(model)
        return model, _Evaluation(True, 0.0, 0.0, search.baseline, zero), ()
    evaluation = search.cache.get(frozenset(final_kept))
    model = None
    if evaluation is None:
        model = search.build(final_kept)
        evaluation = search.measure(final_kept, model)
    search.close_probe()
    if model is None:
        model = search.build(final_kept)
    return search.ws.complete(model), evaluation, tuple(n for n in verdicts if n not in kept)


def _rank(
    search: _Search, feeds: list[Feeds], probe_items: int, seed: int
) -> tuple[dict[str, float], list[str]]:
    """Probe sensitivities of every candidate (main graph and bodies) and the ranking, most
    sensitive first, ties in graph order."""
    # the items where converting everything hurt most (evaluation 1) are the most telling;
    # ties (and validation mode, which has no per-item errors) are broken by the seeded order
    first = search.cache.get(frozenset())
    order = np.random.default_rng(seed).permutation(len(feeds)).tolist()
    errors = first.items if first is not None and len(first.items) == len(feeds) else ()
    if errors:
        order.sort(key=lambda i: -errors[i])
    items = order[:probe_items]  # most hurt first: a group over the threshold stops early
    if search.probe is None:  # no simulation: keep the last nodes float first (graph order)
        return {}, list(reversed(search.candidates))
    scores, _ = _probe_sensitivity(search.probe, feeds, items, search.rtol, search.atol)
    sensitivity = {c: float(scores.get(c, 0.0)) for c in search.candidates}
    position = {c: i for i, c in enumerate(search.candidates)}
    ranked = sorted(search.candidates, key=lambda c: (-sensitivity[c], position[c]))
    return sensitivity, ranked


def _search_kept(
    search: _Search,
    ranked: list[str],
    sensitivity: dict[str, float],
    budget: int,
    bar: Any,
    notes: list[str],
) -> list[str]:
    """Smallest accepted "top-k most sensitive stay float" set, then refinement."""
    m = len(ranked)
    lo, hi = 0, m  # k=lo rejected (evaluated), k=hi accepted (k=m is fp32: no evaluation)

    def left() -> int:
        return budget - len(search.history)

    def try_k(k: int, phase: str) -> bool:
        return search.evaluate(ranked[:k], phase, bar).accepted

    k = min(_predict_kept(ranked, sensitivity), m)
    step = k
    # gallop upwards from the prediction until accepted
    while k < hi and left() > 0:
        if try_k(k, "gallop"):
            hi = k
            break
        lo = k
        step *= 2
        k = min(lo + step, hi)
    # bisect between the last rejected and the first accepted count
    while hi - lo > 1 and left() > 0:
        mid = (lo + hi) // 2
        if try_k(mid, "bisect"):
            hi = mid
        else:
            lo = mid
    if hi - lo > 1:
        notes.append(
            f"evaluation budget ({budget}) used up before the search converged; "
            f"{hi} nodes kept float where {lo + 1} might do"
        )
    kept = list(ranked[:hi])
    # refinement: give kept nodes back to dtype in halving groups, least sensitive first
    known_needed = {ranked[hi - 1]} if 0 < hi == lo + 1 else set()
    size = len(kept)
    # only for small kept sets (big ones rarely shrink by halves); most rejections come from
    # the simulation alone, so a try usually costs one probe run per item
    # and only once some candidate passed: if keeping all but one fails, so will subsets
    tries = min(2 * len(kept), REFINE_TRIES) if len(kept) <= REFINE_MAX_KEPT and hi < m else 0
    stop = len(search.history) + tries

    def left() -> int:  # noqa: F811 - refinement has its own, smaller budget
        return min(budget, stop) - len(search.history)

    while size > 1 and left() > 0:
        size = (size + 1) // 2
        pool = [n for n in reversed(kept) if n not in known_needed]
        for i in range(0, len(pool), size):
            group = set(pool[i : i + size])
            trial = [n for n in kept if n not in group]
            if not trial or left() <= 0:
                continue  # converting every candidate was evaluation 1
            if search.evaluate(trial, "refine", bar).accepted:
                kept = trial
    return kept
