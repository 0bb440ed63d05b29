"""Explore: sweep precision variants × execution hints × devices into a :class:`Study`.

Each variant is built once (cached by model hash + options), then measured for every (hint,
device): accuracy with the user's ``validation_fn`` and latency with
:func:`workbench.runtime.benchmark` in interleaved rounds (warm-up, same thread settings for
every variant, p10–p90 kept as noise). A variant that fails to build or run becomes a record
carrying the error — never a crash, never a stand-in model. With a Dask ``client`` the
(variant, device) jobs run on the cluster's workers, each worker timing its jobs serially.
"""

from __future__ import annotations

import collections
import hashlib
import pickle
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .data import Dataset, as_dataset
from .errors import InputError, OperationCancelled, WorkbenchError
from .hardware.execution import benchmark, open_runner
from .hardware.registry import resolve_device
from .metrics import agreement
from .model import load_model
from .precision.accuracy_control import quantize_with_accuracy_control
from .precision.float16 import convert_float16
from .precision.int8 import quantize_int8
from .precision.mixed import auto_mixed_precision
from .progress import check_cancelled, quiet, task
from .results import Result, html_table
from .runtime import RunConfig, call_validation
from .runtime.hints import Hint, PrecisionWarning, as_hint

VARIANTS = ("f32", "f16", "bf16", "mixed", "int8", "int8-ac")
DEFAULT_HINTS = ("performance", "accuracy")

#: a custom variant: (name, function model -> model or result with ``.model``)
VariantSpec = str | tuple[str, Callable[[onnx.ModelProto], Any]]


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Record(Result):
    """One measured (variant, hint, device). ``error`` is set when it could not be built or run."""

    variant: str
    device: str
    hint: str
    precision_requested: str = ""
    precision_ran: str = ""
    accuracy: float | None = None
    latency_ms: float | None = None  # median
    p10_ms: float | None = None
    p90_ms: float | None = None
    model_bytes: int | None = None
    build_seconds: float | None = None
    error: str | None = None
    simulated: bool = False
    runs: int = 0
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Measured without error (has an accuracy and a latency)."""
        return self.error is None and self.accuracy is not None and self.latency_ms is not None

    @property
    def honoured(self) -> bool:
        """Did the precision that ran match the request (``default`` requests anything)?"""
        return self.precision_requested in ("", "default", self.precision_ran)


@dataclass(frozen=True)
class Build(Result):
    """How one variant was obtained: seconds spent, size, cache hit, error, notes."""

    variant: str
    seconds: float = 0.0
    model_bytes: int | None = None
    cached: bool = False
    error: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Study(Result):
    """Records of a sweep. ``pareto()``, ``to_dataframe()``, ``save``/``load``, HTML table."""

    records: tuple[Record, ...]
    model_name: str = ""
    model_hash: str = ""
    variants: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    builds: tuple[Build, ...] = ()
    seconds: float = 0.0
    environment: dict[str, str] = field(default_factory=dict)

    def pareto(self, hint: str | None = None, device: str | None = None) -> tuple[Record, ...]:
        """Records no other record beats on both accuracy (higher) and latency (lower).

        Optionally restricted to one hint label or device; sorted by latency.
        """
        pool = [
            r
            for r in self.records
            if r.ok
            and (hint is None or r.hint == as_hint(hint).label)
            and (device is None or r.device == device)
        ]
        return pareto_front(pool)

    def baseline(self, device: str | None = None) -> float | None:
        """Accuracy of the f32 variant (best over hints; on ``device`` if given)."""
        accs = [
            r.accuracy
            for r in self.records
            if r.ok and r.variant == "f32" and (device is None or r.device == device)
        ]
        return max(accs) if accs else None

    def best(self, max_drop: float = 0.01, device: str | None = None) -> Record | None:
        """The fastest record whose accuracy is within ``max_drop`` (absolute) of the f32
        baseline — the answer to "what is fastest for the loss I accept". None without one."""
        base = self.baseline(device)
        if base is None:
            return None
        ok = [
            r
            for r in self.records
            if r.ok and r.accuracy >= base - max_drop and (device is None or r.device == device)
        ]
        return min(ok, key=lambda r: (r.latency_ms, -r.accuracy), default=None)

    def to_dataframe(self) -> Any:
        """The records as a pandas DataFrame (plus a boolean ``pareto`` column)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise WorkbenchError(
                "Study.to_dataframe needs pandas; pip install pandas (or use study.records)"
            ) from e
        front = {id(r) for r in self.pareto()}
        rows = [{**r.to_dict(), "pareto": id(r) in front} for r in self.records]
        return pd.DataFrame(rows)

    def save(self, path: str | Path) -> Path:
        """Write the study as JSON (atomically); returns the path."""
        self.to_json(path)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Study:
        """Read a study written by :meth:`save` (or ``workbench explore -o``)."""
        return cls.from_json(Path(path))

    def table_rows(self) -> list[dict[str, Any]]:
        """One display row per record: Pareto star, requested≠ran warning, p10–p90 noise."""
        front = {id(r) for r in self.pareto()}
        rows = []
        for r in self.records:
            ran = r.precision_ran if r.honoured else f"⚠ {r.precision_ran}"
            rows.append(
                {
                    "pareto": "★" if id(r) in front else "",
                    "variant": r.variant,
                    "device": f"{r.device} (simulated)" if r.simulated else r.device,
                    "hint": r.hint,
                    "requested": r.precision_requested,
                    "ran": ran if r.precision_ran else "",
                    "accuracy": r.accuracy,
                    "latency ms": r.latency_ms,
                    "p10–p90 ms": (
                        f"{r.p10_ms:.4g}–{r.p90_ms:.4g}" if r.p10_ms is not None else None
                    ),
                    "KiB": None if r.model_bytes is None else round(r.model_bytes / 1024, 1),
                    "build s": r.build_seconds,
                    "error / notes": r.error or "; ".join(r.notes),
                }
            )
        return rows

    def _repr_html_(self) -> str:
        title = (
            f"Study of {self.model_name or 'model'}: {len(self.records)} records, "
            f"{len(self.pareto())} on the Pareto front (★), ⚠ = precision requested ≠ ran"
        )
        return html_table(self.table_rows(), title=title)

    def __repr__(self) -> str:
        ok = sum(r.ok for r in self.records)
        return (
            f"Study({self.model_name or 'model'}: {len(self.records)} records, {ok} measured, "
            f"{len(self.records) - ok} errors, {self.seconds:.1f} s)"
        )


def pareto_front(records: Iterable[Record]) -> tuple[Record, ...]:
    """Non-dominated records (max accuracy, min latency), sorted by latency then accuracy."""
    pool = [r for r in records if r.ok]
    front = []
    for r in pool:
        dominated = any(
            s.accuracy >= r.accuracy
            and s.latency_ms <= r.latency_ms
            and (s.accuracy > r.accuracy or s.latency_ms < r.latency_ms)
            for s in pool
        )
        if not dominated:
            front.append(r)
    return tuple(sorted(front, key=lambda r: (r.latency_ms, -r.accuracy)))


# ----------------------------------------------------------------------------- variants

_CACHE: collections.OrderedDict[str, tuple[bytes, float, tuple[str, ...]]] = (
    collections.OrderedDict()
)
_CACHE_SIZE = 24


def clear_cache() -> None:
    """Forget every variant built so far (the next explore rebuilds them)."""
    _CACHE.clear()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fingerprint(dataset: Any) -> str:
    """Content hash of a dataset (items and feeds) so cached variants follow the data."""
    h = hashlib.sha256()
    try:
        h.update(pickle.dumps(list(dataset), protocol=4))
    except Exception:  # unpicklable items: the object identity is the best we can do
        h.update(f"id:{id(dataset)}".encode())
    if isinstance(dataset, Dataset):
        for feeds in dataset.feeds():
            for k in sorted(feeds):
                h.update(k.encode())
                h.update(np.ascontiguousarray(feeds[k]).tobytes())
    return h.hexdigest()[:16]


def _func_id(fn: Any) -> str | None:
    """Stable name of a function, or None when it has none (lambdas, closures)."""
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', '')}"
    return None if "<" in name or name == "." else name


def _model_of(value: Any, what: str) -> onnx.ModelProto:
    model = value if isinstance(value, onnx.ModelProto) else getattr(value, "model", None)
    if not isinstance(model, onnx.ModelProto):
        raise WorkbenchError(f"{what} returned {type(value).__name__}, not an ONNX model")
    return model


def _describe_build(result: Any) -> tuple[str, ...]:
    notes = []
    for attr, label in (
        ("converted_fraction", "converted fraction"),
        ("evaluations", "evaluations"),
        ("drop", "accuracy drop"),
    ):
        v = getattr(result, attr, None)
        if isinstance(v, (int, float)):
            notes.append(f"{label} {v:.3g}")
    reverted = getattr(result, "reverted_nodes", None)
    if reverted is not None:
        notes.append(f"{len(reverted)} ops reverted to float")
    return tuple(notes)


def _build_variant(
    spec: VariantSpec,
    model: onnx.ModelProto,
    dataset: Dataset,
    validation_fn: Callable,
    calibration: Dataset,
    max_drop: float,
) -> tuple[onnx.ModelProto, tuple[str, ...]]:
    """Run the pass behind one variant; raises whatever the pass raises."""
    if not isinstance(spec, str):
        name, fn = spec
        result = fn(model)
        return _model_of(result, f"variant {name!r}"), _describe_build(result)
    if spec == "f32":
        return model, ()
    if spec in ("f16", "bf16"):
        dtype = "float16" if spec == "f16" else "bfloat16"
        return _model_of(convert_float16(model, dtype=dtype), "convert_float16"), ()
    if spec == "mixed":
        res = auto_mixed_precision(model, dataset, validation_fn=validation_fn, max_drop=max_drop)
        return _model_of(res, "auto_mixed_precision"), _describe_build(res)
    if spec == "int8":
        return _model_of(quantize_int8(model, calibration), "quantize_int8"), ()
    if spec == "int8-ac":
        res = quantize_with_accuracy_control(
            model, calibration, dataset, validation_fn, max_drop=max_drop
        )
        return _model_of(res, "quantize_with_accuracy_control"), _describe_build(res)
    raise InputError(f"unknown variant {spec!r}; choose from {', '.join(VARIANTS)}")


def _error_text(variant: str, e: BaseException) -> str:
    if isinstance(e, ImportError):
        return f"variant {variant!r} is not available in this installation: {e}"
    if isinstance(e, NotImplementedError):
        return f"variant {variant!r} is not implemented yet{': ' + str(e) if str(e) else ''}"
    return f"{type(e).__name__}: {e}"


def _cache_key(
    spec: VariantSpec,
    model_hash: str,
    data_fp: Callable[[], str],
    calib_fp: Callable[[], str],
    validation_fn: Any,
    max_drop: float,
) -> str | None:
    if spec == "f32":
        return None  # the model itself: nothing to build or keep
    if isinstance(spec, str):
        name, fn_id = spec, ""
    else:
        name, fn_id = spec[0], _func_id(spec[1])
        if fn_id is None:
            return None  # anonymous builders cannot be told apart: build every time
    parts = [model_hash, name, fn_id]
    if name in ("int8", "int8-ac"):
        parts.append(calib_fp())
    if name in ("mixed", "int8-ac"):
        vf = _func_id(validation_fn)
        if vf is None:
            return None
        parts += [data_fp(), vf, repr(float(max_drop))]
    return _digest("|".join(parts).encode())


def build_variants(
    model: onnx.ModelProto,
    variants: Sequence[VariantSpec],
    dataset: Dataset,
    validation_fn: Callable,
    calibration: Dataset,
    max_drop: float = 0.01,
) -> tuple[dict[str, onnx.ModelProto], tuple[Build, ...]]:
    """Build (or fetch from the cache) every variant; failures become Builds with an error."""
    model_hash = _digest(model.SerializeToString())
    memo: dict[str, str] = {}

    def lazy(key: str, ds: Dataset) -> Callable[[], str]:
        return lambda: memo.setdefault(key, _fingerprint(ds))

    models: dict[str, onnx.ModelProto] = {}
    builds = []
    with task("explore: build variants", total=len(variants)) as t:
        for spec in variants:
            name = spec if isinstance(spec, str) else spec[0]
            key = _cache_key(
                spec,
                model_hash,
                lazy("data", dataset),
                lazy("calib", calibration),
                validation_fn,
                max_drop,
            )
            if key is not None and key in _CACHE:
                data, seconds, notes = _CACHE[key]
                _CACHE.move_to_end(key)
                models[name] = onnx.load_from_string(data)
                builds.append(Build(name, seconds, len(data), True, None, notes))
                t.update(postfix=f"{name} (cached)")
                continue
            t0 = time.perf_counter()
            try:
                built, notes = _build_variant(
                    spec, model, dataset, validation_fn, calibration, max_drop
                )
            except OperationCancelled:
                raise
            except Exception as e:  # any pass failure is data for the study, not a crash
                seconds = time.perf_counter() - t0
                builds.append(Build(name, seconds, None, False, _error_text(name, e)))
                t.update(postfix=f"{name} failed")
                continue
            seconds = time.perf_counter() - t0
            data = built.SerializeToString()
            models[name] = built
            builds.append(Build(name, seconds, len(data), False, None, notes))
            if key is not None:
                _CACHE[key] = (data, seconds, notes)
                while len(_CACHE) > _CACHE_SIZE:
                    _CACHE.popitem(last=False)
            t.update(postfix=name)
    return models, tuple(builds)


# ----------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Timing:
    """How latency is measured: per (variant, setting), ``rounds`` interleaved benchmark calls of
    ``min_time / rounds`` seconds each after ``warmup`` untimed runs, on ``items`` feeds."""

    min_time: float = 0.6
    rounds: int = 3
    warmup: int = 3
    items: int = 8
    threads: int | None = None  # intra-op threads for every backend (None: their defaults)

    @property
    def run_config(self) -> RunConfig:
        """Sessions of a sweep: same threads everywhere; the study reports requested vs ran
        per record (and explore warns once at the end), so runners stay silent."""
        return RunConfig(threads=self.threads, warn=False)


def measure_device(
    models: dict[str, onnx.ModelProto | bytes],
    builds: dict[str, Build],
    device: Any,
    hints: Sequence[Hint],
    dataset: Any,
    validation_fn: Callable,
    timing: Timing,
    step: Callable[[str], None] | None = None,
) -> list[Record]:
    """Measure every (variant, hint) of ``models`` on one device.

    Hints that give a backend identical settings (e.g. every hint on ONNX Runtime, which runs
    the model as stored) share one accuracy evaluation and one timing, and say so in ``notes``.
    Timings interleave the variants round by round so slow drift hits all of them alike.
    """
    return _measure_device(models, builds, device, hints, dataset, validation_fn, timing, step)


def _measure_device(
    models: dict[str, onnx.ModelProto | bytes],
    builds: dict[str, Build],
    device: Any,
    hints: Sequence[Hint],
    dataset: Any,
    validation_fn: Callable,
    timing: Timing,
    step: Callable[[str], None] | None,
) -> list[Record]:
    dev = resolve_device(device)
    protos = {
        v: m if isinstance(m, onnx.ModelProto) else onnx.load_from_string(m)
        for v, m in models.items()
    }
    bench_ds = Dataset(list(_take(as_dataset(dataset).feeds(), timing.items)))
    infos: dict[tuple[str, str], dict[str, Any]] = {}
    groups: dict[tuple[str, Any], list[Hint]] = {}
    for variant, proto in protos.items():
        for h in hints:
            info: dict[str, Any] = {}
            infos[(variant, h.label)] = info
            try:
                runner = open_runner(proto, dev, h, config=timing.run_config)
                try:
                    info.update(
                        requested=runner.precision_requested,
                        ran=runner.precision_ran,
                        notes=list(runner.notes),
                        simulated=bool(runner.device.simulated),
                    )
                    config = getattr(runner, "config", None)
                    key = (variant, config if config is not None else ("hint", h.label))
                    leader = groups.setdefault(key, [h])[0]
                    info["group"] = key
                    if leader == h:
                        info["accuracy"] = call_validation(validation_fn, runner, dataset)
                    else:
                        groups[key].append(h)
                        info["notes"].append(
                            f"same {dev.backend} settings as hint {leader.label}: "
                            "accuracy and latency measured once"
                        )
                finally:
                    runner.close()
            except OperationCancelled:
                raise
            except Exception as e:
                info["error"] = _error_text(variant, e)
            if step is not None:
                step(f"{variant}/{h.label} accuracy")
    # interleaved timing rounds over the group leaders (a leader that failed fails its group)
    times: dict[tuple[str, Any], list[float]] = {k: [] for k in groups}
    failed: dict[tuple[str, Any], str] = {
        k: infos[(k[0], m[0].label)]["error"]
        for k, m in groups.items()
        if "error" in infos[(k[0], m[0].label)]
    }
    rounds = max(timing.rounds, 1)
    per_round = max(timing.min_time / rounds, 1e-3)
    for i in range(rounds):
        for variant in protos:
            for key, members in groups.items():
                if key[0] != variant or key in failed:
                    continue
                check_cancelled()
                try:
                    with quiet():
                        r = benchmark(
                            protos[variant],
                            dev,
                            members[0],
                            dataset=bench_ds,
                            warmup=timing.warmup,
                            min_time=per_round,
                            config=timing.run_config,
                        )
                    times[key].extend(r.times_ms)
                except OperationCancelled:
                    raise
                except Exception as e:
                    failed[key] = _error_text(variant, e)
            if step is not None:
                step(f"{variant} timing {i + 1}/{rounds}")
    records = []
    for (variant, label), info in infos.items():
        b = builds.get(variant)
        base = dict(
            variant=variant,
            device=dev.name,
            hint=label,
            model_bytes=b.model_bytes if b else None,
            build_seconds=b.seconds if b else None,
            simulated=bool(info.get("simulated", dev.simulated)),
            precision_requested=info.get("requested", ""),
            precision_ran=info.get("ran", ""),
            notes=tuple((b.notes if b else ()) + tuple(info.get("notes", ()))),
        )
        key = info.get("group")
        error = info.get("error") or (failed.get(key) if key else None)
        if error:
            records.append(Record(**base, error=error))
        else:
            leader = groups[key][0]
            ms = np.asarray(times[key])
            records.append(
                Record(
                    **base,
                    accuracy=infos[(variant, leader.label)]["accuracy"],
                    latency_ms=float(np.median(ms)),
                    p10_ms=float(np.percentile(ms, 10)),
                    p90_ms=float(np.percentile(ms, 90)),
                    runs=len(ms),
                )
            )
    return records


def _take(it: Iterable[Any], n: int) -> Iterable[Any]:
    for i, x in enumerate(it):
        if i >= n:
            return
        yield x


def _measure_job(
    models: dict[str, bytes],
    builds: dict[str, Build],
    device: Any,
    hints: Sequence[Hint],
    dataset: Any,
    validation_fn: Callable,
    timing: Timing,
) -> list[Record]:
    """A Dask task: one (variant, device) job, timed alone on its worker (a per-worker lock)."""
    try:
        from distributed import Lock, get_worker

        lock = Lock(f"workbench-explore-timing-{get_worker().address}")
    except (ImportError, ValueError):  # not on a worker (e.g. run inline)
        lock = None
    if lock is None:
        return measure_device(models, builds, device, hints, dataset, validation_fn, timing)
    with lock:
        return measure_device(models, builds, device, hints, dataset, validation_fn, timing)


def _error_records(
    variant: str, build: Build, devices: Sequence[Any], hints: Sequence[Hint]
) -> list[Record]:
    return [
        Record(
            variant=variant,
            device=d.name,
            hint=h.label,
            build_seconds=build.seconds,
            error=build.error,
            simulated=bool(d.simulated),
        )
        for d in devices
        for h in hints
    ]


def _environment() -> dict[str, str]:
    import platform

    import onnxruntime

    env = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
    }
    try:
        import openvino

        env["openvino"] = openvino.__version__.split("-")[0]
    except ImportError:
        pass
    return env


# ----------------------------------------------------------------------------- explore


def explore(
    model: onnx.ModelProto | str | Path,
    dataset: Any,
    validation_fn: Callable[[Any, Any], float],
    variants: Sequence[VariantSpec] = VARIANTS,
    hints: Sequence[Hint | str] = DEFAULT_HINTS,
    devices: Sequence[Any] = ("cpu",),
    calibration_dataset: Any = None,
    client: Any = None,
    *,
    max_drop: float = 0.01,
    min_time: float = 0.6,
    rounds: int = 3,
    warmup: int = 3,
    bench_items: int = 8,
    threads: int | None = None,
) -> Study:
    """Sweep ``variants`` × ``hints`` × ``devices``: accuracy and latency of each combination.

    ``dataset`` goes to ``validation_fn(run, dataset)`` unchanged; its ``.feeds()`` calibrate
    int8 unless ``calibration_dataset`` is given and feed the benchmarks (first
    ``bench_items``). ``variants`` are names from :data:`VARIANTS` or ``(name, fn)`` pairs with
    ``fn(model) -> model``. ``max_drop`` bounds the metric drop of ``mixed`` and ``int8-ac``.
    Latency: ``rounds`` interleaved rounds totalling ``min_time`` s per measured setting, every
    session with the same ``threads`` (None: each backend's default, also the same for all).
    ``client``: a ``dask.distributed.Client``; (variant, device) jobs then run on its workers.
    """
    t_start = time.perf_counter()
    proto = load_model(model)
    ds = as_dataset(dataset, "explore dataset")
    # validation_fn gets the caller's object unchanged (a list stays a list)
    user_ds = dataset
    calib = (
        ds
        if calibration_dataset is None
        else as_dataset(calibration_dataset, "calibration dataset")
    )
    if not callable(validation_fn):
        raise InputError(f"validation_fn must be callable, got {type(validation_fn).__name__}")
    specs = _check_variants(variants)
    hint_objs = _unique([as_hint(h) for h in (hints or DEFAULT_HINTS)], key=lambda h: h.label)
    devs = _unique([resolve_device(d) for d in (devices or ("cpu",))], key=lambda d: d.name)
    timing = Timing(min_time, rounds, warmup, bench_items, threads)

    models, builds = build_variants(proto, specs, ds, validation_fn, calib, max_drop)
    build_of = {b.variant: b for b in builds}
    names = [s if isinstance(s, str) else s[0] for s in specs]
    records: list[Record] = []
    for name in names:
        if build_of[name].error:
            records += _error_records(name, build_of[name], devs, hint_objs)
    # progress units per (variant, device): one accuracy step per hint, one per timing round
    per_job = len(hint_objs) + max(rounds, 1)
    total = len(models) * len(devs) * per_job
    with task("explore: measure", total=total) as t:
        if client is None:
            for d in devs:
                records += measure_device(
                    models,
                    build_of,
                    d,
                    hint_objs,
                    user_ds,
                    validation_fn,
                    timing,
                    step=lambda label, d=d: t.update(postfix=f"{label} on {d.name}"),
                )
        else:
            records += _run_on_cluster(
                client, models, build_of, devs, hint_objs, user_ds, validation_fn, timing, t
            )
    order = {n: i for i, n in enumerate(names)}
    dev_order = {d.name: i for i, d in enumerate(devs)}
    hint_order = {h.label: i for i, h in enumerate(hint_objs)}
    records.sort(key=lambda r: (order[r.variant], dev_order[r.device], hint_order[r.hint]))
    unhonoured = [r for r in records if r.ok and not r.honoured]
    if unhonoured:  # one warning for the sweep instead of one per runner
        warnings.warn(
            f"{len(unhonoured)} of {len(records)} records ran another precision than requested "
            f"(e.g. {unhonoured[0].variant} on {unhonoured[0].device} [{unhonoured[0].hint}]: "
            f"requested {unhonoured[0].precision_requested}, ran {unhonoured[0].precision_ran}); "
            "see the ⚠ marks and notes in the study",
            PrecisionWarning,
            stacklevel=2,
        )
    return Study(
        records=tuple(records),
        model_name=proto.graph.name or (Path(model).name if isinstance(model, (str, Path)) else ""),
        model_hash=_digest(proto.SerializeToString())[:16],
        variants=tuple(names),
        hints=tuple(h.label for h in hint_objs),
        devices=tuple(d.name for d in devs),
        builds=builds,
        seconds=time.perf_counter() - t_start,
        environment=_environment(),
    )


def _run_on_cluster(
    client: Any,
    models: dict[str, onnx.ModelProto],
    builds: dict[str, Build],
    devs: Sequence[Any],
    hints: Sequence[Hint],
    dataset: Any,
    validation_fn: Callable,
    timing: Timing,
    t: Any,
) -> list[Record]:
    """Submit one job per (variant, device); collect records as they finish."""
    from distributed import as_completed

    [ds_future] = client.scatter([dataset], broadcast=True, hash=False)
    futures = {}
    for variant, proto in models.items():
        for d in devs:
            fut = client.submit(
                _measure_job,
                {variant: proto.SerializeToString()},
                {variant: builds[variant]},
                d,
                list(hints),
                ds_future,
                validation_fn,
                timing,
                pure=False,
            )
            futures[fut] = (variant, d.name)
    out: list[Record] = []
    try:
        for fut in as_completed(list(futures)):
            variant, dev = futures[fut]
            out += fut.result()
            t.update(len(hints) + max(timing.rounds, 1), postfix=f"{variant} on {dev}")
    except BaseException:
        client.cancel(list(futures))
        raise
    return out


def _check_variants(variants: Sequence[VariantSpec]) -> list[VariantSpec]:
    if isinstance(variants, str):
        variants = [v for v in variants.replace(",", " ").split() if v]
    specs: list[VariantSpec] = []
    seen: set[str] = set()
    for v in variants:
        if isinstance(v, str):
            name = v.strip().lower()
            if name not in VARIANTS:
                raise InputError(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
            spec: VariantSpec = name
        elif isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) and callable(v[1]):
            name, spec = v[0], (v[0], v[1])
        else:
            raise InputError(
                f"variant {v!r} must be a name ({', '.join(VARIANTS)}) or a (name, function) pair"
            )
        if name in seen:
            continue
        seen.add(name)
        specs.append(spec)
    if not specs:
        raise InputError("explore needs at least one variant")
    return specs


def _unique(items: list[Any], key: Callable[[Any], str]) -> list[Any]:
    out, seen = [], set()
    for x in items:
        k = key(x)
        if k not in seen:
            seen.add(k)
            out.append(x)
    return out


def agreement_validation(model: onnx.ModelProto, dataset: Any) -> Callable[[Any, Any], float]:
    """A ``validation_fn`` for data without labels: top-1 agreement of the first output with
    the f32 model's (computed once here, on the ORT CPU) over ``dataset.feeds()``."""
    runner = open_runner(model, "cpu")
    try:
        refs = np.concatenate([next(iter(runner(f).values())) for f in as_dataset(dataset).feeds()])
    finally:
        runner.close()

    def agreement_with_f32(run: Callable, data: Any) -> float:
        outs = [next(iter(run(f).values())) for f in as_dataset(data).feeds()]
        return agreement(np.concatenate(outs), refs)

    return agreement_with_f32


def with_records(study: Study, records: Iterable[Record]) -> Study:
    """A copy of ``study`` holding ``records`` (e.g. filtered to one device)."""
    return replace(study, records=tuple(records))


__all__ = [
    "VARIANTS",
    "Build",
    "Record",
    "Study",
    "Timing",
    "agreement_validation",
    "build_variants",
    "clear_cache",
    "explore",
    "measure_device",
    "pareto_front",
]
