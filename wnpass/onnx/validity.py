"""What an ONNX model must be for wnpass to read it or write it: every tensor's data what its
type and shape say (in the file or in an external data file of the model's own folder),
nothing onnx-ir cannot carry, and the full ONNX checker's approval, given without copying the
weights (:func:`check_structure`, :func:`check_output`)."""

from __future__ import annotations

import errno
import itertools
import logging
import math
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from wnpass.errors import InvalidModelError, one_line
from wnpass.onnx import inline
from wnpass.onnx.graphs import OVERRIDABLE_FROM_IR, attribute_tensors, graphs_of

__all__ = [
    "all_graph_protos",
    "all_tensor_protos",
    "check_carried",
    "check_external",
    "check_output",
    "check_structure",
    "check_tensors",
]

logger = logging.getLogger(__name__)

# A location longer than this is refused: no file system takes a longer path.
_MAX_LOCATION = 4096
# The ONNX checker counts a tensor's elements in a signed 64-bit integer.
_MAX_ELEMENTS = 2**63 - 1
# Where each data type keeps its values when they are not in ``raw_data`` (onnx.proto).
_COMPLEX = {onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128}
_VALUE_FIELDS = (
    "float_data",
    "int32_data",
    "string_data",
    "int64_data",
    "double_data",
    "uint64_data",
)


def check_tensors(proto: onnx.ModelProto, path: Path, weights: inline.InlineWeights) -> set[Path]:
    """Refuse any tensor whose data is not what its type and shape say; returns the external
    data files read.

    The ONNX checker is given large weights without their data (:func:`_skeleton`), so what it
    checks of a tensor's data is checked here, for every tensor: dimensions non-negative and
    their product within 64 bits, a known data type, exactly one place holding the values
    (``raw_data``, the field of its type, or an external file) and exactly as many values as
    the shape needs. A tensor whose bytes stayed in the file's bytes (``weights``) is measured
    there.
    """
    main = [
        (tensor, span.length if (span := weights.spans.get(index)) else None)
        for index, tensor in enumerate(proto.graph.initializer)
    ]
    elsewhere = ((tensor, None) for tensor in all_tensor_protos(proto, main_initializers=False))
    folder, owner = path.parent.resolve(), path.stat().st_uid
    files: set[Path] = set()
    for tensor, left_in_file in itertools.chain(main, elsewhere):
        where = f"{path}: tensor {tensor.name!r}"
        _check_shape(tensor, where)
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            files.add(check_external(tensor, path, folder, owner))
        else:
            _check_values(tensor, left_in_file, where)
    return files


def _check_shape(tensor: onnx.TensorProto, where: str) -> None:
    """Refuse a negative dimension, more elements than the checker counts, an unknown type."""
    dims = list(tensor.dims)
    if any(dim < 0 for dim in dims):
        raise InvalidModelError(f"{where} has a negative dimension in its shape {dims}")
    if math.prod(dims) > _MAX_ELEMENTS:
        raise InvalidModelError(f"{where}: its shape {dims} has more than 2**63 - 1 elements")
    if tensor.data_type != onnx.TensorProto.STRING and _bitwidth(tensor.data_type) is None:
        raise InvalidModelError(f"{where} has data type {tensor.data_type}, not an ONNX type")


def _bitwidth(data_type: int) -> int | None:
    if data_type == onnx.TensorProto.UNDEFINED:
        return None
    try:
        return ir.DataType(data_type).bitwidth
    except (ValueError, TypeError):  # not a data type, or one without a width (string)
        return None


def _tensor_nbytes(tensor: onnx.TensorProto) -> int:
    """A tensor's size in bytes, types narrower than a byte packed (0 for strings)."""
    return (math.prod(tensor.dims) * (_bitwidth(tensor.data_type) or 0) + 7) // 8


def _check_values(tensor: onnx.TensorProto, left_in_file: int | None, where: str) -> None:
    """Refuse an inline tensor that holds no values, holds them in two places or in the wrong
    field, or holds more or fewer than its shape needs (ONNX Runtime reads exactly that many;
    a huge shape over a few bytes would otherwise be allocated or read past its end)."""
    dims = list(tensor.dims)
    raw = left_in_file is not None or tensor.HasField("raw_data")
    held = ["raw_data"] * raw + [field for field in _VALUE_FIELDS if getattr(tensor, field)]
    if math.prod(dims) == 0:
        # an empty raw_data is no data: numpy_helper.from_array writes one for an empty array
        if left_in_file or any(getattr(tensor, field) for field in ("raw_data", *_VALUE_FIELDS)):
            raise InvalidModelError(f"{where} has no elements (shape {dims}) but holds data")
        return
    if not held:
        needed = _values_needed(tensor)
        raise InvalidModelError(f"{where} holds no data; its shape {dims} needs {needed} values")
    if len(held) > 1:
        raise InvalidModelError(f"{where} holds its data in more than one field ({held})")
    if raw:
        stored = left_in_file if left_in_file is not None else len(tensor.raw_data)
        if tensor.data_type == onnx.TensorProto.STRING:
            raise InvalidModelError(f"{where} holds strings in raw_data (they go in string_data)")
        if stored != (nbytes := _tensor_nbytes(tensor)):
            raise InvalidModelError(
                f"{where} holds {stored} bytes, its shape {dims} needs {nbytes}"
            )
        return
    field = onnx.helper.tensor_dtype_to_field(tensor.data_type)
    if held[0] != field:
        raise InvalidModelError(f"{where} holds its values in {held[0]}, not {field}")
    stored, needed = len(getattr(tensor, field)), _values_needed(tensor)
    if stored != needed:
        raise InvalidModelError(
            f"{where} holds {stored} values in {field}, its shape {dims} needs {needed}"
        )


def _values_needed(tensor: onnx.TensorProto) -> int:
    """How many entries of its typed field a tensor's shape needs: two per complex number,
    and types of 2 or 4 bits packed into bytes, one byte per entry (onnx.proto)."""
    count = math.prod(tensor.dims)
    if tensor.data_type in _COMPLEX:
        return 2 * count
    bits = _bitwidth(tensor.data_type)
    if bits in (2, 4):
        return (count * bits + 7) // 8
    return count


# The keys of a tensor's external data that ONNX Runtime reads; it refuses any other (onnx's
# own helper's ``basepath`` too) as a model format error.
_EXTERNAL_KEYS = frozenset({"location", "offset", "length", "checksum"})


def check_external(tensor: onnx.TensorProto, path: Path, folder: Path, owner: int) -> Path:
    """Refuse external data that is missing, lies outside the model's folder, or does not hold
    its tensor; returns the data file.

    A location that is absolute, climbs out with ``..``, or is a symbolic link pointing out
    would let a model file read any file on the machine: refused. A location is opened as it is
    written (``w.bin/../w.bin`` is no file), so any ``..`` in it is refused, and so is one
    the system does not open as a file. ``offset`` and ``length`` must be whole numbers in
    ASCII digits, and the file must hold ``offset + length`` bytes, ``length`` being the
    tensor's size (ONNX Runtime reads exactly that many). A key given twice is refused (ONNX
    Runtime refuses it; reading the last would not be reading what the runtime reads), as is
    a key the runtime does not read (it refuses it too, t101), and so are strings (ONNX
    keeps them in ``string_data`` only; they have no size in bytes). A data file with more
    than one hard link is read only if the model's owner (``owner``) owns it: a
    link to another user's file would pass for the model's data (the attack onnx-ir refuses
    every second link for).
    """
    where = f"{path}: tensor {tensor.name!r}"
    if tensor.data_type == onnx.TensorProto.STRING:
        raise InvalidModelError(
            f"{where} holds strings as external data (ONNX keeps them in string_data); refused"
        )
    keys = [entry.key for entry in tensor.external_data]
    if repeated := sorted({key for key in keys if keys.count(key) > 1}):
        raise InvalidModelError(
            f"{where}: external data key {repeated[0]!r} is given more than once; refused"
        )
    if unknown := sorted(set(keys) - _EXTERNAL_KEYS):
        raise InvalidModelError(
            f"{where}: external data key {unknown[0]!r} is not one ONNX Runtime reads "
            f"({', '.join(sorted(_EXTERNAL_KEYS))}); refused"
        )
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    if not location:
        raise InvalidModelError(f"{where} is external but has no location")
    if "\0" in location or len(location) > _MAX_LOCATION:
        raise InvalidModelError(f"{where}: external data location is not a file name")
    if os.path.isabs(location):
        raise InvalidModelError(f"{where}: absolute external data path {location!r} refused")
    looped = f"{where}: external data location {location!r} is a loop of links; refused"
    try:
        target = (folder / location).resolve()
    except RuntimeError:  # pathlib's word for a loop of links, before Python 3.13 (t350)
        raise InvalidModelError(looped) from None
    if not target.is_relative_to(folder):
        raise InvalidModelError(
            f"{where}: external data {location!r} is outside the model's folder; refused"
        )
    if ".." in re.split(r"[/\\]", location):
        raise InvalidModelError(f"{where}: external data location {location!r} has a '..'; refused")
    try:  # as the runtime opens it: joined to the model's folder, every part looked up
        status = os.stat(os.path.join(path.parent, location))
    except NotADirectoryError:
        raise InvalidModelError(
            f"{where}: external data location {location!r} goes through a file; refused"
        ) from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise InvalidModelError(looped) from None
        raise InvalidModelError(f"{where}: external data file {location!r} is missing") from None
    if not stat.S_ISREG(status.st_mode):
        raise InvalidModelError(f"{where}: external data file {location!r} is not a regular file")
    if not os.access(os.path.join(path.parent, location), os.R_OK):  # said with its model
        raise InvalidModelError(f"{where}: external data file {location!r} cannot be read")
    if status.st_nlink > 1 and status.st_uid != owner:
        raise InvalidModelError(
            f"{where}: external data file {location!r} has {status.st_nlink} hard links and "
            "is not owned by the model's owner; refused"
        )
    offset, nbytes = _whole(info.get("offset", "0"), "offset", where), _tensor_nbytes(tensor)
    length = info.get("length")
    if length is not None and _whole(length, "length", where) != nbytes:
        raise InvalidModelError(
            f"{where}: external data length {length} is not the tensor's {nbytes} bytes"
        )
    if offset + nbytes > status.st_size:
        raise InvalidModelError(f"{where}: external data {location!r} ends before the tensor")
    return target


def _whole(text: str, key: str, where: str) -> int:
    """An ``offset`` or ``length``: ASCII digits only (``str.isdigit`` also takes ``²`` and
    Arabic-Indic digits, which ONNX Runtime does not read as numbers), below 2**63 (ONNX
    Runtime reads a 64-bit signed integer)."""
    if not re.fullmatch(r"[0-9]+", text):
        raise InvalidModelError(f"{where}: external data {key} {text!r} is not a number")
    digits = text.lstrip("0")  # leading zeros are read past, as ONNX Runtime does
    # counted before int() of a long text, which Python refuses past 4,300 digits (zeros too:
    # so does the IR built from the model)
    if len(digits) > 19 or len(text) > _MOST_DIGITS or int(digits or "0") >= 2**63:
        raise InvalidModelError(
            f"{where}: external data {key} {text[:24]}{'...' if len(text) > 24 else ''} "
            f"is out of range (at most 2**63 - 1, in at most {_MOST_DIGITS} digits)"
        )
    return int(digits or "0")


_MOST_DIGITS = 4300  # Python's default int_max_str_digits


def all_tensor_protos(
    proto: onnx.ModelProto, *, main_initializers: bool = True
) -> Iterator[onnx.TensorProto]:
    """Every TensorProto of a model: initializers and attributes, in graphs and functions
    (without the main graph's initializers if ``main_initializers`` is false)."""

    def in_nodes(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.TensorProto]:
        for node in nodes:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                for graph in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    yield from in_graph(graph)

    def in_graph(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
        yield from graph.initializer
        yield from in_nodes(graph.node)

    if main_initializers:
        yield from proto.graph.initializer
    yield from in_nodes(proto.graph.node)
    for function in proto.functions:
        yield from in_nodes(function.node)


def all_graph_protos(proto: onnx.ModelProto) -> Iterator[onnx.GraphProto]:
    """The main graph and every subgraph, in graphs and functions."""

    def below(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.GraphProto]:
        for node in nodes:
            for attr in node.attribute:
                for graph in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    yield graph
                    yield from below(graph.node)

    yield proto.graph
    yield from below(proto.graph.node)
    for function in proto.functions:
        yield from below(function.node)


_SPARSE = (onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.SPARSE_TENSORS)


def _has_map(type_: onnx.TypeProto) -> bool:
    """Whether a type is or holds a map (inside sequences and optionals)."""
    kind = type_.WhichOneof("value")
    if kind == "map_type":
        return True
    if kind == "sequence_type":
        return _has_map(type_.sequence_type.elem_type)
    if kind == "optional_type":
        return _has_map(type_.optional_type.elem_type)
    return False


def check_carried(proto: onnx.ModelProto, path: Path) -> None:
    """Refuse what onnx-ir cannot hold, rather than leave it out of the output or fail on it:
    sparse tensors (sparse initializers, a ``Constant``'s ``sparse_value``; onnx-ir reads
    neither, and drops sparse initializers without a word), map types (a ZipMap's output:
    its deserializer fails) and training information."""
    if proto.training_info:
        raise InvalidModelError(f"{path}: has training_info, which wnpass cannot carry; refused")
    graphs = list(all_graph_protos(proto))
    for graph in graphs:
        for sparse in graph.sparse_initializer:
            raise InvalidModelError(
                f"{path}: sparse initializer {sparse.values.name!r}: wnpass does not read "
                "sparse tensors; refused"
            )
    for graph in graphs:
        for info in itertools.chain(graph.input, graph.output, graph.value_info):
            if _has_map(info.type):
                raise InvalidModelError(
                    f"{path}: {info.name!r} has a map type: wnpass reads models with onnx-ir, "
                    "which cannot hold map types; refused"
                )
    for nodes in [graph.node for graph in graphs] + [f.node for f in proto.functions]:
        for node in nodes:
            for attr in node.attribute:
                if attr.type in _SPARSE or attr.HasField("sparse_tensor") or attr.sparse_tensors:
                    named = f"{node.name!r}" if node.name else f"of output {list(node.output)}"
                    raise InvalidModelError(
                        f"{path}: {node.op_type} node {named} holds a sparse tensor "
                        f"({attr.name}): wnpass does not read sparse tensors; refused"
                    )


# Initializers up to this size go to the checker with their data (shape inference reads small
# constants such as Reshape's shape); larger ones become typed graph inputs, which is all that
# checking and inferring shapes needs, and costs no copy of the weights. The same bound as the
# weights left in the file's bytes when it is read: only those under it were parsed.
_CHECKER_DATA_BYTES = inline.MIN_BYTES


def _skeleton(proto: onnx.ModelProto, folder: Path | None = None) -> onnx.ModelProto:
    """The model as the full ONNX checker needs it, without copying its weights.

    The checker validates structure (schemas, attributes, topological order, names) and infers
    shapes strictly, which reads small constants (an ``axes``, a shape); neither needs the
    weights' values. Each large initializer of the main graph becomes a graph input of its
    type and shape; small ones are kept, read from their data file in ``folder`` where they
    are external (an ``axes`` held there made a model whose shapes do not agree pass, and its
    fold's own check failed as an internal error, t101).
    """
    skeleton = onnx.ModelProto()
    for source, target, skip in (
        (proto, skeleton, "graph"),
        (proto.graph, skeleton.graph, "initializer"),
    ):
        for field, value in source.ListFields():
            if field.name == skip:
                continue
            if isinstance(value, (str, bytes, int, float)):
                setattr(target, field.name, value)
            elif hasattr(value, "extend"):
                getattr(target, field.name).extend(value)
            else:
                getattr(target, field.name).CopyFrom(value)
    inputs = {value.name for value in proto.graph.input}
    for tensor in proto.graph.initializer:
        small = _tensor_nbytes(tensor) <= _CHECKER_DATA_BYTES
        external = tensor.data_location == onnx.TensorProto.EXTERNAL
        if small and external and folder is not None:
            skeleton.graph.initializer.append(_read_inline(tensor, folder))
        elif small and not external:
            skeleton.graph.initializer.append(tensor)
        elif tensor.name not in inputs:
            inputs.add(tensor.name)
            skeleton.graph.input.append(
                onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims)
            )
    # external data elsewhere (Constant nodes, subgraphs, functions) was checked above; the
    # checker would look for it relative to the working directory
    _external_stood_in(skeleton)
    return skeleton


def _read_inline(tensor: onnx.TensorProto, folder: Path) -> onnx.TensorProto:
    """A copy of a small external ``tensor`` holding its bytes inline, read from its data file
    in ``folder`` (whose location, offset and length :func:`check_external` checked)."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    offset, size = int(info.get("offset") or 0), _tensor_nbytes(tensor)
    with open(os.path.join(folder, info["location"]), "rb") as stream:
        stream.seek(offset)
        data = stream.read(size)
    copy = onnx.TensorProto()
    copy.CopyFrom(tensor)
    copy.ClearField("external_data")
    copy.data_location = onnx.TensorProto.DEFAULT
    copy.raw_data = data
    return copy


def _external_stood_in(proto: onnx.ModelProto) -> None:
    """Each external tensor of ``proto`` made zeros held inline (:func:`_stand_in`)."""
    for tensor in all_tensor_protos(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            _stand_in(tensor)


def _stand_in(tensor: onnx.TensorProto) -> None:
    """Replace an external tensor's data by zeros held inline (same name, type and shape)."""
    tensor.ClearField("external_data")
    tensor.data_location = onnx.TensorProto.DEFAULT
    tensor.raw_data = b"\0" * _tensor_nbytes(tensor)


def check_structure(proto: onnx.ModelProto, path: Path, folder: Path | None = None) -> None:
    """Refuse what the full ONNX checker (with strict shape inference) refuses; the small
    tensors of the main graph held in data files in ``folder`` are read for it
    (:func:`_skeleton`)."""
    if (refused := _refused(_skeleton(proto, folder))) is not None:
        raise InvalidModelError(f"{path}: rejected by the ONNX checker: {refused}")


# ONNX Runtime's own schemas in the ONNX domain, which it runs and its transformers optimizer
# writes (its fusions of a LayerNorm or RMSNorm): LayerNormalization before the ONNX domain's own
# at opset 17, and SimplifiedLayerNormalization. The ONNX checker has no schema for them.
_RUNTIMES_OWN = {"LayerNormalization": 17, "SimplifiedLayerNormalization": None}
_RUNTIMES_DOMAIN = "wnpass.onnxruntime-in-onnx-domain"


def _runtimes_own_set_apart(proto: onnx.ModelProto) -> None:
    """Move the nodes of ``proto`` (a copy made to be checked) that are ONNX Runtime's own
    ONNX-domain ops (:data:`_RUNTIMES_OWN`) to a domain of their own, which the checker takes
    as another domain's ops: checked as such, as ``com.microsoft``'s are, and not refused."""

    def default_opset(imports: Iterable[onnx.OperatorSetIdProto]) -> int | None:
        return next((i.version for i in imports if i.domain in ("", "ai.onnx")), None)

    def within(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.NodeProto]:
        for node in nodes:
            yield node
            for attr in node.attribute:
                for graph in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    yield from within(graph.node)

    def set_apart(nodes: Iterable[onnx.NodeProto], opset: int | None, imports: Any) -> None:
        moved = False
        for node in within(nodes):
            if node.domain not in ("", "ai.onnx") or node.op_type not in _RUNTIMES_OWN:
                continue
            onnx_from = _RUNTIMES_OWN[node.op_type]
            if onnx_from is None or (opset is not None and opset < onnx_from):
                node.domain = _RUNTIMES_DOMAIN
                moved = True
        if moved and all(i.domain != _RUNTIMES_DOMAIN for i in imports):
            imports.append(onnx.helper.make_opsetid(_RUNTIMES_DOMAIN, 1))

    set_apart(proto.graph.node, default_opset(proto.opset_import), proto.opset_import)
    for function in proto.functions:
        set_apart(function.node, default_opset(function.opset_import), function.opset_import)


def _refused(proto: onnx.ModelProto) -> str | None:
    """Why the full ONNX checker (with strict shape inference) refuses ``proto`` (a copy made
    to be checked, ONNX Runtime's own ONNX-domain ops set apart in it); None where it does
    not."""
    _runtimes_own_set_apart(proto)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        return one_line(error)
    return None


def check_output(model: ir.Model, path: Path) -> None:
    """What is about to be written passes the full ONNX checker, as every input must: a fold's
    own bug (two values of one name across scopes, a dangling input) is an internal error
    before anything is written, never an invalid file published, over its input in place.
    As for an input (:func:`_skeleton`), the main graph's large weights are checked as graph
    inputs of their type and shape, without their data (at IR version 3 they are listed as
    inputs already). A tensor elsewhere (in a body, a function, a node's attribute) cannot be
    checked without its data: where one is large, or computed only when written (a weight
    folded in a body), the model is not checked here (logged), rather than copied whole."""
    main = set(model.graph.initializers.values())
    elsewhere = [
        tensor
        for graph in graphs_of(model)
        for tensor in (
            *(v.const_value for v in getattr(graph, "initializers", {}).values() if v not in main),
            *attribute_tensors(graph),
        )
        if tensor is not None
    ]
    if any(isinstance(t, ir.LazyTensor) or t.nbytes > _CHECKER_DATA_BYTES for t in elsewhere):
        logger.info("%s: not checked before it is written (large weights in a body)", path)
        return
    large = {
        value: tensor
        for value in model.graph.initializers.values()
        if (tensor := value.const_value) is not None and tensor.nbytes > _CHECKER_DATA_BYTES
    }
    small_external = {  # read, as the input's check reads them (an axes, a shape)
        value: tensor
        for value in model.graph.initializers.values()
        if isinstance(tensor := value.const_value, ir.ExternalTensor) and value not in large
    }
    stand_in = ir.Tensor(np.empty((0,), np.float32), dtype=ir.DataType.FLOAT)
    try:
        for value in large:
            value.const_value = stand_in
        for value, tensor in small_external.items():
            value.const_value = ir.Tensor(tensor.numpy(), dtype=tensor.dtype, name=tensor.name)
        proto = ir.serde.serialize_model(model)
    finally:
        for value, tensor in (*large.items(), *small_external.items()):
            value.const_value = tensor
    names = {value.name for value in large}
    kept = [t for t in proto.graph.initializer if t.name not in names]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
    declared = {value.name for value in proto.graph.input}
    if model.ir_version >= OVERRIDABLE_FROM_IR:  # before, each is an input already, or refused
        for value, tensor in large.items():
            if value.name and value.name not in declared:
                shape = [int(d) for d in tensor.shape.numpy()]
                info = onnx.helper.make_tensor_value_info(value.name, int(tensor.dtype), shape)
                proto.graph.input.append(info)
    _external_stood_in(proto)
    if (refused := _refused(proto)) is not None:
        raise RuntimeError(f"{path}: the model to write is not valid: {refused}")
