"""Matplotlib figures of studies: the accuracy-versus-latency tradeoff per precision hint."""

from __future__ import annotations

# Figures are built with Figure() directly, never through pyplot's global state, so no backend
# is forced: notebooks keep their inline backend and headless runs need none.
from matplotlib.figure import Figure

from ..figures import PALETTE, clip_label, figure_data_uri, figure_png, figure_svg, ranking_plot

__all__ = [
    "PALETTE",
    "figure_data_uri",
    "figure_png",
    "figure_svg",
    "ranking_plot",
    "tradeoff_plot",
]

# ----------------------------------------------------------------------------- tradeoff (issue 7)

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")


def tradeoff_plot(study, title: str | None = None) -> Figure:
    """Accuracy vs median latency of a :class:`workbench.study.Study`.

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
        ax.annotate(
            clip_label(text, 40), xy, xytext=(5, dy), textcoords="offset points", fontsize=8
        )
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
            clip_label("failed: " + ", ".join(failed) + " (see study records)", 110),
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
