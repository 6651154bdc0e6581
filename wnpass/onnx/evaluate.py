"""Evaluate a constant cone of an ONNX graph with the graph's own semantics, or say why not.

A cone (a value and everything it is computed from, down to initializers and ``Constant``
nodes) is first compiled into a ``Program``: a list of steps in topological order that no
longer needs the graph, so a folded weight can be computed when the model is written, after
the nodes that described it are gone. Compiling and running are iterative (no recursion, so
a chain of thousands of nodes is fine).

The rules, which make a fold exact or make it decline (``NotExact`` with the reason):

- Float arithmetic (``Mul``, ``Div``, ``Add``, ``Sub``, ``Sqrt``, ``Pow``, the reductions of
  a norm ...) is computed in float64 whatever the graph's float type and rounded once, at the
  next ``Cast`` or when the result is stored: the weight the graph means (``g * v / ||v||``)
  rounded once, not float32 step by step (within half an ulp of the exact value). A cone
  folded bit for bit (``Program.stepwise``: ``Add``/``Sub``/``Mul``/``Div`` and ``Max``/
  ``Min``/``Clip`` only) is computed step by step instead, each result rounded to its type as
  the graph and ONNX Runtime round it, and declined where the two differ. A result
  that would overflow its type at its node (the graph computes inf there) is declined, naming
  the node.
- A sum of squares (inside ``ReduceL2`` and ``LpNormalization``, and ``ReduceSumSquare`` or
  ``ReduceSum`` of ``v*v``/``Pow(v, 2)``) must lie in the normal range of the type it is summed
  in: beyond it the graph's norm is inf (the weight 0), below the smallest normal it is 0 or
  inexact (the weight NaN or off). Both are declined; a sum of exactly 0 is left to the caller
  (a zero-norm unit). ``ReduceL2``/``LpNormalization`` of float16 and bfloat16 sum in float32,
  as ONNX Runtime's kernels do (its norm must still be a normal float16 or bfloat16); a sum
  that is stored (``ReduceSumSquare``, ``ReduceSum``) must be one of its own type.
- Every ``Cast`` rounds exactly as the graph does. Narrowing a float rounds once to the target
  type; widening first rounds to the source type (the graph holds the value there), so a
  ``Cast`` float32 -> float16 -> float32 keeps the float16 rounding. A ``Cast`` from double or
  an integer type to float16 or bfloat16 is declined where some value rounds differently once
  than through float32, as ONNX Runtime's CPU kernel rounds it (1 + 2**-11 + 2**-40 is
  1 + 2**-10 in float16 rounded once, and 1 through float32); elsewhere the two agree.
  Rounding once stands for the graph's roundings only as long as nothing shows them more
  precisely: a float value that went through more than one rounding step in the graph (a
  reduction, ``Pow``, or arithmetic on a value computed so) is declined where a ``Cast`` makes
  those steps visible: widened to a type with more precision (float32 arithmetic cast to double
  shows each float32 rounding at double precision), or converted to an integer or bool. A
  single ``Mul``/``Div``/``Add``/``Sub``/``Sqrt``/``Reciprocal`` (or ``Pow(x, 2)``, which is
  ``x * x``) of exact values is rounded correctly by the graph too, so it is rounded to its
  type first, exactly as the graph holds it.
  Float -> integer truncates toward zero (NaN, Inf or out of range: declined); integer ->
  float is exact below 2**53 (declined above); integer -> integer must fit the target.
- Integer tensors follow ONNX integer semantics: ``Add``/``Sub``/``Mul`` exact (declined on
  overflow or beyond 2**53), ``Div`` truncates toward zero (declined on division by zero),
  ``Max``/``Min``/``Clip`` select exactly; any other arithmetic on integers is declined.
- Layout ops (``Transpose``, ``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze``, ``Slice``,
  ``Concat``, ``Split``, ``Gather``, ``Expand``, ``Tile``, ``Identity``, ``Pad``) move or
  select elements, in any dtype, and are exact (``Pad`` writes its fill value or copies of
  x's own elements: ``constant``, ``reflect``, ``edge``, ``wrap``); so are ``Shape`` of a
  constant and ``ConstantOfShape``.
- Any other op, dtype or domain is declined with its name, as is a result of more than
  ``MAX_ELEMENTS`` elements (a huge declared shape is declined before anything is allocated).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, cast

import ml_dtypes
import numpy as np
import onnx_ir as ir

from wnpass.onnx import halves
from wnpass.onnx.graphs import const_tensor, enclosing_scope, value_inputs, walk_cone
from wnpass.onnx.norms import sum_of_squares_source
from wnpass.onnx.types import cast_to
from wnpass.rounding import round_once

__all__ = [
    "ARITHMETIC",
    "EVALUABLE_OPS",
    "FLOAT_TYPES",
    "INT_TYPES",
    "MAX_ELEMENTS",
    "STEPWISE_OPS",
    "Evaluated",
    "NotExact",
    "Program",
    "Step",
    "axis_in_range",
    "compile_cone",
    "const_leaf",
    "evaluate",
    "round_to",
    "small_constant",
    "sum_of_squares",
    "tensor_array",
    "widens_exactly",
]

Evaluated = tuple[np.ndarray, ir.DataType]
# A weight-norm site's v shape and the axes of v its norm reduces (within a unit).
Units = tuple[tuple[int, ...], tuple[int, ...]]

FLOAT_TYPES = frozenset(
    {ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16, ir.DataType.DOUBLE}
)
INT_TYPES = frozenset(
    {
        ir.DataType.INT8,
        ir.DataType.INT16,
        ir.DataType.INT32,
        ir.DataType.INT64,
        ir.DataType.UINT8,
        ir.DataType.UINT16,
        ir.DataType.UINT32,
        ir.DataType.UINT64,
    }
)
_EXACT_TYPES = FLOAT_TYPES | INT_TYPES | {ir.DataType.BOOL}
# (wider, narrower): every value of the narrower float type is one of the wider type.
_CONTAINS = frozenset(
    {
        (ir.DataType.DOUBLE, ir.DataType.FLOAT),
        (ir.DataType.DOUBLE, ir.DataType.FLOAT16),
        (ir.DataType.DOUBLE, ir.DataType.BFLOAT16),
        (ir.DataType.FLOAT, ir.DataType.FLOAT16),
        (ir.DataType.FLOAT, ir.DataType.BFLOAT16),
    }
)
MAX_ELEMENTS = 1 << 28  # 2 GiB as float64: no weight is larger; a bigger shape is a bad file
_EXACT_INT = 2**53  # integers whose float64 arithmetic is exact

F64 = np.float64


class NotExact(ValueError):
    """The cone holds something this module does not evaluate exactly; the message says what."""


def widens_exactly(source: ir.DataType, target: ir.DataType) -> bool:
    """Whether every value of float type ``source`` is a value of float type ``target``."""
    return source == target or (target, source) in _CONTAINS


def tensor_array(tensor: ir.TensorProtocol) -> Evaluated:
    """A constant tensor as a numpy array, as stored (bfloat16 widened exactly to float32)."""
    array = tensor.numpy()
    if tensor.dtype == ir.DataType.BFLOAT16:
        array = array.astype(np.float32)
    return array, tensor.dtype


def round_to(array: np.ndarray, dtype: ir.DataType) -> np.ndarray:
    """Round a float result once to ``dtype`` (the stored form: bfloat16 as ml_dtypes); other
    types are converted as they are."""
    if dtype in FLOAT_TYPES:
        return round_once(array, dtype.numpy())
    return array.astype(dtype.numpy(), copy=False)


def _form(dtype: ir.DataType) -> np.dtype:
    """The numpy type values of float ``dtype`` are computed in (bfloat16 as float32)."""
    return np.dtype(np.float32) if dtype == ir.DataType.BFLOAT16 else np.dtype(dtype.numpy())


def _held(array: np.ndarray, dtype: ir.DataType) -> np.ndarray:
    """``array`` rounded to ``dtype`` in the form values are computed with (bf16 as float32)."""
    rounded = round_to(array, dtype)
    return rounded.astype(np.float32) if dtype == ir.DataType.BFLOAT16 else rounded


def const_leaf(value: ir.Value) -> ir.TensorProtocol | None:
    """The constant tensor of ``value`` (initializer or ``Constant``), unless a graph input
    can override it."""
    if value.is_graph_input():
        return None
    try:
        return const_tensor(value)
    except ValueError:  # a malformed Constant node
        return None


SMALL_ELEMENTS = 4096  # the most elements of an operand read as a constant (axes, shapes)
_SMALL_CONE = 64  # the most values in the cone of such an operand


def small_constant(value: ir.Value | None, *, stepwise: bool = False) -> np.ndarray | None:
    """The value of a small operand (axes, a shape, pads, an epsilon) that is a constant or is
    computed from small constants by ops this module does exactly; else None. ``stepwise``:
    float arithmetic rounded to its type at each step, as the graph holds the value (else held
    in float64: :class:`Program`).

    Exporters write such operands as expressions (the dynamo exporter without its optimizer:
    ``Reshape(Constant([1, 2]), Constant([-1]))`` for the axes of a ``ReduceL2``; TorchScript's
    ``Pad`` widths from ``ConstantOfShape``/``Concat``/``Reshape``/``Slice``/``Cast``). Their value
    is the one the graph computes, exactly, so they count as the constants they are. Every leaf
    must be small too, so that no weight is read to find an operand.
    """
    if value is None or value.is_graph_input():
        return None
    tensor = const_leaf(value)
    if tensor is not None:
        return None if tensor.size > SMALL_ELEMENTS else tensor_array(tensor)[0]
    for count, current in enumerate(walk_cone(value, values_only=True)):  # cheap first: an
        if count > _SMALL_CONE or current.is_graph_input():  # activation's is not walked far
            return None
        if current.producer() is None and const_leaf(current) is None:
            return None
    try:
        program = compile_cone(value, stepwise=stepwise)
        if any(leaf.size > SMALL_ELEMENTS for leaf in program.leaves):
            return None
        array, _ = program.run()
    except (ValueError, IndexError, TypeError):  # NotExact too: not a constant we can read
        return None
    return None if array.size > SMALL_ELEMENTS else array


# ---------------------------------------------------------------- programs


@dataclasses.dataclass(frozen=True)
class Step:
    """One node of a compiled cone: its op, attributes, input slots and which output."""

    op: str
    attributes: dict[str, Any]
    inputs: tuple[int | None, ...]  # slots of the inputs
    output: int  # which output of the node this step yields
    outputs: int  # how many outputs the node has (Split)
    name: str = ""  # the node's name (else its output's), for the reasons given
    squares: bool = False  # a ReduceSum of squares (v*v or Pow(v, 2)): a norm's sum
    # the slot of the step that makes such squares where Casts stand between (the dynamo
    # exporter's float16 squares, widened to be summed in float32): held in its type first
    squares_from: int | None = None
    # the squares such a ReduceSum sums (its Mul or Pow): judged there, by how far holding
    # them in their type moves each unit's norm (_check_stored_squares), not as a value
    summed: bool = False
    opset: int | None = None  # of the node's domain, where the graph says it

    @property
    def where(self) -> str:
        """The node, as a reason names it."""
        return f"{self.op} '{self.name}'" if self.name else self.op


@dataclasses.dataclass
class Program:
    """A constant cone as slots in topological order: leaf tensors and steps; the last slot
    is the value. ``stepwise``: each ``Add``/``Sub``/``Mul``/``Div`` result is rounded to its
    type at once, as the graph holds it (a cone folded bit for bit), instead of held in float64
    and rounded once (a weight-norm site's weight as the graph means it); what no fold can give
    bit for bit as the graph and ONNX Runtime both do is declined (:func:`_check_stepwise`)."""

    slots: list[ir.TensorProtocol | Step]
    stepwise: bool = False

    @property
    def leaves(self) -> list[ir.TensorProtocol]:
        return [slot for slot in self.slots if not isinstance(slot, Step)]

    @property
    def ops(self) -> list[str]:
        return [slot.op for slot in self.slots if isinstance(slot, Step)]

    def run(self, units: Units | None = None, *, exact_halves: bool = False) -> Evaluated:
        """The value, float results of arithmetic held in float64 (see the module rules), or
        each rounded to its type at once where the program is :attr:`stepwise`.
        ``units``: v's shape and the axes its norm reduces, where the value is a weight-norm
        site's weight: a result of v's shape before the last step is judged unit by unit
        (:func:`_check_units`). A stepwise run declines what ONNX Runtime computes otherwise
        (:func:`_check_stepwise`): float16 and bfloat16 arithmetic, or, ``exact_halves``, such
        a step whose result rounds (ONNX Runtime's float32 gives the same exact value: a mask,
        ``v0 * m``, t340; a rounded one it may keep unrounded, t341, t342)."""
        last_use = {j: i for i, slot in enumerate(self.slots) if isinstance(slot, Step)
                    for j in slot.inputs if j is not None}  # fmt: skip
        results: list[Evaluated | None] = [None] * len(self.slots)
        # squares widened by a Cast to be summed, as made (exact): what the sum is judged by
        held = {
            s.squares_from for s in self.slots if isinstance(s, Step) and s.squares_from is not None
        }
        made: dict[int, Evaluated] = {}
        levels = [EXACT] * len(self.slots)
        with np.errstate(all="ignore"):
            for i, slot in enumerate(self.slots):
                if isinstance(slot, Step):
                    args = [None if j is None else results[j] for j in slot.inputs]
                    if self.stepwise:
                        _check_stepwise(slot, args, halves=not exact_halves)
                    value, dtype = _apply(slot, args)
                    if self.stepwise and dtype in FLOAT_TYPES and value.dtype != _form(dtype):
                        # as the graph holds it: rounded, and never wider than a stored value a
                        # later step mixes it with (a Concat of the two would widen that value,
                        # quieting a signalling NaN of it: t114)
                        rounded = _held(value, dtype)
                        if (
                            dtype in _HALVES
                            and slot.op in ARITHMETIC
                            and not np.array_equal(value, rounded.astype(F64), equal_nan=True)
                        ):
                            raise NotExact(_halves_said(slot, dtype, " rounds"))
                        value = rounded
                    if i in held:
                        made[i] = value, dtype
                    if (j := slot.squares_from) is not None and made[j][1] != dtype:
                        _check_held_squares(slot, args, value, *made[j])
                    for j, arg in zip(slot.inputs, args, strict=True):
                        if j is not None and arg is not None and isinstance(self.slots[j], Step):
                            _check_spread(arg, slot, cast(Step, self.slots[j]), value.size)
                    if units is not None and i < len(self.slots) - 1 and not slot.summed:
                        _check_units((value, dtype), slot, units)
                    results[i] = value, dtype
                    inputs = [levels[j] for j in slot.inputs if j is not None]
                    worst = max(inputs, default=EXACT)
                    # a stepwise program holds each value as the graph does: no rounding left
                    levels[i] = EXACT if self.stepwise else _level(slot, args, dtype, worst)
                    for j in slot.inputs:
                        if j is not None and last_use.get(j) == i:
                            results[j] = None  # free what nothing later reads
                else:
                    if slot.dtype not in _EXACT_TYPES:
                        raise NotExact(f"{slot.dtype.name.lower()} constants are not evaluated")
                    results[i] = tensor_array(slot)
        result = results[-1]
        assert result is not None
        return result


def compile_cone(value: ir.Value, *, stepwise: bool = False) -> Program:
    """Compile the cone of ``value``; ``NotExact`` when it is not all constants and known ops.
    ``stepwise``: see :class:`Program`."""
    slot_of: dict[ir.Value, int] = {}
    slots: list[ir.TensorProtocol | Step] = []
    stack: list[tuple[ir.Value, bool]] = [(value, False)]
    open_: set[ir.Value] = set()
    while stack:
        current, expanded = stack.pop()
        if current in slot_of:
            continue
        if not expanded:
            tensor = const_leaf(current)
            if tensor is not None:
                slot_of[current] = len(slots)
                slots.append(tensor)
                continue
        node = current.producer()
        if node is None:
            what = "a graph input" if current.is_graph_input() else "not a constant"
            raise NotExact(f"'{current.name}' is {what}")
        if not expanded:
            if current in open_:
                raise NotExact(f"'{current.name}' depends on itself")
            _check_node(node)
            open_.add(current)
            stack.append((current, True))
            stack.extend((i, False) for i in reversed(value_inputs(node)) if i is not None)
            continue
        open_.discard(current)
        inputs = tuple(None if i is None else slot_of[i] for i in value_inputs(node))
        op, attributes = node.op_type, {name: attr.value for name, attr in node.attributes.items()}
        if op == "CastLike":  # a Cast to the type of its second input, which is not read
            op, attributes = "Cast", {"to": _like_dtype(node).value}
        index = current.index()
        slot_of[current] = len(slots)
        squares = node.op_type == "ReduceSum" and sum_of_squares_source(node) is not None
        made = _mark_summed(slots, inputs[0]) if squares else None
        made = made if made != inputs[0] else None  # no Cast between
        name = node.name or current.name or ""
        outputs, opset = len(node.outputs), _opset(node)
        slots.append(
            Step(op, attributes, inputs, index or 0, outputs, name, squares, made, opset=opset)
        )
    return Program(slots, stepwise)


def _opset(node: ir.Node) -> int | None:
    """The version of the default domain that ``node`` is of: its own, else its graph's or an
    enclosing graph's import (None where none says)."""
    if node.version is not None:
        return node.version
    scope: ir.Graph | ir.Function | None = node.graph
    while scope is not None:
        for domain in ("", "ai.onnx"):
            if (version := scope.opset_imports.get(domain)) is not None:
                return version
        scope = enclosing_scope(scope)
    return None


def _mark_summed(slots: list[ir.TensorProtocol | Step], index: int | None) -> int | None:
    """Mark the step that makes the squares a ReduceSum sums (behind Casts) as
    :attr:`Step.summed`; its slot (None: no such step)."""
    while index is not None and isinstance(step := slots[index], Step) and step.op == "Cast":
        index = step.inputs[0]
    if index is not None and isinstance(step := slots[index], Step) and step.op in ("Mul", "Pow"):
        slots[index] = dataclasses.replace(step, summed=True)
        return index
    return None


def _like_dtype(node: ir.Node) -> ir.DataType:
    """The type a ``CastLike`` casts to: that of its second input, as the graph declares it
    or as the ops computing it keep their first input's (:data:`_KEEP_TYPE`)."""
    like = node.inputs[1] if len(node.inputs) > 1 else None
    dtype = _dtype_of(like)
    if dtype is None:
        named = "" if like is None else f" of '{like.name}'"
        raise NotExact(f"CastLike to the type{named}, which the graph does not declare")
    return dtype


# Ops whose output has their first input's type: ``w * alpha * beta`` as onnxscript writes it,
# ``CastLike(beta, Mul(w, CastLike(alpha, w)))``, a type no graph declares (t273)
_KEEP_TYPE = frozenset(
    {"Add", "Sub", "Mul", "Div", "Neg", "Abs", "Sqrt", "Reciprocal", "Pow", "Max", "Min"}
    | {"Clip", "Identity", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten"}
    | {"Expand", "Slice", "Split", "Concat", "Gather", "Tile", "Pad", "ReduceL2", "ReduceSum"}
    | {"ReduceSumSquare", "LpNormalization", "Range"}
)


def _dtype_of(value: ir.Value | None) -> ir.DataType | None:
    """``value``'s type as declared, or found through the ops that computed it (a ``Cast`` says
    it, a ``CastLike`` and :data:`_KEEP_TYPE` pass one on); None where neither tells."""
    seen = 0
    while value is not None and value.dtype is None and seen < 1000:
        if value.const_value is not None:
            return value.const_value.dtype
        node, seen = value.producer(), seen + 1
        if node is None or node.domain not in ("", "ai.onnx"):
            return None
        if node.op_type == "Cast":
            return cast_to(node)
        if node.op_type == "Shape":
            return ir.DataType.INT64
        if node.op_type == "Constant":  # onnxscript's op.Constant(value=W) (t275)
            return _constant_dtype(node)
        if not node.inputs:
            return None
        if node.op_type == "CastLike" and len(node.inputs) > 1:
            value = node.inputs[1]
        elif node.op_type in _KEEP_TYPE:
            value = node.inputs[0]
        else:
            return None
    return None if value is None else value.dtype


def _constant_dtype(node: ir.Node) -> ir.DataType | None:
    """The type of a ``Constant`` node's output, as its attribute says it."""
    for name, attr in node.attributes.items():
        if name == "value" and not attr.is_ref():
            return attr.value.dtype
        if name in ("value_float", "value_floats"):
            return ir.DataType.FLOAT
        if name in ("value_int", "value_ints"):
            return ir.DataType.INT64
    return None


def _check_node(node: ir.Node) -> None:
    if node.domain not in ("", "ai.onnx") or node.op_type not in _OPS:
        name = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        raise NotExact(f"{name} in the weight computation is not supported")
    if any(attr.is_ref() for attr in node.attributes.values()):
        raise NotExact(f"{node.op_type} takes an attribute from the function's caller")
    if node.op_type in _BASIC_OPS and "broadcast" in node.attributes:
        # opset 6 and before: B aligned with A from ``axis``, not from the last axis (t114)
        raise NotExact(f"{node.op_type} with the broadcast attribute of opset 6 is not evaluated")
    if node.op_type == "Cast" and cast_to(node) is None:
        raise NotExact("a Cast naming its type by a string (opset 5) is not evaluated")


def evaluate(value: ir.Value, units: Units | None = None) -> Evaluated:
    """Evaluate ``value`` from its constant leaves (``NotExact`` when that cannot be exact);
    ``units``: a weight-norm site's, where the value is its weight (:meth:`Program.run`)."""
    return compile_cone(value).run(units)


# ---------------------------------------------------------------- ops

Args = list[Evaluated | None]


def _arg(args: Args, i: int) -> np.ndarray:
    entry = args[i] if i < len(args) else None
    if entry is None:
        raise ValueError(f"missing input {i}")
    return entry[0]


def _dtype(args: Args, i: int = 0) -> ir.DataType:
    entry = args[i] if i < len(args) else None
    if entry is None:
        raise ValueError(f"missing input {i}")
    return entry[1]


# Ops whose integer list operands (axes, shapes, starts, pads, sizes) are read also as a 0-d
# tensor, as ONNX Runtime reads them (1.32: Unsqueeze's axes).
_SCALAR_LISTS = frozenset({"Unsqueeze"})


def int_list(array: np.ndarray, op: str, where: str) -> list[int]:
    """The integers of an operand that lists them (axes, a shape, starts, pads, sizes): a 1-D
    tensor, as ONNX's schemas want (or 0-d, for the ops of ``_SCALAR_LISTS``). Another rank is
    declined: ONNX Runtime refuses most such graphs (Reduce*, Squeeze, Reshape, Slice, Split,
    Pad: "must be a vector tensor"), and reading the operand flattened would turn a graph
    that cannot run into a folded one that runs; the few it runs anyway (Expand, a 2-D
    ConstantOfShape shape) stay computed, which is no wrong result."""
    array = np.asarray(array)
    if array.ndim != 1 and not (array.ndim == 0 and op in _SCALAR_LISTS):
        raise NotExact(f"{where}: a list operand of rank {array.ndim}, where ONNX wants 1")
    return [int(a) for a in array.reshape(-1)]


def _ints(step: Step, args: Args, i: int) -> list[int] | None:
    entry = args[i] if i < len(args) else None
    return None if entry is None else int_list(entry[0], step.op, step.where)


def _axes(step: Step, args: Args, i: int = 1) -> list[int] | None:
    """Axes from input ``i`` (newer opsets) or the ``axes`` attribute."""
    found = _ints(step, args, i)
    if found is not None:
        return found
    axes = step.attributes.get("axes")
    return None if axes is None else [int(a) for a in axes]


def axis_in_range(axis: int, rank: int, where: str, *, end: bool = False) -> int:
    """``axis`` of a tensor of ``rank`` dimensions as a non-negative index, where ONNX allows
    it: in ``[-rank, rank - 1]``, or ``[-rank, rank]`` for an axis that may name the end
    (``end``: Flatten's). Out of range, ONNX Runtime refuses the graph, so evaluating it is
    declined naming the axis: wrapping it modulo the rank would turn a graph that cannot run
    into a folded one that runs."""
    if not -rank <= axis <= (rank if end else rank - 1):
        raise NotExact(f"{where}: axis {axis} is out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def _axes_in_range(axes: Sequence[int], rank: int, where: str) -> tuple[int, ...]:
    return tuple(axis_in_range(a, rank, where) for a in axes)


def _check_size(shape: Sequence[int], op: str) -> None:
    count = math.prod(int(d) for d in shape)
    if count > MAX_ELEMENTS:
        raise NotExact(f"{op} would make {count} elements (more than {MAX_ELEMENTS})")


def _largest(result: np.ndarray) -> float:
    """The largest finite magnitude in ``result`` (0 for none): one pass over it."""
    return float(np.max(np.abs(result), where=np.isfinite(result), initial=0.0))


def _overflows(largest: float, dtype: ir.DataType) -> bool:
    """Whether a finite value of magnitude ``largest`` is inf in ``dtype`` (rounded to it)."""
    return dtype != ir.DataType.DOUBLE and bool(np.isinf(round_to(np.asarray(largest, F64), dtype)))


def _check_overflow(
    result: np.ndarray, dtype: ir.DataType, where: str, largest: float | None = None
) -> None:
    """Decline a float result that overflows its type, where the graph computes inf
    (``largest``: its largest finite magnitude, where the caller has it)."""
    if result.size and _overflows(_largest(result) if largest is None else largest, dtype):
        raise NotExact(f"{where} overflows {dtype.name.lower()} (the graph computes inf there)")


def _check_range(
    result: np.ndarray, dtype: ir.DataType, where: str, *, summed: bool = False
) -> None:
    """Decline an arithmetic result the graph cannot hold to its type's precision: one that
    overflows it (:func:`_check_overflow`), or one whose every non-zero value is below its
    smallest normal number (``g * v`` with ``g = 1e-35``, ``|v| ~ 1e-10`` in float32). The
    graph holds such a result in subnormals, whose spacing is as large as the values (or as 0),
    so a weight divided out of it later keeps none of its precision, where the fold computes it
    exactly; and one ulp of a weight wholly in subnormals is a large part of it, where the
    graph's roundings move a weight near a tie to the next one and the fold's does not (0.1%
    off, t58). A result with some values in the normal range keeps the rest to within half its
    largest value's spacing, as ordinary rounding does, element by element (float16 weights
    hold subnormal elements as a rule); a value spread over several elements is judged on its
    own (:func:`_check_spread`). Squares a ``ReduceSum`` sums (``summed``) are judged there
    instead (:func:`_check_stored_squares`: small float16 weights have squares all in
    subnormals, whose norms they move by less than an ulp, t106); their overflow is not."""
    if dtype == ir.DataType.DOUBLE or result.size == 0:
        return
    largest = _largest(result)  # once: the weights these checks see can be hundreds of MB
    _check_overflow(result, dtype, where, largest)
    if not summed and 0 < largest < float(_finfo(dtype).tiny):
        name = dtype.name.lower()
        raise NotExact(
            f"{where} underflows {name}: its every non-zero value is below the smallest "
            f"normal {name} (the graph holds it in subnormals, losing its precision)"
        )


def unit_max(x: np.ndarray, axes: Iterable[int], *, keepdims: bool = True) -> np.ndarray:
    """Each unit's largest ``|x|`` (reduced over ``axes``), in float64, without a temporary
    of ``x``'s size."""
    within = tuple(sorted(axes))
    return np.maximum(
        np.max(x, axis=within, keepdims=keepdims), -np.min(x, axis=within, keepdims=keepdims)
    ).astype(F64)


def _some_subnormal(largest: np.ndarray, tiny: float) -> bool:
    """Whether some unit's largest magnitude (``largest``) is non-zero and below ``tiny``,
    the smallest normal number: every non-zero value of that unit is subnormal."""
    return bool(np.any((largest > 0) & (largest < tiny)))


def _check_units(computed: Evaluated, step: Step, units: Units) -> None:
    """Decline a float value of v's shape that a later step reads (``g * v``, ``v / ||v||``)
    where, in some unit (``units``: v's shape and the axes its norm reduces), its every
    non-zero element is below the smallest normal number: the graph holds that unit in
    subnormals, and its weight keeps little of its precision (one unit's ``g * v`` of 1e-43
    among normal ones: 7% off, t97), where the whole value has normal elements and passes
    :func:`_check_range`. The weight itself is judged whole there (``Clip(norm, inf)``
    divides exact values once)."""
    array, dtype = computed
    shape, reduced = units
    if dtype not in FLOAT_TYPES or dtype == ir.DataType.DOUBLE or array.shape != shape:
        return
    if not array.size or not reduced:
        return
    if _some_subnormal(unit_max(array, reduced), float(_finfo(dtype).tiny)):
        name = dtype.name.lower()
        raise NotExact(
            f"{step.where} underflows {name}: in some unit, its every non-zero value is below "
            f"the smallest normal {name} (the graph holds that unit in subnormals, losing its "
            "precision)"
        )


# Ops that broadcast a value over more elements than it has (a Concat or a Pad only moves it).
_SPREADING = frozenset({"Mul", "Div", "Add", "Sub", "Pow", "Expand", "Max", "Min", "Clip"})


def _check_spread(computed: Evaluated, by: Step, spread: Step, size: int) -> None:
    """Decline a computed float value that a step (``by``) spreads over more elements than it
    has (``size``: its result's), such as a unit's ``g / ||v||`` over the unit, where one of
    its non-zero values is below the smallest normal number: the graph holds it in
    subnormals, and every weight of that unit computed from it loses its precision (one unit's
    quotient of 1e-45 among normal ones: 47% off, t97), where the fold computes it exactly.
    ``spread``: the step that computed the value."""
    array, dtype = computed
    if by.op not in _SPREADING or dtype not in FLOAT_TYPES or dtype == ir.DataType.DOUBLE:
        return
    if array.size >= size:
        return
    tiny = float(_finfo(dtype).tiny)
    if _least_nonzero(np.asarray(array)) < tiny:
        name = dtype.name.lower()
        raise NotExact(
            f"{spread.where} underflows {name}: a non-zero value of it, which {by.where} "
            f"spreads over several elements, is below the smallest normal {name} (the graph "
            "holds it in subnormals, losing the precision of every element computed from it)"
        )


def _least_nonzero(result: np.ndarray) -> float:
    """The smallest non-zero finite magnitude in ``result`` (inf for none)."""
    magnitude = np.abs(result)
    chosen = (magnitude != 0) & np.isfinite(magnitude)
    return float(np.min(magnitude, where=chosen, initial=math.inf))


def _finfo(dtype: ir.DataType) -> Any:
    """numpy's ``finfo`` of a float type, bfloat16 included (ml_dtypes')."""
    return ml_dtypes.finfo(dtype.numpy())


def _check_squares(
    sums: np.ndarray, count: int, dtype: ir.DataType, where: str, *, norm: bool
) -> None:
    """Decline sums of ``count`` squares outside the normal range of the type they are summed
    in: ``dtype``, or for a norm (``norm``: ReduceL2, LpNormalization) of float16/bfloat16,
    float32, as ONNX Runtime sums them; a norm must then be a normal ``dtype`` itself.

    However the graph orders the sum, each square and partial sum is within ``count``
    roundings of the float64 sum, so a sum that overflows with that margin may be inf in the
    graph (its norm inf, its weight 0). A non-zero sum below the smallest normal is 0 in the
    graph (its weight NaN) or has lost the bits that make the norm exact."""
    summed_in = ir.DataType.FLOAT if norm and dtype in _HALVES else dtype
    info = _finfo(summed_in)
    finite = sums[np.isfinite(sums)]
    if not finite.size:
        return
    if finite.max() > float(info.max) / (1 + (count + 1) * float(info.eps)):
        name = summed_in.name.lower()
        raise NotExact(f"{where}: the sum of squares overflows {name} (the graph computes inf)")
    nonzero = finite[finite != 0]
    least = float(nonzero.min()) if nonzero.size else math.inf
    if least < float(info.tiny):
        what = f"the sum of squares is below the smallest normal {summed_in.name.lower()}"
    elif norm and least < float(_finfo(dtype).tiny) ** 2:
        what = f"the norm is below the smallest normal {dtype.name.lower()}"
    else:
        return
    raise NotExact(f"{where}: {what} (the graph computes 0 or an inexact norm there)")


def _check_square_terms(
    x: np.ndarray,
    sums: np.ndarray,
    axis: tuple[int, ...],
    keepdims: bool,
    dtype: ir.DataType,
    where: str,
) -> None:
    """Decline squares an op computes inside itself (ReduceL2, ReduceSumSquare,
    LpNormalization) of which, in some unit (summed over ``axis``), every non-zero one is
    below the smallest normal number of the type they are computed in: float32 for float16
    and bfloat16, as ONNX Runtime computes them, else ``dtype``. The graph holds them in
    subnormals and that unit's norm loses their precision (16384 squares of 1e-21 sum to a
    normal 1.6e-38, 2.6e-4 off). A pass over ``x`` only where the sums leave it open: a sum of
    ``count`` squares of at least ``count`` times the smallest normal has a normal square
    (:func:`_left_open`)."""
    squared_in = ir.DataType.FLOAT if dtype in _HALVES else dtype
    if squared_in == ir.DataType.DOUBLE or not sums.size:
        return
    tiny = float(_finfo(squared_in).tiny)
    if not _left_open(sums, x.shape, axis, tiny):
        return
    largest = unit_max(x, axis, keepdims=keepdims)
    if _some_subnormal(largest * largest, tiny):
        name = squared_in.name.lower()
        raise NotExact(
            f"{where}: its squares underflow {name}: in some unit, every non-zero square is "
            f"below the smallest normal {name} (the graph holds them in subnormals, losing "
            "that norm's precision)"
        )


def _check_held_squares(
    step: Step, args: Args, sums: np.ndarray, exact: np.ndarray, held: ir.DataType
) -> None:
    """Decline squares made in ``held`` (float16) and widened by a Cast to be summed (the
    dynamo exporter's float16 norm) where holding them in ``held`` moved some unit's norm by
    more than an ulp of ``held``: ``sums`` are those of the squares as the graph holds them,
    ``exact`` the squares as made. Runtimes differ there too (ONNX Runtime sums such squares
    unrounded: its weight 6 ulps from the spec's rounded ones on |v| about 1e-3, t108)."""
    if held not in FLOAT_TYPES or held == ir.DataType.DOUBLE or not sums.size:
        return
    _, _, axis, keepdims, _ = _reduction(step, args)
    info = _finfo(held)
    if not _left_open(sums, exact.shape, axis, float(info.tiny)) and not np.any(sums == 0):
        return
    whole = np.asarray(np.sum(exact, axis=axis, keepdims=keepdims, dtype=F64))
    if (moved := _norm_moved(sums, whole)) > float(info.eps):
        name = held.name.lower()
        raise NotExact(
            f"{step.where}: its squares are held in {name} subnormals before they are summed, "
            f"which moves some unit's norm by {moved / float(info.eps):.1f} ulps "
            "(runtimes differ there: ONNX Runtime sums them unrounded)"
        )


def _norm_moved(held: np.ndarray, exact: np.ndarray) -> float:
    """How far, relative to it, some unit's norm of the sums ``exact`` moves where the graph
    sums ``held`` instead (the largest; 0 for none): squares rounded to 0 move it all (1), a
    unit of zeros not at all (0 / 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        moved = np.abs(np.sqrt(held) - np.sqrt(exact)) / np.sqrt(exact)
    moved = moved[np.isfinite(moved)]
    return float(moved.max()) if moved.size else 0.0


def _left_open(sums: np.ndarray, shape: Sequence[int], axis: tuple[int, ...], tiny: float) -> bool:
    """Whether some unit's sum leaves open that all its squares are below ``tiny``: a sum of
    ``count`` squares of at least ``count`` times ``tiny`` has a square of at least ``tiny``."""
    count = math.prod(shape[a] for a in axis)
    return bool(np.any(np.isfinite(sums) & (sums < count * tiny)))


def _check_stored_squares(
    squares: np.ndarray,
    sums: np.ndarray,
    axis: tuple[int, ...],
    keepdims: bool,
    dtype: ir.DataType,
    where: str,
) -> None:
    """Decline squares the graph stores (``ReduceSum`` of ``Mul(v, v)`` or ``Pow(v, 2)``, in
    ``dtype``) where holding them in ``dtype`` moves some unit's norm by more than an ulp of
    it: squares in subnormals keep little of their precision (one unit of squares of 1e-21
    among normal ones: a weight 18 float32 ulps off, folded, where the fold sums the exact
    squares). Whether a unit's squares are all subnormal is no test by itself: small float16
    weights have such units (a unit of |v| below 7.8e-3), and their norms move by less than
    an ulp (ONNX Runtime's weight within one ulp of the exact one, t106). A pass over
    ``squares`` only where the sums leave it open (as :func:`_check_square_terms`)."""
    if dtype == ir.DataType.DOUBLE or dtype not in FLOAT_TYPES or not sums.size:
        return
    info = _finfo(dtype)
    if not _left_open(sums, squares.shape, axis, float(info.tiny)):
        return
    held = np.asarray(np.sum(round_to(squares, dtype), axis=axis, keepdims=keepdims, dtype=F64))
    if (moved := _norm_moved(held, sums)) > float(info.eps):
        name = dtype.name.lower()
        ulps = moved / float(info.eps)
        raise NotExact(
            f"{where}: its squares underflow {name}: the graph holds some unit's in subnormals, "
            f"which moves that unit's norm by {ulps:.1f} ulps (losing its precision)"
        )


# -------------------------------- arithmetic


def _float_args(step: Step, args: Args) -> ir.DataType:
    dtype = _dtype(args)
    if dtype not in FLOAT_TYPES:
        raise NotExact(f"{step.op} on {dtype.name.lower()} is not evaluated")
    return dtype


_BINARY: dict[str, Callable[..., np.ndarray]] = {
    "Mul": np.multiply,
    "Div": np.divide,
    "Add": np.add,
    "Sub": np.subtract,
}


def _binary(step: Step, args: Args) -> Evaluated:
    a, b, dtype = _arg(args, 0), _arg(args, 1), _dtype(args)
    if step.opset is not None and step.opset < 7 and a.shape != b.shape:
        raise NotExact(f"{step.where} broadcasts, which it does not below opset 7")
    _check_size(np.broadcast_shapes(a.shape, b.shape), step.op)
    if dtype in INT_TYPES:
        return _int_binary(step.op, a, b, dtype), dtype
    _float_args(step, args)
    result = _BINARY[step.op](a, b, dtype=F64)
    _check_range(result, dtype, step.where, summed=step.summed)
    return result, dtype


def _int_binary(op: str, a: np.ndarray, b: np.ndarray, dtype: ir.DataType) -> np.ndarray:
    for x in (a, b):
        if x.size and np.abs(x.astype(F64)).max() >= _EXACT_INT:
            raise NotExact(f"integer {op} with operands beyond 2**53 is not evaluated")
    if op == "Div":
        if np.any(b == 0):
            raise NotExact("integer division by zero")
        a64, b64 = a.astype(np.int64), b.astype(np.int64)
        quotient = np.floor_divide(a64, b64)
        inexact = (a64 - quotient * b64 != 0) & ((a64 < 0) != (b64 < 0))
        result = (quotient + inexact).astype(F64)  # ONNX integer Div truncates toward zero
    else:
        result = _BINARY[op](a.astype(F64), b.astype(F64))
        if result.size and np.abs(result).max() >= _EXACT_INT:
            raise NotExact(f"integer {op} beyond 2**53 is not evaluated")
    info = np.iinfo(dtype.numpy())
    if result.size and (result.min() < info.min or result.max() > info.max):
        raise NotExact(f"integer {op} overflows {dtype.name.lower()}")
    return result.astype(dtype.numpy())


def _unary(fn: Callable[..., np.ndarray]) -> Callable[[Step, Args], Evaluated]:
    def run(step: Step, args: Args) -> Evaluated:
        dtype = _float_args(step, args)
        result = fn(_arg(args, 0), dtype=F64)
        _check_range(result, dtype, step.where)
        return result, dtype

    return run


def _pow(step: Step, args: Args) -> Evaluated:
    dtype = _float_args(step, args)
    base, exponent = _arg(args, 0), _arg(args, 1)
    _check_size(np.broadcast_shapes(base.shape, exponent.shape), step.op)
    result = np.power(base, exponent, dtype=F64)
    _check_range(result, dtype, step.where, summed=step.summed)
    return result, dtype


def _extreme(step: Step, args: Args) -> Evaluated:
    """Max/Min of any number of inputs: a selection, exact in every numeric type."""
    present = [a for a in args if a is not None]
    dtype = present[0][1]
    if dtype not in FLOAT_TYPES | INT_TYPES:
        raise NotExact(f"{step.op} on {dtype.name.lower()} is not evaluated")
    fn = np.maximum if step.op == "Max" else np.minimum
    result = present[0][0]
    if step.opset is not None and step.opset < 8 and len({a.shape for a, _ in present}) > 1:
        raise NotExact(f"{step.where} broadcasts, which it does not below opset 8")
    for other, _ in present[1:]:
        _check_size(np.broadcast_shapes(result.shape, other.shape), step.op)
        result = fn(result, other)
    return result, dtype


def _clip(step: Step, args: Args) -> Evaluated:
    x, dtype = _arg(args, 0), _dtype(args)
    if dtype not in FLOAT_TYPES | INT_TYPES:
        raise NotExact(f"Clip on {dtype.name.lower()} is not evaluated")
    low = args[1][0] if len(args) > 1 and args[1] is not None else step.attributes.get("min")
    high = args[2][0] if len(args) > 2 and args[2] is not None else step.attributes.get("max")
    if dtype in FLOAT_TYPES:  # a bound not given is the type's own (the spec; ONNX Runtime):
        largest = float(_finfo(dtype).max)  # Clip(x, min=inf) is its largest finite value
        low = -largest if low is None else low
        high = largest if high is None else high
    if low is not None:
        x = np.maximum(x, np.asarray(low, x.dtype if dtype in INT_TYPES else F64))
    if high is not None:
        x = np.minimum(x, np.asarray(high, x.dtype if dtype in INT_TYPES else F64))
    return x, dtype


def sum_of_squares(
    x: np.ndarray, axis: tuple[int, ...], keepdims: bool, where: str = "the sum of squares"
) -> np.ndarray:
    """Sum of squares in float64 without a squared temporary (einsum accumulates in place);
    each axis must be one of x's (``axis_in_range``, ``where`` naming the node)."""
    letters = "abcdefghijklmnopqrstuvwxyz"[: x.ndim]
    axes = set(_axes_in_range(axis, x.ndim, where))
    kept = "".join(c for i, c in enumerate(letters) if i not in axes)
    spec = f"{letters},{letters}->{kept}"
    if x.ndim and 0 not in axes:  # one sum a row of the first axis: the rows split in two
        result = np.empty([d for i, d in enumerate(x.shape) if i not in axes], F64)

        def rows(part: slice) -> None:
            np.einsum(spec, x[part], x[part], dtype=F64, out=result[part])

        halves.by_rows(rows, x.shape[0], x.nbytes)
    else:
        result = np.einsum(spec, x, x, dtype=F64)
    if keepdims:
        result = np.reshape(result, [1 if i in axes else d for i, d in enumerate(x.shape)])
    return np.asarray(result)


def _reduction(
    step: Step, args: Args
) -> tuple[np.ndarray, ir.DataType, tuple[int, ...], bool, int]:
    """A Reduce* node's input and its type, axes, keepdims and how many elements each result
    sums."""
    dtype = _float_args(step, args)
    x = _arg(args, 0)
    axes = _axes(step, args)
    keepdims = bool(step.attributes.get("keepdims", 1))
    if not axes:
        if step.attributes.get("noop_with_empty_axes", 0):
            return x, dtype, (), keepdims, 1
        axes = list(range(x.ndim))
    axis = tuple(sorted(set(_axes_in_range(axes, x.ndim, step.where))))  # a repeat is one axis
    count = math.prod(x.shape[a] for a in axis)
    return x, dtype, axis, keepdims, count


def _reduce_sum(step: Step, args: Args) -> Evaluated:
    """``ReduceSum``, and ``ReduceSumSquare`` (its input squared): a sum of squares must lie
    in the normal range of its type (``_check_squares``)."""
    x, dtype, axis, keepdims, count = _reduction(step, args)
    squares = step.op == "ReduceSumSquare"
    if squares:
        result = sum_of_squares(x, axis, keepdims, step.where)
    else:
        result = np.asarray(np.sum(x, axis=axis, keepdims=keepdims, dtype=F64))
    _check_range(result, dtype, step.where)
    if squares or step.squares:
        _check_squares(result, count, dtype, step.where, norm=False)
    if squares:
        _check_square_terms(x, result, axis, keepdims, dtype, step.where)
    elif step.squares:
        _check_stored_squares(x, result, axis, keepdims, dtype, step.where)
    return result, dtype


def _reduce_l2(step: Step, args: Args) -> Evaluated:
    x, dtype, axis, keepdims, count = _reduction(step, args)
    sums = sum_of_squares(x, axis, keepdims, step.where)
    _check_squares(sums, count, dtype, step.where, norm=True)
    _check_square_terms(x, sums, axis, keepdims, dtype, step.where)
    result = np.sqrt(sums)
    _check_overflow(result, dtype, step.where)
    return result, dtype


def _lp_normalization(step: Step, args: Args) -> Evaluated:
    dtype = _float_args(step, args)
    x = _arg(args, 0)
    if int(step.attributes.get("p", 2)) != 2:
        raise NotExact("LpNormalization with p != 2 is not evaluated")
    axis = axis_in_range(int(step.attributes.get("axis", -1)), x.ndim, step.where)
    sums = sum_of_squares(x, (axis,), True, step.where)
    _check_squares(sums, x.shape[axis], dtype, step.where, norm=True)
    _check_square_terms(x, sums, (axis,), True, dtype, step.where)
    norm = np.sqrt(sums)
    if norm.size and _overflows(_largest(norm), dtype):
        name = dtype.name.lower()  # its output, at most 1, is in range either way
        raise NotExact(
            f"{step.where}: the norm it divides by exceeds the largest {name}, where runtimes "
            f"differ (ONNX Runtime keeps it in float32; one that keeps it in {name} gives 0)"
        )
    # ONNX Runtime leaves a zero vector at zero rather than dividing 0 by 0
    shape = np.broadcast_shapes(x.shape, norm.shape)
    return np.divide(x, norm, out=np.zeros(shape), where=norm != 0), dtype


# -------------------------------- casts


def _cast(step: Step, args: Args) -> Evaluated:
    x, source = _arg(args, 0), _dtype(args)
    target = ir.DataType(int(step.attributes["to"]))
    if source not in _EXACT_TYPES or target not in _EXACT_TYPES:
        raise NotExact(f"Cast from {source.name.lower()} to {target.name.lower()} is not evaluated")
    if source in FLOAT_TYPES and target in FLOAT_TYPES:
        if source != target and np.isnan(x).any():
            # ONNX Runtime's CPU kernel makes every NaN float16's one quiet NaN, hardware
            # conversions keep its payload: the bits depend on the kernel
            raise NotExact(
                f"Cast of NaN from {source.name.lower()} to {target.name.lower()}: its bits "
                "after a Cast depend on the kernel"
            )
        if widens_exactly(target, source):  # narrowing (or same): one rounding to the target
            _check_overflow(np.asarray(x, F64), target, step.where)
            if source == ir.DataType.DOUBLE and target in _HALVES:
                _check_one_rounding(x, source, target)
            return _held(x, target), target
        # widening, or float16 <-> bfloat16: the graph holds the value in the source type first
        held = _held(x, source).astype(F64)
        _check_overflow(held, target, step.where)  # bfloat16's range is float16's many times
        return _held(held, target), target
    if source in FLOAT_TYPES:
        x = _held(x, source).astype(F64)
        if target == ir.DataType.BOOL:
            return x != 0, target
        if not np.all(np.isfinite(x)):
            raise NotExact(f"Cast of NaN or Inf to {target.name.lower()} is not defined")
        return _fit(np.trunc(x), target), target
    # integers and booleans
    if target in FLOAT_TYPES:
        if x.size and np.abs(x.astype(F64)).max() >= _EXACT_INT:
            raise NotExact(f"Cast of integers beyond 2**53 to {target.name.lower()}")
        _check_overflow(x.astype(F64), target, step.where)  # 65520 is inf in float16
        if target in _HALVES:
            _check_one_rounding(x.astype(F64), source, target)
        return _held(x.astype(F64), target), target
    if target == ir.DataType.BOOL:
        return x != 0, target
    return _fit(x, target), target


_HALVES = (ir.DataType.FLOAT16, ir.DataType.BFLOAT16)


def _check_one_rounding(x: np.ndarray, source: ir.DataType, target: ir.DataType) -> None:
    """Decline a Cast from double or an integer type to float16/bfloat16 whose values round
    differently once than through float32, as ONNX Runtime's CPU kernel rounds them: the
    graph's value would depend on the kernel."""
    once = round_to(x, target)
    twice = round_to(np.asarray(x, F64).astype(np.float32), target)
    differ = int(np.count_nonzero(once.view(np.uint16) != twice.view(np.uint16)))
    if differ:
        raise NotExact(
            f"Cast from {source.name.lower()} to {target.name.lower()} rounds {differ} "
            "value(s) differently once than through float32 (as ONNX Runtime's CPU kernel does)"
        )


def _fit(x: np.ndarray, target: ir.DataType) -> np.ndarray:
    """Integers (or integral floats) converted to integer type ``target``, which must hold them."""
    info = np.iinfo(target.numpy())
    # as Python numbers, which compare ints and floats exactly: in float64, int64's largest
    # value rounds up to 2**63 and a float 2**63 would pass as within it
    if x.size and (x.min().item() < info.min or x.max().item() > info.max):
        raise NotExact(f"Cast to {target.name.lower()} of values out of its range")
    return x.astype(target.numpy())


# -------------------------------- layout


def _same(fn: Callable[[Step, Args], np.ndarray]) -> Callable[[Step, Args], Evaluated]:
    """A layout op: the result has the dtype of the first input."""

    def run(step: Step, args: Args) -> Evaluated:
        return fn(step, args), _dtype(args)

    return run


def _reshape(step: Step, args: Args) -> np.ndarray:
    x = _arg(args, 0)
    shape = _ints(step, args, 1)
    if shape is None:
        shape = [int(d) for d in step.attributes.get("shape", [])]
    if not step.attributes.get("allowzero", 0):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


def _flatten(step: Step, args: Args) -> np.ndarray:
    x = _arg(args, 0)
    axis = axis_in_range(int(step.attributes.get("axis", 1)), x.ndim, step.where, end=True)
    outer = math.prod(x.shape[:axis])
    return x.reshape(outer, -1)


def _unsqueeze(step: Step, args: Args) -> np.ndarray:
    x = _arg(args, 0)
    axes = _axes(step, args) or []
    rank = x.ndim + len(axes)  # the axes name dimensions of the result
    return np.expand_dims(x, tuple(sorted(_axes_in_range(axes, rank, step.where))))


def _squeeze(step: Step, args: Args) -> np.ndarray:
    x = _arg(args, 0)
    axes = _axes(step, args)
    if axes == [] and 1 in x.shape:
        raise NotExact(
            f"{step.where}: empty axes, which squeeze none by ONNX's semantics and every axis of "
            "size 1 in ONNX Runtime"
        )
    return (
        np.squeeze(x) if axes is None else np.squeeze(x, _axes_in_range(axes, x.ndim, step.where))
    )


def _transpose(step: Step, args: Args) -> np.ndarray:
    x, perm = _arg(args, 0), step.attributes.get("perm")
    if perm is not None and sorted(int(p) for p in perm) != list(range(x.ndim)):
        raise NotExact(f"{step.where}: perm {list(perm)} is no permutation of rank {x.ndim}")
    return np.transpose(x, None if perm is None else [int(p) for p in perm])


def _expand(step: Step, args: Args) -> np.ndarray:
    x = _arg(args, 0)
    shape = np.broadcast_shapes(x.shape, tuple(_ints(step, args, 1) or ()))
    _check_size(shape, "Expand")
    return np.broadcast_to(x, shape)


def _tile(step: Step, args: Args) -> np.ndarray:
    x, repeats = _arg(args, 0), _ints(step, args, 1)
    if repeats is None or len(repeats) != x.ndim:
        raise NotExact(f"{step.where}: repeats {repeats} do not fit a tensor of rank {x.ndim}")
    if min(repeats, default=0) < 0:
        raise NotExact(f"{step.where}: a negative repeat in {repeats}")
    _check_size([d * r for d, r in zip(x.shape, repeats, strict=True)], step.where)
    return np.tile(x, repeats)


# Ends that ONNX Runtime reads as "to the end" in either direction (INT32_MAX, INT64_MAX)
_TO_THE_END = frozenset({2**31 - 1, 2**63 - 1})


def _slice(step: Step, args: Args) -> np.ndarray:
    x = _arg(args, 0)
    if len(args) > 1:  # opset >= 10: starts, ends, axes, steps as inputs
        starts, ends = _ints(step, args, 1) or [], _ints(step, args, 2) or []
        axes, steps = _ints(step, args, 3), _ints(step, args, 4)
    else:
        starts = [int(a) for a in step.attributes.get("starts", [])]
        ends = [int(a) for a in step.attributes.get("ends", [])]
        axes, steps = step.attributes.get("axes"), None
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    if step.opset is not None and step.opset < 11 and any(a < 0 for a in axes):
        # ONNX Runtime refuses them there, and the graph's shapes are inferred otherwise (t335)
        raise NotExact(f"{step.where}: negative axes {axes}, which Slice takes from opset 11 on")
    axes = list(_axes_in_range(axes, x.ndim, step.where))
    if len(set(axes)) != len(axes):
        raise NotExact(f"{step.where}: an axis is sliced more than once in {axes}")
    steps = [1] * len(starts) if steps is None else steps
    index: list[slice] = [slice(None)] * x.ndim
    for start, end, axis, stride in zip(starts, ends, axes, steps, strict=True):
        if stride == 0:
            raise ValueError("Slice step 0")
        dim = x.shape[axis]
        if stride < 0 and end in _TO_THE_END and dim > 0:
            raise NotExact(
                f"{step.where}: an end of {end} with a negative step, which slices nothing by "
                "ONNX's semantics and to the axis's start in ONNX Runtime"
            )
        start, end = start + dim if start < 0 else start, end + dim if end < 0 else end
        if stride > 0:
            start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        else:
            start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
        index[axis] = slice(start, end if end >= 0 else None, stride)
    return x[tuple(index)]


def _concat(step: Step, args: Args) -> Evaluated:
    present = [a for a in args if a is not None]
    dtypes = {d for _, d in present}
    if len(dtypes) != 1:
        raise ValueError("Concat of different dtypes")
    arrays = [a for a, _ in present]
    axis = axis_in_range(int(step.attributes["axis"]), arrays[0].ndim, step.where)
    if any(a.dtype != arrays[0].dtype for a in arrays):  # float64 results next to stored values
        arrays = [a.astype(F64) for a in arrays]
    return np.concatenate(arrays, axis=axis), present[0][1]


def _split(step: Step, args: Args) -> np.ndarray:
    x = _arg(args, 0)
    axis = axis_in_range(int(step.attributes.get("axis", 0)), x.ndim, step.where)
    sizes = _ints(step, args, 1)
    if sizes is None and "split" in step.attributes:
        sizes = [int(s) for s in step.attributes["split"]]
    if sizes is None:
        count = int(step.attributes.get("num_outputs", step.outputs))
        chunk = -(-x.shape[axis] // count)
        sizes = [chunk] * (count - 1) + [x.shape[axis] - chunk * (count - 1)]
    if len(sizes) != step.outputs or sum(sizes) != x.shape[axis] or min(sizes) < 0:
        raise ValueError(f"Split sizes {sizes} do not fit {x.shape[axis]}")
    start = sum(sizes[: step.output])
    index: list[slice] = [slice(None)] * x.ndim
    index[axis] = slice(start, start + sizes[step.output])
    return x[tuple(index)]


def _shape(step: Step, args: Args) -> Evaluated:
    dims = np.array(_arg(args, 0).shape, np.int64)
    start, end = step.attributes.get("start", 0), step.attributes.get("end")
    return dims[int(start) : None if end is None else int(end)], ir.DataType.INT64


def _gather(step: Step, args: Args) -> np.ndarray:
    x, indices = _arg(args, 0), _arg(args, 1)
    if _dtype(args, 1) not in (ir.DataType.INT32, ir.DataType.INT64):
        raise NotExact("Gather indices must be int32 or int64")
    axis = axis_in_range(int(step.attributes.get("axis", 0)), x.ndim, step.where)
    dim = x.shape[axis]
    if indices.size and (indices.min() < -dim or indices.max() >= dim):
        raise NotExact("Gather index out of range")
    _check_size((*x.shape[:axis], *indices.shape, *x.shape[axis + 1 :]), "Gather")
    return np.take(x, indices.astype(np.int64), axis=axis)


def _scatter_nd(step: Step, args: Args) -> np.ndarray:
    """``ScatterND`` without a reduction: ``data`` with the elements (or slices) that
    ``indices`` name replaced by those of ``updates``, moved as they are (diffusers' UNet1D
    builds its resampling kernels so, ``weight[idx, idx] = kernel``, t327). Indices naming
    one place twice, whose last write ONNX leaves undefined, are declined."""
    data, indices, updates = _arg(args, 0), _arg(args, 1), _arg(args, 2)
    reduction = step.attributes.get("reduction", "none")
    reduction = reduction.decode() if isinstance(reduction, bytes) else str(reduction)
    if reduction != "none":
        raise NotExact(f"ScatterND with reduction {reduction!r} is not evaluated")
    if _dtype(args, 1) != ir.DataType.INT64 or _dtype(args, 2) != _dtype(args, 0):
        raise NotExact("ScatterND takes int64 indices and updates of the data's type")
    depth = indices.shape[-1] if indices.ndim else 0
    if not 1 <= depth <= data.ndim or updates.shape != (*indices.shape[:-1], *data.shape[depth:]):
        raise NotExact(f"{step.where}: ScatterND indices and updates do not fit the data")
    places = indices.reshape(-1, depth).astype(np.int64)
    dims = np.array(data.shape[:depth], np.int64)
    if places.size and ((places < -dims).any() or (places >= dims).any()):
        raise NotExact("ScatterND index out of range")
    places = places % dims
    if len(np.unique(places, axis=0)) != len(places):
        raise NotExact("ScatterND names one place twice (which write wins is not defined)")
    out = data.copy()
    out[tuple(places.T)] = updates.reshape(-1, *data.shape[depth:])
    return out


_PAD_MODES: dict[str, Literal["reflect", "edge", "wrap"]] = {
    "reflect": "reflect",  # ONNX's reflect is numpy's: the edge element is not repeated
    "edge": "edge",
    "wrap": "wrap",
}


def _pad(step: Step, args: Args) -> np.ndarray:
    """``Pad``: the elements of x moved, the new ones the fill value (``constant``) or copies
    of x's own (``reflect``, ``edge``, ``wrap``); a negative width crops. Widths that ONNX
    leaves undefined (a reflection or wrap wider than the axis, cropping in a copying mode)
    are declined rather than guessed."""
    x = _arg(args, 0)
    mode = step.attributes.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if len(args) > 1:  # opset >= 11: pads, constant_value and axes as inputs
        pads = _ints(step, args, 1) or []
        fill = _arg(args, 2) if len(args) > 2 and args[2] is not None else None
        axes = _ints(step, args, 3) if len(args) > 3 else None
    else:
        pads = [int(p) for p in step.attributes.get("pads", [])]
        value = float(step.attributes.get("value", 0.0))  # -0.0 too (t335)
        fill = _held(np.array(value, F64), _dtype(args))
        axes = None
    axes = list(range(x.ndim)) if axes is None else list(_axes_in_range(axes, x.ndim, step.where))
    if len(pads) != 2 * len(axes) or len(set(axes)) != len(axes):
        raise ValueError(f"Pad widths {pads} do not fit axes {axes}")
    widths = [(0, 0)] * x.ndim
    for k, axis in enumerate(axes):
        widths[axis] = (pads[k], pads[k + len(axes)])
    if mode != "constant" and mode not in _PAD_MODES:
        raise NotExact(f"Pad mode {mode!r} is not evaluated")
    if mode != "constant" and any(min(w) < 0 for w in widths):
        raise NotExact(f"Pad mode {mode!r} with a negative width is not evaluated")
    if mode == "reflect" and any(max(w) >= d for w, d in zip(widths, x.shape, strict=True)):
        raise NotExact("Pad mode 'reflect' wider than the axis is not evaluated")
    if mode == "wrap" and any(max(w) > d for w, d in zip(widths, x.shape, strict=True)):
        raise NotExact("Pad mode 'wrap' wider than the axis is not evaluated")
    if mode == "edge" and any(d == 0 and max(w) > 0 for w, d in zip(widths, x.shape, strict=True)):
        raise NotExact("Pad mode 'edge' of an empty axis is not evaluated")
    crop = tuple(
        slice(max(-a, 0), d - max(-b, 0)) for (a, b), d in zip(widths, x.shape, strict=True)
    )
    x = x[crop]
    grow = [(max(a, 0), max(b, 0)) for a, b in widths]
    _check_size([d + a + b for d, (a, b) in zip(x.shape, grow, strict=True)], "Pad")
    if mode != "constant":
        return np.pad(x, grow, mode=_PAD_MODES[mode])
    if fill is None:
        return np.pad(x, grow, mode="constant")
    if fill.size != 1:
        raise ValueError("Pad constant_value must be one value")
    x = x.astype(np.result_type(x, fill), copy=False)  # a fill held in float64 stays so
    return np.pad(x, grow, mode="constant", constant_values=fill.reshape(-1)[0])


def _constant_of_shape(step: Step, args: Args) -> Evaluated:
    """``ConstantOfShape``: the shape filled with the one value of its ``value`` attribute."""
    shape = _ints(step, args, 0) or []
    if any(d < 0 for d in shape):
        raise ValueError(f"ConstantOfShape of a negative shape {shape}")
    _check_size(shape, "ConstantOfShape")
    tensor = step.attributes.get("value")
    if tensor is None:
        return np.zeros(shape, np.float32), ir.DataType.FLOAT
    if tensor.dtype not in _EXACT_TYPES:
        raise NotExact(f"{tensor.dtype.name.lower()} constants are not evaluated")
    array, dtype = tensor_array(tensor)
    if array.size != 1:
        raise ValueError("ConstantOfShape value must be one value")
    return np.full(shape, array.reshape(-1)[0], dtype=array.dtype), dtype


def _range(step: Step, args: Args) -> np.ndarray:
    """``Range`` of integers: ``start + i * delta`` while short of ``limit`` (the indices of a
    ``ScatterND``, diffusers' UNet1D kernels). A float Range, whose values ONNX Runtime
    computes by adding ``delta`` in turn, rounding each sum, is not evaluated; nor an integer
    one whose span ``limit - start`` its type does not hold (ONNX Runtime computes it in that
    type), or whose count ONNX Runtime's float64 quotient may round (a span of 2**53 or
    more)."""
    dtype = _dtype(args)
    if dtype not in INT_TYPES:
        raise NotExact(f"{step.where}: a Range of {dtype.name.lower()} values")
    bounds = [np.asarray(_arg(args, i)) for i in range(3)]
    if any(b.size != 1 or b.ndim > 1 for b in bounds):
        raise NotExact(f"{step.where}: start, limit and delta must be one value each")
    start, limit, delta = (int(b.reshape(-1)[0]) for b in bounds)
    if delta == 0:
        raise NotExact(f"{step.where}: a delta of 0")
    span, held = limit - start, np.iinfo(bounds[0].dtype)
    if not held.min <= span <= held.max or abs(span) >= 2**53:
        raise NotExact(f"{step.where}: a span of {span}, which its count may not be exact for")
    count = max(-((start - limit) // delta), 0)  # ceil((limit - start) / delta)
    _check_size([count], step.where)
    return (start + delta * np.arange(count, dtype=np.int64)).astype(bounds[0].dtype)


_OPS: dict[str, Callable[[Step, Args], Evaluated]] = {
    "Mul": _binary,
    "Div": _binary,
    "Add": _binary,
    "Sub": _binary,
    "Reciprocal": _unary(np.reciprocal),
    "Sqrt": _unary(np.sqrt),
    "Pow": _pow,
    "Max": _extreme,
    "Min": _extreme,
    "Clip": _clip,
    "ReduceL2": _reduce_l2,
    "ReduceSum": _reduce_sum,
    "ReduceSumSquare": _reduce_sum,
    "LpNormalization": _lp_normalization,
    "Cast": _cast,
    "CastLike": _cast,  # compiled to a Cast to its second input's type (compile_cone)
    "Identity": _same(lambda s, a: _arg(a, 0)),
    "Transpose": _same(_transpose),
    "Reshape": _same(_reshape),
    "Flatten": _same(_flatten),
    "Unsqueeze": _same(_unsqueeze),
    "Squeeze": _same(_squeeze),
    "Expand": _same(_expand),
    "Tile": _same(_tile),
    "Slice": _same(_slice),
    "Split": _same(_split),
    "Gather": _same(_gather),
    "ScatterND": _same(_scatter_nd),
    "Concat": _concat,
    "Shape": _shape,
    "Pad": _same(_pad),
    "ConstantOfShape": _constant_of_shape,
    "Range": _same(_range),
}

EVALUABLE_OPS = frozenset({*_OPS, "Constant"})


def _apply(step: Step, args: Args) -> Evaluated:
    return _OPS[step.op](step, args)


# ---------------------------------------------------------------- roundings

# How a value relates to the one the graph holds (the module rules): the same value; one
# correctly rounded operation of such values, not rounded yet; or several rounding steps of
# the graph, rounded once here.
EXACT, ONE_ROUNDING, ROUNDED_ONCE = 0, 1, 2
_BASIC_OPS = frozenset({"Mul", "Div", "Add", "Sub"})
_ONE_ROUNDING_OPS = _BASIC_OPS | {"Sqrt", "Reciprocal"}  # IEEE ops
# the ops that compute new float values (the others move, select or cast them)
ARITHMETIC = (
    _ONE_ROUNDING_OPS | {"Pow", "ReduceL2", "ReduceSum", "ReduceSumSquare"} | {"LpNormalization"}
)


def _level(step: Step, args: Args, dtype: ir.DataType, level: int) -> int:
    """How the result of ``step`` (of type ``dtype``) relates to the graph's value, given the
    worst of its inputs' (``level``); ``NotExact`` where a Cast would show the graph's own
    rounding steps, which rounding once does not reproduce."""
    if dtype not in FLOAT_TYPES and step.op != "Cast":
        return EXACT  # integers and booleans are exact or declined
    if step.op == "Cast":
        return _cast_level(step, _dtype(args), dtype, level)
    if step.op not in ARITHMETIC:
        return level  # moved or selected: no rounding of its own
    if (step.op in _ONE_ROUNDING_OPS or _squares(step, args)) and level == EXACT:
        return EXACT if dtype == ir.DataType.DOUBLE else ONE_ROUNDING
    return ROUNDED_ONCE


def _halves_said(step: Step, dtype: ir.DataType, what: str = "") -> str:
    """Why a float16 or bfloat16 arithmetic ``step`` is declined; ``what``: of its result."""
    name = dtype.name.lower()
    return (
        f"{step.where} on {name}{what}: ONNX Runtime computes {name} arithmetic in float32 and "
        "rounds it where its graph rewrites leave a Cast, not after each op as the graph does"
    )


_SELECTIONS = frozenset({"Max", "Min", "Clip"})
# What a cone folded bit for bit may compute besides moving elements (:func:`_check_stepwise`).
STEPWISE_OPS = _BASIC_OPS | _SELECTIONS


def _check_stepwise(step: Step, args: Args, *, halves: bool = True) -> None:
    """Decline, in a cone folded bit for bit, a step whose result the graph's semantics and
    ONNX Runtime's CPU kernels give differently (t112, t114):

    - float16 or bfloat16 arithmetic (``halves``; else :meth:`Program.run` declines such a
      step where it rounds): ONNX Runtime has no CPU kernel for it, computes it in float32
      between Casts it inserts, and removes such Casts between two nodes, so it rounds where
      its own rewrites leave a Cast, not after each op (``(W * a) * b`` of float16: a third
      of the elements an ulp apart; a Cast to float32 of one product: the product
      unrounded);
    - a ``Clip`` bound that is NaN (ONNX Runtime ignores it; numpy's NaN propagates), one not
      of one value and at most one axis, or, below opset 11, a min above its max (ONNX
      Runtime refuses the node);
    - ``Max``/``Min``/``Clip`` where +0 and -0 meet, and any of these ops where two NaNs meet:
      which one ONNX Runtime keeps depends on its kernel's path (the operand order, the
      tensor's length: t114);
    - a signalling NaN that arithmetic or a selection reads: numpy quiets it where it widens
      a value, ONNX Runtime keeps it on some paths."""
    present = [a for a in args if a is not None]
    if not present or step.op not in STEPWISE_OPS:
        return
    dtype = present[0][1]
    if halves and step.op in _BASIC_OPS and dtype in _HALVES:
        raise NotExact(_halves_said(step, dtype))
    if dtype not in FLOAT_TYPES:
        return
    if step.op in _SELECTIONS and (
        dtype == ir.DataType.BFLOAT16
        or (dtype == ir.DataType.FLOAT16 and step.op == "Clip" and (step.opset or 0) < 12)
    ):
        # no CPU kernel either: computed in float32 between Casts ONNX Runtime inserts and
        # removes, so the ops that read it run in float32 on the original graph (t120)
        raise NotExact(
            f"{step.where} on {dtype.name.lower()}: ONNX Runtime has no kernel for it and "
            "computes it, and what reads it, in float32"
        )
    operands = [np.asarray(a[0]) for a in present]
    # declined before a mask of the broadcast size is made (then by _apply: t116)
    _check_size(np.broadcast_shapes(*(x.shape for x in operands)), step.op)
    if step.op == "Clip":  # bounds as inputs (opset 11 on) or as attributes (before)
        given = [np.asarray(step.attributes[k], F64) for k in ("min", "max")
                 if k in step.attributes]  # fmt: skip
        if len(given) == 2 and given[0] > given[1]:
            raise NotExact(f"{step.where}: min above max, which ONNX Runtime refuses")
        operands += given
        for bound in operands[1:]:
            if bound.size != 1 or bound.ndim > 1:
                raise NotExact(f"{step.where}: a bound of shape {list(bound.shape)}, not one value")
            if np.isnan(bound).any():
                raise NotExact(f"{step.where}: a NaN bound, which runtimes read differently")
    nans = [np.isnan(x) for x in operands]
    if any(_signalling(x, nan) for x, nan in zip(operands, nans, strict=True)):
        raise NotExact(f"{step.where} reads a signalling NaN, which runtimes may quiet")
    pairs = [(i, j) for i in range(len(operands)) for j in range(i + 1, len(operands))]
    for i, j in pairs:
        a, b = operands[i], operands[j]
        if np.any(nans[i] & nans[j]):
            raise NotExact(
                f"{step.where}: two NaNs meet, and whose bits ONNX Runtime keeps depends on its "
                "kernel"
            )
        if step.op in _SELECTIONS and np.any(
            (a == 0) & (b == 0) & (np.signbit(a) != np.signbit(b))
        ):
            raise NotExact(
                f"{step.where}: +0 and -0 meet, and which one ONNX Runtime keeps depends on its "
                "kernel"
            )


# A float type's bits, and its quiet bit (the mantissa's highest): clear in a signalling NaN.
_QUIET_BIT: dict[np.dtype, tuple[type[np.unsignedinteger], int]] = {
    np.dtype(np.float16): (np.uint16, 9),
    np.dtype(np.float32): (np.uint32, 22),
    np.dtype(np.float64): (np.uint64, 51),
}


def _signalling(x: np.ndarray, nan: np.ndarray) -> bool:
    """Whether ``x`` (``nan``: where it is NaN) holds a signalling NaN."""
    if x.dtype not in _QUIET_BIT or not nan.any():
        return False
    bits, quiet = _QUIET_BIT[x.dtype]
    return bool(np.any(((x[nan].view(bits) >> bits(quiet)) & bits(1)) == 0))


def _squares(step: Step, args: Args) -> bool:
    """Whether ``step`` is ``Pow(x, 2)``: ``x * x``, one correctly rounded operation (the
    dynamo exporter's float16 squares, cast to float32 to be summed, t106)."""
    if step.op != "Pow" or len(args) < 2:
        return False
    exponent = np.asarray(_arg(args, 1))
    return exponent.size == 1 and float(exponent.reshape(())) == 2.0


def _cast_level(step: Step, source: ir.DataType, target: ir.DataType, level: int) -> int:
    if level == EXACT or source not in FLOAT_TYPES:
        return EXACT
    if target in FLOAT_TYPES and widens_exactly(target, source):  # narrowing, or the same type
        return EXACT if target == source and level == ONE_ROUNDING else ROUNDED_ONCE
    if level == ONE_ROUNDING:
        return EXACT  # held in the source type first, as the graph holds it
    if target in FLOAT_TYPES and _finfo(target).nmant <= _finfo(source).nmant:
        return ROUNDED_ONCE  # float16 -> bfloat16: fewer bits than the steps' roundings
    verb = "widens" if target in FLOAT_TYPES else "converts"
    narrow = source.name.lower()
    # A float16 model's float32 head (onnxconverter-common's node_block_list): its weight norm,
    # folded in the float32 export before the conversion, is one rounding.
    halves = (ir.DataType.FLOAT16, ir.DataType.BFLOAT16)
    hint = f"; fold the model before its conversion to {narrow}" if source in halves else ""
    raise NotExact(
        f"{step.where} {verb} to {target.name.lower()} a {narrow} value the graph "
        f"computes in several rounding steps: they would show, and a fold rounds once{hint}"
    )
