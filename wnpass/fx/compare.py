"""Compare what a forward returned before a rewrite with what it returns after.

A forward's result is read as its leaves, each at its path in the result, written as the
Python that reads it (``output``, ``output[1]``, ``output['logits']``, ``output.past[0].k``):

- numbers: a tensor (copied as it is when read: a buffer the forward returns and changes in
  place on its next run stays what it was), a NumPy array or scalar of numbers, an
  ``array.array``, a Python float or complex number: within a tolerance
  (:func:`max_rel_error`). A sparse tensor is its layout and shape, its coalesced
  ``indices()`` (exactly: where the nonzeros are) and ``values()``; a nested tensor its
  ``unbind()``; a quantized one its ``dequantize()``; a MaskedTensor its ``get_mask()`` and
  its data where unmasked; a meta tensor, which has no values, its dtype and shape;
- values, by type and equality: ints, bools, strings, bytes, None, classes (a module's as
  before weight norm); values of types with their own equality (Fraction, Decimal, datetime,
  UUID, a path, a range, torch.dtype); a set of such values; a NumPy array of strings, dates
  or bytes;
- the result's shape: each container (tuple, list, dict, deque, namedtuple, dataclass, an
  object whose attributes are read) is a leaf of its type and size, so a part added, dropped
  or reordered, an empty part, a list where there was a tuple, is a difference. An object
  met a second time (a cycle, or one object at two paths) is a leaf naming where it was
  first met; a tensor is not (weight norm computes a weight anew at each read, so a weight
  returned twice is two tensors after the rewrite): it is a leaf at each of its paths.

Objects are read through their attributes (``__dict__`` and ``__slots__``) where their
class is defined outside Python's standard library (a transformers cache, a distribution, a
result class of the user's, a dict subclass's attributes too), and in a namespace. What is
not read is not compared, but for its type, and is named (:func:`uncompared`): a module, a
function, a generator (reading it would use it up), a set of tensors (it has no order to
pair them in), the standard library's objects without equality of their own (a logger's
state is the logging system's, not the model's), a C extension's object with neither.
The walk visits each object once, so its time and memory follow the size of the result.
"""

from __future__ import annotations

import argparse
import array
import builtins
import copy
import dataclasses
import enum
import math
import sys
import types
from collections.abc import Iterator, Mapping, Sequence, Set
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "SCALE_FLOOR",
    "Leaf",
    "below_the_floor",
    "is_shape",
    "kind_of",
    "leaf_difference",
    "max_rel_error",
    "output_changes",
    "result_leaves",
    "result_tensors",
    "same_strides_compacted",
    "uncompared",
    "why_uncompared",
]

# A float leaf is judged relative to its largest magnitude, or to SCALE_FLOOR where that is
# smaller. A statistic near zero (the mean of a normalized activation, ~1e-9) carries the
# rounding of its unit-sized terms, ~1e-7 absolute, which is far from small relative to
# itself. 0.1 is the ratio of check's float32 tolerances (atol 1e-5 to rtol 1e-4): with
# apply's 1e-5, differences below 1e-6 pass anywhere.
SCALE_FLOOR = 0.1
_NAMED = 3  # changed leaves a report names; the rest are counted
_REPR = 60  # characters of a value shown in a message

Leaf = tuple[str, Any]  # (its path in the result, what is compared there)

_SPARSE = {torch.sparse_coo, torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc}
_NAMESPACES = (types.SimpleNamespace, argparse.Namespace)
_VALUES: tuple[type, ...] = (type(None), bool, int, float, complex, str, bytes, range)
_VALUES += (enum.Enum, torch.dtype, torch.device)
_BITS = {torch.bits16: torch.int16}
_BITS |= dict.fromkeys((torch.bits8, torch.bits1x8, torch.bits2x4, torch.bits4x2), torch.uint8)
# Python's own types that name builtins as their module (a C extension's can too)
_BUILTIN_TYPES = {
    t for t in [*vars(builtins).values(), *vars(types).values()] if isinstance(t, type)
}
_NOT_READ = (types.ModuleType, nn.Module, types.GeneratorType, types.CoroutineType)


@dataclasses.dataclass(frozen=True)
class _Shape:
    """A container of the result (or a tensor's form): equal when of the same kind and size."""

    kind: str  # "tuple", "dict", "Cache", "sparse_csr tensor", ...
    size: str

    def __str__(self) -> str:
        return f"{self.kind} of {self.size}"


@dataclasses.dataclass(frozen=True)
class _Alias:
    """An object met before in the walk, at ``path``."""

    path: str

    def __str__(self) -> str:
        return f"the object at {self.path}"


@dataclasses.dataclass(frozen=True)
class _Values:
    """A value compared by type and equality where Python's own ``==`` would not do: a set
    (``{True} == {1}``), a NumPy array of strings, dates or bytes (its bytes)."""

    kind: str
    value: Any
    shown: str = dataclasses.field(compare=False)

    def __str__(self) -> str:
        return _short(self.shown)


@dataclasses.dataclass(frozen=True)
class _Opaque:
    """What wnpass does not read into: compared by its type only, named by
    :func:`uncompared`."""

    kind: str
    why: str

    def __str__(self) -> str:
        return f"a {self.kind}"


def result_leaves(value: Any) -> list[Leaf]:
    """Every leaf of a forward's result (module docstring), in the result's order."""
    return _walked(value, _Walk(copy=True)).leaves


def result_tensors(value: Any) -> list[torch.Tensor]:
    """The tensors among a result's leaves (module docstring), each once, detached, not
    copied."""
    leaves = _walked(value, _Walk(copy=False)).leaves
    unique = {id(leaf): leaf for _, leaf in leaves if isinstance(leaf, torch.Tensor)}
    return list(unique.values())


# Parts nested deeper than this are not read (named as not compared): each part keeps its
# path, whose length grows with its depth, so a result nested 30,000 levels deep took over
# 3 GB to walk (100,000: killed); one 8000 deep, far past Python's own recursion limit, about
# 400 MB.
MAX_DEPTH = 8000


def _walked(value: Any, walk: _Walk) -> _Walk:
    stack: list[tuple[str, Any, int]] = [("output", value, 0)]
    while stack:  # depth first, in the result's order, without recursion
        path, item, depth = stack.pop()
        if depth > MAX_DEPTH:
            why = f"nested more than {MAX_DEPTH} levels deep: not read"
            walk.add(path, _Opaque(_type_name(item), why))
            continue
        stack.extend((part, value, depth + 1) for part, value in reversed(_read(path, item, walk)))
    return walk


@dataclasses.dataclass
class _Walk:
    """What a walk over a result has found. Objects met are kept by id, and kept alive with
    it: a part made on reading (a mapping's computed value, a tensor's ``unbind()``) must not
    free its id for another."""

    copy: bool  # tensors are copied (else only detached)
    leaves: list[Leaf] = dataclasses.field(default_factory=list)
    first: dict[int, tuple[str, Any]] = dataclasses.field(default_factory=dict)
    copies: dict[int, tuple[torch.Tensor, torch.Tensor]] = dataclasses.field(default_factory=dict)

    def add(self, path: str, leaf: Any) -> list[tuple[str, Any]]:
        self.leaves.append((path, leaf))
        return []


def _read(path: str, item: Any, walk: _Walk) -> list[tuple[str, Any]]:
    """Add ``item``'s leaf at ``path`` to the walk; the parts of it to read next."""
    if isinstance(item, torch.Tensor):
        return _read_tensor(path, item, walk)
    if isinstance(item, np.ndarray | np.generic):
        return _read_array(path, item, walk)
    if isinstance(item, array.array) and item.typecode not in "uw":
        return walk.add(path, torch.tensor(np.array(item)))
    if isinstance(item, bytearray | array.array) or (
        _is_value(item) and not isinstance(item, tuple | frozenset)  # containers: read
    ):
        return walk.add(path, copy.copy(item))
    if isinstance(item, type):  # a class: by identity, a module's as before weight norm
        return walk.add(path, _unparametrized(item))
    if isinstance(item, Set):
        return walk.add(path, _read_set(item))
    if isinstance(item, memoryview):
        return walk.add(path, item.tobytes())
    if id(item) in walk.first:
        return walk.add(path, _Alias(walk.first[id(item)][0]))
    kind = _type_name(item)
    try:
        parts = _parts(path, item)
    except Exception as error:  # a mapping whose items cannot be read, say
        return walk.add(path, _Opaque(kind, f"not read: {_error_text(error)}"))
    if parts is None and _has_equality(item) and not callable(item):  # a C type's value
        return walk.add(path, item)
    if parts is None:
        return walk.add(path, _Opaque(kind, _why_not_read(item)))
    walk.first[id(item)] = (path, item)
    walk.add(path, _Shape(kind, str(len(parts))))
    return parts


def _parts(path: str, item: Any) -> list[tuple[str, Any]] | None:
    """The parts of a container or an object read through its attributes, at their paths;
    None for what is neither. A subclass of dict, list or tuple of a class from outside the
    standard library has its attributes read too (those that are not one of its items: a
    ``ModelOutput``'s fields are both)."""
    if isinstance(item, Mapping):
        parts = [(f"{path}[{_key_text(key, i)}]", item[key]) for i, key in enumerate(item)]
    elif isinstance(item, Sequence):
        parts = [(f"{path}[{i}]", element) for i, element in enumerate(item)]
    elif _readable(item):
        return [(f"{path}.{name}", element) for name, element in _attributes(item)]
    else:
        return None
    if not _from_stdlib(type(item)):
        items = {id(value) for _, value in parts}
        attributes = [(name, v) for name, v in _attributes(item) if id(v) not in items]
        parts += [(f"{path}.{name}", value) for name, value in attributes]
    return parts


def _key_text(key: Any, position: int) -> str:
    """A mapping key in a path: its repr where it is a value, else its type and position (a
    module's repr changes when weight norm goes on it; an object's carries its address)."""
    if _is_value(key):
        return _repr(key)
    return f"<{_type_name(key)} key {position}>"


def _unparametrized(cls: type) -> type:
    """A module class as it was before weight norm went on an instance of it (PyTorch's
    parametrization gives the instance a subclass, ``ParametrizedLinear`` of ``Linear``)."""
    bases = cls.__bases__
    if (
        issubclass(cls, nn.Module)
        and len(bases) == 1
        and cls.__name__ == f"Parametrized{bases[0].__name__}"
    ):
        return bases[0]
    return cls


def _type_name(item: Any) -> str:
    """The name of ``item``'s type; a module's as it was before weight norm went on it."""
    cls = type(item)
    if isinstance(item, nn.Module):
        cls = torch.nn.utils.parametrize.type_before_parametrizations(item)
    return cls.__qualname__


def _from_stdlib(cls: type) -> bool:
    """Whether ``cls`` is Python's own: its module is the standard library's, or it is a
    builtin (a C extension's type can name ``builtins`` as its module without being one)."""
    module = str(getattr(cls, "__module__", "")).partition(".")[0]
    if module == "builtins":
        return cls in _BUILTIN_TYPES
    return module in sys.stdlib_module_names


def _repr(value: Any) -> str:
    """``repr(value)``, shortened; what it is where it has none (an int of 5000 digits)."""
    try:
        return _short(repr(value))
    except Exception:
        if isinstance(value, int):
            return f"an int of {len(hex(value)) - 2} hex digits ending {hex(value)[-8:]}"
        return f"a {type(value).__qualname__}"


def _error_text(error: Exception) -> str:
    try:
        return _short(f"{type(error).__name__}: {error}")
    except Exception:
        return type(error).__name__


def _is_value(item: Any) -> bool:
    """Compared by type and ``==``: a Python number, string, bytes or None, an enum member,
    a value of a standard-library or torch type with equality of its own (Fraction, Decimal,
    UUID, a path, a range, torch.dtype/device), a tuple or frozenset of values."""
    if isinstance(item, _VALUES):
        return True
    if isinstance(item, tuple | frozenset):
        return type(item) in (tuple, frozenset) and all(_is_value(e) for e in item)
    if isinstance(item, Sequence | Mapping | Set | torch.Tensor | np.ndarray):
        return False
    ours = _from_stdlib(type(item)) or type(item).__module__.partition(".")[0] == "torch"
    return ours and _has_equality(item) and not callable(item)


def _has_equality(item: Any) -> bool:
    return type(item).__eq__ is not object.__eq__


def _readable(item: Any) -> bool:
    """Read through its attributes: an object of a class from outside the standard library,
    a dataclass, or a namespace; not a module, class, function or generator."""
    if isinstance(item, _NOT_READ) or (callable(item) and not dataclasses.is_dataclass(item)):
        return False
    if isinstance(item, _NAMESPACES) or dataclasses.is_dataclass(item):
        return True
    return not _from_stdlib(type(item)) and any(True for _ in _attributes(item))


def _attributes(item: Any) -> Iterator[tuple[str, Any]]:
    """An object's attributes: its ``__dict__``, then its ``__slots__`` that are set."""
    yield from getattr(item, "__dict__", {}).items()
    for cls in type(item).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name.startswith("__") and not name.endswith("__"):  # a private name, mangled
                name = f"_{cls.__name__.lstrip('_')}{name}"
            if name not in ("__dict__", "__weakref__") and hasattr(item, name):
                yield name, getattr(item, name)


def _why_not_read(item: Any) -> str:
    if isinstance(item, types.GeneratorType | types.CoroutineType):
        return "reading it would use it up"
    if isinstance(item, nn.Module | types.ModuleType) or callable(item):
        return "code, not a value"
    if _from_stdlib(type(item)):
        return "a standard-library object without equality of its own"
    return "no attributes or equality to compare it by"


def _read_set(item: Set[Any]) -> _Values | _Opaque:
    """A set of values as its elements with their types (``{True}`` is not ``{1}``); a set
    holding anything else (a tensor hashes by identity) has no order to pair its elements in."""
    kind = type(item).__qualname__
    if all(_is_value(e) for e in item):
        members = frozenset((type(e), "nan" if _is_nan(e) else e) for e in item)
        return _Values(kind, members, _repr(item))
    return _Opaque(kind, "its elements have no order to be paired in")


def _is_nan(value: Any) -> bool:
    """A float or complex NaN (which is not equal to itself: a set member compared by it)."""
    return isinstance(value, float | complex) and value != value


def _read_tensor(path: str, item: torch.Tensor, walk: _Walk) -> list[tuple[str, Any]]:
    if isinstance(item, torch.masked.MaskedTensor):  # its mask, and its data where unmasked
        data, mask = item.get_data().detach(), item.get_mask()
        walk.add(path, _Shape(f"masked {_dtype(data)} tensor", _shape(data)))
        unmasked = torch.where(mask, data, torch.zeros((), dtype=data.dtype))
        return [(f"{path}.get_mask()", mask), (f"{path}.get_data()", unmasked)]
    tensor = item.detach()
    kind = f"{_dtype(tensor)} tensor"
    if tensor.is_nested:
        parts = tensor.unbind()
        walk.add(path, _Shape(f"nested {kind}", str(len(parts))))
        return [(f"{path}.unbind()[{i}]", part) for i, part in enumerate(parts)]
    if tensor.layout in _SPARSE:
        layout = str(tensor.layout).removeprefix("torch.")
        try:
            coo = tensor.to_sparse_coo().coalesce()
        except RuntimeError as error:
            return walk.add(path, _Opaque(f"{layout} {kind}", f"not read: {error}"))
        walk.add(path, _Shape(f"{layout} {kind}", _shape(tensor)))
        return [(f"{path}.indices()", coo.indices()), (f"{path}.values()", coo.values())]
    if tensor.is_quantized:
        walk.add(path, _Shape(f"quantized {kind}", _shape(tensor)))
        return [(f"{path}.dequantize()", tensor.dequantize())]
    if tensor.is_meta:  # no values: its dtype and shape are what there is
        return walk.add(path, _Shape(f"meta {kind}", _shape(tensor)))
    if tensor.layout != torch.strided:
        return walk.add(path, _Opaque(f"{tensor.layout} tensor", "a layout wnpass cannot read"))
    if id(item) not in walk.copies:
        walk.copies[id(item)] = (item, _copy(tensor) if walk.copy else tensor)
    return walk.add(path, walk.copies[id(item)][1])


def _copy(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of ``tensor`` that takes the memory of its distinct elements: an expanded view
    (``x.expand(40000, 40000)``: one element) stays expanded over a copy of what it expands."""
    compact = tensor
    for dim in range(tensor.dim()):
        if tensor.stride(dim) == 0 and tensor.size(dim) > 1:
            compact = compact.narrow(dim, 0, 1)
    return compact.clone().expand(tensor.shape)


def same_strides_compacted(
    a: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``a`` and ``b`` (of one shape) narrowed to one element along the axes both expand (stride
    0: every element there is the same), and how many elements each one left stands for."""
    factor = 1
    for dim in range(b.dim()):
        if a.stride(dim) == 0 and b.stride(dim) == 0 and b.size(dim) > 1:
            factor *= b.size(dim)
            a, b = a.narrow(dim, 0, 1), b.narrow(dim, 0, 1)
    return a, b, factor


def _read_array(path: str, item: np.ndarray | np.generic, walk: _Walk) -> list[tuple[str, Any]]:
    if isinstance(item, np.ma.MaskedArray):
        walk.add(path, _Shape("masked array", _size(item.shape)))
        return [(f"{path}.data", np.asarray(item.data)), (f"{path}.mask", np.ma.getmaskarray(item))]
    values = np.asarray(item)
    if values.dtype.kind == "O":  # a container: met once (it can hold itself)
        if id(item) in walk.first:
            return walk.add(path, _Alias(walk.first[id(item)][0]))
        walk.first[id(item)] = (path, item)
        walk.add(path, _Shape("object array", _size(values.shape)))
        return [(f"{path}[{', '.join(map(str, i))}]", values[i]) for i in np.ndindex(values.shape)]
    if values.dtype.names:
        walk.add(path, _Shape("structured array", _size(values.shape)))
        return [(f"{path}[{name!r}]", values[name]) for name in values.dtype.names]
    if values.dtype.kind in "biufc":
        native = values.astype(values.dtype.newbyteorder("="), copy=True)
        if native.dtype.itemsize > 8 and native.dtype.kind in "fc":  # longdouble: torch has none
            native = native.astype(np.float64 if native.dtype.kind == "f" else np.complex128)
        return walk.add(path, torch.from_numpy(native))
    as_bytes = np.ascontiguousarray(values).tobytes()
    value = (values.dtype.str, values.shape, as_bytes)
    return walk.add(path, _Values(f"{values.dtype} array", value, _repr(values)))


def uncompared(leaves: Sequence[Leaf]) -> str:
    """The parts of a result that are not compared (module docstring), with their types and
    why: ``output.log (Logger: a standard-library object without equality of its own)``;
    empty when none."""
    return _few([f"{path} ({why})" for path, leaf in leaves if (why := why_uncompared(leaf))])


def why_uncompared(leaf: Any) -> str | None:
    """Why a leaf is not compared (``Logger: a standard-library object ...``); None when it
    is."""
    return f"{leaf.kind}: {leaf.why}" if isinstance(leaf, _Opaque) else None


def is_shape(leaf: Any) -> bool:
    """Whether a leaf is the result's shape (a container's kind and size, or an object met
    before), which has no value of its own to show."""
    return isinstance(leaf, _Shape | _Alias)


def below_the_floor(before: Sequence[Leaf], rtol: float) -> str | None:
    """A note where every float output is smaller than :data:`SCALE_FLOOR` (a zero-initialized
    head gives zeros, t327): differences are judged relative to the floor, so the comparison
    sees a change of the weights only where it moves an output by more than ``rtol`` times
    it, and nothing at all of an output that stays 0; None where some output is larger."""
    scales = [scale for _, value in before if (scale := _float_scale(value)) is not None]
    if not scales or max(scales) >= SCALE_FLOOR:
        return None
    if max(scales) == 0:
        return (
            "every float output is 0 on these inputs (a zero-initialized head?): the comparison "
            "shows nothing of the layers before it"
        )
    return (
        f"the outputs are at most {max(scales):.3g} in magnitude, below the scale differences "
        f"are judged by ({SCALE_FLOOR:g}): the comparison sees a change only where it moves "
        f"an output by more than {rtol * SCALE_FLOOR:.3g}"
    )


def _float_scale(value: Any) -> float | None:
    """The largest finite magnitude of a float leaf (0 where it has none); None for others."""
    if type(value) is float:
        return abs(value) if math.isfinite(value) else 0.0
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        return None
    if value.layout != torch.strided or value.device.type == "meta":
        return None
    finite = value.detach()[torch.isfinite(value.detach())]
    return float(finite.abs().max()) if finite.numel() else 0.0


def max_rel_error(after: Sequence[Leaf], before: Sequence[Leaf]) -> float:
    """Largest |after - before| over every float leaf, relative to that leaf's largest
    magnitude (:data:`SCALE_FLOOR` at least).

    ``inf`` when the results cannot be the same: other paths, another type, size, dtype or
    shape, an exact value that differs, or NaN/Inf anywhere but where ``before`` had the same
    value (a weight norm that computes 0/0 turns outputs NaN; subtracting NaN and taking a
    Python ``max`` would report 0). The difference is taken over the finite elements only.

    NaN when not one element could be compared (no value, every tensor empty, or NaN/Inf
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
    difference 0.5 of scale > tolerance 1e-05``; empty when nowhere."""
    paths_after, paths_before = [p for p, _ in after], [p for p, _ in before]
    if paths_after != paths_before:
        return _structure_change(paths_after, paths_before)
    changes = []
    from wnpass.verify.report import shown_error, shown_tolerance

    for (path, a), (_, b) in zip(after, before, strict=True):
        error, detail = _leaf_error(a, b)
        if error is not None and not error <= rtol:
            if math.isfinite(error):  # to as many digits as show it is past the tolerance
                detail = (
                    f"max difference {shown_error(error, rtol)} of scale > tolerance "
                    f"{shown_tolerance(rtol)}"
                )
            changes.append(f"{path} ({kind_of(b)}): {detail}")
    return _few(changes)


def _few(parts: list[str]) -> str:
    """The first of ``parts`` and a count of the rest, in one line."""
    more = len(parts) - _NAMED
    return "; ".join(parts[:_NAMED]) + (f"; {more} more" if more > 0 else "")


def leaf_difference(a: Any, b: Any) -> str | None:
    """How leaf ``a`` differs from ``b`` where neither is a tensor nor a float: another type,
    size or value (``3 before, 4 now``); None where they are the same, or not compared."""
    error, detail = _leaf_error(a, b)
    return detail if error is not None and error > 0 else None


def kind_of(leaf: Any) -> str:
    """A leaf's kind in a message: ``float32 2x3`` for a tensor, ``tuple`` for a container."""
    if isinstance(leaf, torch.Tensor):
        return f"{_dtype(leaf)} {_shape(leaf)}"
    if isinstance(leaf, _Shape | _Values | _Opaque):
        return leaf.kind
    return "the object met before" if isinstance(leaf, _Alias) else type(leaf).__name__


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
    return _size(tensor.shape)


def _size(shape: Sequence[int]) -> str:
    return "x".join(str(n) for n in shape) or "scalar"


def _short(text: str) -> str:
    return text if len(text) <= _REPR else text[: _REPR - 3] + "..."


def _leaf_error(a: Any, b: Any) -> tuple[float | None, str]:
    """As :func:`max_rel_error` for one leaf (None when it has no element to compare), and how
    it differs, in words."""
    if type(a) is type(b) and type(b) in (float, complex):  # rounding as a tensor element's
        return _number_error(a, b)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return _tensor_error(a, b)
    if isinstance(a, _Opaque) and isinstance(b, _Opaque):  # not compared, but by its type
        return (None, "") if a.kind == b.kind else (math.inf, f"{a} now")
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor) or type(a) is not type(b):
        now = str(a) if isinstance(a, _Shape | _Alias | _Opaque) else kind_of(a)
        return math.inf, f"{now} now"
    if not _equal(a, b):
        return math.inf, f"{_shown(b)} before, {_shown(a)} now"
    return (None if b is None or isinstance(b, _Shape | _Alias) else 0.0), ""  # None: no value


def _shown(value: Any) -> str:
    ours = isinstance(value, _Shape | _Alias | _Values | _Opaque)
    return _short(str(value)) if ours else _repr(value)


def _equal(a: Any, b: Any) -> bool:
    """``a == b`` as a bool; False where the comparison raises or gives no bool."""
    try:
        return bool(a == b)
    except Exception:
        return False


def _number_error(a: complex, b: complex) -> tuple[float | None, str]:
    """:func:`_tensor_error`'s rule for two Python floats or complex numbers (each as its real
    and imaginary parts), in Python: a list of 80,000 floats takes milliseconds, not the
    minute 80,000 one-element tensors would."""
    after: tuple[float, ...] = (a.real, a.imag)
    before: tuple[float, ...] = (b.real, b.imag)
    if isinstance(b, float):
        after, before = after[:1], before[:1]
    pairs = list(zip(after, before, strict=True))
    if moved := sum(math.isfinite(x) != math.isfinite(y) for x, y in pairs):
        return math.inf, f"NaN/Inf appeared or went away at {moved} of {len(pairs)} values"
    same = [x == y or (math.isnan(x) and math.isnan(y)) for x, y in pairs]
    if changed := sum(
        not math.isfinite(y) and not s for (_, y), s in zip(pairs, same, strict=True)
    ):
        return math.inf, f"NaN became Inf, or Inf changed sign, at {changed} values"
    kept = [(x, y) for x, y in pairs if math.isfinite(y)]
    if not kept:
        return None, ""
    diff = max(abs(x - y) for x, y in kept)
    error = diff / max(max(abs(y) for _, y in kept), SCALE_FLOOR)
    return error, f"max difference {error:.2e} of scale"


def _tensor_error(a: torch.Tensor, b: torch.Tensor) -> tuple[float | None, str]:
    if a.dtype != b.dtype:
        return math.inf, f"dtype {_dtype(a)} now"
    if a.shape != b.shape:
        return math.inf, f"shape {_shape(a)} now"
    if a.device != b.device:
        return math.inf, f"device {a.device} now"
    numel = b.numel()
    a, b, factor = same_strides_compacted(a, b)
    if b.dtype in _BITS:  # bit patterns: compared as integers of their width
        a, b = a.view(_BITS[b.dtype]), b.view(_BITS[b.dtype])
    if b.is_complex():  # each element as its real and imaginary parts
        a, b = torch.view_as_real(a.resolve_conj()), torch.view_as_real(b.resolve_conj())
    if not b.is_floating_point():
        if differ := int((a != b).sum()) * factor:
            return math.inf, f"{differ} of {numel} values differ"
        return (0.0 if numel else None), ""
    a64, b64 = a.double(), b.double()
    finite = torch.isfinite(b64)
    if moved := int((finite != torch.isfinite(a64)).sum()) * factor:
        return math.inf, f"NaN/Inf appeared or went away at {moved} of {numel} values"
    same = torch.isclose(a64[~finite], b64[~finite], rtol=0.0, atol=0.0, equal_nan=True)
    if changed := int((~same).sum()) * factor:
        return math.inf, f"NaN became Inf, or Inf changed sign, at {changed} values"
    if not finite.any():
        return None, ""
    diff = float((a64[finite] - b64[finite]).abs().max())
    error = diff / max(float(b64[finite].abs().max()), SCALE_FLOOR)
    return error, f"max difference {error:.2e} of scale"
