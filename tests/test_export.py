"""The deployment pipeline on every example model: both exporters, folding in PyTorch first
or not; the ONNX output has no weight-norm site left, matches PyTorch, and names its weights
after the PyTorch parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tests.helpers import run, sites_left
from wnpass.errors import InvalidArgumentError
from wnpass.export import export
from wnpass.fx.loading import load_model_py

ROOT = Path(__file__).resolve().parents[1]

MODELS = sorted(p.stem for p in (ROOT / "models").glob("*.py") if not p.name.startswith("_"))
# ONNX's LSTM/GRU/RNN take the gate weights reordered and stacked: no initializer can carry
# the PyTorch name of one of them.
RECURRENT = (".weight_ih_l", ".weight_hh_l")


@pytest.mark.parametrize("fold_in_torch", [True, False], ids=["torch-fold", "onnx-fold"])
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("name", MODELS)
def test_example_model_deploys_clean(
    name: str, exporter: str, fold_in_torch: bool, tmp_path: Path
) -> None:
    model, inputs = load_model_py(ROOT / "models" / f"{name}.py")
    assert inputs is not None
    out = tmp_path / f"{name}.onnx"
    report = export(model, inputs, out, exporter=exporter, fold_in_torch=fold_in_torch, runs=1)
    assert report, report.to_dict()
    assert sites_left(out) == 0
    onnx.checker.check_model(out, full_check=True)
    assert report.comparisons["cpu"] and all(report.comparisons["cpu"])
    assert [n for n in report.names_missing if not any(r in n for r in RECURRENT)] == []
    if fold_in_torch:
        assert report.torch_fold is not None and report.torch_fold.folded > 0
        assert report.onnx_fold.folded == 0
    else:
        assert report.onnx_fold.folded > 0
    model(*inputs)  # the caller's model still runs, weight norm and all


def test_dynamic_batch_axis(tmp_path: Path) -> None:
    model, inputs = load_model_py(ROOT / "models" / "mlp.py")
    assert inputs is not None
    out = tmp_path / "mlp.onnx"
    report = export(
        model,
        inputs,
        out,
        exporter="torchscript",
        dynamic={"x": {0: "batch"}},
        runs=1,
    )
    assert report
    batch = np.random.default_rng(0).standard_normal((7, 64)).astype(np.float32)
    (result,) = run(out, {"x": batch})
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(InvalidArgumentError, match=r"the model.s inputs are x"):
        export(model, inputs, out, dynamic={"mel": {0: "b"}})


def test_a_failed_verification_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When ONNX Runtime's outputs differ from PyTorch's (here: PyTorch's are shifted), the
    staged model is checked, found different, and never appears under the output's name."""
    import wnpass.export as export_module

    real = export_module._numpy_outputs
    monkeypatch.setattr(
        export_module, "_numpy_outputs", lambda outputs: [a + 1.0 for a in real(outputs)]
    )
    model, inputs = load_model_py(ROOT / "models" / "mlp.py")
    assert inputs is not None
    out = tmp_path / "mlp.onnx"
    report = export(model, inputs, out, exporter="torchscript", runs=1)
    assert not report and not report.matches and report.published is False
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.setattr(export_module, "_numpy_outputs", real)
    report = export(model, inputs, out, exporter="torchscript", runs=1)
    assert report and report.published and out.exists()
