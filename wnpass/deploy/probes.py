"""ONNX Runtime against PyTorch at other sizes than the example's, with dynamic axes: PyTorch's
side of each probe (:data:`~wnpass.deploy.report.PROBES`, :data:`~wnpass.deploy.report.SHORTER`,
an axis alone, a size outside a range), and what the report says of it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
import onnx_ir as ir
import torch
from torch import nn

from wnpass import assumed
from wnpass.deploy.compare import Reference
from wnpass.deploy.inputs import (
    forward_parameters,
    graph_arguments,
    positional_names,
    traced_arguments,
)
from wnpass.deploy.outputs import (
    Output,
    example_arrays,
    expected_outputs,
    feeds_for,
    forward_outputs,
)
from wnpass.deploy.ranges import Beyond, Range, span_said, symbol_sizes, tie_said
from wnpass.deploy.report import PROBES, SHORTER, DynamicProbe, ExportReport
from wnpass.deploy.resize import grown
from wnpass.errors import InvalidArgumentError
from wnpass.fx.forward import (
    Batch,
    ForwardFailedError,
    ModelExitedError,
    call_model,
    what_it_did,
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Probed:
    """PyTorch with every dynamic axis at a probe's sizes (:func:`run_probe`), or with one
    size's axes outside the range torch.export held them to (:func:`run_beyond`)."""

    sizes: str  # a name of PROBES, or the axes and their size: "axis 1 of x at 1"
    shapes: dict[str, list[int]]  # of the graph inputs made larger
    examples: dict[str, Any]  # by graph input name, as :func:`example_arrays` gives them
    outputs: list[Output] | None  # None: PyTorch's forward failed on them
    failure: str | None = None  # how
    beyond: Beyond | None = None  # for a probe outside a range, or where a condition fails
    ties: str | None = None  # a condition that ties sizes its sizes break (DynamicProbe.ties)
    alone: str | None = None  # the axes it resized, where not every one (DynamicProbe.alone)
    resized: tuple[str, ...] = ()  # the axes it resized, each as said (DynamicProbe.resized)


def run_probe(
    model: nn.Module,
    inputs: Batch,
    dynamic: dict[str, dict[int, str]],
    arguments: dict[str, Any],
    dynamo: bool,
    sizes: str,
    alone: list[tuple[str, int]] | None = None,
) -> Probed:
    """PyTorch's outputs with every dynamic axis of the example inputs (or those ``alone``, by
    input name and axis) at the probe ``sizes`` (:data:`PROBES`): each input repeated along it
    (``torch.cat([x, 0.875 * x], axis)`` for a float one, or its midpoints where PyTorch
    gives NaN or Inf so: :func:`grown`), and one element more for ``doubled plus one``.
    A size the exporter fixed in the graph, or a branch it took on the example's size, gives
    other outputs there. A dynamic input that is a parameter's default (which the TorchScript
    exporter passes on) is given by its name."""
    names = positional_names(forward_parameters(model), len(inputs.args))
    resized = set(every_axis(dynamic) if alone is None else alone)

    def grown_batch(midpoints: bool) -> Batch:
        def grow(name: str, value: Any) -> Any:
            for axis in sorted(a for a in dynamic.get(name, {}) if (name, a) in resized):
                if value.shape[axis]:  # an empty axis stays empty: said, nothing compared
                    length = _probe_length(sizes, value.shape[axis])
                    value = grown(value, axis, length, midpoints=midpoints)
            return value

        with torch.no_grad():
            args = tuple(grow(name, value) for name, value in zip(names, inputs.args, strict=True))
            kwargs = {name: grow(name, value) for name, value in inputs.kwargs.items()}
            for name in dynamic:
                if name not in names and name not in kwargs:
                    kwargs[name] = grow(name, arguments[name])
        return Batch(args, kwargs)

    batch = grown_batch(midpoints=False)
    graph_inputs, _ = graph_arguments(traced_arguments(model, batch, dynamo), dynamo)
    shapes = {name: list(graph_inputs[name].shape) for name in dynamic}
    said = None if alone is None else axes_said(alone)
    each = tuple(axes_said([axis]) for axis in sorted(resized))
    probe = Probed(sizes, shapes, {}, None, alone=said, resized=each)
    if empty := sorted((n, a) for n, a in resized if not shapes[n][a]):
        name, axis = empty[0]
        failure = f"axis {axis} of {name} is 0 in the example"
        return dataclasses.replace(probe, failure=failure)
    ran = _run_probe(model, batch, graph_inputs, probe)
    if ran.outputs is None or all(_finite(o) for o in ran.outputs):
        return ran
    # NaN or Inf: the scaled copies may have left the model's domain (acosh of x >= 1)
    batch = grown_batch(midpoints=True)
    graph_inputs, _ = graph_arguments(traced_arguments(model, batch, dynamo), dynamo)
    again = _run_probe(model, batch, graph_inputs, probe)
    return again if again.outputs is not None and all(_finite(o) for o in again.outputs) else ran


def _finite(output: Output) -> bool:
    """Whether an output of PyTorch's holds no NaN or Inf (a number or an integer array:
    yes)."""
    if isinstance(output, np.ndarray) and output.dtype.kind in "fc":
        return bool(np.isfinite(output).all())
    return not isinstance(output, float) or math.isfinite(output)


def _probe_length(sizes: str, length: int) -> int:
    """An axis's length at a probe's ``sizes`` (a name of :data:`PROBES`, or
    :data:`SHORTER`), from its example's ``length``."""
    return length - 1 if sizes == SHORTER else 2 * length + PROBES[sizes]


def shorter_axes(
    probed: list[Probed], dynamic: dict[str, dict[int, str]], arguments: dict[str, Any]
) -> list[list[tuple[str, int]]]:
    """The groups of axes (:func:`axes_alone`, or every axis as one) that no probe compared
    because PyTorch failed at every size they were tried at (a table of fixed size: twice the
    example's length is past it), each of an example length of 3 or more: tried one shorter
    (:data:`SHORTER`), where a size the trace fixed and a parity branch show too."""
    groups = axes_alone(dynamic, arguments) or [every_axis(dynamic)]
    chosen = []
    for axes in groups:
        said = axes_said(axes)
        tried = [p for p in probed if p.beyond is None and p.alone in (None, said)]
        failed = all(p.outputs is None and _pytorch_failed(p) for p in tried)
        if tried and failed and all(arguments[n].shape[a] >= 3 for n, a in axes):
            chosen.append(axes)
    return chosen


def _pytorch_failed(probe: Probed) -> bool:
    """Whether nothing could be compared at a probe's sizes because PyTorch's forward failed
    there (not because they are past a range, or break a condition)."""
    return (probe.failure or "").startswith("PyTorch's forward")


def axes_alone(
    dynamic: dict[str, dict[int, str]], arguments: dict[str, Any]
) -> list[list[tuple[str, int]]]:
    """The dynamic axes in groups of one length in the example, by input name and axis (a
    mask's with its input's), where there are two groups or more: each group is resized alone
    where nothing could be compared with every axis resized (a position table shorter than
    twice the example's length fails PyTorch there, and a branch on the batch size would go
    unseen)."""
    groups: dict[int, list[tuple[str, int]]] = {}
    for name, axes in dynamic.items():
        for axis in sorted(axes):
            groups.setdefault(int(arguments[name].shape[axis]), []).append((name, axis))
    return list(groups.values()) if len(groups) > 1 else []


def every_axis(dynamic: dict[str, dict[int, str]]) -> list[tuple[str, int]]:
    """Every dynamic axis, by input name and axis, in the order given."""
    return [(name, axis) for name, axes in dynamic.items() for axis in sorted(axes)]


def axes_said(axes: list[tuple[str, int]]) -> str:
    """Axes by input name and axis, as said: ``axis 1 of ids and axis 1 of mask``."""
    return " and ".join(f"axis {axis} of {name}" for name, axis in axes)


def within_ranges(
    probe: Probed, ranges: list[Range], accepted: list[assumed.Condition], accept: bool
) -> Probed:
    """``probe`` with nothing to compare where it gives an axis a size outside those
    torch.export held it to (the file is for those only: an accepted range, or one where
    PyTorch fails outside; longer, or one shorter: :data:`SHORTER`), or a size where an
    ``accepted`` condition on it does not hold (a tie, which breaking makes inputs that do
    not go together, among them); as it was otherwise."""
    for bounded in ranges:
        shape = probe.shapes.get(bounded.name)
        if probe.outputs is None or shape is None or bounded.expr != bounded.symbol:
            continue
        size = shape[bounded.axis]
        if size < bounded.lower or (bounded.upper is not None and size > bounded.upper):
            failure = (
                f"axis {bounded.axis} of {bounded.name} is {size} there, outside the sizes "
                f"it is exported for ({span_said(bounded.lower, bounded.upper)})"
            )
            return dataclasses.replace(probe, examples={}, outputs=None, failure=failure)

    def length(axis: tuple[str, int]) -> int | None:
        shape = probe.shapes.get(axis[0])
        return None if shape is None else shape[axis[1]]

    sizes = symbol_sizes(ranges, length)
    for condition in accepted if probe.outputs is not None else ():
        if condition.holds_at(sizes):
            continue
        if condition.tie and not accept:  # compared: ONNX Runtime may refuse such inputs
            probe = dataclasses.replace(probe, ties=tie_said(condition, ranges))
            continue
        named = [r for r in ranges if str(r.symbol) == condition.symbol and r.expr == r.symbol]
        axis = f"axis {named[0].axis} of {named[0].name}" if named else condition.symbol
        failure = (
            f"torch.export's condition {condition.text} (n: the length of {axis}) does not "
            "hold there: the file is exported for the sizes where it holds"
        )
        return dataclasses.replace(probe, examples={}, outputs=None, failure=failure)
    return probe


def run_beyond(model: nn.Module, beyond: Beyond, dynamo: bool) -> Probed:
    """PyTorch's outputs where it ran beyond the sizes torch.export held an axis to (outside
    its range, or where a condition on it fails)
    (:func:`check_ranges`)."""
    graph_inputs, _ = graph_arguments(traced_arguments(model, beyond.inputs, dynamo), dynamo)
    shapes = {name: list(graph_inputs[name].shape) for name in beyond.resized}
    probe = Probed(beyond.sizes, shapes, {}, None, beyond=beyond)
    return _run_probe(model, beyond.inputs, graph_inputs, probe)


def _run_probe(
    model: nn.Module, batch: Batch, graph_inputs: dict[str, Any], probe: Probed
) -> Probed:
    """``probe`` with PyTorch's outputs on ``batch`` and its examples (``graph_inputs``), or
    how PyTorch's forward failed on them."""
    try:
        outputs = forward_outputs(call_model(model, batch))
    except ModelExitedError:
        raise
    except ForwardFailedError as error:
        how = what_it_did(error.__cause__) if error.__cause__ is not None else str(error)
        return dataclasses.replace(probe, failure=f"PyTorch's forward {how}")
    return dataclasses.replace(probe, examples=example_arrays(graph_inputs), outputs=outputs)


def reference_at_sizes(report: ExportReport, graph: ir.Graph, probed: Probed) -> Reference | None:
    """The feeds and expected outputs at a probe's sizes, its entry added to
    ``report.dynamic``; None where they cannot be had, and the entry says why
    (:attr:`DynamicProbe.unchecked`): PyTorch failed there (a length tied to values, as
    ``lengths.max()``, a table of fixed size, a model that takes even lengths only), or
    returned another count of outputs than the graph has. The export may be right: the
    dynamic axes are then said to be unverified there, which fails nothing; but below a
    range (:func:`run_beyond`), where PyTorch ran, nothing shows which branch the file
    takes there: ``not_verified``, which fails the verification."""
    probe = DynamicProbe(probed.sizes, probed.shapes)
    if (beyond := probed.beyond) is not None:
        probe.bound, probe.axes, probe.size = beyond.bound, beyond.axes, beyond.size
        probe.condition, probe.ties = beyond.condition, beyond.ties
    probe.ties, probe.alone = probe.ties or probed.ties, probed.alone
    probe.resized = list(probed.resized)
    report.dynamic.append(probe)
    failure = probed.failure
    if probed.outputs is not None:
        try:
            return feeds_for(graph, probed.examples), expected_outputs(graph, probed.outputs)
        except InvalidArgumentError as error:
            failure = error.detail.removeprefix("cannot verify: ")
    if probe.bound is not None:  # where PyTorch ran: whether the file branches there is unknown
        probe.not_verified = f"nothing could be compared: {failure}"
    else:
        probe.unchecked = failure
    logger.info("the dynamic axes could not be verified with %s: %s", probe.where, failure)
    return None
