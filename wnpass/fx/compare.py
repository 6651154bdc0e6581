"""Compare what a forward returned before a rewrite with what it returns after.

A forward's result is read as its leaves, each with its path in the result (``output``,
``output[1]``, ``output['logits']``, ``output.past[0]``): tensors and plain values (numbers,
strings, None), through tuples, lists, dicts, dataclasses and objects' attributes (a cache
object's tensors). The results match when they have the same paths, each tensor the same dtype
and shape with values within the tolerance (:func:`max_rel_error`), and each plain value the
same type and value (a float within the tolerance, as a 0-d tensor; a NumPy array as a
tensor). Nothing is left out: a tensor returned twice is a leaf at each of its paths, a leaf
of a type wnpass cannot read into (a function, a slotted object) is compared by its type, and
a result nested deeper than :data:`MAX_DEPTH` is a difference.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["MAX_DEPTH", "Leaf", "max_rel_error", "output_changes", "result_leaves"]

MAX_DEPTH = 16  # containers followed into a result
_NAMED = 3  # changed leaves a report names; the rest are counted

Leaf = tuple[str, Any]  # (its path in the result, a tensor or a plain value)

_PLAIN = (type(None), bool, int, float, complex, str, bytes)


class _TooDeep:
    """The leaf at a path nested deeper than MAX_DEPTH: never equal to anything."""

    def __repr__(self) -> str:
        return f"containers nested deeper than {MAX_DEPTH}"


@dataclasses.dataclass(frozen=True)
class _Opaque:
    """A leaf of a type wnpass cannot read into (a function, a slotted object): only its type
    is compared."""

    type_name: str

    def __repr__(self) -> str:
        return f"a {self.type_name}"


def result_leaves(value: Any) -> list[Leaf]:
    """Every leaf of a forward's result (module docstring), in the result's order, each tensor
    detached and copied (a buffer the forward returns and changes in place on its next run
    stays what it was). A set is walked in its iteration order; a container inside itself is
    walked once on each path."""
    leaves: list[Leaf] = []
    on_path: set[int] = set()

    def walk(item: Any, path: str, depth: int) -> None:
        if isinstance(item, torch.Tensor):
            leaves.append((path, item.detach().clone()))
            return
        if isinstance(item, np.ndarray) and item.dtype != object:
            leaves.append((path, torch.from_numpy(item.copy())))
            return
        if isinstance(item, _PLAIN):
            leaves.append((path, item))
            return
        if id(item) in on_path:  # a cycle: its contents are on the path already
            return
        if depth >= MAX_DEPTH:
            leaves.append((path, _TooDeep()))
            return
        on_path.add(id(item))
        if isinstance(item, Mapping):
            for key in item:
                walk(item[key], f"{path}[{key!r}]", depth + 1)
        elif isinstance(item, list | tuple | set | frozenset):
            for i, element in enumerate(item):
                walk(element, f"{path}[{i}]", depth + 1)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            for field in dataclasses.fields(item):
                walk(getattr(item, field.name, None), f"{path}.{field.name}", depth + 1)
        elif hasattr(item, "__dict__") and not isinstance(item, nn.Module | type):
            for name, element in vars(item).items():  # a cache object: its tensors
                walk(element, f"{path}.{name}", depth + 1)
        else:
            leaves.append((path, _Opaque(type(item).__qualname__)))
        on_path.discard(id(item))

    walk(value, "output", 0)
    return leaves


def max_rel_error(after: Sequence[Leaf], before: Sequence[Leaf]) -> float:
    """Largest |after - before| over every tensor (and float), relative to that leaf's largest
    magnitude.

    ``inf`` when the results cannot be the same: other paths, a dtype or shape changed, a
    non-float value that differs, or NaN/Inf anywhere but where ``before`` had the same value
    (a weight norm that computes 0/0 turns outputs NaN; subtracting NaN and taking a Python
    ``max`` would report 0). The difference is taken over the finite elements only.

    NaN when not one element could be compared (no leaf, every tensor empty, or NaN/Inf
    everywhere before and after): the rewrite is then not shown to keep anything, and 0 would
    read as "equal".
    """
    if [path for path, _ in after] != [path for path, _ in before]:
        return math.inf
    errors = [_leaf_error(a, b)[0] for (_, a), (_, b) in zip(after, before, strict=True)]
    compared = [error for error in errors if error is not None]
    return max(compared) if compared else math.nan


def output_changes(after: Sequence[Leaf], before: Sequence[Leaf], rtol: float) -> str:
    """Where the results differ beyond ``rtol`` (:func:`max_rel_error`'s rule), in words:
    ``output[1] (int64 2x9x1000): 7 of 18000 values differ``, ``output[0] (float32 4): max
    relative difference 5.00e-01 > tolerance 1e-05``; empty when nowhere."""
    paths_after, paths_before = [p for p, _ in after], [p for p, _ in before]
    if paths_after != paths_before:
        return _structure_change(paths_after, paths_before)
    changes = []
    for (path, a), (_, b) in zip(after, before, strict=True):
        error, detail = _leaf_error(a, b)
        if error is not None and not error <= rtol:
            held = f" > tolerance {rtol:.0e}" if math.isfinite(error) else ""
            changes.append(f"{path} ({_kind(b)}): {detail}{held}")
    more = len(changes) - _NAMED
    return "; ".join(changes[:_NAMED]) + (f"; {more} more" if more > 0 else "")


def _structure_change(after: list[str], before: list[str]) -> str:
    after_set, before_set = set(after), set(before)
    gone = [path for path in before if path not in after_set]
    new = [path for path in after if path not in before_set]
    if gone or new:
        parts = ([f"no {', '.join(gone[:_NAMED])}"] if gone else []) + (
            [f"{', '.join(new[:_NAMED])} new"] if new else []
        )
        return f"the forward's result changed: {'; '.join(parts)}"
    return "the forward's result holds its parts in another order"


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(str(n) for n in tensor.shape) or "scalar"


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{_dtype(value)} {_shape(value)}"
    return type(value).__name__


def _leaf_error(a: Any, b: Any) -> tuple[float | None, str]:
    """As :func:`max_rel_error` for one leaf (None when it has no element to compare), and how
    it differs, in words."""
    if isinstance(a, float) and isinstance(b, float):  # rounding as a tensor's element's
        a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return _tensor_error(a, b)
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor) or type(a) is not type(b):
        return math.inf, f"{_kind(a)} now"
    if isinstance(b, _TooDeep) or a != b:
        return math.inf, f"{b!r} before, {a!r} now"
    return 0.0, ""


def _tensor_error(a: torch.Tensor, b: torch.Tensor) -> tuple[float | None, str]:
    if a.dtype != b.dtype:
        return math.inf, f"dtype {_dtype(a)} now"
    if a.shape != b.shape:
        return math.inf, f"shape {_shape(a)} now"
    if b.is_complex():  # each element as its real and imaginary parts
        a, b = torch.view_as_real(a.resolve_conj()), torch.view_as_real(b.resolve_conj())
    if not b.is_floating_point():
        if differ := int((a != b).sum()):
            return math.inf, f"{differ} of {b.numel()} values differ"
        return (0.0 if b.numel() else None), ""
    a64, b64 = a.double(), b.double()
    finite = torch.isfinite(b64)
    if moved := int((finite != torch.isfinite(a64)).sum()):
        return math.inf, f"NaN/Inf appeared or went away at {moved} of {b.numel()} values"
    same = torch.isclose(a64[~finite], b64[~finite], rtol=0.0, atol=0.0, equal_nan=True)
    if changed := int((~same).sum()):
        return math.inf, f"NaN became Inf, or Inf changed sign, at {changed} values"
    if not finite.any():
        return None, ""
    diff = float((a64[finite] - b64[finite]).abs().max())
    error = diff / max(float(b64[finite].abs().max()), 1e-30)
    return error, f"max relative difference {error:.2e}"
