"""GraphViz renders: escaping of hostile names, colours and legend, boundary labels, big
graphs (layout limits, collapse, timeout), file names, and the `workbench partition` verb."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET

import pytest

import workbench as wb
from workbench.cli import main
from workbench.formatting import format_bytes
from workbench.hardware.partition import PartitionProfile
from workbench.hardware.registry import DeviceProfile
from workbench.viz.colors import DEVICE_PALETTE, WARNING, device_colors
from workbench.viz.graphs import (
    COLLAPSE_NODES,
    DotSource,
    device_styles,
    file_stem,
    render,
    visible,
)

SVG = "{http://www.w3.org/2000/svg}"


def _texts(svg: bytes) -> tuple[list[str], list[str]]:
    """Text of every <text> element and every tooltip of a well-formed SVG."""
    root = ET.fromstring(svg)  # raises on anything that is not well-formed XML
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    titles = [
        v for el in root.iter() for k, v in el.attrib.items() if k.endswith("title")
    ]  # xlink:title = DOT tooltip
    return texts, titles


def test_hostile_names_parse_render_and_stay_escaped(tmodels, artifacts):
    m = tmodels.hostile_dot_names()
    names = [n.name for n in m.graph.node]
    aff = wb.affinity(m, ["npu-sim", "cpu"], mode="combined", manual={names[2]: "cpu"})
    part = wb.partition(m, aff)
    assert len(part.subgraphs) == 3
    for dot in (wb.affinity_dot(m, aff), wb.subgraphs_dot(part)):
        assert isinstance(dot, str)
        svg = render(dot, "svg")
        low = svg.lower()
        assert b"<script" not in low and b"</script" not in low
        texts, titles = _texts(svg)
        for name in names:
            assert visible(name) in texts, name  # shown literally, newline made visible
        assert any(names[2] in t for t in titles)  # backslashes survive DOT escapes (\N, \G)
        assert render(dot, "png").startswith(b"\x89PNG\r\n\x1a\n")
    (artifacts / "hostile_subgraphs.svg").write_bytes(svg)
    # the boundary tensor named like a script tag is labelled with dtype, shape and bytes
    boundary = "</script><script>alert(1)</script>t"
    assert part.tensors[boundary] == "float32[N,32] · ? bytes (dynamic shape)"
    assert visible(boundary) in texts


def test_boundary_tensors_labelled_with_shape_and_bytes(tmodels):
    m = tmodels.cycle_trap()
    part = wb.partition(m, wb.affinity(m, ["npu-sim", "cpu"]))
    dot = wb.subgraphs_dot(part)
    assert dot.count("subgraph cluster_") == len(part.subgraphs) + 1  # + legend
    texts, _ = _texts(render(dot))
    assert texts.count("float32[2,8] · 64 B") == 2  # tensors a and b
    assert "npu-sim (simulated)" in texts  # legend marks simulated devices
    assert any(t.startswith("sg2 · npu-sim (simulated)") for t in texts)
    assert "(splitting at every device change: 3)" in dot
    svg = wb.render(wb.subgraphs_dot(part)).decode()
    assert "<svg" in svg


def test_device_styles_unique_beyond_palette(tmodels):
    names = [f"dev{i}" for i in range(30)]
    styles = device_styles(names, simulated=["dev3"])
    assert len(set(styles.values())) == 30
    filled = [n for n in names if 'style="filled' in styles[n]]
    assert len(filled) == len(DEVICE_PALETTE)  # every colour used once, then stripes
    assert sum("striped" in styles[n] for n in names) == 30 - len(DEVICE_PALETTE)
    assert "dashed" in styles["dev3"] and "dashed" not in styles["dev4"]
    assert all(WARNING not in a for a in styles.values())  # red is kept for warnings
    # 14 devices (OpenVINO's palette of 14 repeats): every device distinguishable in a render
    m = tmodels.chain(n_nodes=14)
    profiles = [DeviceProfile(f"p{i}", precision="f32") for i in range(13)]
    manual = {f"n{i}": f"p{i}" for i in range(13)} | {"n13": "cpu"}
    aff = wb.affinity(m, [*profiles, "cpu"], mode="combined", manual=manual)
    dot = wb.affinity_dot(m, aff)
    node_attrs = [
        line.split(" [")[1].split(", label=")[0]
        for line in dot.splitlines()
        if re.match(r"  n\d+ \[", line)
    ]
    assert len(node_attrs) == 14 and len(set(node_attrs)) == 14
    svg = render(dot)
    fills = {el.get("fill") for el in ET.fromstring(svg).iter(f"{SVG}polygon")}
    assert len(fills) >= 14  # 12 palette colours (+ stripes) + white/none backgrounds


def test_detector_renders_quickly(tmodels, artifacts):
    m = tmodels.detector_like()
    assert 220 <= len(m.graph.node) <= 240
    aff = wb.affinity(m, ["npu-sim", "gpu-sim", "cpu"])
    part = wb.partition(m, aff)
    for label, dot in (
        ("affinity", wb.affinity_dot(m, aff)),
        ("subgraphs", wb.subgraphs_dot(part)),
    ):
        start = time.perf_counter()
        svg = render(dot, "svg")
        assert time.perf_counter() - start < 20
        ET.fromstring(svg)
        (artifacts / f"detector_{label}.svg").write_bytes(svg)


def test_big_graphs_collapse_with_note_and_never_hang(tmodels):
    m = tmodels.transformer_like(blocks=4)
    aff = wb.affinity(m, ["npu-sim", "cpu"])
    dot = wb.affinity_dot(m, aff, collapse=True)
    assert "collapsed to subgraph level: 128 nodes" in dot
    texts, _ = _texts(render(dot))
    assert any("nodes" in t for t in texts)
    part = wb.partition(m, aff)
    collapsed = wb.subgraphs_dot(part, collapse=True)
    assert "collapsed to subgraph level" in collapsed and "float32[" in collapsed
    ET.fromstring(render(collapsed))
    big = wb.affinity_dot(m, aff)  # 128 nodes, drawn in full
    assert "collapsed" not in big
    with pytest.raises(wb.WorkbenchError, match="did not finish within"):
        render(big, timeout=0.001)
    assert COLLAPSE_NODES >= 2000


def test_render_errors():
    with pytest.raises(wb.InputError, match="unknown render format 'jpg'"):
        render("digraph { a }", "jpg")
    with pytest.raises(wb.WorkbenchError, match="GraphViz `dot` failed"):
        render("digraph { a -> }")
    src = DotSource("digraph { a -> b }")
    assert src._repr_svg_().lstrip().startswith("<?xml")


def test_file_stems_never_collide(tmodels):
    a, b = tmodels.mlp(seed=0), tmodels.mlp(hidden=8)
    assert a.graph.name == b.graph.name
    assert file_stem(a) != file_stem(b)
    assert file_stem(a) == file_stem(tmodels.mlp(seed=0))
    assert file_stem(a, "dir/model.onnx").startswith("model-")
    assert file_stem(tmodels.hostile_dot_names()).startswith("graph_name-")


def test_cli_partition_writes_renders_and_profile(tmp_path, tmodels, capsys):
    out = tmp_path / "out"
    paths = []
    for k, model in enumerate((tmodels.cycle_trap(), tmodels.cycle_trap(seed=1))):
        folder = tmp_path / f"m{k}"
        folder.mkdir()
        path = folder / "model.onnx"  # the same file name for both models
        wb.save_model(model, path)
        paths.append(path)
        code = main(["partition", str(path), "--devices", "npu-sim,cpu", "-o", str(out),
                     "--runs", "3"])  # fmt: skip
        assert code == 0
    printed = capsys.readouterr().out
    assert "3 subgraphs on npu-sim, cpu (splitting at every device change: 3)" in printed
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 14  # 7 per model, none overwritten
    suffixes = {f.split(".", 1)[1] for f in files}
    assert suffixes == {
        "affinity.dot", "affinity.svg", "subgraphs.dot", "subgraphs.svg",
        "profile.json", "profile.png", "profile.svg",
    }  # fmt: skip
    prof_file = next(out.glob("*.profile.json"))
    prof = PartitionProfile.from_json(prof_file)
    assert [r.device for r in prof.rows] == ["npu-sim", "cpu", "npu-sim"]
    assert prof.rows[0].precision_ran == "int8"
    for svg in out.glob("*.svg"):
        ET.fromstring(svg.read_bytes())
    code = main(["partition", str(paths[0]), "--devices", "npu-sim", "-o", str(out)])
    assert code == 2
    assert "no device can run node 'b_softmax' (Softmax)" in capsys.readouterr().err


def test_escaping_round_trips_backslashes_and_quotes():
    from workbench.viz.graphs import html_text, quoted

    names = ['q\\"r', "end\\", '\\"', "x\\\\N", "tab\there", "<b>&amp;</b>"]
    dot = "digraph G {" + " ".join(
        f"n{i} [label=<{html_text(n)}>, tooltip={quoted(n)}];" for i, n in enumerate(names)
    ) + "}"  # fmt: skip
    texts, titles = _texts(render(dot))
    assert texts == [visible(n) for n in names] == titles


def test_cli_partition_manual_placement(tmp_path, tmodels, capsys):
    path = tmp_path / "trap.onnx"
    wb.save_model(tmodels.cycle_trap(), path)
    args = ["partition", str(path), "--devices", "edge-cpu-sim,cpu", "-o", str(tmp_path / "o"),
            "--runs", "2", "--mode", "combined"]  # fmt: skip
    assert main([*args, "--manual", "c_add=cpu"]) == 0
    assert "3 subgraphs on edge-cpu-sim, cpu" in capsys.readouterr().out
    assert main([*args, "--manual", "c_add"]) == 2
    assert "--manual 'c_add': write NODE=DEVICE" in capsys.readouterr().err


def test_device_colour_is_fixed_whatever_the_order_or_company():
    a = device_colors(["npu-sim", "cpu", "gpu-sim"])
    b = device_colors(["cpu", "gpu-sim", "npu-sim", "openvino:CPU"])
    assert all(a[n] == b[n] for n in a)
    assert len(set(b.values())) == 4
    styles = device_styles(["gpu-sim", "cpu"])
    assert f'fillcolor="{b["cpu"]}"' in styles["cpu"]


def test_legend_plurals_simulated_note_and_measured_bytes(tmodels):
    m = tmodels.hostile_dot_names()
    names = [n.name for n in m.graph.node]
    aff = wb.affinity(m, ["npu-sim", "cpu"], mode="combined", manual={names[2]: "cpu"})
    part = wb.partition(m, aff)
    feeds = next(wb.random_dataset(m, n=1, dims={"N": 3}).feeds())
    prof = part.profile(feeds, runs=2)
    dot = wb.subgraphs_dot(part, profile=prof)
    texts, _ = _texts(render(dot))
    joined = " ".join(texts)
    assert "1 nodes" not in joined and re.search(r"\b1 node\b", joined)
    assert "dashed border: simulated device" in joined
    assert "? bytes" not in joined  # dynamic sizes: measured, or said to be set at run time
    measured = {r.subgraph: r.boundary_bytes for r in prof.rows}
    for sg in part.subgraphs:
        if sg.boundary_inputs and sg.boundary_bytes is None and len(sg.boundary_inputs) == 1:
            size = format_bytes(measured[sg.name])
            assert any(t.endswith(f"{size} (measured)") for t in texts), size
