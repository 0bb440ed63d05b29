"""Do layer times add up? ``wb.layer_profile`` vs the whole-model latency, on several models.

For each model and device it prints: the sum of the per-layer times, the whole-model time the
runtime's profiler measured in the same runs, the latency of a plain (unprofiled)
``wb.benchmark`` and the profiling overhead (profiled wall time / plain latency). It also
prints the share of compute nodes the layers cover. Real-model corpus entries are included
when ``tests/corpus.py`` has them cached.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import workbench as wb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import models  # noqa: E402


def _models() -> list[tuple[str, object, object]]:
    out = [
        (
            "demo cnn",
            wb.load_model(wb.demo.demo_model_path("cnn")),
            wb.demo.demo_dataset("test", n=2),
        ),
        ("conv_stack", models.conv_stack(size=32, channels=32, layers=4), None),
        ("transformer_like", models.transformer_like(), None),
    ]
    try:
        import corpus  # tests/corpus.py: cached real models (may be absent)

        for name, path in sorted(corpus.available().items())[:4]:
            try:
                out.append((name, wb.load_model(path), wb.Dataset(corpus.feeds(name, 2))))
            except Exception as e:  # a corpus model we cannot feed: say so, go on
                print(f"skip {name}: {type(e).__name__}: {e}")
    except ImportError:
        pass
    return out


def main(runs: int = 30) -> None:
    devices = ["cpu"] + (["openvino:CPU"] if importlib.util.find_spec("openvino") else [])
    print(f"{'model':20} {'device':13} {'layers ms':>10} {'model ms':>9} {'plain ms':>9} "
          f"{'layers/model':>12} {'overhead':>8} {'coverage':>8}")  # fmt: skip
    for name, model, data in _models():
        ds = data if data is not None else wb.random_dataset(model, n=2, seed=0)
        for dev in devices:
            try:
                p = wb.layer_profile(model, dev, dataset=ds, runs=runs, warmup=3)
                plain = wb.benchmark(model, dev, dataset=ds, runs=runs, warmup=3).mean_ms
            except wb.WorkbenchError as e:
                print(f"{name:20} {dev:13} failed: {str(e)[:80]}")
                continue
            print(
                f"{name:20} {dev:13} {p.layer_ms:10.4f} {p.total_ms:9.4f} {plain:9.4f} "
                f"{p.layer_ms / p.total_ms:12.3f} {p.wall_ms / plain:8.3f} {p.coverage:8.0%}"
            )


if __name__ == "__main__":
    main()
