"""Hostile options: every option is validated before anything is read deeply or written; a bad
one is one line naming the flag, exit 2, and no file written (not even with --verify)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import onnx_model
from tests.hostile.builders import assert_refused, good, model_py, npz, raw, unchecked
from wnpass.verify import providers

Argv = Callable[[Path], list[str]]


def _check(*extra: str) -> Argv:
    return lambda t: ["check", str(good(t)), str(good(t, "c.onnx")), *extra]


def _fold_verify(*extra: str) -> Argv:
    return lambda t: ["fold", str(good(t)), "--verify", *extra]


def _export(*extra: str) -> Argv:
    return lambda t: ["export", str(model_py(t)), "-o", str(t / "m.onnx"), *extra]


def _check_inputs(inputs: Callable[[Path], Path | str], *extra: str) -> Argv:
    """check of a model against itself with an inputs file made in the folder."""
    return lambda t: ["check", str(good(t)), str(good(t)), "--inputs", str(inputs(t)), *extra]


def _other_inputs(t: Path) -> Path:
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[N, 4] z) => (float[N, 4] y) { y = Relu(z) }
    """
    return unchecked(t, onnx_model(text), "cand.onnx")


def _unloadable(t: Path) -> Path:
    """Valid to the full ONNX checker, refused by onnxruntime (an op of a domain it lacks)."""
    text = """
        <ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
        agraph (float[N, 4] x) => (float[N, 4] y) { y = com.example.Frobnicate(x) }
    """
    return unchecked(t, onnx_model(text, check=False), "cand.onnx")


def _inputs(t: Path) -> str:
    return str(npz(t, x=np.zeros((2, 4), np.float32)))


# name -> (the argv, built in a folder; the text the error names)
OPTIONS: dict[str, tuple[Argv, str]] = {}
for prefix, make in (("check", _check), ("fold --verify", _fold_verify)):
    OPTIONS |= {
        f"{prefix} --rtol nan": (make("--rtol", "nan"), "--rtol nan: a tolerance must be"),
        f"{prefix} --rtol inf": (make("--rtol", "inf"), "--rtol inf: a tolerance must be"),
        f"{prefix} --rtol -1": (make("--rtol", "-1"), "--rtol -1.0: a tolerance must be"),
        f"{prefix} --atol nan": (make("--atol", "nan"), "--atol nan: a tolerance must be"),
        f"{prefix} --atol -1e-3": (make("--atol=-1e-3"), "--atol -0.001: a tolerance"),
        f"{prefix} --rtol text": (make("--rtol", "tight"), "invalid float value"),
        f"{prefix} --runs 0": (make("--runs", "0"), "--runs 0: must be a whole number from 1 to"),
        f"{prefix} --warmup 10**20": (  # a slip that ran with no end (t143)
            make("--warmup", "99999999999999999999"),
            "--warmup 99999999999999999999: must be a whole number from 0 to 1000000",
        ),
        f"{prefix} --runs -5": (make("--runs", "-5"), "--runs -5: must be a whole number"),
        f"{prefix} --runs 1.5": (make("--runs", "1.5"), "invalid int value"),
        # float() and int() read these as numbers (t211): 10, 0, 2
        f"{prefix} --rtol 1_0": (make("--rtol", "1_0"), "--rtol: invalid float value: '1_0'"),
        f"{prefix} --atol 1e-400": (
            make("--atol", "1e-400"),
            "--atol: 1e-400: too small for a float, which holds it as 0",
        ),
        f"{prefix} --rtol 1e400": (make("--rtol", "1e400"), "--rtol: 1e400: too large for a"),
        f"{prefix} --runs of 5000 digits": (make("--runs", "9" * 5000), "invalid int value"),
        f"{prefix} --threads 2 in other digits": (
            make("--threads", "\u0662"),
            "--threads: invalid int value: '\u0662'",
        ),
        f"{prefix} --warmup -1": (make("--warmup", "-1"), "--warmup -1: must be a whole number"),
        f"{prefix} --threads 0": (make("--threads", "0"), "--threads 0: must be a whole"),
        f"{prefix} --shape without =": (make("--shape", "x:1,4"), "expected NAME=DIMS"),
        f"{prefix} --shape of size 0": (make("--shape", "x=0,4"), "must be a whole number >= 1"),
        f"{prefix} --shape of the wrong rank": (
            make("--shape", "x=1,4,4"),
            "--shape x: 3 dimensions given, the model has 2",
        ),
        f"{prefix} --shape against a fixed axis": (
            make("--shape", "x=1,5"),
            "--shape x: axis 1 is fixed at 4, got 5",
        ),
        f"{prefix} --shape of an unknown input": (
            make("--shape", "mel=1,4"),
            "--shape mel: the model has no input of that name",
        ),
        f"{prefix} --shape too large to synthesize": (
            make("--shape", "x=100000000,4"),
            "more than the",
        ),
        f"{prefix} --provider tpu": (make("--provider", "tpu"), "invalid choice"),
        f"{prefix} --optimization max": (make("--optimization", "max"), "invalid choice"),
        f"{prefix} --inputs missing": (
            make("--inputs", "/nonexistent/in.npz"),
            "--inputs /nonexistent/in.npz: no such file",
        ),
    }
    if "cuda" not in providers.available():
        OPTIONS[f"{prefix} --provider cuda here"] = (
            make("--provider", "cuda"),
            "--provider 'cuda': not available",
        )

OPTIONS |= {
    "check --shape and --inputs": (
        _check_inputs(_inputs, "--shape", "x=2,4"),
        "--shape and --inputs cannot be combined",
    ),
    "export --opset 7 with dynamo": (_export("--opset", "7"), "--opset 7: the dynamo exporter"),
    "export --opset 17 with dynamo": (_export("--opset", "17"), "--opset 17: the dynamo"),
    "export --opset 99": (_export("--opset", "99"), "--opset 99: the dynamo exporter writes"),
    "export --opset 6 with torchscript": (
        _export("--exporter", "torchscript", "--opset", "6"),
        "--opset 6: the torchscript exporter writes opsets 7 to",
    ),
    "export --opset 21 with torchscript": (
        _export("--exporter", "torchscript", "--opset", "21"),
        "--opset 21: the torchscript exporter",
    ),
    "export --exporter onnxscript": (_export("--exporter", "onnxscript"), "invalid choice"),
    "export --dynamic without axes": (_export("--dynamic", "x"), "--dynamic 'x': expected"),
    "export --dynamic with text axes": (_export("--dynamic", "x=a,b"), "expected NAME=AXES"),
    # int() takes these (t202): an Arabic-Indic 3, a space, a sign
    "export --dynamic with a non-ASCII digit": (_export("--dynamic", "x=\u0663"), "expected NAME"),
    "export --dynamic with a space": (_export("--dynamic", "x= 0"), "expected NAME=AXES"),
    "export --dynamic with a plus sign": (_export("--dynamic", "x=+1"), "expected NAME=AXES"),
    # int() refuses past 4300 digits: an internal error (t212)
    "export --dynamic of 5000 digits": (_export("--dynamic", "x=" + "9" * 5000), "expected NAME"),
    "export --opset of 5000 digits": (_export("--opset", "9" * 5000), "invalid int value"),
    "export --dynamic with a negative axis": (
        _export("--dynamic", "x=-1"),
        "axes count from 0 (a negative axis is not taken)",
    ),
    # --accept-ranges where no range can be accepted (t124): refused, not ignored
    "export --accept-ranges without --dynamic": (
        _export("--accept-ranges"),
        "--accept-ranges goes with dynamic axes: with none given",
    ),
    "export --accept-ranges with torchscript": (
        _export("--exporter", "torchscript", "--dynamic", "x=0", "--accept-ranges"),
        "--accept-ranges goes with the dynamo exporter: the torchscript exporter holds no axis",
    ),
    # a check option where no check runs is refused, not ignored unvalidated
    "fold --rtol -1 without --verify": (
        lambda t: ["fold", str(good(t)), "--rtol", "-1"],
        "--rtol goes with --verify",
    ),
    "fold --runs 0 without --verify": (
        lambda t: ["fold", str(good(t)), "--runs", "0"],
        "--runs goes with --verify",
    ),
    "fold --optimization default without --verify": (
        lambda t: ["fold", str(good(t)), "--optimization", "default"],
        "--optimization goes with --verify",
    ),
    "export --threads 0 without --verify": (
        _export("--threads", "0"),
        "--threads goes with --verify",
    ),
    "export --verify --rtol nan": (_export("--verify", "--rtol", "nan"), "--rtol nan"),
    "export --verify --runs 0": (_export("--verify", "--runs", "0"), "--runs 0"),
    "export --verify --warmup -2": (_export("--verify", "--warmup", "-2"), "--warmup -2"),
    "export without -o": (
        lambda t: ["export", str(model_py(t))],
        "the following arguments are required: -o",
    ),
    # an output named as another kind of file replaced it (a checkpoint with an ONNX model,
    # a script with a state dict: t105): the name must say what is written
    "export -o a .py file": (
        lambda t: ["export", str(model_py(t)), "-o", str(t / "out.py")],
        "out.py: an ONNX output's name must end with .onnx",
    ),
    "export -o an existing checkpoint": (
        lambda t: ["export", str(model_py(t)), "-o", str(raw(t, b"PK checkpoint", "trained.pt"))],
        "trained.pt: an ONNX output's name must end with .onnx",
    ),
    "fold -o an existing checkpoint": (
        lambda t: ["fold", str(good(t)), "-o", str(raw(t, b"PK checkpoint", "trained.pt"))],
        "trained.pt: an ONNX output's name must end with .onnx",
    ),
    # the slash named a folder, but was dropped: the file of that name was replaced (t106)
    "fold -o a file's name with a slash": (
        lambda t: ["fold", str(good(t)), "-o", str(raw(t, b"kept", "keep.onnx")) + "/"],
        "keep.onnx/: names a folder, not a file",
    ),
    "train-rewrite -o a file's name with a slash": (
        lambda t: ["train-rewrite", str(model_py(t)), "-o", str(raw(t, b"kept", "w.pt")) + "/"],
        "w.pt/: names a folder, not a file",
    ),
    "fold -o a name without a suffix": (
        lambda t: ["fold", str(good(t)), "-o", str(t / "folded")],
        "folded: an ONNX output's name must end with .onnx",
    ),
    "fold -o .onnx alone": (
        lambda t: ["fold", str(good(t)), "-o", str(t / ".onnx")],
        ".onnx: an ONNX output needs a name before .onnx",
    ),
    "train-rewrite -o an existing script": (
        lambda t: ["train-rewrite", str(model_py(t)), "-o", str(raw(t, b"print(1)", "train.py"))],
        "train.py: a state dict written with torch.save: its name must end with .pt, .pth, "
        ".bin, .pth.tar or .ckpt",
    ),
    "train-rewrite -o an existing ONNX model": (
        lambda t: ["train-rewrite", str(model_py(t)), "-o", str(good(t, "old.onnx"))],
        "old.onnx: a state dict written with torch.save: its name must end with .pt",
    ),
    "train-rewrite --data without --init data": (
        lambda t: ["train-rewrite", str(model_py(t)), "--data", _inputs(t)],
        "--data is the batch for --init data",
    ),
    "train-rewrite --init magic": (
        lambda t: ["train-rewrite", str(model_py(t)), "--init", "magic"],
        "invalid choice",
    ),
    "fold --model for an ONNX file": (
        lambda t: ["fold", str(good(t)), "--model", str(model_py(t))],
        "--model and --factory verify a checkpoint fold",
    ),
    "inspect --factory for an ONNX file": (
        lambda t: ["inspect", str(good(t)), "--factory", "build"],
        "--factory: for a model.py, not an ONNX model",
    ),
    "inspect --exclude-type for an ONNX file": (  # named as given (t143)
        lambda t: ["inspect", str(good(t)), "--exclude-type", "Conv1d"],
        "--exclude-type: for a model.py, not an ONNX model",
    ),
    "check --inputs of the wrong dtype": (
        _check_inputs(lambda t: npz(t, x=np.zeros((2, 4)))),
        "x is float64, the model wants float",
    ),
    "check --inputs with an extra array": (
        _check_inputs(lambda t: npz(t, x=np.zeros((2, 4), np.float32), z=np.zeros(1))),
        "the model has no input 'z'",
    ),
    "check --inputs not an npz": (
        _check_inputs(lambda t: raw(t, b"junk", "i.npz")),
        "not a readable .npz",
    ),
    "check models with different inputs": (
        lambda t: ["check", str(good(t)), str(_other_inputs(t))],
        "inputs differ from the reference's",
    ),
    # (a candidate it cannot load where the reference loaded fails the check: exit 1)
    "check a reference onnxruntime cannot load": (
        lambda t: ["check", str(_unloadable(t)), str(good(t))],
        "onnxruntime cannot load it",
    ),
    "no command": (lambda t: [], "the following arguments are required"),
    "unknown command": (lambda t: ["squash", "x"], "invalid choice"),
    "unknown flag": (lambda t: ["fold", str(good(t)), "--bogus"], "unrecognized"),
}


@pytest.mark.parametrize("case", OPTIONS)
def test_a_bad_option_is_refused_before_anything_is_written(
    case: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, expected = OPTIONS[case]
    assert_refused(argv(work), work.parent, capsys, 2, expected)
