"""Runtime backends: bind a model to a real device with a hint, run it, time it, evaluate it.

``open_backend`` dispatches on the device's backend (ONNX Runtime always; OpenVINO when
installed). Every runner reports the precision that was requested and the precision that
actually ran. Simulated device profiles live one layer up (``workbench.hardware``): they convert
the model first and then run it here.
"""

from __future__ import annotations

import importlib
import math
import numbers
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime

from ..data import Dataset, as_dataset
from ..errors import InputError, WorkbenchError
from ..model import load_model
from ..results import Result
from . import kernels
from .base import DEFAULT_CONFIG, Device, Feeds, RunConfig, Runner, prepare_feeds
from .hints import Hint, as_hint
from .ort import ort_precisions

__all__ = [
    "BACKENDS",
    "BenchResult",
    "Device",
    "Feeds",
    "RunConfig",
    "Runner",
    "call_validation",
    "canonical_device_name",
    "open_backend",
    "open_runner",
    "prepare_feeds",
    "real_devices",
    "resolve_real_device",
    "time_runner",
]

#: backend name → "module:function" opening a Runner for (model, device, hint)
BACKENDS: dict[str, str] = {
    "ort": "workbench.runtime.ort:open_ort",
    "openvino": "workbench.runtime.openvino:open_openvino",
}


def _load_backend(backend: str) -> Callable[..., Runner]:
    try:
        target = BACKENDS[backend]
    except KeyError:
        raise InputError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}") from None
    module, func = target.split(":")
    try:
        return getattr(importlib.import_module(module), func)
    except ImportError as e:
        raise WorkbenchError(
            f"backend {backend!r} is not available ({e}); install the matching extra, "
            f"e.g. pip install 'precision-workbench[{backend}]'"
        ) from e


def _ort_devices() -> list[Device]:
    out = []
    for provider in onnxruntime.get_available_providers():
        if provider == "AzureExecutionProvider":  # remote endpoint invoker, not a device
            continue
        name = "cpu" if provider == kernels.CPU else f"ort:{provider}"
        out.append(
            Device(
                name=name,
                backend="ort",
                precisions=ort_precisions(provider),
                provider=provider,
                description=f"ONNX Runtime {onnxruntime.__version__} {provider}",
            )
        )
    return out


def _openvino_devices() -> list[Device]:
    try:  # optional extra: importing the backend fails cleanly without openvino
        list_devices = importlib.import_module("workbench.runtime.openvino").list_devices
    except ImportError:
        return []
    return list_devices()


def real_devices() -> list[Device]:
    """Devices found on this machine: ONNX Runtime providers, then OpenVINO devices."""
    return _ort_devices() + _openvino_devices()


def canonical_device_name(device: str) -> str:
    """``"cpu"`` for the spellings of ORT's CPU provider; the stripped name otherwise."""
    key = device.strip()
    if key.lower() in ("cpu", "ort", "ort:cpu", "ort:cpuexecutionprovider"):
        return "cpu"
    return key


def resolve_real_device(device: Device | str) -> Device:
    """A real Device from its name (``"cpu"``, ``"ort:X"``, ``"openvino:CPU"``) or itself."""
    if isinstance(device, Device):
        return device
    if not isinstance(device, str):
        raise InputError(f"device must be a name or Device, got {type(device).__name__}")
    key = canonical_device_name(device)
    found = real_devices()
    for d in found:
        if d.name == key or d.name.lower() == key.lower():
            return d
    raise InputError(
        f"unknown device {device!r}; available: {', '.join(d.name for d in found)}"
        + (" (is the openvino extra installed?)" if key.lower().startswith("openvino") else "")
    )


def open_backend(
    model: onnx.ModelProto, device: Device, hint: Hint, config: RunConfig = DEFAULT_CONFIG
) -> Runner:
    """A Runner for ``model`` on a real ``device`` (backend ``ort`` or ``openvino``)."""
    return _load_backend(device.backend)(model, device, hint, config)


def open_runner(
    model: onnx.ModelProto | str | os.PathLike[str],
    device: Device | str = "cpu",
    hint: Hint | str | None = None,
    config: RunConfig = DEFAULT_CONFIG,
) -> Runner:
    """Bind ``model`` to a real ``device`` with ``hint`` (profiles: ``workbench.hardware``)."""
    proto = model if isinstance(model, onnx.ModelProto) else load_model(model)
    return open_backend(proto, resolve_real_device(device), as_hint(hint), config)


@dataclass(frozen=True)
class BenchResult(Result):
    """Latency statistics of one (model, device, hint)."""

    device: str
    hint: str
    precision_requested: str
    precision_ran: str
    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    runs: int
    batch: int
    throughput: float  # items per second at the median latency
    notes: tuple[str, ...] = ()
    simulated: bool = False
    times_ms: tuple[float, ...] = field(default=(), repr=False)

    _summary_exclude = ("times_ms",)


def _batch_size(feeds: Feeds) -> int:
    first = next(iter(feeds.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1


def time_runner(
    runner: Runner,
    dataset: Dataset,
    warmup: int = 3,
    runs: int | None = None,
    min_time: float = 1.0,
    max_runs: int = 10_000,
) -> BenchResult:
    """Time ``runner``: ``warmup`` untimed runs, then ``runs`` timed runs (or until ``min_time`` s).

    Feeds come from ``dataset.feeds()`` (cycled); they are prepared once so the loop times
    nothing but the backend's run call.
    """
    ds = as_dataset(dataset, "benchmark dataset")
    prepared = [runner.prepare(f) for f in ds.feeds()]
    batch = _batch_size(next(iter(ds.feeds())))
    run = runner.run_prepared
    for i in range(max(warmup, 0)):
        run(prepared[i % len(prepared)])
    times: list[float] = []
    clock = time.perf_counter
    deadline = clock() + min_time
    target = runs if runs is not None else max_runs
    i = 0
    while i < target and (runs is not None or clock() < deadline or i < 5):
        item = prepared[i % len(prepared)]
        t0 = clock()
        run(item)
        times.append(clock() - t0)
        i += 1
    ms = np.asarray(times) * 1e3
    median = float(np.median(ms))
    return BenchResult(
        device=runner.device.name,
        hint=runner.hint.label,
        precision_requested=runner.precision_requested,
        precision_ran=runner.precision_ran,
        median_ms=median,
        p10_ms=float(np.percentile(ms, 10)),
        p90_ms=float(np.percentile(ms, 90)),
        mean_ms=float(ms.mean()),
        runs=len(ms),
        batch=batch,
        throughput=batch / (median / 1e3) if median > 0 else math.inf,
        notes=tuple(runner.notes),
        simulated=bool(runner.device.simulated),
        times_ms=tuple(float(t) for t in ms),
    )


def call_validation(validation_fn: Callable[[Any, Any], Any], run: Callable, dataset: Any) -> float:
    """Call ``validation_fn(run, dataset)`` and insist on a finite real number back."""
    if not callable(validation_fn):
        raise InputError(f"validation_fn must be callable, got {type(validation_fn).__name__}")
    name = getattr(validation_fn, "__name__", "validation_fn")
    try:
        value = validation_fn(run, dataset)
    except WorkbenchError:
        raise
    except Exception as e:
        raise InputError(f"{name}(run, dataset) raised {type(e).__name__}: {e}") from e
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(
            f"{name}(run, dataset) returned {type(value).__name__} {value!r}; it must return a "
            "number (higher is better)"
        )
    if not math.isfinite(float(value)):
        raise InputError(f"{name}(run, dataset) returned {value!r}; it must be a finite number")
    return float(value)
