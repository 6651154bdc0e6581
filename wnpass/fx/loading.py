"""Load a model from a ``model.py``: ``build_model()`` (or ``--factory``) and ``example_inputs()``.

The convention: the file defines a factory returning an ``nn.Module`` and, optionally,
``example_inputs()`` returning a tensor or a tuple of tensors. A factory named ``X_large``
pairs with ``example_inputs_large()`` when the file has one. Every way this can go wrong raises a
:class:`~wnpass.fx.errors.ModelPyError` subclass whose one-line message names the step; a
``sys.exit()`` in the file's code (an argparse error too) is one of them, never the end of the
caller's process.

The file's code (its body, the factory, ``example_inputs()``) runs as ``python model.py`` would
run it: ``sys.argv`` is ``[model.py]`` (a parser at module level sees no arguments of the
caller's, as a script run without arguments) and the file's folder is first on ``sys.path``
(``from layers import ...`` finds the module beside it). Both are the caller's again once it
has run: a module the file imported stays imported, but later imports of the caller's do not
search the model's folder.

The source files of the modules the file's code imports (``helper.py`` beside it, for ``from
helper import make``) are inputs of the run as much as the model.py: given the run's
:class:`~wnpass.plan.IOPlan`, :func:`load_model_py` records them as read and checks the plan
again, so that no output is written over one.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import torch
from torch import nn

from wnpass.errors import InvalidArgumentError, printable
from wnpass.fx.analyse import materialize_lazy
from wnpass.fx.errors import (
    FactoryFailedError,
    FactoryNotFoundError,
    ModelFileNotFoundError,
    ModelImportError,
    ModelPyError,
    ModelSyntaxError,
    NotAModuleError,
    NotInputsError,
)
from wnpass.fx.forward import as_batch, what_it_did
from wnpass.interrupts import STOPS
from wnpass.plan import IOPlan, anchored, as_path, as_plan, not_readable, user_code

__all__ = [
    "DEFAULT_FACTORY",
    "EXPECTED_INPUTS",
    "Loaded",
    "as_inputs",
    "load_model_file",
    "load_model_py",
]

logger = logging.getLogger(__name__)

DEFAULT_FACTORY = "build_model"


class _File(NamedTuple):
    """A model.py: as the caller named it (what messages and ``sys.argv`` say), and where it
    is, resolved before any of its code runs (which may change the working directory)."""

    shown: Path
    location: Path


def _exec_module(file: _File) -> ModuleType:
    path = file.shown
    try:
        source = file.location.read_bytes()
    except OSError as error:
        raise ModelFileNotFoundError(f"{path}: cannot read: {error.strerror}") from None
    try:
        # compiled from its bytes, as ``python model.py`` reads it: a PEP 263 coding line (or
        # a UTF-8 BOM) names the encoding, UTF-8 otherwise; bytes not valid in it, an unknown
        # encoding or a null byte are a SyntaxError (a ValueError in some Python versions)
        # dont_inherit: this module's own ``from __future__`` imports are not the model's
        code = compile(source, str(path), "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as error:
        raise ModelSyntaxError(_syntax_message(path, error)) from None
    name = f"wnpass_model_{path.stem}_{abs(hash(file.location.resolve()))}"
    # a loader given: without one a file not named *.py has no spec (it ran as a script does)
    loader = importlib.machinery.SourceFileLoader(name, str(file.location))
    spec = importlib.util.spec_from_file_location(name, file.location, loader=loader)
    assert spec is not None  # a loader was given
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        _run(file, "running the file", ModelImportError, exec, code, module.__dict__)
    except ModelImportError:
        sys.modules.pop(name, None)
        raise
    return module


@contextlib.contextmanager
def _as_script(file: _File) -> Iterator[None]:
    """``sys.argv`` and ``sys.path`` as ``python model.py`` gives them (the module docstring),
    then the caller's again."""
    argv, folder = sys.argv, str(file.location.resolve().parent)
    sys.argv = [str(file.shown)]
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.argv = argv
        with contextlib.suppress(ValueError):  # the file's code may have removed it itself
            sys.path.remove(folder)


def _run(
    file: _File, step: str, error_type: type[ModelPyError], call: Callable[..., Any], *args: Any
) -> Any:
    """``call(*args)``: the file's code, run as a script (:func:`_as_script`); what it raised
    or a ``sys.exit()`` in it is ``error_type``, one line naming the file and the step."""
    try:
        with _as_script(file):
            return call(*args)
    except STOPS:
        raise
    except BaseException as error:  # the model's failure, sys.exit() included
        raise error_type(f"{file.shown}: {step} {what_it_did(error)}") from None


def _syntax_message(path: Path, error: SyntaxError | ValueError) -> str:
    """One line naming the file (and the line, where Python gives one) and the reason."""
    line = error.lineno if isinstance(error, SyntaxError) else None
    reason = error.msg if isinstance(error, SyntaxError) and error.msg else str(error)
    where = f"{path}:{line}" if line else str(path)
    return f"{where}: syntax error: {printable(' '.join(reason.split()))}"


# what a model.py's example_inputs() and a --data file hold
EXPECTED_INPUTS = "a tensor or a tuple of tensors (forward's positional inputs)"


def as_inputs(value: Any) -> tuple[Any, ...] | None:
    """A batch as a tuple of positional inputs (a single tensor becomes a 1-tuple); None when
    ``value`` is neither a tensor nor a tuple or list.

    Positional only: the commands pass these inputs on positionally (the ONNX export names
    them, a checkpoint's verification calls ``model(*inputs)``); a dict of keyword inputs is
    for the Python API (:func:`wnpass.fx.forward.as_batch`).
    """
    if isinstance(value, torch.Tensor):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(value)
    return None


IMPORTED = "a module the model.py imported"  # what such a file is called in the plan


def _imported_files(before: set[str]) -> list[Path]:
    """The source files of the modules imported since ``before`` (names in ``sys.modules``):
    what running a model.py's code read besides the file itself."""
    files = set()
    for name in set(sys.modules) - before:
        # from the module's own dict: an attribute read would run a lazy module's import
        # (speechbrain puts such modules in sys.modules, for optional dependencies whose
        # import fails: t280)
        try:
            file = vars(sys.modules[name]).get("__file__")
        except Exception:  # no dict, or one a lazy module will not give: nothing read yet
            continue
        if isinstance(file, str) and Path(file).is_file():
            files.add(Path(file))
    return sorted(files)


class Loaded(NamedTuple):
    """What a ``model.py`` built: the model, its example inputs (None when it defines none),
    and the function that made them, as messages name it (``example_inputs()``, or
    ``example_inputs_large()`` beside a ``_large`` factory)."""

    model: nn.Module
    inputs: tuple[Any, ...] | None
    made_by: str


def load_model_py(
    path: str | Path, factory: str | None = None, *, plan: IOPlan | None = None
) -> tuple[nn.Module, tuple[Any, ...] | None]:
    """The model a ``model.py`` builds, and its example inputs (None when it defines none).

    ``plan``: the run's plan; the files of the modules the file's code imported, and every
    file the user's code reads from now on (here and in the forwards wnpass runs), are
    recorded in it as read and it is checked again (an output planned onto one is refused,
    as one onto the model.py is).
    """
    loaded = load_model_file(path, factory, plan=plan)
    return loaded.model, loaded.inputs


def load_model_file(
    path: str | Path, factory: str | None = None, *, plan: IOPlan | None = None
) -> Loaded:
    """:func:`load_model_py`, and the name of the function that made the inputs."""
    plan = as_plan(plan)
    path = as_path("path", path)
    if factory is not None and (not isinstance(factory, str) or not factory.isidentifier()):
        raise InvalidArgumentError(
            f"must be the name of a function, not {factory!r}", parameter="factory"
        )
    if (problem := not_readable(path)) is not None:
        raise ModelFileNotFoundError(f"{path}: {problem}")
    if plan is not None:
        plan.watch_user_code()
    before = set(sys.modules)
    file = _File(path, anchored(path))  # here, in wnpass's working directory
    with user_code():
        loaded = _build(file, factory)
        if loaded.inputs is not None:  # every command needs their shapes (a checkpoint's too)
            materialize_lazy(loaded.model, as_batch(loaded.inputs))
    if plan is not None:
        plan.read_all(_imported_files(before), IMPORTED)
        plan.record_user_reads()
        plan.check()
    return loaded


def _build(file: _File, factory: str | None) -> Loaded:
    """Run the file, its factory and its ``example_inputs()``: the model and its inputs."""
    path = file.shown
    module = _exec_module(file)
    name = factory or DEFAULT_FACTORY
    build = getattr(module, name, None)
    if build is not None and not callable(build):  # a value, not the function (t164)
        raise FactoryNotFoundError(
            f"{path}: {name} is a value of type {type(build).__name__}, not a function: "
            f"define {name}() to return the model"
        )
    if isinstance(build, nn.Module):  # called, it ran the model's forward (t171)
        raise FactoryNotFoundError(
            f"{path}: {name} is a model ({type(build).__name__}), not a function: define "
            f"{name}() to return the model"
        )
    if not callable(build):
        found = sorted(n for n, v in vars(module).items() if callable(v) and n.startswith("build"))
        hint = f"; it has {', '.join(found)}" if found else ""
        raise FactoryNotFoundError(
            f"{path}: defines no factory {name}() (give --factory NAME){hint}"
        )
    model = _run(file, f"{name}()", FactoryFailedError, build)
    if not isinstance(model, nn.Module):
        raise NotAModuleError(
            f"{path}: {name}() returned {type(model).__name__}, not a torch.nn.Module"
        )
    inputs_name = "example_inputs"
    if name.endswith("_large") and callable(getattr(module, "example_inputs_large", None)):
        inputs_name = "example_inputs_large"
    make_inputs = getattr(module, inputs_name, None)
    if make_inputs is not None and not callable(make_inputs):  # a value, not the function
        raise NotInputsError(
            f"{path}: {inputs_name} is a {type(make_inputs).__name__}, not a function: "
            f"define {inputs_name}() to return {EXPECTED_INPUTS}"
        )
    if make_inputs is None:
        logger.info("%s defines no %s(): no equivalence check possible", path, inputs_name)
        return Loaded(model, None, f"{inputs_name}()")
    value = _run(file, f"{inputs_name}()", FactoryFailedError, make_inputs)
    inputs = as_inputs(value)
    if inputs is None:
        what = "None" if value is None else f"a {type(value).__name__}"
        hint = "; keyword inputs (a dict) are for the Python API" if isinstance(value, dict) else ""
        raise NotInputsError(
            f"{path}: {inputs_name}() returned {what}; expected {EXPECTED_INPUTS}{hint}"
        )
    return Loaded(model, inputs, f"{inputs_name}()")
