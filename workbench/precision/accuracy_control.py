"""int8 within a maximum accuracy drop: revert the fewest nodes to float, found by ranked search.

1. Measure the float baseline and the fully quantized model with ``validation_fn``.
2. If the drop exceeds ``max_drop``, rank the quantized nodes by their *measured* impact: for
   each one, the real re-quantized model with only that node in int8 is run on a few items and
   its output noise vs float is recorded (no validation calls; calibration is reused).
3. Galloping then binary search over how many top-ranked nodes to revert (``log2`` validation
   calls, not one per node), then a leave-one-out pass over the chosen set drops nodes that
   are not needed and measures each remaining node's gain.

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

from ..data import Dataset, as_dataset
from ..errors import AccuracyNotReachedError, InputError, UnsupportedError
from ..figures import figure_svg, ranking_plot
from ..progress import quiet, task, track
from ..results import Result, html_table
from ..runtime import call_validation, open_runner
from .int8 import (
    DEFAULT_CALIBRATION,
    Int8Quantizer,
    no_int8_message,
    output_noise,
    quantized_nodes,
    run_outputs,
)

DROP_TYPES = ("absolute", "relative")


@dataclass(frozen=True)
class AccuracyControlResult(Result):
    """Outcome of :func:`quantize_with_accuracy_control`.

    ``reverted_nodes`` lists ``(node, gain)`` in revert order, ``gain`` being the measured metric
    lost when that node is quantized again; ``ranking`` maps every quantized node to its
    measured impact (output noise power, % of the signal, with only that node in int8).
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
            {"field": "all int8", "value": f"{self.quantized_metric:.6g}"},
            {"field": "final", "value": f"{self.final_metric:.6g}"},
            {
                "field": "drop",
                "value": f"{self.drop:.4g} ({self.drop_type}, max {self.max_drop:.4g})",
            },
            {"field": "reverted to float", "value": reverted},
            {"field": "int8 nodes", "value": str(self.int8_nodes)},
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


class _Search:
    """Evaluations with a cache keyed by the reverted set, and the drop arithmetic."""

    def __init__(
        self,
        quantizer: Int8Quantizer,
        validation_fn: Callable[[Any, Any], Any],
        validation_dataset: Any,
        max_drop: float,
        drop_type: str,
        base_exclude: tuple[str, ...],
        progress: Any,
    ):
        self.q = quantizer
        self.fn = validation_fn
        self.data = validation_dataset
        self.max_drop = max_drop
        self.drop_type = drop_type
        self.base_exclude = base_exclude
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

    def metric(self, reverted: Iterable[str]) -> float:
        """Metric with ``reverted`` in float; NaN (never passing) when nothing int8 is left."""
        key = frozenset(reverted)
        if key not in self.cache:
            model = self.q.quantize(self.base_exclude + tuple(key))
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


def _ranking(
    quantizer: Int8Quantizer,
    candidates: list[str],
    feeds: list[dict[str, np.ndarray]],
    base_exclude: tuple[str, ...],
) -> dict[str, float]:
    """Measured impact of each candidate: output noise (% of signal power) when it alone is int8.

    Each probe is the real ORT model with every other candidate excluded, so the number is that
    node's own contribution (weights, its Q/DQ, its integer kernel) as seen at the outputs.
    Isolated contributions roughly add up, and a node that alone destroys the output scores
    high even when another node does too (where "revert one, measure the gain" sees nothing).
    """
    reference = run_outputs(quantizer.prepared, feeds)
    impact: dict[str, float] = {}
    for name in track(candidates, "int8 ranking (one node int8 at a time)"):
        others = tuple(n for n in candidates if n != name)
        model = quantizer.quantize(base_exclude + others)
        impact[name] = 100.0 * output_noise(run_outputs(model, feeds), reference)
    return impact


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
    ranking_items: int = 16,
    prune: int = 32,
    **int8_options: Any,
) -> AccuracyControlResult:
    """int8 QDQ model whose ``validation_fn`` metric drops at most ``max_drop`` from float.

    ``validation_fn(run, validation_dataset) -> float`` (higher is better) receives
    ``validation_dataset`` unchanged. ``drop_type`` is ``"absolute"`` or ``"relative"`` (to
    the float baseline). ``max_reverted`` caps how many nodes may go back to float.
    ``ranking_items`` feeds (from the validation dataset when it is a :class:`Dataset`, else
    from the calibration data) measure each node's impact; a chosen set of at most ``prune``
    nodes gets a leave-one-out pass. Other keyword arguments go to
    :func:`workbench.precision.int8.quantize_int8` options (``reduce_range``, ``optimize``...).

    Raises :class:`AccuracyNotReachedError` (``.best`` = best result found) when the target
    needs more than ``max_reverted`` nodes or every node in float; :class:`InputError` for
    empty datasets, a bad ``validation_fn``, ``max_drop < 0`` or an unknown ``drop_type``.
    """
    start = time.perf_counter()
    if drop_type not in DROP_TYPES:
        raise InputError(f"unknown drop_type {drop_type!r}; use 'absolute' or 'relative'")
    if not isinstance(max_drop, (int, float)) or math.isnan(max_drop) or max_drop < 0:
        raise InputError(f"max_drop must be a number >= 0, got {max_drop!r}")
    if max_reverted is not None and (not isinstance(max_reverted, int) or max_reverted < 0):
        raise InputError(f"max_reverted must be None or an int >= 0, got {max_reverted!r}")
    if not callable(validation_fn):
        raise InputError(
            f"validation_fn must be callable as validation_fn(run, dataset) -> float, got "
            f"{type(validation_fn).__name__}"
        )
    if validation_dataset is None or (
        hasattr(validation_dataset, "__len__") and len(validation_dataset) == 0
    ):
        raise InputError("validation_dataset is empty; give at least one item")
    calibration_dataset = as_dataset(calibration_dataset, "calibration_dataset")

    quantizer = Int8Quantizer(
        model, calibration_dataset, per_channel=per_channel, calibration=calibration, **int8_options
    )
    base_exclude = quantizer.check_nodes(exclude_nodes)
    with quantizer as q, task("int8 accuracy control", None) as progress:
        search = _Search(
            q, validation_fn, validation_dataset, float(max_drop), drop_type, base_exclude, progress
        )
        search.baseline = search.evaluate_model(q.source, "float", 0)
        full_model = q.quantize(base_exclude)
        candidates = [n for n in quantized_nodes(full_model) if n not in base_exclude]
        if not candidates:  # the "int8" model would be float: say so instead of returning it
            raise UnsupportedError(no_int8_message(q.prepared, base_exclude))
        quantized_metric = search.cache[frozenset()] = search.evaluate_model(
            full_model, "all int8", 0
        )

        def finish(reverted: tuple[tuple[str, float], ...], ranking: dict[str, float]):
            names = tuple(n for n, _ in reverted)
            final_model = q.quantize(base_exclude + names) if names else full_model
            final = search.metric(names)
            return AccuracyControlResult(
                model=final_model,
                baseline_metric=search.baseline,
                quantized_metric=quantized_metric,
                final_metric=final,
                drop=search.drop(final),
                max_drop=float(max_drop),
                drop_type=drop_type,
                reverted_nodes=reverted,
                ranking=ranking,
                evaluations=search.evaluations,
                seconds=time.perf_counter() - start,
                int8_nodes=len(quantized_nodes(final_model)),
                history=tuple(search.history),
                notes=(
                    f"calibration: {q.calibration}, per_channel={q.per_channel}, "
                    f"reduce_range={q.reduce_range}; preparation: {q.prepare_note}",
                ),
            )

        if search.ok(quantized_metric):
            return finish((), {})
        feeds_source = validation_dataset if isinstance(validation_dataset, Dataset) else None
        feeds = _ranking_feeds(feeds_source, calibration_dataset, ranking_items)
        with quiet():
            ranking = _ranking(q, candidates, feeds, base_exclude)
        order = sorted(candidates, key=lambda n: (-ranking[n], candidates.index(n)))
        limit = len(order) if max_reverted is None else min(max_reverted, len(order))

        # galloping then binary search for the smallest prefix of the ranking that passes;
        # reverting every node (a float model) is never a valid answer
        found: int | None = None
        low, k = 0, 1
        top = min(limit, len(order) - 1)
        while k <= top:
            value = search.metric(order[:k])
            if math.isnan(value):  # only float left: valid prefixes are shorter
                top = k - 1
                break
            if search.ok(value):
                found = k
                break
            low = k
            k *= 2
        while found is None and top > low:  # the longest allowed prefix that is still int8
            value = search.metric(order[:top])
            if not math.isnan(value):
                found = top if search.ok(value) else None
                break
            top -= 1
        if found is None:
            best_set = max(
                (s for s in search.cache if len(s) <= limit and not math.isnan(search.cache[s])),
                key=lambda s: (search.cache[s], -len(s)),
            )
            best_names = tuple(n for n in order if n in best_set)
            best_gains = _prefix_gains(best_names, order, search.cache)
            best = finish(tuple((n, best_gains[n]) for n in best_names), ranking)
            why = (
                f"reverting up to max_reverted={max_reverted} node(s)"
                if max_reverted is not None and max_reverted < len(order)
                else f"anything short of reverting all {len(order)} quantized nodes (a float model)"
            )
            raise AccuracyNotReachedError(
                f"max_drop={max_drop} ({drop_type}) not reached with {why}: best drop "
                f"{best.drop:.4g} with {len(best_names)} node(s) in float (baseline "
                f"{search.baseline:.6g}, all int8 {quantized_metric:.6g}); relax max_drop, raise "
                "max_reverted, or try another calibration",
                best=best,
            )
        hi = found
        lo = low + 1
        while lo < hi:  # smallest passing prefix in (low, found]
            mid = (lo + hi) // 2
            if search.ok(search.metric(order[:mid])):
                hi = mid
            else:
                lo = mid + 1
        chosen = list(order[:hi])

        # leave-one-out: drop nodes the target does not need, measure each kept node's gain
        gains: dict[str, float] = {}
        if len(chosen) <= prune:
            for name in reversed(list(chosen)):
                rest = [n for n in chosen if n != name]
                without = search.metric(rest)
                if search.ok(without):
                    chosen = rest
                else:
                    gains[name] = search.metric(chosen) - without
        gains = {**_prefix_gains(chosen, order, search.cache), **gains}
        return finish(tuple((n, gains[n]) for n in chosen), ranking)


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


def _ranking_feeds(
    validation: Dataset | None, calibration: Dataset, n: int
) -> list[dict[str, np.ndarray]]:
    """Up to ``n`` feeds for the ranking runs: validation items when they give feeds."""
    source = validation if validation is not None else calibration
    try:
        feeds = [f for _, f in zip(range(max(n, 1)), source.feeds(), strict=False)]
    except InputError:  # validation items are not feeds (no transform): use calibration data
        feeds = [f for _, f in zip(range(max(n, 1)), calibration.feeds(), strict=False)]
    return feeds
