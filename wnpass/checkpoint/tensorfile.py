"""safetensors files as numpy arrays, without torch: read memory-mapped, written streaming.

Reading: the safetensors library opens the file first (``safe_open``), so a file is accepted
exactly when the library accepts it (header size, JSON, dtypes, offsets that tile the data).
The header is then read here for each tensor's offsets, and a tensor is a numpy view of the
memory-mapped file: nothing is copied, and pages are read when touched. The mapping is
private (copy-on-write): the file cannot change through it, and a view can go to torch
without a copy (:meth:`SafetensorsFile.torch`).

Writing (:func:`write`): the header (``__metadata__`` first, then the tensors; JSON in UTF-8,
names and metadata not escaped beyond what JSON needs, as the library writes them) padded with
spaces to a multiple of 8 bytes, as the library pads it, then each tensor's bytes straight
from its array. Tensors are laid out as the library lays them out: widest dtype first, so that
each starts at a multiple of its width, which readers that map the file rely on, and by name
within a width, whatever order they are given in: a folded or renamed key goes where its own
name puts it. (The library also orders the dtypes of one width among themselves, bfloat16
before float16 and int64 before float64, then by name; a file holding two dtypes of one width
is therefore ordered otherwise than the library's, every tensor as aligned.) The order is a
sort of the entries, not of their data: the arrays are written one at a time, as they are
given.
"""

from __future__ import annotations

import dataclasses
import json
import mmap
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from wnpass.rounding import ML_DTYPES, to_torch

__all__ = ["DTYPE_CODES", "DTYPE_NAMES", "METADATA_KEY", "Entry", "SafetensorsFile", "write"]

# The header entry safetensors keeps for the file's metadata: no tensor may have its key.
METADATA_KEY = "__metadata__"

# safetensors' dtype codes, and the name torch (and numpy or ml_dtypes) gives each
DTYPE_NAMES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}
DTYPE_CODES = {name: code for code, name in DTYPE_NAMES.items()}
_NUMPY = {
    code: np.dtype(getattr(ml_dtypes, name) if name in ML_DTYPES else name)
    for code, name in DTYPE_NAMES.items()
}


# bits per element of every dtype code the safetensors library knows (its own sizes), numpy
# readable or not: a tensor's place in a written file follows its width, whatever its dtype
_BITS = {
    **{code: 64 for code in ("F64", "I64", "U64", "C64")},
    **{code: 32 for code in ("F32", "I32", "U32")},
    **{code: 16 for code in ("F16", "BF16", "I16", "U16")},
    **{code: 8 for code in ("I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "F8_E8M0")},
    **{code: 8 for code in ("F8_E4M3FNUZ", "F8_E5M2FNUZ")},
    **{code: 6 for code in ("F6_E2M3", "F6_E3M2")},
    "F4": 4,
}


def _width(code: str) -> int | None:
    """Bytes per element of a dtype code; None for a code of less than a byte (packed) or not
    in the table."""
    bits = _BITS.get(code)
    return bits // 8 if bits is not None and bits % 8 == 0 else None


@dataclasses.dataclass(frozen=True)
class Entry:
    """One tensor in the header: its dtype code, shape and byte range in the data."""

    code: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def dtype(self) -> str:
        """The dtype as torch names it (``bfloat16``); an unknown code, lower-cased."""
        return DTYPE_NAMES.get(self.code, self.code.lower())


class SafetensorsFile:
    """An opened safetensors file: :meth:`keys`, :meth:`metadata`, :attr:`entries`, and each
    tensor as a numpy view (:meth:`array`, :meth:`raw`)."""

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as handle:  # the library's validation
            self._keys = list(handle.keys())
            metadata = handle.metadata()
        with open(path, "rb") as stream:
            self._map = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_COPY)
        (size,) = struct.unpack("<Q", self._map[:8])
        header = json.loads(bytes(self._map[8 : 8 + size]))
        self._start = 8 + size
        # the metadata in the file's order: the library gives it in its hash order, which
        # changes from process to process (and an output written in it would too)
        self._metadata: dict[str, str] | None = header.get(METADATA_KEY)
        if (self._metadata or None) != (metadata or None):
            raise ValueError("the header's metadata is not what the library read (changed?)")
        self.entries = {
            key: Entry(value["dtype"], tuple(map(int, value["shape"])), *value["data_offsets"])
            for key, value in header.items()
            if key != METADATA_KEY
        }
        # the library checked all this; the file may have changed since (another process)
        for key, entry in self.entries.items():
            width = _width(entry.code)
            count = int(np.prod(entry.shape, dtype=np.int64))
            if not 0 <= entry.begin <= entry.end <= len(self._map) - self._start or (
                width is not None and count * width != entry.end - entry.begin
            ):
                raise ValueError(f"the header does not match the data at {key} (changed?)")

    def keys(self) -> list[str]:
        """The tensor names, in the library's order."""
        return self._keys

    def metadata(self) -> dict[str, str] | None:
        """The header's ``__metadata__``, in the file's order."""
        return self._metadata

    def raw(self, key: str, *, writeable: bool = False) -> np.ndarray:
        """The bytes of tensor ``key``, a view of the mapping (read-only unless asked)."""
        entry = self.entries[key]
        view = np.frombuffer(
            self._map, np.uint8, entry.end - entry.begin, self._start + entry.begin
        )
        view.flags.writeable = writeable
        return view

    def array(self, key: str, *, writeable: bool = False) -> np.ndarray:
        """Tensor ``key`` as a numpy view of its dtype and shape (read-only unless asked);
        a dtype numpy cannot hold is a ``TypeError``."""
        entry = self.entries[key]
        if entry.code not in _NUMPY:
            raise TypeError(f"{key}: numpy holds no {entry.code} tensors")
        return self.raw(key, writeable=writeable).view(_NUMPY[entry.code]).reshape(entry.shape)

    def torch(self, key: str) -> Any:
        """Tensor ``key`` as a torch tensor over the same (copy-on-write) pages."""
        return to_torch(self.array(key, writeable=True))


def write(
    target: Path,
    tensors: Sequence[tuple[str, str, tuple[int, ...], np.ndarray]],
    metadata: dict[str, str] | None,
) -> None:
    """Write ``tensors`` (key, dtype code, shape, array holding the bytes) to ``target``; a
    tensor keyed :data:`METADATA_KEY` is an error of the caller's (it would replace the
    metadata, and the library could not open the file)."""
    if any(key == METADATA_KEY for key, _, _, _ in tensors):
        raise ValueError(f"a tensor keyed {METADATA_KEY} cannot be written to a safetensors file")
    order = sorted(tensors, key=lambda item: (-(_width(item[1]) or 1), item[0]))
    header: dict[str, Any] = {} if metadata is None else {METADATA_KEY: metadata}
    offset = 0
    for key, code, shape, data in order:
        header[key] = {
            "dtype": code,
            "shape": list(shape),
            "data_offsets": [offset, offset + data.nbytes],
        }
        offset += data.nbytes
    # as the library (serde_json) writes it: UTF-8 as it is, only '"', '\\' and control
    # characters escaped (ensure_ascii would escape é as \u00e9: another header, as valid)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(target, "wb") as stream:
        stream.write(struct.pack("<Q", len(text)))
        stream.write(text)
        for _, _, _, data in order:
            stream.write(np.ascontiguousarray(data).reshape(-1).view(np.uint8).data)
