"""The plain weight of one stored pair: ``g * v / ||v||`` by :func:`wnpass.rules.weight_from`.

The values are checked first, and a pair that would not give an exact, finite weight is
declined (:class:`Declined`, with the reason) rather than written: NaN or Inf in ``g`` or
``v``, a unit of ``v`` whose norm PyTorch would not compute exactly at run time (all zero: NaN;
squares that overflow or underflow the dtype it sums them in: inf or 0; a float16 norm in
subnormals where it keeps the norm in float16), a ``g`` beyond ``v``'s
dtype, or a quotient ``g / ||v||`` beyond it or below its smallest normal value (PyTorch's
``v * (g / ||v||)`` is inf there, or loses bits, where it computes in that dtype:
:func:`quotient_reason`); a tensor without dense values (sparse,
quantized, meta) is declined too. The
product is computed in float64 with numpy (single-threaded, deterministic) and rounded once,
to nearest even, to ``v``'s dtype by :func:`wnpass.rounding.round_once` (straight from
float64; bfloat16 through float32 rounded to odd, where torch's own cast would round twice).

The tensors are numpy arrays (from a safetensors file: torch is not imported) or torch tensors
(from a torch file, seen as numpy without a copy); the weight comes back in the same kind.
"""

from __future__ import annotations

import logging
from typing import Any

import ml_dtypes
import numpy as np

from wnpass.report import OUT_OF_MEMORY, out_of_memory
from wnpass.rounding import BFLOAT16, to_torch
from wnpass.rules import norm_axes, weight_from

__all__ = [
    "Declined",
    "check_pair",
    "fold_pair",
    "norm_reason",
    "quotient_reason",
    "values_reason",
]

logger = logging.getLogger(__name__)


class Declined(Exception):
    """A pair whose values cannot be folded; ``str()`` is the reason."""


def _numpy(tensor: Any, role: str = "a tensor") -> np.ndarray:
    """A numpy array as it is; a torch tensor as a numpy view of it (bfloat16 by its bits, as
    ml_dtypes' bfloat16). A tensor with torch's lazy negation (or conjugation) bit set, a view
    such as ``x.neg()`` that numpy cannot see, is resolved into a copy that holds its values
    (where that copy does not fit in memory: :class:`MemoryError`, as numpy says it).
    One without dense values (sparse, quantized, on the meta device) is :class:`Declined`."""
    if isinstance(tensor, np.ndarray):
        return tensor
    import torch

    if tensor.layout != torch.strided:
        raise Declined(f"{role} is not a dense tensor ({tensor.layout})")
    if tensor.is_quantized:
        raise Declined(f"{role} is not a dense tensor (quantized)")
    if tensor.is_meta:
        raise Declined(f"{role} is not a dense tensor (on the meta device: it holds no values)")
    try:
        tensor = tensor.detach().cpu().resolve_conj().resolve_neg()
    except RuntimeError as error:  # torch's CPU allocator says it so (a stride-0 view, t199)
        if "can't allocate memory" in str(error) or isinstance(error, torch.OutOfMemoryError):
            raise MemoryError(str(error)) from error
        raise
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(BFLOAT16)
    return tensor.numpy()


def _accumulator(dtype: np.dtype) -> np.dtype:
    """The dtype PyTorch sums a weight's squares in: float32 for 16-bit floats (float16 and
    bfloat16 norms are accumulated in float32), the weight's own dtype otherwise."""
    return np.dtype(np.float32) if dtype.itemsize == 2 else dtype


def _unit_squares(v64: np.ndarray, dim: int | None) -> np.ndarray:
    """Each unit's sum of squares in float64, summed as :func:`wnpass.rules.weight_from` sums
    them (size 1 on the axes summed over)."""
    with np.errstate(over="ignore", under="ignore"):
        return np.sum(np.square(v64), axis=norm_axes(v64.ndim, dim), keepdims=True)


def norm_reason(
    v64: np.ndarray, squares: np.ndarray, dim: int | None, dtype: np.dtype
) -> str | None:
    """Why the norms PyTorch computes at run time for weight ``v64`` (finite, widened to
    float64 from ``dtype``; ``squares``: :func:`_unit_squares`) are not the exact ones the fold
    divides by, or None.

    PyTorch sums the squares of each unit in :func:`_accumulator`'s dtype: a sum beyond its
    largest value is inf (the weight becomes 0), a non-zero sum below its smallest normal
    number is 0 (the weight becomes inf) or loses precision, and an all-zero unit gives NaN.
    The sums are taken here in float64 exactly enough to tell: the squares are non-negative,
    so float64 overflows only where the whole sum does (beyond every accumulator's range), and
    a square lost to underflow changes a sum of at least float64's smallest normal number by
    less than its rounding. A unit whose float64 sum is below that is zero only if all of it is.
    """
    acc = ml_dtypes.finfo(_accumulator(dtype))
    low = squares < acc.smallest_normal
    if low.any():
        nonzero = np.any(v64 != 0, axis=norm_axes(v64.ndim, dim), keepdims=True)
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
    return _subnormal_norm(squares, dim, dtype, v64.ndim)


def _fused(dim: int | None, ndim: int, dtype: np.dtype) -> bool:
    """Whether PyTorch may compute a 16-bit weight's norm and quotient in its fused kernel,
    in float32: at the first or last axis (as on CPU); the unfused ``v * (g / ||v||)``, at
    another axis or over the whole tensor, keeps both in the weight's dtype."""
    return dtype.itemsize == 2 and dim is not None and dim in (0, ndim - 1)


def _subnormal_norm(squares: np.ndarray, dim: int | None, dtype: np.dtype, ndim: int) -> str | None:
    """Why a 16-bit weight's norm, where PyTorch keeps it in that dtype, loses bits, or None.

    PyTorch's unfused ``v * (g / ||v||)`` (a middle axis, the whole tensor) rounds the norm to
    the weight's dtype; below half its smallest normal value the norm loses two bits or more
    in subnormals, and the weight with it (a float16 ConvTranspose at axis 1 with ``|v|``
    about 4e-8: 5% off, t103; 8 ulps in a sweep of such norms, against 2.1 for normal ones
    and 2.6 between half the smallest normal and it). The fused kernel (the first or last
    axis, as on CPU) keeps it in float32: the weight then depends on how the model ran, and
    is not folded either. A norm that float16 holds exactly (a unit of one element, whose norm
    is ``|v|``) loses nothing. Only float16 reaches here: a bfloat16 norm that small has
    squares below float32's smallest normal, which :func:`norm_reason` declines first."""
    if dtype.itemsize != 2 or not squares.size:
        return None
    norms = np.sqrt(squares[squares > 0])
    half = float(ml_dtypes.finfo(dtype).smallest_normal) / 2
    small = norms[norms < half]
    # a norm float16 holds exactly loses nothing (one element's: |v|, t106)
    if not small.size or np.array_equal(small.astype(dtype).astype(np.float64), small):
        return None
    name = dtype.name
    if _fused(dim, ndim, dtype):
        return (
            f"||v|| is below half the smallest normal {name}: PyTorch's weight is exact where "
            "it keeps the norm in float32 (its fused kernel, at the first or last axis, as on "
            f"CPU) and not where it keeps it in {name} (unfused): which one the model used "
            "depends on how it ran, so it is not folded"
        )
    where = "over the whole tensor" if dim is None else f"at axis {dim}"
    return (
        f"||v|| is below half the smallest normal {name}: PyTorch keeps the norm in {name} "
        f"{where} (its fused kernel, which keeps it in float32, serves the first and last axis "
        "only), where it loses bits, so the weight it uses is not the exact one"
    )


def quotient_reason(
    g64: np.ndarray, v64: np.ndarray, squares: np.ndarray, dim: int | None, dtype: np.dtype
) -> str | None:
    """Why the weight PyTorch computes from this pair is not the exact one, or may not be, by
    its quotient, or None.

    PyTorch computes ``v * (g / ||v||)``, taking ``g / ||v||`` in the weight's dtype, but for a
    float16 or bfloat16 weight at the first or the last axis, whose fused kernel takes it in
    float32 (on CPU: a float16 ``weight_norm(Conv1d, dim=0)`` with ``g = 20`` and ``||v|| =
    1e-4`` has a finite weight, the same pair at axis 1 or over the whole tensor an inf one).
    Where the quotient exceeds the largest value of that dtype, it is inf and the weight inf
    (NaN where ``v`` is 0), although the exact weight may be finite (``g = 3e38``, ``v = [0.5,
    0]`` in float32: ``[inf, nan]``). Where it is below half the smallest normal value, it
    loses two bits or more in subnormals (a float16 ConvTranspose's weight 30% off) or is 0
    (a float32 weight all 0), though the exact weight is not; between half the smallest
    normal and it, one bit, which leaves the weight within about an ulp and a half of the
    exact one, as a normal quotient's two roundings leave it within one (folded). A pair
    whose weight depends on which path computes it is declined too, saying so. Within the
    dtype's range, the fold's float64 product is finite too: ``|v| <= ||v||``, so each
    weight is at most ``|g|``, which :func:`values_reason` bounds first.
    """
    whole = dim is None
    if v64.ndim and whole:
        g64 = g64.reshape(())  # as weight_from: a whole-tensor g of shape (1, 1) is a scalar
    with np.errstate(over="ignore", divide="ignore"):
        quotient = np.abs(g64) / np.sqrt(squares)
    largest = float(quotient.max()) if quotient.size else 0.0
    nonzero = quotient[quotient > 0]
    smallest = float(nonzero.min()) if nonzero.size else np.inf
    info, wide = ml_dtypes.finfo(dtype), np.finfo(np.float32)
    name, fused = dtype.name, _fused(dim, v64.ndim, dtype)
    if largest > float(info.max):
        what, within_float32 = "exceeds the largest", largest < float(wide.max)
        result, there = "inf there, so the weight it uses is not finite", ("finite", "inf")
    elif smallest < float(info.smallest_normal) / 2:
        what, within_float32 = (
            "is below half the smallest normal",
            bool(smallest >= wide.smallest_normal / 2),
        )
        result = "which loses bits there (or is 0), so the weight it uses is not the exact one"
        there = ("the exact one", "not")
    else:
        return None
    if dtype.itemsize == 2 and within_float32:
        if fused:
            return (
                f"g / ||v|| {what} {name}: PyTorch's weight is {there[0]} where it takes that "
                "quotient in float32 (its fused kernel, at the first or last axis, as on CPU) "
                f"and {there[1]} where it takes it in {name} (v * (g / ||v||) unfused): which "
                "one the model used depends on how it ran, so it is not folded"
            )
        where = "over the whole tensor" if whole else f"at axis {dim}"
        return (
            f"g / ||v|| {what} {name}: PyTorch computes v * (g / ||v||) in {name} {where} "
            "(its fused kernel, which takes the quotient in float32, serves the first and last "
            f"axis only), {result}"
        )
    return f"g / ||v|| {what} {name}: PyTorch computes v * (g / ||v||), {result}"


def values_reason(g: np.ndarray, v: np.ndarray, dim: int | None) -> str | None:
    """Why these values cannot be folded exactly, or None: NaN/Inf in ``g`` or ``v``, norms
    PyTorch would not compute exactly (:func:`norm_reason`: a zero unit, squares that overflow
    or underflow), a ``g`` beyond the largest finite value of ``v``'s dtype (``|w| <= |g|``,
    so a ``g`` within it cannot overflow that dtype), or a quotient ``g / ||v||`` beyond it or
    below its smallest normal value (:func:`quotient_reason`)."""
    g64, v64 = g.astype(np.float64), v.astype(np.float64)
    if not np.isfinite(g64).all() or not np.isfinite(v64).all():
        return "NaN or Inf in g or v"
    if not v64.size:  # units of no elements: PyTorch's weight is as empty, no norm is read
        return None
    squares = _unit_squares(v64, dim)
    reason = norm_reason(v64, squares, dim, v.dtype)
    if reason is not None:
        return reason
    bound = float(ml_dtypes.finfo(v.dtype).max)
    if g64.size and float(np.abs(g64).max()) > bound:
        reason = "g exceeds the largest value of the weight's dtype (the weight would overflow)"
    else:
        reason = quotient_reason(g64, v64, squares, dim, v.dtype)
    if reason is not None and g.dtype != v.dtype:  # a 0-d g of its own dtype (t187)
        return (
            f"g is {g.dtype.name} and v {v.dtype.name}, with g or g / ||v|| beyond "
            f"{v.dtype.name}'s normal range: PyTorch takes that quotient in the wider dtype, "
            f"where the checks made for {v.dtype.name} alone do not hold"
        )
    return reason


def check_pair(g: Any, v: Any, dim: int | None) -> str | None:
    """Why the pair ``g``, ``v`` cannot be folded, or None: :func:`values_reason`."""
    try:
        g_array, v_array = _numpy(g, "g"), _numpy(v, "v")
        return values_reason(g_array, v_array, dim)
    except Declined as declined:
        return str(declined)
    except (MemoryError, OSError) as error:  # a v of more elements than memory holds (a
        if not out_of_memory(error):  # stride-0 one: a tiny file), a file not mapped
            raise
        return OUT_OF_MEMORY


def fold_pair(g: Any, v: Any, dim: int | None) -> Any:
    """The folded weight, of ``v``'s dtype and shape, a numpy array or a torch tensor as ``v``
    is (checked by :func:`check_pair` first)."""
    weight = weight_from(_numpy(g, "g"), _numpy(v, "v"), dim)  # in float64, rounded once
    if not np.isfinite(weight).all():  # check_pair rules this out: quotient_reason
        raise Declined("the folded weight is not finite")
    if isinstance(v, np.ndarray):
        return weight
    # ascontiguousarray gives a 0-d array one axis: the weight keeps v's shape
    return to_torch(np.ascontiguousarray(weight).reshape(weight.shape))
