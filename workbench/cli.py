"""``workbench`` command line: the same verbs as the Python API.

Errors on bad input print one line naming the file/input and what to do, and exit with code 2.
Each verb is a pair ``_add_<verb>(subparsers)`` / ``_cmd_<verb>(args)`` registered in COMMANDS.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import InputError, WorkbenchError


def _fail(message: str) -> int:
    print(f"workbench: error: {message}", file=sys.stderr)
    return 2


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): ``workbench explore: error: …``, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _choice(value: str, choices: tuple[str, ...], what: str) -> str:
    """``value`` if it is one of ``choices``, else an InputError listing them."""
    key = str(value).strip().lower()
    if key not in choices:
        raise InputError(f"unknown {what} {value!r}; use one of {', '.join(choices)}")
    return key


def _output_path(path: Path) -> Path:
    """Say so when the folder of an output file does not exist yet and is created."""
    parent = path.expanduser().resolve().parent
    if not parent.exists():
        parent.mkdir(parents=True)
        print(f"workbench: created folder {parent}", file=sys.stderr)
    return path


def _split(values: list[str]) -> list[str]:
    return [v for item in values for v in item.replace(",", " ").split() if v]


# ----------------------------------------------------------------------------- names


#: variant names of explore; precision names accept every alias of workbench.precisions
_VARIANTS = ("f32", "f16", "bf16", "mixed", "int8", "int8-ac")
_CONVERT_TARGETS = ("f16", "bf16", "mixed", "int8", "int8-ac")


def _variant(value: str, allowed: tuple[str, ...] = _VARIANTS) -> str:
    """``fp16`` → ``f16``; ``mixed``/``int8-ac`` as they are; anything else lists the choices."""
    from .precisions import ALIASES

    key = str(value).strip().lower()
    name = ALIASES.get(key, key)
    if name not in allowed:
        raise InputError(
            f"unknown variant {value!r}; use one of {', '.join(allowed)} "
            "(aliases such as fp16, float16, bfloat16 are accepted)"
        )
    return name


def _hint(value: str | None) -> str | None:
    """A hint label checked by ``Hint.parse``; errors list what a hint is made of."""
    from .runtime.hints import EXECUTION_MODES, PERFORMANCE_MODES, Hint

    if value is None:
        return None
    try:
        return Hint.parse(value).label
    except InputError:
        raise InputError(
            f"unknown hint {value!r}; a hint is an execution mode ({', '.join(EXECUTION_MODES)}), "
            "optionally with a precision (f32, f16, bf16) and a performance mode "
            f"({', '.join(PERFORMANCE_MODES)}), e.g. performance, accuracy, performance/f16"
        ) from None


# ----------------------------------------------------------------------------- data & metric

#: built-in ``--validation`` metrics (module:function is also accepted)
METRICS = ("top1", "top5", "cosine", "mse", "agreement", "demo")
_DATA_HELP = (
    ".npz with one array per model input (first axis = items) and optionally 'labels', "
    "or a folder of images with one subfolder per label; 'demo' for the demo models"
)


def _add_data(p: argparse.ArgumentParser, required: str) -> None:
    p.add_argument("--data", default=None, help=f"{_DATA_HELP} ({required})")
    p.add_argument(
        "--mean", default=None, help="image folders: per-channel mean after scaling to [0,1], "
        "e.g. 0.485,0.456,0.406 (default 0)",
    )  # fmt: skip
    p.add_argument("--std", default=None, help="image folders: per-channel std (default 1)")


def _floats(text: str | None, what: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise InputError(f"{what} {text!r}: give numbers separated by commas") from None


def _add_validation(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--validation",
        default=None,
        help="metric, higher is better: top1 | top5 (need labels) | cosine | mse | agreement "
        "(compare with the f32 model's outputs) | module:function taking (run, dataset), with "
        "module importable from the current folder (default: top1 with labels, else agreement)",
    )


def _demo_name(model_path: Path) -> str | None:
    """Which demo model ``model_path`` is, if any."""
    from .demo import DEMO_MODELS, demo_model_path

    try:
        resolved = Path(model_path).resolve()
    except OSError:
        return None
    return next((n for n in DEMO_MODELS if demo_model_path(n).resolve() == resolved), None)


def _dataset(args: argparse.Namespace, model: Any, required: bool = True) -> Any:
    """``--data`` (with ``--mean``/``--std``) → Dataset (None when not given and not
    ``required``)."""
    data, model_path = args.data, args.model
    if data is None and not required:  # bench, partition, layers: random inputs (with --batch)
        return None
    from .userdata import load_data

    if data in (None, "demo"):
        name = _demo_name(model_path)
        if name is not None:
            from .demo import demo_dataset

            return demo_dataset("test", model=name)
        if data == "demo":
            raise InputError(f"--data demo works with the demo models only, not {model_path.name}")
        raise InputError(f"{model_path.name} needs --data: {_DATA_HELP}")
    mean, std = _floats(args.mean, "--mean"), _floats(args.std, "--std")
    return load_data(data, model, mean=mean, std=std)


def _is_demo_data(dataset: Any) -> bool:
    from .demo import to_feeds

    return getattr(dataset, "transform", None) is to_feeds


def _validation(spec: str | None, model: Any, dataset: Any, default: bool = True) -> Any:
    """``--validation`` → validation_fn (None when not given, the data has no labels and
    ``default`` is False)."""
    from .userdata import has_labels, metric

    if spec is None:
        if _is_demo_data(dataset):
            spec = "demo"
        elif has_labels(dataset):
            spec = "top1"
        elif default:
            spec = "agreement"
        else:
            return None
    if ":" not in spec:
        spec = _choice(spec, METRICS, "--validation metric")
    if spec == "demo":
        if not _is_demo_data(dataset):
            raise InputError("--validation demo needs the demo data (a demo model without --data)")
        from .demo import accuracy

        return accuracy
    try:
        return metric(spec, model, dataset)
    except InputError as e:
        raise InputError(f"--validation {e}") from None


def _dims(model: Any, batch: int) -> dict[str, int]:
    from .data import input_signature

    return {d: batch for _, _, shape in input_signature(model) for d in shape if isinstance(d, str)}


# ----------------------------------------------------------------------------- inspect


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="summarize a model: ops, dtypes, parameters, I/O, opsets")
    p.add_argument("model", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .model import inspect, load_model

    summary = inspect(load_model(args.model))
    print(summary.to_json() if args.json else summary)
    return 0


# ----------------------------------------------------------------------------- bench


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time inference of a model on a device")
    p.add_argument("model", type=Path)
    p.add_argument("--device", default="cpu", help="device name (see `workbench devices`)")
    p.add_argument(
        "--hint", default=None, help="execution hint, e.g. performance, accuracy, performance/f16"
    )
    _add_data(p, "default: random inputs")
    p.add_argument(
        "--runs", type=int, default=None, help="timed runs (default: as many as fit in --min-time)"
    )
    p.add_argument("--min-time", type=float, default=1.0, help="seconds to keep timing (default 1)")
    p.add_argument("--batch", type=int, default=1, help="value for dynamic batch dimensions")
    p.add_argument("--json", action="store_true", help="print the BenchResult as JSON")


def _cmd_bench(args: argparse.Namespace) -> int:
    from .data import random_dataset
    from .hardware.execution import benchmark
    from .model import load_model

    model = load_model(args.model)
    ds = _dataset(args, model, required=False)
    if ds is None:
        ds = random_dataset(model, n=1, seed=0, dims=_dims(model, args.batch))
    r = benchmark(
        model,
        device=args.device,
        hint=_hint(args.hint),
        dataset=ds,
        runs=args.runs,
        min_time=args.min_time,
    )
    if args.json:
        print(r.to_json())
    else:
        print(
            f"{args.model.name} on {r.device} [{r.hint}]: median {r.median_ms:.3f} ms, "
            f"p10 {r.p10_ms:.3f} ms, p90 {r.p90_ms:.3f} ms over {r.runs} runs; "
            f"{r.throughput:,.0f} items/s; precision requested {r.precision_requested}, "
            f"ran {r.precision_ran}"
        )
        for note in r.notes:
            print(f"  note: {note}")
    return 0


# ----------------------------------------------------------------------------- devices


def _add_devices(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list devices (real and simulated) with their precisions")
    p.add_argument("--json", action="store_true")


def _cmd_devices(args: argparse.Namespace) -> int:
    from .hardware.registry import devices

    devs = devices()
    if args.json:
        print(json.dumps([d.to_dict() for d in devs], indent=1))
    else:
        for d in devs:
            print(f"{d.label:<32} {d.backend:<9} {','.join(d.precisions):<16} {d.description}")
    return 0


# ----------------------------------------------------------------------------- demo


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the demo on the digits models and write its outputs")
    p.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: out)")


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo.run import run_demo

    if not args.out.exists():
        print(f"workbench: creating folder {args.out.resolve()}", file=sys.stderr)
    outputs = run_demo(args.out)
    print(f"demo outputs in {args.out.resolve()}:")
    for label, path in outputs.items():
        print(f"  {label:<18} {path}")
    return 0


# ----------------------------------------------------------------------------- report


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write a standalone HTML report from saved results (study.json, …)"
    )
    p.add_argument(
        "results", type=Path, nargs="+", help="JSON files saved by the workbench (e.g. study.json)"
    )
    p.add_argument("-o", "--output", type=Path, default=Path("report.html"), help="HTML file")
    p.add_argument("--model", type=Path, default=None, help="the model, for summary and renders")
    p.add_argument("--title", default=None, help="page title")
    p.add_argument(
        "--devices",
        default=None,
        help="with --model: add the affinity and subgraph renders for these devices "
        "(comma-separated, priority order, e.g. npu-sim,cpu)",
    )
    p.add_argument("--mode", default="auto", help="affinity mode with --devices (default auto)")
    p.add_argument(
        "--manual", action="append", default=[], metavar="NODE=DEVICE",
        help="manual placement with --devices (repeatable)",
    )  # fmt: skip


def _cmd_report(args: argparse.Namespace) -> int:
    from .html_report import load_result, report

    results = [load_result(path) for path in args.results]
    extra: dict[str, Any] = {}
    if args.devices:
        if args.model is None:
            raise InputError("--devices needs --model: the renders are drawn from the model")
        from .model import load_model

        extra["affinity"], extra["partitioned"] = _partition(load_model(args.model), args)
    out = report(results, _output_path(args.output), model=args.model, title=args.title, **extra)
    print(f"report written to {out.resolve()}")
    return 0


# ----------------------------------------------------------------------------- explore


def _add_explore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explore",
        help="sweep precision variants × hints × devices; write study.json and its tradeoff plot",
    )
    p.add_argument("model", type=Path)
    _add_data(p, "required unless the model is a demo model")
    _add_validation(p)
    p.add_argument(
        "--calibration", default=None, help=".npz of calibration inputs (default: --data)"
    )
    p.add_argument(
        "--variants", nargs="+", default=["f32,f16,bf16,mixed,int8,int8-ac"],
        help=f"comma-separated: {', '.join(_VARIANTS)} (fp16, bfloat16, … accepted)",
    )  # fmt: skip
    p.add_argument("--hints", nargs="+", default=["performance,accuracy"])
    p.add_argument("--devices", nargs="+", default=["cpu"])
    p.add_argument("--max-drop", type=float, default=0.01, help="for mixed, int8-ac, the verdict")
    p.add_argument("--min-time", type=float, default=0.6, help="timing seconds per setting")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for every run")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address to run jobs on")
    p.add_argument("-o", "--output", type=Path, default=Path("study.json"))


def _client(scheduler: str | None) -> Any:
    if not scheduler:
        return None
    try:
        from distributed import Client
    except ImportError as e:
        raise InputError(
            "--scheduler needs dask: pip install 'precision-workbench[distributed]'"
        ) from e
    return Client(scheduler)


def _cmd_explore(args: argparse.Namespace) -> int:
    from .fileio import atomic_write_bytes
    from .model import load_model
    from .study import explore
    from .userdata import load_npz
    from .viz.plots import figure_png, tradeoff_plot

    model = load_model(args.model)
    dataset = _dataset(args, model)
    validation_fn = _validation(args.validation, model, dataset)
    calibration = load_npz(args.calibration, model) if args.calibration else None
    variants = [_variant(v) for v in _split(args.variants)]
    hints = [_hint(h) for h in _split(args.hints)]
    _output_path(args.output)
    client = _client(args.scheduler)
    try:
        study = explore(
            model, dataset, validation_fn, variants=variants, hints=hints,
            devices=_split(args.devices), calibration_dataset=calibration, client=client,
            max_drop=args.max_drop, min_time=args.min_time, threads=args.threads,
        )  # fmt: skip
    finally:
        if client is not None:
            client.close()
    study.save(args.output)
    png = args.output.with_suffix(".png")
    atomic_write_bytes(png, figure_png(tradeoff_plot(study)))
    _print_records(study)
    print(f"study written to {args.output.resolve()}, plot to {png.resolve()}")
    _print_recommendation(study, args.max_drop)
    return 0


def _print_records(study: Any) -> None:
    for r in study.records:
        device = f"{r.device} (sim)" if r.simulated else r.device
        if r.error:
            print(f"  {r.variant:<8} {device:<16} {r.hint:<20} error: {r.error}")
            continue
        mark = "" if r.honoured else f"  (requested {r.precision_requested})"
        print(
            f"  {r.variant:<8} {device:<16} {r.hint:<20} acc {r.accuracy:.4f}  "
            f"{r.latency_ms:.3f} ms  ran {r.precision_ran}{mark}"
        )


def _print_recommendation(study: Any, max_drop: float) -> None:
    """The verdict (``Study.recommend``) as the last lines of ``workbench explore``."""
    recommend = getattr(study, "recommend", None)
    if recommend is None:
        return
    try:
        rec = recommend(max_drop=max_drop)
    except WorkbenchError as e:
        print(f"recommendation: none ({e})")
        return
    chosen = getattr(rec, "record", None)
    print()
    print(f"recommendation: {chosen.label}" if chosen is not None else "recommendation: none")
    status = getattr(rec, "status", "ok")
    if status != "ok":
        print(f"  ({status})")
    print(f"  {getattr(rec, 'summary', '')}")
    for label, reason in (getattr(rec, "reasons", None) or {}).items():
        print(f"  - {label}: {reason}")


# ----------------------------------------------------------------------------- partition


def _add_partition(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "partition",
        help="assign nodes to devices, cut acyclic subgraphs, profile them and draw both graphs",
    )
    p.add_argument("model", type=Path)
    p.add_argument(
        "--devices", default="cpu", help="comma-separated, priority order, e.g. npu-sim,cpu"
    )
    p.add_argument("--mode", default="auto", help="auto (default), manual or combined")
    p.add_argument(
        "--manual", action="append", default=[], metavar="NODE=DEVICE",
        help="manual placement (repeatable); needs --mode manual or combined",
    )  # fmt: skip
    p.add_argument(
        "--hint", default=None, help="execution hint for every subgraph, e.g. performance/f16"
    )
    _add_data(p, "its first item is profiled; default: random inputs")
    p.add_argument("--runs", type=int, default=20, help="profiled runs (default 20)")
    p.add_argument("--batch", type=int, default=1, help="value for dynamic batch dimensions")
    p.add_argument("-o", "--out", type=Path, default=Path("partition"), help="output folder")


def _manual(items: list[str]) -> dict[str, str]:
    manual = {}
    for item in items:
        node, sep, dev = item.rpartition("=")
        if not sep or not node:
            raise InputError(f"--manual {item!r}: write NODE=DEVICE")
        manual[node] = dev
    return manual


def _partition(model: Any, args: argparse.Namespace) -> tuple[Any, Any]:
    """(affinity, partitioned model) from --devices/--mode/--manual/--hint."""
    import inspect as _inspect

    from .hardware.affinity import affinity
    from .hardware.partition import partition

    mode = _choice(args.mode, ("auto", "manual", "combined"), "--mode")
    aff = affinity(model, args.devices, mode=mode, manual=_manual(args.manual) or None)
    hint = _hint(getattr(args, "hint", None))
    if hint is not None and "hint" in _inspect.signature(partition).parameters:
        return aff, partition(model, aff, hint=hint)
    if hint is not None:
        raise InputError("--hint: this version's partition() takes no hint")
    return aff, partition(model, aff)


def _cmd_partition(args: argparse.Namespace) -> int:
    from .data import random_dataset
    from .fileio import atomic_write_bytes
    from .model import load_model
    from .viz.graphs import affinity_dot, file_stem, render, subgraphs_dot
    from .viz.plots import figure_png, figure_svg

    model = load_model(args.model)
    aff, part = _partition(model, args)
    ds = _dataset(args, model, required=False)
    if ds is None:
        ds = random_dataset(model, n=1, seed=0, dims=_dims(model, args.batch))
    prof = part.profile(next(iter(ds.feeds())), runs=args.runs)
    if not args.out.exists():
        args.out.mkdir(parents=True)
        print(f"workbench: created folder {args.out.resolve()}", file=sys.stderr)
    stem = args.out / file_stem(model, args.model)
    written: dict[str, Path] = {}
    fig = prof.plot()
    for label, data in (
        ("affinity.dot", (a_dot := affinity_dot(model, aff)).encode("utf-8")),
        ("affinity.svg", render(a_dot, "svg")),
        ("subgraphs.dot", (s_dot := subgraphs_dot(part, profile=prof)).encode("utf-8")),
        ("subgraphs.svg", render(s_dot, "svg")),
        ("profile.json", prof.to_json().encode("utf-8")),
        ("profile.png", figure_png(fig)),
        ("profile.svg", figure_svg(fig).encode("utf-8")),
    ):
        path = stem.with_name(f"{stem.name}.{label}")
        atomic_write_bytes(path, data)
        written[label] = path
    _print_partition(args.model.name, aff, part, prof)
    for label, path in written.items():
        print(f"  {label:<14} {path}")
    return 0


def _print_partition(name: str, aff: Any, part: Any, prof: Any) -> None:
    from .viz.graphs import plural

    print(
        f"{name}: {plural(len(part.subgraphs), 'subgraph')} on {', '.join(aff.device_names)} "
        f"(splitting at every device change: {part.naive_count}); "
        f"{prof.total_ms:.3f} ms end to end, {prof.boundary_bytes:,} boundary bytes per run"
    )
    for r in prof.rows:
        sim = " (simulated)" if r.simulated else ""
        print(
            f"  {r.subgraph:<5} {r.device + sim:<24} {plural(r.nodes, 'node'):>10}  "
            f"{r.median_ms:8.3f} ms  ran {r.precision_ran:<8} in {r.boundary_bytes:>10,} B"
        )


# ----------------------------------------------------------------------------- convert


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert", help="convert a float32 model to f16, bf16, mixed precision, int8 or int8-ac"
    )
    p.add_argument("model", type=Path)
    p.add_argument(
        "--to",
        required=True,
        help=f"target: {', '.join(_CONVERT_TARGETS)} (fp16, float16, bfloat16, … accepted)",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="where to write the model")
    p.add_argument(
        "--keep-io-types",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep float32 model inputs/outputs (f16/bf16; default: keep)",
    )
    p.add_argument(
        "--block-op", action="append", default=[], metavar="OP", help="op type kept float32"
    )
    p.add_argument(
        "--block-node", action="append", default=[], metavar="NAME", help="node kept float32"
    )
    _add_data(p, "mixed, int8, int8-ac")
    p.add_argument("--rtol", type=float, default=None, help="mixed: output tolerance")
    p.add_argument("--atol", type=float, default=None, help="mixed: output tolerance")
    p.add_argument("--max-drop", type=float, default=None, help="mixed/int8-ac: accuracy drop")
    p.add_argument("--drop-type", default=None, help="absolute (default) or relative")
    _add_validation(p)
    p.add_argument("--calibration", default=None, help="minmax (default), percentile or entropy")
    p.add_argument("--report", action="store_true", help="print what was converted and why")


def _cmd_convert(args: argparse.Namespace) -> int:
    from .model import inspect, save_model

    args.to = _variant(args.to, _CONVERT_TARGETS)
    if args.drop_type is not None:
        args.drop_type = _choice(args.drop_type, ("absolute", "relative"), "--drop-type")
    if args.calibration is not None:
        methods = ("minmax", "percentile", "entropy")
        args.calibration = _choice(args.calibration, methods, "--calibration method")
    if args.output.resolve() == args.model.resolve():
        raise InputError(
            f"refusing to overwrite the input model {str(args.model)!r}: the original must stay "
            "intact; choose another -o path"
        )
    if args.to not in ("f16", "bf16") and (args.block_op or args.block_node):
        raise InputError("--block-op/--block-node apply to --to f16 or bf16 only")
    detail = ""
    result = None
    if args.to in ("f16", "bf16"):
        from .precision.float16 import convert_float16
        from .precisions import DTYPE_NAMES

        result = convert_float16(
            args.model,
            dtype=DTYPE_NAMES[args.to],
            keep_io_types=args.keep_io_types,
            block_ops=args.block_op,
            block_nodes=args.block_node,
            report=True,
        )
        model = result.model
        detail = (
            f"{len(result.converted)} nodes converted, {len(result.kept_float)} kept float32, "
            f"{result.casts_inserted} casts inserted"
        )
    else:
        model, result, detail = _convert_with_data(args)
    save_model(model, _output_path(args.output))
    summary = inspect(model)
    print(
        f"{args.model.name} -> {args.output} ({args.to}): {detail}; "
        f"{summary.parameter_bytes / 2**20:.2f} MiB of weights"
    )
    if args.report and result is not None:
        print(result)
    return 0


def _convert_with_data(args: argparse.Namespace):
    """mixed / int8 / int8-ac: these need data (and a validation function for int8-ac)."""
    from .model import load_model

    model = load_model(args.model)
    if args.data is None and _demo_name(args.model) is None:
        raise InputError(f"--to {args.to} needs --data: {_DATA_HELP}")
    dataset = _dataset(args, model)
    validation_fn = _validation(args.validation, model, dataset, default=False)
    given = {k: getattr(args, k) for k in ("rtol", "atol", "max_drop", "drop_type", "calibration")}
    opts = {k: v for k, v in given.items() if v is not None}
    if args.to == "mixed":
        from .precision.mixed import auto_mixed_precision

        kw = {k: opts[k] for k in ("rtol", "atol", "max_drop") if k in opts}
        result = auto_mixed_precision(
            model, dataset, dtype="float16", validation_fn=validation_fn, **kw
        )
        detail = (
            f"{len(result.converted)} nodes in float16, {len(result.kept_float)} kept float32 "
            f"after {result.evaluations} evaluations"
        )
        return result.model, result, detail
    if args.to == "int8":
        from .precision.int8 import quantize_int8

        kw = {"calibration": opts["calibration"]} if "calibration" in opts else {}
        return quantize_int8(model, dataset, **kw), None, "int8 (QDQ) quantized"
    if validation_fn is None:
        raise InputError(
            "--to int8-ac needs --validation agreement|module:function "
            f"(or labels in --data); metrics: {', '.join(METRICS)}"
        )
    from .precision.accuracy_control import quantize_with_accuracy_control

    kw = {k: opts[k] for k in ("max_drop", "drop_type") if k in opts}
    result = quantize_with_accuracy_control(model, dataset, dataset, validation_fn, **kw)
    detail = (
        f"metric {result.baseline_metric:.4f} -> {result.final_metric:.4f} "
        f"({len(result.reverted_nodes)} nodes reverted to float, {result.evaluations} evaluations)"
    )
    return result.model, result, detail


# ----------------------------------------------------------------------------- layers

_LAYER_VARIANTS = ("f16", "bf16", "mixed", "int8")


def _add_layers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "layers",
        help="per-layer time and precision on a device; with --variant, where its error starts",
    )
    p.add_argument("model", type=Path)
    p.add_argument("--device", default="cpu", help="device name (see `workbench devices`)")
    p.add_argument("--hint", default=None, help="execution hint, e.g. performance/f16")
    p.add_argument(
        "--variant", default=None,
        help=f"also profile this variant and compare: {', '.join(_LAYER_VARIANTS)}",
    )  # fmt: skip
    _add_data(p, "default: random inputs")
    p.add_argument("--runs", type=int, default=20, help="profiled runs (default 20)")
    p.add_argument("-o", "--out", type=Path, default=Path("layers"), help="output folder")


def _variant_model(name: str, model: Any, dataset: Any) -> Any:
    """The f16/bf16/mixed/int8 variant ``workbench layers --variant`` compares with."""
    if name in ("f16", "bf16"):
        from .precision.float16 import convert_float16
        from .precisions import DTYPE_NAMES

        return convert_float16(model, dtype=DTYPE_NAMES[name])
    if name == "mixed":
        from .precision.mixed import auto_mixed_precision

        return auto_mixed_precision(model, dataset, dtype="float16").model
    from .precision.int8 import quantize_int8

    return quantize_int8(model, dataset)


def _cmd_layers(args: argparse.Namespace) -> int:
    from .data import random_dataset
    from .fileio import atomic_write_bytes
    from .html_report import report
    from .layers import compare_layers, layer_error, layer_profile
    from .model import load_model
    from .viz.graphs import file_stem, render
    from .viz.layer_graphs import layers_dot

    model = load_model(args.model)
    variant = _variant(args.variant, _LAYER_VARIANTS) if args.variant else None
    hint = _hint(args.hint)
    dataset = _dataset(args, model, required=False)
    if dataset is None:
        dataset = random_dataset(model, n=8, seed=0, dims=_dims(model, 1))
    results: dict[str, Any] = {
        "layers": layer_profile(model, args.device, hint, dataset, runs=args.runs)
    }
    if variant is not None:
        vmodel = _variant_model(variant, model, dataset)
        results[f"{variant}.layers"] = layer_profile(
            vmodel, args.device, hint, dataset, runs=args.runs
        )
        results[f"{variant}.error"] = layer_error(model, vmodel, dataset, device=args.device)
        results[f"{variant}.compare"] = compare_layers(
            results["layers"], results[f"{variant}.layers"]
        )
    if not args.out.exists():
        args.out.mkdir(parents=True)
        print(f"workbench: created folder {args.out.resolve()}", file=sys.stderr)
    stem = args.out / file_stem(model, args.model)
    written: dict[str, Path] = {}
    for label, res in results.items():
        files = {f"{label}.json": res.to_json().encode("utf-8")}
        if not label.endswith(".compare"):
            files[f"{label}.svg"] = render(layers_dot(res), "svg")
        for name, data in files.items():
            written[name] = stem.with_name(f"{stem.name}.{name}")
            atomic_write_bytes(written[name], data)
    written["report.html"] = report(
        list(results.values()), stem.with_name(f"{stem.name}.layers.html"), model=model
    )
    _print_layers(results, variant)
    for label, path in written.items():
        print(f"  {label:<22} {path}")
    return 0


def _print_layers(results: dict[str, Any], variant: str | None) -> None:
    from .viz.graphs import plural

    for label, res in results.items():
        if label.endswith(".layers") or label == "layers":
            what = "estimated" if res.estimated else f"mean of {res.runs} runs"
            print(
                f"{res.model} on {res.device} [{res.hint}]: {plural(len(res.rows), 'layer')}, "
                f"{res.total_ms:.3f} ms whole model ({what}); ran {res.precision_ran}"
            )
            for r in sorted(res.rows, key=lambda r: -r.time_ms)[:5]:
                print(
                    f"  {(r.node or r.layer):<32} {r.op:<14} {r.precision:<6} {r.time_ms:8.3f} ms"
                )
    if variant is not None:
        err = results[f"{variant}.error"]
        first = err.first_divergent or f"none (every tensor above {err.threshold_db:g} dB SQNR)"
        print(f"{variant}: first divergent tensor: {first}")


# ----------------------------------------------------------------------------- registry

COMMANDS: list[
    tuple[Callable[[argparse._SubParsersAction], None], Callable[[argparse.Namespace], int]]
] = [
    (_add_inspect, _cmd_inspect),
    (_add_convert, _cmd_convert),
    (_add_bench, _cmd_bench),
    (_add_devices, _cmd_devices),
    (_add_demo, _cmd_demo),
    (_add_explore, _cmd_explore),
    (_add_report, _cmd_report),
    (_add_partition, _cmd_partition),
    (_add_layers, _cmd_layers),
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="workbench", description="Precision Workbench for ONNX models")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, cmd in COMMANDS:
        before = set(sub.choices)
        add(sub)
        for name in set(sub.choices) - before:
            sub.choices[name].set_defaults(_handler=cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``workbench`` console script."""
    args = build_parser().parse_args(argv)
    # warnings (e.g. a hint not honoured) are part of the answer: one readable line each
    previous_format = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *_a, **_k: (
        f"workbench: {category.__name__}: {message}\n"
    )
    try:
        return args._handler(args)
    except WorkbenchError as e:
        return _fail(str(e))
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        return _fail(f"{e.strerror}: {e.filename}")
    except KeyboardInterrupt:
        return _fail("interrupted")
    finally:
        warnings.formatwarning = previous_format


if __name__ == "__main__":
    sys.exit(main())
