"""``--checkpoint`` for the model.py commands: every format the checkpoint commands read, with
their rules, loaded into the model in either weight-norm key form."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.checkpoint.builders import Generator, generator, save_sharded
from wnpass.errors import InvalidArgumentError
from wnpass.fx.files import checkpoint_files, load_batch, load_checkpoint


def _plain(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: tensor.detach().clone().contiguous() for key, tensor in state.items()}


def _halves(state: dict[str, torch.Tensor]) -> list[list[str]]:
    keys = list(state)
    return [keys[: len(keys) // 2], keys[len(keys) // 2 :]]


def _torch(path: Path, value: object) -> Path:
    torch.save(value, path)
    return path


def _safetensors(path: Path, state: dict[str, torch.Tensor]) -> Path:
    save_file(state, str(path))
    return path


SAVERS: dict[str, Callable[[Path, dict[str, torch.Tensor]], Path]] = {
    "torch.save": lambda t, s: _torch(t / "g.pt", s),
    "torch.save, wrapped": lambda t, s: _torch(t / "g.pth", {"epoch": 3, "generator": s}),
    "safetensors": lambda t, s: _safetensors(t / "g.safetensors", s),
    "safetensors, sharded": lambda t, s: save_sharded(t, s, _halves(s)),
    "torch, sharded": lambda t, s: save_sharded(t, s, _halves(s), kind="torch"),
    # a suffix in another case names its format (W.SAFETENSORS was unpickled as torch.save's)
    "safetensors, upper case": lambda t, s: _safetensors(t / "G.SAFETENSORS", s),
    "torch.save, other name": lambda t, s: _torch(t / "g.ckpt", s),
}


@pytest.mark.parametrize("saver", SAVERS)
@pytest.mark.parametrize("api", ["parametrize", "legacy"])
def test_every_checkpoint_format_loads_into_a_parametrized_model(
    tmp_path: Path, saver: str, api: str
) -> None:
    """The keys of either weight-norm API, from any format, give the source's weights."""
    source = generator(api, seed=1)
    path = SAVERS[saver](tmp_path, _plain(source.state_dict()))
    target = generator("parametrize", seed=2)
    load_checkpoint(target, path)
    x = torch.randn(1, 8, 16)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=1e-6)


def test_an_index_names_its_shards_for_the_plan(tmp_path: Path) -> None:
    state = _plain(generator().state_dict())
    index = save_sharded(tmp_path, state, _halves(state))
    shards = [tmp_path / f"model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    assert checkpoint_files(index) == [index, *shards]
    assert checkpoint_files(tmp_path / "g.pt") == [tmp_path / "g.pt"]
    upper = index.rename(tmp_path / "MODEL.SAFETENSORS.INDEX.JSON")  # its shards are planned
    assert checkpoint_files(upper) == [upper, *shards]


def test_a_shard_outside_the_folder_is_refused_as_the_checkpoint(tmp_path: Path) -> None:
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "../elsewhere.safetensors"}}))
    for read in (checkpoint_files, lambda p: load_checkpoint(Generator(), p)):
        with pytest.raises(InvalidArgumentError) as raised:
            read(index)
        assert raised.value.parameter == "checkpoint"
        assert "a path: an index names each shard by its file name alone" in str(raised.value)


def test_a_safetensors_file_that_does_not_fit_names_the_checkpoint(tmp_path: Path) -> None:
    path = _safetensors(tmp_path / "g.safetensors", {"w": torch.zeros(2)})
    with pytest.raises(InvalidArgumentError, match="does not fit the model") as raised:
        load_checkpoint(Generator(), path)
    assert raised.value.parameter == "checkpoint"


@pytest.mark.parametrize(
    ("rename", "hint"),
    [
        (lambda key: "module." + key, "in the checkpoint under the prefix 'module.'"),
        (lambda key: "model.net." + key, "in the checkpoint under the prefix 'model.net.'"),
        (lambda key: key.removeprefix("inner."), "under the prefix 'inner.', which the chec"),
    ],
    ids=["DDP", "a LightningModule's attribute", "a model.py that wraps the network"],
)
def test_a_state_dict_under_a_prefix_names_its_keys_and_the_prefix(
    tmp_path: Path, rename: Callable[[str], str], hint: str
) -> None:
    """A DDP model's state dict was refused in torch's words, cut short before the keys it
    did not expect, and with no prefix named (t302): the keys on either side are named, so is
    the prefix that would fit, as the checkpoint commands' --model names it."""
    wrapper = torch.nn.Module()
    wrapper.inner = generator()
    state = {rename(key): value for key, value in _plain(wrapper.state_dict()).items()}
    with pytest.raises(InvalidArgumentError) as raised:
        load_checkpoint(wrapper, _torch(tmp_path / "g.pt", state))
    said = str(raised.value)
    assert raised.value.parameter == "checkpoint"
    assert "does not fit the model: keys the model does not have: " in said
    assert "; keys the model has and the file lacks: " in said and " more" in said
    assert hint in said


def test_a_prefix_is_found_among_many_networks_and_only_where_shapes_fit(tmp_path: Path) -> None:
    """A GAN's state dict of eight discriminators beside the generator named no prefix (eight
    candidates were tried, t305); a weight-norm pair's weight had no shape, so a prefix was
    named for a layer of another kernel size (t305); a key with a '"' was read from torch's
    list, which does not escape it, as keys that do not exist (t305)."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    state = _plain(net.state_dict())
    wide = {key: torch.cat([value, value]) for key, value in state.items()}  # other shapes
    gan = {f"discriminator.d{i}.{key}": value for i in range(8) for key, value in wide.items()}
    gan |= {f"generator.{key}": value for key, value in state.items()}
    with pytest.raises(InvalidArgumentError) as raised:
        load_checkpoint(net, _torch(tmp_path / "gan.pt", gan))
    assert "under the prefix 'generator.'" in str(raised.value)
    both = {f"{side}.{key}": value for side in ("d", "g") for key, value in state.items()}
    with pytest.raises(InvalidArgumentError) as raised:  # either fits: which is meant, unknown
        load_checkpoint(net, _torch(tmp_path / "dg.pt", both))
    assert "under the prefix" not in str(raised.value)
    conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(4, 4, 3))
    other = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(4, 4, 5))
    ddp = {f"module.{key}": value for key, value in _plain(other.state_dict()).items()}
    with pytest.raises(InvalidArgumentError) as raised:
        load_checkpoint(conv, _torch(tmp_path / "k5.pt", ddp))
    assert "keys the model does not have" in str(raised.value)
    assert "under the prefix" not in str(raised.value)  # kernel 5 in the file, 3 in the model
    quoted = torch.nn.ModuleDict({'a"b': torch.nn.Linear(2, 2)})
    prefixed = {"x." + key: value for key, value in quoted.state_dict().items()}
    with pytest.raises(InvalidArgumentError) as raised:
        load_checkpoint(quoted, _torch(tmp_path / "q.pt", prefixed))
    said = str(raised.value)
    assert 'keys the model does not have: x.a"b.bias, x.a"b.weight;' in said
    assert "under the prefix 'x.'" in said


def test_a_folder_or_a_distributed_checkpoint_file_is_refused_as_checkpoint(
    tmp_path: Path,
) -> None:
    """--checkpoint of a folder said "is a directory, not a regular file", and a
    torch.distributed.checkpoint's file was read as a torch file (t305): as fold says them."""
    (folder := tmp_path / "step").mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    (dcp := tmp_path / "dcp").mkdir()
    (dcp / ".metadata").write_bytes(b"\x80\x02}q\x00.")
    (dcp / "__0_0.distcp").write_bytes(b"PK")
    for path, said in (
        (folder, f"is a directory, not a checkpoint (name its checkpoint, as {folder}/model."),
        (dcp, "is a directory, not a checkpoint (it is in torch.distributed.checkpoint's"),
        (dcp / "__0_0.distcp", "a file of a folder in torch.distributed.checkpoint's format"),
    ):
        with pytest.raises(InvalidArgumentError) as raised:
            load_checkpoint(generator(), path)
        assert raised.value.parameter == "checkpoint" and said in str(raised.value)


class _Renamed(torch.nn.Module):
    """A model whose own load hook renames an older key (``old.*`` to ``lin.*``)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(5, 4)
        self._register_load_state_dict_pre_hook(self._rename)

    @staticmethod
    def _rename(state: dict[str, torch.Tensor], prefix: str, *_: object) -> None:
        for key in [key for key in state if key.startswith(prefix + "old.")]:
            state[prefix + "lin." + key[len(prefix + "old.") :]] = state.pop(key)


def test_a_load_error_is_said_after_the_models_own_hooks(tmp_path: Path) -> None:
    """A model whose load hook renames older keys, given such a file with a weight of another
    size, was said to lack its keys (compared before its hook ran): the size is the error
    (t304); and a file under a prefix whose shapes are not the model's names no prefix."""
    state = {"old.weight": torch.zeros(6, 5), "old.bias": torch.zeros(6)}
    with pytest.raises(InvalidArgumentError) as raised:
        load_checkpoint(_Renamed(), _torch(tmp_path / "old.pt", state))
    said = str(raised.value)
    assert "does not fit the model: size mismatch for lin.weight: copying a param" in said
    assert "(and 1 more)" in said and "keys the model" not in said
    other = {"module.lin.weight": torch.zeros(6, 5), "module.lin.bias": torch.zeros(6)}
    with pytest.raises(InvalidArgumentError) as raised:
        load_checkpoint(_Renamed(), _torch(tmp_path / "ddp.pt", other))
    assert "keys the model does not have: module.lin.bias" in str(raised.value)
    assert "prefix" not in str(raised.value)  # module.: the keys, not the shapes, fit


def test_a_batch_that_is_no_tensor_or_tuple_says_what_it_holds(tmp_path: Path) -> None:
    """A dict is refused as such (it was "cannot read a batch", though it was read)."""
    path = _torch(tmp_path / "batch.pt", {"x": torch.ones(2, 3)})
    with pytest.raises(InvalidArgumentError) as raised:
        load_batch(path)
    assert raised.value.parameter == "data"
    assert str(raised.value) == (
        f"data {path}: holds a dict; expected a tensor or a tuple of tensors "
        "(forward's positional inputs)"
    )
    assert load_batch(_torch(tmp_path / "one.pt", torch.ones(2, 3)))[0].shape == (2, 3)


def test_a_batch_path_that_is_no_regular_file_says_what_it_is(tmp_path: Path) -> None:
    """A FIFO or a folder was "no such file", though it exists; a FIFO is not opened."""
    fifo = tmp_path / "batch.pt"
    os.mkfifo(fifo)
    for path, what in ((fifo, "a FIFO"), (tmp_path, "a directory")):
        with pytest.raises(InvalidArgumentError) as raised:
            load_batch(path)
        assert str(raised.value) == f"data {path}: is {what}, not a regular file"


def test_a_batch_that_is_no_torch_file_gets_no_advice_to_unpickle_it(tmp_path: Path) -> None:
    """torch.load's message advised ``weights_only=False``, which would run the file's code."""
    path = tmp_path / "batch.pt"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(InvalidArgumentError) as raised:
        load_batch(path)
    assert str(raised.value).startswith(f"data {path}: not a readable torch.save file")
    assert "weights_only=False" not in str(raised.value)


def test_npz_and_npy_batches_are_read_whatever_the_suffix_case(tmp_path: Path) -> None:
    x, y = np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((2, 1), dtype=np.float32)
    with open(tmp_path / "BATCH.NPZ", "wb") as file:  # a path would get ".npz" added
        np.savez(file, x=x, y=y)
    np.save(tmp_path / "one.npy", x)
    both = load_batch(tmp_path / "BATCH.NPZ")
    assert [t.tolist() for t in both] == [x.tolist(), y.tolist()]
    (one,) = load_batch(tmp_path / "one.npy")
    assert one.tolist() == x.tolist()


def test_an_npz_batch_is_in_the_order_of_the_positional_inputs(tmp_path: Path) -> None:
    """t180: ``np.savez(f, x, y=y)`` stores ``y`` first, and forward(x, y) ran on (y, x),
    exit 0. Arrays saved by position go by number, those saved by name in the file's order,
    and a file mixing the two is refused, as is one holding two arrays of a name (t184)."""
    import zipfile

    arrays = [np.full((2, 3), k, dtype=np.float32) for k in range(12)]
    with zipfile.ZipFile(tmp_path / "shuffled.npz", "w") as archive:  # arr_10 before arr_2
        for k in (0, 1, 10, 11, *range(2, 10)):
            with archive.open(f"arr_{k}.npy", "w") as member:
                np.lib.format.write_array(member, arrays[k])
    batch = load_batch(tmp_path / "shuffled.npz")
    assert [int(t[0, 0]) for t in batch] == list(range(12))
    np.savez(tmp_path / "named.npz", y=arrays[1], x=arrays[0])
    assert [int(t[0, 0]) for t in load_batch(tmp_path / "named.npz")] == [1, 0]
    with zipfile.ZipFile(tmp_path / "twice.npz", "w") as archive:  # listed as arr_0 twice
        for name in ("arr_0.npy", "arr_0"):
            with archive.open(name, "w") as stream:
                np.lib.format.write_array(stream, arrays[0])
    with pytest.raises(InvalidArgumentError, match=r"holds more than one array named arr_0$"):
        load_batch(tmp_path / "twice.npz")
    mixed = tmp_path / "mixed.npz"
    np.savez(mixed, arrays[0], y=arrays[1])
    with pytest.raises(InvalidArgumentError) as raised:
        load_batch(mixed)
    assert str(raised.value) == (
        f"data {mixed}: mixes arrays saved by position (arr_0) with arrays saved by name (y), "
        "which numpy.savez stores first: the order of the inputs is lost; save them all by "
        "position (np.savez(f, x, y)) or all by name, in the forward's order"
    )


def test_a_torch_file_named_npy_is_said_to_be_one(tmp_path: Path) -> None:
    """t180: it read "cannot read a batch: 'bytes' object has no attribute 'dtype'"."""
    path = tmp_path / "batch.npy"
    torch.save(torch.ones(2, 3), path)
    with pytest.raises(InvalidArgumentError) as raised:
        load_batch(path)
    assert str(raised.value).startswith(f"data {path}: cannot read a batch: member ")
    assert str(raised.value).endswith(
        " of the zip archive is no .npy array (a torch.save file? name it .pt)"
    )


def test_a_big_endian_numpy_batch_is_read_with_its_values(tmp_path: Path) -> None:
    """A ``>f4`` array (saved on a big-endian machine, or by a tool that writes them) was
    refused with torch's message about byte orders (t125)."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "be.npy", x.astype(">f4"))
    np.savez(tmp_path / "be.npz", x=x.astype(">f4"), n=np.arange(2, dtype=">i8"))
    (one,) = load_batch(tmp_path / "be.npy")
    assert one.dtype == torch.float32 and one.tolist() == x.tolist()
    first, second = load_batch(tmp_path / "be.npz")
    assert (
        first.tolist() == x.tolist() and second.dtype == torch.int64 and second.tolist() == [0, 1]
    )


_NOT_NUMPY = "not a NumPy .npy or .npz file (neither NumPy's header nor a zip archive)"
_OBJECTS = "holds Python objects (dtype=object): reading them would unpickle, which can run code"


@pytest.mark.parametrize(
    ("name", "write", "problem"),
    [
        ("junk.npy", lambda p: p.write_bytes(b"not numpy"), _NOT_NUMPY),
        ("junk.npz", lambda p: p.write_bytes(b""), _NOT_NUMPY),
        (
            "objects.npy",
            lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
            _OBJECTS,
        ),
        ("objects.npz", lambda p: np.savez(p, x=np.array([{"a": 1}], dtype=object)), _OBJECTS),
    ],
)
def test_a_numpy_batch_that_is_no_arrays_of_numbers_is_refused_without_advice_to_unpickle(
    tmp_path: Path, name: str, write: Callable[[Path], object], problem: str
) -> None:
    """numpy's message advised `allow_pickle=` (it reads any file without its header as a
    pickle): a batch is numbers, and loading a pickle can run code."""
    path = tmp_path / name
    write(path)
    with pytest.raises(InvalidArgumentError) as raised:
        load_batch(path)
    assert str(raised.value) == f"data {path}: cannot read a batch: {problem}"
