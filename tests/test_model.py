"""load_model / save_model / inspect / ensure_node_names."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

import workbench as wb
from workbench.model import ensure_node_names, iter_tensors, save_model


def test_load_from_proto_returns_copy(tmodels):
    m = tmodels.mlp()
    before = m.SerializeToString()
    loaded = wb.load_model(m)
    loaded.graph.node[0].name = "changed"
    assert m.SerializeToString() == before
    assert loaded is not m


def test_load_missing_file(tmp_path):
    with pytest.raises(wb.ModelLoadError, match="not found.*missing.onnx"):
        wb.load_model(tmp_path / "missing.onnx")


def test_load_directory_and_empty(tmp_path):
    with pytest.raises(wb.ModelLoadError, match="directory"):
        wb.load_model(tmp_path)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(wb.ModelLoadError, match="empty"):
        wb.load_model(empty)


def test_load_not_onnx_and_truncated(tmp_path, tmodels):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xfe this is not a protobuf \x00\x01")
    with pytest.raises(wb.ModelLoadError, match="junk.onnx"):
        wb.load_model(junk)
    data = tmodels.mlp().SerializeToString()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(wb.ModelLoadError, match="cut.onnx"):
        wb.load_model(cut)


def test_external_data_loaded(tmp_path, tmodels):
    path = tmodels.with_external_data(tmp_path / "m")
    m = wb.load_model(path)
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in iter_tensors(m))
    ref = tmodels.mlp(in_features=64, hidden=64)
    x = {"x": np.ones((2, 64), np.float32)}
    assert np.allclose(wb.open_runner(m)(x)["y"], wb.open_runner(ref)(x)["y"])


def test_external_data_path_traversal_refused(tmp_path, tmodels):
    path = tmodels.external_data_escaping(tmp_path)
    with pytest.raises(wb.ModelLoadError, match="escapes the model folder"):
        wb.load_model(path)


def test_external_data_absolute_refused(tmp_path, tmodels):
    path = tmodels.with_external_data(tmp_path / "abs")
    m = onnx.load(path, load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = str(tmp_path / "abs" / "weights.bin")
    onnx.save_model(m, path)
    with pytest.raises(wb.ModelLoadError, match="absolute"):
        wb.load_model(path)


def test_external_data_truncated_file(tmp_path, tmodels):
    path = tmodels.with_external_data(tmp_path / "t")
    data = path.parent / "weights.bin"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(wb.ModelLoadError, match="truncated"):
        wb.load_model(path)


def test_save_roundtrip_and_atomic(tmp_path, tmodels):
    m = tmodels.mlp()
    out = tmp_path / "sub" / "m.onnx"
    save_model(m, out)
    assert wb.load_model(out).SerializeToString() == m.SerializeToString()
    assert [p.name for p in out.parent.iterdir()] == ["m.onnx"]


def test_save_failure_leaves_no_partial_file(tmp_path, tmodels, monkeypatch):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous content")

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="No space"):
        save_model(tmodels.mlp(), target)
    assert target.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_save_external_data_keeps_caller_model(tmp_path, tmodels):
    m = tmodels.mlp(in_features=64, hidden=64)
    before = m.SerializeToString()
    out = tmp_path / "ext" / "model.onnx"
    save_model(m, out, external_data=True)
    assert m.SerializeToString() == before
    assert (out.parent / "model.onnx.data").stat().st_size > 64 * 64 * 4
    raw = onnx.load(out, load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in raw.graph.initializer)
    assert wb.load_model(out).SerializeToString() == before


def test_inspect_summary(tmodels):
    s = wb.inspect(tmodels.small_cnn())
    assert s.ops == {
        "Conv": 2,
        "Flatten": 1,
        "GlobalAveragePool": 1,
        "Gemm": 1,
        "MaxPool": 1,
        "Relu": 2,
    }
    assert s.node_count == 8
    assert s.opsets == {"": 17}
    assert s.inputs[0].name == "x" and s.inputs[0].shape == ("N", 1, 8, 8)
    assert s.outputs[0].dtype == "float32"
    assert s.parameters == 4 * 9 + 4 + 8 * 4 * 9 + 8 + 3 * 8 + 3
    assert s.parameter_bytes == 4 * s.parameters
    html = s._repr_html_()
    assert "<table" in html and "Conv×2" in html
    assert wb.ModelSummary.from_json(s.to_json()) == s


def test_inspect_escapes_html(tmodels):
    m = tmodels.mlp()
    m.graph.input[0].name = "<script>alert(1)</script>"
    m.graph.node[0].input[0] = "<script>alert(1)</script>"
    html = wb.inspect(m)._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_ensure_node_names_deterministic_and_unique(tmodels):
    m = tmodels.unnamed_nodes()
    a = ensure_node_names(m)
    b = ensure_node_names(m)
    names = [n.name for n in a.graph.node]
    assert names == [n.name for n in b.graph.node]
    assert len(set(names)) == len(names) and all(names)
    assert "dup" in names
    assert m.graph.node[0].name == ""  # caller's model untouched
