"""Regenerate the demo models: ``python -m workbench.demo.build [--only cnn32]``.

Data: scikit-learn's bundled digits (8×8 images, no download), stored once as ``digits.npz``.
Models: a small CNN and an MLP on the 8×8 digits, and ``cnn32`` (six convolutions, ~100 M
multiply-adds per image) on the digits upscaled to 32×32 with fresh shifts and noise every
epoch; all trained in numpy with fixed seeds on one BLAS thread and exported with
``onnx.helper``. Training is deterministic on one machine; other CPUs' BLAS kernels round
differently, so weights may differ in the last bits there (accuracy and graph do not).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# One BLAS thread makes the float summation order — and so the trained weights — reproducible.
# It must be set before numpy starts, so build_all re-runs itself in a fresh process if needed.
_BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

HERE = Path(__file__).parent / "models"
SEED = 20261123
OPSET = 17


def write_digits_npz(path: Path) -> None:
    """Copy scikit-learn's bundled digits into a small npz with a fixed train/test split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data.astype(np.uint8)
    y = d.target.astype(np.uint8)
    order = np.random.default_rng(SEED).permutation(len(y))
    test = order[:360]
    train = order[360:]
    np.savez_compressed(path, x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test])


# ----------------------------------------------------------------------------- numpy training


def _im2col(x: np.ndarray, k: int, stride: int, pad: int) -> tuple[np.ndarray, int, int]:
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - k) // stride + 1
    ow = (w + 2 * pad - k) // stride + 1
    cols = np.empty((n, c, k, k, oh, ow), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = xp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, c * k * k), oh, ow


def _col2im(
    cols: np.ndarray, shape: tuple[int, ...], k: int, stride: int, pad: int, oh: int, ow: int
) -> np.ndarray:
    n, c, h, w = shape
    cols = cols.reshape(n, oh, ow, c, k, k).transpose(0, 3, 4, 5, 1, 2)
    xp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=cols.dtype)
    for i in range(k):
        for j in range(k):
            xp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride] += cols[:, :, i, j]
    return xp[:, :, pad : pad + h, pad : pad + w]


class _Conv:
    def __init__(
        self, rng: np.random.Generator, cin: int, cout: int, k: int, stride: int, pad: int
    ):
        self.w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(
            np.float32
        )
        self.b = np.zeros(cout, np.float32)
        self.k, self.stride, self.pad = k, stride, pad

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x_shape = x.shape
        self.cols, oh, ow = _im2col(x, self.k, self.stride, self.pad)
        self.oh, self.ow = oh, ow
        out = self.cols @ self.w.reshape(len(self.w), -1).T + self.b
        return out.reshape(x.shape[0], oh, ow, -1).transpose(0, 3, 1, 2)

    def backward(self, g: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        g2 = g.transpose(0, 2, 3, 1).reshape(-1, g.shape[1])
        dw = (g2.T @ self.cols).reshape(self.w.shape)
        db = g2.sum(0)
        dcols = g2 @ self.w.reshape(len(self.w), -1)
        return _col2im(dcols, self.x_shape, self.k, self.stride, self.pad, self.oh, self.ow), [
            dw,
            db,
        ]

    def params(self) -> list[np.ndarray]:
        return [self.w, self.b]


class _Dense:
    def __init__(self, rng: np.random.Generator, cin: int, cout: int):
        self.w = (rng.standard_normal((cin, cout)) * np.sqrt(2.0 / cin)).astype(np.float32)
        self.b = np.zeros(cout, np.float32)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.w + self.b

    def backward(self, g: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        return g @ self.w.T, [self.x.T @ g, g.sum(0)]

    def params(self) -> list[np.ndarray]:
        return [self.w, self.b]


class _Relu:
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x > 0
        return x * self.mask

    def backward(self, g: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        return g * self.mask, []

    def params(self) -> list[np.ndarray]:
        return []


class _Flatten:
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, g: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        return g.reshape(self.shape), []

    def params(self) -> list[np.ndarray]:
        return []


def _train(
    layers: list, x: np.ndarray, y: np.ndarray, epochs: int, seed: int, lr: float = 3e-3
) -> None:
    """Adam on softmax cross-entropy, fixed batch order."""
    rng = np.random.default_rng(seed)
    params = [p for layer in layers for p in layer.params()]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for s in range(0, len(x), 32):
            idx = order[s : s + 32]
            h = x[idx]
            for layer in layers:
                h = layer.forward(h)
            p = np.exp(h - h.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            g = p
            g[np.arange(len(idx)), y[idx]] -= 1
            g = (g / len(idx)).astype(np.float32)
            grads: list[np.ndarray] = []
            for layer in reversed(layers):
                g, pg = layer.backward(g)
                grads = pg + grads
            step += 1
            for i, (prm, gr) in enumerate(zip(params, grads, strict=True)):
                m[i] = 0.9 * m[i] + 0.1 * gr
                v[i] = 0.999 * v[i] + 0.001 * gr * gr
                mh = m[i] / (1 - 0.9**step)
                vh = v[i] / (1 - 0.999**step)
                prm -= (lr * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)


def _accuracy(layers: list, x: np.ndarray, y: np.ndarray) -> float:
    h = x
    for layer in layers:
        h = layer.forward(h)
    return float(np.mean(h.argmax(1) == y))


# ----------------------------------------------------------------------------- ONNX export


def _model(
    name: str,
    nodes: list,
    inits: dict[str, np.ndarray],
    in_shape: list,
    doc: str,
    outputs: tuple[str, ...] = ("logits",),
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["N", 10]) for o in outputs],
        [numpy_helper.from_array(np.ascontiguousarray(a), n) for n, a in inits.items()],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="precision-workbench-demo",
    )
    model.ir_version = 8
    model.doc_string = doc
    onnx.checker.check_model(model, full_check=True)
    return model


def build_cnn(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> tuple[onnx.ModelProto, float]:
    rng = np.random.default_rng(SEED)
    c1, c2 = _Conv(rng, 1, 16, 3, 1, 1), _Conv(rng, 16, 32, 3, 2, 1)
    d1, d2 = _Dense(rng, 32 * 4 * 4, 64), _Dense(rng, 64, 10)
    layers = [c1, _Relu(), c2, _Relu(), _Flatten(), d1, _Relu(), d2]
    _train(layers, x_train, y_train, epochs=12, seed=SEED)
    acc = _accuracy(layers, x_test, y_test)
    h = helper.make_node
    nodes = [
        h(
            "Conv",
            ["image", "conv1.w", "conv1.b"],
            ["conv1"],
            name="conv1",
            pads=[1, 1, 1, 1],
            kernel_shape=[3, 3],
        ),
        h("Relu", ["conv1"], ["relu1"], name="relu1"),
        h(
            "Conv",
            ["relu1", "conv2.w", "conv2.b"],
            ["conv2"],
            name="conv2",
            pads=[1, 1, 1, 1],
            strides=[2, 2],
            kernel_shape=[3, 3],
        ),
        h("Relu", ["conv2"], ["relu2"], name="relu2"),
        h("Flatten", ["relu2"], ["flat"], name="flatten", axis=1),
        h("Gemm", ["flat", "fc1.w", "fc1.b"], ["fc1"], name="fc1"),
        h("Relu", ["fc1"], ["relu3"], name="relu3"),
        h("Gemm", ["relu3", "fc2.w", "fc2.b"], ["logits"], name="fc2"),
    ]
    inits = {
        "conv1.w": c1.w,
        "conv1.b": c1.b,
        "conv2.w": c2.w,
        "conv2.b": c2.b,
        "fc1.w": d1.w,
        "fc1.b": d1.b,
        "fc2.w": d2.w,
        "fc2.b": d2.b,
    }
    doc = f"Digits CNN trained in numpy (seed {SEED}); held-out top-1 accuracy {acc:.4f}"
    return _model("digits_cnn", nodes, inits, ["N", 1, 8, 8], doc), acc


def build_mlp(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> tuple[onnx.ModelProto, float]:
    rng = np.random.default_rng(SEED + 1)
    d1, d2, d3 = _Dense(rng, 64, 128), _Dense(rng, 128, 64), _Dense(rng, 64, 10)
    layers = [_Flatten(), d1, _Relu(), d2, _Relu(), d3]
    _train(layers, x_train, y_train, epochs=20, seed=SEED + 1)
    acc = _accuracy(layers, x_test, y_test)
    h = helper.make_node
    nodes = [
        h("Flatten", ["image"], ["flat"], name="flatten", axis=1),
        h("MatMul", ["flat", "fc1.w"], ["mm1"], name="fc1"),
        h("Add", ["mm1", "fc1.b"], ["fc1_out"], name="fc1_bias"),
        h("Relu", ["fc1_out"], ["relu1"], name="relu1"),
        h("MatMul", ["relu1", "fc2.w"], ["mm2"], name="fc2"),
        h("Add", ["mm2", "fc2.b"], ["fc2_out"], name="fc2_bias"),
        h("Relu", ["fc2_out"], ["relu2"], name="relu2"),
        h("MatMul", ["relu2", "fc3.w"], ["mm3"], name="fc3"),
        h("Add", ["mm3", "fc3.b"], ["logits"], name="fc3_bias"),
    ]
    inits = {
        "fc1.w": d1.w,
        "fc1.b": d1.b,
        "fc2.w": d2.w,
        "fc2.b": d2.b,
        "fc3.w": d3.w,
        "fc3.b": d3.b,
    }
    doc = f"Digits MLP trained in numpy (seed {SEED + 1}); held-out top-1 accuracy {acc:.4f}"
    return _model("digits_mlp", nodes, inits, ["N", 1, 8, 8], doc), acc


#: cnn32's convolutions: (output channels, stride); 3×3 kernels, padding 1, ReLU after each
CNN32_CONVS = ((32, 1), (64, 1), (96, 2), (128, 1), (192, 2), (192, 1))


def build_cnn32(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> tuple[onnx.ModelProto, float]:
    """Six 3×3 convolutions and a linear layer on 32×32 digits.

    The graph normalises its input (``Div``, ``Sub``) and also outputs ``probs`` (``Softmax``):
    ops that accelerators often leave to the host, so device profiles split it in subgraphs."""
    from . import augment32, split32

    rng = np.random.default_rng(SEED + 2)
    convs, cin = [], 1
    for cout, stride in CNN32_CONVS:
        convs.append(_Conv(rng, cin, cout, 3, stride, 1))
        cin = cout
    side = 32 // int(np.prod([s for _, s in CNN32_CONVS]))
    fc = _Dense(rng, cin * side * side, 10)
    layers: list = [x for c in convs for x in (c, _Relu())] + [_Flatten(), fc]
    aug = np.random.default_rng(SEED + 3)
    x_test32, y_test32 = split32(x_test, y_test, "test")
    # (x - mean) / std with mean and std of the augmented training images, rounded; computed
    # as x / std - mean / std, the graph's own order
    std, shift = np.array(0.28, np.float32), np.array(0.28 / 0.28, np.float32)
    for epoch in range(6):
        x = augment32(x_train, aug) / std - shift
        _train(layers, x, y_train, epochs=1, seed=SEED + 10 + epoch, lr=1e-3)
    acc = _accuracy(layers, x_test32 / std - shift, y_test32)
    h = helper.make_node
    nodes = [
        h("Div", ["image", "std"], ["scaled"], name="normalize_div"),
        h("Sub", ["scaled", "shift"], ["x0"], name="normalize_sub"),
    ]
    inits: dict[str, np.ndarray] = {"std": std, "shift": shift}
    for i, (conv, (_, stride)) in enumerate(zip(convs, CNN32_CONVS, strict=True), 1):
        nodes += [
            h(
                "Conv",
                [f"x{i - 1}", f"conv{i}.w", f"conv{i}.b"],
                [f"conv{i}"],
                name=f"conv{i}",
                pads=[1, 1, 1, 1],
                strides=[stride, stride],
                kernel_shape=[3, 3],
            ),
            h("Relu", [f"conv{i}"], [f"x{i}"], name=f"relu{i}"),
        ]
        inits[f"conv{i}.w"], inits[f"conv{i}.b"] = conv.w, conv.b
    nodes += [
        h("Flatten", [f"x{len(convs)}"], ["flat"], name="flatten", axis=1),
        h("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc"),
        h("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    inits["fc.w"], inits["fc.b"] = fc.w, fc.b
    doc = (
        f"Digits upscaled to 32x32 with shifts and noise, CNN trained in numpy (seed {SEED + 2}); "
        f"held-out top-1 accuracy {acc:.4f}"
    )
    return _model("digits_cnn32", nodes, inits, ["N", 1, 32, 32], doc, ("logits", "probs")), acc


BUILDERS = {"cnn": build_cnn, "mlp": build_mlp, "cnn32": build_cnn32}


def build_all(out_dir: Path = HERE, only: tuple[str, ...] = tuple(BUILDERS)) -> dict[str, float]:
    """Write digits.npz (if missing; needs scikit-learn) and the ``only`` models; return their
    held-out accuracies. Runs in a child process with one BLAS thread if needed."""
    from . import load_digits_split

    if any(os.environ.get(v) != "1" for v in _BLAS_VARS):
        env = {**os.environ, **dict.fromkeys(_BLAS_VARS, "1")}
        cmd = [sys.executable, "-m", "workbench.demo.build", "--out", str(out_dir), "--json"]
        cmd += ["--only", *only]
        done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        return json.loads(done.stdout)

    out_dir.mkdir(parents=True, exist_ok=True)
    npz = out_dir / "digits.npz"
    if not npz.exists():
        write_digits_npz(npz)
    x_train, y_train, x_test, y_test = load_digits_split(npz)
    accs = {}
    for name in only:
        model, acc = BUILDERS[name](x_train, y_train, x_test, y_test)
        (out_dir / f"{name}.onnx").write_bytes(model.SerializeToString())
        accs[name] = acc
    return accs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--json", action="store_true", help="print accuracies as JSON")
    ap.add_argument("--only", nargs="+", choices=tuple(BUILDERS), default=tuple(BUILDERS))
    args = ap.parse_args()
    accs = build_all(args.out, tuple(args.only))
    if args.json:
        print(json.dumps(accs))
        return
    for name, acc in accs.items():
        print(f"{name}: held-out top-1 accuracy {acc:.4f} -> {args.out / (name + '.onnx')}")


if __name__ == "__main__":
    main()
