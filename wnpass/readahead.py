"""Read a file in a background thread while the process imports what it needs.

A fold starts by importing onnx, onnx-ir and numpy: about 0.2 s in which the disk is idle.
:func:`start` reads the input in a thread meanwhile; the read releases the interpreter lock, so
the imports go on while it runs (at 128 MiB, a 0.1 s read leaves the critical path and the
imports take 25-40 ms longer, the two threads faulting in memory at once). :func:`claim` hands
the bytes to the loader, only if the file at the path is still the one that was read (same
device, inode, size, modification and change times); otherwise the loader reads it again.

Only regular files are read ahead: a FIFO or a device is never opened for reading here (it is
opened non-blocking and checked first), so nothing is consumed from it. This module imports
nothing heavy, so that the read starts before the imports do.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

__all__ = ["Identity", "claim", "identity", "start"]

Identity = tuple[int, int, int, int, int]


def identity(status: os.stat_result) -> Identity:
    """What changes when a file is replaced (device, inode) or written to (size, modification
    and change times, in nanoseconds). The change time also moves on a chmod or a new hard
    link; it is kept because ``cp -p`` rewrites a file's bytes and then sets its modification
    time back, which only the change time shows."""
    return (
        status.st_dev,
        status.st_ino,
        status.st_size,
        status.st_mtime_ns,
        status.st_ctime_ns,
    )


class _Read(threading.Thread):
    """One whole read of a regular file; ``data`` stays None if it could not be read whole."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="wnpass-readahead", daemon=True)
        self.path = path
        self.data: bytes | None = None
        self.identity: Identity | None = None

    def run(self) -> None:
        try:
            if not stat.S_ISREG(os.stat(self.path).st_mode):
                return  # not even opened
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, ValueError):  # not there, not readable, a NUL in the name
            return
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return
            with open(fd, "rb", closefd=False) as stream:
                data = stream.read()
            after = os.fstat(fd)
            if identity(before) == identity(after) and len(data) == after.st_size:
                self.data, self.identity = data, identity(after)
        except (OSError, MemoryError):
            return
        finally:
            os.close(fd)


_pending: _Read | None = None


def start(path: str | os.PathLike[str]) -> None:
    """Start reading ``path`` in the background (replacing any read not yet claimed)."""
    global _pending
    _pending = _Read(Path(path))
    try:
        _pending.start()
    except RuntimeError:  # no thread to be had (memory for its stack): read when claimed
        _pending = None


def claim(path: str | os.PathLike[str]) -> bytes | None:
    """The bytes read ahead for ``path``, if it was read whole and the file there is still the
    one read; else None. Waits for a read still going; a read is handed out once."""
    global _pending
    read, _pending = _pending, None
    if read is None or os.path.abspath(read.path) != os.path.abspath(path):
        _pending = read  # a read for another path stays for its own claim
        return None
    read.join()
    try:
        now = identity(os.stat(path))
    except (OSError, ValueError):
        return None
    return read.data if read.identity == now else None
