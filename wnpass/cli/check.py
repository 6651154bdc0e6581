"""``wnpass check REFERENCE CANDIDATE``: equivalence and latency on ONNX Runtime providers."""

from __future__ import annotations

import argparse
from typing import Any

from wnpass._deferred import defer_sympy
from wnpass.cli.options import add_check_options, add_json_option, check_options, given_path
from wnpass.cli.output import Printer
from wnpass.cli.render import print_check
from wnpass.plan import IOPlan

__all__ = ["add_arguments", "progress_bar", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", type=given_path, metavar="REFERENCE.onnx")
    parser.add_argument("candidate", type=given_path, metavar="CANDIDATE.onnx")
    add_json_option(parser)
    add_check_options(parser)


def run(args: argparse.Namespace, out: Printer) -> int:
    """Check that CANDIDATE computes what REFERENCE computes, and compare their latency."""
    defer_sympy()  # comparing ONNX models never needs it
    from wnpass.verify.check import check

    options = check_options(args)
    plan = IOPlan()
    if args.json:
        plan.write(args.json, "json_path")
    with progress_bar(out) as progress:  # check() records and checks the files it reads first
        report = check(
            args.reference, args.candidate, options=options, progress=progress, plan=plan
        )
    print_check(out, report)
    if args.json:
        out.json_report(lambda: report.write_json(args.json, plan))
    return 0 if report else 1


class progress_bar:
    """A progress bar on stderr for the timed runs, shown only where ``out`` draws bars
    (:attr:`~wnpass.cli.output.Printer.bars`: a terminal, and neither --plain nor --quiet)."""

    def __init__(self, out: Printer) -> None:
        self._shown = out.bars

    def __enter__(self) -> Any:
        from rich.console import Console
        from rich.progress import Progress

        self._bar = Progress(console=Console(stderr=True), transient=True, disable=not self._shown)
        self._bar.__enter__()
        tasks: dict[str, Any] = {}

        def progress(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = self._bar.add_task(f"timing {label}", total=total)
            self._bar.update(tasks[label], completed=done)

        return progress

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(None, None, None)
