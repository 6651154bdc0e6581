"""Check options: tolerances are numbers (numpy's and fractions too), never bools."""

from __future__ import annotations

from fractions import Fraction
from typing import SupportsFloat

import numpy as np
import pytest

from wnpass.errors import InvalidArgumentError
from wnpass.verify.options import CheckOptions, check_tolerance


@pytest.mark.parametrize(
    "value", [np.float32(1e-3), np.float64(1e-3), np.int64(1), Fraction(1, 10000)]
)
def test_a_real_tolerance_of_any_type_is_taken_as_a_float(value: SupportsFloat) -> None:
    options = CheckOptions(rtol=value, atol=value).validate()  # type: ignore[arg-type]
    assert type(options.rtol) is float and options.rtol == float(value)
    assert type(options.atol) is float and options.atol == float(value)


@pytest.mark.parametrize("value", [True, np.bool_(False)])
@pytest.mark.parametrize("name", ["rtol", "atol"])
def test_a_bool_tolerance_is_refused_naming_the_parameter(name: str, value: object) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        CheckOptions(**{name: value}).validate()  # type: ignore[arg-type]
    assert str(raised.value) == f"{name} {value!r}: a tolerance must be a number, not a bool"


def test_a_tolerance_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match=r"^rtol '0.1': a tolerance must be a number"):
        check_tolerance("rtol", "0.1")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"^atol -1.0: a tolerance must be a finite"):
        check_tolerance("atol", -1.0)


@pytest.mark.parametrize("value", [10**400, Fraction(10**400, 3)])
def test_a_tolerance_beyond_any_float_is_refused_in_one_line(value: object) -> None:
    with pytest.raises(InvalidArgumentError, match=r"^rtol .*: a tolerance must be a finite"):
        CheckOptions(rtol=value).validate()  # type: ignore[arg-type]
