"""Tradeoff plots read well: labels never overlap, Pareto stars stay visible above the rings,
one fixed colour per device (the same as in GraphViz renders), readable fonts when small."""

from __future__ import annotations

import itertools

import matplotlib.colors as mcolors
import numpy as np
import pytest

from workbench.study import Record, Study
from workbench.viz.colors import device_colors
from workbench.viz.graphs import device_styles
from workbench.viz.plots import figure_svg, tradeoff_plot

DEVICES = ("cpu", "openvino:CPU", "npu-sim")
VARIANTS = ("f32", "f16", "bf16", "mixed", "int8", "int8-ac")


def crowded_study(seed: int = 0) -> Study:
    """18 settings packed close together (the case where labels used to stack on the title),
    some ran another precision than requested, one failed."""
    rng = np.random.default_rng(seed)
    records = []
    for k, (device, variant) in enumerate(itertools.product(DEVICES, VARIANTS)):
        latency = 1.0 + 0.02 * k + rng.uniform(0, 0.01)
        records.append(
            Record(
                variant=variant, device=device, hint="performance",
                precision_requested="bf16" if variant == "bf16" else "f32",
                precision_ran="f32" if variant == "bf16" else "f32",
                accuracy=0.98 + 0.0005 * (k % 3), latency_ms=latency,
                p10_ms=latency * 0.97, p90_ms=latency * 1.03, simulated=device == "npu-sim",
                error="UnsupportedError: no kernel" if (device, variant) == ("npu-sim", "int8-ac")
                else None,
            )
        )  # fmt: skip
    return Study(records=tuple(records), model_name="crowded")


def _texts(fig):
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    return renderer, ax, [t for t in ax.texts if t.get_text()]


@pytest.mark.parametrize("compact", [False, True])
def test_labels_never_overlap_and_stay_inside(compact):
    fig = tradeoff_plot(crowded_study(), compact=compact)
    renderer, ax, texts = _texts(fig)
    assert len(texts) == 17  # one label per variant and device that was measured
    boxes = [t.get_window_extent(renderer) for t in texts]
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)
    title = ax.title.get_window_extent(renderer)
    assert not any(b.overlaps(title) for b in boxes)
    frame = ax.get_window_extent(renderer)
    assert all(frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)


def test_pareto_stars_are_drawn_above_the_rings_and_points():
    study = crowded_study()
    fig = tradeoff_plot(study)
    ax = fig.axes[0]
    stars = [c for c in ax.collections if c.get_paths() and len(c.get_offsets()) == len(
        study.pareto())]  # fmt: skip
    rings = [c for c in ax.collections if len(c.get_facecolors()) == 0]
    assert stars and rings
    assert min(s.get_zorder() for s in stars) > max(r.get_zorder() for r in rings)
    points = [line for line in ax.lines if line.get_marker() not in (None, "None", "")]
    assert all(line.get_zorder() < min(s.get_zorder() for s in stars) for line in points)


def test_device_colours_are_fixed_and_shared_with_graphviz():
    study = crowded_study()
    fig = tradeoff_plot(study)
    legend = fig.axes[0].get_legend()
    shown = {
        t.get_text(): h for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }
    colors = device_colors(DEVICES)
    for device in DEVICES:
        label = f"{device} (simulated)" if device == "npu-sim" else device
        assert mcolors.to_hex(shown[label].get_color()).lower() == colors[device].lower()
    # the same colour in a render, whatever the order of the devices
    styles = device_styles(list(reversed(DEVICES)))
    assert all(f'fillcolor="{colors[d]}"' in styles[d] for d in DEVICES)
    # a plot with only some of the devices keeps their colours
    sub = Study(records=tuple(r for r in study.records if r.device != "cpu"), model_name="x")
    legend = tradeoff_plot(sub).axes[0].get_legend()
    handles = dict(zip((t.get_text() for t in legend.get_texts()), legend.legend_handles,
                       strict=True))  # fmt: skip
    assert mcolors.to_hex(handles["openvino:CPU"].get_color()).lower() == colors[
        "openvino:CPU"].lower()  # fmt: skip


def test_small_multiples_have_readable_fonts():
    """A compact plot shown at half of a 1132 px page keeps text at 11 px or more."""
    fig = tradeoff_plot(crowded_study(), compact=True)
    width_pt = fig.get_size_inches()[0] * 72
    scale = (1132 / 2 - 12) / width_pt  # CSS px per point when the SVG fills half the page
    ax = fig.axes[0]
    sizes = [t.get_fontsize() for t in ax.texts] + [ax.xaxis.label.get_fontsize()]
    sizes += [t.get_fontsize() for t in ax.get_legend().get_texts()]
    assert min(sizes) * scale >= 11, (min(sizes), scale)
    assert "failed: int8-ac" in figure_svg(fig)


def test_tied_records_are_labelled_as_tied():
    """Two settings timed from the same distribution tie (≈1), the faster one stands alone."""
    rng = np.random.default_rng(0)
    records = []
    for variant, latency, accuracy in (("f32", 1.0, 0.9), ("f16", 1.0, 0.9), ("int8", 0.5, 0.85)):
        times = tuple(float(t) for t in rng.normal(latency, 0.05, 40))
        records.append(
            Record(variant=variant, device="cpu", hint="performance", precision_requested="f32",
                   precision_ran="f32", accuracy=accuracy, latency_ms=float(np.median(times)),
                   p10_ms=min(times), p90_ms=max(times), times_ms=times, runs=len(times))
        )  # fmt: skip
    study = Study(records=tuple(records), model_name="ties")
    front = study.pareto()
    marks = {r.variant: front.mark(r) for r in front}
    fig = tradeoff_plot(study)
    labels = {t.get_text() for t in fig.axes[0].texts}
    for variant, mark in marks.items():
        assert (f"{variant} {mark}" if mark.startswith("≈") else variant) in labels
    if any(m.startswith("≈") for m in marks.values()):
        legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert any(t.startswith("≈k: tied") for t in legend)
