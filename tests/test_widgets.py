"""Widgets driven without a kernel: set ``.value``, ``.click()``, check state and outputs."""

from __future__ import annotations

import base64
import datetime
import html
import re
import time

import numpy as np
import pytest

import workbench as wb
from workbench.progress import track
from workbench.widgets import (
    AffinityView,
    ConvertPanel,
    ExplorePanel,
    JobControls,
    ModelView,
    TradeoffView,
    Workbench,
)

FAST = {"min_time": 0.05, "rounds": 2}


@pytest.fixture(scope="module")
def data():
    return wb.demo.demo_dataset("test", n=120)


@pytest.fixture(scope="module")
def study(demo_cnn, data):
    return wb.explore(
        demo_cnn,
        data,
        wb.demo.accuracy,
        variants=("f32", "int8"),
        hints=("performance", "accuracy"),
        **FAST,
    )


# --------------------------------------------------------------------------- run / cancel


def test_job_controls_show_progress_result_and_readable_errors():
    job = JobControls(background=False)
    got = []

    def work():
        return sum(track(range(5), "adding"))

    job.start(work, got.append)
    assert job.state == "done" and got == [10] and job.result == 10
    assert (job.progress.value, job.progress.max) == (5, 5)
    assert not job.run_button.disabled and job.cancel_button.disabled

    def bad_input():
        raise wb.InputError("dataset is empty; give at least one item")

    job.start(bad_input, got.append)
    assert job.state == "error" and job.error == "dataset is empty; give at least one item"
    assert "wb-error" in job.status.value and _traceback_hidden(job.status.value)
    assert job.progress.bar_style == "danger"

    job.start(lambda: 1 / 0, got.append)
    assert job.error == "ZeroDivisionError: division by zero"
    assert "ZeroDivisionError" in job.traceback and _traceback_hidden(job.status.value)
    assert html.escape(job.traceback.splitlines()[-1]) in job.status.value


def _traceback_hidden(status: str) -> bool:
    """The message comes first; the traceback only inside a collapsed <details>."""
    before, sep, after = status.partition("<details")
    return "Traceback" not in before and (
        not sep or ("Traceback" in after and " open" not in sep + after[:10])
    )


def test_cancel_stops_background_work():
    job = JobControls(background=True)
    seen = []

    def slow():
        for i in track(range(400), "slow work"):
            seen.append(i)
            time.sleep(0.005)
        return "finished"

    job.start(slow, lambda v: seen.append(v))
    assert job.state == "running" and job.cancel_button.disabled is False
    deadline = time.time() + 10
    while job.progress.value < 3 and time.time() < deadline:
        time.sleep(0.01)
    job.cancel_button.click()
    assert job.wait(10) == "cancelled"
    assert "finished" not in seen and len(seen) < 400
    assert "cancelled" in job.status.value and job.result is None
    assert not job.run_button.disabled and job.cancel_button.disabled


# --------------------------------------------------------------------------- panels


def test_model_view_escapes_hostile_names(tmodels):
    view = ModelView(tmodels.hostile_names())
    assert tmodels.HOSTILE_IMG not in view.table.value
    assert "&lt;img src=x" in view.table.value
    assert view.summary.node_count == 5


def test_convert_panel_int8_then_f16_with_block_list(demo_cnn, data):
    panel = ConvertPanel(demo_cnn, data, wb.demo.accuracy, background=False)
    assert panel.max_drop.disabled and not panel.block_ops.disabled
    panel.variant.value = "int8"
    assert panel.block_ops.disabled and not panel.block_nodes.disabled
    panel.job.run_button.click()
    assert panel.job.state == "done", panel.job.error
    f32, int8 = panel.comparison
    assert f32["model"] == "float32" and int8["model"] == "int8" and int8["ran"] == "int8"
    assert f32["accuracy"] >= 0.95 and int8["accuracy"] >= 0.9
    ops = {n.op_type for n in panel.variant_model.graph.node}
    assert "QuantizeLinear" in ops or "QLinearConv" in ops
    assert "float32 vs variant" in panel.output.value

    panel.variant.value = "f16"
    first_conv = next(n.name for n in demo_cnn.graph.node if n.op_type == "Conv")
    panel.block_nodes.value = [first_conv]
    panel.job.run_button.click()
    assert panel.job.state == "done", panel.job.error
    types = {i.data_type for i in panel.variant_model.graph.initializer}
    assert 10 in types  # FLOAT16 weights
    conv = next(n for n in panel.variant_model.graph.node if n.name == first_conv)
    weight = next(i for i in panel.variant_model.graph.initializer if i.name == conv.input[1])
    assert weight.data_type == 1  # the blocked node kept float32 weights
    assert type(panel.result).__name__ == "Float16Result"
    assert panel.result.kept_float[first_conv]  # with the reason, shown in the panel
    assert "Float16Result" in panel.output.value and first_conv in panel.output.value
    assert abs(panel.comparison[1]["accuracy"] - panel.comparison[0]["accuracy"]) < 0.02


def test_convert_panel_errors_are_messages(demo_cnn):
    panel = ConvertPanel(demo_cnn, background=False)  # no data, no metric
    panel.variant.value = "int8-ac"
    panel.job.run_button.click()
    assert panel.job.state == "error"
    assert "needs data" in panel.job.error and "dataset=" in panel.job.error
    assert panel.variant_model is None and _traceback_hidden(panel.job.status.value)


def test_tradeoff_view_hint_filter(study):
    view = TradeoffView(study)
    assert view.hint.options == ("all", "accuracy", "performance")
    assert view.plot.value.count("<svg") == 1
    # ORT CPU ignores hints: each setting is one record listing both hints
    labels = {", ".join(r.hints) for r in study.records}
    assert all(f"hint {label}" in view.plot.value for label in labels)
    assert view.table.value.count("<tr class=") == len(study.records)
    pareto_rows = re.findall(r'<tr class="[^"]*wb-pareto', view.table.value)
    assert len(pareto_rows) == len(study.pareto())
    view.hint.value = "accuracy"
    assert "hint accuracy" in view.plot.value and "hint performance" not in view.plot.value


def test_tradeoff_view_escapes_hostile_names(tmodels):
    model = tmodels.hostile_names()
    study = wb.explore(
        model,
        wb.random_dataset(model, n=4),
        lambda run, dataset: 1.0,
        variants=["f32", (tmodels.HOSTILE_IMG, lambda m: m)],
        hints=["performance"],
        **FAST,
    )
    view = TradeoffView(study)
    shown = view.table.value + view.plot.value
    assert tmodels.HOSTILE_IMG not in shown and "<img" not in shown
    assert html.escape(tmodels.HOSTILE_IMG) in view.table.value


def test_explore_panel_sweeps_and_reports_bad_choices(demo_cnn, data):
    panel = ExplorePanel(demo_cnn, data, wb.demo.accuracy, background=False, options=FAST)
    panel.variants.value = ["f32", "int8"]
    panel.hints.value = ["performance"]
    panel.job.run_button.click()
    assert panel.job.state == "done", panel.job.error
    assert [(r.variant, r.hint) for r in panel.study.records] == [
        ("f32", "performance"),
        ("int8", "performance"),
    ]
    assert panel.view.study is panel.study and "<svg" in panel.view.plot.value
    panel.hints.value = []
    panel.job.run_button.click()
    assert panel.job.state == "error" and "at least one" in panel.job.error


def test_affinity_view_renders_and_times(demo_cnn, data):
    view = AffinityView(demo_cnn, devices=["npu-sim", "cpu"], dataset=data, background=False)
    view.hint.value = "accuracy"
    view.job.run_button.click()
    assert view.job.state == "done", view.job.error
    assert set(view.affinity.assignments.values()) <= {"npu-sim", "cpu"}
    assert sum(view.affinity.counts().values()) == len(demo_cnn.graph.node)
    assert view.affinity_html.value.count("<svg") == 1
    assert view.subgraphs_html.value.count("<svg") == 1
    assert len(view.profile.rows) == len(view.partitioned.subgraphs)
    assert [b.device for b in view.benches] == ["npu-sim", "cpu"]
    assert all(b.hint == "accuracy" for b in view.benches)
    assert "npu-sim (simulated)" in view.summary.value

    # manual mode: a malformed line is a message, a valid mapping is used as given
    view.mode.value = "manual"
    view.manual.value = "no separator here"
    view.job.run_button.click()
    assert view.job.state == "error" and "node name: device" in view.job.error
    view.manual.value = "\n".join(f"{n.name}: cpu" for n in demo_cnn.graph.node)
    view.job.run_button.click()
    assert view.job.state == "done", view.job.error
    assert set(view.affinity.assignments.values()) == {"cpu"}


# --------------------------------------------------------------------------- the app


def test_workbench_app_end_to_end(demo_cnn, data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = Workbench(demo_cnn, data, wb.demo.accuracy, background=False, explore_options=FAST)
    assert app.tabs.titles == (
        "Model", "Convert", "Hints & devices", "Layers", "Explore", "Report",
    )  # fmt: skip
    assert "digits_cnn" in app.model_view.table.value

    app.convert.variant.value = "mixed"
    app.convert.max_drop.value = 0.01
    app.convert.job.run_button.click()
    assert app.convert.job.state == "done", app.convert.job.error
    assert type(app.convert.result).__name__ == "MixedPrecisionResult"

    app.devices.devices.value = ["gpu-sim", "cpu"]
    app.devices.job.run_button.click()
    assert app.devices.job.state == "done", app.devices.job.error

    # the converted (mixed) model is the variant the Layers tab compares with
    assert app.layers.variant is app.convert.variant_model
    app.layers.job.run_button.click()
    assert app.layers.job.state == "done", app.layers.job.error

    app.explore.variants.value = ["f32", "f16"]
    app.explore.hints.value = ["performance"]
    app.explore.job.run_button.click()
    assert app.explore.job.state == "done", app.explore.job.error

    app.report.path.value = "app_report.html"
    app.report.job.run_button.click()
    assert app.report.job.state == "done", app.report.job.error
    written = tmp_path / "app_report.html"
    assert app.report.written.resolve() == written
    assert 'href="app_report.html"' in app.report.link.value
    text = written.read_text()
    for section in ("recommendation", "model", "study", "tradeoff", "mixed", "affinity",
                    "subgraphs", "profile", "layers", "layer-error"):  # fmt: skip
        assert f'<section id="{section}"' in text, section
    # the widget state is plain data: the report holds the numbers the panels show
    acc = app.explore.study.records[0].accuracy
    assert f"{acc:.4g}" in text
    assert np.isfinite(app.devices.profile.total_ms)


def test_workbench_cancel_in_background(demo_cnn, data):
    app = Workbench(
        demo_cnn, data, wb.demo.accuracy, background=True, explore_options={"min_time": 2.0}
    )
    app.explore.variants.value = ["f32", "f16", "int8"]
    app.explore.hints.value = ["performance", "accuracy"]
    app.explore.job.run_button.click()
    assert app.explore.job.running and app.explore.job.run_button.disabled
    app.explore.job.cancel_button.click()  # the sweep stops at its next progress step
    assert app.explore.job.wait(30) == "cancelled"
    assert app.explore.study is None  # nothing partial is shown
    assert app.explore.view.table.value == ""
    assert not app.explore.job.run_button.disabled


def test_app_picks_model_and_data_files_by_path_and_by_upload(tmp_path, tmodels):
    model = tmodels.mlp(in_features=16, out_features=4)
    path = tmp_path / "mine.onnx"
    wb.save_model(model, path)
    x = np.random.default_rng(0).standard_normal((12, 16)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x, labels=np.arange(12) % 4)
    app = Workbench(background=False)
    assert len(app.tabs.children) == 0 and "pick a model file" in app.title.value
    app.files.model_path.value = str(path)
    app.files.data_path.value = str(tmp_path / "data.npz")
    app.files.metric.value = "top1"
    app.files.job.run_button.click()
    assert app.files.job.state == "done", app.files.job.error
    assert app.tabs.titles[-1] == "Report" and "Layers" in app.tabs.titles
    assert app.explore.dataset is app.files.dataset and len(app.files.dataset) == 12
    assert app.explore.validation_fn.__name__ == "top1"
    # nothing computed yet: Report is disabled and says why
    assert app.report.job.run_button.disabled
    assert "nothing to report yet" in app.report.job.status.value

    # the same files as uploads (FileUpload values), cosine against the f32 model
    up = Workbench(background=False)
    for widget, file in (
        (up.files.model_upload, path),
        (up.files.data_upload, tmp_path / "data.npz"),
    ):
        data = file.read_bytes()
        widget.value = ({"name": file.name, "type": "", "size": len(data),
                         "content": memoryview(data),
                         "last_modified": datetime.datetime.now(datetime.UTC)},)  # fmt: skip
    up.files.metric.value = "cosine"
    up.files.job.run_button.click()
    assert up.files.job.state == "done", up.files.job.error
    assert wb.inspect(up.model).node_count == len(model.graph.node)
    # a bad path is a message with the traceback one click away, not an exception
    bad = Workbench(background=False)
    bad.files.model_path.value = str(tmp_path / "nope.onnx")
    bad.files.job.run_button.click()
    assert bad.files.job.state == "error" and "nope.onnx" in bad.files.job.error
    assert "<details" in bad.files.job.status.value


def test_convert_save_and_download_then_report_enabled(demo_cnn, data, tmp_path):
    app = Workbench(demo_cnn, data, wb.demo.accuracy, background=False)
    assert app.report.job.run_button.disabled
    assert app.convert.save_button.disabled  # nothing converted yet
    app.convert.variant.value = "f16"
    app.convert.job.run_button.click()
    assert app.convert.job.state == "done", app.convert.job.error
    assert not app.convert.save_button.disabled
    link = app.convert.download.value
    assert 'download="digits_cnn_f16.onnx"' in link
    payload = re.search(r'href="data:application/octet-stream;base64,([^"]+)"', link).group(1)
    assert base64.b64decode(payload) == app.convert.variant_model.SerializeToString()
    target = tmp_path / "new folder" / "cnn16.onnx"
    app.convert.save_path.value = str(target)
    app.convert.save_button.click()
    assert target.exists() and app.convert.saved == target
    assert "created folder" in app.convert.download.value
    types = {i.data_type for i in wb.load_model(target).graph.initializer}
    assert 10 in types  # FLOAT16
    app.convert.save_path.value = str(tmp_path / "cnn16.txt")
    app.convert.save_button.click()
    assert "wb-error" in app.convert.download.value and ".onnx" in app.convert.download.value
    # something to report now: the Report button is enabled
    assert not app.report.job.run_button.disabled


def test_explore_banner_shows_the_recommendation(demo_cnn, data):
    panel = ExplorePanel(demo_cnn, data, wb.demo.accuracy, background=False, options=FAST)
    panel.variants.value = ["f32", "f16"]
    panel.hints.value = ["performance"]
    panel.job.run_button.click()
    assert panel.job.state == "done", panel.job.error
    rec = panel.study.recommend(max_drop=panel.max_drop.value)
    assert panel.recommendation is not None and "wb-banner" in panel.banner.value
    assert html.escape(f"Ship {rec.record.label}.") in panel.banner.value
    for label in rec.reasons:
        assert html.escape(label) in panel.banner.value


# --------------------------------------------------------------------------- in JupyterLab

APP_CELL = """\
import workbench as wb
cnn = wb.load_model(wb.demo.demo_model_path("cnn"))
test = wb.demo.demo_dataset("test", n=120)
app = wb.widgets.Workbench(cnn, test, wb.demo.accuracy, explore_options={"min_time": 1.0})
app"""


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server (no token, this folder as root) serving a notebook with the app."""
    import os
    import socket
    import subprocess
    import sys
    import urllib.request

    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell(APP_CELL)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, tmp_path / "app.ipynb")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            f"--port={port}", "--ServerApp.ip=127.0.0.1", "--ServerApp.token=",
            "--ServerApp.password=", f"--ServerApp.root_dir={tmp_path}",
            "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.expose_app_in_browser=True",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "lab.log", "wb"),  # noqa: SIM115 - closed with the process
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError(
                        "JupyterLab did not start: " + (tmp_path / "lab.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def shots(tmp_path_factory):
    """Screenshots at 1280×800, kept as test artifacts in pytest's temporary folder."""
    return tmp_path_factory.mktemp("app-screenshots")


@pytest.mark.slow
@pytest.mark.browser
def test_app_in_jupyterlab_runs_and_cancels(jupyterlab, shots):
    from playwright.sync_api import sync_playwright
    from test_report import CHROMIUM_ARGS, Visit

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        v = Visit(browser, f"{jupyterlab}/lab/tree/app.ipynb", home=jupyterlab, size=(1280, 800))
        page = v.page
        page.wait_for_function(
            "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
            " const k = w && w.sessionContext && w.sessionContext.session"
            " && w.sessionContext.session.kernel; return k && k.status === 'idle'; }",
            timeout=90_000,
        )
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        out = page.locator(".jp-OutputArea-output").first
        news = page.get_by_role("button", name="No")  # JupyterLab's news prompt, not the app
        if news.count():
            news.first.click()
        # nothing to report yet: the Report tab's button is disabled and says why
        out.locator(".lm-TabBar-tab", has_text="Report").click(timeout=90_000)
        assert out.locator("button:visible", has_text="Export report").is_disabled()
        out.get_by_text("nothing to report yet").wait_for(timeout=10_000)
        out.locator(".lm-TabBar-tab", has_text="Convert").click()
        # Convert runs in a background thread of the live kernel; the result arrives as widget state
        out.locator("button:visible", has_text="Convert").click()
        out.get_by_text("float32 vs variant").wait_for(timeout=90_000)
        assert out.locator("a[download]").count() == 1  # Download link for the converted model
        page.screenshot(path=str(shots / "jupyterlab_convert_1280x800.png"))
        assert v.overflowing(".jp-OutputArea-output") == []
        out.locator(".lm-TabBar-tab", has_text="Report").click()
        assert out.locator("button:visible", has_text="Export report").is_enabled()

        out.locator(".lm-TabBar-tab", has_text="Explore").click()
        page.screenshot(path=str(shots / "jupyterlab_explore_1280x800.png"))
        assert v.overflowing(".jp-OutputArea-output") == []
        out.locator("button:visible", has_text="Sweep").click()
        out.locator("button:visible", has_text="Cancel").click()
        out.get_by_text("cancelled (cancelled by user)").wait_for(timeout=90_000)
        assert out.get_by_text("Records (Pareto front highlighted)").count() == 0
        v.check_clean()
        browser.close()
