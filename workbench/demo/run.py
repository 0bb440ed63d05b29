"""``workbench demo``: the end-to-end story on the digits CNN, written to an output folder."""

from __future__ import annotations

import json
from pathlib import Path

from ..model import inspect, load_model
from ..runtime import benchmark, evaluate
from . import accuracy, demo_dataset, demo_model_path


def run_demo(out: Path) -> dict[str, Path]:
    """Run what the workbench can do on the demo models; return label → output path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = demo_dataset("test")
    results = {}
    for name in ("cnn", "mlp"):
        model = load_model(demo_model_path(name))
        bench = benchmark(model, dataset=ds.take(16), min_time=0.5)
        results[name] = {
            "summary": inspect(model).to_dict(),
            "accuracy": evaluate(model, ds, accuracy),
            "latency_ms": bench.median_ms,
            "precision_ran": bench.precision_ran,
        }
    summary = out / "demo.json"
    summary.write_text(json.dumps(results, indent=1))
    return {"summary": summary}
