"""Checks on what a caller of the API passes, shared by its PyTorch and ONNX sides (torch-free):
a bad argument is an :class:`~wnpass.errors.InvalidArgumentError` naming it, raised before any
work starts (``weight_norm_only="no"`` would otherwise count as true)."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

from wnpass.errors import InvalidArgumentError

__all__ = ["as_whole", "require_choice", "require_flag", "require_type", "whole"]


def require_choice(parameter: str, value: Any, allowed: Iterable[str]) -> None:
    """``value`` is one of ``allowed``; else an error naming ``parameter`` and the choices."""
    choices = tuple(allowed)
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(choice) for choice in choices)
        raise InvalidArgumentError(f"must be one of {listed}, not {value!r}", parameter=parameter)


def require_flag(parameter: str, value: Any) -> None:
    """``value`` is True or False (``rescale="no"`` would count as true)."""
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"must be True or False, not {value!r}", parameter=parameter)


def require_type(parameter: str, value: Any, allowed: tuple[type, ...], what: str) -> None:
    """``value`` is an instance of one of ``allowed`` (``what`` says them in words)."""
    if not isinstance(value, allowed):
        raise InvalidArgumentError(
            f"must be {what}, not {type(value).__name__}", parameter=parameter
        )


def whole(value: Any) -> int | None:
    """``value`` as a Python int where it is a whole number of any integer type
    (``np.int64(2)``); else None: a bool is none, though Python counts it as an int (numpy's
    bool is no ``numbers.Integral``), nor is a float that happens to be whole."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return None


def as_whole(value: Any) -> Any:
    """:func:`whole`'s int where ``value`` is a whole number; anything else as it is, for the
    caller to refuse with its own message."""
    number = whole(value)
    return value if number is None else number
