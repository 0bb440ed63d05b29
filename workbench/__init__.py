"""Precision Workbench: explore the numeric precision of ONNX models.

Public API (see DESIGN.md). Names are re-exported lazily so ``import workbench`` stays fast and
optional backends load only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # model & data
    "load_model": "model",
    "save_model": "model",
    "inspect": "model",
    "ModelSummary": "model",
    "Dataset": "data",
    "random_dataset": "data",
    "image_folder": "images",
    "ImageFolder": "images",
    "metrics": "",
    "hostinfo": "",
    # precision passes
    "convert_float16": "precision.float16",
    "Float16Result": "precision.float16",
    "convertible_nodes": "precision.float16",
    "auto_mixed_precision": "precision.mixed",
    "MixedPrecisionResult": "precision.mixed",
    "quantize_int8": "precision.int8",
    "quantize_with_accuracy_control": "precision.accuracy_control",
    "AccuracyControlResult": "precision.accuracy_control",
    "Hint": "runtime.hints",
    "PrecisionWarning": "runtime.hints",
    # runtime
    "open_runner": "hardware.execution",
    "benchmark": "hardware.execution",
    "evaluate": "hardware.execution",
    "BenchResult": "runtime",
    # devices
    "Device": "runtime.base",
    "devices": "hardware.registry",
    "DeviceProfile": "hardware.registry",
    "query_model": "hardware.capability",
    "CapabilityReport": "hardware.capability",
    "affinity": "hardware.affinity",
    "Affinity": "hardware.affinity",
    "partition": "hardware.partition",
    "PartitionedModel": "hardware.partition",
    # explore, visualize, report
    "explore": "study",
    "Study": "study",
    "Recommendation": "recommendation",
    "ParetoFront": "recommendation",
    "Record": "study",
    "affinity_dot": "viz.graphs",
    "subgraphs_dot": "viz.graphs",
    "render": "viz.graphs",
    "tradeoff_plot": "viz.plots",
    # layers: per-layer profiles, errors and renders
    "layer_profile": "layers",
    "layer_error": "layers",
    "compare_layers": "layers",
    "LayerProfile": "layers",
    "LayerError": "layers",
    "layers_dot": "viz.layer_graphs",
    "report": "html_report",
    "widgets": "",
    "demo": "",
    # errors & progress
    "WorkbenchError": "errors",
    "ModelLoadError": "errors",
    "InputError": "errors",
    "UnsupportedError": "errors",
    "AccuracyNotReachedError": "errors",
    "OperationCancelled": "errors",
    "CancelToken": "progress",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}") from None
    if not module:  # a submodule exported as itself
        return importlib.import_module(f".{name}", __name__)
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
