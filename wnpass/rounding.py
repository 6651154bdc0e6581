"""Round float64 values once, to nearest even, to float32, float16 or bfloat16.

numpy rounds float64 straight to float32 and float16. Casting float64 to bfloat16, ml_dtypes
and torch both go through float32, and so does torch for float16: a value just above a
midpoint of the narrow type can land exactly on that midpoint in float32 and then round to
even, the wrong way (``1 + 2**-8 + 2**-40`` becomes 1 in bfloat16, not ``1 + 2**-7``).
:func:`round_once` rounds to bfloat16 through float32 *rounded to odd* (toward zero, the last
bit set when inexact): with float32's 24 bits of precision at least bfloat16's 8 plus two,
rounding that to nearest even gives the correctly rounded bfloat16 (Boldo and Melquiond,
"When double rounding is odd", 2005). Subnormals and overflow to inf come out right too.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

__all__ = ["BFLOAT16", "ML_DTYPES", "round_once", "round_to_torch", "to_torch"]

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
# The float types numpy holds through ml_dtypes, and torch takes from numpy only as bits
ML_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2")
_DIRECT = (np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.float16))


def round_once(values: np.ndarray, dtype: Any) -> np.ndarray:
    """``values`` (float64, or anything that widens to it exactly) rounded once to nearest
    even in float ``dtype``: float64, float32, float16 or bfloat16."""
    dtype = np.dtype(dtype)
    if dtype in _DIRECT:
        return np.asarray(values).astype(dtype, copy=False)
    if dtype != BFLOAT16:
        raise TypeError(f"no rounding to {dtype} (float64, float32, float16, bfloat16 only)")
    if np.asarray(values).dtype == np.float32:
        bits = np.asarray(values).view(np.uint32)
        if not np.any(bits & 0xFFFF):  # every value a bfloat16 (widened): its bits, NaNs' too
            return (bits >> 16).astype(np.uint16).view(BFLOAT16)
    x = np.asarray(values, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        nearest = x.astype(np.float32)
        away = np.abs(nearest) > np.abs(x)  # rounded away from zero: step back toward it
        toward_zero = np.where(away, np.nextafter(nearest, np.float32(0)), nearest)
        inexact = (toward_zero != x) & ~np.isnan(x)
    odd = toward_zero.view(np.uint32) | inexact.astype(np.uint32)
    return odd.view(np.float32).astype(BFLOAT16)  # float32 -> bfloat16: nearest even


def round_to_torch(values: np.ndarray, like: Any) -> Any:
    """``values`` rounded once to the dtype of torch tensor ``like``, as a CPU tensor."""
    name = str(like.dtype).removeprefix("torch.")
    rounded = round_once(values, BFLOAT16 if name == "bfloat16" else name)
    return to_torch(np.ascontiguousarray(rounded))


def to_torch(array: np.ndarray) -> Any:
    """A CPU tensor over the same memory as ``array`` (a writeable numpy array); bfloat16 and
    float8, which torch does not take from numpy, by their bits."""
    import torch

    if array.dtype.name in ML_DTYPES:
        bits = array.view(np.int16 if array.dtype.itemsize == 2 else np.uint8)
        return torch.from_numpy(bits).view(getattr(torch, array.dtype.name))
    return torch.from_numpy(array)
