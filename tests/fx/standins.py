"""Small stand-ins for what transformers models do to weights, without transformers.

- ``Conv1D``: GPT-2's layer, an ``(in, out)`` weight used as ``torch.addmm(bias, x, W)``;
- a tied ``lm_head`` (one Parameter under two names);
- outputs as a ``ModelOutput``-like dict subclass holding a ``DynamicCache``-like object;
- control flow on values (``if x.sum() > 0``), which no tracer follows;
- a block reused in a loop (the same weights consumed several times).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any

import torch
from torch import nn


class Conv1D(nn.Module):
    """transformers' ``Conv1D``: weight ``(in, out)``, ``addmm(bias, x, W)``."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.1)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size_out = (*x.size()[:-1], self.nf)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class Cache:
    """Like ``DynamicCache``: an object (not a container) holding per-layer tensors."""

    def __init__(self) -> None:
        self.keys: list[torch.Tensor] = []

    def update(self, key: torch.Tensor) -> None:
        self.keys.append(key)


class Output(OrderedDict[str, Any]):
    """Like ``ModelOutput``: a dict subclass."""


@dataclasses.dataclass
class Extra:
    hidden: torch.Tensor


class TinyGPT(nn.Module):
    """Embedding, Conv1D attention/MLP, tied head, cache output, value-dependent control flow."""

    def __init__(self, vocab: int = 16, dim: int = 8, layers: int = 2) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"c_attn": Conv1D(3 * dim, dim), "c_proj": Conv1D(dim, dim)})
            for _ in range(layers)
        )
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied

    def forward(self, input_ids: torch.Tensor, use_cache: bool = True) -> Output:
        h = self.wte(input_ids)
        cache = Cache()
        for block in self.blocks:
            assert isinstance(block, nn.ModuleDict)
            q, k, v = block["c_attn"](h).split(h.shape[-1], dim=-1)
            cache.update(k)
            attn = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
            h = h + block["c_proj"](attn)
            if h.sum() > 0:  # control flow on values
                h = h * 0.5
        h = self.ln_f(h)
        return Output(logits=self.lm_head(h), past=cache if use_cache else None, extra=Extra(h))


class Looped(nn.Module):
    """One Linear applied three times, and a functional weight reused in a Python loop."""

    def __init__(self) -> None:
        super().__init__()
        self.step = nn.Linear(6, 6)
        self.w = nn.Parameter(torch.randn(6, 6) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            x = torch.tanh(self.step(x)) @ self.w
        return x
