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
which is inlined with it. A weight a layer reads that is computed from constants, by ops of
any kind (no random draw), in several scopes (t263, t264, t266) has every function on its way
inlined: where a layer in a function reads its input, the callers computing it at every call
(``F.normalize(W)``), the functions whose output it is (``Scale(W)``), and a function whose
node on the way takes an attribute of its call (``Constant <value = @W>``), found by following
the values computed from constants (:meth:`_Calls.constants`) across calls. Every other
function stays as it is, and so does a function called with a value fed at run time there (a
filter its caller computes), whose weight is no constant. Inlining is kept only where the
folded model runs fewer nodes (``FoldWeightNormPass``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence, Set

import onnx_ir as ir
from onnx_ir.passes.common.inliner import InlinePass  # not the package: all its passes

from wnpass.onnx import naming
from wnpass.onnx.cones import WEIGHT_INPUTS
from wnpass.onnx.graphs import (
    callees,
    draws_randomly,
    enclosing_scope,
    function_name,
    graphs_of,
    nodes_within,
    subgraphs_of,
)
from wnpass.onnx.match import behind_layout, find_sites, seed_source

__all__ = ["inline_functions", "not_inlinable", "weight_functions"]

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
    constant = calls.constants()
    gains = _gain_inputs(model)
    for function in model.functions.values():
        for index in [*_norm_inputs(function), *gains.get(function.identifier(), [])]:
            # a site's v or g: the function, and those on the way of what its calls pass
            if (value := function.inputs[index]) in constant:
                chosen |= calls.way(value, computed=True)
    if cones:
        chosen |= _cone_functions(model, calls, constant)
    return [f for f in model.functions.values() if f.identifier() in chosen]


def inline_functions(model: ir.Model, chosen: Set[_Id]) -> list[str]:
    """Inline the local functions ``chosen`` (identifiers, :func:`weight_functions`' of this
    model or of one it is a copy of, less those :func:`not_inlinable` refuses, which the
    caller leaves out once) into the graphs that call them; the names (``domain::name``) of
    those inlined, in the model's order."""
    functions = [f for f in model.functions.values() if f.identifier() in chosen]
    if not functions:
        return []
    _name_left_out_outputs(model, chosen)
    # another version whose ops mean the same (:func:`not_inlinable`): the model's, spelled
    # as the model spells it (ONNX's "" or "ai.onnx"), which the inliner compares
    onnx_key = "ai.onnx" if "ai.onnx" in model.opset_imports else ""
    onnx_key = "" if "" in model.opset_imports else onnx_key
    targets = _model_versions(model, {f.identifier(): f for f in functions})
    for function in functions:
        used = _used_opsets(function) & _versions(function.opset_imports).keys()
        function.opset_imports.clear()  # an opset imported and never used goes
        for domain in sorted(used):
            key = onnx_key if domain == "" else domain
            function.opset_imports[key] = model.opset_imports.setdefault(key, targets[domain])
    for function in functions:
        _forget_types(function)
    before = {id(value) for value in _values(model)}
    InlinePass(criteria=lambda function: function.identifier() in chosen)(model)
    _rename_clashes(model, before)
    names = [function_name(function) for function in functions]
    logger.info("inlined local functions that compute weights from their inputs: %s", names)
    return names


def _graph_reference(node: ir.Node) -> bool:
    """Whether ``node`` takes a graph its function's call gives (``then_branch = @br``)."""
    return any(a.is_ref() and a.type in _GRAPHS for a in node.attributes.values())


def _forget_types(function: ir.Function) -> None:
    """Drop the types and shapes ``function``'s value_info gave the values its nodes compute:
    a function is called with inputs of any shape (and onnxscript declares its values of
    rank 0), and its nodes, inlined, would declare them at every call (t281: a model the
    checker refuses, "differ in rank"). A call's outputs keep what its caller declared; the
    bodies its nodes hold keep theirs."""
    for node in function:
        for value in node.outputs:
            value.type, value.shape = None, None


def _values(model: ir.Model) -> Iterator[ir.Value]:
    """Every value the model's graph, bodies and functions define."""
    for graph in graphs_of(model):
        yield from graph.inputs
        if isinstance(graph, ir.Graph):
            yield from graph.initializers.values()
        yield from (value for node in graph for value in node.outputs)


def _rename_clashes(model: ir.Model, before: Set[int]) -> None:
    """Give each value the inliner made (not among ``before``, by id) a name no other value
    of the model has, where it took one: onnx-ir's inliner keeps a function's own names
    where the graph it writes into has none of them, not looking into the bodies of that
    graph, so a branch defining the same name, or an initializer of a body shadowing it,
    made a model with no single meaning (t281)."""
    counts = Counter(value.name for value in _values(model) if value.name)
    taken = set(counts)
    main = {id(value) for value in (*model.graph.inputs, *model.graph.outputs)}
    for value in _values(model):
        name = value.name
        if name and counts[name] > 1 and id(value) not in before and id(value) not in main:
            counts[name] -= 1
            value.name = naming.unique(name, taken)


def _name_left_out_outputs(model: ir.Model, chosen: Set[_Id]) -> None:
    """Name each output that a call of a function to inline leaves unnamed (``wt, "" =
    G(w)``): onnx-ir's inliner leaves the node computing it with no output, a model that is
    no valid ONNX (t268). The node then computes a value nothing reads, as the call did."""
    taken = naming.taken_names(model)
    for graph in graphs_of(model):
        for node in graph:
            if (node.domain, node.op_type, node.overload) in chosen:
                for value in node.outputs:
                    if not value.name:
                        value.name = naming.unique(f"{node.op_type}_unused", taken)


def not_inlinable(model: ir.Model, chosen: Set[_Id]) -> dict[_Id, str]:
    """Those of the local functions ``chosen`` that cannot be inlined, and why: one called
    with a graph as an attribute or with more inputs than it takes (onnx-ir's inliner fails
    part way), one whose ops would mean something else in a graph it lands in
    (:func:`_version_clashes`); all of them where calls form a cycle. The others are still
    inlined (t269)."""
    functions = {f.identifier(): f for f in model.functions.values() if f.identifier() in chosen}
    unread = None
    for function in model.functions.values():  # onnx-ir's inliner fails on any (t281)
        if any(_graph_reference(node) for node in nodes_within(function)):
            unread = f"{function_name(function)} takes a graph as an attribute of its calls"
            break
    try:
        if unread is None:  # its check of cycles walks bodies as onnx-ir does
            InlinePass(criteria=lambda f: f.identifier() in chosen).requires(model)
    except ir.passes.PreconditionError as error:
        unread = str(error)
    if unread is not None:  # each one left, said by its name (t282)
        return {
            key: f"{function_name(f)}: onnx-ir's inliner cannot read the model ({unread})"
            for key, f in functions.items()
        }
    refused: dict[_Id, str] = {}
    for graph in graphs_of(model):
        for node in graph:
            called = functions.get((node.domain, node.op_type, node.overload))
            if called is None or called.identifier() in refused:
                continue
            if len(node.inputs) > len(called.inputs):
                why = f"a call of {function_name(called)} passes more inputs than it takes"
            elif any(a.type in _GRAPHS for a in node.attributes.values()):
                why = f"a call of {function_name(called)} passes a graph as an attribute"
            else:
                continue
            refused[called.identifier()] = why
    # one left is a graph the others land in: its imports and calls may refuse more
    run = _Calls(model).order  # the functions ONNX Runtime runs (:meth:`_Calls._called`)
    while True:
        left = {i: f for i, f in functions.items() if i not in refused}
        clashes = _version_clashes(model, left) | _overload_clashes(model, left, run)
        if not clashes:
            return refused
        refused |= clashes


def _overload_clashes(
    model: ir.Model, inlined: dict[_Id, ir.Function], run: Sequence[ir.Function]
) -> dict[_Id, str]:
    """Those of the functions ``inlined`` whose inlining would change which function ONNX
    Runtime runs for a call naming an overload: in a function's own body it runs the
    overload ``""`` of the name instead (:func:`~wnpass.onnx.graphs.callees`), elsewhere the
    one named. So an overload called from a function's own body is not inlined there (its
    nodes would run where ONNX Runtime ran the other's), and a function whose own body calls
    an overload is not inlined into a graph or a body, where that call would run the
    overload named (t281: a Relu became a Neg, the fold said ok), nor into a function that is
    inlined itself; and the overload ``""`` such a call runs is kept (inlined, it would go
    from the model, t282). Only calls in the graph and the functions it ``run``s count: a
    function nothing runs resolves no call (t285)."""
    holders = {id(node): f for f in run for node in f}
    clashes: dict[_Id, str] = {}
    for function in run:  # the overload "" a body's call runs: kept (t282)
        for node in function:
            plain = (node.domain, node.op_type, "")
            if node.overload and (plain_one := inlined.get(plain)) is not None:
                clashes[plain] = (
                    f"{function_name(plain_one)} is what ONNX Runtime runs for the call of "
                    f"{function_name(plain_one)}:{node.overload} in the body of "
                    f"{function_name(function)}; inlined, it would be gone"
                )
    scopes = [model.graph, *subgraphs_of(model.graph)]
    for graph in [*scopes, *(body for f in run for body in (f, *subgraphs_of(f)))]:
        for node in graph:
            key = (node.domain, node.op_type, node.overload)
            if (callee := inlined.get(key)) is None or key in clashes:
                continue
            holder = holders.get(id(node))
            named = function_name(callee)
            if node.overload and holder is not None:
                clashes[key] = (
                    f"{named} is called from the body of {function_name(holder)}, where "
                    f'ONNX Runtime runs the overload "" of its name instead'
                )
            elif holder is None or holder.identifier() in inlined:
                call = next(
                    (n for n in callee if n.overload and callees(model, n, in_function=True)),
                    None,
                )
                if call is not None:
                    overload = f"{call.domain}::{call.op_type}:{call.overload}"
                    clashes[key] = (
                        f"{named} calls {overload} from its body, where ONNX Runtime runs the "
                        f'overload "" of its name instead; inlined, the call would run {overload}'
                    )
    return clashes


def _version_clashes(model: ir.Model, inlined: dict[_Id, ir.Function]) -> dict[_Id, str]:
    """Those of the functions ``inlined`` whose nodes land, inlined, in a graph that stays (the
    main graph, or a function not inlined: directly or through other functions inlined)
    that imports another version of an opset they use, with ops that mean something else
    there (:func:`_same_ops`: onnxscript's ``opset17`` in a model of opset 18 means the same
    where none of its ops changed), or imports none of it (a function: the inliner adds an
    opset only to the model); ONNX's domain spelled ``""`` or ``"ai.onnx"`` alike (t273).
    An opset the model lacks gets the version :func:`_model_versions` gives it, which each
    function that stays and imports it must agree with (t275)."""
    clashes: dict[_Id, str] = {}
    versions = _model_versions(model, inlined)
    staying = [f for f in model.functions.values() if f.identifier() not in inlined]
    given = _versions(model.opset_imports)
    for owner in [None, *staying]:  # None: the main graph
        imports = versions if owner is None else _versions(owner.opset_imports)
        for function in _landing(model.graph if owner is None else owner, inlined):
            why = _clash(model, function, imports, owner, given, staying)
            if why is not None:
                clashes[function.identifier()] = why
    return clashes


def _clash(
    model: ir.Model,
    function: ir.Function,
    imports: Mapping[str, int],
    owner: ir.Function | None,
    given: Mapping[str, int],
    stays: Sequence[ir.Function],
) -> str | None:
    """Why ``function``'s nodes cannot land in ``owner`` (None: the main graph) importing
    ``imports``, or None. ``given``: the model's own imports; ``stays``: the functions that
    stay, which an opset added to the model governs too."""
    named, where = function_name(function), "the model" if owner is None else function_name(owner)
    used = _used_opsets(function)
    for domain, version in _versions(function.opset_imports).items():
        if domain not in used:
            continue  # imported, never used (t275)
        opset, wanted = domain or "ai.onnx", imports.get(domain)
        if wanted is None:  # only the model gets an import
            return f"{named} is inlined into {where}, which imports no {opset}"
        if wanted != version and not _same_ops(model, function, domain, version, wanted):
            added = owner is None and domain not in given
            against = f"the version the model gets, {wanted}" if added else f"{where} {wanted}"
            return f"{named} imports {opset} {version}, {against}"
        if owner is None and domain not in given:  # added: those that stay must agree
            for other in stays:
                theirs = _versions(other.opset_imports).get(domain, wanted)
                if theirs != wanted and not _same_ops(model, other, domain, theirs, wanted):
                    return (
                        f"{named} needs {opset} imported by the model, where "
                        f"{function_name(other)} imports {opset} {theirs} and {named} {version}"
                    )
    return None


def _model_versions(model: ir.Model, inlined: Mapping[_Id, ir.Function]) -> dict[str, int]:
    """The opsets the model imports once the functions ``inlined`` are (ONNX's as ``""``):
    its own, and for one it lacks, the version of the first function that stays and imports
    it (which that import then governs), else of the first function inlined."""
    versions = _versions(model.opset_imports)
    functions = list(model.functions.values())
    staying = [f for f in functions if f.identifier() not in inlined]
    going = [f for f in functions if f.identifier() in inlined]
    for function in [*staying, *going]:
        for domain, version in _versions(function.opset_imports).items():
            versions.setdefault(domain, version)
    return versions


def _used_opsets(function: ir.Function) -> set[str]:
    """The opsets ``function``'s nodes (its bodies' too) are of, ONNX's as ``""``."""
    return {"" if node.domain in _ONNX else node.domain for node in nodes_within(function)}


def _landing(scope: ir.Graph | ir.Function, inlined: dict[_Id, ir.Function]) -> list[ir.Function]:
    """The functions of ``inlined`` whose nodes land in ``scope`` once inlined: those it calls,
    and those they call, in the order met."""
    found: dict[_Id, ir.Function] = {}
    stack: list[ir.Graph | ir.Function] = [scope]
    while stack:
        for node in nodes_within(stack.pop()):
            key = (node.domain, node.op_type, node.overload)
            if (function := inlined.get(key)) is not None and key not in found:
                found[key] = function
                stack.append(function)
    return list(found.values())


def _versions(imports: Mapping[str, int]) -> dict[str, int]:
    """Opset imports with ONNX's own domain as ``""``, however spelled."""
    versions = {("" if domain in _ONNX else domain): v for domain, v in imports.items()}
    if "" in imports:  # both spellings: the plain one stands
        versions[""] = imports[""]
    return versions


def _same_ops(
    model: ir.Model, function: ir.Function, domain: str, version: int, wanted: int
) -> bool:
    """Whether every op of opset ``domain`` in ``function`` (its bodies too) means at version
    ``wanted`` what it means at ``version``, which the function imports: the same schema at
    both (the ONNX checker's test of a function importing another version than its model).
    A call of a local function means the same at any version (t273); another op of a domain
    with no schemas (not ONNX's) is taken to mean something else."""
    import onnx.defs

    names = set(_ONNX) if domain == "" else {domain}
    for node in nodes_within(function):
        if (
            node.domain not in names
            or (node.domain, node.op_type, node.overload) in model.functions
        ):
            continue
        try:
            mine = onnx.defs.get_schema(node.op_type, version, node.domain)
            theirs = onnx.defs.get_schema(node.op_type, wanted, node.domain)
        except onnx.defs.SchemaError:
            return False
        if mine.since_version != theirs.since_version:
            return False
    return True


_GRAPHS = frozenset({ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS})


def _norm_inputs(function: ir.Function) -> list[int]:
    """The inputs of ``function`` (by position) that a norm normalizes, through layout ops."""
    position = {value: i for i, value in enumerate(function.inputs)}
    found: dict[int, None] = {}
    # its If/Loop bodies too: a body reads the function's inputs as outer values (t108)
    for node in nodes_within(function):
        source = seed_source(node) if node.domain in _ONNX else None
        if source is not None and (behind := behind_layout(source)) in position:
            found[position[behind]] = None
    return list(found)


def _cone_functions(model: ir.Model, calls: _Calls, constant: Set[ir.Value]) -> set[_Id]:
    """The functions to inline so that each weight a layer reads (a weight input of
    :data:`~wnpass.onnx.cones.WEIGHT_INPUTS`) that is computed from constants, whatever scopes
    it is computed in, is computed in one: every function on its way (:meth:`_Calls.way`).
    A layer reading its function's input that every call passes an initializer needs none;
    ``constant``: :meth:`_Calls.constants`."""
    found: set[_Id] = set()
    for scope in graphs_of(model):
        for node in scope:
            if node.domain not in _ONNX:
                continue
            for slot in WEIGHT_INPUTS.get(node.op_type, ()):
                value = node.inputs[slot] if slot < len(node.inputs) else None
                if value is not None and value in constant:
                    found |= calls.way(value)
    return found


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
    """Every call of each local function, in every graph, body and function; the values computed
    from constants, and the functions on a weight's way."""

    def __init__(self, model: ir.Model) -> None:
        self.model, self.functions = model, model.functions
        # the nodes of the functions' own bodies, where a call by an overload runs the
        # overload "" of its name (:meth:`_called`)
        self.own = {id(node) for function in model.functions.values() for node in function}
        # the functions the model runs, callers first, and each one's calls the model runs
        self.order, self.calls = self._run_order()
        # each function's input: the function, and its position
        self.inputs: dict[ir.Value, tuple[ir.Function, int]] = {
            value: (function, i)
            for function in model.functions.values()
            for i, value in enumerate(function.inputs)
        }
        # each function's nodes (its bodies' too): the function holding one
        self.owner: dict[ir.Node, ir.Function] = {
            node: function
            for function in model.functions.values()
            for node in nodes_within(function)
        }

    def _called(self, node: ir.Node) -> _Id:
        """The function ``node`` calls, if any, as ONNX Runtime resolves it: by an overload
        in a function's own body, the overload ``""`` of its name (t288: a never-run
        ``A:b`` passing a value fed at run time kept ``WN`` from being inlined)."""
        overload = "" if id(node) in self.own else node.overload
        return (node.domain, node.op_type, overload)

    def _run_order(self) -> tuple[list[ir.Function], dict[_Id, list[ir.Node]]]:
        """The functions the model runs (called from its graph, or from one it runs), each
        after every function calling it, and each one's calls among those it runs; a function
        in a cycle of calls is not in the order (nothing of it is known constant)."""
        scopes: dict[_Id | None, list[ir.Graph | ir.Function]] = {None: [self.model.graph]}
        scopes[None] += list(subgraphs_of(self.model.graph))
        for key, function in self.functions.items():
            scopes[key] = [function, *subgraphs_of(function)]
        callers: dict[_Id, set[_Id | None]] = {}
        calls: dict[_Id, list[ir.Node]] = {}
        reached: set[_Id] = set()
        stack: list[_Id | None] = [None]
        while stack:
            scope = stack.pop()
            for graph in scopes[scope]:
                for node in graph:
                    key = self._called(node)
                    if key in self.functions:
                        callers.setdefault(key, set()).add(scope)
                        calls.setdefault(key, []).append(node)
                        if key not in reached:
                            reached.add(key)
                            stack.append(key)
        order: list[ir.Function] = []
        done: set[_Id | None] = {None}
        waiting = [key for key in self.functions if key in reached]
        while True:
            ready = [key for key in waiting if callers[key] - {key} <= done and key not in done]
            if not ready:
                return order, calls
            for key in ready:
                done.add(key)
                order.append(self.functions[key])
            waiting = [key for key in waiting if key not in done]

    def constants(self) -> set[ir.Value]:
        """Every value the model computes from constants alone, in its graph, bodies and the
        functions it runs: initializers (not one a graph input overrides), ``Constant``
        nodes, a function's inputs that every call passes such a value, and what ops that
        draw no random number and hold no body compute from those; a call's output where the
        arguments that output is computed from (:meth:`_reads`) are. One pass, callers first."""
        order, calls = self.order, self.calls
        reads = self._reads(order)
        constant: set[ir.Value] = set()

        def given(call: ir.Node, index: int) -> bool:  # an optional input left out: constant
            argument = call.inputs[index] if index < len(call.inputs) else None
            return argument is None or argument in constant

        def scan(graph: ir.Graph | ir.Function) -> None:
            if isinstance(graph, ir.Graph):
                constant.update(v for v in graph.initializers.values() if not v.is_graph_input())
            for node in graph:
                key = self._called(node)
                if key in self.functions:
                    for output, read in zip(node.outputs, reads.get(key, []), strict=False):
                        if read is not None and all(given(node, i) for i in read):
                            constant.add(output)
                elif (
                    not draws_randomly(node)
                    and not any(a.type in _GRAPHS for a in node.attributes.values())
                    and all(v is None or v in constant for v in node.inputs)
                ):
                    constant.update(node.outputs)

        main: list[ir.Graph | ir.Function] = [self.model.graph, *subgraphs_of(self.model.graph)]
        for graph in main:
            scan(graph)
        for function in order:
            called = calls.get(function.identifier(), [])
            for index, value in enumerate(function.inputs):
                if called and all(given(call, index) for call in called):
                    constant.add(value)
            bodies: list[ir.Graph | ir.Function] = [function, *subgraphs_of(function)]
            for body in bodies:
                scan(body)
        return constant

    def _reads(self, order: list[ir.Function]) -> dict[_Id, list[frozenset[int] | None]]:
        """Per function, per output: the inputs (by position) it is computed from, through
        any op and call; None where a random draw or a body goes into it (no constant)."""
        reads: dict[_Id, list[frozenset[int] | None]] = {}
        for function in reversed(order):  # callees first
            reads[function.identifier()] = self._read_by(function, reads)
        return reads

    def _read_by(
        self, function: ir.Function, reads: dict[_Id, list[frozenset[int] | None]]
    ) -> list[frozenset[int] | None]:
        """:meth:`_reads` of one function, its callees' known."""
        made: dict[ir.Value, frozenset[int] | None] = {
            value: frozenset({i}) for i, value in enumerate(function.inputs)
        }

        def joined(sets: Sequence[frozenset[int] | None]) -> frozenset[int] | None:
            return None if None in sets else frozenset(i for read in sets if read for i in read)

        for node in function:
            key = self._called(node)
            inputs = [frozenset() if v is None else made.get(v, frozenset()) for v in node.inputs]
            if key in self.functions:
                for output, read in zip(node.outputs, reads.get(key, []), strict=False):
                    given = [inputs[i] for i in read or () if i < len(inputs)]
                    made[output] = None if read is None else joined(given)
                continue
            unknown = draws_randomly(node) or any(
                a.type in _GRAPHS for a in node.attributes.values()
            )
            made.update(dict.fromkeys(node.outputs, None if unknown else joined(inputs)))
        return [made.get(value, frozenset()) for value in function.outputs]

    def way(self, value: ir.Value, *, computed: bool = False) -> set[_Id]:
        """The local functions whose nodes compute the weight ``value``, a value computed from
        constants (:meth:`constants`): those its cone calls (a caller's ``Gemm`` reading what
        ``Scale(W)`` computes), and those whose inputs it reaches, with what computes their
        arguments at every call (a function's ``Gemm`` reading ``F.normalize(W)`` its
        caller, a function too, computes); none where nothing is computed on its way (a
        layer reading its function's input, which every call passes an initializer), unless
        ``computed`` (a norm of it inside the function: the function is needed whatever its
        calls pass)."""
        needed: set[_Id] = set()
        stack: list[tuple[ir.Value, tuple[ir.Node, ...]]] = [(value, ())]
        seen: set[tuple[ir.Value, tuple[ir.Node, ...]]] = set()
        while stack:
            current, context = stack.pop()
            if (current, context) in seen:
                continue
            seen.add((current, context))
            node = current.producer()
            if node is None:
                if current not in self.inputs:
                    continue  # an initializer
                function, index = self.inputs[current]
                # inside a call: that call's argument; else every call's, in its caller
                called = [context[-1]] if context else self.calls.get(function.identifier(), [])
                if not context:
                    needed.add(function.identifier())
                for call in called:
                    argument = call.inputs[index] if index < len(call.inputs) else None
                    if argument is not None:
                        stack.append((argument, context[:-1]))
                continue
            computed = True
            owner = self.owner.get(node)
            if owner is not None and any(a.is_ref() for a in node.attributes.values()):
                # a value its caller gives (``Constant <value = @W>``): known once inlined
                needed.add(owner.identifier())
            key = self._called(node)
            callee = self.functions.get(key)
            if callee is not None and node not in context:
                needed.add(key)
                output = callee.outputs[node.outputs.index(current)]
                stack.append((output, (*context, node)))
            else:
                stack.extend((v, context) for v in node.inputs if v is not None)
        return needed if computed else set()
