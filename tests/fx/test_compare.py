"""Comparing a forward's result before and after a rewrite: every part of it, exactly where
it is not a float."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
import torch

from wnpass.fx.compare import MAX_DEPTH, max_rel_error, output_changes, result_leaves

NAN, INF = float("nan"), float("inf")


def _error(after: Any, before: Any) -> float:
    return max_rel_error(result_leaves(after), result_leaves(before))


def _changes(after: Any, before: Any, rtol: float = 1e-5) -> str:
    return output_changes(result_leaves(after), result_leaves(before), rtol)


@pytest.mark.parametrize(
    ("after", "before", "expected"),
    [
        ([NAN], [1.0], INF),  # NaN where there was a number
        ([1.0], [NAN], INF),  # and the other way
        ([INF, 1.0], [1.0, 1.0], INF),
        ([-INF], [INF], INF),
        ([NAN], [INF], INF),
        ([NAN, 2.0], [NAN, 2.0], 0.0),  # NaN where the model already gave NaN: unchanged
        ([INF, 1.5], [INF, 2.0], 0.25),  # the finite elements are compared, to their scale
        ([1.0, 2.0], [1.0, 2.0], 0.0),
        ([NAN, INF], [NAN, INF], NAN),  # not one finite element: nothing compared, not 0
        ([], [], NAN),  # an empty output: nothing compared
    ],
)
def test_max_rel_error_counts_nan_and_inf(
    after: list[float], before: list[float], expected: float
) -> None:
    """NaN/Inf in new places is an infinite difference, never 0 (max(0.0, nan) is 0.0); with
    nothing to compare the result is NaN, never 0."""
    error = _error(torch.tensor(after), torch.tensor(before))
    assert error == expected or (math.isnan(expected) and math.isnan(error))


def test_an_all_nan_output_next_to_a_finite_one_is_compared_on_the_finite_one() -> None:
    """Outputs are compared on what they have: an all-NaN output does not hide another's."""
    nan = torch.full((2,), NAN)
    assert _error((nan, torch.tensor([1.5])), (nan, torch.tensor([2.0]))) == 0.25
    assert math.isnan(_error((), ()))  # a forward that returned nothing


y = torch.arange(3.0)


@pytest.mark.parametrize(
    ("after", "before", "change"),
    [
        # a tensor returned twice was kept once: the part that moved was not compared
        ((y, y, 2 * y), (y, 2 * y, y), "output[1] (float32 3): max relative difference"),
        ((y, y), (y,), "the forward's result changed: output[1] new"),
        ((y, None), (y, y), "output[1] (float32 3): NoneType now"),
        ((y, 4), (y, 3), "output[1] (int): 3 before, 4 now"),
        ((y, "a"), (y, "b"), "output[1] (str): 'b' before, 'a' now"),
        (y.double(), y, "output (float32 3): dtype float64 now"),
        (torch.tensor([1, 2], dtype=torch.int64), torch.tensor([1, 2], dtype=torch.int32), "dtype"),
        ({"cls": y + 1, "box": y}, {"cls": y, "box": y}, "output['cls'] (float32 3): max rel"),
        ({"b": y, "a": y}, {"a": y, "b": y}, "the forward's result holds its parts in another"),
        (np.ones(3) * 2, np.ones(3), "output (float64 3): max relative difference 1.00e+00"),
        ((y, 1.5), (y, 1.0), "output[1] (float): max relative difference 5.00e-01"),
    ],
)  # fmt: skip
def test_every_part_of_the_result_is_compared(after: Any, before: Any, change: str) -> None:
    """The check read the result's tensors only, each object once: a reordered, added or
    dropped output, a number, a string and a dtype change passed as "equivalent"."""
    assert change in _changes(after, before)
    assert _error(after, before) > 1e-5
    assert _changes(before, before) == ""


def test_a_float_is_compared_within_the_tolerance_and_a_cache_by_its_tensors() -> None:
    @dataclasses.dataclass
    class Out:
        logits: torch.Tensor
        past: Any

    class Cache:  # an object with tensors in its attributes
        def __init__(self, k: torch.Tensor) -> None:
            self.k = k

    before = Out(y, [Cache(y), 0.5])
    after = Out(y, [Cache(y + 1), 0.5 + 1e-12])
    assert _changes(after, before) == (
        "output.past[0].k (float32 3): max relative difference 5.00e-01 > tolerance 1e-05"
    )
    assert _changes(Out(y, [Cache(y), 0.5 + 1e-12]), before) == ""


def test_a_result_nested_too_deep_is_a_difference_not_left_out() -> None:
    def nested(value: Any) -> Any:
        for _ in range(MAX_DEPTH + 2):
            value = [value]
        return value

    assert _changes(nested(y), nested(y)).endswith(
        f"containers nested deeper than {MAX_DEPTH} before, containers nested deeper than "
        f"{MAX_DEPTH} now"
    )


def test_a_buffer_the_forward_changes_in_place_is_compared_as_it_was() -> None:
    """The leaves are copies: a result that is the model's own buffer, which the next forward
    updates in place, was the same object before and after, and equal to itself."""
    buffer = torch.ones(3)
    before = result_leaves(buffer)
    buffer += 1
    assert output_changes(result_leaves(buffer), before, 1e-5) == (
        "output (float32 3): max relative difference 1.00e+00 > tolerance 1e-05"
    )


def test_changed_outputs_are_named_with_how_they_changed() -> None:
    """A quantizer's codes that flipped on float rounding (a codec) read as "NaN/Inf
    appeared or moved, or an output's count, shape or integer values changed": which output,
    and which of the three, was not said."""
    before = (torch.zeros(2, 3), torch.arange(6).reshape(2, 3), torch.ones(4))
    after = (torch.zeros(2, 3), torch.tensor([[0, 1, 2], [3, 5, 4]]), torch.ones(4) * 1.5)
    assert _changes(after, before) == (
        "output[1] (int64 2x3): 2 of 6 values differ; "
        "output[2] (float32 4): max relative difference 5.00e-01 > tolerance 1e-05"
    )
    assert _changes(after, before, 1.0) == "output[1] (int64 2x3): 2 of 6 values differ"
    nan_now = (before[0] * NAN,)
    assert _changes(nan_now, before[:1]) == (
        "output[0] (float32 2x3): NaN/Inf appeared or went away at 6 of 6 values"
    )
    reshaped = [before[0].reshape(3, 2)] * 5
    assert _changes(reshaped, [before[0]] * 5, 1.0) == (
        "output[0] (float32 2x3): shape 3x2 now; output[1] (float32 2x3): shape 3x2 now; "
        "output[2] (float32 2x3): shape 3x2 now; 2 more"
    )
