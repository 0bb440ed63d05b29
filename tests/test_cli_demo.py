"""CLI verbs, error lines, demo models."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx

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


def test_demo_models_regenerate_bit_for_bit(tmp_path):
    from workbench.demo.build import build_all

    (tmp_path / "digits.npz").write_bytes((wb.demo.MODELS_DIR / "digits.npz").read_bytes())
    code = f"from pathlib import Path; from workbench.demo.build import build_all; build_all(Path({str(tmp_path)!r}))"
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in ("cnn", "mlp"):
        assert (tmp_path / f"{name}.onnx").read_bytes() == wb.demo.demo_model_path(
            name
        ).read_bytes(), name
    assert callable(build_all)


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
    assert str(tmp_path) in out
    data = json.loads((tmp_path / "demo.json").read_text())
    assert data["cnn"]["accuracy"] >= 0.95


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
