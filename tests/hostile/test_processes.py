"""Hostile cases run as real processes: what reaches the terminal is one line, whatever the
libraries underneath print or warn (pytest would capture their warnings in-process)."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile.builders import GOOD_PY, good, model_py, raw, snapshot


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _malicious_checkpoint(t: Path) -> list[str]:
    (t / "ckpt.pt").write_bytes(pickle.dumps({"w": _RunsCode(t / "pwned")}))
    return ["train-rewrite", str(model_py(t)), "--checkpoint", str(t / "ckpt.pt")]


def _forward_raises(t: Path) -> list[str]:
    source = GOOD_PY.replace("torch.randn(2, 4)", "torch.randn(2, 5)")
    return ["export", str(model_py(t, source)), "-o", str(t / "m.onnx")]


CASES: dict[str, tuple[Callable[[Path], list[str]], int, str]] = {
    "a pickle that runs code": (_malicious_checkpoint, 2, "--checkpoint"),
    "a forward that raises, while torch warns": (_forward_raises, 2, "model.py"),
    "random bytes as a model": (
        lambda t: ["fold", str(raw(t, b"\x00\xffjunk" * 9))],
        2,
        "not a readable ONNX model",
    ),
    "export --opset 7": (
        lambda t: ["export", str(model_py(t)), "-o", str(t / "m.onnx"), "--opset", "7"],
        2,
        "--opset 7",
    ),
    "check --rtol nan": (
        lambda t: ["check", str(good(t)), str(good(t, "c.onnx")), "--rtol", "nan"],
        2,
        "--rtol nan",
    ),
    "fold -o the input": (
        lambda t: ["fold", str(good(t)), "-o", str(t / "model.onnx")],
        2,
        "would overwrite the input model",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_real_process_prints_one_line(case: str, work: Path) -> None:
    build, code, expected = CASES[case]
    argv = build(work)
    before = snapshot(work.parent)
    result = subprocess.run(
        [sys.executable, "-m", "wnpass", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == code, result.stderr
    assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(work.parent) == before


def _data_file(t: Path) -> Path:
    """A weight-norm model whose weights are in ``model.onnx.data``: that file."""
    import onnx

    model = onnx.load(good(t))
    onnx.save(
        model,
        t / "model.onnx",
        save_as_external_data=True,
        location="model.onnx.data",
        size_threshold=0,
    )
    return t / "model.onnx.data"


# the file a stream is opened onto, its mode ("r+": ``1<>file``, "a": ``>> file``), the argv
STREAMS: dict[str, tuple[Callable[[Path], Path], str, Callable[[Path], list[str]]]] = {
    "inspect 1<>model.onnx": (good, "r+", lambda t: ["inspect", str(t / "model.onnx")]),
    "fold 1<>model.onnx.data": (
        _data_file,
        "r+",
        lambda t: ["fold", str(t / "model.onnx"), "-o", str(t / "o.onnx")],
    ),
    "fold --json - >>model.onnx.data": (
        _data_file,
        "a",
        lambda t: ["fold", str(t / "model.onnx"), "-o", str(t / "o.onnx"), "--json", "-"],
    ),
    "inspect a.onnx model.onnx 1<>model.onnx.data": (  # the first's table over the second's
        lambda t: (good(t, "a.onnx"), _data_file(t))[1],  # weights (t329)
        "r+",
        lambda t: ["inspect", str(t / "a.onnx"), str(t / "model.onnx")],
    ),
    "export >>model.py": (
        model_py,
        "a",
        lambda t: ["export", str(t / "model.py"), "-o", str(t / "m.onnx")],
    ),
}


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
@pytest.mark.parametrize("case", STREAMS)
def test_a_standard_stream_that_is_a_file_read_is_refused(
    case: str, stream: str, work: Path
) -> None:
    """The shell gave wnpass an input as its standard output: the table printed over the
    model (``wnpass inspect m.onnx 1<>m.onnx``), the weights became text, exit 0 (t328).
    Refused before anything is printed, exit 2; where it is standard error, the line saying
    so would go onto it too: it is said nowhere."""
    make, mode, argv = STREAMS[case]
    target = make(work)
    before = snapshot(work.parent)
    with open(target, mode) as opened:
        streams = {stream: opened}
        result = subprocess.run(
            [sys.executable, "-m", "wnpass", *argv(work)],
            stdout=streams.get("stdout", subprocess.PIPE),
            stderr=streams.get("stderr", subprocess.PIPE),
            text=True,
            check=False,
            timeout=300,
        )
    assert result.returncode == 2
    assert snapshot(work.parent) == before
    if stream == "stdout":
        said = f"wnpass: error: standard output is the {'model file' if 'py' in case else 'input'}"
        assert result.stderr.startswith(said) and result.stderr.count("\n") == 1
    else:
        assert result.stdout == ""
