"""The folded weight of a site: checked up front, computed once, rounded once.

For the common form (``v``, an optional gain ``g`` and an explicit norm that keeps v's rank,
multiplying straight into the value that is replaced), the checks need only the small
tensors: ``||v||`` (one pass over v, no copy) and ``g``. A finite, non-zero norm means v is
finite; and since each element lies in its own unit, ``|v_i| <= ||v||`` bounds ``|w|`` by
``|g|``, so overflow is decided by g alone. The product itself is then deferred to an
``ir.LazyTensor``, computed when the model is written, one weight at a time, so a model larger
than memory folds in bounded memory. Every other form is evaluated eagerly by the general
evaluator (``evaluate``: the graph's Casts and integer semantics exactly, float arithmetic in
float64) and checked on its result; anything it cannot do exactly declines the site.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from wnpass.onnx import evaluate as ev
from wnpass.onnx import halves
from wnpass.onnx.graphs import const_tensor
from wnpass.onnx.match import Site

__all__ = ["declared_dtype", "folded_weight", "release"]

logger = logging.getLogger(__name__)

_NUMPY_FLOATS = (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE)
ZERO_NORM = "v has zero-norm units, where the graph computes NaN; left as it is"


def declared_dtype(value: ir.Value) -> ir.DataType | None:
    """The dtype ``value`` has in the graph: type info, else followed through its producers."""
    while value.dtype is None:
        if (const := const_tensor(value)) is not None:
            return const.dtype
        node = value.producer()
        if node is None or not node.inputs or node.inputs[0] is None:
            return None
        if node.op_type == "Cast":
            return ir.DataType(int(node.attributes["to"].value))
        value = node.inputs[0]
    return value.dtype


def release(tensor: ir.TensorProtocol | None) -> None:
    """Unmap an external tensor after reading it, so its pages leave the resident set."""
    if isinstance(tensor, ir.ExternalTensor):
        try:
            tensor.release()
        except BufferError:  # an array still views the map; it is unmapped when that goes
            logger.debug("%s is still in use; not unmapped yet", tensor.name)


def _exact_view(value: ir.Value, source: ir.Value) -> bool:
    """Whether ``value`` is ``source`` behind Identity and exactly widening float Casts."""
    while value is not source:
        node = value.producer()
        if node is None or node.domain not in ("", "ai.onnx") or not node.inputs:
            return False
        inner = node.inputs[0]
        if inner is None or node.op_type not in ("Cast", "Identity"):
            return False
        if node.op_type == "Cast":
            before = declared_dtype(inner)
            after = ir.DataType(int(node.attributes["to"].value))
            if before not in ev.FLOAT_TYPES or not ev.widens_exactly(before, after):
                return False
        value = inner
    return True


def _deferred_product(site: Site) -> ir.TensorProtocol | str | None:
    """``v * (g / ||v||)`` as a lazy tensor after the up-front checks; None: not this form."""
    if site.factors is None or site.factors[2] is None or site.target is not site.root:
        return None
    if site.norm is None or site.norm.layout or site.v is None:
        return None
    dtype = declared_dtype(site.root)
    if dtype not in _NUMPY_FLOATS:
        return None
    numerator, g_leaf, norm_value, divides = site.factors
    assert norm_value is not None
    # The product reads v's tensor itself (the graph around it is gone by then), so the
    # numerator must be v unchanged: behind Identity or Casts that widen exactly, at most.
    v_tensor = ev.const_leaf(site.v)
    if v_tensor is None or not _exact_view(numerator, site.v):
        return None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        g = np.ones((), ev.F64) if g_leaf is None else ev.evaluate(g_leaf)[0]
        norm = ev.evaluate(norm_value)[0]
        release(v_tensor)
        if not np.all(np.isfinite(g)):
            return "g holds NaN or Inf"
        # ``norm`` is ||v|| when it divides, ||v||**-1 (rsqrt of the sum of squares) otherwise
        zero, bad_v = (norm == 0, ~np.isfinite(norm)) if divides else (np.isinf(norm), ~(norm > 0))
        if np.any(bad_v & ~zero):
            return "v holds NaN or Inf"
        if np.any(zero):
            return ZERO_NORM
        scale = (np.divide if divides else np.multiply)(g, norm, dtype=ev.F64)
    v_shape = tuple(v_tensor.shape.numpy())
    per_unit = norm.ndim == len(v_shape) and all(
        n in (1, d) for n, d in zip(norm.shape, v_shape, strict=True)
    )
    if not per_unit:
        return None  # the norm broadcasts against v some other way: evaluate and check
    if not np.all(np.isfinite(scale)) or np.abs(g).max(initial=0) >= np.finfo(dtype.numpy()).max:
        return None  # let the general path compute it and say exactly what went wrong
    shape = np.broadcast_shapes(v_shape, scale.shape)

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


def _evaluated(site: Site) -> ir.TensorProtocol | str:
    """The general path: evaluate the whole cone, round once, check the result."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        array, dtype = ev.evaluate(site.target)
        if (declared := declared_dtype(site.target)) is not None and declared != dtype:
            return f"the graph says {declared.name.lower()} where it computes {dtype.name.lower()}"
        rounded = ev.round_to(array, dtype)
    del array
    if dtype not in ev.FLOAT_TYPES:
        return f"the weight is {dtype.name.lower()}, not a float"
    if np.all(np.isfinite(rounded)):
        return ir.Tensor(rounded, dtype=dtype)
    assert site.v is not None
    for role, value in (("v", site.v), ("g", site.g)):
        if value is not None and not np.all(np.isfinite(ev.evaluate(value)[0])):
            return f"{role} holds NaN or Inf"
    if np.any(np.isnan(rounded)):
        return ZERO_NORM
    return f"the folded weight overflows {dtype.name.lower()}"


def folded_weight(site: Site) -> ir.TensorProtocol | str:
    """The folded weight of a foldable site, or the reason it must stay as it is."""
    try:
        deferred = _deferred_product(site)
        return deferred if deferred is not None else _evaluated(site)
    except ev.NotExact as error:  # an op, dtype or size the evaluator does not do exactly
        return str(error)
    except (ValueError, IndexError, TypeError) as error:  # shapes that do not fit, bad reshapes
        return f"cannot be computed: {error}"
    except MemoryError:
        return "cannot be computed: out of memory"
