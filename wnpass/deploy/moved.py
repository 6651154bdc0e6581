"""How far PyTorch's own outputs move when the model's weights move by one ulp, said where an
export fails its check on floats, as ``check`` says it of an ONNX reference
(:mod:`wnpass.verify.sensitivity`): whether the model itself amplifies a rounding beyond the
tolerance (an iSTFTNet decoder with random weights, t301), or the exported graph is at fault.
The verdict stays a failure either way."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from wnpass.deploy.report import ExportReport
from wnpass.fx.forward import ModelExitedError
from wnpass.verify.compare import compare_outputs, failed_on_floats
from wnpass.verify.options import CheckOptions
from wnpass.verify.sensitivity import MOVED_BYTES, SEED, moved_array

__all__ = ["measure_moved", "weights_moved"]

logger = logging.getLogger(__name__)

# the dtypes moved, as the ONNX check moves float, double and float16 initializers
_MOVABLE = frozenset({torch.float32, torch.float64, torch.float16})


@contextlib.contextmanager
def weights_moved(model: nn.Module) -> Iterator[bool]:
    """``model``'s weights (float parameters of two dimensions and up, as the ONNX check
    moves initializers of two dimensions and up) moved by one ulp, up or down at random
    (:data:`~wnpass.verify.sensitivity.SEED`, whole numbers kept: the same rule), and given
    back bit for bit after the block. Yields False, moving nothing, where there is none or
    more than :data:`~wnpass.verify.sensitivity.MOVED_BYTES` of them (a copy is held)."""
    weights = [
        p
        for p in dict.fromkeys(model.parameters())  # a tied parameter once
        if p.dtype in _MOVABLE and p.dim() >= 2 and type(p.data) is torch.Tensor
    ]
    if not weights or sum(p.nbytes for p in weights) > MOVED_BYTES:
        yield False
        return
    kept = [p.detach().clone() for p in weights]
    rng = np.random.default_rng(SEED)
    try:
        with torch.no_grad():
            for p in weights:
                if (array := moved_array(p.detach().cpu().numpy(), rng)) is not None:
                    p.copy_(torch.from_numpy(array))
        yield True
    finally:
        with torch.no_grad():
            for p, value in zip(weights, kept, strict=True):
                p.copy_(value)


def measure_moved(
    report: ExportReport,
    names: list[str],
    expected: list[Any],
    moved_outputs: Callable[[], list[Any] | None],
    options: CheckOptions,
) -> None:
    """Where an output failed on floats on some provider, compare PyTorch's outputs with the
    weights moved (``moved_outputs()``, in the graph's output order; None where nothing was
    moved) with ``expected`` at the check's tolerance, and record it on each failed row
    (``ulp_max_abs``, ``ulp_passed``: said by :func:`wnpass.verify.report.ulp_note`)."""
    failed = [c for rows in report.comparisons.values() for c in rows if failed_on_floats(c)]
    if not failed:
        return
    try:
        moved = moved_outputs()
    except ModelExitedError:  # the model's sys.exit(): the run stops (t346)
        raise
    except Exception as error:  # the model's own: no note, the verdict stands
        logger.info("PyTorch with its weights moved by one ulp: %s", error)
        return
    if moved is None:
        return
    rows = compare_outputs(names, expected, names, moved, rtol=options.rtol, atol=options.atol)
    by_name = {row.name: row for row in rows if row.measured and row.problem is None}
    for comparison in failed:
        if (row := by_name.get(comparison.name)) is not None and row.max_abs > 0:
            comparison.ulp_max_abs, comparison.ulp_passed = row.max_abs, row.passed
