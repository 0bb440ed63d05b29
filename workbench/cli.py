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

from .errors import WorkbenchError


def _fail(message: str) -> int:
    print(f"workbench: error: {message}", file=sys.stderr)
    return 2


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
    dims = {
        d.dim_param: args.batch
        for i in model.graph.input
        for d in i.type.tensor_type.shape.dim
        if d.dim_param
    }
    ds = random_dataset(model, n=1, seed=0, dims=dims)
    r = benchmark(
        model,
        device=args.device,
        hint=args.hint,
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
            f"{r.throughput:,.0f} items/s; precision requested {r.precision_requested}, ran {r.precision_ran}"
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


def _cmd_report(args: argparse.Namespace) -> int:
    from .html_report import load_result, report

    results = [load_result(path) for path in args.results]
    out = report(results, args.output, model=args.model, title=args.title)
    print(f"report written to {out.resolve()}")
    return 0


# ----------------------------------------------------------------------------- explore


def _add_explore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explore",
        help="sweep precision variants × hints × devices; write study.json and its tradeoff plot",
    )
    p.add_argument("model", type=Path)
    p.add_argument(
        "--data", default="demo", help="'demo' (digits test split) or an .npz of model inputs"
    )
    p.add_argument(
        "--validation",
        default=None,
        help="'demo' (digits top-1), 'agreement' (top-1 agreement with the f32 model) or "
        "module:function taking (run, dataset) (default: demo with --data demo, else agreement)",
    )
    p.add_argument(
        "--calibration", default=None, help=".npz of calibration inputs (default: --data)"
    )
    p.add_argument("--variants", nargs="+", default=["f32,f16,bf16,mixed,int8,int8-ac"])
    p.add_argument("--hints", nargs="+", default=["performance,accuracy"])
    p.add_argument("--devices", nargs="+", default=["cpu"])
    p.add_argument("--max-drop", type=float, default=0.01, help="for mixed and int8-ac")
    p.add_argument("--min-time", type=float, default=0.6, help="timing seconds per setting")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for every run")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address to run jobs on")
    p.add_argument("-o", "--output", type=Path, default=Path("study.json"))


def _split(values: list[str]) -> list[str]:
    return [v for item in values for v in item.replace(",", " ").split() if v]


def _cmd_explore(args: argparse.Namespace) -> int:
    from .model import load_model
    from .study import agreement_validation, explore
    from .viz.plots import figure_png, tradeoff_plot

    model = load_model(args.model)
    dataset, validation_fn = _data_and_validation(args.data, args.validation, model)
    if validation_fn is None:  # unlabelled data: score agreement with the f32 model
        validation_fn = agreement_validation(model, dataset)
    calibration = None
    if args.calibration:
        from .data import dataset_from_npz

        calibration = dataset_from_npz(args.calibration)
    client = None
    if args.scheduler:
        try:
            from distributed import Client
        except ImportError as e:
            raise WorkbenchError(
                "--scheduler needs dask: pip install 'precision-workbench[distributed]'"
            ) from e
        client = Client(args.scheduler)
    try:
        study = explore(
            model,
            dataset,
            validation_fn,
            variants=_split(args.variants),
            hints=_split(args.hints),
            devices=_split(args.devices),
            calibration_dataset=calibration,
            client=client,
            max_drop=args.max_drop,
            min_time=args.min_time,
            threads=args.threads,
        )
    finally:
        if client is not None:
            client.close()
    study.save(args.output)
    from .fileio import atomic_write_bytes

    png = args.output.with_suffix(".png")
    atomic_write_bytes(png, figure_png(tradeoff_plot(study)))
    for r in study.records:
        if r.error:
            print(f"  {r.variant:<8} {r.device:<14} {r.hint:<20} error: {r.error}")
        else:
            mark = "" if r.honoured else f"  (requested {r.precision_requested})"
            print(
                f"  {r.variant:<8} {r.device:<14} {r.hint:<20} acc {r.accuracy:.4f}  "
                f"{r.latency_ms:.3f} ms  ran {r.precision_ran}{mark}"
            )
    print(f"study written to {args.output.resolve()}, plot to {png.resolve()}")
    return 0


def _data_and_validation(data: str, validation: str | None, model):
    """``--data demo|FILE.npz`` and ``--validation demo|agreement|module:function`` →
    (dataset, validation_fn). Without ``--validation`` the demo data brings its accuracy and an
    .npz brings none (None)."""
    if data == "demo":
        from .demo import accuracy, demo_dataset

        dataset, validation_fn = demo_dataset("test"), accuracy
    else:
        from .data import dataset_from_npz

        dataset, validation_fn = dataset_from_npz(data), None
    if validation == "demo":
        from .demo import accuracy as validation_fn
    elif validation == "agreement":
        from .study import agreement_validation

        validation_fn = agreement_validation(model, dataset)
    elif validation:
        validation_fn = _import_function(validation)
    return dataset, validation_fn


def _import_function(spec: str):
    import importlib

    module, _, func = spec.partition(":")
    if not module or not func:
        raise WorkbenchError(f"--validation {spec!r}: write module:function, 'demo' or 'agreement'")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as e:
        raise WorkbenchError(f"--validation {spec!r}: cannot import it ({e})") from e


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
    p.add_argument("--mode", choices=("auto", "manual", "combined"), default="auto")
    p.add_argument(
        "--manual", action="append", default=[], metavar="NODE=DEVICE",
        help="manual placement (repeatable); needs --mode manual or combined",
    )  # fmt: skip
    p.add_argument("--runs", type=int, default=20, help="profiled runs (default 20)")
    p.add_argument("--batch", type=int, default=1, help="value for dynamic batch dimensions")
    p.add_argument("-o", "--out", type=Path, default=Path("partition"), help="output folder")


def _cmd_partition(args: argparse.Namespace) -> int:
    from .data import input_signature, random_dataset
    from .fileio import atomic_write_bytes
    from .hardware.affinity import affinity
    from .hardware.partition import partition
    from .model import load_model
    from .viz.graphs import affinity_dot, file_stem, render, subgraphs_dot
    from .viz.plots import figure_png, figure_svg

    model = load_model(args.model)
    manual = {}
    for item in args.manual:
        node, sep, dev = item.rpartition("=")
        if not sep or not node:
            raise WorkbenchError(f"--manual {item!r}: write NODE=DEVICE")
        manual[node] = dev
    aff = affinity(model, args.devices, mode=args.mode, manual=manual or None)
    part = partition(model, aff)
    dims = {
        d: args.batch for _, _, shape in input_signature(model) for d in shape if isinstance(d, str)
    }
    prof = part.profile(random_dataset(model, n=1, seed=0, dims=dims)[0], runs=args.runs)
    stem = args.out / file_stem(model, args.model)
    written: dict[str, Path] = {}
    fig = prof.plot()
    for label, data in (
        ("affinity.dot", (a_dot := affinity_dot(model, aff)).encode("utf-8")),
        ("affinity.svg", render(a_dot, "svg")),
        ("subgraphs.dot", (s_dot := subgraphs_dot(part)).encode("utf-8")),
        ("subgraphs.svg", render(s_dot, "svg")),
        ("profile.json", prof.to_json().encode("utf-8")),
        ("profile.png", figure_png(fig)),
        ("profile.svg", figure_svg(fig).encode("utf-8")),
    ):
        path = stem.with_name(f"{stem.name}.{label}")
        atomic_write_bytes(path, data)
        written[label] = path
    print(
        f"{args.model.name}: {len(part.subgraphs)} subgraphs on {', '.join(aff.device_names)} "
        f"(splitting at every device change: {part.naive_count}); "
        f"{prof.total_ms:.3f} ms end to end, {prof.boundary_bytes:,} boundary bytes per run"
    )
    for r in prof.rows:
        sim = " (simulated)" if r.simulated else ""
        print(
            f"  {r.subgraph:<5} {r.device + sim:<24} {r.nodes:>5} nodes  {r.median_ms:8.3f} ms  "
            f"ran {r.precision_ran:<8} in {r.boundary_bytes:>10,} B"
        )
    for label, path in written.items():
        print(f"  {label:<14} {path}")
    return 0


# ----------------------------------------------------------------------------- convert


_CONVERT_TARGETS = ("fp16", "bf16", "mixed", "int8", "int8-ac")


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert", help="convert a float32 model to fp16, bf16, mixed precision, int8 or int8-ac"
    )
    p.add_argument("model", type=Path)
    p.add_argument("--to", required=True, choices=_CONVERT_TARGETS, help="target precision")
    p.add_argument("-o", "--output", type=Path, required=True, help="where to write the model")
    p.add_argument(
        "--keep-io-types",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep float32 model inputs/outputs (fp16/bf16; default: keep)",
    )
    p.add_argument(
        "--block-op", action="append", default=[], metavar="OP", help="op type kept float32"
    )
    p.add_argument(
        "--block-node", action="append", default=[], metavar="NAME", help="node kept float32"
    )
    p.add_argument("--data", default=None, help="'demo' (digits test split) or an .npz of inputs")
    p.add_argument("--rtol", type=float, default=None, help="mixed: output tolerance")
    p.add_argument("--atol", type=float, default=None, help="mixed: output tolerance")
    p.add_argument("--max-drop", type=float, default=None, help="mixed/int8-ac: accuracy drop")
    p.add_argument("--drop-type", choices=("absolute", "relative"), default=None)
    p.add_argument(
        "--validation",
        default=None,
        help="'demo' (digits top-1), 'agreement' (top-1 agreement with the f32 model) or "
        "module:function(run, dataset)",
    )
    p.add_argument("--calibration", choices=("minmax", "percentile", "entropy"), default=None)
    p.add_argument("--report", action="store_true", help="print what was converted and why")


def _cmd_convert(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .model import inspect, save_model

    if args.output.resolve() == args.model.resolve():
        raise InputError(
            f"refusing to overwrite the input model {str(args.model)!r}: the original must stay "
            "intact; choose another -o path"
        )
    if args.to not in ("fp16", "bf16") and (args.block_op or args.block_node):
        raise InputError("--block-op/--block-node apply to --to fp16 or bf16 only")
    detail = ""
    result = None
    if args.to in ("fp16", "bf16"):
        from .precision.float16 import convert_float16

        result = convert_float16(
            args.model,
            dtype="float16" if args.to == "fp16" else "bfloat16",
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
    save_model(model, args.output)
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
    from .errors import InputError
    from .model import load_model

    if args.data is None:
        raise InputError(f"--to {args.to} needs --data demo or --data FILE.npz")
    model = load_model(args.model)
    dataset, validation_fn = _data_and_validation(args.data, args.validation, model)
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
            "--to int8-ac needs --validation agreement|module:function (or --data demo)"
        )
    from .precision.accuracy_control import quantize_with_accuracy_control

    kw = {k: opts[k] for k in ("max_drop", "drop_type") if k in opts}
    result = quantize_with_accuracy_control(model, dataset, dataset, validation_fn, **kw)
    detail = (
        f"metric {result.baseline_metric:.4f} -> {result.final_metric:.4f} "
        f"({len(result.reverted_nodes)} nodes reverted to float, {result.evaluations} evaluations)"
    )
    return result.model, result, detail


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
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="workbench", description="Precision Workbench for ONNX models"
    )
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
