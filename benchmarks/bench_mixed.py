"""Benchmark ``workbench.auto_mixed_precision`` vs onnxconverter-common's
``auto_convert_mixed_precision`` on the same models, data and tolerance, in the same run.

For each model it prints full-model evaluations and wall time of both tools and their ratios,
the share of float nodes each put in float16, and two checks of the resulting models:

* ``f16 > 65504``: tensors stored in float16 whose fp32 values exceed float16's range — the
  CPU-masking trap (ONNX Runtime on CPU computes those ops in float32 and hides the overflow);
* ``sim f16``: output error (× tolerance) when every node the tool put in float16 really rounds
  its inputs, weights and outputs to float16 (what a GPU computing in float16 would see).

"ours: evals (built)": evaluations, and how many of them built and ran the converted model (the
others were rejected by the rounding simulation alone). The reference runs in a subprocess capped at ``--timeout`` seconds (reported as "> X s").
Usage: ``python benchmarks/bench_mixed.py [--timeout 120]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

RTOL, ATOL = 1e-2, 1e-3


def _reference_child(model_path: str, feeds_path: str, out_path: str) -> None:
    """Run the reference; print one line per evaluation (so a timeout still shows the count)."""
    import contextlib
    import io

    from onnxconverter_common.auto_mixed_precision import auto_convert_mixed_precision

    model = onnx.load(model_path)
    with np.load(feeds_path) as npz:
        feeds = {k: npz[k] for k in npz.files}
    calls = [0]

    def count(_a, _b) -> bool:
        calls[0] += 1
        sys.__stdout__.write(f"EVAL {calls[0]}\n")
        sys.__stdout__.flush()
        return True

    t0 = time.perf_counter()
    status = "ok"
    result = None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the reference prints every attempt
            result = auto_convert_mixed_precision(
                model, feeds, validate_fn=count, rtol=RTOL, atol=ATOL, keep_io_types=True
            )
    except Exception as e:  # the reference's failures are part of what we report
        status = f"failed: {type(e).__name__}: {str(e)[:120]}"
    seconds = time.perf_counter() - t0
    if result is not None:
        onnx.save(result, out_path)
    # the first call validates fp32 against itself; the rest are evaluations
    sys.__stdout__.write(
        "RESULT "
        + json.dumps({"status": status, "seconds": seconds, "evaluations": calls[0] - 1})
        + "\n"
    )


def run_reference(model: onnx.ModelProto, feeds: dict, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="wb-bench-mixed-") as tmp:
        mp = os.path.join(tmp, "model.onnx")
        fp = os.path.join(tmp, "feeds.npz")
        op = os.path.join(tmp, "out.onnx")
        onnx.save(model, mp)
        np.savez(fp, **feeds)
        log = os.path.join(tmp, "log.txt")
        t0 = time.perf_counter()
        with open(log, "w") as fh:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--child", mp, fp, op],
                stdout=fh,
                stderr=subprocess.DEVNULL,
            )
            try:
                proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                timed_out = True
        wall = time.perf_counter() - t0
        lines = Path(log).read_text().splitlines()
        evals = sum(1 for ln in lines if ln.startswith("EVAL")) - 1
        info = {"status": "timeout", "seconds": wall, "evaluations": max(evals, 0)}
        for ln in lines:
            if ln.startswith("RESULT "):
                info = json.loads(ln[7:])
        info["timed_out"] = timed_out
        info["model"] = onnx.load(op) if os.path.exists(op) else None
        return info


def f16_nodes(model: onnx.ModelProto) -> set[str]:
    """Nodes of a converted model computing on float16 tensors (inputs or outputs)."""
    from workbench.tensor_types import tensor_types

    types = tensor_types(model)
    out = set()
    for node in model.graph.node:
        if node.op_type == "Cast":
            continue
        names = [n for n in (*node.input, *node.output) if n]
        if any(types.get(n) == onnx.TensorProto.FLOAT16 for n in names):
            out.add(node.name)
    return out


def overflowing_f16(model: onnx.ModelProto, ranges: dict) -> int:
    """float16 tensors of ``model`` whose fp32 values exceed float16's range."""
    from workbench.tensor_types import tensor_types

    types = tensor_types(model)
    return sum(
        1
        for name, r in ranges.items()
        if types.get(name) == onnx.TensorProto.FLOAT16 and r.max_abs > 65504
    )


def simulated_error(model: onnx.ModelProto, converted: set[str], feeds_list: list) -> float:
    """Output error (× tolerance) with the ``converted`` nodes rounding to float16."""
    from workbench.precision._instrument import rounding_probe
    from workbench.precision.mixed import _tolerance_ratio

    names = [n.name for n in model.graph.node]
    run = rounding_probe(model, names, "float16")
    mask = np.array([n in converted for n in names])
    worst = 0.0
    for fd in feeds_list:
        ref, sim = run(np.zeros(len(names), bool), fd), run(mask, fd)
        for k in ref:
            worst = max(worst, _tolerance_ratio(sim[k], ref[k], RTOL, ATOL))
    return worst


def cases():
    import models

    import workbench as wb
    from workbench.model import ensure_node_names

    def rand(m, n=8):
        return wb.random_dataset(m, n=n, seed=0, dims={"N": 4})

    out = []
    for name, build in (
        ("overflow_trap", models.mixed_overflow_trap),
        ("all_safe", models.mixed_all_safe),
        ("sensitive", models.mixed_sensitive),
        ("shared_init", getattr(models, "f16_shared_initializer", None)),
        ("unnamed_nodes", models.unnamed_nodes),
        ("large", models.mixed_large),
        ("large_unshared", lambda: models.mixed_large(shared_bias=False)),
    ):
        if build is None:
            continue
        m = ensure_node_names(build()) if name != "unnamed_nodes" else build()
        out.append((name, m, rand(m)))
    cnn = wb.load_model(wb.demo.demo_model_path("cnn"))
    out.append(("demo_cnn", cnn, wb.demo.demo_dataset("test").take(32)))
    return out


def main(timeout: float) -> None:
    import models

    import workbench as wb
    from workbench.model import ensure_node_names
    from workbench.precision._instrument import tensor_ranges
    from workbench.progress import quiet

    warm = models.mixed_sensitive()  # imports and first-session costs stay out of the timings
    with quiet():
        wb.auto_mixed_precision(warm, wb.random_dataset(warm, n=2, dims={"N": 4}))

    header = (
        f"{'model':<14} {'nodes':>5} | {'ours: evals (built)':>18} {'s':>6} {'f16%':>5} {'f16>65504':>9} "
        f"{'sim f16':>8} | {'ref: evals':>10} {'s':>8} {'f16%':>5} {'f16>65504':>9} "
        f"{'sim f16':>8} {'status':<10} | {'evals ratio':>11} {'time ratio':>10}"
    )
    print(f"rtol={RTOL} atol={ATOL}; 'sim f16' = output error × tolerance under real f16 rounding")
    print(header)
    print("-" * len(header))
    for name, model, ds in cases():
        feeds_list = list(ds.feeds())
        batch = {k: np.concatenate([f[k] for f in feeds_list]) for k in feeds_list[0]}
        named = ensure_node_names(model)
        ranges = tensor_ranges(named, feeds_list, tiny=2.0**-14)

        t0 = time.perf_counter()
        with quiet():
            ours = wb.auto_mixed_precision(model, ds)
        ours_s = time.perf_counter() - t0
        ours_f16 = f16_nodes(ours.model)
        ours_sim = simulated_error(named, ours_f16, feeds_list[:4])

        built = sum(1 for h in ours.history if h["ran_converted"])
        evals = f"{ours.evaluations} ({built})"
        ref = run_reference(model, batch, timeout)
        n_float = len(ours.converted) + len(ours.kept_float)
        if ref["model"] is not None:
            ref_f16 = f16_nodes(ref["model"])
            ref_pct = f"{100 * len(ref_f16) / max(n_float, 1):.0f}"
            ref_over = str(overflowing_f16(ref["model"], ranges))
            ref_sim = f"{simulated_error(named, ref_f16, feeds_list[:4]):.3g}"
        else:
            ref_pct, ref_over, ref_sim = "-", "-", "-"
        ref_s = f"> {timeout:.0f}" if ref["timed_out"] else f"{ref['seconds']:.2f}"
        ref_e = f"> {ref['evaluations']}" if ref["timed_out"] else str(ref["evaluations"])
        status = "timeout" if ref["timed_out"] else ref["status"][:60]
        prefix = ">" if ref["timed_out"] else ""
        failed = ref["status"].startswith("failed")
        e_ratio = "-" if failed else f"{prefix}{ref['evaluations'] / max(ours.evaluations, 1):.1f}x"
        t_ratio = "-" if failed else f"{prefix}{ref['seconds'] / ours_s:.1f}x"
        if failed:
            ref_e = "-"
        print(
            f"{name:<14} {len(model.graph.node):>5} | {evals:>18} {ours_s:>6.2f} "
            f"{100 * ours.converted_fraction:>5.0f} {overflowing_f16(ours.model, ranges):>9} "
            f"{ours_sim:>8.3g} | {ref_e:>10} {ref_s:>8} {ref_pct:>5} {ref_over:>9} {ref_sim:>8} "
            f"{status:<10} | {e_ratio:>11} {t_ratio:>10}"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _reference_child(*sys.argv[2:5])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=120.0, help="cap for the reference (s)")
    main(parser.parse_args().timeout)
