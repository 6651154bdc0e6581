"""The plain weight of one stored pair: ``g * v / ||v||`` by :func:`wnpass.rules.weight_from`.

The values are checked first, and a pair that would not give an exact, finite weight is
declined (:class:`Declined`, with the reason) rather than written: NaN or Inf in ``g`` or
``v``, a unit of ``v`` whose norm PyTorch would not compute exactly at run time (all zero: NaN;
squares that overflow or underflow the dtype it sums them in: inf or 0), or a product that
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

__all__ = ["Declined", "check_pair", "fold_pair", "norm_reason", "values_reason"]

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


def _accumulator(dtype: np.dtype) -> np.dtype:
    """The dtype PyTorch sums a weight's squares in: float32 for 16-bit floats (float16 and
    bfloat16 norms are accumulated in float32), the weight's own dtype otherwise."""
    return np.dtype(np.float32) if dtype.itemsize == 2 else dtype


def norm_reason(v64: np.ndarray, dim: int | None, dtype: np.dtype) -> str | None:
    """Why the norms PyTorch computes at run time for weight ``v64`` (finite, widened to
    float64 from ``dtype``) are not the exact ones the fold divides by, or None.

    PyTorch sums the squares of each unit in :func:`_accumulator`'s dtype: a sum beyond its
    largest value is inf (the weight becomes 0), a non-zero sum below its smallest normal
    number is 0 (the weight becomes inf) or loses precision, and an all-zero unit gives NaN.
    The sums are taken here in float64 exactly enough to tell: the squares are non-negative,
    so float64 overflows only where the whole sum does (beyond every accumulator's range), and
    a square lost to underflow changes a sum of at least float64's smallest normal number by
    less than its rounding. A unit whose float64 sum is below that is zero only if all of it is.
    """
    axes = norm_axes(v64.ndim, dim)
    with np.errstate(over="ignore", under="ignore"):
        squares = np.sum(np.square(v64), axis=axes) if axes else np.square(v64)
    acc = ml_dtypes.finfo(_accumulator(dtype))
    low = squares < acc.smallest_normal
    if low.any():
        nonzero = np.any(v64 != 0, axis=axes) if axes else v64 != 0
        if (low & ~nonzero).any():
            return "v has a unit with zero norm (PyTorch computes NaN there)"
    acc_name = _accumulator(dtype).name
    if (squares > float(acc.max)).any():
        return f"v's squares overflow {acc_name}: the norm PyTorch computes is inf"
    if low.any():
        return (
            f"v's squares underflow {acc_name} (a unit's sum is below its smallest normal "
            "number): the norm PyTorch computes is 0 or inexact"
        )
    if squares.size and float(np.sqrt(squares.max())) > float(ml_dtypes.finfo(dtype).max):
        return (
            f"||v|| exceeds the largest {dtype.name}: PyTorch computes the norm as inf where "
            f"it keeps it in {dtype.name}"
        )
    return None


def values_reason(g: np.ndarray, v: np.ndarray, dim: int | None) -> str | None:
    """Why these values cannot be folded exactly, or None: NaN/Inf in ``g`` or ``v``, norms
    PyTorch would not compute exactly (:func:`norm_reason`: a zero unit, squares that overflow
    or underflow), or a ``g`` beyond the largest finite value of ``v``'s dtype (``|w| <= |g|``,
    so a ``g`` within it cannot overflow)."""
    g64, v64 = g.astype(np.float64), v.astype(np.float64)
    if not np.isfinite(g64).all() or not np.isfinite(v64).all():
        return "NaN or Inf in g or v"
    reason = norm_reason(v64, dim, v.dtype)
    if reason is not None:
        return reason
    if g64.size and float(np.abs(g64).max()) > float(ml_dtypes.finfo(v.dtype).max):
        return "g exceeds the largest value of the weight's dtype (the weight would overflow)"
    return None


def check_pair(g: Any, v: Any, dim: int | None) -> str | None:
    """Why the pair ``g``, ``v`` cannot be folded, or None: :func:`values_reason`."""
    try:
        g_array, v_array = _numpy(g), _numpy(v)
    except Declined as declined:
        return str(declined)
    return values_reason(g_array, v_array, dim)


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
