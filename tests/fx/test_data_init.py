"""Data-dependent init: every weight-normed layer starts at mean 0, std 1 per unit on the batch."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from tests.fx.helpers import plain, rel_error
from wnpass import apply_weight_norm, data_init
from wnpass.errors import InvalidArgumentError

# data init computes mu and sigma in float64 from float32 outputs; the layer then recomputes its
# output in float32, so the normalized pre-activations are exact up to float32 rounding of sums
# over the batch: 1e-4 is ~100x that, and an unnormalized layer is off by order 1.
STAT_ATOL = 1e-4


_LAYERS = nn.Linear | nn.Conv1d | nn.Conv2d | nn.ConvTranspose1d


def _pre_activations(model: nn.Module, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(lambda m, a, o, n=name: outputs.__setitem__(n, o))
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
        (torch.randn(1, 8), "gives layer 0 (Linear) 1 value per output unit"),
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
    """A conv whose output is reshaped: no channel axis data init could know."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).flatten()


class _FlattenedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head, self.unused = _Flattened(2, 4, 3), nn.Linear(32, 3), nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).reshape(len(x), 32))


def test_a_layer_without_a_known_channel_axis_is_declined_and_kept() -> None:
    """A layer whose output has neither conv layout is declined with the reason and keeps
    its values, as does a layer the batch never reaches (both were left redrawn)."""
    torch.manual_seed(0)
    model = _FlattenedNet()
    apply_weight_norm(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = data_init(model, torch.randn(4, 2, 10))
    assert report.initialized == ["head.weight"]
    assert "output is 1-D where its input is 3-D (reshaped)" in report.kept["conv.weight"]
    assert report.kept["unused.weight"] == "not called on the batch"
    after = model.state_dict()
    for key in before:
        if not key.startswith("head."):
            assert torch.equal(after[key], before[key]), key


class _FlattenedAfter(nn.Conv1d):
    """A conv whose output is ``(N, C*L)``: with N == C, its rank is an unbatched output's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).flatten(1)


@pytest.mark.parametrize("batch", [2, 3], ids=["N==C", "N!=C"])
def test_an_output_flattened_to_the_unbatched_rank_is_not_read_as_unbatched(batch: int) -> None:
    """``(N, C*L)`` from a batched input: with N == C it was taken for ``(C, L)`` and
    "initialized" per sample, with N != C it raised (exit 3). The input's rank says batched,
    the output's does not fit: declined, values kept."""
    torch.manual_seed(0)
    model = nn.Sequential(_FlattenedAfter(3, 2, 1))
    apply_weight_norm(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = data_init(model, torch.randn(batch, 3, 50))
    assert report.initialized == []
    assert "output is 2-D where its input is 3-D (reshaped)" in report.kept["0.weight"]
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)


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
    outputs = _pre_activations(model, x, mask)
    assert sorted(outputs) == ["c1", "c2"]
    _check_normalized(outputs)
