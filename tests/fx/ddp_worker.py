"""The per-rank body of the DDP test: a weight-normed model trains a few steps under gloo."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from wnpass import apply_weight_norm

STEPS = 3


def train_rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Conv1d(1, 2, 3), nn.Flatten())
        apply_weight_norm(model)
        ddp = nn.parallel.DistributedDataParallel(model)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
        generator = torch.Generator().manual_seed(100 + rank)  # each rank its own data
        for _ in range(STEPS):
            x = torch.randn(4, 1, 6, generator=generator)
            optimizer.zero_grad()
            ddp(x).square().mean().backward()
            optimizer.step()
        torch.save({k: v.detach() for k, v in model.state_dict().items()}, Path(out) / f"{rank}.pt")
    finally:
        dist.destroy_process_group()
