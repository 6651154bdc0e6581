"""Checkpoint reports: what was found in a checkpoint and what was done with each pair.

Data only, in the style of :mod:`wnpass.report`: dataclasses that know whether they passed
(``bool()``), serialise to JSON (``to_dict``, ``write_json``), and are rendered by the CLI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wnpass.errors import WnpassError
from wnpass.report import Anchored, declined_for_memory, write_json

if TYPE_CHECKING:
    from wnpass.checkpoint.formats import Format
    from wnpass.plan import IOPlan

__all__ = ["CheckpointReport", "ModelCheckReport", "OutputRow", "PairReport", "UnreadWeights"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class PairReport:
    """One weight-norm pair and what became of it.

    ``status``: ``folded``/``foldable`` (fold, inspect), ``converted``/``convertible``
    (convert), ``unchanged`` (convert: already in the target form), ``declined`` (with the
    reason; its tensors are left exactly as they were).
    """

    weight: str  # the plain weight's name: "conv.weight"
    form: str  # "parametrize" or "legacy"
    g: str | None  # its keys (None: that half is missing)
    v: str | None
    group: str | None  # where the state dict sits in a torch file ("generator"), else None
    shard: str | None  # the file of its first key, for a sharded checkpoint
    g_shape: list[int] | None
    v_shape: list[int] | None
    dtype: str | None  # v's dtype, the weight's
    dim: int | None  # the axis g keeps (None: the whole tensor, see whole_tensor)
    whole_tensor: bool  # the norm is over the whole tensor (a scalar g: dim=None)
    status: str
    reason: str | None = None
    # the keys its tensors are written under (a declined pair's own); none in an inspection
    output_keys: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class OutputRow:
    """One output of ``--model`` verification: folded model vs weight-normed model."""

    name: str
    shape: list[int] | None
    dtype: str | None
    max_abs: float
    max_rel: float
    outside: int
    total: int
    rtol: float | None  # None for both: compared exactly (integers, bools)
    atol: float | None
    problem: str | None = None
    uncompared: str | None = None  # why no element of it was compared (no failure by itself)
    atol_scaled: bool = False  # the default atol capped at rtol times the output's scale
    group: str | None = None  # the state dict compared, in a torch file's object ("model")
    # the dtype whose tolerance applies where not the output's: the folded weights' (bfloat16
    # weights in a float32 model hold no more than bfloat16's precision)
    held_as: str | None = None
    numeric: bool = False  # a tensor's or a number's values (not a string, None, a shape)

    @property
    def ok(self) -> bool:
        return self.problem is None and self.outside == 0

    @property
    def compared(self) -> bool:
        """Whether its error sizes say something: not so where no element was compared (a
        missing output, another shape, every element NaN in both), shown ``-``, never 0."""
        from wnpass.verify.report import elements_compared

        return self.uncompared is None and elements_compared(self.problem, self.outside)


def _row_data(row: OutputRow, data: dict[str, Any]) -> None:
    """One output row's JSON, as the table shows it and as ``check`` writes its rows: its
    ``status`` and ``passed``, error sizes null where no element was compared (0 would read
    as "no error"), and no tolerance for a row that is no output (the folded checkpoint did
    not load)."""
    from wnpass.verify.compare import output_passed, output_status

    data.update(
        passed=output_passed(row.ok, row.uncompared),
        status=output_status(row.ok, row.uncompared),
    )
    if not row.compared:
        data.update(max_abs=None, max_rel=None)
    if row.shape is None:
        data.update(rtol=None, atol=None)


@dataclasses.dataclass
class UnreadWeights:
    """Folded weights of a state dict compared that the model's forward on its example inputs
    does not read (a discriminator's layers beside the generator the forward runs): no output
    says anything of them."""

    group: str | None  # the state dict, in a torch file's object (None: the top level)
    weights: list[str]


@dataclasses.dataclass
class ModelCheckReport:
    """The folded checkpoint in the plain model vs the original in the weight-normed model."""

    model: str
    outputs: list[OutputRow] = dataclasses.field(default_factory=list)
    reference: str = "torch.nn.utils.parametrizations.weight_norm on each folded pair"
    # the state dicts holding folded pairs (their names in the file; None: the top level):
    # compared, and not compared because the model does not load them (another network's)
    checked: list[str | None] = dataclasses.field(default_factory=list)
    unchecked: list[str | None] = dataclasses.field(default_factory=list)
    nothing_checked: str | None = None  # why no state dict was compared (a failure)
    unread: list[UnreadWeights] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.outputs) and all(row.ok for row in self.outputs) and self.vacuous() is None

    def vacuous(self) -> str | None:
        """Why nothing was compared, when no state dict with folded pairs was, or no element
        of any output could be: a failure."""
        from wnpass.verify.compare import nothing_compared

        return self.nothing_checked or nothing_compared(self.outputs)


@dataclasses.dataclass
class CheckpointReport(Anchored):
    """What ``fold``, ``convert`` or ``inspect`` found in a checkpoint and did."""

    action: str  # "fold", "convert" or "inspect"
    input: str
    format: Format  # "torch", "safetensors", "torch-index", "safetensors-index"
    pairs: list[PairReport] = dataclasses.field(default_factory=list)
    to: str | None = None  # convert: the target key form
    output: str | None = None  # the output file (the index of a sharded output)
    shards: list[str] = dataclasses.field(default_factory=list)  # shard files written
    groups: list[str] = dataclasses.field(default_factory=list)  # wrapper keys of state dicts
    tensors_before: int = 0
    tensors_after: int | None = None
    bytes_before: int | None = None
    bytes_after: int | None = None
    seconds: float | None = None
    check: ModelCheckReport | None = None
    # the globals of objects a torch file holds that were kept unbuilt (keep_objects)
    kept: list[str] = dataclasses.field(default_factory=list)
    # files the run leaves although the output no longer needs them, with the reason: the
    # shards a replaced index named that the new index does not (never deleted: not the run's)
    left: list[str] = dataclasses.field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(pair.status == status for pair in self.pairs)

    @property
    def declined(self) -> int:
        return self.count("declined")

    @property
    def undecided(self) -> int:
        """Pairs declined for lack of memory (:data:`~wnpass.report.OUT_OF_MEMORY`)."""
        return declined_for_memory(self.pairs)

    @property
    def published(self) -> bool:
        """Whether the output was written (a failed ``--model`` check publishes nothing)."""
        return self.output is not None and (self.check is None or bool(self.check))

    def __bool__(self) -> bool:
        """True when no pair was declined and a ``--model`` check, if any, passed."""
        return self.declined == 0 and (self.check is None or bool(self.check))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for status in ("folded", "foldable", "converted", "convertible", "unchanged"):
            data[status] = self.count(status)
        data["declined"] = self.declined
        data["undecided"] = self.undecided
        if self.check is not None:
            data["check"]["ok"] = bool(self.check)
            data["check"]["nothing_compared"] = self.check.vacuous()
            for row, raw in zip(self.check.outputs, data["check"]["outputs"], strict=True):
                _row_data(row, raw)
        data["ok"] = bool(self)
        return data

    def write_json(self, path: str | Path, plan: IOPlan | None = None) -> None:
        """Write the report as JSON (:func:`wnpass.report.write_json`); without ``plan``, never
        onto the checkpoint it is about, its output or their shards."""
        write_json(path, self.to_dict(), plan, self._files)

    def _files(self) -> list[tuple[str | None, str]]:
        """The files the report is about: the input, its shards, the output, its shards."""
        from wnpass.checkpoint.formats import is_sharded
        from wnpass.checkpoint.reading import shard_files

        files: list[tuple[str | None, str]] = [(self.input, "the input checkpoint")]
        if is_sharded(self.format):
            with contextlib.suppress(WnpassError):  # an index that no longer reads: itself
                shards = shard_files(Path(self.anchored(self.input)))
                files += [(str(f), "a shard of the input") for f in shards]
        files += [(self.output, "the output"), *((s, "a shard of the output") for s in self.shards)]
        return [(self.anchored(file), what) for file, what in files]
