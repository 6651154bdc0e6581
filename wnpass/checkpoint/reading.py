"""Open a checkpoint without loading its tensors: names, shapes and dtypes, read lazily.

- ``safetensors``: every file is opened by :class:`~wnpass.checkpoint.tensorfile.SafetensorsFile`
  (validated by the safetensors library, memory-mapped: a tensor is a numpy view whose bytes
  are read when used, and torch is not imported); its metadata is kept.
- ``torch``: ``torch.load(weights_only=True, mmap=True)`` (``mmap`` needs the zip format of
  ``torch.save``; a file in the legacy format is loaded without it). A pickle that would run
  code is refused by ``weights_only`` before anything runs. A memory-mapped storage is a
  slice of the file at its record's offset, of the size the pickle gives, which ``torch.load``
  does not compare with the record's own (a record cut short maps the bytes after it): each
  storage is checked to be exactly one record, as ``torch.load`` without ``mmap`` checks it.
  The state dicts are found at the top level and in nested dicts at any depth
  (``{"state_dict": ...}``, ``{"generator": ...}``, EMA copies): each dict's string-keyed
  tensors form one :class:`Group`.
- an index (``*.safetensors.index.json``, ``pytorch_model.bin.index.json``): its
  ``weight_map`` gives the order and the shard of every tensor. A shard must be a plain file
  name in the index's folder (no path, no ``..``, not a symbolic link leading out of the
  folder, unless it leads where the index's own link does, as in the Hugging Face cache,
  where each file of a snapshot links to its blob), must exist, and must hold exactly the
  tensors the index assigns to it.

Every way a file can be wrong is one :class:`~wnpass.errors.InvalidModelError` line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from wnpass.checkpoint.formats import (
    Format,
    archive_kind,
    detect_format,
    is_sharded,
    read_format,
    require_objects_possible,
)
from wnpass.checkpoint.tensorfile import SafetensorsFile
from wnpass.errors import InvalidModelError, one_line
from wnpass.plan import changed_while_read, not_readable
from wnpass.readahead import Identity, identity
from wnpass.report import listed

__all__ = [
    "HOLDERS",
    "MAX_NESTING",
    "Checkpoint",
    "Group",
    "Key",
    "Place",
    "TensorInfo",
    "at_place",
    "load_torch",
    "open_checkpoint",
    "place_name",
    "place_part",
    "read_index",
    "shard_files",
]

logger = logging.getLogger(__name__)

# containers nested deeper in a torch file are refused: torch.save's pickler recurses once per
# level and fails near Python's recursion limit (1000), so such a file could not be written back
MAX_NESTING = 100
_CONTAINERS = (dict, list, tuple, set, frozenset)
# the containers a state dict is looked for in (and rebuilt through: wnpass.checkpoint.writing)
HOLDERS = (dict, list, tuple)


@dataclasses.dataclass(frozen=True)
class Key:
    """A dict key that is not a string, on the way to a state dict (``{1000: sd}``: a step
    number), kept apart from a list position (an int). It is found again by its position among
    the dict's entries (which ``torch.save`` keeps), not by value: a key loaded again is
    another object, and one that equals no other object (NaN, a tensor) would not match."""

    value: Any = dataclasses.field(compare=False)  # shown in the place's name
    position: int


# Where a state dict sits in a torch file's object: the keys of the dicts (a str, or a Key) and
# the positions in the lists and tuples (int) on the way to it from the top level; () for the
# top.
Place = tuple[str | int | Key, ...]


def place_name(place: Place) -> str | None:
    """A place as the report shows it: ``generator``, ``model/ema``, ``snapshots[0]``; a key
    that is not a string, or a string that would not read as itself (:func:`_plain`), as
    Python would subscript it: ``ema_by_step[1000]``, ``['ema[0]']``, ``runs/['a/b']``."""
    text = ""
    for part in place:
        if isinstance(part, str) and _plain(part):
            text += f"/{part}" if text else part
        elif isinstance(part, str):
            text += f"/[{part!r}]" if text else f"[{part!r}]"
        else:
            text += f"[{part.value if isinstance(part, Key) else part!r}]"
    return text or None


def _plain(key: str) -> bool:
    """Whether a string key reads as itself in a place's name: no part of the name's syntax
    (``/``, ``[``, ``]``), nothing the table would escape or hide (a control character, a
    backslash, a space at an end, an empty key)."""
    return (
        bool(key)
        and key.isprintable()
        and key == key.strip()
        and not any(c in key for c in "/[]\\")
    )


def place_part(key: Any, position: int) -> str | Key:
    """The part of a place that dict key ``key``, the dict's ``position``-th, is."""
    return key if isinstance(key, str) else Key(key, position)


def at_place(root: Any, place: Place) -> Any:
    """The object at ``place`` in ``root``."""
    for part in place:
        if isinstance(part, Key):
            root = next(itertools.islice(root.values(), part.position, None))
        else:
            root = root[part]
    return root


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor of a checkpoint, without its data."""

    key: str
    shape: tuple[int, ...]
    dtype: str  # torch's name: "float32", "bfloat16", ...
    nbytes: int
    shard: int = 0  # which file holds it (Checkpoint.files)
    group: Place = ()  # where its dict sits in a torch file's object


@dataclasses.dataclass
class Group:
    """One state dict: its tensors in the checkpoint's order, and the names of its other
    entries (a torch file's dict may hold lists, numbers, nested dicts beside its tensors)."""

    path: Place  # () for the top level; ("generator",) for {"generator": {...}}
    tensors: list[TensorInfo]
    others: frozenset[str] = frozenset()  # string keys of its entries that are not tensors

    @property
    def name(self) -> str | None:
        return place_name(self.path)

    @functools.cached_property
    def keys(self) -> frozenset[str]:
        """The names of all its entries, tensors or not: an output key that is one of them
        would replace that entry, so the pair that would write it is declined."""
        return self.others | {info.key for info in self.tensors}


class Checkpoint:
    """An opened checkpoint: what it holds, and its tensors on demand (:meth:`tensor`)."""

    def __init__(self, path: Path, fmt: Format, *, keep_objects: bool = False) -> None:
        self.path = path
        self.format: Format = fmt
        # objects of classes torch's weights-only loader does not build, kept unbuilt
        # (:mod:`wnpass.checkpoint.kept`), and the globals kept so
        self.keep_objects = keep_objects
        self.kept: set[str] = set()
        self.files: list[Path] = []  # one for a single file; the shards of an index
        self.shard_names: list[str] = []  # as the index names them
        self.shard_keys: list[list[str]] = []  # each file's tensors in its own order
        self.metadata: list[dict[str, str] | None] = []  # safetensors header metadata per file
        self.groups: list[Group] = []
        self.index: dict[str, Any] | None = None
        self._open: dict[int, Any] = {}  # shard -> SafetensorsFile or the torch file's object
        self._identities: dict[Path, Identity] = {}  # file read -> it before its first read

    @property
    def sharded(self) -> bool:
        return is_sharded(self.format)

    @property
    def safetensors(self) -> bool:
        return self.format.startswith("safetensors")

    def tensors(self) -> Iterator[TensorInfo]:
        for group in self.groups:
            yield from group.tensors

    def root(self, shard: int) -> Any:
        """The opened file ``shard``: a :class:`SafetensorsFile`, or the object a torch file
        holds."""
        if shard not in self._open:
            path = self.files[shard]
            self.reading(path)
            if self.safetensors:
                self._open[shard] = _safe_open(path)
            else:
                kept = self.kept if self.keep_objects else None
                self._open[shard] = load_torch(path, kept, offered=True)
            self.require_same(path)
        return self._open[shard]

    def reading(self, path: Path) -> None:
        """About to read ``path`` (a shard, the index) for the first time, or again: the file
        as it is before its first read is what :meth:`require_same` compares with, so that a
        file replaced or written to while that read goes on is caught."""
        self._identities.setdefault(path, _identity_of(path))

    def require_same(self, path: Path) -> None:
        """File ``path`` is the file it was before it was first read: not replaced (a trainer
        saving over its last checkpoint renames a new file onto it) nor written to since. Its
        pairs were planned and checked from that read: values read from another file (or
        shards another index names) would be folded with that plan. The change time is
        compared too: ``cp -p`` over the input rewrites its bytes and then puts its
        modification time back, so a chmod or a new hard link during a run is refused as well
        (exit 2; run it again)."""
        if self._identities[path] != _identity_of(path):
            raise changed_while_read(path)

    def require_unchanged(self) -> None:
        """Every file read so far is still the file it was before its first read (see
        :meth:`require_same`): called before a result is published."""
        for path in list(self._identities):
            self.require_same(path)

    def tensor(self, info: TensorInfo) -> Any:
        """The tensor ``info`` describes, memory-mapped where the format allows: a read-only
        numpy array from a safetensors file (torch is not imported), a torch tensor from a
        torch file."""
        root = self.root(info.shard)
        if self.safetensors:
            return root.array(info.key)
        return at_place(root, info.group)[info.key]

    def torch_tensor(self, info: TensorInfo) -> Any:
        """The tensor ``info`` describes, as a torch tensor whatever the format."""
        if self.safetensors:
            return self.root(info.shard).torch(info.key)
        return self.tensor(info)

    def release(self, shard: int) -> None:
        """Forget file ``shard``'s handle (its mapped pages go once no tensor holds them)."""
        self._open.pop(shard, None)

    def close(self) -> None:
        self._open.clear()


def open_checkpoint(
    path: str | os.PathLike[str], *, keep_objects: bool = False, any_name: bool = False
) -> Checkpoint:
    """Open the checkpoint at ``path`` (module docstring); nothing is written.
    ``keep_objects``: objects torch's weights-only loader does not build are kept unbuilt
    (:mod:`wnpass.checkpoint.kept`), not refused. ``any_name``: a name of no checkpoint
    format is read as ``torch.save``'s (:func:`read_format`: a state dict given to load,
    HiFi-GAN's ``g_02500000``), not refused."""
    path = Path(path)
    fmt = read_format(path) if any_name else detect_format(path)
    if keep_objects:
        require_objects_possible(path, fmt)
    _require_file(path)
    checkpoint = Checkpoint(path, fmt, keep_objects=keep_objects)
    if is_sharded(fmt):
        _read_index(checkpoint)
    else:
        checkpoint.files = [path]
        checkpoint.shard_names = [path.name]
        _read_file(checkpoint, 0)
        if checkpoint.safetensors:
            checkpoint.groups = [Group((), _tensors_of_shard(checkpoint, 0))]
    checkpoint.close()
    logger.info(
        "%s: %s, %d file(s), %d tensors",
        path,
        fmt,
        len(checkpoint.files),
        sum(len(g.tensors) for g in checkpoint.groups),
    )
    return checkpoint


def _identity_of(path: Path) -> Identity:
    try:
        return identity(os.stat(path))
    except OSError as error:
        raise InvalidModelError(f"{path}: cannot read ({error.strerror or error})") from None


def _require_file(path: Path, what: str = "") -> None:
    """A regular file at ``path``, or an InvalidModelError saying what is there (``what``:
    which file it is, for a shard)."""
    if (problem := not_readable(path)) is not None:
        raise InvalidModelError(f"{path}: {problem}{what}")
    if path.stat().st_size == 0:  # torch said "EOFError", safetensors its own words (t298)
        raise InvalidModelError(f"{path}: empty file, not a checkpoint{what}")


def _safe_open(path: Path) -> SafetensorsFile:
    try:  # the library says "No such file or directory" of a file it may not read (t228)
        with open(path, "rb"):
            pass
    except OSError as error:
        raise InvalidModelError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        return SafetensorsFile(path)
    except Exception as error:
        hint = "; it looks like a torch.save file: name it .pt" if _torch_like(path) else ""
        raise InvalidModelError(
            f"{path}: not a readable safetensors file: {one_line(error)}{hint}"
        ) from None


def _torch_like(path: Path) -> bool:
    """Whether ``path`` starts as a torch.save file does: a zip archive, or a pickle of
    protocol 2 (a torch file named ``.safetensors`` was said only as "header too large",
    t275)."""
    try:
        with path.open("rb") as file:
            head = file.read(2)
    except OSError:
        return False
    return head in (b"PK", b"\x80\x02")


# The line of torch's error that says why it refused
_DETAILS = ("GLOBAL", "nsupported", "Can only", "unrecognized function")
# What torch's weights-only unpickler says when a pickle asks for something other than tensors
# and containers (a function to call, a class to build); anything else it raises is a file
# that is not a pickle it can read at all (random bytes, a cut-off file, an unknown opcode).
_REFUSALS = (
    "GLOBAL",
    "Can only create new object",
    "unrecognized function",
    "Can only build",
    "must be imported to load",
    "Can only SETITEM",  # an object the pickle fills as a dict or a list (a defaultdict)
    "Can only keep",  # an object built twice (:data:`~wnpass.checkpoint.kept.ONCE`)
    "Can only append",
    "Can only extend",
)


# the first bytes of torch.save's zip format; torch.load tells the formats apart by them
# (torch.serialization._is_zipfile), not by the end of the file as zipfile.is_zipfile does (a
# legacy file whose last tensor holds a zip archive's bytes looks like a zip from its end)
_ZIP_MAGIC = b"PK\x03\x04"


def _is_zip_format(path: Path) -> bool:
    """Whether ``path`` is in ``torch.save``'s zip format, as ``torch.load`` decides it."""
    with open(path, "rb") as stream:
        return stream.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC


def _compressed(path: Path) -> bool:
    """Whether a zip-format torch file holds a compressed storage record (a file repacked by
    a zip tool: ``torch.save`` stores them as they are). ``torch.load`` reads such a record,
    but mapped (``mmap=True``) it gives the compressed bytes as the tensor's, without a word."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        listed = archive.infolist()
        storage_folder = listed[0].filename.split("/")[0] + "/data/" if listed else ""
        return any(
            info.compress_type != zipfile.ZIP_STORED
            for info in listed
            if info.filename.startswith(storage_folder)
        )


def _check_records_unique(path: Path) -> None:
    """Refuse a zip-format file holding two records of one name (two ``data.pkl``, a storage
    twice; names told apart by case too, as torch's reader matches them: ``DATA.PKL``, t351):
    which of them torch's reader reads is not the one a scan of its globals reads."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        seen: set[str] = set()
        for name in archive.namelist():
            if name.casefold() in seen:
                raise InvalidModelError(
                    f"{path}: refused: its zip archive holds two records named {name!r} "
                    "(torch.save writes one); it was not run"
                )
            seen.add(name.casefold())


def load_torch(path: Path, kept: set[str] | None = None, *, offered: bool = False) -> Any:
    """``torch.load`` with ``weights_only=True`` (and ``mmap=True`` for the zip format, unless
    a storage record in it is compressed: read into memory then). A name ending in
    ``.safetensors`` is refused: ``torch.load`` reads any such file as safetensors, and what
    was read as a torch.save file (a torch index's shard) is written as one.

    ``kept``: objects of the globals the loader does not build are loaded as stand-ins
    (:mod:`wnpass.checkpoint.kept`), and those globals added to it. Without it, a file naming
    such globals is refused, naming them and, where the caller ``offered`` the option
    (``keep_objects``), saying it."""
    import pickle

    import torch

    from wnpass.checkpoint import kept as stand_ins

    if path.name.endswith(".safetensors"):
        raise InvalidModelError(
            f"{path}: named as a safetensors file where a torch.save file is read (torch.load "
            "reads it as safetensors); refused"
        )
    if _safetensors_like(path):  # before the pickle reader, whose errors vary with the bytes
        raise InvalidModelError(f"{path}: not a readable torch.save file ({_SAFETENSORS})")
    if archived := archive_kind(path):  # torch's words are of its legacy tar format
        raise InvalidModelError(f"{path}: not a readable torch.save file ({archived})")
    # the globals the loader does not build: read (a scan of the file's pickle, about a third
    # of a load's time) only to keep them, or to say why the file was refused
    names: stand_ins.Globals | None = {}
    zipped = False
    try:
        zipped = _is_zip_format(path)
        if zipped:
            _check_records_unique(path)
        mmap = zipped and not _compressed(path)
        if kept is not None:
            names = _unsafe_globals(path, zipped, torch)
        keepable = stand_ins.keepable(names or {})
        with (
            warnings.catch_warnings(record=True) as caught,  # the CLI prints one line only
            _torch_name(path) as name,
            _allowed(torch),
            _quiet(_DISTRIBUTED_LOGS),  # a DTensor's mesh, unpickled: refused below
        ):
            warnings.simplefilter("always")
            with stand_ins.keeping(keepable):
                value = torch.load(name, map_location="cpu", weights_only=True, mmap=mmap)
        for warning in caught:
            logger.info("%s: torch.load: %s", path, warning.message)
        tensors = list(_tensors_in(value))  # walked once, for both checks
        if any(_is_dtensor(type(tensor)) for tensor in tensors):
            # built where the caller's code imported torch.distributed.tensor (a model.py)
            raise InvalidModelError(f"{path}: refused: {_DTENSOR_SAID}")
        if mmap:
            _check_mapped(path, tensors)
        if kept is not None:
            kept.update(keepable)
        return value
    except InvalidModelError:
        raise
    except pickle.UnpicklingError as error:
        if _DTENSOR_REFUSED in str(error):
            raise InvalidModelError(f"{path}: refused: {_DTENSOR_SAID}; it was not run") from None
        # torch's advice to load with weights_only=False is not one a user here can take
        lines = [
            line.strip().removeprefix("Weights only load failed.").strip()
            for line in str(error).splitlines()
            if line.strip() and "weights_only" not in line
        ]
        detail = next(
            (line for line in lines if any(marker in line for marker in _DETAILS)),
            next(
                (line for line in reversed(lines) if line), "torch's weights-only loader refused it"
            ),
        ).rstrip(".")
        if kept is None:
            names = _unsafe_globals(path, zipped, torch)
        if refusal := _objects_refused(path, names, detail, kept is not None, offered):
            raise InvalidModelError(refusal) from None
        if any(marker in detail for marker in _REFUSALS):
            raise InvalidModelError(
                f"{path}: refused: loading it would run code or build objects other than "
                f"tensors ({detail}); it was not run"
            ) from None
        opcode = re.fullmatch(r"Unsupported operand (\d+)", detail)
        if opcode:  # another kind of file, random bytes, or a pickle protocol above 2
            detail = _other_kind(path) or (
                f"pickle opcode {opcode[1]} is not one torch's weights-only loader reads; "
                "torch.save writes pickle protocol 2"
            )
        raise InvalidModelError(
            f"{path}: not a readable torch.save file ({detail}); nothing in it was run"
        ) from None
    except Exception as error:
        if kept is not None and "Tensor subclass" in str(error):  # kept: no class to build
            dtensor = any(_DTENSOR_GLOBAL.fullmatch(name) for name in names or {})
            said = _DTENSOR_SAID if dtensor else _SUBCLASS_SAID
            raise InvalidModelError(f"{path}: refused: {said}; it was not run") from None
        kind = _other_kind(path)  # a zip with no pickle: torch's own words are of its reader
        raise InvalidModelError(
            f"{path}: not a readable torch.save file: {one_line(error, with_type=True)}"
            if kind is None
            else f"{path}: not a readable torch.save file ({kind})"
        ) from None


_SAFETENSORS = "it looks like a safetensors file: name it .safetensors to read it as one"


def _unsafe_globals(path: Path, zipped: bool, torch: Any) -> dict[str, Any] | None:
    """:func:`~wnpass.checkpoint.kept.unsafe_globals` of a zip-format file, the caller's allow
    list as the load has it (:func:`_allowed`); None for the legacy format, which torch lists
    no globals of."""
    from wnpass.checkpoint import kept

    if not zipped:
        return None
    with _allowed(torch):
        return kept.unsafe_globals(path)


def _objects_refused(
    path: Path, names: dict[str, Any] | None, detail: str, keeping: bool, offered: bool
) -> str | None:
    """Why a file naming globals the weights-only loader does not build was refused, in
    words of those globals (:mod:`wnpass.checkpoint.kept`): the ones it names where objects
    were not being kept (and whether keeping them would do); where they were, those that
    cannot be kept, or that objects are kept in zip-format files only. None where the
    refusal is of something else (``os.system``: what torch never allows)."""
    from wnpass.checkpoint import kept

    if names is None:  # the legacy format: torch lists no globals there
        if keeping and "GLOBAL" in detail:
            return (
                f"{path}: refused: loading it would run code or build objects other than "
                f"tensors ({detail}); it was not run; objects are kept in zip-format files "
                "only, which torch.save writes by default since PyTorch 1.6"
            )
        return None
    if not names or kept.blocked(names):
        return None
    reasons: dict[str, list[str]] = {}  # the globals not kept, by why
    for name, pair in names.items():
        if (why := kept.why_not_kept(name, pair)) is not None:
            reasons.setdefault(why, []).append(name)
    unkept = [name for group in reasons.values() for name in group]
    cannot = "; ".join(
        f"{listed(group, 5)} cannot be kept ({why})" for why, group in reasons.items()
    )
    if keeping:
        if unkept:
            return f"{path}: refused: {cannot}; it was not run"
        if filled := _FILLED.search(detail):
            return f"{path}: refused: {_filled(filled[1])}; it was not run"
        return None
    if "Unsupported global" not in detail:
        return None
    if offered and not unkept and (kept_says := _kept_trial(path)) is not None:
        return kept_says  # what keeping them would meet (t295, t296)
    if not offered:
        option = ""
    elif unkept:
        option = f" ({cannot})"
    else:
        option = " (give keep_objects=True, --keep-objects, to keep them as they are, never built)"
    return (
        f"{path}: refused: loading it would build objects of {listed(list(names), 5)}, which "
        f"runs their code; it was not run{option}"
    )


# torch's refusal to fill an object as a dict or a list, naming the kept stand-in
_FILLED = re.compile(r"Can only (?:SETITEMS?|append|extend).*<kept ([^>]+)>")


_FILLED_SAID = "is filled as a dict or a list"
# torch's refusal of a DTensor where torch.distributed.tensor is not imported, and its class's
# global (torch.distributed.tensor.DTensor; torch.distributed._tensor.api.DTensor before 2.4)
_DTENSOR_REFUSED = "must be imported to load DTensors"
_DTENSOR_GLOBAL = re.compile(r"torch\.distributed\.(?:[\w.]+\.)?DTensor")
_DTENSOR_SAID = (
    "it holds DTensors (a distributed model's or optimizer's state as each process holds it, "
    "FSDP2's or tensor parallelism's state_dict()), which only torch.distributed reads: save "
    "full state dicts instead (torch.distributed.checkpoint.state_dict's get_model_state_dict "
    "and get_optimizer_state_dict with StateDictOptions(full_state_dict=True, "
    "cpu_offload=True))"
)
_SUBCLASS_SAID = (
    "it holds a tensor of a subclass of torch.Tensor, which needs its class built: it cannot "
    "be kept unbuilt"
)


def _is_dtensor(kind: type) -> bool:
    """Whether ``kind`` is torch.distributed's DTensor class, by its global's name."""
    return bool(_DTENSOR_GLOBAL.fullmatch(f"{kind.__module__}.{kind.__qualname__}"))


def _filled(name: str) -> str:
    return f"{name} {_FILLED_SAID} (a subclass of one), which an object kept unbuilt cannot be"


def _kept_trial(path: Path) -> str | None:
    """What keeping a file's objects would meet, as the error to give instead of suggesting
    it: the file loaded with them kept (which runs nothing) holds one object at its top
    (HF Trainer's ``training_args.bin``), or no state dict, or an object filled as a dict
    (HiFi-GAN's ``AttrDict``). None where keeping them would do."""
    try:
        root = load_torch(path, set())
    except InvalidModelError as error:  # kept, the objects are refused too: that is why
        said = str(error)
        return said if _FILLED_SAID in said or _SUBCLASS_SAID in said else None
    if not isinstance(root, dict):
        return _not_a_state_dict(path, root)
    if root and not _torch_groups(root, 0):
        return f"{path}: {_NO_STATE_DICT}; {_NOT_LOOKED_INTO}"
    return None


_NO_STATE_DICT = "holds no state dict (no dict of named tensors)"
_NOT_LOOKED_INTO = "objects kept unbuilt are not looked into"


def _not_a_state_dict(path: Path, root: Any) -> str:
    """Why ``root``, a torch file's top object, is no state dict: what it is (a whole model,
    ``torch.save(model)``: said so, with what to save instead)."""
    state = getattr(root, "_state", None)  # a kept nn.Module's pickled __dict__
    whole = isinstance(state, dict) and {"_parameters", "_modules"} <= state.keys()
    model = " (a whole model, torch.save(model): save its state_dict())" if whole else ""
    if root is None:
        return f"{path}: holds None, not a state dict"
    name = type(root).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"{path}: holds {article} {name}{model}, not a state dict"


def _safetensors_like(path: Path) -> bool:
    """Whether ``path`` starts as a safetensors file does: its header's length (8 bytes, little
    endian, within the file), then ``{`` (t271, t273: under a torch name it was said as a
    pickle opcode or a raw error, as its first byte varies)."""
    try:
        with path.open("rb") as file:
            head = file.read(9)
        size = path.stat().st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:] == b"{" and int.from_bytes(head[:8], "little") <= size


def _other_kind(path: Path) -> str | None:
    """What ``path``, which is no pickle, looks like where its first bytes tell: a zip
    archive with no pickle record, which torch.save did not write (said as a pickle opcode,
    t271)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return None
    if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        return None  # torch's archive, its pickle damaged: the opcode says it
    return "a zip archive, but not one torch.save wrote (no data.pkl record)"


def _allowed(torch: Any) -> contextlib.AbstractContextManager[object]:
    """The classes besides tensors that ``torch.load(weights_only=True)`` builds here:
    ``argparse.Namespace``, the training options timm's ``train.py`` saves beside the state
    dicts (``args``), an attribute holder that runs no code (its values are loaded under the
    same rules). Added for the load only where the caller's allow list lacks it: torch takes
    what the scope added off the list at its end, also what was on it before (t265). torch
    before 2.5 has no scoped allow list: refused there, as before."""
    import argparse

    scoped = getattr(torch.serialization, "safe_globals", None)
    if scoped is None or argparse.Namespace in torch.serialization.get_safe_globals():
        return contextlib.nullcontext()
    return scoped([argparse.Namespace])


# torch's own logger of the DTensors a load builds where torch.distributed.tensor is imported
# (a warning that their mesh was unpickled before any process group: a second line on stderr)
_DISTRIBUTED_LOGS = "torch.distributed"


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Logger ``name``'s warnings left out for the block (its errors still said)."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        log.setLevel(level)


@contextlib.contextmanager
def _torch_name(path: Path) -> Iterator[str | Path]:
    """A name of ``path`` that torch can open: ``path``, or, where its name is no UTF-8
    (bytes that do not decode, which torch's mapping encodes as UTF-8 and fails on: a valid
    file was called unreadable, t210), the name of a descriptor open on it."""
    try:
        os.fspath(path).encode()
    except UnicodeEncodeError:
        pass
    else:
        yield path
        return
    if not os.path.isdir(_DESCRIPTORS):
        raise InvalidModelError(f"{path}: a name torch cannot open (it is no UTF-8); rename it")
    descriptor = os.open(path, os.O_RDONLY)
    try:
        yield f"{_DESCRIPTORS}/{descriptor}"
    finally:
        os.close(descriptor)


_DESCRIPTORS = "/proc/self/fd"  # Linux's names of a process's open files


def _check_mapped(path: Path, tensors: Iterable[Any]) -> None:
    """Every storage ``torch.load`` mapped from zip ``path`` (of ``tensors``, those the load
    gave) is exactly one of its records:
    mapped at a record's offset and as long as that record (``torch.load``'s own check without
    ``mmap``: "record size ... does not match expected size"). It maps each at its record's
    offset but as long as the pickle says, so a record cut short (or long) would read the
    bytes of the next. The storages are slices of one mapping of the whole file, so their
    addresses less the records' offsets give the mapping's one base address; a storage whose
    place and length are no record's is refused, and so is a compressed record (the bytes
    mapped would be its compressed ones)."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        records: dict[int, zipfile.ZipInfo] = {}
        listed = archive.infolist()
        storage_folder = listed[0].filename.split("/")[0] + "/data/"  # torch's archive name
        for info in listed:
            if not info.filename.startswith(storage_folder):
                continue
            raw.seek(info.header_offset + 26)  # a local header's name and extra lengths
            name_length, extra_length = struct.unpack("<HH", raw.read(4))
            records[info.header_offset + 30 + name_length + extra_length] = info
    storages = {}
    for tensor in tensors:
        for part in _dense_parts(tensor):
            storage = part.untyped_storage()
            if storage.nbytes():  # an empty one reads nothing
                storages[storage.data_ptr()] = storage.nbytes()
    if not storages:
        return
    # The lowest storage is some record's: most likely the first (torch.save writes one for
    # each storage it pickles), so that base is tried first, then the others, each given up
    # at its first storage that is no record: about one look per storage in all.
    lowest, first = min(storages), min(records, default=0)
    bases = [lowest - first, *(lowest - offset for offset in records if offset != first)]
    base = next((base for base in bases if _fits(records, storages, base)), None)
    if base is None:
        raise InvalidModelError(
            f"{path}: not a readable torch.save file: {_misfit(records, storages, bases[0])}"
        )
    for address in storages:
        if records[address - base].compress_type != zipfile.ZIP_STORED:
            name = records[address - base].filename
            raise InvalidModelError(
                f"{path}: not a readable torch.save file: storage record {name} is compressed "
                "(torch.save stores them as they are, to be mapped)"
            )


def _fits(records: dict[int, Any], storages: dict[int, int], base: int) -> bool:
    """Whether every storage (address: bytes) is exactly a record (offset: info) if the file
    is mapped at ``base``."""
    return all(
        (record := records.get(address - base)) is not None and record.file_size == nbytes
        for address, nbytes in storages.items()
    )


def _misfit(records: dict[int, Any], storages: dict[int, int], base: int) -> str:
    """Which record does not fit its storage, the file mapped at ``base``."""
    for address, nbytes in sorted(storages.items()):
        record = records.get(address - base)
        if record is not None and record.file_size != nbytes:
            return (
                f"storage record {record.filename} holds {record.file_size} bytes where its "
                f"tensors need {nbytes}"
            )
    return "a storage is mapped where no record of its size starts"


def _dense_parts(tensor: Any) -> list[Any]:
    """The strided tensors that hold ``tensor``'s values (a sparse one's indices and values);
    none for a meta tensor, which holds no values."""
    import torch

    if tensor.device.type == "meta":
        return []
    layout = tensor.layout
    if layout == torch.sparse_coo:
        return [tensor._indices(), tensor._values()]
    if layout in (torch.sparse_csr, torch.sparse_bsr):
        return [tensor.crow_indices(), tensor.col_indices(), tensor.values()]
    if layout in (torch.sparse_csc, torch.sparse_bsc):
        return [tensor.ccol_indices(), tensor.row_indices(), tensor.values()]
    return [tensor]


def _tensors_in(value: Any) -> Iterator[Any]:
    """Every tensor in a loaded object, through its containers (each container once)."""
    import torch

    stack: list[Any] = [value]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            yield item
        elif isinstance(item, _CONTAINERS) and id(item) not in seen:
            seen.add(id(item))
            if isinstance(item, dict):
                stack.extend(part for pair in item.items() for part in pair)
            else:
                stack.extend(item)


def _torch_info(key: str, tensor: Any, shard: int, group: Place) -> TensorInfo:
    return TensorInfo(
        key=key,
        shape=tuple(int(n) for n in tensor.shape),
        dtype=str(tensor.dtype).removeprefix("torch."),
        nbytes=int(tensor.numel()) * int(tensor.element_size()),
        shard=shard,
        group=group,
    )


def _torch_groups(root: Any, shard: int) -> list[Group]:
    """The state dicts of a torch file's object: each dict reached from ``root`` through dicts
    (by any key: a step number too), lists and tuples (an EMA's snapshots) that holds tensors,
    at any depth (the nesting is bounded by :data:`MAX_NESTING`, refused beyond it before this
    runs), depth first in order.

    Each dict is one state dict, at the first path it is reached by: a dict held under two
    names (``{"model": sd, "ema": sd}``, which ``torch.save`` writes once and ``torch.load``
    shares again) is folded once and written back once, still shared
    (:func:`wnpass.checkpoint.writing.write_file`), and dicts shared level after level are
    walked once each, not once per path (2 to the depth).
    """
    import torch

    groups: list[Group] = []
    seen: set[int] = set()

    def visit(value: Any, path: Place) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        if not isinstance(value, dict):  # a list or a tuple
            for position, item in enumerate(value):
                if isinstance(item, HOLDERS):
                    visit(item, (*path, position))
            return
        tensors = [
            _torch_info(key, item, shard, path)
            for key, item in value.items()
            if isinstance(key, str) and isinstance(item, torch.Tensor)
        ]
        if tensors:
            others = frozenset(
                key
                for key, item in value.items()
                if isinstance(key, str) and not isinstance(item, torch.Tensor)
            )
            groups.append(Group(path, tensors, others))
        for position, (key, item) in enumerate(value.items()):
            if isinstance(item, HOLDERS):
                visit(item, (*path, place_part(key, position)))

    if isinstance(root, dict):
        visit(root, ())
    return groups


def _walk(value: Any) -> tuple[int, bool]:
    """How deep containers nest in ``value`` (1: a dict of tensors), counted as ``torch.save``'s
    pickler recurses: depth first, in order, each container once (a shared or recursive one is
    written once, then referred to); stops counting past :data:`MAX_NESTING`. And whether a
    dict is reachable from inside itself (a cycle through a dict; a list holding itself is
    none): wnpass rewrites dicts by copying them, which would unroll the cycle."""
    deepest, cyclic = 0, False
    done: set[int] = set()
    path: list[Any] = []  # the containers being walked, outermost first
    on_path: dict[int, int] = {}  # id -> its place in path
    stack: list[tuple[Any, int, bool]] = [(value, 1, False)]  # (item, depth, leaving it)
    while stack and deepest <= MAX_NESTING and not cyclic:
        item, depth, leaving = stack.pop()
        if leaving:
            del on_path[id(path.pop())]
            done.add(id(item))
            continue
        if not isinstance(item, _CONTAINERS) or id(item) in done:
            continue
        if id(item) in on_path:  # back to a container on the path: a cycle through it
            cyclic = any(isinstance(part, dict) for part in path[on_path[id(item)] :])
            continue
        on_path[id(item)] = len(path)
        path.append(item)
        deepest = max(deepest, depth)
        children = (
            [part for pair in item.items() for part in pair] if isinstance(item, dict) else item
        )
        stack.append((item, depth, True))
        stack.extend((child, depth + 1, False) for child in reversed(list(children)))
    return deepest, cyclic


def _read_file(checkpoint: Checkpoint, shard: int) -> None:
    """Read file ``shard``'s header (safetensors) or object (torch): its keys and metadata."""
    path = checkpoint.files[shard]
    root = checkpoint.root(shard)
    if checkpoint.safetensors:
        checkpoint.shard_keys.append(list(root.keys()))
        checkpoint.metadata.append(root.metadata())
        return
    checkpoint.metadata.append(None)
    if not isinstance(root, dict):
        raise InvalidModelError(_not_a_state_dict(path, root))
    nesting, cyclic = _walk(root)
    if nesting > MAX_NESTING:
        raise InvalidModelError(
            f"{path}: holds containers nested more than {MAX_NESTING} deep, more than wnpass "
            "writes back (torch.save recurses once per level); refused"
        )
    if cyclic:
        raise InvalidModelError(
            f"{path}: holds a dict that contains itself (a cycle), which no state dict does; "
            "refused"
        )
    if any(tensor.is_nested for tensor in _tensors_in(root)):  # no one shape: none to read
        raise InvalidModelError(
            f"{path}: holds a nested tensor (torch.nested), which no state dict of a model "
            "holds and wnpass does not read; refused"
        )
    # an empty dict is the state dict of a model without parameters, as an empty
    # safetensors file is (t183)
    groups = _torch_groups(root, shard) if root else [Group((), [], frozenset())]
    if not groups:
        kept = f"; {_NOT_LOOKED_INTO}" if checkpoint.kept else ""
        raise InvalidModelError(f"{path}: {_NO_STATE_DICT}{kept}")
    if checkpoint.sharded:
        if len(groups) != 1 or groups[0].path != () or len(groups[0].tensors) != len(root):
            raise InvalidModelError(f"{path}: a shard must be a flat dict of named tensors")
        checkpoint.shard_keys.append([info.key for info in groups[0].tensors])
        checkpoint.groups.extend(groups)  # replaced by the index's order in _read_index
    else:
        checkpoint.shard_keys.append([])
        checkpoint.groups = groups


def _tensors_of_shard(checkpoint: Checkpoint, shard: int) -> list[TensorInfo]:
    """The tensors of safetensors file ``shard``, in the library's order."""
    entries = checkpoint.root(shard).entries
    return [
        TensorInfo(key, entry.shape, entry.dtype, entry.end - entry.begin, shard)
        for key in checkpoint.shard_keys[shard]
        for entry in (entries[key],)
    ]


def _shard_path(index: Path, name: Any, *, exists: bool = True) -> Path:
    """The file of shard ``name`` of ``index``, refused unless it is a plain file beside it
    (``exists=False``: unless its name is a file name beside it, where a file may be or not)."""
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or "\0" in name
        or "/" in name
        or "\\" in name
        or Path(name).name != name
    ):
        said = "which is not a file name"
        if isinstance(name, str) and ("/" in name or "\\" in name):  # ./model-00001-of-00002
            said = "a path: an index names each shard by its file name alone, beside it"
        raise InvalidModelError(f"{index}: names shard {name!r}, {said}; refused")
    if name == index.name:  # it said "header too large", reading the JSON as a shard (t167)
        raise InvalidModelError(f"{index}: names itself as a shard; refused")
    path = index.parent / name
    if not exists:
        return path
    # beside the index: in its folder, or where the index's own link leads (the Hugging Face
    # cache links each file of a snapshot to its blob, index and shards alike, t167)
    if _same_file(path, index):  # a symbolic or hard link to the index's own file (t169, t172)
        raise InvalidModelError(f"{index}: names itself as a shard ({name}); refused")
    home, found = Path(os.path.realpath(index)), Path(os.path.realpath(path))
    if found.parent not in {Path(os.path.realpath(index.parent)), home.parent}:
        raise InvalidModelError(
            f"{index}: shard {name} is a symbolic link leading out of the index's folder "
            "(and not where the index's own link leads); refused"
        )
    _require_file(path, f" (a shard named by {index.name})")
    return path


def _same_file(path: Path, other: Path) -> bool:
    """Whether ``path`` is ``other``'s file (a hard link too); False where either is not."""
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


def read_index(index_path: Path, *, exists: bool = True) -> tuple[dict[str, Any], list[str]]:
    """An index's JSON and the names of its shards in first-use order, each checked to be a
    plain file beside the index (none is opened; ``exists=False``: a file name beside it)."""
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InvalidModelError(f"{index_path}: not a readable index: {one_line(error)}") from None
    except RecursionError:  # json's decoder recurses once per level of nesting
        raise InvalidModelError(
            f"{index_path}: not a readable index: its JSON is nested too deeply"
        ) from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(k, str) for k in weight_map):
        raise InvalidModelError(f"{index_path}: not an index (no weight_map of names to shards)")
    names: dict[str, None] = {}  # in first-use order, each looked up in constant time (t156)
    for name in weight_map.values():
        if not isinstance(name, str) or name not in names:
            _shard_path(index_path, name, exists=exists)  # refuses what is not a file name
            names[name] = None
    return index, list(names)


def shard_files(index_path: Path, *, exists: bool = True) -> list[Path]:
    """The shard files an index names, in first-use order: the index is read and each name
    checked to be a plain file beside it (:func:`read_index`; ``exists=False``: a file name
    beside it, as an older output's shards, one of them missing or a link); no shard is
    opened."""
    _require_file(index_path)
    _, names = read_index(index_path, exists=exists)
    return [index_path.parent / name for name in names]


def _read_index(checkpoint: Checkpoint) -> None:
    index_path = checkpoint.path
    checkpoint.reading(index_path)
    index, names = read_index(index_path)  # every shard checked before anything is opened
    checkpoint.require_same(index_path)
    weight_map = index["weight_map"]
    checkpoint.index = index
    checkpoint.shard_names = names
    checkpoint.files = [index_path.parent / name for name in names]
    by_key: dict[str, TensorInfo] = {}
    for shard, name in enumerate(names):
        _read_file(checkpoint, shard)
        infos = (
            _tensors_of_shard(checkpoint, shard)
            if checkpoint.safetensors
            else checkpoint.groups[-1].tensors
        )
        for info in infos:
            if weight_map.get(info.key) != name:
                where = weight_map.get(info.key)
                said = f"assigns it to {where}" if where else "does not list it"
                raise InvalidModelError(
                    f"{index_path}: shard {name} holds {info.key}, but the index {said}; refused"
                )
            by_key[info.key] = info
        checkpoint.release(shard)
    missing = [key for key in weight_map if key not in by_key]
    if missing:
        raise InvalidModelError(
            f"{index_path}: {len(missing)} tensor(s) it lists are not in their shard "
            f"({missing[0]} in {weight_map[missing[0]]}); refused"
        )
    checkpoint.groups = [Group((), [by_key[key] for key in weight_map])]
