"""The files a model.py command reads besides the model: a checkpoint, a batch of inputs.

Both are read with ``weights_only=True`` (a pickle that would run code is refused); every way
they can be wrong is a one-line :class:`~wnpass.errors.InvalidArgumentError` naming the
parameter (``checkpoint``, ``data``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from wnpass.errors import InvalidArgumentError, one_line

__all__ = ["load_batch", "load_checkpoint"]

# Containers that training scripts wrap a state dict in; the state dict is taken from inside.
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "generator")


def _state_dict(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        if all(isinstance(v, torch.Tensor) for v in value.values()):
            return value
        for key in WRAPPER_KEYS:
            inner = _state_dict(value.get(key))
            if inner is not None:
                return inner
    return None


def load_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load a state dict in any weight-norm key form into ``model``."""
    from wnpass.fx.state import load_state_dict_any

    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(f"{path}: no such file", parameter="checkpoint")
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InvalidArgumentError(
            f"{path}: cannot load: {one_line(error)}", parameter="checkpoint"
        ) from None
    state = _state_dict(value)
    if state is None:
        raise InvalidArgumentError(
            f"{path}: not a state dict ({type(value).__name__})", parameter="checkpoint"
        )
    try:
        load_state_dict_any(model, state)
    except Exception as error:
        raise InvalidArgumentError(
            f"{path}: does not fit the model: {one_line(error)}", parameter="checkpoint"
        ) from None


def load_batch(path: str | Path) -> tuple[Any, ...]:
    """A batch of inputs from ``.npz`` (arrays in file order) or ``.pt`` (a tensor or tuple)."""
    from wnpass.fx.loading import as_inputs

    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(f"{path}: no such file", parameter="data")
    try:
        if path.suffix == ".npz":
            import numpy as np

            with np.load(path, allow_pickle=False) as arrays:
                return tuple(torch.from_numpy(arrays[name]) for name in arrays.files)
        return as_inputs(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as error:
        raise InvalidArgumentError(
            f"{path}: cannot read a batch: {one_line(error)}", parameter="data"
        ) from None
