"""Where a layer's units go in what it computes.

A layer op's result holds each weight's units along one axis (``routing @ W``: the last; a
convolution's: the channels). When the model reads that result, through views of it, as
another layer's weight, the weight's units either stay on one axis of it (attention's keys
in ``F.linear(q, k)``, a low-rank ``U @ V``, a correlation filter per channel merged with the
batch) or are split across several (CondConv's ``(routing @ W).view(B * out, in, k, k)``:
each unit one kernel element, no filter).

A :data:`Layout` says this for a tensor: per axis, outer to inner, the stretches of it
(:data:`Segment`) and the weights whose units each indexes. A reshape keeps the tensor's
logical (row-major) order, so it regroups the stretches into the new axes (:func:`reshaped`);
selections, splits, permutations and broadcasting arithmetic move whole axes
(:func:`moved`, :func:`elementwise`), a concatenation or a repeat joins or tiles them
(:func:`joined`, :func:`repeated`). Where a stretch is cut so that its elements cannot be
told apart, every axis it reaches is said to index its weights: a weight is never placed
on fewer axes than its elements reach, and may be placed on more.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

__all__ = [
    "Layout", "Segment", "dropped", "elementwise", "indexed", "joined", "moved", "of_result",
    "picked", "reordered", "repeated", "reshaped", "spread",
]  # fmt: skip

# A stretch of an axis: its size and the weights whose units it indexes (and, for one whose
# order an op changed, a tag of that op: ``~n``, so that it matches no stretch in another
# order, t276)
Segment = tuple[int, frozenset[str]]
Layout = tuple[tuple[Segment, ...], ...]
_NONE: frozenset[str] = frozenset()
_TAGS = itertools.count()


def _reorder_tag() -> frozenset[str]:
    return frozenset({f"~{next(_TAGS)}"})


def _range_tag(where: tuple[int, int] | None, inner: int) -> frozenset[str]:
    """The tag of an axis's outer stretch taken in part: by where it starts and its step, so
    that two slices of one tensor at other starts (``k[:, :2]``, ``k[:, 2:]``) differ in a
    join and two at one start do not (t278); one looked up, or from an unknown start, its
    own."""
    if where is None or where == LOOKED_UP:
        return _reorder_tag()
    return frozenset({f"~@{where[0] // inner}:{where[1]}"})


def reordered(layout: Layout, axes: Iterable[int]) -> Layout:
    """``layout`` with the elements of ``axes`` in another order (a flip, a roll along them):
    each one stretch indexing what it did, tagged as reordered."""
    chosen = {a % len(layout) for a in axes} if layout else set()
    return tuple(
        ((_size(segments), _names_of(segments) | _reorder_tag()),) if j in chosen else segments
        for j, segments in enumerate(layout)
    )


def of_result(shape: Sequence[int], axes: Iterable[tuple[str, int]]) -> Layout:
    """The layout of a layer op's result of ``shape`` whose axis ``a`` holds the units of
    weight ``w``, for each ``(w, a)`` in ``axes``."""
    at: dict[int, set[str]] = {}
    for weight, axis in axes:
        at.setdefault(axis % len(shape), set()).add(weight)
    return tuple(((n, frozenset(at.get(j, ()))),) for j, n in enumerate(shape))


def spread(layout: Layout) -> dict[str, list[int]]:
    """Each weight, and the axes its units index (an axis of size 1 indexes none)."""
    axes: dict[str, list[int]] = {}
    for j, segments in enumerate(layout):
        for weight in sorted(_names(segments)):
            axes.setdefault(weight, []).append(j)
    return axes


def reshaped(layout: Layout, shape: Sequence[int]) -> Layout | None:
    """The layout after a reshape (view, flatten, squeeze, ...) to ``shape``; None where the
    element counts differ (a view as another dtype).

    A stretch of ``n`` at flat stride ``S`` (its element's digit ``f // S % n``) is spread
    over an axis of ``m`` at stride ``T`` unless the axis lies wholly outside it with no
    carry into it: ``T`` a multiple of ``S * n`` (a step of it moves the digit by whole
    turns) or ``S`` a multiple of ``T * m`` (what the axis adds stays below ``S``). Where the
    new axes cut every stretch they take evenly, each axis is the pieces it takes; else one
    stretch indexing every weight spread over it (``[3, 4]`` viewed as ``[2, 6]``: rows and
    columns both on both axes).
    """
    stretches: list[tuple[int, int, frozenset[str]]] = []  # (stride, size, weights)
    stride = 1
    for size, names in reversed([s for segments in layout for s in segments if s[0] > 1]):
        stretches.append((stride, size, names))
        stride *= size
    if stride != math.prod(shape):
        return None
    axes: list[tuple[Segment, ...]] = []
    at = math.prod(shape)
    for m in shape:
        at //= m
        if m == 1:
            axes.append(())
            continue
        reached = [
            (s, n, names)
            for s, n, names in reversed(stretches)
            if not (at % (s * n) == 0 or s % (at * m) == 0)
        ]
        if all(_even(b, s, n) for b in (at, at * m) for s, n, _ in reached):
            pieces = [(min(s * n, at * m) // max(s, at), names) for s, n, names in reached]
            axes.append(tuple(p for p in pieces if p[0] > 1))
        else:
            axes.append(((m, frozenset(w for _, _, names in reached for w in names)),))
    return tuple(axes)


def _even(boundary: int, stride: int, size: int) -> bool:
    """Whether an axis boundary at flat stride ``boundary`` cuts a stretch of ``size`` at
    ``stride`` between whole digits: outside it, or inside at a divisor."""
    if boundary <= stride:
        return stride % boundary == 0
    if boundary >= stride * size:
        return boundary % (stride * size) == 0
    return boundary % stride == 0 and (stride * size) % boundary == 0


# A ``starts`` entry of :func:`moved`: the axis's elements looked up by an index, in any
# order, even where as many (``k[perm]``): one stretch
LOOKED_UP = (0, 0)


def moved(
    layout: Layout,
    sources: Sequence[int | None],
    shape: Sequence[int],
    starts: Sequence[tuple[int, int] | None] = (),
) -> Layout:
    """The layout of a result of ``shape`` whose axis ``j`` is the input's axis
    ``sources[j]`` (None: a new one, indexing no weight's units). An axis whose size changed
    (sliced, split, looked up) keeps the inner stretches a slice of it takes whole: one
    starting at a multiple of their size, by steps of 1 (``starts[j]``: its start and step,
    where known), a number of them (``[B * C]`` sliced to its first ``2 * C``: still ``C``
    inside); what is left outside is one stretch indexing what it indexed (t272)."""
    axes: list[tuple[Segment, ...]] = []
    for j, (source, n) in enumerate(zip(sources, shape, strict=True)):
        segments = layout[source] if source is not None else ()
        where = starts[j] if j < len(starts) else None
        if _size(segments) == n and where != LOOKED_UP:
            axes.append(segments or ((n, _NONE),))
            continue
        kept: tuple[Segment, ...] = ()
        if where is not None and where[1] == 1:
            for k in range(len(segments)):  # the longest whole inner stretches the slice keeps
                inner = _size(segments[k:])
                if n % inner == 0 and where[0] % inner == 0:
                    kept = segments[k:]
                    break
        outer = segments[: len(segments) - len(kept)]
        names = _names_of(outer) | _range_tag(where, _size(kept))
        rest = n // _size(kept)
        # one outer unit taken keeps its weights and where it starts on a stretch of 1, which
        # a join lengthens or tells apart from another start's (t279)
        axes.append(((rest, names), *kept) if rest > 1 or not kept or _held(outer) else kept)
    return tuple(axes)


def dropped(layout: Layout, dim: int, index: int | None) -> Layout:
    """The layout of a selection ``index`` along axis ``dim`` (``select``, one of ``unbind``'s
    results; None: where, unknown): the axis goes, and the weights it indexed are tagged by
    the selection on the axes that still hold them, so that selections of other units of
    theirs differ in a join (a head split: ``cat(keys.view(B, H, D).unbind(1))``, t279)."""
    tag = _reorder_tag() if index is None else _selection_tag(dim, index)
    kept = tuple(axis for j, axis in enumerate(layout) if j != dim)
    return _tagged(kept, _names(layout[dim]), tag)


def _selection_tag(dim: int, index: int) -> frozenset[str]:
    return frozenset({f"~{dim}={index}"})


def _tagged(layout: Layout, names: frozenset[str], tag: frozenset[str]) -> Layout:
    """``layout`` with ``tag`` on each stretch that indexes one of ``names``."""
    return tuple(
        tuple((size, ws | tag) if ws & names else (size, ws) for size, ws in axis)
        for axis in layout
    )


def joined(
    layouts: Sequence[Layout | None], sizes: Sequence[int], shape: Sequence[int], dim: int
) -> Layout:
    """The layout of ``torch.cat`` along ``dim`` of tensors of these layouts (None: one no
    layer op computed, indexing no weight) and sizes along ``dim``: there, the inner
    stretches every tensor holds whole (those of the tracked ones alike, each size a multiple
    of theirs: kernels merged with the batch, joined) and outside them one stretch indexing
    what the rest did; the other axes joined as by :func:`elementwise`."""
    found = [layout for layout in layouts if layout is not None]
    others = elementwise([(layout, shape) for layout in found], shape) if found else ()
    axes: list[tuple[Segment, ...]] = []
    for j, n in enumerate(shape):
        if j != dim:
            axes.append(others[j])
            continue
        along = [layout[j] for layout in found]
        kept: tuple[Segment, ...] = ()
        for k in range(1, min(map(len, along), default=0) + 1):  # the longest common suffix
            suffix = along[0][-k:]
            inner = _size(suffix)
            if any(each[-k:] != suffix for each in along) or any(m % inner for m in sizes):
                break
            kept = suffix if inner > 1 else kept  # pieces of one unit: joined, they are many
        outer = [each[: len(each) - len(kept)] for each in along]  # of 1 too (one unit)
        names = frozenset(w for segments in outer for _, ws in segments for w in ws)
        # a weight that two pieces hold otherwise on another axis (one flipped, cut another
        # way): its units differ from piece to piece along this one too (t276); pieces of
        # other layers' weights are no difference (t277)
        for other in range(len(shape)):
            if other != dim:
                names |= _differing([layout[other] for layout in found])
        rest = n // _size(kept)
        axes.append(((rest, names), *kept) if rest > 1 else kept)
    return tuple(axes)


def picked(layout: Layout, dim: int, index: Sequence[int], shape: Sequence[int]) -> Layout:
    """The layout of ``index_select`` of ``index`` along ``dim``: the inner stretches of that
    axis that the index takes in whole blocks (runs of their size, each from a multiple of
    it: ``arange(4 * B).repeat(2)`` of kernels merged with the batch) are kept, as
    :func:`moved` keeps those a slice takes."""
    segments, n = layout[dim], shape[dim]
    axis: tuple[Segment, ...] = ((n, _names_of(segments) | _reorder_tag()),)  # in any order
    for k in range(len(segments)):  # the longest inner stretches taken in whole blocks
        inner = _size(segments[k:])
        blocks = [index[i : i + inner] for i in range(0, len(index), inner)]
        if (
            inner > 1
            and len(index) % inner == 0
            and all(
                b[0] % inner == 0 and list(b) == list(range(b[0], b[0] + inner)) for b in blocks
            )
        ):
            outer = _names_of(segments[:k]) | _reorder_tag()  # the blocks, in any order
            axis = ((n // inner, outer), *segments[k:]) if n > inner else segments[k:]
            break
    return (*layout[:dim], axis, *layout[dim + 1 :])


def repeated(layout: Layout, shape: Sequence[int]) -> Layout:
    """The layout of ``tensor.repeat(...)`` of ``shape``: each axis its input's, tiled (an
    outer stretch of the copies, indexing no weight); new leading axes index none."""
    new = len(shape) - len(layout)
    axes: list[tuple[Segment, ...]] = [((n, _NONE),) for n in shape[:new]]
    for segments, n in zip(layout, shape[new:], strict=True):
        copies = n // max(_size(segments), 1)
        axes.append(((copies, _NONE), *segments) if copies > 1 else segments)
    return tuple(axes)


def _names(segments: Sequence[Segment]) -> frozenset[str]:
    """The weights whose units ``segments`` index (those of size 1 index none)."""
    return frozenset(w for size, ws in segments if size > 1 for w in ws if w[0] != "~")


def _differing(axes: Sequence[tuple[Segment, ...]]) -> frozenset[str]:
    """The weights that several of ``axes`` (one axis of each piece of a join) hold laid
    out otherwise: other stretches, or another order (a tag)."""
    found: set[str] = set()
    for weight in frozenset().union(*(_names(axis) for axis in axes)):
        # held on a stretch of 1 too: one unit repeated along the axis (t278)
        holding = {_laid_out(axis, weight) for axis in axes if weight in _held(axis)}
        if len(holding) > 1:
            found.add(weight)
    return frozenset(found)


def _laid_out(axis: tuple[Segment, ...], weight: str) -> tuple[object, ...]:
    """How ``axis`` holds ``weight``'s units: its stretches, which are the weight's, and their
    order's tags."""
    return tuple((size, weight in ws, frozenset(w for w in ws if w[0] == "~")) for size, ws in axis)


def _held(segments: Sequence[Segment]) -> frozenset[str]:
    """The weights ``segments`` index, on stretches of 1 too (no tags)."""
    return frozenset(w for _, ws in segments for w in ws if w[0] != "~")


def _names_of(segments: Sequence[Segment]) -> frozenset[str]:
    """The names of ``segments``, tags and those of size 1 included."""
    return frozenset(w for _, ws in segments for w in ws)


def _size(segments: Sequence[Segment]) -> int:
    """The size of an axis made of ``segments``."""
    return math.prod(n for n, _ in segments)


def elementwise(layouts: Sequence[tuple[Layout, Sequence[int]]], shape: Sequence[int]) -> Layout:
    """The layout of a broadcasting elementwise op's result of ``shape`` from its operands'
    (``layout``, ``shape``): axes aligned from the right; a new axis, or one of size 1
    broadcast, indexes no weight; the operands' weights on one axis are joined."""
    first, *others = layouts
    if tuple(first[1]) == tuple(shape) and all(o == first for o in others):
        return first[0]  # one operand, or all alike, of the result's shape: the most common
    axes: list[tuple[Segment, ...]] = []
    for j, n in enumerate(shape):
        found: list[tuple[Segment, ...]] = []
        for layout, operand in layouts:
            k = j - (len(shape) - len(operand))
            if k >= 0 and operand[k] == n:
                found.append(layout[k])
        if len({tuple(size for size, _ in segments) for segments in found}) == 1:
            axes.append(tuple(
                (size, frozenset().union(*(segments[i][1] for segments in found)))
                for i, (size, _) in enumerate(found[0])
            ))  # fmt: skip
        else:  # none, or cut differently: one stretch indexing every operand's weights
            names = frozenset(w for segments in found for size, ws in segments for w in ws)
            axes.append(((n, names if n > 1 else _NONE),))
    return tuple(axes)


def indexed(layout: Layout, index: Any, shape: Sequence[int]) -> Layout | None:
    """The layout of ``tensor[index]`` (of ``shape``), for basic indexing (ints, slices,
    None, ...) and one index tensor or list; None for what it does not follow (several index
    tensors, whose result axes torch may move to the front)."""
    items = list(index) if isinstance(index, tuple) else [index]
    advanced = [i for i in items if isinstance(i, torch.Tensor | list) and not _is_int(i)]
    if len(advanced) > 1:
        return None
    taken = sum(_width(i) for i in items)
    if Ellipsis in items:
        at = next(k for k, i in enumerate(items) if i is Ellipsis)
        items[at : at + 1] = [slice(None)] * (len(layout) - taken)
    else:
        items += [slice(None)] * (len(layout) - taken)
    sources: list[int | None] = []
    starts: list[tuple[int, int] | None] = []
    picks: list[tuple[frozenset[str], frozenset[str]]] = []
    axis = 0
    for item in items:
        if item is None:
            sources.append(None)
            starts.append(None)
        elif _is_int(item):  # the axis goes: its weights tagged by the unit taken
            size = _size(layout[axis])
            picks.append((_names(layout[axis]), _selection_tag(axis, int(item) % max(size, 1))))
            axis += 1
        elif isinstance(item, slice):
            sources.append(axis)
            start, _, step = item.indices(_size(layout[axis]))
            starts.append((start, step))
            axis += 1
        else:  # an index tensor or list: its axes in place of the one it takes
            looked_up = torch.as_tensor(item)
            if looked_up.dtype == torch.bool and looked_up.dim() != 1:
                return None  # a mask over several axes (or none): not followed
            sources += [axis] * looked_up.dim()
            starts += [LOOKED_UP] * looked_up.dim()
            axis += 1
    if len(sources) != len(shape):
        return None
    result = moved(layout, sources, shape, starts)
    for names, tag in picks:  # as :func:`dropped` tags them
        result = _tagged(result, names, tag)
    return result


def _is_int(item: Any) -> bool:
    if isinstance(item, torch.Tensor):
        return item.dim() == 0 and not item.is_floating_point() and item.dtype != torch.bool
    return isinstance(item, int) and not isinstance(item, bool)


def _width(item: Any) -> int:
    """How many of the tensor's axes an index item takes (a mask: one, as followed)."""
    return 0 if item is None or item is Ellipsis else 1
