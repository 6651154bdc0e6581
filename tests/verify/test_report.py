"""The check report's rows, failure lines and JSON: the tolerance shown is the one used."""

from __future__ import annotations

import numpy as np
import pytest

from wnpass.verify.compare import compare_outputs
from wnpass.verify.report import CheckReport, ProviderRun, comparison_row, failure_reason


def _int_report() -> CheckReport:
    ref, cand = np.array([10, 20, 30, 40], np.int64), np.array([10, 20, 30, 42], np.int64)
    comparisons = compare_outputs(["y"], [ref], ["y"], [cand], rtol=1.0, atol=100.0)
    return CheckReport("a.onnx", "b.onnx", runs=[ProviderRun("cpu", "default", "ok", comparisons)])


def test_an_integer_output_is_shown_and_recorded_as_exact() -> None:
    report = _int_report()
    (c,) = report.runs[0].comparisons
    row = comparison_row("cpu/default", c)
    assert row[-2:] == ("exact", "FAIL: 1 of 4 elements differ (max abs 2)")
    assert report.failures() == ["cpu/default: y: 1 of 4 elements differ (max abs 2)"]
    (recorded,) = report.to_dict()["runs"][0]["comparisons"]
    assert (recorded["rtol"], recorded["atol"], recorded["exact"]) == (None, None, True)


def test_a_float_output_shows_its_tolerance() -> None:
    ref = np.array([1.0, 2.0], np.float32)
    (c,) = compare_outputs(["y"], [ref], ["y"], [ref + 1.0], rtol=0.5, atol=0.25)
    assert comparison_row("cpu/default", c)[-2:] == (
        "rtol=0.5 atol=0.25",
        "FAIL: 1 of 2 elements outside rtol=0.5 atol=0.25 (max abs 1, 0.5 of scale)",
    )


def test_a_run_fails_only_when_no_output_compared_anything() -> None:
    y = np.array([1.0, 2.0], np.float32)
    rows = compare_outputs(["y", "e"], [y, y[:0]], ["y", "e"], [y.copy(), y[:0].copy()])
    run = ProviderRun("cpu", "default", "ok", rows)
    assert run.passed and comparison_row("cpu", rows[1])[-1] == (
        "not compared: the output has no elements"
    )
    empty = ProviderRun("cpu", "default", "ok", rows[1:])
    report = CheckReport("a.onnx", "b.onnx", runs=[empty])
    assert not empty.passed and not report and report.compared_nothing()
    assert report.failures() == [
        "cpu/default: nothing compared: e: the output has no elements; try other inputs"
    ]
    assert report.to_dict()["runs"][0]["nothing_compared"] == report.failures()[0][13:]
    # one provider matched, another compared nothing: no element differed, nothing compared
    both = CheckReport(
        "a.onnx", "b.onnx", runs=[run, ProviderRun("cuda", "default", "ok", rows[1:])]
    )
    assert not both and both.compared_nothing()
    shifted = compare_outputs(["y"], [y], ["y"], [y + 1])
    differs = CheckReport(
        "a.onnx", "b.onnx", runs=[empty, ProviderRun("cuda", "default", "ok", shifted)]
    )
    assert not differs and not differs.compared_nothing()


def test_a_failing_error_never_prints_equal_to_the_tolerance() -> None:
    """--rtol 0: 1.0014e-05 outside atol 1e-05 printed '(max abs 1e-05)' at 3 digits."""
    ref = np.array([0.0, 1.0])
    (c,) = compare_outputs(["y"], [ref], ["y"], [ref + 1.0014e-5], rtol=0.0, atol=1e-5)
    assert c.outside == 2
    why = "2 of 2 elements outside rtol=0 atol=1e-05 (max abs 1.001e-05, 1e-05 of scale)"
    report = CheckReport("a.onnx", "b.onnx", runs=[ProviderRun("cpu", "default", "ok", [c])])
    assert report.failures() == [f"cpu/default: y: {why}"]
    assert comparison_row("cpu/default", c)[3] == "1.001e-05"
    (c,) = compare_outputs(["y"], [ref], ["y"], [ref + 1e-6], rtol=0.0, atol=1e-5)
    assert comparison_row("cpu/default", c)[3] == "1e-06"  # 3 digits where they tell


def test_a_tolerance_is_shown_as_given() -> None:
    """1.0000001e-05 was shown 1e-05 (6 digits): the report shows the tolerance used."""
    ref = np.array([1.0, 2.0], np.float32)
    (c,) = compare_outputs(["y"], [ref], ["y"], [ref], rtol=0.12345678, atol=1.0000001e-5)
    assert comparison_row("cpu/default", c)[-2] == "rtol=0.12345678 atol=1.0000001e-05"


def test_the_json_has_each_output_s_status_and_no_made_up_error_size() -> None:
    """An output with no element compared was "passed": true with max_abs 0.0, as a string
    output was: both read as "compared, no error"."""
    y = np.array([1.0, 2.0], np.float32)
    words = np.array(["a"], object)
    rows = compare_outputs(
        ["y", "e", "s"], [y, y[:0], words], ["y", "e", "s"], [y + 1, y[:0], words.copy()]
    )
    report = CheckReport("a.onnx", "b.onnx", runs=[ProviderRun("cpu", "default", "ok", rows)])
    recorded = {c["name"]: c for c in report.to_dict()["runs"][0]["comparisons"]}
    assert [recorded[n]["status"] for n in "yes"] == ["failed", "not compared", "passed"]
    # passed: true beside "not compared" read as a match; null says neither
    assert [recorded[n]["passed"] for n in "yes"] == [False, None, True]
    assert recorded["y"]["max_abs"] == 1.0
    for name in "es":
        sizes = [recorded[name][key] for key in ("max_abs", "max_rel", "scale", "max_scaled")]
        assert sizes == [None] * 4, name
    shown = {row[1]: row for row in (comparison_row("cpu", c) for c in rows)}
    assert shown["e"][3:5] == ("-", "-") and shown["y"][3] != "-"


def test_a_failed_run_says_so_in_its_json_and_rows_show_only_what_was_counted() -> None:
    """A run that ran (status ok) but whose outputs failed has ``passed: false``; a shape
    mismatch counts no element outside (``-``, not ``0/6``); a 0-d output's shape is
    ``scalar``, not the ``-`` of a missing one; an output with no type to take a tolerance
    from is neither exact nor toleranced in the JSON (the table's ``-``); an integer array of
    no elements is exact, as its dtype says (t111: ``-`` and null)."""
    y = np.ones((2, 3), np.float32)
    s = np.array(1.0, np.float32)
    n = np.zeros((0, 2), np.int64)
    rows = compare_outputs(
        ["y", "s", "o", "n"],
        [y, s, None, n],
        ["y", "s", "o", "n"],
        [y.reshape(3, 2), s.copy(), None, n.copy()],
    )
    report = CheckReport("a.onnx", "b.onnx", runs=[ProviderRun("cpu", "default", "ok", rows)])
    shape, scalar, optional, empty = (comparison_row("cpu", c) for c in rows)
    assert shape[2:6] == ("2x3", "-", "-", "-") and shape[-1].startswith("FAIL: shape")
    assert scalar[2] == "scalar" and scalar[5] == "0/1" and optional[6] == "-"
    assert empty[6] == "exact"
    (run,) = report.to_dict()["runs"]
    assert (run["status"], run["passed"]) == ("ok", False)
    assert [c["exact"] for c in run["comparisons"]] == [False, False, None, True]


def test_an_output_of_no_scale_gives_no_share_of_it() -> None:
    """An all-zero reference has no scale: the failure's line said the absolute error as a
    share of it (``max abs 0.000105, 0.000105 of scale``, t299), and the table's "max
    abs/scale" and the JSON's ``max_scaled`` gave the absolute error as if relative (t315)."""
    ref = np.zeros(4, np.float32)
    (c,) = compare_outputs(["y"], [ref], ["y"], [ref + 1.05e-4])
    assert failure_reason(c).endswith("(max abs 0.000105)")
    assert comparison_row("cpu", c)[3:5] == ("0.000105", "-")
    report = CheckReport("a.onnx", "b.onnx", runs=[ProviderRun("cpu", "default", "ok", [c])])
    (recorded,) = report.to_dict()["runs"][0]["comparisons"]
    assert (recorded["max_abs"], recorded["scale"], recorded["max_scaled"]) == (
        pytest.approx(1.05e-4),
        0.0,
        None,
    )
