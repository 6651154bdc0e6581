"""Options shared by several commands, turned into typed library values, and the flag each
library parameter is called on the command line."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wnpass.errors import UsageError, WnpassError, printable
from wnpass.plan import MODEL_PY, STANDARD_OUTPUT, IOPlan, require_input
from wnpass.verify.options import DEFAULT_RUNS, DEFAULT_WARMUP, MAX_THREADS, CheckOptions

__all__ = [
    "FLAGS",
    "add_check_options",
    "add_json_option",
    "add_model_py_arguments",
    "add_plan_arguments",
    "add_selection_arguments",
    "as_flags",
    "blamed_on",
    "check_options",
    "file_path",
    "flags_for",
    "given_check_flags",
    "given_number",
    "given_whole",
    "inputs_function",
    "load_model",
    "plan_model_py",
    "refuse_check_flags",
    "selection",
]

# The library names its parameters; the CLI says the flag that sets each.
FLAGS = {
    "json_path": "--json",
    "rtol": "--rtol",
    "atol": "--atol",
    "runs": "--runs",
    "warmup": "--warmup",
    "threads": "--threads",
    "providers": "--provider",
    "shapes": "--shape",
    "inputs": "--inputs",
    "optimizations": "--optimization",
    "opset": "--opset",
    "dynamic": "--dynamic",
    "accept_ranges": "--accept-ranges",
    "exporter": "--exporter",
    "checkpoint": "--checkpoint",
    "factory": "--factory",
    "data": "--data",
    "include": "--include",
    "exclude": "--exclude",
    "to": "--to",
    "check_model": "--model",
    "keep_objects": "--keep-objects",
}


def flags_for(args: argparse.Namespace) -> dict[str, str]:
    """FLAGS, plus ``-o`` for the output where the user gave it (else it keeps its name), and
    ``--include-type`` for ``include`` where types were given (``--exclude-type`` likewise)."""
    flags = dict(FLAGS)
    for which in ("include", "exclude"):  # the library's include takes types too
        if getattr(args, f"{which}_type", None):
            names = getattr(args, which, None)
            flags[which] = f"--{which}/--{which}-type" if names else f"--{which}-type"
    if getattr(args, "output", None) is not None:
        flags["output"] = "-o"
        flags["output's external data"] = "-o's data file"
        flags["output's shard"] = "-o's shard"  # a checkpoint's: named after -o's index
    return flags


def given_path(text: str) -> Path:
    """A path, as argparse takes it; an empty one is refused (``Path("")`` would be the
    current folder, and the error name a ``.`` the user never typed)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


# Numbers as written in ASCII: float() and int() also read "1_0" as 10, " 1" and other scripts'
# digits (t211); the words inf and nan pass on to the checks that refuse them, saying why.
_NUMBER = re.compile(r"[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|inf|infinity|nan)", re.I)
_WHOLE = re.compile(r"[+-]?[0-9]+")


def given_number(text: str) -> float:
    """A number option, as argparse takes it (:data:`_NUMBER`); one written nonzero that a
    float can only hold as 0 (``1e-400``) is refused, not read as 0, as is one written in
    digits that a float holds as infinity (``1e400``)."""
    if not _NUMBER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}")
    value = float(text)
    if value == 0 and re.search(r"[1-9]", re.split("[eE]", text)[0]):
        raise argparse.ArgumentTypeError(f"{text}: too small for a float, which holds it as 0")
    if math.isinf(value) and re.search(r"[0-9]", text):
        raise argparse.ArgumentTypeError(f"{text}: too large for a float")
    return value


def given_whole(text: str) -> int:
    """A whole-number option, as argparse takes it: ASCII digits, signed or not."""
    try:
        if _WHOLE.fullmatch(text):
            return int(text)
    except ValueError:  # past the 4300 digits int() reads
        pass
    raise argparse.ArgumentTypeError(f"invalid int value: {text!r}")


def file_path(text: str) -> Path:
    """A file to write, as argparse takes it: a name that ends in a slash names a folder
    (``Path`` would drop the slash, and a file of the folder's name be written)."""
    if text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(f"{printable(text)}: names a folder, not a file")
    return given_path(text)


def add_json_option(
    parser: argparse.ArgumentParser, help: str = "also write the report as JSON"
) -> None:
    parser.add_argument("--json", type=json_file, metavar="FILE", help=help)


def json_file(text: str) -> Path:
    """A JSON report's file, as argparse takes it (:func:`file_path`); ``-`` alone is standard
    output, and ``./-`` the file of that name (``Path`` makes both ``-``: kept absolute)."""
    path = file_path(text)
    dashed = text != STANDARD_OUTPUT and os.fspath(path) == STANDARD_OUTPUT  # ./- and the like
    return Path(os.path.abspath(text)) if dashed else path


def add_keep_objects_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, loaded: bool = False
) -> None:
    """``--keep-objects``: a torch checkpoint's objects the weights-only loader refuses;
    ``loaded``: for a ``--checkpoint`` loaded into a model (nothing written back)."""
    kept = (
        "--checkpoint: keep objects of classes torch's weights-only loader does not build (a "
        "Lightning checkpoint's hyper-parameters, a pathlib path) unbuilt; only its state dict "
        "is loaded"
        if loaded
        else "torch checkpoints: keep objects of classes torch's weights-only loader does not "
        "build (a NeMo or Hydra DictConfig, a pathlib path) as they are, never built, and write "
        "them back"
    )
    parser.add_argument(
        "--keep-objects",
        action="store_true",
        help=f"{kept}; without it such a file is refused",
    )


def add_model_py_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a command's model comes from: ``model.py``, ``--factory`` and ``--checkpoint``."""
    parser.add_argument("model", type=given_path, metavar="model.py")
    parser.add_argument("--factory", metavar="NAME", help="factory function (default build_model)")
    parser.add_argument(
        "--checkpoint",
        type=given_path,
        metavar="FILE",
        help="state dict to load first: a torch.save file (any name), .safetensors or a sharded "
        "*.index.json",
    )
    add_keep_objects_option(parser, loaded=True)


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """How weight norm goes on a model.py's weights: the axis rule, and embeddings."""
    group = parser.add_argument_group("weight norm")
    group.add_argument(
        "--dim-policy",
        choices=("unit", "torch"),
        default="unit",
        help="unit: each weight's output-unit axis for its op (default); torch: PyTorch's "
        "dim=0 for a transposed convolution (per input channel), as checkpoints of "
        "torch.nn.utils.weight_norm hold it; every other op keeps its unit axis",
    )
    group.add_argument(
        "--embeddings",
        action="store_true",
        help="weight norm on embedding tables too (each row, axis 0)",
    )


# The library's parameters in the reasons it gives, as the command line's flags (t145: a skip
# reason said "use dim_policy='torch'", which no flag was); whole words only: a model's own
# name holding one stays as it is (t147: ``proj_dim_policy=x``).
_AS_FLAGS = (
    (re.compile(r"(?<![\w.=-])dim_policy='torch'(?![\w.=])"), "--dim-policy torch"),
    (re.compile(r"(?<=\()embeddings=True(?=\))"), "--embeddings"),
    (re.compile(r"(?<=, )dim_policy=(unit|torch)(?=;|$)"), r"--dim-policy \1"),
)


def as_flags(text: str) -> str:
    """``text`` (a reason, a summary) with the library's parameters named as the command
    line's flags."""
    for parameter, flag in _AS_FLAGS:
        text = parameter.sub(flag, text)
    return text


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """Which weights weight norm goes on: names and patterns, or layer types."""
    group = parser.add_argument_group("selection (repeatable; a weight must match an include)")
    group.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only weights whose parameter, module, op or layer-type name matches (fnmatch)",
    )
    group.add_argument(
        "--exclude", action="append", default=[], metavar="PATTERN", help="leave these alone"
    )
    group.add_argument(
        "--include-type",
        action="append",
        default=[],
        metavar="LAYER",
        help="only layers of this class or its subclasses, and the layers inside one "
        "(torch.nn or the model's own, e.g. Conv1d, Conv1D, ResBlock)",
    )
    group.add_argument(
        "--exclude-type",
        action="append",
        default=[],
        metavar="LAYER",
        help="leave these alone, and the layers inside them",
    )


def selection(args: argparse.Namespace, model: Any) -> tuple[list[Any] | None, list[Any] | None]:
    """``include``/``exclude`` as the library takes them: patterns, and layer types resolved
    in the model (an unknown type is a one-line error naming the model's types)."""
    from wnpass.fx.analyse import layer_type

    include = [*args.include, *(layer_type(model, n) for n in args.include_type)]
    exclude = [*args.exclude, *(layer_type(model, n) for n in args.exclude_type)]
    return include or None, exclude or None


def add_check_options(parser: argparse.ArgumentParser, *, inputs: bool = True) -> None:
    """The options of a check (``check``, ``fold --verify``, ``export --verify``)."""
    group = parser.add_argument_group("check options")
    group.add_argument(
        "--provider",
        action="append",
        choices=("cpu", "cuda"),
        help="run on this provider (repeatable); default: every one available",
    )
    if inputs:  # export runs on the model's example_inputs()
        group.add_argument(
            "--shape",
            action="append",
            metavar="NAME=DIMS",
            help="size of a dynamic input, e.g. mel=1,80,200 (repeatable)",
        )
        group.add_argument(
            "--inputs", type=given_path, metavar="FILE.npz", help="inputs to use instead"
        )
    group.add_argument("--rtol", type=given_number, help="relative tolerance (default: per dtype)")
    group.add_argument("--atol", type=given_number, help="absolute tolerance (default: per dtype)")
    # no argparse defaults: a flag not given is None, so a command can tell what was given
    # (given_check_flags); check_options fills in the library's defaults
    group.add_argument(
        "--runs", type=given_whole, help=f"timed runs per model (default {DEFAULT_RUNS})"
    )
    group.add_argument(
        "--warmup", type=given_whole, help=f"untimed runs first (default {DEFAULT_WARMUP})"
    )
    group.add_argument(
        "--threads",
        type=given_whole,
        help=f"intra-op threads, 1 to {MAX_THREADS} (default: ONNX Runtime's)",
    )
    if inputs:
        group.add_argument(
            "--optimization",
            choices=("default", "disabled", "both"),
            help="ONNX Runtime graph optimization level (default: default); disabled shows what "
            "a runtime that does not fold constants pays",
        )


_CHECK_FLAGS = ("provider", "shape", "inputs", "rtol", "atol", "runs", "warmup", "threads")


def given_check_flags(args: argparse.Namespace) -> list[str]:
    """The check options given on the command line, as their flags, in ``--help``'s order."""
    names = (*_CHECK_FLAGS, "optimization")
    return [f"--{name}" for name in names if getattr(args, name, None) is not None]


def refuse_check_flags(args: argparse.Namespace, *, goes_with: str) -> None:
    """A check option given where no check runs is refused, not ignored (``--rtol -1`` would
    otherwise pass unvalidated, and ``--rtol 0`` read as if it had been applied)."""
    if given := given_check_flags(args):
        raise UsageError(f"{given[0]} goes with {goes_with}")


def check_options(args: argparse.Namespace) -> CheckOptions:
    """The check options as the library takes them, validated (nothing is written yet); the
    command runs ONNX Runtime, whose process-wide log is made fatal only (errors are one line,
    carrying its message)."""
    from wnpass.verify.inputs import parse_shapes
    from wnpass.verify.providers import quiet_default_logger

    quiet_default_logger()
    optimization = getattr(args, "optimization", None) or "default"
    return CheckOptions(
        providers=args.provider,
        shapes=parse_shapes(getattr(args, "shape", None)) or None,
        inputs=getattr(args, "inputs", None),
        rtol=args.rtol,
        atol=args.atol,
        runs=DEFAULT_RUNS if args.runs is None else args.runs,
        warmup=DEFAULT_WARMUP if args.warmup is None else args.warmup,
        threads=args.threads,
        optimizations=("default", "disabled") if optimization == "both" else (optimization,),
    ).validate()


def plan_model_py(args: argparse.Namespace, output: Path) -> IOPlan:
    """The plan of a model.py command: the model.py and ``--checkpoint`` read, ``output`` and
    ``--json`` written (the caller adds its own files, then checks it)."""
    from wnpass.fx.files import checkpoint_files, refuse_unread_checkpoint

    if args.keep_objects and args.checkpoint is None:
        raise UsageError("--keep-objects goes with --checkpoint, whose objects it keeps")
    if args.keep_objects:  # before the model's code runs
        from wnpass.checkpoint.formats import read_format, require_objects_possible

        require_objects_possible(args.checkpoint, read_format(args.checkpoint))
    plan = IOPlan()
    plan.read(args.model, MODEL_PY)
    if args.checkpoint is not None:
        refuse_unread_checkpoint(args.checkpoint)
        require_input(args.checkpoint, "checkpoint")
        plan.read(args.checkpoint, "the checkpoint")
        plan.read_all(checkpoint_files(args.checkpoint)[1:], "a shard of the checkpoint")
    plan.write(output, "output")
    if args.json:
        plan.write(args.json, "json_path")
    return plan


def load_model(
    args: argparse.Namespace,
    plan: IOPlan | None = None,
    *,
    keep_pairs: bool = False,
    stored: dict[str, Any] | None = None,
) -> tuple[Any, tuple[Any, ...] | None]:
    """The model.py's model with ``--checkpoint`` loaded, and its example inputs (the function
    that made them goes to ``args.inputs_function``: :func:`inputs_function`). ``plan``:
    the command's (:func:`plan_model_py`), which then also refuses an output onto a module
    the model.py imported. ``keep_pairs``, ``stored``: as
    :func:`wnpass.fx.files.load_checkpoint`'s."""
    from wnpass.fx.files import load_checkpoint
    from wnpass.fx.loading import load_model_file

    model, inputs, args.inputs_function = load_model_file(args.model, args.factory, plan=plan)
    if args.checkpoint is not None:
        load_checkpoint(
            model,
            args.checkpoint,
            keep_pairs=keep_pairs,
            inputs=inputs,
            keep_objects=args.keep_objects,
            stored=stored,
        )
    return model, inputs


def inputs_function(args: argparse.Namespace) -> str:
    """The model.py function whose example inputs the command runs on, as errors name it: the
    one :func:`load_model` found (``example_inputs_large()`` beside a ``_large`` factory),
    else ``example_inputs()`` (t192, t193)."""
    return str(getattr(args, "inputs_function", None) or "example_inputs()")


@contextlib.contextmanager
def blamed_on(model_py: Path, inputs: str = "example_inputs()") -> Iterator[None]:
    """Errors raised while the user's model runs name the model.py they came from; one about
    the library's ``example_inputs`` names the function that made them (``inputs``:
    :func:`inputs_function`)."""
    try:
        yield
    except WnpassError as error:
        if error.parameter == "example_inputs":
            error.parameter, error.detail = None, f"{inputs} {error.detail}"
        if error.parameter is None and not error.detail.startswith(str(model_py)):
            error.detail = f"{model_py}: {error.detail}"
            error.args = (error.render(),)
        raise
