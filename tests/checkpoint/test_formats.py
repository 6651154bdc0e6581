"""Checkpoint names: formats, default outputs, shard names."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from wnpass.checkpoint.formats import (
    check_output_name,
    default_output,
    detect_format,
    is_checkpoint_path,
    shard_output_name,
    shard_output_names,
)
from wnpass.errors import InvalidModelError, UsageError


@pytest.mark.parametrize(
    ("name", "fmt", "folded"),
    [
        ("g.pt", "torch", "g.folded.pt"),
        ("g_02500000.pth", "torch", "g_02500000.folded.pth"),
        ("model_best.pth.tar", "torch", "model_best.folded.pth.tar"),  # timm's train.py
        ("pytorch_model.bin", "torch", "pytorch_model.folded.bin"),
        ("last.ckpt", "torch", "last.folded.ckpt"),  # Lightning's and NeMo's trainers
        ("model.safetensors", "safetensors", "model.folded.safetensors"),
        (
            "model.safetensors.index.json",
            "safetensors-index",
            "model.folded.safetensors.index.json",
        ),
        ("pytorch_model.bin.index.json", "torch-index", "pytorch_model.folded.bin.index.json"),
        # a suffix in another case names the same format (it was read as ONNX), kept as written
        ("G.PT", "torch", "G.folded.PT"),
        ("M.SafeTensors", "safetensors", "M.folded.SafeTensors"),
        ("M.SAFETENSORS.INDEX.JSON", "safetensors-index", "M.folded.SAFETENSORS.INDEX.JSON"),
    ],
)
def test_formats_and_default_outputs(name: str, fmt: str, folded: str) -> None:
    assert is_checkpoint_path(name)
    assert detect_format(name) == fmt
    assert default_output(Path("d") / name, "folded") == Path("d") / folded


def test_shard_names_follow_the_output_stem() -> None:
    index, out = Path("model.safetensors.index.json"), Path("x/y.safetensors.index.json")
    assert shard_output_name("model-00001-of-00002.safetensors", index, out) == (
        "y-00001-of-00002.safetensors"
    )
    assert shard_output_name("weights.safetensors", index, out) == "y-weights.safetensors"
    # the stem as a word: index m's shard model-... was m.foldedodel-... (t142)
    short, folded = Path("m.safetensors.index.json"), Path("m.folded.safetensors.index.json")
    assert shard_output_name("model-00001-of-00002.safetensors", short, folded) == (
        "m.folded-model-00001-of-00002.safetensors"
    )
    assert shard_output_name("m_1.safetensors", short, folded) == "m.folded_1.safetensors"
    assert shard_output_name("m.safetensors", short, folded) == "m.folded.safetensors"


def test_other_names_are_refused() -> None:
    with pytest.raises(InvalidModelError, match="not a checkpoint name"):
        detect_format("config.index.json")
    with pytest.raises(UsageError, match=r"^output .*must end with \.safetensors"):
        check_output_name(Path("out.pt"), "safetensors")
    check_output_name(Path("out.pth"), "torch")
    check_output_name(Path("out.PTH"), "torch")


def test_shard_names_are_distinct_where_the_rule_gives_two_shards_one() -> None:
    """x.safetensors gets model.folded-x.safetensors, which model-x.safetensors gets too:
    the shard with the input's stem keeps it, the other gets a number."""
    index, out = Path("model.safetensors.index.json"), Path("model.folded.safetensors.index.json")
    names = ["x.safetensors", "model-x.safetensors", "y.safetensors", "model-2-x.safetensors"]
    assert shard_output_names(names, index, out) == [
        "model.folded-3-x.safetensors",  # -2- is model-2-x's
        "model.folded-x.safetensors",
        "model.folded-y.safetensors",
        "model.folded-2-x.safetensors",
    ]
    plain = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert shard_output_names(plain, index, out) == [
        shard_output_name(name, index, out) for name in plain
    ]


def test_no_output_shard_takes_an_input_shard_name() -> None:
    """The fallback name is not an input shard's: x's model.folded-2-x is shard 3's input
    name, so x gets -3-; a first name that is an input shard's (model-a's model.folded-a)
    falls back too; fallbacks chain past every taken number."""
    index, out = Path("model.safetensors.index.json"), Path("model.folded.safetensors.index.json")
    names = ["x.safetensors", "model-x.safetensors", "model.folded-2-x.safetensors"]
    assert shard_output_names(names, index, out) == [
        "model.folded-3-x.safetensors",
        "model.folded-x.safetensors",
        "model.folded.folded-2-x.safetensors",
    ]
    chained = [*names, "model.folded-3-x.safetensors", "model-4-x.safetensors"]
    assert shard_output_names(chained, index, out)[0] == "model.folded-5-x.safetensors"
    own = ["model-a.safetensors", "model.folded-a.safetensors"]
    assert shard_output_names(own, index, out) == [
        "model.folded-2-model-a.safetensors",
        "model.folded.folded-a.safetensors",
    ]


def test_in_another_folder_the_shards_keep_their_names(tmp_path: Path) -> None:
    """model.safetensors.index.json folded to out/model.safetensors.index.json wrote
    out/model-2-model-00001-of-00002.safetensors: an input shard's name was avoided in a
    folder that holds no input shard."""
    (tmp_path / "out").mkdir()
    index = tmp_path / "model.safetensors.index.json"
    plain = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert shard_output_names(plain, index, tmp_path / "out" / index.name) == plain
    assert shard_output_names(plain, index, tmp_path / "out" / ".." / index.name) == [
        "model-2-model-00001-of-00002.safetensors",
        "model-2-model-00002-of-00002.safetensors",
    ]


def test_the_input_s_folder_mounted_elsewhere_is_the_same_folder(tmp_path: Path) -> None:
    """A bind mount of the input's folder as -o's folder was another folder by its path: its
    shards' names were kept, and the plan then refused them as the input's (t210); told by
    identity, they are renamed as in the folder itself."""
    (tmp_path / "in").mkdir()
    (tmp_path / "bound").mkdir()
    mounted = subprocess.run(
        ["mount", "--bind", str(tmp_path / "in"), str(tmp_path / "bound")], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"a bind mount needs root: {mounted.stderr.decode().strip()}")
    try:
        index = tmp_path / "in" / "model.safetensors.index.json"
        plain = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        here = shard_output_names(plain, index, index)
        assert shard_output_names(plain, index, tmp_path / "bound" / index.name) == here
        assert not set(here) & set(plain)
    finally:
        subprocess.run(["umount", str(tmp_path / "bound")], check=True)


@pytest.mark.parametrize("mode", ["w", "w:gz"], ids=["tar", "gzipped tar"])
def test_a_nemo_file_says_to_extract_its_weights(tmp_path: Path, mode: str) -> None:
    """NeMo's ``.nemo`` is a tar (gzipped before NeMo 1.7) of the configuration and
    ``./model_weights.ckpt``: read as ONNX it was "Wire format was corrupt", convert said only
    that it is no checkpoint name, and ``--checkpoint`` gave torch's words of its legacy tar
    format (t290, t294)."""
    import tarfile

    from wnpass.checkpoint.reading import load_torch
    from wnpass.onnx import io

    (tmp_path / "model_weights.ckpt").write_bytes(b"weights")
    with tarfile.open(path := tmp_path / "m.nemo", mode) as archive:  # type: ignore[call-overload]
        archive.add(tmp_path / "model_weights.ckpt", "./model_weights.ckpt")
    hint = "NeMo's .nemo? extract it (tar xf X.nemo) and give the model_weights.ckpt it holds"
    kind = "a tar archive" if mode == "w" else "a gzip file"
    with pytest.raises(InvalidModelError) as error:
        io.load(path)
    assert str(error.value).endswith(f"; it is {kind}: {hint}")
    with pytest.raises(InvalidModelError) as error:
        load_torch(path)
    assert str(error.value) == f"{path}: not a readable torch.save file ({kind}: {hint})"
    with pytest.raises(InvalidModelError) as error:
        detect_format(path)
    assert str(error.value).endswith(
        "; a .nemo file is a tar archive: extract it (tar xf X.nemo) and give the "
        "model_weights.ckpt it holds"
    )
