"""The sizes torch.export holds each dynamic axis to, and the conditions it took on them,
read from the exported program and checked against PyTorch just outside them
(:func:`check_ranges`); the messages that say them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from fractions import Fraction
from typing import Any, NamedTuple

import torch
from torch import nn

from wnpass import assumed
from wnpass.deploy.inputs import forward_parameters, positional_names
from wnpass.deploy.report import ExportError
from wnpass.deploy.resize import runs_at
from wnpass.fx.forward import Batch


class Range(NamedTuple):
    """The sizes torch.export holds a dynamic axis's ``symbol`` to (shared by every input axis
    it sizes): ``lower`` up to ``upper`` (None: unbounded); the axis is ``expr`` of it (the
    symbol itself, or a size derived from it: ``2*s0`` for an input twice as long)."""

    name: str
    axis: int
    symbol: Any
    lower: int
    upper: int | None
    expr: Any


def _size_at(bounded: Range, size: int) -> int | None:
    """The axis's length where its symbol is ``size``; None where it depends on another
    dynamic size too (no one length to give it)."""
    if bounded.expr.free_symbols != {bounded.symbol}:
        return None
    return int(bounded.expr.subs(bounded.symbol, size))


class Beyond(NamedTuple):
    """PyTorch ran with the axes of one dynamic size (``axes``: ``axis 1 of x``) at ``size``
    (their size's; ``sizes``: each axis resized with its length, other dynamic axes of the
    example's length included where PyTorch ran only with them), just below the range
    torch.export held them to (``bound``), or within it where a condition torch.export took
    on their size does not hold (``condition``, said with the size as n), on ``inputs`` (the
    example's, resized); named as :class:`DynamicProbe` names them."""

    axes: str
    bound: str
    size: int
    inputs: Batch
    resized: tuple[str, ...]  # the graph inputs resized
    sizes: str  # "axis 2 of x at 1 and axis 2 of y at 2"
    condition: str | None = None
    ties: str | None = None  # the condition, where it ties sizes (:attr:`DynamicProbe.ties`)


def check_ranges(
    model: nn.Module,
    inputs: Batch,
    arguments: dict[str, Any],
    ranges: list[Range],
    conditions: list[assumed.Condition],
    verify: bool,
    accept: bool,
) -> tuple[list[str], list[Beyond]]:
    """The sizes torch.export holds each dynamic axis to, checked: it narrows an axis, without
    a word, where the model's code branches on its size (``if x.shape[2] > 10``) or requires
    one (``assert t <= block_size``), or where one of torch's decompositions does (wav2vec2's
    reshapes: its frames from 2 up), and the ONNX graph keeps the axis symbolic. PyTorch is
    run just outside each bound, at the nearest size where it runs of :data:`_PAST` (the
    inputs repeated along the axis and cut; where it fails so, with the other dynamic axes
    resized too: :func:`_run_at`). Where it fails at all, or is not tried (more than
    ``_PROBE_ELEMENTS``), the bound is taken as the model's own: a warning (PyTorch may run
    further out: a lengths input, which repeating does not resize; the range is said).

    Where PyTorch runs outside a range, the file may compute such inputs otherwise, and no
    probe can tell at which sizes: an ``ExportError`` unless ``accept`` (the file is then for
    those sizes only: a warning). A lower bound of 2 is torch's 0/1 specialization, which
    older versions give every dynamic axis: a warning; with ``verify`` the size below is
    returned instead (:class:`Beyond`) for the file to be compared with PyTorch there, and
    the probe says how that went. One of 1 is not probed (an empty input, where a model's
    loop may never end).

    A condition torch.export took on a size that no range says (``conditions``: a block that
    pads an odd count of frames, ``n != 1``) is tried as a bound is, at the sizes nearest the
    example's where it fails (:data:`wnpass.assumed.FAILING`), and judged as a lower bound
    of 2 is: where PyTorch runs there, a warning, or with ``verify`` the file compared there;
    with ``accept``, the file is for the sizes where it holds. A tie (a mask's length to its
    input's) is compared too; where ONNX Runtime refuses the inputs that break it, the probe
    says they do not go together (:attr:`DynamicProbe.ties`)."""
    said: list[str] = []
    beyond: list[Beyond] = []
    grouped: dict[object, list[Range]] = {}
    for bounded in ranges:
        grouped.setdefault(bounded.symbol, []).append(bounded)
    for symbol, axes in grouped.items():
        first = axes[0]
        sizes = span_said(first.lower, first.upper)
        where, held, bound = _held(axes, sizes)
        companions = _companions(axes, [r for r in ranges if r.symbol != symbol], arguments)
        tried = _Tries(model, inputs, arguments, axes, companions)
        fails: list[str] = []
        notes: list[str] = []
        # each side's sizes, the nearest first: a model of lengths a multiple of 2, 4 or 8
        # fails at the others
        sides = [[first.upper + d for d in _PAST]] if first.upper is not None else []
        sides += [[first.lower - d for d in _PAST if first.lower - d > 0]]  # not 0: empty
        for side in filter(None, sides):
            size, ran, lengths, failed, _ = tried.nearest(side)
            if ran is False:
                fails.append(_spanned(failed))
                continue
            at = _at(size, lengths)
            compared = size < first.lower == 2  # 0/1 specialization: compared, or said
            if not isinstance(ran, Batch):
                notes.append(f"not tried at {at}: {ran}")
            elif accept:
                notes.append(f"PyTorch runs at {at} too: accepted, the file is for these sizes")
            elif compared and verify:  # the probe says how it went: no warning of its own
                beyond.append(Beyond(where, bound, size, ran, *_resized_said(lengths)))
            elif compared:
                notes.append(
                    f"PyTorch runs at {at} too, where the file is not compared without verification"
                )
            else:
                raise ExportError(
                    f"not given: the dynamo exporter made {where} dynamic for {held} "
                    f"only, and PyTorch runs at {at}: where the model's code, or one of "
                    "torch's decompositions, branches on the size, the file computes such "
                    "inputs with the example's branch, at sizes no probe can list; accept the "
                    "range to export the file for those sizes only",
                    parameter="accept_ranges",
                )
        notes += [f"PyTorch fails at {' and '.join(fails)} too"] if fails else []
        if notes:
            said.append(f"{where} is exported for {held} only ({'; '.join(notes)})")
        for condition in (c for c in conditions if c.symbol == str(symbol)):
            breaks = functools.partial(_breaks, condition, ranges)
            size, ran, lengths, failed, kept = tried.nearest(condition.failing, breaks)
            at = _at(size, lengths)
            if ran is False:
                ways = [f"PyTorch fails at {_spanned(failed)} too, where it does not hold"]
                ways = ways if failed else []
                if kept:  # a size it involves resized in proportion (x <= c, c twice x)
                    ways.append(f"PyTorch runs at {_spanned(kept)} only with other sizes "
                                "resized so that it holds")  # fmt: skip
                note = "; ".join(ways)
            elif not isinstance(ran, Batch):
                note = f"not tried at {at}, where it does not hold: {ran}"
            elif accept:
                note = f"PyTorch runs at {at} too: accepted, the file is for these sizes"
            elif verify:  # the probe says how it went: no warning of its own
                if all(o.size != size or o.axes != where for o in beyond):  # once a size
                    resized, each = _resized_said(lengths)
                    tie = tie_said(condition, ranges) if condition.tie else None
                    beyond.append(
                        Beyond(where, bound, size, ran, resized, each, condition.text, tie)
                    )
                continue
            else:
                note = (
                    f"PyTorch runs at {at}, where it does not hold: the file takes the "
                    "example's branch there, and may compute such inputs otherwise; not "
                    "compared without verification"
                )
            named = _size_named(axes, condition)
            if condition.tie and ran is False:  # PyTorch keeps it too: no size is lost
                said.append(
                    f"{where} goes with other dynamic sizes: torch.export took "
                    f"{condition.text} ({named}), which PyTorch keeps too ({note}); the file "
                    "is for inputs that keep it"
                )
                continue
            said.append(
                f"{where} is exported for sizes where {condition.text} only, a condition "
                f"torch.export took that no range says ({named}; {note})"
            )
    return said, beyond


def tie_said(tie: assumed.Condition, ranges: list[Range]) -> str:
    """A condition that ties sizes, as said: its text, and what ``n`` is in it."""
    axes = [r for r in ranges if str(r.symbol) == tie.symbol]
    return f"{tie.text} ({_size_named(axes, tie)})"


class _Tries:
    """PyTorch run with the axes of one dynamic size at other sizes (:func:`_run_at`), each
    size once."""

    def __init__(
        self,
        model: nn.Module,
        inputs: Batch,
        arguments: dict[str, Any],
        axes: list[Range],
        companions: list[_Companion],
    ) -> None:
        self._run = functools.partial(_run_at, model, inputs, arguments, axes, companions)
        self._runs: dict[int, tuple[Batch | bool | str, dict[tuple[str, int], int | None]]] = {}

    def nearest(
        self, sizes: Sequence[int], counts: Callable[[_Lengths], bool] | None = None
    ) -> _Tried:
        """The first of ``sizes`` where PyTorch does not fail (or the last), what it gave
        there (:func:`runs_at`), the lengths given, and where it failed before (each as
        said). A run where ``counts`` says the lengths given miss what is probed (the other
        sizes resized with it make a condition hold) is passed over too, as ``held``."""
        failed: list[tuple[int, str]] = []
        held: list[tuple[int, str]] = []
        for size in sizes:
            if size not in self._runs:
                self._runs[size] = self._run(size)
            ran, lengths = self._runs[size]
            if ran is False:
                failed.append((size, _at(size, lengths)))
            elif counts is not None and isinstance(ran, Batch) and not counts(lengths):
                held.append((size, _at(size, lengths)))
            else:
                return _Tried(size, ran, lengths, failed, held)
        return _Tried(size, False, lengths, failed, held)


_Lengths = dict[tuple[str, int], int | None]  # each input axis resized, with its length


class _Tried(NamedTuple):
    """Where :meth:`_Tries.nearest` ran PyTorch (``size``, ``lengths``), what it gave there
    (``ran``: False where it failed at every size), and the sizes passed over before."""

    size: int
    ran: Batch | bool | str
    lengths: _Lengths
    failed: list[tuple[int, str]]
    held: list[tuple[int, str]]


# The sizes past a bound PyTorch is run at, the nearest first, until it runs at one.
_PAST = range(1, 9)


def _breaks(condition: assumed.Condition, ranges: list[Range], lengths: _Lengths) -> bool:
    """Whether ``condition`` fails with the input axes at ``lengths`` (the sizes they are of
    theirs, where an axis is a size itself; the other sizes at the example's): a run there
    probes it. With a mask resized with its input it does; with another size it involves
    resized in proportion, it may hold again (``x <= c``, c twice as long)."""
    return not condition.holds_at(symbol_sizes(ranges, lengths.get))


def symbol_sizes(
    ranges: list[Range], length: Callable[[tuple[str, int]], int | None]
) -> dict[str, int]:
    """Each dynamic size, by torch.export's name, at the ``length`` of an input axis that is
    that size itself (not ``2*s0``), where one is given."""
    return {
        str(r.symbol): n
        for r in ranges
        if r.expr == r.symbol and (n := length((r.name, r.axis))) is not None
    }


def _listed(said: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return ", ".join(said[:-1]) + " and " + said[-1] if len(said) > 1 else "".join(said)


def _spanned(failed: list[tuple[int, str]]) -> str:
    """The sizes PyTorch was run at (each with how it is said), in order: ``17 and 18``;
    eight in a row, ``17 to 24``; else each (``9, 11, 13 and 15``: not every size between)."""
    ordered = sorted(failed)
    said = [at for _, at in ordered]
    sizes = [size for size, _ in ordered]
    if len(said) > 2 and sizes == list(range(sizes[0], sizes[-1] + 1)):
        return f"{said[0]} to {said[-1]}"
    return _listed(said)


def _resized_said(lengths: dict[tuple[str, int], int | None]) -> tuple[tuple[str, ...], str]:
    """The graph inputs resized, and their axes with their lengths as said (:class:`Beyond`)."""
    return tuple(dict.fromkeys(name for name, _ in lengths)), _lengths_said(lengths.items())


def _size_named(axes: list[Range], condition: assumed.Condition) -> str:
    """What ``n`` is in a condition's text: the length of an axis that is the size itself,
    ``n: the length of axis 2 of x``, or torch.export's name of the size where every axis is
    another length of it; with the other dynamic sizes at the example's where it involves
    them."""
    own = [r for r in axes if r.expr == r.symbol]
    named = f"axis {own[0].axis} of {own[0].name}" if own else f"torch.export's {condition.symbol}"
    others = "" if condition.alone else ", the other dynamic sizes at the example's"
    return f"n: the length of {named}{others}"


def _held(axes: list[Range], sizes: str) -> tuple[str, str, str]:
    """The axes of one size, the sizes they are held to (``sizes``: their size's), and those
    sizes as a probe's ``bound``, as the messages say them: ``axis 2 of x``, ``sizes 0 to
    10``, ``0 to 10``; where one is another length (``y`` twice ``x``'s: ``2*s0``), each with
    its own, ``axis 2 of x (0 to 10) and axis 2 of y (0 to 20)``, ``those sizes``, ``0 to 10
    for axis 2 of x and 0 to 20 for axis 2 of y``."""
    if all(r.expr == r.symbol for r in axes):
        return " and ".join(f"axis {r.axis} of {r.name}" for r in axes), f"sizes {sizes}", sizes
    first = axes[0]
    parts = []
    for r in axes:
        low = _size_at(r, first.lower)
        high = None if first.upper is None else _size_at(r, first.upper)
        unknown = low is None or (first.upper is not None and high is None)
        parts.append(("?" if low is None or unknown else span_said(low, high), r))
    where = " and ".join(f"axis {r.axis} of {r.name} ({own})" for own, r in parts)
    bound = " and ".join(f"{own} for axis {r.axis} of {r.name}" for own, r in parts)
    return where, "those sizes", bound


def span_said(lower: int, upper: int | None) -> str:
    """A range of sizes as the messages say it: ``0 to 10``, ``from 30 up``."""
    return f"{lower} to {upper}" if upper is not None else f"from {lower} up"


def _lengths_said(lengths: Iterable[tuple[tuple[str, int], int | None]]) -> str:
    """Input axes with their lengths: ``axis 2 of x at 1 and axis 2 of y at 2``."""
    return " and ".join(f"axis {axis} of {name} at {n}" for (name, axis), n in lengths)


def _at(size: int, lengths: dict[tuple[str, int], int | None]) -> str:
    """Where PyTorch was run, as said: ``11``, the size, where every axis resized is that
    long; else with each axis's length, ``11 (axis 2 of x at 11 and axis 2 of y at 22)`` (an
    axis that is another length of the size, or resized with it in proportion)."""
    if all(length == size for length in lengths.values()):
        return str(size)
    return f"{size} ({_lengths_said(lengths.items())})"


class _Companion(NamedTuple):
    """Another dynamic axis resized with the axes of one size where PyTorch fails with those
    alone (:func:`_companions`): its example ``length``, and that length's ``ratio`` to
    theirs."""

    axis: Range
    length: int
    ratio: Fraction


def _companions(
    axes: list[Range], others: list[Range], arguments: dict[str, Any]
) -> list[_Companion]:
    """The other dynamic axes resized with ``axes`` where PyTorch fails with those alone, each
    with its example length's ratio to theirs: of another size, which torch.export need not
    tie to theirs (``x`` and its ``mask``, ratio 1; an input at half the rate, ``cond`` to a
    stride-2 ``x``, ratio 2), where both are sizes themselves (not ``2*s0``)."""

    def length(bounded: Range) -> int | None:
        value = arguments.get(bounded.name)
        return int(value.shape[bounded.axis]) if isinstance(value, torch.Tensor) else None

    first = axes[0]
    if first.expr != first.symbol or not (own := length(first)):
        return []
    return [
        _Companion(r, other, Fraction(other, own))
        for r in others
        if r.expr == r.symbol and (other := length(r))
    ]


def _run_at(
    model: nn.Module,
    inputs: Batch,
    arguments: dict[str, Any],
    axes: list[Range],
    companions: list[_Companion],
    size: int,
) -> tuple[Batch | bool | str, dict[tuple[str, int], int | None]]:
    """:func:`runs_at` with the axes of one size at ``size``; where PyTorch fails there, with
    the ``companions`` of their example length at ``size`` too, and then with every companion
    resized in proportion (its length at ``size`` times its ratio, rounded). The lengths
    given, as the second item."""
    lengths = {(r.name, r.axis): _size_at(r, size) for r in axes}
    ran = runs_at(model, inputs, arguments, lengths)
    same: _Lengths = {(c.axis.name, c.axis.axis): size for c in companions if c.ratio == 1}
    scaled: _Lengths = {(c.axis.name, c.axis.axis): _scaled(size, c.ratio) for c in companions}
    example = {(c.axis.name, c.axis.axis): c.length for c in companions}
    tries: list[_Lengths] = []
    for more in (same, scaled):  # each once, and not where all are at their example length
        if more and more not in tries and any(example[k] != n for k, n in more.items()):
            tries.append(more)
    for more in tries:
        if ran is not False:
            break
        again = runs_at(model, inputs, arguments, lengths | more)
        if isinstance(again, Batch):
            return again, lengths | more
    return ran, lengths


def _scaled(size: int, ratio: Fraction) -> int:
    """A companion's length where its ratio to the axes resized is ``ratio``: ``size`` times
    it, halves rounded up (``round`` takes 22.5 to 22 and 23.5 to 24), at least 1."""
    return max(1, math.floor(size * ratio + Fraction(1, 2)))


def dynamic_ranges(program: Any, model: nn.Module, inputs: Batch) -> Iterator[Range]:
    """Each dynamic axis of the exported program's inputs (``torch.onnx.export``'s
    ``ONNXProgram``), with the sizes torch.export holds it to, by the graph input's name
    (:func:`_graph_input_names`)."""
    exported = getattr(program, "exported_program", None)
    if exported is None:
        return
    user_inputs = set(exported.graph_signature.user_inputs)
    # torch.export's own name where no call's input pairs with it: resizing it then fails,
    # and its bound is said "not tried" (never dropped without a word)
    named = {name: name for name in user_inputs} | _graph_input_names(exported, model, inputs)
    for node in exported.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        for axis, size in enumerate(getattr(node.meta.get("val"), "shape", ())):
            if not isinstance(size, torch.SymInt):
                continue
            for symbol in size.node.expr.free_symbols:
                bounds = exported.range_constraints.get(symbol)
                if bounds is not None:
                    upper = assumed.upper_bound(bounds.upper)
                    lower = int(bounds.lower)
                    name = named[node.name]
                    yield Range(name, axis, symbol, lower, upper, size.node.expr)


def _graph_input_names(exported: Any, model: nn.Module, inputs: Batch) -> dict[str, str]:
    """torch.export's name of each tensor input the model was called with, to the graph
    input's (forward's parameter; ``input_<i>`` past the named positional ones; a keyword
    input's key). torch.export makes its own: it lowercases them (``melSpec`` is ``melspec``)
    and names ``*xs``'s items ``xs_0, xs_1``; its inputs are paired with the call's by their
    place in it. A tensor inside a container (which takes no dynamic axes) has none."""
    names = list(exported.graph_signature.user_inputs)
    try:
        args, kwargs = torch.utils._pytree.tree_unflatten(names, exported.call_spec.in_spec)
    except (ValueError, TypeError, AttributeError):  # not as torch 2.13 gives them
        return {}
    positional = positional_names(forward_parameters(model), len(inputs.args))
    pairs = [*zip(args, positional, strict=False), *((kwargs[k], k) for k in kwargs)]
    return {leaf: name for leaf, name in pairs if isinstance(leaf, str)}
