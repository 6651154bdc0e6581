"""Weight-normed RNNs compute each weight once per forward; results match PyTorch's wrapping."""

from __future__ import annotations

import contextlib
import copy
import io
import pickle
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from wnpass import apply_weight_norm


def _count_norm_calls(lstm: Any, x: torch.Tensor) -> int:
    calls = [0]

    def hook(*_: object) -> None:
        calls[0] += 1

    handles = [p[0].register_forward_hook(hook) for p in lstm.parametrizations.values()]
    lstm(x)[0].sum().backward()
    for handle in handles:
        handle.remove()
    return calls[0]


def _models() -> tuple[Any, Any]:
    torch.manual_seed(0)
    hand = nn.LSTM(4, 8, num_layers=2)
    ours = copy.deepcopy(hand)
    for name in ("weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"):
        parametrizations.weight_norm(hand, name=name)
    apply_weight_norm(nn.Sequential(ours))
    return hand, ours


def test_each_weight_once_per_forward() -> None:
    """4 weight-norm forwards per LSTM forward with wnpass; PyTorch's wrapping runs more."""
    hand, ours = _models()
    x = torch.randn(5, 2, 4)
    assert _count_norm_calls(ours, x) == 4
    assert _count_norm_calls(hand, x) > 4  # 10 with torch 2.13


def test_same_outputs_and_gradients_as_pytorchs_wrapping() -> None:
    """The cache changes nothing numerically: outputs and gradients equal bit for bit."""
    hand, ours = _models()
    x = torch.randn(5, 2, 4)
    out_hand, out_ours = hand(x)[0], ours(x)[0]
    assert torch.equal(out_hand, out_ours)
    out_hand.square().sum().backward()
    out_ours.square().sum().backward()
    g_hand = hand.parametrizations.weight_hh_l1.original1.grad
    g_ours = ours.parametrizations.weight_hh_l1.original1.grad
    assert g_hand is not None and g_ours is not None and torch.equal(g_hand, g_ours)


def test_cache_is_left_off_after_an_error_and_survives_pickle() -> None:
    """A forward that raises does not leave caching on; the hooks pickle and deepcopy."""
    _, ours = _models()
    with contextlib.suppress(RuntimeError):
        ours(torch.randn(5, 2, 3))  # wrong input size
    assert torch.nn.utils.parametrize._cache_enabled == 0
    clone = pickle.loads(pickle.dumps(ours))
    x = torch.randn(5, 2, 4)
    assert _count_norm_calls(clone, x) == 4 and torch.equal(clone(x)[0], ours(x)[0])


class _LM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 8, num_layers=2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0])


def _hand_and_ours() -> tuple[Any, Any, torch.Tensor]:
    torch.manual_seed(0)
    ours, x = _LM().eval(), torch.randn(2, 5, 4)
    hand = copy.deepcopy(ours)
    for name in ("weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"):
        parametrizations.weight_norm(hand.lstm, name=name)
    parametrizations.weight_norm(hand.head)
    report = apply_weight_norm(ours, (x,))
    assert report.applied == 5
    return hand, ours, x


def _outcome(action: Callable[[], object]) -> str:
    try:
        action()
    except Exception as error:
        return f"raises {type(error).__name__}"
    return "works"


def test_tracing_and_exporters_work_as_for_a_hand_wrapped_lstm() -> None:
    """jit.trace, the TorchScript ONNX exporter and torch.export run on the rewritten LSTM (the
    cache hooks step aside, the cache is off afterwards), giving the eager outputs."""
    hand, ours, x = _hand_and_ours()
    expected = ours(x)
    traced = torch.jit.trace(ours, (x,))
    assert torch.allclose(traced(x), expected, rtol=1e-6, atol=1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and RNN warnings
        torch.onnx.export(ours, (x,), io.BytesIO(), dynamo=False)  # type: ignore[arg-type]
    program = torch.export.export(ours, (x,))
    assert torch.allclose(program.module()(x), expected, rtol=1e-6, atol=1e-7)
    assert torch.nn.utils.parametrize._cache_enabled == 0
    assert _count_norm_calls(ours.lstm, x) == 4  # eager again: each weight once
    # scripting: whatever PyTorch does with a hand-wrapped model (today: it refuses
    # parametrized modules), the rewritten one does too
    assert _outcome(lambda: torch.jit.script(ours)) == _outcome(lambda: torch.jit.script(hand))


def _spectral_norm_runs(lstm: Any, x: torch.Tensor) -> int:
    """How often a training forward of ``lstm`` runs the spectral norm on ``weight_hh_l0``."""
    calls = [0]

    def hook(*_: object) -> None:
        calls[0] += 1

    handle = lstm.parametrizations.weight_hh_l0[0].register_forward_hook(hook)
    lstm.train()(x)
    handle.remove()
    return calls[0]


def test_another_parametrization_on_the_rnn_computes_as_often_as_without_wnpass() -> None:
    """The cache is PyTorch's for every parametrization of the module: a spectral norm on
    another weight, reported left alone, ran its power iteration once per training forward
    instead of on each read, and its state drifted from the same weight norm put on by hand
    (t65)."""

    def build() -> Any:  # not a deep copy: that shares the parametrized class
        torch.manual_seed(0)
        return parametrizations.spectral_norm(nn.LSTM(4, 8), "weight_hh_l0")

    hand, ours = build(), build()
    parametrizations.weight_norm(hand, "weight_ih_l0")
    report = apply_weight_norm(nn.Sequential(ours), include="0.weight_ih_l0")
    assert [site.name for site in report.sites if site.status == "applied"] == ["0.weight_ih_l0"]
    x = torch.randn(5, 2, 4)
    for _ in range(2):
        assert _spectral_norm_runs(hand, x) == _spectral_norm_runs(ours, x) > 1
    u = [lstm.parametrizations.weight_hh_l0[0]._u for lstm in (hand, ours)]
    assert torch.equal(*u)


class _Siamese(nn.Module):
    """One encoder applied to two inputs: the RNN runs twice in one forward."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.enc, self.head = rnn, nn.Linear(6, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(a)[0][:, -1] - self.enc(b)[0][:, -1])


@pytest.mark.parametrize("mode", ["train", "eval", "no_grad"])
@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
def test_an_rnn_called_twice_in_the_callers_cached_scope(cls: Any, mode: str) -> None:
    """Inside the caller's ``parametrize.cached()`` the second call got the first call's cached
    weights back, still referenced, so RNNBase did not rebuild the flat weights the hook had
    dropped and read ``None``: AttributeError (t157). Now outputs and gradients equal those of
    PyTorch's wrapping bit for bit, two steps apart, and the model deep-copies after the scope."""
    x = (torch.randn(3, 5, 8), torch.randn(3, 5, 8))
    models = []
    for hand in (True, False):
        torch.manual_seed(0)
        model = _Siamese(cls(8, 6, batch_first=True)).train(mode == "train")
        if hand:
            for name in ("weight_ih_l0", "weight_hh_l0"):
                parametrizations.weight_norm(model.enc, name)
            parametrizations.weight_norm(model.head)
        else:
            assert apply_weight_norm(model, x).applied == 3
        models.append(model)
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in models]
    for _ in range(2):  # the second step reads the weights the first one changed
        results: list[tuple[torch.Tensor, list[Any]]] = []
        for model, optimizer in zip(models, optimizers, strict=True):
            optimizer.zero_grad()
            with torch.nn.utils.parametrize.cached():
                if mode == "no_grad":
                    with torch.no_grad():
                        results.append((model(*x), []))
                    continue
                out = model(*x)
                out.pow(2).mean().backward()
            results.append((out.detach(), [p.grad for p in model.parameters()]))
            optimizer.step()
        (out_hand, grads_hand), (out_ours, grads_ours) = results
        assert torch.equal(out_hand, out_ours)
        assert all(torch.equal(g, h) for g, h in zip(grads_hand, grads_ours, strict=True))
    assert torch.nn.utils.parametrize._cache_enabled == 0
    copy.deepcopy(models[1])
