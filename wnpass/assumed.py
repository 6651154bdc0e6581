"""What torch.export assumed of an export's dynamic sizes besides their ranges.

As it traces, torch.export records each condition the model's code (or one of torch's
decompositions) took on a dynamic size: a block that pads an odd count of frames, traced on an
even one, keeps ``2*(n//8) == n//4``; a broadcast keeps ``n != 1``. The graph computes every
size with the branch the example took. torch.onnx.export drops these conditions with the
decompositions; only bounds on one size survive, as the program's ranges. :func:`captured`
keeps the program torch.export captured, with its conditions once decomposed, and
:func:`conditions` reads from it the conditions no range says, each as a test of one dynamic
size (the others at the example's) with the sizes nearest the example's where it does not
hold: where PyTorch runs at those, the file may compute them otherwise.

torch 2.13 records the conditions as deferred runtime asserts of the program's shape
environment (guards, where it records them so); where a torch keeps them otherwise,
:func:`conditions` gives None, and the export says so (:data:`UNREAD`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import torch

logger = logging.getLogger(__name__)

# How far from the example's size the sizes where a condition fails are looked for, each way:
# wide enough for a condition on frames after the strides of a speech front end (wav2vec2's
# 320 samples a frame: the parity of the frames repeats every 640 samples).
WINDOW = 1 << 13

# Said where the conditions cannot be read (a torch that keeps them otherwise).
UNREAD = (
    "the conditions torch.export took on the dynamic sizes besides their ranges cannot be "
    "read from this torch's program: a branch on a size's remainder or on a sum of sizes is "
    "not looked for"
)

# The sizes where each condition fails that PyTorch is tried at, nearest the example's first,
# until it runs at one: a model that takes lengths of a multiple of 2, 4 or 8 only fails at
# the others (as past a bound).
FAILING = 8


class Condition(NamedTuple):
    """A condition torch.export took on one dynamic size (``symbol``, its name), as said with
    the size as ``n`` (``text``: ``2*(n // 8) == n // 4``); ``alone``: False where it involves
    other dynamic sizes too, which ``holds`` takes at the example's. ``failing``: the sizes
    nearest the example's where it does not hold, within the size's range (at most
    :data:`FAILING`). ``holds_at``: whether it holds with the sizes it involves at those
    given (by torch.export's name), the others at the example's."""

    symbol: str
    text: str
    alone: bool
    failing: tuple[int, ...]
    holds: Callable[[int], bool]
    holds_at: Callable[[Mapping[str, int]], bool]
    # whether it ties sizes to each other (``s94 == s27``: a mask's length and its input's,
    # which torch.export did not make one size): where ONNX Runtime refuses the inputs that
    # break it, they do not go together in the file (a branch on it still shows as values)
    tie: bool = False


class Captured(NamedTuple):
    """A program torch.export gave torch.onnx.export, and the conditions taken on its sizes
    once it is decomposed (sympy; None where they cannot be read): its decompositions take
    some (adaptive pooling's), and torch.onnx's own passes after them run in the same shape
    environment and add theirs (a fake convolution's choice of kernel keeps ``batch < 16``),
    which are no condition of the graph's."""

    program: Any
    conditions: list[Any] | None


@contextlib.contextmanager
def captured() -> Iterator[list[Captured]]:
    """The programs torch.export gave torch.onnx.export inside, as captured: torch.onnx then
    decomposes each (``run_decompositions``), and the decomposed program keeps no conditions.
    torch's method is wrapped while any block is open, and given back when the last closes;
    each block (a thread's export) gets the programs of its own exports."""
    global _open
    programs: list[Captured] = []
    with _wrapping_lock:
        if _open == 0:
            _wrap()
        _open += 1
    try:
        token = _capturing.set(programs)
        try:
            yield programs
        finally:
            with contextlib.suppress(ValueError):  # left from another context: it ends there
                _capturing.reset(token)
    finally:
        with _wrapping_lock:
            _open -= 1
            if _open == 0:
                _unwrap()


_capturing: contextvars.ContextVar[list[Captured] | None] = contextvars.ContextVar(
    "wnpass_capturing", default=None
)
_wrapping_lock = threading.Lock()
_open = 0  # blocks of captured() open, in any thread
_original: Any = None


def _wrap() -> None:
    global _original
    exported_program = torch.export.ExportedProgram
    _original = original = exported_program.run_decompositions

    @functools.wraps(original)
    def run_decompositions(self: Any, *args: Any, **kwargs: Any) -> Any:
        decomposed = original(self, *args, **kwargs)
        # after the decompositions, which take conditions of their own in the same shape
        # environment (adaptive pooling keeps ``n % 6 != 0``); before torch.onnx's passes
        if (programs := _capturing.get()) is not None:
            programs.append(Captured(self, _kept(self)))
        return decomposed

    exported_program.run_decompositions = run_decompositions  # type: ignore[method-assign]


def _unwrap() -> None:
    torch.export.ExportedProgram.run_decompositions = _original  # type: ignore[method-assign]


def conditions(captured: Captured) -> list[Condition] | None:
    """The conditions of a program :func:`captured` kept that fail at some size
    of a dynamic size's range within :data:`WINDOW` of the example's: one per condition and
    size it involves (a condition on two sizes is one on each, the other at the example's).
    None where they cannot be read (another torch): the caller says so."""
    import sympy

    read = _read(captured)
    try:  # torch's printer of sizes, which torch.export's own guard code uses
        from torch.utils._sympy.printers import PythonPrinter
    except ImportError as error:
        logger.info("torch.export's conditions cannot be read: %s", error)
        return None
    if read is None:
        return None
    printer = PythonPrinter()
    ranges, examples, expressions = read
    found: dict[tuple[str, str], Condition] = {}
    for expression in dict.fromkeys(expressions):
        symbols = {str(symbol): symbol for symbol in expression.free_symbols}
        if not symbols or not all(s in ranges and s in examples for s in symbols):
            continue  # a constant, or one on a size taken from values (unbacked): no range
        compiled = _compiled(printer.doprint(expression), tuple(symbols))
        if compiled is None:
            continue
        at = functools.partial(_holds_at, _lenient(compiled), {n: examples[n] for n in symbols})
        tie = _ties(expression)
        for name, symbol in symbols.items():
            others = {s: sympy.Integer(examples[n]) for n, s in symbols.items() if n != name}
            size = sympy.Symbol("n", integer=True, positive=True)
            alone = expression.xreplace(others).xreplace({symbol: size})
            if alone in (sympy.true, sympy.false):
                continue
            text = printer.doprint(alone)
            holds = _test(text, examples[name])
            if holds is None or (name, text) in found:
                continue
            lower, upper = ranges[name]
            failing = _failing(holds, examples[name], lower, upper)
            if failing:
                alone_ = len(symbols) == 1
                found[name, text] = Condition(name, text, alone_, failing, holds, at, tie)
    return _merged(found.values())


def _read(
    captured: Captured,
) -> tuple[dict[str, tuple[int, int | None]], dict[str, int], list[Any]] | None:
    """The program's ranges and example sizes by name, and its conditions (sympy); None where
    they cannot be read: a torch that keeps them otherwise (logged)."""
    if captured.conditions is None:
        return None
    environment = _environment(captured.program)
    try:
        ranges = {
            str(symbol): (int(bounds.lower), upper_bound(bounds.upper))
            for symbol, bounds in captured.program.range_constraints.items()
        }
        # torch 2.13 names the example sizes backed_var_to_val, and var_to_val before
        values = getattr(environment, "backed_var_to_val", None)
        if values is None:
            values = environment.var_to_val
        examples = {str(symbol): int(value) for symbol, value in values.items()}
    except (AttributeError, TypeError, ValueError) as error:  # not as torch 2.13 keeps them
        logger.info("torch.export's conditions cannot be read: %s", error)
        return None
    return ranges, examples, captured.conditions


def _kept(program: Any) -> list[Any] | None:
    """The conditions ``program``'s shape environment holds now (its deferred runtime asserts
    and its guards); None where they cannot be read (logged)."""
    environment = _environment(program)
    try:
        asserts = [a.expr for kept in environment.deferred_runtime_asserts.values() for a in kept]
        return asserts + [guard.expr for guard in environment.guards]
    except (AttributeError, TypeError) as error:  # not as torch 2.13 keeps them
        logger.info("torch.export's conditions cannot be read: %s", error)
        return None


def _ties(expression: Any) -> bool:
    """Whether a condition ties dynamic sizes to each other: an equality of two sides that
    each involve a size (``Eq(s94, s27)``), or one size's being a multiple of another's
    (``Eq(Mod(s94*s95, s27), 0)``, a reshape of a mask to its input's batch); not
    ``Eq(Mod(s0 + s1, 4), 0)``, a branch on them."""
    import sympy
    from torch.utils._sympy.functions import Mod, PythonMod

    if not isinstance(expression, sympy.Eq) or len(expression.free_symbols) < 2:
        return False
    left, right = expression.args
    if left.free_symbols and right.free_symbols:
        return True
    divided = left if right.free_symbols == set() else right
    return (
        (right == 0 or left == 0)
        and isinstance(divided, (Mod, PythonMod, sympy.Mod))
        and all(part.free_symbols for part in divided.args)
    )


def _merged(found: Iterable[Condition]) -> list[Condition]:
    """Conditions on one size that fail at the same sizes as one (one branch often keeps two:
    ``n // 4 <= 2*(n // 8)`` and ``2*(n // 8) == n // 4``), their texts joined by "and"."""
    merged: dict[tuple[str, tuple[int, ...], bool, bool], list[Condition]] = {}
    for condition in found:
        key = (condition.symbol, condition.failing, condition.alone, condition.tie)
        merged.setdefault(key, []).append(condition)
    return [
        group[0]
        if len(group) == 1
        else group[0]._replace(
            text=" and ".join(f"({c.text})" if " or " in c.text else c.text for c in group),
            holds=functools.partial(_all_hold, tuple(c.holds for c in group)),
            holds_at=functools.partial(_all_hold, tuple(c.holds_at for c in group)),
        )
        for group in merged.values()
    ]


def _all_hold(tests: tuple[Callable[[Any], bool], ...], given: Any) -> bool:
    return all(test(given) for test in tests)


def _holds_at(
    whole: Callable[..., bool], examples: dict[str, int], given: Mapping[str, int]
) -> bool:
    return whole(*(given.get(name, example) for name, example in examples.items()))


def _environment(program: Any) -> Any:
    """The shape environment of the program's dynamic sizes (that of any input's)."""
    for node in program.graph.nodes:
        if node.op != "placeholder":
            continue
        for size in getattr(node.meta.get("val"), "shape", ()):
            if isinstance(size, torch.SymInt):
                return size.node.shape_env
    return None


def upper_bound(upper: Any) -> int | None:
    """A range's upper bound (torch.export's), None where unbounded."""
    import sympy
    from torch.utils._sympy.numbers import int_oo

    return None if upper in (int_oo, sympy.oo) else int(upper)


# What torch's printer of sizes writes, and nothing else.
_NAMES = {"math": math, "torch": torch, "min": min, "max": max, "abs": abs, "round": round}


def _test(text: str, example: int) -> Callable[[int], bool] | None:
    """A test of the condition ``text`` (Python over ``n``) at a size (:func:`_lenient`); None
    where it does not hold at the example's size, as every condition torch.export took does,
    or cannot be evaluated there: it is logged."""
    function = _compiled(text, ("n",))
    try:
        usable = function is not None and bool(function(example))
    except Exception:  # torch's text: any failure, and it is not usable
        usable = False
    if function is None or not usable:
        logger.info("a condition on a dynamic size wnpass cannot evaluate: %s", text)
        return None
    return _lenient(function)


def _compiled(text: str, names: tuple[str, ...]) -> Callable[..., Any] | None:
    """The condition ``text`` (as torch's printer of sizes writes it) as a Python function of
    the sizes ``names`` (torch.export's names, or ``n``); None where it cannot be made one."""
    try:
        return eval(f"lambda {', '.join(names)}: {text}", {"__builtins__": {}, **_NAMES})
    except SyntaxError:
        return None


def _lenient(function: Callable[..., Any]) -> Callable[..., bool]:
    """``function`` as a test: true where it cannot be evaluated at some sizes, as where it
    divides by zero (no size to try there)."""

    def holds(*sizes: int) -> bool:
        try:
            return bool(function(*sizes))
        except (ArithmeticError, ValueError):
            return True

    return holds


def _failing(
    holds: Callable[[int], bool], example: int, lower: int, upper: int | None
) -> tuple[int, ...]:
    """The sizes nearest ``example`` within ``lower`` to ``upper`` where the condition does
    not hold (above first where two are as near; at most :data:`FAILING`): within
    :data:`WINDOW` each size, then further out each way (:func:`_far`)."""
    found: list[int] = []
    for distance in range(1, WINDOW + 1):
        for n in (example + distance, example - distance):
            if lower <= n and (upper is None or n <= upper) and not holds(n):
                found.append(n)
        if len(found) >= FAILING:
            break
    if found:
        return tuple(found[:FAILING])
    return _far(holds, example, lower, min(upper, _FARTHEST) if upper is not None else _FARTHEST)


# The largest size looked at past the window (a length of 2**31 is more than any input).
_FARTHEST = 1 << 31


def _far(holds: Callable[[int], bool], example: int, lower: int, upper: int) -> tuple[int, ...]:
    """Past :data:`WINDOW`, the sizes where the condition fails nearest the example on one
    side (``min(t, 10000) == t`` of an example of 16): sizes doubling their distance from the
    example, each way, to the range's bounds; at the first where it fails, the nearest size
    where it starts to, between it and the last where it holds (by halving: where the
    condition changes once there, as a bound does), and the sizes past that."""
    for way in (1, -1):
        near, distance = example, WINDOW
        while True:
            n = max(lower, min(upper, example + way * distance))
            if n == near:
                break  # the bound reached
            if not holds(n):
                while abs(n - near) > 1:  # holds at near, fails at n
                    middle = (near + n) // 2
                    near, n = (middle, n) if holds(middle) else (near, middle)
                past = (n + way * k for k in range(FAILING))
                return tuple(s for s in past if lower <= s <= upper and not holds(s))
            near, distance = n, distance * 2
    return ()
