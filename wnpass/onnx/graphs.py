"""Walking onnx-ir models: every graph (subgraphs and functions), the cone of a value, and the
constant a value holds.

Every walk is iterative, so a chain of thousands of nodes or deeply nested bodies are fine.

A subgraph initializer named like a value of an enclosing scope has no single meaning: the
ONNX checker accepts it, ``onnx.reference`` reads the outer value, ONNX Runtime either,
depending on its optimization level and the model. Such an initializer is no constant here
(``const_tensor``), so nothing computed from it is folded; and the outer value of its name must
stay under that name, read by the bodies that read it (``shadowed``, ``shadowed_in_cone``).
Which initializers shadow is decided when a walk (``graphs_of``) first meets their body: the
model as it was given, before a fold changes the graphs around it (a fold walks the whole
model before it reads a constant).
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence

import onnx_ir as ir

__all__ = [
    "Namesakes",
    "attribute_tensors",
    "callees",
    "const_tensor",
    "constant_initializers",
    "constants_as_nodes",
    "defining_scope",
    "draws",
    "draws_randomly",
    "enclosing_scope",
    "graphs_of",
    "model_draws_randomly",
    "node_bodies",
    "nodes_in_functions",
    "nodes_within",
    "shadowed",
    "shadowed_in_cone",
    "subgraphs_of",
    "value_inputs",
    "walk_cone",
]

logger = logging.getLogger(__name__)

_GRAPH, _GRAPHS = ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS

# Each subgraph walked: the names of its initializers that an enclosing scope defines too.
_SHADOWING: weakref.WeakKeyDictionary[ir.Graph, frozenset[str]] = weakref.WeakKeyDictionary()
# Each subgraph walked: the graph (or function) that encloses it.
_ENCLOSING: weakref.WeakKeyDictionary[ir.Graph, ir.Graph | ir.Function] = (
    weakref.WeakKeyDictionary()
)
# The shadowing initializers warned about (once each).
_WARNED: weakref.WeakSet[ir.Value] = weakref.WeakSet()


# Each body walked of a model of IR version 3 or below, where no initializer may stand: that
# version wants every initializer listed as an input of its graph, and a body has none to list
# it in. Its constants are Constant nodes, as in a function (``constants_as_nodes``).
_WITHOUT_INITIALIZERS: weakref.WeakSet[ir.Graph] = weakref.WeakSet()

# ONNX ops whose outputs are not functions of their inputs: each run draws new values.
RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}
    | {"Bernoulli"}
)

# The IR version from which a graph input can override an initializer of its name (ONNX
# Runtime's rule; below it, every initializer is listed as an input, and none is fed).
OVERRIDABLE_FROM_IR = 4


def graphs_of(model: ir.Model) -> Iterator[ir.Graph | ir.Function]:
    """The main graph, every subgraph (If/Loop/Scan bodies) and every local function."""
    tops: list[ir.Graph | ir.Function] = [model.graph, *model.functions.values()]
    for top in tops:
        yield top
        for body in subgraphs_of(top):
            if model.ir_version < OVERRIDABLE_FROM_IR:
                _WITHOUT_INITIALIZERS.add(body)
            yield body


def draws_randomly(node: ir.Node) -> bool:
    """Whether ``node`` draws random values (``RANDOM_OPS``, a Dropout that may draw)."""
    return node.domain in ("", "ai.onnx") and (
        node.op_type in RANDOM_OPS or (node.op_type == "Dropout" and draws(node))
    )


def model_draws_randomly(model: ir.Model) -> bool:
    """Whether any node of the model (in any graph, body or function) draws random values."""
    return any(draws_randomly(node) for graph in graphs_of(model) for node in graph)


def draws(node: ir.Node) -> bool:
    """Whether a Dropout may draw: its training_mode input is given and not a constant false,
    and its ratio (0.5 where not given) is not a constant 0, where ONNX Runtime returns its
    input unchanged."""
    ratio, mode = (node.inputs[i] if len(node.inputs) > i else None for i in (1, 2))
    return mode is not None and _may_be_nonzero(mode) and (ratio is None or _may_be_nonzero(ratio))


def _may_be_nonzero(value: ir.Value) -> bool:
    """Whether ``value`` may hold a non-zero element at run time (a graph input may be fed
    one)."""
    tensor = None if value.is_graph_input() else const_tensor(value)
    return tensor is None or bool(tensor.numpy().any())


def callees(
    model: ir.Model, call: ir.Node, in_function: bool
) -> list[tuple[ir.OperatorIdentifier, ir.Function]]:
    """The local functions ``call`` may run: the one it names; for a call in a function's
    own body (``in_function``: :func:`nodes_in_functions`; not in an ``If`` or ``Loop`` body
    there, where it runs the one named, t216) by an overload, the overload ``""`` of its name
    too, which ONNX Runtime 1.32 runs there instead of the one named (t209): both are read,
    whichever it runs."""
    named = (call.domain, call.op_type, call.overload)
    keys = [named, (call.domain, call.op_type, "")] if in_function and call.overload else [named]
    return [(key, model.functions[key]) for key in keys if key in model.functions]


def nodes_in_functions(model: ir.Model) -> frozenset[int]:
    """The ids of the nodes of ``model``'s local functions' own bodies (not of the graphs
    their nodes hold)."""
    return frozenset(id(node) for function in model.functions.values() for node in function)


def function_name(function: ir.Function) -> str:
    """A local function as reports name it: ``domain::name``, and ``:overload`` where it has
    one (IR version 10: an overload is a function of its own)."""
    overload = f":{function.overload}" if function.overload else ""
    return f"{function.domain}::{function.name}{overload}"


def constants_as_nodes(graph: ir.Graph | ir.Function) -> bool:
    """Whether ``graph`` holds its constants as ``Constant`` nodes, not initializers: a
    function, or a body of a model of IR version 3 or below (walked by ``graphs_of``)."""
    return isinstance(graph, ir.Function) or graph in _WITHOUT_INITIALIZERS


@contextlib.contextmanager
def constant_initializers(model: ir.Model) -> Iterator[None]:
    """In the block, the initializers of an IR version 3 model's main graph are no inputs.

    That version wants every initializer listed as a graph input, and ONNX Runtime lets no
    feed override one (from version 4 on, an initializer listed as an input can be fed, so
    nothing computed from it is constant): they are the constants they look like, and the
    passes see them as such. On leaving, the inputs are listed again as the version wants
    them: those the model had, in their order, less the initializers the block removed, then
    each initializer the block added, typed and shaped (an input needs its type). A model of
    version 4 or above is left as it is."""
    if model.ir_version >= OVERRIDABLE_FROM_IR:
        yield
        return
    graph = model.graph
    listed = list(graph.inputs)
    constants = {value for value in listed if value.is_initializer()}
    before = set(graph.initializers.values())
    graph.inputs.clear()
    graph.inputs.extend(value for value in listed if value not in constants)
    try:
        yield
    finally:
        kept = [v for v in listed if v not in constants or _initializer_of(v, graph)]
        added = [v for v in graph.initializers.values() if v not in before]
        for value in added:
            tensor = value.const_value
            if tensor is not None:
                value.type = value.type or ir.TensorType(tensor.dtype)
                value.shape = value.shape or ir.Shape(tensor.shape.numpy())
        graph.inputs.clear()
        graph.inputs.extend([*kept, *added])


def _initializer_of(value: ir.Value, graph: ir.Graph) -> bool:
    return value.name is not None and graph.initializers.get(value.name) is value


def subgraphs_of(graph: ir.Graph | ir.Function) -> Iterator[ir.Graph]:
    """Every If/Loop/Scan body under ``graph`` (the outermost scope), each followed by the
    bodies nested in it (depth first, in node order; iterative, however deep the nesting).
    A body met for the first time has its shadowing initializers recorded (module docstring)."""
    stack = _nested(_Scope(graph, None))
    while stack:
        body, outer = stack.pop()
        if body not in _SHADOWING:
            _SHADOWING[body] = frozenset(name for name in body.initializers if outer.defines(name))
            _ENCLOSING[body] = outer.graph
        yield body
        stack.extend(_nested(_Scope(body, outer)))


def nodes_within(scope: ir.Graph | ir.Function) -> Iterator[ir.Node]:
    """The nodes of ``scope`` and of the bodies they hold, however deep (not onnx-ir's
    ``RecursiveGraphIterator``, which fails on a graph attribute a function's call gives,
    ``then_branch = @br``: t281)."""
    for graph in (scope, *subgraphs_of(scope)):
        yield from graph


class _Scope:
    """A graph inside the scopes that enclose it. The names it defines are only gathered when a
    body in it is met for the first time, so a walk over known bodies costs nothing more."""

    __slots__ = ("_names", "graph", "outer")

    def __init__(self, graph: ir.Graph | ir.Function, outer: _Scope | None) -> None:
        self.graph, self.outer = graph, outer
        self._names: frozenset[str] | None = None

    def defines(self, name: str) -> bool:
        """Whether this graph or one around it defines a value named ``name``."""
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.names():
                return True
            scope = scope.outer
        return False

    def names(self) -> frozenset[str]:
        """The names of the values this graph defines: inputs, initializers, node outputs."""
        if self._names is None:
            graph = self.graph
            names = {value.name for value in graph.inputs}
            if isinstance(graph, ir.Graph):
                names.update(graph.initializers)
            names.update(out.name for node in graph for out in node.outputs)
            self._names = frozenset(name for name in names if name)
        return self._names


def _nested(scope: _Scope) -> list[tuple[ir.Graph, _Scope]]:
    """The bodies that the nodes of ``scope``'s graph hold, reversed for a stack, each with the
    scope around it."""
    return [(body, scope) for body in reversed(_bodies(scope.graph))]


def _bodies(graph: ir.Graph | ir.Function) -> list[ir.Graph]:
    """The bodies that the nodes of ``graph`` itself hold, in node order."""
    return [body for node in graph for body in node_bodies(node)]


def value_inputs(node: ir.Node) -> Sequence[ir.Value | None]:
    """The inputs whose values ``node`` reads: all of them but ``CastLike``'s second, which
    gives only a type (the dynamo exporter's ``CastLike(eps, norm)``)."""
    if node.op_type == "CastLike" and node.domain in ("", "ai.onnx"):
        return node.inputs[:1]
    return node.inputs


def walk_cone(value: ir.Value, *, values_only: bool = False) -> Iterator[ir.Value]:
    """``value`` and every value it is computed from, each once; initializers and graph inputs
    are leaves. With ``values_only``, only the inputs whose values go in (``value_inputs``)."""
    stack, seen = [value], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        yield current
        if current.is_initializer() or current.is_graph_input():
            continue
        if (node := current.producer()) is not None:
            inputs = value_inputs(node) if values_only else node.inputs
            stack.extend(i for i in inputs if i is not None)


def run_time_values(model: ir.Model) -> set[ir.Value]:
    """Every value of ``model``'s graphs, bodies and functions that is computed from a value
    fed at run time: a graph input without an initializer (one with an initializer, which a
    feed can override, counts as a constant, as the fold's ``overridable`` reads it), a
    function's input, a value of no producer that is no initializer; the outputs of an
    If/Loop/Scan whose bodies compute theirs from one (a body's input is fed at run time but
    where it holds what a node's input computes on every iteration: ``_bound_pairs``). One pass
    in graph order, however deep the network."""
    found: set[ir.Value] = set()
    bound: set[ir.Value] = set()  # bodies' inputs bound to values computed from constants

    def fed(value: ir.Value | None) -> bool:
        if value is None or value in bound:
            return False
        if value in found:
            return True
        return value.producer() is None and not value.is_initializer() and value.const_value is None

    tops: list[ir.Graph | ir.Function] = [model.graph, *model.functions.values()]
    for top in tops:
        found.update(value for value in top.inputs if fed(value))
        _scan_run_time(top, fed, found, bound)
    return found


def _scan_run_time(
    graph: ir.Graph | ir.Function,
    fed: Callable[[ir.Value | None], bool],
    found: set[ir.Value],
    bound: set[ir.Value],
) -> None:
    """Mark in ``found`` the values of ``graph`` computed from a value ``fed`` says is fed at
    run time, bodies first at each node that holds them (iterative over nesting)."""
    work: list[tuple[ir.Node, list[ir.Graph]] | Iterator[ir.Node]] = [iter(graph)]
    while work:
        item = work[-1]
        if isinstance(item, tuple):  # a node whose bodies were scanned
            work.pop()
            node, bodies = item
            if any(fed(v) for v in node.inputs) or any(
                fed(v) for body in bodies for v in body.outputs
            ):
                found.update(node.outputs)
            continue
        following = next(item, None)
        if following is None:
            work.pop()
            continue
        node = following
        bodies = node_bodies(node)
        if not bodies:
            if any(fed(v) for v in node.inputs):
                found.update(node.outputs)
            continue
        for body in bodies:
            pairs = _bound_pairs(node, body)
            bound.update(inner for inner, outer in pairs if not fed(outer))
            found.update(inner for inner in body.inputs if fed(inner))
        work.append((node, bodies))
        work.extend(iter(body) for body in reversed(bodies))


def _bound_pairs(node: ir.Node, body: ir.Graph) -> list[tuple[ir.Value, ir.Value | None]]:
    """The inputs of ``body`` that hold, on every iteration, what the node's input paired
    with each computes: a Loop's iteration number (from its trip count) and a Scan's scanned
    inputs. A Loop's condition and carried values, and a Scan's state, take the body's own
    outputs after the first iteration: they are fed at run time, whatever starts them."""
    if node.op_type == "Loop" and body.inputs:
        return [(body.inputs[0], node.inputs[0] if node.inputs else None)]
    if node.op_type == "Scan":
        scanned = node.attributes.get("num_scan_inputs")
        count = 0 if scanned is None else int(scanned.value)
        states = len(node.inputs) - count
        return list(zip(body.inputs[states:], node.inputs[states:], strict=False))
    return []


def node_bodies(node: ir.Node) -> list[ir.Graph]:
    """The bodies ``node`` holds (an If's branches, a Loop's or Scan's body)."""
    found: list[ir.Graph] = []
    # ``Attributes`` is a UserDict: its ``data`` dict is walked without the Mapping machinery,
    # 3.5x faster (the walk runs ten times in a fold, over every node)
    for attr in node.attributes.data.values():
        kind = attr.type
        if kind is _GRAPH and not attr.is_ref():  # a function's graph attribute its call
            found.append(attr.value)  # gives (``@br``): no body here (t281)
        elif kind is _GRAPHS and not attr.is_ref():
            found.extend(attr.value)
    return found


def const_tensor(value: ir.Value) -> ir.TensorProtocol | None:
    """``ir.convenience.get_const_tensor(value)``: an initializer's tensor or a ``Constant``'s;
    None for a subgraph initializer that shadows a value of an enclosing scope (module
    docstring), with a warning the first time.

    A ``Constant`` holding a tensor is read here directly: onnx-ir checks that tensor against a
    runtime protocol, which costs 60 microseconds a call on Python 3.11 (a tenth of the fold of
    a small export). Its tensor keeps its own name, where onnx-ir renames it to the value's:
    that tensor can be the caller's ``TensorProto`` itself (a ``ModelProto`` is read without
    copying its weights), which is never changed. Every other form is left to onnx-ir, errors
    included (the forms left to it build a new tensor, which it may name).
    """
    if value.const_value is not None:
        if _shadows(value):
            return None
        return value.const_value
    node = value.producer()
    if node is None or node.op_type != "Constant" or node.domain != "":
        return None
    attr = node.attributes.get("value")
    single = len(node.outputs) == 1 and len(node.attributes) == 1
    if single and attr is not None and not attr.is_ref() and attr.type == ir.AttributeType.TENSOR:
        tensor: ir.TensorProtocol = attr.value
        return tensor
    return ir.convenience.get_const_tensor(value)


def enclosing_scope(graph: ir.Graph | ir.Function) -> ir.Graph | ir.Function | None:
    """The graph (or function) whose node holds the body ``graph`` (walked by ``graphs_of``);
    None for a main graph or a function."""
    return _ENCLOSING.get(graph) if isinstance(graph, ir.Graph) else None


def defining_scope(value: ir.Value, graph: ir.Graph | ir.Function) -> ir.Graph | ir.Function:
    """The graph among ``graph`` and the scopes around it (walked by ``graphs_of``) that
    defines ``value``, which ``graph`` reads: ``graph`` itself, or an enclosing graph whose
    value a body reads (a weight computed in the main graph for a branch of an ``If``)."""
    defining = value.graph
    scope: ir.Graph | ir.Function | None = graph
    while scope is not None:
        if defining is (scope.graph if isinstance(scope, ir.Function) else scope):
            return scope
        scope = enclosing_scope(scope)
    return graph


def shadowed(graph: ir.Graph | ir.Function) -> frozenset[str]:
    """The names of ``graph``'s scope that an initializer of a subgraph inside it (walked so
    far) shadows. A value of ``graph`` with one of them must stay, under its name: runtimes
    that read the outer value in the body would read the body's own once it is gone or
    renamed. Empty, at once, for a model without such bodies."""
    found: set[str] = set()
    for body, names in _SHADOWING.items():
        if not names:
            continue
        scope: ir.Graph | ir.Function | None = _ENCLOSING.get(body)
        while scope is not None and scope is not graph:
            scope = _ENCLOSING.get(scope) if isinstance(scope, ir.Graph) else None
        if scope is graph:
            found |= names
    return frozenset(found)


def shadowed_in_cone(value: ir.Value, graph: ir.Graph | ir.Function) -> str | None:
    """Why folding ``value`` of ``graph`` is declined when a value it is computed from (which a
    fold removes or renames) is named like a shadowing initializer of a body inside the graph
    that value belongs to (:func:`shadowed`): ``graph`` itself, or an enclosing graph whose
    values a body's cone reads, whose other bodies may shadow them; None when none is."""
    if not any(_SHADOWING.values()):  # no body of a live model shadows anything
        return None
    names: dict[ir.Graph | ir.Function, frozenset[str]] = {}
    owner: ir.Graph | ir.Function | None
    for current in walk_cone(value):
        if current.is_initializer():
            # one a fold leaves unused stays when shadowed (fold), but a body that read it no
            # longer does: ONNX Runtime gives a node's bodies the outer values they read, over
            # a shadowing initializer of that name in any of them (optimizations disabled)
            owner = current.graph
            if owner is None or all(use.node.graph is owner for use in current.uses()):
                continue
            said = (
                "is read by a subgraph from an enclosing graph where an initializer of a "
                "subgraph inside has its name: ONNX Runtime reads the outer value in that "
                "subgraph while the node reads it, which folding ends"
            )
        else:
            node = current.producer()
            owner = graph if node is None or node.graph is None else node.graph
            said = (
                "is named like an initializer of a subgraph inside: runtimes that read the "
                "outer value there would read that initializer once it is folded"
            )
        assert owner is not None
        if owner not in names:
            names[owner] = shadowed(owner)
        if current.name in names[owner]:
            return f"'{current.name}' {said}"
    return None


class Namesakes:
    """The value of an enclosing scope that a subgraph initializer shadowing it is named like,
    where that value is there when the body runs: ONNX Runtime may read it in the
    initializer's place (module docstring). Each scope is indexed once, when first asked
    about (a walk per read took 40 s for 2000 such bodies in a graph of 20k nodes, t172): for
    a model that does not change while it is asked about."""

    def __init__(self) -> None:
        # each scope indexed: its values by name, with their node's position (-1: an input
        # or an initializer), and the position of the node that holds each body in it
        self._scopes: dict[int, tuple[dict[str, tuple[int, ir.Value]], dict[int, int]]] = {}

    def of(self, value: ir.Value) -> ir.Value | None:
        """The value of the nearest enclosing scope named like ``value``, a shadowing subgraph
        initializer, that is defined before the node holding the body (an input, an
        initializer, an earlier node's output; one after it, as the If's own output, is not,
        t169). None for any other value, and for a body no walk (``graphs_of``) has met."""
        graph, name = value.graph, value.name
        if not _is_shadowing(value):
            return None
        assert graph is not None and name is not None  # a shadowing initializer's
        body: ir.Graph | ir.Function = graph
        scope = _ENCLOSING.get(graph)
        while scope is not None:
            named, holders = self._index(scope)
            position, found = named.get(name, (0, None))
            if found is not None and position < holders.get(id(body), -1):
                return found
            body, scope = scope, _ENCLOSING.get(scope) if isinstance(scope, ir.Graph) else None
        return None

    def _index(
        self, graph: ir.Graph | ir.Function
    ) -> tuple[dict[str, tuple[int, ir.Value]], dict[int, int]]:
        if id(graph) not in self._scopes:
            named: dict[str, tuple[int, ir.Value]] = {}
            holders: dict[int, int] = {}
            for value in graph.inputs:
                named.setdefault(value.name or "", (-1, value))
            if isinstance(graph, ir.Graph):
                for key, value in graph.initializers.items():
                    named.setdefault(key, (-1, value))
            for position, node in enumerate(graph):
                holders.update((id(inner), position) for inner in node_bodies(node))
                for output in node.outputs:
                    named.setdefault(output.name or "", (position, output))
            self._scopes[id(graph)] = (named, holders)
        return self._scopes[id(graph)]


def _is_shadowing(value: ir.Value) -> bool:
    """Whether ``value`` is a subgraph initializer named like a value of an enclosing scope
    (of a body a walk, ``graphs_of``, has met)."""
    graph = value.graph
    return graph is not None and value.name in _SHADOWING.get(graph, ()) and value.is_initializer()


def _shadows(value: ir.Value) -> bool:
    """Whether ``value`` is a subgraph initializer named like a value of an enclosing scope;
    warns the first time it is asked about each."""
    if not _is_shadowing(value):
        return False
    graph = value.graph
    assert graph is not None
    if value not in _WARNED:
        _WARNED.add(value)
        logger.warning(
            "initializer '%s' of subgraph '%s' has the name of a value of an enclosing scope: "
            "runtimes differ on which one the subgraph reads; nothing computed from it is "
            "folded",
            value.name,
            graph.name or "?",
        )
    return True


def attribute_tensors(nodes: Iterable[ir.Node]) -> Iterator[ir.TensorProtocol]:
    """The tensors held in the attributes of ``nodes`` (references to a function's
    attributes hold none)."""
    for node in nodes:
        for attr in node.attributes.values():
            if attr.is_ref():
                continue
            if attr.type == ir.AttributeType.TENSOR:
                yield attr.value
            elif attr.type == ir.AttributeType.TENSORS:
                yield from attr.value
