"""A Dataset from a folder of images: ``image_folder`` (labels from subfolder names)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data import Dataset
from .errors import InputError
from .progress import track

#: file name endings read as images (case-insensitive)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
LAYOUTS = ("NCHW", "NHWC")


class ImageFolder(Dataset):
    """Items ``(image float32 [C,H,W] or [H,W,C], label)``; ``.feeds()`` adds the batch axis.

    ``classes[label]`` is the subfolder name of a label, ``files[i]`` the file of item ``i``.
    """

    def __init__(
        self,
        items: list[tuple[np.ndarray, int | None]],
        input_name: str,
        classes: tuple[str, ...],
        files: tuple[Path, ...],
    ):
        self.input_name = input_name
        super().__init__(items, transform=self.to_feeds)
        self.classes = classes
        self.files = files

    def to_feeds(self, item: tuple[np.ndarray, Any]) -> dict[str, np.ndarray]:
        """One item → ``{input_name: image[None]}`` (a batch of one)."""
        return {self.input_name: item[0][None]}

    @property
    def labels(self) -> np.ndarray:
        """Labels of all items (int64; -1 where the folder had no subfolders)."""
        return np.asarray([-1 if lbl is None else lbl for _, lbl in self], dtype=np.int64)

    def __repr__(self) -> str:
        return f"ImageFolder({len(self)} images, {len(self.classes)} classes, {self.input_name!r})"


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in hw):
        raise InputError(f"size must be a positive int or (height, width), got {size!r}")
    return int(hw[0]), int(hw[1])


def _stats(mean: float | Sequence[float], std: float | Sequence[float]) -> tuple[np.ndarray, ...]:
    m = np.atleast_1d(np.asarray(mean, dtype=np.float32))
    s = np.atleast_1d(np.asarray(std, dtype=np.float32))
    if m.ndim != 1 or len(m) not in (1, 3) or m.shape != s.shape:
        raise InputError(
            f"mean and std must both have 1 value (grayscale) or 3 values (RGB), got "
            f"mean={mean!r}, std={std!r}"
        )
    if not np.all(s > 0):
        raise InputError(f"std must be > 0, got {std!r}")
    return m, s


def _files(root: Path) -> tuple[list[tuple[Path, int | None]], tuple[str, ...]]:
    """(file, label) pairs: label = index of the sorted subfolder name, None without subfolders."""
    if not root.is_dir():
        raise InputError(f"image folder not found: {str(root)!r}")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def images(folder: Path) -> list[Path]:
        return sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )

    if subdirs:
        pairs = [(f, i) for i, d in enumerate(subdirs) for f in images(d)]
        classes = tuple(d.name for d in subdirs)
    else:
        pairs = [(f, None) for f in images(root)]
        classes = ()
    if not pairs:
        raise InputError(
            f"no images in {str(root)!r}: put images ({', '.join(IMAGE_SUFFIXES)}) in one "
            "subfolder per class (or directly in the folder for unlabelled data)"
        )
    return pairs, classes


def _read(path: Path, hw: tuple[int, int], mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert(mode).resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(im, dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"cannot read image {str(path)!r}: {e}; remove or replace it") from e
    return pixels[..., None] if pixels.ndim == 2 else pixels


def image_folder(
    path: str | os.PathLike[str],
    size: int | Sequence[int],
    mean: float | Sequence[float],
    std: float | Sequence[float],
    layout: str = "NCHW",
    *,
    input_name: str = "input",
) -> ImageFolder:
    """Read a folder of images into a Dataset; labels come from subfolder names.

    Layout of the folder: ``path/<class name>/<image>``; classes are the subfolder names in
    sorted order, label ``i`` is ``classes[i]``. A folder without subfolders gives unlabelled
    items (label ``None``). Files ending in :data:`IMAGE_SUFFIXES` are read, sorted by name.

    Preprocessing, in order (Pillow): convert to RGB when ``mean``/``std`` have three values
    (channel order R, G, B) or to grayscale ``L`` when they have one; resize to ``size``
    (``int`` or ``(height, width)``) with bilinear filtering, stretching (aspect ratio not
    kept, no crop); scale pixels to [0, 1] by dividing by 255; then ``(x - mean) / std`` per
    channel; float32. ``layout`` ``"NCHW"`` gives items ``[C,H,W]``, ``"NHWC"`` ``[H,W,C]``;
    ``.feeds()`` yields ``{input_name: image[None]}``.

    Raises :class:`InputError` for a missing or empty folder and for an unreadable image
    (naming the file).
    """
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    hw = _pair(size)
    m, s = _stats(mean, std)
    pairs, classes = _files(Path(path))
    items = []
    for file, label in track(pairs, "image folder"):
        x = (_read(file, hw, "L" if len(m) == 1 else "RGB") / 255.0 - m) / s
        items.append((np.ascontiguousarray(x.transpose(2, 0, 1) if layout == "NCHW" else x), label))
    return ImageFolder(items, input_name, classes, tuple(f for f, _ in pairs))
