"""Sharded checkpoints: shard by shard out, a valid index, pairs split across shards."""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from tests.checkpoint.builders import (
    WEIGHTS,
    expected_weight,
    hashes,
    save_sharded,
    state_dict,
)
from tests.checkpoint.builders import tensor_bytes as raw
from wnpass.checkpoint import convert_checkpoint, fold_checkpoint, inspect_checkpoint

SHARDS = [  # res.weight's g in the first shard, its v in the second
    ["conv_pre.bias", "conv_pre.weight_g", "conv_pre.weight_v", "res.weight_g"],
    ["ups.0.bias", "ups.0.weight_g", "ups.0.weight_v", "res.bias", "res.weight_v"],
    ["plain.weight", "plain.bias", "pos_conv.bias", "pos_conv.weight_g", "pos_conv.weight_v"],
    ["conv_post.bias", "conv_post.weight_g", "conv_post.weight_v"],
]


def _load(index: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    data = json.loads(index.read_text())
    tensors: dict[str, torch.Tensor] = {}
    for shard in dict.fromkeys(data["weight_map"].values()):
        path = index.parent / shard
        part = (
            load_file(str(path))
            if shard.endswith(".safetensors")
            else torch.load(path, weights_only=True)
        )
        for key, tensor in part.items():
            assert data["weight_map"][key] == shard  # the index says where each tensor is
            tensors[key] = tensor
    assert set(tensors) == set(data["weight_map"])
    return data, tensors


def test_a_sharded_folds_parameter_count_loses_the_folded_gains(tmp_path: Path) -> None:
    """transformers' index metadata counts the parameters (``total_parameters``): the folded
    index counts what its shards hold (each g folded away), as its total_size does; a
    renaming changes no count."""
    state = state_dict("legacy")
    index = save_sharded(tmp_path, state, SHARDS)
    data = json.loads(index.read_text())
    data["metadata"]["total_parameters"] = sum(t.numel() for t in state.values())
    index.write_text(json.dumps(data))
    assert fold_checkpoint(index) and convert_checkpoint(index, to="parametrize")
    for name in ("model.folded.safetensors.index.json", "model.parametrize.safetensors.index.json"):
        written, tensors = _load(tmp_path / name)
        assert written["metadata"]["total_parameters"] == sum(t.numel() for t in tensors.values())
    # a count below the gains folded away counts no such tensors: left as it was (it went
    # negative, t142)
    data["metadata"]["total_parameters"] = 2
    index.write_text(json.dumps(data))
    assert fold_checkpoint(index, tmp_path / "small.safetensors.index.json")
    written, _ = _load(tmp_path / "small.safetensors.index.json")
    assert written["metadata"]["total_parameters"] == 2


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_sharded_fold(tmp_path: Path, kind: str) -> None:
    state = state_dict("legacy")
    index = save_sharded(tmp_path, state, SHARDS, kind=kind)
    report = fold_checkpoint(index)
    assert report and report.count("folded") == 5
    suffix = ".safetensors" if kind == "safetensors" else ".bin"
    out = tmp_path / f"model.folded{suffix}.index.json"
    assert report.output == str(out)
    assert [Path(s).name for s in report.shards] == [
        f"model.folded-{i:05d}-of-00004{suffix}" for i in range(1, 5)
    ]
    data, tensors = _load(out)
    for name, dim in WEIGHTS.items():
        g, v = state[f"{name}_g"], state[f"{name}_v"]
        assert torch.equal(tensors[name], expected_weight(g, v, dim))
    assert data["weight_map"]["res.weight"] == f"model.folded-00001-of-00004{suffix}"
    expected_order = []
    for key in state:
        name = key[:-2] if key[:-2] in WEIGHTS else key
        if name not in expected_order:
            expected_order.append(name)
    assert list(data["weight_map"]) == expected_order
    assert data["metadata"]["total_size"] == sum(
        t.numel() * t.element_size() for t in tensors.values()
    )
    for key, tensor in tensors.items():
        if key not in WEIGHTS:
            assert raw(tensor) == raw(state[key])
    if kind == "safetensors":
        with safe_open(str(tmp_path / report.shards[0]), "pt") as handle:
            assert handle.metadata() == {"format": "pt"}
    if kind == "bin":  # the order inside a torch shard is kept
        part = torch.load(report.shards[1], weights_only=True)
        assert list(part) == ["ups.0.bias", "ups.0.weight", "res.bias"]


def test_torch_shards_keep_their_ordered_dict_and_metadata(tmp_path: Path) -> None:
    """Shards cut from a module's state_dict() are OrderedDicts with _metadata (what
    load_state_dict reads its version numbers from): each output shard keeps its own, as a
    single torch file does."""
    state = nn.Sequential(weight_norm(nn.Linear(3, 4)), nn.Linear(4, 2)).state_dict()
    keys = list(state)
    shards = [copy.copy(state), copy.copy(state)]  # the OrderedDict and its _metadata
    for shard, kept in zip(shards, (keys[:3], keys[3:]), strict=True):
        for key in set(keys) - set(kept):
            del shard[key]
    weight_map = {}
    for i, shard in enumerate(shards):
        torch.save(shard, tmp_path / f"pytorch_model-{i + 1}.bin")
        weight_map.update(dict.fromkeys(shard, f"pytorch_model-{i + 1}.bin"))
    index = tmp_path / "pytorch_model.bin.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    report = fold_checkpoint(index)
    assert report.count("folded") == 1
    for shard, written in zip(shards, report.shards, strict=True):
        out = torch.load(written, weights_only=True)
        assert type(out) is OrderedDict
        assert out._metadata == shard._metadata  # type: ignore[attr-defined]


def test_sharded_output_elsewhere_with_another_stem(tmp_path: Path) -> None:
    index = save_sharded(tmp_path, state_dict("parametrize"), [list(state_dict())], stem="model")
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "plain.safetensors.index.json"
    report = fold_checkpoint(index, target)
    assert [Path(s).name for s in report.shards] == ["plain-00001-of-00001.safetensors"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "plain-00001-of-00001.safetensors",
        "plain.safetensors.index.json",
    ]


def test_sharded_convert_round_trip_is_byte_identical(tmp_path: Path) -> None:
    state = state_dict("legacy")
    index = save_sharded(tmp_path, state, SHARDS)
    convert_checkpoint(index, "parametrize")
    there = tmp_path / "model.parametrize.safetensors.index.json"
    convert_checkpoint(there, "legacy", tmp_path / "back.safetensors.index.json")
    _, back = _load(tmp_path / "back.safetensors.index.json")
    assert {k: raw(t) for k, t in back.items()} == {k: raw(t) for k, t in state.items()}
    data, _ = _load(there)
    assert "res.parametrizations.weight.original0" in data["weight_map"]


@pytest.mark.parametrize(
    ("shards", "written"),
    [
        (["model-x", "x"], ["model.folded-x", "model.folded-2-x"]),
        # -2-x is an input shard's name: x's output would overwrite it
        (
            ["x", "model-x", "model.folded-2-x"],
            ["model.folded-3-x", "model.folded-x", "model.folded.folded-2-x"],
        ),
    ],
)
def test_shards_whose_output_names_would_collide_are_folded_apart(
    tmp_path: Path, shards: list[str], written: list[str]
) -> None:
    """model-x.safetensors and x.safetensors both map to model.folded-x.safetensors by the
    plain rule: the fold writes distinct shards, none over an input shard, instead of
    refusing a valid checkpoint; folding again writes the same files."""
    state = state_dict("legacy")
    keys = list(state)
    weight_map = {key: f"{shards[i % len(shards)]}.safetensors" for i, key in enumerate(keys)}
    for shard in shards:
        part = {k: state[k] for k in keys if weight_map[k] == f"{shard}.safetensors"}
        save_file(part, str(tmp_path / f"{shard}.safetensors"))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    before = hashes(tmp_path)
    report = fold_checkpoint(index)
    assert report and [Path(s).name for s in report.shards] == [f"{n}.safetensors" for n in written]
    assert {name: digest for name, digest in hashes(tmp_path).items() if name in before} == before
    _, tensors = _load(tmp_path / "model.folded.safetensors.index.json")
    for name, dim in WEIGHTS.items():
        g, v = state[f"{name}_g"], state[f"{name}_v"]
        assert torch.equal(tensors[name], expected_weight(g, v, dim))
    files = sorted(path.name for path in tmp_path.iterdir())
    assert fold_checkpoint(index) and sorted(path.name for path in tmp_path.iterdir()) == files


def test_a_deep_and_a_shared_state_dict_are_folded_and_stay_shared(tmp_path: Path) -> None:
    """A pair 9 dicts deep beside a top-level pair was left in the output while the report
    said 1 of 1 folded; a dict held under two names is folded once and stays one dict."""
    deep = {"a.weight_g": torch.rand(3, 1) + 0.5, "a.weight_v": torch.randn(3, 4)}
    shared = {"b.weight_g": torch.rand(2, 1) + 0.5, "b.weight_v": torch.randn(2, 2)}
    nested: dict[str, object] = dict(deep)
    for _ in range(9):
        nested = {"w": nested}
    state = {**nested, "top.weight_g": torch.rand(2, 1) + 0.5, "top.weight_v": torch.randn(2, 2)}
    state.update(model=shared, ema=shared)
    torch.save(state, tmp_path / "d.pt")
    report = fold_checkpoint(tmp_path / "d.pt")
    assert sorted((p.group or "", p.weight, p.status) for p in report.pairs) == [
        ("", "top.weight", "folded"),
        ("model", "b.weight", "folded"),
        ("/".join(["w"] * 9), "a.weight", "folded"),
    ]
    out = torch.load(tmp_path / "d.folded.pt", weights_only=True)
    inner = out
    for _ in range(9):
        inner = inner["w"]
    assert list(inner) == ["a.weight"]
    assert out["model"] is out["ema"] and list(out["model"]) == ["b.weight"]
    assert not [p for p in inspect_checkpoint(tmp_path / "d.folded.pt").pairs]


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_pairs_split_across_shards_open_each_shard_a_bounded_number_of_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """t44: after each pair split across two shards, the other shard was released and the next
    pair opened it again, its header parsed (or its pickle loaded) once per pair: 1250 split
    pairs took 32 s where 1250 unsplit ones took 0.5 s. Each shard is now opened a number of
    times that does not grow with the pairs (here: when listed, when checked, when written,
    and once as the other shard of the other's pairs), both directions of split folded."""
    from wnpass.checkpoint import reading

    torch.manual_seed(0)
    count = 16
    state: dict[str, torch.Tensor] = {}
    for i in range(count):  # every g in shard 1, every v in shard 2; the index lists g first
        v = torch.randn(4, 3)  # for even i (folded into shard 1), v first for odd i (shard 2)
        g = v.norm(dim=1, keepdim=True) * (1 + i)
        halves = {f"l{i}.weight_g": g, f"l{i}.weight_v": v}
        state.update(halves if i % 2 == 0 else dict(reversed(halves.items())))
    shards = [[key for key in state if key.endswith(end)] for end in ("_g", "_v")]
    index = save_sharded(tmp_path, state, shards, kind=kind)
    opener = "_safe_open" if kind == "safetensors" else "load_torch"
    opened: list[str] = []
    read = getattr(reading, opener)

    def counted(path: Path, *args: Any, **kwargs: Any) -> object:
        opened.append(path.name)
        return read(path, *args, **kwargs)

    monkeypatch.setattr(reading, opener, counted)
    assert inspect_checkpoint(index).count("foldable") == count
    assert len(opened) == 4  # listed, then checked: each shard twice
    opened.clear()
    report = fold_checkpoint(index)
    assert report.count("folded") == count
    assert len(opened) == 8, opened  # listed, checked, written, and as the other's other
    suffix = ".safetensors" if kind == "safetensors" else ".bin"
    data, tensors = _load(tmp_path / f"model.folded{suffix}.index.json")
    for i in range(count):
        name = f"l{i}.weight"
        g, v = state[f"{name}_g"], state[f"{name}_v"]
        assert torch.equal(tensors[name], expected_weight(g, v, 0))
        assert data["weight_map"][name] == f"model.folded-0000{1 + i % 2}-of-00002{suffix}"


def _tied_bin_index(folder: Path, total_size: object) -> tuple[Path, dict[str, torch.Tensor]]:
    """A torch index whose ``head.weight`` is ``emb.weight`` (tied, one storage in one shard)
    and a legacy pair, with ``total_size`` as given (huggingface_hub's counts the tied storage
    once)."""
    torch.manual_seed(3)
    emb = torch.randn(32, 8)
    v = torch.randn(4, 3)
    first = {"emb.weight": emb, "head.weight": emb}
    second = {"conv.weight_g": v.norm(dim=1, keepdim=True) * 2, "conv.weight_v": v}
    torch.save(first, folder / "pytorch_model-1.bin")
    torch.save(second, folder / "pytorch_model-2.bin")
    weight_map = {
        **dict.fromkeys(first, "pytorch_model-1.bin"),
        **dict.fromkeys(second, "pytorch_model-2.bin"),
    }
    index = folder / "pytorch_model.bin.index.json"
    data = {"metadata": {"total_size": total_size, "format": "pt"}, "weight_map": weight_map}
    index.write_text(json.dumps(data))
    return index, {**first, **second}


def test_an_index_keeps_its_total_size_less_the_gains_folded_away(tmp_path: Path) -> None:
    """t44: huggingface_hub counts a tied tensor once (1024 + 48 + 16 bytes here); convert,
    which changes no byte, wrote the sum over the keys (2112), and fold counted the tied
    tensor twice as well. The size is the input's, less the bytes of each g folded away."""
    once = 32 * 8 * 4 + 4 * 3 * 4 + 4 * 4
    index, _ = _tied_bin_index(tmp_path, once)
    assert convert_checkpoint(index, to="parametrize").count("converted") == 1
    assert fold_checkpoint(index).count("folded") == 1
    for name, size in (("parametrize", once), ("folded", once - 4 * 4)):
        written = json.loads((tmp_path / f"pytorch_model.{name}.bin.index.json").read_text())
        assert written["metadata"] == {"total_size": size, "format": "pt"}


@pytest.mark.parametrize("total_size", [None, "2112", True, 10])
def test_an_index_without_a_count_of_bytes_gets_the_bytes_written(
    tmp_path: Path, total_size: object
) -> None:
    """A total_size that is no count of bytes (none, a string, a bool, fewer bytes than the
    gains folded away) is the sum of the tensors written, as before."""
    index, _ = _tied_bin_index(tmp_path, total_size)
    assert fold_checkpoint(index)
    written = json.loads((tmp_path / "pytorch_model.folded.bin.index.json").read_text())
    assert written["metadata"]["total_size"] == 2 * 32 * 8 * 4 + 4 * 3 * 4
