"""Latency: models timed on ONNX Runtime run by run, the same way for ``check`` and ``export``.

Each model is warmed up, then the models run in turn, ``runs`` times, alternating which goes
first, so that a noisy machine slows them alike. Every run is a run as the compared one was
(:func:`providers.run`); one that fails after the compared run had succeeded (a model whose
result depends on more than its inputs: a random op, say) stops the timing and says which
model and which run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wnpass.verify import providers as prov
from wnpass.verify.report import LatencyStats

__all__ = ["FailedInTiming", "latency_stats", "timed_runs"]

# Called after each timed round: (rounds done, rounds in all).
Progress = Callable[[int, int], None]


class FailedInTiming(Exception):
    """Model ``index`` of those timed failed on a timed run after its compared run had
    succeeded. ``error`` is ONNX Runtime's failure as :func:`providers.run` raised it;
    ``reason`` says it in words, with which run it was."""

    def __init__(self, index: int, error: prov.RunFailedError, run: int, runs: int) -> None:
        self.index, self.error = index, error
        self.reason = (
            f"on its timed run {run} of {runs} (warm-up included), after the run compared "
            f"had succeeded: {error.reason}"
        )
        super().__init__(self.reason)


def latency_stats(seconds: list[float]) -> LatencyStats:
    """Median, p90 and min of run times, in milliseconds."""
    ms = sorted(s * 1e3 for s in seconds)
    p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
    return LatencyStats(len(ms), statistics.median(ms), p90, ms[0])


def timed_runs(
    models: Sequence[tuple[prov.Session, Path]],
    feeds: dict[str, Any],
    runs: int,
    warmup: int,
    progress: Progress | None = None,
) -> list[LatencyStats]:
    """Each of ``models`` (a session and the file it runs, for messages) run ``warmup`` times
    untimed, then ``runs`` times timed, in turn; their latencies, in order.
    :class:`FailedInTiming` where one fails."""
    done = 0

    def run(index: int) -> float:
        session, path = models[index]
        start = time.perf_counter()
        try:
            prov.run(session, path, feeds)
        except prov.RunFailedError as error:
            raise FailedInTiming(index, error, done + 1, warmup + runs) from None
        return time.perf_counter() - start

    order = list(range(len(models)))
    for _ in range(warmup):
        for index in order:
            run(index)
        done += 1
    seconds: list[list[float]] = [[] for _ in models]
    for round_ in range(runs):
        for index in order if round_ % 2 == 0 else reversed(order):
            seconds[index].append(run(index))
        done += 1
        if progress:
            progress(round_ + 1, runs)
    return [latency_stats(times) for times in seconds]
