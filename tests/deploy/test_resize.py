"""Example inputs made another length for the probes: the added elements are new values,
within the input's domain, so that a branch that drops them shows; and a probe that cannot be
run (a length below 0, an empty input) says why."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from wnpass.deploy import export
from wnpass.fx.forward import Batch


class _DropsOddLast(nn.Module):
    """A per-point MLP and a max over the points (PointNet-like); an odd count of points
    drops its last one, a branch both exporters fix at the example's even count."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mlp = nn.Sequential(weight_norm(nn.Conv1d(3, 32, 1)), nn.ReLU(), nn.Conv1d(32, 32, 1))
        self.head = nn.Linear(32, 4)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if points.shape[2] % 2:
            points = points[:, :, :-1]
        return self.head(self.mlp(points).amax(2))


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_a_branch_behind_a_max_shows_at_the_probes(exporter: str, tmp_path: Path) -> None:
    """At 2n + 1 points the added point was a copy of the first, which a max over points
    keeps as it was whether the branch drops it or not: the file, wrong at every odd count,
    was published as verified (t98). A float input's added copies are scaled now, so the
    added point is a new one, and the odd probe fails."""
    out = tmp_path / "m.onnx"
    points = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(1))
    dynamic = {"points": {0: "batch", 2: "count"}}
    report = export(_DropsOddLast(), (points,), out, exporter=exporter, dynamic=dynamic, runs=1)
    odd = [p for p in report.dynamic if p.sizes == "doubled plus one" and p.bound is None]
    assert odd and not all(odd[0].comparisons["cpu"])
    assert report.matches is False and not out.exists()


class _MaskedMean(nn.Module):
    """A masked mean of token embeddings, the mask viewed as ``(batch, -1)``, as GPT-2 views
    its attention mask: torch.export derives the mask's batch from the ids' sizes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = weight_norm(nn.Embedding(50, 8))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.view(ids.shape[0], -1)
        h = self.emb(ids) * mask[..., None]
        return h.sum(1) / mask.sum(1, keepdim=True)


def test_a_probe_that_empties_a_derived_axis_is_not_tried(tmp_path: Path) -> None:
    """Below the ids' range, at 1, the mask's derived batch was 0: PyTorch ran on an empty
    mask, both outputs were NaN, nothing was compared there, and the file, right at every
    size, was refused (t98). An input made empty is no probe: not tried, said so."""
    out = tmp_path / "m.onnx"
    mask = torch.ones(2, 10)
    mask[1, 6:] = 0
    ids = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(1))
    dynamic = {"ids": {0: "b", 1: "t"}, "mask": {0: "mb", 1: "mt"}}
    report = export(_MaskedMean(), (ids, mask), out, dynamic=dynamic, runs=1)
    assert all(0 not in shape for p in report.dynamic for shape in p.inputs.values())
    assert report.matches is True and out.exists()
    assert any("not tried at 0, where it does not hold: an empty input" in s for s in report.sizes)


def test_a_probe_that_cannot_be_run_says_why() -> None:
    """A derived length below 0 (``s0 - 3`` probed at 2) would have reached torch.narrow and
    ended the export with an internal error; a length tied to two sizes has no one value."""
    from wnpass.deploy.resize import runs_at

    assert runs_at(nn.Identity(), Batch((torch.ones(1, 4),), {}), {}, {("x", 1): -1}) == (
        "a length below 0"
    )
    assert runs_at(nn.Identity(), Batch((torch.ones(1, 4),), {}), {}, {("x", 1): None}) == (
        "its length also depends on another dynamic size"
    )


class _Hyperbolic(nn.Module):
    """``acosh`` of points that must stay at 1 or above, then a max over them."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = weight_norm(nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.acosh(x).amax(1))


def test_added_copies_stay_in_the_inputs_domain_where_scaled_ones_leave_it(
    tmp_path: Path,
) -> None:
    """The added copies scaled towards 0 put points below 1, where ``acosh`` is NaN, and the
    runtimes place a max's NaN differently: a file right at every size was refused (t100).
    Where PyTorch gives NaN or Inf there, the copies are the midpoints of the example's
    points, which stay at 1 or above, and the file is compared and published."""
    out = tmp_path / "m.onnx"
    x = 1 + torch.rand(2, 6, 4, generator=torch.Generator().manual_seed(1)) * 0.1
    report = export(_Hyperbolic(), (x,), out, dynamic={"x": {1: "points"}}, runs=1)
    probes = [p for p in report.dynamic if p.bound is None]
    assert probes and all(p.compared and all(p.comparisons["cpu"]) for p in probes)
    assert report.matches is True and out.exists()
