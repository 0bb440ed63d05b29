"""Shared pytest fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import models  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out"


@pytest.fixture
def artifacts() -> Path:
    """Folder for files a test keeps for people to look at (screenshots, renders)."""
    OUT.mkdir(exist_ok=True)
    return OUT


@pytest.fixture(scope="session")
def demo_cnn():
    import workbench as wb

    return wb.load_model(wb.demo.demo_model_path("cnn"))


@pytest.fixture(scope="session")
def demo_data():
    import workbench as wb

    return wb.demo.demo_dataset("test")


@pytest.fixture(scope="session")
def big_model(tmp_path_factory):
    """``(path, data bytes)`` of the > 2 GB transformer-like model of
    ``benchmarks/bench_large.py`` (external data), generated once per session for the slow
    tests that need one, removed at the end (pytest keeps recent tmp dirs otherwise)."""
    import shutil

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_large

    root = tmp_path_factory.mktemp("big")
    need = 2.5 * 2.1 * 2**30
    free = shutil.disk_usage(root).free
    if free < need:
        pytest.skip(f"needs {need / 2**30:.1f} GiB of free disk in {root}, has {free / 2**30:.1f}")
    try:
        src = bench_large.generate(root / "model", 2.1)
        size = (root / "model" / "large.onnx.data").stat().st_size
        assert size > 2**31
        yield src, size
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tmodels():
    """The test model builders (tests/models.py)."""
    return models


@pytest.fixture(scope="session")
def corpus_models() -> dict[str, Path]:
    """The real-model corpus (tests/corpus.py), all of it: `make test` fetches it first.

    Outside CI a missing corpus skips with the command to fetch it; in CI it is an error.
    """
    import os

    import corpus

    have = corpus.available()
    missing = [e.name for e in corpus.ENTRIES if e.name not in have]
    if missing:
        message = f"corpus models missing ({', '.join(missing)}): run python tests/corpus.py fetch"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return have
