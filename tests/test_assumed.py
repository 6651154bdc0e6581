"""The conditions torch.export took on dynamic sizes, read from its program (wnpass.assumed);
their effect on an export is tested in tests/test_deploy.py."""

from __future__ import annotations

import pytest
import sympy
import torch
from torch import nn

from wnpass import assumed


class _Parity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.shape[1] % 4 == 0 else x + 1


def _program(model: nn.Module, x: torch.Tensor) -> object:
    """torch.export's program of ``model`` with axis 1 dynamic, as torch.onnx.export captures
    it (the program it decomposes)."""
    with assumed.captured() as programs:
        torch.onnx.export(
            model, (x,), dynamo=True, verbose=False, dynamic_shapes=({1: torch.export.Dim.DYNAMIC},)
        )
    assert len(programs) == 1
    return programs[0]


def test_a_branch_on_a_size_is_read_with_the_nearest_sizes_where_it_fails() -> None:
    (condition,) = assumed.conditions(_program(_Parity().eval(), torch.randn(2, 8)))
    assert condition.text == "(n % 4) == 0" and condition.alone
    assert condition.failing == (9, 7)  # above first where as near
    assert condition.holds(12) and not condition.holds(10)


def test_the_program_is_captured_and_torch_given_back_on_failure() -> None:
    original = torch.export.ExportedProgram.run_decompositions
    with pytest.raises(RuntimeError, match="stop"), assumed.captured():
        assert torch.export.ExportedProgram.run_decompositions is not original
        raise RuntimeError("stop")
    assert torch.export.ExportedProgram.run_decompositions is original


def test_the_sizes_where_a_condition_fails_are_the_nearest_within_the_range() -> None:
    def multiple_of_4(n: int) -> bool:
        return n % 4 != 0

    assert assumed._failing(multiple_of_4, 6, 5, None) == (8, 12)  # 4 is below the range
    assert assumed._failing(multiple_of_4, 6, 0, 7) == (4, 0)  # 8 is above it
    assert assumed._failing(lambda n: True, 6, 0, None) == ()


def test_a_condition_that_cannot_be_evaluated_at_the_example_is_not_used() -> None:
    n = sympy.Symbol("n", integer=True, positive=True)
    text, holds = assumed._test(sympy.Eq(n, 3), 3)
    assert text == "n == 3" and holds is not None and holds(3) and not holds(4)
    assert assumed._test(sympy.Eq(n, 3), 5)[1] is None  # torch took it: it holds there


def test_conditions_failing_at_the_same_sizes_are_said_as_one() -> None:
    first = assumed.Condition("s0", "a", True, (9, 7), lambda n: n != 9)
    second = assumed.Condition("s0", "b", True, (9, 7), lambda n: n != 7)
    other = assumed.Condition("s1", "c", True, (9, 7), lambda n: True)
    merged, kept = assumed._merged([first, second, other])
    assert (merged.text, kept) == ("a and b", other)
    assert not merged.holds(9) and not merged.holds(7) and merged.holds(8)
