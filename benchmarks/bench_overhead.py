"""Benchmark overhead of ``workbench.benchmark`` vs a bare ``session.run`` loop on the same model.

Prints per-run latency of both and their ratio (target: ≤ 1.05). Both loops time the same
prepared feeds on the same session options; they alternate in rounds so machine noise hits
both alike.
"""

from __future__ import annotations

import time

import numpy as np

import workbench as wb
from workbench.runtime.ort import make_session


def bare_loop(session, feeds: dict, runs: int) -> float:
    """Median ms of ``session.run`` timed exactly like workbench.benchmark times its calls."""
    times = []
    clock = time.perf_counter
    for _ in range(runs):
        t0 = clock()
        session.run(None, feeds)
        times.append(clock() - t0)
    return float(np.median(times) * 1e3)


def main(rounds: int = 5, runs: int = 2000) -> None:
    for name in ("mlp", "cnn"):
        model = wb.load_model(wb.demo.demo_model_path(name))
        ds = wb.demo.demo_dataset("test", n=1)
        feeds = next(ds.feeds())
        session = make_session(model)
        ours, bare = [], []
        for _ in range(rounds):
            bare.append(bare_loop(session, feeds, runs))
            ours.append(wb.benchmark(model, dataset=ds, warmup=10, runs=runs).median_ms)
        o, b = float(np.median(ours)), float(np.median(bare))
        print(
            f"{name}: workbench.benchmark {o * 1e3:.1f} us/run, bare session.run {b * 1e3:.1f} us/run, ratio {o / b:.3f}"
        )


if __name__ == "__main__":
    main()
