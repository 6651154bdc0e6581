"""The ``wnpass`` program (and ``python -m wnpass``): stop signals handled from its first line.

A stop signal (SIGINT, SIGTERM, SIGHUP, ...: :data:`STOP_SIGNALS`) that comes while the
command line's modules are still being imported (20-80 ms, before :func:`wnpass.cli.main`
installs its handlers) would otherwise print a
Python traceback or end the process without a word. Nothing is staged yet then, so the
program says so in one line and ends at once, as it does later with nothing staged
(:mod:`wnpass.interrupts`). Only the program does this: importing :mod:`wnpass.cli` as a
library changes no handler.

The handlers come first: importing this module (and the package, whose ``__init__`` imports
nothing) loads only :mod:`signal` besides, and :func:`run` installs them before it imports
anything. What comes before that is Python's own start-up, whose behaviour a signal there
gets (a traceback, or the exit code Python chooses).
"""

from __future__ import annotations

import os
import signal
import sys

# ``os._exit`` as the process starts: the one the program ends with, also while the user's
# code runs, where :mod:`wnpass.plan` makes ``os._exit`` raise (t205: a SIGTERM then said the
# model called os._exit(143), exit 2)
_exit = os._exit

TYPE_CHECKING = False  # typing is not imported before the handlers are installed
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType
    from typing import NoReturn

__all__ = ["STOP_SIGNALS", "changes_said", "run", "stop", "stop_line", "takes_over"]

# The stop signals, and what the line wnpass ends with calls each. Besides SIGINT and SIGTERM,
# those whose default action ends a process on the spot, wherever it is (between two renames
# of a result, leaving a sharded checkpoint part old, part new): SIGHUP (a closed terminal or
# ssh session), SIGQUIT (Ctrl-\\), and the ones a user or a scheduler may send.
STOP_SIGNALS: dict[int, str] = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
for _name in ("SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGXCPU",
              "SIGPWR"):  # fmt: skip
    if hasattr(signal, _name):
        STOP_SIGNALS[getattr(signal, _name)] = f"stopped by {_name}"


def takes_over(signum: int, current: object) -> bool:
    """Whether wnpass handles stop signal ``signum``, whose handler is ``current``: never one
    the process was started with ignored (a background job's SIGINT, ``nohup``'s SIGHUP); the
    others than SIGINT and SIGTERM only where nothing handles them (their default action), so
    that a handler of the user's (a model's alarm) stays."""
    if current is signal.SIG_IGN:
        return False
    ours = current is _early
    return ours or signum in (signal.SIGINT, signal.SIGTERM) or current is signal.SIG_DFL


def stop_line(signum: int, written: Sequence[str] = (), deleted: Sequence[str] = ()) -> str:
    """What the program says when a stop signal ends it: also the files the run had already
    put in place (``written``: a result whose renames the signal waited for, or an earlier
    one) or deleted (:func:`wnpass.interrupts.changes`)."""
    return (
        f"wnpass: {STOP_SIGNALS[signum]}{changes_said(written, deleted)}; nothing more was written"
    )


def changes_said(written: Sequence[str], deleted: Sequence[str]) -> str:
    """``; already written: ...; removed: ...`` for the files a run put in place and deleted
    (:func:`wnpass.interrupts.changes`), control characters escaped; empty where there are
    none. A line that ends the run says it, so that it never reads as "nothing was written"."""
    if not (written or deleted):
        return ""
    from wnpass.errors import printable  # imported already: the run wrote a file

    said = f"; already written: {printable(', '.join(written))}" if written else ""
    return said + (f"; removed: {printable(', '.join(deleted))}" if deleted else "")


def stop(signum: int) -> NoReturn:
    """A stop signal with nothing staged: say so and end the process where it is."""
    from wnpass import interrupts  # imported: its handler calls this

    _end(signum, stop_line(signum, *interrupts.changes()))


def _early(signum: int, frame: FrameType | None) -> None:
    """The handler until :mod:`wnpass.interrupts` is imported: nothing is written yet."""
    _end(signum, stop_line(signum))


# The signal the process is ending by, once :func:`_end` began: a second one that comes
# while it says its line ends the process by the first's code, saying nothing more (t313)
_ending: list[int] = []


def _end(signum: int, line: str) -> NoReturn:
    """Flush stdout, say ``line`` on stderr (a closed stream loses it, never the exit code),
    and end the process with the shell's code for the signal."""
    if _ending:
        _exit(128 + _ending[0])
    _ending.append(signum)
    for say in (sys.stdout.flush, lambda: print(line, file=sys.stderr, flush=True)):
        try:
            say()
        except (OSError, ValueError):  # contextlib is not imported before the handlers
            continue
    _exit(128 + signum)


def _open_closed_streams() -> None:
    """A standard stream the process was started without (``2>&-``: some daemons and step
    runners start tools so) is opened on /dev/null before anything opens a file. Else the
    first file a command opens takes its descriptor, and whatever a library writes to stdout
    or stderr from C (the TorchScript exporter prints graphs so) lands in that file; and
    Python's stream for it is None, which the command line would fail on. What the program
    would say there is dropped, never its exit code."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        opened = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        if opened != fd:  # the lowest free descriptor is fd, unless it is open after all
            os.dup2(opened, fd)
            os.close(opened)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))  # noqa: SIM115


def run() -> NoReturn:
    """Handle stop signals, open the standard streams the process lacks, then import and run
    the command line."""
    for signum in STOP_SIGNALS:
        if takes_over(signum, signal.getsignal(signum)):
            signal.signal(signum, _early)
    _open_closed_streams()
    from wnpass import interrupts

    with interrupts.handled(stop):
        from wnpass.cli import run as run_cli

        run_cli()  # ends the process
