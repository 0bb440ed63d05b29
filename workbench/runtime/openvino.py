"""OpenVINO backend: compile the ONNX model with the hint and report the precision that ran.

The hint becomes ``EXECUTION_MODE_HINT`` / ``INFERENCE_PRECISION_HINT`` (resolved with
:func:`workbench.runtime.hints.resolve_hint`). After compiling, the plugin's own choice is
read back (``compiled_model.get_property``) and the runtime graph's per-layer
``runtimePrecision`` says what the compute layers actually run in: an f16 request on a CPU
without f16 arithmetic is reported as the bf16 or f32 the plugin picked, never as f16.

The hint's performance mode becomes ``PERFORMANCE_HINT`` (LATENCY: one stream, one request at
a time; THROUGHPUT: the plugin's streams, fed by an async infer-request queue when measuring
items per second). Runners compare by the *effective* compiled properties, so hints the plugin
resolves to the same settings are measured once.
"""

from __future__ import annotations

import collections
import functools
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import openvino as ov

from ..data import InputSpec
from ..errors import UnsupportedError
from ..model import check_external_data
from .base import DEFAULT_CONFIG, Device, RunConfig, Runner
from .hints import (
    Hint,
    resolve_hint,
    sort_precisions,
    summarize_precisions,
    warn_if_not_honoured,
)

#: OPTIMIZATION_CAPABILITIES entries that are precisions
_CAPABILITY_PRECISIONS = {"FP32": "f32", "FP16": "f16", "BF16": "bf16", "INT8": "int8"}
#: OpenVINO element type names → workbench precision names
_OV_TYPES = {
    "f32": "f32",
    "f16": "f16",
    "bf16": "bf16",
    "f64": "f64",
    "i8": "int8",
    "u8": "int8",
    "i4": "int4",
    "u4": "int4",
}
#: runtime-graph layer types that only move or convert data
_GLUE_LAYERS = {
    "Input",
    "Output",
    "Parameter",
    "Result",
    "Const",
    "Reorder",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Convert",
    "Concatenation",
    "Split",
    "Gather",
    "ShapeOf",
    "StridedSlice",
    "Broadcast",
    "FakeQuantize",
}


@functools.cache
def core() -> ov.Core:
    """One OpenVINO Core per process (creating one loads every plugin)."""
    return ov.Core()


def _precision_name(t: Any) -> str | None:
    """'f32' from an ``ov.Type``, the string 'f32'/'bf16', or None for dynamic/undefined."""
    name = getattr(t, "get_type_name", lambda: str(t))()
    name = str(name).strip().lower()
    if name in ("", "dynamic", "undefined"):
        return None
    return _OV_TYPES.get(name, name)


def device_capabilities(device: str = "CPU") -> tuple[str, ...]:
    """Precisions the OpenVINO device lists in ``OPTIMIZATION_CAPABILITIES`` (f32, f16, bf16, int8)."""
    caps = core().get_property(device, "OPTIMIZATION_CAPABILITIES")
    return sort_precisions({_CAPABILITY_PRECISIONS[c] for c in caps if c in _CAPABILITY_PRECISIONS})


def default_precision(device: str = "CPU") -> str:
    """The device's own inference precision in performance mode (``INFERENCE_PRECISION_HINT``)."""
    return _precision_name(core().get_property(device, "INFERENCE_PRECISION_HINT")) or "f32"


@functools.cache
def _list_devices() -> tuple[Device, ...]:
    out = []
    c = core()
    for dev in c.available_devices:
        precisions = set(device_capabilities(dev))
        default = default_precision(dev)
        precisions.add(default)
        try:
            full = c.get_property(dev, "FULL_DEVICE_NAME")
        except RuntimeError:
            full = dev
        out.append(
            Device(
                name=f"openvino:{dev}",
                backend="openvino",
                precisions=sort_precisions(precisions),
                provider=dev,
                description=(
                    f"OpenVINO {ov.__version__.split('-')[0]} {dev} ({full}); "
                    f"default inference precision {default}"
                ),
            )
        )
    return tuple(out)


def list_devices() -> list[Device]:
    """OpenVINO devices found on this machine as workbench Devices (``openvino:CPU`` ...)."""
    return list(_list_devices())


def compile_config(
    hint: Hint, device: Device, run_config: RunConfig = DEFAULT_CONFIG
) -> tuple[dict[str, Any], tuple[str, ...], str]:
    """Properties to compile with for ``hint`` on ``device``, the plan's notes, and the request."""
    dev = device.provider or "CPU"
    plan = resolve_hint(hint, device_capabilities(dev), device.name)
    config: dict[str, Any] = {
        "EXECUTION_MODE_HINT": "ACCURACY" if hint.execution_mode == "accuracy" else "PERFORMANCE",
        # latency (default): one request at a time, like the ORT sessions
        "PERFORMANCE_HINT": "THROUGHPUT" if hint.performance_mode == "throughput" else "LATENCY",
    }
    if plan.inference_precision and hint.execution_mode == "performance":
        config["INFERENCE_PRECISION_HINT"] = plan.inference_precision
    supported = core().get_property(dev, "SUPPORTED_PROPERTIES")
    if not plan.dynamic_quantization and "DYNAMIC_QUANTIZATION_GROUP_SIZE" in supported:
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = 0
    if run_config.threads and "INFERENCE_NUM_THREADS" in supported:
        config["INFERENCE_NUM_THREADS"] = run_config.threads
    return config, plan.notes, plan.precision_requested


#: compiled-model properties that do not change how the model computes or how fast
_NOT_SETTINGS = {"SUPPORTED_PROPERTIES", "NETWORK_NAME", "RUNTIME_REQUIREMENTS", "LOG_LEVEL"}


def effective_settings(compiled: ov.CompiledModel) -> tuple[tuple[str, str], ...]:
    """The compiled model's own properties (precision, mode, streams, threads ...), sorted.

    Two hints giving equal settings compute the same thing at the same speed (e.g. the default
    performance hint and an explicit request of the precision the plugin picks anyway).
    """
    out = []
    for key in compiled.get_property("SUPPORTED_PROPERTIES"):
        if key in _NOT_SETTINGS:
            continue
        try:
            out.append((str(key), str(compiled.get_property(key))))
        except RuntimeError:  # listed but not readable on this plugin version
            continue
    return tuple(sorted(out))


def runtime_precisions(compiled: ov.CompiledModel) -> dict[str, collections.Counter[str]]:
    """Precision → Counter of layer types of the compute layers in the compiled runtime graph."""
    ran: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        if layer in _GLUE_LAYERS or "runtimePrecision" not in info:
            continue
        p = _precision_name(info["runtimePrecision"].astype(str))
        if p in ("f32", "f16", "bf16", "f64", "int8", "int4"):
            ran["int8" if p == "int4" else p][layer] += 1
    return dict(ran)


class OpenVinoRunner(Runner):
    """An ONNX model compiled by OpenVINO for one device with one hint."""

    def __init__(
        self,
        model: onnx.ModelProto,
        device: Device,
        hint: Hint,
        run_config: RunConfig = DEFAULT_CONFIG,
    ):
        self.device = device
        self.hint = hint
        dev = device.provider or "CPU"
        config, plan_notes, requested = compile_config(hint, device, run_config)
        self.precision_requested = requested
        try:
            self.compiled = compile_model(model, dev, config, run_config.model_dir)
        except (RuntimeError, ValueError) as e:
            raise UnsupportedError(
                f"OpenVINO {dev} cannot compile model {model.graph.name!r}: {str(e).strip()[:600]}"
            ) from e
        #: what makes two runners time the same thing: the settings the plugin really uses
        self.config = ("openvino", dev, effective_settings(self.compiled))
        self.request = self.compiled.create_infer_request()
        self.performance_mode = str(config["PERFORMANCE_HINT"]).lower()
        self.parallel_requests = max(
            _int_property(self.compiled, "OPTIMAL_NUMBER_OF_INFER_REQUESTS"), 1
        )
        streams = _int_property(self.compiled, "NUM_STREAMS")
        self.input_specs = {p.get_any_name(): _input_spec(p) for p in self.compiled.inputs}
        declared = [o.name for o in model.graph.output]
        # a port has every name of its tensor (an output behind an Identity has two): the
        # model's declared output name is the one callers know
        self.output_names = [
            next((n for n in declared if n in p.get_names()), p.get_any_name())
            for p in self.compiled.outputs
        ]
        self.chosen = _precision_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        ran = runtime_precisions(self.compiled)
        self.precision_ran = summarize_precisions({p: sum(c.values()) for p, c in ran.items()})
        self.notes = tuple(plan_notes) + tuple(_notes(requested, self.chosen, self.precision_ran))
        if self.performance_mode == "throughput":
            self.notes += (
                f"THROUGHPUT hint: {streams} streams, {self.parallel_requests} requests in flight",
            )
        if run_config.warn:
            warn_if_not_honoured(device.name, requested, self.precision_ran, self.notes)

    def run_prepared(self, prepared: dict[str, np.ndarray]) -> list[np.ndarray]:
        # prepared feeds are contiguous arrays we keep alive: no copy into the request
        res = self.request.infer(prepared, share_inputs=True)
        return [np.array(res[p], copy=True) for p in self.compiled.outputs]

    def measure_throughput(
        self, prepared: Sequence[dict[str, np.ndarray]], seconds: float, windows: int = 5
    ) -> list[float]:
        """Requests per second through an async infer-request queue of the plugin's optimal
        size, one figure per time window (``windows`` windows over ``seconds``)."""
        queue = ov.AsyncInferQueue(self.compiled, self.parallel_requests)
        rates = []
        i = 0
        for _ in range(max(windows, 1)):
            done_before = i
            t0 = time.perf_counter()
            deadline = t0 + seconds / max(windows, 1)
            while time.perf_counter() < deadline:
                queue.start_async(prepared[i % len(prepared)], share_inputs=True)
                i += 1
            queue.wait_all()
            elapsed = time.perf_counter() - t0
            rates.append((i - done_before) / elapsed)
        return rates

    def close(self) -> None:
        self.request = None
        self.compiled = None


def compile_model(
    model: onnx.ModelProto, dev: str, config: dict[str, Any], model_dir: str | None
) -> ov.CompiledModel:
    """Compile ``model``; a light proto's weights are read from ``model_dir`` through a
    throwaway folder of hard links to its data files (OpenVINO resolves external data next to
    the model file and refuses symbolic links out of it; a copy across file systems)."""
    if not model_dir:
        return core().compile_model(core().read_model(model.SerializeToString(), b""), dev, config)
    with tempfile.TemporaryDirectory(prefix="wb-ov-") as tmp:
        root = Path(model_dir).resolve()
        for f in set(check_external_data(model, root)):
            link = Path(tmp, f.relative_to(root))
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                try:
                    os.link(f, link)  # only read: the caller's file is never written
                except OSError:
                    shutil.copyfile(f, link)
        path = Path(tmp, "model.onnx")
        path.write_bytes(model.SerializeToString())
        return core().compile_model(core().read_model(str(path)), dev, config)


def _input_spec(port: Any) -> InputSpec:
    """Dtype and shape of a compiled input (dynamic dimensions become None)."""
    dtype = np.dtype(port.get_element_type().to_dtype())
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic:
        return InputSpec(dtype, None)
    return InputSpec(dtype, tuple(d.get_length() if d.is_static else None for d in shape))


def _int_property(compiled: ov.CompiledModel, key: str) -> int:
    try:
        return int(compiled.get_property(key))
    except (RuntimeError, TypeError, ValueError):
        return 1


def _notes(requested: str, chosen: str | None, ran: str) -> list[str]:
    notes = []
    if requested not in ("default", ran):
        why = f"the plugin chose inference precision {chosen}" if chosen else "kept model precision"
        notes.append(f"requested {requested}, ran {ran} ({why})")
    return notes


def open_openvino(
    model: onnx.ModelProto, device: Device, hint: Hint, config: RunConfig = DEFAULT_CONFIG
) -> OpenVinoRunner:
    """Runner compiling ``model`` with OpenVINO for ``device`` under ``hint``."""
    return OpenVinoRunner(model, device, hint, config)
