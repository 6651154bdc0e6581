"""Reports of the PyTorch side: per-parameter plan and result, JSON, and pure table rows."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from wnpass.report import counted

if TYPE_CHECKING:
    from wnpass.plan import IOPlan

__all__ = [
    "NOTHING_COMPARED",
    "NOT_COMPARABLE",
    "PLAN_COLUMNS",
    "ApplyReport",
    "ApplyStatus",
    "ParamSite",
    "apply_summary",
    "difference_text",
    "plan_rows",
]

# site status values: "planned" (inspect), "applied", "skipped", "already" (weight-normed
# before), "replaced" (BatchNorm -> mean-only BatchNorm), "kept" (a BatchNorm of a subclass,
# left as it is by mean_only_bn)
_LAYERS = ("replaced", "kept")  # the statuses of BatchNorm layers, which are no parameters

# the outcome of a whole rewrite (ApplyReport.status):
# "ok"                 weight norm was applied (or planned), or layers weight-normed before got
#                      the data init, and the outputs, if checked, match
# "nothing selected"   candidates existed, the user's include/exclude left none: on purpose, ok
# "nothing applied"    no parameter could take weight norm: a failure, ``reason`` says why
# "outputs changed"    the rewritten model computes something else: a failure
# "nothing compared"   the outputs have no element finite before and after: a failure, since
#                      the rewrite is not shown to keep anything
ApplyStatus = Literal[
    "ok", "nothing selected", "nothing applied", "outputs changed", "nothing compared"
]
# what an infinite max_rel_error means (wnpass.fx.apply.max_rel_error)
NOT_COMPARABLE = "NaN/Inf appeared or moved, or an output's count, shape or integer values changed"
# what a NaN max_rel_error means
NOTHING_COMPARED = "no output element is finite before and after (all NaN/Inf, or none at all)"
# what ApplyReport.not_deterministic adds to the outputs' change
NOT_DETERMINISTIC = (
    "; the model's outputs also differ from run to run on the same inputs and random draws "
    "(state it keeps between forwards, or a random generator of its own), so weight norm "
    "may not be the cause"
)
# the parts of a skip reason that vary per weight: "(also a.weight, ...)", "(unit 3 of 8 ...)"
_VARYING = re.compile(r" \((?:also|units?) [^)]*\)")
_SELECTED_OUT = ("not included", "excluded (")


@dataclasses.dataclass
class ParamSite:
    """One parameter (or BatchNorm layer): the op that uses it, its axis, and what was done."""

    name: str  # the parameter's qualified name, e.g. "blocks.0.conv.weight"
    op: str  # the consuming op, e.g. "Conv2d", "F.linear", "matmul"
    shape: list[int] | None  # None: not known (a lazy parameter not initialized)
    axis: int | None  # output-unit axis g keeps (PyTorch's dim); None: whole tensor or n/a
    status: str
    reason: str | None = None
    init: str | None = None  # "keep", "data", "data, v rescaled" or "keep: <why no data init>"
    # the user's include named it (False without one): skipped for a reason of its own, it
    # was asked for and not given, so nothing applied is no selection on purpose (t145)
    included: bool = False


@dataclasses.dataclass
class ApplyReport:
    """What ``apply_weight_norm`` (or an inspection) found and did."""

    sites: list[ParamSite] = dataclasses.field(default_factory=list)
    traced_with: str = "fx"  # "observed", "fx", "export" or "module types"
    trace_note: str | None = None
    dim_policy: str = "unit"
    init: str = "keep"
    max_rel_error: float | None = None  # outputs after vs before on example inputs
    rtol: float | None = None  # the tolerance max_rel_error was held to
    changes: str | None = None  # where the outputs differ beyond rtol, when they do
    # the outputs changed, and the model after the rewrite gave other outputs again on one more
    # run on the same inputs and random draws: state of its own, not weight norm, may be why
    not_deterministic: bool = False
    output: str | None = None
    seconds: float | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(site.status == status for site in self.sites)

    @property
    def applied(self) -> int:
        return self.count("applied")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def initialized(self) -> int:
        """Layers that got the data-dependent init (weight-normed now or before)."""
        return sum((site.init or "").startswith("data") for site in self.sites)

    @property
    def modified(self) -> bool:
        return self.applied > 0 or self.count("replaced") > 0 or self.initialized > 0

    @property
    def equivalent(self) -> bool | None:
        """Whether outputs stayed equal within ``rtol``; None when not checked; False also when
        nothing could be compared (``max_rel_error`` NaN)."""
        if self.max_rel_error is None or self.rtol is None:
            return None
        return self.max_rel_error <= self.rtol

    @property
    def nothing_compared(self) -> bool:
        """Whether the check ran but had no element to compare (``max_rel_error`` NaN)."""
        return self.max_rel_error is not None and math.isnan(self.max_rel_error)

    @property
    def selected_out(self) -> int:
        """Sites weight norm would fit that the user's include/exclude left out."""
        return sum(
            site.status == "skipped" and (site.reason or "").startswith(_SELECTED_OUT)
            for site in self.sites
        )

    @property
    def included_but_skipped(self) -> list[ParamSite]:
        """Sites the user's include named that weight norm cannot go on (an embedding, a
        grouped transposed convolution, a bias where the include named biases alone, a lazy
        layer the forward never reached), or that were weight-normed before and got no data
        init (none asked for, or one that cannot go on them: ``dim=None``, t171): asked for,
        and not given (t173: it was "nothing selected" where another weight was left out)."""
        return [
            site
            for site in self.sites
            if site.included
            and (
                (site.status == "skipped" and not (site.reason or "").startswith(_SELECTED_OUT))
                or (site.status == "already" and not (site.init or "").startswith("data"))
            )
        ]

    @property
    def status(self) -> ApplyStatus:
        """The outcome; see ``ApplyStatus``. Applying nothing is a failure unless on purpose:
        the include/exclude left out every weight that weight norm fits, and none that the
        include named was skipped for a reason of its own."""
        if self.nothing_compared:
            return "nothing compared"
        if self.equivalent is False:
            return "outputs changed"
        if self.applied or self.count("planned") or self.count("replaced") or self.initialized:
            return "ok"
        on_purpose = self.selected_out and not self.included_but_skipped
        return "nothing selected" if on_purpose else "nothing applied"

    @property
    def reason(self) -> str | None:
        """Why the status is not plain "ok", in one line; None when it is."""
        status = self.status
        if status == "nothing compared":
            return f"the outputs could not be compared: {NOTHING_COMPARED}"
        if status == "outputs changed":
            return f"the outputs changed: {difference_text(self)}"
        if status == "nothing selected":
            count = self.selected_out
            said = "the 1 weight" if count == 1 else f"all {count} weights"
            return f"include/exclude left out {said} weight norm fits"
        if status == "nothing applied":
            return self._why_nothing()
        return None

    def _why_nothing(self) -> str:
        reasons: dict[str, int] = {}
        included = self.included_but_skipped
        for site in included or self.sites:
            if site.status in ("skipped", "already"):
                key = site.reason or ""
                if site.status == "already":
                    key = "already weight-normed"
                    if site in included and self.init == "data":  # it cannot go on it
                        key += f", data init cannot go on it: {(site.init or '')[6:]}"
                key = _VARYING.sub("", key)  # the other names of a tied weight, unit numbers
                reasons[key] = reasons.get(key, 0) + 1
        top = sorted(reasons.items(), key=lambda item: -item[1])[:4]
        detail = "; ".join(f"{count}x {why}" for why, count in top) or "the model has none"
        what = "of those included " if included else ""
        text = f"no parameter {what}to apply weight norm to ({detail})"
        if self.traced_with == "module types":
            text += "; only module types were read: give example inputs to observe a forward"
        return text

    def __bool__(self) -> bool:
        """True when weight norm was applied (or planned), or data init given to layers
        weight-normed before, and outputs held, or the user's
        include/exclude selected nothing on purpose; False when nothing could be applied, the
        outputs changed or had nothing to compare (``status`` and ``reason`` say which)."""
        return self.status in ("ok", "nothing selected")

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON data; a max_rel_error of inf (outputs not comparable: NaN/Inf
        moved, a shape changed) or NaN (nothing compared) is written as null, which strict
        JSON can hold (``status`` tells them apart)."""
        data = dataclasses.asdict(self)
        if self.max_rel_error is not None and not math.isfinite(self.max_rel_error):
            data["max_rel_error"] = None
        data.update(applied=self.applied, skipped=self.skipped, equivalent=self.equivalent)
        # as the summary counts them: inspect's plan, and the layers weight-normed already
        data.update(planned=self.count("planned"), already=self.count("already"))
        data.update(replaced=self.count("replaced"))  # BatchNorm layers made mean-only
        data.update(kept=self.count("kept"))  # BatchNorm layers of a subclass, left
        data.update(status=self.status, reason=self.reason, ok=bool(self))
        return data

    def write_json(self, path: str | Path, plan: IOPlan | None = None) -> None:
        from wnpass.report import write_json

        write_json(path, self.to_dict(), plan)


_HOW = {
    "observed": "uses observed in a forward on {inputs}",
    "fx": "traced with torch.fx",
    "export": "traced with torch.export",
    "module types": "read from module types only",
}

PLAN_COLUMNS = ("parameter", "op", "shape", "axis", "status", "init")


def plan_rows(sites: Sequence[ParamSite]) -> list[tuple[str, ...]]:
    """One row per site, in the columns of ``PLAN_COLUMNS``."""
    rows: list[tuple[str, ...]] = []
    for site in sites:
        shape = "?" if site.shape is None else "x".join(map(str, site.shape)) or "scalar"
        axis = "-" if site.axis is None else str(site.axis)
        status = site.status if site.reason is None else f"{site.status}: {site.reason}"
        rows.append((site.name, site.op, shape, axis, status, site.init or "-"))
    return rows


def difference_text(report: ApplyReport) -> str:
    """The output check in words: the difference and the tolerance it was held to."""
    from wnpass.fx.compare import SCALE_FLOOR
    from wnpass.verify.report import shown_error, shown_tolerance

    value, rtol = report.max_rel_error, report.rtol
    tolerance = "-" if rtol is None else shown_tolerance(rtol)  # as given, every digit
    if report.nothing_compared:
        return f"{NOTHING_COMPARED}: nothing to hold to the tolerance ({tolerance})"
    if report.changes:
        return report.changes + (NOT_DETERMINISTIC if report.not_deterministic else "")
    if value is not None and math.isinf(value):
        return f"{NOT_COMPARABLE} (tolerance {tolerance})"
    shown = "-" if value is None else shown_error(value, rtol)
    return (
        f"max output difference {shown} of scale (tolerance {tolerance}; "
        f"scale: max |output|, {SCALE_FLOOR:g} at least)"
    )


def apply_summary(
    report: ApplyReport, *, inspect: bool = False, inputs: str = "the example inputs"
) -> list[str]:
    """The lines under the table; ``inputs``: what the forwards ran on, in words."""
    verb = "would apply" if inspect else "applied"
    count = report.count("planned") if inspect else report.applied
    replaced, kept = report.count("replaced"), report.count("kept")  # layers, no parameters
    made = f", {counted(replaced, 'BatchNorm')} made mean-only" if replaced else ""
    made += f", {counted(kept, 'BatchNorm')} of another class kept" if kept else ""
    parameters = len(report.sites) - sum(map(report.count, _LAYERS))
    text = (
        f"{verb} weight norm to {count} of {counted(parameters, 'parameter')} "
        f"({report.skipped} skipped, {report.count('already')} already weight-normed{made}); "
        f"{_HOW.get(report.traced_with, report.traced_with).replace('{inputs}', inputs)}, "
        f"dim_policy={report.dim_policy}"
    )
    if report.seconds is not None:
        text += f"; {report.seconds:.2f} s"
    lines = [text]
    if report.trace_note:
        lines.append(f"note: {report.trace_note}")
    lines += [f"note: {note}" for note in report.notes]
    nothing = report.status in ("nothing applied", "nothing selected")
    if nothing:
        label = ("NOTHING TO APPLY" if inspect else "NOTHING APPLIED") if not report else ""
        lines.append(f"{label or 'nothing selected'}: {report.reason}")
    if report.max_rel_error is not None and not nothing:  # no "equivalent" after a failure
        verdict = "equivalent" if report.equivalent else "NOT EQUIVALENT"
        verdict = "NOT COMPARED" if report.nothing_compared else verdict
        lines.append(f"{verdict}: {difference_text(report)}")
    if report.output:
        lines.append(f"wrote {report.output}")
    return lines
