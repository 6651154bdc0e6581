"""An export that fails its check on floats says whether PyTorch itself, its weights moved by
one ulp, fails the tolerance too (a model that amplifies rounding), as check says it of an
ONNX reference; the weights are given back bit for bit."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from wnpass.deploy import export
from wnpass.deploy.moved import weights_moved
from wnpass.verify.report import ulp_note


class _Amplifying(nn.Module):
    """sin(3e4 * fc(x)): an ulp of a weight moves the output far beyond any tolerance."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.fc = weight_norm(nn.Linear(64, 64))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.scale * self.fc(x))


def _model(scale: float) -> _Amplifying:
    torch.manual_seed(0)
    model = _Amplifying(scale)
    with torch.no_grad():  # gains away from the norms: the folded weights round otherwise
        model.fc.parametrizations.weight.original0.mul_(1.37)
    return model


def test_a_model_that_amplifies_rounding_is_said_to_by_pytorch_moved(tmp_path: Path) -> None:
    """An iSTFTNet decoder with random weights failed export --verify with "42246 of 42262
    elements outside" and no word that PyTorch itself moves so (t301)."""
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    report = export(_model(3e4), (x,), tmp_path / "m.onnx", verify=True)
    assert not report and not report.published
    (row,) = report.comparisons["cpu"]
    assert row.ulp_passed is False and row.ulp_max_abs is not None and row.ulp_max_abs > 1e-3
    note = ulp_note(row, "PyTorch")
    assert note is not None and note.startswith("PyTorch with each weight moved by one ulp fails")


def test_no_note_where_the_export_matches(tmp_path: Path) -> None:
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    report = export(_model(1.0), (x,), tmp_path / "m.onnx", verify=True)
    assert report and report.published
    assert all(row.ulp_passed is None for row in report.comparisons["cpu"])


def test_the_moved_weights_are_given_back_bit_for_bit() -> None:
    """Weights of two dimensions and up move (an ulp each, whole numbers kept), and come back
    as they were; a bias stays."""
    model = _model(1.0)
    with torch.no_grad():
        model.fc.parametrizations.weight.original1[0, :4] = torch.tensor([0.0, 1.0, -2.0, 3.0])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with weights_moved(model) as moved:
        assert moved
        now = dict(model.named_parameters())
        v = "fc.parametrizations.weight.original1"
        changed = now[v] != before[v]
        assert changed.float().mean() > 0.99 and not changed[0, :4].any()
        ulps = torch.nextafter(before[v], torch.full_like(before[v], float("inf"))) - before[v]
        assert ((now[v] - before[v]).abs() <= ulps.abs() * 1.01).all()
        torch.testing.assert_close(now["fc.bias"], before["fc.bias"], rtol=0, atol=0)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
