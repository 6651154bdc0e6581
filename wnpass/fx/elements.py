"""Which watched tensors a tensor is, or shares elements with: the one test of a weight held
somewhere else than its module (a buffer, a list, a view kept by the model), used where a
model's attributes are searched (:mod:`wnpass.fx.analyse`), where a forward's operands are
watched (:mod:`wnpass.fx.observe`), and where a forward's state is given back, weights aside
(:mod:`wnpass.fx.attributes`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

import torch

from wnpass.fx.memory import held, span

__all__ = ["Elements"]

K = TypeVar("K", bound=Hashable)

_Storage = tuple[str, int]  # device, address


def _span(tensor: torch.Tensor) -> tuple[_Storage, int, int] | None:
    """Where ``tensor``'s elements lie: its storage and its :func:`~wnpass.fx.memory.span`;
    None for one without elements or storage of its own (meta, sparse, nested, a wrapping
    subclass: their parts have one, :func:`~wnpass.fx.memory.held`; a lazy module's not
    initialized yet, a tracer's fake tensor)."""
    if (stretch := span(tensor)) is None:
        return None
    try:
        storage = (str(tensor.device), tensor.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError):  # no storage to name
        return None
    return storage, *stretch


class Elements(Generic[K]):
    """The elements of some tensors, by key: :meth:`of` says whose a tensor is or shares."""

    def __init__(self, tensors: Mapping[K, torch.Tensor]) -> None:
        self._tensors: list[torch.Tensor] = []  # held: an id is only theirs while they live
        self._ids: dict[int, K] = {}
        self._spans: dict[_Storage, list[tuple[int, int, K]]] = defaultdict(list)
        for key, tensor in tensors.items():
            self.add(key, tensor)

    def add(self, key: K, tensor: torch.Tensor) -> None:
        """Watch ``tensor`` too, under ``key``."""
        self._tensors.append(tensor)
        self._ids[id(tensor)] = key
        for part in held(tensor):  # a wrapper's by what it wraps (t235)
            if (span := _span(part)) is not None:
                storage, low, high = span
                self._spans[storage].append((low, high, key))

    @staticmethod
    def storage_of(tensor: torch.Tensor) -> _Storage:
        """The storage ``tensor``'s elements lie in (its identity where it has none: meta,
        sparse, not initialized), as a key."""
        span = _span(tensor)
        return span[0] if span is not None else ("id", id(tensor))

    def in_memory(self, low: int, high: int) -> list[K]:
        """The keys of the watched CPU tensors with elements in the bytes from address ``low``
        up to ``high`` (a NumPy array's: ``w.detach().numpy()`` shares a weight's memory)."""
        return [
            key
            for (device, _), spans in self._spans.items()
            if device == "cpu"
            for start, end, key in spans
            if start < high and low < end
        ]

    def of(self, tensor: torch.Tensor) -> list[K]:
        """The keys of the watched tensors that ``tensor`` is, or whose elements it shares."""
        if (key := self._ids.get(id(tensor))) is not None:
            return [key]
        span = _span(tensor)
        if span is None:
            return []
        storage, start, end = span
        return [
            key for low, high, key in self._spans.get(storage, ()) if low < end and start < high
        ]
