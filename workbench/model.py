"""Load, save and inspect ONNX models safely.

* :func:`load_model` never hands out the caller's proto (it copies) and refuses external-data
  locations that escape the model's folder.
* :func:`save_model` writes atomically (temp file + rename) and switches to external data when
  the model would not fit a 2 GB protobuf.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from .errors import ModelLoadError
from .fileio import atomic_write_bytes, atomic_writer
from .results import Result, html_table

#: protobuf cannot serialize a message of 2 GiB or more
PROTOBUF_LIMIT = 2**31 - 1
#: tensors smaller than this stay inside the .onnx file when saving with external data
EXTERNAL_THRESHOLD = 1024
#: inline saves from this size on are streamed (no whole serialized copy in memory)
_STREAM_BYTES = 2**26

ModelLike = "str | os.PathLike[str] | onnx.ModelProto"


# --------------------------------------------------------------------------- graph walking


def iter_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """Yield ``graph`` and every subgraph (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from iter_graphs(g)


def iter_tensors(
    model: onnx.ModelProto, main_initializers: bool = True
) -> Iterator[onnx.TensorProto]:
    """Every TensorProto in the model: initializers, Constant values, tensor attributes
    (without the main graph's initializers when ``main_initializers`` is False)."""
    for depth, g in enumerate(iter_graphs(model.graph)):
        if depth or main_initializers:  # iter_graphs yields the main graph first
            yield from g.initializer
        for sparse in g.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in g.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    yield attr.t
                elif attr.type == onnx.AttributeProto.TENSORS:
                    yield from attr.tensors


def _is_external(t: onnx.TensorProto) -> bool:
    return t.data_location == onnx.TensorProto.EXTERNAL


def _external_info(t: onnx.TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in t.external_data}


def tensor_nbytes(t: onnx.TensorProto) -> int:
    """Bytes of a tensor's data, whether inline or external."""
    if _is_external(t):
        info = _external_info(t)
        if "length" in info:
            return int(info["length"])
        n = int(np.prod(t.dims)) if t.dims else 1
        return n * _itemsize(t.data_type)
    if t.raw_data:
        return len(t.raw_data)
    n = int(np.prod(t.dims)) if t.dims else 1
    return n * _itemsize(t.data_type)


def _itemsize(data_type: int) -> int:
    try:
        return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).itemsize)
    except Exception:  # string or unknown types
        return 1


# --------------------------------------------------------------------------- loading


def _safe_location(base: Path, location: str, tensor: str) -> Path:
    """Resolve an external-data location, refusing anything outside ``base``."""
    if not location:
        raise ModelLoadError(f"tensor {tensor!r} has external data without a location")
    if os.path.isabs(location) or location.startswith(("\\", "/")):
        raise ModelLoadError(
            f"tensor {tensor!r}: external data location {location!r} is absolute; "
            "only files inside the model's folder are allowed — re-save the model with a relative location"
        )
    target = (base / location).resolve()
    root = base.resolve()
    if target != root and root not in target.parents:
        raise ModelLoadError(
            f"tensor {tensor!r}: external data location {location!r} escapes the model folder "
            f"{str(root)!r}; refusing to read it — move the data file beside the model"
        )
    if not target.is_file():
        raise ModelLoadError(
            f"tensor {tensor!r}: external data file {location!r} not found next to the model "
            f"in {str(root)!r}"
        )
    return target


def check_external_data(model: onnx.ModelProto, base_dir: str | Path) -> list[Path]:
    """Validate every external-data reference of ``model`` against ``base_dir``; return the files."""
    base = Path(base_dir)
    files: list[Path] = []
    for t in iter_tensors(model):
        if _is_external(t):
            info = _external_info(t)
            path = _safe_location(base, info.get("location", ""), t.name)
            size = path.stat().st_size
            offset = int(info.get("offset", 0) or 0)
            length = int(info.get("length", 0) or 0)
            if offset < 0 or length < 0 or offset + length > size:
                raise ModelLoadError(
                    f"tensor {t.name!r}: external data range offset={offset} length={length} "
                    f"is outside {info['location']!r} ({size} bytes); the data file is truncated"
                )
            files.append(path)
    return files


def load_model(
    model: str | os.PathLike[str] | onnx.ModelProto, load_external_data: bool = True
) -> onnx.ModelProto:
    """Load an ONNX model from a path (or copy a ModelProto); external data is loaded safely.

    Raises :class:`ModelLoadError` naming the file for a missing, truncated or non-ONNX file and
    for external-data paths that escape the model's folder.
    """
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    if not isinstance(model, (str, os.PathLike)):
        raise ModelLoadError(
            f"expected a path or onnx.ModelProto, got {type(model).__name__}; pass the .onnx file path"
        )
    path = Path(model)
    if not path.exists():
        raise ModelLoadError(f"model file not found: {str(path)!r} — check the path")
    if path.is_dir():
        raise ModelLoadError(f"{str(path)!r} is a directory; pass the .onnx file inside it")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelLoadError(f"cannot read model file {str(path)!r}: {e.strerror}") from e
    if not data:
        raise ModelLoadError(f"model file {str(path)!r} is empty — re-export the model")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ModelLoadError(
            f"{str(path)!r} is not a valid ONNX model (truncated or not a protobuf: {e}); "
            "re-export or re-download it"
        ) from e
    if not proto.graph.node and not proto.graph.output and not proto.opset_import:
        raise ModelLoadError(
            f"{str(path)!r} parsed but contains no ONNX graph; is it really an .onnx model?"
        )
    if load_external_data:
        check_external_data(proto, path.parent)
        if any(_is_external(t) for t in iter_tensors(proto)):
            _load_external(proto, path.parent)
    return proto


def _load_external(model: onnx.ModelProto, base: Path) -> None:
    handles: dict[Path, Any] = {}
    try:
        for t in iter_tensors(model):
            if not _is_external(t):
                continue
            info = _external_info(t)
            file = _safe_location(base, info["location"], t.name)
            if file not in handles:
                handles[file] = open(file, "rb")  # noqa: SIM115 - closed in finally
            fh = handles[file]
            fh.seek(int(info.get("offset", 0) or 0))
            length = info.get("length")
            t.raw_data = fh.read(int(length)) if length else fh.read()
            del t.external_data[:]
            t.ClearField("data_location")
    finally:
        for fh in handles.values():
            fh.close()


def has_external_data(model: onnx.ModelProto) -> bool:
    """Whether any tensor of ``model`` references an external-data file."""
    return any(_is_external(t) for t in iter_tensors(model))


def load_light(path: str | os.PathLike[str]) -> tuple[onnx.ModelProto, str | None]:
    """The model at ``path`` without its external data, and the folder that data lives in.

    The references are validated (inside the folder, in range) but the weights stay on disk:
    runners read them from the folder (``RunConfig(model_dir=...)``). The folder is None when
    the model has no external data (then the proto is complete).
    """
    proto = load_model(path, load_external_data=False)
    if not has_external_data(proto):
        return proto, None
    folder = Path(path).parent
    check_external_data(proto, folder)
    return proto, str(folder.resolve())


#: a model (proto, or file with its weights inline) at least this big is worked on *light*:
#: staged to a work folder, its weights read from disk by the runtime (Python holds none)
STAGE_BYTES = 2**28


def worth_staging(model: onnx.ModelProto) -> bool:
    """Whether ``model``'s inline weights (:data:`STAGE_BYTES` or more) are worth moving to a
    work folder and working on it light."""
    return model_nbytes(model) >= STAGE_BYTES


def total_nbytes(model: onnx.ModelProto) -> int:
    """:func:`model_nbytes` of the complete model: external tensors counted as well."""
    return model_nbytes(model) + sum(
        tensor_nbytes(t) for t in iter_tensors(model) if _is_external(t)
    )


def external_files(model: onnx.ModelProto) -> list[str]:
    """The external-data locations ``model`` references, each once, in first-use order."""
    seen: dict[str, None] = {}
    for t in iter_tensors(model):
        if _is_external(t):
            seen.setdefault(_external_info(t).get("location", ""), None)
    return list(seen)


def light_model(
    model: str | os.PathLike[str] | onnx.ModelProto,
    stack: contextlib.ExitStack,
    name: str = "model",
) -> tuple[onnx.ModelProto, str | None]:
    """``model`` with named nodes and, where it is big, without its weights in memory.

    Returns ``(proto, folder)``: a file with external data gives its light proto and the
    folder its data lives in (nothing loaded, nothing copied); a proto or inline file of
    :data:`STAGE_BYTES` or more is staged (:func:`stage_model`) to a work folder that
    ``stack`` removes on exit; a smaller one comes back whole (``folder`` None). Runners open
    a light proto with ``RunConfig(model_dir=folder)``.
    """
    if isinstance(model, onnx.ModelProto):
        if not worth_staging(model):
            return ensure_node_names(model), None
    else:
        light, folder = load_light(model)
        if folder is not None:
            return ensure_node_names(light), folder
        if not worth_staging(light):
            return ensure_node_names(light), None
        model = light  # inline weights, loaded once: streamed out below
    work = stack.enter_context(tempfile.TemporaryDirectory(prefix="wb-light-"))
    return stage_model(model, os.path.join(work, f"{name}.onnx")), work


def complete_model(proto: onnx.ModelProto, folder: str | None) -> onnx.ModelProto:
    """A copy of light ``proto`` with its weights read from ``folder`` (``proto`` itself when
    ``folder`` is None): for the steps that need the weights in memory (simulated profiles)."""
    if folder is None:
        return proto
    full = load_model(proto)
    read_external_data(full, folder)
    return full


def read_external_data(model: onnx.ModelProto, folder: str | os.PathLike[str]) -> None:
    """Read every external tensor of ``model`` (one of your own: changed in place) from
    ``folder``, so it no longer depends on that folder; locations are validated as on load."""
    if has_external_data(model):
        check_external_data(model, folder)
        _load_external(model, Path(folder))


def stage_model(
    model: str | os.PathLike[str] | onnx.ModelProto, path: str | os.PathLike[str]
) -> onnx.ModelProto:
    """Write ``model``, nodes named, to ``path`` in a work folder with every tensor of 1 KB or
    more as external data beside it; return the *light* proto (structure and small tensors;
    big ones referenced relative to ``path``'s folder).

    For work on models of any size without holding their weights: ORT's tools read the files,
    runners open the light proto with ``RunConfig(model_dir=folder)``. The weights are never in
    memory twice: a proto's are streamed out (:func:`save_model`), a file's external data is
    copied file to file (renamed ``<stem>.srcN``, so work files never collide with it).
    """
    path = Path(path)
    if isinstance(model, onnx.ModelProto):
        save_model(model, path, external_data=True)
    else:
        light, folder = load_light(model)
        if folder is None:  # inline weights (< 2 GB): loaded once, streamed out
            save_model(light, path, external_data=True)
        else:
            _copy_external(light, Path(folder), path)
            atomic_write_bytes(path, light.SerializeToString())
        del light
    named = ensure_node_names(load_model(path, load_external_data=False))
    atomic_write_bytes(path, named.SerializeToString())
    return named


def _copy_external(light: onnx.ModelProto, folder: Path, path: Path) -> None:
    """Copy ``light``'s external-data files from ``folder`` beside ``path``; repoint it."""
    renamed: dict[str, str] = {}
    for t in iter_tensors(light):
        if not _is_external(t):
            continue
        for e in t.external_data:
            if e.key == "location":
                if e.value not in renamed:
                    renamed[e.value] = f"{path.stem}.src{len(renamed)}"
                    shutil.copyfile(_safe_location(folder, e.value, t.name),
                                    path.parent / renamed[e.value])  # fmt: skip
                e.value = renamed[e.value]


# --------------------------------------------------------------------------- saving


def model_nbytes(model: onnx.ModelProto) -> int:
    """Approximate serialized size without serializing (safe beyond 2 GB)."""
    tensors = sum(tensor_nbytes(t) for t in iter_tensors(model) if not _is_external(t))
    return tensors + 64 * sum(len(g.node) for g in iter_graphs(model.graph))


def save_model(
    model: onnx.ModelProto,
    path: str | os.PathLike[str],
    external_data: bool | None = None,
) -> Path:
    """Save atomically. External data (``<name>.data`` beside it) when ≥ 2 GB or asked for.

    The caller's model is left exactly as it was.
    """
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"save_model expects an onnx.ModelProto, got {type(model).__name__}")
    path = Path(path)
    if external_data is None:
        external_data = model_nbytes(model) >= PROTOBUF_LIMIT
    if not external_data:
        try:
            if model_nbytes(model) < _STREAM_BYTES:
                atomic_write_bytes(path, model.SerializeToString())
            else:
                with atomic_writer(path) as fh:
                    _write_streamed(model, fh)
        except ValueError as e:  # protobuf refuses >2GB messages
            raise ModelLoadError(
                f"model too large to save inline to {str(path)!r}; use external_data=True"
            ) from e
        return path
    _save_external(model, path)
    return path


def _write_streamed(model: onnx.ModelProto, fh: Any) -> None:
    """Write exactly ``model.SerializeToString()``, one initializer at a time.

    A message serializes as its fields in field-number order (``ListFields``' order), so the
    model's fields are written one by one, and the graph as its tag, its size and its own
    fields, each initializer on its own: the serialized copy of a big model never exists
    whole (``graph.ByteSize()`` would make one: upb sizes a message by encoding it).
    """
    for fd, value in model.ListFields():
        if fd.name != "graph":
            fh.write(_set_field(onnx.ModelProto(), fd, value).SerializeToString())
            continue
        parts = [
            (gfd, gvalue, _set_field(onnx.GraphProto(), gfd, gvalue).SerializeToString())
            for gfd, gvalue in model.graph.ListFields()
            if gfd.name != "initializer"
        ]
        inits = model.graph.initializer
        tag = _varint(onnx.GraphProto.INITIALIZER_FIELD_NUMBER << 3 | 2)
        sizes = [t.ByteSize() for t in inits]
        size = sum(len(b) for *_, b in parts)
        size += sum(len(tag) + len(_varint(n)) + n for n in sizes)
        fh.write(_varint(fd.number << 3 | 2) + _varint(size))
        pending = sorted(parts, key=lambda p: p[0].number)
        while pending and pending[0][0].number < onnx.GraphProto.INITIALIZER_FIELD_NUMBER:
            fh.write(pending.pop(0)[2])
        for t, n in zip(inits, sizes, strict=True):
            fh.write(tag + _varint(n))
            fh.write(t.SerializeToString())  # one tensor's bytes at a time
        for *_, data in pending:
            fh.write(data)


def _set_field(message: Any, fd: Any, value: Any) -> Any:
    """``message`` with field ``fd`` set to ``value`` (a copy; repeated fields extended)."""
    target = getattr(message, fd.name)
    if fd.is_repeated:
        target.extend(value)
    elif fd.type == fd.TYPE_MESSAGE:
        target.CopyFrom(value)
    else:
        setattr(message, fd.name, value)
    return message


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _save_external(model: onnx.ModelProto, path: Path) -> None:
    """Stream large tensors to ``<name>.data`` and write a small .onnx header beside it.

    The main graph's initializers (where nearly all weights live) go into the header as stubs
    that point into the data file: the caller's proto is never touched (so concurrent saves of
    one proto are safe), and no second copy of the weights is made. Large tensors elsewhere
    (Constant nodes, subgraph initializers) stay inline in the header while it fits a protobuf;
    beyond that they are moved out of the proto one at a time and restored afterwards.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data_name = path.name + ".data"
    fd, tmp_data = tempfile.mkstemp(prefix=f".{data_name}.", suffix=".tmp", dir=path.parent)
    moved: list[tuple[onnx.TensorProto, int, int]] = []
    stubs: dict[int, tuple[int, int]] = {}  # index in graph.initializer → (offset, length)
    try:
        try:
            with os.fdopen(fd, "wb") as fh:

                def write(t: onnx.TensorProto) -> tuple[int, int]:
                    start = fh.tell()
                    start += fh.write(b"\0" * ((-start) % 4096))  # page alignment allows mmap
                    return start, fh.write(t.raw_data)

                # by index, not id(): upb makes a new wrapper object per access
                for i, t in enumerate(model.graph.initializer):
                    if _is_big_inline(t):
                        stubs[i] = write(t)
                if model_nbytes(model) - sum(n for _, n in stubs.values()) >= PROTOBUF_LIMIT:
                    for t in iter_tensors(model, main_initializers=False):
                        if _is_big_inline(t):
                            where = write(t)
                            moved.append((t, *where))
                            t.ClearField("raw_data")
                            _point_to(t, data_name, *where)
                fh.flush()
                os.fsync(fh.fileno())
            header = _header(model, stubs, data_name).SerializeToString()
        finally:
            _restore_moved(moved, Path(tmp_data))
        os.replace(tmp_data, path.parent / data_name)
        atomic_write_bytes(path, header)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_data)
        raise


def _is_big_inline(t: onnx.TensorProto) -> bool:
    return not _is_external(t) and len(t.raw_data) >= EXTERNAL_THRESHOLD


def _point_to(t: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    t.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
        e = t.external_data.add()
        e.key, e.value = k, v


def _copy_fields(src: Any, dst: Any, skip: str) -> None:
    """Copy every set field of message ``src`` into ``dst`` except ``skip`` (no deep copy of
    the skipped field: that is the point)."""
    for fd, value in src.ListFields():
        if fd.name != skip:
            _set_field(dst, fd, value)


def _header(
    model: onnx.ModelProto, stubs: dict[int, tuple[int, int]], location: str
) -> onnx.ModelProto:
    """The model with the main-graph initializers in ``stubs`` (by index) replaced by
    external-data stubs."""
    head = onnx.ModelProto()
    _copy_fields(model, head, skip="graph")
    _copy_fields(model.graph, head.graph, skip="initializer")
    for i, t in enumerate(model.graph.initializer):
        stub = head.graph.initializer.add()
        where = stubs.get(i)
        if where is None:
            stub.CopyFrom(t)
            continue
        _copy_fields(t, stub, skip="raw_data")
        _point_to(stub, location, *where)
    return head


def _restore_moved(moved: list[tuple[onnx.TensorProto, int, int]], source: Path) -> None:
    if not moved:
        return
    with open(source, "rb") as fh:
        for t, offset, length in moved:
            fh.seek(offset)
            del t.external_data[:]
            t.ClearField("data_location")  # as before saving: inline data, field unset
            t.raw_data = fh.read(length)


# --------------------------------------------------------------------------- naming


def ensure_node_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of ``model`` where every node (subgraphs included) has a unique, deterministic name.

    Unnamed nodes become ``<OpType>_<n>``; duplicates get ``__<k>`` suffixes, in graph order.
    Block lists, affinity and reports refer to nodes by these names.
    """
    # Not onnx-ir's NameFixPass: it makes node names unique only within each graph scope (an If
    # branch may reuse a main-graph name, but block lists name nodes model-wide), renames
    # values as well, and numbers differently ("Conv", "Conv_1"), which would change the names
    # users already put in block lists. Needs no IR either, so map-typed models work too.
    out = load_model(model)
    taken: set[str] = set()
    counters: collections.Counter[str] = collections.Counter()
    nodes = [n for g in iter_graphs(out.graph) for n in g.node]
    named = collections.Counter(n.name for n in nodes if n.name)
    for node in nodes:
        name = node.name
        if not name or named[name] > 1 and name in taken:
            base = name or node.op_type
            while True:
                counters[base] += 1
                candidate = f"{base}_{counters[base]}" if not name else f"{base}__{counters[base]}"
                if candidate not in taken and candidate not in named:
                    break
            node.name = candidate
        taken.add(node.name)
    return out


# --------------------------------------------------------------------------- inspect


@dataclass(frozen=True)
class TensorInfo(Result):
    name: str
    dtype: str
    shape: tuple[int | str | None, ...]

    def __str__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


def dtype_name(elem_type: int) -> str:
    """ONNX element type → short name (``float32``, ``float16``, ``bfloat16``, ``int64``...)."""
    if elem_type == onnx.TensorProto.BFLOAT16:
        return "bfloat16"
    try:
        return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)))
    except Exception:
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def value_info(vi: onnx.ValueInfoProto) -> TensorInfo:
    tt = vi.type.tensor_type
    shape: tuple[int | str | None, ...] = tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim
    )
    return TensorInfo(vi.name, dtype_name(tt.elem_type) if tt.elem_type else "?", shape)


@dataclass(frozen=True)
class ModelSummary(Result):
    """What :func:`inspect` reports about a model."""

    graph_name: str
    producer: str
    ir_version: int
    opsets: dict[str, int]
    domains: tuple[str, ...]
    node_count: int
    ops: dict[str, int]
    dtypes: dict[str, int]
    parameters: int
    parameter_bytes: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    subgraphs: int = 0
    metadata: dict[str, str] = field(default_factory=dict)

    def summary_rows(self) -> list[dict[str, Any]]:
        ops = ", ".join(f"{k}×{v}" for k, v in sorted(self.ops.items(), key=lambda kv: -kv[1]))
        return [
            {"field": "graph", "value": self.graph_name},
            {"field": "producer", "value": self.producer},
            {
                "field": "opsets",
                "value": ", ".join(f"{k or 'ai.onnx'}:{v}" for k, v in self.opsets.items()),
            },
            {"field": "nodes", "value": f"{self.node_count} ({self.subgraphs} subgraphs)"},
            {"field": "ops", "value": ops},
            {
                "field": "tensor dtypes",
                "value": ", ".join(f"{k}×{v}" for k, v in self.dtypes.items()),
            },
            {
                "field": "parameters",
                "value": f"{self.parameters:,} ({self.parameter_bytes / 1024:.1f} KiB)",
            },
            {"field": "inputs", "value": "; ".join(map(str, self.inputs))},
            {"field": "outputs", "value": "; ".join(map(str, self.outputs))},
        ]

    def _repr_html_(self) -> str:
        return html_table(self.summary_rows(), title="Model summary")

    def __str__(self) -> str:
        return "\n".join(f"{r['field']:>14}: {r['value']}" for r in self.summary_rows())


def inspect(model: str | os.PathLike[str] | onnx.ModelProto) -> ModelSummary:
    """Summarize a model: op histogram, dtypes, parameters, I/O with shapes, opsets, domains."""
    m = model if isinstance(model, onnx.ModelProto) else load_model(model, load_external_data=False)
    graphs = list(iter_graphs(m.graph))
    ops: collections.Counter[str] = collections.Counter()
    domains: set[str] = set()
    for g in graphs:
        for n in g.node:
            ops[n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"] += 1
            domains.add(n.domain or "ai.onnx")
    dtypes: collections.Counter[str] = collections.Counter()
    init_names = set()
    params = 0
    pbytes = 0
    for t in iter_tensors(m):
        dtypes[dtype_name(t.data_type)] += 1
        params += int(np.prod(t.dims)) if t.dims else 1
        pbytes += tensor_nbytes(t)
        init_names.add(t.name)
    for g in graphs:
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            if vi.name not in init_names and vi.type.tensor_type.elem_type:
                dtypes[dtype_name(vi.type.tensor_type.elem_type)] += 1
    inits = {i.name for i in m.graph.initializer}
    return ModelSummary(
        graph_name=m.graph.name,
        producer=f"{m.producer_name} {m.producer_version}".strip(),
        ir_version=m.ir_version,
        opsets={o.domain: o.version for o in m.opset_import},
        domains=tuple(sorted(domains)),
        node_count=sum(len(g.node) for g in graphs),
        ops=dict(sorted(ops.items())),
        dtypes=dict(sorted(dtypes.items())),
        parameters=params,
        parameter_bytes=pbytes,
        inputs=tuple(value_info(i) for i in m.graph.input if i.name not in inits),
        outputs=tuple(value_info(o) for o in m.graph.output),
        subgraphs=len(graphs) - 1,
        metadata={p.key: p.value for p in m.metadata_props},
    )


def opset_version(model: onnx.ModelProto, domain: str = "") -> int:
    """The model's opset for ``domain`` (default domain when '' or 'ai.onnx')."""
    for o in model.opset_import:
        if o.domain == domain or (domain in ("", "ai.onnx") and o.domain in ("", "ai.onnx")):
            return o.version
    return 0


def model_digest(model: onnx.ModelProto, folder: str | os.PathLike[str] | None = None) -> str:
    """Content hash of a model (a light one: external data read from ``folder``).

    The same value whether the weights are inline or external: below 2 GB the sha256 of the
    complete serialized model; beyond (no in-memory serialization) piece by piece, one tensor
    at a time, reading external tensors from their files.
    """
    external = folder is not None and has_external_data(model)
    total = total_nbytes(model) if external else model_nbytes(model)
    if total < PROTOBUF_LIMIT:
        if external:
            model = load_model(model)  # a copy, under 2 GB
            _load_external(model, Path(folder))  # type: ignore[arg-type]
        return hashlib.sha256(model.SerializeToString()).hexdigest()
    h = hashlib.sha256()
    g = model.graph
    for part in (*model.opset_import, *g.input, *g.output, *g.node):
        h.update(part.SerializeToString())
    for t in g.initializer:
        h.update(t.name.encode() + bytes(str((t.data_type, tuple(t.dims))), "ascii"))
        if external and _is_external(t):
            info = _external_info(t)
            with open(_safe_location(Path(folder), info["location"], t.name), "rb") as fh:  # type: ignore[arg-type]
                fh.seek(int(info.get("offset", 0) or 0))
                left = int(info["length"]) if info.get("length") else -1
                while left:
                    chunk = fh.read(min(left, 2**26) if left > 0 else 2**26)
                    if not chunk:
                        break
                    h.update(chunk)
                    left -= len(chunk) if left > 0 else 0
        else:
            h.update(t.raw_data if t.HasField("raw_data") else t.SerializeToString())
    return h.hexdigest()
