"""Devices: real backends found on this machine, plus simulated device profiles.

A :class:`Device` names a backend (``ort``, ``openvino`` or ``profile``) and says whether it is
simulated. Device strings: ``"cpu"`` (ORT CPU provider), ``"ort:<Provider>"``,
``"openvino:<DEVICE>"`` and the names of device profiles.

A :class:`DeviceProfile` declares a device we don't have (which ops it runs, in which precision,
how fast relative to this CPU). Profiles ship as TOML files in ``hardware/profiles/``; they are
executed on the ONNX Runtime CPU provider after converting the model to the profile's precision
and are labelled *simulated* everywhere.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from ..data import random_dataset
from ..errors import InputError
from ..precision.float16 import convert_float16
from ..precision.int8 import quantize_int8
from ..results import Result, html_table
from ..runtime import DEFAULT_CONFIG, Device, RunConfig, Runner, canonical_device_name, real_devices
from ..runtime.hints import Hint, resolve_hint, warn_if_not_honoured
from ..runtime.ort import open_ort

PROFILES_DIR = Path(__file__).parent / "profiles"
PROFILE_PRECISIONS = ("f32", "f16", "bf16", "int8")
_PRECISION_ALIASES = {"fp32": "f32", "float32": "f32", "fp16": "f16", "float16": "f16",
                      "bfloat16": "bf16", "i8": "int8", "qint8": "int8"}  # fmt: skip


@dataclass(frozen=True)
class DeviceProfile(Result):
    """A simulated device: which ops it runs, in which precision, how fast relative to this CPU.

    ``ops=None`` means every op with a CPU kernel; ``exclude`` lists op types or node names it
    refuses; ``speed`` scales measured CPU time in per-subgraph profiles (2.0 = twice as fast);
    ``static_shapes`` makes nodes with dynamic input shapes unsupported (as on many NPUs).
    """

    name: str
    ops: tuple[str, ...] | None = None
    precision: str = "f32"
    exclude: tuple[str, ...] = ()
    speed: float = 1.0
    description: str = ""
    static_shapes: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError(f"device profile needs a non-empty name, got {self.name!r}")
        p = str(self.precision).strip().lower()
        p = _PRECISION_ALIASES.get(p, p)
        if p not in PROFILE_PRECISIONS:
            raise InputError(
                f"device profile {self.name!r}: unknown precision {self.precision!r}; "
                f"use one of {', '.join(PROFILE_PRECISIONS)}"
            )
        object.__setattr__(self, "precision", p)
        if self.ops is not None:
            if isinstance(self.ops, str):
                raise InputError(f"device profile {self.name!r}: ops must be a list of op types")
            object.__setattr__(self, "ops", tuple(str(o) for o in self.ops))
        if isinstance(self.exclude, str):
            raise InputError(f"device profile {self.name!r}: exclude must be a list")
        object.__setattr__(self, "exclude", tuple(str(o) for o in self.exclude))
        try:
            speed = float(self.speed)
        except (TypeError, ValueError):
            speed = float("nan")
        if not speed > 0 or speed == float("inf"):
            raise InputError(
                f"device profile {self.name!r}: speed must be a positive number, got {self.speed!r}"
            )
        object.__setattr__(self, "speed", speed)

    def as_device(self) -> Device:
        """The simulated :class:`Device` for this profile (backend ``profile``)."""
        ops = "all ops" if self.ops is None else f"{len(self.ops)} op types"
        about = self.description or f"simulated {self.precision} device"
        return Device(
            name=self.name,
            backend="profile",
            simulated=True,
            precisions=(self.precision,),
            provider=None,
            description=f"{about} ({ops}, speed ×{self.speed:g}; executed on the ORT CPU)",
            profile=self,
        )

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> DeviceProfile:
        """Load a profile from a TOML file (keys: the dataclass fields)."""
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib

        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"device profile file not found: {str(path)!r}") from None
        except tomllib.TOMLDecodeError as e:
            raise InputError(f"device profile {str(path)!r} is not valid TOML: {e}") from e
        known = {"name", "ops", "precision", "exclude", "speed", "description", "static_shapes"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f"device profile {str(path)!r}: unknown key(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        if "name" not in data:
            raise InputError(f"device profile {str(path)!r} has no 'name'")
        return cls(**data)


@functools.cache
def shipped_profiles() -> tuple[DeviceProfile, ...]:
    """The profiles shipped in ``hardware/profiles/*.toml``, sorted by file name."""
    return tuple(DeviceProfile.from_toml(p) for p in sorted(PROFILES_DIR.glob("*.toml")))


def _profile_devices() -> list[Device]:
    return [p.as_device() for p in shipped_profiles()]


def devices() -> list[Device]:
    """Every device usable here: ORT providers, OpenVINO devices, then simulated profiles."""
    return real_devices() + _profile_devices()


def devices_table(devs: list[Device] | None = None) -> str:
    """HTML table of devices (simulated ones marked)."""
    rows = [
        {
            "device": d.label,
            "backend": d.backend,
            "precisions": ", ".join(d.precisions),
            "about": d.description,
        }
        for d in (devs if devs is not None else devices())
    ]
    return html_table(rows, title="Devices")


def resolve_device(device: Any) -> Device:
    """A Device from a name (``"cpu"``, ``"ort:X"``, ``"openvino:CPU"``, a profile name) or object."""
    if isinstance(device, Device):
        return device
    as_device = getattr(device, "as_device", None)
    if callable(as_device):  # DeviceProfile
        return as_device()
    if not isinstance(device, str):
        raise InputError(f"device must be a name or Device, got {type(device).__name__}")
    key = canonical_device_name(device)
    lower = key.lower()
    found = devices()
    for d in found:
        if d.name == key or d.name.lower() == lower:
            return d
    raise InputError(
        f"unknown device {device!r}; available: {', '.join(d.name for d in found)}"
        + ("" if lower.startswith("openvino") is False else " (is the openvino extra installed?)")
    )


# --------------------------------------------------------------------------- simulated execution


def profile_of(device: Device) -> DeviceProfile:
    """The :class:`DeviceProfile` behind a simulated device (shipped profiles found by name)."""
    if device.profile is not None:
        return device.profile
    for p in shipped_profiles():
        if p.name == device.name:
            return p
    raise InputError(f"device {device.name!r} is not a device profile")


def convert_for_profile(
    model: onnx.ModelProto, profile: DeviceProfile, precision: str, calibration: Any = None
) -> tuple[onnx.ModelProto, tuple[str, ...]]:
    """``model`` converted to ``precision`` for ``profile``, plus notes on how it was done."""
    if precision == "f32":
        return model, ()
    if precision in ("f16", "bf16"):
        dtype = "float16" if precision == "f16" else "bfloat16"
        return convert_float16(model, dtype=dtype, keep_io_types=True), ()
    notes: tuple[str, ...] = ()
    if calibration is None:
        calibration = random_dataset(model, n=4, seed=0)
        notes = ("int8 calibrated on random inputs (pass calibration data for real ranges)",)
    return quantize_int8(model, calibration), notes


def open_profile(
    model: onnx.ModelProto,
    device: Device,
    hint: Hint,
    calibration: Any = None,
    config: RunConfig = DEFAULT_CONFIG,
) -> Runner:
    """Runner for a simulated device: the model in the profile's precision on the ORT CPU.

    Hints follow OpenVINO's semantics (:func:`workbench.runtime.hints.resolve_hint`): accuracy
    runs f16/bf16 profiles in f32; an explicit precision other than the profile's is not
    honoured. ``precision_ran`` is what the converted model computes in on the CPU (a node
    without a low-precision CPU kernel counts as f32), never the profile's claim. int8
    profiles calibrate on ``calibration`` (a Dataset of feeds) or, without it, random inputs.
    """
    profile = profile_of(device)
    plan = resolve_hint(hint, (profile.precision,), device.name)
    precision = profile.precision
    if plan.inference_precision == "f32" and precision in ("f16", "bf16"):
        precision = "f32"  # accuracy mode never lowers precision
    converted, notes = convert_for_profile(model, profile, precision, calibration)
    # the ORT runner gets no precision request: the conversion above is the request
    runner = open_ort(
        converted,
        device,
        Hint(hint.execution_mode if precision != "int8" else "performance"),
        config,
    )
    runner.hint = hint
    runner.precision_requested = plan.precision_requested
    extra = [f"simulated {profile.name!r} ({profile.precision}): executed on the ORT CPU"]
    extra += list(notes) + list(plan.notes)
    if precision != "f32" and runner.precision_ran != precision:
        extra.append(
            f"converted to {precision}, but the ORT CPU ran {runner.precision_ran} "
            "(no low-precision CPU kernel for some ops)"
        )
    runner.notes = tuple(extra) + tuple(runner.notes)
    if config.warn:
        warn_if_not_honoured(
            device.name, runner.precision_requested, runner.precision_ran, tuple(plan.notes)
        )
    return runner
