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
