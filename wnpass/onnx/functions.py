"""Local functions that compute a model's weights from their inputs, inlined so that a fold can
make those weights plain initializers.

TorchScript's ``export_modules_as_functions`` (and models written by hand) put a layer in a
local function whose inputs are its parameters: ``WNLinear(x, v, g)``, called with the main
graph's initializers. Inside the function ``v`` and ``g`` are inputs, not constants, so a fold
saw no weight there: weight norm (or a ``Transpose(W)`` before ``MatMul``) ran on every call,
and ``inspect --strict`` passed the model (t104).

A function is inlined (:func:`inline_functions`) where it computes a weight from one of
its inputs, a norm of it (what a weight-norm site starts from), the gain of a site, or layout
ops and arithmetic on it that a layer reads as a weight (a weight input of
:data:`~wnpass.onnx.cones.WEIGHT_INPUTS`), and every call
of it passes a constant there: an initializer or a value computed from constants, or an input
of another function whose every call does (``Net(x, v, g)`` calling ``WNLinear(x, v, g)``),
which is inlined with it. A weight's cone may cross calls (t263): a layer in a function reads
as its input a weight its caller computes from constants (``F.normalize(W)``), or a layer reads
what a function computes from constants (``Scale(W)``); the functions on the way are inlined
too, where every call passes constants. Every other function stays as it is, and so does a
function called with a value fed at run time there (a filter its caller computes), whose
weight is no constant.
"""

from __future__ import annotations

import logging
from collections.abc import Set

import onnx_ir as ir
from onnx_ir.passes.common.inliner import InlinePass  # not the package: all its passes

from wnpass.onnx.cones import ARITHMETIC_OPS, CONE_OPS, WEIGHT_INPUTS
from wnpass.onnx.graphs import enclosing_scope, function_name, graphs_of, run_time_values
from wnpass.onnx.match import behind_layout, find_sites, is_constant_cone, seed_source

__all__ = ["inline_functions", "weight_functions"]

logger = logging.getLogger(__name__)

_Id = tuple[str, str, str]  # a function's (domain, name, overload)
_ONNX = ("", "ai.onnx")


def weight_functions(model: ir.Model, *, cones: bool = True) -> list[ir.Function]:
    """The local functions a fold inlines (module docstring), in the model's order; with
    ``cones=False`` (``--weight-norm-only``), only those holding a norm of an input."""
    if not model.functions:
        return []
    chosen: set[_Id] = set()
    calls = _Calls(model)
    gains = _gain_inputs(model)
    for function in model.functions.values():
        for index in [*_norm_inputs(function), *gains.get(function.identifier(), [])]:
            passed = calls.constant_everywhere(function, index)
            if passed is not None:
                chosen |= {function.identifier(), *passed}
    if cones:
        chosen |= _cone_functions(model, calls)
    return [f for f in model.functions.values() if f.identifier() in chosen]


def inline_functions(model: ir.Model, chosen: Set[_Id]) -> list[str]:
    """Inline the local functions ``chosen`` (identifiers, :func:`weight_functions`' of this
    model or of one it is a copy of) into the graphs that call them; their names
    (``domain::name``), in the model's order; none where onnx-ir's inliner would fail part
    way (:func:`_not_inlinable`: said in a warning)."""
    functions = [f for f in model.functions.values() if f.identifier() in chosen]
    if not functions:
        return []
    inline = InlinePass(criteria=lambda function: function.identifier() in chosen)
    if (problem := _not_inlinable(model, functions, inline)) is not None:
        logger.warning("not inlining the local functions that compute weights: %s", problem)
        return []
    inline(model)
    names = [function_name(function) for function in functions]
    logger.info("inlined local functions that compute weights from their inputs: %s", names)
    return names


def _not_inlinable(model: ir.Model, functions: list[ir.Function], inline: InlinePass) -> str | None:
    """Why ``inline`` would fail part way on ``functions`` (onnx-ir's inliner checks as it
    goes: another version of an opset than the model's, a graph passed as an attribute, more
    inputs than the function has; and first, calls that form a cycle), or None."""
    try:
        inline.requires(model)
    except ir.passes.PreconditionError as error:
        return str(error)
    versions = dict(model.opset_imports)
    for function in functions:
        for domain, version in function.opset_imports.items():
            if versions.setdefault(domain, version) != version:
                named, opset = function_name(function), domain or "ai.onnx"
                return f"{named} imports {opset} {version}, the model {versions[domain]}"
    ids = {function.identifier(): function for function in functions}
    for graph in graphs_of(model):
        for node in graph:
            called = ids.get((node.domain, node.op_type, node.overload))
            if called is None:
                continue
            if len(node.inputs) > len(called.inputs):
                return f"a call of {function_name(called)} passes more inputs than it takes"
            if any(a.type in _GRAPHS for a in node.attributes.values()):
                return f"a call of {function_name(called)} passes a graph as an attribute"
    return None


_GRAPHS = frozenset({ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS})
_CONE_OPS = CONE_OPS | ARITHMETIC_OPS


def _norm_inputs(function: ir.Function) -> list[int]:
    """The inputs of ``function`` (by position) that a norm normalizes, through layout ops."""
    position = {value: i for i, value in enumerate(function.inputs)}
    found: dict[int, None] = {}
    # its If/Loop bodies too: a body reads the function's inputs as outer values (t108)
    for node in ir.traversal.RecursiveGraphIterator(function):
        source = seed_source(node) if node.domain in _ONNX else None
        if source is not None and (behind := behind_layout(source)) in position:
            found[position[behind]] = None
    return list(found)


def _cone_functions(model: ir.Model, calls: _Calls) -> set[_Id]:
    """The functions to inline so that each weight a layer reads (a weight input of
    :data:`~wnpass.onnx.cones.WEIGHT_INPUTS`) that is computed from constants by cone ops
    (layout ops and exactly rounded arithmetic) has its cone in one scope: the functions the
    cone passes through (a caller's ``Gemm`` reading what a function ``Scale(W)`` computes),
    and, where it reaches inputs of the function holding the layer, that function and those
    whose inputs pass the constants on (a function's ``Gemm`` reading its input, which every
    call passes a value computed from constants: ``F.normalize(W)`` its caller computes).
    A function whose layer reads its input as it is, passed an initializer by every call,
    needs nothing."""
    run_time = run_time_values(model)
    found: set[_Id] = set()
    for scope in graphs_of(model):
        owner: ir.Graph | ir.Function | None = scope
        while owner is not None and not isinstance(owner, ir.Function):
            owner = enclosing_scope(owner)  # a body inside a function reads its inputs (t108)
        for node in scope:
            if node.domain not in _ONNX:
                continue
            for slot in WEIGHT_INPUTS.get(node.op_type, ()):
                value = node.inputs[slot] if slot < len(node.inputs) else None
                if value is None or (owner is None and value in run_time):
                    continue
                needed = _needed(value, owner, calls)
                if needed is not None:
                    found |= needed
    return found


def _needed(value: ir.Value, owner: ir.Function | None, calls: _Calls) -> set[_Id] | None:
    """The functions to inline for the weight ``value`` (read in ``owner``, a function or
    None) to be computed from constants in one scope (:func:`_cone_functions`); None where
    it is not, or needs no function inlined."""
    cone = calls.cone(value)
    if cone is None or (owner is None and cone[0]):
        return None
    positions, needed = cone
    if positions and owner is not None:
        if value.producer() is None and not calls.computed_somewhere(owner, positions[0]):
            return None  # read as it is, and passed an initializer at every call
        for index in positions:
            passed = calls.constant_everywhere(owner, index)
            if passed is None:
                return None
            needed |= {owner.identifier(), *passed}
    return needed or None


def _gain_inputs(model: ir.Model) -> dict[_Id, list[int]]:
    """The inputs (by position) of each function that are the gain of a weight-norm site
    whose v is the function's own constant (declined as ``g 'g' is a function input``)."""
    found: dict[_Id, list[int]] = {}
    for site in find_sites(model):
        scope: ir.Graph | ir.Function | None = site.graph
        while scope is not None and not isinstance(scope, ir.Function):
            scope = enclosing_scope(scope)  # a body inside a function reads its inputs (t109)
        if scope is None or site.g is None:
            continue
        source = behind_layout(site.g)
        if source is not None and source in scope.inputs:
            found.setdefault(scope.identifier(), []).append(scope.inputs.index(source))
    return found


class _Calls:
    """Every call of each local function, in every graph, body and function, and whether a
    function's input is passed a constant at all of them."""

    def __init__(self, model: ir.Model) -> None:
        self.calls: dict[_Id, list[ir.Node]] = {}
        for graph in graphs_of(model):
            for node in graph:
                key = (node.domain, node.op_type, node.overload)
                if key in model.functions:
                    self.calls.setdefault(key, []).append(node)
        # each function's input: the function, and its position
        self.inputs: dict[ir.Value, tuple[ir.Function, int]] = {
            value: (function, i)
            for function in model.functions.values()
            for i, value in enumerate(function.inputs)
        }
        self._known: dict[tuple[_Id, int], set[_Id] | None] = {}
        self.functions = model.functions

    def cone(self, value: ir.Value) -> tuple[list[int], set[_Id]] | None:
        """What the weight ``value`` is computed from by cone ops (``_CONE_OPS``) alone, through
        calls of local functions (into what each computes its output from, and back out to the
        arguments of that call): the inputs (by position) of the function that reads it, and
        the functions passed through; None where another op or a value fed at run time is in
        it (a graph input, a body's own input)."""
        positions: dict[int, None] = {}
        callees: set[_Id] = set()
        stack: list[tuple[ir.Value, tuple[ir.Node, ...]]] = [(value, ())]
        seen: set[tuple[ir.Value, tuple[ir.Node, ...]]] = set()
        while stack:
            current, context = stack.pop()
            if (current, context) in seen:
                continue
            seen.add((current, context))
            node = current.producer()
            if node is None:
                if current in self.inputs:  # a function's input: a call's argument, or ours
                    index = self.inputs[current][1]
                    if not context:
                        positions[index] = None
                        continue
                    call = context[-1]
                    argument = call.inputs[index] if index < len(call.inputs) else None
                    if argument is None:
                        return None
                    stack.append((argument, context[:-1]))
                elif current.is_graph_input() or not current.is_initializer():
                    return None
            elif node.domain in _ONNX and node.op_type in _CONE_OPS:
                stack.extend((i, context) for i in node.inputs if i is not None)
            else:
                key = (node.domain, node.op_type, node.overload)
                function = self.functions.get(key)
                if function is None or node in context:  # another op; a call in a cycle
                    return None
                callees.add(key)
                output = function.outputs[node.outputs.index(current)]
                stack.append((output, (*context, node)))
        return list(positions), callees

    def computed_somewhere(
        self, function: ir.Function, index: int, asked: frozenset[tuple[_Id, int]] = frozenset()
    ) -> bool:
        """Whether some call of ``function`` passes as input ``index`` a value computed there
        (by any op, a layout op on an initializer too), or an input of its own function that
        some call of that one passes so (``asked``: those on the way, a cycle of calls)."""
        asked = asked | {(function.identifier(), index)}
        for call in self.calls.get(function.identifier(), []):
            argument = call.inputs[index] if index < len(call.inputs) else None
            if argument is None:
                continue
            if argument.producer() is not None:
                return True
            if argument in self.inputs:
                outer, position = self.inputs[argument]
                if (outer.identifier(), position) not in asked and self.computed_somewhere(
                    outer, position, asked
                ):
                    return True
        return False

    def constant_everywhere(self, function: ir.Function, index: int) -> set[_Id] | None:
        """The functions whose inputs pass the constants on, where every call of ``function``
        passes a constant as input ``index`` (empty: all from constants of their own graphs);
        None where some call passes something else, or there is no call."""
        key = (function.identifier(), index)
        if key in self._known:
            return self._known[key]
        self._known[key] = None  # a cycle of calls is no constant
        via: set[_Id] | None = set()
        calls = self.calls.get(function.identifier(), [])
        for call in calls:
            argument = call.inputs[index] if index < len(call.inputs) else None
            passed = self._constant(argument)
            if passed is None:
                via = None
                break
            assert via is not None
            via |= passed
        self._known[key] = via if calls else None
        return self._known[key]

    def _constant(self, argument: ir.Value | None) -> set[_Id] | None:
        """Which functions pass ``argument`` on as a constant (empty: a constant of its own
        graph); None where it is none."""
        if argument is None:
            return None
        if is_constant_cone(argument):
            return set()
        source = behind_layout(argument)
        if source is None or source not in self.inputs:
            return None
        outer, index = self.inputs[source]
        passed = self.constant_everywhere(outer, index)
        return None if passed is None else {outer.identifier(), *passed}
