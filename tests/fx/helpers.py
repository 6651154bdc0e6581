"""Shared helpers of the PyTorch-side tests: tiny models, plain example models, output checks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from wnpass import load_model_py

ROOT = Path(__file__).resolve().parents[2]
PLAIN = ROOT / "models" / "plain"
PLAIN_MODELS = sorted(p.stem for p in PLAIN.glob("*.py"))

# init="keep" recomputes w = g * v / ||v|| in float32: a few ulps (~1e-7 relative) per weight,
# grown by sums over K inputs; the library's own KEEP_RTOL (1e-5) is the bound users get, and a
# wrong axis or a lost weight gives errors of order 1.
KEEP_RTOL = 1e-5


def plain(name: str) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    model, inputs = load_model_py(PLAIN / f"{name}.py")
    assert inputs is not None
    return model, inputs


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


class Functional(nn.Module):
    """Weights used functionally: F.linear, x @ W (in, out) and W @ x."""

    def __init__(self) -> None:
        super().__init__()
        self.w_linear = nn.Parameter(torch.randn(6, 5))
        self.w_right = nn.Parameter(torch.randn(6, 7))  # x @ W: (in, out)
        self.w_left = nn.Parameter(torch.randn(3, 7))  # W @ x.T: (out, in)
        self.scale = nn.Parameter(torch.randn(4, 3))  # elementwise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.linear(x, self.w_linear)
        h = h @ self.w_right
        h = (self.w_left @ h.T).T
        return h * self.scale


class SharedBlock(nn.Module):
    """One Linear registered under four names (weight sharing, ``ModuleList([block] * 3)``, and
    an alias attribute), next to a weight tied between two different modules."""

    def __init__(self) -> None:
        super().__init__()
        block = nn.Linear(16, 16)
        self.blocks = nn.ModuleList([block] * 3)
        self.alias = block
        self.enc, self.dec = nn.Linear(16, 16), nn.Linear(16, 16)
        self.dec.weight = self.enc.weight  # tied across modules
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = torch.tanh(block(x))
        return self.head(self.alias(self.dec(self.enc(x))))


def unit_index(shape: Sequence[int], axis: int) -> torch.Tensor:
    """A tensor of ``shape`` whose every element is its index along ``axis``: the unit it
    belongs to, for checking where an op moves a layer's units (``wnpass.fx.units``)."""
    view = [1] * len(shape)
    view[axis] = shape[axis]
    return torch.arange(shape[axis]).view(view).expand(*shape)


def varies(index: torch.Tensor) -> list[int]:
    """The axes along which ``index`` changes: those a unit's elements are spread over."""
    return [j for j in range(index.dim()) if (index != index.narrow(j, 0, 1)).any()]
