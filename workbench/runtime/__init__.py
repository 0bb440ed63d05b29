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
from typing import Any, Literal, overload

import numpy as np
import onnx
import onnxruntime

from ..data import Dataset, as_dataset
from ..errors import InputError, WorkbenchError
from ..metrics import ItemScores
from ..model import load_light
from ..results import Result
from ..statistics import median_ci
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
    "prepare_dataset",
    "throughput_windows",
    "timed_runs",
    "warm_up",
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
    if isinstance(model, onnx.ModelProto):
        return open_backend(model, resolve_real_device(device), as_hint(hint), config)
    proto, folder = load_light(model)  # the backend reads the weights from their files
    return open_backend(proto, resolve_real_device(device), as_hint(hint), config.reading(folder))


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
    throughput: float  # items per second (async queue in THROUGHPUT mode, else batch / median)
    notes: tuple[str, ...] = ()
    simulated: bool = False
    times_ms: tuple[float, ...] = field(default=(), repr=False)
    ci_ms: tuple[float, float] | None = None  # 95% interval of the median
    estimated: bool = False  # a roofline estimate for a simulated device, never timed

    _summary_exclude = ("times_ms",)


def _batch_size(feeds: Feeds) -> int:
    first = next(iter(feeds.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1


#: warm-up rule: windows of this many untimed runs ...
SETTLE_WINDOW = 5
#: ... until a window's median is within this fraction of the previous window's median
SETTLE_TOLERANCE = 0.05
#: ... or this many seconds / runs have gone by (slow models, noisy hosts)
SETTLE_MAX_SECONDS = 2.0
SETTLE_MAX_RUNS = 200


def warm_up(runner: Runner, prepared: list[Any], min_runs: int = 3) -> int:
    """Untimed runs until the run time settles; returns how many ran.

    At least ``min_runs``; then windows of :data:`SETTLE_WINDOW` runs until a window's median
    is within :data:`SETTLE_TOLERANCE` of the previous one (first-run allocations, JIT and
    cache effects gone), capped at :data:`SETTLE_MAX_SECONDS` / :data:`SETTLE_MAX_RUNS`.
    """
    run, clock = runner.run_prepared, time.perf_counter
    start = clock()
    for i in range(max(min_runs, 0)):
        run(prepared[i % len(prepared)])
    done, previous = max(min_runs, 0), None
    while done < SETTLE_MAX_RUNS and clock() - start < SETTLE_MAX_SECONDS:
        window = timed_runs(runner, prepared, runs=SETTLE_WINDOW, start=done)
        done += SETTLE_WINDOW
        median = float(np.median(window))
        if previous is not None and abs(median - previous) <= SETTLE_TOLERANCE * previous:
            break
        previous = median
    return done


def timed_runs(
    runner: Runner,
    prepared: list[Any],
    runs: int | None = None,
    min_time: float = 0.0,
    max_runs: int = 10_000,
    start: int = 0,
) -> list[float]:
    """Seconds of each backend run call: ``runs`` runs, or as many as fit ``min_time`` (≥ 5).

    Feeds are prepared beforehand and cycled from index ``start``, so nothing but the
    backend's run call is inside the clock.
    """
    run, clock = runner.run_prepared, time.perf_counter
    times: list[float] = []
    deadline = clock() + min_time
    target = runs if runs is not None else max_runs
    i = 0
    while i < target and (runs is not None or clock() < deadline or i < 5):
        item = prepared[(start + i) % len(prepared)]
        t0 = clock()
        run(item)
        times.append(clock() - t0)
        i += 1
    return times


def prepare_dataset(runner: Runner, dataset: Dataset) -> tuple[list[Any], int]:
    """Backend-native feeds of ``dataset`` for ``runner`` and their batch size."""
    ds = as_dataset(dataset, "benchmark dataset")
    feeds = list(ds.feeds())
    if not feeds:
        raise InputError("benchmark dataset is empty; give at least one item")
    return [runner.prepare(f) for f in feeds], _batch_size(feeds[0])


def time_runner(
    runner: Runner,
    dataset: Dataset,
    warmup: int = 3,
    runs: int | None = None,
    min_time: float = 1.0,
    max_runs: int = 10_000,
) -> BenchResult:
    """Time ``runner``: warm up (≥ ``warmup`` runs, until settled, see :func:`warm_up`), then
    ``runs`` timed runs (or until ``min_time`` s); THROUGHPUT-mode runners (OpenVINO) also
    measure items per second through their async queue.

    Feeds come from ``dataset.feeds()`` (cycled); they are prepared once so the loop times
    nothing but the backend's run call.
    """
    prepared, batch = prepare_dataset(runner, dataset)
    done = warm_up(runner, prepared, warmup)
    ms = np.asarray(timed_runs(runner, prepared, runs, min_time, max_runs, start=done)) * 1e3
    median = float(np.median(ms))
    # THROUGHPUT-mode runners: items/s from the backend's async queue, not from one request
    rates = throughput_windows(runner, prepared, max(min_time / 2, 0.05))
    throughput = (
        batch * float(np.median(rates))
        if rates
        else (batch / (median / 1e3) if median > 0 else math.inf)
    )
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
        throughput=throughput,
        notes=tuple(runner.notes),
        simulated=bool(runner.device.simulated),
        times_ms=tuple(float(t) for t in ms),
        ci_ms=median_ci(ms, confidence=0.95, seed=0),
    )


def throughput_windows(runner: Runner, prepared: list[Any], seconds: float) -> list[float] | None:
    """Requests per second from the backend's own async queue (OpenVINO THROUGHPUT runners),
    one figure per window; None when the runner times one request at a time."""
    measure = getattr(runner, "measure_throughput", None)
    if measure is None or getattr(runner, "performance_mode", "latency") != "throughput":
        return None
    return list(measure(prepared, seconds))


@overload
def call_validation(
    validation_fn: Callable[[Any, Any], Any],
    run: Callable,
    dataset: Any,
    *,
    with_scores: Literal[False] = False,
) -> float: ...
@overload
def call_validation(
    validation_fn: Callable[[Any, Any], Any],
    run: Callable,
    dataset: Any,
    *,
    with_scores: Literal[True],
) -> tuple[float, tuple[float, ...]]: ...
def call_validation(
    validation_fn: Callable[[Any, Any], Any],
    run: Callable,
    dataset: Any,
    *,
    with_scores: bool = False,
) -> float | tuple[float, tuple[float, ...]]:
    """Call ``validation_fn(run, dataset)``: it returns a number, or a 1-D array of per-item
    scores whose mean is the metric (``wb.metrics`` values carry theirs in ``.items``).

    Returns the metric; with ``with_scores=True`` also the per-item scores (empty when the
    function returned a single number).
    """
    if not callable(validation_fn):
        raise InputError(f"validation_fn must be callable, got {type(validation_fn).__name__}")
    name = getattr(validation_fn, "__name__", "validation_fn")
    try:
        value = validation_fn(run, dataset)
    except WorkbenchError:
        raise
    except Exception as e:
        raise InputError(f"{name}(run, dataset) raised {type(e).__name__}: {e}") from e
    metric, scores = _metric_and_scores(value, name)
    return (metric, scores) if with_scores else metric


def _metric_and_scores(value: Any, name: str) -> tuple[float, tuple[float, ...]]:
    """(mean, per-item scores) of what a validation function returned; InputError if unusable."""
    items = getattr(value, "items", None) if isinstance(value, ItemScores) else None
    if items is None and isinstance(value, (np.ndarray, list, tuple)):
        items = value
    if items is not None:
        try:
            arr = np.asarray(items, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise InputError(f"{name}(run, dataset) returned non-numeric scores: {e}") from e
        if arr.ndim > 1 or arr.size == 0:
            raise InputError(
                f"{name}(run, dataset) returned an array of shape {arr.shape}; return a number "
                "or a 1-D array with one score per item (its mean is the metric)"
            )
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{name}(run, dataset) returned non-finite per-item scores")
        if arr.ndim == 0:
            return float(arr), ()
        return float(arr.mean()), tuple(float(x) for x in arr)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(
            f"{name}(run, dataset) returned {type(value).__name__} {value!r}; it must return a "
            "number or a 1-D array of per-item scores (higher is better)"
        )
    if not math.isfinite(float(value)):
        raise InputError(f"{name}(run, dataset) returned {value!r}; it must be a finite number")
    return float(value), ()
