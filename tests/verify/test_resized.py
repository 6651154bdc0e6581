"""The check again at other sizes of the dynamic axes: a candidate that only matches at a
batch of 1 fails; a reference that only runs there is said, no verdict on the candidate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.helpers import onnx_model, rand
from wnpass.verify.check import check

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'
PLAIN = f"""{HEADER}
    agraph (float[N, 4] x) => (float[N, 4] y) {{
        y = Gemm (x, w)
    }}
"""
# the batch's mean for each row: the same at a batch of 1
MEAN = f"""{HEADER}
    agraph (float[N, 4] x) => (float[N, 4] y) {{
        m = ReduceMean <axes = [0], keepdims = 1> (x)
        z = Sub (x, x)
        a = Add (m, z)
        y = Gemm (a, w)
    }}
"""
# the batch flattened into one row: runs at a batch of 1 only
ONE_ROW = f"""{HEADER}
    agraph (float[N, 4] x) => (float[N, 4] y) {{
        r = Reshape (x, one_row)
        y = Gemm (r, w)
    }}
"""
FIXED = f"""{HEADER}
    agraph (float[1, 4] x) => (float[1, 4] y) {{
        y = Gemm (x, w)
    }}
"""


def _saved(tmp_path: Path, name: str, text: str, w: np.ndarray) -> Path:
    path = tmp_path / f"{name}.onnx"
    if "one_row" in text:
        onnx.save(onnx_model(text, w=w, one_row=np.array([1, -1], dtype=np.int64)), path)
    else:
        onnx.save(onnx_model(text, w=w), path)
    return path


@pytest.mark.parametrize(
    ("candidate", "said"),
    [
        (MEAN, "output y differs: 8 of 8 elements outside"),
        (ONE_ROW, "the candidate fails to run where the reference runs: "),
    ],
    ids=["mean over the batch", "batch flattened"],
)
def test_a_candidate_that_matches_at_one_size_only_fails(
    tmp_path: Path, candidate: str, said: str
) -> None:
    """t229: synthesized inputs give a dynamic batch 1, where a mean over the batch or a
    reshape to one row gives the reference's outputs: the check said equivalent, exit 0."""
    w = rand(4, 4)
    reference = _saved(tmp_path, "ref", PLAIN, w)
    report = check(reference, _saved(tmp_path, "cand", candidate, w), runs=1, warmup=0)
    assert not report and report.runs[0].passed  # the first size matched
    (difference,) = report.differences
    assert difference.startswith(
        "at other sizes of the dynamic axes (x[0] (N) = 2; inputs synthesized, seed 1), "
    )
    assert said in difference


def test_a_model_that_matches_at_other_sizes_says_so(tmp_path: Path) -> None:
    w = rand(4, 4)
    report = check(_saved(tmp_path, "a", PLAIN, w), _saved(tmp_path, "b", PLAIN, w), runs=1)
    assert report and report.notes[-1] == (
        "also matched at other sizes of the dynamic axes (x[0] (N) = 2; inputs synthesized, seed 1)"
    )


def test_a_reference_that_runs_at_one_size_only_is_no_verdict(tmp_path: Path) -> None:
    """A reference whose dynamic axis holds one size only (a batch of 1 flattened) fails at
    the other: said in a note; the check stands on the size it ran."""
    w = rand(4, 4)
    reference = _saved(tmp_path, "ref", ONE_ROW, w)
    report = check(reference, _saved(tmp_path, "cand", ONE_ROW, w), runs=1, warmup=0)
    assert report and not report.differences
    assert report.notes[-1].startswith(
        "the reference fails to run at other sizes of the dynamic axes (x[0] (N) = 2; inputs "
        "synthesized, seed 1), so the models were compared at one size of them only: "
    )


def test_no_second_run_without_a_dynamic_axis_left_to_resize(tmp_path: Path) -> None:
    """Fixed axes, or every dynamic one given by --shape, or the inputs given: one size."""
    w = rand(4, 4)
    fixed = check(_saved(tmp_path, "a", FIXED, w), _saved(tmp_path, "b", FIXED, w), runs=1)
    assert fixed and not any("other sizes" in note for note in fixed.notes)
    shaped = check(
        _saved(tmp_path, "c", PLAIN, w),
        _saved(tmp_path, "d", MEAN, w),
        shapes={"x": [1, 4]},
        runs=1,
    )
    assert shaped and not any("other sizes" in note for note in shaped.notes)
    given = tmp_path / "x.npz"
    np.savez(given, x=rand(1, 4))
    read = check(tmp_path / "c.onnx", tmp_path / "d.onnx", inputs=given, runs=1)
    assert read and not any("other sizes" in note for note in read.notes)
