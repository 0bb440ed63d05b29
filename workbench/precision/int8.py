"""Static int8 quantization (QDQ) from calibration data, built on ``onnxruntime.quantization``.

:func:`quantize_int8` prepares the model (deterministic node names, ORT's ``quant_pre_process``:
shape inference and BatchNorm/constant folding), calibrates activation ranges once with ORT's
calibrators and writes a QDQ model with ``quantize_static``. :class:`Int8Quantizer` keeps the
prepared model and the calibration cache so accuracy control can re-quantize with different
``nodes_to_exclude`` without calibrating again; re-quantizing (instead of deleting Q/DQ nodes)
keeps the placement ORT needs to fuse Q/DQ into integer kernels around float nodes.

Defaults (measured on the demo CNN and the outlier models in ``tests/models.py``): per-channel
symmetric int8 weights, asymmetric uint8 activations, ``percentile`` activation ranges (robust to
rare activation spikes that a min/max range would stretch to), and ``reduce_range`` on CPUs
without VNNI, where ORT's u8×s8 kernels can saturate 16-bit intermediate sums.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..cpu import cpu_info
from ..data import Dataset, as_dataset, input_signature, onnx_to_numpy_dtype
from ..errors import InputError, UnsupportedError, WorkbenchError
from ..model import ensure_node_names, load_model
from ..progress import quiet, task
from ..runtime import open_runner, prepare_feeds
from ..tensor_types import inferred, tensor_types

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


def cpu_has_vnni() -> bool:
    """True when the CPU has 8-bit dot-product instructions (AVX512-VNNI / AVX-VNNI).

    Without them ORT's x86 u8×s8 kernels sum pairs of products in int16 and can saturate, which
    ``reduce_range`` (7-bit weights) avoids — the setting ORT's documentation recommends.
    Unknown flags (macOS/Windows/ARM, which has sdot/udot) count as yes: full-range weights.
    """
    vnni = cpu_info().has_vnni
    return True if vnni is None else vnni


class _FeedsReader:
    """ORT ``CalibrationDataReader`` over ``Dataset.feeds()`` with progress and cancellation."""

    def __init__(self, dataset: Dataset, specs: Mapping[str, np.dtype], progress: Any):
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


_quiet_lock = threading.Lock()
_quiet_state: dict[str, Any] = {"depth": 0}


@contextlib.contextmanager
def _ort_quiet() -> Iterator[None]:
    """Silence ORT quantization chatter (calibrator prints, root-logger warnings).

    Reference-counted under a lock: concurrent quantizations in several threads share one
    redirection, and the first entrant's stdout/log level are restored by the last to leave.
    """
    with _quiet_lock:
        if _quiet_state["depth"] == 0:
            root = logging.getLogger()
            _quiet_state["level"] = root.level
            _quiet_state["stdout"] = sys.stdout
            root.setLevel(max(root.level, logging.ERROR))
            sys.stdout = io.StringIO()
        _quiet_state["depth"] += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_state["depth"] -= 1
            if _quiet_state["depth"] == 0:
                sys.stdout = _quiet_state.pop("stdout")
                logging.getLogger().setLevel(_quiet_state.pop("level"))


def _prepare(model: onnx.ModelProto, workdir: Path, optimize: bool) -> tuple[onnx.ModelProto, str]:
    """ORT's ``quant_pre_process`` (shape inference, basic graph optimization); falls back.

    Returns the prepared model and a note saying which preparation ran.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src = workdir / "named.onnx"
    onnx.save_model(model, src)
    attempts = (
        ("optimized + symbolic shapes", {"skip_optimization": not optimize}),
        ("onnx shapes only", {"skip_optimization": not optimize, "skip_symbolic_shape": True}),
    )
    for i, (note, kwargs) in enumerate(attempts):
        dst = workdir / f"prepared{i}.onnx"
        try:
            with _ort_quiet():
                quant_pre_process(str(src), str(dst), **kwargs)
            return onnx.load_model(str(dst)), note
        except Exception as e:  # symbolic shape inference cannot handle every model
            last = f"{type(e).__name__}: {str(e)[:200]}"
    # quantize_static still works without pre-processing (it runs onnx shape inference itself)
    return model, f"not pre-processed ({last})"


class Int8Quantizer:
    """Prepared model + calibration cache; :meth:`quantize` re-quantizes with exclusions.

    Use as a context manager: work files live in a temporary folder removed on exit.
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
    ):
        if calibration not in CALIBRATIONS:
            raise InputError(
                f"unknown calibration {calibration!r}; choose one of {', '.join(CALIBRATIONS)}"
            )
        if activation_type not in ("uint8", "int8"):
            raise InputError(f"activation_type must be 'uint8' or 'int8', got {activation_type!r}")
        self.calibration_dataset = as_dataset(calibration_dataset, "calibration_dataset")
        self.source = ensure_node_names(load_model(model))
        self.source_names = [n.name for n in self.source.graph.node]
        self.per_channel = bool(per_channel)
        self.calibration = calibration
        self.reduce_range = (not cpu_has_vnni()) if reduce_range is None else bool(reduce_range)
        self.activation_type = activation_type
        self.optimize = optimize
        self.percentile = float(percentile)
        self.extra_options = dict(extra_options or {})
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.prepared: onnx.ModelProto | None = None
        self.prepare_note = ""
        self.prepared_names: list[str] = []
        self._count = 0

    # -- lifecycle
    def __enter__(self) -> Int8Quantizer:
        self._tmp = tempfile.TemporaryDirectory(prefix="wb-int8-")
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
            raise RuntimeError("Int8Quantizer must be used inside a 'with' block")
        return Path(self._tmp.name)

    def _setup(self) -> None:
        self.prepared, self.prepare_note = _prepare(self.source, self.workdir, self.optimize)
        self.prepared_names = [n.name for n in self.prepared.graph.node]
        onnx.save_model(self.prepared, self.workdir / "prepared.onnx")
        self._calibrate()

    # -- ORT arguments
    def _ort_args(self) -> dict[str, Any]:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

        extra = {
            # per-tensor 'percentile' keeps 99.999 % of the histogram mass, both tails
            "CalibPercentile": self.percentile,
            **self.extra_options,
        }
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
            "extra_options": extra,
            "calibration_cache_path": str(self.workdir / "ranges.json"),
        }

    def _calibrate(self) -> None:
        """Collect activation ranges once (ORT's calibrator); later quantizations reuse them."""
        from onnxruntime.quantization import quantize_static

        n = len(self.calibration_dataset)
        with task(f"int8 calibration ({self.calibration})", n) as t, _ort_quiet():
            try:
                quantize_static(
                    str(self.workdir / "prepared.onnx"),
                    str(self.workdir / "calibrated.onnx"),
                    _FeedsReader(self.calibration_dataset, self._input_specs(), t),
                    **self._ort_args(),
                )
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

    def _input_specs(self) -> dict[str, np.dtype]:
        return {name: onnx_to_numpy_dtype(elem) for name, elem, _ in input_signature(self.source)}

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

    def quantize(
        self, exclude: Iterable[str] = (), auto_float: Iterable[str] = ()
    ) -> onnx.ModelProto:
        """QDQ model with ``exclude`` (and ``auto_float``) nodes left in float, same ranges."""
        auto = self.check_nodes(auto_float, "auto_float")
        exclude = self._surviving(self.check_nodes(tuple(exclude) + auto))
        if not exclude and hasattr(self, "full"):
            return load_model(self.full)
        from onnxruntime.quantization import quantize_static

        self._count += 1
        out = f"q{self._count}.onnx"
        with _ort_quiet():
            quantize_static(
                str(self.workdir / "prepared.onnx"),
                str(self.workdir / out),
                None,  # ranges come from the calibration cache
                nodes_to_exclude=list(exclude),
                **self._ort_args(),
            )
        return self._load(out, exclude, auto)

    def _load(
        self, filename: str, exclude: tuple[str, ...], auto: tuple[str, ...] = ()
    ) -> onnx.ModelProto:
        path = self.workdir / filename
        model = onnx.load_model(str(path))
        path.unlink()
        if exclude:
            model = keep_float(model, exclude)
        # quant_pre_process's optimizer declares every ORT domain; keep only the used ones
        used = {n.domain for n in model.graph.node} | {""}
        kept = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
        del model.opset_import[:]
        model.opset_import.extend(kept)
        info = {
            "calibration": self.calibration,
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "activations": self.activation_type,
            "calibration_items": len(self.calibration_dataset),
            "prepared": self.prepare_note,
            "excluded": [n for n in exclude if n not in auto],
            "auto_float": list(auto),
        }
        entry = next((p for p in model.metadata_props if p.key == METADATA_KEY), None)
        if entry is None:
            entry = model.metadata_props.add()
            entry.key = METADATA_KEY
        entry.value = json.dumps(info, sort_keys=True)
        return model


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

    wanted = set(nodes)
    # channel counts of the DQ outputs (unknown domains: the quantizer's value_info only)
    m = ir.from_proto(inferred(model))
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
    return (
        f"no node of model {model.graph.name!r} runs in int8 after quantization{excluded}: "
        f"ONNX Runtime's QDQ quantizer does not quantize its ops ({', '.join(ops)}) or all "
        "were excluded; the result would be a float model, so none is returned"
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
    model: onnx.ModelProto, feeds: Iterable[Mapping[str, np.ndarray]]
) -> list[list[np.ndarray]]:
    """Every output of ``model`` (ORT CPU) for each feeds dict."""
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
    reference = run_outputs(q.prepared, feeds)
    base = output_noise(run_outputs(q.quantize(exclude), feeds), reference)
    keep = []
    for name in edges:
        noise = output_noise(run_outputs(q.quantize(exclude + (name,)), feeds), reference)
        if noise * 2.0 <= base:  # at least halves the output noise power
            keep.append(name)
    return keep


def quantize_int8(
    model: str | os.PathLike[str] | onnx.ModelProto,
    calibration_dataset: Dataset | Iterable[Mapping[str, Any]],
    per_channel: bool = True,
    exclude_nodes: Iterable[str] = (),
    calibration: str = DEFAULT_CALIBRATION,
    *,
    reduce_range: bool | None = None,
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
    uses 7-bit weights only on CPUs without VNNI. ``optimize`` runs ORT's ``quant_pre_process``
    graph optimization (BatchNorm folding) first. ``extra_options`` go to ``quantize_static``.
    ``auto_float`` leaves the first/last int8 node in float when that at least halves the
    output noise power vs float on ``auto_float_items`` calibration items (measured, so it is
    only done where it helps; recorded in the model's ``workbench.int8`` metadata).
    The caller's model is not modified; the result is deterministic.
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
    )
    exclude = quantizer.check_nodes(exclude_nodes)  # fail before spending time on calibration
    with quantizer as q:
        kept: list[str] = []
        if auto_float:
            with quiet():
                kept = _edges_to_keep_float(q, exclude, auto_float_items)
        result = q.quantize(exclude, auto_float=kept)
        if not quantized_nodes(result):
            raise UnsupportedError(no_int8_message(q.prepared, exclude))
        return result
