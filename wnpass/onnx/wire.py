"""The protobuf wire format of an ONNX file, read and written just enough to leave weights be.

An ONNX file is a serialized ``ModelProto``. Its main graph is field 7, the graph's
initializers are its repeated field 5, and each initializer is a ``TensorProto`` whose
``raw_data`` (field 9) holds the weight's bytes. Parsing the whole file copies every weight
into the parser's memory; :func:`split_weights` instead copies the file *without* the large
``raw_data`` fields (the skeleton, which protobuf then parses in a moment) and says where each
left-out field lies in the file, so that the weights are read straight from the file's bytes.
:func:`varint` and :func:`key` encode the same fields when a model is written.

Only what the file's bytes say is trusted here: every length is checked against the bytes
that hold it, and anything this reader does not follow (a deprecated group, a field number 0,
a length running past its message) raises :class:`WireError`, for the caller to fall back on
protobuf's own parser and its message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Protocol, overload

__all__ = ["Buffer", "Span", "WireError", "key", "split_weights", "varint"]

MODEL_GRAPH = 7  # ModelProto.graph
GRAPH_INITIALIZER = 5  # GraphProto.initializer
TENSOR_RAW_DATA = 9  # TensorProto.raw_data

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


class WireError(ValueError):
    """The bytes are not a protobuf message this reader follows."""


class Buffer(Protocol):
    """Bytes to walk: a ``memoryview``, or a file read on demand (``inline.FileBytes``)."""

    def __len__(self) -> int: ...

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> bytes | memoryview: ...


@dataclasses.dataclass(frozen=True)
class Span:
    """Where a left-out ``raw_data`` field's bytes lie in the file."""

    offset: int
    length: int


def varint(number: int) -> bytes:
    """``number`` (non-negative) as a protobuf varint."""
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if not number:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def key(field: int) -> bytes:
    """The key of length-delimited field number ``field``."""
    return varint((field << 3) | _LENGTH_DELIMITED)


def _read_varint(buffer: Buffer, pos: int, end: int) -> tuple[int, int]:
    if pos < end and (byte := buffer[pos]) < 0x80:  # one byte: most tags and lengths
        return byte, pos + 1
    result = shift = 0
    while shift < 70:
        if pos >= end:
            raise WireError("truncated varint")
        byte = buffer[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise WireError("varint longer than 10 bytes")


def _fields(buffer: Buffer, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Each field of the message in ``buffer[start:end]`` as ``(number, wire type, start of
    the field, start of its value, end of the field)``."""
    pos = start
    while pos < end:
        field_start = pos
        tag, pos = _read_varint(buffer, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == _VARINT:
            _, value_end = _read_varint(buffer, pos, end)
        elif wire == _FIXED64:
            value_end = pos + 8
        elif wire == _FIXED32:
            value_end = pos + 4
        elif wire == _LENGTH_DELIMITED:
            length, pos = _read_varint(buffer, pos, end)
            value_end = pos + length
        else:
            raise WireError(f"wire type {wire} (groups are not read)")
        if value_end > end:
            raise WireError("a field runs past the end of its message")
        yield number, wire, field_start, pos, value_end
        pos = value_end


class _Copy:
    """The pieces of a message being copied: runs of unchanged bytes and rewritten fields."""

    def __init__(self, buffer: Buffer, start: int) -> None:
        self.buffer, self.run, self.size = buffer, start, 0
        self.pieces: list[bytes | memoryview] = []

    def add(self, piece: bytes | memoryview) -> None:
        self.pieces.append(piece)
        self.size += len(piece)

    def skip(self, start: int, end: int) -> None:
        """Copy the unchanged bytes before ``start``; leave out ``buffer[start:end]``."""
        if start > self.run:
            self.add(self.buffer[self.run : start])
        self.run = end

    def finish(self, end: int) -> None:
        self.skip(end, end)


def _raw_data(buffer: Buffer, start: int, end: int, min_bytes: int) -> tuple[int, Span] | None:
    """Where the tensor in ``buffer[start:end]`` has its one ``raw_data`` field over
    ``min_bytes``: the field's start and its value's span. None for anything else (protobuf
    would keep the last of several fields: left to it)."""
    raw = [
        (field_start, Span(value_start, value_end - value_start))
        for number, wire, field_start, value_start, value_end in _fields(buffer, start, end)
        if number == TENSOR_RAW_DATA and wire == _LENGTH_DELIMITED
    ]
    return raw[0] if len(raw) == 1 and raw[0][1].length > min_bytes else None


def _graph(buffer: Buffer, start: int, end: int, min_bytes: int, spans: list[Span | None]) -> _Copy:
    copy = _Copy(buffer, start)
    for number, wire, field_start, value_start, value_end in _fields(buffer, start, end):
        if number != GRAPH_INITIALIZER or wire != _LENGTH_DELIMITED:
            continue
        found = _raw_data(buffer, value_start, value_end, min_bytes)
        spans.append(None if found is None else found[1])
        if found is not None:  # the initializer again, without its raw_data field
            raw_start, span = found
            raw_end = span.offset + span.length
            copy.skip(field_start, value_end)
            copy.add(
                key(GRAPH_INITIALIZER) + varint(value_end - value_start - (raw_end - raw_start))
            )
            copy.add(buffer[value_start:raw_start])
            copy.add(buffer[raw_end:value_end])
    copy.finish(end)
    return copy


def split_weights(buffer: Buffer, min_bytes: int) -> tuple[bytes, list[Span | None]]:
    """The serialized model in ``buffer`` without the ``raw_data`` of its main graph's
    initializers over ``min_bytes``, and for each initializer in order (protobuf's order) the
    :class:`Span` of the bytes left out, or None where the tensor was kept whole."""
    spans: list[Span | None] = []
    copy = _Copy(buffer, 0)
    for number, wire, field_start, value_start, value_end in _fields(buffer, 0, len(buffer)):
        if number != MODEL_GRAPH or wire != _LENGTH_DELIMITED:
            continue
        graph = _graph(buffer, value_start, value_end, min_bytes, spans)
        if graph.size != value_end - value_start:
            copy.skip(field_start, value_end)
            copy.add(key(MODEL_GRAPH) + varint(graph.size))
            for piece in graph.pieces:
                copy.add(piece)
    copy.finish(len(buffer))
    return b"".join(copy.pieces), spans
