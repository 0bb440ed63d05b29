"""Element types of every tensor in a model (graph inputs, initializers, inferred intermediates)."""

from __future__ import annotations

from collections.abc import Iterator

import onnx

from ..model import iter_graphs


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Tensor name → ONNX element type, subgraphs included (shape inference where possible)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    except Exception:  # unknown domains or >2 GB: fall back to the declared types
        inferred = model
    types: dict[str, int] = {}
    for g in iter_graphs(inferred.graph):
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
    return types


def node_float_types(model: onnx.ModelProto) -> Iterator[tuple[onnx.NodeProto, list[int]]]:
    """(node, element types of its inputs, or of its outputs when it has none) for every node."""
    types = tensor_types(model)
    for g in iter_graphs(model.graph):
        for node in g.node:
            names = [n for n in node.input if n] or list(node.output)
            yield node, [types[n] for n in names if n in types]
