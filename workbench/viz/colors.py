"""One fixed colour per device, shared by the tradeoff plots and the GraphViz renders.

A device keeps its colour whatever else is in the picture and whatever the priority order:
well-known devices have a reserved colour, any other name gets one from a hash of the name.
Red is kept out: it marks warnings (precision ran ≠ requested, failures).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from ..figures import PALETTE

#: the warning colour, never given to a device
WARNING = PALETTE[3]
DEVICE_PALETTE = tuple(c for c in PALETTE if c != WARNING)

#: reserved colours of the devices most pictures show
FIXED = {
    "cpu": PALETTE[0],
    "openvino:CPU": PALETTE[1],
    "openvino:GPU": PALETTE[2],
    "openvino:NPU": PALETTE[5],
    "gpu-sim": PALETTE[4],
    "npu-sim": PALETTE[6],
    "edge-cpu-sim": PALETTE[9],
}


def preferred_color(name: str) -> str:
    """The colour ``name`` gets unless another device in the same picture already has it."""
    if name in FIXED:
        return FIXED[name]
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return DEVICE_PALETTE[int.from_bytes(digest[:4], "big") % len(DEVICE_PALETTE)]


def device_colors(names: Iterable[str]) -> dict[str, str | None]:
    """Device → colour for one picture; None once the palette is used up (draw stripes).

    Fixed colours first, then names in sorted order take their preferred colour or the next
    free one, so a device's colour never depends on the order devices are given in.
    """
    unique = list(dict.fromkeys(names))
    taken: dict[str, str] = {}
    order = sorted(unique, key=lambda n: (n not in FIXED, n))
    for name in order:
        want = preferred_color(name)
        if want in taken.values():
            start = DEVICE_PALETTE.index(want) if want in DEVICE_PALETTE else 0
            free = [
                DEVICE_PALETTE[(start + i) % len(DEVICE_PALETTE)]
                for i in range(len(DEVICE_PALETTE))
                if DEVICE_PALETTE[(start + i) % len(DEVICE_PALETTE)] not in taken.values()
            ]
            if not free:
                continue
            want = free[0]
        taken[name] = want
    return {n: taken.get(n) for n in unique}
