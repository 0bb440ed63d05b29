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
