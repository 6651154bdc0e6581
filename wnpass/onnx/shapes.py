"""The shape of a value the model does not declare one for, read from what computes it: the
few ops a weight is computed by (elementwise arithmetic and casts, which broadcast, and the
reductions of a norm). TorchScript's exporter declares no shape for the values inside a
graph: an embedding's table computed by weight norm, ``g * v / ReduceL2(v)``, has none."""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from wnpass.onnx.evaluate import const_leaf, small_constant

__all__ = ["shape_of"]

# ops whose output has the broadcast shape of all their inputs
_BROADCAST = frozenset(
    {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where"}
    | {"Sqrt", "Reciprocal", "Neg", "Abs", "Exp", "Log", "Cast", "Identity"}
)
# ops whose output has the shape of their first input
_FIRST = frozenset({"Clip", "CastLike"})
_REDUCTIONS = frozenset(
    {"ReduceL1", "ReduceL2", "ReduceSum", "ReduceSumSquare", "ReduceMean", "ReduceMax", "ReduceMin"}
)
# The most values read for one shape (a weight's computation is a few ops)
_STEPS = 64


def shape_of(value: ir.Value) -> tuple[int, ...] | None:
    """``value``'s shape: as declared where every dimension is known, a constant's, or read
    from the ops that compute it (:data:`_BROADCAST`, :data:`_FIRST`, :data:`_REDUCTIONS`,
    ``Expand``) where their inputs' shapes are known; None otherwise, or past
    :data:`_STEPS` values."""
    known: dict[ir.Value, tuple[int, ...] | None] = {}
    stack = [value]
    while stack:
        if len(known) > _STEPS:
            return None
        current = stack[-1]
        if current in known:
            stack.pop()
            continue
        if (declared := _declared(current)) is not None:
            known[current] = declared
            stack.pop()
            continue
        node = current.producer()
        inputs = [] if node is None else _shape_inputs(node)
        if node is None or inputs is None:
            known[current] = None
            stack.pop()
            continue
        pending = [i for i in inputs if i not in known]
        if pending:
            stack.extend(pending)
            continue
        known[current] = _computed(node, [known[i] for i in inputs])
        stack.pop()
    return known[value]


def _declared(value: ir.Value) -> tuple[int, ...] | None:
    """A constant's shape, or the one the model declares where every dimension is known."""
    if (tensor := const_leaf(value)) is not None:
        return tuple(int(d) for d in tensor.shape.numpy())
    shape = value.shape
    if shape is None or not shape.is_static():
        return None
    return tuple(int(d) for d in shape.numpy())


def _shape_inputs(node: ir.Node) -> list[ir.Value] | None:
    """The inputs of ``node`` whose shapes decide its output's; None for an op not read."""
    if node.domain not in ("", "ai.onnx") or not node.inputs or node.inputs[0] is None:
        return None
    if node.op_type in _BROADCAST:
        inputs = list(node.inputs)
        return None if any(i is None for i in inputs) else [i for i in inputs if i is not None]
    if node.op_type in _FIRST or node.op_type in _REDUCTIONS or node.op_type in _MOVES:
        return [node.inputs[0]]
    return None


# ops that lay out their first input's elements in another shape, as their other operand says
_MOVES = frozenset({"Expand", "Reshape", "Unsqueeze", "Squeeze"})


def _computed(node: ir.Node, shapes: list[tuple[int, ...] | None]) -> tuple[int, ...] | None:
    """The output shape of ``node`` from its inputs' (:func:`_shape_inputs`)."""
    if any(shape is None for shape in shapes):
        return None
    known = [shape for shape in shapes if shape is not None]
    try:
        if node.op_type in _REDUCTIONS:
            return _reduced(node, known[0])
        if node.op_type == "Expand":
            target = small_constant(node.inputs[1] if len(node.inputs) > 1 else None)
            if target is None:
                return None
            return tuple(np.broadcast_shapes(known[0], tuple(int(d) for d in target.ravel())))
        if node.op_type in _MOVES:
            return _moved(node, known[0])
        return tuple(np.broadcast_shapes(*known))
    except ValueError:  # shapes that do not broadcast: a model ONNX Runtime refuses
        return None


def _moved(node: ir.Node, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shape a ``Reshape``, ``Unsqueeze`` or ``Squeeze`` of a tensor of ``shape`` gives
    (its shape or axes as an attribute, or as the second input); None where that is not a
    small constant, or the op would fail (ValueError)."""
    attributes = node.attributes
    if (given := attributes.get("axes")) is not None:
        operand: np.ndarray | None = np.array(given.value, dtype=np.int64)
    else:
        operand = small_constant(node.inputs[1] if len(node.inputs) > 1 else None)
    if node.op_type == "Squeeze" and operand is None and len(node.inputs) < 2:
        return tuple(d for d in shape if d != 1)  # no axes: every axis of size 1
    if operand is None:
        return None
    numbers = [int(d) for d in operand.ravel()]
    if node.op_type == "Reshape":
        allowzero = attributes.get("allowzero")
        if not (allowzero is not None and allowzero.value):  # 0: that dimension of the input
            numbers = [shape[i] if d == 0 and i < len(shape) else d for i, d in enumerate(numbers)]
        return _reshaped(shape, numbers)
    rank = len(shape) + (len(numbers) if node.op_type == "Unsqueeze" else 0)
    if any(not -rank <= a < rank for a in numbers):
        raise ValueError("axis out of range")
    axes = {a % rank for a in numbers}
    if node.op_type == "Squeeze":
        if any(shape[a] != 1 for a in axes):
            raise ValueError("squeezing an axis of more than one element")
        return tuple(d for i, d in enumerate(shape) if i not in axes)
    dims = iter(shape)
    return tuple(1 if i in axes else next(dims) for i in range(rank))


def _reshaped(shape: tuple[int, ...], numbers: list[int]) -> tuple[int, ...]:
    """``shape`` reshaped to ``numbers`` (at most one -1, inferred), counted, not allocated;
    ValueError where the element counts differ, as numpy's reshape says."""
    size, known = math.prod(shape), math.prod(d for d in numbers if d != -1)
    if numbers.count(-1) > 1 or any(d < -1 for d in numbers):
        raise ValueError("not a shape")
    if -1 in numbers:
        if known == 0 or size % known:
            raise ValueError("cannot infer the -1")
        numbers = [size // known if d == -1 else d for d in numbers]
    if math.prod(numbers) != size:
        raise ValueError("another element count")
    return tuple(numbers)


def _reduced(node: ir.Node, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shape a reduction of a tensor of ``shape`` gives (axes as an attribute, or as
    the second input from opset 18; none: every axis, unless ``noop_with_empty_axes``)."""
    attributes = node.attributes
    keep = attributes.get("keepdims")
    keepdims = True if keep is None else bool(keep.value)
    if (given := attributes.get("axes")) is not None:
        axes = [int(a) for a in given.value]
    elif len(node.inputs) > 1 and node.inputs[1] is not None:
        array = small_constant(node.inputs[1])
        if array is None:
            return None
        axes = [int(a) for a in array.ravel()]
    else:
        axes = []
    if not axes:
        noop = attributes.get("noop_with_empty_axes")
        if noop is not None and noop.value:
            return shape
        axes = list(range(len(shape)))
    rank = len(shape)
    if any(not -rank <= a < rank for a in axes):
        return None
    reduced = {a % rank for a in axes}
    if keepdims:
        return tuple(1 if i in reduced else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in reduced)
