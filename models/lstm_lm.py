"""A small LSTM language model with weight-normed recurrent weights: tokens [B, T] -> logits.

Imitates the weight-normed LSTM language models of the weight-norm and AWD-LSTM line of work:
a plain Embedding, a 2-layer ``nn.LSTM`` whose ``weight_ih_l0``, ``weight_hh_l0``,
``weight_ih_l1`` and ``weight_hh_l1`` each go through
``torch.nn.utils.parametrizations.weight_norm(lstm, name=...)`` with the default ``dim=0`` (one
``g`` per gate row), and a weight-normed Linear head (``dim=0``). Output ``[B, T, vocab_size]``.

Parameter count (weight-norm ``g`` and ``v`` counted): 69,192 with the defaults.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class LSTMLanguageModel(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_size, num_layers, batch_first=True)
        for layer in range(num_layers):
            for kind in ("ih", "hh"):
                weight_norm(self.lstm, name=f"weight_{kind}_l{layer}")
        self.head = weight_norm(nn.Linear(hidden_size, vocab_size))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(self.embedding(tokens))
        return self.head(y)


def build_model(
    *, vocab_size: int = 100, embed_dim: int = 32, hidden_size: int = 64, num_layers: int = 2
) -> nn.Module:
    torch.manual_seed(0)
    return LSTMLanguageModel(vocab_size, embed_dim, hidden_size, num_layers).eval()


def example_inputs() -> tuple[torch.Tensor, ...]:
    """Two sequences of 16 token ids below the default vocabulary size: int64 [2, 16]."""
    g = torch.Generator().manual_seed(1)
    return (torch.randint(0, 100, (2, 16), generator=g),)
