"""Recognise ``||v||`` expressions in an onnx-ir graph.

A norm expression is ``ReduceL2(v)``, ``Sqrt`` or ``Pow(., 0.5)`` of a sum of squares
(``ReduceSumSquare(v)``, ``ReduceSum(v*v)``, ``ReduceSum(Pow(v, 2))``), optionally behind
``Pow(., -0.5)``/``Reciprocal`` (the exponent flips), an epsilon (``Max``/``Clip(min)``/``Add``
with a constant scalar), ``Cast`` and a re-shape of the reduced tensor (``Unsqueeze``,
``Reshape``, ``Expand``, ``Transpose``) for ``keepdims=0`` or layout changes. Layout ops between
``v`` and the reduction are looked through (the dynamo exporter's form for ``dim != 0``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from wnpass.onnx.graphs import const_tensor

__all__ = [
    "Norm",
    "as_norm",
    "attr_int",
    "const_scalar",
    "producer",
    "small_constant",
    "strip_cast",
    "sum_of_squares_source",
]

# Ops that re-shape or re-type a norm value without changing its meaning.
_NORM_RESHAPES = frozenset({"Cast", "Identity", "Unsqueeze", "Reshape", "Expand", "Transpose"})


@dataclasses.dataclass
class Norm:
    """A recognised ``||v||`` expression."""

    v: ir.Value  # the tensor whose norm is taken, Cast stripped
    axes: tuple[int, ...] | None  # reduction axes as written; None: the whole tensor
    kind: str  # how the norm is written, for the report
    # The epsilon, where the norm has exactly one and it is applied before any reciprocal (to
    # the norm or its sum of squares); None where it has none, or several, or one after a
    # reciprocal (``1/||v|| + eps``): no one number is the norm's epsilon then.
    eps: float | None = None
    layout: bool = False  # reduces a reshaped/transposed v: axes not in terms of v
    # Whether every epsilon only makes the norm larger (>= 0, applied before any reciprocal),
    # so that the norm the graph computes is at least ||v||: what the common path's overflow
    # bound in ``weights`` rests on.
    bounded: bool = True
    # Why the fold cannot compute this norm, though it is one: an epsilon that is no constant
    # scalar (a graph input, a tensor), a Clip that bounds it from above; None when it can.
    problem: str | None = None
    # Whether it has an epsilon at all: the norm the graph computes may then be far above
    # ||v|| (an epsilon of 1e-12 beside a ||v|| of 1e-14), and no bound that takes it for
    # ||v|| holds from below.
    padded: bool = False


def producer(value: ir.Value | None, *ops: str) -> ir.Node | None:
    """The producer of ``value`` if it is a standard-domain node of one of ``ops``."""
    if value is None:
        return None
    node = value.producer()
    if node is None or node.domain not in ("", "ai.onnx") or node.op_type not in ops:
        return None
    return node


def attr_int(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return default if attr is None else int(attr.value)


def small_constant(value: ir.Value | None) -> np.ndarray | None:
    """``evaluate.small_constant``: a small operand's value, also when the graph computes it
    from constants (axes as ``Reshape(Constant, Constant)``)."""
    from wnpass.onnx.evaluate import small_constant as evaluated  # it imports this module

    return evaluated(value)


def const_scalar(value: ir.Value | None) -> float | None:
    """The value of a constant scalar (or one-element tensor), else None."""
    const = small_constant(value)
    if const is None or const.size != 1:
        return None
    return float(np.asarray(const).reshape(-1)[0])


def strip_cast(value: ir.Value) -> ir.Value:
    while (node := producer(value, "Cast", "Identity")) is not None and node.inputs[0] is not None:
        value = node.inputs[0]
    return value


# ---------------------------------------------------------------- norm expressions


def sum_of_squares_source(node: ir.Node) -> tuple[ir.Value, str] | None:
    """For ReduceSumSquare(v) / ReduceSum(v*v) / ReduceSum(Pow(v,2)): (v, description)."""
    x = node.inputs[0]
    if node.op_type == "ReduceSumSquare" and x is not None:
        return strip_cast(x), "ReduceSumSquare"
    if node.op_type != "ReduceSum" or x is None:
        return None
    x = strip_cast(x)  # the dynamo exporter's float16 squares, cast to float32 to be summed
    if (mul := producer(x, "Mul")) is not None:
        a, b = mul.inputs
        if a is not None and b is not None and strip_cast(a) is strip_cast(b):
            return strip_cast(a), "ReduceSum(v*v)"
    if (pow_ := producer(x, "Pow")) is not None and const_scalar(pow_.inputs[1]) == 2.0:
        base = pow_.inputs[0]
        if base is not None:
            return strip_cast(base), "ReduceSum(Pow(v,2))"
    return None


def _known_rank(value: ir.Value) -> int | None:
    if value.shape is not None:
        return len(value.shape)
    if (node := producer(value, "Reshape")) is not None and node.inputs[1] is not None:
        shape = small_constant(node.inputs[1])
        return None if shape is None else int(shape.size)
    return 2 if producer(value, "Flatten") is not None else None


def norm_source(
    value: ir.Value, axes: tuple[int, ...] | None
) -> tuple[ir.Value, tuple[int, ...] | None, bool]:
    """Look through layout ops between v and the reduction: (v, axes, whether it looked).

    The norm of every element does not depend on layout (the dynamo exporter writes PyTorch's
    ``dim=None`` as ``ReduceL2(Reshape(v, [-1]))``), and for ``dim != 0`` it reduces a
    transposed, reshaped v. The fold evaluates what the graph computes either way; the axes in
    terms of v are then read from the shape of g (``Site.axes``). Whether the norm is of the
    whole tensor is decided on the reduction's own input, whose dimensions the axes name.
    """
    rank = _known_rank(value)
    whole = axes is None or (rank is not None and len({a % rank for a in axes}) == rank)
    through = False
    while (node := producer(value, *_SOURCE_LAYOUTS)) is not None and node.inputs[0] is not None:
        value, through = strip_cast(node.inputs[0]), True
    return value, (None if whole else axes), through and not whole


_SOURCE_LAYOUTS = ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")


def _reduction_axes(node: ir.Node) -> tuple[int, ...] | str | None:
    """Axes of a Reduce* node; None for all; a string reason when they cannot be read."""
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        const = small_constant(node.inputs[1])
        if const is None:
            return "reduction axes are not constant"
        from wnpass.onnx.evaluate import NotExact, int_list  # it imports this module

        try:
            axes = tuple(int_list(const, node.op_type, _where(node)))
        except NotExact as error:
            return str(error)
    else:
        attr = node.attributes.get("axes")
        axes = () if attr is None else tuple(int(a) for a in attr.value)
    if not axes:
        if attr_int(node, "noop_with_empty_axes", 0):
            return "empty axes with noop_with_empty_axes=1 reduce nothing"
        return None
    return _out_of_range(node, axes) or axes


def _out_of_range(node: ir.Node, axes: tuple[int, ...]) -> str | None:
    """Why ``axes`` do not fit the rank of the reduction's input, where it is known (the
    evaluator's rule, ``axis_in_range``); None when they fit or the rank is not known."""
    from wnpass.onnx.evaluate import NotExact, axis_in_range  # it imports this module

    rank = None if node.inputs[0] is None else _known_rank(node.inputs[0])
    if rank is None:
        return None  # the evaluator checks them against the tensor
    try:
        for axis in axes:
            axis_in_range(axis, rank, _where(node))
    except NotExact as error:
        return str(error)
    return None


def _where(node: ir.Node) -> str:
    """The node as a reason names it, as the evaluator does (``Step.where``)."""
    name = node.name or node.outputs[0].name
    return f"{node.op_type} '{name}'" if name else node.op_type


def as_norm(value: ir.Value, *, strict: bool = False) -> tuple[Norm, int] | str | None:
    """Recognise ``value`` as ``||v||**power`` (power +1 or -1).

    Returns None when ``value`` is no norm expression, or a reason when it is one that cannot
    be used. An epsilon that is no constant scalar (``Add(||v||, e)`` with ``e`` a graph
    input) is read through, and ``Norm.problem`` says why the fold cannot use it; with
    ``strict`` such an expression is no norm (None): how an operand of one is tested, so that
    a chain of such ``Add`` nodes (a residual stream) is walked once, not once per operand.
    """
    power = 1
    flips = 0  # reciprocals walked through so far, from the outside in
    epsilons: list[tuple[float, int]] = []  # each epsilon, with the reciprocals outside it
    problems: list[str] = []  # what makes it a norm the fold cannot compute (Norm.problem)
    squared = False  # True once we stand on a sum of squares (needs a square root)
    while True:
        node = value.producer()
        if node is None or node.domain not in ("", "ai.onnx"):
            return None
        op, inputs = node.op_type, node.inputs
        if op in _NORM_RESHAPES and inputs[0] is not None:
            value = inputs[0]
        elif op == "Reciprocal" and inputs[0] is not None:
            power, value, flips = -power, inputs[0], flips + 1
        elif op in ("Max", "Add") and len(inputs) == 2 and inputs[0] is not None:
            a, b = inputs
            if (c := const_scalar(b)) is not None and a is not None:
                value = a
            elif (c := const_scalar(a)) is not None and b is not None:
                value = b
            elif not strict and (operands := _norm_and_other(a, b)) is not None:
                value, other = operands
                problems.append(_no_epsilon(other))
                continue
            else:
                return None
            epsilons.append((c, flips))
        elif op == "Clip" and inputs[0] is not None:
            given = inputs[1] if len(inputs) > 1 else None
            low = const_scalar(given)
            if low is None and "min" in node.attributes:
                low = float(node.attributes["min"].value)
            has_max = (len(inputs) > 2 and inputs[2] is not None) or "max" in node.attributes
            if low is None or has_max:
                if strict or not _is_norm(inputs[0]):
                    return None
                if has_max:
                    problems.append("a Clip with a max bounds the norm from above")
                elif given is not None:
                    problems.append(_no_epsilon(given))
                else:
                    return None
                value = inputs[0]
                continue
            epsilons.append((low, flips))
            value = inputs[0]
        elif op == "Sqrt" and inputs[0] is not None and not squared:
            squared, value = True, inputs[0]
        elif op == "Pow" and inputs[0] is not None and not squared:
            exponent = const_scalar(inputs[1])
            if exponent in (0.5, -0.5):
                squared, value = True, inputs[0]
                power, flips = (power, flips) if exponent > 0 else (-power, flips + 1)
            elif exponent == -1.0:
                power, value, flips = -power, inputs[0], flips + 1
            else:
                return None
        elif op == "ReduceL2" and not squared and inputs[0] is not None:
            axes = _reduction_axes(node)
            if isinstance(axes, str):
                return axes
            v, axes, layout = norm_source(strip_cast(inputs[0]), axes)
            return _norm(v, axes, "ReduceL2", layout, epsilons, flips, problems), power
        elif op in ("ReduceSumSquare", "ReduceSum") and squared:
            source = sum_of_squares_source(node)
            if source is None:
                return None
            axes = _reduction_axes(node)
            if isinstance(axes, str):
                return axes
            v, axes, layout = norm_source(source[0], axes)
            kind = f"sqrt({source[1]})"
            return _norm(v, axes, kind, layout, epsilons, flips, problems), power
        else:
            return None


def _norm(
    v: ir.Value,
    axes: tuple[int, ...] | None,
    kind: str,
    layout: bool,
    epsilons: list[tuple[float, int]],
    flips: int,
    problems: list[str],
) -> Norm:
    """The ``Norm`` of a recognised expression, given its epsilons (each with the number of
    reciprocals walked through before it, from the outside in) and all its reciprocals: an
    epsilon with every reciprocal outside it is applied before any of them."""
    before = [c for c, outside in epsilons if outside == flips]
    eps = before[0] if len(epsilons) == 1 and before and not problems else None
    bounded = len(before) == len(epsilons) and all(c >= 0 for c in before)
    problem = problems[0] if problems else None
    return Norm(v, axes, kind, eps, layout, bounded, problem, padded=bool(epsilons))


def _is_norm(value: ir.Value | None) -> bool:
    """Whether ``value`` is a norm expression of the usual form (:func:`as_norm`, strict)."""
    return value is not None and isinstance(as_norm(value, strict=True), tuple)


def _norm_and_other(a: ir.Value | None, b: ir.Value | None) -> tuple[ir.Value, ir.Value] | None:
    """Of the operands of an epsilon's ``Add`` or ``Max`` whose epsilon is no constant
    scalar: (the norm, the other operand), when exactly one of them is a norm."""
    if a is None or b is None:
        return None
    a_norm, b_norm = _is_norm(a), _is_norm(b)
    if a_norm == b_norm:
        return None
    return (a, b) if a_norm else (b, a)


def _no_epsilon(value: ir.Value) -> str:
    """Why ``value``, added to a norm (or its bound), is no epsilon the fold can use."""
    what = f"the norm's epsilon '{value.name}'"
    if value.is_graph_input():
        return f"{what} is a graph input"
    if small_constant(value) is not None or const_tensor(value) is not None:
        return f"{what} is not a scalar"
    like = producer(value, "CastLike")
    target = None if like is None or len(like.inputs) < 2 else like.inputs[1]
    if target is not None and target.dtype is None:  # the dynamo exporter's F.normalize
        return (
            f"{what} is cast by CastLike to the type of '{target.name}', which the graph does "
            "not declare"
        )
    return f"{what} is not a constant"
