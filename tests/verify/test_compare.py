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
