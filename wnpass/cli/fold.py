"""``wnpass fold MODEL.onnx``: weight norm folded into plain weights, optionally verified."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from wnpass import readahead
from wnpass._deferred import defer_sympy
from wnpass.checkpoint.formats import TORCH_NAMES
from wnpass.cli.options import (
    add_check_options,
    add_json_option,
    add_keep_objects_option,
    check_options,
    file_path,
    given_path,
    refuse_check_flags,
)
from wnpass.cli.output import Printer
from wnpass.cli.render import print_check, print_sites
from wnpass.errors import printable
from wnpass.plan import IOPlan

__all__ = ["add_arguments", "run", "write_progress"]

# A bar for writing the output is shown on a terminal from this input size on: below it the
# write takes about a second.
PROGRESS_BAR_BYTES = 100 * 2**20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        type=given_path,
        metavar="MODEL",
        help=f"an .onnx file or a checkpoint ({TORCH_NAMES}, .safetensors, *.index.json)",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=file_path,
        metavar="OUT",
        help="default: <stem>.folded<suffix> beside the input (.onnx, or the checkpoint's)",
    )
    parser.add_argument("--in-place", action="store_true", help="replace the input file")
    parser.add_argument(
        "--weight-norm-only",
        action="store_true",
        help="fold weight norm only, not the other weights computed from constants",
    )
    add_json_option(parser)
    add_keep_objects_option(parser)
    parser.add_argument(
        "--verify",
        action="store_true",
        help="check the output against the input before it is published",
    )
    add_check_options(parser)
    group = parser.add_argument_group("checkpoint options")
    group.add_argument(
        "--model",
        dest="check_model",
        type=given_path,
        metavar="model.py",
        help="verify a folded checkpoint: load it strictly into this model without weight norm "
        "and compare outputs on example_inputs()",
    )
    group.add_argument("--factory", metavar="NAME", help="with --model: the factory function")


def run(args: argparse.Namespace, out: Printer) -> int:
    """Fold weight normalization out of an ONNX model or a checkpoint into plain weights."""
    from wnpass.checkpoint.formats import is_checkpoint_path, refuse_unread
    from wnpass.cli import checkpoint
    from wnpass.errors import UsageError

    refuse_unread(args.model, "either")  # before the options it makes moot
    if is_checkpoint_path(args.model):
        return checkpoint.fold(args, out)
    if args.check_model is not None or args.factory is not None:
        raise UsageError("--model and --factory verify a checkpoint fold; for ONNX use --verify")
    if args.keep_objects:
        raise UsageError("--keep-objects is for torch checkpoints; an ONNX model holds no objects")
    readahead.start(args.model)  # while onnx is imported
    defer_sympy()  # an ONNX fold never needs it
    from wnpass.onnx.api import fold_onnx

    if args.in_place and args.output is not None:
        raise UsageError("--in-place replaces the input: do not also give -o")
    if not args.verify:
        refuse_check_flags(args, goes_with="--verify")
    options = check_options(args) if args.verify else None
    plan = IOPlan()
    if args.json:
        plan.write(args.json, "json_path")
    with write_progress(args.model, out, plan) as progress:
        _, report = fold_onnx(
            args.model,
            args.output,
            in_place=args.in_place,
            weight_norm_only=args.weight_norm_only,
            verify=options,
            plan=plan,
            progress=progress,
        )
    print_sites(out, report, str(args.model), inspect=False)
    if report.check is not None:
        print_check(out, report.check)
        if not report.check:
            out.summary("nothing written: the folded model failed the check")
    if args.json:
        out.json_report(lambda: report.write_json(args.json, plan))
    return 1 if report.check is not None and not report.check else 0


@contextlib.contextmanager
def write_progress(
    model: Path, out: Printer, plan: IOPlan
) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr while the output's weights are written: only where ``out``
    draws bars (a terminal, neither --plain nor --quiet; never in a log) and for inputs of
    ``PROGRESS_BAR_BYTES`` or more, the model and the external data files it read counted
    (``plan``'s reads, known once the writing starts: a model over 2 GiB keeps its weights
    in such files). rich is imported only for a bar drawn."""
    if not out.bars:
        yield None
        return
    bars: list[Any] = []  # the bar and its task, once drawn
    decided = False

    def progress(done: int, total: int) -> None:
        nonlocal decided
        if not decided:
            decided = True
            if _bytes_read(plan, model) >= PROGRESS_BAR_BYTES:
                from rich.console import Console
                from rich.markup import escape
                from rich.progress import Progress

                bar = Progress(console=Console(stderr=True), transient=True)
                bar.start()
                bars.extend([bar, bar.add_task(escape(f"writing {printable(model.name)}"))])
        if bars:
            bars[0].update(bars[1], completed=done, total=total)

    try:
        yield progress
    finally:
        if bars:
            bars[0].stop()


def _bytes_read(plan: IOPlan, model: Path) -> int:
    """The sizes of the model and of every file the run read (its external data)."""
    total = 0
    for path in dict.fromkeys([model, *plan.reads()]):
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total
