"""Every verb on every real model of the corpus: a table model × verb of ok / agreement / time.

The reference column ``ort-qdq`` is ONNX Runtime's plain ``quantize_static`` (QDQ, per-channel
weights, MinMax ranges, no pre-processing) on the same calibration items: int8 should work
wherever it works, and agree about as well.

Agreement is the mean cosine similarity of the float outputs with the float32 model's on the
same realistic inputs (tests/corpus.py). Run ``python tests/corpus.py fetch`` first.

    python benchmarks/bench_corpus.py [--models a,b] [--verbs f16,int8,...] [--items 4]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import corpus  # noqa: E402


def cell(result: dict | None, error: str | None) -> str:
    if error is not None:
        return f"FAIL ({error[:40]})"
    agree = result["agreement"]
    a = "" if agree is None else f"{agree:.4f} "
    return f"ok {a}{result['seconds']:.1f}s"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(e.name for e in corpus.ENTRIES))
    p.add_argument("--verbs", default=",".join((*corpus.VERBS, "ort-qdq")))
    p.add_argument("--items", type=int, default=3, help="inputs per model (calibration = eval)")
    args = p.parse_args()
    have = corpus.fetch(log=lambda m: print(m, file=sys.stderr))
    models = [m for m in args.models.split(",") if m in have]
    verbs = args.verbs.split(",")
    rows, errors = [], []
    for name in models:
        items = corpus.feeds(name, args.items)
        reference = corpus.reference_outputs(have[name], items)
        row = [name]
        for verb in verbs:
            result, error = None, None
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a benchmark script, not the package
                    result = corpus.run_verb(name, verb, items, reference)
            except Exception as e:  # the table shows failures; details follow it
                error = f"{type(e).__name__}: {e}"
                errors.append(f"{name} {verb}: {error[:400]}")
            row.append(cell(result, error))
            print(f"{name:18} {verb:13} {row[-1]}", file=sys.stderr, flush=True)
        rows.append(row)
    widths = [max(len(r[i]) for r in [["model", *verbs], *rows]) for i in range(len(verbs) + 1)]
    for r in [["model", *verbs], *rows]:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    tolerances = ", ".join(f"{k} ≥ {v}" for k, v in corpus.TOLERANCE.items())
    print(f"\nagreement = cosine with float32 outputs; test tolerances: {tolerances}")
    for e in errors:
        print("  " + e.replace("\n", " "))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
