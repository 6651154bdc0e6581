"""Running ``torch.onnx.export``: its failures said in one line with their innermost cause, a
full disk blamed on the output, a file the checker rejects named as the user knows it, its
warnings about torch's own modules left out, and what it prints silenced only where asked."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.deploy.helpers import ROOT, FlatByLen
from wnpass.deploy import export, exporters_silenced
from wnpass.deploy.exporter import _failure
from wnpass.errors import WnpassError
from wnpass.fx.loading import load_model_py


def test_an_exporter_failure_keeps_the_end_of_its_cause() -> None:
    """torch.export names the input and axis at the end of a long message, which was cut."""
    try:
        try:
            raise ValueError("Found the following conflicts: " + "x" * 300 + " for dimension "
                             "inputs['hidden_states'].shape[2].")  # fmt: skip
        except ValueError as inner:
            raise RuntimeError("Failed to export the model with torch.export.") from inner
    except RuntimeError as error:
        said = _failure(error)
    assert said.startswith("ValueError: Found the following conflicts: xxx")
    assert "... " in said and "for dimension inputs['hidden_states'].shape[2]. (in: " in said


class _ReturnsItsInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, self.fc(x)


def test_an_exported_file_the_checker_rejects_is_named_as_the_user_knows_it(
    tmp_path: Path,
) -> None:
    """The dynamo exporter writes a graph that returns its input under its input's name,
    which the ONNX checker rejects: the error names what the exporter wrote for the output,
    not wnpass's staging file (gone once the error is shown)."""
    out = tmp_path / "m.onnx"
    with pytest.raises(WnpassError) as raised:
        export(_ReturnsItsInput(), (torch.randn(2, 4),), out, verify=False)
    message = str(raised.value)
    assert message.startswith(f"the dynamo exporter's output for {out}: rejected by the ONNX")
    assert ".wnpass-" not in message and list(tmp_path.iterdir()) == []


def test_a_library_export_leaves_the_processs_file_descriptors_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Silencing what the exporters print from C++ redirects the whole process's stdout and
    stderr: a command line's choice (``exporters_silenced``), never a library call's."""
    redirected: list[int] = []
    real = os.dup2

    def dup2(fd: int, to: int) -> None:
        redirected.append(to)
        real(fd, to)

    monkeypatch.setattr(os, "dup2", dup2)
    model = nn.Linear(4, 3)
    export(model, (torch.randn(2, 4),), tmp_path / "a.onnx", exporter="torchscript", verify=False)
    assert redirected == []
    with exporters_silenced():
        export(model, (torch.randn(2, 4),), tmp_path / "b.onnx", exporter="torchscript",
               verify=False)  # fmt: skip
    assert sorted(redirected) == [1, 1, 2, 2]  # to the null device and back, each


def test_a_failed_export_says_its_innermost_cause_and_logs_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The dynamo exporter wraps the cause (``'int' object has no attribute 'name'``) in
    messages of several hundred characters: the one line was cut at 240 and lost it. It says
    the innermost exception first, then the first line of the outermost; ``-v`` (INFO) logs
    the traceback, and the tracer's warnings before it (at WARNING they would be more lines
    beside the error's one)."""
    wrapper = "Failed to convert the exported program. \x1b[96mThis is step 3/3\x1b[0m. Next:\n"

    def fail(*args: object, **kwargs: object) -> None:
        warnings.warn("Using len to get tensor shape", torch.jit.TracerWarning, stacklevel=1)
        try:
            raise AttributeError("'int' object has no attribute 'name'")
        except AttributeError as cause:
            try:
                raise RuntimeError("Error when translating node return (linear, 2).") from cause
            except RuntimeError as middle:
                raise RuntimeError(wrapper + "- steps " * 60) from middle

    monkeypatch.setattr(torch.onnx, "export", fail)
    caplog.set_level("INFO", logger="wnpass.deploy")
    with pytest.raises(WnpassError) as raised:
        export(nn.Linear(4, 3), (torch.randn(2, 4),), tmp_path / "m.onnx", verify=False)
    assert str(raised.value) == (
        "torch.onnx.export failed: AttributeError: 'int' object has no attribute 'name' "
        "(in: Failed to convert the exported program. This is step 3/3. Next:)"
    )
    assert len([r for r in caplog.records if r.exc_info]) == 1
    assert [r.levelname for r in caplog.records if "TracerWarning" in r.getMessage()] == ["INFO"]
    assert "'int' object has no attribute 'name'" in caplog.text and "Traceback" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_a_failure_says_the_innermost_explicit_cause() -> None:
    """A forward's hint raised inside ``except KeyError`` (no ``from``), wrapped by torch
    with ``raise ... from``: the hint is the cause to say, its KeyError only its context."""
    from wnpass.deploy.exporter import _failure

    def wrapped() -> BaseException:
        try:
            try:
                raise KeyError("export_mode")
            except KeyError:
                raise ValueError("set model.cfg['export_mode'] first")  # noqa: B904
        except ValueError as hint:
            try:
                raise RuntimeError("Failed to export the model with torch.export") from hint
            except RuntimeError as top:
                return top
        raise AssertionError

    error = wrapped()
    assert error.__cause__ is not None and error.__cause__.__context__ is not None
    assert _failure(error).startswith("ValueError: set model.cfg['export_mode'] first (in: ")


def test_tracer_warnings_about_torch_s_own_modules_are_no_warning_lines(tmp_path: Path) -> None:
    """nn.LSTM checks its input sizes with Python values on every TorchScript export: torch's
    lines, not the model's; and a filter the user set holds (it was overridden)."""
    lstm = nn.LSTM(4, 3, batch_first=True)
    report = export(lstm, (torch.randn(1, 5, 4),), tmp_path / "l.onnx", exporter="torchscript")
    assert report.warnings == []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        report = export(
            FlatByLen(), (torch.randn(2, 4),), tmp_path / "f.onnx", exporter="torchscript"
        )
    assert report.warnings == []


def test_a_full_disk_while_exporting_is_the_outputs_not_the_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporter's write failing on a full disk (or a file size limit) read
    "model.py: torch.onnx.export failed: [Errno 28] ...", blamed on the model."""
    import errno

    from wnpass.deploy import ExportError
    from wnpass.errors import OutputError

    def full(*args: Any, **kwargs: Any) -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as error:
            raise RuntimeError("the exporter's own wrapper") from error

    model, inputs = load_model_py(ROOT / "models" / "mlp.py")
    assert inputs is not None
    monkeypatch.setattr(torch.onnx, "export", full)
    out = tmp_path / "mlp.onnx"
    with pytest.raises(OutputError, match=r"cannot write \(No space left on device\)$") as e:
        export(model, inputs, out, exporter="torchscript", verify=False)
    assert e.value.parameter == "output" and str(out) in str(e.value)
    assert list(tmp_path.iterdir()) == []

    def model_writes(*args: Any, **kwargs: Any) -> None:  # the model's own file, elsewhere
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "log.txt"))

    monkeypatch.setattr(torch.onnx, "export", model_writes)
    with pytest.raises(ExportError, match=r"torch.onnx.export failed"):
        export(model, inputs, out, exporter="torchscript", verify=False)


class _MovesItsOutputFolder(nn.Module):
    """A forward that, while exported, moves the output's folder away and makes a fresh one
    there: another process's doing, which the exporter's write then fails on."""

    def __init__(self, folder: Path, replaced_by: str) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.folder, self.replaced_by = folder, replaced_by

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.folder.is_dir() and any(self.folder.iterdir()):  # the export's staging
            self.folder.rename(self.folder.with_name("moved"))
            if self.replaced_by == "a folder":
                self.folder.mkdir()
            else:
                self.folder.write_text("a file")
        return self.fc(x)


@pytest.mark.parametrize("replaced_by", ["a folder", "a file"])
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_an_output_folder_moved_during_the_export_is_said_so(
    tmp_path: Path, exporter: str, replaced_by: str
) -> None:
    """It read "model.py: torch.onnx.export failed: [Errno 2] No such file or directory: ...",
    blamed on the model (t177); [Errno 20] Not a directory where a file took its place
    (t182)."""
    from wnpass.errors import OutputError

    out = tmp_path / "out"
    out.mkdir()
    model = _MovesItsOutputFolder(out, replaced_by)
    with pytest.raises(OutputError) as e:
        export(model, (torch.randn(2, 4),), out / "m.onnx", exporter=exporter, verify=False)
    assert str(e.value).endswith(
        f"{out / 'm.onnx'}: cannot write: its folder was moved or removed during the export"
    )
    assert e.value.parameter == "output"
    assert list((tmp_path / "moved").iterdir()) == []
    assert out.read_text() == "a file" if replaced_by == "a file" else list(out.iterdir()) == []


class _RemovesTheStaging(nn.Module):
    """A forward that removes every wnpass staging folder in the output's folder."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.fc, self.folder = nn.Linear(4, 3), folder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for staging in self.folder.glob(".wnpass-*"):
            shutil.rmtree(staging, ignore_errors=True)
        return self.fc(x)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_staging_folder_the_model_removes_is_said_so(tmp_path: Path, exporter: str) -> None:
    """Its output's folder still there, the error said the folder was moved or removed (t202)."""
    from wnpass.errors import OutputError

    model = _RemovesTheStaging(tmp_path)
    with pytest.raises(OutputError, match=r"m.onnx: cannot write: wnpass's staging folder"):
        export(model, (torch.randn(2, 4),), tmp_path / "m.onnx", exporter=exporter, verify=False)
    assert list(tmp_path.iterdir()) == []
