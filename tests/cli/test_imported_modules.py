"""Every command that runs a model.py reads the modules it imports: none writes onto one.

train-rewrite's ``-o`` is tested beside the command (tests/cli/test_train_rewrite.py); here the
other commands that load a model.py, each with a ``--json`` naming the module it imports.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from wnpass.cli import main

HELPER_SOURCE = "import torch\ndef make():\n    return torch.nn.Sequential(torch.nn.Linear(4, 3))\n"


@pytest.fixture
def helper_name() -> Iterator[str]:
    """A module name of this test's own, imported by the model.py, then forgotten."""
    name = f"wnpass_test_helper_{uuid.uuid4().hex}"
    yield name
    for loaded in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[loaded]


def _model_py(folder: Path, helper: str) -> Path:
    (folder / f"{helper}.py").write_text(HELPER_SOURCE)
    model = folder / "model.py"
    model.write_text(
        f"import torch\nfrom {helper} import make\ndef build_model():\n    return make()\n"
        "def example_inputs():\n    return (torch.randn(2, 4),)\n"
    )
    return model


def _checkpoint(folder: Path) -> Path:
    """A legacy weight-norm pair of the helper's layer ``0``, and its bias."""
    path = folder / "wn.pt"
    v = torch.randn(3, 4)
    torch.save(
        {"0.weight_g": v.norm(dim=1, keepdim=True), "0.weight_v": v, "0.bias": torch.zeros(3)}, path
    )
    return path


COMMANDS: dict[str, Callable[[Path, Path], list[str]]] = {
    "inspect": lambda model, json: ["inspect", str(model), "--json", str(json)],
    "export": lambda model, json: [
        "export",
        str(model),
        "-o",
        str(model.with_name("m.onnx")),
        "--json",
        str(json),
    ],
    "fold --model": lambda model, json: [
        "fold",
        str(_checkpoint(model.parent)),
        "--model",
        str(model),
        "--json",
        str(json),
    ],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_json_onto_a_module_the_model_py_imports_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], helper_name: str, command: str
) -> None:
    """``--json helper.py`` where model.py does ``from helper import make`` replaced the
    helper module by the report (exit 0); it is read as much as the model.py: exit 2, and
    nothing is written. A JSON report's name must end with .json now, which refuses it
    first; the plan's own refusal of the module is the library's net."""
    model = _model_py(tmp_path, helper_name)
    helper = tmp_path / f"{helper_name}.py"
    argv = COMMANDS[command](model, helper)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "py: a JSON report's name must end with .json" in err
    assert len(err.strip().splitlines()) == 1
    assert helper.read_text() == HELPER_SOURCE
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == before


LAZY_MODEL = """\
import importlib.util
import pathlib
import torch
import {name}

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        {how}
        return late.act(self.fc(x))

def build_model():
    return Net()

def example_inputs():
    return (torch.randn(2, 4),)
"""
LATE_SOURCE = "import torch\ndef act(x):\n    return torch.tanh(x)\n"
HOW = {
    "an import in forward": "from {name} import late",
    "importlib from a file": (
        "spec = importlib.util.spec_from_file_location('late', "
        "pathlib.Path({name}.__file__).with_name('late.py')); "
        "late = importlib.util.module_from_spec(spec); spec.loader.exec_module(late)"
    ),
}


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("command", ["train-rewrite", "inspect"])
def test_an_output_onto_a_module_the_forward_loads_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], helper_name: str, how: str, command: str
) -> None:
    """A module that the forward imports (``from package import late`` in ``forward``, or
    ``importlib``'s ``exec_module`` of a file, which never enters ``sys.modules``) was not
    seen when model.py was loaded: ``--json`` onto it replaced it (exit 0). Every file
    the user's code reads, in the forwards too, is read by the run."""
    (package := tmp_path / helper_name).mkdir()
    (package / "__init__.py").write_text("")
    late = package / "late.py"
    late.write_text(LATE_SOURCE)
    model = tmp_path / "model.py"
    model.write_text(LAZY_MODEL.format(name=helper_name, how=HOW[how].format(name=helper_name)))
    # --json: an output of train-rewrite named .py is refused by its name (-o: a .pt)
    assert main([command, str(model), "--json", str(late)]) == 2
    err = capsys.readouterr().err
    assert f"{late}: a JSON report's name must end with .json" in err  # refused first
    assert len(err.strip().splitlines()) == 1
    assert late.read_text() == LATE_SOURCE
    assert sorted(p.name for p in package.iterdir()) == ["__init__.py", "late.py"]
