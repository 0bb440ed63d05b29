"""The verdict of a sweep: a Pareto front with ties, and a recommendation with reasons.

Works on any record objects with the fields of :class:`workbench.study.Record` (duck-typed, so
this layer sits below the study). Two records differ on an axis only when a test says so:

- speed: ratio of median latencies (or of throughputs), block bootstrap of per-run times,
  ties below a minimum effect (:data:`workbench.statistics.LATENCY_MARGIN`);
- accuracy: paired tests on per-item scores (McNemar exact for 0/1 scores, Wilcoxon
  signed-rank otherwise); accuracies given as one number are compared as numbers;
- every pairwise comparison of the records compared in one call (both axes) forms one family,
  corrected with Holm's method.

Estimated latencies (simulated devices) are kept apart from measured ones unless
``mix_estimated=True``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError
from .results import Result, html_table
from .statistics import (
    LATENCY_MARGIN,
    NUMBER_TOLERANCE,
    Comparison,
    LogSpread,
    holm,
    log_spread,
    metric_step,
    normal_sf,
    paired_ci,
    paired_test,
    ratio_ci,
    ratio_test,
    z_value,
)

OBJECTIVES = ("latency", "throughput")
DROP_TYPES = ("absolute", "relative")
#: the precision a built-in variant's model is stored in (to say when another one ran)
_NOMINAL = {"f32": "f32", "f16": "f16", "bf16": "bf16", "int8": "int8", "int8-ac": "int8"}
_EXACT = ("numbers", "identical item scores")  # deterministic outcomes: not counted by Holm


# ----------------------------------------------------------------------------- record access


def _get(r: Any, name: str, default: Any = None) -> Any:
    value = getattr(r, name, default)
    return default if value is None else value


def is_ok(r: Any) -> bool:
    """Measured without error (duck-typed ``Record.ok``)."""
    ok = getattr(r, "ok", None)
    if ok is not None:
        return bool(ok)
    return r.error is None and r.accuracy is not None and r.latency_ms is not None


def is_estimated(r: Any) -> bool:
    """Is the record's latency an estimate (simulated device) rather than a measurement?"""
    return bool(_get(r, "estimated", False) or _get(r, "simulated", False))


def record_labels(records: Sequence[Any]) -> list[str]:
    """Unique plain labels: ``"int8 on cpu"``, plus ``[hint]`` / ``batch N`` only when needed."""

    def hint_of(r: Any) -> str:
        hints = _get(r, "hints", ())
        return "/".join(hints) if hints else str(_get(r, "hint", ""))

    labels = [f"{r.variant} on {r.device}" for r in records]
    for extra in (
        lambda r: f" [{hint_of(r)}]" if hint_of(r) else "",
        lambda r: f" batch {_get(r, 'batch', 1)}",
        lambda r: f" @{_host_name(r)}" if _host_name(r) else "",
    ):
        # add a part only where it tells apart records that share a label
        values: dict[str, set[str]] = {}
        for lab, r in zip(labels, records, strict=True):
            values.setdefault(lab, set()).add(extra(r))
        labels = [
            lab + extra(r) if len(values[lab]) > 1 else lab
            for lab, r in zip(labels, records, strict=True)
        ]
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab} #{seen[lab]}")
    return out


def _host_name(r: Any) -> str:
    host = _get(r, "host", "")
    return str(host.get("name", "")) if isinstance(host, dict) else str(host)


def _cost(r: Any, objective: str, seed: int, confidence: float) -> LogSpread:
    """Log of time per item (lower is better): median latency, or 1/throughput."""
    if objective == "throughput":
        s = log_spread(
            point=_get(r, "throughput"), ci=_get(r, "throughput_ci"), confidence=confidence
        )
        return LogSpread(-s.point, s.se, None if s.draws is None else -s.draws)
    return log_spread(
        _get(r, "times_ms", None) or None,
        point=r.latency_ms,
        ci=_get(r, "latency_ci_ms"),
        confidence=confidence,
        seed=seed,
    )


def _scores(r: Any) -> np.ndarray | None:
    s = _get(r, "scores", ())
    return np.asarray(s, dtype=np.float64) if len(s) else None


# ----------------------------------------------------------------------------- comparisons


class Compared:
    """Every pairwise comparison of ``records`` on speed and accuracy, Holm-corrected together.

    ``speed(i, j)``: −1 when i is significantly faster than j, +1 slower, 0 tied;
    ``accuracy(i, j)``: +1 when i is significantly more accurate, −1 less, 0 tied.
    """

    def __init__(
        self,
        records: Sequence[Any],
        *,
        objective: str = "latency",
        confidence: float = 0.95,
        seed: int = 0,
        margin: float = LATENCY_MARGIN,
    ) -> None:
        if objective not in OBJECTIVES:
            raise InputError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.records = list(records)
        self.confidence, self.seed, self.margin = confidence, seed, margin
        self.cost = [_cost(r, objective, seed, confidence) for r in records]
        self.acc = np.array([float(r.accuracy) for r in records])
        self.scores = [_scores(r) for r in records]
        n = len(self.records)
        self.raw = {"speed": np.ones((n, n)), "accuracy": np.ones((n, n))}
        self.adj = {"speed": np.ones((n, n)), "accuracy": np.ones((n, n))}
        self.test_of: dict[tuple[int, int], str] = {}
        family: list[tuple[str, int, int]] = []
        for i in range(n):
            for j in range(i + 1, n):
                _, p = ratio_test(self.cost[i], self.cost[j], margin)
                self._set("speed", i, j, p)
                if self.cost[i].se or self.cost[j].se:
                    family.append(("speed", i, j))
                p, test = self._accuracy_test(i, j)
                self._set("accuracy", i, j, p)
                self.test_of[(i, j)] = self.test_of[(j, i)] = test
                if test not in _EXACT:
                    family.append(("accuracy", i, j))
        self.tests = len(family)
        for (axis, i, j), p in zip(
            family, holm([self.raw[a][i, j] for a, i, j in family]), strict=True
        ):
            self.adj[axis][i, j] = self.adj[axis][j, i] = p
        for axis in self.adj:  # deterministic outcomes keep their raw p (0 or 1)
            keep = np.ones((n, n), dtype=bool)
            for a, i, j in family:
                if a == axis:
                    keep[i, j] = keep[j, i] = False
            self.adj[axis][keep] = self.raw[axis][keep]

    def _set(self, axis: str, i: int, j: int, p: float) -> None:
        self.raw[axis][i, j] = self.raw[axis][j, i] = p

    def _accuracy_test(self, i: int, j: int) -> tuple[float, str]:
        a, b = self.scores[i], self.scores[j]
        if a is not None and b is not None and a.size == b.size:
            return paired_test(a, b)
        ci_a, ci_b = (_get(self.records[k], "accuracy_ci") for k in (i, j))
        d = abs(self.acc[i] - self.acc[j])
        if ci_a and ci_b and None not in (*ci_a, *ci_b):
            z = z_value(self.confidence)
            se = math.hypot(ci_a[1] - ci_a[0], ci_b[1] - ci_b[0]) / (2 * z)
            if se > 0:
                return float(2 * normal_sf(d / se)), "normal from intervals (unpaired)"
        tol = NUMBER_TOLERANCE * max(1.0, abs(self.acc[i]), abs(self.acc[j]))
        return (0.0 if d > tol else 1.0), "numbers"

    def _alpha(self) -> float:
        return 1.0 - self.confidence

    def speed(self, i: int, j: int) -> int:
        if i == j or self.adj["speed"][i, j] >= self._alpha():
            return 0
        return -1 if self.cost[i].point < self.cost[j].point else 1

    def accuracy(self, i: int, j: int) -> int:
        if i == j or self.adj["accuracy"][i, j] >= self._alpha():
            return 0
        return 1 if self.acc[i] > self.acc[j] else -1

    def tied(self, i: int, j: int) -> bool:
        return self.speed(i, j) == 0 and self.accuracy(i, j) == 0

    def dominates(self, i: int, j: int) -> bool:
        """At least as good on both axes (not significantly worse) and better on one."""
        s, a = self.speed(i, j), self.accuracy(i, j)
        return s != 1 and a != -1 and (s == -1 or a == 1)

    def ratio(self, i: int, j: int) -> Comparison:
        """Time-per-item ratio i/j with interval and Holm-adjusted p-value."""
        return Comparison(
            "latency ratio",
            math.exp(self.cost[i].point - self.cost[j].point),
            ratio_ci(self.cost[i], self.cost[j], self.confidence),
            float(self.raw["speed"][i, j]),
            f"block bootstrap of medians, minimum effect {self.margin:.0%}",
            float(self.adj["speed"][i, j]),
            f"Holm over {self.tests} tests",
        )

    def difference(self, i: int, j: int) -> Comparison:
        """Accuracy of i minus j with (paired, when possible) interval and adjusted p-value."""
        a, b = self.scores[i], self.scores[j]
        d = float(self.acc[i] - self.acc[j])
        if a is not None and b is not None and a.size == b.size:
            ci = paired_ci(a, b, self.confidence, self.seed)
        else:
            ci = (d, d)
        return Comparison(
            "accuracy difference",
            d,
            ci,
            float(self.raw["accuracy"][i, j]),
            self.test_of.get((i, j), "identical"),
            float(self.adj["accuracy"][i, j]),
            f"Holm over {self.tests} tests",
        )


# ----------------------------------------------------------------------------- Pareto front


class ParetoFront(tuple):
    """Non-dominated records (a tuple, sorted by speed) with tied records grouped.

    ``groups``: tuples of records that tie on both axes (first = fastest point estimate);
    ``estimated_groups``: the same for estimated (simulated) records, kept apart.
    ``mark(r)`` gives a table/plot mark: ``"★"`` alone on the front, ``"≈1"``, ``"≈2"``… for
    members of a tied group, ``""`` off the front.
    """

    groups: tuple[tuple[Any, ...], ...]
    estimated_groups: tuple[tuple[Any, ...], ...]

    def __new__(
        cls,
        groups: Sequence[Sequence[Any]] = (),
        estimated_groups: Sequence[Sequence[Any]] = (),
    ) -> ParetoFront:
        self = super().__new__(cls, [r for g in (*groups, *estimated_groups) for r in g])
        self.groups = tuple(tuple(g) for g in groups)
        self.estimated_groups = tuple(tuple(g) for g in estimated_groups)
        return self

    def group_of(self, record: Any) -> tuple[Any, ...]:
        """The tied group holding ``record`` (empty when it is not on the front)."""
        for g in (*self.groups, *self.estimated_groups):
            if any(r is record for r in g):
                return g
        return ()

    def mark(self, record: Any) -> str:
        tied = [g for g in (*self.groups, *self.estimated_groups) if len(g) > 1]
        for k, g in enumerate(tied, 1):
            if any(r is record for r in g):
                return f"≈{k}"
        return "★" if self.group_of(record) else ""


def _front_groups(cmp: Compared) -> list[list[Any]]:
    n = len(cmp.records)
    front = [i for i in range(n) if not any(cmp.dominates(j, i) for j in range(n) if j != i)]
    if not front and n:  # a cycle of non-transitive ties: fall back to point estimates
        front = [
            i
            for i in range(n)
            if not any(
                cmp.cost[j].point <= cmp.cost[i].point
                and cmp.acc[j] >= cmp.acc[i]
                and (cmp.cost[j].point < cmp.cost[i].point or cmp.acc[j] > cmp.acc[i])
                for j in range(n)
            )
        ]
    front.sort(key=lambda i: (cmp.cost[i].point, -cmp.acc[i]))
    groups: list[list[int]] = []
    for i in front:
        home = next((g for g in groups if cmp.tied(g[0], i)), None)
        if home is None:
            groups.append([i])
        else:
            home.append(i)
    return [[cmp.records[i] for i in g] for g in groups]


def pareto_front(
    records: Iterable[Any],
    *,
    objective: str = "latency",
    confidence: float = 0.95,
    seed: int = 0,
    margin: float = LATENCY_MARGIN,
    mix_estimated: bool = False,
) -> ParetoFront:
    """Records no other record dominates — at least as good on accuracy and speed and
    *significantly* better on one — with ties grouped. Failed records are left out."""
    pool = [r for r in records if _unusable(r, objective) is None]
    parts = (
        [pool]
        if mix_estimated
        else [
            [r for r in pool if not is_estimated(r)],
            [r for r in pool if is_estimated(r)],
        ]
    )
    out = []
    for part in parts:
        cmp = Compared(part, objective=objective, confidence=confidence, seed=seed, margin=margin)
        out.append(_front_groups(cmp))
    return ParetoFront(out[0], out[1] if len(out) > 1 else ())


# ----------------------------------------------------------------------------- recommendation


@dataclass(frozen=True)
class Recommendation(Result):
    """What to ship and why not the others.

    ``record``: the fastest setting whose accuracy drop from the f32 baseline on its device is
    within ``max_drop`` (ties broken by accuracy, then model size), or None when nothing was
    measured. ``ties``: records tied with it on speed and accuracy. ``reasons``: each other
    record's label → one sentence. ``status``: ``"ok"``, ``"nothing within max_drop"``
    (only the baseline qualifies; ``closest`` is the nearest faster setting), ``"unresolved"``
    (the data cannot resolve ``max_drop``), ``"no baseline"`` or ``"no records"``.
    """

    record: Any = None
    ties: tuple[Any, ...] = ()
    reasons: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    label: str = ""
    status: str = "ok"
    baseline: Any = None
    closest: Any = None
    max_drop: float = 0.01
    drop_type: str = "absolute"
    objective: str = "latency"
    confidence: float = 0.95
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Recommendation({self.label or 'nothing'}: {self.status})"

    def _repr_html_(self) -> str:
        e = html.escape
        head = e(self.label) if self.label else "nothing to recommend"
        rows = [
            {"setting": k, "why not": v.removeprefix(f"{k}: ")} for k, v in self.reasons.items()
        ]
        return (
            '<div class="wb-recommendation">'
            f"<p><b>Recommendation: {head}</b> <small>({e(self.status)})</small></p>"
            f"<p>{e(self.summary)}</p>"
            + html_table(rows, ["setting", "why not"], title="Every other setting")
            + "</div>"
        )


def recommend(
    records: Iterable[Any],
    max_drop: float = 0.01,
    drop_type: str = "absolute",
    device: str | None = None,
    *,
    objective: str = "latency",
    confidence: float = 0.95,
    seed: int = 0,
    margin: float = LATENCY_MARGIN,
    mix_estimated: bool = False,
    why: Callable[[Any], str | None] | None = None,
) -> Recommendation:
    """Pick the fastest setting within ``max_drop`` of the f32 baseline and explain the rest.

    ``drop_type``: ``"absolute"`` (baseline − accuracy) or ``"relative"`` (divided by the
    baseline). ``device``: consider only that device. ``objective``: ``"latency"`` (records at
    the smallest batch) or ``"throughput"``. ``why(record)`` may add a fact to a reason (as may
    record notes starting with ``"why:"``).
    """
    if drop_type not in DROP_TYPES:
        raise InputError(f"drop_type must be one of {DROP_TYPES}, got {drop_type!r}")
    if not (isinstance(max_drop, (int, float)) and max_drop >= 0):
        raise InputError(f"max_drop must be a number ≥ 0, got {max_drop!r}")
    if objective not in OBJECTIVES:
        raise InputError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    records = list(records)
    labels = dict(zip(map(id, records), record_labels(records), strict=True))
    pool, reasons = _select(records, labels, device, objective, mix_estimated)
    settings = dict(
        max_drop=float(max_drop), drop_type=drop_type, objective=objective, confidence=confidence
    )
    if not pool:
        summary = "Nothing to recommend: no record was measured without error"
        summary += f" on {device}." if device else "."
        return Recommendation(reasons=reasons, summary=summary, status="no records", **settings)
    cmp = Compared(pool, objective=objective, confidence=confidence, seed=seed, margin=margin)
    v = _Verdict(cmp, [labels[id(r)] for r in pool], float(max_drop), drop_type, why)
    for k in range(len(pool)):
        if k != v.chosen:
            reasons[v.labels[k]] = v.reason(k)
    return Recommendation(
        record=pool[v.chosen],
        ties=tuple(pool[k] for k in v.ties),
        reasons=reasons,
        summary=v.summary(),
        label=v.labels[v.chosen],
        status=v.status,
        baseline=None if v.base_of[v.chosen] is None else pool[v.base_of[v.chosen]],
        closest=None if v.closest is None else pool[v.closest],
        figures=v.figures(),
        **settings,
    )


def _finite_positive(x: Any) -> bool:
    return isinstance(x, (int, float, np.number)) and math.isfinite(x) and x > 0


def _unusable(r: Any, objective: str) -> str | None:
    """Why ``r`` cannot be compared (None: it can)."""
    if not is_ok(r):
        err = str(_get(r, "error", "") or "no accuracy or latency").strip().splitlines()
        return f"failed — {err[0][:200] if err else 'no accuracy or latency'}"
    if not math.isfinite(float(r.accuracy)):
        return f"accuracy is {r.accuracy} — not comparable"
    if not _finite_positive(r.latency_ms):
        return f"latency {r.latency_ms} ms is not a positive time — not comparable"
    if objective == "throughput" and not _finite_positive(_get(r, "throughput")):
        return "no throughput measured — not comparable on throughput"
    return None


def _select(
    records: list[Any],
    labels: dict[int, str],
    device: str | None,
    objective: str,
    mix_estimated: bool,
) -> tuple[list[Any], dict[str, str]]:
    """The records to compare, and a reason for every record left out."""
    reasons: dict[str, str] = {}
    for r in records:
        why = _unusable(r, objective)
        if why:
            reasons[labels[id(r)]] = f"{labels[id(r)]}: {why}"
    ok = [r for r in records if _unusable(r, objective) is None]
    if device is not None:
        for r in ok:
            if r.device != device:
                reasons[labels[id(r)]] = f"{labels[id(r)]}: not considered (device={device} asked)"
        ok = [r for r in ok if r.device == device]
    measured = [r for r in ok if not is_estimated(r)]
    if measured and not mix_estimated:
        for r in ok:
            if is_estimated(r):
                reasons[labels[id(r)]] = (
                    f"{labels[id(r)]}: latency estimated for a simulated device — kept apart "
                    "from measured records (mix_estimated=True compares them)"
                )
        ok = measured
    if objective == "latency" and ok:
        batch = min(int(_get(r, "batch", 1)) for r in ok)
        for r in ok:
            if int(_get(r, "batch", 1)) != batch:
                reasons[labels[id(r)]] = (
                    f"{labels[id(r)]}: batch {_get(r, 'batch', 1)} latency is not comparable "
                    f"with batch {batch} (objective='throughput' compares batches)"
                )
        ok = [r for r in ok if int(_get(r, "batch", 1)) == batch]
    return ok, reasons


def _fmt_ratio(x: float) -> str:
    return f"{x:.3g}×" if x < 10 else f"{x:.0f}×"


class _Verdict:
    """The decision over one comparison table (kept small: one method per question)."""

    def __init__(
        self,
        cmp: Compared,
        labels: list[str],
        max_drop: float,
        drop_type: str,
        why: Callable[[Any], str | None] | None,
    ) -> None:
        self.cmp, self.labels, self.max_drop, self.drop_type, self.why = (
            cmp,
            labels,
            max_drop,
            drop_type,
            why,
        )
        recs = cmp.records
        n = len(recs)
        self.base_of = [_baseline(recs, r.device) for r in recs]
        self.no_baseline = all(b is None for b in self.base_of)
        if self.no_baseline:  # no f32 at all: the most accurate record is the reference
            best = int(np.argmax(cmp.acc))
            self.base_of = [best] * n
        self.drop = [self._drop(k) for k in range(n)]
        within = [k for k in range(n) if self.drop[k] <= max_drop + 1e-12]
        leader = min(within, key=lambda k: cmp.cost[k].point)
        group = [k for k in within if cmp.speed(k, leader) == 0]
        self.leader = leader
        # tie-breaks that rest on a test: accuracy (only a significant difference counts),
        # then model size, then the median
        most = max(group, key=lambda k: cmp.acc[k])
        self.chosen = min((k for k in group if cmp.accuracy(k, most) != -1), key=self._tie_key)
        self.group = group
        self.ties = [k for k in group if k != self.chosen and cmp.tied(k, self.chosen)]
        c = self.chosen
        rejected = [k for k in range(n) if k not in within]
        faster = [k for k in rejected if cmp.cost[k].point < cmp.cost[c].point]
        self.closest = min(faster, key=lambda k: self.drop[k], default=None)
        self.status, self.notes = self._status(within, faster)

    def _tie_key(self, k: int) -> tuple[float, float, float]:
        """Smaller model first, then the lower median, then the higher mean accuracy."""
        size = _get(self.cmp.records[k], "model_bytes", None)
        return (math.inf if size is None else size, self.cmp.cost[k].point, -self.cmp.acc[k])

    def _drop(self, k: int) -> float:
        b = self.base_of[k]
        if b is None:
            return math.inf  # no f32 on this device nor anywhere: cannot judge its accuracy
        d = float(self.cmp.acc[b] - self.cmp.acc[k])
        return d / abs(self.cmp.acc[b]) if self.drop_type == "relative" and self.cmp.acc[b] else d

    def _scale(self, k: int) -> float:
        b = self.base_of[k]
        acc = abs(self.cmp.acc[b]) if b is not None else 1.0
        return acc if self.drop_type == "relative" and acc else 1.0

    def drop_ci(self, k: int) -> tuple[float, float] | None:
        """Interval of the drop of k from its baseline (paired), or None without item scores."""
        b = self.base_of[k]
        if b is None or b == k or self.cmp.scores[k] is None or self.cmp.scores[b] is None:
            return None
        if self.cmp.scores[k].size != self.cmp.scores[b].size:
            return None
        lo, hi = self.cmp.difference(b, k).ci
        return lo / self._scale(k), hi / self._scale(k)

    def _status(self, within: list[int], faster: list[int]) -> tuple[str, list[str]]:
        c, notes = self.chosen, []
        b = self.base_of[c]
        if self.no_baseline:
            notes.append(
                "No f32 record was measured, so drops are counted from the most accurate "
                f"record ({self.labels[b]})."
            )
        base_scores = self.cmp.scores[b] if b is not None else None
        step = metric_step(base_scores) / self._scale(c) if base_scores is not None else 0.0
        unresolved = False
        if step > self.max_drop > 0:  # max_drop 0 asks for no drop: any step resolves it
            unresolved = True
            notes.append(
                f"The data cannot resolve max_drop={self.max_drop:g}: with "
                f"{base_scores.size} items the metric moves in steps of {step:.3g}; "
                f"use at least {math.ceil(step * base_scores.size / self.max_drop)} items."
            )
        ci = self.drop_ci(c)
        if ci is not None and ci[1] > self.max_drop:
            # an interval wider than max_drop cannot tell "no drop" from "too much drop"
            unresolved = unresolved or (ci[1] - ci[0]) / 2 > self.max_drop
            notes.append(
                f"The drop of {self.labels[c]} could be up to {ci[1]:.3g} "
                f"({self.cmp.confidence:.0%} interval), beyond max_drop={self.max_drop:g}: "
                "more validation items would settle it."
            )
        unsure = [k for k in faster if (self.drop_ci(k) or (math.inf,))[0] <= self.max_drop]
        if unsure:
            unresolved = True
            notes.append(
                "Within noise, max_drop may also hold for "
                + ", ".join(self.labels[k] for k in unsure)
                + " (faster, but its observed drop exceeds it)."
            )
        if self.no_baseline:
            return "no baseline", notes
        if unresolved:
            return "unresolved", notes
        only_baseline = all(self.base_of[k] == k for k in within)
        significant_faster = [k for k in faster if self.cmp.speed(k, c) == -1]
        if only_baseline and significant_faster:
            return "nothing within max_drop", notes
        return "ok", notes

    # -- sentences

    def speed_text(self, k: int, ref: int, name: str) -> str:
        s = self.cmp.speed(k, ref)
        r = self.cmp.ratio(k, ref).estimate
        if s == 0:
            return f"same speed as {name} (within noise)"
        if s > 0:
            return f"{_fmt_ratio(r)} slower than {name} (significant)"
        return f"{_fmt_ratio(1 / r)} faster than {name} (significant)"

    def accuracy_text(self, k: int) -> str:
        b = self.base_of[k]
        if b is None:
            return "no f32 baseline on its device to judge its accuracy"
        if b == k:
            return f"accuracy {self.cmp.acc[k]:.4g}"
        d = self.drop[k]
        test = self.cmp.test_of.get((k, b), "")
        kind = "drop" if d >= 0 else "gain"
        if test == "numbers":
            return f"accuracy {kind} {abs(d):.3g} (one number per run: untested)"
        if self.cmp.accuracy(k, b) == 0:
            return "accuracy change within noise" + (f" ({kind} {abs(d):.3g})" if d else "")
        return f"accuracy {kind} {abs(d):.3g} (significant)"

    def facts(self, k: int) -> str:
        r = self.cmp.records[k]
        out = []
        req, ran = _get(r, "precision_requested", ""), _get(r, "precision_ran", "")
        honoured = getattr(r, "honoured", req in ("", "default", ran))
        nominal = _NOMINAL.get(str(r.variant))
        if ran and not honoured:
            out.append(f"requested {req}, ran {ran}")
        elif ran and nominal and ran != nominal:
            out.append(f"this {r.variant} model ran {ran}")
        out += [n[4:].strip() for n in _get(r, "notes", ()) if str(n).lower().startswith("why:")]
        extra = self.why(r) if self.why is not None else None
        if extra:
            out.append(str(extra))
        return "; ".join(out)

    def verdict(self, k: int) -> str:
        c, name = self.chosen, self.labels[self.chosen]
        if self.drop[k] > self.max_drop + 1e-12:
            kind = "relative drop" if self.drop_type == "relative" else "drop"
            return f"{kind} {self.drop[k]:.3g} exceeds max_drop {self.max_drop:g}"
        s, a = self.cmp.speed(k, c), self.cmp.accuracy(k, c)
        if s == 1:
            return f"{_fmt_ratio(self.cmp.ratio(k, c).estimate)} slower than the choice {name}"
        if k in self.ties:
            return f"tied with the choice {name} on speed and accuracy; {self._tie_break(k)}"
        if a == -1:
            return f"as fast as the choice {name} within noise, but less accurate"
        if k not in self.group:
            return (
                f"significantly slower than {self.labels[self.leader]}, the fastest setting "
                "within max_drop"
            )
        return f"as fast as the choice {name} within noise; {self._tie_break(k)}"

    def _tie_break(self, k: int) -> str:
        c = self.chosen
        if self.cmp.accuracy(c, k) == 1:
            return "the choice is significantly more accurate"
        size_c, size_k = (_get(self.cmp.records[i], "model_bytes", None) for i in (c, k))
        if size_c is not None and size_k is not None and size_c < size_k:
            return "the choice is the smaller model"
        return "the choice has the lower median"

    def reason(self, k: int) -> str:
        b = self.base_of[k]
        if b == k:
            head = f"the f32 baseline ({self.accuracy_text(k)})"
        elif b is None:
            head = self.accuracy_text(k)
        else:
            head = f"{self.speed_text(k, b, _short(self.cmp.records[b]))}, {self.accuracy_text(k)}"
        facts = self.facts(k)
        return f"{self.labels[k]}: {head}; {self.verdict(k)}" + (f" — {facts}" if facts else "")

    def summary(self) -> str:
        c = self.chosen
        b = self.base_of[c]
        if b == c:
            what = f"{self.labels[c]} (the f32 baseline, accuracy {self.cmp.acc[c]:.4g})"
        else:
            ratio = self.cmp.ratio(c, b)
            lo, hi = ratio.ci
            drop = self.drop[c]
            what = (
                f"{self.labels[c]}: {self.speed_text(c, b, self.labels[b])} "
                f"[time ratio {ratio.estimate:.3g}, {self.cmp.confidence:.0%} interval "
                f"{lo:.3g}–{hi:.3g}], "
                f"{self.accuracy_text(c)} — "
                + (
                    f"drop {drop:.3g} ≤ max_drop {self.max_drop:g}"
                    if drop > 0
                    else f"no drop (max_drop {self.max_drop:g})"
                )
            )
        text = f"Recommended: {what}."
        if self.status == "nothing within max_drop" and self.closest is not None:
            k = self.closest
            text += (
                f" Nothing faster is within max_drop={self.max_drop:g}; the closest is "
                f"{self.labels[k]} ({self.speed_text(k, c, 'the choice')}, "
                f"drop {self.drop[k]:.3g})."
            )
        if self.ties:
            text += " Tied within noise: " + ", ".join(self.labels[k] for k in self.ties) + "."
        if self.notes:
            text += " " + " ".join(self.notes)
        if is_estimated(self.cmp.records[c]):
            text += " Latencies are estimates for simulated devices, not measurements."
        return text + " " + self._method()

    def _method(self) -> str:
        used = set(self.cmp.test_of.values())
        tests = sorted(used - set(_EXACT))
        if tests:
            acc = "paired " + ", ".join(tests) + " tests on the same items"
        elif "numbers" in used:
            acc = "compared as numbers (no per-item scores)"
        else:
            acc = "every record scored every item the same"
        return (
            f"Speed: ratio of medians, block bootstrap of per-run times, differences under "
            f"{self.cmp.margin:.0%} are ties; accuracy: {acc}; Holm correction over "
            f"{self.cmp.tests} tests at {self.cmp.confidence:.0%} confidence."
        )

    def figures(self) -> dict[str, dict[str, Any]]:
        """Per label: speed ratio to the choice and the drop with its interval (for tables)."""
        out: dict[str, dict[str, Any]] = {}
        for k, lab in enumerate(self.labels):
            ratio = self.cmp.ratio(k, self.chosen)
            out[lab] = {
                "ratio_to_choice": ratio.estimate,
                "ratio_ci": ratio.ci,
                "speed_vs_choice": self.cmp.speed(k, self.chosen),
                "drop": None if math.isinf(self.drop[k]) else self.drop[k],
                "drop_ci": self.drop_ci(k),
                "within": self.drop[k] <= self.max_drop + 1e-12,
                "ties": tuple(self.labels[t] for t in self.ties) if k == self.chosen else (),
            }
        return out


def reasons_by_record(rec: Recommendation, records: Sequence[Any]) -> list[str]:
    """The reason of each of ``records`` (the list given to :func:`recommend`), aligned with
    it: ``""`` for the chosen record. For tables that show reasons row by row."""
    return [
        ""
        if rec.record is not None and (r is rec.record or r == rec.record)
        else rec.reasons.get(lab, "")
        for r, lab in zip(records, record_labels(records), strict=True)
    ]


def _short(r: Any) -> str:
    return str(r.variant)


def _baseline(records: Sequence[Any], device: str) -> int | None:
    """Index of the f32 reference for ``device``: an f32 record that ran f32 there, most
    accurate first; else any f32 record there; else f32 on any device."""
    for pool in (
        [k for k, r in enumerate(records) if r.variant == "f32" and r.device == device],
        [k for k, r in enumerate(records) if r.variant == "f32"],
    ):
        if pool:
            ran_f32 = [k for k in pool if _get(records[k], "precision_ran", "") in ("", "f32")]
            return max(ran_f32 or pool, key=lambda k: float(records[k].accuracy))
    return None


__all__ = [
    "Compared",
    "ParetoFront",
    "Recommendation",
    "is_estimated",
    "is_ok",
    "pareto_front",
    "recommend",
    "reasons_by_record",
    "record_labels",
]
