"""Demo models and data (scikit-learn's bundled digits, no download).

``cnn`` and ``mlp`` take the 8×8 digits (fast, for tests); ``cnn32`` takes the digits upscaled to
32×32 with shifts and noise: compute-bound (~100 M multiply-adds per image) so precision moves
its latency, and with borderline test items so precision moves its accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset
from ..metrics import top1

MODELS_DIR = Path(__file__).parent / "models"
DEMO_MODELS = ("cnn", "mlp", "cnn32")
#: side of the upscaled images of ``cnn32`` and the seed of their (fixed) augmentation
SIZE32 = 32
AUGMENT_SEED = 20261128


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


def _upscale_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Bilinear interpolation matrix [n_out, n_in] (align_corners=False, edges clamped)."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    return m


def augment32(images: np.ndarray, rng: np.random.Generator, noise: float = 0.12) -> np.ndarray:
    """8×8 digits in [0,1] [N,1,8,8] → 32×32 float32 [N,1,32,32]: bilinear upscale, a random
    shift of up to 3 pixels, random contrast and Gaussian noise, clipped to [0,1].

    Computed in float64 and rounded to 1/255 steps so BLAS differences between machines do not
    change the data."""
    a = _upscale_matrix(8, SIZE32)
    up = np.einsum("ij,nkjl,ml->nkim", a, images.astype(np.float64), a)
    n = len(up)
    shifts = rng.integers(-3, 4, size=(n, 2))
    out = np.empty_like(up)
    for i, (dy, dx) in enumerate(shifts):
        out[i] = np.roll(up[i], (int(dy), int(dx)), axis=(1, 2))
    out *= rng.uniform(0.7, 1.0, size=(n, 1, 1, 1))
    out += rng.standard_normal(out.shape) * noise
    return (np.round(np.clip(out, 0.0, 1.0) * 255) / 255).astype(np.float32)


def split32(x: np.ndarray, y: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``cnn32``'s fixed data from 8×8 digits (:func:`augment32`, fixed seeds).

    ``train``: each digit once (noise 0.12). ``test``: 720 items, each held-out digit once with
    stronger noise (0.2), then once overlaid with another digit at 30–45 % strength (label: the
    stronger digit). The overlays put items near a decision boundary, where a precision change
    shows in the accuracy and not only in the logits."""
    if split == "train":
        return augment32(x, np.random.default_rng(AUGMENT_SEED + 1)), y
    rng = np.random.default_rng(AUGMENT_SEED)
    weight = rng.uniform(0.55, 0.7, size=(len(x), 1, 1, 1))
    overlaid = weight * x + (1 - weight) * x[rng.permutation(len(x))]
    images = augment32(np.concatenate([x, overlaid]), rng, noise=0.2)
    return images, np.concatenate([y, y])


def demo_model_path(name: str = "cnn") -> Path:
    """Path of a committed demo model (``cnn``, ``mlp`` or ``cnn32``)."""
    if name not in DEMO_MODELS:
        raise ValueError(f"unknown demo model {name!r}; choose one of {', '.join(DEMO_MODELS)}")
    return MODELS_DIR / f"{name}.onnx"


def to_feeds(item: tuple[np.ndarray, int]) -> dict[str, np.ndarray]:
    """Dataset transform: one (image, label) item → ``{"image": [1,1,H,W]}``."""
    return {"image": item[0][None]}


def demo_dataset(split: str = "test", n: int | None = None, model: str = "cnn") -> Dataset:
    """Items are ``(image [1,8,8] float32, label)``; ``.feeds()`` gives ``{"image": [1,1,8,8]}``.

    ``model="cnn32"``: images [1,32,32] (:func:`split32`; the test split has 720 items)."""
    if split not in ("test", "train"):
        raise ValueError(f"unknown split {split!r}; choose test or train")
    x_train, y_train, x_test, y_test = load_digits_split()
    x, y = (x_test, y_test) if split == "test" else (x_train, y_train)
    if model == "cnn32":
        x, y = split32(x, y, split)
    elif model not in DEMO_MODELS:
        raise ValueError(f"unknown demo model {model!r}; choose one of {', '.join(DEMO_MODELS)}")
    if n is not None:
        x, y = x[:n], y[:n]
    return Dataset(list(zip(x, y.tolist(), strict=True)), transform=to_feeds)


def accuracy(run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], dataset: Any) -> float:
    """validation_fn for the demo: top-1 accuracy over the dataset in one batched run."""
    items = list(dataset)
    images = np.stack([img for img, _ in items])
    labels = np.asarray([lbl for _, lbl in items])
    out = run({"image": images})
    logits = out["logits"] if "logits" in out else next(iter(out.values()))
    return top1(logits, labels)
