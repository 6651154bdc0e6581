"""round_once is correct rounding to nearest even, checked against exact rational arithmetic,
where casting through float32 (ml_dtypes, torch) is not."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from wnpass.rounding import BFLOAT16, round_once, round_to_torch

# Just above a midpoint of the narrow type: float32 rounds it onto the midpoint, which then
# rounds to even, down, where the value itself rounds up.
ABOVE_BF16_MIDPOINT = 1 + 2**-8 + 2**-40  # bfloat16: 1 + 2**-7
ABOVE_F16_MIDPOINT = 1 + 2**-11 + 2**-40  # float16: 1 + 2**-10


def nearest(x: float, dtype: np.dtype) -> float:
    """``x`` rounded to nearest even in ``dtype``, by exact arithmetic on its neighbours."""
    if not np.isfinite(x):
        return x
    info = np.finfo(np.float16) if dtype == np.float16 else _bf16_info()
    largest, bits = float(info.max), info.nmant + 1
    half_ulp_of_max = Fraction(2) ** (int(np.log2(largest)) - bits)
    if abs(Fraction(x)) >= Fraction(largest) + half_ulp_of_max:
        return float(np.copysign(np.inf, x))
    guess = int(np.array([x]).astype(dtype).view(np.uint16)[0])  # within an ulp or two
    candidates = []
    for step in (-2, -1, 0, 1, 2):
        pattern = np.array([(guess + step) & 0xFFFF], np.uint16)
        value = float(pattern.view(dtype)[0])
        if np.isfinite(value):
            candidates.append((abs(Fraction(value) - Fraction(x)), int(pattern[0]) & 1, value))
    return min(candidates)[2]


def _bf16_info() -> Any:
    import ml_dtypes

    return ml_dtypes.finfo(ml_dtypes.bfloat16)


def _midpoints(dtype: np.dtype, count: int, seed: int) -> np.ndarray:
    """Midpoints between neighbouring finite values of ``dtype``, and values just either side."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 0x7BFF if dtype == np.float16 else 0x7F7F, count).astype(np.uint16)
    low = patterns.view(dtype).astype(np.float64)
    high = (patterns + 1).view(dtype).astype(np.float64)
    middle = (low + high) / 2
    return np.concatenate([middle, middle * (1 + 2**-30), middle * (1 - 2**-30), -middle])


@pytest.mark.parametrize("dtype", [BFLOAT16, np.dtype(np.float16)], ids=["bfloat16", "float16"])
def test_midpoints_and_their_neighbours_round_to_nearest_even(dtype: np.dtype) -> None:
    values = _midpoints(dtype, 2000, seed=0)
    rounded = round_once(values, dtype).astype(np.float64)
    expected = np.array([nearest(float(x), dtype) for x in values])
    np.testing.assert_array_equal(rounded, expected)


def test_casting_through_float32_gets_some_of_them_wrong() -> None:
    """The test above can fail: ml_dtypes' own cast rounds twice."""
    values = _midpoints(BFLOAT16, 2000, seed=0)
    twice = values.astype(BFLOAT16).astype(np.float64)
    expected = np.array([nearest(float(x), BFLOAT16) for x in values])
    assert np.count_nonzero(twice != expected) > 100


@given(st.floats(allow_nan=False, width=64))
def test_any_float64_rounds_to_the_nearest_bfloat16(x: float) -> None:
    assert float(round_once(np.array([x]), BFLOAT16)[0]) == nearest(x, BFLOAT16)


def test_edges() -> None:
    values = np.array([ABOVE_BF16_MIDPOINT, -ABOVE_BF16_MIDPOINT, 0.0, -0.0, np.inf, 1e-45, 4e38])
    rounded = round_once(values, BFLOAT16).astype(np.float64)
    assert rounded.tolist() == [1 + 2**-7, -(1 + 2**-7), 0.0, 0.0, np.inf, 0.0, np.inf]
    assert np.signbit(rounded[3]) and not np.signbit(rounded[2])
    assert np.isnan(round_once(np.array([np.nan]), BFLOAT16).astype(np.float64)[0])
    assert float(round_once(np.array([ABOVE_F16_MIDPOINT]), np.float16)[0]) == 1 + 2**-10


def test_other_dtypes_are_refused() -> None:
    with pytest.raises(TypeError, match="int8"):
        round_once(np.ones(2), np.int8)


@pytest.mark.parametrize(
    ("dtype", "value", "expected"),
    [
        (torch.bfloat16, ABOVE_BF16_MIDPOINT, 1 + 2**-7),
        (torch.float16, ABOVE_F16_MIDPOINT, 1 + 2**-10),
        (torch.float32, 1 / 3, float(np.float32(1 / 3))),
    ],
)
def test_torch_tensors_are_rounded_once(dtype: torch.dtype, value: float, expected: float) -> None:
    like = torch.zeros(1, dtype=dtype)
    tensor = round_to_torch(np.array([value, -value]), like)
    assert tensor.dtype == dtype and tensor.tolist() == [expected, -expected]
    assert torch.tensor([value], dtype=torch.float64).to(dtype).item() != expected or (
        dtype == torch.float32
    ), "torch's own cast rounds these twice"
