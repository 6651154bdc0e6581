"""Compare two sets of outputs element by element, within tolerances chosen per dtype.

An element is outside tolerance when ``|candidate - reference| > atol + rtol * |reference|``
(numpy's ``allclose`` rule, element by element). An ``atol`` not given (the dtype's default,
whether ``rtol`` is given or not) is at most ``rtol`` times the output's scale, its
largest finite reference magnitude (a sequence's items each their own; :func:`scaled_atol`):
it is there for the elements near zero of an output of ordinary size,
and a fixed one would pass any error in an output whose every value is below it (a float32
output of scale 1e-7 against all zeros: a 100% error within 1e-5).

NaN and Inf must sit in the same places (with the same sign) in both: an element that has one
where the other has not counts as outside tolerance too, and the error sizes are over the
elements finite in both. Integers, booleans and strings must be equal, whatever tolerance was
asked for; a sequence output is compared item by item, a map (a dict) must be equal
(``check`` meets none: a model with a map type is refused when read, since onnx-ir cannot
hold one).

An output in which not one element could be compared (it has no elements, every element is NaN
or Inf in both, or it is an optional output empty in both) says so (``uncompared``); when that
is so of every output, the comparison as a whole fails with ``nothing compared``
(:func:`nothing_compared`): equal NaN positions and empty outputs say nothing about whether the
two models compute the same function. One such output among others that were compared (an
output empty by construction) is no failure. An optional output empty on one side only is a
mismatch.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import ml_dtypes
import numpy as np

from wnpass.errors import WnpassError
from wnpass.report import counted

__all__ = [
    "DEFAULT_TOLERANCES",
    "HeldByOutput",
    "OutputComparison",
    "compare_outputs",
    "compare_within",
    "dtype_name",
    "failed_on_floats",
    "is_exact",
    "nothing_compared",
    "scaled_atol",
    "tolerance_for",
    "whole_numbers",
]

# (rtol, atol) by output dtype. The two models should compute the same function, but ONNX
# Runtime may fuse, reorder or fold them differently, so float outputs differ by roundings
# accumulated over reductions of thousands of terms:
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1e-4, 1e-5),  # ~6e-8 per rounding, times ~100-1000 accumulated roundings
    "float16": (1e-2, 1e-3),  # 4.9e-4 per rounding
    "bfloat16": (5e-2, 1e-2),  # 3.9e-3 per rounding
    "float64": (1e-9, 1e-12),  # 1.1e-16 per rounding
    "complex64": (1e-4, 1e-5),  # float32 parts, compared as complex numbers
    "complex128": (1e-9, 1e-12),  # float64 parts
}
# Any other float (the float8s) is compared exactly by value, 0/0 (-0 == +0; NaN by place): one
# float8 step is 6% to 25% of the value (100% in float8e8m0), so a default wide enough for a
# value that upstream rounding moves across a step would pass real errors of that size;
# --rtol/--atol allow one.
EXACT_FLOAT = (0.0, 0.0)
# Integer types numpy lacks (ml_dtypes adds them, as void to numpy): compared for equality too.
_NARROW_INTEGERS = frozenset(
    np.dtype(t) for t in (ml_dtypes.int2, ml_dtypes.uint2, ml_dtypes.int4, ml_dtypes.uint4)
)
# What a comparison that found nothing to compare says, and what to do about it.
NOTHING_COMPARED = "nothing compared: {}; try other inputs"


def is_exact(dtype: np.dtype) -> bool:
    """Integers (int4 and int2 too), bools and strings are compared for equality: no
    tolerance applies to them."""
    return dtype.kind in "biuOSU" or dtype in _NARROW_INTEGERS


def tolerance_for(
    dtype: np.dtype, rtol: float | None, atol: float | None
) -> tuple[float | None, float | None]:
    """The ``(rtol, atol)`` used for an output of ``dtype``: ``(None, None)`` where it is
    compared exactly (:func:`is_exact`), else the dtype's default, overridden by a user's."""
    if is_exact(dtype):
        return None, None
    default = DEFAULT_TOLERANCES.get(str(dtype), EXACT_FLOAT)
    return (default[0] if rtol is None else rtol, default[1] if atol is None else atol)


def scaled_atol(atol: float, rtol: float, scale: float) -> float:
    """A default ``atol`` for an output of ``scale`` (its largest finite reference magnitude):
    at most ``rtol * scale``, what ``rtol`` allows at the output's largest value, so that an
    output of tiny values is held to ``rtol`` too; 0 for an all-zero reference, which only
    zeros match."""
    return min(atol, rtol * scale)


@dataclasses.dataclass
class OutputComparison:
    """How one output of the candidate compares with the reference's."""

    name: str
    shape: list[int] | None
    dtype: str | None
    rtol: float | None  # None (both): compared exactly, no tolerance applies
    atol: float | None
    atol_scaled: bool = False  # atol is the default's cap, rtol times the scale (scaled_atol)
    max_abs: float = 0.0
    max_rel: float = 0.0  # largest per-element |error| / |reference| (large near zero)
    scale: float = 0.0  # largest |reference|: the output's scale
    # max_abs / scale: the headline error, relative to the output; None where the reference
    # is all zero and has no scale (a relative error of nothing)
    max_scaled: float | None = 0.0
    outside: int = 0  # elements outside tolerance
    total: int = 0
    problem: str | None = None  # shape/dtype/NaN mismatch or a missing output
    uncompared: str | None = None  # why not one element was compared (no problem by itself)
    numeric: bool = True  # False: strings or a map, equal or not (no tolerance, no error size)
    # the dtype whose default tolerances apply where not the output's own: the precision
    # its values are computed at (float16 cast to float32 at the model's end); None where a
    # tolerance was given
    defaults_of: str | None = None
    # the narrower float the graph computes it at whose tolerance was not used, since every
    # value of the reference is a whole number (an index, a count): that tolerance would pass
    # one off by one (:class:`HeldByOutput`); None where it was used, or there is none
    whole_numbers: str | None = None
    measured: bool = False  # the error sizes were measured (on elements compared by value)
    # a sequence whose items took other atols (each capped at rtol times its own scale):
    # atol is the largest of them
    atol_per_item: bool = False
    # where it failed on floats: how the reference with each weight moved by one ulp compared
    # with the reference, at the same tolerance (wnpass.verify.sensitivity); None: not probed
    ulp_max_abs: float | None = None
    ulp_passed: bool | None = None

    @property
    def exact(self) -> bool:
        """Compared for equality (integers, bools, strings, maps): no tolerance was used."""
        return self.rtol is None

    @property
    def passed(self) -> bool:
        return self.problem is None and self.outside == 0

    @property
    def status(self) -> str:
        return output_status(self.passed, self.uncompared)

    def __bool__(self) -> bool:
        return self.passed


def _scaled(max_abs: float, scale: float) -> float | None:
    """The headline error: ``max_abs`` relative to the output's scale (its largest reference
    magnitude); None where the reference is all zero and has no scale (``max_abs`` itself was
    shown, under "max abs/scale", as if relative)."""
    return max_abs / scale if scale else None


def _compare(
    name: str,
    ref: Any,
    cand: Any,
    rtol: float | None,
    atol: float | None,
    held_as: np.dtype | None = None,
) -> OutputComparison:
    if isinstance(ref, list) and isinstance(cand, list):
        return _compare_sequences(name, ref, cand, rtol, atol)
    if ref is None or cand is None:
        return _compare_optionals(name, ref, cand)
    if not isinstance(ref, np.ndarray) or not isinstance(cand, np.ndarray):
        result = OutputComparison(name, None, _kind(ref), None, None, total=1)
        result.numeric = False
        if type(ref) is not type(cand):
            result.problem = f"a {_kind(cand)} where the reference has a {result.dtype}"
        elif ref != cand:  # a map (ONNX Runtime gives a dict): exact
            result.outside = 1
        return result
    r, a = tolerance_for(ref.dtype if held_as is None else held_as, rtol, atol)
    result = OutputComparison(name, list(ref.shape), dtype_name(ref), r, a, total=int(ref.size))
    if held_as is not None and held_as != ref.dtype and rtol is None and atol is None:
        # where one of them was given, the note says which default is whose
        result.defaults_of = str(held_as)
    if ref.shape != cand.shape:
        result.problem = f"shape {list(cand.shape)} != reference {list(ref.shape)}"
        return result
    if ref.dtype != cand.dtype:
        result.problem = f"dtype {dtype_name(cand)} != reference {dtype_name(ref)}"
        return result
    result.numeric = ref.dtype.kind not in "OSU"  # strings: equal or not, no error size
    if ref.size == 0:
        result.uncompared = "the output has no elements"
        return result
    if not result.numeric:
        result.outside = int(np.count_nonzero(ref != cand))
        return result
    if r is None or a is None:  # integers and bools: equal or not, and by how much
        diff = ref != cand
        result.outside = int(np.count_nonzero(diff))
        # in Python's integers: no numpy type holds every int64/uint64 difference or magnitude
        result.scale = float(max(abs(int(ref.min())), abs(int(ref.max()))))
        if result.outside:
            pairs = list(zip(ref[diff].tolist(), cand[diff].tolist(), strict=True))
            result.max_abs = float(max(abs(int(r) - int(c)) for r, c in pairs))
            result.max_rel = max(_int_rel(int(r), int(c)) for r, c in pairs)
        result.max_scaled = _scaled(result.max_abs, result.scale)
        result.measured = True
        return result
    # complex numbers as complex: |error| and |reference| over both parts (a float cast
    # would keep the real part alone)
    wide = np.complex128 if ref.dtype.kind == "c" else np.float64
    ref64, cand64 = ref.astype(wide), cand.astype(wide)
    ref_finite = np.isfinite(ref64)
    both = ref_finite & np.isfinite(cand64)  # NaN/Inf are matched, not subtracted
    if atol is None and ref_finite.any():  # the default atol, whatever the rtol: capped
        capped = scaled_atol(a, r, float(np.abs(ref64[ref_finite]).max()))
        if capped < a:
            a, result.atol, result.atol_scaled = capped, capped, True
    alike = ~both & _alike(ref64, cand64, r, a)
    unlike = int(np.count_nonzero(~both & ~alike))  # NaN or Inf where the other has not it
    if unlike:  # where, or which: +Inf in every place of a -Inf was "different places" (t143)
        parts = (ref64.real, cand64.real, ref64.imag, cand64.imag) if wide is np.complex128 else (
            ref64, cand64)  # fmt: skip
        moved = any(
            (np.isfinite(r) != np.isfinite(c)).any()
            for r, c in zip(parts[::2], parts[1::2], strict=True)
        )  # a complex one part by part: inf+1j for 1+infj moved it (t144)
        result.problem = (
            "NaN/Inf in different places" if moved else "elements with NaN/Inf differ in value"
        )
    result.outside = unlike
    with np.errstate(over="ignore"):  # float64's extremes: see _outside
        error = np.abs(ref64[both] - cand64[both])
        reference = np.abs(ref64[both])
    if error.size:  # the error sizes are over the elements finite in both
        result.max_abs = float(error.max())  # Inf where a difference is beyond float64
        with np.errstate(over="ignore"):
            rel = error / np.maximum(reference, np.finfo(np.float64).tiny)
        result.max_rel = float(rel.max())
        result.scale = float(reference.max())
        result.max_scaled = _scaled(result.max_abs, result.scale)
        result.measured = True
        result.outside += int(np.count_nonzero(_outside(ref64[both], cand64[both], r, a)))
    elif result.problem is None:  # NaN/Inf alike in both, and nothing else
        result.uncompared = "every element is NaN or Inf in both"
    return result


def _int_rel(ref: int, cand: int) -> float:
    """|cand - ref| / |ref| of two integers, as a float's relative error is taken (a zero
    reference as the smallest float64): Inf beyond float64."""
    return abs(cand - ref) / max(float(abs(ref)), _TINY)


_TINY = float(np.finfo(np.float64).tiny)


def dtype_name(array: np.ndarray) -> str:
    """An array's element type as a model's is named: ``string`` for ONNX Runtime's string
    tensors (numpy object or unicode arrays)."""
    return "string" if array.dtype.kind in "OSU" else str(array.dtype)


def _kind(value: Any) -> str:
    """What an output that is not an array is, in ONNX's words."""
    if isinstance(value, list):
        return "sequence"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, np.ndarray):
        return "tensor"
    return type(value).__name__


def _outside(ref: np.ndarray, cand: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """Where ``|cand - ref| > atol + rtol * |ref|`` (meaningful where both are finite), exactly
    where float64 overflows: the difference of two finite values near its largest (1.7e308
    and -1.7e308), or the tolerance, can be Inf. Those elements are compared again in
    quarters (exact for numbers that large), in which neither side overflows, unless the
    tolerance is beyond 4 times the largest float64, and then beyond any such difference."""
    with np.errstate(over="ignore", invalid="ignore"):  # invalid: 0 * Inf, Inf - Inf
        error = np.abs(cand - ref)
        tolerance = atol + rtol * np.abs(ref)
        outside = error > tolerance
        over = ~np.isfinite(error) | ~np.isfinite(tolerance)
        if over.any():
            r4, c4 = ref[over] / 4, cand[over] / 4
            outside[over] = np.abs(c4 - r4) > atol / 4 + rtol * np.abs(r4)
    return outside


def _alike(ref: np.ndarray, cand: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """Where an element that is not finite in both is the same in both: NaN for NaN, the same
    infinity; a complex one part by part (``nan+1j`` is not ``nan+5j``), each part NaN in
    both, the same infinity, or finite in both and within tolerance."""
    if ref.dtype.kind != "c":
        return (np.isnan(ref) & np.isnan(cand)) | (np.isinf(ref) & (ref == cand))

    def same(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        close = np.isfinite(r) & np.isfinite(c) & ~_outside(r, c, rtol, atol)
        return (np.isnan(r) & np.isnan(c)) | (np.isinf(r) & (r == c)) | close

    return same(ref.real, cand.real) & same(ref.imag, cand.imag)


def _compare_optionals(name: str, ref: Any, cand: Any) -> OutputComparison:
    """An optional output ONNX Runtime gave as None (empty) on either side: empty in both
    compares nothing (an absent value says nothing of what either model computes); empty on
    one side only is a mismatch."""
    result = OutputComparison(name, None, None, None, None, numeric=False)
    if ref is None and cand is None:
        result.uncompared = "the optional output is empty in both"
    elif ref is None:
        result.problem = "a value where the reference's optional output is empty"
    else:
        result.problem = "empty where the reference's optional output has a value"
    return result


def _compare_sequences(
    name: str, ref: list[Any], cand: list[Any], rtol: float | None, atol: float | None
) -> OutputComparison:
    """A sequence output, item by item, as one comparison: the worst of its items."""
    pairs = enumerate(zip(ref, cand, strict=False))  # a length mismatch is reported below
    items = [_compare(f"{name}[{i}]", r, c, rtol, atol) for i, (r, c) in pairs]
    # the items are of one type; a comparison is falsy when it failed, so "is not None"
    first = items[0] if items else None
    result = OutputComparison(
        name,
        [len(ref)],
        f"sequence<{first.dtype}>" if first is not None else "sequence",
        first.rtol if first is not None else None,
        first.atol if first is not None else None,
        total=sum(item.total for item in items),
        numeric=first.numeric if first is not None else True,
    )
    if len(ref) != len(cand):
        result.problem = f"{counted(len(cand), 'item')} != reference {len(ref)}"
        return result
    if not items:
        result.uncompared = "the sequence has no items"
        return result
    if any(item.atol_scaled for item in items):  # each item's atol is its own: the loosest
        loosest = max((i for i in items if i.atol is not None), key=lambda i: i.atol or 0.0)
        result.atol, result.atol_scaled = loosest.atol, loosest.atol_scaled
        result.atol_per_item = (
            len({(i.atol, i.atol_scaled) for i in items if i.atol is not None}) > 1
        )
    for item in items:
        result.outside += item.outside
        result.max_abs = max(result.max_abs, item.max_abs)
        result.max_rel = max(result.max_rel, item.max_rel)
        result.scale = max(result.scale, item.scale)
        if result.problem is None and item.problem is not None:
            result.problem = f"{item.name}: {item.problem}"
    result.max_scaled = _scaled(result.max_abs, result.scale)  # over every item, as one output
    result.measured = any(item.measured for item in items)
    if all(item.uncompared for item in items):
        result.uncompared = "no element of any item could be compared"
    return result


class Compared(Protocol):
    """What :func:`nothing_compared` reads of a comparison (check's, or a checkpoint check's)."""

    name: str
    problem: str | None
    uncompared: str | None


def failed_on_floats(c: OutputComparison) -> bool:
    """An output that failed by elements outside a tolerance, not by a shape or a NaN."""
    return c.outside > 0 and c.problem is None and c.measured and not c.exact


def nothing_compared(comparisons: Sequence[Compared]) -> str | None:
    """Why a set of outputs compared nothing, when not one element of any could be compared
    (every output empty, or NaN/Inf alike in both): a failure, whatever each says; else None.
    """
    if comparisons and all(c.uncompared and c.problem is None for c in comparisons):
        reasons = dict.fromkeys(f"{c.name}: {c.uncompared}" for c in comparisons)
        return NOTHING_COMPARED.format("; ".join(reasons))
    return None


def uncompared_outputs(comparisons: Iterable[Compared]) -> list[str]:
    """The outputs of which no element was compared (every element NaN or Inf in both, none
    at all), each named once: no failure by itself, but no evidence either, which a passing
    verdict names (t337)."""
    return list(dict.fromkeys(c.name for c in comparisons if c.uncompared))


def output_status(passed: bool, uncompared: str | None) -> str:
    """An output's status in a report: ``passed``, ``failed``, or ``not compared`` (no element
    could be: no failure by itself, but nothing shown either)."""
    if not passed:
        return "failed"
    return "not compared" if uncompared else "passed"


def output_passed(passed: bool, uncompared: str | None) -> bool | None:
    """An output's ``passed`` in the JSON: null where not one element was compared, which is
    no failure but no match either (true read as "compared, equal")."""
    return None if passed and uncompared else passed


@dataclasses.dataclass(frozen=True)
class HeldByOutput:
    """The narrower float each of a model's outputs is computed at, by output name, as its
    graph says (a float16 model's outputs cast to float32:
    :func:`wnpass.verify.precision.computed_at`); that float's default tolerances apply, but
    to an output whose reference values are all whole numbers: an index or a count carried in
    float16 looks like a rounded value to any reading of the graph that can be fooled (t326,
    t330: a bucket ``Floor(x * 100)``, a branch never taken), and float16's rtol (1e-2) would
    pass one of 100 or more off by one, so such an output keeps its own type's tolerances
    (the stricter side: float16 values that are all whole by chance, a few of 512 and more,
    are held to it too). ``by_runtime``: the outputs ONNX Runtime computes in float32 from the
    narrower float's values, between the Casts it inserted (a float16 model it saved)."""

    dtypes: Mapping[str, np.dtype]
    by_runtime: frozenset[str] = frozenset()

    def of(self, name: str, reference: Any) -> tuple[np.dtype | None, np.dtype | None]:
        """The dtype whose tolerances apply to output ``name`` of values ``reference`` (None:
        its own), and the one set aside where the values are whole numbers only."""
        held = self.dtypes.get(name)
        if held is None or not whole_numbers(reference):
            return held, None
        return None, held


def whole_numbers(values: Any) -> bool:
    """Whether ``values`` is a float array whose finite values (one at least) are all whole
    numbers."""
    if not isinstance(values, np.ndarray) or values.dtype.kind != "f":
        return False
    finite = values[np.isfinite(values)]
    return finite.size > 0 and bool(np.array_equal(finite, np.trunc(finite)))


# the dtype whose default tolerances apply: for every output, or by output name
Held = np.dtype | HeldByOutput | None


def compare_within(
    reference: tuple[list[str], list[Any]],
    candidate: tuple[list[str], list[Any]],
    rtol: float | None,
    atol: float | None,
    what: str,
    held_as: Held = None,
) -> list[OutputComparison]:
    """:func:`compare_outputs` of two runs, each its output names and values; running out of
    memory there is the machine's limit, as ONNX Runtime's is: no verdict on the model
    (``what`` names the comparison)."""
    try:
        return compare_outputs(*reference, *candidate, rtol=rtol, atol=atol, held_as=held_as)
    except MemoryError:
        raise WnpassError(
            f"{what} needs more memory than there is; give smaller inputs (--shape, --inputs)"
        ) from None


def compare_outputs(
    names: list[str],
    reference: list[Any],
    candidate_names: list[str],
    candidate: list[Any],
    *,
    rtol: float | None = None,
    atol: float | None = None,
    held_as: Held = None,
) -> list[OutputComparison]:
    """Compare outputs matched by name; an output missing on either side is a failure.
    ``held_as``: the dtype whose default tolerances apply, where the arrays are wider than the
    values they hold (a checkpoint's float16 outputs compared in float64; a model's float16
    values cast to float32 at its end), for every output or by output name."""
    by_name = dict(zip(candidate_names, candidate, strict=True))
    results = []
    for name, ref in zip(names, reference, strict=True):
        if name not in by_name:
            if isinstance(ref, np.ndarray):
                r, a = tolerance_for(ref.dtype, rtol, atol)
                missing = OutputComparison(name, list(ref.shape), dtype_name(ref), r, a)
            else:
                missing = OutputComparison(name, None, _kind(ref), None, None)
            missing.problem = "missing in the candidate"
            results.append(missing)
            continue
        held, aside = (held_as if isinstance(held_as, np.dtype) else None), None
        if isinstance(held_as, HeldByOutput):
            held, aside = held_as.of(name, ref)
        results.append(_compare(name, ref, by_name[name], rtol, atol, held))
        if aside is not None and (rtol is None or atol is None):  # a default is used
            results[-1].whole_numbers = str(aside)
    for name in candidate_names:
        if name not in names:
            extra = OutputComparison(name, None, None, None, None)
            extra.problem = "not in the reference"
            results.append(extra)
    # an output listed more often on one side moves the others' positions: a caller that
    # reads them by position (run(None, ...)) gets another output there
    listed, candidate_listed = Counter(names), Counter(candidate_names)
    for name in dict.fromkeys(names):
        if name in candidate_listed and listed[name] != candidate_listed[name]:
            twice = OutputComparison(name, None, None, None, None)
            twice.problem = (
                f"listed {_times(candidate_listed[name])} among the candidate's outputs, "
                f"{_times(listed[name])} among the reference's"
            )
            results.append(twice)
    return results


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"
