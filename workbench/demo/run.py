"""``workbench demo``: the end-to-end story on the digits CNN, written to an output folder.

1. inspect the demo models and measure their float32 accuracy and latency (``demo.json``);
2. float16 conversion with its report, automatic mixed precision, int8 with accuracy control;
3. an exploration of variants × hints × devices (``study.json``, ``tradeoff.svg``);
4. affinity over a simulated NPU and GPU plus the CPU, subgraphs and their timings
   (``affinity.svg``, ``subgraphs.svg``);
5. everything in one standalone HTML report, ``report.html`` (written last; its path is the
   last line ``workbench demo`` prints).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_bytes
from ..hardware.execution import benchmark, evaluate
from ..model import inspect, load_model, save_model
from ..progress import quiet, task
from ..viz.plots import figure_svg
from . import accuracy, demo_dataset, demo_model_path

#: devices of the affinity part of the story: simulated accelerators first, the CPU as fallback
AFFINITY_DEVICES = ("npu-sim", "gpu-sim", "cpu")


def _models_summary(out: Path, ds: Any) -> Path:
    results = {}
    for name in ("cnn", "mlp"):
        model = load_model(demo_model_path(name))
        bench = benchmark(model, dataset=ds.take(16), min_time=0.3)
        results[name] = {
            "summary": inspect(model).to_dict(),
            "accuracy": evaluate(model, ds, accuracy),
            "latency_ms": bench.median_ms,
            "precision_ran": bench.precision_ran,
        }
    path = out / "demo.json"
    atomic_write_bytes(path, json.dumps(results, indent=1).encode("utf-8"))
    return path


def run_demo(out: Path) -> dict[str, Path]:
    """Run the whole story on the demo CNN; return label → output path (the report last)."""
    import workbench as wb

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    test = demo_dataset("test")
    calib = demo_dataset("train", n=128)
    cnn = load_model(demo_model_path("cnn"))
    outputs: dict[str, Path] = {}
    # one bar for the story; the steps' own bars would interleave with it in a terminal
    with task("demo", total=6) as t, quiet():
        outputs["summary"] = _models_summary(out, test)
        t.update(postfix="models measured")

        f16 = wb.convert_float16(cnn, report=True)
        outputs["cnn f16"] = save_model(f16.model, out / "cnn_f16.onnx")
        mixed = wb.auto_mixed_precision(cnn, test, validation_fn=accuracy, max_drop=0.005)
        outputs["cnn mixed"] = save_model(mixed.model, out / "cnn_mixed.onnx")
        t.update(postfix="float16 and mixed precision")

        ac = wb.quantize_with_accuracy_control(cnn, calib, test, accuracy, max_drop=0.01)
        outputs["cnn int8-ac"] = save_model(ac.model, out / "cnn_int8_ac.onnx")
        t.update(postfix="int8 with accuracy control")

        study = wb.explore(
            cnn,
            test,
            accuracy,
            variants=("f32", "f16", "bf16", "mixed", "int8", "int8-ac"),
            hints=("performance", "accuracy", "performance/f16"),
            devices=("cpu",),
            calibration_dataset=calib,
            min_time=0.3,
        )
        outputs["study"] = study.save(out / "study.json")

        atomic_write_bytes(out / "tradeoff.svg", figure_svg(wb.tradeoff_plot(study)).encode())
        outputs["tradeoff plot"] = out / "tradeoff.svg"
        t.update(postfix="exploration")

        aff = wb.affinity(cnn, list(AFFINITY_DEVICES))
        part = wb.partition(cnn, aff)
        prof = part.profile(next(iter(test.feeds())), runs=20)
        for label, dot in (
            ("affinity", wb.affinity_dot(cnn, aff)),
            ("subgraphs", wb.subgraphs_dot(part)),
        ):
            atomic_write_bytes(out / f"{label}.dot", str(dot).encode("utf-8"))
            atomic_write_bytes(out / f"{label}.svg", wb.render(dot, format="svg"))
            outputs[f"{label} graph"] = out / f"{label}.svg"
        t.update(postfix="affinity and subgraphs")

        outputs["report"] = wb.report(
            [study, f16],
            out / "report.html",
            model=cnn,
            title="Precision Workbench demo — digits CNN",
            mixed=mixed,
            accuracy_control=ac,
            affinity=aff,
            partitioned=part,
            profile=prof,
        )
        t.update(postfix="report")
    return outputs
