"""Large array work split in two halves along the first axis, one on a second thread.

numpy releases the interpreter lock inside its loops, so the two halves of a norm or of a
folded weight run on two cores at once. Each row of the result is computed by the same loop
either way, so the split changes no bit of it (the tests compare both ways).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

__all__ = ["MIN_BYTES", "by_rows"]

# Below this many bytes of input a second thread costs more than it saves.
MIN_BYTES = 4 * 2**20


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def by_rows(work: Callable[[slice], None], rows: int, nbytes: int) -> None:
    """``work(slice(0, rows))``, done as ``work(first half)`` here and ``work(second half)`` on
    a second thread when ``nbytes`` is at least ``MIN_BYTES`` and the process may run on two
    cores (here alone where no thread can be started). An error in either half is raised
    here, after both have finished."""
    if nbytes < MIN_BYTES or rows < 2 or _cores() < 2:
        work(slice(0, rows))
        return
    half = rows // 2
    errors: list[BaseException] = []

    def second() -> None:
        try:
            work(slice(half, rows))
        except BaseException as error:  # handed to the caller's thread below
            errors.append(error)

    thread = threading.Thread(target=second, name="wnpass-half")
    try:
        thread.start()
    except RuntimeError:  # no thread to be had (memory for its stack, t196): one after another
        work(slice(0, rows))
        return
    try:
        work(slice(0, half))
    finally:
        thread.join()
    if errors:
        raise errors[0]
