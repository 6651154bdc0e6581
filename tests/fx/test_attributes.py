"""Attributes: a model's plain attributes given back after a forward of wnpass's own."""

from __future__ import annotations

import collections
import random
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from wnpass import apply_weight_norm
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


class _OwnRandom(nn.Module):
    """Noise from a random number generator of its own (held in a dict of lists)."""

    def __init__(self, rng: Any) -> None:
        super().__init__()
        self.lin, self.rngs = nn.Linear(4, 3), {"noise": [rng]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rng = self.rngs["noise"][0]
        if isinstance(rng, torch.Generator):
            noise = float(torch.rand((), generator=rng))
        elif isinstance(rng, np.random.RandomState):
            noise = float(rng.random_sample())
        else:  # random.Random, np.random.Generator
            noise = float(rng.random())
        return self.lin(x) + noise


_RNGS = {
    "torch": lambda: torch.Generator().manual_seed(0),
    "random": lambda: random.Random(0),
    "numpy": lambda: np.random.default_rng(0),
    "numpy-legacy": lambda: np.random.RandomState(0),
}


@pytest.mark.parametrize("kind", list(_RNGS))
def test_a_random_generator_of_the_model_s_own_gets_its_state_back(kind: str) -> None:
    """t195: a model's own random.Random or NumPy generator moved with each of wnpass's
    forwards (a torch.Generator did not): apply_weight_norm called the model not deterministic
    and left the generator moved."""
    x = torch.ones(1, 4)
    model = _OwnRandom(_RNGS[kind]())
    saved = Attributes(model)
    model(x)
    saved.give_back()
    twin = _OwnRandom(_RNGS[kind]())
    twin.lin = model.lin
    assert torch.equal(model(x), twin(x))
    model = _OwnRandom(_RNGS[kind]())
    report = apply_weight_norm(model, torch.randn(16, 4))
    assert report.equivalent and not report.not_deterministic
    twin = _OwnRandom(_RNGS[kind]())
    twin.lin = model.lin
    assert torch.equal(model(x), twin(x))


class _DrawsFromTorchsModule(nn.Module):
    """Noise from a generator put on one of PyTorch's own modules (an nn.Sequential)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.held = nn.Linear(4, 3), nn.Sequential()
        vars(self.held)["gen"] = torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gen = vars(self.held)["gen"]
        return self.lin(x) + float(torch.rand((), generator=gen))


def test_a_generator_one_of_pytorch_s_modules_holds_gets_its_state_back() -> None:
    """PyTorch's own modules' attributes are caches, not given back, and a generator put on
    one moved with each forward: the model was called not deterministic (t199)."""
    model, x = _DrawsFromTorchsModule(), torch.ones(1, 4)
    report = apply_weight_norm(model, torch.randn(16, 4))
    assert report.equivalent and not report.not_deterministic
    twin = _DrawsFromTorchsModule()
    twin.lin = model.lin
    assert torch.equal(model(x), twin(x))


def test_the_system_s_random_generator_is_no_state_to_give_back() -> None:
    """random.SystemRandom has no state to read (getstate raises): left as it is."""
    model = _OwnRandom(random.SystemRandom())
    saved = Attributes(model)
    model(torch.ones(1, 4))
    assert saved.give_back()


class _HeldInside(nn.Module):
    """A streaming state in a dict, a list of tensors in a tuple, a NumPy counter, a
    generator in a list: each written in place by the forward."""

    def __init__(self) -> None:
        super().__init__()
        self.state: dict[str, Any] = {
            "h": torch.zeros(4),
            "layers": [torch.zeros(2), {"c": torch.zeros(3)}],
        }
        self.pair = (torch.zeros(2), [torch.zeros(1)])
        self.seen = np.zeros(1)
        self.gens = [torch.Generator().manual_seed(0)]
        self.lin = nn.Linear(4, 4)
        self.views = {"w": self.lin.weight}  # a weight: given back as one, elsewhere

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.state["h"].add_(1)
        self.state["layers"][0].add_(1)
        self.state["layers"][1]["c"].sub_(1)
        self.state["layers"][1]["d"] = x
        self.pair[0].add_(1)
        self.pair[1][0].add_(1)
        self.pair[1].append(x)
        self.seen += 1
        torch.randn(1, generator=self.gens[0])
        return self.lin(x)


def test_what_containers_hold_is_given_back_values_and_all() -> None:
    """A tensor in a dict or list of a plain attribute, and a NumPy array, written in place,
    kept what the forward wrote: data init then fitted each layer to the state after five
    forwards and said "ok" (t125)."""
    model = _HeldInside()
    held = model.state["layers"][1]
    saved = Attributes(model)
    with torch.no_grad():
        model(torch.ones(2, 4))
        model.lin.weight.add_(1)  # a weight's values are not an attribute's to give back
    saved.give_back()
    assert model.state["h"].tolist() == [0.0] * 4 and model.state["layers"][0].tolist() == [0, 0]
    assert model.state["layers"][1] is held and held.keys() == {"c"}
    assert held["c"].tolist() == [0.0] * 3
    assert model.pair[0].tolist() == [0, 0] and len(model.pair[1]) == 1
    assert model.pair[1][0].tolist() == [0.0] and model.seen.tolist() == [0.0]
    assert torch.equal(
        torch.randn(1, generator=model.gens[0]),
        torch.randn(1, generator=torch.Generator().manual_seed(0)),
    )
    assert float(model.lin.weight.detach().min()) > 0.0  # +1 on weights of at most 0.5 stayed


class _Holder(nn.Module):
    """A model of the user's (PyTorch's own layers' attributes are not followed)."""

    views: list[np.ndarray]
    prompts: list[torch.Tensor]
    store: list[np.ndarray]


def test_a_numpy_view_of_a_weight_a_nested_tensor_and_a_memmap_are_no_state_to_copy(
    tmp_path: Any,
) -> None:
    """``self.bias_np = fc.bias.detach().numpy()`` (all of it, or a slice) was copied and
    written back over the bias data init had set, which still said ok; a nested tensor in a
    list raised an internal error reading its shape; a ``np.memmap`` was read in whole at
    every forward (t127)."""
    model = _Holder()
    model.fc = fc = nn.Linear(16, 4)
    model.views = [fc.bias.detach().numpy(), fc.weight.detach().numpy()[:2, :8]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the strided layout's "prototype stage" warning
        model.prompts = [torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)])]
    stored = np.lib.format.open_memmap(tmp_path / "m.npy", mode="w+", shape=(4,), dtype="f4")
    model.store = [stored]
    saved = Attributes(model)
    with torch.no_grad():
        fc.bias.fill_(7.0)  # as data init writes it
        fc.weight.fill_(3.0)
    stored[:] = 1.0
    saved.give_back()
    assert fc.bias.tolist() == [7.0] * 4 and float(fc.weight.detach().min()) == 3.0
    assert stored.tolist() == [1.0] * 4  # a file's, not copied


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


def test_the_settings_of_pytorch_s_own_layers_are_given_back() -> None:
    """A forward that anneals a BatchNorm's momentum or a Dropout's p left them so: after
    apply_weight_norm's training-mode forward, the model's training ran on other settings
    (t251: 9.1e-3 off after two steps). Numbers and flags are bound as they were; caches
    are not followed."""
    norm, dropout, rnn = nn.BatchNorm1d(3), nn.Dropout(0.25), nn.LSTM(3, 3)
    saved = Attributes(nn.Sequential(nn.Linear(3, 3), norm, dropout, rnn))
    norm.momentum, norm.track_running_stats, dropout.p = 0.05, False, 0.5
    rnn._flat_weights = []
    assert saved.give_back()
    assert (norm.momentum, norm.track_running_stats, dropout.p) == (0.1, True, 0.25)
    assert rnn._flat_weights == []


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


class _Wraps(nn.Module):
    """Wraps its layer on the first call, behind a plain flag."""

    def __init__(self) -> None:
        super().__init__()
        self.lin: nn.Module = nn.Linear(3, 3)
        self.wrapped = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.wrapped:
            self.lin = nn.Sequential(self.lin)
            self.wrapped = True
        return self.lin(x)


class _TapsAListedLayer(nn.Module):
    """Hooks, once, a layer it holds in a plain list (no submodule of its own)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layers = [layer]
        self.hooked = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.hooked:
            self.layers[0].register_forward_hook(lambda module, args, out: out + 1)
            self.hooked = True
        return x


@pytest.mark.parametrize("case", ["head", "wrap", "listed hook"])
def test_a_forward_that_builds_the_model_gives_no_attribute_back(case: str) -> None:
    """A flag given back beside what it guards (a head, a wrapper, a hook) makes the next call
    build it again: a second head no optimizer trains (t66), a layer wrapped four times, a
    layer hooked once more on every call, wherever the hooked layer is (t68)."""
    if case == "head":
        model: Any = nn.Sequential(_BuildsOnFirstCall(), _Remakes())
        flag = lambda: model[0].built  # noqa: E731
    elif case == "wrap":
        model = nn.Sequential(_Wraps(), _Remakes())
        flag = lambda: model[0].wrapped  # noqa: E731
    else:
        lin = nn.Linear(3, 3)
        model = nn.Sequential(lin, _TapsAListedLayer(lin), _Remakes())
        flag = lambda: model[1].hooked  # noqa: E731
    saved = Attributes(model)
    model(torch.ones(1, 3))
    assert saved.give_back() is False
    assert flag() and model[-1].state is not None


class _RewrapsItsParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.t = nn.Parameter(torch.ones(()))
        self.register_buffer("step", torch.zeros(()))

    step: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.step.add_(1)
        self.t = nn.Parameter(self.t.detach().clamp(min=0.5))
        return x / self.t


def test_a_forward_that_builds_the_model_is_warned_of_once_saying_what_it_built(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A parameter made again on every call: nothing can be given back (its step counter
    stayed at 5 after apply), which was logged at debug level only (t125)."""
    model = _RewrapsItsParameter()
    for _ in range(2):
        saved = Attributes(model)
        model(torch.ones(1))
        with caplog.at_level("WARNING", logger="wnpass.fx.attributes"):
            assert saved.give_back() is False
    (record,) = caplog.records
    assert record.getMessage().startswith(
        "the forward built the model further (the parameters of the model): its buffers"
    )


def test_a_submodule_without_state_made_again_builds_nothing() -> None:
    """An activation made again under its name on every call stopped every give-back (t67)."""
    model = _Remakes()
    saved = Attributes(model)
    model(torch.ones(1, 3))
    assert saved.give_back() is True and model.state is None


def test_a_lazy_layer_keeps_what_its_first_forward_set_and_the_rest_is_given_back() -> None:
    model = _Stateful()
    model.lazy = _MyLazy(2)
    saved = Attributes(model)
    model.lazy(torch.ones(1, 5))
    model(torch.ones(2, 3))
    assert saved.give_back() is True
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


class _Memory(nn.Module):
    """A submodule with no parameter or buffer, holding a state in a plain attribute."""

    def __init__(self, state: torch.Tensor | None = None) -> None:
        super().__init__()
        self.state = state


class _Remembers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mem = _Memory()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.mem = _Memory(x.detach())
        return x


def test_a_stateless_submodule_made_again_with_a_state_is_bound_back() -> None:
    """Made again with the example's state in it, it was kept: export's verification then
    called the model not deterministic (t69)."""
    model = _Remembers()
    mem = model.mem
    saved = Attributes(model)
    model(torch.ones(1, 3))
    assert saved.give_back() is True and model.mem is mem and mem.state is None


@pytest.mark.parametrize("layout", [torch.sparse_coo, torch.sparse_csr], ids=["coo", "csr"])
def test_sparse_tensors_are_told_apart_by_their_bytes(layout: torch.layout) -> None:
    """Sparse tensors had no bytes to compare ("reshape is not implemented for sparse
    tensors"): their indices and values are compared, -0.0 told from 0.0 as for others."""
    from wnpass.fx.attributes import same_bytes

    indices = torch.tensor([[0, 1, 2], [1, 2, 0]])

    def sparse(values: list[float]) -> torch.Tensor:
        made = torch.sparse_coo_tensor(indices, torch.tensor(values), (3, 3))
        return made if layout == torch.sparse_coo else made.to_sparse_csr()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: sparse CSR is beta
        assert same_bytes(sparse([1.0, 2.0, 0.0]), sparse([1.0, 2.0, 0.0]))
        assert not same_bytes(sparse([1.0, 2.0, 0.0]), sparse([1.0, 3.0, 0.0]))
        assert not same_bytes(sparse([1.0, 2.0, 0.0]), sparse([1.0, 2.0, -0.0]))
        assert not same_bytes(sparse([1.0, 2.0, 0.0]), sparse([1.0, 2.0, 0.0]).to_dense())
