"""Explore: sweep precision variants × execution hints × devices (× batch) into a :class:`Study`.

Each variant is built once (cached by content: model bytes, options, the code of a custom
variant function), then measured on every device: one record per *distinct setting* — hints
a backend resolves to the same settings are measured once and listed together in
``Record.hints``. Accuracy comes from the user's ``validation_fn`` (per-item scores give a
confidence interval); latency from sessions kept open across interleaved rounds after a
warm-up that runs until times settle (see ``docs/measurement.md``). A variant that fails to
build or run becomes a record carrying the error — never a crash, never a stand-in model. With
a Dask ``client`` the (variant, device) jobs run on the cluster's workers, on a worker that has
the device, one timing phase per host at a time.

Big models are swept *light* (weights on disk, read by the runtime; Python holds none): a
file with external data is used in place, a proto or inline file of ``model.STAGE_BYTES`` or
more is written once to a work folder, and every variant built from them is staged there as
external data (:class:`LightModel`). Workers get a model as its light header plus the bytes of
its data files, stage it once each, and drop the scattered copy before measuring.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import inspect
import mmap
import os
import pickle
import shutil
import tempfile
import threading
import time
import types
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from . import statistics
from .data import Dataset, as_dataset
from .errors import InputError, OperationCancelled, WorkbenchError
from .hardware.estimate import LatencyEstimate, estimate_for_device
from .hardware.execution import open_runner
from .hardware.registry import resolve_device
from .hostinfo import host_info, host_name
from .metrics import agreement
from .model import (
    check_external_data,
    complete_model,
    external_files,
    load_light,
    load_model,
    model_digest,
    model_nbytes,
    stage_model,
    total_nbytes,
    worth_staging,
)
from .precision.accuracy_control import quantize_with_accuracy_control
from .precision.float16 import convert_float16
from .precision.int8 import quantize_int8
from .precision.mixed import auto_mixed_precision
from .progress import check_cancelled, quiet, task
from .recommendation import ParetoFront, Recommendation, pareto_front, recommend
from .results import Result, html_table
from .runtime import (
    RunConfig,
    Runner,
    call_validation,
    prepare_dataset,
    real_devices,
    throughput_windows,
    timed_runs,
    warm_up,
)
from .runtime.hints import Hint, PrecisionWarning, as_hint, requested_precision

VARIANTS = ("f32", "f16", "bf16", "mixed", "int8", "int8-ac")
DEFAULT_HINTS = ("performance", "accuracy")

#: a custom variant: (name, function model -> model or result with ``.model``)
VariantSpec = str | tuple[str, Callable[[onnx.ModelProto], Any]]


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Record(Result):
    """One measured setting: (variant, device, hints resolving to one backend setting, batch).

    ``hint`` is the first of ``hints`` (every hint label measured by this record). ``error`` is
    set when it could not be built or run. Latency is the median over pooled per-run times
    (``times_ms``) with a 95% interval ``latency_ci_ms``; ``accuracy`` is the metric, with
    ``accuracy_ci`` when the validation function gave per-item ``scores``; ``throughput`` is
    items per second (OpenVINO THROUGHPUT: its async queue; otherwise ``batch`` / latency).
    ``host`` says where it was measured (see :func:`workbench.hostinfo.host_info`).
    """

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
    hints: tuple[str, ...] = ()
    accuracy_ci: tuple[float, float] | None = None
    scores: tuple[float, ...] = field(default=(), repr=False)
    latency_ci_ms: tuple[float, float] | None = None
    times_ms: tuple[float, ...] = field(default=(), repr=False)
    throughput: float | None = None
    throughput_ci: tuple[float, float] | None = None
    batch: int = 1
    performance_mode: str | None = None
    estimated: bool = False
    host: dict[str, Any] = field(default_factory=dict, compare=True)

    _summary_exclude = ("times_ms", "scores")

    def __post_init__(self) -> None:
        if not self.hints:  # records built by hand name one hint
            object.__setattr__(self, "hints", (self.hint,))

    @property
    def ok(self) -> bool:
        """Measured without error (has an accuracy and a latency)."""
        return self.error is None and self.accuracy is not None and self.latency_ms is not None

    @property
    def honoured(self) -> bool:
        """Did the precision that ran match the request (``default`` requests anything)?"""
        return self.precision_requested in ("", "default", self.precision_ran)

    @property
    def label(self) -> str:
        """``variant on device [hints]`` (plus the batch when not 1), for tables and reasons."""
        text = f"{self.variant} on {self.device} [{', '.join(self.hints)}]"
        return text + (f" batch {self.batch}" if self.batch != 1 else "")


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
    """Records of a sweep. ``pareto()``, ``merge()``, ``to_dataframe()``, ``save``/``load``."""

    records: tuple[Record, ...]
    model_name: str = ""
    model_hash: str = ""
    variants: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    builds: tuple[Build, ...] = ()
    seconds: float = 0.0
    environment: dict[str, str] = field(default_factory=dict)

    def pareto(self, hint: str | None = None, device: str | None = None) -> ParetoFront:
        """Records no other record beats on accuracy and latency — significantly on one, at
        least as good on the other — with ties grouped (``.groups``, ``.mark(r)``).

        Optionally restricted to records measuring one hint label or on one device; sorted by
        latency. See :func:`workbench.recommendation.pareto_front`.
        """
        label = None if hint is None else as_hint(hint).label
        pool = [
            r
            for r in self.records
            if (label is None or label in r.hints) and (device is None or r.device == device)
        ]
        return pareto_front(pool)

    def recommend(
        self,
        max_drop: float = 0.01,
        drop_type: str = "absolute",
        device: str | None = None,
        **options: Any,
    ) -> Recommendation:
        """The fastest setting whose accuracy drop from f32 is within ``max_drop``, its ties,
        and one reason for every other record (:func:`workbench.recommendation.recommend`)."""
        return recommend(self.records, max_drop, drop_type, device, **options)

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

    @classmethod
    def merge(cls, *studies: Study) -> Study:
        """One study from several sweeps of the same model (other runs, machines, workers).

        Records are kept side by side (each says its ``host``); variants, hints and devices
        are the ordered union; builds are deduplicated. Raises InputError for different models.
        """
        if len(studies) == 1 and not isinstance(studies[0], Study):
            studies = tuple(studies[0])  # merge([a, b]) as well as merge(a, b)
        if not studies or not all(isinstance(s, Study) for s in studies):
            raise InputError("Study.merge needs one or more Study objects")
        hashes = {s.model_hash for s in studies if s.model_hash}
        if len(hashes) > 1:
            names = ", ".join(f"{s.model_name or 'model'} ({s.model_hash})" for s in studies)
            raise InputError(
                f"cannot merge studies of different models: {names}; merge sweeps of one model"
            )
        first = studies[0]
        return cls(
            records=tuple(r for s in studies for r in s.records),
            model_name=next((s.model_name for s in studies if s.model_name), ""),
            model_hash=next(iter(hashes), ""),
            variants=_union(s.variants for s in studies),
            hints=_union(s.hints for s in studies),
            devices=_union(s.devices for s in studies),
            builds=tuple(dict.fromkeys(b for s in studies for b in s.builds)),
            seconds=sum(s.seconds for s in studies),
            environment=dict(first.environment),
        )

    def hosts(self) -> tuple[str, ...]:
        """Host names the records were measured on, in order of first appearance."""
        return _union([tuple(str(r.host.get("name", "")) for r in self.records if r.host)])

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
        """One display row per record: Pareto mark (★ alone, ≈k tied group k), requested≠ran
        warning, 95% intervals."""
        front = self.pareto()
        batches = any(r.batch != 1 for r in self.records)
        hosts = len(self.hosts()) > 1
        rows = []
        for r in self.records:
            ran = r.precision_ran if r.honoured else f"⚠ {r.precision_ran}"
            row: dict[str, Any] = {
                "pareto": front.mark(r),
                "variant": r.variant,
                "device": f"{r.device} (simulated)" if r.simulated else r.device,
                "hint": ", ".join(r.hints),
                "requested": r.precision_requested,
                "ran": ran if r.precision_ran else "",
                "accuracy": r.accuracy,
                "accuracy 95% CI": _interval(r.accuracy_ci),
                "latency ms": r.latency_ms,
                "latency 95% CI": _interval(r.latency_ci_ms),
                "items/s": r.throughput,
                "KiB": None if r.model_bytes is None else round(r.model_bytes / 1024, 1),
                "build s": r.build_seconds,
                "error / notes": r.error or "; ".join(r.notes),
            }
            if batches:
                row["batch"] = r.batch
            if hosts:
                row["host"] = r.host.get("name", "")
            rows.append(row)
        return rows

    def _repr_html_(self) -> str:
        title = (
            f"Study of {self.model_name or 'model'}: {len(self.records)} records, "
            f"{len(self.pareto())} on the Pareto front (★; ≈k: tied within noise), "
            "⚠ = precision requested ≠ ran"
        )
        return html_table(self.table_rows(), title=title)

    def __repr__(self) -> str:
        ok = sum(r.ok for r in self.records)
        return (
            f"Study({self.model_name or 'model'}: {len(self.records)} records, {ok} measured, "
            f"{len(self.records) - ok} errors, {self.seconds:.1f} s)"
        )


def _interval(ci: tuple[float, float] | None) -> str | None:
    return None if ci is None else f"{ci[0]:.4g}–{ci[1]:.4g}"


def _union(groups: Iterable[Iterable[str]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(x for g in groups for x in g if x))


# ----------------------------------------------------------------------------- light models


@dataclass(frozen=True)
class LightModel:
    """A model whose weights stay on disk: ``proto`` holds the structure and small tensors,
    its big tensors reference files in ``folder`` (:func:`workbench.model.stage_model`).
    Runners open it with ``RunConfig(model_dir=folder)``: the runtime reads the weights, Python
    never holds them. ``nbytes``: the complete model's size."""

    proto: onnx.ModelProto
    folder: str
    nbytes: int


#: what a sweep measures: a complete proto, its serialization, or a light model
ModelRef = onnx.ModelProto | bytes | LightModel


class _Source:
    """The model a sweep starts from. A file with external data is used in place, light; a
    proto or inline file of :data:`workbench.model.STAGE_BYTES` or more is written once to the
    work folder and used light from there; anything smaller is a complete proto in memory,
    exactly as before. Light sources give the built-in passes their file (they read it
    memory-mapped) and stage every built variant to the work folder as external data."""

    def __init__(self, model: onnx.ModelProto | str | os.PathLike[str], stack: Any):
        self._stack = stack
        self._work: str | None = None
        self._full: onnx.ModelProto | None = None
        self.folder: str | None = None
        self.path: str | None = None
        if isinstance(model, onnx.ModelProto):
            if not worth_staging(model):
                self.proto = load_model(model)
                return
            self._stage_source(model)
            return
        proto, folder = load_light(model)
        if folder is None and worth_staging(proto):
            self._stage_source(proto)  # inline weights, loaded once: streamed out
            return
        self.proto, self.folder = proto, folder
        self.path = None if folder is None else str(model)

    def _stage_source(self, model: onnx.ModelProto) -> None:
        path = self.stage_path("source")
        self.proto = stage_model(model, path)
        self.folder, self.path = os.path.dirname(path), path

    @property
    def light(self) -> bool:
        return self.folder is not None

    def stage_path(self, name: str) -> str:
        """A fresh ``<work>/<n>-<name>/model.onnx`` (one folder per staged model)."""
        if self._work is None:
            self._work = self._stack.enter_context(
                tempfile.TemporaryDirectory(prefix="wb-explore-")
            )
        folder = os.path.join(self._work, f"{len(os.listdir(self._work))}-{name}")
        os.makedirs(folder)
        return os.path.join(folder, "model.onnx")

    @property
    def nbytes(self) -> int:
        """The complete model's size (:func:`workbench.model.model_nbytes` of it)."""
        return total_nbytes(self.proto)

    def pass_input(self, spec: VariantSpec) -> onnx.ModelProto | str:
        """What a pass gets: the proto; for a light source the file (built-in passes) or the
        complete proto, loaded once (custom functions take a proto)."""
        if not self.light:
            return self.proto
        if isinstance(spec, str):
            return self.path  # type: ignore[return-value]
        if self._full is None:
            self._full = load_model(self.path)  # type: ignore[arg-type]
        return self._full

    def release(self) -> None:
        """Drop the complete proto loaded for custom functions (builds are done)."""
        self._full = None

    def model(self) -> ModelRef:
        """The source as measured: the proto, or light from its folder."""
        if not self.light:
            return self.proto
        return LightModel(self.proto, str(self.folder), self.nbytes)

    def keep(self, built: onnx.ModelProto) -> ModelRef:
        """A built variant as measured: itself, or (light source) staged to the work folder."""
        if not self.light:
            return built
        path = self.stage_path("variant")
        nbytes = model_nbytes(built)
        return LightModel(stage_model(built, path), os.path.dirname(path), nbytes)

    def digest(self) -> str:
        """Content hash (:func:`workbench.model.model_digest`): the same value whether the
        weights are in memory or read from the files of a light source."""
        return model_digest(self.proto, self.folder)


def _unpack(model: ModelRef) -> tuple[onnx.ModelProto, str | None]:
    """(proto, folder of its external data or None) of a model as measured."""
    if isinstance(model, LightModel):
        return model.proto, model.folder
    if isinstance(model, onnx.ModelProto):
        return model, None
    return onnx.load_from_string(model), None


# ----------------------------------------------------------------------------- variant cache


class VariantCache:
    """Built variants (serialized) keyed by content, least recently used dropped first once
    the bytes held exceed ``max_bytes``. Thread-safe: sweeps in several threads share it."""

    def __init__(self, max_bytes: int = 256 << 20):
        self.max_bytes = max_bytes
        self._items: collections.OrderedDict[str, tuple[bytes, float, tuple[str, ...]]] = (
            collections.OrderedDict()
        )
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bytes, float, tuple[str, ...]] | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: str, data: bytes, seconds: float, notes: tuple[str, ...]) -> None:
        if len(data) > self.max_bytes:
            return  # bigger than the whole budget: rebuilding beats holding it
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes -= len(old[0]) if old else 0
            self._items[key] = (data, seconds, notes)
            self._bytes += len(data)
            while self._bytes > self.max_bytes:
                _, (evicted, _, _) = self._items.popitem(last=False)
                self._bytes -= len(evicted)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes of serialized models held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)


#: the process's variant cache (bounded in bytes; ``clear_cache()`` empties it)
CACHE = VariantCache()


def clear_cache() -> None:
    """Forget every variant built so far (the next explore rebuilds them)."""
    CACHE.clear()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fingerprint(dataset: Any) -> str | None:
    """Content hash of a dataset (items and feeds) so cached variants follow the data; None
    when the items cannot be serialized (then nothing is cached: never keyed by identity)."""
    h = hashlib.sha256()
    try:
        h.update(pickle.dumps(list(dataset), protocol=4))
    except Exception:
        return None
    if isinstance(dataset, Dataset):
        for feeds in dataset.feeds():
            for k in sorted(feeds):
                h.update(k.encode())
                h.update(np.ascontiguousarray(feeds[k]).tobytes())
    return h.hexdigest()[:16]


def code_fingerprint(fn: Any) -> str | None:
    """Hash of what a function computes: its bytecode, constants, defaults, closure values and
    the functions and plain constants it names from its module (a redefined notebook function
    gets a new fingerprint). None when the callable cannot be fingerprinted (no cache then)."""
    h = hashlib.sha256()
    try:
        if not _feed_callable(h, fn, depth=0):
            return None
    except Exception:  # an exotic callable: not cached rather than wrongly cached
        return None
    return h.hexdigest()[:24]


_PLAIN = (int, float, str, bytes, bool, type(None), tuple, frozenset)


def _feed_callable(h: Any, fn: Any, depth: int) -> bool:
    if depth > 3:
        return True  # deep helpers: their names (fed by the caller) stand for them
    if isinstance(fn, functools.partial):
        h.update(pickle.dumps((fn.args, sorted(fn.keywords.items())), protocol=4))
        return _feed_callable(h, fn.func, depth + 1)
    if inspect.ismethod(fn):
        h.update(pickle.dumps(fn.__self__, protocol=4))
        return _feed_callable(h, fn.__func__, depth + 1)
    if not isinstance(fn, types.FunctionType):
        call = vars(type(fn)).get("__call__")
        if not isinstance(call, types.FunctionType):
            return False  # builtins, C extensions: nothing stable to hash
        h.update(pickle.dumps(fn, protocol=4))  # the instance's state
        return _feed_callable(h, call, depth + 1)
    h.update(f"{fn.__module__}.{fn.__qualname__}".encode())
    _feed_code(h, fn.__code__)
    h.update(pickle.dumps((fn.__defaults__, fn.__kwdefaults__), protocol=4))
    for cell in fn.__closure__ or ():
        value = cell.cell_contents
        if callable(value) and not isinstance(value, type):
            if not _feed_callable(h, value, depth + 1):
                return False
        else:
            h.update(pickle.dumps(value, protocol=4))
    for name in _global_names(fn.__code__):
        value = fn.__globals__.get(name)
        if isinstance(value, types.FunctionType) and value is not fn:
            _feed_callable(h, value, depth + 1)
        elif isinstance(value, _PLAIN):
            h.update(repr((name, value)).encode())
    return True


def _feed_code(h: Any, code: types.CodeType) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const)
        else:
            h.update(repr(const).encode())


def _global_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _global_names(const)


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
    data_fp: Callable[[], str | None],
    calib_fp: Callable[[], str | None],
    validation_fn: Any,
    max_drop: float,
) -> str | None:
    """Content key of a variant: model bytes, pass, options, data and code it depends on."""
    if spec == "f32":
        return None  # the model itself: nothing to build or keep
    if isinstance(spec, str):
        name, fn_id = spec, ""
    else:
        name, fn_id = spec[0], code_fingerprint(spec[1])
        if fn_id is None:
            return None
    parts: list[str | None] = [model_hash, name, fn_id]
    if name in ("int8", "int8-ac"):
        parts.append(calib_fp())
    if name in ("mixed", "int8-ac"):
        parts += [data_fp(), code_fingerprint(validation_fn), repr(float(max_drop))]
    if any(p is None for p in parts):
        return None  # something it depends on has no content hash: build, don't cache
    return _digest("|".join(str(p) for p in parts).encode())


def build_variants(
    model: onnx.ModelProto | _Source,
    variants: Sequence[VariantSpec],
    dataset: Dataset,
    validation_fn: Callable,
    calibration: Dataset,
    max_drop: float = 0.01,
    model_hash: str | None = None,
) -> tuple[dict[str, ModelRef], tuple[Build, ...]]:
    """Build (or fetch from the cache) every variant; failures become Builds with an error.

    ``model``: a proto (variants are protos), or explore's source (a light source gives
    :class:`LightModel` variants staged in its work folder).
    """
    src = model if isinstance(model, _Source) else None
    if model_hash is None:
        model_hash = src.digest() if src is not None else model_digest(model)  # type: ignore[arg-type]
    memo: dict[str, str | None] = {}

    def lazy(key: str, ds: Dataset) -> Callable[[], str | None]:
        return lambda: memo.setdefault(key, _fingerprint(ds))

    models: dict[str, ModelRef] = {}
    builds = []
    with task("explore: build variants", total=len(variants)) as t:
        for spec in variants:
            name = spec if isinstance(spec, str) else spec[0]
            key = _cache_key(
                spec, model_hash, lazy("data", dataset), lazy("calib", calibration),
                validation_fn, max_drop,
            )  # fmt: skip
            built, build = _build_one(spec, name, key, model, dataset, validation_fn,
                                      calibration, max_drop)  # fmt: skip
            if built is not None:
                models[name] = built
            builds.append(build)
            t.update(postfix=name + (" (cached)" if build.cached else "") +
                     (" failed" if build.error else ""))  # fmt: skip
    if src is not None:
        src.release()
    return models, tuple(builds)


def _build_one(
    spec: VariantSpec,
    name: str,
    key: str | None,
    model: onnx.ModelProto | _Source,
    dataset: Dataset,
    validation_fn: Callable,
    calibration: Dataset,
    max_drop: float,
) -> tuple[ModelRef | None, Build]:
    """One variant from the cache, or built now (and cached); a failure is a Build with error.

    The cache holds serialized variants up to its byte budget; bigger ones are never
    serialized. A light source's variants are staged to its work folder (weights on disk)."""
    src = model if isinstance(model, _Source) else None
    keep = src.keep if src is not None else (lambda m: m)
    hit = CACHE.get(key) if key is not None else None
    if hit is not None:
        data, seconds, notes = hit
        return keep(onnx.load_from_string(data)), Build(name, seconds, len(data), True, None, notes)
    t0 = time.perf_counter()
    if src is not None and src.light and spec == "f32":  # the source itself, from its files
        return src.model(), Build(name, time.perf_counter() - t0, src.nbytes, False, None, ())
    try:
        given = src.pass_input(spec) if src is not None else model
        built, notes = _build_variant(spec, given, dataset, validation_fn, calibration, max_drop)  # type: ignore[arg-type]
        del given
    except OperationCancelled:
        raise
    except Exception as e:  # any pass failure is data for the study, not a crash
        return None, Build(name, time.perf_counter() - t0, None, False, _error_text(name, e))
    seconds = time.perf_counter() - t0
    size = model_nbytes(built)
    if size > CACHE.max_bytes:  # would not be kept: don't hold a serialized copy (or fail > 2 GB)
        return keep(built), Build(name, seconds, size, False, None, notes)
    data = built.SerializeToString()
    if key is not None:
        CACHE.put(key, data, seconds, notes)
    return keep(built), Build(name, seconds, len(data), False, None, notes)


# ----------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Timing:
    """How latency is measured (``docs/measurement.md``, "Protocol"): per (variant, setting,
    batch), a warm-up until times settle, then ``rounds`` interleaved rounds of ``min_time /
    rounds`` seconds on the same open session, each starting with ``warmup`` untimed runs;
    per-run times pooled over the rounds. ``items`` feeds are cycled."""

    min_time: float = 0.6
    rounds: int = 5
    warmup: int = 3
    items: int = 8
    threads: int | None = None  # intra-op threads for every backend (None: their defaults)
    batch_sizes: tuple[int, ...] = (1,)

    @property
    def run_config(self) -> RunConfig:
        """Sessions of a sweep: same threads everywhere; the study reports requested vs ran
        per record (and explore warns once at the end), so runners stay silent."""
        return RunConfig(threads=self.threads, warn=False)


#: one timing phase at a time in this process (Dask workers use a lock per host instead)
_LOCAL_TIMING = threading.Lock()


@dataclass(eq=False)
class _Setting:
    """A distinct backend setting of one variant on one device, while it is being measured."""

    variant: str
    hints: list[Hint]
    runner: Runner | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # Record fields read off the runner
    accuracy: float | None = None
    scores: tuple[float, ...] = ()
    prepared: dict[int, list[Any]] = field(default_factory=dict)
    times: dict[int, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    rates: dict[int, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    failed: dict[int, str] = field(default_factory=dict)
    model: onnx.ModelProto | None = None  # kept for roofline estimates (simulated devices)
    estimates: dict[int, LatencyEstimate] = field(default_factory=dict)

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
            self.runner = None


def measure_device(
    models: dict[str, ModelRef],
    builds: dict[str, Build],
    device: Any,
    hints: Sequence[Hint],
    dataset: Any,
    validation_fn: Callable,
    timing: Timing,
    step: Callable[[str], None] | None = None,
    timing_lock: Any = None,
) -> list[Record]:
    """Measure every (variant, distinct setting, batch) of ``models`` on one device.

    Hints giving a backend identical settings (every hint on ONNX Runtime, which runs the
    model as stored; OpenVINO hints compiling to equal properties) share one session, one
    accuracy evaluation and one timing, and one record listing them all. Accuracy runs first
    (in parallel with other jobs); the timing phase holds ``timing_lock`` (default: one per
    process) and interleaves the variants round by round so drift hits all of them alike.
    """
    dev = resolve_device(device)
    step = step or (lambda label: None)
    settings: list[_Setting] = []
    try:
        for variant, model in models.items():
            proto, folder = _unpack(model)
            settings += _open_settings(variant, proto, dev, hints, timing.run_config, folder)
        for s in settings:
            _evaluate(s, validation_fn, dataset)
            step(f"{s.variant}/{s.hints[0].label} accuracy")
            for h in s.hints[1:]:
                step(f"{s.variant}/{h.label} (same settings)")
        bench = list(_take(as_dataset(dataset).feeds(), timing.items))
        with timing_lock if timing_lock is not None else _LOCAL_TIMING:
            _time_settings(settings, bench, timing, step)
    finally:
        for s in settings:
            s.close()
    return [r for s in settings for r in _records(s, builds.get(s.variant), dev, timing)]


def _open_settings(
    variant: str,
    proto: onnx.ModelProto,
    dev: Any,
    hints: Sequence[Hint],
    config: RunConfig,
    folder: str | None = None,
) -> list[_Setting]:
    """One open runner per distinct setting of ``variant``; duplicate hints join a setting.

    A light ``proto`` (weights in ``folder``) is opened with the runtime reading its weights
    from there; simulated profiles convert the model themselves and get it complete."""
    if folder is not None:
        if dev.simulated:
            proto = complete_model(proto, folder)
        else:
            config = config.reading(folder)
    out: list[_Setting] = []
    by_key: dict[Any, _Setting] = {}
    for h in hints:
        if dev.backend == "ort" and by_key:
            # ORT sessions do not depend on the hint (OrtRunner.config): the first session is
            # every hint's setting, no second session (twice the model's memory) to find that
            s = next(iter(by_key.values()))
            _join(s, h, requested_precision(h), s.info["precision_ran"], dev.backend)
            continue
        try:
            runner = open_runner(proto, dev, h, config=config)
        except OperationCancelled:
            raise
        except Exception as e:
            # hints failing alike (e.g. an op the backend cannot compile) share one record
            error = _error_text(variant, e)
            same = next((x for x in out if x.runner is None and x.error == error), None)
            if same is not None:
                same.hints.append(h)
            else:
                out.append(_Setting(variant, [h], error=error, info=_device_info(dev)))
            continue
        key = _setting_key(runner)
        if key in by_key:
            _join(by_key[key], h, runner.precision_requested, runner.precision_ran, dev.backend)
            runner.close()
            continue
        s = _Setting(variant, [h], runner, notes=list(runner.notes), info=_runner_info(runner))
        s.model = proto if dev.simulated else None
        by_key[key] = s
        out.append(s)
    return out


def _device_info(dev: Any) -> dict[str, Any]:
    return dict(simulated=bool(dev.simulated))


def _runner_info(runner: Runner) -> dict[str, Any]:
    return dict(
        precision_requested=runner.precision_requested,
        precision_ran=runner.precision_ran,
        simulated=bool(runner.device.simulated),
        estimated=bool(getattr(runner, "estimated", False)),
        performance_mode=getattr(runner, "performance_mode", None),
    )


def _setting_key(runner: Runner) -> Any:
    """What makes two runners compute the same thing at the same speed: the backend's own
    settings (``runner.config``) and the precision that ran. Simulated devices convert the
    model per hint, so each of their hints is its own setting."""
    config = getattr(runner, "config", None)
    if config is None or runner.device.simulated:
        return ("hint", runner.hint.label)
    return (config, runner.precision_ran)


def _join(s: _Setting, h: Hint, requested: str, ran: str, backend: str) -> None:
    """Add hint ``h`` (asking for precision ``requested``; ``ran`` ran) to setting ``s``."""
    s.hints.append(h)
    if requested not in ("default", ran):
        s.notes.append(
            f"hint {h.label}: requested {requested}, ran "
            f"{ran} (same {backend} settings as {s.hints[0].label}; not honoured)"
        )
    else:
        s.notes.append(f"hint {h.label}: same {backend} settings as {s.hints[0].label}")


def _evaluate(s: _Setting, validation_fn: Callable, dataset: Any) -> None:
    if s.runner is None:
        return
    try:
        s.accuracy, s.scores = call_validation(validation_fn, s.runner, dataset, with_scores=True)
    except OperationCancelled:
        raise
    except Exception as e:
        s.error = _error_text(s.variant, e)
        s.close()


def _batched(items: list[dict[str, np.ndarray]], batch: int) -> list[dict[str, np.ndarray]]:
    """Feeds of ``batch`` items each (items concatenated on axis 0, cycled to fill a batch)."""
    if batch == 1:
        return items
    out = []
    for g in range(max(1, len(items) // batch)):
        chunk = [items[(g * batch + j) % len(items)] for j in range(batch)]
        out.append({k: np.concatenate([c[k] for c in chunk], axis=0) for k in chunk[0]})
    return out


def _time_settings(
    settings: list[_Setting],
    bench: list[dict[str, np.ndarray]],
    timing: Timing,
    step: Callable[[str], None],
) -> None:
    """Warm up every (setting, batch) until settled, then interleaved rounds on the same
    sessions; per-run times (and async throughput windows) pooled per (setting, batch).
    Simulated devices are not timed (the CPU's speed says nothing about them): their
    latency is a roofline estimate, labelled ``estimated``."""
    for s in settings:
        if s.model is not None and s.runner is not None:
            for b in timing.batch_sizes:
                _guard(s, b, lambda s=s, b=b: _estimate(s, b, bench))
    live = [s for s in settings if s.runner is not None and s.model is None]
    for s in live:
        for b in timing.batch_sizes:
            _guard(s, b, lambda s=s, b=b: _prepare_batch(s, b, bench, timing.warmup))
    rounds = max(timing.rounds, 1)
    per_round = max(timing.min_time / rounds, 1e-3)
    variants = list(dict.fromkeys(s.variant for s in settings))
    for i in range(rounds):
        for variant in variants:
            for s in live:
                if s.variant != variant:
                    continue
                for b in list(s.prepared):
                    check_cancelled()
                    _guard(s, b, lambda s=s, b=b: _time_round(s, b, per_round, timing.warmup))
            step(f"{variant} timing {i + 1}/{rounds}")


def _guard(s: _Setting, batch: int, work: Callable[[], None]) -> None:
    """Run one timing step; a failure marks this (setting, batch) failed, not the sweep."""
    if s.runner is None or batch in s.failed:
        return
    try:
        with quiet():
            work()
    except OperationCancelled:
        raise
    except Exception as e:
        s.failed[batch] = f"batch {batch}: {_error_text(s.variant, e)}"
        s.prepared.pop(batch, None)


def _prepare_batch(
    s: _Setting, batch: int, bench: list[dict[str, np.ndarray]], warmup: int
) -> None:
    prepared, _ = prepare_dataset(s.runner, Dataset(_batched(bench, batch)))
    warm_up(s.runner, prepared, warmup)
    s.prepared[batch] = prepared


def _estimate(s: _Setting, batch: int, bench: list[dict[str, np.ndarray]]) -> None:
    est = estimate_for_device(s.model, s.runner.device, s.hints[0], _batched(bench, batch))
    if not np.isfinite(est.latency_ms) or est.latency_ms <= 0:
        raise WorkbenchError(f"no roofline estimate for {s.runner.device.name}: {est.notes}")
    s.estimates[batch] = est


def _time_round(s: _Setting, batch: int, seconds: float, warmup: int) -> None:
    prepared = s.prepared[batch]
    timed_runs(s.runner, prepared, runs=warmup)  # re-prime caches after the other sessions ran
    s.times[batch] += [t * 1e3 for t in timed_runs(s.runner, prepared, min_time=seconds)]
    rates = throughput_windows(s.runner, prepared, seconds)
    if rates is not None:
        s.rates[batch] += [r * batch for r in rates]


def _take(it: Iterable[Any], n: int) -> Iterable[Any]:
    for i, x in enumerate(it):
        if i >= n:
            return
        yield x


def _records(s: _Setting, build: Build | None, dev: Any, timing: Timing) -> list[Record]:
    """The records of one setting: one per batch size (one error record if it never ran)."""
    base = dict(
        variant=s.variant,
        device=dev.name,
        hint=s.hints[0].label,
        hints=tuple(h.label for h in s.hints),
        model_bytes=build.model_bytes if build else None,
        build_seconds=build.seconds if build else None,
        notes=tuple((build.notes if build else ()) + tuple(s.notes)),
        host=host_info(),
        **s.info,
    )
    if s.accuracy is None:
        return [Record(**base, error=s.error or "not measured")]
    acc = dict(
        accuracy=s.accuracy,
        scores=s.scores,
        accuracy_ci=statistics.mean_ci(s.scores) if len(s.scores) > 1 else None,
    )
    out = []
    for b in timing.batch_sizes:
        if b in s.estimates:
            est = s.estimates[b]
            out.append(Record(**{**base, "estimated": True, "notes": base["notes"] + est.notes},
                              **acc, **_estimated_speed(est.latency_ms, b), batch=b))  # fmt: skip
        elif b in s.failed or not s.times.get(b):
            error = s.failed.get(b) or s.error or "not timed"
            out.append(Record(**base, **acc, batch=b, error=error))
        else:
            out.append(Record(**base, **acc, **_speed(s.times[b], s.rates.get(b), b), batch=b))
    return out


def _estimated_speed(ms: float, batch: int) -> dict[str, Any]:
    """An estimate has no spread: p10 = p90 = the estimate, no interval, no runs."""
    return dict(latency_ms=ms, p10_ms=ms, p90_ms=ms, throughput=batch * 1e3 / ms)


def _speed(times_ms: list[float], rates: list[float] | None, batch: int) -> dict[str, Any]:
    """Latency median, p10/p90 and 95% CI of pooled runs; throughput with its CI."""
    ms = np.asarray(times_ms)
    median = float(np.median(ms))
    lo, hi = statistics.median_ci(ms, confidence=0.95, seed=0)
    if rates:
        throughput = float(np.median(rates))
        t_ci = tuple(float(x) for x in statistics.median_ci(np.asarray(rates), 0.95, seed=0))
    else:  # one request at a time: items per second follow from the latency
        throughput = batch * 1e3 / median
        t_ci = (batch * 1e3 / hi, batch * 1e3 / lo) if lo > 0 else None
    return dict(
        latency_ms=median,
        p10_ms=float(np.percentile(ms, 10)),
        p90_ms=float(np.percentile(ms, 90)),
        latency_ci_ms=(float(lo), float(hi)),
        runs=len(ms),
        times_ms=tuple(float(t) for t in ms),
        throughput=throughput,
        throughput_ci=t_ci,
    )


# ----------------------------------------------------------------------------- distributed


def device_resource(device: Any) -> str:
    """The Dask worker resource a device needs: its name; ``cpu`` for simulated profiles
    (they execute on the ONNX Runtime CPU)."""
    return "cpu" if device.simulated else device.name


def worker_resources() -> dict[str, float]:
    """Resources a Dask worker on this machine should advertise: one per real device, e.g.
    ``{"cpu": 1, "openvino:CPU": 1}`` (``dask worker ... --resources "cpu=1 openvino:CPU=1"``)."""
    return {d.name: 1 for d in real_devices()}


@contextlib.contextmanager
def _host_timing_lock() -> Iterator[None]:
    """On a Dask worker: a cluster-wide lock named after this host, so timing phases of the
    workers sharing a machine never overlap. Elsewhere: the process's own timing lock."""
    try:
        from distributed import Lock, get_worker

        get_worker()
    except (ImportError, ValueError):  # not on a worker
        with _LOCAL_TIMING:
            yield
        return
    with Lock(f"workbench-timing-{host_name()}"):
        yield


@dataclass(frozen=True)
class _Payload:
    """A model as scattered to Dask workers, whatever its size: the serialized proto (light:
    without its external data) and the external-data files it references, location → bytes
    (numpy arrays: sent as out-of-band buffers, never a > 2 GB protobuf). ``files`` is empty
    for a complete proto."""

    header: bytes
    files: dict[str, np.ndarray]


def _payload(model: ModelRef) -> _Payload:
    """The scattered form of a model as measured; a light model's files are memory-mapped
    (their pages are read as they are sent, not copied into this process)."""
    proto, folder = _unpack(model)
    files: dict[str, np.ndarray] = {}
    if folder is not None:
        for location in external_files(proto):
            with open(os.path.join(folder, location), "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                files[location] = (
                    np.frombuffer(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ), np.uint8)
                    if size
                    else np.empty(0, np.uint8)
                )
    return _Payload(proto.SerializeToString(), files)


def _unpack_payload(payload: _Payload, folder: str) -> ModelRef:
    """A worker's copy of a scattered model: the proto, or a light model whose files are
    written to ``folder``."""
    if not payload.files:
        return payload.header
    root = Path(folder).resolve()
    for location, data in payload.files.items():
        target = (root / location).resolve()
        if os.path.isabs(location) or root not in target.parents:
            raise WorkbenchError(f"external data location {location!r} leaves the work folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as fh:
            fh.write(memoryview(data))
    proto = onnx.load_from_string(payload.header)
    check_external_data(proto, root)
    return LightModel(proto, str(root), sum(d.nbytes for d in payload.files.values()))


#: models staged on this (worker) process: token → (model, work folder or None)
_STAGED: dict[str, tuple[ModelRef, str | None]] = {}
_STAGED_LOCK = threading.Lock()


def _stage_payload(payload: _Payload, token: str) -> None:
    """A Dask task pinned to one worker: keep its copy of a scattered model under ``token``
    (a light model's files written to a work folder there) so the scattered payload can be
    released before any job runs: a worker then holds the model once, in its runtime."""
    folder = tempfile.mkdtemp(prefix="wb-worker-") if payload.files else None
    try:
        model = _unpack_payload(payload, folder) if folder else payload.header
    except BaseException:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    with _STAGED_LOCK:
        _STAGED[token] = (model, folder)


def _unstage(tokens: Sequence[str]) -> None:
    """Forget the models staged under ``tokens`` on this worker and remove their folders."""
    for token in tokens:
        with _STAGED_LOCK:
            _, folder = _STAGED.pop(token, (None, None))
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


def _measure_job(
    variant: str,
    token: str,
    build: Build,
    device: Any,
    hints: Sequence[Hint],
    dataset: Any,
    validation_fn: Callable,
    timing: Timing,
) -> list[Record]:
    """A Dask task: one (variant, device) of the model staged under ``token`` on this worker;
    accuracy free-running, timing under the host lock."""
    with _STAGED_LOCK:
        staged = _STAGED.get(token)
    if staged is None:  # e.g. a worker that joined after the model was staged
        error = f"variant {variant!r} was not staged on this Dask worker (joined during the sweep?)"
        return _error_records(variant, replace(build, error=error), [device], hints)
    with quiet():
        return measure_device(
            {variant: staged[0]}, {variant: build}, device, hints, dataset, validation_fn, timing,
            timing_lock=_host_timing_lock(),
        )  # fmt: skip


def _placement(client: Any, devs: Sequence[Any]) -> dict[str, dict[str, float] | str | None]:
    """Per device: the resources its jobs need, None (workers advertise nothing: run
    anywhere), or the reason no worker can run it."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {}).values()
    advertised = [w.get("resources") or {} for w in workers]
    if not any(advertised):
        return {d.name: None for d in devs}
    known = sorted({k for r in advertised for k in r})
    out: dict[str, dict[str, float] | str | None] = {}
    for d in devs:
        need = device_resource(d)
        out[d.name] = (
            {need: 1}
            if any(need in r for r in advertised)
            else f"no Dask worker advertises device {need!r} (worker resources: {', '.join(known)})"
        )
    return out


def _run_on_cluster(
    client: Any,
    models: dict[str, ModelRef],
    builds: dict[str, Build],
    devs: Sequence[Any],
    hints: Sequence[Hint],
    dataset: Any,
    validation_fn: Callable,
    timing: Timing,
    t: Any,
) -> list[Record]:
    """One job per (variant, device) on a worker that has the device; model and data are
    scattered to every worker once. Records are collected as jobs finish."""
    from distributed import as_completed

    [ds_future] = client.scatter([dataset], broadcast=True, hash=False)
    placement = _placement(client, devs)
    per_job = len(hints) + max(timing.rounds, 1)
    futures, out = {}, []
    tokens: list[str] = []
    try:
        for variant, model in models.items():
            tokens.append(_stage_everywhere(client, model))
            out += _submit_jobs(client, variant, tokens[-1], builds[variant], devs, hints,
                                ds_future, validation_fn, timing, placement, futures, t)  # fmt: skip
        for fut in as_completed(list(futures)):
            variant, dev = futures[fut]
            out += fut.result()
            t.update(per_job, postfix=f"{variant} on {dev}")
    except BaseException:
        client.cancel(list(futures))
        raise
    finally:
        with contextlib.suppress(Exception):  # a worker gone: its folders went with it
            client.run(_unstage, tokens)
    return out


def _stage_everywhere(client: Any, model: ModelRef) -> str:
    """Scatter ``model`` (header + external-data buffers: works beyond 2 GB, where one
    serialized proto cannot) to every worker, stage it there, release the scattered copy;
    returns the token jobs find it under."""
    token = uuid.uuid4().hex
    [payload] = client.scatter([_payload(model)], broadcast=True, hash=False)
    workers = list(client.scheduler_info(n_workers=-1).get("workers", {}))
    staging = [
        client.submit(_stage_payload, payload, token, workers=[w], allow_other_workers=False,
                      pure=False)
        for w in workers
    ]  # fmt: skip
    try:
        client.gather(staging)
    finally:
        client.cancel([payload, *staging])  # the workers drop the scattered bytes now
    return token


def _submit_jobs(
    client: Any,
    variant: str,
    token: str,
    build: Build,
    devs: Sequence[Any],
    hints: Sequence[Hint],
    ds_future: Any,
    validation_fn: Callable,
    timing: Timing,
    placement: dict[str, Any],
    futures: dict[Any, tuple[str, str]],
    t: Any,
) -> list[Record]:
    """Submit one job per device of ``variant``; error records where no worker has it."""
    per_job = len(hints) + max(timing.rounds, 1)
    out: list[Record] = []
    for d in devs:
        where = placement[d.name]
        if isinstance(where, str):
            out += _error_records(variant, replace(build, error=where), [d], hints)
            t.update(per_job, postfix=f"{variant} on {d.name}: no worker")
            continue
        fut = client.submit(
            _measure_job, variant, token, build, d, list(hints), ds_future, validation_fn,
            timing, resources=where, pure=False,
        )  # fmt: skip
        futures[fut] = (variant, d.name)
    return out


def _error_records(
    variant: str, build: Build, devices: Sequence[Any], hints: Sequence[Hint]
) -> list[Record]:
    """One record per device for a variant that never got measured (all hints listed)."""
    return [
        Record(
            variant=variant,
            device=d.name,
            hint=hints[0].label,
            hints=tuple(h.label for h in hints),
            build_seconds=build.seconds,
            error=build.error,
            simulated=bool(d.simulated),
            host=host_info(),
        )
        for d in devices
    ]


def _environment() -> dict[str, str]:
    """The sweep's machine as strings (records carry the full :func:`host_info` each)."""
    return {k: str(v) for k, v in host_info().items() if not isinstance(v, tuple)}


# ----------------------------------------------------------------------------- explore


def explore(
    model: onnx.ModelProto | str | Path,
    dataset: Any,
    validation_fn: Callable[[Any, Any], Any],
    variants: Sequence[VariantSpec] = VARIANTS,
    hints: Sequence[Hint | str] = DEFAULT_HINTS,
    devices: Sequence[Any] = ("cpu",),
    calibration_dataset: Any = None,
    client: Any = None,
    batch_sizes: Sequence[int] = (1,),
    *,
    max_drop: float = 0.01,
    min_time: float = 0.6,
    rounds: int = 5,
    warmup: int = 3,
    bench_items: int = 8,
    threads: int | None = None,
) -> Study:
    """Sweep ``variants`` × ``hints`` × ``devices`` × ``batch_sizes``: accuracy, latency and
    throughput of each distinct setting, with 95% confidence intervals.

    ``dataset`` goes to ``validation_fn(run, dataset)`` unchanged (it returns a number or a
    1-D array of per-item scores); its ``.feeds()`` calibrate int8 unless
    ``calibration_dataset`` is given and feed the benchmarks (first ``bench_items``, batched
    per ``batch_sizes``). ``variants`` are names from :data:`VARIANTS` or ``(name, fn)`` pairs
    with ``fn(model) -> model``. ``max_drop`` bounds the metric drop of ``mixed`` and
    ``int8-ac``. Latency: ``rounds`` interleaved rounds totalling ``min_time`` s per setting,
    every session with the same ``threads`` (protocol: ``docs/measurement.md``). ``client``: a
    ``dask.distributed.Client``; jobs then run on its workers (``docs/distributed.md``).
    """
    t_start = time.perf_counter()
    with contextlib.ExitStack() as stack:  # the work folder of a light sweep
        return _explore(
            _Source(model, stack), model, dataset, validation_fn, variants, hints, devices,
            calibration_dataset, client, batch_sizes, max_drop, min_time, rounds, warmup,
            bench_items, threads, t_start,
        )  # fmt: skip


def _explore(
    src: _Source,
    model: Any,
    dataset: Any,
    validation_fn: Callable[[Any, Any], Any],
    variants: Sequence[VariantSpec],
    hints: Sequence[Hint | str],
    devices: Sequence[Any],
    calibration_dataset: Any,
    client: Any,
    batch_sizes: Sequence[int],
    max_drop: float,
    min_time: float,
    rounds: int,
    warmup: int,
    bench_items: int,
    threads: int | None,
    t_start: float,
) -> Study:
    proto = src.proto
    ds = as_dataset(dataset, "explore dataset")
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
    timing = Timing(min_time, rounds, warmup, bench_items, threads, _check_batches(batch_sizes))
    model_hash = src.digest()
    models, builds = build_variants(src, specs, ds, validation_fn, calib, max_drop, model_hash)
    names = [s if isinstance(s, str) else s[0] for s in specs]
    # validation_fn gets the caller's object unchanged (a list stays a list)
    records = _measure_all(models, builds, devs, hint_objs, dataset, validation_fn, timing, client)
    _sort_records(records, names, devs, hint_objs)
    _warn_unhonoured(records)
    return Study(
        records=tuple(records),
        model_name=proto.graph.name or (Path(model).name if isinstance(model, (str, Path)) else ""),
        model_hash=model_hash[:16],
        variants=tuple(names),
        hints=tuple(h.label for h in hint_objs),
        devices=tuple(d.name for d in devs),
        builds=builds,
        seconds=time.perf_counter() - t_start,
        environment=_environment(),
    )


def _measure_all(
    models: dict[str, ModelRef],
    builds: tuple[Build, ...],
    devs: Sequence[Any],
    hints: Sequence[Hint],
    dataset: Any,
    validation_fn: Callable,
    timing: Timing,
    client: Any,
) -> list[Record]:
    """Error records for failed builds, then every built variant on every device."""
    build_of = {b.variant: b for b in builds}
    records: list[Record] = []
    for b in builds:
        if b.error:
            records += _error_records(b.variant, b, devs, hints)
    # progress units per (variant, device): one accuracy step per hint, one per timing round
    total = len(models) * len(devs) * (len(hints) + max(timing.rounds, 1))
    with task("explore: measure", total=total) as t:
        if client is not None:
            return records + _run_on_cluster(
                client, models, build_of, devs, hints, dataset, validation_fn, timing, t
            )
        for d in devs:
            records += measure_device(
                models, build_of, d, hints, dataset, validation_fn, timing,
                step=lambda label, d=d: t.update(postfix=f"{label} on {d.name}"),
            )  # fmt: skip
    return records


def _sort_records(
    records: list[Record], names: list[str], devs: Sequence[Any], hints: Sequence[Hint]
) -> None:
    order = {n: i for i, n in enumerate(names)}
    dev_order = {d.name: i for i, d in enumerate(devs)}
    hint_order = {h.label: i for i, h in enumerate(hints)}
    records.sort(key=lambda r: (order[r.variant], dev_order[r.device], hint_order[r.hint], r.batch))


def _not_honoured(r: Record) -> bool:
    """The record, or one of the hints it stands for, ran another precision than requested."""
    return not r.honoured or any(n.endswith("not honoured)") for n in r.notes)


def _warn_unhonoured(records: list[Record]) -> None:
    """One PrecisionWarning for the sweep instead of one per runner."""
    bad = [r for r in records if r.ok and _not_honoured(r)]
    if bad:
        r = bad[0]
        example = (
            f"requested {r.precision_requested}, ran {r.precision_ran}"
            if not r.honoured
            else next(n for n in r.notes if n.endswith("not honoured)"))
        )
        warnings.warn(
            f"{len(bad)} of {len(records)} records ran another precision than requested "
            f"(e.g. {r.label}: {example}); see the ⚠ marks and notes in the study",
            PrecisionWarning,
            stacklevel=4,
        )


def _check_batches(batch_sizes: Sequence[int]) -> tuple[int, ...]:
    if isinstance(batch_sizes, int):
        batch_sizes = (batch_sizes,)
    out = tuple(dict.fromkeys(batch_sizes or (1,)))
    if not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in out):
        raise InputError(f"batch_sizes must be positive integers, got {batch_sizes!r}")
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


def agreement_validation(model: onnx.ModelProto, dataset: Any) -> Callable[[Any, Any], Any]:
    """A ``validation_fn`` for data without labels: per-item top-1 agreement of the first
    output with the f32 model's (computed once here, on the ORT CPU) over ``dataset.feeds()``."""
    runner = open_runner(model, "cpu")
    try:
        refs = np.concatenate([next(iter(runner(f).values())) for f in as_dataset(dataset).feeds()])
    finally:
        runner.close()

    def agreement_with_f32(run: Callable, data: Any) -> Any:
        outs = [next(iter(run(f).values())) for f in as_dataset(data).feeds()]
        return agreement(np.concatenate(outs), refs)

    return agreement_with_f32


def with_records(study: Study, records: Iterable[Record]) -> Study:
    """A copy of ``study`` holding ``records`` (e.g. filtered to one device)."""
    return replace(study, records=tuple(records))


__all__ = [
    "CACHE",
    "VARIANTS",
    "Build",
    "LightModel",
    "Record",
    "Study",
    "Timing",
    "VariantCache",
    "agreement_validation",
    "build_variants",
    "clear_cache",
    "code_fingerprint",
    "device_resource",
    "explore",
    "measure_device",
    "pareto_front",
    "recommend",
    "worker_resources",
]
