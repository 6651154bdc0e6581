"""The check again at other sizes of the dynamic axes: synthesized inputs give every dynamic
axis one size (the first 1, the others ``DEFAULT_DYNAMIC_DIM``), where a candidate that
reshapes to a batch of 1, or reduces over the batch, matches the reference (t229), and one
that divides by one axis's size where the reference divides by another's, both 32 (or both
1), too (t238, t241). Both models run once more, in the sessions of the check's first run,
on inputs drawn anew (seed ``SEED + 1``) with each dynamic axis no ``--shape`` gives at
other sizes: :data:`ATTEMPTS` says which, in the order tried until the reference runs there.
A candidate that fails to run there, or gives other outputs, fails the check (a line in
:attr:`~wnpass.verify.report.CheckReport.differences`); a reference that runs at none of
them, or gives other values on a second run there (a draw seen at those sizes only), is no
reference, and a note says the check held at one size only. Running out of memory there is
no verdict, as it is at the first sizes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from wnpass.errors import InvalidArgumentError
from wnpass.report import counted
from wnpass.verify import inputs as inputs_mod
from wnpass.verify import providers as prov
from wnpass.verify.compare import Held, OutputComparison, compare_within, uncompared_outputs
from wnpass.verify.inputs import DEFAULT_DYNAMIC_DIM, Sizing
from wnpass.verify.report import failure_reason

__all__ = ["ATTEMPTS", "at_other_sizes"]

logger = logging.getLogger(__name__)

# The sizes of the second run, tried in order until the reference runs there:
# - first as below, with a vector's only axis a length: audio as ``[samples]`` or ids as
#   ``[T]`` ran at 1 sample in the first run (t337); where it is a batch named apart from
#   another input's (``lengths[L]`` beside ``x[N, T]``), the reference fails there;
# - every axis a size of its own: 2, 3, ... on first axes, 33, 34, ... on the others
#   (distinct symbols, distinct sizes: a candidate that divides by T where the reference
#   divides by S, both 32 at the first sizes, t238; also on first axes, t241);
# - the same with multiples of 16, 48, 64, ...: a model that halves an axis four times (a
#   U-Net), or reshapes it into pairs, runs at none of the first;
# - the others as in the first run, the batch alone changed: a model whose axes the exporter
#   named apart but that must be of one size;
# - the batch as in the first run, the others of their own sizes: a model that squeezes its
#   batch away runs at a batch of 1 only (t241).
ATTEMPTS = (
    Sizing(first=2, other=DEFAULT_DYNAMIC_DIM + 1, first_step=1, other_step=1, lengths=True),
    Sizing(first=2, other=DEFAULT_DYNAMIC_DIM + 1, first_step=1, other_step=1),
    Sizing(first=2, other=48, first_step=1, other_step=16),
    Sizing(first=2, other=DEFAULT_DYNAMIC_DIM),
    Sizing(first=1, other=DEFAULT_DYNAMIC_DIM + 1, other_step=1),
    Sizing(first=1, other=48, other_step=16),
)


def at_other_sizes(
    reference: Path,
    candidate: Path,
    sessions: tuple[prov.Session, prov.Session],
    specs: list[inputs_mod.InputSpec],
    shapes: dict[str, list[int]],
    first: dict[str, tuple[int, ...]],
    tolerances: tuple[float | None, float | None],
    label: str,
    held_as: Held = None,
) -> tuple[list[str], list[str]]:
    """The differences (each fails the check) and notes of a second run of both models at
    other sizes of the dynamic axes no shape was given for; none where no input's shape
    changes from ``first`` (the shapes the check ran: a ``--shape`` may fix a symbol another
    input's axis shares, t230). ``label``: the provider and level of ``sessions``, which the
    lines name (the others are not run again: t237)."""
    ref, cand = sessions
    tried: list[dict[str, tuple[int, ...]]] = [first]
    failed: list[tuple[str, str]] = []  # where the reference failed to run, and why
    too_large: str | None = None
    for sizing in ATTEMPTS:
        try:
            arrays, notes = inputs_mod.synthesize(
                specs, shapes, seed=inputs_mod.SEED + 1, sizing=sizing
            )
        except InvalidArgumentError as error:  # larger than wnpass feeds
            too_large = too_large or error.detail
            continue
        if (shaped := {name: tuple(a.shape) for name, a in arrays.items()}) in tried:
            continue  # no other sizes, or sizes tried already
        tried.append(shaped)
        sizes = [note for note in notes if "] (" in note and " = " in note]
        where = (
            f"at other sizes of the dynamic axes ({'; '.join(sizes)}; inputs synthesized, "
            f"seed {inputs_mod.SEED + 1}; on {label})"
        )
        try:
            ref_out = prov.run(ref, reference, arrays)
            varies = prov.varying_outputs(ref, reference, arrays, ref_out, tolerances, where)
        except prov.RunFailedError as error:  # its axes may not take these sizes: the next
            logger.info("%s: the reference failed to run %s: %s", reference, where, error.reason)
            failed.append((where, error.reason))
            continue
        except prov.OutOfMemoryError as error:  # the machine's limit: no reference there
            return [], [
                f"the reference ran out of memory {where}, so the models were compared at one "
                f"size of them only: {error.reason}"
            ]
        if varies:  # a draw seen only there (an output empty at the first sizes): no reference
            return [], [
                f"the reference gives other values of {', '.join(varies)} on a second run "
                f"{where} (a random op): compared at one size of them only"
            ]
        differences, notes = _compared(
            candidate, (ref, cand), arrays, ref_out, (tolerances, held_as), where
        )
        if failed:  # the sizes compared were not the first tried: which axes kept theirs
            before = counted(len(failed), "other size")
            said = f" (the reference fails to run at the {before} tried first)"
            notes = [note + said for note in notes]
        return differences, notes
    if failed:
        where, reason = failed[0]
        others = (
            f" (nor at {counted(len(failed) - 1, 'other size')} tried)" if len(failed) > 1 else ""
        )
        return [], [
            f"the reference fails to run {where}{others}, so the models were compared at one "
            f"size of them only: {reason}"
        ]
    if too_large is not None:
        return [], [f"not compared at other sizes of the dynamic axes: {too_large}"]
    return [], []


def _compared(
    candidate: Path,
    sessions: tuple[prov.Session, prov.Session],
    arrays: dict[str, np.ndarray],
    ref_out: list[Any],
    tolerances: tuple[tuple[float | None, float | None], Held],
    where: str,
) -> tuple[list[str], list[str]]:
    """The candidate run on ``arrays`` and compared with the reference's ``ref_out`` there.
    Its running out of memory is no verdict (:class:`~wnpass.verify.providers.
    OutOfMemoryError`, raised), as at the first sizes: a note let a candidate that asks for
    terabytes at a batch of 2 only pass (t238)."""
    ref, cand = sessions
    try:
        cand_out = prov.run(cand, candidate, arrays)
    except prov.OutOfMemoryError as error:  # said where: it read as the first sizes' (t241)
        raise prov.OutOfMemoryError(candidate, error.reason, where) from None
    except prov.RunFailedError as error:
        return [f"{where}, the candidate fails to run where the reference runs: {error.reason}"], []
    what = f"{candidate}: comparing its outputs with the reference's {where}"
    (rtol, atol), held_as = tolerances
    rows = compare_within(
        (ref.output_names(), ref_out), (cand.output_names(), cand_out), rtol, atol, what, held_as
    )
    failed = [row for row in rows if not row]
    if failed:
        return [f"{where}, output {_said(row)}" for row in failed], []
    # the outputs of which no element was there (all NaN at those sizes only, t340)
    unseen = uncompared_outputs(rows)
    there = f"; not compared there: {', '.join(unseen)} (no element could be)" if unseen else ""
    return [], [f"also matched {where}{there}"]


def _said(row: OutputComparison) -> str:
    return f"{row.name} differs: {failure_reason(row)}"
