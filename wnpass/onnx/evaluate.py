"""Evaluate the constant cone of a weight-norm site in float64, with ONNX semantics.

Only the ops that make up weight-norm subgraphs (and the layout ops around them) are known.
Every arithmetic op computes in float64 whatever the graph says (constants stay in their
stored dtype until an op reads them, so a large ``v`` is never copied to float64 whole); a
``Cast`` between float types only changes the dtype the result is finally rounded to. So
``w = g * v / ||v||`` is rounded once, to the dtype of the value that gets replaced (habit 5
in STYLE.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np
import onnx_ir as ir

__all__ = [
    "EVALUABLE_OPS",
    "FLOAT_TYPES",
    "Evaluated",
    "evaluate",
    "round_to",
    "sum_of_squares",
    "tensor_array",
]

Evaluated = tuple[np.ndarray, ir.DataType]

FLOAT_TYPES = frozenset(
    {ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16, ir.DataType.DOUBLE}
)


F64 = np.float64


def tensor_array(tensor: ir.TensorProtocol) -> Evaluated:
    """A constant tensor as a numpy array, as stored (bfloat16 widened exactly to float32)."""
    array = tensor.numpy()
    if tensor.dtype == ir.DataType.BFLOAT16:
        array = array.astype(np.float32)
    return array, tensor.dtype


def round_to(array: np.ndarray, dtype: ir.DataType) -> np.ndarray:
    """Round a float64 result once to ``dtype``."""
    if dtype == ir.DataType.BFLOAT16:
        return array.astype(ml_dtypes.bfloat16)
    return array.astype(dtype.numpy(), copy=False)


def _attr(node: ir.Node, name: str, default: Any = None) -> Any:
    attr = node.attributes.get(name)
    return default if attr is None else attr.value


def _axes(node: ir.Node, args: list[Evaluated | None]) -> tuple[int, ...] | None:
    """Reduction axes from the second input (opset >= 13/18) or the ``axes`` attribute."""
    if len(args) > 1 and args[1] is not None:
        return tuple(int(a) for a in args[1][0].reshape(-1))
    axes = _attr(node, "axes")
    return None if axes is None else tuple(int(a) for a in axes)


def _reduce(
    fn: Callable[..., np.ndarray],
) -> Callable[[ir.Node, list[Evaluated | None]], np.ndarray]:
    def run(node: ir.Node, args: list[Evaluated | None]) -> np.ndarray:
        x = _arg(args, 0)
        axes = _axes(node, args)
        keepdims = bool(_attr(node, "keepdims", 1))
        if not axes:
            if _attr(node, "noop_with_empty_axes", 0):
                return fn(x, axis=(), keepdims=keepdims)
            axes = tuple(range(x.ndim))
        return fn(x, axis=axes, keepdims=keepdims)

    return run


def _arg(args: list[Evaluated | None], i: int) -> np.ndarray:
    entry = args[i] if i < len(args) else None
    if entry is None:
        raise ValueError(f"missing input {i}")
    return entry[0]


def sum_of_squares(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """Sum of squares in float64 without a squared temporary (einsum accumulates in place)."""
    letters = "abcdefghijklmnopqrstuvwxyz"[: x.ndim]
    axes = {a % x.ndim for a in axis} if x.ndim else set()
    kept = "".join(c for i, c in enumerate(letters) if i not in axes)
    result = np.einsum(f"{letters},{letters}->{kept}", x, x, dtype=F64)
    if keepdims:
        result = np.reshape(result, [1 if i in axes else d for i, d in enumerate(x.shape)])
    return np.asarray(result)


def _l2(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    return np.sqrt(sum_of_squares(x, axis, keepdims))


def _sum(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    return np.asarray(np.sum(x, axis=axis, keepdims=keepdims, dtype=F64))


def _clip(node: ir.Node, args: list[Evaluated | None]) -> np.ndarray:
    x = _arg(args, 0)
    low = args[1][0] if len(args) > 1 and args[1] is not None else _attr(node, "min")
    high = args[2][0] if len(args) > 2 and args[2] is not None else _attr(node, "max")
    if low is not None:
        x = np.maximum(x, low, dtype=F64)
    if high is not None:
        x = np.minimum(x, high, dtype=F64)
    return x


def _reshape(node: ir.Node, args: list[Evaluated | None]) -> np.ndarray:
    x = _arg(args, 0)
    shape = [int(d) for d in _arg(args, 1).reshape(-1)]
    if not _attr(node, "allowzero", 0):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


def _unsqueeze(node: ir.Node, args: list[Evaluated | None]) -> np.ndarray:
    x = _arg(args, 0)
    axes = _axes(node, args) or ()
    rank = x.ndim + len(axes)
    return np.expand_dims(x, tuple(sorted(a % rank for a in axes)))


def _squeeze(node: ir.Node, args: list[Evaluated | None]) -> np.ndarray:
    x = _arg(args, 0)
    axes = _axes(node, args)
    return np.squeeze(x) if axes is None else np.squeeze(x, tuple(a % x.ndim for a in axes))


def _lp_normalization(node: ir.Node, args: list[Evaluated | None]) -> np.ndarray:
    x = _arg(args, 0)
    axis = int(_attr(node, "axis", -1))
    if int(_attr(node, "p", 2)) != 2:
        raise ValueError("only p=2 is evaluated")
    norm = _l2(x, (axis,), True)
    # ONNX Runtime leaves a zero vector at zero rather than dividing 0 by 0
    return np.divide(
        x, norm, out=np.zeros(np.broadcast_shapes(x.shape, norm.shape)), where=norm != 0
    )


def _flatten(node: ir.Node, args: list[Evaluated | None]) -> np.ndarray:
    x = _arg(args, 0)
    axis = int(_attr(node, "axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    return x.reshape(outer, -1)


_Op = Callable[[ir.Node, list[Evaluated | None]], np.ndarray]

_OPS: dict[str, _Op] = {
    "Identity": lambda n, a: _arg(a, 0),
    "Mul": lambda n, a: np.multiply(_arg(a, 0), _arg(a, 1), dtype=F64),
    "Div": lambda n, a: np.divide(_arg(a, 0), _arg(a, 1), dtype=F64),
    "Add": lambda n, a: np.add(_arg(a, 0), _arg(a, 1), dtype=F64),
    "Reciprocal": lambda n, a: np.reciprocal(_arg(a, 0), dtype=F64),
    "Sqrt": lambda n, a: np.sqrt(_arg(a, 0), dtype=F64),
    "Pow": lambda n, a: np.power(_arg(a, 0), _arg(a, 1), dtype=F64),
    "Max": lambda n, a: np.maximum(_arg(a, 0), _arg(a, 1), dtype=F64) if len(a) > 1 else _arg(a, 0),
    "Clip": _clip,
    "ReduceL2": _reduce(_l2),
    "ReduceSum": _reduce(_sum),
    "ReduceSumSquare": _reduce(sum_of_squares),
    "LpNormalization": _lp_normalization,
    "Transpose": lambda n, a: np.transpose(_arg(a, 0), _attr(n, "perm")),
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Expand": lambda n, a: np.multiply(
        _arg(a, 0), np.ones([int(d) for d in _arg(a, 1)]), dtype=F64
    ),
}

EVALUABLE_OPS = frozenset({*_OPS, "Cast", "Constant"})


def _result_dtype(node: ir.Node, args: list[Evaluated | None]) -> ir.DataType:
    if node.op_type == "Cast":
        return ir.DataType(int(_attr(node, "to")))
    for entry in args:
        if entry is not None and entry[1] in FLOAT_TYPES:
            return entry[1]
    first = args[0] if args else None
    return first[1] if first is not None else ir.DataType.FLOAT


def evaluate(value: ir.Value, memo: dict[ir.Value, Evaluated] | None = None) -> Evaluated:
    """Evaluate ``value`` from its constant leaves; float values come back as float64.

    Raises ``ValueError`` when the cone holds an op this module does not know or a leaf that is
    not constant; the matcher checks both before it calls here.
    """
    memo = {} if memo is None else memo
    if value in memo:
        return memo[value]
    const = ir.convenience.get_const_tensor(value)
    if const is not None and not value.is_graph_input():
        result = tensor_array(const)
    else:
        node = value.producer()
        if node is None or node.domain not in ("", "ai.onnx") or node.op_type not in EVALUABLE_OPS:
            raise ValueError(f"cannot evaluate {value.name!r}")
        args: list[Evaluated | None] = [
            None if inp is None else evaluate(inp, memo) for inp in node.inputs
        ]
        if node.op_type == "Cast":
            array = _arg(args, 0)
            dtype = _result_dtype(node, args)
            if dtype not in FLOAT_TYPES:
                array = array.astype(dtype.numpy())
            result = (array, dtype)
        else:
            result = (_OPS[node.op_type](node, args), _result_dtype(node, args))
    memo[value] = result
    return result
