"""The streaming writer produces the same model as onnx-ir's serializer, for every dtype."""

from __future__ import annotations

import io as stdio

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir

from tests.helpers import onnx_model, rand
from wnpass.onnx import writer
from wnpass.onnx.writer import write_model


def test_streamed_model_equals_the_serialized_one() -> None:
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 4] x) => (float[2, 3] y, int64[2] z) {
            y = Gemm <transB = 1> (x, w)
            z = Identity(ids)
        }
    """
    model = ir.serde.deserialize_model(onnx_model(text, w=rand(3, 4), ids=np.array([7, 9])))
    graph = model.graph
    extra = {
        "half": ir.Tensor(rand(5, 2).astype(np.float16)),
        "brain": ir.Tensor(rand(3).astype(ml_dtypes.bfloat16)),
        "flags": ir.Tensor(np.array([True, False])),
        "words": ir.StringTensor(np.array([b"a", b"bc"])),
        "scalar": ir.Tensor(np.array(2.5, np.float64)),
    }
    for name, tensor in extra.items():
        graph.register_initializer(ir.Value(name=name, const_value=tensor))
    expected = ir.serde.serialize_model(model)
    buffer = stdio.BytesIO()
    write_model(model, buffer)
    actual = onnx.load_from_string(buffer.getvalue())
    assert actual == expected
    assert [i.name for i in actual.graph.initializer] == ["w", "ids", *extra]
    # the model object is left as it was
    assert isinstance(graph.initializers["half"].const_value, ir.Tensor)
    w = graph.initializers["w"].const_value
    assert w is not None and w.numpy().shape == (3, 4)


def test_writeback_hands_over_the_output_as_it_is_written(monkeypatch, tmp_path) -> None:
    """With ``writeback``, the output is handed to the disk in contiguous stretches of a slice
    or more, from its first byte to within a slice of its end; the file is the same as
    without it."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 40] x) => (float[2, 30] y, float[2, 30] z) {
            y = Gemm <transB = 1> (x, w)
            z = Gemm <transB = 1> (x, u)
        }
    """
    w, u = rand(30, 40), rand(30, 40)
    model = ir.serde.deserialize_model(onnx_model(text, w=w, u=u))
    for name, array in (("w", w), ("u", u)):  # as a fold leaves them
        model.graph.initializers[name].const_value = ir.Tensor(array, name=name)
    monkeypatch.setattr(writer, "SLICE_BYTES", 1000)  # 4800 bytes a weight: 5 slices each
    calls: list[tuple[int, int, int]] = []
    monkeypatch.setattr(writer.os, "posix_fadvise", lambda *args: calls.append(args[1:]))
    with open(tmp_path / "back.onnx", "wb") as stream:
        write_model(model, stream, writeback=True)
    with open(tmp_path / "plain.onnx", "wb") as stream:
        write_model(model, stream)
    written = (tmp_path / "back.onnx").read_bytes()
    assert written == (tmp_path / "plain.onnx").read_bytes()
    assert all(advice == writer.os.POSIX_FADV_DONTNEED for *_, advice in calls)
    assert all(length >= 1000 for _, length, _ in calls)
    ends = [start + length for start, length, _ in calls]
    assert [start for start, _, _ in calls] == [0, *ends[:-1]]  # contiguous from the start
    assert len(written) - 1000 < ends[-1] <= len(written)


def test_writeback_to_a_buffer_is_skipped(monkeypatch) -> None:
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 4] x) => (float[2, 3] y) {
            y = Gemm <transB = 1> (x, w)
        }
    """
    model = ir.serde.deserialize_model(onnx_model(text, w=rand(3, 4)))
    buffer = stdio.BytesIO()
    write_model(model, buffer, writeback=True)  # no file descriptor: nothing to hand over
    assert onnx.load_from_string(buffer.getvalue()) == ir.serde.serialize_model(model)
