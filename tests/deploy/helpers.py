"""Helpers shared by the deployment pipeline's tests: the repository's root (for its
example models), a model whose first input the TorchScript exporter drops, and one whose
output the TorchScript trace fixes at the example's batch."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

ROOT = Path(__file__).resolve().parents[2]


class UnusedFirst(nn.Module):
    """``mask`` is never read: the TorchScript exporter drops it from the graph's inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = weight_norm(nn.Linear(8, 6))
        self.drop = nn.Dropout(0.5)

    def forward(self, mask: torch.Tensor, x: torch.Tensor, scale: int = 1) -> torch.Tensor:
        return self.drop(self.fc(x)) * scale


def unused_first() -> tuple[UnusedFirst, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    return UnusedFirst(), (torch.zeros(3), torch.randn(2, 8))


class FlatByLen(nn.Module):
    """Flattens its output by ``len(x)``, which the TorchScript trace fixes at the example's."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).reshape(len(x) * 3)
