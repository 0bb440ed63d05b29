"""Matplotlib figures: ranking bars (sensitivity, accuracy-control impact, per-subgraph time),
and conversion of figures to inline SVG/PNG for widgets and HTML reports.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping

import matplotlib

# Figures are built with Figure() directly, never through pyplot's global state, so no backend
# is forced: notebooks keep their inline backend and headless runs need none.
from matplotlib.figure import Figure

PALETTE = (
    "#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860",
    "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD", "#1B9E77", "#E7298A",
)  # fmt: skip


def ranking_plot(
    values: Mapping[str, float],
    title: str,
    xlabel: str,
    top: int = 20,
    highlight: set[str] | frozenset[str] = frozenset(),
    highlight_label: str = "",
) -> Figure:
    """Horizontal bars of the ``top`` largest values, largest on top; ``highlight`` bars in red.

    Serves the mixed-precision sensitivity plot, the accuracy-control impact ranking and the
    per-subgraph timing bars.
    """
    items = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    names = [k for k, _ in items][::-1]
    vals = [v for _, v in items][::-1]
    fig = Figure(figsize=(7, 0.32 * max(len(items), 3) + 1.2), layout="constrained")
    ax = fig.subplots()
    colors = [PALETTE[3] if n in highlight else PALETTE[0] for n in names]
    ax.barh(range(len(names)), vals, color=colors)
    ax.set_yticks(range(len(names)), labels=[_clip(n) for n in names], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    if highlight and highlight_label:
        from matplotlib.patches import Patch

        ax.legend(
            handles=[
                Patch(color=PALETTE[3], label=highlight_label),
                Patch(color=PALETTE[0], label="other"),
            ],
            loc="lower right",
            fontsize=8,
        )
    if not items:
        ax.text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=ax.transAxes)
    return fig


def _clip(name: str, width: int = 40) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def figure_svg(fig: Figure) -> str:
    """Inline SVG text of a figure (no external fonts: text stays text, XML-escaped by matplotlib)."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg") :]


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """PNG bytes of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def figure_data_uri(fig: Figure, dpi: int = 110) -> str:
    """``data:image/png;base64,...`` for embedding a figure in HTML."""
    return "data:image/png;base64," + base64.b64encode(figure_png(fig, dpi)).decode("ascii")


# ----------------------------------------------------------------------------- tradeoff (issue 7)

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")


def tradeoff_plot(study, title: str | None = None) -> Figure:
    """Accuracy vs median latency of a :class:`workbench.explore.Study`.

    One series (color and marker) per precision hint, p10–p90 latency as error bars, points
    labelled by variant (and device when several), the Pareto front as a dashed line, points
    whose precision ran ≠ requested ringed in red, simulated devices marked "(sim)", failed
    variants listed under the axes.
    """
    records = list(study.records)
    ok = [r for r in records if r.ok]
    several_devices = len({r.device for r in records}) > 1
    fig = Figure(figsize=(9.5, 5.2), layout="constrained")
    ax = fig.subplots()
    hints = list(dict.fromkeys(r.hint for r in ok))
    for i, hint in enumerate(hints):
        pts = [r for r in ok if r.hint == hint]
        x = [r.latency_ms for r in pts]
        y = [r.accuracy for r in pts]
        xerr = [
            [max(r.latency_ms - r.p10_ms, 0.0) for r in pts],
            [max(r.p90_ms - r.latency_ms, 0.0) for r in pts],
        ]
        ax.errorbar(
            x,
            y,
            xerr=xerr,
            fmt=_MARKERS[i % len(_MARKERS)],
            color=PALETTE[i % len(PALETTE)],
            markersize=7,
            capsize=3,
            alpha=0.85,
            label=f"hint {hint}",
        )
    spread = [v for r in ok for v in (r.p10_ms, r.latency_ms, r.p90_ms) if v and v > 0]
    log_x = bool(spread) and max(spread) / min(spread) > 20
    labels: dict[str, tuple[float, float]] = {}
    for r in sorted(ok, key=lambda r: r.latency_ms):
        text = r.variant + (f" @{r.device}" if several_devices else "")
        labels.setdefault(text + (" (sim)" if r.simulated else ""), (r.latency_ms, r.accuracy))
    for text, xy, dy in _label_offsets(labels, log_x):  # one label per variant/device
        ax.annotate(_clip(text, 40), xy, xytext=(5, dy), textcoords="offset points", fontsize=8)
    mismatched = [r for r in ok if not r.honoured]
    if mismatched:
        ax.scatter(
            [r.latency_ms for r in mismatched],
            [r.accuracy for r in mismatched],
            s=220,
            facecolors="none",
            edgecolors=PALETTE[3],
            linewidths=1.5,
            label="precision ran ≠ requested",
        )
    front = list(study.pareto())
    if front:
        ax.plot(
            [r.latency_ms for r in front],
            [r.accuracy for r in front],
            "--",
            color="#444444",
            linewidth=1.2,
            marker="*",
            markersize=12,
            markerfacecolor="none",
            label="Pareto front",
            zorder=0,
        )
    if ok:
        if log_x:  # latencies (or their noise) span decades
            ax.set_xscale("log")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.margins(x=0.08, y=0.12)
    else:
        ax.text(
            0.5, 0.5, "no successful measurements", ha="center", va="center", transform=ax.transAxes
        )
    failed = sorted({r.variant for r in records if r.error})
    if failed:
        ax.text(
            0.0,
            -0.16,
            _clip("failed: " + ", ".join(failed) + " (see study records)", 110),
            transform=ax.transAxes,
            fontsize=8,
            color=PALETTE[3],
            va="top",
        )
    ax.set_xlabel("median latency per run (ms); bars: p10–p90")
    ax.set_ylabel("accuracy (validation_fn, higher is better)")
    ax.set_title(title or f"Accuracy vs latency — {getattr(study, 'model_name', '') or 'model'}")
    ax.grid(alpha=0.3)
    return fig


def _label_offsets(
    labels: dict[str, tuple[float, float]], log_x: bool
) -> list[tuple[str, tuple[float, float], float]]:
    """(text, point, vertical offset in points): labels that would overlap stack upwards."""
    import math

    if not labels:
        return []
    pos = {t: (math.log10(x) if log_x and x > 0 else x, y) for t, (x, y) in labels.items()}
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    dx, dy = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    placed: list[tuple[float, float, int]] = []
    out = []
    for text, xy in labels.items():
        px, py = pos[text]
        # labels run ~30% of the axis to the right: stack on any such neighbour in the band
        near = {k for cx, cy, k in placed if abs(px - cx) / dx < 0.3 and abs(py - cy) / dy < 0.05}
        level = next(k for k in range(len(placed) + 1) if k not in near)
        placed.append((px, py, level))
        out.append((text, xy, 5.0 + 11.0 * level))
    return out
