"""The ONNX entry points: ``fold_onnx`` and ``inspect_onnx``, on paths or models."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import NamedTuple, TypeVar

import onnx
import onnx_ir as ir

from wnpass.errors import OutputError
from wnpass.onnx import io
from wnpass.onnx.fold import FoldWeightNormPass, count_nodes, site_reports
from wnpass.onnx.match import find_sites
from wnpass.report import FoldReport

__all__ = ["FoldOutcome", "fold_onnx", "inspect_onnx"]

logger = logging.getLogger(__name__)

ModelLike = TypeVar("ModelLike", ir.Model, onnx.ModelProto)


class FoldOutcome(NamedTuple):
    """``model, report = fold_onnx(...)``."""

    model: ir.Model | onnx.ModelProto
    report: FoldReport


def _as_ir(model: str | os.PathLike[str] | ir.Model | onnx.ModelProto, copy: bool) -> ir.Model:
    if isinstance(model, ir.Model):
        return model.clone() if copy else model
    if isinstance(model, onnx.ModelProto):
        return io.from_proto(model)
    return io.load(model)


def inspect_onnx(model: str | os.PathLike[str] | ir.Model | onnx.ModelProto) -> FoldReport:
    """The weight-norm sites of a model, foldable or declined with a reason; changes nothing."""
    ir_model = _as_ir(model, copy=False)
    report = FoldReport(sites=site_reports(ir_model, find_sites(ir_model)))
    report.nodes_before = report.nodes_after = count_nodes(ir_model)
    if isinstance(model, (str, os.PathLike)):
        report.input = str(model)
        report.bytes_before = io.model_bytes(model, ir_model)
    return report


def fold_onnx(
    model: str | os.PathLike[str] | ir.Model | onnx.ModelProto,
    output: str | os.PathLike[str] | None = None,
    *,
    in_place: bool = False,
    external_data: bool | None = None,
) -> FoldOutcome:
    """Fold every foldable weight-norm site.

    ``model`` is a path, an ``onnx_ir.Model`` or an ``onnx.ModelProto``. A path is read and the
    folded model written atomically to ``output`` (default ``<stem>.folded.onnx`` beside the
    input); the input file, or a data file it uses, is only overwritten with ``in_place=True``.
    An ``ir.Model`` is copied unless ``in_place=True``; a ``ModelProto`` is never changed, and a
    new one is returned.
    """
    start = time.perf_counter()
    is_path = isinstance(model, (str, os.PathLike))
    ir_model = _as_ir(model, copy=not in_place)
    keep: set[Path] = set()
    if is_path:
        source = Path(model)  # type: ignore[arg-type]
        keep = {source.resolve(), *io.external_paths(ir_model)}
        output = _check_output(source, output, in_place, keep)
    nodes_before = count_nodes(ir_model)
    if is_path:
        bytes_before = io.model_bytes(model, ir_model)  # type: ignore[arg-type]
    if external_data is None and io.has_external_data(ir_model):
        external_data = True  # weights stay outside when they came from outside
    result = FoldWeightNormPass()(ir_model)
    report: FoldReport = result.report  # type: ignore[attr-defined]
    report.nodes_before, report.nodes_after = nodes_before, count_nodes(ir_model)
    if is_path:
        report.input = str(model)
        report.bytes_before = bytes_before
    if (
        output is not None
        and not result.modified
        and is_path
        and not io.has_external_data(ir_model)
    ):
        io.copy(Path(model), output)  # type: ignore[arg-type]  # nothing folded: the same bytes
    elif output is not None:
        io.save(ir_model, output, external_data=external_data, keep=set() if in_place else keep)
        if in_place and external_data:
            ir_model = io.load(output)  # the old data file is gone: map the new one
    if output is not None:
        report.output = str(output)
        # a single file is its own size; with external data, read where the weights went
        report.bytes_after = (
            io.model_bytes(output) if external_data else Path(output).stat().st_size
        )
    report.seconds = time.perf_counter() - start
    if isinstance(model, onnx.ModelProto):
        if not result.modified:  # nothing folded: the caller's model, unchanged
            unchanged = onnx.ModelProto()
            unchanged.CopyFrom(model)
            return FoldOutcome(unchanged, report)
        return FoldOutcome(io.to_proto(ir_model), report)
    return FoldOutcome(ir_model, report)


def _check_output(
    source: Path, output: str | os.PathLike[str] | None, in_place: bool, inputs: set[Path]
) -> Path:
    """Where to write; never the input or a data file it reads, unless in place."""
    if in_place:
        if output is not None and Path(output).resolve() != source.resolve():
            raise OutputError("--in-place writes over the input; do not also give -o")
        return source
    target = Path(output) if output is not None else io.default_output(source)
    if target.resolve() in inputs or (
        target.exists() and source.exists() and os.path.samefile(target, source)
    ):
        raise OutputError(f"{target}: would overwrite the input; use --in-place to allow it")
    return target
