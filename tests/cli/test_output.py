"""What the CLI prints: whole names and numbers in logs, --quiet, escaped names, progress."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
import pytest

from tests.helpers import onnx_model, rand, zero_unit
from tests.hostile.builders import WN
from wnpass.cli import main
from wnpass.cli.fold import PROGRESS_BAR_BYTES, write_progress
from wnpass.cli.output import Printer, is_plain_terminal
from wnpass.plan import IOPlan


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


LONG = "encoder.blocks.11.attention.output.dense.very_long_parameter_name_for_logs.weight"


def _long_named(tmp_path: Path) -> Path:
    model = onnx_model(WN, names={"v": f"{LONG}_v", "g": f"{LONG}_g"}, v=rand(3, 4), g=rand(3, 1))
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return path


def test_without_a_terminal_no_name_or_number_is_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    assert main(["fold", str(_long_named(tmp_path))]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if LONG in line)
    assert "Gemm(transB=1)" in row and "3x4" in row and "folded" in row
    assert "━" not in out and "│" not in out


@pytest.mark.parametrize("env", [("NO_COLOR", "1"), ("TERM", "dumb")])
def test_no_color_and_dumb_terminals_get_plain_text(
    env: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*env)
    terminal = _Terminal()
    assert is_plain_terminal(terminal)
    Printer(stream=terminal).table("t", ["a"], [["x" * 300]])
    assert "x" * 300 in terminal.getvalue()


@pytest.mark.parametrize("no_color", [None, ""], ids=["unset", "empty"])
def test_a_terminal_gets_a_drawn_table(
    monkeypatch: pytest.MonkeyPatch, no_color: str | None
) -> None:
    """An empty NO_COLOR is no request for plain text (no-color.org): it made tables plain."""
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    monkeypatch.setenv("TERM", "xterm")
    terminal = _Terminal()
    Printer(stream=terminal).table("t", ["a"], [["x"]])
    assert "┃" in terminal.getvalue()
    plain = _Terminal()
    Printer(stream=plain, plain=True).table("t", ["a"], [["x"]])  # --plain
    assert "┃" not in plain.getvalue()


@pytest.mark.parametrize("columns", ["76", "20"])
def test_a_table_too_wide_for_the_terminal_is_plain_text_never_a_folded_number(
    monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    """rich folded cells to fit: ``max abs`` read ``5.96e-0`` over ``8``, ``rtol=0`` over
    ``.0001`` at 76 columns, and at 20 every cell but one was drawn 0 wide (t128). A table
    that does not fit whole is plain text; one that fits is drawn."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", columns)
    row = ["cpu/default", "26", "4x10", "5.96e-08", "2.61e-07", "0/40", "rtol=0.0001 atol=1e-05"]
    header = ["provider", "output", "shape", "max abs", "max abs/scale", "outside", "tolerance"]
    terminal = _Terminal()
    Printer(stream=terminal).table("equivalence", header, [row])
    shown = terminal.getvalue()
    (line,) = [line for line in shown.splitlines() if line.startswith("cpu/default")]
    assert "┃" not in shown and line.split() == [*row[:-1], *row[-1].split()]
    small = _Terminal()
    Printer(stream=small).table("t", ["a"], [["5.96e-08"]])
    assert "┃" in small.getvalue()  # 12 columns wide: drawn at 20 too


def test_zero_width_characters_take_no_column() -> None:
    """A Thai vowel sign, a variation selector, an enclosing circle and a Hangul vowel filler
    (combining class 0, unlike an accent) were counted one column each (t128)."""
    from wnpass.cli.output import display_width

    assert display_width("a\u0e34\ufe0f\u20dd\u1160\u200bb") == 2


def test_a_terminal_shows_emoji_codes_in_names_as_they_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``m:warning:.onnx`` was shown ``m⚠.onnx`` and ``enc:fire:.weight`` ``enc🔥.weight`` on a
    terminal (rich's emoji codes, t104): a name is shown as it is, in tables and lines."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    terminal = _Terminal()
    out = Printer(stream=terminal)
    out.table("m:warning:.onnx", ["weight"], [["enc:fire:.weight"]])
    out.summary("wrote m:warning:.onnx")
    shown = terminal.getvalue()
    assert "m:warning:.onnx" in shown and "enc:fire:.weight" in shown
    assert "wrote m:warning:.onnx" in shown and "⚠" not in shown and "🔥" not in shown


def test_a_plain_table_pads_to_the_width_a_terminal_shows() -> None:
    """Chinese names (two columns a character) and combining accents (none) put the later
    columns out of line (t104): each cell is padded to the columns it takes."""
    from wnpass.cli.output import display_width, plain_table

    rows = [["编码器.weight", "1"], ["e\u0301nc.weight", "2"], ["plain.weight", "3"]]
    lines = plain_table("t", ["name", "x"], rows).splitlines()
    assert [display_width(line[:-1]) for line in lines[3:]] == [15] * 3
    assert display_width("编码器") == 6 and display_width("e\u0301") == 1


@pytest.mark.parametrize("wide", ["\u2600\ufe0f", "\u2630"], ids=["emoji by VS16", "Unicode 16"])
def test_a_terminal_table_of_emoji_names_is_drawn_whole(
    monkeypatch: pytest.MonkeyPatch, wide: str
) -> None:
    """A sun made an emoji by a variation selector, or a trigram wide since Unicode 16, was
    counted one column where rich counts two: the table passed as fitting, and rich cut every
    cell of it to "..." (t228)."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "80")
    name = wide * 15 + ".folded.weight"
    terminal = _Terminal()
    Printer(stream=terminal).table("t", ["weight", "consumer", "shape", "status"], [
        [name, "Gemm(transB=1)", "3x4", "folded"]
    ])  # fmt: skip
    shown = terminal.getvalue()
    assert "\u2026" not in shown and name in shown and "Gemm(transB=1)" in shown


@pytest.mark.parametrize("before", [True, False], ids=["before the command", "after it"])
def test_quiet_prints_the_summary_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], before: bool
) -> None:
    command = ["fold", str(_long_named(tmp_path))]
    assert main(["--quiet", *command] if before else [*command, "-q"]) == 0
    out = capsys.readouterr().out
    assert LONG not in out
    assert out.startswith("folded 1 of 1 weight-norm site;") and "wrote " in out


def test_output_options_given_before_and_after_the_command_add_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wnpass -v fold m.onnx -v`` is ``-vv`` (argparse's subcommand sets a field anew);
    ``--plain`` after the command draws the plain table on a terminal."""
    levels: list[int] = []
    monkeypatch.setattr("logging.basicConfig", lambda **kw: levels.append(kw["level"]))
    path = str(_long_named(tmp_path))
    assert main(["-v", "fold", path, "-o", str(tmp_path / "a.onnx"), "-v"]) == 0
    assert main(["fold", path, "-o", str(tmp_path / "b.onnx"), "-v"]) == 0
    assert levels == [logging.DEBUG, logging.INFO]
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "300")
    shown = []
    for name, options in (("c", []), ("d", ["--plain"])):
        terminal = _Terminal()
        monkeypatch.setattr("sys.stdout", terminal)
        assert main(["fold", path, "-o", str(tmp_path / f"{name}.onnx"), *options]) == 0
        shown.append(terminal.getvalue())
    assert "┃" in shown[0] and "┃" not in shown[1] and LONG in shown[1]


def test_quiet_says_what_a_fold_declined_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The site's row, with its reason, is in the table --quiet leaves out: "folded 0 of 1"
    said nothing of why (t86; export's NOT DEPLOYABLE the same)."""
    path = tmp_path / "model.onnx"
    arrays = zero_unit(3, 4)
    onnx.save(onnx_model(WN, names={"v": f"{LONG}_v"}, v=arrays["v"], g=arrays["g"]), path)
    assert main(["--quiet", "fold", str(path), "-o", str(tmp_path / "f.onnx")]) == 0
    out = capsys.readouterr().out
    assert f"\n  declined: {LONG}: v has zero-norm units, where the graph computes NaN" in out
    assert main(["fold", str(path), "-o", str(tmp_path / "f.onnx")]) == 0
    assert f"  declined: {LONG}" not in capsys.readouterr().out  # the table says it


def test_control_characters_in_model_names_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = "lin.\x1b[2J\x1b[31mweight"
    model = onnx_model(WN, names={"v": f"{evil}_v", "g": f"{evil}_g"}, v=rand(3, 4), g=rand(3, 1))
    onnx.save(model, tmp_path / "model.onnx")
    assert main(["inspect", str(tmp_path / "model.onnx")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "lin.\\x1b[2J\\x1b[31mweight" in out


class _Bar:
    """rich's Progress as the tests see it: what was drawn."""

    drawn: ClassVar[list[str]] = []

    def __init__(self, **kwargs: Any) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def add_task(self, description: str, **kwargs: Any) -> int:
        _Bar.drawn.append(description)
        return 0

    def update(self, task: int, **kwargs: Any) -> None:
        pass


def test_a_progress_bar_only_for_large_inputs_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bar for an input of 100 MB or more, its external data counted (a model over 2 GiB
    keeps its weights in such files: a 513 B ``.onnx`` beside 114 MiB drew none, t128), its
    name escaped (a name's ESC and newline reached the terminal in every frame, t128)."""
    small = tmp_path / "small.onnx"
    small.write_bytes(b"x")
    large = tmp_path / "large\x1b[31m[red]\n.onnx"
    data = tmp_path / "small.onnx.data"
    for path in (large, data):
        with open(path, "wb") as stream:  # sparse: no disk used
            stream.truncate(PROGRESS_BAR_BYTES)
    monkeypatch.setattr("wnpass.cli.output.is_plain_terminal", lambda stream: False)
    monkeypatch.setattr("rich.progress.Progress", _Bar)
    _Bar.drawn = []
    with write_progress(small, Printer(), IOPlan()) as progress:
        assert progress is not None
        progress(1, 2)
    assert _Bar.drawn == []
    with write_progress(large, Printer(), IOPlan()) as progress:
        assert progress is not None
        progress(1, 2)
        progress(2, 2)
    assert _Bar.drawn == ["writing large\\x1b[31m\\[red]\\n.onnx"]  # printable, then escaped
    plan = IOPlan()
    plan.read(data, "the input model's data")
    with write_progress(small, Printer(), plan) as progress:
        assert progress is not None
        progress(1, 2)
    assert _Bar.drawn[1:] == ["writing small.onnx"]
    # --plain and --quiet draw none either, on a terminal too (--plain drew check's bar)
    for out in (Printer(plain=True), Printer(quiet=True)):
        with write_progress(large, out, IOPlan()) as progress:
            assert progress is None
        assert not out.bars
    monkeypatch.setattr("wnpass.cli.output.is_plain_terminal", lambda stream: True)
    with write_progress(large, Printer(), IOPlan()) as progress:
        assert progress is None


def test_the_headline_error_is_relative_to_the_output_s_scale() -> None:
    """A tiny error on a near-zero element has a huge per-element relative error; relative to
    the output's scale it is what it is: tiny."""
    from wnpass.verify.compare import compare_outputs

    reference = np.array([1e-9, 10.0, -5.0], np.float32)
    candidate = reference + np.array([1e-7, 0.0, 0.0], np.float32)
    (result,) = compare_outputs(["y"], [reference], ["y"], [candidate])
    assert result.max_rel > 10 and result.passed
    assert result.scale == 10.0 and result.max_scaled == pytest.approx(1e-8, rel=1e-3)


def test_a_name_with_a_newline_cannot_forge_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``-o $'a\\nwrote b.onnx'`` printed "wrote a" and then a forged "wrote b.onnx" line: each
    line the command line prints is one line, its control characters escaped."""
    model = tmp_path / "m.onnx"
    onnx.save(onnx_model(WN, v=rand(3, 4), g=rand(3, 1)), model)
    out = tmp_path / "a\nwrote b.onnx"
    assert main(["fold", str(model), "-o", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == f"wrote {tmp_path}/a\\nwrote b.onnx"
    assert not any(line.startswith("wrote b.onnx") for line in printed)


def test_checks_timing_bar_follows_plain_and_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--plain check`` drew its timing bar on a terminal's stderr, cursor codes and all."""
    from wnpass.cli.check import progress_bar

    monkeypatch.setattr("wnpass.cli.output.is_plain_terminal", lambda stream: False)
    for out, shown in (
        (Printer(), True),
        (Printer(plain=True), False),
        (Printer(quiet=True), False),
    ):
        bar = progress_bar(out)
        with bar as progress:
            progress("cpu/default", 1, 2)
            assert bar._bar.disable is not shown


@pytest.mark.parametrize("plain", [True, False])
def test_a_stream_closed_meanwhile_loses_the_lines_not_the_run(plain: bool) -> None:
    """A model.py that closes sys.stdout: the next line was "internal error: ValueError: I/O
    operation on closed file", exit 3, after the output had been written; then silent, exit
    0 (t344): what failed is kept for the command line to say."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = io.StringIO() if plain else Terminal()
    out = Printer(stream=stream, plain=plain or None)
    stream.close()
    out.line("a line")
    out.summary("a summary")
    out.table("t", ["a"], [["x"]])
    assert out.failed is not None and out.failed.strerror == "closed by the model's code"
    other = io.StringIO()
    guarded = Printer(stream=other, plain=True)._unless_closed()
    with pytest.raises(ValueError, match="not closed"), guarded:  # another one still raises
        raise ValueError("not closed")


def test_a_stream_that_holds_ascii_alone_gets_names_escaped() -> None:
    """t162: standard output encoded as ASCII (PYTHONIOENCODING=ascii) and a model named
    modèle.onnx: the summary line raised UnicodeEncodeError, exit 3, the JSON not written."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    printer = Printer(stream=stream)
    printer.summary("r3/modèle.onnx: 0 weight-norm sites")
    printer.table("modèle.onnx", ["weight"], [["é"]])  # its tables too (t163)
    stream.flush()
    assert raw.getvalue().startswith(b"r3/mod\\xe8le.onnx: 0 weight-norm sites\nmod\\xe8le.onnx\n")
    assert b"\\xe9" in raw.getvalue()


def test_a_table_escaped_for_its_stream_is_padded_as_written() -> None:
    """Cells were padded before the stream escaped them: ``sun\\u2600\\ufe0f`` then took 15
    columns more than its padding counted, and the later columns were out of line (t228)."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    rows = [["sun\u2600\ufe0f.weight", "Gemm"], ["plain.weight", "Conv"]]
    Printer(stream=stream).table("t", ["weight", "consumer"], rows)
    stream.flush()
    lines = raw.getvalue().decode("ascii").splitlines()
    assert [line.index("Gemm" if "sun" in line else "Conv") for line in lines[3:]] == [
        lines[1].index("consumer")
    ] * 2
