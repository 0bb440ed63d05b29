"""ONNX Runtime's own kernel registry: which (op, opset, input, type) combinations have a kernel.

Passes and capability checks ask here instead of keeping hand-written op lists, so the answers
follow the installed onnxruntime build.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import onnx

CPU = "CPUExecutionProvider"
_DEFAULT_DOMAINS = ("", "ai.onnx")
_INF = 2**31 - 1


def _domain(d: str) -> str:
    return "" if d in _DEFAULT_DOMAINS else d


@dataclass(frozen=True)
class KernelDef:
    op_type: str
    domain: str
    provider: str
    since: int
    until: int
    #: type-constraint name (e.g. "T") → allowed ONNX type strings ("tensor(float16)")
    constraints: Mapping[str, frozenset[str]]


@functools.cache
def _registry() -> dict[tuple[str, str, str], tuple[KernelDef, ...]]:
    from onnxruntime.capi import onnxruntime_pybind11_state as C

    index: dict[tuple[str, str, str], list[KernelDef]] = {}
    for k in C.get_all_opkernel_def():
        lo, hi = k.version_range
        kd = KernelDef(
            op_type=k.op_name,
            domain=_domain(k.domain),
            provider=k.provider,
            since=lo,
            until=hi if hi < _INF else _INF,
            constraints={name: frozenset(types) for name, types in k.type_constraints.items()},
        )
        index.setdefault((kd.provider, kd.domain, kd.op_type), []).append(kd)
    return {key: tuple(v) for key, v in index.items()}


def providers_with_kernels() -> tuple[str, ...]:
    """Execution providers that registered kernels in this onnxruntime build."""
    return tuple(sorted({p for p, _, _ in _registry()}))


def kernels(
    op_type: str, domain: str = "", opset: int | None = None, provider: str = CPU
) -> tuple[KernelDef, ...]:
    """Kernel definitions for an op (optionally only those valid at ``opset``)."""
    found = _registry().get((provider, _domain(domain), op_type), ())
    if opset is None:
        return found
    return tuple(k for k in found if k.since <= opset <= k.until)


@functools.cache
def _type_string(elem_type: int) -> str:
    names = {
        onnx.TensorProto.FLOAT: "float",
        onnx.TensorProto.DOUBLE: "double",
        onnx.TensorProto.FLOAT16: "float16",
        onnx.TensorProto.BFLOAT16: "bfloat16",
        onnx.TensorProto.STRING: "string",
        onnx.TensorProto.BOOL: "bool",
    }
    name = names.get(elem_type) or onnx.TensorProto.DataType.Name(elem_type).lower()
    return f"tensor({name})"


def type_string(elem_type: int) -> str:
    """ONNX element type → registry type string (``tensor(float)``, ``tensor(float16)`` ...)."""
    return _type_string(elem_type)


@functools.cache
def _schema(op_type: str, domain: str, opset: int) -> onnx.defs.OpSchema | None:
    try:
        return onnx.defs.get_schema(op_type, opset, _domain(domain))
    except onnx.defs.SchemaError:
        return None


def io_constraints(op_type: str, domain: str, opset: int) -> tuple[list[str], list[str]] | None:
    """Per-position type strings of the op's inputs and outputs from the ONNX schema.

    Each entry is a constraint name ("T") or a fixed type ("tensor(int64)"). The last formal
    parameter repeats for variadic ops. None when ONNX has no schema (custom domains).
    """
    s = _schema(op_type, domain, opset)
    if s is None:
        return None
    return [p.type_str for p in s.inputs], [p.type_str for p in s.outputs]


def _position(params: list[str], i: int) -> str | None:
    if not params:
        return None
    return params[i] if i < len(params) else params[-1]


def kernel_for(
    op_type: str,
    domain: str,
    opset: int,
    input_types: list[int | None],
    output_types: list[int | None] | None = None,
    provider: str = CPU,
) -> tuple[bool, str]:
    """Does ``provider`` have a kernel for this op with these element types?

    ``input_types``/``output_types`` hold ONNX element types per position (None = unknown or
    missing optional input). Returns ``(ok, reason)``; the reason names the op, the type and
    the provider so it can be shown to users as is.
    """
    candidates = kernels(op_type, domain, opset, provider)
    label = f"{(_domain(domain) + '.') if _domain(domain) else ''}{op_type}"
    if not candidates:
        if kernels(op_type, domain, None, provider):
            return False, f"{provider} has no {label} kernel for opset {opset}"
        return False, f"{provider} has no {label} kernel"
    io = io_constraints(op_type, domain, opset)
    if io is None:  # no schema: accept if some kernel version exists
        return True, f"{label} kernel registered (no ONNX schema to check types)"
    ins, outs = io
    binding: dict[str, set[int]] = {}
    for params, types in ((ins, input_types), (outs, output_types or [])):
        for i, t in enumerate(types):
            c = _position(params, i)
            if t is None or c is None:
                continue
            if c.startswith(("tensor(", "seq(")):
                if c.startswith("tensor(") and c != type_string(t):
                    return False, f"{label} input {i} must be {c[7:-1]}, not {type_string(t)[7:-1]}"
                continue
            binding.setdefault(c, set()).add(t)
    wanted = {c: {type_string(t) for t in ts} for c, ts in binding.items()}
    for k in candidates:
        if all(c not in k.constraints or ts <= k.constraints[c] for c, ts in wanted.items()):
            return True, f"{provider} has a {label} kernel for {_describe(wanted)}"
    return False, f"{provider} has no {label} kernel for {_describe(wanted)} (opset {opset})"


def _describe(wanted: dict[str, set[str]]) -> str:
    if not wanted:
        return "these types"
    return ", ".join(
        f"{c}={'/'.join(sorted(t[7:-1] for t in ts))}" for c, ts in sorted(wanted.items())
    )
