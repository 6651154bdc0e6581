"""Write a single-file ONNX model without building it as one serialized string.

``onnx.save`` serializes the whole model into one bytes object, a full copy of every weight,
before writing it. Here the model is serialized without its main-graph initializers, and the
initializers are written one by one after it, as length-delimited protobuf fields of the
graph (protobuf parsers accept fields in any order). Weights that are numpy arrays are written
straight from their memory (the ``raw_data`` field is encoded by hand), so peak memory stays
near the model's own size and the time near the disk's.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import BinaryIO

import numpy as np
import onnx
import onnx_ir as ir

from wnpass.onnx.wire import GRAPH_INITIALIZER, MODEL_GRAPH, TENSOR_RAW_DATA, key, varint

__all__ = ["write_model"]

_UNPACKED = frozenset({ir.DataType.STRING, ir.DataType.INT4, ir.DataType.UINT4})


class _Record:
    """One initializer as a GraphProto field: its size known up front, its bytes made late.

    Numeric tensors (in memory, lazy or external) get a hand-encoded header and their bytes
    straight from the array, which is only materialized while it is written.
    """

    def __init__(self, tensor: ir.TensorProtocol, name: str) -> None:
        self.tensor = tensor
        self.proto: onnx.TensorProto | None = None
        direct = isinstance(tensor, (ir.Tensor, ir.LazyTensor, ir.ExternalTensor))
        if direct and sys.byteorder == "little" and tensor.dtype not in _UNPACKED:
            dims = tensor.shape.numpy()
            header = onnx.TensorProto(name=name, data_type=int(tensor.dtype), dims=dims)
            self.header = header.SerializeToString()
            self.nbytes = tensor.nbytes
            raw_key = key(TENSOR_RAW_DATA) + varint(self.nbytes)
            self.header += raw_key
            body = len(self.header) + self.nbytes
        else:
            if isinstance(tensor, ir.serde.TensorProtoTensor):
                tensor.name = name
                self.proto = tensor.raw
            else:
                self.proto = ir.serde.serialize_tensor(tensor)
                self.proto.name = name
            body = self.proto.ByteSize()
        self.prefix = key(GRAPH_INITIALIZER) + varint(body)
        self.size = len(self.prefix) + body

    def write(self, stream: BinaryIO) -> None:
        stream.write(self.prefix)
        if self.proto is not None:
            stream.write(self.proto.SerializeToString())
            return
        stream.write(self.header)
        array = np.ascontiguousarray(self.tensor.numpy()).reshape(-1)
        assert array.nbytes == self.nbytes, f"{self.tensor.name}: size changed while writing"
        stream.write(array.view(np.uint8).data)
        del array
        if isinstance(self.tensor, ir.ExternalTensor):
            with contextlib.suppress(BufferError):  # still viewed elsewhere: unmapped later
                self.tensor.release()


def write_model(
    model: ir.Model, stream: BinaryIO, progress: Callable[[int, int], None] | None = None
) -> None:
    """Serialize ``model`` to ``stream`` as one ONNX protobuf, weights written one at a time;
    ``progress(done, total)`` is called after each weight."""
    graph = model.graph
    values = list(graph.initializers.values())
    real = {value: value.const_value for value in values}
    proto = onnx.ModelProto()
    try:
        # Serialize the model with empty stand-ins for the main graph's initializers ...
        for value in values:
            if value.const_value is not None:
                value.const_value = ir.Tensor(
                    np.empty((0,), np.float32), dtype=ir.DataType.FLOAT, name=value.name
                )
        ir.serde.serialize_model_into(proto, model)
    finally:
        for value, tensor in real.items():
            value.const_value = tensor
    # ... then drop the stand-ins and append the real tensors after the rest of the graph.
    del proto.graph.initializer[:]
    graph_bytes = proto.graph.SerializeToString()
    proto.ClearField("graph")
    records = [
        _Record(value.const_value, value.name)
        for value in values
        if value.const_value is not None and value.name is not None
    ]
    stream.write(proto.SerializeToString())
    stream.write(key(MODEL_GRAPH) + varint(len(graph_bytes) + sum(r.size for r in records)))
    stream.write(graph_bytes)
    for done, record in enumerate(records, 1):
        record.write(stream)
        if progress is not None:
            progress(done, len(records))
