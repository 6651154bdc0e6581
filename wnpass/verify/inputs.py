"""Inputs for a model: synthesized from its signature (seeded), or read from an ``.npz`` file.

Dynamic dimensions take their size from ``--shape NAME=DIMS``; otherwise the first axis (the
batch) is 1 and every other dynamic axis is ``DEFAULT_DYNAMIC_DIM``, and the report says so.
A symbolic dimension (``N``) has one size in every input that names it.
Floats are standard normal; integers are drawn from ``[0, INT_HIGH)``, small enough to be valid
indices for any embedding or vocabulary, and bools are fair coin flips. An integer input that
only indexes tables (a ``Gather``'s indices, through layout ops and Casts, or compared) is
drawn from all the rows of the smallest of them instead (:func:`_indexed_rows`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx_ir as ir

from wnpass.errors import InvalidArgumentError, UsageError, one_line
from wnpass.onnx.graphs import OVERRIDABLE_FROM_IR, const_tensor
from wnpass.onnx.shapes import shape_of
from wnpass.onnx.types import cast_to
from wnpass.plan import not_readable
from wnpass.verify.providers import FED_AS_BITS, PACKED_TYPES

__all__ = [
    "DEFAULT_DYNAMIC_DIM",
    "INT_HIGH",
    "InputSpec",
    "Sizing",
    "load_npz",
    "parse_shapes",
    "require_same_inputs",
    "signature",
    "synthesize",
    "type_name",
]

DEFAULT_DYNAMIC_DIM = 32  # long enough for small convolution kernels, short enough to run fast
INT_HIGH = 8  # integer inputs in [0, 8): valid indices for any table with at least 8 rows
SEED = 0
# An input is held in memory, several times over while outputs are compared: one past this many
# bytes, synthesized or read from an .npz (a string input as STRING_ELEMENT_BYTES an element
# beyond its characters), is refused rather than made.
MAX_INPUT_BYTES = 2**30
# What ONNX Runtime and its outputs hold for each element of a string input beyond the numpy
# array: its C++ string in, the output's string and Python object out; measured 73 bytes for
# strings of 1 character, 249 of 16 and 362 of 64, above the array's 4 a character. An array of
# empty strings (``<U0``, no bytes at all) is thus no way past the limit.
STRING_ELEMENT_BYTES = 192


@dataclasses.dataclass
class InputSpec:
    """One model input: name, dtype and shape (None or a name where it is dynamic)."""

    name: str
    dtype: ir.DataType
    shape: list[int | str | None]
    # an integer input that only indexes tables: their fewest rows, which its values are
    # drawn below; None: below INT_HIGH
    high: int | None = None
    # the values among those rows that such an input is compared with (a padding id), drawn at
    # a quarter of its places: at random, 0 would not turn up once among 30,522 rows (t337)
    compared: tuple[int, ...] = ()


def signature(
    model: ir.Model, where: Path | None = None, *, defaults: bool = False
) -> list[InputSpec]:
    """The model's real inputs, each a tensor; with ``defaults``, its inputs that have a
    default instead (an initializer listed as an input: fed only when asked for, else the
    runtime takes the initializer). ``where``: the model's file, which errors name."""
    at = f"{where}: " if where is not None else ""
    specs: list[InputSpec] = []
    if defaults and model.ir_version < OVERRIDABLE_FROM_IR:
        return specs  # below IR version 4 an initializer is no default: no input overrides it
    for value in model.graph.inputs:
        if value.is_initializer() != defaults:
            continue
        if defaults:
            if (spec := _default_spec(value)) is not None:
                specs.append(spec)
            continue
        if value.type is not None and not isinstance(value.type, ir.TensorType):
            # a sequence or an optional: ONNX Runtime takes a list or None for it, which
            # wnpass neither synthesizes nor reads from an .npz (it holds arrays only)
            raise UsageError(
                f"{at}input {value.name!r} is of type {type_name(value.type)}: wnpass feeds "
                "tensor inputs only, synthesized or from an inputs file, and cannot make this one"
            )
        if value.dtype is None or value.shape is None:
            raise UsageError(f"{at}input {value.name!r} has no tensor type and shape in the model")
        if value.dtype in PACKED_TYPES:
            raise UsageError(
                f"input {value.name!r} is {value.dtype.name.lower()}: ONNX Runtime's Python API "
                "cannot take it (its elements are packed several to a byte)"
            )
        # a negative size (-1, which ONNX's checker accepts) is dynamic, as ONNX Runtime reads it
        dims = [_dim(d) for d in value.shape]
        high, compared = _indexed_rows(value) if value.dtype.is_integer() else (None, ())
        specs.append(InputSpec(value.name or "", value.dtype, dims, high, compared))
    return specs


def _rows(table: ir.Value | None) -> int | None:
    """The rows of a table: as declared (``[16, "d"]``: its other axes need not be known,
    t313), else as its shape is read from what computes it."""
    if table is None:
        return None
    declared = table.shape
    if declared is not None and len(declared) and isinstance(declared[0], int):
        return declared[0]
    shape = shape_of(table)
    return shape[0] if shape else None


# ops an index passes through on its way to a table, its values unchanged (a Cast to
# another integer type)
_INDEX_LAYOUT = frozenset({"Cast", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity"})
# ops that read an index and give a bool, whatever its value (a padding mask)
_INDEX_COMPARED = frozenset({"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"})
# the most values of a constant an index is compared with that are drawn
_COMPARED = 16


def _indexed_rows(value: ir.Value) -> tuple[int | None, tuple[int, ...]]:
    """The fewest rows of the tables ``value`` indexes, where that is all it does: the indices
    of a ``Gather`` on axis 0 of a table whose rows are known (an initializer, a weight
    computed from constants: an embedding's weight norm, :func:`~wnpass.onnx.shapes.shape_of`),
    through layout ops and Casts to integers, besides comparisons (a padding mask); and the
    values among those rows next to the constants it is compared with (``Equal(ids, 0)``: 0
    and 1; ``Less(ids, c)``: c - 1, c and c + 1). Ids drawn from ``[0, INT_HIGH)`` tested a
    fold of a 16-row table on its first 8 rows only (t310), and indexed a table of 3 speakers
    out of its bounds (t284). None where it is read otherwise (a size, a position, a graph
    output), or indexes nothing."""
    found: list[int] = []
    compared: set[int] = set()
    stack, seen = [value], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        if current.is_graph_output():
            return None, ()
        for use in current.uses():
            node = use.node
            if node.domain not in ("", "ai.onnx"):
                return None, ()
            if node.op_type in _INDEX_COMPARED:
                other = node.inputs[1 - use.idx] if len(node.inputs) == 2 else None
                held = None if other is None else const_tensor(other)
                if held is not None and held.size <= _COMPARED and held.dtype.is_integer():
                    values = held.numpy().reshape(-1).tolist()
                    compared.update(int(c) + d for c in values for d in (-1, 0, 1))
                continue
            if node.op_type in _INDEX_LAYOUT and use.idx == 0:
                to = cast_to(node) if node.op_type == "Cast" else ir.DataType.INT64
                if to is None or not to.is_integer():
                    return None, ()
                stack.extend(node.outputs)
                continue
            axis = node.attributes.get("axis")
            if node.op_type != "Gather" or use.idx != 1 or (axis is not None and axis.value):
                return None, ()
            if (rows := _rows(node.inputs[0])) is None or rows < 1:
                return None, ()
            found.append(rows)
    if not found:
        return None, ()
    # the rows its dtype can index (uint8 bytes into a table of 256 bytes and 3 specials: a
    # compared 256 overflowed, and 256 to 258 wrapped to 0 to 2, t342)
    assert value.dtype is not None  # an integer input's (signature)
    rows = min(*found, int(np.iinfo(value.dtype.numpy()).max) + 1)
    return rows, tuple(sorted(c for c in compared if 0 <= c < rows))


def _default_spec(value: ir.Value) -> InputSpec | None:
    """An input with a default, as declared, else as its initializer is; None where ONNX
    Runtime's Python API could not feed it (a packed type)."""
    tensor = value.const_value
    dtype = value.dtype or (tensor.dtype if tensor is not None else None)
    if dtype is None or dtype in PACKED_TYPES:
        return None
    if value.shape is not None:
        return InputSpec(value.name or "", dtype, [_dim(d) for d in value.shape])
    if tensor is None:
        return None
    return InputSpec(value.name or "", dtype, [int(d) for d in tensor.shape.numpy()])


def _dim(dim: int | ir.SymbolicDim) -> int | str | None:
    """A declared dimension: its size, its symbol, or None where it is dynamic unnamed."""
    if isinstance(dim, int):
        return dim if dim >= 0 else None
    return dim.value or None


def type_name(type_: ir.TypeProtocol) -> str:
    """A value's type as ONNX spells it: ``seq(tensor(float))``, ``optional(tensor(int64))``."""
    if isinstance(type_, ir.TensorType):
        return f"tensor({type_.dtype.name.lower()})"
    inner = getattr(type_, "elem_type", None)
    if isinstance(type_, ir.SequenceType) and inner is not None:
        return f"seq({type_name(inner)})"
    if isinstance(type_, ir.OptionalType) and inner is not None:
        return f"optional({type_name(inner)})"
    return type(type_).__name__


def require_same_inputs(
    reference: list[InputSpec], candidate: list[InputSpec], where: Path
) -> None:
    """Both models must take the same inputs (names and dtypes) to be compared."""
    ref = {s.name: s.dtype for s in reference}
    cand = {s.name: s.dtype for s in candidate}
    if ref.keys() != cand.keys():
        names = sorted(set(ref) ^ set(cand))
        raise UsageError(f"{where}: its inputs differ from the reference's ({', '.join(names)})")
    for name, dtype in ref.items():
        if cand[name] != dtype:
            raise UsageError(
                f"{where}: input {name} is {cand[name].name.lower()}, "
                f"the reference's is {dtype.name.lower()}"
            )


def narrower(
    reference: list[InputSpec], candidate: list[InputSpec], *, defaults: bool
) -> list[str]:
    """Where the candidate takes fewer inputs than the reference, one line each: an axis of
    a fixed size where the reference's is dynamic or of another size, or another count of
    axes (ONNX Runtime refuses such inputs); with ``defaults`` (the inputs with a default), an
    input the reference takes with a default and the candidate lacks (a caller may feed it),
    or takes as another dtype (t229: float64 where the reference's is float32).
    A candidate that takes more (a dynamic axis where the reference's is fixed) takes every
    input the reference does. Axes the candidate names by one symbol, which must then be of one
    size, where the reference lets them differ, are said too (:func:`_tied`)."""
    theirs = {spec.name: spec for spec in candidate}
    lines = _tied(reference, theirs)
    for spec in reference:
        other = theirs.get(spec.name)
        if other is None:
            if defaults:
                lines.append(
                    f"the candidate has no input {spec.name}, which the reference takes with a "
                    "default (a caller may feed it)"
                )
            continue
        if defaults and other.dtype != spec.dtype:  # a fed one of another dtype is bad input
            candidate_type, reference_type = other.dtype.name.lower(), spec.dtype.name.lower()
            lines.append(
                f"input {spec.name} (with a default) is {candidate_type} in the candidate, "
                f"{reference_type} in the reference: the candidate refuses it as a caller feeds "
                "the reference"
            )
            continue
        if len(other.shape) != len(spec.shape):
            lines.append(
                f"input {spec.name} has {len(other.shape)} axes in the candidate, "
                f"{len(spec.shape)} in the reference"
            )
            continue
        for axis, (ours, its) in enumerate(zip(spec.shape, other.shape, strict=True)):
            if isinstance(its, int) and its != ours:
                said = ours if isinstance(ours, int) else f"dynamic ({ours or 'unnamed'})"
                lines.append(
                    f"axis {axis} of input {spec.name} is {its} in the candidate, {said} in "
                    "the reference: the candidate refuses inputs the reference takes"
                )
    return lines


def _tied(reference: list[InputSpec], candidate: dict[str, InputSpec]) -> list[str]:
    """A line for each symbol the candidate gives several axes of inputs both models take
    (``x[N, 3]``, ``y[N, 3]``: inputs of other sizes are outside what it declares, which ONNX
    Runtime does not enforce but may build on; t238: it was said to refuse them), where the
    reference does not tie those axes itself (``x[A, 3]``, ``y[B, 3]``): one symbol there too,
    or one size. Inputs the check makes up give every symbol one size, which would hide it
    (t111)."""
    axes: dict[str, list[tuple[str, int, int | str | None]]] = {}
    for spec in reference:
        other = candidate.get(spec.name)
        if other is None or len(other.shape) != len(spec.shape):
            continue  # said as a missing input or another count of axes
        for axis, (ours, its) in enumerate(zip(spec.shape, other.shape, strict=True)):
            if isinstance(its, str) and its:
                axes.setdefault(its, []).append((spec.name, axis, ours))
    lines = []
    for symbol, where in axes.items():
        dims = {ours for *_, ours in where}
        if len(where) < 2 or (len(dims) == 1 and None not in dims):
            continue  # one axis, or tied in the reference too
        axes_said = [f"axis {axis} of input {name}" for name, axis, _ in where]
        named = ", ".join(axes_said[:-1]) + " and " + axes_said[-1]
        lines.append(
            f"{named} are one dimension ({symbol}) in the candidate, which the reference "
            "declares apart: it declares of one size inputs the reference declares it takes "
            "of other sizes"
        )
    return lines


_MAX_SIZE_DIGITS = 18  # a size of more digits is beyond MAX_INPUT_BYTES however it is used


def parse_shapes(items: list[str] | None) -> dict[str, list[int]]:
    """``["x=1,80,200", ...]`` -> ``{"x": [1, 80, 200]}``, with one clear error per mistake
    (an input given twice is one: which size was meant is not known)."""
    shapes: dict[str, list[int]] = {}
    for item in items or []:
        # the last "=" ends the name: an input's name may hold one (t111), the sizes cannot
        # sizes in ASCII digits (\d takes other scripts' digits too, t212)
        match = re.fullmatch(r"(.+)=([0-9]+(?:[,x][0-9]+)*)", item.strip())
        if match is None:
            raise InvalidArgumentError(
                f"{item!r}: expected NAME=DIMS, e.g. mel=1,80,200", parameter="shapes"
            )
        if match[1] in shapes:
            raise InvalidArgumentError(
                f"{item!r}: {match[1]} is given twice; give each input once", parameter="shapes"
            )
        # leading zeros are no digits of a size (t216), and int() would count them
        sizes = [d.lstrip("0") or "0" for d in re.split(r"[,x]", match[2])]
        if (longest := max(len(d) for d in sizes)) > _MAX_SIZE_DIGITS:
            raise InvalidArgumentError(  # int() refuses past 4300 digits: an internal error
                f"{item!r}: a size of {longest} digits, beyond any input wnpass feeds",
                parameter="shapes",
            )
        shapes[match[1]] = [int(d) for d in sizes]
    return shapes


class _Sizes:
    """One size per symbolic dimension, across every input: ``[B, K]`` by ``[K, 4]`` only runs
    when both ``K`` are the same. A symbol takes its size from the first shape that fixes it."""

    def __init__(self, parameter: str = "shapes", prefix: str = "") -> None:
        """``parameter``: what a disagreement is blamed on; ``prefix`` starts its message."""
        self._sizes: dict[str, tuple[int, str]] = {}  # symbol -> (size, the axis it came from)
        self._parameter, self._prefix = parameter, prefix

    def bind(self, symbol: str, size: int, where: str) -> None:
        """``where`` (e.g. ``x[1]``) is given ``size`` for ``symbol``: it must agree."""
        if symbol in self._sizes and self._sizes[symbol][0] != size:
            bound, other = self._sizes[symbol]
            raise InvalidArgumentError(
                f"{self._prefix}{where} = {size} but {other} = {bound}, and both are {symbol}",
                parameter=self._parameter,
            )
        self._sizes.setdefault(symbol, (size, where))

    def get(self, symbol: str) -> tuple[int, str] | None:
        return self._sizes.get(symbol)


def _given_shape(spec: InputSpec, given: list[int], sizes: _Sizes) -> list[int]:
    """A shape from ``shapes``, checked against the model's; its symbols are bound."""
    if len(given) != len(spec.shape):
        raise InvalidArgumentError(
            f"{spec.name}: {len(given)} dimensions given, the model has {len(spec.shape)}",
            parameter="shapes",
        )
    for axis, (want, got) in enumerate(zip(spec.shape, given, strict=True)):
        if isinstance(want, int) and want != got:
            raise InvalidArgumentError(
                f"{spec.name}: axis {axis} is fixed at {want}, got {got}", parameter="shapes"
            )
        if isinstance(want, str):
            sizes.bind(want, got, f"{spec.name}[{axis}]")
    return list(given)


def _default_shape(
    spec: InputSpec,
    sizes: _Sizes,
    firsts: Iterator[int],
    others: Iterator[int],
    batches: set[str] | None,
) -> tuple[list[int], list[str]]:
    """The shape to feed where none was given, and a note on each dynamic dimension's size:
    a symbol's size if it has one, else the next of ``firsts`` for a batch axis and of
    ``others`` for the others. A batch is a first axis; with ``batches`` (:class:`Sizing`'s
    ``lengths``), the only axis of a vector is one only where its symbol is in them."""
    concrete, notes = [], []
    for axis, dim in enumerate(spec.shape):
        vector = len(spec.shape) == 1 and batches is not None and dim not in batches
        batch = axis == 0 and not vector
        if isinstance(dim, int):
            concrete.append(dim)
            continue
        where = f"{spec.name}[{axis}]"
        bound = sizes.get(dim) if dim else None
        if bound is not None:
            size, origin = bound
            notes.append(f"{where} ({dim}) = {size}, as {origin}")
        else:
            size = next(firsts if batch else others)
            notes.append(f"{where} ({dim or 'dynamic'}) = {size}")
            if dim:
                sizes.bind(dim, size, where)
        concrete.append(size)
    return concrete, notes


def _itemsize(dtype: ir.DataType) -> int:
    """Bytes an element of ``dtype`` takes in memory; 1 for a type numpy has no dtype for
    (:func:`_random` refuses it by name)."""
    try:
        return int(np.dtype(dtype.numpy()).itemsize)
    except (TypeError, ValueError):
        return 1


def _random(
    dtype: ir.DataType, shape: list[int], rng: np.random.Generator, high: int | None = None
) -> np.ndarray:
    if dtype.is_floating_point():
        array = rng.standard_normal(shape)
        if dtype == ir.DataType.FLOAT8E8M0:  # powers of two only: no sign, no zero
            array = np.abs(array)
        if dtype == ir.DataType.BFLOAT16:
            return array.astype(ml_dtypes.bfloat16)
        return array.astype(dtype.numpy())
    if dtype == ir.DataType.BOOL:
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.is_integer():
        return rng.integers(0, high or INT_HIGH, shape).astype(dtype.numpy())
    raise UsageError(f"cannot synthesize {dtype.name.lower()} inputs; give an inputs file")


@dataclasses.dataclass(frozen=True)
class Sizing:
    """The sizes a dynamic axis that no shape gives takes: ``first`` on a first axis (a batch),
    ``other`` on the others, and with a step, each axis that takes a size of its own (no
    symbol bound before) that much more than the last of its kind: distinct symbols, distinct
    sizes."""

    first: int = 1
    other: int = DEFAULT_DYNAMIC_DIM
    first_step: int = 0
    other_step: int = 0
    # a vector's only axis sized as the others, not as a batch, unless its symbol is another
    # input's batch: audio as ``[samples]``, ids as ``[T]`` (t337: checked at 1 and 2 samples
    # only); a batch of per-sample lengths named apart from ``x``'s (t338) runs as one
    lengths: bool = False


def synthesize(
    specs: list[InputSpec],
    shapes: dict[str, list[int]] | None = None,
    *,
    seed: int = SEED,
    sizing: Sizing | None = None,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Seeded inputs for ``specs``, and notes on every default taken: a dynamic axis no shape
    gives is sized by ``sizing`` (by default 1 on a first axis, ``DEFAULT_DYNAMIC_DIM`` on the
    others)."""
    shapes = shapes or {}
    unknown = sorted(set(shapes) - {s.name for s in specs})
    if unknown:
        raise InvalidArgumentError(
            f"{unknown[0]}: the model has no input of that name", parameter="shapes"
        )
    rng = np.random.default_rng(seed)
    feeds, notes = {}, []
    sizes = _Sizes()  # the shapes given first: they fix their symbols in every other input
    sizing = sizing or Sizing()
    firsts = itertools.count(sizing.first, sizing.first_step)
    others = itertools.count(sizing.other, sizing.other_step)
    given = {s.name: _given_shape(s, shapes[s.name], sizes) for s in specs if s.name in shapes}
    batches = (
        {s.shape[0] for s in specs if len(s.shape) > 1 and isinstance(s.shape[0], str)}
        if sizing.lengths
        else None
    )
    for spec in specs:
        spec_notes: list[str] = []
        if spec.name in given:
            shape = given[spec.name]
        else:
            shape, spec_notes = _default_shape(spec, sizes, firsts, others, batches)
        if (size := math.prod(shape) * _itemsize(spec.dtype)) > MAX_INPUT_BYTES:
            raise InvalidArgumentError(
                f"{spec.name}{shape}: {size} bytes is more than the {MAX_INPUT_BYTES} wnpass "
                "feeds an input; give smaller shapes",
                parameter="shapes",
            )
        notes.extend(spec_notes)
        feeds[spec.name] = _random(spec.dtype, shape, rng, spec.high)
        if _compared_drawn(spec, feeds[spec.name]):
            _draw_compared(feeds[spec.name], spec.compared, rng)
    if any(s.dtype.is_integer() and s.high is None for s in specs):
        notes.append(f"integer inputs drawn from [0, {INT_HIGH})")
    for name, array in feeds.items():  # an If's condition, say: one branch run (t337)
        if array.dtype == bool and array.size == 1:
            drawn = bool(array.reshape(-1)[0])
            notes.append(
                f"{name} is one bool, drawn {drawn}: what it decides (an If's branch) runs one "
                f"way only; give --inputs with {not drawn} too"
            )
    for spec in specs:
        if spec.dtype.is_integer() and spec.high is not None:
            notes.extend(_table_notes(spec, feeds[spec.name]))
    return feeds, notes


def _compared_drawn(spec: InputSpec, ids: np.ndarray) -> bool:
    """Whether ``ids`` take the values they are compared with at some places: not one id,
    which takes a row of the table (t338)."""
    return bool(spec.compared) and ids.size > 1


def _table_notes(spec: InputSpec, ids: np.ndarray) -> list[str]:
    """What ids that index a table were drawn from; for one id compared with a constant, that
    one side of the comparison runs (t340)."""
    compared = ", ".join(str(c) for c in spec.compared)
    near = f"; a quarter of them (one at least) {compared} in turn, near what it is compared with"
    also = near if _compared_drawn(spec, ids) else ""
    said = [f"{spec.name} drawn from [0, {spec.high}): the rows of the table it indexes{also}"]
    if spec.compared and ids.size == 1:
        drawn = int(ids.reshape(-1)[0])
        sides = ", ".join(str(c) for c in spec.compared if c != drawn)
        said.append(
            f"{spec.name} is one id, drawn {drawn}, compared with a constant: one side of the "
            f"comparison runs; give --inputs with {sides} too"
        )
    return said


def _draw_compared(ids: np.ndarray, compared: tuple[int, ...], rng: np.random.Generator) -> None:
    """Set a quarter of ``ids``' places (at random; one at least and all but one at most:
    some rows of the table are read too; not always the last, which a decoder's step may
    read alone, t340, t341) to the values it is compared with, in turn from one at random,
    so that each side of a comparison (a padding id, special tokens) is run."""
    flat = ids.reshape(-1)
    chosen = rng.random(flat.size) < 0.25
    if chosen.all():  # a row of the table read too
        chosen[rng.integers(flat.size)] = False
    if not chosen.any():  # a place drawn, not always the last: it may be all that is read
        chosen[rng.integers(flat.size)] = True
    places = np.flatnonzero(chosen)
    # in turn from one at random: two ids set one place, to 0 always of ``(0, 1)`` (t342)
    values = np.roll(np.array(compared, flat.dtype), -int(rng.integers(len(compared))))
    flat[places] = np.resize(values, places.size)


def _viewed(stored: np.dtype, spec: InputSpec) -> np.dtype:
    """The dtype an array stored as ``stored`` is fed as: an input of a type numpy lacks
    (bfloat16, a float8: ``FED_AS_BITS``) held as void of its size (how numpy saves an
    ml_dtypes array) or as unsigned integers of its bit patterns is its ml_dtypes type."""
    if spec.dtype not in FED_AS_BITS.values():
        return stored
    wanted = np.dtype(spec.dtype.numpy())
    held = (np.dtype(f"V{wanted.itemsize}"), np.dtype(f"u{wanted.itemsize}"))
    return wanted if stored in held else stored


def _from_bits(array: np.ndarray, spec: InputSpec) -> np.ndarray:
    """``array`` as :func:`_viewed` says it is fed: a view of its bits where that differs."""
    viewed = _viewed(array.dtype, spec)
    return array if viewed == array.dtype else array.view(viewed)


@dataclasses.dataclass
class _Member:
    """One array of an ``.npz``: the input name it is for, its zip member, and the shape and
    dtype its ``.npy`` header declares."""

    name: str
    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype


# The .npy header versions with a public reader; 3.0 only differs from 2.0 in allowing UTF-8
# field names of a structured array, which no model input is.
_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _members(path: Path, archive: zipfile.ZipFile) -> list[_Member]:
    """The arrays of an ``.npz`` by the zip's own member names (``numpy.load`` hands member
    ``x.npy`` out under ``x`` and under ``x.npy`` alike, so that an input named ``x.npy``, held
    as ``x.npy.npy``, was fed ``x``'s array), their headers read, no data yet."""
    members: dict[str, _Member] = {}
    for info in archive.infolist():
        name = info.filename.removesuffix(".npy")
        if name in members:  # x and x.npy; or one name twice in the zip's directory
            raise InvalidArgumentError(
                f"{path}: holds {name!r} twice (members {members[name].info.filename} and "
                f"{info.filename}); refused",
                parameter="inputs",
            )
        with archive.open(info) as stream:
            try:
                version = np.lib.format.read_magic(stream)
            except ValueError:
                raise InvalidArgumentError(
                    f"{path}: {name!r} is not a .npy array", parameter="inputs"
                ) from None
            if (header := _HEADERS.get(version)) is None:
                what = " (numpy writes it for structured arrays only)" if version == (3, 0) else ""
                raise InvalidArgumentError(
                    f"{path}: {name!r} is a .npy of format {version[0]}.{version[1]}{what}, "
                    "which no model input is",
                    parameter="inputs",
                )
            shape, _, dtype = header(stream)
        members[name] = _Member(name, info, tuple(shape), dtype)
    return list(members.values())


def _read(archive: zipfile.ZipFile, member: _Member) -> np.ndarray:
    with archive.open(member.info) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


_OBJECT_ARRAY = " (an object array needs pickle, which is never run; save strings as a str array)"


def _unreadable(error: Exception) -> str:
    """Why numpy could not read an ``.npz``, for the error line. It falls back to unpickling
    what is not a zip (say only what the file is not), and refuses an object array, which
    only pickle can hold: for string inputs, a str array is what to save instead."""
    if "Object arrays cannot be loaded" in str(error):
        return _OBJECT_ARRAY
    return "" if "pickle" in str(error) else f" ({one_line(error, with_type=True)})"


def _fits_dtype(spec: InputSpec, dtype: np.dtype) -> bool:
    """ONNX Runtime takes a string input as a numpy str array of this machine's byte order
    (``<U``); it misreads a bytes one (``|S``: garbage characters) and one of the other byte
    order (its characters' bytes swapped: past U+10FFFF it crashes the process), and
    pickle-free ``.npz`` cannot hold an object one."""
    if spec.dtype == ir.DataType.STRING:
        return dtype.kind == "U" and dtype.isnative
    return dtype == spec.dtype.numpy()


_NATIVE_STR = np.dtype("U1").str.removesuffix("1")  # <U where the machine is little-endian


def _wanted(dtype: ir.DataType) -> str:
    """A model input's dtype as the error names it, with what to save for a string one."""
    if dtype == ir.DataType.STRING:
        return f"string (a numpy str array, {_NATIVE_STR})"
    return dtype.name.lower()


def _held_bytes(shape: Sequence[int], dtype: np.dtype) -> int:
    """The bytes an input of ``shape`` and ``dtype`` is counted as against MAX_INPUT_BYTES."""
    extra = STRING_ELEMENT_BYTES if dtype.kind == "U" else 0
    return math.prod(shape) * (dtype.itemsize + extra)


# Code points a str array may hold that are no character: surrogates and past U+10FFFF (numpy
# holds any 32-bit number; ONNX Runtime's UTF-8 encoding of one crashes the process).
_SURROGATES = (0xD800, 0xDFFF)
_LAST_CODE_POINT = 0x10FFFF


def _check_values(path: Path, spec: InputSpec, array: np.ndarray) -> None:
    """Values a dtype holds that no input of it is, refused before anything runs: a bool
    other than 0 or 1 (a byte array viewed as bool: ONNX Runtime passes the byte on, and
    two equivalent models may read it differently) and a string's code point that is no
    character."""
    if not array.size:
        return
    if array.dtype == np.bool_ and (byte := int(array.view(np.uint8).max())) > 1:
        raise InvalidArgumentError(
            f"{path}: {spec.name} is a bool array holding the byte {byte} (a bool is 0 or 1)",
            parameter="inputs",
        )
    if array.dtype.kind == "U" and array.dtype.itemsize:
        codes = np.ascontiguousarray(array).view(np.uint32)
        bad = (codes > _LAST_CODE_POINT) | ((codes >= _SURROGATES[0]) & (codes <= _SURROGATES[1]))
        if bad.any():
            raise InvalidArgumentError(
                f"{path}: {spec.name} holds U+{int(codes[bad].flat[0]):04X}, which is no "
                "character (a surrogate, or past U+10FFFF)",
                parameter="inputs",
            )


def load_npz(
    path: Path,
    specs: list[InputSpec],
    optional: Sequence[InputSpec] = (),
    one_sided: Mapping[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """Inputs from an ``.npz`` file, checked against the model's inputs (``specs``, each
    required; ``optional``: inputs with a default, fed where the file has them; ``one_sided``:
    inputs of one model only that the file may not give, each with the model it is of): the
    names and
    the shapes its headers declare before any array is read (a small file can declare a huge
    one), then each array's dtype and the sizes of the symbolic dimensions."""
    if (problem := not_readable(path)) is not None:  # a FIFO would block the read
        raise InvalidArgumentError(f"{path}: {problem}", parameter="inputs")
    try:
        with open(path, "rb") as file:
            magic = file.read(len(np.lib.format.MAGIC_PREFIX))
        if magic == np.lib.format.MAGIC_PREFIX:  # a .npy file: one array, no names
            raise InvalidArgumentError(
                f"{path}: one array without a name (a .npy file); --inputs takes an .npz with "
                "an array per model input, by its name (numpy.savez(path, name=array))",
                parameter="inputs",
            )
        with zipfile.ZipFile(path) as archive:
            members = _members(path, archive)
            by_name = {member.name: member for member in members}
            _check_names(path, specs, optional, by_name, one_sided or {})
            specs = [*specs, *(spec for spec in optional if spec.name in by_name)]
            for spec in specs:  # each as its header declares it, before any data is read
                member = by_name[spec.name]
                if member.dtype.hasobject:  # only pickle holds one, and none is run
                    raise InvalidArgumentError(
                        f"{path}: not a readable .npz file{_OBJECT_ARRAY}", parameter="inputs"
                    )
                _check_dtype(path, spec, _viewed(member.dtype, spec))
                _check_shape(path, spec, member.shape)
                if (size := _held_bytes(member.shape, member.dtype)) > MAX_INPUT_BYTES:
                    raise InvalidArgumentError(
                        f"{path}: {spec.name} holds {size} bytes, more than the "
                        f"{MAX_INPUT_BYTES} wnpass feeds an input; give smaller arrays",
                        parameter="inputs",
                    )
            feeds = {member.name: _read(archive, member) for member in members}
    except InvalidArgumentError:
        raise
    except Exception as error:  # a cut-off zip, a bad member: whatever the file is, not .npz
        raise InvalidArgumentError(
            f"{path}: not a readable .npz file{_unreadable(error)}", parameter="inputs"
        ) from None
    for spec in specs:  # as read (its header said so)
        array = feeds[spec.name] = _from_bits(feeds[spec.name], spec)
        _check_dtype(path, spec, array.dtype)
        _check_shape(path, spec, array.shape)
        _check_values(path, spec, array)
    sizes = _Sizes("inputs", f"{path}: ")  # a symbol has one size in every input naming it
    for spec in specs:
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, str):
                sizes.bind(dim, feeds[spec.name].shape[axis], f"{spec.name}[{axis}]")
    return feeds


def _check_dtype(path: Path, spec: InputSpec, dtype: np.dtype) -> None:
    if not _fits_dtype(spec, dtype):
        raise InvalidArgumentError(
            f"{path}: {spec.name} is {dtype}, the model wants {_wanted(spec.dtype)}",
            parameter="inputs",
        )


def _check_names(
    path: Path,
    specs: list[InputSpec],
    optional: Sequence[InputSpec],
    held: dict[str, _Member],
    one_sided: Mapping[str, str],
) -> None:
    names = {s.name for s in specs}
    if missing := sorted(names - set(held)):
        raise InvalidArgumentError(f"{path}: missing input {missing[0]!r}", parameter="inputs")
    if extra := sorted(set(held) - names - {s.name for s in optional}):
        if (model := one_sided.get(extra[0])) is not None:  # was "the model has no input" (t238)
            raise InvalidArgumentError(
                f"{path}: {extra[0]!r} is an input (with a default) of the {model} only, "
                "which no run can feed both models",
                parameter="inputs",
            )
        raise InvalidArgumentError(
            f"{path}: the model has no input {extra[0]!r}", parameter="inputs"
        )


def _check_shape(path: Path, spec: InputSpec, shape: tuple[int, ...]) -> None:
    fits = len(shape) == len(spec.shape) and all(
        not isinstance(want, int) or want == got
        for want, got in zip(spec.shape, shape, strict=False)
    )
    if not fits:
        raise InvalidArgumentError(
            f"{path}: {spec.name} has shape {list(shape)}, the model wants "
            f"[{', '.join('?' if d is None else str(d) for d in spec.shape)}]",
            parameter="inputs",
        )
