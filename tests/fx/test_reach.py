"""Which weight norms the model's forward reaches, and the parameter given back where it does
not (``wnpass.fx.reach``)."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from wnpass.fx.forward import Batch
from wnpass.fx.reach import NOT_COMPUTED, OLD_READ, WRITES_PAIR, give_back_unreached
from wnpass.fx.register import register_weight_norm


class _Closure(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin, self.head = nn.Linear(4, 4), nn.Linear(4, 2)
        weight = self.lin.weight
        self.project = lambda x: F.linear(x, weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.project(x))


def test_a_weight_norm_the_forward_does_not_reach_is_taken_off_again() -> None:
    model = _Closure()
    originals = {
        "lin.weight": model.lin.get_parameter("weight"),
        "head.weight": model.head.get_parameter("weight"),
    }
    register_weight_norm(model.lin, "weight", 0)
    register_weight_norm(model.head, "weight", 0)
    given_back = give_back_unreached(model, Batch((torch.randn(3, 4),)), originals)
    assert given_back == {"lin.weight": OLD_READ}
    assert model.lin.weight is originals["lin.weight"] and not parametrize.is_parametrized(
        model.lin
    )
    assert [name for name, _ in model.lin.named_parameters()] == ["weight", "bias"]
    assert parametrize.is_parametrized(model.head, "weight")


class _NeedsTargets(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise ValueError("targets are needed to train")
        return self.lin(x)


def test_a_forward_that_fails_in_one_mode_is_read_in_the_other() -> None:
    """A model whose training forward wants targets: the eval forward alone decides."""
    model = _NeedsTargets()
    original = model.lin.get_parameter("weight")
    register_weight_norm(model.lin, "weight", 0)
    assert give_back_unreached(model, Batch((torch.randn(2, 4),)), {"lin.weight": original}) == {}
    assert parametrize.is_parametrized(model.lin, "weight")


class _InitializesOnItsFirstTrainingBatch(nn.Module):
    """ActNorm-like: its first training forward sets ``loc`` from the batch, and a plain
    attribute says it did."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.loc = nn.Parameter(torch.zeros(4))
        self.initialized = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        if self.training and not self.initialized:
            with torch.no_grad():
                self.loc.copy_(-y.mean(0))
            self.initialized = True
        return y + self.loc


def test_the_training_forward_leaves_the_model_as_it_was() -> None:
    """It ran on the model itself: an export was published with the batch's ``loc`` for the
    checkpoint's, and a plain flag said the model was initialized (t61)."""
    model = _InitializesOnItsFirstTrainingBatch()
    original = model.lin.get_parameter("weight")
    register_weight_norm(model.lin, "weight", 0)
    assert give_back_unreached(model, Batch((torch.randn(3, 4),)), {"lin.weight": original}) == {}
    assert torch.equal(model.loc, torch.zeros(4)) and not model.initialized


class _RegularizesItsParameters(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtypes = {p.dtype for p in self.parameters()}
        penalty = sum(p.pow(2).sum() for p in self.parameters()) if self.training else 0
        assert dtypes == {torch.float32}
        return self.lin(x) + 1e-3 * penalty


def test_reading_a_weight_norm_s_own_v_is_no_read_of_the_old_weight() -> None:
    """``v`` shares the old weight's elements: an L2 term over the parameters (or reading
    their dtype) counted as reading the old tensor, and the weight was given back (t61)."""
    model = _RegularizesItsParameters()
    original = model.lin.get_parameter("weight")
    register_weight_norm(model.lin, "weight", 0)
    assert give_back_unreached(model, Batch((torch.randn(3, 4),)), {"lin.weight": original}) == {}


class _Swapped(nn.Module):
    """Runs its layer with a weight of its own too, through torch.func.functional_call."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(16, 32)
        self.alt = nn.Parameter(torch.randn(32, 16) * 0.2)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = self.get_buffer("steps")
        steps += 1
        swapped = torch.func.functional_call(self.inner, {"weight": self.alt}, (x,))
        return self.inner(x) + swapped + 1e-3 * steps


def test_a_weight_norm_whose_g_and_v_the_forward_writes_is_taken_off_again() -> None:
    """functional_call sets the parametrized weight to ``alt``: the parametrization writes
    alt's norm and direction into g and v, at every call. The site was applied, "ok", and
    the first backward failed on g and v written in place (t240)."""
    from wnpass import apply_weight_norm

    torch.manual_seed(0)
    model, x = _Swapped(), torch.randn(4, 16)
    weight = model.inner.weight
    report = apply_weight_norm(model, (x,))
    sites = {site.name: site for site in report.sites}
    assert (sites["inner.weight"].status, sites["inner.weight"].reason) == ("skipped", WRITES_PAIR)
    assert model.inner.weight is weight and not parametrize.is_parametrized(model.inner)
    assert sites["alt"].status == "applied" and report.equivalent
    # the rest of the state comes back (t243: the count stayed moved by wnpass's forwards,
    # and the outputs compared differed by it)
    assert int(model.get_buffer("steps")) == 0
    model.train()
    model(x).square().mean().backward()  # it raised "modified by an inplace operation"
    assert model.get_parameter("parametrizations.alt.original1").grad is not None


class _Streaming(nn.Module):
    """Refuses a second call without ``reset()``, as a streaming model does; its first layer
    is called through a ``functools.partial`` made in ``__init__`` (the old weight held), or
    its weight cached on its first call (``cached``)."""

    def __init__(self, cached: bool) -> None:
        super().__init__()
        self.lin, self.out = nn.Linear(4, 8), nn.Linear(8, 2)
        self.project = functools.partial(F.linear, weight=self.lin.weight)
        self.cached = cached
        self.cache: torch.Tensor | None = None
        self.started = False

    def reset(self) -> None:
        self.started = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.started:
            raise RuntimeError("stream already started: call reset() first")
        self.started = True
        if not self.cached:
            return self.out(self.project(x))
        if self.cache is None:
            self.cache = self.lin.weight.t()
        cache: torch.Tensor = self.cache
        return self.out(x @ cache)


@pytest.mark.parametrize(("cached", "why"), [(False, OLD_READ), (True, NOT_COMPUTED)])
def test_a_model_that_refuses_a_second_call_is_read_on_a_second_call_all_the_same(
    cached: bool, why: str
) -> None:
    """t344: the second forward failed on the first one's flag, the check was skipped (an
    info line), and a layer that would never train was "applied", "ok". Both forwards run
    again with the attributes that hold no tensor given back between them (the flag, not the
    cache); the model's state afterwards is as it was."""
    model = _Streaming(cached)
    originals = {name: model.get_submodule(name[:-7]).get_parameter("weight")
                 for name in ("lin.weight", "out.weight")}  # fmt: skip
    register_weight_norm(model.lin, "weight", 0)
    register_weight_norm(model.out, "weight", 0)
    given_back = give_back_unreached(model, Batch((torch.randn(3, 4),)), originals)
    assert given_back == {"lin.weight": why}
    assert model.lin.weight is originals["lin.weight"]
    assert parametrize.is_parametrized(model.out, "weight")
    assert not model.started and model.cache is None
