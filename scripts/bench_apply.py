"""Time and peak memory of ``apply_weight_norm`` on a model of tens of millions of parameters,
as one process: time it side by side with another checkout's (``hyperfine`` for the wall time,
``/usr/bin/time -v`` for the peak memory).

python scripts/bench_apply.py data mlp    # init="data" on 8 x Linear(2500, 2500): 50M params
python scripts/bench_apply.py keep tf     # init="keep" on a 12-layer TransformerEncoder, d 512
python scripts/bench_apply.py data flat   # init="data", every value a view of one flat parameter

What is measured is the whole process: importing torch and wnpass, building the model (the
same in both checkouts) and the call; its peak memory minus the model's is what the call adds.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from wnpass import apply_weight_norm


class _Flat(nn.Module):
    """Every value a view of one flat parameter of 102 MB (FSDP-like storage): an embedding
    and 8 Linear(256, 256), and a parameter that is a strided view of the embedding (its first
    8 features): what data init's sharing check reads byte by byte."""

    VOCABULARY, WIDTH, LAYERS = 100_000, 256, 8

    def __init__(self) -> None:
        super().__init__()
        v, d = self.VOCABULARY, self.WIDTH
        self.flat = nn.Parameter(torch.randn(v * d + self.LAYERS * (d * d + d)) * 0.05)
        self.emb = nn.Embedding(v, d)
        self.emb.weight = nn.Parameter(self.flat.data[: v * d].view(v, d))
        self.low = nn.Parameter(self.emb.weight.data[:, :8])
        self.layers = nn.ModuleList()
        at = v * d
        for _ in range(self.LAYERS):
            layer = nn.Linear(d, d)
            layer.weight = nn.Parameter(self.flat.data[at : at + d * d].view(d, d))
            layer.bias = nn.Parameter(self.flat.data[at + d * d : at + d * d + d])
            at += d * d + d
            self.layers.append(layer)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.emb(ids)
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


def build(kind: str) -> tuple[nn.Module, torch.Tensor]:
    """The model and a batch, from seed 0."""
    torch.manual_seed(0)
    if kind == "mlp":
        layers: list[nn.Module] = []
        for _ in range(8):
            layers += [nn.Linear(2500, 2500), nn.ReLU()]
        return nn.Sequential(*layers), torch.randn(64, 2500)
    if kind == "flat":
        return _Flat(), torch.randint(0, _Flat.VOCABULARY, (64,))
    layer = nn.TransformerEncoderLayer(512, 8, 2048, batch_first=True)
    return nn.TransformerEncoder(layer, 12, enable_nested_tensor=False), torch.randn(4, 64, 512)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("init", choices=["keep", "data"])
    parser.add_argument("model", choices=["mlp", "tf", "flat"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    model, batch = build(args.model)
    report = apply_weight_norm(model, (batch,), init=args.init)
    if not report:
        sys.exit(f"apply_weight_norm: {report.status}")


if __name__ == "__main__":
    main()
