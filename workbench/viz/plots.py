"""Matplotlib figures of studies: the accuracy-versus-latency (or throughput) tradeoff.

Colour = device (one fixed colour per device, shared with the GraphViz renders), marker =
execution hint; Pareto stars are drawn on top of everything, rings for "precision ran ≠
requested" sit under them; labels are placed by ``adjustText`` so they never overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.colors as mcolors
from matplotlib.backends.backend_agg import FigureCanvasAgg

# Figures are built with Figure() directly, never through pyplot's global state, so no backend
# is forced: notebooks keep their inline backend and headless runs need none.
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..figures import PALETTE, clip_label, figure_data_uri, figure_png, figure_svg, ranking_plot
from .colors import WARNING, device_colors

__all__ = [
    "PALETTE",
    "figure_data_uri",
    "figure_png",
    "figure_svg",
    "ranking_plot",
    "tradeoff_plot",
]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "8")
_STRIPE = "#8C8C8C"  # devices beyond the palette


def tradeoff_plot(
    study: Any, title: str | None = None, compact: bool = False, x: str = "latency"
) -> Figure:
    """Accuracy vs median latency (``x="throughput"``: items/s) of a Study.

    Colour per device, marker per hint, confidence interval (or p10–p90) as error bars, one
    label per variant and device, the Pareto front as starred points on a dashed line, points
    whose precision ran ≠ requested ringed in red, failed variants listed under the axes.
    ``compact=True`` draws a smaller figure with larger type for small multiples.
    """
    records = list(study.records)
    ok = [r for r in records if r.ok and _x(r, x) is not None]
    fig, ax, font = _axes(compact)
    colors = {k: v or _STRIPE for k, v in device_colors(r.device for r in records).items()}
    markers = {h: _MARKERS[i % len(_MARKERS)] for i, h in enumerate(_hints(ok))}
    _draw_points(ax, ok, colors, markers, x)
    _draw_mismatches(ax, ok, x)
    front = study.pareto()
    has_front = _draw_front(ax, front, x)
    marks = {id(r): front.mark(r) for r in front} if hasattr(front, "mark") else {}
    log_x = _log_scale(ok, x)
    if log_x:  # values (or their noise) span decades
        ax.set_xscale("log")
    ax.ticklabel_format(axis="y", useOffset=False)
    if ok:  # final limits first: labels are laid out inside them
        ax.margins(x=0.12, y=0.2)
        ax.autoscale_view()
    _draw_labels(ax, ok, x, font, colors, marks)
    failed = sorted({r.variant for r in records if r.error})
    tied = any(m.startswith("≈") for m in marks.values())
    _legend(ax, ok, colors, markers, has_front, tied, failed, compact, font)
    _finish(ax, ok, study, title, x, font)
    return fig


# ----------------------------------------------------------------------------- steps


def _axes(compact: bool) -> tuple[Figure, Any, float]:
    """A figure with an Agg canvas (for label layout; no global backend) and its font size."""
    fig = Figure(figsize=(6.0, 4.6) if compact else (9.5, 5.4), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(), 10.0 if compact else 9.0


def _hints(records: Sequence[Any]) -> list[str]:
    return list(dict.fromkeys(_hint_label(r) for r in records))


def _hint_label(r: Any) -> str:
    """Every hint a record measured (one record stands for hints resolving to one setting)."""
    return ", ".join(getattr(r, "hints", ()) or (r.hint,))


def _x(r: Any, x: str) -> float | None:
    return getattr(r, "throughput", None) if x == "throughput" else r.latency_ms


def _interval(r: Any, x: str) -> tuple[float, float]:
    """(below, above) error-bar lengths: the CI when the record has one, else p10–p90."""
    v = _x(r, x)
    if x == "throughput":
        lo, hi = getattr(r, "throughput_ci", None) or (v, v)
    else:
        lo, hi = getattr(r, "latency_ci_ms", None) or (r.p10_ms or v, r.p90_ms or v)
    return max(v - lo, 0.0), max(hi - v, 0.0)


def _draw_points(
    ax: Any, ok: list[Any], colors: dict[str, str], markers: dict[str, str], x: str
) -> None:
    for r in ok:
        below, above = _interval(r, x)
        ax.errorbar(
            [_x(r, x)],
            [r.accuracy],
            xerr=[[below], [above]],
            fmt=markers[_hint_label(r)],
            color=colors[r.device],
            markersize=7,
            capsize=3,
            alpha=0.9,
            zorder=3,
            markerfacecolor="white" if r.simulated else colors[r.device],
        )


def _draw_mismatches(ax: Any, ok: list[Any], x: str) -> None:
    """Red rings under the points (and under the stars), so both stay visible."""
    mismatched = [r for r in ok if not r.honoured]
    if mismatched:
        ax.scatter(
            [_x(r, x) for r in mismatched],
            [r.accuracy for r in mismatched],
            s=260,
            facecolors="none",
            edgecolors=WARNING,
            linewidths=1.6,
            zorder=2,
        )


def _draw_front(ax: Any, pareto: Any, x: str) -> bool:
    """Pareto records: a dashed line and black-edged gold stars drawn above every point."""
    front = sorted((r for r in pareto if _x(r, x) is not None), key=lambda r: _x(r, x))
    if not front:
        return False
    xs, ys = [_x(r, x) for r in front], [r.accuracy for r in front]
    ax.plot(xs, ys, "--", color="#444444", linewidth=1.1, zorder=1)
    ax.scatter(xs, ys, marker="*", s=150, c="#F2C14E", edgecolors="black", linewidths=0.8, zorder=5)
    return True


def _log_scale(ok: list[Any], x: str) -> bool:
    spread = [v for r in ok for v in (_x(r, x), r.p10_ms, r.p90_ms) if v and v > 0]
    return bool(spread) and max(spread) / min(spread) > 20


def _draw_labels(
    ax: Any, ok: list[Any], x: str, font: float, colors: dict[str, str], marks: dict[int, str]
) -> None:
    """One label per variant and device (at its best point), placed without overlaps.

    The label names the variant in its device's colour, with ``≈k`` when the record is in a
    tied group of the Pareto front. Explicit layout: each label tries
    positions right and left of its point at growing vertical distance (a leader line once it
    moves away) and takes the first whose box overlaps no label placed before it and stays
    inside the axes; when none is free it takes the one overlapping least.
    """
    chosen: dict[tuple[str, str], Any] = {}
    for r in sorted(ok, key=lambda r: (-r.accuracy, _x(r, x) if x == "latency" else -_x(r, x))):
        chosen.setdefault((r.variant, r.device), r)
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    for r in sorted(chosen.values(), key=lambda r: _x(r, x)):
        best: tuple[float, Any, Any] | None = None
        for dx, dy in _LABEL_POSITIONS:
            note = ax.annotate(
                clip_label(r.variant, 24) + _tie(marks.get(id(r), "")), (_x(r, x), r.accuracy),
                xytext=(dx, dy),
                textcoords="offset points", fontsize=font - 1, zorder=6,
                color=_darker(colors[r.device]), ha="left" if dx > 0 else "right",
                arrowprops={"arrowstyle": "-", "color": "#999999", "lw": 0.6} if abs(dy) > 12 else None,
            )  # fmt: skip
            box = note.get_window_extent(renderer).expanded(1.04, 1.1)
            cost = sum(_overlap(box, other) for other in placed) + _outside(box, frame) * 1e6
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, note, box)
            else:
                note.remove()
            if cost == 0:
                break
        assert best is not None
        placed.append(best[2])


#: label offsets in points, nearest first: right, left, then further above and below
_LABEL_POSITIONS = tuple(
    (dx, dy)
    for dy in (6, -14, 18, -26, 30, -38, 42, -50, 54, -62, 66, -74, 78, -86)
    for dx in (5, -5)
)


def _tie(mark: str) -> str:
    return f" {mark}" if mark.startswith("≈") else ""


def _overlap(a: Any, b: Any) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0.0) * max(h, 0.0)


def _outside(box: Any, frame: Any) -> float:
    return float(box.x0 < frame.x0 or box.x1 > frame.x1 or box.y0 < frame.y0 or box.y1 > frame.y1)


def _darker(color: str) -> str:
    """The device colour darkened for text on white (labels stay readable)."""
    r, g, b = mcolors.to_rgb(color)
    return mcolors.to_hex((r * 0.7, g * 0.7, b * 0.7))


def _legend(
    ax: Any,
    ok: list[Any],
    colors: dict[str, str],
    markers: dict[str, str],
    has_front: bool,
    tied: bool,
    failed: list[str],
    compact: bool,
    font: float,
) -> None:
    """Devices (colour; hollow = simulated), hints (marker), Pareto star, mismatch ring, and
    the variants that failed (legend entries take part in the layout, so nothing overlaps)."""
    handles = []
    for dev, sim in dict.fromkeys((r.device, r.simulated) for r in ok):
        face = "white" if sim else colors[dev]
        label = f"{dev} (simulated)" if sim else dev
        handles.append(Line2D([], [], ls="", marker="o", color=colors[dev], mfc=face, label=label))
    for hint, marker in markers.items():
        handles.append(Line2D([], [], ls="", marker=marker, color="#555555", label=f"hint {hint}"))
    if has_front:
        handles.append(
            Line2D([], [], ls="--", marker="*", color="#444444", mfc="#F2C14E", mec="black",
                   ms=11, label="Pareto front")
        )  # fmt: skip
    if tied:
        handles.append(
            Line2D([], [], ls="", marker="$≈$", color="#444444",
                   label="≈k: tied on the front (within noise)")
        )  # fmt: skip
    if any(not r.honoured for r in ok):
        handles.append(
            Line2D([], [], ls="", marker="o", ms=12, mfc="none", mec=WARNING,
                   label="precision ran ≠ requested")
        )  # fmt: skip
    if failed:
        text = clip_label("failed: " + ", ".join(failed) + " (see the records)", 60)
        handles.append(Line2D([], [], ls="", marker="x", color=WARNING, label=text))
    if not handles:
        return
    if compact:
        ax.legend(handles=handles, fontsize=font - 1, loc="upper center",
                  bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)  # fmt: skip
    else:
        ax.legend(handles=handles, fontsize=font, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _finish(ax: Any, ok: list[Any], study: Any, title: str | None, x: str, font: float) -> None:
    if not ok:
        ax.text(
            0.5, 0.5, "no successful measurements", ha="center", va="center", transform=ax.transAxes
        )
    bars = "CI" if any(getattr(r, "latency_ci_ms", None) for r in ok) else "p10–p90"
    ax.set_xlabel(
        f"throughput (items/s); bars: {bars}"
        if x == "throughput"
        else f"median latency per run (ms); bars: {bars}",
        fontsize=font,
    )
    ax.set_ylabel("accuracy (higher is better)", fontsize=font)
    ax.tick_params(labelsize=font - 1)
    name = getattr(study, "model_name", "") or "model"
    ax.set_title(title or f"Accuracy vs {x} — {name}", fontsize=font + 1, loc="center")
    ax.grid(alpha=0.3)
