"""Which checkpoint format a path is, by its name, and the names wnpass gives to outputs.

Formats: ``torch`` (a ``torch.save`` file: :data:`TORCH_SUFFIXES`), ``safetensors``, and
the sharded indexes ``safetensors-index`` (``*.safetensors.index.json``) and ``torch-index``
(``*.bin.index.json``, ``*.pt.index.json``, ``*.pth.index.json``), in any case (``M.PT``: a
suffix names a format, as a file manager reads it). An output always has its input's format.

Output names: ``<stem>.<tag><suffix>`` beside the input (``tag`` is ``folded`` for a fold and
the target form for a conversion): ``model.pt`` → ``model.folded.pt``,
``model.safetensors.index.json`` → ``model.folded.safetensors.index.json``. The shards of a
sharded output keep their input names with the index's stem replaced by the output index's
stem: ``model-00001-of-00002.safetensors`` → ``model.folded-00001-of-00002.safetensors``; a
shard whose name does not start with the input's stem gets ``<output stem>-`` in front. Where
two shards would get one name that way (``model-x.safetensors`` and ``x.safetensors``), the
one without the stem is ``<output stem>-2-x.safetensors``; a name that is an input shard's is
never given in the input's folder either (:func:`shard_output_names`).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Literal

from wnpass.errors import InvalidArgumentError, InvalidModelError, UsageError
from wnpass.plan import identity_of

__all__ = [
    "DCP",
    "INDEX_SUFFIX",
    "NEMO",
    "TORCH_NAMES",
    "TORCH_SUFFIXES",
    "Format",
    "Wanted",
    "archive_kind",
    "check_output_name",
    "default_output",
    "detect_format",
    "folder_hint",
    "is_checkpoint_path",
    "is_dcp_file",
    "is_dcp_folder",
    "is_sharded",
    "is_training_state",
    "read_format",
    "refuse_unread",
    "shard_output_name",
    "shard_output_names",
    "split_name",
]

logger = logging.getLogger(__name__)

Format = Literal["torch", "safetensors", "torch-index", "safetensors-index"]

# .pth.tar: timm's train.py; .ckpt: PyTorch Lightning's and NeMo's trainers
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".pth.tar", ".ckpt")
TORCH_NAMES = ", ".join(TORCH_SUFFIXES)  # as messages list them
# NeMo's .nemo: a tar archive of the configuration and the weights
NEMO = "extract it (tar xf X.nemo) and give the model_weights.ckpt it holds"

# torch.distributed.checkpoint's format: a folder of a .metadata file and one .distcp file per
# process, which only torch.distributed.checkpoint reads
DCP = (
    "torch.distributed.checkpoint's format, which wnpass does not read: make one file of it "
    "with torch.distributed.checkpoint.format_utils.dcp_to_torch_save(FOLDER, 'model.pt') and "
    "give that"
)
_DCP_SUFFIX = ".distcp"


def is_dcp_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a torch.distributed.checkpoint: its ``.metadata`` file beside
    ``.distcp`` files."""
    return (folder / ".metadata").is_file() and any(
        name.lower().endswith(_DCP_SUFFIX) for name in os.listdir(folder)
    )


def archive_kind(path: str | Path) -> str | None:
    """What ``path`` is where it starts as a tar archive or a gzip file (a NeMo ``.nemo``,
    plain since NeMo 1.7, gzipped before), with what to do; None for anything else."""
    try:
        with open(path, "rb") as file:
            head = file.read(512)
    except OSError:
        return None
    if head[257:262] == b"ustar":  # a tar header's magic
        return f"a tar archive: NeMo's .nemo? {NEMO}"
    if head[:2] == b"\x1f\x8b":
        return f"a gzip file: NeMo's .nemo? {NEMO}"
    return None


INDEX_SUFFIX = ".index.json"
_SUFFIXES = (*TORCH_SUFFIXES, ".safetensors", INDEX_SUFFIX)


def is_checkpoint_path(path: str | Path) -> bool:
    """True for the names of the checkpoint formats (the content is checked when read)."""
    return Path(path).name.lower().endswith(_SUFFIXES)


# files of a trainer's checkpoint folder beside the weights (HF Trainer's, accelerate's), by
# the start of their names; and DeepSpeed's ``..._optim_states.pt``
_TRAINING_STATE = ("optimizer", "scheduler", "rng_state", "training_args", "scaler")


def is_training_state(name: str) -> bool:
    """Whether a file of a trainer's folder named ``name`` holds its training state (an
    optimizer's, a scheduler's, random generators') rather than the model's weights."""
    name = name.lower()
    return name.startswith(_TRAINING_STATE) or "optim_states" in name


# what a command that refuses a folder wanted instead, and how it says it
Wanted = Literal["onnx", "checkpoint", "either"]
_WANTED = {
    "onnx": "an ONNX file",
    "checkpoint": "a checkpoint",
    "either": "an ONNX file or a checkpoint",
}


def folder_hint(folder: Path, wanted: Wanted = "either") -> str:
    """A hint for a folder given where a file is wanted: that it holds a torch.distributed
    checkpoint; else, of the files the command takes (``wanted``), the sharded checkpoint
    index it holds, if any (a Hugging Face snapshot folder, t242), named as the commands take
    it; one of its ONNX models (which ``inspect`` takes as a folder); or its weights, not its
    training state (t295, t296); "" where it holds none of them."""
    try:
        if is_dcp_folder(folder):
            return f" (it is in {DCP})"
        # hidden files as a folder's inspection skips them (a hint named a stale .a.onnx, t315)
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name[:1] != ".")
    except OSError:
        return ""
    checkpoints = wanted != "onnx"
    if checkpoints and (indexes := [name for name in names if name.endswith(INDEX_SUFFIX)]):
        return f" (name the checkpoint's index: {folder / indexes[0]})"
    onnx_files = [name for name in names if name.lower().endswith(".onnx")]
    if wanted != "checkpoint" and onnx_files:
        return f" (name one of its files, as {folder / onnx_files[0]}; inspect takes a folder)"
    weights = [name for name in names if is_checkpoint_path(name) and not is_training_state(name)]
    weights.sort(key=lambda name: not name.lower().endswith(".safetensors"))
    return f" (name its checkpoint, as {folder / weights[0]})" if checkpoints and weights else ""


def is_dcp_file(path: Path) -> bool:
    """Whether ``path`` is one of a torch.distributed.checkpoint folder's files: a ``.distcp``
    shard, or the ``.metadata`` beside them."""
    if path.name.lower().endswith(_DCP_SUFFIX):
        return True
    try:
        return path.name == ".metadata" and is_dcp_folder(path.parent)
    except OSError:
        return False


def refuse_unread(path: Path, wanted: Wanted) -> None:
    """Refuse what no command reads, given where ``wanted`` is: a folder (with
    :func:`folder_hint`'s hint) or a torch.distributed.checkpoint's file; nothing for
    anything else."""
    if path.is_dir():
        raise InvalidModelError(
            f"{path}: is a directory, not {_WANTED[wanted]}" + folder_hint(path, wanted)
        )
    if is_dcp_file(path):
        raise InvalidModelError(f"{path}: a file of a folder in {DCP}")


def is_sharded(fmt: Format) -> bool:
    return fmt.endswith("-index")


def holds_objects(fmt: Format) -> bool:
    """Whether files of ``fmt`` may hold objects (pickles: ``torch.save``'s); a safetensors
    file holds tensors and string metadata only."""
    return fmt in ("torch", "torch-index")


def require_objects_possible(path: Path, fmt: Format) -> None:
    """``keep_objects`` for a checkpoint of ``fmt`` at ``path``: refused for one that holds
    no objects, as for an ONNX model (it was taken without a word, t309)."""
    if not holds_objects(fmt):
        raise InvalidArgumentError(
            f"is for torch.save files; {path} is a safetensors checkpoint, which holds no objects",
            parameter="keep_objects",
        )


def split_name(path: str | Path) -> tuple[str, str]:
    """``(stem, suffix)`` where suffix is the whole format suffix: ``.safetensors.index.json``
    for an index, ``.safetensors``, ``.pt`` ...; ValueError for another name."""
    name = Path(path).name
    lower = name.lower()  # the suffix is matched in any case, and kept as written
    if lower.endswith(INDEX_SUFFIX):
        inner = lower[: -len(INDEX_SUFFIX)]
        for suffix in (".safetensors", *TORCH_SUFFIXES):
            if inner.endswith(suffix) and len(inner) > len(suffix):
                cut = len(inner) - len(suffix)
                return name[:cut], name[cut:]
        raise ValueError(name)
    for suffix in (".safetensors", *TORCH_SUFFIXES):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    raise ValueError(name)


def _format_of_suffix(suffix: str) -> Format:
    suffix = suffix.lower()
    if suffix.endswith(INDEX_SUFFIX):
        return "safetensors-index" if suffix.startswith(".safetensors") else "torch-index"
    return "safetensors" if suffix == ".safetensors" else "torch"


def detect_format(path: str | Path) -> Format:
    """The format a checkpoint path names; InvalidModelError for a name of none."""
    try:
        _, suffix = split_name(path)
    except ValueError:
        refuse_unread(Path(path), "checkpoint")
        nemo = (
            f"; a .nemo file is a tar archive: {NEMO}"
            if Path(path).suffix.lower() == ".nemo"
            else ""
        )
        raise InvalidModelError(
            f"{path}: not a checkpoint name ({TORCH_NAMES}, .safetensors, "
            f"*.safetensors.index.json, *.bin.index.json){nemo}"
        ) from None
    return _format_of_suffix(suffix)


def read_format(path: str | Path) -> Format:
    """The format a file given to load a state dict from is read as: the one its name names,
    and ``torch.save``'s for any other name (HiFi-GAN's ``g_02500000``)."""
    try:
        return detect_format(path)
    except InvalidModelError:
        return "torch"


def default_output(path: Path, tag: str) -> Path:
    """``<stem>.<tag><suffix>`` beside ``path``."""
    stem, suffix = split_name(path)
    return path.with_name(f"{stem}.{tag}{suffix}")


def check_output_name(output: Path, fmt: Format, *, written: str | None = None) -> None:
    """Refuse (parameter ``output``) an output whose name is not of the input's format
    (``written``: why it is of format ``fmt``, where not that)."""
    try:
        _, suffix = split_name(output)
    except ValueError:
        suffix = ""
    if suffix and _format_of_suffix(suffix) == fmt:
        return
    name = output.name.lower()
    if name in _SUFFIXES and _format_of_suffix(name) == fmt:  # ``.pt``: a hidden file's name
        raise UsageError(
            f"{output}: a checkpoint needs a name before {output.name}", parameter="output"
        )
    written = written or f"the output has the input's format ({fmt})"
    wanted = {
        "torch": " or ".join(TORCH_NAMES.rsplit(", ", 1)),
        "safetensors": ".safetensors",
        "torch-index": "*.bin.index.json (or .pt/.pth.index.json)",
        "safetensors-index": "*.safetensors.index.json",
    }[fmt]
    raise UsageError(
        f"{output}: {written}: its name must end with {wanted}",
        parameter="output",
    )


def shard_output_name(shard: str, input_index: Path, output_index: Path) -> str:
    """The name of the output shard written for input shard ``shard`` (module docstring),
    before :func:`shard_output_names` makes the names of all shards distinct."""
    in_stem, _ = split_name(input_index)
    out_stem, _ = split_name(output_index)
    if _has_stem(shard, in_stem):
        return out_stem + shard[len(in_stem) :]
    return f"{out_stem}-{shard}"


def _has_stem(shard: str, stem: str) -> bool:
    """Whether ``shard`` starts with ``stem`` as a word: followed by no letter or digit
    (``model-00001-of-00002`` of stem ``model``; not of stem ``m``, whose output shard was
    ``m.foldedodel-00001-of-00002``, t142)."""
    rest = shard[len(stem) :]
    return shard.startswith(stem) and not (rest[:1].isalnum())


def shard_output_names(shards: list[str], input_index: Path, output_index: Path) -> list[str]:
    """The output shard names for input shards ``shards`` (distinct names), one each, all
    distinct and, in the input's folder, none an input shard's name (writing it would destroy
    the input; in another folder, ``out/model-00001-of-00002.safetensors`` is kept). Each is
    :func:`shard_output_name` unless that is an input shard's name or another shard's too
    (shard ``x.safetensors`` and shard ``model-x.safetensors`` of
    ``model.safetensors.index.json`` both give ``<stem>-x.safetensors``); of shards sharing a
    name the one that starts with the input's stem keeps it (names with the stem replaced are
    distinct, as are names with the output stem put in front). Every other shard gets
    ``<output stem>-<n>-<shard>``, with the smallest ``n`` from 2 that is no shard's first
    name, no input shard's and no name given before. The names depend on the index alone, not
    on the files in the folder: folding again writes the same files."""
    out_stem, _ = split_name(output_index)
    in_stem, _ = split_name(input_index)
    first = [shard_output_name(shard, input_index, output_index) for shard in shards]
    counts = Counter(first)
    # one folder by identity, as the plan tells files (a bind mount of it too, t210)
    folder = identity_of(input_index.parent)
    same_folder = folder is not None and folder == identity_of(output_index.parent)
    inputs = set(shards) if same_folder else set()
    names: list[str | None] = [
        name if name not in inputs and (counts[name] == 1 or _has_stem(shard, in_stem)) else None
        for shard, name in zip(shards, first, strict=True)
    ]
    taken = set(first) | inputs
    for i, shard in enumerate(shards):
        if names[i] is not None:
            continue
        n = 2
        while f"{out_stem}-{n}-{shard}" in taken:
            n += 1
        names[i] = f"{out_stem}-{n}-{shard}"
        taken.add(f"{out_stem}-{n}-{shard}")
        logger.info(
            "shard %s: written as %s (%s is another output shard's or an input shard's)",
            shard,
            names[i],
            first[i],
        )
    assert None not in names and len(set(names)) == len(names) and not inputs & set(names)
    return [name for name in names if name is not None]
