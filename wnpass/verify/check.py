"""``check``: is a candidate model equivalent to a reference, and how fast is it, per provider.

For each provider (CPU, and CUDA where ONNX Runtime really runs on it) and each graph
optimization level asked for, both models get a session (its creation timed), run once on the
same inputs for the comparison, then run ``warmup`` times and ``runs`` times interleaved, run
by run and alternating which goes first, so that a noisy machine slows both alike. Where the
inputs are synthesized and the first run matched, both run once more at other sizes of the
dynamic axes (:mod:`wnpass.verify.resized`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnx_ir as ir

from wnpass.errors import InvalidArgumentError, WnpassError
from wnpass.onnx import io
from wnpass.plan import IOPlan, as_path, as_plan
from wnpass.report import listed, model_files
from wnpass.verify import inputs as inputs_mod
from wnpass.verify import providers as prov
from wnpass.verify import resized, sensitivity
from wnpass.verify.compare import (
    Held,
    HeldByOutput,
    OutputComparison,
    compare_outputs,
    compare_within,
    dtype_name,
    failed_on_floats,
)
from wnpass.verify.draws import aborting_op, random_differences
from wnpass.verify.options import DEFAULT_RUNS, DEFAULT_WARMUP, CheckOptions
from wnpass.verify.precision import computed_at
from wnpass.verify.report import (
    CANDIDATE_FAILED,
    CANDIDATE_NOT_DETERMINISTIC,
    NOT_DETERMINISTIC,
    OK,
    CheckReport,
    ProviderRun,
    fell_back_to,
)
from wnpass.verify.timing import FailedInTiming, timed_runs

__all__ = ["DEFAULT_RUNS", "DEFAULT_WARMUP", "CheckOptions", "check"]

logger = logging.getLogger(__name__)

# Session creation is timed as the median of this many creations (one is noisy at the ms scale).
SESSION_REPEATS = 3

Progress = Callable[[str, int, int], None]


def _feeds(
    specs: list[inputs_mod.InputSpec],
    defaults: list[inputs_mod.InputSpec],
    shapes: dict[str, list[int]],
    inputs: Path | None,
    fallback: dict[str, tuple[inputs_mod.InputSpec, np.ndarray]],
    one_sided: dict[str, str],
    sizing: inputs_mod.Sizing | None = None,
) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """The inputs to run both models on, notes on them, and the names of ``fallback`` fed the
    reference's default. ``defaults``: the inputs with a default (an initializer) in both
    models, fed only where the inputs file gives them; ``fallback``: inputs the reference
    takes with a default and the candidate requires, fed the reference's default where the
    inputs file does not give them; ``one_sided``: inputs with a default that one model only
    takes, each with the model, which the file may not give; ``sizing``: the sizes of the
    dynamic axes synthesized inputs take (:class:`~wnpass.verify.inputs.Sizing`)."""
    optional = [*defaults, *(spec for spec, _ in fallback.values())]
    if inputs is not None:
        feeds = inputs_mod.load_npz(inputs, specs, optional, one_sided)
        notes = [f"inputs from {inputs}"]
    else:
        if shaped := sorted(set(shapes) & {spec.name for spec in optional}):
            raise InvalidArgumentError(  # was "the model has no input of that name" (t229)
                f"{shaped[0]}: an input with a default (an initializer), which is not "
                "synthesized: give its value with --inputs",
                parameter="shapes",
            )
        feeds, notes = inputs_mod.synthesize(specs, shapes, sizing=sizing)
        if specs:  # a model of no inputs has none to make up
            notes = [f"inputs synthesized (seed {inputs_mod.SEED})", *notes]
    if unfed := [spec.name for spec in defaults if spec.name not in feeds]:
        shown = listed(unfed, 5)
        notes.append(
            f"not fed, so each model takes its own initializer's value: {shown} (inputs with a "
            "default; an inputs file may give them)"
        )
    if taken := [name for name in fallback if name not in feeds]:
        feeds |= {name: fallback[name][1] for name in taken}
        notes.append(f"the reference's default fed to both: {', '.join(taken)}")
    return feeds, notes, taken


Specs = list[inputs_mod.InputSpec]


def _candidate_specs(
    reference_model: ir.Model,
    specs: Specs,
    reference_defaults: Specs,
    theirs: Specs,
    their_defaults: Specs,
) -> tuple[Specs, dict[str, tuple[inputs_mod.InputSpec, np.ndarray]]]:
    """The candidate's inputs as the check feeds them, and those the candidate requires and
    the reference takes with a default, each with its spec and that default (``specs``,
    ``reference_defaults``: the reference's inputs, required and with a default; ``theirs``,
    ``their_defaults``: the candidate's).

    - An input the reference requires and the candidate takes with a default is fed as the
      reference's is: the candidate takes every call the reference takes (t229).
    - An input the candidate requires and the reference takes with a default is fed the
      reference's default, the value the reference takes unfed, unless the inputs file gives
      it: the candidate is compared on those calls, and differs, as it refuses a caller that
      does not feed it (:func:`_required`)."""
    required = {spec.name for spec in specs}
    ours = {spec.name: spec for spec in reference_defaults}
    taken = [s for s in their_defaults if s.name in required]
    values: dict[str, tuple[inputs_mod.InputSpec, np.ndarray]] = {}
    kept: list[inputs_mod.InputSpec] = []
    for spec in theirs:
        if spec.name in required or spec.name not in ours:
            kept.append(spec)  # fed as the reference's, or an input the reference lacks
            continue
        value = next(v for v in reference_model.graph.inputs if v.name == spec.name)
        assert value.const_value is not None  # an input with a default
        values[spec.name] = ours[spec.name], value.const_value.numpy()
    return kept + taken, values


def _required(names: list[str], defaulted: list[str]) -> list[str]:
    """A difference line for each input the candidate requires and the reference takes with
    a default, saying what both were fed: the reference's default (``defaulted``) or the
    inputs file's value (t241: the line said the default where the file gave it)."""
    fed = {True: "the reference's default", False: "the inputs file's value"}
    return [
        f"the candidate requires input {name}, which the reference takes with a default: it "
        f"refuses a caller that does not feed it (compared fed {fed[name in defaulted]})"
        for name in names
    ]


def _one_sided(
    reference: ir.Model, candidate: ir.Model, ours: Specs, theirs: Specs
) -> dict[str, str]:
    """The inputs with a default (``ours``, the reference's; ``theirs``, the candidate's)
    that one model takes and the other does not take at all, each with the model that takes
    it."""
    taken = {value.name for value in reference.graph.inputs}
    taken_by_them = {value.name for value in candidate.graph.inputs}
    return {
        **{spec.name: "reference" for spec in ours if spec.name not in taken_by_them},
        **{spec.name: "candidate" for spec in theirs if spec.name not in taken},
    }


def _defaults(ours: Specs, theirs: Specs) -> tuple[Specs, Specs]:
    """The inputs with a default (an initializer) in both models (``ours``, the reference's;
    ``theirs``, the candidate's), as each has them, in the reference's order."""
    by_name = {spec.name: spec for spec in theirs}
    both = [spec for spec in ours if spec.name in by_name]
    return both, [by_name[spec.name] for spec in both]


# The check options check() takes one by one, and the value each has when not given.
_OPTION_DEFAULTS: dict[str, object] = {
    "providers": None,
    "shapes": None,
    "inputs": None,
    "rtol": None,
    "atol": None,
    "runs": DEFAULT_RUNS,
    "warmup": DEFAULT_WARMUP,
    "threads": None,
    "optimizations": ("default",),
}


def _is_default(name: str, value: object) -> bool:
    default = _OPTION_DEFAULTS[name]
    if value is default:
        return True
    if isinstance(value, list | tuple) and isinstance(default, tuple):
        value = tuple(value)
    try:
        return bool(value == default)
    except Exception:  # an array, say: not the default
        return False


def _options(options: object, given: dict[str, Any]) -> CheckOptions:
    """The check's options, validated: ``options`` where given (then no option may be given
    one by one too: it would be ignored), else those given one by one."""
    if options is None:
        return CheckOptions(**given).validate()
    if not isinstance(options, CheckOptions):
        raise InvalidArgumentError(
            f"must be a CheckOptions, not {type(options).__name__}", parameter="options"
        )
    if also := next((name for name, v in given.items() if not _is_default(name, v)), None):
        raise InvalidArgumentError(
            "cannot be combined: options holds every check option",
            parameter="options",
            also=also,
        )
    return options.validate()


def _require(name: str, value: object, kind: type, what: str) -> None:
    if value is not None and not isinstance(value, kind):
        raise InvalidArgumentError(
            f"must be {what} or None, not {type(value).__name__}", parameter=name
        )


def _load(path: Path, role: str, pinned: list[IOPlan]) -> tuple[ir.Model, list[tuple[str, str]]]:
    """The model at ``path``, and the files reading it read, each with what it is; the plan
    that read them, which holds each as it was read, goes to ``pinned`` (ONNX Runtime reads
    them again for every session: :meth:`IOPlan.require_unchanged` at the end)."""
    reads = IOPlan()
    model = io.load(path, reads)
    pinned.append(reads)
    return model, model_files(path, f"the {role}", reads.reads()[1:])


def check(
    reference: str | os.PathLike[str],
    candidate: str | os.PathLike[str],
    *,
    providers: Sequence[str] | None = None,
    shapes: dict[str, list[int]] | None = None,
    inputs: str | os.PathLike[str] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    threads: int | None = None,
    optimizations: Sequence[str] = ("default",),
    progress: Progress | None = None,
    options: CheckOptions | None = None,
    plan: IOPlan | None = None,
    reference_model: ir.Model | None = None,
) -> CheckReport:
    """Compare ``candidate`` with ``reference`` on each provider; see the module docstring.

    ``providers`` are short names (``"cpu"``, ``"cuda"``); by default every one available.
    Every parameter is validated first (the options by :class:`CheckOptions`); a bad one
    raises ``InvalidArgumentError`` naming it. ``options`` gives the check options all at once
    instead (then none may be given one by one). ``plan``: the caller's plan (its report
    file); the models and the inputs file are recorded in it as read, and it is checked before
    anything runs. ``reference_model``: the reference, loaded already (its inputs are read from
    it instead of the file). The report knows the files the check read, and its
    :meth:`~wnpass.verify.report.CheckReport.write_json` refuses to write over one.

    The reference must run on the inputs (else ``InvalidModelError``: bad input); a candidate
    that fails to run where the reference ran fails the check (that run's status says why).
    """
    given = {
        "providers": providers,
        "shapes": shapes,
        "inputs": inputs,
        "rtol": rtol,
        "atol": atol,
        "runs": runs,
        "warmup": warmup,
        "threads": threads,
        "optimizations": optimizations,
    }
    options = _options(options, given)
    plan = as_plan(plan)
    reference, candidate = as_path("reference", reference), as_path("candidate", candidate)
    if progress is not None and not callable(progress):
        raise InvalidArgumentError(
            f"must be a function (label, done, total) or None, not {type(progress).__name__}",
            parameter="progress",
        )
    _require("plan", plan, IOPlan, "an IOPlan")
    _require("reference_model", reference_model, ir.Model, "an onnx_ir.Model")
    pinned: list[IOPlan] = []  # the files read, as read: a change during the runs is refused
    if reference_model is None:
        reference_model, reference_files = _load(reference, "reference", pinned)
    else:  # the caller's, who checks it is unchanged
        reference_files = model_files(reference, "the reference")
    specs = inputs_mod.signature(reference_model, reference)
    if (aborts := aborting_op(reference_model)) is not None:  # before any session
        raise prov.SessionError(reference, aborts)
    candidate_model, candidate_files = _load(candidate, "candidate", pinned)
    candidate_aborts = aborting_op(candidate_model)  # a candidate that fails: not run
    reference_defaults = inputs_mod.signature(reference_model, defaults=True)
    their_defaults = inputs_mod.signature(candidate_model, defaults=True)
    candidate_specs, defaults_fed = _candidate_specs(
        reference_model,
        specs,
        reference_defaults,
        inputs_mod.signature(candidate_model, candidate),
        their_defaults,
    )
    inputs_mod.require_same_inputs(specs, candidate_specs, candidate)
    files_read = [*reference_files, *candidate_files]
    if options.inputs is not None:
        files_read.append((str(options.inputs), "the inputs file"))
        pinned.append(IOPlan())
        pinned[-1].pin(options.inputs)
    if plan is not None:
        for path, what in files_read:
            plan.read(path, what)
        plan.check()
    chosen = prov.resolve(list(options.providers) if options.providers else None)
    defaults, candidate_defaults = _defaults(reference_defaults, their_defaults)
    feeding = functools.partial(
        _feeds,
        specs,
        defaults,
        options.shapes or {},
        options.inputs,
        defaults_fed,
        _one_sided(reference_model, candidate_model, reference_defaults, their_defaults),
    )
    arrays, notes, defaulted = feeding()
    fed_notes = len(notes)  # the notes on the inputs, said again where a first run is retried
    fed = [
        pair for pair in zip(defaults, candidate_defaults, strict=True) if pair[0].name in arrays
    ]
    # fed, an input of two dtypes is bad input, as any input is (t49); not fed, each model
    # takes its own value, and a difference says the candidate's dtype (t229)
    inputs_mod.require_same_inputs([r for r, _ in fed], [c for _, c in fed], candidate)
    notes += _order_note(reference_model, candidate_model)
    held = computed_at(reference_model)  # outputs of float16 values cast to float32
    report = CheckReport(str(reference), str(candidate), notes=notes, files_read=files_read)
    held_notes_at = len(report.notes)  # said once the runs show which held whole numbers
    report.differences = [
        *_required(list(defaults_fed), defaulted),
        *inputs_mod.narrower(specs, candidate_specs, defaults=False),
        *inputs_mod.narrower(
            [s for s in reference_defaults if s.name not in defaults_fed],
            their_defaults,
            defaults=True,
        ),
        *random_differences(reference_model, candidate_model),
        *_types_differ(reference_model, candidate_model),
    ]
    for difference in report.differences:
        logger.warning("%s: %s", candidate, difference)
    report.inputs = _inputs_listed(arrays)
    feeds = prov.ort_feeds(arrays)  # once: the timed runs pay nothing to convert them
    # the providers not checked for lack of them, where every one available was asked for
    report.not_available = (
        [] if options.providers else [p for p in prov.PROVIDERS if p not in prov.available()]
    )
    candidate_outputs: dict[str, tuple[list[str], list[np.ndarray]]] = {}
    resized_run = False  # the second run at other sizes (:mod:`wnpass.verify.resized`)

    @functools.cache  # one pair of runs per provider, whatever the levels
    def moved(provider: str) -> dict[str, OutputComparison]:
        if _bytes(path for path, _ in reference_files) > sensitivity.MOVED_BYTES:
            logger.info(
                "%s: over %d bytes, its weights not moved", reference, sensitivity.MOVED_BYTES
            )
            return {}  # read again whole to move them: a bound before it is read
        return _weights_moved(reference, provider, feeds, options, pinned, held)

    for provider in chosen:
        prov.warm_up(provider)
        for level in options.optimizations:
            check_one = functools.partial(
                _check_one, reference, candidate, provider, level,
                options=options, moved_by_ulp=moved, candidate_aborts=candidate_aborts, held=held,
            )  # fmt: skip
            try:
                run = check_one(feeds)
            except prov.RunFailedError as error:
                first = not report.runs and options.inputs is None
                lengths = _as_lengths(error, reference, arrays, feeding) if first else None
                if lengths is None:
                    raise _inputs_said(error, reference, specs, arrays, options) from None
                try:
                    run = check_one(prov.ort_feeds(lengths[0]))
                except prov.RunFailedError:  # not as lengths either: the first run's reason
                    raise _inputs_said(error, reference, specs, arrays, options) from None
                arrays, lengths_notes = lengths
                feeds = prov.ort_feeds(arrays)
                report.notes[:fed_notes] = lengths_notes
                held_notes_at += len(lengths_notes) - fed_notes
                report.inputs = _inputs_listed(arrays)
            report.runs.append(run.result)
            if run.result.status != OK:
                continue
            candidate_outputs.setdefault(provider, run.candidate_outputs)
            ref_s, cand_s = run.sessions
            assert cand_s is not None  # status OK: it loaded
            label = f"{provider}/{level}"
            shown = None if progress is None else functools.partial(progress, label)
            try:
                run.result.reference, run.result.candidate = timed_runs(
                    [(ref_s, reference), (cand_s, candidate)],
                    feeds, options.runs, options.warmup, shown,
                )  # fmt: skip
            except FailedInTiming as error:
                if error.index == 0:
                    raise error.error from None  # the reference's: bad input, as on its first run
                run.result.status, run.result.error = CANDIDATE_FAILED, error.reason
                logger.info("%s: the candidate failed to run: %s", label, error.reason)
            # once, in the sessions of the first run that matched, while they are open (kept
            # for later, they held a pair more at the peak of every later run: t235)
            if not resized_run and options.inputs is None and report:
                resized_run = True
                differences, resized_notes = resized.at_other_sizes(
                    reference,
                    candidate,
                    (ref_s, cand_s),
                    specs,
                    options.shapes or {},
                    {name: tuple(array.shape) for name, array in arrays.items()},
                    options.tolerances,
                    label,
                    held,
                )
                report.differences += differences
                report.notes += resized_notes
                for difference in differences:
                    logger.warning("%s: %s", candidate, difference)
    if "cuda" in candidate_outputs and "cpu" in candidate_outputs:
        cpu_names, cpu_values = candidate_outputs["cpu"]
        cuda_names, cuda_values = candidate_outputs["cuda"]
        report.cross_provider = compare_outputs(
            cpu_names, cpu_values, cuda_names, cuda_values,
            rtol=options.rtol, atol=options.atol, held_as=held,
        )  # fmt: skip
    report.notes[held_notes_at:held_notes_at] = _held_notes(held, report, options)
    for plan_read in pinned:  # sessions made from another file would mix two versions
        plan_read.require_unchanged()
    logger.info("check %s: %s", candidate, "equivalent" if report else "FAILED")
    return report


def _held_notes(held: HeldByOutput, report: CheckReport, options: CheckOptions) -> list[str]:
    """A note for each output computed at a narrower float than its type (:func:`computed_at`):
    whose default tolerances it was compared at, that float's, or its own type's where the
    reference gave whole numbers only (:class:`HeldByOutput`); none where both were given."""
    defaults = [t for t in ("rtol", "atol") if getattr(options, t) is None]
    if not defaults:
        return []
    which = "tolerance"  # both defaults; else the one, the other as given
    if len(defaults) == 1:
        which = f"{defaults[0]} ({'rtol' if defaults == ['atol'] else 'atol'} as given)"
    compared = [c for run in report.runs for c in run.comparisons]
    notes = []
    for name, dtype in held.dtypes.items():
        said = (
            f"{name}: computed by ONNX Runtime in float32 from {dtype} values (the Casts it "
            "inserted, InsertedPrecisionFreeCast_...)"
            if name in held.by_runtime
            else f"{name}: {dtype} values cast to a wider type at the end"
        )
        own = next((c.dtype for c in compared if c.name == name and c.whole_numbers), None)
        if own is None:
            notes.append(f"{said}: compared at {dtype}'s default {which}")
            continue
        whole = f"{said}, every one a whole number (an index, a count)"
        why = f"; {dtype}'s would pass an index of 100 or more off by one"  # its default rtol
        notes.append(
            f"{whole}: compared at {own}'s default {which}{why if len(defaults) == 2 else ''}"
        )
    return notes


def _types_differ(reference: ir.Model, candidate: ir.Model) -> list[str]:
    """A line for each output of both models declared an optional or a sequence of another
    type in the candidate: an empty one (None, ``[]``) shows no type to compare, so two
    outputs that are empty on the inputs the check runs would pass (t111). A tensor's dtype
    is compared on its values."""
    theirs = {value.name: value.type for value in candidate.graph.outputs}
    lines = []
    for value in reference.graph.outputs:
        ours, its = value.type, theirs.get(value.name)
        if its is None or ours is None or ours == its:
            continue
        if isinstance(ours, ir.TensorType) and isinstance(its, ir.TensorType):
            continue
        lines.append(
            f"output {value.name} is declared {inputs_mod.type_name(its)} in the candidate, "
            f"{inputs_mod.type_name(ours)} in the reference"
        )
    return lines


def _order_note(reference: ir.Model, candidate: ir.Model) -> list[str]:
    """A note where the candidate lists the reference's outputs in another order: they are
    compared by name, but a caller that reads a session's outputs by position (ONNX
    Runtime's ``run(None, ...)``) would get them mixed up; and where the models share no
    output name at all (two exporters' names for one output: nothing would be compared)."""
    ref = [value.name for value in reference.graph.outputs]
    cand = [value.name for value in candidate.graph.outputs]
    if ref and cand and not set(ref) & set(cand):  # two exporters' names: '11', 'linear_2'
        listed = [", ".join(map(str, dict.fromkeys(names))) for names in (ref, cand)]
        return [
            f"the models share no output name (the reference's: {listed[0]}; the "
            f"candidate's: {listed[1]}): outputs are compared by name, so give them the same "
            "names (the exporter's output_names)"
        ]
    if ref == cand or sorted(ref, key=str) != sorted(cand, key=str):
        return []  # the same order, or other outputs (a failure the comparison names)
    return [
        f"the candidate's outputs are in another order ({', '.join(map(str, cand))}; "
        f"the reference's: {', '.join(map(str, ref))}): compared by name, but a "
        "caller that reads them by position gets them mixed up"
    ]


class _OneRun(NamedTuple):
    """One provider and level: the report's row, the open sessions, the candidate's outputs."""

    result: ProviderRun
    sessions: tuple[prov.Session, prov.Session | None]  # None: the candidate did not load
    candidate_outputs: tuple[list[str], list[np.ndarray]]


def _inputs_listed(arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The inputs run, as the report lists them."""
    return [{"name": n, "shape": list(a.shape), "dtype": dtype_name(a)} for n, a in arrays.items()]


def _as_lengths(
    error: prov.RunFailedError,
    reference: Path,
    arrays: dict[str, np.ndarray],
    feeding: Callable[..., tuple[dict[str, np.ndarray], list[str], list[str]]],
) -> tuple[dict[str, np.ndarray], list[str]] | None:
    """Inputs for a first run again, where the reference failed (``error``) on synthesized
    inputs whose vectors ran at the size of a batch, 1 (which per-sample lengths named apart
    from another input's batch take, t338): each vector's only axis as a length
    (:class:`~wnpass.verify.inputs.Sizing`'s ``lengths``: ``audio[T]`` into an unpadded
    ``Conv1d`` runs at no length 1, t340), with the notes on them; ``None`` where no input
    would change. ``feeding``: :func:`_feeds` with its inputs."""
    if error.model != reference:
        return None
    again, notes, _ = feeding(sizing=inputs_mod.Sizing(lengths=True))
    resized = [name for name, array in again.items() if array.shape != arrays[name].shape]
    if not resized:
        return None
    note = (
        f"{listed(resized, 5)}: the only axis sized as a length, not as a batch of 1, at which "
        f"the reference fails to run ({error.reason})"
    )
    return again, [*notes, note]


def _inputs_said(
    error: prov.RunFailedError,
    reference: Path,
    specs: list[inputs_mod.InputSpec],
    arrays: dict[str, np.ndarray],
    options: CheckOptions,
) -> prov.RunFailedError:
    """``error``, where the reference failed to run on synthesized inputs, with the inputs it
    ran on: those with a dynamic axis at its default size (a model too short for 32 samples
    said only ONNX Runtime's reason, t174) and the integer ones, drawn from ``[0, INT_HIGH)``
    or the rows of the tables they index
    (a table of 3 speakers indexed with 7 said "indices element out of data bounds", as if the
    model were at fault, t284)."""
    if error.model != reference or options.inputs is not None:
        return error
    given = options.shapes or {}
    # a named dimension takes its size from any input given one (t285: ``ids[1, T]`` beside
    # ``--shape x=1,5`` of ``x[1, T]`` is no default)
    bound = {dim for spec in specs if spec.name in given for dim in spec.shape if dim}
    what: dict[str, list[str]] = {}  # what was synthesized, by input
    for spec in specs:
        if spec.name not in arrays:
            continue
        if spec.name not in given and any(  # a dynamic axis no size was given for (t176)
            not isinstance(dim, int) and (dim is None or dim not in bound) for dim in spec.shape
        ):
            what.setdefault(spec.name, []).append("a dynamic axis at its default size")
        if spec.dtype.is_integer():
            high = spec.high or inputs_mod.INT_HIGH
            what.setdefault(spec.name, []).append(f"integers drawn from [0, {high})")
    if not what:
        return error
    groups: dict[str, list[str]] = {}  # inputs by what was synthesized, each named once
    for name, parts in what.items():
        groups.setdefault(" and ".join(parts), []).append(name)
    said = "; ".join(f"{_listed(names, arrays)}, {words}" for words, names in groups.items())
    sized = sum(len(names) for words, names in groups.items() if "axis" in words)
    to_give = "give the inputs, --inputs"
    if sized:
        sizes = "its size" if sized == 1 else "their sizes"
        to_give = f"give {sizes} or the inputs, --shape, --inputs"
    hint = f" (on synthesized inputs, {said}: {to_give})"
    return prov.RunFailedError(reference, error.reason, hint)


def _listed(names: list[str], arrays: dict[str, np.ndarray]) -> str:
    """Inputs as the hint names them: ``ids int64[1, 32]``, five at most."""
    shown = ", ".join(
        f"{name} {dtype_name(arrays[name])}[{', '.join(map(str, arrays[name].shape))}]"
        for name in names[:5]
        if name in arrays
    )
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _check_one(
    reference: Path,
    candidate: Path,
    provider: str,
    level: str,
    feeds: dict[str, Any],
    options: CheckOptions,
    moved_by_ulp: Callable[[str], dict[str, OutputComparison]],
    candidate_aborts: str | None = None,
    held: Held = None,
) -> _OneRun:
    """One provider and level. ``candidate_aborts``: why ONNX Runtime would abort the process
    running the candidate (:func:`~wnpass.verify.draws.aborting_op`): it fails unrun.
    ``held``: the dtypes outputs are computed at (:func:`~wnpass.verify.precision.
    computed_at`), whose tolerances apply."""

    def session(path: Path) -> prov.Session:
        return prov.open_session(
            path, provider, optimization=level, threads=options.threads, repeats=SESSION_REPEATS
        )

    ref = session(reference)  # the reference must load and run: else bad input
    result = ProviderRun(provider, level, OK)
    try:
        if candidate_aborts is not None:
            raise prov.SessionError(candidate, candidate_aborts)
        cand = session(candidate)
    except prov.SessionError as error:  # where the reference loaded: the check fails
        result.status, result.error = CANDIDATE_FAILED, error.reason
        logger.info("%s/%s: the candidate failed to load: %s", provider, level, error.reason)
        return _OneRun(result, (ref, None), ([], []))
    if ref.fell_back or cand.fell_back:
        result.status = fell_back_to((ref if ref.fell_back else cand).actual)
        logger.warning("%s session %s; nothing compared or measured", provider, result.status)
        return _OneRun(result, (ref, cand), ([], []))
    result.reference_session_s, result.candidate_session_s = (
        ref.seconds_to_create,
        cand.seconds_to_create,
    )
    ref_out = prov.run(ref, reference, feeds)
    if changed := prov.varying_outputs(ref, reference, feeds, ref_out, options.tolerances):
        result.status = NOT_DETERMINISTIC
        result.error = (
            f"the reference gave other values of {', '.join(changed)} on a second run on the "
            "same inputs (a random op or a training-mode Dropout): it is no reference to "
            "compare with"
        )
        logger.warning("%s/%s: %s", provider, level, result.error)
        return _OneRun(result, (ref, cand), ([], []))
    try:
        cand_out = prov.run(cand, candidate, feeds)
    except prov.RunFailedError as error:  # where the reference ran: the check fails
        result.status, result.error = CANDIDATE_FAILED, error.reason
        logger.info("%s/%s: the candidate failed to run: %s", provider, level, error.reason)
        return _OneRun(result, (ref, cand), ([], []))
    cand_names = cand.output_names()
    what = f"{candidate}: comparing its outputs with the reference's"
    ref_run = (ref.output_names(), ref_out)
    tolerances = (*options.tolerances, what, held)
    result.comparisons = compare_within(ref_run, (cand_names, cand_out), *tolerances)
    # a random op draws alike on every session's first run, as the reference's check says: a
    # second run of the candidate shows it (a draw that differs seldom may still match twice;
    # the models' random ops are compared before any run)
    try:
        second = prov.run(cand, candidate, feeds)
    except prov.RunFailedError as error:
        result.status, result.error = CANDIDATE_FAILED, error.reason
        logger.info("%s/%s: the candidate failed a second run: %s", provider, level, error.reason)
        return _OneRun(result, (ref, cand), ([], []))
    again = compare_within(ref_run, (cand_names, second), *tolerances)
    # one that failed on its first run and varies: said so, not as a plain difference (a
    # Dropout that reads an initializer, which ONNX Runtime keeps, t151)
    runs = (cand_names, cand_out), (cand_names, second)
    twice = compare_within(
        *runs, *options.tolerances, f"{candidate}: comparing two runs of its outputs", held
    )
    varies = {row.name for row in twice if not row} & set(ref_run[0])  # not one it adds (t154)
    pairs = enumerate(zip(result.comparisons, again, strict=True))
    if moved := [i for i, (first, then) in pairs if (first and not then) or first.name in varies]:
        result.status = CANDIDATE_NOT_DETERMINISTIC
        names = ", ".join(result.comparisons[i].name for i in moved)
        result.error = (
            f"the candidate gave other values of {names} on a second run on the same inputs "
            "(a random op, or a kernel that is not deterministic), which do not match the "
            "reference's: it is not shown equivalent"
        )
        for i in moved:
            result.comparisons[i] = again[i]
        logger.warning("%s/%s: %s", provider, level, result.error)
    elif failed := [c for c in result.comparisons if failed_on_floats(c)]:
        rows = moved_by_ulp(ref.provider)
        for comparison in failed:
            if (row := rows.get(comparison.name)) is not None:
                comparison.ulp_max_abs, comparison.ulp_passed = row.max_abs, row.passed
    return _OneRun(result, (ref, cand), (cand_names, cand_out))


def _weights_moved(
    reference: Path,
    provider: str,
    feeds: dict[str, Any],
    options: CheckOptions,
    pinned: list[IOPlan],
    held: Held = None,
) -> dict[str, OutputComparison]:
    """How the reference with its weights moved by one ulp (:mod:`wnpass.verify.sensitivity`;
    read from its file, which the caller's model may not be) compares with the reference, at
    the check's tolerance, by output. Both run with graph optimizations disabled: ONNX Runtime
    folds constants from the model's own initializers, not from those given to replace them
    (a gain given doubled changed nothing, 1.32). Only the outputs measured so: none where
    there is no weight to move, or a session does not load, run or stay on ``provider`` (said
    in the log); not an output that failed by a NaN or a shape, nor one that did not change
    (its weights not moved: a Constant's, a body's; or ONNX Runtime did not use them)."""
    weights = sensitivity.moved_weights(_load(reference, "reference", pinned)[0])
    if weights is None:
        return {}
    runs: list[tuple[list[str], list[Any]]] = []
    for given in (None, weights):
        try:
            session = prov.open_session(
                reference,
                provider,
                optimization="disabled",
                threads=options.threads,
                initializers=given,
            )
            runs.append((session.output_names(), prov.run(session, reference, feeds)))
        except (prov.SessionError, prov.OutOfMemoryError) as error:
            logger.info("%s: the reference with weights moved by one ulp: %s", provider, error)
            return {}
        if session.fell_back:
            return {}
        del session  # before the next: one copy of the weights in ONNX Runtime at a time
    what = f"{reference}: comparing it with its weights moved by one ulp"
    try:
        rows = compare_within(runs[0], runs[1], *options.tolerances, what, held)
    except WnpassError as error:  # out of memory: no note, the verdict stands
        logger.info("%s", error)
        return {}
    return {
        row.name: row for row in rows if row.measured and row.problem is None and row.max_abs > 0
    }


def _bytes(paths: Iterable[str]) -> int:
    """The size of the files at ``paths`` together (a file gone counts nothing)."""
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += os.stat(path).st_size
    return total
