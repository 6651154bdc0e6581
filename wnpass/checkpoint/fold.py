"""The plain weight of one stored pair: ``g * v / ||v||`` by :func:`wnpass.rules.weight_from`.

The values are checked first, and a pair that would not give an exact, finite weight is
declined (:class:`Declined`, with the reason) rather than written: NaN or Inf in ``g`` or
``v``, a unit of ``v`` whose norm is zero (PyTorch computes NaN there), or a product that
overflows ``v``'s dtype. The product is computed in float64 with numpy (single-threaded,
deterministic) and rounded once, to nearest even, to ``v``'s dtype by
:func:`wnpass.rounding.round_once` (straight from float64; bfloat16 through float32 rounded
to odd, where torch's own cast would round twice).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from wnpass.rounding import round_to_torch
from wnpass.rules import norm_axes, weight_from

__all__ = ["Declined", "check_pair", "fold_pair", "values_reason"]

logger = logging.getLogger(__name__)

_NUMPY_DTYPES = ("float64", "float32", "float16")  # torch dtypes numpy has, by name


class Declined(Exception):
    """A pair whose values cannot be folded; ``str()`` is the reason."""


def _dense(tensor: Any) -> Any:
    import torch

    if tensor.layout != torch.strided or tensor.is_quantized:
        raise Declined("not a dense tensor")
    return tensor.detach().cpu()


def _name(tensor: Any) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _float64(tensor: Any) -> np.ndarray:
    import torch

    return _dense(tensor).to(torch.float64).numpy()


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
    """Why the pair ``g``, ``v`` (tensors) cannot be folded, or None: :func:`values_reason`."""
    import torch

    try:
        g64, v64 = _float64(g), _float64(v)
    except Declined as declined:
        return str(declined)
    return values_reason(g64, v64, dim, float(torch.finfo(v.dtype).max))


def fold_pair(g: Any, v: Any, dim: int | None) -> Any:
    """The folded weight, a tensor of ``v``'s dtype and shape (checked by :func:`check_pair`
    first)."""
    import torch

    if _name(v) in _NUMPY_DTYPES and _name(g) in _NUMPY_DTYPES:
        # numpy holds these dtypes: weight_from widens to float64 itself and rounds once to
        # v's dtype (round to nearest even), with no extra float64 copies
        product = weight_from(_dense(g).numpy(), _dense(v).numpy(), dim)
    else:  # bfloat16: widened by torch, which numpy cannot hold
        product = weight_from(_float64(g), _float64(v), dim)
    weight = round_to_torch(product, v)
    if not bool(torch.isfinite(weight).all()):  # check_pair rules this out
        raise Declined("the folded weight is not finite")
    return weight
