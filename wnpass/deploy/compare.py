"""The exported file on ONNX Runtime against PyTorch's outputs, on each provider: at the example
inputs (timed) and at each probe's sizes; and the graph's declared output shapes against those
computed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx_ir as ir

from wnpass.deploy.report import ExportReport
from wnpass.errors import WnpassError
from wnpass.verify import providers as prov
from wnpass.verify.compare import OutputComparison, compare_outputs, nothing_compared
from wnpass.verify.options import CheckOptions
from wnpass.verify.timing import FailedInTiming, timed_runs

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def named_as(staged: Path, name: str) -> Iterator[None]:
    """Errors about a staged file call it ``name`` instead, which the user knows (the output,
    or what the exporter wrote for it): the staging folder is wnpass's own, and gone once the
    error is shown."""
    try:
        yield
    except WnpassError as error:
        if str(staged) in error.detail:
            error.detail = error.detail.replace(str(staged), name)
            error.args = (error.render(),)
        raise


# Feeds by graph input name, and the outputs PyTorch gave on them.
Reference = tuple[dict[str, np.ndarray], list[np.ndarray]]


def compare_with_reference(
    report: ExportReport,
    staged: Path,
    chosen: list[str],
    example: Reference,
    at_sizes: list[Reference | None],
    options: CheckOptions,
) -> None:
    """ONNX Runtime against PyTorch on each provider in ``chosen``: on the example inputs, timed,
    and at each dynamic probe's sizes (``at_sizes``, by ``report.dynamic``; None: nothing to
    compare there). ONNX Runtime failing at a probe's sizes is a failed verification (the graph
    is wrong there), not an error: :attr:`DynamicProbe.not_verified` says it."""
    feeds = example[0]
    for provider in chosen:
        try:
            session = prov.open_session(staged, provider, threads=options.threads)
            compared = (
                None if session.fell_back else _run_compared(session, staged, example, options)
            )
        except prov.SessionError as error:  # where PyTorch ran: the exported graph is wrong
            said = error.reason
            if isinstance(error, prov.RunFailedError):
                said = f"onnxruntime failed to run it: {said}"
            report.ort_failed = f"on {provider}, {report.output}: {said}"
            logger.info("the exported graph failed on %s: %s", provider, said)
            return
        if compared is None:
            logger.info("%s fell back to %s: not compared", provider, session.actual)
            report.fell_back.append(provider)
            continue
        report.comparisons[provider] = compared
        for probe, reference in zip(report.dynamic, at_sizes, strict=True):
            if reference is None or probe.not_verified is not None:
                continue
            try:
                with named_as(staged, report.output):
                    compared = _run_compared(session, staged, reference, options)
            except WnpassError as error:  # ONNX Runtime's whole reason, where it gave one
                said = str(error)
                if isinstance(error, prov.RunFailedError):
                    said = f"{report.output}: onnxruntime failed to run it: {error.reason}"
                if probe.ties is not None and isinstance(error, prov.RunFailedError):
                    probe.unchecked = (  # refused, not computed otherwise: fails nothing
                        f"on {provider}, ONNX Runtime refuses these sizes, which break "
                        f"torch.export's condition {probe.ties}, which ties them: in the file "
                        "such inputs do not go together"
                    )
                    continue
                probe.not_verified = f"on {provider}, {said}"
                logger.info("the dynamic axes failed with %s: %s", probe.where, error)
            else:
                probe.comparisons[provider] = compared
                vacuous = nothing_compared(compared) if probe.bound is not None else None
                if vacuous is not None:  # no evidence the file takes PyTorch's branch there
                    probe.not_verified = f"on {provider}, {vacuous}"
        try:
            (report.latency[provider],) = timed_runs(
                [(session, staged)], feeds, options.runs, options.warmup
            )
        except FailedInTiming as error:  # after the compared run: as check has it
            said = f"onnxruntime failed to run it {error.reason}"
            report.ort_failed = f"on {provider}, {report.output}: {said}"
            logger.info("the exported graph failed on %s: %s", provider, said)
            return


def check_shape_info(
    report: ExportReport, graph: ir.Graph, example_shapes: dict[str, list[int]]
) -> None:
    """Set ``report.shape_info_wrong``: each output axis the graph declares of a fixed size
    that a compared run computed at another, and each size name the graph gives several axes
    of its inputs and outputs that a compared run fed or computed at sizes that differ (ONNX
    Runtime does not hold inputs to it; a runtime that does refuses those inputs: ``x[x_0, 4]``
    and ``bias[x_0, 4]`` fed 2x4 and 1x4, t138); on the example inputs (``example_shapes``, by
    graph input) or with every dynamic axis at a probe's sizes, once each."""
    declared = {value.name: value.shape for value in graph.outputs}
    runs = [("on the example inputs", report.comparisons, example_shapes)] + [
        (f"with {probe.where}", probe.comparisons, probe.inputs)
        for probe in report.dynamic
        if probe.comparisons
    ]
    seen: set[tuple[str, int]] = set()  # (output, axis): said at the first run that shows it
    tied: set[str] = set()  # the size names said
    for where, results, fed in runs:
        for comparison in (c for compared in results.values() for c in compared):
            shape, actual = declared.get(comparison.name), comparison.shape
            if shape is None or actual is None or len(shape) != len(actual):
                continue
            for axis, (size, computed) in enumerate(zip(shape, actual, strict=True)):
                if not isinstance(size, int) or size == computed or (comparison.name, axis) in seen:
                    continue
                seen.add((comparison.name, axis))
                _said_wrong(
                    report,
                    f"the graph declares axis {axis} of output {comparison.name} as {size}, "
                    f"but it is {computed} {where}",
                )
        shapes = {c.name: c.shape for c in next(iter(results.values()), [])}  # as computed
        axes = _symbol_axes(graph.inputs, fed, "input")
        for symbol, found in _symbol_axes(graph.outputs, shapes, "output").items():
            axes.setdefault(symbol, []).extend(found)
        for symbol, found in axes.items():
            sizes = [size for _, size in found]
            if symbol in tied or len(set(sizes)) < 2:
                continue
            tied.add(symbol)
            said = " and ".join(axis for axis, _ in found)
            _said_wrong(
                report,
                f"the graph declares {said} one size, {symbol}, but they are "
                f"{' and '.join(str(size) for size in sizes)} {where}",
            )


def _symbol_axes(
    values: Sequence[ir.Value], sizes: Mapping[str, Sequence[int] | None], kind: str
) -> dict[str, list[tuple[str, int]]]:
    """The axes of ``values`` (the graph's inputs or outputs, ``kind``) that the graph names
    by a size name, by that name, each said (``axis 0 of input x``) with the size ``sizes``
    gives it (fed, or computed: an output's batch and time of one name, 2 and 1600, t146)."""
    axes: dict[str, list[tuple[str, int]]] = {}
    for value in values:
        shape, given = value.shape, sizes.get(value.name or "")
        if shape is None or given is None or len(shape) != len(given):
            continue
        for axis, dim in enumerate(shape):
            symbol = None if isinstance(dim, int) else dim.value
            if isinstance(symbol, str) and symbol:
                said = f"axis {axis} of {kind} {value.name}"
                axes.setdefault(symbol, []).append((said, given[axis]))
    return axes


def _said_wrong(report: ExportReport, said: str) -> None:
    report.shape_info_wrong.append(said)
    logger.info("%s", said)


def _run_compared(
    session: prov.Session, staged: Path, reference: Reference, options: CheckOptions
) -> list[OutputComparison]:
    feeds, expected = reference
    actual = prov.run(session, staged, feeds)
    out_names = [o.name for o in session.session.get_outputs()]
    return compare_outputs(
        out_names, expected, out_names, actual, rtol=options.rtol, atol=options.atol
    )
