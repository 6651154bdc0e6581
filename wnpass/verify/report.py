"""The check report: data that knows whether it passed, its JSON, and its table rows (pure)."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from wnpass.report import Anchored, shape_text, write_json
from wnpass.verify.compare import (
    OutputComparison,
    nothing_compared,
    output_passed,
    uncompared_outputs,
)

if TYPE_CHECKING:
    from wnpass.plan import IOPlan

__all__ = [
    "CANDIDATE_FAILED",
    "CANDIDATE_NOT_DETERMINISTIC",
    "NOT_DETERMINISTIC",
    "OK",
    "CheckReport",
    "LatencyStats",
    "ProviderRun",
    "comparison_data",
    "comparison_row",
    "comparison_rows",
    "elements_compared",
    "fell_back_to",
    "latency_rows",
    "shown_error",
    "shown_tolerance",
    "tolerance_text",
    "ulp_note",
]

# A provider run's status: compared (OK), or why not.
OK = "ok"
# the reference loaded and ran, the candidate did not (did not load, or failed to run: the
# ONNX Runtime message in ProviderRun.error says which)
CANDIDATE_FAILED = "candidate failed to run"
# the reference gave other values on a second run on the same inputs (a random op, a
# training-mode Dropout): no run of it is a reference to compare with (ProviderRun.error:
# which outputs)
NOT_DETERMINISTIC = "reference not deterministic"
# the candidate gave other values on a second run on the same inputs where the reference did
# not: it is not shown equivalent, whatever its first run matched (ProviderRun.error: which
# outputs; the comparisons are of the run that differs)
CANDIDATE_NOT_DETERMINISTIC = "candidate not deterministic"


def fell_back_to(actual: str) -> str:
    """The status of a run whose session ONNX Runtime moved to provider ``actual`` (short
    name): nothing ran where it was asked for."""
    return f"fell back to {actual.upper()}"


@dataclasses.dataclass
class LatencyStats:
    """Timed runs of one model, in milliseconds."""

    runs: int
    median_ms: float
    p90_ms: float
    min_ms: float


@dataclasses.dataclass
class ProviderRun:
    """Reference and candidate on one provider at one graph-optimization level."""

    provider: str  # the short name asked for: "cpu" or "cuda"
    optimization: str  # "default" or "disabled"
    # OK; fell_back_to(...): "fell back to CPU"; CANDIDATE_FAILED or NOT_DETERMINISTIC (then
    # nothing was compared or measured); CANDIDATE_NOT_DETERMINISTIC (compared, not measured)
    status: str
    comparisons: list[OutputComparison] = dataclasses.field(default_factory=list)
    reference_session_s: float | None = None
    candidate_session_s: float | None = None
    reference: LatencyStats | None = None
    candidate: LatencyStats | None = None
    # CANDIDATE_FAILED: ONNX Runtime's message; NOT_DETERMINISTIC and
    # CANDIDATE_NOT_DETERMINISTIC: which outputs changed
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        """Candidate median latency over the reference's."""
        if self.reference is None or self.candidate is None or not self.reference.median_ms:
            return None
        return self.candidate.median_ms / self.reference.median_ms

    @property
    def passed(self) -> bool:
        """Compared on the provider asked for, every output matched, and some element of some
        output was compared (:func:`~wnpass.verify.compare.nothing_compared`)."""
        return (
            self.status == OK
            and bool(self.comparisons)
            and all(self.comparisons)
            and self.nothing_compared is None
        )

    @property
    def nothing_compared(self) -> str | None:
        """Why this run compared nothing: ONNX Runtime fell back from the provider asked for
        (nothing was run there), or every output was empty or NaN alike. None where the
        candidate failed to run: that is no lack of evidence but a failure
        (:attr:`failed_to_run`)."""
        if self.status in (CANDIDATE_FAILED, CANDIDATE_NOT_DETERMINISTIC):
            return None  # a failure, not a lack of evidence
        if self.status == NOT_DETERMINISTIC:
            return f"nothing compared: {self.error}"
        if self.status != OK:
            return f"nothing compared: ONNX Runtime {self.status} (nothing ran on {self.provider})"
        return nothing_compared(self.comparisons)

    @property
    def failed_to_run(self) -> str | None:
        """Why the candidate failed to run where the reference ran, or None."""
        if self.status != CANDIDATE_FAILED:
            return None
        return f"the candidate failed to run: {self.error}"

    @property
    def changed(self) -> str | None:
        """How the candidate's second run differed from its first, or None."""
        return self.error if self.status == CANDIDATE_NOT_DETERMINISTIC else None


@dataclasses.dataclass
class CheckReport(Anchored):
    """Equivalence and latency of a candidate model against a reference."""

    reference: str
    candidate: str
    inputs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # (path, what it is): the models, their external data and the inputs file the check read
    # (never written over by write_json; not in the JSON)
    files_read: list[tuple[str, str]] = dataclasses.field(default_factory=list, repr=False)
    notes: list[str] = dataclasses.field(default_factory=list)  # defaults taken, ranges used
    runs: list[ProviderRun] = dataclasses.field(default_factory=list)
    not_available: list[str] = dataclasses.field(default_factory=list)
    cross_provider: list[OutputComparison] = dataclasses.field(default_factory=list)
    # what makes the candidate no drop-in replacement, read from the two models before any
    # run (a fixed size where the reference's input is dynamic, a random op it adds): each
    # fails the check, whatever the runs compare
    differences: list[str] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        """True when every run compared outputs and they matched (and across providers), and
        the models differ in nothing that fails the check (:attr:`differences`): a provider
        that was asked for (by name, or as one of every one available) and fell back to the
        CPU compared nothing there, so the check fails."""
        cross = self.cross_provider
        return (
            not self.differences
            and bool(self.runs)
            and all(r.passed for r in self.runs)
            and all(cross)
            and nothing_compared(cross) is None
        )

    def compared_nothing(self) -> bool:
        """Failed, though no element differed: some run compared nothing (every output empty
        or NaN alike, or the provider fell back to the CPU), and every other one matched."""
        groups = [run.comparisons for run in self.runs] + [self.cross_provider]
        ran = not any(run.failed_to_run or run.changed for run in self.runs)
        return not self and not self.differences and ran and all(all(g) for g in groups)

    def uncompared(self) -> list[str]:
        """The outputs of which no element was compared in some run (:func:`uncompared_outputs`)."""
        return uncompared_outputs(c for run in self.runs for c in run.comparisons)

    def failed_to_run(self) -> bool:
        """Failed because the candidate failed to run, somewhere, where the reference ran."""
        return any(run.failed_to_run for run in self.runs)

    def failures(self) -> list[str]:
        """One line per difference of the models, per failed output (where, which, why), and
        per run that compared nothing."""
        lines = list(self.differences)
        for run in self.runs:
            if changed := run.changed:  # before the outputs of the run that differs
                lines.append(f"{run.provider}/{run.optimization}: {changed}")
            for c in run.comparisons:
                if not c.passed:
                    said = failure_reason(c) + (f"; {note}" if (note := ulp_note(c)) else "")
                    lines.append(f"{run.provider}/{run.optimization}: {c.name}: {said}")
            if vacuous := run.nothing_compared:
                lines.append(f"{run.provider}/{run.optimization}: {vacuous}")
            if failed := run.failed_to_run:
                lines.append(f"{run.provider}/{run.optimization}: {failed}")
        for c in self.cross_provider:
            if not c.passed:
                lines.append(f"cuda vs cpu: {c.name}: {failure_reason(c)}")
        if vacuous := nothing_compared(self.cross_provider):
            lines.append(f"cuda vs cpu: {vacuous}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        del data["files_read"]
        data["ok"] = bool(self)
        data["cross_provider_nothing_compared"] = nothing_compared(self.cross_provider)
        data["uncompared"] = self.uncompared()
        for run, raw in zip(self.runs, data["runs"], strict=True):
            raw["ratio"] = run.ratio
            raw["passed"] = run.passed  # status says whether it ran; this, whether it matched
            raw["nothing_compared"] = run.nothing_compared
            for c, rc in zip(run.comparisons, raw["comparisons"], strict=True):
                comparison_data(c, rc)
        for c, rc in zip(self.cross_provider, data["cross_provider"], strict=True):
            comparison_data(c, rc)
        return data

    def write_json(self, path: str | os.PathLike[str], plan: IOPlan | None = None) -> None:
        """Write the report as JSON, atomically (:func:`wnpass.report.write_json`). ``plan``:
        the caller's, in which ``path`` was recorded and checked with the files it reads;
        without one, writing over a file this check read (the reference, the candidate, their
        external data, the inputs file) is refused (``OutputError``, parameter ``json_path``)."""
        read = [
            *self.files_read,
            (self.reference, "the reference"),
            (self.candidate, "the candidate"),
        ]
        write_json(path, self.to_dict(), plan, lambda: [(self.anchored(f), w) for f, w in read])


def shown_tolerance(value: float) -> str:
    """A tolerance as given: every digit it has (the shortest text that reads back as it),
    ``1e-05``, ``0.0001``, ``1.0000001e-05``, and a whole number without ``.0``."""
    return repr(float(value)).removesuffix(".0")


def shown_error(value: float, tolerance: float | None) -> str:
    """An error size to 3 significant digits, or as many more as it takes to print on the
    same side of ``tolerance`` (the absolute one, which it is measured against) as it is: a
    value outside a tolerance of 1e-05 never prints as 1e-05 (1.0014e-05 is ``1.001e-05``)."""
    against = 0.0 if tolerance is None else tolerance
    side = (value > against) - (value < against)
    for digits in range(3, 18):  # 17 significant digits read back as the float itself
        text = f"{value:.{digits}g}"
        shown = float(text)
        if shown == value or (shown > against) - (shown < against) == side:
            return text
    return repr(value)


def _tolerance(c: OutputComparison) -> str:
    """The tolerance used, as the report shows it: ``exact`` where none applies, ``-`` where
    no element had a type to take one from (an optional output empty in both, an empty
    sequence: ONNX Runtime gives neither a dtype)."""
    if not _typed(c):
        return "-"
    text = tolerance_text(c.rtol, c.atol, c.atol_scaled, per_item=c.atol_per_item)
    return text if c.defaults_of is None else f"{text} ({c.defaults_of}'s)"


def _typed(c: OutputComparison) -> bool:
    """Whether the output has a type to take its tolerance from: not so of an optional output
    empty in both, or an empty sequence (ONNX Runtime gives neither one); an array of no
    elements has its dtype (an integer one is exact: t111 showed it ``-``)."""
    return c.rtol is not None or bool(c.total) or c.dtype not in (None, "sequence")


def tolerance_text(
    rtol: float | None, atol: float | None, atol_scaled: bool, *, per_item: bool = False
) -> str:
    """A tolerance as a table shows it: ``exact`` where none applies; a default ``atol``
    capped at ``rtol`` times the output's scale (``compare.scaled_atol``) to 3 digits and
    marked so, being derived; for a sequence whose items' caps differ (``per_item``), the
    largest, marked so; else both as given, every digit."""
    if rtol is None or atol is None:
        return "exact"
    if per_item:
        return f"rtol={shown_tolerance(rtol)} atol<={atol:.3g} (rtol x each item's scale)"
    if atol_scaled:
        return f"rtol={shown_tolerance(rtol)} atol={atol:.3g} (rtol x scale)"
    return f"rtol={shown_tolerance(rtol)} atol={shown_tolerance(atol)}"


def failure_reason(c: OutputComparison) -> str:
    """Why an output failed, in words: its problem, or how many elements are outside."""
    if c.problem:
        return c.problem
    if not c.numeric:
        return f"{c.outside} of {c.total} elements differ"
    if c.exact:
        return outside_text(c.outside, c.total, None, None, False, c.max_abs)
    return outside_text(
        c.outside, c.total, c.rtol, c.atol, c.atol_scaled, c.max_abs,
        per_item=c.atol_per_item, scaled=c.max_scaled if c.measured else None,
    )  # fmt: skip


def ulp_note(c: OutputComparison, reference: str = "the reference") -> str | None:
    """How the reference (``reference``: PyTorch, for an export) itself compared with its
    weights moved by one ulp, where ``c`` failed on floats (:mod:`wnpass.verify.sensitivity`);
    None where that was not measured."""
    if c.ulp_passed is None or c.ulp_max_abs is None:
        return None
    moved = shown_error(c.ulp_max_abs, c.atol)
    if c.ulp_passed:
        return f"{reference} with each weight moved by one ulp stays within it (max abs {moved})"
    return (
        f"{reference} with each weight moved by one ulp fails it too (max abs {moved}): "
        "this model moves beyond the tolerance wherever its weights are rounded otherwise"
    )


def outside_text(
    outside: int,
    total: int,
    rtol: float | None,
    atol: float | None,
    atol_scaled: bool,
    max_abs: float,
    *,
    per_item: bool = False,
    scaled: float | None = None,
) -> str:
    """How many elements of a compared output are off, with the largest error: ``3 of 6
    elements outside rtol=0.0001 atol=1e-05 (max abs 0.2)``, and relative to the output's
    scale where given (``max abs 55.3, 2.42e-04 of scale``: a large error of a large output
    reads as what it is, t298); where it is compared exactly (``rtol``/``atol`` None), ``3 of
    6 elements differ (max abs 2)``."""
    if rtol is None or atol is None:
        return f"{outside} of {total} elements differ (max abs {shown_error(max_abs, None)})"
    tolerance = tolerance_text(rtol, atol, atol_scaled, per_item=per_item)
    of_scale = f", {scaled:.3g} of scale" if scaled is not None else ""
    return (
        f"{outside} of {total} elements outside {tolerance} "
        f"(max abs {shown_error(max_abs, atol)}{of_scale})"
    )


COMPARISON_COLUMNS = (
    "provider",
    "output",
    "shape",
    "max abs",
    "max abs/scale",
    "outside",
    "tolerance",
    "result",
)
LATENCY_COLUMNS = (
    "provider",
    "session ms ref/cand",
    "median ms ref/cand",
    "p90 ms ref/cand",
    "min ms ref/cand",
    "cand/ref",
)


def _result(c: OutputComparison) -> str:
    """The result column: ``ok``, ``not compared`` and why (no failure by itself), or FAIL."""
    if not c.passed:
        return f"FAIL: {failure_reason(c)}"
    return f"not compared: {c.uncompared}" if c.uncompared else "ok"


def comparison_data(c: OutputComparison, data: dict[str, Any]) -> None:
    """One output's JSON: its status, and error sizes only where they were measured (null for
    a string, a map, a missing output or one with no element compared: 0 would read as
    "no error")."""
    # exact: null where no element had a type to take a tolerance from (the table's "-")
    data.update(
        passed=output_passed(c.passed, c.uncompared),
        status=c.status,
        exact=c.exact if _typed(c) else None,
    )
    if not c.measured:
        data.update(max_abs=None, max_rel=None, scale=None, max_scaled=None)


def elements_compared(problem: str | None, outside: int, measured: bool = False) -> bool:
    """Whether a row's error sizes and outside count say something: not so of an output whose
    shape or dtype differs, or that is missing, where no element was compared (the tables
    show ``-`` there, not ``0/6``)."""
    return problem is None or measured or outside > 0


def comparison_row(where: str, c: OutputComparison) -> tuple[str, ...]:
    """One output's comparison in the columns of ``COMPARISON_COLUMNS``."""
    counted = elements_compared(c.problem, c.outside, c.measured)
    return (
        where,
        c.name,
        shape_text(c.shape, unknown="-"),
        shown_error(c.max_abs, c.atol) if c.measured else "-",
        f"{c.max_scaled:.3g}" if c.measured and c.max_scaled is not None else "-",
        f"{c.outside}/{c.total}" if counted else "-",
        _tolerance(c),
        _result(c),
    )


def comparison_rows(report: CheckReport) -> list[tuple[str, ...]]:
    """Every output's row, run by run; a run that fell back has one row saying so (it
    compared nothing, and fails the check)."""
    rows = []
    for run in report.runs:
        where = f"{run.provider}/{run.optimization}"
        if run.status != OK:
            why = run.failed_to_run or run.nothing_compared or run.changed
            rows.append((where, *["-"] * 6, f"FAIL: {why}"))
        rows.extend(comparison_row(where, c) for c in run.comparisons)
    rows.extend(comparison_row("cuda vs cpu", c) for c in report.cross_provider)
    return rows


def latency_rows(report: CheckReport) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for run in report.runs:
        where = f"{run.provider}/{run.optimization}"
        if run.reference is None or run.candidate is None:
            rows.append((where, run.status, "-", "-", "-", "-"))
            continue
        ref, cand = run.reference, run.candidate
        rows.append(
            (
                where,
                f"{run.reference_session_s * 1e3:.1f} / {run.candidate_session_s * 1e3:.1f}"
                if run.reference_session_s is not None and run.candidate_session_s is not None
                else "-",
                f"{ref.median_ms:.3f} / {cand.median_ms:.3f}",
                f"{ref.p90_ms:.3f} / {cand.p90_ms:.3f}",
                f"{ref.min_ms:.3f} / {cand.min_ms:.3f}",
                f"{run.ratio:.3f}" if run.ratio is not None else "-",
            )
        )
    return rows
