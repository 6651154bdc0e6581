"""What a torch call does with the tensors it is given, told by the op's name and arguments.

The names of ops grouped by what their result holds of an operand's elements (the same ones,
each where it was; reshaped; permuted; reordered along axes; a slice), the ops of layers, and
readers of the arguments these ops take. Shared by the recorder of parameter uses
(:mod:`wnpass.fx.observe`) and the follower of what layers compute from weights
(:mod:`wnpass.fx.mixing`), so that both read an op the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

# Ops whose result keeps a weight's axes, each element where it was: conversions, copies,
# and dropout of the weight itself (DropConnect: ``F.linear(x, F.dropout(W, p, training))``,
# the identity in eval mode, a mask of elements in training, t256).
IDENTITY = {
    "to", "float", "half", "bfloat16", "double", "type", "type_as", "contiguous", "clone",
    "detach", "data", "requires_grad_", "cpu", "cuda", "alias", "_cast_Float", "positive",
    "dropout", "alpha_dropout", "feature_alpha_dropout",
}  # fmt: skip
RESHAPE = {
    "view", "reshape", "view_as", "reshape_as", "flatten", "unflatten", "squeeze", "unsqueeze",
    "atleast_2d", "atleast_3d", "_unsafe_view",
}  # fmt: skip
# A weight multiplied or divided by one number keeps its axes: StyleGAN's equalized learning
# rate (``F.linear(x, W * scale)``). Division only with the weight as the dividend.
DIVISIONS = {"div", "divide", "true_divide", "__truediv__"}
SCALINGS = {"mul", "multiply", "__mul__", "__rmul__"} | DIVISIONS
PERMUTES = {"t", "T", "mT", "transpose", "swapaxes", "swapdims", "permute", "movedim", "moveaxis"}
# Copies that reorder elements along axes and keep every axis (``F.conv2d(x, W.flip(2, 3))``: a
# transposed convolution written as a convolution); each unit's elements stay one unit's. A
# ``roll`` without dims rolls the flattened tensor across units: not one of them.
REORDERS = {"flip", "fliplr", "flipud", "roll"}
SLICE_KEEP = {"chunk", "split", "tensor_split", "split_with_sizes", "unsafe_split", "narrow"}
SLICE_DROP = {"unbind", "select"}
ELEMENTWISE = {
    "add", "mul", "sub", "div", "neg", "tanh", "sigmoid", "exp", "pow", "abs", "sqrt", "rsqrt",
    "__add__", "__radd__", "__mul__", "__rmul__", "__sub__", "__rsub__", "__truediv__",
    "__rtruediv__", "__rdiv__", "__neg__", "__pow__", "__rpow__", "relu", "softmax", "clamp",
    "where",
    "addcmul", "lerp", "exp_", "mul_", "add_", "sigmoid_", "maximum", "minimum", "square",
    "sin", "cos",
}  # fmt: skip

CONV = {"conv1d", "conv2d", "conv3d"}
CONV_TBC = "conv_tbc"  # time-first (fairseq's ConvTBC): weight (k, in, out)
CONV_T = {"conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
MATMUL = {"matmul", "mm", "bmm", "__matmul__", "__rmatmul__", "mv"}
RNN = {"lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell"}
RNN |= {"rnn_relu_cell"}
# The ops of layers: their output is computed through the layer, none of its operands'
# elements (what a write reads through one of them is no weight's, t257: a layer whose weight
# training computes, NoisyNet's ``mu + sigma * eps``, with no bias, spread its ``mu`` to every
# later activation, and a running statistic written from those skipped it).
LAYER_OPS = frozenset(
    {"linear", "bilinear", "convolution", "addmm", "baddbmm", "addbmm", "addmv", "einsum"}
    | {"embedding", "embedding_bag", "multi_head_attention_forward"}
    | {"_native_multi_head_attention"}
    | CONV
    | CONV_T
    | {CONV_TBC}
    | MATMUL
    | RNN
    | {"tensordot", "inner", "linalg_multi_dot"}
)
# How an op is named in a use's reason
LABELS = {
    "linear": "F.linear", "__matmul__": "matmul", "__rmatmul__": "matmul", "mm": "matmul",
    "multi_head_attention_forward": "MultiheadAttention", "conv_tbc": "torch.conv_tbc",
}  # fmt: skip


def name_of(func: Callable[..., Any]) -> str:
    """The op's name, as the tables above hold it."""
    name = str(getattr(func, "__name__", func))
    if name == "__get__":  # a property such as Tensor.T: the descriptor has the name
        name = str(getattr(getattr(func, "__self__", None), "__name__", name))
    return name


def argument(args: tuple[Any, ...], kwargs: Mapping[str, Any], position: int, keyword: str) -> Any:
    """An op's argument, given by ``position`` or ``keyword``; None where left out."""
    return kwargs.get(keyword, args[position] if len(args) > position else None)


def dim(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    """An op's ``dim`` argument (the second), 0 where left out."""
    return int(kwargs.get("dim", args[1] if len(args) > 1 else 0))


def dim_arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], position: int, ndim: int) -> int:
    """An op's ``dim`` (or ``axis``) argument at ``position``, as an axis of ``ndim``."""
    value = kwargs.get("dim", kwargs.get("axis", args[position] if len(args) > position else 0))
    return int(value) % max(ndim, 1)


def axes_arg(value: Any, ndim: int) -> list[int]:
    """One axis or several, as axes of ``ndim``."""
    return [int(a) % ndim for a in (value if isinstance(value, Sequence) else [value])]


def rolled_flat(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    """Whether ``roll`` rolls the flattened tensor: without dims (None, or none: t212)."""
    dims = kwargs.get("dims", args[2] if len(args) > 2 else None)
    return dims is None or (isinstance(dims, Sequence) and not dims)


def reordered_axes(
    name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], ndim: int
) -> list[int]:
    """The axes a flip, a roll (with dims), a shift of frequencies or a channel shuffle
    reorders."""
    if name == "fliplr" or "channel_shuffle" in name:
        return [1]
    if name == "flipud":
        return [0]
    if name in ("fft_fftshift", "fft_ifftshift"):
        dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
        return list(range(ndim)) if dims is None else axes_arg(dims, ndim)
    if name == "flip" and len(args) > 2:  # flip(0, 1), dims as separate arguments (t277)
        return axes_arg(list(args[1:]), ndim)
    at = 2 if name == "roll" else 1
    return axes_arg(kwargs.get("dims", args[at] if len(args) > at else ()), ndim)


def permutation(
    name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], ndim: int
) -> list[int]:
    """The input axis each axis of a permute's (:data:`PERMUTES`) result is."""
    order = list(range(ndim))
    if name in ("t", "T") and ndim == 2:
        return [1, 0]
    if name == "T":  # every dimension reversed (deprecated beyond 2-D, but still so)
        return order[::-1]
    if name == "mT" and ndim >= 2:
        order[-2], order[-1] = order[-1], order[-2]
        return order
    if name in ("transpose", "swapaxes", "swapdims"):
        d0 = int(kwargs["dim0"] if "dim0" in kwargs else args[1]) % ndim
        d1 = int(kwargs["dim1"] if "dim1" in kwargs else args[2]) % ndim
        order[d0], order[d1] = order[d1], order[d0]
        return order
    if name == "permute":
        return axes_arg(kwargs.get("dims", args[1] if len(args) == 2 else args[1:]), ndim)
    if name in ("movedim", "moveaxis"):  # the moved axes at their places, the rest in order
        source = axes_arg(kwargs.get("source", args[1] if len(args) > 1 else None), ndim)
        destination = axes_arg(kwargs.get("destination", args[2] if len(args) > 2 else None), ndim)
        rest = iter(a for a in order if a not in source)
        placed = dict(zip(destination, source, strict=True))
        return [placed[a] if a in placed else next(rest) for a in order]
    return order
