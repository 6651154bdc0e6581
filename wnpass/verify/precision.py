"""The precision a model's outputs are computed at, where it is narrower than their type.

A model converted to float16 with its inputs and outputs kept float32 (onnxconverter-common's
``keep_io_types``) ends each output with a ``Cast`` to float32 of a float16 value: the output
holds float16 values, with float16's roundings behind them, and a comparison of two such
models is held to float16's tolerance, not float32's (every fold of such a model failed the
float32 default on roundings alone, t316).

Two things decide it, both read from the graph, not run: the value's type (declared, or read
back through the ops that make it: :func:`wnpass.onnx.types.element_type`), and that it holds
a rounding at that type (some path back reaches float16 arithmetic or a cast from a wider
float, not only integers moved into float16: :func:`_rounded_narrow`). Where the type cannot
be told, the output keeps its own type's tolerance. An op not known to round nothing is
taken to round (a float16 kernel of any kind: another domain's fused ops, a graph too deep to
walk), or every fold of a float16 model using one would fail on roundings alone; so a
reading of the graph alone may still take an index carried in float16 for a rounded value
(t319-t326). What keeps an index off by one from passing is the values: an output whose
reference values are all whole numbers keeps its own type's tolerance, whatever the graph
(:class:`wnpass.verify.compare.HeldByOutput`)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from wnpass.onnx.types import element_type

__all__ = ["computed_at"]

# floats narrower than float32, by the numpy dtype the comparison's tolerances are keyed by
_NARROW = frozenset({ir.DataType.FLOAT16, ir.DataType.BFLOAT16})
_WIDE = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE})
# ops that move a value's elements and change none of them
_MOVES = frozenset(
    {"Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Expand"}
)


def computed_at(model: ir.Model) -> dict[str, np.dtype]:
    """The numpy dtype each graph output is computed at, for the outputs of the main graph
    that a ``Cast`` to float32 or float64 of a float16 or bfloat16 value makes (through ops
    that only move elements); the others, which hold what their type says, are not listed."""
    found: dict[str, np.dtype] = {}
    for output in model.graph.outputs:
        if output.name is None or output.is_graph_input():
            continue
        narrow = _cast_from(output)
        if narrow is not None:
            found[output.name] = np.dtype(narrow.numpy())
    return found


def _cast_from(value: ir.Value) -> ir.DataType | None:
    """The narrow float a ``Cast`` to a wide one widens, where ``value`` is that Cast's
    output (through element moves); None otherwise."""
    node = value.producer()
    while node is not None and node.domain in ("", "ai.onnx") and node.op_type in _MOVES:
        source = node.inputs[0]
        node = None if source is None else source.producer()
    if node is None or node.op_type != "Cast" or node.domain not in ("", "ai.onnx"):
        return None
    to = node.attributes.get("to")
    if to is None or to.type != ir.AttributeType.INT or node.inputs[0] is None:
        return None  # an opset-5 Cast names its type by a string: ONNX Runtime refuses it
    if ir.DataType(to.as_int()) not in _WIDE:
        return None
    narrow = element_type(node.inputs[0])
    if narrow not in _NARROW or not _rounded_narrow(node.inputs[0]):
        return None
    return narrow


# ops whose outputs are elements of their data inputs (or their negation, absolute value or
# the larger of two): they round nothing, and carry integers held in floats as they are
_EXACT = (
    frozenset({*_MOVES, "Slice", "Gather", "GatherElements", "GatherND", "Concat", "Split"})
    | {"Tile", "Pad", "Neg", "Abs", "Relu", "Max", "Min", "Where", "Trilu", "Unique"}
    | {"ScatterND", "ScatterElements", "ReduceMax", "ReduceMin", "Mod", "DepthToSpace"}
    | {"SpaceToDepth", "Compress", "ReverseSequence", "ThresholdedRelu", "Clip", "Floor", "Ceil"}
    | {"Round", "Sign"}
)  # Mod's remainder is exact in IEEE arithmetic, as fmod is; Floor and the like give integers
# the inputs of those ops that carry data (the others are indices, axes, shapes, conditions):
# every one, these, or the first
_ALL_DATA = frozenset({"Concat", "Max", "Min", "Mod"})
_DATA: dict[str, tuple[int, ...]] = {
    "Where": (1, 2),
    "Pad": (0, 2),
    "ScatterND": (0, 2),
    "ScatterElements": (0, 2),
    "Clip": (0, 1, 2),
}
# the most nodes walked back from one output to its roundings
_WALK = 256


def _rounded_narrow(value: ir.Value) -> bool:
    """Whether the narrow float ``value`` holds roundings at its own precision: some path
    back from it through ops that round nothing (:data:`_EXACT`) reaches one that does (float16
    arithmetic, a ``Cast`` from a wider float), rather than only casts of integers, booleans
    or values of no known type, and the model's constants and inputs. A float16 of an
    ``ArgMax``, sliced or gathered, holds those integers as they are, and an index off by one
    must not pass as a float16 rounding (t319, t321); past :data:`_WALK` nodes, it is taken
    to (a float16 model's output, as the common case is)."""
    stack, seen = [value], set[ir.Value]()
    while stack:
        if len(seen) > _WALK:
            return True
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        node = current.producer()
        if node is None:
            continue  # a graph input or an initializer: a value as given, not a rounding
        if node.domain not in ("", "ai.onnx"):
            return True
        if node.op_type in ("Cast", "CastLike"):
            read = node.inputs[0]
            source = None if read is None else element_type(read)
            if read is not None and source is not None and source.is_floating_point():
                if _narrows(source, current):
                    return True
                stack.append(read)  # as it is or widened: its roundings are behind
            continue  # integers or booleans, as they are, or a type not known: not taken
            # to be a rounding, so that the check stays the stricter one (an index off by
            # one passed at float16's tolerance, t322, t323)
        if node.op_type == "Constant":
            continue
        if node.op_type not in _EXACT and not _selects(node):
            return True
        inputs = node.inputs
        data = range(len(inputs)) if node.op_type in _ALL_DATA else _DATA.get(node.op_type, (0,))
        stack.extend(read for i in data if i < len(inputs) and (read := inputs[i]) is not None)
    return False


def _narrows(source: ir.DataType, narrow: ir.Value) -> bool:
    """Whether a ``Cast`` or ``CastLike`` of a float of type ``source`` to ``narrow`` rounds:
    from a wider float, or the other narrow one (bfloat16 to float16); not float16 cast to
    itself, nor a narrower float (a float8) widened."""
    return source != element_type(narrow) and (source in _WIDE or source in _NARROW)


def _selects(node: ir.Node) -> bool:
    """Whether ``node`` gives elements of its input or 0 by its attributes: a ``Shrink`` with
    no bias (t325)."""
    if node.op_type != "Shrink":
        return False
    bias = node.attributes.get("bias")
    return bias is None or bias.as_float() == 0.0
