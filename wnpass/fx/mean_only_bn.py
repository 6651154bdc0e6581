"""Mean-only batch normalization (Salimans & Kingma, 2016): subtract the batch mean, add a bias.

The paper pairs weight normalization with it: ``y = x - mean_batch(x) + b`` per channel, with a
running mean for evaluation and no division by the standard deviation (weight norm already fixes
the scale). :func:`replace_batch_norm` swaps ``BatchNorm1d/2d/3d`` layers for it in place,
keeping their bias and running mean; their scale and running variance are dropped, so the
model's outputs change and no equivalence check applies.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

__all__ = ["MeanOnlyBatchNorm", "replace_batch_norm"]

logger = logging.getLogger(__name__)


class MeanOnlyBatchNorm(nn.Module):
    """Per-channel (axis 1) mean subtraction with a running mean, plus a learned bias."""

    def __init__(self, num_features: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features, self.momentum = num_features, momentum
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.running_mean: torch.Tensor
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1, self.num_features] + [1] * (x.dim() - 2)
        if self.training:
            dims = [0, *range(2, x.dim())]
            mean = x.mean(dim=dims)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
        else:
            mean = self.running_mean
        assert isinstance(mean, torch.Tensor)
        return x - mean.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, momentum={self.momentum}"


_BATCH_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def replace_batch_norm(model: nn.Module) -> list[tuple[str, str]]:
    """Replace every BatchNorm layer in place, under each name it has (one layer under two
    names stays one), its bias and running mean of their own device and dtype; returns
    (name, type) of each one replaced, by its first name."""
    replaced: list[tuple[str, str]] = []
    made: dict[int, MeanOnlyBatchNorm] = {}
    for name, module in list(model.named_modules(remove_duplicate=False)):
        if not isinstance(module, _BATCH_NORM) or not name:
            continue
        new = made.get(id(module))
        if new is None:
            new = made[id(module)] = _mean_only(module)
            replaced.append((name, type(module).__name__))
            logger.debug("%s: %s -> MeanOnlyBatchNorm", name, type(module).__name__)
        parent_name, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent_name), leaf, new)
    return replaced


def _mean_only(module: nn.modules.batchnorm._BatchNorm) -> MeanOnlyBatchNorm:
    momentum = module.momentum if module.momentum is not None else 0.1
    new = MeanOnlyBatchNorm(module.num_features, momentum)
    with torch.no_grad():
        mean = module.running_mean
        if isinstance(mean, torch.Tensor):
            new.running_mean = mean.detach().clone()
        if module.affine:
            new.bias = nn.Parameter(module.bias.detach().clone())
        elif isinstance(mean, torch.Tensor):  # no bias to keep: zeros of the layer's kind
            new.bias = nn.Parameter(torch.zeros_like(mean))
    new.train(module.training)
    return new
