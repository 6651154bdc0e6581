"""A plain LSTM language model: tokens [B, T] -> logits [B, T, vocab_size].

The plain counterpart of ``models/lstm_lm.py`` (Embedding, 2-layer ``nn.LSTM``, Linear head), for
``wnpass train-rewrite`` and the LSTM training benchmark. Parameters: 68,068 with the defaults.
"""

from __future__ import annotations

import torch
from torch import nn


class LSTMLanguageModel(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(self.embedding(tokens))
        return self.head(y)


def build_model(
    *, vocab_size: int = 100, embed_dim: int = 32, hidden_size: int = 64, num_layers: int = 2
) -> nn.Module:
    torch.manual_seed(0)
    return LSTMLanguageModel(vocab_size, embed_dim, hidden_size, num_layers).eval()


def build_model_large() -> nn.Module:
    """Word-level LM sizes (vocabulary 1000, embedding 256, 2 x 512 hidden): 4,447,208 params."""
    return build_model(vocab_size=1000, embed_dim=256, hidden_size=512)


def example_inputs_large() -> tuple[torch.Tensor, ...]:
    """Two sequences of 16 token ids below the large vocabulary size: int64 [2, 16]."""
    g = torch.Generator().manual_seed(1)
    return (torch.randint(0, 1000, (2, 16), generator=g),)


def example_inputs() -> tuple[torch.Tensor, ...]:
    """Two sequences of 16 token ids below the default vocabulary size: int64 [2, 16]."""
    g = torch.Generator().manual_seed(1)
    return (torch.randint(0, 100, (2, 16), generator=g),)
