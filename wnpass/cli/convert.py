"""``wnpass convert CKPT --to parametrize|legacy``: rename weight-norm keys, tensors unchanged."""

from __future__ import annotations

import argparse

from wnpass.checkpoint.formats import TORCH_NAMES
from wnpass.cli.options import add_json_option, add_keep_objects_option, file_path, given_path
from wnpass.cli.output import Printer
from wnpass.plan import IOPlan

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        type=given_path,
        metavar="CKPT",
        help=f"a checkpoint: {TORCH_NAMES}, .safetensors, or a *.index.json of shards",
    )
    parser.add_argument(
        "--to",
        required=True,
        choices=("parametrize", "legacy"),
        help="parametrize: m.parametrizations.W.original0/1; legacy: m.W_g/m.W_v",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=file_path,
        metavar="OUT",
        help="default: <stem>.<to><suffix> beside it",
    )
    add_json_option(parser)
    add_keep_objects_option(parser)


def run(args: argparse.Namespace, out: Printer) -> int:
    """Rewrite a checkpoint's weight-norm keys into the other key form (tensors unchanged)."""
    from wnpass.checkpoint import convert_checkpoint
    from wnpass.cli.checkpoint import print_pairs, print_summary

    plan = IOPlan()
    if args.json:
        plan.write(args.json, "json_path")
    report = convert_checkpoint(
        args.model, args.to, args.output, plan=plan, keep_objects=args.keep_objects
    )
    print_pairs(out, report)
    print_summary(out, report)
    if args.json:
        out.json_report(lambda: report.write_json(args.json, plan))
    return 0
