"""Which bytes of memory tensors hold: the stretch each one's elements lie in
(:func:`span`), the tensors of a model that lie in a stretch (:class:`Spans`, by bisection), and,
exactly, which bytes they share (:class:`Bytes`): a strided view (every other row, a column)
holds only some bytes of its stretch, and a view in another dtype holds the same bytes as its
base in another number of elements."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence

import torch

from wnpass.fx.arguments import is_lazy

__all__ = ["Bytes", "Spans", "is_wrapper", "span"]


def is_wrapper(tensor: torch.Tensor) -> bool:
    """A tensor subclass that wraps others (its own ``__torch_dispatch__``: a DTensor, a
    torchao quantized weight, a ``TwoTensor``, a ``MaskedTensor``): it holds no bytes itself
    (its ``data_ptr()`` is 0)."""
    return type(tensor).__torch_dispatch__ is not torch.Tensor.__torch_dispatch__


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
    """Tensors by where they lie in memory, per device, sorted by address: the ones that
    overlap a tensor's :func:`span` are found by bisection (comparing each layer with every
    buffer was quadratic: 13 s for 1000 layers beside as many BatchNorms, t219)."""

    def __init__(self, named: Iterable[tuple[str, torch.Tensor]]) -> None:
        by_device: dict[torch.device, list[tuple[int, int, int]]] = {}
        self._named: list[tuple[str, torch.Tensor]] = []
        for name, tensor in named:
            if isinstance(tensor, torch.Tensor) and (stretch := span(tensor)) is not None:
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


class Bytes:
    """The exact bytes some tensors of one device and one stretch of memory (each overlapping
    another's span) hold, compared as sets; a tensor not among them holds none. Where each of them
    is :func:`_dense`, its span is its set and they compare as intervals; else as masks over
    the stretch of memory they lie in (a byte per byte: only a model that views a parameter
    by strides pays it)."""

    def __init__(self, tensors: Sequence[torch.Tensor]) -> None:
        self._tensors = list(tensors)  # held: an id is only theirs while they live
        spans = {id(tensor): span(tensor) for tensor in tensors}
        self._spans = {key: stretch for key, stretch in spans.items() if stretch is not None}
        self._intervals = all(_dense(tensor) for tensor in tensors if id(tensor) in self._spans)
        self._start = min((start for start, _ in self._spans.values()), default=0)
        self._end = max((end for _, end in self._spans.values()), default=0)
        self._masks: dict[int, torch.Tensor] = {}

    def meet(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        """Whether ``a`` and ``b`` share a byte."""
        if (sa := self._spans.get(id(a))) is None or (sb := self._spans.get(id(b))) is None:
            return False
        if not (sa[0] < sb[1] and sb[0] < sa[1]):
            return False
        return self._intervals or bool(self._over(self._mask([b]), a).any())

    def strictly_within(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        """Whether every byte of ``a`` is ``b``'s and ``b`` has more (a view of the same bytes
        in another dtype is no part of it)."""
        if (sa := self._spans.get(id(a))) is None or (sb := self._spans.get(id(b))) is None:
            return False
        if not sb[0] <= sa[0] <= sa[1] <= sb[1]:
            return False
        if self._intervals:
            return sa[1] - sa[0] < sb[1] - sb[0]
        inside = bool(self._over(self._mask([b]), a).all())
        return inside and self._count(a) < self._count(b)

    def covered(self, tensor: torch.Tensor, parts: Sequence[torch.Tensor]) -> bool:
        """Whether every byte of ``tensor`` is one of ``parts``'s."""
        if (whole := self._spans.get(id(tensor))) is None:
            return True
        if not self._intervals:
            return bool(self._over(self._mask(parts), tensor).all())
        covered = whole[0]
        for start, end in sorted(s for p in parts if (s := self._spans.get(id(p))) is not None):
            if start > covered:
                return False
            covered = max(covered, end)
        return covered >= whole[1]

    def _count(self, tensor: torch.Tensor) -> int:
        return int(self._mask([tensor]).sum())

    def _mask(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """A byte of the stretch for each byte: True where one of ``tensors`` holds it."""
        key = id(tensors[0]) if len(tensors) == 1 else None
        if key is not None and (mask := self._masks.get(key)) is not None:
            return mask
        mask = torch.zeros(self._end - self._start, dtype=torch.bool)
        for tensor in tensors:
            if id(tensor) in self._spans:
                self._over(mask, tensor).fill_(True)
        if key is not None:
            self._masks[key] = mask
        return mask

    def _over(self, mask: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
        """``mask`` seen as ``tensor``'s bytes: an element of it per byte of ``tensor``'s."""
        size = tensor.element_size()
        return mask.as_strided(
            (*tensor.shape, size),
            (*(step * size for step in tensor.stride()), 1),
            tensor.data_ptr() - self._start,
        )
