"""``wnpass inspect --strict``: a gate for pipelines that guard a folder of exported models."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from tests.helpers import onnx_model, rand
from tests.hostile.conftest import WN
from wnpass.cli import main

# A plain weight stored transposed: MatMul reads Transpose(W), a weight computed at run time.
TRANSPOSED = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[N, 4] x) => (float[N, 3] y) {
        wt = Transpose <perm = [1, 0]> (w)
        y = MatMul(x, wt)
    }
"""


def _save(tmp_path: Path, name: str, model: onnx.ModelProto) -> Path:
    path = tmp_path / name
    onnx.save(model, path)
    return path


def test_strict_fails_on_foldable_sites_and_passes_once_folded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _save(tmp_path, "model.onnx", onnx_model(WN, v=rand(3, 4), g=rand(3, 1)))
    assert main(["inspect", str(path), "--strict", "--json", str(tmp_path / "r.json")]) == 1
    assert "STRICT: 1 left to fold" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["remaining"] == 1
    assert main(["inspect", str(path)]) == 0  # without --strict, an inspection only
    assert main(["fold", str(path)]) == 0
    assert main(["inspect", str(tmp_path / "model.folded.onnx"), "--strict"]) == 0


def test_strict_fails_on_weights_computed_from_constants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _save(tmp_path, "t.onnx", onnx_model(TRANSPOSED, w=rand(3, 4)))
    assert main(["inspect", str(path), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "weights computed from constants" in out and "Transpose" in out
    assert main(["inspect", str(path), "--strict", "--weight-norm-only"]) == 0
    assert main(["fold", str(path)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "t.folded.onnx"), "--strict"]) == 0
    folded = onnx.load(tmp_path / "t.folded.onnx")
    assert [n.op_type for n in folded.graph.node] == ["MatMul"]


def test_fold_weight_norm_only_keeps_computed_weights(tmp_path: Path) -> None:
    path = _save(tmp_path, "t.onnx", onnx_model(TRANSPOSED, w=rand(3, 4)))
    assert main(["fold", str(path), "--weight-norm-only"]) == 0
    folded = onnx.load(tmp_path / "t.folded.onnx")
    assert [n.op_type for n in folded.graph.node] == ["Transpose", "MatMul"]


def test_strict_on_a_checkpoint_gates_on_weight_norm_pairs(tmp_path: Path) -> None:
    import torch

    state = {"conv.weight_g": torch.rand(4, 1, 1), "conv.weight_v": torch.randn(4, 2, 3)}
    torch.save(state, tmp_path / "g.pt")
    assert main(["inspect", str(tmp_path / "g.pt"), "--strict"]) == 1
    assert main(["fold", str(tmp_path / "g.pt")]) == 0
    assert main(["inspect", str(tmp_path / "g.folded.pt"), "--strict"]) == 0


def test_strict_is_for_onnx_files_and_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m.py").write_text(
        "import torch\ndef build_model():\n    return torch.nn.Linear(2, 2)\n"
    )
    assert main(["inspect", str(tmp_path / "m.py"), "--strict"]) == 2
    assert "--strict and --weight-norm-only are for" in capsys.readouterr().err
