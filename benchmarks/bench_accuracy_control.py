"""Accuracy-control ranking in one pass vs one quantization per node vs NNCF, same run.

For each model: ``quantize_with_accuracy_control`` with ``ranking="one-pass"`` (one instrumented
ONNX Runtime session ranks every quantized node; the top 3 are re-measured for real) and with
``ranking="per-node"`` (the previous method: one ``quantize_static`` + session per node), and
NNCF's ``quantize_with_accuracy_control`` (ONNX backend) on the same data. Printed: ranking time,
total time, validation calls, reverted nodes, final metric, and the ratios.

Models: the int8-ruining MLPs of ``tests/models.py`` (5, 24 and 64 Gemms; the ruined layers are
known, so a correct answer is checkable), the demo CNN with a strict target, and the real
silero VAD model of the corpus when it is cached (``python tests/corpus.py fetch``).

Run: ``.venv/bin/python benchmarks/bench_accuracy_control.py`` (NNCF: ``pip install nncf``).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import workbench as wb
from workbench.progress import quiet

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
import corpus  # noqa: E402
import models  # noqa: E402
from bench_int8 import int8_ops, nncf_accuracy_control  # noqa: E402


def ours(model, cal, val, metric, max_drop, ranking) -> str:
    t0 = time.perf_counter()
    try:
        r = wb.quantize_with_accuracy_control(
            model, cal, val, metric, max_drop=max_drop, ranking=ranking
        )
    except wb.AccuracyNotReachedError as e:
        r = e.best
    total = time.perf_counter() - t0
    ours.last = (total, r.ranking_seconds)
    return (
        f"{total:6.2f} s (ranking {r.ranking_seconds:6.2f} s), {r.evaluations:2d} validation "
        f"calls, reverted {sorted(r.reverted)}, metric {r.baseline_metric:.4f} → "
        f"{r.final_metric:.4f}, int8 ops {int8_ops(r.model)}"
    )


def nncf_row(model, cal, val, metric, max_drop) -> tuple[str, float]:
    try:
        logging.getLogger("nncf").setLevel(logging.ERROR)
        out, seconds, calls = nncf_accuracy_control(model, cal, val, metric, max_drop)
    except Exception as e:  # report why instead of hiding it
        return f"failed: {type(e).__name__}: {str(e)[:200]}", float("nan")
    final = wb.evaluate(out, val, metric)
    return (
        f"{seconds:6.2f} s, {calls:2d} validation calls, metric → {final:.4f}, "
        f"int8 ops {int8_ops(out)}",
        seconds,
    )


def compare(name, model, cal, val, metric, max_drop) -> None:
    print(f"\n== {name} (max_drop={max_drop})")
    one = ours(model, cal, val, metric, max_drop, "one-pass")
    one_total, one_rank = ours.last
    per = ours(model, cal, val, metric, max_drop, "per-node")
    per_total, per_rank = ours.last
    text, nncf_s = nncf_row(model, cal, val, metric, max_drop)
    print(f"  one-pass ranking: {one}")
    print(f"  per-node ranking: {per}")
    print(f"  NNCF:             {text}")
    print(
        f"  ranking time per-node / one-pass: {per_rank / max(one_rank, 1e-9):5.1f}×; "
        f"total NNCF / one-pass: {nncf_s / one_total:5.1f}×"
    )


def ruining(layers: int, width: int, ruined: tuple[str, ...], max_drop: float) -> tuple:
    m = models.int8_ruining_mlp(layers=layers, width=width, ruined=ruined)
    cal = models.labelled_feeds(m, 64, seed=1)
    val = models.labelled_feeds(m, 300, seed=2)
    return (f"ruining MLP, {layers} Gemms, {ruined} ruin int8", m, cal, val, models.agreement, max_drop)  # fmt: skip


def silero() -> tuple | None:
    path = corpus.available().get("silero_vad_op15")
    if path is None:
        return None
    items = corpus.feeds("silero_vad_op15", n=16)
    ref = corpus.reference_outputs(path, items)
    data = wb.Dataset(items, transform=dict)
    metric = corpus.agreement_fn(ref)
    return ("silero VAD (torch.onnx, corpus)", wb.load_model(path), data, data, metric, 0.02)


def main() -> None:
    cases = [
        ruining(5, 32, ("fc3",), 0.05),
        ruining(24, 128, ("fc5", "fc17"), 0.08),
        ruining(64, 64, ("fc9", "fc33", "fc50"), 0.1),
    ]
    demo = wb.load_model(wb.demo.demo_model_path("cnn"))
    demo_cal = wb.demo.demo_dataset("train", n=200)
    demo_val = wb.demo.demo_dataset("test")
    cases.append(("demo CNN, strict target", demo, demo_cal, demo_val, wb.demo.accuracy, 0.002))
    if (case := silero()) is not None:
        cases.append(case)
    with quiet():
        # warm-up: imports and first-session costs would otherwise land on the first method
        name, model, cal, val, metric, max_drop = cases[0]
        wb.quantize_with_accuracy_control(model, cal.take(8), val.take(50), metric, max_drop=1.0)
        for case in cases:
            compare(*case)


if __name__ == "__main__":
    main()
