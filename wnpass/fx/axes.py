"""The output-unit axis of a weight, per consuming op: the one place that knows DESIGN.md's table.

Weight norm ``w = g * v / ||v||`` keeps one ``g`` per output unit: the norm runs over every axis
but the unit axis. Per op (weight layout -> unit axis):

- Linear, ``F.linear``, ``addmm(b, x, W.t())`` style ``(out, in)`` -> 0
- ``x @ W``, ``matmul``/``mm``/``addmm`` with the parameter on the right ``(in, out)`` -> last
- Conv1d/2d/3d (grouped too) ``(out, in/groups, k...)`` -> 0
- ConvTranspose1d/2d/3d ``(in, out/groups, k...)`` -> 1 (``dim_policy="unit"``, the paper's
  per-output-unit norm) or 0 (``dim_policy="torch"``: PyTorch's default, per *input* channel,
  what HiFi-GAN-style checkpoints use). With groups > 1 no single axis is one output unit, so
  the unit policy declines it.
- Embedding, ``F.embedding`` ``(num, dim)`` -> 0 (each row), only when asked for
- RNN/LSTM/GRU ``weight_ih``/``weight_hh``/``weight_hr`` ``(gates*hidden, in)`` -> 0
- MultiheadAttention ``in_proj_weight``/``q,k,v_proj_weight`` and ``out_proj.weight`` -> 0

A :class:`Use` is one consumption of a parameter: the op, and the axis or the reason there is none.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch.nn.utils.parametrize as parametrize
from torch import nn

__all__ = [
    "DimPolicy",
    "Use",
    "bias_use",
    "conv_transpose_use",
    "module_uses",
    "unit_use",
]

DimPolicy = Literal["unit", "torch"]


@dataclasses.dataclass(frozen=True)
class Use:
    """A parameter consumed by one op: the unit axis, or None and why weight norm does not fit."""

    param: str
    op: str
    consumer: str
    axis: int | None
    reason: str | None = None


def unit_use(param: str, op: str, consumer: str, axis: int) -> Use:
    return Use(param, op, consumer, axis)


def bias_use(param: str, op: str, consumer: str) -> Use:
    return Use(param, op, consumer, None, "bias")


def conv_transpose_use(param: str, op: str, consumer: str, groups: int, policy: DimPolicy) -> Use:
    """The transposed-convolution weight ``(in, out/groups, k...)``: axis 1, or 0 for "torch"."""
    if policy == "torch":
        return Use(param, op, consumer, 0)
    if groups > 1:
        reason = (
            f"grouped transposed convolution (groups={groups}): no single axis is one output "
            "unit; use dim_policy='torch' for PyTorch's dim=0"
        )
        return Use(param, op, consumer, None, reason)
    return Use(param, op, consumer, 1)


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_MHA_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _fallback(param: str, shape_dims: int, op: str, consumer: str) -> Use:
    if "bias" in param.rsplit(".", 1)[-1]:
        return bias_use(param, op, consumer)
    if shape_dims < 2:
        return Use(param, op, consumer, None, "1-D parameter (a scale or shift)")
    return Use(param, op, consumer, None, f"consumed inside {op}, which wnpass does not know")


def module_uses(prefix: str, module: nn.Module, policy: DimPolicy, embeddings: bool) -> list[Use]:
    """The uses of every parameter of a leaf module (its whole subtree) when it is called."""
    op = parametrize.type_before_parametrizations(module).__name__
    uses: list[Use] = []
    for local, param in module.named_parameters(remove_duplicate=False):
        name = _join(prefix, local)
        leaf = local.rsplit(".", 1)[-1]
        owner = module.get_submodule(local.rpartition(".")[0]) if "." in local else module
        owner_op = op  # a parameter of a leaf's submodule (MHA's out_proj) shows the leaf's op
        if leaf.startswith("bias") or leaf.endswith("bias") or "_bias" in leaf:
            uses.append(bias_use(name, owner_op, prefix))
        elif (isinstance(owner, nn.Linear) and leaf == "weight") or (
            isinstance(owner, _CONV) and leaf == "weight"
        ):
            uses.append(unit_use(name, owner_op, prefix, 0))
        elif isinstance(owner, _CONV_T) and leaf == "weight":
            uses.append(conv_transpose_use(name, owner_op, prefix, owner.groups, policy))
        elif isinstance(owner, nn.Embedding) and leaf == "weight":
            if embeddings:
                uses.append(unit_use(name, owner_op, prefix, 0))
            else:
                reason = "embedding: opt-in (embeddings=True)"
                uses.append(Use(name, owner_op, prefix, None, reason))
        elif (isinstance(owner, nn.RNNBase) and leaf.startswith("weight_")) or (
            isinstance(owner, nn.MultiheadAttention) and leaf in _MHA_WEIGHTS
        ):
            uses.append(unit_use(name, owner_op, prefix, 0))
        else:
            uses.append(_fallback(name, param.dim(), op, prefix))
    return uses
