"""The shared, torch-free rules: the per-op unit-axis table, einsum, keys, the product, hooks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from wnpass.axes import einsum_unit_axis, is_legacy_hook, output_unit_axis, unit_axis
from wnpass.fx.fold import folded_weight
from wnpass.rounding import round_to_torch
from wnpass.rules import (
    KeyForm,
    dim_from_shapes,
    pair_keys,
    parse_key,
    unit_size,
    weight_from,
)


def test_rules_and_axes_import_without_torch() -> None:
    """Both modules load in a fresh interpreter without importing torch."""
    code = "import sys, wnpass.axes, wnpass.rules; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize(
    ("kind", "shape", "options", "expected"),
    [
        ("linear", [6, 4], {}, 0),
        ("conv", [8, 2, 3, 3], {"groups": 4}, 0),
        ("matmul_right", [4, 6], {}, 1),
        ("matmul_left", [6, 4], {}, 0),
        ("matmul_right", [1, 4, 6], {}, 2),
        ("gemm", [6, 4], {"trans_b": True}, 0),
        ("gemm", [4, 6], {}, 1),
        ("conv_transpose", [4, 6, 3], {}, 1),
        ("conv_transpose", [4, 6, 3], {"policy": "torch"}, 0),
        ("conv_transpose", [4, 3, 3], {"groups": 2, "policy": "torch"}, 0),
        ("embedding", [10, 4], {"embeddings": True}, 0),
    ],
)
def test_unit_axis_table(kind: str, shape: list[int], options: dict, expected: int) -> None:
    assert unit_axis(kind, shape, **options) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "shape", "options", "words"),
    [
        ("conv_transpose", [4, 3, 3], {"groups": 2}, "groups=2"),
        ("embedding", [10, 4], {}, "opt-in"),
        ("linear", [6], {}, "1-D"),
        ("matmul_right", [3, 4, 6], {}, "batched"),
    ],
)
def test_unit_axis_declines_with_a_reason(
    kind: str, shape: list[int], options: dict, words: str
) -> None:
    axis = unit_axis(kind, shape, **options)  # type: ignore[arg-type]
    assert isinstance(axis, str) and words in axis


def test_unit_axis_rejects_an_unknown_policy_or_kind() -> None:
    with pytest.raises(ValueError, match="dim_policy"):
        unit_axis("linear", [2, 2], policy="rows")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="op kind"):
        unit_axis("pool", [2, 2])  # type: ignore[arg-type]


def test_output_unit_axis() -> None:
    assert output_unit_axis("linear") == -1 and output_unit_axis("conv") == 1


@pytest.mark.parametrize(
    ("equation", "operand", "shapes", "expected"),
    [
        ("bsi,oi->bso", 1, [[2, 3, 4], [5, 4]], 0),
        ("bsi,io->bso", 1, [[2, 3, 4], [4, 5]], 1),
        ("...i,io->...o", 1, [[2, 3, 4], [4, 5]], 1),
        ("ij,jk", 1, [[2, 3], [3, 4]], 1),  # implicit output "ik"
        ("oi,bi->bo", 0, [[5, 4], [2, 4]], 0),
        ("bhd,hde->bhe", 1, [[2, 2, 3], [2, 3, 4]], "batch axes"),
        ("bi,i->b", 1, [[2, 3], [3]], "0 output axes"),
        ("bi,ioj->boj", 1, [[2, 3], [3, 4, 5]], "2 output axes"),
        ("...i,...i->...", 1, [[2, 3], [2, 3]], "ellipsis"),
    ],
)
def test_einsum_unit_axis(
    equation: str, operand: int, shapes: list[list[int]], expected: int | str
) -> None:
    axis = einsum_unit_axis(equation, operand, shapes)
    if isinstance(expected, int):
        assert axis == expected
    else:
        assert isinstance(axis, str) and expected in axis


def test_legacy_hooks_are_recognized_by_type_not_by_name() -> None:
    """torch's WeightNorm hook is one; a look-alike class of the same name is not."""
    layer = torch.nn.utils.weight_norm(nn.Linear(3, 4))
    hooks = list(layer._forward_pre_hooks.values())
    assert len(hooks) == 1 and is_legacy_hook(hooks[0])

    class WeightNorm:
        name, dim = "weight", 0

    assert not is_legacy_hook(WeightNorm()) and not is_legacy_hook(len)


def test_key_forms_round_trip() -> None:
    for form in ("parametrize", "legacy"):
        keys = pair_keys("blocks.0.conv.weight", form)
        assert parse_key(keys.g) == (keys, "g") and parse_key(keys.v) == (keys, "v")
    assert pair_keys("w", "parametrize").v == "parametrizations.w.original1"
    assert parse_key("conv.weight") is None


@pytest.mark.parametrize("weight", ["weight", ".weight", "a..weight", "a.weight", "..w"])
@pytest.mark.parametrize("form", ["parametrize", "legacy"])
def test_key_forms_round_trip_for_an_empty_module(weight: str, form: KeyForm) -> None:
    """A key whose module part is empty (``.parametrizations.weight.original0``) was read as
    pair ``weight``, whose keys are other keys: a pair of neither half (an AssertionError in
    every checkpoint command), and ``weight_g`` beside ``.weight_g`` renamed onto one key."""
    keys = pair_keys(weight, form)
    assert parse_key(keys.g) == (keys, "g") and parse_key(keys.v) == (keys, "v")


@pytest.mark.parametrize("weight", ["blk\n0.weight", "a.weight\n", "\na.weight", "a.w\r\nx"])
@pytest.mark.parametrize("form", ["parametrize", "legacy"])
def test_a_key_with_a_newline_is_read_exactly(weight: str, form: KeyForm) -> None:
    """A newline is a character of the key like any other (a ModuleDict key may hold one): the
    patterns without DOTALL missed ``blk\\n0.weight_g`` (a pair never seen)."""
    keys = pair_keys(weight, form)
    assert parse_key(keys.g) == (keys, "g") and parse_key(keys.v) == (keys, "v")


@pytest.mark.parametrize(
    "key",
    [
        "a.weight_g\n",
        "a.weight_v\n",
        "a.parametrizations.weight.original0\n",
        "a.parametrizations.weight.original1\n",
        "a._g",
        "a._v",
        "._g",
        "a.parametrizations..original0",
    ],
)
def test_a_key_of_neither_form_is_no_half_of_a_pair(key: str) -> None:
    """``$`` matched before a last newline: ``a.weight_g\\n`` was read as g of ``a.weight``,
    whose keys are others (an AssertionError in every checkpoint command). ``a._g`` names no
    parameter's g (its name would be empty, which PyTorch refuses): it is an ordinary tensor,
    not renamed to ``a.parametrizations..original0``, which nothing reads back."""
    assert parse_key(key) is None


@pytest.mark.parametrize("weight", ["", ".", "a.", "a.b."])
@pytest.mark.parametrize("form", ["parametrize", "legacy"])
def test_a_weight_with_an_empty_name_has_no_keys(weight: str, form: KeyForm) -> None:
    with pytest.raises(ValueError, match="names no parameter"):
        pair_keys(weight, form)


def test_no_two_weights_share_a_key() -> None:
    """convert renames each pair onto pair_keys' keys: two weights never get one key, so no
    two renamed pairs can write the same entry."""
    weights = ["weight", ".weight", "..weight", "a.weight", "a..weight", "a.b.weight", "a_g"]
    keys = [
        key
        for weight in weights
        for form in ("parametrize", "legacy")
        for key in (pair_keys(weight, form).g, pair_keys(weight, form).v)
    ]
    assert len(set(keys)) == len(keys) == 4 * len(weights)


def test_a_leading_dot_is_kept_in_both_forms() -> None:
    keys = pair_keys(".weight", "parametrize")
    assert (keys.g, keys.v) == (
        ".parametrizations.weight.original0",
        ".parametrizations.weight.original1",
    )
    assert parse_key(".parametrizations.weight.original1") == (keys, "v")
    assert parse_key("parametrizations.weight.original1") == (
        pair_keys("weight", "parametrize"),
        "v",
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("dim", [0, 1, 2, None])
def test_torch_fold_is_the_rules_product(dtype: torch.dtype, dim: int | None) -> None:
    """The PyTorch fold goes through rules.weight_from: equal bit for bit, every dtype/axis."""
    generator = torch.Generator().manual_seed(0)
    v = torch.randn(4, 3, 5, generator=generator).to(dtype)
    g_shape = [1, 1, 1] if dim is not None else []
    if dim is not None:
        g_shape[dim] = v.shape[dim]
    g = torch.rand(g_shape, generator=generator).add(0.5).to(dtype)
    folded = folded_weight(g, v, dim)
    expected = weight_from(g.double().numpy(), v.double().numpy(), dim)
    assert folded.dtype == dtype
    assert torch.equal(folded, round_to_torch(expected, v))
    # and it is PyTorch's own weight norm, computed in float64 and rounded once; in float64
    # itself the two sum in different orders, a few ulps (1e-15 relative) apart
    reference = torch._weight_norm(v.double(), g.double(), -1 if dim is None else dim)
    if dtype == torch.float64:
        assert torch.allclose(folded, reference, rtol=1e-14, atol=0)
    else:
        assert torch.equal(folded, round_to_torch(reference.numpy(), v))


@pytest.mark.parametrize(
    ("dtype", "rows", "cols"), [(torch.bfloat16, 65536, 4), (torch.float16, 8192, 8)]
)
def test_weight_from_rounds_once_where_a_cast_through_float32_would_not(
    dtype: torch.dtype, rows: int, cols: int
) -> None:
    """The product is rounded once to the weight's dtype: on these (seeded) values, rounding it
    through float32, as torch's and ml_dtypes' casts do, gives another weight."""
    generator = torch.Generator().manual_seed(0)
    v = torch.randn(rows, cols, generator=generator).to(dtype)
    g = torch.rand(rows, 1, generator=generator).add(0.5).to(dtype)
    product = weight_from(g.double().numpy(), v.double().numpy(), 0)
    folded = folded_weight(g, v, 0)
    assert torch.equal(folded, round_to_torch(product, v))
    assert not torch.equal(folded, torch.from_numpy(product).to(dtype))
    if dtype == torch.float16:  # numpy holds float16: weight_from rounds it once itself
        once = weight_from(g.numpy(), v.numpy(), 0)
        assert once.dtype == np.float16 and torch.equal(folded, torch.from_numpy(once))


def test_dim_from_shapes() -> None:
    assert dim_from_shapes([4, 1, 1], [4, 3, 5]) == 0
    assert dim_from_shapes([1, 3], [4, 3]) == 1
    assert dim_from_shapes([], [4, 3]) is None
    with pytest.raises(ValueError, match="more than one axis"):
        dim_from_shapes([4, 3], [4, 3])


def test_unit_size_is_the_elements_one_norm_is_taken_over() -> None:
    assert unit_size([4, 3, 5], 0) == 15 and unit_size([4, 3, 5], 1) == 20
    assert unit_size([4, 3], None) == 12 and unit_size([], None) == 1
    assert unit_size([1, 1, 8], 2) == 1 and unit_size([3, 0], 0) == 0


def test_weight_from_is_float64_rounded_once() -> None:
    v = np.array([[3.0, 4.0], [1.0, 0.0]], dtype=np.float32)
    g = np.array([[10.0], [2.0]], dtype=np.float32)
    assert np.array_equal(weight_from(g, v, 0), np.array([[6.0, 8.0], [2.0, 0.0]], np.float32))
    assert weight_from(g, v, 0).dtype == np.float32
    # random values: element by element the float64 product rounded once, which a computation
    # in the weight's own dtype (rounding at every step) misses on some elements
    rng = np.random.default_rng(7)
    for dtype in (np.float32, np.float16):
        v = rng.standard_normal((64, 33)).astype(dtype)
        g = (rng.random((64, 1)) + 0.5).astype(dtype)
        v64 = v.astype(np.float64)
        exact = g.astype(np.float64) * v64 / np.sqrt((v64 * v64).sum(axis=1, keepdims=True))
        assert np.array_equal(weight_from(g, v, 0), exact.astype(dtype))
        stepwise = g * (v / np.sqrt((v * v).sum(axis=1, keepdims=True)))
        assert stepwise.dtype == dtype and not np.array_equal(stepwise, exact.astype(dtype))
