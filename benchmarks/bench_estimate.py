"""How far is a roofline estimate from a measurement? A CPU-like profile vs the real CPU.

The profile is built for *this* machine: peak f32 ops/s = cores × clock × FLOPs per cycle
(from the SIMD width the CPU reports: AVX-512 → 2×16 FMA lanes, AVX2/FMA → 2×8, else 2×4) and
memory bandwidth measured here with a large numpy copy. For several models the script prints
the estimated latency (``workbench.hardware.estimate``), the measured ORT CPU latency
(``wb.benchmark``) and their ratio. A ratio far below 1 means the model is dominated by
per-node overhead or small kernels the roofline does not see.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import workbench as wb
from workbench.cpu import cpu_info
from workbench.hardware.estimate import estimate_latency
from workbench.hardware.registry import DeviceProfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import models  # noqa: E402


def _clock_hz() -> float:
    for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1]) * 1e6
    return 2.5e9  # no /proc/cpuinfo: a typical clock


def _bandwidth(nbytes: int = 256 * 2**20, repeats: int = 5) -> float:
    a = np.ones(nbytes // 8)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t0)
    return 2 * nbytes / best  # read + write


def cpu_like_profile(threads: int | None = None) -> DeviceProfile:
    info = cpu_info()
    flags = set(info.flags)
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    cores = threads or max(info.cores, 1)
    peak = cores * _clock_hz() * lanes * 2 * 2  # 2 FMA units, 2 FLOPs per FMA
    return DeviceProfile("cpu-like", precision="f32", peak_ops={"f32": peak},
                         memory_bandwidth=_bandwidth(), node_overhead_us=2.0,
                         cache_bytes=_cache_bytes())  # fmt: skip


def _cache_bytes() -> float:
    """Last-level cache size from sysfs (0 when unknown)."""
    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = f.read_text().strip().upper()
        scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
        sizes.append(float(text.rstrip("KM")) * scale)
    return max(sizes, default=0.0)


def main() -> None:
    profile = cpu_like_profile()
    print(f"cpu-like profile: {profile.peak('f32') / 1e9:.0f} GFLOP/s f32, "
          f"{profile.memory_bandwidth / 1e9:.1f} GB/s (measured copy), "
          f"{profile.cache_bytes / 2**20:.0f} MiB cache, 2 us per node")  # fmt: skip
    cases = [
        ("demo cnn", wb.load_model(wb.demo.demo_model_path("cnn"))),
        ("mlp 512", models.mlp(in_features=512, hidden=2048, out_features=512)),
        ("conv_stack 64x64x32", models.conv_stack(size=64, channels=32, layers=4)),
        ("transformer_like", models.transformer_like()),
    ]
    try:
        import corpus

        cases += [(n, wb.load_model(p), wb.Dataset(corpus.feeds(n, 1)))
                  for n, p in sorted(corpus.available().items())
                  if n in ("nudenet_320n", "ppocrv4_det", "magika")]  # fmt: skip
    except ImportError:
        pass
    print(f"{'model':22} {'estimated ms':>12} {'measured ms':>12} {'est/meas':>9}")
    for name, model, *data in cases:
        ds = data[0] if data else wb.random_dataset(model, n=1, seed=0)
        shapes = {k: v.shape for k, v in ds[0].items()}
        est = estimate_latency(model, profile, input_shapes=shapes).latency_ms
        meas = wb.benchmark(model, "cpu", dataset=ds, min_time=0.5).median_ms
        print(f"{name:22} {est:12.4f} {meas:12.4f} {est / meas:9.2f}")


if __name__ == "__main__":
    main()
