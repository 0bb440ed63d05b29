"""GraphViz views of affinity and subgraphs, rendered with the system ``dot`` binary.

* :func:`affinity_dot` — nodes coloured by device (one fixed colour per device, shared with the
  plots; two-colour stripes once the palette is used up) with a legend; simulated devices
  dashed, labelled and explained in the legend.
* :func:`subgraphs_dot` — one cluster per subgraph; tensors crossing subgraphs drawn as labelled
  nodes with dtype, shape and bytes.
* :func:`render` — DOT → SVG/PNG bytes via ``dot`` with a timeout (never hangs).

Every name is escaped: node labels are HTML-like labels built from ``html.escape``d text with
control characters made visible; attributes are DOT-quoted; node ids are synthetic. Big graphs
get layout limits (``nslimit``, ``mclimit``, straight edges, constants hidden) and beyond
``COLLAPSE_NODES`` (clustered views: ``COLLAPSE_CLUSTER_NODES``) collapse to one box per subgraph
with a note.
"""

from __future__ import annotations

import collections
import hashlib
import html
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

import onnx

from ..errors import InputError, UnsupportedError, WorkbenchError
from ..formatting import format_bytes
from ..hardware.partition import group_nodes, node_inputs
from ..model import ensure_node_names, load_model
from .colors import DEVICE_PALETTE, device_colors

#: beyond this many drawn nodes, layout limits kick in
LIMIT_NODES = 400
#: beyond this many nodes, the affinity view collapses to one box per same-device region
COLLAPSE_NODES = 2500
#: clusters make `dot` superlinear (2,000 nodes in clusters take ~25 s), so the subgraph view
#: collapses to one box per subgraph earlier
COLLAPSE_CLUSTER_NODES = 1000
#: seconds `dot` may take before it is stopped
RENDER_TIMEOUT = 120.0
FORMATS = ("svg", "png")

#: bounded network-simplex and mincross passes, straight edges (measured in bench_render.py;
#: searchsize/remincross tweaks made dot slower on our big views, so they are not used)
_FAST_LAYOUT = "nslimit=2, nslimit1=2, mclimit=0.3, splines=line, ranksep=0.3"


class DotSource(str):
    """DOT text (a ``str``) that renders itself in notebooks and saves to files."""

    def render(self, format: str = "svg", timeout: float = RENDER_TIMEOUT) -> bytes:
        return render(self, format=format, timeout=timeout)

    def _repr_svg_(self) -> str:
        return self.render("svg").decode("utf-8")


# --------------------------------------------------------------------------- escaping


def visible(text: Any, width: int = 80) -> str:
    """Text with control characters shown as escapes (``\\n``) and clipped to ``width``."""
    s = str(text)
    s = "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in s)
    return s if len(s) <= width else s[: width - 1] + "…"


def html_text(text: Any, width: int = 80) -> str:
    """Text safe inside a GraphViz HTML-like label (and the SVG/HTML it becomes).

    GraphViz expands ``\\N``/``\\G``-style escapes even in HTML labels (after decoding
    entities), so backslashes are doubled as well.
    """
    return html.escape(visible(text, width), quote=True).replace("\\", "\\\\")


def quoted(text: Any, width: int = 200) -> str:
    """A DOT double-quoted attribute (tooltips): GraphViz unescapes these twice (``\\\\`` and
    then ``\\N``/``\\G`` substitution), so each backslash becomes four; it also passes
    entities such as ``&amp;`` through to SVG, so ``&`` is written as ``&amp;``."""
    s = visible(text, width).replace("&", "&amp;").replace("\\", "\\" * 4).replace('"', '\\"')
    return f'"{s}"'


# --------------------------------------------------------------------------- styles


def _luminance(color: str) -> float:
    r, g, b = (int(color[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.299 * r + 0.587 * g + 0.114 * b


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 node``, ``3 nodes``."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def device_styles(names: Iterable[str], simulated: Iterable[str] = ()) -> dict[str, str]:
    """Device name → DOT node attributes: each device's fixed colour (see
    :mod:`workbench.viz.colors`), then unique two-colour stripes; simulated devices dashed."""
    sim = set(simulated)
    colors = device_colors(names)
    n = len(DEVICE_PALETTE)
    pairs = [(a, b) for a in range(n) for b in range(n) if a != b]
    out = {}
    stripes = 0
    for name, color in colors.items():
        dashed = ",dashed" if name in sim else ""
        if color is not None:
            font = "white" if _luminance(color) < 0.55 else "black"
            attrs = f'style="filled{dashed}", fillcolor="{color}", fontcolor="{font}"'
        else:
            a, b = pairs[stripes % len(pairs)]
            stripes += 1
            fill = f"{DEVICE_PALETTE[a]}:{DEVICE_PALETTE[b]}"
            attrs = f'style="striped{dashed}", fillcolor="{fill}", fontcolor="black"'
        if name in sim:
            attrs += ", penwidth=2"
        out[name] = attrs
    return out


#: what the legend says about simulated devices
SIMULATED_NOTE = "dashed border: simulated device (a profile run on this CPU; latency estimated)"


def _legend(
    styles: Mapping[str, str], counts: Mapping[str, int], simulated: Iterable[str]
) -> list[str]:
    """One box per device (name, node count), plus what a dashed border means.

    Boxes get generous margins: viewers may draw text with a wider font than the one GraphViz
    measured, and the text must stay inside its box.
    """
    sim = set(simulated)
    lines = [
        "  subgraph cluster_legend {",
        '    label=<<b>devices</b>>; style="rounded"; color="#999999"; fontsize=11; margin=12;',
    ]
    previous = None
    for k, (name, attrs) in enumerate(styles.items()):
        tag = " (simulated)" if name in sim else ""
        label = f"{html_text(name)}{tag}<br/>{plural(counts.get(name, 0), 'node')}"
        lines.append(
            f'    legend{k} [shape=box, {attrs}, fontsize=10, margin="0.2,0.08", label=<{label}>];'
        )
        if previous is not None:  # keep the legend in one column
            lines.append(f"    {previous} -> legend{k} [style=invis];")
        previous = f"legend{k}"
    if sim:
        lines.append(
            f'    legend_sim [shape=plaintext, style="", fontsize=9, margin="0.2,0.08", '
            f"label=<<i>{html_text(SIMULATED_NOTE, 120).replace('; ', ';<br/>')}</i>>];"
        )
        if previous is not None:
            lines.append(f"    {previous} -> legend_sim [style=invis];")
    lines.append("  }")
    return lines


def _header(title: str, notes: list[str], big: bool) -> list[str]:
    label = f"<b>{html_text(title, 120)}</b>" + "".join(f"<br/>{html_text(n, 200)}" for n in notes)
    lines = [
        "digraph workbench {",
        f'  graph [label=<{label}>, labelloc=t, fontname="Helvetica", fontsize=12, '
        f"rankdir=TB{', ' + _FAST_LAYOUT if big else ''}];",
        '  node [fontname="Helvetica", fontsize=9, shape=box, style="filled", margin="0.05,0.02", '
        "height=0.25];",
        '  edge [color="#555555", arrowsize=0.5];',
    ]
    return lines


# --------------------------------------------------------------------------- affinity


def _node_label(name: str, op: str) -> str:
    return f"<{html_text(name, 40)}<br/><i>{html_text(op, 40)}</i>>"


def _io_lines(
    model: onnx.ModelProto, ids: dict[str, str], producers: Mapping[str, str]
) -> list[str]:
    """Graph inputs and outputs as ellipses, linked to their consumers/producers."""
    inits = {i.name for i in model.graph.initializer}
    lines = []
    for k, vi in enumerate(i for i in model.graph.input if i.name not in inits):
        ids[vi.name] = f"in{k}"
        lines.append(
            f'  in{k} [shape=ellipse, style="solid", label=<{html_text(vi.name, 40)}>, '
            f"tooltip={quoted('input ' + vi.name)}];"
        )
    for k, vi in enumerate(model.graph.output):
        lines.append(
            f'  out{k} [shape=ellipse, style="solid", label=<{html_text(vi.name, 40)}>, '
            f"tooltip={quoted('output ' + vi.name)}];"
        )
        if vi.name in producers:
            lines.append(f"  {producers[vi.name]} -> out{k};")
        elif vi.name in ids:
            lines.append(f"  {ids[vi.name]} -> out{k};")
    return lines


def affinity_dot(model: Any, affinity: Any, collapse: bool | None = None) -> DotSource:
    """DOT text of ``model`` with every node coloured by its device in ``affinity``.

    ``collapse=None`` collapses to subgraph level beyond :data:`COLLAPSE_NODES` nodes (with a
    note); constants are hidden and layout limits applied beyond :data:`LIMIT_NODES`.
    """
    m = ensure_node_names(model if isinstance(model, onnx.ModelProto) else load_model(model))
    assignments: Mapping[str, str] = affinity.assignments
    devices = list(getattr(affinity, "devices", ()))
    names = [d.name for d in devices] or sorted(set(assignments.values()))
    simulated = [d.name for d in devices if d.simulated]
    styles = device_styles(names, simulated)
    counts = collections.Counter(assignments.values())
    nodes = list(m.graph.node)
    missing = [n.name for n in nodes if n.name not in assignments]
    if missing:
        raise InputError(
            f"the affinity has no device for node {missing[0]!r}; was it computed for another "
            "model? Recompute it with workbench.affinity(model, devices)"
        )
    title = f"{m.graph.name or 'model'}: affinity ({getattr(affinity, 'mode', '?')})"
    if collapse is None:
        collapse = len(nodes) > COLLAPSE_NODES
    if collapse:
        groups, devs, _, _ = group_nodes(m, assignments)
        note = (
            f"collapsed to subgraph level: {len(nodes)} nodes in {len(groups)} same-device "
            f"regions (limit {COLLAPSE_NODES} nodes per view)"
        )
        ops = {n.name: n.op_type for n in nodes}
        return _collapsed(m, title, [note], groups, devs, ops, styles, counts, simulated)
    big = len(nodes) > LIMIT_NODES
    notes = []
    hidden = {n.name for n in nodes if big and n.op_type == "Constant"}
    if hidden:
        notes.append(
            f"{plural(len(hidden), 'Constant node')} hidden; layout limits applied "
            f"({len(nodes)} nodes)"
        )
    lines = _header(title, notes, big)
    lines += _assigned_nodes(m, nodes, hidden, assignments, styles)
    lines += _legend(styles, counts, simulated)
    lines.append("}")
    return DotSource("\n".join(lines) + "\n")


def _assigned_nodes(
    model: onnx.ModelProto,
    nodes: list[onnx.NodeProto],
    hidden: set[str],
    assignments: Mapping[str, str],
    styles: Mapping[str, str],
) -> list[str]:
    """Every shown node in its device's style, the graph inputs/outputs, and the edges."""
    lines = []
    ids: dict[str, str] = {}
    producers: dict[str, str] = {}
    for k, n in enumerate(nodes):
        if n.name in hidden:
            continue
        for o in n.output:
            producers[o] = f"n{k}"
        tip = f"{n.name} ({n.op_type}) on {assignments[n.name]}"
        lines.append(
            f"  n{k} [{styles[assignments[n.name]]}, label={_node_label(n.name, n.op_type)}, "
            f"tooltip={quoted(tip)}];"
        )
    lines += _io_lines(model, ids, producers)
    for k, n in enumerate(nodes):
        if n.name in hidden:
            continue
        for t in node_inputs(n):
            src = producers.get(t) or ids.get(t)
            if src is not None:
                lines.append(f"  {src} -> n{k} [tooltip={quoted(t)}];")
    return lines


def _collapsed(
    model: onnx.ModelProto,
    title: str,
    notes: list[str],
    groups: list[list[str]],
    devs: list[str],
    ops: Mapping[str, str],
    styles: Mapping[str, str],
    counts: Mapping[str, int],
    simulated: Iterable[str],
    tensor_labels: Mapping[str, str] | None = None,
) -> DotSource:
    """One box per group; edges carry the tensors crossing between groups."""
    lines = _header(title, notes, big=len(groups) > LIMIT_NODES)
    owner = {}
    node_outputs = {n.name: [o for o in n.output if o] for n in model.graph.node}
    for k, (g, dev) in enumerate(zip(groups, devs, strict=True)):
        for name in g:
            for o in node_outputs.get(name, ()):
                owner[o] = k
        hist = collections.Counter(ops[n] for n in g)
        top = ", ".join(f"{op}×{c}" for op, c in hist.most_common(4))
        label = (
            f"<<b>sg{k} · {html_text(dev)}</b><br/>{plural(len(g), 'node')}<br/>"
            f"<i>{html_text(top, 60)}</i>>"
        )
        lines.append(f"  g{k} [{styles[dev]}, label={label}];")
    crossing: dict[tuple[int, int], list[str]] = collections.defaultdict(list)
    index = {n.name: n for n in model.graph.node}
    for k, g in enumerate(groups):
        for name in g:
            for t in index[name].input:
                if t in owner and owner[t] != k and t not in crossing[(owner[t], k)]:
                    crossing[(owner[t], k)].append(t)
    labelled = len(groups) <= LIMIT_NODES  # edge labels quadruple dot's time on big views
    for (a, b), ts in sorted(crossing.items()):
        tip = "; ".join(f"{t}: {(tensor_labels or {}).get(t, '')}" for t in ts[:8])
        if not labelled:
            lines.append(f"  g{a} -> g{b} [tooltip={quoted(tip, 400)}];")
            continue
        if tensor_labels is not None and len(ts) <= 3:
            text = "<br/>".join(
                f"{html_text(t, 30)}: {html_text(tensor_labels.get(t, ''), 64)}" for t in ts
            )
        else:
            text = plural(len(ts), "tensor")
        lines.append(f"  g{a} -> g{b} [label=<{text}>, fontsize=8, tooltip={quoted(tip, 400)}];")
    lines += _legend(styles, counts, simulated)
    lines.append("}")
    return DotSource("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- subgraphs


def subgraphs_dot(partitioned: Any, collapse: bool | None = None, profile: Any = None) -> DotSource:
    """DOT text with one cluster per subgraph and labelled boundary tensors.

    ``profile`` (a PartitionProfile of this partition) supplies the bytes measured at run time
    where shapes are dynamic.
    """
    subs = list(partitioned.subgraphs)
    simulated = [d.name for d in partitioned.devices if d.simulated]
    styles = device_styles([d.name for d in partitioned.devices], simulated)
    counts = collections.Counter(dev for sg in subs for dev in [sg.device] * len(sg.nodes))
    total = sum(len(sg.nodes) for sg in subs)
    title = (
        f"{partitioned.model}: {plural(len(subs), 'subgraph')} "
        f"(splitting at every device change: {partitioned.naive_count})"
    )
    measured = _measured_bytes(profile)
    tensors = _tensor_labels(partitioned, measured)
    if collapse is None:
        collapse = total > COLLAPSE_CLUSTER_NODES
    if collapse:
        return _collapsed_subgraphs(subs, title, total, styles, counts, simulated, tensors)
    big = total > LIMIT_NODES
    lines = _header(title, [f"layout limits applied ({total} nodes)"] if big else [], big)
    producers: dict[str, str] = {}
    consumers: dict[str, list[str]] = collections.defaultdict(list)
    for k, sg in enumerate(subs):
        lines += _cluster(k, sg, styles, big, producers, consumers, measured.get(sg.name))
    boundary = _boundary_nodes(tensors, producers, lines)
    inputs = {name: f"in{k}" for k, name in enumerate(partitioned.inputs)}
    for name, nid in inputs.items():
        lines.append(f'  {nid} [shape=ellipse, style="solid", label=<{html_text(name, 40)}>];')
    for t, users in consumers.items():
        src = boundary.get(t) or producers.get(t) or inputs.get(t)
        lines += [f"  {src} -> {user};" for user in users if src is not None and src != user]
    for k, name in enumerate(partitioned.outputs):
        lines.append(f'  out{k} [shape=ellipse, style="solid", label=<{html_text(name, 40)}>];')
        src = producers.get(name) or inputs.get(name)
        if src is not None:
            lines.append(f"  {src} -> out{k};")
    lines += _legend(styles, counts, simulated)
    lines.append("}")
    return DotSource("\n".join(lines) + "\n")


def _measured_bytes(profile: Any) -> dict[str, int]:
    """Subgraph name → boundary bytes received per run, as measured by a profile."""
    rows = getattr(profile, "rows", None) or ()
    return {r.subgraph: int(r.boundary_bytes) for r in rows}


def _tensor_labels(partitioned: Any, measured: Mapping[str, int]) -> dict[str, str]:
    """Boundary tensor → ``dtype[shape] · bytes``; dynamic sizes filled in from measurements.

    A profile measures bytes per subgraph, so a dynamic tensor gets its measured size when it
    is the only boundary input of its subgraph; otherwise it says the size is set at run time.
    """
    labels = dict(partitioned.tensors)
    unknown = format_bytes(None)
    for sg in partitioned.subgraphs:
        dynamic = [t for t in sg.boundary_inputs if labels.get(t, "").endswith(unknown)]
        for t in dynamic:
            head = labels[t][: -len(unknown)]
            if len(sg.boundary_inputs) == 1 and sg.name in measured:
                labels[t] = f"{head}{format_bytes(measured[sg.name])} (measured)"
            else:
                labels[t] = f"{head}size set at run time"
    return labels


def _collapsed_subgraphs(
    subs: list[Any],
    title: str,
    total: int,
    styles: Mapping[str, str],
    counts: Mapping[str, int],
    simulated: list[str],
    tensors: Mapping[str, str],
) -> DotSource:
    merged = onnx.helper.make_graph([n for sg in subs for n in sg.model.graph.node], "all", [], [])
    note = (
        f"collapsed to subgraph level: {total} nodes "
        f"(limit {COLLAPSE_CLUSTER_NODES} per clustered view)"
    )
    groups = [[n.name for n in sg.model.graph.node] for sg in subs]
    ops = {n.name: n.op_type for sg in subs for n in sg.model.graph.node}
    return _collapsed(
        onnx.helper.make_model(merged), title, [note], groups, [sg.device for sg in subs], ops,
        styles, counts, simulated, tensor_labels=tensors,
    )  # fmt: skip


def _cluster(
    k: int,
    sg: Any,
    styles: Mapping[str, str],
    big: bool,
    producers: dict[str, str],
    consumers: dict[str, list[str]],
    measured: int | None,
) -> list[str]:
    """One subgraph as a DOT cluster; records which drawn node produces/consumes each tensor."""
    tag = " (simulated)" if sg.simulated else ""
    received = sg.boundary_bytes if sg.boundary_bytes is not None else measured
    size = format_bytes(received) if received is not None else "sizes set at run time"
    label = (
        f"<<b>{html_text(sg.name)} · {html_text(sg.device)}{tag}</b><br/>"
        f"{plural(len(sg.nodes), 'node')} · receives {size}>"
    )
    lines = [
        f"  subgraph cluster_{k} {{",
        f'    label={label}; style="rounded,filled"; fillcolor="#f6f6f6"; '
        f'color="{_border(styles[sg.device])}"; penwidth=2; fontsize=10; margin=10;',
    ]
    for j, n in enumerate(sg.model.graph.node):
        if big and n.op_type == "Constant":
            continue
        this = f"n{k}_{j}"
        for o in n.output:
            producers[o] = this
        for i in node_inputs(n):
            consumers[i].append(this)
        tip = f"{n.name} ({n.op_type}) in {sg.name} on {sg.device}"
        lines.append(
            f"    {this} [{styles[sg.device]}, label={_node_label(n.name, n.op_type)}, "
            f"tooltip={quoted(tip)}];"
        )
    lines.append("  }")
    return lines


def _boundary_nodes(
    tensors: Mapping[str, str], producers: Mapping[str, str], lines: list[str]
) -> dict[str, str]:
    """Boundary tensors as note-shaped nodes after their producer; tensor → node id."""
    ids: dict[str, str] = {}
    for j, (t, info) in enumerate(tensors.items()):
        ids[t] = f"t{j}"
        lines.append(
            f'  t{j} [shape=note, style="filled", fillcolor="#fff7d6", fontsize=8, '
            f"label=<{html_text(t, 40)}<br/>{html_text(info, 60)}>, tooltip={quoted(t)}];"
        )
        if t in producers:
            lines.append(f"  {producers[t]} -> t{j};")
    return ids


def _border(attrs: str) -> str:
    found = re.search(r'fillcolor="(#[0-9A-Fa-f]{6})', attrs)
    return found.group(1) if found else "#555555"


# --------------------------------------------------------------------------- render


def render(dot: str, format: str = "svg", timeout: float = RENDER_TIMEOUT) -> bytes:
    """Render DOT text with the system ``dot`` binary; stopped after ``timeout`` seconds."""
    if format not in FORMATS:
        raise InputError(f"unknown render format {format!r}; use one of {', '.join(FORMATS)}")
    exe = shutil.which("dot")
    if exe is None:
        raise UnsupportedError(
            "GraphViz `dot` was not found on PATH; install graphviz (apt install graphviz, "
            "conda install graphviz) to render graphs"
        )
    try:
        done = subprocess.run(
            [exe, f"-T{format}"],
            input=str(dot).encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise WorkbenchError(
            f"GraphViz `dot` did not finish within {timeout:g} s and was stopped; render a "
            "collapsed view (collapse=True) or raise the timeout"
        ) from None
    if done.returncode != 0:
        raise WorkbenchError(
            f"GraphViz `dot` failed (exit {done.returncode}): "
            f"{done.stderr.decode('utf-8', 'replace').strip()[:500]}"
        )
    return done.stdout


def file_stem(model: onnx.ModelProto, name: str | os.PathLike[str] | None = None) -> str:
    """File-name stem unique per model: a safe version of its name plus a short content hash.

    The hash covers the graph structure and initializer names/shapes, so it is cheap even for
    models beyond 2 GB and differs between models that share a name (OpenVINO names every ONNX
    dump the same).
    """
    base = os.path.splitext(os.path.basename(str(name)))[0] if name else model.graph.name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", base or "model").strip("._") or "model"
    h = hashlib.sha256()
    for node in model.graph.node:
        h.update(
            f"{node.op_type}|{node.name}|{','.join(node.input)}|{','.join(node.output)}\n".encode()
        )
        h.update(b"".join(a.SerializeToString() for a in node.attribute))
    for t in model.graph.initializer:
        h.update(f"{t.name}|{t.data_type}|{list(t.dims)}\n".encode())
        h.update(t.raw_data[:4096])
    return f"{safe[:60]}-{h.hexdigest()[:10]}"
