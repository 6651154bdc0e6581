"""The command line: tables, JSON, exit codes, and one-line errors without tracebacks."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest

from tests.helpers import onnx_model, run, sites_left, weight_normed, zero_unit
from wnpass.cli import main


def test_fold_prints_the_sites_and_writes_beside_the_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = weight_normed(tmp_path)
    assert main(["fold", str(path), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "lin.weight" in out and "Gemm(transB=1)" in out and "32x64" in out
    assert "folded 1 of 1 weight-norm site; nodes 4 -> 1" in out
    assert sites_left(tmp_path / "model.folded.onnx") == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["folded"] == 1 and report["ok"] is True
    assert report["sites"][0]["name"] == "lin.weight" and report["sites"][0]["axes"] == [1]


def test_a_mapping_the_system_refuses_is_said_to_be_out_of_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An OSError of ENOMEM names no file (onnx-ir mapping external data): the line said
    only "Cannot allocate memory" (t196)."""
    from wnpass.onnx import api

    def refused(*args: object, **kwargs: object) -> object:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(api, "_fold", refused)
    assert main(["fold", str(weight_normed(tmp_path))]) == 2
    assert capsys.readouterr().err == "wnpass: error: out of memory: Cannot allocate memory\n"


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
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_a_json_report_that_cannot_be_written_stops_the_fold_before_it_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--json`` in a folder that takes no files: refused up front, the input untouched."""
    path = weight_normed(tmp_path)
    before = path.read_bytes()
    assert main(["fold", str(path), "--in-place", "--json", "/proc/r.json"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("wnpass: error: --json /proc/r.json: cannot write there")
    assert "wrote" not in captured.out
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_the_help_says_what_the_tool_does(capsys: pytest.CaptureFixture[str]) -> None:
    """``wnpass --help`` printed the module's docstring for developers (t262)."""
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Put weight normalization into a PyTorch model for training" in out
    assert "``" not in out and "parse, validate" not in out


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


def test_the_program_flushes_everything_before_it_exits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The program skips the interpreter's teardown: what it printed and wrote is whole, and
    the exit code is main's."""
    path = weight_normed(tmp_path)
    assert main(["inspect", str(path)]) == 0
    printed = capsys.readouterr().out
    argv = [sys.executable, "-m", "wnpass"]
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    inspected = subprocess.run([*argv, "inspect", str(path)], capture_output=True, text=True)
    assert (inspected.returncode, inspected.stdout) == (0, printed)
    helped = subprocess.run([*argv, "fold", "--help"], capture_output=True, text=True, env=buffered)
    assert helped.returncode == 0 and "--weight-norm-only" in helped.stdout  # argparse's print
    report = tmp_path / "r.json"
    folded = subprocess.run([*argv, "fold", str(path), "--json", str(report)], capture_output=True)
    assert folded.returncode == 0 and json.loads(report.read_text())["folded"] == 1
    assert sites_left(tmp_path / "model.folded.onnx") == 0
    missing = subprocess.run([*argv, "fold", str(tmp_path / "no.onnx")], capture_output=True)
    assert missing.returncode == 2 and missing.stderr.endswith(b"no such file\n")


@pytest.mark.parametrize("unbuffered", [True, False], ids=["mid-command", "final-flush"])
def test_a_reader_that_goes_away_ends_the_program_quietly_with_141(
    tmp_path: Path, unbuffered: bool
) -> None:
    """``wnpass inspect m.onnx | head -1``: the pipe closes while the table is printed (or
    when the program flushes it at the end); no "Broken pipe" error with the exit code of
    bad input, but the code of a process that SIGPIPE stopped, as the shell reports it."""
    path = weight_normed(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wnpass", "inspect", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert (proc.wait(timeout=60), stderr) == (141, b"")


_PRINTS = """
import torch
class M(torch.nn.Linear):
    def forward(self, x):
        print("running forward", flush=True)
        return super().forward(x)
def build_model():
    return M(2, 2)
def example_inputs():
    return (torch.ones(1, 2),)
"""


@pytest.mark.parametrize("broken", ["stdout", "a pipe of the model's own"])
def test_a_model_s_print_into_a_pipe_whose_reader_went_away(tmp_path: Path, broken: str) -> None:
    """``wnpass inspect model.py | head -1`` where the model prints in its forward: its print
    raised BrokenPipeError, and the run ended with exit 2 and a line blaming the forward
    (t228); it ends as a process SIGPIPE stopped. A pipe of the model's own that breaks
    is the model's error, as before."""
    code = _PRINTS
    if broken != "stdout":
        code = code.replace(
            'print("running forward", flush=True)',
            "import os; r, w = os.pipe(); os.close(r); os.write(w, b'x')",
        )
    (tmp_path / "model.py").write_text(code)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wnpass", "inspect", "model.py"],
        cwd=tmp_path,
        stdout=subprocess.PIPE if broken == "stdout" else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    if proc.stdout is not None:
        proc.stdout.close()
    stderr = proc.stderr.read().decode()
    if broken == "stdout":
        assert (proc.wait(timeout=120), stderr) == (141, "")
    else:
        assert proc.wait(timeout=120) == 2
        assert "the forward on the example inputs raised BrokenPipeError" in stderr


def test_a_reader_gone_away_leaves_a_caller_of_main_its_standard_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``main`` ends with 141 when its standard output's reader went away; it pointed that
    stream's descriptor at /dev/null (and leaked one), which a caller running ``main`` in its
    own process kept (t109)."""
    path = weight_normed(tmp_path)
    read, write = os.pipe()
    os.close(read)
    with open(write, "w", buffering=1) as gone:  # every write: BrokenPipeError
        monkeypatch.setattr(sys, "stdout", gone)
        opened = set(os.listdir("/proc/self/fd"))
        assert main(["--plain", "inspect", str(path)]) == 141
        assert stat.S_ISFIFO(os.fstat(write).st_mode)  # still the pipe
        assert set(os.listdir("/proc/self/fd")) <= opened
        monkeypatch.undo()
        with contextlib.suppress(BrokenPipeError):
            gone.close()


def _perturbed(tmp_path: Path, folded: Path) -> Path:
    import onnx

    model = onnx.load(folded)
    tensor = model.graph.initializer[0]
    array = onnx.numpy_helper.to_array(tensor).copy()
    array[0, 0] += 1.0
    tensor.CopyFrom(onnx.numpy_helper.from_array(array, tensor.name))
    onnx.save(model, tmp_path / "perturbed.onnx")
    return tmp_path / "perturbed.onnx"


def test_check_exit_codes_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    path = weight_normed(tmp_path)
    assert (
        main(["fold", str(path), "--verify", "--runs", "2", "--json", str(tmp_path / "f.json")])
        == 0
    )
    out = capsys.readouterr().out
    assert "equivalent: " in out and "cpu/default" in out
    data = json.loads((tmp_path / "f.json").read_text())
    assert data["folded"] == 1 and data["check"]["ok"] is True and data["ok"] is True
    folded = tmp_path / "model.folded.onnx"
    broken = _perturbed(tmp_path, folded)
    argv = ["check", str(path), str(broken), "--runs", "1", "--json", str(tmp_path / "c.json")]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "NOT EQUIVALENT" in out and "cpu/default: y:" in out
    assert json.loads((tmp_path / "c.json").read_text())["ok"] is False


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--provider", "cuda"], "--provider 'cuda': not available"),
        (["--shape", "x=2"], "1 dimensions given, the model has 2"),
        (["--inputs", "absent.npz"], "no such file"),
        (["--runs", "0"], "--runs 0: must be a whole number from 1 to 1000000"),
    ],
)
def test_check_bad_options_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    from wnpass.verify import providers

    if "cuda" in extra and "cuda" in providers.available():
        pytest.skip("CUDA is available here")
    path = weight_normed(tmp_path)
    assert main(["check", str(path), str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "{t}/r.onnx", "{t}/c.onnx", "--rtol", "0.5", "--rtol", "1e-9"],
        ["check", "{t}/r.onnx", "{t}/c.onnx", "--json", "{t}/a.json", "--json", "{t}/b.json"],
        ["fold", "{t}/m.onnx", "-o", "{t}/a.onnx", "--output", "{t}/b.onnx"],
        ["train-rewrite", "{t}/m.py", "--factory", "a", "--factory", "b"],
    ],
    ids=["rtol", "json", "output", "factory"],
)
def test_an_option_of_one_value_given_twice_is_refused(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The last one given was taken without a word: ``--json a.json --json b.json`` wrote
    b.json only, and ``--rtol 0.5 --rtol 1e-9`` checked at 1e-9 (t43). Refused before any
    file is read (none of these exist)."""
    option = argv[-2]  # the second time it is given: -o first, then --output, is one option
    assert main([a.replace("{t}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wnpass: error: {option} is given twice; give it once")
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


MLP = Path(__file__).resolve().parents[2] / "models" / "mlp.py"


def test_export_with_a_checkpoint_verifies_and_names_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx
    import torch

    from wnpass.fx.loading import load_model_py

    monkeypatch.setenv("COLUMNS", "200")
    model, inputs = load_model_py(MLP)
    assert inputs is not None
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)  # a "trained" checkpoint that differs from build_model()
        expected = model(*inputs)
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    out = tmp_path / "mlp.onnx"
    argv = ["export", str(MLP), "-o", str(out), "--exporter", "torchscript", "--verify"]
    argv += [
        "--checkpoint",
        str(tmp_path / "ckpt.pt"),
        "--runs",
        "2",
        "--json",
        str(tmp_path / "e.json"),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "deployable: ONNX matches PyTorch" in printed and "folded 3 weight-norm sites" in printed
    assert {"fc1.weight", "fc2.weight", "head.weight"} <= {
        i.name for i in onnx.load(out).graph.initializer
    }
    assert sites_left(out) == 0
    (actual,) = run(out, {"x": inputs[0].numpy()})
    assert abs(actual - expected.numpy()).max() < 1e-5
    assert json.loads((tmp_path / "e.json").read_text())["ok"] is True


@pytest.mark.parametrize(
    ("checkpoint", "message"),
    [
        ("mis-shaped", "does not fit the model"),
        (  # what keeping the objects would meet is said, not --keep-objects
            "pickle",
            "holds no state dict (no dict of named tensors); objects kept unbuilt are not "
            "looked into\n",
        ),
    ],
)
def test_export_refuses_bad_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: object, message: str
) -> None:
    import torch

    path = tmp_path / "ckpt.pt"
    if checkpoint == "pickle":
        torch.save({"payload": _Payload()}, path)  # weights_only=True refuses arbitrary objects
    else:
        torch.save({"fc1.weight": torch.zeros(3, 3)}, path)
    argv = ["export", str(MLP), "-o", str(tmp_path / "m.onnx"), "--checkpoint", str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()


class _Payload:
    """Not a tensor: a checkpoint holding it is a pickle payload."""


def test_the_command_line_imports_no_heavy_library_before_a_command_runs() -> None:
    """fold reads its input ahead while numpy, onnx and onnx-ir are imported; importing the
    command line itself must not import them first (nor torch, onnxruntime or rich)."""
    heavy = ("numpy", "onnx", "onnx_ir", "torch", "onnxruntime", "rich", "ml_dtypes")
    code = f"import sys, wnpass.cli; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_closed_stderr_loses_the_message_not_the_exit_code(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wnpass", "fold", str(tmp_path / "missing.onnx")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    proc.stderr.close()
    assert proc.wait(timeout=60) == 2


@pytest.mark.parametrize("closed", [1, 2], ids=["stdout", "stderr"])
def test_a_stream_closed_from_the_start_changes_nothing_but_what_is_said(
    tmp_path: Path, closed: int
) -> None:
    """Started without stdout or stderr (``>&-``, ``2>&-``), a command does its work and
    exits as it would, without a traceback, and what it says on the other stream is whole."""
    path = weight_normed(tmp_path)
    out = tmp_path / "out.onnx"
    argv = [sys.executable, "-m", "wnpass", "--quiet", "fold", str(path), "-o", str(out)]
    if closed == 1:
        argv += ["--json", str(tmp_path / "r.json")]
    result = subprocess.run(argv, capture_output=True, preexec_fn=lambda: os.close(closed))
    assert (result.returncode, result.stderr) == (0, b"")
    assert (b"wrote" in result.stdout) == (closed == 2)  # the summary, where stdout is open
    assert sites_left(out) == 0
    inspected = subprocess.run(
        [sys.executable, "-m", "wnpass", "--quiet", "inspect", str(path)],
        capture_output=True,
        preexec_fn=lambda: os.close(closed),
    )
    assert inspected.returncode == 0 and inspected.stderr == b""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
@pytest.mark.parametrize("command", ["fold", "check", "check, failing"])
def test_a_standard_output_that_takes_nothing_is_said_after_the_run(
    tmp_path: Path, command: str
) -> None:
    """``> /dev/full`` (a full disk under ``> log.txt``): the first line printed failed the
    run, before its ``--json`` was written, with a line naming nothing (``No space left on
    device``; t46). The run now goes on unprinted, writes every file, and says last what failed
    and what it wrote; exit 2, or a failed check's 1."""
    path = weight_normed(tmp_path)
    report, out = tmp_path / "r.json", tmp_path / "out.onnx"
    argv = [sys.executable, "-m", "wnpass", command.split(",")[0], str(path)]
    if command == "fold":
        argv += ["-o", str(out)]
    else:
        candidate = path
        if command == "check, failing":
            changed = onnx.load(path)
            changed.graph.initializer[0].raw_data = bytes(
                len(changed.graph.initializer[0].raw_data)
            )
            candidate = tmp_path / "zeros.onnx"
            onnx.save(changed, candidate)
        argv += [str(candidate), "--runs", "1"]
    with open("/dev/full", "w") as full:
        result = subprocess.run([*argv, "--json", str(report)], stdout=full, stderr=subprocess.PIPE)
    passed = command != "check, failing"
    assert result.returncode == (2 if passed else 1)
    wrote = f"{out}, {report}" if command == "fold" else f"{report}"
    assert result.stderr.decode() == (
        "wnpass: error: cannot write to standard output (No space left on device); "
        f"already written: {wrote}\n"
    )
    assert json.loads(report.read_text())["ok"] is passed
    assert command != "fold" or sites_left(out) == 0


def test_a_log_line_escapes_the_control_characters_of_a_models_names(tmp_path: Path) -> None:
    """A warning names a model's value as every printed line does, control characters
    escaped: a name holding a newline cannot forge a line of its own."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 4] x) => (float[2, 3] y) {
            n = ReduceL2 <axes = [1]> (v)
            d = Div(v, n)
            w = Mul(d, g)
            y = Gemm <transB = 1> (x, w)
        }
    """
    arrays = zero_unit(3, 4)
    model = onnx_model(text, v=arrays["v"], g=arrays["g"])
    for node in model.graph.node:  # the weight the fold declines, named with a newline
        for values in (node.input, node.output):
            values[:] = ["w\nFORGED LINE" if name == "w" else name for name in values]
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    argv = [sys.executable, "-m", "wnpass", "fold", str(path), "-o", str(tmp_path / "f.onnx")]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("WARNING ") and "w\\nFORGED LINE" in line
    # --quiet: the summary alone (t53: a raw WARNING line beside it); -v gives the log back
    argv.insert(3, "--quiet")
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("folded 0 of 1 weight-norm site;")
    argv.insert(3, "-v")
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert "WARNING " in result.stderr


# a model.py's model and inputs, to which a test adds the code it is about
_LINEAR = """
import torch
def build_model():
    return torch.nn.Linear(2, 2)
def example_inputs():
    return (torch.ones(1, 2),)
"""


def _wnpass_beside(tmp_path: Path, code: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m wnpass ARGV`` run in ``tmp_path``, beside a model.py of ``code``."""
    (tmp_path / "model.py").write_text(code)
    return subprocess.run(
        [sys.executable, "-m", "wnpass", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


_EXIT_WORK = (
    _LINEAR
    + """
import atexit, tempfile, threading, time
atexit.register(lambda: open("atexit.txt", "w").write("ran"))
def _late():
    time.sleep(0.5)
    open("thread.txt", "w").write("done")
threading.Thread(target=_late).start()
FOLDER = tempfile.TemporaryDirectory(dir=".")
from concurrent.futures import ThreadPoolExecutor
POOL = ThreadPoolExecutor(2)  # never shut down: its idle workers end as Python ends
POOL.submit(time.sleep, 0).result()
"""
)


def test_a_model_py_s_exit_time_work_runs_as_python_would_run_it(tmp_path: Path) -> None:
    """The program ends with os._exit: a model.py's atexit handler, a thread it started (no
    daemon) and a TemporaryDirectory's removal never ran, as ``python model.py`` runs them
    (t225). A thread pool it never shut down is told to stop first, as Python does (a wait
    for its idle workers never ended)."""
    result = _wnpass_beside(tmp_path, _EXIT_WORK, "-q", "train-rewrite", "model.py")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert (tmp_path / "thread.txt").read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "atexit.txt", "model.py", "model.wn.pt", "thread.txt"
    ]  # fmt: skip


_EXIT_PRINTS = (
    _LINEAR
    + """
import atexit
atexit.register(lambda: print("printed at exit"))
"""
)


def test_what_a_model_py_prints_at_exit_leaves_a_json_report_on_stdout_alone(
    tmp_path: Path,
) -> None:
    """With ``--json -`` the report is all of standard output: a model.py's atexit print
    landed there after the JSON (t232: "Extra data" for a JSON reader). It goes to standard
    error, as the model's other prints do."""
    result = _wnpass_beside(
        tmp_path, _EXIT_PRINTS, "-q", "train-rewrite", "model.py", "--json", "-"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sites"]
    assert "printed at exit" in result.stderr


_EXITS_AT_EXIT = """
import atexit, os
import torch
class M(torch.nn.Linear):
    def forward(self, x):
        raise RuntimeError("broken forward")
def build_model():
    return M(2, 2)
def example_inputs():
    return (torch.ones(1, 2),)
atexit.register(os._exit, 0)
"""


def test_a_model_py_s_exit_handler_cannot_change_the_exit_code(tmp_path: Path) -> None:
    """``atexit.register(os._exit, 0)`` (a guard against hangs at exit): the failed run exited
    0 (t234). Its os._exit raises there, as anywhere in the model's code: exit 2 stays."""
    result = _wnpass_beside(tmp_path, _EXITS_AT_EXIT, "train-rewrite", "model.py")
    assert result.returncode == 2
    assert "wnpass: error: model.py: M: the forward on the example inputs raised" in result.stderr


_WAITS_FOREVER = (
    _LINEAR
    + """
import atexit, threading, time
atexit.register(lambda: open("atexit.txt", "w").write("ran"))
threading.Thread(target=time.sleep, args=(10**6,)).start()
"""
)


def test_a_stop_while_waiting_for_a_model_py_s_threads_still_runs_its_exit_handlers(
    tmp_path: Path,
) -> None:
    """A thread that never ends keeps the program waiting, as Python does; Ctrl-C ended the
    wait and the process at once, the model's atexit handlers (a TemporaryDirectory's
    removal) never run (t232). They run, and the program ends as a stop signal ends it."""
    (tmp_path / "model.py").write_text(_WAITS_FOREVER)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wnpass", "-q", "train-rewrite", "model.py"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    written = tmp_path / "model.wn.pt"
    for _ in range(1200):  # the output first, then the wait
        if written.exists():
            break
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert stderr.strip().endswith(
        "wnpass: interrupted; already written: model.wn.pt; nothing more was written"
    )
    assert (tmp_path / "atexit.txt").read_text() == "ran"


_STOPPED_AT_EXIT = (
    _LINEAR
    + """
import atexit, os, signal, time
def _fails():
    raise RuntimeError("a handler's own error")
def _stopped():
    os.kill(os.getpid(), signal.{name})  # as a stop signal lands in torch's own handler
    time.sleep(5)
def _raises_itself():
    raise KeyboardInterrupt("raised by the handler, no signal")
atexit.register(_fails)
atexit.register(_stopped)
atexit.register(_raises_itself)  # the first to run: before the signal
"""
)


@pytest.mark.parametrize(
    ("name", "code", "said"), [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")]
)
def test_a_stop_in_an_exit_handler_is_said_in_the_stop_line_alone(
    tmp_path: Path, name: str, code: int, said: str
) -> None:
    """Ctrl-C or SIGTERM just after the outputs were written lands in an ``atexit`` handler
    (torch's ``_del_library``, 8 runs of 12): Python said it as the handler's error, with a
    traceback, before the stop line (t328). The stop line alone says it; another handler's
    own error is said as Python says it, a KeyboardInterrupt it raises itself too (t329)."""
    result = _wnpass_beside(
        tmp_path, _STOPPED_AT_EXIT.format(name=name), "-q", "train-rewrite", "model.py"
    )
    assert result.returncode == code
    assert result.stderr.count("Traceback") == 2 and "a handler's own error" in result.stderr
    assert "KeyboardInterrupt: raised by the handler, no signal" in result.stderr
    assert result.stderr.count("KeyboardInterrupt:") == 1 and "Terminated" not in result.stderr
    assert result.stderr.strip().endswith(
        f"wnpass: {said}; already written: model.wn.pt; nothing more was written"
    )


_RAISING_FORWARD = """
import torch
class M(torch.nn.Linear):
    def forward(self, x):
        raise {error}
def build_model():
    return M(2, 2)
def example_inputs():
    return torch.ones(1, 2)
"""
# (the model's code, what the error line says it did)
EXITS = {
    "import": ("import sys\nsys.exit(0)\n", "called sys.exit(0)"),
    "forward": (_RAISING_FORWARD.format(error="SystemExit(0)"), "called sys.exit(0)"),
    # a BaseException that is neither a stop nor SystemExit gave a traceback and exit 1
    "import-base": ("class E(BaseException):\n    pass\nraise E('own')\n", "raised E: own"),
    "forward-base": (_RAISING_FORWARD.format(error="GeneratorExit('g')"), "raised GeneratorExit"),
    # os._exit ended the process at once: exit 0, nothing written, no word (t202)
    "import-os": ("import os\nos._exit(0)\n", "called os._exit(0)"),
    "forward-os": (
        _RAISING_FORWARD.replace("raise {error}", "__import__('os')._exit(3)"),
        "called os._exit(3)",
    ),
}
# Without example inputs the model is traced by torch.fx: a sys.exit() there is a tracer's
# failure like any other, and module types are read (tests/fx/test_analyse.py).


EXPORT = ["export", "-o", "{out}", "--verify"]


@pytest.mark.parametrize(
    ("where", "command"),
    [
        ("import", EXPORT),
        ("import", ["train-rewrite"]),
        ("forward", EXPORT),
        ("forward", ["train-rewrite"]),
        ("forward", ["inspect"]),
        ("import-base", EXPORT),
        ("forward-base", EXPORT),
        ("forward-base", ["train-rewrite"]),
        ("forward-base", ["inspect"]),
        ("import-os", EXPORT),
        ("import-os", ["train-rewrite"]),
        ("forward-os", EXPORT),
        ("forward-os", ["inspect"]),
    ],
)
def test_a_sys_exit_in_the_model_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, command: list[str]
) -> None:
    """``sys.exit()`` (or another BaseException) in a model.py's code (its body, its forward)
    is bad input: one line naming the file and what it did, exit 2, nothing written; never
    the model's exit code and never silence."""
    code, said = EXITS[where]
    model_py = tmp_path / "m.py"
    model_py.write_text(code)
    name, *rest = command
    argv = [name, str(model_py), *(a.format(out=tmp_path / "m.onnx") for a in rest)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wnpass: error: {model_py}: ") and err.count("\n") == 1
    assert said in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.py"]


def test_a_keyboard_interrupt_in_the_model_stops_the_program(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C inside the model's code is a stop, as anywhere else (exit 130), not its error;
    a KeyboardInterrupt the code raises itself, no Ctrl-C having come, is its error (t345:
    it was said as the user's Ctrl-C, exit 130)."""
    signalled = "import os, signal, time\ndef build_model():\n    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(5)\n"  # noqa: E501
    # and where its code installs a SIGINT handler of its own (a training script's): the
    # KeyboardInterrupt that raises is no less a Ctrl-C (t347: "no Ctrl-C came", exit 2)
    installed = "    signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    own = signalled.replace("def build_model():\n", "def build_model():\n" + installed)
    for code in (signalled, own):
        result = _wnpass_beside(tmp_path, code, "train-rewrite", "model.py")
        assert (result.returncode, result.stderr) == (
            130,
            "wnpass: interrupted; nothing more was written\n",
        )
    model_py = tmp_path / "m.py"
    model_py.write_text("def build_model():\n    raise KeyboardInterrupt('its own')\n")
    assert main(["train-rewrite", str(model_py)]) == 2
    assert capsys.readouterr().err == (
        f"wnpass: error: {model_py}: the model's code raised KeyboardInterrupt: its own (no "
        "Ctrl-C came)\n"
    )


def test_a_ctrl_c_a_handler_of_the_models_own_took_for_a_moment_is_a_stop(
    tmp_path: Path,
) -> None:
    """t348: a Ctrl-C that came while the model's code had its own SIGINT handler, given
    back before the end (a DelayedKeyboardInterrupt block), was said as the model's own
    KeyboardInterrupt, "no Ctrl-C came", exit 2: a stop, exit 130."""
    code = (
        "import os, signal, time\n"
        "def build_model():\n"
        "    old = signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(5)\n"
        "    finally:\n"
        "        signal.signal(signal.SIGINT, old)\n"
    )
    result = _wnpass_beside(tmp_path, code, "train-rewrite", "model.py")
    assert (result.returncode, result.stderr) == (
        130,
        "wnpass: interrupted; nothing more was written\n",
    )


def test_a_keyboard_interrupt_where_sigint_is_ignored_is_the_models_own(tmp_path: Path) -> None:
    """t348: started with SIGINT ignored (a shell script's background job), no Ctrl-C can
    come: the model's own KeyboardInterrupt was said as one, exit 130. It is its error, exit
    2."""
    (tmp_path / "model.py").write_text(
        "def build_model():\n    raise KeyboardInterrupt('its own')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "wnpass", "train-rewrite", "model.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.endswith("raised KeyboardInterrupt: its own (no Ctrl-C came)\n")


def test_a_base_exception_no_block_names_is_an_internal_error_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The last net: any BaseException but a stop or SystemExit that reaches the command line
    is one line and exit 3, never a traceback with exit 1."""

    class Escaped(BaseException):
        pass

    def run(args: object, out: object) -> int:
        """Raises what no block names."""
        raise Escaped("past every block")

    from wnpass.cli import inspect as inspect_command

    monkeypatch.setattr(inspect_command, "run", run)
    assert main(["inspect", "m.onnx"]) == 3
    err = capsys.readouterr().err
    assert err == (
        "wnpass: internal error: Escaped: past every block (run with -v to see the traceback)\n"
    )


def test_a_usage_error_holding_a_newline_or_an_escape_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unknown argument holding ESC and a newline was printed as it was: two lines, the
    escape sent to the terminal (t128)."""
    assert main(["inspect", "m.onnx", "--x\x1b[31mRED\nsecond"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "wnpass: error: unrecognized arguments: --x\\x1b[31mRED\\nsecond "
        "(see wnpass inspect --help)"
    )


def test_an_argument_a_command_does_not_take_points_at_its_own_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``wnpass inspect m.onnx --verify`` said "see wnpass --help" (t143), whose page lists
    the commands, not inspect's options; one before the command is the program's."""
    assert main(["inspect", "m.onnx", "--verify"]) == 2
    assert capsys.readouterr().err.endswith("--verify (see wnpass inspect --help)\n")
    assert main(["--verify", "inspect", "m.onnx"]) == 2
    assert capsys.readouterr().err.endswith("--verify (see wnpass --help)\n")
    assert main(["-x", "inspect", "m.onnx", "-x"]) == 2  # one of them the program's (t144)
    assert capsys.readouterr().err.endswith("-x -x (see wnpass --help)\n")
    assert main(["--bogus"]) == 2  # no command: the unknown option is said first (t155)
    assert capsys.readouterr().err.endswith("unrecognized arguments: --bogus (see wnpass --help)\n")
    for argv in ([], ["--"], ["-q", "--"]):
        assert main(argv) == 2
        assert capsys.readouterr().err.endswith("required: COMMAND (see wnpass --help)\n")
    assert main(["--", "inspect", "m.onnx", "--verify"]) == 2  # was: invalid choice '--' (t159)
    assert capsys.readouterr().err.endswith("--verify (see wnpass inspect --help)\n")
    assert main(["inspect", "a.onnx", "--strict", "b.onnx"]) == 2  # a list split (t196)
    assert capsys.readouterr().err.endswith(
        "unrecognized arguments: b.onnx (give the files together, before the options or after "
        "them) (see wnpass inspect --help)\n"
    )
    assert main(["inspect", "a.onnx", "--shapes", "x=1", "b.onnx"]) == 2  # an unknown option
    assert capsys.readouterr().err.endswith("x=1 b.onnx (see wnpass inspect --help)\n")
    assert main(["fold", "a.onnx", "-q", "b.onnx"]) == 2  # one file: no list to give together
    assert capsys.readouterr().err.endswith("b.onnx (see wnpass fold --help)\n")


CLOSES_STDOUT = """
import sys
from torch import nn

sys.stdout.close()

def build_model():
    return nn.Linear(8, 4)

def example_inputs():
    raise ValueError("bad inputs")
"""


def test_a_model_py_that_closes_its_stdout_is_said_on_stderr(tmp_path: Path) -> None:
    """t344: the report went nowhere, and nothing said so (exit 0): as for a standard output
    that takes nothing, a line on stderr says it, with what was written, exit 2."""
    closes = "import sys\nfrom torch import nn\nsys.stdout.close()\n" + (
        "def build_model():\n    return nn.Linear(8, 4)\n"
    )
    result = _wnpass_beside(tmp_path, closes, "train-rewrite", "model.py", "-o", "o.pt")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == (
        "wnpass: error: cannot write to standard output (closed by the model's code); already "
        "written: o.pt"
    )


def test_a_model_py_that_closes_its_stdout_under_json_dash_leaves_the_error_line(
    tmp_path: Path,
) -> None:
    """Under ``--json -`` a model.py's standard output was ``sys.stderr`` itself: closing it
    closed the stream the error line goes to, and the run ended in exit 2 alone (t128)."""
    (tmp_path / "closer.py").write_text(CLOSES_STDOUT)
    for command in ("inspect", "train-rewrite"):
        argv = [sys.executable, "-m", "wnpass", command, "closer.py", "--json", "-"]
        result = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, check=False)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.splitlines()[-1] == (
            "wnpass: error: closer.py: example_inputs() raised ValueError: bad inputs"
        )


@pytest.mark.parametrize(
    ("argv", "argument"),
    [
        (["fold", ""], "MODEL"),
        (["fold", "m.onnx", "-o", ""], "-o/--output"),
        (["inspect", ""], "MODEL"),
        (["check", "a.onnx", ""], "CANDIDATE.onnx"),
        (["check", "a.onnx", "b.onnx", "--inputs", ""], "--inputs"),
        (["check", "a.onnx", "b.onnx", "--json", ""], "--json"),
        (["export", "m.py", "-o", ""], "-o/--output"),
        (["train-rewrite", ""], "model.py"),
        (["convert", "c.pt", "--to", "legacy", "-o", ""], "-o/--output"),
    ],
)
def test_an_empty_path_is_refused_by_its_flag(
    argv: list[str], argument: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``-o ''`` said "-o .: is a directory": Path("") is the current folder."""
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"argument {argument}: an empty path" in line


PRINTS = """
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

def build_model():
    print("building the model")
    import os
    os.write(1, b"native code writes here\\n")  # file descriptor 1 itself, as C++ would
    return nn.Sequential(weight_norm(nn.Linear(4, 3)))

def example_inputs():
    return (torch.randn(2, 4),)
"""


def test_json_dash_writes_the_report_alone_on_standard_output(tmp_path: Path) -> None:
    """``--json -`` wrote a file named ``-`` (t104): the JSON goes to standard output, alone;
    what the command prints, and what a model.py's code prints, goes to standard error."""
    model = weight_normed(tmp_path)
    argv = [sys.executable, "-m", "wnpass", "fold", str(model), "--json", "-"]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True
    assert "folded 1 of 1 weight-norm site" in result.stderr
    assert not (tmp_path / "-").exists()
    (tmp_path / "model.py").write_text(PRINTS)
    argv = [sys.executable, "-m", "wnpass", "inspect", str(tmp_path / "model.py"), "--json", "-"]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), dict)
    assert "building the model" in result.stderr
    assert "native code writes here" in result.stderr
    # standard output that takes nothing: said as such, with what was written; exit 2
    if os.path.exists("/dev/full"):
        argv = [sys.executable, "-m", "wnpass", "fold", str(model), "-o", "f.onnx", "--json", "-"]
        with open("/dev/full", "w") as full:
            result = subprocess.run(
                argv, stdout=full, stderr=subprocess.PIPE, text=True, cwd=tmp_path, check=False
            )
        assert result.returncode == 2
        assert result.stderr.splitlines()[-1] == (
            "wnpass: error: cannot write to standard output (No space left on device); "
            "already written: f.onnx"
        )
    # ./- is the file of that name, not standard output (Path made both "-", t108)
    assert main(["fold", str(model), "-o", str(tmp_path / "h.onnx"), "--json", "./-"]) == 2
    assert not (tmp_path / "h.onnx").exists()
    # standard output closed (>&-): the JSON went nowhere, exit 0, no word (t108)
    closed = f"{sys.executable} -m wnpass --quiet inspect {model} --json - >&-"
    result = subprocess.run(["bash", "-c", closed], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "wnpass: error: cannot write to standard output (Bad file descriptor)"
    )
    # a JSON report's name says it is one: --json trained.pt replaced a checkpoint (t107)
    (tmp_path / "trained.pt").write_bytes(b"kept")
    argv = [
        "fold",
        str(model),
        "-o",
        str(tmp_path / "g.onnx"),
        "--json",
        str(tmp_path / "trained.pt"),
    ]
    assert main(argv) == 2
    assert (tmp_path / "trained.pt").read_bytes() == b"kept"
