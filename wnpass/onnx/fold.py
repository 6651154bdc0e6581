"""Fold weight normalization out of an ONNX graph: ``FoldWeightNormPass``.

The algebra: a weight-norm site computes ``w = g * v / ||v||`` at run time from constant ``g``
and ``v``; ``||v||`` is the L2 norm over the axes the graph reduces (every axis but the unit
axis, or the whole tensor for PyTorch's ``dim=None``). When ``g`` and ``v`` are constants, ``w``
is a constant too. The pass computes it in float64 with the graph's own semantics (axes,
keepdims, epsilon, layout ops; no axis is assumed; see ``weights``), rounds once to the dtype
of the value it replaces, puts the result in an initializer named after the PyTorch parameter,
and removes the nodes and initializers that became dead. Sites it must not fold are left
exactly as they were, with the reason recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Set

import onnx_ir as ir

from wnpass.onnx import naming
from wnpass.onnx.graphs import (
    constant_initializers,
    constants_as_nodes,
    function_name,
    node_bodies,
    shadowed,
    walk_cone,
)
from wnpass.onnx.match import Site, find_sites, fold_order, static_shape
from wnpass.onnx.types import declared_dtype
from wnpass.onnx.weights import fold_outcome, folded_weight
from wnpass.report import ConeReport, FoldReport, SiteReport

__all__ = [
    "FoldResult",
    "FoldWeightNormPass",
    "count_nodes",
    "graph_label",
    "inspection_of_a_fold",
    "replace_value",
    "reuse_value",
    "site_reports",
]

logger = logging.getLogger(__name__)

# The most rounds of matching a fold makes: a weight normalized n times folds in n rounds.
_MAX_ROUNDS = 8


@dataclasses.dataclass
class FoldResult(ir.passes.PassResult):
    """The pass result, with the report of every site."""

    report: FoldReport = dataclasses.field(default_factory=FoldReport)


def count_nodes(model: ir.Model) -> int:
    """The nodes the model runs: its graph's and its bodies', a call of a local function
    counted as that function's nodes, at each call (inlining a function changes no count; a
    fold that makes a weight computed in a function an initializer counts as the nodes it
    removes at every call). A call in a cycle of calls counts one."""
    sizes: dict[tuple[str, str, str], int] = {}

    def size(graph: ir.Graph | ir.Function, calling: frozenset[tuple[str, str, str]]) -> int:
        total = 0
        for node in graph:
            key = (node.domain, node.op_type, node.overload)
            function = model.functions.get(key)
            if function is None or key in calling:
                total += 1
            else:
                if key not in sizes:
                    sizes[key] = size(function, calling | {key})
                total += sizes[key]
            total += sum(size(body, calling) for body in node_bodies(node))
        return total

    return size(model.graph, frozenset())


def graph_label(graph: ir.Graph | ir.Function, model: ir.Model) -> str:
    if graph is model.graph:
        return "main"
    if isinstance(graph, ir.Function):
        return f"function {function_name(graph)}"
    return f"subgraph {graph.name or '?'}"


def _describe(site: Site, model: ir.Model, status: str, name: str) -> SiteReport:
    # v's shape: a constant's, or a graph input's declared one (a site declined for it, t155);
    # of g * v premultiplied, that product's (v may be the flattened copy a norm reads, t316)
    shaped = site.factors[0] if site.premultiplied and site.factors is not None else site.v
    known = None if shaped is None else static_shape(shaped)
    shape = None if known is None else list(known)
    dtype = declared_dtype(site.target)
    return SiteReport(
        name=name,
        graph=graph_label(site.graph, model),
        consumers=site.consumers(),
        shape=shape,
        dtype=None if dtype is None else dtype.name.lower(),
        axes=site.axes(),
        form=site.form,
        status=status,
        reason=site.reason,
        layout=list(site.layout),
        fed_by=site.fed_by if status == "declined" else None,
    )


def site_reports(model: ir.Model, sites: list[Site]) -> list[SiteReport]:
    """Reports for sites found but not (yet) folded: what ``inspect`` shows, named as the fold
    names them. A site the fold would decline on its values (a zero-norm unit, g with Inf ...)
    is declined with the fold's reason (``fold_outcome``, which the fold's own checks
    decide) and loses ``foldable``; a foldable one shows the shape of the weight it would
    write. Where another site's weight decides a site (``Site.after``),
    ``inspection_of_a_fold`` reports them."""
    scopes = naming.ScopeNames(model)
    taken = scopes.taken()
    by_site: dict[int, SiteReport] = {}
    declined: list[tuple[Site, SiteReport]] = []
    named: dict[tuple[object, ...], list[SiteReport]] = {}  # by _site_key: one weight's rows
    for site in fold_order(sites):  # named in the order the fold names them
        outcome = fold_outcome(site)
        site.reason = outcome if isinstance(outcome, str) else None
        if not isinstance(outcome, str):
            owner = _site_owner(model, site)
            key = _site_key(site, owner)
            earlier = named.get(key) if key is not None else None
            if earlier is None:
                name = naming.folded_name(site, taken, scopes, owner)
            else:  # it reads the weight named before, as the fold's does
                name = earlier[0].name
                if (freed := naming.freed_name(site, name, taken, scopes, owner)) is not None:
                    name = freed
                    for row in earlier:
                        row.name = freed
            report = _describe(site, model, "foldable", name)
            report.written_shape = list(outcome)
            if key is not None:
                named.setdefault(key, []).append(report)
        else:
            report = _describe(site, model, "declined", "")
            declined.append((site, report))
        by_site[id(site)] = report
    reports = [by_site[id(site)] for site in sites]
    naming.name_declined(declined, {report.name for report in reports})
    return reports


def inspection_of_a_fold(model: ir.Model, *, weight_norm_only: bool = False) -> FoldReport:
    """What ``inspect`` shows where folding one weight decides another (a weight normalized
    twice, a weight computed from a site's weight): a copy of ``model`` is folded (its tensors
    are shared, not copied) and every row reported as the fold made it, its names and shapes
    included, ``folded`` read as ``foldable``; ``model`` is left as it is. It holds what the
    fold holds (the weights it computes eagerly), where ``site_reports`` and ``cone_reports``
    hold one weight at a time; only such models pay for it."""
    copy = model.clone()
    with _unlogged(logger, logging.getLogger("wnpass.onnx.cones")):  # the rows say it all
        result = FoldWeightNormPass(weight_norm_only=weight_norm_only)(copy)
    report: FoldReport = result.report  # type: ignore[attr-defined]
    rows: list[SiteReport | ConeReport] = [*report.sites, *report.cones]
    for row in rows:
        if row.status == "folded":
            row.status, row.nodes_removed = "foldable", 0
    return report


@contextlib.contextmanager
def _unlogged(*loggers: logging.Logger) -> Iterator[None]:
    """What ``loggers`` say below ERROR is dropped in the block: the fold an inspection runs
    on a copy would warn of every site it declines, by the copy's value names."""

    def drop(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR

    for each in loggers:
        each.addFilter(drop)
    try:
        yield
    finally:
        for each in loggers:
            each.removeFilter(drop)


def _cone(value: ir.Value) -> tuple[list[ir.Node], list[ir.Value]]:
    """Nodes and initializer leaves that ``value`` is computed from."""
    values = list(walk_cone(value))
    nodes = [v.producer() for v in values if not v.is_initializer() and v.producer() is not None]
    return list(dict.fromkeys(n for n in nodes if n is not None)), [
        v for v in values if v.is_initializer()
    ]


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
            if leaf.name in shadowed(graph):  # a body's initializer of that name would take over
                continue
            graph.initializers.pop(leaf.name)
    return removed


class FoldWeightNormPass(ir.passes.InPlacePass):
    """Replace every foldable ``g * v / ||v||`` site by a plain initializer; then, unless
    ``weight_norm_only``, every weight still computed from constants by layout, cast and
    exactly rounded arithmetic ops (``FoldWeightConesPass``)."""

    def __init__(self, *, weight_norm_only: bool = False) -> None:
        super().__init__()
        self.weight_norm_only = weight_norm_only

    def call(self, model: ir.Model) -> FoldResult:
        inlined: list[str] = []
        refused: dict[tuple[str, str, str], str] = {}
        if model.functions:  # imported only then: onnx-ir's inliner, a few ms and MiB
            from wnpass.onnx.functions import inline_functions, not_inlinable, weight_functions

            chosen = weight_functions(model, cones=not self.weight_norm_only)
            ids = {function.identifier() for function in chosen}
            refused = not_inlinable(model, ids)  # the weights they compute stay computed
            for why in refused.values():  # in the report too
                logger.info("not inlining a local function that computes weights: %s", why)
            ids -= refused.keys()
            if ids and self._inlining_folds_more(model, ids):
                # a weight computed inside a local function from its inputs: its constants
                # reach it once the function is inlined
                inlined = inline_functions(model, ids)
        result = self._fold_everything(model)
        result.report.inlined = inlined
        result.report.not_inlined = list(refused.values())
        result.modified = result.modified or bool(inlined)
        return result

    def _inlining_folds_more(self, model: ir.Model, chosen: Set[tuple[str, str, str]]) -> bool:
        """Whether inlining the functions ``chosen`` (their identifiers) lets the fold fold more
        than it does without: each tried on a copy (tensors shared). Inlining alone changes
        the model and folds nothing (a zero-norm unit inside: still declined), t107."""
        from wnpass.onnx.functions import inline_functions

        def left(copy: ir.Model) -> int:  # the nodes it runs once folded
            with _unlogged(logger, logging.getLogger("wnpass.onnx.cones")):
                self._fold_everything(copy)
            return count_nodes(copy)

        inlined = model.clone()
        if not inline_functions(inlined, chosen):
            return False
        # not the count of weights folded: a site's fold takes in the layout ops after it
        # (a Transpose inside the function called with its product, t263)
        return left(inlined) < left(model.clone())

    def _fold_everything(self, model: ir.Model) -> FoldResult:
        """Every foldable site, then (unless ``weight_norm_only``) every cone."""
        with constant_initializers(model):  # an IR version 3 model's are constants too
            result, declined = self._fold_sites(model)
            if self.weight_norm_only:
                return result
            from wnpass.onnx.cones import FoldWeightConesPass

            cones = FoldWeightConesPass(sites=declined)(model)
        report: FoldReport = result.report
        report.cones = cones.report.cones  # type: ignore[attr-defined]
        return FoldResult(model, modified=result.modified or cones.modified, report=report)

    def _fold_sites(self, model: ir.Model) -> tuple[FoldResult, frozenset[ir.Value]]:
        """Fold every foldable site; the result, and the values of the sites declined."""
        reports, declined = _fold_all(model)
        done = list(reports.values())
        count = sum(report.status == "folded" for report in done)
        logger.info("folded %d of %d weight-norm sites", count, len(done))
        result = FoldResult(model, modified=count > 0, report=FoldReport(sites=done))
        return result, frozenset(site.target for site in declined)


def _fold_all(model: ir.Model) -> tuple[dict[ir.Value, SiteReport], list[Site]]:
    """Fold every foldable site of ``model``: the report of each site by its root, in the order
    found, and the sites declined.

    A site computed from another site's weight (``Site.after``: a weight normalized twice) is
    matched again once that weight is folded, its v then being the folded weight: the value
    the graph computed, rounded where the graph rounds it. A site declined that the next
    round finds changed, or no more, is matched again (a product of two gains, ``g * v /
    ||v|| * a`` with ``a`` a ``CastLike`` of a constant to its weight, as onnxscript writes
    ``w * alpha``: once ``g * v / ||v||`` is folded, what is left is a weight computed from
    constants, t269). Rounds go on while such a site waits or one is declined and the last
    round folded something, so one fold leaves nothing a second would fold.
    """
    scopes = naming.ScopeNames(model)
    taken = scopes.taken()
    done: dict[tuple[object, ...], tuple[ir.Value, list[SiteReport]]] = {}  # by _site_key
    found: dict[ir.Value, None] = {}  # every site's root, in the order first found
    reports: dict[ir.Value, SiteReport] = {}
    declined: list[Site] = []
    matched: dict[ir.Value, str | None] = {}  # a site declined: its reason as matched
    for round_ in range(_MAX_ROUNDS):
        sites = find_sites(model)
        if round_:
            _forget_changed(sites, matched, reports, declined)
        found.update(dict.fromkeys(site.root for site in sites))
        waiting = [site for site in sites if site.after is not None]
        fresh = fold_order([s for s in sites if s.after is None and s.root not in reports])
        matched.update((site.root, site.reason) for site in fresh)
        folded = sum(
            _fold_site(model, site, (taken, scopes), reports, declined, done) for site in fresh
        )
        if not (waiting or declined) or not folded:
            break
        logger.debug("round %d folded %d; matching %d again", round_, folded, len(waiting))
    else:
        for site in waiting:
            site.reason = f"weight norm nested more than {_MAX_ROUNDS} deep"
    for site in waiting:
        reports[site.root] = _describe(site, model, "declined", "")
        declined.append(site)
    naming.name_declined(
        [(site, reports[site.root]) for site in declined],
        {report.name for report in reports.values()},
    )
    for site in declined:
        if site.root in matched and matched[site.root] is None:  # declined on its values
            logger.warning("not folding %s: %s", reports[site.root].name, site.reason)
    return {root: reports[root] for root in found if root in reports}, declined


def _forget_changed(
    sites: list[Site],
    matched: dict[ir.Value, str | None],
    reports: dict[ir.Value, SiteReport],
    declined: list[Site],
) -> None:
    """Forget each site declined before that ``sites`` (this round's) hold no more, or with
    another reason than it was matched with (``matched``): another site's fold changed what
    it computes. A site still there is then matched as a fresh one."""
    now = {site.root: site.reason for site in sites}
    for site in list(declined):
        if site.root not in now or now[site.root] != matched.get(site.root):
            logger.debug("%s changed by a fold; matched again", site.root.name)
            del reports[site.root]
            declined.remove(site)


def _fold_site(
    model: ir.Model,
    site: Site,
    names: tuple[set[str], naming.ScopeNames],
    reports: dict[ir.Value, SiteReport],
    declined: list[Site],
    done: dict[tuple[object, ...], tuple[ir.Value, list[SiteReport]]],
) -> bool:
    """Fold ``site``, or record why not (its name is given once all are folded); whether
    it folded. A site that computes what one folded before in its graph computed (the same
    ops on the same constants: ``g * v / ||v||`` written twice over one ``v``) reads that
    weight (``done``, by :func:`_site_key`): one tensor, not two of the same bytes. ``names``:
    the names taken, and those counted graph by graph (:class:`naming.ScopeNames`)."""
    owner = _site_owner(model, site)
    key = _site_key(site, owner) if site.foldable else None
    if key is not None and key in done:
        existing, earlier = done[key]
        if still_folded(existing, owner):
            freed = naming.freed_name(site, existing.name or "", *names, owner)
            report = _describe(site, model, "folded", existing.name or "")
            report.dtype, report.written_shape = earlier[0].dtype, earlier[0].written_shape
            report.nodes_removed = reuse_value(site.target, existing)
            reports[site.root] = report
            earlier.append(report)
            if freed is not None:  # the last value of the parameter's name is gone
                rename_weight(existing, freed)
                for row in earlier:
                    row.name = freed
            logger.debug("folded %s as %s, folded before", site.root.name, existing.name)
            return True
    weight = folded_weight(site) if site.foldable else site.reason
    if isinstance(weight, str) or weight is None:
        if site.foldable:
            site.reason = weight  # warned of once named, as its row is (_fold_all)
        logger.debug("declined %s: %s", site.root.name, site.reason)
        reports[site.root] = _describe(site, model, "declined", "")
        declined.append(site)
        return False
    taken, scopes = names
    name = naming.folded_name(site, taken, scopes, owner)
    report = _describe(site, model, "folded", name)
    report.dtype = weight.dtype.name.lower()
    report.written_shape = [int(d) for d in weight.shape.numpy()]
    report.nodes_removed, written = replace_value(owner, site.target, report.name, weight)
    reports[site.root] = report
    if key is not None:
        done[key] = (written, [report])
    logger.debug("folded %s (%d nodes removed)", report.name, report.nodes_removed)
    return True


def _site_owner(model: ir.Model, site: Site) -> ir.Graph | ir.Function:
    """The graph whose constant ``site``'s folded weight becomes (:func:`initializer_owner`)."""
    if site.graph is model.graph:  # its own: no walk of the cone
        return site.graph
    return initializer_owner(model, site.graph, _cone(site.target)[1])


def _site_key(site: Site, owner: ir.Graph | ir.Function) -> tuple[object, ...] | None:
    """What a site computes, structurally, for the graph whose constant its weight becomes
    (``owner``): each node of its cone (in the order ``walk_cone`` meets them from the
    target) with its op, its attributes and where its inputs come from (a node of the cone,
    or a value outside it by identity). Equal keys compute the same tensor. None for a site
    folded after another (its v is that one's weight) and for attributes whose text would
    not tell them apart (tensors, graphs)."""
    if site.after is not None:
        return None
    nodes, _ = _cone(site.target)
    position = {id(node): i for i, node in enumerate(nodes)}
    key: list[object] = [id(owner)]
    for node in nodes:
        attributes = []
        for name, attr in sorted(node.attributes.items()):
            if (text := _attribute_key(attr)) is None:
                return None
            attributes.append((name, attr.type, text))
        inputs: list[tuple[object, ...]] = []
        for value in node.inputs:
            producer = value.producer() if value is not None else None
            if value is not None and producer is not None and id(producer) in position:
                inputs.append(("node", position[id(producer)], value.index()))
            else:
                inputs.append(("value", id(value)))
        key.append((node.domain, node.op_type, node.overload, tuple(attributes), tuple(inputs)))
    producer = site.target.producer()
    key.append(("target", position.get(id(producer), -1), site.target.index()))
    return tuple(key)


def _attribute_key(attr: ir.Attr) -> object | None:
    """An attribute's value, as a key equal for equal values: the repr of a plain one; the
    dtype, shape and bytes of a small tensor of integers, or of one number (a ``Constant`` of
    axes, a shape, an epsilon, which TorchScript writes once per call of a layer: a cell
    stepped in a loop, t197); any other tensor by identity, as an initializer is (a layer's
    ``v`` or ``g`` as a ``Constant``: two layers of equal values are still two weights, t199);
    None for a reference or a graph."""
    if attr.is_ref():
        return None
    if attr.type in _PLAIN_ATTRIBUTES:
        return repr(attr.value)
    if attr.type != ir.AttributeType.TENSOR:
        return None
    tensor = attr.value
    number = tensor.size == 1 and tensor.dtype != ir.DataType.STRING
    if (tensor.dtype.is_integer() or number) and tensor.nbytes <= _KEYED_TENSOR_BYTES:
        return (tensor.dtype, tuple(tensor.shape), tensor.tobytes())
    return ("tensor", id(tensor))


# The largest tensor attribute compared by its bytes: axes and shapes.
_KEYED_TENSOR_BYTES = 4096

# attribute types whose repr is their whole value
_PLAIN_ATTRIBUTES = frozenset(
    {
        ir.AttributeType.INT,
        ir.AttributeType.INTS,
        ir.AttributeType.FLOAT,
        ir.AttributeType.FLOATS,
        ir.AttributeType.STRING,
        ir.AttributeType.STRINGS,
    }
)


def initializer_owner(
    model: ir.Model, graph: ir.Graph | ir.Function, sources: list[ir.Value]
) -> ir.Graph | ir.Function:
    """The graph whose initializer a weight folded in ``graph`` from the initializers
    ``sources`` becomes: the main graph where ``graph`` is a body that holds initializers and
    every source is an initializer of the main graph (a branch of an ``If`` computing
    ``Transpose(W)``, or ``g * v / ||v||``), so that the same weight in two bodies is one
    tensor, which each reads from the scope around it (t158); else ``graph`` itself."""
    main = model.graph
    if graph is main or constants_as_nodes(graph) or not sources:
        return graph
    held = all(
        main.initializers.get(source.name or "") is source and not source.is_graph_input()
        for source in sources
    )
    return main if held else graph


def still_folded(value: ir.Value, graph: ir.Graph | ir.Function) -> bool:
    """Whether a weight folded earlier is still there to share: an initializer of ``graph``
    (or a Constant's output, where it holds no initializers), not removed by a later fold."""
    if not constants_as_nodes(graph):
        assert isinstance(graph, ir.Graph)
        return graph.initializers.get(value.name or "") is value
    node = value.producer()
    return node is not None and node.graph is graph


def reuse_value(target: ir.Value, existing: ir.Value) -> int:
    """Make every use of ``target`` read ``existing`` (the same tensor, folded before); remove
    what became dead; the number of nodes removed."""
    nodes, leaves = _cone(target)
    _read_instead(target, existing)
    return _remove_dead(nodes, leaves)


def replace_value(
    graph: ir.Graph | ir.Function, target: ir.Value, name: str, tensor: ir.TensorProtocol
) -> tuple[int, ir.Value]:
    """Replace ``target`` by the constant ``tensor`` named ``name``: an initializer (a
    ``Constant`` node where the graph holds no initializers, ``constants_as_nodes``); remove
    what became dead. The number of nodes removed, and the value that holds ``tensor``."""
    nodes, leaves = _cone(target)
    producer = target.producer()
    assert producer is not None
    tensor.name = name
    if constants_as_nodes(graph):
        # No initializers there: the folded weight becomes a Constant node.
        constant = ir.node("Constant", [], attributes={"value": tensor}, name=f"{name}_const")
        constant.outputs[0].name = name
        constant.outputs[0].shape = ir.Shape(tensor.shape.numpy())
        constant.outputs[0].type = ir.TensorType(tensor.dtype)
        graph.insert_before(producer, constant)
        new = constant.outputs[0]
    else:
        assert isinstance(graph, ir.Graph)
        # typed as a loaded initializer is: a CastLike to it reads its type (t269)
        new = ir.Value(
            name=name,
            type=ir.TensorType(tensor.dtype),
            shape=ir.Shape(tensor.shape.numpy()),
            const_value=tensor,
        )
        graph.register_initializer(new)
    _read_instead(target, new)
    return _remove_dead(nodes, leaves), new


def rename_weight(value: ir.Value, new: str) -> ir.Value:
    """Give a folded weight (an initializer, or a Constant's output in a function) its final
    name."""
    value.name = new
    if (node := value.producer()) is not None and node.op_type == "Constant":
        node.attributes["value"].value.name = new
        node.name = f"{new}_const"
    return value


def _read_instead(target: ir.Value, new: ir.Value) -> None:
    """Make every node that reads ``target`` read the constant ``new``. A graph output keeps
    its name and its place in the interface as ``Identity(new)``, the one form in which a
    constant has an output name of its own; the consumers read ``new`` itself, so that the
    output's Identity is no computed weight for a later fold to find again. An output that is
    ``Identity(new)`` already stays as it is."""
    graph = target.graph
    if target.is_graph_output() and not _identity_of(target, new):
        assert graph is not None
        output_name = target.name
        target.name = f"{output_name}.unfolded"
        identity = ir.node("Identity", [new], name=f"{new.name}_output")
        identity.outputs[0].name = output_name
        identity.outputs[0].shape, identity.outputs[0].type = target.shape, target.type
        if (anchor := new.producer()) is not None:  # a Constant (functions): after it
            graph.insert_after(anchor, identity)
        else:
            producer = target.producer()
            assert producer is not None
            graph.insert_before(producer, identity)
        for i, output in enumerate(graph.outputs):
            if output is target:
                graph.outputs[i] = identity.outputs[0]
    for node, index in list(target.uses()):
        node.replace_input_with(index, new)


def _identity_of(value: ir.Value, source: ir.Value) -> bool:
    """Whether ``value`` is ``Identity(source)``."""
    node = value.producer()
    return (
        node is not None
        and node.op_type == "Identity"
        and node.domain in ("", "ai.onnx")
        and list(node.inputs) == [source]
    )
