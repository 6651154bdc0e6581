"""Loading and saving: clear errors for bad files, atomic writes, external data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.helpers import assert_close, onnx_model, rand, run, sites_left
from wnpass import fold_onnx
from wnpass.errors import InvalidModelError, OutputError
from wnpass.onnx import io

TEXT = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[2, 64] x) => (float[2, 32] y) {
        n = ReduceL2 <axes = [1]> (lin.weight_v)
        d = Div(lin.weight_v, n)
        w = Mul(d, lin.weight_g)
        y = Gemm <transB = 1> (x, w)
    }
"""


def weight_normed(tmp_path: Path, external: bool = False) -> Path:
    text = TEXT.replace("lin.weight_v", "v").replace("lin.weight_g", "g")
    model = onnx_model(
        text, names={"v": "lin.weight_v", "g": "lin.weight_g"}, v=rand(32, 64), g=rand(32, 1)
    )
    path = tmp_path / "model.onnx"
    onnx.save(model, path, save_as_external_data=external, location="weights.bin", size_threshold=0)
    return path


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
    fold_onnx(path, in_place=True)  # nothing left to fold: the same bytes again
    assert_close(run(path, feeds), expected)
    assert not list(tmp_path.glob(".wnpass-*"))


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
