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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

from wnpass.checkpoint.pairs import Pair
from wnpass.checkpoint.reading import Checkpoint, Group, TensorInfo
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
Rewrite = dict[tuple[tuple[str, ...], str], Action]
Folder = Callable[[Pair], Any]  # computes a pair's folded tensor


def _entries(
    rewrite: Rewrite, group: tuple[str, ...], infos: list[TensorInfo], fold: Folder
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
) -> list[tuple[str, int]]:
    """Write input file ``shard`` rewritten to ``target`` (a staging path; ``label``: the
    output it becomes, for messages); returns (key, nbytes) written."""
    label = label or target
    if checkpoint.safetensors:
        by_key = {info.key: info for info in checkpoint.tensors() if info.shard == shard}
        infos = [by_key[key] for key in checkpoint.shard_keys[shard]]
        entries = _entries(rewrite, (), infos, fold)
        return _write_safetensors(checkpoint, shard, entries, target, label)
    # a torch file, or a torch shard (a flat dict of tensors): its object rebuilt, so its type
    # (an OrderedDict) and _metadata stay as they were
    written: list[tuple[str, int]] = []
    groups = {group.path: group for group in checkpoint.groups}
    obj = _rebuild(checkpoint.root(shard), (), groups, rewrite, fold, written, {})
    _torch_save(obj, target, label)
    return written


def _write_safetensors(
    checkpoint: Checkpoint,
    shard: int,
    entries: list[tuple[str, TensorInfo, Any]],
    target: Path,
    label: Path,
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


def _torch_save(obj: Any, target: Path, label: Path) -> None:
    """:func:`torch_save` with a failure as one :class:`OutputError` line naming ``label``."""
    with _written(label):
        torch_save(obj, target)


def torch_save(obj: Any, target: Path) -> None:
    """``torch.save`` of ``obj`` to ``target`` (a new file) through a file this module opened
    and writes: an OS error of a write (a full disk, a file size limit) is raised as itself,
    where torch's own file writer reports only that its position is off ("unexpected pos
    ..."). Every ``torch.save`` of wnpass goes through here. Torch is given a stream, not a
    path, so the archive's inner name does not depend on the (staging) file's name."""
    import torch

    with open(target, "wb") as stream:
        sink = _Sink(stream)
        try:
            torch.save(obj, cast(BinaryIO, sink))  # torch writes and flushes it, nothing else
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
def _written(label: Path) -> Iterator[None]:
    """A failure to write output ``label`` as one :class:`OutputError` line: the OS's reason
    (a full disk, a file size limit), or the library's."""
    try:
        yield
    except OSError as error:
        raise OutputError(
            f"{label}: cannot write ({error.strerror or error})", parameter="output"
        ) from None
    except Exception as error:
        raise OutputError(f"{label}: cannot write: {one_line(error)}", parameter="output") from None


def _nbytes(tensor: Any) -> int:
    return int(tensor.numel()) * int(tensor.element_size())


def _rebuild(
    value: Any,
    path: tuple[str, ...],
    groups: dict[tuple[str, ...], Group],
    rewrite: Rewrite,
    fold: Folder,
    written: list[tuple[str, int]],
    done: dict[int, Any],
) -> Any:
    """A torch file's object with its state dicts rewritten, everything else kept as it is.
    ``done``: the dicts rebuilt so far, by the input dict's id: a dict reached again by another
    path is the one already rebuilt, so it stays shared and is rewritten once, as the state
    dict found at its first path (``reading._torch_groups`` walks in the same order)."""
    if not isinstance(value, dict):
        return value
    if id(value) in done:
        return done[id(value)]
    group = groups.get(path)
    infos = {info.key for info in group.tensors} if group is not None else set()
    try:
        out = type(value)()
    except TypeError:
        out = {}
    keys: set[object] = set()
    for key, item in value.items():
        if isinstance(key, str) and key in infos:
            action = rewrite.get((path, key), Action("copy", key))
            if action.kind == "drop":
                continue
            if action.kind == "fold" and action.pair is not None:
                item = fold(action.pair)
            _claim(keys, action.key)
            out[action.key] = item
            written.append((action.key, _nbytes(item)))
            continue
        _claim(keys, key)
        if isinstance(key, str) and isinstance(item, dict):
            out[key] = _rebuild(item, (*path, key), groups, rewrite, fold, written, done)
        else:
            out[key] = item
    if hasattr(value, "_metadata"):
        out._metadata = copy.copy(value._metadata)  # type: ignore[attr-defined]
    done[id(value)] = out
    return out


def write_index(
    index: dict[str, Any], weight_map: dict[str, str], total: int, target: Path
) -> None:
    """Write a sharded checkpoint's index: the input's, with the new weight map and size."""
    out = {key: value for key, value in index.items() if key != "weight_map"}
    metadata = out.get("metadata")
    if isinstance(metadata, dict):
        out["metadata"] = {**metadata, "total_size": total}
    else:
        out["metadata"] = {"total_size": total}
    out["weight_map"] = weight_map
    target.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
