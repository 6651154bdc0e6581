"""Write a file so that it is either complete or not there: a temporary file, then a rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from wnpass.errors import OutputError

__all__ = ["replaced"]


@contextlib.contextmanager
def replaced(target: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``target`` to write to; renamed onto ``target`` when the block
    ends without error, removed otherwise. An OS error is one line (``OutputError``)."""
    target = Path(target)
    if target.is_dir():
        raise OutputError(f"{target}: is a directory")
    if not target.parent.is_dir():
        raise OutputError(f"{target.parent}: no such directory")
    try:
        handle, name = tempfile.mkstemp(prefix=".wnpass-", suffix=suffix, dir=target.parent)
    except OSError as error:
        raise OutputError(f"{target}: cannot write ({error.strerror or error})") from None
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, target)
    except OSError as error:
        raise OutputError(f"{target}: cannot write ({error.strerror or error})") from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()
