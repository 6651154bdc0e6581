"""Output comparison: NaN and Inf compared by place, the finite elements by tolerance."""

from __future__ import annotations

import warnings

import numpy as np

from wnpass.verify.compare import OutputComparison, compare_outputs


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
    assert row.problem == "1 items != reference 2"


def test_a_map_is_equal_or_not_and_a_missing_sequence_is_named() -> None:
    assert compare_outputs(["m"], [{1: 0.5}], ["m"], [{1: 0.5}])[0].passed
    assert compare_outputs(["m"], [{1: 0.5}], ["m"], [{1: 0.25}])[0].outside == 1
    missing = compare_outputs(["s"], [[np.zeros(1)]], [], [])[0]
    assert missing.problem == "missing in the candidate" and missing.dtype == "list"
