"""Light models: weights left in their files, read by the backends (the path every model over
2 GB takes, exercised here on small models so the default suite covers it)."""

from __future__ import annotations

import hashlib
import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from models import big_transformer_external, outlier_channel_cnn

import workbench as wb
from workbench.model import has_external_data, load_light, model_digest, stage_model
from workbench.runtime import open_runner

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def external(tmp_path):
    """A ~1 MB transformer-like model whose weights are in ``large.onnx.data``."""
    src = big_transformer_external(tmp_path / "model", gigabytes=0.001, dim=128, seq=4)
    return src, np.random.default_rng(0).standard_normal((1, 4, 128)).astype(np.float32)


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "openvino:CPU", marks=pytest.mark.skipif(not HAS_OPENVINO, reason="no OpenVINO")
        ),
    ],  # fmt: skip
)
def test_runner_on_a_path_reads_weights_from_files_and_matches_the_loaded_model(external, device):
    src, x = external
    before = _digest(src.parent)
    light, folder = load_light(src)
    assert has_external_data(light) and folder == str(src.parent.resolve())
    assert all(not t.raw_data for t in light.graph.initializer if t.name.startswith("w"))
    from_path = open_runner(src, device)({"x": x})["y"]
    from_proto = open_runner(wb.load_model(src), device)({"x": x})["y"]
    np.testing.assert_array_equal(from_path, from_proto)
    assert _digest(src.parent) == before  # only read: no file written or changed beside it


def test_stage_model_copies_names_and_keeps_the_source(external, tmp_path):
    src, x = external
    before = _digest(src.parent)
    work = tmp_path / "work"
    work.mkdir()
    light = stage_model(src, work / "source.onnx")
    assert _digest(src.parent) == before
    assert all(n.name for n in light.graph.node)
    locations = {e.value for t in light.graph.initializer for e in t.external_data if e.key == "location"}  # fmt: skip
    assert locations == {"source.src0"}  # renamed: work files never collide with the user's
    assert (work / "source.src0").read_bytes() == (src.parent / "large.onnx.data").read_bytes()
    staged = open_runner(work / "source.onnx")({"x": x})["y"]
    np.testing.assert_array_equal(staged, open_runner(src)({"x": x})["y"])
    # the digest of a light model equals the digest of the loaded one
    assert model_digest(light, str(work)) == model_digest(wb.load_model(work / "source.onnx"))


def test_stage_model_of_a_proto_streams_its_weights_out_untouched(tmp_path):
    model = outlier_channel_cnn()
    expected = model.SerializeToString()
    light = stage_model(model, tmp_path / "m.onnx")
    assert model.SerializeToString() == expected
    assert sum(len(t.raw_data) for t in light.graph.initializer) < 1024 * len(light.graph.initializer)  # fmt: skip
    assert wb.load_model(tmp_path / "m.onnx").graph.initializer[-1].raw_data == (
        model.graph.initializer[-1].raw_data
    )


def test_concurrent_external_saves_of_one_proto_are_identical_and_leave_it_alone(tmp_path):
    model = outlier_channel_cnn()
    expected = model.SerializeToString()

    def save(i: int) -> bytes:
        path = wb.save_model(model, tmp_path / f"m{i}.onnx", external_data=True)
        return wb.load_model(path).SerializeToString()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(save, range(16)))
    assert model.SerializeToString() == expected
    assert all(r == onnx.load_model_from_string(expected).SerializeToString() for r in results)


@pytest.mark.parametrize("name", ["outlier_channel_cnn", "f16_if", "f16_loop", "f16_constant_nodes", "transformer_like"])  # fmt: skip
def test_streamed_inline_save_writes_exactly_the_serialization(name):
    import io

    import models

    from workbench.model import _write_streamed

    model = getattr(models, name)()
    model.metadata_props.add(key="k", value="v")
    buf = io.BytesIO()
    _write_streamed(model, buf)
    assert buf.getvalue() == model.SerializeToString()


def test_big_inline_save_is_streamed_and_identical(tmp_path):
    """From 64 MB on, save_model streams; the file is still the plain serialization."""
    src = big_transformer_external(tmp_path / "model", gigabytes=0.07, dim=1024, seq=2)
    model = wb.load_model(src)
    path = wb.save_model(model, tmp_path / "inline.onnx")
    assert path.read_bytes() == model.SerializeToString()


def test_float16_of_a_path_stands_alone_unless_references_are_asked_for(external, tmp_path):
    """Weights kept float32 (blocked MatMuls) come back inside the result: saved elsewhere,
    it runs without the source folder; keep_references=True leaves them pointing there."""
    src, x = external
    f16 = wb.convert_float16(src, block_ops=["MatMul"])
    assert not has_external_data(f16)
    path = wb.save_model(f16, tmp_path / "elsewhere" / "f16.onnx")
    expected = open_runner(src)({"x": x})["y"]
    np.testing.assert_allclose(open_runner(path)({"x": x})["y"], expected, rtol=1e-2, atol=1e-2)
    light = wb.convert_float16(src, block_ops=["MatMul"], keep_references=True)
    assert has_external_data(light)
