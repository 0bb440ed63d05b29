"""int8 latency vs fp32, and accuracy control vs NNCF's ``quantize_with_accuracy_control``.

Part 1 — ORT CPU latency of int8 models over fp32 (ratio < 1 = int8 faster), for the test models
(outlier-channel CNN, the int8-ruining MLP after accuracy control) and the demo CNN, at batch 1
and batch 64, all timed in this run with ``workbench.runtime.benchmark``.

Part 2 — accuracy control on the demo CNN (real accuracy metric) and on the ruining MLPs: wall
time, validation_fn calls, reverted ops, final metric, whether the result is still int8, and its
latency over fp32 — ours and NNCF's (ONNX backend) on the same data, same run.

Run: ``.venv/bin/python benchmarks/bench_int8.py``
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np
import onnx

import workbench as wb
from workbench.precision.int8 import quantize_int8
from workbench.progress import quiet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import models  # noqa: E402


def batched(dataset: wb.Dataset, n: int) -> wb.Dataset:
    """One feeds dict stacking the first ``n`` items (batch ``n``)."""
    feeds = list(dataset.take(n).feeds())
    return wb.Dataset([{k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}])


def latency_ratio(fp32: onnx.ModelProto, int8: onnx.ModelProto, data: wb.Dataset) -> str:
    """int8/fp32 median latency at batch 1 and 64; 3 interleaved rounds, best median of each
    (the 2-core machine is shared: interleaving and the minimum damp other people's load)."""
    cells = []
    for batch in (1, 64):
        d = batched(data, batch)
        f = q = float("inf")
        for _ in range(3):
            f = min(f, wb.benchmark(fp32, dataset=d, min_time=0.3).median_ms)
            q = min(q, wb.benchmark(int8, dataset=d, min_time=0.3).median_ms)
        cells.append(f"b{batch}: fp32 {f:7.3f} ms int8 {q:7.3f} ms ratio {q / f:5.2f}")
    return " | ".join(cells)


def int8_ops(model: onnx.ModelProto) -> int:
    """Compute nodes with both data and weight (inputs 0 and 1) arriving through Q/DQ.

    Counted the same way for both tools (NNCF keeps biases float, so
    :func:`quantized_nodes`, which asks every float input to be dequantized, would miss them).
    """
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return sum(
        1
        for n in model.graph.node
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
        and len(n.input) > 1
        and n.input[0] in dq
        and n.input[1] in dq
    )


def nncf_accuracy_control(model, cal, val, metric, max_drop):
    """NNCF's accuracy control (ONNX backend); returns (model, seconds, validation_fn calls)."""
    import nncf
    import onnxruntime as ort

    calls = [0]

    def validation_fn(m: onnx.ModelProto, data) -> float:
        calls[0] += 1
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]

        def run(feeds):
            return dict(zip(names, sess.run(None, feeds), strict=True))

        return metric(run, wb.Dataset(list(data), val.transform))

    t0 = time.perf_counter()
    out = nncf.quantize_with_accuracy_control(
        model,
        nncf.Dataset(list(cal), cal.transform),
        nncf.Dataset(list(val)),
        validation_fn,
        max_drop=max_drop,
        subset_size=len(cal),
    )
    return out, time.perf_counter() - t0, calls[0]


def compare_accuracy_control(name, model, cal, val, metric, max_drop) -> None:
    print(f"\n== accuracy control: {name} (max_drop={max_drop}, absolute)")
    t0 = time.perf_counter()
    try:
        ours = wb.quantize_with_accuracy_control(model, cal, val, metric, max_drop=max_drop)
        ours_model, ours_s = ours.model, time.perf_counter() - t0
        print(
            f"  workbench: {ours_s:6.2f} s, {ours.evaluations} validation_fn calls, reverted "
            f"{list(ours.reverted)}, metric {ours.baseline_metric:.4f} → {ours.final_metric:.4f}, "
            f"int8 ops {int8_ops(ours_model)}"
        )
        print(f"    latency vs fp32: {latency_ratio(model, ours_model, cal)}")
    except wb.AccuracyNotReachedError as e:
        ours_s = time.perf_counter() - t0
        print(f"  workbench: {ours_s:6.2f} s, raised AccuracyNotReachedError: {e}")
    try:
        logging.getLogger("nncf").setLevel(logging.ERROR)
        nncf_model, nncf_s, calls = nncf_accuracy_control(model, cal, val, metric, max_drop)
    except Exception as e:  # report why instead of hiding it
        print(f"  NNCF failed: {type(e).__name__}: {str(e)[:300]}")
        return
    qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in nncf_model.graph.node)
    final = wb.evaluate(nncf_model, val, metric)
    print(
        f"  NNCF:      {nncf_s:6.2f} s, {calls} validation_fn calls, metric → {final:.4f}, "
        f"int8 ops {int8_ops(nncf_model)}, Q/DQ nodes {qdq}"
        f"{' (a float model, returned silently)' if qdq == 0 else ''}"
    )
    print(f"    latency vs fp32: {latency_ratio(model, nncf_model, cal)}")
    print(f"  time ratio NNCF / workbench: {nncf_s / ours_s:5.1f}×")


def main() -> None:
    demo = wb.load_model(wb.demo.demo_model_path("cnn"))
    demo_cal = wb.demo.demo_dataset("train", n=300)
    demo_val = wb.demo.demo_dataset("test")
    outlier = models.outlier_channel_cnn()
    outlier_cal = models.labelled_feeds(outlier, 64, seed=1, uniform=True)
    ruin = models.int8_ruining_mlp()
    ruin_cal = models.labelled_feeds(ruin, 64, seed=1)
    ruin_val = models.labelled_feeds(ruin, 300, seed=2)
    stack = models.conv_stack()
    stack_cal = models.labelled_feeds(stack, 64, seed=1, uniform=True)

    print("== int8 latency over fp32 on ORT CPU (median; ratio < 1 means int8 is faster)")
    with quiet():
        rows = [
            ("demo CNN", demo, quantize_int8(demo, demo_cal), demo_val),
            ("outlier CNN", outlier, quantize_int8(outlier, outlier_cal), outlier_cal),
            ("conv stack 32x32x32", stack, quantize_int8(stack, stack_cal), stack_cal),
            ("ruining MLP, fc3 float", ruin, quantize_int8(ruin, ruin_cal, exclude_nodes=["fc3"]), ruin_cal),
        ]  # fmt: skip
        for name, fp32, int8, data in rows:
            print(f"  {name:24s} {latency_ratio(fp32, int8, data)}")

        acc = wb.evaluate(demo, demo_val, wb.demo.accuracy)
        acc8 = wb.evaluate(rows[0][2], demo_val, wb.demo.accuracy)
        print(f"  demo CNN accuracy fp32 {acc:.4f}, int8 (defaults) {acc8:.4f}")

        stack_val = models.labelled_feeds(stack, 300, seed=2, uniform=True)
        print(
            f"  conv stack top-1 agreement with fp32, int8 (defaults): "
            f"{wb.evaluate(rows[2][2], stack_val, models.agreement):.4f}"
        )
        compare_accuracy_control("demo CNN", demo, demo_cal, demo_val, wb.demo.accuracy, 0.01)
        compare_accuracy_control("ruining MLP", ruin, ruin_cal, ruin_val, models.agreement, 0.05)
        # 24 quantizable Gemms, two of which ruin int8 independently (width 128)
        deep = models.int8_ruining_mlp(layers=24, width=128, ruined=("fc5", "fc17"))
        deep_cal = models.labelled_feeds(deep, 64, seed=1)
        deep_val = models.labelled_feeds(deep, 300, seed=2)
        compare_accuracy_control(
            "deep ruining MLP (24 ops)", deep, deep_cal, deep_val, models.agreement, 0.08
        )


if __name__ == "__main__":
    main()
