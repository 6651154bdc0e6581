"""The errors a user can see: each carries one clear line and maps to exit code 2."""

from __future__ import annotations

__all__ = ["InvalidModelError", "OutputError", "UsageError", "WnpassError", "one_line"]


class WnpassError(Exception):
    """Base of every error wnpass raises for bad input; its message is one line for the user."""

    exit_code = 2


class InvalidModelError(WnpassError):
    """The model file is missing, unreadable, or not a valid ONNX model."""


class OutputError(WnpassError):
    """The output cannot be written where the user asked (or would overwrite the input)."""


class UsageError(WnpassError):
    """The options given do not make sense together."""


def one_line(error: BaseException, *, with_type: bool = False) -> str:
    """An exception's message as one line for the user (240 characters at most; the ONNX
    checker's "==> Context:" dump left out), prefixed by its type name if asked."""
    text = " ".join(str(error).split("==> Context:")[0].split())
    text = text[:240] + "..." if len(text) > 240 else text
    if with_type:
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text or type(error).__name__
