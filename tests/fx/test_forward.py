"""The forwards wnpass runs on a user's model: its state stays whole and consistent, each
its errors (sys.exit() too) are the model's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wnpass import apply_weight_norm
from wnpass.fx.forward import Batch, ForwardFailedError, run_forward


class _GrowingCache(nn.Module):
    """A rotary-style cache: the forward re-registers a buffer for longer inputs and records
    its length in a plain attribute (transformers' dynamic RoPE does this)."""

    table: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.cached = 2
        self.register_buffer("table", torch.ones(2, 4), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.cached:
            self.cached = x.shape[0]
            self.register_buffer("table", torch.full((x.shape[0], 4), 0.5), persistent=False)
        return self.lin(x) * self.table[: x.shape[0]]


def test_a_forward_that_rebuilds_its_cache_is_left_consistent() -> None:
    """wnpass's forwards leave what the model's forward wrote, buffer and attribute together:
    putting the buffer back alone made the outputs differ (reported NOT EQUIVALENT) and left
    the model inconsistent."""
    model, x = _GrowingCache(), torch.randn(6, 4)
    report = apply_weight_norm(model, x)
    assert report.applied == 1 and report.status == "ok", report.reason
    assert model.cached == 6 and model.table.shape == (6, 4)
    with torch.no_grad():
        model(x)  # still runs


def test_a_lazy_model_is_rewritten() -> None:
    """A lazy module's first forward gives its parameters and buffers their values: that
    forward may be wnpass's."""
    model = nn.Sequential(nn.LazyLinear(4), nn.LazyBatchNorm1d())
    report = apply_weight_norm(model, torch.randn(8, 3))
    assert report.applied == 1 and report.max_rel_error is not None


class _Exits(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise SystemExit(0)


def test_a_sys_exit_in_forward_is_the_models_error() -> None:
    """``sys.exit()`` in the model's forward is one line naming the model (exit 2), never the
    end of wnpass with the model's exit code."""
    with pytest.raises(ForwardFailedError, match=r"^_Exits: .* called sys\.exit\(0\)$"):
        run_forward(_Exits(2, 2), Batch((torch.ones(1, 2),)))
