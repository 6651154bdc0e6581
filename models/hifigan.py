"""HiFi-GAN V1-like generator: mel spectrogram [B, 80, T] -> audio [B, 1, T * prod(upsample_rates)].

Imitates the generator of HiFi-GAN (Kong et al., 2020; jik876/hifi-gan) as BigVGAN and the
transformers port apply weight norm: every Conv1d and ConvTranspose1d (conv_pre, the upsamplers,
the dilated convolutions of the multi-receptive-field resblocks, conv_post) goes through
``torch.nn.utils.parametrizations.weight_norm`` with PyTorch's default ``dim=0``. For the
ConvTranspose1d upsamplers (weight layout ``(in, out, k)``) ``dim=0`` normalizes per *input*
channel, which is what existing checkpoints rely on.

Parameter counts (weight-norm ``g`` and ``v`` counted, as in ``model.parameters()``):

- ``build_model()``: upsample_initial_channel=192, rates (8, 8, 2, 2) -> 2,031,650 parameters.
- ``build_model_large()``: the real V1 layout with upsample_initial_channel=1024 (V1 uses 512)
  -> 55,131,138 parameters (about 221 MB in fp32), for benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

LRELU_SLOPE = 0.1


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


class ResBlock1(nn.Module):
    """HiFi-GAN ResBlock1: three (dilated conv, conv) pairs with residual adds."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(
                nn.Conv1d(
                    channels,
                    channels,
                    kernel_size,
                    dilation=d,
                    padding=get_padding(kernel_size, d),
                )
            )
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            weight_norm(
                nn.Conv1d(channels, channels, kernel_size, padding=get_padding(kernel_size))
            )
            for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            xt = c1(F.leaky_relu(x, LRELU_SLOPE))
            xt = c2(F.leaky_relu(xt, LRELU_SLOPE))
            x = xt + x
        return x


class Generator(nn.Module):
    def __init__(
        self,
        num_mels: int,
        upsample_initial_channel: int,
        upsample_rates: Sequence[int],
        upsample_kernel_sizes: Sequence[int],
        resblock_kernel_sizes: Sequence[int],
        resblock_dilation_sizes: Sequence[Sequence[int]],
    ) -> None:
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        self.conv_pre = weight_norm(nn.Conv1d(num_mels, upsample_initial_channel, 7, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for u, k in zip(upsample_rates, upsample_kernel_sizes, strict=True):
            self.ups.append(
                weight_norm(nn.ConvTranspose1d(ch, ch // 2, k, stride=u, padding=(k - u) // 2))
            )
            ch //= 2
            for rk, rd in zip(resblock_kernel_sizes, resblock_dilation_sizes, strict=True):
                self.resblocks.append(ResBlock1(ch, rk, rd))
        self.conv_post = weight_norm(nn.Conv1d(ch, 1, 7, padding=3))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            xs = blocks[0](x)
            for block in blocks[1:]:
                xs = xs + block(x)
            x = xs / self.num_kernels
        x = self.conv_post(F.leaky_relu(x))
        return torch.tanh(x)


def build_model(
    *,
    num_mels: int = 80,
    upsample_initial_channel: int = 192,
    upsample_rates: Sequence[int] = (8, 8, 2, 2),
    upsample_kernel_sizes: Sequence[int] = (16, 16, 4, 4),
    resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
    resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
) -> nn.Module:
    """A small HiFi-GAN V1-shaped generator (about 2.0M parameters with the defaults)."""
    torch.manual_seed(0)
    model = Generator(
        num_mels,
        upsample_initial_channel,
        upsample_rates,
        upsample_kernel_sizes,
        resblock_kernel_sizes,
        resblock_dilation_sizes,
    )
    return model.eval()


def build_model_large() -> nn.Module:
    """HiFi-GAN V1 layout at twice V1's width: about 55.1M parameters (221 MB fp32)."""
    return build_model(upsample_initial_channel=1024)


def example_inputs() -> tuple[torch.Tensor, ...]:
    """One mel spectrogram of 16 frames: [1, 80, 16] -> 4096 audio samples."""
    g = torch.Generator().manual_seed(1)
    return (torch.randn(1, 80, 16, generator=g),)


def example_inputs_large() -> tuple[torch.Tensor, ...]:
    """Inputs for build_model_large(): 32 mel frames, [1, 80, 32] -> 8192 audio samples."""
    g = torch.Generator().manual_seed(1)
    return (torch.randn(1, 80, 32, generator=g),)
