"""CLI verbs, error lines, demo models."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

import workbench as wb
from workbench.cli import main


def test_cli_inspect(capsys):
    assert main(["inspect", str(wb.demo.demo_model_path("cnn"))]) == 0
    out = capsys.readouterr().out
    assert "Conv×2" in out and "image: float32[N, 1, 8, 8]" in out


def test_cli_inspect_json(capsys):
    assert main(["inspect", "--json", str(wb.demo.demo_model_path("mlp"))]) == 0
    assert json.loads(capsys.readouterr().out)["ops"]["MatMul"] == 3


def test_cli_bench_json(capsys):
    assert (
        main(
            ["bench", str(wb.demo.demo_model_path("mlp")), "--runs", "10", "--json", "--batch", "4"]
        )
        == 0
    )
    r = json.loads(capsys.readouterr().out)
    assert r["runs"] == 10 and r["batch"] == 4 and r["precision_ran"] == "f32"


def test_cli_errors_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    data = wb.demo.demo_model_path("mlp").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[:1000])
    for args, needle in (
        (["inspect", str(tmp_path / "nope.onnx")], "nope.onnx"),
        (["inspect", str(bad)], "bad.onnx"),
        (["bench", str(cut)], "cut.onnx"),
    ):
        p = subprocess.run(
            [sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True
        )
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in p.stderr


def test_demo_models_accuracy(demo_data):
    for name, floor in (("cnn", 0.95), ("mlp", 0.93)):
        acc = wb.evaluate(wb.demo.demo_model_path(name), demo_data, wb.demo.accuracy)
        assert acc >= floor, (name, acc)


def _graph_signature(model: onnx.ModelProto) -> list:
    """What must not change when the demo models are retrained on another CPU: nodes,
    attributes, I/O and initializer names/shapes/dtypes (not the trained values)."""
    g = model.graph
    return [
        [(n.op_type, n.name, list(n.input), list(n.output), str(n.attribute)) for n in g.node],
        [(i.name, tuple(i.dims), i.data_type) for i in g.initializer],
        [str(v) for v in (*g.input, *g.output)],
        [(o.domain, o.version) for o in model.opset_import],
    ]


def _check_rebuild(tmp_path, names, floors):
    """Retrain ``names`` from the shipped digits: same graph, accuracy near the shipped model's.
    Bytes may differ on other CPUs (BLAS kernels round differently), so they are not compared."""
    from workbench.demo.build import build_all

    (tmp_path / "digits.npz").write_bytes((wb.demo.MODELS_DIR / "digits.npz").read_bytes())
    accs = build_all(tmp_path, names)  # one BLAS thread, in a child process
    for name in names:
        shipped = wb.load_model(wb.demo.demo_model_path(name))
        rebuilt = wb.load_model(tmp_path / f"{name}.onnx")
        assert _graph_signature(rebuilt) == _graph_signature(shipped), name
        data = wb.demo.demo_dataset("test", model=name)
        ref = wb.evaluate(shipped, data, wb.demo.accuracy)
        acc = wb.evaluate(rebuilt, data, wb.demo.accuracy)
        # the build reports the accuracy of what it made (numpy there, ORT here: within 2 items)
        assert abs(acc - accs[name]) <= 2 / len(data), (name, acc, accs[name])
        assert acc >= floors[name] and abs(acc - ref) <= 0.03, (name, acc, ref)


def test_demo_models_retrain_to_the_same_graph_and_accuracy(tmp_path):
    _check_rebuild(tmp_path, ("cnn", "mlp"), {"cnn": 0.95, "mlp": 0.93})


@pytest.mark.slow
def test_demo_cnn32_retrains_to_the_same_graph_and_accuracy(tmp_path):
    _check_rebuild(tmp_path, ("cnn32",), {"cnn32": 0.7})


def test_demo_models_are_valid_and_documented():
    """Each shipped demo model passes the full checker and says what it was trained on."""
    for name in wb.demo.DEMO_MODELS:
        model = wb.load_model(wb.demo.demo_model_path(name))
        onnx.checker.check_model(model, full_check=True)
        assert model.producer_name == "precision-workbench-demo"
        assert "held-out top-1 accuracy" in model.doc_string, name


def test_demo_dataset_and_validation_fn(demo_data):
    item = demo_data[0]
    assert item[0].shape == (1, 8, 8) and isinstance(item[1], int)
    feeds = next(demo_data.feeds())
    assert feeds["image"].shape == (1, 1, 8, 8)
    # validation_fn scores a perfect oracle at 1.0 and a constant guess at chance
    labels = np.array([lbl for _, lbl in demo_data])
    oracle = lambda feeds: {"logits": np.eye(10)[labels]}  # noqa: E731
    assert wb.demo.accuracy(oracle, demo_data) == 1.0
    const = lambda feeds: {"logits": np.tile(np.eye(10)[0], (len(labels), 1))}  # noqa: E731
    assert wb.demo.accuracy(const, demo_data) < 0.2
    onnx.checker.check_model(wb.load_model(wb.demo.demo_model_path("cnn")), full_check=True)


def test_cli_demo_writes_outputs(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].endswith("report.html") and str(tmp_path) in out
    data = json.loads((tmp_path / "demo.json").read_text())
    assert data["cnn"]["accuracy"] >= 0.95 and data["cnn32"]["accuracy"] >= 0.7
    story = data["story"]
    # OpenVINO's CPU joins the sweep wherever OpenVINO finds one
    has_ov = any(d.name == "openvino:CPU" for d in wb.devices())
    assert ("openvino:CPU" in story["devices"]) == has_ov
    assert story["subgraphs"] >= 3  # the simulated NPU cannot take Div and Softmax

    study = wb.Study.load(tmp_path / "study.json")
    assert set(study.variants) == {"f32", "f16", "bf16", "mixed", "int8", "int8-ac"}
    assert all(r.ok for r in study.records), [r.error for r in study.records if r.error]
    if has_ov:
        assert {r.hint for r in study.records if r.device == "openvino:CPU"} == {
            "performance",
            "accuracy",
        }
    # the second metric: int8 logits differ from float32's wherever int8 runs
    rows = json.loads((tmp_path / "closeness.json").read_text())["rows"]
    f32 = next(r for r in rows if r["variant"] == "f32" and r["device"] == "cpu")
    int8 = next(r for r in rows if r["variant"] == "int8" and r["device"] == "cpu")
    assert f32["max |error|"] == 0 and int8["max |error|"] > 0 and int8["cosine"] < 1
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "LogitCloseness" in html and "digits_cnn32" in html
    assert ("openvino:CPU" in html) == has_ov


def test_cli_convert_int8_ac_on_unlabelled_npz_with_agreement(tmp_path, capsys):
    feeds = wb.demo.demo_dataset("test", n=32).feeds()
    np.savez(tmp_path / "x.npz", image=np.concatenate([f["image"] for f in feeds]))
    model = str(wb.demo.demo_model_path("cnn"))
    base = ["convert", model, "--to", "int8-ac", "--data", str(tmp_path / "x.npz")]
    assert main([*base, "-o", str(tmp_path / "a.onnx")]) == 2
    assert "needs --validation agreement|module:function" in capsys.readouterr().err
    out = tmp_path / "q.onnx"
    assert main([*base, "--validation", "agreement", "--max-drop", "0.05", "-o", str(out)]) == 0
    assert "int8-ac" in capsys.readouterr().out
    assert any(n.op_type == "QuantizeLinear" for n in wb.load_model(out).graph.node)
