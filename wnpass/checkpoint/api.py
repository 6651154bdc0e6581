"""Fold, convert and inspect checkpoints without the model's code: the public functions.

Each takes a checkpoint path (:mod:`wnpass.checkpoint.formats`), plans every file it reads and
writes in one :class:`~wnpass.plan.IOPlan`, checks the plan before writing anything, writes the
output (every shard, then the index) into a staging folder beside it, and publishes it only
when everything is written (and, with ``check_model``, verified). The input is never changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wnpass.arguments import require_flag
from wnpass.checkpoint.fold import Declined, check_pair, fold_pair
from wnpass.checkpoint.formats import (
    check_output_name,
    default_output,
    detect_format,
    is_sharded,
    refuse_unread,
    shard_output_names,
)
from wnpass.checkpoint.kept import library_first
from wnpass.checkpoint.pages import identities, release
from wnpass.checkpoint.pairs import Pair, find_pairs, weight_norms_own
from wnpass.checkpoint.reading import (
    Checkpoint,
    Group,
    TensorInfo,
    open_checkpoint,
    shard_files,
)
from wnpass.checkpoint.report import CheckpointReport, PairReport
from wnpass.checkpoint.tensorfile import METADATA_KEY
from wnpass.checkpoint.writing import Action, Rewrite, write_file, write_index
from wnpass.errors import InvalidArgumentError, InvalidModelError, WnpassError
from wnpass.plan import MODEL_PY, IOPlan, as_path, as_plan
from wnpass.rules import pair_keys, unit_size
from wnpass.verify.options import as_tolerance, refuse_unused

__all__ = ["FORMS", "convert_checkpoint", "fold_checkpoint", "inspect_checkpoint", "plan_input"]

logger = logging.getLogger(__name__)

FORMS = ("parametrize", "legacy")
# what an output shard is called in messages: its name is derived from ``output``'s (the CLI
# says "-o's shard" where -o was given), not one the caller gave
SHARD = "output's shard"

Found = list[tuple[Group, Pair, PairReport]]


def inspect_checkpoint(
    path: str | os.PathLike[str], *, plan: IOPlan | None = None, keep_objects: bool = False
) -> CheckpointReport:
    """The weight-norm pairs of a checkpoint, each ``foldable`` or ``declined`` (with the
    reason), and the axis each implies; writes nothing. ``keep_objects``: a torch file's
    objects of classes torch's weights-only loader does not build (a NeMo configuration's
    ``DictConfig``) are kept unbuilt, not refused (:mod:`wnpass.checkpoint.kept`); the
    report's ``kept`` names their globals."""
    path = as_path("path", path)
    start = _clock(path)
    plan = as_plan(plan) or IOPlan()
    checkpoint = _open(path, plan, keep_objects)
    plan.check()
    report = _report("inspect", checkpoint)
    try:
        _check_values(checkpoint, _find(checkpoint, report), "foldable")
    finally:
        checkpoint.close()
    report.seconds = time.perf_counter() - start
    return report


def fold_checkpoint(
    path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    plan: IOPlan | None = None,
    check_model: str | os.PathLike[str] | None = None,
    factory: str | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    keep_objects: bool = False,
) -> CheckpointReport:
    """Fold every weight-norm pair of a checkpoint into a plain weight; write the result.

    ``output``: default ``<stem>.folded<suffix>`` beside the input, in the input's format.
    ``check_model``: a ``model.py`` whose model (without weight norm) must load the output
    strictly and compute what the weight-normed model computes from the input, on
    ``example_inputs()``; if not, nothing is published and ``report.check`` says why.
    ``rtol``/``atol``: that check's tolerances (default: ``check``'s, per output dtype).
    ``keep_objects``: as :func:`inspect_checkpoint`'s; such objects are written back as the
    file holds them.
    """
    path, output = as_path("path", path), _as_output(output)
    rtol, atol = as_tolerance("rtol", rtol), as_tolerance("atol", atol)
    if check_model is None:
        refuse_unused({"factory": factory, "rtol": rtol, "atol": atol}, "check_model")
    else:
        check_model = as_path("check_model", check_model)
        if factory is not None and not isinstance(factory, str):
            raise InvalidArgumentError(
                f"must be a function name (a str) or None, not {type(factory).__name__}",
                parameter="factory",
            )
    start = _clock(path)
    plan = as_plan(plan) or IOPlan()
    checkpoint = _open(path, plan, keep_objects)
    if check_model is not None:
        plan.read(check_model, MODEL_PY)
    targets = _plan_outputs(checkpoint, output, "folded", plan)
    plan.check()
    report = _report("fold", checkpoint)
    try:
        plain = None
        if check_model is not None:
            from wnpass.checkpoint.verify import plain_model

            plain = plain_model(Path(check_model), factory, plan)
        known = frozenset(plain[0].state_dict()) if plain is not None else frozenset()
        found = _find(checkpoint, report, model_keys=known)
        _check_values(checkpoint, found, "folded")
        rewrite: Rewrite = {}
        for group, pair, pair_report in found:
            if pair_report.status != "folded":
                continue
            other = next(key for key in pair.present if key != pair.first)
            rewrite[(group.path, pair.first)] = Action("fold", pair.weight, pair)
            rewrite[(group.path, other)] = Action("drop", other)
            pair_report.output_keys = [pair.weight]
        _kept_as_they_were(found)
        verify = None
        if check_model is not None:
            assert plain is not None
            verify = _Verify(Path(check_model), factory, rtol, atol, found, plain)
        _write(checkpoint, rewrite, targets, plan, report, verify)
    finally:
        checkpoint.close()
    report.seconds = time.perf_counter() - start
    return report


def convert_checkpoint(
    path: str | os.PathLike[str],
    to: str,
    output: str | os.PathLike[str] | None = None,
    *,
    plan: IOPlan | None = None,
    keep_objects: bool = False,
) -> CheckpointReport:
    """Rename every weight-norm pair into key form ``to`` (``parametrize`` or ``legacy``);
    the tensors are the input's, byte for byte. ``output``: default ``<stem>.<to><suffix>``.
    ``keep_objects``: as :func:`fold_checkpoint`'s."""
    path, output = as_path("path", path), _as_output(output)
    if not isinstance(to, str) or to not in FORMS:
        raise InvalidArgumentError(f"must be parametrize or legacy, not {to!r}", parameter="to")
    start = _clock(path)
    plan = as_plan(plan) or IOPlan()
    checkpoint = _open(path, plan, keep_objects)
    targets = _plan_outputs(checkpoint, output, to, plan)
    plan.check()
    report = _report("convert", checkpoint)
    report.to = to
    try:
        found = _find(checkpoint, report, folding=False)
        rewrite: Rewrite = {}
        for group, pair, pair_report in found:
            if pair_report.status == "declined":
                continue
            if pair.keys.form == to:
                pair_report.status = "unchanged"
                pair_report.output_keys = pair.present
                continue
            new = pair_keys(pair.weight, "legacy" if to == "legacy" else "parametrize")
            taken = [key for key in (new.g, new.v) if key in group.keys]  # tensor or not
            if taken:
                pair_report.status, pair_report.reason = "declined", f"{taken[0]} is stored too"
                continue
            assert pair.g is not None and pair.v is not None
            if (
                to == "legacy"
                and not weight_norms_own(pair.weight, "legacy", group.keys)
                and unit_size(pair.v.shape, pair.dim) == 1
            ):
                pair_report.status, pair_report.reason = (
                    "declined",
                    (
                        "one element per unit of v: under legacy keys it could not be told from "
                        "two plain parameters (and would not be folded or converted back)"
                    ),
                )
                continue
            rewrite[(group.path, pair.g.key)] = Action("rename", new.g)
            rewrite[(group.path, pair.v.key)] = Action("rename", new.v)
            pair_report.status, pair_report.output_keys = "converted", [new.g, new.v]
        _kept_as_they_were(found)
        _write(checkpoint, rewrite, targets, plan, report, None)
    finally:
        checkpoint.close()
    report.seconds = time.perf_counter() - start
    return report


# -- steps ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Verify:
    """What ``check_model`` asks for: the model, and the tolerances to compare with."""

    model_py: Path
    factory: str | None
    rtol: float | None
    atol: float | None
    found: Found
    plain: tuple[Any, tuple[Any, ...]]  # the plain model built to read its keys, and inputs


def _as_output(output: object) -> Path | None:
    return None if output is None else as_path("output", output)


def _clock(path: str | os.PathLike[str]) -> float:
    """``time.perf_counter()`` once the library that reads ``path`` is imported, so that a
    report's seconds are the work on the checkpoint, as an ONNX fold's leave out importing
    onnx: importing torch for a torch file takes about 1.5 s, the same for any file."""
    with contextlib.suppress(WnpassError):  # a name of no format: refused when opened
        if detect_format(Path(path)).startswith("torch"):
            import torch  # noqa: F401

    return time.perf_counter()


def plan_input(path: str | os.PathLike[str], plan: IOPlan) -> Path:
    """Record in ``plan`` every file checkpoint ``path`` reads: itself and, for a sharded
    checkpoint, each shard its index names (the index is read for them; no shard is opened),
    so that a plan of several inputs is checked before the first is read. Returns the path."""
    refuse_unread(Path(path), "checkpoint")  # a folder named x.pt, a DCP folder named so
    path = plan.read(path, "the input checkpoint")
    if is_sharded(detect_format(path)):
        plan.read_all(shard_files(path), "a shard of the input checkpoint")
    return path


def _open(path: str | os.PathLike[str], plan: IOPlan, keep_objects: object) -> Checkpoint:
    require_flag("keep_objects", keep_objects)
    return open_checkpoint(plan_input(path, plan), keep_objects=bool(keep_objects))


@dataclasses.dataclass(frozen=True)
class _Targets:
    """The files a run writes (its shards, then the index or the one file) and the shards of
    the index it replaces that no new shard replaces (kept: see :func:`_keep_old_shards`)."""

    files: list[Path]
    old_shards: list[Path]


def _plan_outputs(
    checkpoint: Checkpoint, output: str | os.PathLike[str] | None, tag: str, plan: IOPlan
) -> _Targets:
    """The files to write: one per input file (its shards), then the index; all planned, a
    shard as :data:`SHARD` (a name derived from ``output``, not the name given)."""
    main = Path(output) if output is not None else default_output(checkpoint.path, tag)
    check_output_name(main, checkpoint.format)
    if not checkpoint.sharded:
        return _Targets([plan.write(main, "output")], [])
    names = shard_output_names(checkpoint.shard_names, checkpoint.path, main)
    shards = [main.parent / name for name in names]
    plan.write(main, "output")  # the index first: a clash with it is the one reported
    old = _old_shards(main)
    replaced = {os.path.realpath(shard) for shard in old}
    # a name derived, not given: written over only where the older output's index names it
    # and a file is (a file of that name beside was replaced, t153; one another process put
    # at a name the older index names, its shard gone, too, t156)
    targets = [
        *(
            plan.write(
                target,
                SHARD,
                new=os.path.realpath(target) not in replaced or not os.path.lexists(target),
            )
            for target in shards
        ),
        main,
    ]
    return _Targets(targets, _keep_old_shards(old, main, targets, plan))


def _old_shards(index: Path) -> list[Path]:
    """The shards the index at ``index`` names, which a run writing there replaces, whether
    each is there or not (one deleted by hand left every other refused, t154); none where
    there is no readable index."""
    if not index.is_file():
        return []
    try:
        return shard_files(index, exists=False)
    except InvalidModelError:  # not a readable index: it names nothing
        return []


def _keep_old_shards(old: list[Path], index: Path, targets: list[Path], plan: IOPlan) -> list[Path]:
    """The shards ``old`` of the index this run replaces that no new shard replaces stay
    whole until the new index is in place: no other output of the run may be written onto
    one (a failed check leaves the old checkpoint whole). They are never deleted (the run did
    not write them); returned, so the report can say they are left."""
    replaced = {os.path.realpath(target) for target in targets}
    kept = [
        shard for shard in old if os.path.lexists(shard) and os.path.realpath(shard) not in replaced
    ]
    for shard in kept:
        plan.keep(shard, index)
    return kept


def _report(action: str, checkpoint: Checkpoint) -> CheckpointReport:
    files = [checkpoint.path, *checkpoint.files] if checkpoint.sharded else [checkpoint.path]
    return CheckpointReport(
        action=action,
        input=str(checkpoint.path),
        format=checkpoint.format,
        groups=[group.name for group in checkpoint.groups if group.name is not None],
        tensors_before=sum(len(group.tensors) for group in checkpoint.groups),
        bytes_before=_size(files),
        kept=sorted(checkpoint.kept, key=library_first),
    )


def _size(files: Iterable[Path]) -> int:
    return sum(os.stat(path).st_size for path in files)


def _find(
    checkpoint: Checkpoint,
    report: CheckpointReport,
    *,
    folding: bool = True,
    model_keys: frozenset[str] = frozenset(),
) -> Found:
    """Every pair of every state dict, with its report row (``declined`` or ``ok`` so far).
    ``folding``, ``model_keys``: as :func:`~wnpass.checkpoint.pairs.find_pairs` (``convert``
    renames any dtype; ``--model``'s model says which plain weights it holds)."""
    found: Found = []
    for group in checkpoint.groups:
        pairs = find_pairs(group.tensors, group.others, folding=folding, model_keys=model_keys)
        for pair in pairs:
            v_or_g = pair.v or pair.g
            assert v_or_g is not None
            first = _first(pair)
            row = PairReport(
                weight=pair.weight,
                form=pair.keys.form,
                g=pair.g.key if pair.g else None,
                v=pair.v.key if pair.v else None,
                group=group.name,
                shard=checkpoint.shard_names[first.shard] if checkpoint.sharded else None,
                g_shape=list(pair.g.shape) if pair.g else None,
                v_shape=list(pair.v.shape) if pair.v else None,
                dtype=v_or_g.dtype,
                dim=pair.dim,
                whole_tensor=pair.ok and pair.dim is None,
                status="ok" if pair.ok else "declined",
                reason=pair.reason,
            )
            if folding and pair.ok and _reserved(checkpoint, pair.weight):
                row.status, row.whole_tensor = "declined", False
                row.reason = (
                    f"its weight's key {pair.weight} is the header entry safetensors keeps for "
                    "the file's metadata: a tensor of that key would make the file unreadable"
                )
                logger.warning("%s: not folded: %s", pair.weight, row.reason)
            found.append((group, pair, row))
            report.pairs.append(row)
    return found


def _kept_as_they_were(found: Found) -> None:
    """A declined pair's tensors are written as they were, under their own keys (its
    ``output_keys`` were empty, as if dropped, t210)."""
    for _, pair, pair_report in found:
        if pair_report.status == "declined":
            pair_report.output_keys = list(pair.present)


def _reserved(checkpoint: Checkpoint, key: str) -> bool:
    """Whether ``key`` may not name a tensor in the checkpoint's format (safetensors keeps
    :data:`~wnpass.checkpoint.tensorfile.METADATA_KEY` for the file's metadata, t103)."""
    return key == METADATA_KEY and checkpoint.format in ("safetensors", "safetensors-index")


def _shards(pair: Pair) -> tuple[int, ...]:
    """The files that hold a complete pair's halves: one, or two in order."""
    assert pair.g is not None and pair.v is not None
    return tuple(sorted({pair.g.shard, pair.v.shard}))


def _hold(checkpoint: Checkpoint, held: Iterable[int], needed: Iterable[int]) -> None:
    """Release the files of ``held`` that ``needed`` does not hold on to."""
    for shard in set(held) - set(needed):
        checkpoint.release(shard)


def _check_values(checkpoint: Checkpoint, found: Found, status: str) -> None:
    """Read each complete pair's values (one pair at a time) and mark it ``status`` or
    ``declined`` with the reason (NaN/Inf, zero norm, overflow).

    The pairs are read by the files that hold them: those of one file, then those split
    between it and a later one (by that one), and so on; a file stays open while the next
    pairs need it. At most two files are open at once, and each is opened at most once for
    itself and once for each earlier file it shares a pair with, however many pairs are split
    across files (a file reopened for each pair took time quadratic in their number)."""
    todo = [(pair, row) for _, pair, row in found if row.status == "ok"]
    files = identities(checkpoint.files)
    todo.sort(key=lambda item: _shards(item[0]))  # stable: the input's order within each
    held: tuple[int, ...] = ()
    for pair, row in todo:
        assert pair.g is not None and pair.v is not None
        _hold(checkpoint, held, _shards(pair))
        held = _shards(pair)
        g, v = checkpoint.tensor(pair.g), checkpoint.tensor(pair.v)
        reason = check_pair(g, v, pair.dim)
        release((g, v), files)  # read once: their mapped pages are not needed again
        del g, v
        row.status, row.reason = ("declined", reason) if reason else (status, None)
        if reason:
            row.whole_tensor = False
            if status == "folded":  # an inspection's table says it (as ONNX's does)
                logger.warning("%s: not folded: %s", pair.weight, reason)
    checkpoint.close()


def _other_shard(pair: Pair, shard: int) -> int:
    """The file that holds the half of ``pair`` not in ``shard``; ``shard`` if both are."""
    return next((other for other in _shards(pair) if other != shard), shard)


def _write(
    checkpoint: Checkpoint,
    rewrite: Rewrite,
    planned: _Targets,
    plan: IOPlan,
    report: CheckpointReport,
    verify: _Verify | None,
) -> None:
    """Write every output file into a staging folder, verify it if asked, then publish the
    shards and the index last. ``report.output``, ``shards`` and ``bytes_after`` name what was
    published: they stay None (empty) when a failed check publishes nothing; ``report.left``
    the replaced index's shards that the new index no longer names. A shard left with no
    tensor (it held only halves of pairs folded into another shard) is not published: the
    index could not name it (t291)."""
    targets = planned.files
    main = targets[-1]
    written_total = count = 0
    gain_elements = gain_bytes = 0  # of the g tensors folded away (a weight has v's)
    weight_map: dict[str, str] = {}
    empty: set[int] = set()  # shards left with no tensor: not published
    files = identities(checkpoint.files)
    with plan.staging(main) as folder:
        staged = [folder / target.name for target in targets]
        for shard in range(len(checkpoint.files)):
            weights = _fold_shard(checkpoint, rewrite, shard, files)

            def fold(pair: Pair, weights: dict[int, Any] = weights) -> object:
                nonlocal gain_elements, gain_bytes
                assert pair.g is not None
                gain_elements += math.prod(pair.g.shape)
                gain_bytes += pair.g.nbytes
                return weights.pop(id(pair))

            written = write_file(
                checkpoint,
                shard,
                rewrite,
                fold,
                staged[shard],
                targets[shard],
                SHARD if checkpoint.sharded else "output",
            )
            assert not weights, "a folded weight was not written"
            checkpoint.close()
            if checkpoint.sharded and not written:
                empty.add(shard)
            written_total += sum(nbytes for _, nbytes in written)
            count += len(written)
            for key, _ in written:
                weight_map[key] = targets[shard].name
            logger.info("wrote %s (%d tensors)", targets[shard], len(written))
        report.tensors_after = count
        if checkpoint.sharded:
            assert checkpoint.index is not None
            ordered = _index_order(checkpoint, rewrite, weight_map)
            write_index(
                checkpoint.index,
                ordered,
                staged[-1],
                written_bytes=written_total,
                gain_bytes=gain_bytes,
                gain_elements=gain_elements,
            )
        bytes_after = _size(stage for i, stage in enumerate(staged) if i not in empty)
        if verify is not None:
            from wnpass.checkpoint.verify import check_folded

            # the check reads the input again: if it read other files, that is the error
            # (raised over whatever the check made of them), not the fold
            try:
                report.check = check_folded(
                    verify.model_py,
                    verify.factory,
                    checkpoint.path,
                    staged[-1],
                    verify.found,
                    rtol=verify.rtol,
                    atol=verify.atol,
                    plain=verify.plain,
                    keep_objects=checkpoint.keep_objects,
                )
            finally:
                checkpoint.require_unchanged()
            if not report.check:
                logger.warning("the folded checkpoint failed the check: nothing published")
                return
        checkpoint.require_unchanged()  # what was folded is what is there, to the last read
        published = [i for i in range(len(targets)) if i not in empty]
        with plan.together():  # no shard left that no index names (t242)
            for i in published:
                plan.publish(staged[i], targets[i])
    report.output = str(main)
    report.shards = [str(targets[i]) for i in published[:-1]]
    report.bytes_after = bytes_after
    unnamed = [*planned.old_shards, *(targets[i] for i in sorted(empty))]
    report.left = [
        f"{shard}: kept (a shard of the replaced {main.name}; the new one does not name it)"
        for shard in unnamed
        if os.path.lexists(shard)
    ]


def _fold_shard(
    checkpoint: Checkpoint, rewrite: Rewrite, shard: int, files: set[tuple[int, int]]
) -> dict[int, Any]:
    """The folded weight of every pair folded into file ``shard`` (its first key's), by the
    pair's ``id``: the weights are computed before the file is written (which holds all of them
    at once anyway, until they are written), by the file that holds each pair's other half:
    those of ``shard`` alone first, then each other file's in turn, opened once and released
    before the next (a file reopened for each pair took time quadratic in their number)."""
    pairs = [
        action.pair
        for action in rewrite.values()
        if action.kind == "fold" and action.pair is not None
    ]
    here = [pair for pair in pairs if _first(pair).shard == shard]
    here.sort(key=lambda pair: (_other_shard(pair, shard) != shard, _other_shard(pair, shard)))
    weights: dict[int, Any] = {}
    # a pair held under two names (a module registered twice, an EMA dict of the same
    # tensors) is folded once, and its weight written once under both (t204: two copies)
    tied: dict[tuple[object, ...], Any] = {}
    held: tuple[int, ...] = (shard,)
    for pair in here:
        assert pair.g is not None and pair.v is not None
        _hold(checkpoint, held, _shards(pair))
        if _shards(pair) != held:  # a file released: its addresses may be another's now (t205)
            tied.clear()
        held = _shards(pair)
        g, v = checkpoint.tensor(pair.g), checkpoint.tensor(pair.v)
        same = _same_tensors(g, v, pair.dim)
        if same is not None and same in tied:
            weights[id(pair)] = tied[same]
            continue
        try:
            weights[id(pair)] = fold_pair(g, v, pair.dim)
            if same is not None:
                tied[same] = weights[id(pair)]
        except Declined:  # values that passed the checks and now do not: read again
            checkpoint.require_unchanged()  # from a file that changed, if it did
            raise
        except MemoryError:  # the check's arrays fitted, these with the weights before not
            raise WnpassError(
                f"{pair.weight}: out of memory computing its folded weight (the weights of "
                "one output file are held until it is written); nothing written"
            ) from None
        release((g, v), files)  # not read again: give their mapped pages back
        del g, v
    _hold(checkpoint, held, (shard,))
    return weights


def _same_tensors(g: Any, v: Any, dim: int | None) -> tuple[object, ...] | None:
    """A key equal for two pairs whose g and v are the same torch tensors (one storage, the
    same view of it) and axis, while the files that hold them stay mapped (an address is a
    place in a mapped file; another file mapped later may take it); None for numpy arrays (a
    safetensors file shares nothing)."""
    if not (hasattr(g, "untyped_storage") and hasattr(v, "untyped_storage")):
        return None

    def view(t: Any) -> tuple[object, ...]:
        storage = t.untyped_storage()
        return (
            storage.data_ptr(),
            storage.nbytes(),
            t.storage_offset(),
            t.shape,
            t.stride(),
            t.dtype,
        )

    return (view(g), view(v), dim)


def _first(pair: Pair) -> TensorInfo:
    """The half of ``pair`` whose key comes first: the folded weight takes its place."""
    return next(info for info in (pair.g, pair.v) if info is not None and info.key == pair.first)


def _index_order(
    checkpoint: Checkpoint, rewrite: Rewrite, weight_map: dict[str, str]
) -> dict[str, str]:
    """The output weight map in the input's order (a folded weight where its first key was)."""
    ordered: dict[str, str] = {}
    for info in checkpoint.groups[0].tensors:
        action = rewrite.get(((), info.key), Action("copy", info.key))
        if action.kind != "drop":
            ordered[action.key] = weight_map[action.key]
    return ordered
