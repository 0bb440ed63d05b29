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

import dataclasses
import functools
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..data import input_specs, random_dataset
from ..errors import InputError, NothingQuantizedError
from ..model import ensure_node_names
from ..precision._instrument import rounding_probe
from ..precision.int8 import quantize_int8
from ..precisions import canonical
from ..results import Result, html_table
from ..runtime import DEFAULT_CONFIG, Device, RunConfig, Runner, canonical_device_name, real_devices
from ..runtime.hints import Hint, resolve_hint, warn_if_not_honoured
from ..runtime.ort import open_ort
from ..tensor_types import tensor_types

PROFILES_DIR = Path(__file__).parent / "profiles"
PROFILE_PRECISIONS = ("f32", "f16", "bf16", "int8")


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
    #: roofline numbers for estimated latency: peak operations/s per precision (as
    #: ``(("f32", 1e12), ("f16", 2e12))``; TOML: a ``[peak_ops]`` table), memory bandwidth in
    #: bytes/s, per-node launch overhead, and the link to the host for partitioned runs
    peak_ops: tuple[tuple[str, float], ...] = ()
    memory_bandwidth: float = 50e9
    node_overhead_us: float = 5.0
    link_bandwidth: float = 10e9
    transfer_latency_us: float = 20.0
    #: on-chip memory (bytes): weights that fit stay resident and cost no memory traffic
    cache_bytes: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError(f"device profile needs a non-empty name, got {self.name!r}")
        try:
            p = canonical(str(self.precision), PROFILE_PRECISIONS)
        except InputError as e:
            raise InputError(f"device profile {self.name!r}: {e}") from None
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
        object.__setattr__(self, "peak_ops", self._check_peaks(self.peak_ops))
        for key in ("memory_bandwidth", "node_overhead_us", "link_bandwidth",
                    "transfer_latency_us", "cache_bytes"):  # fmt: skip
            value = getattr(self, key)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (0 <= value < float("inf"))
            ):
                raise InputError(
                    f"device profile {self.name!r}: {key} must be a non-negative number, "
                    f"got {value!r}"
                )
            object.__setattr__(self, key, float(value))
        if self.memory_bandwidth <= 0 or self.link_bandwidth <= 0:
            raise InputError(f"device profile {self.name!r}: bandwidths must be positive")

    def _check_peaks(self, peaks: Any) -> tuple[tuple[str, float], ...]:
        items = peaks.items() if isinstance(peaks, dict) else peaks
        out = []
        for item in items:
            try:
                precision, value = item
                value = float(value)
            except (TypeError, ValueError):
                raise InputError(
                    f"device profile {self.name!r}: peak_ops must map a precision to ops/s, "
                    f"got {item!r}"
                ) from None
            p = canonical(str(precision), PROFILE_PRECISIONS, "peak_ops precision")
            if not value > 0 or value == float("inf"):
                raise InputError(
                    f"device profile {self.name!r}: peak_ops[{p}] must be positive, got {value!r}"
                )
            out.append((p, value))
        return tuple(sorted(out))

    def peak(self, precision: str) -> float:
        """Peak operations/s in ``precision`` (the f32 peak, else 1 TOPS, when undeclared)."""
        table = dict(self.peak_ops)
        return table.get(precision) or table.get("f32") or 1e12

    def accepts(self, op_type: str, node: str = "") -> bool:
        """Does the profile's declaration (op list, exclusions) take this op/node?"""
        if node in self.exclude or op_type in self.exclude:
            return False
        return self.ops is None or op_type in self.ops

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
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"device profile file not found: {str(path)!r}") from None
        except tomllib.TOMLDecodeError as e:
            raise InputError(f"device profile {str(path)!r} is not valid TOML: {e}") from e
        known = {f.name for f in dataclasses.fields(cls)}
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


def supported_nodes(model: onnx.ModelProto, profile: DeviceProfile) -> list[str]:
    """Main-graph nodes ``profile`` declares it runs (names as in ``ensure_node_names``)."""
    return [n.name for n in model.graph.node if profile.accepts(n.op_type, n.name)]


class EmulatedRunner(Runner):
    """The f32 model on the ORT CPU with every supported node's float inputs and outputs
    rounded through f16/bf16 (the mixed-precision rounding probe with every switch on): the
    numerics of a device computing those nodes in low precision, whatever kernels this CPU has.
    """

    def __init__(self, model: onnx.ModelProto, device: Device, dtype: str, nodes: list[str]):
        self.device = device
        self._run = rounding_probe(model, nodes, dtype)
        self._mask = np.ones(len(nodes), dtype=bool)
        self.input_specs = input_specs(model)
        self.output_names = [o.name for o in model.graph.output]

    def run_prepared(self, prepared: dict[str, np.ndarray]) -> list[np.ndarray]:
        outs = self._run(self._mask, prepared)
        return [outs[n] for n in self.output_names]


def convert_for_profile(
    model: onnx.ModelProto, profile: DeviceProfile, precision: str, calibration: Any = None
) -> tuple[onnx.ModelProto, tuple[str, ...]]:
    """``model`` in ``precision`` for ``profile`` (int8: quantized with ``calibration``,
    nodes the profile does not take left in float), plus notes on how it was done."""
    if precision in ("f32", "f16", "bf16"):  # float profiles are emulated, not converted
        return model, ()
    notes: tuple[str, ...] = ()
    if calibration is None:
        calibration = random_dataset(model, n=4, seed=0)
        notes = ("int8 calibrated on random inputs (pass calibration data for real ranges)",)
    named = ensure_node_names(model)
    keep = tuple(n.name for n in named.graph.node if not profile.accepts(n.op_type, n.name))
    try:
        return quantize_int8(named, calibration, exclude_nodes=keep), notes
    except NothingQuantizedError:  # e.g. a subgraph of Mul/Softmax only: it stays float
        ops = ", ".join(sorted({n.op_type for n in named.graph.node}))
        return model, (*notes, f"nothing here quantizes to int8 ({ops}): runs in float")


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
    runner, extra = _profile_runner(model, device, profile, precision, hint, calibration, config)
    runner.hint = hint
    runner.precision_requested = plan.precision_requested
    extra += list(plan.notes)
    if precision == "int8" and runner.precision_ran != precision:
        extra.append(
            f"quantized to int8, but the ORT CPU ran {runner.precision_ran} "
            "(nodes the profile does not take stay in float)"
        )
    runner.notes = tuple(extra) + tuple(runner.notes)
    if config.warn:
        warn_if_not_honoured(
            device.name, runner.precision_requested, runner.precision_ran, tuple(plan.notes)
        )
    return runner


def _profile_runner(
    model: onnx.ModelProto,
    device: Device,
    profile: DeviceProfile,
    precision: str,
    hint: Hint,
    calibration: Any,
    config: RunConfig,
) -> tuple[Runner, list[str]]:
    """The runner emulating ``profile``'s numerics in ``precision`` and notes saying how."""
    head = f"simulated {profile.name!r} ({profile.precision}): executed on the ORT CPU"
    if precision in ("f16", "bf16"):
        named = ensure_node_names(model)
        nodes = [n for n in supported_nodes(named, profile) if n not in _no_float_io(named)]
        dtype = "float16" if precision == "f16" else "bfloat16"
        runner: Runner = EmulatedRunner(named, device, dtype, nodes)
        runner.precision_ran = precision if nodes else "f32"
        total = len(named.graph.node)
        note = f"{precision} numerics emulated: {len(nodes)} of {total} nodes rounded through {precision}"
        return runner, [head, note]
    converted, notes = convert_for_profile(model, profile, precision, calibration)
    # the ORT runner gets no precision request: the conversion above is the request
    ort_hint = Hint(hint.execution_mode if precision != "int8" else "performance")
    return open_ort(converted, device, ort_hint, config), [head, *notes]


def _no_float_io(model: onnx.ModelProto) -> set[str]:
    """Nodes with no float32 input or output (nothing to round)."""
    typed = tensor_types(model)
    out = set()
    for n in model.graph.node:
        names = [t for t in (*n.input, *n.output) if t]
        if not any(typed.get(t) == onnx.TensorProto.FLOAT for t in names):
            out.add(n.name)
    return out
