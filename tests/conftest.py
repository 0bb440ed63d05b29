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
