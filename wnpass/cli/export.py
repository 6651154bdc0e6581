"""``wnpass export model.py -o MODEL.onnx``: fold in PyTorch, export, fold what is left, verify."""

from __future__ import annotations

import argparse
import re
from typing import Any

from wnpass.cli.options import (
    add_check_options,
    add_json_option,
    add_model_py_arguments,
    blamed_on,
    check_options,
    file_path,
    given_whole,
    inputs_function,
    load_model,
    plan_model_py,
    refuse_check_flags,
)
from wnpass.cli.output import Printer
from wnpass.cli.render import print_sites
from wnpass.report import counted, written
from wnpass.verify.options import CheckOptions

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_py_arguments(parser)
    parser.add_argument("-o", "--output", type=file_path, required=True, metavar="MODEL.onnx")
    parser.add_argument(
        "--exporter",
        choices=("dynamo", "torchscript"),
        default="dynamo",
        help="torch.onnx exporter",
    )
    parser.add_argument(
        "--keep-weight-norm",
        action="store_true",
        help="export with weight norm and fold it in ONNX only",
    )
    parser.add_argument(
        "--dynamic", action="append", metavar="NAME=AXES", help="dynamic axes, e.g. mel=0,2"
    )
    parser.add_argument(
        "--accept-ranges",
        action="store_true",
        help="export a dynamic axis torch.export holds to a range of sizes, outside which "
        "PyTorch runs too, for that range only (refused otherwise), and for the sizes where "
        "the conditions torch.export took on it hold",
    )
    parser.add_argument("--opset", type=given_whole, help="ONNX opset (default: the exporter's)")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="compare ONNX Runtime with PyTorch and time it; publish only if they match",
    )
    add_json_option(parser)
    add_check_options(parser, inputs=False)


def run(args: argparse.Namespace, out: Printer) -> int:
    """Fold weight norm in PyTorch, export to ONNX, fold what is left, verify against PyTorch."""
    from wnpass.deploy import validate_export_options
    from wnpass.errors import UsageError
    from wnpass.onnx.io import require_onnx_name

    require_onnx_name(args.output)  # before the model's code runs
    dynamic = _parse_dynamic(args.dynamic)
    if not args.verify:
        refuse_check_flags(args, goes_with="--verify")
    options = check_options(args) if args.verify else None
    validate_export_options(
        args.exporter,
        args.opset,
        options,
        dynamic=bool(dynamic),
        accept_ranges=args.accept_ranges,
    )
    plan = plan_model_py(args, args.output)
    from wnpass.onnx.io import keep_old_data

    keep_old_data(plan, args.output)  # before the model's code runs (t177)
    plan.check()

    from wnpass.deploy import export, exporters_silenced

    model, inputs = load_model(args, plan, keep_pairs=True)  # its weight norm reported
    if inputs is None:
        raise UsageError(f"{args.model}: defines no example_inputs(); export needs them")
    with blamed_on(args.model, inputs_function(args)), exporters_silenced():
        report = export(
            model,
            inputs,
            args.output,
            exporter=args.exporter,
            fold_in_torch=not args.keep_weight_norm,
            dynamic=dynamic,
            accept_ranges=args.accept_ranges,
            opset=args.opset,
            verify=args.verify,
            **_check_arguments(options),
            plan=plan,
        )
    _print_export(out, report)
    if args.json:
        out.json_report(lambda: report.write_json(args.json, plan))
    return 0 if report else 1


def _check_arguments(options: CheckOptions | None) -> dict[str, Any]:
    """``export``'s check parameters from the validated options (none without ``--verify``)."""
    if options is None:
        return {}
    return {
        "providers": options.providers,
        "rtol": options.rtol,
        "atol": options.atol,
        "runs": options.runs,
        "warmup": options.warmup,
        "threads": options.threads,
    }


_DIGITS = re.compile(r"-?[0-9]{1,18}")  # no axis has more (int() fails past 4300 digits)


def _parse_dynamic(items: list[str] | None) -> dict[str, dict[int, str]] | None:
    """``["mel=0,2"]`` -> ``{"mel": {0: "mel_0", 2: "mel_2"}}``; flags naming one input add
    up (``x=0 --dynamic x=1`` is ``x=0,1``). Whether each name and axis fits the model is
    checked by ``export`` before anything is exported."""
    from wnpass.errors import InvalidArgumentError

    if not items:
        return None
    dynamic: dict[str, dict[int, str]] = {}
    for item in items:
        name, _, text = item.partition("=")
        parts = text.split(",")
        # ASCII digits as written (int() takes " 0", "+1" and Arabic-Indic digits, t202)
        axes = [int(a) for a in parts] if all(_DIGITS.fullmatch(a) for a in parts) else []
        if not name or not axes:
            raise InvalidArgumentError(
                f"{item!r}: expected NAME=AXES, e.g. mel=0,2", parameter="dynamic"
            )
        if any(a < 0 for a in axes):
            raise InvalidArgumentError(
                f"{item!r}: axes count from 0 (a negative axis is not taken)", parameter="dynamic"
            )
        dynamic.setdefault(name, {}).update({a: f"{name}_{a}" for a in axes})
    return dynamic


def _print_export(out: Printer, report: Any) -> None:
    from wnpass.deploy import parameters_written_line
    from wnpass.verify.report import COMPARISON_COLUMNS, comparison_row

    if (torch_fold := report.torch_fold) is not None:
        # a site declined in PyTorch (NaN, a zero-norm unit) stays weight norm: said here (the
        # ONNX fold meets it again after TorchScript; dynamo computes it into an initializer)
        declined = torch_fold.declined
        total = counted(len(torch_fold.sites), "weight-norm site")
        done = (
            f"{torch_fold.folded} of {total}"
            if declined
            else counted(torch_fold.folded, "weight-norm site")
        )
        said = out.summary if declined else out.line  # a decline is why it failed: --quiet too
        if not torch_fold.kept:  # folded in PyTorch (not --keep-weight-norm)
            said(f"folded {done} in PyTorch")
        elif declined:
            said("kept weight norm for the ONNX fold; each site checked in PyTorch first")
        for site in declined:
            said(f"  declined in PyTorch: {site.name}: {site.reason}")
    print_sites(out, report.onnx_fold, f"{report.output} ({report.exporter})", inspect=False)
    if kept := report.run_time_weights:
        out.line(
            "weights computed at run time from the model's inputs, as forward computes them "
            "on every call (no fold can make them constants; they do not keep the file from "
            "deploying): " + ", ".join(f"{site.name} (from {site.fed_by})" for site in kept)
        )
    # a site declined in PyTorch is said above; its weight, computed from g and v (or by the
    # exporter from NaN), is no initializer named after it either
    torch_fold = report.torch_fold
    declined = {site.name for site in torch_fold.declined} if torch_fold is not None else set()
    unnamed = [name for name in report.names_missing if name not in declined]
    together = " (or held with others in one named after them all)"
    together = together if report.names_held_together else ""
    together += " (or equal to one that is, below)" if report.names_shared else ""
    if unnamed:
        # with weight norm kept, the dynamo exporter computes a small site itself, in the
        # model's precision: a float16 weight of its own name, a rounding off PyTorch's (t146)
        itself = (
            ", or computed them itself from the weight norm kept, rounding otherwise than "
            "PyTorch (float16, bfloat16), under names of its own"
            if torch_fold is not None and torch_fold.kept
            else ""
        )
        out.line(
            "weights with no initializer of their name (the exported graph does not use them, "
            "computes them from other initializers, or holds them in another layout under a "
            "name of the exporter's, as TorchScript does an LSTM's reordered gates"
            f"{itself}): " + ", ".join(unnamed)
        )
    elif report.names_missing:
        out.line(
            "every weight (2-D and up) but those declined in PyTorch is an initializer named "
            f"after its PyTorch parameter{together}"
        )
    else:
        out.line(
            f"every weight (2-D and up) is an initializer named after its PyTorch parameter"
            f"{together}"
        )
    if report.names_shared:
        out.line(
            "equal to a weight with an initializer, which the graph reads for both (the exporter "
            "keeps one constant of equal values): "
            + ", ".join(f"{name} (= {other})" for name, other in report.names_shared.items())
        )
    if report.names_transposed:
        out.line(
            "held transposed, as MatMul reads them (the initializer is the parameter's .T): "
            + ", ".join(report.names_transposed)
        )
    for name, held in report.names_held_together.items():
        out.line(
            f"held together in one initializer, {name}, in the layout their ONNX op reads: "
            + ", ".join(held)
        )
    if report.names_laid_out:
        out.line(
            "held in the layout their ONNX op reads (elements moved: gates reordered, sliced "
            "or padded), not as the parameter: " + ", ".join(report.names_laid_out)
        )
    rows = [
        comparison_row(provider, c)
        for provider, comparisons in report.comparisons.items()
        for c in comparisons
    ]
    if rows:
        out.table("ONNX Runtime vs PyTorch", COMPARISON_COLUMNS, rows)
    for probe in report.dynamic:
        rows = [
            comparison_row(provider, c)
            for provider, comparisons in probe.comparisons.items()
            for c in comparisons
        ]
        if rows and (probe.bound is None or not _passed(probe)):  # those that pass: one line
            title = f"ONNX Runtime vs PyTorch, {probe.where} ({_shapes(probe)})"
            out.table(title, COMPARISON_COLUMNS, rows)
    for probe in _beyond(report.dynamic, _passed):
        out.line(f"ONNX Runtime matches PyTorch with {probe.sizes}, {_where_beyond(probe)}")
    for provider, stats in report.latency.items():
        out.line(
            f"{provider} latency: median {stats.median_ms:.3f} ms, p90 {stats.p90_ms:.3f} ms, "
            f"min {stats.min_ms:.3f} ms ({stats.runs} runs)"
        )
    for provider in report.not_available:
        out.summary(f"{provider}: not available")
    for provider in report.fell_back:
        out.summary(f"{provider}: asked for, but ONNX Runtime fell back to another provider")
    for provider, vacuous in report.nothing_compared.items():
        out.summary(f"{provider}: {vacuous}")
    for warning in report.warnings:
        out.summary(f"warning: the exporter says the result may be wrong: {warning}")
    for said in report.sizes:
        out.summary(f"warning: {said}")
    if report.parameters_written:
        line = parameters_written_line(report.parameters_written, report.parameters_given_back)
        out.summary(f"warning: {line}")
    for said in report.shape_info_wrong:
        out.summary(
            f"warning: {said} (the exporter's shape info is wrong there; ONNX Runtime computes "
            "the values, but a runtime that trusts the shape info may fail)"
        )
    if report.ort_failed is not None:
        out.summary(f"ONNX Runtime failed where PyTorch ran: {report.ort_failed}")
    for probe in report.dynamic:
        said = probe.not_verified if probe.not_verified is not None else probe.unchecked
        if said is not None:
            out.summary(f"dynamic axes not verified: with {probe.where} ({_shapes(probe)}), {said}")
    for probe in _beyond(report.dynamic, _failed):
        out.summary(
            f"{probe.sizes}: {_where_beyond(probe)}, PyTorch "
            "runs, and the file does not match it: the model's code (or one of torch's "
            "decompositions) branches on the size there, and the file computes such inputs "
            "with the example's branch"
        )
    if report.not_deterministic:
        out.summary(
            f"cannot verify: PyTorch gave other values of output "
            f"{', '.join(report.not_deterministic)} on a second run on the same inputs: the "
            "model is not deterministic, so there is nothing to verify against (random "
            "numbers, or an op that is not: see torch.use_deterministic_algorithms)"
        )
    if report.draws_random:
        drawn = sorted({op for ops in report.draws_random.values() for op in ops})
        out.summary(
            f"cannot verify: the exported graph draws random values for output "
            f"{', '.join(report.draws_random)} ({', '.join(drawn)}): its outputs may change "
            "from run to run, which no comparison shows matching PyTorch"
        )
    wrote = written(report.output, report.data_files)  # with its data file: copy it too
    compared = _compared(report.dynamic)
    if report and not report.verified:
        out.summary(f"wrote {wrote}; not verified against PyTorch (add --verify)")
    elif report and report.dynamic and not compared:
        out.summary(
            "deployable at the example's size: ONNX matches PyTorch there (the dynamic axes "
            f"are not verified); wrote {wrote}"
        )
    elif report and compared and (only := report.compared_at_example_only):
        out.summary(
            f"deployable: ONNX matches PyTorch, also with {compared} (not verified at another "
            f"length than the example's: {', '.join(only)}); wrote {wrote}"
        )
    elif report and compared:
        out.summary(f"deployable: ONNX matches PyTorch, also with {compared}; wrote {wrote}")
    elif report:
        out.summary(f"deployable: ONNX matches PyTorch; wrote {wrote}")
    if report and report.verified and (uncompared := report.uncompared):
        out.summary(f"  not compared: {', '.join(uncompared)} (no element could be)")
    if not report:
        if not report.published:
            out.summary(f"NOT DEPLOYABLE: see above; nothing written to {report.output}")
        else:
            out.summary(f"NOT DEPLOYABLE: see above (wrote {wrote})")
        for line in _failed_outputs(report):  # which outputs failed, also with --quiet
            out.summary(f"  {line}")


def _failed_outputs(report: Any) -> list[str]:
    """One line per output that did not match PyTorch (where, which, why), as check says it."""
    from wnpass.verify.report import failure_reason, ulp_note

    tables = [("", report.comparisons)] + [
        (f", with {probe.where}", probe.comparisons) for probe in report.dynamic
    ]
    return [
        f"{provider}{where}: {c.name}: {failure_reason(c)}"
        + (f"; {note}" if (note := ulp_note(c, "PyTorch")) else "")
        for where, table in tables
        for provider, comparisons in table.items()
        for c in comparisons
        if not c.passed
    ]


def _compared(probes: list[Any]) -> str:
    """The sizes the probes compared at, as said after "with": ``every dynamic axis doubled
    and doubled plus one and axis 0 of ids doubled and axis 1 of x at 1``; empty where none
    compared."""
    every = [p.sizes for p in probes if p.bound is None and p.alone is None and p.compared]
    said = [f"every dynamic axis {' and '.join(every)}"] if every else []
    alone: dict[str, list[str]] = {}  # by axes: "axis 0 of ids doubled and doubled plus one"
    for probe in probes:
        if probe.bound is None and probe.alone is not None and probe.compared:
            alone.setdefault(probe.alone, []).append(probe.sizes)
    said += [f"{axes} {' and '.join(sizes)}" for axes, sizes in alone.items()]
    return " and ".join(said + [probe.sizes for probe in _beyond(probes, _passed)])


def _beyond(probes: list[Any], chosen: Any) -> list[Any]:
    """The ``chosen`` probes of a size below a range torch.export held axes to, or where a
    condition it took on their size does not hold."""
    return [probe for probe in probes if probe.bound is not None and chosen(probe)]


def _where_beyond(probe: Any) -> str:
    """Where such a probe's size is, as said after it: ``below the sizes torch.export held it
    to (from 2 up)``, ``where torch.export's condition 2*(n // 8) == n // 4 on it does not
    hold``."""
    if probe.condition is not None:
        return f"where torch.export's condition {probe.condition} on it does not hold"
    return f"below the sizes torch.export held it to ({probe.bound})"


def _failed(probe: Any) -> bool:
    """Whether some output did not match PyTorch's at a probe's sizes (where ONNX Runtime
    failed, or compared nothing, its ``not_verified`` says so)."""
    return not all(c for comparisons in probe.comparisons.values() for c in comparisons)


def _passed(probe: Any) -> bool:
    """Whether a probe compared something, every comparison passed, and nothing left it
    unverified (nothing compared, as where PyTorch is not deterministic, is neither)."""
    return bool(probe.comparisons) and not _failed(probe) and probe.not_verified is None


def _shapes(probe: Any) -> str:
    """The inputs a dynamic probe made larger, with their shapes: ``x 4x8, mel 1x80x200``."""
    return ", ".join(f"{name} {'x'.join(map(str, shape))}" for name, shape in probe.inputs.items())
