"""explore(): study records on the demo CNN, Pareto front, errors as records, JSON, cache, Dask."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import workbench as wb
from workbench.study import Record, Study, clear_cache, pareto_front
from workbench.viz.plots import figure_png, tradeoff_plot

FAST = dict(min_time=0.03, rounds=2, warmup=1, bench_items=4)
BUILD_CALLS: list[str] = []


def pruned(model: onnx.ModelProto) -> onnx.ModelProto:
    """A real custom variant: weights below 0.05 in magnitude set to zero."""
    BUILD_CALLS.append("pruned")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        a = numpy_helper.to_array(init).copy()
        a[np.abs(a) < 0.05] = 0
        init.CopyFrom(numpy_helper.from_array(a, init.name))
    return out


def broken(model: onnx.ModelProto) -> onnx.ModelProto:
    """A variant no runtime can load."""
    import models

    return models.unknown_op_model()


def raises(model: onnx.ModelProto) -> onnx.ModelProto:
    raise RuntimeError("this pass fails on purpose")


@pytest.fixture(scope="module")
def small_data():
    return wb.demo.demo_dataset("test", n=120)


@pytest.fixture(scope="module")
def demo_study(demo_cnn, small_data):
    with pytest.warns(wb.PrecisionWarning, match="records ran another precision than requested"):
        return wb.explore(
            demo_cnn,
            small_data,
            wb.demo.accuracy,
            variants=("f32", "f16", "int8"),
            hints=("performance", "accuracy", "performance/f16"),
            devices=("cpu", "openvino:CPU"),
            **FAST,
        )


def test_study_records_on_demo_cnn(demo_study, demo_cnn, small_data, artifacts):
    s = demo_study
    assert isinstance(s, Study) and len(s.records) == 3 * 3 * 2
    keys = {(r.variant, r.hint, r.device) for r in s.records}
    assert len(keys) == 18
    assert s.variants == ("f32", "f16", "int8") and s.devices == ("cpu", "openvino:CPU")
    ref = wb.evaluate(demo_cnn, small_data, wb.demo.accuracy)
    for r in s.records:
        assert r.simulated is False
        if r.error:  # a variant another pass could not build: recorded, never faked
            assert r.accuracy is None and r.latency_ms is None and r.variant != "f32"
            continue
        assert 0.0 <= r.accuracy <= 1.0
        assert 0 < r.p10_ms <= r.latency_ms <= r.p90_ms and r.runs >= 2
        assert r.model_bytes > 0 and r.build_seconds >= 0
        assert r.precision_ran and r.precision_requested
        if not r.honoured:  # requested ≠ ran is explained
            assert r.notes
    f32 = [r for r in s.records if r.variant == "f32"]
    assert all(r.ok for r in f32)
    assert all(r.accuracy == pytest.approx(ref, abs=1e-9) for r in f32 if r.device == "cpu")
    assert all(r.model_bytes == demo_cnn.ByteSize() for r in f32)
    # ORT runs the stored model whatever the hint: one shared measurement, said so
    cpu = [r for r in f32 if r.device == "cpu"]
    assert len({r.latency_ms for r in cpu}) == 1
    assert any("measured once" in n for r in cpu[1:] for n in r.notes)
    # OpenVINO never reports f16 on a CPU that cannot run it
    caps = wb.runtime.openvino.device_capabilities("CPU")
    ov16 = next(r for r in f32 if r.device == "openvino:CPU" and r.hint == "performance/f16")
    assert ov16.precision_requested == "f16"
    assert (ov16.precision_ran == "f16") == ("f16" in caps)
    int8 = [r for r in s.records if r.variant == "int8" and r.ok]
    assert all(r.precision_ran == "int8" for r in int8)
    # front, table and plot
    front = s.pareto()
    assert front and all(r.ok for r in front)
    html = s._repr_html_()
    assert "★" in html and "openvino:CPU" in html
    fig = tradeoff_plot(s)
    (artifacts / "explore_tradeoff.png").write_bytes(figure_png(fig))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert {"hint performance", "hint accuracy", "Pareto front"} <= set(labels)


def _rec(variant, acc, lat, hint="performance", **kw):
    return Record(
        variant=variant,
        device="cpu",
        hint=hint,
        accuracy=acc,
        latency_ms=lat,
        p10_ms=lat,
        p90_ms=lat,
        **kw,
    )


def test_pareto_on_synthetic_records():
    recs = (
        _rec("a", 0.99, 10.0),
        _rec("b", 0.98, 5.0),
        _rec("c", 0.97, 6.0),  # dominated by b
        _rec("d", 0.90, 1.0),
        _rec("e", 0.99, 12.0),  # dominated by a
        _rec("f", 0.99, 10.0, hint="accuracy"),  # ties with a: both stay
        _rec("g", 1.00, 50.0),
        Record("h", "cpu", "performance", error="build failed"),
        _rec("i", 0.95, 5.0),  # dominated by b (same latency, lower accuracy)
    )
    s = Study(records=recs)
    assert [r.variant for r in s.pareto()] == ["d", "b", "a", "f", "g"]
    assert [r.variant for r in s.pareto(hint="accuracy")] == ["f"]
    assert [r.variant for r in pareto_front(recs[:3])] == ["b", "a"]
    assert pareto_front([]) == ()
    # best within an accepted drop from the f32 baseline (0.99 here)
    base = Study(records=(_rec("f32", 0.99, 10.0), *recs[1:]))
    assert base.baseline() == 0.99
    assert base.best(max_drop=0.01).variant == "b"
    assert base.best(max_drop=0.1).variant == "d"
    assert base.best(max_drop=0.0).variant == "f32"
    assert Study(records=recs).best() is None  # no f32 record, no baseline


def test_failing_variants_are_records(demo_cnn, small_data):
    s = wb.explore(
        demo_cnn,
        small_data,
        wb.demo.accuracy,
        variants=("f32", ("broken", broken), ("raises", raises)),
        hints=("performance",),
        **FAST,
    )
    by = {r.variant: r for r in s.records}
    assert by["f32"].ok
    assert "cannot load" in by["broken"].error and by["broken"].accuracy is None
    assert "fails on purpose" in by["raises"].error and by["raises"].latency_ms is None
    assert {b.variant: bool(b.error) for b in s.builds} == {
        "f32": False,
        "broken": False,
        "raises": True,
    }
    assert "failed" in s._repr_html_() or "fails on purpose" in s._repr_html_()
    with pytest.raises(wb.InputError, match="unknown variant 'fp64'"):
        wb.explore(demo_cnn, small_data, wb.demo.accuracy, variants=("fp64",))


def test_json_roundtrip_and_dataframe(demo_study, tmp_path):
    again = Study.from_json(demo_study.to_json())
    assert again == demo_study
    path = demo_study.save(tmp_path / "study.json")
    assert Study.load(path) == demo_study
    json.loads(path.read_text())
    df = demo_study.to_dataframe()
    assert len(df) == len(demo_study.records) and df["pareto"].sum() == len(demo_study.pareto())


def test_variants_built_once_and_cached(demo_cnn, small_data):
    clear_cache()
    BUILD_CALLS.clear()
    kw = dict(variants=("f32", ("pruned", pruned)), hints=("performance", "accuracy"), **FAST)
    first = wb.explore(demo_cnn, small_data, wb.demo.accuracy, **kw)
    second = wb.explore(demo_cnn, small_data, wb.demo.accuracy, **kw)
    assert BUILD_CALLS == ["pruned"]  # once, for two hints and two sweeps
    assert [b.cached for b in second.builds] == [False, True]
    acc = lambda s: [(r.variant, r.hint, r.accuracy) for r in s.records]  # noqa: E731
    assert acc(first) == acc(second)


def test_dataset_passed_unchanged_and_cancellable(demo_cnn, small_data):
    seen = []

    def validation(run, data):
        seen.append(data)
        return wb.demo.accuracy(run, data)

    from workbench.progress import CancelToken, cancellable, progress_sink

    events = []
    with progress_sink(lambda desc, done, total, post: events.append((desc, done, total))):
        wb.explore(demo_cnn, small_data, validation, variants=("f32",), hints=("accuracy",), **FAST)
    assert seen and all(d is small_data for d in seen)
    measure = [(done, total) for desc, done, total in events if desc == "explore: measure"]
    assert measure[-1] == (3, 3)  # 1 accuracy step + 2 timing rounds, all reported
    assert [d for d, _ in measure] == sorted(d for d, _ in measure)

    token = CancelToken()

    def sink(desc, done, total, postfix):
        if desc.startswith("explore: measure") and done >= 1:
            token.cancel("stop")

    with pytest.raises(wb.OperationCancelled):
        with cancellable(token), progress_sink(sink):
            wb.explore(
                demo_cnn,
                small_data,
                wb.demo.accuracy,
                variants=("f32", ("pruned", pruned)),
                hints=("performance",),
                devices=("cpu", "openvino:CPU"),
                **FAST,
            )


def test_dask_cluster_matches_local(demo_cnn, small_data, tmp_path):
    distributed = pytest.importorskip("distributed")
    kw = dict(
        variants=("f32", ("pruned", pruned)),
        hints=("performance", "accuracy"),
        devices=("cpu", "openvino:CPU"),
        **FAST,
    )
    local = wb.explore(demo_cnn, small_data, wb.demo.accuracy, **kw)
    with (
        distributed.LocalCluster(
            processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = wb.explore(demo_cnn, small_data, wb.demo.accuracy, client=client, **kw)
        # the CLI reaches the same cluster by its scheduler address
        from workbench.cli import main

        out = tmp_path / "remote.json"
        model = str(wb.demo.demo_model_path("cnn"))
        args = ["explore", model, "--variants", "f32", "--hints", "accuracy", "--min-time", "0.03"]
        assert main([*args, "--scheduler", cluster.scheduler_address, "-o", str(out)]) == 0
        assert [r.ok for r in Study.load(out).records] == [True]

    def key(s):
        return [
            (r.variant, r.device, r.hint, r.accuracy, r.precision_ran, r.error) for r in s.records
        ]

    assert key(remote) == key(local)
    assert all(r.ok and r.runs >= 2 for r in remote.records)


def test_cli_explore(tmp_path):
    from workbench.cli import main

    out = tmp_path / "study.json"
    model = str(wb.demo.demo_model_path("cnn"))
    code = main(
        ["explore", model, "--data", "demo", "--variants", "f32", "--hints", "performance",
         "accuracy", "--min-time", "0.03", "-o", str(out)]
    )  # fmt: skip
    assert code == 0
    s = Study.load(out)
    assert [r.hint for r in s.records] == ["performance", "accuracy"]
    assert all(r.ok for r in s.records)
    png = out.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert main(["explore", model, "--variants", "f32", "--validation", "nope"]) == 2


def test_same_thread_settings_for_every_backend(demo_cnn):
    from workbench.runtime import RunConfig, open_runner

    config = RunConfig(threads=1)
    ort_run = open_runner(demo_cnn, "cpu", config=config)
    ov_run = open_runner(demo_cnn, "openvino:CPU", config=config)
    assert ort_run.session.get_session_options().intra_op_num_threads == 1
    assert int(ov_run.compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    # nothing process-wide changed: a runner without the config gets the backend's default
    assert open_runner(demo_cnn, "cpu").session.get_session_options().intra_op_num_threads == 0
