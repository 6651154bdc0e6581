"""Errors for a ``model.py`` the user gave: each says in one line which step went wrong."""

from __future__ import annotations

from wnpass.errors import WnpassError

__all__ = [
    "FactoryFailedError",
    "FactoryNotFoundError",
    "ModelFileNotFoundError",
    "ModelImportError",
    "ModelPyError",
    "ModelSyntaxError",
    "NotAModuleError",
    "NotInputsError",
]


class ModelPyError(WnpassError):
    """A ``model.py`` could not be turned into a model."""


class ModelFileNotFoundError(ModelPyError):
    """The ``model.py`` path does not exist or is not a file."""


class ModelSyntaxError(ModelPyError):
    """The ``model.py`` is not valid Python."""


class ModelImportError(ModelPyError):
    """Running the ``model.py`` module body raised."""


class FactoryNotFoundError(ModelPyError):
    """The ``model.py`` defines no callable with the factory's name."""


class FactoryFailedError(ModelPyError):
    """The factory (or ``example_inputs()``) raised."""


class NotAModuleError(ModelPyError):
    """The factory returned something that is not an ``nn.Module``."""


class NotInputsError(ModelPyError):
    """``example_inputs()`` returned something that is not a tensor or a tuple of them."""
