"""GraphViz view of a layer profile or a layer error: ``layers_dot(result) -> DotSource``.

One box per executed layer (the original nodes fused into it are listed in its tooltip),
coloured by the precision it ran in (profiles) or by its SQNR band (errors), labelled with its
time or error, with a legend. Beyond :data:`~workbench.viz.graphs.COLLAPSE_NODES` layers the
view collapses to one box per (op, precision) with counts and total time, and says so; beyond
:data:`~workbench.viz.graphs.LIMIT_NODES` the same layout limits as the other renders apply.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

from ..errors import InputError
from ..layers import LayerError, LayerProfile, precision_colors
from .graphs import COLLAPSE_NODES, LIMIT_NODES, DotSource, _header, _luminance, html_text, quoted

#: SQNR bands (dB, lower bound) → colour, worst first
ERROR_BANDS = ((float("-inf"), "#C44E52", "< 10 dB"), (10.0, "#DD8452", "10–20 dB"),
               (20.0, "#CCB974", "20–40 dB"), (40.0, "#55A868", "≥ 40 dB"))  # fmt: skip


def _fill(color: str, dashed: bool = False) -> str:
    font = "white" if _luminance(color) < 0.55 else "black"
    return f'style="filled{",dashed" if dashed else ""}", fillcolor="{color}", fontcolor="{font}"'


def _legend(entries: list[tuple[str, str, int]], title: str) -> list[str]:
    lines = [
        "  subgraph cluster_legend {",
        f'    label=<<b>{html_text(title)}</b>>; style="rounded"; color="#999999"; fontsize=11;',
    ]
    for k, (name, color, count) in enumerate(entries):
        label = f"{html_text(name)}<br/>{count} layers"
        lines.append(f"    legend{k} [shape=box, {_fill(color)}, fontsize=10, label=<{label}>];")
        if k:
            lines.append(f"    legend{k - 1} -> legend{k} [style=invis];")
    lines.append("  }")
    return lines


def _band(sqnr_db: float) -> tuple[str, str]:
    color, name = ERROR_BANDS[0][1], ERROR_BANDS[0][2]
    for low, c, n in ERROR_BANDS:
        if sqnr_db >= low:
            color, name = c, n
    return color, name


def _profile_boxes(p: LayerProfile) -> tuple[list[dict[str, Any]], list[tuple[str, str, int]]]:
    colors = precision_colors([r.precision for r in p.rows])
    unit = "ms (est.)" if p.estimated else "ms"
    boxes = [
        {"key": r.node or r.layer, "nodes": r.nodes or (), "color": colors[r.precision],
         "title": r.node or f"({r.layer})", "op": r.op, "class": r.precision or "data movement",
         "text": f"{r.precision or 'move'} · {r.time_ms:.3g} {unit}",
         "tip": f"{r.layer}: {r.implementation}; fused: {', '.join(r.nodes) or '(inserted)'}"}
        for r in p.rows
    ]  # fmt: skip
    counts = collections.Counter(r.precision for r in p.rows)
    legend = [(k or "data movement", colors[k], counts[k]) for k in colors]
    return boxes, legend


def _error_boxes(e: LayerError) -> tuple[list[dict[str, Any]], list[tuple[str, str, int]]]:
    boxes = []
    counts: collections.Counter[str] = collections.Counter()
    for r in e.node_errors().values():
        color, band = _band(r.sqnr_db)
        counts[band] += 1
        mark = " ◀ first divergence" if r.tensor == e.first_divergent else ""
        boxes.append(
            {"key": r.node, "nodes": (r.node,), "color": color, "title": r.node, "op": r.op,
             "class": band, "text": f"{r.sqnr_db:.3g} dB · cos {r.cosine:.4f}{mark}",
             "tip": f"{r.tensor}: max |err| {r.max_abs:.3g}"}
        )  # fmt: skip
    legend = [(n, c, counts[n]) for _, c, n in ERROR_BANDS if counts[n]]
    return boxes, legend


def _collapsed(boxes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One box per (op, class) — the big-graph view."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for b in boxes:
        groups[(b["op"], b["class"])].append(b)
    return [
        {"key": f"{op}|{cls}", "nodes": tuple(n for b in bs for n in b["nodes"]),
         "color": bs[0]["color"], "title": f"{op} ×{len(bs)}", "op": op, "class": cls,
         "text": cls, "tip": ", ".join(b["title"] for b in bs[:20])}
        for (op, cls), bs in groups.items()
    ]  # fmt: skip


def layers_dot(result: LayerProfile | LayerError, collapse: bool | None = None) -> DotSource:
    """DOT of the executed layers coloured by precision (profile) or by error (layer error)."""
    if isinstance(result, LayerProfile):
        boxes, legend = _profile_boxes(result)
        what = "estimated layer times" if result.estimated else "layer times"
        title = f"{result.model} on {result.device}: precision and {what}"
        legend_title = "precision ran"
    elif isinstance(result, LayerError):
        boxes, legend = _error_boxes(result)
        title = f"{result.model} on {result.device}: error per layer (SQNR vs reference)"
        legend_title = "SQNR"
    else:
        raise InputError(
            f"layers_dot needs a LayerProfile or LayerError, got {type(result).__name__}"
        )
    notes = []
    if collapse is None:
        collapse = len(boxes) > COLLAPSE_NODES
    if collapse:
        notes.append(f"collapsed: {len(boxes)} layers shown as one box per op and "
                     f"{legend_title} (limit {COLLAPSE_NODES} layers per view)")  # fmt: skip
        boxes = _collapsed(boxes)
    big = len(boxes) > LIMIT_NODES
    if big:
        notes.append(f"layout limits applied ({len(boxes)} boxes)")
    lines = _header(title, notes, big)
    owner: dict[str, int] = {}
    for k, b in enumerate(boxes):
        for n in b["nodes"]:
            owner.setdefault(n, k)
        label = f"<{html_text(b['title'], 40)}<br/><i>{html_text(b['op'], 30)}</i><br/>{html_text(b['text'], 50)}>"
        lines.append(f"  b{k} [{_fill(b['color'])}, label={label}, tooltip={quoted(b['tip'])}];")
    lines += _edges(result.edges, owner)
    lines += _legend(legend, legend_title)
    lines.append("}")
    return DotSource("\n".join(lines) + "\n")


def _edges(edges: Any, owner: Mapping[str, int]) -> list[str]:
    """Box-to-box edges; nodes drawn in no box (folded, not compared) are passed through."""
    succ: dict[str, list[str]] = collections.defaultdict(list)
    for a, b in edges:
        succ[a].append(b)
    reach: dict[str, set[int]] = {}

    def boxes_after(node: str) -> set[int]:
        """Boxes first reached from ``node`` through undrawn nodes (iterative, memoised)."""
        if node in reach:
            return reach[node]
        found: set[int] = set()
        stack, seen = list(succ.get(node, ())), set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if n in owner:
                found.add(owner[n])
            else:
                stack.extend(succ.get(n, ()))
        reach[node] = found
        return found

    pairs = {(owner[a], b) for a in owner for b in boxes_after(a) if b != owner[a]}
    return [f"  b{a} -> b{b};" for a, b in sorted(pairs)]
