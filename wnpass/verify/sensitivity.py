"""How far the reference's own outputs move when its weights move by one ulp.

A candidate whose weights are rounded otherwise than the reference computes them (a fold
writes ``g * v / ||v||`` correctly rounded, where the reference computes it at run time in
several rounded steps) differs from it by what the model makes of a change of about one unit
in the last place (ulp) of each weight. Most models keep that far inside the check's
tolerance; an ill-conditioned one (random gains feeding Snake activations) amplifies it
beyond, and then no rounding of its weights passes.

Where a candidate fails on floats, the check runs the reference once more with each weight
moved by one ulp, up or down at random (seeded: the same moves on every run), and compares
that with the reference at the same tolerance. The failure then says whether the reference
itself fails so (:func:`wnpass.verify.report.ulp_note`). The verdict stays a failure either
way, since what the check compares is the candidate, but the user learns whether the
tolerance or the candidate is at fault. A weight is a float initializer of two dimensions and
up that no input overrides: what a fold writes (a 1-D initializer may be a size, a scale or
an epsilon, which must not move); its whole numbers stay (:func:`moved_weights`).
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from wnpass.onnx import graphs

__all__ = ["MOVED_BYTES", "SEED", "moved_array", "moved_weights"]

logger = logging.getLogger(__name__)

# The most bytes of weights the check copies to move them: beyond, it says nothing (the copy
# is held beside the model's own weights while the moved session runs).
MOVED_BYTES = 1 << 30
# The seed of the up-or-down choice for each element.
SEED = 0
_MOVABLE = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16})


def moved_weights(model: ir.Model) -> dict[str, np.ndarray] | None:
    """Each weight of ``model``'s main graph moved by one ulp, up or down at random (by
    :data:`SEED`), by name; None where it has no weight to move or more than
    :data:`MOVED_BYTES` of them.

    A whole number stays, zero too, as an infinity and a NaN do: no rounding moves an exact
    zero (a fold of a zero ``v`` writes zero), a zero moved to a subnormal changes what a
    mask's ``Equal(m, 0)`` or a ``Log`` reads, and a whole number one ulp down is truncated
    to the one below where it is cast to an index (t182, t184). A tensor of whole numbers
    only (a causal mask) is no weight, nor is one whose name an initializer of a subgraph
    shadows (ONNX Runtime replaces that one too)."""
    graph = model.graph
    for _ in graphs.subgraphs_of(graph):  # records the names the bodies shadow
        pass
    shadowed = graphs.shadowed(graph)
    weights = [
        value
        for name, value in graph.initializers.items()
        if value.const_value is not None
        and not value.is_graph_input()
        and value.dtype in _MOVABLE
        and value.shape is not None
        and len(value.shape) >= 2
        and name
        and name not in shadowed
    ]
    total = sum(value.const_value.nbytes for value in weights if value.const_value is not None)
    if total > MOVED_BYTES:
        logger.info("the reference's weights take %d bytes: not moved by one ulp", total)
        return None
    rng = np.random.default_rng(SEED)
    moved: dict[str, np.ndarray] = {}
    for value in weights:
        assert value.const_value is not None and value.name is not None  # as chosen above
        if (array := moved_array(np.asarray(value.const_value.numpy()), rng)) is not None:
            moved[value.name] = array
    return moved or None


def moved_array(array: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """``array`` with each element that is no whole number moved by one ulp, up or down by
    ``rng`` (:func:`moved_weights`' rule); None where every one is whole (a mask, indices)."""
    with np.errstate(invalid="ignore"):  # inf and NaN: not whole, and not finite
        movable = np.isfinite(array) & (array != np.round(array))
    if not movable.any():
        return None
    toward = np.where(rng.integers(0, 2, array.shape, dtype=np.int8) == 1, np.inf, -np.inf)
    return np.where(movable, np.nextafter(array, toward.astype(array.dtype)), array)
