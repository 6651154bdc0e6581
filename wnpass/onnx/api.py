"""The ONNX entry points: ``fold_onnx`` and ``inspect_onnx``, on paths or models."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, overload

import onnx
import onnx_ir as ir

from wnpass.arguments import require_flag, require_type
from wnpass.errors import InvalidArgumentError, UsageError
from wnpass.onnx import io
from wnpass.onnx.cones import cone_reports, find_cones, named_as_folded, shared_computed
from wnpass.onnx.fold import (
    FoldWeightNormPass,
    count_nodes,
    graph_label,
    inspection_of_a_fold,
    site_reports,
)
from wnpass.onnx.graphs import constant_initializers
from wnpass.onnx.match import declined_targets, find_sites
from wnpass.plan import IOPlan, as_path, as_plan
from wnpass.report import ConeReport, FoldReport, SiteReport, listed
from wnpass.verify.options import CheckOptions

__all__ = ["FoldOutcome", "fold_onnx", "inspect_onnx"]

logger = logging.getLogger(__name__)

ModelLike = TypeVar("ModelLike", ir.Model, onnx.ModelProto)


class FoldOutcome(NamedTuple):
    """``model, report = fold_onnx(...)``."""

    model: ir.Model | onnx.ModelProto
    report: FoldReport


def _as_ir(model: str | os.PathLike[str] | ir.Model | onnx.ModelProto, copy: bool) -> ir.Model:
    if isinstance(model, ir.Model):
        io.require_data_folders(model)
        return model.clone() if copy else model
    if isinstance(model, onnx.ModelProto):
        return io.from_caller(model)
    return io.load(model)


def inspect_onnx(
    model: str | os.PathLike[str] | ir.Model | onnx.ModelProto, *, weight_norm_only: bool = False
) -> FoldReport:
    """The weight-norm sites of a model, foldable or declined with a reason, and (unless
    ``weight_norm_only``) the weights computed from constants that a fold would make
    initializers (``report.computed_weights``); changes nothing."""
    ir_model = _as_ir(model, copy=False)
    with constant_initializers(ir_model):  # an IR version 3 model's are constants too
        report = _inspect(ir_model, weight_norm_only)
    report.nodes_before = report.nodes_after = count_nodes(ir_model)
    if isinstance(model, (str, os.PathLike)):
        report.input = str(model)
        report.bytes_before = io.model_bytes(model, ir_model)
    return report


def _weight_functions(ir_model: ir.Model, weight_norm_only: bool) -> bool:
    """Whether a fold would inline some of the model's local functions (imported only for a
    model that has some: onnx-ir's inliner costs a few ms and MiB)."""
    from wnpass.onnx.functions import weight_functions

    return bool(weight_functions(ir_model, cones=not weight_norm_only))


def _inspect(ir_model: ir.Model, weight_norm_only: bool) -> FoldReport:
    """The rows of ``inspect_onnx``: the fold's, decided as the fold decides them."""
    if ir_model.functions and _weight_functions(ir_model, weight_norm_only):
        # a fold inlines functions first, which this model is not to have done to it
        return inspection_of_a_fold(ir_model, weight_norm_only=weight_norm_only)
    sites = find_sites(ir_model)
    # the sites the fold may fold count as constants: a weight computed from one is found
    targets = {site.target: "" for site in sites if site.foldable}
    cones = [] if weight_norm_only else find_cones(ir_model, targets, sites=declined_targets(sites))
    if (
        any(site.after is not None for site in sites)
        or any(source in targets for cone in cones for source in cone.sources)
        or shared_computed(cones)
    ):
        # folding one weight decides another (or a value inside a cone that the fold folds
        # first, as others read it too): the fold's own rows, from a copy
        report = inspection_of_a_fold(ir_model, weight_norm_only=weight_norm_only)
    else:
        # no cone reads a site's weight: the cones are those of the model after the sites fold
        report = FoldReport(sites=site_reports(ir_model, sites))
        report.cones = cone_reports(ir_model, cones, sites)
        if not named_as_folded(ir_model, cones, report.cones, {r.name for r in report.sites}):
            # the fold writes some weight under another name: its own rows, from a copy
            report = inspection_of_a_fold(ir_model, weight_norm_only=weight_norm_only)
    return report


# What fold_onnx takes as its model.
_MODEL_TYPES = (str, os.PathLike, ir.Model, onnx.ModelProto)


@overload
def fold_onnx(
    model: onnx.ModelProto,
    output: None = None,
    *,
    in_place: bool = ...,
    external_data: bool | None = ...,
    weight_norm_only: bool = ...,
    verify: None = None,
    plan: IOPlan | None = ...,
    progress: Callable[[int, int], None] | None = ...,
) -> tuple[onnx.ModelProto, FoldReport]: ...


@overload
def fold_onnx(
    model: str | os.PathLike[str] | ir.Model,
    output: str | os.PathLike[str] | None = None,
    *,
    in_place: bool = ...,
    external_data: bool | None = ...,
    weight_norm_only: bool = ...,
    verify: CheckOptions | None = ...,
    plan: IOPlan | None = ...,
    progress: Callable[[int, int], None] | None = ...,
) -> tuple[ir.Model, FoldReport]: ...


def fold_onnx(
    model: str | os.PathLike[str] | ir.Model | onnx.ModelProto,
    output: str | os.PathLike[str] | None = None,
    *,
    in_place: bool = False,
    external_data: bool | None = None,
    weight_norm_only: bool = False,
    verify: CheckOptions | None = None,
    plan: IOPlan | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Any:  # a FoldOutcome; the overloads above say which model type
    """Fold every foldable weight-norm site, then (unless ``weight_norm_only``) every weight
    still computed from constants by layout, cast and exactly rounded arithmetic ops
    (``report.cones``).

    ``model`` is a path, an ``onnx_ir.Model`` or an ``onnx.ModelProto``. A path is read and the
    folded model written atomically to ``output`` (default ``<stem>.folded.onnx`` beside the
    input); the input file is only replaced with ``in_place=True``. Every path is planned and
    checked before anything is written (``plan``: the caller's, holding its other files).
    With ``verify``, the folded model is checked against the input before it is published: when
    the check fails, nothing appears under ``output`` and ``report.check`` says why.
    ``progress(done, total)`` is called as the output's weights are written.
    An ``ir.Model`` is copied unless ``in_place=True``; a ``ModelProto`` is never changed, and a
    new one is returned.
    """
    start = time.perf_counter()
    require_type("model", model, _MODEL_TYPES, "a path, an onnx.ModelProto or an onnx_ir.Model")
    for parameter, flag in (("in_place", in_place), ("weight_norm_only", weight_norm_only)):
        require_flag(parameter, flag)
    if external_data is not None:
        require_flag("external_data", external_data)
    if progress is not None and not callable(progress):
        raise InvalidArgumentError("must be callable or None", parameter="progress")
    plan = as_plan(plan)
    output = None if output is None else as_path("output", output)  # "" is no output
    if output is not None and not in_place:
        io.require_onnx_name(output)
    if verify is not None:
        require_type("verify", verify, (CheckOptions,), "a CheckOptions or None")
        verify.validate()
    if not isinstance(model, (str, os.PathLike)):
        if output is not None or verify is not None:
            raise UsageError("output and verify need a model given as a path")
        ir_model = _as_ir(model, copy=not in_place)
        report = _fold(ir_model, weight_norm_only)
        report.seconds = time.perf_counter() - start
        if isinstance(model, onnx.ModelProto):
            if not report.changed:  # nothing folded: the caller's model
                unchanged = onnx.ModelProto()
                unchanged.CopyFrom(model)
                return FoldOutcome(unchanged, report)
            return FoldOutcome(io.to_proto(ir_model), report)
        return FoldOutcome(ir_model, report)
    source = as_path("model", model)
    plan = plan if plan is not None else IOPlan()
    ir_model = io.load(source, plan)
    if verify is not None and verify.inputs is not None:
        plan.read(verify.inputs, "the inputs file")
    if in_place and output is not None and Path(output) != source:
        raise UsageError("in_place writes over the input; give no output")
    target_path = source if in_place else Path(output or io.default_output(source))
    target = io.plan_save(  # weights stay outside when they came from outside
        plan, ir_model, target_path, external_data=external_data, replaces_read=in_place
    )
    plan.check()
    bytes_before = io.model_bytes(source, ir_model)
    with plan.changes_explain():  # weights are read from here on, lazily
        held = None if verify is None else _held(ir_model)  # as the input has it
        report = _fold(ir_model, weight_norm_only)
        report.input, report.bytes_before = str(source), bytes_before
        if in_place and not report.changed and external_data is None:
            # nothing to check either: the input is the output (asked to move its weights in
            # or out, it is written as asked)
            report.unchanged = True
            report.seconds = time.perf_counter() - start
            return FoldOutcome(ir_model, report)
        same_bytes = not report.changed and not target.external
        gate = (
            None
            if verify is None
            else _check_gate(ir_model, source, target.path, verify, report, held)
        )
        published = io.save(
            ir_model,
            target,
            plan,
            gate=gate,
            same_bytes_as=source if same_bytes else None,
            progress=progress,
        )
    report.left = list(plan.left)
    report.removed = [str(path) for path in plan.removed]
    if published:
        report.output = str(target.path)
        report.data_files = [str(path) for path in target.data_written(plan)]
        files = [str(target.path), *report.data_files]
        report.bytes_after = sum(os.stat(file).st_size for file in files)
    report.seconds = time.perf_counter() - start
    return FoldOutcome(ir_model, report)


def _fold(ir_model: ir.Model, weight_norm_only: bool) -> FoldReport:
    nodes_before = count_nodes(ir_model)
    result = FoldWeightNormPass(weight_norm_only=weight_norm_only)(ir_model)
    report: FoldReport = result.report  # type: ignore[attr-defined]
    report.nodes_before, report.nodes_after = nodes_before, count_nodes(ir_model)
    return report


def _in_bodies_note(report: FoldReport, model: ir.Model) -> list[str]:
    """A note where the weights folded are read only inside subgraphs (held there, or in the
    main graph and read only there, t311): the check runs one branch of an ``If``, and a
    ``Loop``'s body as often as the inputs say, so a fold read in a branch the inputs did not
    take is not compared (a bool input synthesized is one coin flip, t310)."""
    rows: list[SiteReport | ConeReport] = [*report.sites, *report.cones]
    bodies: set[str] = set()
    for row in rows:
        if row.status != "folded":
            continue
        if row.graph != "main":
            bodies.add(row.graph)
            continue
        weight = model.graph.initializers.get(row.name)
        readers = [] if weight is None else [use.node.graph for use in weight.uses()]
        if readers and all(graph is not model.graph for graph in readers):
            bodies.update(graph_label(graph, model) for graph in readers if graph is not None)
    inside = sorted(body for body in bodies if body.startswith("subgraph"))
    if not inside:
        return []
    return [
        f"weights folded that only {listed(inside, 5)} read: compared only where the inputs "
        "run them (an If's branch they do not take is not); give --inputs with values that "
        "take each"
    ]


def _held(model: ir.Model) -> object:
    """The precision ``model``'s outputs are computed at, as a check reads it from its graph
    (:func:`wnpass.verify.precision.computed_at`)."""
    from wnpass.verify.precision import computed_at

    return computed_at(model)


def _check_gate(
    model: ir.Model,
    source: Path,
    output: Path,
    options: CheckOptions,
    report: FoldReport,
    held: object,
) -> Callable[[Path], bool]:
    """Check the staged output against the input (``model``, loaded already and folded: its
    inputs are the input's; ``held``: :func:`_held` of it before the fold); the result goes
    into ``report.check``."""

    def gate(staged: Path) -> bool:
        from wnpass.errors import InvalidModelError
        from wnpass.onnx.graphs import model_draws_randomly
        from wnpass.verify.check import check
        from wnpass.verify.providers import SessionError

        # the model loaded is folded by now: what the check reads of the reference's graph is
        # read from the input itself where the fold changed it: how it draws random numbers
        # (a Bernoulli fed by a folded layer draws otherwise, t201), the precision of its
        # outputs (float32 weights folded into ONNX Runtime's float32 region of a float16
        # model read as a float32 model's, whose tolerance failed a correct fold, t348)
        changed = model_draws_randomly(model) or _held(model) != held
        loaded = None if changed else model
        try:
            checked = check(source, staged, options=options, reference_model=loaded)
        except SessionError as error:
            if error.model == source:  # the input ONNX Runtime cannot load or run: bad input
                raise
            raise RuntimeError(f"the folded model is not valid: {error.detail}") from error
        except InvalidModelError as error:  # wnpass's own output: a bug, not bad input
            raise RuntimeError(f"the folded model is not valid: {error.detail}") from error
        # the name it is published under; in place, that is the input's name too
        checked.candidate = str(output) if output != source else f"the folded {output}"
        checked.notes += _in_bodies_note(report, model)
        report.check = checked
        return bool(checked)

    return gate
