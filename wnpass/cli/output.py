"""Printing for the CLI: tables and lines for a terminal, or for a log that a pipeline keeps.

On a terminal, tables are drawn with ``rich`` where they fit its width whole (one wider is
plain text: rich would fold a number inside a cell). Without one (a CI log, a pipe, a file), with
``NO_COLOR`` or ``TERM=dumb`` set, or with ``--plain``, a table is plain text: columns padded
to their widest cell and never wrapped, so a weight name or a number is never split across
lines, whatever the width. ``--quiet`` prints the summary lines only. Every name a model
supplies is printed with control characters escaped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO, cast

from wnpass.errors import OutputError, WnpassError, printable

__all__ = ["Printer", "is_plain_terminal"]


def is_plain_terminal(stream: TextIO) -> bool:
    """True where output should be plain text: not a terminal, NO_COLOR set to anything but
    the empty string (no-color.org), or TERM=dumb."""
    return (
        not stream.isatty()
        or bool(os.environ.get("NO_COLOR"))
        or os.environ.get("TERM", "") == "dumb"
    )


class _Escaping:
    """A text stream that writes a character its encoding lacks escaped (``\\xe8``), as
    standard error does: standard output encoded as ASCII (``PYTHONIOENCODING=ascii``) and a
    model named ``modèle.onnx`` raised UnicodeEncodeError, exit 3, in every line and table
    that named it (t162, t163); anything else is the stream's own."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except UnicodeEncodeError:
            encoding = getattr(self._stream, "encoding", None) or "ascii"
            return self._stream.write(text.encode(encoding, "backslashreplace").decode(encoding))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class Printer:
    """Where a command's report goes: ``table`` and ``line`` for detail, ``summary`` always."""

    def __init__(
        self, *, quiet: bool = False, plain: bool | None = None, stream: TextIO | None = None
    ) -> None:
        self.stream = cast(TextIO, _Escaping(stream if stream is not None else sys.stdout))
        self.quiet = quiet
        self.plain = True if plain else is_plain_terminal(self.stream)
        # a progress bar (on stderr) only where nothing asked for plain or quiet output
        self.bars = not (plain or quiet or is_plain_terminal(sys.stderr))
        self._subject: str | None = None
        # the error that made the stream unwritable (a full disk under ``> out.txt``,
        # /dev/full): the run goes on without printing, and the command line says it last
        self.failed: OSError | None = None
        # the error that kept the --json report from being written (a full disk): the run
        # goes on, its verdict and lines intact, and the command line says it last
        self.json_failed: WnpassError | OSError | None = None
        self._console = None
        if not self.plain:
            from rich.console import Console

            # no emoji codes: a name holding ``:fire:`` is shown as it is (t104)
            self._console = Console(file=self.stream, highlight=False, soft_wrap=True, emoji=False)

    def json_report(self, write: Callable[[], None]) -> None:
        """Write the ``--json`` report by ``write``; one that cannot be written is kept in
        :attr:`json_failed` for the command line to say last: a failed check keeps its exit
        code 1, the verdict a pipeline reads, and the lines after it are printed (t143: exit
        2, and ``inspect --strict`` lost its STRICT line)."""
        try:
            write()
        except BrokenPipeError:
            raise
        except (OutputError, OSError) as error:
            self.json_failed = error

    def line(self, text: str) -> None:
        """A detail line (left out with ``--quiet``): one line, whatever it holds; a control
        character in it (a newline in a model's or a path's name) is escaped
        (:func:`~wnpass.errors.printable`), so that no name can forge a line of its own."""
        if not self.quiet:
            self._write(text)

    def summary(self, text: str) -> None:
        """A summary line: always printed (inside :meth:`about`, after the file's name); one
        line, as for :meth:`line`."""
        self._write(text if self._subject is None else f"{self._subject}: {text}")

    @contextlib.contextmanager
    def about(self, subject: str | None) -> Iterator[None]:
        """Summary lines printed inside say ``subject: ...`` (None: as they are), so that a
        command on several files says which file each summary is about, with ``--quiet`` too."""
        outer, self._subject = self._subject, subject
        try:
            yield
        finally:
            self._subject = outer

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A table of pure rows (left out with ``--quiet``)."""
        if self.quiet or self.failed is not None:
            return
        # escaped as written before they are measured: a character the stream's encoding lacks
        # takes the columns of its escape (t228: a table out of line under ASCII)
        rows = [[self._encodable(printable(cell)) for cell in row] for row in rows]
        title = self._encodable(printable(title))
        if self._console is not None and _fits(columns, rows, self._console.width):
            from rich.markup import escape
            from rich.table import Table

            table = Table(title=escape(title), title_justify="left")
            for column in columns:
                table.add_column(column, no_wrap=True)
            for row in rows:
                table.add_row(*(escape(cell) for cell in row))
            with self._unless_closed():
                self._console.print(table)
            return
        with self._unless_closed():
            self.stream.write(plain_table(title, columns, rows))
            self.stream.flush()

    def _encodable(self, text: str) -> str:
        """``text`` as :class:`_Escaping` writes it to the stream: a character its encoding
        lacks escaped (``\\u2600``)."""
        if text.isascii():
            return text
        encoding = getattr(self.stream, "encoding", None) or "utf-8"
        try:
            return text.encode(encoding, "backslashreplace").decode(encoding)
        except LookupError:  # an encoding Python does not know: the stream's own business
            return text

    def _write(self, text: str) -> None:
        if self.failed is not None:  # nothing more, rather than a report with a hole in it
            return
        text = printable(text)
        with self._unless_closed():
            if self._console is not None:
                from rich.markup import escape

                self._console.print(escape(text))
            else:
                self.stream.write(text + "\n")
                self.stream.flush()

    @contextlib.contextmanager
    def _unless_closed(self) -> Iterator[None]:
        """Write in the block; a stream that cannot be written (no space left, an I/O error,
        or closed by a model.py's code) loses what is written, not the run: it goes on, its
        files and ``--json`` written, and the command line then says what failed
        (:attr:`failed`; t344: a closed one was silent, exit 0). A reader gone away (a closed
        pipe) ends the run, as SIGPIPE would."""
        try:
            yield
        except ValueError:
            if not self.stream.closed:
                raise
            self.failed = OSError(errno.EBADF, "closed by the model's code")
        except BrokenPipeError:
            raise
        except OSError as error:
            self.failed = error


def _fits(columns: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> bool:
    """Whether a drawn table shows every cell on one line in ``width`` columns: each column
    as wide as its widest cell, a space either side and a border after it. One that does not
    is printed as plain text (the terminal then wraps whole lines, never inside a cell): rich
    would fold a number inside it, ``5.96e-0`` over ``8`` (t128)."""
    widths = _widths(columns, rows)
    return sum(widths) + 3 * len(widths) + 1 <= width


def _widths(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[int]:
    """Each column's width on a terminal: its widest cell's (:func:`display_width`)."""
    widths = [display_width(column) for column in columns]
    for row in rows:
        widths = [max(w, display_width(cell)) for w, cell in zip(widths, row, strict=True)]
    return widths


def plain_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table as plain text: a title, a header, a rule and rows, columns padded to the width
    a terminal shows (:func:`display_width`), never wrapped."""
    widths = _widths(columns, rows)

    def render(cells: Sequence[str]) -> str:
        return "  ".join(
            cell + " " * (w - display_width(cell)) for cell, w in zip(cells, widths, strict=True)
        ).rstrip()

    lines = [title, render(columns), render(["-" * w for w in widths])]
    lines += [render(row) for row in rows]
    return "\n".join(lines) + "\n"


def display_width(text: str) -> int:
    """The columns ``text`` takes in a terminal, as rich measures it (its tables are drawn
    where they fit, by these widths): two for a wide character (CJK: ``编码器``, an emoji, one
    made wide by a variation selector: ``☀️``), none for a mark drawn on the character before
    it or a format character (the accent of ``e\u0301``, a zero-width space) or a Hangul vowel
    or final joined to its syllable, one for the rest (t104, t128: the later columns of a row
    with such names were out of line; t228: rich cut every cell of a table measured
    otherwise)."""
    if text.isascii():
        return len(text)
    from rich.cells import cell_len

    return cell_len(text)
