"""Plan every path a command reads, writes and deletes, and refuse a bad plan before writing.

Every command and every file-writing API function goes through one :class:`IOPlan`:

1. it records each path it reads (:meth:`IOPlan.read`: the model, its external data, a
   checkpoint, a ``model.py``, a data or inputs file) and each path it writes
   (:meth:`IOPlan.write`: outputs, their data files, the JSON report);
2. :meth:`IOPlan.check` refuses the plan, before anything is written, when a target is
   something read (by path, through a symbolic link, or as a hard link to it) or kept
   (:meth:`IOPlan.keep`: a data file of an output this run replaces, which must stay whole
   until the new output is in place), when two targets are the same file, when a target
   exists and is not a regular file (a symbolic link, FIFO, device or folder), or when its
   folder does not exist;
3. files are written only through :meth:`IOPlan.replace` and :meth:`IOPlan.staging`: a
   staging file (or folder) beside the target, renamed onto it at the end, so that a target is
   either as it was or complete; a path that was not planned and checked cannot be written;
   the files of one result are renamed into their folder under an exclusive ``flock`` on it,
   so that two runs writing the same result rename theirs one after the other;
4. an old data file of a replaced output is deleted only when :meth:`IOPlan.may_delete` says
   so (the output's own record says wnpass wrote it, it has wnpass's data-file name for that
   output, lies beside it, is a regular file with one link, is not read or written by this
   run, and is still the file :meth:`IOPlan.keep` saw when the run planned: not one another
   process put there since, nor one it wrote to), and is then listed in
   :attr:`IOPlan.removed` (the report names it: a copy of that output shares the file by
   reference, and loses it); anything else is left and listed in :attr:`IOPlan.left`.

The user's own code (a ``model.py``: loading it, its factory, the forwards wnpass runs) reads
files no option names: the modules it imports, also lazily in ``forward`` or by
``importlib`` from a file, and any file it opens. After :meth:`IOPlan.watch_user_code`, a
plan records them, and checks itself again with them before each write:

- from Python's ``open`` audit events raised inside :func:`user_code` blocks (any file that
  Python code opens for reading);
- on Linux, from the kernel (:mod:`wnpass.watch`, inotify): every existing file the plan
  would write over or delete (a target, and the files beside it with wnpass's data-file
  names for it) is watched, and an open of one while a :func:`user_code` block runs counts,
  whatever opened it: native code (safetensors, ``torch.from_file``, a memory map) or
  another process. The watch's queue is emptied on entering and on leaving each block, so
  wnpass's own opens between blocks do not count; :func:`own_code` marks one inside a block.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import importlib.util
import itertools
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

from wnpass import interrupts, readahead
from wnpass.errors import InvalidArgumentError, InvalidModelError, OutputError, UsageError
from wnpass.watch import OpenWatch

__all__ = [
    "MODEL_PY",
    "STAGING_PREFIX",
    "USER_CODE_OPENED",
    "USER_CODE_READ",
    "IOPlan",
    "anchored",
    "as_path",
    "as_plan",
    "changed_while_read",
    "data_file_name",
    "identity_of",
    "kind_of",
    "not_readable",
    "own_code",
    "stat_input",
    "stderr_given_back",
    "streams_guarded",
    "user_code",
]

logger = logging.getLogger(__name__)

# The name that writes a report's JSON to standard output (``--json -``), not to a file: no
# target of a plan (:meth:`IOPlan.write`; the report writes it, :func:`wnpass.report.write_json`).
STANDARD_OUTPUT = "-"


def _require_json_name(path: str | os.PathLike[str]) -> None:
    """Refuse a JSON report's name that does not end with ``.json`` (in any case) and is not
    :data:`STANDARD_OUTPUT`: ``--json trained.pt`` replaced a checkpoint with the report
    (t107). :meth:`IOPlan.check` checks it of each ``json_path``, after its other rules."""
    text = os.fspath(path)
    name = os.path.basename(text)
    if name.lower() == ".json":  # a hidden file's name without a suffix (t309)
        raise UsageError(f"{text}: a JSON report needs a name before .json", parameter="json_path")
    if text != STANDARD_OUTPUT and (len(name) <= 5 or not name.lower().endswith(".json")):
        raise UsageError(
            f"{text}: a JSON report's name must end with .json (or be - for standard output)",
            parameter="json_path",
        )


# Staging files and folders start with this prefix: a run killed by SIGKILL can leave one
# behind (never a half-written target), and its name says what it is.
STAGING_PREFIX = ".wnpass-"


# what the model.py itself is called in the plan ("would overwrite the model file model.py")
MODEL_PY = "the model file"
USER_CODE_READ = "a file the model.py's code read"  # what such a file is called in the plan
# one the kernel saw opened (inotify) while the user's code ran: by it, or by another process
USER_CODE_OPENED = "a file opened while the model.py's code ran (by it or another process)"

# Whether each thread runs user code now (its innermost user_code/own_code block says): the
# audit hook records the files opened for reading there; and the kernel's record is one queue
# for the process, so an open counts for the user's code when any thread ran it meanwhile (a
# thread's own_code block must not throw another's opens away).
_threads_in_user_code: dict[int, bool] = {}


def _in_user_code() -> bool:
    return _threads_in_user_code.get(threading.get_ident(), False)


_watching: weakref.WeakSet[IOPlan] = weakref.WeakSet()  # plans that record those files
_hooked = False  # whether _on_open is installed (an audit hook cannot be removed)


def _on_open(event: str, args: tuple[object, ...]) -> None:
    """The audit hook: a file opened for reading inside :func:`user_code`, for every watching
    plan. Never raises (an audit hook's exception would fail the user's ``open``)."""
    if event != "open" or not _watching or not _in_user_code():
        return
    try:
        path, mode, flags = args
        if isinstance(path, int) or path is None:
            return
        if isinstance(mode, str) and any(c in mode for c in "wax+"):
            return
        if mode is None and isinstance(flags, int) and flags & os.O_ACCMODE != os.O_RDONLY:
            return
        name = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
        names = [name]
        if name.endswith(".pyc"):  # an import read the cached bytecode, not the source
            with contextlib.suppress(ValueError):
                names.append(importlib.util.source_from_cache(name))
        for plan in list(_watching):
            plan._user_reads.update(names)
    except Exception:  # nothing may escape an audit hook
        return


class ProcessExit(SystemExit):
    """``os._exit(code)`` called by the user's code, raised instead, as ``sys.exit`` raises:
    it ended the process at once, exit code 0 and nothing written (t202)."""


# ``os._exit`` as it was before the first block of user code began (restored after the last
# one ends), the process that installed :func:`_os_exit`, and how many blocks are running.
_saved_os_exit = os._exit
_installed_in: int | None = None
_exit_blocks = 0
_exit_lock = threading.Lock()


def _os_exit(code: int) -> None:
    """``os._exit`` while user code runs: raises :class:`ProcessExit` on a thread running the
    user's code, in the process that runs it; anywhere else (another thread, the caller's
    watchdog; a child the code forked, a DataLoader's worker) it exits as it would (t203)."""
    me = threading.get_ident()
    if os.getpid() == _installed_in and _threads_in_user_code.get(me):
        raise ProcessExit(code)
    _saved_os_exit(code)


def _exits_raise(users: bool) -> contextlib.AbstractContextManager[None]:
    """:func:`_os_exit` installed for the block where it runs user code (``users``); the
    original put back once no block of user code is running, in whatever order they end."""
    return _exit_installed() if users else contextlib.nullcontext()


@contextlib.contextmanager
def _exit_installed() -> Iterator[None]:
    global _saved_os_exit, _installed_in, _exit_blocks
    with _exit_lock:
        if _exit_blocks == 0:
            _saved_os_exit, _installed_in = os._exit, os.getpid()
            os._exit = _os_exit  # type: ignore[assignment]
        _exit_blocks += 1
    try:
        yield
    finally:
        with _exit_lock:
            _exit_blocks -= 1
            if _exit_blocks == 0:
                os._exit = _saved_os_exit


# Whether the user's code ran in this process (:func:`user_code_ran`).
_user_code_ran = False


@contextlib.contextmanager
def user_code() -> Iterator[None]:
    """Run the user's code (a model.py's, a forward): the files it reads are recorded in
    every plan watching (:meth:`IOPlan.watch_user_code`), and so may not be written."""
    global _user_code_ran
    _user_code_ran = True
    with _marked(True):
        yield


def user_code_ran() -> bool:
    """Whether a :func:`user_code` block ran in this process: its exit-time work (``atexit``
    handlers, threads it started, a ``TemporaryDirectory`` to remove) is then the program's
    to let run before it ends."""
    return _user_code_ran


@contextlib.contextmanager
def own_code() -> Iterator[None]:
    """wnpass's own reads (a replaced output's record of its data files), even inside a
    :func:`user_code` block: not the user's code's."""
    with _marked(False):
        yield


# The working directory the user's code last moved to (``os.chdir`` in a model.py): it is
# the user's code's again in its next block, and wnpass's own is put back after each block,
# so that the paths planned relative to it stay the paths written.
_users_cwd: str | None = None


@contextlib.contextmanager
def _marked(users: bool) -> Iterator[None]:
    """The block's code is the user's (or not); the kernel's record of the opens before each
    change is read out and counted for the code that ran until then."""
    me = threading.get_ident()
    _drain_watches(counted=_in_user_code() or _users_elsewhere(me))
    outer = _threads_in_user_code.get(me)
    _threads_in_user_code[me] = users
    own_cwd = _enter_users_cwd() if users and not outer else None
    try:
        with _exits_raise(users):
            yield
    finally:
        _drain_watches(counted=users or _users_elsewhere(me))
        if outer is None:
            _threads_in_user_code.pop(me, None)
        else:
            _threads_in_user_code[me] = outer
        if own_cwd is not None:
            _leave_users_cwd(own_cwd)


def _users_elsewhere(me: int) -> bool:
    return any(users for thread, users in list(_threads_in_user_code.items()) if thread != me)


def _enter_users_cwd() -> str | None:
    """wnpass's working directory, and the user's code's (where it last moved to) made the
    process's; None where the working directory cannot be read (it was removed)."""
    try:
        own = os.getcwd()
    except OSError:
        return None
    if _users_cwd is not None and _users_cwd != own:
        with contextlib.suppress(OSError):
            os.chdir(_users_cwd)
    return own


def _leave_users_cwd(own: str) -> None:
    global _users_cwd
    with contextlib.suppress(OSError):
        now = os.getcwd()
        _users_cwd = now if now != own else None
    with contextlib.suppress(OSError):
        os.chdir(own)


def _drain_watches(counted: bool) -> None:
    for plan in list(_watching):
        plan._drain(counted)


# The files the standard streams of a command line are, by (device, inode), with the name its
# errors give each, where no plan may read one of them (set by :func:`streams_guarded`: a
# library caller's streams are its own): a table printed onto the model read (``wnpass
# inspect m.onnx 1<>m.onnx``) broke it, exit 0 (t328).
_STREAMS: dict[tuple[int, int], str] = {}


@contextlib.contextmanager
def streams_guarded() -> Iterator[None]:
    """Every plan checked meanwhile refuses to read the file that standard output or standard
    error is now (:meth:`IOPlan.check`): what the command prints would be written onto it."""
    before = dict(_STREAMS)
    for fd, name in ((2, "standard error"), (1, "standard output")):
        if (identity := _stream_file(fd)) is not None:
            _STREAMS[identity] = name
    try:
        yield
    finally:
        _STREAMS.clear()
        _STREAMS.update(before)


# standard error's file, taken away by a refusal (the line saying so would have gone onto the
# file read), to give back once the command line is done (:func:`stderr_given_back`)
_QUIETED: list[int] = []


def _quiet_stderr() -> None:
    """Standard error onto /dev/null, its file kept for :func:`stderr_given_back`."""
    with contextlib.suppress(OSError):
        kept = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        _QUIETED.append(kept)


def stderr_given_back() -> None:
    """Standard error back onto the file a refusal took it from (a caller of the command
    line in its own process keeps its descriptor 2)."""
    while _QUIETED:
        kept = _QUIETED.pop()
        with contextlib.suppress(OSError):
            os.dup2(kept, 2)
            os.close(kept)


def _stream_file(fd: int) -> tuple[int, int] | None:
    """The (device, inode) of the regular file at file descriptor ``fd``; None for anything
    else (a terminal, a pipe, /dev/null) or none."""
    try:
        found = os.fstat(fd)
    except OSError:
        return None
    return (found.st_dev, found.st_ino) if stat.S_ISREG(found.st_mode) else None


def data_file_name(output: Path, k: int = 0) -> str:
    """The name wnpass gives to an output's external data: ``<name>.data``, ``<name>.<k>.data``."""
    return f"{output.name}.data" if k == 0 else f"{output.name}.{k}.data"


def _is_data_file_name(output: Path, name: str) -> bool:
    return re.fullmatch(rf"{re.escape(output.name)}(\.[0-9]+)?\.data", name) is not None


def kind_of(mode: int) -> str:
    """What a file that is not a regular one is, for messages: "a FIFO", "a directory" ..."""
    for test, kind in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def stat_input(path: str | os.PathLike[str]) -> os.stat_result | str:
    """``os.stat`` of an input (links followed), or why it has none, for a message after its
    name ("no such file", "cannot read it (Too many levels of symbolic links)"). Only ``stat``
    runs: nothing is opened, so a FIFO is not consumed, nor a device read."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):  # ls shows it: "no such file" read as wrong (t143)
            # the file it ends at, links followed as far as they go, from the link's folder
            return f"a link to {os.path.realpath(path)}, which does not exist"
        return "no such file"
    except ValueError:  # a NUL byte in the name
        return "contains a NUL byte"
    except OSError as error:
        return f"cannot read it ({error.strerror or error})"


def require_input(path: str | os.PathLike[str], parameter: str) -> None:
    """Refuse an input file that cannot be read (:func:`not_readable`), naming ``parameter``:
    before the plan is checked, so that a missing input is said to be missing, not to be a
    file an output would overwrite (t225)."""
    if (problem := not_readable(path)) is not None:
        raise InvalidArgumentError(f"{path}: {problem}", parameter=parameter)


def not_readable(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as an input file, for a message after its name ("no such
    file", "is a FIFO, not a regular file"); None for a regular file (links followed): as
    :func:`stat_input`, nothing is opened."""
    status = stat_input(path)
    if isinstance(status, str):
        return status
    if not stat.S_ISREG(status.st_mode):
        return f"is {kind_of(status.st_mode)}, not a regular file"
    return None


def _umask() -> int:
    """The process's umask (read by setting it, as Python offers no other way before 3.13)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def identity_of(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file a path leads to, following links; None if there is none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _place(path: Path) -> tuple[int, int, str] | None:
    """Where a name is, whether or not a file is there: its folder's (device, inode) and the
    name. Two paths to one folder (a bind mount, a second link to it) name one new file,
    which :func:`_where` compares by path and :func:`identity_of` finds no file for (t309:
    ``--json`` through a bind mount wrote over the index just written); None where the folder
    is not there."""
    folder = identity_of(path.parent)
    return None if folder is None else (*folder, path.name)


def _as_it_is(path: Path) -> tuple[int, ...] | None:
    """The file at ``path`` itself (not following a link), as a stat shows it: device, inode,
    size, and the times its content and its entry last changed; None where there is none."""
    try:
        st = os.lstat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


# How long a publish waits for another process's lock on the folder it renames into: another
# wnpass run holds it for its renames only (milliseconds); a lock held longer is someone's
# `flock DIR command`, which a run must not wait on for ever.
LOCK_WAIT_S = 30.0
_LOCK_POLL_S = 0.05


def _lock(folder: Path) -> int | None:
    """An exclusive ``flock`` on ``folder`` (its descriptor), waited for up to
    :data:`LOCK_WAIT_S` (then TimeoutError): two runs that publish a multi-file result into
    one folder (shards and their index, a model and its data file) rename their files one run
    after the other, never interleaved, so the folder holds one run's result whole. None
    where the folder cannot be opened or locked (some network file systems): the renames then
    go unlocked, as a single file's always do (one rename)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    deadline = time.monotonic() + LOCK_WAIT_S
    waiting = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        errno.EAGAIN,
                        f"another process has held a lock on {folder}/ for {LOCK_WAIT_S:g} s",
                    ) from None
                if not waiting:
                    waiting = True
                    logger.warning(
                        "%s: another process holds a lock on this folder; waiting up to %g s",
                        folder,
                        LOCK_WAIT_S,
                    )
                time.sleep(_LOCK_POLL_S)
    except TimeoutError:
        os.close(fd)
        raise
    except OSError:
        os.close(fd)
        return None
    except BaseException:  # a signal while waiting: nothing was published
        os.close(fd)
        raise


def _open_folder(folder: Path) -> int | None:
    """A descriptor of ``folder``, held while a staging path made in it exists: the path is
    removed through it (:func:`_relative`), so from where it is even if another process moved
    the folder meanwhile. None where the folder cannot be opened: removed by its path then."""
    try:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None


def _relative(path: Path, folder: int | None) -> str:
    """``path``'s name for calls given ``dir_fd=folder`` (its folder's descriptor), or the
    whole path where there is none."""
    return path.name if folder is not None else str(path)


def _close(fd: int | None) -> None:
    """Close a descriptor of :func:`_lock` (closing the last one releases the lock) or of
    :func:`_open_folder`."""
    if fd is not None:
        os.close(fd)


def changed_while_read(path: str | os.PathLike[str]) -> InvalidModelError:
    """The error for an input that changed between reads of one run (see
    :meth:`IOPlan.require_unchanged`; a checkpoint's shards are followed the same way)."""
    return InvalidModelError(
        f"{path}: changed while it was read (replaced, written to, or its status changed); "
        "nothing written"
    )


def as_plan(value: object, parameter: str = "plan") -> IOPlan | None:
    """``value`` when it is an :class:`IOPlan` or None (the function makes its own); anything
    else is refused here, not met later as an AttributeError."""
    if value is None or isinstance(value, IOPlan):
        return value
    raise InvalidArgumentError(
        f"must be an IOPlan or None, not {type(value).__name__}", parameter=parameter
    )


def as_path(name: str, value: object) -> Path:
    """``value`` (a str or an ``os.PathLike`` of one) as a Path; anything else is refused, and
    so is an empty one (``Path("")`` is the current folder: the error would name a ``.``)."""
    if isinstance(value, (str, os.PathLike)):
        with contextlib.suppress(TypeError):  # an os.PathLike of bytes
            if not os.fspath(value):
                raise InvalidArgumentError("is an empty path", parameter=name)
            return Path(value)
    raise InvalidArgumentError(
        f"must be a path (a str or os.PathLike), not {type(value).__name__}", parameter=name
    )


def anchored(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute against the working directory now (wnpass's, outside the user's
    code, which may change it), its parts kept as they are: ``link/../m.py`` stays through
    ``link``, as opening it resolves it (``os.path.abspath`` would drop ``link/..`` as text)."""
    return Path(os.getcwd(), path)


def _where(path: Path) -> Path:
    """The absolute path of ``path`` with its folder resolved but its last part kept: a
    target is replaced by name, so a symbolic link there is the link, not what it points at."""
    return Path(os.path.realpath(path.parent)) / path.name


@dataclasses.dataclass(frozen=True)
class _Entry:
    path: Path  # as given
    parameter: str  # the library parameter (the CLI says the flag)
    why: str = "which this run reads"  # a read file: why no output may be written onto it


def _rename_new(staged: Path, target: Path) -> None:
    """Put ``staged`` at ``target``, which must not exist (``FileExistsError`` where it does):
    a hard link fails where the name is taken, atomically, where a check and a rename would
    leave a moment to another process. Where the file system makes no hard link (exFAT, some
    FUSE mounts: EPERM, ENOTSUP, ENOSYS, EACCES...), that check and rename. Once the link is
    made the file is in place; the staged name goes with its staging folder if it stays."""
    try:
        os.link(staged, target)
    except FileExistsError:
        raise
    except OSError:
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        os.replace(staged, target)
        return
    with contextlib.suppress(OSError):
        os.unlink(staged)


class IOPlan:
    """The paths one run reads and writes; see the module docstring for the rules."""

    def __init__(self) -> None:
        self._reads: list[_Entry] = []
        self._mode: tuple[int, int] | None = None  # an output's mode, for the reads so far
        # _reads resolved by check(), the first entry at each place and file (_read_index)
        self._read_where: dict[Path, _Entry] = {}
        self._read_ids: dict[tuple[int, int], _Entry] = {}
        self._indexed = 0  # the entries of _reads resolved so far
        self._unresolved: list[_Entry] = []  # those whose file did not exist then
        self._writes: list[_Entry] = []
        self._kept: dict[Path, Path] = {}  # a file the old version of an output needs: output
        # each kept file as it was when planned: only that file may be deleted (t175)
        self._kept_as: dict[Path, tuple[int, ...] | None] = {}
        self._pinned: dict[Path, readahead.Identity | None] = {}  # files read lazily: as first seen
        self._may_replace_read: set[Path] = set()
        self._new: set[Path] = set()  # targets whose name was chosen as free: never replaced
        self._checked = False
        self.left: list[str] = []  # files a run would have removed but kept, with the reason
        self.removed: list[Path] = []  # files it removed: old data files of replaced outputs
        self._stagings: set[Path] = set()  # staging folders that exist
        self._probed: set[Path] = set()  # folders shown to take new files
        self.published: list[Path] = []  # targets renamed into place, in order
        # those put at a name that was free (:attr:`_new`), each with the file put there
        self._put_new: dict[Path, tuple[int, ...] | None] = {}
        # those a together() block put over a file: the old file's second name (a hard link
        # in the staging folder), to put it back if a later file of the block cannot be
        # published, with the file put there (t328)
        self._replaced: dict[Path, tuple[Path, tuple[int, ...] | None]] = {}
        self._together: int | None = None  # where in published a together() block began
        self._publishing: set[Path] = set()  # those whose files are being published
        self._locks: dict[Path, int] = {}  # staging folder -> its target folder's locked fd
        self._write_at: dict[Path, _Entry] = {}  # each target's place, as check() resolved it
        self._first_at: dict[int, Path] = {}  # each target's place (by id of its entry), as
        # the first check() that saw it resolved it: a check again keeps it
        self._user_reads: set[str] = set()  # files user code read, not yet recorded (above)
        self._user_opened: set[Path] = set()  # targets it opened (inotify), not yet recorded
        self._watch: OpenWatch | None = None

    # -- recording ------------------------------------------------------------------------

    def read(self, path: str | os.PathLike[str], parameter: str, why: str = _Entry.why) -> Path:
        """Record that ``path`` is read; ``parameter`` says what it is, for messages
        ("the input model"), and ``why`` why no output may be written onto it. Returns it as
        a Path."""
        path = Path(path)
        self._reads.append(_Entry(path, parameter, why))
        self._checked = False
        return path

    def protect(self, path: str | os.PathLike[str], what: str) -> None:
        """Record a file no output of this run may be written onto, though the run does not
        read it: a file a report is about (the model a fold read or wrote), when the report
        is written on its own (``write_json`` without the run's plan)."""
        self._reads.append(_Entry(Path(path), what, "which the report is about"))
        self._checked = False

    def read_all(
        self, paths: Iterable[str | os.PathLike[str]], parameter: str, why: str = _Entry.why
    ) -> None:
        for path in paths:
            self.read(path, parameter, why)

    def pin(self, path: str | os.PathLike[str], seen: readahead.Identity | None = None) -> None:
        """Record ``path`` (a file read, maybe lazily, until the result is complete) as it is
        now, or as ``seen`` when it was read: :meth:`require_unchanged` refuses to publish a
        result once it was replaced or written to (values from two versions of it)."""
        path = Path(path)
        if seen is None:
            try:
                seen = readahead.identity(os.stat(path))
            except OSError:
                seen = None
        self._pinned.setdefault(path, seen)

    def require_unchanged(self) -> None:
        """Every pinned file is still the file it was (device, inode, size, modification and
        change times); else ``InvalidModelError``: it changed while this run read it."""
        for path, seen in self._pinned.items():
            try:
                now: readahead.Identity | None = readahead.identity(os.stat(path))
            except OSError:
                now = None
            if now != seen:
                raise changed_while_read(path)

    @contextlib.contextmanager
    def changes_explain(self) -> Iterator[None]:
        """Run the block; an error it raises while a pinned file has changed is that change
        (:meth:`require_unchanged`'s error): a data file truncated under a memory map reads as
        a buffer too short for its tensor, which says nothing of the model."""
        try:
            yield
        except Exception as error:
            try:
                self.require_unchanged()
            except InvalidModelError as changed:
                raise changed from error
            raise

    def keep(self, path: str | os.PathLike[str], output: str | os.PathLike[str]) -> None:
        """Record that no output of this run may be written onto ``path``, a file that the old
        ``output`` (which this run replaces) needs: an ONNX model's data file, a sharded
        index's shard. It stays as it is until the new output is in place (a failed check
        leaves the old output whole)."""
        self._kept.setdefault(Path(path), Path(output))
        self._kept_as.setdefault(Path(path), _as_it_is(Path(path)))
        self._checked = False

    def watch_user_code(self) -> None:
        """From now on, record the files that code inside :func:`user_code` reads as read by
        this run (:data:`USER_CODE_READ`), and the targets it opens (:data:`USER_CODE_OPENED`,
        where the kernel tells: see the module docstring); they are checked before each
        write. :meth:`close` ends the watch (so does the plan's end)."""
        global _hooked
        if not _hooked:
            sys.addaudithook(_on_open)
            _hooked = True
        if self._watch is None and self not in _watching:
            self._watch = OpenWatch.start()
            if self._watch is not None:
                weakref.finalize(self, self._watch.close)
                for entry in self._writes:
                    self._arm(entry.path)
        _watching.add(self)

    def close(self) -> None:
        """Stop watching user code; the plan can still be checked and written."""
        _watching.discard(self)
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()

    def _arm(self, target: Path) -> None:
        """Have the kernel report opens of ``target`` and of the files beside it that carry
        wnpass's data-file names for it (an old data file of a replaced output, which may be
        deleted), as far as they exist."""
        assert self._watch is not None
        self._watch.add(target)
        with contextlib.suppress(OSError, ValueError), os.scandir(target.parent) as entries:
            for entry in entries:
                if _is_data_file_name(target, entry.name):
                    self._watch.add(target.parent / entry.name)

    def _drain(self, counted: bool) -> None:
        """Read the kernel's record of the watched files opened since the last time; they
        count as read by user code when ``counted``."""
        if self._watch is not None:
            opened = self._watch.opened()
            if counted:
                self._user_opened.update(opened)

    def record_user_reads(self) -> bool:
        """Record the files user code read since the last call; whether there were any (the
        plan must then be checked again)."""
        self._drain(_in_user_code())
        paths, self._user_reads = sorted(self._user_reads), set()
        opened, self._user_opened = sorted(self._user_opened), set()
        self.read_all(paths, USER_CODE_READ)
        # opened, not only read: a log the model's code appends to is as much its file
        self.read_all(opened, USER_CODE_OPENED, "which that code may read or write")
        return bool(paths or opened)

    def write(
        self,
        path: str | os.PathLike[str],
        parameter: str,
        *,
        replaces_read: bool = False,
        new: bool = False,
    ) -> Path:
        """Record that ``path`` is written (as ``parameter``). ``replaces_read``: it is also
        read, and writing over it is what was asked (``in_place``). ``new``: a name derived,
        not given, that is written only where nothing is (a data file's, chosen free; a shard
        of an output that replaces none of its name): :meth:`check` refuses it where a file
        is, and :meth:`publish` never renames over what another process put there meanwhile.
        A name that ends in a slash names a folder (``Path`` would drop the slash): refused
        here."""
        if isinstance(path, str) and path.endswith(("/", os.sep)):
            raise OutputError(f"{path}: names a folder, not a file", parameter=parameter)
        path = Path(path)
        if parameter == "json_path" and os.fspath(path) == STANDARD_OUTPUT:
            return path  # the report on standard output (wnpass.report.write_json): no file
        self._writes.append(_Entry(path, parameter))  # twice: check() refuses the collision
        if replaces_read:
            self._may_replace_read.add(_where(path))
        if new:
            self._new.add(_where(path))
        if self._watch is not None:
            self._arm(path)
        self._checked = False
        return path

    def withdraw(self, path: str | os.PathLike[str], parameter: str) -> None:
        """Give up writing ``path`` (as ``parameter``), a target the run found it cannot write
        (``inspect``'s ``--json`` report whose folder went away while it read its models): no
        later check looks at it, and nothing is written there."""
        where = _where(Path(path))
        self._writes = [
            e for e in self._writes if not (e.parameter == parameter and _where(e.path) == where)
        ]
        self._checked = False

    def planned(self, path: str | os.PathLike[str], parameter: str) -> bool:
        """Whether ``path`` is a target already, as ``parameter`` (for a caller that plans in
        two steps); the same path as another parameter is a collision that check() refuses."""
        where = _where(Path(path))
        return any(e.parameter == parameter and _where(e.path) == where for e in self._writes)

    @property
    def targets(self) -> list[Path]:
        return [entry.path for entry in self._writes]

    def reads(self) -> list[Path]:
        return [entry.path for entry in self._reads]

    # -- checking -------------------------------------------------------------------------

    def check(self) -> None:
        """Refuse the plan (``OutputError`` naming the parameter) if any rule is broken."""
        read_where, read_ids = self._read_index()
        for printed_to, stream in _STREAMS.items():
            if (read := read_ids.get(printed_to)) is None:
                continue
            if _stream_file(2) == printed_to:  # the line saying so would go onto it: nowhere
                _quiet_stderr()
            raise OutputError(
                f"is {read.parameter} {read.path}, {read.why}: what the run prints would be "
                "written onto it; refused",
                parameter=stream,
            )
        kept_where = {_where(path): output for path, output in self._kept.items()}
        kept_ids = {
            key: output for path, output in self._kept.items() if (key := identity_of(path))
        }
        seen: dict[Path, _Entry] = {}
        seen_ids: dict[tuple[int, int], _Entry] = {}
        seen_places: dict[tuple[int, int, str], _Entry] = {}
        for entry in self._writes:
            # a derived name (a data file's) too long for the system names no file there, and
            # may never be written (a small model's weights stay inline): refused if it is
            # (t202: refused after the export, for a data file a model needed none of)
            self._check_target(entry, derived=_where(entry.path) in self._new)
            path, where = entry.path, _where(entry.path)
            identity = identity_of(path)
            read = read_where.get(where) or (read_ids.get(identity) if identity else None)
            if read is not None and where not in self._may_replace_read:
                raise OutputError(
                    f"{path}: would overwrite {read.parameter} {read.path}, {read.why}; refused",
                    parameter=entry.parameter,
                )
            owner = kept_where.get(where) or (kept_ids.get(identity) if identity else None)
            if owner is not None and not os.path.lexists(path):  # its file lost (t179)
                raise OutputError(
                    f"{path}: {owner}, which this run replaces, names it as a file it needs "
                    "(none is there now): written, it would read as the old output's until "
                    "the new one is in place; refused",
                    parameter=entry.parameter,
                )
            if owner is not None:
                raise OutputError(
                    f"{path}: belongs to {owner}, which this run replaces and leaves whole "
                    "until the new one is in place; refused",
                    parameter=entry.parameter,
                )
            place = _place(path)
            other = (
                seen.get(where)
                or (seen_ids.get(identity) if identity else None)
                or (seen_places.get(place) if place else None)
            )
            if other is not None:  # named after the one planned first: what the caller chose
                raise OutputError(  # (--json), not what a command derived from its input
                    f"{other.path}: is also another output of this run ({path}); refused",
                    parameter=other.parameter,
                )
            seen[where] = entry
            if identity is not None:
                seen_ids[identity] = entry
            if place is not None:
                seen_places[place] = entry
        for entry in self._writes:  # after the rules above, whose reasons say more
            if (
                _where(entry.path) in self._new
                and entry.path not in self.published
                and os.path.lexists(entry.path)
            ):
                raise OutputError(
                    f"{entry.path}: exists, and is no part of an output this run replaces: "
                    "a name the run derives is written only where nothing is (move it away, "
                    "or write elsewhere); refused",
                    parameter=entry.parameter,
                )
        for entry in self._writes:
            if entry.parameter == "json_path":
                _require_json_name(entry.path)
        for entry in self._writes:
            self._probe(entry)
        for entry in self._writes:
            first = self._first_at.setdefault(id(entry), _where(entry.path))
            if first != _where(entry.path):
                raise OutputError(self._folder_changed(entry), parameter=entry.parameter)
        self._write_at = {self._first_at[id(entry)]: entry for entry in reversed(self._writes)}
        self._checked = True

    def _read_index(
        self,
    ) -> tuple[dict[Path, _Entry], dict[tuple[int, int], _Entry]]:
        """The files read, by where they are and by (device, inode), the first entry of each.

        Built up across checks: an entry is resolved once, when the check after it was
        recorded comes (a dynamo export records thousands of files the exporter imports, and
        the plan is checked before every write); one whose file did not exist is looked at
        again each time.
        """
        where, ids = self._read_where, self._read_ids
        for entry in self._reads[self._indexed :]:
            where.setdefault(Path(os.path.realpath(entry.path)), entry)
            where.setdefault(_where(entry.path), entry)
            self._unresolved.append(entry)
        self._indexed = len(self._reads)
        unresolved = []
        for entry in self._unresolved:
            if (identity := identity_of(entry.path)) is None:
                unresolved.append(entry)
            else:
                ids.setdefault(identity, entry)
        self._unresolved = unresolved
        return where, ids

    def _probe(self, entry: _Entry) -> None:
        """Make and remove a file in the target's folder, once per folder: a folder that
        cannot take files (read-only, no permission, ``/proc``) is refused now, before anything
        is written, not after the outputs before it were published."""
        folder = Path(os.path.realpath(entry.path.parent))
        if folder in self._probed:
            return
        with interrupts.staging(), interrupts.held():
            try:
                handle, name = tempfile.mkstemp(prefix=STAGING_PREFIX, dir=folder)
            except OSError as error:
                raise OutputError(
                    f"{entry.path}: cannot write there ({error.strerror or error})",
                    parameter=entry.parameter,
                ) from None
            os.close(handle)
            os.unlink(name)
        self._probed.add(folder)

    @staticmethod
    def _check_target(entry: _Entry, *, derived: bool = False) -> None:
        path = entry.path
        if path.name in ("", ".", ".."):
            raise OutputError(f"{path}: is a directory", parameter=entry.parameter)
        if "\0" in str(path):
            raise OutputError(f"{path}: contains a NUL byte", parameter=entry.parameter)
        if not path.parent.is_dir():
            if path.parent.exists():  # a file where its folder should be
                raise OutputError(
                    f"{path}: {path.parent} is not a directory", parameter=entry.parameter
                )
            raise OutputError(f"{path}: no such directory", parameter=entry.parameter)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        except OSError as error:
            if derived and error.errno == errno.ENAMETOOLONG:
                return
            raise OutputError(
                f"{path}: cannot be examined ({error.strerror})", parameter=entry.parameter
            ) from None
        if not stat.S_ISREG(mode):
            raise OutputError(
                f"{path}: exists and is {kind_of(mode)}; refused", parameter=entry.parameter
            )

    # -- writing --------------------------------------------------------------------------

    def _require(self, target: Path) -> _Entry:
        """The plan's entry for ``target``, checked again at the last moment; a refusal names
        what this run has already put in place (a ``--json`` swapped for a link after the
        model was published said "refused" alone, t175)."""
        try:
            return self._entry_checked(target)
        except OutputError as error:
            if not self.published or "; already written: " in error.detail:
                raise
            detail = self._and_written(error.detail)
            raise OutputError(detail, parameter=error.parameter, also=error.also) from None

    def _entry_checked(self, target: Path) -> _Entry:
        if not self._checked:
            raise AssertionError("IOPlan.check() must pass before anything is written")
        if self.record_user_reads():
            self.check()
        where = _where(target)
        # the places check() resolved (one lookup per file published: a loop over every
        # target's realpath made 800 shards take 16 s)
        entry = self._write_at.get(where)
        if entry is None:
            planned = next((e for e in self._writes if e.path == target), None)
            if planned is None:
                raise AssertionError(f"{target} is not a planned target")
            raise OutputError(self._folder_changed(planned), parameter=planned.parameter)
        self._check_target(entry)  # again, at the last moment
        identity = identity_of(target)
        read = self._read_ids.get(identity) if identity is not None else None
        if read is not None and where not in self._may_replace_read:
            raise OutputError(  # a hard link to a file read, put there since the check
                f"{target}: is now {read.parameter} {read.path}, which this run reads; refused",
                parameter=entry.parameter,
            )
        return entry

    def _folder_changed(self, entry: _Entry) -> str:
        """A target whose folder leads elsewhere than when the plan was first checked: a
        folder on the way was moved or replaced by a link (by another process), maybe onto
        what is read or onto another folder's files. A check again (after user code read
        files) must not take the new place as the planned one."""
        where = _where(entry.path)
        message = (
            f"{entry.path}: its folder changed while this run went on (it now leads to "
            f"{where.parent}); refused"
        )
        return self._and_written(message)

    def _cannot_write(self, path: Path, error: OSError, entry: _Entry) -> OutputError:
        """A write that failed (a full disk), as one line that also names what this run has
        already put in place, if anything: an error must not read as "nothing was written"."""
        message = f"{path}: cannot write ({error.strerror or _short_write_reason(error)})"
        if error.errno == errno.ENOENT:  # its folder moved away, maybe replaced (t175)
            planned = next((where for where, e in self._write_at.items() if e is entry), None)
            if planned is not None and _where(entry.path) != planned:  # (its folder's, t177)
                return OutputError(self._folder_changed(entry), parameter=entry.parameter)
            if not entry.path.parent.is_dir():
                message = f"{entry.path}: cannot write: its folder was moved or removed meanwhile"
        return OutputError(self._and_written(message), parameter=entry.parameter)

    def _and_written(self, message: str) -> str:
        """``message`` and what this run has already put in place, if anything: an error must
        not read as "nothing was written"."""
        if not self.published:
            return message
        return message + "; already written: " + ", ".join(str(p) for p in self.published)

    @contextlib.contextmanager
    def replace(self, target: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
        """A staging path beside planned ``target`` to write; renamed onto it when the block
        ends without error, removed otherwise. An OS error (a full disk) is one line."""
        target = Path(target)
        entry = self._require(target)
        with interrupts.staging():
            temporary: Path | None = None
            parent: int | None = None
            try:
                with interrupts.held():  # made, and its removal below set up, as one step
                    parent = _open_folder(target.parent)
                    handle, name = tempfile.mkstemp(
                        prefix=STAGING_PREFIX, suffix=suffix, dir=target.parent
                    )
                    temporary = anchored(name)  # user code may change the cwd
                    try:  # the mode a new file gets (mkstemp makes it private to the owner)
                        os.fchmod(handle, self._output_mode())
                    finally:
                        os.close(handle)
                yield temporary
                with interrupts.held():  # a signal in the rename is raised once it is recorded
                    os.replace(temporary, target)
                    self.published.append(target)
                    interrupts.wrote(target)
            except OSError as error:
                raise self._cannot_write(target, error, entry) from None
            finally:
                with interrupts.held():
                    if temporary is not None:
                        with contextlib.suppress(OSError):  # where it is, if its folder moved
                            os.unlink(_relative(temporary, parent), dir_fd=parent)
                    _close(parent)

    @contextlib.contextmanager
    def staging(self, target: str | os.PathLike[str]) -> Iterator[Path]:
        """A fresh staging folder beside planned ``target``, removed when the block ends.

        The files staged in it are published with :meth:`publish`; from the first of them to
        the end of the block, a stop signal waits (:mod:`wnpass.interrupts`), so that the
        result's renames all happen or none does."""
        target = Path(target)
        entry = self._require(target)
        with interrupts.staging():
            folder: Path | None = None
            parent: int | None = None
            try:
                with interrupts.held():  # made, and its removal below set up, as one step
                    parent = _open_folder(target.parent)
                    made = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target.parent)
                    folder = anchored(made)  # user code may change the cwd
                    self._stagings.add(folder)
                yield folder
            except OSError as error:
                where = target if folder is not None else target.parent
                raise self._cannot_write(where, error, entry) from None
            finally:
                with interrupts.held():  # a second signal must not cut the removal short
                    if folder is not None:  # where it is, if its folder moved meanwhile
                        shutil.rmtree(_relative(folder, parent), ignore_errors=True, dir_fd=parent)
                        self._stagings.discard(folder)
                        if folder in self._publishing:
                            self._publishing.discard(folder)
                            _close(self._locks.pop(folder, None))
                            interrupts.release()
                    _close(parent)

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """Publish the files of one output in the block (shards, then their index): where one
        cannot be put in place, those the block put at names that were free when planned are
        removed again, so that no shard is left that no index names, which the next run
        would refuse to write over (t242); one that replaced a file gets that file back (a
        second name of it, a hard link, is kept in the staging folder until the block's end:
        a shard replaced before an index that could not be, immutable or a bind mount, left
        the old index naming new shards, t328), and the error says which. Where the folder
        takes no hard link, a file replaced stays replaced, and the error names it."""
        self._together = len(self.published)
        try:
            yield
        finally:
            self._together = None

    def publish(self, staged: Path, target: str | os.PathLike[str]) -> None:
        """Rename a file staged in a :meth:`staging` folder onto planned ``target``."""
        try:
            self._publish(staged, Path(target))
        except OutputError as error:
            raise self._taken_back(error) from None

    def _taken_back(self, error: OutputError) -> OutputError:
        """``error``, a publish that failed, where a :meth:`together` block had put files in
        place at free names before it: those files removed (each only if it is still the file
        put there), and the error saying so."""
        if self._together is None or len(self.published) == self._together:
            return error
        removed, restored = [], []
        for target in reversed(self.published[self._together :]):
            if target in self._put_new and _as_it_is(target) == self._put_new[target]:
                with contextlib.suppress(OSError):
                    os.unlink(target)
                    removed.append(target)
            elif target in self._replaced and _as_it_is(target) == self._replaced[target][1]:
                with contextlib.suppress(OSError):
                    os.replace(self._replaced[target][0], target)
                    restored.append(target)
        for target in (*removed, *restored):
            interrupts.taken_back(target)
        if not removed and not restored:
            return error
        self.published = [p for p in self.published if p not in removed and p not in restored]
        message = self._and_written(error.detail.split("; already written: ")[0])
        for said, paths in (("removed again", removed), ("put back as they were", restored)):
            if paths:
                message += f"; {said}: " + ", ".join(str(p) for p in reversed(paths))
        return OutputError(message, parameter=error.parameter, also=error.also)

    def _output_mode(self) -> int:
        """The mode an output gets: a new file's (0o666 less the umask), less what group and
        others may not do with a file this run reads: an output made from a private
        checkpoint is private (t345: a 0600 file folded into a 0644 one)."""
        if self._mode is not None and self._mode[0] == len(self._reads):
            return self._mode[1]  # asked once per output: a sharded one's many reads
        mode = 0o666 & ~_umask()
        for entry in self._reads:
            with contextlib.suppress(OSError):  # one not there: refused where it is read
                mode &= os.stat(entry.path).st_mode | 0o600
        self._mode = len(self._reads), mode
        return mode

    def _publish(self, staged: Path, target: Path) -> None:
        entry = self._require(target)
        folder = next((f for f in self._stagings if staged.is_relative_to(f)), None)
        if folder is None:
            raise AssertionError(f"{staged} is not in a staging folder of this plan")
        if folder not in self._publishing:
            try:
                lock = _lock(target.parent)  # before the hold: a signal may end the wait
            except TimeoutError as error:
                raise self._cannot_write(target, error, entry) from None
            self._publishing.add(folder)
            if lock is not None:
                self._locks[folder] = lock
            interrupts.hold()
        try:
            mode = os.stat(staged).st_mode & 0o7777
            if mode & ~self._output_mode() & 0o777:  # written in the folder as a new file is
                os.chmod(staged, mode & self._output_mode())
            if _where(target) in self._new:
                _rename_new(staged, target)
                self._put_new[target] = _as_it_is(target)  # not by inode alone (reused, t243)
            else:
                kept = None if self._together is None else self._second_name(target, folder)
                os.replace(staged, target)
                if kept is not None:
                    self._replaced[target] = (kept, _as_it_is(target))
            self.published.append(target)
            interrupts.wrote(target)
        except FileExistsError:
            message = (
                f"{target}: another process put a file there while this run went on (its "
                "name was free when it was chosen); refused"
            )
            raise OutputError(self._and_written(message), parameter=entry.parameter) from None
        except OSError as error:
            raise self._cannot_write(target, error, entry) from None

    def _second_name(self, target: Path, folder: Path) -> Path | None:
        """A hard link to the file at ``target`` in staging folder ``folder`` (beside it: the
        same file system), that :meth:`_taken_back` puts back; None where there is no file
        or the folder takes no hard link."""
        for n in itertools.count():  # a target replaced again in this plan has one already
            kept = folder / f"{STAGING_PREFIX}replaced-{n}"
            try:
                os.link(target, kept, follow_symlinks=False)
            except FileExistsError:
                continue
            except OSError:
                return None
            return kept
        raise AssertionError("unreachable")

    # -- deleting -------------------------------------------------------------------------

    def may_delete(self, path: Path, output: Path, created: Collection[str] = ()) -> str | None:
        """None when old data file ``path`` of replaced ``output`` may be deleted; else why not
        ("gone" when there is nothing there). ``created``: the data-file names that the
        replaced output's own record says wnpass wrote for it (``wnpass.onnx.io``); a file
        not listed there is not wnpass's, whatever its name, and another model may use it."""
        try:
            st = os.lstat(path)
        except (OSError, ValueError):  # ValueError: a NUL byte in the name
            return "gone"
        if Path(os.path.realpath(path.parent)) != Path(os.path.realpath(output.parent)):
            return "not beside the output"
        if not _is_data_file_name(output, path.name):
            return "not a data-file name wnpass gives this output"
        if path.name not in created:
            return "not created by wnpass"
        if not stat.S_ISREG(st.st_mode):
            return kind_of(st.st_mode)
        if st.st_nlink != 1:
            return "has other hard links"
        identity = (st.st_dev, st.st_ino)
        if any(identity_of(read) == identity for read in self.reads()):
            return "read by this run"
        if any(_where(t) == _where(path) for t in self.targets):
            return "written by this run"
        if self._kept_as.get(Path(path)) != _as_it_is(path):  # another file came since the
            return "not the file there when this run planned"  # plan (:meth:`keep`), t175
        return None

    def delete_old_data(
        self,
        referenced: Iterable[Path],
        output: Path,
        *,
        created: Collection[str] = (),
        keep: str | None = None,
    ) -> list[Path]:
        """Delete the files in ``referenced`` (the data files a replaced ``output`` used) that
        :meth:`may_delete` allows (``created``: the names the output's record lists); the
        others are listed in :attr:`left`, the deleted in :attr:`removed`; ``keep``: why none
        may go (the replaced model lives on under another name). Returns the deleted."""
        self.record_user_reads()
        deleted = []
        for path in sorted(set(referenced)):
            if _where(path) == _where(output):
                continue  # the output itself (a tensor's data kept in the model file): replaced
            reason = self.may_delete(path, output, created)
            if reason is None and keep is not None:
                reason = keep
            if reason == "gone":
                continue
            if reason is not None:
                self.left.append(f"{path}: kept ({reason})")
                logger.info("old data file %s kept: %s", path, reason)
                continue
            try:
                path.unlink()
            except OSError as error:
                self.left.append(f"{path}: kept (cannot delete: {error.strerror})")
                continue
            deleted.append(path)
            self.removed.append(path)
            interrupts.removed(path)
            logger.info("deleted old data file %s", path)
        return deleted


def _short_write_reason(error: OSError) -> str:
    """A write that came up short without the OS's reason (numpy's ``tofile``, which onnx-ir
    writes data files with, says only "6144 requested and 2368 written"): what can cut a
    regular file's write short, since which one it was is not known."""
    return f"{error}: the disk is full, or a quota or the file size limit was reached"
