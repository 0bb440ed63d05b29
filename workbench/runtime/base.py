"""Backend-neutral runtime types: a Device, a Runner bound to (model, device, hint), feed checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data import InputSpec, check_feeds
from ..errors import InputError
from ..results import Result
from .hints import Hint

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class RunConfig:
    """How sessions are made, passed down explicitly (never set in module globals).

    ``threads``: intra-op threads of every ORT session and OpenVINO compiled model (None = the
    backend's default), so variants are compared with the same settings. ``warn``: emit a
    :class:`~workbench.runtime.hints.PrecisionWarning` when a hint is not honoured (sweeps
    turn it off and report it per record instead). ``model_dir``: the folder that external-data
    references of the model resolve against, for a *light* proto (structure and small tensors,
    weights left in files: :func:`workbench.model.stage_model`), so the weights are read by the
    backend from disk and never held by Python as well.
    """

    threads: int | None = None
    warn: bool = True
    model_dir: str | None = None

    def reading(self, folder: str | None) -> RunConfig:
        """This configuration for a light model whose weights are in ``folder`` (itself when
        ``folder`` is None: a complete model)."""
        return self if folder is None else dataclasses.replace(self, model_dir=folder)

    def __post_init__(self) -> None:
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise InputError(f"threads must be a positive integer or None, got {self.threads!r}")


DEFAULT_CONFIG = RunConfig()


@dataclass(frozen=True)
class Device(Result):
    """One place a model can run. Simulated devices execute on the CPU."""

    name: str
    backend: str  # "ort" | "openvino" | "profile"
    simulated: bool = False
    precisions: tuple[str, ...] = ("f32",)
    provider: str | None = None  # ORT provider or OpenVINO device name
    description: str = ""
    profile: Any = None  # the DeviceProfile behind a simulated device (hardware layer)

    @property
    def label(self) -> str:
        """Name as shown in tables and renders; simulated devices say so."""
        return f"{self.name} (simulated)" if self.simulated else self.name


class Runner:
    """A model bound to one device with one hint. ``runner(feeds) -> {output: array}``.

    Backends fill ``input_specs`` (name → :class:`~workbench.data.InputSpec` or numpy dtype),
    ``output_names`` and implement :meth:`run_prepared`; :meth:`prepare` checks feeds against the
    inputs and casts them to the model's dtypes.
    """

    device: Device
    hint: Hint
    precision_requested: str = "f32"
    precision_ran: str = "f32"
    notes: tuple[str, ...] = ()
    input_specs: dict[str, InputSpec | np.dtype]
    output_names: list[str]

    def prepare(self, feeds: Mapping[str, Any]) -> Any:
        """Backend-native inputs: names checked, arrays cast to the model's input dtypes."""
        return prepare_feeds(feeds, self.input_specs, self.device.name)

    def run_prepared(self, prepared: Any) -> list[np.ndarray]:
        raise NotImplementedError

    def __call__(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        outs = self.run_prepared(self.prepare(feeds))
        return dict(zip(self.output_names, outs, strict=True))

    def close(self) -> None:
        """Release backend resources (sessions are also freed when garbage collected)."""

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} device={self.device.name} hint={self.hint.label} "
            f"requested={self.precision_requested} ran={self.precision_ran}>"
        )


def prepare_feeds(
    feeds: Mapping[str, Any], specs: Mapping[str, InputSpec | np.dtype], where: str = ""
) -> Feeds:
    """Feeds checked against the model inputs (names; rank and static dimensions where ``specs``
    are :class:`~workbench.data.InputSpec`; dtype) and cast to the input dtypes, contiguous.

    Raises :class:`~workbench.errors.InputError` naming the input, what was expected and what came.
    """
    checked = check_feeds(feeds, specs, where)
    # np.require keeps 0-d arrays 0-d (np.ascontiguousarray would make them shape (1,))
    return {
        k: np.require(v, requirements="C") if isinstance(v, np.ndarray) else v
        for k, v in checked.items()
    }
