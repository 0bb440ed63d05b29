"""``Workbench(model, dataset, validation_fn)``: the tabbed notebook app over the panels."""

from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import onnx

import workbench as wb

from ..errors import InputError
from ..userdata import METRICS, default_metric, load_data, metric
from ._base import JobControls, note_html
from .layers_tab import LayersPanel
from .views import AffinityView, ConvertPanel, ExplorePanel, ModelView, ReportPanel

TABS = ("Model", "Convert", "Hints & devices", "Layers", "Explore", "Report")
#: metric choice meaning "the validation_fn given to Workbench(...)"
GIVEN = "as given"


class FilePicker(widgets.VBox):
    """Pick a model file and a data file (a path or an upload) and a metric; Load reads them.

    Plain state after a load: ``model``, ``dataset``, ``validation_fn``. Uploads are written
    to a private temporary folder (never the current one) and read from there.
    """

    def __init__(
        self,
        on_load: Callable[[onnx.ModelProto, Any, Any], None],
        validation_fn: Callable[..., Any] | None = None,
        background: bool = True,
    ):
        self.on_load = on_load
        self.given = validation_fn
        wide = widgets.Layout(width="50%")
        self.model_path = widgets.Text(placeholder="path/to/model.onnx", layout=wide)
        self.model_upload = widgets.FileUpload(accept=".onnx", multiple=False)
        self.data_path = widgets.Text(
            placeholder="inputs.npz (arrays named after the inputs, optional 'labels') "
            "or an image folder",
            layout=wide,
        )
        self.data_upload = widgets.FileUpload(accept=".npz", multiple=False)
        options = ((GIVEN,) if validation_fn is not None else ()) + ("default", *METRICS)
        self.metric = widgets.Dropdown(options=options, value=options[0])
        self.job = JobControls("Load", background=background, icon="folder-open")
        self.job.run_button.on_click(lambda _b: self.load())
        self.model: onnx.ModelProto | None = None
        self.dataset: Any = None
        self.validation_fn: Any = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        super().__init__(
            [
                widgets.HBox([widgets.Label("model", layout=_w()), self.model_path,
                              self.model_upload]),
                widgets.HBox([widgets.Label("data", layout=_w()), self.data_path,
                              self.data_upload]),
                widgets.HBox([widgets.Label("metric", layout=_w()), self.metric]),
                widgets.HTML(note_html(
                    "metric: top1/top5 need labels; cosine, mse and agreement compare with the "
                    "float32 model's outputs; 'default' picks top1 with labels, else agreement"
                )),
                self.job,
            ]
        )  # fmt: skip

    def _upload(self, upload: widgets.FileUpload) -> Path | None:
        """The uploaded file written to a private temporary folder, or None."""
        if not upload.value:
            return None
        item = upload.value[0]
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="workbench-upload-")
        target = Path(self._tmp.name) / Path(str(item["name"])).name
        target.write_bytes(bytes(item["content"]))
        return target

    def _source(self, upload: widgets.FileUpload, text: widgets.Text, what: str) -> Path | None:
        uploaded = self._upload(upload)
        if uploaded is not None:
            return uploaded
        value = text.value.strip()
        if not value:
            return None
        path = Path(value).expanduser()
        if not path.exists():
            raise InputError(f"{what} not found: {str(path)!r}")
        return path

    def _work(self) -> tuple[onnx.ModelProto, Any, Any]:
        model_file = self._source(self.model_upload, self.model_path, "model file")
        if model_file is None:
            raise InputError("give a model: a path to an .onnx file or an upload")
        model = wb.load_model(model_file)
        data_file = self._source(self.data_upload, self.data_path, "data")
        if data_file is None:
            if self.metric.value not in (GIVEN, "default"):
                raise InputError(f"metric {self.metric.value} needs data: give an .npz or folder")
            return model, None, None
        dataset = load_data(data_file, model)
        choice = self.metric.value
        if choice == GIVEN:
            fn = self.given
        elif choice == "default":
            fn = default_metric(model, dataset)
        else:
            fn = metric(choice, model, dataset)
        return model, dataset, fn

    def load(self) -> None:
        """Read the chosen files (the Load button)."""
        self.job.start(self._work, self._loaded)

    def _loaded(self, value: tuple[onnx.ModelProto, Any, Any]) -> None:
        self.model, self.dataset, self.validation_fn = value
        self.on_load(*value)


def _w() -> widgets.Layout:
    return widgets.Layout(width="60px")


class Workbench(widgets.VBox):
    """Tabs *Model*, *Convert*, *Hints & devices*, *Layers*, *Explore*, *Report* over one model.

    ``model`` may be None: pick a model file and a data file in *Files* (path or upload).
    ``background=False`` runs every job synchronously in the click handler (tests, scripts);
    by default jobs run in a thread so Cancel works in a live kernel. ``explore_options`` go to
    :func:`workbench.explore` (e.g. ``{"min_time": 0.1}`` for quicker sweeps). The Report
    button is enabled once something was computed.
    """

    def __init__(
        self,
        model: onnx.ModelProto | str | os.PathLike[str] | None = None,
        dataset: Any = None,
        validation_fn: Callable[..., float] | None = None,
        *,
        calibration_dataset: Any = None,
        devices: list[str] | None = None,
        background: bool = True,
        explore_options: dict[str, Any] | None = None,
    ):
        self._settings = {
            "calibration_dataset": calibration_dataset,
            "devices": devices,
            "background": background,
            "explore_options": explore_options,
        }
        self.files = FilePicker(self.use, validation_fn, background=background)
        self.title = widgets.HTML("")
        self.tabs = widgets.Tab()
        self.files_box = widgets.Accordion(children=[self.files], titles=("Files",))
        self.model: onnx.ModelProto | None = None
        super().__init__([self.title, self.files_box, self.tabs])
        if model is not None:
            self.use(wb.load_model(model), dataset, validation_fn)
            self.files_box.selected_index = None
        else:
            self.files_box.selected_index = 0
            self.title.value = "<h3>Precision Workbench</h3>" + note_html(
                "pick a model file and a data file under Files, then Load"
            )

    def use(self, model: onnx.ModelProto, dataset: Any, validation_fn: Any) -> None:
        """Build the tabs for ``model`` with ``dataset`` and ``validation_fn``."""
        st = self._settings
        self.model = model
        self.model_view = ModelView(model)
        self.convert = ConvertPanel(
            model, dataset, validation_fn, st["calibration_dataset"], background=st["background"]
        )
        self.devices = AffinityView(model, st["devices"], dataset, background=st["background"])
        self.layers = LayersPanel(model, dataset, background=st["background"])
        self.convert.job.listeners.append(self._variant_for_layers)
        self.explore = ExplorePanel(
            model, dataset, validation_fn, st["calibration_dataset"], devices=st["devices"],
            background=st["background"], options=st["explore_options"],
        )  # fmt: skip
        self.report = ReportPanel(self.report_sources, background=st["background"])
        for panel in (self.convert, self.devices, self.layers, self.explore):
            panel.job.listeners.append(lambda _state: self.report.refresh())
        self.tabs.children = [
            self.model_view, self.convert, self.devices, self.layers, self.explore, self.report,
        ]  # fmt: skip
        self.tabs.titles = TABS
        name = model.graph.name or "model"
        self.title.value = f"<h3>Precision Workbench — {html.escape(name)}</h3>"

    def _variant_for_layers(self, state: str) -> None:
        """The converted model is the variant whose layer error the Layers tab shows."""
        if state == "done" and self.convert.variant_model is not None:
            self.layers.variant = self.convert.variant_model

    def report_sources(self) -> dict[str, Any]:
        """Everything computed so far, as keyword arguments of :func:`workbench.report`."""
        result = self.convert.result
        kind = type(result).__name__
        layers = [self.layers.profile, self.layers.other, self.layers.comparison, self.layers.error]
        return {
            "study": self.explore.study,
            "model": self.model,
            "mixed": result if kind == "MixedPrecisionResult" else None,
            "accuracy_control": result if kind == "AccuracyControlResult" else None,
            "affinity": self.devices.affinity,
            "partitioned": self.devices.partitioned,
            "profile": self.devices.profile,
            "results": ([result] if kind == "Float16Result" else [])
            + [r for r in layers if r is not None],
        }
