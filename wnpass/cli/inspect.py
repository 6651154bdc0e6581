"""``wnpass inspect MODEL [MODEL ...]``: the weight-norm sites of .onnx files, checkpoints or a
model.py; changes nothing (with ``--json``, writes only the report).

Several ONNX files and checkpoints are inspected in turn by one process, so that a pipeline
guarding a folder pays the start-up once (a folder stands for the ``.onnx`` files under it);
with ``--strict`` the exit code is 1 when any of them is left to fold.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from wnpass import readahead
from wnpass._deferred import defer_sympy
from wnpass.cli.options import (
    add_json_option,
    add_keep_objects_option,
    add_plan_arguments,
    add_selection_arguments,
    blamed_on,
    given_path,
    selection,
)
from wnpass.cli.output import Printer
from wnpass.cli.render import print_sites, strict_line
from wnpass.errors import InvalidModelError, OutputError, UsageError
from wnpass.plan import MODEL_PY, IOPlan, kind_of, stat_input

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        type=given_path,
        nargs="+",
        metavar="MODEL",
        help="an .onnx file, a model.py, a checkpoint, or a folder (its .onnx files, at any "
        "depth); several .onnx files and checkpoints are inspected in turn",
    )
    parser.add_argument(
        "--factory", metavar="NAME", help="model.py: the factory function (default build_model)"
    )
    add_json_option(
        parser, help="also write the report as JSON (for several MODELs, a list: one each)"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a fold would still change something (foldable weight-norm sites or "
        "weights computed from constants) in any MODEL: a gate for pipelines",
    )
    parser.add_argument(
        "--weight-norm-only",
        action="store_true",
        help="ONNX models only: look for weight-norm sites only (with --strict: gate on those "
        "alone)",
    )
    add_selection_arguments(parser)
    add_plan_arguments(parser)
    add_keep_objects_option(parser)


def run(args: argparse.Namespace, out: Printer) -> int:
    """List the weight-norm sites of ONNX models, checkpoints or a model.py; changes nothing."""
    from wnpass.checkpoint.formats import detect_format, holds_objects, is_checkpoint_path
    from wnpass.cli import checkpoint

    if args.keep_objects:  # as given, before any path is read; then as folders expand
        _require_checkpoints(args.model)
    skipped: list[str] = []
    models = _expanded(args.model, skipped)
    if args.keep_objects:  # a folder named X.pt gives its ONNX models alone
        _require_checkpoints(models)
    plan = IOPlan()
    if args.json:
        plan.write(args.json, "json_path")
    if any(model.suffix == ".py" for model in models):
        if len(models) > 1:
            raise UsageError("a model.py is inspected on its own: give it as the only MODEL")
        return _inspect_model_py(args, models[0], out, plan)
    given = [
        flag
        for flag, value in (
            ("--factory", args.factory is not None),
            ("--include", args.include),
            ("--exclude", args.exclude),
            ("--include-type", args.include_type),
            ("--exclude-type", args.exclude_type),
            ("--dim-policy", args.dim_policy != "unit"),
            ("--embeddings", args.embeddings),
        )
        if value
    ]
    if given:  # named as given (t143: --exclude-type was said as --include and --exclude)
        raise UsageError(f"{' and '.join(given)}: for a model.py, not {_kinds(models)}")
    if args.weight_norm_only and all(is_checkpoint_path(model) for model in models):
        raise UsageError(  # refused, not ignored (t143)
            "--weight-norm-only is for ONNX models: a checkpoint holds weight-norm pairs only"
        )
    onnx_files = [model for model in models if not is_checkpoint_path(model)]
    plan.read_all(onnx_files, "the input model")
    if checkpoints := [model for model in models if is_checkpoint_path(model)]:
        from wnpass.checkpoint.api import plan_input

        for model in checkpoints:  # and the shards each index names (the index is read)
            plan_input(model, plan)  # named as fold names it: the input checkpoint
    # and the data files each ONNX model names: one that --json (t271) or standard output
    # (t329: a first model's table was printed over a second's weights) would write over is
    # refused before any report
    from wnpass.onnx.io import external_files

    for model in onnx_files:
        plan.read_all(sorted(external_files(model)), "the input's external data")
    plan.check()  # before any model is read: --json naming any of these files is refused here
    if onnx_files:
        readahead.start(onnx_files[0])  # while onnx is imported
        defer_sympy()  # inspecting an ONNX model never needs it
    # from the arguments: two names of one file are still several models given (a list)
    several = len(args.model) > 1 or any(model.is_dir() for model in args.model)
    reports: list[dict[str, Any]] = []
    left: list[Path] = []

    def inspect(model: Path) -> tuple[dict[str, Any], str | None]:
        if is_checkpoint_path(model):  # objects kept where a file may hold some
            keep = args.keep_objects and holds_objects(detect_format(model))
            return checkpoint.inspect_one(model, out, plan, keep)
        return _inspect_onnx(model, args.weight_norm_only, out, plan)

    for line in skipped:  # a gate says what it did not see (t196)
        out.summary(line)
    with _one_model_at_a_time() as release:
        for model in models:
            with out.about(str(model) if several else None):
                try:
                    report, failing = inspect(model)
                except OutputError as error:  # --json that can no longer be written (t162):
                    if error.parameter != "json_path":  # said last, every model inspected
                        raise
                    out.json_failed = error
                    plan.withdraw(args.json, "json_path")
                    report, failing = inspect(model)
            reports.append(report)
            if args.strict:  # "ok" says what the exit code says, for a gate reading the JSON
                report["ok"] = failing is None
            if args.strict and failing is not None:
                out.summary(failing)
                left.append(model)
            if several:
                release()
    if args.json and out.json_failed is None:
        from wnpass.report import write_json

        out.json_report(lambda: write_json(args.json, reports if several else reports[0], plan))
    if left and several:
        undecided = " or undecided" if any(report["undecided"] for report in reports) else ""
        out.summary(f"STRICT: {len(left)} of {len(models)} models left to fold{undecided}")
    return 1 if left else 0


def _require_checkpoints(models: list[Path]) -> None:
    """``--keep-objects`` is for torch checkpoints: refused where none of ``models`` is one
    (a safetensors file holds no objects)."""
    from wnpass.checkpoint.formats import detect_format, holds_objects, is_checkpoint_path

    if not any(is_checkpoint_path(m) and holds_objects(detect_format(m)) for m in models):
        kinds = "a model.py" if any(m.suffix == ".py" for m in models) else _kinds(models)
        if kinds == "a checkpoint":  # safetensors, each
            kinds = "a safetensors checkpoint, which holds no objects"
        raise UsageError(f"--keep-objects is for torch checkpoints, not {kinds}")


def _kinds(models: list[Path]) -> str:
    """What the models given are, as a refusal says it."""
    from wnpass.checkpoint.formats import is_checkpoint_path

    checkpoints = [is_checkpoint_path(model) for model in models]
    if all(checkpoints):
        return "a checkpoint"
    return "an ONNX model" if not any(checkpoints) else "ONNX models or checkpoints"


def _expanded(models: list[Path], skipped: list[str]) -> list[Path]:
    """The MODEL arguments with each folder replaced by the ONNX files under it (``.onnx`` in
    any case), at any depth, in path order; each file once, however it is reached (a second
    name for it, a hard link, a link to it: the first one stands). Each is checked to exist
    and be a regular file before any is read, so that a gate refuses a bad path before it
    reports on the others.

    Hidden files and folders (a name starting with ".", as wnpass's own staging does) are
    skipped, and links to folders are not followed (no loops, nothing outside the folder by
    way of a link). Checkpoints are not picked up: a sharded one is read through its index, not
    shard by shard, so checkpoints are named one by one. A folder that cannot be listed is an
    error, never skipped: a gate must not pass on the models it could not see. What a folder
    held and was skipped goes into ``skipped``, a line per folder given.
    """
    paths: dict[tuple[int, int], Path] = {}
    others: dict[Path, list[Path]] = {}  # a file's other names given, by its first
    for model in models:
        for path in _onnx_files(model, skipped) if model.is_dir() else [model]:
            status = stat_input(path)
            if isinstance(status, str):  # no such file, a link loop ...
                raise InvalidModelError(f"{path}: {status}")
            if not stat.S_ISREG(status.st_mode):  # a FIFO, a device: before any report (t271)
                raise InvalidModelError(f"{path}: is {kind_of(status.st_mode)}, {_not_a(path)}")
            if status.st_size == 0 and path.suffix != ".py":  # before any report, as its
                # reader says it (t298); an empty model.py is one that defines nothing
                raise InvalidModelError(f"{path}: empty file, {_not_a(path, empty=True)}")
            first = paths.setdefault((status.st_dev, status.st_ino), path)
            if first != path:
                others.setdefault(first, []).append(path)
    for first, names in others.items():  # said, as a gate counts files (t298)
        shown = ", ".join(map(str, dict.fromkeys(names)))
        skipped.append(f"skipped {shown}: another name of {first}, inspected once")
    return list(paths.values())


def _not_a(path: Path, *, empty: bool = False) -> str:
    """What ``path`` is not, as the reader of its kind would say it (``empty``: of an empty
    file, ``not an ONNX model``)."""
    from wnpass.checkpoint.formats import is_checkpoint_path

    if path.suffix == ".py":
        return "not a model.py file"
    if is_checkpoint_path(path):
        return "not a checkpoint" if empty else "not a checkpoint file"
    return "not an ONNX model" if empty else "not an ONNX file"


def _onnx_files(top: Path, skipped: list[str]) -> list[Path]:
    """The ONNX files under ``top`` (see :func:`_expanded`), walked without recursion: a tree
    of any depth is listed, or its first folder that cannot be is named. A line saying what
    was skipped that a gate might have been meant to see (hidden ``.onnx`` files and folders,
    links to folders, checkpoints) goes into ``skipped``."""
    from wnpass.checkpoint.formats import (
        DCP,
        is_checkpoint_path,
        is_dcp_folder,
        is_training_state,
    )
    from wnpass.report import counted

    found: list[Path] = []
    checkpoints: list[Path] = []
    folders = [top]
    unseen: collections.Counter[str] = collections.Counter()
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        if entry.name.lower().endswith(".onnx") or _a_folder(entry):
                            unseen["hidden"] += 1  # wnpass's own staging is a hidden folder
                        continue
                    if _links_to_a_folder(entry):
                        unseen["link to a folder"] += 1
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(Path(entry.path))
                    elif entry.name.lower().endswith(".onnx"):
                        found.append(Path(entry.path))
                    elif is_checkpoint_path(Path(entry.name)):
                        checkpoints.append(Path(entry.path))
        except OSError as error:
            raise InvalidModelError(
                f"{folder}: cannot list it ({error.strerror or error}); the models in it "
                "would go unread"
            ) from None
    found, checkpoints = _not_data_files(found, checkpoints)
    for path in checkpoints:
        unseen["training state" if is_training_state(path.name) else "checkpoint"] += 1
    nouns = {  # singular, plural, why
        "hidden": ("hidden entry", "hidden entries", "a name starting with '.'"),
        "link to a folder": ("link to a folder", "links to folders", "not followed"),
        "checkpoint": ("checkpoint", "checkpoints", "name each one"),
        "training state": ("file", "files", "a trainer's state, not weights"),
    }
    said = ", ".join(
        f"{counted(count, nouns[kind][0], nouns[kind][1])} ({nouns[kind][2]})"
        for kind, count in sorted(unseen.items())
        if count
    )
    if not found:  # what it skipped said there too (t206)
        if is_dcp_folder(top):
            said = f"it is in {DCP}"
        elif said:
            said = f"skipped {said}"
        raise UsageError(
            f"{top}: a folder with no .onnx file in it" + (f"; {said}" if said else "")
        )
    if said:
        skipped.append(f"{top}: skipped {said}")
    return sorted(found)


def _not_data_files(models: list[Path], checkpoints: list[Path]) -> tuple[list[Path], list[Path]]:
    """Those of ``models`` (files named ``.onnx``) and ``checkpoints`` (files with a
    checkpoint's name) that none of ``models`` names as its external data: one is read with
    its model, not as a model of its own (t328: ``weights.onnx`` read as one failed the gate,
    exit 2), nor as a checkpoint skipped, which the gate said it was (``weights.bin``). A
    file named so that reads as a model is one all the same (t329: a model named as another's
    data, or its own, went uninspected)."""
    from wnpass.onnx.io import external_files, reads_as_model

    def identity(path: Path) -> tuple[int, int] | None:
        try:
            status = os.stat(path)
        except OSError:
            return None
        return status.st_dev, status.st_ino

    data = {identity(file) for model in models for file in external_files(model)} - {None}

    def read_alone(paths: list[Path], model: Callable[[Path], bool]) -> list[Path]:
        return [path for path in paths if identity(path) not in data or model(path)]

    return read_alone(models, reads_as_model), read_alone(checkpoints, lambda _: False)


def _a_folder(entry: os.DirEntry[str]) -> bool:
    """A folder, or a link to one (t203: a hidden link to a folder went unsaid)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _links_to_a_folder(entry: os.DirEntry[str]) -> bool:
    """Whether a folder's entry is a link to a folder (not followed: skipped). A link that
    cannot be followed (a loop) is not: named a model, it is refused under its own name."""
    try:
        return entry.is_symlink() and entry.is_dir()
    except OSError:
        return False


@contextlib.contextmanager
def _one_model_at_a_time() -> Iterator[Callable[[], None]]:
    """A ``release()`` that frees the model just inspected before the next one is read.

    An onnx-ir model is a web of reference cycles (nodes and values point at each other), which
    only the cycle collector frees, and a full pass of it is rare: without this, inspecting 30
    copies of the HiFi-GAN export peaked at 168 MiB against 60 MiB. What survives a pass is
    frozen, so that the next pass looks only at what the next model allocated, not at every
    object of onnx and numpy (about 17 ms a pass); it is unfrozen at the end.
    """
    frozen_before = gc.get_freeze_count()

    def release() -> None:
        gc.collect()
        gc.freeze()

    try:
        yield release
    finally:
        if frozen_before == 0:  # never unfreeze what the program around us froze
            gc.unfreeze()


def _inspect_onnx(
    path: Path, weight_norm_only: bool, out: Printer, plan: IOPlan
) -> tuple[dict[str, Any], str | None]:
    """One ONNX file: prints its sites; returns its report as JSON data and, when a fold would
    still change something, the line ``--strict`` prints."""
    from wnpass.onnx import io
    from wnpass.onnx.api import inspect_onnx

    model = io.load(path, plan)
    plan.check()
    with plan.changes_explain():  # its weights are read lazily: a data file cut short meanwhile
        report = inspect_onnx(model, weight_norm_only=weight_norm_only)
    report.input = str(path)
    report.bytes_before = io.model_bytes(path, model)
    print_sites(out, report, str(path), inspect=True)
    left = str(report.remaining) if report.remaining else None
    line = strict_line(path, left, report.undecided, "weight")
    return {**report.to_dict(), "left_to_fold": report.remaining}, line


def _inspect_model_py(args: argparse.Namespace, path: Path, out: Printer, plan: IOPlan) -> int:
    if args.weight_norm_only:
        raise UsageError("--weight-norm-only is for ONNX models, not a model.py")
    if args.strict:
        raise UsageError("--strict is for an ONNX file or a checkpoint, not a model.py")
    from wnpass.cli.train_rewrite import print_plan
    from wnpass.fx.analyse import analyse_sites
    from wnpass.fx.loading import load_model_file
    from wnpass.fx.report import ApplyReport

    plan.read(path, MODEL_PY)
    plan.check()
    model, inputs, made_by = load_model_file(path, args.factory, plan=plan)
    with blamed_on(path, made_by):
        include, exclude = selection(args, model)
        sites, mode, note = analyse_sites(
            model,
            inputs,
            include=include,
            exclude=exclude,
            dim_policy=args.dim_policy,
            embeddings=args.embeddings,
        )
    report = ApplyReport(sites=sites, traced_with=mode, trace_note=note, dim_policy=args.dim_policy)
    print_plan(out, report, str(path), inspect=True)
    if args.json:
        out.json_report(lambda: report.write_json(args.json, plan))
    return 0
