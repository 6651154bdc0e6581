"""Parameter uses in PyTorch terms: module types mapped onto the table of :mod:`wnpass.axes`.

The axis itself is decided in one place, :func:`wnpass.axes.unit_axis` (torch-free, shared with
data init and the ONNX add pass). Here a :class:`Use` is one consumption of a parameter: the op,
and the axis or the reason there is none; :func:`module_uses` reads the known layer types
(Linear, Conv, ConvTranspose, Embedding, RNNs, MultiheadAttention) for the tracers that see
module calls rather than ops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn
from torch.nn import functional as F

from wnpass.axes import DimPolicy, OpKind, unit_axis

__all__ = [
    "DimPolicy",
    "Use",
    "bias_use",
    "conv_transpose_use",
    "layer_kind",
    "module_uses",
    "table_use",
    "unit_use",
]


@dataclasses.dataclass(frozen=True)
class Use:
    """A parameter consumed by one op: the unit axis, or None and why weight norm does not fit."""

    param: str
    op: str
    consumer: str
    axis: int | None
    reason: str | None = None


# An embedding with ``max_norm`` renormalizes the rows it reads in its stored weight, in place,
# at every forward: under weight norm that would land on the computed weight, never on g and v.
RENORMED = "modified in place in the forward (max_norm renormalizes the rows it reads)"
# A weight an op reads into another weight it writes in place (a mean teacher's update of its
# weights from the student's): the start of the reason, the op follows in parentheses.
READ_INTO_WRITTEN = "read into a weight written in place"
# A weight a forward in training mode, or the switch of modes around it, writes in place,
# replaces or hooks, where an eval forward does not (RWKV scales some weights back up when it
# is switched to training, after an eval forward scaled them down, t240; a train() override
# fuses BatchNorm into a conv, t257; a hook behind a flag, t258): under weight norm the write
# would land on the computed weight and be lost, and the hook sit on a tensor no layer reads.
TRAINING_WRITE = (
    "modified in place, replaced or hooked in a training-mode forward or a switch of modes "
    "(an eval forward does not show it: RWKV scales weights when its mode changes; a model "
    "may weight-norm a layer or hook its weight on its first training step)"
)
# A weight with a hook on it (``register_hook``, ``register_post_accumulate_grad_hook``): under
# weight norm the hook would sit on a tensor the layer no longer reads (t258).
HOOKED = (
    "a hook on the parameter (register_hook, register_post_accumulate_grad_hook): under "
    "weight norm it would sit on a tensor the layer no longer reads (apply weight norm "
    "before registering it)"
)


def renormed_table(func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """The table a call renormalizes in place: ``F.embedding`` or ``F.embedding_bag`` with
    ``max_norm`` (both take it fourth), whose write inside no op shows; else None."""
    if func not in (F.embedding, F.embedding_bag):
        return None
    max_norm = args[3] if len(args) > 3 else kwargs.get("max_norm")
    return None if max_norm is None else (args[1] if len(args) > 1 else kwargs.get("weight"))


# An embedding with ``sparse=True`` gives its table a sparse gradient, which the computed
# weight of weight norm cannot pass on to g and v: the first backward fails.
SPARSE = (
    "takes a sparse gradient (sparse=True), which weight norm's g and v cannot take: "
    "the backward fails"
)


# Where each embedding call takes ``sparse``: F.embedding's seventh argument, F.embedding_bag's
# eighth, torch.embedding's fifth and torch.embedding_bag's sixth (t201).
_SPARSE_AT = {F.embedding: 6, F.embedding_bag: 7, torch.embedding: 4, torch.embedding_bag: 5}


def sparse_table(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
    """Whether a call of an embedding function has ``sparse=True`` (a traced call's
    arguments too: a node in its place is no ``True``)."""
    position = _SPARSE_AT.get(func)
    if position is None:
        return False
    return (args[position] if len(args) > position else kwargs.get("sparse")) is True


def unit_use(param: str, op: str, consumer: str, axis: int) -> Use:
    return Use(param, op, consumer, axis)


def bias_use(param: str, op: str, consumer: str) -> Use:
    return Use(param, op, consumer, None, "bias")


def table_use(
    param: str,
    op: str,
    consumer: str,
    kind: OpKind,
    shape: list[int] | tuple[int, ...],
    **options: object,
) -> Use:
    """The use of a weight of ``shape`` by an op of ``kind``: the table's axis or its reason."""
    axis = unit_axis(kind, shape, **options)  # type: ignore[arg-type]
    if isinstance(axis, str):
        return Use(param, op, consumer, None, axis)
    return Use(param, op, consumer, axis)


def conv_transpose_use(
    param: str, op: str, consumer: str, groups: int, policy: DimPolicy, shape: list[int]
) -> Use:
    """The transposed-convolution weight ``(in, out/groups, k...)``: axis 1 (0 when depthwise),
    or 0 for "torch"; the shape decides for grouped ones."""
    return table_use(param, op, consumer, "conv_transpose", shape, groups=groups, policy=policy)


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


def layer_kind(owner: nn.Module, leaf: str) -> OpKind | None:
    """The op kind of the table that a known layer applies to its parameter ``leaf``, or None."""
    if leaf == "weight" and isinstance(owner, nn.Linear):
        return "linear"
    if leaf == "weight" and isinstance(owner, _CONV):
        return "conv"
    if leaf == "weight" and isinstance(owner, _CONV_T):
        return "conv_transpose"
    if leaf == "weight" and isinstance(owner, nn.Embedding):
        return "embedding"
    if (isinstance(owner, nn.RNNBase | nn.RNNCellBase) and leaf.startswith("weight_")) or (
        isinstance(owner, nn.MultiheadAttention) and leaf in _MHA_WEIGHTS
    ):
        return "linear"
    return None


def _is_bias(leaf: str) -> bool:
    return leaf.startswith("bias") or leaf.endswith("bias") or "_bias" in leaf


def module_uses(prefix: str, module: nn.Module, policy: DimPolicy, embeddings: bool) -> list[Use]:
    """The uses of every parameter of a leaf module (its whole subtree) when it is called."""
    op = parametrize.type_before_parametrizations(module).__name__
    uses: list[Use] = []
    for local, param in module.named_parameters(remove_duplicate=False):
        name = _join(prefix, local)
        leaf = local.rsplit(".", 1)[-1]
        owner = module.get_submodule(local.rpartition(".")[0]) if "." in local else module
        # a parameter of a leaf's submodule (MHA's out_proj) shows the leaf's op
        kind = layer_kind(owner, leaf)
        if _is_bias(leaf):
            uses.append(bias_use(name, op, prefix))
        elif kind == "embedding" and getattr(owner, "max_norm", None) is not None:
            uses.append(Use(name, op, prefix, None, RENORMED))
        elif kind == "embedding" and getattr(owner, "sparse", False):
            uses.append(Use(name, op, prefix, None, SPARSE))
        elif kind is not None:
            groups = int(getattr(owner, "groups", 1))
            shape = list(param.shape)
            uses.append(
                table_use(
                    name, op, prefix, kind, shape, groups=groups, policy=policy,
                    embeddings=embeddings,
                )
            )  # fmt: skip
        else:
            uses.append(_fallback(name, param.dim(), op, prefix))
    return uses
