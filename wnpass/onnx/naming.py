"""Names for folded weights: the PyTorch parameter's name, unique in the model, stable; and
for the report's rows of sites left as they are, names unique among the rows and true."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING

import onnx_ir as ir

from wnpass.onnx.graphs import enclosing_scope, graphs_of, subgraphs_of
from wnpass.rules import parse_key

if TYPE_CHECKING:
    from wnpass.onnx.match import Site
    from wnpass.report import SiteReport

__all__ = ["folded_name", "name_declined", "parameter_name", "taken_names", "unique"]


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


def names_in_scope(model: ir.Model, graph: ir.Graph | ir.Function) -> Counter[str]:
    """How many values have each name among those a value of ``graph`` may share no name
    with: ``graph``'s own, those of the scopes around it (which it reads) and those of the
    bodies nested in it (which read it); a sibling body's are out of its reach."""
    for _ in graphs_of(model):  # every body's enclosing scope recorded
        pass
    scopes: list[ir.Graph | ir.Function] = [graph, *subgraphs_of(graph)]
    outer = enclosing_scope(graph)
    while outer is not None:
        scopes.append(outer)
        outer = enclosing_scope(outer)
    counted: Counter[str] = Counter()
    for scope in scopes:
        values = [*scope.inputs, *(v for node in scope for v in node.outputs)]
        if isinstance(scope, ir.Graph):
            values += [v for v in scope.initializers.values() if v not in scope.inputs]
        counted.update(v.name for v in values if v.name)
    return counted


def unique(name: str, taken: set[str], in_reach: Callable[[str], bool] | None = None) -> str:
    """``name``, or ``name__1``, ``name__2`` ... the first one not in ``taken`` (nor one
    ``in_reach`` says a value in reach has); reserves it."""
    candidate, k = name, 0
    while candidate in taken or (in_reach is not None and in_reach(candidate)):
        k += 1
        candidate = f"{name}__{k}"
    taken.add(candidate)
    return candidate


def folded_name(site: Site, taken: set[str], in_scope: Mapping[str, int]) -> str:
    """The name of the initializer that replaces ``site``'s weight, reserved in ``taken``.
    ``in_scope``: how many values have each name in reach of the graph the weight goes into
    (:func:`names_in_scope`). The name the value it replaces had is free again, unless that
    value is a graph output, which keeps its name, or another value in reach has it (a
    sibling body's, where the weight goes into the main graph, t160; a nested body's, t163);
    and no name a value in reach has is taken, although another scope freed it (a sibling
    function's value of the name a fold there gave up, t165)."""
    own = site.target.name or ""
    if not site.target.is_graph_output() and in_scope.get(own, 0) <= 1:
        taken.discard(own)
    else:
        own = ""
    name = parameter_name(site.v.name if site.v else None, site.root.name)
    return unique(
        name, taken, lambda candidate: candidate != own and in_scope.get(candidate, 0) > 0
    )


def name_declined(rows: Sequence[tuple[Site, SiteReport]], used: Collection[str]) -> None:
    """Name the report rows of sites left as they are, after every other row is named
    (``used``): the PyTorch parameter that ``v`` stands for, while no other row has that
    name; else the value the graph keeps computing, which the model still holds. Nothing
    named ``.folded`` is written for such a site, so no row claims one."""
    names = set(used)
    for site, report in rows:
        parsed = parse_key(site.v.name) if site.v is not None and site.v.name else None
        preferred = None if parsed is None else parsed[0].weight
        if preferred is None or preferred in names:
            preferred = site.target.name or parameter_name(None, site.root.name)
        report.name = unique(preferred, names)
