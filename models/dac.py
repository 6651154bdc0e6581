"""Descript Audio Codec (DAC)-like encoder and decoder: audio [B, 1, T] -> audio [B, 1, T].

Imitates ``dac.model.dac.Encoder``/``Decoder`` (Kumar et al., 2023; descriptinc/
descript-audio-codec) without the residual vector quantizer, with weight norm applied as the
transformers port (``DacModel``) applies it: every Conv1d and ConvTranspose1d goes through
``torch.nn.utils.parametrizations.weight_norm`` with the default ``dim=0`` (per *input* channel for
the ConvTranspose1d upsamplers). Snake activations ``x + 1 / (alpha + 1e-9) * sin(alpha * x)^2``
with a learnable per-channel ``alpha``; residual units with dilations 1, 3, 9.

T must be a multiple of the hop length ``prod(encoder_rates)`` (DAC pads its input to one).

Parameter counts (weight-norm ``g`` and ``v`` counted):

- ``build_model()``: encoder_dim=8, rates (2, 4, 4), latent_dim=32, decoder_dim=64
  -> 129,946 parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def wn_conv1d(*args: int, **kwargs: int) -> nn.Module:
    return weight_norm(nn.Conv1d(*args, **kwargs))


def wn_conv_transpose1d(*args: int, **kwargs: int) -> nn.Module:
    return weight_norm(nn.ConvTranspose1d(*args, **kwargs))


class Snake1d(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        pad = (7 - 1) * dilation // 2
        self.block = nn.Sequential(
            Snake1d(dim),
            wn_conv1d(dim, dim, kernel_size=7, dilation=dilation, padding=pad),
            Snake1d(dim),
            wn_conv1d(dim, dim, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class EncoderBlock(nn.Sequential):
    def __init__(self, dim: int, stride: int) -> None:
        super().__init__(
            ResidualUnit(dim // 2, 1),
            ResidualUnit(dim // 2, 3),
            ResidualUnit(dim // 2, 9),
            Snake1d(dim // 2),
            wn_conv1d(
                dim // 2, dim, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)
            ),
        )


class DecoderBlock(nn.Sequential):
    def __init__(self, input_dim: int, output_dim: int, stride: int) -> None:
        super().__init__(
            Snake1d(input_dim),
            wn_conv_transpose1d(
                input_dim,
                output_dim,
                kernel_size=2 * stride,
                stride=stride,
                padding=math.ceil(stride / 2),
            ),
            ResidualUnit(output_dim, 1),
            ResidualUnit(output_dim, 3),
            ResidualUnit(output_dim, 9),
        )


class DACAutoencoder(nn.Module):
    def __init__(
        self,
        encoder_dim: int,
        encoder_rates: Sequence[int],
        latent_dim: int,
        decoder_dim: int,
        decoder_rates: Sequence[int],
    ) -> None:
        super().__init__()
        d = encoder_dim
        enc: list[nn.Module] = [wn_conv1d(1, d, kernel_size=7, padding=3)]
        for stride in encoder_rates:
            d *= 2
            enc.append(EncoderBlock(d, stride))
        enc += [Snake1d(d), wn_conv1d(d, latent_dim, kernel_size=3, padding=1)]
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [wn_conv1d(latent_dim, decoder_dim, kernel_size=7, padding=3)]
        for i, stride in enumerate(decoder_rates):
            dec.append(DecoderBlock(decoder_dim // 2**i, decoder_dim // 2 ** (i + 1), stride))
        out_dim = decoder_dim // 2 ** len(decoder_rates)
        dec += [Snake1d(out_dim), wn_conv1d(out_dim, 1, kernel_size=7, padding=3), nn.Tanh()]
        self.decoder = nn.Sequential(*dec)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(audio))


def build_model(
    *,
    encoder_dim: int = 8,
    encoder_rates: Sequence[int] = (2, 4, 4),
    latent_dim: int = 32,
    decoder_dim: int = 64,
    decoder_rates: Sequence[int] = (4, 4, 2),
) -> nn.Module:
    """A small DAC (DAC 44 kHz uses 64, (2, 4, 8, 8), 1024, 1536, (8, 8, 4, 2))."""
    torch.manual_seed(0)
    model = DACAutoencoder(encoder_dim, encoder_rates, latent_dim, decoder_dim, decoder_rates)
    return model.eval()


def example_inputs() -> tuple[torch.Tensor, ...]:
    """Mono audio of 2048 samples: [1, 1, 2048] (a multiple of the default hop, 32)."""
    g = torch.Generator().manual_seed(1)
    return (0.1 * torch.randn(1, 1, 2048, generator=g),)
