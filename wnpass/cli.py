"""The ``wnpass`` command line: parse, validate, call the library, render, return an exit code.

Exit codes: 0 success, 1 a check failed, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from wnpass import __version__
from wnpass.errors import UsageError, WnpassError
from wnpass.report import SITE_COLUMNS, FoldReport, fold_summary, site_rows, table, write_json

__all__ = ["main"]

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2

Command = Callable[[argparse.Namespace, Console], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (plus the usage) and exit 2 like every error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"wnpass: error: {message}\n")


def _print_sites(console: Console, report: FoldReport, title: str, *, inspect: bool) -> None:
    if report.sites:
        console.print(table(title, SITE_COLUMNS, site_rows(report.sites)))
    else:
        console.print(f"{title}: no weight-norm sites")
    console.print(fold_summary(report, inspect=inspect))


def _require_onnx(path: Path, command: str) -> None:
    if path.suffix == ".py":
        raise UsageError(f"{command} on a model.py is not available yet; give an .onnx file")


def _cmd_inspect(args: argparse.Namespace, console: Console) -> int:
    """List the weight-norm sites of an ONNX model; changes nothing."""
    from wnpass.onnx.api import inspect_onnx

    if args.model.suffix == ".py":
        from wnpass.fx.commands import cmd_inspect_py

        return cmd_inspect_py(args, console)
    _json_target(args.json, args.model)
    report = inspect_onnx(args.model)
    _print_sites(console, report, str(args.model), inspect=True)
    if args.json:
        report.write_json(args.json)
    return EXIT_OK


def _cmd_fold(args: argparse.Namespace, console: Console) -> int:
    """Fold weight normalization out of an ONNX model into plain weights."""
    from wnpass.onnx.api import fold_onnx

    _require_onnx(args.model, "fold")
    _json_target(args.json, args.model, args.output)
    reference = args.model
    if args.verify and args.in_place:
        raise UsageError("--verify compares the input with the output: it cannot use --in-place")
    if args.verify:  # bad check options are reported before anything is written
        _check_options(args)
        _validate_check_inputs(args, args.model)
    _, report = fold_onnx(args.model, args.output, in_place=args.in_place)
    _print_sites(console, report, str(args.model), inspect=False)
    if not args.verify:
        if args.json:
            report.write_json(args.json)
        return EXIT_OK
    assert report.output is not None
    checked = _run_check(console, reference, Path(report.output), args)
    if args.json:
        write_json(args.json, {"fold": report.to_dict(), "check": checked.to_dict()})
    return EXIT_OK if checked else EXIT_CHECK_FAILED


def _cmd_check(args: argparse.Namespace, console: Console) -> int:
    """Check that CANDIDATE computes what REFERENCE computes, and compare their latency."""
    _json_target(args.json, args.reference, args.candidate)
    _check_options(args)
    checked = _run_check(console, args.reference, args.candidate, args)
    if args.json:
        checked.write_json(args.json)
    return EXIT_OK if checked else EXIT_CHECK_FAILED


def _json_target(path: Path | None, *models: Path | None) -> None:
    """--json must go to an existing folder and never over a model."""
    if path is None:
        return
    if not path.resolve().parent.is_dir():
        raise UsageError(f"--json {path}: no such directory")
    if path.is_dir():
        raise UsageError(f"--json {path}: is a directory")
    if any(m is not None and path.resolve() == Path(m).resolve() for m in models):
        raise UsageError(f"--json {path}: would overwrite a model")


def _validate_check_inputs(args: argparse.Namespace, model: Path) -> None:
    """Providers and --inputs are checked against the model before any output is written."""
    from wnpass.onnx import io
    from wnpass.verify import inputs, providers

    providers.resolve(args.provider)
    if args.inputs is not None:
        inputs.load_npz(args.inputs, inputs.signature(io.load(model)))


def _cmd_export(args: argparse.Namespace, console: Console) -> int:
    """Fold weight norm in PyTorch, export to ONNX, fold what is left, verify against PyTorch."""
    from wnpass.export import export
    from wnpass.fx.commands import load_checkpoint
    from wnpass.fx.loading import load_model_py

    _json_target(args.json, args.model, args.output)
    if args.output.suffix == ".py":
        raise UsageError(f"-o {args.output}: the output is an .onnx file")
    model, inputs = load_model_py(args.model, args.factory)
    if inputs is None:
        raise UsageError(f"{args.model}: defines no example_inputs(); export needs them")
    if args.checkpoint is not None:
        load_checkpoint(model, args.checkpoint)
    options = _check_options(args)
    report = export(
        model,
        inputs,
        args.output,
        exporter=args.exporter,
        fold_in_torch=not args.keep_weight_norm,
        dynamic=_parse_dynamic(args.dynamic),
        opset=args.opset,
        verify=args.verify,
        providers=options["providers"],
        rtol=args.rtol,
        atol=args.atol,
        runs=args.runs,
        warmup=args.warmup,
        threads=args.threads,
    )
    _print_export(console, report)
    if args.json:
        report.write_json(args.json)
    return EXIT_OK if report else EXIT_CHECK_FAILED


def _parse_dynamic(items: list[str] | None) -> dict[str, dict[int, str]] | None:
    """``["mel=0,2"]`` -> ``{"mel": {0: "mel_0", 2: "mel_2"}}``."""
    if not items:
        return None
    dynamic: dict[str, dict[int, str]] = {}
    for item in items:
        name, _, axes = item.partition("=")
        try:
            dynamic[name] = {int(a): f"{name}_{a}" for a in axes.split(",")}
        except ValueError:
            raise UsageError(f"--dynamic {item!r}: expected NAME=AXES, e.g. mel=0,2") from None
        if not name or not axes:
            raise UsageError(f"--dynamic {item!r}: expected NAME=AXES, e.g. mel=0,2")
    return dynamic


def _print_export(console: Console, report: Any) -> None:
    from wnpass.verify.report import COMPARISON_COLUMNS, comparison_row

    torch_fold = report.torch_fold
    if torch_fold is not None:
        console.print(f"folded {torch_fold.folded} weight-norm sites in PyTorch")
    _print_sites(console, report.onnx_fold, f"{report.output} ({report.exporter})", inspect=False)
    if report.names_missing:
        console.print(
            f"weights with no initializer of their name: {', '.join(report.names_missing)}"
        )
    else:
        console.print("every weight is an initializer named after its PyTorch parameter")
    rows = [
        comparison_row(provider, c)
        for provider, comparisons in report.comparisons.items()
        for c in comparisons
    ]
    if rows:
        console.print(table("ONNX Runtime vs PyTorch", COMPARISON_COLUMNS, rows))
    for provider, stats in report.latency.items():
        console.print(
            f"{provider} latency: median {stats.median_ms:.3f} ms, p90 {stats.p90_ms:.3f} ms, "
            f"min {stats.min_ms:.3f} ms ({stats.runs} runs)"
        )
    for provider in report.not_available:
        console.print(f"{provider}: not available")
    console.print("deployable: ONNX matches PyTorch" if report else "NOT DEPLOYABLE: see above")


def _optimizations(choice: str) -> tuple[str, ...]:
    return ("default", "disabled") if choice == "both" else (choice,)


def _check_options(args: argparse.Namespace) -> dict[str, Any]:
    from wnpass.verify.inputs import parse_shapes

    return {
        "providers": args.provider,
        "shapes": parse_shapes(getattr(args, "shape", None)),
        "inputs": getattr(args, "inputs", None),
        "rtol": args.rtol,
        "atol": args.atol,
        "runs": args.runs,
        "warmup": args.warmup,
        "threads": args.threads,
        "optimizations": _optimizations(getattr(args, "optimization", "default")),
    }


def _run_check(console: Console, reference: Path, candidate: Path, args: argparse.Namespace) -> Any:
    from rich.progress import Progress

    from wnpass.verify.check import check
    from wnpass.verify.report import (
        COMPARISON_COLUMNS,
        LATENCY_COLUMNS,
        comparison_rows,
        latency_rows,
    )

    options = _check_options(args)
    progress_console = Console(stderr=True)
    with Progress(console=progress_console, transient=True, disable=not sys.stderr.isatty()) as bar:
        tasks: dict[str, Any] = {}

        def progress(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(f"timing {label}", total=total)
            bar.update(tasks[label], completed=done)

        report = check(reference, candidate, progress=progress, **options)
    inputs = ", ".join(f"{i['name']} {i['dtype']}{i['shape']}" for i in report.inputs)
    console.print(f"inputs: {inputs}")
    for note in report.notes:
        console.print(f"  {note}")
    console.print(table("equivalence", COMPARISON_COLUMNS, comparison_rows(report)))
    console.print(table("latency (candidate vs reference)", LATENCY_COLUMNS, latency_rows(report)))
    for provider in report.not_available:
        console.print(f"{provider}: not available")
    if report:
        console.print(f"equivalent: {candidate} matches {reference}")
    else:
        console.print(f"NOT EQUIVALENT: {candidate} differs from {reference}")
        for line in report.failures():
            console.print(f"  {line}")
    return report


def _add_check_options(parser: argparse.ArgumentParser, *, inputs: bool = True) -> None:
    from wnpass.verify.check import DEFAULT_RUNS, DEFAULT_WARMUP

    group = parser.add_argument_group("check options")
    group.add_argument(
        "--provider",
        action="append",
        choices=("cpu", "cuda"),
        help="run on this provider (repeatable); default: every one available",
    )
    if inputs:  # export runs on the model's example_inputs()
        group.add_argument(
            "--shape",
            action="append",
            metavar="NAME=DIMS",
            help="size of a dynamic input, e.g. mel=1,80,200 (repeatable)",
        )
        group.add_argument("--inputs", type=Path, metavar="FILE.npz", help="inputs to use instead")
    group.add_argument("--rtol", type=float, help="relative tolerance (default: per dtype)")
    group.add_argument("--atol", type=float, help="absolute tolerance (default: per dtype)")
    group.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed runs per model")
    group.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed runs first")
    group.add_argument("--threads", type=int, help="intra-op threads (default: ONNX Runtime's)")
    if inputs:
        group.add_argument(
            "--optimization",
            choices=("default", "disabled", "both"),
            default="default",
            help="ONNX Runtime graph optimization level; disabled shows what a runtime that "
            "does not fold constants pays",
        )


def _build_parser() -> argparse.ArgumentParser:
    # argument definitions only: torch is imported when a model.py command runs
    from wnpass.fx.commands import (
        add_model_py_arguments,
        add_train_rewrite_arguments,
        cmd_train_rewrite,
    )

    parser = _Parser(prog="wnpass", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"wnpass {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, command: Command) -> argparse.ArgumentParser:
        doc = (command.__doc__ or "").strip()
        sub = commands.add_parser(name, help=doc, description=doc)
        sub.set_defaults(run=command)
        return sub

    inspect = add("inspect", _cmd_inspect)
    inspect.add_argument("model", type=Path, metavar="MODEL", help="an .onnx file or a model.py")
    inspect.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")

    fold = add("fold", _cmd_fold)
    fold.add_argument("model", type=Path, metavar="MODEL.onnx")
    fold.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="OUT.onnx",
        help="default: <stem>.folded.onnx beside it",
    )
    fold.add_argument("--in-place", action="store_true", help="overwrite the input file")
    fold.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    fold.add_argument(
        "--verify", action="store_true", help="then check the output against the input"
    )
    _add_check_options(fold)

    export = add("export", _cmd_export)
    add_model_py_arguments(export)
    export.add_argument("-o", "--output", type=Path, required=True, metavar="MODEL.onnx")
    export.add_argument(
        "--exporter",
        choices=("dynamo", "torchscript"),
        default="dynamo",
        help="torch.onnx exporter",
    )
    export.add_argument(
        "--keep-weight-norm",
        action="store_true",
        help="export with weight norm and fold it in ONNX only",
    )
    export.add_argument(
        "--dynamic", action="append", metavar="NAME=AXES", help="dynamic axes, e.g. mel=0,2"
    )
    export.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    export.add_argument(
        "--verify", action="store_true", help="compare ONNX Runtime with PyTorch and time it"
    )
    export.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    _add_check_options(export, inputs=False)

    check = add("check", _cmd_check)
    check.add_argument("reference", type=Path, metavar="REFERENCE.onnx")
    check.add_argument("candidate", type=Path, metavar="CANDIDATE.onnx")
    check.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    _add_check_options(check)

    add_train_rewrite_arguments(add("train-rewrite", cmd_train_rewrite))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = _build_parser().parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    console = Console(highlight=False, soft_wrap=True)
    try:
        return int(args.run(args, console))
    except WnpassError as error:
        print(f"wnpass: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("wnpass: interrupted", file=sys.stderr)
        return 130
