"""Fold constant weight cones into initializers: ``FoldWeightConesPass``.

The rule: a weight input of ``Conv``, ``ConvTranspose``, ``Gemm``, ``MatMul``, ``LSTM``, ``GRU``,
``RNN`` (weights and biases), or the table of an embedding ``Gather`` (its indices
fed at run time) that is not an initializer but is computed from constants by layout and cast ops
(``Transpose``, ``Reshape``, ``Flatten``, ``Squeeze``/``Unsqueeze``, ``Slice``, ``Concat``,
``Split``, ``Gather`` with constant indices, ``ScatterND`` without a reduction, ``Cast``,
``Identity``, ``Expand``, ``Tile``, ``Pad``, ``Constant``, and ``Shape``/``ConstantOfShape``
for their shape inputs) and by exactly rounded arithmetic (``Add``, ``Sub``, ``Mul``, ``Div``,
and the selections ``Max``, ``Min``, ``Clip``; on floats and on integers: a ``Slice``'s
bounds, a ``Reshape``'s shape) is replaced by one
initializer holding exactly the tensor the graph computes; except for a node that computes a
constant (every input constant: a spectral norm's ``Reshape(W) @ v``) where a source of the
cone is read elsewhere too (its ``Conv`` reads ``W / sigma``): that would store the source
twice and compute the node all the same (``_copies``, t301). Layout ops move, select or convert
elements, and the evaluator (``evaluate``) does each the way ONNX does; IEEE arithmetic
rounds each float32 and double ``Add``/``Sub``/``Mul``/``Div`` correctly to its type, as ONNX
Runtime's kernels do, and the evaluator computes a cone step by step in the graph's types,
rounding each such result to its type at once: the result is bit for bit the graph's, and
ONNX Runtime's. What the two give differently is declined (float16 and bfloat16 arithmetic,
which ONNX Runtime computes in float32 between Casts its rewrites move; a NaN ``Clip`` bound;
+0 and -0 meeting in a selection). (Below opset 18, the
TorchScript exporter's constant folding leaves ``F.normalize`` of a weight as ``W /
Expand(Clip(||W||))`` with the norm computed: such a cone.) A cone that only passes an
initializer on (``Identity``, a ``Cast`` to its own dtype: TorchScript's form for parameters
of equal values) is not copied: its consumers read that initializer itself (``_alias``).

Exporters leave such cones in front of weights (the dynamo exporter reorders LSTM gates with
``Slice``/``Concat``/``Unsqueeze`` and puts ``Transpose(W)`` before ``MatMul``); ONNX
Runtime's quantizer only quantizes initializers.

A value computed by arithmetic inside a cone that a node outside it reads too (DAC's
normalized codebook, read transposed by its ``MatMul`` and as it is by a ``Pow``) is folded
first, as a cone of its own (``shared_computed``), so that every reader reads one tensor and
the graph computes nothing from its sources any more; the cones are then walked again.
A weight used by several consumers becomes one tensor, and so do two cones of one graph that
compute the same elements from the same constants (a layer called twice: two ``Transpose`` of
one ``W``); a cone in a body that reads only initializers of the main graph is folded into
one of the main graph, which the body reads from there, so that the same cone in two bodies
(both branches of an ``If``) is one tensor too. A weight that a body reads from an enclosing
graph, which computes it, is folded there.
It is named after the constant it comes from (``lstm.weight_hh_l0``; several:
``lstm.bias_ih_l0+bias_hh_l0``), that name itself when the constant goes away with the cone;
of arithmetic, its largest constants name it (``W / Expand(Clip(||W||))``, ``s * W``: W's),
and since its values are not that constant's, it gets ``.folded`` (``w.folded``), as a
weight-norm site's weight does; so does one whose casts change its values on the way
(``_changes_values``: W to int32 and back).
A large weight is computed when the model is written (an ``ir.LazyTensor``), one at a time,
like a folded weight-norm site. A computed weight with any other op in its cone, or one the
evaluator cannot do exactly, is left as it is and reported ``declined`` with the reason; one
computed by a weight-norm site that the fold declined is that site's, reported with it once.
``inspect`` asks the fold's own steps (``cone_outcome``): a computed weight is ``foldable``
only where the fold would fold it, which can depend on its values (a ``Cast`` that overflows,
``Pad`` widths the evaluator does not do), so each is computed, one at a time, dropped at once. A
weight computed from a graph input (also from an initializer that a graph input can override)
is not constant, so it is no computed weight and is not reported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence, Set

import ml_dtypes
import numpy as np
import onnx_ir as ir

from wnpass.onnx import evaluate as ev
from wnpass.onnx import naming
from wnpass.onnx.fold import (
    FoldResult,
    graph_label,
    initializer_owner,
    rename_weight,
    replace_value,
    reuse_value,
    still_folded,
)
from wnpass.onnx.graphs import (
    RANDOM_OPS,
    constants_as_nodes,
    defining_scope,
    enclosing_scope,
    graphs_of,
    shadowed_in_cone,
)
from wnpass.onnx.match import Site, describe_consumer
from wnpass.onnx.norms import producer
from wnpass.onnx.types import cast_to, declared_dtype
from wnpass.onnx.weights import folded_weight, release
from wnpass.report import OUT_OF_MEMORY, ConeReport, FoldReport, out_of_memory

__all__ = [
    "CONE_OPS",
    "WEIGHT_INPUTS",
    "Cone",
    "FoldWeightConesPass",
    "cone_outcome",
    "cone_reports",
    "find_cones",
    "named_as_folded",
    "shared_computed",
]

logger = logging.getLogger(__name__)

# op -> the inputs that hold weights (and biases)
WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {
    "Conv": (1, 2),
    "ConvTranspose": (1, 2),
    "Gemm": (0, 1, 2),
    "MatMul": (0, 1),
    "LSTM": (1, 2, 3),
    "GRU": (1, 2, 3),
    "RNN": (1, 2, 3),
    "Gather": (0,),
}
CONE_OPS = frozenset(
    {"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Concat", "Split"}
    | {"Gather", "Cast", "CastLike", "Identity", "Expand", "Constant", "Shape", "Pad"}
    | {"ConstantOfShape", "Tile", "ScatterND", "Range"}
)
# Arithmetic that IEEE arithmetic rounds correctly to the result's type, as ONNX Runtime's
# kernels do, and selections of one of the inputs' values: computed step by step in the
# graph's types (``ev.compile_cone(stepwise=True)``), a cone of them is the graph's tensor bit
# for bit; where ONNX Runtime computes it otherwise (float16 arithmetic), the evaluator
# declines it.
ARITHMETIC_OPS = ev.STEPWISE_OPS
# Ops that give a quantized tensor's values: a weight read through one is a quantized weight.
_DEQUANTIZERS = frozenset({"DequantizeLinear"})
# Ops whose inputs are only sizes: no input's elements go into the weight.
_SIZED = frozenset({"Shape", "ConstantOfShape"})
EAGER_BYTES = 16 << 20  # smaller folded weights are kept in memory; larger ones made lazily


@dataclasses.dataclass
class Cone:
    """A weight input computed from constants: its value, ops, sources, and a reason if it
    cannot be folded."""

    graph: ir.Graph | ir.Function
    value: ir.Value
    nodes: list[ir.Node]  # from the constants towards the weight
    sources: list[ir.Value]  # the constants whose elements it holds
    source_names: list[str]  # their names (a weight-norm site's: the name it will get)
    reason: str | None = None
    computed: bool = False  # arithmetic on its elements: its values are none of its sources'
    whole: bool = True  # False: the walk stopped at an op the fold does not fold (``reason``)
    # the elements of sources that hold no tensor yet (the weights of weight-norm sites a
    # fold folds first, for an inspection)
    leaf_sizes: dict[ir.Value, int] = dataclasses.field(default_factory=dict)
    # the values computed on the way whose elements go into the weight (not a size, a bound)
    held: set[ir.Value] = dataclasses.field(default_factory=set)

    @property
    def foldable(self) -> bool:
        return self.reason is None

    def consumers(self) -> list[str]:
        return sorted({describe_consumer(use.node, use.idx) for use in self.value.uses()})

    def name(self) -> str:
        """After its source constant; several: ``module.a+b``; else the value's own name.
        A weight computed by arithmetic is named after its largest sources (``W / Expand(Clip(
        ||W||))`` and ``s * W`` are W's), and gets ``.folded``, as a weight-norm site's weight
        named after another parameter does: its values are not that parameter's."""
        names = list(dict.fromkeys(self._largest() if self.computed else self.source_names))
        if len(names) == 1:
            name = names[0]
        elif names:
            module = names[0].rpartition(".")[0]
            if module and all(n.rpartition(".")[0] == module for n in names):
                name = module + "." + "+".join(n.rpartition(".")[2] for n in names)
            else:
                name = "+".join(names)
        else:
            name = self.value.name or "weight"
        return f"{name}.folded" if self.computed and not name.endswith(".folded") else name

    def row_name(self) -> str:
        """The name of its row: :meth:`name`, but where the fold leaves a weight computed by
        arithmetic, or one computed by an op it does not fold, the value the graph keeps
        computing, which its consumers read: nothing named after its sources is written (a
        row named ``onnx::Div_13.folded``, after a value the walk stopped at, named no
        tensor, t138)."""
        if self.reason is not None and (self.computed or not self.whole) and self.value.name:
            return self.value.name
        return self.name()

    def _largest(self) -> list[str]:
        """The names of the sources of the most elements (as their tensors' or their
        declared shapes say)."""
        sizes = [self.leaf_sizes.get(source) or _size(source) for source in self.sources]
        most = max(sizes, default=0)
        return [n for n, size in zip(self.source_names, sizes, strict=True) if size == most]


def _size(value: ir.Value) -> int:
    """The elements of a constant: its tensor's (a weight-norm site's folded weight has no
    declared shape), else as the graph declares it (0 where it does not)."""
    tensor = ev.const_leaf(value)
    shape = tensor.shape if tensor is not None else value.shape
    if shape is None:
        return 0
    return math.prod(d if isinstance(d, int) else 0 for d in shape)


def _constant_values(
    graph: ir.Graph | ir.Function, leaves: Set[ir.Value] = frozenset()
) -> set[ir.Value]:
    """Every value of ``graph`` computed from constants only (graph order is topological);
    ``leaves`` count as constants, also where a body reads one of an enclosing graph."""
    constant: set[ir.Value] = set(leaves)
    for node in graph:
        if node.domain not in ("", "ai.onnx") or node.op_type in RANDOM_OPS:
            continue
        if any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
               for a in node.attributes.values()):  # fmt: skip
            continue
        inputs = [i for i in node.inputs if i is not None]
        if node.op_type != "Constant" and not inputs:
            continue
        if all(i in constant or ev.const_leaf(i) is not None for i in inputs):
            constant.update(node.outputs)
    return constant


def _walk(
    graph: ir.Graph | ir.Function,
    value: ir.Value,
    leaves: Mapping[ir.Value, str],
    sites: Set[ir.Value],
) -> Cone | None:
    """The cone of ``value`` down to constants (and ``leaves``: weights about to be folded);
    None when it holds the elements of one of ``sites`` (the values of declined weight-norm
    sites): that weight is the site's, reported with it; and when it holds a dequantized
    value (a QDQ model's ``DequantizeLinear`` of an int8 weight): a quantized weight, which
    ONNX Runtime fuses into its quantized kernels, is no weight left to fold (t306)."""
    cone = Cone(graph, value, [], [], [])
    seen: set[ir.Value] = set()
    # (value, whether its elements go in, whether it is only a size or an index)
    stack: list[tuple[ir.Value, bool, bool]] = [(value, True, False)]
    while stack:
        current, data, index = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        if data and current in sites:
            return None
        node = current.producer()
        if current in leaves or (node is None or node.op_type == "Constant"):
            if data:
                cone.sources.append(current)
                cone.source_names.append(leaves.get(current) or current.name or "?")
            if node is not None and current not in leaves:
                cone.nodes.append(node)
            continue
        if data and node.op_type in _DEQUANTIZERS:
            return None  # a quantized weight, which a runtime reads so (a QDQ model's)
        arithmetic = node.op_type in ARITHMETIC_OPS
        cone.computed = cone.computed or (data and (arithmetic or _changes_values(node, value)))
        if not (node.op_type in CONE_OPS or arithmetic) or node.domain not in ("", "ai.onnx"):
            cone.reason = (
                f"computed by {node.op_type}, not by layout, cast or exactly rounded arithmetic ops"
            )
            cone.whole = False
            return cone
        if any(attr.is_ref() for attr in node.attributes.values()):
            cone.reason = f"{node.op_type} takes an attribute from the function's caller"
            cone.whole = False
            return cone
        cone.nodes.append(node)
        if data:
            cone.held.add(current)
        inputs = list(enumerate(node.inputs))
        for i, inp in reversed(inputs):
            if inp is not None:
                # a Pad's constant value goes into the weight too, but is no source of it
                value_in = i == 2 and node.op_type == "Pad"
                holds = node.op_type not in _SIZED and (
                    i == 0 or node.op_type == "Concat" or arithmetic
                )
                stack.append((inp, data and holds, index or not (holds or value_in)))
    cone.nodes.reverse()
    cone.nodes = list(dict.fromkeys(cone.nodes))
    return cone


def _copies(cone: Cone, twins: Sequence[Cone] = ()) -> bool:
    """Whether folding ``cone`` would store a copy of one of its sources: another node, or
    the graph's outputs, read that source too, so that it stays (a cone that only passes a
    source on is no copy: :func:`_alias`). ``twins``: cones that compute the same tensor,
    folded into one with it: their nodes read the source for it (t334)."""
    inside = set(cone.nodes).union(*(twin.nodes for twin in twins))
    return any(
        source.is_graph_output() or any(use.node not in inside for use in source.uses())
        for source in cone.sources
    )


def _changes_values(node: ir.Node, weight: ir.Value) -> bool:
    """Whether ``node`` is a cast that changes values a weight of ``weight``'s dtype would
    hold: one to a type that cannot hold every value of its input's (float32 to int32 or
    bfloat16) other than the weight's own dtype. ``Cast(W, float16)`` before a float16 MatMul
    gives W's values rounded to the weight's dtype, still W's; ``W`` to int32 and back, or
    float64 to float32 to float16 (rounded twice), gives values of its own (named
    ``.folded``). Unknown types count as changing nothing."""
    if node.op_type not in ("Cast", "CastLike") or not node.inputs or node.inputs[0] is None:
        return False
    source, target, final = (
        declared_dtype(node.inputs[0]),
        declared_dtype(node.outputs[0]),
        declared_dtype(weight),
    )
    if source is None or target is None or final is None or target == final:
        return False
    return not _holds_every_value(target, source)


def _holds_every_value(target: ir.DataType, source: ir.DataType) -> bool:
    """Whether ``target`` holds every value of ``source`` exactly (float16 in float32, int8 in
    float16, int16 in int32; not float32 in int32, int32 in float32 or float32 in bfloat16)."""
    if source == target or source == ir.DataType.BOOL:
        return True
    if not (source.is_floating_point() or source.is_integer()):
        return False
    into, of = target.numpy(), source.numpy()
    if source.is_floating_point():
        if not target.is_floating_point():
            return False
        wide, narrow = ml_dtypes.finfo(into), ml_dtypes.finfo(of)
        return (
            wide.nmant >= narrow.nmant
            and wide.maxexp >= narrow.maxexp
            and wide.minexp <= narrow.minexp
        )
    if target.is_floating_point():  # every integer of the source's bits, exactly
        bits = ml_dtypes.iinfo(of).bits - int(ml_dtypes.iinfo(of).min < 0)
        return bits <= ml_dtypes.finfo(into).nmant + 1
    if target.is_integer():
        return bool(
            ml_dtypes.iinfo(into).min <= ml_dtypes.iinfo(of).min
            and ml_dtypes.iinfo(into).max >= ml_dtypes.iinfo(of).max
        )
    return False


def find_cones(
    model: ir.Model,
    leaves: Mapping[ir.Value, str] | None = None,
    sites: Set[ir.Value] = frozenset(),
) -> list[Cone]:
    """Every weight input computed from constants, foldable or with a reason, in graph order.

    ``leaves``: values that count as initializers already, with the names they will get (the
    targets of the weight-norm sites that a fold folds first, for an inspection). ``sites``:
    the targets of declined weight-norm sites; a weight computed from one is left out (the
    site is reported already).
    """
    leaves = {} if leaves is None else leaves
    cones: list[Cone] = []
    constant_only: list[tuple[int, Cone]] = []  # read by a node computing a constant
    constants: dict[ir.Graph | ir.Function, set[ir.Value]] = {}
    done: set[ir.Value] = set()
    for graph in list(graphs_of(model)):  # every body walked first (graphs.shadowed)
        # a body reads its enclosing graphs' values: the constant ones are constants there
        # (graphs_of gives a graph before the bodies inside it)
        outer = enclosing_scope(graph)
        inherited = constants[outer] if outer is not None else set()
        constant = _constant_values(graph, leaves.keys() | inherited)
        constants[graph] = constant
        for node in graph:
            if node.op_type not in WEIGHT_INPUTS or node.domain not in ("", "ai.onnx"):
                continue
            if node.op_type == "Gather" and (
                len(node.inputs) < 2
                or node.inputs[1] in constant
                or (node.inputs[1] is not None and ev.const_leaf(node.inputs[1]) is not None)
            ):
                continue  # constant indices: part of a cone, not an embedding lookup
            # no layer applying a weight to run-time data, but a constant computed (the sigma
            # of a spectral norm in eval mode, Reshape(W) @ v, while a Conv reads W / sigma)
            computes_a_constant = all(output in constant for output in node.outputs)
            for index in WEIGHT_INPUTS[node.op_type]:
                value = node.inputs[index] if index < len(node.inputs) else None
                if value is None or value in done or value not in constant or value in leaves:
                    continue
                done.add(value)
                owner = defining_scope(value, graph)  # a value of an enclosing graph: there
                if constants_as_nodes(owner) and producer(value, "Constant") is not None:
                    continue  # how a function (or an IR version 3 body) holds a constant
                if (cone := _walk(owner, value, leaves, sites)) is None:
                    continue
                cone.reason = cone.reason or shadowed_in_cone(value, owner)
                if computes_a_constant and _passed_on(cone) is None and _copies(cone):
                    constant_only.append((len(cones), cone))  # kept where a twin folds W
                    continue
                cones.append(cone)
    return _with_twins(model, cones, constant_only)


def _with_twins(
    model: ir.Model, cones: list[Cone], constant_only: list[tuple[int, Cone]]
) -> list[Cone]:
    """``cones`` with those of ``constant_only`` (a node computing a constant reads them,
    each at its place among the cones) whose sources a twin reads: a layer's cone of the
    same tensor (two ``Transpose`` of one W, one for a layer's ``MatMul``, one for a
    ``MatMul`` of the relative positions, as SEW-D writes), folded into one with it, so W
    goes and nothing is stored twice. Left out (a second copy of W, and the node computed
    all the same, t301), a second fold folded it, once the twin's W was gone (t334). Twins
    are told as the fold tells them: by what they compute and the graph whose initializer
    the weight becomes (a layer's in an ``If``'s branch, of W of the main graph: t338)."""
    if not constant_only:
        return cones
    programs = []  # alive while the keys, which hold their leaves' ids, are compared

    def key_of(cone: Cone) -> tuple[object, ...] | None:
        if isinstance(program := _program(cone), str):
            return None
        programs.append(program)
        return _twin_key(_owner(model, cone), program)

    keys: dict[tuple[object, ...], list[Cone]] = {}
    for cone in cones:
        if cone.foldable and (key := key_of(cone)) is not None:
            keys.setdefault(key, []).append(cone)
    held: dict[tuple[object, ...], list[Cone]] = {}  # the held back cones with a twin, by key
    for _, cone in constant_only:
        if (key := key_of(cone)) in keys:
            held.setdefault(key, []).append(cone)
    # the layer's and every held back twin's nodes read W for the tensor (a constant MatMul
    # in each branch of an If beside the layer's in the main graph, t340)
    chosen = {
        id(cone)
        for key, group in held.items()
        for cone in group
        if not _copies(cone, [*keys[key], *group])
    }
    kept = list(cones)
    for place, cone in reversed(constant_only):
        if id(cone) in chosen:
            kept.insert(place, cone)
    return kept


def _owner(model: ir.Model, cone: Cone) -> ir.Graph | ir.Function:
    """The graph whose initializer ``cone``'s weight becomes."""
    return initializer_owner(model, cone.graph, list(cone.sources))


def _twin_key(owner: ir.Graph | ir.Function, program: ev.Program) -> tuple[object, ...]:
    """What a cone's weight is folded as: the graph holding it (:func:`_owner`) and what it
    computes; twins have one key."""
    return (id(owner), _key(program))


def cone_reports(
    model: ir.Model, cones: list[Cone], sites: Sequence[Site] = ()
) -> list[ConeReport]:
    """Reports for cones found but not (yet) folded: what ``inspect`` shows. Each is
    ``foldable`` or ``declined`` as the fold decides it (``cone_outcome``), so that nothing
    the fold would leave is called foldable, with the shape the fold's weight has where the
    graph declares none. ``sites``: the weight-norm sites, whose foldable ones (folded first by
    the fold) some cones read."""
    folded_sites = {site.target: site for site in sites if site.foldable}
    reports = []
    for cone in cones:
        cone.reason, shape = cone_outcome(cone, folded_sites)
        report = _describe(model, cone, "foldable" if cone.foldable else "declined")
        report.shape = report.shape if report.shape is not None else shape
        reports.append(report)
    return reports


def cone_outcome(cone: Cone, sites: Mapping[ir.Value, Site]) -> tuple[str | None, list[int] | None]:
    """Why a fold leaves ``cone`` as it is (None: it folds it), decided by the fold's own steps
    (``_passed_on``, ``_program``, ``_tensor``), so the decision cannot differ from the fold's;
    and the shape of the weight it computes, where it got that far.

    ``sites``: foldable weight-norm sites by the value they replace; the fold folds them first,
    so a cone reads their weights (``folded_weight``) as constants. The tensor computed is
    dropped at once and the constants read are unmapped: one cone's tensor at a time, as in
    the fold.
    """
    if cone.reason is not None:
        return cone.reason, None
    if (source := _passed_on(cone, sites.keys())) is not None:  # read from it, nothing computed
        held = ev.const_leaf(source) if source not in sites else None
        return None, None if held is None else [int(d) for d in held.shape.numpy()]
    weights: dict[ir.Value, ir.TensorProtocol] = {}
    read = (i for node in cone.nodes for i in node.inputs if i is not None and i in sites)
    for value in dict.fromkeys(read):
        weight = folded_weight(sites[value])
        if isinstance(weight, str):  # not after ``site_reports``: it declines such a site
            return weight, None
        weights[value] = weight
        cone.leaf_sizes[value] = math.prod(int(d) for d in weight.shape.numpy())
    with _holding(weights):
        program = _program(cone)
    if isinstance(program, str):
        return program, None
    tensor = _tensor(cone.value, program)
    if isinstance(tensor, str):
        return tensor, None
    return None, [int(d) for d in tensor.shape.numpy()]


def named_as_folded(
    model: ir.Model, cones: Sequence[Cone], reports: Sequence[ConeReport], others: Set[str]
) -> bool:
    """Whether the fold writes each foldable computed weight under its row's name
    (:meth:`Cone.name`), as :func:`cone_reports` gives them: no two rows share a name
    (``others``: the names of the other rows, the weight-norm sites'), and each name is free
    when the fold writes the weight. It is where no value has it but one source of the cone
    that the cone alone reads (the fold removes it with the cone), and the cone computes
    something: a tied weight's ``Transpose`` is written ``W__1``, since the embedding still
    reads ``W``, and an ``Identity`` passing on a source that nothing else reads is folded
    by renaming the source after the value its consumer read (:func:`_alias`). Where not, an
    inspection asks a fold of a copy for the names."""
    names = [report.name for report in reports]
    if len(set(names)) != len(names) or not others.isdisjoint(names):
        return False
    taken, shared = naming.names_in_use(model)
    for cone, report in zip(cones, reports, strict=True):
        if report.status != "foldable":
            continue
        nodes = set(cone.nodes)
        own = [s for s in cone.sources if s.name == report.name]
        alone = [s for s in cone.sources if all(use.node in nodes for use in s.uses())]
        if alone and _passed_on(cone) is not None:
            return False
        if report.name not in taken:
            continue
        if report.name in shared or len(own) != 1 or own[0] not in alone:
            return False
        if own[0].is_graph_input() or own[0].is_graph_output():
            return False
    return True


@contextlib.contextmanager
def _holding(weights: Mapping[ir.Value, ir.TensorProtocol]) -> Iterator[None]:
    """The values of weight-norm sites hold their folded weights while a cone is compiled, as
    the initializers the fold puts in their place do; afterwards the model is as it was."""
    before = {value: value.const_value for value in weights}
    for value, weight in weights.items():
        value.const_value = weight
    try:
        yield
    finally:
        for value, held in before.items():
            value.const_value = held


def _describe(model: ir.Model, cone: Cone, status: str) -> ConeReport:
    dtype = declared_dtype(cone.value)
    shape = cone.value.shape
    known = shape is not None and all(isinstance(d, int) for d in shape)
    name = cone.row_name()
    alias = _passed_on(cone, frozenset(cone.sources)) is not None and cone.value.name != name
    return ConeReport(
        name=name,
        graph=graph_label(cone.graph, model),
        consumers=cone.consumers(),
        shape=[int(d) for d in shape] if known and shape is not None else None,  # type: ignore[arg-type]
        dtype=None if dtype is None else dtype.name.lower(),
        ops=[node.op_type for node in cone.nodes],
        sources=list(dict.fromkeys(cone.source_names)),
        status=status,
        reason=cone.reason,
        read_as=cone.value.name if alias else None,
    )


def _key(program: ev.Program) -> tuple[object, ...]:
    """What a cone computes, structurally: the same key means the same tensor."""
    return tuple(
        (slot.op, repr(sorted(slot.attributes.items())), slot.inputs, slot.output, slot.outputs)
        if isinstance(slot, ev.Step)
        else id(slot)
        for slot in program.slots
    )


def _program(cone: Cone) -> ev.Program | str:
    """The cone compiled for the evaluator, or the reason the fold declines it."""
    try:
        return ev.compile_cone(cone.value, stepwise=True)
    except ev.NotExact as error:
        return str(error)


def _tensor(value: ir.Value, program: ev.Program) -> ir.TensorProtocol | str:
    """The weight the cone computes, exactly, or the reason it cannot be. The constants its
    run read are unmapped after it (a large weight reads them again when it is written): held
    mapped, every cone's would stay in memory until the end of the fold."""
    try:
        return _computed(value, program)
    finally:
        for leaf in program.leaves:
            release(leaf)


def _computed(value: ir.Value, program: ev.Program) -> ir.TensorProtocol | str:
    try:
        array, dtype = program.run()
        rounded = ev.round_to(array, dtype)
        del array
    except ev.NotExact as error:
        return str(error)
    except (ValueError, IndexError, TypeError) as error:
        return f"cannot be computed: {error}"
    except (MemoryError, OSError) as error:  # a weight's data that cannot be mapped too
        if not out_of_memory(error):
            raise
        return OUT_OF_MEMORY
    declared = declared_dtype(value)
    if declared is not None and declared != dtype:
        return f"the graph says {declared.name.lower()} where it computes {dtype.name.lower()}"
    shape = rounded.shape
    if rounded.nbytes <= EAGER_BYTES:  # a copy: a view would keep the constants mapped
        return ir.Tensor(np.array(rounded, order="C"), dtype=dtype)
    del rounded

    def compute() -> ir.TensorProtocol:  # again, at write time: one large weight at a time
        array, _ = program.run()
        out = np.ascontiguousarray(ev.round_to(array, dtype))
        del array
        for leaf in program.leaves:
            release(leaf)
        return ir.Tensor(out, dtype=dtype)

    return ir.LazyTensor(compute, dtype=dtype, shape=ir.Shape(shape))


class FoldWeightConesPass(ir.passes.InPlacePass):
    """Replace every weight computed from constants by layout, cast and exactly rounded
    arithmetic ops by an initializer.

    ``sites``: the values of the weight-norm sites a fold declined, reported with those sites.
    """

    def __init__(self, *, sites: Set[ir.Value] = frozenset()) -> None:
        super().__init__()
        self.sites = sites

    def call(self, model: ir.Model) -> FoldResult:
        folding = _Folding(model)
        # a value computed inside a cone that something else reads too (``F.normalize`` of a
        # codebook, below opset 18: its ``MatMul`` reads it transposed, a ``Pow`` as it is)
        # is folded first, one tensor every reader reads; then the cones, walked again (only
        # then), read it as a constant
        cones = find_cones(model, sites=self.sites)
        shared = shared_computed(cones, lambda cone: cone_outcome(cone, {})[0] is None)
        for graph, value in shared:
            if (cone := _walk(graph, value, {}, self.sites)) is not None:
                cone.reason = cone.reason or shadowed_in_cone(value, graph)
                folding.fold(cone)
        for cone in find_cones(model, sites=self.sites) if shared else cones:
            folding.fold(cone)
        reports = folding.reports
        folded = sum(r.status == "folded" for r in reports)
        logger.info("folded %d of %d computed weights", folded, len(reports))
        return FoldResult(model, modified=folded > 0, report=FoldReport(cones=reports))


def shared_computed(
    cones: Sequence[Cone], folds: Callable[[Cone], bool] = lambda cone: True
) -> list[tuple[ir.Graph | ir.Function, ir.Value]]:
    """The values inside foldable ``cones``, computed by arithmetic, whose elements go into
    the weight and that something outside the cone reads too (a node, or as an output of
    the graph or body: t255), in graph order, with the graph computing each: folded as they
    are, the weight and every other reader read one tensor; folded with the weight alone,
    the graph would go on computing them for the others, from the sources kept for them
    (t253). Not a shared size or bound (the dynamo exporter's ``Mul(Shape(h), k)`` of an
    LSTM's gates), and only those of the cones that ``folds`` says the fold folds (one it
    declines, float16 arithmetic after the shared value, would leave the weight computed
    and a copy of it stored besides: t255)."""
    found: dict[ir.Value, tuple[ir.Graph | ir.Function, ir.Node]] = {}
    for cone in cones:
        if not cone.foldable or not cone.computed:
            continue
        inside = set(cone.nodes)
        shared = [
            (value, node)
            for node in cone.nodes
            if node.op_type in ARITHMETIC_OPS
            for value in node.outputs
            if value is not cone.value
            and value in cone.held  # not a size or a bound: none of the weight's elements
            and (
                value.is_graph_output()
                or value in cone.graph.outputs
                or any(use.node not in inside for use in value.uses())
            )
        ]
        if shared and folds(cone):
            for value, node in shared:
                # the scope computing it: an enclosing graph's for a cone in a body that
                # reads its value (it raised KeyError, t266)
                found.setdefault(value, (defining_scope(value, cone.graph), node))
    graphs = dict.fromkeys(graph for graph, _ in found.values())
    order = {node: i for graph in graphs for i, node in enumerate(graph)}
    ordered = sorted(found.items(), key=lambda item: order[item[1][1]])
    return [(graph, value) for value, (graph, _) in ordered]


class _Folding:
    """The cones of one model folded one after the other, with what they share: the names
    taken, the tensors folded (one computed again is read from the first), the rows."""

    def __init__(self, model: ir.Model) -> None:
        self.model = model
        # names of several values (shared): one going away frees none (a body's local of the
        # name would shadow a weight of the main graph given it)
        self.taken, self.shared = naming.names_in_use(model)
        self.reports: list[ConeReport] = []
        self.folded_as: dict[tuple[object, ...], ir.Value] = {}  # a cone's elements -> weight
        self.reporting: dict[int, list[ConeReport]] = {}  # a folded weight's rows, by identity
        self.done_shapes: dict[tuple[object, ...], tuple[list[int] | None, str | None]] = {}
        self.programs: list[ev.Program] = []  # keep the leaves alive: keys hold their ids

    def fold(self, cone: Cone) -> None:
        model, taken, shared = self.model, self.taken, self.shared
        if not cone.foldable:
            logger.debug("computed weight %s left: %s", cone.name(), cone.reason)
            self.reports.append(_describe(model, cone, "declined"))
            return
        report = _describe(model, cone, "declined")
        if (source := _passed_on(cone)) is not None:
            self.reports.append(_alias(cone, source, report, (taken, shared)))
            return
        program = _program(cone)
        if isinstance(program, str):
            self.reports.append(_left(model, cone, program))
            return
        self.programs.append(program)
        owner = _owner(model, cone)
        key = _twin_key(owner, program)
        if key in self.folded_as and still_folded(self.folded_as[key], owner):
            # the same elements as a weight folded before (one layer used twice): one tensor
            existing, wanted = self.folded_as[key], report.name
            report.status = "folded"
            report.shape, report.dtype = self.done_shapes[key]
            report.nodes_removed = reuse_value(cone.value, existing)
            _free_sources(cone, taken, shared)
            if existing.name != wanted and wanted not in taken:  # its source is gone now
                for earlier in self.reporting[id(existing)]:  # in whichever body each is
                    earlier.name = wanted
                if existing.name not in shared:
                    taken.discard(existing.name or "")
                taken.add(wanted)
                rename_weight(existing, wanted)
            report.name = existing.name or wanted
            self.reporting[id(existing)].append(report)
            self.reports.append(report)
            return
        tensor = _tensor(cone.value, program)
        if isinstance(tensor, str):
            self.reports.append(_left(model, cone, tensor))
            return
        report.status = "folded"
        report.shape = list(tensor.shape.numpy())
        report.dtype = tensor.dtype.name.lower()
        temporary = naming.unique(f"{report.name}.cone", taken)
        report.nodes_removed, written = replace_value(owner, cone.value, temporary, tensor)
        _free_sources(cone, taken, shared)
        if not cone.value.is_graph_output() and cone.value.name not in shared:
            taken.discard(cone.value.name or "")
        final = naming.unique(report.name, taken)
        taken.discard(temporary)
        self.folded_as[key] = rename_weight(written, final)
        self.reporting[id(self.folded_as[key])] = [report]
        self.done_shapes[key] = (report.shape, report.dtype)
        report.name = final
        self.reports.append(report)
        logger.debug("folded computed weight %s (%d nodes removed)", final, report.nodes_removed)


def _left(model: ir.Model, cone: Cone, reason: str) -> ConeReport:
    """The row of a cone the fold leaves for ``reason``, found on the way (compiling it,
    computing it), under the name of what the graph keeps computing; said in a warning."""
    cone.reason = reason
    report = _describe(model, cone, "declined")
    logger.warning("not folding computed weight %s: %s", report.name, reason)
    return report


def _passed_on(cone: Cone, folded: Set[ir.Value] = frozenset()) -> ir.Value | None:
    """The constant a cone passes on unchanged (``Identity``, a ``Cast`` to its own dtype),
    when the consumer can read it itself: an initializer (in a function, a ``Constant``), or
    one of ``folded``, the values the fold makes initializers before (for an inspection)."""
    if len(cone.sources) != 1:
        return None
    (source,) = cone.sources
    if source not in folded and not _readable(source, cone.graph):
        return None
    dtype = declared_dtype(source)
    for node in cone.nodes:
        if node.op_type == "Cast":
            if dtype is None or cast_to(node) != dtype:
                return None
        elif node.op_type not in ("Identity", "Constant"):
            return None
    return source


def _readable(source: ir.Value, graph: ir.Graph | ir.Function) -> bool:
    """Whether a consumer can read the constant ``source`` itself: an initializer no graph
    input overrides (where the graph holds no initializers, a ``Constant``'s output)."""
    if constants_as_nodes(graph):
        return producer(source, "Constant") is not None
    return source.is_initializer() and not source.is_graph_input()


def _alias(
    cone: Cone, source: ir.Value, report: ConeReport, names: tuple[set[str], Set[str]]
) -> ConeReport:
    """Fold a cone that only passes ``source`` on: its consumers read ``source`` itself.

    The TorchScript exporter keeps one initializer for parameters of equal values and gives
    the others as ``Identity(initializer)``; a copy of the tensor for each would store it
    twice. One tensor has one name: it keeps its own (the parameter it was exported for, whose
    values the others equal) while something else still reads it; when the cone was its only
    use, it takes the name the consumer read (``Identity``'s output: the other parameter's),
    unless another value has that name too (``names``: the names taken, and those several
    values have): a body's value of the name would shadow the renamed initializer, an invalid
    model (t166).
    """
    taken, shared = names
    before = {(use.node, use.idx) for use in cone.value.uses()}
    wanted = cone.value.name or ""
    tensor = ev.const_leaf(source)
    report.status = "folded"
    if tensor is not None:
        report.shape = [int(d) for d in tensor.shape.numpy()]
        report.dtype = tensor.dtype.name.lower()
    report.nodes_removed = reuse_value(cone.value, source)
    alone = all((use.node, use.idx) in before for use in source.uses())
    graph = cone.graph
    if (
        alone
        and wanted
        and wanted not in shared
        and isinstance(graph, ir.Graph)
        and not source.is_graph_output()
        and graph.initializers.get(source.name or "") is source
    ):
        taken.discard(source.name or "")  # ``wanted`` was the Identity's, freed with it
        if isinstance(tensor, ir.serde.TensorProtoTensor):
            # its name is the caller's TensorProto's: a view of the same bytes is renamed
            source.const_value = ir.Tensor(tensor.numpy(), dtype=tensor.dtype)
        rename_weight(source, wanted)
    report.name = source.name or wanted
    report.read_as = wanted if wanted and wanted != report.name else None
    return report


def _free_sources(cone: Cone, taken: set[str], shared: Set[str] = frozenset()) -> None:
    """A source constant that went away with its cone frees its name, unless another value
    has it too (``shared``)."""
    for source in cone.sources:
        gone = not source.uses() and not source.is_graph_output() and not source.is_graph_input()
        if source.name and gone and source.name not in shared:
            taken.discard(source.name)
