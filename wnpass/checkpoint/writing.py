"""Write a rewritten checkpoint in its input's format, a file (a shard) at a time.

A rewrite is an :class:`Action` per input key (copy, fold, rename, drop). Each output file is
written from its input file: its tensors in the input file's order, a folded weight where the
first key of its pair was, every other tensor the input's own (memory-mapped) tensor, so its
bytes are unchanged. safetensors files are written by
:func:`wnpass.checkpoint.tensorfile.write` from numpy (metadata kept, torch not imported);
torch files and shards with ``torch.save`` (wrappers, non-tensor entries, an ``OrderedDict``'s
type and ``_metadata`` kept; the zip format). A
sharded checkpoint is written shard by shard, each input shard's handle released before the
next: memory stays near the largest shard. Files are written into a staging folder;
publishing them is the caller's (:class:`~wnpass.plan.IOPlan`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

from wnpass.arguments import whole
from wnpass.checkpoint.kept import UNSET, Kept
from wnpass.checkpoint.pairs import Pair
from wnpass.checkpoint.reading import Checkpoint, Group, Place, TensorInfo, at_place, place_part
from wnpass.checkpoint.tensorfile import DTYPE_CODES, write
from wnpass.errors import OutputError, one_line

__all__ = ["Action", "Rewrite", "torch_save", "write_file", "write_index"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Action:
    """What becomes of one input key: ``copy`` (same key), ``rename`` (same tensor, new key),
    ``fold`` (the pair's weight under ``key``), ``drop`` (the other half of a folded pair)."""

    kind: Literal["copy", "rename", "fold", "drop"]
    key: str  # the output key (unused for drop)
    pair: Pair | None = None


# (group path, input key) -> Action; keys not in it are copied
Rewrite = dict[tuple[Place, str], Action]
Folder = Callable[[Pair], Any]  # computes a pair's folded tensor


def _entries(
    rewrite: Rewrite, group: Place, infos: list[TensorInfo], fold: Folder
) -> list[tuple[str, TensorInfo, Any]]:
    """(output key, input tensor, its folded weight or None: the input's own) for ``infos``
    of one file, in their order."""
    entries = []
    written: set[object] = set()
    for info in infos:
        action = rewrite.get((group, info.key), Action("copy", info.key))
        if action.kind == "drop":
            continue
        _claim(written, action.key)
        folded = fold(action.pair) if action.pair is not None and action.kind == "fold" else None
        entries.append((action.key, info, folded))
    return entries


def _claim(written: set[object], key: object) -> None:
    """Note output key ``key``; a second entry under it would silently replace the first
    (pairs whose output key is taken are declined before: this is a bug of wnpass's)."""
    if key in written:
        raise AssertionError(f"two entries would be written under {key!r}")
    written.add(key)


def write_file(
    checkpoint: Checkpoint,
    shard: int,
    rewrite: Rewrite,
    fold: Folder,
    target: Path,
    label: Path | None = None,
    parameter: str = "output",
) -> list[tuple[str, int]]:
    """Write input file ``shard`` rewritten to ``target`` (a staging path; ``label``: the
    output it becomes, and ``parameter`` what it is, for messages); returns (key, nbytes)
    written."""
    where = _Label(label or target, parameter)
    if checkpoint.safetensors:
        by_key = {info.key: info for info in checkpoint.tensors() if info.shard == shard}
        infos = [by_key[key] for key in checkpoint.shard_keys[shard]]
        entries = _entries(rewrite, (), infos, fold)
        return _write_safetensors(checkpoint, shard, entries, target, where)
    # a torch file, or a torch shard (a flat dict of tensors): its object rebuilt, so its type
    # (an OrderedDict) and _metadata stay as they were
    written: list[tuple[str, int]] = []
    groups = {group.path: group for group in checkpoint.groups}
    root = checkpoint.root(shard)
    rebuild = _Rebuild(groups, rewrite, fold, written, root)
    obj = rebuild(root, ())
    _torch_save(obj, target, where, kept=bool(checkpoint.kept))
    return written


@dataclasses.dataclass(frozen=True)
class _Label:
    """An output as messages name it: its path, and the parameter it is (``output``, or an
    output shard, whose name is derived from it)."""

    path: Path
    parameter: str


def _write_safetensors(
    checkpoint: Checkpoint,
    shard: int,
    entries: list[tuple[str, TensorInfo, Any]],
    target: Path,
    label: _Label,
) -> list[tuple[str, int]]:
    """Safetensors file ``shard`` rewritten: the input's tensors as their bytes, each folded
    weight (a numpy array) with its dtype's code."""
    stored = checkpoint.root(shard)
    tensors = []
    for key, info, folded in entries:
        if folded is None:
            entry = stored.entries[info.key]
            tensors.append((key, entry.code, entry.shape, stored.raw(info.key)))
        else:
            tensors.append((key, DTYPE_CODES[folded.dtype.name], folded.shape, folded))
    with _written(label):
        write(target, tensors, checkpoint.metadata[shard])
    return [(key, data.nbytes) for key, _, _, data in tensors]


def _torch_save(obj: Any, target: Path, label: _Label, *, kept: bool = False) -> None:
    """:func:`torch_save` with a failure as one :class:`OutputError` line naming ``label``."""
    with _written(label):
        torch_save(obj, target, kept=kept)


def torch_save(obj: Any, target: Path, *, kept: bool = False) -> None:
    """``torch.save`` of ``obj`` to ``target`` (a new file) through a file this module opened
    and writes: an OS error of a write (a full disk, a file size limit) is raised as itself,
    where torch's own file writer reports only that its position is off ("unexpected pos
    ..."). Every ``torch.save`` of wnpass goes through here. Torch is given a stream, not a
    path, so the archive's inner name does not depend on the (staging) file's name.
    ``kept``: ``obj`` holds objects kept unbuilt, written back as the globals they stand for
    (:data:`wnpass.checkpoint.kept.PICKLER`)."""
    import torch

    from wnpass.checkpoint.kept import PICKLER

    pickler: Any = PICKLER if kept else pickle
    with open(target, "wb") as stream:
        sink = _Sink(stream)
        try:  # torch writes and flushes it, nothing else
            torch.save(obj, cast(BinaryIO, sink), pickle_module=pickler)
        except Exception:
            if sink.error is not None:
                raise sink.error from None
            raise


class _Sink:
    """A binary file for ``torch.save`` that remembers the first OS error of a write (torch
    turns it into a RuntimeError of its own)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.stream.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def _written(label: _Label) -> Iterator[None]:
    """A failure to write output ``label`` as one :class:`OutputError` line: the OS's reason
    (a full disk, a file size limit), or the library's."""
    try:
        yield
    except OSError as error:
        raise OutputError(
            f"{label.path}: cannot write ({error.strerror or error})", parameter=label.parameter
        ) from None
    except Exception as error:
        raise OutputError(
            f"{label.path}: cannot write: {one_line(error)}", parameter=label.parameter
        ) from None


def _nbytes(tensor: Any) -> int:
    return int(tensor.numel()) * int(tensor.element_size())


class _Rebuild:
    """A torch file's object with its state dicts rewritten, everything else kept as it is.

    A dict is rebuilt (its type, an ``OrderedDict``, and its ``_metadata`` kept); a list or a
    tuple too, but it stays the input's own object when none of its items changed (a
    ``torch.Size``, a list of numbers). ``done``: what was rebuilt so far, by the input
    container's id: one reached again by another path (a state dict held in a dict and in a
    list) is the one already rebuilt, so it stays shared and is rewritten once, as the state
    dict found at its first path (``reading._torch_groups`` walks in the same order). A list
    is registered before its items are rebuilt, so one that holds itself is rebuilt once (a
    dict cannot: refused when read).
    """

    def __init__(
        self,
        groups: dict[Place, Group],
        rewrite: Rewrite,
        fold: Folder,
        written: list[tuple[str, int]],
        root: Any = None,
    ) -> None:
        self.groups, self.rewrite = groups, rewrite
        # each state dict by identity, at its place: one a kept object holds, reached there
        # first (``{"ema": Holder(sd), "state_dict": sd}``), is rewritten as at its place
        # (t296: it was copied unfolded, and the fold's own place then got that copy)
        self.places = (
            {id(at_place(root, path)): path for path in groups} if root is not None else {}
        )
        self.fold, self.written = fold, written
        self.done: dict[int, Any] = {}
        # a folded weight -> the Parameter written for it (the weight kept alive with it)
        self.parameters: dict[int, tuple[Any, Any]] = {}

    def __call__(self, value: Any, path: Place) -> Any:
        if id(value) in self.done:
            return self.done[id(value)]
        if isinstance(value, dict):
            return self._dict(value, self.places.get(id(value), path))
        if isinstance(value, list | tuple):
            return self._sequence(value, path)
        if isinstance(value, Kept):
            return self._kept(value, path)
        return value

    def _as_held(self, weight: Any, state: dict[Any, Any], pair: Pair) -> Any:
        """A folded weight as the state dict held its ``v``: an ``nn.Parameter`` where ``v`` was
        one (a dict of ``named_parameters()``: the weight came back a plain tensor beside a
        Parameter bias, t292), with its ``requires_grad``; the same object wherever the same
        weight is written (a pair under two names stays one)."""
        import torch

        v = state.get(pair.v.key) if pair.v is not None else None
        if not isinstance(v, torch.nn.Parameter) or isinstance(weight, torch.nn.Parameter):
            return weight
        if id(weight) not in self.parameters:
            self.parameters[id(weight)] = (weight, torch.nn.Parameter(weight, v.requires_grad))
        return self.parameters[id(weight)][1]

    def _kept(self, value: Kept, path: Place) -> Kept:
        """An object kept unbuilt (:mod:`wnpass.checkpoint.kept`), with what it is built from
        rebuilt: a state dict it holds that is also found elsewhere (``Holder(sd=sd)`` beside
        ``sd``) is the one rebuilt there, still shared. Rewritten in place (the object is this
        load's own), after it is registered: an object reached again inside it (an
        omegaconf node's ``_parent``) is it."""
        self.done[id(value)] = value
        kind, args = value._made
        rebuilt = tuple(self(arg, (*path, position)) for position, arg in enumerate(args))
        object.__setattr__(value, "_made", (kind, rebuilt))
        if value._state is not UNSET:
            object.__setattr__(value, "_state", self(value._state, (*path, len(args))))
        return value

    def _dict(self, value: dict[Any, Any], path: Place) -> Any:
        group = self.groups.get(path)
        infos = {info.key for info in group.tensors} if group is not None else set()
        try:
            out = type(value)()
        except TypeError:
            out = {}
        keys: set[object] = set()
        for position, (key, item) in enumerate(value.items()):
            if isinstance(key, str) and key in infos:
                action = self.rewrite.get((path, key), Action("copy", key))
                if action.kind == "drop":
                    continue
                if action.kind == "fold" and action.pair is not None:
                    item = self._as_held(self.fold(action.pair), value, action.pair)
                _claim(keys, action.key)
                out[action.key] = item
                self.written.append((action.key, _nbytes(item)))
                continue
            _claim(keys, key)
            out[key] = self(item, (*path, place_part(key, position)))
        if hasattr(value, "_metadata"):
            out._metadata = copy.copy(value._metadata)  # type: ignore[attr-defined]
        self.done[id(value)] = out
        return out

    def _sequence(self, value: list[Any] | tuple[Any, ...], path: Place) -> Any:
        if isinstance(value, list):
            out: list[Any] = copy.copy(value)  # its type and attributes; items replaced below
            self.done[id(value)] = out
            out[:] = [self(item, (*path, position)) for position, item in enumerate(value)]
        else:
            out = [self(item, (*path, position)) for position, item in enumerate(value)]
        if all(new is old for new, old in zip(out, value, strict=True)):
            self.done[id(value)] = value
            return value
        if isinstance(value, tuple):
            rebuilt = type(value)(*out) if hasattr(value, "_fields") else type(value)(out)
            self.done[id(value)] = rebuilt
            return rebuilt
        return out


def write_index(
    index: dict[str, Any],
    weight_map: dict[str, str],
    target: Path,
    *,
    written_bytes: int,
    gain_bytes: int,
    gain_elements: int,
) -> None:
    """Write a sharded checkpoint's index: the input's, with the new weight map and its counts
    less what folding took away (each folded weight has its v's elements and bytes).

    ``metadata.total_size``: the input's less ``gain_bytes``, the bytes of the gains folded
    away, so that it stays counted as the input counted it (huggingface_hub counts a tied
    tensor's storage once: a sum over the keys would change it where no byte changed); where
    the input has none, or one that is no count of bytes (not an int, or below the bytes
    taken away), the bytes of the tensors written, ``written_bytes``. transformers'
    ``total_parameters``, where given, less ``gain_elements``; one below that is no count of
    these tensors, and is left as it was (it went negative, t142)."""
    out = {key: value for key, value in index.items() if key != "weight_map"}
    metadata = dict(out["metadata"]) if isinstance(out.get("metadata"), dict) else {}
    size = whole(metadata.get("total_size"))
    if size is not None and size >= gain_bytes:
        metadata["total_size"] = size - gain_bytes
    else:
        metadata["total_size"] = written_bytes
    counted = whole(metadata.get("total_parameters"))
    if counted is not None and counted >= gain_elements:
        metadata["total_parameters"] = counted - gain_elements
    out["metadata"] = metadata
    out["weight_map"] = weight_map
    target.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
