"""``export``: the deployment pipeline's steps in order (see :mod:`wnpass.deploy`), and the
checks of its arguments before anything runs or is written.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wnpass import assumed
from wnpass.arguments import require_flag, whole
from wnpass.deploy.compare import check_shape_info, compare_with_reference, named_as
from wnpass.deploy.exporter import check_opset, moved_by_trace, run_exporter
from wnpass.deploy.forwards import Forwards, check_values, copy_to_export, parameters_written_line
from wnpass.deploy.inputs import (
    check_dynamic,
    check_dynamic_made,
    dynamic_shapes_for,
    graph_arguments,
    no_generators,
    several_inputs,
    traced_arguments,
)
from wnpass.deploy.moved import measure_moved, weights_moved
from wnpass.deploy.names import folded_layouts, restore_names, weights_by_name
from wnpass.deploy.outputs import (
    changed_outputs,
    example_arrays,
    expected_outputs,
    feeds_for,
    forward_outputs,
    require_outputs,
)
from wnpass.deploy.probes import (
    axes_alone,
    axes_said,
    every_axis,
    reference_at_sizes,
    run_beyond,
    run_probe,
    shorter_axes,
    within_ranges,
)
from wnpass.deploy.ranges import check_ranges
from wnpass.deploy.report import PROBES, SHORTER, ExportReport
from wnpass.errors import InvalidArgumentError, UsageError
from wnpass.fx.analyse import materialize_lazy
from wnpass.fx.arguments import require_module
from wnpass.fx.fold import check_weight_norm, fold_weight_norm
from wnpass.fx.forward import (
    Batch,
    as_batch,
    buffer_values,
    call_model,
    cloned,
    evaluating,
    state_given_back,
)
from wnpass.onnx import io
from wnpass.onnx.api import fold_onnx
from wnpass.onnx.reach import random_ops_by_output
from wnpass.plan import IOPlan, as_path, as_plan
from wnpass.verify import providers as prov
from wnpass.verify.options import DEFAULT_RUNS, DEFAULT_WARMUP, CheckOptions, refuse_unused

logger = logging.getLogger(__name__)


# The opsets each torch.onnx exporter writes: the dynamo exporter starts at 18 (its op library
# needs it); the TorchScript one covers 7 to its own maximum.
def opset_range(exporter: str) -> tuple[int, int]:
    from torch.onnx import _constants

    if exporter == "dynamo":
        return 18, _constants.ONNX_MAX_OPSET
    return _constants.ONNX_MIN_OPSET, _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET


_DEFAULT_CHECK = CheckOptions()


def _require_export_arguments(fold_in_torch: object, verify: object, opset: object) -> int | None:
    """The Python API's arguments of :func:`export` of the types it takes (the CLI's parsing
    gives no other): ``verify="no"`` would count as true, ``dynamic=["x"]`` fail deep inside.
    Returns ``opset`` as a Python int (``np.int64(17)`` is one), or None."""
    require_flag("fold_in_torch", fold_in_torch)
    require_flag("verify", verify)
    if opset is None:
        return None
    if (number := whole(opset)) is None:
        raise InvalidArgumentError(
            f"must be a whole number or None, not {opset!r}", parameter="opset"
        )
    return number


def _required_dynamic(dynamic: object) -> dict[str, dict[int, str]] | None:
    """``dynamic`` as a dict of input names to ``{axis: name}`` dicts, each axis a Python int
    (``np.int64(0)`` is one); refused where it is not one."""
    if dynamic is None:
        return None
    shape = "a dict of input names to {axis: name} dicts, e.g. {'mel': {0: 'batch', 2: 'frames'}}"
    if not isinstance(dynamic, Mapping):
        raise InvalidArgumentError(f"must be {shape}, not {dynamic!r}", parameter="dynamic")
    checked: dict[str, dict[int, str]] = {}
    for name, axes in dynamic.items():
        ok = isinstance(name, str) and isinstance(axes, Mapping)
        ok = ok and all(
            whole(axis) is not None and isinstance(label, str) for axis, label in axes.items()
        )
        if not ok:
            raise InvalidArgumentError(
                f"must be {shape}, not {{{name!r}: {axes!r}}}", parameter="dynamic"
            )
        if not axes:  # probes would say "every dynamic axis doubled" of unchanged inputs
            raise InvalidArgumentError(f"{name!r} names no axis", parameter="dynamic")
        checked[name] = {int(axis): label for axis, label in axes.items()}  # whole numbers
    return checked


def validate_export_options(
    exporter: str,
    opset: int | None,
    options: CheckOptions | None,
    *,
    dynamic: bool = False,
    accept_ranges: bool = False,
) -> None:
    """Every export option (``options``: the check's, when verifying; ``dynamic``: whether
    dynamic axes are given), checked before anything runs or is written."""
    if exporter not in ("dynamo", "torchscript"):
        raise InvalidArgumentError(
            f"{exporter!r}: choose dynamo or torchscript", parameter="exporter"
        )
    if accept_ranges and exporter != "dynamo":  # refused, not ignored: none would be accepted
        raise UsageError(
            f"goes with the dynamo exporter: the {exporter} exporter holds no axis to a range",
            parameter="accept_ranges",
        )
    if accept_ranges and not dynamic:
        raise UsageError(
            "goes with dynamic axes: with none given, no size has a range to accept",
            parameter="accept_ranges",
        )
    if opset is not None:
        low, high = opset_range(exporter)
        if not low <= opset <= high:
            raise InvalidArgumentError(
                f"{opset}: the {exporter} exporter writes opsets {low} to {high}",
                parameter="opset",
            )
    if options is not None:
        options.validate()


def export(
    model: nn.Module,
    example_inputs: torch.Tensor | Sequence[Any] | Mapping[str, Any] | Batch,
    path: str | os.PathLike[str],
    *,
    exporter: str = "dynamo",
    fold_in_torch: bool = True,
    dynamic: dict[str, dict[int, str]] | None = None,
    accept_ranges: bool = False,
    opset: int | None = None,
    verify: bool = True,
    providers: Sequence[str] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    threads: int | None = None,
    plan: IOPlan | None = None,
) -> ExportReport:
    """Export ``model`` in eval mode (each submodule's training flag comes back) to a clean ONNX
    file at ``path``, verified unless ``verify=False``; see the module docstring.

    Every option and path is checked before anything is written (``plan``: the caller's, with
    its other files). With ``verify``, the model is published under ``path`` only when ONNX
    Runtime's outputs match PyTorch's and no weight-norm site was declined; otherwise nothing
    appears there and the report says why. ``accept_ranges``: export a dynamic axis that
    torch.export holds to a range of sizes, outside which PyTorch runs too, for that range
    only (refused otherwise: :func:`check_ranges`).
    """
    require_module(model)
    plan = as_plan(plan)
    opset = _require_export_arguments(fold_in_torch, verify, opset)
    require_flag("accept_ranges", accept_ranges)
    dynamic = _required_dynamic(dynamic)
    if plan is None:  # the model's code may read files: none of them may be the output
        plan = IOPlan()
        plan.watch_user_code()
        try:  # the plan's watch (an inotify instance: a few per user) ends with the call
            return export(
                model,
                example_inputs,
                path,
                exporter=exporter,
                fold_in_torch=fold_in_torch,
                dynamic=dynamic,
                accept_ranges=accept_ranges,
                opset=opset,
                verify=verify,
                providers=providers,
                rtol=rtol,
                atol=atol,
                runs=runs,
                warmup=warmup,
                threads=threads,
                plan=plan,
            )
        finally:
            plan.close()
    options = CheckOptions(
        providers=providers, rtol=rtol, atol=atol, runs=runs, warmup=warmup, threads=threads
    )
    if not verify:  # the options given other values than their defaults
        refuse_unused(
            {
                f.name: value
                for f in dataclasses.fields(options)
                if (value := getattr(options, f.name)) != getattr(_DEFAULT_CHECK, f.name)
            },
            "verify=True",
        )
    validate_export_options(
        exporter,
        opset,
        options if verify else None,
        dynamic=bool(dynamic),
        accept_ranges=accept_ranges,
    )
    if isinstance(model, torch.jit.ScriptModule):  # TorchScript submodules are exported as they are
        raise InvalidArgumentError(
            f"{type(model).__name__}: a TorchScript module (torch.jit.script or trace): wnpass "
            "exports the Python nn.Module it was made from (it folds weight norm there); or "
            "export it with torch.onnx.export and fold the file with wnpass fold"
        )
    inputs = as_batch(example_inputs)
    dynamo = exporter == "dynamo"
    arguments = traced_arguments(model, inputs, dynamo)
    no_generators(arguments, inputs)
    graph_inputs, several = graph_arguments(arguments, dynamo)
    check_dynamic(dynamic, arguments, graph_inputs)
    if several is not None:
        several_inputs(*several, verify=verify)
    shapes = dynamic_shapes_for(model, inputs, dynamic, arguments) if dynamic and dynamo else None
    check_values(model, inputs)
    path = as_path("path", path)
    io.require_onnx_name(path, "path")
    if not plan.planned(path, "output"):  # the CLI plans it with its other files
        plan.write(path, "output")
    io.keep_old_data(plan, path)  # the old output's data files, as they are now
    plan.check()  # the output's data file, if any, is planned once the model is known
    chosen = prov.resolve(list(providers) if providers else None) if verify else []
    loaded = buffer_values(model)  # as the caller set them, before wnpass's forwards
    # the deployed behaviour; every submodule's flag comes back
    with evaluating(model), state_given_back(model, unless_written=False):
        # what is exported is a copy of the model as given, taken before any of wnpass's
        # forwards, and after lazy layers take their shapes (and give back what that forward
        # wrote: not the parameters it wrote, which there is no copy of yet)
        lazy_wrote = materialize_lazy(model, inputs)
        target, itself = copy_to_export(model, fold_in_torch)
        forwards = Forwards(model, None if itself else target, lazy_wrote)
        with forwards.given_back():
            result = call_model(model, inputs)  # the model's own error, before any exporter's
            require_outputs(result)
            outputs = forward_outputs(result) if verify else []  # read before it is given back
        changed = []
        if verify:
            with forwards.given_back():
                changed = changed_outputs(outputs, forward_outputs(call_model(model, inputs)))
        examples = example_arrays(graph_inputs) if verify else {}
        probed = []
        for sizes in PROBES if verify and dynamic else ():
            assert dynamic is not None  # for the type checker
            with forwards.given_back():
                probed.append(run_probe(model, inputs, dynamic, arguments, dynamo, sizes))
        if forwards.written:  # at INFO, as what else the report says: the command line prints it
            logger.info("%s", parameters_written_line(forwards.written, forwards.given))
        # kept for the ONNX fold, its values are still checked here: the dynamo exporter
        # computes a small site into a plain initializer, NaN and all, which no fold sees
        torch_report = fold_weight_norm(target) if fold_in_torch else check_weight_norm(target)
        # named as the exporter sees them: a deep copy holds a torch.compile'd layer unwrapped
        # (its bias is "b.bias", not "b._orig_mod.bias"), and its weight must match
        weights = weights_by_name(target)
        with plan.staging(path) as staging:
            raw = staging / "exported.onnx"
            with named_as(raw, f"the {exporter} exporter's output for {path}"):
                warned, ranges, conditions = run_exporter(
                    target,
                    cloned(inputs),  # a forward that changes its inputs changes a copy
                    list(graph_inputs),
                    raw,
                    output=path,
                    dynamo=dynamo,
                    dynamic=dynamic,
                    shapes=shapes,
                    opset=opset,
                )
                exported = io.load(raw)
            with forwards.given_back():
                ranged, beyond = check_ranges(
                    model, inputs, arguments, ranges, conditions or [], verify, accept_ranges
                )
            if conditions is None:  # another torch: said, never passed over
                ranged.append(assumed.UNREAD)
            accepted = [c for c in conditions or [] if c.tie or accept_ranges]
            probed = [within_ranges(probe, ranges, accepted, accept_ranges) for probe in probed]
            for sizes in [p.sizes for p in probed if p.outputs is None]:
                assert dynamic is not None  # for the type checker
                for axes in axes_alone(dynamic, arguments):
                    with forwards.given_back():
                        alone = run_probe(model, inputs, dynamic, arguments, dynamo, sizes, axes)
                    probed.append(within_ranges(alone, ranges, accepted, accept_ranges))
            every = dynamic or {}
            for axes in shorter_axes(probed, every, arguments):
                with forwards.given_back():
                    shorter = run_probe(model, inputs, every, arguments, dynamo, SHORTER, axes)
                probed.append(within_ranges(shorter, ranges, accepted, accept_ranges))
            for where in beyond:  # compared at the gate, as the probes above are
                with forwards.given_back():
                    probed.append(run_beyond(model, where, dynamo))
            warned += [] if dynamo else moved_by_trace(target, loaded)
            # what the forward read while the exporter traced it: the plan.check() below,
            # before anything is written, refuses an output onto one of those files
            plan.record_user_reads()
            check_opset(exported, opset)
            check_dynamic_made(exported, dynamic, exporter)
            _, onnx_report = fold_onnx(exported, in_place=True)
            in_place = itself and fold_in_torch
            report = ExportReport(str(path), exporter, torch_report, onnx_report, in_place)
            report.warnings, report.sizes = warned, ranged
            report.parameters_written = forwards.written
            report.parameters_given_back = forwards.given
            report.names_missing, report.names_transposed, report.names_shared = restore_names(
                exported, weights
            )
            transposed, report.names_laid_out, together = folded_layouts(onnx_report, weights)
            report.names_held_together = together
            held = {name for names in together.values() for name in names}
            report.names_missing = [name for name in report.names_missing if name not in held]
            report.names_transposed += [n for n in transposed if n not in report.names_transposed]
            report.verified = verify
            if verify and dynamic:
                report.dynamic_axes = [axes_said([axis]) for axis in every_axis(dynamic)]
            report.not_available = (  # not checked for lack of them, where not chosen
                [p for p in prov.PROVIDERS if p not in prov.available()]
                if verify and not providers
                else []
            )
            feeds = feeds_for(exported.graph, examples) if verify else {}
            expected = expected_outputs(exported.graph, outputs) if verify else []
            report.not_deterministic = [exported.graph.outputs[i].name or str(i) for i in changed]
            if verify:
                report.draws_random = {
                    output: sorted(node.op_type for node in nodes)
                    for output, nodes in random_ops_by_output(exported).items()
                }
            if report.not_deterministic:
                logger.info(
                    "cannot verify: PyTorch gave other values of output %s on a second run "
                    "on the same inputs (the model is not deterministic)",
                    ", ".join(report.not_deterministic),
                )

            at_sizes = [reference_at_sizes(report, exported.graph, probe) for probe in probed]

            def gate(staged: Path) -> bool:
                if report.not_deterministic or report.draws_random:  # nothing to compare with
                    return False
                with named_as(staged, str(path)):
                    compare_with_reference(
                        report, staged, chosen, (feeds, expected), at_sizes, options
                    )

                def moved_outputs() -> list[Any] | None:
                    with forwards.given_back(), weights_moved(model) as moved:
                        if not moved:
                            return None
                        # read before the weights and what the forward wrote are given back
                        again = forward_outputs(call_model(model, inputs))
                    return expected_outputs(exported.graph, again)

                names = [value.name or str(i) for i, value in enumerate(exported.graph.outputs)]
                measure_moved(report, names, expected, moved_outputs, options)
                with named_as(staged, str(path)):
                    check_shape_info(
                        report, exported.graph, {n: list(a.shape) for n, a in feeds.items()}
                    )
                return bool(report)  # matched, and nothing was left to fold

            save_target = io.plan_save(plan, exported, path)
            plan.check()
            published = io.save(exported, save_target, plan, gate=gate if verify else None)
    report.published = published
    report.data_files = [str(path) for path in save_target.data_written(plan)]
    report.onnx_fold.left = list(plan.left)
    report.onnx_fold.removed = [str(path) for path in plan.removed]
    return report
