"""The ``wnpass`` command line: parse, validate, call the library, render, return an exit code.

Exit codes: 0 success, 1 a check failed, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from wnpass import __version__
from wnpass.errors import UsageError, WnpassError
from wnpass.report import SITE_COLUMNS, FoldReport, fold_summary, site_rows, table

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

    _require_onnx(args.model, "inspect")
    report = inspect_onnx(args.model)
    _print_sites(console, report, str(args.model), inspect=True)
    if args.json:
        report.write_json(args.json)
    return EXIT_OK


def _cmd_fold(args: argparse.Namespace, console: Console) -> int:
    """Fold weight normalization out of an ONNX model into plain weights."""
    from wnpass.onnx.api import fold_onnx

    _require_onnx(args.model, "fold")
    _, report = fold_onnx(args.model, args.output, in_place=args.in_place)
    _print_sites(console, report, str(args.model), inspect=False)
    if args.json:
        report.write_json(args.json)
    return EXIT_OK


def _build_parser() -> argparse.ArgumentParser:
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
    inspect.add_argument("model", type=Path, metavar="MODEL", help="an .onnx file")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = _build_parser().parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    console = Console(highlight=False, soft_wrap=False)
    try:
        return int(args.run(args, console))
    except WnpassError as error:
        print(f"wnpass: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("wnpass: interrupted", file=sys.stderr)
        return 130
