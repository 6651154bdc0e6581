"""Where a layer's units go: each layout checked against the same op applied to tensors that
hold, per element, the index of the unit it belongs to."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch

from tests.fx.helpers import unit_index, varies
from wnpass.fx import units


def _truth(
    shape: Sequence[int], axes: dict[str, int], op: Callable[[torch.Tensor], Any]
) -> dict[str, list[int]]:
    found = {w: varies(op(unit_index(shape, a))) for w, a in axes.items()}
    return {w: v for w, v in found.items() if v}


def _shapes(count: int, seed: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """``count`` pairs of shapes with one number of elements: a random ``[2..4]``-axis shape
    of small factors and a random regrouping of them."""
    rng = random.Random(seed)
    pairs: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    while len(pairs) < count:
        factors = [rng.choice([1, 2, 2, 3, 3, 4, 5, 6]) for _ in range(rng.randint(2, 6))]
        cuts = sorted(rng.sample(range(1, len(factors)), rng.randint(1, len(factors) - 1)))
        source = [
            int(torch.tensor(factors[a:b]).prod())
            for a, b in itertools.pairwise([0, *cuts, len(factors)])
        ]
        target = list(factors)
        rng.shuffle(target)  # reorder the factors: cuts anywhere, even or not
        pairs.append((tuple(source), tuple(target)))
    return pairs


@pytest.mark.parametrize(("source", "target"), _shapes(150, 0))
def test_a_reshape_spreads_each_unit_over_the_axes_its_elements_go_to(
    source: tuple[int, ...], target: tuple[int, ...]
) -> None:
    """Over every axis a unit's elements reach after the reshape, and over no other where the
    cuts are even; where a stretch is cut unevenly the axes it straddles may all be named
    (the weights' units there are mixed either way)."""
    axes = {f"w{j}": j for j in range(len(source))}
    found = units.spread(units.reshaped(units.of_result(source, axes.items()), target) or ())
    truth = _truth(source, axes, lambda t: t.reshape(target))
    for weight, spread in truth.items():
        assert set(spread) <= set(found[weight]), (weight, spread, found)
    if all(t == 1 or s % t == 0 or t % s == 0 for s in source for t in target):
        assert found == truth


def test_a_cut_that_divides_neither_way_spreads_both_weights_over_both_axes() -> None:
    """``[3, 4]`` viewed as ``[2, 6]``: each element's row and column both depend on both new
    axes (the flat index ``4 r + c`` is ``6 i + j``)."""
    layout = units.reshaped(units.of_result((3, 4), [("rows", 0), ("columns", 1)]), (2, 6))
    assert units.spread(layout or ()) == {"rows": [0, 1], "columns": [0, 1]}


def test_a_unit_merged_with_the_batch_stays_on_one_axis() -> None:
    """A correlation's kernels: ``[B, C, h, w]`` viewed as ``[B * C, 1, h, w]``."""
    layout = units.reshaped(units.of_result((2, 8, 5, 5), [("k", 1)]), (16, 1, 5, 5))
    assert units.spread(layout or ()) == {"k": [0]}


def test_a_reshape_to_another_count_is_not_followed() -> None:
    assert units.reshaped(units.of_result((2, 6), [("w", 1)]), (4, 4)) is None


INDICES: list[Any] = [
    0,
    -1,
    (slice(None), 1),
    (slice(1, 3), slice(None), None),
    (Ellipsis, 0),
    (None, Ellipsis, slice(None, None, 2)),
    torch.tensor([2, 0, 2]),
    (slice(None), torch.tensor([[1, 0], [3, 3]])),
    [1, 0],
    torch.tensor([True, False, True]),
    (0, torch.tensor([1, 2])),
]


@pytest.mark.parametrize("index", INDICES, ids=[repr(i)[:30] for i in INDICES])
def test_indexing_keeps_each_unit_on_the_axes_its_elements_go_to(index: Any) -> None:
    shape = (3, 4, 5)
    axes = {"a": 0, "b": 1, "c": 2}
    result = torch.empty(shape)[index].shape
    found = units.indexed(units.of_result(shape, axes.items()), index, result)
    assert found is not None
    assert units.spread(found) == _truth(shape, axes, lambda t: t[index])


def test_indexing_with_several_index_tensors_is_not_followed() -> None:
    """torch may move their axes to the front: not followed, rather than guessed."""
    index = (torch.tensor([0, 1]), slice(None), torch.tensor([1, 2]))
    result = torch.empty(3, 4, 5)[index].shape
    assert units.indexed(units.of_result((3, 4, 5), [("w", 2)]), index, result) is None


@pytest.mark.parametrize(
    ("shapes", "result"),
    [
        (((4, 6), (4, 6)), (4, 6)),
        (((6,), (4, 6)), (4, 6)),
        (((4, 1), (4, 6)), (4, 6)),
        (((2, 1, 6), (3, 1)), (2, 3, 6)),
    ],
)
def test_broadcasting_arithmetic_keeps_each_operand_s_units_on_their_axes(
    shapes: tuple[tuple[int, ...], ...], result: tuple[int, ...]
) -> None:
    """An axis of size 1 broadcast holds no unit; one of each operand's indexes both."""
    layouts = [(units.of_result(shape, [(f"w{k}", -1)]), shape) for k, shape in enumerate(shapes)]
    truth: dict[str, list[int]] = {}
    for k, shape in enumerate(shapes):
        if shape[-1] > 1:
            truth[f"w{k}"] = varies(unit_index(shape, len(shape) - 1).expand(result))
    assert units.spread(units.elementwise(layouts, result)) == truth


def test_an_axis_moved_keeps_its_stretches_and_one_resized_is_one_stretch() -> None:
    """A permutation moves an axis whole; a slice of one made of two stretches (``[B * C]``
    narrowed) indexes what both did."""
    layout = units.reshaped(units.of_result((2, 3, 4), [("c", 1)]), (6, 4)) or ()
    moved = units.moved(layout, [1, 0], (4, 6))
    assert units.spread(moved) == {"c": [1]} and moved[1] == layout[0]
    ((size, names),) = units.moved(layout, [0, 1], (5, 4))[0]
    assert size == 5 and {n for n in names if not n.startswith("~")} == {"c"}


@pytest.mark.parametrize(("start", "stop"), [(0, 8), (4, 12), (1, 9), (0, 2)])
def test_a_slice_of_a_merged_axis_keeps_the_inner_stretches_it_takes_whole(
    start: int, stop: int
) -> None:
    """``[B * C]`` sliced and viewed again (t272): a slice from a multiple of ``C``, of whole
    ``C``s, keeps ``C`` inside; another is one stretch (its weights then reach every axis a
    later view makes of it, which is what its elements do)."""
    layout = units.reshaped(units.of_result((3, 4, 5), [("c", 1)]), (12, 5)) or ()
    index = (slice(start, stop),)
    sliced = units.indexed(layout, index, (stop - start, 5))
    assert sliced is not None
    n = stop - start
    target = (n // 4, 4, 5) if n % 4 == 0 else (n, 5)
    found = units.spread(units.reshaped(sliced, target) or ())
    truth = _truth((3, 4, 5), {"c": 1}, lambda t: t.reshape(12, 5)[index].reshape(target))
    assert set(truth["c"]) <= set(found["c"])
    if start % 4 == 0 and n % 4 == 0:
        assert found == truth == {"c": [1]}


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_a_concatenation_and_a_stack_keep_each_unit_on_its_axes(dim: int) -> None:
    shape = (2, 6)
    layout = units.of_result(shape, [("w", 1)])
    for op in ("cat", "stack"):
        joined = getattr(torch, op)([torch.empty(shape)] * 2, dim).shape
        ours = (*layout[: dim % (len(joined))], (), *layout[dim % len(joined) :])
        at = dim % len(joined)
        pieces = [ours if op == "stack" else layout] * 2
        sizes = [1, 1] if op == "stack" else [shape[at]] * 2
        found = units.joined(pieces, sizes, joined, at)
        index = unit_index(shape, 1)
        truth = varies(getattr(torch, op)([index, index], dim))
        assert units.spread(found) == {"w": truth}, op


def test_a_repeat_tiles_each_axis_with_its_copies_outside() -> None:
    layout = units.of_result((2, 6), [("w", 1)])
    found = units.reshaped(units.repeated(layout, (3, 4, 12)), (3, 4, 2, 6)) or ()
    truth = varies(unit_index((2, 6), 1).repeat(3, 2, 2).reshape(3, 4, 2, 6))
    assert units.spread(found) == {"w": truth} == {"w": [3]}


def test_a_concatenation_keeps_the_inner_stretches_every_piece_holds_whole() -> None:
    """Kernels merged with the batch, ``[B * C]``, joined: ``C`` stays inside (t274); a piece
    of another size than a multiple of ``C`` makes the axis one stretch."""
    piece = units.reshaped(units.of_result((2, 4, 5), [("c", 1)]), (8, 5)) or ()
    found = units.joined([piece, piece], [8, 8], (16, 5), 0)
    assert units.spread(units.reshaped(found, (4, 4, 5)) or ()) == {"c": [1]}
    uneven = units.joined([piece, None], [8, 3], (11, 5), 0)
    assert uneven[0] == ((11, frozenset({"c"})),)


@pytest.mark.parametrize(
    ("index", "whole"),
    [
        ([0, 1, 2, 3, 0, 1, 2, 3], True),
        ([4, 5, 6, 7], True),
        ([1, 2, 3, 4, 5, 6, 7, 0], False),
        ([0, 4, 1, 5, 2, 6, 3, 7], False),
    ],
)
def test_an_index_taking_whole_blocks_keeps_the_inner_stretches(
    index: list[int], whole: bool
) -> None:
    layout = units.reshaped(units.of_result((2, 4, 5), [("c", 1)]), (8, 5)) or ()
    picked = units.picked(layout, 0, index, (len(index), 5))
    viewed = units.reshaped(picked, (len(index) // 4, 4, 5)) or ()
    truth = varies(unit_index((2, 4, 5), 1).reshape(8, 5)[torch.tensor(index)].reshape(-1, 4, 5))
    assert units.spread(viewed) == ({"c": truth} if whole else {"c": [0, 1]})
    assert set(truth) <= set(units.spread(viewed)["c"])


def test_an_axis_looked_up_in_another_order_is_one_stretch() -> None:
    """``k[perm]`` of an axis ``[B * C]`` keeps its size but not its order: viewed again,
    its units reach both axes (the lookup kept its stretches: a weight placed on fewer axes
    than its elements reach)."""
    layout = units.reshaped(units.of_result((2, 4), [("c", 1)]), (8,)) or ()
    perm = torch.tensor([0, 4, 1, 5, 2, 6, 3, 7])
    looked = units.indexed(layout, perm, (8,)) or ()
    truth = varies(unit_index((2, 4), 1).reshape(8)[perm].reshape(2, 4))
    assert units.spread(units.reshaped(looked, (2, 4)) or ()) == {"c": truth} == {"c": [0, 1]}


def test_units_taken_one_by_one_and_joined_are_many_again() -> None:
    """``cat([k[1:], k[:1]])`` of an axis of 2 (t274): each piece holds one unit, an axis of
    1 that kept no name, and the join indexed no weight: a weight placed on no axis."""
    layout = units.of_result((2, 3), [("w", 0)])
    pieces = [
        units.indexed(layout, slice(1, 2), (1, 3)),
        units.indexed(layout, slice(0, 1), (1, 3)),
    ]
    assert None not in pieces
    found = units.joined(pieces, [1, 1], (2, 3), 0)
    index = unit_index((2, 3), 0)
    truth = varies(torch.cat([index[1:], index[:1]]))
    assert units.spread(found) == {"w": truth} == {"w": [0]}


@pytest.mark.parametrize("join", ["cat", "stack"])
def test_a_piece_in_another_order_joined_spreads_its_units_along_the_join(join: str) -> None:
    """``cat([k, k.flip(1)], 1)`` (t276): both pieces held ``(4, {f})``, kept as one inner
    stretch, though the second holds the units in another order: the view placed ``f`` on
    one axis where its elements reach two. A reordered axis is tagged, and pieces that
    differ on any axis index their weights along the join too."""
    layout = units.of_result((1, 4), [("f", 1)])
    flipped = units.reordered(layout, [1])
    if join == "cat":
        found = units.reshaped(units.joined([layout, flipped], [4, 4], (1, 8), 1), (2, 4))
        index = unit_index((1, 4), 1)
        truth = varies(torch.cat([index, index.flip(1)], 1).reshape(2, 4))
    else:
        pieces = [(*each[:1], (), *each[1:]) for each in (layout, flipped)]
        found = units.joined(pieces, [1, 1], (1, 2, 4), 1)
        index = unit_index((1, 4), 1)
        truth = varies(torch.stack([index, index.flip(1)], 1))
    assert units.spread(found or ()) == {"f": truth} == {"f": [0, 1] if join == "cat" else [1, 2]}


def test_an_index_keeps_only_the_stretches_it_takes_in_whole_blocks() -> None:
    """t276: ``picked`` checked blocks of 3 (``b``) and ``moved`` then kept ``(2, a)`` as well,
    though the blocks come in any order: ``a`` placed on one axis where it reaches two."""
    layout = units.of_result((2, 3), [("a", 0), ("b", 1)])
    flat = units.reshaped(layout, (6,)) or ()
    index = [3, 4, 5, 0, 1, 2, 0, 1, 2, 3, 4, 5]
    found = units.reshaped(units.picked(flat, 0, index, (12,)), (2, 2, 3)) or ()
    a = unit_index((2, 3), 0).reshape(6)[torch.tensor(index)].reshape(2, 2, 3)
    assert set(varies(a)) <= set(units.spread(found)["a"])
    assert units.spread(found)["b"] == [2]
