"""Mean-only batch norm: subtracts the batch mean, keeps a running mean, no division."""

from __future__ import annotations

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
