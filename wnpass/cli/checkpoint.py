"""Checkpoint commands: ``fold CKPT``, ``inspect CKPT`` (``convert`` has its own module).

A path is a checkpoint by its name: ``.pt``, ``.pth``, ``.bin``, ``.safetensors``, or a
sharded index ``*.safetensors.index.json`` / ``pytorch_model.bin.index.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wnpass.cli.output import Printer

__all__ = ["CHECKPOINT_SUFFIXES", "fold", "inspect", "is_checkpoint"]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".index.json")


def is_checkpoint(path: Path) -> bool:
    return path.name.endswith(CHECKPOINT_SUFFIXES)


def fold(args: argparse.Namespace, out: Printer) -> int:
    """``wnpass fold CKPT``."""
    raise NotImplementedError("checkpoint fold: being built")


def inspect(args: argparse.Namespace, out: Printer) -> int:
    """``wnpass inspect CKPT``."""
    raise NotImplementedError("checkpoint inspect: being built")
