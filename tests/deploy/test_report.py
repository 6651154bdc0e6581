"""What the export report says: an unverified export compared nothing, outputs or probes with
nothing to compare verify nothing, a site declined over the model's weight keeps the file from
deploying where one over a filter given at run time does not, and its JSON never replaces the
exported model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from tests.deploy.helpers import ROOT, unused_first
from wnpass.deploy import export
from wnpass.fx.forward import Batch
from wnpass.fx.loading import load_model_py


class _GivenFilter(nn.Module):
    """A filter the caller passes in, normalized to unit norm before the convolution, with a
    learned gain: no parameter is weight-normed (dynamic filtering, t75)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv1d(4, 4, 1)
        self.gain = nn.Parameter(torch.rand(4, 1, 1) + 0.5)

    def forward(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        k = self.gain * F.normalize(kernel, dim=(1, 2))  # type: ignore[arg-type]  # (stub: int)
        return self.proj(F.conv1d(x, k, padding=1))


class _TimesItsDirection(nn.Module):
    """``(x * v) / ||v||``, as written: the norm of a weight inside an activation's product."""

    def __init__(self) -> None:
        super().__init__()
        self.v = nn.Parameter(torch.randn(1, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.v) / self.v.norm(dim=1, keepdim=True)


def test_a_site_declined_over_a_weight_of_the_models_keeps_the_file_from_deploying(
    tmp_path: Path,
) -> None:
    """TorchScript keeps ``(x * v) / ||v||``: a declined site whose v is the model's weight,
    not given at run time, is no weight computed at run time (t79: no test told them apart)."""
    out = tmp_path / "m.onnx"
    report = export(_TimesItsDirection(), (torch.randn(2, 4),), out, exporter="torchscript", runs=1)
    (site,) = report.onnx_fold.sites
    assert (site.status, site.fed_by) == ("declined", None)
    assert report.run_time_weights == [] and not report.folded_whole and not report.published


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_a_filter_given_at_run_time_does_not_keep_the_file_from_deploying(
    exporter: str, tmp_path: Path
) -> None:
    """The norm of the filter is a site whose v is a graph input: declined, as nothing can fold
    it, and the export said NOT DEPLOYABLE and wrote nothing though ONNX Runtime matched."""
    inputs = Batch((torch.randn(2, 4, 32), torch.randn(4, 4, 3)), {})
    out = tmp_path / "m.onnx"
    report = export(_GivenFilter(), inputs, out, exporter=exporter, runs=1)
    assert report and report.folded_whole and report.published and out.exists()
    (site,) = report.run_time_weights
    assert (site.status, site.fed_by) == ("declined", "kernel")
    assert report.to_dict()["run_time_weights"] == [site.name]


class _WithEmpty(nn.Module):
    """Also returns an output empty by construction (``y[:0]``); ``only_empty``: nothing else."""

    def __init__(self, only_empty: bool) -> None:
        super().__init__()
        self.fc = weight_norm(nn.Linear(8, 4))
        self.only_empty = only_empty

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = self.fc(x)
        return (y[:0],) if self.only_empty else (y, y[:0])


@pytest.mark.parametrize("only_empty", [False, True], ids=["beside-a-real-one", "alone"])
def test_an_empty_output_is_not_compared_and_only_fails_when_alone(
    only_empty: bool, tmp_path: Path
) -> None:
    """An output empty by construction beside a compared one does not block the export; a
    model whose every output is empty proved nothing and is not published."""
    torch.manual_seed(0)
    out = tmp_path / "m.onnx"
    report = export(_WithEmpty(only_empty), (torch.randn(2, 8),), out, runs=1)
    assert report.matches is (not only_empty) and out.exists() is (not only_empty)
    assert any(c.uncompared for comparisons in report.comparisons.values() for c in comparisons)
    assert bool(report.to_dict()["nothing_compared"]) is only_empty


def test_an_unverified_export_says_it_compared_nothing(tmp_path: Path) -> None:
    """Without verification nothing was compared: ``matches`` is None, not True, and the
    JSON says so; the export itself succeeded, so the report is still true."""
    model, inputs = unused_first()
    report = export(model, inputs, tmp_path / "m.onnx", verify=False)
    assert report.verified is False and report.matches is None and report.comparisons == {}
    assert report and report.published and (tmp_path / "m.onnx").exists()
    data = report.to_dict()
    assert data["verified"] is False and data["matches"] is None and data["ok"] is True


def test_an_export_reports_json_never_replaces_the_exported_model(tmp_path: Path) -> None:
    """``ExportReport.write_json`` without a plan wrote over the model it reported on."""
    from wnpass.errors import OutputError

    model, inputs = load_model_py(ROOT / "models" / "mlp.py")
    assert inputs is not None
    out = tmp_path / "mlp.onnx"
    report = export(model, inputs, out, exporter="torchscript", verify=False)
    before = out.read_bytes()
    with pytest.raises(OutputError, match=r"the exported model .*which the report is about"):
        report.write_json(out)
    assert out.read_bytes() == before
    report.write_json(tmp_path / "r.json")


def test_a_probe_whose_every_output_is_nan_in_both_verifies_no_axis() -> None:
    """A probe whose outputs were NaN alike in both compared nothing, yet its axes were said
    verified at another length ("deployable ..., also with every dynamic axis doubled", and
    ``compared_at_example_only`` empty, t100)."""
    from wnpass.deploy import DynamicProbe, ExportReport
    from wnpass.report import FoldReport
    from wnpass.verify.compare import compare_outputs

    nan = np.full(3, np.nan, np.float32)
    vacuous = compare_outputs(["y"], [nan], ["y"], [nan.copy()])
    matched = compare_outputs(["y"], [np.ones(3, np.float32)], ["y"], [np.ones(3, np.float32)])
    report = ExportReport("m.onnx", "dynamo", None, FoldReport())
    report.dynamic_axes = ["axis 0 of x", "axis 1 of x"]
    report.dynamic = [
        DynamicProbe("doubled", comparisons={"cpu": vacuous}, resized=["axis 0 of x"]),
        DynamicProbe("doubled", comparisons={"cpu": matched}, resized=["axis 1 of x"]),
    ]
    assert [p.compared for p in report.dynamic] == [False, True]
    assert report.compared_at_example_only == ["axis 0 of x"]
