"""What a stop signal does, by what the process has on disk at that moment: SIGINT, SIGTERM,
and the others whose default action would end the process on the spot (SIGHUP, SIGQUIT, ...:
:data:`wnpass.program.STOP_SIGNALS`, where nothing else handles them).

- **Nothing staged.** There is nothing to clean up and nothing half done, so the process ends
  at once (``on_stop``: the CLI says so in one line and exits with 128 plus the signal's
  number: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP). It may be
  anywhere: inside an import, where numpy turns an exception into an ``ImportError``, or inside
  a C++ extension, where an exception can abort the process; ending at once avoids both.
- **Something staged** (:func:`staging`, entered by :class:`wnpass.plan.IOPlan` for every
  staging file and folder): the signal becomes an exception (``KeyboardInterrupt``,
  :class:`Terminated`) where the process is, so that the staging is removed on the way out;
  also where the model's code set the signal's default handler back, which would end the
  process with the staging on disk.
- **A result being published** (:func:`hold` to :func:`release`: the renames that put data
  files, shards, then the model or index in place): the signal waits until the last rename of
  that result is done, so an output is never part old, part new; then it is raised as above.
  A handler the model's code installed meanwhile (its own, or a default that ends the
  process) is lent wnpass's for the renames, and given the signal once they are done.

- **A stop under way** (ending the process, or raised as an exception less than
  :data:`BURST_S` ago): further stop signals are dropped, one burst with it, so that none cuts
  the first one's cleanup short or says it twice; the first decides how the process ends.

A signal that ends the run after a file was put in place (or an old data file deleted), be it
held through a result's renames or come later, must not read as "nothing was written":
:class:`wnpass.plan.IOPlan` records each such file here (:func:`wrote`, :func:`removed`), and
the line the program ends with names them (:func:`changes`).

SIGKILL cannot be caught: it can stop a result between two of its renames. wnpass orders the
renames so that what is at the target stays usable (data under new names first, the model or
index last); where a result's files must keep their names (checkpoint shards), the docs say so.
Python runs signal handlers in the main thread only, between bytecodes, so this state needs no
lock; a library user who installs nothing keeps Python's own behaviour. A signal the process
was started with ignored (SIGINT for a background job of a shell script, ``nohup``-like
launchers) stays ignored, as Python leaves it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, ClassVar, NoReturn

from wnpass.program import STOP_SIGNALS, takes_over

__all__ = [
    "STOPS",
    "Terminated",
    "changes",
    "forget_stop",
    "handled",
    "held",
    "hold",
    "no_sigint_came",
    "release",
    "removed",
    "saying_stop",
    "staging",
    "stopped_by",
    "taken_back",
    "wrote",
]


class Terminated(BaseException):
    """A stop signal other than SIGINT (SIGTERM, SIGHUP, ...), raised where the process is, so
    that staging is removed on the way out (:func:`stopped_by` says which)."""


# How long after a stop is raised the stop signals that follow are one burst with it, dropped:
# a supervisor's hundreds of SIGTERMs, Ctrl-C pressed again and again, come within it
BURST_S = 0.5

# What stops wnpass wherever it is, also inside the user's code: a block that catches what
# the user's code raises (``except BaseException``) lets these through first.
STOPS: tuple[type[BaseException], ...] = (KeyboardInterrupt, Terminated)


# What ``signal.getsignal`` returns: a Python handler, SIG_DFL or SIG_IGN, or None.
_Handler = Callable[[int, FrameType | None], Any] | int | None


class _State:
    staged = 0  # staging files and folders that exist (or are about to)
    holds = 0  # open blocks in which stop signals wait (renames, a staging entry made or removed)
    pending: ClassVar[list[int]] = []  # the signals that came while a result was published
    lent: ClassVar[dict[int, _Handler]] = {}  # the handlers ours replaced while publishing
    raised: int | None = None  # the signal last turned into an exception
    raised_at: float | None = None  # when (time.monotonic), till forget_stop
    ending = False  # on_stop is ending the process
    said = False  # the command line said the stop (:func:`saying_stop`), till forget_stop
    on_stop: Callable[[int], NoReturn] | None = None
    sigint_ours = False  # SIGINT's handler was ours to the end of the last handled() block
    sigint_came: bool | None = None  # a SIGINT reached the process in it (None: not told)
    written: ClassVar[list[str]] = []  # files put in place since handled() was entered
    deleted: ClassVar[list[str]] = []  # files deleted since then


@contextlib.contextmanager
def staging() -> Iterator[None]:
    """Count a staging file or folder from just before it is made to after it is removed; or
    any block where a stop signal is to raise rather than end the process at once, so that
    what follows it still runs (a model.py's exit-time work, :mod:`wnpass.cli`).

    Inside :func:`handled`, a stop signal whose handler the model's code set back to the
    default (which ends the process on the spot, the staging left behind: t225) gets ours
    while anything is staged, and its default back once nothing is."""
    _State.staged += 1
    lent = _lent_for_staging() if _State.staged == 1 else {}
    try:
        yield
    finally:
        _State.staged -= 1
        for signum, handler in lent.items():
            if signal.getsignal(signum) is _handler:  # else the model's code set another
                signal.signal(signum, handler)


def _lent_for_staging() -> dict[int, _Handler]:
    """Ours in place of each stop signal's default handler, and the defaults replaced."""
    if _State.on_stop is None or not _in_main_thread():
        return {}
    return {
        signum: signal.signal(signum, _handler)
        for signum in STOP_SIGNALS
        if signal.getsignal(signum) is signal.SIG_DFL
    }


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Stop signals wait while the block runs (a staging file made and its cleanup set up,
    or removed): a signal raised between two of its steps would leave the file behind."""
    hold()
    try:
        yield
    finally:
        release()


def hold() -> None:
    """A result starts to be published: stop signals wait until the matching :func:`release`.

    Inside :func:`handled`, a stop signal whose handler is no longer ours (the model's code
    set one, or set the default, which would end the process between two renames) gets ours
    until the release, which gives the handler back and the signal to it."""
    _State.holds += 1
    if _State.holds == 1 and _State.on_stop is not None and _in_main_thread():
        _State.lent = {
            signum: signal.signal(signum, _handler)
            for signum in STOP_SIGNALS
            if signal.getsignal(signum) not in (_handler, signal.SIG_IGN, None)
        }


def release() -> None:
    """The result is published (or abandoned): the signals that came meanwhile go to the
    handlers they were lent from (each runs, or ends the process), then one of wnpass's own is
    raised; none is lost to another that came after it."""
    _State.holds -= 1
    if _State.holds:
        return
    lent, _State.lent = _State.lent, {}
    for signum, handler in lent.items():
        signal.signal(signum, handler)
    pending, _State.pending = _State.pending, []
    ours = [signum for signum in pending if signum not in lent]
    failure: BaseException | None = None
    for signum in pending:
        if signum in lent:
            try:
                signal.raise_signal(signum)  # its own handler now (which may raise)
            except BaseException as error:  # raised again below, once every one has run
                failure = failure or error
    if ours and not _unwinding():
        _raise(ours[0])
    if failure is not None:
        raise failure


def _unwinding() -> bool:
    """Whether a stop is under way: one ending the process (``on_stop``), or one raised as an
    exception less than :data:`BURST_S` ago. A second signal raised into the first's cleanup
    (inside a context manager's exit, before the staging's removal was held) left the staging
    folder on disk, chained tracebacks and exit 1, and one during the stop line said it twice
    (t309: hundreds of SIGTERMs in a burst): a burst is one stop. Past it, a signal raises
    again: a stop the model's code swallowed (a bare ``except:`` in its forward) must not make
    the run deaf to every later one, nor a model.py's exit-time work (t313)."""
    if _State.ending or _State.said:
        return True
    return _State.raised_at is not None and time.monotonic() - _State.raised_at < BURST_S


def saying_stop() -> None:
    """The command line says the stop that ended its command: a signal from now on is dropped
    (till :func:`forget_stop`), which past the burst said it a second time after a slow
    unwind (t314)."""
    _State.said = True


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def wrote(path: object) -> None:
    """A file was put in place (renamed onto its target): a stop from now on names it.
    Recorded inside :func:`handled` only (a library that handles no signal keeps nothing)."""
    if _State.on_stop is not None:
        _State.written.append(str(path))


def taken_back(path: object) -> None:
    """A file put in place was removed again, or what it replaced put back: a stop from now
    on names it no more."""
    with contextlib.suppress(ValueError):
        _State.written.remove(str(path))


def removed(path: object) -> None:
    """A file was deleted (an old data file of a replaced output): a stop names it."""
    if _State.on_stop is not None:
        _State.deleted.append(str(path))


def changes() -> tuple[list[str], list[str]]:
    """The files put in place and those deleted since :func:`handled` was entered."""
    return list(_State.written), list(_State.deleted)


def stopped_by() -> int | None:
    """The signal raised as an exception in this block of :func:`handled`, if any: code that
    catches exceptions wholesale (numpy's imports, torch's C++) may have turned it into
    another error, which is then this signal's doing, not a bug."""
    return _State.raised


def no_sigint_came() -> bool:
    """Whether no SIGINT reached the process in the last :func:`handled` block, so that a
    ``KeyboardInterrupt`` :func:`stopped_by` does not name was raised by code, no Ctrl-C
    (t345). Told by the signal wakeup fd, which Python writes each signal to, whichever Python
    handler takes it (a model's code may install its own, a training script's "saving..."
    handler, t347, for a moment only, t348) and none where the process ignores SIGINT (a
    shell script's background job, t348). Where the model's code set another wakeup fd, by
    whether this module's handler stayed SIGINT's to the end: it records every SIGINT."""
    if _State.sigint_came is not None:
        return not _State.sigint_came
    return _State.sigint_ours


def _watch_sigint() -> Callable[[], bool | None]:
    """Start watching for SIGINT through the signal wakeup fd; the function returned stops
    and says whether one came (None where that cannot be told: no pipe, or the model's code
    set another wakeup fd meanwhile)."""
    try:
        read, write = os.pipe()
    except OSError:
        return lambda: None
    try:
        for fd in (read, write):
            os.set_blocking(fd, False)
        previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except (OSError, ValueError):
        os.close(read)
        os.close(write)
        return lambda: None

    def stop() -> bool | None:
        try:
            ours = signal.set_wakeup_fd(previous) == write
            came = b""
            with contextlib.suppress(OSError):  # BlockingIOError: read to the end
                while chunk := os.read(read, 4096):
                    came += chunk
            return int(signal.SIGINT) in came if ours else None
        finally:
            os.close(read)
            os.close(write)

    return stop


def forget_stop() -> None:
    """:func:`stopped_by` says None again: a stop that was said and dealt with (the command it
    ended is over) is not the one a later block asks about."""
    _State.raised = _State.raised_at = None
    _State.said = False


def _raise(signum: int) -> NoReturn:
    # the first stop decides the exit status, also where a later one, past its burst, raises
    # again into its unwinding (t314)
    _State.raised = signum if _State.raised is None else _State.raised
    _State.raised_at = time.monotonic()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated


def _handler(signum: int, frame: object) -> None:
    if _State.holds:
        if signum not in _State.pending:
            _State.pending.append(signum)
        return
    if _unwinding():
        return  # a stop is under way: another would cut its cleanup short, or say it twice
    if not _State.staged and _State.on_stop is not None:
        _State.ending = True
        try:
            _State.on_stop(signum)  # ends the process (a test's raises)
        finally:
            _State.ending = False
    _raise(signum)


@contextlib.contextmanager
def handled(on_stop: Callable[[int], NoReturn]) -> Iterator[None]:
    """Handle the stop signals as the module docstring says while the block runs;
    ``on_stop(signum)`` ends the process when nothing is staged. Outside the main thread
    (where Python cannot install handlers) the block runs with the handlers it has."""
    if not _in_main_thread():
        yield
        return
    previous = {
        signum: signal.signal(signum, _handler)
        for signum in STOP_SIGNALS
        if signal.getsignal(signum) is _handler or takes_over(signum, signal.getsignal(signum))
    }
    outer, _State.on_stop, _State.raised = _State.on_stop, on_stop, None
    _State.raised_at, _State.said = None, False
    _State.written, _State.deleted = [], []  # kept after the block, for the line said then
    sigint_came = _watch_sigint()
    try:
        yield
    finally:
        _State.sigint_came = sigint_came()
        _State.on_stop = outer  # an enclosing block's (the program's) handles the rest
        _State.sigint_ours = (
            signal.SIGINT in previous and signal.getsignal(signal.SIGINT) is _handler
        )
        for signum, handler in previous.items():
            current = signal.getsignal(signum)
            if current is _handler or not callable(current):  # a handler of the model's code
                signal.signal(signum, handler)  # stays its own (its timer may still run)
