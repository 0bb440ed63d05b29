"""Mixed precision on models with external data / over 2 GB (issue 17): worked on light —
weights read by ONNX Runtime from their files, never held several times by Python — with the
same decisions and result as on the loaded model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import models
import numpy as np
import onnx
import pytest

import workbench as wb
from workbench import model as model_io
from workbench.model import ensure_node_names
from workbench.precision.mixed import MixedPrecisionResult, auto_mixed_precision


def _feeds(n: int = 3, seq: int = 4, dim: int = 256) -> list[dict[str, np.ndarray]]:
    return [
        {"x": np.random.default_rng(i).standard_normal((1, seq, dim), np.float32)} for i in range(n)
    ]


def _same(a: MixedPrecisionResult, b: MixedPrecisionResult) -> None:
    assert a.history == b.history
    assert a.kept_float == b.kept_float and a.converted == b.converted
    assert a.sensitivity == b.sensitivity
    assert a.predicted_error == b.predicted_error and a.measured_error == b.measured_error
    assert a.model.SerializeToString() == b.model.SerializeToString()


def _work_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("wb-mixed-*")}


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"rtol": 1e-4, "atol": 1e-5, "max_evaluations": 8}, {"max_evaluations": 0}],
    ids=["partly-converted", "searched", "unchanged"],
)
def test_external_data_path_matches_the_loaded_model(tmp_path, kwargs):
    path = models.big_transformer_external(tmp_path / "ext", 0.01, dim=256, seq=4)
    before = _work_folders()
    light = auto_mixed_precision(path, _feeds(), **kwargs)
    loaded = auto_mixed_precision(wb.load_model(path), _feeds(), **kwargs)
    _same(light, loaded)
    # the result stands alone: kept float32 weights are read back in, nothing refers to a file
    assert not any(
        t.data_location == onnx.TensorProto.EXTERNAL for t in light.model.graph.initializer
    )
    assert _work_folders() == before  # the work folder is gone
    if kwargs.get("max_evaluations") == 0:
        assert (
            light.model.SerializeToString()
            == ensure_node_names(wb.load_model(path)).SerializeToString()
        )


def test_big_protos_and_inline_files_are_staged(tmp_path, monkeypatch):
    path = models.big_transformer_external(tmp_path / "ext", 0.01, dim=256, seq=4)
    model = wb.load_model(path)
    inline = wb.save_model(model, tmp_path / "inline.onnx")
    kwargs = {"rtol": 1e-4, "atol": 1e-5, "max_evaluations": 6}
    reference = auto_mixed_precision(model, _feeds(), **kwargs)
    monkeypatch.setattr(model_io, "STAGE_BYTES", 1000)  # every model counts as big
    _same(auto_mixed_precision(model, _feeds(), **kwargs), reference)
    _same(auto_mixed_precision(inline, _feeds(), **kwargs), reference)
    assert model.SerializeToString() == wb.load_model(path).SerializeToString()  # untouched
