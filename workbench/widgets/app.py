"""``Workbench(model, dataset, validation_fn)``: the tabbed notebook app over the panels."""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import onnx

import workbench as wb

from .views import AffinityView, ConvertPanel, ExplorePanel, ModelView, ReportPanel

TABS = ("Model", "Convert", "Hints & devices", "Explore", "Report")


class Workbench(widgets.VBox):
    """Tabs *Model*, *Convert*, *Hints & devices*, *Explore*, *Report* over one model.

    ``background=False`` runs every job synchronously in the click handler (tests, scripts);
    by default jobs run in a thread so Cancel works in a live kernel. ``explore_options`` go to
    :func:`workbench.study` (e.g. ``{"min_time": 0.1}`` for quicker sweeps).
    """

    def __init__(
        self,
        model: onnx.ModelProto | str | os.PathLike[str],
        dataset: Any = None,
        validation_fn: Callable[..., float] | None = None,
        *,
        calibration_dataset: Any = None,
        devices: list[str] | None = None,
        background: bool = True,
        explore_options: dict[str, Any] | None = None,
    ):
        self.model = wb.load_model(model)
        self.model_view = ModelView(self.model)
        self.convert = ConvertPanel(
            self.model, dataset, validation_fn, calibration_dataset, background=background
        )
        self.devices = AffinityView(self.model, devices, dataset, background=background)
        self.explore = ExplorePanel(
            self.model,
            dataset,
            validation_fn,
            calibration_dataset,
            devices=devices,
            background=background,
            options=explore_options,
        )
        self.report = ReportPanel(self.report_sources, background=background)
        self.tabs = widgets.Tab(
            children=[self.model_view, self.convert, self.devices, self.explore, self.report],
            titles=TABS,
        )
        name = self.model.graph.name or "model"
        title = widgets.HTML(f"<h3>Precision Workbench — {html.escape(name)}</h3>")
        super().__init__([title, self.tabs])

    def report_sources(self) -> dict[str, Any]:
        """Everything computed so far, as keyword arguments of :func:`workbench.html_report`."""
        result = self.convert.result
        kind = type(result).__name__
        return {
            "study": self.explore.study,
            "model": self.model,
            "mixed": result if kind == "MixedPrecisionResult" else None,
            "accuracy_control": result if kind == "AccuracyControlResult" else None,
            "affinity": self.devices.affinity,
            "partitioned": self.devices.partitioned,
            "profile": self.devices.profile,
            "results": [result] if kind == "Float16Result" else [],
        }
