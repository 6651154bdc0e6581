"""Which parameters the kernels of a forward read outside any torch function."""

from __future__ import annotations

import torch
from torch import nn

from wnpass.fx.forward import Batch, RngSnapshot
from wnpass.fx.kernels import kernel_reads


@torch.jit.script
def _scaled(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return x * alpha


class _Half(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3)
        self.alpha = nn.Parameter(torch.ones(3))
        self.unused = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _scaled(self.linear(x), self.alpha)


def test_only_the_kernels_no_torch_function_runs_are_counted() -> None:
    """A scripted function's multiply reads ``alpha``; the linear's kernels run inside
    ``F.linear``, the recorder's to see; nothing reads ``unused``."""
    model = _Half()
    batch = Batch((torch.randn(2, 3),), {})
    names = ["linear.weight", "linear.bias", "alpha", "unused"]
    found = kernel_reads(model, batch, names, RngSnapshot.take(model, batch))
    assert found == {"alpha": ["mul"]}
    assert model.training  # its mode given back
