"""State dicts of any weight-norm form load into any model form."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from tests.fx.helpers import KEEP_RTOL, rel_error
from wnpass import apply_weight_norm, load_state_dict_any
from wnpass.errors import InvalidArgumentError
from wnpass.fx.state import WeightNormPairError, restore_weight_norm


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
    """Negative case: a state dict of another shape is refused as load_state_dict refuses it,
    in one line (torch's message was several, and no WnpassError, t140)."""
    normed = nn.Sequential(nn.Linear(4, 5))
    apply_weight_norm(normed)
    with pytest.raises(InvalidArgumentError) as caught:
        load_state_dict_any(normed, nn.Sequential(nn.Linear(4, 6)).state_dict())
    assert caught.value.parameter == "state_dict" and "\n" not in str(caught.value)
    assert str(caught.value).startswith(
        "state_dict does not fit Sequential: Error(s) in loading state_dict for Sequential: "
        "size mismatch for 0.bias: copying a param with shape torch.Size([6])"
    )


def test_a_pair_without_a_finite_weight_is_refused_into_a_plain_model() -> None:
    """A unit of v all zero was folded into NaN weights while loading, with no word."""
    source = _source()
    torch.nn.utils.parametrizations.weight_norm(source[0])
    state = source.state_dict()
    state["0.parametrizations.weight.original1"][2].zero_()
    plain = _source()
    with pytest.raises(WeightNormPairError, match=r"^0\.weight: cannot be folded into a plain "):
        load_state_dict_any(plain, state)
    assert torch.equal(plain[0].weight, _source()[0].weight)  # nothing loaded


def test_weight_norm_is_restored_where_a_plain_model_meets_a_pair() -> None:
    """Each stored pair gets PyTorch's weight norm at the axis its g keeps, in either key
    form; the model then loads the pair as it is stored."""
    source = _source()
    torch.nn.utils.parametrizations.weight_norm(source[0])
    torch.nn.utils.weight_norm(source[2], dim=2)
    state = source.state_dict()
    plain = _source()
    assert restore_weight_norm(plain, state) == ["0.weight", "2.weight"]
    load_state_dict_any(plain, state)
    assert torch.equal(plain[2].parametrizations.weight.original1, state["2.weight_v"])
    assert plain[2].parametrizations.weight.original0.shape == (1, 1, 3)  # dim 2 kept
    assert rel_error(plain(_x()), source(_x())) <= KEEP_RTOL
    assert restore_weight_norm(plain, state) == []  # once


def test_a_weight_stored_twice_is_refused() -> None:
    """A pair beside a plain ``0.weight``, or a pair in both key forms: export took one copy,
    train-rewrite the other, and the checkpoint commands decline the pair; which is meant is
    unknown, so loading it is refused, naming the weight."""
    source = _source()
    torch.nn.utils.parametrizations.weight_norm(source[0])
    state = source.state_dict()
    with_plain = {**state, "0.weight": torch.full((6, 4), 0.5)}
    legacy = {"0.weight_g": state["0.parametrizations.weight.original0"] * 2}
    legacy["0.weight_v"] = state["0.parametrizations.weight.original1"]
    for stored, said in ((with_plain, "and as a plain weight"), ({**state, **legacy}, "both key")):
        for load in (load_state_dict_any, restore_weight_norm):
            with pytest.raises(WeightNormPairError, match=rf"^0\.weight: stored .*{said}"):
                load(_source(), stored)


def test_a_pair_of_another_shape_than_the_weight_names_it() -> None:
    """A pair whose v has another rank than the model's weight failed inside PyTorch's weight
    norm: "Dimension out of range", naming no weight."""
    state = {"0.weight_g": torch.ones(6, 1, 1), "0.weight_v": torch.ones(6, 1, 4)}
    with pytest.raises(WeightNormPairError, match=r"^0\.weight: the checkpoint's v is \(6, 1, 4\)"):
        restore_weight_norm(_source(), state)


def test_a_tied_weight_keeps_its_tie() -> None:
    """Weight norm put back on a weight held under two names would untie them: a tied
    weight's pair is folded as it is loaded instead, into the one tensor both names hold."""

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)
            self.b.weight = self.a.weight

    source = Tied()
    torch.nn.utils.parametrizations.weight_norm(source.a)
    state = dict(source.state_dict())  # a's pair, and b.weight: the weight both names hold
    state["b.weight"] = source.a.weight.detach().clone()
    target = Tied()
    assert restore_weight_norm(target, state) == []
    load_state_dict_any(target, state)
    assert target.b.weight is target.a.weight
    assert rel_error(target.a.weight, source.a.weight) <= KEEP_RTOL


def test_a_whole_tensor_g_stored_with_axes_of_one_loads_into_weight_norm() -> None:
    """g of 1x1x1 beside a 2x2x3 v (the whole tensor's norm, as an older weight_norm stored
    it): PyTorch's weight norm holds that g 0-d, and export --checkpoint refused the file
    ("does not fit the model") once weight norm was put back for it."""
    source = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Conv1d(2, 2, 3))
    v = torch.randn(2, 2, 3, generator=torch.Generator().manual_seed(4))
    state = {k: t for k, t in source.state_dict().items() if k != "2.weight"}
    state |= {"2.weight_g": torch.full((1, 1, 1), 1.7), "2.weight_v": v}
    target = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Conv1d(2, 2, 3))
    assert restore_weight_norm(target, state) == ["2.weight"]
    load_state_dict_any(target, state)
    expected = 1.7 * v / v.norm()
    weight = target.get_submodule("2").weight
    assert isinstance(weight, torch.Tensor) and rel_error(weight, expected) <= KEEP_RTOL


@pytest.mark.parametrize("form", ["parametrize", "legacy"])
def test_a_pair_of_another_axis_loads_as_the_weight_it_computes(
    form: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A 1x6 g saved with dim=1 has as many elements as the 6x1 g of a dim=0 weight norm: it
    was reshaped into it and loaded (export called the wrong weights deployable), then
    refused, as load_state_dict refuses it: a ConvTranspose normed at PyTorch's default axis
    0 did not load into wnpass's, per output channel (t140). The pair's weight is loaded,
    normalized again at the model's axis, with a warning."""
    torch.manual_seed(0)
    source: Any = nn.ConvTranspose1d(6, 6, 3)
    torch.nn.utils.parametrizations.weight_norm(source, dim=1)
    with torch.no_grad():
        source.parametrizations.weight.original0.mul_(1.5)  # g no longer ||v||
    target: Any = nn.ConvTranspose1d(6, 6, 3)
    if form == "legacy":
        torch.nn.utils.weight_norm(target, dim=0)
    else:
        torch.nn.utils.parametrizations.weight_norm(target, dim=0)
    load_state_dict_any(target, source.state_dict())
    x = torch.randn(2, 6, 5)
    assert rel_error(target(x), source(x)) <= KEEP_RTOL
    g = target.weight_g if form == "legacy" else target.parametrizations.weight.original0
    assert g.shape == (6, 1, 1)
    assert (
        "0.weight" not in caplog.text
        and "weight: the checkpoint's g is (1, 6, 1), the model's (6, 1, 1)" in caplog.text
    )


def test_one_module_under_two_names_gets_weight_norm_put_back() -> None:
    """A module registered twice (``blocks[0] is blocks[2]``) is no tie between two modules:
    its pair was folded as it was loaded and left out of export's report."""
    block = nn.Linear(4, 4)
    source = nn.Sequential(block, nn.ReLU(), block)
    torch.nn.utils.parametrizations.weight_norm(block)
    state = source.state_dict()
    shared = nn.Linear(4, 4)
    target = nn.Sequential(shared, nn.ReLU(), shared)
    assert restore_weight_norm(target, state) == ["0.weight"]
    load_state_dict_any(target, state)
    assert rel_error(target(_x()[:, 0]), source(_x()[:, 0])) <= KEEP_RTOL


@pytest.mark.parametrize("dim", [0, 1, None])
def test_a_plain_checkpoint_loads_into_a_legacy_weight_norm_model(dim: int | None) -> None:
    """Split as PyTorch's legacy weight norm splits a weight (v = w, g = its norm): it was
    refused, "Missing 0.weight_g, 0.weight_v; Unexpected 0.weight", where the parametrize
    API's model took the same file."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(4, 3))
    x = torch.randn(2, 4)
    expected = plain(x)
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.warns(FutureWarning):
        nn.utils.weight_norm(model[0], dim=dim)  # type: ignore[arg-type]
    load_state_dict_any(model, plain.state_dict())
    assert rel_error(model(x), expected) < KEEP_RTOL
    torch.testing.assert_close(model[0].weight_v, plain[0].weight, rtol=0, atol=0)


def test_a_lazy_model_loads_a_state_dict_as_pytorch_loads_it() -> None:
    """A lazy layer's tensors have no shape until loaded: reading them raised a bare
    RuntimeError (t57), where PyTorch's own ``load_state_dict`` gives them the stored ones."""
    model = nn.Sequential(nn.LazyLinear(3))
    state = nn.Sequential(nn.Linear(4, 3)).state_dict()
    load_state_dict_any(model, state)
    assert torch.equal(model.get_parameter("0.weight"), state["0.weight"])


class _CellKeepingAList(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w_ih = nn.Parameter(torch.randn(6, 4))
        self.flat = [self.w_ih]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (w_ih,) = self.flat
        return torch.tanh(torch.nn.functional.linear(x, w_ih))


def test_a_weight_a_list_also_holds_keeps_its_tie_when_its_pair_is_loaded() -> None:
    """``export --checkpoint`` put weight norm back on a weight a list also held, by a tie
    rule of its own that counted modules only: the forward read the list's tensor (the pair's
    v), and the export, verified against that same model, was published with v for the
    weight (t56). The pair is folded as it is loaded, as for any tied weight."""
    model = _CellKeepingAList()
    v, g = torch.randn(6, 4), torch.rand(6, 1) + 0.5
    state = {"parametrizations.w_ih.original0": g, "parametrizations.w_ih.original1": v}
    assert restore_weight_norm(model, state) == []
    load_state_dict_any(model, state)
    weight = g * v / v.norm(dim=1, keepdim=True)
    assert torch.allclose(model.flat[0], weight) and model.flat[0] is model.w_ih


class _Gated(nn.Module):
    """Parameters of its own named ``weight_g`` (a gate) and ``weight_v``: no weight norm."""

    def __init__(self) -> None:
        super().__init__()
        self.weight_g = nn.Parameter(torch.rand(4, 1) + 0.5)
        self.weight_v = nn.Parameter(torch.randn(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight_v * self.weight_g)


def test_a_modules_own_weight_g_and_weight_v_are_no_stored_pair() -> None:
    """t344: train-rewrite --checkpoint said "1 weight-norm pair ... kept as stored" of a
    gate and a value matrix named like a legacy pair; one the model computes through a
    legacy hook is one."""
    from wnpass.fx.state import stored_pairs

    model = nn.Sequential(_Gated())
    assert stored_pairs(model, model.state_dict()) == ({}, [])
    normed = nn.Sequential(nn.utils.weight_norm(nn.Linear(3, 4)))  # the legacy hook
    pairs, _ = stored_pairs(normed, normed.state_dict())
    assert sorted(pairs) == ["0.weight_g", "0.weight_v"]
