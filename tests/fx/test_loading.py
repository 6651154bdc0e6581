"""model.py loading: the model and its inputs, and one clear error per way it can fail."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from torch import nn

from tests.fx.helpers import PLAIN
from wnpass import load_model_py
from wnpass.errors import OutputError
from wnpass.fx.errors import (
    FactoryFailedError,
    FactoryNotFoundError,
    ModelFileNotFoundError,
    ModelImportError,
    ModelSyntaxError,
    NotAModuleError,
    NotInputsError,
)
from wnpass.plan import IOPlan


def test_loads_model_and_example_inputs() -> None:
    """build_model() and example_inputs() of a plain example model."""
    model, inputs = load_model_py(PLAIN / "mlp.py")
    assert isinstance(model, nn.Module) and inputs is not None and inputs[0].shape == (4, 64)


def test_factory_by_name_and_no_inputs(tmp_path: Path) -> None:
    """--factory picks another function; a file without example_inputs() gives None."""
    path = tmp_path / "m.py"
    path.write_text("import torch\ndef make():\n    return torch.nn.Linear(2, 3)\n")
    model, inputs = load_model_py(path, "make")
    assert isinstance(model, nn.Linear) and inputs is None


@pytest.mark.parametrize(
    ("source", "factory", "error", "message"),
    [
        (None, None, ModelFileNotFoundError, "no such file"),
        ("def build_model(:\n", None, ModelSyntaxError, "m.py:1: syntax error"),
        ("import no_such_module_xyz\n", None, ModelImportError, "ModuleNotFoundError"),
        ("def build():\n    pass\n", None, FactoryNotFoundError, "no factory build_model()"),
        ("def build_model():\n    pass\n", "other", FactoryNotFoundError, "no factory other()"),
        ("def build_model():\n    raise ValueError('bad size')\n", None, FactoryFailedError,
         "build_model() raised ValueError: bad size"),
        ("def build_model():\n    return 3\n", None, NotAModuleError, "returned int"),
        ("import torch\ndef build_model():\n    return torch.nn.Linear(1, 1)\n"
         "def example_inputs():\n    raise KeyError('x')\n", None, FactoryFailedError,
         "example_inputs() raised KeyError"),
        ("import torch\ndef build_model():\n    return torch.nn.Linear(1, 1)\n"
         "def example_inputs():\n    return {'x': torch.ones(1)}\n", None, NotInputsError,
         "example_inputs() returned a dict; expected a tensor or a tuple of tensors"),
        ("import torch\ndef build_model():\n    return torch.nn.Linear(1, 1)\n"
         "def example_inputs():\n    pass\n", None, NotInputsError,
         "example_inputs() returned None; expected a tensor or a tuple of tensors"),
        # a value where the function belongs was said as no example_inputs() at all (t105)
        ("import torch\ndef build_model():\n    return torch.nn.Linear(1, 1)\n"
         "example_inputs = (torch.ones(2, 1),)\n", None, NotInputsError,
         "m.py: example_inputs is a tuple, not a function: define example_inputs() to return "
         "a tensor or a tuple of tensors"),
        # sys.exit() is the file's failure, never the end of the caller's process
        ("import sys\nsys.exit(0)\n", None, ModelImportError,
         "m.py: running the file called sys.exit(0)"),
        ("def build_model():\n    raise SystemExit(3)\n", None, FactoryFailedError,
         "m.py: build_model() called sys.exit(3)"),
        ("import torch\ndef build_model():\n    return torch.nn.Linear(1, 1)\n"
         "def example_inputs():\n    exit('no data')\n", None, FactoryFailedError,
         "m.py: example_inputs() called sys.exit('no data')"),
    ],
)  # fmt: skip
def test_broken_model_py_says_which_step(
    tmp_path: Path, source: str | None, factory: str | None, error: type, message: str
) -> None:
    """Each failure raises its own error type with a one-line message naming the step."""
    path = tmp_path / "m.py"
    if source is not None:
        path.write_text(source)
    with pytest.raises(error) as caught:
        load_model_py(path, factory)
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_a_coding_line_is_honoured_as_python_honours_it(tmp_path: Path) -> None:
    """A PEP 263 coding line names the file's encoding (``python m.py`` runs it): the file is
    compiled from its bytes, not decoded as UTF-8 first."""
    path = tmp_path / "m.py"
    source = (
        "# -*- coding: latin-1 -*-\n"
        "import torch\n"
        "NAME = 'café'\n"
        "def build_model():\n"
        "    model = torch.nn.Linear(2, 3)\n"
        "    model.name = NAME\n"
        "    return model\n"
    )
    path.write_bytes(source.encode("latin-1"))
    model, _ = load_model_py(path)
    assert model.name == "café"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"x = 1\nname = 'caf\xe9'\n", r"m\.py:2: syntax error: .*can't decode byte 0xe9"),
        (b"# coding: no-such-codec\nx = 1\n", r"m\.py: syntax error: unknown encoding"),
        (b"x = 1\0\n", r"m\.py: syntax error: .*null bytes"),
    ],
)
def test_a_file_not_valid_in_its_encoding_is_a_syntax_error(
    tmp_path: Path, data: bytes, message: str
) -> None:
    """Bytes not valid in the declared (or default UTF-8) encoding are the user's file: one
    line naming it, as a syntax error (exit 2), not an internal error."""
    path = tmp_path / "m.py"
    path.write_bytes(data)
    with pytest.raises(ModelSyntaxError, match=message) as caught:
        load_model_py(path)
    assert "\n" not in str(caught.value)


def test_a_model_py_runs_with_its_own_future_imports_only(tmp_path: Path) -> None:
    """``python model.py`` evaluates annotations; the loader's own ``from __future__ import
    annotations`` must not reach the file (its annotations became strings)."""
    path = tmp_path / "model.py"
    path.write_text(
        "from torch import nn\n"
        "def f(x: int) -> None: ...\n"
        "def build_model():\n"
        "    assert f.__annotations__['x'] is int, f.__annotations__\n"
        "    return nn.Linear(2, 2)\n"
    )
    model, _ = load_model_py(path)
    assert isinstance(model, nn.Linear)


def test_a_keyboard_interrupt_in_the_file_is_not_its_error(tmp_path: Path) -> None:
    """Ctrl-C while the file runs stops the caller (wnpass.interrupts): it is not turned into
    an error about the file as a sys.exit() is."""
    path = tmp_path / "m.py"
    path.write_text("def build_model():\n    raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        load_model_py(path)


def test_the_file_runs_with_the_argv_and_path_of_python_model_py(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python model.py`` gives the file ``sys.argv == [model.py]`` (a parser at module level
    parses no arguments of the caller's) and its folder first on ``sys.path`` (it imports the
    module beside it, whatever the working directory); the caller's are back afterwards."""
    folder, elsewhere = tmp_path / "model", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / "wnpass_test_layers.py").write_text(
        "import torch\ndef make():\n    return torch.nn.Linear(2, 2)\n"
    )
    path = folder / "model.py"
    path.write_text(
        "import argparse, sys\n"
        "from wnpass_test_layers import make\n"
        "ARGS = argparse.ArgumentParser().parse_args()\n"
        "ARGV = list(sys.argv)\n"
        "def build_model():\n"
        "    model = make()\n"
        "    model.argv = ARGV\n"
        "    return model\n"
    )
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "argv", ["wnpass", "export", "--verify"])
    monkeypatch.delitem(sys.modules, "wnpass_test_layers", raising=False)
    path_before = list(sys.path)
    model, _ = load_model_py(path)
    assert isinstance(model, nn.Linear) and model.argv == [str(path)]
    assert sys.argv == ["wnpass", "export", "--verify"] and sys.path == path_before


def test_the_modules_the_file_imports_are_read_in_the_plan(tmp_path: Path) -> None:
    """``from helper import make`` reads helper.py as much as the model.py: given the run's
    plan, the file is recorded as read and an output planned onto it is refused."""
    helper = f"wnpass_test_helper_{uuid.uuid4().hex}"
    (tmp_path / f"{helper}.py").write_text(
        "import torch\ndef make():\n    return torch.nn.Linear(2, 2)\n"
    )
    path = tmp_path / "model.py"
    path.write_text(f"from {helper} import make\ndef build_model():\n    return make()\n")
    plan = IOPlan()
    plan.read(path, "the model.py")
    plan.write(tmp_path / f"{helper}.py", "output")
    try:
        with pytest.raises(OutputError, match=r"would overwrite a module the model\.py imported"):
            load_model_py(path, plan=plan)
    finally:
        sys.modules.pop(helper, None)
    assert (tmp_path / f"{helper}.py").read_text().startswith("import torch")


def test_a_lazy_module_the_file_puts_in_sys_modules_is_not_imported(tmp_path: Path) -> None:
    """t280: speechbrain puts lazy modules in ``sys.modules`` for optional dependencies; reading
    their ``__file__`` ran the import, which failed: every command on a model.py importing
    speechbrain was an internal error. Such a module has read no file yet; the file's own
    helper module is still read in the plan."""
    lazy, helper = (f"wnpass_test_{kind}_{uuid.uuid4().hex}" for kind in ("lazy", "helper"))
    (tmp_path / f"{helper}.py").write_text("X = 1\n")
    path = tmp_path / "model.py"
    path.write_text(
        "import sys, types, torch\n"
        f"import {helper}\n"
        "class LazyModule(types.ModuleType):\n"
        "    def __getattr__(self, name):\n"
        "        raise ImportError(f'Lazy import of {self.__name__} failed')\n"
        f"sys.modules['{lazy}'] = LazyModule('{lazy}')\n"
        "def build_model():\n    return torch.nn.Linear(2, 2)\n"
    )
    plan = IOPlan()
    plan.read(path, "the model.py")
    plan.write(tmp_path / f"{helper}.py", "output")
    try:
        with pytest.raises(OutputError, match=r"would overwrite a module the model\.py imported"):
            load_model_py(path, plan=plan)
    finally:
        sys.modules.pop(helper, None)
        sys.modules.pop(lazy, None)


def test_a_path_through_a_link_and_up_runs_the_model_py_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``link/../m.py`` with ``link -> ../real/inner``: the file is ``real/m.py``, as opening
    it resolves it; made absolute as text (``os.path.abspath``), it ran ``work/m.py``."""
    (tmp_path / "real" / "inner").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "link").symlink_to(tmp_path / "real" / "inner")
    body = "import torch\ndef build_model():\n    return torch.nn.Linear({n}, 1)\n"
    (tmp_path / "real" / "m.py").write_text(body.format(n=2))
    (tmp_path / "work" / "m.py").write_text(body.format(n=3))  # the decoy
    monkeypatch.chdir(tmp_path / "work")
    model, _ = load_model_py("link/../m.py")
    assert isinstance(model, nn.Linear) and model.in_features == 2


def test_a_model_file_named_without_the_py_suffix_loads(tmp_path: Path) -> None:
    """Its module had no spec (no loader for the suffix): "internal error: AssertionError"."""
    path = tmp_path / "model"
    path.write_text("import torch\ndef build_model():\n    return torch.nn.Linear(2, 3)\n")
    model, inputs = load_model_py(path)
    assert isinstance(model, nn.Linear) and inputs is None


@pytest.mark.parametrize("factory", ["", "a b", "build_model()"])
def test_a_factory_that_is_no_function_name_is_refused(factory: str) -> None:
    """``--factory ""`` ran build_model() without a word."""
    from wnpass.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError) as caught:
        load_model_py(PLAIN / "mlp.py", factory)
    assert caught.value.parameter == "factory"
    assert str(caught.value) == f"factory must be the name of a function, not {factory!r}"


def _lazy_model_py(tmp_path: Path, members: str, forward: list[str]) -> Path:
    """A model.py whose model has a ``nn.LazyLinear(3)`` as ``lin``, ``members`` set beside
    it, and the lines of ``forward(self, x)``; its example inputs are 2 x 4."""
    body = "".join(f"        {line}\n" for line in forward)
    path = tmp_path / "lazy.py"
    path.write_text(
        "import torch\n"
        "from torch import nn\n"
        "class M(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.lin = nn.LazyLinear(3)\n"
        f"        {members}\n"
        "    def forward(self, x):\n"
        f"{body}"
        "def build_model():\n"
        "    return M()\n"
        "def example_inputs():\n"
        "    return (torch.randn(2, 4),)\n"
    )
    return path


def test_a_lazy_model_s_buffers_stay_as_built_when_its_shapes_are_given(tmp_path: Path) -> None:
    """The forward that gives lazy layers their shapes as a model.py loads moved a call
    counter, which train-rewrite then saved as if loaded so (t59)."""
    path = _lazy_model_py(
        tmp_path,
        "self.register_buffer('calls', torch.zeros((), dtype=torch.long))",
        ["self.calls += 1", "return self.lin(x)"],
    )
    model, _ = load_model_py(path)
    assert model.get_buffer("calls").item() == 0
    assert model.get_parameter("lin.weight").shape == (3, 4)


def test_parameters_the_lazy_layers_first_forward_writes_are_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An ActNorm behind a plain flag, initialized by that forward from the example inputs
    before any command saw the model: `wnpass export` published them without a word (t67)."""
    path = _lazy_model_py(
        tmp_path,
        "self.loc = nn.Parameter(torch.zeros(3)); self.initialized = False",
        [
            "h = self.lin(x)",
            "if not self.initialized:",
            "    self.loc.data.copy_(-h.mean(0))",
            "    self.initialized = True",
            "return h + self.loc",
        ],
    )
    with caplog.at_level("WARNING", logger="wnpass"):
        load_model_py(path)
    (said,) = [r.getMessage() for r in caplog.records if "lazy layers" in r.getMessage()]
    assert "wrote the parameters loc too" in said
