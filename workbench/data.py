"""Datasets: raw items for ``validation_fn``, feeds for calibration and benchmarks (as nncf.Dataset)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import onnx

from .errors import InputError
from .model import load_model

Feeds = dict[str, np.ndarray]


class Dataset:
    """A sized collection of items with an optional ``transform(item) -> feeds`` function.

    Iterating yields the raw items (what a ``validation_fn`` sees); :meth:`feeds` yields the
    model inputs (what calibration and benchmarks use). Without a transform, items must
    already be feeds dicts.
    """

    def __init__(
        self, items: Iterable[Any], transform: Callable[[Any], Mapping[str, Any]] | None = None
    ):
        self._items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __getitem__(self, index: int) -> Any:
        return self._items[index]

    def __repr__(self) -> str:
        t = getattr(self.transform, "__name__", None)
        return f"Dataset({len(self)} items{', transform=' + t if t else ''})"

    def feeds(self) -> Iterator[Feeds]:
        """Yield one feeds dict per item (``transform(item)`` or the item itself)."""
        for i, item in enumerate(self._items):
            fd = self.transform(item) if self.transform is not None else item
            if not isinstance(fd, Mapping):
                raise InputError(
                    f"dataset item {i} gives {type(fd).__name__}, not a dict of input name → array; "
                    "pass transform=lambda item: {'input_name': array}"
                )
            yield {str(k): np.asarray(v) for k, v in fd.items()}

    def take(self, n: int) -> Dataset:
        """The first ``n`` items, same transform."""
        return Dataset(self._items[:n], self.transform)


def as_dataset(data: Dataset | Iterable[Any] | None, what: str = "dataset") -> Dataset:
    """Accept a Dataset or a list of feeds dicts; refuse empty data with a clear error."""
    if data is None:
        raise InputError(f"{what} is required")
    ds = data if isinstance(data, Dataset) else Dataset(data)
    if len(ds) == 0:
        raise InputError(f"{what} is empty; give at least one item")
    return ds


_NP_FOR_ONNX: dict[int, Any] = {}


def onnx_to_numpy_dtype(elem_type: int) -> np.dtype:
    """Numpy dtype for an ONNX element type (bfloat16 via ml_dtypes)."""
    if elem_type == onnx.TensorProto.BFLOAT16:
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def input_signature(model: onnx.ModelProto) -> list[tuple[str, int, tuple[int | str | None, ...]]]:
    """(name, elem_type, shape) for each real graph input (initializers excluded)."""
    inits = {i.name for i in model.graph.initializer}
    sig = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim
        )
        sig.append((vi.name, tt.elem_type, shape))
    return sig


def random_dataset(
    model: onnx.ModelProto | str | os.PathLike[str],
    n: int = 8,
    seed: int = 0,
    dims: Mapping[str, int] | None = None,
) -> Dataset:
    """``n`` random feeds built from the model's input signatures.

    Dynamic dimensions take their value from ``dims`` (by dim_param name) or 1. Floats are
    standard normal, integers lie in [0, 10), booleans are fair coins.
    """
    m = model if isinstance(model, onnx.ModelProto) else load_model(model, load_external_data=False)
    if n < 1:
        raise InputError(f"random_dataset needs n >= 1, got {n}")
    dims = dict(dims or {})
    rng = np.random.default_rng(seed)
    items = []
    sig = input_signature(m)
    for _ in range(n):
        feeds: Feeds = {}
        for name, elem_type, shape in sig:
            concrete = tuple(
                d if isinstance(d, int) and d > 0 else int(dims.get(str(d), 1)) if d else 1
                for d in shape
            )
            dtype = onnx_to_numpy_dtype(elem_type)
            if dtype.kind == "f" or dtype.name == "bfloat16":
                arr = rng.standard_normal(concrete).astype(np.float32).astype(dtype)
            elif dtype.kind in "iu":
                arr = rng.integers(0, 10, size=concrete).astype(dtype)
            elif dtype.kind == "b":
                arr = rng.integers(0, 2, size=concrete).astype(bool)
            else:
                raise InputError(
                    f"input {name!r} has type {dtype} which random_dataset cannot generate; "
                    "build a Dataset from real data instead"
                )
            feeds[name] = arr
        items.append(feeds)
    return Dataset(items)


def dataset_from_npz(path: str | os.PathLike[str]) -> Dataset:
    """A Dataset from an ``.npz`` whose arrays are named after the model inputs.

    The first axis indexes items: item ``i`` is ``{name: array[i:i+1]}`` (batch of one). This
    is the ``--data`` format of the CLI.
    """
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise InputError(
            f"data file not found: {str(p)!r}; give an .npz with one array per model input"
        )
    try:
        with np.load(p, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError) as e:
        raise InputError(f"cannot read {str(p)!r} as .npz: {e}") from e
    if not arrays:
        raise InputError(f"{str(p)!r} holds no arrays; save one per model input with numpy.savez")
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise InputError(f"arrays in {str(p)!r} have different first dimensions: {lengths}")
    n = next(iter(lengths.values()))
    return Dataset([{k: v[i : i + 1] for k, v in arrays.items()} for i in range(n)])
