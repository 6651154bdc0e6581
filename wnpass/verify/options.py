"""The options of a check, validated in one place before anything runs or is written.

``check``, ``fold_onnx(verify=...)`` and ``export(verify=True)`` take the same options; each
is checked here and a bad one raises :class:`~wnpass.errors.InvalidArgumentError` naming the
parameter (the CLI says the flag): tolerances finite and non-negative, ``runs`` from 1 and
``warmup`` from 0 to ``MAX_RUNS``, ``threads`` from 1 to ``MAX_THREADS``, one or more known
optimization levels and providers (each a sequence of names, never a bare string; providers
must exist in this onnxruntime build), ``shapes`` a dict of input name to dimensions,
``inputs`` a path, and ``shapes`` or ``inputs`` (never both) that fit the model's inputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import SupportsFloat

from wnpass.arguments import as_whole, whole
from wnpass.errors import InvalidArgumentError
from wnpass.plan import as_path

__all__ = [
    "DEFAULT_RUNS",
    "DEFAULT_WARMUP",
    "MAX_RUNS",
    "MAX_THREADS",
    "CheckOptions",
    "as_tolerance",
    "check_tolerance",
    "refuse_unused",
]

DEFAULT_RUNS = 20
DEFAULT_WARMUP = 3
OPTIMIZATION_LEVELS = ("default", "disabled")
# ONNX Runtime makes a thread pool of the size asked for, each thread with its stack, and takes
# it as a C int: 2**31 - 1 ends in std::bad_alloc, 2**31 in a TypeError. More threads than any
# machine has cores only slows a run down, so a count past this is refused as a mistake.
MAX_THREADS = 1024
# The most timed or warm-up runs: a median of a million runs is as good as one of more, and
# a count past it is a slip (99999999999999999999 ran with no end and no output, t143).
MAX_RUNS = 1_000_000


@dataclasses.dataclass(frozen=True)
class CheckOptions:
    """How to compare two models and time them; :meth:`validate` before use."""

    providers: Sequence[str] | None = None
    shapes: dict[str, list[int]] | None = None
    inputs: Path | None = None  # a str or os.PathLike too, kept as a Path
    rtol: float | None = None
    atol: float | None = None
    runs: int = DEFAULT_RUNS
    warmup: int = DEFAULT_WARMUP
    threads: int | None = None
    optimizations: Sequence[str] = ("default",)

    @property
    def tolerances(self) -> tuple[float | None, float | None]:
        """``(rtol, atol)``, as the comparisons take them."""
        return self.rtol, self.atol

    def __post_init__(self) -> None:
        # A tolerance of any real type (np.float32(1e-3), Fraction(1, 10000)) is kept as a
        # Python float, and a count or dimension of any integer type (np.int64(2)) as a Python
        # int, so that each is checked, shown and written to JSON like any other; a bool and a
        # non-number are left for validate() to refuse.
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                with contextlib.suppress(OverflowError):  # beyond float: validate() says so
                    object.__setattr__(self, name, _float(value))
        for name in ("runs", "warmup", "threads"):
            object.__setattr__(self, name, as_whole(getattr(self, name)))
        if isinstance(self.inputs, (str, os.PathLike)):
            # a bytes path, and an empty one (Path("") is "."): validate() refuses them
            with contextlib.suppress(TypeError):
                if os.fspath(self.inputs):
                    object.__setattr__(self, "inputs", Path(self.inputs))
        for name in ("providers", "optimizations"):
            # a tuple, whatever collection was given (a list, a set, a generator, dict keys),
            # each name once (--provider cpu --provider cpu is cpu); a bare string is left
            # for validate() to refuse (it would be read as its letters)
            value = getattr(self, name)
            if isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping)):
                object.__setattr__(self, name, tuple(dict.fromkeys(value)))
        if isinstance(self.shapes, Mapping):
            shapes = {
                k: [as_whole(d) for d in v] if isinstance(v, (list, tuple)) else v
                for k, v in self.shapes.items()
            }
            object.__setattr__(self, "shapes", shapes)

    def validate(self) -> CheckOptions:
        """Check every option that needs no model; returns self."""
        check_tolerance("rtol", self.rtol)
        check_tolerance("atol", self.atol)
        _at_least("runs", self.runs, 1, MAX_RUNS)
        _at_least("warmup", self.warmup, 0, MAX_RUNS)
        if self.threads is not None:
            _at_least("threads", self.threads, 1, MAX_THREADS)
        _names("optimizations", self.optimizations, OPTIMIZATION_LEVELS)
        if self.providers is not None:
            _names("providers", self.providers)
        if self.inputs is not None and not isinstance(self.inputs, Path):
            as_path("inputs", self.inputs)
        if self.shapes is not None:
            _check_shapes(self.shapes)
        if self.shapes and self.inputs is not None:
            raise InvalidArgumentError(
                "cannot be combined: the inputs file fixes every shape",
                parameter="shapes",
                also="inputs",
            )
        from wnpass.verify import providers

        providers.resolve(list(self.providers) if self.providers else None)
        return self


def check_tolerance(name: str, value: float | None) -> None:
    """A tolerance (``rtol``, ``atol``) is None (the dtype's default) or a finite number >= 0;
    a bool is not one, though Python counts it as an int."""
    if value is None:
        return
    # numpy's bool is no numbers.Real (its floats and integers are), so this needs no numpy:
    # importing it here would put 0.1-0.2 s before every command's first line
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError(
            f"{value!r}: a tolerance must be a number, not a {type(value).__name__}",
            parameter=name,
        )
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer or fraction beyond any float
        finite = False
    if not (finite and value >= 0):
        raise InvalidArgumentError(
            f"{value}: a tolerance must be a finite number >= 0", parameter=name
        )


def refuse_unused(given: Mapping[str, object], goes_with: str) -> None:
    """Refuse the first check option in ``given`` (by parameter name; None: not given) where
    no check runs, rather than ignore it (``rtol=-1`` would pass unvalidated, ``rtol=0`` read
    as if it had been applied): ``rtol goes with verify=True: no check runs without it``."""
    from wnpass.errors import UsageError

    if unused := [name for name, value in given.items() if value is not None]:
        raise UsageError(f"{unused[0]} goes with {goes_with}: no check runs without it")


def as_tolerance(name: str, value: float | None) -> float | None:
    """``value`` checked as a tolerance (:func:`check_tolerance`), as a Python float (a numpy
    scalar is a number too)."""
    check_tolerance(name, value)
    return None if value is None else _float(value)


def _float(value: SupportsFloat) -> float:
    """A tolerance as a Python float; -0.0 (which --rtol -0 gives) is 0.0, shown as 0."""
    return float(value) + 0.0


def _at_least(name: str, value: object, low: int, high: int | None = None) -> None:
    """``value`` is a whole number >= ``low`` (and <= ``high``, where there is one)."""
    number = whole(value)
    if high is None and not (number is not None and number >= low):
        raise InvalidArgumentError(f"{value}: must be a whole number >= {low}", parameter=name)
    if high is not None and not (number is not None and low <= number <= high):
        raise InvalidArgumentError(
            f"{value}: must be a whole number from {low} to {high}", parameter=name
        )


def _names(name: str, value: object, choices: Sequence[str] = ()) -> None:
    """``value`` is a tuple of one or more names (a bare string would be read as its
    letters: ``__post_init__`` made any other collection a tuple), each one of ``choices``
    where there are choices."""
    if not isinstance(value, tuple):
        raise InvalidArgumentError(
            f"{value!r}: must be a list of names, not {type(value).__name__}", parameter=name
        )
    if not value:
        what = f"one of {', '.join(choices)}" if choices else "one"
        raise InvalidArgumentError(f"is empty: give at least {what}", parameter=name)
    for item in value:
        if choices and item not in choices:
            raise InvalidArgumentError(
                f"{item!r}: choose from {', '.join(choices)}", parameter=name
            )


def _check_shapes(shapes: object) -> None:
    """``shapes`` maps input names to their dimensions, each a whole number >= 1."""
    if not isinstance(shapes, Mapping):
        raise InvalidArgumentError(
            f"must be a dict of input name to dimensions, not {type(shapes).__name__}",
            parameter="shapes",
        )
    for name, dims in shapes.items():
        if not isinstance(name, str):
            raise InvalidArgumentError(
                f"{name!r}: an input name must be a str, not {type(name).__name__}",
                parameter="shapes",
            )
        if (
            not isinstance(dims, (list, tuple))
            or not dims
            or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in dims)
        ):
            raise InvalidArgumentError(
                f"{name}={dims}: every dimension must be a whole number >= 1",
                parameter="shapes",
            )
