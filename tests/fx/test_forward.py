"""The forwards wnpass runs on a user's model leave its modes and buffers as they were."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from wnpass import apply_weight_norm, data_init
from wnpass.errors import InvalidArgumentError
from wnpass.fx.forward import evaluating


class _Stateful(nn.Module):
    """A model whose forward writes its buffers: a counter in place, a statistic by assigning
    a new tensor, and a cache registered on the first call."""

    steps: torch.Tensor
    last: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("last", torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        self.last = x.mean(0)
        if not hasattr(self, "cache"):
            self.register_buffer("cache", x.detach().clone())
        return self.lin(x)


def _check_untouched(model: _Stateful, last: torch.Tensor) -> None:
    assert int(model.steps) == 0
    assert model.last is last
    assert torch.equal(last, torch.zeros(4))
    assert "cache" not in model._buffers


def test_apply_weight_norm_compares_outputs_without_advancing_the_models_state() -> None:
    model = _Stateful()
    last = model.last
    report = apply_weight_norm(model, torch.randn(8, 4))
    assert report.applied == 1 and report.max_rel_error is not None  # the model was run
    _check_untouched(model, last)


@pytest.mark.parametrize("batch_rows", [8, 1], ids=["initialized", "refused"])
def test_data_init_writes_only_g_v_and_the_bias(batch_rows: int) -> None:
    model = _Stateful()
    last = model.last
    parametrizations.weight_norm(model.lin)
    if batch_rows == 1:  # one value per unit: no statistics, refused
        with pytest.raises(InvalidArgumentError):
            data_init(model, torch.randn(batch_rows, 4))
    else:
        assert data_init(model, torch.randn(batch_rows, 4)).initialized == ["lin.weight"]
    _check_untouched(model, last)


def test_buffers_come_back_when_the_block_raises() -> None:
    model = _Stateful().train()
    last = model.last
    with pytest.raises(RuntimeError, match="stop"), evaluating(model):
        model(torch.randn(2, 4))
        raise RuntimeError("stop")
    _check_untouched(model, last)
    assert model.training
