"""State dicts of any weight-norm form load into any model form."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tests.fx.helpers import KEEP_RTOL, rel_error
from wnpass import apply_weight_norm, load_state_dict_any


def _source() -> Any:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Conv1d(1, 2, 3))


def _x() -> torch.Tensor:
    return torch.randn(3, 1, 4, generator=torch.Generator().manual_seed(2))


def test_legacy_weight_g_weight_v_checkpoint_loads() -> None:
    """A checkpoint saved with torch.nn.utils.weight_norm (weight_g/weight_v) loads."""
    legacy = _source()
    torch.nn.utils.weight_norm(legacy[0])
    torch.nn.utils.weight_norm(legacy[2])
    state = legacy.state_dict()
    assert "0.weight_g" in state
    target: Any = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Conv1d(1, 2, 3))
    apply_weight_norm(target)
    load_state_dict_any(target, state)
    assert torch.equal(target[0].parametrizations.weight.original1, state["0.weight_v"])
    assert rel_error(target(_x()), legacy(_x())) <= KEEP_RTOL


def test_plain_checkpoint_into_weight_normed_model_and_back() -> None:
    """Plain weights split into g/v; g/v fold into plain weights; outputs stay equal."""
    source = _source()
    normed = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Conv1d(1, 2, 3))
    apply_weight_norm(normed)
    load_state_dict_any(normed, source.state_dict())
    assert rel_error(normed(_x()), source(_x())) <= KEEP_RTOL
    back = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Conv1d(1, 2, 3))
    load_state_dict_any(back, normed.state_dict())
    assert rel_error(back(_x()), source(_x())) <= KEEP_RTOL


def test_mismatched_checkpoint_still_fails() -> None:
    """Negative case: a state dict of another shape is refused as load_state_dict would."""
    normed = nn.Sequential(nn.Linear(4, 5))
    apply_weight_norm(normed)
    try:
        load_state_dict_any(normed, nn.Sequential(nn.Linear(4, 6)).state_dict())
    except RuntimeError as error:
        assert "size mismatch" in str(error)
        return
    raise AssertionError("a mismatched checkpoint loaded")
