"""register_weight_norm's guard: which weights g * v / ||v|| would not give back exactly."""

from __future__ import annotations

import pytest
import torch

from wnpass.fx.register import unit_norm_problem


def _rows(*rows: list[float], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype)


def test_a_weight_without_degenerate_units_is_fine() -> None:
    assert unit_norm_problem(torch.randn(4, 3, 2), 0) is None
    assert unit_norm_problem(torch.randn(4, 3, 2), 1) is None


@pytest.mark.parametrize(
    ("weight", "dim", "words"),
    [
        (_rows([1.0, 2.0], [0.0, 0.0], [3.0, 0.0]), 0, "all-zero output units (unit 1 of 3 "),
        (torch.zeros(5, 2), 0, "(units 0, 1, 2 and 2 more of 5 along axis 0)"),
        (_rows([1.0, 0.0], [2.0, 0.0]), 1, "(unit 1 of 2 along axis 1)"),  # a zero column
        (_rows([1.0, float("inf")], [1.0, 1.0]), 0, "a norm of 0, NaN or Inf in float32"),
        (_rows([1.0, float("nan")], [1.0, 1.0]), 0, "(unit 0 of 2 along axis 0)"),
        (_rows([60000.0, 60000.0], [1.0, 1.0], dtype=torch.float16), 0, "in float16"),
    ],
    ids=["zero row", "all zero", "zero column", "inf", "nan", "float16 overflow"],
)
def test_degenerate_units_are_named(weight: torch.Tensor, dim: int, words: str) -> None:
    """A unit whose norm is 0 (0/0) or not finite in the weight's own dtype is named."""
    problem = unit_norm_problem(weight, dim)
    assert problem is not None and words in problem, problem
    # the guard is right: PyTorch's weight norm does not give such a weight back
    g = torch.norm_except_dim(weight, 2, dim)
    assert not torch.equal(torch._weight_norm(weight, g, dim).isfinite(), weight.isfinite())


@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (3, 0, 2)], ids=["no units", "no inputs", "3-D"])
def test_a_weight_without_elements_is_named(shape: tuple[int, ...]) -> None:
    """``nn.Linear(4, 0)``'s weight raised inside PyTorch's norm (exit 3); one with no inputs
    was called all-zero units: it has nothing to normalize, and says so."""
    problem = unit_norm_problem(torch.empty(shape), 0)
    assert problem == f"weight with no elements ({'x'.join(map(str, shape))}): nothing to normalize"
