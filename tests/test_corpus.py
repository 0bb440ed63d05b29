"""Every verb on every real model of the corpus (tests/corpus.py) agrees with float32.

Models come from PyPI packages (PyTorch torch.onnx and dynamo, ultralytics, tf2onnx,
paddle2onnx at opsets 11/12, onnxmltools/ai.onnx.ml, If subgraphs). Agreement is
:func:`corpus.agreement` (mean cosine similarity of the float outputs with the float32 model's
on the same realistic inputs); the least agreement per verb is :data:`corpus.TOLERANCE`, set
from what each precision can represent, not from one machine's numbers.
"""

from __future__ import annotations

import corpus
import pytest

pytestmark = pytest.mark.slow

#: inputs per model: calibration, mixed-precision checks and agreement all use these
ITEMS = 2
CASES = [(e.name, v) for e in corpus.ENTRIES for v in corpus.VERBS]


@pytest.fixture(scope="module")
def references(corpus_models):
    """Per model: realistic inputs, the float32 outputs of a plain ORT session, and the
    agreement of ORT's plain ``quantize_static`` (None where it fails) on those inputs."""
    out = {}
    for name, path in corpus_models.items():
        items = corpus.feeds(name, ITEMS)
        ref = corpus.reference_outputs(path, items)
        try:
            ort_qdq = corpus.run_verb(name, "ort-qdq", items, ref)["agreement"]
        except Exception:  # the plain library failing sets no bar for int8
            ort_qdq = None
        out[name] = (items, ref, ort_qdq)
    return out


def test_corpus_meets_the_brief():
    """≥ 8 models, ≥ 4 exporters, ≥ 3 at opset ≤ 12, one with If/Loop, all pinned."""
    assert len(corpus.ENTRIES) >= 8
    assert len({e.exporter.split()[0] for e in corpus.ENTRIES}) >= 4
    assert sum(e.opset <= 12 for e in corpus.ENTRIES) >= 3
    assert any("If" in e.notes or "Loop" in e.notes for e in corpus.ENTRIES)
    assert all(len(e.sha256) == 64 for e in corpus.ENTRIES)


def test_corpus_models_run_in_float32(corpus_models, references):
    for name in corpus_models:
        items, ref, _ = references[name]
        assert corpus.agreement(corpus.run_all(corpus_models[name], items), ref) > 0.999999


@pytest.mark.parametrize(("name", "verb"), CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_verb_agrees_with_float32(name, verb, references):
    items, ref, ort_qdq = references[name]
    result = corpus.run_verb(name, verb, items, ref)
    if verb in corpus.TOLERANCE:
        assert result["agreement"] >= corpus.required(verb, ort_qdq), (result, ort_qdq)
    for variant, agree in result.get("per_variant", {}).items():  # explore: each variant
        assert agree >= corpus.required(variant, ort_qdq), (variant, result, ort_qdq)
