"""The output-unit axis of a weight per consuming op, torch-free: the one table every side uses.

Weight norm ``w = g * v / ||v||`` keeps one ``g`` per output unit: the norm runs over every axis
but the unit axis. The PyTorch analysis (module types, torch.fx, torch.export and the observed
forward), the data-dependent init and the ONNX add pass all ask :func:`unit_axis`; einsum
operands ask :func:`einsum_unit_axis`. Each answers an axis, or a string saying why no single
axis is one output unit. Per op kind (weight layout -> unit axis):

- ``linear``: Linear, ``F.linear``, MultiheadAttention projections, RNN ``weight_ih/hh/hr``
  ``(out, in)`` -> 0; ``matmul_left`` (``W @ x``) -> the row axis, ``ndim - 2``
- ``matmul_right``: ``x @ W``, ``addmm(b, x, W)`` ``(in, out)`` -> the last axis
- ``gemm`` (ONNX ``Gemm`` input B): ``transB=1`` ``(out, in)`` -> 0, else ``(in, out)`` -> 1
- ``conv`` (grouped too) ``(out, in/groups, k...)`` -> 0
- ``conv_tbc`` (``torch.conv_tbc``: fairseq's ``ConvTBC`` and ``LinearizedConvolution``)
  ``(k, in, out)`` -> 2, the last axis
- ``conv_transpose`` ``(in, out/groups, k...)`` -> 1 under ``policy="unit"``; with groups,
  0 when each group has one input and one output channel (depthwise ``(C, 1, k)``), else
  declined (an output channel is a block of rows of axis 0: no single axis); 0 under
  ``policy="torch"`` (PyTorch's ``dim=0``, per *input* channel, what HiFi-GAN-style
  checkpoints use)
- ``embedding`` ``(num, dim)`` -> 0 (each row), only when asked for

A batched weight (``ndim > 2`` with a leading axis of more than one element) in a matrix product
has units spread over two axes: declined. Legacy ``torch.nn.utils.weight_norm`` hooks are
recognized by type with :func:`is_legacy_hook`, legacy ``torch.nn.utils.spectral_norm`` ones
with :func:`is_legacy_spectral_norm_hook` (without importing torch).
"""

from __future__ import annotations

import string
import sys
from collections.abc import Sequence
from typing import Any, Literal

__all__ = [
    "DimPolicy",
    "OpKind",
    "contraction_equation",
    "einsum_unit_axis",
    "is_legacy_hook",
    "is_legacy_spectral_norm_hook",
    "output_unit_axis",
    "unit_axis",
]

DimPolicy = Literal["unit", "torch"]
OpKind = Literal[
    "linear", "matmul_left", "matmul_right", "gemm", "conv", "conv_transpose", "conv_tbc",
    "embedding",
]  # fmt: skip

EMBEDDING_OPT_IN = "embedding: opt-in (embeddings=True)"


def _matrix_axis(kind: str, shape: Sequence[int]) -> int | str:
    ndim = len(shape)
    if ndim < 2:
        return f"{kind} with a {ndim}-D weight has no output units"
    if any(size != 1 for size in shape[:-2]):
        return f"batched weight {list(shape)} in a matrix product: units span two axes"
    return ndim - 1 if kind == "matmul_right" else ndim - 2


def _conv_transpose_axis(shape: Sequence[int], groups: int) -> int | str:
    """The unit axis of a transposed-convolution weight ``(in, out/groups, k...)``.

    Output channel ``o = group * (out/groups) + j`` is ``weight[rows of group, j]``: axis 1
    without groups; with groups, axis 0 when every group has one input and one output channel
    (depthwise, ``(C, 1, k)``: row ``c`` is channel ``c``'s whole filter); otherwise a unit is
    a block of rows of axis 0 (``in/groups`` of them) at one index of axis 1, no single axis.
    """
    if groups <= 1:
        return 1
    in_per_group, out_per_group = shape[0] // groups, shape[1]
    if in_per_group == 1 and out_per_group == 1:
        return 0
    rows = f"{in_per_group} rows" if in_per_group > 1 else "one row"
    where = f"{rows} of axis 0" + ("" if out_per_group == 1 else " at one index of axis 1")
    return (
        f"grouped transposed convolution (groups={groups}, weight {list(shape)}): each output "
        f"channel is {where}, no single axis"
    )


def unit_axis(
    kind: OpKind,
    shape: Sequence[int],
    *,
    groups: int = 1,
    policy: DimPolicy = "unit",
    trans_b: bool = False,
    embeddings: bool = False,
    advise: bool = True,
) -> int | str:
    """The output-unit axis of a weight of ``shape`` consumed by an op of ``kind``, or why none
    (``advise``: with the ``dim_policy`` that gives one anyway, for a caller choosing it)."""
    if policy not in ("unit", "torch"):
        raise ValueError(f"dim_policy must be 'unit' or 'torch', not {policy!r}")
    ndim = len(shape)
    if ndim < 2:
        return "1-D parameter (a scale or shift)"
    if kind in ("linear", "conv"):
        return 0
    if kind == "conv_tbc":
        return 2 if ndim == 3 else f"conv_tbc with a {ndim}-D weight (it takes (k, in, out))"
    if kind in ("matmul_left", "matmul_right"):
        return _matrix_axis(kind, shape)
    if kind == "gemm":
        return 0 if trans_b else 1
    if kind == "conv_transpose":
        if policy == "torch":
            return 0
        axis = _conv_transpose_axis(shape, groups)
        advice = "; use dim_policy='torch' for PyTorch's dim=0" if advise else ""
        return axis if isinstance(axis, int) else axis + advice
    if kind == "embedding":
        return 0 if embeddings else EMBEDDING_OPT_IN
    raise ValueError(f"unknown op kind {kind!r}")


def output_unit_axis(
    kind: OpKind, output_ndim: int | None = None, weight_ndim: int | None = None
) -> int | str:
    """Where a layer's output keeps its units, or why that is not known.

    ``linear`` and ``conv_tbc`` (time, batch, channels): the last axis, batched or not. A
    convolution (transposed too) with a weight of
    ``weight_ndim`` axes ``(out, in, *kernel)`` gives a batched output ``(N, C, *spatial)`` of
    as many axes, channels at 1, or an unbatched one ``(C, *spatial)`` of one fewer, channels
    at 0 (PyTorch's own two layouts); an output of any other rank (a subclass that reshapes)
    has no known channel axis. Without the ranks: the batched layout.
    """
    if kind in ("linear", "conv_tbc"):
        return -1
    if output_ndim is None or weight_ndim is None or output_ndim == weight_ndim:
        return 1
    if output_ndim == weight_ndim - 1:
        return 0
    return (
        f"{kind} output {output_ndim}-D for a {weight_ndim}-D weight is neither (N, C, ...) "
        "nor (C, ...): no known channel axis"
    )


def _einsum_terms(equation: str, count: int) -> tuple[list[str], str] | str:
    equation = equation.replace(" ", "")
    inputs, arrow, output = equation.partition("->")
    terms = inputs.split(",")
    if len(terms) != count:
        return f"einsum {equation!r}: {len(terms)} terms for {count} operands"
    if not arrow:  # implicit output: the letters that appear once, sorted
        letters = inputs.replace("...", "").replace(",", "")
        output = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    return terms, output.replace("...", "")


def einsum_unit_axis(equation: str, operand: int, shapes: Sequence[Sequence[int]]) -> int | str:
    """The unit axis of operand ``operand`` of ``torch.einsum(equation, *operands)``, or why none.

    The weight's units are its letters that reach the output without appearing in any other
    operand (a letter shared with the input and kept is a batch axis, one summed away is
    contracted). Exactly one such letter, and no shared kept letter, gives the unit axis.
    """
    parsed = _einsum_terms(equation, len(shapes))
    if isinstance(parsed, str):
        return parsed
    terms, output = parsed
    mine = terms[operand]
    if "." in mine:
        return f"einsum {equation!r}: an ellipsis over the weight is not followed"
    if len(mine) != len(shapes[operand]) or len(set(mine)) != len(mine):
        return f"einsum {equation!r}: operand {operand} is not a plain weight term"
    others = "".join(t for i, t in enumerate(terms) if i != operand).replace(".", "")
    units = [c for c in mine if c in output and c not in others]
    shared = [c for c in mine if c in output and c in others]
    if shared:
        return f"einsum {equation!r}: the weight keeps batch axes {shared}"
    if len(units) != 1:
        return f"einsum {equation!r}: the weight has {len(units)} output axes, not one"
    return mine.index(units[0])


def contraction_equation(
    op: str, ndims: Sequence[int], dims: int | Sequence[Sequence[int]] = 2
) -> str | None:
    """The einsum equation of a contraction on operands of ``ndims`` axes, whose operands
    :func:`einsum_unit_axis` then reads; None where it is no contraction (a 0-d operand of
    ``inner`` multiplies).

    ``tensordot``: ``dims`` is the number of ``a``'s last axes contracted with as many first of
    ``b``'s, or the two lists of axes; ``inner``: the last axes of both; ``multi_dot``: a chain
    of matrix products (the first and last operand may be vectors).
    """
    letters = string.ascii_letters
    if op == "multi_dot":
        count = len(ndims)
        terms = [letters[i : i + 2] for i in range(count)]
        first, last = ndims[0] == 1, ndims[-1] == 1
        terms[0], terms[-1] = terms[0][first:], terms[-1][: 2 - last]
        return f"{','.join(terms)}->{'' if first else 'a'}{'' if last else letters[count]}"
    a, b = ndims
    if op == "inner":
        if a == 0 or b == 0:
            return None
        dims = [[a - 1], [b - 1]]
    if isinstance(dims, int):
        dims = [list(range(a - dims, a)), list(range(dims))]
    left = letters[:a]
    paired = {j % b: left[i % a] for i, j in zip(dims[0], dims[1], strict=True)}
    fresh = iter(letters[a:])
    right = "".join(paired[j] if j in paired else next(fresh) for j in range(b))
    kept = [c for c in left if c not in right] + [c for c in right if c not in left]
    return f"{left},{right}->{''.join(kept)}"


def _hook_of(hook: Any, module_name: str, class_name: str) -> bool:
    """Whether ``hook`` is an instance of ``module_name.class_name``, by type.

    torch is not imported here: a model holding such a hook has imported that module already.
    """
    cls = getattr(sys.modules.get(module_name), class_name, None)
    return isinstance(cls, type) and isinstance(hook, cls)


def is_legacy_hook(hook: Any) -> bool:
    """Whether a forward pre-hook is ``torch.nn.utils.weight_norm``'s ``WeightNorm``."""
    return _hook_of(hook, "torch.nn.utils.weight_norm", "WeightNorm")


def is_legacy_spectral_norm_hook(hook: Any) -> bool:
    """Whether a forward pre-hook is ``torch.nn.utils.spectral_norm``'s ``SpectralNorm``: it
    computes the weight from ``<name>_orig`` each forward, as the weight-norm hook does."""
    return _hook_of(hook, "torch.nn.utils.spectral_norm", "SpectralNorm")
