"""wb.image_folder: labels from subfolders, preprocessing as documented, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import workbench as wb
from workbench.errors import InputError


def _write_digits(root, n=40):
    """The first ``n`` held-out digits as 8×8 grayscale PNGs in one subfolder per class."""
    _, _, x, y = wb.demo.load_digits_split()
    for i in range(n):
        folder = root / f"digit_{y[i]}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.round(x[i, 0] * 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{i:03d}.png")
    return x[:n], y[:n]


def test_labels_from_sorted_subfolders_and_pixels_scaled(tmp_path):
    x, y = _write_digits(tmp_path)
    ds = wb.image_folder(tmp_path, size=8, mean=0.0, std=1.0, input_name="image")
    assert len(ds) == len(x)
    assert list(ds.classes) == sorted({f"digit_{v}" for v in y})
    # items follow (sorted class, sorted file); find each file's source digit by its name
    for (image, label), file in zip(ds, ds.files, strict=True):
        i = int(file.stem)
        assert ds.classes[label] == f"digit_{y[i]}"
        assert image.shape == (1, 8, 8) and image.dtype == np.float32
        np.testing.assert_allclose(image[0], np.round(x[i, 0] * 255) / 255, atol=1e-6)
    feeds = next(ds.feeds())
    assert list(feeds) == ["image"] and feeds["image"].shape == (1, 1, 8, 8)


def test_demo_model_scores_the_same_on_the_folder(tmp_path):
    x, y = _write_digits(tmp_path, n=60)
    ds = wb.image_folder(tmp_path, 8, 0.0, 1.0, input_name="image")
    names = [int(c.split("_")[1]) for c in ds.classes]

    def top1(run, data):
        images = np.stack([img for img, _ in data])
        logits = run({"image": images})["logits"]
        return float(np.mean(logits.argmax(1) == np.array([names[lbl] for _, lbl in data])))

    cnn = wb.demo.demo_model_path("cnn")
    ref = wb.evaluate(cnn, wb.demo.demo_dataset("test", n=60), wb.demo.accuracy)
    assert abs(wb.evaluate(cnn, ds, top1) - ref) <= 2 / 60  # 8-bit PNG rounding may flip one


def test_rgb_normalisation_resize_and_layout(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 51, 0  # R, G, B planes differ
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "a.png")
    mean, std = (0.5, 0.2, 0.1), (0.5, 0.25, 0.5)
    expected = (rgb[0, 0] / 255.0 - np.array(mean)) / np.array(std)
    nchw = wb.image_folder(tmp_path, (2, 3), mean, std)  # no subfolders: unlabelled
    image, label = nchw[0]
    assert label is None and nchw.classes == () and image.shape == (3, 2, 3)
    np.testing.assert_allclose(image[:, 0, 0], expected, rtol=1e-6)  # channel order R, G, B
    nhwc = wb.image_folder(tmp_path, 5, mean, std, layout="NHWC", input_name="x")
    assert nhwc[0][0].shape == (5, 5, 3) and next(nhwc.feeds())["x"].shape == (1, 5, 5, 3)
    np.testing.assert_allclose(nhwc[0][0][2, 2], expected, rtol=1e-5)  # uniform image stays
    gray = wb.image_folder(tmp_path, 4, 0.0, 1.0)
    assert gray[0][0].shape == (1, 4, 4)  # one mean/std value: grayscale


def test_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        wb.image_folder(tmp_path / "missing", 8, 0.0, 1.0)
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    with pytest.raises(InputError, match="no images in .*empty"):
        wb.image_folder(tmp_path / "empty", 8, 0.0, 1.0)
    bad = tmp_path / "bad" / "cats"
    bad.mkdir(parents=True)
    (bad / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="broken.png"):
        wb.image_folder(tmp_path / "bad", 8, 0.0, 1.0)
    for kwargs, needle in (
        ({"layout": "CHW"}, "NCHW, NHWC"),
        ({"mean": (0.1, 0.2), "std": (1.0, 1.0)}, "1 value"),
        ({"std": 0.0}, "std must be > 0"),
        ({"size": 0}, "size must be"),
    ):
        args = {"size": 8, "mean": 0.0, "std": 1.0, **kwargs}
        with pytest.raises(InputError, match=needle):
            wb.image_folder(tmp_path / "bad", **args)
