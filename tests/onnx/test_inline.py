"""Large weights are read from the file's bytes, not copied by protobuf, and read right."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.helpers import rand
from wnpass.errors import InvalidModelError
from wnpass.onnx import inline, io

SMALL = inline.MIN_BYTES // 4  # float32 elements that stay in the parsed proto


def _save(tmp_path: Path, initializers: list[TensorProto], name: str = "m.onnx") -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", [t.name], [f"{t.name}.out"]) for t in initializers],
        "g",
        [],
        [
            helper.make_tensor_value_info(f"{t.name}.out", t.data_type, list(t.dims))
            for t in initializers
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def _weight(model: ir.Model, name: str) -> np.ndarray:
    tensor = model.graph.initializers[name].const_value
    assert tensor is not None
    return tensor.numpy()


def _arrays(model: ir.Model) -> dict[str, np.ndarray]:
    return {
        name: value.const_value.numpy()
        for name, value in model.graph.initializers.items()
        if value.const_value is not None
    }


def _many_kinds() -> list[TensorProto]:
    int4 = helper.make_tensor("int4", TensorProto.INT4, [3000], np.arange(3000) % 8 - 4)
    return [
        numpy_helper.from_array(rand(64, 96), "f32"),
        numpy_helper.from_array(rand(SMALL), "f32.small"),
        numpy_helper.from_array(rand(40, 200).astype(np.float16), "f16"),
        numpy_helper.from_array(rand(3000).astype(ml_dtypes.bfloat16), "bf16"),
        numpy_helper.from_array(np.arange(5000, dtype=np.int64), "i64"),
        numpy_helper.from_array(np.arange(5000) % 2 == 0, "bool"),
        int4,  # packed two to a byte: put back and parsed as usual
        helper.make_tensor("typed", TensorProto.FLOAT, [2000], rand(2000).tolist()),
    ]


def test_every_weight_reads_as_onnx_reads_it(tmp_path: Path) -> None:
    path = _save(tmp_path, _many_kinds())
    expected = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    loaded = _arrays(io.load(path))
    assert loaded.keys() == expected.keys()
    for name, array in expected.items():
        got = loaded[name]
        if name == "int4":
            got = got.astype(np.int8)
            array = array.astype(np.int8)
        assert got.dtype == array.dtype, name
        assert got.shape == array.shape, name
        assert np.array_equal(got, array), name


def test_large_weights_are_views_of_the_file_bytes(tmp_path: Path) -> None:
    """Views of the file's bytes, read-only; the small weight and the packed one are parsed."""
    path = _save(tmp_path, _many_kinds())
    proto, weights = inline.parse(path)
    names = [t.name for t in proto.graph.initializer]
    assert {names[i] for i in weights.spans} == {"f32", "f16", "bf16", "i64", "bool"}
    model = io.from_proto(proto)
    weights.attach(proto, model)
    array = _weight(model, "f32")
    assert np.shares_memory(array, np.frombuffer(weights.data, np.uint8))
    assert not array.flags.writeable


def test_the_weights_do_not_change_with_the_file(tmp_path: Path) -> None:
    """The file is read once: writing over it (or truncating it) afterwards changes nothing
    that was loaded."""
    weight = rand(128, 128)
    path = _save(tmp_path, [numpy_helper.from_array(weight, "w")])
    model = io.load(path)
    with open(path, "r+b") as stream:
        stream.truncate(16)
    assert np.array_equal(_weight(model, "w"), weight)


def test_duplicate_initializer_names_are_parsed_whole(tmp_path: Path) -> None:
    """Positions cannot be matched to names there: the file is parsed as protobuf reads it,
    and the checker's verdict is the same as before."""
    tensors = [
        numpy_helper.from_array(rand(64, 64), "w"),
        numpy_helper.from_array(rand(64, 64), "w"),
    ]
    path = _save(tmp_path, tensors[:1])
    model = onnx.load(path)
    model.graph.initializer.append(tensors[1])
    path.write_bytes(model.SerializeToString())
    proto, weights = inline.parse(path)
    assert weights.spans == {}
    assert [len(t.raw_data) for t in proto.graph.initializer] == [64 * 64 * 4] * 2


def test_a_large_weight_shorter_than_its_shape_is_refused(tmp_path: Path) -> None:
    tensor = numpy_helper.from_array(rand(64, 64), "w")
    tensor.dims[0] = 65
    path = _save(tmp_path, [numpy_helper.from_array(rand(64, 64), "w")])
    model = onnx.load(path)
    model.graph.initializer[0].CopyFrom(tensor)
    path.write_bytes(model.SerializeToString())
    assert inline.parse(path)[1].spans  # the weight is left in the file's bytes ...
    with pytest.raises(InvalidModelError, match=r"holds 16384 bytes, its shape \[65, 64\]"):
        io.load(path)  # ... and its size checked all the same


def test_a_file_the_reader_does_not_follow_is_parsed_by_protobuf(tmp_path: Path) -> None:
    """A group field (valid protobuf, skipped as unknown) is not followed by the wire reader:
    protobuf parses the file whole and the model loads as before."""
    path = _save(tmp_path, [numpy_helper.from_array(rand(64, 64), "w")])
    data = path.read_bytes() + b"\xfb\x07\xfc\x07"  # field 127 as an empty group
    path.write_bytes(data)
    proto, weights = inline.parse(path)
    assert weights.spans == {}
    assert len(proto.graph.initializer[0].raw_data) == 64 * 64 * 4
    assert np.array_equal(
        _weight(io.load(path), "w"),
        numpy_helper.to_array(proto.graph.initializer[0]),
    )


@pytest.mark.parametrize("data_type", [TensorProto.UNDEFINED, TensorProto.STRING, 999])
def test_a_large_weight_of_no_numeric_type_is_refused_in_one_line(
    tmp_path: Path, data_type: int
) -> None:
    path = _save(tmp_path, [numpy_helper.from_array(rand(64, 64), "w")])
    model = onnx.load(path)
    model.graph.initializer[0].data_type = data_type
    path.write_bytes(model.SerializeToString())
    with pytest.raises(InvalidModelError) as error:
        io.load(path)
    assert "\n" not in str(error.value)


def test_the_skeleton_is_read_without_the_large_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a file references is read without reading its large weights' bytes at all."""
    path = _save(tmp_path, _many_kinds())
    parsed, weights = inline.parse(path)
    reads: list[tuple[int, int]] = []
    real_pread = inline.os.pread

    def pread(fd: int, length: int, offset: int) -> bytes:
        reads.append((offset, offset + length))
        return real_pread(fd, length, offset)

    monkeypatch.setattr(inline.os, "pread", pread)
    monkeypatch.setattr(inline.FileBytes, "WINDOW", 64)  # windows never reach into a weight
    assert inline.skeleton(path, whole_below=0) == parsed
    assert weights.spans and reads
    for span in weights.spans.values():  # at most a window's peek past the field's length
        end = span.offset + span.length
        assert sum(max(0, min(e, end) - max(s, span.offset)) for s, e in reads) <= 64


@pytest.mark.parametrize(("whole_below", "parsed"), [(2**20, True), (1024, False)])
def test_a_skeleton_the_reader_does_not_follow_is_parsed_whole_only_when_small(
    tmp_path: Path, whole_below: int, parsed: bool
) -> None:
    path = _save(tmp_path, [numpy_helper.from_array(rand(64, 64), "w")])
    path.write_bytes(path.read_bytes() + b"\xfb\x07\xfc\x07")  # an empty group: not followed
    proto = inline.skeleton(path, whole_below)
    assert (len(proto.graph.initializer) == 1) is parsed


def test_a_file_shorter_than_it_was_is_not_read_past_its_end(tmp_path: Path) -> None:
    path = _save(tmp_path, [numpy_helper.from_array(rand(64, 64), "w")])
    with open(path, "rb") as stream:
        view = inline.FileBytes(stream.fileno(), path.stat().st_size)
        path.write_bytes(path.read_bytes()[:100])
        with pytest.raises(inline.wire.WireError, match="shorter"):
            view[50:200]
        with pytest.raises(inline.wire.WireError, match="shorter"):
            view[99]  # a window past the end
        with pytest.raises(IndexError):
            view[len(view)]
