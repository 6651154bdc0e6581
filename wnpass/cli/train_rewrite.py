"""``wnpass train-rewrite model.py``: weight norm added to a model.py's model, state dict saved.

It builds the model, loads ``--checkpoint`` (any format and weight-norm key form: see
:mod:`wnpass.fx.files`), applies weight norm, checks the outputs on ``example_inputs()``
(``--init keep``), and writes the state dict (standard keys) atomically to ``-o`` (default
``<stem>.wn.pt`` beside the model). Exit 1 when the check failed or nothing was applied
(nothing is written then).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wnpass.cli.options import (
    add_json_option,
    add_model_py_arguments,
    add_plan_arguments,
    add_selection_arguments,
    as_flags,
    blamed_on,
    file_path,
    given_number,
    given_path,
    inputs_function,
    load_model,
    plan_model_py,
    selection,
)
from wnpass.cli.output import Printer
from wnpass.plan import IOPlan, require_input

__all__ = ["add_arguments", "print_plan", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_py_arguments(parser)
    add_selection_arguments(parser)
    add_plan_arguments(parser)
    parser.add_argument(
        "--init",
        choices=("keep", "data"),
        default="keep",
        help="keep: same outputs (g=||w||, v=w); data: the paper's data-dependent init",
    )
    parser.add_argument(
        "--data",
        type=given_path,
        metavar="FILE",
        help="batch for --init data: .npz, .npy or .pt (tensor or tuple); default example_inputs()",
    )
    parser.add_argument(
        "--rtol",
        type=given_number,
        metavar="R",
        # the values of wnpass.fx.apply's KEEP_RTOL*, written out: that module imports torch
        help="with --init keep: the outputs' relative tolerance (default 1e-5; 1e-2 where the "
        "model computes at float16, 5e-2 at bfloat16)",
    )
    parser.add_argument(
        "-o", "--output", type=file_path, metavar="OUT", help="default <stem>.wn.pt"
    )
    add_json_option(parser)


def print_plan(
    out: Printer, report: Any, title: str, *, inspect: bool, data: Path | None = None
) -> None:
    """The plan's table and summary; ``data``: the ``--data`` file the forwards ran on."""
    from wnpass.fx.report import PLAN_COLUMNS, apply_summary, plan_rows

    # the reasons (status and init), not the names
    rows = [[*row[:4], *(as_flags(cell) for cell in row[4:])] for row in plan_rows(report.sites)]
    out.table(title, PLAN_COLUMNS, rows)
    inputs = f"the batch in {data}" if data is not None else "the example inputs"
    for line in apply_summary(report, inspect=inspect, inputs=inputs):
        out.summary(as_flags(line))


def run(args: argparse.Namespace, out: Printer) -> int:
    """Add weight normalization to a model.py's model and save its state dict."""
    from wnpass.checkpoint.formats import check_output_name
    from wnpass.errors import UsageError

    if args.data is not None and args.init != "data":
        raise UsageError("--data is the batch for --init data")
    if args.rtol is not None and args.init != "keep":
        raise UsageError("--rtol goes with --init keep: data init changes the outputs on purpose")
    from wnpass.verify.options import as_tolerance

    as_tolerance("--rtol", args.rtol)
    output: Path = args.output or args.model.with_name(f"{args.model.stem}.wn.pt")
    check_output_name(output, "torch", written="a state dict written with torch.save")
    plan = plan_model_py(args, output)
    if args.data is not None:
        require_input(args.data, "data")
        plan.read(args.data, "the batch")
    plan.check()

    from wnpass.fx.apply import apply_weight_norm
    from wnpass.fx.files import load_batch
    from wnpass.fx.forward import buffer_values, moved_buffers

    stored: dict[str, Any] = {}  # the checkpoint's g/v pairs, as read
    model, inputs = load_model(args, plan, stored=stored)
    if args.rtol is not None and inputs is None:
        raise UsageError(f"--rtol: {args.model} has no example_inputs(), so nothing is compared")
    batch = inputs
    if args.init == "data":
        batch = load_batch(args.data) if args.data is not None else inputs
        if batch is None:
            raise UsageError(f"--init data needs --data FILE: {args.model} has no example_inputs()")
    loaded = buffer_values(model)  # as the model.py and --checkpoint set them
    with blamed_on(args.model, inputs_function(args)), _batch_named(args):
        include, exclude = selection(args, model)
        report = apply_weight_norm(
            model,
            batch,
            init=args.init,
            include=include,
            exclude=exclude,
            dim_policy=args.dim_policy,
            embeddings=args.embeddings,
            rtol=args.rtol,
        )
    if args.init == "data" and args.data is None:
        report.notes.append(
            f"data init on {inputs_function(args)}: give --data FILE for a real batch"
        )
    if args.init == "data" and args.checkpoint is not None and report.initialized:
        from wnpass.report import counted

        layers = counted(report.initialized, "layer")
        report.notes.append(
            f"data init drew v anew and set g (and the bias) of {layers}: {args.checkpoint}'s "
            "values of them are not kept (--init keep keeps them)"
        )
    if args.checkpoint is not None and (
        other_axes := _moved_axes(report, args.checkpoint, args.keep_objects)
    ):
        report.notes.append(other_axes)
    if args.checkpoint is not None and args.init == "keep" and report:
        report.notes.extend(_keep_stored_pairs(model, stored, args.checkpoint))
    if args.init == "keep" and inputs is None:
        report.notes.append(f"{args.model} has no example_inputs(): equivalence not checked")
    if report:
        state = _state_dict(model, args.model)
        # saved as loaded; the model in memory keeps what its forward wrote (a buffer and the
        # attributes beside it agree)
        moved = [name for name in moved_buffers(model, loaded) if name in state]
        state.update({name: loaded[name] for name in moved})
        if moved:
            report.notes.append(
                f"buffers the forward writes saved as they were loaded, not as wnpass's own "
                f"forwards left them: {', '.join(moved)}"
            )
        _save(state, output, plan)
        report.output = str(output)
    print_plan(out, report, str(args.model), inspect=False, data=args.data)
    if not report:
        out.summary(as_flags(f"nothing written: {report.reason}; {output} untouched"))
    if args.json:
        out.json_report(lambda: report.write_json(args.json, plan))
    return 0 if report else 1


def _state_dict(model: Any, model_py: Path) -> dict[str, Any]:
    """``model.state_dict()``, whose code is the model's own (an override, a state-dict hook):
    its failure is one line naming the model.py, exit 2."""
    from wnpass.errors import InvalidModelError
    from wnpass.fx.forward import what_it_did
    from wnpass.interrupts import STOPS
    from wnpass.plan import user_code

    try:
        with user_code():
            state: dict[str, Any] = model.state_dict()
    except STOPS:
        raise
    except BaseException as error:
        raise InvalidModelError(
            f"{model_py}: the model's state_dict() {what_it_did(error)}"
        ) from error
    return state


@contextlib.contextmanager
def _batch_named(args: argparse.Namespace) -> Iterator[None]:
    """An error about the library's ``example_inputs`` (a batch data init cannot use) is about
    the batch the user gave: ``--data FILE`` (else :func:`blamed_on` names the model.py's
    function). With ``--data``, every forward runs on that batch: a forward that raises names
    the file (the library's message says "the example inputs", which are the model.py's to a
    user)."""
    from wnpass.errors import InvalidArgumentError
    from wnpass.fx.forward import ForwardFailedError, what_it_did

    try:
        yield
    except ForwardFailedError as error:
        if args.data is None or error.__cause__ is None:
            raise
        raise ForwardFailedError(
            f"{args.data}: the model's forward on this batch {what_it_did(error.__cause__)}",
            parameter="data",
        ) from None
    except InvalidArgumentError as error:
        if error.parameter != "example_inputs" or args.data is None:
            raise  # without --data, blamed_on names the model.py's function
        raise InvalidArgumentError(f"{args.data} {error.detail}", parameter="data") from None


def _save(state: dict[str, Any], output: Path, plan: IOPlan) -> None:
    """The state dict staged beside ``output`` and renamed onto it; a failed write (a full
    disk) is the plan's one line with the OS's reason, and the staged file is removed."""
    from wnpass.checkpoint.writing import torch_save

    with plan.replace(output) as temporary:
        torch_save(state, temporary)


def _keep_stored_pairs(model: Any, stored: dict[str, Any], checkpoint: Path) -> list[str]:
    """Put back the checkpoint's g/v pairs that the model now holds at the same axes and in
    the same dtypes, as stored; the notes that say so. Loaded, each was folded into its plain
    weight, and weight norm then gave it ``g = ||w||``, ``v = w``: the same weight, but a
    negative g came back positive and ``||v||`` became g, which an optimizer's saved state
    (momentum, Adam's moments) no longer fits (t317). A pair in another dtype computes
    another weight than the one loaded and checked: it stays as weight norm split it.
    ``stored``: the checkpoint's weight-norm entries, as the load read them."""
    from wnpass.fx.state import stored_pairs
    from wnpass.report import counted, listed

    pairs, other_dtype = stored_pairs(model, stored)
    stored.clear()
    model.load_state_dict(pairs, strict=False)
    # one module under several names holds one pair under each
    kept = len({id(model.get_parameter(key)) for key in pairs}) // 2
    notes = []
    if kept:
        notes.append(
            f"{counted(kept, 'weight-norm pair')} of {checkpoint} kept as stored (their g and "
            "v, at the same axes): training resumes from them"
        )
    if other_dtype:
        notes.append(
            f"{checkpoint} holds {listed(other_dtype)} weight-normed in another dtype than the "
            "model's: loaded as the weights they compute, split again as g = ||w||, v = w (an "
            "optimizer state saved with the checkpoint's g does not fit them)"
        )
    return notes


def _moved_axes(report: Any, checkpoint: Path, keep_objects: bool) -> str | None:
    """A note naming the weights the checkpoint held weight-normed at another axis than the one
    weight norm now goes on (wav2vec2's positional conv at the kernel axis, 2, now at the
    output channels, 0): its pair was folded as loaded, so the outputs are the same, but
    training goes on with one gain per new unit, not the checkpoint's (t291). The pairs are
    read from the checkpoint's keys and shapes, none of its values."""
    from wnpass.checkpoint.pairs import find_pairs
    from wnpass.checkpoint.reading import open_checkpoint
    from wnpass.report import listed

    stored: dict[str, set[int | None]] = {}
    opened = open_checkpoint(checkpoint, keep_objects=keep_objects, any_name=True)  # as loaded
    for group in opened.groups:
        for pair in find_pairs(group.tensors, group.others):
            if pair.ok and pair.v is not None:
                axis = _norm_axis(pair.dim, list(pair.v.shape))
                stored.setdefault(pair.weight, set()).add(axis)
    moved = [
        f"{site.name} ({_axis(next(iter(stored[site.name])))} -> {_axis(site.axis)})"
        for site in report.sites
        if site.status == "applied"
        and not (site.init or "").startswith("data")  # drawn anew: said by its own note
        and site.shape is not None
        and len(stored.get(site.name, ())) == 1
        and _norm_axis(site.axis, site.shape) not in stored[site.name]
    ]
    if not moved:
        return None
    return (
        f"{checkpoint} holds {listed(moved)} weight-normed at another axis than weight norm now "
        "goes on: folded as loaded (the outputs are the same), their gains start anew per unit "
        "of the new axis (to keep the checkpoint's, put weight norm on them at its axes in the "
        "model.py)"
    )


def _axis(axis: int | None) -> str:
    return "whole tensor" if axis is None else f"axis {axis}"


def _norm_axis(axis: int | None, shape: list[int]) -> int | None:
    """The axis a norm keeps, None for the whole tensor; an axis of one element is the whole
    tensor (a conv of one output channel: the same norm either way, t294)."""
    return None if axis is None or shape[axis] == 1 else axis
