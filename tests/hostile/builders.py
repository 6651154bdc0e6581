"""The hostile corpus: builders of bad inputs and the one assertion every case makes.

Every case runs a command on files made in a fresh folder and asserts: the exit code, exactly
one line on stderr without a traceback, that the sha256 of every file that was there before is
unchanged (symbolic links, FIFOs and devices too, by what they are), and that no new file
appeared. Files a model may point *outside* its folder live in a sibling folder that is
snapshotted too.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.helpers import onnx_model, rand
from wnpass.cli import main

WN = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[N, 4] x) => (float[N, 3] y) {
        n = ReduceL2 <axes = [1]> (v)
        d = Div(v, n)
        w = Mul(d, g)
        y = Gemm <transB = 1> (x, w)
    }
"""

GOOD_PY = """
import torch
def build_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
def example_inputs():
    return (torch.randn(2, 4),)
"""


@dataclass(frozen=True)
class Case:
    """One hostile case: the argv (built in a folder), the exit code and the error's text."""

    argv: Callable[[Path], list[str]]
    expected: str
    code: int = 2


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: a file by its sha256, anything else by what it is."""
    entries = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            mode = os.lstat(path).st_mode
            key = str(path.relative_to(folder))
            if stat.S_ISLNK(mode):
                entries[key] = f"link -> {os.readlink(path)}"
            elif stat.S_ISREG(mode):
                entries[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISDIR(mode):
                entries[key] = "dir"
            else:
                entries[key] = f"special {stat.S_IFMT(mode)}"
    return entries


def assert_refused(
    argv: list[str],
    root: Path,
    capsys: pytest.CaptureFixture[str],
    code: int,
    expected: str,
    printed: str = "",
) -> None:
    """Run ``argv``; the case holds if it exits ``code`` with one line naming ``expected``,
    nothing printed but ``printed`` (no report: refused before any work), and leaves every
    entry under ``root`` exactly as it was."""
    before = snapshot(root)
    assert main(argv) == code
    captured = capsys.readouterr()
    assert captured.out == printed, f"printed before the refusal: {captured.out!r}"
    err = captured.err
    assert err.count("\n") == 1 and err.endswith("\n"), f"not one line: {err!r}"
    assert "Traceback" not in err
    assert expected in err, f"{expected!r} not in {err!r}"
    after = snapshot(root)
    assert set(after) - set(before) == set(), f"new files: {set(after) - set(before)}"
    assert after == before, "a file that was there changed"


# -- builders: each writes into the folder and returns the path ---------------------------


def good(t: Path, name: str = "model.onnx") -> Path:
    path = t / name
    onnx.save(onnx_model(WN, v=rand(3, 4), g=rand(3, 1)), path)
    return path


def raw(t: Path, content: bytes, name: str = "model.onnx") -> Path:
    path = t / name
    path.write_bytes(content)
    return path


def unchecked(t: Path, model: onnx.ModelProto, name: str = "model.onnx") -> Path:
    path = t / name
    path.write_bytes(model.SerializeToString())
    return path


def external(t: Path, location: str, length: str | None = "48", offset: str = "0") -> Path:
    """A model whose v (48 bytes) lives in external data at ``location`` (written by hand)."""
    model = onnx_model(WN, v=rand(3, 4), g=rand(3, 1))
    tensor = next(t for t in model.graph.initializer if t.name == "v")
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entries = {"location": location, "offset": offset}
    if length is not None:
        entries["length"] = length
    for key, value in entries.items():
        tensor.external_data.add(key=key, value=value)
    return unchecked(t, model)


def external_ok(t: Path, location: str = "weights.bin") -> Path:
    """A valid model whose weights live in ``location``."""
    path = t / "model.onnx"
    model = onnx_model(WN, v=rand(3, 4), g=rand(3, 1))
    onnx.save(model, path, save_as_external_data=True, location=location, size_threshold=0)
    return path


def edited(t: Path, edit: Callable[[onnx.ModelProto], None]) -> Path:
    model = onnx_model(WN, v=rand(3, 4), g=rand(3, 1))
    edit(model)
    return unchecked(t, model)


def model_py(t: Path, source: str = GOOD_PY, name: str = "model.py") -> Path:
    path = t / name
    path.write_text(source)
    return path


def checkpoint(t: Path, content: bytes | None = None, name: str = "ckpt.pt") -> Path:
    """A good state dict for GOOD_PY's model, or ``content`` as the file's bytes."""
    path = t / name
    if content is not None:
        path.write_bytes(content)
        return path
    import torch

    namespace: dict[str, object] = {}
    exec(GOOD_PY, namespace)
    torch.save(namespace["build_model"]().state_dict(), path)  # type: ignore[operator]
    return path


def npz(t: Path, name: str = "inputs.npz", **arrays: np.ndarray) -> Path:
    path = t / name
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def symlink(t: Path, target: Path, name: str) -> Path:
    path = t / name
    path.symlink_to(target)
    return path


def hardlink(t: Path, target: Path, name: str) -> Path:
    path = t / name
    os.link(target, path)
    return path


def folder(t: Path, name: str) -> Path:
    path = t / name
    path.mkdir()
    return path


def fifo(t: Path, name: str) -> Path:
    path = t / name
    os.mkfifo(path)
    return path


def device(t: Path, name: str) -> Path:
    """A character device node (/dev/null's numbers); needs root, else the case is skipped."""
    path = t / name
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    return path
