"""Demo models and data: digits CNN and MLP (scikit-learn's bundled digits, no download)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset
from ..metrics import top1

MODELS_DIR = Path(__file__).parent / "models"
DEMO_MODELS = ("cnn", "mlp")


def load_digits_split(
    npz: Path = MODELS_DIR / "digits.npz",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test); images float32 [N,1,8,8] scaled to [0,1]."""
    with np.load(npz) as d:

        def prep(x: np.ndarray) -> np.ndarray:
            return (x.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)

        return (
            prep(d["x_train"]),
            d["y_train"].astype(np.int64),
            prep(d["x_test"]),
            d["y_test"].astype(np.int64),
        )


def demo_model_path(name: str = "cnn") -> Path:
    """Path of a committed demo model (``cnn`` or ``mlp``)."""
    if name not in DEMO_MODELS:
        raise ValueError(f"unknown demo model {name!r}; choose one of {', '.join(DEMO_MODELS)}")
    return MODELS_DIR / f"{name}.onnx"


def to_feeds(item: tuple[np.ndarray, int]) -> dict[str, np.ndarray]:
    """Dataset transform: one (image, label) item → ``{"image": [1,1,8,8]}``."""
    return {"image": item[0][None]}


def demo_dataset(split: str = "test", n: int | None = None) -> Dataset:
    """Items are ``(image [1,8,8] float32, label)``; ``.feeds()`` gives ``{"image": [1,1,8,8]}``."""
    x_train, y_train, x_test, y_test = load_digits_split()
    x, y = (x_test, y_test) if split == "test" else (x_train, y_train)
    if n is not None:
        x, y = x[:n], y[:n]
    return Dataset(list(zip(x, y.tolist(), strict=True)), transform=to_feeds)


def accuracy(run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], dataset: Any) -> float:
    """validation_fn for the demo: top-1 accuracy over the dataset in one batched run."""
    items = list(dataset)
    images = np.stack([img for img, _ in items])
    labels = np.asarray([lbl for _, lbl in items])
    logits = next(iter(run({"image": images}).values()))
    return top1(logits, labels)
