"""Small text formatting helpers shared by tables, renders and reports."""

from __future__ import annotations


def format_bytes(n: int | None) -> str:
    """``16.0 KiB``; None (dynamic shape) says so."""
    if n is None:
        return "? bytes (dynamic shape)"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
