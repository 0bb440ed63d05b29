"""Execution hints: execution mode, inference precision and performance mode (OpenVINO semantics).

ACCURACY never lowers precision; PERFORMANCE lets a device use its fastest supported
precision; an explicit ``inference_precision`` is honoured only where the device supports it.
Resolution per device lives with each runtime backend, which reports what actually ran.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..results import Result

EXECUTION_MODES = ("performance", "accuracy")
#: OpenVINO's PERFORMANCE_HINT: one request at a time, or many streams for items per second
PERFORMANCE_MODES = ("latency", "throughput")
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
    """What the user asks of a device: ``Hint("performance", "f16", "throughput")``.

    ``performance_mode`` (None = latency, the default) selects OpenVINO's LATENCY or THROUGHPUT
    performance hint; backends without one (ONNX Runtime) run the same settings either way.
    """

    execution_mode: str = "performance"
    inference_precision: str | None = None
    performance_mode: str | None = None

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
        if self.performance_mode is not None:
            perf = str(self.performance_mode).strip().lower()
            if perf not in PERFORMANCE_MODES:
                raise InputError(
                    f"unknown performance mode {self.performance_mode!r}; "
                    "use 'latency', 'throughput' or None"
                )
            object.__setattr__(self, "performance_mode", perf)

    @property
    def label(self) -> str:
        """Short label for tables and plot legends, e.g. ``performance/f16/throughput``."""
        return "/".join(
            p for p in (self.execution_mode, self.inference_precision, self.performance_mode) if p
        )

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, text: str | Hint | None) -> Hint:
        """``"performance"``, ``"accuracy"``, ``"performance/f16"``, ``"f16"``, ``"throughput"``,
        ``"performance/bf16/throughput"`` → Hint (parts in any order, each at most once)."""
        if text is None:
            return cls()
        if isinstance(text, Hint):
            return text
        parts = [p.strip() for p in str(text).replace(":", "/").split("/") if p.strip()]
        found: dict[str, str] = {}
        for p in parts:
            low = p.lower()
            slot = (
                "execution_mode"
                if low in EXECUTION_MODES
                else "performance_mode"
                if low in PERFORMANCE_MODES
                else "inference_precision"
            )
            if slot in found:
                raise InputError(
                    f"cannot parse hint {text!r}: two values for {slot.replace('_', ' ')}; "
                    "write e.g. 'performance/f16/throughput'"
                )
            found[slot] = p
        if not found:
            raise InputError(
                f"cannot parse hint {text!r}; write e.g. 'performance/f16' or 'accuracy'"
            )
        return cls(**found)


def as_hint(hint: Hint | str | None) -> Hint:
    """Accept a Hint, a string like ``'performance/f16'`` or None (default performance hint)."""
    return Hint.parse(hint)


# ----------------------------------------------------------------------------- resolution


class PrecisionWarning(UserWarning):
    """A run computes in another precision than its hint asked for (shown in notebooks)."""


def warn_if_not_honoured(device: str, requested: str, ran: str, notes: tuple[str, ...]) -> None:
    """Warn (PrecisionWarning) when ``ran`` differs from an explicit ``requested`` precision."""
    if requested in ("default", ran):
        return
    import warnings

    head = f"requested {requested}, ran {ran}"
    why = [n.removeprefix(head).strip(" :;") for n in notes]
    why = [w[1:-1] if w.startswith("(") and w.endswith(")") else w for w in why if w]
    text = f"{device}: {head}" + (f" ({'; '.join(why)})" if why else "")
    warnings.warn(text, PrecisionWarning, stacklevel=4)


#: canonical order of precisions in tables (device capabilities, summaries)
PRECISION_ORDER = ("f32", "f16", "bf16", "int8")


def sort_precisions(values: set[str] | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Precisions in canonical order (f32, f16, bf16, int8, then anything else by name)."""
    known = [p for p in PRECISION_ORDER if p in values]
    return tuple(known + sorted(set(values) - set(PRECISION_ORDER)))


def requested_precision(hint: Hint) -> str:
    """What a hint asks for: its explicit precision, ``f32`` for accuracy, else ``default``."""
    if hint.execution_mode == "accuracy":
        return "f32"
    return hint.inference_precision or "default"


def summarize_precisions(counts: dict[str, int]) -> str:
    """One label for the precisions compute nodes ran in: ``f32``, ``int8``, ``f16+f32`` ...

    int8 wins when any compute node is quantized (the rest is glue); otherwise the precisions
    are joined by frequency (ties by canonical order) so a partial fallback is visible.
    """
    counts = {k: v for k, v in counts.items() if v > 0}
    if not counts:
        return "f32"
    if counts.get("int8"):
        return "int8"
    rank = {p: i for i, p in enumerate(PRECISION_ORDER)}
    order = sorted(counts, key=lambda p: (-counts[p], rank.get(p, len(rank)), p))
    return "+".join(order)


@dataclass(frozen=True)
class HintPlan(Result):
    """A hint resolved for one device: what to ask the backend for, and why.

    ``inference_precision`` is what the backend is asked to compute in (None: the device's own
    default); ``honoured`` is False when the device cannot do the explicit request, and
    ``notes`` say what happens instead.
    """

    device: str
    hint: str
    precision_requested: str
    inference_precision: str | None
    dynamic_quantization: bool
    honoured: bool = True
    notes: tuple[str, ...] = ()


def resolve_hint(hint: Hint | str | None, supported: tuple[str, ...], device: str = "") -> HintPlan:
    """Resolve ``hint`` for a device supporting ``supported`` precisions (OpenVINO semantics).

    * accuracy: always f32 and no dynamic quantization; an explicit lower precision is not
      honoured (accuracy never lowers precision);
    * performance without a precision: the device's fastest default, dynamic quantization on;
    * performance with a precision: asked for as is; marked not honoured (with the reason) when
      the device does not list it, so the backend's fallback is reported, never hidden.
    """
    h = as_hint(hint)
    where = device or "the device"
    notes: list[str] = []
    if h.execution_mode == "accuracy":
        honoured = h.inference_precision in (None, "f32")
        if not honoured:
            notes.append(
                f"accuracy mode never lowers precision: {h.inference_precision} ignored, "
                f"{where} computes in f32"
            )
        return HintPlan(where, h.label, "f32", "f32", False, honoured, tuple(notes))
    if h.inference_precision is None:
        return HintPlan(where, h.label, "default", None, True, True, ())
    honoured = h.inference_precision in supported
    if not honoured:
        notes.append(
            f"{where} does not support {h.inference_precision} "
            f"(supports {', '.join(supported) or 'nothing listed'}): not honoured"
        )
    return HintPlan(
        where, h.label, h.inference_precision, h.inference_precision, True, honoured, tuple(notes)
    )
