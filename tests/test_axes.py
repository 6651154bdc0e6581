"""The per-op unit-axis table (wnpass/axes.py): grouped transposed convolutions, where a
layer's output keeps its units, and contractions written as einsums."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wnpass.axes import (
    OpKind,
    contraction_equation,
    is_legacy_hook,
    is_legacy_spectral_norm_hook,
    output_unit_axis,
    unit_axis,
)


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "groups", "expected"),
    [
        (8, 8, 8, 0),  # depthwise (C, 1, k): row c is channel c's whole filter
        (6, 4, 1, 1),  # not grouped: per output channel
        (8, 4, 4, "each output channel is 2 rows of axis 0, no single axis"),
        (4, 4, 2, "each output channel is 2 rows of axis 0 at one index of axis 1"),
        (2, 4, 2, "each output channel is one row of axis 0 at one index of axis 1"),
    ],
)
def test_grouped_conv_transpose_unit_axis(
    in_channels: int, out_channels: int, groups: int, expected: int | str
) -> None:
    """Axis 0 exactly when scaling one row of axis 0 scales one output channel and nothing
    else; otherwise the reason says where an output channel's filter lies."""
    layer = nn.ConvTranspose1d(in_channels, out_channels, 3, groups=groups, bias=False)
    axis = unit_axis("conv_transpose", list(layer.weight.shape), groups=groups)
    if isinstance(expected, str):
        assert isinstance(axis, str) and f"groups={groups}" in axis and expected in axis, axis
        return
    assert axis == expected
    x = torch.randn(2, in_channels, 6)
    with torch.no_grad():
        before = layer(x)
        layer.weight.select(axis, 1).mul_(2.0)  # one unit along the chosen axis, doubled
        after = layer(x)
    changed = [c for c in range(out_channels) if not torch.equal(after[:, c], before[:, c])]
    assert changed == [1] and torch.allclose(after[:, 1], 2 * before[:, 1])


@pytest.mark.parametrize(
    ("kind", "layer", "x"),
    [
        ("linear", nn.Linear(3, 4), torch.randn(3)),
        ("linear", nn.Linear(3, 4), torch.randn(2, 5, 3)),
        ("conv", nn.Conv1d(3, 4, 3), torch.randn(2, 3, 6)),
        ("conv", nn.Conv1d(3, 4, 3), torch.randn(3, 6)),  # unbatched: channels at 0
        ("conv", nn.Conv2d(3, 4, 3), torch.randn(3, 5, 5)),
        ("conv", nn.Conv3d(3, 4, 1), torch.randn(3, 2, 2, 2)),
        ("conv_transpose", nn.ConvTranspose2d(3, 4, 3), torch.randn(3, 4, 4)),
    ],
    ids=["linear-1d", "linear-3d", "conv1d", "conv1d-unbatched", "conv2d-unbatched",
         "conv3d-unbatched", "conv-transpose2d-unbatched"],
)  # fmt: skip
def test_the_output_unit_axis_holds_one_output_unit(
    kind: OpKind, layer: nn.Module, x: torch.Tensor
) -> None:
    """Scaling one output unit's weights scales exactly the slice of the output at the axis
    output_unit_axis names, batched or unbatched."""
    weight, bias = layer.weight, layer.bias
    assert isinstance(weight, torch.Tensor) and isinstance(bias, torch.Tensor)
    unit = unit_axis(kind, list(weight.shape))
    assert isinstance(unit, int)
    with torch.no_grad():
        bias.zero_()
        before = layer(x)
        weight.select(unit, 1).mul_(2.0)
        after = layer(x)
    axis = output_unit_axis(kind, before.dim(), weight.dim())
    assert isinstance(axis, int)
    before, after = before.movedim(axis, 0), after.movedim(axis, 0)
    assert torch.allclose(after[1], 2 * before[1])
    assert torch.equal(after[[0, 2, 3]], before[[0, 2, 3]])


def test_an_output_of_neither_conv_layout_has_no_known_unit_axis() -> None:
    reason = output_unit_axis("conv", 1, 3)
    assert isinstance(reason, str) and "no known channel axis" in reason


def test_legacy_spectral_norm_hooks_are_told_from_weight_norm_hooks() -> None:
    (spectral,) = torch.nn.utils.spectral_norm(nn.Linear(3, 4))._forward_pre_hooks.values()
    (weight_norm,) = torch.nn.utils.weight_norm(nn.Linear(3, 4))._forward_pre_hooks.values()
    assert is_legacy_spectral_norm_hook(spectral) and not is_legacy_hook(spectral)
    assert is_legacy_hook(weight_norm) and not is_legacy_spectral_norm_hook(weight_norm)


@pytest.mark.parametrize(
    ("op", "shapes", "dims"),
    [
        ("tensordot", [(2, 3, 4), (3, 4, 5)], 2),
        ("tensordot", [(2, 3, 4), (4, 3, 5)], [[1, 2], [1, 0]]),
        ("tensordot", [(2, 3), (4, 5)], 0),  # an outer product
        ("tensordot", [(2, 3), (5, 3)], [[-1], [-1]]),
        ("inner", [(2, 3), (4, 3)], 2),
        ("inner", [(3,), (4, 2, 3)], 2),
        ("multi_dot", [(3,), (3, 4), (4,)], 2),
        ("multi_dot", [(2, 3), (3, 4), (4, 5)], 2),
        ("multi_dot", [(3,), (3, 4)], 2),
        ("multi_dot", [(2, 3), (3,)], 2),
    ],
)
def test_a_contraction_s_equation_computes_what_torch_does(
    op: str, shapes: list[tuple[int, ...]], dims: int | list[list[int]]
) -> None:
    """Each operand's letters are its axes: the einsum of the equation is the op's result."""
    torch.manual_seed(0)
    tensors = [torch.randn(shape, dtype=torch.float64) for shape in shapes]
    equation = contraction_equation(op, [len(shape) for shape in shapes], dims)
    assert equation is not None
    if op == "tensordot":
        expected = torch.tensordot(tensors[0], tensors[1], dims=dims)
    elif op == "inner":
        expected = torch.inner(*tensors)
    else:
        expected = torch.linalg.multi_dot(tensors)
    assert torch.allclose(torch.einsum(equation, *tensors), expected)


def test_inner_with_a_number_is_no_contraction() -> None:
    assert contraction_equation("inner", [0, 2]) is None
