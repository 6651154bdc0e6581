"""A HiFi-GAN-like vocoder without weight norm: mel [B, 80, T] -> audio [B, 1, 16 * T].

Not a published model: a small generator in HiFi-GAN's shape (conv_pre, two ConvTranspose1d
upsamplers with rates 8 and 2, a dilated residual Conv1d after each, conv_post, tanh), to show
that ``wnpass train-rewrite`` puts the transposed convolutions' norm per *output* channel
(axis 1) by default, where PyTorch's ``dim=0`` would normalize per input channel.
Parameters: 226,849 with the defaults.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TinyVocoder(nn.Module):
    def __init__(self, mels: int, channels: int) -> None:
        super().__init__()
        self.conv_pre = nn.Conv1d(mels, channels, 7, padding=3)
        self.ups = nn.ModuleList(
            [
                nn.ConvTranspose1d(channels, channels // 2, 16, stride=8, padding=4),
                nn.ConvTranspose1d(channels // 2, channels // 4, 4, stride=2, padding=1),
            ]
        )
        self.res = nn.ModuleList(
            [
                nn.Conv1d(channels // 2, channels // 2, 3, padding=3, dilation=3),
                nn.Conv1d(channels // 4, channels // 4, 3, padding=3, dilation=3),
            ]
        )
        self.conv_post = nn.Conv1d(channels // 4, 1, 7, padding=3)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for up, res in zip(self.ups, self.res, strict=True):
            x = up(F.leaky_relu(x, 0.1))
            x = x + res(F.leaky_relu(x, 0.1))
        return torch.tanh(self.conv_post(F.leaky_relu(x, 0.1)))


def build_model(*, mels: int = 80, channels: int = 128) -> nn.Module:
    torch.manual_seed(0)
    return TinyVocoder(mels, channels).eval()


def example_inputs() -> tuple[torch.Tensor, ...]:
    """A mel spectrogram of 20 frames: [1, 80, 20]."""
    g = torch.Generator().manual_seed(1)
    return (torch.randn(1, 80, 20, generator=g),)
