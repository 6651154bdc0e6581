"""The precision a model's outputs are computed at, where it is narrower than their type.

A model converted to float16 with its inputs and outputs kept float32 (onnxconverter-common's
``keep_io_types``) ends each output with a ``Cast`` to float32 of a float16 value: the output
holds float16 values, with float16's roundings behind them, and a comparison of two such
models is held to float16's tolerance, not float32's (every fold of such a model failed the
float32 default on roundings alone, t316).

Two things read from the graph, not run, decide whether an output is listed: the value's type
(declared, or read back through the ops that make it:
:func:`wnpass.onnx.types.element_type`), and that it may hold a rounding at that type (some
path back reaches float16 arithmetic or a cast from a wider float, not only integers moved
into float16: :func:`_rounded_narrow`). Where the type cannot
be told, the output keeps its own type's tolerance. The graph can say that a value holds
integers only (casts of integers through ops that round nothing); where it says the value
holds roundings, or cannot tell (another domain's op, a ``TopK``, a body, a value of no
readable type), the output is listed, and its values decide the rest: one whose reference
values are all whole numbers (an index, a count carried in float16) keeps its own type's
tolerance (:class:`wnpass.verify.compare.HeldByOutput`), so that an index off by one still
fails, whatever the graph seemed to say (t319-t330)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from wnpass.onnx.graphs import const_tensor
from wnpass.onnx.types import cast_to, element_type
from wnpass.verify.compare import HeldByOutput, whole_numbers

__all__ = ["computed_at"]

# floats narrower than float32, by the numpy dtype the comparison's tolerances are keyed by
_NARROW = frozenset({ir.DataType.FLOAT16, ir.DataType.BFLOAT16})
_WIDE = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE})
# ops that move a value's elements and change none of them
_MOVES = frozenset(
    {"Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Expand"}
)


def computed_at(model: ir.Model) -> HeldByOutput:
    """The numpy dtype each graph output is computed at, for the outputs of the main graph
    that a ``Cast`` to float32 or float64 of a float16 or bfloat16 value holding roundings
    makes (through ops that only move elements); the others, which hold what their type says,
    are not listed. Those where the graph leaves it unsure are ``unsure``: their values
    decide."""
    found: dict[str, np.dtype] = {}
    by_runtime: set[str] = set()
    for output in model.graph.outputs:
        if output.name is None or output.is_graph_input():
            continue
        narrow = _cast_from(output)
        if narrow is None and (narrow := _widened_by_runtime(output)) is not None:
            by_runtime.add(output.name)
        if narrow is not None:
            found[output.name] = np.dtype(narrow.numpy())
    return HeldByOutput(found, frozenset(by_runtime))


def _cast_from(value: ir.Value) -> ir.DataType | None:
    """The narrow float a ``Cast`` to a wide one widens, where ``value`` is that Cast's
    output (through element moves) and the narrow value may hold roundings
    (:func:`_rounded_narrow`); None otherwise."""
    node = value.producer()
    while node is not None and node.domain in ("", "ai.onnx") and node.op_type in _MOVES:
        source = node.inputs[0]
        node = None if source is None else source.producer()
    if node is None or node.op_type != "Cast" or node.domain not in ("", "ai.onnx"):
        return None
    if cast_to(node) not in _WIDE or node.inputs[0] is None:
        return None
    narrow = element_type(node.inputs[0])
    if narrow not in _NARROW or not _rounded_narrow(node.inputs[0]):
        return None
    return narrow


# the name ONNX Runtime gives the Casts it inserts around an op it has no float16 kernel for,
# computing that op in float32 (its InsertCastTransformer), and the initializers it folds them
# into: a model it saved holds them where the graph meant float16 (t343)
_RUNTIME_CAST = "InsertedPrecisionFreeCast_"


def _widened_by_runtime(value: ir.Value) -> ir.DataType | None:
    """The narrow float an output of a wide type holds, where ONNX Runtime computed it in
    float32 in place of the narrow type the graph meant: every float its ops read, walked
    back, comes through a Cast it inserted (named :data:`_RUNTIME_CAST`) from the narrow
    type, one at least holding roundings (:func:`_rounded_narrow`), or is a graph input;
    a wide value of the graph's own on the way (a float32 weight) keeps the wide type's
    tolerance, as a float32 tail a conversion kept does (t337). An fp16 model saved by ONNX
    Runtime: a LayerNorm or Gemm at its end, computed in float32, made the output float32
    (t343). One it runs wholly in float32 (no float16 kernel for any of its ops: no rounded
    float16 value) holds float32's roundings, as a fold of it does (t347)."""
    stack, seen, narrow = [value], set[ir.Value](), set[ir.DataType]()
    rounded = False
    while stack:
        if len(seen) > _WALK:
            return None
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        kind = element_type(current)
        if kind is None:
            return None  # what it holds is not known
        if not kind.is_floating_point():
            continue  # integers: axes, shapes
        node = current.producer()
        if node is None and current.is_graph_input() and current.const_value is None:
            continue  # data (a first layer fed the float32 input: its Cast fused away, t347)
        if node is None and _runtime_folded(current):
            narrow.add(ir.DataType.FLOAT16)
            continue
        if node is None or node.domain not in ("", "ai.onnx") or _makes_floats(node):
            # a value of the graph's own (a weight, one with a default given as an input
            # too), an op not read here, floats made, or computed in a body (t348)
            return None
        if node.op_type == "Cast" and (node.name or "").startswith(_RUNTIME_CAST):
            read = node.inputs[0]
            source = None if read is None else element_type(read)
            if read is None or source not in _NARROW:
                return None
            narrow.add(source)
            rounded = rounded or _rounded_narrow(read)
            continue
        if node.op_type == "Constant" or kind not in _WIDE:
            return None
        stack.extend(read for read in node.inputs if read is not None)
    return narrow.pop() if rounded and len(narrow) == 1 else None


# ops whose float outputs are their own, not computed from the floats they read
_MAKERS = frozenset(
    {"ConstantOfShape", "EyeLike", "RandomNormal", "RandomNormalLike", "RandomUniform"}
    | {"RandomUniformLike", "Bernoulli", "Multinomial", "Range"}
)


def _makes_floats(node: ir.Node) -> bool:
    """Whether ``node`` (of a float output) gives floats it does not compute from the floats
    it reads: floats of its own (:data:`_MAKERS`), or computed in a body (``If``, ``Loop``,
    ``Scan``), which reads values its inputs do not list."""
    bodies = (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
    return node.op_type in _MAKERS or any(a.type in bodies for a in node.attributes.values())


def _runtime_folded(value: ir.Value) -> bool:
    """Whether ``value`` is an initializer ONNX Runtime made of one of its Casts of a float16
    constant (named :data:`_RUNTIME_CAST`, every value a float16 one)."""
    if not (value.name or "").startswith(_RUNTIME_CAST):
        return False
    tensor = const_tensor(value)
    if tensor is None:
        return False
    array = tensor.numpy()
    with np.errstate(over="ignore"):
        return bool(
            np.array_equal(array.astype(np.float16).astype(array.dtype), array, equal_nan=True)
        )


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
# ops whose results round at float16 whatever they read: a quotient, a root, a transcendental,
# a normalization, a layer's or a mean's sums of products
_ROUNDS = (
    frozenset({"Div", "Sqrt", "Reciprocal", "Exp", "Log", "Pow", "Sigmoid", "Tanh", "Erf"})
    | {"Softmax", "LogSoftmax", "Gelu", "Softplus", "Softsign", "Elu", "Selu", "Celu", "Mish"}
    | {"LeakyRelu", "HardSigmoid", "HardSwish", "PRelu", "Sin", "Cos", "Tan", "Atan", "Asin"}
    | {"Acos", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Conv", "ConvTranspose", "MatMul"}
    | {"Gemm", "Einsum", "LayerNormalization", "BatchNormalization", "InstanceNormalization"}
    | {"GroupNormalization", "LRN", "MeanVarianceNormalization", "ReduceMean", "ReduceL2"}
    | {"ReduceLogSum", "ReduceLogSumExp", "AveragePool", "GlobalAveragePool", "LpPool", "Mean"}
)
# ops that keep whole numbers whole (exact in float16 below 2048): a rounding only where
# what they read holds fractions
_WHOLE = frozenset({"Add", "Sub", "Mul", "Sum", "CumSum", "ReduceSum"})
# the most elements of a constant read for fractions (a larger one is a weight)
_READ_CONSTANT = 1024
# the most nodes walked back from one output to its roundings
_WALK = 256


def _rounded_narrow(value: ir.Value) -> bool:
    """Whether the narrow float ``value`` may hold roundings at its own precision, walked
    back through the float values that make it (integers and booleans hold whole numbers):
    True where some path reaches an op whose results round whatever it reads
    (:data:`_ROUNDS`: a quotient, a root, a layer's sums of products), an op that rounds only
    what holds fractions (:data:`_WHOLE`: ``Add``, ``Mul``; a ``Cast`` from a wider float)
    reading a value given with fractions (a graph input, a constant), or where the walk
    cannot tell (an op of neither kind: another domain's, a ``TopK``, a body's; a value of no
    known type; past :data:`_WALK` nodes): the values decide then
    (:class:`~wnpass.verify.compare.HeldByOutput`). False where every path ends in integers
    or booleans cast to it, constants, or inputs, through ops that round nothing
    (:data:`_EXACT`): a float16 of an ``ArgMax``, sliced, gathered or plus one, holds those
    integers as they are (t319-t330)."""
    stack, seen = [(value, False)], set[tuple[ir.Value, bool]]()
    while stack:
        if len(seen) > _WALK:
            return True
        current, computed = stack.pop()  # computed: read by a _WHOLE op on the way
        if (current, computed) in seen:
            continue
        seen.add((current, computed))
        node = current.producer()
        if node is None or node.op_type == "Constant":
            if computed and _fractions_given(current):
                return True
            continue  # as given: a value of its own, not a rounding
        op = node.op_type if node.domain in ("", "ai.onnx") else ""
        if op in _ROUNDS:
            return True
        inputs = node.inputs
        if op in ("Cast", "CastLike"):
            read = inputs[0]
            source = None if read is None else element_type(read)
            if read is not None and source is None:
                return True  # a RoiAlign kept in float32 by a conversion (t330)
            if read is not None and source is not None and source.is_floating_point():
                stack.append((read, computed or _narrows(source, current)))
            continue  # integers, booleans: as they are
        if op in _EXACT or _selects(node):
            data = range(len(inputs)) if op in _ALL_DATA else _DATA.get(op, (0,))
        elif op in _WHOLE:
            data, computed = range(len(inputs)), True
        else:
            return True  # an op of neither kind
        for read in (inputs[i] for i in data if i < len(inputs)):
            kind = None if read is None else element_type(read)
            if read is not None and kind is None:
                return True  # what it holds is not known
            if read is not None and kind is not None and kind.is_floating_point():
                stack.append((read, computed))
    return False


def _fractions_given(value: ir.Value) -> bool:
    """Whether a value no node of the walk computes, an input or a constant, holds fractions
    as far as can be told: an input may; a constant of more than :data:`_READ_CONSTANT`
    elements is taken to (a weight), as is one not read here; a smaller one is read (its
    finite values: an infinity or a NaN is no fraction)."""
    if value.is_graph_input():
        return True
    tensor = const_tensor(value)
    if tensor is None or tensor.size > _READ_CONSTANT:
        return True
    values = tensor.numpy().astype(np.float64)
    finite = values[np.isfinite(values)]  # an inf or a NaN added rounds nothing (t333)
    return finite.size > 0 and not whole_numbers(finite)


def _narrows(source: ir.DataType, narrow: ir.Value) -> bool:
    """Whether a ``Cast`` or ``CastLike`` of a float of type ``source`` to ``narrow`` rounds
    what holds fractions: from a wider float, or the other narrow one (bfloat16 to float16);
    not float16 cast to itself, nor a narrower float (a float8) widened."""
    return source != element_type(narrow) and (source in _WIDE or source in _NARROW)


def _selects(node: ir.Node) -> bool:
    """Whether ``node`` gives elements of its input or 0 by its attributes: a ``Shrink`` with
    no bias (t325)."""
    if node.op_type != "Shrink":
        return False
    bias = node.attributes.get("bias")
    return bias is None or bias.as_float() == 0.0
