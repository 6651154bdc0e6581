"""Reports of the PyTorch side: per-parameter plan and result, JSON, and pure table rows."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["PLAN_COLUMNS", "ApplyReport", "ParamSite", "apply_summary", "plan_rows"]

# status values: "planned" (inspect), "applied", "skipped", "already" (weight-normed before),
# "replaced" (BatchNorm -> mean-only BatchNorm)


@dataclasses.dataclass
class ParamSite:
    """One parameter (or BatchNorm layer): the op that uses it, its axis, and what was done."""

    name: str  # the parameter's qualified name, e.g. "blocks.0.conv.weight"
    op: str  # the consuming op, e.g. "Conv2d", "F.linear", "matmul"
    shape: list[int]
    axis: int | None  # output-unit axis g keeps (PyTorch's dim); None: whole tensor or n/a
    status: str
    reason: str | None = None
    init: str | None = None  # "keep", "data", "data, v rescaled" or "keep: <why no data init>"


@dataclasses.dataclass
class ApplyReport:
    """What ``apply_weight_norm`` (or an inspection) found and did."""

    sites: list[ParamSite] = dataclasses.field(default_factory=list)
    traced_with: str = "fx"  # "fx", "export" or "module types"
    trace_note: str | None = None
    dim_policy: str = "unit"
    init: str = "keep"
    max_rel_error: float | None = None  # outputs after vs before on example inputs
    rtol: float | None = None  # the tolerance max_rel_error was held to
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
    def modified(self) -> bool:
        return self.applied > 0 or self.count("replaced") > 0

    @property
    def equivalent(self) -> bool | None:
        """Whether outputs stayed equal within ``rtol``; None when not checked."""
        if self.max_rel_error is None or self.rtol is None:
            return None
        return self.max_rel_error <= self.rtol

    def __bool__(self) -> bool:
        """False only when an equivalence check ran and failed."""
        return self.equivalent is not False

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(applied=self.applied, skipped=self.skipped, equivalent=self.equivalent)
        data["ok"] = bool(self)
        return data

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


PLAN_COLUMNS = ("parameter", "op", "shape", "axis", "status", "init")


def plan_rows(sites: Sequence[ParamSite]) -> list[tuple[str, ...]]:
    """One row per site, in the columns of ``PLAN_COLUMNS``."""
    rows: list[tuple[str, ...]] = []
    for site in sites:
        shape = "x".join(map(str, site.shape)) or "scalar"
        axis = "-" if site.axis is None else str(site.axis)
        status = site.status if site.reason is None else f"{site.status}: {site.reason}"
        rows.append((site.name, site.op, shape, axis, status, site.init or "-"))
    return rows


def apply_summary(report: ApplyReport, *, inspect: bool = False) -> str:
    """The paragraph under the table."""
    verb = "would apply" if inspect else "applied"
    count = report.count("planned") if inspect else report.applied
    text = (
        f"{verb} weight norm to {count} of {len(report.sites)} parameters "
        f"({report.skipped} skipped, {report.count('already')} already weight-normed); "
        f"traced with {report.traced_with}, dim_policy={report.dim_policy}"
    )
    if report.seconds is not None:
        text += f"; {report.seconds:.2f} s"
    if report.trace_note:
        text += f"\nnote: {report.trace_note}"
    for note in report.notes:
        text += f"\nnote: {note}"
    if report.max_rel_error is not None:
        verdict = "equivalent" if report.equivalent else "NOT EQUIVALENT"
        text += (
            f"\n{verdict}: max relative output difference {report.max_rel_error:.2e} "
            f"(tolerance {report.rtol:.0e})"
        )
    if report.output:
        text += f"\nwrote {report.output}"
    return text
