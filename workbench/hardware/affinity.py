"""Which device runs each node: ``affinity(model, devices, mode, manual) -> Affinity``.

* ``auto``: devices in priority order; each node goes to the first device that supports it.
* ``manual``: every node from ``manual`` (node name → device); Constant nodes may be left out.
* ``combined``: manual where given, auto elsewhere.

Every manual choice is checked against :func:`~workbench.hardware.capability.query_model`; errors
name the node, its op and the device.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import onnx

from ..errors import InputError, UnsupportedError
from ..model import ensure_node_names, load_model
from ..results import Result, html_table
from .capability import CapabilityReport, query_model
from .registry import Device, resolve_device

MODES = ("auto", "manual", "combined")


@dataclass(frozen=True)
class Affinity(Result):
    """Node name → device name, with the reason for every placement."""

    model: str
    mode: str
    devices: tuple[Device, ...]  # priority order
    assignments: dict[str, str]
    ops: dict[str, str]
    reasons: dict[str, str]

    _summary_exclude = ("assignments", "ops", "reasons", "devices")

    @property
    def device_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.devices)

    def device(self, name: str) -> Device:
        """The :class:`Device` called ``name`` among this affinity's devices."""
        for d in self.devices:
            if d.name == name:
                return d
        raise KeyError(f"{name!r} is not one of the affinity's devices {self.device_names}")

    def counts(self) -> dict[str, int]:
        """Device name → number of nodes assigned to it (every device listed, in priority order)."""
        c = collections.Counter(self.assignments.values())
        return {d.name: c.get(d.name, 0) for d in self.devices}

    def summary_rows(self) -> list[dict[str, Any]]:
        rows = []
        for d in self.devices:
            nodes = [n for n, dev in self.assignments.items() if dev == d.name]
            ops = collections.Counter(self.ops[n] for n in nodes)
            rows.append(
                {
                    "device": d.label,
                    "nodes": len(nodes),
                    "ops": ", ".join(f"{o}×{k}" for o, k in sorted(ops.items())),
                }
            )
        return rows

    def _repr_html_(self) -> str:
        return html_table(
            self.summary_rows(),
            title=f"Affinity of {self.model} ({self.mode}, {len(self.assignments)} nodes)",
        )


def parse_devices(devices: Any) -> list[Device]:
    """Devices from ``"npu-sim,cpu"``, a list of names / Devices / DeviceProfiles, or one device."""
    if isinstance(devices, str):
        items: list[Any] = [d for d in (p.strip() for p in devices.split(",")) if d]
    elif isinstance(devices, (list, tuple)):
        items = list(devices)
    else:
        items = [devices]
    if not items:
        raise InputError("give at least one device, e.g. devices=['npu-sim', 'cpu']")
    devs = [resolve_device(d) for d in items]
    seen: set[str] = set()
    for d in devs:
        if d.name in seen:
            raise InputError(f"device {d.name!r} is listed twice; device names must be unique")
        seen.add(d.name)
    return devs


def _manual_names(manual: Mapping[str, Any], devs: list[Device], nodes: dict[str, str]) -> dict:
    names = {d.name for d in devs}
    out: dict[str, str] = {}
    for node, dev in manual.items():
        if node not in nodes:
            sample = ", ".join(list(nodes)[:5])
            raise InputError(
                f"manual affinity names node {node!r}, which is not in the model; "
                f"nodes are named like: {sample} (see workbench.model.ensure_node_names)"
            )
        name = dev if isinstance(dev, str) else resolve_device(dev).name
        if name not in names:
            raise InputError(
                f"manual affinity puts node {node!r} ({nodes[node]}) on device {name!r}, which is "
                f"not among the devices {', '.join(d.name for d in devs)}; add it to devices"
            )
        out[node] = name
    return out


def affinity(
    model: onnx.ModelProto | str | os.PathLike[str],
    devices: Any,
    mode: str = "auto",
    manual: Mapping[str, Any] | None = None,
) -> Affinity:
    """Assign every top-level node to one of ``devices`` (priority order).

    Raises :class:`~workbench.errors.InputError` for manual entries naming unknown nodes or
    devices, or (manual mode) nodes left out; :class:`~workbench.errors.UnsupportedError` when a
    node is put on, or can only go to, a device that cannot run it.
    """
    if mode not in MODES:
        raise InputError(f"unknown affinity mode {mode!r}; use one of {', '.join(MODES)}")
    if mode in ("manual", "combined") and manual is None:
        raise InputError(f"mode={mode!r} needs manual={{node name: device}}")
    if mode == "auto" and manual:
        raise InputError("manual assignments given with mode='auto'; use mode='combined'")
    m = ensure_node_names(model if isinstance(model, onnx.ModelProto) else load_model(model))
    devs = parse_devices(devices)
    reports: dict[str, CapabilityReport] = {d.name: query_model(m, d) for d in devs}
    ops = {n.name: n.op_type for n in m.graph.node}
    chosen = _manual_names(manual or {}, devs, ops)
    assignments: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for node in m.graph.node:
        name, op = node.name, node.op_type
        if name in chosen:
            dev = chosen[name]
            verdict = reports[dev][name]
            if not verdict.supported:
                raise UnsupportedError(
                    f"node {name!r} ({op}) cannot run on device {dev!r}: {verdict.reason}; "
                    "choose another device for it"
                )
            assignments[name], reasons[name] = dev, "manual"
            continue
        if mode == "manual" and op != "Constant":
            raise InputError(
                f"manual affinity has no device for node {name!r} ({op}); add it to manual "
                "or use mode='combined' to place the rest automatically"
            )
        for d in devs:
            verdict = reports[d.name][name]
            if verdict.supported:
                assignments[name] = d.name
                skipped = [
                    f"{e.name}: {reports[e.name][name].reason}" for e in devs[: devs.index(d)]
                ]
                reasons[name] = "first supporting device" + (
                    f" (not {'; '.join(skipped)})" if skipped else ""
                )
                break
        else:
            why = "; ".join(f"{d.name}: {reports[d.name][name].reason}" for d in devs)
            todo = (
                "add 'cpu' as a fallback device"
                if "cpu" not in reports
                else "change the node's types or op, or add a device that supports it"
            )
            raise UnsupportedError(f"no device can run node {name!r} ({op}): {why} — {todo}")
    return Affinity(
        model=m.graph.name or "model",
        mode=mode,
        devices=tuple(devs),
        assignments=assignments,
        ops=ops,
        reasons=reasons,
    )
