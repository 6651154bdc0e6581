"""The command line: tables, JSON, exit codes, and one-line errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import sites_left
from tests.onnx.test_io import weight_normed
from wnpass.cli import main


def test_fold_prints_the_sites_and_writes_beside_the_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = weight_normed(tmp_path)
    assert main(["fold", str(path), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "lin.weight" in out and "Gemm(transB=1)" in out and "32x64" in out
    assert "folded 1 of 1 weight-norm sites; nodes 4 -> 1" in out
    assert sites_left(tmp_path / "model.folded.onnx") == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["folded"] == 1 and report["ok"] is True
    assert report["sites"][0]["name"] == "lin.weight" and report["sites"][0]["axes"] == [1]


def test_inspect_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = weight_normed(tmp_path)
    before = path.read_bytes()
    assert main(["inspect", str(path)]) == 0
    assert "foldable" in capsys.readouterr().out
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fold", "missing.onnx"], "missing.onnx: no such file"),
        (["fold", "{tmp}"], "is a directory"),
        (["fold", "{model}", "-o", "{model}"], "would overwrite the input"),
        (["inspect", "{model}", "--bogus"], "unrecognized arguments"),
        (["fold"], "the following arguments are required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    model = weight_normed(tmp_path)
    argv = [a.format(tmp=tmp_path, model=model) for a in argv]
    with pytest.raises(SystemExit) if "--bogus" in argv or argv == ["fold"] else _no_raise():
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


class _no_raise:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"\x01\x02junk")
    result = subprocess.run(
        [sys.executable, "-m", "wnpass", "fold", str(tmp_path / "junk.onnx")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("wnpass: error: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "junk.folded.onnx").exists()
