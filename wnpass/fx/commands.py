"""The ``train-rewrite`` and ``inspect model.py`` commands: parse, call the library, render.

``wnpass train-rewrite model.py`` builds the model, loads ``--checkpoint`` (any weight-norm key
form, ``weights_only=True``), applies weight norm, checks the outputs on ``example_inputs()``
(``--init keep``), and writes the state dict (standard keys) atomically to ``-o``
(default ``<stem>.wn.pt`` beside the model). Exit 0 ok, 1 the equivalence check failed (nothing
is written), 2 bad input.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from wnpass.atomic import replaced
from wnpass.errors import OutputError, UsageError
from wnpass.fx.report import PLAN_COLUMNS, ApplyReport, apply_summary, plan_rows
from wnpass.report import table

if TYPE_CHECKING:
    import torch

# torch and the analysis are imported inside the commands: ``wnpass --help`` and the ONNX
# commands build this parser too, and should not pay for importing torch.

__all__ = [
    "add_model_py_arguments",
    "add_train_rewrite_arguments",
    "cmd_inspect_py",
    "cmd_train_rewrite",
    "load_checkpoint",
]

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_CHECK_FAILED = 0, 1


def add_model_py_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a command's model comes from: ``model.py``, ``--factory`` and ``--checkpoint``."""
    parser.add_argument("model", type=Path, metavar="model.py")
    parser.add_argument("--factory", metavar="NAME", help="factory function (default build_model)")
    parser.add_argument("--checkpoint", type=Path, metavar="FILE", help="state dict to load first")


def add_train_rewrite_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``wnpass train-rewrite``."""
    add_model_py_arguments(parser)
    parser.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="only parameters, modules or ops matching (fnmatch; repeatable)",
    )
    parser.add_argument(
        "--exclude", action="append", metavar="PATTERN", help="leave these alone (repeatable)"
    )
    parser.add_argument(
        "--init",
        choices=("keep", "data"),
        default="keep",
        help="keep: same outputs (g=||w||, v=w); data: the paper's data-dependent init",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="batch for --init data: .pt (tensor or tuple) or .npz; default example_inputs()",
    )
    parser.add_argument("-o", "--output", type=Path, metavar="OUT", help="default <stem>.wn.pt")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")


def load_checkpoint(model: torch.nn.Module, path: Path) -> None:
    """Load a state dict in any weight-norm key form (``weights_only=True``); UsageError if bad."""
    import torch

    from wnpass.fx.state import load_state_dict_any

    if not path.is_file():
        raise UsageError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UsageError(f"{path}: cannot load checkpoint: {str(error).splitlines()[0]}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UsageError(f"{path}: not a state dict ({type(state).__name__})")
    try:
        load_state_dict_any(model, state)
    except RuntimeError as error:
        raise UsageError(f"{path}: does not fit the model: {str(error).splitlines()[0]}") from None


def _load_batch(path: Path) -> tuple[Any, ...]:
    import torch

    from wnpass.fx.loading import as_inputs

    if not path.is_file():
        raise UsageError(f"{path}: no such data file")
    try:
        if path.suffix == ".npz":
            import numpy as np

            with np.load(path) as arrays:
                return tuple(torch.from_numpy(arrays[name]) for name in arrays.files)
        return as_inputs(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as error:
        raise UsageError(f"{path}: cannot read a batch: {str(error).splitlines()[0]}") from None


def _output_path(args: argparse.Namespace) -> Path:
    output: Path = args.output or args.model.with_name(f"{args.model.stem}.wn.pt")
    if output.resolve() == args.model.resolve():
        raise OutputError(f"{output}: would overwrite the input")
    if output.is_dir():
        raise OutputError(f"{output}: is a directory")
    return output


def _save_atomic(state: dict[str, Any], output: Path) -> None:
    """Write to a temporary file beside ``output``, then rename it into place."""
    import torch

    with replaced(output) as temporary, open(temporary, "wb") as stream:
        torch.save(state, stream)  # a stream: torch names the archive after a path's file name


def _print(console: Console, report: ApplyReport, title: str, *, inspect: bool) -> None:
    console.print(table(title, PLAN_COLUMNS, plan_rows(report.sites)))
    console.print(apply_summary(report, inspect=inspect))


def cmd_train_rewrite(args: argparse.Namespace, console: Console) -> int:
    """Add weight normalization to a model.py's model and save its state dict."""
    from wnpass.fx.apply import apply_weight_norm
    from wnpass.fx.loading import load_model_py

    output = _output_path(args)
    model, inputs = load_model_py(args.model, args.factory)
    if args.checkpoint is not None:
        load_checkpoint(model, args.checkpoint)
    batch = inputs
    if args.init == "data":
        batch = _load_batch(args.data) if args.data is not None else inputs
        if batch is None:
            raise UsageError(f"--init data needs --data FILE: {args.model} has no example_inputs()")
    elif args.data is not None:
        raise UsageError("--data is the batch for --init data")
    report = apply_weight_norm(
        model, batch, include=args.include, exclude=args.exclude, init=args.init
    )
    if args.init == "data" and args.data is None:
        report.notes.append("data init on example_inputs(): give --data FILE for a real batch")
    if args.init == "keep" and inputs is None:
        report.notes.append(f"{args.model} has no example_inputs(): equivalence not checked")
    if report:
        _save_atomic(model.state_dict(), output)
        report.output = str(output)
    _print(console, report, str(args.model), inspect=False)
    if not report:
        console.print(f"nothing written: the rewritten model's outputs differ; {output} untouched")
    if args.json:
        report.write_json(args.json)
    return EXIT_OK if report else EXIT_CHECK_FAILED


def cmd_inspect_py(args: argparse.Namespace, console: Console) -> int:
    """Print the weight-norm plan of a model.py's model; changes nothing."""
    from wnpass.fx.analyse import analyse_sites
    from wnpass.fx.loading import load_model_py

    model, inputs = load_model_py(args.model, getattr(args, "factory", None))
    sites, mode, note = analyse_sites(model, inputs)
    report = ApplyReport(sites=sites, traced_with=mode, trace_note=note)
    _print(console, report, str(args.model), inspect=True)
    if args.json:
        report.write_json(args.json)
    return EXIT_OK
