"""Runtime backends: bind a model to (device, hint), run it, time it, evaluate it.

``open_runner`` dispatches on the device's backend (ONNX Runtime always; OpenVINO when
installed; simulated device profiles executed on the CPU). Every runner reports the precision
that was requested and the precision that actually ran.
"""

from __future__ import annotations

import importlib
import math
import numbers
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from ..data import Dataset, as_dataset, random_dataset
from ..errors import InputError, WorkbenchError
from ..precision.hints import Hint, as_hint
from ..results import Result

if TYPE_CHECKING:
    from ..devices.registry import Device

Feeds = dict[str, np.ndarray]

#: backend name → "module:function" opening a Runner for (model, device, hint)
BACKENDS: dict[str, str] = {
    "ort": "workbench.runtime.ort:open_ort",
    "openvino": "workbench.runtime.openvino:open_openvino",
    "profile": "workbench.devices.registry:open_profile",
}


class Runner:
    """A model bound to one device with one hint. ``runner(feeds) -> {output: array}``.

    Backends fill ``input_specs`` (name → numpy dtype), ``output_names`` and implement
    :meth:`run_prepared`; :meth:`prepare` checks names and casts feeds to the model's dtypes.
    """

    device: Device
    hint: Hint
    precision_requested: str = "f32"
    precision_ran: str = "f32"
    notes: tuple[str, ...] = ()
    input_specs: dict[str, np.dtype]
    output_names: list[str]

    def prepare(self, feeds: Mapping[str, Any]) -> Any:
        """Backend-native inputs: names checked, arrays cast to the model's input dtypes."""
        return prepare_feeds(feeds, self.input_specs, self.device.name)

    def run_prepared(self, prepared: Any) -> list[np.ndarray]:
        raise NotImplementedError

    def __call__(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        outs = self.run_prepared(self.prepare(feeds))
        return dict(zip(self.output_names, outs, strict=True))

    def close(self) -> None:
        """Release backend resources (sessions are also freed when garbage collected)."""

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} device={self.device.name} hint={self.hint.label} "
            f"requested={self.precision_requested} ran={self.precision_ran}>"
        )


def prepare_feeds(
    feeds: Mapping[str, Any], specs: Mapping[str, np.dtype], where: str = ""
) -> Feeds:
    """Check feed names against the model inputs and cast values to the input dtypes."""
    if not isinstance(feeds, Mapping):
        raise InputError(f"feeds must be a dict of input name → array, got {type(feeds).__name__}")
    unknown = [k for k in feeds if k not in specs]
    if unknown:
        raise InputError(
            f"model has no input {unknown[0]!r}{' on ' + where if where else ''}; "
            f"its inputs are: {', '.join(specs) or '(none)'}"
        )
    missing = [k for k in specs if k not in feeds]
    if missing:
        raise InputError(
            f"missing feed for model input {missing[0]!r}; give all of: {', '.join(specs)}"
        )
    out: Feeds = {}
    for name, dtype in specs.items():
        value = np.asarray(feeds[name])
        if value.dtype != dtype:
            try:
                value = value.astype(dtype)
            except (TypeError, ValueError) as e:
                raise InputError(
                    f"input {name!r}: cannot convert {value.dtype} to {dtype}: {e}"
                ) from e
        out[name] = np.ascontiguousarray(value)
    return out


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


def open_runner(
    model: onnx.ModelProto | str | os.PathLike[str],
    device: Any = "cpu",
    hint: Hint | str | None = None,
) -> Runner:
    """Bind ``model`` to ``device`` (name, Device or DeviceProfile) with ``hint``."""
    from ..devices.registry import resolve_device
    from ..model import load_model

    proto = model if isinstance(model, onnx.ModelProto) else load_model(model)
    dev = resolve_device(device)
    return _load_backend(dev.backend)(proto, dev, as_hint(hint))


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


def benchmark(
    model: onnx.ModelProto | str | os.PathLike[str],
    device: Any = "cpu",
    hint: Hint | str | None = None,
    dataset: Dataset | None = None,
    warmup: int = 3,
    runs: int | None = None,
    min_time: float = 1.0,
    max_runs: int = 10_000,
) -> BenchResult:
    """Time inference: ``warmup`` untimed runs, then ``runs`` timed runs (or until ``min_time`` s).

    Feeds come from ``dataset.feeds()`` (cycled) or random inputs; they are prepared once so
    the loop times nothing but the backend's run call.
    """
    from ..model import load_model

    proto = model if isinstance(model, onnx.ModelProto) else load_model(model)
    ds = (
        as_dataset(dataset, "benchmark dataset")
        if dataset is not None
        else random_dataset(proto, n=1)
    )
    runner = open_runner(proto, device, hint)
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
    runner.close()
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


def evaluate(
    model: onnx.ModelProto | str | os.PathLike[str],
    dataset: Any,
    validation_fn: Callable[[Any, Any], Any],
    device: Any = "cpu",
    hint: Hint | str | None = None,
) -> float:
    """``validation_fn(run, dataset)`` with ``run`` bound to the model on ``device``."""
    runner = open_runner(model, device, hint)
    try:
        return call_validation(validation_fn, runner, dataset)
    finally:
        runner.close()
