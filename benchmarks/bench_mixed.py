"""Benchmark ``workbench.auto_mixed_precision`` vs onnxconverter-common's
``auto_convert_mixed_precision`` on the same models, data and tolerance, in the same run.

For each model it prints full-model evaluations and wall time of both tools and their ratios,
the share of float nodes each put in float16, and two checks of the resulting models:

* ``f16 > 65504``: tensors stored in float16 whose fp32 values exceed float16's range — the
  CPU-masking trap (ONNX Runtime on CPU computes those ops in float32 and hides the overflow);
* ``sim f16``: output error (× tolerance) when every node the tool put in float16 really rounds
  its inputs, weights and outputs to float16 (what a GPU computing in float16 would see).

"ours: evals (built)": evaluations, and how many of them built and ran the converted model (the
others were rejected by the rounding simulation alone). "err": the final model's worst output
error × tolerance measured in ONNX Runtime (≤ 1 meets the goal); "pred": what our rounding
simulation predicted for it. The reference runs in a subprocess capped at ``--timeout``
seconds (reported as "> X s").

Models: the mixed-precision test models, the control-flow families (a recurrent VAD-like model
whose error sits in an If body among them), the demo CNN, and every model of the real-model
corpus (``tests/corpus.py``) when it exists and its files are cached.

``--probe-items``: also runs ours with 1, 2, 4 and 8 sensitivity-probe items per model (how
``mixed.PROBE_ITEMS`` was chosen).
Usage: ``python benchmarks/bench_mixed.py [--timeout 120] [--probe-items] [--no-corpus]``.
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
    """Nodes of a converted model (any graph) computing on float16 tensors."""
    from workbench.model import iter_graphs
    from workbench.tensor_types import tensor_types

    types = tensor_types(model)
    out = set()
    for node in (n for g in iter_graphs(model.graph) for n in g.node):
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
    from workbench.metrics import tolerance_ratio
    from workbench.model import iter_graphs
    from workbench.precision._instrument import rounding_probe

    names = [n.name for g in iter_graphs(model.graph) for n in g.node]
    run = rounding_probe(model, names, "float16")
    mask = np.array([n in converted for n in names])
    worst = 0.0
    for fd in feeds_list:
        ref, sim = run(np.zeros(len(names), bool), fd), run(mask, fd)
        for k in ref:
            if not isinstance(ref[k], np.ndarray) or ref[k].dtype.kind != "f":
                continue  # e.g. ZipMap's list of maps
            worst = max(worst, tolerance_ratio(sim[k], ref[k], RTOL, ATOL))
    return worst


def measured_error(model: onnx.ModelProto, fp32: onnx.ModelProto, feeds_list: list) -> float:
    """Worst output error × tolerance of ``model`` vs ``fp32`` in ONNX Runtime on every item."""
    from workbench.metrics import tolerance_ratio
    from workbench.runtime import open_runner

    new, ref = open_runner(model), open_runner(fp32)
    worst = 0.0
    for fd in feeds_list:
        a, b = new(fd), ref(fd)
        for k in b:
            if isinstance(b[k], np.ndarray) and b[k].dtype.kind == "f":
                worst = max(worst, tolerance_ratio(a[k], b[k], RTOL, ATOL))
    return worst


def reference_feeds(model: onnx.ModelProto, feeds_list: list) -> dict:
    """One feeds dict for the reference (it takes one): the items stacked on a dynamic batch
    axis when every input has one, else the first item."""
    dims = [i.type.tensor_type.shape.dim for i in model.graph.input]
    init = {t.name for t in model.graph.initializer}
    batched = all(
        d and d[0].dim_param
        for i, d in zip(model.graph.input, dims, strict=True)
        if i.name not in init
    )
    if not batched:
        return feeds_list[0]
    return {k: np.concatenate([f[k] for f in feeds_list]) for k in feeds_list[0]}


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
    for family in ("f16_if", "f16_loop", "f16_scan", "f16_tiny_constant"):
        m = getattr(models, family)()
        out.append((family, m, rand(m)))
    if hasattr(models, "recurrent_vad"):
        out.append(
            ("recurrent_vad", models.recurrent_vad(), wb.Dataset(models.recurrent_vad_feeds(8)))
        )
    cnn = wb.load_model(wb.demo.demo_model_path("cnn"))
    out.append(("demo_cnn", cnn, wb.demo.demo_dataset("test").take(32)))
    return out


def corpus_cases() -> list:
    """(name, model, dataset) for every cached real-model corpus entry; [] without a corpus."""
    try:
        import corpus  # tests/corpus.py, built by the corpus helper
    except ImportError:
        print("(no tests/corpus.py: real-model corpus skipped)")
        return []
    import workbench as wb

    out = []
    try:
        available = corpus.available()
    except Exception as e:  # a corpus that cannot be fetched here is reported, not fatal
        print(f"(corpus unavailable: {type(e).__name__}: {str(e)[:100]})")
        return []
    for name, path in sorted(available.items()):
        try:
            m = wb.load_model(path)
            out.append((f"corpus:{name}", m, wb.Dataset(corpus.feeds(name, n=4, seed=0))))
        except Exception as e:
            print(f"corpus:{name}: cannot build data ({type(e).__name__}: {str(e)[:100]})")
    if not out:
        print("(corpus has no cached models: run its fetch script first)")
    return out


def _row(name: str, model: onnx.ModelProto, ds, timeout: float) -> None:
    """One table row: ours vs the reference on one model."""
    import workbench as wb
    from workbench.model import ensure_node_names
    from workbench.precision._instrument import tensor_ranges
    from workbench.progress import quiet

    feeds_list = list(ds.feeds())
    named = ensure_node_names(model)
    ranges = tensor_ranges(named, feeds_list, tiny=2.0**-14)

    t0 = time.perf_counter()
    with quiet():
        ours = wb.auto_mixed_precision(model, ds)
    ours_s = time.perf_counter() - t0
    ours_f16 = f16_nodes(ours.model)
    ours_sim = simulated_error(named, ours_f16, feeds_list[:4])
    ours_err = measured_error(ours.model, named, feeds_list)
    pred = "-" if ours.predicted_error is None else f"{ours.predicted_error:.3g}"

    built = sum(1 for h in ours.history if h["ran_converted"])
    evals = f"{ours.evaluations} ({built})"
    ref = run_reference(model, reference_feeds(model, feeds_list), timeout)
    n_float = len(ours.converted) + len(ours.kept_float)
    if ref["model"] is not None:
        ref_f16 = f16_nodes(ref["model"])
        ref_pct = f"{100 * len(ref_f16) / max(n_float, 1):.0f}"
        ref_over = str(overflowing_f16(ref["model"], ranges))
        ref_sim = f"{simulated_error(named, ref_f16, feeds_list[:4]):.3g}"
        try:
            ref_err = f"{measured_error(ref['model'], named, feeds_list):.3g}"
        except Exception:
            ref_err = "fails"
    else:
        ref_pct, ref_over, ref_sim, ref_err = "-", "-", "-", "-"
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
        f"{name[:22]:<22} {len(model.graph.node):>5} | {evals:>9} {ours_s:>6.2f} "
        f"{100 * ours.converted_fraction:>5.0f} {ours_err:>6.3g} {pred:>6} "
        f"{overflowing_f16(ours.model, ranges):>4} {ours_sim:>7.3g} | {ref_e:>6} {ref_s:>7} "
        f"{ref_pct:>5} {ref_err:>6} {ref_over:>4} {ref_sim:>7} {status:<10} | "
        f"{e_ratio:>7} {t_ratio:>7}"
    )
    sys.stdout.flush()


def probe_items_study(cases: list) -> None:
    """Evaluations, converted share and final error of ours for several probe_items values."""
    import workbench as wb
    from workbench.progress import quiet

    print("\nprobe_items: evaluations / converted % / final error × tol (ONNX Runtime)")
    choices = (1, 2, 4, 8)
    print(f"{'model':<22} " + " ".join(f"{f'items={k}':>18}" for k in choices))
    for name, model, ds in cases:
        cells = []
        for k in choices:
            with quiet():
                r = wb.auto_mixed_precision(model, ds, probe_items=k)
            err = "-" if r.measured_error is None else f"{r.measured_error:.2f}"
            cells.append(f"{r.evaluations:>3} / {100 * r.converted_fraction:>4.0f}% / {err:>5}")
        print(f"{name[:22]:<22} " + " ".join(f"{c:>18}" for c in cells))
        sys.stdout.flush()


def main(
    timeout: float, probe_items: bool, with_corpus: bool, only: str = "", table: bool = True
) -> None:
    import models

    import workbench as wb
    from workbench.progress import quiet

    warm = models.mixed_sensitive()  # imports and first-session costs stay out of the timings
    with quiet():
        wb.auto_mixed_precision(warm, wb.random_dataset(warm, n=2, dims={"N": 4}))

    header = (
        f"{'model':<22} {'nodes':>5} | {'ours: evals':>9} {'s':>6} {'f16%':>5} {'err':>6} "
        f"{'pred':>6} {'>f16':>4} {'sim f16':>7} | {'ref: evals':>6} {'s':>7} {'f16%':>5} "
        f"{'err':>6} {'>f16':>4} {'sim f16':>7} {'status':<10} | {'evals×':>7} {'time×':>7}"
    )
    print(
        f"rtol={RTOL} atol={ATOL}; err = final error × tolerance in ONNX Runtime (≤ 1 meets "
        "the goal); pred = our simulation's prediction; sim f16 = error under real f16 "
        "rounding; >f16 = float16 tensors beyond 65504; evals×/time× = reference / ours"
    )
    print(header)
    print("-" * len(header))
    all_cases = cases() + (corpus_cases() if with_corpus else [])
    all_cases = [c for c in all_cases if not only or any(o in c[0] for o in only.split(","))]
    for name, model, ds in all_cases if table else ():
        try:
            _row(name, model, ds, timeout)
        except Exception as e:  # one model's failure is a row, not the end of the run
            print(f"{name[:22]:<22} failed: {type(e).__name__}: {str(e)[:150]}")
    if probe_items:
        probe_items_study(all_cases)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _reference_child(*sys.argv[2:5])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=120.0, help="cap for the reference (s)")
    parser.add_argument("--probe-items", action="store_true", help="compare probe_items values")
    parser.add_argument("--no-corpus", action="store_true", help="skip the real-model corpus")
    parser.add_argument("--only", default="", help="comma-separated model name parts to run")
    parser.add_argument("--no-table", action="store_true", help="only the --probe-items study")
    args = parser.parse_args()
    main(args.timeout, args.probe_items, not args.no_corpus, args.only, not args.no_table)
