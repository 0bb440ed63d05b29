"""``workbench demo``: the end-to-end story on the demo CNN, written to an output folder.

The story runs on ``cnn32`` (the digits upscaled to 32×32 with shifts and noise, ~100 M
multiply-adds per image): compute-bound, so precision moves its latency, and with borderline
test items, so precision moves its accuracy.

1. inspect the demo models and measure their float32 accuracy and latency (``demo.json``);
2. float16 conversion with its report, bfloat16, automatic mixed precision, int8 and int8 with
   accuracy control;
3. an exploration of those variants × hints × devices (ONNX Runtime's CPU and, when installed,
   OpenVINO's CPU with ACCURACY and PERFORMANCE) (``study.json``, ``tradeoff.svg``);
4. a second, more sensitive metric: how close each setting's logits stay to float32's
   (``closeness.json``);
5. affinity over a simulated NPU and GPU plus the CPU, subgraphs and their timings
   (``affinity.svg``, ``subgraphs.svg``);
6. the recommendation, and everything in one standalone HTML report, ``report.html`` (written
   last; its path is the last line ``workbench demo`` prints).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..data import Dataset
from ..figures import figure_svg
from ..fileio import atomic_write_bytes
from ..hardware.affinity import affinity
from ..hardware.execution import benchmark, evaluate, open_runner
from ..hardware.partition import partition
from ..hardware.registry import devices
from ..metrics import agreement, cosine, max_abs_error, sqnr
from ..model import inspect, load_model, save_model
from ..precision.accuracy_control import quantize_with_accuracy_control
from ..precision.float16 import convert_float16
from ..precision.int8 import quantize_int8
from ..precision.mixed import auto_mixed_precision
from ..progress import quiet, task
from ..results import Result
from ..study import explore
from ..viz.plots import tradeoff_plot
from . import DEMO_MODELS, accuracy, demo_dataset, demo_model_path

#: the model the story runs on
STORY_MODEL = "cnn32"
#: devices of the affinity part of the story: simulated accelerators first, the CPU as fallback
AFFINITY_DEVICES = ("npu-sim", "gpu-sim", "cpu")
HINTS = ("performance", "accuracy")
#: test items the logit comparison uses (the logits move on every item: fewer suffice)
CLOSENESS_ITEMS = 240
#: the largest accuracy drop the recommendation accepts (absolute, top-1)
MAX_DROP = 0.01


@dataclass(frozen=True)
class LogitCloseness(Result):
    """How close each setting's logits stay to ONNX Runtime float32's on the test set.

    Top-1 hardly moves between precisions; the logits move first. ``rows``: variant, device,
    hint, top-1 agreement with float32, cosine similarity, SQNR (dB) and max |error|.
    """

    rows: tuple[dict[str, Any], ...]
    items: int = 0

    def summary_rows(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.rows]


def story_devices() -> tuple[str, ...]:
    """The real devices of the sweep: the ORT CPU, and OpenVINO's CPU when it is installed."""
    names = {d.name for d in devices()}
    return ("cpu", "openvino:CPU") if "openvino:CPU" in names else ("cpu",)


def _models_summary() -> dict[str, Any]:
    results = {}
    for name in DEMO_MODELS:
        ds = demo_dataset("test", model=name)
        model = load_model(demo_model_path(name))
        bench = benchmark(model, dataset=ds.take(8), min_time=0.2)
        results[name] = {
            "summary": inspect(model).to_dict(),
            "accuracy": float(evaluate(model, ds, accuracy)),
            "latency_ms": bench.median_ms,
            "precision_ran": bench.precision_ran,
        }
    return results


def build_story_variants(
    model: onnx.ModelProto, test: Any, calib: Any
) -> tuple[dict[str, onnx.ModelProto], dict[str, Any]]:
    """Every variant of the story once: name → model, plus the results that explain them."""
    f16 = convert_float16(model, report=True)
    # every third item (plain and overlaid digits): the search runs many f16 evaluations
    subset = Dataset(list(test)[::3], test.transform)
    mixed = auto_mixed_precision(model, subset, validation_fn=accuracy, max_drop=MAX_DROP / 2)
    ac = quantize_with_accuracy_control(model, calib, test, accuracy, max_drop=MAX_DROP)
    variants = {
        "f32": model,
        "f16": f16.model,
        "bf16": convert_float16(model, dtype="bfloat16"),
        "mixed": mixed.model,
        "int8": quantize_int8(model, calib),
        "int8-ac": ac.model,
    }
    return variants, {"f16": f16, "mixed": mixed, "accuracy_control": ac}


def logit_closeness(
    variants: dict[str, onnx.ModelProto], dataset: Any, devs: tuple[str, ...]
) -> LogitCloseness:
    """Compare every variant × device × hint's logits with ORT float32's on ``dataset``."""
    images = np.stack([img for img, _ in dataset])
    images = images[:: max(1, len(images) // CLOSENESS_ITEMS)]  # spread: plain and overlaid
    reference = open_runner(variants["f32"])({"image": images})["logits"]
    rows = []
    for name, proto in variants.items():
        for dev in devs:
            for hint in HINTS if dev != "cpu" else HINTS[:1]:
                logits = open_runner(proto, dev, hint)({"image": images})["logits"]
                rows.append(
                    {
                        "variant": name,
                        "device": dev,
                        "hint": hint,
                        "top-1 agreement": round(float(agreement(logits, reference)), 4),
                        "cosine": round(cosine(logits, reference), 6),
                        "SQNR dB": round(sqnr(logits, reference), 1),
                        "max |error|": float(f"{max_abs_error(logits, reference):.3g}"),
                    }
                )
    return LogitCloseness(tuple(rows), len(images))


def _recommendation(study: Any) -> Any:
    """``study.recommend`` when the installed workbench has it (None otherwise)."""
    recommend = getattr(study, "recommend", None)
    return recommend(max_drop=MAX_DROP) if recommend is not None else None


def _write_json(path: Path, data: Any) -> Path:
    atomic_write_bytes(path, json.dumps(data, indent=1, default=str).encode("utf-8"))
    return path


def _graphs(out: Path, model: onnx.ModelProto, test: Any) -> dict[str, Any]:
    import workbench as wb

    aff = affinity(model, list(AFFINITY_DEVICES))
    part = partition(model, aff)
    prof = part.profile(next(iter(test.feeds())), runs=20)
    outputs: dict[str, Any] = {"affinity": aff, "partitioned": part, "profile": prof}
    for label, dot in (
        ("affinity", wb.affinity_dot(model, aff)),
        ("subgraphs", wb.subgraphs_dot(part, profile=prof)),
    ):
        atomic_write_bytes(out / f"{label}.dot", str(dot).encode("utf-8"))
        atomic_write_bytes(out / f"{label}.svg", wb.render(dot, format="svg"))
        outputs[f"{label} graph"] = out / f"{label}.svg"
    return outputs


def _sweep(
    out: Path,
    model: onnx.ModelProto,
    variants: dict[str, onnx.ModelProto],
    test: Any,
    calib: Any,
    devs: tuple[str, ...],
) -> Any:
    """Explore the built variants × hints × devices; write study.json and tradeoff.svg."""
    study = explore(
        model,
        test,
        accuracy,
        # the variants built before, so the sweep measures exactly those models
        variants=[(n, lambda _m, p=p: p) for n, p in variants.items()],
        hints=HINTS,
        devices=devs,
        calibration_dataset=calib,
        min_time=0.6,
    )
    study.save(out / "study.json")
    atomic_write_bytes(out / "tradeoff.svg", figure_svg(tradeoff_plot(study)).encode())
    return study


def run_demo(out: Path) -> dict[str, Path]:
    """Run the whole story on the demo CNN; return label → output path (the report last)."""
    import workbench as wb

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    test = demo_dataset("test", model=STORY_MODEL)
    calib = demo_dataset("train", n=128, model=STORY_MODEL)
    model = load_model(demo_model_path(STORY_MODEL))
    devs = story_devices()
    outputs: dict[str, Path] = {}
    # one bar for the story; the steps' own bars would interleave with it in a terminal
    with task("demo", total=6) as t, quiet():
        summary = _models_summary()
        t.update(postfix="models measured")

        variants, results = build_story_variants(model, test, calib)
        for name in ("f16", "mixed", "int8-ac"):
            outputs[f"{STORY_MODEL} {name}"] = save_model(
                variants[name], out / f"{STORY_MODEL}_{name.replace('-', '_')}.onnx"
            )
        t.update(postfix="variants built")

        study = _sweep(out, model, variants, test, calib, devs)
        outputs["study"], outputs["tradeoff plot"] = out / "study.json", out / "tradeoff.svg"
        t.update(postfix="exploration")

        closeness = logit_closeness(variants, test, devs)
        outputs["closeness"] = _write_json(out / "closeness.json", closeness.to_dict())
        t.update(postfix="logit closeness")

        graphs = _graphs(out, model, test)
        outputs.update({k: v for k, v in graphs.items() if isinstance(v, Path)})
        t.update(postfix="affinity and subgraphs")

        rec = _recommendation(study)
        summary["story"] = {
            "model": STORY_MODEL,
            "devices": list(devs),
            "subgraphs": len(graphs["partitioned"].subgraphs),
            "recommendation": rec.to_dict() if rec is not None else None,
        }
        outputs["summary"] = _write_json(out / "demo.json", summary)
        outputs["report"] = wb.report(
            [study, results["f16"]],  # the report shows study.recommend() itself
            out / "report.html",
            model=model,
            title="Precision Workbench demo — digits CNN at 32×32",
            results=[closeness],
            mixed=results["mixed"],
            accuracy_control=results["accuracy_control"],
            affinity=graphs["affinity"],
            partitioned=graphs["partitioned"],
            profile=graphs["profile"],
            max_drop=MAX_DROP,
        )
        t.update(postfix="report")
    return outputs
