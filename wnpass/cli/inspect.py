"""``wnpass inspect MODEL``: the weight-norm sites of an .onnx file or a model.py; changes
nothing (with ``--json``, writes only the report)."""

from __future__ import annotations

import argparse
from pathlib import Path

from wnpass import readahead
from wnpass._deferred import defer_sympy
from wnpass.cli.options import add_json_option, add_selection_arguments, blamed_on, selection
from wnpass.cli.output import Printer
from wnpass.cli.render import print_sites
from wnpass.plan import IOPlan

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", type=Path, metavar="MODEL", help="an .onnx file, a model.py or a checkpoint"
    )
    parser.add_argument(
        "--factory", metavar="NAME", help="model.py: the factory function (default build_model)"
    )
    add_json_option(parser)
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a fold would still change something (foldable weight-norm sites or "
        "weights computed from constants): a gate for pipelines",
    )
    parser.add_argument(
        "--weight-norm-only",
        action="store_true",
        help="look for weight-norm sites only (with --strict: gate on those alone)",
    )
    add_selection_arguments(parser)


def run(args: argparse.Namespace, out: Printer) -> int:
    """List the weight-norm sites of an ONNX model or a model.py; changes nothing."""
    from wnpass.cli import checkpoint

    if checkpoint.is_checkpoint(args.model):
        return checkpoint.inspect(args, out)  # plans its own files
    plan = IOPlan()
    if args.json:
        plan.write(args.json, "json_path")
    if args.model.suffix == ".py":
        return _inspect_model_py(args, out, plan)
    readahead.start(args.model)  # while onnx is imported
    defer_sympy()  # inspecting an ONNX model never needs it
    from wnpass.errors import UsageError
    from wnpass.onnx import io
    from wnpass.onnx.api import inspect_onnx

    if args.factory is not None or any(
        (args.include, args.exclude, args.include_type, args.exclude_type)
    ):
        raise UsageError("--factory, --include and --exclude are for a model.py")
    model = io.load(args.model, plan)
    plan.check()
    report = inspect_onnx(model, weight_norm_only=args.weight_norm_only)
    report.input = str(args.model)
    report.bytes_before = io.model_bytes(args.model, model)
    print_sites(out, report, str(args.model), inspect=True)
    if args.json:
        report.write_json(args.json, plan)
    if args.strict and report.remaining:
        out.summary(f"STRICT: {report.remaining} left to fold in {args.model}; run wnpass fold")
        return 1
    return 0


def _inspect_model_py(args: argparse.Namespace, out: Printer, plan: IOPlan) -> int:
    from wnpass.errors import UsageError

    if args.strict or args.weight_norm_only:
        raise UsageError("--strict and --weight-norm-only are for an ONNX file or a checkpoint")
    from wnpass.cli.train_rewrite import print_plan
    from wnpass.fx.analyse import analyse_sites
    from wnpass.fx.loading import load_model_py
    from wnpass.fx.report import ApplyReport

    plan.read(args.model, "the model.py")
    plan.check()
    model, inputs = load_model_py(args.model, args.factory)
    with blamed_on(args.model):
        include, exclude = selection(args, model)
        sites, mode, note = analyse_sites(model, inputs, include=include, exclude=exclude)
    report = ApplyReport(sites=sites, traced_with=mode, trace_note=note)
    print_plan(out, report, str(args.model), inspect=True)
    if args.json:
        report.write_json(args.json, plan)
    return 0
