"""Matplotlib figure helpers every layer may use: a palette, ranking bars (sensitivity,
accuracy-control impact, per-subgraph time) and figure → inline SVG/PNG conversion.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping

import matplotlib

# Figures are built with Figure() directly, never through pyplot's global state, so no backend
# is forced: notebooks keep their inline backend and headless runs need none.
from matplotlib.figure import Figure
from matplotlib.patches import Patch

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
    ax.set_yticks(range(len(names)), labels=[clip_label(n) for n in names], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    if highlight and highlight_label:
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


def clip_label(name: str, width: int = 40) -> str:
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
