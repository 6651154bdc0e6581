"""The conditions torch.export took on dynamic sizes, read from its program (wnpass.assumed);
their effect on an export is tested in tests/deploy/test_ranges.py."""

from __future__ import annotations

import threading
import types
import warnings

import pytest
import torch
from torch import nn

from wnpass import assumed


class _Parity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.shape[1] % 4 == 0 else x + 1


def _program(model: nn.Module, x: torch.Tensor) -> assumed.Captured:
    """torch.export's program of ``model`` with axis 1 dynamic, as torch.onnx.export captures
    it (the program it decomposes)."""
    with assumed.captured() as programs:
        torch.onnx.export(
            model, (x,), dynamo=True, verbose=False, dynamic_shapes=({1: torch.export.Dim.DYNAMIC},)
        )
    assert len(programs) == 1
    return programs[0]


def test_a_branch_on_a_size_is_read_with_the_nearest_sizes_where_it_fails() -> None:
    read = assumed.conditions(_program(_Parity().eval(), torch.randn(2, 8)))
    assert read is not None
    (condition,) = read
    assert condition.text == "(n % 4) == 0" and condition.alone
    assert condition.failing == (9, 7, 10, 6, 11, 5, 13, 3)  # above first where as near
    assert condition.holds(12) and not condition.holds(10)
    assert condition.holds_at({}) and not condition.holds_at({condition.symbol: 10})  # at 8


def test_the_conditions_are_those_torch_export_took() -> None:
    """torch.onnx's passes after torch.export add their own to its shape environment (t87):
    the conditions are read as they were when the program was captured."""
    captured = _program(_Parity().eval(), torch.randn(2, 8))
    assert [c.text for c in assumed.conditions(captured) or []] == ["(n % 4) == 0"]
    assert assumed.conditions(captured._replace(conditions=[])) == []


def test_the_example_sizes_are_read_under_either_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch 2.13 calls them backed_var_to_val and deprecates var_to_val (a FutureWarning on
    every export, t88); a torch before it has var_to_val only."""
    program = _program(_Parity().eval(), torch.randn(2, 8))
    environment = assumed._environment(program.program)
    older = types.SimpleNamespace(
        var_to_val=dict(environment.backed_var_to_val),
        deferred_runtime_asserts=environment.deferred_runtime_asserts,
        guards=environment.guards,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no FutureWarning
        assert [c.text for c in assumed.conditions(program) or []] == ["(n % 4) == 0"]
    monkeypatch.setattr(assumed, "_environment", lambda program: older)
    assert [c.text for c in assumed.conditions(program) or []] == ["(n % 4) == 0"]
    monkeypatch.setattr(assumed, "_environment", lambda program: types.SimpleNamespace())
    assert assumed.conditions(program) is None


def test_the_program_is_captured_and_torch_given_back_on_failure() -> None:
    original = torch.export.ExportedProgram.run_decompositions
    with pytest.raises(RuntimeError, match="stop"), assumed.captured():
        assert torch.export.ExportedProgram.run_decompositions is not original
        raise RuntimeError("stop")
    assert torch.export.ExportedProgram.run_decompositions is original


def test_blocks_in_threads_each_get_their_own_programs() -> None:
    """B still exporting when A closes its block: torch's method stays wrapped until the last
    block closes, each block gets only its own programs, and torch gets its method back. (A
    restored the method under B, and B's close put A's wrapper back for good.)"""
    x = torch.randn(1, 2)
    programs_of = {k: torch.export.export(nn.Linear(2, 2), (x,)) for k in "ab"}
    original = torch.export.ExportedProgram.run_decompositions
    both_in, a_out = threading.Barrier(2), threading.Event()
    got: dict[str, list[assumed.Captured]] = {}

    def export(name: str) -> None:
        with assumed.captured() as programs:
            both_in.wait()
            if name == "b":
                a_out.wait()
            programs_of[name].run_decompositions()
        got[name] = programs
        if name == "a":
            a_out.set()

    threads = [threading.Thread(target=export, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [p.program is programs_of["a"] for p in got["a"]] == [True]
    assert [p.program is programs_of["b"] for p in got["b"]] == [True]
    assert torch.export.ExportedProgram.run_decompositions is original


def test_nested_blocks_each_get_their_own_programs_and_leave_nothing_set() -> None:
    x = torch.randn(1, 2)
    inner_program, outer_program = (torch.export.export(nn.Linear(2, 2), (x,)) for _ in "ab")
    with assumed.captured() as outer:
        with assumed.captured() as inner:
            inner_program.run_decompositions()
        outer_program.run_decompositions()
    assert [p.program is inner_program for p in inner] == [True]
    assert [p.program is outer_program for p in outer] == [True]
    assert assumed._capturing.get() is None and assumed._open == 0


def test_the_sizes_where_a_condition_fails_are_the_nearest_within_the_range() -> None:
    def multiple_of_4(n: int) -> bool:
        return n % 4 != 0

    assert assumed._failing(multiple_of_4, 6, 5, None)[:2] == (8, 12)  # 4 is below the range
    assert assumed._failing(multiple_of_4, 6, 0, 7) == (4, 0)  # 8 is above it
    assert assumed._failing(lambda n: True, 6, 0, None) == ()


def test_a_condition_that_cannot_be_evaluated_at_the_example_is_not_used() -> None:
    holds = assumed._test("n == 3", 3)
    assert holds is not None and holds(3) and not holds(4)
    assert assumed._test("n == 3", 5) is None  # torch took it: it holds there
    assert assumed._test("n ==", 3) is None and assumed._test("unknown(n)", 3) is None


def test_a_size_where_a_condition_divides_by_zero_is_not_tried() -> None:
    """No value there to say it fails: a division by zero is no failing size."""
    holds = assumed._test("6 % (n - 3) == 0", 5)
    assert holds is not None and holds(3) and not holds(7)
    assert assumed._failing(holds, 5, 1, 10) == (7, 8, 10)  # 3, as near as 7, is no such size


def _condition(symbol: str, text: str, alone: bool, fails: int) -> assumed.Condition:
    return assumed.Condition(symbol, text, alone, (9, 7), lambda n: n != fails,
                             lambda sizes: sizes.get(symbol) != fails)  # fmt: skip


def test_conditions_failing_at_the_same_sizes_are_said_as_one() -> None:
    first, second = _condition("s0", "a", True, 9), _condition("s0", "b", True, 7)
    other, with_others = _condition("s1", "c", True, 9), _condition("s0", "d", False, 9)
    merged, kept, apart = assumed._merged([first, second, other, with_others])
    assert (merged.text, kept, apart) == ("a and b", other, with_others)
    assert not merged.holds(9) and not merged.holds(7) and merged.holds(8)
    assert not merged.holds_at({"s0": 7}) and merged.holds_at({"s0": 8})
    either = _condition("s0", "n == 1 or n == 2", True, 9)
    (joined,) = assumed._merged([either, first])  # each part whole: "and" binds first
    assert joined.text == "(n == 1 or n == 2) and a"


def test_a_condition_failing_far_from_the_example_is_found_at_its_nearest_size() -> None:
    """``min(t, 10000) == t`` of an example of 16 holds within 8192 of it (t89): further out,
    the first size where it fails, and those past it."""
    assert assumed._failing(lambda n: min(n, 10000) == n, 16, 2, None)[:3] == (10001, 10002, 10003)
    assert assumed._failing(lambda n: max(n, 1000) == n, 16000, 100, None)[:2] == (999, 998)
    assert assumed._failing(lambda n: n <= 20000, 16, 2, 15000) == ()  # beyond the range
    assert assumed._failing(lambda n: True, 16, 2, None) == ()


def test_ties_are_equalities_and_multiples_of_sizes_not_branches_on_them() -> None:
    import sympy
    from torch.utils._sympy.functions import Mod

    a, b, c = sympy.symbols("s1 s2 s3", integer=True, positive=True)
    assert assumed._ties(sympy.Eq(a, b)) and assumed._ties(sympy.Eq(Mod(a * b, c), 0))
    assert not assumed._ties(sympy.Eq(Mod(a + b, 4), 0))  # the parity of a sum: a branch
    assert not assumed._ties(sympy.Eq(a, 3)) and not assumed._ties(sympy.Eq(Mod(a, 4), 0))
