"""The one table of precision names: canonical spellings, aliases, ONNX/numpy types, limits.

Canonical names are ``f32``, ``f16``, ``bf16``, ``int8`` everywhere (CLI, hints, profiles,
records); ``fp16``, ``float16``, ``half``, ``bfloat16``, ``fp32``, ``i8``, … are accepted as
aliases. Float limits come from ``ml_dtypes`` (numpy's ``finfo``), never typed in by hand.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import onnx

from .errors import InputError

#: canonical precision names in display order
PRECISIONS = ("f32", "f16", "bf16", "int8")
FLOAT_PRECISIONS = ("f32", "f16", "bf16")
LOW_FLOATS = ("f16", "bf16")

ALIASES: dict[str, str] = {
    "f32": "f32", "fp32": "f32", "float32": "f32", "float": "f32", "single": "f32",
    "f16": "f16", "fp16": "f16", "float16": "f16", "half": "f16",
    "bf16": "bf16", "bfloat16": "bf16",
    "int8": "int8", "i8": "int8", "qint8": "int8", "uint8": "int8", "u8": "int8",
}  # fmt: skip

#: canonical name → ONNX element type / numpy dtype / the dtype name the float16 pass takes
ONNX_TYPES = {
    "f32": onnx.TensorProto.FLOAT,
    "f16": onnx.TensorProto.FLOAT16,
    "bf16": onnx.TensorProto.BFLOAT16,
    "int8": onnx.TensorProto.INT8,
}
NUMPY_TYPES: dict[str, np.dtype] = {
    "f32": np.dtype(np.float32),
    "f16": np.dtype(np.float16),
    "bf16": np.dtype(ml_dtypes.bfloat16),
    "int8": np.dtype(np.int8),
}
DTYPE_NAMES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "int8": "int8"}


def canonical(value: str, allowed: Iterable[str] = PRECISIONS, what: str = "precision") -> str:
    """``'FP16'`` → ``'f16'``; an unknown or disallowed name raises InputError listing the choices."""
    choices = tuple(allowed)
    key = str(value).strip().lower()
    name = ALIASES.get(key)
    if name is None or name not in choices:
        raise InputError(
            f"unknown {what} {value!r}; use one of {', '.join(choices)} "
            "(aliases such as fp16, float16, bfloat16 are accepted)"
        )
    return name


@dataclass(frozen=True)
class FloatLimits:
    """Range of a float type: largest finite, smallest normal, smallest subnormal, epsilon."""

    max: float
    tiny: float  # smallest normal: below it relative precision degrades (subnormals)
    smallest_subnormal: float
    eps: float  # relative rounding step of normal values (machine epsilon)


@functools.cache
def limits(precision: str) -> FloatLimits:
    """Limits of ``f32``/``f16``/``bf16`` from ``ml_dtypes.finfo``."""
    info = ml_dtypes.finfo(NUMPY_TYPES[canonical(precision, FLOAT_PRECISIONS)])
    return FloatLimits(
        max=float(info.max),
        tiny=float(info.tiny),
        smallest_subnormal=float(info.smallest_subnormal),
        eps=float(info.eps),
    )
