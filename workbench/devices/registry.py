"""Devices: real backends found on this machine, plus simulated device profiles.

A :class:`Device` names a backend (``ort``, ``openvino`` or ``profile``) and says whether it is
simulated. Device strings: ``"cpu"`` (ORT CPU provider), ``"ort:<Provider>"``,
``"openvino:<DEVICE>"`` and the names of device profiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..results import Result, html_table


@dataclass(frozen=True)
class Device(Result):
    """One place a model can run. Simulated devices execute on the CPU."""

    name: str
    backend: str  # "ort" | "openvino" | "profile"
    simulated: bool = False
    precisions: tuple[str, ...] = ("f32",)
    provider: str | None = None  # ORT provider or OpenVINO device name
    description: str = ""

    @property
    def label(self) -> str:
        """Name as shown in tables and renders; simulated devices say so."""
        return f"{self.name} (simulated)" if self.simulated else self.name


def _ort_devices() -> list[Device]:
    import onnxruntime as ort

    from ..runtime import kernels
    from ..runtime.ort import ort_precisions

    out = []
    for provider in ort.get_available_providers():
        if provider == "AzureExecutionProvider":  # remote endpoint invoker, not a device
            continue
        name = "cpu" if provider == kernels.CPU else f"ort:{provider}"
        out.append(
            Device(
                name=name,
                backend="ort",
                precisions=ort_precisions(provider),
                provider=provider,
                description=f"ONNX Runtime {ort.__version__} {provider}",
            )
        )
    return out


def _openvino_devices() -> list[Device]:
    try:
        from ..runtime.openvino import list_devices
    except ImportError:
        return []
    return list_devices()


def _profile_devices() -> list[Device]:
    return []


def devices() -> list[Device]:
    """Every device usable here: ORT providers, OpenVINO devices, simulated profiles."""
    return _ort_devices() + _openvino_devices() + _profile_devices()


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
    key = device.strip()
    lower = key.lower()
    if lower in ("cpu", "ort", "ort:cpu", "ort:cpuexecutionprovider"):
        key = "cpu"
    found = devices()
    for d in found:
        if d.name == key or d.name.lower() == lower:
            return d
    raise InputError(
        f"unknown device {device!r}; available: {', '.join(d.name for d in found)}"
        + ("" if lower.startswith("openvino") is False else " (is the openvino extra installed?)")
    )
