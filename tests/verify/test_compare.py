"""Output comparison: NaN and Inf compared by place, the finite elements by tolerance."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from wnpass.verify.compare import OutputComparison, compare_outputs, nothing_compared
from wnpass.verify.report import failure_reason


def _compare(reference: list[float], candidate: list[float]) -> OutputComparison:
    ref, cand = np.array(reference, np.float32), np.array(candidate, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning reaches the user
        return compare_outputs(["y"], [ref], ["y"], [cand])[0]


def test_specials_in_the_same_places_leave_the_finite_elements_compared() -> None:
    row = _compare([np.inf, -np.inf, np.nan, 1.0], [np.inf, -np.inf, np.nan, 1.5])
    assert row.problem is None
    assert (row.max_abs, row.outside, row.total) == (0.5, 1, 4)


def test_specials_in_other_places_are_a_problem_without_a_warning() -> None:
    row = _compare([np.inf, 2.0, 1.0], [1.0, np.inf, 1.0])
    assert row.problem == "NaN/Inf in different places"
    assert row.max_abs == 0.0  # only the last element is finite in both
    assert row.outside == 2  # each element whose NaN/Inf the other lacks is outside tolerance


def test_every_unlike_special_is_counted_outside() -> None:
    """inf for 1, NaN for 1, -inf for inf, NaN for inf: each is outside; alike ones are not."""
    row = _compare(
        [1.0, 1.0, np.inf, np.inf, np.nan, -np.inf],
        [np.inf, np.nan, -np.inf, np.nan, np.nan, -np.inf],
    )
    assert (row.problem, row.outside, row.total) == ("NaN/Inf in different places", 4, 6)


def test_other_specials_in_the_same_places_are_said_so() -> None:
    """+Inf for -Inf and NaN for Inf, each where the other model has one too, was "NaN/Inf
    in different places" (t143): the places are the same, the values not."""
    row = _compare([np.inf, -np.inf, 1.0], [-np.inf, np.nan, 1.0])
    assert (row.problem, row.outside, row.total) == ("elements with NaN/Inf differ in value", 2, 3)
    said = {}
    for r, c in [
        (complex(np.inf, 1), complex(-np.inf, 1)),
        (complex(np.nan, 1), complex(np.nan, 5)),
    ]:
        ref, cand = (np.array([z], np.complex64) for z in (r, c))
        said[r, c] = compare_outputs(["y"], [ref], ["y"], [cand])[0].problem
    ref, cand = (np.array([z], np.complex64) for z in (complex(np.inf, 1), complex(1, np.inf)))
    moved = compare_outputs(["y"], [ref], ["y"], [cand])[0].problem  # part by part (t144)
    assert set(said.values()) == {"elements with NaN/Inf differ in value"}
    assert moved == "NaN/Inf in different places"


def test_strings_are_equal_or_not() -> None:
    ref, cand = np.array(["a", "b"], object), np.array(["a", "c"], object)
    row = compare_outputs(["s"], [ref], ["s"], [cand])[0]
    assert (row.numeric, row.outside, row.total, row.problem) == (False, 1, 2, None)
    assert compare_outputs(["s"], [ref], ["s"], [ref.copy()])[0].passed


def test_a_sequence_is_compared_item_by_item() -> None:
    ref = [np.array([1.0, 2.0], np.float32), np.array([3.0], np.float32)]
    close = [np.array([1.0, 2.0], np.float32), np.array([3.0 + 1e-6], np.float32)]
    far = [np.array([1.0, 2.5], np.float32), np.array([3.0], np.float32)]
    row = compare_outputs(["s"], [ref], ["s"], [close])[0]
    assert row.passed and (row.shape, row.dtype, row.total) == ([2], "sequence<float32>", 3)
    row = compare_outputs(["s"], [ref], ["s"], [far])[0]
    assert (row.outside, row.max_abs, row.passed) == (1, 0.5, False)
    row = compare_outputs(["s"], [ref], ["s"], [ref[:1]])[0]
    assert row.problem == "1 item != reference 2"


def test_a_map_is_equal_or_not_and_a_missing_sequence_is_named() -> None:
    assert compare_outputs(["m"], [{1: 0.5}], ["m"], [{1: 0.5}])[0].passed
    assert compare_outputs(["m"], [{1: 0.5}], ["m"], [{1: 0.25}])[0].outside == 1
    missing = compare_outputs(["s"], [[np.zeros(1)]], [], [])[0]
    assert missing.problem == "missing in the candidate" and missing.dtype == "sequence"


def test_outputs_without_elements_compare_nothing_and_fail_together() -> None:
    """y = x and y = 2x agree on every element of an empty input: there is none to agree on."""
    for dtype in (np.float32, np.int64, object):
        empty = np.zeros((0, 8), dtype)
        rows = compare_outputs(["y"], [empty], ["y"], [empty.copy()])
        assert rows[0].uncompared == "the output has no elements" and rows[0].problem is None
        assert nothing_compared(rows) == (
            "nothing compared: y: the output has no elements; try other inputs"
        )


def test_outputs_all_nan_or_inf_in_both_compare_nothing() -> None:
    row = _compare([np.nan, np.inf, -np.inf], [np.nan, np.inf, -np.inf])
    assert row.uncompared == "every element is NaN or Inf in both"
    assert nothing_compared([row]) is not None


def test_one_output_empty_by_construction_beside_compared_ones_is_no_failure() -> None:
    """A model that also returns ``y[:0]``: the other outputs were compared, so the set was."""
    y = np.array([1.0, 2.0], np.float32)
    rows = compare_outputs(["y", "e"], [y, y[:0]], ["y", "e"], [y.copy(), y[:0].copy()])
    assert all(row.passed for row in rows) and rows[1].uncompared is not None
    assert nothing_compared(rows) is None


def test_finite_zeros_are_a_real_comparison() -> None:
    """0 == 0 is compared: an output of zeros from both models passes."""
    row = _compare([0.0, 0.0, np.nan], [0.0, 0.0, np.nan])
    assert row.passed and (row.outside, row.total) == (0, 3)


def test_an_empty_sequence_compares_nothing() -> None:
    row = compare_outputs(["s"], [[]], ["s"], [[]])[0]
    assert row.uncompared == "the sequence has no items" and nothing_compared([row]) is not None


def test_integers_and_bools_are_exact_whatever_tolerance_is_asked_for() -> None:
    ref, cand = np.array([10, 20, 30, 40], np.int64), np.array([10, 20, 30, 42], np.int64)
    row = compare_outputs(["y"], [ref], ["y"], [cand], rtol=1.0, atol=100.0)[0]
    assert row.exact and (row.rtol, row.atol) == (None, None)
    assert (row.outside, row.max_abs, row.passed) == (1, 2.0, False)
    flags = np.array([True, False])
    row = compare_outputs(["b"], [flags], ["b"], [flags.copy()], rtol=1.0, atol=1.0)[0]
    assert row.exact and row.passed


def test_the_largest_integer_differences_are_measured_without_wrapping() -> None:
    """uint64 beyond int64's range, int64 from its smallest to its largest value, and a
    difference of 1 above 2**53: measured exactly, not wrapped around or rounded away."""
    big = np.array([2**63 + 5], np.uint64)
    row = compare_outputs(["u"], [big], ["u"], [np.array([5], np.uint64)])[0]
    assert (row.outside, row.max_abs) == (1, 2.0**63)
    low, high = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    row = compare_outputs(["i"], [np.array([low])], ["i"], [np.array([high])])[0]
    assert (row.outside, row.max_abs) == (1, 2.0**64)
    row = compare_outputs(["j"], [np.array([2**60])], ["j"], [np.array([2**60 + 1])])[0]
    assert (row.outside, row.max_abs) == (1, 1.0)


def test_floats_take_the_tolerance_asked_for() -> None:
    ref = np.array([1.0, 2.0], np.float32)
    row = compare_outputs(["y"], [ref], ["y"], [ref + 0.5], rtol=0.0, atol=1.0)[0]
    assert not row.exact and (row.rtol, row.atol) == (0.0, 1.0) and row.passed


def test_complex_outputs_are_compared_in_both_parts() -> None:
    """A float cast kept the real part alone: a wrong imaginary part passed as equal."""
    ref = np.array([1 + 2j, 3 - 1j], np.complex64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning: nothing is cast away
        row = compare_outputs(["y"], [ref], ["y"], [ref + 0.5j])[0]
        same = compare_outputs(["y"], [ref], ["y"], [ref.copy()])[0]
    assert not row.passed and (row.outside, row.max_abs) == (2, 0.5)
    assert row.scale == np.abs(ref).max() and (row.rtol, row.atol) == (1e-4, 1e-5)
    assert same.passed and same.max_abs == 0.0
    # an element NaN in a part: the other part is compared too (it was taken as alike)
    nan_ref = np.array([complex(np.nan, 1), 1 + 1j], np.complex64)
    nan_cand = np.array([complex(np.nan, 5), 1 + 1j], np.complex64)
    nan_row = compare_outputs(["y"], [nan_ref], ["y"], [nan_cand])[0]
    assert not nan_row.passed and nan_row.outside == 1
    assert compare_outputs(["y"], [nan_ref], ["y"], [nan_ref.copy()])[0].passed
    # ... within tolerance, as a finite element is (it had to be exactly equal)
    rounded = np.array([complex(1.0000001, np.nan), 1 + 1j], np.complex64)
    near = np.array([complex(1.0, np.nan), 1 + 1j], np.complex64)
    assert compare_outputs(["y"], [near], ["y"], [rounded])[0].passed


def test_an_optional_output_empty_in_both_compares_nothing() -> None:
    """ONNX Runtime gives an empty optional as None: nothing there to agree on."""
    row = compare_outputs(["o"], [None], ["o"], [None])[0]
    assert (row.problem, row.total) == (None, 0)
    assert row.uncompared == "the optional output is empty in both"
    assert nothing_compared([row]) is not None


def test_an_optional_output_empty_on_one_side_only_is_a_mismatch() -> None:
    y = np.array([1.0], np.float32)
    row = compare_outputs(["o"], [None], ["o"], [y])[0]
    assert row.problem == "a value where the reference's optional output is empty"
    row = compare_outputs(["o"], [[y]], ["o"], [None])[0]
    assert row.problem == "empty where the reference's optional output has a value"
    assert not row.passed


def test_the_scaled_error_of_a_sequence_is_over_all_its_items() -> None:
    """Items of one scale, the second differing: the error is not hidden behind the first."""
    x = np.array([0.5, -2.0], np.float32)
    row = compare_outputs(["s"], [[x, x]], ["s"], [[x, 3 * x]])[0]
    assert (row.max_abs, row.scale, row.max_scaled) == (4.0, 2.0, 2.0)


def test_the_scaled_error_of_an_integer_output_is_computed() -> None:
    ref, cand = np.array([10, -40], np.int64), np.array([10, -38], np.int64)
    row = compare_outputs(["i"], [ref], ["i"], [cand])[0]
    assert (row.max_abs, row.scale, row.max_scaled) == (2.0, 40.0, 0.05)
    low = np.array([np.iinfo(np.int64).min], np.int64)  # its magnitude is no int64
    row = compare_outputs(["j"], [low], ["j"], [low + 1])[0]
    assert (row.max_abs, row.scale) == (1.0, 2.0**63)


def test_a_sequence_whose_first_item_fails_reports_the_tolerance_used() -> None:
    """A failed comparison is falsy: the first item's failing must not make the sequence
    read as exact, with no tolerance and no item dtype."""
    ref = [np.array([1.0, 2.0], np.float32), np.array([3.0], np.float32)]
    cand = [np.array([1.0, 9.0], np.float32), np.array([3.0], np.float32)]
    row = compare_outputs(["s"], [ref], ["s"], [cand])[0]
    assert not row.passed and row.outside == 1
    assert (row.dtype, row.rtol, row.atol, row.exact) == ("sequence<float32>", 1e-4, 1e-5, False)
    ints = [np.array([1, 2], np.int64)]
    row = compare_outputs(["i"], [ints], ["i"], [[ints[0] + 1]])[0]
    assert (row.dtype, row.exact) == ("sequence<int64>", True)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_a_difference_beyond_float64_between_finite_values_is_outside(dtype: type) -> None:
    """1.7e308 against -1.7e308: |c - r| overflows to Inf, and so does rtol * |r| for
    rtol 1.5; Inf > Inf is false, which passed the element."""
    big = np.finfo(np.float64).max * 0.95
    ref: np.ndarray = np.array([big, 1.0], dtype)
    cand: np.ndarray = np.array([-big, 1.0], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning reaches the user
        row = compare_outputs(["y"], [ref], ["y"], [cand], rtol=1.5, atol=0.0)[0]
        wide = compare_outputs(["y"], [ref], ["y"], [cand], rtol=2.5, atol=0.0)[0]
    assert not row.passed and row.outside == 1 and row.max_abs == np.inf
    assert wide.passed  # |c - r| = 2|r| < 2.5|r|: truly within, and still found so


def test_a_complex_part_beyond_float64_beside_a_nan_part_is_outside() -> None:
    """An element NaN in one part in both has its other part compared within tolerance:
    there too a difference that overflows is no match."""
    big = np.finfo(np.float64).max * 0.95
    ref = np.array([complex(big, np.nan)], np.complex128)
    cand = np.array([complex(-big, np.nan)], np.complex128)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = compare_outputs(["y"], [ref], ["y"], [cand], rtol=1.5, atol=0.0)[0]
    assert not row.passed and row.outside == 1


def test_error_sizes_are_measured_or_marked_unmeasured_never_made_up() -> None:
    """An integer output 36 vs 39 had max_abs 3 beside max_rel 0; a string, an output with
    no element compared and a missing one had error sizes of 0, read as "no error"; a string
    was of dtype "object", a sequence against a tensor "a list where the reference has a
    ndarray"."""
    ints = compare_outputs(["i"], [np.array([36, 0])], ["i"], [np.array([39, 0])])[0]
    assert (ints.measured, ints.max_abs, ints.max_rel) == (True, 3.0, 3 / 36)
    strings = np.array(["a", "b"], object)
    row = compare_outputs(["s"], [strings], ["s"], [np.array(["a", "c"], object)])[0]
    assert (row.dtype, row.measured, row.status) == ("string", False, "failed")
    nan = np.full(2, np.nan, np.float32)
    row = compare_outputs(["n"], [nan], ["n"], [nan.copy()])[0]
    assert (row.measured, row.passed, row.status) == (False, True, "not compared")
    row = compare_outputs(["q"], [[np.zeros(1)]], ["q"], [np.zeros(1)])[0]
    assert row.problem == "a tensor where the reference has a sequence"
    row = compare_outputs(["f"], [np.ones(2, np.float32)], ["f"], [np.ones(2, np.float32)])[0]
    assert (row.measured, row.status) == (True, "passed")


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_an_output_of_tiny_values_is_held_to_rtol_not_passed_by_atol(dtype: type) -> None:
    """A default atol is at most rtol times the output's scale: an output whose every value
    is below atol (1e-5 for float32, 1e-3 for float16) is not equal to zeros, nor to itself
    with its sign flipped; rounding-sized differences still pass; an atol given is used as
    given, and an rtol given caps the default atol in its turn."""
    small = np.array([1e-7, -3e-7, 2e-7, 0.0], np.float64) * (1 if dtype == np.float32 else 1e3)
    ref: np.ndarray = small.astype(dtype)
    for wrong in (np.zeros_like(ref), -ref):
        row = compare_outputs(["y"], [ref], ["y"], [wrong])[0]
        assert not row.passed and row.outside == 3, row
        rtol = 1e-4 if dtype == np.float32 else 1e-2
        assert row.atol_scaled and row.atol == rtol * float(np.abs(ref.astype(np.float64)).max())
    close = ref + (np.spacing(ref) * (ref != 0)).astype(dtype)  # one ulp off each nonzero
    assert compare_outputs(["y"], [ref], ["y"], [close])[0].passed
    given = compare_outputs(["y"], [ref], ["y"], [np.zeros_like(ref)], atol=1e-3)[0]
    assert given.passed and (given.atol, given.atol_scaled) == (1e-3, False)
    # an rtol given leaves atol the default, capped all the same (t43: `--rtol 1e-4`, the
    # default said out loud, passed zeros for this output); rtol=0 then compares exactly
    for rtol in (1e-4, 1e-6, 0.0):
        rtol_only = compare_outputs(["y"], [ref], ["y"], [np.zeros_like(ref)], rtol=rtol)[0]
        assert not rtol_only.passed and rtol_only.atol_scaled, rtol_only
        assert rtol_only.atol == rtol * float(np.abs(ref.astype(np.float64)).max())


def test_the_scale_that_caps_atol_is_the_references_whatever_the_candidate_holds() -> None:
    """The cap is rtol times the largest finite reference value, also where the candidate
    has NaN there (which fails that element, not the others' atol)."""
    ref = np.array([1.0, 1e-6], np.float32)
    row = compare_outputs(["y"], [ref], ["y"], [np.array([np.nan, 1e-6 + 5e-6], np.float32)])[0]
    assert row.atol == 1e-5 and not row.atol_scaled and row.outside == 1


def test_a_sequence_shows_the_loosest_atol_its_items_used_and_how_it_came() -> None:
    """Each item caps its own atol: shown is the loosest, marked scaled only if it was, and
    marked as an item's where the items' differ: a failure of the tiny item read "outside
    atol=1e-05 (max abs 6.52e-07)", an atol that item was not judged with (t96)."""
    tiny, ordinary = np.array([1e-7], np.float32), np.array([1.0], np.float32)
    row = compare_outputs(["s"], [[tiny, ordinary]], ["s"], [[tiny, ordinary]])[0]
    assert row.passed and (row.atol, row.atol_scaled, row.atol_per_item) == (1e-5, False, True)
    row = compare_outputs(["s"], [[tiny]], ["s"], [[tiny]])[0]
    assert row.atol_scaled and row.atol is not None and row.atol < 1e-10
    assert not row.atol_per_item
    off = np.array([1.5e-7], np.float32)
    row = compare_outputs(["s"], [[tiny, ordinary]], ["s"], [[off, ordinary]])[0]
    assert failure_reason(row) == (
        "1 of 2 elements outside rtol=0.0001 atol<=1e-05 (rtol x each item's scale) "
        "(max abs 5e-08, 5e-08 of scale)"
    )


def test_an_output_of_ordinary_scale_keeps_the_default_atol() -> None:
    """At a scale of 0.1 and above (float32), rtol times the scale is at least atol: the
    default atol stands, for the elements near zero."""
    ref = np.array([0.5, 1e-9, -0.2], np.float32)
    row = compare_outputs(["y"], [ref], ["y"], [np.array([0.5, 5e-6, -0.2], np.float32)])[0]
    assert row.passed and (row.atol, row.atol_scaled) == (1e-5, False)


def test_an_all_zero_reference_is_matched_by_zeros_only() -> None:
    """No scale, no default atol: zeros match, anything else is outside."""
    zeros = np.zeros(3, np.float32)
    assert compare_outputs(["y"], [zeros], ["y"], [zeros.copy()])[0].passed
    row = compare_outputs(["y"], [zeros], ["y"], [np.array([0, 1e-9, 0], np.float32)])[0]
    assert not row.passed and row.outside == 1 and row.atol == 0.0
