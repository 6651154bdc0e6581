"""The errors a user can see: each carries one clear line and the exit code it maps to.

The library names its own parameters (``output``, ``json_path``, ``rtol``); an error about one
carries it in ``parameter`` and says it first, and the CLI says the flag instead (``-o``,
``--json``, ``--rtol``): :meth:`WnpassError.render`.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "CheckFailedError",
    "InvalidArgumentError",
    "InvalidModelError",
    "OutputError",
    "UsageError",
    "WnpassError",
    "one_line",
    "printable",
]


class WnpassError(Exception):
    """Base of every error wnpass raises for bad input; its message is one line for the user.

    ``parameter`` is the library parameter the error is about (None: the input as a whole);
    the message then reads ``"<parameter> <detail>"``, or ``"<parameter> and <also>
    <detail>"`` where a second parameter goes with it (two that cannot be combined).
    """

    exit_code = 2

    def __init__(
        self, detail: str, *, parameter: str | None = None, also: str | None = None
    ) -> None:
        self.detail = printable(detail)
        self.parameter = parameter
        self.also = also
        super().__init__(self.render())

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The message, with each parameter called by its name in ``names`` (CLI flags)."""
        if self.parameter is None:
            return self.detail
        names = names or {}
        name = names.get(self.parameter, self.parameter)
        if self.also is not None:
            name = f"{name} and {names.get(self.also, self.also)}"
        return f"{name} {self.detail}"


class InvalidModelError(WnpassError):
    """The model file is missing, unreadable, or not a valid ONNX model."""


class InvalidArgumentError(WnpassError):
    """A parameter's value is out of range or does not fit the model."""


class OutputError(WnpassError):
    """An output cannot be written where asked: the plan refused it, or the disk did."""


class UsageError(WnpassError):
    """The options given do not make sense together."""


class CheckFailedError(WnpassError):
    """A check ran and failed (exit 1): raised where a result cannot be returned."""

    exit_code = 1


def printable(text: str) -> str:
    """``text`` with terminal control characters escaped (a model's names are untrusted), and
    a file name's byte no UTF-8 decodes (held as a lone surrogate) written ``\\xff``, as the
    JSON reports write it (t163)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def _escaped(character: str) -> str:
    if "\udc80" <= character <= "\udcff":  # surrogateescape's stand-in for a byte
        return f"\\x{ord(character) - 0xDC00:02x}"
    return repr(character)[1:-1]


def shortened(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters where longer, keeping its start (where it
    happened) and its end (what was wrong: ``requested shape:{5,7}``, ``for dimension
    inputs['x'].shape[2]``), without the middle."""
    if len(text) <= limit:
        return text
    head = (limit - 5) * 9 // 20
    return f"{text[:head]} ... {text[-(limit - 5 - head) :]}"


def one_line(error: BaseException, *, with_type: bool = False) -> str:
    """An exception's message as one line for the user (240 characters at most; the ONNX
    checker's "==> Context:" dump left out), prefixed by its type name if asked."""
    try:
        message = str(error)
    except Exception:  # the model's own exception class, whose __str__ itself raises
        message = f"(its message could not be read: {type(error).__name__}.__str__ raised)"
    text = " ".join(message.split("==> Context:")[0].split())
    text = printable(text[:240] + "..." if len(text) > 240 else text)
    if with_type:
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text or type(error).__name__
