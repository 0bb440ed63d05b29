"""Static int8 quantization (QDQ) from calibration data, built on ``onnxruntime.quantization``.

:func:`quantize_int8` prepares the model (deterministic node names, ORT's ``quant_pre_process``:
shape inference and BatchNorm/constant folding), calibrates activation ranges once with ORT's
calibrators and writes a QDQ model with ``quantize_static``. :class:`Int8Quantizer` keeps the
prepared model and the calibration cache so accuracy control can re-quantize with different
``nodes_to_exclude`` without calibrating again; re-quantizing (instead of deleting Q/DQ nodes)
keeps the placement ORT needs to fuse Q/DQ into integer kernels around float nodes.

Defaults (measured on the demo CNN and the outlier models in ``tests/models.py``): per-channel
symmetric int8 weights, asymmetric uint8 activations, ``percentile`` activation ranges (robust to
rare activation spikes that a min/max range would stretch to), and ``reduce_range`` when the
*target* CPU has no VNNI, where ORT's u8×s8 kernels can saturate 16-bit intermediate sums.

Never worse than the plain library: each addition falls back to ORT's own behaviour where it
fails, and says so in the model's ``workbench.int8`` metadata ``notes`` —
a tensor whose histogram cannot be built (constant or integer-valued paths) gets its min/max
range; per-channel weights on a model older than opset 13 (``DequantizeLinear.axis``) upgrade
the model with ``onnx.version_converter`` or fall back to per-tensor; the result is checked by
creating an ONNX Runtime session before it is returned.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..cpu import CpuInfo, cpu_info
from ..data import Dataset, InputSpec, as_dataset, check_dataset, input_specs
from ..errors import (
    InputError,
    NothingQuantizedError,
    OperationCancelled,
    UnsupportedError,
    WorkbenchError,
)
from ..model import load_model, save_model, stage_model
from ..progress import quiet, task
from ..runtime import open_runner, prepare_feeds
from ..runtime.base import RunConfig
from ..runtime.hints import PrecisionWarning
from ..runtime.ort import make_session, session_options
from ..tensor_types import inferred_ir, tensor_types
from .opset import default_opset, upgrade_opset

#: ``calibration=`` names → ORT CalibrationMethod member names
CALIBRATIONS = {
    "minmax": "MinMax",
    "percentile": "Percentile",
    "entropy": "Entropy",
    "distribution": "Distribution",
}
DEFAULT_CALIBRATION = "percentile"
#: quantization ops (not candidates for reverting; they are the quantization itself)
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
#: metadata key recording how a model was quantized
METADATA_KEY = "workbench.int8"
#: DequantizeLinear's ``axis`` (per-channel weights) exists from this opset on
PER_CHANNEL_OPSET = 13
#: ``extra_options`` keys ``quantize_static`` forwards to its calibrator (same mapping as ORT)
_CALIB_OPTIONS = {
    "CalibTensorRangeSymmetric": "symmetric",
    "CalibMovingAverage": "moving_average",
    "CalibMovingAverageConstant": "averaging_constant",
    "CalibMaxIntermediateOutputs": "max_intermediate_outputs",
    "CalibPercentile": "percentile",
}
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni")


def target_reduce_range(target: CpuInfo | Iterable[str] | None = None) -> tuple[bool, str]:
    """``reduce_range`` for the CPU the int8 model will run on, and why.

    ``target`` is a :class:`~workbench.cpu.CpuInfo`, a collection of CPU flags (as in
    ``/proc/cpuinfo``) or None for this machine. Without VNNI, ORT's x86 u8×s8 kernels sum pairs
    of products in int16 and can saturate, which 7-bit weights avoid (ORT's recommendation).
    Unknown flags (macOS/Windows, ARM with sdot/udot) mean full-range weights.
    """
    where = "this machine" if target is None else "target"
    info = cpu_info() if target is None else target
    flags = info.flags if isinstance(info, CpuInfo) else tuple(info)
    if isinstance(info, str):
        raise InputError(f"target must be a CpuInfo or a collection of CPU flags, got {info!r}")
    if not flags:
        return False, f"{where}: CPU flags unknown, full-range weights"
    vnni = [f for f in _VNNI_FLAGS if f in flags]
    if vnni:
        return False, f"{where} has {vnni[0]}: full-range weights"
    return True, f"{where} has no VNNI: 7-bit weights avoid int16 saturation"


class _FeedsReader:
    """ORT ``CalibrationDataReader`` over ``Dataset.feeds()`` with progress and cancellation."""

    def __init__(self, dataset: Dataset, specs: Mapping[str, InputSpec], progress: Any):
        self._it: Iterator[dict[str, np.ndarray]] = dataset.feeds()
        self._specs = specs
        self._progress = progress

    def get_next(self) -> dict[str, np.ndarray] | None:
        feeds = next(self._it, None)
        if feeds is None:
            return None
        self._progress.update()
        # names checked and dtypes cast as for every other run, so errors name the input
        return prepare_feeds(feeds, self._specs, "calibration")

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while (item := self.get_next()) is not None:
            yield item


def _symbolic_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """ORT's symbolic shape inference without its side effect.

    ``SymbolicShapeInference.infer_shapes`` saves ``sym_shape_infer_temp.onnx`` into the current
    directory when inference is incomplete; this is the same loop without that write (it raises
    instead, and the caller falls back to ONNX shape inference).
    """
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    ssi = SymbolicShapeInference(2**31 - 1, False, False, 0)
    done = False
    ssi._preprocess(model)
    while ssi.run_:
        done = ssi._infer_impl()
    ssi._update_output_from_vi()
    if not done:
        raise ValueError("incomplete symbolic shape inference")
    return ssi.out_mp_


def _prepare(model: onnx.ModelProto, workdir: Path, optimize: bool) -> tuple[onnx.ModelProto, str]:
    """ORT's ``quant_pre_process`` (shape inference, basic graph optimization); falls back.

    ``model`` is light (:func:`~workbench.model.stage_model` into ``workdir``); so is the
    prepared model returned, with a note saying which preparation ran. Every file goes to
    ``workdir`` (symbolic shapes run here, so ORT never writes into the current directory).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    last = ""
    for i, symbolic in enumerate((True, False)):
        try:
            src = model
            if symbolic:
                src = _symbolic_shapes(model)
            path = save_model(src, workdir / f"named{i}.onnx")
            dst = workdir / f"prepared{i}.onnx"
            quant_pre_process(
                str(path),
                str(dst),
                skip_optimization=not optimize,
                skip_symbolic_shape=True,
                # weights stay in files: a model of any size, held by ORT's tool only
                save_as_external_data=True,
                all_tensors_to_one_file=True,  # not one file per tensor, named after it
                external_data_location=dst.name + ".data",
            )
            light = load_model(dst, load_external_data=False)
            return light, ("optimized" if optimize else "not optimized") + (
                " + symbolic shapes" if symbolic else " + onnx shapes only"
            )
        except Exception as e:  # symbolic shape inference cannot handle every model
            last = f"{type(e).__name__}: {str(e)[:200]}"
    # quantize_static still works without pre-processing (it runs onnx shape inference itself)
    return model, f"not pre-processed ({last})"


def ort_refusal(model: onnx.ModelProto, model_dir: str | None = None) -> str | None:
    """Why ONNX Runtime (CPU) refuses to load ``model`` (light: weights in ``model_dir``), or
    None when a session can be created."""
    try:  # the workbench's session options (ORT's own log level quieted)
        make_session(model, options=session_options(None, RunConfig(model_dir=model_dir)))
    except Exception as e:
        return f"{type(e).__name__}: {str(e)[:300]}"
    return None


def _upgrade_for_per_channel(
    model: onnx.ModelProto, model_dir: str
) -> tuple[onnx.ModelProto | None, str]:
    """``model`` (light, weights in ``model_dir``) converted to opset 13 (per-channel
    DequantizeLinear needs ``axis``), or None.

    The converted model must still load in ONNX Runtime; the note says what happened.
    """
    up, note = upgrade_opset(
        model,
        PER_CHANNEL_OPSET,
        "per-channel DequantizeLinear needs its axis attribute",
        lambda m: ort_refusal(m, model_dir),
    )
    if up is None:
        note += ": weights quantized per tensor instead of per channel"
    return up, note


def _tolerant_collector(calibrator: Any) -> Any:
    """ORT's histogram collector, tensor by tensor: a tensor whose histogram fails gets min/max.

    ORT builds every histogram in one loop, so one degenerate tensor (a constant or an
    integer-valued path such as a sample rate: ``np.histogram`` cannot make 2048 bins over a
    zero-width range at 16000) aborts the whole calibration. Here that tensor alone falls back to
    the plain library's MinMax range; ``failed`` records it for the result's notes.
    """
    from onnxruntime.quantization.calibrate import HistogramCollector, TensorData

    class Collector(HistogramCollector):
        def __init__(self) -> None:
            super().__init__(
                method=calibrator.method,
                symmetric=calibrator.symmetric,
                num_bins=calibrator.num_bins,
                num_quantized_bins=calibrator.num_quantized_bins,
                percentile=calibrator.percentile,
                scenario=calibrator.scenario,
            )
            self.failed: dict[str, str] = {}
            self.extremes: dict[str, tuple[float, float, np.dtype]] = {}

        def collect(self, name_to_arr: Mapping[str, Any]) -> None:
            absolute = self.method == "percentile" and self.symmetric
            collect = self.collect_absolute_value if absolute else self.collect_value
            for name, arrays in name_to_arr.items():
                self._extremes(name, arrays)
                if name in self.failed:
                    continue
                try:
                    collect({name: arrays})
                except (ValueError, AssertionError, FloatingPointError, TypeError) as e:
                    self.failed[name] = f"{type(e).__name__}: {str(e)[:120]}"
                    self.histogram_dict.pop(name, None)

        def _extremes(self, name: str, arrays: Any) -> None:
            arrays = [np.asarray(a) for a in (arrays if isinstance(arrays, list) else [arrays])]
            finite = [a[np.isfinite(a)] for a in arrays if a.size]
            finite = [a for a in finite if a.size]
            lo = min((float(a.min()) for a in finite), default=0.0)
            hi = max((float(a.max()) for a in finite), default=0.0)
            dtype = arrays[0].dtype if arrays and arrays[0].dtype == np.float16 else np.float32
            old = self.extremes.get(name, (lo, hi, dtype))
            self.extremes[name] = (min(lo, old[0]), max(hi, old[1]), dtype)

        def compute_collection_result(self) -> dict[str, Any]:
            compute = {
                "entropy": self.compute_entropy,
                "percentile": self.compute_percentile,
                "distribution": self.compute_distribution,
            }[self.method]
            everything, result = self.histogram_dict, {}
            try:
                result = compute() if everything else {}
            except Exception:  # find the tensor(s) whose threshold search fails
                for name, hist in everything.items():
                    self.histogram_dict = {name: hist}
                    try:
                        result.update(compute())
                    except Exception as e:
                        self.failed[name] = f"{type(e).__name__}: {str(e)[:120]}"
                self.histogram_dict = everything
            for name in self.failed:
                lo, hi, dtype = self.extremes.get(name, (0.0, 0.0, np.float32))
                result[name] = TensorData(
                    lowest=np.array(lo, dtype=dtype), highest=np.array(hi, dtype=dtype)
                )
            return result

    return Collector()


def _op_types() -> list[str]:
    """Every op type ORT's quantizers handle (what ``quantize_static`` calibrates by default)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


class Int8Quantizer:
    """Prepared model + calibration cache; :meth:`quantize` re-quantizes with exclusions.

    Use as a context manager: work files live in a temporary folder removed on exit. The
    weights stay in that folder's files (``source``/``prepared`` are light protos, see
    :func:`~workbench.model.stage_model`): ORT's tools read them there, so a model of any size
    is held only by the tool working on it, never also by this object.
    ``notes`` collects every fallback to the plain library (written into the model metadata).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | onnx.ModelProto,
        calibration_dataset: Dataset | Iterable[Mapping[str, Any]],
        per_channel: bool = True,
        calibration: str = DEFAULT_CALIBRATION,
        reduce_range: bool | None = None,
        activation_type: str = "uint8",
        optimize: bool = True,
        percentile: float = 99.999,
        extra_options: Mapping[str, Any] | None = None,
        target: CpuInfo | Iterable[str] | None = None,
        exclude_nodes: Iterable[str] = (),
    ):
        if calibration not in CALIBRATIONS:
            raise InputError(
                f"unknown calibration {calibration!r}; choose one of {', '.join(CALIBRATIONS)}"
            )
        if activation_type not in ("uint8", "int8"):
            raise InputError(f"activation_type must be 'uint8' or 'int8', got {activation_type!r}")
        self.calibration_dataset = as_dataset(calibration_dataset, "calibration_dataset")
        self._tmp: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(
            prefix="wb-int8-"
        )
        try:  # a bad name or dataset fails here, before calibration, leaving no work files
            self.source = stage_model(model, self.source_path)
            self.source_names = [n.name for n in self.source.graph.node]
            self.prepared_names: list[str] = []
            #: the caller's exclusions, validated and sorted
            self.exclude = self.check_nodes(exclude_nodes)
            # every item checked against the inputs first: a wrong shape fails in one line
            check_dataset(self.source, self.calibration_dataset, "calibration data")
        except BaseException:
            self.close()
            raise
        self.per_channel = bool(per_channel)
        self.calibration = calibration
        if reduce_range is None:
            self.reduce_range, self.reduce_range_reason = target_reduce_range(target)
        else:
            self.reduce_range, self.reduce_range_reason = bool(reduce_range), "explicit"
        self.activation_type = activation_type
        self.optimize = optimize
        self.percentile = float(percentile)
        self.extra_options = dict(extra_options or {})
        self.prepared: onnx.ModelProto | None = None
        self.prepare_note = ""
        self.notes: list[str] = []
        self._count = 0

    # -- lifecycle
    def __enter__(self) -> Int8Quantizer:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def workdir(self) -> Path:
        if self._tmp is None:
            raise RuntimeError("this Int8Quantizer is closed")
        return Path(self._tmp.name)

    @property
    def source_path(self) -> Path:
        """The named float model (light header; its weights beside it in the work folder)."""
        return self.workdir / "source.onnx"

    @property
    def prepared_path(self) -> Path:
        """The pre-processed float model the quantizations start from (light header)."""
        return self.workdir / "prepared.onnx"

    @property
    def model_dir(self) -> str:
        """Where the light protos' weights are (for ``RunConfig(model_dir=...)``)."""
        return str(self.workdir)

    def _setup(self) -> None:
        self.prepared, self.prepare_note = _prepare(self.source, self.workdir, self.optimize)
        if self.per_channel and default_opset(self.prepared) < PER_CHANNEL_OPSET:
            upgraded, note = _upgrade_for_per_channel(self.prepared, self.model_dir)
            self.notes.append(note)
            if upgraded is None:
                self.per_channel = False
            else:
                self.prepared = upgraded
        self.prepared_names = [n.name for n in self.prepared.graph.node]
        save_model(self.prepared, self.prepared_path)  # light: references its data beside it
        self._calibrate()

    # -- ORT arguments
    def _extra(self) -> dict[str, Any]:
        # per-tensor 'percentile' keeps 99.999 % of the histogram mass, both tails
        return {"CalibPercentile": self.percentile, **self.extra_options}

    def _ort_args(self) -> dict[str, Any]:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

        return {
            "quant_format": QuantFormat.QDQ,
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "activation_type": QuantType.QUInt8
            if self.activation_type == "uint8"
            else QuantType.QInt8,
            "weight_type": QuantType.QInt8,
            "calibrate_method": getattr(CalibrationMethod, CALIBRATIONS[self.calibration]),
            "calibration_providers": ["CPUExecutionProvider"],
            "extra_options": self._extra(),
            "calibration_cache_path": str(self.workdir / "ranges.json"),
            "use_external_data_format": True,  # weights stay in files, whatever the size
        }

    def _collect_ranges(self, reader: _FeedsReader) -> Any:
        """Activation ranges with ORT's calibrator (tolerant histograms), as ORT's TensorsData."""
        from onnxruntime.quantization import CalibrationMethod
        from onnxruntime.quantization.calibrate import HistogramCalibrater, create_calibrator

        extra = self._extra()
        options = {key: extra[name] for name, key in _CALIB_OPTIONS.items() if name in extra}
        calibrator = create_calibrator(
            self.prepared_path,
            _op_types(),
            augmented_model_path=str(self.workdir / "augmented.onnx"),
            calibrate_method=getattr(CalibrationMethod, CALIBRATIONS[self.calibration]),
            providers=["CPUExecutionProvider"],
            use_external_data_format=True,
            extra_options=options,
        )
        collector = None
        try:
            if isinstance(calibrator, HistogramCalibrater):
                collector = calibrator.collector = _tolerant_collector(calibrator)
            calibrator.collect_data(reader)
            ranges = calibrator.compute_data()
        finally:
            # the calibrator and our collector reference each other: dropped here, its model
            # and augmented session (the model's size, twice) don't wait for the cyclic GC
            for attr in ("infer_session", "model", "collector"):
                setattr(calibrator, attr, None)
        for name, why in sorted((collector.failed if collector else {}).items()):
            self.notes.append(
                f"tensor {name!r}: {self.calibration} range failed ({why}); min/max range used"
            )
        return ranges

    def _calibrate(self) -> None:
        """Collect activation ranges once (ORT's calibrator); later quantizations reuse them."""
        from onnxruntime.quantization.calibrate import save_tensors_data

        n = len(self.calibration_dataset)
        with task(f"int8 calibration ({self.calibration})", n) as t:
            try:
                reader = _FeedsReader(self.calibration_dataset, self._input_specs(), t)
                save_tensors_data(self._collect_ranges(reader), self.workdir / "ranges.json")
                self._first_quantization()
            except WorkbenchError:  # bad feeds, cancellation: already clear
                raise
            except Exception as e:
                ops = ", ".join(sorted({n.op_type for n in self.prepared.graph.node}))
                raise UnsupportedError(
                    f"onnxruntime calibration/quantization failed on model "
                    f"{self.source.graph.name!r} (ops: {ops}): {type(e).__name__}: "
                    f"{str(e)[:400]}"
                ) from e
        self.full = self._load("calibrated.onnx", ())

    def _first_quantization(self) -> None:
        """The model without exclusions; ORT's int32-bias weight-scale adjustment, which fails
        on some exported graphs (an array compared as a scalar), is switched off if it fails."""
        try:
            self._quantize_file((), "calibrated.onnx")
        except ValueError as e:
            if "QDQDisableWeightAdjustForInt32Bias" in self.extra_options:
                raise
            self.extra_options["QDQDisableWeightAdjustForInt32Bias"] = True
            self._quantize_file((), "calibrated.onnx")
            self.notes.append(
                f"ORT's weight-scale adjustment for int32 biases failed ({str(e)[:100]}): "
                "QDQDisableWeightAdjustForInt32Bias used"
            )

    def per_tensor_fallback(self, why: str) -> None:
        """Switch to per-tensor weights (the plain library's safest form) after ``why``."""
        self.per_channel = False
        self.notes.append(f"per-channel model refused by ONNX Runtime ({why}): per-tensor used")
        self._quantize_file((), "calibrated.onnx")
        self.full = self._load("calibrated.onnx", ())

    def _input_specs(self) -> dict[str, InputSpec]:
        return input_specs(self.source)

    def _surviving(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """Names in the prepared graph: a node folded away by pre-processing (BatchNorm into
        the Conv before it) is represented by the upstream node it was folded into."""
        present = set(self.prepared_names)
        producer = {o: n for n in self.source.graph.node for o in n.output}
        by_name = {n.name: n for n in self.source.graph.node}
        out = set()
        for name in names:
            node = by_name.get(name)
            while name not in present and node is not None and node.input:
                node = producer.get(node.input[0])
                name = node.name if node is not None else name
            out.add(name)
        return tuple(sorted(out))

    # -- quantization
    def check_nodes(self, names: Iterable[str], what: str = "exclude_nodes") -> tuple[str, ...]:
        """Validate node names against the (named) input model; return them sorted."""
        names = tuple(names) if not isinstance(names, str) else (names,)
        known = set(self.source_names) | set(self.prepared_names)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InputError(
                f"{what}: no node named {unknown[0]!r} in model {self.source.graph.name!r}; "
                "names come from workbench.model.ensure_node_names (e.g. wb.inspect shows ops)"
            )
        return tuple(sorted(set(names)))

    def _quantize_file(self, exclude: tuple[str, ...], out: str, **extra: Any) -> None:
        from onnxruntime.quantization import quantize_static

        args = self._ort_args()
        args["extra_options"] = {**args["extra_options"], **extra}
        quantize_static(
            str(self.prepared_path),
            str(self.workdir / out),
            None,  # ranges come from the calibration cache
            nodes_to_exclude=list(exclude),
            **args,
        )

    def simulation_model(self, exclude: Iterable[str] = ()) -> onnx.ModelProto:
        """The QDQ model with Relu/Clip kept (ORT folds them into the Q range otherwise).

        For simulating int8 in float (accuracy control's ranking probe): with Q/DQ bypassed,
        a folded Relu would be missing from the float path.
        """
        self._count += 1
        out = self.workdir / f"s{self._count}.onnx"
        self._quantize_file(self._surviving(self.check_nodes(exclude)), out.name,
                            QDQKeepRemovableActivations=True)  # fmt: skip
        return self._read(out.name)

    def quantize(
        self, exclude: Iterable[str] = (), auto_float: Iterable[str] = ()
    ) -> onnx.ModelProto:
        """QDQ model with ``exclude`` (and ``auto_float``) nodes left in float, same ranges."""
        auto = self.check_nodes(auto_float, "auto_float")
        exclude = self._surviving(self.check_nodes(tuple(exclude) + auto))
        if not exclude and hasattr(self, "full"):
            return self._stamp(load_model(self.full), (), ())  # notes may have grown since
        self._count += 1
        out = f"q{self._count}.onnx"
        self._quantize_file(exclude, out)
        return self._load(out, exclude, auto)

    def info(self, exclude: tuple[str, ...] = (), auto: tuple[str, ...] = ()) -> dict[str, Any]:
        """What the ``workbench.int8`` metadata records for a model quantized with ``exclude``."""
        return {
            "calibration": self.calibration,
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "reduce_range_reason": self.reduce_range_reason,
            "activations": self.activation_type,
            "calibration_items": len(self.calibration_dataset),
            "prepared": self.prepare_note,
            "excluded": [n for n in exclude if n not in auto],
            "auto_float": list(auto),
            "notes": list(dict.fromkeys(self.notes)),
        }

    def _load(
        self, filename: str, exclude: tuple[str, ...], auto: tuple[str, ...] = ()
    ) -> onnx.ModelProto:
        model = self._read(filename)
        notes: list[str] = []
        if exclude:
            model, notes = self._keep_float(model, exclude)
        # quant_pre_process's optimizer declares every ORT domain; keep only the used ones
        used = {n.domain for n in model.graph.node} | {""}
        kept = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
        del model.opset_import[:]
        model.opset_import.extend(kept)
        return self._stamp(model, exclude, auto, notes)

    def _read(self, filename: str) -> onnx.ModelProto:
        """Load a quantized work file (weights and all) and delete it with its data."""
        path = self.workdir / filename
        model = load_model(path)
        for p in (path, path.with_name(path.name + ".data")):
            p.unlink(missing_ok=True)
        return model

    def _stamp(
        self,
        model: onnx.ModelProto,
        exclude: tuple[str, ...],
        auto: tuple[str, ...],
        notes: Iterable[str] = (),
    ) -> onnx.ModelProto:
        entry = next((p for p in model.metadata_props if p.key == METADATA_KEY), None)
        if entry is None:
            entry = model.metadata_props.add()
            entry.key = METADATA_KEY
        info = self.info(exclude, auto)
        info["notes"] += list(notes)
        entry.value = json.dumps(info, sort_keys=True)
        return model

    def _keep_float(
        self, model: onnx.ModelProto, exclude: tuple[str, ...]
    ) -> tuple[onnx.ModelProto, list[str]]:
        """:func:`keep_float`, node by node where the whole set fails (noted, never fatal)."""
        notes: list[str] = []
        try:
            return keep_float(model, exclude), notes
        except Exception:
            wanted = set(exclude)
            names = [
                n.name
                for n in model.graph.node
                if n.name in wanted and n.op_type in _WEIGHT_REQUANTIZED_OPS
            ]
            for name in names:
                try:
                    model = keep_float(model, (name,))
                except Exception as e:
                    notes.append(
                        f"node {name!r}: own float DequantizeLinear failed ({type(e).__name__}: "
                        f"{str(e)[:80]}); ORT may re-quantize its weight at load time"
                    )
            return model, notes


def int8_info(model: onnx.ModelProto) -> dict[str, Any]:
    """How ``model`` was quantized (the ``workbench.int8`` metadata), {} for other models."""
    entry = next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None)
    return json.loads(entry) if entry else {}


#: ops whose float weights ORT's WeightBiasQuantization optimizer re-quantizes (per tensor!)
#: when their input comes from a DequantizeLinear with a scalar scale
_WEIGHT_REQUANTIZED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm"})


def keep_float(model: onnx.ModelProto, nodes: Iterable[str]) -> onnx.ModelProto:
    """Make sure excluded Conv/ConvTranspose/Gemm nodes really run in float in ONNX Runtime.

    ORT's ``WeightBiasQuantization`` graph optimizer (level 2, on by default) quantizes the
    float weight of a Conv/Gemm whose input comes from a DequantizeLinear with a *scalar*
    scale — per tensor, at session creation — so a node left float by ``nodes_to_exclude``
    would silently run in int8 again. Each such node gets its own DequantizeLinear with the
    same scale repeated per channel (``axis=1``): numerically identical, but not scalar, so the
    optimizer leaves the node alone; the other consumers keep the shared, fusable DQ.
    """
    import onnx_ir as ir

    if default_opset(model) < PER_CHANNEL_OPSET:  # a per-channel DequantizeLinear needs axis
        raise ValueError(f"opset {default_opset(model)} < {PER_CHANNEL_OPSET}")
    wanted = set(nodes)
    # channel counts of the DQ outputs (unknown domains: the quantizer's value_info only)
    m = inferred_ir(model)
    g = m.graph
    for node in list(g):
        if node.name not in wanted or node.op_type not in _WEIGHT_REQUANTIZED_OPS:
            continue
        x = node.inputs[0]
        dq = x.producer() if x is not None else None
        if dq is None or dq.op_type != "DequantizeLinear" or len(dq.inputs) < 2:
            continue
        scale, zero = dq.inputs[1], dq.inputs[2] if len(dq.inputs) > 2 else None
        if scale is None or scale.const_value is None or scale.const_value.numpy().size != 1:
            continue
        channels = x.shape[1] if x.shape is not None and len(x.shape) > 1 else None
        if not isinstance(channels, int) or channels < 2:
            continue  # a length-1 scale counts as scalar for ORT: nothing to gain
        tag = f"{node.name}_float_input"
        s = ir.Value(
            name=f"{tag}_scale",
            const_value=ir.tensor(
                np.full(channels, scale.const_value.numpy().item(), scale.const_value.numpy().dtype)
            ),
        )
        g.register_initializer(s)
        inputs = [dq.inputs[0], s]
        if zero is not None and zero.const_value is not None:
            z = zero.const_value.numpy()
            zv = ir.Value(
                name=f"{tag}_zero_point",
                const_value=ir.tensor(np.full(channels, z.item(), z.dtype)),
            )
            g.register_initializer(zv)
            inputs.append(zv)
        own = ir.node(
            "DequantizeLinear",
            inputs,
            {"axis": 1},
            domain=dq.domain,
            name=f"{tag}_DequantizeLinear",
        )
        own.outputs[0].name = f"{tag}_DequantizeLinear_Output"
        own.outputs[0].dtype = x.dtype
        own.outputs[0].shape = x.shape
        g.insert_before(node, own)
        node.replace_input_with(0, own.outputs[0])
        if not list(dq.outputs[0].uses()) and not dq.outputs[0].is_graph_output():
            g.remove(dq)  # it only fed this node
    return ir.to_proto(m)


def no_int8_message(model: onnx.ModelProto, exclude: Iterable[str]) -> str:
    """Why a quantization produced no int8 node (so the 'int8' model would really be float)."""
    ops = sorted({n.op_type for n in model.graph.node})
    excluded = f" ({len(tuple(exclude))} node(s) excluded)" if tuple(exclude) else ""
    bodies = sorted(set(ops) & {"If", "Loop", "Scan"})
    where = (
        f"; its {'/'.join(bodies)} bodies hold the rest of the work and ORT's QDQ quantizer does "
        "not enter control-flow bodies (plain quantize_static returns the float model "
        "unchanged here)"
        if bodies
        else ""
    )
    return (
        f"no node of model {model.graph.name!r} runs in int8 after quantization{excluded}: "
        f"ONNX Runtime's QDQ quantizer does not quantize its ops ({', '.join(ops)}) or all "
        f"were excluded{where}"
    )


def quantized_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of compute nodes that run in int8 in a QDQ model, in graph order.

    A node is int8 when an activation reaches it through DequantizeLinear and none of its float
    inputs bypasses Q/DQ (an excluded Gemm keeps a float weight; ORT cannot fuse it).
    """
    types = tensor_types(model)
    inits = {i.name for i in model.graph.initializer}
    dequantized: set[str] = set()  # outputs of DequantizeLinear
    activations: set[str] = set()  # ... of those, the ones dequantizing activations
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear":
            dequantized.update(n.output)
            if n.input and n.input[0] not in inits:
                activations.update(n.output)
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    names = []
    for n in model.graph.node:
        if n.op_type in QDQ_OPS or not any(i in activations for i in n.input):
            continue
        if all(not i or i in dequantized or types.get(i) not in floats for i in n.input):
            names.append(n.name)
    return names


def run_outputs(
    model: onnx.ModelProto | Path, feeds: Iterable[Mapping[str, np.ndarray]]
) -> list[list[np.ndarray]]:
    """Every output of ``model`` (a proto, or a path whose weights ORT reads from their files)
    on ORT CPU, for each feeds dict."""
    runner = open_runner(model, "cpu")
    try:
        return [list(runner(f).values()) for f in feeds]
    finally:
        runner.close()


def output_noise(outputs: list[list[np.ndarray]], reference: list[list[np.ndarray]]) -> float:
    """Noise-to-signal power of ``outputs`` vs ``reference`` over all items and outputs."""
    noise = signal = 0.0
    for outs, refs in zip(outputs, reference, strict=True):
        for o, r in zip(outs, refs, strict=True):
            r64 = np.asarray(r, np.float64)
            noise += float(np.sum((np.asarray(o, np.float64) - r64) ** 2))
            signal += float(np.sum(r64**2))
    return noise / max(signal, 1e-30)


def _edges_to_keep_float(q: Int8Quantizer, exclude: tuple[str, ...], items: int) -> list[str]:
    """First/last int8 nodes whose float version measurably helps (output SQNR +3 dB or more).

    Measured on up to ``items`` calibration feeds against the float model; deterministic.
    """
    nodes = [n for n in quantized_nodes(q.quantize(exclude)) if n not in exclude]
    edges = list(dict.fromkeys(nodes[:1] + nodes[-1:]))
    if len(nodes) < 3:
        return []  # keep at least one int8 node besides the edges
    feeds = list(q.calibration_dataset.take(items).feeds())
    reference = run_outputs(q.prepared_path, feeds)
    base = output_noise(run_outputs(q.quantize(exclude), feeds), reference)
    keep = []
    for name in edges:
        noise = output_noise(run_outputs(q.quantize(exclude + (name,)), feeds), reference)
        if noise * 2.0 <= base:  # at least halves the output noise power
            keep.append(name)
    return keep


def int8_model(
    q: Int8Quantizer, exclude: tuple[str, ...], auto_float: bool, auto_float_items: int
) -> tuple[onnx.ModelProto, tuple[str, ...]]:
    """THE int8 model for these options (:func:`quantize_int8` and accuracy control's start).

    Returns the model and the nodes ``auto_float`` kept in float. The model is checked by
    creating an ONNX Runtime session: a per-channel graph ORT refuses is redone per tensor; a
    graph it still refuses raises :class:`UnsupportedError` (never returned).
    """
    why = ort_refusal(q.full)
    if why is not None and q.per_channel:
        q.per_tensor_fallback(why)
        why = ort_refusal(q.full)
    if why is not None:
        raise UnsupportedError(
            f"ONNX Runtime refuses the int8 model of {q.source.graph.name!r}: {why}"
        )
    kept: list[str] = []
    if auto_float:
        try:
            with quiet():
                kept = _edges_to_keep_float(q, exclude, auto_float_items)
        except (OperationCancelled, InputError):
            raise
        except Exception as e:  # our addition failed: the plain quantization stands
            q.notes.append(f"auto_float skipped ({type(e).__name__}: {str(e)[:120]})")
    result = q.quantize(exclude, auto_float=kept)
    if not quantized_nodes(result):
        message = no_int8_message(q.prepared, exclude)
        if exclude:  # the caller's exclusions leave nothing: a mistake worth an error
            raise NothingQuantizedError(f"{message}, so none is returned")
        # as ORT's plain quantize_static, the model comes back — loudly marked as not int8
        q.notes.append(f"{message}: the model is returned without int8 nodes")
        warnings.warn(q.notes[-1], PrecisionWarning, stacklevel=3)
        result = q.quantize(exclude, auto_float=kept)
    if exclude or kept:
        why = ort_refusal(result)
        if why is not None:
            raise UnsupportedError(
                f"ONNX Runtime refuses the int8 model of {q.source.graph.name!r} with "
                f"{', '.join(exclude + tuple(kept))} in float: {why}"
            )
    return result, tuple(kept)


def quantize_int8(
    model: str | os.PathLike[str] | onnx.ModelProto,
    calibration_dataset: Dataset | Iterable[Mapping[str, Any]],
    per_channel: bool = True,
    exclude_nodes: Iterable[str] = (),
    calibration: str = DEFAULT_CALIBRATION,
    *,
    reduce_range: bool | None = None,
    target: CpuInfo | Iterable[str] | None = None,
    activation_type: str = "uint8",
    optimize: bool = True,
    percentile: float = 99.999,
    extra_options: Mapping[str, Any] | None = None,
    auto_float: bool = True,
    auto_float_items: int = 16,
) -> onnx.ModelProto:
    """Static int8 QDQ model from calibration data (``calibration_dataset.feeds()``).

    ``per_channel`` quantizes weights per output channel; ``exclude_nodes`` stay float (node
    names after :func:`workbench.model.ensure_node_names`); ``calibration`` picks ORT's range
    method (``minmax``, ``percentile``, ``entropy``, ``distribution``). ``reduce_range=None``
    follows the ``target`` CPU (a :class:`~workbench.cpu.CpuInfo` or its flags; None: this
    machine): 7-bit weights only without VNNI (:func:`target_reduce_range`). ``optimize`` runs
    ORT's ``quant_pre_process`` graph optimization (BatchNorm folding) first. ``extra_options``
    go to ``quantize_static``. ``auto_float`` leaves the first/last int8 node in float when that
    at least halves the output noise power vs float on ``auto_float_items`` calibration items.
    What was used (reduce_range and why, fallbacks to the plain library) is recorded in the
    model's ``workbench.int8`` metadata (:func:`int8_info`). The caller's model is not
    modified; the result is deterministic and loads in ONNX Runtime.
    """
    quantizer = Int8Quantizer(
        model,
        calibration_dataset,
        per_channel=per_channel,
        calibration=calibration,
        reduce_range=reduce_range,
        activation_type=activation_type,
        optimize=optimize,
        percentile=percentile,
        extra_options=extra_options,
        target=target,
        exclude_nodes=exclude_nodes,
    )
    with quantizer as q:
        return int8_model(q, q.exclude, auto_float, auto_float_items)[0]
