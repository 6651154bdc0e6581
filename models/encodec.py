"""EnCodec / SEANet-like convolutional autoencoder: audio [B, 1, T] -> audio [B, 1, T'].

Imitates the SEANet encoder and decoder of EnCodec (Défossez et al., 2022; facebookresearch/
encodec), without the quantizer: weight-normed Conv1d and ConvTranspose1d applied with the
*legacy* hook API ``torch.nn.utils.weight_norm`` (default ``dim=0``, parameters ``weight_g`` and
``weight_v``), as EnCodec's ``norm="weight_norm"`` does. ELU activations, residual units with
dilated convolutions and an identity skip, reflect padding as in EnCodec's non-causal ``SConv1d``,
and a plain 2-layer LSTM with a skip connection at the bottleneck of each side (not weight-normed).

T' is T rounded down to a multiple of the hop length ``prod(ratios)``.

Parameter counts (weight-norm ``g`` and ``v`` counted):

- ``build_model()``: n_filters=8, ratios (4, 4, 2), dimension=32 -> 210,202 parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _weight_norm(module: nn.Module) -> nn.Module:
    # The legacy API is deprecated in favour of parametrizations; EnCodec still uses it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nn.utils.weight_norm(module)


class SConv1d(nn.Module):
    """Conv1d with EnCodec's non-causal reflect padding and weight norm."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, dilation: int = 1
    ) -> None:
        super().__init__()
        self.conv = _weight_norm(nn.Conv1d(in_ch, out_ch, kernel_size, stride, dilation=dilation))
        padding_total = (kernel_size - 1) * dilation - (stride - 1)
        self.pad_right = padding_total // 2
        self.pad_left = padding_total - self.pad_right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.pad_left, self.pad_right), mode="reflect")
        return self.conv(x)


class SConvTranspose1d(nn.Module):
    """ConvTranspose1d that trims its output as EnCodec's non-causal ``SConvTranspose1d``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.convtr = _weight_norm(nn.ConvTranspose1d(in_ch, out_ch, kernel_size, stride))
        padding_total = kernel_size - stride
        self.trim_right = padding_total // 2
        self.trim_left = padding_total - self.trim_right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convtr(x)
        return y[..., self.trim_left : y.shape[-1] - self.trim_right]


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, dilation: int, compress: int = 2) -> None:
        super().__init__()
        hidden = dim // compress
        self.block = nn.Sequential(
            nn.ELU(),
            SConv1d(dim, hidden, 3, dilation=dilation),
            nn.ELU(),
            SConv1d(hidden, dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class SLSTM(nn.Module):
    """LSTM over time with a skip connection; input and output [B, C, T]."""

    def __init__(self, dim: int, num_layers: int = 2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(2, 0, 1)
        y, _ = self.lstm(x)
        return (y + x).permute(1, 2, 0)


class SEANetCodec(nn.Module):
    def __init__(
        self,
        channels: int,
        dimension: int,
        n_filters: int,
        ratios: Sequence[int],
        n_residual_layers: int,
        dilation_base: int,
        kernel_size: int,
        lstm_layers: int,
    ) -> None:
        super().__init__()
        enc: list[nn.Module] = [SConv1d(channels, n_filters, kernel_size)]
        mult = 1
        for ratio in reversed(ratios):
            dim = mult * n_filters
            enc += [ResnetBlock(dim, dilation_base**j) for j in range(n_residual_layers)]
            enc += [nn.ELU(), SConv1d(dim, dim * 2, ratio * 2, stride=ratio)]
            mult *= 2
        enc += [SLSTM(mult * n_filters, lstm_layers), nn.ELU()]
        enc += [SConv1d(mult * n_filters, dimension, kernel_size)]
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [SConv1d(dimension, mult * n_filters, kernel_size)]
        dec += [SLSTM(mult * n_filters, lstm_layers)]
        for ratio in ratios:
            dim = mult * n_filters
            dec += [nn.ELU(), SConvTranspose1d(dim, dim // 2, ratio * 2, stride=ratio)]
            dec += [ResnetBlock(dim // 2, dilation_base**j) for j in range(n_residual_layers)]
            mult //= 2
        dec += [nn.ELU(), SConv1d(n_filters, channels, kernel_size)]
        self.decoder = nn.Sequential(*dec)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(audio))


def build_model(
    *,
    channels: int = 1,
    dimension: int = 32,
    n_filters: int = 8,
    ratios: Sequence[int] = (4, 4, 2),
    n_residual_layers: int = 1,
    dilation_base: int = 2,
    kernel_size: int = 7,
    lstm_layers: int = 2,
) -> nn.Module:
    """A small SEANet codec (EnCodec 24 kHz uses n_filters=32, ratios (8, 5, 4, 2), dim 128)."""
    torch.manual_seed(0)
    model = SEANetCodec(
        channels,
        dimension,
        n_filters,
        ratios,
        n_residual_layers,
        dilation_base,
        kernel_size,
        lstm_layers,
    )
    return model.eval()


def example_inputs() -> tuple[torch.Tensor, ...]:
    """Mono audio of 2048 samples: [1, 1, 2048] (a multiple of the default hop, 32)."""
    g = torch.Generator().manual_seed(1)
    return (0.1 * torch.randn(1, 1, 2048, generator=g),)
