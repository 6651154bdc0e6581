from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wnpass.verify import providers
from wnpass.verify.timing import FailedInTiming, latency_stats, timed_runs


class _Recorded:
    """A session stand-in that logs each run under its name, failing on run ``fails_on``."""

    def __init__(self, name: str, log: list[str], fails_on: int | None = None) -> None:
        self.name, self.log, self.fails_on, self.calls = name, log, fails_on, 0

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        self.calls += 1
        if self.calls == self.fails_on:
            raise RuntimeError("Non-zero status code returned while running Reshape node")
        self.log.append(self.name)
        return []


def _models(log: list[str], **fails_on: int) -> list[tuple[Any, Path]]:
    return [(_Recorded(n, log, fails_on.get(n)), Path(f"{n}.onnx")) for n in ("ref", "cand")]


def test_models_are_warmed_up_then_timed_alternating_which_goes_first() -> None:
    log: list[str] = []
    rounds: list[tuple[int, int]] = []
    stats = timed_runs(_models(log), {}, runs=3, warmup=2, progress=lambda *r: rounds.append(r))
    warm = ["ref", "cand"] * 2
    assert log == [*warm, "ref", "cand", "cand", "ref", "ref", "cand"]
    assert [s.runs for s in stats] == [3, 3] and rounds == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize(("which", "index"), [("ref", 0), ("cand", 1)])
def test_a_model_failing_in_timing_is_named_with_its_run(which: str, index: int) -> None:
    """Run 4 of the failing model is the first timed round after two warm-ups and one round:
    the message counts warm-ups, and the error says which model failed."""
    with pytest.raises(FailedInTiming) as caught:
        timed_runs(_models([], **{which: 4}), {}, runs=3, warmup=2)
    error = caught.value
    assert error.index == index and isinstance(error.error, providers.RunFailedError)
    assert error.error.model == Path(f"{which}.onnx")
    assert error.reason == (
        "on its timed run 4 of 5 (warm-up included), after the run compared had succeeded: "
        "Non-zero status code returned while running Reshape node"
    )


def test_latency_stats_are_median_p90_and_min_in_milliseconds() -> None:
    stats = latency_stats([0.004, 0.001, 0.003, 0.002, 0.010])
    assert (stats.runs, stats.median_ms, stats.p90_ms, stats.min_ms) == (5, 3.0, 10.0, 1.0)
