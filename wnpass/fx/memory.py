"""Which bytes of memory tensors hold: the stretch each one's elements lie in
(:func:`span`), the tensors of a model that lie in a stretch (:class:`Spans`, by bisection), and,
exactly, which bytes they share (:class:`Bytes`): a strided view (every other row, a column)
holds only some bytes of its stretch, and a view in another dtype holds the same bytes as its
base in another number of elements. A tensor subclass that wraps others (:func:`is_wrapper`)
holds no bytes itself: the tensors it wraps hold them (:func:`held`)."""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from wnpass.fx.arguments import is_lazy

__all__ = [
    "MAX_RUNS",
    "Bytes",
    "Spans",
    "held",
    "is_wrapper",
    "span",
    "sparse_parts",
    "wrapped",
]


def is_wrapper(tensor: torch.Tensor) -> bool:
    """A tensor subclass that wraps others (its own ``__torch_dispatch__``: a DTensor, a
    torchao quantized weight, a ``TwoTensor``, a ``MaskedTensor``): it holds no bytes itself
    (its ``data_ptr()`` is 0)."""
    return type(tensor).__torch_dispatch__ is not torch.Tensor.__torch_dispatch__


def wrapped(tensor: torch.Tensor) -> tuple[list[torch.Tensor], tuple[object, ...]] | None:
    """What a tensor subclass that wraps others (:func:`is_wrapper`) holds, by its
    ``__tensor_flatten__``: the tensors it wraps, and the rest (its metadata, and the other
    attributes it names: a DTensor's device mesh, t227); None for a tensor that wraps none,
    or one that does not say what it wraps (a ``MaskedTensor``)."""
    if not is_wrapper(tensor):
        return None
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is None:
        return None
    names, metadata = flatten()
    inner = [getattr(tensor, name) for name in names]
    tensors = [item for item in inner if isinstance(item, torch.Tensor)]
    return tensors, (metadata, *(item for item in inner if not isinstance(item, torch.Tensor)))


# The tensors a compressed sparse tensor of each layout is made of (indices, then values)
_COMPRESSED_PARTS = {
    torch.sparse_csr: ("crow_indices", "col_indices", "values"),
    torch.sparse_bsr: ("crow_indices", "col_indices", "values"),
    torch.sparse_csc: ("ccol_indices", "row_indices", "values"),
    torch.sparse_bsc: ("ccol_indices", "row_indices", "values"),
}


def sparse_parts(tensor: torch.Tensor) -> list[torch.Tensor] | None:
    """The tensors a sparse tensor is made of, as stored, its values last (views of them:
    writing one writes the sparse tensor); None for another tensor."""
    if tensor.layout == torch.sparse_coo:
        return [tensor._indices(), tensor._values()]
    names = _COMPRESSED_PARTS.get(tensor.layout)
    return None if names is None else [getattr(tensor, name)() for name in names]


def held(tensor: torch.Tensor) -> list[torch.Tensor]:
    """The strided tensors whose bytes ``tensor`` holds: itself; a sparse tensor's indices and
    values (t231: a sparse buffer over a layer's bias was no sharing); a nested tensor's
    values (t234: a strided one over a bias); those a wrapper wraps, however deep (t227: a
    wrapper buffer over a bias: the bias given back over the one data init set)."""
    found, stack = [], [tensor]
    while stack:
        item = stack.pop()
        if (parts := wrapped(item)) is not None:
            stack.extend(parts[0])
        elif (pieces := sparse_parts(item)) is not None:
            stack.extend(pieces)
        elif item.is_nested:  # a strided one (a jagged one is a wrapper): its parts, views
            stack.extend(item.unbind())
        else:
            found.append(item)
    return found


def span(tensor: torch.Tensor) -> tuple[int, int] | None:
    """The addresses from ``tensor``'s first byte up to after its last (a view's, an alias's
    through another storage object: ``torch.from_numpy``, DLPack); None for one without
    elements or without strided memory of its own (meta, sparse, nested, a lazy module's not
    initialized yet, a tracer's fake tensor, :func:`is_wrapper`: all at 0, they were taken for
    one memory, t226)."""
    try:
        if is_lazy(tensor) or is_wrapper(tensor) or tensor.is_meta or tensor.is_nested:
            return None
        if tensor.layout != torch.strided or not tensor.numel():
            return None
        last = sum((n - 1) * step for n, step in zip(tensor.shape, tensor.stride(), strict=True))
        start = tensor.data_ptr()
    except (RuntimeError, NotImplementedError):  # a FakeTensor has no data
        return None
    return start, start + (int(last) + 1) * tensor.element_size()


def _dense(tensor: torch.Tensor) -> bool:
    """Whether ``tensor``'s elements fill its :func:`span`, each byte once (contiguous in some
    order of its dimensions): then its span is its bytes."""
    expected = 1
    for step, size in sorted((step, size) for size, step in _dims(tensor)):
        if step != expected:
            return False
        expected *= size
    return True


def _dims(tensor: torch.Tensor) -> list[tuple[int, int]]:
    """(size, stride) of each dimension with more than one element."""
    return [(n, s) for n, s in zip(tensor.shape, tensor.stride(), strict=True) if n > 1]


class Spans:
    """Tensors by where they lie in memory (a wrapper's by those it wraps, :func:`held`), per
    device, sorted by address: the ones that overlap a tensor's :func:`span` are found by
    bisection (comparing each layer with every
    buffer was quadratic: 13 s for 1000 layers beside as many BatchNorms, t219)."""

    def __init__(self, named: Iterable[tuple[str, torch.Tensor]]) -> None:
        by_device: dict[torch.device, list[tuple[int, int, int]]] = {}
        self._named: list[tuple[str, torch.Tensor]] = []
        for name, outer in named:
            for tensor in held(outer) if isinstance(outer, torch.Tensor) else ():
                if (stretch := span(tensor)) is not None:
                    by_device.setdefault(tensor.device, []).append((*stretch, len(self._named)))
                    self._named.append((name, tensor))
        # per device: the spans by start, the starts, and the furthest end up to each
        self._sorted: dict[torch.device, tuple[list[tuple[int, int, int]], list[int], list[int]]]
        self._sorted = {}
        for device, spans in by_device.items():
            spans.sort()
            reach = list(itertools.accumulate((end for _, end, _ in spans), max))
            self._sorted[device] = (spans, [start for start, _, _ in spans], reach)

    def overlapping(self, tensor: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """The names and tensors whose span overlaps ``tensor``'s (itself too): every one
        that may share bytes with it (:class:`Bytes` says which do)."""
        stretch = span(tensor)
        if stretch is None or tensor.device not in self._sorted:
            return []
        start, end = stretch
        spans, starts, reach = self._sorted[tensor.device]
        found = []
        at = bisect.bisect_left(starts, end) - 1  # the last one that starts before the end
        while at >= 0 and reach[at] > start:  # one of these ends after the start
            if spans[at][1] > start:
                found.append(self._named[spans[at][2]])
            at -= 1
        return found[::-1]


# The most runs of bytes a strided tensor is followed by (16 MiB of addresses): one with more
# (every other element of a huge flat parameter) stands for its span where that says more
# sharing, and for none of its bytes where that says less (:class:`Bytes`).
MAX_RUNS = 1 << 20


class Bytes:
    """The exact bytes tensors hold, compared as sets: each as sorted disjoint runs of
    addresses, one for a :func:`_dense` tensor, one per row for a column or every other row of
    a table, computed once per tensor (the tensors are held: an id is only theirs while they
    live). A tensor of more than :data:`MAX_RUNS` runs answers each question the safe way
    (sharing a byte where its span does; holding, covering, nothing exactly), so that a layer
    is declined, never a sharing missed (t227: masks a byte per byte of the memory took
    minutes over a 100 MB flat parameter)."""

    def __init__(self) -> None:
        self._runs: dict[int, tuple[torch.Tensor, _Runs | None]] = {}

    def meet(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        """Whether ``a`` and ``b`` share a byte (where one is too large to follow: whether their
        spans overlap)."""
        sa, sb = span(a), span(b)
        if sa is None or sb is None or not (sa[0] < sb[1] and sb[0] < sa[1]):
            return False
        ra, rb = self.runs(a), self.runs(b)
        if ra is None or rb is None:
            return True
        small, large = (ra, rb) if len(ra[0]) <= len(rb[0]) else (rb, ra)
        at = np.searchsorted(large[1], small[0], side="right")  # the first run ending after
        inside = at < len(large[0])
        return bool(np.any(large[0][at[inside]] < small[1][inside]))

    def strictly_within(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        """Whether every byte of ``a`` is ``b``'s and ``b`` has more (a view of the same bytes
        in another dtype is no part of it)."""
        sa, rb = span(a), self.runs(b)
        if sa is None or rb is None:
            return False
        ra = self.runs(a) or _one_run(sa)  # its span holds every byte it has
        count_a = int((ra[1] - ra[0]).sum())
        return _within(ra, rb) and count_a < int((rb[1] - rb[0]).sum())

    def covered(self, tensor: torch.Tensor, parts: Sequence[torch.Tensor]) -> bool:
        """Whether every byte of ``tensor`` is one of ``parts``'s (a part too large to follow
        covers none)."""
        whole = span(tensor)
        if whole is None:
            return True
        held = [r for p in parts if (r := self.runs(p)) is not None]
        if not held:
            return False
        union = _merged(np.concatenate([r[0] for r in held]), np.concatenate([r[1] for r in held]))
        return _within(self.runs(tensor) or _one_run(whole), union)

    def runs(self, tensor: torch.Tensor) -> _Runs | None:
        """``tensor``'s bytes as sorted disjoint runs (starts, ends); None where it has no span
        or more than :data:`MAX_RUNS` runs."""
        key = id(tensor)
        if (cached := self._runs.get(key)) is not None and cached[0] is tensor:
            return cached[1]
        runs = _runs_of(tensor)
        self._runs[key] = (tensor, runs)
        return runs


_Runs = tuple[np.ndarray, np.ndarray]  # starts and ends of disjoint runs of bytes, sorted


def _one_run(stretch: tuple[int, int]) -> _Runs:
    return np.array([stretch[0]], dtype=np.int64), np.array([stretch[1]], dtype=np.int64)


def _runs_of(tensor: torch.Tensor) -> _Runs | None:
    """The runs of bytes ``tensor``'s elements lie in: its span where it is :func:`_dense`;
    else one run per element of its dimensions but the one of stride 1 (which makes a run of
    its elements), merged where they touch or repeat (stride 0)."""
    stretch = span(tensor)
    if stretch is None:
        return None
    if _dense(tensor):
        return _one_run(stretch)
    size = tensor.element_size()
    dims = sorted((step, n) for n, step in _dims(tensor) if step)  # stride 0 repeats bytes
    run = size
    if dims and dims[0][0] == 1:
        run, dims = dims[0][1] * size, dims[1:]
    if math.prod(n for _, n in dims) > MAX_RUNS:
        return None
    offsets = np.zeros(1, dtype=np.int64)
    for step, n in dims:
        offsets = (offsets[:, None] + np.arange(n, dtype=np.int64)[None, :] * step).ravel()
    starts = np.sort(stretch[0] + offsets * size)
    return _merged(starts, starts + run)


def _merged(starts: np.ndarray, ends: np.ndarray) -> _Runs:
    """Runs sorted and merged where they overlap or touch."""
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    first = np.ones(len(starts), dtype=bool)
    first[1:] = starts[1:] > reach[:-1]
    at = np.flatnonzero(first)
    return starts[at], np.maximum.reduceat(ends, at)


def _within(inner: _Runs, outer: _Runs) -> bool:
    """Whether every run of ``inner`` lies inside one of ``outer``'s (merged: a run cannot
    span two of them)."""
    at = np.searchsorted(outer[1], inner[0], side="right")  # the first run ending after
    if np.any(at >= len(outer[0])):
        return False
    return bool(np.all((outer[0][at] <= inner[0]) & (inner[1] <= outer[1][at])))
