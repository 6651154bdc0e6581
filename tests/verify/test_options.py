"""Check options: tolerances are numbers (numpy's and fractions too), never bools."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import SupportsFloat

import numpy as np
import pytest

from wnpass.errors import InvalidArgumentError
from wnpass.verify.options import MAX_THREADS, CheckOptions, as_tolerance, check_tolerance


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


def test_a_negative_zero_tolerance_is_zero() -> None:
    """--rtol -0.0 is a tolerance of 0, shown as 0, not as -0."""
    options = CheckOptions(rtol=-0.0, atol=np.float32(-0.0)).validate()  # type: ignore[arg-type]
    given = [options.rtol, options.atol, as_tolerance("rtol", -0.0)]
    assert [f"{t:g}" for t in given if t is not None] == ["0", "0", "0"]


def test_counts_and_dimensions_of_numpy_integer_types_are_whole_numbers() -> None:
    options = CheckOptions(
        runs=np.int64(2),  # type: ignore[arg-type]
        warmup=np.uint8(0),  # type: ignore[arg-type]
        threads=np.int32(1),  # type: ignore[arg-type]
        shapes={"x": [np.int64(1), np.int16(4)]},  # type: ignore[list-item]
    ).validate()
    assert (options.runs, options.warmup, options.threads) == (2, 0, 1)
    assert type(options.runs) is int and options.shapes == {"x": [1, 4]}
    assert all(type(d) is int for d in (options.shapes or {})["x"])
    for bad in (np.bool_(True), True, 2.0):
        with pytest.raises(
            InvalidArgumentError, match=r"^runs .*: must be a whole number from 1 to 1000000"
        ):
            CheckOptions(runs=bad).validate()  # type: ignore[arg-type]


@pytest.mark.parametrize("threads", [0, MAX_THREADS + 1, 2**31 - 1, 2**31])
def test_threads_beyond_the_documented_range_are_refused(threads: int) -> None:
    """2**31 was a TypeError out of ONNX Runtime, 2**31 - 1 its std::bad_alloc blamed on the
    model; every count is checked against the documented range first."""
    with pytest.raises(InvalidArgumentError) as raised:
        CheckOptions(threads=threads).validate()
    assert raised.value.parameter == "threads"
    assert str(raised.value) == f"threads {threads}: must be a whole number from 1 to 1024"
    assert CheckOptions(threads=MAX_THREADS).validate().threads == MAX_THREADS


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"optimizations": ()}, "optimizations is empty: give at least one of default, disabled"),
        ({"optimizations": "default"}, "optimizations 'default': must be a list of names, not str"),
        ({"optimizations": 1}, "optimizations 1: must be a list of names, not int"),
        ({"providers": "cpu"}, "providers 'cpu': must be a list of names, not str"),
        ({"providers": []}, "providers is empty: give at least one"),
        ({"providers": {"cpu": 1}}, "providers {'cpu': 1}: must be a list of names, not dict"),
        (
            {"shapes": [("x", [2])]},
            "shapes must be a dict of input name to dimensions, not list",
        ),
        ({"shapes": {1: [2]}}, "shapes 1: an input name must be a str, not int"),
        ({"shapes": {"x": 2}}, "shapes x=2: every dimension must be a whole number >= 1"),
        ({"inputs": 1}, "inputs must be a path (a str or os.PathLike), not int"),
        ({"inputs": ""}, "inputs is an empty path"),  # was "inputs .: is a directory"
        ({"inputs": b"x.npz"}, "inputs must be a path (a str or os.PathLike), not bytes"),
    ],
)
def test_every_option_of_a_wrong_kind_is_one_line_naming_it(
    given: dict[str, object], message: str
) -> None:
    """A str read as its letters ('c': unknown), an empty list that ran nothing and failed
    without a reason, a list of pairs for a dict (AttributeError), an int for a path
    (TypeError): each is a WnpassError naming the parameter."""
    with pytest.raises(InvalidArgumentError) as raised:
        CheckOptions(**given).validate()  # type: ignore[arg-type]
    assert str(raised.value) == message


@pytest.mark.parametrize(
    "given",
    [["cpu", "cpu"], {"cpu"}, (name for name in ["cpu"]), {"cpu": 1}.keys(), ("cpu",)],
)
def test_names_come_in_any_collection_each_once(given: object) -> None:
    """A set, a generator, dict keys and a name given twice (``--provider cpu --provider
    cpu``) worked, and were refused for a while; each is the names it holds, once."""
    options = CheckOptions(providers=given, optimizations=iter(["default", "default"]))  # type: ignore[arg-type]
    assert options.validate().providers == ("cpu",) and options.optimizations == ("default",)


def test_an_inputs_path_given_as_a_str_is_a_path() -> None:
    assert CheckOptions(inputs="in.npz").validate().inputs == Path("in.npz")  # type: ignore[arg-type]
