"""Benchmark a full explore sweep of the demo CNN: time, variant builds, and the cache.

Prints the sweep time for all variants × {performance, accuracy} × devices (ORT CPU and
OpenVINO CPU when installed), how many variant builds ran (each variant once, however many
hints and devices), what a loop rebuilding the variant for every (hint, device) would have
spent on builds (measured build times × combinations), and a second sweep served from the
variant cache (0 builds).
"""

from __future__ import annotations

import time

import workbench as wb
from workbench.study import VARIANTS, clear_cache


def main(min_time: float = 0.3) -> None:
    model = wb.load_model(wb.demo.demo_model_path("cnn"))
    data = wb.demo.demo_dataset("test")
    devices = ["cpu"] + [d.name for d in wb.devices() if d.name == "openvino:CPU"]
    hints = ("performance", "accuracy")
    clear_cache()

    t0 = time.perf_counter()
    study = wb.explore(model, data, wb.demo.accuracy, VARIANTS, hints, devices, min_time=min_time)
    sweep = time.perf_counter() - t0
    built = [b for b in study.builds if not b.cached and b.variant != "f32" and not b.error]
    failed = [b for b in study.builds if b.error]
    build_s = sum(b.seconds for b in study.builds)
    combos = len(hints) * len(devices)

    t1 = time.perf_counter()
    again = wb.explore(model, data, wb.demo.accuracy, VARIANTS, hints, devices, min_time=min_time)
    second = time.perf_counter() - t1
    rebuilt = [b for b in again.builds if not b.cached and b.variant != "f32" and not b.error]

    print(f"demo CNN sweep: {len(study.records)} records "
          f"({len(VARIANTS)} variants × {len(hints)} hints × {len(devices)} devices)")  # fmt: skip
    print(f"  sweep time                       {sweep:8.2f} s (builds {build_s:.2f} s)")
    print(f"  variant builds                   {len(built):8d} (each variant once)")
    if failed:
        for b in failed:
            print(f"  not built: {b.variant}: {b.error[:100]}")
    print(f"  builds if rebuilt per hint×device {len(built) * combos:7d} "
          f"(≈ {build_s * combos:.2f} s of building, {combos}× ours)")  # fmt: skip
    print(f"  second sweep (variant cache)     {second:8.2f} s, {len(rebuilt)} builds, "
          f"ratio {sweep / second:.2f}× faster")  # fmt: skip
    for r in study.records:
        if r.ok:
            print(f"    {r.variant:<8} {r.device:<13} {r.hint:<12} acc {r.accuracy:.4f} "
                  f"{r.latency_ms:7.3f} ms (p10 {r.p10_ms:.3f}, p90 {r.p90_ms:.3f}) "
                  f"ran {r.precision_ran}")  # fmt: skip
    print(f"  Pareto front: {[(r.variant, r.device, r.hint) for r in study.pareto()]}")


if __name__ == "__main__":
    main()
