"""No verb writes into the current directory (issue: ``sym_shape_infer_temp.onnx`` and ORT's
``<uuid>.data`` files were left there). Every library verb and every CLI command runs with the
current directory set to an empty folder, which must stay empty."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import workbench as wb
from workbench.cli import main


@contextlib.contextmanager
def empty_cwd(path: Path) -> Iterator[Path]:
    """Run the block with ``path`` (created empty) as the current directory; give it back."""
    path.mkdir()
    before = Path.cwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(before)


def leftovers(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def agreement_with(reference: np.ndarray):
    """A ``validation_fn``: top-1 agreement of the first output with ``reference`` arg-maxes."""

    def first_output_agreement(run, dataset) -> float:
        got = np.concatenate([next(iter(run(f).values())) for f in dataset])
        return float(np.mean(got.argmax(-1) == reference[: len(got)]))

    return first_output_agreement


@pytest.fixture(scope="module")
def cnn_and_feeds():
    path = Path(wb.demo.demo_model_path("cnn"))
    feeds = [dict(f) for f in wb.random_dataset(wb.load_model(path), n=6, seed=1).feeds()]
    runner = wb.open_runner(path, "cpu")
    try:
        ref = np.concatenate([next(iter(runner(f).values())) for f in feeds]).argmax(-1)
    finally:
        runner.close()
    return path, feeds, agreement_with(ref)


@pytest.mark.slow
def test_library_verbs_write_nothing_to_cwd(tmp_path, cnn_and_feeds):
    path, feeds, metric = cnn_and_feeds
    out = tmp_path / "out"
    out.mkdir()
    with empty_cwd(tmp_path / "cwd") as cwd:
        wb.inspect(path)
        wb.convert_float16(path)
        wb.convert_float16(path, dtype="bfloat16")
        mixed = wb.auto_mixed_precision(path, feeds, max_evaluations=4)
        wb.quantize_int8(path, feeds)
        with contextlib.suppress(wb.AccuracyNotReachedError):
            wb.quantize_with_accuracy_control(path, feeds, feeds, metric, max_drop=0.2, prune=2)
        wb.benchmark(path, "cpu", dataset=wb.Dataset(feeds), min_time=0.05, warmup=1)
        study = wb.explore(
            path, feeds, metric, devices=("cpu", "npu-sim"),
            hints=("performance",), min_time=0.05, rounds=1, warmup=1, bench_items=1,
        )  # fmt: skip
        aff = wb.affinity(path, ["npu-sim", "cpu"])
        part = wb.partition(path, aff)
        try:
            prof = part.profile(feeds[0], runs=2, warmup=1)
        finally:
            part.close()
        wb.layer_profile(path, "cpu", dataset=wb.Dataset(feeds[:1]), runs=2, warmup=1)
        wb.layer_error(path, wb.convert_float16(path), feeds[:2])
        wb.report(
            study, out / "report.html", model=path, mixed=mixed, partitioned=part, profile=prof
        )
        assert leftovers(cwd) == []
    assert (out / "report.html").is_file()


@pytest.mark.slow
def test_cli_commands_write_nothing_to_cwd(tmp_path, capsys):
    model = Path(wb.demo.demo_model_path("cnn"))
    out = tmp_path / "out"
    out.mkdir()
    data = out / "data.npz"  # one array per model input, first axis = items
    feeds = list(wb.random_dataset(wb.load_model(model), n=6, seed=2).feeds())
    np.savez(data, **{k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]})
    commands = [
        ["inspect", str(model)],
        ["devices"],
        ["convert", str(model), "--to", "f16", "-o", str(out / "f16.onnx")],
        ["convert", str(model), "--to", "int8", "--data", str(data), "-o", str(out / "i8.onnx")],
        ["bench", str(model), "--min-time", "0.05"],
        ["explore", str(model), "--variants", "f32,int8", "--hints", "performance"]
        + ["--min-time", "0.05", "-o", str(out / "study.json")],
        ["partition", str(model), "--devices", "npu-sim,cpu", "--runs", "2", "-o", str(out / "p")],
        ["report", str(out / "study.json"), "-o", str(out / "report.html")],
    ]
    with empty_cwd(tmp_path / "cwd") as cwd:
        for argv in commands:
            code = main(argv)
            assert code == 0, (argv, capsys.readouterr().err)
            assert leftovers(cwd) == [], argv
    assert (out / "report.html").is_file()


@pytest.mark.slow
def test_corpus_int8_writes_nothing_to_cwd(tmp_path, corpus_models):
    """ORT's quantizer tooling saved temporary files relative to the cwd on real models."""
    import corpus

    names = ("magika", "ppocr_cls_v2")  # 15 MB of ORT temporaries landed in the cwd here
    with empty_cwd(tmp_path / "cwd") as cwd:
        for name in names:
            with contextlib.suppress(wb.WorkbenchError):  # failures are test_corpus's business
                wb.quantize_int8(corpus_models[name], corpus.feeds(name, 2))
        assert leftovers(cwd) == []
