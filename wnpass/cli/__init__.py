"""The ``wnpass`` command line: parse, validate, call the library, render, return an exit code.

Exit codes, and no others: 0 success; 1 a check ran and failed; 2 bad input or usage
(including errors raised by the user's model.py or checkpoint, and a ``sys.exit()`` in the
model's code, whatever code it asked for); 3 an internal error (one line;
``-v`` shows the traceback); 141, without a word, when the reader of the output went away (a
closed pipe, as for a process that SIGPIPE stops). A run stopped by SIGINT, SIGTERM or
another stop signal (SIGHUP, ...: :data:`wnpass.program.STOP_SIGNALS`) publishes nothing more
and exits with the shell's code for the signal (130, 143, 129, ...): at once
when nothing is staged, after removing its staging otherwise, and after the last rename when
it comes while a result is being published (:mod:`wnpass.interrupts`); its one line names
what the run had already put in place or deleted, if anything.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import errno
import logging
import os
import re
import select
import signal
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from wnpass import __version__, interrupts
from wnpass.cli import check, convert, export, fold, inspect, train_rewrite
from wnpass.cli.options import flags_for
from wnpass.cli.output import Printer
from wnpass.errors import WnpassError, one_line, printable
from wnpass.plan import (
    STANDARD_OUTPUT,
    stderr_given_back,
    streams_guarded,
    user_code,
    user_code_ran,
)
from wnpass.program import changes_said, stop, stop_line

if TYPE_CHECKING:
    from wnpass.report import JsonOutput

__all__ = ["EXIT_BAD_INPUT", "EXIT_CHECK_FAILED", "EXIT_INTERNAL", "EXIT_OK", "main", "run"]

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # the reader of stdout went away

Command = Callable[[argparse.Namespace, Printer], int]

# Each command module has ``add_arguments(parser)`` and ``run(args, out) -> exit code``; the
# first line of ``run``'s docstring is its help.
_COMMANDS = {
    "inspect": inspect,
    "fold": fold,
    "check": check,
    "export": export,
    "train-rewrite": train_rewrite,
    "convert": convert,
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit 2, like every bad input,
    and a negative number in exponent form is a value, not an option: ``--atol -1e-9`` said
    "expected one argument" (t211); it is refused as the tolerance it is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

    def error(self, message: str) -> NoReturn:
        # an argument is the user's text: a newline or an escape in it is shown, not sent
        # to the terminal (t128: an unknown argument holding one made two lines)
        line = printable(f"wnpass: error: {message} (see {self.prog} --help)")
        self.exit(EXIT_BAD_INPUT, line + "\n")


class _Once(argparse.Action):
    """A single-valued option (argparse's ``store``): given twice, which value was meant is
    not known (``--json a --json b`` would write b and never a), so it is a usage error."""

    given = False

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if self.given and option_string is not None:
            parser.error(f"{option_string} is given twice; give it once")
        self.given = True
        setattr(namespace, self.dest, values)


def _once(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser``, its single-valued options (argparse's ``store``) made :class:`_Once`."""
    parser.register("action", None, _Once)
    parser.register("action", "store", _Once)
    return parser


# the options of the output, before the command or after it (``wnpass fold m.onnx -q``)
_OUTPUT_OPTIONS = ("verbose", "quiet", "plain")


def _add_output_options(parser: argparse._ActionsContainer, prefix: str = "") -> None:
    """``-v``, ``-q`` and ``--plain``; a command's own land in ``prefix``-named fields, which
    :func:`_output_options` adds to the ones given before the command (argparse's subcommand
    would set the same field anew, and ``wnpass -v fold m.onnx -v`` is ``-vv``)."""
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, dest=prefix + "verbose",
        help="log more (-vv: debug)",
    )  # fmt: skip
    parser.add_argument(
        "-q", "--quiet", action="store_true", dest=prefix + "quiet", help="print the summary only"
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        dest=prefix + "plain",
        help="plain-text tables that never wrap (the default without a terminal)",
    )


def _output_options(args: argparse.Namespace) -> None:
    """The output options given before the command and after it, as one."""
    args.verbose += args.command_verbose
    args.quiet = args.quiet or args.command_quiet
    args.plain = args.plain or args.command_plain
    for name in _OUTPUT_OPTIONS:
        delattr(args, "command_" + name)


# what ``wnpass --help`` says the tool is (the module's docstring is for its readers)
DESCRIPTION = (
    "Put weight normalization into a PyTorch model for training, fold it out of PyTorch "
    "models, ONNX files and checkpoints for deployment, and check that nothing changed."
)


def _build_parser() -> argparse.ArgumentParser:
    parser = _once(_Parser(prog="wnpass", description=DESCRIPTION))
    parser.add_argument("--version", action="version", version=f"wnpass {__version__}")
    _add_output_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")  # required: _parsed
    for name, module in _COMMANDS.items():
        doc = (module.run.__doc__ or "").strip().splitlines()[0]
        sub = _once(commands.add_parser(name, help=doc, description=doc))
        module.add_arguments(sub)
        _add_output_options(sub.add_argument_group("output"), prefix="command_")
        sub.set_defaults(run=module.run, parser=sub)
    return parser


def _parsed(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments; one the command does not take is its usage error, pointing at its own
    help (``wnpass inspect --help``; the program's said ``wnpass --help``, t143)."""
    parser = _build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    for index, argument in enumerate(argv):  # argparse reads a "--" before it as the command
        if argument == "--":  # (t159): nothing before the command is positional
            del argv[index]
            break
        if not argument.startswith("-"):
            break
    args, extra = parser.parse_known_args(argv)
    if args.command is None:  # an unknown option is said before a missing command (t155)
        extra = [argument for argument in extra if argument != "--"]  # no option (t156)
        said = f"unrecognized arguments: {' '.join(extra)}" if extra else None
        parser.error(said or "the following arguments are required: COMMAND")
    if extra:
        given = argv
        after = Counter(given[given.index(args.command) + 1 :] if args.command in given else [])
        owner = args.parser if not Counter(extra) - after else parser  # each one after it
        owner.error(f"unrecognized arguments: {' '.join(extra)}{_split_list(owner, extra)}")
    del args.parser
    return args


def _split_list(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """A hint where a command that takes a list of files got some after an option (``inspect
    a.onnx --strict b.onnx``: argparse reads a list in one piece, t196)."""
    lists = any(
        not action.option_strings and action.nargs in ("+", "*") for action in parser._actions
    )
    if lists and not any(argument.startswith("-") for argument in extra):  # files alone
        return " (give the files together, before the options or after them)"
    return ""


class _PrintableFormatter(logging.Formatter):
    """Log lines with control characters escaped, as every line the command line prints: the
    library's messages name a model's values, which are untrusted (a name holding a newline
    would forge a line of its own). A traceback (``-v``) follows as Python writes it."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see the module docstring)."""
    try:
        args = _parsed(argv)
    except SystemExit as done:  # --help, --version, or a usage error (already printed)
        return done.code if isinstance(done.code, int) else EXIT_BAD_INPUT
    _output_options(args)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    if args.quiet and not args.verbose:  # the summary only: the library's warnings with -v
        level = logging.ERROR
    handler = logging.StreamHandler()
    handler.setFormatter(_PrintableFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    # Python warnings of the libraries underneath (torch.load, the exporters) are theirs, not
    # the user's: shown with -v only, so that an error stays one line.
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.WARNING if args.verbose else logging.ERROR)
    out: Printer | None = None
    try:
        with interrupts.handled(stop), streams_guarded():
            with _json_on_stdout(args) as json_output:
                out = Printer(quiet=args.quiet, plain=args.plain)
                code = int(args.run(args, out))
            if json_output is not None:  # the JSON is the output; what else failed is stderr's
                return code if json_output.failed is None else _unprinted(json_output.failed, code)
            if out.json_failed is not None:  # said after the verdict, which keeps its code
                code = _json_unwritten(out.json_failed, code, args)
            return code if out.failed is None else _unprinted(out.failed, code)
    except interrupts.STOPS as stopped:
        if (
            isinstance(stopped, KeyboardInterrupt)
            and interrupts.stopped_by() is None
            and interrupts.no_sigint_came()
        ):  # the model's code raised it
            return _models_own(stopped, args, " (no Ctrl-C came)")  # t345: a stop, 130
        fallback = signal.SIGINT if isinstance(stopped, KeyboardInterrupt) else signal.SIGTERM
        return _stopped(interrupts.stopped_by() or fallback)
    except SystemExit as exited:
        return _models_own(exited, args)
    except BaseException as error:  # any other, also a BaseException no inner block named
        # A stop signal raised as an exception, which the code it came through may have
        # wrapped in another (numpy's imports, torch's C++, an exporter's "export failed").
        if (stopped_by := interrupts.stopped_by()) is not None:
            return _stopped(stopped_by)
        if out is not None and out.json_failed is not None:  # given up before it (t163)
            _failed(out.json_failed, args)
        return _failed(error, args)
    finally:
        logging.captureWarnings(False)
        stderr_given_back()


def _unprinted(error: OSError, code: int) -> int:
    """The run went on without its report, which standard output would not take: say so, and
    what the run put in place (each file whole), on stderr. Exit 2, as for any file of the
    user's that cannot be written, where the run succeeded (``code`` 0); a failed check keeps
    its 1, the verdict a pipeline reads."""
    said = changes_said(*interrupts.changes())
    _tell(f"wnpass: error: cannot write to standard output ({error.strerror or error}){said}")
    return code or EXIT_BAD_INPUT


def _json_unwritten(error: BaseException, code: int, args: argparse.Namespace) -> int:
    """The ``--json`` report could not be written (a full disk): its error line, and the exit
    code: 2, as for any file of the user's that cannot be written, where the run succeeded; a
    failed check or gate keeps its 1, the verdict a pipeline reads."""
    failed = _failed(error, args)
    return code or failed


def _stopped(signum: int) -> int:
    """A stop signal that unwound the stack: staging is removed; say so, and its exit code."""
    interrupts.saying_stop()
    _tell(stop_line(signum, *interrupts.changes()))
    return 128 + signum


def _models_own(error: BaseException, args: argparse.Namespace, said: str = "") -> int:
    """A ``sys.exit()`` of the model's code that reached the command line, or a
    ``KeyboardInterrupt`` it raised itself (``said``: no Ctrl-C came): wnpass catches an exit
    itself where it runs the model's code (loading, its forwards, the tracers) and names the
    step; this is the net for a path that does not. Nothing of wnpass's own raises SystemExit
    once the arguments are parsed, nor a KeyboardInterrupt but a Ctrl-C's. Bad input, exit 2:
    the model's exit code is not wnpass's."""
    from wnpass.fx.forward import what_it_did  # torch is imported: the model's code ran

    given = [getattr(args, "model", None), getattr(args, "check_model", None)]
    paths = [p for value in given for p in (value if isinstance(value, list) else [value])]
    model_py = next((p for p in paths if isinstance(p, Path) and p.suffix == ".py"), None)
    where = f"{printable(str(model_py))}: " if model_py else ""
    _tell(f"wnpass: error: {where}the model's code {what_it_did(error)}{said}")
    return EXIT_BAD_INPUT


# Whether a command of this process wrote its report to standard output (``--json -``).
_json_to_stdout = False


@contextlib.contextmanager
def _json_on_stdout(args: argparse.Namespace) -> Iterator[JsonOutput | None]:
    """With ``--json -``, standard output holds the JSON alone: what the command prints, and
    whatever a model.py's code writes there (``print``, or its native code and subprocesses
    at file descriptor 1), goes to standard error meanwhile. Yields where the JSON goes, and
    whether writing it failed (None without ``--json -``)."""
    if getattr(args, "json", None) != Path(STANDARD_OUTPUT):
        yield None
        return
    from wnpass.report import JSON_OUTPUT, JsonOutput

    global _json_to_stdout
    _json_to_stdout = True

    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    failed: OSError | None = None
    saved = -1
    if sys.__stdout__ is None:  # closed when the process started (>&-): fd 1 is another file
        failed = OSError(errno.EBADF, os.strerror(errno.EBADF))
    else:
        try:
            saved = os.dup(1)
        except OSError as closed:
            failed = closed
        else:
            os.dup2(2, 1)
    output = JsonOutput(saved if saved >= 0 else sys.stderr, failed)
    token = JSON_OUTPUT.set(output)
    # standard output meanwhile is a stream of its own onto stderr's file: a model.py that
    # closes its ``sys.stdout`` closes that one, not ``sys.stderr``, which the error line
    # that ends a failed run needs (t128: the line was lost, exit 2 said alone)
    printed = _stream_onto(2)
    try:
        with contextlib.redirect_stdout(printed or sys.stderr):
            yield output
    finally:
        JSON_OUTPUT.reset(token)
        if printed is not None:
            with contextlib.suppress(OSError, ValueError):
                printed.close()
        if saved >= 0:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 1)
            os.close(saved)


def _stream_onto(fd: int) -> TextIO | None:
    """A line-buffered text stream writing to a copy of file descriptor ``fd``, as
    ``sys.stderr`` writes (its encoding and error handling); None where it cannot be had."""
    try:
        copy = os.dup(fd)
    except OSError:
        return None
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    return open(  # closed by the caller, whose block outlives this call
        copy, "w", buffering=1, encoding=encoding, errors="backslashreplace", closefd=True
    )


def _failed(error: BaseException, args: argparse.Namespace) -> int:
    """An error as one line on stderr, and its exit code."""
    if isinstance(error, WnpassError) and _broken_pipe_in(error) and _stdout_reader_gone():
        # the model's own print into a pipe whose reader went away (``wnpass inspect
        # model.py | head -1``): the reader's doing, not the model's (t228: exit 2, blamed on
        # the forward), ended as below
        return EXIT_BROKEN_PIPE
    if isinstance(error, WnpassError):
        _tell(f"wnpass: error: {error.render(flags_for(args))}")
        return error.exit_code
    if isinstance(error, BrokenPipeError) and error.filename is None:
        # whoever read the output went away (``wnpass check ... | head -1``): end quietly, as
        # a process stopped by SIGPIPE does, whose exit code the shell reports (the program
        # ends without flushing again: ``run``; a caller of ``main`` keeps its standard output)
        return EXIT_BROKEN_PIPE
    if isinstance(error, OSError):  # a file of the user's that cannot be read or written
        where = f"{error.filename}: " if error.filename else ""
        if not where and error.errno == errno.ENOMEM:  # a mapping the system refused (t196)
            where = "out of memory: "
        _tell(f"wnpass: error: {printable(where)}{error.strerror or error}")
        return EXIT_BAD_INPUT
    # a bug of wnpass's own: say so in one line
    if args.verbose:
        traceback.print_exc()
    hint = "" if args.verbose else " (run with -v to see the traceback)"
    _tell(f"wnpass: internal error: {one_line(error, with_type=True)}{hint}")
    return EXIT_INTERNAL


def _broken_pipe_in(error: BaseException) -> bool:
    """Whether ``error`` was caused by a write to a pipe without a reader (no file named)."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, BrokenPipeError) and cause.filename is None:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reader closed it (the kernel reports an error
    on its write end), and not some other pipe of the model's own that broke."""
    try:
        poller = select.poll()
        poller.register(1, select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


def _tell(line: str) -> None:
    """One line on stderr; a closed stderr loses the line, never the exit code. Where only
    the Python object was closed (by a model.py's code), the line goes to file descriptor 2."""
    try:
        print(line, file=sys.stderr)
    except ValueError:
        with contextlib.suppress(OSError):
            os.write(2, (line + "\n").encode("utf-8", "backslashreplace"))
    except OSError:
        pass


def _users_exit_work(code: int) -> None:
    """Where a model.py (or its forward) ran, what Python does as it ends, once the command's
    output is flushed: threading's shutdown (a thread pool told to stop, then the threads it
    started that are no daemons waited for), then the ``atexit`` handlers (its own, and a
    ``TemporaryDirectory``'s removal): ending with ``os._exit`` skipped them (t225).

    It is the model's code (:func:`~wnpass.plan.user_code`): an ``os._exit`` of a handler
    raises there, and cannot give the program another exit code (t234: a failed run exited
    0). A stop signal raises where the wait or a handler is (as where something is staged):
    the other handlers still run, then the program ends as the signal ends it (t232, t234).
    What they print cannot spoil wnpass's output: it goes to standard error where standard
    output holds the ``--json -`` report, and nowhere where standard output's reader went
    away (t232: the JSON had a line after it; 141 came with a traceback)."""
    if code == EXIT_BROKEN_PIPE or _stdout_reader_gone():
        _point_stdout_at(None)
    elif _json_to_stdout:
        _point_stdout_at(2)
    interrupts.forget_stop()  # one that ended the command is said already
    # a stop, said below; a thread's sys.exit, or a handler's os._exit, ends nothing here
    ended: tuple[type[BaseException], ...] = (*interrupts.STOPS, SystemExit)
    with user_code(), interrupts.staging():
        try:
            shutdown = getattr(threading, "_shutdown", None)
            if shutdown is not None:  # as Python ends: a thread pool told to stop, then the
                shutdown()  # wait (a pool's idle workers, joined first, never ended)
            else:
                for thread in threading.enumerate():
                    if thread is not threading.current_thread() and not thread.daemon:
                        thread.join()
        except ended:
            pass
        with _stops_unsaid():
            atexit._run_exitfuncs()  # a handler's exception said by Python, the next run
    if (stopped := interrupts.stopped_by()) is not None:
        stop(stopped)  # the line, and the signal's exit code


@contextlib.contextmanager
def _stops_unsaid() -> Iterator[None]:
    """A stop signal raised in an ``atexit`` handler (the model's, or torch's own) is said in
    the program's one stop line, not by Python as a handler's error with a traceback (t328);
    any other error of a handler is said as Python says it, a ``KeyboardInterrupt`` it
    raises itself too (t329)."""
    before = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        signalled = interrupts.stopped_by() is not None
        if not (signalled and isinstance(unraisable.exc_value, interrupts.STOPS)):
            before(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        if sys.unraisablehook is hook:  # else a handler set its own: it stays
            sys.unraisablehook = before


def _point_stdout_at(fd: int | None) -> None:
    """File descriptor 1 onto ``fd`` (None: /dev/null), for what is written there from now."""
    with contextlib.suppress(OSError):
        target = os.open(os.devnull, os.O_WRONLY) if fd is None else fd
        os.dup2(target, 1)
        if fd is None:
            os.close(target)


def run() -> NoReturn:
    """The ``wnpass`` program: :func:`main`, then exit without tearing the interpreter down.

    Every file a command writes is closed and renamed into place before ``main`` returns, and
    its output is flushed here; finalizing the modules of onnx, numpy and torch would only add
    about 50 ms to every command. A model.py's exit-time work runs first, as ``python
    model.py`` runs it (:func:`_users_exit_work`).
    """
    code = _flushed(main())
    if user_code_ran():
        _users_exit_work(code)
        if _flushed(code) != code:  # what it printed met a reader gone: no verdict on the
            _point_stdout_at(None)  # command, whose own output was all read
    logging.shutdown()
    os._exit(_flushed(code))


def _flushed(code: int) -> int:
    """``code`` once the output streams are flushed: a reader of standard output that went
    away before the last of it makes it the code of a process SIGPIPE stopped."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # the reader went away before the last of the output
            code = EXIT_BROKEN_PIPE if stream is sys.stdout else code
        except (OSError, ValueError):  # a closed stream: nothing more to say
            pass
    return code
