"""Data-dependent init: every weight-normed layer starts at mean 0, std 1 per unit on the batch."""

from __future__ import annotations

import contextlib
import random
import warnings
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from tests.fx.helpers import plain, rel_error
from wnpass import apply_weight_norm, data_init
from wnpass.errors import InvalidArgumentError
from wnpass.fx import data_init as data_init_module
from wnpass.fx.forward import ForwardFailedError

# data init computes mu and sigma in float64 from float32 outputs; the layer then recomputes its
# output in float32, so the normalized pre-activations are exact up to float32 rounding of sums
# over the batch: 1e-4 is ~100x that, and an unnormalized layer is off by order 1.
STAT_ATOL = 1e-4


_LAYERS = nn.Linear | nn.Conv1d | nn.Conv2d | nn.ConvTranspose1d


def _pre_activations(model: nn.Module, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each layer's pre-activation in a forward of the model: its op's output, on the input
    the model gives the layer (the ``torch.nn`` class's own forward: what a subclass does
    after it, an activation or a reshape, left out)."""
    outputs: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: tuple[Any, ...], name: str) -> None:
        base: Any = next(
            c for c in type(module).__mro__ if c.__module__.startswith("torch.nn.modules")
        )
        outputs[name] = base.forward(module, *args)

    handles = [
        module.register_forward_pre_hook(lambda m, a, n=name: hook(m, a, n))
        for name, module in model.named_modules()
        if isinstance(module, _LAYERS)
    ]
    with torch.no_grad():
        model.eval()(*inputs)
    for handle in handles:
        handle.remove()
    return outputs


def _check_normalized(
    outputs: dict[str, torch.Tensor],
    scale_only: frozenset[str] = frozenset(),
    unit_axis: int | None = None,
) -> None:
    """Per unit (``unit_axis``; default: a batched layer's, Linear's last axis or channels at
    1), mean ~0 (unless the layer has no bias) and standard deviation ~1 over all other axes."""
    for name, out in outputs.items():
        axis = unit_axis if unit_axis is not None else (-1 if out.dim() == 2 else 1)
        dims = [d for d in range(out.dim()) if d != axis % out.dim()]
        mean, std = out.mean(dim=dims), out.std(dim=dims, unbiased=False)
        if name not in scale_only:  # without a bias only the scale can be set
            assert torch.allclose(mean, torch.zeros_like(mean), atol=STAT_ATOL), name
        assert torch.allclose(std, torch.ones_like(std), atol=STAT_ATOL), name


def test_every_layer_of_a_resnet_is_normalized_in_forward_order() -> None:
    """ResNet convs and head: per-unit mean ~0, std ~1 on the init batch (BN after convs)."""
    model, _ = plain("resnet")
    batch = 16 * torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    report = apply_weight_norm(model, (batch,), init="data")
    inits = {s.name: s.init or "" for s in report.sites if s.status == "applied"}
    assert inits["head.weight"] == "data, v rescaled"
    scale_only = {n.removesuffix(".weight") for n, init in inits.items() if "scale only" in init}
    assert len(scale_only) == len(inits) - 1  # the convs have no bias (BatchNorm follows)
    _check_normalized(_pre_activations(model, batch), frozenset(scale_only))


def test_not_initialized_model_is_not_normalized() -> None:
    """Negative case: the same check fails on the plain model."""
    model, _ = plain("mlp")
    batch = 16 * torch.rand(64, 64, generator=torch.Generator().manual_seed(0))
    outputs = _pre_activations(model, batch)
    try:
        _check_normalized(outputs)
    except AssertionError:
        return
    raise AssertionError("a plain model passed the normalization check")


def test_rescale_sets_norm_v_to_g_and_keeps_outputs() -> None:
    """rescale=True: ||v|| = g per unit, and outputs equal the unrescaled init's."""
    batch = torch.randn(32, 5, generator=torch.Generator().manual_seed(0))
    models: list[Any] = []
    for rescale in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
        apply_weight_norm(model)
        data_init(model, batch, rescale=rescale, generator=torch.Generator().manual_seed(1))
        models.append(model)
    first = models[1][0].parametrizations.weight
    norms = torch.linalg.vector_norm(first.original1, dim=1, keepdim=True)
    assert torch.allclose(norms, first.original0, rtol=1e-5)
    unscaled = models[0][0].parametrizations.weight
    ratio = unscaled.original0 / torch.linalg.vector_norm(unscaled.original1, dim=1, keepdim=True)
    assert float(ratio.detach().max()) > 2  # without the rescale g/||v|| is far from 1
    with torch.no_grad():
        assert rel_error(models[1](batch), models[0](batch)) < 1e-5


def test_standalone_on_pytorch_weight_norm_and_reasons_for_the_rest() -> None:
    """data_init works on layers normed by PyTorch's API; dim=0 ConvTranspose is kept."""
    model = nn.Sequential(
        parametrizations.weight_norm(nn.Conv1d(2, 4, 3)),
        parametrizations.weight_norm(nn.ConvTranspose1d(4, 3, 3), dim=0),
    )
    report = data_init(model, torch.randn(16, 2, 10))
    assert report.initialized == ["0.weight"]
    assert "not per output unit" in report.kept["1.weight"]


def test_kept_v_with_an_all_zero_unit_is_not_initialized() -> None:
    """redraw=False keeps v: a unit of v that is all zero has no direction (0/0), so the layer
    keeps its values with the reason instead of getting g = NaN; redrawn, v is fine."""
    torch.manual_seed(0)
    layer = parametrizations.weight_norm(nn.Linear(4, 3))
    with torch.no_grad():
        layer.parametrizations.weight.original1[1] = 0.0
    g = layer.parametrizations.weight.original0.detach().clone()
    report = data_init(nn.Sequential(layer), torch.randn(16, 4), redraw=False)
    assert (
        report.initialized == [] and "all-zero output units (unit 1 of 3" in report.kept["0.weight"]
    )
    assert torch.equal(layer.parametrizations.weight.original0, g)
    report = data_init(nn.Sequential(layer), torch.randn(16, 4))
    assert report.initialized == ["0.weight"]
    assert bool(layer.parametrizations.weight.original0.isfinite().all())


def test_a_depthwise_conv_transpose_is_initialized_per_output_channel() -> None:
    """ConvTranspose1d(C, C, k, groups=C): g per axis 0 is per output channel, so data init
    normalizes each output channel."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ConvTranspose1d(4, 4, 4, stride=2, groups=4))
    batch = torch.randn(32, 2, 12)
    report = apply_weight_norm(model, (batch,), init="data")
    sites = {site.name: site for site in report.sites}
    assert (sites["1.weight"].axis, sites["1.weight"].init) == (0, "data, v rescaled")
    _check_normalized(_pre_activations(model, batch))


NAN = float("nan")


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (torch.full((4, 8), NAN), "gives layer 0 (Linear) pre-activations that are NaN or Inf"),
        (torch.randn(0, 8), "gives layer 0 (Linear) 0 values per output unit"),
        (  # the advice holds where a router sends the layer one token of two (t186)
            torch.randn(1, 8),
            "gives layer 0 (Linear) 1 value per output unit (over the batch and positions); "
            "each unit's mean and standard deviation need at least 2: give a batch that "
            "brings it more (more examples; where the forward routes part of the batch to it, "
            "as to an expert, a larger or more varied one), or leave the layer out",
        ),
    ],
)
def test_a_batch_without_statistics_is_refused_naming_the_layer(
    batch: torch.Tensor, message: str
) -> None:
    """NaN, empty or one-row batches gave NaN or 1/DATA_INIT_EPS for every g, silently: now
    an error about the batch naming the layer (apply_weight_norm calls it example_inputs)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    with pytest.raises(InvalidArgumentError) as caught:
        apply_weight_norm(model, (batch,), init="data")
    assert caught.value.parameter == "example_inputs" and message in str(caught.value)
    apply_weight_norm(model)  # the refused call left none
    with pytest.raises(InvalidArgumentError) as caught:
        data_init(model, batch)
    assert caught.value.parameter == "batch" and message in str(caught.value)


def test_one_example_with_positions_is_enough_for_a_conv() -> None:
    """A conv's statistics run over the batch and positions: one example of 10 steps has 8
    values per unit (kernel 3), so it is initialized, not refused."""
    model = parametrizations.weight_norm(nn.Conv1d(2, 4, 3))
    report = data_init(nn.Sequential(model), torch.randn(1, 2, 10))
    assert report.initialized == ["0.weight"]
    assert bool(torch.isfinite(model.parametrizations.weight.original0).all())


def _conv_then_linear(mean_only_bn: bool = False) -> nn.Sequential:
    """A conv (statistics over positions: one example is enough) before a Linear (one example
    gives it 1 value per unit): one example fails at the Linear, after the conv's init."""
    torch.manual_seed(0)
    norm: nn.Module = nn.BatchNorm2d(4) if mean_only_bn else nn.Identity()
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), norm, nn.ReLU(), nn.Dropout(0.1), nn.Flatten(), nn.Linear(144, 3)
    )
    model.train()
    model[3].eval()  # mixed flags: each must come back as it was
    model[0].bias.requires_grad_(False)
    return model


def _state(model: nn.Module) -> dict[str, Any]:
    """Everything a refused call must leave as it was."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modules": [(name, m, type(m), sorted(vars(m))) for name, m in model.named_modules()],
        "parameters": [(n, p, p.requires_grad) for n, p in model.named_parameters()],
        "training": [m.training for m in model.modules()],
    }


def _assert_as_before(model: nn.Module, before: dict[str, Any]) -> None:
    after = _state(model)
    assert list(after["state"]) == list(before["state"])
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key
    assert after["modules"] == before["modules"]  # no submodule replaced, no class swapped
    assert after["parameters"] == before["parameters"]  # the same objects, requires_grad too
    assert after["training"] == before["training"]
    assert not any(parametrize.is_parametrized(m) for m in model.modules())


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    training = [m.training for m in model.modules()]
    with torch.no_grad():
        out = model.eval()(x)
    for module, flag in zip(model.modules(), training, strict=True):
        module.training = flag
    return out


@pytest.mark.parametrize("mean_only_bn", [False, True], ids=["plain", "mean-only-bn"])
def test_a_refused_apply_leaves_the_model_as_it_was(mean_only_bn: bool) -> None:
    """apply_weight_norm(init="data") registered weight norm, (here) replaced BatchNorm and
    initialized the conv before the Linear refused the batch: the model stayed changed (its
    outputs off by order 1). Now every change of the call is undone."""
    model, x = _conv_then_linear(mean_only_bn), torch.randn(5, 1, 8, 8)
    before, expected = _state(model), _outputs(model, x)
    with pytest.raises(InvalidArgumentError, match=r"layer 5 \(Linear\) 1 value per output"):
        apply_weight_norm(model, torch.randn(1, 1, 8, 8), init="data", mean_only_bn=mean_only_bn)
    _assert_as_before(model, before)
    assert torch.equal(_outputs(model, x), expected)
    apply_weight_norm(model, x, init="data", mean_only_bn=mean_only_bn)  # still works after


def test_a_refused_data_init_leaves_the_weights_as_they_were() -> None:
    """data_init redrew v, reset g and b and initialized the conv before the Linear refused
    the batch: every g, v and bias it wrote gets its value back."""
    model, x = _conv_then_linear(), torch.randn(5, 1, 8, 8)
    apply_weight_norm(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    parameters = [(n, p, p.requires_grad) for n, p in model.named_parameters()]
    training, expected = [m.training for m in model.modules()], _outputs(model, x)
    with pytest.raises(InvalidArgumentError, match=r"layer 5 \(Linear\) 1 value per output"):
        data_init(model, torch.randn(1, 1, 8, 8))
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert [(n, p, p.requires_grad) for n, p in model.named_parameters()] == parameters
    assert [m.training for m in model.modules()] == training
    assert torch.equal(_outputs(model, x), expected)


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (lambda: nn.Conv1d(3, 4, 3), (3, 6)),  # output 4x4: the old axis 1 was the wrong 4
        (lambda: nn.Conv1d(3, 4, 3), (3, 10)),  # output 4x8: the old axis 1 raised
        (lambda: nn.Conv2d(3, 4, 3), (3, 5, 6)),
        (lambda: nn.ConvTranspose1d(3, 4, 3), (3, 5)),
    ],
    ids=["conv1d-4x4", "conv1d-4x8", "conv2d", "conv-transpose1d"],
)
def test_an_unbatched_conv_is_normalized_per_channel(layer: Any, shape: tuple[int, ...]) -> None:
    """An unbatched input (C, L) / (C, H, W) gives an output with channels at axis 0: the
    statistics are per channel over every other axis (the batched axis 1 was used)."""
    torch.manual_seed(0)
    model = nn.Sequential(layer())
    x = 3 * torch.randn(shape) + 1
    report = apply_weight_norm(model, (x,), init="data")
    assert [s.init for s in report.sites if s.status == "applied"] == ["data, v rescaled"]
    _check_normalized(_pre_activations(model, x), unit_axis=0)


class _Flattened(nn.Conv1d):
    """A conv whose output is reshaped: its module output has no channel axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).flatten()


class _FlattenedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head, self.unused = _Flattened(2, 4, 3), nn.Linear(32, 3), nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).reshape(len(x), 32))


def test_a_layer_that_reshapes_its_output_is_initialized_on_its_ops_output() -> None:
    """A conv whose forward flattens its output was declined (no channel axis in the module's
    output): its pre-activation is its convolution's output, (N, C, L), normalized per
    channel. A layer the batch never reaches keeps its values."""
    torch.manual_seed(0)
    model, x = _FlattenedNet(), torch.randn(4, 2, 10)
    apply_weight_norm(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = data_init(model, x)
    assert report.initialized == ["conv.weight", "head.weight"]
    assert report.kept == {"unused.weight": "not called on the batch"}
    _check_normalized(_pre_activations(model, x))
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith("unused."))


class _FlattenedAfter(nn.Conv1d):
    """A conv whose output is ``(N, C*L)``: with N == C, its rank is an unbatched output's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).flatten(1)


class _Permuted(nn.Conv1d):
    """A conv returning ``(N, L, C)``: with L == C, the module output fits either layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).transpose(1, 2)


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (lambda: _FlattenedAfter(3, 2, 1), (2, 3, 50)),
        (lambda: _FlattenedAfter(3, 2, 1), (3, 3, 50)),
        (lambda: _Permuted(3, 4, 1), (8, 3, 4)),
    ],
    ids=["flattened N==C", "flattened N!=C", "permuted L==C"],
)
def test_statistics_are_per_channel_of_the_convolution_whatever_the_layer_returns(
    layer: Any, shape: tuple[int, ...]
) -> None:
    """``(N, C*L)`` from a batched input was read as unbatched (N == C) or raised (exit 3),
    then declined; ``(N, L, C)`` with L == C was normalized along L (the documented blind
    spot). The statistics are the convolution's, per channel, in every case."""
    torch.manual_seed(0)
    model, x = nn.Sequential(layer()), 3 * torch.randn(shape) + 1
    report = apply_weight_norm(model, (x,), init="data")
    assert [s.init for s in report.sites if s.status == "applied"] == ["data, v rescaled"]
    _check_normalized(_pre_activations(model, x))


class _KeywordInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(input=x)


def test_a_layer_given_its_input_by_keyword_is_initialized() -> None:
    """``self.fc(input=x)``: the layer's input is read from the keywords too (it was kept as
    having no tensor first argument)."""
    torch.manual_seed(0)
    model, x = _KeywordInput(), torch.randn(64, 4)
    report = apply_weight_norm(model, (x,), init="data")
    assert [s.init for s in report.sites if s.status == "applied"] == ["data, v rescaled"]
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(0, unbiased=False), torch.ones(3), atol=1e-4, rtol=0)


class _Masked(nn.Conv1d):
    """A conv called with a keyword argument."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x if mask is None else x * mask)


class _MaskedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = _Masked(3, 8, 1), nn.Conv1d(8, 4, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.c2(torch.relu(self.c1(x, mask=mask)))


def test_a_layer_called_with_keywords_is_rerun_with_them() -> None:
    """The recomputed output of ``c1(x, mask=m)`` dropped the mask, so every later layer was
    initialized on the wrong activations: now every layer ends at mean 0, std 1 per unit."""
    torch.manual_seed(0)
    model = _MaskedNet()
    x, mask = torch.randn(16, 3, 10), (torch.arange(10) < 3).float().expand(16, 1, 10)
    report = apply_weight_norm(model, (x, mask), init="data")
    assert [s.init for s in report.sites if s.status == "applied"] == ["data, v rescaled"] * 2
    with torch.no_grad():  # c1's convolution runs on the masked input
        c1 = F.conv1d(x * mask, model.c1.weight, model.c1.bias)
        outputs = {"c1": c1, "c2": model.c2(torch.relu(c1))}
    _check_normalized(outputs)


class _LinearReLU(nn.Linear):
    """A Linear with its activation inside its forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(super().forward(x))


def test_a_layer_with_its_activation_inside_is_initialized_on_its_pre_activation() -> None:
    """``relu(F.linear(...))`` in one forward was initialized on the ReLU's output (mean and
    deviation of a rectified signal): the statistics are F.linear's own now."""
    torch.manual_seed(0)
    model, x = nn.Sequential(_LinearReLU(8, 6), nn.Linear(6, 3)), torch.randn(256, 8)
    report = apply_weight_norm(model, (x,), init="data")
    assert [s.init for s in report.sites if s.status == "applied"] == ["data, v rescaled"] * 2
    _check_normalized(_pre_activations(model, x))


def test_the_models_own_hooks_run_in_the_init_pass() -> None:
    """A forward hook of the model (``out * 10``) was dropped by the init pass, which gave back
    the layer's recomputed forward: layer 1 was initialized on 1/10 of its real input. The
    pass now runs the model as it is; the hook stays and both layers end at mean 0, std 1."""
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 3)), torch.randn(512, 8)
    model[0].register_forward_hook(lambda module, args, out: out * 10)
    apply_weight_norm(model, (x,), init="data")
    assert len(model[0]._forward_hooks) == 1
    _check_normalized(_pre_activations(model, x))


class _ScaledWeight(nn.Linear):
    """Equalized learning rate: the op gets ``weight * 2``, not the weight."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * 2, self.bias)


class _InPlaceWeight(nn.Linear):
    """Changes the weight it computed in place before the op."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        weight.mul_(3)
        return F.linear(x, weight, self.bias)


class _BiasAfter(nn.Linear):
    """The op gets no bias; the layer adds twice its bias afterwards."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight) + 2 * self.bias


@pytest.mark.parametrize(
    ("layer", "reason"),
    [
        (_ScaledWeight, "its weight does not reach F.linear as the layer computes it"),
        (_BiasAfter, "its forward gives F.linear another bias than the layer's own"),
    ],
)
def test_a_layer_whose_op_is_not_its_pre_activation_is_declined(layer: Any, reason: str) -> None:
    """Where the op does not get the layer's weight and bias as they are, its output is not
    what g and b set: declined with the reason, every value as it was; the next layer is
    initialized on what the declined one really outputs."""
    torch.manual_seed(0)
    model, x = nn.Sequential(layer(8, 6), nn.Linear(6, 3)), torch.randn(64, 8)
    assert apply_weight_norm(model, x).applied == 2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = data_init(model, x)
    assert report.initialized == ["1.weight"] and reason in report.kept["0.weight"]
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith("0."))
    _check_normalized({"1": _pre_activations(model, x)["1"]})


def test_multihead_attentions_out_proj_is_kept_for_what_it_is() -> None:
    """t157: MultiheadAttention's out_proj was kept as "its weight does not reach F.linear as
    the layer computes it (the forward changes it first, or uses another op)": its weight
    goes into the attention op, as the in-projection's does, and is said so."""
    torch.manual_seed(0)

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.att = nn.MultiheadAttention(16, 4, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.att(x, x, x)[0]

    report = apply_weight_norm(Attention(), torch.randn(8, 5, 16), init="data")
    kept = {site.name: site.init for site in report.sites if site.name.endswith("weight")}
    assert kept["att.out_proj.weight"] == (
        "keep: MultiheadAttention's out_proj: its projection stays inside the op (no output to "
        "normalize)"
    )


def test_a_weight_changed_in_place_before_its_op_is_declined() -> None:
    """The layer was initialized from its op's output of the weight as computed, and the op
    then got three times that: std 3. Declined now, as ``self.weight * 3`` is."""
    torch.manual_seed(0)
    model = nn.Sequential(
        parametrizations.weight_norm(_InPlaceWeight(8, 6)),
        parametrizations.weight_norm(nn.Linear(6, 3)),
    )
    x = torch.randn(64, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = data_init(model, x)
    assert report.initialized == ["1.weight"]
    assert report.kept["0.weight"] == (
        "its forward changes the weight in place before F.linear: no known pre-activation"
    )
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith("0."))


class _InContext(nn.Module):
    """Runs its layers in a grad mode of its own (its forward is wnpass's to call as it is)."""

    def __init__(self, context: Any, in_place: bool = False) -> None:
        super().__init__()
        self.context, self.in_place = context, in_place
        self.first = (_InPlaceWeight if in_place else nn.Linear)(8, 6)
        self.second = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.context():
            return self.second(torch.tanh(self.first(x)))


@pytest.mark.parametrize("context", [torch.enable_grad, torch.inference_mode])
def test_a_forward_that_sets_its_own_grad_mode_is_initialized(context: Any) -> None:
    """Under the forward's own enable_grad(), writing g in place was "a leaf Variable that
    requires grad is being used in an in-place operation"; under its inference_mode(), the
    computed weights keep no version counter to show an in-place change: "Inference tensors
    do not track version counter". Both failed the call."""
    torch.manual_seed(0)
    model, x = _InContext(context), torch.randn(64, 8)
    apply_weight_norm(model)
    report = data_init(model, x)
    assert report.initialized == ["first.weight", "second.weight"] and report.kept == {}
    _check_normalized(_pre_activations(model, x))


def test_a_weight_changed_in_place_under_inference_mode_is_declined() -> None:
    """Without a version counter the change is seen on a copy of the weight as computed."""
    torch.manual_seed(0)
    model, x = _InContext(torch.inference_mode, in_place=True), torch.randn(64, 8)
    parametrizations.weight_norm(model.first)  # apply_weight_norm declines its .mul_()
    parametrizations.weight_norm(model.second)
    report = data_init(model, x)
    assert report.initialized == ["second.weight"]
    assert report.kept["first.weight"] == (
        "its forward changes the weight in place before F.linear: no known pre-activation"
    )


class _TwiceOneRead(nn.Linear):
    """Reads its weight once and applies it twice."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        return F.linear(x, weight, self.bias) + F.linear(x, weight, self.bias)


class _Looped(nn.Module):
    """One Linear applied twice, as a recurrent block applies its layer."""

    def __init__(self, features: int, out: int) -> None:
        super().__init__()
        self.layer = nn.Linear(features, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(torch.tanh(self.layer(x)))


@pytest.mark.parametrize(
    ("layer", "name"), [(_TwiceOneRead, "0.weight"), (_Looped, "0.layer.weight")]
)
def test_a_layer_whose_op_runs_twice_is_declined(layer: Any, name: str) -> None:
    """Only the first of the ops was normalized (the second's std was off by order 1) and
    the layer was reported initialized: one g per unit cannot set two pre-activations' std.
    It keeps its values now, with the reason, and the next layer is initialized on what it
    really outputs (a second pass)."""
    torch.manual_seed(0)
    model: Any = nn.Sequential(layer(6, 6), nn.Linear(6, 3))
    x = torch.randn(64, 6)
    assert apply_weight_norm(model, x).applied == 2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = data_init(model, x)
    assert report.initialized == ["1.weight"]
    assert "F.linear of its weight runs 2 times in the forward" in report.kept[name]
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith("0."))
    _check_normalized({"1": _pre_activations(model, x)["1"]})


def test_a_frozen_bias_is_left_as_it_is_and_the_layer_gets_its_scale() -> None:
    """A frozen bias (requires_grad=False) was rewritten while the report said "skipped:
    frozen": it keeps its value now, and the layer gets its scale only (std 1), as one without
    a bias; the report says so."""
    torch.manual_seed(0)
    model: Any = nn.Sequential(nn.Linear(8, 4))
    x = torch.randn(64, 8)
    model[0].bias.requires_grad_(False)
    bias = model[0].bias.detach().clone()
    report = apply_weight_norm(model, (x,), init="data")
    inits = {site.name: site.init for site in report.sites}
    assert inits["0.weight"] == "data, v rescaled (bias frozen: scale only)"
    assert torch.equal(model[0].bias, bias) and not model[0].bias.requires_grad
    _check_normalized(_pre_activations(model, x), scale_only=frozenset({"0"}))


def test_a_layer_with_frozen_g_or_v_is_kept() -> None:
    """g or v frozen: data init would have to write them; the layer keeps its values."""
    torch.manual_seed(0)
    model: Any = nn.Sequential(parametrizations.weight_norm(nn.Linear(8, 4)))
    model[0].parametrizations.weight.original0.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = data_init(model, torch.randn(16, 8))
    assert report.kept == {"0.weight": "g or v frozen (requires_grad=False): not re-initialized"}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "batch",
    [torch.zeros(4, 8), torch.randn(1, 8).repeat(16, 1)],
    ids=["zeros", "one example repeated"],
)
def test_a_constant_batch_is_refused_and_the_model_left_as_it_was(batch: torch.Tensor) -> None:
    """Every unit constant over the batch got g = 1e6 (1/epsilon), and outputs of 1e6 on any
    other input: refused now, naming the layer and the units, the model as it was."""
    model = nn.Sequential(nn.Linear(8, 4), nn.Tanh(), nn.Linear(4, 3))
    before, x = _state(model), torch.randn(3, 8)
    expected = _outputs(model, x)
    with pytest.raises(InvalidArgumentError) as caught:
        apply_weight_norm(model, (batch,), init="data")
    assert caught.value.parameter == "example_inputs"
    message = (
        "gives layer 0 (Linear) pre-activations that are the same over the batch and positions "
        "(within 4 float32 ulps) in units 0, 1, 2 and 1 more of 4 along axis 1 of its output: "
        "no spread to scale to 1"
    )
    assert message in str(caught.value)
    _assert_as_before(model, before)
    assert torch.equal(_outputs(model, x), expected)


def test_a_batch_whose_spread_is_at_the_rounding_level_is_refused() -> None:
    """``1 + 1e-6 * randn``: about 8 float32 ulps of spread, past the constant test's 4, was
    initialized to unit means of -0.09 and stds of 1.06 on the batch itself, g about 1e6, and
    reported ok (t48). The init's result is now checked on the batch: refused, as it was."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4), nn.Tanh(), nn.Linear(4, 3))
    before, x = _state(model), torch.randn(3, 8)
    expected = _outputs(model, x)
    batch = 1 + 1e-6 * torch.randn(64, 8)
    with pytest.raises(InvalidArgumentError, match="cannot bring to std 1 and mean 0") as caught:
        apply_weight_norm(model, (batch,), init="data")
    assert "give a batch of different examples" in str(caught.value)
    _assert_as_before(model, before)
    assert torch.equal(_outputs(model, x), expected)


@pytest.mark.parametrize("scale", [1e-20, 1e23])
def test_a_rescale_that_would_change_the_weight_is_refused(scale: float) -> None:
    """g = 1/sigma of about 1e20 (inputs near 1e-20) or 1e-23: rescaled to ||v|| = g, v's
    norm overflowed or underflowed float32, the weight PyTorch computes was all zero or NaN,
    and the report said ok (t48). Refused now; without the rescale the same batch
    initializes."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4))
    before = _state(model)
    batch = torch.randn(64, 8) * scale
    with pytest.raises(InvalidArgumentError, match=r"rescaled to \|\|v\|\| = g, v's norm"):
        apply_weight_norm(model, (batch,), init="data")
    _assert_as_before(model, before)
    apply_weight_norm(model)
    assert data_init(model, batch, rescale=False).initialized == ["0.weight"]


@pytest.mark.parametrize(("fan_in", "dtype"), [(25088, torch.float32), (8192, torch.float64)])
def test_a_layer_of_large_fan_in_is_rescaled(fan_in: int, dtype: torch.dtype) -> None:
    """VGG's fc6 (25088 inputs) on an ordinary batch was refused as a g beyond float32's
    range (t71): PyTorch's norm of that many entries is off by a few ulps more than the 4
    the check allowed."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(fan_in, 16)).to(dtype)
    batch = torch.randn(32, fan_in, dtype=dtype)
    report = apply_weight_norm(model, (batch,), init="data")
    assert {s.name: s.init for s in report.sites}["0.weight"] == "data, v rescaled"
    _check_normalized(_pre_activations(model, batch))
    g = model.get_parameter("0.parametrizations.weight.original0")
    v = model.get_parameter("0.parametrizations.weight.original1")
    norms = torch.linalg.vector_norm(v.double(), dim=1, keepdim=True)
    torch.testing.assert_close(norms, g.double())


@pytest.mark.parametrize(("dim", "unit"), [(-2, True), (-1, False)])
def test_a_negative_dim_is_read_as_pytorch_reads_it(dim: int, unit: bool) -> None:
    """``weight_norm(Linear, dim=-2)`` is per output unit (axis 0) and was kept as "g is per
    axis -2"; ``dim=-1`` is PyTorch's whole-tensor norm, said as such now (t48)."""
    torch.manual_seed(0)
    model: Any = nn.Sequential(parametrizations.weight_norm(nn.Linear(8, 4), dim=dim))
    report = data_init(model, torch.randn(32, 8))
    if unit:
        assert report.initialized == ["0.weight"] and report.kept == {}
    else:
        reason = "g is one number for the whole weight (dim=None), not per output unit (axis 0)"
        assert report.kept == {"0.weight": reason}


def test_data_init_the_include_asks_for_and_cannot_give_applies_nothing() -> None:
    """t171: ``init="data"`` with an include naming only a layer weight-normed before at
    ``dim=None`` (``-1``: one g for the whole weight, no data init goes on it) said "nothing
    selected", truthy, while ``data_init`` on the same layer was falsy. Nothing was done of
    what was asked: "nothing applied", with the init's reason; at ``dim=0`` it is given."""
    x = torch.randn(32, 8)
    for dim, status in ((-1, "nothing applied"), (0, "ok")):  # -1: the whole weight
        torch.manual_seed(0)
        model: Any = nn.Sequential(
            parametrizations.weight_norm(nn.Linear(8, 16), dim=dim), nn.Linear(16, 4)
        )
        report = apply_weight_norm(model, x, init="data", include="0.weight")
        assert report.status == status and bool(report) is (status == "ok")
    assert report.initialized == 1
    torch.manual_seed(0)
    model = nn.Sequential(parametrizations.weight_norm(nn.Linear(8, 16), dim=-1))
    report = apply_weight_norm(model, x, init="data", include="0.weight")
    assert report.reason == (
        "no parameter of those included to apply weight norm to (1x already weight-normed, "
        "data init cannot go on it: g is one number for the whole weight (dim=None), not per "
        "output unit (axis 0))"
    )


class _Calls(nn.Module):
    """Calls the layer it is given (held by another module too)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class _HeldTwiceNormed(nn.Module):
    """``layer`` held as ``first.0`` (not called there) and as ``calls.layer``."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.first, self.calls = nn.Sequential(layer), _Calls(layer)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.calls(x))


@pytest.mark.parametrize("exclude", [_Calls, "calls.*"], ids=["holder-type", "second-name"])
def test_a_layer_weight_normed_before_is_left_out_by_any_of_its_names(exclude: Any) -> None:
    """One layer weight-normed before, held as ``first.0`` and as ``calls.layer``: an exclude
    of its second name, or of the module holding it there, kept it out when it was plain, not
    when it was weight-normed before: data init rescaled it (t318). Its site has every name."""
    torch.manual_seed(0)
    layer = parametrizations.weight_norm(nn.Linear(8, 8))
    model = _HeldTwiceNormed(layer)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    report = apply_weight_norm(model, torch.randn(32, 8), init="data", exclude=exclude)
    said = "keep: excluded (_Calls)" if exclude is _Calls else "keep: excluded (calls.*)"
    assert {s.name: s.init for s in report.sites}["first.0.weight"] == said
    assert all(torch.equal(v, before[k]) for k, v in layer.state_dict().items())


def test_a_weight_normed_layer_the_selection_leaves_out_is_not_initialized() -> None:
    """A layer weight-normed before, excluded by the user (or not included), was
    re-initialized anyway: its g, v and bias are left alone now; selected, it is initialized."""
    torch.manual_seed(0)
    model = nn.Sequential(parametrizations.weight_norm(nn.Linear(8, 16)), nn.Linear(16, 4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(32, 8)
    report = apply_weight_norm(model, x, init="data", exclude="*")
    assert report.status == "nothing selected"
    assert {s.name: s.init for s in report.sites}["0.weight"] == "keep: excluded (*)"
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    report = apply_weight_norm(model, x, init="data", include="1.*")
    assert {s.name: s.init for s in report.sites}["0.weight"] == "keep: not included"
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items() if k[0] == "0")
    result = data_init(model, x)  # on its own: every weight-normed layer
    assert result.initialized == ["0.weight", "1.weight"]


def test_pre_activations_too_small_for_g_in_its_dtype_are_refused() -> None:
    """A float16 layer whose pre-activations spread by ~1e-6 would get g = 1/sigma = inf in
    float16: refused, naming the layer, the model as it was."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4)).half()
    before = _state(model)
    with pytest.raises(InvalidArgumentError, match=r"g = 1/sigma to be a float16 number in units"):
        apply_weight_norm(model, torch.randn(16, 8).half() * 1e-6, init="data")
    _assert_as_before(model, before)


@pytest.mark.parametrize("std", [3e4, 1e6])
def test_a_std_whose_v_a_float16_layer_cannot_hold_is_an_error_about_std(std: float) -> None:
    """Inside the range float32 holds, but v drawn at std 3e4 has entries beyond float16's
    65504 (Inf): the layer's pre-activations were NaN, and the batch was blamed."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 64)).half()
    apply_weight_norm(model)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(InvalidArgumentError) as raised:
        data_init(model, torch.randn(16, 256).half(), std=std)
    assert raised.value.parameter == "std"
    assert str(raised.value) == (
        f"std {std:g} draws a v that layer 0 (Linear) cannot normalize in torch.float16 (its "
        "entries or their squares overflow or underflow); the default is 0.05"
    )
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


def test_a_numpy_std_is_a_number() -> None:
    """``std=np.float32(0.1)`` was refused as "not a number"."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4))
    apply_weight_norm(model)
    report = data_init(model, torch.randn(32, 8), std=np.float32(0.1))  # type: ignore[arg-type]
    assert report.initialized == ["0.weight"]


class _SharedBias(nn.Module):
    """Two Linear layers sharing one bias; a third the batch may make constant."""

    def __init__(self, constant: bool = False) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.b.bias = self.a.bias
        self.constant = constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.b(torch.tanh(self.a(x)) * 3 + 1)
        return self.c(h * 0 if self.constant else h)


def test_layers_sharing_a_bias_are_declined() -> None:
    """Both were reported initialized while b's init rewrote the bias a's statistics were
    taken with (a's mean ended 0.67, not 0); each keeps its values now, with the reason."""
    torch.manual_seed(0)
    model, x = _SharedBias(), torch.randn(64, 4)
    apply_weight_norm(model, x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = data_init(model, x)
    assert report.initialized == ["c.weight"]
    assert report.kept["a.weight"].startswith("its bias is also b.bias: writing it would change")
    assert report.kept["b.weight"].startswith("its bias is also a.bias")
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if not k.startswith("c."))


class _HeldAsBuffer(nn.Module):
    """A layer whose bias, or g, or v, is a buffer too: of another module or of its own, the
    tensor itself, a view of it, or an alias of part of its memory through another storage
    (numpy's)."""

    def __init__(self, held: str, how: str) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 3)
        apply_weight_norm(self, (torch.randn(2, 4),))
        layer: Any = self.a
        originals = layer.parametrizations.weight
        tensor = {"bias": self.a.bias, "g": originals.original0, "v": originals.original1}[held]
        buffer = {
            "itself": tensor,
            "a view": tensor.detach(),
            "an alias": torch.from_numpy(tensor.detach().numpy()[1:]),
            "its own": tensor,
        }[how]
        self.keep = nn.Module()
        holder = self.a if how == "its own" else self.keep
        holder.register_buffer("b", buffer, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x)))


@pytest.mark.parametrize("how", ["itself", "a view", "an alias", "its own"])
@pytest.mark.parametrize(("held", "said"), [("bias", "its bias"), ("g", "g"), ("v", "v")])
def test_a_layer_whose_values_are_a_buffer_too_is_declined(held: str, said: str, how: str) -> None:
    """A buffer is given back after the pass: the layer's bias (or g, v) held as another
    module's buffer was put back as it was while the layer was reported initialized (its
    outputs' mean 0.65 where 0 was promised, t217); so was one of its own module, and an
    alias of its memory through another storage (t219). It keeps its values, with the
    reason."""
    torch.manual_seed(0)
    model, x = _HeldAsBuffer(held, how), torch.randn(64, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = data_init(model, x)
    assert report.initialized == ["b.weight"]
    buffer = "a.b" if how == "its own" else "keep.b"
    assert report.kept["a.weight"] == (
        f"{said} is also {buffer}: writing it would change that too, not this layer alone"
    )
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith("a."))


def test_a_refusal_gives_a_shared_bias_its_value_back() -> None:
    """The shared bias was saved by each layer's init and given back in forward order, so it
    ended with the value a's init wrote: the model is as it was now."""
    torch.manual_seed(0)
    model, x = _SharedBias(constant=True), torch.randn(64, 4)
    apply_weight_norm(model, x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InvalidArgumentError, match=r"layer c \(Linear\)"):
        data_init(model, x)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_a_layer_sharing_its_bias_with_an_excluded_one_is_kept() -> None:
    """Layer 2, excluded, said untouched while layer 0's init rewrote the bias it uses."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
    model[2].bias = model[0].bias
    x, fixed = torch.randn(64, 4), torch.randn(8, 4)
    with torch.no_grad():
        expected = model[2](fixed)
    report = apply_weight_norm(model, x, init="data", exclude=["2"])
    init = {site.name: site.init for site in report.sites}
    assert init["0.weight"] == (
        "keep: its bias is also 2.bias: writing it would change that too, not this layer alone"
    )
    with torch.no_grad():
        assert torch.equal(model[2](fixed), expected)


class _Fallback(nn.Module):
    """A forward that catches its fast path's exception and takes another layer."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self.a(x)
        except Exception:
            return self.b(x)


def test_a_refusal_the_forward_catches_still_fails_the_call() -> None:
    """The forward caught the refusal raised in layer a's op: the call returned, a left reset
    (g = 1, v redrawn, b = 0) and reported nowhere. The call fails as without the catch now,
    every value given back."""
    torch.manual_seed(0)
    model = _Fallback()
    apply_weight_norm(model, torch.randn(8, 4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InvalidArgumentError, match=r"layer a \(Linear\) pre-activations that"):
        data_init(model, torch.ones(8, 4))
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_a_torchscript_model_is_refused() -> None:
    """A scripted model ran no op data init sees: an empty report, no reason given."""
    with pytest.raises(InvalidArgumentError, match="RecursiveScriptModule: a TorchScript module"):
        data_init(torch.jit.script(nn.Linear(4, 4)), torch.randn(8, 4))


class _FastPath(nn.Module):
    """A forward that tries its layer on a wrong slice first, and goes on without it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = parametrizations.weight_norm(nn.Linear(4, 4))
        self.b = parametrizations.weight_norm(nn.Linear(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self.b(self.a(x[:, :3]))
        except RuntimeError:
            return self.b(x)


def test_a_layer_whose_op_raises_in_a_forward_that_goes_on_is_kept() -> None:
    """Layer a's op raised (its input is the wrong shape) after a was reset; the forward
    caught it: a was left reset (g = 1, v redrawn, b = 0) and reported nowhere. Now it gets
    its values back and is kept with the reason; b is initialized."""
    torch.manual_seed(0)
    model, x = _FastPath(), torch.randn(64, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = data_init(model, x)
    assert report.initialized == ["b.weight"]
    assert report.kept["a.weight"].startswith("F.linear of its weight raised RuntimeError: ")
    assert report.kept["a.weight"].endswith("and the forward went on without it: no pre-activation")
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith("a."))


def test_autocast_runs_each_layer_on_the_bias_it_was_given() -> None:
    """Under autocast, a parameter's cast is cached: the op rerun after the bias was written
    used the bias cast while it was 0, and every later layer got inputs without it (per-unit
    means of 0.1 after the first layer, where bfloat16 rounding allows about 2e-3)."""

    class Autocast(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(64, 32), nn.Linear(32, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.b(self.a(x))

    torch.manual_seed(0)
    model, batch = Autocast(), torch.randn(256, 64)
    assert apply_weight_norm(model, (batch,), init="data").status == "ok"
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = model.a(batch)
        for out in (hidden, model.b(hidden)):
            mean, std = out.float().mean(0), out.float().std(0, unbiased=False)
            assert float(mean.abs().max()) < 1e-2 and float((std - 1).abs().max()) < 1e-2


@pytest.mark.parametrize("where", ["the model", "a layer inside it"])
def test_a_compiled_model_is_initialized_and_reported_as_it_was(where: str) -> None:
    """A compiled forward ran its own copy of the ops: data init wrote each layer and reported
    it kept ("its weight does not reach F.linear"); a compiled layer inside a model was seen under
    two names and declined as sharing its g with itself. It now runs as eager PyTorch."""
    torch.manual_seed(0)
    inner: Any = nn.Linear(4, 8)
    if where != "the model":
        inner = torch.compile(inner, backend="eager")  # an nn.Module: OptimizedModule
    model: Any = nn.Sequential(inner, nn.ReLU(), nn.Linear(8, 3))
    if where == "the model":
        model = torch.compile(model, backend="eager")
    batch = torch.randn(16, 4)
    report = apply_weight_norm(model, (batch,), init="data")
    inits = {site.name: site.init for site in report.sites if site.status == "applied"}
    assert len(inits) == 2 and set(inits.values()) == {"data, v rescaled"}, inits
    layers = [m for m in model.modules() if type(m).__name__.startswith("ParametrizedLinear")]
    with torch.no_grad():
        hidden = layers[0](batch)
        _check_normalized({"a": hidden, "b": layers[1](torch.relu(hidden))})


def test_only_names_weight_normed_weights_or_is_refused() -> None:
    """``only=["0.wieght"]`` (a typo) initialized nothing and said nothing: now an error
    naming the parameter and the names, before any value is written."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
    apply_weight_norm(model, (torch.randn(8, 6),))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InvalidArgumentError) as caught:
        data_init(model, torch.randn(16, 6), only=["0.wieght", "2.weight", "1.weight"])
    assert caught.value.parameter == "only"
    assert "'0.wieght', '1.weight': no weight-normed weight of the model" in str(caught.value)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert data_init(model, torch.randn(16, 6), only=["2.weight"]).initialized == ["2.weight"]


@pytest.mark.parametrize("own_generator", [False, True])
def test_a_failed_init_gives_the_callers_generators_back(own_generator: bool) -> None:
    """v is redrawn from the caller's generator before the batch is found constant: the call
    failed and the model was given back, but the caller's next random numbers were others."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    for layer in (model[0], model[2]):
        parametrizations.weight_norm(layer)
    generator = torch.Generator().manual_seed(5) if own_generator else None
    torch_state = torch.get_rng_state()
    own_state = None if generator is None else generator.get_state()
    with pytest.raises(InvalidArgumentError, match="the same over the batch"):
        data_init(model, torch.zeros(4, 8), generator=generator)
    assert torch.equal(torch.get_rng_state(), torch_state)
    if generator is not None and own_state is not None:
        assert torch.equal(generator.get_state(), own_state)


class _DrawsNoise(nn.Module):
    """Two layers behind sampling noise from each generator a forward may draw from."""

    def __init__(self, noise: bool) -> None:
        super().__init__()
        self.a, self.b, self.noise = nn.Linear(8, 8), nn.Linear(8, 3), noise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.noise:
            x = x + random.random() + float(np.random.rand()) + 0.1 * torch.randn(x.shape)
        return self.b(torch.relu(self.a(x)))


def _one_seed_drawn(seed: int) -> torch.Tensor:
    """Torch's generator seeded ``seed``, after data init's one draw (the seed of v's)."""
    torch.manual_seed(seed)
    torch.randint(0, 2**63 - 1, (), dtype=torch.int64)
    return torch.get_rng_state()


def test_a_data_init_moves_torchs_generator_by_one_draw() -> None:
    """t180: the forward's own draws moved the caller's generators, Python's and NumPy's
    too, where init keep leaves them as they were. Torch's moves by one draw, the seed of the
    generator v is drawn on, whatever the forward draws."""
    x = torch.randn(20, 8)
    after: dict[bool, tuple[float, float, torch.Tensor]] = {}
    for noise in (False, True):
        torch.manual_seed(0)
        model = _DrawsNoise(noise)
        random.seed(1)
        np.random.seed(1)
        torch.manual_seed(123)
        apply_weight_norm(model, x, init="data")
        after[noise] = (random.random(), float(np.random.rand()), torch.get_rng_state())
    random.seed(1)
    np.random.seed(1)
    assert after[True][:2] == (random.random(), float(np.random.rand()))
    assert torch.equal(after[True][2], after[False][2])
    assert torch.equal(after[True][2], _one_seed_drawn(123))
    torch.manual_seed(0)
    model = _DrawsNoise(True)
    apply_weight_norm(model)
    torch.manual_seed(123)
    report = data_init(model, x, redraw=False)  # no v drawn: no seed drawn either
    assert report.initialized == ["a.weight", "b.weight"]
    assert torch.equal(torch.get_rng_state(), torch.manual_seed(123).get_state())


class _SamplesItsLatent(nn.Module):
    """A generator: its forward draws its latent z, which its first layer reads."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = parametrizations.weight_norm(nn.Linear(128, 64))

    def forward(self, n: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.randn(n.shape[0], 128))


def test_v_is_not_the_forwards_own_noise() -> None:
    """t187: v was drawn from torch's state as the caller left it, and the forward's noise
    replayed from the same state: each row of v was the latent the forward drew for one
    example (cosine 1), and the layer's std on fresh latents 0.58, not 1."""
    torch.manual_seed(0)
    model = _SamplesItsLatent()
    torch.manual_seed(0)
    data_init(model, torch.zeros(64))
    v = model.fc.parametrizations.weight.original1.detach()
    torch.manual_seed(0)
    torch.randint(0, 2**63 - 1, (), dtype=torch.int64)  # the seed's draw
    latents = torch.randn(64, 128)  # what the init's forward drew
    assert float(F.cosine_similarity(v, latents, dim=1).abs().max()) < 0.5
    with torch.no_grad():
        std = model(torch.zeros(20000)).std(dim=0)
    assert 0.9 < float(std.mean()) < 1.1


class _OwnNoise(nn.Module):
    """Noise from a generator of the model's own, before two layers."""

    def __init__(self) -> None:
        super().__init__()
        self.gen = torch.Generator().manual_seed(11)
        self.a = parametrizations.weight_norm(nn.Linear(8, 8))
        self.b = parametrizations.weight_norm(nn.Linear(8, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + 0.3 * torch.randn(x.shape, generator=self.gen)
        return self.b(torch.tanh(self.a(x)))


def test_a_generator_of_the_models_own_passed_moves() -> None:
    """t187: the model's state given back after the pass set its own generator back too,
    undoing v's draws: a second call drew the same v. Set back to v's draws alone (t188),
    the next forward's noise was v (t189)."""
    torch.manual_seed(0)
    model = _OwnNoise()
    start = model.gen.get_state()
    x = torch.randn(32, 8)
    data_init(model, x, generator=model.gen)
    first = model.a.parametrizations.weight.original1.detach().clone()
    expected = torch.Generator()  # left after the last v, past the noise drawn before it:
    expected.set_state(start)  # the next forward's noise repeats no v's numbers (t189)
    torch.randn(32, 8, generator=expected)  # the noise, then v's, in the forward's order
    torch.randn(8, 8, generator=expected), torch.randn(6, 8, generator=expected)
    assert torch.equal(model.gen.get_state(), expected.get_state())
    data_init(model, x, generator=model.gen)
    assert not torch.equal(model.a.parametrizations.weight.original1.detach(), first)


def test_a_call_that_initializes_nothing_after_a_second_round_moves_no_generator() -> None:
    """t189: the only layer, used twice, drew v in the first round and was declined; the
    call kept that round's draws though it initialized nothing."""
    torch.manual_seed(0)
    layer = parametrizations.weight_norm(nn.Linear(8, 8))
    model = nn.Sequential(layer, nn.Tanh(), layer)
    x = torch.randn(32, 8)
    for passed in (None, torch.Generator().manual_seed(3)):
        torch.manual_seed(5)
        start = None if passed is None else passed.get_state()
        report = data_init(model, x, generator=passed)
        assert report.initialized == []
        if passed is None:
            assert torch.equal(torch.get_rng_state(), torch.manual_seed(5).get_state())
        else:
            assert start is not None and torch.equal(passed.get_state(), start)


class _NoiseFromItsInput(nn.Module):
    """``forward(x, generator)``: the noise comes from a generator the caller passes."""

    def __init__(self) -> None:
        super().__init__()
        self.a = parametrizations.weight_norm(nn.Linear(8, 8))

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.a(x + 0.3 * torch.randn(x.shape, generator=generator))


@pytest.mark.parametrize("fails", [False, True])
def test_a_generator_among_the_inputs_is_replayed_and_given_back(fails: bool) -> None:
    """t190: a torch.Generator the batch holds moved by every forward, on failure too, and
    apply_weight_norm's compared forwards drew other noise from it (not deterministic)."""
    torch.manual_seed(0)
    model = _NoiseFromItsInput()
    noise = torch.Generator().manual_seed(4)
    start = noise.get_state()
    x = torch.full((32, 8), NAN) if fails else torch.randn(32, 8)  # NaN: refused
    batch = {"x": x, "generator": noise}
    if fails:
        with pytest.raises(InvalidArgumentError):
            data_init(model, batch)
    else:
        assert data_init(model, batch).initialized == ["a.weight"]
    assert torch.equal(noise.get_state(), start)
    if not fails:
        fresh = _NoiseFromItsInput()
        report = apply_weight_norm(fresh, {"x": x, "generator": noise}, init="keep")
        assert report.equivalent and not report.not_deterministic
        assert torch.equal(noise.get_state(), start)


def test_a_layer_whose_op_failed_gives_its_draw_back_too() -> None:
    """t190: the op raised, the forward caught it and went on: the layer kept its values, yet
    torch's generator had moved by the draw of v's seed (and a generator passed by its v)."""

    class Caught(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = parametrizations.weight_norm(nn.Linear(8, 8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            try:
                return self.a(x[:, :5])  # the wrong width: the op raises
            except RuntimeError:
                return x

    torch.manual_seed(0)
    model, x = Caught(), torch.randn(32, 8)
    passed = torch.Generator().manual_seed(2)
    start = passed.get_state()
    torch.manual_seed(5)
    assert data_init(model, x).initialized == []
    assert torch.equal(torch.get_rng_state(), torch.manual_seed(5).get_state())
    assert data_init(model, x, generator=passed).initialized == []
    assert torch.equal(passed.get_state(), start)


class _FailsThenGoesOn(nn.Module):
    """b's op raises and the forward catches it; a runs after."""

    def __init__(self) -> None:
        super().__init__()
        self.b = parametrizations.weight_norm(nn.Linear(8, 8))
        self.a = parametrizations.weight_norm(nn.Linear(8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with contextlib.suppress(RuntimeError):
            x = self.b(x[:, :5])  # the wrong width: the op raises
        return self.a(x)


@pytest.mark.parametrize("passed", [False, True])
def test_a_failed_layers_draw_does_not_shift_the_next_layers_v(passed: bool) -> None:
    """t191: b's v was still drawn, so a's came from the numbers after it: a differed from a
    call that selected a alone, and a generator passed ended elsewhere."""
    x, ends, vs = torch.randn(32, 8), [], []
    for only in (None, ["a.weight"]):
        torch.manual_seed(0)
        model = _FailsThenGoesOn()
        generator = torch.Generator().manual_seed(9) if passed else None
        torch.manual_seed(5)
        assert data_init(model, x, only=only, generator=generator).initialized == ["a.weight"]
        vs.append(model.a.parametrizations.weight.original1.detach().clone())
        ends.append((generator or torch.default_generator).get_state())
    assert torch.equal(vs[0], vs[1]) and torch.equal(ends[0], ends[1])


def test_a_call_that_draws_no_v_moves_no_generator() -> None:
    """t188: every layer kept (its g frozen), no v drawn: torch's generator still moved by
    the draw of v's seed."""
    torch.manual_seed(0)
    model = _DrawsNoise(True)
    apply_weight_norm(model)
    for name, parameter in model.named_parameters():
        if name.endswith("original0"):
            parameter.requires_grad_(False)
    x = torch.randn(32, 8)
    torch.manual_seed(5)
    report = data_init(model, x)
    assert report.initialized == [] and torch.equal(
        torch.get_rng_state(), torch.manual_seed(5).get_state()
    )


class _NoiseHeldByTorchs(nn.Module):
    """Noise from a generator that one of PyTorch's own modules holds (an nn.Sequential)."""

    def __init__(self) -> None:
        super().__init__()
        self.held = nn.Sequential()
        vars(self.held)["gen"] = torch.Generator().manual_seed(11)  # a plain attribute
        self.a = parametrizations.weight_norm(nn.Linear(8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gen = self.held.gen
        assert isinstance(gen, torch.Generator)
        return self.a(x + 0.3 * torch.randn(x.shape, generator=gen))


def test_a_generator_in_torchs_state_is_said_to_draw_the_forwards_noise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """t188: seeded as torch's, the generator passed draws v as the numbers the forward draws
    from torch's (each row of v a latent the forward drew): said, as the caller chose it."""
    torch.manual_seed(0)
    model = _SamplesItsLatent()
    torch.manual_seed(0)
    with caplog.at_level("WARNING", logger="wnpass.fx.data_init"):
        data_init(model, torch.zeros(64), generator=torch.Generator().manual_seed(0))
    assert "the generator passed is in the state of torch's" in caplog.text
    caplog.clear()
    noisy = _OwnNoise()  # t190: in the state of the model's own, which the forward draws from
    with caplog.at_level("WARNING", logger="wnpass.fx.data_init"):
        data_init(noisy, torch.randn(32, 8), generator=torch.Generator().manual_seed(11))
    assert "the generator passed is in the state of the model's gen" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="wnpass.fx.data_init"):  # t198
        data_init(
            _NoiseHeldByTorchs(), torch.randn(32, 8), generator=torch.Generator().manual_seed(11)
        )
    assert "the generator passed is in the state of the model's held.gen" in caplog.text


class _NoiseHeldInside(nn.Module):
    """Noise from a generator of the model's own held in a list or a dict."""

    def __init__(self, holder: str) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(11)
        self.held: Any = [gen] if holder == "list" else {"noise": gen}
        self.a = parametrizations.weight_norm(nn.Linear(8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gen = self.held[0] if isinstance(self.held, list) else self.held["noise"]
        return self.a(x + 0.3 * torch.randn(x.shape, generator=gen))


@pytest.mark.parametrize("holder", ["list", "dict"])
def test_a_generator_in_the_state_of_one_the_model_holds_in_a_container_is_said_to(
    holder: str, caplog: pytest.LogCaptureFixture
) -> None:
    """t195: the warning read the modules' attributes only; the model's own generator in a
    list (which the model's state given back covers) drew v as its noise, unsaid."""
    torch.manual_seed(0)
    model = _NoiseHeldInside(holder)
    with caplog.at_level("WARNING", logger="wnpass.fx.data_init"):
        data_init(model, torch.randn(32, 8), generator=torch.Generator().manual_seed(11))
    assert "the generator passed is in the state of the model's held" in caplog.text


class _DrawsFromItsInput(nn.Module):
    """Records the first number its forward draws from the generator it is given (in a list
    outside the model: the model's state is given back after each forward)."""

    def __init__(self, drawn: list[int]) -> None:
        super().__init__()
        self.a = parametrizations.weight_norm(nn.Linear(4, 8))
        self.record = drawn.append

    def forward(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        self.record(int(torch.randint(0, 2**63 - 1, (), generator=generator)))
        return self.a(x)


@pytest.mark.parametrize("given", [None, torch.default_generator], ids=["none", "torch's"])
def test_the_forward_draws_after_v_s_seed_from_torch_s_generator_passed_as_an_input(
    given: torch.Generator | None,
) -> None:
    """t195: torch's own generator among the inputs was replayed from its state before the
    draw of v's seed: the forward's first number was v's seed."""
    torch.manual_seed(0)
    drawn: list[int] = []
    model, x = _DrawsFromItsInput(drawn), torch.randn(16, 4)
    torch.manual_seed(7)
    seed = int(torch.randint(0, 2**63 - 1, ()))
    following = int(torch.randint(0, 2**63 - 1, ()))
    torch.manual_seed(7)
    assert data_init(model, (x, given)).initialized == ["a.weight"]
    assert drawn[-1] == following != seed
    assert torch.equal(torch.get_rng_state(), _one_seed_drawn(7))


class _ATwice(nn.Module):
    """Layer a runs twice (declined, the pass run again without it), b once after it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = parametrizations.weight_norm(nn.Linear(8, 8))
        self.b = parametrizations.weight_norm(nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(torch.relu(self.a(x)))))


@pytest.mark.parametrize("passed", [None, torch.default_generator])
def test_a_pass_run_again_draws_as_the_first(passed: torch.Generator | None) -> None:
    """t184: a second round (a layer used twice, declined) drew v where the first round's
    draws had left the generator, so v differed from a call that selected the other layer
    only, and torch's generator moved by both rounds' draws. And torch's own generator passed
    (random_split's default) was set back by the forward's replay: the caller's next numbers
    repeated v's. v comes from where the call started, in every round, and torch's generator
    moves by the one draw of v's seed."""
    x = torch.randn(64, 8)
    results = []
    for only in (None, ["b.weight"]):
        torch.manual_seed(0)
        model = _ATwice()
        torch.manual_seed(7)
        report = data_init(model, (x,), only=only, generator=passed)
        v = model.b.parametrizations.weight.original1.detach().clone()
        results.append((report.initialized, v, torch.get_rng_state()))
    assert results[0][0] == results[1][0] == ["b.weight"]
    assert torch.equal(results[0][1], results[1][1])
    assert torch.equal(results[0][2], _one_seed_drawn(7))
    assert torch.equal(results[1][2], _one_seed_drawn(7))


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_tf32_on_cuda_is_the_precision_the_result_is_held_to(kind: str) -> None:
    """On CUDA, PyTorch lets cuDNN convolutions (and matrix products, where allowed) compute
    float32 in TF32, 10 mantissa bits: the result check held them to float32's 1e-3 and
    refused batches of pixel values (the review, by emulation; no GPU here). Its tolerance is
    the precision the op computed in."""
    from types import SimpleNamespace

    from wnpass.fx.data_init import _computed_in

    on_cuda: Any = SimpleNamespace(is_cuda=True, dtype=torch.float32)
    module: Any = torch.backends.cudnn if kind == "conv" else torch.backends.cuda.matmul
    before = module.allow_tf32
    try:
        module.allow_tf32 = True
        assert _computed_in(on_cuda, kind) == ("TF32", 2.0**-10)  # type: ignore[arg-type]
        module.allow_tf32 = False
        eps = float(torch.finfo(torch.float32).eps)
        assert _computed_in(on_cuda, kind) == ("float32", eps)  # type: ignore[arg-type]
        assert _computed_in(torch.ones(1), kind) == ("float32", eps)  # type: ignore[arg-type]
    finally:
        module.allow_tf32 = before


class _Counted(nn.Module):
    """A step counter scales the input: each forward sees another batch unless the state is
    given back (t71)."""

    steps: torch.Tensor

    def __init__(self, shared: bool) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 4) if shared else None  # applied twice: a second pass
        self.out = nn.Linear(4, 6)
        self.register_buffer("steps", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        x = x * self.steps
        if self.shared is not None:
            x = self.shared(torch.relu(self.shared(x)))
        return self.out(x)


@pytest.mark.parametrize("shared", [False, True])
def test_each_pass_starts_from_the_state_as_given(shared: bool) -> None:
    """A second pass (a layer applied twice is declined) ran on the counter the first moved:
    g and b were set for the counter at 2, off by 0.55 in mean on the model's first call."""
    torch.manual_seed(0)
    model, batch = _Counted(shared), torch.randn(32, 4)
    apply_weight_norm(model)
    report = data_init(model, batch)
    assert report.initialized == ["out.weight"]
    assert float(model.steps) == 0.0
    outputs = _pre_activations(model, batch)
    _check_normalized({"out": outputs["out"]})


class _Stream(nn.Module):
    """A stream that must be reset before it starts again; a layer applied twice."""

    def __init__(self) -> None:
        super().__init__()
        self.shared, self.out = nn.Linear(4, 4), nn.Linear(4, 2)
        self.started = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.started:
            raise RuntimeError("stream already started")
        self.started = True
        return self.out(self.shared(torch.relu(self.shared(x))))


def test_a_second_pass_finds_plain_attributes_as_given() -> None:
    torch.manual_seed(0)
    model = _Stream()
    report = apply_weight_norm(model, (torch.randn(16, 4),), init="data")
    inits = {s.name: s.init for s in report.sites}
    assert inits["out.weight"] == "data, v rescaled" and model.started is False
    assert (inits["shared.weight"] or "").startswith("keep: F.linear of its weight runs 2 times")


class _Noisy(nn.Module):
    """A recurrent model (no layer data init takes) with a state: a counter, a generator."""

    steps: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 5, batch_first=True)
        self.gen = torch.Generator().manual_seed(123)
        self.register_buffer("steps", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        y, _ = self.rnn(x)
        return y * self.steps + 0.1 * torch.randn(y.shape, generator=self.gen)


@pytest.mark.parametrize("exclude", [None, "rnn"])
def test_data_init_of_no_layer_leaves_the_outputs_compared_as_equal(exclude: str | None) -> None:
    """Data init that initializes nothing (a GRU's weights, or none selected) still ran its
    forward and moved the counter and the generator: the comparison after it said NOT
    EQUIVALENT (1.0), blaming weight norm (t71)."""
    torch.manual_seed(0)
    model = _Noisy()
    report = apply_weight_norm(model, (torch.randn(3, 6, 4),), init="data", exclude=exclude)
    assert report and report.changes is None and not report.not_deterministic
    assert report.rtol is not None and report.max_rel_error is not None
    assert report.max_rel_error <= report.rtol
    assert float(model.steps) == 0.0


class _OwnBias(nn.Linear):
    """A Linear whose bias is a buffer or a plain tensor (trainable), not a parameter."""

    def __init__(self, as_buffer: bool) -> None:
        super().__init__(4, 3)
        bias = self.bias.detach().clone().requires_grad_()
        del self.bias
        if as_buffer:
            self.register_buffer("bias", bias)
        else:
            self.bias = bias  # type: ignore[assignment]


@pytest.mark.parametrize("as_buffer", [True, False])
def test_a_bias_that_is_no_parameter_keeps_the_value_data_init_set(as_buffer: bool) -> None:
    """The pass gives the model's state back, a bias that is a buffer or a plain tensor with
    it: the report said initialized while the means were 5.9, 11.2 and 5.5 (t73)."""
    torch.manual_seed(0)
    model = nn.Sequential(_OwnBias(as_buffer))
    batch = torch.randn(64, 4) + 5.0
    report = apply_weight_norm(model, (batch,), init="data")
    assert [s.init for s in report.sites if s.status == "applied"] == ["data, v rescaled"]
    _check_normalized(_pre_activations(model, batch))


def test_a_batch_whose_squares_are_subnormal_is_refused_by_the_rescale() -> None:
    """Inputs near 3e19 give g near 1e-20: rescaled to ||v|| = g, every square PyTorch sums for
    the norm is subnormal in float32, and the weight came out percents off within the
    tolerance of a norm of 1e6 squares (t73); the result check then refused with advice to
    center the batch."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(100_000, 2))
    batch = torch.randn(8, 100_000) * 3e19
    with pytest.raises(InvalidArgumentError, match=r"rescaled to \|\|v\|\| = g, v's norm leaves"):
        apply_weight_norm(model, (batch,), init="data")


def test_a_bfloat16_layer_far_from_unit_scale_is_still_rescaled() -> None:
    """Inputs near 3e18: some squares of the rescaled v are subnormal in float32, too few to
    move a bfloat16 weight; the range check asked for half a float32 ulp and refused (t74)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4000, 16)).to(torch.bfloat16)
    batch = (torch.randn(256, 4000) * 3e18).to(torch.bfloat16)
    report = apply_weight_norm(model, (batch,), init="data")
    assert {s.name: s.init for s in report.sites}["0.weight"] == "data, v rescaled"


def test_a_weight_of_zero_is_no_rescaled_weight_whatever_the_tolerance() -> None:
    """Beyond 8.4 million squares per unit the norm's worst-case rounding alone allows 100%."""
    before, after = torch.ones(2, 3), torch.zeros(2, 3)
    assert not data_init_module._same_weight(before, after, per_unit=10**8)
    assert data_init_module._same_weight(before, before.clone(), per_unit=10**8)


class _Counting(nn.Module):
    """A plain layer (nothing weight-normed) that counts its calls in its class."""

    calls = 0

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1
        return self.lin(x)


def test_data_init_with_no_candidate_runs_no_forward() -> None:
    """Data init with no layer to initialize ran the whole batch through the model (t71)."""
    model = _Counting()
    report = data_init(model, torch.randn(8, 4))
    assert not report and _Counting.calls == 0


class _ForceField(nn.Module):
    """Forces as ``-dE/dpos``: the forward takes a gradient through its own layers."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 32), nn.Linear(32, 1)

    def forward(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            pos = pos.detach().requires_grad_(True)
            energy = self.b(torch.tanh(self.a(pos))).sum()
            (grad,) = torch.autograd.grad(energy, pos)
        return energy.detach(), -grad


def test_a_forward_that_takes_its_own_gradient_is_initialized() -> None:
    """The init pass runs under ``no_grad`` and gave each layer's op output back without a
    graph, so a force field's ``autograd.grad(energy, pos)`` failed (exit 2, blamed on the
    model, t125); ``init="keep"`` worked. The output comes back as the forward computes it."""
    torch.manual_seed(0)
    model, x = _ForceField(), torch.randn(256, 3)
    report = apply_weight_norm(model, (x,), init="data")
    assert [s.init for s in report.sites if s.status == "applied"] == ["data, v rescaled"] * 2
    _check_normalized(_pre_activations(model, x), scale_only=frozenset({"b"}))


class _Vmapped(nn.Module):
    def __init__(self, grad: bool) -> None:
        super().__init__()
        self.a, self.b, self.grad = nn.Linear(3, 16), nn.Linear(16, 1), grad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def f(xi: torch.Tensor) -> torch.Tensor:
            return self.b(torch.tanh(self.a(xi))).squeeze(-1)

        return torch.vmap(torch.func.grad(f) if self.grad else f)(x)


@pytest.mark.parametrize("grad", [False, True], ids=["vmap", "vmap of grad"])
def test_a_layer_run_inside_a_torch_func_transform_is_kept_with_the_reason(grad: bool) -> None:
    """Inside ``vmap`` the init's draw of ``v`` is a random op vmap refuses, and its writes to
    ``g`` are of batched values: the call failed (t125). Such layers keep their values."""
    torch.manual_seed(0)
    model, x = _Vmapped(grad), torch.randn(64, 3)
    report = apply_weight_norm(model, (x,), init="data")
    inits = {s.name: s.init or "" for s in report.sites if s.status == "applied"}
    assert inits.keys() == {"a.weight", "b.weight"}
    assert all("runs inside a torch.func transform" in init for init in inits.values()), inits
    assert report.equivalent  # kept: the outputs are the model's as given


class _Aliased(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)
        self.alias = self.a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.alias(x)))


def test_only_takes_a_layer_by_any_of_its_names() -> None:
    """A layer held under two names: ``only=["alias.weight"]`` was refused as no weight-normed
    weight, where ``apply_weight_norm(include="alias")`` takes it (t125). It is initialized,
    reported by its first name; a name of no layer is still refused."""
    torch.manual_seed(0)
    model, x = _Aliased(), torch.randn(64, 8)
    apply_weight_norm(model, (x,))
    report = data_init(model, (x,), only=["alias.weight"])
    assert report.initialized == ["a.weight"] and not report.kept
    with pytest.raises(InvalidArgumentError, match=r"'alias\.bias': no weight-normed weight"):
        data_init(model, (x,), only=["alias.bias"])


class _FusedBiases(nn.Module):
    """Two layers whose biases are views of one tensor, and a counter the forward moves."""

    steps: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = parametrizations.weight_norm(nn.Linear(4, 3))
        self.fc2 = parametrizations.weight_norm(nn.Linear(3, 3))
        fused = torch.zeros(6)
        self.fc1.bias = nn.Parameter(fused[:3])
        self.fc2.bias = nn.Parameter(fused[3:])
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps.add_(1)
        return self.fc2(torch.relu(self.fc1(x)))


def test_biases_that_are_views_of_one_tensor_are_initialized_and_the_state_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Writing one view's bias moved the other's version counter with no copy of it made: the
    state was not given back (its counter stayed at 1) and a warning blamed the forward
    (t129, a regression of the pass's writes made uncopied)."""
    torch.manual_seed(0)
    model, x = _FusedBiases(), torch.randn(64, 4)
    with caplog.at_level("WARNING"):
        report = data_init(model, x)
    assert report.initialized == ["fc1.weight", "fc2.weight"]
    assert int(model.steps) == 0 and not caplog.records
    _check_normalized(_pre_activations(model, x))


class _CapsG(nn.Module):
    """Caps its first layer's g in place before using it; ``caught``: then calls the layer on
    an input of the wrong width and goes on without it; else gives the next layer a
    constant."""

    def __init__(self, caught: bool) -> None:
        super().__init__()
        self.fc = parametrizations.weight_norm(nn.Linear(4, 3))
        self.fc2 = parametrizations.weight_norm(nn.Linear(3, 3))
        self.caught = caught

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.fc.parametrizations.weight.original0.clamp_(max=0.25)
        if self.caught:
            try:
                return self.fc(x[:, :2])
            except RuntimeError:
                return x
        return self.fc2(self.fc(x) * 0)


@pytest.mark.parametrize("caught", [True, False], ids=["op error caught", "call refused"])
def test_a_g_the_forward_wrote_before_the_init_comes_back_as_it_was_given(caught: bool) -> None:
    """The pass's copy of g was taken after the forward capped it: a layer kept for its op's
    error (t129) and a call refused for a later layer's batch (older) left g capped."""
    torch.manual_seed(0)
    model, x = _CapsG(caught), torch.randn(16, 4)
    g = model.fc.parametrizations.weight.original0
    before = g.detach().clone()
    if caught:
        report = data_init(model, x)
        assert "fc.weight" in report.kept
    else:
        with pytest.raises(InvalidArgumentError, match="the same over the batch"):
            data_init(model, x)
    assert torch.equal(g, before)


class _CapsGAfter(nn.Module):
    """Caps its layer's g in place after using it (a weight clipping of its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = parametrizations.weight_norm(nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        with torch.no_grad():
            self.fc.parametrizations.weight.original0.clamp_(max=1e-3)
        return y


def test_a_g_the_forward_writes_after_the_init_ends_as_the_init_set_it() -> None:
    """The forward's own write after the layer's init is given back to the value the init
    set, not kept, and not to the value before the init."""
    torch.manual_seed(0)
    model, x = _CapsGAfter(), torch.randn(64, 4) * 10
    report = data_init(model, x)
    assert report.initialized == ["fc.weight"]
    assert float(model.fc.parametrizations.weight.original0.detach().min()) > 1e-3
    _check_normalized(_pre_activations(nn.Sequential(model.fc), x))


class _FlatBiases(nn.Module):
    """Biases that are views of one memory: halves or every other element of a flat
    parameter of the model's own, or two columns of a table no parameter holds."""

    def __init__(self, views: str) -> None:
        super().__init__()
        self.fc1 = parametrizations.weight_norm(nn.Linear(4, 3))
        self.fc2 = parametrizations.weight_norm(nn.Linear(3, 3))
        if views == "columns":
            table = torch.zeros(3, 2)
            self.fc1.bias, self.fc2.bias = (nn.Parameter(table[:, i]) for i in range(2))
            return
        self.flat = nn.Parameter(torch.zeros(6))
        halves = views == "halves"
        self.fc1.bias = nn.Parameter(self.flat.data[:3] if halves else self.flat.data[0::2])
        self.fc2.bias = nn.Parameter(self.flat.data[3:] if halves else self.flat.data[1::2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.mark.parametrize("views", ["halves", "interleaved", "columns"])
def test_biases_over_which_a_flat_parameter_lies_keep_the_values_set(views: str) -> None:
    """The flat parameter's copy from before the pass was written back over the biases set
    (views of it): both layers said initialized, fc2's means 0.7 to 1 off (t131). Biases
    that share no byte are no one's but their own, however their memory interleaves: they
    were declined, their spans overlapping (t220, t222)."""
    torch.manual_seed(0)
    model, x = _FlatBiases(views), torch.randn(256, 4) * 3 + 5
    assert data_init(model, x).initialized == ["fc1.weight", "fc2.weight"]
    _check_normalized(_pre_activations(model, x))


def test_layers_whose_biases_are_parameters_of_one_memory_are_declined() -> None:
    """``b.bias = nn.Parameter(a.bias.data)``: two parameter objects, one memory; both layers
    were reported initialized, b's mean 0.36 where 0 was promised (t220)."""
    torch.manual_seed(0)
    first, last = nn.Linear(4, 4), nn.Linear(4, 4)
    model = nn.Sequential(first, nn.Tanh(), last)
    apply_weight_norm(model, (torch.randn(2, 4),))
    last.bias = nn.Parameter(first.bias.data)
    report = data_init(model, torch.randn(64, 4))
    assert report.initialized == []
    assert report.kept["0.weight"].startswith("its bias is also 2.bias")
    assert report.kept["2.weight"].startswith("its bias is also 0.bias")


class _OwnBiasBuffer(nn.Linear):
    """A Linear whose bias is a buffer of its own named ``bias``: trainable, or frozen and a
    view of g's memory."""

    def __init__(self, of_g: bool) -> None:
        super().__init__(4, 6)
        parametrizations.weight_norm(self)
        del self.bias
        layer: Any = self
        originals = layer.parametrizations.weight
        held = originals.original0.detach().view(6) if of_g else torch.zeros(6).requires_grad_()
        self.register_buffer("bias", held)


class _HeldTwice(nn.Module):
    """A layer with its own trainable bias buffer, held under two names."""

    def __init__(self) -> None:
        super().__init__()
        self.a = _OwnBiasBuffer(of_g=False)
        self.alias = self.a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.a(x))


def test_a_layer_s_own_bias_buffer_is_its_own_under_every_name_and_no_other_value_s() -> None:
    """t220: the layer's own bias buffer was taken for its own when g's memory was checked
    too (a frozen one viewing g: the pass gave it back, g's old values with it, std 0.46
    reported initialized), and for another's under a second name of the module
    (``m.alias = m.a``: declined, "its bias is also alias.bias")."""
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    held_twice = _HeldTwice()
    assert data_init(held_twice, x).initialized == ["a.weight"]
    _check_normalized(_pre_activations(nn.Sequential(held_twice.a), x))
    over_g = nn.Sequential(_OwnBiasBuffer(of_g=True))
    report = data_init(over_g, x)
    assert report.initialized == []
    assert report.kept["0.weight"].startswith("g is also 0.bias: writing it would change")


class _RowsOfFused(nn.Module):
    """A layer whose weight and bias are rows of a fused layer's (taken with ``.data``): its
    first rows, or every other row with a parameter holding qkv's last row."""

    def __init__(self, other: str) -> None:
        super().__init__()
        self.qkv = nn.Linear(4, 24)
        if other == "twin":  # a parameter of qkv's very memory: no part of it
            self.tw = nn.Parameter(self.qkv.weight.data)
        if other == "float16 twin":  # its bytes, in twice as many elements: no part of it
            self.tw = nn.Parameter(self.qkv.weight.data.view(torch.float16), requires_grad=False)
        rows = slice(0, 24, 2) if other == "strided, and a tail" else slice(0, 8)
        if other == "strided, and a tail":  # with q's rows, it spans qkv, not its odd rows
            self.tail = nn.Parameter(self.qkv.weight.data[23:])
        self.q = nn.Linear(4, 8)
        self.q.weight = nn.Parameter(self.qkv.weight.data[rows])
        self.q.bias = nn.Parameter(self.qkv.bias.data[rows])
        parametrizations.weight_norm(self.q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(torch.tanh(self.qkv(x))[:, :4])


@pytest.mark.parametrize("other", ["alone", "twin", "float16 twin", "strided, and a tail"])
def test_a_value_inside_a_parameter_of_its_own_values_is_declined(other: str) -> None:
    """q's weight and bias are rows of qkv's, which has rows no other parameter holds: no flat
    storage but a value of its own, that writing q's changed, q reported initialized (t221);
    a twin of qkv's memory was taken for a part of it that covers it (t222), and so was one in
    float16 (more elements, the same bytes), or strided rows that span the ones between them
    (t224)."""
    torch.manual_seed(0)
    model = _RowsOfFused(other)
    fused = [model.qkv.weight.detach().clone(), model.qkv.bias.detach().clone()]
    report = data_init(model, torch.randn(64, 4))
    assert report.initialized == []
    assert report.kept["q.weight"].startswith("v is also ")
    assert "qkv.weight" in report.kept["q.weight"]
    assert torch.equal(model.qkv.weight, fused[0]) and torch.equal(model.qkv.bias, fused[1])


def test_a_bias_with_a_twin_in_another_dtype_is_declined() -> None:
    """A float16 view of fc's bias, frozen: it has more elements than the bias, which was
    taken for flat storage of it; apply_weight_norm reported fc initialized and changed the
    twin (t224)."""
    torch.manual_seed(0)
    layer = nn.Linear(4, 8)
    twin = nn.Parameter(layer.bias.data.view(torch.float16), requires_grad=False)
    model = nn.Sequential(layer)
    model.register_parameter("twin", twin)
    before = twin.detach().clone()
    report = apply_weight_norm(model, (torch.randn(64, 4),), init="data")
    inits = {s.name: s.init for s in report.sites if s.status == "applied"}
    assert inits == {"0.weight": "keep: its bias is also twin: writing it would change that "
                     "too, not this layer alone"}  # fmt: skip
    assert torch.equal(twin, before)


def test_a_layer_of_a_wrapping_tensor_subclass_is_declined() -> None:
    """A ``TwoTensor`` weight and bias: all of them at address 0, g was taken for the bias's
    memory ("g is also bias"); data init writes plain tensors, and says so (t226)."""
    from torch.testing._internal.two_tensor import TwoTensor

    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    layer.weight = nn.Parameter(TwoTensor(torch.randn(3, 4), torch.randn(3, 4)))
    layer.bias = nn.Parameter(TwoTensor(torch.zeros(3), torch.zeros(3)))
    report = apply_weight_norm(layer, (torch.randn(64, 4),), init="data")
    assert [s.init for s in report.sites if s.status == "applied"] == [
        "keep: g, v or its bias is a TwoTensor (a tensor subclass wrapping others): data init "
        "writes plain tensors"
    ]


def test_a_wrapper_buffer_over_a_layer_s_bias_is_sharing() -> None:
    """A ``TwoTensor`` buffer whose first tensor is the bias's memory: the wrapper holds no
    bytes itself and no sharing was seen; the pass gave the buffer back, the old bias over the
    one set, and the layer was reported initialized, its means up to 2.1 (t227)."""
    from torch.testing._internal.two_tensor import TwoTensor

    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    model = nn.Sequential(layer)
    model.register_buffer("pair", TwoTensor(layer.bias.data, torch.zeros(3)))
    report = apply_weight_norm(model, (torch.randn(64, 4),), init="data")
    assert [s.init for s in report.sites if s.status == "applied"] == [
        "keep: its bias is also pair: writing it would change that too, not this layer alone"
    ]


@pytest.mark.parametrize("layout", ["coo", "csr", "nested"])
def test_a_sparse_buffer_over_a_layer_s_bias_is_sharing(layout: str) -> None:
    """A sparse buffer whose values are the bias's memory: a sparse tensor has no span, and
    no sharing was seen; the pass gave the CSR one back, the old bias over the one set, and
    the layer was reported initialized, its means up to 1.7 (t231)."""
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    model = nn.Sequential(layer)
    if layout == "coo":
        rows = torch.tensor([[0, 1, 2], [0, 0, 0]])
        aux = torch.sparse_coo_tensor(rows, layer.bias.data, (3, 1))
    elif layout == "nested":  # a strided nested tensor over it (t234)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch: nested tensors are a prototype
            aux = torch.nested.as_nested_tensor(layer.bias.data.view(3, 1))  # 3 parts, 1 name
    else:
        crow, col = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 0])
        aux = torch.sparse_csr_tensor(crow, col, layer.bias.data, (3, 1))
    model.register_buffer("aux", aux)
    report = apply_weight_norm(model, (torch.randn(64, 4),), init="data")
    assert [s.init for s in report.sites if s.status == "applied"] == [
        "keep: its bias is also aux: writing it would change that too, not this layer alone"
    ]


class _LazyAside(nn.Module):
    """A layer beside a lazy one the forward never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.unused = nn.LazyLinear(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x)


def test_a_lazy_layer_the_batch_never_reaches_is_left_alone_by_data_init() -> None:
    """Its parameters hold no values: finding what shares memory with a layer's raised
    "Attempted to use an uninitialized parameter in numel" (an internal error, t226)."""
    torch.manual_seed(0)
    model, x = _LazyAside(), torch.randn(64, 4)
    report = apply_weight_norm(model, (x,), init="data")
    sites = {s.name: (s.status, s.init) for s in report.sites}
    assert sites["a.weight"] == ("applied", "data, v rescaled")
    assert sites["unused.weight"] == ("skipped", None)
    _check_normalized(_pre_activations(nn.Sequential(model.a), x))


class _StoppedAfter(nn.Module):
    """Its mode restored after the pass is where an interrupt lands."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = parametrizations.weight_norm(nn.Linear(4, 3))
        self.armed = False

    def train(self, mode: bool = True) -> _StoppedAfter:
        if self.armed and mode:
            raise KeyboardInterrupt
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class _PlainBias(nn.Module):
    """A first layer whose bias is a plain tensor, and a second given a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = parametrizations.weight_norm(nn.Linear(4, 3))
        del self.fc1.bias
        self.fc1.bias = torch.full((3,), 0.5, requires_grad=True)
        self.fc2 = parametrizations.weight_norm(nn.Linear(3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) * 0)


def test_a_call_that_fails_after_the_pass_or_on_a_plain_bias_gives_every_value_back() -> None:
    """An interrupt as the pass ended (the values set were already kept) left them written;
    a refused call left a plain-tensor bias of a PyTorch layer as the init set it (t131)."""
    torch.manual_seed(0)
    stopped, x = _StoppedAfter(), torch.randn(64, 4)
    before = {k: v.detach().clone() for k, v in stopped.state_dict().items()}
    stopped.train()
    stopped.armed = True
    with pytest.raises(KeyboardInterrupt):
        data_init(stopped, x)
    stopped.armed = False
    assert all(torch.equal(v, before[k]) for k, v in stopped.state_dict().items())
    plain = _PlainBias()
    with pytest.raises(InvalidArgumentError, match="the same over the batch"):
        data_init(plain, x)
    assert plain.fc1.bias.tolist() == [0.5] * 3


class _BufferBias(nn.Module):
    """A first layer whose bias is a buffer the forward moves first, a second given a
    constant."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = parametrizations.weight_norm(nn.Linear(4, 3))
        del self.fc1.bias
        self.fc1.register_buffer("bias", torch.full((3,), 0.5))
        self.fc2 = parametrizations.weight_norm(nn.Linear(3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.fc1.bias.add_(1)
        return self.fc2(self.fc1(x) * 0)


def test_a_refused_call_gives_a_buffer_bias_back_as_given() -> None:
    """The pass's copy of the bias, taken after the forward moved it, was written over the
    buffer the state given back had put back (t133): 1.5 each, where 0.5 was given."""
    torch.manual_seed(0)
    model = _BufferBias()
    with pytest.raises(InvalidArgumentError, match="the same over the batch"):
        data_init(model, torch.randn(16, 4))
    assert model.fc1.bias.tolist() == [0.5] * 3


class _FailsOnCall(nn.Linear):
    """A Linear whose forward raises from its ``fail_at``-th call on."""

    def __init__(self, fail_at: int) -> None:
        super().__init__(4, 3)
        self.calls, self.fail_at = 0, fail_at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls >= self.fail_at:
            raise RuntimeError("shapes cannot be multiplied")
        return super().forward(x)


def test_a_forward_that_raises_is_said_on_the_inputs_it_ran_on() -> None:
    """data_init's batch was said to be "the example inputs" that apply_weight_norm had run
    on without a fault (t140); in apply's own data init the batch is the example inputs."""
    model = _FailsOnCall(fail_at=10**6)
    apply_weight_norm(model, (torch.randn(8, 4),))
    model.fail_at = model.calls + 1
    with pytest.raises(ForwardFailedError) as raised:
        data_init(model, torch.randn(8, 4))
    assert str(raised.value) == (  # its class, not the parametrized one (ParametrizedX)
        "_FailsOnCall: the forward on the batch raised RuntimeError: shapes cannot be multiplied"
    )
    calls = _FailsOnCall(fail_at=10**6)
    apply_weight_norm(calls, (torch.randn(8, 4),))  # how many forwards apply runs before init
    model = _FailsOnCall(fail_at=calls.calls + 1)
    with pytest.raises(ForwardFailedError, match="the forward on the example inputs raised"):
        apply_weight_norm(model, (torch.randn(8, 4),), init="data")
