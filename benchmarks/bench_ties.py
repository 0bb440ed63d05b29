"""Check the measurement protocol: interval widths, ties between identical settings, separation
of settings that really differ.

Every sweep uses one intra-op thread (the protocol's ``threads`` argument) so the numbers
do not depend on how many cores other processes leave free.

(a) 95% interval widths of latency and accuracy from one ``wb.explore`` on the demo CNN and on
    a real-size model (the corpus' YOLOv8n detector when cached, or ``--model PATH``).
(b) Two identical variants — the f32 model and a copy that differs only in its bytes (a
    ``doc_string``) — in ``--sweeps`` (default 100) small repeated sweeps: how often the verdict
    (:class:`workbench.recommendation.Compared`, Holm-corrected) calls them tied. Target ≥ 95%.
(c) Settings that really differ: the compute-bound demo ``cnn32`` on OpenVINO CPU with an f32
    vs a bf16 inference-precision hint, when this CPU computes bf16 natively (OpenVINO reports
    BF16 in its optimization capabilities and the CPU has AVX512-BF16 or AMX-BF16); otherwise the
    half is skipped with the reason. Target: separated in ≥ 90% of sweeps.

Run: ``.venv/bin/python benchmarks/bench_ties.py [--sweeps 100] [--model PATH]``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx

import workbench as wb
from workbench.cpu import cpu_info
from workbench.progress import quiet
from workbench.recommendation import Compared
from workbench.runtime.hints import PrecisionWarning
from workbench.study import agreement_validation

ROOT = Path(__file__).resolve().parents[1]


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """Same computation, different bytes."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.doc_string = (model.doc_string or "") + " identical copy"
    return out


def _sweep(model, data, fn, **kw):
    with warnings.catch_warnings(), quiet():
        warnings.simplefilter("ignore", PrecisionWarning)
        return wb.explore(model, data, fn, **kw)


def _widths(name: str, study) -> None:
    for r in study.records:
        if not r.ok:
            print(f"  {name}: {r.label} failed: {r.error}")
            continue
        lo, hi = r.latency_ci_ms
        acc = ""
        if r.accuracy_ci is not None:
            alo, ahi = r.accuracy_ci
            acc = f", accuracy {r.accuracy:.4f} [{alo:.4f}, {ahi:.4f}] ({len(r.scores)} items)"
        print(
            f"  {name}: {r.label}: latency {r.latency_ms:.4g} ms [{lo:.4g}, {hi:.4g}] "
            f"= ±{(hi - lo) / 2 / r.latency_ms:.1%} of the median over {r.runs} runs{acc}"
        )


def _real_model(path: str | None):
    if path:
        return Path(path).name, wb.load_model(path), None
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import corpus

        found = corpus.available()
    except Exception as e:  # the corpus is a test asset; the benchmark still runs without it
        found, corpus = {}, None
        print(f"  (corpus unavailable: {e})")
    if "nudenet_320n" in found:
        return "nudenet_320n (YOLOv8n 320)", wb.load_model(found["nudenet_320n"]), corpus
    print("  (real-size corpus model not cached: `python tests/corpus.py fetch`; using cnn32)")
    return "cnn32", wb.load_model(wb.demo.demo_model_path("cnn32")), None


def part_a(model_path: str | None) -> None:
    print("(a) 95% interval widths (one sweep each, f32, cpu, min_time 1 s, 1 thread)")
    demo = wb.load_model(wb.demo.demo_model_path("cnn"))
    data = wb.demo.demo_dataset("test")
    _widths("demo cnn", _sweep(demo, data, wb.demo.accuracy, variants=["f32"], hints=["performance"], min_time=1.0, threads=1))  # fmt: skip
    name, model, corpus = _real_model(model_path)
    if corpus is not None:
        feeds = wb.Dataset(corpus.feeds("nudenet_320n", n=8))
    else:
        feeds = wb.random_dataset(model, n=8, seed=0)
    fn = agreement_validation(model, feeds)
    _widths(name, _sweep(model, feeds, fn, variants=["f32"], hints=["performance"], min_time=1.0, threads=1))  # fmt: skip


def part_b(sweeps: int) -> int:
    print(f"(b) identical variants (f32 vs a byte-different copy), {sweeps} small sweeps")
    model = wb.load_model(wb.demo.demo_model_path("cnn"))
    data = wb.demo.demo_dataset("test", n=64)
    tied, ratios, t0 = 0, [], time.perf_counter()
    for _ in range(sweeps):
        s = _sweep(model, data, wb.demo.accuracy, variants=["f32", ("f32-copy", _copy)],
                   hints=["performance"], min_time=0.2, rounds=3, threads=1)  # fmt: skip
        cmp = Compared([r for r in s.records if r.ok])
        tied += cmp.tied(0, 1)
        ratios.append(cmp.ratio(0, 1).estimate)
    r = np.asarray(ratios)
    print(
        f"  tied in {tied}/{sweeps} sweeps (target ≥ 95%); median ratios f32/copy "
        f"{np.median(r):.3f}, 5–95% of sweeps {np.percentile(r, 5):.3f}–{np.percentile(r, 95):.3f}"
        f"; {time.perf_counter() - t0:.0f} s"
    )
    return tied


def bf16_reason() -> str | None:
    """Why OpenVINO f32 vs bf16 cannot be separated on this machine (None: it can)."""
    if "openvino:CPU" not in {d.name for d in wb.devices()}:
        return "OpenVINO CPU device not available (pip install openvino)"
    flags = set(cpu_info().flags)
    if not flags & {"avx512_bf16", "amx_bf16"}:
        return f"this CPU has no native bf16 (flags: {', '.join(cpu_info().key_flags)})"
    import openvino

    caps = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" not in caps:
        return f"OpenVINO CPU reports no BF16 capability ({', '.join(caps)})"
    return None


def part_c(sweeps: int) -> tuple[int, int]:
    reason = bf16_reason()
    if reason:
        print(f"(c) skipped: {reason}")
        return 0, 0
    print(f"(c) OpenVINO CPU f32 vs bf16 hint on cnn32, {sweeps} small sweeps")
    model = wb.load_model(wb.demo.demo_model_path("cnn32"))
    data = wb.demo.demo_dataset("test", n=64, model="cnn32")
    hints = [wb.Hint(inference_precision="f32"), wb.Hint(inference_precision="bf16")]
    separated, ratios, t0 = 0, [], time.perf_counter()
    for _ in range(sweeps):
        s = _sweep(model, data, wb.demo.accuracy, variants=["f32"], hints=hints,
                   devices=["openvino:CPU"], min_time=0.6, rounds=3, threads=1)  # fmt: skip
        ok = [r for r in s.records if r.ok]
        if len(ok) != 2:
            print("  a sweep did not give two records:", [(r.label, r.error) for r in s.records])
            continue
        cmp = Compared(ok)
        separated += cmp.speed(0, 1) != 0
        ratios.append(cmp.ratio(0, 1).estimate)
    print(
        f"  separated in {separated}/{sweeps} sweeps (target ≥ 90%); precision ran "
        f"{[r.precision_ran for r in ok]}; median time ratio f32/bf16 {np.median(ratios):.2f}; "
        f"{time.perf_counter() - t0:.0f} s"
    )
    return separated, sweeps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweeps", type=int, default=100)
    ap.add_argument("--separation-sweeps", type=int, default=20)
    ap.add_argument("--model", default=None, help="a real-size ONNX model for (a)")
    ap.add_argument("--skip-a", action="store_true")
    args = ap.parse_args()
    print(f"CPU: {cpu_info().model}; key flags {', '.join(cpu_info().key_flags)}")
    if not args.skip_a:
        part_a(args.model)
    tied = part_b(args.sweeps)
    sep, n = part_c(args.separation_sweeps)
    verdict = tied >= 0.95 * args.sweeps and (n == 0 or sep >= 0.9 * n)
    print("PASS" if verdict else "FAIL")


if __name__ == "__main__":
    main()
