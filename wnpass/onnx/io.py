"""Load and save ONNX models safely: clear errors for bad input (what a model must be:
:mod:`~wnpass.onnx.validity`), atomic writes, external data."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import os
import shutil
import stat
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import google.protobuf.message
import numpy as np
import onnx
import onnx_ir as ir

from wnpass.checkpoint.formats import DCP, TORCH_NAMES, archive_kind, folder_hint, is_dcp_file
from wnpass.errors import InvalidModelError, OutputError, UsageError, one_line
from wnpass.onnx import inline, validity
from wnpass.onnx.graphs import attribute_tensors, graphs_of
from wnpass.onnx.writer import write_model
from wnpass.plan import IOPlan, data_file_name, kind_of, own_code, stat_input
from wnpass.readahead import identity

__all__ = [
    "DATA_FILES_KEY",
    "SaveTarget",
    "default_output",
    "external_files",
    "from_proto",
    "has_external_data",
    "load",
    "model_bytes",
    "plan_save",
    "save",
    "to_proto",
]

logger = logging.getLogger(__name__)

# Protobuf cannot serialise a message over 2 GiB: larger models must keep weights outside.
PROTOBUF_LIMIT = 2**31 - 1
# Tensors of more bytes go to a data file when the caller leaves it to wnpass: the rest of a
# model (nodes, names, shapes) must fit beside them.
_INLINE_LIMIT = PROTOBUF_LIMIT - 64 * 2**20
# An existing output that the wire reader does not follow is parsed whole, for the data files it
# uses, only below this size (a larger one is not a model that keeps its weights outside).
_SMALL_MODEL = 64 * 2**20


def _checkpoint_hint(path: Path) -> str:
    """What to do with a file that is no ONNX model but starts as a checkpoint does (Lightning's
    ``last.ckpt``, HiFi-GAN's ``g_02500000``): wnpass tells checkpoints by their names; a
    shard of a torch.distributed.checkpoint, which no name makes one wnpass reads."""
    if is_dcp_file(path):
        return f"; it is a file of a folder in {DCP}"
    try:
        with path.open("rb") as file:
            head = file.read(512)
    except OSError:
        return ""
    # a zip's first member's name (its local header: the name's length at 26, the name at
    # 30): torch.save's zips start with "<archive>/data.pkl"; an .npz, say, does not
    first = head[30 : 30 + int.from_bytes(head[26:28], "little")] if len(head) > 30 else b""
    if head.startswith(b"PK\x03\x04") and first.endswith(b"data.pkl"):
        kind = "a torch.save file (a zip)"
    elif head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        kind = "a torch.save file (a pickle)"
    elif len(head) > 8 and head[8:9] == b"{":
        kind = "a .safetensors file"
    elif archived := archive_kind(path):
        return f"; it is {archived}"
    else:
        return ""
    return (
        f"; it starts as {kind}: checkpoints are told by their suffix ({TORCH_NAMES}, "
        ".safetensors), so give it one (a link named X.pt will do)"
    )


def load(path: str | os.PathLike[str], plan: IOPlan | None = None) -> ir.Model:
    """Load ``path`` as an onnx-ir model (external data mapped lazily), or raise one clear line.

    With ``plan``, the file and every external data file it reads are recorded as read.
    """
    path = Path(path)
    status = stat_input(path)
    if isinstance(status, str):  # no such file, a link loop ...
        raise InvalidModelError(f"{path}: {status}")
    if not stat.S_ISREG(status.st_mode):  # a directory, a FIFO, a device: never opened
        said = f"{path}: is {kind_of(status.st_mode)}, not an ONNX file"
        raise InvalidModelError(
            said + (folder_hint(path, "onnx") if stat.S_ISDIR(status.st_mode) else "")
        )
    if status.st_size == 0:
        raise InvalidModelError(f"{path}: empty file, not an ONNX model")
    if status.st_size > PROTOBUF_LIMIT:  # wnpass's reader could; onnx and ONNX Runtime cannot
        raise InvalidModelError(
            f"{path}: one file of {status.st_size} bytes, more than a protobuf holds (2 GiB): "
            "onnx and ONNX Runtime cannot load it (weights over 2 GiB go to a data file)"
        )
    try:
        proto, weights = inline.parse(path)
    except (google.protobuf.message.DecodeError, ValueError, RuntimeError) as error:
        hint = _checkpoint_hint(path)
        raise InvalidModelError(
            f"{path}: not a readable ONNX model ({one_line(error)}){hint}"
        ) from None
    except OSError as error:
        raise InvalidModelError(f"{path}: cannot read ({error.strerror or error})") from None
    if not proto.HasField("graph") or proto.ir_version == 0:
        raise InvalidModelError(f"{path}: not an ONNX model (no graph or IR version)")
    data_files = validity.check_tensors(proto, path, weights)
    if plan is not None:
        plan.read(path, "the input model")
        plan.read_all(sorted(data_files), "the input's external data")
        plan.pin(path, identity(status))  # as parsed; the data files as they are now,
        for data in sorted(data_files):  # before their tensors are read (lazily)
            plan.pin(data)
    model = _checked_model(proto, path, path.parent)
    weights.attach(proto, model)
    for tensor in _tensors(model):  # in functions too, which onnx-ir's set_base_dir skips
        if isinstance(tensor, ir.ExternalTensor):
            tensor.base_dir = str(path.parent)
            tensor.__class__ = _CheckedExternalTensor
    return model


class _CheckedExternalTensor(ir.ExternalTensor):
    """An external tensor whose data file :func:`~wnpass.onnx.validity.check_external` checked
    when the model was read, hard links included.

    onnx-ir refuses, when it reads the data, any data file with a second hard link (another
    user's file linked into the model's folder). wnpass refused that case already, and reads a
    data file of the model's owner that another name also reaches (a backup, a ``cp -al``
    copy): it only reads it, never writes it. The check that the file, links followed, is
    still inside the model's folder is kept, made again when it is read.
    """

    __slots__ = ()

    def _check_path_containment(self) -> None:
        folder = os.path.realpath(self.base_dir)
        if os.path.commonpath([folder, os.path.realpath(self.path)]) != folder:
            raise ValueError(f"external data {self.location!r} is no longer in {folder}")


# onnx-ir gives every initializer a type and shape and then writes a value_info entry for each;
# the names of the entries the file really had are kept here so that saving adds none.
_VALUE_INFO_KEY = "wnpass.value_info_names"


def _value_info_names(graph: onnx.GraphProto) -> set[str]:
    names = {info.name for info in graph.value_info}
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                names |= _value_info_names(sub)
    return names


def from_caller(proto: onnx.ModelProto) -> ir.Model:
    """A ``ModelProto`` a caller gave, checked as a file is (the full ONNX checker, nothing
    wnpass cannot carry) before it is deserialized, so that a malformed one is an
    InvalidModelError, not whatever the deserializer or a pass happens to raise. Its weights
    are read where they are, never copied. One whose tensors are still in external data files
    is refused: a ModelProto has no folder to find them in (they were read from the working
    directory, a missing file was a FileNotFoundError, another folder's file of that name was
    folded)."""
    where = Path("the ModelProto")
    graphs = list(validity.all_graph_protos(proto))
    nodes = itertools.chain(*(g.node for g in graphs), *(f.node for f in proto.functions))
    tensors = itertools.chain(
        *(graph.initializer for graph in graphs),
        (tensor for node in nodes for a in node.attribute for tensor in (a.t, *a.tensors)),
    )
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise InvalidModelError(
                f"{where}: tensor {tensor.name!r} is in an external data file not loaded "
                "(a ModelProto has no folder to find it in): give the model's path, or "
                "load it with its external data (onnx.load's default)"
            )
    return _checked_model(proto, where)


def _checked_model(proto: onnx.ModelProto, path: Path, folder: Path | None = None) -> ir.Model:
    """``proto`` deserialized once the full checker and ``check_carried`` accept it; a
    deserializer error is an InvalidModelError naming ``path``. ``folder``: where its
    external data files are (checked already), whose small tensors the checker reads."""
    validity.check_structure(proto, path, folder)
    validity.check_carried(proto, path)
    try:
        return from_proto(proto)
    except Exception as error:  # the deserializer raises many types on malformed graphs
        raise InvalidModelError(f"{path}: invalid ONNX graph ({one_line(error)})") from None


def require_data_folders(model: ir.Model) -> None:
    """Every external tensor of an ``onnx_ir.Model`` a caller gave knows the folder its data
    file is in: one deserialized from a ``ModelProto`` whose data was not loaded has none, and
    its location would be read against the working directory (another folder's file of that
    name, folded without a word)."""
    for tensor in _tensors(model):
        if isinstance(tensor, ir.ExternalTensor) and not tensor.base_dir:
            raise InvalidModelError(
                f"the onnx_ir.Model: tensor {tensor.name!r} is in an external data file with no "
                "folder to find it in (deserialized from a ModelProto whose data was not "
                "loaded): load the model from its path (onnx_ir.load)"
            )


def from_proto(proto: onnx.ModelProto) -> ir.Model:
    """Deserialize, remembering which value_info entries the proto had."""
    model = ir.serde.deserialize_model(proto)
    model.meta[_VALUE_INFO_KEY] = _value_info_names(proto.graph)
    return model


def _drop_added_value_info(model: ir.Model) -> None:
    """Clear the type of initializers that had no value_info, so none is written for them. An
    initializer that is a graph input or output keeps it: there the type is part of the
    interface, and an output without one is refused by the checker."""
    known = model.meta.get(_VALUE_INFO_KEY)
    if known is None:
        return
    for graph in graphs_of(model):
        if not isinstance(graph, ir.Graph):
            continue
        for value in graph.initializers.values():
            if value.name in known or value.is_graph_input() or value.is_graph_output():
                continue
            value.type, value.shape = None, None


def to_proto(model: ir.Model) -> onnx.ModelProto:
    """Serialize without adding value_info entries the source did not have."""
    _drop_added_value_info(model)
    return ir.serde.serialize_model(model)


def has_external_data(model: ir.Model) -> bool:
    """Whether any initializer, of the main graph or of a subgraph (an ``If`` branch, a
    ``Loop`` body), lives in an external data file."""
    return any(isinstance(t, ir.ExternalTensor) for t in _initializer_tensors(model).values())


def model_bytes(path: str | os.PathLike[str], model: ir.Model | None = None) -> int:
    """Size of an ONNX file plus the external data files its initializers and attribute
    tensors (a ``Constant``'s value) live in, each file counted once (a location may name the
    model file itself, or a link to another; an attribute's data was left out, t213).

    The locations come from ``model`` (the loaded file) when given, else from the file.
    """
    path = Path(path)
    if model is None:
        model = load(path)
    tensors = [
        value.const_value for graph in _graphs(model) for value in graph.initializers.values()
    ]
    tensors.extend(tensor for graph in graphs_of(model) for tensor in attribute_tensors(graph))
    locations = {tensor.location for tensor in tensors if isinstance(tensor, ir.ExternalTensor)}
    st = path.stat()
    total, counted = st.st_size, {(st.st_dev, st.st_ino)}
    for location in locations:
        data = path.parent / location
        if not data.is_file():
            continue
        st = data.stat()
        if (st.st_dev, st.st_ino) not in counted:
            counted.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def _graphs(model: ir.Model) -> list[ir.Graph]:
    return [g for g in graphs_of(model) if isinstance(g, ir.Graph)]


def require_onnx_name(path: str | os.PathLike[str], parameter: str = "output") -> None:
    """Refuse an ONNX output given a name that does not end with ``.onnx`` (in any case): a
    name of another kind of file (``-o trained.pt``, ``-o train.py``) would be replaced by an
    ONNX model, the file of that name lost (t105). ``.onnx`` alone is a hidden file's name
    without a suffix: said as a name missing before it."""
    name = Path(path).name
    if name.lower() == ".onnx":
        raise UsageError(
            f"{os.fspath(path)}: an ONNX output needs a name before .onnx", parameter=parameter
        )
    if Path(path).suffix.lower() != ".onnx":
        raise UsageError(
            f"{os.fspath(path)}: an ONNX output's name must end with .onnx",
            parameter=parameter,
        )


def default_output(path: str | os.PathLike[str]) -> Path:
    """``<stem>.folded.onnx`` beside the input; ``<name>.folded.onnx`` for an input whose name
    does not end with ``.onnx`` (``m.onnx.bak``: ``m.onnx.bak.folded.onnx``; it kept the
    input's suffix, ``m.onnx.folded.bak``, which no output may have: t106)."""
    path = Path(path)
    stem = path.stem if path.suffix.lower() == ".onnx" else path.name
    return path.with_name(f"{stem}.folded.onnx")


def _tensor_bytes(model: ir.Model) -> int:
    """The bytes of every tensor of the model (initializers and attributes, in every graph),
    read from their metadata: none is loaded."""
    return sum(tensor.nbytes for tensor in _tensors(model))


def external_files(path: str | os.PathLike[str]) -> set[Path]:
    """The external data files an ONNX file's tensors name (normalized, symbolic links not
    followed: a link is itself, and is never deleted through); empty if unreadable. The
    file's large inline weights are not read."""
    return _data_record(Path(path))[0]


def reads_as_model(path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` reads as an ONNX model with a graph (its large weights not
    read), not as the raw bytes of a model's external data."""
    try:
        proto = inline.skeleton(Path(path), _SMALL_MODEL)
    except Exception:  # not a model (or not there)
        return False
    return bool(proto.graph.node or proto.graph.output)


# The metadata entry in which wnpass records, in a model it writes, the names of the external
# data files it wrote for it (a JSON list). Replacing that model later deletes an old data file
# only if this record lists it: a data file with wnpass's name for the output that another
# tool wrote (and another model may share) is never wnpass's to delete.
DATA_FILES_KEY = "wnpass.data_files"
# An initializer larger than this goes to the data file (ir.save's default bound).
_EXTERNAL_ABOVE = 256


def _data_record(path: Path) -> tuple[set[Path], frozenset[str]]:
    """The data files the ONNX file at ``path`` names, and the names its wnpass record
    lists (:data:`DATA_FILES_KEY`; none when it has no record, or one that is not a list of
    names). Both empty if it is unreadable."""
    try:
        proto = inline.skeleton(path, _SMALL_MODEL)
    except Exception:  # not a model (or not there): it references nothing
        return set(), frozenset()
    referenced = {  # not normalized: "deep/../o.onnx.data" is not "o.onnx.data" where deep
        path.parent / entry.value  # is a link to a folder (t177)
        for tensor in validity.all_tensor_protos(proto)
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location" and "\0" not in entry.value  # no file's name (t178)
    }
    entries = [entry.value for entry in proto.metadata_props if entry.key == DATA_FILES_KEY]
    try:
        names = json.loads(entries[-1]) if entries else []
    except (ValueError, RecursionError):  # not JSON, or nested deeper than it reads (t202)
        names = []
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        names = []
    return referenced, frozenset(names)


@contextlib.contextmanager
def _recorded(model: ir.Model, data_files: list[str]) -> Iterator[None]:
    """While writing ``model``, its :data:`DATA_FILES_KEY` record lists ``data_files`` (no
    record when there are none: a record copied from the input is never carried over). The
    caller's model is given back as it was."""
    props = model.metadata_props
    before = props.get(DATA_FILES_KEY)
    props.pop(DATA_FILES_KEY, None)
    if data_files:
        props[DATA_FILES_KEY] = json.dumps(data_files)
    try:
        yield
    finally:
        props.pop(DATA_FILES_KEY, None)
        if before is not None:
            props[DATA_FILES_KEY] = before


def _goes_external(tensor: ir.TensorProtocol) -> bool:
    """Whether an initializer is written to the data file: one larger than
    :data:`_EXTERNAL_ABOVE`, but never strings (ONNX keeps them in ``string_data``; external
    data holds fixed-size values only)."""
    return tensor.dtype != ir.DataType.STRING and tensor.nbytes > _EXTERNAL_ABOVE


def _initializer_tensors(model: ir.Model) -> dict[ir.Value, ir.TensorProtocol]:
    """The initializers of every graph (subgraphs of functions too) that have a value, and
    their values."""
    return {
        value: tensor
        for graph in _graphs(model)
        for value in graph.initializers.values()
        if (tensor := value.const_value) is not None
    }


@contextlib.contextmanager
def _moved_out(
    model: ir.Model,
    folder: Path,
    data_name: str,
    callback: Callable[[ir.TensorProtocol, ir.external_data.CallbackInfo], None],
) -> Iterator[None]:
    """While saving, the initializers that :func:`_goes_external` are written to
    ``folder / data_name`` and refer to it, the others (external ones too) are in memory; the
    caller's model is given back as it was.

    ``ir.save`` would do this, but it moves a string tensor over its bound as well, and then
    cannot write it.
    """
    before = _initializer_tensors(model)
    outgoing = [value for value, tensor in before.items() if _goes_external(tensor)]
    loaded = [
        value
        for value, tensor in before.items()
        if not _goes_external(tensor) and isinstance(tensor, ir.ExternalTensor)
    ]
    try:
        written = (  # none out: no data file, nor onnx-ir's staging named after it (t205)
            ir.external_data.convert_tensors_to_external(
                [before[value] for value in outgoing], folder, data_name, callback=callback
            )
            if outgoing
            else []
        )
        for value, external in zip(outgoing, written, strict=True):
            value.const_value = external
        for value in loaded:
            value.const_value = _in_memory(before[value])
        yield
    finally:
        for value, tensor in before.items():
            value.const_value = tensor


def _free_data_name(path: Path, referenced: Collection[Path] = ()) -> str:
    """``<name>.data``, or ``<name>.<k>.data`` when that name is taken: data is never written
    over a file that a model (the input, or the output being replaced) may still be reading,
    nor under a name the replaced output references though its file is gone (``referenced``:
    until the new output is in place, the old one would read the new data as its own)."""
    avoided = {os.path.realpath(data) for data in referenced}
    k = 0
    while (
        os.path.lexists(candidate := path.parent / data_file_name(path, k))
        or os.path.realpath(candidate) in avoided
    ):
        k += 1
    return data_file_name(path, k)


@dataclasses.dataclass(frozen=True)
class SaveTarget:
    """Where :func:`save` writes a model: the file and, if weights may go outside, the name
    planned for their data file; ``external``: they do (True), they stay inside (False), or
    they go outside only where they would not fit in one protobuf (None: decided by what is
    saved, after the fold: a float16 weight a fold casts to float32 takes twice the bytes)."""

    path: Path
    data_name: str | None
    external: bool | None = None

    @property
    def data_path(self) -> Path | None:
        return None if self.data_name is None else self.path.parent / self.data_name

    def data_written(self, plan: IOPlan) -> list[Path]:
        """The data file :func:`save` put in place for the model, if it wrote one (it writes
        none where every tensor is small enough to stay inline)."""
        return [self.data_path] if self.data_path in plan.published else []


def plan_save(
    plan: IOPlan,
    model: ir.Model,
    path: str | os.PathLike[str],
    *,
    external_data: bool | None = None,
    parameter: str = "output",
    replaces_read: bool = False,
) -> SaveTarget:
    """Record in ``plan`` what saving ``model`` to ``path`` writes; see :func:`save`.

    ``external_data=None`` keeps weights external when the model had them, and puts them
    outside when they would not fit in one protobuf, which :func:`save` decides by the model
    it saves (a data file's name is planned for that case).
    """
    path = Path(path)
    if external_data is None and has_external_data(model):
        external_data = True
    if not plan.planned(path, parameter):
        plan.write(path, parameter, replaces_read=replaces_read)
    referenced = keep_old_data(plan, path)
    data_name = None
    if external_data is not False:
        data_name = _free_data_name(path, referenced)
        plan.write(path.parent / data_name, f"{parameter}'s external data", new=True)
    return SaveTarget(path, data_name, external_data)


def keep_old_data(plan: IOPlan, path: Path) -> set[Path]:
    """Record in ``plan`` the data files of the ONNX file at ``path``, an output this run
    replaces: they stay whole until the new one is in place, and only the very files there
    now may be deleted then (:meth:`IOPlan.keep`); returns them, those gone too. Called as
    soon as ``path`` is planned (``export`` runs the model's code before it saves: a file
    moved in under a data file's name meanwhile was deleted, t177); again later, it changes
    nothing."""
    if not os.path.isfile(path):
        return set()
    with own_code():
        referenced, _ = _data_record(path)
    for data in sorted(referenced):
        if os.path.normpath(data) != os.path.normpath(path):
            plan.keep(data, path)
    return referenced


def save(
    model: ir.Model,
    target: SaveTarget,
    plan: IOPlan,
    *,
    gate: Callable[[Path], bool] | None = None,
    same_bytes_as: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> bool:
    """Write ``model`` to a planned target: staged in a folder beside it, then renamed.

    The data file (a name not in use) is renamed into place before the model, so that whatever
    model is at the path stays complete until the new one replaces it; the model records the
    data file's name (:data:`DATA_FILES_KEY`). Tensors in node attributes are written inside
    the model, so the output never points at another folder's data. ``gate`` sees the
    complete staged model first; when it returns False nothing is published and False is
    returned. The data files the replaced model used are then deleted only where its own
    record lists them and ``plan.may_delete`` allows; the others are listed in ``plan.left``.
    """
    path = target.path
    replacing = os.path.isfile(path)
    with own_code():  # never the user's code's read of a target, even inside its block
        replaced, created = _data_record(path) if replacing else (set(), frozenset())
    external = target.external
    if external is None:  # outside where they would not fit in one protobuf
        external = _tensor_bytes(model) > _INLINE_LIMIT
    elif not external and (size := _tensor_bytes(model)) > PROTOBUF_LIMIT:
        raise _too_large(path, size, "tensors")
    if same_bytes_as is not None and (external or _uses_external_data(model)):
        same_bytes_as = None  # its bytes point at data files beside the input: written whole
    _drop_added_value_info(model)
    _internalize_attribute_tensors(model)
    if same_bytes_as is None:  # before anything is written
        validity.check_output(model, path)
    outgoing = external and any(map(_goes_external, _initializer_tensors(model).values()))
    if outgoing and target.data_name is not None:  # where a data file is written (t205)
        _require_name_fits(path, target.data_name)
    with plan.staging(path) as staging:
        staged = staging / path.name
        if same_bytes_as is not None:
            shutil.copyfile(same_bytes_as, staged)
        elif external:
            assert target.data_name is not None  # planned unless external is False
            counted = iter(range(1, 2**62))

            def callback(tensor: ir.TensorProtocol, info: ir.external_data.CallbackInfo) -> None:
                if progress is not None:
                    progress(next(counted), info.total)

            with (
                _released_after_reading(model),
                _recorded(model, [target.data_name] if outgoing else []),
                _moved_out(model, staging, target.data_name, callback),
            ):
                onnx.save(ir.serde.serialize_model(model), staged)
        else:
            with (
                open(staged, "wb") as stream,
                _recorded(model, []),
                _subgraph_tensors_inside(model),
            ):
                write_model(model, stream, progress, writeback=replacing)
        if (size := staged.stat().st_size) > PROTOBUF_LIMIT:  # no reader could parse it
            raise _too_large(path, size, "one file")
        passed = gate is None or gate(staged)
        # what was folded is what is there, to the last read (the check's too: a check of an
        # input changed meanwhile failed the fold, t213)
        plan.require_unchanged()
        if not passed:
            logger.info("%s: not published (the check failed)", path)
            return False
        # the replaced model under another name (a hard link) still reads its data files
        linked = replacing and _hard_links(path) > 1
        staged_data = staging / (target.data_name or "")
        written = outgoing and staged_data.is_file()  # not looked for where none was (t202)
        with plan.together():  # no data file left that no model reads
            if target.data_path is not None and written and staged_data.stat().st_size:
                plan.publish(staged_data, target.data_path)  # small tensors stay inline
            plan.publish(staged, path)
        # before the block ends, where a stop signal held since the first publish is raised
        keep = "the replaced output has other hard links, which still use it" if linked else None
        plan.delete_old_data(replaced, path, created=created, keep=keep)
    logger.info("wrote %s (external data: %s)", path, target.data_name)
    return True


def _hard_links(path: Path) -> int:
    """How many names ``path``'s file has (1 where it cannot be read: nothing to keep)."""
    try:
        return os.lstat(path).st_nlink
    except OSError:
        return 1


# onnx-ir writes a data file in a folder of its own beside it first, named ``.<name>.`` and 8
# random characters: 10 bytes longer than the data file's name.
_DATA_STAGING_EXTRA = 10


def _require_name_fits(path: Path, data_name: str) -> None:
    """Refuse a data file whose name, or that of the folder onnx-ir stages it in
    (:data:`_DATA_STAGING_EXTRA`), is longer than the output's folder takes (a valid output
    name of 255 bytes, and its ``.data``: t202, t203; one of 241, t225), saying so, before
    anything is staged; and one whose name is not UTF-8 text, as the model must hold it (a
    name of a byte such as 0xFE, which the file system takes: exit 3, t350)."""
    try:
        data_name.encode("utf-8")
    except UnicodeEncodeError:  # a byte no UTF-8 decodes, held as a surrogate escape
        raise OutputError(
            f"{path}: its weights go to a data file named after it, {data_name}, whose name "
            "the model holds as UTF-8 text, which this name is not; give the output a name "
            "in UTF-8",
            parameter="output",
        ) from None
    try:
        longest = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    if len(os.fsencode(data_name)) + _DATA_STAGING_EXTRA > longest:
        raise OutputError(
            f"{path}: its weights go to a data file, {data_name}, which is written in a "
            f"folder named for it and {_DATA_STAGING_EXTRA} bytes more first: longer than the "
            f"{longest} bytes a name may have there; give the output a shorter name",
            parameter="output",
        )


def _too_large(path: Path, size: int, what: str) -> OutputError:
    """The error for an output no protobuf reader could parse: ``size`` bytes of ``what``."""
    return OutputError(
        f"{path}: would be {what} of {size} bytes, more than a protobuf holds (2 GiB); "
        "let its weights go to a data file (external_data=True, or left unset)",
        parameter="output",
    )


def _uses_external_data(model: ir.Model) -> bool:
    """Whether any tensor of the model (initializer or attribute, in any graph or function)
    lives in an external data file."""
    return any(isinstance(tensor, ir.ExternalTensor) for tensor in _tensors(model))


def _tensors(model: ir.Model) -> Iterator[ir.TensorProtocol]:
    for graph in graphs_of(model):
        if isinstance(graph, ir.Graph):
            for value in graph.initializers.values():
                if value.const_value is not None:
                    yield value.const_value
        yield from attribute_tensors(graph)


def _internalize_attribute_tensors(model: ir.Model) -> None:
    """Read external tensors held in node attributes into memory, so that they are written
    inside the model (only initializers go to the data file)."""
    for graph in graphs_of(model):
        for node in graph:
            for name, attr in list(node.attributes.items()):
                if attr.is_ref():
                    continue
                if attr.type == ir.AttributeType.TENSOR and isinstance(
                    attr.value, ir.ExternalTensor
                ):
                    node.attributes[name] = ir.AttrTensor(name, _in_memory(attr.value))
                elif attr.type == ir.AttributeType.TENSORS and any(
                    isinstance(t, ir.ExternalTensor) for t in attr.value
                ):
                    node.attributes[name] = ir.AttrTensors(
                        name, [_in_memory(t) for t in attr.value]
                    )


@contextlib.contextmanager
def _subgraph_tensors_inside(model: ir.Model) -> Iterator[None]:
    """While a model is written in one file, the external initializers of its subgraphs are
    in memory (:func:`write_model` writes the main graph's own from their files; a subgraph's,
    serialized by onnx-ir, would keep their location, which names a file beside the input);
    the caller's model is given back as it was."""
    before = {
        value: tensor
        for value, tensor in _initializer_tensors(model).items()
        if isinstance(tensor, ir.ExternalTensor) and value.graph is not model.graph
    }
    try:
        for value, tensor in before.items():
            value.const_value = _in_memory(tensor)
        yield
    finally:
        for value, tensor in before.items():
            value.const_value = tensor


def _in_memory(tensor: ir.TensorProtocol) -> ir.Tensor:
    return ir.Tensor(np.array(tensor.numpy(), copy=True), dtype=tensor.dtype, name=tensor.name)


@contextlib.contextmanager
def _released_after_reading(model: ir.Model) -> Iterator[None]:
    """While saving, read each external initializer through a lazy copy that unmaps it.

    onnx-ir reads external tensors through memory maps and keeps them mapped; the mapped
    pages then count in the process's resident memory until the end. Reading each through a
    copy that releases its map keeps peak memory near the largest tensor.
    """
    swapped: dict[ir.Value, ir.ExternalTensor] = {}
    for graph in _graphs(model):
        for value in graph.initializers.values():
            tensor = value.const_value
            if isinstance(tensor, ir.ExternalTensor):
                swapped[value] = tensor
                value.const_value = ir.LazyTensor(
                    _copy_and_release(tensor),
                    dtype=tensor.dtype,
                    shape=tensor.shape,
                    name=tensor.name,
                )
    try:
        yield
    finally:
        for value, tensor in swapped.items():
            value.const_value = tensor


def _copy_and_release(tensor: ir.ExternalTensor) -> Callable[[], ir.TensorProtocol]:
    def read() -> ir.TensorProtocol:
        array = np.array(tensor.numpy(), copy=True)
        with contextlib.suppress(BufferError):  # still viewed elsewhere: unmapped later
            tensor.release()
        return ir.Tensor(array, dtype=tensor.dtype)

    return read
