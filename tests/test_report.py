"""The report helpers shared by every command's summary."""

from __future__ import annotations

import pytest

from wnpass.report import counted, human_bytes


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, "0 weight-norm sites"), (1, "1 weight-norm site"), (2, "2 weight-norm sites")],
)
def test_counted_is_singular_for_one_only(count: int, expected: str) -> None:
    assert counted(count, "weight-norm site") == expected


def test_counted_takes_an_irregular_plural() -> None:
    singular, plural = "weight computed from constants", "weights computed from constants"
    assert counted(1, singular, plural) == "1 weight computed from constants"
    assert counted(3, singular, plural) == "3 weights computed from constants"


def test_human_bytes_switches_units_at_1024() -> None:
    assert [human_bytes(n) for n in (None, 1023, 1024, 5 * 2**20)] == [
        "-", "1023 B", "1.0 KiB", "5.0 MiB"
    ]  # fmt: skip
