"""Checks on what a caller of the PyTorch-side API passes, made before any work starts.

README promises that every error is a :class:`~wnpass.errors.WnpassError` in one line, and
one about an argument names it: a wrong ``init=`` is found before the model runs, not as a
``ValueError`` halfway through, and a model whose weights are on the meta device is refused
before the first op that needs their values fails inside PyTorch.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Collection, Iterable
from typing import Any

import torch
from torch import nn

from wnpass.errors import InvalidArgumentError
from wnpass.report import listed

__all__ = [
    "is_lazy",
    "require_generator",
    "require_initialized",
    "require_module",
    "require_names",
    "require_trainable",
    "require_values",
    "require_within",
]

_SHOWN = 40  # characters of a refused value shown


def require_within(parameter: str, value: Any, low: float, high: float) -> float:
    """``value`` as a float when it is a real number (a NumPy scalar, a ``Fraction`` too) from
    ``low`` to ``high``."""
    number = None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # an int beyond any float: 10**400
            number = float(value)
    if number is None or not low <= number <= high:  # NaN is in no range
        shown = repr(value)
        shown = shown if len(shown) <= _SHOWN else shown[: _SHOWN - 3] + "..."
        wanted = f"an int or a float (a NumPy scalar too) from {low:g} to {high:g}"
        raise InvalidArgumentError(
            f"must be {wanted}, not {shown}",
            parameter=parameter,
        )
    return number


def require_generator(parameter: str, value: Any) -> None:
    """``value`` is None or a ``torch.Generator``."""
    if value is not None and not isinstance(value, torch.Generator):
        package, kind = type(value).__module__.partition(".")[0], type(value).__qualname__
        named = kind if package == "builtins" else f"{package}.{kind}"  # numpy's Generator
        raise InvalidArgumentError(
            f"must be a torch.Generator or None, not {named}", parameter=parameter
        )


def require_names(parameter: str, value: Any) -> set[str] | None:
    """``value`` as a set when it is None or a collection of names (a single string would be
    read as its letters)."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Collection):
        raise InvalidArgumentError(
            f"must be a collection of names (a list of strings) or None, not {value!r}",
            parameter=parameter,
        )
    if not all(isinstance(name, str) for name in value):
        raise InvalidArgumentError("must hold names (strings) only", parameter=parameter)
    return set(value)


def require_module(model: Any, parameter: str = "model") -> nn.Module:
    """``model`` itself when it is an ``nn.Module``; else an error naming ``parameter``."""
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(
            f"must be a torch.nn.Module, not {type(model).__name__}", parameter=parameter
        )
    return model


def require_values(model: nn.Module) -> None:
    """Every parameter and buffer of ``model`` holds values: none is on the meta device.

    A model built under ``torch.device("meta")`` has shapes only; comparing its outputs,
    initializing from data or folding needs numbers. The error names no parameter: the model
    is what is wrong, and the CLI then says which model.py built it.
    """
    params = [name for name, tensor in model.named_parameters() if tensor.is_meta]
    buffers = [name for name, tensor in model.named_buffers() if tensor.is_meta]
    if params or buffers:
        kinds = " and ".join(
            k for k, names in (("parameters", params), ("buffers", buffers)) if names
        )
        raise InvalidArgumentError(
            f"{type(model).__name__}: {kinds} on the meta device hold no values "
            f"({listed(params + buffers)}): load or materialize them first"
        )


def require_trainable(model: nn.Module) -> None:
    """No parameter of ``model`` is an inference tensor (made under ``torch.inference_mode()``):
    weight norm's ``g`` and ``v`` are for training, which such a tensor cannot take part in,
    and wnpass's forwards tell a write to a parameter by its version, which it does not keep.
    A buffer may be one (a window made once; training reads it): t141. The error names no
    parameter, as :func:`require_values`'s."""
    made = [
        name
        for name, tensor in model.named_parameters()
        if not is_lazy(tensor) and tensor.is_inference()
    ]
    if made:
        raise InvalidArgumentError(
            f"{type(model).__name__}: parameters made under torch.inference_mode() cannot be "
            f"trained ({listed(made)}): build or load the model outside inference mode"
        )


def require_initialized(model: nn.Module) -> None:
    """No parameter or buffer of ``model`` is a lazy module's uninitialized one: without a
    forward to give them shapes (``nn.LazyLinear`` before its first call), nothing can be
    read of them. The error names no parameter, as :func:`require_values`'s."""
    lazy = [name for name, tensor in _tensors(model) if is_lazy(tensor)]
    if lazy:
        raise InvalidArgumentError(
            f"{type(model).__name__}: lazy parameters not initialized yet ({listed(lazy)}): "
            "pass example inputs, or run the model once first"
        )


def is_lazy(tensor: Any) -> bool:
    """Whether ``tensor`` is a lazy module's parameter or buffer not initialized yet."""
    lazy = (nn.parameter.UninitializedParameter, nn.parameter.UninitializedBuffer)
    return isinstance(tensor, lazy)


def _tensors(model: nn.Module) -> Iterable[tuple[str, Any]]:
    yield from model.named_parameters()
    yield from model.named_buffers()
