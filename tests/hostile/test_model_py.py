"""A hostile model.py or checkpoint, given to every command that builds a model: inspect,
train-rewrite and export. Errors raised by the user's code or file are bad input: one line
naming the file, exit 2, nothing written."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile.builders import GOOD_PY, assert_refused, checkpoint, folder, model_py


class _RunsCode:
    """Unpickling this would create a file: a checkpoint that runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _malicious(t: Path) -> Path:
    path = t / "ckpt.pt"
    path.write_bytes(pickle.dumps({"weight": _RunsCode(t / "pwned")}, protocol=2))
    return path


FORWARD_RAISES = GOOD_PY.replace(
    "def example_inputs():", "    pass\ndef example_inputs():"
).replace("return (torch.randn(2, 4),)", "return (torch.randn(2, 5),)")

# name -> (model.py source, text the error names)
SOURCES: dict[str, tuple[str | None, str]] = {
    "missing": (None, "no such file"),
    "syntax error": ("def build_model(:\n", "syntax error"),
    "import raises": ("import no_such_module_anywhere\n", "ModuleNotFoundError"),
    "module body raises": ("raise SystemError('boom')\n", "SystemError: boom"),
    "no factory": ("x = 1\n", "defines no factory build_model()"),
    "factory not callable": (
        "build_model = 3\n",
        "build_model is a value of type int, not a function",
    ),
    "factory is a model": (  # it was called, running the forward (t171)
        "import torch\nbuild_model = torch.nn.Linear(4, 2)\n",
        "build_model is a model (Linear), not a function: define build_model() to return",
    ),
    "factory raises": ("def build_model():\n    raise KeyError('w')\n", "KeyError"),
    "factory returns no module": ("def build_model():\n    return 3\n", "not a torch.nn.Module"),
    "factory needs arguments": ("def build_model(n):\n    return n\n", "TypeError"),
    "example_inputs raises": (
        GOOD_PY.replace("return (torch.randn(2, 4),)", "raise ValueError('no data')"),
        "example_inputs() raised ValueError: no data",
    ),
    "example_inputs returns text": (
        GOOD_PY.replace("return (torch.randn(2, 4),)", "return 'x'"),
        "example_inputs()",
    ),
    "forward raises on example_inputs": (FORWARD_RAISES, "model.py"),
}


def _argv(command: str, path: Path, t: Path) -> list[str]:
    if command == "export":
        return ["export", str(path), "-o", str(t / "m.onnx")]
    return [command, str(path)]


@pytest.mark.parametrize("command", ["inspect", "train-rewrite", "export"])
@pytest.mark.parametrize("case", SOURCES)
def test_a_hostile_model_py_is_bad_input(
    case: str, command: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, expected = SOURCES[case]
    path = work / "model.py" if source is None else model_py(work, source)
    assert_refused(_argv(command, path, work), work.parent, capsys, 2, expected)


# name -> (checkpoint builder, text the error names)
CHECKPOINTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (lambda t: t / "ckpt.pt", "ckpt.pt: no such file"),
    "random bytes": (lambda t: checkpoint(t, b"\x80\x02junk"), "not a readable torch.save file"),
    "empty": (lambda t: checkpoint(t, b""), "not a readable torch.save file"),
    "a pickle that runs code": (_malicious, "refused: loading it would run code"),
    "not a state dict": (
        lambda t: (__import__("torch").save([1, 2, 3], t / "ckpt.pt"), t / "ckpt.pt")[1],
        "not a state dict (list); one is read at its top level or under state_dict, model,",
    ),
    "a state dict under a key not read": (  # it said only "not a state dict (dict)"
        lambda t: (
            __import__("torch").save({"net_g": {"w": __import__("torch").zeros(2)}}, t / "c.pt"),
            t / "c.pt",
        )[1],
        "holds no state dict at its top level or under state_dict, model, model_state_dict or "
        "generator (its keys: 'net_g')",
    ),
    "keys that do not fit": (
        lambda t: (
            __import__("torch").save({"w": __import__("torch").zeros(2)}, t / "ckpt.pt"),
            t / "ckpt.pt",
        )[1],
        "does not fit the model",
    ),
    "a directory": (lambda t: folder(t, "ckpt.pt"), "ckpt.pt: is a directory, not a checkpoint"),
    "a FIFO": (  # never opened: a read would wait for a writer
        lambda t: (__import__("os").mkfifo(t / "ckpt.pt"), t / "ckpt.pt")[1],
        "ckpt.pt: is a FIFO, not a regular file",
    ),
}


@pytest.mark.parametrize("command", ["train-rewrite", "export"])
@pytest.mark.parametrize("case", CHECKPOINTS)
def test_a_hostile_checkpoint_is_bad_input(
    case: str, command: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build, expected = CHECKPOINTS[case]
    path = build(work)
    argv = [*_argv(command, model_py(work), work), "--checkpoint", str(path)]
    assert_refused(
        argv,
        work.parent,
        capsys,
        2,
        f"--checkpoint {path}: {expected}".replace(f"{path}: {path.name}: ", f"{path}: ")
        if expected.startswith("ckpt.pt")
        else expected,
    )
    assert not (work / "pwned").exists(), "unpickling ran code"
