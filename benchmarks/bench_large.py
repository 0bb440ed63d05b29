"""Models over 2 GB through every verb: time and peak resident memory per verb.

Generates a transformer-like model on demand (LayerNorm → MatMul → Tanh → MatMul → residual
Add per block, float32 weights in external data, default ~3 GB), then runs each verb in a fresh
subprocess capped at ``--limit-gib`` of address space; its peak RSS is its own (``os.wait4``
rusage of that child, cross-checked with VmHWM polled from /proc). Reference tools run on the
same file: onnxconverter-common's float16 converter (``ref-f16``, shape inference off: it
cannot serialize > 2 GB) and ORT's ``quantize_static`` with external data (``ref-int8``).
``f16-convert`` is the conversion alone; ``f16`` adds saving the result.

    python benchmarks/bench_large.py [--gigabytes 3] [--dir /tmp/wb-large] [--verbs f16,int8]

Measured (3.00 GiB model, 2 shared cores, 2026-11-28; peak × model size, seconds): load 1.08×;
f16-convert, f16 and bf16 (with saving) 0.59× (12–23 s); int8 2.08× (191 s); int8-ac 2.09×
(214 s); bench 1.09×; partition 2.10×; layers 1.10×; layer-error 2.13× (with the f16
conversion before it); explore (f32 + f16) 3.10×; report 1.10×; references: onnxconverter-common
1.62× (32 s), ORT quantize_static 3.08× (39 s; ours also pre-processes, uses percentile
histograms and tries float edges); mixed 1.39× (1027 s, machine loaded by a CI run).

Needs ~4× the model size of free disk (model, f16/bf16/int8 copies). Nothing is written to the
current directory; the working folder is removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import models  # noqa: E402

DIM = 4096
SEQ = 8

VERBS: dict[str, str] = {
    "python": "import onnxruntime",
    "load": "m = wb.load_model(src)",
    "f16-convert": "r = wb.convert_float16(src)",
    "f16": "wb.save_model(wb.convert_float16(src), out / 'f16.onnx')",
    "bf16": "wb.save_model(wb.convert_float16(src, dtype='bfloat16'), out / 'bf16.onnx')",
    "int8": (
        "q = wb.quantize_int8(src, ds); assert quantized_nodes(q), 'no int8 node';"
        " wb.save_model(q, out / 'int8.onnx')"
    ),
    "mixed": (
        "r = wb.auto_mixed_precision(src, ds, max_evaluations=4);"
        " assert not has_external_data(r.model), 'result points into the source folder';"
        " wb.save_model(r.model, out / 'mixed.onnx')"
    ),
    "int8-ac": (
        "r = wb.quantize_with_accuracy_control(src, ds, ds, agree, max_drop=0.5);"
        " assert quantized_nodes(r.model), 'no int8 node'"
    ),
    "bench": "wb.benchmark(src, dataset=ds, min_time=2.0)",
    "explore": "s = wb.explore(src, ds, agree, variants=['f32', 'f16'], devices=['cpu'])",
    "partition": (
        "p = wb.partition(src, wb.affinity(src, ['edge-cpu-sim', 'cpu']));"
        " p.run(next(iter(ds.feeds())))"
    ),
    "layers": "wb.layer_profile(src, dataset=ds)",
    "layer-error": (
        "wb.save_model(wb.convert_float16(src), out / 'f16.onnx');"
        " wb.layer_error(src, out / 'f16.onnx', ds)"
    ),
    "report": (
        "s = wb.explore(src, ds, agree, variants=['f32'], devices=['cpu']);"
        " wb.report(s, out / 'report.html')"
    ),
    "ref-f16": (
        "from onnxconverter_common import float16;"
        " m16 = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True,"
        " disable_shape_infer=True);"
        " onnx.save_model(m16, str(out / 'ref16.onnx'), save_as_external_data=True)"
    ),
    "ref-int8": (
        "from onnxruntime.quantization import CalibrationDataReader, quantize_static\n"
        "class Reader(CalibrationDataReader):\n"
        "    def __init__(self): self.items = iter(list(ds.feeds()))\n"
        "    def get_next(self): return next(self.items, None)\n"
        "quantize_static(str(src), str(out / 'ref8.onnx'), Reader(), use_external_data_format=True)"
    ),
}

PRELUDE = f"""
import sys, onnx, numpy as np
from pathlib import Path
import workbench as wb
from workbench.model import has_external_data
from workbench.precision.int8 import quantized_nodes
src = Path(sys.argv[1]); out = Path(sys.argv[2])
ds = wb.Dataset([{{'x': np.random.default_rng(i).standard_normal((1, {SEQ}, {DIM}), np.float32)}}
                 for i in range(2)])
ref = None
def agree(run, data):
    global ref
    outs = [run(f)['y'] for f in data.feeds()]
    if ref is None:
        ref = outs
    return float(np.mean([np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b))
                          for a, b in zip(outs, ref)]))
"""


def generate(directory: Path, gigabytes: float) -> Path:
    """Write the model (tests/models.py ``big_transformer_external``), one matrix at a time;
    a model this size already in ``directory`` (``--keep`` of an earlier run) is reused."""
    blocks = max(1, round(gigabytes * 2**30 / (2 * DIM * DIM * 4)))
    data = directory / "large.onnx.data"
    if data.exists() and data.stat().st_size == blocks * 2 * DIM * DIM * 4:
        return directory / "large.onnx"
    return models.big_transformer_external(directory, gigabytes, dim=DIM, seq=SEQ)


def _read_hwm(pid: int) -> int:
    """The child's own peak RSS in bytes so far (VmHWM), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_verb(verb: str, src: Path, out: Path, timeout: float, limit: int) -> dict[str, object]:
    """Run one verb in a fresh child limited to ``limit`` bytes of address space.

    The peak is that child's own: ``os.wait4`` returns its rusage (ru_maxrss), cross-checked
    with VmHWM polled from /proc while it runs (whichever is larger).
    """
    code = PRELUDE + "\n" + VERBS[verb]

    def cap() -> None:  # runs in the child before exec: a runaway verb fails, not the machine
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    err_path = out / f".{verb}.stderr"
    t0 = time.perf_counter()
    with open(err_path, "w") as err_fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(src), str(out)],
            stdout=subprocess.DEVNULL,
            stderr=err_fh,
            cwd=out,
            preexec_fn=cap,
        )
        hwm, status, usage, timed_out = 0, 0, None, False
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                hwm = max(hwm, _read_hwm(proc.pid))
                if time.perf_counter() - t0 > timeout:
                    proc.kill()
                    _, status, usage = os.wait4(proc.pid, 0)
                    timed_out = True
                    break
                time.sleep(0.1)
        except BaseException:  # interrupted: don't leave a multi-GB child running
            proc.kill()
            os.wait4(proc.pid, 0)
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    seconds = time.perf_counter() - t0
    peak = max(hwm, usage.ru_maxrss * 1024 if usage else 0)
    lines = [ln for ln in err_path.read_text().splitlines() if ln.strip()]
    err_path.unlink()
    ok = proc.returncode == 0 and not timed_out
    error = f"timeout after {timeout:.0f} s" if timed_out else (lines[-1] if lines else "")
    if proc.returncode and proc.returncode < 0:
        error = f"killed by signal {-proc.returncode} " + error
    return {
        "verb": verb,
        "ok": ok,
        "seconds": round(seconds, 1),
        "peak_gib": round(peak / 2**30, 2),
        "error": "" if ok else error[:200],
        # where it failed: the innermost workbench / library frames of the traceback
        "where": ""
        if ok
        else " | ".join(ln.strip() for ln in lines if ln.strip().startswith("File"))[-600:],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gigabytes", type=float, default=3.0)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--verbs", default=",".join(VERBS))
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--limit-gib", type=float, default=12.0, help="address-space cap per verb")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the gigabytes on kill
    work = args.dir or Path(tempfile.mkdtemp(prefix="wb-large-"))
    work.mkdir(parents=True, exist_ok=True)
    need = 4 * args.gigabytes * 2**30
    free = shutil.disk_usage(work).free
    if free < need:
        sys.exit(f"needs {need / 2**30:.0f} GiB of free disk in {work}, has {free / 2**30:.0f}")
    limit = int(args.limit_gib * 2**30)
    try:
        t0 = time.perf_counter()
        src = generate(work / "model", args.gigabytes)
        size = (work / "model" / "large.onnx.data").stat().st_size
        print(f"generated {size / 2**30:.2f} GiB in {time.perf_counter() - t0:.0f} s: {src}")
        out = work / "out"
        out.mkdir(exist_ok=True)
        rows = []
        for verb in [v.strip() for v in args.verbs.split(",") if v.strip()]:
            row = run_verb(verb, src, out, args.timeout, limit)
            row["peak_x_model"] = round(row["peak_gib"] * 2**30 / size, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
            for f in out.iterdir():  # keep disk use bounded
                shutil.rmtree(f) if f.is_dir() else f.unlink()
        _table(rows)
        print(
            f"(peak: each child's own max RSS; 'python' = interpreter + workbench + ORT imports "
            f"with a 2-item dataset; address space capped at {args.limit_gib:g} GiB per verb)"
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _table(rows: list[dict[str, object]]) -> None:
    print(f"\n{'verb':10} {'ok':4} {'seconds':>8} {'peak GiB':>9} {'× model':>8}  error")
    for r in rows:
        print(
            f"{r['verb']:10} {'yes' if r['ok'] else 'NO':4} {r['seconds']:8.1f} "
            f"{r['peak_gib']:9.2f} {r['peak_x_model']:8.2f}  {r['error']}"
        )


if __name__ == "__main__":
    main()
