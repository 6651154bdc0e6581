"""Comparing a forward's result before and after a rewrite: every part of it, exactly where
it is not a float."""

from __future__ import annotations

import array
import collections
import dataclasses
import decimal
import fractions
import logging
import math
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from torch import nn

from wnpass.fx.compare import (
    SCALE_FLOOR,
    max_rel_error,
    output_changes,
    result_leaves,
    uncompared,
)

NAN, INF = float("nan"), float("inf")


def _error(after: Any, before: Any) -> float:
    return max_rel_error(result_leaves(after), result_leaves(before))


def _changes(after: Any, before: Any, rtol: float = 1e-5) -> str:
    return output_changes(result_leaves(after), result_leaves(before), rtol)


@pytest.mark.parametrize(
    ("after", "before", "expected"),
    [
        ([NAN], [1.0], INF),  # NaN where there was a number
        ([1.0], [NAN], INF),  # and the other way
        ([INF, 1.0], [1.0, 1.0], INF),
        ([-INF], [INF], INF),
        ([NAN], [INF], INF),
        ([NAN, 2.0], [NAN, 2.0], 0.0),  # NaN where the model already gave NaN: unchanged
        ([INF, 1.5], [INF, 2.0], 0.25),  # the finite elements are compared, to their scale
        ([1.0, 2.0], [1.0, 2.0], 0.0),
        ([NAN, INF], [NAN, INF], NAN),  # not one finite element: nothing compared, not 0
        ([], [], NAN),  # an empty output: nothing compared
    ],
)
def test_max_rel_error_counts_nan_and_inf(
    after: list[float], before: list[float], expected: float
) -> None:
    """NaN/Inf in new places is an infinite difference, never 0 (max(0.0, nan) is 0.0); with
    nothing to compare the result is NaN, never 0."""
    error = _error(torch.tensor(after), torch.tensor(before))
    assert error == expected or (math.isnan(expected) and math.isnan(error))


def test_a_result_of_none_is_nothing_compared() -> None:
    """A forward returning None was "ok", max_rel_error 0: None is no value, and beside a
    tensor the tensor alone is compared."""
    from wnpass import apply_weight_norm

    assert math.isnan(_error(None, None))
    assert _error((torch.ones(2), None), (torch.ones(2), None)) == 0.0

    class Silent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> None:
            self.fc(x)

    report = apply_weight_norm(Silent(), torch.randn(5, 8))
    assert report.status == "nothing compared" and not report


@pytest.mark.parametrize(
    "values", [(x, y) for x in (NAN, INF, -INF, 1.0, 2.0, 0.0) for y in (NAN, INF, -INF, 1.0)]
)
def test_python_numbers_follow_the_tensor_rule(values: tuple[float, float]) -> None:
    """Python floats and complex numbers are compared without a tensor each (a list of
    80,000 floats took 73 s), by the same rule as a tensor's elements."""
    after, before = values
    assert _same_error(_error(after, before), _error(torch.tensor(after), torch.tensor(before)))
    pair = (complex(after, 1.0), complex(before, 1.0))
    as_tensors = (torch.tensor(pair[0]), torch.tensor(pair[1]))
    assert _same_error(_error(*pair), _error(*as_tensors))


def _same_error(a: float, b: float) -> bool:
    return a == pytest.approx(b) or (math.isnan(a) and math.isnan(b))


def test_an_all_nan_output_next_to_a_finite_one_is_compared_on_the_finite_one() -> None:
    """Outputs are compared on what they have: an all-NaN output does not hide another's."""
    nan = torch.full((2,), NAN)
    assert _error((nan, torch.tensor([1.5])), (nan, torch.tensor([2.0]))) == 0.25
    assert math.isnan(_error((), ()))  # a forward that returned nothing


y = torch.arange(3.0)


@pytest.mark.parametrize(
    ("after", "before", "change"),
    [
        # a tensor returned twice was kept once: the part that moved was not compared
        ((y, y, 2 * y), (y, 2 * y, y), "output[1] (float32 3): max difference"),
        ((y, y), (y,), "the forward's result changed: output[1] new"),
        ((y, None), (y, y), "output[1] (float32 3): NoneType now"),
        ((y, 4), (y, 3), "output[1] (int): 3 before, 4 now"),
        ((y, "a"), (y, "b"), "output[1] (str): 'b' before, 'a' now"),
        (y.double(), y, "output (float32 3): dtype float64 now"),
        (torch.tensor([1, 2], dtype=torch.int64), torch.tensor([1, 2], dtype=torch.int32), "dtype"),
        ({"cls": y + 1, "box": y}, {"cls": y, "box": y}, "output['cls'] (float32 3): max diff"),
        ({"b": y, "a": y}, {"a": y, "b": y}, "the forward's result holds its parts in another"),
        (np.ones(3) * 2, np.ones(3), "output (float64 3): max difference 1 of scale "),
        ((y, 1.5), (y, 1.0), "output[1] (float): max difference 0.5 of scale "),
    ],
)  # fmt: skip
def test_every_part_of_the_result_is_compared(after: Any, before: Any, change: str) -> None:
    """The check read the result's tensors only, each object once: a reordered, added or
    dropped output, a number, a string and a dtype change passed as "equivalent"."""
    assert change in _changes(after, before)
    assert _error(after, before) > 1e-5
    assert _changes(before, before) == ""


def test_a_float_is_compared_within_the_tolerance_and_a_cache_by_its_tensors() -> None:
    @dataclasses.dataclass
    class Out:
        logits: torch.Tensor
        past: Any

    class Cache:  # an object with tensors in its attributes
        def __init__(self, k: torch.Tensor) -> None:
            self.k = k

    before = Out(y, [Cache(y), 0.5])
    after = Out(y, [Cache(y + 1), 0.5 + 1e-12])
    assert _changes(after, before) == (
        "output.past[0].k (float32 3): max difference 0.5 of scale > tolerance 1e-05"
    )
    assert _changes(Out(y, [Cache(y), 0.5 + 1e-12]), before) == ""


def test_a_result_nested_deeper_than_python_recurses_is_compared_whole() -> None:
    """A depth limit made identical results differ (and named an internal class)."""

    def nested(value: Any) -> Any:
        for _ in range(5000):  # past Python's recursion limit
            value = [value]
        return value

    assert _changes(nested(y), nested(y)) == ""
    assert _error(nested(y), nested(y)) == 0.0
    assert _changes(nested(y + 1), nested(y)).startswith("output" + "[0]" * 5000 + " (float32 3)")


def test_a_buffer_the_forward_changes_in_place_is_compared_as_it_was() -> None:
    """The leaves are copies: a result that is the model's own buffer, which the next forward
    updates in place, was the same object before and after, and equal to itself."""
    buffer = torch.ones(3)
    before = result_leaves(buffer)
    buffer += 1
    assert output_changes(result_leaves(buffer), before, 1e-5) == (
        "output (float32 3): max difference 1 of scale > tolerance 1e-05"
    )


def test_changed_outputs_are_named_with_how_they_changed() -> None:
    """A quantizer's codes that flipped on float rounding (a codec) read as "NaN/Inf
    appeared or moved, or an output's count, shape or integer values changed": which output,
    and which of the three, was not said."""
    before = (torch.zeros(2, 3), torch.arange(6).reshape(2, 3), torch.ones(4))
    after = (torch.zeros(2, 3), torch.tensor([[0, 1, 2], [3, 5, 4]]), torch.ones(4) * 1.5)
    assert _changes(after, before) == (
        "output[1] (int64 2x3): 2 of 6 values differ; "
        "output[2] (float32 4): max difference 0.5 of scale > tolerance 1e-05"
    )
    assert _changes(after, before, 1.0) == "output[1] (int64 2x3): 2 of 6 values differ"
    nan_now = (before[0] * NAN,)
    assert _changes(nan_now, before[:1]) == (
        "output[0] (float32 2x3): NaN/Inf appeared or went away at 6 of 6 values"
    )
    reshaped = [before[0].reshape(3, 2)] * 5
    assert _changes(reshaped, [before[0]] * 5, 1.0) == (
        "output[0] (float32 2x3): shape 3x2 now; output[1] (float32 2x3): shape 3x2 now; "
        "output[2] (float32 2x3): shape 3x2 now; 2 more"
    )


class _Slotted:
    __slots__ = ("__hidden", "t")

    def __init__(self, t: torch.Tensor) -> None:
        self.t, self.__hidden = t, t


@dataclasses.dataclass
class _Out:
    y: torch.Tensor


def _with_extra(extra: torch.Tensor) -> _Out:
    out = _Out(y)
    out.extra = extra  # type: ignore[attr-defined]  # an attribute that is not a field
    return out


class _NT(NamedTuple):
    a: Any
    b: Any


class _NT2(NamedTuple):
    a: Any
    b: Any


@pytest.mark.parametrize(
    ("after", "before", "change"),
    [
        (_Slotted(2 * y), _Slotted(y), "output._Slotted__hidden (float32 3): max difference"),
        (_with_extra(2 * y), _with_extra(y), "output.extra (float32 3)"),
        (np.float32(6.0), np.float32(1.0), "output (float32 scalar): max difference"),
        (np.int64(3), np.int64(4), "output (int64 scalar): 1 of 1 values differ"),
        (np.bool_(True), np.bool_(False), "output (bool scalar)"),
        (collections.deque([2 * y]), collections.deque([y]), "output[0] (float32 3)"),
        (range(3), range(4), "output (range): range(0, 4) before, range(0, 3) now"),
        (array.array("f", [1, 2]), array.array("f", [1, 3]), "output (float32 2): max diff"),
        (bytearray(b"a"), bytearray(b"b"), "bytearray(b'b') before, bytearray(b'a') now"),
        (fractions.Fraction(1, 3), fractions.Fraction(1, 4), "Fraction(1, 4) before"),
        (decimal.Decimal(1), decimal.Decimal(2), "Decimal('2') before, Decimal('1') now"),
        ((y, torch.float64), (y, torch.float32), "torch.float32 before, torch.float64 now"),
        ((y, torch.device("meta")), (y, torch.device("cpu")), "output[1] (device)"),
        ((y, slice(0, 2)), (y, slice(0, 3)), "slice(0, 3, None) before"),
        ([y], (y,), "output (tuple): tuple of 1 before, list of 1 now"),
        ({0: y}, [y], "output (list): list of 1 before, dict of 1 now"),
        (_NT2(y, y), _NT(y, y), "output (_NT): _NT of 2 before, _NT2 of 2 now"),
        ((y,), (y, []), "the forward's result changed: no output[1]"),
        ((y, {}), (y, []), "output[1] (list): list of 0 before, dict of 0 now"),
        ({"a": y, "extra": {}}, {"a": y}, "output['extra'] new"),
        (frozenset([1]), {1}, "output (set): {1} before, frozenset({1}) now"),
        ({True}, {1}, "output (set): {1} before, {True} now"),
        (np.array([1, "x"], dtype=object), np.array([1, "y"], dtype=object), "output[1] (str)"),
        (np.ma.array([1.0, 2.0], mask=[False, True]), np.ma.array([1.0, 2.0]), "output.mask"),
        (np.array(["a", "c"]), np.array(["a", "b"]), "array(['a', 'b'], dtype='<U1') before"),
        (y.to_sparse() * 2, y.to_sparse(), "output.values() (float32 2): max difference"),
        (y[None].to_sparse_csr(), y[None].to_sparse(), "output (sparse_coo float32 tensor)"),
        ((2 * y).unsqueeze(0).to_sparse_csr(), y.unsqueeze(0).to_sparse_csr(), ".values()"),
        (torch.quantize_per_tensor(2 * y, 0.1, 0, torch.qint8),
         torch.quantize_per_tensor(y, 0.1, 0, torch.qint8), "output.dequantize() (float32 3)"),
    ],
)  # fmt: skip
def test_no_kind_of_part_is_passed_over(after: Any, before: Any, change: str) -> None:
    """Slotted objects were compared by type only, NumPy scalars and deques were not read,
    values of other types (range, Fraction, torch.dtype, ...) passed whatever they were, and
    containers left no leaf of their own: an empty part dropped, a tuple become a list, passed
    as "equivalent"."""
    assert change in _changes(after, before)
    assert _error(after, before) > 1e-5
    assert _changes(before, before) == "" and _changes(after, after) == ""


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.array(["a", "b"]),
        lambda: np.array(["2020-01-01", "NaT"], dtype="datetime64[D]"),
        lambda: np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]),
        lambda: np.arange(3, dtype=">f4"),  # big-endian
        lambda: torch.nested.nested_tensor([y, y[:2]]),
        lambda: torch.nested.nested_tensor([y, y[:2]], layout=torch.jagged),
        lambda: torch.empty(3, device="meta"),
        lambda: y[None].to_sparse_csr(),
    ],
    ids=["str", "datetime", "structured", "big-endian", "nested", "jagged", "meta",
         "csr"],
)  # fmt: skip
def test_results_of_every_kind_are_read_and_equal_to_themselves(make: Any) -> None:
    """Each was an internal error (torch.from_numpy, a NestedTensor's sizes, Tensor.item() on
    meta), or a false difference (a jagged tensor's symbolic sizes differ in each copy)."""
    assert _changes(make(), make()) == ""
    error = _error(make(), make())  # NaN for the meta tensor: no value to compare
    assert error == 0.0 or math.isnan(error)


def test_a_changed_part_inside_a_structured_or_nested_result_is_named() -> None:
    records = np.zeros(2, dtype=[("a", "f4"), ("b", "i4")])
    changed = records.copy()
    changed["b"][1] = 7
    assert _changes(changed, records) == "output['b'] (int32 2): 1 of 2 values differ"
    nested = torch.nested.nested_tensor([y, y[:2]], layout=torch.jagged)
    assert _changes(nested * 2, nested).startswith("output.unbind()[0] (float32 3): max diff")


def test_an_expanded_view_is_copied_as_the_elements_it_expands() -> None:
    """``y[0].expand(40000, 40000)`` was cloned to 6.4 GB to be compared."""
    view = y[1].expand(40000, 40000)
    ((_, leaf),) = result_leaves(view)
    assert leaf.untyped_storage().nbytes() == 4 and leaf.shape == view.shape
    assert _changes(view, view) == ""
    ints = torch.arange(3)
    assert _changes(ints[2].expand(40000, 40000), ints[1].expand(40000, 40000)) == (
        "output (int64 40000x40000): 1600000000 of 1600000000 values differ"
    )
    small = y[1].expand(300, 400)
    other = torch.cat([small[:299], y[2].expand(1, 400)])  # one row differs: not expanded
    assert _changes(other, small) == (
        "output (float32 300x400): max difference 1 of scale > tolerance 1e-05"
    )


def test_a_statistic_near_zero_is_judged_against_the_floor_not_its_own_scale() -> None:
    """The mean of a normalized activation, ~1e-9, differs by rounding ~1e-8: 0.56 relative to
    itself, which failed an equivalent rewrite."""
    assert _error((y, 1e-9 + 5e-9), (y, 1e-9)) == pytest.approx(5e-9 / SCALE_FLOOR)
    assert _changes((y, torch.tensor(3e-9)), (y, torch.tensor(1e-9))) == ""
    assert "max difference" in _changes((y, 0.02), (y, 0.01))  # 0.1 relative: caught


def test_a_complex_number_is_compared_within_the_tolerance() -> None:
    """A Python complex (``.item()`` of a complex tensor) was compared exactly."""
    assert _changes(complex(2.0 * (1 + 1e-12), 1.0), complex(2.0, 1.0)) == ""
    assert "max difference" in _changes(complex(2.0, 1.5), complex(2.0, 1.0))


class _Result:
    def __init__(self, **parts: Any) -> None:
        self.__dict__.update(parts)


def test_what_is_not_read_into_is_named_not_compared() -> None:
    """A logger in the result was walked into the logging system (its cache changed between
    the forwards: a false difference); an array namespace (``self.xp = np``) into NumPy's
    whole module tree (minutes); a set of tensors in their id order."""
    log = logging.getLogger("wnpass.tests.compare")
    before = _Result(y=y, log=log, xp=np, f=y.sum, s={y[0] * 1, y[1] * 1})
    leaves = result_leaves(before)
    logging.getLogger("wnpass.tests.compare.child").info("a new logger: its parent's cache")
    after = result_leaves(_Result(y=y, log=log, xp=np, f=y.sum, s={y[1] * 1, y[0] * 1}))
    assert output_changes(after, leaves, 1e-5) == "" and max_rel_error(after, leaves) == 0.0
    assert len(leaves) == 6  # the object, y and the four named below
    assert uncompared(leaves) == (
        "output.log (Logger: a standard-library object without equality of its own); "
        "output.xp (module: code, not a value); "
        "output.f (builtin_function_or_method: code, not a value); 1 more"
    )
    assert "output.s (set: its elements have no order to be paired in)" in uncompared([leaves[-1]])
    assert uncompared(result_leaves((y, [y]))) == ""


def test_an_object_met_twice_is_compared_as_where_it_was_met_first() -> None:
    shared: dict[str, Any] = {"k": y}
    cycle: list[Any] = [y]
    cycle.append(cycle)
    assert _changes((shared, shared), (shared, shared)) == ""
    assert _changes(cycle, cycle) == ""
    assert _changes((shared, dict(shared)), (shared, shared)) == (
        "the forward's result changed: output[1]['k'] new"
    )
    assert _changes((y, y), (y, y * 1)) == ""  # a tensor: at each of its paths


class _OutDict(dict):  # a result class: a dict with attributes
    aux: Any


class _Items(list):
    flag: bool


def _out(extra: Any) -> _OutDict:
    out = _OutDict(logits=y)
    out.aux = extra
    return out


def _items(flag: bool) -> _Items:
    items = _Items([y])
    items.flag = flag
    return items


class _A:
    pass


class _B:
    pass


@pytest.mark.parametrize(
    ("after", "before", "change"),
    [
        (_out(2 * y), _out(y * 1), "output.aux (float32 3): max difference"),
        (_items(True), _items(False), "output.flag (bool): False before, True now"),
        ((y, _B()), (y, _A()), "output[1] (_A): a _B now"),
        ((y, _B), (y, _A), "output[1] (type): <class"),
        ((y, 2**20000 + 1), (y, 2**20000), "an int of 5001 hex digits ending 00000001 now"),
        (torch.tensor([1], dtype=torch.uint8).view(torch.bits8),
         torch.tensor([2], dtype=torch.uint8).view(torch.bits8), "1 of 1 values differ"),
        (torch.masked.masked_tensor(y, torch.tensor([True, False, True])),
         torch.masked.masked_tensor(y, torch.tensor([True, True, True])),
         "output.get_mask() (bool 3): 1 of 3 values differ"),
    ],
)  # fmt: skip
def test_attributes_of_containers_types_and_odd_values_are_compared(
    after: Any, before: Any, change: str
) -> None:
    """A dict or list subclass's attributes were not read, two objects wnpass does not read
    into passed whatever their types, a class was not compared; an int beyond
    ``repr``'s digit limit, a bits8 tensor and a MaskedTensor whose mask changed raised."""
    assert change in _changes(after, before)
    assert _error(after, before) > 1e-5
    assert _changes(before, before) == ""


def test_a_models_class_and_a_module_as_a_key_are_the_same_after_weight_norm() -> None:
    """After the rewrite a module's class is ``ParametrizedLinear`` and its repr lists its
    parametrizations: a result holding ``type(self.lin)``, or keyed by the module (a feature
    dict), changed."""
    plain, normed = nn.Linear(2, 2), nn.Linear(2, 2)
    torch.nn.utils.parametrizations.weight_norm(normed)
    assert type(normed) is not nn.Linear
    assert _changes((type(normed), {normed: y}), (type(plain), {plain: y})) == ""


@pytest.mark.parametrize(
    ("after", "before"),
    [
        (np.array([1 + 1e-12], np.longdouble), np.array([1.0], np.longdouble)),
        ({float("nan"), 1.0}, {float("nan"), 1.0}),
    ],
)
def test_longdouble_rounding_and_nan_in_a_set_are_no_change(after: Any, before: Any) -> None:
    """float128 arrays were compared by their bytes, ``{nan}`` by ``nan == nan``."""
    assert _changes(after, before) == ""


def test_an_object_array_holding_itself_is_read_once() -> None:
    """It was walked forever, growing memory by 0.6 GB/s."""
    cycle = np.empty(2, dtype=object)
    cycle[0], cycle[1] = y, cycle
    leaves = result_leaves(cycle)
    assert [path for path, _ in leaves] == ["output", "output[0]", "output[1]"]
    assert _changes(cycle, cycle) == ""


def test_parts_nested_past_the_depth_limit_are_named_not_read() -> None:
    """Each part keeps its path, as long as its depth: a result nested 30,000 levels deep took
    over 3 GB to walk (100,000: killed). Past MAX_DEPTH levels nothing more is read."""
    from wnpass.fx.compare import MAX_DEPTH

    nested: dict[str, Any] = {}
    inner = nested
    for _ in range(MAX_DEPTH + 10):
        inner["a"] = {}
        inner = inner["a"]
    leaves = result_leaves((torch.ones(2), nested))
    assert len(leaves) == MAX_DEPTH + 3  # the tuple, the tensor, the dicts down to the limit
    assert f"nested more than {MAX_DEPTH} levels deep: not read" in uncompared(leaves)
    assert _error((torch.ones(2), nested), (torch.ones(2), nested)) == 0.0
