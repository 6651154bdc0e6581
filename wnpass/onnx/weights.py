"""The folded weight of a site: checked up front, computed once, rounded once.

For the common form (``v``, an optional gain ``g`` and an explicit norm of v's units that
keeps v's rank, multiplying straight into the value that is replaced, no Cast in between),
the checks need only the small tensors: ``||v||`` (one pass over v, no copy, checked by the
evaluator's rules) and ``g``. A finite, non-zero norm means v is finite; and since each
element lies in its own unit, and the form's epsilons only make the norm larger,
``|v_i| <= ||v||`` bounds every value on the way to ``w`` by ``|g| * max(||v||, 1/||v||)``,
so overflow is decided by g and the norm alone (a norm with an epsilon after its reciprocal,
a negative one, or cast to an integer, is no common form: the bound would not hold). Its
dtype is v's, as the graph computes it; type info that says another declines the site, as on
the general path. The same checks tell ``inspect`` what a fold would decline
(``decline_reason``). The product is deferred to an
``ir.LazyTensor``, computed when the model is written, one weight at a time, so a model larger
than memory folds in bounded memory. Every other form is evaluated eagerly by the general
evaluator (``evaluate``: the graph's Casts and integer semantics exactly, float arithmetic in
float64) and checked on its result; anything it cannot do exactly declines the site.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import TypeVar

import ml_dtypes
import numpy as np
import onnx_ir as ir

from wnpass.onnx import evaluate as ev
from wnpass.onnx import halves
from wnpass.onnx.match import Site
from wnpass.onnx.types import cast_to, declared_dtype
from wnpass.report import OUT_OF_MEMORY, out_of_memory

__all__ = ["decline_reason", "fold_outcome", "folded_weight", "release"]

logger = logging.getLogger(__name__)

_NUMPY_FLOATS = (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE)
ZERO_NORM = "v has zero-norm units, where the graph computes NaN; left as it is"
NAN_NORM = "the norm holds NaN, where the graph computes NaN; left as it is"


def release(tensor: ir.TensorProtocol | None) -> None:
    """Unmap an external tensor after reading it, so its pages leave the resident set."""
    if isinstance(tensor, ir.ExternalTensor):
        try:
            tensor.release()
        except BufferError:  # an array still views the map; it is unmapped when that goes
            logger.debug("%s is still in use; not unmapped yet", tensor.name)


def _exact_view(value: ir.Value, source: ir.Value, stored: ir.DataType) -> ir.DataType | None:
    """The dtype the graph computes ``value`` in, where it is ``source`` (a constant of dtype
    ``stored``) behind Identity and exactly widening float Casts; None where it is not. The
    dtypes are followed from the tensor through the Casts, as the graph computes them, not
    read from type info, which may say otherwise."""
    targets: list[ir.DataType] = []
    while value is not source:
        node = value.producer()
        if node is None or node.domain not in ("", "ai.onnx") or not node.inputs:
            return None
        inner = node.inputs[0]
        if inner is None or node.op_type not in ("Cast", "Identity"):
            return None
        if node.op_type == "Cast":
            if (to := cast_to(node)) is None:
                return None
            targets.append(to)
        value = inner
    dtype = stored
    for target in reversed(targets):  # from the tensor outward
        if dtype not in ev.FLOAT_TYPES or not ev.widens_exactly(dtype, target):
            return None
        dtype = target
    return dtype


def _mismatch(value: ir.Value, computed: ir.DataType) -> str | None:
    """Why a weight the graph computes as ``computed`` cannot replace ``value``: its type info
    (a function's value_info, say) gives it another dtype; None where they agree. A fold would
    write a weight of one of the two types, and the consumers expect the other."""
    declared = declared_dtype(value)
    if declared is None or declared == computed:
        return None
    return f"the graph says {declared.name.lower()} where it computes {computed.name.lower()}"


@dataclasses.dataclass
class _Checked:
    """The common form after its up-front checks: ``v * scale`` rounded once to ``dtype``."""

    v: ir.TensorProtocol
    scale: np.ndarray
    dtype: ir.DataType
    shape: tuple[int, ...]


def _may_underflow(
    g: np.ndarray, norm: np.ndarray, count: int, dtype: ir.DataType, v_max: np.ndarray | None
) -> bool:
    """Whether a value the product makes on the way may be non-zero and below the dtype's
    smallest normal number in some unit (held in subnormals: the evaluator's
    ``_check_range``), from lower bounds of the largest value of each, unit by unit: ``g *
    v`` at least ``|g| * ||v|| / sqrt(count)`` (a unit of ``count`` elements has one at least
    its norm over ``sqrt(count)``), ``g / ||v||`` exactly, the weight at least ``|g| /
    sqrt(count)`` (``v / ||v||``, at least ``1 / sqrt(count)``, is normal for any real unit
    size). ``norm`` is the norm the graph computes, whether it divides by it or multiplies by
    its reciprocal; where it has an epsilon it may be far above ``||v||``, and ``v_max``, each
    unit's largest ``|v|``, gives the largest values themselves: ``|g| * v_max``, ``g /
    norm``, ``v_max / norm`` and ``|g| * v_max / norm``. One unit is enough: its weight is
    computed from a value the graph holds in subnormals (47% off, t97), and a float64 graph's
    ``g / ||v||`` taken first by the fold, in another order than the graph's, would be too."""
    tiny = float(np.finfo(dtype.numpy()).tiny)
    root = math.sqrt(max(count, 1))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        size = np.abs(g)
        lows: tuple[np.ndarray, ...]
        if v_max is None:
            lows = (size * norm / root, size / norm, size / root)
        else:
            lows = (size * v_max, size / norm, v_max / norm, size * v_max / norm)
    return any(bool(np.any((low > 0) & (low < tiny))) for low in lows)


def _checked(site: Site) -> _Checked | str | None:
    """The up-front checks of the common form: the reason to decline, or what the product
    needs; None when the site is not of this form (the general path decides).

    The form: no Cast inside the product (each is a rounding of the graph's, which the
    evaluator does), a norm of v's own units (no Transpose after the reduction, its shape v's
    with the reduced axes 1) whose epsilons only make it larger (``Norm.bounded``: none is
    negative or applied after a reciprocal, as in ``1/||v|| + eps``), and no Cast to an
    integer in it, so that the norm the graph computes is at least ``||v||``, and so at least
    ``|v_i|`` for every element of a unit, but for the roundings of its float Casts. Then
    ``|g| * max(||v||, 1/||v||)`` bounds every value the product can make on the way
    (``g * v``, ``g / ||v||``, ``v / ||v||``, the weight), in whatever order the graph
    multiplies: below the dtype's largest finite value, less those roundings, nothing
    overflows; else the general path evaluates the graph's order node by node.
    """
    if site.factors is None or site.factors[2] is None or site.target is not site.root:
        return None
    if site.norm is None or site.norm.layout or site.v is None or site.casts:
        return None
    if not site.norm.bounded:
        return None
    numerator, g_leaf, norm_value, divides = site.factors
    assert norm_value is not None
    if _unbounded_in_product(site.root, norm_value):
        return None  # the graph computes 1 / ||v|| or ||v|| / x, which the bounds do not cover
    # The product reads v's tensor itself (the graph around it is gone by then), so the
    # numerator must be v unchanged: behind Identity or Casts that widen exactly, at most.
    v_tensor = ev.const_leaf(site.v)
    dtype = None if v_tensor is None else _exact_view(numerator, site.v, v_tensor.dtype)
    if v_tensor is None or dtype not in _NUMPY_FLOATS:
        return None
    if (mismatch := _mismatch(site.root, dtype)) is not None:
        return mismatch
    program = ev.compile_cone(norm_value)
    margin = _rounding_margin(program, dtype)
    if "Transpose" in program.ops or margin is None:
        return None  # permuted against v's units, or truncated: evaluate and check
    if not all(int(d) for d in v_tensor.shape.numpy()):
        return None  # no element: the weight is empty, whatever g and the norm hold
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        g, g_dtype = (np.ones((), ev.F64), dtype) if g_leaf is None else ev.evaluate(g_leaf)
        norm, norm_dtype = program.run()
        v_shape = tuple(int(d) for d in v_tensor.shape.numpy())
        reduced = _reduced_axes(site, len(v_shape))
        v_max = ev.unit_max(v_tensor.numpy(), reduced) if site.norm.padded else None
        release(v_tensor)
        if g_dtype != dtype or norm_dtype != dtype:
            return None  # operands of different types: the general path decides
        if not np.all(np.isfinite(g)):
            return "g holds NaN or Inf"
        if np.any(_zero_units(norm, divides)):
            return ZERO_NORM  # the epsilons only make the norm larger: ||v|| is 0 there
        if not np.all(np.isfinite(norm) & (norm > 0)):
            return None  # NaN or Inf in v or an epsilon: the general path tells which
        length = norm if divides else np.reciprocal(norm, dtype=ev.F64)
        bound = np.abs(g) * np.maximum(length, np.reciprocal(length, dtype=ev.F64))
        scale = (np.divide if divides else np.multiply)(g, norm, dtype=ev.F64)
    units = tuple(1 if a in reduced else d for a, d in enumerate(v_shape))
    if norm.shape != units:
        return None  # the norm broadcasts against v some other way: evaluate and check
    largest = float(np.finfo(dtype.numpy()).max) / margin
    if not np.all(bound < largest):
        return None  # let the general path compute it and say exactly what went wrong
    if _may_underflow(g, length, math.prod(v_shape) // math.prod(units), dtype, v_max):
        return None  # the general path evaluates the graph's order and says where
    return _Checked(v_tensor, scale, dtype, np.broadcast_shapes(v_shape, scale.shape))


_PRODUCT_OPS = frozenset({"Mul", "Div", "Reciprocal", "Cast", "Identity"})


def _unbounded_in_product(root: ir.Value, norm: ir.Value) -> bool:
    """Whether the product above ``norm`` computes a value the bounds of ``_checked`` and
    ``_may_underflow`` (``g * v``, ``g / ||v||``, ``v / ||v||``) do not cover: a
    ``Reciprocal`` (of the norm, or of a part of the product), or a ``Div`` with the norm in
    its numerator (``g / (||v|| / v)``: ``||v|| / v`` is inf for a tiny v)."""
    for node in _product_nodes(root, norm):
        if node.op_type == "Reciprocal":
            return True
        numerator = node.inputs[0] if node.op_type == "Div" else None
        if numerator is None:
            continue
        if numerator is norm or any(norm in n.inputs for n in _product_nodes(numerator, norm)):
            return True
    return False


def _product_nodes(root: ir.Value, norm: ir.Value) -> list[ir.Node]:
    """The nodes of the product tree under ``root``, down to ``norm`` and the leaves."""
    nodes, stack, seen = [], [root], set()
    while stack:
        value = stack.pop()
        node = value.producer()
        if value is norm or value in seen or node is None or node.op_type not in _PRODUCT_OPS:
            continue
        seen.add(value)
        nodes.append(node)
        stack.extend(i for i in node.inputs if i is not None)
    return nodes


def _gain_within_units(site: Site) -> str | None:
    """Why ``site`` is no weight norm of ``v``'s units: its gain's values vary within a unit
    (along an axis the norm reduces). The graph then scales each element of a unit by its own
    factor, and a tiny element of ``v / ||v||`` it holds in subnormals (to a few bits) comes
    out of a large factor as large as the others, far from the exact value a fold writes
    (t58). A gain stored at ``v``'s whole shape, one value per unit, is no such gain."""
    if site.factors is None or site.factors[1] is None or site.v is None or site.norm is None:
        return None
    if site.norm.layout:
        return None  # its axes are a laid-out v's: the evaluator decides
    g = ev.evaluate(site.factors[1])[0]
    if (shape := site.reshaped.get(site.factors[1])) is not None:
        g = g.reshape(shape)  # as the product lays it out: (g / ||v||).view(-1, 1, 1)
    v_shape = _shape_of(site.v)
    reduced = _reduced_axes(site, len(v_shape))
    offset = len(v_shape) - g.ndim
    if offset < 0:
        return f"g of {g.ndim} dimensions multiplies v of {len(v_shape)}: no weight norm of v"
    for axis in sorted(reduced):
        if axis >= offset and g.shape[axis - offset] > 1:
            first = np.take(g, [0], axis=axis - offset)
            if not np.array_equal(np.broadcast_to(first, g.shape), g, equal_nan=True):
                return (
                    f"g varies along axis {axis} of v, which the norm reduces: no weight norm "
                    "of v's units"
                )
    return None


def _operand_rounded(site: Site) -> str | None:
    """Why ``site``'s weight cannot be folded exactly: its ``v`` or ``g`` is computed from
    constants by arithmetic whose result the graph holds further from the exact value than a
    rounding for each step (t335: ``(A + B) - A``, which float32 makes 0 where B is below half
    an ulp of A; t338: ``(m * 1e-30) * 1e30``, a unit in subnormals on the way). A fold
    computes the weight from its operands' exact values, rounded once: right for the
    product's own roundings, and for an operand's that move it by an ulp a step (``W / 3``,
    ``sqrt(g0)``: as close to ONNX Runtime's weight as a plain site's, t336), not for a
    cancellation or a precision lost on the way, which make the difference any size. A
    ``ReduceSum`` is declined as it is: ONNX Runtime chooses its order of additions, which a
    cancellation shows, and the evaluator does not (t338)."""
    for role, value in (("v", site.v), ("g", site.g)):
        if value is None or value.producer() is None:
            continue
        program = ev.compile_cone(value)
        steps = [op for op in program.ops if op in ev.ARITHMETIC]
        if not steps:
            continue  # moved, selected and cast only: the graph's value, as the Casts round it
        said = ", ".join(sorted(set(steps)))
        if "ReduceSum" in steps:
            return (
                f"{role} is computed from constants by {said}: ONNX Runtime chooses the order "
                "of a ReduceSum's additions, which a cancellation shows"
            )
        with np.errstate(all="ignore"):
            exact = program.run()[0]
            try:  # as the graph holds it, step by step; float16 arithmetic (which ONNX
                # Runtime computes in float32 between Casts it moves) where no step rounds
                held = ev.compile_cone(value, stepwise=True).run(exact_halves=True)[0]
            except ev.NotExact as error:
                return f"{role}: {error}"
            if not _within_roundings(exact, held, len(steps)):
                return (
                    f"{role} is computed from constants by {said}, which the graph holds "
                    "further from its exact value than a rounding a step (a cancellation, a "
                    "value below the normal range on the way): the weight from its exact "
                    "value is not the graph's"
                )
    return None


def _within_roundings(exact: np.ndarray, held: np.ndarray, steps: int) -> bool:
    """Whether ``held`` (as the graph holds it, in its type) is within ``steps`` ulps of the
    ``exact`` value everywhere (NaN where it is NaN, infinities the same): each correctly
    rounded step moves a normal value by half an ulp of it at most."""
    exact = np.asarray(exact, ev.F64)
    nan = np.isnan(exact)
    if not np.array_equal(nan, np.isnan(held)):
        return False
    held_wide = held.astype(ev.F64)
    infinite = np.isinf(exact) | np.isinf(held_wide)
    if not np.array_equal(exact[infinite], held_wide[infinite]):
        return False
    finite = ~(nan | infinite)
    ulp = np.spacing(np.abs(held[finite])).astype(ev.F64)
    return bool(np.all(np.abs(exact[finite] - held_wide[finite]) <= steps * ulp))


def _shape_of(value: ir.Value) -> tuple[int, ...]:
    """``value``'s shape: from the graph where it is known, else computed."""
    if value.shape is not None and value.shape.is_static():
        return value.shape.numpy()
    tensor = ev.const_leaf(value)
    if tensor is not None:
        return tuple(int(d) for d in tensor.shape.numpy())
    return tuple(ev.evaluate(value)[0].shape)


def _rounding_margin(program: ev.Program, dtype: ir.DataType) -> float | None:
    """The factor by which the bound of ``_checked`` must stay below the largest finite
    ``dtype``: a few roundings of the coarsest float type the norm passes through (its Casts
    round it, perhaps just below ``||v||``; the graph holds it in ``dtype``). None where the
    norm is cast to an integer type: truncated, it may be far below ``||v||``."""
    targets = [ir.DataType(int(step.attributes["to"])) for step in program.slots
               if isinstance(step, ev.Step) and step.op == "Cast"]  # fmt: skip
    if any(target not in ev.FLOAT_TYPES for target in targets):
        return None
    return 1 + 4 * max(float(ml_dtypes.finfo(t.numpy()).eps) for t in (dtype, *targets))


def _reduced_axes(site: Site, rank: int) -> set[int]:
    """The axes of v the norm reduces (they fit v's rank: its program ran)."""
    assert site.norm is not None
    if site.norm.axes is None:
        return set(range(rank))
    return {ev.axis_in_range(a, rank, site.norm.kind) for a in site.norm.axes}


def _deferred_product(site: Site) -> ir.TensorProtocol | str | None:
    """``v * (g / ||v||)`` as a lazy tensor after the up-front checks; None: not this form."""
    checked = _checked(site)
    if not isinstance(checked, _Checked):
        return checked
    v_tensor, scale, dtype, shape = checked.v, checked.scale, checked.dtype, checked.shape

    def compute() -> ir.TensorProtocol:
        out = np.empty(shape, dtype=dtype.numpy())
        _multiply_into(out, ev.tensor_array(v_tensor)[0], scale)
        release(v_tensor)
        return ir.Tensor(out, dtype=dtype)

    return ir.LazyTensor(compute, dtype=dtype, shape=ir.Shape(shape))


def _multiply_into(out: np.ndarray, v: np.ndarray, scale: np.ndarray) -> None:
    """``out = v * scale`` in float64, rounded once into ``out``'s dtype; the rows of v's
    first axis in two halves when ``scale`` is one number a row or one for all."""
    if v.ndim and scale.ndim == v.ndim and v.shape == out.shape and scale.shape[0] in (1, len(v)):
        per_row = scale.shape[0] > 1

        def rows(part: slice) -> None:
            unit = scale[part] if per_row else scale
            np.multiply(v[part], unit, out=out[part], dtype=ev.F64, casting="unsafe")

        halves.by_rows(rows, len(v), v.nbytes)
    else:
        np.multiply(v, scale, out=out, dtype=ev.F64, casting="unsafe")


def _units(site: Site) -> ev.Units | None:
    """v's shape and the axes its norm reduces, where both are known (the evaluator judges a
    value of v's shape unit by unit: :func:`wnpass.onnx.evaluate._check_units`)."""
    leaf = None if site.v is None or site.norm is None else ev.const_leaf(site.v)
    if leaf is None:
        return None
    shape = tuple(int(d) for d in leaf.shape.numpy())
    try:
        return shape, tuple(sorted(_reduced_axes(site, len(shape))))
    except ev.NotExact:  # an axis out of range: the evaluator says so
        return None


def _evaluated(site: Site) -> ir.TensorProtocol | str:
    """The general path: evaluate the whole cone, round once, check the result."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        array, dtype = ev.evaluate(site.target, _units(site))
        if (mismatch := _mismatch(site.target, dtype)) is not None:
            return mismatch
        rounded = ev.round_to(array, dtype)
    del array
    if dtype not in ev.FLOAT_TYPES:
        return f"the weight is {dtype.name.lower()}, not a float"
    if np.all(np.isfinite(rounded)):
        return ir.Tensor(rounded, dtype=dtype)
    return _not_finite(site, rounded, dtype)


def _not_finite(site: Site, weight: np.ndarray, dtype: ir.DataType) -> str:
    """Why the weight the graph computes holds NaN or Inf, told from what makes it: v or g
    holding them, the norm holding NaN (a NaN epsilon: ``Max`` passes NaN on), a unit whose
    norm is 0 (0/0); else a value too large for ``dtype``. A norm of Inf alone is none of
    these: it makes the weight 0, which is folded."""
    assert site.v is not None and site.factors is not None
    for role, value in (("v", site.v), ("g", site.g)):
        if value is not None and not np.all(np.isfinite(ev.evaluate(value)[0])):
            return f"{role} holds NaN or Inf"
    _, _, norm_value, divides = site.factors
    norm = None if norm_value is None else ev.evaluate(norm_value)[0]
    if norm is not None and np.any(np.isnan(norm)):
        return NAN_NORM
    if norm is not None and np.any(_zero_units(norm, divides)):
        return ZERO_NORM
    if np.any(np.isnan(weight)):
        return "the graph computes NaN in the weight"
    return f"the folded weight overflows {dtype.name.lower()}"


def _zero_units(norm: np.ndarray, divides: bool) -> np.ndarray:
    """Where the norm factor of a product is that of a unit of norm 0: ``||v||`` is 0 where it
    divides, ``||v||**-1`` (rsqrt of the sum of squares) Inf where it multiplies."""
    return norm == 0 if divides else np.isinf(norm)


def folded_weight(site: Site) -> ir.TensorProtocol | str:
    """The folded weight of a foldable site, or the reason it must stay as it is."""

    def weight() -> ir.TensorProtocol | str:
        if (within := _gain_within_units(site) or _operand_rounded(site)) is not None:
            return within
        deferred = _deferred_product(site)
        return deferred if deferred is not None else _evaluated(site)

    return _decided(weight)


def decline_reason(site: Site) -> str | None:
    """Why a fold leaves ``site`` as it is (None: it folds it), decided as ``folded_weight``
    decides; for the common form by its up-front checks alone, without the product."""
    outcome = fold_outcome(site)
    return outcome if isinstance(outcome, str) else None


def fold_outcome(site: Site) -> str | tuple[int, ...]:
    """What a fold does with ``site``: the reason it leaves it as it is, or the shape of the
    weight it writes in its place (that of the value replaced: v's, or after the layout ops
    that follow the product), decided as ``folded_weight`` decides; for the common form by
    its up-front checks alone, without the product."""
    if not site.foldable:
        assert site.reason is not None
        return site.reason

    def outcome() -> str | tuple[int, ...]:
        if (within := _gain_within_units(site) or _operand_rounded(site)) is not None:
            return within
        checked = _checked(site)
        if checked is not None:
            return checked if isinstance(checked, str) else checked.shape
        weight = _evaluated(site)  # not the common form: what the fold computes
        return weight if isinstance(weight, str) else tuple(int(d) for d in weight.shape.numpy())

    return _decided(outcome)


_T = TypeVar("_T")


def _decided(decide: Callable[[], _T]) -> _T | str:
    """``decide()``, or the reason it could not be decided exactly."""
    try:
        return decide()
    except ev.NotExact as error:  # an op, dtype or size the evaluator does not do exactly
        return str(error)
    except (ValueError, IndexError, TypeError) as error:  # shapes that do not fit, bad reshapes
        return f"cannot be computed: {error}"
    except (MemoryError, OSError) as error:  # a weight's data that cannot be mapped too
        if not out_of_memory(error):
            raise
        return OUT_OF_MEMORY
