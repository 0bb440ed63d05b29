"""explore() on models whose weights stay on disk: a file with external data is swept light
(the f32 variant runs from the file, built variants are staged to a work folder as external
data), locally and on real Dask worker processes, where the model travels as its light header
plus the data files' bytes (works beyond protobuf's 2 GB). Small models take the very same code
path; the > 2 GB run is ``slow``."""

from __future__ import annotations

import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest

import workbench as wb
from workbench import model as model_io
from workbench import study

sys.path.insert(0, str(Path(__file__).resolve().parent))

import models  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::workbench.runtime.hints.PrecisionWarning")

DIM, SEQ = 64, 4
FAST = dict(min_time=0.03, rounds=2, warmup=1, bench_items=2)


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    root = tmp_path_factory.mktemp("light")
    return models.big_transformer_external(root / "m", 0.002, dim=DIM, seq=SEQ)


def _data(n: int = 4) -> wb.Dataset:
    return wb.Dataset([
        {"x": np.random.default_rng(i).standard_normal((1, SEQ, DIM), np.float32)}
        for i in range(n)
    ])  # fmt: skip


def mean_abs(run, data):
    """Per-item scores that change with every output value (equal only for equal outputs)."""
    return np.array([float(np.abs(run(f)["y"]).astype(np.float64).sum()) for f in data.feeds()])


def _key(s: wb.Study) -> list:
    return [(r.variant, r.device, r.hints, r.accuracy, r.scores, r.precision_ran, r.error)
            for r in s.records]  # fmt: skip


def _half(m):
    return wb.convert_float16(m)


KW = dict(variants=("f32", "f16", ("half", _half)), hints=("performance", "accuracy"), **FAST)


def test_light_sweep_equals_in_memory(external, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # to see the work folder go
    study.clear_cache()
    light = wb.explore(external, _data(), mean_abs, **KW)
    study.clear_cache()
    whole = wb.explore(wb.load_model(external), _data(), mean_abs, **KW)
    assert _key(light) == _key(whole) and all(r.ok for r in light.records)
    sizes = {b.variant: b.model_bytes for b in light.builds}
    full = wb.model.model_nbytes(wb.load_model(external))
    assert sizes["f32"] == full  # the complete model's size, not the light header's
    assert {b.variant: b.model_bytes for b in whole.builds}["f16"] == sizes["f16"]
    assert not list(tmp_path.iterdir())  # staged variants removed with the work folder
    # the variant cache holds serialized variants within its byte budget, counted as such
    assert study.CACHE.nbytes == sum(len(v[0]) for v in study.CACHE._items.values())


def test_staged_proto_sweep_equals_in_memory(external, monkeypatch):
    """A proto at or over STAGE_BYTES is written to the work folder once and swept light."""
    proto = wb.load_model(external)
    study.clear_cache()
    whole = wb.explore(proto, _data(), mean_abs, variants=("f32", "f16"), **FAST)
    monkeypatch.setattr(model_io, "STAGE_BYTES", 0)
    study.clear_cache()
    staged = wb.explore(proto, _data(), mean_abs, variants=("f32", "f16"), **FAST)
    assert _key(staged) == _key(whole)
    assert proto == wb.load_model(external)


@pytest.mark.parametrize("piecewise", [False, True])
def test_light_digest_is_model_digest(external, monkeypatch, piecewise):
    """A light source hashes to what the loaded model hashes to: below 2 GB the serialization's
    sha256, beyond (forced here by lowering the limit) piece by piece, its data streamed from
    the files; other weights give another hash."""
    if piecewise:
        monkeypatch.setattr(model_io, "PROTOBUF_LIMIT", 0)
    light, folder = model_io.load_light(external)
    full = wb.load_model(external)
    assert model_io.model_digest(light, folder) == model_io.model_digest(full)
    other = models.big_transformer_external(Path(folder).parent / "other", 0.002, DIM, SEQ, seed=1)
    assert model_io.model_digest(*model_io.load_light(other)) != model_io.model_digest(full)


def test_payload_round_trip(external, tmp_path):
    """What is scattered: the light header and the data files as buffers (pickle protocol 5
    sends them out of band); a worker writes them to a work folder, keeps the light model
    under a token for its jobs, and removes the folder when told."""
    light, folder = wb.model.load_light(external)
    payload = study._payload(study.LightModel(light, folder, 0))
    assert set(payload.files) == {"large.onnx.data"}
    buffers = []
    blob = pickle.dumps(payload, protocol=5, buffer_callback=buffers.append)
    assert len(blob) < 100_000 and buffers  # the data went out of band
    back = pickle.loads(blob, buffers=buffers)
    study._stage_payload(back, "t1")
    model, work = study._STAGED["t1"]
    assert isinstance(model, study.LightModel) and model.proto == light
    data = Path(model.folder, "large.onnx.data").read_bytes()
    assert data == (Path(folder) / "large.onnx.data").read_bytes()
    study._unstage(["t1", "unknown"])
    assert "t1" not in study._STAGED and not Path(work).exists()
    whole = study._payload(wb.load_model(external))  # a complete proto: the header alone
    assert not whole.files and onnx.load_from_string(whole.header) == wb.load_model(external)
    study._stage_payload(whole, "t2")
    assert study._STAGED["t2"] == (whole.header, None)
    study._unstage(["t2"])


def test_payload_refuses_escaping_locations(tmp_path):
    bad = study._Payload(b"", {"../evil.bin": np.zeros(4, np.uint8)})
    with pytest.raises(wb.errors.WorkbenchError):
        study._unpack_payload(bad, str(tmp_path / "work"))
    assert not (tmp_path / "evil.bin").exists()


def test_dask_workers_sweep_light_model(external):
    distributed = pytest.importorskip("distributed")
    study.clear_cache()
    kw = dict(variants=("f32", "f16"), hints=("performance", "accuracy"), **FAST)
    local = wb.explore(external, _data(), mean_abs, **kw)
    with (
        distributed.LocalCluster(
            processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = wb.explore(external, _data(), mean_abs, client=client, **kw)
        # staged models and their folders are gone from the workers once the sweep is done
        left = client.run(
            lambda: [f for _, f in __import__("workbench.study").study._STAGED.values()]
        )
        assert len(left) == 2 and not any(left.values())
    assert _key(remote) == _key(local) and all(r.ok for r in remote.records)
    assert remote.model_hash == local.model_hash


# --------------------------------------------------------------------------- > 2 GB


@pytest.mark.slow
def test_dask_sweeps_model_over_2gb(big_model):
    """A > 2 GB model cannot be scattered as one serialized proto; as header + data buffers
    it reaches a worker process and is measured there."""
    distributed = pytest.importorskip("distributed")
    src, size = big_model
    dim, seq = 4096, 8  # benchmarks/bench_large.py's model
    data = wb.Dataset([
        {"x": np.random.default_rng(i).standard_normal((1, seq, dim), np.float32)}
        for i in range(2)
    ])  # fmt: skip
    with (
        distributed.LocalCluster(
            processes=True, n_workers=1, threads_per_worker=1, dashboard_address=None,
            memory_limit=0,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):  # fmt: skip
        s = wb.explore(src, data, mean_abs, variants=("f32",), hints=("performance",),
                       client=client, **FAST)  # fmt: skip
        rusage = __import__("resource").getrusage  # a lambda: sent by value to the workers
        peak = 1024 * max(client.run(lambda: rusage(0).ru_maxrss).values())
    assert [r.ok for r in s.records] == [True], s.records[0].error
    assert s.builds[0].model_bytes > 2**31
    # the worker held the model once at a time: the payload is released before the session
    assert peak <= 2.0 * size, f"worker peak {peak / 2**30:.2f} GiB = {peak / size:.2f}× the model"
