"""Builders for every small model the tests need (DESIGN.md, Testing).

Each builder returns a fresh, checker-valid ``onnx.ModelProto`` with deterministic weights.
Sections are grouped by feature; each feature adds its builders under its own heading.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
F = TensorProto.FLOAT


def make(
    nodes, inputs, outputs, inits=(), name="test", opset=OPSET, extra_opsets=(), value_info=()
) -> onnx.ModelProto:
    """Wrap nodes into a checked model with the default opset (plus ``extra_opsets``)."""
    graph = helper.make_graph(
        list(nodes), name, list(inputs), list(outputs), list(inits), value_info=list(value_info)
    )
    opsets = [helper.make_opsetid("", opset), *[helper.make_opsetid(d, v) for d, v in extra_opsets]]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="workbench-tests")
    model.ir_version = 8 if opset < 21 else 10
    onnx.checker.check_model(model)
    return model


def tensor(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array), name)


def vi(name: str, elem_type: int = F, shape=None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, shape)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- basic models


def mlp(
    in_features: int = 16, hidden: int = 32, out_features: int = 4, seed: int = 0
) -> onnx.ModelProto:
    """x[N,in] → MatMul/Add/Relu → MatMul/Add → y[N,out]."""
    r = rng(seed)
    inits = [
        tensor("w1", r.standard_normal((in_features, hidden)).astype(np.float32) * 0.3),
        tensor("b1", r.standard_normal(hidden).astype(np.float32) * 0.1),
        tensor("w2", r.standard_normal((hidden, out_features)).astype(np.float32) * 0.3),
        tensor("b2", r.standard_normal(out_features).astype(np.float32) * 0.1),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1_bias"),
        helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"], name="fc2"),
        helper.make_node("Add", ["h3", "b2"], ["y"], name="fc2_bias"),
    ]
    return make(
        nodes, [vi("x", F, ["N", in_features])], [vi("y", F, ["N", out_features])], inits, "mlp"
    )


def small_cnn(channels: int = 4, seed: int = 0) -> onnx.ModelProto:
    """x[N,1,8,8] → Conv/Relu/MaxPool → Conv/Relu → GlobalAveragePool → Flatten → Gemm → y[N,3]."""
    r = rng(seed)
    c = channels
    inits = [
        tensor("c1.w", r.standard_normal((c, 1, 3, 3)).astype(np.float32) * 0.5),
        tensor("c1.b", r.standard_normal(c).astype(np.float32) * 0.1),
        tensor("c2.w", r.standard_normal((2 * c, c, 3, 3)).astype(np.float32) * 0.3),
        tensor("c2.b", r.standard_normal(2 * c).astype(np.float32) * 0.1),
        tensor("fc.w", r.standard_normal((3, 2 * c)).astype(np.float32) * 0.5),
        tensor("fc.b", r.standard_normal(3).astype(np.float32) * 0.1),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["a1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a1"], ["a2"], name="relu1"),
        helper.make_node(
            "MaxPool", ["a2"], ["a3"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Conv", ["a3", "c2.w", "c2.b"], ["a4"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a4"], ["a5"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["a5"], ["a6"], name="gap"),
        helper.make_node("Flatten", ["a6"], ["a7"], name="flatten"),
        helper.make_node("Gemm", ["a7", "fc.w", "fc.b"], ["y"], name="fc", transB=1),
    ]
    return make(nodes, [vi("x", F, ["N", 1, 8, 8])], [vi("y", F, ["N", 3])], inits, "small_cnn")


def attention_block(seq: int = 8, dim: int = 16, seed: int = 0) -> onnx.ModelProto:
    """Single-head self-attention with LayerNormalization and a residual: x[N,seq,dim] → y."""
    r = rng(seed)
    inits = [
        tensor(n, r.standard_normal((dim, dim)).astype(np.float32) * 0.25)
        for n in ("wq", "wk", "wv", "wo")
    ]
    inits += [
        tensor("scale", np.array(1.0 / np.sqrt(dim), np.float32)),
        tensor("ln.g", np.ones(dim, np.float32)),
        tensor("ln.b", np.zeros(dim, np.float32)),
    ]
    n = helper.make_node
    nodes = [
        n("LayerNormalization", ["x", "ln.g", "ln.b"], ["xn"], name="ln", axis=-1),
        n("MatMul", ["xn", "wq"], ["q"], name="q_proj"),
        n("MatMul", ["xn", "wk"], ["k"], name="k_proj"),
        n("MatMul", ["xn", "wv"], ["v"], name="v_proj"),
        n("Transpose", ["k"], ["kt"], name="k_t", perm=[0, 2, 1]),
        n("MatMul", ["q", "kt"], ["s0"], name="scores"),
        n("Mul", ["s0", "scale"], ["s1"], name="scale_scores"),
        n("Softmax", ["s1"], ["p"], name="softmax", axis=-1),
        n("MatMul", ["p", "v"], ["ctx"], name="context"),
        n("MatMul", ["ctx", "wo"], ["o"], name="out_proj"),
        n("Add", ["o", "x"], ["y"], name="residual"),
    ]
    return make(
        nodes, [vi("x", F, ["N", seq, dim])], [vi("y", F, ["N", seq, dim])], inits, "attention"
    )


def chain(
    n_nodes: int = 100,
    width: int = 8,
    ops: tuple[str, ...] = ("Add", "Relu", "Mul", "Sigmoid"),
    seed: int = 0,
) -> onnx.ModelProto:
    """A long elementwise chain of ``n_nodes`` nodes cycling through ``ops`` (linear-time tests)."""
    r = rng(seed)
    nodes, inits = [], []
    prev = "x"
    for i in range(n_nodes):
        op = ops[i % len(ops)]
        out = "y" if i == n_nodes - 1 else f"t{i}"
        if op in ("Add", "Mul", "Sub", "Div"):
            c = f"c{i}"
            value = (
                1.0 + 0.01 * r.standard_normal(width)
                if op in ("Mul", "Div")
                else 0.01 * r.standard_normal(width)
            )
            inits.append(tensor(c, value.astype(np.float32)))
            nodes.append(helper.make_node(op, [prev, c], [out], name=f"n{i}"))
        else:
            nodes.append(helper.make_node(op, [prev], [out], name=f"n{i}"))
        prev = out
    return make(
        nodes, [vi("x", F, ["N", width])], [vi("y", F, ["N", width])], inits, f"chain{n_nodes}"
    )


def unnamed_nodes() -> onnx.ModelProto:
    """MLP whose nodes have no names, plus two nodes sharing a name."""
    m = mlp()
    for node in m.graph.node:
        node.name = ""
    m.graph.node[3].name = "dup"
    m.graph.node[4].name = "dup"
    return m


def with_external_data(directory: Path, location: str = "weights.bin") -> Path:
    """Save :func:`mlp` with its weights in an external file; return the .onnx path."""
    m = mlp(in_features=64, hidden=64)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ext.onnx"
    onnx.save_model(
        m,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )
    return path


def external_data_escaping(directory: Path) -> Path:
    """A model whose external-data location points outside its folder (path traversal)."""
    inner = directory / "models"
    inner.mkdir(parents=True, exist_ok=True)
    secret = directory / "secret.bin"
    secret.write_bytes(np.arange(64 * 64, dtype=np.float32).tobytes())
    path = with_external_data(inner)
    m = onnx.load(path, load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../secret.bin"
    onnx.save_model(m, path)
    return path


# ----------------------------------------------------------------------------- float16 (issue 4)

#: every failure family of the float16 converter (builder names in this module); the tests and
#: benchmarks/bench_float16.py iterate over the same list
FLOAT16_FAMILIES = (
    "f16_casts",
    "f16_if",
    "f16_loop",
    "f16_scan",
    "f16_constant_nodes",
    "f16_shared_initializer",
    "unnamed_nodes",
    "f16_float_only_inputs",
    "f16_other_domains",
    "f16_int_bool_string",
    "f16_dynamic",
    "f16_extreme_constants",
    "f16_odd_graphs",
    "attention_block",
    "small_cnn",
)

#: families with control flow, Constant weights, shared initializers, unnamed nodes and casts,
#: which automatic mixed precision must handle too
STRUCTURAL_FAMILIES = FLOAT16_FAMILIES[:7]


def f16_casts() -> onnx.ModelProto:
    """Pre-existing Cast(to=FLOAT) and Cast(to=DOUBLE) nodes; a cast to float feeds an output."""
    n = helper.make_node
    w = tensor("w", (1.0 + 0.1 * rng(4).standard_normal(8)).astype(np.float32))
    nodes = [
        n("Relu", ["x"], ["a"], name="relu"),
        n("Cast", ["a"], ["b"], name="cast_float", to=F),
        n("Mul", ["b", "w"], ["c"], name="mul"),
        n("Cast", ["c"], ["yd"], name="cast_double", to=TensorProto.DOUBLE),
        n("Sigmoid", ["c"], ["d"], name="sigmoid"),
        n("Cast", ["d"], ["y"], name="cast_out", to=F),
        n("Cast", ["xi"], ["xf"], name="cast_int_to_float", to=F),
        n("Add", ["xf", "c"], ["z"], name="add_int"),
    ]
    inputs = [vi("x", F, ["N", 8]), vi("xi", TensorProto.INT64, ["N", 8])]
    outputs = [vi("y", F, ["N", 8]), vi("yd", TensorProto.DOUBLE, ["N", 8]), vi("z", F, ["N", 8])]
    return make(nodes, inputs, outputs, [w], "f16_casts")


def f16_if() -> onnx.ModelProto:
    """If whose branches use an outer value and an outer initializer; branches compute floats."""
    n = helper.make_node
    inits = [tensor("w", rng(5).standard_normal((8, 8)).astype(np.float32) * 0.3)]
    then_g = helper.make_graph(
        [
            n("MatMul", ["h", "w"], ["t0"], name="then_mm"),
            n("Tanh", ["t0"], ["t_out"], name="then_tanh"),
        ],
        "then",
        [],
        [vi("t_out", F, None)],
    )
    else_g = helper.make_graph(
        [n("Sigmoid", ["h"], ["e_out"], name="else_sigmoid")], "else", [], [vi("e_out", F, None)]
    )
    nodes = [
        n("Relu", ["x"], ["h"], name="relu"),
        n("ReduceSum", ["x"], ["s"], name="sum", keepdims=0),
        n("Greater", ["s", "zero"], ["cond"], name="cond"),
        n("If", ["cond"], ["r"], name="if", then_branch=then_g, else_branch=else_g),
        n("Add", ["r", "h"], ["y"], name="add"),
    ]
    inits.append(tensor("zero", np.array(0.0, np.float32)))
    return make(nodes, [vi("x", F, [2, 8])], [vi("y", F, [2, 8])], inits, "f16_if")


def f16_loop() -> onnx.ModelProto:
    """Loop carrying a float value; the body uses an outer weight."""
    n = helper.make_node
    body = helper.make_graph(
        [
            n("Identity", ["cond_in"], ["cond_out"], name="body_cond"),
            n("MatMul", ["acc", "w"], ["m"], name="body_mm"),
            n("Tanh", ["m"], ["acc_out"], name="body_tanh"),
        ],
        "body",
        [vi("i", TensorProto.INT64, [1]), vi("cond_in", TensorProto.BOOL, [1]), vi("acc", F, None)],
        [vi("cond_out", TensorProto.BOOL, [1]), vi("acc_out", F, None)],
    )
    inits = [
        tensor("w", rng(6).standard_normal((8, 8)).astype(np.float32) * 0.3),
        tensor("trip", np.array(3, np.int64)),
        tensor("true", np.array(True)),
    ]
    nodes = [
        n("Relu", ["x"], ["h"], name="relu"),
        n("Loop", ["trip", "true", "h"], ["r"], name="loop", body=body),
        n("Mul", ["r", "h"], ["y"], name="mul"),
    ]
    return make(nodes, [vi("x", F, ["N", 8])], [vi("y", F, ["N", 8])], inits, "f16_loop")


def f16_scan() -> onnx.ModelProto:
    """Scan accumulating rows of a float sequence (state + scan input/output)."""
    n = helper.make_node
    body = helper.make_graph(
        [
            n("Add", ["state", "row"], ["state_out"], name="body_add"),
            n("Mul", ["row", "k"], ["row_out"], name="body_mul"),
        ],
        "body",
        [vi("state", F, [4]), vi("row", F, [4])],
        [vi("state_out", F, [4]), vi("row_out", F, [4])],
    )
    inits = [tensor("k", np.array(0.5, np.float32)), tensor("s0", np.zeros(4, np.float32))]
    nodes = [
        n("Relu", ["x"], ["h"], name="relu"),
        n("Scan", ["s0", "h"], ["total", "rows"], name="scan", body=body, num_scan_inputs=1),
        n("Add", ["total", "total"], ["y"], name="double"),
    ]
    outputs = [vi("y", F, [4]), vi("rows", F, [6, 4])]
    return make(nodes, [vi("x", F, [6, 4])], outputs, inits, "f16_scan")


def f16_constant_nodes() -> onnx.ModelProto:
    """Weights as Constant nodes (tensor, value_float, value_floats) and ConstantOfShape."""
    n = helper.make_node
    r = rng(7)
    w = numpy_helper.from_array(r.standard_normal((8, 8)).astype(np.float32) * 0.3)
    nodes = [
        n("Constant", [], ["w"], name="const_w", value=w),
        n("Constant", [], ["s"], name="const_scale", value_float=0.5),
        n("Constant", [], ["b"], name="const_bias", value_floats=[0.1] * 8),
        n("Shape", ["x"], ["shp"], name="shape"),
        n(
            "ConstantOfShape",
            ["shp"],
            ["ones"],
            name="ones",
            value=numpy_helper.from_array(np.array([0.25], np.float32)),
        ),
        n("ConstantOfShape", ["shp"], ["zeros"], name="zeros"),
        n("MatMul", ["x", "w"], ["a"], name="mm"),
        n("Mul", ["a", "s"], ["b1"], name="mul"),
        n("Add", ["b1", "b"], ["c"], name="add"),
        n("Add", ["c", "ones"], ["d"], name="add_ones"),
        n("Add", ["d", "zeros"], ["y"], name="add_zeros"),
    ]
    return make(nodes, [vi("x", F, ["N", 8])], [vi("y", F, ["N", 8])], (), "f16_constants")


def f16_shared_initializer() -> onnx.ModelProto:
    """One initializer used by three nodes (block one of them in tests)."""
    n = helper.make_node
    inits = [tensor("w", rng(8).standard_normal((8, 8)).astype(np.float32) * 0.3)]
    nodes = [
        n("MatMul", ["x", "w"], ["a"], name="mm1"),
        n("MatMul", ["a", "w"], ["b"], name="mm2"),
        n("Add", ["b", "w"], ["c"], name="add_w"),
        n("Relu", ["c"], ["y"], name="relu"),
    ]
    return make(nodes, [vi("x", F, [8, 8])], [vi("y", F, [8, 8])], inits, "f16_shared")


def f16_float_only_inputs(opset: int = OPSET) -> onnx.ModelProto:
    """Ops whose float inputs must stay float32 or int in ORT: Resize, Range, TopK, NMS, random."""
    n = helper.make_node
    inits = [
        tensor("scales", np.array([1, 1, 2, 2], np.float32)),
        tensor("roi", np.array([], np.float32)),
        tensor("k", np.array([3], np.int64)),
        tensor("flat", np.array([1, -1], np.int64)),
        tensor("delta", np.array(1.0, np.float32)),
        tensor("start", np.array(0.0, np.float32)),
        tensor("max_out", np.array([2], np.int64)),
        tensor("iou", np.array([0.5], np.float32)),
        tensor("score_th", np.array([0.0], np.float32)),
        tensor("box_shape", np.array([1, 4, 4], np.int64)),
        tensor("score_shape", np.array([1, 1, 4], np.int64)),
        tensor("zero", np.array(0.0, np.float32)),
        tensor("rows_shape", np.array([4, 4], np.int64)),
        tensor("quarter", np.full((4, 1), 0.25, np.float32)),
    ]
    nodes = [
        n("Relu", ["x"], ["h"], name="relu"),
        n("Resize", ["h", "roi", "scales"], ["up"], name="resize", mode="linear"),
        n("Reshape", ["up", "flat"], ["upf"], name="flatten"),
        n("TopK", ["upf", "k"], ["top", "top_i"], name="topk"),
        n("ReduceMax", ["top"], ["limit"], name="limit", keepdims=0),
        n("Range", ["start", "limit", "delta"], ["rng"], name="range"),
        n("ReduceSum", ["rng"], ["rsum"], name="rsum", keepdims=0),
        n("Reshape", ["h", "box_shape"], ["boxes"], name="boxes"),
        n("Reshape", ["h", "rows_shape"], ["rows"], name="rows"),
        n("MatMul", ["rows", "quarter"], ["sc0"], name="scores_mean"),
        n("Reshape", ["sc0", "score_shape"], ["scores"], name="scores"),
        n(
            "NonMaxSuppression",
            ["boxes", "scores", "max_out", "iou", "score_th"],
            ["sel"],
            name="nms",
        ),
        n("RandomUniformLike", ["top"], ["noise"], name="noise", seed=1.0),
        n("Mul", ["noise", "zero"], ["nz"], name="noise_zero"),
        n("Add", ["top", "nz"], ["t2"], name="add_noise"),
        n("Add", ["t2", "rsum"], ["y"], name="add_range"),
    ]
    outputs = [
        vi("y", F, [1, 3]),
        vi("sel", TensorProto.INT64, ["S", 3]),
        vi("top_i", TensorProto.INT64, [1, 3]),
    ]
    return make(nodes, [vi("x", F, [1, 1, 4, 4])], outputs, inits, "f16_float_only", opset=opset)


def f16_other_domains() -> onnx.ModelProto:
    """com.microsoft and ai.onnx.ml ops between default-domain float ops."""
    n = helper.make_node
    nodes = [
        n("Relu", ["x"], ["a"], name="relu"),
        n("Gelu", ["a"], ["b"], name="ms_gelu", domain="com.microsoft"),
        n("Normalizer", ["b"], ["c"], name="ml_normalizer", domain="ai.onnx.ml", norm="MAX"),
        n("Add", ["c", "a"], ["y"], name="add"),
    ]
    return make(
        nodes,
        [vi("x", F, ["N", 4])],
        [vi("y", F, ["N", 4])],
        (),
        "f16_domains",
        extra_opsets=(("com.microsoft", 1), ("ai.onnx.ml", 3)),
        value_info=[vi("b", F, ["N", 4])],  # as exporters write it: ONNX cannot infer Gelu
    )


def f16_int_bool_string() -> onnx.ModelProto:
    """Integer, bool and string paths beside a float path."""
    n = helper.make_node
    inits = [tensor("zero", np.array(0.0, np.float32)), tensor("two", np.array(2, np.int64))]
    nodes = [
        n("Shape", ["x"], ["shp"], name="shape"),
        n("Mul", ["shp", "two"], ["shp2"], name="int_mul"),
        n("ArgMax", ["x"], ["am"], name="argmax", axis=1, keepdims=0),
        n("Greater", ["x", "zero"], ["pos"], name="greater"),
        n("Not", ["pos"], ["neg"], name="not"),
        n("Where", ["pos", "x", "zero"], ["relu_like"], name="where"),
        n("Exp", ["relu_like"], ["y"], name="exp"),
        n("Identity", ["s"], ["s_out"], name="string_id"),
    ]
    inputs = [vi("x", F, ["N", 4]), vi("s", TensorProto.STRING, ["N"])]
    outputs = [
        vi("y", F, ["N", 4]),
        vi("shp2", TensorProto.INT64, [2]),
        vi("am", TensorProto.INT64, ["N"]),
        vi("neg", TensorProto.BOOL, ["N", 4]),
        vi("s_out", TensorProto.STRING, ["N"]),
    ]
    return make(nodes, inputs, outputs, inits, "f16_int_bool_string")


def f16_extreme_constants() -> onnx.ModelProto:
    """30000 (exact in f16), 1e6 (beyond f16) and 1e-9 (flushes to zero in f16) as weights."""
    n = helper.make_node
    inits = [
        tensor("c30k", np.full(4, 30000.0, np.float32)),
        tensor("c1e6", np.full(4, 1e6, np.float32)),
        tensor("tiny", np.array([1e-9, 0.0, 1e-9, 0.5], np.float32)),
    ]
    nodes = [
        n("Mul", ["x", "c30k"], ["y30k"], name="mul_30k"),
        n("Mul", ["x", "c1e6"], ["y1e6"], name="mul_1e6"),
        n("Add", ["x", "tiny"], ["ytiny"], name="add_tiny"),
    ]
    outputs = [vi(o, F, ["N", 4]) for o in ("y30k", "y1e6", "ytiny")]
    return make(nodes, [vi("x", F, ["N", 4])], outputs, inits, "f16_extreme")


def f16_dynamic() -> onnx.ModelProto:
    """Dynamic batch and sequence dims; a reshape computed from Shape at run time."""
    n = helper.make_node
    inits = [
        tensor("w", rng(9).standard_normal((8, 8)).astype(np.float32) * 0.3),
        tensor("minus1", np.array([-1], np.int64)),
        tensor("eight", np.array([8], np.int64)),
    ]
    nodes = [
        n("MatMul", ["x", "w"], ["a"], name="mm"),
        n("Softmax", ["a"], ["p"], name="softmax", axis=-1),
        n("Shape", ["x"], ["shp"], name="shape"),
        n("Concat", ["minus1", "eight"], ["flat"], name="concat", axis=0),
        n("Reshape", ["p", "flat"], ["pf"], name="reshape"),
        n("Reshape", ["pf", "shp"], ["y"], name="reshape_back"),
    ]
    return make(nodes, [vi("x", F, ["N", "T", 8])], [vi("y", F, ["N", "T", 8])], inits, "f16_dyn")


def f16_opset(opset: int) -> onnx.ModelProto:
    """Conv/Clip/Softmax/Resize/Gemm model valid at any opset 11–21 (schemas differ between them)."""
    n = helper.make_node
    r = rng(10)
    inits = [
        tensor("cw", r.standard_normal((2, 1, 3, 3)).astype(np.float32) * 0.5),
        tensor("lo", np.array(-1.0, np.float32)),
        tensor("hi", np.array(1.0, np.float32)),
        tensor("roi", np.array([], np.float32)),
        tensor("scales", np.array([1, 1, 2, 2], np.float32)),
        tensor("gw", r.standard_normal((3, 32)).astype(np.float32) * 0.2),
    ]
    nodes = [
        n("Conv", ["x", "cw"], ["a"], name="conv", pads=[1, 1, 1, 1]),
        n("Clip", ["a", "lo", "hi"], ["b"], name="clip"),
        n("MaxPool", ["b"], ["c"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        n("Resize", ["c", "roi", "scales"], ["d"], name="resize", mode="nearest"),
        n("Flatten", ["d"], ["e"], name="flatten"),
        n("Gemm", ["e", "gw"], ["f"], name="gemm", transB=1),
        n("Softmax", ["f"], ["y"], name="softmax", axis=1),
    ]
    return make(
        nodes, [vi("x", F, ["N", 1, 4, 4])], [vi("y", F, ["N", 3])], inits, "f16_opset", opset=opset
    )


def f16_odd_graphs() -> onnx.ModelProto:
    """Sequences, a missing optional input, an initializer and a consumed value as outputs."""
    n = helper.make_node
    inits = [
        tensor("w", np.linspace(-1, 1, 4).astype(np.float32)),
        tensor("hi", np.array(0.5, np.float32)),
    ]
    nodes = [
        n("Constant", [], ["unused"], name="unused_const", value_float=1.0),
        n("Clip", ["x", "", "hi"], ["c"], name="clip_no_min"),
        n("Add", ["c", "w"], ["a"], name="add_w"),
        n("SequenceConstruct", ["a", "x"], ["seq"], name="seq"),
        n("ConcatFromSequence", ["seq"], ["cat"], name="concat_seq", axis=0),
        n("Sigmoid", ["a"], ["s"], name="sigmoid"),
    ]
    outputs = [vi("cat", F, [4, 4]), vi("a", F, [2, 4]), vi("s", F, [2, 4]), vi("w", F, [4])]
    return make(nodes, [vi("x", F, [2, 4])], outputs, inits, "f16_odd")


def f16_big_external(directory: Path, gigabytes: float = 2.1, rows: int = 4096) -> Path:
    """Embedding tables totalling ``gigabytes`` of float32 in external data (written in chunks).

    x[int64 indices] → Gather from each table → Add → y. Values are row index + column / 1024
    (exact in float16 for small tables, so results are checkable without loading everything).
    """
    directory.mkdir(parents=True, exist_ok=True)
    cols = 1024
    table_bytes = rows * cols * 4
    n_tables = max(1, int(round(gigabytes * 2**30 / table_bytes)))
    data_name = "big.onnx.data"
    chunk = (
        np.arange(rows, dtype=np.float32)[:, None] % 64
        + np.arange(cols, dtype=np.float32)[None, :] / 1024
    )
    raw = chunk.astype(np.float32).tobytes()
    inits, nodes = [], []
    with open(directory / data_name, "wb") as fh:
        for t in range(n_tables):
            offset = fh.tell()
            fh.write(raw)
            init = TensorProto(name=f"table{t}", data_type=F, dims=[rows, cols])
            init.data_location = TensorProto.EXTERNAL
            for k, v in (
                ("location", data_name),
                ("offset", str(offset)),
                ("length", str(len(raw))),
            ):
                e = init.external_data.add()
                e.key, e.value = k, v
            inits.append(init)
            nodes.append(
                helper.make_node("Gather", [f"table{t}", "idx"], [f"g{t}"], name=f"gather{t}")
            )
    prev = "g0"
    for t in range(1, n_tables):
        out = f"s{t}"
        nodes.append(helper.make_node("Add", [prev, f"g{t}"], [out], name=f"add{t}"))
        prev = out
    nodes.append(helper.make_node("Relu", [prev], ["y"], name="relu"))
    graph = helper.make_graph(
        nodes, "big", [vi("idx", TensorProto.INT64, ["N"])], [vi("y", F, ["N", cols])], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    path = directory / "big.onnx"
    onnx.save_model(model, path)
    return path


def big_transformer_external(
    directory: Path, gigabytes: float = 2.1, dim: int = 4096, seq: int = 8, seed: int = 0
) -> Path:
    """Transformer-like blocks (LayerNorm → MatMul → Tanh → MatMul → residual Add) whose float32
    weights total ``gigabytes`` in external data ``large.onnx.data``, written one matrix at a
    time (never the whole model in memory). Input ``x`` and output ``y``: float32[1, seq, dim].
    """
    directory.mkdir(parents=True, exist_ok=True)
    blocks = max(1, round(gigabytes * 2**30 / (2 * dim * dim * 4)))
    data_name = "large.onnx.data"
    r = rng(seed)
    inits: list[TensorProto] = []
    nodes = []
    x = "x"
    with open(directory / data_name, "wb") as fh:
        for b in range(blocks):
            inits += [tensor(f"g{b}", np.ones(dim, np.float32)), tensor(f"be{b}", np.zeros(dim, np.float32))]  # fmt: skip
            for k in (1, 2):
                raw = (
                    r.standard_normal((dim, dim), dtype=np.float32) / np.float32(dim**0.5)
                ).tobytes()
                t = TensorProto(name=f"w{k}_{b}", data_type=F, dims=[dim, dim])
                t.data_location = TensorProto.EXTERNAL
                for key, v in (("location", data_name), ("offset", str(fh.tell())), ("length", str(len(raw)))):  # fmt: skip
                    e = t.external_data.add()
                    e.key, e.value = key, v
                fh.write(raw)
                inits.append(t)
            nodes += [
                helper.make_node("LayerNormalization", [x, f"g{b}", f"be{b}"], [f"n{b}"], name=f"ln{b}", axis=-1),
                helper.make_node("MatMul", [f"n{b}", f"w1_{b}"], [f"h{b}"], name=f"fc1_{b}"),
                helper.make_node("Tanh", [f"h{b}"], [f"a{b}"], name=f"act{b}"),
                helper.make_node("MatMul", [f"a{b}", f"w2_{b}"], [f"o{b}"], name=f"fc2_{b}"),
                helper.make_node("Add", [x, f"o{b}"], [f"r{b}"], name=f"res{b}"),
            ]  # fmt: skip
            x = f"r{b}"
    nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    shape = [1, seq, dim]
    graph = helper.make_graph(nodes, "large", [vi("x", F, shape)], [vi("y", F, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = directory / "large.onnx"
    onnx.save_model(model, path)
    return path


# ----------------------------------------------------------------------------- mixed precision (issue 5)


def mixed_overflow_trap(seed: int = 0) -> onnx.ModelProto:
    """Intermediates reach ~1.5e5 (> float16's 65504) while the output is ~10 in float32.

    x[N,8] → fc0/Sigmoid (safe) → big_matmul/big_bias/big_relu (values 6e4…1.5e5) →
    scale_down (×1e-4) → fc2/fc2_bias (safe) → y[N,4]. All constants fit float16, so only the
    measured activations reveal the overflow; ONNX Runtime on CPU computes these ops in f32
    and hides it.
    """
    r = rng(seed)
    inits = [
        tensor("w0", r.standard_normal((8, 8)).astype(np.float32) * 0.5),
        tensor("w_big", (1.5e4 * (0.5 + r.random((8, 8)))).astype(np.float32)),
        tensor("b_big", np.full(8, 5.0e4, np.float32)),
        tensor("down", np.array(1.0e-4, np.float32)),
        tensor("w2", r.standard_normal((8, 4)).astype(np.float32) * 0.3),
        tensor("b2", r.standard_normal(4).astype(np.float32) * 0.1),
    ]
    n = helper.make_node
    nodes = [
        n("MatMul", ["x", "w0"], ["h0"], name="fc0"),
        n("Sigmoid", ["h0"], ["h1"], name="sigmoid"),
        n("MatMul", ["h1", "w_big"], ["h2"], name="big_matmul"),
        n("Add", ["h2", "b_big"], ["h3"], name="big_bias"),
        n("Relu", ["h3"], ["h4"], name="big_relu"),
        n("Mul", ["h4", "down"], ["h5"], name="scale_down"),
        n("MatMul", ["h5", "w2"], ["h6"], name="fc2"),
        n("Add", ["h6", "b2"], ["y"], name="fc2_bias"),
    ]
    return make(nodes, [vi("x", F, ["N", 8])], [vi("y", F, ["N", 4])], inits, "overflow_trap")


def mixed_all_safe(seed: int = 3) -> onnx.ModelProto:
    """An MLP with moderate weights and outputs: every node is fine in float16."""
    return mlp(in_features=8, hidden=16, out_features=4, seed=seed)


def mixed_nothing_f16() -> onnx.ModelProto:
    """Every float tensor after the input exceeds float16's range: no node can run in f16."""
    inits = [
        tensor("gain", np.array(3.0e4, np.float32)),
        tensor("offset", np.array(7.0e4, np.float32)),
    ]
    n = helper.make_node
    nodes = [
        n("Mul", ["x", "gain"], ["a"], name="gain_mul"),
        n("Add", ["a", "offset"], ["b"], name="offset_add"),
        n("Relu", ["b"], ["c"], name="relu"),
        n("ReduceSum", ["c"], ["y"], name="total", keepdims=1),
    ]
    return make(nodes, [vi("x", F, ["N", 8])], [vi("y", F, [1, 1])], inits, "nothing_f16")


def mixed_underflow() -> onnx.ModelProto:
    """x·1e-3·1e-3 → values ~1e-6, below float16's smallest normal (6.1e-5) → ·1e3·1e3 → y ~ x."""
    inits = [tensor("milli", np.array(1e-3, np.float32)), tensor("kilo", np.array(1e3, np.float32))]
    n = helper.make_node
    nodes = [
        n("Mul", ["x", "milli"], ["a"], name="down1"),
        n("Mul", ["a", "milli"], ["b"], name="down2"),
        n("Mul", ["b", "kilo"], ["c"], name="up1"),
        n("Mul", ["c", "kilo"], ["y"], name="up2"),
    ]
    return make(nodes, [vi("x", F, ["N", 8])], [vi("y", F, ["N", 8])], inits, "underflow")


def _cancel_block(nodes: list, inits: list, prev: str, tag: str, offset: float) -> str:
    """Clip(prev + offset) − offset: float16 rounding at |offset| wipes out the small signal.

    Clip has a float16 kernel on CPU, yet ONNX Runtime still computes this block in float32
    (it removes the casts around it), so only real float16 arithmetic shows the loss.
    """
    n = helper.make_node
    inits += [
        tensor(f"{tag}.off", np.array(offset, np.float32)),
        tensor(f"{tag}.min", np.array(-6.0e4, np.float32)),
        tensor(f"{tag}.max", np.array(6.0e4, np.float32)),
        tensor(f"{tag}.back", np.array(offset, np.float32)),
    ]
    nodes += [
        n("Add", [prev, f"{tag}.off"], [f"{tag}.hi"], name=f"{tag}_shift"),
        n("Clip", [f"{tag}.hi", f"{tag}.min", f"{tag}.max"], [f"{tag}.cl"], name=f"{tag}_clip"),
        n("Sub", [f"{tag}.cl", f"{tag}.back"], [f"{tag}.lo"], name=f"{tag}_unshift"),
    ]
    return f"{tag}.lo"


def mixed_sensitive(seed: int = 0) -> onnx.ModelProto:
    """MLP with one cancellation block (x + 2048 − 2048): its three nodes must stay float.

    x[N,16] → fc1/relu → cancel_shift/cancel_clip/cancel_unshift → fc2/fc2_bias → y[N,4].
    """
    r = rng(seed)
    inits = [
        tensor("w1", r.standard_normal((16, 16)).astype(np.float32) * 0.3),
        tensor("b1", r.standard_normal(16).astype(np.float32) * 0.1),
        tensor("w2", r.standard_normal((16, 4)).astype(np.float32) * 0.3),
        tensor("b2", r.standard_normal(4).astype(np.float32) * 0.1),
    ]
    n = helper.make_node
    nodes = [
        n("MatMul", ["x", "w1"], ["h0"], name="fc1"),
        n("Add", ["h0", "b1"], ["h1"], name="fc1_bias"),
        n("Relu", ["h1"], ["h2"], name="relu"),
    ]
    prev = _cancel_block(nodes, inits, "h2", "cancel", 2048.0)
    nodes += [
        n("MatMul", [prev, "w2"], ["h4"], name="fc2"),
        n("Add", ["h4", "b2"], ["y"], name="fc2_bias"),
    ]
    return make(nodes, [vi("x", F, ["N", 16])], [vi("y", F, ["N", 4])], inits, "sensitive")


def _weight_block(nodes: list, inits: list, prev: str, tag: str) -> str:
    """prev + 1000.3 − 1000 − 0.3: float16 stores 1000.3 as 1000.5, so ``{tag}_add`` must keep
    its constant in float32 — an error ONNX Runtime shows on CPU too."""
    n = helper.make_node
    inits += [
        tensor(f"{tag}.c1", np.array(1000.3, np.float32)),
        tensor(f"{tag}.c2", np.array(-1000.0, np.float32)),
        tensor(f"{tag}.c3", np.array(-0.3, np.float32)),
    ]
    nodes += [
        n("Add", [prev, f"{tag}.c1"], [f"{tag}.a"], name=f"{tag}_add"),
        n("Add", [f"{tag}.a", f"{tag}.c2"], [f"{tag}.b"], name=f"{tag}_back"),
        n("Add", [f"{tag}.b", f"{tag}.c3"], [f"{tag}.c"], name=f"{tag}_rest"),
    ]
    return f"{tag}.c"


def mixed_large(
    blocks: int = 84,
    width: int = 16,
    cancel_every: int = 24,
    weight_every: int = 8,
    shared_bias: bool = True,
    seed: int = 0,
) -> onnx.ModelProto:
    """~500-node MLP chain — the mixed-precision benchmark model.

    5 nodes per block (tanh keeps values bounded), a 3-node cancellation block every
    ``cancel_every`` blocks (sensitive in real float16, hidden by ONNX Runtime on CPU) and a
    3-node weight-precision block every ``weight_every`` blocks (sensitive on CPU too). With
    ``shared_bias`` each block's two Adds share one bias initializer.
    """
    r = rng(seed)
    n = helper.make_node
    nodes: list = []
    inits: list = []
    prev = "x"
    for b in range(blocks):
        p = f"b{b}"
        inits += [
            tensor(
                f"{p}.w", (r.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
            ),
            tensor(f"{p}.b", (0.1 * r.standard_normal(width)).astype(np.float32)),
            tensor(f"{p}.g", np.array(1.0, np.float32)),
        ]
        bias2 = f"{p}.b" if shared_bias else f"{p}.b2"
        if not shared_bias:
            inits.append(tensor(bias2, (0.1 * r.standard_normal(width)).astype(np.float32)))
        nodes += [
            n("MatMul", [prev, f"{p}.w"], [f"{p}.mm"], name=f"{p}_matmul"),
            n("Add", [f"{p}.mm", f"{p}.b"], [f"{p}.lin"], name=f"{p}_bias"),
            n("Tanh", [f"{p}.lin"], [f"{p}.act"], name=f"{p}_tanh"),
            n("Mul", [f"{p}.act", f"{p}.g"], [f"{p}.sc"], name=f"{p}_scale"),
            n("Add", [f"{p}.sc", bias2], [f"{p}.out"], name=f"{p}_shift"),
        ]
        prev = f"{p}.out"
        if cancel_every and b % cancel_every == cancel_every // 2:
            prev = _cancel_block(nodes, inits, prev, f"{p}_cancel", 4096.0)
        if weight_every and b % weight_every == weight_every - 1:
            prev = _weight_block(nodes, inits, prev, f"{p}_weight")
    nodes.append(n("Identity", [prev], ["y"], name="output"))
    return make(nodes, [vi("x", F, ["N", width])], [vi("y", F, ["N", width])], inits, "mixed_large")


# ----------------------------------------------------------------------------- int8 (issue 6)


def outlier_channel_cnn(seed: int = 0) -> onnx.ModelProto:
    """x[N,1,8,8] in [0,1] → Conv/Relu ×2 → MaxPool → Flatten → Gemm → y[N,4].

    ``conv1``'s output channel 7 has weights ~500× larger than the others (all negative, so on
    non-negative inputs the channel is dead after Relu and never widens the activation range).
    One per-tensor weight scale then rounds every other conv1 weight to zero (int8 collapses);
    per-channel scales keep them.
    """
    r = rng(seed)
    w1 = r.standard_normal((8, 1, 3, 3)).astype(np.float32) * 0.5
    w1[7] = -500.0 * np.abs(r.standard_normal((1, 3, 3))).astype(np.float32) - 100.0
    inits = [
        tensor("c1.w", w1),
        tensor("c1.b", r.standard_normal(8).astype(np.float32) * 0.05),
        tensor("c2.w", r.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.3),
        tensor("c2.b", r.standard_normal(8).astype(np.float32) * 0.05),
        tensor("fc.w", r.standard_normal((4, 128)).astype(np.float32) * 0.3),
        tensor("fc.b", np.zeros(4, np.float32)),
    ]
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "c1.w", "c1.b"], ["a1"], name="conv1", pads=[1, 1, 1, 1]),
        n("Relu", ["a1"], ["a2"], name="relu1"),
        n("Conv", ["a2", "c2.w", "c2.b"], ["a3"], name="conv2", pads=[1, 1, 1, 1]),
        n("Relu", ["a3"], ["a4"], name="relu2"),
        n("MaxPool", ["a4"], ["a5"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        n("Flatten", ["a5"], ["a6"], name="flatten"),
        n("Gemm", ["a6", "fc.w", "fc.b"], ["y"], name="fc", transB=1),
    ]
    model = make(nodes, [vi("x", F, ["N", 1, 8, 8])], [vi("y", F, ["N", 4])], inits, "outlier_cnn")
    return _balance_classes(model, r.uniform(0, 1, (256, 1, 8, 8)).astype(np.float32))


def int8_ruining_mlp(
    seed: int = 0, width: int = 32, ruined: str | tuple[str, ...] = "fc3", layers: int = 5
) -> onnx.ModelProto:
    """x[N,16] → ``layers`` Gemm(/Relu) layers ``fc1``…``fcL`` → y[N,4]; ``ruined`` ruins int8.

    Hidden unit 0 of every layer is dead (zero weights, bias −1, Relu). The ruined layer's weight
    row for that unit is 100 in every output column: it never changes the float result, but it
    sets each output channel's int8 scale to 100/127, so all its real weights (|w| < 0.4)
    quantize to zero. Reverting exactly that layer to float restores the accuracy; every other
    layer is harmless in int8. ``ruined`` may name several layers.
    """
    ruined = (ruined,) if isinstance(ruined, str) else tuple(ruined)
    r = rng(seed)
    sizes = [16] + [width] * (layers - 1) + [4]
    last = layers - 1
    inits, nodes = [], []
    prev = "x"
    for i in range(layers):
        name = f"fc{i + 1}"
        w = (r.standard_normal((sizes[i], sizes[i + 1])) * np.sqrt(2.0 / sizes[i])).astype(
            np.float32
        )
        b = (r.standard_normal(sizes[i + 1]) * 0.05).astype(np.float32)
        if i < last:  # dead hidden unit 0
            w[:, 0] = 0.0
            b[0] = -1.0
        if name in ruined:
            w[0, :] = 100.0  # multiplies the dead unit: no effect in float
        inits += [tensor(f"{name}.w", w), tensor(f"{name}.b", b)]
        out = "y" if i == last else f"h{i + 1}"
        gemm_out = out if i == last else f"g{i + 1}"
        nodes.append(
            helper.make_node("Gemm", [prev, f"{name}.w", f"{name}.b"], [gemm_out], name=name)
        )
        if i < last:
            nodes.append(helper.make_node("Relu", [gemm_out], [out], name=f"relu{i + 1}"))
        prev = out
    model = make(nodes, [vi("x", F, ["N", 16])], [vi("y", F, ["N", 4])], inits, "ruining_mlp")
    return _balance_classes(model, r.standard_normal((256, 16)).astype(np.float32))


def _balance_classes(model: onnx.ModelProto, x: np.ndarray) -> onnx.ModelProto:
    """Shift the last layer's bias so every class wins on random inputs (tests need variety)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {model.graph.input[0].name: x})[0]
    bias_name = model.graph.node[-1].input[2]
    for init in model.graph.initializer:
        if init.name == bias_name:
            bias = numpy_helper.to_array(init) - logits.mean(0) / 1.0
            init.CopyFrom(tensor(bias_name, bias.astype(np.float32)))
    return model


def conv_stack(size: int = 32, channels: int = 32, layers: int = 4, seed: int = 0):
    """x[N,3,size,size] → ``layers`` × (Conv 3×3/Relu) → GlobalAveragePool → Flatten → Gemm.

    Big enough that int8 kernels, not per-op overhead, decide latency (benchmarks).
    """
    r = rng(seed)
    n = helper.make_node
    inits, nodes, prev, cin = [], [], "x", 3
    for i in range(layers):
        w = r.standard_normal((channels, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))
        inits += [
            tensor(f"c{i}.w", w.astype(np.float32)),
            tensor(f"c{i}.b", np.zeros(channels, np.float32)),
        ]
        nodes += [
            n("Conv", [prev, f"c{i}.w", f"c{i}.b"], [f"a{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
            n("Relu", [f"a{i}"], [f"r{i}"], name=f"relu{i}"),
        ]
        prev, cin = f"r{i}", channels
    inits += [
        tensor("fc.w", (r.standard_normal((10, channels)) * 0.3).astype(np.float32)),
        tensor("fc.b", np.zeros(10, np.float32)),
    ]
    nodes += [
        n("GlobalAveragePool", [prev], ["g"], name="gap"),
        n("Flatten", ["g"], ["f"], name="flatten"),
        n("Gemm", ["f", "fc.w", "fc.b"], ["y"], name="fc", transB=1),
    ]
    x, y = vi("x", F, ["N", 3, size, size]), vi("y", F, ["N", 10])
    return make(nodes, [x], [y], inits, "conv_stack")


def conv_bn(seed: int = 0) -> onnx.ModelProto:
    """x[N,3,8,8] → Conv → BatchNormalization → Relu → Conv → BatchNormalization → Relu →
    GlobalAveragePool → Flatten → Gemm → y[N,4], with unnamed nodes (real conv nets have BN;
    ORT's quant_pre_process folds it into the convs before quantization).
    """
    r = rng(seed)
    n = helper.make_node
    inits, nodes, prev, cin = [], [], "x", 3
    for i, cout in enumerate((8, 16)):
        w = r.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))
        inits += [
            tensor(f"c{i}.w", w.astype(np.float32)),
            tensor(f"bn{i}.scale", r.uniform(0.5, 2.0, cout).astype(np.float32)),
            tensor(f"bn{i}.bias", (0.1 * r.standard_normal(cout)).astype(np.float32)),
            tensor(f"bn{i}.mean", (0.1 * r.standard_normal(cout)).astype(np.float32)),
            tensor(f"bn{i}.var", r.uniform(0.5, 2.0, cout).astype(np.float32)),
        ]
        bn = [f"bn{i}.{k}" for k in ("scale", "bias", "mean", "var")]
        nodes += [
            n("Conv", [prev, f"c{i}.w"], [f"a{i}"], pads=[1, 1, 1, 1]),
            n("BatchNormalization", [f"a{i}", *bn], [f"b{i}"]),
            n("Relu", [f"b{i}"], [f"r{i}"]),
        ]
        prev, cin = f"r{i}", cout
    inits += [
        tensor("fc.w", (r.standard_normal((4, 16)) * 0.5).astype(np.float32)),
        tensor("fc.b", np.zeros(4, np.float32)),
    ]
    nodes += [
        n("GlobalAveragePool", [prev], ["g"]),
        n("Flatten", ["g"], ["f"]),
        n("Gemm", ["f", "fc.w", "fc.b"], ["y"], transB=1),
    ]
    model = make(nodes, [vi("x", F, ["N", 3, 8, 8])], [vi("y", F, ["N", 4])], inits, "conv_bn")
    return _balance_classes(model, r.uniform(0, 1, (256, 3, 8, 8)).astype(np.float32))


def labelled_feeds(model: onnx.ModelProto, n: int, seed: int = 0, uniform: bool = False):
    """``n`` single-item feeds for ``model``'s only input, labelled with the fp32 model's argmax.

    Returns a ``workbench.Dataset`` of ``(x, label)`` items whose transform gives the feeds, so
    it works both for calibration (``.feeds()``) and for :func:`agreement` validation.
    """
    import onnxruntime as ort

    from workbench.data import Dataset, input_signature

    name, _, shape = input_signature(model)[0]
    r = rng(seed)
    dims = (n, *[d if isinstance(d, int) and d > 0 else 1 for d in shape[1:]])
    x = (r.uniform(0, 1, dims) if uniform else r.standard_normal(dims)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    labels = sess.run(None, {name: x})[0].argmax(1)
    items = list(zip(x, labels.tolist(), strict=True))
    return Dataset(items, transform=lambda item: {name: item[0][None]})


def agreement(run, dataset) -> float:
    """validation_fn: top-1 agreement with the labels of :func:`labelled_feeds`, one batched run."""
    items = list(dataset)
    feeds = dataset.transform(items[0])
    name = next(iter(feeds))
    x = np.stack([it[0] for it in items])
    logits = next(iter(run({name: x}).values()))
    return float(np.mean(logits.argmax(1) == np.asarray([it[1] for it in items])))


# ----------------------------------------------------------------------------- devices and partitioning (issue 8)


def cycle_trap(dim: int = 8, seed: int = 0) -> onnx.ModelProto:
    """x → a_mm (MatMul) → b_softmax (Softmax) → c_add = a + b → d_relu → y.

    With an accelerator that lacks Softmax, a_mm, c_add and d_relu form one connected
    same-device region; merging it into one subgraph would make a cycle through b_softmax.
    """
    r = rng(seed)
    n = helper.make_node
    nodes = [
        n("MatMul", ["x", "w"], ["a"], name="a_mm"),
        n("Softmax", ["a"], ["b"], name="b_softmax", axis=-1),
        n("Add", ["a", "b"], ["c"], name="c_add"),
        n("Relu", ["c"], ["y"], name="d_relu"),
    ]
    inits = [tensor("w", r.standard_normal((dim, dim)).astype(np.float32) * 0.5)]
    return make(nodes, [vi("x", F, [2, dim])], [vi("y", F, [2, dim])], inits, "cycle_trap")


def transformer_like(
    blocks: int = 24, seq: int = 4, dim: int = 8, heads: int = 2, seed: int = 0
) -> onnx.ModelProto:
    """``blocks`` pre-norm transformer blocks (32 nodes each), listed in exporter order.

    Per block: LayerNormalization, q/k/v projections with a dynamic-batch reshape computed by
    Shape → Gather → Unsqueeze → Concat, Softmax attention, output projection, residual, a
    second LayerNormalization and an Erf-GELU MLP whose Div/Erf nodes are listed between the
    accelerator-friendly Mul/Add nodes. With an NPU lacking LayerNormalization, Softmax, Div,
    Erf, Shape and Gather, support alternates so splitting at every device change in the
    listed order over-splits.
    """
    r = rng(seed)
    hd = dim // heads
    n = helper.make_node
    inits = [
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        tensor("axis0", np.array([0], np.int64)),
        tensor("heads_shape", np.array([seq, heads, hd], np.int64)),
        tensor("flat_shape", np.array([seq, dim], np.int64)),
        tensor("scale", np.array(1.0 / np.sqrt(hd), np.float32)),
        tensor("sqrt2", np.array(np.sqrt(2.0), np.float32)),
        tensor("half", np.array(0.5, np.float32)),
        tensor("one", np.array(1.0, np.float32)),
        tensor("ln.g", np.ones(dim, np.float32)),
        tensor("ln.b", np.zeros(dim, np.float32)),
    ]
    nodes = []
    h = "x"
    for b in range(blocks):
        p = f"b{b}."

        def w(name: str, shape: tuple[int, ...], p: str = p) -> str:
            inits.append(tensor(p + name, r.standard_normal(shape).astype(np.float32) * 0.3))
            return p + name

        out = "y" if b == blocks - 1 else p + "out"
        nodes += [
            n("LayerNormalization", [h, "ln.g", "ln.b"], [p + "ln1"], name=p + "ln1", axis=-1),
            n("MatMul", [p + "ln1", w("wq", (dim, dim))], [p + "q"], name=p + "q_proj"),
            n("Shape", [h], [p + "shape"], name=p + "shape"),
            n("Gather", [p + "shape", "zero"], [p + "batch"], name=p + "batch", axis=0),
            n("Unsqueeze", [p + "batch", "axis0"], [p + "batch1"], name=p + "batch1"),
            n("Concat", [p + "batch1", "heads_shape"], [p + "hshape"], name=p + "hshape", axis=0),
            n("Reshape", [p + "q", p + "hshape"], [p + "q4"], name=p + "q_split"),
            n("Transpose", [p + "q4"], [p + "qt"], name=p + "q_t", perm=[0, 2, 1, 3]),
            n("MatMul", [p + "ln1", w("wk", (dim, dim))], [p + "k"], name=p + "k_proj"),
            n("Reshape", [p + "k", p + "hshape"], [p + "k4"], name=p + "k_split"),
            n("Transpose", [p + "k4"], [p + "kt"], name=p + "k_t", perm=[0, 2, 3, 1]),
            n("MatMul", [p + "ln1", w("wv", (dim, dim))], [p + "v"], name=p + "v_proj"),
            n("Reshape", [p + "v", p + "hshape"], [p + "v4"], name=p + "v_split"),
            n("Transpose", [p + "v4"], [p + "vt"], name=p + "v_t", perm=[0, 2, 1, 3]),
            n("MatMul", [p + "qt", p + "kt"], [p + "s"], name=p + "scores"),
            n("Mul", [p + "s", "scale"], [p + "s2"], name=p + "scaled"),
            n("Softmax", [p + "s2"], [p + "attn"], name=p + "softmax", axis=-1),
            n("MatMul", [p + "attn", p + "vt"], [p + "ctx"], name=p + "context"),
            n("Transpose", [p + "ctx"], [p + "ctxt"], name=p + "ctx_t", perm=[0, 2, 1, 3]),
            n("Concat", [p + "batch1", "flat_shape"], [p + "fshape"], name=p + "fshape", axis=0),
            n("Reshape", [p + "ctxt", p + "fshape"], [p + "ctx2"], name=p + "merge_heads"),
            n("MatMul", [p + "ctx2", w("wo", (dim, dim))], [p + "o"], name=p + "out_proj"),
            n("Add", [p + "o", h], [p + "h1"], name=p + "residual1"),
            n(
                "LayerNormalization",
                [p + "h1", "ln.g", "ln.b"],
                [p + "ln2"],
                name=p + "ln2",
                axis=-1,
            ),
            n("MatMul", [p + "ln2", w("w1", (dim, 2 * dim))], [p + "f1"], name=p + "ff1"),
            n("Div", [p + "f1", "sqrt2"], [p + "gd"], name=p + "gelu_div"),
            n("Mul", [p + "f1", "half"], [p + "gh"], name=p + "gelu_half"),
            n("Erf", [p + "gd"], [p + "ge"], name=p + "gelu_erf"),
            n("Add", [p + "ge", "one"], [p + "ga"], name=p + "gelu_add"),
            n("Mul", [p + "gh", p + "ga"], [p + "g"], name=p + "gelu_mul"),
            n("MatMul", [p + "g", w("w2", (2 * dim, dim))], [p + "f2"], name=p + "ff2"),
            n("Add", [p + "f2", p + "h1"], [out], name=p + "residual2"),
        ]
        h = out
    return make(
        nodes,
        [vi("x", F, ["N", seq, dim])],
        [vi("y", F, ["N", seq, dim])],
        inits,
        f"transformer{blocks}",
    )


def layered_graph(n_nodes: int, seed: int = 0) -> onnx.ModelProto:
    """About ``n_nodes`` nodes of transformer-like blocks (render and partition benchmarks)."""
    return transformer_like(blocks=max(1, round(n_nodes / 32)), seed=seed)


def detector_like(channels: int = 4, size: int = 32, seed: int = 0) -> onnx.ModelProto:
    """A ~230-node single-stage detector: residual backbone, FPN with Resize, per-level heads
    (dynamic reshapes via Shape/Gather), box decoding and TopK scores. x[1,3,size,size]."""
    r = rng(seed)
    n = helper.make_node
    inits: list[onnx.TensorProto] = [
        tensor("det.axis0", np.array([0], np.int64)),
        numpy_helper.from_array(np.array(0, np.int64), "det.zero"),
        tensor("det.tail", np.array([-1, 4], np.int64)),
        tensor("det.tail_cls", np.array([-1, 2], np.int64)),
        tensor("det.scales", np.array([1, 1, 2, 2], np.float32)),
        tensor("det.k", np.array([16], np.int64)),
        tensor("det.s0", np.array([0], np.int64)),
        tensor("det.s2", np.array([2], np.int64)),
        tensor("det.s4", np.array([4], np.int64)),
        tensor("det.stride", np.array(8.0, np.float32)),
    ]
    nodes: list[onnx.NodeProto] = []
    counter = [0]

    def conv(x: str, cin: int, cout: int, stride: int = 1, act: bool = True) -> str:
        counter[0] += 1
        k = counter[0]
        wname, bname, out = f"conv{k}.w", f"conv{k}.b", f"conv{k}"
        scale = 0.8 * np.sqrt(2.0 / (cin * 9))  # keeps activations bounded through 60+ convs
        inits.append(
            tensor(wname, (r.standard_normal((cout, cin, 3, 3)) * scale).astype(np.float32))
        )
        inits.append(tensor(bname, r.standard_normal(cout).astype(np.float32) * 0.05))
        nodes.append(
            n("Conv", [x, wname, bname], [out], name=f"conv{k}", pads=[1, 1, 1, 1],
              strides=[stride, stride])
        )  # fmt: skip
        if not act:
            return out
        nodes.append(n("Relu", [out], [out + ".relu"], name=f"relu{k}"))
        return out + ".relu"

    c = channels
    x = conv("image", 3, c)
    levels = []
    for stage in range(5):
        x = conv(x, c, c, stride=2 if stage > 0 else 1)
        for blk in range(4):
            y = conv(x, c, c)
            y = conv(y, c, c, act=False)
            s = f"stage{stage}.block{blk}"
            nodes.append(n("Add", [x, y], [s + ".sum"], name=s + ".add"))
            nodes.append(n("Relu", [s + ".sum"], [s + ".out"], name=s + ".relu"))
            x = s + ".out"
        levels.append(x)
    pyramid = levels[2:]
    top = conv(pyramid[-1], c, c, act=False)
    feats = [top]
    for i, lvl in enumerate(reversed(pyramid[:-1])):
        lateral = conv(lvl, c, c, act=False)
        up = f"fpn{i}.up"
        nodes.append(n("Resize", [feats[-1], "", "det.scales"], [up], name=f"fpn{i}.resize",
                       mode="nearest"))  # fmt: skip
        nodes.append(n("Add", [up, lateral], [f"fpn{i}.sum"], name=f"fpn{i}.add"))
        feats.append(conv(f"fpn{i}.sum", c, c))
    cls_outs, box_outs = [], []
    for li, f in enumerate(feats):
        p = f"head{li}."
        nodes.append(n("Shape", [f], [p + "shape"], name=p + "shape"))
        nodes.append(
            n("Gather", [p + "shape", "det.zero"], [p + "batch"], name=p + "batch", axis=0)
        )
        nodes.append(n("Unsqueeze", [p + "batch", "det.axis0"], [p + "batch1"], name=p + "batch1"))
        nodes.append(
            n("Concat", [p + "batch1", "det.tail"], [p + "bshape"], name=p + "bshape", axis=0)
        )
        nodes.append(
            n("Concat", [p + "batch1", "det.tail_cls"], [p + "cshape"], name=p + "cshape", axis=0)
        )
        for kind, cout in (("cls", 2), ("box", 4)):
            h = f
            for _ in range(5):
                h = conv(h, c, c)
            h = conv(h, c, cout, act=False)
            if kind == "cls":
                nodes.append(n("Sigmoid", [h], [p + "cls.sig"], name=p + "cls.sigmoid"))
                h = p + "cls.sig"
            nodes.append(
                n("Transpose", [h], [p + kind + ".t"], name=p + kind + ".t", perm=[0, 2, 3, 1])
            )
            shape_name = p + ("cshape" if kind == "cls" else "bshape")
            nodes.append(
                n("Reshape", [p + kind + ".t", shape_name], [p + kind], name=p + kind + ".flat")
            )
            (cls_outs if kind == "cls" else box_outs).append(p + kind)
    nodes.append(n("Concat", cls_outs, ["scores_all"], name="cls.concat", axis=1))
    nodes.append(n("Concat", box_outs, ["deltas"], name="box.concat", axis=1))
    nodes += [
        n("Slice", ["deltas", "det.s0", "det.s2", "det.s2"], ["d_xy"], name="decode.xy"),
        n("Slice", ["deltas", "det.s2", "det.s4", "det.s2"], ["d_wh"], name="decode.wh"),
        n("Mul", ["d_xy", "det.stride"], ["xy"], name="decode.scale_xy"),
        n("Exp", ["d_wh"], ["wh0"], name="decode.exp"),
        n("Mul", ["wh0", "det.stride"], ["wh"], name="decode.scale_wh"),
        n("Concat", ["xy", "wh"], ["boxes"], name="decode.boxes", axis=2),
        n("ReduceMax", ["scores_all"], ["best"], name="scores.max", axes=[2], keepdims=0),
        n("TopK", ["best", "det.k"], ["top_scores", "top_idx"], name="scores.topk", axis=1),
    ]
    return make(
        nodes,
        [vi("image", F, [1, 3, size, size])],
        [
            vi("boxes", F, [1, "anchors", 4]),
            vi("top_scores", F, [1, "k"]),
            vi("top_idx", TensorProto.INT64, [1, "k"]),
        ],
        inits,
        "detector",
    )


def capability_cases() -> onnx.ModelProto:
    """Nodes that fail capability checks for different reasons.

    ``relu`` (float), ``relu16`` (Relu on int16: valid ONNX, no ORT CPU kernel), ``branch`` (an If
    with subgraph bodies reading the outer ``h``), ``tanh`` (for exclusion by op/name).
    """
    n = helper.make_node
    then_g = helper.make_graph(
        [n("Identity", ["h"], ["t_out"], name="then_id")], "then", [], [vi("t_out", F, [2, 4])]
    )
    else_g = helper.make_graph(
        [n("Neg", ["h"], ["e_out"], name="else_neg")], "else", [], [vi("e_out", F, [2, 4])]
    )
    nodes = [
        n("Relu", ["x"], ["h"], name="relu"),
        n("If", ["flag"], ["b"], name="branch", then_branch=then_g, else_branch=else_g),
        n("Tanh", ["b"], ["y"], name="tanh"),
        n("Relu", ["i"], ["j"], name="relu16"),
    ]
    return make(
        nodes,
        [vi("x", F, ["N", 4]), vi("flag", TensorProto.BOOL, []), vi("i", TensorProto.INT16, [3])],
        [vi("y", F, ["N", 4]), vi("j", TensorProto.INT16, [3])],
        name="capability_cases",
    )


def if_outer_scope() -> onnx.ModelProto:
    """x → relu → If(flag) whose branches read ``h`` from the outer scope → tanh → y.

    Simulated profiles leave If on another device, so ``h`` must cross a subgraph boundary
    although no node lists it as an input.
    """
    m = capability_cases()
    del m.graph.node[3]  # relu16: no device runs Relu on int16
    del m.graph.output[1]
    del m.graph.input[2]
    m.graph.name = "if_outer_scope"
    onnx.checker.check_model(m)
    return m


def random_dag(n_nodes: int = 40, seed: int = 0) -> onnx.ModelProto:
    """A random DAG of Add/Mul/Sub/Relu/Neg nodes over x[2,3] (partition property tests)."""
    r = rng(seed)
    n = helper.make_node
    tensors = ["x"]
    nodes = []
    for i in range(n_nodes):
        k = min(len(tensors), 1 + int(r.integers(0, 2)))
        ins = [tensors[int(j)] for j in r.choice(len(tensors), size=k, replace=False)]
        op = ("Relu", "Neg")[i % 2] if k == 1 else ("Add", "Mul", "Sub")[i % 3]
        nodes.append(n(op, ins, [f"v{i}"], name=f"node{i}"))
        tensors.append(f"v{i}")
    used = {t for node in nodes for t in node.input}
    outs = [t for t in tensors[1:] if t not in used]
    return make(
        nodes, [vi("x", F, [2, 3])], [vi(t, F, [2, 3]) for t in outs], name=f"random_dag{seed}"
    )


def hostile_dot_names() -> onnx.ModelProto:
    """The MLP with node, tensor and graph names that break naive DOT/HTML/SVG escaping."""
    m = mlp()
    evil = ['a"b<c>&{d}|e\n', "</script><script>alert(1)</script>", "back\\slash\\N\\G", "]]>&amp;"]
    rename = {"h0": evil[0] + "t", "h2": evil[1] + "t", "y": "y\"'<out>"}
    for node, name in zip(m.graph.node, evil + ["ok"], strict=False):
        node.name = name
    for node in m.graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        node.output[:] = [rename.get(o, o) for o in node.output]
    m.graph.output[0].name = rename["y"]
    m.graph.name = '<graph & "name">'
    onnx.checker.check_model(m)
    return m


# ----------------------------------------------------------------------------- widgets and report (issue 9)

HOSTILE = "</script><script>alert(1)</script>"
HOSTILE_IMG = '<img src=x onerror="window.__pwned=1">'


def hostile_names() -> onnx.ModelProto:
    """The MLP with node, graph and metadata strings that are HTML/JS injections if unescaped."""
    m = mlp()
    m.graph.name = HOSTILE_IMG
    m.graph.node[0].name = HOSTILE
    m.graph.node[2].name = HOSTILE_IMG
    m.graph.node[3].name = 'fc2 "quoted" & <b>bold</b>'
    m.doc_string = HOSTILE
    helper.set_model_props(m, {"author": HOSTILE, HOSTILE_IMG: "value"})
    onnx.checker.check_model(m)
    return m


# ----------------------------------------------------------------------------- hints and explore (issue 7)


def f16_mlp(seed: int = 0) -> onnx.ModelProto:
    """mlp() stored in float16 (weights, compute), float32 I/O through Casts."""
    r = rng(seed)
    H = TensorProto.FLOAT16
    w1, b1 = r.standard_normal((16, 32)) * 0.3, r.standard_normal(32) * 0.1
    w2, b2 = r.standard_normal((32, 4)) * 0.3, r.standard_normal(4) * 0.1
    nodes = [
        helper.make_node("Cast", ["x"], ["xh"], to=H, name="cast_in"),
        helper.make_node("MatMul", ["xh", "w1"], ["h1"], name="fc1"),
        helper.make_node("Add", ["h1", "b1"], ["h2"], name="bias1"),
        helper.make_node("Relu", ["h2"], ["h3"], name="relu"),
        helper.make_node("MatMul", ["h3", "w2"], ["h4"], name="fc2"),
        helper.make_node("Add", ["h4", "b2"], ["yh"], name="bias2"),
        helper.make_node("Cast", ["yh"], ["y"], to=F, name="cast_out"),
    ]
    inits = [
        tensor(n, a.astype(np.float16)) for n, a in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2))
    ]
    return make(nodes, [vi("x", F, ["N", 16])], [vi("y", F, ["N", 4])], inits, name="f16_mlp")


def f16_layernorm(dim: int = 8, seed: int = 0) -> onnx.ModelProto:
    """A float16 LayerNormalization (ORT CPU has a float16 kernel for it), float32 I/O."""
    r = rng(seed)
    H = TensorProto.FLOAT16
    nodes = [
        helper.make_node("Cast", ["x"], ["xh"], to=H, name="cast_in"),
        helper.make_node("LayerNormalization", ["xh", "g", "b"], ["yh"], axis=-1, name="ln"),
        helper.make_node("Cast", ["yh"], ["y"], to=F, name="cast_out"),
    ]
    inits = [
        tensor("g", (1 + 0.1 * r.standard_normal(dim)).astype(np.float16)),
        tensor("b", (0.1 * r.standard_normal(dim)).astype(np.float16)),
    ]
    return make(nodes, [vi("x", F, ["N", dim])], [vi("y", F, ["N", dim])], inits, name="f16_ln")


def unknown_op_model() -> onnx.ModelProto:
    """A model ORT cannot load: one node of an op type no runtime knows (a broken variant)."""
    node = helper.make_node("NoSuchOp", ["x"], ["y"], domain="workbench.test", name="mystery")
    graph = helper.make_graph([node], "broken", [vi("x", F, ["N", 16])], [vi("y", F, ["N", 4])])
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("workbench.test", 1)],
    )
    model.ir_version = 8
    return model


# ----------------------------------------------------------------------------- precision quality


def f16_tiny_constant() -> onnx.ModelProto:
    """y = (x · 1e6) · 1e-6: 1e6 is beyond float16, 1e-6 is a float16 subnormal (1.3% off)."""
    n = helper.make_node
    inits = [tensor("mega", np.array(1e6, np.float32)), tensor("micro", np.array(1e-6, np.float32))]
    nodes = [
        n("Mul", ["x", "mega"], ["big"], name="scale_up"),
        n("Mul", ["big", "micro"], ["y"], name="scale_down"),
        n("Relu", ["x"], ["r"], name="relu"),
    ]
    outputs = [vi("y", F, ["N", 4]), vi("r", F, ["N", 4])]
    return make(nodes, [vi("x", F, ["N", 4])], outputs, inits, "f16_tiny_constant")


def _gru_branch(tag: str, seed: int, frame: int, hidden: int, shift: float | None):
    """One If branch of :func:`recurrent_vad`: a GRU-like cell on outer ``xs``/``state``.

    With ``shift``, the cell's logit goes through (v + shift) − shift: float16 rounding at
    |shift| wipes out the signal, so ``{tag}_shift`` and ``{tag}_unshift`` must stay float.
    """
    r = rng(seed)
    n = helper.make_node
    w = {
        k: r.standard_normal(s).astype(np.float32) * 0.4
        for k, s in (("wz", (frame, hidden)), ("uz", (hidden, hidden)), ("wn", (frame, hidden)),
                     ("un", (hidden, hidden)), ("wo", (hidden, 1)))
    }  # fmt: skip
    inits = [tensor(f"{tag}.{k}", v) for k, v in w.items()]
    inits += [
        tensor(f"{tag}.one", np.array(1.0, np.float32)),
        tensor(f"{tag}.first", np.array([0], np.int64)),
        tensor(f"{tag}.shape", np.array([1, 1], np.int64)),
    ]
    t = tag
    # h [1, 1, H] (state row 0); xs @ W is [1, H] and broadcasts against it
    nodes = [
        n("Gather", ["state", f"{t}.first"], [f"{t}.h"], name=f"{t}_h", axis=0),
        n("MatMul", ["xs", f"{t}.wz"], [f"{t}.xz"], name=f"{t}_xz"),
        n("MatMul", [f"{t}.h", f"{t}.uz"], [f"{t}.hz"], name=f"{t}_hz"),
        n("Add", [f"{t}.xz", f"{t}.hz"], [f"{t}.za"], name=f"{t}_za"),
        n("Sigmoid", [f"{t}.za"], [f"{t}.z"], name=f"{t}_z"),
        n("MatMul", ["xs", f"{t}.wn"], [f"{t}.xn"], name=f"{t}_xn"),
        n("MatMul", [f"{t}.h", f"{t}.un"], [f"{t}.hn"], name=f"{t}_hn"),
        n("Add", [f"{t}.xn", f"{t}.hn"], [f"{t}.na"], name=f"{t}_na"),
        n("Tanh", [f"{t}.na"], [f"{t}.n"], name=f"{t}_n"),
        n("Sub", [f"{t}.one", f"{t}.z"], [f"{t}.zc"], name=f"{t}_zc"),
        n("Mul", [f"{t}.zc", f"{t}.n"], [f"{t}.a"], name=f"{t}_a"),
        n("Mul", [f"{t}.z", f"{t}.h"], [f"{t}.b"], name=f"{t}_b"),
        n("Add", [f"{t}.a", f"{t}.b"], [f"{t}.hnew"], name=f"{t}_hnew"),
        n("MatMul", [f"{t}.hnew", f"{t}.wo"], [f"{t}.logit3"], name=f"{t}_logit"),
        n("Reshape", [f"{t}.logit3", f"{t}.shape"], [f"{t}.logit"], name=f"{t}_flat"),
    ]
    logit = f"{t}.logit"
    if shift is not None:
        inits += [tensor(f"{t}.shift", np.array(shift, np.float32))]
        nodes += [
            n("Add", [logit, f"{t}.shift"], [f"{t}.hi"], name=f"{t}_shift"),
            n("Sub", [f"{t}.hi", f"{t}.shift"], [f"{t}.lo"], name=f"{t}_unshift"),
        ]
        logit = f"{t}.lo"
    nodes += [
        n("Sigmoid", [logit], [f"{t}.prob"], name=f"{t}_prob"),
        n("Concat", [f"{t}.hnew", f"{t}.h"], [f"{t}.state"], name=f"{t}_state", axis=0),
    ]
    outs = [vi(f"{t}.prob", F, [1, 1]), vi(f"{t}.state", F, [2, 1, hidden])]
    return helper.make_graph(nodes, f"{tag}_branch", [], outs, inits)


def recurrent_vad(frame: int = 16, hidden: int = 8, seed: int = 0) -> onnx.ModelProto:
    """A voice-activity model built like exported Silero-style VAD/ASR models.

    Inputs ``x`` [1, frame], ``state`` [2, 1, hidden] and ``sr`` (int64 sample rate); outputs
    ``prob`` [1, 1] and ``state_out``. The main graph normalises the frame and branches with
    ``If(sr == 16000)``; each branch is a GRU-like cell. The 16 kHz branch holds the float16
    error source (``vad16_shift``/``vad16_unshift``, a cancellation at 2048): only body nodes
    cause the error.
    """
    n = helper.make_node
    inits = [
        tensor("gain", np.array(0.5, np.float32)),
        tensor("sr16k", np.array(16000, np.int64)),
        tensor("lo", np.array(0.0, np.float32)),
        tensor("hi", np.array(1.0, np.float32)),
    ]
    nodes = [
        n("Mul", ["x", "gain"], ["xg"], name="norm_gain"),
        n("Tanh", ["xg"], ["xs"], name="norm_tanh"),
        n("Equal", ["sr", "sr16k"], ["is16k"], name="is_16k"),
        n(
            "If",
            ["is16k"],
            ["p", "state_out"],
            name="rate_switch",
            then_branch=_gru_branch("vad16", seed, frame, hidden, shift=2048.0),
            else_branch=_gru_branch("vad8", seed + 1, frame, hidden, shift=None),
        ),
        n("Clip", ["p", "lo", "hi"], ["prob"], name="prob_clip"),
    ]
    inputs = [
        vi("x", F, [1, frame]),
        vi("state", F, [2, 1, hidden]),
        vi("sr", TensorProto.INT64, []),
    ]
    outputs = [vi("prob", F, [1, 1]), vi("state_out", F, [2, 1, hidden])]
    return make(nodes, inputs, outputs, inits, "recurrent_vad")


def recurrent_vad_feeds(n: int = 8, frame: int = 16, hidden: int = 8, seed: int = 0) -> list:
    """``n`` 16 kHz frames with a random state for :func:`recurrent_vad`."""
    r = rng(seed)
    return [
        {
            "x": r.standard_normal((1, frame)).astype(np.float32),
            "state": (0.5 * r.standard_normal((2, 1, hidden))).astype(np.float32),
            "sr": np.array(16000, np.int64),
        }
        for _ in range(n)
    ]


FLOAT16_FAMILIES += ("f16_tiny_constant", "recurrent_vad")


# ----------------------------------------------------------------------------- int8 on real-model shapes (issue 13)


def int8_sample_rate_mlp(seed: int = 0, opset: int = OPSET) -> onnx.ModelProto:
    """x[N,16], sr[1] int64 → Cast(sr)·(1/16000) scales x → fc1/Relu → fc2 → y[N,4].

    Like exported VAD models, an integer input reaches float math: with a constant sample rate
    the Cast output is a constant 16000.0, a degenerate range where a 2048-bin histogram cannot
    be built ("Too many bins for data range").
    """
    r = rng(seed)
    w1 = (r.standard_normal((16, 32)) * 0.35).astype(np.float32)
    w2 = (r.standard_normal((32, 4)) * 0.25).astype(np.float32)
    inits = [
        tensor("inv_sr", np.array([1.0 / 16000.0], np.float32)),
        tensor("fc1.w", w1),
        tensor("fc1.b", np.zeros(32, np.float32)),
        tensor("fc2.w", w2),
        tensor("fc2.b", np.zeros(4, np.float32)),
    ]
    nodes = [
        helper.make_node("Cast", ["sr"], ["sr_f"], to=F, name="cast_sr"),
        helper.make_node("Mul", ["sr_f", "inv_sr"], ["gain"], name="gain"),
        helper.make_node("Mul", ["x", "gain"], ["xs"], name="scale"),
        helper.make_node("Gemm", ["xs", "fc1.w", "fc1.b"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["hr"], name="relu1"),
        helper.make_node("Gemm", ["hr", "fc2.w", "fc2.b"], ["y"], name="fc2"),
    ]
    return make(
        nodes,
        [vi("x", F, ["N", 16]), vi("sr", TensorProto.INT64, [1])],
        [vi("y", F, ["N", 4])],
        inits,
        "sample_rate_mlp",
        opset=opset,
    )


def sample_rate_feeds(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Feeds for :func:`int8_sample_rate_mlp`: random x, the sample rate always 16000."""
    r = rng(seed)
    return [
        {
            "x": r.standard_normal((1, 16)).astype(np.float32),
            "sr": np.array([16000], np.int64),
        }
        for _ in range(n)
    ]


def old_opset_cnn(opset: int = 11, seed: int = 0) -> onnx.ModelProto:
    """x[N,3,8,8] → Conv/Relu → Conv/Relu → Flatten → MatMul+Add → y[N,4] at an old opset.

    PaddlePaddle exports at opset 11/12 look like this: per-channel ``DequantizeLinear`` needs
    ``axis`` (opset 13), so int8 must upgrade the model or quantize per tensor.
    """
    r = rng(seed)
    inits = [
        tensor("c1.w", (r.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)),
        tensor("c1.b", (r.standard_normal(8) * 0.05).astype(np.float32)),
        tensor("c2.w", (r.standard_normal((8, 8, 3, 3)) * 0.15).astype(np.float32)),
        tensor("c2.b", (r.standard_normal(8) * 0.05).astype(np.float32)),
        tensor("fc.w", (r.standard_normal((8 * 8 * 8, 4)) * 0.05).astype(np.float32)),
        tensor("fc.b", np.zeros(4, np.float32)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["a1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["a1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "c2.w", "c2.b"], ["a2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Relu", ["a2"], ["r2"], name="relu2"),
        helper.make_node("Flatten", ["r2"], ["f"], axis=1, name="flatten"),
        helper.make_node("MatMul", ["f", "fc.w"], ["m"], name="fc"),
        helper.make_node("Add", ["m", "fc.b"], ["y"], name="fc_bias"),
    ]
    return make(
        nodes,
        [vi("x", F, ["N", 3, 8, 8])],
        [vi("y", F, ["N", 4])],
        inits,
        f"old_opset{opset}_cnn",
        opset=opset,
    )


def int8_contrib_inverse(seed: int = 0) -> onnx.ModelProto:
    """x[4,4] → com.microsoft Inverse → MatMul W → y[4,4]: ORT runs it, but its symbolic shape
    inference cannot finish (and then saves ``sym_shape_infer_temp.onnx`` into the cwd)."""
    w = (rng(seed).standard_normal((4, 4)) * 0.5).astype(np.float32)
    nodes = [
        helper.make_node("Inverse", ["x"], ["inv"], domain="com.microsoft", name="inverse"),
        helper.make_node("MatMul", ["inv", "w"], ["y"], name="matmul"),
    ]
    return make(
        nodes,
        [vi("x", F, [4, 4])],
        [vi("y", F, [4, 4])],
        [tensor("w", w)],
        "contrib_inverse",
        extra_opsets=[("com.microsoft", 1)],
        value_info=[vi("inv", F, [4, 4])],
    )
