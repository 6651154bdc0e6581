"""Which bytes tensors hold: spans, and exact byte sets compared as intervals or masks."""

from __future__ import annotations

import pytest
import torch

from wnpass.fx.memory import Bytes, Spans, is_wrapper, span


def test_a_span_runs_from_the_first_byte_to_after_the_last() -> None:
    table = torch.zeros(4, 3)
    start = table.data_ptr()
    assert span(table) == (start, start + 48)
    assert span(table[:, 1]) == (start + 4, start + 4 + 40)  # rows 0..3, one column
    assert span(table[1:1]) is None  # no elements
    assert span(torch.zeros(3, device="meta")) is None
    assert span(torch.zeros(3).to_sparse()) is None


def test_a_wrapping_subclass_holds_no_bytes_of_its_own() -> None:
    """Its data_ptr() is 0: two of them were taken for one memory (t226)."""
    from torch.testing._internal.two_tensor import TwoTensor

    pair = TwoTensor(torch.zeros(3), torch.ones(3))
    assert is_wrapper(pair) and not is_wrapper(torch.nn.Parameter(torch.zeros(3)))
    assert span(pair) is None


def test_spans_find_every_tensor_whose_span_overlaps() -> None:
    flat = torch.zeros(10)
    found = Spans([("a", flat[:4]), ("b", flat[4:]), ("c", flat[3:5]), ("far", torch.zeros(3))])
    assert [name for name, _ in found.overlapping(flat[:3])] == ["a"]
    assert [name for name, _ in found.overlapping(flat[4:6])] == ["c", "b"]


@pytest.mark.parametrize("dense", [True, False], ids=["intervals", "masks"])
def test_bytes_are_compared_as_sets(dense: bool) -> None:
    """Contiguous parts compare as intervals; a strided one anywhere makes them masks, with
    the same answers where both can answer."""
    flat = torch.zeros(8)
    low, high = flat[:4], flat[4:]
    other = [] if dense else [flat[0::2]]
    memory = Bytes([flat, low, high, *other])
    assert memory.strictly_within(low, flat) and not memory.strictly_within(flat, flat)
    assert memory.meet(low, flat) and not memory.meet(low, high)
    assert memory.covered(flat, [low, high]) and not memory.covered(flat, [low])


def test_a_strided_view_holds_only_its_own_bytes() -> None:
    """Every other row of a table spans the rows between; it holds none of their bytes."""
    table = torch.zeros(6, 2)
    even, odd, last = table[0::2], table[1::2], table[5:]
    memory = Bytes([table, even, odd, last])
    assert not memory.meet(even, odd) and memory.meet(odd, last)
    assert memory.strictly_within(even, table)
    assert not memory.covered(table, [even, last]) and memory.covered(table, [even, odd])


def test_a_view_in_another_dtype_holds_the_same_bytes() -> None:
    """A float16 view of float32 values has twice the elements over the same bytes: no
    part of them, nor they of it."""
    values = torch.zeros(4)
    halves = values.view(torch.float16)
    for memory in (Bytes([values, halves]), Bytes([values, halves, torch.zeros(4, 2)[:, 0]])):
        assert memory.meet(values, halves)
        assert not memory.strictly_within(values, halves)
        assert not memory.strictly_within(halves, values)
        assert memory.covered(halves, [values])


def test_an_expanded_tensor_holds_its_bytes_once() -> None:
    """A stride-0 view holds one row's bytes, however many times it repeats them."""
    row = torch.zeros(3)
    repeated = row.expand(5, 3)
    memory = Bytes([row, repeated])
    assert not memory.strictly_within(row, repeated)
    assert memory.covered(row, [repeated]) and memory.covered(repeated, [row])
