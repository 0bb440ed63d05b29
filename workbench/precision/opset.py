"""Opset upgrades a pass needs (per-channel DequantizeLinear, Cast to bfloat16 need opset 13).

Upgrades go through ``onnx.version_converter``; the caller's model is never changed and the
result says what happened, so a pass can report it or fall back.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
from onnx import version_converter


def default_opset(model: onnx.ModelProto) -> int:
    """Version of the default (``ai.onnx``) opset; 0 when the model does not import it."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def upgrade_opset(
    model: onnx.ModelProto,
    target: int,
    why: str,
    check: Callable[[onnx.ModelProto], str | None] | None = None,
) -> tuple[onnx.ModelProto | None, str]:
    """``model`` converted to opset ``target`` (a new proto), or None, and a note saying so.

    ``why`` says which feature needs ``target``; ``check`` returns why a converted model is
    unusable (e.g. ONNX Runtime refuses it), or None.
    """
    old = default_opset(model)
    try:
        up = version_converter.convert_version(model, target)
        problem = check(up) if check is not None else None
    except Exception as e:  # the converter lacks adapters for some ops
        problem = f"{type(e).__name__}: {str(e)[:200]}"
    if problem is None:
        return up, f"opset {old} upgraded to {target} with onnx.version_converter ({why})"
    return None, f"opset {old} cannot be upgraded to {target} ({why}): {problem}"
