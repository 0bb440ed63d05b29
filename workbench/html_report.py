"""Single-file HTML report: ``report(study_or_results, "report.html")``.

Everything is inline (CSS, SVG figures, a few lines of JS that sort tables), so the file works
offline, can be mailed around and prints well. A Content-Security-Policy in the page allows no
network access at all and only the report's own script (by hash). User-controlled strings
(node, file, variant and device names, metadata) reach the page only through Jinja2 with
autoescaping on, or inside SVG rewritten by the allowlist sanitizer of :mod:`workbench.viz.svg`.

Sections appear only for what is given: a Study (its recommendation first, then tradeoff plots,
the records grouped by host, a glossary of its hints, the Pareto front), a
MixedPrecisionResult, an AccuracyControlResult, an Affinity, a PartitionedModel and its profile,
layer profiles / errors / comparisons, a ModelSummary (or ``model=`` to inspect), BenchResults,
and any other Result as a plain table. The page fits a 1280 px window: long notes show their
first sentence with the rest one click away.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import hashlib
import importlib.metadata
import math
import os
import platform
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import onnx
from markupsafe import Markup

from . import __version__
from .cpu import cpu_info as _cpu_info
from .errors import InputError, WorkbenchError
from .fileio import atomic_write_bytes
from .model import inspect, load_model
from .results import _REGISTRY, Result
from .study import with_records
from .viz.graphs import affinity_dot, plural, render, subgraphs_dot
from .viz.layer_graphs import layers_dot
from .viz.plots import figure_data_uri, figure_svg, tradeoff_plot
from .viz.svg import sanitize_svg

TEMPLATES = Path(__file__).parent / "templates"

#: precision-relevant CPU flags shown first (the full list sits in a collapsed block)

#: figures whose SVG is larger than this are embedded as PNG instead (keeps the file small)
MAX_SVG_BYTES = 1_500_000


# --------------------------------------------------------------------------- blocks & sections

#: table text longer than this shows its start, the whole text one click away
SHORT = 60


@dataclass(frozen=True)
class Cell:
    """One table cell: ``text`` (shown), ``sub`` (a second, smaller line such as a confidence
    interval) and ``full`` (details shown on click). Every part is escaped by the template."""

    text: str
    sub: str = ""
    full: str = ""

    def __str__(self) -> str:
        return self.text


def cell(value: Any) -> Cell:
    """A Cell from any value: formatted, long text shortened with the rest one click away."""
    if isinstance(value, Cell):
        return value
    text = _fmt(value)
    if len(text) > SHORT:
        return Cell(short_text(text), full=text)
    return Cell(text)


def short_text(text: str, width: int = SHORT) -> str:
    """The first sentence (or clause) of ``text``, at most ``width`` characters."""
    first = re.split(r"(?<=[.;])\s|\n", text.strip(), maxsplit=1)[0].rstrip(";.")
    return first if len(first) <= width else first[: width - 1].rstrip() + "…"


@dataclass
class Block:
    """One piece of a section: ``text`` (escaped), ``table`` (escaped cells) or ``figure``."""

    kind: str
    text: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[Cell]] = field(default_factory=list)
    row_classes: list[str] = field(default_factory=list)
    col_classes: list[str] = field(default_factory=list)
    caption: str = ""
    svg: Markup | None = None
    png: str = ""
    klass: str = ""


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    lead: str = ""
    klass: str = ""

    def text(self, text: str, klass: str = "") -> None:
        self.blocks.append(Block("text", text=text, klass=klass))

    def heading(self, text: str) -> None:
        self.blocks.append(Block("heading", text=text))

    def table(
        self,
        columns: list[str],
        rows: list[list[Any]],
        caption: str = "",
        row_classes: list[str] | None = None,
    ) -> None:
        self.blocks.append(
            Block(
                "table",
                columns=list(columns),
                col_classes=[
                    "col-" + re.sub(r"[^a-z0-9]+", "-", str(c).lower()).strip("-") for c in columns
                ],
                rows=[[cell(v) for v in r] for r in rows],
                row_classes=list(row_classes or [""] * len(rows)),
                caption=caption,
            )
        )

    def figure(self, fig_or_svg: Any, caption: str, prefix: str, klass: str = "") -> None:
        block = figure_block(fig_or_svg, caption, prefix)
        block.klass = klass
        self.blocks.append(block)


def _fmt(value: Any) -> str:
    """Cell text: floats to 4 significant digits, None empty, sequences joined."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


# --------------------------------------------------------------------------- SVG embedding


def safe_svg(svg: str | bytes, prefix: str = "f") -> Markup:
    """SVG markup safe to inline in HTML: :func:`workbench.viz.svg.sanitize_svg` (allowlist)."""
    return sanitize_svg(svg, prefix)


def figure_block(fig_or_svg: Any, caption: str, prefix: str) -> Block:
    """A figure block from a matplotlib Figure or SVG text/bytes (sanitized, ids prefixed)."""
    if isinstance(fig_or_svg, (str, bytes)):
        return Block("figure", svg=safe_svg(fig_or_svg, prefix), caption=caption)
    svg = figure_svg(fig_or_svg)
    if len(svg) > MAX_SVG_BYTES:
        block = Block("figure", png=figure_data_uri(fig_or_svg), caption=caption)
    else:
        block = Block("figure", svg=safe_svg(svg, prefix), caption=caption)
    return block


# --------------------------------------------------------------------------- environment


def cpu_info() -> dict[str, Any]:
    """CPU model name, cores and flags of this machine (see :mod:`workbench.cpu`)."""
    return _cpu_info().to_dict()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment_info() -> dict[str, Any]:
    """Versions (Python, workbench, onnx, onnxruntime, openvino, …), platform and CPU flags."""
    versions = {
        "python": sys.version.split()[0],
        "precision-workbench": __version__,
        "onnx": onnx.__version__,
    }
    for dist in ("onnxruntime", "onnx-ir", "openvino", "numpy", "matplotlib", "jinja2"):
        v = _version(dist)
        versions[dist] = v if v else "not installed"
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except Exception:  # report must still render without a working ORT
        providers = []
    return {
        "versions": versions,
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "ort_providers": providers,
        "generated": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# --------------------------------------------------------------------------- classify inputs


def _kind(obj: Any) -> str:
    """Section kind of a report input, by class name (so optional modules need not import)."""
    if isinstance(obj, onnx.ModelProto):
        return "model"
    if isinstance(obj, (str, os.PathLike)) and str(obj).endswith(".onnx"):
        return "model"
    for cls in type(obj).__mro__:
        kind = _KINDS.get(cls.__name__)
        if kind:
            return kind
    if isinstance(obj, Result):
        return "result"
    raise InputError(
        f"report() cannot show a {type(obj).__name__}; give a Study, results of the workbench "
        "(MixedPrecisionResult, AccuracyControlResult, Affinity, PartitionedModel, BenchResult, "
        "ModelSummary, …) or a model"
    )


_KINDS = {
    "Study": "study",
    "ModelSummary": "summary",
    "MixedPrecisionResult": "mixed",
    "AccuracyControlResult": "accuracy_control",
    "Float16Result": "float16",
    "Affinity": "affinity",
    "PartitionedModel": "partitioned",
    "PartitionProfile": "profile",
    "BenchResult": "bench",
    "CapabilityReport": "capability",
    "LayerProfile": "layer_profile",
    "LayerError": "layer_error",
    "LayerComparison": "layer_comparison",
}


def _flatten(obj: Any) -> list[Any]:
    if obj is None:
        return []
    if isinstance(obj, (list, tuple)):
        return [x for item in obj for x in _flatten(item)]
    if isinstance(obj, Mapping) and not isinstance(obj, Result):
        return [x for item in obj.values() for x in _flatten(item)]
    return [obj]


# --------------------------------------------------------------------------- section builders


class _Builder:
    """Collects sections; one method per input kind."""

    def __init__(
        self,
        model: onnx.ModelProto | None,
        max_drop: float = 0.01,
        drop_type: str = "absolute",
        profiles: Iterable[Any] = (),
    ):
        self.model = model
        self.max_drop = max_drop
        self.drop_type = drop_type
        self.profiles = list(profiles)  # measured bytes for the subgraph renders
        self.sections: list[Section] = []
        self.warnings: list[str] = []
        self._n = 0

    def prefix(self) -> str:
        self._n += 1
        return f"fig{self._n}"

    def section(self, id_: str, title: str, lead: str = "") -> Section:
        existing = sum(1 for s in self.sections if s.id.startswith(id_))
        s = Section(f"{id_}-{existing + 1}" if existing else id_, title, lead=lead)
        self.sections.append(s)
        return s

    def guarded(self, what: str, fn: Callable[[], None]) -> None:
        """Run one section builder; a failing optional part becomes a visible note, not a crash."""
        try:
            fn()
        except (WorkbenchError, ModuleNotFoundError) as e:
            self.warnings.append(f"{what}: {describe(e)}")

    # -- model
    def summary(self, summary: Any) -> None:
        s = self.section("model", "Model")
        rows = summary.summary_rows()
        s.table(["field", "value"], [[r["field"], r["value"]] for r in rows])
        meta = summary.metadata
        if meta:
            s.table(["key", "value"], [[k, v] for k, v in meta.items()], caption="Metadata")

    # -- study
    def study(self, study: Any) -> None:
        """Tradeoff plots, the variants (grouped by host), hint glossary, Pareto front (the
        recommendation is its own first section: :meth:`recommendation`)."""
        self.tradeoff(study)
        s = self.section(
            "study",
            "Variants",
            lead="Every distinct setting measured once (a row lists every hint that resolves to "
            "it). ★ marks the Pareto front, ≈ records tied with it; ⚠ marks a precision that "
            "ran other than requested; simulated devices are profiles run on this CPU. "
            "Drop is measured against the best float32 record; a note's details open on click.",
        )
        if not study.records:
            s.text("The study has no records.", "note")
            return
        hosts = _hosts(study)
        for host, records in hosts.items():
            if len(hosts) > 1:
                s.heading(f"Measured on {host}")
                s.text(_host_text(records[0]), "note")
            t = variants_table(with_records(study, records), front_of=study)
            s.table(t["columns"], t["rows"], row_classes=t["classes"])
        if len(hosts) == 1 and getattr(study.records[0], "host", None):
            s.text("Measured on " + _host_text(study.records[0]) + ".", "note")
        self._study_notes(s, study)
        self.glossary(study)
        self.pareto(study)

    def _study_notes(self, s: Section, study: Any) -> None:
        records = list(study.records)
        mismatches = sum(1 for r in records if not r.error and not r.honoured)
        if mismatches:
            s.text(
                f"{plural(mismatches, 'record')} ran at another precision than requested (⚠): "
                "the device did not honour the hint.",
                "warn",
            )
        errors = sum(1 for r in records if r.error)
        if errors:
            s.text(f"{plural(errors, 'record')} failed to build or run; see the notes column.")
        env = getattr(study, "environment", None) or {}
        if env:
            s.text(
                "Measured with "
                + ", ".join(f"{k} {v}" for k, v in env.items())
                + f" in {getattr(study, 'seconds', 0.0):.1f} s.",
                "note",
            )

    def recommendation(self, study: Any) -> None:
        """The verdict first: ``Study.recommend`` (when this version of the study has it)."""
        recommend = getattr(study, "recommend", None)
        if recommend is None or not study.records:
            return
        s = self.section("recommendation", "Recommendation")
        s.klass = "recommendation"
        try:
            rec = recommend(max_drop=self.max_drop, drop_type=self.drop_type)
        except WorkbenchError as e:
            s.text(f"No recommendation: {describe(e)}", "warn")
            return
        chosen = getattr(rec, "record", None)
        if chosen is not None:
            s.text(f"Ship {record_label(chosen)}.", "verdict")
        status = str(getattr(rec, "status", "ok"))
        closest = getattr(rec, "closest", None)
        if status != "ok":
            near = f"; closest faster setting: {record_label(closest)}" if closest else ""
            s.text(f"{status.capitalize()}{near}.", "warn")
        s.text(str(getattr(rec, "summary", "")))
        ties = [record_label(r) for r in getattr(rec, "ties", ()) or ()]
        if ties:
            s.text("Tied with it (differences within noise): " + ", ".join(ties) + ".")
        reasons = dict(getattr(rec, "reasons", None) or {})
        if reasons:
            s.table(
                ["setting", "why not"],
                [[label, Cell(_without_label(reason, label))] for label, reason in reasons.items()],
                caption="Every other setting, and why it was not chosen",
            )

    def glossary(self, study: Any) -> None:
        """What each hint label of the study means."""
        labels = list(dict.fromkeys(h for r in study.records for h in _record_hints(r)))
        if not labels:
            return
        s = self.section(
            "hints",
            "Hints",
            lead="What the execution hints of this study ask the backend for. ONNX Runtime's "
            "CPU provider ignores hints, so its settings are measured once for all of them.",
        )
        s.blocks.append(Block("glossary", rows=[[h, hint_meaning(h)] for h in labels]))

    def pareto(self, study: Any) -> None:
        front = study.pareto()
        if not front:
            return
        p = self.section(
            "pareto",
            "Pareto front",
            lead="Records no other record beats on both accuracy (higher) and median latency "
            "(lower) by more than the noise, fastest first.",
        )
        p.table(
            ["variant", "device", "hint", "ran", "accuracy", "median ms", "size KiB"],
            [
                [
                    r.variant,
                    f"{r.device} (simulated)" if r.simulated else r.device,
                    ", ".join(_record_hints(r)),
                    r.precision_ran,
                    r.accuracy,
                    r.latency_ms,
                    _kib(r.model_bytes),
                ]
                for r in front
            ],
        )

    def tradeoff(self, study: Any) -> None:
        s = self.section(
            "tradeoff",
            "Accuracy vs latency",
            lead="All hints together, then one plot per execution hint. Colour = device, marker "
            "= hint; Pareto records are gold stars on a dashed line, and points whose hint "
            "was not honoured are ringed in red.",
        )
        hints = list(dict.fromkeys(h for r in study.records if r.ok for h in _record_hints(r)))
        # all hints together at full width first, then one half-width plot per hint
        figs = [(study, "all hints together" if hints else "no record could be measured", "")]
        if len(hints) > 1:
            figs += [(study_for_hint(study, h), f"hint {h}", "half") for h in hints]
        elif hints:
            figs = [(study, f"hint {hints[0]}", "")]
        for sub, caption, klass in figs:
            fig = tradeoff_plot(
                sub, title=f"Accuracy vs latency — {caption}", compact=klass == "half"
            )
            s.figure(fig, caption, self.prefix(), klass)

    # -- precision results
    def rows_table(
        self, s: Section, rows: list[dict[str, Any]], caption: str = "", limit: int = 500
    ) -> None:
        """A table from row dicts (``summary_rows()`` of results), at most ``limit`` rows."""
        if not rows:
            return
        cols = list(dict.fromkeys(k for r in rows for k in r))
        s.table(cols, [[r.get(c) for c in cols] for r in rows[:limit]], caption=caption)
        if len(rows) > limit:
            s.text(f"{len(rows) - limit} more row(s) not shown.", "note")

    def float16(self, res: Any) -> None:
        s = self.section(
            "float16",
            f"{res.dtype} conversion",
            lead="Every float node converted unless it must stay float32; each kept node says "
            "why, and converted nodes without a low-precision kernel on the provider are listed "
            "as computing in float32 there.",
        )
        s.text(
            f"{len(res.converted)} node(s) converted, {len(res.kept_float)} kept in float32, "
            f"{res.casts_inserted} cast(s) inserted, {len(res.runs_in_float32)} converted node(s) "
            f"computed in float32 by {res.provider}."
        )
        self.rows_table(s, res.summary_rows())
        for note in res.notes:
            s.text(note, "note")

    def mixed(self, res: Any) -> None:
        s = self.section(
            "mixed",
            f"Automatic mixed precision ({res.dtype})",
            lead="Nodes whose values overflow or flush to zero in low precision are kept in "
            "float32 up front; the rest are ranked by their measured contribution to output error "
            "and a search decides how many of the most sensitive ones stay float.",
        )
        s.text(
            f"{res.converted_fraction:.0%} of the float-computing nodes converted to {res.dtype} "
            f"(accepted under simulated {res.dtype} rounding; what a device then computes them in "
            f"is in the variants table's 'ran' column); {len(res.kept_float)} node(s) kept in "
            f"float32; {res.evaluations} full-model evaluation(s) spent ({res.criterion})."
        )
        self.rows_table(s, res.summary_rows())
        self.rows_table(s, res.kept_rows(), "Kept in float32, most sensitive first")
        self.rows_table(s, [dict(h) for h in res.history], "Evaluations of the search")
        if res.sensitivity:
            s.figure(
                res.sensitivity_plot(),
                "Most sensitive nodes (output error when only that node is rounded); "
                "kept-float nodes in red",
                self.prefix(),
            )

    def accuracy_control(self, res: Any) -> None:
        s = self.section(
            "accuracy-control",
            "int8 with accuracy control",
            lead="The float baseline is measured, every quantizable op is quantized, and if the "
            "drop exceeds the limit the ops with the largest measured impact are reverted to "
            "float, as few as needed (ranked search, not one evaluation per op).",
        )
        if res.reverted_nodes:
            s.text(
                f"The fully quantized model scored {res.quantized_metric:.4g} against a float "
                f"baseline of {res.baseline_metric:.4g}; reverting {len(res.reverted_nodes)} "
                f"op(s) brought it to {res.final_metric:.4g} (drop {res.drop:.4g}, "
                f"{res.drop_type}, limit {res.max_drop:.4g}) in {res.evaluations} evaluation(s)."
            )
        else:
            s.text(
                f"No op had to be reverted: all int8 scores {res.final_metric:.4g} against a "
                f"float baseline of {res.baseline_metric:.4g} (drop {res.drop:.4g}, limit "
                f"{res.max_drop:.4g})."
            )
        self.rows_table(s, res.summary_rows())
        self.rows_table(
            s,
            [
                {"node": n, "measured gain": "not measured" if math.isnan(g) else g}
                for n, g in res.reverted_nodes
            ],
            "Reverted to float, in order",
        )
        self.rows_table(s, [dict(h) for h in res.history], "Evaluations of the search")
        if res.ranking:
            s.figure(
                res.plot(), "Ops ranked by measured impact; reverted ones in red", self.prefix()
            )

    # -- devices
    def affinity(self, aff: Any) -> None:
        s = self.section(
            "affinity",
            f"Device affinity ({aff.mode})",
            lead="Which device each node is assigned to, in device priority order, and why. "
            "Simulated devices are device profiles executed on the CPU.",
        )
        self.rows_table(s, aff.summary_rows())
        if self.model is None:
            s.text("Pass model= to report() to include the affinity graph.", "note")
        else:
            svg = render(affinity_dot(self.model, aff), format="svg")
            s.figure(svg, "Nodes colored by device", self.prefix())
        rows = [
            {"node": n, "op": aff.ops.get(n, ""), "device": d, "why": aff.reasons.get(n, "")}
            for n, d in aff.assignments.items()
        ]
        self.rows_table(s, rows, "Placement of every node")

    def partitioned(self, part: Any) -> None:
        s = self.section(
            "subgraphs",
            "Subgraphs",
            lead="Same-device regions merged wherever no cycle results; each subgraph runs in one "
            "session on its device, with boundary tensors copied between them.",
        )
        s.text(
            f"{len(part.subgraphs)} subgraph(s); splitting at every device change in model order "
            f"would give {part.naive_count}."
        )
        self.rows_table(s, part.summary_rows())
        prof = next((p for p in self.profiles if p.model == part.model), None)
        svg = render(subgraphs_dot(part, profile=prof), format="svg")
        s.figure(svg, "One cluster per subgraph; boundary tensors labelled", self.prefix())

    def profile(self, prof: Any) -> None:
        s = self.section(
            "profile",
            "Per-subgraph timings",
            lead="Each subgraph timed in the chained run; simulated devices run on this CPU, "
            "their time scaled by the profile's speed factor in the simulated column.",
        )
        s.text(
            f"{prof.total_ms:.3f} ms end to end (median of {prof.runs} runs); "
            f"{prof.boundary_bytes:,} boundary bytes copied per run."
        )
        self.rows_table(s, prof.summary_rows())
        for note in prof.notes:
            s.text(note, "note")
        s.figure(prof.plot(), "Median time per subgraph", self.prefix())

    # -- layers
    def layer_profile(self, prof: Any) -> None:
        sim = " (simulated)" if prof.simulated else ""
        s = self.section(
            "layers",
            f"Layers on {prof.device}{sim} [{prof.hint}]",
            lead="Time and precision of every layer as the runtime executed it (fused nodes "
            "count once); simulated devices are roofline estimates.",
        )
        what = "estimated" if prof.estimated else f"mean of {prof.runs} runs"
        s.text(
            f"{plural(len(prof.rows), 'layer')}, {prof.layer_ms:.4g} ms in layers, "
            f"{prof.total_ms:.4g} ms for the whole model ({what}); ran {prof.precision_ran}."
        )
        for note in prof.notes:
            s.text(note, "note")
        s.figure(
            prof.plot(), "Slowest layers, coloured by the precision they ran in", self.prefix()
        )
        s.figure(render(layers_dot(prof)), "Layers coloured by precision", self.prefix())
        self.rows_table(s, prof.summary_rows(), "Every layer", limit=200)

    def layer_error(self, err: Any) -> None:
        s = self.section(
            "layer-error",
            f"Where the error starts ({err.device})",
            lead="Every tensor the variant shares with its float32 reference, compared over the "
            "same items in graph order; the first one below the SQNR threshold is where the "
            "error starts.",
        )
        first = err.first_divergent or f"none: every tensor is above {err.threshold_db:g} dB"
        s.text(f"First divergent tensor: {first} (over {plural(err.items, 'item')}).")
        for note in err.notes:
            s.text(note, "note")
        s.figure(
            render(layers_dot(err)), "Nodes coloured by the SQNR of their output", self.prefix()
        )
        self.rows_table(s, err.summary_rows(), "Error per tensor", limit=200)

    def layer_comparison(self, cmp: Any) -> None:
        s = self.section(
            "layer-compare",
            "Layer by layer",
            lead=f"a = {cmp.a}, b = {cmp.b}: which layers got faster or slower and which changed "
            "precision.",
        )
        s.text(f"{cmp.total_a_ms:.4g} ms → {cmp.total_b_ms:.4g} ms for the whole model.")
        s.figure(cmp.plot(), "Time change per layer (red: slower, green: faster)", self.prefix())
        self.rows_table(s, cmp.summary_rows(), "Every layer", limit=200)

    def bench(self, benches: list[Any]) -> None:
        s = self.section("bench", "Benchmarks")
        s.table(
            [
                "device",
                "hint",
                "requested",
                "ran",
                "median ms",
                "p10 ms",
                "p90 ms",
                "runs",
                "items/s",
                "notes",
            ],
            [
                [
                    b.device + (" (simulated)" if b.simulated else ""),
                    b.hint,
                    b.precision_requested,
                    b.precision_ran,
                    b.median_ms,
                    b.p10_ms,
                    b.p90_ms,
                    b.runs,
                    b.throughput,
                    "; ".join(b.notes),
                ]
                for b in benches
            ],
            row_classes=[
                "mismatch" if b.precision_requested != b.precision_ran else "" for b in benches
            ],
        )

    def capability(self, rep: Any) -> None:
        s = self.section("capability", f"Capability on {rep.label}")
        ok = sum(n.supported for n in rep.nodes)
        s.text(f"{ok} of {len(rep.nodes)} nodes supported.")
        self.rows_table(s, rep.summary_rows())

    def result(self, res: Result) -> None:
        s = self.section("result", type(res).__name__)
        self.rows_table(s, res.summary_rows())


def variants_table(study: Any, front_of: Any = None) -> dict[str, Any]:
    """A Study's records as a compact display table (fits a 1280 px window).

    Returns ``columns``, ``rows`` (values or :class:`Cell`: intervals as a second line, notes
    shortened with the details one click away) and ``classes`` (per row, space separated:
    ``error``, ``mismatch`` when the precision that ran differs from the requested one,
    ``simulated``, ``pareto``) for the report and the widgets. ``front_of``: the study whose
    Pareto front is marked (default ``study``).
    """
    whole = front_of if front_of is not None else study
    records = list(study.records)
    front = {id(r) for r in whole.pareto()}
    marks = {
        id(r): row.get("pareto", "")
        for r, row in zip(whole.records, whole.table_rows(), strict=True)
    }
    base = [r.accuracy for r in whole.records if r.ok and r.variant == "f32"]
    baseline = max(base) if base else None
    columns = ["★", "variant", "device", "hint", "ran", "accuracy", "drop", "latency ms",
               "items/s", "KiB", "notes"]  # fmt: skip
    rows, classes = [], []
    for r in records:
        rows.append(
            [
                marks.get(id(r), "★" if id(r) in front else ""),
                r.variant,
                f"{r.device} (simulated)" if r.simulated else r.device,
                ", ".join(_record_hints(r)),
                _ran_cell(r),
                Cell(_fmt(r.accuracy), sub=_ci(getattr(r, "accuracy_ci", None))),
                baseline - r.accuracy if baseline is not None and r.ok else None,
                Cell(_fmt(r.latency_ms), sub=_ci(getattr(r, "latency_ci_ms", None))),
                getattr(r, "throughput", None),
                _kib(r.model_bytes),
                notes_cell(r),
            ]
        )
        cls = ["error"] if r.error else []
        if not r.error and not r.honoured:
            cls.append("mismatch")
        if r.simulated:
            cls.append("simulated")
        if id(r) in front:
            cls.append("pareto")
        classes.append(" ".join(cls))
    return {"columns": columns, "rows": rows, "classes": classes}


def _without_label(reason: str, label: str) -> str:
    """A reason sentence without the record label it repeats at its start."""
    text = str(reason)
    return text[len(label) :].lstrip(" :—-") or text if text.startswith(label) else text


def _ci(ci: Any) -> str:
    return f"{ci[0]:.4g}–{ci[1]:.4g}" if ci else ""


def _ran_cell(r: Any) -> Cell:
    if not r.precision_ran:
        return Cell("")
    if r.honoured or r.error:
        return Cell(r.precision_ran)
    return Cell(f"⚠ {r.precision_ran}", sub=f"asked {r.precision_requested}")


def notes_cell(r: Any) -> Cell:
    """A short human note for a record; the full error or notes one click away."""
    if r.error:
        return Cell(short_text(f"failed: {r.error}"), full=r.error)
    short = []
    if not r.honoured:
        short.append(f"ran {r.precision_ran}, not {r.precision_requested}")
    if r.simulated:
        short.append("simulated: latency estimated" if getattr(r, "estimated", False)
                     else "simulated on this CPU")  # fmt: skip
    if len(_record_hints(r)) > 1:
        short.append("measured once for every hint listed")
    notes = [str(n) for n in r.notes]
    if not notes:
        return Cell("; ".join(short))
    if short:
        more = f" ({plural(len(notes), 'note')})"
    else:
        short.append(short_text(notes[0], 48))
        more = f" (+{len(notes) - 1} more)" if len(notes) > 1 else ""
    return Cell("; ".join(short) + more, full="\n".join(notes))


def _record_hints(r: Any) -> tuple[str, ...]:
    return tuple(getattr(r, "hints", ()) or (r.hint,))


def record_label(r: Any) -> str:
    """``variant on device [hints]``: the record's own label when it has one."""
    label = getattr(r, "label", None)
    return label if isinstance(label, str) else f"{r.variant} on {r.device} [{r.hint}]"


def _hosts(study: Any) -> dict[str, list[Any]]:
    """Records grouped by the host that measured them (one group when hosts are not known)."""
    groups: dict[str, list[Any]] = {}
    for r in study.records:
        host = getattr(r, "host", None) or {}
        groups.setdefault(str(host.get("name", "")) or "this machine", []).append(r)
    return groups


def _host_text(r: Any) -> str:
    """``vm: AMD EPYC, 2 cores, onnxruntime 1.32, openvino 2026.4`` from a record's host."""
    host = getattr(r, "host", None) or {}
    if not host:
        return "this machine"
    parts = [str(host.get("cpu", "")) or "unknown CPU"]
    if host.get("cores"):
        parts.append(plural(int(host["cores"]), "core"))
    parts += [f"{k} {host[k]}" for k in ("onnxruntime", "openvino") if host.get(k)]
    return f"{host.get('name', '?')}: " + ", ".join(parts)


#: what each part of a hint label asks for (the glossary of the report)
HINT_PARTS = {
    "performance": "execution mode performance: the backend may trade exactness for speed "
    "(OpenVINO on a CPU with bf16 or AMX then computes in bf16)",
    "accuracy": "execution mode accuracy: the backend keeps the model's own precision",
    "f32": "compute in float32",
    "f16": "compute in float16 where the device supports it",
    "bf16": "compute in bfloat16 where the device supports it",
    "latency": "performance mode latency: one request at a time, fastest single answer",
    "throughput": "performance mode throughput: many requests in parallel streams, most items "
    "per second",
}


def hint_meaning(label: str) -> str:
    """``"performance/f16"`` → one sentence saying what the hint asks the backend for."""
    parts = [p.strip().lower() for p in str(label).replace(":", "/").split("/") if p.strip()]
    known = [HINT_PARTS[p] for p in parts if p in HINT_PARTS]
    if not known:
        return "a custom hint label"
    return known[0][0].upper() + known[0][1:] + "".join(f"; {k}" for k in known[1:]) + "."


def describe(exc: BaseException) -> str:
    """One readable line for an exception (workbench errors carry their own advice)."""
    if isinstance(exc, WorkbenchError):
        return str(exc)
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").startswith("workbench."):
        return f"{exc.name} is not available in this version of the workbench"
    return f"{type(exc).__name__}: {exc}"


def _kib(n: Any) -> Any:
    return n / 1024 if isinstance(n, (int, float)) else n


def study_for_hint(study: Any, hint: str) -> Any:
    """The study restricted to the records measuring one hint label, shown under that hint."""
    records = []
    for r in study.records:
        if hint in _record_hints(r):
            records.append(replace(r, hint=hint, hints=(hint,)) if hasattr(r, "hints") else r)
    return with_records(study, records)


# --------------------------------------------------------------------------- loading


#: modules defining result types a saved JSON file may hold (imported on demand)
_RESULT_MODULES = (
    "workbench.study",
    "workbench.precision.mixed",
    "workbench.precision.accuracy_control",
    "workbench.precision.float16",
    "workbench.hardware.affinity",
    "workbench.hardware.partition",
    "workbench.hardware.capability",
    "workbench.layers",
    "workbench.runtime",
    "workbench.model",
)


def load_result(path: str | os.PathLike[str]) -> Any:
    """Read a result saved with ``to_json`` (Study, MixedPrecisionResult, BenchResult, …).

    The type is recognised from the file's fields: the result class whose fields include every
    key of the file and whose required fields are all present.
    """
    import dataclasses
    import importlib
    import json

    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"result file not found: {str(p)!r}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{str(p)!r} is not a JSON result file: {e}") from e
    if not isinstance(data, dict):
        raise InputError(f"{str(p)!r} does not hold a workbench result (expected a JSON object)")
    for mod in _RESULT_MODULES:
        # features not installed (or not written yet) simply aren't candidates
        with contextlib.suppress(ImportError):
            importlib.import_module(mod)
    keys = set(data) - {"__result__"}
    for name, cls in _REGISTRY.items():
        if "__result__" in data and data["__result__"] != name:
            continue
        fields = dataclasses.fields(cls)
        required = {
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        if keys and keys <= {f.name for f in fields} and required <= keys:
            return cls.from_dict({k: v for k, v in data.items() if k != "__result__"})
    raise InputError(
        f"{str(p)!r} is not a saved workbench result (fields: {', '.join(sorted(keys)) or 'none'}); "
        "save one with result.to_json(path) or `workbench explore ... -o study.json`"
    )


# --------------------------------------------------------------------------- rendering

_SORT_JS = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0];
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var key = function (tr) {
      var t = tr.children[col] ? tr.children[col].textContent.trim() : "";
      var n = parseFloat(t.replace(/[, ]/g, ""));
      return isNaN(n) || !/^[-+]?[0-9.]/.test(t) ? t.toLowerCase() : n;
    };
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a), y = key(b), c;
      if (typeof x === typeof y) { c = x < y ? -1 : x > y ? 1 : 0; }
      else { c = typeof x === "number" ? -1 : 1; }
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def _environment():  # noqa: ANN202 - jinja2 Environment
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every {{ value }} is HTML-escaped unless it is Markup we built
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def render_report(
    study_or_results: Any = None,
    *,
    model: onnx.ModelProto | str | os.PathLike[str] | None = None,
    title: str | None = None,
    results: Iterable[Any] = (),
    environment: bool = True,
    max_drop: float = 0.01,
    drop_type: str = "absolute",
    **extras: Any,
) -> str:
    """The report's HTML text (see :func:`report`)."""
    items = _flatten(study_or_results) + _flatten(list(results)) + _flatten(list(extras.values()))
    proto = None
    grouped: dict[str, list[Any]] = {}
    for obj in items:
        kind = _kind(obj)
        if kind == "model":
            if model is None:
                model = obj
            continue
        grouped.setdefault(kind, []).append(obj)
    if model is not None:
        proto = model if isinstance(model, onnx.ModelProto) else load_model(model)
    if not grouped and proto is None:
        raise InputError(
            "report() got nothing to show; pass a Study (from explore) and/or results and model="
        )
    b = _Builder(proto, max_drop, drop_type, profiles=grouped.get("profile", []))
    if "summary" not in grouped and proto is not None:
        grouped["summary"] = [inspect(proto)]
    _build_sections(b, grouped)
    env_info = environment_info() if environment else None
    if title is None:
        names = [proto.graph.name] if proto is not None else []
        names += [getattr(st, "model_name", "") for st in grouped.get("study", [])]
        name = next((n for n in names if n), None)
        title = f"Precision report — {name}" if name else "Precision report"
    js = _SORT_JS.strip()
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            sections=b.sections,
            warnings=b.warnings,
            env=env_info,
            css=Markup((TEMPLATES / "report.css").read_text(encoding="utf-8")),
            js=Markup(js),
            csp=_csp(js),
        )
    )


#: the order of sections after the recommendation
_ORDER = (
    "summary", "study", "float16", "mixed", "accuracy_control", "bench", "capability",
    "affinity", "partitioned", "profile", "layer_profile", "layer_error", "layer_comparison",
    "result",
)  # fmt: skip


def _build_sections(b: _Builder, grouped: dict[str, list[Any]]) -> None:
    """The verdict first, then one section per input in :data:`_ORDER`."""
    for st in grouped.get("study", []):
        b.guarded("recommendation", lambda st=st: b.recommendation(st))
    for kind in _ORDER:
        objs = grouped.get(kind, [])
        if kind == "bench" and objs:
            b.guarded("benchmarks", lambda objs=objs: b.bench(objs))
            continue
        for obj in objs:
            b.guarded(kind, lambda obj=obj, kind=kind: getattr(b, kind)(obj))


def _csp(js: str) -> str:
    """No network at all; only the report's own script (by hash) may run."""
    digest = base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii")
    return (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


def report(
    study_or_results: Any = None,
    path: str | os.PathLike[str] = "report.html",
    *,
    model: onnx.ModelProto | str | os.PathLike[str] | None = None,
    title: str | None = None,
    results: Iterable[Any] = (),
    mixed: Any = None,
    accuracy_control: Any = None,
    affinity: Any = None,
    partitioned: Any = None,
    profile: Any = None,
    environment: bool = True,
    max_drop: float = 0.01,
    drop_type: str = "absolute",
) -> Path:
    """Write a single self-contained HTML report and return its path.

    ``study_or_results`` is a Study, any workbench result, or a list of them; the keyword
    arguments add more (``mixed=MixedPrecisionResult``, ``accuracy_control=``,
    ``affinity=`` (renders need ``model=``), ``partitioned=``, ``profile=``). Sections appear
    only for what is given; a Study's recommendation (for ``max_drop``/``drop_type``) comes
    first. The file has no network dependencies and is written atomically.
    """
    text = render_report(
        study_or_results,
        model=model,
        title=title,
        results=results,
        environment=environment,
        max_drop=max_drop,
        drop_type=drop_type,
        mixed=mixed,
        accuracy_control=accuracy_control,
        affinity=affinity,
        partitioned=partitioned,
        profile=profile,
    )
    out = Path(path)
    if out.is_dir():
        raise InputError(f"{str(out)!r} is a directory; give a file name such as report.html")
    atomic_write_bytes(out, text.encode("utf-8"))
    return out
