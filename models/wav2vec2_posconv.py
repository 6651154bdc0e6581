"""wav2vec2 / HuBERT positional convolution embedding, followed by LayerNorm and a projection.

Imitates ``Wav2Vec2PositionalConvEmbedding`` and the start of ``Wav2Vec2Encoder`` from
transformers (fairseq's ``pos_conv``): a grouped Conv1d(C, C, kernel_size=K, padding=K // 2,
groups=G) weight-normed with ``torch.nn.utils.parametrizations.weight_norm(conv, name="weight",
dim=2)``, so the norm runs over axes (0, 1) and there is one ``g`` per kernel tap (``g`` has shape
``[1, 1, K]``). When K is even, SamePad drops the last output sample; then GELU and a residual add,
a plain LayerNorm and a plain Linear projection. Input and output are ``[B, T, C]``.

Parameter counts (weight-norm ``g`` and ``v`` counted):

- ``build_model()``: C=64, K=16, G=4 -> 20,752 parameters.
- ``build_model_large()``: the real wav2vec2-base sizes C=768, K=128, G=16 -> 5,311,616
  parameters (about 21 MB in fp32).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class SamePad(nn.Module):
    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.num_pad_remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_pad_remove > 0:
            x = x[:, :, : -self.num_pad_remove]
        return x


class PositionalConvEmbedding(nn.Module):
    def __init__(self, hidden_size: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        conv = nn.Conv1d(
            hidden_size, hidden_size, kernel_size, padding=kernel_size // 2, groups=groups
        )
        self.conv = weight_norm(conv, name="weight", dim=2)
        self.padding = SamePad(kernel_size)
        self.activation = nn.GELU()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        x = self.conv(hidden_states.transpose(1, 2))
        x = self.activation(self.padding(x))
        return x.transpose(1, 2)


class PosConvEncoderStem(nn.Module):
    def __init__(self, hidden_size: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        self.pos_conv_embed = PositionalConvEmbedding(hidden_size, kernel_size, groups)
        self.layer_norm = nn.LayerNorm(hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        x = hidden_states + self.pos_conv_embed(hidden_states)
        return self.proj(self.layer_norm(x))


def build_model(*, hidden_size: int = 64, kernel_size: int = 16, groups: int = 4) -> nn.Module:
    """A small positional-convolution stem (C=64, K=16, G=4 by default)."""
    torch.manual_seed(0)
    return PosConvEncoderStem(hidden_size, kernel_size, groups).eval()


def build_model_large() -> nn.Module:
    """The real wav2vec2-base sizes: C=768, K=128, G=16 (about 5.3M parameters)."""
    return build_model(hidden_size=768, kernel_size=128, groups=16)


def example_inputs() -> tuple[torch.Tensor, ...]:
    """Features for 64 frames: [1, 64, 64]. Fits build_model()'s default C only."""
    g = torch.Generator().manual_seed(1)
    return (torch.randn(1, 64, 64, generator=g),)


def example_inputs_large() -> tuple[torch.Tensor, ...]:
    """Inputs for build_model_large(): 200 frames (4 s of 16 kHz audio) of C=768, [1, 200, 768]."""
    g = torch.Generator().manual_seed(1)
    return (torch.randn(1, 200, 768, generator=g),)
