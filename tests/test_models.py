"""Every example model in models/ exports with weight norm in the graph and folds cleanly."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.helpers import assert_close, run, sites_left
from wnpass import fold_onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from export_example import export  # noqa: E402

from wnpass.fx.loading import load_model_py  # noqa: E402

MODELS = sorted(p.name for p in (ROOT / "models").glob("*.py") if not p.name.startswith("_"))


def _feeds(model_py: Path, path: Path) -> dict[str, np.ndarray]:
    _, inputs = load_model_py(model_py)
    assert inputs is not None
    names = [i.name for i in onnx.load(path, load_external_data=False).graph.input]
    return {name: t.numpy() for name, t in zip(names, inputs, strict=True)}


# Under dynamo, one model covers the script's branch: tests/deploy/test_pipeline.py takes every
# model through the dynamo exporter and the ONNX fold (a vocoder's dynamo export takes 12-22 s).
@pytest.mark.parametrize(
    ("name", "dynamo"), [(name, False) for name in MODELS] + [("lstm_lm.py", True)]
)
def test_example_model_folds_to_plain_weights(name: str, dynamo: bool, tmp_path: Path) -> None:
    model_py = ROOT / "models" / name
    path = tmp_path / "model.onnx"
    export(model_py, path, dynamo=dynamo)
    before = sites_left(path)
    assert before > 0
    _, report = fold_onnx(path, tmp_path / "folded.onnx")
    assert report.folded == before and report.declined == 0
    assert sites_left(tmp_path / "folded.onnx") == 0
    onnx.checker.check_model(tmp_path / "folded.onnx", full_check=True)
    feeds = _feeds(model_py, path)
    assert_close(run(tmp_path / "folded.onnx", feeds), run(path, feeds))
