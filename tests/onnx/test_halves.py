"""Norms and folded weights computed in two halves on two threads are the same to the bit."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from wnpass.onnx import evaluate as ev
from wnpass.onnx import halves, weights


@pytest.fixture
def split(monkeypatch: pytest.MonkeyPatch) -> None:
    """Split whatever the size and however many cores this machine has."""
    monkeypatch.setattr(halves, "MIN_BYTES", 0)
    monkeypatch.setattr(halves, "_cores", lambda: 2)


def test_the_halves_run_on_two_threads(split: None) -> None:
    seen: list[tuple[slice, str]] = []
    halves.by_rows(lambda part: seen.append((part, threading.current_thread().name)), 7, 1)
    assert sorted((p.start, p.stop) for p, _ in seen) == [(0, 3), (3, 7)]
    assert len({name for _, name in seen}) == 2


def test_small_work_stays_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(halves, "_cores", lambda: 2)
    seen: list[slice] = []
    halves.by_rows(seen.append, 100, halves.MIN_BYTES - 1)
    assert seen == [slice(0, 100)]


def test_an_error_in_the_second_half_is_raised_after_both_finish(split: None) -> None:
    finished: list[int] = []

    def work(part: slice) -> None:
        if part.start:
            raise ValueError("second half")
        finished.append(part.stop)

    with pytest.raises(ValueError, match="second half"):
        halves.by_rows(work, 4, 1)
    assert finished == [2]


def test_work_is_done_here_where_no_thread_can_be_started(
    split: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process short of memory for a thread's stack: the RuntimeError of ``start`` was an
    internal error (t196); the work is done on this thread alone."""

    def refused(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refused)
    seen: list[tuple[slice, str]] = []
    halves.by_rows(lambda part: seen.append((part, threading.current_thread().name)), 7, 1)
    assert seen == [(slice(0, 7), threading.current_thread().name)]


SHAPES = [((64, 3, 5), (1, 2)), ((33, 128), (1,)), ((9, 4, 4, 3), (1, 2, 3)), ((8, 5, 6), (2,))]


@pytest.mark.parametrize(("shape", "axes"), SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_split_norms_are_the_same_bits(
    split: None, shape: tuple[int, ...], axes: tuple[int, ...], dtype: type
) -> None:
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype) * 1e3
    letters = "abcd"[: x.ndim]
    kept = "".join(c for i, c in enumerate(letters) if i not in axes)
    whole = np.einsum(f"{letters},{letters}->{kept}", x, x, dtype=np.float64)
    got = ev.sum_of_squares(x, axes, keepdims=False)
    assert got.dtype == np.float64 and np.array_equal(got.view(np.uint64), whole.view(np.uint64))


@pytest.mark.parametrize("rows", [1, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_split_products_are_the_same_bits(split: None, rows: int, dtype: type) -> None:
    rng = np.random.default_rng(1)
    v: np.ndarray = rng.standard_normal((64, 7, 3)).astype(dtype)
    scale = rng.standard_normal((rows, 1, 1))
    whole: np.ndarray = np.empty(v.shape, dtype)
    np.multiply(v, scale, out=whole, dtype=np.float64, casting="unsafe")
    out: np.ndarray = np.empty(v.shape, dtype)
    weights._multiply_into(out, v, scale)
    assert np.array_equal(out.view(np.uint8), whole.view(np.uint8))
