"""Which random draws reach a model's outputs, and how each draws: a candidate whose outputs
draw where the reference's do not, or draw otherwise, is no equivalent, whatever its runs
showed (a draw that changes an element seldom can match every run a check makes).

An op draws alike where its type, its attributes (a default written out or not alike) and
what sets its draws (a Dropout's ratio, 0.5 where not given, and its training_mode) are the
same: a constant's values, a graph input's name, or what computes it from those, op by op.
A model whose local functions draw is read with every function inlined, so that each call's
draw is keyed by what that call passes (a function's ratio input stands for every caller's).
A value computed by a node with a graph attribute (an ``If``) is keyed by that graph's
identity: two models computing a ratio through an ``If`` never draw alike, a verdict refused.
Draws are read as the models state them, not as ONNX Runtime's optimizer leaves them: where it
takes out a Dropout in one model and keeps its match in the other, only the runs show it (t168).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from wnpass.onnx.evaluate import small_constant
from wnpass.onnx.graphs import (
    callees,
    const_tensor,
    graphs_of,
    model_draws_randomly,
    subgraphs_of,
)
from wnpass.onnx.reach import random_ops_by_output

__all__ = ["aborting_op", "random_differences"]

logger = logging.getLogger(__name__)

# The inputs of a random op that set how it draws (a Like op's only input gives a shape and
# a type to take, which its outputs show), by name.
_DRAW_INPUTS = {
    "Dropout": {1: "ratio", 2: "training_mode"},
    "Bernoulli": {0: "probabilities"},
    "Multinomial": {0: "logits"},
}


def random_differences(reference: ir.Model, candidate: ir.Model) -> list[str]:
    """A line where the candidate holds ops that draw random values which the reference does
    not hold, drawing alike (:meth:`_Keys.draw`), output by output: its outputs may change
    from run to run where the reference's do not; and one where the reference holds such
    ops the candidate does not: a training-mode export against an eval one, a Dropout taken
    out (t151). Only draws that can change an output count
    (:func:`~wnpass.onnx.reach.random_ops_by_output`: a dead one in the reference let the
    candidate's live one pass, t130; one read for a shape it does not decide held the
    reference's, read by value, t154), and each output against the other model's of its
    name (a draw moved to another output passed, t137). How an op draws counts too: from
    ``basic`` up, ONNX Runtime takes out a Dropout that reads a value computed in the graph
    (no graph input or initializer itself) and gives no graph output, training mode or not,
    so a ratio of 0.1 made 0.9 ran as the reference did (t139), also inside a local function
    (t144); and no run shows a Dropout the candidate lost."""
    interned: dict[object, int] = {}  # both models' keys, numbered alike
    ours, theirs = _Keys(reference, interned), _Keys(candidate, interned)
    lines = []
    if added := _unmatched(theirs, ours):
        lines.append(
            f"the candidate holds random ops the reference does not ({added}): its outputs "
            "may change from run to run, which no run of the check shows equivalent"
        )
    if lost := _unmatched(ours, theirs):
        lines.append(
            f"the reference holds random ops the candidate does not ({lost}): its outputs "
            "may change from run to run where the candidate's do not, which no run of the "
            "check shows equivalent"
        )
    return lines


# Random ops whose distribution ONNX Runtime (1.32, built with libstdc++'s assertions) hands
# to the C++ library unchecked, which then aborts the whole process (SIGABRT: no error, no
# report): a normal distribution's scale must be above 0, a uniform one's low at most its high.
_DISTRIBUTIONS = {
    "RandomNormal": "normal",
    "RandomNormalLike": "normal",
    "RandomUniform": "uniform",
    "RandomUniformLike": "uniform",
}


def aborting_op(model: ir.Model) -> str | None:
    """Why ONNX Runtime would abort the process running ``model``, or None: a random op whose
    distribution the C++ library refuses with an assertion (t200: ``RandomNormal`` of scale
    0), in any graph or body, and in a function with each call's attributes: read with the
    functions inlined, as ONNX Runtime runs them (t201), or, where onnx-ir cannot inline them
    (another opset), call by call, an attribute a call does not set taken from the function's
    default (t203). Even in a branch that never runs: which does is not read. A call inside a
    function names an overload ONNX Runtime does not follow (it runs the overload ``""``,
    t209): there both are read, and either aborting refuses the model."""
    inlined, unknown = _inlined(model)
    for graph in graphs_of(inlined):
        for node in graph:
            if (said := _aborts(node, {})) is not None:
                return said
    if not unknown:  # inlined, or no function draws
        return None
    # each call with the attributes its caller binds, and whether it is in a function's own
    # body (callees)
    calls: list[tuple[ir.Node, dict[str, ir.Attr], bool]] = [
        (node, {}, False) for graph in (model.graph, *subgraphs_of(model.graph)) for node in graph
    ]
    # each function once per set of attributes its calls bind it to: a function calling the
    # next twice, 20 deep, was walked 2**20 times (t208); a function cannot call itself, so
    # the sets are few and the walk ends
    seen: set[tuple[object, ...]] = set()
    while calls:
        inner: list[tuple[ir.Node, dict[str, ir.Attr], bool]] = []
        for call, outer, in_function in calls:
            for key, function in callees(model, call, in_function):
                bound = {**function.attributes, **_resolved(call.attributes, outer)}
                mark = (key, tuple(sorted((name, repr(a.value)) for name, a in bound.items())))
                if mark in seen:
                    continue
                seen.add(mark)
                for body in (function, *subgraphs_of(function)):
                    for node in body:
                        if (said := _aborts(node, bound)) is not None:
                            return said
                        if callees(model, node, in_function=body is function):
                            inner.append((node, bound, body is function))
        calls = inner
    return None


def _resolved(
    attributes: Mapping[str, ir.Attr], bound: Mapping[str, ir.Attr]
) -> dict[str, ir.Attr]:
    """A call's attributes, each reference to its caller's attribute (``t=@s``) replaced by
    that attribute as the caller's call binds it (t205: a function calling a function)."""
    resolved = {}
    for name, attr in attributes.items():
        if attr.is_ref():
            found = bound.get(attr.ref_attr_name or "")
            # one the caller declares without a default and its call leaves unset is no
            # attribute: the called function's default holds (t209)
            if found is None or found.type == ir.AttributeType.UNDEFINED:
                continue
            attr = found
        resolved[name] = attr
    return resolved


def _aborts(node: ir.Node, bound: Mapping[str, ir.Attr]) -> str | None:
    """Why ONNX Runtime aborts on ``node`` (:func:`aborting_op`), or None; ``bound``: the
    attributes of the call of the function ``node`` is in, by name."""
    kind = _DISTRIBUTIONS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
    if kind is None:
        return None
    if kind == "normal":
        if (scale := _attribute(node, "scale", 1.0, bound)) > 0:
            return None
        said, takes = f"a scale of {scale:g}", "normal distribution takes a scale above 0"
    else:
        low, high = _attribute(node, "low", 0.0, bound), _attribute(node, "high", 1.0, bound)
        if low <= high:
            return None
        said = f"low {low:g} and high {high:g}"
        takes = "uniform distribution takes a low at most its high"
    named = f" {node.name!r}" if node.name else ""
    return (
        f"its {node.op_type}{named} has {said}, on which onnxruntime aborts the process where "
        f"it runs it (its {takes})"
    )


def _attribute(node: ir.Node, name: str, default: float, bound: Mapping[str, ir.Attr]) -> float:
    """A float attribute of ``node``, its default where not given; one a function's caller
    sets (a reference) is the call's (``bound``), else the default."""
    attr = node.attributes.get(name)
    if attr is not None and attr.is_ref():
        attr = bound.get(attr.ref_attr_name or "")
    if attr is None or attr.is_ref() or attr.type != ir.AttributeType.FLOAT:
        return default
    return float(attr.value)


def _unmatched(these: _Keys, others: _Keys) -> str:
    """The ops of ``these`` whose draws reach an output that the other model's output of its
    name does not hold drawing alike, counted as said (``2 Dropout (ratio=0.9, ...)``), or
    ``""``."""
    held_by = others.by_output
    unmatched: dict[int, str] = {}
    for output, drawn in these.by_output.items():
        held = Counter(others.draw(node)[0] for node in held_by.get(output, ()))
        for node in drawn:
            key, said = these.draw(node)
            if held[key] > 0:
                held[key] -= 1
            else:
                unmatched[id(node)] = said
    counted = Counter(unmatched.values())
    return ", ".join(f"{count} {said}" for said, count in sorted(counted.items()))


def _inlined(model: ir.Model) -> tuple[ir.Model, frozenset[int]]:
    """``model``, or where it draws and has local functions, a copy (its tensors shared) with
    every function inlined: a draw inside one (in a body of one too) is keyed by what each
    call passes, and a ratio a function computes by what it computes (t147). Where onnx-ir
    cannot inline them (an opset the function imports otherwise than the model), the model as
    it is, with the ids of its functions' inputs and of what its calls of them give: what a
    call passes or computes there is not known, and a draw reading one is held by no other (a
    verdict refused, never a wrong one; a ratio a call computed passed, t148)."""
    if not model.functions or not model_draws_randomly(model):
        return model, frozenset()
    from onnx_ir.passes.common.inliner import InlinePass

    try:
        if _overloaded_inside(model):  # onnx-ir follows it, ONNX Runtime does not (t209)
            raise ValueError("a function calls a local function by an overload")
        copy = model.clone()
        InlinePass()(copy)
    except Exception as error:  # onnx-ir's own failure (an opset mismatch): keys kept apart
        logger.info("random ops: the local functions could not be inlined (%s)", error)
        unknown = {id(v) for function in model.functions.values() for v in function.inputs}
        unknown |= {
            id(output)
            for graph in graphs_of(model)
            for node in graph
            if (node.domain, node.op_type, node.overload) in model.functions
            for output in node.outputs
        }
        return model, frozenset(unknown)
    return copy, frozenset()


def _overloaded_inside(model: ir.Model) -> bool:
    """Whether a function's own body calls a local function by an overload other than
    ``""`` (which ONNX Runtime does not follow there: :func:`~wnpass.onnx.graphs.callees`)."""
    return any(
        node.overload and callees(model, node, in_function=True)
        for function in model.functions.values()
        for node in function
    )


class _Keys:
    """How one model's random ops draw, as keys two models drawing alike share.

    Every key is a number from ``interned``, the table both models' keys share, made of its
    parts' numbers: a key hashes in the time of its own parts (a value read twice at every
    step of a computation made keys of 2**depth nested tuples, t148). Each node's key is made
    once, whichever outputs its draws reach.
    """

    def __init__(self, model: ir.Model, interned: dict[object, int]) -> None:
        self.model, self.unknown = _inlined(model)
        self.interned = interned
        self.main_inputs = {id(value) for value in self.model.graph.inputs}
        self.values: dict[int, int] = {}
        self.varying: set[int] = set()  # the values keyed that may differ from run to run
        self.draws: dict[int, tuple[int, str]] = {}
        self.by_output = random_ops_by_output(self.model)

    def draw(self, node: ir.Node) -> tuple[int, str]:
        """How ``node`` draws, and as said: its type, attributes (seed, mean, scale ...; a
        default written out or not alike) and what the inputs that set its draws hold (a
        Dropout's ratio, 0.5 where not given; a Bernoulli's probabilities): a constant's
        values, the graph input of its name (and default), or what computes it from those."""
        if id(node) not in self.draws:
            self.draws[id(node)] = self._draw(node)
        return self.draws[id(node)]

    def _draw(self, node: ir.Node) -> tuple[int, str]:
        key: list[object] = [node.domain or "", node.op_type, node.overload]
        said: list[str] = []
        given = {attr.name: attr for attr in node.attributes.values()}
        for name, default in sorted(_attribute_defaults(node).items()):
            if name not in given:
                key.append((name, repr(default)))
        for name, attr in sorted(given.items()):
            key.append((name, _attribute_key(attr)))
            said.append(
                f"{name}=@{attr.ref_attr_name}" if attr.is_ref() else f"{name}={attr.value}"
            )
        for index, name in _DRAW_INPUTS.get(node.op_type, {}).items():
            value = node.inputs[index] if index < len(node.inputs) else None
            if value is None and name != "ratio":
                continue  # no training_mode: a Dropout that does not draw (never here)
            array = np.array(0.5) if value is None else _small(value)
            if array is not None:  # by value: a ratio of 0.5 given or not, float32 or float64
                key.append((name, _values(array)))
                said.append(f"{name}={_said(array)}")
                continue
            assert value is not None  # no input holds the constant 0.5
            # what computes it, op by op, as a ratio: probabilities of 1 and of 0.999 computed
            # alike but for a constant drew alike, and a check passed on them (t200)
            key.append((name, self.value(value)))
            if id(value) in self.unknown:
                said.append(f"{name} given by a function's caller")
            elif id(value) in self.main_inputs:  # with its default: keyed with it (t151)
                said.append(f"{name} input {value.name}{self._default_said(value)}")
            else:
                said.append(f"{name} computed")
        then, ops = self._then(node)
        key.append(then)
        if ops:
            said.append("then " + ", ".join(dict.fromkeys(ops)))
        return self._interned(tuple(key)), node.op_type + (f" ({', '.join(said)})" if said else "")

    def _then(self, node: ir.Node) -> tuple[int, list[str]]:
        """What the graph computes from ``node``'s draws elementwise with constants, as a key
        (and the ops with what else they read, in the order read): a threshold
        (``Less(u, p)``, as torch's exporter writes ``rand_like(x) < p``: a Bernoulli of p), a
        scale, a shift, a Cast. It is part of how the model draws: ``u < 0`` and ``u < 1e-4``
        drew alike, by the op alone, and a check passed on them that one run in 150 shows
        apart (t310). Read from the outputs that hold the draws alone (a Dropout's mask; its
        output holds its data too), through each elementwise reader whose other inputs are
        the draw itself or keyed as a ratio is (:meth:`value`: a constant's values, a graph
        input with its default), up to any other reader (an activation read, a weight: a
        ``Gather`` of an embedding by a sample, which a fold rewrites), whose values the runs
        compare. Order-free: a model that reads them in another order draws alike. Past
        :data:`_THEN_READERS` readers, what follows is not read (one key for all: a model
        matched itself no more, t311)."""
        ops: list[str] = []
        budget = [_THEN_READERS]

        def key_of(value: ir.Value) -> int:
            keys = []
            for use in value.uses():
                reader = use.node
                read = self._read_with(reader, use.idx, value)
                if read is None:
                    continue  # it reads more than the draw: the runs compare what it gives
                budget[0] -= 1
                if budget[0] < 0:
                    return self._interned(("then", "more readers than are read"))
                keys_read, said = read
                ops.append(f"{reader.op_type}({', '.join(said)})" if said else reader.op_type)
                attributes = tuple(
                    sorted((a.name, _attribute_key(a)) for a in reader.attributes.values())
                )
                after = tuple(key_of(output) for output in reader.outputs)
                keys.append(
                    self._interned(
                        (reader.domain or "", reader.op_type, attributes, use.idx, keys_read, after)
                    )
                )
            return self._interned(("then", tuple(sorted(keys))))

        outputs = node.outputs[1:2] if node.op_type == "Dropout" else node.outputs
        return self._interned(tuple(key_of(value) for value in outputs)), ops

    def _read_with(
        self, reader: ir.Node, index: int, drawn: ir.Value
    ) -> tuple[tuple[object, ...], list[str]] | None:
        """The keys of what an elementwise ``reader`` of ``drawn`` (a value computed from a
        draw, its input ``index``) reads besides, and as said; None where it is no
        elementwise op, or reads a value that varies otherwise (an activation, or another
        value computed from the draw: which of two paths reaches it first is no part of how
        the model draws)."""
        if reader.domain not in ("", "ai.onnx") or reader.op_type not in _ELEMENTWISE:
            return None
        keys: list[object] = []
        said: list[str] = []
        for i, other in enumerate(reader.inputs):
            if i == index or other is None:
                continue
            if other is drawn:  # read twice (``u * u``)
                keys.append((i, "drawn"))
                continue
            if (array := _small(other)) is not None:  # by value, as a ratio is
                keys.append((i, _values(array)))
                said.append(_said(array))
                continue
            key = self.value(other)
            if id(other) in self.varying and not self._defaulted(other):
                return None
            keys.append((i, key))
            if id(other) in self.main_inputs:
                said.append(f"input {other.name}{self._default_said(other)}")
            else:
                said.append("computed")
        return tuple(keys), said

    def _defaulted(self, value: ir.Value) -> bool:
        """Whether ``value`` is an input of the model with a default (keyed with it)."""
        return id(value) in self.main_inputs and value.name in self.model.graph.initializers

    def _default_said(self, value: ir.Value) -> str:
        """`` (default 0.1)`` for a graph input with a default of a few values, ``""``
        without one."""
        default = self.model.graph.initializers.get(value.name or "")
        if default is None or default.const_value is None:
            return ""
        return f" (default {_said(default.const_value.numpy())})"

    def value(self, root: ir.Value) -> int:
        """What ``root`` computes, as a key: a constant's values (however large), a graph
        input's name with its default, else its node's op, attributes and its inputs' keys,
        however many nodes it is computed through (two identical files whose ratio was
        computed through 65 nodes held draws the other did not, t168); a value of an
        enclosing scope or a body's input (a Loop's carried value, t148), or one whose
        content is not known, a key of its own that nothing else shares. Each value is keyed
        once, in post-order (iterative, however long the computation)."""
        stack = [root]
        while stack:
            value = stack[-1]
            if id(value) in self.values:
                stack.pop()
                continue
            node = value.producer()
            if node is None or self._leaf(value):
                key = self._leaf_key(value)
            else:
                pending = [i for i in node.inputs if i is not None and id(i) not in self.values]
                if pending:  # its inputs first (the checker refuses a cycle)
                    stack.extend(pending)
                    continue
                key = self._computed_key(value, node)
            self.values[id(value)] = self._interned(key)
            stack.pop()
        return self.values[id(root)]

    def _leaf(self, value: ir.Value) -> bool:
        """Whether ``value`` is keyed by itself, not by its node's inputs."""
        return (
            id(value) in self.unknown or value.is_graph_input() or const_tensor(value) is not None
        )

    def _leaf_key(self, value: ir.Value) -> object:
        """The key of a value keyed by itself: a constant by its values, a graph input of
        the model by its name and default; anything else (a body's input, a function's, a
        value without a producer) is not known, and varies."""
        if id(value) not in self.unknown:
            if (array := _small(value)) is not None:
                return ("constant", str(array.dtype), _values(array))
            if id(value) in self.main_inputs:  # the model's default, where it has one
                self.varying.add(id(value))
                default = self.model.graph.initializers.get(value.name or "")
                held = None if default is None else default.const_value
                return ("input", value.name, None if held is None else _tensor_key(held))
            if not value.is_graph_input() and (tensor := const_tensor(value)) is not None:
                return _tensor_key(tensor)
        self.varying.add(id(value))
        return ("unknown", id(value))

    def _computed_key(self, value: ir.Value, node: ir.Node) -> object:
        """The key of a value ``node`` computes, its inputs keyed: a small constant's values
        where nothing it is computed from varies (a cone read as such is bounded), else its
        op, attributes and its inputs' keys."""
        inputs = [i for i in node.inputs if i is not None]
        if any(id(i) in self.varying for i in inputs):
            self.varying.add(id(value))
        elif (array := _small(value)) is not None:
            return ("constant", str(array.dtype), _values(array))
        attributes = tuple(sorted((a.name, _attribute_key(a)) for a in node.attributes.values()))
        keys = tuple(None if i is None else self.values[id(i)] for i in node.inputs)
        return (node.domain or "", node.op_type, attributes, value.index(), keys)

    def _interned(self, key: object) -> int:
        return self.interned.setdefault(key, len(self.interned))


# The most readers of a draw :meth:`_Keys._then` reads
_THEN_READERS = 256
# The ops through which a draw's values are read as part of how it draws (:meth:`_Keys._then`):
# arithmetic, comparisons, logic, selections and casts, element by element
_ELEMENTWISE = frozenset(
    {"Add", "Sub", "Mul", "Div", "Pow", "Mod", "Neg", "Abs", "Sqrt", "Exp", "Log", "Reciprocal"}
    | {"Floor", "Ceil", "Round", "Sign", "Relu", "Sigmoid", "Tanh", "Erf", "Clip", "Min", "Max"}
    | {"Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Equal", "Not", "And", "Or", "Xor"}
    | {"Where", "Cast", "CastLike", "Identity"}
)


def _small(value: ir.Value) -> np.ndarray | None:
    """A small constant's values as the graph holds them, each step rounded to its type: held
    in float64, ``Div(1, 1e4)`` keyed apart from the float32 literal ``1e-4`` it is (t313)."""
    return small_constant(value, stepwise=True)


def _attribute_defaults(node: ir.Node) -> dict[str, object]:
    """The attributes ``node``'s op has a default for, with it (ONNX's schema)."""
    import onnx

    try:
        schema = onnx.defs.get_schema(node.op_type, domain=node.domain or "")
    except onnx.defs.SchemaError:
        return {}
    return {
        name: onnx.helper.get_attribute_value(attr.default_value)
        for name, attr in schema.attributes.items()
        if attr.default_value.type
    }


def _attribute_key(attr: ir.Attr) -> object:
    """What an attribute holds, as a key: a tensor by its whole bytes (numpy's ``repr``
    shortens a large one with ``...``, t144), a graph as itself (no two alike), a reference to
    a function's attribute (left where the functions could not be inlined) as itself too, what
    each caller gives it not being known, any other value as written."""
    if attr.is_ref():
        return ("ref", id(attr))
    if attr.type == ir.AttributeType.TENSOR:
        return _tensor_key(attr.value)
    if attr.type == ir.AttributeType.TENSORS:
        return tuple(_tensor_key(tensor) for tensor in attr.value)
    if attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS):
        return ("graph", id(attr.value))
    return repr(attr.value)


def _tensor_key(tensor: ir.TensorProtocol) -> object:
    """A tensor's values as a key: its type, shape and a digest of its bytes, however large."""
    array = np.ascontiguousarray(tensor.numpy())
    digest = hashlib.sha256(array.view(np.uint8).tobytes()).hexdigest()
    return ("tensor", str(array.dtype), array.shape, digest)


def _values(array: np.ndarray) -> object:
    """A constant's values as a key part: floats as float64 bytes, every NaN alike (a NaN is
    no value equal to itself: a file of one NaN among Bernoulli's probabilities failed
    against itself, t149), so that a float32 and a float64 0.1 stay apart and 0.5 of either
    type alike; other values as they are."""
    if array.dtype.kind in "fc":
        wide = np.asarray(array, np.complex128 if array.dtype.kind == "c" else np.float64)
        wide = np.where(np.isnan(wide), np.nan, wide)
        return (array.shape, wide.tobytes())
    return (array.shape, tuple(array.ravel().tolist()))


def _said(array: np.ndarray) -> str:
    """A small constant as a line says it: a float scalar to 6 digits (a float32 ratio 0.9,
    not 0.8999999761581421), a bool as True or False, a few values as a list, more as a
    constant of their shape."""
    if array.size > 4:
        return f"a {'x'.join(map(str, array.shape))} constant"
    if array.ndim or array.dtype.kind != "f":
        return str(array.tolist())
    return f"{array.item():g}"
