"""The per-rank body of the distributed tests: a weight-normed model trains under gloo.

``ScaleNet`` has a conv, a transposed conv, an LSTM and a Linear. Each rank draws its own
batches; :func:`reference_state` trains the same model in one process on both ranks' batches
together, which is what data-parallel training computes (equal batch sizes, mean loss).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from wnpass import apply_weight_norm

STEPS = 3
BATCH = 4  # per rank
LR = 0.1
MODES = ("ddp", "ddp_compile", "fsdp2")
COMPILE_BACKEND = "aot_eager"


class ScaleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=1)
        self.up = nn.ConvTranspose1d(4, 4, 2, stride=2)
        self.lstm = nn.LSTM(4, 6, batch_first=True)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.up(torch.tanh(self.conv(x))))
        out, _ = self.lstm(h.transpose(1, 2))
        return self.head(out[:, -1])


def build() -> nn.Module:
    """The rewritten model every rank and the reference start from."""
    torch.manual_seed(0)
    model = ScaleNet()
    report = apply_weight_norm(model, (torch.randn(2, 2, 5),))
    assert report.applied == 5, report.status  # conv, up, lstm ih and hh, head
    return model.train()


def batches(rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(100 + rank)
    return [
        (torch.randn(BATCH, 2, 5, generator=generator), torch.randn(BATCH, 3, generator=generator))
        for _ in range(STEPS)
    ]


def _train(model: nn.Module, step_model: Callable[..., Any], data: list[Any]) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for x, y in data:
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(step_model(x), y).backward()
        optimizer.step()


def reference_state(world: int) -> dict[str, torch.Tensor]:
    """One process, every rank's batch at each step."""
    model = build()
    per_rank = [batches(rank) for rank in range(world)]
    data = [
        (torch.cat([d[s][0] for d in per_rank]), torch.cat([d[s][1] for d in per_rank]))
        for s in range(STEPS)
    ]
    _train(model, model, data)
    return {k: v.detach() for k, v in model.state_dict().items()}


def _full(value: torch.Tensor) -> torch.Tensor:
    full = getattr(value, "full_tensor", None)  # FSDP2 shards are DTensors
    return (full() if callable(full) else value).detach().clone()


def train_rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for mode in MODES:
            model = build()
            if mode == "fsdp2":
                from torch.distributed.device_mesh import init_device_mesh
                from torch.distributed.fsdp import fully_shard

                fully_shard(model, mesh=init_device_mesh("cpu", (world,)))
                wrapped: Callable[..., Any] = model
            else:
                wrapped = nn.parallel.DistributedDataParallel(model)
                if mode == "ddp_compile":
                    wrapped = torch.compile(wrapped, backend=COMPILE_BACKEND)
            _train(model, wrapped, batches(rank))
            state = {k: _full(v) for k, v in model.state_dict().items()}
            torch.save(state, Path(out) / f"{mode}-{rank}.pt")
    finally:
        dist.destroy_process_group()
