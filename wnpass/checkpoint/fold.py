"""The plain weight of one stored pair: ``g * v / ||v||`` by :func:`wnpass.rules.weight_from`.

The values are checked first, and a pair that would not give an exact, finite weight is
declined (:class:`Declined`, with the reason) rather than written: NaN or Inf in ``g`` or
``v``, a unit of ``v`` whose norm is zero (PyTorch computes NaN there), or a product that
overflows ``v``'s dtype. The product is computed in float64 with numpy (single-threaded,
deterministic) and rounded once, to nearest even, to ``v``'s dtype by
:func:`wnpass.rounding.round_once` (straight from float64; bfloat16 through float32 rounded
to odd, where torch's own cast would round twice).

The tensors are numpy arrays (from a safetensors file: torch is not imported) or torch tensors
(from a torch file, seen as numpy without a copy); the weight comes back in the same kind.
"""

from __future__ import annotations

import logging
from typing import Any

import ml_dtypes
import numpy as np

from wnpass.rounding import BFLOAT16, to_torch
from wnpass.rules import norm_axes, weight_from

__all__ = ["Declined", "check_pair", "fold_pair", "values_reason"]

logger = logging.getLogger(__name__)


class Declined(Exception):
    """A pair whose values cannot be folded; ``str()`` is the reason."""


def _numpy(tensor: Any) -> np.ndarray:
    """A numpy array as it is; a torch tensor as a numpy view of it (dense tensors only;
    bfloat16 by its bits, as ml_dtypes' bfloat16)."""
    if isinstance(tensor, np.ndarray):
        return tensor
    import torch

    if tensor.layout != torch.strided or tensor.is_quantized:
        raise Declined("not a dense tensor")
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(BFLOAT16)
    return tensor.numpy()


def values_reason(g64: np.ndarray, v64: np.ndarray, dim: int | None, limit: float) -> str | None:
    """Why these values cannot be folded exactly, or None: NaN/Inf in ``g`` or ``v``, a unit of
    ``v`` with zero norm, or a ``g`` beyond ``limit`` (the largest finite value of the weight's
    dtype: ``|w| <= |g|``, so a ``g`` within it cannot overflow)."""
    if not np.isfinite(g64).all() or not np.isfinite(v64).all():
        return "NaN or Inf in g or v"
    axes = norm_axes(v64.ndim, dim)
    squares = np.sum(np.square(v64), axis=axes) if axes else np.square(v64)
    if (squares == 0).any():
        return "v has a unit with zero norm (PyTorch computes NaN there)"
    if g64.size and float(np.abs(g64).max()) > limit:
        return "g exceeds the largest value of the weight's dtype (the weight would overflow)"
    return None


def check_pair(g: Any, v: Any, dim: int | None) -> str | None:
    """Why the pair ``g``, ``v`` cannot be folded, or None: :func:`values_reason`."""
    try:
        g_array, v_array = _numpy(g), _numpy(v)
    except Declined as declined:
        return str(declined)
    limit = float(ml_dtypes.finfo(v_array.dtype).max)
    return values_reason(g_array.astype(np.float64), v_array.astype(np.float64), dim, limit)


def fold_pair(g: Any, v: Any, dim: int | None) -> Any:
    """The folded weight, of ``v``'s dtype and shape, a numpy array or a torch tensor as ``v``
    is (checked by :func:`check_pair` first)."""
    weight = weight_from(_numpy(g), _numpy(v), dim)  # widened to float64, rounded once
    if not np.isfinite(weight).all():  # check_pair rules this out
        raise Declined("the folded weight is not finite")
    if isinstance(v, np.ndarray):
        return weight
    # ascontiguousarray gives a 0-d array one axis: the weight keeps v's shape
    return to_torch(np.ascontiguousarray(weight).reshape(weight.shape))
