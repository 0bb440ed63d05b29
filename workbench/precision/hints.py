"""Execution hints: execution mode and inference precision, with OpenVINO's semantics.

ACCURACY never lowers precision; PERFORMANCE lets a device use its fastest supported
precision; an explicit ``inference_precision`` is honoured only where the device supports it.
Resolution per device lives with each runtime backend, which reports what actually ran.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..results import Result

EXECUTION_MODES = ("performance", "accuracy")
PRECISIONS = ("f32", "f16", "bf16")
_ALIASES = {
    "fp32": "f32",
    "float32": "f32",
    "float": "f32",
    "fp16": "f16",
    "float16": "f16",
    "half": "f16",
    "bfloat16": "bf16",
}


def normalize_precision(value: str | None) -> str | None:
    """'FP16', 'float16', 'f16' → 'f16'; None stays None. Raises InputError for unknown names."""
    if value is None:
        return None
    v = str(value).strip().lower()
    v = _ALIASES.get(v, v)
    if v not in PRECISIONS:
        raise InputError(
            f"unknown inference precision {value!r}; use one of {', '.join(PRECISIONS)} or None"
        )
    return v


@dataclass(frozen=True)
class Hint(Result):
    """What the user asks of a device: ``Hint("performance", "f16")``."""

    execution_mode: str = "performance"
    inference_precision: str | None = None

    def __post_init__(self) -> None:
        mode = str(self.execution_mode).strip().lower()
        if mode not in EXECUTION_MODES:
            raise InputError(
                f"unknown execution mode {self.execution_mode!r}; use 'performance' or 'accuracy'"
            )
        object.__setattr__(self, "execution_mode", mode)
        object.__setattr__(
            self, "inference_precision", normalize_precision(self.inference_precision)
        )

    @property
    def label(self) -> str:
        """Short label for tables and plot legends, e.g. ``performance/f16``."""
        return self.execution_mode + (
            f"/{self.inference_precision}" if self.inference_precision else ""
        )

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, text: str | Hint | None) -> Hint:
        """``"performance"``, ``"accuracy"``, ``"performance/f16"``, ``"f16"`` → Hint."""
        if text is None:
            return cls()
        if isinstance(text, Hint):
            return text
        parts = [p for p in str(text).replace(":", "/").split("/") if p]
        if len(parts) == 1 and parts[0].lower() not in EXECUTION_MODES:
            return cls("performance", parts[0])
        if not parts or len(parts) > 2:
            raise InputError(
                f"cannot parse hint {text!r}; write e.g. 'performance/f16' or 'accuracy'"
            )
        return cls(parts[0], parts[1] if len(parts) == 2 else None)


def as_hint(hint: Hint | str | None) -> Hint:
    """Accept a Hint, a string like ``'performance/f16'`` or None (default performance hint)."""
    return Hint.parse(hint)
