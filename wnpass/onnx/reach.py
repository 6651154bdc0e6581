"""Which random draws can change each output of a model: what ``wnpass check`` compares of two
models' draws, since no run shows a draw that ONNX Runtime takes out.

A draw can change a value where the value is computed from the draw's values, or where its
shape is: a size read from a tensor (``Shape``, ``Size``, a ``Like`` op) carries a draw only
where that tensor's shape depends on a draw's values (``NonZero`` of one), and an input read
for its type alone (``CastLike``'s second) carries none. Which shapes depend on values is read
op by op (:data:`SHAPED_BY_SHAPES`, :data:`SHAPED_BY_VALUES`); any other op's output shape may
depend on every value it reads, and so may a body's or a local function's. Each node's draws
are found once, as two bit sets (one bit per drawing node): those its values are computed
from, and those its shape is, after every node it reads (a walk in post-order, iterative
however deep the graph). What a node reads is never computed from the node itself: the ONNX
checker, which every model read passes, refuses a cycle.

What is not read: what a draw changes where it is read by value. ``d - d`` counts as
computed from ``d``, as does a branch of an ``If`` that never runs, and every output of a
node as computed from all the node reads (a LayerNormalization's mean from its bias, t159).
"""

from __future__ import annotations

import onnx_ir as ir

from wnpass.onnx.graphs import (
    Namesakes,
    callees,
    draws_randomly,
    graphs_of,
    node_bodies,
    nodes_in_functions,
)

__all__ = ["SHAPED_BY_SHAPES", "SHAPED_BY_VALUES", "random_ops_by_output"]

# Ops whose outputs' shapes follow from their inputs' shapes and their attributes alone.
SHAPED_BY_SHAPES = frozenset(
    {"Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "Cast", "Ceil", "Celu", "Cos"}
    | {"Cosh", "Elu", "Erf", "Exp", "Floor", "Gelu", "HardSigmoid", "HardSwish", "Identity"}
    | {"IsInf", "IsNaN", "LeakyRelu", "Log", "Mish", "Neg", "Not", "Reciprocal", "Relu", "Round"}
    | {"Selu", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Softplus", "Softsign", "Sqrt", "Tan"}
    | {"Tanh", "ThresholdedRelu", "Clip", "Dropout", "Bernoulli", "CumSum", "Hardmax"}
    | {"Softmax", "LogSoftmax", "LpNormalization", "LayerNormalization", "BatchNormalization"}
    | {"InstanceNormalization", "GroupNormalization", "MeanVarianceNormalization", "LRN"}
    | {"Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Mean", "Sum", "And", "Or", "Xor"}
    | {"Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "BitShift", "BitwiseAnd"}
    | {"BitwiseOr", "BitwiseXor", "BitwiseNot", "PRelu", "Where", "MatMul", "Gemm", "Conv"}
    | {"MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "Transpose"}
    | {"Flatten", "Concat", "Gather", "GatherElements", "Einsum", "DepthToSpace", "SpaceToDepth"}
    | {"QuantizeLinear", "DequantizeLinear", "MatMulInteger", "ConvInteger", "Trilu"}
    | {"RandomNormalLike", "RandomUniformLike", "EyeLike", "CastLike", "Shape", "Size"}
)
# Ops whose outputs' shapes follow from their inputs' shapes and attributes and from the
# values of the inputs of these indexes (a Reshape's target shape, a Slice's starts ...).
SHAPED_BY_VALUES: dict[str, frozenset[int]] = {
    "Reshape": frozenset({1}),
    "Expand": frozenset({1}),
    "Tile": frozenset({1}),
    "Slice": frozenset({1, 2, 3, 4}),
    "Pad": frozenset({1, 3}),
    "Squeeze": frozenset({1}),
    "Unsqueeze": frozenset({1}),
    "Split": frozenset({1}),
    "ConstantOfShape": frozenset({0}),
    "TopK": frozenset({1}),
    "OneHot": frozenset({1}),
    "Range": frozenset({0, 1, 2}),
    **dict.fromkeys(  # their axes, an input from opsets 13 and 18
        [f"Reduce{kind}" for kind in ("Sum", "Mean", "Max", "Min", "Prod", "L1", "L2")]
        + ["ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"],
        frozenset({1}),
    ),
}
# The ops that read their first input for its shape alone (a size read from it), and those
# that read their second for its type alone.
_SHAPE_READ = frozenset({"Shape", "Size", "EyeLike", "RandomNormalLike", "RandomUniformLike"})
_TYPE_READ = frozenset({"CastLike"})


def random_ops_by_output(model: ir.Model) -> dict[str, list[ir.Node]]:
    """Each output of the main graph that random draws can change, with the ops that draw
    them (``RANDOM_OPS`` and a ``Dropout`` that may draw), in graph order: those among the
    ops it is computed from, through the bodies of the nodes on the way and the model-local
    functions called, that reach its values or its shape (module docstring). A random op
    read for a shape it does not decide (``Reshape(h, Shape(d))``, t154) or for its type
    changes nothing a run gives, as one that reaches no output; one whose values decide a
    size (``NonZero``, t133, t134) does.

    Which draws reach a node is found once per node, for every output (a walk per output
    took 29 s for 1000 outputs, t148)."""
    drawing = [node for graph in graphs_of(model) for node in graph if draws_randomly(node)]
    if not drawing:
        return {}  # one pass over the nodes: no walk (t131)
    bit = {id(node): 1 << index for index, node in enumerate(drawing)}
    reach = _DrawsReaching(model, bit)
    found: dict[str, list[ir.Node]] = {}
    for index, output in enumerate(model.graph.outputs):
        node = output.producer()
        drawn = 0 if node is None else reach.of(node)[0]
        if drawn:
            found[output.name or str(index)] = [node for node in drawing if bit[id(node)] & drawn]
    return found


class _DrawsReaching:
    """The draws each node's values are computed from, and those its shape is (module
    docstring)."""

    def __init__(self, model: ir.Model, bit: dict[int, int]) -> None:
        self.model, self.bit = model, bit
        self.in_functions = nodes_in_functions(model)
        self.namesakes = Namesakes()
        # each node done: the draws its values are computed from, and those its shape is
        self.reach: dict[int, tuple[int, int]] = {}

    def read(self, node: ir.Node) -> list[tuple[ir.Node, str]]:
        """The nodes ``node`` reads the outputs of, each with how: ``"value"``, ``"shape"``
        (a size read from it), ``"type"``, or ``"sizing"`` (its values decide the output's
        shape); those its bodies and the local function it calls give, by ``"sizing"`` (how
        they are read there is not followed). A body's reads of enclosing values are its
        own nodes' (the same values), and a body's initializer named like an enclosing value
        reads that value too: ONNX Runtime may read it in the initializer's place (t168)."""
        op = node.op_type if node.domain in ("", "ai.onnx") else ""
        sizing = SHAPED_BY_VALUES.get(op, frozenset())
        if op not in SHAPED_BY_SHAPES and op not in SHAPED_BY_VALUES:
            sizing = frozenset(range(len(node.inputs)))  # any: its shape may be any value's
        how = []
        for index, value in enumerate(node.inputs):
            if value is None:
                continue
            if op in _SHAPE_READ and index == 0:
                kind = "shape"
            elif op in _TYPE_READ and index == 1:
                kind = "type"
            else:
                kind = "sizing" if index in sizing else "value"
            how.append((value, kind))
            if (outer := self.namesakes.of(value)) is not None:  # read in its place, maybe
                how.append((outer, kind))
        for body in node_bodies(node):
            how.extend((value, "sizing") for value in body.outputs)
        for _, function in callees(self.model, node, id(node) in self.in_functions):
            how.extend((value, "sizing") for value in function.outputs)
        producers = ((value.producer(), kind) for value, kind in how)
        return [(producer, kind) for producer, kind in producers if producer is not None]

    def of(self, root: ir.Node) -> tuple[int, int]:
        """The draws ``root``'s values are computed from, and those its shape is."""
        # each node on the way: what it reads (found once), and how many of those are done
        walk = [(root, self.read(root), 0)]
        on_walk = {id(root)}
        while walk:
            node, reads, done = walk[-1]
            while done < len(reads) and id(reads[done][0]) in self.reach:
                done += 1
            if done < len(reads):  # its reads first
                read = reads[done][0]
                if id(read) in on_walk:
                    raise AssertionError(f"a cycle through node {read.name!r}")
                walk[-1] = (node, reads, done)
                walk.append((read, self.read(read), 0))
                on_walk.add(id(read))
                continue
            walk.pop()
            on_walk.discard(id(node))
            self.reach[id(node)] = self._joined_reads(node, reads)
        return self.reach[id(root)]

    def _joined_reads(self, node: ir.Node, reads: list[tuple[ir.Node, str]]) -> tuple[int, int]:
        """``node``'s draws, from those of what it reads (``reads``), found already: a draw's
        own values; by value, what it reads by value and what decides the shapes it reads;
        for its shape, the shapes of what it reads and the values that size it."""
        values, shape = self.bit.get(id(node), 0), 0
        for read, kind in reads:
            its_values, its_shape = self.reach[id(read)]
            if kind == "value":
                values, shape = _joined(values, its_values), _joined(shape, its_shape)
            elif kind == "shape":  # a size read: the values it gives are a shape's
                values, shape = _joined(values, its_shape), _joined(shape, its_shape)
            elif kind == "sizing":
                shape = _joined(shape, its_values)
                values, shape = _joined(values, its_values), _joined(shape, its_shape)
        return _joined(values, shape), shape  # a value whose shape changes changes


def _joined(these: int, others: int) -> int:
    """The union of two bit sets, ``these`` itself where ``others`` adds nothing to it (one
    set shared by the nodes of a chain that draws nothing)."""
    if not these:
        return others
    return these | others if others & ~these else these
