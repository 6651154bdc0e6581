"""Defer importing sympy until something really uses it.

onnx-ir imports sympy when it is imported, for arithmetic on symbolic dimensions, which the
ONNX commands never do; importing sympy costs 0.3 to 0.8 s, as much as a whole fold of a small
model. :func:`defer_sympy` puts a stand-in module under the name ``sympy``: the few functions
onnx-ir stores at import time become calls that import the real sympy on first use, and any
other attribute imports the real sympy and returns its attribute (so ``isinstance`` checks and
submodule imports get the real thing).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = ["defer_sympy"]

# The sympy functions onnx-ir keeps in a table at import time.
_FUNCTIONS = frozenset({"Max", "Min", "floor", "sqrt", "Mod"})


def _real() -> types.ModuleType:
    if isinstance(sys.modules.get("sympy"), _DeferredSympy):
        del sys.modules["sympy"]
    return importlib.import_module("sympy")


class _DeferredSympy(types.ModuleType):
    """Stands in for sympy until an attribute other than a deferred function is needed."""

    def __getattr__(self, name: str) -> Any:
        if name in _FUNCTIONS:
            return _deferred_function(name)
        return getattr(_real(), name)


def _deferred_function(name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(_real(), name)(*args, **kwargs)

    call.__name__ = name
    return call


def defer_sympy() -> None:
    """Install the stand-in, unless sympy is imported already or not installed."""
    if "sympy" in sys.modules or importlib.util.find_spec("sympy") is None:
        return
    sys.modules["sympy"] = _DeferredSympy("sympy")
