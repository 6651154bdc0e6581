"""Arguments of the PyTorch-side API: a bad one is a WnpassError naming it, before any work."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from wnpass import apply_weight_norm, data_init, fold_weight_norm
from wnpass.errors import InvalidArgumentError, UsageError, WnpassError
from wnpass.fx.analyse import analyse_sites


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))


X = (torch.randn(2, 8),)
BAD: Any = "bogus"


NUMPY_RNG = np.random.default_rng(0)  # a generator of another library (t189)


@pytest.mark.parametrize(
    ("call", "parameter", "message"),
    [
        (lambda: apply_weight_norm(_mlp(), X, init=BAD), "init", "one of 'keep', 'data'"),
        (lambda: apply_weight_norm(_mlp(), X, dim_policy=BAD), "dim_policy", "'unit', 'torch'"),
        (lambda: apply_weight_norm(_mlp(), X, tracer=BAD), "tracer", "'observe', 'static'"),
        (lambda: apply_weight_norm(_mlp(), X, include=123), "include", "a name pattern"),  # type: ignore[arg-type]
        (lambda: apply_weight_norm(_mlp(), X, exclude=[int]), "exclude", "a torch.nn.Module class"),  # type: ignore[list-item]
        (lambda: apply_weight_norm(_mlp(), 5), "example_inputs", "not int"),
        (lambda: apply_weight_norm(BAD, X), "model", "a torch.nn.Module, not str"),
        (lambda: fold_weight_norm(BAD), "model", "a torch.nn.Module, not str"),
        (lambda: data_init(_mlp(), 5), "batch", "not int"),
        (lambda: data_init(_mlp(), X, std=float("nan")), "std", "from 1e-06 to 1e+06, not nan"),
        (lambda: data_init(_mlp(), X, std=0), "std", "to 1e+06, not 0"),
        (lambda: data_init(_mlp(), X, std=BAD), "std", "to 1e+06, not 'bogus'"),
        (lambda: data_init(_mlp(), X, std=1e-25), "std", "to 1e+06, not 1e-25"),  # squares: 0
        (lambda: data_init(_mlp(), X, std=Decimal("0.05")), "std", "an int or a float"),  # type: ignore[arg-type]
        (lambda: data_init(_mlp(), X, std=torch.tensor(0.05)), "std", "not tensor(0.0500)"),  # type: ignore[arg-type]
        (lambda: data_init(_mlp(), X, std=1e25), "std", "to 1e+06, not 1e+25"),  # squares: Inf
        (lambda: data_init(_mlp(), X, std=10**400), "std", "not 1" + "0" * 36 + "..."),
        (lambda: data_init(_mlp(), X, generator=5), "generator", "or None, not int"),  # type: ignore[arg-type]
        (lambda: data_init(_mlp(), X, generator=NUMPY_RNG), "generator", "not numpy.Generator"),  # type: ignore[arg-type]
        (lambda: data_init(_mlp(), X, only="0.weight"), "only", "a collection of names"),
        (lambda: data_init(_mlp(), X, only=[0]), "only", "names (strings) only"),  # type: ignore[list-item]
        (lambda: data_init(_mlp(), X, rescale=BAD), "rescale", "True or False, not 'bogus'"),
        (lambda: data_init(_mlp(), X, redraw=1), "redraw", "True or False, not 1"),  # type: ignore[arg-type]
        (lambda: apply_weight_norm(_mlp(), X, rescale=BAD), "rescale", "True or False"),
        (lambda: apply_weight_norm(_mlp(), X, mean_only_bn=BAD), "mean_only_bn", "True or False"),
    ],
)  # fmt: skip
def test_a_bad_argument_is_an_error_naming_it(
    call: Callable[[], object], parameter: str, message: str
) -> None:
    """They were ValueError, TypeError or AttributeError; README promises WnpassErrors."""
    with pytest.raises(InvalidArgumentError) as caught:
        call()
    assert caught.value.parameter == parameter and message in str(caught.value)


def test_a_lazy_layer_without_example_inputs_is_refused_up_front() -> None:
    """Read by module types only, a LazyLinear's uninitialized weight raised torch's own
    RuntimeError ("Can't access the shape of an uninitialized parameter"); with example
    inputs the forward gives it its shape."""
    model = nn.Sequential(nn.LazyLinear(6), nn.ReLU(), nn.Linear(6, 3))
    with pytest.raises(InvalidArgumentError) as caught:
        apply_weight_norm(model)
    assert caught.value.parameter is None
    assert str(caught.value) == (
        "Sequential: lazy parameters not initialized yet (0.weight, 0.bias): pass example "
        "inputs, or run the model once first"
    )
    assert apply_weight_norm(model, X).applied == 2


def test_an_analysis_refuses_what_apply_refuses() -> None:
    """``inspect`` planned weight norm for a model on the meta device, which ``train-rewrite``
    refuses, and crashed on a lazy layer (``p.dim()`` of an uninitialized parameter, exit 3)
    where ``train-rewrite`` gave its one line (t54)."""
    with torch.device("meta"):
        meta = _mlp()
    with pytest.raises(InvalidArgumentError, match=r"^Sequential: parameters on the meta device"):
        analyse_sites(meta)
    lazy = nn.Sequential(nn.LazyLinear(6), nn.ReLU(), nn.Linear(6, 3))
    with pytest.raises(InvalidArgumentError, match=r"^Sequential: lazy parameters not initial"):
        analyse_sites(lazy)
    sites, _, _ = analyse_sites(lazy, X)  # the inputs give the lazy layer its shape
    assert [s.name for s in sites if s.status == "planned"] == ["0.weight", "2.weight"]
    assert lazy[0].weight.shape == (6, 8)


def test_a_model_wrapped_for_distributed_training_is_refused_with_the_way_round() -> None:
    """A DistributedDataParallel wrapper holds its module's parameters in a list too: weight
    norm on the module left it stepping the old tensors; its reason named a tie, not the way
    round (t57)."""
    wrapper = nn.parallel.DistributedDataParallel.__new__(nn.parallel.DistributedDataParallel)
    nn.Module.__init__(wrapper)  # no process group: the type is what the check reads
    wrapper.module = _mlp()
    for call in (lambda: analyse_sites(wrapper, X), lambda: apply_weight_norm(wrapper, X)):
        with pytest.raises(InvalidArgumentError) as caught:
            call()
        assert str(caught.value) == (
            "DistributedDataParallel: a distributed wrapper holds the module's weights too: "
            "apply weight norm to the module it wraps (its .module), then wrap it"
        )


def test_data_init_without_a_batch_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"init='data' needs a batch"):
        apply_weight_norm(_mlp(), None, init="data")


@pytest.mark.parametrize(
    "call",
    [
        lambda model: apply_weight_norm(model, (torch.randn(2, 8, device="meta"),)),
        lambda model: data_init(model, torch.randn(2, 8, device="meta")),
        fold_weight_norm,
    ],
)
def test_a_model_on_the_meta_device_is_refused_up_front(call: Callable[[Any], object]) -> None:
    """Meta tensors hold no values: refused before an op fails inside PyTorch (aten::equal
    raised NotImplementedError)."""
    with torch.device("meta"):
        model = _mlp()
    with pytest.raises(WnpassError) as caught:
        call(model)
    assert caught.value.parameter is None
    assert str(caught.value) == (
        "Sequential: parameters on the meta device hold no values "
        "(0.weight, 0.bias, 2.weight and 1 more): load or materialize them first"
    )


def test_a_meta_buffer_is_named_a_buffer() -> None:
    """It was called a parameter (t226)."""
    model = _mlp()
    model.register_buffer("placeholder", torch.empty(3, device="meta"))
    with pytest.raises(WnpassError, match=r"^Sequential: buffers on the meta device hold no "):
        fold_weight_norm(model)


def test_under_inference_mode_a_model_gets_weight_norm_for_training() -> None:
    """``apply_weight_norm`` under ``torch.inference_mode()`` raised torch's "Inference
    tensors do not track version counter" (t140). Its g and v are made outside inference
    mode, and train; a model whose own parameters were made under it is refused in one line,
    by apply, data init and an analysis."""
    model = _mlp()
    with torch.inference_mode():
        report = apply_weight_norm(model, X, init="data")
        assert data_init(model, torch.randn(4, 8)).initialized == ["0.weight", "2.weight"]
    assert report and report.initialized == 2
    assert not any(p.is_inference() for p in model.parameters())
    model(torch.randn(2, 8)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.inference_mode():
        made = _mlp()
        window = torch.hann_window(8)
    model = _mlp()
    model.register_buffer("window", window)  # a buffer may be one: training reads it
    assert apply_weight_norm(model, X, init="data") and data_init(model, X).initialized
    for call in (
        lambda: apply_weight_norm(made, X),
        lambda: data_init(made, X),
        lambda: analyse_sites(made, X),
    ):
        with pytest.raises(InvalidArgumentError) as caught:
            call()
        assert str(caught.value) == (
            "Sequential: parameters made under torch.inference_mode() cannot be trained "
            "(0.weight, 0.bias, 2.weight and 1 more): build or load the model outside "
            "inference mode"
        )
