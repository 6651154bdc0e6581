"""The wire-format reader: the skeleton plus the left-out bytes are exactly the file."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from wnpass.onnx import wire

MIN = 64

_DTYPES = [np.float32, np.float16, np.int64, np.uint8]


def _model(initializers: list[TensorProto]) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializers,
        doc_string="graph doc",
    )
    return helper.make_model(graph, producer_name="test", doc_string="model doc")


def _put_back(skeleton: bytes, data: bytes, spans: list[wire.Span | None]) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    proto.ParseFromString(skeleton)
    for tensor, span in zip(proto.graph.initializer, spans, strict=True):
        if span is not None:
            assert not tensor.HasField("raw_data")
            tensor.raw_data = data[span.offset : span.offset + span.length]
    return proto


@st.composite
def _tensors(draw: st.DrawFn) -> list[TensorProto]:
    tensors = []
    for i in range(draw(st.integers(0, 6))):
        dtype = draw(st.sampled_from(_DTYPES))
        count = draw(st.integers(0, 200))
        array = np.arange(count).astype(dtype)
        if draw(st.booleans()):
            tensor = numpy_helper.from_array(array, f"t{i}")
        else:  # typed fields (float_data, int64_data, ...) rather than raw_data
            tensor = helper.make_tensor(
                f"t{i}", helper.np_dtype_to_tensor_dtype(array.dtype), [count], array.tolist()
            )
        tensors.append(tensor)
    return tensors


@settings(max_examples=60, deadline=None)
@given(_tensors())
def test_skeleton_and_spans_rebuild_the_model(tensors: list[TensorProto]) -> None:
    model = _model(tensors)
    data = model.SerializeToString()
    skeleton, spans = wire.split_weights(memoryview(data), MIN)
    assert len(spans) == len(tensors)
    for tensor, span in zip(tensors, spans, strict=True):
        large = tensor.HasField("raw_data") and len(tensor.raw_data) > MIN
        assert (span is not None) == large
        if span is not None:
            assert data[span.offset : span.offset + span.length] == tensor.raw_data
    assert len(skeleton) < len(data) or not any(spans)
    assert _put_back(skeleton, data, spans) == model


def test_a_model_in_several_pieces_is_read_as_protobuf_merges_it() -> None:
    """Two serialized models back to back are one model whose graphs are merged: the
    initializers of both, in order."""
    first = _model([numpy_helper.from_array(np.arange(100, dtype=np.float32), "a")])
    second = onnx.ModelProto()
    second.graph.initializer.append(numpy_helper.from_array(np.ones(50, np.float32), "b"))
    data = first.SerializeToString() + second.SerializeToString()
    skeleton, spans = wire.split_weights(memoryview(data), MIN)
    merged = onnx.ModelProto()
    merged.ParseFromString(data)
    assert [t.name for t in merged.graph.initializer] == ["a", "b"]
    assert all(span is not None for span in spans)
    assert _put_back(skeleton, data, spans) == merged


def test_a_tensor_with_two_raw_data_fields_is_kept_whole() -> None:
    """Protobuf keeps the last of repeated scalar fields; that is left to it."""
    tensor = numpy_helper.from_array(np.zeros(100, np.float32), "t")
    extra = TensorProto(raw_data=np.ones(100, np.float32).tobytes())
    model = _model([])
    graph_field = wire.key(wire.GRAPH_INITIALIZER)
    body = tensor.SerializeToString() + extra.SerializeToString()
    graph = model.graph.SerializeToString() + graph_field + wire.varint(len(body)) + body
    data = (
        onnx.ModelProto(ir_version=model.ir_version).SerializeToString()
        + wire.key(wire.MODEL_GRAPH)
        + wire.varint(len(graph))
        + graph
    )
    skeleton, spans = wire.split_weights(memoryview(data), MIN)
    assert spans == [None]
    assert skeleton == data
    parsed = onnx.ModelProto()
    parsed.ParseFromString(skeleton)
    assert np.array_equal(numpy_helper.to_array(parsed.graph.initializer[0]), np.ones(100))


@pytest.mark.parametrize(
    "data",
    [
        b"\x3a\x05\x00",  # graph field whose length runs past the end
        b"\x3a",  # a key and nothing after it
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # a varint over 10 bytes
        b"\x00\x01",  # field number 0
        b"\x3b\x3c",  # a group (wire types 3 and 4)
        b"\x3a\x02\x2a\x05",  # an initializer running past the end of its graph
    ],
)
def test_malformed_bytes_raise_wire_error(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.split_weights(memoryview(data), MIN)


@pytest.mark.parametrize("number", [0, 1, 127, 128, 300, 16383, 16384, 2**21])
def test_varint_and_key_are_protobufs(number: int) -> None:
    entry = onnx.StringStringEntryProto(key="k" * number).SerializeToString()  # field 1
    assert entry == wire.key(1) + wire.varint(number) + b"k" * number


@pytest.mark.parametrize("number", [2**31 - 1, 2**63])
def test_large_varints_decode_back(number: int) -> None:
    value = shift = 0
    for byte in wire.varint(number):
        value |= (byte & 0x7F) << shift
        shift += 7
    assert value == number and wire.varint(number)[-1] < 0x80
