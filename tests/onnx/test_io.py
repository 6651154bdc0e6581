"""Loading and saving: clear errors for bad files, atomic writes, external data."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from tests.helpers import (
    WEIGHT_NORMED_TEXT,
    assert_close,
    onnx_model,
    paused_fold,
    rand,
    run,
    sites_left,
    weight_normed,
)
from tests.hostile.builders import WN, assert_refused
from tests.onnx.helpers import G, V, X
from wnpass import fold_onnx
from wnpass.cli import main
from wnpass.errors import InvalidModelError, OutputError
from wnpass.onnx import io
from wnpass.report import fold_summary


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "empty file"),
        (b"\x00\xff garbage \x12\x34" * 7, "not a readable ONNX model"),
        (onnx.helper.make_tensor("t", 1, [1], [1.0]).SerializeToString(), "not"),
    ],
)
def test_bad_files_give_one_clear_error(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidModelError, match=message) as error:
        io.load(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["weights.model", "g_02500000"])
@pytest.mark.parametrize("kind", ["zip", "pickle", "safetensors"])
def test_a_checkpoint_without_a_checkpoint_name_says_what_to_do(
    tmp_path: Path, name: str, kind: str
) -> None:
    """HiFi-GAN's ``g_02500000`` is a torch.save file; any name without a checkpoint suffix is
    read as ONNX, and the error said only "Wire format was corrupt"."""
    import torch
    from safetensors.numpy import save_file

    path = tmp_path / name
    state = {"w": torch.ones(2)}
    if kind == "safetensors":
        save_file({"w": np.ones(2, np.float32)}, str(path))
    else:
        torch.save(state, path, _use_new_zipfile_serialization=kind == "zip")
    with pytest.raises(InvalidModelError) as error:
        io.load(path)
    starts = {"zip": "a torch.save file (a zip)", "pickle": "a torch.save file (a pickle)"}
    if kind == "zip":  # another zip (an .npz) is not called a torch.save file
        np.savez(tmp_path / "other.npz", a=np.ones(2))
        (tmp_path / "other.npz").rename(tmp_path / "other.model")
        with pytest.raises(InvalidModelError) as other:
            io.load(tmp_path / "other.model")
        assert "it starts as" not in str(other.value)
    assert str(error.value).endswith(
        f"; it starts as {starts.get(kind, 'a .safetensors file')}: checkpoints are told by "
        "their suffix (.pt, .pth, .bin, .pth.tar, .ckpt, .safetensors), so give it one (a link "
        "named X.pt will do)"
    )


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelError, match="is a directory"):
        io.load(tmp_path)


def test_default_output_and_the_input_is_never_overwritten(tmp_path: Path) -> None:
    path = weight_normed(tmp_path)
    original = path.read_bytes()
    _, report = fold_onnx(path, io.default_output(path))
    assert report.output == str(tmp_path / "model.folded.onnx")
    assert path.read_bytes() == original
    with pytest.raises(OutputError, match="would overwrite the input"):
        fold_onnx(path, path)
    assert path.read_bytes() == original
    fold_onnx(path, in_place=True)
    assert sites_left(path) == 0
    assert not list(tmp_path.glob(".wnpass-*")), "no temporary files are left behind"


def test_external_data_is_read_and_written_beside_the_output(tmp_path: Path) -> None:
    path = weight_normed(tmp_path, external=True)
    out = tmp_path / "out" / "folded.onnx"
    out.parent.mkdir()
    feeds = {"x": rand(2, 64)}
    _, report = fold_onnx(path, out)
    assert report.folded == 1
    assert (out.parent / "folded.onnx.data").is_file()
    tensor = onnx.load(out, load_external_data=False).graph.initializer[0]
    assert onnx.external_data_helper.uses_external_data(tensor)
    assert report.bytes_after == io.model_bytes(out) > out.stat().st_size
    assert_close(run(out, feeds), run(path, feeds))


def test_a_constant_s_external_data_counts_in_the_model_s_size(tmp_path: Path) -> None:
    """A Constant's value saved as external data (onnx's ``convert_attribute``): its data
    file was left out of the size before, 353 B for a model of 1377 (t213)."""
    value = onnx.numpy_helper.from_array(rand(16, 16), "c")
    node = onnx.helper.make_node("Constant", [], ["y"], value=value)
    graph = onnx.helper.make_graph(
        [node], "g", [], [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [16, 16])]
    )
    onnx.save(
        onnx.helper.make_model(graph),
        path := tmp_path / "m.onnx",
        save_as_external_data=True,
        location="m.data",
        size_threshold=0,
        convert_attribute=True,
    )
    data = (tmp_path / "m.data").stat().st_size
    assert data == 16 * 16 * 4
    assert io.model_bytes(path) == path.stat().st_size + data


def test_an_unreadable_data_file_is_said_with_its_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data file the user may not read was said as ``k/z.data: Permission denied``, without
    the model that names it (t101; inspect of a folder reads several). The denial is made by
    ``os.access`` here: the suite may run as root, whom no file mode stops."""
    path = weight_normed(tmp_path, external=True)
    data = tmp_path / "weights.bin"
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != data and real(p, mode, **kw))
    assert_refused(
        ["inspect", str(tmp_path)],
        tmp_path,
        capsys,
        2,
        f"{path}: tensor 'lin.weight_v': external data file {data.name!r} cannot be read",
    )


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("m.onnx", "m.folded.onnx"),
        ("M.ONNX", "M.folded.onnx"),
        ("m.onnx.bak", "m.onnx.bak.folded.onnx"),  # it was m.onnx.folded.bak (t106)
        ("model.py", "model.py.folded.onnx"),  # an ONNX file so named: never model.folded.py
        ("m", "m.folded.onnx"),
    ],
)
def test_the_default_output_is_an_onnx_name(tmp_path: Path, name: str, default: str) -> None:
    """The default output ends with .onnx, as every ONNX output's name must: it kept the
    input's suffix, which wrote an ONNX model under a name of another kind of file."""
    path = weight_normed(tmp_path).rename(tmp_path / name)
    fold_onnx(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, default])


def test_two_runs_write_byte_identical_files(tmp_path: Path) -> None:
    path = weight_normed(tmp_path)
    fold_onnx(path, tmp_path / "a.onnx")
    fold_onnx(path, tmp_path / "b.onnx")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    names = [i.name for i in onnx.load(tmp_path / "a.onnx").graph.initializer]
    assert names == ["lin.weight"]


def test_nothing_to_fold_writes_the_same_bytes(tmp_path: Path) -> None:
    text = '<ir_version: 8, opset_import: ["" : 17]> g (float[2] x) => (float[2] y) { y = Relu(x) }'
    path = tmp_path / "plain.onnx"
    onnx.save(onnx_model(text), path)
    _, report = fold_onnx(path, tmp_path / "out.onnx")
    assert report.folded == 0 and not report.sites
    assert (tmp_path / "out.onnx").read_bytes() == path.read_bytes()


def test_nothing_to_fold_from_external_data_is_written_whole(tmp_path: Path) -> None:
    """The input's bytes are reused only when they hold every weight: a model whose weights
    (or Constant values) lie in data files beside it is written whole, inside the output as
    asked, never as a copy that points at the input's data."""
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 3] x) => (float[2, 3] y) {
            c = Constant <value = float[3] {1, 2, 3}> ()
            z = Add(x, c)
            y = Add(z, b)
        }
    """
    source = tmp_path / "src" / "m.onnx"
    onnx.save(
        onnx_model(text, b=rand(3)),
        source,
        save_as_external_data=True,
        location="w.bin",
        size_threshold=0,
        convert_attribute=True,
    )
    feeds = {"x": rand(2, 3)}
    expected = run(source, feeds)
    _, report = fold_onnx(source, tmp_path / "dst" / "m.onnx", external_data=False)
    assert report.folded == 0
    (tmp_path / "src" / "w.bin").unlink()
    written = onnx.load(tmp_path / "dst" / "m.onnx", load_external_data=False)
    tensors = [*written.graph.initializer, written.graph.node[0].attribute[0].t]
    assert not any(onnx.external_data_helper.uses_external_data(t) for t in tensors)
    assert_close(run(tmp_path / "dst" / "m.onnx", feeds), expected)


def test_output_into_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    path = weight_normed(tmp_path)
    with pytest.raises(OutputError, match="no such directory"):
        fold_onnx(path, tmp_path / "missing" / "out.onnx")
    assert not (tmp_path / "missing").exists()


def test_in_place_with_external_data_never_writes_over_the_data_in_use(tmp_path: Path) -> None:
    """The new weights go to a free file name and the model is renamed last; the old data file
    was read by this run, so it is kept (another model may share it) and named in the report."""
    path = weight_normed(tmp_path, external=True)
    feeds = {"x": rand(2, 64)}
    expected = run(path, feeds)
    model, report = fold_onnx(path, in_place=True)
    assert report.folded == 1
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["model.onnx", "model.onnx.data", "weights.bin"]
    assert len(report.left) == 1 and report.left[0].startswith(str(tmp_path / "weights.bin"))
    assert_close(run(path, feeds), expected)
    on_disk = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    for name, value in model.graph.initializers.items():  # the returned model reads the same
        assert value.const_value is not None
        np.testing.assert_array_equal(value.const_value.numpy(), on_disk[name])
    assert not list(tmp_path.glob(".wnpass-*"))


def test_in_place_with_nothing_to_fold_leaves_the_input_as_it_is(tmp_path: Path) -> None:
    """A second fold in place had nothing to fold and rewrote the model all the same, its
    weights to a new data file (``model.onnx.1.data``, the old one kept: read by the run):
    every rerun of a pipeline's step left another copy of the weights. Now nothing is
    written: the files are as they were, the same inodes, and the report says so."""
    path = weight_normed(tmp_path, external=True)
    fold_onnx(path, in_place=True)
    before = {p.name: (p.stat().st_ino, p.read_bytes()) for p in tmp_path.iterdir()}
    _, report = fold_onnx(path, in_place=True)
    assert report.unchanged and report.output is None and report.data_files == []
    assert {p.name: (p.stat().st_ino, p.read_bytes()) for p in tmp_path.iterdir()} == before
    assert fold_summary(report)[-1] == f"nothing to fold: {path} is left as it is, not rewritten"
    _, report = fold_onnx(path, tmp_path / "copy.onnx")  # to an output: written, as asked
    assert not report.unchanged and report.output == str(tmp_path / "copy.onnx")
    _, report = fold_onnx(path, in_place=True, external_data=False)  # asked to move them: done
    assert not report.unchanged and report.data_files == [] and not io.external_files(path)


def test_refolding_to_an_output_with_external_data_replaces_its_data(tmp_path: Path) -> None:
    path = weight_normed(tmp_path, external=True)
    out = tmp_path / "out.onnx"
    for _ in range(3):
        fold_onnx(path, out)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["model.onnx", "out.onnx", "out.onnx.1.data", "weights.bin"] or names == [
        "model.onnx",
        "out.onnx",
        "out.onnx.data",
        "weights.bin",
    ]
    assert io.external_files(out) <= {p.resolve() for p in tmp_path.iterdir()}


# -- what the ONNX checker is not given: every tensor's data checked against its shape -------


def _large(edit: Callable[[onnx.TensorProto], None]) -> Callable[[Path], Path]:
    """A builder of model.onnx whose v (32x64 float32, 8 KiB: larger than what the ONNX
    checker is given with its data) was changed by ``edit``."""

    def build(folder: Path) -> Path:
        path = weight_normed(folder)
        model = onnx.load(path)
        edit(next(t for t in model.graph.initializer if t.name == "lin.weight_v"))
        path.write_bytes(model.SerializeToString())
        return path

    return build


def _no_data(tensor: onnx.TensorProto) -> None:
    tensor.ClearField("raw_data")


def _huge_without_data(tensor: onnx.TensorProto) -> None:
    tensor.ClearField("raw_data")
    tensor.dims[:] = [2**32, 2**32]


def _negative(tensor: onnx.TensorProto) -> None:
    tensor.dims[:] = [-32, -64]


def _typed(count: int, field: str = "float_data") -> Callable[[onnx.TensorProto], None]:
    def edit(tensor: onnx.TensorProto) -> None:
        tensor.ClearField("raw_data")
        getattr(tensor, field).extend([1] * count)

    return edit


def _two_fields(tensor: onnx.TensorProto) -> None:
    tensor.float_data.extend([1.0] * 32 * 64)


def _unknown_type(tensor: onnx.TensorProto) -> None:
    tensor.data_type = 999


BAD_TENSORS = {
    "no data": (_no_data, "tensor 'lin.weight_v' holds no data; its shape [32, 64] needs 2048"),
    "2**64 elements, no data": (_huge_without_data, "has more than 2**63 - 1 elements"),
    "negative dimensions": (_negative, "has a negative dimension in its shape [-32, -64]"),
    "a value short": (_typed(2047), "holds 2047 values in float_data, its shape [32, 64] needs"),
    "a value too many": (_typed(2049), "holds 2049 values in float_data"),
    "the wrong field": (_typed(2048, "int32_data"), "values in int32_data, not float_data"),
    "raw_data and float_data": (_two_fields, "holds its data in more than one field"),
    "an unknown data type": (_unknown_type, "has data type 999, not an ONNX type"),
}


@pytest.mark.parametrize("case", BAD_TENSORS)
def test_a_large_tensor_whose_data_does_not_fit_its_shape_is_refused(
    case: str, tmp_path: Path
) -> None:
    """The full ONNX checker sees large weights as typed inputs, without their data; what it
    would check of the data is checked for every tensor, before anything else reads it."""
    edit, message = BAD_TENSORS[case]
    path = _large(edit)(tmp_path)
    with pytest.raises(InvalidModelError, match=re.escape(message)) as error:
        io.load(path)
    assert str(error.value).startswith(f"{path}: tensor 'lin.weight_v'")


@pytest.mark.parametrize("command", ["fold", "inspect"])
def test_a_tensor_without_data_is_one_line_and_exit_2(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once folded with a zero-norm warning (no data read as zeros) or an internal error."""
    (tmp_path / "work").mkdir()
    for edit in (_no_data, _huge_without_data):
        path = _large(edit)(tmp_path / "work")
        assert_refused([command, str(path)], tmp_path, capsys, 2, "tensor 'lin.weight_v'")


def _unused(tensor: onnx.TensorProto) -> onnx.ModelProto:
    text = (
        '<ir_version: 10, opset_import: ["" : 21]> g (float[2] x) => (float[2] y) { y = Relu(x) }'
    )
    model = onnx_model(text)
    model.graph.initializer.append(tensor)
    return model


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (onnx.TensorProto(data_type=onnx.TensorProto.INT4, dims=[5], int32_data=[1, 2, 3]), None),
        (
            onnx.TensorProto(data_type=onnx.TensorProto.INT4, dims=[5], int32_data=[1] * 5),
            "holds 5 values in int32_data, its shape [5] needs 3",
        ),
        (onnx.TensorProto(data_type=onnx.TensorProto.UINT4, dims=[5], raw_data=b"abc"), None),
        (
            onnx.TensorProto(data_type=onnx.TensorProto.UINT4, dims=[5], raw_data=b"abcde"),
            "holds 5 bytes, its shape [5] needs 3",
        ),
        (
            onnx.TensorProto(data_type=onnx.TensorProto.COMPLEX64, dims=[2], float_data=[1] * 4),
            None,
        ),
        (
            onnx.TensorProto(data_type=onnx.TensorProto.COMPLEX64, dims=[2], float_data=[1] * 2),
            "holds 2 values in float_data, its shape [2] needs 4",
        ),
        (
            onnx.TensorProto(data_type=onnx.TensorProto.STRING, dims=[2], string_data=[b"a"] * 2),
            None,
        ),
        (
            onnx.TensorProto(data_type=onnx.TensorProto.STRING, dims=[3], string_data=[b"a"]),
            "holds 1 values in string_data, its shape [3] needs 3",
        ),
        (
            onnx.TensorProto(data_type=onnx.TensorProto.STRING, dims=[2], raw_data=b"ab"),
            "holds strings in raw_data",
        ),
        (
            onnx.TensorProto(data_type=onnx.TensorProto.FLOAT, dims=[0, 3], float_data=[1.0]),
            "has no elements (shape [0, 3]) but holds data",
        ),
        (
            onnx.TensorProto(data_type=onnx.TensorProto.FLOAT, dims=[0], raw_data=b"\0" * 4),
            "has no elements (shape [0]) but holds data",
        ),
        # an empty raw_data is no data: numpy_helper writes one for an empty array, the
        # TorchScript exporter one for F.interpolate's empty roi and scales
        (onnx.numpy_helper.from_array(np.zeros((0, 4), np.float32)), None),
        (onnx.TensorProto(data_type=onnx.TensorProto.FLOAT, dims=[0], raw_data=b""), None),
    ],
)
def test_packed_complex_and_string_tensors_are_counted_as_onnx_stores_them(
    tensor: onnx.TensorProto, message: str | None, tmp_path: Path
) -> None:
    """4-bit values packed two to a byte (in raw_data and in int32_data alike), a complex
    number as two floats, strings by count; the checker lets a packed tensor of any length
    through, ONNX Runtime does not."""
    tensor.name = "t"
    path = tmp_path / "m.onnx"
    path.write_bytes(_unused(tensor).SerializeToString())
    if message is None:
        io.load(path)
        return
    with pytest.raises(InvalidModelError, match=re.escape(f"{path}: tensor 't' {message}")):
        io.load(path)


def test_an_empty_constant_as_the_exporter_writes_it_is_read(tmp_path: Path) -> None:
    """The TorchScript exporter (opset 11) writes F.interpolate's empty roi as a Constant whose
    raw_data is there and empty; the ONNX checker and ONNX Runtime take it."""
    model = onnx_model(WN, v=rand(3, 4), g=rand(3, 1))
    empty = onnx.numpy_helper.from_array(np.zeros(0, np.float32))
    assert empty.HasField("raw_data")
    model.graph.node.append(onnx.helper.make_node("Constant", [], ["roi"], value=empty))
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    _, report = fold_onnx(path, tmp_path / "out.onnx")
    assert report.folded == 1


# -- external data: offset, length and location as the runtime reads them --------------------


def _external(folder: Path, location: str = "weights.bin", **entries: str) -> Path:
    """model.onnx with v in ``location`` (a 48-byte file weights.bin beside it), the external
    data entries given (offset, length) replacing those onnx writes."""
    model = onnx_model(WN, v=rand(3, 4), g=rand(3, 1))
    path = folder / "model.onnx"
    onnx.save(model, path, save_as_external_data=True, location="weights.bin", size_threshold=0)
    model = onnx.load(path, load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.name == "v")
    values = {e.key: e.value for e in tensor.external_data} | {"location": location} | entries
    del tensor.external_data[:]
    for key, value in values.items():
        tensor.external_data.add(key=key, value=value)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("key", ["offset", "length"])
@pytest.mark.parametrize("number", ["²", "٠", "４８", "0x30", " 48", "+0"])
def test_external_offset_and_length_are_ascii_digits(key: str, number: str, tmp_path: Path) -> None:
    """``str.isdigit`` takes superscripts (``int()`` then fails) and Arabic-Indic digits
    (``int()`` reads them; ONNX Runtime refuses the file)."""
    path = _external(tmp_path, **{key: number})
    message = f"{path}: tensor 'v': external data {key} {number!r} is not a number"
    with pytest.raises(InvalidModelError, match=re.escape(message)):
        io.load(path)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("weights.bin/../weights.bin", "has a '..'; refused"),
        ("sub/../weights.bin", "has a '..'; refused"),
        ("sub\\..\\weights.bin", "has a '..'; refused"),
        ("weights.bin/", "goes through a file; refused"),
        ("weights.bin/.", "goes through a file; refused"),
    ],
)
def test_an_external_location_the_runtime_cannot_open_is_refused_up_front(
    location: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pathlib reads ``weights.bin/../weights.bin`` as ``weights.bin``, the system (and ONNX
    Runtime) as a folder inside a file: refused when the model is read, naming the model and
    the tensor, never at the write ("Not a directory")."""
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "sub").mkdir()
    path = _external(tmp_path / "work", location)
    expected = f"{path}: tensor 'v': external data location {location!r} {message}"
    with pytest.raises(InvalidModelError, match=re.escape(expected)):
        io.load(path)
    for command in ("inspect", "fold"):
        assert_refused([command, str(path)], tmp_path, capsys, 2, expected)


@pytest.mark.parametrize("location", ["a", "sub/a"])
def test_an_external_location_through_a_loop_of_links_is_refused(
    location: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """t350: a location ``a``, where ``a -> b -> a``, was an internal error (pathlib's
    "Symlink loop", exit 3) in every command: refused, one line, exit 2."""
    (tmp_path / "work" / "sub").mkdir(parents=True)
    folder = (tmp_path / "work" / location).parent
    (folder / "a").symlink_to("b")
    (folder / "b").symlink_to("a")
    path = _external(tmp_path / "work", location)
    expected = f"{path}: tensor 'v': external data location {location!r} is a loop of links"
    with pytest.raises(InvalidModelError, match=re.escape(expected)):
        io.load(path)
    for command in ("inspect", "fold"):
        assert_refused([command, str(path)], tmp_path, capsys, 2, expected)


def test_an_external_location_inside_a_subfolder_is_read(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    model = onnx_model(WN, v=rand(3, 4), g=rand(3, 1))
    path = tmp_path / "model.onnx"
    onnx.save(model, path, save_as_external_data=True, location="sub/w.bin", size_threshold=0)
    assert io.load(path).graph.initializers["v"].const_value is not None


@pytest.mark.parametrize("key", ["location", "offset", "length"])
def test_an_external_data_key_given_twice_is_refused(key: str, tmp_path: Path) -> None:
    """ONNX Runtime refuses the model; reading the last entry would read other data than it."""
    path = _external(tmp_path, offset="0", length="48")
    model = onnx.load(path, load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.name == "v")
    value = next(e.value for e in tensor.external_data if e.key == key)
    tensor.external_data.add(key=key, value=value)
    path.write_bytes(model.SerializeToString())
    message = f"{path}: tensor 'v': external data key {key!r} is given more than once; refused"
    with pytest.raises(InvalidModelError, match=re.escape(message)):
        io.load(path)


def test_an_external_data_key_onnx_does_not_define_is_refused(tmp_path: Path) -> None:
    """ONNX Runtime refuses ``foo=bar`` among a tensor's external data entries as a model
    format error; inspect called the site foldable and fold wrote the model (t101)."""
    path = _external(tmp_path, offset="0", length="48")
    model = onnx.load(path, load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.name == "v")
    tensor.external_data.add(key="foo", value="bar")
    path.write_bytes(model.SerializeToString())
    message = (
        f"{path}: tensor 'v': external data key 'foo' is not one ONNX Runtime reads "
        "(checksum, length, location, offset); refused"
    )
    with pytest.raises(InvalidModelError, match=re.escape(message)):
        io.load(path)


def _with_strings(count: int) -> onnx.ModelProto:
    """The weight-normed model with a string initializer of ``count`` 10-byte strings passed
    through to a second output."""
    text = WEIGHT_NORMED_TEXT.replace("lin.weight_v", "v").replace("lin.weight_g", "g")
    model = onnx_model(text, v=rand(32, 64), g=rand(32, 1))
    strings = [b"%010d" % k for k in range(count)]
    model.graph.initializer.append(
        onnx.TensorProto(
            name="s", data_type=onnx.TensorProto.STRING, dims=[count], string_data=strings
        )
    )
    model.graph.node.append(onnx.helper.make_node("Identity", ["s"], ["S"]))
    model.graph.output.append(
        onnx.helper.make_tensor_value_info("S", onnx.TensorProto.STRING, [count])
    )
    return model


@pytest.mark.parametrize("command", ["inspect", "fold"])
def test_strings_held_as_external_data_are_refused_in_one_line(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Strings have no size in bytes; ONNX keeps them in string_data only."""
    (tmp_path / "work").mkdir()
    model = _with_strings(2)
    tensor = next(t for t in model.graph.initializer if t.name == "s")
    tensor.ClearField("string_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="w.bin")
    path = tmp_path / "work" / "m.onnx"
    path.write_bytes(model.SerializeToString())
    (tmp_path / "work" / "w.bin").write_bytes(b"ab")
    expected = f"{path}: tensor 's' holds strings as external data"
    assert_refused([command, str(path)], tmp_path, capsys, 2, expected)


def test_large_strings_stay_inside_a_model_with_external_data(tmp_path: Path) -> None:
    """Over the size at which weights go to the data file, strings still cannot go there."""
    path = tmp_path / "m.onnx"
    onnx.save(_with_strings(40), path, save_as_external_data=True, location="w.bin")
    _, report = fold_onnx(path, tmp_path / "out.onnx")
    assert report.folded == 1
    written = onnx.load(tmp_path / "out.onnx", load_external_data=False)
    onnx.checker.check_model(tmp_path / "out.onnx")
    tensors = {t.name: t for t in written.graph.initializer}
    assert tensors["s"].data_location == onnx.TensorProto.DEFAULT
    assert list(tensors["s"].string_data) == [b"%010d" % k for k in range(40)]
    assert [t.data_location for n, t in tensors.items() if n != "s"] == [onnx.TensorProto.EXTERNAL]


def test_a_data_file_with_a_second_hard_link_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A backup or ``cp -al`` copy of the model's own data: wnpass only reads it (onnx-ir
    refuses any data file with two links)."""
    path = weight_normed(tmp_path, external=True)
    os.link(tmp_path / "weights.bin", tmp_path / "backup.bin")
    feeds = {"x": rand(2, 64)}
    expected = run(path, feeds)
    assert main(["inspect", str(path)]) == 0
    assert "1 foldable, 0 declined" in capsys.readouterr().out
    _, report = fold_onnx(path, tmp_path / "out.onnx")
    assert report.folded == 1
    assert_close(run(tmp_path / "out.onnx", feeds), expected)
    assert (tmp_path / "backup.bin").stat().st_nlink == 2


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs chown")
def test_a_hard_linked_data_file_of_another_owner_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another user's file linked into the model's folder would pass for its data."""
    (tmp_path / "work").mkdir()
    path = weight_normed(tmp_path / "work", external=True)
    os.link(tmp_path / "work" / "weights.bin", tmp_path / "work" / "backup.bin")
    os.chown(tmp_path / "work" / "weights.bin", 12345, -1)
    expected = (
        f"{path}: tensor 'lin.weight_v': external data file 'weights.bin' has 2 hard links and "
        "is not owned by the model's owner; refused"
    )
    for command in ("inspect", "fold"):
        assert_refused([command, str(path)], tmp_path, capsys, 2, expected)


def test_a_stop_signal_while_the_output_is_renamed_still_deletes_its_old_data(
    tmp_path: Path,
) -> None:
    """The replaced output's data file is deleted before the staging ends, where a signal held
    since the first rename stops the run: the result is complete and nothing is left."""
    source = weight_normed(tmp_path, external=True)
    out = tmp_path / "out.onnx"
    fold_onnx(source, out)
    old = tmp_path / "out.onnx.data"
    assert io.external_files(out) == {old}
    marker = tmp_path.parent / f"{tmp_path.name}.marker"
    proc = paused_fold(marker, 2, str(source), "-o", str(out), pause=2)  # before the model
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    onnx.checker.check_model(out)
    assert sites_left(out) == 0
    assert io.external_files(out) == {tmp_path / "out.onnx.1.data"}
    assert not old.exists()
    assert not list(tmp_path.glob(".wnpass-*"))


# -- what onnx-ir cannot hold is refused, never dropped from the output ----------------------


def _sparse() -> onnx.SparseTensorProto:
    values = onnx.numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "sp")
    indices = onnx.numpy_helper.from_array(np.array([0, 5], np.int64), "sp_indices")
    return onnx.helper.make_sparse_tensor(values, indices, [3, 4])


def _sparse_constant(model: onnx.ModelProto) -> None:
    model.graph.node.insert(0, onnx.helper.make_node("Constant", [], ["c"], sparse_value=_sparse()))
    model.graph.output.append(
        onnx.helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [3, 4])
    )


def _sparse_in_a_subgraph(model: onnx.ModelProto) -> None:
    body = onnx.helper.make_graph(
        [onnx.helper.make_node("Constant", [], ["s"], name="inner", sparse_value=_sparse())],
        "body",
        [],
        [onnx.helper.make_tensor_value_info("s", onnx.TensorProto.FLOAT, [3, 4])],
    )
    cond = onnx.helper.make_node(
        "Constant", [], ["cond"], value=onnx.numpy_helper.from_array(np.array(True))
    )
    branch = onnx.helper.make_node("If", ["cond"], ["b"], then_branch=body, else_branch=body)
    model.graph.node.extend([cond, branch])
    model.graph.output.append(
        onnx.helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [3, 4])
    )


def _sparse_initializer(model: onnx.ModelProto) -> None:
    model.graph.sparse_initializer.append(_sparse())


def _training_info(model: onnx.ModelProto) -> None:
    model.training_info.add()


def _map_output(model: onnx.ModelProto) -> None:
    """A ZipMap's output, a sequence of maps, beside the model's own."""
    model.opset_import.append(onnx.helper.make_opsetid("ai.onnx.ml", 3))
    zipmap = onnx.helper.make_node(
        "ZipMap", ["y"], ["labels"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2]
    )
    model.graph.node.append(zipmap)
    value = onnx.helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, None)
    maps = onnx.helper.make_sequence_type_proto(
        onnx.helper.make_map_type_proto(onnx.TensorProto.INT64, value)
    )
    model.graph.output.append(onnx.helper.make_value_info("labels", maps))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_sparse_constant, "Constant node of output ['c'] holds a sparse tensor (sparse_value)"),
        (_sparse_in_a_subgraph, "Constant node 'inner' holds a sparse tensor (sparse_value)"),
        (_sparse_initializer, "sparse initializer 'sp': wnpass does not read sparse tensors"),
        (_training_info, "has training_info, which wnpass cannot carry; refused"),
        (_map_output, "'labels' has a map type: wnpass reads models with onnx-ir, which"),
    ],
)
def test_what_onnx_ir_cannot_hold_is_refused_in_one_line(
    edit: Callable[[onnx.ModelProto], None],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Models the ONNX checker accepts; onnx-ir fails on sparse attributes with its own
    internals, and drops sparse initializers and training information from what it writes."""
    model = onnx_model(WN, v=rand(3, 4), g=rand(3, 1))
    edit(model)
    onnx.checker.check_model(model, full_check=True)
    (tmp_path / "work").mkdir()
    path = tmp_path / "work" / "model.onnx"
    path.write_bytes(model.SerializeToString())
    for command in ("inspect", "fold"):
        assert_refused([command, str(path)], tmp_path, capsys, 2, f"{path}: {message}")


@pytest.mark.parametrize("key", ["offset", "length"])
@pytest.mark.parametrize("number", ["9223372036854775808", "9" * 26, "1" * 5000, "0" * 5000 + "48"])
def test_external_offset_and_length_past_int64_are_out_of_range(
    key: str, number: str, tmp_path: Path
) -> None:
    """Digits, but more than ONNX Runtime's 64-bit integer holds: said so, not 'not a
    number'."""
    path = _external(tmp_path, **{key: number})
    with pytest.raises(InvalidModelError, match=r"is out of range \(at most 2\*\*63 - 1, in at"):
        io.load(path)


@pytest.mark.parametrize("key", ["offset", "length"])
def test_leading_zeros_of_an_external_offset_or_length_are_read_past(
    key: str, tmp_path: Path
) -> None:
    """Zeros and the number: ONNX Runtime reads it, so does wnpass (it was 'out of
    range'); past 4,300 digits, zeros too, Python's int() refuses the text: out of range."""
    number = "0" * 4000 + ("0" if key == "offset" else "48")  # 26 zeros were 'out of range'
    model = io.load(_external(tmp_path, **{key: number}))
    value = model.graph.initializers["v"].const_value
    assert value is not None and value.numpy().shape == (3, 4)


@pytest.mark.parametrize("output", ["g", "v"])
def test_an_initializer_that_is_a_graph_output_keeps_its_type(output: str) -> None:
    # The fold drops the types it added to initializers; an output's is part of the interface.
    shape = "3, 1" if output == "g" else "3, 4"
    text = f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 4] x) => (float[2, 3] y, float[{shape}] {output}) {{
            n = ReduceL2 <axes = [1], keepdims = 1> (v)
            d = Div(v, n)
            w = Mul(g, d)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, v=V, g=G)
    folded, report = fold_onnx(model)
    assert report.folded == 1
    onnx.checker.check_model(folded, full_check=True)
    listed = {o.name: o.type.tensor_type for o in folded.graph.output}
    assert listed[output].elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_value for d in listed[output].shape.dim] == [int(d) for d in shape.split(", ")]
    assert_close(run(folded, {"x": X}), run(model, {"x": X}))


def test_data_kept_in_the_model_file_itself_is_counted_once_and_not_left_in_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bias whose external data location is the model file: an in-place fold said "left in
    place: model.onnx: kept" of the file it had just replaced, and counted its size twice."""
    path = tmp_path / "model.onnx"
    model = onnx.parser.parse_model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 4] x) => (float[2, 3] y) {
            n = ReduceL2 <axes = [1], keepdims = 1> (v)
            d = Div(v, n)
            w = Mul(g, d)
            y = Gemm <transB = 1> (x, w, b)
        }
        """
    )
    model.graph.initializer.extend(
        [onnx.numpy_helper.from_array(V, "v"), onnx.numpy_helper.from_array(G, "g")]
    )
    bias = model.graph.initializer.add(name="b", data_type=onnx.TensorProto.FLOAT, dims=[3])
    bias.data_location = onnx.TensorProto.EXTERNAL
    for key, value in {"location": "model.onnx", "offset": "0", "length": "12"}.items():
        bias.external_data.add(key=key, value=value)
    path.write_bytes(model.SerializeToString())
    size = path.stat().st_size
    before = run(onnx.load(path), {"x": X})
    assert main(["fold", str(path), "--in-place", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "left in place" not in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["bytes_before"], report["left"]) == (size, [])
    assert_close(run(onnx.load(path), {"x": X}), before)


@pytest.mark.parametrize("changed", ["data", "model"])
def test_an_input_written_to_while_it_is_folded_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changed: str
) -> None:
    """A row of the external data rewritten in place (same size) while the fold ran: the
    output held weights from neither version, exit 0. The files read are checked before the
    result is published, as a checkpoint's are."""
    from wnpass.onnx.fold import FoldWeightNormPass

    path = weight_normed(tmp_path, external=True)
    target = path if changed == "model" else tmp_path / "weights.bin"
    original = FoldWeightNormPass.call

    def call_then_write(self: FoldWeightNormPass, model: Any) -> Any:
        result = original(self, model)
        with open(target, "r+b") as stream:  # the same bytes: only the times move
            head = stream.read(16)
            stream.seek(0)
            stream.write(head)
        return result

    monkeypatch.setattr(FoldWeightNormPass, "call", call_then_write)
    out = tmp_path / "out.onnx"
    with pytest.raises(InvalidModelError, match=f"{target.name}: changed while it was read"):
        fold_onnx(path, out)
    assert not out.exists()


def test_a_model_file_past_two_gib_is_refused(tmp_path: Path) -> None:
    """wnpass's reader parsed it, and inspect --strict passed a file that onnx and ONNX Runtime
    cannot load ("Protobuf parsing failed"). A sparse file: no 2 GiB written."""
    path = tmp_path / "big.onnx"
    with open(path, "wb") as stream:
        stream.truncate(2**31)
    with pytest.raises(InvalidModelError, match=r"big\.onnx: one file of 2147483648 bytes, more"):
        io.load(path)


def _external_only_in_a_branch(path: Path) -> dict[str, np.ndarray]:
    """A model whose one external tensor is an ``If`` branch's initializer (``w``, in
    ``w.bin`` beside it), after a weight-norm site of the main graph; feeds to run it with."""
    oh = onnx.helper
    rng = np.random.default_rng(0)
    w = onnx.numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "w")
    (path.parent / "w.bin").write_bytes(w.raw_data)
    onnx.external_data_helper.set_external_data(w, "w.bin", offset=0, length=len(w.raw_data))
    w.ClearField("raw_data")
    w.data_location = onnx.TensorProto.EXTERNAL
    square = oh.make_tensor_value_info
    then = oh.make_graph(
        [oh.make_node("MatMul", ["h", "w"], ["ty"])],
        "then",
        [],
        [square("ty", onnx.TensorProto.FLOAT, [16, 16])],
        initializer=[w],
    )
    orelse = oh.make_graph(
        [oh.make_node("Identity", ["h"], ["ey"])],
        "else",
        [],
        [square("ey", onnx.TensorProto.FLOAT, [16, 16])],
    )
    model = onnx_model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[16, 16] x, bool c) => (float[16, 16] y) {
            n = ReduceL2 <axes = [1], keepdims = 1> (v)
            d = Div(v, n)
            w0 = Mul(d, g)
            h = MatMul(x, w0)
        }
        """,
        check=False,
        v=rand(16, 16),
        g=rand(16, 1),
    )
    model.graph.node.append(oh.make_node("If", ["c"], ["y"], then_branch=then, else_branch=orelse))
    onnx.save(model, path)
    return {"x": rng.standard_normal((16, 16)).astype(np.float32), "c": np.array(True)}


@pytest.mark.parametrize("external_data", [None, False])
def test_a_branchs_external_tensor_is_written_with_the_output(
    external_data: bool | None, tmp_path: Path
) -> None:
    """Only the main graph's initializers were asked whether the model had external data: a
    branch's tensor kept its location (``w.bin``), which names a file beside the input, so
    the output folded into another folder did not load, or read that folder's ``w.bin``."""
    source = tmp_path / "in" / "m.onnx"
    source.parent.mkdir()
    feeds = _external_only_in_a_branch(source)
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    (out.parent / "w.bin").write_bytes(np.ones(16, np.float32).tobytes())  # another w.bin
    _, report = fold_onnx(source, output=out, external_data=external_data)
    assert report.folded == 1
    written = onnx.load(out, load_external_data=False)
    assert written.graph.node[-1].op_type == "If"
    locations = {
        entry.value
        for branch in written.graph.node[-1].attribute
        for tensor in branch.g.initializer
        for entry in tensor.external_data
        if entry.key == "location"
    }
    assert locations == ({"m.onnx.data"} if external_data is None else set())
    assert_close(run(out, feeds), run(source, feeds))


def test_a_data_file_name_taken_by_another_process_meanwhile_is_never_written_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data file's name is chosen free when the run is planned. Another run that took the
    same name meanwhile (`-o out.onnx.1`, whose data file is out.onnx.1.data, beside an
    output whose out.onnx.data is taken) had its data file renamed over: its model loaded
    this run's weights, both exiting 0 (t46). The rename now refuses a name taken since."""
    source = weight_normed(tmp_path, external=True)
    out = tmp_path / "out.onnx"
    fold_onnx(source, out)  # out.onnx.data is taken: the next fold plans out.onnx.1.data
    theirs = tmp_path / "out.onnx.1.data"
    saved = onnx.save

    def and_another_run_meanwhile(*args: Any, **kwargs: Any) -> None:
        saved(*args, **kwargs)
        theirs.write_bytes(b"another run's weights")

    monkeypatch.setattr(io.onnx, "save", and_another_run_meanwhile)
    before = out.read_bytes()
    with pytest.raises(OutputError, match=r"out\.onnx\.1\.data: another process put a file"):
        fold_onnx(source, out)
    assert theirs.read_bytes() == b"another run's weights"
    assert out.read_bytes() == before and (tmp_path / "out.onnx.data").exists()
    assert not list(tmp_path.glob(".wnpass-*"))


def test_an_output_of_the_longest_name_whose_data_file_name_would_be_too_long(
    tmp_path: Path,
) -> None:
    """A 255-byte output name is valid, its ``.data`` name is not: a model small enough to be
    written inline was refused (``cannot be examined``, then ``cannot write``: File name too
    long) for a data file it never needed (t202)."""
    source = weight_normed(tmp_path)
    output = tmp_path / ("o" * 250 + ".onnx")
    _, report = fold_onnx(source, output)
    assert report.output == str(output) and report.data_files == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([source.name, output.name])


@pytest.mark.parametrize("length", [250, 236], ids=["data name too long", "its staging too"])
def test_a_data_file_name_too_long_is_refused_saying_so(tmp_path: Path, length: int) -> None:
    """Where the weights do go to a data file, its name too long said "cannot write (File name
    too long)" of the output, whose own name was valid (t203); so did one of 241 to 245 bytes,
    whose folder onnx-ir stages it in is 10 bytes longer (t225), once the export had run."""
    source = weight_normed(tmp_path)
    output = tmp_path / ("o" * length + ".onnx")
    with pytest.raises(OutputError, match=r"its weights go to a data file, o+\.onnx\.data, "):
        fold_onnx(source, output, external_data=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]
    shorter = tmp_path / ("o" * 235 + ".onnx")  # the longest whose staging fits
    _, report = fold_onnx(source, shorter, external_data=True)
    assert report.data_files == [str(shorter) + ".data"]


def test_a_data_file_name_that_is_not_utf8_is_refused_saying_so(tmp_path: Path) -> None:
    """An output named with a byte no UTF-8 decodes (0xFE), which the file system takes:
    its data file's name, which the model holds as UTF-8 text, failed to serialize, exit 3
    (t350). Refused before anything is written; inline, such a name is written."""
    source = weight_normed(tmp_path)
    output = tmp_path / os.fsdecode(b"o\xfe.onnx")
    with pytest.raises(OutputError, match=r"whose name the model holds as UTF-8 text"):
        fold_onnx(source, output, external_data=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]
    _, report = fold_onnx(source, output, external_data=False)
    assert report.output == str(output)


def test_a_long_name_is_written_where_no_tensor_goes_to_the_data_file(tmp_path: Path) -> None:
    """External data asked for, every tensor small enough to stay inline: no data file is
    written, so its name's length is no reason to refuse, nor a staging folder named after it
    (t205)."""
    source = tmp_path / "m.onnx"
    onnx.save(onnx_model(WN, v=rand(3, 4), g=rand(3, 1)), source)
    output = tmp_path / ("o" * 250 + ".onnx")
    _, report = fold_onnx(source, output, external_data=True)
    assert report.output == str(output) and report.data_files == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([source.name, output.name])
