"""A corpus of bad inputs: each gives one clear line on stderr, exit 2, no traceback, and
leaves every file as it was (nothing half-written, the input untouched)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
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


def good(tmp: Path, name: str = "model.onnx") -> Path:
    path = tmp / name
    onnx.save(onnx_model(WN, v=rand(3, 4), g=rand(3, 1)), path)
    return path


def raw(tmp: Path, content: bytes, name: str = "model.onnx") -> Path:
    path = tmp / name
    path.write_bytes(content)
    return path


def unchecked(tmp: Path, model: onnx.ModelProto, name: str = "model.onnx") -> Path:
    path = tmp / name
    path.write_bytes(model.SerializeToString())
    return path


def external(tmp: Path, location: str, length: int | None = None) -> Path:
    """A model whose v lives in external data at ``location`` (written by hand)."""
    model = onnx_model(WN, v=rand(3, 4), g=rand(3, 1))
    tensor = next(t for t in model.graph.initializer if t.name == "v")
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entries = {"location": location, "offset": "0", "length": str(length or 48)}
    for key, value in entries.items():
        tensor.external_data.add(key=key, value=value)
    return unchecked(tmp, model)


def with_nodes(tmp: Path, edit: Callable[[onnx.ModelProto], None]) -> Path:
    model = onnx_model(WN, v=rand(3, 4), g=rand(3, 1))
    edit(model)
    return unchecked(tmp, model)


def _unknown_op(model: onnx.ModelProto) -> None:
    model.graph.node[1].op_type = "Divide"


def _unsorted(model: onnx.ModelProto) -> None:
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))


def _opset(version: int) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        model.opset_import[0].version = version

    return edit


def _ir_version(model: onnx.ModelProto) -> None:
    model.ir_version = 99


def _symlink_out(tmp: Path) -> Path:
    outside = tmp.parent / f"{tmp.name}-secret.bin"
    outside.write_bytes(b"\0" * 64)
    (tmp / "weights.bin").symlink_to(outside)
    return external(tmp, "weights.bin")


def _plain(tmp: Path, name: str = "plain.onnx") -> Path:
    text = '<ir_version: 8, opset_import: ["" : 17]> g (float[2] x) => (float[2] y) { y = Relu(x) }'
    return unchecked(tmp, onnx_model(text), name)


def _external_no_length(tmp: Path) -> Path:
    raw(tmp, b"\0" * 8, "weights.bin")
    path = external(tmp, "weights.bin")
    model = onnx.load(path, load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.name == "v")
    kept = [e for e in tensor.external_data if e.key != "length"]
    del tensor.external_data[:]
    tensor.external_data.extend(kept)
    return unchecked(tmp, model)


def _external_ok(tmp: Path) -> Path:
    """A valid model whose weights live in weights.bin."""
    path = tmp / "model.onnx"
    model = onnx_model(WN, v=rand(3, 4), g=rand(3, 1))
    onnx.save(model, path, save_as_external_data=True, location="weights.bin", size_threshold=0)
    return path


def _unloadable(tmp: Path) -> Path:
    """Valid to the full ONNX checker, refused by onnxruntime (an op of a domain it lacks)."""
    text = """
        <ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
        agraph (float[N, 4] x) => (float[N, 4] y) { y = com.example.Frobnicate(x) }
    """
    return unchecked(tmp, onnx_model(text, check=False), "cand.onnx")


def _other_inputs(tmp: Path) -> Path:
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[N, 4] z) => (float[N, 4] y) { y = Relu(z) }
    """
    return unchecked(tmp, onnx_model(text), "cand.onnx")


def _model_py(tmp: Path, source: str, name: str = "model.py") -> Path:
    path = tmp / name
    path.write_text(source)
    return path


GOOD_PY = """
import torch
def build_model():
    return torch.nn.Linear(4, 3)
def example_inputs():
    return (torch.randn(2, 4),)
"""


def _checkpoint(tmp: Path, content: bytes | None = None) -> str:
    path = tmp / "ckpt.pt"
    if content is not None:
        path.write_bytes(content)
    return str(path)


def _npz(tmp: Path, **arrays: np.ndarray) -> str:
    np.savez(tmp / "inputs.npz", **arrays)
    return str(tmp / "inputs.npz")


# name -> (argv builder, expected text in the error line)
CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "missing file": (lambda t: ["fold", str(t / "absent.onnx")], "no such file"),
    "directory": (lambda t: ["fold", str(t)], "is a directory"),
    "empty file": (lambda t: ["fold", str(raw(t, b""))], "empty file"),
    "random bytes": (
        lambda t: ["fold", str(raw(t, np.random.default_rng(1).bytes(4096)))],
        "not a readable ONNX model",
    ),
    "text file": (lambda t: ["fold", str(raw(t, b"hello, I am not a model\n"))], "model"),
    "truncated protobuf": (
        lambda t: ["fold", str(raw(t, good(t, "full.onnx").read_bytes()[:150]))],
        "not a readable ONNX model",
    ),
    "a TensorProto, not a model": (
        lambda t: [
            "fold",
            str(raw(t, onnx.numpy_helper.from_array(rand(4, 4), "t").SerializeToString())),
        ],
        "model.onnx: not",
    ),
    "unknown op": (
        lambda t: ["fold", str(with_nodes(t, _unknown_op))],
        "rejected by the ONNX checker",
    ),
    "nodes out of order": (
        lambda t: ["fold", str(with_nodes(t, _unsorted))],
        "rejected by the ONNX checker",
    ),
    "opset from the future": (
        lambda t: ["fold", str(with_nodes(t, _opset(99)))],
        "rejected by the ONNX checker",
    ),
    "IR version from the future": (
        lambda t: ["fold", str(with_nodes(t, _ir_version))],
        "rejected by the ONNX checker",
    ),
    "missing external data": (
        lambda t: ["fold", str(external(t, "weights.bin"))],
        "external data file 'weights.bin' is missing",
    ),
    "absolute external data path": (
        lambda t: ["fold", str(external(t, "/etc/passwd"))],
        "absolute external data path",
    ),
    "external data climbing out": (
        lambda t: ["fold", str(external(t, "../../../etc/passwd"))],
        "outside the model's folder",
    ),
    "external data symlinked out": (
        lambda t: ["fold", str(_symlink_out(t))],
        "outside the model's folder",
    ),
    "external data too short": (
        lambda t: ["fold", str(external((raw(t, b"\0" * 8, "weights.bin").parent), "weights.bin"))],
        "ends before the tensor",
    ),
    "output folder missing": (
        lambda t: ["fold", str(good(t)), "-o", str(t / "nowhere" / "out.onnx")],
        "no such directory",
    ),
    "output is a directory": (
        lambda t: ["fold", str(good(t)), "-o", str(t)],
        "is a directory",
    ),
    "output is the input": (
        lambda t: ["fold", str(good(t)), "-o", str(t / "model.onnx")],
        "would overwrite the input",
    ),
    "--in-place with another -o": (
        lambda t: ["fold", str(good(t)), "--in-place", "-o", str(t / "other.onnx")],
        "--in-place replaces the input",
    ),
    "inspect a bad file": (lambda t: ["inspect", str(raw(t, b"\x08\x01junk"))], "model"),
    "check: bad reference": (
        lambda t: ["check", str(raw(t, b"junk", "ref.onnx")), str(good(t))],
        "ref.onnx",
    ),
    "check: bad candidate": (
        lambda t: ["check", str(good(t)), str(raw(t, b"junk", "cand.onnx"))],
        "cand.onnx",
    ),
    "check: malformed --shape": (
        lambda t: ["check", str(good(t)), str(good(t)), "--shape", "x:1,4"],
        "expected NAME=DIMS",
    ),
    "check: --shape of the wrong rank": (
        lambda t: ["check", str(good(t)), str(good(t)), "--shape", "x=1,4,4"],
        "3 dimensions given, the model has 2",
    ),
    "check: --shape against a fixed axis": (
        lambda t: ["check", str(good(t)), str(good(t)), "--shape", "x=1,5"],
        "axis 1 is fixed at 4",
    ),
    "check: --shape of an unknown input": (
        lambda t: ["check", str(good(t)), str(good(t)), "--shape", "mel=1,4"],
        "no input of that name",
    ),
    "check: --inputs missing": (
        lambda t: ["check", str(good(t)), str(good(t)), "--inputs", str(t / "absent.npz")],
        "no such file",
    ),
    "check: --inputs of the wrong dtype": (
        lambda t: ["check", str(good(t)), str(good(t)), "--inputs", _npz(t, x=np.zeros((2, 4)))],
        "x is float64, the model wants float",
    ),
    "check: --inputs with an extra array": (
        lambda t: [
            "check",
            str(good(t)),
            str(good(t)),
            "--inputs",
            _npz(t, x=np.zeros((2, 4), np.float32), z=np.zeros(1)),
        ],
        "the model has no input 'z'",
    ),
    "check: --inputs not an npz": (
        lambda t: ["check", str(good(t)), str(good(t)), "--inputs", str(raw(t, b"junk", "i.npz"))],
        "not a readable .npz",
    ),
    "nothing to fold, output folder missing": (
        lambda t: ["fold", str(_plain(t)), "-o", str(t / "nowhere" / "out.onnx")],
        "no such directory",
    ),
    "--json into a missing folder": (
        lambda t: ["fold", str(good(t)), "--json", str(t / "nowhere" / "r.json")],
        "--json",
    ),
    "--json over the input": (
        lambda t: ["inspect", str(good(t)), "--json", str(t / "model.onnx")],
        "would overwrite the input model",
    ),
    "-o onto the input's external data": (
        lambda t: ["fold", str(_external_ok(t)), "-o", str(t / "weights.bin")],
        "would overwrite the input",
    ),
    "external data without a length, too short": (
        lambda t: ["fold", str(_external_no_length(t))],
        "ends before the tensor",
    ),
    "fold --verify on a provider that is absent": (
        lambda t: ["fold", str(good(t)), "--verify", "--provider", "cuda"],
        "--provider 'cuda': not available",
    ),
    "fold --verify with missing --inputs": (
        lambda t: ["fold", str(good(t)), "--verify", "--inputs", str(t / "none.npz")],
        "no such file",
    ),
    "check: models with different inputs": (
        lambda t: ["check", str(good(t)), str(_other_inputs(t))],
        "inputs differ from the reference's",
    ),
    "check: a candidate onnxruntime cannot load": (
        lambda t: ["check", str(good(t)), str(_unloadable(t))],
        "onnxruntime cannot load it",
    ),
    "model.py missing": (lambda t: ["train-rewrite", str(t / "absent.py")], "no such file"),
    "model.py with a syntax error": (
        lambda t: ["inspect", str(_model_py(t, "def build_model(:\n"))],
        "syntax",
    ),
    "model.py without a factory": (
        lambda t: ["train-rewrite", str(_model_py(t, "x = 1\n"))],
        "build_model",
    ),
    "model.py whose factory raises": (
        lambda t: [
            "export",
            str(_model_py(t, "def build_model():\n    raise KeyError('w')\n")),
            "-o",
            str(t / "m.onnx"),
        ],
        "raised",
    ),
    "model.py whose factory returns no module": (
        lambda t: ["train-rewrite", str(_model_py(t, "def build_model():\n    return 3\n"))],
        "not a torch.nn.Module",
    ),
    "a checkpoint that is no file": (
        lambda t: ["train-rewrite", str(_model_py(t, GOOD_PY)), "--checkpoint", _checkpoint(t)],
        "ckpt.pt",
    ),
    "a checkpoint of random bytes": (
        lambda t: [
            "export",
            str(_model_py(t, GOOD_PY)),
            "-o",
            str(t / "m.onnx"),
            "--checkpoint",
            _checkpoint(t, b"\x80\x02junk"),
        ],
        "cannot load",
    ),
    "check: --runs 0": (
        lambda t: ["check", str(good(t)), str(good(t)), "--runs", "0"],
        "--runs 0: must be a whole number >= 1",
    ),
}


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "dir"
        for p in sorted(folder.rglob("*"))
        if not p.is_symlink()
    }


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clear_line_and_exit_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build, expected = CASES[case]
    argv = build(tmp_path)
    before = _snapshot(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("wnpass: error: ") and err.count("\n") == 1, err
    assert expected in err and "Traceback" not in err
    assert _snapshot(tmp_path) == before, "files were changed or written"


def test_the_corpus_is_at_least_30_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    ("v", "reason"),
    [
        (np.array([[1, 2, 3, 4], [0, 0, 0, 0], [1, 1, 1, 1]], np.float32), "zero-norm"),
        (np.array([[1, 2, 3, np.nan], [1, 0, 0, 0], [1, 1, 1, 1]], np.float32), "NaN or Inf"),
        (np.array([[1, 2, 3, np.inf], [1, 0, 0, 0], [1, 1, 1, 1]], np.float32), "NaN or Inf"),
    ],
)
def test_weights_that_cannot_fold_exactly_are_kept_and_warned_about(
    v: np.ndarray, reason: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Never a silent NaN: the site stays exactly as it was, with a warning and the reason."""
    path = unchecked(tmp_path, onnx_model(WN, v=v, g=rand(3, 1)))
    assert main(["fold", str(path)]) == 0
    assert any(reason in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    folded = onnx.load(tmp_path / "model.folded.onnx")
    assert [n.op_type for n in folded.graph.node] == ["ReduceL2", "Div", "Mul", "Gemm"]


def test_g_of_the_wrong_shape_is_refused_by_the_full_checker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """g [5, 1] cannot broadcast against v [3, 4]: strict shape inference refuses the graph."""
    path = unchecked(tmp_path, onnx_model(WN, check=False, v=rand(3, 4), g=rand(5, 1)))
    assert main(["fold", str(path), "--json", str(tmp_path / "r.json")]) == 2
    assert "rejected by the ONNX checker" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


@pytest.mark.parametrize("opset", range(9, onnx.defs.onnx_opset_version() + 1))
def test_every_opset_from_9_to_the_newest_folds(opset: int, tmp_path: Path) -> None:
    """ReduceL2 takes axes as an attribute before opset 18 and as an input from 18 on."""
    from tests.helpers import assert_close, run

    axes = "<axes = [1]> (v)" if opset < 18 else "(v, ax)"
    text = (
        WN.replace('"" : 17', f'"" : {opset}')
        .replace("ir_version: 8", f"ir_version: {7 if opset < 14 else 8}")
        .replace("<axes = [1]> (v)", axes)
        .replace("(x, w)", "(x, w, c)")  # Gemm needs C before opset 11
    )
    extra = {"ax": np.array([1], np.int64)} if opset >= 18 else {}
    model = onnx_model(text, v=rand(3, 4), g=rand(3, 1), c=np.zeros(3, np.float32), **extra)
    path = unchecked(tmp_path, model)
    assert main(["fold", str(path)]) == 0
    folded = tmp_path / "model.folded.onnx"
    assert [n.op_type for n in onnx.load(folded).graph.node] == ["Gemm"]
    feeds = {"x": rand(2, 4)}
    try:
        expected = run(path, feeds)
    except Exception as error:  # an onnxruntime older than this opset
        pytest.skip(f"onnxruntime cannot run opset {opset}: {str(error).splitlines()[0][:120]}")
    assert_close(run(folded, feeds), expected)
