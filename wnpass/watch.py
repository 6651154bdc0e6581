"""The kernel's record of which files are opened: inotify, on Linux.

Python's ``open`` audit events (:mod:`wnpass.plan`) see the files that Python code opens, not
those that native code opens: safetensors reads its file in Rust, ``torch.from_file`` and
``torch.load(mmap=True)`` in C++, and a subprocess is another program. An :class:`OpenWatch`
asks the kernel to report every open (and read) of a few given files, by any code of any
process, whatever the language; :meth:`OpenWatch.opened` says which of them were opened since
it was last asked. Where inotify is missing (not Linux) or refused (the limits on instances or
watches are reached), :meth:`OpenWatch.start` returns None and a watch that cannot be added is
skipped: the caller is left with the audit events alone.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
from pathlib import Path
from typing import Any

__all__ = ["OpenWatch"]

_IN_ACCESS = 0x00000001  # read (a file opened before the watch, or another process's)
_IN_OPEN = 0x00000020
_IN_Q_OVERFLOW = 0x00004000  # events were lost: the queue was full
_IN_IGNORED = 0x00008000  # a watch is gone (its file deleted, or the watch removed)
_IN_DONT_FOLLOW = 0x02000000  # a symbolic link is watched itself, not what it points at
_MASK = _IN_OPEN | _IN_ACCESS | _IN_DONT_FOLLOW
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then ``len`` bytes of name
_READ_BYTES = 64 * 1024


def _libc() -> Any:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    return libc


class OpenWatch:
    """An inotify instance watching files for opens; :meth:`close` it when done."""

    def __init__(self, fd: int, libc: Any) -> None:
        self._fd: int | None = fd
        self._libc = libc
        self._paths: dict[int, set[Path]] = {}  # watch descriptor: the paths watched through it

    @classmethod
    def start(cls) -> OpenWatch | None:
        """A new watch, or None where the kernel offers none."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            libc = _libc()
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):  # no libc to load, or no inotify in it
            return None
        if fd < 0:  # EMFILE: the limit on inotify instances (or on files) is reached
            return None
        return cls(fd, libc)

    def add(self, path: Path) -> bool:
        """Watch ``path`` (a symbolic link itself); whether it is watched (it may be gone, or
        the limit on watches reached)."""
        if self._fd is None:
            return False
        try:
            name = os.fsencode(path)
        except (TypeError, ValueError):
            return False
        if b"\0" in name:
            return False
        wd = self._libc.inotify_add_watch(self._fd, name, _MASK)
        if wd < 0:
            return False
        self._paths.setdefault(wd, set()).add(path)
        return True

    def opened(self) -> set[Path]:
        """The watched paths opened or read since the last call. When the kernel lost events
        (its queue overflowed), every watched path counts as opened: none may be missed."""
        found: set[Path] = set()
        if self._fd is None:
            return found
        while True:
            try:
                data = os.read(self._fd, _READ_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if not data:
                break
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _, size = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size + size
                if mask & _IN_Q_OVERFLOW:
                    found.update(p for paths in self._paths.values() for p in paths)
                elif mask & (_IN_OPEN | _IN_ACCESS):
                    found.update(self._paths.get(wd, ()))
                if mask & _IN_IGNORED:
                    self._paths.pop(wd, None)
        return found

    def close(self) -> None:
        """Stop watching (closes the inotify descriptor); may be called again."""
        fd, self._fd = self._fd, None
        self._paths.clear()
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
