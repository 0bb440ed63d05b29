"""Your data and your metric from files: what the CLI's ``--data``/``--validation`` and the
widgets' file pickers read.

* an ``.npz`` holds one array per model input (first axis = items) and optionally ``labels``;
* a folder of images (labels from subfolder names) is read by
  :func:`workbench.images.image_folder`;
* metrics by name: ``top1``/``top5`` (need labels), ``cosine``/``mse``/``agreement`` (against
  the f32 model's outputs, computed once on the ORT CPU), or ``module:function`` taking
  ``(run, dataset)`` with ``module`` importable from the current folder.

Built-in metrics return per-item scores (their mean is the metric; higher is better).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .data import Dataset, as_dataset, dataset_from_npz, input_signature
from .errors import InputError
from .images import image_folder
from .runtime import open_runner

#: built-in metric names
METRICS = ("top1", "top5", "cosine", "mse", "agreement")
DATA_HELP = (
    "an .npz with one array per model input (first axis = items) and optionally 'labels', "
    "or a folder of images in one subfolder per label"
)


def first(item: tuple[Any, Any]) -> Any:
    """Transform of labelled datasets: items are ``(feeds, label)``."""
    return item[0]


def has_labels(dataset: Any) -> bool:
    """Items are ``(feeds, label)`` pairs (an .npz with ``labels``, an image folder)."""
    ds = as_dataset(dataset)
    if getattr(ds, "transform", None) is first:
        return True
    item = ds[0]
    return isinstance(item, tuple) and len(item) == 2 and item[1] is not None


def load_npz(path: str | os.PathLike[str], model: Any) -> Dataset:
    """An .npz of model inputs (plus optional ``labels``) as a Dataset, checked against the
    model's input names."""
    ds = dataset_from_npz(path)
    names = [n for n, _, _ in input_signature(model)]
    have = set(ds[0])
    missing = [n for n in names if n not in have]
    extra = sorted(have - set(names) - {"labels"})
    if missing or extra:
        raise InputError(
            f"{str(path)!r} holds arrays {', '.join(sorted(have))}; the model's inputs are "
            f"{', '.join(names)} (plus an optional 'labels' array)"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unexpected {', '.join(extra)}" if extra else "")
        )
    if "labels" not in have:
        return ds
    items = list(ds)
    feeds = [{k: v for k, v in item.items() if k != "labels"} for item in items]
    labels = np.concatenate([np.ravel(item["labels"]) for item in items])
    return Dataset(list(zip(feeds, labels, strict=True)), transform=first)


def load_data(
    path: str | os.PathLike[str],
    model: Any,
    mean: float | tuple[float, ...] | None = None,
    std: float | tuple[float, ...] | None = None,
) -> Dataset:
    """``path`` (an .npz, or an image folder read with ``mean``/``std``) → Dataset for ``model``."""
    p = Path(path)
    if p.is_dir():
        return image_folder(p, **image_options(model, mean, std))
    if not p.exists():
        raise InputError(f"data file not found: {str(p)!r}; give {DATA_HELP}")
    return load_npz(p, model)


def image_options(
    model: Any,
    mean: float | tuple[float, ...] | None = None,
    std: float | tuple[float, ...] | None = None,
) -> dict[str, Any]:
    """``image_folder`` arguments from the model's first input ([N,C,H,W] or [N,H,W,C]):
    size, layout, input name, and ``mean``/``std`` (default 0 and 1: pixels scaled to [0, 1])."""
    name, _, shape = input_signature(model)[0]
    dims = [d for d in shape[1:] if isinstance(d, int)]
    if len(shape) != 4 or len(dims) != 3:
        raise InputError("an image folder needs a model whose first input is an image [N,C,H,W]")
    channels_first = dims[0] in (1, 3)
    channels = dims[0] if channels_first else dims[2]
    return {
        "size": (dims[1], dims[2]) if channels_first else (dims[0], dims[1]),
        "layout": "NCHW" if channels_first else "NHWC",
        "input_name": name,
        "mean": mean if mean is not None else (0.0,) * channels,
        "std": std if std is not None else (1.0,) * channels,
    }


def metric(spec: str, model: Any, dataset: Any) -> Callable[[Callable, Any], float]:
    """A ``validation_fn`` by name (see :data:`METRICS`) or ``module:function``."""
    if ":" in spec:
        return import_function(spec)
    name = str(spec).strip().lower()
    if name not in METRICS:
        raise InputError(
            f"unknown metric {spec!r}; use one of {', '.join(METRICS)} or module:function"
        )
    if name in ("top1", "top5"):
        if not has_labels(dataset):
            raise InputError(f"metric {name} needs labels: add a 'labels' array to the .npz")
        return _topk(1 if name == "top1" else 5)
    return _against_f32(name, model, dataset)


def default_metric(model: Any, dataset: Any) -> Callable[[Callable, Any], float]:
    """top1 for labelled data, else agreement with the f32 model."""
    return metric("top1" if has_labels(dataset) else "agreement", model, dataset)


def _outputs(run: Callable, dataset: Any) -> list[np.ndarray]:
    """First output of ``run`` for every item, one item at a time (works with a static batch)."""
    return [np.asarray(next(iter(run(f).values()))) for f in as_dataset(dataset).feeds()]


def _scores(values: list[float]) -> float:
    """The mean of per-item scores, carrying them when the metrics module supports it."""
    item_scores = getattr(metrics, "ItemScores", None)
    return item_scores(values) if item_scores is not None else float(np.mean(values))


def _topk(k: int) -> Callable[[Callable, Any], float]:
    def topk(run: Callable, dataset: Any) -> float:
        hits: list[float] = []
        for out, (_, label) in zip(_outputs(run, dataset), dataset, strict=True):
            labels = np.ravel(label)
            best = np.argsort(-out.reshape(labels.size, -1), axis=-1, kind="stable")[:, :k]
            hits += [float(lbl in row) for lbl, row in zip(labels, best, strict=True)]
        return _scores(hits)

    topk.__name__ = topk.__qualname__ = f"top{k}"
    return topk


def _per_item(name: str, out: np.ndarray, ref: np.ndarray) -> float:
    if name == "cosine":
        return metrics.cosine(out, ref)
    if name == "agreement":
        return float(np.argmax(out.ravel()) == np.argmax(ref.ravel()))
    # mse negated so that higher is better, like every other metric
    return -float(np.mean((out.astype(np.float64) - ref.astype(np.float64)) ** 2))


def _against_f32(name: str, model: Any, dataset: Any) -> Callable[[Callable, Any], float]:
    """cosine / mse / agreement of the first output against the f32 model's (ORT CPU, once)."""
    runner = open_runner(model, "cpu")
    try:
        refs = _outputs(runner, dataset)
    finally:
        runner.close()

    def compare(run: Callable, data: Any) -> float:
        outs = _outputs(run, data)
        if len(outs) != len(refs):
            raise InputError(
                f"{name}: references were computed for {len(refs)} items, got {len(outs)}"
            )
        return _scores([_per_item(name, o, r) for o, r in zip(outs, refs, strict=True)])

    compare.__name__ = compare.__qualname__ = name
    return compare


def import_function(spec: str) -> Callable:
    """``module:function`` with ``module`` importable normally or from the current folder
    (found there without editing ``sys.path``)."""
    module, _, func = spec.partition(":")
    if not module or not func:
        raise InputError(f"{spec!r}: write module:function or one of {', '.join(METRICS)}")
    try:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError:
            local = Path.cwd() / (module.replace(".", os.sep) + ".py")
            if not local.is_file():
                raise
            found = importlib.util.spec_from_file_location(module, local)
            if found is None or found.loader is None:
                raise
            mod = importlib.util.module_from_spec(found)
            sys.modules[module] = mod  # as an import would: its functions pickle (Dask)
            found.loader.exec_module(mod)
        fn = getattr(mod, func)
    except (ImportError, AttributeError, SyntaxError) as e:
        raise InputError(f"{spec!r}: cannot import it ({e})") from e
    if not callable(fn):
        raise InputError(f"{spec!r} is not a function")
    return fn
