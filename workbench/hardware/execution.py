"""Run on any device, real or simulated: open a runner, time it, evaluate a metric with it."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import onnx

from ..data import Dataset, random_dataset
from ..model import load_model
from ..runtime import (
    DEFAULT_CONFIG,
    BenchResult,
    RunConfig,
    Runner,
    call_validation,
    open_backend,
    prepare_dataset,
    time_runner,
)
from ..runtime import open_runner as runtime_open_runner
from ..runtime.hints import Hint, as_hint
from .estimate import estimate_for_device
from .registry import open_profile, resolve_device

ModelLike = onnx.ModelProto | str | os.PathLike[str]


def _proto(model: ModelLike) -> onnx.ModelProto:
    return model if isinstance(model, onnx.ModelProto) else load_model(model)


def open_runner(
    model: ModelLike,
    device: Any = "cpu",
    hint: Hint | str | None = None,
    calibration: Any = None,
    config: RunConfig = DEFAULT_CONFIG,
) -> Runner:
    """Bind ``model`` to ``device`` (name, Device or DeviceProfile) with ``hint``.

    Simulated profiles convert the model to their precision first (int8 profiles calibrate on
    ``calibration`` when given).
    """
    dev = resolve_device(device)
    if dev.backend == "profile":
        return open_profile(_proto(model), dev, as_hint(hint), calibration, config)
    if not isinstance(model, onnx.ModelProto):  # the backend reads the weights from the files
        return runtime_open_runner(model, dev, as_hint(hint), config)
    return open_backend(model, dev, as_hint(hint), config)


def benchmark(
    model: ModelLike,
    device: Any = "cpu",
    hint: Hint | str | None = None,
    dataset: Dataset | None = None,
    warmup: int = 3,
    runs: int | None = None,
    min_time: float = 1.0,
    max_runs: int = 10_000,
    config: RunConfig = DEFAULT_CONFIG,
) -> BenchResult:
    """Latency of ``model`` on ``device`` with ``hint`` (see :func:`workbench.runtime.time_runner`);
    simulated devices give their roofline estimate (``estimated=True``) instead."""
    data = dataset if dataset is not None else random_dataset(model, n=1)
    runner = open_runner(model, device, hint, calibration=dataset, config=config)
    try:
        if runner.device.simulated:
            return _estimated(_proto(model), runner, data)
        return time_runner(
            runner, data, warmup=warmup, runs=runs, min_time=min_time, max_runs=max_runs
        )
    finally:
        runner.close()


def _estimated(model: onnx.ModelProto, runner: Runner, data: Any) -> BenchResult:
    """A simulated device is not timed (this CPU's speed says nothing about it): its
    roofline estimate, labelled ``estimated``."""
    est = estimate_for_device(model, runner.device, runner.hint, data)
    _, batch = prepare_dataset(runner, data)
    ms = est.latency_ms
    return BenchResult(
        device=runner.device.name,
        hint=runner.hint.label,
        precision_requested=runner.precision_requested,
        precision_ran=runner.precision_ran,
        median_ms=ms,
        p10_ms=ms,
        p90_ms=ms,
        mean_ms=ms,
        runs=0,
        batch=batch,
        throughput=batch * 1e3 / ms if ms > 0 else float("inf"),
        notes=tuple(runner.notes) + tuple(est.notes),
        simulated=True,
        estimated=True,
    )


def evaluate(
    model: ModelLike,
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
