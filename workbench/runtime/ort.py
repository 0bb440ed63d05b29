"""ONNX Runtime backend: sessions for (model, device, hint) and the precision that actually ran."""

from __future__ import annotations

import collections
import os
import tempfile
from collections.abc import Mapping

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import EncodeError

from ..data import InputSpec, input_specs, onnx_to_numpy_dtype
from ..errors import ModelLoadError, UnsupportedError
from ..model import iter_graphs, iter_tensors, save_model, worth_staging
from ..tensor_types import node_float_types
from . import kernels
from .base import DEFAULT_CONFIG, Device, RunConfig, Runner
from .hints import (
    Hint,
    requested_precision,
    sort_precisions,
    summarize_precisions,
    warn_if_not_honoured,
)

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


def session_options(
    optimized_model_path: str | None = None, config: RunConfig = DEFAULT_CONFIG
) -> ort.SessionOptions:
    """Session options shared by every ORT session the workbench makes."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if config.threads:
        so.intra_op_num_threads = config.threads
    if optimized_model_path:
        so.optimized_model_filepath = optimized_model_path
        # weights of the optimized copy go to a side file: a > 2 GB model cannot be written
        # inline, and the copy is only read for its graph (load_external_data=False)
        so.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name",
            os.path.basename(optimized_model_path) + ".data",
        )
        so.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
        )
    if config.model_dir:  # a light proto: its external data is read from this folder
        so.add_session_config_entry(
            "session.model_external_initializers_file_folder_path", config.model_dir
        )
    return so


def make_session(
    model: onnx.ModelProto, provider: str = kernels.CPU, options: ort.SessionOptions | None = None
) -> ort.InferenceSession:
    """An InferenceSession from a ModelProto, with ORT's error turned into a clear one.

    Big models (``workbench.model.STAGE_BYTES``, 256 MB; protobuf cannot serialize 2 GB in memory at all) go through a
    temporary folder with external data, written tensor by tensor from the caller's proto
    (never a serialized copy of the whole model) and removed once ORT holds the weights.
    """
    try:
        if worth_staging(model):
            with tempfile.TemporaryDirectory(prefix="wb-ort-") as tmp:
                path = save_model(model, os.path.join(tmp, "model.onnx"), external_data=True)
                return ort.InferenceSession(
                    str(path), sess_options=options or session_options(), providers=[provider]
                )
        return ort.InferenceSession(
            model.SerializeToString(),
            sess_options=options or session_options(),
            providers=[provider],
        )
    except (ValueError, EncodeError) as e:  # > 2 GB protos cannot be serialized in memory
        raise ModelLoadError(
            f"model {model.graph.name!r} too large for an in-memory session: {e}"
        ) from e
    except Exception as e:
        raise UnsupportedError(
            f"ONNX Runtime ({provider}) cannot load model {model.graph.name!r}: {str(e).strip()[:600]}"
        ) from e


def compute_precision(model: onnx.ModelProto, provider: str = kernels.CPU) -> str:
    """Precision the model computes in on ``provider``, from the stored graph alone.

    int8 when Q/DQ or integer kernels are present; otherwise the float types of compute nodes,
    counting a float16/bfloat16 node without a kernel on ``provider`` as f32 (ORT inserts casts
    and computes it in float32). :class:`OrtRunner` refines this from the optimized graph.
    """
    counts: collections.Counter[str] = collections.Counter()
    opset = {o.domain or "": o.version for o in model.opset_import}
    for node, elem_types in node_float_types(model):
        if node.op_type in _QUANT_OPS:
            counts["int8"] += 1
            continue
        if not elem_types or node.op_type in _GLUE_OPS:
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
    return summarize_precisions(counts)


#: nodes that move or reinterpret data; they do not say which precision the model computes in
_GLUE_OPS = {
    "Cast",
    "Constant",
    "Identity",
    "Shape",
    "Size",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Concat",
    "Split",
    "Slice",
    "Gather",
    "Expand",
    "ReorderInput",
    "ReorderOutput",
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
}
_LOW_FLOATS = (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
_INT8 = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)


def _is_int8_kernel(op_type: str) -> bool:
    return op_type.startswith("QLinear") or op_type in (
        "QGemm",
        "MatMulInteger",
        "ConvInteger",
        "MatMulIntegerToFloat",
        "DynamicQuantizeMatMul",
        "QAttention",
    )


def needs_graph_check(model: onnx.ModelProto) -> bool:
    """Does the model hold f16/bf16 tensors or quantization nodes? (f32 models skip the check)."""
    if any(t.data_type in _LOW_FLOATS for t in iter_tensors(model)):
        return True
    for g in iter_graphs(model.graph):
        for vi in (*g.input, *g.output, *g.value_info):
            if vi.type.tensor_type.elem_type in _LOW_FLOATS:
                return True
        for node in g.node:
            if node.op_type in _QUANT_OPS or _is_int8_kernel(node.op_type):
                return True
            if node.op_type == "Cast" and any(
                a.name == "to" and a.i in _LOW_FLOATS for a in node.attribute
            ):
                return True
    return False


def executed_precisions(optimized: onnx.ModelProto) -> dict[str, collections.Counter[str]]:
    """Precision → Counter of op types of the compute nodes in an ORT-optimized model.

    Element types are propagated from graph inputs, initializers and Casts (the saved graph's
    value_info is stale after ORT's rewrites), through If/Loop/Scan bodies too: a node computes
    in the type of its first float or integer input; QLinear*/integer kernels count as int8.
    """
    ran: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    _walk_types(optimized.graph, {}, ran)
    return dict(ran)


def _walk_types(
    g: onnx.GraphProto, types: dict[str, int], ran: dict[str, collections.Counter[str]]
) -> None:
    types.update({i.name: i.type.tensor_type.elem_type for i in g.input})
    types.update({t.name: t.data_type for t in g.initializer})
    for node in g.node:
        bodies = [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]
        for body in bodies:  # outer values are visible inside; body outputs type the node's
            _walk_types(body, types, ran)
        if bodies:
            outs = [o.name for o in bodies[0].output][1 if node.op_type == "Loop" else 0 :]
            for o, inner in zip(node.output, outs, strict=False):
                if o and inner in types:
                    types[o] = types[inner]
            continue
        precision = node_precision(node, types)
        out = node_output_type(node, types)
        for o in node.output:
            if o and out:
                types[o] = out
        if precision:
            label = (
                node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            )
            ran[precision][label] += 1


def node_output_type(node: onnx.NodeProto, types: Mapping[str, int]) -> int | None:
    """Element type a (non-control-flow) node produces, from its inputs' known types."""
    if node.op_type == "Cast":
        return next((a.i for a in node.attribute if a.name == "to"), None)
    if node.op_type in ("Shape", "Size"):
        return onnx.TensorProto.INT64
    if node.op_type == "Constant":
        return next((a.t.data_type for a in node.attribute if a.name == "value"), None)
    if node.op_type == "QuantizeLinear":
        zp = node.input[2] if len(node.input) > 2 else ""
        return types.get(zp, onnx.TensorProto.UINT8)
    if node.op_type == "DequantizeLinear":
        return types.get(node.input[1]) if len(node.input) > 1 else None
    known = [types[i] for i in node.input if i in types]
    return next((k for k in known if k in _FLOAT_NAMES or k in _INT8), None)


def node_precision(node: onnx.NodeProto, types: Mapping[str, int]) -> str:
    """The precision a node computes in: int8 for integer kernels and inputs, else the type of
    its first typed input; '' for glue and untyped nodes."""
    known = [types[i] for i in node.input if i in types]
    if node.op_type in _GLUE_OPS or not known:
        return ""
    if _is_int8_kernel(node.op_type) or known[0] in _INT8:
        return "int8"
    return _FLOAT_NAMES.get(known[0], "")


def _describe_ops(ops: collections.Counter[str]) -> str:
    return ", ".join(f"{op} ×{n}" if n > 1 else op for op, n in sorted(ops.items()))


class OrtRunner(Runner):
    """ORT session for (model, provider). ORT has no precision setting: it runs the model as
    stored, except that kernels missing for f16/bf16 make it insert casts and compute in f32.
    For models with low-precision or quantized nodes the optimized graph ORT saves at session
    creation is read to report what actually ran; f32 models skip that (nothing to lower).
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        device: Device,
        hint: Hint,
        provider: str,
        config: RunConfig = DEFAULT_CONFIG,
    ):
        self.device = device
        self.hint = hint
        self.provider = provider
        self.precision_requested = requested_precision(hint)
        #: what makes two runners time the same thing (hints do not change ORT sessions)
        self.config = ("ort", provider, config.threads)
        notes: list[str] = []
        if needs_graph_check(model):
            with tempfile.TemporaryDirectory(prefix="wb-ort-") as tmp:
                path = os.path.join(tmp, "optimized.onnx")
                if config.model_dir or worth_staging(model):
                    # a session that saved its optimized graph keeps about twice the memory
                    # for life: a big model's check runs in a throwaway session
                    make_session(model, provider, session_options(path, config))
                    self.session = make_session(model, provider, session_options(None, config))
                else:
                    self.session = make_session(model, provider, session_options(path, config))
                ran = _read_executed(path)
            if ran is None:
                self.precision_ran = compute_precision(model, provider)
                notes.append(
                    "optimized graph unavailable; precision estimated from the stored graph"
                )
            else:
                self.precision_ran = summarize_precisions(
                    {p: sum(c.values()) for p, c in ran.items()}
                )
                notes.extend(_fallback_notes(ran, provider))
        else:
            self.session = make_session(model, provider, session_options(None, config))
            self.precision_ran = "f32"
        declared = input_specs(model)
        self.input_specs = {
            i.name: _input_spec(i, declared.get(i.name)) for i in self.session.get_inputs()
        }
        self.output_names = [o.name for o in self.session.get_outputs()]
        req = self.precision_requested
        if req != "default" and req != self.precision_ran:
            notes.append(
                f"requested {req}, ran {self.precision_ran}: ONNX Runtime has no "
                "inference-precision setting; it runs the stored model with the kernels it has "
                "(compare converted variants instead)"
            )
        self.notes = tuple(notes)
        if config.warn:
            warn_if_not_honoured(device.name, req, self.precision_ran, self.notes)

    def run_prepared(self, prepared: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, prepared)

    def close(self) -> None:
        """Free the session (and the weights it holds) now, not when the runner is collected."""
        self.session = None


def _read_executed(path: str) -> dict[str, collections.Counter[str]] | None:
    try:
        return executed_precisions(onnx.load(path, load_external_data=False))
    except Exception:  # unreadable or unwritten optimized graph: reporting never breaks a run
        return None


def _fallback_notes(ran: dict[str, collections.Counter[str]], provider: str) -> list[str]:
    f32 = ran.get("f32")
    if not f32:
        return []
    lowered = [p for p in ("f16", "bf16", "int8") if p in ran]
    if not lowered:
        return [
            f"{provider} computed every compute node in f32 ({_describe_ops(f32)}): it has no "
            "kernels for them in the stored precision, so ONNX Runtime inserted casts"
        ]
    total = sum(sum(c.values()) for c in ran.values())
    return [
        f"{provider} computed {sum(f32.values())} of {total} compute nodes in f32 next to "
        f"{'/'.join(lowered)} ({_describe_ops(f32)}): no kernel in the lower precision, "
        "not quantized, or Q/DQ not fused"
    ]


#: ops whose kernel types decide whether a provider really computes in a precision
_KEY_OPS = ("Conv", "MatMul", "Gemm")
_INT8_KEY_OPS = ("QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger")


def ort_precisions(provider: str = kernels.CPU) -> tuple[str, ...]:
    """Precisions ``provider`` computes in, from ORT's kernel registry.

    A float precision counts when the provider has a kernel of that type for a key compute op
    (Conv, MatMul, Gemm); int8 when it has quantized Conv/MatMul kernels. ORT CPU's handful of
    float16 kernels for other ops does not make it an f16 device.
    """

    def has(ops: tuple[str, ...], type_str: str | None) -> bool:
        for op in ops:
            for k in kernels.kernels(op, "", None, provider):
                if type_str is None or any(type_str in ts for ts in k.constraints.values()):
                    return True
        return False

    found = {
        name
        for name, t in (("f32", "float"), ("f16", "float16"), ("bf16", "bfloat16"))
        if has(_KEY_OPS, f"tensor({t})")
    }
    if has(_INT8_KEY_OPS, None):
        found.add("int8")
    return sort_precisions(found) or ("f32",)


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


def _input_spec(arg: ort.NodeArg, declared: InputSpec | None) -> InputSpec:
    """Dtype and shape of a session input. The shape comes from the model's declaration:
    ORT reports ``[]`` both for scalars and for inputs declared without a shape."""
    if not arg.type.startswith("tensor("):  # sequence / map inputs pass through unchecked
        return InputSpec(None, None)
    return InputSpec(_np_type(arg.type), declared.shape if declared is not None else None)


def _np_type(type_str: str) -> np.dtype:
    if type_str == "tensor(bfloat16)":
        return onnx_to_numpy_dtype(onnx.TensorProto.BFLOAT16)
    return np.dtype(_ORT_TYPES.get(type_str, np.float32))


def open_ort(
    model: onnx.ModelProto, device: Device, hint: Hint, config: RunConfig = DEFAULT_CONFIG
) -> OrtRunner:
    """Runner on the ORT execution provider behind ``device``."""
    return OrtRunner(model, device, hint, device.provider or kernels.CPU, config)
