"""The check again at other sizes of the dynamic axes: synthesized inputs give every dynamic
axis one size (the first 1, the others ``DEFAULT_DYNAMIC_DIM``), where a candidate that
reshapes to a batch of 1, or reduces over the batch, matches the reference (t229). Both
models run once more, in the sessions of the check's first run, on inputs drawn anew (seed
``SEED + 1``) with each dynamic axis no ``--shape`` gives one larger: the first 2, the others
``DEFAULT_DYNAMIC_DIM + 1``, where that changes some input's shape. A candidate that fails
to run there, or gives other outputs, fails the check (a line in
:attr:`~wnpass.verify.report.CheckReport.differences`); a reference that fails to run there,
or gives other values on a second run there (a draw seen at those sizes only), is no
reference, and a note says the check held at one size only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from wnpass.errors import InvalidArgumentError
from wnpass.verify import inputs as inputs_mod
from wnpass.verify import providers as prov
from wnpass.verify.compare import OutputComparison, compare_within
from wnpass.verify.report import failure_reason

__all__ = ["SIZES", "at_other_sizes"]

logger = logging.getLogger(__name__)

# The sizes of a dynamic axis in the second run: the first axis (a batch), the others.
SIZES = (2, inputs_mod.DEFAULT_DYNAMIC_DIM + 1)


def at_other_sizes(
    reference: Path,
    candidate: Path,
    sessions: tuple[prov.Session, prov.Session],
    specs: list[inputs_mod.InputSpec],
    shapes: dict[str, list[int]],
    first: dict[str, tuple[int, ...]],
    tolerances: tuple[float | None, float | None],
) -> tuple[list[str], list[str]]:
    """The differences (each fails the check) and notes of a second run of both models at
    other sizes of the dynamic axes no shape was given for; none where no input's shape
    changes from ``first`` (the shapes the check ran: a ``--shape`` may fix a symbol another
    input's axis shares, t230)."""
    try:
        arrays, notes = inputs_mod.synthesize(
            specs, shapes, seed=inputs_mod.SEED + 1, dynamic=SIZES
        )
    except InvalidArgumentError as error:  # larger than wnpass feeds: no second run
        return [], [f"not compared at other sizes of the dynamic axes: {error.detail}"]
    if all(tuple(array.shape) == first.get(name) for name, array in arrays.items()):
        return [], []
    sizes = [note for note in notes if "] (" in note and " = " in note]
    where = (
        f"at other sizes of the dynamic axes ({'; '.join(sizes)}; inputs synthesized, seed "
        f"{inputs_mod.SEED + 1})"
    )
    ref, cand = sessions
    try:
        ref_out = prov.run(ref, reference, arrays)
        varies = prov.varying_outputs(ref, reference, arrays, ref_out, tolerances)
    except (prov.RunFailedError, prov.OutOfMemoryError) as error:
        logger.info("%s: the reference failed to run %s: %s", reference, where, error.reason)
        return [], [
            f"the reference fails to run {where}, so the models were compared at one size of "
            f"them only: {error.reason}"
        ]
    if varies:  # a draw seen only there (an output empty at the first sizes): no reference
        return [], [
            f"the reference gives other values of {', '.join(varies)} on a second run {where} "
            "(a random op): compared at one size of them only"
        ]
    try:
        cand_out = prov.run(cand, candidate, arrays)
    except prov.OutOfMemoryError as error:  # the machine's limit: no verdict on the model
        return [], [f"the candidate ran out of memory {where}: {error.reason}"]
    except prov.RunFailedError as error:
        return [f"{where}, the candidate fails to run where the reference runs: {error.reason}"], []
    what = f"{candidate}: comparing its outputs with the reference's {where}"
    rows = compare_within(
        (ref.output_names(), ref_out), (cand.output_names(), cand_out), *tolerances, what
    )
    failed = [row for row in rows if not row]
    if failed:
        return [f"{where}, output {_said(row)}" for row in failed], []
    return [], [f"also matched {where}"]


def _said(row: OutputComparison) -> str:
    return f"{row.name} differs: {failure_reason(row)}"
