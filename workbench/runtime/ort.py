"""ONNX Runtime backend: sessions for (model, device, hint) and the precision that actually ran."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort

from ..data import onnx_to_numpy_dtype
from ..errors import ModelLoadError, UnsupportedError
from ..precision.hints import Hint
from . import Runner, kernels

if TYPE_CHECKING:
    from ..devices.registry import Device

#: same thread settings for every session so variants are compared fairly (None = ORT default)
INTRA_OP_THREADS: int | None = None

_FLOAT_NAMES = {
    onnx.TensorProto.FLOAT: "f32",
    onnx.TensorProto.FLOAT16: "f16",
    onnx.TensorProto.BFLOAT16: "bf16",
    onnx.TensorProto.DOUBLE: "f64",
}
_QUANT_OPS = {
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeLinear",
}


def session_options(optimized_model_path: str | None = None) -> ort.SessionOptions:
    """Session options shared by every ORT session the workbench makes."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if INTRA_OP_THREADS:
        so.intra_op_num_threads = INTRA_OP_THREADS
    if optimized_model_path:
        so.optimized_model_filepath = optimized_model_path
    return so


def make_session(
    model: onnx.ModelProto, provider: str = kernels.CPU, options: ort.SessionOptions | None = None
) -> ort.InferenceSession:
    """An InferenceSession from a ModelProto, with ORT's error turned into a clear one."""
    try:
        return ort.InferenceSession(
            model.SerializeToString(),
            sess_options=options or session_options(),
            providers=[provider],
        )
    except ValueError as e:  # > 2 GB protos cannot be serialized in memory
        raise ModelLoadError(
            f"model {model.graph.name!r} too large for an in-memory session: {e}"
        ) from e
    except Exception as e:
        raise UnsupportedError(
            f"ONNX Runtime ({provider}) cannot load model {model.graph.name!r}: {str(e).strip()[:600]}"
        ) from e


def compute_precision(model: onnx.ModelProto, provider: str = kernels.CPU) -> str:
    """Precision the model actually computes in on ``provider``.

    int8 when Q/DQ or integer kernels are present; otherwise the float types of compute nodes,
    counting a float16/bfloat16 node without a kernel on ``provider`` as f32 (ORT inserts casts
    and computes it in float32).
    """
    from ..precision.tensor_types import node_float_types

    counts: collections.Counter[str] = collections.Counter()
    opset = {o.domain or "": o.version for o in model.opset_import}
    for node, elem_types in node_float_types(model):
        if node.op_type in _QUANT_OPS:
            counts["int8"] += 1
            continue
        if not elem_types or node.op_type in ("Cast", "Constant", "Identity", "Shape", "Reshape"):
            continue
        t = elem_types[0]
        if t not in _FLOAT_NAMES:
            continue
        name = _FLOAT_NAMES[t]
        if name in ("f16", "bf16"):
            ok, _ = kernels.kernel_for(
                node.op_type,
                node.domain,
                opset.get(node.domain or "", 0) or opset.get("", 0),
                [t] * max(len(node.input), 1),
                provider=provider,
            )
            if not ok:
                name = "f32"
        counts[name] += 1
    if not counts:
        return "f32"
    if counts.get("int8"):
        return "int8"
    order = [k for k, _ in counts.most_common()]
    return "+".join(order) if len(order) > 1 else order[0]


class OrtRunner(Runner):
    def __init__(self, model: onnx.ModelProto, device: Device, hint: Hint, provider: str):
        self.device = device
        self.hint = hint
        self.session = make_session(model, provider)
        self.input_specs = {i.name: _np_type(i.type) for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.precision_requested = hint.inference_precision or (
            "f32" if hint.execution_mode == "accuracy" else "default"
        )
        self.precision_ran = compute_precision(model, provider)
        notes = []
        if hint.inference_precision and hint.inference_precision != self.precision_ran:
            notes.append(
                f"ONNX Runtime runs the model as stored; requested {hint.inference_precision}, "
                f"ran {self.precision_ran} (convert the model to change it)"
            )
        self.notes = tuple(notes)

    def run_prepared(self, prepared: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, prepared)


_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def _np_type(type_str: str) -> np.dtype:
    if type_str == "tensor(bfloat16)":
        return onnx_to_numpy_dtype(onnx.TensorProto.BFLOAT16)
    return np.dtype(_ORT_TYPES.get(type_str, np.float32))


def open_ort(model: onnx.ModelProto, device: Device, hint: Hint) -> OrtRunner:
    """Runner on the ORT execution provider behind ``device``."""
    return OrtRunner(model, device, hint, device.provider or kernels.CPU)
