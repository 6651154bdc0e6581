"""The weight-norm rules every side shares, torch-free: key formats and the float64 product.

Weight normalization stores a weight ``W`` of module ``m`` as a gain ``g`` and a direction
``v``, under one of two key forms:

- parametrize (``torch.nn.utils.parametrizations.weight_norm``, wnpass):
  ``m.parametrizations.W.original0`` (``g``) and ``m.parametrizations.W.original1`` (``v``);
- legacy (``torch.nn.utils.weight_norm``): ``m.W_g`` and ``m.W_v``.

``W = g * v / ||v||``, the norm taken over every axis but ``dim``; ``dim=None`` takes it over
the whole tensor and ``g`` is a scalar. ``g`` keeps size 1 on every axis but ``dim``, so its
shape tells the axis: :func:`dim_from_shapes`. Every fold (PyTorch, ONNX, checkpoints)
computes the product with :func:`weight_from`: in float64, rounded once to ``v``'s dtype.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Literal

import numpy as np

from wnpass.rounding import round_once

__all__ = [
    "KeyForm",
    "PairKeys",
    "dim_from_shapes",
    "norm_axes",
    "pair_keys",
    "parse_key",
    "unit_size",
    "weight_from",
]

KeyForm = Literal["parametrize", "legacy"]

# A key is matched exactly as stored, whole: ``.`` takes a newline too (DOTALL; a ModuleDict key
# may hold one) and ``\Z`` is the key's end (``$`` would also match before a last newline, and
# read ``a.weight_g\n`` as ``a.weight_g``).
_PARAMETRIZED = re.compile(
    r"(?:(?P<module>.*)\.)?parametrizations\.(?P<param>[^.]+)\.original(?P<k>[01])\Z", re.DOTALL
)
_LEGACY = re.compile(r"(?P<param>.+)_(?P<role>[gv])\Z", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class PairKeys:
    """The keys of one weight-norm pair: the plain weight's name and where g and v live."""

    weight: str
    g: str
    v: str
    form: KeyForm


def pair_keys(weight: str, form: KeyForm) -> PairKeys:
    """The g and v keys of plain weight ``weight`` (``m.W``) in key form ``form``.

    The inverse of :func:`parse_key` for every name, also one whose module part is empty
    (``.weight``, a key some checkpoints hold): its keys keep the leading dot
    (``.parametrizations.weight.original0``), so that two weights never share a key.
    A name whose parameter part is empty (``""``, ``a.``) is no weight (PyTorch refuses an
    empty parameter name): ValueError.
    """
    if not weight.rpartition(".")[2]:
        raise ValueError(f"{weight!r} names no parameter (its last part is empty)")
    if form == "legacy":
        return PairKeys(weight, f"{weight}_g", f"{weight}_v", form)
    module, dot, leaf = weight.rpartition(".")
    base = f"{module}{dot}parametrizations.{leaf}"
    return PairKeys(weight, f"{base}.original0", f"{base}.original1", form)


def parse_key(key: str) -> tuple[PairKeys, Literal["g", "v"]] | None:
    """The pair a key would belong to and its role, or None for a key of neither form.

    A legacy ``*_g``/``*_v`` key is only a candidate: whether it really is one half of a pair
    is decided by finding the other half (``conv_v`` alone is an ordinary name), and a pair of
    one element per unit (:func:`unit_size`) may be two ordinary names (RWKV's ``time_mix_g``
    and ``time_mix_v``). A key is read exactly as stored: ``blk\n0.weight_g`` is ``g`` of
    ``blk\n0.weight``; ``a.weight_g\n`` (a last newline) is of neither form, and so is
    ``a._g``, whose parameter name would be empty (``a.``, no PyTorch parameter: ``_g`` is an
    ordinary name).
    """
    if match := _PARAMETRIZED.match(key):
        module, param = match["module"], match["param"]
        # an empty module ("" in ".parametrizations.weight.original0") is kept: weight ".weight"
        weight = param if module is None else f"{module}.{param}"
        return pair_keys(weight, "parametrize"), ("g" if match["k"] == "0" else "v")
    if (match := _LEGACY.match(key)) and match["param"].rpartition(".")[2]:
        role: Literal["g", "v"] = "g" if match["role"] == "g" else "v"
        return pair_keys(match["param"], "legacy"), role
    return None


def norm_axes(ndim: int, dim: int | None) -> tuple[int, ...]:
    """The axes ``||v||`` is taken over: every axis but ``dim``; all of them for ``None``."""
    return tuple(range(ndim)) if dim is None else tuple(a for a in range(ndim) if a != dim)


def unit_size(v_shape: Sequence[int], dim: int | None) -> int:
    """How many elements of ``v`` one unit holds (one norm is taken over them): the product of
    ``v``'s sizes over :func:`norm_axes`. Where it is 1, ``||v||`` is ``|v|`` and the weight is
    ``g * sign(v)``: nothing in the values tells such a pair from two plain tensors."""
    v_shape = tuple(v_shape)
    return math.prod(v_shape[axis] for axis in norm_axes(len(v_shape), dim))


def dim_from_shapes(g_shape: Sequence[int], v_shape: Sequence[int]) -> int | None:
    """The ``dim`` a pair was made with, read from ``g``'s shape; ValueError if none fits.

    A scalar ``g`` (or one element with ``v`` of several elements per axis) is the whole-tensor
    norm, ``None``. Otherwise ``g`` has ``v``'s rank, size 1 on every axis but one, and ``v``'s
    size there. Where ``v`` itself has size 1 on the kept axis, every choice gives the same
    product; the lowest such axis is returned.
    """
    g_shape, v_shape = tuple(g_shape), tuple(v_shape)
    if len(g_shape) == 0:
        return None
    if len(g_shape) != len(v_shape):
        raise ValueError(f"g {list(g_shape)} and v {list(v_shape)} differ in rank")
    kept = [a for a, size in enumerate(g_shape) if size != 1]
    if len(kept) > 1:
        raise ValueError(f"g {list(g_shape)} keeps more than one axis")
    if kept:
        axis = kept[0]
        if g_shape[axis] != v_shape[axis]:
            raise ValueError(f"g {list(g_shape)} does not match v {list(v_shape)} on axis {axis}")
        return axis
    # g has one element: the kept axis is one where v has size 1 too, or the whole tensor
    ones = [a for a, size in enumerate(v_shape) if size == 1]
    return ones[0] if ones else None


def weight_from(g: np.ndarray, v: np.ndarray, dim: int | None) -> np.ndarray:
    """``g * v / ||v||`` in float64, rounded once to ``v``'s dtype.

    ``g`` broadcasts against the norm (size 1 on every axis but ``dim``, or a scalar). A zero
    norm gives inf/NaN: callers that must not write such a weight check it first.
    """
    v64 = np.asarray(v).astype(np.float64)
    axes = norm_axes(v64.ndim, dim)
    norm = np.sqrt(np.sum(np.square(v64), axis=axes, keepdims=True))
    g64 = np.asarray(g).astype(np.float64)
    if v64.ndim and len(axes) == v64.ndim:
        g64 = g64.reshape(())
    with np.errstate(divide="ignore", invalid="ignore"):
        product = v64 * (g64 / norm)
    return round_once(product, np.asarray(v).dtype)
