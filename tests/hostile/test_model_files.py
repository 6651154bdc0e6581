"""Hostile ONNX files, each given to every command that reads one: fold, inspect, and check
(as the reference and as the candidate). Each is refused with one line, exit 2, nothing
written and nothing changed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.helpers import onnx_model, rand
from tests.hostile.builders import (
    WN,
    assert_refused,
    edited,
    external,
    folder,
    good,
    raw,
    symlink,
    unchecked,
)


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


def _duplicate_output(model: onnx.ModelProto) -> None:
    model.graph.node[2].output[0] = "d"  # "d" is already the Div's output


def _undefined_input(model: onnx.ModelProto) -> None:
    model.graph.node[1].input[0] = "nowhere"


def _bad_attribute(model: onnx.ModelProto) -> None:
    model.graph.node[3].attribute[0].type = onnx.AttributeProto.STRING  # transB is an int


def _shape_mismatch(t: Path) -> Path:
    """v and g cannot broadcast: strict shape inference refuses it."""
    return unchecked(t, onnx_model(WN, check=False, v=rand(3, 4), g=rand(5, 1)))


def _wrong_initializer_dtype(t: Path) -> Path:
    """g is int64 and multiplies a float: the type checker refuses it."""
    return unchecked(t, onnx_model(WN, check=False, v=rand(3, 4), g=np.ones((3, 1), np.int64)))


def _nul_in_location(t: Path) -> Path:
    return external(t, "weights\0.bin")


def _long_location(t: Path) -> Path:
    return external(t, "w" * 5000)


def _symlinked_out(t: Path) -> Path:
    symlink(t, t.parent / "outside" / "secret.bin", "weights.bin")
    return external(t, "weights.bin")


def _data(t: Path, size: int, name: str = "weights.bin") -> Path:
    return raw(t, b"\0" * size, name)


def _external_with(location: str, **extra: str) -> Callable[[Path], Path]:
    def build(t: Path) -> Path:
        _data(t, 64)
        return external(t, location, **extra)

    return build


def _external_data_is_a_folder(t: Path) -> Path:
    (t / "weights.bin").mkdir()
    return external(t, "weights.bin")


def _external_data_is_a_fifo(t: Path) -> Path:
    import os

    os.mkfifo(t / "weights.bin")
    return external(t, "weights.bin")


def _a_tensor_proto(t: Path) -> Path:
    return raw(t, onnx.numpy_helper.from_array(rand(4, 4), "t").SerializeToString())


def _huge_dims(t: Path) -> Path:
    """A tensor that declares 2**62 elements in an external file of 64 bytes."""
    _data(t, 64)
    path = external(t, "weights.bin", length=None)
    model = onnx.load(path, load_external_data=False)
    tensor = next(x for x in model.graph.initializer if x.name == "v")
    tensor.dims[:] = [2**31, 2**31]
    return unchecked(t, model)


def _inline(t: Path, dims: list[int], cut: int = 0) -> Path:
    model = onnx_model(WN, v=rand(3, 4), g=rand(3, 1))
    tensor = next(x for x in model.graph.initializer if x.name == "v")
    tensor.dims[:] = dims
    if cut:
        tensor.raw_data = tensor.raw_data[:-cut]
    return unchecked(t, model)


def _huge_inline(t: Path) -> Path:
    return _inline(t, [2**31, 2**31])


def _short_inline(t: Path) -> Path:
    return _inline(t, [3, 4], cut=8)


# name -> (builder of the bad model in a folder, text the error names)
FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing file": (lambda t: t / "absent.onnx", "no such file"),
    "a directory": (lambda t: folder(t, "dir.onnx"), "is a directory"),
    "empty file": (lambda t: raw(t, b""), "empty file"),
    "random bytes": (
        lambda t: raw(t, np.random.default_rng(1).bytes(4096)),
        "not a readable ONNX model",
    ),
    "text": (lambda t: raw(t, b"hello, I am not a model\n"), "model.onnx: not"),
    "truncated protobuf": (
        lambda t: raw(t, good(t, "full.onnx").read_bytes()[:150]),
        "not a readable ONNX model",
    ),
    "a TensorProto": (_a_tensor_proto, "model.onnx: not"),
    "unknown op": (lambda t: edited(t, _unknown_op), "rejected by the ONNX checker"),
    "nodes out of order": (lambda t: edited(t, _unsorted), "rejected by the ONNX checker"),
    "opset from the future": (lambda t: edited(t, _opset(99)), "rejected by the ONNX checker"),
    "IR version from the future": (
        lambda t: edited(t, _ir_version),
        "rejected by the ONNX checker",
    ),
    "two nodes, one output name": (
        lambda t: edited(t, _duplicate_output),
        "rejected by the ONNX checker",
    ),
    "an input nobody defines": (
        lambda t: edited(t, _undefined_input),
        "rejected by the ONNX checker",
    ),
    "an attribute of the wrong type": (
        lambda t: edited(t, _bad_attribute),
        "rejected by the ONNX checker",
    ),
    "shapes that cannot broadcast": (_shape_mismatch, "rejected by the ONNX checker"),
    "an integer gain": (_wrong_initializer_dtype, "rejected by the ONNX checker"),
    "external data missing": (lambda t: external(t, "weights.bin"), "is missing"),
    "external data at an absolute path": (
        lambda t: external(t, "/etc/passwd"),
        "absolute external data path",
    ),
    "external data climbing out": (
        lambda t: external(t, "../outside/secret.bin"),
        "outside the model's folder",
    ),
    "external data symlinked out": (_symlinked_out, "outside the model's folder"),
    "external data too short": (
        lambda t: _data(t, 8) and external(t, "weights.bin"),
        "ends before the tensor",
    ),
    "external data too short, no length": (
        lambda t: _data(t, 8) and external(t, "weights.bin", length=None),
        "ends before the tensor",
    ),
    "external data past the end by its offset": (
        _external_with("weights.bin", offset="40"),
        "ends before the tensor",
    ),
    "external length shorter than the tensor": (
        _external_with("weights.bin", length="8"),
        "is not the tensor's 48 bytes",
    ),
    "external length longer than the tensor": (
        _external_with("weights.bin", length="64"),
        "is not the tensor's 48 bytes",
    ),
    "external offset not a number": (
        _external_with("weights.bin", offset="zero"),
        "is not a number",
    ),
    "external length negative": (
        _external_with("weights.bin", length="-48"),
        "is not a number",
    ),
    "external location with a NUL byte": (_nul_in_location, "is not a file name"),
    "external location of 5000 characters": (_long_location, "is not a file name"),
    "external data is a folder": (_external_data_is_a_folder, "is not a regular file"),
    "external data is a FIFO": (_external_data_is_a_fifo, "is not a regular file"),
    "a tensor of 2**62 elements": (_huge_dims, "ends before the tensor"),
    "an inline tensor of 2**62 elements": (_huge_inline, "needs 18446744073709551616"),
    "an inline tensor with bytes missing": (_short_inline, "holds 40 bytes"),
}


def _commands(model: Path, work: Path) -> dict[str, list[str]]:
    other = good(work, "other.onnx")
    return {
        "fold": ["fold", str(model)],
        "inspect": ["inspect", str(model)],
        "check-reference": ["check", str(model), str(other), "--runs", "1"],
        "check-candidate": ["check", str(other), str(model), "--runs", "1"],
    }


@pytest.mark.parametrize("command", ["fold", "inspect", "check-reference", "check-candidate"])
@pytest.mark.parametrize("case", FILES)
def test_a_hostile_model_file_is_refused(
    case: str, command: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build, expected = FILES[case]
    if (case, command) == ("a directory", "inspect"):  # inspect reads a folder's .onnx files
        expected = "dir.onnx: a folder with no .onnx file in it"
    model = build(work)
    assert_refused(_commands(model, work)[command], work.parent, capsys, 2, expected)


def test_the_model_file_corpus_is_large() -> None:
    assert len(FILES) * 4 >= 120
