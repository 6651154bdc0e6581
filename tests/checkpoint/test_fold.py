"""fold_checkpoint: each pair becomes its plain weight (float64, rounded once), everything else
is the input's, byte for byte, in the same order, in the input's format."""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import parametrizations
from torch.nn.utils.parametrize import remove_parametrizations

from tests.checkpoint.builders import (
    ULPS,
    WEIGHTS,
    expected_weight,
    generator,
    load_any,
    save_any,
    state_dict,
    tensor_bytes,
)
from wnpass.checkpoint import fold_checkpoint, inspect_checkpoint
from wnpass.checkpoint.fold import check_pair, fold_pair, values_reason
from wnpass.checkpoint.tensorfile import DTYPE_CODES, write
from wnpass.rules import pair_keys, parse_key, weight_from


def _pairs(state: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        if (parsed := parse_key(key)) is not None:
            pairs.setdefault(parsed[0].weight, {})[parsed[1]] = tensor
    return {name: (p["g"], p["v"]) for name, p in pairs.items()}


def _assert_folded(state: dict[str, torch.Tensor], folded: dict[str, torch.Tensor]) -> None:
    """Folded weights equal the float64 reference exactly; other tensors are byte-identical;
    the order is the input's with each weight where its pair's first key was."""
    pairs = _pairs(state)
    assert set(pairs) == set(WEIGHTS)
    for name, (g, v) in pairs.items():
        assert folded[name].dtype == v.dtype and folded[name].shape == v.shape
        assert torch.equal(folded[name], expected_weight(g, v, WEIGHTS[name])), name
    order = []
    for key in state:
        parsed = parse_key(key)
        name = parsed[0].weight if parsed else key
        if name not in order:
            order.append(name)
    assert list(folded) == order
    for key in folded:
        if key not in pairs:
            assert tensor_bytes(folded[key]) == tensor_bytes(state[key]), key


@pytest.mark.parametrize("api", ["parametrize", "legacy"])
def test_torch_state_dict_both_apis(tmp_path: Path, api: str) -> None:
    state = state_dict(api)
    torch.save(state, tmp_path / "g.pt")
    report = fold_checkpoint(tmp_path / "g.pt")
    assert report and report.count("folded") == 5 and report.output == str(tmp_path / "g.folded.pt")
    assert {p.weight: p.dim for p in report.pairs} == WEIGHTS
    assert [p.whole_tensor for p in report.pairs] == [False] * 4 + [True]
    assert report.tensors_before == 17 and report.tensors_after == 12
    _assert_folded(state, torch.load(tmp_path / "g.folded.pt", weights_only=True))


def test_equals_pytorchs_own_removal_within_ulps(tmp_path: Path) -> None:
    """remove_parametrizations computes in float32: a few ulps from the rounded-once weight."""
    model = generator("parametrize")
    torch.save(model.state_dict(), tmp_path / "g.pt")
    fold_checkpoint(tmp_path / "g.pt")
    folded = torch.load(tmp_path / "g.folded.pt", weights_only=True)
    for name in WEIGHTS:
        module = model.get_submodule(name.rpartition(".")[0])
        remove_parametrizations(module, "weight")
    eps = torch.finfo(torch.float32).eps
    for key, tensor in model.state_dict().items():
        torch.testing.assert_close(folded[key], tensor, rtol=ULPS * eps, atol=0.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_high_precision_keep_their_dtype(tmp_path: Path, dtype: torch.dtype) -> None:
    state = state_dict("parametrize", dtype)
    save_file(state, str(tmp_path / "g.safetensors"))
    assert fold_checkpoint(tmp_path / "g.safetensors")
    folded = load_file(str(tmp_path / "g.folded.safetensors"))
    pairs = _pairs(state)
    for name, (g, v) in pairs.items():
        assert folded[name].dtype == dtype
        reference = expected_weight(g, v, WEIGHTS[name])
        if dtype == torch.float64:  # no rounding to absorb two float64 summation orders
            eps64 = torch.finfo(dtype).eps
            torch.testing.assert_close(folded[name], reference, rtol=ULPS * eps64, atol=0.0)
        else:
            assert torch.equal(folded[name], reference)
        # PyTorch computing in the dtype itself: within a few of the dtype's ulps
        dim = WEIGHTS[name]
        if dim is None:
            torch_way = v * (g / torch.linalg.vector_norm(v))
        else:
            torch_way = torch._weight_norm(v, g, dim)
        eps = torch.finfo(dtype).eps
        torch.testing.assert_close(folded[name], torch_way, rtol=ULPS * eps, atol=0.0)


@pytest.mark.parametrize(("dtype", "rows", "cols"), [(torch.bfloat16, 65536, 4)])
def test_bfloat16_weights_are_rounded_once(
    tmp_path: Path, dtype: torch.dtype, rows: int, cols: int
) -> None:
    """On these (seeded) values, rounding the float64 product through float32, as torch's cast
    does, would give another weight: the folded one is the product rounded once."""
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(rows, cols, generator=gen).to(dtype)
    g = torch.rand(rows, 1, generator=gen).add(0.5).to(dtype)
    save_file({"m.weight_g": g, "m.weight_v": v}, str(tmp_path / "g.safetensors"))
    assert fold_checkpoint(tmp_path / "g.safetensors")
    folded = load_file(str(tmp_path / "g.folded.safetensors"))["m.weight"]
    product = torch._weight_norm(v.double(), g.double(), 0)
    assert torch.equal(folded, expected_weight(g, v, 0))
    assert not torch.equal(folded, product.to(dtype))


def test_safetensors_keeps_metadata_and_untouched_bytes(tmp_path: Path) -> None:
    state = state_dict("legacy")
    state["counter"] = torch.arange(5)  # an integer tensor: copied
    save_file(state, str(tmp_path / "g.safetensors"), metadata={"format": "pt", "epoch": "7"})
    report = fold_checkpoint(tmp_path / "g.safetensors", tmp_path / "out.safetensors")
    assert report.count("folded") == 5
    with safe_open(str(tmp_path / "out.safetensors"), "pt") as handle:
        assert handle.metadata() == {"format": "pt", "epoch": "7"}
    folded = load_file(str(tmp_path / "out.safetensors"))
    assert tensor_bytes(folded["counter"]) == tensor_bytes(state["counter"])
    for name, (g, v) in _pairs(state).items():
        assert torch.equal(folded[name], expected_weight(g, v, WEIGHTS[name]))
    assert set(folded) == {k for k in state if parse_key(k) is None} | set(WEIGHTS)


def test_wrapper_is_kept_and_every_state_dict_in_it_folded(tmp_path: Path) -> None:
    state, ema = state_dict("legacy"), state_dict("parametrize", seed=1)
    checkpoint = {"generator": state, "ema": {"model": ema}, "steps": 2500, "lr": [0.1, 0.2]}
    torch.save(checkpoint, tmp_path / "g_02500000.pth")
    report = fold_checkpoint(tmp_path / "g_02500000.pth")
    assert report.count("folded") == 10 and report.groups == ["generator", "ema/model"]
    out = torch.load(tmp_path / "g_02500000.folded.pth", weights_only=True)
    assert list(out) == ["generator", "ema", "steps", "lr"]
    assert out["steps"] == 2500 and out["lr"] == [0.1, 0.2]
    _assert_folded(state, out["generator"])
    _assert_folded(ema, out["ema"]["model"])


def test_a_timm_training_checkpoint_is_folded_with_its_options_kept(tmp_path: Path) -> None:
    """timm's ``train.py`` saves ``model_best.pth.tar`` with its options as an
    ``argparse.Namespace`` (``args``) beside ``state_dict`` and ``state_dict_ema``: the name
    was refused, and then the Namespace ("use add_safe_globals", which no CLI user can),
    t261. A Namespace is built, and written back as it was."""
    state, ema = state_dict("parametrize"), state_dict("parametrize", seed=1)
    options = argparse.Namespace(model="hifigan", lr=2e-4, sched=None, betas=[0.8, 0.99])
    checkpoint = {"epoch": 3, "state_dict": state, "state_dict_ema": ema, "args": options}
    torch.save(checkpoint, tmp_path / "model_best.pth.tar")
    report = fold_checkpoint(tmp_path / "model_best.pth.tar")
    assert report.groups == ["state_dict", "state_dict_ema"] and report.count("folded") == 10
    with torch.serialization.safe_globals([argparse.Namespace]):
        out = torch.load(tmp_path / "model_best.folded.pth.tar", weights_only=True)
    assert out["args"] == options and out["epoch"] == 3
    _assert_folded(state, out["state_dict"])
    _assert_folded(ema, out["state_dict_ema"])
    # the caller's allow list as it was: torch's scope took Namespace off it at its end (t265)
    with torch.serialization.safe_globals([argparse.Namespace]):
        inspect_checkpoint(tmp_path / "model_best.pth.tar")
        assert argparse.Namespace in torch.serialization.get_safe_globals()
    assert argparse.Namespace not in torch.serialization.get_safe_globals()


def test_state_dicts_in_lists_and_tuples_are_folded_and_stay_shared(tmp_path: Path) -> None:
    """An EMA's snapshots in a list were written back unfolded, and ``inspect --strict`` of
    the output passed. A state dict held in a dict and in a list stays one shared dict; a
    list that holds itself, a ``torch.Size`` and a list of numbers come back as they were."""
    state, ema = state_dict("legacy"), state_dict("parametrize", seed=1)
    loop: list[object] = [ema]
    loop.append(loop)
    checkpoint = {
        "model": state,
        "ema": [state, ema],
        "snapshots": (ema, {"step": 3}),
        "loop": loop,
        "size": torch.Size([2, 3]),
        "lr": [0.1, 0.2],
    }
    torch.save(checkpoint, tmp_path / "g.pt")
    report = fold_checkpoint(tmp_path / "g.pt")
    assert report.count("folded") == 10 and report.groups == ["model", "ema[1]"]
    out = torch.load(tmp_path / "g.folded.pt", weights_only=True)
    _assert_folded(state, out["model"])
    _assert_folded(ema, out["ema"][1])
    assert out["ema"][0] is out["model"]
    assert out["snapshots"][0] is out["ema"][1] is out["loop"][0]
    assert out["loop"][1] is out["loop"] and out["snapshots"][1] == {"step": 3}
    assert out["size"] == torch.Size([2, 3]) and out["lr"] == [0.1, 0.2]
    assert inspect_checkpoint(tmp_path / "g.folded.pt").pairs == []


def test_state_dicts_under_keys_that_are_not_strings_are_folded_and_stay_shared(
    tmp_path: Path,
) -> None:
    """EMA copies by step number (``{1000: sd}``) were not found: written back unfolded,
    the one also held under "model" written twice (its sharing lost), and ``inspect
    --strict`` of the output passed. Names read as Python subscripts, apart from string
    keys that look the same."""
    state, ema = state_dict("legacy"), state_dict("parametrize", seed=1)
    checkpoint = {
        0: state,
        "model": state,
        "ema_by_step": {1000: ema, "1000": {"note": "a string key"}},
        "a/b": {None: ema},
    }
    torch.save(checkpoint, tmp_path / "g.pt")
    report = fold_checkpoint(tmp_path / "g.pt")
    assert report.count("folded") == 10 and report.groups == ["[0]", "ema_by_step[1000]"]
    out = torch.load(tmp_path / "g.folded.pt", weights_only=True)
    _assert_folded(state, out[0])
    _assert_folded(ema, out["ema_by_step"][1000])
    assert out["model"] is out[0] and out["a/b"][None] is out["ema_by_step"][1000]
    assert out["ema_by_step"]["1000"] == {"note": "a string key"}
    assert inspect_checkpoint(tmp_path / "g.folded.pt").pairs == []


def test_state_dicts_under_keys_equal_to_no_other_object_are_folded(tmp_path: Path) -> None:
    """A NaN or a tensor as a key equals only itself, and the file loaded again holds other
    objects: looking the state dict up again by key was a KeyError (exit 3)."""
    state, ema = state_dict("legacy"), state_dict("parametrize", seed=1)
    torch.save(
        {float("nan"): state, torch.tensor(1): {"x": 1}, "ema": {torch.tensor(2): ema}},
        tmp_path / "g.pt",
    )
    report = fold_checkpoint(tmp_path / "g.pt")
    assert report.count("folded") == 10 and report.groups == ["[nan]", "ema[tensor(2)]"]
    out = list(torch.load(tmp_path / "g.folded.pt", weights_only=True).values())
    _assert_folded(state, out[0])
    _assert_folded(ema, next(iter(out[2].values())))
    assert inspect_checkpoint(tmp_path / "g.folded.pt").pairs == []


def test_state_dict_metadata_of_an_ordered_dict_is_kept(tmp_path: Path) -> None:
    state = generator("parametrize").state_dict()
    torch.save(state, tmp_path / "g.pt")
    fold_checkpoint(tmp_path / "g.pt")
    out = torch.load(tmp_path / "g.folded.pt", weights_only=True)
    assert out._metadata == state._metadata  # type: ignore[attr-defined]


def test_legacy_zip_less_torch_format_is_read(tmp_path: Path) -> None:
    state = state_dict("legacy")
    torch.save(state, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert fold_checkpoint(tmp_path / "old.pt").count("folded") == 5
    _assert_folded(state, torch.load(tmp_path / "old.folded.pt", weights_only=True))


def test_same_input_same_bytes(tmp_path: Path) -> None:
    save_file(state_dict("parametrize"), str(tmp_path / "g.safetensors"))
    fold_checkpoint(tmp_path / "g.safetensors", tmp_path / "a.safetensors")
    fold_checkpoint(tmp_path / "g.safetensors", tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


@pytest.mark.parametrize("action", ["fold_checkpoint(path)", "convert_checkpoint(path, 'legacy')"])
def test_same_bytes_in_every_process(tmp_path: Path, action: str) -> None:
    """The output's metadata is in the input header's order, whatever the process's hash
    seeds: byte-identical outputs from separate processes."""
    state = {k: t.numpy() for k, t in state_dict("parametrize").items()}
    metadata = {key: f"value {i}" for i, key in enumerate("hgfedcba")}
    path = tmp_path / "g.safetensors"
    write(path, [(k, DTYPE_CODES[a.dtype.name], a.shape, a) for k, a in state.items()], metadata)
    code = (
        "import sys; from pathlib import Path; "
        "from wnpass.checkpoint import convert_checkpoint, fold_checkpoint; "
        f"path = Path(sys.argv[1]); {action}"
    )
    outputs = []
    for seed in ("0", "1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", code, str(path)], check=True, env=env)
        (output,) = set(tmp_path.iterdir()) - {path}
        outputs.append(output.read_bytes())
        output.unlink()
    assert len(set(outputs)) == 1
    header = json.loads(outputs[0][8 : 8 + struct.unpack("<Q", outputs[0][:8])[0]])
    assert list(header["__metadata__"]) == list(metadata)


def test_no_pairs_is_a_copy(tmp_path: Path) -> None:
    state = {"a.weight": torch.randn(3, 4), "gate_v": torch.randn(4)}  # a lone legacy name
    save_file(state, str(tmp_path / "p.safetensors"))
    report = fold_checkpoint(tmp_path / "p.safetensors")
    assert report and report.pairs == []
    out = load_file(str(tmp_path / "p.folded.safetensors"))
    assert {k: tensor_bytes(t) for k, t in out.items()} == {
        k: tensor_bytes(t) for k, t in state.items()
    }


@pytest.mark.parametrize("name", ["e.pt", "e.safetensors"])
def test_an_empty_state_dict_is_one_in_both_formats(tmp_path: Path, name: str) -> None:
    """A model without parameters saves ``{}``: a torch file of it was refused ("holds no
    state dict") where a safetensors file of it was folded (t183)."""
    save_any({}, tmp_path / name)
    report = fold_checkpoint(tmp_path / name, tmp_path / f"out{Path(name).suffix}")
    assert report and report.pairs == [] and report.tensors_before == 0
    assert load_any(tmp_path / f"out{Path(name).suffix}") == {}
    assert inspect_checkpoint(tmp_path / name).pairs == []


def test_seconds_and_sizes_are_reported(tmp_path: Path) -> None:
    save_file(state_dict(), str(tmp_path / "g.safetensors"))
    report = fold_checkpoint(tmp_path / "g.safetensors")
    size = (tmp_path / "g.folded.safetensors").stat().st_size
    assert report.bytes_after == size and report.bytes_before is not None
    assert report.bytes_before > size and report.seconds is not None


def _broken_state() -> dict[str, torch.Tensor]:
    state = state_dict("legacy")
    state["conv_pre.weight_g"][3] = float("nan")  # NaN in g
    state["res.weight_v"][2] = 0.0  # a unit with zero norm
    state["lone.parametrizations.weight.original0"] = torch.ones(3, 1)  # g without v
    state["bad.weight_g"] = torch.ones(3, 1)  # shapes that do not fit
    state["bad.weight_v"] = torch.ones(4, 2)
    return state


def test_broken_pairs_are_reported_and_left_as_they_were(tmp_path: Path) -> None:
    state = _broken_state()
    save_file(state, str(tmp_path / "b.safetensors"))
    report = fold_checkpoint(tmp_path / "b.safetensors")
    assert not report  # declined pairs make the report false; the output is still written
    reasons = {p.weight: p.reason for p in report.pairs if p.status == "declined"}
    assert reasons == {
        "conv_pre.weight": "NaN or Inf in g or v",
        "res.weight": "v has a unit with zero norm (PyTorch computes NaN there)",
        "lone.weight": "g without v (lone.parametrizations.weight.original0)",
        "bad.weight": "shapes do not fit: g [3, 1] does not match v [4, 2] on axis 0",
    }
    out = load_file(str(tmp_path / "b.folded.safetensors"))
    for key in (
        "conv_pre.weight_g",
        "conv_pre.weight_v",
        "res.weight_g",
        "res.weight_v",
        "lone.parametrizations.weight.original0",
        "bad.weight_g",
        "bad.weight_v",
    ):
        assert tensor_bytes(out[key]) == tensor_bytes(state[key]), key
    assert "conv_pre.weight" not in out and "res.weight" not in out
    assert report.count("folded") == 3 and "ups.0.weight" in out


def test_a_weight_that_would_overflow_its_dtype_is_declined(tmp_path: Path) -> None:
    state = {"c.weight_g": torch.full((2, 1), 6e4).half(), "c.weight_v": torch.ones(2, 3).half()}
    state["c.weight_v"] *= 1e-3  # g / ||v|| about 3.5e7
    save_file(state, str(tmp_path / "o.safetensors"))
    report = fold_checkpoint(tmp_path / "o.safetensors")
    reason = report.pairs[0].reason or ""
    assert report.pairs[0].status == "declined" and "exceeds the largest float16" in reason
    assert set(load_file(str(tmp_path / "o.folded.safetensors"))) == set(state)


def test_a_declined_pair_keeps_its_place_in_a_torch_file(tmp_path: Path) -> None:
    state = _broken_state()
    torch.save(state, tmp_path / "b.pt")
    fold_checkpoint(tmp_path / "b.pt")
    out = torch.load(tmp_path / "b.folded.pt", weights_only=True)
    kept = [k for k in state if k.startswith(("conv_pre.weight", "res.weight", "bad.", "lone."))]
    assert [k for k in out if k in kept] == kept


@pytest.mark.parametrize("name", ["s.pt", "s.safetensors"])
def test_a_scalar_pair_folds_to_a_scalar(tmp_path: Path, name: str) -> None:
    """A 0-d v (a scalar g: the whole-tensor norm) gives a 0-d weight in both formats (in the
    parametrize form: legacy keys of one element per unit are left alone, test_pairs)."""
    g, v = torch.tensor(2.0), torch.tensor(-3.0)
    keys = pair_keys("s.weight", "parametrize")
    save_any({keys.g: g, keys.v: v}, tmp_path / name)
    assert fold_checkpoint(tmp_path / name, tmp_path / f"out{Path(name).suffix}")
    weight = load_any(tmp_path / f"out{Path(name).suffix}")["s.weight"]
    assert weight.shape == v.shape == () and weight.dtype == v.dtype
    assert torch.equal(weight, expected_weight(g, v, None).reshape(()))


@pytest.mark.parametrize(("g_dtype", "v_dtype"), [(torch.float32, torch.bfloat16),
                                                   (torch.float64, torch.float16)])  # fmt: skip
def test_a_whole_tensor_pair_with_a_0d_g_of_another_dtype_folds_to_vs(
    tmp_path: Path, g_dtype: torch.dtype, v_dtype: torch.dtype
) -> None:
    """t183: a 0-d g takes no part in PyTorch's type promotion, so a dim=None pair of a
    float32 g and a bfloat16 v makes a bfloat16 weight; it was declined, "PyTorch makes no
    weight of one dtype of them". A g that keeps an axis is still declined (test_pairs)."""
    g, v = torch.tensor(1.5, dtype=g_dtype), torch.randn(4, 3).to(v_dtype)
    assert torch._weight_norm(v, g, -1).dtype == v_dtype
    save_any({"a.weight_g": g, "a.weight_v": v}, tmp_path / "mixed.pt")
    assert fold_checkpoint(tmp_path / "mixed.pt", tmp_path / "out.pt")
    weight = load_any(tmp_path / "out.pt")["a.weight"]
    assert weight.dtype == v_dtype
    assert torch.equal(weight, expected_weight(g, v, None))


def test_a_0d_g_of_another_dtype_near_vs_limits_is_declined_saying_why() -> None:
    """t187: a float32 g of 1e5 over float16 ones was declined as "the weight would overflow",
    though PyTorch takes g / ||v|| in float32 and its weight, 5e4, fits float16: the checks
    made for one dtype do not hold for two."""
    g, v = torch.tensor(1e5), torch.ones(2, 2, dtype=torch.float16)
    assert torch.isfinite(torch._weight_norm(v, g, -1)).all()
    assert check_pair(g, v, None) == (
        "g is float32 and v float16, with g or g / ||v|| beyond float16's normal range: "
        "PyTorch takes that quotient in the wider dtype, where the checks made for float16 "
        "alone do not hold"
    )


# Values whose norms PyTorch does not compute exactly at run time: it sums v's squares in
# float32 for 16-bit weights, in v's own dtype otherwise (and, for some axes, keeps a float16
# norm in float16). The fold, exact in float64, would not compute what the model computes.
NORM_CASES = {
    "float64 squares overflow": (
        torch.float64,
        [1e200, 1e200],
        "v's squares overflow float64: the norm PyTorch computes is inf",
    ),
    "float64 squares underflow": (
        torch.float64,
        [3e-200, 4e-200],
        "v's squares underflow float64 (a unit's sum is below its smallest normal number): "
        "the norm PyTorch computes is 0 or inexact",
    ),
    "float64 squares subnormal": (torch.float64, [1e-160, 1e-160], "underflow float64"),
    "float32 squares overflow": (torch.float32, [1e20, 1e20], "overflow float32"),
    "float32 squares underflow": (torch.float32, [1e-25, 1e-25], "underflow float32"),
    "bfloat16 sums in float32": (torch.bfloat16, [1e20, 1e20], "overflow float32"),
    "bfloat16 squares underflow float32": (torch.bfloat16, [1e-25, 1e-25], "underflow float32"),
    "float16 norm overflows float16": (
        torch.float16,
        [60000.0, 60000.0],
        "||v|| exceeds the largest float16: PyTorch computes the norm as inf where it keeps "
        "it in float16",
    ),
    "all zero": (
        torch.float64,
        [0.0, 0.0],
        "v has a unit with zero norm (PyTorch computes NaN there)",
    ),
}


@pytest.mark.parametrize("case", list(NORM_CASES))
def test_norms_pytorch_does_not_compute_exactly_are_declined(case: str) -> None:
    dtype, row, reason = NORM_CASES[case]
    v = torch.tensor([row, [1.0, 2.0]], dtype=dtype)  # the second unit is ordinary
    g = torch.ones(2, 1, dtype=dtype)
    assert reason in (check_pair(g, v, 0) or "")
    assert reason in (check_pair(torch.ones((), dtype=dtype), v[:1], None) or "")
    # what PyTorch computes for that unit, in the dtype it holds the norm in: not the norm,
    # or (all zero) the norm and a weight of NaN
    exact = math.hypot(*row)
    computed = float(torch.linalg.vector_norm(v[0]))
    if exact == 0:
        assert torch._weight_norm(v, g, 0)[0].isnan().all()
    else:
        assert computed != pytest.approx(exact, rel=1e-6, abs=0.0)


@pytest.mark.parametrize(("v_shape", "g_shape", "dim"), [((4, 0), (4, 1), 0), ((0, 3), (0, 1), 0)])
def test_units_of_no_elements_fold_to_the_empty_weight_pytorch_computes(
    tmp_path: Path, v_shape: tuple[int, ...], g_shape: tuple[int, ...], dim: int
) -> None:
    """``weight_norm(nn.Linear(0, 4))``: every unit's norm is 0, but the weight PyTorch
    computes is empty, with no NaN in it. It was declined as a unit of zero norm (t122).
    A weight of no units is the empty one too."""
    g, v = torch.rand(g_shape) + 0.5, torch.randn(v_shape)
    assert check_pair(g, v, dim) is None
    save_file({"a.weight_g": g, "a.weight_v": v}, str(tmp_path / "e.safetensors"))
    report = fold_checkpoint(tmp_path / "e.safetensors", tmp_path / "out.safetensors")
    assert [(p.weight, p.status) for p in report.pairs] == [("a.weight", "folded")]
    weight = load_file(str(tmp_path / "out.safetensors"))["a.weight"]
    assert weight.shape == v.shape and weight.dtype == v.dtype
    if v_shape[0]:  # no units at all: torch 2.13's fused kernel dies of SIGFPE on it
        assert torch._weight_norm(v, g, dim).shape == v.shape


def test_a_declined_norm_keeps_the_pair(tmp_path: Path) -> None:
    state = {
        "big.weight_g": torch.ones(1, 1, dtype=torch.float64),
        "big.weight_v": torch.tensor([[1e200, 1e200]], dtype=torch.float64),
        "tiny.weight_g": torch.ones(1, 1, dtype=torch.float64),
        "tiny.weight_v": torch.tensor([[3e-200, 4e-200]], dtype=torch.float64),
    }
    save_file(state, str(tmp_path / "n.safetensors"))
    report = fold_checkpoint(tmp_path / "n.safetensors")
    assert [(p.weight, p.status) for p in report.pairs] == [
        ("big.weight", "declined"),
        ("tiny.weight", "declined"),
    ]
    out = load_file(str(tmp_path / "n.folded.safetensors"))
    assert {k: tensor_bytes(t) for k, t in out.items()} == {
        k: tensor_bytes(t) for k, t in state.items()
    }


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [
        (np.float64, 1.0),
        (np.float64, 1e150),  # squares near 1e300: within float64
        (np.float64, 1e-150),  # squares near 1e-300: normal float64
        (np.float32, 1e18),  # squares near 1e37: within float32
        (np.float32, 1e-18),  # squares near 1e-36: normal float32
        (np.float16, 1.0),
        (ml_dtypes.bfloat16, 1e18),
    ],
)
def test_values_in_range_fold_to_the_rounded_once_product(dtype: type, scale: float) -> None:
    """Every value the checks accept folds to weight_from's bits (g * v / ||v|| in float64,
    rounded once), unchanged by the checks."""
    rng = np.random.default_rng(0)
    v: np.ndarray = (rng.standard_normal((6, 5)) * scale).astype(dtype)
    g: np.ndarray = (rng.random((6, 1)) + 0.5).astype(dtype)
    for dim, g_of in ((0, g), (None, g[:1, :1].reshape(()))):
        assert check_pair(g_of, v, dim) is None
        folded = fold_pair(g_of, v, dim)
        assert folded.dtype == v.dtype and folded.shape == v.shape
        assert folded.tobytes() == weight_from(g_of, v, dim).tobytes()


@pytest.mark.parametrize(
    "entry",
    [[1, 2, 3], {"x": torch.ones(2)}, 5],
    ids=["a list", "a nested state dict", "a number"],
)
def test_an_entry_the_weight_would_replace_declines_the_pair(tmp_path: Path, entry: object) -> None:
    """Any entry under the folded weight's key, a tensor or not, declines the pair: folding
    would replace it. Everything is written back as it was."""
    g, v = torch.rand(2, 1) + 0.5, torch.randn(2, 3)
    torch.save({"a.weight_g": g, "a.weight_v": v, "a.weight": entry}, tmp_path / "a.pt")
    report = fold_checkpoint(tmp_path / "a.pt")
    pair = next(p for p in report.pairs if p.weight == "a.weight")
    assert (pair.status, pair.reason) == ("declined", "a.weight is stored too")
    out = torch.load(tmp_path / "a.folded.pt", weights_only=True)
    assert list(out) == ["a.weight_g", "a.weight_v", "a.weight"]
    assert torch.equal(out["a.weight_g"], g) and torch.equal(out["a.weight_v"], v)
    if isinstance(entry, dict):
        assert list(out["a.weight"]) == ["x"] and torch.equal(out["a.weight"]["x"], entry["x"])
    else:
        assert out["a.weight"] == entry


_MAX64 = float(np.finfo(np.float64).max)


@pytest.mark.parametrize(
    ("g", "row", "finite"),
    [
        (1e300, [1e-100, 0.0], False),  # g / ||v|| = 1e400: inf, and 0 * inf is NaN
        (1e300, [1e-9, 1e-9], False),
        (1e300, [1e-8, 1e-8], True),
        (1e300, [1.0, 0.0], True),
        (_MAX64, [0.1, 0.7], False),  # the exact weight, 0.99 * max, is finite; the quotient not
        (_MAX64, [3.0, 4.0], True),
        (_MAX64, [1.0, 1e-300], True),
    ],
)
def test_a_weight_whose_float64_computation_overflows_is_declined(
    g: float, row: list[float], finite: bool
) -> None:
    """A float64 pair is declined exactly where ``v * (g / ||v||)`` is not finite (g and the
    exact weight may both be finite): never folded into inf or NaN, and never declined where
    it would fold."""
    g64, v64 = np.array([[g]]), np.array([row])
    with np.errstate(over="ignore", invalid="ignore"):
        assert bool(np.isfinite(weight_from(g64, v64, 0)).all()) is finite
    reason = values_reason(g64, v64, 0)
    assert (reason is None) is finite
    if not finite:
        assert reason == _QUOTIENT % "float64"
        assert check_pair(torch.tensor(g64), torch.tensor(v64), 0) == reason


_QUOTIENT = (
    "g / ||v|| exceeds the largest %s: PyTorch computes v * (g / ||v||), inf there, so the "
    "weight it uses is not finite"
)


@pytest.mark.parametrize(
    ("g", "row"),
    [
        (3e38, [0.5, 0.0, 0.0]),  # the exact weight, [3e38, 0, 0], is a float32
        (3e38, [1.0, 0.0, 0.0]),
        (1.0, [1e-19, 1e-19, 0.0]),
        (1.0, [1e-18, 0.0, 0.0]),
    ],
)
def test_a_float32_pair_whose_pytorch_quotient_overflows_is_declined(
    g: float, row: list[float]
) -> None:
    """``g = 3e38``, ``v = [0.5, 0, 0]``: PyTorch's weight norm is ``[inf, nan, nan]`` (its
    ``g / ||v||`` overflows float32) while the exact weight, which the fold wrote, is finite;
    the model the checkpoint came from never computed it. Declined where, and only where,
    PyTorch's own weight is not finite."""
    g32, v32 = torch.tensor([[g]]), torch.tensor([row])
    pytorch_finite = bool(torch._weight_norm(v32, g32, 0).isfinite().all())
    reason = check_pair(g32, v32, 0)
    assert (reason is None) is pytorch_finite
    if not pytorch_finite:
        assert reason == _QUOTIENT % "float32"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("dim", [0, 1, 2, None])
def test_a_16_bit_quotient_beyond_its_dtype_is_declined_saying_what_pytorch_computes(
    dtype: torch.dtype, dim: int | None
) -> None:
    """t44: a float16 ``weight_norm(Conv1d, dim=0)`` with ``g = 20``, ``||v|| = 1e-4`` was
    declined saying PyTorch's weight is inf, which on CPU it is not: its fused kernel, at the
    first and last axis, takes ``g / ||v||`` in float32. Unfused (another axis, the whole
    tensor) it is taken in the 16-bit dtype and is inf. Still declined everywhere (the weight
    depends on how it is computed), the reason saying "not finite" only where PyTorch's is."""
    unit = [0.75, 0.65625, 0.0, 0.0]  # ||unit|| = 0.9966: g / ||v|| just beyond bfloat16
    g_value = 20.0 if dtype == torch.float16 else float(torch.finfo(torch.bfloat16).max)
    scale = 1e-4 if dtype == torch.float16 else 1.0
    units = torch.tensor([unit, unit] if dim is not None else [unit]) * scale
    v = units.reshape(-1, 2, 2).movedim(0, dim or 0).to(dtype).contiguous()  # units on dim
    g_shape = [1, 1, 1]
    if dim is not None:
        g_shape[dim] = 2
    g = torch.full(g_shape if dim is not None else [], g_value, dtype=dtype)
    pytorch = torch._weight_norm(v, g, dim if dim is not None else -1)  # dim=None is -1
    finite = bool(pytorch.isfinite().all())
    assert finite is (dim in (0, 2))  # on CPU: fused at the first and last axis only
    reason = check_pair(g, v, dim) or ""
    assert reason.startswith(f"g / ||v|| exceeds the largest {str(dtype)[6:]}")
    assert ("not finite" in reason) is not finite, reason
    if finite:
        assert "PyTorch's weight is finite where it takes that quotient in float32" in reason


@pytest.mark.parametrize(
    ("module", "dim", "g", "scale", "dtype"),
    [
        (nn.ConvTranspose1d(4, 8, 3), 1, 3e-4, 1000.0, torch.float16),  # 30% off
        (nn.Linear(3, 4), 0, 1e-32, 1e15, torch.float32),  # all 0
        (nn.Linear(3, 4), None, 1e-33, 1e13, torch.float32),
        (nn.Linear(3, 4), None, 1e-30, 1e15, torch.bfloat16),
        (nn.Linear(3, 4), 0, 1e-20, 1e15, torch.float32),  # a normal quotient: folded
        (nn.Conv1d(4, 8, 3), 0, 3e-4, 1000.0, torch.float16),  # fused: in float32 on CPU
    ],
)
def test_a_quotient_below_the_smallest_normal_is_declined(
    module: nn.Module, dim: int | None, g: float, scale: float, dtype: torch.dtype
) -> None:
    """PyTorch computes ``v * (g / ||v||)``: a quotient below the smallest normal value of the
    dtype it is taken in loses bits (a float16 ConvTranspose's weight 30% off) or is 0, and
    the exact weight, which the fold wrote, was not the model's (t94). Declined where, and
    only where, the quotient is subnormal in a dtype PyTorch may take it in; a fold is the
    weight PyTorch computed, to its rounding, everywhere else."""
    torch.manual_seed(0)
    normed: Any = parametrizations.weight_norm(module.to(dtype), dim=dim)  # type: ignore[arg-type]
    pair = normed.parametrizations.weight
    with torch.no_grad():
        pair.original1.copy_(torch.randn(pair.original1.shape).to(dtype) * scale)
        pair.original0.fill_(g)
    reason = check_pair(pair.original0.detach(), pair.original1.detach(), dim)
    folded = fold_pair(pair.original0.detach(), pair.original1.detach(), dim)
    used = normed.weight.detach()  # what the weight-normed model computes (on CPU)
    both = torch.stack([folded.double(), used.double()])
    off = float((both[0] - both[1]).abs().max() / both[1].abs().max().clamp_min(1e-300))
    eps = torch.finfo(dtype).eps
    subnormal = "is below half the smallest normal"
    if g > 1e-25 and dtype == torch.float32:  # normal in float32: the weight to its rounding
        assert reason is None and off <= 2 * eps
    elif isinstance(module, nn.Conv1d):  # fused on CPU: exact, unfused: not; declined
        assert off <= 2 * eps and (reason or "").startswith(f"g / ||v|| {subnormal} float16")
        assert "which one the model used depends on how it ran" in (reason or "")
    else:
        assert off > 2 * eps  # the weight PyTorch used is not the exact one
        assert (reason or "").startswith(f"g / ||v|| {subnormal} {str(dtype)[6:]}")
        assert (reason or "").endswith("so the weight it uses is not the exact one")


@pytest.mark.parametrize(
    ("module", "dim", "scale"),
    [
        (nn.ConvTranspose1d(4, 3, 5), 1, 4e-8),  # unfused (a middle axis): the norm in float16
        (nn.ConvTranspose1d(4, 3, 5), None, 4e-8),  # unfused (the whole tensor)
        (nn.Conv1d(4, 8, 3), 0, 4e-8),  # fused on CPU (the norm in float32): exact there
        (nn.ConvTranspose1d(4, 3, 5), 1, 4e-5),  # a normal norm: folded, to its rounding
    ],
)
def test_a_float16_norm_below_half_the_smallest_normal_is_declined(
    module: nn.Module, dim: int | None, scale: float
) -> None:
    """Where PyTorch keeps ``||v||`` in float16 (its unfused path), a norm in subnormals
    loses bits, and the weight with it: 5% off the exact weight the fold wrote as ok (t103).
    Declined there; at the first or last axis, whose fused kernel keeps the norm in float32,
    declined as depending on how the model ran; a normal norm folds."""
    torch.manual_seed(0)
    normed: Any = parametrizations.weight_norm(module.half(), dim=dim)  # type: ignore[arg-type]
    pair = normed.parametrizations.weight
    with torch.no_grad():
        # every element the same (2**-24 for 4e-8): a norm of sqrt(n) of them, which float16
        # subnormals round a good part of a step away (sqrt(20) of 2**-24 is 4 of them)
        pair.original1.fill_(scale)
        pair.original0.fill_(1e-3)
    g, v = pair.original0.detach(), pair.original1.detach()
    reason = check_pair(g, v, dim)
    used = normed.weight.detach().double()  # what the weight-normed model computes (on CPU)
    off = float((fold_pair(g, v, dim).double() - used).abs().max() / used.abs().max())
    below = "||v|| is below half the smallest normal float16"
    if scale > 1e-6:
        assert reason is None and off <= 2 * torch.finfo(torch.float16).eps
    elif dim == 0:
        assert off <= 2 * torch.finfo(torch.float16).eps  # fused: PyTorch's weight is exact
        assert (reason or "").startswith(below) and "depends on how it ran" in (reason or "")
    else:
        assert off > 0.01  # the weight PyTorch used is not the exact one
        assert (reason or "").startswith(f"{below}: PyTorch keeps the norm in float16")


def test_a_float16_unit_of_one_element_with_a_tiny_norm_folds() -> None:
    """A unit's norm that float16 holds exactly loses nothing: one element's is ``|v|``
    (a ``Linear(1, 8)`` with a weight of 2e-5 was declined, and its export called not
    deployable, t106). PyTorch's weight, fused or not, is the exact one."""
    torch.manual_seed(0)
    normed: Any = parametrizations.weight_norm(nn.Linear(1, 8).half(), dim=0)
    pair = normed.parametrizations.weight
    with torch.no_grad():
        pair.original1[3, 0] = 2e-5
    g, v = pair.original0.detach(), pair.original1.detach()
    assert check_pair(g, v, 0) is None
    assert torch.equal(fold_pair(g, v, 0), normed.weight.detach())


@pytest.mark.parametrize("name", ["o.safetensors", "o.pt"])
def test_inspect_and_fold_agree_on_an_overflowing_quotient(tmp_path: Path, name: str) -> None:
    """What inspect calls foldable, fold folds; this pair both decline (fold exits as for any
    declined pair, its tensors written as they were)."""
    state = {
        "a.weight_g": torch.tensor([[1e300]], dtype=torch.float64),
        "a.weight_v": torch.tensor([[1e-100, 0.0]], dtype=torch.float64),
    }
    save_any(state, tmp_path / name)
    reason = "g / ||v|| exceeds the largest float64"
    (pair,) = inspect_checkpoint(tmp_path / name).pairs
    assert pair.status == "declined" and reason in (pair.reason or "")
    report = fold_checkpoint(tmp_path / name)
    (pair,) = report.pairs
    assert pair.status == "declined" and reason in (pair.reason or "")
    out = load_any(Path(report.output or ""))
    assert {k: tensor_bytes(t) for k, t in out.items()} == {
        k: tensor_bytes(t) for k, t in state.items()
    }


@pytest.mark.parametrize(
    ("v", "reason"),
    [
        (torch.randn(4, 3).to_sparse(), "v is not a dense tensor (torch.sparse_coo)"),
        (
            torch.empty(4, 3, device="meta"),
            "v is not a dense tensor (on the meta device: it holds no values)",
        ),
    ],
    ids=["sparse", "meta"],
)
def test_a_tensor_without_dense_values_declines_the_pair(
    tmp_path: Path, v: torch.Tensor, reason: str
) -> None:
    torch.save({"a.weight_g": torch.rand(4, 1), "a.weight_v": v}, tmp_path / "s.pt")
    assert check_pair(torch.rand(4, 1), v, 0) == reason
    for report in (inspect_checkpoint(tmp_path / "s.pt"), fold_checkpoint(tmp_path / "s.pt")):
        (pair,) = report.pairs
        assert (pair.status, pair.reason) == ("declined", reason)


def test_a_tensor_with_the_negative_bit_folds_from_its_values(tmp_path: Path) -> None:
    """The imaginary part of a conjugate view (``z.conj().imag``) is a view with torch's lazy
    negation bit, saved as such: the fold reads the values it stands for (numpy sees only
    the stored ones)."""
    g, v = torch.rand(4, 1) + 0.5, torch.randn(4, 3, dtype=torch.complex64).conj().imag
    assert v.is_neg()
    torch.save({"a.weight_g": g, "a.weight_v": v}, tmp_path / "n.pt")
    report = fold_checkpoint(tmp_path / "n.pt")
    assert [p.status for p in report.pairs] == ["folded"]
    out = torch.load(tmp_path / "n.folded.pt", weights_only=True)
    assert torch.equal(out["a.weight"], expected_weight(g, v.resolve_neg(), 0))


@pytest.mark.parametrize("form", ["parametrize", "legacy"])
def test_a_pair_whose_keys_start_with_a_dot_folds_under_its_own_name(
    tmp_path: Path, form: str
) -> None:
    """``.parametrizations.weight.original0/1`` is pair ``.weight``: it was read as pair
    ``weight``, whose keys it does not hold (an AssertionError in inspect and fold)."""
    g, v = torch.rand(2, 1) + 0.5, torch.randn(2, 3)
    keys = (
        (".parametrizations.weight.original0", ".parametrizations.weight.original1")
        if form == "parametrize"
        else (".weight_g", ".weight_v")
    )
    save_file(dict(zip(keys, (g, v), strict=True)), str(tmp_path / "dot.safetensors"))
    assert [p.status for p in inspect_checkpoint(tmp_path / "dot.safetensors").pairs] == [
        "foldable"
    ]
    report = fold_checkpoint(tmp_path / "dot.safetensors")
    assert [(p.weight, p.status) for p in report.pairs] == [(".weight", "folded")]
    folded = load_file(str(tmp_path / "dot.folded.safetensors"))
    assert list(folded) == [".weight"]
    assert torch.equal(folded[".weight"], expected_weight(g, v, 0))


def test_a_folded_safetensors_file_is_the_librarys_byte_for_byte(tmp_path: Path) -> None:
    """The folded weight went where its g key was: ``dec.weight`` after ``dec.weight2``, where
    the library (and the documentation) put it before, by name."""
    torch.manual_seed(0)
    state = {
        "dec.weight_g": torch.rand(4, 1),
        "dec.weight_v": torch.randn(4, 3),
        "dec.weight2": torch.randn(2),
    }
    save_file(state, str(tmp_path / "o.safetensors"), metadata={"format": "pt"})
    fold_checkpoint(tmp_path / "o.safetensors")
    folded = load_file(str(tmp_path / "o.folded.safetensors"))
    save_file(folded, str(tmp_path / "library.safetensors"), metadata={"format": "pt"})
    assert (tmp_path / "o.folded.safetensors").read_bytes() == (
        tmp_path / "library.safetensors"
    ).read_bytes()


@pytest.mark.parametrize("trainable", [True, False])
def test_a_weight_folded_from_parameters_is_a_parameter(tmp_path: Path, trainable: bool) -> None:
    """A file of ``dict(model.named_parameters())``: the folded weight came back a plain
    tensor beside a Parameter bias (t292). It is a Parameter where ``v`` was one, with its
    ``requires_grad``, and one object under both names of a module held twice."""
    conv = parametrizations.weight_norm(nn.Conv1d(2, 3, 3), "weight", dim=0)
    for param in conv.parameters():
        param.requires_grad_(trainable)
    params = dict(conv.named_parameters())
    params.update({f"again.{key}": value for key, value in conv.named_parameters()})
    torch.save(params, tmp_path / "p.pt")
    fold_checkpoint(tmp_path / "p.pt")
    out = torch.load(tmp_path / "p.folded.pt", weights_only=True)
    assert isinstance(out["weight"], nn.Parameter) and isinstance(out["bias"], nn.Parameter)
    assert out["weight"].requires_grad is trainable
    assert out["again.weight"] is out["weight"]
    g, v = (params[f"parametrizations.weight.original{i}"].detach() for i in (0, 1))
    assert torch.equal(out["weight"], expected_weight(g, v, 0))
