"""Find weight-norm sites in an onnx-ir graph: the subgraphs that compute ``g * v / ||v||``.

A site is recognised algebraically rather than by a fixed list of node patterns. From every
norm seed (``ReduceL2``, ``ReduceSumSquare``, ``ReduceSum`` of ``v*v`` or ``v**2``,
``LpNormalization``) the matcher walks forward to the root of each product it feeds (a value
that several products by constants read is climbed along each, and is a root itself where
something else reads it too), then flattens that root's ``Mul``/``Div``/``Reciprocal``/``Cast``
tree into factors with exponents +1/-1 (also through a reshape of a part of it that only adds
or drops axes of size 1, each factor below taken as laid out there: ``v * (g /
||v||).view(-1, 1)``). A site is valid when the factors are exactly ``v^+1 * ||v||^-1 *
g^+1`` with the norm taken of that same ``v`` (or ``v`` laid out as the norm reduces it: ``g *
T(v) / ||T(v)||``), or ``v^+1 * ||v||^-1`` alone: the gain-less form (``F.normalize`` of a
weight, cosine classifiers, normalized codebooks), folded alike and reported as such. A
norm of an ``x`` not computed from constants normalizes an activation and is no site at all,
also times a constant (ScaleNorm's ``g * x / ||x||``), unless ``x`` is a weight fed at run time:
a graph input whose product a layer reads at a weight's input. This covers every association
and operand order (``(v/n)*g``, ``v*(g/n)``, ``(g*v)/n``, ``g*v*(1/n)`` ...) with one rule; a
constant 1 of one element is no factor (``torch.rsqrt`` written ``Div(1, Sqrt(...))``). A
norm that feeds several products (one ``ReduceL2`` node merged by the exporter for two
weights) gives a site for each.

The norm factor is recognised by ``wnpass.onnx.norms`` (every way of writing ``||v||``). ``v``
reaches the product as itself or behind ``Cast``; ``g`` may also come through ``Reshape``/
``Unsqueeze``/``Squeeze``/``Transpose``/``Identity`` of a constant.

Below the root, a single-use chain of layout ops (``Transpose``, ``Reshape``, ``Cast``,
``Identity``, ``Unsqueeze``, ``Squeeze``, ``Flatten``) towards the consumer is folded too.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Iterator, Sequence, Set

import numpy as np
import onnx_ir as ir

from wnpass.onnx import evaluate as ev
from wnpass.onnx.graphs import (
    const_tensor,
    graphs_of,
    run_time_values,
    shadowed_in_cone,
    walk_cone,
)
from wnpass.onnx.norms import (
    Norm,
    as_norm,
    attr_int,
    norm_source,
    producer,
    small_constant,
    strip_cast,
    sum_of_squares_source,
)
from wnpass.onnx.shapes import shape_of
from wnpass.onnx.types import cast_to

__all__ = [
    "Site",
    "behind_layout",
    "declined_targets",
    "describe_consumer",
    "find_sites",
    "fold_order",
    "is_constant_cone",
    "quantized_source",
    "seed_source",
    "static_shape",
]

logger = logging.getLogger(__name__)

_SEEDS = frozenset({"ReduceL2", "ReduceSumSquare", "ReduceSum", "LpNormalization"})
# Ops that carry a norm value unchanged in meaning towards the product (forward walk).
_NORM_WRAPPERS = frozenset(
    {"Sqrt", "Pow", "Max", "Clip", "Add", "Cast", "Reciprocal", "Unsqueeze", "Reshape", "Expand"}
    | {"Transpose", "Identity"}
)
_PRODUCT_OPS = frozenset({"Mul", "Div"})
# Ops through which a constant leaf (v or g) may reach the product.
_CONST_PASSTHROUGH = frozenset({"Cast", "Reshape", "Unsqueeze", "Squeeze", "Transpose", "Identity"})
# Ops between the product and its consumer that are folded with the site.
_LAYOUT_OPS = frozenset(
    {"Transpose", "Reshape", "Cast", "Identity", "Unsqueeze", "Squeeze", "Flatten"}
)
# Ops the report looks through to name the op that really consumes the weight.
_REPORT_THROUGH = _LAYOUT_OPS | {"Slice", "Concat", "Split", "Expand"}


@dataclasses.dataclass
class Site:
    """One weight-norm site: where it is, what it is made of, and whether it can be folded."""

    graph: ir.Graph | ir.Function
    root: ir.Value  # the product g * v / ||v||
    # the value replaced by the folded weight (root, or after layout ops); of a site declined
    # for a gain fed at run time, that product (the weight its consumers read)
    target: ir.Value
    v: ir.Value | None = None
    g: ir.Value | None = None
    norm: Norm | None = None
    layout: tuple[str, ...] = ()
    reason: str | None = None  # why it cannot be folded; None when it can
    # The product's factors as they appear in the graph: v (maybe behind a Cast), g (None for
    # the gain-less form ``v / ||v||``), the norm
    # value (None for LpNormalization, whose norm is implicit), and whether that value divides
    # (``||v||``) or multiplies (``||v||**-1``, as in ``Pow(sumsq, -0.5)``).
    factors: tuple[ir.Value, ir.Value | None, ir.Value | None, bool] | None = None
    # The Casts inside the product tree (of a product, not of a leaf): each rounds there, so
    # the weight is not the factors multiplied and rounded once; the evaluator does them. Also
    # the reshapes of a part of the product (``(g / ||v||).view(-1, 1, 1)``), which it lays out.
    casts: tuple[ir.Node, ...] = ()
    # The shape a factor (g, the norm) takes in the product where a reshape of a part of the
    # product gives it another than its own: ``g / ||v||`` of [C] viewed as [C, 1, 1] (t316)
    reshaped: dict[ir.Value, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    # The tensor the norm's reduction reads (v behind layout ops, for ``norm.layout``).
    reduced: ir.Value | None = None
    # A site whose v or g is computed by this other site (a weight normalized twice): it
    # can be folded once that one is, from its folded weight (``FoldWeightNormPass``).
    after: Site | None = None
    # ``C / ||v||`` with ``C`` a constant of v's shape, not v: ``g * v / ||v||`` whose ``g * v``
    # the exporter computed into one initializer (TorchScript's constant folding)
    premultiplied: bool = False
    # the graph input (no initializer behind it) that v is, through layout ops, for a site
    # declined: a weight whose direction the graph's caller gives it at run time
    fed_by: str | None = None

    @property
    def foldable(self) -> bool:
        return self.reason is None

    @property
    def gainless(self) -> bool:
        """``w = v / ||v||``: no gain (F.normalize of a weight, normalized codebooks)."""
        return self.factors is not None and self.factors[1] is None and not self.premultiplied

    @property
    def form(self) -> str:
        """A short description of how the site is written."""
        if self.norm is None:
            return "?"
        parts = [self.norm.kind]
        if self.gainless or self.premultiplied:
            parts.insert(0, "gain-less" if self.gainless else "g*v premultiplied")
        if self.norm.eps is not None:
            parts.append(f"eps={self.norm.eps:g}")
        if self.layout:
            parts.append("->" + "->".join(self.layout))
        return " ".join(parts)

    def axes(self) -> list[int] | str | None:
        """Reduction axes, non-negative; ``None`` for a whole-tensor norm; in words where they
        are no axes of v or not known (:data:`NOT_AXES_OF_V`, :data:`AXES_UNKNOWN`)."""
        if self.norm is None:
            return AXES_UNKNOWN
        if self.norm.layout:
            return self._axes_through_layout()
        if self.norm.axes is None:
            return None
        rank = _rank(self.norm.v)
        if rank is None or any(not -rank <= a < rank for a in self.norm.axes):
            return list(self.norm.axes)  # as written: out of range, the site is declined
        axes = sorted({a % rank for a in self.norm.axes}) if rank else []
        return None if len(axes) == rank and rank > 1 else axes

    def _axes_through_layout(self) -> list[int] | str | None:
        """The axes of v that a norm of reshaped or transposed v reduces, found by running the
        graph's layout ops on the element indices of v: an axis is reduced when the elements
        along it fall in one norm. ``None`` for the whole tensor, or when the norm's groups
        are no set of axes of v (a reshape that splits an axis and reduces a part of it).

        That costs a few index arrays of v's size, so a v of more than ``_INDEXED_AXES``
        elements, or a chain the indices cannot go through unchanged (a ``Cast`` to float),
        is read from the norm's shape instead (:meth:`_axes_from_norm`)."""
        v = None if self.norm is None else const_tensor(self.norm.v)
        if v is None or self.reduced is None or self.norm is None or self.norm.axes is None:
            return AXES_UNKNOWN
        shape = tuple(int(d) for d in v.shape.numpy())
        if math.prod(shape) > _INDEXED_AXES:
            return self._axes_from_norm()
        laid_out = _laid_out(self.reduced, v)
        if laid_out is None:
            return AXES_UNKNOWN
        if laid_out.dtype != np.int64:  # a Cast on the way: not indices any more
            return self._axes_from_norm()
        return _reduced_axes(laid_out, self.norm.axes, shape)

    def _axes_from_norm(self) -> list[int] | str | None:
        """The axes where the norm, as it divides v (broadcast against it), has size 1: the
        reduced ones, as the exporters lay a norm of v's own units out. Unknown where the
        norm's shape is not known, is no broadcast of v's, or divides a laid-out ``T(v)``
        instead of v (g's shape says nothing here: a gain of shape ``[1, 1]`` beside a norm
        of each column is no whole-tensor norm)."""
        v = None if self.v is None else const_tensor(self.v)
        norm = None if self.factors is None else self.factors[2]
        shape = None if norm is None else static_shape(norm)
        if v is None or shape is None or len(shape) != len(v.shape):
            return AXES_UNKNOWN
        assert self.factors is not None
        if strip_cast(self.factors[0]) is not self.v and not self.premultiplied:
            # it divides T(v): its axes are T(v)'s
            return AXES_UNKNOWN
        v_shape = tuple(int(d) for d in v.shape.numpy())
        if any(size not in (1, d) for size, d in zip(shape, v_shape, strict=True)):
            return AXES_UNKNOWN
        axes = [a for a, size in enumerate(shape) if size == 1]
        return None if len(axes) == len(v_shape) else axes

    def consumers(self) -> list[str]:
        """The op types that consume the weight, looking through layout ops and slices."""
        found: list[str] = []
        seen: set[int] = set()
        stack = [self.target]
        while stack:
            value = stack.pop()
            for use in value.uses():
                node = use.node
                if id(node) in seen:
                    continue
                seen.add(id(node))
                if value is self.root and _climb_step(use) is not None:
                    continue  # a step of another site's product (g * v / ||v||), no consumer
                if node.op_type in _REPORT_THROUGH:
                    stack.extend(node.outputs)
                elif (dequantized := _dequantized(node)) is not None:
                    stack.append(dequantized)  # a QDQ model's weight, quantized
                else:
                    found.append(describe_consumer(node, use.idx))
        if self.target.is_graph_output():
            found.append("graph output")
        return sorted(set(found))


def describe_consumer(node: ir.Node, index: int) -> str:
    """How the report names the op that reads a weight as its input ``index``: a Gemm's A and
    B with the attribute that transposes them, its C (the bias, which nothing transposes) as
    ``Gemm(C)``."""
    if node.op_type == "Gemm" and node.domain in ("", "ai.onnx"):
        if index == 2:
            return "Gemm(C)"
        trans = "transB" if index == 1 else "transA"
        attr = node.attributes.get(trans)
        return f"Gemm({trans}={attr.value if attr is not None else 0})"
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


# Site.axes in words, where it is no list of v's axes (None is the whole tensor)
NOT_AXES_OF_V = "not axes of v"  # the norm's groups, through the layout, are no set of axes
AXES_UNKNOWN = "?"  # no norm was read, or what the layout ops do to v's axes is not known

# The most elements of v whose axes are found by running the layout ops on their indices
# (Site._axes_through_layout): 2**20, 8 MiB an index array.
_INDEXED_AXES = 2**20


def _laid_out(reduced: ir.Value, v: ir.TensorProtocol) -> np.ndarray | None:
    """The indices of v's elements as the layout ops between v and ``reduced`` (the tensor a
    norm's reduction reads) lay them out; None where the evaluator cannot run those ops. Of
    another dtype than int64 where a Cast on the way converts them."""
    shape = tuple(int(d) for d in v.shape.numpy())
    try:
        program = ev.compile_cone(reduced)
        indices = ir.tensor(np.arange(math.prod(shape), dtype=np.int64).reshape(shape))
        program.slots = [indices if slot is v else slot for slot in program.slots]
        return np.asarray(program.run()[0])
    except (ev.NotExact, ValueError, IndexError, TypeError):
        return None


# Ops of a norm expression above its reduction that move its elements (run on the norm's
# indices by _misbroadcast), and those that only change their values, one operand the norm
# and any other a constant scalar (an epsilon, an exponent), read there as Identity.
_NORM_MOVES = frozenset({"Identity", "Unsqueeze", "Squeeze", "Reshape", "Expand", "Transpose"})
_NORM_VALUE_OPS = frozenset({"Cast", "Reciprocal", "Sqrt", "Pow", "Max", "Add", "Clip"})
_REDUCTIONS = frozenset({"ReduceL2", "ReduceSumSquare", "ReduceSum"})


def _misbroadcast(
    norm_value: ir.Value,
    numerator: ir.Value,
    norm: Norm,
    reduced: ir.Value | None,
    reshaped: tuple[int, ...] | None = None,
) -> bool:
    """Whether the norm ``norm_value`` (of ``norm``, reducing ``reduced``), broadcast against
    ``numerator`` (v, or v laid out as the reduction reads it) as the graph broadcasts it, does
    not divide each unit of the numerator by that unit's own norm: ``g * v / ReduceL2(v,
    axes=[1], keepdims=0)`` of a square v divides ``v[i, j]`` by the norm of row ``j`` (the
    [4] norm broadcasts along the last axis), ``v / ReduceL2(T(v), axes=[0])`` ``v[i, j]`` by
    that of row ``j`` too. Such a product is no weight norm at any axes of v (t158).

    Found by running the ops above the reduction on the units' indices in place of their
    norms, and comparing them, broadcast as the graph broadcasts the norm, with the unit each
    element of the numerator falls in. False where that is not known: a whole-tensor norm (one
    value, whatever its shape), a v of more than ``_INDEXED_AXES`` elements, ops the indices
    cannot go through, a norm that does not broadcast to the numerator's shape."""
    v = const_tensor(norm.v)
    if norm.axes is None or v is None or reduced is None:
        return False
    shape = tuple(int(d) for d in v.shape.numpy())
    size = math.prod(shape)
    if size > _INDEXED_AXES:
        return False
    laid_out = (
        _laid_out(reduced, v) if norm.layout else np.arange(size, dtype=np.int64).reshape(shape)
    )
    if laid_out is None or laid_out.dtype != np.int64 or laid_out.size != size:
        return False
    axes = {a % laid_out.ndim for a in norm.axes} if laid_out.ndim else set()
    kept = [1 if a in axes else d for a, d in enumerate(laid_out.shape)]
    units = math.prod(kept)
    unit = np.broadcast_to(np.arange(units, dtype=np.int64).reshape(kept), laid_out.shape)
    if norm.layout and strip_cast(numerator) is not strip_cast(reduced):
        of_v = np.empty(laid_out.size, dtype=np.int64)  # the numerator is v: units in its order
        of_v[laid_out.reshape(-1)] = unit.reshape(-1)
        unit = of_v.reshape(shape)
    try:
        program = ev.compile_cone(norm_value)
        slots = program.slots
        (at,) = [i for i, s in enumerate(slots) if isinstance(s, ev.Step) and s.op in _REDUCTIONS]
        step = slots[at]
        assert isinstance(step, ev.Step)
        # the reduction's result, each unit's norm, as the unit's index
        out = [d for a, d in enumerate(kept) if a not in axes or step.attributes.get("keepdims", 1)]
        slots[at] = ir.tensor(np.arange(units, dtype=np.int64).reshape(out))
        moved = {at}  # the slots that hold the norm's indices
        for i in range(at + 1, len(slots)):
            step = slots[i]
            if not isinstance(step, ev.Step) or not moved.intersection(step.inputs):
                continue
            if step.op in _NORM_MOVES and moved.isdisjoint(step.inputs[1:]):
                moved.add(i)
            elif step.op in _NORM_VALUE_OPS and len(moved.intersection(step.inputs)) == 1:
                (j,) = moved.intersection(step.inputs)
                slots[i] = ev.Step("Identity", {}, (j,), 0, 1, step.name)
                moved.add(i)
            else:
                return False
        divides = np.asarray(program.run()[0])
        if reshaped is not None:  # as a reshape of a part of the product lays it out
            divides = divides.reshape(reshaped)
    except (ev.NotExact, ValueError, IndexError, TypeError):
        return False
    try:
        if np.broadcast_shapes(divides.shape, unit.shape) != unit.shape:
            return False
    except ValueError:
        return False  # no broadcast: the graph cannot run it
    return not np.array_equal(np.broadcast_to(divides, unit.shape), unit)


def _reduced_axes(
    laid_out: np.ndarray, axes: tuple[int, ...], shape: tuple[int, ...]
) -> list[int] | str | None:
    """The axes of v (``shape``) reduced by reducing ``axes`` of ``laid_out``, the indices of
    v's elements as the reduction reads them; None for all, NOT_AXES_OF_V for no set of axes."""
    if laid_out.size != math.prod(shape) or not laid_out.ndim or not laid_out.size:
        return AXES_UNKNOWN  # an empty v has no element to tell its units by
    reduced = {a % laid_out.ndim for a in axes}
    kept = [size if a not in reduced else 1 for a, size in enumerate(laid_out.shape)]
    groups = np.broadcast_to(np.arange(math.prod(kept)).reshape(kept), laid_out.shape)
    group_of = np.empty(laid_out.size, dtype=np.int64)
    group_of[laid_out.reshape(-1)] = groups.reshape(-1)
    group_of = group_of.reshape(shape)
    found = [a for a in range(len(shape)) if (group_of == group_of.take([0], axis=a)).all()]
    if math.prod(kept) != math.prod(s for a, s in enumerate(shape) if a not in found):
        return NOT_AXES_OF_V  # the norm's groups are not the slices along a set of axes of v
    return None if len(found) == len(shape) else found


def static_shape(value: ir.Value) -> tuple[int, ...] | None:
    """The shape of ``value``: a constant's, a small constant expression's (g behind a
    ``Reshape`` or ``Unsqueeze``), or the graph's declared one when every dimension is known."""
    const = const_tensor(value)
    if const is not None:
        return tuple(int(d) for d in const.shape.numpy())
    if (quantized := quantized_source(value)) is not None:  # of the same shape, by the ops'
        return static_shape(quantized)  # definitions
    small = small_constant(value)
    if small is not None:
        return tuple(small.shape)
    shape = value.shape
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return tuple(int(d) for d in shape)  # type: ignore[arg-type]


def _rank(value: ir.Value) -> int | None:
    const = const_tensor(value)
    if const is not None:
        return len(const.shape)
    return None if value.shape is None else len(value.shape)


# ---------------------------------------------------------------- products


@dataclasses.dataclass
class _Factor:
    kind: str  # "leaf" or "norm"
    value: ir.Value
    exponent: int
    norm: Norm | None = None
    divides: bool = True  # for a norm factor: the value divides the product (else multiplies)
    # the reshapes above it in the product, innermost first: (their input's, output's shape);
    # a chain of them as one
    moves: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = ()


# Reshapes of a part of the product that only add or drop axes of size 1 (a view of a unit's
# g / ||v|| as [C, 1, 1]): the product's factors keep their elements and order
_UNIT_MOVES = frozenset({"Reshape", "Unsqueeze", "Squeeze"})


# the most moves in a row looked through (``.squeeze(1).unsqueeze(1)`` is two), and the most
# read from one, however they branch
_MOVE_CHAIN, _MOVE_WALK = 16, 256


def _unit_move(node: ir.Node) -> tuple[list[ir.Node], tuple[int, ...], tuple[int, ...]] | None:
    """Where ``node`` is a ``Reshape``, ``Unsqueeze`` or ``Squeeze`` of a product (``Mul``,
    ``Div``, ``Reciprocal``), or the last of a chain of such moves down to one
    (``.squeeze(1).unsqueeze(1)``), that adds or drops axes of size 1 only: the chain's nodes,
    and the shapes the product is moved between, both known; None otherwise. No move
    reorders elements, so a chain is one move, from its first input's shape to its last
    output's (the same shape where its moves cancel)."""
    chain: list[ir.Node] = []
    current = node
    for _ in range(_MOVE_CHAIN):
        if current.op_type not in _UNIT_MOVES or current.domain not in ("", "ai.onnx"):
            return None
        chain.append(current)
        source = current.inputs[0]
        made = None if source is None else source.producer()
        if source is None or made is None or made.domain not in ("", "ai.onnx"):
            return None
        if made.op_type in ("Mul", "Div", "Reciprocal"):
            before, after = shape_of(source), shape_of(node.outputs[0])
            if before is None or after is None:
                return None
            same = [d for d in before if d != 1] == [d for d in after if d != 1]
            return (chain, before, after) if same else None
        current = made
    return None


def _moved_shapes(factors: list[_Factor]) -> dict[ir.Value, tuple[int, ...]] | str:
    """The shape each factor under a reshape takes in the product: its own, reshaped as the
    reshapes above it reshape the product there (a factor of one element broadcasts, as
    before). A reason where a factor has neither the shape a reshape reads nor one element
    (it broadcast inside the reshaped part)."""
    shapes: dict[ir.Value, tuple[int, ...]] = {}
    for factor in factors:
        if not factor.moves:
            continue
        shape = shape_of(factor.value)
        for before, after in factor.moves:
            if shape is None:
                break
            if shape == before:
                shape = after
            elif math.prod(shape) != 1:
                shape = None
        if shape is None:
            return (
                "unsupported form: a reshape of a part of the product whose factors differ in shape"
            )
        shapes[factor.value] = shape
    return shapes


def _factors(
    value: ir.Value,
    exponent: int,
    out: list[_Factor],
    casts: list[ir.Node],
    quantizers: list[ir.Node],
) -> str | None:
    """Flatten the product tree under ``value`` into ``out``; a reason string on failure.
    The Casts it looks through (algebraically nothing, numerically a rounding) go to ``casts``,
    the ``QuantizeLinear`` of each ``DequantizeLinear(QuantizeLinear(x))`` it looks through (a
    step of the product quantized: a QDQ model's) to ``quantizers``.

    A value below ``value`` that a norm normalizes is a leaf (a weight normalized twice: the
    inner site's weight is this site's v, not a part of this product).

    Iterative (a worklist, not recursion), in the order a recursive walk would visit.
    """
    top = value
    moves: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = ()  # above the value popped
    stack = [(value, exponent, moves)]
    while stack:
        value, exponent, moves = stack.pop()
        node = value.producer()
        quantizer = _quantizer_of(value)
        if quantizer is not None and (value is top or not _normalized(value)):
            assert quantizer.inputs[0] is not None
            stack.append((quantizer.inputs[0], exponent, moves))
            quantizers.append(quantizer)
            continue
        if (
            node is not None
            and node.domain in ("", "ai.onnx")
            and (value is top or not _normalized(value))
        ):
            op, inputs = node.op_type, node.inputs
            if op in ("Mul", "Div") and len(inputs) == 2 and None not in inputs:
                a, b = inputs
                assert a is not None and b is not None
                stack.append((b, exponent if op == "Mul" else -exponent, moves))
                stack.append((a, exponent, moves))
                continue
            if op == "Reciprocal" and inputs[0] is not None:
                stack.append((inputs[0], -exponent, moves))
                continue
            if op in ("Cast", "Identity") and producer(
                inputs[0], "Mul", "Div", "Reciprocal", "LpNormalization"
            ):
                assert inputs[0] is not None
                stack.append((inputs[0], exponent, moves))
                if op == "Cast":
                    casts.append(node)
                continue
            if (move := _unit_move(node)) is not None:
                chain, before, after = move
                source = chain[-1].inputs[0]
                assert source is not None
                if before != after:  # moves that cancel leave every factor as it was
                    moves = ((before, after), *moves)  # innermost first
                stack.append((source, exponent, moves))
                casts.extend(chain)  # the evaluator lays them out as the graph does
                continue
            if op == "LpNormalization" and inputs[0] is not None:
                if attr_int(node, "p", 2) != 2:
                    return "LpNormalization with p != 2 is not a weight norm"
                laid = strip_cast(inputs[0])  # v, or v behind layout ops: T(v)
                v, axes, layout = norm_source(laid, (attr_int(node, "axis", -1),))
                lp = Norm(v, axes, "LpNormalization(p=2)", layout=layout)
                out.append(_Factor("leaf", inputs[0], exponent, moves=moves))
                out.append(_Factor("norm", laid, -exponent, lp, moves=moves))
                continue
        norm = as_norm(value)
        if isinstance(norm, str):
            return norm
        if norm is not None:
            divides = exponent < 0
            out.append(_Factor("norm", value, exponent * norm[1], norm[0], divides, moves))
        else:
            out.append(_Factor("leaf", value, exponent, moves=moves))
    return None


# The domains of the QuantizeLinear and DequantizeLinear a QDQ model holds: ONNX's, and ONNX
# Runtime's own (its quantizer's UseQDQContribOps, for 16-bit and 4-bit types)
_QDQ_DOMAINS = frozenset({"", "ai.onnx", "com.microsoft"})


def _qdq(value: ir.Value | None, op: str) -> ir.Node | None:
    """The producer of ``value`` where it is an ``op`` (``QuantizeLinear``,
    ``DequantizeLinear``) of a QDQ domain; else None."""
    node = None if value is None else value.producer()
    return node if node is not None and node.op_type == op and node.domain in _QDQ_DOMAINS else None


def quantized_source(value: ir.Value) -> ir.Value | None:
    """What a ``DequantizeLinear`` that gives ``value`` back dequantizes: the quantized
    tensor, or, where a ``QuantizeLinear`` quantized it in the graph (``AddQDQPairToWeight``),
    that one's input; None where no ``DequantizeLinear`` gives ``value``."""
    dequantizer = _qdq(value, "DequantizeLinear")
    if dequantizer is None or not dequantizer.inputs:
        return None
    quantizer = _quantizer_behind(value)
    return quantizer.inputs[0] if quantizer is not None else dequantizer.inputs[0]


def _quantizer_behind(value: ir.Value) -> ir.Node | None:
    """The ``QuantizeLinear`` whose output the ``DequantizeLinear`` that gives ``value`` reads;
    None where there is no such pair."""
    dequantizer = _qdq(value, "DequantizeLinear")
    quantized = None if dequantizer is None or not dequantizer.inputs else dequantizer.inputs[0]
    quantizer = _qdq(quantized, "QuantizeLinear")
    return quantizer if quantizer is not None and quantizer.inputs else None


def _dequantized(quantizer: ir.Node) -> ir.Value | None:
    """The output of the ``DequantizeLinear`` that alone reads ``quantizer``'s output, where
    ``quantizer`` is a ``QuantizeLinear`` with a constant scale and zero point: a QDQ model's
    fake quantization of the value it reads, read as that value quantized. None otherwise."""
    if quantizer.op_type != "QuantizeLinear" or quantizer.domain not in _QDQ_DOMAINS:
        return None
    if not all(is_constant_cone(side) for side in quantizer.inputs[1:] if side is not None):
        return None
    quantized = quantizer.outputs[0]
    uses = quantized.uses()
    if len(uses) != 1 or quantized.is_graph_output():
        return None
    (use,) = uses
    node = use.node
    if use.idx != 0 or node.op_type != "DequantizeLinear" or node.domain not in _QDQ_DOMAINS:
        return None
    return node.outputs[0]


def _quantized_step(quantizer: ir.Node) -> ir.Value | None:
    """The value :func:`_dequantized` gives back, where ``quantizer`` quantizes a computed
    value (a step of a product, or the norm: ONNX Runtime's static quantizer puts one between
    ``g / ||v||`` and ``v``, and, told to quantize ``Div``, between ``||v||`` and the ``Div``,
    t311). None otherwise: an initializer quantized is a quantized constant
    (:func:`_quantized_reason`)."""
    step = quantizer.inputs[0] if quantizer.inputs else None
    if step is None or step.producer() is None:
        return None
    return _dequantized(quantizer)


def _quantizer_of(value: ir.Value) -> ir.Node | None:
    """The ``QuantizeLinear`` whose step of a product ``value`` gives back quantized
    (:func:`_quantized_step`); else None."""
    quantizer = _quantizer_behind(value)
    return quantizer if quantizer and _quantized_step(quantizer) is value else None


def _uses_through(value: ir.Value, through: Set[str]) -> Iterator[ir.Node]:
    """Every node that reads ``value``, or the output of a ``through`` op (of the standard
    domain) that reads it as its first input (a ``Concat``: as any), and so on: its readers
    behind them."""
    stack, seen = [value], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        for use in current.uses():
            node = use.node
            yield node
            first = use.idx == 0 or node.op_type == "Concat"
            if node.op_type in through and node.domain in ("", "ai.onnx") and first:
                stack.extend(node.outputs)


def _normalized(value: ir.Value) -> bool:
    """Whether a norm reads ``value`` (behind Cast and layout ops): it is some site's v."""
    for node in _uses_through(value, _CONST_PASSTHROUGH | {"Flatten"}):
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in ("ReduceL2", "ReduceSumSquare", "LpNormalization"):
            return True
        if node.op_type in ("Mul", "Pow") and any(
            user.node.op_type == "ReduceSum" and sum_of_squares_source(user.node)
            for user in node.outputs[0].uses()
        ):
            return True
    return False


def _reduced_input(norm_value: ir.Value) -> ir.Value | None:
    """The tensor that the reduction of the norm expression ``norm_value`` reads."""
    for current in walk_cone(norm_value):
        if (node := producer(current, "ReduceL2", "ReduceSumSquare")) is not None:
            return node.inputs[0]
        if (node := producer(current, "ReduceSum")) is not None:
            source = node.inputs[0]
            square = None if source is None else source.producer()
            return None if square is None else square.inputs[0]
    return None


def _normalised(leaf: ir.Value, v: ir.Value, reduced: ir.Value | None) -> bool:
    """Whether ``leaf`` (behind Cast) is the tensor a norm normalises: ``v`` itself, or the
    very tensor its reduction reads (``g * T(v) / ||T(v)||``: a weight-norm site of ``T(v)``,
    which the fold evaluates as the graph computes it)."""
    source = strip_cast(leaf)
    return source is v or (reduced is not None and source is strip_cast(reduced))


def _one(leaf: ir.Value, normed: Set[ir.Value]) -> bool:
    """Whether ``leaf`` is a constant 1 of one element and of no more dimensions than a
    normalized tensor: a factor that changes neither the value nor the shape (``rsqrt``
    exported as ``Div(1, Sqrt(...))``, a gain of exactly 1), not a second gain (t316)."""
    one = small_constant(leaf)
    return (
        one is not None
        and one.size == 1
        and float(one.reshape(-1)[0]) == 1.0
        and any((shape := static_shape(v)) is not None and one.ndim <= len(shape) for v in normed)
    )


def _copied(leaves: list[_Factor], copy: ir.Value) -> ir.Value | None:
    """The product's one leaf, a constant, where the whole-tensor norm reads another constant
    that holds its elements in the same order, bit for bit (``v / ||C||``, as TorchScript's
    constant folding leaves ``v / v.norm()``: ``Reshape(v, [-1])`` computed into a second
    initializer): the weight is v's, normalized; None otherwise."""
    if len(leaves) != 1 or leaves[0].exponent != 1:
        return None
    v = strip_cast(leaves[0].value)
    a, b = const_tensor(v), const_tensor(copy)
    if a is None or b is None or a.dtype != b.dtype or a.size != b.size:
        return None
    return (
        v
        if np.array_equal(
            a.numpy().reshape(-1).view(np.uint8), b.numpy().reshape(-1).view(np.uint8)
        )
        else None
    )


def _premultiplied(leaves: list[_Factor], norm: Norm) -> bool:
    """Whether the product's one leaf is a constant of ``v``'s shape, multiplying: ``C``
    of ``C / ||v||``, as TorchScript's constant folding leaves ``g * v / ||v||`` (its ``g * v``
    computed into one initializer). Of a norm over every element of ``v``, of as many
    elements: that folding also stores ``v``'s flattened copy that ``v.norm()`` reads (t316)."""
    if len(leaves) != 1 or leaves[0].exponent != 1:
        return False
    shape, of_v = static_shape(strip_cast(leaves[0].value)), static_shape(norm.v)
    if shape is None or of_v is None:
        return False
    same = shape == of_v or (norm.axes is None and math.prod(shape) == math.prod(of_v))
    return same and bool(is_constant_cone(leaves[0].value))


def _constant_reason(value: ir.Value, role: str, scope: str = "graph") -> str | None:
    """Why ``value`` (through pass-through ops) is not a constant; None when it is. ``scope``:
    what its inputs are the inputs of (``graph``, ``function``)."""
    # (value, role, what to say instead when it fails: for the shape inputs of reshapes)
    work: list[tuple[ir.Value, str, str | None]] = [(value, role, None)]
    while work:
        value, what, instead = work.pop()
        while True:
            if value.is_graph_input():
                return instead or f"{what} '{value.name}' is a {scope} input"
            if const_tensor(value) is not None:
                break
            if instead is not None and small_constant(value) is not None:
                break  # a reshape's shape computed from constants: the value the graph uses
            node = producer(value, *_CONST_PASSTHROUGH)
            if node is None and value.producer() is not None:
                constant = is_constant_cone(value)
                if constant:
                    break  # Concat, Expand, Slice ... of constants: the evaluator computes it
                if constant is None:
                    return instead or (
                        f"{what} '{value.name}' is computed by more than {_CONSTANT_CONE} "
                        "values: too many to read as a constant"
                    )
            if node is None:
                source = value.producer()
                how = (
                    f"computed by {source.op_type}"
                    if source is not None
                    else "an initializer named like a value of an enclosing scope"
                    if value.is_initializer()  # const_tensor refuses only those
                    else f"a {scope} input"
                )
                return instead or f"{what} '{value.name}' is not a constant ({how})"
            reshaped = instead or f"{what} '{value.name}' is reshaped by a non-constant"
            work.extend((extra, what, reshaped) for extra in node.inputs[1:] if extra is not None)
            assert node.inputs[0] is not None
            value = node.inputs[0]
    return None


def _cone_reason(value: ir.Value) -> str | None:
    """A reason if the cone of ``value`` holds what the evaluator cannot compute exactly."""
    for current in walk_cone(value):
        node = current.producer()
        if node is None or current.is_initializer():
            continue
        if node.op_type not in ev.EVALUABLE_OPS or node.domain not in ("", "ai.onnx"):
            return f"{node.op_type} in the weight computation is not supported"
        if any(attr.is_ref() for attr in node.attributes.values()):
            return f"{node.op_type} takes an attribute from the function's caller"
    return None


def _roots_of(seed: ir.Node) -> list[ir.Value]:
    """Walk forward from a norm seed to the top of each product it feeds.

    A norm value used more than once (the dynamo exporter merges identical norm nodes: one
    ``ReduceL2(v)`` feeding ``Div(v, n)`` and ``Div(v, Clip(n, eps))``, or two gains' ``Div(g_i,
    n)``) is followed along every use: each product it reaches is a site of its own, and the
    shared nodes go when the last of them is folded.
    """
    if seed.op_type == "LpNormalization":
        return _climb(seed.outputs[0])
    roots: list[ir.Value] = []
    stack, seen = [seed.outputs[0]], set()
    while stack:
        value = stack.pop()
        if value in seen:
            continue
        seen.add(value)
        for use in value.uses():
            node = use.node
            if (dequantized := _quantized_step(node)) is not None:
                stack.append(dequantized)  # the norm quantized (QDQ): declined as such
                continue
            if node.domain not in ("", "ai.onnx"):
                continue
            if node.op_type in _PRODUCT_OPS:
                roots.extend(_climb(node.outputs[0]))
            elif node.op_type in _NORM_WRAPPERS:
                stack.append(node.outputs[0])
    return list(dict.fromkeys(roots))


def _climb(value: ir.Value) -> list[ir.Value]:
    """The tops of the product trees above ``value``: climb (through Cast) each product that
    uses it with constant other operands; an elementwise Mul by an activation is a consumer.
    Every value on the way that is also used otherwise (read by a consumer, a graph output)
    is a top too: ``v / ||v||`` read as it is and times two gains is three weights."""
    tops: list[ir.Value] = []
    stack, seen = [value], set()
    while stack:
        value = stack.pop()
        if value in seen:
            continue
        seen.add(value)
        uses = value.uses()
        steps = [up for use in uses if (up := _climb_step(use)) is not None]
        if value.is_graph_output() or len(steps) < len(uses) or not uses:
            tops.append(value)
        stack.extend(reversed(steps))
    return tops


def _climb_step(use: tuple[ir.Node, int]) -> ir.Value | None:
    """The value one step up the product tree from ``use`` (a node and the index of its input
    the value is): a product's (:func:`_product_step`), or a Cast's that such a product reads
    (its other uses make it a top of its own, in :func:`_climb`); None where the node
    consumes the value."""
    if (up := _product_step(use)) is not None:
        return up
    node, _ = use
    if node.op_type == "Cast" and node.domain in ("", "ai.onnx"):
        cast = node.outputs[0]
        if any(_product_step(after) for after in cast.uses()):
            return cast
    if node.op_type in _UNIT_MOVES and node.domain in ("", "ai.onnx") and _moves_to_product(node):
        return node.outputs[0]  # a chain of reshapes that only adds or drops axes of size 1
    dequantized = _quantized_step(node)
    if dequantized is not None and any(_product_step(after) for after in dequantized.uses()):
        return dequantized  # a step of the product quantized (QDQ): declined as such
    return None


def _moves_to_product(move: ir.Node) -> bool:
    """Whether ``move`` (a ``Reshape``, ``Unsqueeze`` or ``Squeeze``) is the first of a chain
    of at most :data:`_MOVE_CHAIN` such moves that a product step reads, the chain one move
    that only adds or drops axes of size 1 (:func:`_unit_move` of its last: ``[4, 1] -> [2,
    2] -> [4, 1]`` is one, though its first step alone is not). At most :data:`_MOVE_WALK`
    moves are read, however they branch."""
    stack, seen = [(move, 1)], set[ir.Node]()
    while stack and len(seen) < _MOVE_WALK:
        current, depth = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        unit: bool | None = None  # whether the chain down from it is one: read once, if asked
        for use in current.outputs[0].uses():
            node = use.node
            if node.op_type in _PRODUCT_OPS and node.domain in ("", "ai.onnx"):
                unit = (_unit_move(current) is not None) if unit is None else unit
                if unit and _product_step(use) is not None:  # its constant test, last: costly
                    return True
            if (
                depth < _MOVE_CHAIN
                and node.op_type in _UNIT_MOVES
                and node.domain in ("", "ai.onnx")
            ):
                stack.append((node, depth + 1))
    return False


def _product_step(use: tuple[ir.Node, int]) -> ir.Value | None:
    """The product's value where ``use`` is a ``Mul``/``Div`` whose other operands are
    computed from constants: a step of a weight's product tree, not its consumer."""
    node, index = use
    if node.domain not in ("", "ai.onnx") or node.op_type not in _PRODUCT_OPS:
        return None
    return node.outputs[0] if _others_constant(node, index) else None


def _mul_use(root: ir.Value) -> tuple[ir.Node, int] | None:
    """The Mul that is ``root``'s only use, and the input ``root`` is of it."""
    uses = root.uses()
    if len(uses) != 1:
        return None
    node, index = next(iter(uses))
    return (node, index) if node.op_type == "Mul" else None


def _runtime_gain(root: ir.Value) -> tuple[ir.Value, ir.Value] | None:
    """The non-constant operand of the Mul that ``v / ||v||`` alone feeds, and that Mul's
    product; None where it feeds none, or multiplies a constant."""
    use = _mul_use(root)
    other = None if use is None else use[0].inputs[1 - use[1]]
    if use is None or other is None or is_constant_cone(other):
        return None
    return other, use[0].outputs[0]


# The inputs where PyTorch's exports put a layer's weight, and no activation: where a product
# of a norm of a value fed at run time is read as a weight. Not MatMul's, nor Gather's data:
# either may be an activation (attention's values, ``softmax(q k^T) @ x``; ``x[:, 0]``).
_WEIGHT_SLOTS: dict[str, tuple[int, ...]] = {
    "Conv": (1,),
    "ConvTranspose": (1,),
    "Gemm": (1,),
    "LSTM": (1, 2),
    "GRU": (1, 2),
    "RNN": (1, 2),
}


def _weight_fed_at_run_time(operands: Iterable[ir.Value], product: ir.Value) -> bool:
    """Whether ``product`` is a weight fed at run time rather than a norm of an activation (or
    a weight's norm times an activation): some of its ``operands`` is a graph or function input
    through layout ops, and a layer reads the product (through layout ops) at a weight's
    input."""
    return any(_is_run_time_input(v) for v in operands) and _at_weight_slot(product)


def _at_weight_slot(value: ir.Value) -> bool:
    """Whether a layer reads ``value``, through a single-use chain of layout ops, at a
    weight's input."""
    target, _ = _layout_chain(value)
    return any(
        use.node.domain in ("", "ai.onnx") and use.idx in _WEIGHT_SLOTS.get(use.node.op_type, ())
        for use in target.uses()
    )


def _read_as_weight(root: ir.Value) -> bool:
    """Whether a layer reads the product at ``root`` as its weight, or the product of it and
    a run-time value (``v / ||v||`` times a gain fed at run time)."""
    use = _mul_use(root)
    return _at_weight_slot(root) or (use is not None and _at_weight_slot(use[0].outputs[0]))


def _is_run_time_input(value: ir.Value) -> bool:
    """Whether ``value`` is a graph or function input, through layout ops (an initializer
    that a graph input overrides too)."""
    source = behind_layout(value)
    return source is not None and (source.is_graph_input() or not source.is_initializer())


def behind_layout(value: ir.Value) -> ir.Value | None:
    """The value that no node computes which ``value`` is, through layout ops; None where
    another op computes it."""
    node = value.producer()
    while node is not None:
        if node.op_type not in _LAYOUT_OPS or node.domain not in ("", "ai.onnx"):
            return None
        if not node.inputs or node.inputs[0] is None:
            return None
        value = node.inputs[0]
        node = value.producer()
    return value


def _fed_by(main: ir.Graph, v: ir.Value) -> str | None:
    """The name of the input of the model's ``main`` graph, with no initializer behind it,
    that ``v`` is through layout ops: the weight's direction is then what the model's caller
    gives it at run time (a filter passed in), which no fold can make a constant. None for an
    input of a function or a body (its caller's values, constants maybe: a Loop carrying an
    initializer in), and for an initializer that a graph input overrides (a weight with a
    value, which the file's user may replace)."""
    source = behind_layout(v)
    if source is None or source.graph is not main or not source.is_graph_input():
        return None
    return None if source.is_initializer() else source.name


def _others_constant(node: ir.Node, index: int) -> bool:
    """Whether every input of ``node`` but the one at ``index`` is computed from constants."""
    return all(
        is_constant_cone(value)
        for i, value in enumerate(node.inputs)
        if i != index and value is not None
    )


# The most values a cone read as constant may have: one past it is not (a value computed from
# an activation would otherwise walk the whole network back to its inputs).
_CONSTANT_CONE = 10_000


def is_constant_cone(value: ir.Value) -> bool | None:
    """Whether ``value`` is computed from constants only (no graph input, an initializer that
    one overrides included; no outer value), whatever its ops (whether the evaluator computes
    them is ``_cone_reason``'s to say). None (falsy) for a cone of more than
    :data:`_CONSTANT_CONE` values, not walked further. Which values a graph input feeds,
    whatever the cone's size, is ``run_time_values``'s to say."""
    for count, current in enumerate(walk_cone(value)):
        if count > _CONSTANT_CONE:
            return None
        if current.is_graph_input():
            return False
        if not current.is_initializer() and current.producer() is None:
            return False  # an outer-scope value that is not an initializer
    return True


def _unsupported(site: Site, why: str) -> Site | None:
    """A norm's product that is no ``v / ||v||`` times constants (``why``: the norm is not
    ``v``'s, or not to the power -1): where it is computed from constants, no site at all,
    but a weight computed from constants, which the cone fold folds where it can do so
    exactly and reports otherwise (a max-norm clamp, ``v * min(g / ||v||, 1)``, was a
    declined weight-norm site, and its export not deployable, t138); else the site, declined
    with the reason. ``v / ||v||`` times more than one constant is weight norm (a
    weight-normed weight scaled, ``lin.weight * 0.5``), a site declined as such."""
    if is_constant_cone(site.root):
        # a step of it quantized, the rest computed by quantized ops (QLinearMul(v, Q(g / ||v||))
        # of ONNX Runtime's QOperator format, t308), or the norm's input quantized (v through
        # QuantizeLinear/DequantizeLinear, ``op_types_to_quantize=["ReduceL2"]``, t313):
        # weight norm still run, declined as such
        quantizer = _quantizer_reading(site.root)
        if quantizer is None and (of_norm := _norm_quantizer(site)) is not None:
            quantizer, site.v = of_norm
        if quantizer is None:
            return None
        site.reason = _step_quantized(quantizer)
        return site
    site.reason = f"unsupported form: {why}"
    return site


def _norm_quantizer(site: Site) -> tuple[ir.Node, ir.Value] | None:
    """The ``QuantizeLinear`` of the tensor ``site``'s norm reads, where it reads a
    ``DequantizeLinear`` of one, and the v it quantizes (behind layout ops); else None."""
    quantizer = None if site.norm is None else _quantizer_behind(site.norm.v)
    step = None if quantizer is None else quantizer.inputs[0]
    if quantizer is None or step is None:
        return None
    return quantizer, behind_layout(step) or step


def _layout_chain(root: ir.Value) -> tuple[ir.Value, tuple[str, ...]]:
    """Follow a single-use chain of layout ops with constant side inputs below ``root``."""
    value, ops = root, []
    while len(value.uses()) == 1 and not value.is_graph_output():
        user = next(iter(value.uses())).node
        if user.op_type not in _LAYOUT_OPS or user.domain not in ("", "ai.onnx"):
            break
        if next(iter(value.uses())).idx != 0:
            break
        if any(small_constant(i) is None for i in user.inputs[1:] if i is not None):
            break
        if user.op_type == "Cast" and cast_to(user) not in ev.FLOAT_TYPES:
            break
        value = user.outputs[0]
        ops.append(user.op_type)
    return value, tuple(ops)


def _analyse(
    graph: ir.Graph | ir.Function,
    root: ir.Value,
    run_time: Set[ir.Value],
    of_activations: bool,
    main: ir.Graph,
) -> Site | None:
    """The site at ``root``; None when it is no weight (``x / ||x||`` of a run-time value).
    ``run_time``: the values computed from a value fed at run time (``run_time_values``);
    ``of_activations``: whether every norm feeding ``root`` normalizes one of them; ``main``:
    the model's graph."""
    site = Site(graph=graph, root=root, target=root)
    scope = "function" if isinstance(graph, ir.Function) else "graph"
    if of_activations and not _read_as_weight(root):
        # norms of run-time values read as no layer's weight: of activations, in whatever form
        # (ScaleNorm, x[:, 0] of it, a p=1 norm, axes given at run time)
        return None
    if isinstance(graph, ir.Function) and (reason := _cone_reason(root)) is not None:
        site.reason = reason  # attribute references must not be read as values below
        return site
    factors: list[_Factor] = []
    casts: list[ir.Node] = []
    quantizers: list[ir.Node] = []
    reason = _factors(root, 1, factors, casts, quantizers)
    norms = [f for f in factors if f.kind == "norm"]
    if norms:
        site.norm = norms[0].norm
    moved = _moved_shapes(factors) if reason is None else {}
    if isinstance(moved, str):
        reason, moved = moved, {}
    if reason is not None:
        site.reason = reason
        return site
    site.reshaped = moved
    if not norms and root in run_time:
        return None  # a norm's use that leaves the product (``n + x``): no site of it
    normed = {f.norm.v for f in norms if f.norm is not None}
    leaves = [f for f in factors if f.kind == "leaf" and not _one(f.value, normed)]
    constant_gain = any(
        f.value not in run_time for f in leaves if strip_cast(f.value) not in normed
    )
    if all(v in run_time for v in normed) and not (
        constant_gain and (not normed or _weight_fed_at_run_time(normed, root))
    ):
        # norms of activations (``x / ||x||``, ConvNeXt-V2's ``x * ||x|| / mean(||x||)``), also
        # times a constant (ScaleNorm's ``g * x / ||x||``, an embedding's max_norm scaling the
        # rows it looked up): no weight, whatever its form. What is left is a weight fed at run
        # time, declined below by its name.
        return None
    if len(norms) != 1 or norms[0].exponent != -1:
        return _unsupported(site, "expected exactly one norm in the denominator")
    norm = norms[0].norm
    assert norm is not None
    site.v = norm.v
    if norm.problem is not None:
        site.reason = norm.problem
        return site
    lp = norm.kind.startswith("LpNormalization")  # it reduces the tensor it normalizes
    reduced = norms[0].value if lp else _reduced_input(norms[0].value)
    if norm.layout:
        site.reduced = reduced
    numerators = [f for f in leaves if _normalised(f.value, norm.v, reduced)]
    if not numerators and norm.axes is None and (copied := _copied(leaves, norm.v)):
        numerators, site.v = leaves, copied  # v / ||C||, C a copy of v's elements
    elif not numerators and not norm.layout and _premultiplied(leaves, norm):
        numerators, site.premultiplied = leaves, True  # C / ||v|| with C = g * v computed
    if len(numerators) != 1 or numerators[0].exponent != 1:
        return _unsupported(site, "the normalised tensor is not v itself")
    if numerators[0].moves:  # its units laid out otherwise than the norm's (t319)
        return _unsupported(site, "v is reshaped inside the product, apart from its norm")
    if not lp and _misbroadcast(
        norms[0].value, numerators[0].value, norm, reduced, moved.get(norms[0].value)
    ):
        return _unsupported(site, "the norm, as it broadcasts, is not that of each unit of v")
    others = [f for f in leaves if f is not numerators[0]]
    runtime = None if others else _runtime_gain(root)
    if runtime is not None and _weight_fed_at_run_time([runtime[0]], runtime[1]):
        gain, product = runtime
        site.g = strip_cast(gain)
        site.reason = _constant_reason(gain, "g", scope)  # v / ||v|| times a gain fed at run time
        # the weight is that product, as its consumers read it: reported by its name
        site.target = product
        return site
    # else v / ||v|| times an activation (``x * F.normalize(W)``): the gain-less site v / ||v||
    if len(others) > 1 or (others and others[0].exponent != 1):
        # weight norm times a constant (``lin.weight * 0.5``): a site, declined (t141)
        site.reason = "unsupported form: expected at most one gain g multiplying v / ||v||"
        return site
    gain_leaf = others[0].value if others else None
    site.g = None if gain_leaf is None else strip_cast(gain_leaf)
    norm_value = None if lp else norms[0].value
    site.factors = (numerators[0].value, gain_leaf, norm_value, norms[0].divides)
    site.casts = tuple(casts)
    site.reason = (
        _quantized_reason(quantizers, norm.v, gain_leaf)
        or _constant_reason(norm.v, "v", scope)
        or (None if gain_leaf is None else _constant_reason(gain_leaf, "g", scope))
        or _cone_reason(root)
    )
    if site.reason is not None:
        site.fed_by = _fed_by(main, norm.v)
    if site.reason is None:
        site.target, site.layout = _layout_chain(root)
        site.reason = shadowed_in_cone(site.target, graph) or _quantized(site.target)
    return site


# ops that quantize what they read: a weight one ulp off may land in another step
_QUANTIZERS = frozenset({"QuantizeLinear", "DynamicQuantizeLinear"})


def _quantized(target: ir.Value) -> str | None:
    """Why folding a weight a quantizer reads (directly or through layout ops: a model
    quantized to QDQ before its weight norm was folded) is declined: the fold rounds the
    weight once, the graph in steps, and the two may differ by an ulp, which moves an element
    across a quantization step where it sits on a boundary (2-4.5% of an output's scale on
    real models, t306). None where no quantizer reads it."""
    if (quantizer := _quantizer_reading(target)) is None:
        return None
    return (
        f"{quantizer.op_type} quantizes it: a weight rounded once, as a fold writes it, may be "
        "an ulp from the graph's and land in another quantization step; fold before quantizing"
    )


def _quantizer_reading(value: ir.Value) -> ir.Node | None:
    """A quantizer that reads ``value``, directly or behind layout ops, ``Slice``, ``Split``
    or ``Concat`` (t307); None where none does."""
    return next(
        (n for n in _uses_through(value, _REPORT_THROUGH) if n.op_type in _QUANTIZERS), None
    )


def _step_quantized(quantizer: ir.Node) -> str:
    """Why a site is declined whose step ``quantizer`` quantizes (:func:`_quantized_reason`)."""
    step = quantizer.inputs[0] if quantizer.inputs else None
    name = "" if step is None else f" '{step.name}'"
    return f"{quantizer.op_type} quantizes{name}, a step of its computation; fold before quantizing"


def _quantized_reason(
    quantizers: Sequence[ir.Node], v: ir.Value, gain: ir.Value | None
) -> str | None:
    """Why a site of a model quantized to QDQ before it was folded is declined: a
    ``QuantizeLinear`` quantizes a step of its product (ONNX Runtime's quantizer put
    ``g / ||v||`` or ``v / ||v||`` through one), or v or g is a ``DequantizeLinear``'s output
    (quantized itself). The weight the graph computes is then no weight norm of float g and
    v, and a fold would write it in float, dropping the quantization: fold before quantizing.
    None where the site is not quantized."""
    if quantizers:
        return _step_quantized(quantizers[0])
    for role, value in (("v", v), ("g", gain)):
        if value is not None and _qdq(strip_cast(value), "DequantizeLinear") is not None:
            return f"{role} is quantized (read through DequantizeLinear); fold before quantizing"
    return None


def fold_order(sites: list[Site]) -> list[Site]:
    """``sites`` in the order to fold (and name) them: a site whose weight is a step of other
    sites' products (``v / ||v||`` read as it is, below ``g1 * v / ||v||`` and
    ``g2 * v / ||v||``) after them, as folding it first would take their products' steps away
    from them; otherwise in the order given."""
    targets = {site.target for site in sites}
    above: dict[ir.Value, int] = dict.fromkeys(targets, 0)  # how many products hold each
    for site in sites:
        for value in walk_cone(site.root):
            if value in targets and value is not site.target:
                above[value] += 1
    return sorted(sites, key=lambda site: above[site.target])


def declined_targets(sites: Sequence[Site]) -> frozenset[ir.Value]:
    """The values of the sites that are declined: a weight computed from one is that site's,
    reported with it (``cones.find_cones``)."""
    return frozenset(site.target for site in sites if not site.foldable)


def seed_source(node: ir.Node) -> ir.Value | None:
    """The value ``node`` takes a norm of, where it is the start of a weight-norm site (a
    :data:`_SEEDS` op; a ``ReduceSum`` only of squares); else None."""
    if node.op_type not in _SEEDS or node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type == "ReduceSum":
        squares = sum_of_squares_source(node)
        return None if squares is None else squares[0]
    return node.inputs[0]


def find_sites(model: ir.Model) -> list[Site]:
    """Every weight-norm site in the model, in graph order, foldable or with a reason."""
    sites: list[Site] = []
    run_time = run_time_values(model)
    # every body walked first: which names its initializers shadow decides some sites
    for graph in list(graphs_of(model)):
        roots: dict[ir.Value, bool] = {}  # root -> whether every norm feeding it is of activations
        for node in graph:
            if (source := seed_source(node)) is not None:
                found = _roots_of(node)
                if not found:
                    logger.debug("norm %s feeds no product; not a weight-norm site", node.name)
                for root in found:
                    roots[root] = roots.get(root, True) and source in run_time
        found_here: list[Site] = []
        for root, of_activations in roots.items():
            site = _analyse(graph, root, run_time, of_activations, model.graph)
            if site is None:
                logger.debug("%s normalizes a run-time value; not a weight", root.name)
                continue
            found_here.append(site)
        sites.extend(found_here)
    _order_nested(sites)  # across scopes: a body may normalize a weight of the main graph
    for site in sites:
        logger.debug("site %s: %s", site.root.name, site.reason or "foldable")
    return sites


def _order_nested(sites: list[Site]) -> None:
    """Mark each site computed from another site's weight (``g2 * w / ||w||`` with ``w`` a
    weight-norm site's: ``F.normalize`` of a weight-normed layer's weight) as coming after it:
    it is folded from that site's folded weight, once that one is."""
    by_target = {site.target: site for site in sites}
    for site in sites:
        for value in _walk_inputs(site):
            inner = by_target.get(value)
            if inner is not None and inner is not site:
                site.after = inner
                site.reason = (
                    f"computed from '{value.name}', the weight of a weight-norm site"
                    " that is not folded"
                )
                # the layout ops after it are the site's, as once matched again (the fold
                # folds them with it): not a weight computed from constants of its own
                site.target, site.layout = _layout_chain(site.root)
                break


def _walk_inputs(site: Site) -> Iterator[ir.Value]:
    """The values ``site``'s weight is computed from: the cones of its factors (v, g, the
    norm). A step of its own product tree (``v / ||v||`` below ``g * v / ||v||``) is no
    input, even where it is a site too. None for a site declined before its factors were
    read (its form): it keeps that reason, whatever it is computed from."""
    if site.factors is None:
        return
    seen: set[ir.Value] = set()
    for factor in site.factors[:3]:
        if isinstance(factor, ir.Value):
            for value in walk_cone(factor):
                if value not in seen:
                    seen.add(value)
                    yield value
