"""Reports as the CLI prints them: pure rows from the reports, printed through a Printer."""

from __future__ import annotations

from typing import Any

from wnpass.cli.output import Printer
from wnpass.report import (
    CONE_COLUMNS,
    SITE_COLUMNS,
    ConeReport,
    FoldReport,
    SiteReport,
    cone_rows,
    counted,
    fold_summary,
    site_rows,
)

__all__ = ["print_check", "print_left", "print_sites", "strict_line"]


def print_sites(out: Printer, report: FoldReport, title: str, *, inspect: bool) -> None:
    if report.sites:
        out.table(title, SITE_COLUMNS, site_rows(report.sites))
    else:
        out.line(f"{title}: no weight-norm sites")
    if report.cones:
        out.table("weights computed from constants", CONE_COLUMNS, cone_rows(report.cones))
    for line in fold_summary(report, inspect=inspect):
        out.summary(line)
    if out.quiet and not inspect:  # a decline is why a fold failed: said without the tables
        declined: list[SiteReport | ConeReport] = [*report.sites, *report.cones]
        for item in declined:
            if item.status == "declined":
                where = "" if item.graph == "main" else f" [{item.graph}]"
                out.summary(f"  declined: {item.name}{where}: {item.reason}")
    print_left(out, report.left)


def strict_line(path: object, left: str | None, undecided: int, what: str) -> str | None:
    """The line ``inspect --strict`` prints where ``path`` fails the gate, or None where it
    passes: ``left``, what a fold would still do (None: nothing); ``undecided``, how many
    ``what`` (``"weight"``, ``"pair"``) could not be computed for lack of memory, which the
    gate fails on too: its verdict must not depend on the memory of the machine it runs on."""
    if not undecided:
        return None if left is None else f"STRICT: {left} left to fold in {path}; run wnpass fold"
    them = "it" if undecided == 1 else "them"
    unknown = f"{counted(undecided, what)} undecided"
    if left is None:
        return (
            f"STRICT: {unknown} in {path}: out of memory computing {them}; inspect it where "
            "more memory is free"
        )
    return (
        f"STRICT: {left} left to fold and {unknown} in {path} (out of memory computing {them}); "
        "run wnpass fold, and inspect it where more memory is free"
    )


def print_left(out: Printer, left: list[str]) -> None:
    for entry in left:
        out.summary(f"left in place: {entry}")


def print_check(out: Printer, report: Any) -> None:
    """A check report: inputs, equivalence and latency tables, and the verdict. Each line is
    one line whatever the names in it (a model's, a path's) hold: a newline in one is
    escaped with them (:func:`~wnpass.errors.printable`), never a line of its own."""
    from wnpass.verify.report import (
        COMPARISON_COLUMNS,
        LATENCY_COLUMNS,
        NOT_DETERMINISTIC,
        comparison_rows,
        latency_rows,
    )

    inputs = ", ".join(f"{i['name']} {i['dtype']}{i['shape']}" for i in report.inputs)
    out.line(f"inputs: {inputs or 'none'}")
    for note in report.notes:
        out.line(f"  {note}")
    out.table("equivalence", COMPARISON_COLUMNS, comparison_rows(report))
    out.table("latency (candidate vs reference)", LATENCY_COLUMNS, latency_rows(report))
    for provider in report.not_available:
        out.summary(f"{provider}: not available")
    candidate, reference = report.candidate, report.reference
    if report:
        uncompared = report.uncompared()
        unseen = f" (not compared: {', '.join(uncompared)})" if uncompared else ""
        out.summary(f"equivalent: {candidate} matches {reference}{unseen}")
    elif any(run.status == NOT_DETERMINISTIC for run in report.runs) and report.compared_nothing():
        out.summary(
            f"NOTHING COMPARED: {reference} gave other values on a second run (below): no "
            f"reference to compare {candidate} with"
        )
    elif report.compared_nothing():
        out.summary(
            f"NOTHING COMPARED in a run (below): {candidate} is not shown to match "
            f"{reference}, though no element differed"
        )
    elif report.failed_to_run():
        out.summary(f"NOT EQUIVALENT: {candidate} failed to run where {reference} ran")
    else:
        out.summary(f"NOT EQUIVALENT: {candidate} differs from {reference}")
    if not report:
        for line in report.failures():
            out.summary(f"  {line}")
