"""A tiny weight-normed MLP classifier on 64 features (scikit-learn digits size), 10 classes.

Not a published architecture: the smallest model that shows both weight-norm layouts, for the
quick start and the tests. Linear layers go through
``torch.nn.utils.parametrizations.weight_norm``: ``fc1`` and ``fc2`` with the default ``dim=0``
(one ``g`` per output unit, shape ``[out, 1]``), ``head`` with ``dim=None`` (one scalar ``g`` for
the whole tensor; PyTorch stores it as ``dim=-1``, which here means "no axis kept").

Parameter count (weight-norm ``g`` and ``v`` counted): 16,715.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.fc1 = weight_norm(nn.Linear(in_features, hidden))
        self.fc2 = weight_norm(nn.Linear(hidden, hidden))
        self.head = weight_norm(nn.Linear(hidden, num_classes), dim=None)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        return self.head(x)


def build_model(*, in_features: int = 64, hidden: int = 96, num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return MLP(in_features, hidden, num_classes).eval()


def example_inputs() -> tuple[torch.Tensor, ...]:
    """A batch of 4 digit-like feature vectors: [4, 64] with values in [0, 16)."""
    g = torch.Generator().manual_seed(1)
    return (16 * torch.rand(4, 64, generator=g),)
