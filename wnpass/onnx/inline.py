"""Read an ONNX file once, and give its large weights to onnx-ir as views of those bytes.

Protobuf's parser copies every weight of a file it parses, and onnx-ir copies each again when
it is first read as an array. Here the file is read into memory once; protobuf parses only the
skeleton (:func:`wnpass.onnx.wire.split_weights`: the file without its large main-graph
weights), and each weight left out becomes an ``ir.Tensor`` over a read-only numpy view of the
file's bytes. Reading the file rather than mapping it keeps the model whole whatever happens to
the file while it is open (a map of a file truncated by another process faults).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
import sys
from pathlib import Path
from typing import overload

import numpy as np
import onnx
import onnx_ir as ir

from wnpass import readahead
from wnpass.onnx import wire

__all__ = ["FileBytes", "InlineWeights", "parse", "skeleton"]

# Weights over this many bytes are left in the file's bytes; smaller ones are parsed as usual
# (and are the ones the ONNX checker is given with their values).
MIN_BYTES = 4096


@dataclasses.dataclass(frozen=True)
class InlineWeights:
    """The main graph's initializers whose ``raw_data`` stayed in ``data``, by position."""

    data: bytes
    spans: dict[int, wire.Span]

    def attach(self, proto: onnx.ModelProto, model: ir.Model) -> None:
        """Give ``model`` (deserialized from ``proto``) the weights left out of ``proto``."""
        initializers = proto.graph.initializer
        for index, span in self.spans.items():
            tensor = initializers[index]
            dtype = ir.DataType(tensor.data_type)
            array = np.frombuffer(
                self.data,
                dtype=dtype.numpy(),
                count=span.length * 8 // dtype.bitwidth,
                offset=span.offset,
            ).reshape(tuple(tensor.dims))
            value = model.graph.initializers[tensor.name]
            value.const_value = ir.Tensor(
                array,
                dtype=dtype,
                name=tensor.name,
                doc_string=tensor.doc_string or None,
                metadata_props={entry.key: entry.value for entry in tensor.metadata_props},
            )


def _viewable(tensor: onnx.TensorProto) -> bool:
    """Whether a tensor's ``raw_data`` reads as a numpy array of its dtype as it is stored."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL or sys.byteorder != "little":
        return False
    try:
        return ir.DataType(tensor.data_type).bitwidth % 8 == 0
    except (ValueError, TypeError):  # not a data type, or one without a width (string)
        return False


def _parse_skeleton(
    buffer: wire.Buffer,
) -> tuple[onnx.ModelProto, list[wire.Span | None]] | None:
    """The model in ``buffer`` parsed without its large main-graph weights, and where each
    left-out weight lies (:func:`wire.split_weights`); None where the wire reader does not
    follow the bytes."""
    try:
        pieces, found = wire.split_weights(buffer, MIN_BYTES)
    except wire.WireError:
        return None
    proto = onnx.ModelProto()
    proto.ParseFromString(pieces)
    return proto, found


def parse(path: Path) -> tuple[onnx.ModelProto, InlineWeights]:
    """Parse the ONNX file at ``path``, its large main-graph weights left in its bytes.

    Raises what ``ParseFromString`` raises for a file that is not a model. A file this reader
    does not follow is parsed whole, as protobuf reads it. The bytes are those read ahead
    (:mod:`wnpass.readahead`) when the file is still the one read.
    """
    data = readahead.claim(path)
    if data is None:
        data = path.read_bytes()
    proto, found = _parse_skeleton(memoryview(data)) or (onnx.ModelProto(), None)
    initializers = proto.graph.initializer
    names = [tensor.name for tensor in initializers]
    # not followed by the wire reader, or positions that cannot be matched to names
    if found is None or len(found) != len(names) or len(set(names)) != len(names):
        proto.ParseFromString(data)
        return proto, InlineWeights(data, {})
    spans = {index: span for index, span in enumerate(found) if span is not None}
    for index, span in list(spans.items()):
        if not _viewable(initializers[index]):
            initializers[index].raw_data = data[span.offset : span.offset + span.length]
            del spans[index]
    return proto, InlineWeights(data, spans)


class FileBytes:
    """The bytes of an open file, read only where they are looked at: single bytes through a
    small window, slices by exact reads. What is skipped over (large weights) is never read."""

    WINDOW = 4096  # a weight left unread is larger (MIN_BYTES)

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size = fd, size
        self.start, self.window = 0, b""

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> bytes: ...

    def __getitem__(self, index: int | slice) -> int | bytes:
        if isinstance(index, slice):
            start, stop, _ = index.indices(self.size)
            return self._read(start, max(stop - start, 0))
        if not self.start <= index < self.start + len(self.window):
            if not 0 <= index < self.size:
                raise IndexError(index)
            self.start = index
            self.window = self._read(index, min(self.WINDOW, self.size - index))
        return self.window[index - self.start]

    def _read(self, offset: int, length: int) -> bytes:
        data = os.pread(self.fd, length, offset)
        if len(data) != length:
            raise wire.WireError("the file is shorter than when it was opened")
        return data


def skeleton(path: Path, whole_below: int) -> onnx.ModelProto:
    """The model at ``path`` without its large main-graph weights, which are not read at all
    (for what the file references). A file the wire reader does not follow is parsed whole if
    it is smaller than ``whole_below`` bytes; a larger one gives an empty model. Anything but
    a regular file is refused (``OSError``) as it is opened, never read: a FIFO blocked its
    reader (a FIFO named ``.onnx`` in a folder given to ``inspect`` hung it, t350)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as stream:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        size = status.st_size
        split = _parse_skeleton(FileBytes(stream.fileno(), size))
        if split is not None:
            return split[0]
        proto = onnx.ModelProto()
        if size < whole_below:
            proto.ParseFromString(stream.read())
        return proto
