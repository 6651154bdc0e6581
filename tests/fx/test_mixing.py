"""Where a layer op's weights' units go (:mod:`wnpass.fx.mixing`), followed by the recorder
through random chains of the ops it follows, checked against brute force: the same chain
applied to tensors holding, per element, the index of the unit it belongs to. A weight is
never placed on fewer axes than its units' elements reach."""

from __future__ import annotations

import itertools
import math
import random
import weakref
from collections.abc import Callable

import pytest
import torch

from tests.fx.helpers import unit_index, varies
from wnpass.fx import units
from wnpass.fx.observe import _Recorder

Op = Callable[[torch.Tensor], torch.Tensor]


def _factors(n: int) -> list[int]:
    found, rest = [], n
    for p in (2, 3, 5):
        while rest % p == 0:
            found.append(p)
            rest //= p
    return found + ([rest] if rest > 1 else [])


def _op(shape: tuple[int, ...], rng: random.Random) -> Op | None:
    """One random op on a tensor of ``shape`` that keeps each element one unit's: a view, a
    permutation, an index, a split, a selection, a flip, a join with itself, arithmetic."""
    rank, kind = (
        len(shape),
        rng.choice(
            [
                "reshape",
                "permute",
                "index",
                "chunk",
                "select",
                "flip",
                "cat",
                "stack",
                "add",
                "repeat",
            ]
        ),
    )
    dim = rng.randrange(rank) if rank else 0
    if kind == "reshape":
        parts = [f for n in shape for f in _factors(n)]
        rng.shuffle(parts)
        cuts = sorted(rng.sample(range(1, len(parts)), min(2, len(parts) - 1))) if parts else []
        new = tuple(math.prod(parts[a:b]) for a, b in itertools.pairwise([0, *cuts, len(parts)]))
        return lambda t: t.reshape(new or (1,))
    if kind == "permute" and rank > 1:
        order = rng.sample(range(rank), rank)
        return lambda t: t.permute(*order)
    if kind == "index" and rank and shape[dim] > 1:
        start = rng.randrange(shape[dim] - 1)
        items = (slice(None),) * dim + (slice(start, None, rng.choice([1, 2])),)
        return lambda t: t[items]
    if kind == "chunk" and rank and shape[dim] > 1:
        k = rng.randint(2, shape[dim])
        i = rng.randrange(len(torch.empty(shape[dim]).chunk(k)))
        return lambda t: t.chunk(k, dim)[i]
    if kind == "select" and rank > 1:
        i = rng.randrange(shape[dim])
        return lambda t: t.select(dim, i)
    if kind == "flip" and rank:
        return lambda t: t.flip(dim)
    if kind == "cat" and rank and shape[dim] > 1:
        other = rng.choice([lambda t: t, lambda t: t.flip(dim), lambda t: t.roll(1, dim)])
        along = rng.randrange(rank)
        return lambda t: torch.cat([t, other(t)], along)
    if kind == "stack" and rank:
        at = rng.randrange(rank + 1)
        return lambda t: torch.stack([t, t.flip(dim)], at)
    if kind == "add":
        return lambda t: t + t
    if kind == "repeat" and rank:
        reps = [rng.choice([1, 2]) for _ in shape]
        return lambda t: t.repeat(*reps)
    return None


# An op of a chain, given what fills the elements it brings in of no unit (:func:`_foreign_op`)
Foreign = Callable[[torch.Tensor, float], torch.Tensor]


def _own_op(shape: tuple[int, ...], rng: random.Random) -> Foreign | None:
    """One of :func:`_op`'s ops, which bring in no element of their own."""
    op = _op(shape, rng)
    return None if op is None else (lambda t, fill: op(t))


def _chain(
    shape: tuple[int, ...],
    rng: random.Random,
    pick: Callable[[tuple[int, ...], random.Random], Foreign | None],
) -> list[Foreign]:
    """One to four random ops, each applicable to what the one before gives."""
    ops: list[Foreign] = []
    probe = torch.zeros(shape)
    for _ in range(rng.randint(1, 4)):
        op = pick(tuple(probe.shape), rng)
        if op is None:
            continue
        try:
            probe = op(probe, 0.0)
        except RuntimeError:  # a view the strides refuse: another op
            continue
        ops.append(op)
    return ops


def _axes(shape: tuple[int, ...]) -> dict[str, int]:
    """A weight per axis of more than one element, its units along that axis."""
    return {f"w{j}": j for j, n in enumerate(shape) if n > 1}


def _placed(shape: tuple[int, ...], ops: list[Foreign]) -> dict[str, list[int]] | None:
    """The axes the recorder places each weight of :func:`_axes` on, after ``ops`` on a
    layer op's result of ``shape``; None where it does not follow them."""
    tensor = torch.randn(shape)
    recorder = _Recorder({}, {}, "unit", False)
    layout = units.of_result(shape, _axes(shape).items())
    recorder.mixed.layouts[id(tensor)] = (weakref.ref(tensor), ("matmul", layout))
    with recorder:
        result = tensor
        for op in ops:
            result = op(result, 0.0)
    entry = recorder.mixed.of(result)
    return None if entry is None else units.spread(entry[1])


@pytest.mark.parametrize("seed", range(300))
def test_a_weight_is_never_placed_on_fewer_axes_than_its_units_reach(seed: int) -> None:
    rng = random.Random(seed)
    shape = tuple(rng.choice([1, 2, 3, 4, 6]) for _ in range(rng.randint(1, 4)))
    ops = _chain(shape, rng, _own_op)
    found = _placed(shape, ops)
    if found is None:
        return  # not followed: nothing placed, nothing claimed
    for weight, axis in _axes(shape).items():
        unit = unit_index(shape, axis).contiguous()
        for op in ops:
            unit = op(unit, 0.0)
        assert set(varies(unit)) <= set(found.get(weight, [])), (seed, weight, found)


def _foreign_op(shape: tuple[int, ...], rng: random.Random) -> Foreign | None:
    """One random op of :func:`_op`'s, or one that brings in elements of no unit, ``fill``:
    a padding joined along an axis, a mask's fill in ``where``, one unit's slice broadcast
    over an axis by arithmetic with zeros."""
    rank, kind = len(shape), rng.choice(["pad", "mask", "broadcast", "own", "own"])
    dim = rng.randrange(rank) if rank else 0
    if kind == "pad" and rank:
        piece = [rng.randint(1, 2) if j == dim else n for j, n in enumerate(shape)]
        first = rng.random() < 0.5

        def pad(t: torch.Tensor, fill: float) -> torch.Tensor:
            padding = torch.full(piece, fill, dtype=t.dtype)
            return torch.cat([padding, t] if first else [t, padding], dim)

        return pad
    if kind == "mask" and rank:
        generator = torch.Generator().manual_seed(rng.randrange(1 << 30))
        mask = torch.rand([n if rng.random() < 0.5 else 1 for n in shape], generator=generator)
        return lambda t, fill: torch.where(mask < 0.6, t, torch.tensor(fill, dtype=t.dtype))
    if kind == "broadcast" and rank and shape[dim] > 1:
        i = rng.randrange(shape[dim])
        return lambda t, fill: t.narrow(dim, i, 1) + torch.zeros(shape, dtype=t.dtype)
    op = _op(shape, rng)
    return None if op is None else (lambda t, fill: op(t))


def _reached(unit: torch.Tensor) -> list[int]:
    """The axes along which two elements of different units lie (NaN: no unit's)."""
    found = []
    for j in range(unit.dim()):
        slices = [unit.narrow(j, a, 1) for a in range(unit.shape[j])]
        if any(
            ((x != y) & ~x.isnan() & ~y.isnan()).any() for x, y in itertools.combinations(slices, 2)
        ):
            found.append(j)
    return found


@pytest.mark.parametrize("seed", range(200))
def test_elements_of_no_unit_never_hide_where_a_weight_s_units_reach(seed: int) -> None:
    """The chains above with operands of no layer's in them (a padding, a mask's fill, a
    broadcast of zeros): a weight is never placed on fewer axes than its units' elements
    reach, the elements of no unit left out of the brute force."""
    rng = random.Random(seed)
    shape = tuple(rng.choice([1, 2, 3, 4, 6]) for _ in range(rng.randint(1, 4)))
    ops = _chain(shape, rng, _foreign_op)
    found = _placed(shape, ops)
    assert found is not None  # each of these ops is followed
    for weight, axis in _axes(shape).items():
        unit = unit_index(shape, axis).contiguous().double()
        for op in ops:
            unit = op(unit, math.nan)
        assert set(_reached(unit)) <= set(found.get(weight, [])), (seed, weight, found)
