"""Models over 2 GB (external data) through the verbs, each in a child process capped in
address space so a verb that holds the model several times fails here instead of exhausting
the machine; its own peak resident memory is checked against the documented bound.

The model (``models.big_transformer_external``, 2.1 GB of float32 weights) is generated once
per module in a temporary folder and removed afterwards. Verbs and the measuring child runner
are the ones of ``benchmarks/bench_large.py``, so the test checks what the benchmark reports.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_large  # noqa: E402

pytestmark = pytest.mark.slow

#: address-space cap per verb (virtual: ORT and thread stacks reserve more than they touch)
LIMIT = 12 * 2**30

#: verb → peak resident memory bound, in model sizes: float16 conversion ≤ 1.5× (issue 17);
#: the others as measured by benchmarks/bench_large.py (2.12 GiB model), with a margin.
#: int8-ac quantizes (ORT's quant_pre_process, calibrator and quantize_static each hold the
#: model once or twice while they run; the workbench holds none of it) and evaluates.
#: layer-error includes the f16 conversion before it; explore (f32 + f16) holds ORT's two
#: sessions; report is an f32 explore plus the report.
BOUNDS = {
    "f16-convert": 1.5,
    "f16": 1.5,  # conversion + save
    "partition": 3.0,
    "layers": 1.5,
    "layer-error": 2.5,
    "explore": 3.5,
    "report": 1.5,
    "int8-ac": 3.0,
    "mixed": 2.5,
}


@pytest.fixture
def big(big_model, tmp_path):
    src, size = big_model
    out = tmp_path / "out"
    out.mkdir()
    return src, out, size


def _run(verb: str, big) -> dict:
    src, out, size = big
    try:
        row = bench_large.run_verb(verb, src, out, timeout=600, limit=LIMIT)
    finally:
        for f in out.iterdir():
            shutil.rmtree(f) if f.is_dir() else f.unlink()
    assert row["ok"], f"{verb} on a {size / 2**30:.2f} GiB model: {row['error']}"
    return row | {"x_model": row["peak_gib"] * 2**30 / size}


@pytest.mark.parametrize("verb", sorted(BOUNDS))
def test_verb_runs_within_its_memory_bound(verb, big):
    row = _run(verb, big)
    assert row["x_model"] <= BOUNDS[verb], (
        f"{verb}: peak {row['peak_gib']:.2f} GiB = {row['x_model']:.2f}× the model "
        f"(bound {BOUNDS[verb]}×)"
    )


def test_f16_file_of_a_big_model_runs_and_agrees(big):
    """The saved f16 model (external data) opens in ORT and matches the float32 model."""
    import onnxruntime as ort

    import workbench as wb

    src, out, size = big
    f16 = wb.save_model(wb.convert_float16(src), out / "f16.onnx")
    try:
        x = np.random.default_rng(0).standard_normal((1, bench_large.SEQ, bench_large.DIM))
        feeds = {"x": x.astype(np.float32)}
        (ref,) = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, feeds)
        (low,) = ort.InferenceSession(str(f16), providers=["CPUExecutionProvider"]).run(None, feeds)
        assert low.dtype == np.float32  # keep_io_types
        cos = float(np.dot(ref.ravel(), low.ravel()) / (np.linalg.norm(ref) * np.linalg.norm(low)))
        assert cos > 0.999, cos
    finally:
        for f in out.iterdir():
            f.unlink()
