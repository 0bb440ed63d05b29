"""Datasets: raw items for ``validation_fn``, feeds for calibration and benchmarks (as nncf.Dataset)."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
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


Dim = int | str | None


@dataclass(frozen=True)
class InputSpec:
    """What a model input accepts: element dtype and shape (None: rank unknown).

    Dimensions are ints (static), strings (named dynamic) or None (unknown).
    """

    dtype: np.dtype | None  # None: not a tensor (sequence/map input), passed through unchecked
    shape: tuple[Dim, ...] | None = None

    def __str__(self) -> str:
        if self.shape is None:
            return f"{self.dtype}[any shape]"
        return f"{self.dtype}[{', '.join('?' if d is None else str(d) for d in self.shape)}]"


def input_specs(model: onnx.ModelProto) -> dict[str, InputSpec]:
    """Input name → :class:`InputSpec` for each real graph input of ``model``."""
    specs = {}
    for vi in model.graph.input:
        if vi.name in {i.name for i in model.graph.initializer}:
            continue
        tt = vi.type.tensor_type
        shape = None
        if tt.HasField("shape"):
            shape = tuple(
                d.dim_value
                if d.HasField("dim_value") and d.dim_value > 0
                else (d.dim_param or None)
                for d in tt.shape.dim
            )
        dtype = onnx_to_numpy_dtype(tt.elem_type) if vi.type.HasField("tensor_type") else None
        specs[vi.name] = InputSpec(dtype, shape)
    return specs


_KIND_NAMES = {"U": "text", "S": "bytes", "O": "Python object", "V": "raw record"}


def _described(value: np.ndarray) -> str:
    return f"{value.dtype}[{', '.join(map(str, value.shape))}]"


def _converted(name: str, value: np.ndarray, dtype: np.dtype, where: str) -> np.ndarray:
    """``value`` as ``dtype`` when no information is lost in the cast, else InputError."""
    if value.dtype == dtype:
        return value
    target, kind = np.dtype(dtype), value.dtype.kind
    lossless = kind in "biuf" and (target.kind == "f" or target.name == "bfloat16")
    if not lossless and kind in "biuf" and target.kind in "biu":
        cast = value.astype(target)
        lossless = bool(np.array_equal(cast.astype(value.dtype), value))
        if lossless:
            return cast
    if not lossless:
        raise InputError(
            f"input {name!r}{where}: expected {target} values, got {value.dtype} values"
            + (f" that {target} cannot hold exactly" if kind in "biuf" else "")
            + f"; convert the data to {target}"
        )
    return value.astype(target)


def check_input(name: str, value: Any, spec: InputSpec | np.dtype, where: str = "") -> np.ndarray:
    """``value`` checked against one model input (rank, static dims, dtype) and cast to it.

    Raises :class:`InputError` naming the input, what the model expects and what came.
    """
    spec = spec if isinstance(spec, InputSpec) else InputSpec(np.dtype(spec))
    if spec.dtype is None:
        return value
    at = f" of {where}" if where else ""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise InputError(
            f"input {name!r}{at}: cannot make an array of {type(value).__name__}: {e}"
        ) from e
    if arr.dtype.kind in "OUSV":
        raise InputError(
            f"input {name!r}{at}: expected {spec}, got {_KIND_NAMES.get(arr.dtype.kind, arr.dtype.name)} values; give numbers"
        )
    if spec.shape is not None:
        wrong = len(spec.shape) != arr.ndim or any(
            isinstance(d, int) and d != got for d, got in zip(spec.shape, arr.shape, strict=False)
        )
        if wrong:
            hint = " (add the batch axis: array[None])" if arr.ndim + 1 == len(spec.shape) else ""
            raise InputError(
                f"input {name!r}{at}: expected {spec} (rank {len(spec.shape)}), "
                f"got {_described(arr)} (rank {arr.ndim}){hint}"
            )
    return _converted(name, arr, spec.dtype, at)


def check_feeds(
    feeds: Mapping[str, Any], specs: Mapping[str, InputSpec | np.dtype], where: str = ""
) -> Feeds:
    """Feeds checked against the model inputs (names, rank, static dims, dtype) and cast.

    Raises :class:`InputError` for an unknown or missing input name or a mismatching value.
    """
    if not isinstance(feeds, Mapping):
        raise InputError(f"feeds must be a dict of input name → array, got {type(feeds).__name__}")
    unknown = [k for k in feeds if k not in specs]
    if unknown:
        raise InputError(
            f"model has no input {unknown[0]!r}{' on ' + where if where else ''}; "
            f"its inputs are: {', '.join(specs) or '(none)'}"
        )
    missing = [k for k in specs if k not in feeds]
    if missing:
        raise InputError(
            f"missing feed for model input {missing[0]!r}; give all of: {', '.join(specs)}"
        )
    return {name: check_input(name, feeds[name], spec, where) for name, spec in specs.items()}


def check_dataset(model: onnx.ModelProto, data: Dataset, what: str = "dataset") -> None:
    """Check every item of ``data`` against ``model``'s inputs before any work starts.

    Raises :class:`InputError` naming the item, the input, what was expected and what came.
    """
    specs = input_specs(model)
    for i, fd in enumerate(data.feeds()):
        check_feeds(fd, specs, f"{what} item {i}")


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


def _npz_problem(path: Path) -> str | None:
    """Why ``path`` is not an ``.npz`` numpy can read without pickle, judged by its first bytes."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK"):  # a zip: numpy.savez / savez_compressed
        return None
    if head.startswith(b"\x93NUMPY"):
        return "it is a single .npy array; save it with numpy.savez(path, input_name=array)"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "it is not a numpy .npz archive (a zip made by numpy.savez)"
    return "it looks like a text file; save the arrays with numpy.savez(path, input_name=array)"


def dataset_from_npz(path: str | os.PathLike[str]) -> Dataset:
    """A Dataset from an ``.npz`` whose arrays are named after the model inputs.

    The first axis indexes items: item ``i`` is ``{name: array[i:i+1]}`` (batch of one). This
    is the ``--data`` format of the CLI. Pickled (object) arrays are refused, never unpickled.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(
            f"data file not found: {str(p)!r}; give an .npz with one array per model input"
        )
    problem = _npz_problem(p)
    if problem:
        raise InputError(f"cannot read {str(p)!r} as .npz: {problem}")
    try:
        with np.load(p, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as e:
        if "pickle" not in str(e):
            raise InputError(f"cannot read {str(p)!r} as .npz: {e}") from None
        raise InputError(
            f"{str(p)!r} holds Python objects (pickled arrays), which are not loaded for safety; "
            "save plain numeric arrays with numpy.savez"
        ) from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"cannot read {str(p)!r} as .npz (damaged or truncated: {e})") from None
    if not arrays:
        raise InputError(f"{str(p)!r} holds no arrays; save one per model input with numpy.savez")
    scalars = [k for k, v in arrays.items() if v.ndim == 0]
    if scalars:
        raise InputError(
            f"array {scalars[0]!r} in {str(p)!r} is a scalar; the first axis must index items"
        )
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise InputError(f"arrays in {str(p)!r} have different first dimensions: {lengths}")
    n = next(iter(lengths.values()))
    return Dataset([{k: v[i : i + 1] for k, v in arrays.items()} for i in range(n)])
