"""A transformer encoder block with ``nn.MultiheadAttention``: [B, T, D] -> [B, T, D].

Pre-LayerNorm block as in GPT-2/ViT: ``x + MHA(LN(x))`` then ``x + FFN(LN(x))`` with a GELU
feed-forward of width 4D, followed by a Linear classifier head over the mean token
(``[B, T, D] -> [B, num_classes]``). D=64, 4 heads. Weight norm can go on the attention's packed
``in_proj_weight`` (3D x D, per output unit), ``out_proj`` and the FFN Linears.
Parameters: 50,634 with the defaults.
"""

from __future__ import annotations

import torch
from torch import nn


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, num_classes: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.ffn(self.norm2(x))
        return self.head(x.mean(dim=1))


def build_model(*, dim: int = 64, heads: int = 4, num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return EncoderBlock(dim, heads, num_classes).eval()


def example_inputs() -> tuple[torch.Tensor, ...]:
    """Two sequences of 8 tokens of width 64: [2, 8, 64]."""
    g = torch.Generator().manual_seed(1)
    return (torch.randn(2, 8, 64, generator=g),)
