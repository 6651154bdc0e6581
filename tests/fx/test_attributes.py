"""Attributes: a model's plain attributes given back after a forward of wnpass's own."""

from __future__ import annotations

import collections

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from wnpass.fx.attributes import Attributes


class _Stateful(nn.Module):
    """Keeps state of every kind a forward writes outside its parameters and buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.state: torch.Tensor | None = None
        self.frames = torch.zeros(2)
        self.initialized = False
        self.history: list[int] = [1]
        self.cache: dict[int, torch.Tensor] = {}
        self.seen: set[str] = set()
        self.window: collections.deque[int] = collections.deque([1, 2], maxlen=4)
        self.gen = torch.Generator().manual_seed(0)
        self.transposed = self.lin.weight.T  # a view of a weight: the weight's, not state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.state = x.detach()
        self.frames.add_(1)
        self.initialized = True
        self.history.append(2)
        self.cache[len(x)] = x
        self.seen.add("x")
        self.window.append(3)
        self.added = 1
        del self.transposed
        return self.lin(x) + torch.randn(3, generator=self.gen)


def test_every_kind_of_state_a_forward_writes_is_given_back() -> None:
    model = _Stateful()
    frames, history, cache, transposed = model.frames, model.history, model.cache, model.transposed
    draw = torch.randn(3, generator=torch.Generator().manual_seed(0))
    saved = Attributes(model)
    model(torch.ones(2, 3))
    saved.give_back()
    assert model.state is None and model.initialized is False and not hasattr(model, "added")
    assert model.frames is frames and frames.tolist() == [0.0, 0.0]
    assert model.history is history and history == [1]
    assert model.cache is cache and cache == {}
    assert model.seen == set() and list(model.window) == [1, 2]
    assert model.transposed is transposed
    assert torch.equal(torch.randn(3, generator=model.gen), draw)


def test_the_items_of_a_container_are_the_very_objects_it_held() -> None:
    """A cache's tensors are given back by identity, not copied."""
    model = _Stateful()
    kept = torch.ones(1)
    model.cache[0] = kept
    saved = Attributes(model)
    model.cache[0] = torch.zeros(1)
    saved.give_back()
    assert model.cache[0] is kept


def test_weights_and_pytorch_s_own_machinery_are_left_alone() -> None:
    """A view of a weight changed in place is the weight changing (data init), not state; an
    LSTM's flat weights are its cache; a lazy layer's first forward removes its hooks, and
    weight norm put on after the snapshot stays."""
    model = _Stateful()
    model.rnn = nn.LSTM(3, 3)
    model.lazy = nn.LazyLinear(2)
    saved = Attributes(model)
    with torch.no_grad():
        model.lin.weight.add_(1)  # seen through the transposed view too
    weight = model.lin.weight.detach().clone()
    model.rnn._flat_weights = []
    model.lazy(torch.ones(1, 3))
    weight_norm(model.lin)
    saved.give_back()
    assert torch.equal(model.transposed.T, weight)
    assert model.rnn._flat_weights == []
    assert isinstance(model.lazy, nn.Linear) and not hasattr(model.lazy, "_initialize_hook")
    assert hasattr(model.lin, "parametrizations")


class _BuildsOnFirstCall(nn.Module):
    """Keras-style: makes its head on the first call, behind a plain flag."""

    def __init__(self) -> None:
        super().__init__()
        self.built = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.built:
            self.head = nn.Linear(x.shape[-1], 2)
            self.built = True
        return self.head(x)


class _MyLazy(nn.LazyLinear):
    """A user's subclass of a lazy layer (its attributes are no PyTorch layer's)."""


class _Remakes(nn.Module):
    """Makes its activation again on every call, and keeps a state."""

    def __init__(self) -> None:
        super().__init__()
        self.act = nn.ReLU()
        self.state: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.act = nn.ReLU()
        self.state = x
        return self.act(x)


def test_a_module_the_forward_builds_keeps_its_attributes_and_the_others_are_given_back() -> None:
    """A flag given back beside the head it guards would make the next call build another
    head, which no optimizer made before it trains; a module beside it that built nothing gets
    its state back (t67: one module built made every other keep the example's state). A
    submodule made again under its name on every call builds nothing (t67: that stopped
    every give-back)."""
    model = nn.Sequential(_BuildsOnFirstCall(), _Remakes())
    saved = Attributes(model)
    model(torch.ones(1, 3))
    assert saved.give_back() == {id(model), id(model[0])}
    assert model[0].built and isinstance(model[0].head, nn.Linear)
    assert model[1].state is None


def test_a_lazy_layer_keeps_what_its_first_forward_set_and_the_rest_is_given_back() -> None:
    model = _Stateful()
    model.lazy = _MyLazy(2)
    saved = Attributes(model)
    model.lazy(torch.ones(1, 5))
    model(torch.ones(2, 3))
    assert saved.give_back() == set()
    assert model.lazy.in_features == 5 and model.state is None


def test_a_state_made_under_inference_mode_is_given_back_there() -> None:
    """Written back in place outside inference mode, it raised: exit 3 (t67)."""
    model = _Stateful()
    with torch.inference_mode():
        model.frames = torch.zeros(2)
    saved = Attributes(model)
    with torch.inference_mode():
        model.frames.add_(1)
    saved.give_back()
    assert model.frames.tolist() == [0.0, 0.0]
