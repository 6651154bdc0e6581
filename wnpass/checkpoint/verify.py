"""``--model``: check a folded checkpoint against the weight-normed model it came from.

Two instances of the ``model.py``'s model (weight norm, if it has any, folded out of both
first, so that both start plain):

- the candidate loads the folded checkpoint strictly (every key, no extra);
- the reference gets ``torch.nn.utils.parametrizations.weight_norm(module, name, dim)`` on
  each folded pair's module, with the axis the pair's ``g`` implies, and loads the *original*
  checkpoint (legacy keys renamed, by :func:`wnpass.fx.state.convert_state_dict`): it computes
  ``g * v / ||v||`` at run time, in PyTorch, in the model's dtype, on every forward.

This is done for every state dict that holds folded pairs whose weights the model has (a
generator and its EMA copy: both), each in fresh instances; a state dict without folded pairs
(a plain copy beside the weight-normed one) says nothing about the fold and is not compared,
and one whose folded weights the model has none of (a discriminator beside the generator) is
named as not checked. Where no state dict is compared, the check fails: nothing compared.

Both run ``example_inputs()`` in eval mode. Outputs are compared with ``check``'s tolerances
per output dtype (:data:`wnpass.verify.compare.DEFAULT_TOLERANCES`; float32: rtol 1e-4, atol
1e-5; integers and bools exactly, whatever ``rtol``/``atol`` say): the reference rounds after
every op of ``g * v / ||v||`` in float32 where the fold rounds once from float64, so the
weights differ by a few ulps and the outputs by those ulps accumulated over each layer's sums;
a wrong product (a lost ``g``, a wrong weight) differs by order 1. An output more precise
than the folded weights (a bfloat16 checkpoint, a float32 model) is held to the weights'
dtype's tolerance (:func:`_held_as`). The axis itself is not checked: the reference
normalizes where ``g`` says, as the fold does.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ml_dtypes
import numpy as np

from wnpass.checkpoint.reading import open_checkpoint
from wnpass.checkpoint.report import ModelCheckReport, OutputRow, UnreadWeights
from wnpass.errors import InvalidArgumentError, one_line
from wnpass.interrupts import STOPS
from wnpass.report import listed
from wnpass.verify.compare import compare_outputs, is_exact, nothing_compared, tolerance_for

if TYPE_CHECKING:
    from wnpass.checkpoint.api import Found
    from wnpass.checkpoint.pairs import Pair
    from wnpass.checkpoint.reading import Group, Place
    from wnpass.fx.forward import Batch, RngSnapshot
    from wnpass.plan import IOPlan

__all__ = ["check_folded", "keys_misfit", "plain_model", "shapes_by_weight"]

logger = logging.getLogger(__name__)

# a model's state dict keys, each with its shape, or None where the model's is not binding
Shapes = dict[str, "tuple[int, ...] | None"]


def _state_dicts(path: Path, keep_objects: bool) -> dict[Place, dict[str, Any]]:
    """Every state dict of a checkpoint, materialized, by its place in the file."""
    checkpoint = open_checkpoint(path, keep_objects=keep_objects)
    try:
        return {
            group.path: {info.key: checkpoint.torch_tensor(info) for info in group.tensors}
            for group in checkpoint.groups
        }
    finally:
        checkpoint.close()


def plain_model(
    model_py: Path, factory: str | None, plan: IOPlan | None = None
) -> tuple[Any, tuple[Any, ...]]:
    """The ``model.py``'s model, weight norm folded out, in eval mode, and its inputs. Its
    state dict's keys (``conv.weight``) are the model's word that a legacy pair of one element
    per unit, which its names alone leave in doubt, is a pair (:mod:`wnpass.checkpoint.pairs`).
    ``plan``: as :func:`~wnpass.fx.loading.load_model_py`'s (the files the model.py's code
    reads are read by the run); given on the run's first load, before anything is written. A
    weight norm it cannot fold (another parametrization stacked on it, which keeps no state
    in the file: a symmetric constraint) is an InvalidArgumentError naming the weight."""
    from wnpass.fx.fold import fold_weight_norm
    from wnpass.fx.loading import load_model_py

    model, inputs = load_model_py(model_py, factory, plan=plan)
    if inputs is None:
        raise InvalidArgumentError(
            f"{model_py}: defines no example_inputs(); nothing to compare on",
            parameter="check_model",
        )
    folded = fold_weight_norm(model, check_values=False)  # its values are the checkpoint's
    # another parametrization stacked on it, keeping no state: said as keys the model does
    # not have, or as nothing compared (t142)
    if kept := folded.declined:
        site = kept[0]
        raise InvalidArgumentError(
            f"{model_py}: {site.name}: the model's weight norm is {site.reason}, so its weight "
            "is not the g * v / ||v|| a folded checkpoint holds, and the model cannot load one",
            parameter="check_model",
        )
    model.eval()  # its own override may return nothing (Coqui's UnivNet, t301)
    return model, inputs


def _run(model: Any, inputs: Batch, model_py: Path, rng: RngSnapshot) -> list[tuple[str, Any]]:
    """The model's result on its own copy of ``inputs`` as its leaves by path
    (:func:`wnpass.fx.compare.result_leaves`), drawing the random numbers of ``rng`` (a
    forward with sampling noise compares exactly with itself)."""

    from wnpass.fx.compare import result_leaves
    from wnpass.fx.forward import ForwardFailedError, call_model, what_it_did

    try:
        with rng.replayed():
            return result_leaves(call_model(model, inputs))
    except ForwardFailedError as error:
        cause = error.__cause__ if error.__cause__ is not None else error
        raise InvalidArgumentError(
            f"{model_py}: forward {what_it_did(cause)}", parameter="check_model"
        ) from None


def _number_dtypes(model: Any) -> dict[type, str]:
    """The dtype whose tolerance a Python float or complex number the forward returns is held
    to: the model's own float dtype's (a float is most often a tensor's ``.item()``; float64's
    tolerance would fail its float32 rounding), float32's for a model without floats."""
    floats = [p.dtype for p in model.parameters() if p.is_floating_point()]
    name = str(floats[0]).removeprefix("torch.") if floats else "float32"
    return {float: name, complex: "complex128" if name == "float64" else "complex64"}


def _row(
    name: str,
    ref: Any,
    cand: Any,
    rtol: float | None,
    atol: float | None,
    held_as: str | None = None,
) -> OutputRow:
    """``cand`` against ``ref``, tensors, with the tolerance of their dtype (``held_as``'s
    where given) as check has it (integers and bools: exact)."""
    from wnpass.fx.compare import same_strides_compacted

    dtype = str(ref.dtype).removeprefix("torch.")
    kind = _numpy_dtype(held_as or dtype)
    exact, (row_rtol, row_atol) = is_exact(kind), tolerance_for(kind, rtol, atol)
    row = OutputRow(name, list(ref.shape), dtype, 0.0, 0.0, 0, int(ref.numel()), row_rtol, row_atol)
    # another dtype's tolerance: said, where one of its defaults is used (not both given)
    given = rtol is not None and atol is not None
    row.held_as = held_as if held_as != dtype and not given else None
    if ref.shape != cand.shape or ref.dtype != cand.dtype:
        row.problem = f"{list(cand.shape)} {cand.dtype} != reference {list(ref.shape)} {dtype}"
        return row
    # floats in float64 (complex128) with that tolerance (check's element rule); the rest as
    # they are; an axis both expand (stride 0) once
    cand, ref, factor = same_strides_compacted(cand, ref)
    r, c = (_as_compared(t, exact).numpy() for t in (ref, cand))
    (result,) = compare_outputs([name], [r], [name], [c], rtol=rtol, atol=atol, held_as=kind)
    row.problem, row.uncompared = result.problem, result.uncompared
    row.atol, row.atol_scaled = result.atol, result.atol_scaled
    row.outside, row.max_abs, row.max_rel = result.outside * factor, result.max_abs, result.max_rel
    return row


def _precision(name: str) -> float | None:
    """The spacing at 1 of real float dtype ``name`` (bfloat16: 2**-7), None for any other."""
    dtype = _numpy_dtype(name)
    if dtype.kind == "c":
        return None
    try:
        return float(ml_dtypes.finfo(dtype).eps)
    except ValueError:  # integers, bools
        return None


def _coarsest(dtypes: list[str]) -> str | None:
    """The least precise of the folded weights' dtypes."""
    floats = [(eps, name) for name in dtypes if (eps := _precision(name)) is not None]
    return max(floats)[1] if floats else None


def _held_as(output: str, weights: str | None) -> str | None:
    """``weights`` where the folded weights are of a float type less precise than float output
    dtype ``output`` (bfloat16 weights, a float32 model): the plain model then computes with
    weights that hold no more than ``weights`` does, rounded once from the exact product, where
    the reference computes ``g * v / ||v||`` from the same ``g`` and ``v`` in ``output``; the
    two differ by ``weights``' rounding, which ``output``'s tolerance would call a failure.
    None where ``output``'s own tolerance applies."""
    out, coarse = _precision(output), _precision(weights) if weights is not None else None
    return weights if out is not None and coarse is not None and coarse > out else None


def _as_compared(tensor: Any, exact: bool) -> Any:
    import torch

    tensor = tensor.detach().cpu().resolve_conj().resolve_neg()
    if exact:
        return tensor
    return tensor.to(torch.complex128 if tensor.is_complex() else torch.float64)


def _numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a torch dtype's name (bfloat16 and the float8s from ml_dtypes)."""
    try:
        return np.dtype(getattr(ml_dtypes, name, None) or name)
    except TypeError:  # a torch type numpy has no name for: compared as a float
        return np.dtype(np.float64)


def _prefixed(
    groups: dict[Place, tuple[Group, list[Pair]]],
    folded: dict[Place, dict[str, Any]],
    model_shapes: Shapes,
) -> tuple[str, bool] | None:
    """The prefix under which a state dict of the checkpoint is the model's (``module.`` of a
    DistributedDataParallel, ``_orig_mod.`` of torch.compile, a submodule's name): its keys
    of that prefix, the prefix taken off, are a state dict the model loads (t183, t187,
    t188); or the one the model's keys have where the checkpoint's do not (a model.py that
    wraps the network, ``self.module = Net()``, t204), with True (:func:`_keys_prefix`,
    shapes of parameters compared). None where there is none."""
    model_keys = set(model_shapes)
    for path in groups:
        state = folded[path]

        def same(key: str, model_key: str, state: dict[str, Any] = state) -> bool:
            shape = model_shapes[model_key]
            return shape is None or tuple(state[key].shape) == shape

        found = _keys_prefix(set(state) - model_keys, model_keys - set(state), same)
        if found is not None:
            return found
    return None


def _keys_misfit(keys: set[str], model_keys: set[str]) -> str | None:
    """The keys of a state dict of ``keys`` that a model of ``model_keys`` does not have, and
    those it lacks; None where they are the same."""
    return _keys_said(sorted(keys - model_keys), sorted(model_keys - keys)) or None


def _keys_said(unexpected: Sequence[str], missing: Sequence[str]) -> str:
    """The keys a model does not have and those it lacks, a few of each, as a line says them."""
    said = []
    if unexpected:
        said.append(f"keys the model does not have: {listed([_shown(k) for k in unexpected])}")
    if missing:
        said.append(
            f"keys the model has and the file lacks: {listed([_shown(k) for k in missing])}"
        )
    return "; ".join(said)


def _shown(key: str) -> str:
    """A key as a message names it: quoted where it would not read as itself (empty, or with
    spaces at an end)."""
    return key if key and key == key.strip() else repr(key)


def keys_misfit(
    unexpected: Sequence[str], missing: Sequence[str], shapes: Callable[[str, str], bool]
) -> str:
    """The keys of a state dict that a model does not have (``unexpected``) and those it
    lacks (``missing``), as PyTorch's strict load finds them, with the prefix that would make
    them fit, where one would (a DistributedDataParallel's ``module.``, a LightningModule's
    attribute, or the model.py's wrapper: :func:`_prefix_hint`): ``shapes(file_key,
    model_key)`` says whether the two may be one tensor (False where both are known and
    differ). A weight-norm pair's keys, of either form, count as its weight's: a loader
    converts them."""
    found = _keys_prefix(_as_weights(unexpected), _as_weights(missing), shapes)
    return _keys_said(sorted(unexpected), sorted(missing)) + _prefix_hint(found)


def _as_weights(keys: Iterable[str]) -> set[str]:
    """``keys``, a weight-norm pair's (either form) as its weight's name."""
    from wnpass.rules import parse_key

    return {parsed[0].weight if (parsed := parse_key(key)) else key for key in keys}


def shapes_by_weight(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shape of each tensor of ``state`` by key, and of each weight-norm pair's weight by
    the weight's name (its ``v``'s shape): what :func:`keys_misfit`'s ``shapes`` compares,
    its keys being weights' names (t305: a pair's weight had no shape, and any prefix fit)."""
    from wnpass.rules import parse_key

    shapes: dict[str, tuple[int, ...]] = {}
    for key, value in state.items():
        if (shape := getattr(value, "shape", None)) is None:
            continue
        shapes[key] = tuple(shape)
        if (parsed := parse_key(key)) is not None and parsed[1] == "v":
            shapes.setdefault(parsed[0].weight, tuple(shape))
    return shapes


def _keys_prefix(
    unexpected: set[str], missing: set[str], shapes: Callable[[str, str], bool]
) -> tuple[str, bool] | None:
    """The one prefix that makes the keys the model does not have the ones it lacks, of the
    same shapes: taken off those of them that have it, or (True) put on all of them, the
    model's keys having it (a model.py that wraps the network); None where none does, or
    several do (``discriminator.`` and ``generator.`` of one shape: which is meant is
    unknown, t307). The candidates are the prefixes of the keys that end with the first of
    the other side's; each must give all the other side's keys, and as many keys as they are
    must have it (counted by bisection in the sorted keys), before shapes are compared: so
    the search is linear in the keys for any number of candidates (30,000 ``blocks.N.``
    against a model's ``weight`` and ``bias``, t304, t307)."""
    for ours, theirs, model_side in ((unexpected, missing, False), (missing, unexpected, True)):
        first = min((key for key in theirs if key), default=None)
        if first is None:
            continue
        ordered = sorted(ours)
        fits: list[str] = []
        for prefix in sorted({key[: -len(first)] for key in ours if key.endswith("." + first)}):
            if any(prefix + key not in ours for key in theirs):
                continue
            having = bisect.bisect_left(ordered, prefix + "\U0010ffff") - bisect.bisect_left(
                ordered, prefix
            )
            if (having if not model_side else len(ours)) != len(theirs):
                continue
            if all(
                shapes(key, prefix + key) if model_side else shapes(prefix + key, key)
                for key in theirs
            ):
                fits.append(prefix)
                if len(fits) > 1:
                    return None
        if fits:
            return fits[0], model_side
    return None


def _prefix_hint(found: tuple[str, bool] | None) -> str:
    """What :func:`_prefixed` or :func:`_keys_prefix` found, as the end of a line."""
    if found is None:
        return ""
    prefix, model_side = found
    if model_side:
        return (
            f" (the model's weights are under the prefix {prefix!r}, which the checkpoint's "
            "keys lack: the model.py wraps the network the checkpoint was saved from; build "
            "that network, or add the prefix)"
        )
    return (
        f" (the model's weights are in the checkpoint under the prefix {prefix!r}, as a "
        "DistributedDataParallel's module. or torch.compile's _orig_mod. puts them: save the "
        "state dict of the module inside, or take the prefix off)"
    )


def check_folded(
    model_py: str | os.PathLike[str],
    factory: str | None,
    original: Path,
    folded: Path,
    found: Found,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    plain: tuple[Any, tuple[Any, ...]] | None = None,
    keep_objects: bool = False,
) -> ModelCheckReport:
    """Compare the model with ``folded`` loaded against the weight-normed model with
    ``original`` loaded (module docstring), for every state dict that holds a folded pair
    whose weight the model has: what was folded is what is checked. A state dict without
    folded pairs (a plain copy beside the weight-normed one) proves nothing about the fold and
    is not compared, nor is one the model does not load (a discriminator beside the generator,
    with layer names in common); where no state dict is left to compare, the check says so and
    fails, or, when the only candidates do not fit the model, says how (InvalidArgumentError).
    ``plain``: :func:`plain_model`'s result, when the caller has built it already.
    ``keep_objects``: the files are read keeping objects unbuilt, as the fold read them."""
    model_py = Path(model_py)
    report = ModelCheckReport(str(model_py))
    candidate, inputs = plain if plain is not None else plain_model(model_py, factory)
    model_shapes = _model_shapes(candidate)
    groups: dict[Place, tuple[Group, list[Pair]]] = {}
    declined: dict[Place, list[tuple[Pair, str | None]]] = {}
    for group, pair, pair_report in found:
        if pair_report.status == "folded":
            groups.setdefault(group.path, (group, []))[1].append(pair)
        elif pair_report.status == "declined":
            declined.setdefault(group.path, []).append((pair, pair_report.reason))
    folded_dicts = _state_dicts(folded, keep_objects) if groups else {}
    checked, misfits = [], []
    for group, pairs in groups.values():
        kept = [(p, why) for p, why in declined.get(group.path, []) if p.weight in model_shapes]
        if (
            kept
            and any(pair.weight in model_shapes for pair in pairs)
            and _misfit(_as_if_folded(folded_dicts[group.path], kept), model_shapes) is None
        ):
            # the model's state dict, but a pair left weight-normed (NaN, a zero-norm unit):
            # the plain model has no place for its g and v, and the check fails naming it
            pair, why = kept[0]
            row = OutputRow("load_state_dict", None, None, 0.0, 0.0, 0, 0, 0.0, 0.0)
            row.problem = (
                f"the folded checkpoint keeps {pair.weight} weight-normed (declined: {why}), "
                "which the model without weight norm cannot load"
            )
            row.group = group.name
            report.outputs.append(row)
            report.checked.append(group.name)
            continue
        if any(pair.weight in model_shapes for pair in pairs):
            misfit = _misfit(folded_dicts[group.path], model_shapes)
            if misfit is None:
                checked.append((group, pairs))
                report.checked.append(group.name)
                continue
            misfits.append(misfit)
        report.unchecked.append(group.name)
    if not checked and misfits:  # the one the user meant does not fit: say how
        hint = _prefix_hint(_prefixed(groups, folded_dicts, model_shapes))
        raise InvalidArgumentError(
            f"{model_py}: the original checkpoint does not fit the model: {misfits[0]}{hint}",
            parameter="check_model",
        )
    if not checked and report.outputs:  # every state dict failed already (a pair declined)
        return report
    if not checked:
        report.nothing_checked = "nothing compared: " + (
            "the model has none of the folded weights"
            + _prefix_hint(_prefixed(groups, folded_dicts, model_shapes))
            if groups
            else "no pair was folded"
        )
        logger.warning("--model check: %s", report.nothing_checked)
        return report
    original_dicts = _state_dicts(original, keep_objects)
    for i, (group, pairs) in enumerate(checked):
        if i:  # the candidate holds the last state dict's weights: a fresh one for this one
            candidate, _ = plain_model(model_py, factory)
        reference = _reference(model_py, factory, pairs, original_dicts[group.path])
        weights = _coarsest([pair.v.dtype for pair in pairs if pair.v is not None])
        rows, unread = _compare(
            model_py,
            reference,
            candidate,
            inputs,
            folded_dicts[group.path],
            [pair.weight for pair in pairs],
            rtol,
            atol,
            weights,
        )
        for row in rows:
            row.group = group.name
        report.outputs.extend(rows)
        where = f" (in {group.name})" if group.name is not None and len(checked) > 1 else ""
        if unread:
            report.unread.append(UnreadWeights(group.name, unread))
            if len(unread) == len(dict.fromkeys(pair.weight for pair in pairs)):
                # a forward that runs none of the folded layers: every output matches, and
                # says nothing of the fold (a discriminator's file, a generator's model.py)
                report.nothing_checked = report.nothing_checked or (
                    f"nothing compared: the forward on example_inputs() ({model_py}) reads "
                    f"none of the folded weights, so no output can show them{where}"
                )
        compared = any((row.numeric and row.compared and row.total) or row.problem for row in rows)
        if not compared:
            # None, a string, an empty tuple, or what has no values to compare: nothing the
            # folded weights of this state dict could reach was compared (t132, t134); decided
            # per state dict, as another's rows say nothing of this one's fold (t135)
            why = nothing_compared(rows) or (
                f"nothing compared: no output of the model's forward holds a tensor or number "
                f"with values to compare ({model_py}), so no output can show the folded weights"
            )
            report.nothing_checked = report.nothing_checked or why + where
    logger.info("--model check: %s", "passed" if report else "failed")
    return report


def _as_if_folded(state: dict[str, Any], declined: list[tuple[Pair, str | None]]) -> dict[str, Any]:
    """``state`` with each declined pair's halves in place of the weight they stand for (of
    ``v``'s shape): what it would be had the pair been folded, to tell the model's own state
    dict from another network's."""
    state = dict(state)
    for pair, _ in declined:
        for half in (pair.g, pair.v):
            if half is not None:
                state.pop(half.key, None)
        if pair.v is not None and pair.weight not in state:
            state[pair.weight] = _Shaped(tuple(pair.v.shape))
    return state


@dataclasses.dataclass(frozen=True)
class _Shaped:
    """A stand-in tensor: only its shape is read."""

    shape: tuple[int, ...]


def _model_shapes(model: Any) -> Shapes:
    """The model's state dict keys, each with its parameter's shape, or None for a buffer:
    a buffer's shape is not the model's to tell, as loading may resize it (the observers and
    fake quantizers of quantization-aware training take the file's ``scale``, ``min_val``,
    t302); the strict load says where one does not fit."""
    parameters = {id(value) for value in model.parameters()}
    return {
        key: tuple(value.shape) if id(value) in parameters else None
        for key, value in model.state_dict(keep_vars=True).items()
    }


def _misfit(state: dict[str, Any], model_shapes: Shapes) -> str | None:
    """Why folded state dict ``state`` is not one the model loads (another model's, such as a
    discriminator beside its generator, which may share layer names); None when it is."""
    if said := _keys_misfit(set(state), set(model_shapes)):
        return said
    for key, value in state.items():
        shape = model_shapes[key]
        if shape is not None and tuple(value.shape) != shape:
            return f"{key} is {tuple(value.shape)} in the file, {shape} in the model"
    return None


def _reference(
    model_py: Path, factory: str | None, pairs: list[Pair], original: dict[str, Any]
) -> Any:
    """The plain model with PyTorch's weight norm on each folded pair's weight, at the axis
    its ``g`` implies, holding the original state dict ``original``."""
    from torch.nn.utils.parametrizations import weight_norm

    from wnpass.fx.state import convert_state_dict

    reference, _ = plain_model(model_py, factory)
    normed: set[tuple[int, str]] = set()  # (module, weight) given weight norm
    for pair in pairs:
        module_name, _, leaf = pair.weight.rpartition(".")
        try:
            module = reference.get_submodule(module_name)
            # a module under two names (tied: self.b = self.a) has a pair under each; weight
            # norm goes on it once (twice would nest it, and its forward would fail)
            if (id(module), leaf) not in normed:
                normed.add((id(module), leaf))
                weight_norm(module, leaf, dim=pair.dim)  # type: ignore[arg-type]  # None: whole
        except Exception as error:
            raise InvalidArgumentError(
                f"{model_py}: the model has no weight {pair.weight} to put weight norm on "
                f"({one_line(error)})",
                parameter="check_model",
            ) from None
    try:
        reference.load_state_dict(convert_state_dict(reference, original), strict=True)
    except STOPS:
        raise
    except BaseException as error:  # the model's own load hooks too
        raise InvalidArgumentError(
            f"{model_py}: the original checkpoint does not fit the model: {one_line(error)}",
            parameter="check_model",
        ) from None
    return reference


def _compare(
    model_py: Path,
    reference: Any,
    candidate: Any,
    inputs: Any,
    folded: dict[str, Any],
    folded_weights: list[str],
    rtol: float | None,
    atol: float | None,
    weights: str | None = None,
) -> tuple[list[OutputRow], list[str]]:
    """``candidate`` with ``folded`` loaded strictly against ``reference``, output by output
    (a folded state dict that does not load strictly, or whose ``folded_weights`` the model
    does not then hold, is one failed row), and which of ``folded_weights`` the candidate's
    forward does not read (:class:`~wnpass.fx.kernels.TensorReads`: no output says anything
    of them). ``weights``: the dtype of the least precise folded weight (:func:`_coarsest`),
    whose tolerance a float output more precise than it is held to (:func:`_held_as`)."""
    import torch

    from wnpass.fx.compare import kind_of
    from wnpass.fx.forward import RngSnapshot, as_batch

    try:
        candidate.load_state_dict(folded, strict=True)
    except STOPS:
        raise
    except BaseException as error:  # the model's own load hooks too
        row = OutputRow("load_state_dict", None, None, 0.0, 0.0, 0, 0, 0.0, 0.0)
        row.problem = f"the folded checkpoint does not load strictly: {one_line(error)}"
        return [row], []
    if (unloaded := _not_loaded(candidate, folded, folded_weights)) is not None:
        row = OutputRow("load_state_dict", None, None, 0.0, 0.0, 0, 0, 0.0, 0.0)
        row.problem = (
            f"the model holds other values of {unloaded} than the folded checkpoint after "
            "load_state_dict (a load of its own that left them): nothing of it was checked"
        )
        return [row], []
    batch = as_batch(inputs)
    rng = RngSnapshot.take(reference, batch)
    ref_out = _run(reference, batch, model_py, rng)
    cand_out, unread = _run_watched(candidate, batch, model_py, rng, folded_weights)
    if unread:
        unread = _unread_confirmed(candidate, folded, unread, batch, model_py, rng)
    numbers = _number_dtypes(reference)
    rows = []
    for name, ref in ref_out:
        cand = cand_out.pop(name, _MISSING)
        if type(ref) is type(cand) and type(ref) in numbers:  # a Python float or complex
            wide = torch.float64 if type(ref) is float else torch.complex128
            r, c = torch.tensor(ref, dtype=wide), torch.tensor(cand, dtype=wide)
            coarser = _held_as(numbers[type(ref)], weights)
            rows.append(_row(name, r, c, rtol, atol, held_as=coarser or numbers[type(ref)]))
            rows[-1].dtype, rows[-1].held_as = type(ref).__name__, coarser
            rows[-1].numeric = True
        elif isinstance(ref, torch.Tensor) and isinstance(cand, torch.Tensor):
            coarser = _held_as(str(ref.dtype).removeprefix("torch."), weights)
            rows.append(_row(name, ref, cand, rtol, atol, held_as=coarser))
            rows[-1].numeric = True
        elif other := _other_row(name, ref, cand):
            rows.append(other)
    for name, cand in cand_out.items():  # parts only the folded model's result has
        row = OutputRow(name, None, kind_of(cand), 0.0, 0.0, 0, 0, None, None)
        row.problem = "not in the reference's result"
        rows.append(row)
    return rows, unread


def _unread_confirmed(
    model: Any,
    folded: dict[str, Any],
    unread: list[str],
    batch: Batch,
    model_py: Path,
    rng: RngSnapshot,
) -> list[str]:
    """Of ``unread`` (no kernel of the forward read them), none where the forward's result
    depends on them all the same, through a copy the model's own load made (a fused buffer
    a load hook fills, t293): the model loads ``folded`` as it is, then with those weights
    changed (``2 w + 1``, finite), its state given back before each forward (a streaming
    buffer, a call counter: t294), and the two results are compared. Where they cannot be
    (a forward or load that fails), or where the runs of ``folded`` before and after differ
    already (a global counter, noise: t296; a change every other call: t297), the forward's
    own reads stand."""
    import torch

    from wnpass.fx.forward import state_given_back

    changed = dict(folded)
    for name in unread:
        weight = torch.as_tensor(folded[name])
        if not weight.is_floating_point():
            return unread
        changed[name] = weight * 2 + 1
    results = []
    for state in (folded, folded, changed, folded):
        try:
            model.load_state_dict(state, strict=True)
            with state_given_back(model):
                results.append(_run(model, batch, model_py, rng))
        except STOPS:
            raise
        except BaseException as error:  # the model's own checks of its weights too
            logger.debug(
                "could not confirm the folded weights the forward does not read: %s", error
            )
            return unread
    base, repeated, again, after = results
    if not (_same_result(base, repeated) and _same_result(base, after)):
        return unread  # it changes of itself (every other call, past a count): tells nothing
    return unread if _same_result(base, again) else []


def _same_result(a: list[tuple[str, Any]], b: list[tuple[str, Any]]) -> bool:
    """Whether two results of the forward are the same, element for element (NaN or Inf
    where both have it): :func:`~wnpass.fx.compare.max_rel_error`'s 0."""
    from wnpass.fx.compare import max_rel_error

    return max_rel_error(a, b) == 0


def _run_watched(
    model: Any, batch: Batch, model_py: Path, rng: RngSnapshot, names: list[str]
) -> tuple[dict[str, Any], list[str]]:
    """:func:`_run`'s result as a dict, and which of tensors ``names`` of ``model``'s state
    the forward reads none of (empty where the forward fails under the watch: it is run
    again without it, and its own failure said as it is)."""
    from wnpass.fx.kernels import TensorReads

    state = model.state_dict(keep_vars=True)
    watched = {name: state[name] for name in dict.fromkeys(names) if name in state}
    reads = TensorReads(watched)
    try:
        with reads:
            result = dict(_run(model, batch, model_py, rng))
    except STOPS:
        raise
    except Exception as error:
        logger.debug("could not watch which folded weights the forward reads: %s", error)
        return dict(_run(model, batch, model_py, rng)), []
    return result, [name for name in watched if name not in reads.read]


def _not_loaded(model: Any, folded: dict[str, Any], keys: list[str]) -> str | None:
    """The first of ``keys`` whose value ``model`` does not hold as ``folded`` has it (in
    the model's dtype, as ``load_state_dict`` copies it); None when it holds them all."""
    import torch

    state = model.state_dict()
    for key in keys:
        if key in state and key in folded:
            held = state[key].detach()
            given = torch.as_tensor(folded[key]).to(held.device, held.dtype)
            if held.shape != given.shape or not torch.equal(held, given):
                return key
    return None


def _other_row(name: str, ref: Any, cand: Any) -> OutputRow | None:
    """A row for a leaf that is no tensor or number: a value compared exactly, a part not
    compared, or a container (a row only where it changed)."""
    import torch

    from wnpass.fx.compare import is_shape, kind_of, leaf_difference, why_uncompared

    shape = list(ref.shape) if isinstance(ref, torch.Tensor) else None
    row = OutputRow(name, shape, kind_of(ref), 0.0, 0.0, 0, 1, None, None)
    row.numeric = isinstance(ref, int | np.integer | np.bool_)  # exactly: argmax, a flag
    if cand is _MISSING:
        row.problem = "missing"
    elif difference := leaf_difference(cand, ref):
        row.problem = difference
    elif why := why_uncompared(ref):
        row.uncompared, row.total = why, 0
    elif is_shape(ref):
        return None
    return row


_MISSING = object()
