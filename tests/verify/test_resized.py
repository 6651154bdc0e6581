"""The check again at other sizes of the dynamic axes: a candidate that only matches at a
batch of 1 fails; a reference that only runs there is said, no verdict on the candidate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
# two inputs of one batch symbol; the candidate takes y's mean over the batch
ADD = f"""{HEADER}
    agraph (float[N, 4] x, float[N, 4] y) => (float[N, 4] z) {{
        z = Add (x, y)
    }}
"""
ADD_MEAN = f"""{HEADER}
    agraph (float[N, 4] x, float[N, 4] y) => (float[N, 4] z) {{
        m = ReduceMean <axes = [0], keepdims = 1> (y)
        z = Add (x, m)
    }}
"""
# a training-mode Dropout of x's rows after the first: empty at a batch of 1 (64 elements at
# a batch of 2: two runs draw one mask 1 time in 2^64; of 4, the test failed 1 time in 16)
DRAWS_AT_TWO = f"""{HEADER}
    agraph (float[N, 64] x) => (float[N, 4] y, float[M, 64] d) {{
        y = Gemm (x, w)
        rest = Slice (x, starts, ends)
        d, mask = Dropout (rest, ratio, on)
    }}
"""
# the mean over b's axis S, and a candidate that divides by a's axis T: one size at 32 each
MEAN_OF = f"""{HEADER}
    agraph (float[N, T] a, float[N, S] b) => (float[N] y) {{
        s = ReduceSum <keepdims = 0> (b, one)
        shape = Shape (LENGTH)
        n = Gather <axis = 0> (shape, one)
        f = Cast <to = 1> (n)
        y = Div (s, f)
    }}
"""
# the same over 1-D inputs: their axes are first axes
MEAN_OF_FIRST = f"""{HEADER}
    agraph (float[T, 1] a, float[S, 1] b) => (float[1, 1] y) {{
        s = ReduceSum <keepdims = 1> (b)
        shape = Shape (LENGTH)
        n = Gather <axis = 0> (shape, zero)
        f = Cast <to = 1> (n)
        y = Div (s, f)
    }}
"""
# the batch squeezed away (runs at a batch of 1 only), then MEAN_OF
SQUEEZED_MEAN_OF = f"""{HEADER}
    agraph (float[N, T] a, float[N, S] b) => (float[S] y) {{
        q = Squeeze (b, zero)
        shape = Shape (LENGTH)
        n = Gather <axis = 0> (shape, one)
        f = Cast <to = 1> (n)
        y = Div (q, f)
    }}
"""
# T in pairs: runs at an even T only; the candidate's batch fixed at 1
PAIRS = f"""{HEADER}
    agraph (float[N, T] x) => (float[N, T] y) {{
        p = Reshape (x, pairs)
        y = Reshape (p, rows)
    }}
"""
# x and y of axes named apart that Add requires of one size
NAMED_APART = f"""{HEADER}
    agraph (float[N, T] x, float[N, S] y) => (float[N, T] z) {{
        z = Add (x, y)
    }}
"""
NAMED_APART_MEAN = f"""{HEADER}
    agraph (float[N, T] x, float[N, S] y) => (float[N, T] z) {{
        m = ReduceMean <axes = [0], keepdims = 1> (y)
        z = Add (x, m)
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
    elif "Dropout" in text:
        starts, ends = np.array([1], dtype=np.int64), np.array([99], dtype=np.int64)
        ratio, on = np.array(0.5, dtype=np.float32), np.array(True)
        model = onnx_model(text, w=w, starts=starts, ends=ends, ratio=ratio, on=on)
        onnx.save(model, path)
    elif "w)" in text:
        onnx.save(onnx_model(text, w=w), path)
    else:
        onnx.save(onnx_model(text), path)
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
        "at other sizes of the dynamic axes (x[0] (N) = 2; inputs synthesized, seed 1; on "
        "cpu/default), "
    )
    assert said in difference


def test_a_model_that_matches_at_other_sizes_says_so(tmp_path: Path) -> None:
    w = rand(4, 4)
    report = check(_saved(tmp_path, "a", PLAIN, w), _saved(tmp_path, "b", PLAIN, w), runs=1)
    assert report and report.notes[-1] == (
        "also matched at other sizes of the dynamic axes (x[0] (N) = 2; inputs synthesized, seed "
        "1; on cpu/default)"
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
        "synthesized, seed 1; on cpu/default), so the models were compared at one size of "
        "them only: "
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


def test_a_shape_that_fixes_every_symbol_leaves_no_other_size(tmp_path: Path) -> None:
    """``--shape x=1,4`` fixes N, which y shares: the second run repeated the first sizes with
    another seed and said "also matched at other sizes", equivalent where the candidate takes
    y's mean over the batch (t230). No second run: the check rests on the size given."""
    w = rand(4, 4)
    reference, candidate = _saved(tmp_path, "a", ADD, w), _saved(tmp_path, "b", ADD_MEAN, w)
    report = check(reference, candidate, shapes={"x": [1, 4]}, runs=1, warmup=0)
    assert report and not any("other sizes" in note for note in report.notes)
    assert not check(reference, candidate, runs=1, warmup=0)  # sized by the check: caught


def test_a_reference_that_draws_at_other_sizes_only_is_no_reference_there(
    tmp_path: Path,
) -> None:
    """A training-mode Dropout of the rows after the first draws nothing at a batch of 1: the
    model checked against itself failed at a batch of 2, "output d differs", blamed on the
    candidate (t230). The reference runs twice there too, and says it varies."""
    path = _saved(tmp_path, "drop", DRAWS_AT_TWO, rand(64, 4))
    report = check(path, path, runs=1, warmup=0)
    assert report and not report.differences
    assert report.notes[-1].startswith("the reference gives other values of d on a second run at")


@pytest.mark.parametrize(
    ("text", "sizes"),
    [
        (MEAN_OF, "a[0] (N) = 2; a[1] (T) = 33; b[0] (N) = 2, as a[0]; b[1] (S) = 34"),
        (MEAN_OF_FIRST, "a[0] (T) = 2; b[0] (S) = 3"),
        (SQUEEZED_MEAN_OF, "a[0] (N) = 1; a[1] (T) = 33; b[0] (N) = 1, as a[0]; b[1] (S) = 34"),
    ],
    ids=["other axes", "first axes", "a batch of 1 only"],
)
def test_axes_of_other_symbols_take_other_sizes(tmp_path: Path, text: str, sizes: str) -> None:
    """T and S were both 33 at the other sizes, as both are 32 at the first: a candidate
    dividing by T where the reference divides by S was equivalent, exit 0 (t238). So it was
    where they are first axes, which all took 2, and where the reference squeezes its batch,
    as every other size set the batch to 2 (t241)."""
    zero, one = np.array([0], dtype=np.int64), np.array([1], dtype=np.int64)
    paths = []
    for name, length in (("ref", "b"), ("cand", "a")):
        paths.append(tmp_path / f"{name}.onnx")
        onnx.save(onnx_model(text.replace("LENGTH", length), zero=zero, one=one), paths[-1])
    report = check(*paths, runs=1, warmup=0)
    assert not report and report.runs[0].passed  # the first sizes matched
    (difference,) = report.differences
    assert f"({sizes}; inputs synthesized" in difference and "output y differs" in difference


def _pairs(tmp_path: Path, name: str, batch: int) -> Path:
    path = tmp_path / f"{name}.onnx"
    pairs, rows = np.array([batch, -1, 2], np.int64), np.array([batch, -1], np.int64)
    onnx.save(onnx_model(PAIRS, pairs=pairs, rows=rows), path)
    return path


def test_a_reference_that_runs_at_even_sizes_only_is_run_at_even_ones(tmp_path: Path) -> None:
    """An axis reshaped into pairs fails at 33: the second run was given up and a candidate of
    a batch fixed at 1 was equivalent (t238). Sizes that are multiples of 16 are tried next."""
    reference = _pairs(tmp_path, "ref", 0)  # 0: the batch copied
    report = check(reference, _pairs(tmp_path, "cand", 1), runs=1, warmup=0)
    assert not report and report.runs[0].passed
    (difference,) = report.differences
    assert difference.startswith("at other sizes of the dynamic axes (x[0] (N) = 2; x[1] (T) = 48")
    same = check(reference, reference, runs=1, warmup=0)
    assert same and same.notes[-1].startswith("also matched at other sizes")


def test_axes_named_apart_that_must_agree_still_change_the_batch(tmp_path: Path) -> None:
    """x[N, T] + y[N, S] runs where T = S only: at sizes of their own the reference fails,
    and the batch alone changes, with T and S as at the first run."""
    reference = tmp_path / "ref.onnx"
    onnx.save(onnx_model(NAMED_APART), reference)
    candidate = tmp_path / "cand.onnx"
    onnx.save(onnx_model(NAMED_APART_MEAN), candidate)
    report = check(reference, candidate, runs=1, warmup=0)
    assert not report and report.runs[0].passed
    (difference,) = report.differences
    assert "x[1] (T) = 32" in difference and "y[1] (S) = 32" in difference
    assert "x[0] (N) = 2" in difference
    same = check(reference, reference, runs=1, warmup=0)
    assert same and same.notes[-1].startswith("also matched at other sizes")
    # which axes kept their sizes, and why (t241)
    assert same.notes[-1].endswith("(the reference fails to run at the 2 other sizes tried first)")


def test_the_candidate_out_of_memory_at_other_sizes_is_no_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A candidate that asks for terabytes at a batch of 2 only ran out of memory there, a
    note, and was equivalent (t238): as at the first sizes, no verdict (exit 2)."""
    from wnpass.verify import providers

    w = rand(4, 4)
    reference, candidate = _saved(tmp_path, "ref", PLAIN, w), _saved(tmp_path, "cand", PLAIN, w)
    real = providers.run

    def short(session: providers.Session, model: Path, feeds: dict[str, Any]) -> list[Any]:
        if model == candidate and feeds["x"].shape[0] == 2:
            raise providers.OutOfMemoryError(model, "std::bad_alloc")
        return real(session, model, feeds)

    monkeypatch.setattr(providers, "run", short)
    said = r"cand\.onnx: onnxruntime ran out of memory running it at other sizes of the dynamic"
    with pytest.raises(providers.OutOfMemoryError, match=said):  # where (t241)
        check(reference, candidate, runs=1, warmup=0)


FIR = f"""{HEADER}
    agraph (float[T] x) => (float[T] y) {{
        x3 = Unsqueeze (x, axes)
        c = Conv <pads = [2, 2]> (x3, k)
        y = Reshape (c, flat)
    }}
"""
LENGTHS = f"""{HEADER}
    agraph (float[N, 4] x, float[L] lengths) => (float[N, 4] y) {{
        l2 = Unsqueeze (lengths, one)
        y = Mul (x, l2)
    }}
"""


def test_a_vectors_axis_is_checked_as_a_length_at_the_other_sizes(tmp_path: Path) -> None:
    """t337: audio as ``x[T]`` ran at 1 and 2 samples, its axis taken for a batch: a 5-tap
    filter whose outer taps were wrong matched. At the other sizes it is a length (33)."""
    axes, flat = np.array([0, 1], np.int64), np.array([-1], np.int64)
    k = rand(1, 1, 5)
    wrong = k.copy()
    wrong[..., [0, 4]] += 1.0
    paths = []
    for name, taps in (("ref", k), ("cand", wrong)):
        paths.append(tmp_path / f"{name}.onnx")
        onnx.save(onnx_model(FIR, axes=axes, flat=flat, k=taps), paths[-1])
    report = check(*paths, runs=1, warmup=0)
    assert not report and report.runs[0].passed  # one sample: the centre tap alone
    (difference,) = report.differences
    assert "(x[0] (T) = 33; inputs synthesized" in difference


def test_per_sample_lengths_named_apart_from_the_batch_still_run(tmp_path: Path) -> None:
    """t338: ``lengths[L]`` beside ``x[N, 4]``, the batch named twice as an export names it,
    must be one size: a length of 32 in the first run broke the check of a model against
    itself (exit 2). The first run keeps it a batch; at the other sizes it runs where its
    size is x's batch's."""
    path = tmp_path / "m.onnx"
    onnx.save(onnx_model(LENGTHS, one=np.array([1], np.int64)), path)
    report = check(path, path, runs=1, warmup=0)
    assert report and not report.differences
    assert any("also matched at other sizes" in note and "lengths[0] (L) = 2" in note
               for note in report.notes)  # fmt: skip


# finite at the first sizes (T = 32), NaN at every other: sqrt(32.5 - T)
NAN_ELSEWHERE = f"""{HEADER}
    agraph (float[N, T] x) => (float[N, T] y, float[N, T] z) {{
        s = Shape <start = 1, end = 2> (x)
        f = Cast <to = 1> (s)
        d = Sub (c, f)
        r = Sqrt (d)
        y = Mul (x, r)
        z = Identity (x)
    }}
"""


def test_an_output_not_compared_at_the_other_sizes_only_is_named_there(tmp_path: Path) -> None:
    """t340: an output all NaN at the other sizes only was said to have matched there."""
    path = tmp_path / "m.onnx"
    onnx.save(onnx_model(NAN_ELSEWHERE, c=np.array([32.5], np.float32)), path)
    report = check(path, path, runs=1, warmup=0)
    assert report and report.uncompared() == []  # compared at the first sizes
    (note,) = [note for note in report.notes if note.startswith("also matched")]
    assert note.endswith("on cpu/default); not compared there: y (no element could be)")
