"""Benchmark explore sweeps: time, variant builds and cache, and the measurement protocol.

1. Sweep of the demo CNN (all variants × {performance, accuracy} × ORT CPU and OpenVINO CPU):
   sweep time, builds (each variant once), a second sweep served from the variant cache.
2. 95% interval widths of latency and accuracy per record, on the demo CNN, the compute-bound
   demo ``cnn32`` and a real detector from the test corpus (``nudenet_320n``, when fetched).
3. Protocol vs the previous one (a new session per round, 3 fixed warm-up runs, median of
   three round medians): the spread (max/min) of the latency estimate over repeated
   measurements of the same setting, and the ratio of the two spreads.

``python benchmarks/bench_explore.py [--quick]``
"""

from __future__ import annotations

import statistics as pystats
import sys
import time
from pathlib import Path

import numpy as np

import workbench as wb
from workbench.study import VARIANTS, clear_cache

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def sweep_and_cache(min_time: float) -> wb.Study:
    model = wb.load_model(wb.demo.demo_model_path("cnn"))
    data = wb.demo.demo_dataset("test")
    devices = ["cpu"] + [d.name for d in wb.devices() if d.name == "openvino:CPU"]
    hints = ("performance", "accuracy")
    clear_cache()
    t0 = time.perf_counter()
    study = wb.explore(model, data, wb.demo.accuracy, VARIANTS, hints, devices, min_time=min_time)
    sweep = time.perf_counter() - t0
    built = [b for b in study.builds if not b.cached and b.variant != "f32" and not b.error]
    t1 = time.perf_counter()
    again = wb.explore(model, data, wb.demo.accuracy, VARIANTS, hints, devices, min_time=min_time)
    second = time.perf_counter() - t1
    rebuilt = [b for b in again.builds if not b.cached and b.variant != "f32" and not b.error]
    print(f"1. demo CNN sweep: {len(study.records)} records (one per distinct setting) from "
          f"{len(VARIANTS)} variants × {len(hints)} hints × {len(devices)} devices")  # fmt: skip
    print(f"   sweep {sweep:.2f} s, {len(built)} builds; second sweep {second:.2f} s, "
          f"{len(rebuilt)} builds (cache), ratio {sweep / second:.2f}×")  # fmt: skip
    for b in study.builds:
        if b.error:
            print(f"   not built: {b.variant}: {b.error[:100]}")
    return study


def ci_table(name: str, study: wb.Study) -> None:
    print(f"2. 95% intervals, {name} ({study.records[0].host.get('cpu', '?')}):")
    widths = []
    for r in study.records:
        if not r.ok:
            continue
        lo, hi = r.latency_ci_ms
        w = (hi - lo) / r.latency_ms
        widths.append(w)
        acc = (
            f"acc {r.accuracy:.4f} [{r.accuracy_ci[0]:.4f}, {r.accuracy_ci[1]:.4f}]"
            if r.accuracy_ci
            else f"acc {r.accuracy:.4f}"
        )
        print(f"   {r.label:<58} {r.latency_ms:9.4f} ms [{lo:.4f}, {hi:.4f}] "
              f"±{50 * w:4.1f}%  {r.runs:5d} runs  {acc}")  # fmt: skip
    if widths:
        print(f"   median relative latency CI width {100 * float(np.median(widths)):.1f}%")


def demo_intervals(min_time: float) -> None:
    for name in ("cnn", "cnn32"):
        model = wb.load_model(wb.demo.demo_model_path(name))
        data = wb.demo.demo_dataset("test", model=name, n=240)
        study = wb.explore(model, data, wb.demo.accuracy, ("f32", "f16", "int8"),
                           ("performance",), ("cpu", "openvino:CPU"), min_time=min_time)  # fmt: skip
        ci_table(f"demo {name}", study)


def corpus_intervals(min_time: float) -> None:
    import corpus

    path = corpus.available().get("nudenet_320n")
    if path is None:
        print("2. (corpus model nudenet_320n not fetched: python tests/corpus.py fetch)")
        return
    model = wb.load_model(path)
    data = wb.Dataset(corpus.feeds("nudenet_320n", n=8))
    validation = wb.study.agreement_validation(model, data)
    study = wb.explore(model, data, validation, ("f32", "f16"), ("performance",),
                       ("cpu", "openvino:CPU"), min_time=min_time, bench_items=4)  # fmt: skip
    ci_table("corpus nudenet_320n (YOLOv8n 320×320)", study)


def old_protocol(model, data) -> float:
    """The previous protocol: three rounds, a new session and 3 warm-up runs each."""
    medians = [wb.benchmark(model, "cpu", dataset=data, warmup=3, min_time=0.2).median_ms
               for _ in range(3)]  # fmt: skip
    return float(np.median(medians))


def protocol_spread(repeats: int) -> None:
    model = wb.load_model(wb.demo.demo_model_path("cnn32"))
    data = wb.demo.demo_dataset("test", model="cnn32", n=16)
    bench = wb.Dataset(list(data.feeds())[:8])
    old = [old_protocol(model, bench) for _ in range(repeats)]
    new = []
    for _ in range(repeats):
        s = wb.explore(model, data, wb.demo.accuracy, ("f32",), ("performance",), min_time=0.6)
        new.append(s.records[0].latency_ms)
    spread_old, spread_new = max(old) / min(old), max(new) / min(new)
    print(f"3. cnn32 f32 on cpu, {repeats} repeated measurements (same total time ≈0.6 s each):")
    print(f"   previous protocol: median {pystats.median(old):.4f} ms, max/min {spread_old:.3f}")
    print(f"   this protocol:     median {pystats.median(new):.4f} ms, max/min {spread_new:.3f}")
    print(f"   spread ratio (previous − 1) / (this − 1): "
          f"{(spread_old - 1) / max(spread_new - 1, 1e-9):.2f}×")  # fmt: skip


def main() -> None:
    quick = "--quick" in sys.argv
    min_time = 0.3 if quick else 0.6
    sweep_and_cache(min_time)
    demo_intervals(min_time)
    corpus_intervals(min_time)
    protocol_spread(3 if quick else 6)


if __name__ == "__main__":
    main()
