"""Fold weight normalization out of an ONNX graph: ``FoldWeightNormPass``.

The algebra: a weight-norm site computes ``w = g * v / ||v||`` at run time from constant ``g``
and ``v``; ``||v||`` is the L2 norm over the axes the graph reduces (every axis but the unit
axis, or the whole tensor for PyTorch's ``dim=None``). When ``g`` and ``v`` are constants, ``w``
is a constant too: the pass evaluates the site's whole constant cone in float64 with the
graph's own semantics (axes, keepdims, epsilon, layout ops; no axis is assumed), rounds once to
the dtype of the value it replaces, puts the result in an initializer named after the PyTorch
parameter, and removes the nodes and initializers that became dead. Sites it must not fold are
left exactly as they were, with the reason recorded.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import onnx_ir as ir

from wnpass.onnx import evaluate as ev
from wnpass.onnx import naming
from wnpass.onnx.match import Site, find_sites
from wnpass.report import FoldReport, SiteReport

__all__ = ["FoldResult", "FoldWeightNormPass", "count_nodes", "site_reports"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class FoldResult(ir.passes.PassResult):
    """The pass result, with the report of every site."""

    report: FoldReport = dataclasses.field(default_factory=FoldReport)


def count_nodes(model: ir.Model) -> int:
    """Nodes in the model, subgraphs and functions included."""
    from wnpass.onnx.match import graphs_of

    return sum(len(graph) for graph in graphs_of(model))


def _graph_label(graph: ir.Graph | ir.Function, model: ir.Model) -> str:
    if graph is model.graph:
        return "main"
    if isinstance(graph, ir.Function):
        return f"function {graph.domain}::{graph.name}"
    return f"subgraph {graph.name or '?'}"


def _declared_dtype(value: ir.Value) -> ir.DataType | None:
    """The dtype ``value`` has in the graph: type info, else followed through its producers."""
    while value.dtype is None:
        if (const := ir.convenience.get_const_tensor(value)) is not None:
            return const.dtype
        node = value.producer()
        if node is None or not node.inputs or node.inputs[0] is None:
            return None
        if node.op_type == "Cast":
            return ir.DataType(int(node.attributes["to"].value))
        value = node.inputs[0]
    return value.dtype


def _describe(site: Site, model: ir.Model, status: str, name: str, removed: int = 0) -> SiteReport:
    const = None if site.v is None else ir.convenience.get_const_tensor(site.v)
    shape = None if const is None else list(const.shape.numpy())
    dtype = _declared_dtype(site.target)
    return SiteReport(
        name=name,
        graph=_graph_label(site.graph, model),
        consumers=site.consumers(),
        shape=shape,
        dtype=None if dtype is None else dtype.name.lower(),
        axes=site.axes(),
        form=site.form,
        status=status,
        reason=site.reason,
        nodes_removed=removed,
    )


def site_reports(model: ir.Model, sites: list[Site]) -> list[SiteReport]:
    """Reports for sites found but not (yet) folded: what ``inspect`` shows."""
    reports = []
    for site in sites:
        name = naming.parameter_name(site.v.name if site.v else None, site.root.name)
        status = "foldable" if site.foldable else "declined"
        reports.append(_describe(site, model, status, name))
    return reports


def _cone(value: ir.Value) -> tuple[list[ir.Node], list[ir.Value]]:
    """Nodes and initializer leaves that ``value`` is computed from."""
    nodes: dict[ir.Node, None] = {}
    leaves: dict[ir.Value, None] = {}
    stack = [value]
    seen: set[ir.Value] = set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        if current.is_initializer():
            leaves[current] = None
            continue
        node = current.producer()
        if node is not None:
            nodes[node] = None
            stack.extend(i for i in node.inputs if i is not None)
    return list(nodes), list(leaves)


def _remove_dead(nodes: list[ir.Node], leaves: list[ir.Value]) -> int:
    """Remove the nodes and initializers of a folded cone that nothing uses any more."""
    removed = 0
    changed = True
    alive = list(nodes)
    while changed:
        changed = False
        for node in list(alive):
            if node.graph is None:
                alive.remove(node)
                continue
            if any(o.uses() or o.is_graph_output() for o in node.outputs):
                continue
            node.graph.remove(node, safe=True)
            alive.remove(node)
            removed += 1
            changed = True
    for leaf in leaves:
        graph = leaf.graph
        if leaf.uses() or leaf.is_graph_output() or leaf.is_graph_input() or graph is None:
            continue
        if leaf.name is not None and graph.initializers.get(leaf.name) is leaf:
            graph.initializers.pop(leaf.name)
    return removed


def _product(site: Site, memo: dict[ir.Value, ev.Evaluated]) -> np.ndarray | None:
    """``v * (g / ||v||)`` rounded once to the site's dtype, in one pass over v; or None.

    The graph's own order (``(v / n) * g``) makes two full-size float64 passes; scaling v by
    the small ``g / n`` is the same product in float64, and numpy computes it in float64 in
    buffered blocks while writing the rounded result, so no full-size float64 copy is made.
    Sites with layout ops after the product, implicit norms (LpNormalization) or dtypes numpy
    cannot hold go through the general evaluator instead.
    """
    if site.factors is None or site.factors[2] is None or site.target is not site.root:
        return None
    dtype = _declared_dtype(site.root)
    if dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE):
        return None
    v_leaf, g_leaf, norm_value, divides = site.factors
    assert norm_value is not None
    v = ev.evaluate(v_leaf, memo)[0]
    g, norm = ev.evaluate(g_leaf, memo)[0], ev.evaluate(norm_value, memo)[0]
    scale = (np.divide if divides else np.multiply)(g, norm, dtype=ev.F64)
    out = np.empty(np.broadcast_shapes(v.shape, scale.shape), dtype=dtype.numpy())
    return np.multiply(v, scale, out=out, dtype=ev.F64, casting="unsafe")


def _folded_weight(site: Site) -> tuple[np.ndarray, ir.DataType] | str:
    """The folded weight, rounded once; or the reason it must stay unfolded."""
    memo: dict[ir.Value, ev.Evaluated] = {}
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # a zero-norm unit gives 0/0 here; it is detected below and the site declined
            rounded = _product(site, memo)
            if rounded is None:
                array, dtype = ev.evaluate(site.target, memo)
                rounded = ev.round_to(array, _declared_dtype(site.target) or dtype)
    except ValueError as error:  # shapes that do not broadcast, a bad reshape, ...
        return f"cannot be computed: {error}"
    dtype = ir.DataType.from_numpy(rounded.dtype)
    if np.all(np.isfinite(rounded)):
        return rounded, dtype
    assert site.v is not None and site.g is not None
    for role, value in (("v", site.v), ("g", site.g)):
        if not np.all(np.isfinite(ev.evaluate(value, memo)[0])):
            return f"{role} holds NaN or Inf"
    if np.any(np.isnan(rounded)):
        return "v has zero-norm units, where the graph computes NaN; left as it is"
    return f"the folded weight overflows {dtype.name.lower()}"


class FoldWeightNormPass(ir.passes.InPlacePass):
    """Replace every foldable ``g * v / ||v||`` site by a plain initializer."""

    def call(self, model: ir.Model) -> FoldResult:
        sites = find_sites(model)
        taken = naming.taken_names(model)
        reports: list[SiteReport] = []
        folded = 0
        for site in sites:
            name = naming.parameter_name(site.v.name if site.v else None, site.root.name)
            if not site.foldable:
                logger.debug("declined %s: %s", name, site.reason)
                reports.append(_describe(site, model, "declined", name))
                continue
            weight = _folded_weight(site)
            if isinstance(weight, str):
                site.reason = weight
                logger.warning("not folding %s: %s", name, weight)
                reports.append(_describe(site, model, "declined", name))
                continue
            array, dtype = weight
            report = _describe(site, model, "folded", name)
            report.shape = list(array.shape)
            taken.discard(site.target.name or "")
            report.name = naming.unique(name, taken)
            report.nodes_removed = self._replace(site, report.name, array, dtype)
            reports.append(report)
            folded += 1
            logger.debug("folded %s (%d nodes removed)", report.name, report.nodes_removed)
        logger.info("folded %d of %d weight-norm sites", folded, len(sites))
        return FoldResult(model, modified=folded > 0, report=FoldReport(sites=reports))

    @staticmethod
    def _replace(site: Site, name: str, array: np.ndarray, dtype: ir.DataType) -> int:
        nodes, leaves = _cone(site.target)
        graph, target = site.graph, site.target
        producer = target.producer()
        assert producer is not None
        tensor = ir.Tensor(array, dtype=dtype, name=name)
        if isinstance(graph, ir.Function):
            # Functions have no initializers: the folded weight becomes a Constant node.
            constant = ir.node("Constant", [], attributes={"value": tensor}, name=f"{name}_const")
            constant.outputs[0].name = name
            constant.outputs[0].shape = ir.Shape(array.shape)
            constant.outputs[0].type = ir.TensorType(dtype)
            graph.insert_before(producer, constant)
            new = constant.outputs[0]
        else:
            new = ir.Value(name=name, const_value=tensor)
            graph.register_initializer(new)
        if target.is_graph_output():
            # The graph's interface keeps its output name: the output becomes Identity(weight).
            output_name = target.name
            target.name = f"{output_name}.unfolded"
            identity = ir.node("Identity", [new], name=f"{name}_output")
            identity.outputs[0].name = output_name
            identity.outputs[0].shape, identity.outputs[0].type = target.shape, target.type
            graph.insert_before(producer, identity)
            target.replace_all_uses_with(identity.outputs[0], replace_graph_outputs=True)
        else:
            target.replace_all_uses_with(new)
        return _remove_dead(nodes, leaves)
