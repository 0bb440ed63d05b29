"""Pareto front with ties and the recommendation with reasons (workbench.recommendation).

Records here are ``study.Record`` objects built by hand so the verdict is tested on its own;
the integration test at the end runs a real ``wb.explore``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.errors import InputError
from workbench.recommendation import (
    Compared,
    Recommendation,
    pareto_front,
    recommend,
    record_labels,
)
from workbench.study import Record


def Rec(variant: str, device: str = "cpu", hint: str = "performance", **fields) -> Record:
    """A ``study.Record`` built by hand, with the defaults these tests share."""
    return Record(variant=variant, device=device, hint=hint, **fields)


N_ITEMS = 400
TRUTH = (np.random.default_rng(42).random(N_ITEMS) < 0.9).astype(float)


def mk(variant, ms, flips=0, seed=0, n_items=N_ITEMS, spread=0.08, **kw):
    """A measured record: ``ms`` median latency, ``flips`` items wrong that f32 gets right."""
    rng = np.random.default_rng([seed, len(variant), int(ms * 1000)])
    times = tuple(float(t) for t in rng.lognormal(math.log(ms), spread, 300))
    scores = TRUTH[:n_items].copy()
    right = np.flatnonzero(scores == 1)[:flips]
    scores[right] = 0.0
    return Rec(
        variant,
        accuracy=float(scores.mean()),
        scores=tuple(scores),
        latency_ms=float(np.median(times)),
        times_ms=times,
        **kw,
    )


def test_identical_settings_are_tied_and_grouped():
    a, b = mk("f32", 10.0, seed=1), mk("f32-copy", 10.0, seed=2)
    slow = mk("int8", 20.0, seed=3, flips=1)
    front = pareto_front([a, b, slow])
    assert len(front.groups) == 1 and {r.variant for r in front.groups[0]} == {"f32", "f32-copy"}
    assert front.mark(a) == front.mark(b) == "≈1" and front.mark(slow) == ""
    assert slow not in front
    cmp = Compared([a, b, slow])
    assert cmp.tied(0, 1) and cmp.speed(2, 0) == 1


def test_dominated_only_when_significantly_worse():
    f32 = mk("f32", 10.0, seed=1)
    noisy_faster = mk("f16", 9.9, seed=2, flips=1)  # 1% faster, one item lost: all noise
    fast = mk("int8", 5.0, seed=3, flips=2)  # 2× faster, two items lost (noise)
    worse = mk("bf16", 4.0, seed=4, flips=60)  # fastest, clearly less accurate
    front = pareto_front([f32, noisy_faster, fast, worse])
    # f32 and f16 are dominated by int8 (as accurate within noise, much faster)
    assert [r.variant for r in front] == ["bf16", "int8"]
    assert [len(g) for g in front.groups] == [1, 1]
    assert front.mark(worse) == "★"


def test_numbers_without_spread_keep_the_old_semantics():
    """Records with a single accuracy and no per-run times: compared as numbers, with
    latency differences under the minimum effect as ties."""

    def r(v, acc, lat, hint="performance"):
        return Rec(v, hint=hint, accuracy=acc, latency_ms=lat)

    recs = [
        r("a", 0.99, 10.0),
        r("b", 0.98, 5.0),
        r("c", 0.97, 6.0),
        r("d", 0.90, 1.0),
        r("e", 0.99, 12.0),
        r("f", 0.99, 10.0, hint="accuracy"),
        r("g", 1.00, 50.0),
        Rec("h", error="build failed"),
        r("i", 0.95, 5.0),
        r("j", 0.99, 10.2),  # 2% slower than a: within the minimum effect, tied
    ]
    front = pareto_front(recs)
    assert [r.variant for r in front] == ["d", "b", "a", "f", "j", "g"]
    assert [len(g) for g in front.groups] == [1, 1, 3, 1]
    assert pareto_front([]) == ()


def test_estimated_records_are_kept_apart():
    f32 = mk("f32", 10.0, seed=1)
    sim = Rec("f16", device="npu-sim", accuracy=f32.accuracy, latency_ms=1.0, simulated=True)
    front = pareto_front([f32, sim])
    assert front.groups == ((f32,),) and front.estimated_groups == ((sim,),)
    mixed = pareto_front([f32, sim], mix_estimated=True)
    assert mixed.groups == ((sim,),) and mixed.estimated_groups == ()
    rec = recommend([f32, sim])
    assert rec.record is f32
    assert "simulated" in rec.reasons["f16 on npu-sim"]


def test_recommend_fastest_within_max_drop_with_reasons():
    recs = [
        mk("f32", 10.0, seed=1, model_bytes=400),
        mk("f16", 10.1, seed=2, model_bytes=200, precision_requested="f16", precision_ran="f32"),
        mk("int8", 6.0, seed=3, flips=2, model_bytes=100, notes=("why: QLinearConv with VNNI",)),
        mk("bf16", 5.0, seed=4, flips=40),
        Rec("mixed", error="ValueError: boom\nTraceback..."),
    ]
    rec = recommend(recs, max_drop=0.01)
    assert rec.record is recs[2] and rec.label == "int8 on cpu" and rec.status == "ok"
    assert rec.baseline is recs[0]
    labels = record_labels(recs)
    assert set(rec.reasons) == set(labels) - {"int8 on cpu"}  # every other record has a reason
    assert rec.reasons["mixed on cpu"] == "mixed on cpu: failed — ValueError: boom"
    assert "requested f16, ran f32" in rec.reasons["f16 on cpu"]
    assert "same speed as f32" in rec.reasons["f16 on cpu"]
    assert "exceeds max_drop" in rec.reasons["bf16 on cpu"]
    assert "slower than the choice int8 on cpu" in rec.reasons["f32 on cpu"]
    assert "faster than f32" in rec.summary and "Holm" in rec.summary
    assert "McNemar" in rec.summary
    # the "why:" hook and a callable hook add facts to reasons
    rec2 = recommend(recs, max_drop=0.2, why=lambda r: f"{r.variant} fact")
    assert rec2.record is recs[3]
    assert "QLinearConv with VNNI" in rec2.reasons["int8 on cpu"]
    assert "int8 fact" in rec2.reasons["int8 on cpu"]
    # deterministic
    assert recommend(recs).to_dict() == rec.to_dict()


def test_ties_broken_by_accuracy_then_model_size():
    f32 = mk("f32", 10.0, seed=1, model_bytes=400)
    big = mk("a", 5.0, seed=2, model_bytes=300)
    small = mk("b", 5.0, seed=3, model_bytes=100)
    rec = recommend([f32, big, small])
    assert rec.record is small and rec.ties == (big,)
    assert "tied with the choice b on cpu" in rec.reasons["a on cpu"]
    assert "smaller model" in rec.reasons["a on cpu"]
    # as fast, smaller, but significantly less accurate: loses (and is no tie)
    worse = mk("c", 4.9, seed=4, flips=36, model_bytes=50)
    rec = recommend([f32, big, small, worse], max_drop=0.1)
    assert rec.record is small and rec.ties == (big,)
    assert "less accurate" in rec.reasons["c on cpu"]
    # one item lost is noise: the accuracy tie goes on to model size
    noise = mk("d", 4.9, seed=5, flips=1, model_bytes=50)
    rec = recommend([f32, big, small, noise])
    assert rec.record is noise and {r.variant for r in rec.ties} == {"a", "b"}
    # same size, same accuracy: the lower median
    twin = mk("e", 5.0, seed=6, model_bytes=100)
    rec = recommend([f32, small, twin])
    faster = min((small, twin), key=lambda r: r.latency_ms)
    assert (
        rec.record is faster
        and "lower median" in rec.reasons["e on cpu" if faster is small else "b on cpu"]
    )


def test_nothing_within_max_drop_shows_the_closest():
    f32 = mk("f32", 10.0, seed=1)
    int8 = mk("int8", 5.0, seed=2, flips=20)
    bf16 = mk("bf16", 4.0, seed=3, flips=60)
    rec = recommend([f32, int8, bf16], max_drop=0.01)
    assert rec.record is f32 and rec.status == "nothing within max_drop"
    assert rec.closest is int8
    assert "closest is int8 on cpu" in rec.summary
    relative = recommend([f32, int8, bf16], max_drop=0.06, drop_type="relative")
    assert relative.record is int8  # 20 / 360 correct ≈ 5.6% relative drop
    with pytest.raises(InputError):
        recommend([f32], drop_type="percent")


def test_too_few_items_cannot_resolve_max_drop():
    f32 = mk("f32", 10.0, seed=1, n_items=64)
    int8 = mk("int8", 5.0, seed=2, n_items=64)
    rec = recommend([f32, int8], max_drop=0.01)
    assert rec.status == "unresolved"
    assert "steps of 0.0156" in rec.summary and "cannot resolve" in rec.summary
    lossy = mk("int8", 5.0, seed=2, n_items=64, flips=1)
    strict = recommend([f32, lossy], max_drop=0.0)  # no drop at all; one item lost is noise
    assert strict.record is f32 and strict.status == "unresolved"
    assert "may also hold for int8 on cpu" in strict.summary


def test_device_filter_and_failed_records():
    recs = [mk("f32", 10.0, seed=1), mk("f32", 3.0, seed=2, device="openvino:CPU")]
    rec = recommend(recs, device="cpu")
    assert rec.record is recs[0]
    assert "not considered" in rec.reasons["f32 on openvino:CPU"]
    none = recommend([Rec("f32", error="boom")])
    assert none.record is None and none.status == "no records" and none.reasons
    odd = [
        recs[0],
        Rec("nan", accuracy=float("nan"), latency_ms=1.0),
        Rec("zero", accuracy=0.9, latency_ms=0.0),
    ]
    rec = recommend(odd)
    assert rec.record is recs[0]
    assert "not comparable" in rec.reasons["nan on cpu"] + rec.reasons["zero on cpu"]
    assert pareto_front(odd) == (recs[0],)
    sims = [
        Rec("f32", device="npu-sim", accuracy=0.9, latency_ms=4.0, simulated=True),
        Rec("f16", device="npu-sim", accuracy=0.9, latency_ms=2.0, simulated=True),
    ]
    rec = recommend(sims)  # only estimates: compared among themselves, and said so
    assert rec.record is sims[1] and "estimates" in rec.summary


def test_throughput_objective_compares_batches():
    def tp(variant, batch, items_s):
        return Rec(
            variant,
            batch=batch,
            accuracy=0.9,
            latency_ms=batch * 1000 / items_s,
            throughput=items_s,
            throughput_ci=(items_s * 0.98, items_s * 1.02),
        )

    recs = [tp("f32", 1, 100.0), tp("f32", 8, 400.0), tp("int8", 8, 900.0)]
    by_latency = recommend(recs)
    assert by_latency.record is recs[0]
    assert "not comparable" in by_latency.reasons["f32 on cpu batch 8"]
    by_tp = recommend(recs, objective="throughput")
    assert by_tp.record is recs[2]
    assert "2.25× slower than the choice" in by_tp.reasons["f32 on cpu batch 8"]


def test_recommendation_round_trip_and_html_escapes():
    evil = "<script>alert(1)</script>"
    recs = [mk("f32", 10.0, seed=1), mk(evil, 5.0, seed=2, device="cpu&<b>")]
    rec = recommend(recs)
    back = Recommendation.from_json(rec.to_json())
    assert back == rec and back.record == rec.record
    page = rec._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page and "cpu&amp;&lt;b&gt;" in page
    assert repr(rec).startswith("Recommendation(")


def test_labels_are_unique_and_minimal():
    recs = [
        Rec("f32", hint="performance"),
        Rec("f32", hint="accuracy"),
        Rec("int8", hints=("performance", "accuracy")),
        Rec("f16", batch=1),
        Rec("f16", batch=1),
        Rec("bf16", batch=1),
        Rec("bf16", batch=8),
    ]
    assert record_labels(recs) == [
        "f32 on cpu [performance]",
        "f32 on cpu [accuracy]",
        "int8 on cpu",
        "f16 on cpu",
        "f16 on cpu #2",
        "bf16 on cpu batch 1",
        "bf16 on cpu batch 8",
    ]


def _identical_copy(model):
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.doc_string = "same computation, other bytes"
    return out


def _broken(model):
    raise ValueError("this variant cannot be built")


def test_recommend_on_a_real_sweep(demo_cnn):
    import warnings

    import workbench as wb
    from workbench.recommendation import reasons_by_record

    data = wb.demo.demo_dataset("test", n=96)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wb.PrecisionWarning)
        study = wb.explore(
            demo_cnn,
            data,
            wb.demo.accuracy,
            variants=["f32", ("f32-copy", _identical_copy), "f16", ("broken", _broken)],
            hints=["performance"],
            min_time=0.2,
            threads=1,
        )
    rec = study.recommend(max_drop=0.01)
    assert rec == recommend(study.records, 0.01)
    labels = record_labels(study.records)
    assert rec.record in study.records and rec.label in labels
    assert set(rec.reasons) == set(labels) - {rec.label}  # every other record has its reason
    assert "failed" in rec.reasons["broken on cpu"]
    assert [bool(x) for x in reasons_by_record(rec, study.records)] == [
        r is not rec.record for r in study.records
    ]
    # identical computation: the same item scores, so their accuracies are tied by the test
    f32, copy = (next(r for r in study.records if r.variant == v) for v in ("f32", "f32-copy"))
    cmp = Compared([f32, copy])
    assert cmp.accuracy(0, 1) == 0 and cmp.test_of[(0, 1)] == "identical item scores"
    front = study.pareto()
    assert all(r.ok for r in front) and front.groups
    back = Recommendation.from_json(rec.to_json())
    assert back.record == rec.record and back.reasons == rec.reasons
    assert "<script" not in rec._repr_html_()


def test_accuracy_from_intervals_when_scores_are_missing():
    """Records loaded without per-item scores but with intervals: an unpaired normal test."""
    a = Rec("f32", accuracy=0.90, accuracy_ci=(0.88, 0.92), latency_ms=10.0)
    b = Rec("int8", accuracy=0.80, accuracy_ci=(0.78, 0.82), latency_ms=10.0)
    c = Rec("f16", accuracy=0.895, accuracy_ci=(0.875, 0.915), latency_ms=10.0)
    cmp = Compared([a, b, c])
    assert cmp.test_of[(0, 1)] == "normal from intervals (unpaired)"
    assert cmp.accuracy(0, 1) == 1 and cmp.accuracy(0, 2) == 0
    assert [len(g) for g in pareto_front([a, b, c]).groups] == [2]
