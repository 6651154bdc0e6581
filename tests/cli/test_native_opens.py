"""A file that the model.py's native code opens (safetensors reads in Rust, where Python
raises no ``open`` audit event) is read by the run: no output or ``--json`` replaces it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from wnpass.cli import main

MODEL = """\
import pathlib
import safetensors.torch
import torch

HERE = pathlib.Path(__file__).parent

def build_model():
    model = torch.nn.Linear(4, 3)
    model.load_state_dict(safetensors.torch.load_file(str(HERE / "w.pt")))
    return model

def example_inputs():
    return (torch.randn(2, 4),)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify: Linux")
@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["inspect", "{model}", "--json", "{weights}"], "w.json"),
        (["train-rewrite", "{model}", "-o", "{weights}"], "w.pt"),
        (["train-rewrite", "{model}", "-o", "{out}", "--json", "{weights}"], "w.json"),
    ],
)
def test_an_output_onto_weights_the_model_py_loads_natively_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], name: str
) -> None:
    """``build_model`` loads w.safetensors with ``safetensors.torch.load_file``; ``--json
    w.safetensors`` (or ``-o``) replaced the weights with the report (exit 0). Exit 2, one
    line, and nothing written. The file is named as the output may be here (``w.json``,
    ``w.pt``: safetensors reads any name), so that its name does not refuse it first."""
    weights = tmp_path / name
    safetensors.torch.save_file(torch.nn.Linear(4, 3).state_dict(), weights)
    data = weights.read_bytes()
    model = tmp_path / "model.py"
    model.write_text(MODEL.replace('"w.pt"', f'"{name}"'))
    names = {"model": model, "weights": weights, "out": tmp_path / "out.pt"}
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([arg.format(**names) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert (
        f"would overwrite a file opened while the model.py's code ran (by it or another process) "
        f"{weights}, which that code may read or write; refused" in err
    )  # it may have written it, not read it: "which this run reads" (t138)
    assert len(err.strip().splitlines()) == 1
    assert weights.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == before
