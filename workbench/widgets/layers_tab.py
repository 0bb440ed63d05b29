"""*Layers* tab: per-layer profile (what ran where, in which precision, how long), the layer
error of a variant against the model, and the comparison of two devices — thin views over
:func:`workbench.layer_profile`, :func:`workbench.layer_error`, :func:`workbench.compare_layers`
and :func:`workbench.layers_dot`.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import ipywidgets as widgets
import onnx

from .. import layers as wl
from ..errors import InputError
from ..model import ensure_node_names, load_model
from ..progress import task
from ..viz.layer_graphs import layers_dot
from ._base import JobControls, note_html, svg_html, table_html
from .views import HINTS, QUIET, _device_names, _row


class LayersPanel(widgets.VBox):
    """Profile ``model`` layer by layer on a device; optionally compare a second device and
    show the per-tensor error of ``variant`` (a converted model) against ``model``.

    State after a run: ``profile`` (LayerProfile), ``other`` (LayerProfile on the compare
    device or None), ``comparison`` (LayerComparison or None), ``error`` (LayerError or
    None), ``svg`` (the rendered layer graph, b"" without GraphViz).
    """

    def __init__(
        self,
        model: onnx.ModelProto | str | os.PathLike[str],
        dataset: Any = None,
        variant: onnx.ModelProto | None = None,
        background: bool = True,
    ):
        self.model = ensure_node_names(load_model(model))
        self.dataset = dataset
        self.variant = variant
        names = _device_names()
        self.device = widgets.Dropdown(options=names, value="cpu")
        self.compare = widgets.Dropdown(options=["(none)", *names], value="(none)")
        self.hint = widgets.Dropdown(options=HINTS, value="performance")
        self.color_by = widgets.ToggleButtons(options=("precision", "error"), value="precision")
        self.job = JobControls("Profile layers", background=background, icon="bar-chart")
        self.summary = widgets.HTML("")
        self.graph = widgets.HTML("")
        self.table = widgets.HTML("")
        self.comparison_html = widgets.HTML("")
        self.profile = self.other = self.comparison = self.error = None
        self.svg = b""
        self.job.run_button.on_click(lambda _b: self.run())
        super().__init__(
            [
                _row("device", self.device),
                _row("compare with", self.compare),
                _row("hint", self.hint),
                _row("colour graph by", self.color_by),
                self.job,
                self.summary,
                widgets.Accordion(
                    children=[self.graph, self.table, self.comparison_html],
                    titles=("Layer graph", "Layers", "Comparison"),
                    selected_index=0,
                ),
            ]
        )

    def _work(self) -> dict[str, Any]:
        if self.color_by.value == "error" and self.variant is None:
            raise InputError("colouring by error needs a variant: LayersPanel(model, variant=...)")
        other_device = None if self.compare.value == "(none)" else self.compare.value
        steps = 1 + (other_device is not None) + (self.variant is not None)
        out: dict[str, Any] = {}
        with task("layers", total=steps) as t:
            out["profile"] = wl.layer_profile(
                self.model, self.device.value, self.hint.value, self.dataset, config=QUIET
            )
            t.update()
            if other_device is not None:
                out["other"] = wl.layer_profile(
                    self.model, other_device, self.hint.value, self.dataset, config=QUIET
                )
                out["comparison"] = wl.compare_layers(out["profile"], out["other"])
                t.update()
            if self.variant is not None:
                data = self.dataset
                if data is None:
                    raise InputError(
                        "the layer error needs a dataset: LayersPanel(..., dataset=...)"
                    )
                out["error"] = wl.layer_error(self.model, self.variant, data, self.device.value)
                t.update()
        return out

    def _show(self, out: dict[str, Any]) -> None:
        self.profile = p = out["profile"]
        self.other = out.get("other")
        self.comparison = out.get("comparison")
        self.error = out.get("error")
        what = "estimated" if p.estimated else f"{p.runs} runs"
        facts = wl.precision_facts(p)
        self.summary.value = note_html(
            f"{len(p.rows)} layers, {p.layer_ms:.4g} ms in layers, {p.total_ms:.4g} ms whole "
            f"model ({what}); ran {p.precision_ran}. {facts}",
            "wb-ok",
        )
        shown = self.error if self.color_by.value == "error" else p
        dot = layers_dot(shown)
        if shutil.which("dot"):
            self.svg = dot.render("svg")
            self.graph.value = svg_html(self.svg, "layers")
        else:
            self.svg = b""
            self.graph.value = note_html("GraphViz `dot` not found: install graphviz to see it")
        self.table.value = table_html(p.summary_rows(), title="Layers")
        if self.comparison is not None:
            self.comparison_html.value = self.comparison._repr_html_()
        elif self.error is not None:
            self.comparison_html.value = self.error._repr_html_()

    def run(self) -> None:
        """Profile (and compare / measure the error) with the chosen settings."""
        self.job.start(self._work, self._show)
