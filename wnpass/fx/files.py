"""The files a model.py command reads besides the model: a checkpoint, a batch of inputs.

A checkpoint is read by the checkpoint commands' reader (:mod:`wnpass.checkpoint.reading`), with
its rules: a ``.safetensors`` file, a sharded index (``*.safetensors.index.json``,
``*.bin.index.json``) whose shards are plain files beside it, or a ``torch.save`` file (any
other name) loaded with ``weights_only=True``, so a pickle that would run code is refused. A
batch is read with ``weights_only=True`` too. Every way they can be wrong is a one-line
:class:`~wnpass.errors.InvalidArgumentError` naming the parameter (``checkpoint``, ``data``).
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wnpass.checkpoint.formats import is_sharded, read_format, refuse_unread
from wnpass.errors import InvalidArgumentError, InvalidModelError, one_line
from wnpass.interrupts import STOPS
from wnpass.plan import require_input
from wnpass.rules import parse_key

__all__ = ["checkpoint_files", "load_batch", "load_checkpoint", "refuse_unread_checkpoint"]

# Containers that training scripts wrap a state dict in; the state dict is taken from inside.
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "generator")


def _state_dict(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        if all(isinstance(v, torch.Tensor) for v in value.values()):
            return value
        for key in WRAPPER_KEYS:
            inner = _state_dict(value.get(key))
            if inner is not None:
                return inner
    return None


def _no_state_dict(value: Any) -> str:
    """Why ``value`` gives the model no state dict, and where one is looked for: at the top
    level (tensors by string keys) or under one of ``WRAPPER_KEYS``, the first found."""
    where = "at its top level or under " + ", ".join(WRAPPER_KEYS[:-1]) + f" or {WRAPPER_KEYS[-1]}"
    if isinstance(value, dict):
        keys = ", ".join(repr(k) for k in list(value)[:6]) + (", ..." if len(value) > 6 else "")
        return f"holds no state dict {where} (its keys: {keys or 'none'})"
    return f"not a state dict ({type(value).__name__}); one is read {where}"


def _torch_file(path: Path) -> bool:
    """Whether ``path`` is read as a ``torch.save`` file (every name but the other formats')."""
    return read_format(path) == "torch"


@contextlib.contextmanager
def _as_argument_error(parameter: str) -> Iterator[None]:
    """The reader's errors, as errors of ``parameter`` (the file it names)."""
    try:
        yield
    except InvalidModelError as error:
        raise InvalidArgumentError(error.detail, parameter=parameter) from None


def checkpoint_files(path: str | Path) -> list[Path]:
    """The files loading the checkpoint at ``path`` reads: the file, and an index's shards
    (checked, not opened), so that a command can plan them before it writes anything."""
    from wnpass.checkpoint.reading import read_index

    path = Path(path)
    if not is_sharded(read_format(path)) or not path.is_file():
        return [path]
    with _as_argument_error("checkpoint"):
        _, names = read_index(path)
    return [path, *(path.parent / name for name in names)]


def refuse_unread_checkpoint(path: Path) -> None:
    """Refuse as ``--checkpoint`` (``checkpoint``) a folder, with the file in it to give, or a
    torch.distributed.checkpoint's file, as the checkpoint commands refuse them (t305)."""
    try:
        refuse_unread(path, "checkpoint")
    except InvalidModelError as error:
        raise InvalidArgumentError(str(error), parameter="checkpoint") from None


def read_state_dict(path: Path, *, keep_objects: bool = False) -> dict[str, Any]:
    """The state dict a checkpoint holds (:func:`load_checkpoint`'s files), as stored."""
    from wnpass.arguments import require_flag
    from wnpass.checkpoint.reading import load_torch, open_checkpoint

    refuse_unread_checkpoint(path)
    require_input(path, "checkpoint")
    require_flag("keep_objects", keep_objects)
    with _as_argument_error("checkpoint"):
        if _torch_file(path):
            value = load_torch(path, set() if keep_objects else None, offered=True)
            state = _state_dict(value)
            if state is None:
                raise InvalidArgumentError(
                    f"{path}: {_no_state_dict(value)}", parameter="checkpoint"
                )
            return state
        checkpoint = open_checkpoint(path, keep_objects=keep_objects)
        state = {info.key: checkpoint.torch_tensor(info) for info in checkpoint.tensors()}
        checkpoint.close()
        return state


def load_checkpoint(
    model: nn.Module,
    path: str | Path,
    *,
    keep_pairs: bool = False,
    inputs: Any = None,
    keep_objects: bool = False,
    stored: dict[str, Any] | None = None,
) -> None:
    """Load a state dict in any weight-norm key form into ``model``: from a ``torch.save`` file
    (at its top level or under one of ``WRAPPER_KEYS``), a ``.safetensors`` file or a sharded
    index of either. A weight stored as a g/v pair that the model holds plain is folded into
    it as it is loaded (a pair of NaN or a zero-norm unit is refused); with ``keep_pairs``, it
    gets PyTorch's weight norm first instead (:func:`wnpass.fx.state.restore_weight_norm`), so
    that a command that folds the model's weight norm (export) folds, checks and reports it
    as the model's own; with example ``inputs`` too, a weight norm that a forward does not
    reach (the forward reads the old tensor some other way, or never computes the weight:
    :func:`wnpass.fx.reach.give_back_unreached`) is taken off again, its pair folded into the
    parameter as it is loaded. ``keep_objects``: a torch file's objects that torch's
    weights-only loader does not build (a Lightning checkpoint's hyper-parameters) are kept
    unbuilt (:mod:`wnpass.checkpoint.kept`), not refused; only the state dict is loaded. A
    state dict whose keys are not the model's is refused naming them, and the prefix that
    would make them the model's. ``stored``: given, it gets the state dict's weight-norm
    entries (each pair's g and v) as read, for a caller that puts them back once the model
    holds them as pairs (train-rewrite), without reading the file again."""
    from wnpass.fx.forward import as_batch, parameter_prints, written_parameters
    from wnpass.fx.reach import give_back_unreached
    from wnpass.fx.state import convert_state_dict, restore_weight_norm

    path = Path(path)
    state = read_state_dict(path, keep_objects=keep_objects)
    if stored is not None:
        stored.update((key, value) for key, value in state.items() if parse_key(key) is not None)
    converted: dict[str, Any] = state
    try:
        before = dict(model.named_parameters()) if keep_pairs else {}
        restored = restore_weight_norm(model, state) if keep_pairs else []
        converted = convert_state_dict(model, state)
        model.load_state_dict(converted)
        if restored and inputs is not None:
            originals = {name: before[name] for name in restored}
            prints = parameter_prints(model)
            given_back = give_back_unreached(model, as_batch(inputs), originals)
            # those pairs folded into their parameters; and the parameters that forward wrote
            # (an init on its first call) as the checkpoint holds them
            if given_back or written_parameters(model, prints):
                model.load_state_dict(convert_state_dict(model, state))
    except STOPS:
        raise
    except BaseException as error:  # the model's own load hooks too
        raise InvalidArgumentError(
            f"{path}: does not fit the model: "
            f"{_load_error(error, converted, model) or one_line(error)}",
            parameter="checkpoint",
        ) from None


# PyTorch's strict load_state_dict error: a first line, then one line per kind of misfit
_LOAD_ERROR = "Error(s) in loading state_dict for "
_KEYS = re.compile(r'"([^"]*)"')  # as torch quotes each key (one with a '"' is cut there)


def _same_shapes(state: dict[str, Any], model: nn.Module) -> Callable[[str, str], bool]:
    """Whether a key of ``state`` and one of ``model`` may be one tensor: False only where
    both have shapes (a weight-norm pair's weight: its ``v``'s) and these differ."""
    from wnpass.checkpoint.verify import shapes_by_weight

    ours, theirs = shapes_by_weight(state), shapes_by_weight(model.state_dict())

    def same(key: str, model_key: str) -> bool:
        return key not in ours or model_key not in theirs or ours[key] == theirs[model_key]

    return same


def _load_error(error: BaseException, state: dict[str, Any], model: nn.Module) -> str | None:
    """PyTorch's strict load error of ``state`` into ``model`` in a line: the keys on either
    side, a few of each, with the prefix that would make them fit
    (:func:`~wnpass.checkpoint.verify.keys_misfit`), then the first size mismatch (its
    message lists every key, cut short before those it did not expect, and named no prefix,
    t302). The lists are torch's, after the model's own load hooks renamed what they rename
    (t304); where a key holds a '"', which torch's list does not escape, they are the keys
    of ``state`` and of the model's state dict (t305). None for any other error."""
    from wnpass.checkpoint.verify import keys_misfit

    text = str(error) if isinstance(error, RuntimeError) else ""
    if not text.startswith(_LOAD_ERROR):
        return None
    unexpected: list[str] = []
    missing: list[str] = []
    sizes: list[str] = []
    for line in text.split("\n\t")[1:]:
        if line.startswith("Unexpected key(s) in state_dict: "):
            unexpected += _KEYS.findall(line)
        elif line.startswith("Missing key(s) in state_dict: "):
            missing += _KEYS.findall(line)
        elif line.startswith("size mismatch for "):
            sizes.append(line.strip().rstrip("."))
    model_keys = model.state_dict().keys()
    if any('"' in key for key in (*state, *model_keys)):  # torch's lists cannot be read
        unexpected = [key for key in state if key not in model_keys]
        missing = [key for key in model_keys if key not in state]
    shapes = _same_shapes(state, model)
    said = keys_misfit(unexpected, missing, shapes) if unexpected or missing else ""
    if sizes:
        more = f" (and {len(sizes) - 1} more)" if len(sizes) > 1 else ""
        said += ("; " if said else "") + sizes[0] + more
    return said or None


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"


def _numpy_problem(path: Path, error: Exception) -> str:
    """What is wrong with a file numpy refused, without numpy's advice to unpickle it (any
    file that is neither an array nor a zip is a pickle to numpy, and so is an object array):
    a batch is arrays of numbers, and a pickle runs code when loaded."""
    try:
        with path.open("rb") as file:
            head = file.read(len(_NPY_MAGIC))
    except OSError as reading:
        return one_line(reading)
    if not head.startswith((_NPY_MAGIC, _ZIP_MAGIC)):
        return "not a NumPy .npy or .npz file (neither NumPy's header nor a zip archive)"
    if "allow_pickle" in str(error):
        return (
            "holds Python objects (dtype=object): reading them would unpickle, which can run code"
        )
    return one_line(error)


def _in_order(path: Path, names: list[str]) -> list[str]:
    """The arrays of an ``.npz`` batch in the order of the positional inputs: the file's, where
    every one is saved by name; ``arr_0``, ``arr_1``, ... by number, where every one is saved
    by position. A file that mixes the two is refused: ``numpy.savez(f, x, y=y)`` stores the
    named ones first, so the order of its arguments is lost (t180: ``forward(x, y)`` ran on
    ``(y, x)``, exit 0)."""
    if twice := sorted(name for name, count in Counter(names).items() if count > 1):
        raise InvalidArgumentError(  # x.npy beside a raw x: numpy lists both as x (t184)
            f"{path}: holds more than one array named {', '.join(twice)}", parameter="data"
        )
    by_position = [name for name in names if re.fullmatch(r"arr_(?:0|[1-9][0-9]*)", name)]
    if not by_position:
        return names
    if len(by_position) < len(names):
        named = ", ".join(name for name in names if name not in by_position)
        raise InvalidArgumentError(
            f"{path}: mixes arrays saved by position ({', '.join(by_position)}) with arrays "
            f"saved by name ({named}), which numpy.savez stores first: the order of the inputs "
            "is lost; save them all by position (np.savez(f, x, y)) or all by name, in the "
            "forward's order",
            parameter="data",
        )
    return sorted(names, key=lambda name: int(name.removeprefix("arr_")))


def _member(path: Path, arrays: Any, name: str) -> Any:
    """Array ``name`` of an ``.npz`` batch; a member that is no ``.npy`` array is refused
    (numpy gives its bytes: a ``torch.save`` file is a zip archive too)."""
    value = arrays[name]
    if isinstance(value, bytes):
        raise InvalidArgumentError(
            f"{path}: cannot read a batch: member {name} of the zip archive is no .npy array "
            "(a torch.save file? name it .pt)",
            parameter="data",
        )
    return value


def load_batch(path: str | Path) -> tuple[Any, ...]:
    """A batch of inputs from ``.npz`` (arrays in order: :func:`_in_order`), ``.npy`` (one
    array) or a ``torch.save`` file (a tensor or tuple; any other name); either suffix in any
    case."""
    from wnpass.checkpoint.reading import load_torch
    from wnpass.fx.loading import EXPECTED_INPUTS, as_inputs

    path = Path(path)
    require_input(path, "data")
    suffix = path.suffix.lower()
    if suffix in (".npz", ".npy"):
        import numpy as np

        def native(array: np.ndarray) -> torch.Tensor:
            """The array as a tensor; one stored big-endian (``>f4``) in this machine's byte
            order first, which torch takes only."""
            if not array.dtype.isnative:
                array = array.astype(array.dtype.newbyteorder("="))
            return torch.from_numpy(array)

        try:
            loaded = np.load(path, allow_pickle=False)
            if isinstance(loaded, np.ndarray):  # a .npy file: one input
                return (native(loaded),)
            with loaded as arrays:
                return tuple(
                    native(_member(path, arrays, name)) for name in _in_order(path, arrays.files)
                )
        except InvalidArgumentError:
            raise
        except Exception as error:
            raise InvalidArgumentError(
                f"{path}: cannot read a batch: {_numpy_problem(path, error)}", parameter="data"
            ) from None
    with _as_argument_error("data"):
        value = load_torch(path)
    inputs = as_inputs(value)
    if inputs is None:
        what = type(value).__name__
        raise InvalidArgumentError(
            f"{path}: holds a {what}; expected {EXPECTED_INPUTS}", parameter="data"
        )
    return inputs
