"""The CLI with your own model and data: --data/--validation, one spelling of precisions, one-line
errors listing the valid choices, no folder created silently, bench/partition/report options."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import workbench as wb
from workbench.cli import main
from workbench.precisions import ONNX_TYPES
from workbench.runtime import open_runner

FAST = ["--min-time", "0.05"]


@pytest.fixture
def own(tmp_path, tmodels):
    """An MLP of our own saved to disk, an .npz of inputs with labels, and one without."""
    model = tmodels.mlp(in_features=16, out_features=4)
    path = tmp_path / "mine.onnx"
    wb.save_model(model, path)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 16)).astype(np.float32)
    # labels from the model itself on most items, so top1 is high but not trivially 1
    run = open_runner(model, "cpu")
    y = np.argmax(run({"x": x})["y"], axis=1)
    run.close()
    y[:4] = (y[:4] + 1) % 4
    np.savez(tmp_path / "labelled.npz", x=x, labels=y)
    np.savez(tmp_path / "plain.npz", x=x)
    return path, tmp_path


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, cwd=cwd
    )


def _one_line_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    return lines[0]


def test_explore_needs_data_for_your_model(own):
    path, tmp = own
    line = _one_line_error(_cli("explore", str(path), "-o", str(tmp / "s.json")))
    assert "mine.onnx needs --data" in line and ".npz" in line
    assert not (tmp / "s.json").exists()


def test_explore_with_labelled_npz_defaults_to_top1_and_accepts_aliases(own, capsys):
    path, tmp = own
    out = tmp / "s.json"
    code = main(["explore", str(path), "--data", str(tmp / "labelled.npz"),
                 "--variants", "fp32,fp16", "--hints", "performance", "-o", str(out), *FAST])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    study = wb.Study.load(out)
    assert {r.variant for r in study.records} == {"f32", "f16"}
    # the verdict ends the output: the chosen setting, then why not each other one
    rec = study.recommend(max_drop=0.01)
    tail = captured.out[captured.out.index("recommendation: ") :]
    assert tail.startswith(f"recommendation: {rec.record.label}")
    assert all(f"- {label}: " in tail for label in rec.reasons)
    f32 = next(r for r in study.records if r.variant == "f32")
    assert f32.accuracy == pytest.approx(20 / 24)  # top1 against the labels, 4 of 24 flipped


@pytest.mark.parametrize("metric", ["top5", "cosine", "mse", "agreement"])
def test_explore_builtin_metrics(own, metric, capsys):
    path, tmp = own
    out = tmp / f"{metric}.json"
    code = main(["explore", str(path), "--data", str(tmp / "labelled.npz"), "--validation",
                 metric, "--variants", "f32", "--hints", "accuracy", "-o", str(out), *FAST])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    acc = wb.Study.load(out).records[0].accuracy
    # the f32 model compared with itself (or 4 classes in a top-5): the best score
    expected = {"top5": 1.0, "cosine": 1.0, "mse": 0.0, "agreement": 1.0}[metric]
    assert acc == pytest.approx(expected, abs=1e-6)


def test_validation_module_from_the_current_folder(own, monkeypatch, capsys):
    path, tmp = own
    (tmp / "mymetrics.py").write_text(
        "import numpy as np\n"
        "def score(run, dataset):\n"
        "    return float(np.mean([run(f)['y'].max() > -1e9 for f in dataset.feeds()]))\n"
    )
    monkeypatch.chdir(tmp)
    monkeypatch.delitem(sys.modules, "mymetrics", raising=False)
    code = main(["explore", str(path), "--data", "plain.npz", "--validation", "mymetrics:score",
                 "--variants", "f32", "--hints", "accuracy", "-o", "s.json", *FAST])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert wb.Study.load(tmp / "s.json").records[0].accuracy == 1.0
    monkeypatch.delitem(sys.modules, "mymetrics", raising=False)


def test_bad_choices_are_one_line_listing_the_choices(own):
    path, tmp = own
    data = str(tmp / "plain.npz")
    cases = [
        (["explore", str(path), "--data", data, "--variants", "f12"], ["f32", "f16", "int8-ac"]),
        (["explore", str(path), "--data", data, "--hints", "fast"], ["performance", "accuracy"]),
        (["explore", str(path), "--data", data, "--validation", "top3"], ["top1", "cosine"]),
        (["explore", str(path), "--data", data, "--validation", "top1"], ["labels"]),
        (["convert", str(path), "--to", "fp8", "-o", str(tmp / "o.onnx")], ["f16", "bf16"]),
        (["partition", str(path), "--mode", "magic"], ["auto", "manual", "combined"]),
        (["bench", str(path), "--hint", "fast"], ["performance/f16"]),
        (["convert", str(path)], ["--to"]),  # argparse's own errors: one line too
    ]
    for args, needles in cases:
        line = _one_line_error(_cli(*args, cwd=tmp))
        assert all(n in line for n in needles), (args, line)


def test_npz_with_wrong_names_lists_the_model_inputs(own):
    path, tmp = own
    np.savez(tmp / "wrong.npz", image=np.zeros((2, 16), np.float32))
    line = _one_line_error(_cli("bench", str(path), "--data", str(tmp / "wrong.npz")))
    assert "model's inputs are x" in line and "missing x" in line


def test_convert_fp16_alias_and_a_new_folder_is_announced(own):
    path, tmp = own
    target = tmp / "missing" / "deeper" / "x.onnx"
    p = _cli("convert", str(path), "--to", "fp16", "-o", str(target))
    assert p.returncode == 0, p.stderr
    assert f"created folder {target.parent}" in p.stderr
    assert "(f16)" in p.stdout
    types = {i.data_type for i in wb.load_model(target).graph.initializer}
    assert types == {ONNX_TYPES["f16"]}


def test_bench_and_partition_take_data_and_hint(own, capsys):
    path, tmp = own
    code = main(["bench", str(path), "--data", str(tmp / "labelled.npz"), "--hint",
                 "accuracy", "--runs", "5", "--json"])  # fmt: skip
    assert code == 0
    r = json.loads(capsys.readouterr().out)
    assert r["hint"] == "accuracy" and r["runs"] == 5
    out = tmp / "parts"
    args = ["partition", str(path), "--devices", "npu-sim,cpu", "--data",
            str(tmp / "plain.npz"), "--runs", "2", "-o", str(out)]  # fmt: skip
    if "hint" in inspect.signature(wb.partition).parameters:
        args += ["--hint", "accuracy"]
    else:  # the engine cannot apply a hint yet: one clear line, not a silent default
        assert main([*args, "--hint", "accuracy"]) == 2
        assert "takes no hint" in capsys.readouterr().err
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "created folder" in captured.err
    assert re.search(r"\b1 node\b|\b\d+ nodes\b", captured.out) and "1 nodes" not in captured.out
    assert len(list(out.glob("*.svg"))) == 3


def test_report_includes_affinity_and_subgraph_renders(own, capsys):
    path, tmp = own
    bench = tmp / "bench.json"
    wb.benchmark(wb.load_model(path), runs=3).to_json(bench)
    out = tmp / "r.html"
    code = main(["report", str(bench), "--model", str(path), "--devices", "npu-sim,cpu",
                 "-o", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    ids = re.findall(r'<section id="([^"]+)"', out.read_text())
    assert "affinity" in ids and "subgraphs" in ids
    assert out.read_text().count("<svg") >= 2
    line = _one_line_error(_cli("report", str(bench), "--devices", "cpu", "-o", str(out)))
    assert "--devices needs --model" in line


def test_layers_verb_profiles_compares_and_reports(own, capsys):
    path, tmp = own
    out = tmp / "lay"
    code = main(["layers", str(path), "--device", "cpu", "--variant", "fp16", "--data",
                 str(tmp / "plain.npz"), "--runs", "3", "-o", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "first divergent tensor" in captured.out and "created folder" in captured.err
    names = sorted(p.name.split(".", 1)[1] for p in out.iterdir())
    assert names == [
        "f16.compare.json", "f16.error.json", "f16.error.svg", "f16.layers.json",
        "f16.layers.svg", "layers.html", "layers.json", "layers.svg",
    ]  # fmt: skip
    html_text = next(out.glob("*.layers.html")).read_text()
    ids = re.findall(r'<section id="([^"]+)"', html_text)
    assert {"layers", "layers-2", "layer-error", "layer-compare"} <= set(ids)
    line = _one_line_error(_cli("layers", str(path), "--variant", "int4"))
    assert "f16, bf16, mixed, int8" in line


def test_image_folder_as_data(tmp_path, tmodels, capsys):
    from PIL import Image

    model = tmodels.small_cnn()  # x[N,1,8,8] → y[N,3]
    path = tmp_path / "cnn.onnx"
    wb.save_model(model, path)
    rng = np.random.default_rng(0)
    run = open_runner(model, "cpu")
    hits = []
    for index, label in enumerate(("a", "b", "c")):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for k in range(3):
            pixels = rng.integers(0, 255, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / label / f"{k}.png")
            x = (pixels.astype(np.float32) / 255)[None, None]
            hits.append(int(np.argmax(run({"x": x})["y"])) == index)
    run.close()
    out = tmp_path / "s.json"
    code = main(["explore", str(path), "--data", str(tmp_path / "imgs"), "--variants", "f32",
                 "--hints", "accuracy", "-o", str(out), *FAST])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    record = wb.Study.load(out).records[0]
    # top1 against the subfolder labels, pixels scaled to [0, 1] (default mean 0, std 1)
    assert record.accuracy == pytest.approx(np.mean(hits))
