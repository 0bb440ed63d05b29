"""float16 conversion: workbench vs onnxconverter-common, same models, same run.

Prints
Times are CPU seconds (``time.process_time``), best of a few runs: the machine is shared.

* time on a 10,000-node chain (target: ours ≤ 1× the reference) and where it goes (onnx-ir
  round trip, planning, rewriting, the cyclic GC),
* time on the same chain with one op type blocked (target ≤ 0.05×; the reference is
  quadratic there and is capped by a subprocess timeout),
* peak memory converting a ~1 GB external-data model (target ≤ 1.5× the model size),
* which test failure-family models each tool turns into a model that fails (crash, checker,
  ORT load/run, wrong numbers).

Run: ``.venv/bin/python benchmarks/bench_float16.py [--quick]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import models  # noqa: E402

from workbench.data import random_dataset  # noqa: E402
from workbench.model import ensure_node_names  # noqa: E402
from workbench.precision.float16 import convert_float16  # noqa: E402
from workbench.progress import quiet  # noqa: E402
from workbench.runtime.ort import make_session  # noqa: E402

REF_TIMEOUT = 120.0


def _ref_convert(model: onnx.ModelProto, **kw) -> onnx.ModelProto:
    from onnxconverter_common.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_float_to_float16(model, keep_io_types=True, **kw)


def _best_of(fn, repeat: int) -> float:
    """Best CPU seconds of ``repeat`` runs (the machine is shared: wall time is too noisy)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def _ref_subprocess_time(n_nodes: int, block: str, timeout: float) -> float | None:
    """Reference time in a child process (None when it exceeds ``timeout``)."""
    code = textwrap.dedent(
        f"""
        import sys, time, warnings
        sys.path.insert(0, {str(ROOT / "tests")!r})
        import models
        from onnxconverter_common.float16 import convert_float_to_float16
        m = models.chain({n_nodes})
        warnings.simplefilter("ignore")
        t0 = time.process_time()
        convert_float_to_float16(m, keep_io_types=True, op_block_list=[{block!r}])
        print(time.process_time() - t0)
        """
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return None
    return float(out.stdout.strip().splitlines()[-1])


def bench_chains(quick: bool) -> None:
    n = 2000 if quick else 10_000
    model = models.chain(n)
    with quiet():
        ours = _best_of(lambda: convert_float16(model), 3)
    ref = _best_of(lambda: _ref_convert(model), 3)
    print(
        f"chain {n:>6} nodes:               ours {ours:7.3f} s  reference {ref:7.3f} s  "
        f"ratio {ours / ref:.3f}  (target ≤ 1.0)"
    )
    _phases(model, ref)

    with quiet():
        ours = _best_of(lambda: convert_float16(model, block_ops=["Relu"]), 2)
    timeout = 30.0 if quick else REF_TIMEOUT
    ref_t = _ref_subprocess_time(n, "Relu", timeout)
    if ref_t is None:
        print(
            f"chain {n:>6} nodes, Relu blocked: ours {ours:7.3f} s  reference > {timeout:.0f} s  "
            f"ratio < {ours / timeout:.4f}  (target ≤ 0.05)"
        )
    else:
        print(
            f"chain {n:>6} nodes, Relu blocked: ours {ours:7.3f} s  reference {ref_t:7.3f} s  "
            f"ratio {ours / ref_t:.4f}  (target ≤ 0.05)"
        )


def _phases(model: onnx.ModelProto, ref: float) -> None:
    """Where the time goes: CPU seconds per step of one conversion, and the cyclic GC's share
    (measured with ``gc.callbacks`` in this benchmark process only)."""
    import gc

    import onnx_ir as ir

    from workbench.precision import float16 as f16

    spent = {"gc": 0.0}
    began = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            began[0] = time.process_time()
        else:
            spent["gc"] += time.process_time() - began[0]

    gc.callbacks.append(on_gc)
    try:
        with quiet():
            marks = [("start", time.process_time())]
            proto, m, _, _ = f16._load_ir(model)
            marks.append(("onnx-ir from_proto", time.process_time()))
            graphs = list(f16._ir_graphs(m.graph))
            nodes = f16._name_nodes(m, graphs)
            opts = f16._options(m, "float16", True, (), (), f16.kernels.CPU, None, nodes)
            types = f16._value_types(proto, m, graphs)
            plan = f16._Plan(m, graphs, opts, nodes, types, progress=False)
            marks.append(("types + plan", time.process_time()))
            f16._Rewriter(plan).run()
            marks.append(("rewrite", time.process_time()))
            f16._to_proto(plan)
            marks.append(("onnx-ir to_proto", time.process_time()))
    finally:
        gc.callbacks.remove(on_gc)
    total = marks[-1][1] - marks[0][1]
    print("  where the time goes (CPU s; GC runs inside these steps):")
    for (_, t0), (name, t1) in zip(marks, marks[1:], strict=False):
        print(f"    {name:<20} {t1 - t0:6.3f}  ({(t1 - t0) / ref:.2f}× the reference's total)")
    print(f"    {'of which cyclic GC':<20} {spent['gc']:6.3f}  ({spent['gc'] / ref:.2f}×)")
    bare = _best_of(lambda: ir.to_proto(ir.from_proto(model)), 2)
    print(
        f"    onnx-ir round trip alone (nothing converted): {bare:.3f} s = {bare / ref:.2f}× "
        f"the reference's whole conversion (this instrumented run took {total:.3f} s)"
    )
    print(
        "  → ≤ 1× needs no onnx-ir round trip and no per-node Python objects (GC): a proto-level"
        " rewrite path; see the float16.py module docstring"
    )


_MEMORY_CHILD = """
import resource, sys, time, warnings
sys.path.insert(0, {root!r})
import onnx
from workbench.precision.float16 import convert_float16
from workbench.progress import quiet
from workbench.model import save_model

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

path, tool, out = sys.argv[1], sys.argv[2], sys.argv[3]
if tool == "reference":
    from onnxconverter_common.float16 import convert_float_to_float16
base = peak_mib()
t0 = time.process_time()
if tool == "ours":
    with quiet():
        model = convert_float16(path)
else:
    warnings.simplefilter("ignore")
    model = convert_float_to_float16(onnx.load(path), keep_io_types=True)
converted = peak_mib()
seconds = time.process_time() - t0
(save_model if tool == "ours" else onnx.save)(model, out)
print(base, converted, peak_mib(), seconds)
"""


def bench_memory(quick: bool) -> None:
    gigabytes = 0.25 if quick else 1.0
    with tempfile.TemporaryDirectory() as d:
        path = models.f16_big_external(Path(d) / "model", gigabytes=gigabytes)
        size = sum(f.stat().st_size for f in path.parent.iterdir()) / 2**20
        print(f"memory: {size:.0f} MiB float32 model with external data (peak RSS over imports)")
        for tool in ("ours", "reference"):
            out = Path(d) / f"{tool}.onnx"
            code = _MEMORY_CHILD.format(root=str(ROOT))
            proc = subprocess.run(
                [sys.executable, "-c", code, str(path), tool, str(out)],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if proc.returncode != 0:
                print(f"  {tool:<9}: failed: {proc.stderr.strip().splitlines()[-1][:200]}")
                continue
            base, converted, saved, secs = map(float, proc.stdout.split())
            print(
                f"  {tool:<9}: convert +{converted - base:6.0f} MiB = "
                f"{(converted - base) / size:.2f}× model size ({secs:.1f} CPU s); "
                f"convert + save +{saved - base:6.0f} MiB = {(saved - base) / size:.2f}×"
                + ("  (target ≤ 1.5×)" if tool == "ours" else "")
            )
            for extra in Path(d).glob(f"{tool}.onnx*"):
                extra.unlink()


FAMILIES = models.FLOAT16_FAMILIES


def _feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    if model.graph.name == "f16_int_bool_string":
        x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
        return {"x": x, "s": np.array(["a", "b", "c"], dtype=object)}
    return next(random_dataset(model, n=1, seed=0, dims={"N": 2, "T": 3}).feeds())


def _verdict(model: onnx.ModelProto, convert) -> str:
    """'ok' or the first way the converted model fails."""
    try:
        converted = convert(model)
    except Exception as e:
        return f"crash: {type(e).__name__}: {str(e).splitlines()[0][:70]}"
    try:
        onnx.checker.check_model(converted, full_check=True)
    except Exception as e:
        return f"checker: {str(e).strip().splitlines()[0][:70]}"
    try:
        session = make_session(converted)
    except Exception as e:
        return f"ORT load: {str(e).split(':', 2)[-1].strip()[:70]}"
    feeds = _feeds(model)
    try:
        got = session.run(None, feeds)
    except Exception as e:
        return f"ORT run: {str(e).strip()[:70]}"
    expected = make_session(ensure_node_names(model)).run(None, feeds)
    for e, g in zip(expected, got, strict=True):
        if e.dtype.kind == "f":
            scale = max(1.0, float(np.max(np.abs(e)))) if e.size else 1.0
            if e.shape != g.shape or not np.allclose(g, e, rtol=1e-2, atol=1e-2 * scale):
                return "wrong numbers"
        elif e.shape != g.shape or not np.array_equal(e, g):
            return "wrong non-float output"
    return "ok"


def bench_families() -> None:
    print(f"\n{'failure family':<24} {'workbench':<12} onnxconverter-common")
    ours_ok = ref_ok = 0
    for family in FAMILIES:
        model = getattr(models, family)()
        with quiet():
            ours = _verdict(model, convert_float16)
        ref = _verdict(model, _ref_convert)
        ours_ok += ours == "ok"
        ref_ok += ref == "ok"
        print(f"{family:<24} {ours:<12} {ref}")
    print(f"{'total ok':<24} {ours_ok}/{len(FAMILIES):<10} {ref_ok}/{len(FAMILIES)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = parser.parse_args()
    import onnxconverter_common

    print(f"onnxconverter-common {onnxconverter_common.__version__}, onnx {onnx.__version__}")
    bench_chains(args.quick)
    bench_memory(args.quick)
    bench_families()


if __name__ == "__main__":
    main()
