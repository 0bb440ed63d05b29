"""Element types of every tensor in a model (graph inputs, initializers, inferred intermediates)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from types import MappingProxyType

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

from .errors import UnsupportedError
from .model import iter_graphs


def inferred_ir(model: onnx.ModelProto, data_prop: bool = False) -> ir.Model:
    """IR of ``model`` with ONNX shape/type inference applied by onnx-ir's ShapeInferencePass
    (it hides initializer data from ONNX, so multi-GB models cost only their structure).

    Declared types stay where inference fails (unknown domains, odd graphs). ``model`` is not
    modified. Raises :class:`UnsupportedError` where onnx-ir cannot represent the model (map
    types, e.g. the ZipMap outputs of ai.onnx.ml classifiers).
    """
    try:
        m = ir.from_proto(model)
    except ir.serde.SerdeError as e:
        cause = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        raise UnsupportedError(
            f"model {model.graph.name!r} cannot be represented in onnx-ir ({cause}); "
            "this step needs tensor-typed values (drop ZipMap-style map outputs, e.g. "
            "skl2onnx options={'zipmap': False})"
        ) from None
    # Unknown domains or odd graphs must not stop a step that wants only what ONNX can infer.
    return ShapeInferencePass(check_type=False, strict_mode=False, data_prop=data_prop)(m).model


def inferred(model: onnx.ModelProto, data_prop: bool = False) -> onnx.ModelProto:
    """``model`` with ONNX shape/type inference applied, or ``model`` itself where inference
    fails (unknown domains, invalid or oversized graphs): callers then use the declared types.

    For callers that keep working on a proto; IR users call :func:`inferred_ir` (the onnx-ir pass).
    """
    try:
        return onnx.shape_inference.infer_shapes(
            model, check_type=False, strict_mode=False, data_prop=data_prop
        )
    except Exception:
        return model


def _light_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without initializer data (initializers become typed inputs) for inference.

    Kept beside onnx-ir's ShapeInferencePass (which does the same inside) because the pass
    needs an IR model: on the real-model corpus, proto → IR → pass costs 5-10x this copy plus
    inference (e.g. 0.5 s vs 40 ms for a YOLOv8n), and types are read on every runner open.
    """
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.functions.extend(model.functions)
    g, src = light.graph, model.graph
    g.name = src.name
    g.node.extend(src.node)
    g.input.extend(src.input)
    g.output.extend(src.output)
    g.value_info.extend(src.value_info)
    declared = {i.name for i in src.input}
    for t in src.initializer:
        if t.name not in declared:
            g.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return light


def graph_value_types(model: onnx.ModelProto) -> list[dict[str, int]]:
    """Per graph, in :func:`iter_graphs` order: tensor name → ONNX element type.

    Shape inference runs on a copy without initializer data, so multi-GB models cost no more
    than their graph structure. Declared types are used where inference fails.
    """
    per_graph: list[dict[str, int]] = []
    for g in iter_graphs(inferred(_light_copy(model)).graph):
        types: dict[str, int] = {}
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
                types[vi.name] = vi.type.tensor_type.elem_type
        for init in g.initializer:
            types[init.name] = init.data_type
        for node in g.node:
            if node.op_type == "Constant" and node.output:
                for a in node.attribute:
                    if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                        types[node.output[0]] = a.t.data_type
        per_graph.append(types)
    return per_graph


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Tensor name → ONNX element type, subgraphs included (shape inference where possible)."""
    types: dict[str, int] = {}
    for graph_types in graph_value_types(model):
        types.update(graph_types)
    return types


def node_float_types(model: onnx.ModelProto) -> Iterator[tuple[onnx.NodeProto, list[int]]]:
    """(node, element types of its inputs, or of its outputs when it has none) for every node."""
    types = tensor_types(model)
    for g in iter_graphs(model.graph):
        for node in g.node:
            names = [n for n in node.input if n] or list(node.output)
            yield node, [types[n] for n in names if n in types]


@functools.cache
def schema_type_constraints(op_type: str, domain: str, opset: int) -> Mapping[str, frozenset[str]]:
    """Type-constraint name → type strings the ONNX schema allows (empty without a schema).

    E.g. ``Resize`` at opset 19 gives ``{"T1": {...}, "T2": {"tensor(float16)", ...}}``; fixed
    positions such as Resize's ``scales`` (``tensor(float)``) are not constraints and not listed.
    """
    try:
        schema = onnx.defs.get_schema(op_type, opset, "" if domain in ("", "ai.onnx") else domain)
    except onnx.defs.SchemaError:
        return MappingProxyType({})
    return MappingProxyType(
        {tc.type_param_str: frozenset(tc.allowed_type_strs) for tc in schema.type_constraints}
    )
