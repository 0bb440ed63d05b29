"""Shared behaviour of result dataclasses: JSON round-trip, readable repr, HTML tables.

Results are frozen dataclasses inheriting :class:`Result`. Values may be plain JSON types,
tuples, dicts with string keys, numpy scalars/arrays, ``onnx.ModelProto`` (stored as base64) or
other results (tagged with their class name so :meth:`Result.from_dict` rebuilds them).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import onnx

from .fileio import atomic_write_bytes

T = TypeVar("T", bound="Result")

_REGISTRY: dict[str, type[Result]] = {}


def encode(value: Any) -> Any:
    """Turn a result value into JSON-compatible data (reversible with :func:`decode`)."""
    if isinstance(value, Result):
        return {"__result__": type(value).__name__, **{k: encode(v) for k, v in value._fields()}}
    if isinstance(value, onnx.ModelProto):
        return {"__onnx__": base64.b64encode(value.SerializeToString()).decode("ascii")}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, Path):
        return str(value)
    return value


def decode(value: Any) -> Any:
    """Inverse of :func:`encode`; lists come back as tuples (results hold tuples)."""
    if isinstance(value, dict):
        if "__onnx__" in value:
            return onnx.load_from_string(base64.b64decode(value["__onnx__"]))
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"])
        if "__float__" in value:
            return float(value["__float__"])
        if "__result__" in value:
            cls = _REGISTRY[value["__result__"]]
            return cls.from_dict({k: v for k, v in value.items() if k != "__result__"})
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(decode(v) for v in value)
    return value


def _short(value: Any) -> str:
    if isinstance(value, onnx.ModelProto):
        return f"<ModelProto {len(value.graph.node)} nodes, {value.ByteSize() / 1024:.1f} KiB>"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, tuple, list)) and len(value) > 6:
        return f"<{type(value).__name__} of {len(value)}>"
    if isinstance(value, Result):
        return f"<{type(value).__name__}>"
    return repr(value)


def html_table(
    rows: list[dict[str, Any]], columns: list[str] | None = None, title: str = ""
) -> str:
    """Escaped HTML table from a list of row dicts (used by every ``_repr_html_``)."""
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(c for c in row if c not in columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    caption = f"<caption>{html.escape(title)}</caption>" if title else ""
    return f'<table class="wb-table">{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value) if not isinstance(value, (onnx.ModelProto, Result)) else _short(value)


class Result:
    """Mixin for frozen result dataclasses."""

    #: fields left out of the generic repr/HTML (e.g. large tables shown elsewhere)
    _summary_exclude: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def _fields(self) -> list[tuple[str, Any]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (models as base64 ONNX)."""
        return {k: encode(v) for k, v in self._fields()}

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: decode(v) for k, v in data.items() if k in names})

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text; also written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=1, sort_keys=False)
        if path is not None:
            atomic_write_bytes(Path(path), text.encode("utf-8"))
        return text

    @classmethod
    def from_json(cls: type[T], text_or_path: str | Path) -> T:
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text))

    def summary_rows(self) -> list[dict[str, Any]]:
        """Rows of (field, value) for the HTML view; results override for richer tables."""
        return [
            {"field": k, "value": _short(v)}
            for k, v in self._fields()
            if k not in self._summary_exclude
        ]

    def _repr_html_(self) -> str:
        return html_table(self.summary_rows(), title=type(self).__name__)
