"""Layer views of models whose weights stay on disk: a file with external data is run light
(the runtime reads the weights, Python holds none), a big proto or inline file is staged to a
work folder first. Small models take the same code path here (``STAGE_BYTES`` lowered for the
staged one) and must give exactly the results of the in-memory path; the > 2 GB runs are in
``test_large_models.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import workbench as wb
from workbench import layers
from workbench import model as model_io

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import models  # noqa: E402

DIM, SEQ = 64, 4


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    """A small transformer with its weights in external data, and its f16 variant saved the
    same way (both as files)."""
    root = tmp_path_factory.mktemp("light")
    src = models.big_transformer_external(root / "m", 0.002, dim=DIM, seq=SEQ)
    f16 = wb.save_model(wb.convert_float16(src), root / "f16" / "f16.onnx", external_data=True)
    return src, f16


def _data(n: int = 3) -> wb.Dataset:
    return wb.Dataset([
        {"x": np.random.default_rng(i).standard_normal((1, SEQ, DIM), np.float32)}
        for i in range(n)
    ])  # fmt: skip


def test_light_model_keeps_weights_on_disk(external, tmp_path):
    import contextlib

    src, _ = external
    with contextlib.ExitStack() as stack:
        proto, folder = layers.light_model(src, stack)
        assert folder == str(src.parent.resolve())
        assert not any(t.raw_data for t in proto.graph.initializer if t.data_location == 1)
        assert all(n.name for n in proto.graph.node)
    small = wb.load_model(src)
    with contextlib.ExitStack() as stack:
        proto, folder = layers.light_model(small, stack)
        assert folder is None and proto is not small  # below STAGE_BYTES: whole, as before


def test_layer_error_light_equals_in_memory(external):
    src, f16 = external
    data = _data()
    light = wb.layer_error(src, f16, data)
    whole = wb.layer_error(wb.load_model(src), wb.load_model(f16), data)
    assert light.rows == whole.rows and len(light.rows) > 50
    assert light.first_divergent == whole.first_divergent
    assert light.notes == whole.notes and light.edges == whole.edges and light.ops == whole.ops


def test_layer_error_staged_protos_equal_in_memory(external, monkeypatch, tmp_path):
    """Protos at or over STAGE_BYTES are written to a work folder and run light from there;
    the folder is removed afterwards."""
    import tempfile

    src, f16 = external
    ref, var = wb.load_model(src), wb.load_model(f16)
    data = _data(2)
    whole = wb.layer_error(ref, var, data)
    monkeypatch.setattr(model_io, "STAGE_BYTES", 0)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    staged = wb.layer_error(ref, var, data)
    assert staged.rows == whole.rows
    assert not any(p.name.startswith("wb-light-") for p in tmp_path.iterdir())
    assert ref == wb.load_model(src) and var == wb.load_model(f16)  # the callers' untouched


def test_layer_error_simulated_device_gets_weights(external):
    """A simulated profile converts the variant itself: it is given the complete model."""
    src, _ = external
    profile = next(d for d in wb.devices() if d.simulated)
    e = wb.layer_error(src, src, _data(1), device=profile.name)
    assert e.rows and e.device == profile.name


def test_layer_profile_light_path(external):
    src, _ = external
    p = wb.layer_profile(src, dataset=_data(1), runs=3, warmup=1)
    whole = wb.layer_profile(wb.load_model(src), dataset=_data(1), runs=3, warmup=1)
    assert p.ops == whole.ops and p.edges == whole.edges
    assert p.coverage == whole.coverage == 1.0
