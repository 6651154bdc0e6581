"""Mean-only batch norm: subtracts the batch mean, keeps a running mean, no division."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.fx.helpers import plain
from wnpass import MeanOnlyBatchNorm, apply_weight_norm
from wnpass.fx.report import apply_summary


def test_subtracts_the_batch_mean_without_scaling() -> None:
    """Train mode: per-channel mean 0 and the input's spread; eval uses the running mean."""
    layer = MeanOnlyBatchNorm(3, momentum=1.0)
    x = 5 * torch.randn(8, 3, 4) + 2
    y = layer(x)
    assert torch.allclose(y.mean(dim=(0, 2)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std(), (x - x.mean(dim=(0, 2), keepdim=True)).std())
    layer.eval()
    assert torch.allclose(layer(x), y, atol=1e-5)


def test_apply_replaces_batch_norm_and_reports_each() -> None:
    """mean_only_bn=True: every BatchNorm2d of the ResNet replaced and reported, opt-in only."""
    model, inputs = plain("resnet")
    report = apply_weight_norm(model, inputs, mean_only_bn=True)
    replaced = [s for s in report.sites if s.status == "replaced"]
    assert len(replaced) == 8 and all(s.op == "BatchNorm2d" for s in replaced)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert report.equivalent is None and model(*inputs).shape == (4, 10)
    # the summary's counts add up: a BatchNorm is no parameter (it said "2 of 7 parameters
    # (4 skipped, 0 already ...)" of a model with 3 parameters and 4 BatchNorms)
    parameters = len(report.sites) - 8
    assert apply_summary(report)[0].startswith(
        f"applied weight norm to {report.applied} of {parameters} parameters ({report.skipped} "
        "skipped, 0 already weight-normed, 8 BatchNorms made mean-only); "
    )
    assert report.applied + report.skipped == parameters
    untouched, inputs = plain("resnet")
    apply_weight_norm(untouched, inputs)
    assert any(isinstance(m, nn.BatchNorm2d) for m in untouched.modules())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_replaced_layer_keeps_the_models_dtype_and_trains(dtype: torch.dtype) -> None:
    """The new layer's bias and running mean were float32 in an fp16 or float64 model: "ok",
    then the first training forward failed (``expected dtype float for 'end'``)."""
    model = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).to(dtype)
    x = torch.randn(6, 8, dtype=dtype)
    assert apply_weight_norm(model, x, mean_only_bn=True)
    layer = model[1]
    assert isinstance(layer, MeanOnlyBatchNorm) and layer.running_mean is not None
    assert layer.bias.dtype == layer.running_mean.dtype == dtype
    model.train()
    assert model(x).dtype == dtype and layer.running_mean.dtype == dtype
    model.eval()
    assert model(x).dtype == dtype


def test_a_batch_norm_under_two_names_is_replaced_under_both() -> None:
    """The layer the forward calls by its second name stayed a BatchNorm, reported replaced."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 4)
            self.bn = self.norm = nn.BatchNorm1d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(self.fc(x))

    model = Net()
    report = apply_weight_norm(model, torch.randn(6, 8), mean_only_bn=True)
    assert [(s.name, s.status) for s in report.sites if s.status == "replaced"] == [
        ("bn", "replaced")
    ]
    assert isinstance(model.norm, MeanOnlyBatchNorm) and model.norm is model.bn


@pytest.mark.parametrize("affine", [True, False])
def test_a_batch_norm_without_running_stats_keeps_the_models_dtype_and_its_batch_mean(
    affine: bool,
) -> None:
    """``track_running_stats=False``: the new layer had a float32 running mean of zeros (and,
    without affine, a float32 bias) in a bfloat16 model, so its outputs were float32; and in
    evaluation it subtracted that 0, where BatchNorm uses the batch's statistics."""
    model = nn.Sequential(
        nn.Linear(8, 4), nn.BatchNorm1d(4, affine=affine, track_running_stats=False)
    ).to(torch.bfloat16)
    x = torch.randn(6, 8, dtype=torch.bfloat16)
    apply_weight_norm(model, x, mean_only_bn=True)
    layer = model[1]
    assert isinstance(layer, MeanOnlyBatchNorm) and layer.running_mean is None
    assert layer.bias.dtype == torch.bfloat16
    for training in (True, False):
        model.train(training)
        y = model(x)
        assert y.dtype == torch.bfloat16
        assert torch.allclose(y.float().mean(0), layer.bias.float(), atol=0.05)  # batch mean out


class _BatchNormAct(nn.BatchNorm2d):
    """The shape of timm's ``BatchNormAct2d``: a BatchNorm whose forward adds an activation."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


def test_a_batch_norm_of_a_subclass_is_kept_and_said() -> None:
    """mean_only_bn replaced timm's ``BatchNormAct2d``, dropping the activation its forward
    adds (33 of EfficientNet-B0's 49 SiLUs), and said only "scale and running variance
    dropped" (t312). A BatchNorm of another class is left as it is and said; where none is
    replaced, the outputs are compared (a SyncBatchNorm model said they changed by design)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), _BatchNormAct(8), nn.Conv2d(8, 4, 3), nn.BatchNorm2d(4)
    )
    x = torch.randn(4, 3, 10, 10)
    report = apply_weight_norm(model, (x,), mean_only_bn=True)
    rows = {s.name: (s.status, s.reason) for s in report.sites if s.status in ("replaced", "kept")}
    assert rows == {
        "1": ("kept", "_BatchNormAct's forward is not BatchNorm's: not made mean-only"),
        "3": ("replaced", "mean-only BatchNorm: scale and running variance dropped"),
    }
    assert isinstance(model[1], _BatchNormAct) and isinstance(model[3], MeanOnlyBatchNorm)
    assert (
        ", 1 BatchNorm made mean-only, 1 BatchNorm of another class kept); "
        in (apply_summary(report)[0])
    )
    assert report.to_dict()["kept"] == 1
    synced = nn.Sequential(nn.Conv2d(3, 8, 3), nn.SyncBatchNorm(8))
    report = apply_weight_norm(synced, (x,), mean_only_bn=True)
    assert [(s.name, s.op) for s in report.sites if s.status == "kept"] == [("1", "SyncBatchNorm")]
    assert report.equivalent is True and not any("by design" in n for n in report.notes)


def test_a_batch_norm_subclass_that_keeps_its_forward_is_made_mean_only() -> None:
    """A subclass that only changes BatchNorm's defaults was kept, said to have a forward of
    its own (t314): it is BatchNorm, made mean-only as such."""

    class FrozenStats(nn.BatchNorm2d):
        def __init__(self, channels: int) -> None:
            super().__init__(channels, momentum=0.01)

    model = nn.Sequential(nn.Conv2d(3, 8, 3), FrozenStats(8))
    report = apply_weight_norm(model, (torch.randn(4, 3, 10, 10),), mean_only_bn=True)
    assert [(s.name, s.status) for s in report.sites if s.op == "FrozenStats"] == [
        ("1", "replaced")
    ]
    assert isinstance(model[1], MeanOnlyBatchNorm) and model[1].momentum == 0.01
