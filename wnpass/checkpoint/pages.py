"""Give back the memory-mapped pages of input tensors that are no longer needed (Linux).

A memory-mapped checkpoint's pages count in the process's resident memory once read, until
the file is unmapped. After a pair has been checked or folded, its ``g`` and ``v`` are not
read again: :func:`release` tells the kernel (``madvise(MADV_DONTNEED)``) to drop their pages,
which it reads back from the file if they are ever touched again. This is done only for whole
pages inside the tensor's bytes that lie in a mapping of one of the input files (checked in
``/proc/self/maps``): file pages this process never writes, so dropping them changes no value.
Anywhere else (another OS, memory not mapped from an input file) it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["identities", "release"]

logger = logging.getLogger(__name__)

_MADV_DONTNEED = 4
_PAGE = mmap.PAGESIZE


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc() if sys.platform.startswith("linux") else None


def _file_mapping(start: int, end: int, identities: set[tuple[int, int]]) -> bool:
    """Whether [start, end) lies in one mapping of a file with one of ``identities``
    ((device, inode))."""
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) < 6:
                    continue
                low, _, high = fields[0].partition("-")
                if not int(low, 16) <= start or not end <= int(high, 16):
                    continue
                major, _, minor = fields[3].partition(":")
                device = os.makedev(int(major, 16), int(minor, 16))
                return (device, int(fields[4])) in identities
    except (OSError, ValueError):
        return False
    return False


def identities(files: Iterable[Path]) -> set[tuple[int, int]]:
    """(device, inode) of the input files."""
    result = set()
    for path in files:
        try:
            st = os.stat(path)
        except OSError:
            continue
        result.add((st.st_dev, st.st_ino))
    return result


def _span(tensor: Any) -> tuple[int, int] | None:
    """(address, bytes) of a numpy array or a dense CPU torch tensor; None for other memory
    (a sparse or quantized tensor, one on the meta device or a GPU: no one span of values)."""
    if isinstance(tensor, np.ndarray):
        return (int(tensor.ctypes.data), int(tensor.nbytes)) if tensor.flags.c_contiguous else None
    import torch  # a torch tensor: torch is imported already

    if tensor.device.type != "cpu" or tensor.layout != torch.strided or tensor.is_quantized:
        return None
    return int(tensor.data_ptr()), int(tensor.numel()) * int(tensor.element_size())


def release(tensors: Iterable[Any], files: set[tuple[int, int]]) -> int:
    """Drop the pages of ``tensors`` (numpy arrays or torch tensors) mapped from ``files``;
    returns the bytes released."""
    if _LIBC is None or not files:
        return 0
    released = 0
    for tensor in tensors:
        span = _span(tensor)
        if span is None or span[1] < _PAGE:
            continue
        address, nbytes = span
        start = -(-address // _PAGE) * _PAGE  # whole pages inside it only
        end = (address + nbytes) // _PAGE * _PAGE
        if end <= start or not _file_mapping(start, end, files):
            continue
        if _LIBC.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED):
            logger.debug("madvise failed: errno %d", ctypes.get_errno())
            continue
        released += end - start
    return released
