"""Names for folded weights: the PyTorch parameter's name, unique in the model, stable; and
for the report's rows of sites left as they are, names unique among the rows and true."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Literal

import onnx_ir as ir

from wnpass.onnx.graphs import enclosing_scope, graphs_of, subgraphs_of
from wnpass.rules import PairKeys, parse_key

if TYPE_CHECKING:
    from wnpass.onnx.match import Site
    from wnpass.report import SiteReport

__all__ = [
    "ScopeNames",
    "folded_name",
    "freed_name",
    "name_declined",
    "parameter_name",
    "taken_names",
    "unique",
]


def parameter_name(v_name: str | None, fallback: str | None) -> str:
    """The PyTorch parameter that a weight-norm ``v`` stands for; else a name from ``fallback``."""
    # `conv.parametrizations.weight.original1` (parametrization API) and `conv.weight_v` (legacy
    # hook API) both hold the direction v of the parameter `conv.weight` (wnpass.rules).
    if v_name:
        if (parsed := parse_key(v_name)) is not None:
            return parsed[0].weight
        return f"{v_name}.folded"
    return f"{fallback or 'weight'}.folded"


def taken_names(model: ir.Model) -> set[str]:
    """Every value name used anywhere in the model (all graphs, subgraphs and functions)."""
    return names_in_use(model)[0]


def names_in_use(model: ir.Model) -> tuple[set[str], set[str]]:
    """Every value name used anywhere in the model (:func:`taken_names`), and those that more
    than one value has (in sibling graphs, or one shadowing another): a value of one going
    away leaves the name in use."""
    taken: set[str] = set()
    shared: set[str] = set()
    for graph in graphs_of(model):
        names = {v.name for v in (*graph.inputs, *graph.outputs) if v.name}
        if isinstance(graph, ir.Graph):
            names.update(graph.initializers)
        names.update(v.name for node in graph for v in node.outputs if v.name)
        shared |= names & taken
        taken |= names
    return taken, shared


class ScopeNames:
    """How many values have each name, graph by graph: what a folded weight's name keeps off
    (:func:`folded_name`). Counted once, on the model as given, then kept as each fold
    removes the value it replaces and adds its weight, so that an inspection, which folds
    nothing, names every weight as the fold does (the fold counted a branch's names after an
    earlier fold had freed one, an inspection before, t166), and a name a fold freed is free
    to the weights after it."""

    def __init__(self, model: ir.Model) -> None:
        self._counts = {_inner(graph): _own_names(graph) for graph in graphs_of(model)}
        self._reach: dict[ir.Graph, list[Counter[str]]] = {}

    def in_reach(self, graph: ir.Graph | ir.Function, name: str) -> int:
        """How many values named ``name`` a value of ``graph`` may share no name with:
        ``graph``'s own, those of the scopes around it (which it reads) and those of the
        bodies nested in it (which read it); a sibling body's are out of its reach."""
        key = _inner(graph)
        if key not in self._reach:
            scopes: list[ir.Graph | ir.Function] = [graph, *subgraphs_of(graph)]
            outer = enclosing_scope(graph)
            while outer is not None:
                scopes.append(outer)
                outer = enclosing_scope(outer)
            self._reach[key] = [self._of(scope) for scope in scopes]  # live: kept by folds
        return sum(counted[name] for counted in self._reach[key])

    def replaced(self, value: ir.Value) -> None:
        """A fold replaced ``value`` by a weight: its name is one value fewer, unless it is a
        graph output, which keeps its name."""
        if value.name and value.graph is not None and not value.is_graph_output():
            self._of(value.graph)[value.name] -= 1

    def added(self, graph: ir.Graph | ir.Function, name: str) -> None:
        """A fold gave ``graph`` a weight named ``name``."""
        self._of(graph)[name] += 1

    def renamed(self, graph: ir.Graph | ir.Function, old: str, new: str) -> None:
        """A weight of ``graph`` named ``old`` is named ``new`` now."""
        counted = self._of(graph)
        counted[old] -= 1
        counted[new] += 1

    def taken(self) -> set[str]:
        """Every name a value of the model has (as :func:`taken_names`, from the counts)."""
        return {name for counted in self._counts.values() for name, n in counted.items() if n}

    def anywhere(self, name: str) -> int:
        """How many values of the whole model have ``name``."""
        return sum(counted[name] for counted in self._counts.values())

    def _of(self, graph: ir.Graph | ir.Function) -> Counter[str]:
        key = _inner(graph)
        if key not in self._counts:  # a body no walk met (none a fold makes): as it is
            self._counts[key] = _own_names(graph)
        return self._counts[key]


def _inner(graph: ir.Graph | ir.Function) -> ir.Graph:
    """The graph of a function (its values' ``graph``), or ``graph`` itself."""
    return graph.graph if isinstance(graph, ir.Function) else graph


def _own_names(graph: ir.Graph | ir.Function) -> Counter[str]:
    """How many of ``graph``'s own values (inputs, initializers, node outputs) have each
    name."""
    values = [*graph.inputs, *(v for node in graph for v in node.outputs)]
    if isinstance(graph, ir.Graph):
        values += [v for v in graph.initializers.values() if v not in graph.inputs]
    return Counter(v.name for v in values if v.name)


def unique(name: str, taken: set[str], in_reach: Callable[[str], bool] | None = None) -> str:
    """``name``, or ``name__1``, ``name__2`` ... the first one not in ``taken`` (nor one
    ``in_reach`` says a value in reach has); reserves it."""
    candidate, k = name, 0
    while candidate in taken or (in_reach is not None and in_reach(candidate)):
        k += 1
        candidate = f"{name}__{k}"
    taken.add(candidate)
    return candidate


def folded_name(
    site: Site, taken: set[str], names: ScopeNames, owner: ir.Graph | ir.Function
) -> str:
    """The name of the initializer that replaces ``site``'s weight in ``owner``, reserved in
    ``taken`` and counted in ``names``, where the value it replaces is counted gone. The name
    that value had is free again, unless it is a graph output, which keeps its name, or
    another value in reach of ``owner`` has it (a sibling body's, where the weight goes into
    the main graph, t160; a nested body's, t163); and no name a value in reach has is taken,
    although another scope freed it (a sibling function's value of the name a fold there gave
    up, t165)."""
    own = site.target.name or ""
    if not site.target.is_graph_output() and names.in_reach(owner, own) <= 1:
        taken.discard(own)
    else:
        own = ""
    name = parameter_name(site.v.name if site.v else None, site.root.name)
    chosen = unique(
        name, taken, lambda candidate: candidate != own and names.in_reach(owner, candidate) > 0
    )
    names.replaced(site.target)
    names.added(owner, chosen)
    return chosen


def freed_name(
    site: Site, current: str, taken: set[str], names: ScopeNames, owner: ir.Graph | ir.Function
) -> str | None:
    """Where ``site`` reads a weight of ``owner`` folded before under the name ``current``
    (the value it replaces is counted gone in ``names``, as :func:`folded_name` counts it):
    the name of the parameter the weight stands for, where no value of the model has it any
    more: the same site in both branches of an ``If``, each branch's value named
    ``conv.weight``, where neither could take the name while the other had it (t166).
    Counted and reserved; None where the weight keeps its name."""
    names.replaced(site.target)
    wanted = parameter_name(site.v.name if site.v else None, site.root.name)
    if wanted == current or names.anywhere(wanted) > 0:
        return None
    names.renamed(owner, current, wanted)
    taken.add(wanted)
    return wanted


def name_declined(rows: Sequence[tuple[Site, SiteReport]], used: Collection[str]) -> None:
    """Name the report rows of sites left as they are, after every other row is named
    (``used``): the PyTorch parameter that ``v`` stands for, while no other row has that
    name; else the value the graph keeps computing, which the model still holds. Nothing
    named ``.folded`` is written for such a site, so no row claims one."""
    names = set(used)
    for site, report in rows:
        parsed = None if site.v is None else _parsed_v(site.v)
        preferred = None if parsed is None else parsed[0].weight
        if preferred is None or preferred in names:
            preferred = site.target.name or parameter_name(None, site.root.name)
        report.name = unique(preferred, names)


# the suffix ONNX Runtime's quantizer gives a quantized initializer's name
_QUANTIZED_SUFFIX = "_quantized"


def _parsed_v(v: ir.Value) -> tuple[PairKeys, Literal["g", "v"]] | None:
    """The PyTorch parameter key that ``v`` is, by its name; for a ``v`` that a
    ``DequantizeLinear`` gives back (a model quantized to QDQ before it was folded), by the
    name of what it dequantizes, without the quantizer's suffix."""
    from wnpass.onnx.match import quantized_source

    if v.name and (parsed := parse_key(v.name)) is not None:
        return parsed
    quantized = quantized_source(v)
    name = None if quantized is None else quantized.name
    return None if not name else parse_key(name.removesuffix(_QUANTIZED_SUFFIX))
