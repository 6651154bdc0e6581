"""Write a single-file ONNX model without building it as one serialized string.

``onnx.save`` serializes the whole model into one bytes object, a full copy of every weight,
before writing it. Here the model is serialized without its main-graph initializers, and the
initializers are written one by one after it, as length-delimited protobuf fields of the
graph (protobuf parsers accept fields in any order). Weights that are numpy arrays are written
straight from their memory (the ``raw_data`` field is encoded by hand), so peak memory stays
near the model's own size and the time near the disk's.

With ``writeback``, the kernel is asked to start writing each 16 MiB of the output to disk as
soon as it is written. This is for an output that replaces a file: ext4 (``auto_da_alloc``)
writes a file that is renamed over another out at the rename, so a staged file renamed onto
the old output would wait there for all its data at once. Measured on a 128 MiB fold, the
rename took 60-80 ms without it and about 30 ms with it. A new file is left to the kernel's
own writeback (handing it over early cost 15 ms more per 128 MiB).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable
from typing import BinaryIO

import numpy as np
import onnx
import onnx_ir as ir

from wnpass.onnx.wire import GRAPH_INITIALIZER, MODEL_GRAPH, TENSOR_RAW_DATA, key, varint

__all__ = ["write_model"]

_UNPACKED = frozenset({ir.DataType.STRING, ir.DataType.INT4, ir.DataType.UINT4})
# Weights are written in slices of this size; with writeback, the disk is handed each such
# stretch of the output as soon as it is written.
SLICE_BYTES = 16 * 2**20


class _Writeback:
    """Has the kernel start writing each ``SLICE_BYTES`` of the output to disk, without waiting
    for them. ``POSIX_FADV_DONTNEED`` does that on Linux for dirty pages (and drops the pages
    already clean); where it is missing, or the stream is not a file, nothing is done."""

    def __init__(self, stream: BinaryIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled and hasattr(os, "posix_fadvise")
        self.start = 0

    def wrote(self) -> None:
        """Called after each write: hands over what was written since the last hand-over, once
        it is a slice or more."""
        if not self.enabled:
            return
        try:
            end = self.stream.tell()
            if end - self.start >= SLICE_BYTES:
                self.stream.flush()
                os.posix_fadvise(
                    self.stream.fileno(), self.start, end - self.start, os.POSIX_FADV_DONTNEED
                )
                self.start = end
        except (OSError, io.UnsupportedOperation):  # not a file (a buffer, a pipe)
            self.enabled = False


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

    def write(self, stream: BinaryIO, writeback: _Writeback) -> None:
        stream.write(self.prefix)
        if self.proto is not None:
            stream.write(self.proto.SerializeToString())
            writeback.wrote()
            return
        stream.write(self.header)
        array = np.ascontiguousarray(self.tensor.numpy()).reshape(-1)
        assert array.nbytes == self.nbytes, f"{self.tensor.name}: size changed while writing"
        data = array.view(np.uint8).data
        for start in range(0, self.nbytes, SLICE_BYTES):
            stream.write(data[start : start + SLICE_BYTES])
            writeback.wrote()
        del array, data
        if isinstance(self.tensor, ir.ExternalTensor):
            with contextlib.suppress(BufferError):  # still viewed elsewhere: unmapped later
                self.tensor.release()


def write_model(
    model: ir.Model,
    stream: BinaryIO,
    progress: Callable[[int, int], None] | None = None,
    *,
    writeback: bool = False,
) -> None:
    """Serialize ``model`` to ``stream`` as one ONNX protobuf, weights written one at a time;
    ``progress(done, total)`` is called after each weight. ``writeback``: start writing each
    16 MiB of the output to disk as soon as it is written (see the module's docstring)."""
    graph = model.graph
    values = list(graph.initializers.values())
    real = {value: value.const_value for value in values}
    proto = onnx.ModelProto()
    try:
        # Serialize the model with an empty stand-in for the main graph's initializers ...
        stand_in = ir.Tensor(np.empty((0,), np.float32), dtype=ir.DataType.FLOAT)
        for value in values:
            if value.const_value is not None:
                value.const_value = stand_in
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
    handover = _Writeback(stream, writeback)
    for done, record in enumerate(records, 1):
        record.write(stream, handover)
        if progress is not None:
            progress(done, len(records))
