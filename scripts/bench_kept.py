"""The cost of ``--keep-objects``: a trainer's checkpoint with a configuration object, folded
keeping it, against the same checkpoint with a plain dict in its place.

Writes two files into ``--folder``: ``kept.ckpt``, a Lightning-style checkpoint of
``--layers`` legacy weight-norm ``Conv1d(16, 16, 3)`` layers (three tensors each) whose
``hyper_parameters`` hold a ``Config`` object of this script's own class (the weights-only
loader refuses it, as it refuses NeMo's ``omegaconf.DictConfig``: wnpass keeps it unbuilt and
writes it back through Python's pickler), and ``plain.ckpt``, the same with a dict of the same
values. Then prints the command that times them side by side:

    python scripts/bench_kept.py [--layers 1500] [--folder bench-out/kept]
    farm-bench -n 7 --warmup 1 --vs "python -m wnpass -q fold plain.ckpt -o p.ckpt" \\
        -- python -m wnpass -q fold kept.ckpt --keep-objects -o k.ckpt
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from torch import nn


@dataclasses.dataclass
class Config:
    """A training configuration, as a trainer saves it with the weights."""

    sample_rate: int = 22050
    channels: tuple[int, ...] = (16,) * 10
    name: str = "vocoder"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=1500)
    parser.add_argument("--folder", type=Path, default=Path("bench-out/kept"))
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    state = {}
    for i in range(args.layers):
        conv = torch.nn.utils.weight_norm(nn.Conv1d(16, 16, 3))
        state.update({f"model.layers.{i}.{k}": v.clone() for k, v in conv.state_dict().items()})
    config = Config()
    for name, hyper in (("kept", config), ("plain", dataclasses.asdict(config))):
        torch.save(
            {"state_dict": state, "hyper_parameters": {"cfg": hyper}, "epoch": 3},
            args.folder / f"{name}.ckpt",
        )
    print(
        f'cd {args.folder} && farm-bench -n 7 --warmup 1 --vs "python -m wnpass -q fold '
        'plain.ckpt -o p.ckpt" -- python -m wnpass -q fold kept.ckpt --keep-objects -o k.ckpt'
    )


if __name__ == "__main__":
    main()
