"""The errors a user can see: each carries one clear line and maps to exit code 2."""

from __future__ import annotations

__all__ = ["InvalidModelError", "OutputError", "UsageError", "WnpassError"]


class WnpassError(Exception):
    """Base of every error wnpass raises for bad input; its message is one line for the user."""

    exit_code = 2


class InvalidModelError(WnpassError):
    """The model file is missing, unreadable, or not a valid ONNX model."""


class OutputError(WnpassError):
    """The output cannot be written where the user asked (or would overwrite the input)."""


class UsageError(WnpassError):
    """The options given do not make sense together."""
