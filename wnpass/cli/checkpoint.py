"""Checkpoint commands: ``fold CKPT``, ``inspect CKPT`` (``convert`` has its own module).

A path is a checkpoint by its name (:data:`~wnpass.checkpoint.formats.TORCH_SUFFIXES`,
``.safetensors``), or a sharded index ``*.safetensors.index.json`` /
``pytorch_model.bin.index.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wnpass.cli.options import given_check_flags
from wnpass.cli.output import Printer
from wnpass.cli.render import print_left, strict_line
from wnpass.errors import UsageError
from wnpass.plan import IOPlan
from wnpass.report import counted, listed, shape_text

if TYPE_CHECKING:
    from wnpass.checkpoint import CheckpointReport, PairReport

__all__ = [
    "fold",
    "inspect_one",
    "print_pairs",
    "print_summary",
]


_PAIR_COLUMNS = ("weight", "form", "v shape", "g shape", "dim", "dtype", "status")


def fold(args: argparse.Namespace, out: Printer) -> int:
    """``wnpass fold CKPT``."""
    from wnpass.checkpoint import fold_checkpoint

    if args.in_place:
        raise UsageError("--in-place is for ONNX models: a checkpoint is never changed (give -o)")
    if args.verify:
        raise UsageError("--verify is for ONNX models; verify a checkpoint with --model model.py")
    if args.weight_norm_only:
        raise UsageError(
            "--weight-norm-only is for ONNX models: a checkpoint fold folds only weight norm"
        )
    given = given_check_flags(args)
    if onnx_only := [flag for flag in given if flag not in ("--rtol", "--atol")]:
        raise UsageError(
            f"{onnx_only[0]} is for ONNX checks; a checkpoint's --model check takes --rtol/--atol"
        )
    if args.check_model is None and (given or args.factory is not None):
        raise UsageError(
            f"{'--factory' if args.factory is not None else given[0]} goes with --model"
        )
    plan = IOPlan()
    if args.json:
        plan.write(args.json, "json_path")
    report = fold_checkpoint(
        args.model,
        args.output,
        plan=plan,
        check_model=args.check_model,
        factory=args.factory,
        rtol=args.rtol,
        atol=args.atol,
        keep_objects=args.keep_objects,
    )
    print_pairs(out, report)
    if report.check is not None:
        _print_check(out, report)
    print_summary(out, report)
    if args.json:
        out.json_report(lambda: report.write_json(args.json, plan))
    return 1 if report.check is not None and not report.check else 0


def inspect_one(
    path: Path, out: Printer, plan: IOPlan, keep_objects: bool = False
) -> tuple[dict[str, Any], str | None]:
    """``wnpass inspect CKPT``, for one checkpoint: prints its pairs; returns its report as
    JSON data and, when pairs are left to fold, the line ``--strict`` prints."""
    from wnpass.checkpoint import inspect_checkpoint

    report = inspect_checkpoint(path, plan=plan, keep_objects=keep_objects)
    print_pairs(out, report)
    print_summary(out, report)
    foldable = report.count("foldable")
    left = counted(foldable, "pair") if foldable else None
    line = strict_line(path, left, report.undecided, "pair")
    return {**report.to_dict(), "left_to_fold": foldable}, line


def _dim(pair: PairReport) -> str:
    if pair.whole_tensor:
        return "None (all)"
    return "-" if pair.dim is None else str(pair.dim)


def print_pairs(out: Printer, report: CheckpointReport) -> None:
    """The table of pairs: one row each, with the axis its g implies and what was done."""
    where = any(pair.group or pair.shard for pair in report.pairs)
    columns = (*_PAIR_COLUMNS, "in") if where else _PAIR_COLUMNS
    rows = []
    for pair in report.pairs:
        status = pair.status if pair.reason is None else f"{pair.status}: {pair.reason}"
        row = [
            pair.weight,
            pair.form,
            shape_text(pair.v_shape, unknown="-"),
            shape_text(pair.g_shape, unknown="-"),
            _dim(pair),
            pair.dtype or "-",
            status,
        ]
        if where:
            row.append(pair.group or pair.shard or "-")
        rows.append(row)
    title = f"{report.input} ({report.format})"
    if not rows:  # as an ONNX model without sites says it, not an empty table
        out.line(f"{title}: no weight-norm pairs")
        return
    out.table(title, columns, rows)


def _print_check(out: Printer, report: CheckpointReport) -> None:
    """The ``--model`` table: one row per output (per state dict compared, when it has a
    name), and the state dicts with folded pairs that were not compared."""
    from wnpass.verify.report import shown_error, tolerance_text

    check = report.check
    assert check is not None
    where = any(row.group for row in check.outputs)
    rows = []
    for row in check.outputs:
        result = (row.problem or "outside tolerance") if not row.ok else "ok"
        result = f"not compared: {row.uncompared}" if row.ok and row.uncompared else result
        counted = row.compared
        cells = [
            row.name,
            shape_text(row.shape, unknown="-"),
            shown_error(row.max_abs, row.atol) if counted else "-",
            f"{row.max_rel:.3g}" if counted else "-",
            f"{row.outside}/{row.total}" if counted else "-",
            tolerance_text(row.rtol, row.atol, row.atol_scaled) if row.shape is not None else "-",
            result,
        ]
        rows.append([row.group or "-", *cells] if where else cells)
    columns = ("output", "shape", "max abs", "max rel", "outside", "tolerance", "result")
    if rows:  # none compared: the lines below say why, under no empty table (t183)
        out.table(
            f"folded vs weight-normed ({check.model})",
            ("in", *columns) if where else columns,
            rows,
        )
    for held in dict.fromkeys(row.held_as for row in check.outputs if row.held_as):
        out.line(
            f"tolerance of {held}: the folded weights are {held}, so outputs computed with "
            f"them are no closer than {held}'s rounding"
        )
    for name in check.unchecked:
        out.summary(
            f"not checked: the folded pairs of {name or 'the top level'} (a state dict the "
            "model does not load)"
        )
    for unread in check.unread:
        inside = f" (in {unread.group})" if unread.group is not None else ""
        out.summary(
            f"not checked: the folded weights {listed(unread.weights)}{inside}: the forward on "
            "example_inputs() does not read them"
        )


def _outside(row: Any) -> str:
    """How many elements of a row are off, as check says it."""
    from wnpass.verify.report import outside_text

    return outside_text(row.outside, row.total, row.rtol, row.atol, row.atol_scaled, row.max_abs)


def print_summary(out: Printer, report: CheckpointReport) -> None:
    """The summary lines under the table (always printed, also with ``--quiet``)."""
    from wnpass.report import counted, human_bytes

    total, declined = len(report.pairs), report.declined
    left = f", {declined} declined (left as they were)" if declined else ""
    if report.kept:
        written = ", written back as it holds them" if report.action != "inspect" else ""
        out.line(f"kept unbuilt: objects of {listed(report.kept, 5)}{written}")
    if report.action == "inspect":  # as an ONNX model's inspection says it
        declines = f", {declined} declined" if declined else ""
        out.summary(
            f"{counted(total, 'weight-norm pair')}: {report.count('foldable')} foldable"
            f"{declines}; "
            f"{counted(report.tensors_before, 'tensor')}"
        )
        return
    if report.action == "fold":
        text = f"folded {report.count('folded')} of {counted(total, 'weight-norm pair')}{left}"
    else:
        unchanged = report.count("unchanged")
        already = f", {unchanged} already {report.to}" if unchanged else ""
        text = f"converted {report.count('converted')} of {counted(total, 'pair')} to {report.to}"
        text += f"{already}{left}"
    text += f"; tensors {report.tensors_before} -> {report.tensors_after}"
    if report.bytes_after is not None:  # None: nothing was published
        text += f"; size {human_bytes(report.bytes_before)} -> {human_bytes(report.bytes_after)}"
    if report.seconds is not None:
        text += f"; {report.seconds:.2f} s"
    out.summary(text)
    if out.quiet:  # a decline is why a pair is left: said without the table (as ONNX's are)
        for pair in report.pairs:
            if pair.status == "declined":
                where = f" [{pair.group}]" if pair.group else ""
                out.summary(f"  declined: {pair.weight}{where}: {pair.reason}")
    if report.check is not None and not report.check:
        out.summary(
            f"nothing written: the folded checkpoint failed the check ({report.check.model})"
        )
        for row in report.check.outputs:  # which outputs failed, also with --quiet
            if not row.ok:
                where = f"{row.group}: " if row.group else ""
                out.summary(f"  {where}{row.name}: {row.problem or _outside(row)}")
        if vacuous := report.check.vacuous():
            out.summary(f"  {vacuous}")
    elif report.output is not None:
        shards = f" and {counted(len(report.shards), 'shard')}" if report.shards else ""
        out.summary(f"wrote {report.output}{shards}")
    print_left(out, report.left)
