"""Checkpoints built in code from tiny weight-normed models, and references to check folds.

The models imitate where weight norm sits in real checkpoints: a HiFi-GAN-like generator
(Conv1d with dim=0, ConvTranspose1d with PyTorch's default dim=0, i.e. per input channel), a
wav2vec2-like positional convolution (dim=2: g has shape [1, 1, K]), and a whole-tensor norm
(dim=None: a scalar g); each with the parametrize API or the legacy hook API.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import parametrizations

from wnpass.rounding import round_to_torch

__all__ = [
    "ULPS",
    "WEIGHTS",
    "Generator",
    "expected_weight",
    "generator",
    "hashes",
    "legacy_weight_norm",
    "load_any",
    "save_any",
    "save_sharded",
    "state_dict",
    "tensor_bytes",
]

# The fold rounds once from float64; PyTorch computes g * v / ||v|| in the weight's dtype with a
# rounding after the norm, the division and the product: at most a few ulps apart. 4 ulps.
ULPS = 4


def legacy_weight_norm(module: nn.Module, dim: int | None = 0) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.nn.utils.weight_norm(module, dim=dim)  # type: ignore[arg-type]


class Generator(nn.Module):
    """HiFi-GAN-like: conv_pre, one upsampling ConvTranspose1d, a residual conv, a pos_conv with
    dim=2, a whole-tensor normed conv_post; biases and a plain (not normed) conv in between."""

    def __init__(self, api: str = "parametrize") -> None:
        super().__init__()
        norm: Callable[..., nn.Module] = (
            parametrizations.weight_norm if api == "parametrize" else legacy_weight_norm
        )
        self.conv_pre = norm(nn.Conv1d(8, 16, 7, padding=3))
        self.ups = nn.ModuleList([norm(nn.ConvTranspose1d(16, 8, 4, stride=2, padding=1))])
        self.res = norm(nn.Conv1d(8, 8, 3, padding=1))
        self.plain = nn.Conv1d(8, 8, 1)
        self.pos_conv = norm(nn.Conv1d(8, 8, 4, padding=2, groups=2), dim=2)
        self.conv_post = norm(nn.Conv1d(8, 1, 7, padding=3), dim=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.leaky_relu(self.conv_pre(x), 0.1)
        x = torch.nn.functional.leaky_relu(self.ups[0](x), 0.1)
        x = x + self.res(x)
        x = self.plain(x)
        x = x + self.pos_conv(x)[..., :-1]
        return torch.tanh(self.conv_post(x))


WEIGHTS = {  # weight -> dim its g implies
    "conv_pre.weight": 0,
    "ups.0.weight": 0,
    "res.weight": 0,
    "pos_conv.weight": 2,
    "conv_post.weight": None,
}


def generator(api: str = "parametrize", seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    model = Generator(api)
    with torch.no_grad():  # g away from ||v||, so that folding really computes something
        for name, param in model.named_parameters():
            if name.endswith(("original0", "_g")):
                param.mul_(torch.rand_like(param) + 0.5)
    return model


def state_dict(
    api: str = "parametrize", dtype: torch.dtype = torch.float32, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A generator's state dict, every tensor contiguous and of ``dtype``."""
    return {
        k: v.detach().to(dtype).contiguous() for k, v in generator(api, seed).state_dict().items()
    }


def expected_weight(g: torch.Tensor, v: torch.Tensor, dim: int | None) -> torch.Tensor:
    """The float64 reference, computed by PyTorch (not wnpass): g * v / ||v||, rounded once
    (by ``round_to_torch``, tested on its own: torch's cast rounds float16/bfloat16 twice)."""
    v64, g64 = v.double(), g.double()
    if dim is None:
        weight = v64 * (g64 / torch.linalg.vector_norm(v64))
    else:
        weight = torch._weight_norm(v64, g64, dim)
    return round_to_torch(weight.numpy(), v)


def save_sharded(
    folder: Path,
    state: dict[str, torch.Tensor],
    shards: list[list[str]],
    *,
    kind: str = "safetensors",
    stem: str = "model",
) -> Path:
    """Write ``state`` as shards (the keys of each), plus the index; returns the index path."""
    suffix = ".safetensors" if kind == "safetensors" else ".bin"
    weight_map: dict[str, str] = {}
    total = 0
    for i, keys in enumerate(shards):
        name = f"{stem}-{i + 1:05d}-of-{len(shards):05d}{suffix}"
        part = {key: state[key] for key in keys}
        if kind == "safetensors":
            save_file(part, str(folder / name), metadata={"format": "pt"})
        else:
            torch.save(part, folder / name)
        weight_map.update({key: name for key in keys})
        total += sum(t.numel() * t.element_size() for t in part.values())
    index = folder / f"{stem}{suffix}.index.json"
    ordered = {key: weight_map[key] for key in state}  # the state dict's order
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": ordered}))
    return index


def save_any(state: dict[str, Any], path: Path) -> Path:
    """``state`` saved by its name's format: ``save_file`` for .safetensors, else ``torch.save``."""
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def load_any(path: Path) -> dict[str, Any]:
    """A checkpoint file read back by its name's format (torch with ``weights_only``)."""
    if path.suffix == ".safetensors":
        return load_file(str(path))
    return dict(torch.load(path, weights_only=True))


def hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file in ``folder`` (symbolic links by their target's name)."""
    result = {}
    for path in sorted(folder.iterdir()):
        if path.is_symlink():
            result[path.name] = "-> " + str(path.readlink())
        elif path.is_file():
            result[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            result[path.name] = "not a file"
    return result


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """A tensor's raw bytes (to assert byte identity)."""
    return tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
