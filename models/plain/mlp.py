"""A plain MLP classifier on 64 features (scikit-learn digits size), 10 classes: [B, 64] -> [B, 10].

The plain counterpart of ``models/mlp.py``: three Linear layers with ReLU, no weight norm, for
``wnpass train-rewrite`` and the training benchmark. Parameters: 16,522 with the defaults.
"""

from __future__ import annotations

import torch
from torch import nn


def build_model(*, in_features: int = 64, hidden: int = 96, num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def example_inputs() -> tuple[torch.Tensor, ...]:
    """A batch of 4 digit-like feature vectors: [4, 64] with values in [0, 16)."""
    g = torch.Generator().manual_seed(1)
    return (16 * torch.rand(4, 64, generator=g),)
