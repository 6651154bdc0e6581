"""The ``wnpass`` program (and ``python -m wnpass``): stop signals handled from its first line.

A SIGINT or SIGTERM that comes while the command line's modules are still being imported
(20-80 ms, before :func:`wnpass.cli.main` installs its handlers) would otherwise print a
Python traceback or end the process without a word. Nothing is staged yet then, so the
program says so in one line and ends at once, as it does later with nothing staged
(:mod:`wnpass.interrupts`). Only the program does this: importing :mod:`wnpass.cli` as a
library changes no handler.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import NoReturn

from wnpass import interrupts

__all__ = ["run", "stop", "stop_line"]

_STOPPED: dict[int, str] = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


def stop_line(signum: int) -> str:
    """What the program says when a stop signal ends it: also what the run had already put
    in place or deleted (a result whose renames the signal waited for, or an earlier one)."""
    line = f"wnpass: {_STOPPED[signum]}"
    written, deleted = interrupts.changes()
    if written or deleted:
        from wnpass.errors import printable  # imported already: the run wrote a file

        if written:
            line += f"; already written: {printable(', '.join(written))}"
        if deleted:
            line += f"; removed: {printable(', '.join(deleted))}"
    return line + "; nothing more was written"


def stop(signum: int) -> NoReturn:
    """A stop signal with nothing staged: say so and end the process where it is."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    with contextlib.suppress(OSError, ValueError):
        print(stop_line(signum), file=sys.stderr, flush=True)
    os._exit(128 + signum)


def run() -> NoReturn:
    """Handle stop signals, then import and run the command line."""
    with interrupts.handled(stop):
        from wnpass.cli import run as run_cli

        run_cli()  # ends the process
