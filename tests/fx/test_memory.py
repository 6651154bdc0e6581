"""Which bytes tensors hold: spans, and exact byte sets compared as intervals or masks."""

from __future__ import annotations

import pytest
import torch

from wnpass.fx.memory import Bytes, Spans, held, is_wrapper, span


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
    edges = torch.eye(3).to_sparse()
    assert [t.data_ptr() for t in held(edges)] == [
        edges._values().data_ptr(),
        edges._indices().data_ptr(),
    ]
    assert [t.data_ptr() for t in held(pair)] == [pair.b.data_ptr(), pair.a.data_ptr()]
    found = Spans([("pair", pair)])
    assert [name for name, _ in found.overlapping(pair.a)] == ["pair"]


def test_spans_find_every_tensor_whose_span_overlaps() -> None:
    flat = torch.zeros(10)
    found = Spans([("a", flat[:4]), ("b", flat[4:]), ("c", flat[3:5]), ("far", torch.zeros(3))])
    assert [name for name, _ in found.overlapping(flat[:3])] == ["a"]
    assert [name for name, _ in found.overlapping(flat[4:6])] == ["c", "b"]


def test_bytes_are_compared_as_sets() -> None:
    flat = torch.zeros(8)
    low, high = flat[:4], flat[4:]
    memory = Bytes()
    assert memory.strictly_within(low, flat) and not memory.strictly_within(flat, flat)
    assert memory.meet(low, flat) and not memory.meet(low, high)
    assert memory.covered(flat, [low, high]) and not memory.covered(flat, [low])


def test_a_strided_view_holds_only_its_own_bytes() -> None:
    """Every other row of a table spans the rows between; it holds none of their bytes."""
    table = torch.zeros(6, 2)
    even, odd, last = table[0::2], table[1::2], table[5:]
    memory = Bytes()
    assert not memory.meet(even, odd) and memory.meet(odd, last)
    assert memory.strictly_within(even, table)
    assert not memory.covered(table, [even, last]) and memory.covered(table, [even, odd])
    columns = [table[:, 0], table[:, 1]]
    assert not memory.meet(*columns) and memory.covered(table, columns)


def test_a_view_in_another_dtype_holds_the_same_bytes() -> None:
    """A float16 view of float32 values has twice the elements over the same bytes: no
    part of them, nor they of it."""
    values = torch.zeros(4)
    halves = values.view(torch.float16)
    memory = Bytes()
    assert memory.meet(values, halves)
    assert not memory.strictly_within(values, halves)
    assert not memory.strictly_within(halves, values)
    assert memory.covered(halves, [values])


def test_an_expanded_tensor_holds_its_bytes_once() -> None:
    """A stride-0 view holds one row's bytes, however many times it repeats them."""
    row = torch.zeros(3)
    repeated = row.expand(5, 3)
    memory = Bytes()
    assert not memory.strictly_within(row, repeated)
    assert memory.covered(row, [repeated]) and memory.covered(repeated, [row])
    runs = memory.runs(torch.zeros(1024).expand(2048, 1024))  # 2048 repeats: one run (t231)
    assert runs is not None and len(runs[0]) == 1


def test_a_tensor_of_too_many_runs_is_taken_the_safe_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_RUNS a strided tensor is not followed: it shares what its span overlaps,
    holds nothing exactly and covers nothing, so that a layer is declined, never a sharing
    missed."""
    from wnpass.fx import memory as module

    monkeypatch.setattr(module, "MAX_RUNS", 2)
    table = torch.zeros(6, 2)
    even, odd = table[0::2], table[1::2]
    memory = Bytes()
    assert memory.runs(even) is None and memory.meet(even, odd)
    assert not memory.strictly_within(table[0], even)
    assert not memory.covered(table, [even, odd])
    assert memory.strictly_within(even, table)  # its span is inside: so is every byte of it
