"""explore(): study records on the demo CNN, Pareto front, errors as records, JSON, cache,
merging, two sweeps in two threads (Dask on real worker processes: test_distributed.py)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import workbench as wb
from workbench.runtime import real_devices
from workbench.study import Record, Study, clear_cache, pareto_front
from workbench.viz.plots import figure_png, tradeoff_plot

FAST = dict(min_time=0.03, rounds=2, warmup=1, bench_items=4)
#: the ORT CPU, plus OpenVINO's CPU where the openvino extra is installed
DEVICES = tuple(["cpu"] + [d.name for d in real_devices() if d.name == "openvino:CPU"])
HAVE_OV = "openvino:CPU" in DEVICES
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
            devices=DEVICES,
            **FAST,
        )


def test_study_records_on_demo_cnn(demo_study, demo_cnn, small_data, artifacts):
    s = demo_study
    hints = ("performance", "accuracy", "performance/f16")
    # one record per distinct setting; every hint is listed by exactly one record per
    # (variant, device)
    for v in ("f32", "f16", "int8"):
        for d in DEVICES:
            listed = [h for r in s.records if (r.variant, r.device) == (v, d) for h in r.hints]
            assert sorted(listed) == sorted(hints), (v, d, listed)
    assert s.variants == ("f32", "f16", "int8") and s.devices == DEVICES
    assert s.hints == hints
    ref = wb.evaluate(demo_cnn, small_data, wb.demo.accuracy)
    for r in s.records:
        assert r.simulated is False and r.hint == r.hints[0] and r.batch == 1
        assert r.host == wb.hostinfo.host_info()
        if r.error:  # a variant another pass could not build: recorded, never faked
            assert r.accuracy is None and r.latency_ms is None and r.variant != "f32"
            continue
        assert 0.0 <= r.accuracy <= 1.0
        assert 0 < r.p10_ms <= r.latency_ms <= r.p90_ms and r.runs >= 2
        lo, hi = r.latency_ci_ms
        assert lo <= r.latency_ms <= hi and len(r.times_ms) == r.runs
        assert len(r.scores) == len(small_data)  # the demo metric gives per-item scores
        assert r.accuracy_ci[0] <= r.accuracy <= r.accuracy_ci[1]
        assert r.throughput == pytest.approx(1e3 / r.latency_ms)
        assert r.model_bytes > 0 and r.build_seconds >= 0
        assert r.precision_ran and r.precision_requested
        if not r.honoured:  # requested ≠ ran is explained
            assert r.notes
    f32 = [r for r in s.records if r.variant == "f32"]
    assert all(r.ok for r in f32)
    assert all(r.accuracy == pytest.approx(ref, abs=1e-9) for r in f32 if r.device == "cpu")
    assert all(r.model_bytes == demo_cnn.ByteSize() for r in f32)
    # ORT runs the stored model whatever the hint: one record lists every hint
    [cpu] = [r for r in f32 if r.device == "cpu"]
    assert cpu.hints == hints
    assert any(n.startswith("hint accuracy: same ort settings") for n in cpu.notes)
    if HAVE_OV:  # OpenVINO never reports f16 on a CPU that cannot run it
        caps = wb.runtime.openvino.device_capabilities("CPU")
        ov16 = next(r for r in f32 if r.device == "openvino:CPU" and "performance/f16" in r.hints)
        assert (ov16.precision_ran == "f16") == ("f16" in caps)
        # accuracy mode is its own OpenVINO setting where the CPU's default precision is lower
        default = wb.runtime.openvino.default_precision("CPU")
        ov_acc = next(r for r in f32 if r.device == "openvino:CPU" and "accuracy" in r.hints)
        assert (ov_acc.hints == ("accuracy",)) == (default != "f32")
    int8 = [r for r in s.records if r.variant == "int8" and r.ok]
    assert all(r.precision_ran == "int8" for r in int8)
    # front, table and plot
    front = s.pareto()
    assert front and all(r.ok for r in front)
    assert all("accuracy" in r.hints for r in s.pareto(hint="accuracy"))
    html = s._repr_html_()
    assert "★" in html and DEVICES[-1] in html
    fig = tradeoff_plot(s)
    (artifacts / "explore_tradeoff.png").write_bytes(figure_png(fig))


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


def test_recommend_and_pareto_delegate(demo_study):
    rec = demo_study.recommend(max_drop=0.01)
    assert rec.record is None or any(rec.record is r for r in demo_study.records)
    ok = [r for r in demo_study.records if r.ok]
    if rec.record is not None:
        assert len(rec.reasons) >= len(ok) - 1  # every other record has its reason
    front = demo_study.pareto()
    assert all(front.mark(r) for r in front)
    rows = demo_study.table_rows()
    assert {row["pareto"] for row in rows} - {""} <= {"★"} | {f"≈{k}" for k in range(1, 20)}


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
        hints=("performance", "accuracy"),
        **FAST,
    )
    by = {r.variant: r for r in s.records}
    assert len(s.records) == 3  # hints failing alike share one record
    assert all(r.hints == ("performance", "accuracy") for r in s.records)
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


def test_cache_is_keyed_by_code_and_bounded_in_bytes(demo_cnn, small_data):
    from workbench.study import CACHE, VariantCache, code_fingerprint

    clear_cache()
    kw = dict(hints=("performance",), **FAST)
    BUILD_CALLS.clear()

    def make_scaled(factor):
        # the same name and qualname each time: only the code / closure tells them apart
        def scaled(model):
            BUILD_CALLS.append(factor)
            return pruned(model)

        return scaled

    wb.explore(demo_cnn, small_data, wb.demo.accuracy, variants=(("v", make_scaled(1)),), **kw)
    wb.explore(demo_cnn, small_data, wb.demo.accuracy, variants=(("v", make_scaled(1)),), **kw)
    wb.explore(demo_cnn, small_data, wb.demo.accuracy, variants=(("v", make_scaled(2)),), **kw)
    assert BUILD_CALLS == [
        1,
        "pruned",
        2,
        "pruned",
    ]  # equal closures share a build; a changed one rebuilds
    # a function redefined under the same name with other code gets another key
    ns1, ns2 = {}, {}
    exec("def f(m):\n    return m", ns1)
    exec("def f(m):\n    print(m)\n    return m", ns2)
    assert code_fingerprint(ns1["f"]) != code_fingerprint(ns2["f"])
    assert code_fingerprint(ns1["f"]) == code_fingerprint(ns1["f"])
    assert code_fingerprint(print) is None  # builtins: never cached
    assert 0 < CACHE.nbytes <= CACHE.max_bytes
    # the byte bound evicts least recently used entries
    small = VariantCache(max_bytes=100)
    small.put("a", b"x" * 60, 0.1, ())
    small.put("b", b"y" * 30, 0.1, ())
    assert small.get("a") is not None  # a is now the most recent
    small.put("c", b"z" * 30, 0.1, ())
    assert small.get("b") is None and small.get("a") and small.get("c")
    assert small.nbytes == 90 and len(small) == 2
    small.put("huge", b"h" * 101, 0.1, ())
    assert small.get("huge") is None


def test_two_sweeps_in_two_threads_are_independent(demo_cnn, small_data, tmodels):
    import threading

    mlp = tmodels.mlp(in_features=64, out_features=10)
    mlp_data = tmodels.labelled_feeds(mlp, 40, seed=1)
    jobs = {
        "cnn": (demo_cnn, small_data, wb.demo.accuracy, ("f32", "f16")),
        "mlp": (mlp, mlp_data, tmodels.agreement, ("f32", "int8")),
    }
    kw = dict(hints=("performance", "accuracy"), devices=DEVICES, **FAST)
    alone = {k: wb.explore(m, d, f, variants=v, **kw) for k, (m, d, f, v) in jobs.items()}
    together: dict = {}
    errors: list = []

    def run(key):
        m, d, f, v = jobs[key]
        try:
            together[key] = wb.explore(m, d, f, variants=v, **kw)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors

    def key(s):
        return [(r.variant, r.device, r.hints, r.accuracy, r.precision_ran, r.error)
                for r in s.records]  # fmt: skip

    for k in jobs:
        assert key(together[k]) == key(alone[k])
        assert all(r.ok for r in together[k].records)
    assert together["cnn"].model_hash != together["mlp"].model_hash


def test_merge_studies_of_one_model(demo_study, demo_cnn, small_data, tmodels):
    other = wb.explore(demo_cnn, small_data, wb.demo.accuracy, variants=("f32", "bf16"),
                       hints=("performance",), **FAST)  # fmt: skip
    merged = Study.merge(demo_study, other)
    assert len(merged.records) == len(demo_study.records) + len(other.records)
    assert merged.variants == ("f32", "f16", "int8", "bf16")
    assert merged.model_hash == demo_study.model_hash and merged.hosts() == (
        wb.hostinfo.host_name(),
    )
    assert Study.merge([demo_study, other]) == merged
    assert Study.from_json(merged.to_json()) == merged
    mlp = tmodels.mlp()
    foreign = wb.explore(mlp, wb.random_dataset(mlp, n=4), lambda run, d: 1.0,
                         variants=("f32",), hints=("performance",), **FAST)  # fmt: skip
    with pytest.raises(wb.InputError, match="different models"):
        Study.merge(demo_study, foreign)


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
                devices=DEVICES,
                **FAST,
            )


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
    assert [r.hints for r in s.records] == [("performance", "accuracy")]  # ORT: one setting
    assert all(r.ok for r in s.records)
    png = out.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert main(["explore", model, "--variants", "f32", "--validation", "nope"]) == 2


def test_same_thread_settings_for_every_backend(demo_cnn):
    from workbench.runtime import RunConfig, open_runner

    config = RunConfig(threads=1)
    ort_run = open_runner(demo_cnn, "cpu", config=config)
    assert ort_run.session.get_session_options().intra_op_num_threads == 1
    if HAVE_OV:
        ov_run = open_runner(demo_cnn, "openvino:CPU", config=config)
        assert int(ov_run.compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    # nothing process-wide changed: a runner without the config gets the backend's default
    assert open_runner(demo_cnn, "cpu").session.get_session_options().intra_op_num_threads == 0
