"""Panels of the notebook app, each usable on its own.

Every panel holds plain state (the values of its controls, the last result) and calls the
public API (``workbench.convert_float16``, ``explore``, ``affinity``, ``report`` …); nothing here
decides anything about models.
"""

from __future__ import annotations

import base64
import html
import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import onnx

import workbench as wb

from ..errors import AccuracyNotReachedError, InputError, WorkbenchError
from ..html_report import Cell, describe, record_label, study_for_hint, variants_table
from ..model import ensure_node_names
from ..progress import task
from ..runtime import RunConfig
from ._base import (
    STYLE,
    JobControls,
    error_html,
    figure_html,
    not_reached_html,
    note_html,
    svg_html,
    table_html,
)

HINTS = ("performance", "accuracy", "performance/f16", "performance/bf16")
VARIANTS = ("f32", "f16", "bf16", "mixed", "int8", "int8-ac")
#: sessions opened by the panels report unhonoured hints in their results, not as warnings
QUIET = RunConfig(warn=False)
#: converted models up to this size get a Download link (a data: URL); bigger ones: Save
DOWNLOAD_LIMIT = 64 << 20
_ids = itertools.count(1)


def _prefix(kind: str) -> str:
    """Unique id prefix for SVGs (several views may sit in one notebook page)."""
    return f"wb{kind}{next(_ids)}"


def _device_names() -> list[str]:
    return [d.name for d in wb.devices()]


def _label(text: str, width: str = "130px") -> widgets.Label:
    return widgets.Label(text, layout=widgets.Layout(width=width))


def _row(label: str, control: widgets.Widget) -> widgets.HBox:
    return widgets.HBox([_label(label), control])


def _tags(value: list[str], allowed: list[str]) -> widgets.TagsInput:
    """A tag picker restricted to ``allowed`` (order of the tags is kept: device priority)."""
    return widgets.TagsInput(
        value=list(value),
        allowed_tags=list(allowed),
        allow_duplicates=False,
        layout=widgets.Layout(width="60%", min_height="30px"),
    )


def _first_feeds(model: onnx.ModelProto, dataset: Any) -> dict[str, Any]:
    if dataset is not None:
        return next(iter(dataset.feeds()))
    return next(iter(wb.random_dataset(model, n=1).feeds()))


# --------------------------------------------------------------------------- model


class ModelView(widgets.VBox):
    """The *Model* tab: ``inspect`` table (ops, dtypes, parameters, I/O, opsets)."""

    def __init__(self, model: onnx.ModelProto | str | os.PathLike[str]):
        self.model = wb.load_model(model)
        self.summary = wb.inspect(self.model)
        self.table = widgets.HTML(table_html(self.summary.summary_rows(), title="Model summary"))
        super().__init__([self.table])


# --------------------------------------------------------------------------- convert


class ConvertPanel(widgets.VBox):
    """Build one precision variant with options, then compare it with the float32 model.

    State after a run: ``variant_model`` (ModelProto), ``result`` (what the API returned:
    the model or a MixedPrecisionResult / AccuracyControlResult) and ``comparison`` (rows of
    accuracy and latency for float32 and the variant; accuracy needs ``validation_fn``).
    """

    OPTIONS = (
        ("float16", "f16"),
        ("bfloat16", "bf16"),
        ("automatic mixed precision (f16)", "mixed"),
        ("int8 (static QDQ)", "int8"),
        ("int8 with accuracy control", "int8-ac"),
    )

    def __init__(
        self,
        model: onnx.ModelProto | str | os.PathLike[str],
        dataset: Any = None,
        validation_fn: Callable[..., float] | None = None,
        calibration_dataset: Any = None,
        background: bool = True,
    ):
        self.model = ensure_node_names(wb.load_model(model))
        self.dataset = dataset
        self.validation_fn = validation_fn
        self.calibration_dataset = calibration_dataset
        self.variant_model: onnx.ModelProto | None = None
        self.result: Any = None
        self.comparison: list[dict[str, Any]] = []
        self._baseline: dict[str, Any] | None = None
        nodes = [n.name for n in self.model.graph.node]
        ops = sorted({n.op_type for n in self.model.graph.node})
        self.variant = widgets.Dropdown(options=self.OPTIONS, value="f16")
        self.keep_io_types = widgets.Checkbox(value=True, description="keep float32 inputs/outputs")
        self.block_ops = _tags([], ops)
        self.block_nodes = _tags([], nodes)
        self.max_drop = widgets.BoundedFloatText(value=0.01, min=0.0, max=1.0, step=0.005)
        self.job = JobControls("Convert", background=background, icon="cogs")
        self.output = widgets.HTML("")
        self.save_path = widgets.Text(
            value="", placeholder="converted.onnx", layout=widgets.Layout(width="40%")
        )
        self.save_button = widgets.Button(description="Save", icon="save", disabled=True)
        self.download = widgets.HTML("")
        self.saved: Path | None = None
        self.job.run_button.on_click(lambda _b: self.run())
        self.save_button.on_click(lambda _b: self.save())
        self.variant.observe(lambda _c: self._update_options(), names="value")
        self._update_options()
        super().__init__(
            [
                _row("variant", self.variant),
                self.keep_io_types,
                _row("keep ops float", self.block_ops),
                _row("keep nodes float", self.block_nodes),
                _row("max accuracy drop", self.max_drop),
                self.job,
                widgets.HBox([_label("converted model"), self.save_path, self.save_button]),
                self.download,
                self.output,
            ]
        )

    def save(self) -> Path | None:
        """Write the converted model to the path in the box (the Save button)."""
        if self.variant_model is None:
            self.download.value = note_html("convert a model first")
            return None
        try:
            name = self.save_path.value.strip()
            if not name:
                raise InputError("give a file name for the converted model, e.g. model_f16.onnx")
            target = Path(name).expanduser()
            if target.suffix != ".onnx":
                raise InputError(f"{name!r}: give a file name ending in .onnx")
            created = not target.resolve().parent.exists()
            wb.save_model(self.variant_model, target)
        except (WorkbenchError, OSError) as e:
            self.download.value = error_html(describe(e))
            return None
        self.saved = target
        folder = f" (created folder {target.resolve().parent})" if created else ""
        self.download.value = (
            self._download_link() + " " + note_html(f"saved to {target.resolve()}{folder}", "wb-ok")
        )
        return target

    def _download_link(self) -> str:
        """A Download link carrying the model bytes (small models only)."""
        if self.variant_model is None:
            return ""
        data = self.variant_model.SerializeToString()
        name = html.escape(Path(self.save_path.value.strip() or "converted.onnx").name, quote=True)
        if len(data) > DOWNLOAD_LIMIT:
            return note_html(f"{len(data) / 2**20:.0f} MiB: too big to download here, use Save")
        uri = "data:application/octet-stream;base64," + base64.b64encode(data).decode("ascii")
        return f'<a download="{name}" href="{uri}">⬇ Download {name}</a>'

    def _update_options(self) -> None:
        v = self.variant.value
        self.keep_io_types.disabled = v not in ("f16", "bf16")
        self.block_ops.disabled = v not in ("f16", "bf16")
        self.block_nodes.disabled = v not in ("f16", "bf16", "int8")
        self.max_drop.disabled = v not in ("mixed", "int8-ac")

    def _need_data(self, what: str) -> Any:
        if self.dataset is None:
            raise InputError(f"{what} needs data: create the panel with dataset=…")
        return self.dataset

    def _need_validation(self, what: str) -> Callable[..., float]:
        if self.validation_fn is None:
            raise InputError(f"{what} needs a metric: create the panel with validation_fn=…")
        return self.validation_fn

    def build(self) -> tuple[onnx.ModelProto, Any]:
        """Call the public API for the chosen variant; returns (model, API result)."""
        v, m = self.variant.value, self.model
        if v in ("f16", "bf16"):
            res = wb.convert_float16(
                m,
                dtype="float16" if v == "f16" else "bfloat16",
                keep_io_types=self.keep_io_types.value,
                block_ops=tuple(self.block_ops.value),
                block_nodes=tuple(self.block_nodes.value),
                report=True,  # a Float16Result: why each node stays or computes in float32
            )
            return res.model, res
        if v == "mixed":
            data = self._need_data("automatic mixed precision")
            res = wb.auto_mixed_precision(
                m,
                data,
                dtype="float16",
                validation_fn=self.validation_fn,
                max_drop=self.max_drop.value if self.validation_fn is not None else None,
            )
            return res.model, res
        calib = self.calibration_dataset or self._need_data("int8 calibration")
        if v == "int8":
            out = wb.quantize_int8(m, calib, exclude_nodes=tuple(self.block_nodes.value))
            return out, out
        res = wb.quantize_with_accuracy_control(
            m,
            calib,
            self._need_data("accuracy control"),
            self._need_validation("accuracy control"),
            max_drop=self.max_drop.value,
        )
        return res.model, res

    def _measure(self, label: str, model: onnx.ModelProto) -> dict[str, Any]:
        bench_data = self.dataset.take(4) if self.dataset is not None else None
        b = wb.benchmark(model, dataset=bench_data, min_time=0.2, config=QUIET)
        row: dict[str, Any] = {"model": label}
        if self.dataset is not None and self.validation_fn is not None:
            row["accuracy"] = wb.evaluate(model, self.dataset, self.validation_fn)
        row.update(
            {
                "median ms": b.median_ms,
                "ran": b.precision_ran,
                "size KiB": model.ByteSize() / 1024,
                "notes": "; ".join(b.notes),
            }
        )
        return row

    def _work(self) -> tuple[onnx.ModelProto, Any, list[dict[str, Any]]]:
        with task("convert", total=3) as t:
            if self._baseline is None:
                self._baseline = self._measure("float32", self.model)
            t.update(postfix="float32 measured")
            model, result = self.build()
            t.update(postfix=f"{self.variant.value} built")
            rows = [self._baseline, self._measure(self.variant.value, model)]
            t.update(postfix="variant measured")
        return model, result, rows

    def run(self) -> None:
        """Build and measure the chosen variant (the Convert button)."""
        self.output.value = self.download.value = ""
        self.job.start(self._work, self._show, self._show_error)

    def _show(self, value: tuple[onnx.ModelProto, Any, list[dict[str, Any]]]) -> None:
        self.variant_model, self.result, self.comparison = value
        self.save_button.disabled = False
        if not self.save_path.value.strip():
            self.save_path.value = f"{self.model.graph.name or 'model'}_{self.variant.value}.onnx"
        self.download.value = self._download_link()
        parts = [table_html(self.comparison, title="float32 vs variant")]
        if not isinstance(self.result, onnx.ModelProto) and hasattr(self.result, "summary_rows"):
            parts.append(table_html(self.result.summary_rows(), title=type(self.result).__name__))
        else:
            s = wb.inspect(self.variant_model)
            parts.append(table_html(s.summary_rows(), title="Variant summary"))
        self.output.value = "".join(parts)

    def _show_error(self, exc: BaseException) -> None:
        if isinstance(exc, AccuracyNotReachedError):
            self.result = exc.best
            self.output.value = not_reached_html(exc)


# --------------------------------------------------------------------------- devices


class AffinityView(widgets.VBox):
    """*Hints & devices*: device and hint pickers, affinity mode, renders, per-subgraph timings.

    Devices are in priority order (auto mode gives each node to the first that supports it).
    Manual assignments are lines ``node name: device``. State after a run: ``affinity``,
    ``partitioned``, ``profile``, ``benches`` (one BenchResult per device with the hint),
    ``affinity_svg`` and ``subgraphs_svg``.
    """

    def __init__(
        self,
        model: onnx.ModelProto | str | os.PathLike[str],
        devices: list[str] | None = None,
        dataset: Any = None,
        background: bool = True,
    ):
        self.model = ensure_node_names(wb.load_model(model))
        self.dataset = dataset
        names = _device_names()
        chosen = list(devices) if devices else ["cpu"]
        self.devices = _tags(chosen, sorted(set(names) | set(chosen)))
        self.hint = widgets.Dropdown(options=HINTS, value="performance")
        self.mode = widgets.ToggleButtons(options=("auto", "manual", "combined"), value="auto")
        self.manual = widgets.Textarea(
            value="",
            placeholder="node name: device   (one per line; manual/combined modes)",
            layout=widgets.Layout(width="60%", height="80px"),
        )
        self.job = JobControls("Assign & run", background=background, icon="sitemap")
        self.summary = widgets.HTML("")
        self.affinity_html = widgets.HTML("")
        self.subgraphs_html = widgets.HTML("")
        self.affinity = self.partitioned = self.profile = None
        self.benches: list[Any] = []
        self.affinity_svg = self.subgraphs_svg = b""
        self.job.run_button.on_click(lambda _b: self.run())
        super().__init__(
            [
                _row("devices (priority)", self.devices),
                _row("hint", self.hint),
                _row("affinity", self.mode),
                _row("manual", self.manual),
                self.job,
                self.summary,
                widgets.Accordion(
                    children=[self.affinity_html, self.subgraphs_html],
                    titles=("Affinity graph", "Subgraphs"),
                    selected_index=0,
                ),
            ]
        )

    def manual_assignments(self) -> dict[str, str]:
        """Parse the manual box: ``node: device`` per line (the last colon separates)."""
        out: dict[str, str] = {}
        for n, line in enumerate(self.manual.value.splitlines(), 1):
            if not line.strip():
                continue
            node, sep, dev = line.rpartition(":")
            if not sep or not node.strip() or not dev.strip():
                raise InputError(f"manual line {n} {line!r}: write it as 'node name: device'")
            out[node.strip()] = dev.strip()
        return out

    def _work(self) -> dict[str, Any]:
        devs = list(self.devices.value)
        if not devs:
            raise InputError("pick at least one device")
        # the manual box only counts in manual/combined mode (auto refuses assignments)
        manual = (self.manual_assignments() or None) if self.mode.value != "auto" else None
        if self.mode.value != "auto" and manual is None:
            raise InputError(
                f"{self.mode.value} mode needs assignments: one 'node name: device' per line"
            )
        with task("hints & devices", total=4 + len(devs)) as t:
            aff = wb.affinity(self.model, devs, mode=self.mode.value, manual=manual)
            t.update(postfix="affinity")
            aff_svg = wb.render(wb.affinity_dot(self.model, aff), format="svg")
            t.update(postfix="affinity render")
            part = wb.partition(self.model, aff)
            t.update(postfix="partition")
            prof = part.profile(_first_feeds(self.model, self.dataset))
            sub_svg = wb.render(wb.subgraphs_dot(part, profile=prof), format="svg")
            t.update(postfix="profile")
            benches = []
            data = self.dataset.take(1) if self.dataset is not None else None
            for d in devs:
                benches.append(
                    wb.benchmark(
                        self.model,
                        device=d,
                        hint=self.hint.value,
                        dataset=data,
                        runs=20,
                        config=QUIET,
                    )  # fmt: skip
                )
                t.update(postfix=f"{d} timed")
        return {
            "affinity": aff,
            "affinity_svg": aff_svg,
            "partitioned": part,
            "subgraphs_svg": sub_svg,
            "profile": prof,
            "benches": benches,
        }

    def run(self) -> None:
        self.job.start(self._work, self._show)

    def _show(self, v: dict[str, Any]) -> None:
        self.affinity, self.partitioned, self.profile = (
            v["affinity"],
            v["partitioned"],
            v["profile"],
        )
        self.benches, self.affinity_svg, self.subgraphs_svg = (
            v["benches"],
            v["affinity_svg"],
            v["subgraphs_svg"],
        )
        rows = [
            {
                "device": b.device + (" (simulated)" if b.simulated else ""),
                "hint": b.hint,
                "requested": b.precision_requested,
                "ran": b.precision_ran,
                "median ms": b.median_ms,
                "notes": "; ".join(b.notes),
            }
            for b in self.benches
        ]
        parts = [table_html(rows, title="Whole model per device with the hint")]
        if hasattr(self.profile, "_repr_html_"):
            parts.append(STYLE + self.profile._repr_html_())
        self.summary.value = "".join(parts)
        self.affinity_html.value = svg_html(self.affinity_svg, _prefix("aff"))
        self.subgraphs_html.value = svg_html(self.subgraphs_svg, _prefix("sub"))


# --------------------------------------------------------------------------- explore


def _variants_table_html(study: Any) -> str:
    t = variants_table(study)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t["columns"])
    body = []
    for row, cls in zip(t["rows"], t["classes"], strict=True):
        klass = " ".join(f"wb-{c}" for c in cls.split())
        cells = "".join(_td(_cell(v)) for v in row)
        body.append(f'<tr class="{klass}">{cells}</tr>')
    return (
        f'{STYLE}<table class="wb-table"><caption>Records (Pareto front highlighted)</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _td(c: Cell) -> str:
    """A table cell: a second small line (an interval), long details one click away."""
    text = html.escape(c.text)
    if c.full:
        text = f"<details><summary>{text}</summary>{html.escape(c.full)}</details>"
    if c.sub:
        text += f'<br><small style="color:#5b6475">{html.escape(c.sub)}</small>'
    return f"<td>{text}</td>"


def _cell(v: Any) -> Cell:
    if isinstance(v, Cell):
        return v
    if v is None:
        return Cell("")
    return Cell(f"{v:.4g}" if isinstance(v, float) else str(v))


class TradeoffView(widgets.VBox):
    """Accuracy-vs-latency plot and records table of a Study, Pareto front highlighted.

    ``show(study)`` displays a study; ``hint.value`` restricts the plot to one hint ("all" shows
    every hint as its own series).
    """

    def __init__(self, study: Any = None):
        self.study = None
        self.hint = widgets.Dropdown(options=("all",), value="all", description="hint")
        self.plot = widgets.HTML("")
        self.table = widgets.HTML("")
        self.hint.observe(lambda _c: self._render_plot(), names="value")
        super().__init__([self.hint, self.plot, self.table])
        if study is not None:
            self.show(study)

    def show(self, study: Any) -> None:
        self.study = study
        hints = sorted({h for r in study.records for h in getattr(r, "hints", ()) or (r.hint,)})
        self.hint.options = ("all", *hints)
        self.hint.value = "all"
        self._render_plot()
        self.table.value = _variants_table_html(study)

    def _render_plot(self) -> None:
        if self.study is None:
            return

        shown = (
            self.study if self.hint.value == "all" else study_for_hint(self.study, self.hint.value)
        )
        try:
            self.plot.value = figure_html(wb.tradeoff_plot(shown), _prefix("trade"))
        except Exception as e:  # keep the table visible when plotting fails
            self.plot.value = error_html(f"cannot draw the tradeoff plot: {describe(e)}")


class ExplorePanel(widgets.VBox):
    """*Explore*: pick variants, hints and devices; Sweep runs ``explore``; shows a TradeoffView.

    ``options`` are passed on to :func:`workbench.study` (e.g. ``{"min_time": 0.1}``).
    """

    def __init__(
        self,
        model: onnx.ModelProto | str | os.PathLike[str],
        dataset: Any,
        validation_fn: Callable[..., float],
        calibration_dataset: Any = None,
        devices: list[str] | None = None,
        background: bool = True,
        options: dict[str, Any] | None = None,
    ):
        self.model = wb.load_model(model)
        self.dataset = dataset
        self.validation_fn = validation_fn
        self.calibration_dataset = calibration_dataset
        self.options = dict(options or {})  # more keyword arguments of explore (min_time, …)
        names = _device_names()
        chosen = list(devices) if devices else ["cpu"]
        self.variants = _tags(["f32", "f16", "int8"], list(VARIANTS))
        self.hints = _tags(["performance", "accuracy"], list(HINTS))
        self.devices = _tags(chosen, sorted(set(names) | set(chosen)))
        self.job = JobControls("Sweep", background=background, icon="th")
        self.max_drop = widgets.BoundedFloatText(value=0.01, min=0.0, max=1.0, step=0.005)
        self.banner = widgets.HTML("")
        self.view = TradeoffView()
        self.study = None
        self.recommendation: Any = None
        self.job.run_button.on_click(lambda _b: self.run())
        super().__init__(
            [
                _row("variants", self.variants),
                _row("hints", self.hints),
                _row("devices", self.devices),
                _row("max accuracy drop", self.max_drop),
                self.job,
                self.banner,
                self.view,
            ]
        )

    def _work(self) -> Any:
        if not self.variants.value or not self.hints.value or not self.devices.value:
            raise InputError("pick at least one variant, one hint and one device")
        return wb.explore(
            self.model,
            self.dataset,
            self.validation_fn,
            variants=tuple(self.variants.value),
            hints=tuple(self.hints.value),
            devices=tuple(self.devices.value),
            calibration_dataset=self.calibration_dataset,
            **self.options,
        )

    def run(self) -> None:
        self.banner.value = ""
        self.job.start(self._work, self._show)

    def _show(self, study: Any) -> None:
        self.study = study
        self.view.show(study)
        self.banner.value = self._banner(study)

    def _banner(self, study: Any) -> str:
        """The recommendation (``Study.recommend``) as a banner above the plot."""
        recommend = getattr(study, "recommend", None)
        if recommend is None:
            return ""
        try:
            rec = recommend(max_drop=self.max_drop.value)
        except WorkbenchError as e:
            self.recommendation = None
            return note_html(f"no recommendation: {describe(e)}")
        self.recommendation = rec
        chosen = getattr(rec, "record", None)
        head = f"<b>Ship {html.escape(record_label(chosen))}.</b> " if chosen is not None else ""
        status = str(getattr(rec, "status", "ok"))
        if status != "ok":
            head += f"<i>({html.escape(status)})</i> "
        reasons = dict(getattr(rec, "reasons", None) or {})
        rows = "".join(
            f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in reasons.items()
        )
        more = f"<details><summary>why not the others</summary><ul>{rows}</ul></details>"
        summary = html.escape(str(getattr(rec, "summary", "")))
        return f'{STYLE}<div class="wb-banner">{head}{summary}{more if rows else ""}</div>'


# --------------------------------------------------------------------------- report


class ReportPanel(widgets.VBox):
    """*Report*: write the HTML report of everything computed so far and show a link.

    ``sources()`` returns the keyword arguments for :func:`workbench.html_report` (study, model,
    mixed, accuracy_control, affinity, partitioned, profile).
    """

    def __init__(self, sources: Callable[[], dict[str, Any]], background: bool = True):
        self.sources = sources
        self.path = widgets.Text(value="report.html", description="file")
        self.job = JobControls("Export report", background=background, icon="file")
        self.link = widgets.HTML("")
        self.written: Path | None = None
        self.job.run_button.on_click(lambda _b: self.run())
        super().__init__([self.path, self.job, self.link])
        self.refresh()

    def ready(self) -> bool:
        """Is there anything to report (a study, a conversion, an affinity, …)?"""
        kwargs = self.sources()
        return any(v is not None and v != [] for k, v in kwargs.items() if k != "model")

    def refresh(self) -> None:
        """Enable Export only when there is something to report, and say so otherwise."""
        ready = self.ready()
        self.job.run_button.disabled = not ready or self.job.running
        if not ready:
            self.job.status.value = note_html(
                "nothing to report yet: run Convert, Hints & devices or Explore first"
            )
        elif self.job.state == "idle":
            self.job.status.value = note_html("ready")

    def _work(self) -> Path:
        if not self.ready():
            raise InputError("nothing to report yet: run Convert, Hints & devices or Explore first")
        if not self.path.value.strip():
            raise InputError("give a file name for the report, e.g. report.html")
        kwargs = self.sources()
        study = kwargs.pop("study", None)
        return wb.report(study, self.path.value.strip(), **kwargs)

    def run(self) -> None:
        self.job.start(self._work, self._show)

    def _show(self, path: Path) -> None:
        self.written = path
        href = html.escape(self._href(path), quote=True)
        self.link.value = (
            f'<a href="{href}" target="_blank" rel="noopener">open {html.escape(path.name)}</a> '
            + note_html(f"written to {path.resolve()}")
        )

    @staticmethod
    def _href(path: Path) -> str:
        # relative to the notebook's folder, which is where JupyterLab resolves links
        try:
            return path.resolve().relative_to(Path.cwd()).as_posix()
        except ValueError:
            return path.resolve().as_uri()
