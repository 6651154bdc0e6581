"""The per-op unit-axis table (wnpass/axes.py): grouped transposed convolutions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wnpass.axes import unit_axis


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
