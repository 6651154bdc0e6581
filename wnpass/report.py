"""Reports are data: dataclasses that know whether they passed, serialise to JSON, and render.

Rendering is pure: row builders (``*_rows``) and summaries return text, and only the CLI
prints them.
"""

from __future__ import annotations

import contextvars
import dataclasses
import errno
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, overload

if TYPE_CHECKING:
    from wnpass.plan import IOPlan

__all__ = [
    "CONE_COLUMNS",
    "OUT_OF_MEMORY",
    "REMOVED",
    "Anchored",
    "ConeReport",
    "FoldReport",
    "SiteReport",
    "cone_rows",
    "counted",
    "declined_for_memory",
    "fold_summary",
    "human_bytes",
    "out_of_memory",
    "shape_text",
    "site_rows",
    "write_json",
]


# Why a weight-norm site, a computed weight or a checkpoint's pair was declined where computing
# it ran out of memory: a fact about the machine it ran on, not about the model, so that a gate
# (``inspect --strict``) counts it as undecided rather than as nothing left to fold.
OUT_OF_MEMORY = "cannot be computed: out of memory"


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says memory ran out: numpy's ``MemoryError``, or a mapping of a file
    that the system refused (``ENOMEM``: onnx-ir maps external data when it is read)."""
    return isinstance(error, MemoryError) or (
        isinstance(error, OSError) and error.errno == errno.ENOMEM
    )


def declined_for_memory(rows: Iterable[Any]) -> int:
    """How many of ``rows`` (sites, cones or pairs) were declined for lack of memory
    (:data:`OUT_OF_MEMORY`)."""
    return sum(row.status == "declined" and row.reason == OUT_OF_MEMORY for row in rows)


class Anchored:
    """A report whose paths are as the caller gave them, relative to the working directory
    when it was made: :meth:`anchored` gives them from there, for its ``write_json`` to
    protect the files it is about after the caller changed directory (``../model.onnx``
    named the model itself once the caller had gone into a folder)."""

    def __post_init__(self) -> None:
        try:
            self._made_in: str | None = os.getcwd()
        except OSError:  # the working directory is gone: the paths are as given
            self._made_in = None

    @overload
    def anchored(self, path: str) -> str: ...

    @overload
    def anchored(self, path: str | None) -> str | None: ...

    def anchored(self, path: str | None) -> str | None:
        """``path`` as it named a file when the report was made."""
        made_in = getattr(self, "_made_in", None)
        if path is None or made_in is None or os.path.isabs(path):
            return path
        return os.path.join(made_in, path)


@dataclasses.dataclass
class SiteReport:
    """One weight-norm site: what it is and what was done with it."""

    name: str  # the folded weight's name (the PyTorch parameter's)
    graph: str  # "main", "subgraph <name>" or "function <domain>::<name>[:<overload>]"
    consumers: list[str]
    shape: list[int] | None  # v's, the shape the axes are of (layout ops may follow)
    dtype: str | None
    # reduction axes of ||v||; None: the whole tensor; words where they are no axes of v
    # (a norm of reshaped v grouping parts of an axis) or not known
    axes: list[int] | str | None
    form: str  # how the norm is written
    status: str  # "folded", "declined" or "foldable" (inspect)
    reason: str | None = None  # why it was declined
    nodes_removed: int = 0
    # the shape of the weight written (folded) or to be written (foldable) in place of the
    # value replaced: ``shape`` but where layout ops follow the product (``Transpose`` in
    # front of a ``MatMul``); None for a site left as it is
    written_shape: list[int] | None = None
    # the layout ops between the product and its consumer, folded with the site: the weight
    # written is the product laid out by them (``["Transpose"]`` in front of a ``MatMul``)
    layout: list[str] = dataclasses.field(default_factory=list)
    # of a declined site: the graph input (no initializer behind it) that v is, through
    # layout ops; its weight is computed from what the graph is given at run time (a filter
    # the caller passes in), which no fold can make a constant
    fed_by: str | None = None


@dataclasses.dataclass
class ConeReport:
    """One weight computed from constants (a constant cone), and what was done with it: folded
    into one initializer, or why not."""

    name: str  # the folded weight's name (after the constant it comes from)
    graph: str  # "main", "subgraph <name>" or "function <domain>::<name>[:<overload>]"
    consumers: list[str]
    shape: list[int] | None
    dtype: str | None
    ops: list[str]  # the ops of the cone, e.g. ["Slice", "Slice", "Concat", "Unsqueeze"]
    sources: list[str]  # the constants whose elements it holds
    status: str  # "folded", "declined" or "foldable" (inspect)
    reason: str | None = None  # why it was declined
    nodes_removed: int = 0
    form: str = "constant-cone"
    # the name its consumers read, where the cone only passes a constant on under another name
    # (TorchScript's ``Identity`` of a parameter of equal values: ``b.bias`` read as ``a.bias``)
    read_as: str | None = None


@dataclasses.dataclass
class FoldReport(Anchored):
    """What a fold (or an inspection) found and did."""

    sites: list[SiteReport] = dataclasses.field(default_factory=list)
    cones: list[ConeReport] = dataclasses.field(default_factory=list)  # weights computed
    # from constants (empty with ``weight_norm_only``)
    input: str | None = None
    output: str | None = None
    data_files: list[str] = dataclasses.field(default_factory=list)  # the output's, written
    nodes_before: int = 0
    nodes_after: int = 0
    bytes_before: int | None = None
    bytes_after: int | None = None
    seconds: float | None = None
    left: list[str] = dataclasses.field(default_factory=list)  # old files kept, and why
    # files the fold deleted: the old data files of the output it replaced (wnpass's own;
    # another model pointing at one, a copy of that output, loses its weights)
    removed: list[str] = dataclasses.field(default_factory=list)
    # a fold in place that had nothing to fold: the input is left as it is, not rewritten
    # (a rewrite in place writes its data file under a new name, the old one read by the run)
    unchanged: bool = False
    check: Any = None  # the CheckReport of a verified fold
    # the local functions inlined (or, inspected, that a fold inlines) since they compute
    # weights from their inputs, which their calls pass as constants (wnpass.onnx.functions)
    inlined: list[str] = dataclasses.field(default_factory=list)
    # those it would inline but cannot, and why (another version of an opset than the
    # model's, t269): the weights they compute stay computed
    not_inlined: list[str] = dataclasses.field(default_factory=list)

    @property
    def folded(self) -> int:
        return sum(site.status == "folded" for site in self.sites)

    @property
    def declined(self) -> int:
        return sum(site.status == "declined" for site in self.sites)

    @property
    def foldable(self) -> int:
        """Weight-norm sites that a fold would fold (an inspection's ``foldable`` sites)."""
        return sum(site.status == "foldable" for site in self.sites)

    @property
    def cones_folded(self) -> int:
        return sum(cone.status == "folded" for cone in self.cones)

    @property
    def changed(self) -> bool:
        """Whether the fold changed the model: a weight folded, or a function inlined (which
        it does only where that folds more)."""
        return self.folded + self.cones_folded > 0 or bool(self.inlined)

    @property
    def computed_weights(self) -> list[str]:
        """Weights still computed at run time that a fold would make initializers (an
        inspection's ``foldable`` cones)."""
        return [cone.name for cone in self.cones if cone.status == "foldable"]

    @property
    def remaining(self) -> int:
        """What a fold would still do: foldable sites plus computed weights (0: nothing)."""
        return self.foldable + len(self.computed_weights)

    @property
    def undecided(self) -> int:
        """Sites and computed weights declined for lack of memory (:data:`OUT_OF_MEMORY`)."""
        return declined_for_memory(self.sites) + declined_for_memory(self.cones)

    def __bool__(self) -> bool:
        """True when nothing was declined (no weight-norm site, no weight computed from
        constants, no local function computing weights left) and a verification, if any,
        passed."""
        declined = self.declined + _count(self.cones, "declined") + len(self.not_inlined)
        return declined == 0 and (self.check is None or bool(self.check))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["folded"], data["declined"] = self.folded, self.declined
        data["foldable"], data["cones_folded"] = self.foldable, self.cones_folded
        data["cones_declined"] = _count(self.cones, "declined")  # as the summary counts them
        data["computed_weights"], data["remaining"] = self.computed_weights, self.remaining
        data["undecided"] = self.undecided
        if self.check is not None:
            data["check"] = self.check.to_dict()
        data["ok"] = bool(self)
        return data

    def write_json(self, path: str | Path, plan: IOPlan | None = None) -> None:
        """Write the report as JSON (:func:`write_json`); without ``plan``, never onto the
        model it is about, its output or their data files."""
        write_json(
            path,
            self.to_dict(),
            plan,
            lambda: [
                *model_files(self.anchored(self.input), "the input model"),
                *model_files(
                    self.anchored(self.output),
                    "the output",
                    [self.anchored(file) for file in self.data_files],
                ),
            ],
        )


@dataclasses.dataclass
class JsonOutput:
    """Where a command line's ``--json -`` goes: the stream standard output was before the
    command sent everything else to standard error (what a model.py's code prints included),
    and the error writing the JSON there met (a full disk: the command line says it)."""

    stream: TextIO | int  # a file descriptor: written unbuffered, nothing left to flush later
    failed: OSError | None = None


# Set by a command line for the run (JsonOutput); unset, ``-`` is ``sys.stdout`` as it is.
JSON_OUTPUT: contextvars.ContextVar[JsonOutput | None] = contextvars.ContextVar(
    "json_output", default=None
)


def write_json(
    path: str | os.PathLike[str],
    data: dict[str, Any] | list[dict[str, Any]],
    plan: IOPlan | None = None,
    about: Callable[[], Iterable[tuple[str | None, str]]] | None = None,
) -> None:
    """Write a report as strict JSON atomically (a staging file beside it, then renamed); to
    standard output where ``path`` is :data:`wnpass.plan.STANDARD_OUTPUT` (``-``).

    A number that is not finite (a relative error against a zero reference is Inf) is written
    as ``null``: ``NaN`` and ``Infinity`` are not JSON, and strict parsers reject them.
    ``plan``: the run's plan, in which ``path`` was recorded and checked; without one, the
    path is planned and checked on its own (parameter ``json_path``), and refused where it is
    one of the files ``about()`` names (``(path, what it is)``: the model the report is on,
    its data files, the output it wrote), which the report would otherwise replace; with a
    plan, they are the plan's to guard, and ``about`` is not called.
    """
    from wnpass.plan import STANDARD_OUTPUT, IOPlan, as_path, as_plan

    as_path("json_path", path)  # refused if no path; the name as given is planned ("out/")
    text = json.dumps(_strict(data), indent=2, allow_nan=False)
    if os.fspath(path) == STANDARD_OUTPUT:
        _write_out(text + "\n")
        return
    plan = as_plan(plan)
    if plan is None:
        plan = IOPlan()
        for file, what in about() if about is not None else ():
            if file is not None:
                plan.protect(file, what)
        plan.write(path, "json_path")
        plan.check()
    with plan.replace(path, suffix=".json") as temporary:
        temporary.write_text(text + "\n")


def _write_out(text: str) -> None:
    """``text`` on standard output (:data:`JSON_OUTPUT`'s stream, where a command line set
    one: an error there is recorded for it to say, a closed pipe raised as ever)."""
    output = JSON_OUTPUT.get()
    if output is not None and output.failed is not None:
        return  # standard output was closed from the start: the command line says so
    stream = output.stream if output is not None else sys.stdout
    try:
        if isinstance(stream, int):
            data = text.encode("utf-8")
            while data:
                data = data[os.write(stream, data) :]
        else:
            stream.write(text)
            stream.flush()
    except BrokenPipeError:
        raise
    except OSError as error:
        if output is None:
            raise
        output.failed = error


def model_files(
    path: str | os.PathLike[str] | None, what: str, data: Iterable[str | Path] | None = None
) -> list[tuple[str, str]]:
    """An ONNX model a report is about, and its external data files (``data``, or those the
    file names: its references are read), each with what it is (for :func:`write_json`'s
    ``about``); none for no model."""
    if path is None:
        return []
    if data is None:
        from wnpass.onnx.io import external_files  # reads the file's data references only

        data = sorted(external_files(path)) if os.path.isfile(path) else []
    return [(str(path), what), *((str(file), f"{what}'s external data") for file in data)]


def written(output: str, data_files: Sequence[str]) -> str:
    """An ONNX file written, as a summary names it: with the data files it uses, which must
    travel with it (``m.onnx and its data file m.onnx.data``)."""
    if not data_files:
        return output
    files = "data files" if len(data_files) > 1 else "data file"
    return f"{output} and its {files} {', '.join(data_files)}"


def _strict(value: Any) -> Any:
    """``value`` with every non-finite float made ``None`` (strict JSON has no NaN/Inf), and
    every string that holds bytes no UTF-8 decodes (a file name's, which Python carries as
    lone surrogates, ``\\udcff``: strict parsers refuse the whole report, t162) with those
    bytes written ``\\xff``, as the printed lines write them."""
    if isinstance(value, dict):
        return {_strict(key): _strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str) and not value.isascii():
        try:
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate no byte stands for: itself, escaped
            raw = value.encode("utf-8", "backslashreplace")
        return raw.decode("utf-8", "backslashreplace")
    return value


def listed(names: Sequence[str], limit: int = 3) -> str:
    """The first ``limit`` of ``names``, and how many more: ``a, b, c and 2 more``."""
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f" and {more} more" if more > 0 else "")


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``count`` and the noun, singular for one: ``1 weight-norm site``, ``2 weight-norm
    sites`` (``plural`` when it is not the singular and an ``s``)."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def human_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


SITE_COLUMNS = ("weight", "consumer", "shape", "axes", "form", "status")


def _axes(axes: list[int] | None) -> str:
    return "all" if axes is None else ",".join(map(str, axes))


def site_rows(sites: Sequence[SiteReport]) -> list[tuple[str, ...]]:
    """One row per site, in the columns of ``SITE_COLUMNS``. The shape is v's, which the axes
    refer to, followed by that of the weight written where that differs (``4x6 -> 6x4``)."""
    rows: list[tuple[str, ...]] = []
    for site in sites:
        where = "" if site.graph == "main" else f" [{site.graph}]"
        shape = shape_text(site.shape)
        if site.written_shape is not None and site.written_shape != site.shape:
            shape += f" -> {shape_text(site.written_shape)}"
        axes = site.axes if isinstance(site.axes, str) else _axes(site.axes)
        status = site.status if site.reason is None else f"{site.status}: {site.reason}"
        rows.append(
            (site.name + where, ", ".join(site.consumers) or "-", shape, axes, site.form, status)
        )
    return rows


def shape_text(shape: list[int] | None, unknown: str = "?") -> str:
    """A shape as the tables show it: ``4x6``, ``scalar`` for a 0-d one, ``unknown`` where
    there is none (``?``: not known; the check tables' ``-``: no output to have one)."""
    if shape is None:
        return unknown
    return "x".join(map(str, shape)) or "scalar"


CONE_COLUMNS = ("weight", "consumer", "shape", "computed by", "status")


def cone_rows(cones: Sequence[ConeReport]) -> list[tuple[str, ...]]:
    """One row per weight computed from constants, in the columns of ``CONE_COLUMNS``; cones
    that would read the same (a TorchScript export feeds one initializer to each consumer
    through an Identity of its own) are one row, at the first, with their count after the
    consumer (``Conv x6``). A cone read under another name than its weight's (an alias) shows
    both, ``b.bias -> a.bias``, and the other aliases of its row as a count: ``(+5)``."""
    counts: Counter[tuple[str, ...]] = Counter()
    aliases: dict[tuple[str, ...], list[str]] = {}
    for cone in cones:
        where = "" if cone.graph == "main" else f" [{cone.graph}]"
        shape = shape_text(cone.shape)
        status = cone.status if cone.reason is None else f"{cone.status}: {cone.reason}"
        ops = " -> ".join(dict.fromkeys(cone.ops)) or "-"
        key = (cone.name + where, ", ".join(cone.consumers) or "-", shape, ops, status)
        counts[key] += 1
        names = aliases.setdefault(key, [])
        if cone.read_as is not None and cone.read_as not in names:
            names.append(cone.read_as)
    rows: list[tuple[str, ...]] = []
    for same, n in counts.items():
        name, consumer, *rest = same
        rows.append(
            (_read_as(name, aliases[same]), consumer if n == 1 else f"{consumer} x{n}", *rest)
        )
    return rows


def _read_as(name: str, aliases: Sequence[str]) -> str:
    """A cone row's weight: its name, after the first name its consumers read where that is
    another (``b.bias -> a.bias``), with how many more there are."""
    if not aliases:
        return name
    more = f" (+{len(aliases) - 1})" if len(aliases) > 1 else ""
    return f"{aliases[0]}{more} -> {name}"


def _count(items: Sequence[ConeReport], status: str) -> int:
    return sum(item.status == status for item in items)


_CONE, _CONES = "weight computed from constants", "weights computed from constants"


def fold_summary(report: FoldReport, *, inspect: bool = False) -> list[str]:
    """The summary lines under the tables."""
    cones = report.cones
    if inspect:
        text = (
            f"{counted(len(report.sites), 'weight-norm site')}: {report.foldable} foldable, "
            f"{report.declined} declined"
        )
        if cones:
            text += (
                f"; {counted(len(cones), _CONE, _CONES)}: "
                f"{_count(cones, 'foldable')} foldable, {_count(cones, 'declined')} declined"
            )
        return [text + f"; {counted(report.nodes_before, 'node')}.", *_inlined(report, True)]
    text = f"folded {report.folded} of {counted(len(report.sites), 'weight-norm site')}"
    if cones:
        text += f" and {report.cones_folded} of {counted(len(cones), _CONE, _CONES)}"
    text += f"; nodes {report.nodes_before} -> {report.nodes_after}"
    if report.bytes_before is not None and report.bytes_after is not None:
        text += f"; size {human_bytes(report.bytes_before)} -> {human_bytes(report.bytes_after)}"
    if report.seconds is not None:
        text += f"; {report.seconds:.2f} s"
    lines = [text, *_inlined(report, False)]
    if report.unchanged:
        lines.append(f"nothing to fold: {report.input} is left as it is, not rewritten")
    if report.output:
        lines.append(f"wrote {written(report.output, report.data_files)}")
    lines += [f"removed: {path} ({REMOVED})" for path in report.removed]
    return lines


def _inlined(report: FoldReport, inspect: bool) -> list[str]:
    """The lines that name the local functions a fold inlines (or inlined), and those it
    cannot."""
    lines = [
        f"not inlined: {why}: the weights it computes from its inputs stay computed at run time"
        for why in report.not_inlined
    ]
    if not report.inlined:
        return lines
    done = "a fold inlines" if inspect else "inlined"
    one = len(report.inlined) == 1
    computes, its = ("computes", "its") if one else ("compute", "their")
    return [
        f"{done} {counted(len(report.inlined), 'local function')} that {computes} weights from "
        f"{its} inputs, which every call passes as constants: {', '.join(report.inlined)}",
        *lines,
    ]


REMOVED = "the replaced output's data file"  # why a file in FoldReport.removed was deleted
