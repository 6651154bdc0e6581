"""Running ``torch.onnx.export``: its options, its warnings that say a result may be wrong,
its failure as one line, and what it prints, silenced for a command line.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import errno
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx_ir as ir
import torch
from torch import nn

from wnpass import assumed
from wnpass.deploy.ranges import Range, dynamic_ranges
from wnpass.deploy.report import ExportError
from wnpass.errors import InvalidArgumentError, OutputError, printable, shortened
from wnpass.fx.forward import Batch, moved_buffers
from wnpass.interrupts import STOPS
from wnpass.plan import identity_of, user_code

logger = logging.getLogger(__name__)


def run_exporter(
    model: nn.Module,
    inputs: Batch,
    names: list[str],
    path: Path,
    *,
    output: Path,
    dynamo: bool,
    dynamic: dict[str, dict[int, str]] | None,
    shapes: dict[str, Any] | tuple[Any, ...] | None,
    opset: int | None,
) -> tuple[list[str], list[Range], list[assumed.Condition] | None]:
    """Run torch.onnx.export into staging ``path`` for ``output``, naming the graph's inputs
    ``names``; the warnings it gave that
    say its result may be wrong (:func:`_warned`), and (dynamo) the sizes torch.export holds
    each dynamic axis to and the conditions it took on them that no range says
    (:func:`wnpass.assumed.conditions`; :func:`check_ranges` judges both).

    The dynamo exporter is given the dynamic axes as ``shapes`` (:func:`dynamic_shapes_for`):
    given as ``dynamic_axes``, torch hands them out by position, not by name (``--dynamic y=0``
    of ``forward(x, y)`` made x's axis dynamic). Both exporters read a dict at the end of the
    positional inputs as the keyword inputs, so a dict that is a positional input gets an empty
    dict after it, which is how torch.onnx says "no keyword inputs".
    """
    folder = identity_of(output.parent)  # to tell it from one made there meanwhile
    options: dict[str, Any] = {"input_names": names, "dynamo": dynamo, "verbose": False}
    if opset is not None:
        options["opset_version"] = opset
    if shapes is not None:
        options["dynamic_shapes"] = shapes
    elif dynamic:
        options["dynamic_axes"] = dynamic
    args = inputs.args
    if not inputs.kwargs and args and isinstance(args[-1], dict):
        args += ({},)
    # the exporters run the user's forward (tracing it), which may read files
    # recorded, not printed; the filters in force stay (the user's, PYTHONWARNINGS)
    captured: contextlib.AbstractContextManager[list[assumed.Captured]] = (
        assumed.captured() if dynamo and dynamic else contextlib.nullcontext([])
    )
    with (
        warnings.catch_warnings(record=True) as caught,
        _exporter_quiet(),
        user_code(),
        captured as programs,
    ):
        try:
            program = torch.onnx.export(
                model, args, str(path), kwargs=dict(inputs.kwargs) or None, **options
            )
        except STOPS:
            raise
        except SystemExit:
            raise  # the model's sys.exit(), which the command line names
        except BaseException as error:  # the exporter's, or the model's code while traced
            _warned(caught, failed=True)
            logger.info("torch.onnx.export failed", exc_info=error)  # -v: the traceback
            failed = _write_failure(error, path, output, folder)
            if failed is not None:  # not the model's
                raise OutputError(failed, parameter="output") from None
            raise ExportError(f"torch.onnx.export failed: {_failure(error)}") from None
    if not (dynamo and dynamic):
        return _warned(caught), [], []
    ranges = list(dynamic_ranges(program, model, inputs))
    conditions = assumed.conditions(programs[0]) if programs else None
    return _warned(caught), ranges, conditions  # None: another torch, said by the caller


def moved_by_trace(target: nn.Module, loaded: Mapping[str, torch.Tensor]) -> list[str]:
    """The buffers the TorchScript exporter's trace moved: it runs the forward once more and
    reads the buffers after that run, and it may have folded them into other constants, so the
    file holds what that run left and cannot be given the value as set afterwards."""
    return [
        f"its trace ran the forward, which moved buffer {name}: the file holds the value that "
        "run left, not the one set (the dynamo exporter exports it as set)"
        for name in moved_buffers(target, loaded)
    ]


def _write_failure(
    error: BaseException, path: Path, output: Path, folder: tuple[int, int] | None = None
) -> str | None:
    """Why the exporter could not write ``path``, in its staging folder for ``output``, where
    the disk or another process ended the export, found along the exporter's chain of causes:
    a full disk (or a file size limit, a quota), or the staging folder gone (the output's
    folder moved, removed or replaced by a file meanwhile, t177, t182; or, that folder still
    the one it was, ``folder``, the staging folder alone removed, t202). Not an error of a
    file the model's own code wrote, which is the model's."""
    staging = path.parent
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            name = current.filename
            ours = name is None or Path(os.fsdecode(name)).parent == staging
            if ours and current.errno in _DISK_FULL:
                return f"{output}: cannot write ({current.strerror or current})"
            if ours and current.errno in _GONE and not staging.is_dir():
                if folder is not None and identity_of(output.parent) == folder:  # still there
                    return (
                        f"{output}: cannot write: wnpass's staging folder {staging.name} beside "
                        "it was removed during the export (by the model's code?)"
                    )
                return f"{output}: cannot write: its folder was moved or removed during the export"
        current = current.__cause__ or current.__context__
    return None


_DISK_FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
# A path through a folder that is gone: removed, or replaced by a file (t182).
_GONE = frozenset({errno.ENOENT, errno.ENOTDIR})


# The warnings an exporter gives that say its result may be wrong: TorchScript's tracer turned
# a Python value into a constant (``len(x)``, ``int(t)``, a branch on a tensor), which holds
# for the example inputs only.
_WRONG_RESULT_WARNINGS: tuple[type[Warning], ...] = (torch.jit.TracerWarning,)


def _warned(caught: Sequence[warnings.WarningMessage], *, failed: bool = False) -> list[str]:
    """The warnings of :data:`_WRONG_RESULT_WARNINGS` about the model's code among ``caught``,
    each once, as ``file:line: Category: message`` (the line it is about), for the report to
    show (none when the export ``failed``: its error is the one line to say); each is logged at
    INFO (``-v``). The others (deprecations, notes, and tracer warnings about torch's own
    modules) are torch's own business: logged at INFO too."""
    said: list[str] = []
    noted: set[str] = set()
    for caught_warning in caught:
        category = caught_warning.category
        line = f"{category.__name__}: {_trimmed(str(caught_warning.message), 400)}"
        # torch's own modules (nn.LSTM's and attention's checks of their input sizes) trace
        # Python values of the example on every export: no news of the model's code
        if not issubclass(category, _WRONG_RESULT_WARNINGS) or _in_torch(caught_warning):
            if line not in noted:
                noted.add(line)
                logger.info("the exporter warned: %s", line)
            continue
        line = f"{caught_warning.filename}:{caught_warning.lineno}: {line}"
        if line not in said:  # the report shows it: logged at INFO, not said twice
            said.append(line)
            logger.info("the exporter warned: %s", line)
    return said if not failed else []


_TORCH_FOLDER = os.path.dirname(torch.__file__) + os.sep


def _in_torch(caught: warnings.WarningMessage) -> bool:
    """Whether the warning is about a line of torch's own code."""
    return os.path.abspath(caught.filename).startswith(_TORCH_FOLDER)


# The colours torch.export puts in its messages (``\x1b[96m``): not for a one-line error.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


_CAUSE_CHARACTERS = 240  # of the innermost exception's message


_WRAPPER_CHARACTERS = 160  # of the outermost's, after it


def _failure(error: BaseException) -> str:
    """An exporter's failure as one line: the innermost exception of its chain (the cause,
    ``'int' object has no attribute 'name'``) first, with its type, then the first line of
    the outermost's message (which step failed), each trimmed. The exporters wrap the cause
    in messages long enough that a line cut at their start lost it."""
    chain = [error]
    # the explicit causes (raise ... from) while there are any, else what each was raised
    # while handling: a forward's ``raise ValueError(hint)`` inside ``except KeyError`` is
    # the cause torch wraps, and its KeyError only the context of the hint
    follow = (lambda e: e.__cause__) if _has_cause(error) else _context
    while (inner := follow(chain[-1])) is not None and len(chain) < 16:
        chain.append(inner)
    if len(chain) == 1:
        return _cause(error) or type(error).__name__
    cause = f"{type(chain[-1]).__name__}: {_cause(chain[-1])}"
    first = _ANSI.sub("", str(error)).strip().split("\n")[0]
    return f"{cause} (in: {_trimmed(first, _WRAPPER_CHARACTERS)})" if first else cause


def _has_cause(error: BaseException) -> bool:
    return error.__cause__ is not None


def _context(error: BaseException) -> BaseException | None:
    """The exception ``error`` was raised while handling, unless it said ``from None``."""
    return None if error.__suppress_context__ else error.__context__


def _cause(error: BaseException) -> str:
    """An exception's message as one printable line, its start and its end kept (torch.export
    names the input and axis at the end: ``... for dimension inputs['x'].shape[2].``)."""
    return printable(shortened(_one_line(str(error)), _CAUSE_CHARACTERS))


def _trimmed(text: str, characters: int) -> str:
    """``text`` as one printable line of at most ``characters`` (and "...")."""
    text = _one_line(text)
    return printable(text[:characters] + "..." if len(text) > characters else text)


def _one_line(text: str) -> str:
    """``text`` without torch.export's colours, its whitespace runs one space each."""
    return " ".join(_ANSI.sub("", text).split())


# Whether the exporters' printing is silenced at the file descriptors: a command line's
# choice (:func:`exporters_silenced`), never a library call's (it is the whole process's).
_SILENCED: contextvars.ContextVar[bool] = contextvars.ContextVar("silenced", default=False)


@contextlib.contextmanager
def exporters_silenced() -> Iterator[None]:
    """For a command line, whose stdout and stderr are its own: while the block runs, what the
    exporters print from C++ (the TorchScript exporter's whole graph on stdout when it fails,
    torch.export's graph on stderr) goes to the null device, unless wnpass logs at INFO
    (``-v``). A library call leaves the process's file descriptors alone."""
    token = _SILENCED.set(True)
    try:
        yield
    finally:
        _SILENCED.reset(token)


@contextlib.contextmanager
def _exporter_quiet() -> Iterator[None]:
    """What the exporters say besides their error, shown only when wnpass itself logs at INFO
    (``-v``): torch.onnx logs its progress and notes (``torchvision is not installed``) as
    warnings; within :func:`exporters_silenced`, what C++ prints is silenced too, at the file
    descriptors, for the whole process while the export runs (C++ writes there directly).
    The error itself is the one line wnpass raises (:func:`run_exporter`)."""
    if logger.isEnabledFor(logging.INFO):
        yield
        return
    exporter = logging.getLogger("torch.onnx")
    level = exporter.level
    exporter.setLevel(logging.ERROR)
    try:
        with contextlib.ExitStack() as silenced:
            if _SILENCED.get():
                silenced.enter_context(_silenced(sys.stdout, 1))
                silenced.enter_context(_silenced(sys.stderr, 2))
            yield
    finally:
        exporter.setLevel(level)


@contextlib.contextmanager
def _silenced(stream: Any, fd: int) -> Iterator[None]:
    """File descriptor ``fd`` (``stream``'s) writes to the null device for the block. What
    Python and C buffered meanwhile is flushed before it is put back, so none of it comes
    out later. Where ``fd`` is not open there is nothing to silence."""
    try:
        saved = os.dup(fd)
    except OSError:
        saved = -1
    if saved < 0:
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        _flush(stream)
        os.dup2(null, fd)
        yield
    finally:
        _flush(stream)
        os.dup2(saved, fd)
        os.close(saved)
        os.close(null)


def _flush(stream: Any) -> None:
    """Flush ``stream`` and C's stdio buffers (where C++ ``std::cout`` writes)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        stream.flush()
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(None).fflush(None)


def check_opset(model: ir.Model, opset: int | None) -> None:
    written = model.opset_imports.get("", None)
    if opset is not None and written != opset:
        raise InvalidArgumentError(
            f"{opset}: torch.onnx wrote opset {written} instead; refused", parameter="opset"
        )
