"""Mean-only batch normalization (Salimans & Kingma, 2016): subtract the batch mean, add a bias.

The paper pairs weight normalization with it: ``y = x - mean_batch(x) + b`` per channel, with a
running mean for evaluation and no division by the standard deviation (weight norm already fixes
the scale). :func:`replace_batch_norm` swaps ``BatchNorm1d/2d/3d`` layers for it in place,
keeping their bias and running mean; their scale and running variance are dropped, so the
model's outputs change and no equivalence check applies. A BatchNorm whose class has a forward
of its own (timm's ``BatchNormAct2d``, which adds an activation; ``SyncBatchNorm``, which
averages across processes) is left as it is, said with its reason; a subclass that keeps
BatchNorm's forward (one that changes its defaults) is replaced as BatchNorm is.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

__all__ = ["MeanOnlyBatchNorm", "replace_batch_norm"]

logger = logging.getLogger(__name__)


class MeanOnlyBatchNorm(nn.Module):
    """Per-channel (axis 1) mean subtraction with a running mean, plus a learned bias; with
    ``track_running_stats=False``, the batch's mean in evaluation too (as BatchNorm has it)."""

    def __init__(
        self, num_features: int, momentum: float = 0.1, track_running_stats: bool = True
    ) -> None:
        super().__init__()
        self.num_features, self.momentum = num_features, momentum
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.running_mean: torch.Tensor | None
        mean = torch.zeros(num_features) if track_running_stats else None
        self.register_buffer("running_mean", mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1, self.num_features] + [1] * (x.dim() - 2)
        running = self.running_mean
        if self.training or running is None:
            mean = x.mean(dim=[0, *range(2, x.dim())])
            if self.training and running is not None:
                with torch.no_grad():
                    running.lerp_(mean.detach().to(running.dtype), self.momentum)
        else:
            mean = running
        return x - mean.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        tracked = "" if self.running_mean is not None else ", track_running_stats=False"
        return f"{self.num_features}, momentum={self.momentum}{tracked}"


_BATCH_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# the forward of each of them: a subclass with its own does more, or otherwise (t312, t314)
_BATCH_NORM_FORWARD = nn.modules.batchnorm._BatchNorm.forward


def replace_batch_norm(
    model: nn.Module,
) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """Replace every BatchNorm layer in place, under each name it has (one layer under two
    names stays one), its bias and running mean of their own device and dtype. Returns
    (name, type) of each one replaced, by its first name; and (name, type, why) of each layer
    whose class has a forward of its own, left as it is: it replaced timm's ``BatchNormAct2d``,
    dropping the activation its forward adds (33 of EfficientNet-B0's 49 SiLUs, t312)."""
    replaced: list[tuple[str, str]] = []
    left: list[tuple[str, str, str]] = []
    made: dict[int, MeanOnlyBatchNorm] = {}
    said: set[int] = set()  # the layers left, each said once
    model_kind = _kind_of(model)
    for name, module in list(model.named_modules(remove_duplicate=False)):
        if not isinstance(module, nn.modules.batchnorm._BatchNorm) or not name:
            continue
        if type(module).forward is not _BATCH_NORM_FORWARD or not isinstance(module, _BATCH_NORM):
            if id(module) not in said:
                said.add(id(module))
                left.append((name, type(module).__name__, _left_as_it_is(module)))
            continue
        new = made.get(id(module))
        if new is None:
            new = made[id(module)] = _mean_only(module, model_kind)
            replaced.append((name, type(module).__name__))
            logger.debug("%s: %s -> MeanOnlyBatchNorm", name, type(module).__name__)
        parent_name, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent_name), leaf, new)
    return replaced, left


def _left_as_it_is(module: nn.Module) -> str:
    """Why a BatchNorm layer of another class is not made mean-only."""
    return f"{type(module).__name__}'s forward is not BatchNorm's: not made mean-only"


def _kind_of(model: nn.Module) -> torch.Tensor | None:
    """A floating-point tensor of ``model``, for the dtype and device of what a layer that
    holds none is given (zeros like it)."""
    tensors = (*model.parameters(), *model.buffers())
    return next((t for t in tensors if t.is_floating_point()), None)


def _mean_only(
    module: nn.modules.batchnorm._BatchNorm, model_kind: torch.Tensor | None
) -> MeanOnlyBatchNorm:
    """The layer that replaces ``module``: its momentum, bias and running mean (or none), of
    their own dtype and device; zeros like its tensors (or, with none, the model's)."""
    momentum = module.momentum if module.momentum is not None else 0.1
    mean = module.running_mean if isinstance(module.running_mean, torch.Tensor) else None
    new = MeanOnlyBatchNorm(module.num_features, momentum, track_running_stats=mean is not None)
    like = mean if mean is not None else module.bias if module.affine else model_kind
    with torch.no_grad():
        if mean is not None:
            new.running_mean = mean.detach().clone()
        if module.affine:
            new.bias = nn.Parameter(module.bias.detach().clone())
        elif like is not None:  # no bias to keep: zeros of the layer's kind
            new.bias = nn.Parameter(torch.zeros(module.num_features, dtype=like.dtype,
                                                device=like.device))  # fmt: skip
    new.train(module.training)
    return new
