"""Weights that a layer op turns into another layer's weight with their units spread.

CondConv computes its kernels as ``routing @ W`` and reads them, viewed, as a convolution's
weight: each unit of ``W`` (a column) lands on several of the kernels' axes, so no filter of the
convolution is one unit of ``W`` and weight norm per unit of ``W`` is not what its layer reads.
:class:`MixedWeights` keeps, for each tensor a layer op computed from weights, where those
weights' units go (a :class:`wnpass.fx.units.Layout`), follows it through the ops listed in
:meth:`MixedWeights._followed` (views, permutes, slices, selections, joins, repeats, reorders,
broadcasting arithmetic, anything that keeps each element where it was), and says which weights
a layer reads spread over several of its weight's axes. Any other op stops the following.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch

from wnpass.fx import units
from wnpass.fx.calls import (
    CONV_T,
    ELEMENTWISE,
    IDENTITY,
    LABELS,
    LAYER_OPS,
    PERMUTES,
    REORDERS,
    RESHAPE,
    RNN,
    SCALINGS,
    SLICE_DROP,
    SLICE_KEEP,
    argument,
    axes_arg,
    dim,
    reordered_axes,
    rolled_flat,
)
from wnpass.fx.forward import tensors_in

__all__ = ["MIXED", "MIXED_TRACED", "MixedWeights"]

logger = logging.getLogger(__name__)

MIXED = (
    "mixed into another layer's weight ({op} of it, then {layer}, its units split across "
    "that weight's axes {axes}: none of them one filter, as in CondConv's routing @ W)"
)
# The same found by tracing (no example inputs): which axes the units reach is not known, so
# any layer reading the product as its weight declines it
MIXED_TRACED = (
    "mixed into another layer's weight ({op} of it, then {layer} reads it as its weight, as "
    "in CondConv's routing @ W; traced without example inputs, which would tell whether its "
    "units stay whole filters)"
)
# Layer ops whose result has a units' axis (the last; a convolution's channels): what one
# computes from a weight may be read as another layer's weight
_MIXING = LAYER_OPS - RNN - {"multi_head_attention_forward", "_native_multi_head_attention"}
# A layer's weight slot (by position and keyword), where a tensor another layer op computed
# from a weight, its units split across the slot's axes, mixes that weight into this one's
_SLOTS = {
    **dict.fromkeys(("linear", "conv1d", "conv2d", "conv3d", "convolution"), (1, "weight")),
    **dict.fromkeys(tuple(CONV_T), (1, "weight")),
    "bilinear": (2, "weight"),
}
# Matrix products: (position, keyword) of the left and right operand
_PRODUCTS = {
    **dict.fromkeys(("matmul", "__matmul__"), ((0, "input"), (1, "other"))),
    "__rmatmul__": ((1, "other"), (0, "self")),
    **dict.fromkeys(("mm", "bmm"), ((0, "input"), (1, "mat2"))),
    "mv": ((0, "input"), (1, "vec")),
    "addmm": ((1, "mat1"), (2, "mat2")),
    **dict.fromkeys(("baddbmm", "addbmm"), ((1, "batch1"), (2, "batch2"))),
    "addmv": ((1, "mat"), (2, "vec")),
}
# Ops through which such a tensor's elements are still the ones computed (:mod:`.units`):
# views, selections and splits of it (one sample's kernels, ``k[i]``, ``k.unbind(0)``), and
# broadcasting arithmetic with it (a scaling, LoRA's ``W + (B @ A).view(W.shape)``)
_ARITHMETIC = {
    "add", "__add__", "__radd__", "add_", "__iadd__", "sub", "subtract", "__sub__", "__rsub__",
    "sub_", "__isub__", "mul_", "__imul__", "__rtruediv__", "div_", "__itruediv__",
} | SCALINGS  # fmt: skip
_JOINS_ALONG = {"cat", "concat", "concatenate", "stack", "hstack"}
# Reorders along axes besides :data:`~wnpass.fx.calls.REORDERS`
_MORE_REORDERS = {"fft_fftshift", "fft_ifftshift", "channel_shuffle", "native_channel_shuffle"}
# Permutations of axes besides :data:`~wnpass.fx.calls.PERMUTES` (in place, conjugating,
# rotating): their order read from the same op on a probe
_MORE_PERMUTES = {"t_", "transpose_", "swapaxes_", "swapdims_", "mH", "H", "adjoint", "rot90"}
# Ops that keep a tensor's shape but move its elements across units (sorting along an axis
# sorts each row its own way; ``copy_`` replaces them): no layout follows (t274)
_MOVES = {"sort", "msort", "argsort", "gather", "take_along_dim", "copy_", "set_", "resize_"}
_MOVES |= {"scatter", "scatter_", "scatter_add", "scatter_add_", "scatter_reduce"}
_MOVES |= {"scatter_reduce_", "index_copy", "index_copy_", "index_add", "index_add_", "put"}
_MOVES |= {"put_", "index_put", "index_put_", "masked_scatter", "masked_scatter_", "cummax"}
_MOVES |= {"cummin"}

# A tensor a layer op computed from weights: the op's label and where the weights' units are
_Entry = tuple[str, units.Layout]


class MixedWeights:
    """The tensors layer ops computed from weights, each with where those weights' units are.

    Empty (false) until a layer op computes one, so that a model without any costs one check
    per op.
    """

    def __init__(self) -> None:
        self.layouts: dict[int, tuple[weakref.ref[torch.Tensor], _Entry]] = {}

    def __bool__(self) -> bool:
        return bool(self.layouts)

    def of(self, value: Any) -> _Entry | None:
        """The op that computed ``value`` from weights and where their units are; None for
        any other value."""
        if not isinstance(value, torch.Tensor):
            return None
        entry = self.layouts.get(id(value))
        return entry[1] if entry is not None and entry[0]() is value else None

    def computed(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any,
        weights_of: Callable[[Any], list[str]],
    ) -> None:  # fmt: skip
        """Keep ``result`` of op ``name``, a layer op that read weights (``weights_of``: the
        weights a value is, or is derived from)."""
        if name in _MIXING and isinstance(result, torch.Tensor) and result.dim() > 0:
            layout = units.of_result(result.shape, _units(name, args, kwargs, weights_of))
            self.layouts[id(result)] = (weakref.ref(result), (LABELS.get(name, name), layout))

    def follow(
        self, func: Callable[..., Any], name: str, args: tuple[Any, ...],
        kwargs: dict[str, Any], result: Any,
    ) -> list[tuple[str, str, str]]:  # fmt: skip
        """Follow op ``name`` applied to tensors layer ops computed, and return the weights it
        mixes into its own, as (weight, op, reason): where it is a layer reading one such
        tensor as its weight with a weight's units split across that weight's axes
        (CondConv: ``F.conv2d(x, (routing @ W).view(...))``, t261)."""
        if (slot := _SLOTS.get(name)) is not None:
            if (entry := self.of(argument(args, kwargs, *slot))) is None:
                return []
            op, layout = entry
            layer = LABELS.get(name, f"F.{name}")
            return [
                (weight, op, MIXED.format(op=op, layer=layer, axes=_listed(axes)))
                for weight, axes in units.spread(layout).items()
                if len(axes) > 1  # a weight's units on several of this one's axes
            ]
        values = [*args, *kwargs.values()]
        sources = [(t, e) for v in values for t in tensors_in(v) if (e := self.of(t))]
        if not sources:
            return []
        op = sources[0][1][0]
        for tensor in tensors_in(result):
            try:
                followed = self._followed(func, name, args, kwargs, sources, tensor)
            except Exception as error:  # an op called in a way not followed: stop there
                logger.debug("did not follow %s of a layer's output: %s", name, error)
                followed = None
            if followed is not None:
                self.layouts[id(tensor)] = (weakref.ref(tensor), (op, followed))
            elif self.of(tensor) is not None:  # changed in place, not followed: no more
                del self.layouts[id(tensor)]  # what it was (``t_()``, t272)
        return []

    def _followed(
        self, func: Callable[..., Any], name: str, args: tuple[Any, ...],
        kwargs: dict[str, Any], sources: list[tuple[torch.Tensor, _Entry]],
        result: torch.Tensor,
    ) -> units.Layout | None:  # fmt: skip
        """The layout of ``result`` of op ``name`` whose operands ``sources`` a layer op
        computed; None where ``name`` is no op it is followed through."""
        source, (_, layout) = sources[0]
        shape, rank = result.shape, len(layout)
        operands = [(entry[1], tensor.shape) for tensor, entry in sources]
        if name in LAYER_OPS:
            return None  # its result is its own (:meth:`computed`)
        if name in _ARITHMETIC or name in ELEMENTWISE:  # broadcasting, with anything
            return units.elementwise(operands, shape)
        if name in _JOINS_ALONG:  # cat, stack (the dim along which: torch also takes axis=)
            pieces = list(tensors_in(args[0]))
            if name == "hstack":
                along = 1 if pieces[0].dim() > 1 else 0
            else:
                along = kwargs.get("axis", dim(args, kwargs))
            along %= result.dim()
            tracked = [None if (e := self.of(t)) is None else e[1] for t in pieces]
            if name == "stack":  # each at its index along a new axis
                tracked = [None if t is None else (*t[:along], (), *t[along:]) for t in tracked]
                sizes = [1] * len(pieces)
            else:
                sizes = [t.shape[along] for t in pieces]
            return units.joined(tracked, sizes, shape, along)
        if source is not args[0]:
            return None
        if name in RESHAPE or name in ("squeeze_", "unsqueeze_"):
            return units.reshaped(layout, shape)
        if name in PERMUTES or name in _MORE_PERMUTES:
            # the order, from the same op on sizes that tell axes apart
            probe = torch.empty(tuple(range(2, rank + 2)), device="meta")
            order = func(probe, *args[1:], **kwargs).shape
            moved = units.moved(layout, [n - 2 for n in order], shape)
            if name == "rot90":  # and flips along one of its two axes: both said reordered
                dims = kwargs.get("dims", args[2] if len(args) > 2 else (0, 1))
                return units.reordered(moved, axes_arg(dims, rank))
            return moved
        if name == "expand":
            return units.elementwise(operands[:1], shape)
        if name in ("repeat", "tile"):
            return units.repeated(layout, shape)
        if name == "index_select" and result.dim() == rank:
            along = dim(args, kwargs) % rank
            index = argument(args, kwargs, 2, "index")
            if isinstance(index, torch.Tensor) and index.dim() <= 1 and index.numel() <= 1 << 16:
                return units.picked(layout, along, index.reshape(-1).tolist(), shape)
            return units.moved(layout, range(rank), shape)
        if result.dim() == rank and name in IDENTITY | SLICE_KEEP:
            return units.moved(layout, range(rank), shape, _starts(source, result))
        if name in SLICE_DROP:
            along = dim(args, kwargs) % rank
            return units.dropped(layout, along, _offset(source, result, along))
        if name == "__getitem__" and len(args) > 1:
            return units.indexed(layout, args[1], shape)
        if name in _MOVES or (name == "roll" and rolled_flat(args, kwargs)):
            return None  # elements moved across units: no layout follows
        if name in REORDERS | _MORE_REORDERS:  # each element on its axis, in another order
            return units.reordered(layout, reordered_axes(name, args, kwargs, rank))
        if tuple(result.shape) == tuple(source.shape):  # each value where it was: an
            # activation, a flip, a masked kernel (``masked_fill(_)``, ``clamp(_)(min=t)``,
            # t274), in place or not
            return units.elementwise(operands, shape)
        return None


def _units(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
    weights_of: Callable[[Any], list[str]],
) -> list[tuple[str, int]]:  # fmt: skip
    """The weights of layer op ``name`` and the axis of its result holding each one's units:
    a layer's weight's (a convolution's channels, a linear's last axis, not its bias), a
    matrix product's left operand's rows (``-2``) and right operand's columns (``-1``); for the
    rest (einsum, an embedding), every weight's, the last."""
    if (slot := _SLOTS.get(name)) is not None:
        axis = -1 if name in ("linear", "bilinear") else 1
        return [(w, axis) for w in weights_of(argument(args, kwargs, *slot))]
    if (operands := _PRODUCTS.get(name)) is None:
        values = [*args, *kwargs.values()]
        return [(w, -1) for v in values for t in tensors_in(v) for w in weights_of(t)]
    left, right = (argument(args, kwargs, *operand) for operand in operands)
    matrix = isinstance(right, torch.Tensor) and right.dim() > 1
    pairs = [(w, -1) for w in weights_of(right)] if matrix else []
    if isinstance(left, torch.Tensor) and left.dim() > 1:
        pairs += [(w, -2 if matrix else -1) for w in weights_of(left)]
    return pairs


def _starts(source: torch.Tensor, result: torch.Tensor) -> list[tuple[int, int] | None]:
    """For a view ``result`` of ``source`` with one axis narrowed (a split, a slice), where that
    axis starts in ``source`` and by what step (:func:`_offset`); None for the other axes,
    and for all where it is no such view."""
    changed = [j for j in range(result.dim()) if result.shape[j] != source.shape[j]]
    starts: list[tuple[int, int] | None] = [None] * result.dim()
    if len(changed) == 1:
        (j,) = changed
        stride = source.stride(j)
        start = _offset(source, result, j)
        if start is not None and result.stride(j) % stride == 0:
            starts[j] = (start, result.stride(j) // stride)
    return starts


def _offset(source: torch.Tensor, result: torch.Tensor, axis: int) -> int | None:
    """Where along ``axis`` of ``source`` the view ``result`` starts (a slice's first index,
    the index ``select`` or an ``unbind`` result takes), from their storage offsets; None
    where that does not tell (no view of it, an axis broadcast)."""
    stride = source.stride(axis)
    if result.untyped_storage().data_ptr() != source.untyped_storage().data_ptr() or stride <= 0:
        return None
    offset = result.storage_offset() - source.storage_offset()
    return offset // stride if offset % stride == 0 else None


def _listed(axes: Sequence[int]) -> str:
    """``0, 1 and 2``."""
    words = [str(a) for a in axes]
    return ", ".join(words[:-1]) + f" and {words[-1]}" if len(words) > 1 else "".join(words)
