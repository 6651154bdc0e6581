"""``wnpass fold|inspect|convert CKPT``: tables, JSON, and hostile checkpoints and paths.

Every refusal: the exit code, exactly one stderr line and no traceback, every file that was
there unchanged (sha256), and no new file.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.checkpoint.builders import (
    expected_weight,
    hashes,
    load_any,
    save_any,
    save_sharded,
    state_dict,
    tensor_bytes,
)
from tests.checkpoint.test_kept import trainer_file
from tests.checkpoint.test_verify import MODEL_PY, _checkpoint, with_idle_discriminator
from tests.helpers import cli_with_file_limit
from wnpass.checkpoint import api
from wnpass.cli import main


def _folder(tmp_path: Path) -> Path:
    """g.safetensors, g.pt, a sharded model.safetensors.index.json with two shards."""
    state = state_dict("legacy")
    save_file(state, str(tmp_path / "g.safetensors"), metadata={"format": "pt"})
    torch.save({"generator": state}, tmp_path / "g.pt")
    keys = list(state)
    save_sharded(tmp_path, state, [keys[:7], keys[7:]])
    return tmp_path


# -- what a run prints and writes ---------------------------------------------------------------


def test_fold_prints_pairs_and_writes_beside_the_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _folder(tmp_path)
    assert main(["--plain", "fold", str(folder / "g.pt"), "--json", str(folder / "r.json")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"pos_conv\.weight +legacy +8x4x4 +1x1x4 +2 +float32 +folded", out)
    assert "generator" in out
    assert "None (all)" in out  # conv_post: a scalar g
    assert "folded 5 of 5 weight-norm pairs; tensors 17 -> 12" in out
    assert f"wrote {folder / 'g.folded.pt'}" in out
    report = json.loads((folder / "r.json").read_text())
    assert report["folded"] == 5 and report["ok"] is True and report["format"] == "torch"
    assert {p["weight"]: p["dim"] for p in report["pairs"]}["pos_conv.weight"] == 2


@pytest.mark.parametrize(
    "command", [["inspect"], ["fold"], ["convert", "--to", "parametrize"]], ids=lambda c: c[0]
)
def test_safetensors_commands_leave_torch_unimported(tmp_path: Path, command: list[str]) -> None:
    """Each command imports what it needs: safetensors files are read, folded and written with
    numpy, without torch (which takes over a second to import); a torch file needs torch."""
    import subprocess

    save_file(state_dict("legacy"), str(tmp_path / "g.safetensors"))
    torch.save(state_dict("legacy"), tmp_path / "g.pt")
    code = (
        "import sys; from wnpass.cli import main; status = main(sys.argv[1:]); "
        "sys.exit(10 if 'torch' in sys.modules else status)"
    )
    for name, expected in (("g.safetensors", 0), ("g.pt", 10)):
        # --json too: the report's guard of its files imported torch (through wnpass.fx)
        report = ["--json", str(tmp_path / f"{command[0]}-{name}.json")]
        argv = [sys.executable, "-c", code, *command, *report, str(tmp_path / name)]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert result.returncode == expected, (name, result.stderr)


def test_fold_a_lightning_checkpoint_by_its_own_name(tmp_path: Path) -> None:
    """Lightning's and NeMo's trainers save ``last.ckpt``: it was read as ONNX, and refused
    saying to give it a checkpoint suffix. ``.ckpt`` is a torch.save file's name; the
    trainer's other entries are written back as they were."""
    state = {f"model.{key}": value for key, value in state_dict("legacy").items()}
    moments = {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}}
    checkpoint = {
        "epoch": 4,
        "global_step": 1200,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": state,
        "optimizer_states": [{"state": moments, "param_groups": [{"lr": 2e-4, "params": [0]}]}],
        "lr_schedulers": [{"last_epoch": 4, "gamma": 0.999}],
        "callbacks": {"ModelCheckpoint{'monitor': None}": {"best_model_path": "x/last.ckpt"}},
        "hyper_parameters": {"sampling_rate": 22050, "upsample_rates": [8, 8, 2, 2]},
    }
    torch.save(checkpoint, tmp_path / "last.ckpt")
    assert main(["-q", "fold", str(tmp_path / "last.ckpt")]) == 0
    out = torch.load(tmp_path / "last.folded.ckpt", weights_only=True)
    assert list(out) == list(checkpoint)
    for key in checkpoint.keys() - {"state_dict", "optimizer_states"}:
        assert out[key] == checkpoint[key]
    assert torch.equal(out["optimizer_states"][0]["state"][0]["exp_avg"], torch.ones(2))
    assert not any(key.endswith(("_g", "_v")) for key in out["state_dict"])
    assert out["state_dict"].keys() == {
        key.removesuffix("_g") for key in state if not key.endswith("_v")
    }


def test_fold_a_sharded_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path)
    before = hashes(folder)
    assert main(["fold", str(folder / "model.safetensors.index.json")]) == 0
    after = hashes(folder)
    assert {name: after[name] for name in before} == before  # the input is never changed
    assert sorted(set(after) - set(before)) == [
        "model.folded-00001-of-00002.safetensors",
        "model.folded-00002-of-00002.safetensors",
        "model.folded.safetensors.index.json",
    ]  # and nothing else is left (no staging folder)
    assert "and 2 shards" in capsys.readouterr().out
    index = json.loads((folder / "model.folded.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {
        "model.folded-00001-of-00002.safetensors",
        "model.folded-00002-of-00002.safetensors",
    }


def test_a_sharded_checkpoint_in_the_hugging_face_cache_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """t167: the Hugging Face cache links each file of a snapshot to its blob
    (``snapshots/<rev>/model-00001-of-00002.safetensors -> ../../blobs/<sha>``), the index
    too; every shard was refused as a link leading out of the index's folder. A shard leading
    where the index's own link leads is beside it; one leading elsewhere is still refused."""
    (tmp_path / "source").mkdir()
    source = _folder(tmp_path / "source")
    blobs, snapshot = tmp_path / "hub" / "blobs", tmp_path / "hub" / "snapshots" / "abc"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    names = [p.name for p in source.glob("model*")]
    for number, name in enumerate(names):
        (blobs / f"blob{number}").write_bytes((source / name).read_bytes())
        os.symlink(f"../../blobs/blob{number}", snapshot / name)
    before = hashes(blobs)
    index = snapshot / "model.safetensors.index.json"
    assert main(["-q", "inspect", str(index)]) == 0
    out = tmp_path / "out"
    out.mkdir()
    assert main(["-q", "fold", str(index), "-o", str(out / "model.safetensors.index.json")]) == 0
    assert main(["-q", "fold", str(source / "model.safetensors.index.json"), "-o",
                 str(out / "direct.safetensors.index.json")]) == 0  # fmt: skip
    folded, direct = (_sharded(out / f"{n}.safetensors.index.json") for n in ("model", "direct"))
    assert folded.keys() == direct.keys()
    assert all(torch.equal(folded[key], direct[key]) for key in folded)
    assert hashes(blobs) == before
    elsewhere = tmp_path / "elsewhere"  # a shard leading out of both folders
    elsewhere.mkdir()
    shard = snapshot / "model-00002-of-00002.safetensors"
    os.replace(blobs / f"blob{names.index(shard.name)}", elsewhere / "blob")
    shard.unlink()
    os.symlink(elsewhere / "blob", shard)
    assert main(["-q", "inspect", str(index)]) == 2
    shard.unlink()  # a link to the index's own blob: its JSON was read as a shard (t169)
    os.symlink(index.readlink(), shard)
    assert main(["-q", "inspect", str(index)]) == 2
    assert "names itself as a shard (model-00002-of-00002.safetensors)" in capsys.readouterr().err


def _sharded(index: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a sharded safetensors checkpoint, by its index."""
    shards = set(json.loads(index.read_text())["weight_map"].values())
    return {k: v for shard in sorted(shards) for k, v in load_file(index.parent / shard).items()}


def test_inspect_changes_nothing_but_the_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _folder(tmp_path)
    before = hashes(folder)
    assert main(["inspect", str(folder / "g.safetensors"), "--json", str(folder / "i.json")]) == 0
    out = capsys.readouterr().out
    assert "foldable" in out and "5 weight-norm pairs: 5 foldable; 17 tensors" in out
    after = hashes(folder)
    assert after.pop("i.json") and after == before
    assert json.loads((folder / "i.json").read_text())["foldable"] == 5


def test_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path)
    argv = ["-q", "convert", str(folder / "g.safetensors"), "--to", "parametrize"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("converted 5 of 5 pairs to parametrize; tensors 17 -> 17")
    assert (folder / "g.parametrize.safetensors").is_file()


def test_convert_renames_a_pair_of_any_dtype(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A renaming needs no values: a float8 pair (not folded) is converted, byte for byte."""
    g, v = torch.rand(4, 1).to(torch.float8_e4m3fn), torch.randn(4, 3).to(torch.float8_e4m3fn)
    save_file({"a.weight_g": g, "a.weight_v": v}, str(tmp_path / "f8.safetensors"))
    assert main(["-q", "convert", str(tmp_path / "f8.safetensors"), "--to", "parametrize"]) == 0
    assert capsys.readouterr().out.startswith("converted 1 of 1 pair to parametrize")
    out = load_file(str(tmp_path / "f8.parametrize.safetensors"))
    assert list(out) == [
        "a.parametrizations.weight.original0",
        "a.parametrizations.weight.original1",
    ]
    assert tensor_bytes(out["a.parametrizations.weight.original0"]) == tensor_bytes(g)
    assert tensor_bytes(out["a.parametrizations.weight.original1"]) == tensor_bytes(v)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_keys_with_a_newline_or_an_empty_name_are_read_exactly(
    tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """t44: ``a.weight_g\\n`` was read as g of ``a.weight`` (internal AssertionError, exit 3);
    ``blk\\n0.weight_g`` was no pair at all (``inspect --strict`` passed an unfolded pair);
    ``a._g``/``a._v`` were converted to ``a.parametrizations..original0``, which nothing reads
    back. A newline is a character of its key; an empty parameter name is no parameter's."""
    v = torch.randn(3, 2)
    g = v.norm(dim=1, keepdim=True) * 2
    trailing = save_any({"a.weight_g\n": g, "a.weight_v\n": v}, tmp_path / f"end{suffix}")
    inside = save_any({"blk\n0.weight_g": g, "blk\n0.weight_v": v}, tmp_path / f"mid{suffix}")
    empty = save_any({"a._g": g, "a._v": v}, tmp_path / f"empty{suffix}")
    assert main(["-q", "inspect", "--strict", str(trailing)]) == 0
    assert main(["-q", "fold", str(trailing)]) == 0
    assert list(load_any(tmp_path / f"end.folded{suffix}")) == ["a.weight_g\n", "a.weight_v\n"]
    assert main(["-q", "inspect", "--strict", str(inside)]) == 1
    assert "1 pair left to fold" in capsys.readouterr().out
    assert main(["-q", "fold", str(inside)]) == 0
    folded = load_any(tmp_path / f"mid.folded{suffix}")
    assert list(folded) == ["blk\n0.weight"]
    assert torch.equal(folded["blk\n0.weight"], expected_weight(g, v, 0))
    assert main(["-q", "convert", str(inside), "--to", "parametrize"]) == 0
    assert list(load_any(tmp_path / f"mid.parametrize{suffix}")) == [
        "blk\n0.parametrizations.weight.original0",
        "blk\n0.parametrizations.weight.original1",
    ]
    assert main(["-q", "convert", str(empty), "--to", "parametrize"]) == 0
    assert list(load_any(tmp_path / f"empty.parametrize{suffix}")) == ["a._g", "a._v"]
    assert "converted 0 of 0 pairs" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["fold"], ["convert", "--to", "legacy"]], ids=lambda c: c[0])
def test_weight_norm_under_another_parametrization_is_declined(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """weight_norm, then spectral_norm on the same weight: the model's weight is the spectral
    norm of g * v / ||v||. Folding g and v alone (or renaming them, away from the
    parametrization state beside them) would be wrong: the pair is left as it was."""
    from torch.nn.utils.parametrizations import spectral_norm, weight_norm

    model = spectral_norm(weight_norm(torch.nn.Linear(4, 3)))
    state = model.state_dict()
    assert "parametrizations.weight.1._u" in state
    torch.save(state, tmp_path / "s.pt")
    assert (
        main(
            [
                "--plain",
                command[0],
                str(tmp_path / "s.pt"),
                *command[1:],
                "-o",
                str(tmp_path / "o.pt"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "declined: another parametrization is stacked on it (parametrizations.weight.1._u)" in out
    )
    written = torch.load(tmp_path / "o.pt", weights_only=True)
    assert {k: tensor_bytes(t) for k, t in written.items()} == {
        k: tensor_bytes(t) for k, t in state.items()
    }


def test_inspect_of_a_checkpoint_without_pairs_says_so_and_strict_says_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No pair printed an empty table, and the STRICT line did not say what to run, where an
    ONNX model's does (t104)."""
    save_file({"fc.weight": torch.ones(2, 2)}, str(tmp_path / "plain.safetensors"))
    assert main(["--plain", "inspect", str(tmp_path / "plain.safetensors")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{tmp_path / 'plain.safetensors'} (safetensors): no weight-norm pairs"
    save_file(state_dict("parametrize"), str(tmp_path / "wn.safetensors"))
    assert main(["--quiet", "inspect", "--strict", str(tmp_path / "wn.safetensors")]) == 1
    strict = capsys.readouterr().out.splitlines()[-1]
    assert strict.startswith("STRICT: ") and strict.endswith("; run wnpass fold")


def test_declined_pairs_are_shown_and_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = state_dict("parametrize")
    state["res.parametrizations.weight.original1"].zero_()
    save_file(state, str(tmp_path / "z.safetensors"))
    assert main(["--plain", "fold", str(tmp_path / "z.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "declined: v has a unit with zero norm" in out
    assert "folded 4 of 5 weight-norm pairs, 1 declined (left as they were)" in out
    # --quiet: the summary, and each declined pair with its reason (it said "1 declined"
    # alone, the warning log line hidden too, t104), for fold and for convert
    assert (
        main(
            [
                "--quiet",
                "fold",
                str(tmp_path / "z.safetensors"),
                "-o",
                str(tmp_path / "q.safetensors"),
            ]
        )
        == 0
    )
    quiet = capsys.readouterr().out.splitlines()
    assert quiet[0].startswith("folded 4 of 5 weight-norm pairs, 1 declined")
    assert (
        quiet[1]
        == "  declined: res.weight: v has a unit with zero norm (PyTorch computes NaN there)"
    )
    state["res.weight"] = torch.ones(1)  # the legacy keys' weight is stored too: declined
    save_file(state, str(tmp_path / "c.safetensors"))
    assert main(["--quiet", "convert", str(tmp_path / "c.safetensors"), "--to", "legacy"]) == 0
    quiet = capsys.readouterr().out.splitlines()
    assert quiet[1].startswith("  declined: res.weight: ")


RWKV5_PY = """
import torch
from torch import nn

class TimeMix(nn.Module):  # RWKV-5's: no weight norm, parameters ending in _g and _v
    def __init__(self):
        super().__init__()
        ramp = torch.arange(8.0).reshape(1, 1, 8) / 8
        self.time_mix_v = nn.Parameter(ramp + 0.3)
        self.time_mix_g = nn.Parameter(ramp ** 0.5)
        self.key = nn.Linear(8, 8, bias=False)

    def forward(self, x):
        return self.key(x * self.time_mix_v) * self.time_mix_g

def build_model():
    return TimeMix()

def example_inputs():
    return (torch.randn(1, 2, 8, generator=torch.Generator().manual_seed(0)),)
"""


def test_parameters_that_only_look_like_a_legacy_pair_are_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RWKV-5's ``time_mix_g``/``time_mix_v`` (1x1xC each) were folded into a made-up
    ``time_mix`` the model does not load, renamed by convert, and failed ``inspect --strict``
    on a model without weight norm. One element per unit: left alone, with the reason."""
    from wnpass.fx.loading import load_model_py

    (tmp_path / "rwkv5.py").write_text(RWKV5_PY)
    model, _ = load_model_py(tmp_path / "rwkv5.py")
    torch.save(model.state_dict(), ckpt := tmp_path / "rwkv5.pth")
    assert main(["--plain", "inspect", str(ckpt), "--strict"]) == 0
    out = capsys.readouterr().out
    assert "declined: one element per unit of v" in out and "STRICT" not in out
    for argv, output in (
        (["fold", str(ckpt)], "rwkv5.folded.pth"),
        (["convert", str(ckpt), "--to", "parametrize"], "rwkv5.parametrize.pth"),
    ):
        assert main(argv) == 0
        written = torch.load(tmp_path / output, weights_only=True)
        assert list(written) == list(model.state_dict())
        model.load_state_dict(written, strict=True)


def test_model_check_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, model_py = _checkpoint(tmp_path)
    assert main(["--plain", "fold", str(ckpt), "--model", str(model_py)]) == 0
    out = capsys.readouterr().out
    assert "folded vs weight-normed" in out and "rtol=0.0001 atol=1e-05" in out
    assert (tmp_path / "ckpt.folded.pt").is_file()


def test_a_model_check_that_compared_nothing_shows_no_empty_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """t183: a table of headers and no rows stood above the lines that say why."""
    ckpt, model_py = _checkpoint(tmp_path)
    state = torch.load(ckpt, weights_only=True)["model"]
    torch.save({"module." + key: value for key, value in state.items()}, ckpt)
    assert main(["--plain", "fold", str(ckpt), "--model", str(model_py)]) == 1
    out = capsys.readouterr().out
    assert "folded vs weight-normed" not in out
    assert "weights are in the checkpoint under the prefix 'module.'" in out


_LAZY_MODEL_PY = """
import torch
from torch import nn

def build_model():
    return nn.Sequential(nn.LazyConv1d(4, 3), nn.Flatten(), nn.LazyLinear(3))

def example_inputs():
    return (torch.randn(2, 2, 10),)
"""


def test_a_lazy_model_py_checks_and_loads_checkpoints(tmp_path: Path) -> None:
    """``fold CKPT --model lazy.py`` on train-rewrite's own output ended in an internal error
    (exit 3); ``train-rewrite lazy.py --checkpoint`` of the model's own state dict said it did
    not fit (t57): the example inputs give the lazy layers their shapes as the file loads."""
    model_py = tmp_path / "lazy.py"
    model_py.write_text(_LAZY_MODEL_PY)
    rewritten = tmp_path / "lazy.wn.pt"
    assert main(["--quiet", "train-rewrite", str(model_py), "-o", str(rewritten)]) == 0
    folded = tmp_path / "lazy.folded.pt"
    argv = ["--quiet", "fold", str(rewritten), "--model", str(model_py), "-o", str(folded)]
    assert main(argv) == 0
    plain = torch.load(folded, weights_only=True)
    assert {k: tuple(v.shape) for k, v in plain.items()} == {
        "0.weight": (4, 2, 3), "0.bias": (4,), "2.weight": (3, 32), "2.bias": (3,)
    }  # fmt: skip
    again = tmp_path / "again.wn.pt"
    argv = [
        "--quiet",
        "train-rewrite",
        str(model_py),
        "--checkpoint",
        str(folded),
        "-o",
        str(again),
    ]
    assert main(argv) == 0 and again.is_file()


def test_model_check_of_a_bfloat16_checkpoint_says_whose_tolerance_applies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, model_py = _checkpoint(tmp_path)
    state = torch.load(ckpt, weights_only=True)
    torch.save({k: v.to(torch.bfloat16) for k, v in state["model"].items()}, ckpt)
    report = tmp_path / "r.json"
    assert (
        main(["--plain", "fold", str(ckpt), "--model", str(model_py), "--json", str(report)]) == 0
    )
    out = capsys.readouterr().out
    assert "rtol=0.05 atol=0.01" in out
    assert "tolerance of bfloat16: the folded weights are bfloat16, so outputs computed " in out
    (row,) = json.loads(report.read_text())["check"]["outputs"]
    assert (row["dtype"], row["held_as"], row["rtol"]) == ("float32", "bfloat16", 0.05)


def test_model_check_names_the_state_dicts_it_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, model_py = _checkpoint(tmp_path)
    normed = torch.load(ckpt, weights_only=True)["model"]
    other = {"net.weight_g": torch.rand(3, 1) + 0.5, "net.weight_v": torch.randn(3, 4)}
    ema = {key: tensor.clone() for key, tensor in normed.items()}
    torch.save({"model": normed, "ema": ema, "disc": other}, ckpt)
    assert main(["--plain", "fold", str(ckpt), "--model", str(model_py)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^model +output .* ok$", out, re.M)
    assert re.search(r"^ema +output .* ok$", out, re.M)
    assert "not checked: the folded pairs of disc (a state dict the model does not load)" in out


def test_model_check_names_the_folded_weights_the_forward_does_not_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, model_py = _checkpoint(tmp_path)
    with_idle_discriminator(ckpt, model_py)
    assert main(["--plain", "fold", str(ckpt), "--model", str(model_py)]) == 0
    assert (
        "not checked: the folded weights disc.weight (in model): the forward on "
        "example_inputs() does not read them"
    ) in capsys.readouterr().out


def test_model_check_of_nothing_folded_is_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RWKV-5's look-alike pair is left alone: a check then compares nothing, and says so."""
    (tmp_path / "rwkv5.py").write_text(RWKV5_PY)
    from wnpass.fx.loading import load_model_py

    model, _ = load_model_py(tmp_path / "rwkv5.py")
    torch.save(model.state_dict(), ckpt := tmp_path / "rwkv5.pth")
    assert main(["fold", str(ckpt), "--model", str(tmp_path / "rwkv5.py")]) == 1
    out = capsys.readouterr().out
    assert "nothing written: the folded checkpoint failed the check" in out
    assert "nothing compared: no pair was folded" in out
    assert not (tmp_path / "rwkv5.folded.pth").exists()


def test_model_check_failure_is_exit_1_and_publishes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt, model_py = _checkpoint(tmp_path)
    before = hashes(tmp_path)
    monkeypatch.setattr(api, "fold_pair", lambda g, v, dim: v.clone())
    argv = [
        "--plain",
        "fold",
        str(ckpt),
        "--model",
        str(model_py),
        "--json",
        str(tmp_path / "r.json"),
    ]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "nothing written: the folded checkpoint failed the check" in captured.out
    assert "size" not in captured.out and "wrote" not in captured.out
    after = hashes(tmp_path)
    report = json.loads((tmp_path / "r.json").read_text())
    assert after.pop("r.json") and after == before
    # the JSON names no output: none was written
    assert (report["output"], report["shards"], report["bytes_after"]) == (None, [], None)
    assert report["check"]["ok"] is False and report["ok"] is False
    # --quiet names the failing output too (it said only "failed the check")
    assert main(["--quiet", *argv[1:4], str(model_py)]) == 1
    quiet = capsys.readouterr().out.splitlines()
    assert quiet[-2].startswith("nothing written: the folded checkpoint failed the check")
    assert re.match(r"^  model: output: \d+ of \d+ elements outside rtol=", quiet[-1])


# -- hostile inputs and paths ------------------------------------------------------------------

Setup = Callable[[Path], list[str]]


def _evil_pickle(folder: Path, zip_format: bool, protocol: int = pickle.DEFAULT_PROTOCOL) -> Path:
    marker = folder / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    path = folder / "evil.pt"
    if zip_format:
        torch.save({"w": Evil()}, path)
    else:
        path.write_bytes(pickle.dumps({"w": Evil()}, protocol=protocol))
    return path


def _index(folder: Path, weight_map: dict[str, str]) -> Path:
    path = folder / "bad.safetensors.index.json"
    path.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return path


def _symlink_out(folder: Path) -> list[str]:
    outside = folder / "elsewhere"
    outside.mkdir()
    save_file({"a": torch.ones(2)}, str(outside / "s.safetensors"))
    os.symlink(outside / "s.safetensors", folder / "s.safetensors")
    return ["fold", str(_index(folder, {"a": "s.safetensors"}))]


def _shard_hard_links_the_index(folder: Path) -> list[str]:
    index = _index(folder, {"a": "s.safetensors"})
    os.link(index, folder / "s.safetensors")
    return ["inspect", str(index)]


def _fifo(folder: Path) -> list[str]:
    os.mkfifo(folder / "out.safetensors")
    return ["fold", str(folder / "g.safetensors"), "-o", str(folder / "out.safetensors")]


def _symlink_to_input(folder: Path) -> list[str]:
    os.symlink(folder / "g.safetensors", folder / "link.safetensors")
    return ["fold", str(folder / "g.safetensors"), "-o", str(folder / "link.safetensors")]


def _hard_link_to_shard(folder: Path) -> list[str]:
    os.link(folder / "model-00001-of-00002.safetensors", folder / "hard.json")
    return [
        "fold",
        str(folder / "model.safetensors.index.json"),
        "--json",
        str(folder / "hard.json"),
    ]


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated(folder: Path) -> list[str]:
    data = (folder / "g.safetensors").read_bytes()
    (folder / "cut.safetensors").write_bytes(data[: len(data) // 2])
    return ["fold", str(folder / "cut.safetensors")]


def _truncated_shard(folder: Path) -> list[str]:
    shard = folder / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-10])
    return ["fold", str(folder / "model.safetensors.index.json")]


def _key_not_in_shard(folder: Path) -> list[str]:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"]["ghost.weight"] = "model-00001-of-00002.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return ["fold", str(folder / "model.safetensors.index.json")]


def _key_in_wrong_shard(folder: Path) -> list[str]:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = "model-00002-of-00002.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return ["fold", str(folder / "model.safetensors.index.json")]


def _not_a_state_dict(folder: Path) -> list[str]:
    torch.save([1, 2, 3], folder / "list.pt")
    return ["fold", str(folder / "list.pt")]


def _not_json(folder: Path) -> list[str]:
    (folder / "x.safetensors.index.json").write_text("{not json")
    return ["inspect", str(folder / "x.safetensors.index.json")]


def _deep_index(folder: Path) -> list[str]:
    """An index nested deeper than json's decoder recurses."""
    path = folder / "d.safetensors.index.json"
    path.write_text("[" * 200000 + "]" * 200000)
    return ["fold", str(path)]


def _deep_torch_file(folder: Path) -> list[str]:
    """A state dict beside a list nested 3000 deep (written with a raised recursion limit)."""
    deep: list[object] = []
    for _ in range(3000):
        deep = [deep]
    state = {"a.weight_g": torch.ones(2, 1), "a.weight_v": torch.ones(2, 2), "deep": deep}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20000)
    try:
        torch.save(state, folder / "deep.pt")
    finally:
        sys.setrecursionlimit(limit)
    return ["fold", str(folder / "deep.pt")]


def _derived_shard_is_an_input_shard(folder: Path) -> list[str]:
    """-o's folder holds a hard link to an input shard under the name -o's shard gets."""
    out = _m(folder)
    os.link(folder / "model-00002-of-00002.safetensors", out / "model-00002-of-00002.safetensors")
    return [
        "fold",
        str(folder / "model.safetensors.index.json"),
        "-o",
        str(out / "model.safetensors.index.json"),
    ]


def _default_shard_is_an_input_shard(folder: Path) -> list[str]:
    """The default output's shard name is a hard link to an input shard."""
    os.link(
        folder / "model-00001-of-00002.safetensors",
        folder / "model.folded-00001-of-00002.safetensors",
    )
    return ["fold", str(folder / "model.safetensors.index.json")]


def _shard_is_a_folder(folder: Path) -> list[str]:
    (folder / "d.safetensors").mkdir()
    return ["fold", str(_index(folder, {"a": "d.safetensors"}))]


def _model_does_not_fit(folder: Path) -> list[str]:
    ckpt, model_py = _checkpoint(_m(folder))
    model_py.write_text(MODEL_PY.replace("nn.Conv1d(4, 1, 3", "nn.Conv1d(4, 2, 3"))
    return ["fold", str(ckpt), "--model", str(model_py)]


def _m(folder: Path) -> Path:
    (folder / "m").mkdir()
    return folder / "m"


CASES: dict[str, tuple[Setup, int, str]] = {
    "output is the input": (
        lambda f: ["fold", str(f / "g.pt"), "-o", str(f / "g.pt")],
        2,
        "-o {f}/g.pt: would overwrite the input checkpoint",
    ),
    "output is a symlink to the input": (_symlink_to_input, 2, "exists and is a symbolic link"),
    # t44: labelled "-o {f}/m/model-...", as if the user had given the shard's name
    "-o's shard is an input shard": (
        _derived_shard_is_an_input_shard,
        2,
        "error: -o's shard {f}/m/model-00002-of-00002.safetensors: would overwrite a shard of "
        "the input checkpoint",
    ),
    "the default output's shard is an input shard": (
        _default_shard_is_an_input_shard,
        2,
        "error: output's shard {f}/model.folded-00001-of-00002.safetensors: would overwrite a "
        "shard of the input checkpoint",
    ),
    "output is a FIFO": (_fifo, 2, "exists and is a FIFO; refused"),
    "--json is a hard link to a shard": (
        _hard_link_to_shard,
        2,
        "--json {f}/hard.json: would overwrite a shard of the input checkpoint",
    ),
    "--json names a shard": (
        lambda f: [
            "inspect",
            str(f / "model.safetensors.index.json"),
            "--json",
            str(f / "model-00002-of-00002.safetensors"),
        ],
        2,
        "would overwrite a shard of the input checkpoint",
    ),
    "--json is the output": (
        lambda f: ["fold", str(f / "g.pt"), "--json", str(f / "g.folded.pt")],
        2,
        "is also another output of this run",
    ),
    "convert output is the input index": (
        lambda f: [
            "convert",
            str(f / "model.safetensors.index.json"),
            "--to",
            "legacy",
            "-o",
            str(f / "model.safetensors.index.json"),
        ],
        2,
        "would overwrite the input checkpoint",
    ),
    "the output is the input by another path": (
        lambda f: [
            "fold",
            str(f / "model.safetensors.index.json"),
            "-o",
            str(_m(f) / ".." / "model.safetensors.index.json"),
        ],
        2,
        "would overwrite the input checkpoint",
    ),
    "inspect's --json is the input checkpoint": (
        lambda f: ["inspect", str(f / "g.pt"), "--json", str(f / "g.pt")],
        2,
        "--json {f}/g.pt: would overwrite the input checkpoint",
    ),
    "malicious pickle (zip)": (
        lambda f: ["fold", str(_evil_pickle(f, True))],
        2,
        "refused: loading it would run code or build objects other than tensors",
    ),
    "malicious pickle (legacy format)": (
        lambda f: ["inspect", str(_evil_pickle(f, False, protocol=2))],
        2,
        "refused: loading it would run code or build objects other than tensors",
    ),
    "malicious pickle in a protocol torch cannot read": (
        lambda f: ["inspect", str(_evil_pickle(f, False, protocol=4))],
        2,
        "evil.pt: not a readable torch.save file (pickle opcode 149 is not one",
    ),
    "bytes that are no pickle are not called code": (
        lambda f: ["inspect", str(_write(f / "noise.pt", b"\x80\x02\xce"))],
        2,
        "noise.pt: not a readable torch.save file (pickle opcode 206 is not one torch's "
        "weights-only loader reads; torch.save writes pickle protocol 2); nothing in it was run",
    ),
    "a safetensors file named .bin is said as one": (  # a pickle opcode (t271)
        lambda f: ["inspect", str(_write(f / "st.bin", (f / "g.safetensors").read_bytes()))],
        2,
        "st.bin: not a readable torch.save file (it looks like a safetensors file: name it "
        ".safetensors to read it as one)",
    ),
    "an empty zip archive named .pt is said as one": (
        lambda f: ["inspect", str(_write(f / "empty.pt", b"PK\x05\x06" + bytes(18)))],
        2,
        "empty.pt: not a readable torch.save file (a zip archive, but not one torch.save wrote",
    ),
    "a zip with no pickle, torch's reader failing on it": (  # its raw words before (t275)
        lambda f: ["inspect", str(_zip(f / "nopkl.pt", {"a.npy": b"x"}))],
        2,
        "nopkl.pt: not a readable torch.save file (a zip archive, but not one torch.save wrote",
    ),
    "a torch file named .safetensors is said as one": (
        lambda f: ["inspect", str(_write(f / "t.safetensors", (f / "g.pt").read_bytes()))],
        2,
        "; it looks like a torch.save file: name it .pt",
    ),
    "text named .pt": (
        lambda f: ["inspect", str(_write(f / "text.pt", b"hello world"))],
        2,
        "text.pt: not a readable torch.save file: KeyError: 101",
    ),
    "truncated safetensors": (_truncated, 2, "not a readable safetensors file"),
    "truncated shard": (_truncated_shard, 2, "model-00002-of-00002.safetensors: not a readable"),
    "index climbs out of its folder": (
        lambda f: ["fold", str(_index(f, {"a": "../g.safetensors"}))],
        2,
        "names shard '../g.safetensors', a path: an index names each shard by its file name "
        "alone, beside it; refused",
    ),
    "index names an absolute shard": (
        lambda f: ["fold", str(_index(f, {"a": str(f / "g.safetensors")}))],
        2,
        "a path: an index names each shard by its file name alone, beside it; refused",
    ),
    # it said "which is not a file in the index's folder" of a file that is there (t103)
    "index names a shard with ./": (
        lambda f: ["fold", str(_index(f, {"a": "./g.safetensors"}))],
        2,
        "names shard './g.safetensors', a path: an index names each shard by its file name",
    ),
    "index names a shard ..": (
        lambda f: ["fold", str(_index(f, {"a": ".."}))],
        2,
        "names shard '..', which is not a file name; refused",
    ),
    "shard is a symlink out of the folder": (
        _symlink_out,
        2,
        "shard s.safetensors is a symbolic link leading out of the index's folder (and not "
        "where the index's own link leads); refused",
    ),
    "index names itself as a shard": (
        lambda f: ["fold", str(_index(f, {"a": "bad.safetensors.index.json"}))],
        2,
        "bad.safetensors.index.json: names itself as a shard; refused",
    ),
    # its JSON was read as a shard: "header too large" (t172)
    "shard is a hard link to the index": (
        _shard_hard_links_the_index,
        2,
        "bad.safetensors.index.json: names itself as a shard (s.safetensors); refused",
    ),
    "missing shard": (
        lambda f: ["fold", str(_index(f, {"a": "gone.safetensors"}))],
        2,
        "gone.safetensors: no such file (a shard named by bad.safetensors.index.json)",
    ),
    "shard is a folder": (_shard_is_a_folder, 2, "d.safetensors: is a directory"),
    "index lists a tensor its shard lacks": (
        _key_not_in_shard,
        2,
        "1 tensor(s) it lists are not in their shard (ghost.weight",
    ),
    "index puts a tensor in the wrong shard": (_key_in_wrong_shard, 2, "but the index assigns"),
    "index is not JSON": (_not_json, 2, "not a readable index"),
    "index nested too deeply": (
        _deep_index,
        2,
        "d.safetensors.index.json: not a readable index: its JSON is nested too deeply",
    ),
    "torch file nested too deeply": (
        _deep_torch_file,
        2,
        "{f}/deep.pt: holds containers nested more than 100 deep",
    ),
    "not a state dict": (_not_a_state_dict, 2, "holds a list, not a state dict"),
    "missing checkpoint": (lambda f: ["fold", str(f / "none.pt")], 2, "none.pt: no such file"),
    "wrong output suffix": (
        lambda f: ["fold", str(f / "g.safetensors"), "-o", str(f / "g.pt2")],
        2,
        "-o {f}/g.pt2: the output has the input's format (safetensors)",
    ),
    "sharded output without an index name": (
        lambda f: ["fold", str(f / "model.safetensors.index.json"), "-o", str(f / "m.safetensors")],
        2,
        "must end with *.safetensors.index.json",
    ),
    "output folder missing": (
        lambda f: ["fold", str(f / "g.pt"), "-o", str(f / "no" / "g.pt")],
        2,
        "no such directory",
    ),
    "--in-place": (lambda f: ["fold", str(f / "g.pt"), "--in-place"], 2, "never changed"),
    "--verify": (lambda f: ["fold", str(f / "g.pt"), "--verify"], 2, "--model model.py"),
    "--factory alone": (
        lambda f: ["fold", str(f / "g.pt"), "--factory", "x"],
        2,
        "--factory goes with --model",
    ),
    "--rtol without --model": (
        lambda f: ["fold", str(f / "g.pt"), "--rtol", "1e-3"],
        2,
        "--rtol goes with --model",
    ),
    "an ONNX check option": (
        lambda f: ["fold", str(f / "g.pt"), "--provider", "cpu"],
        2,
        "--provider is for ONNX checks",
    ),
    "--runs for a checkpoint": (
        lambda f: ["fold", str(f / "g.pt"), "--runs", "0", "--warmup", "-5"],
        2,
        "--runs is for ONNX checks; a checkpoint's --model check takes --rtol/--atol",
    ),
    "--warmup for a checkpoint": (
        lambda f: ["fold", str(f / "g.safetensors"), "--warmup", "-5"],
        2,
        "--warmup is for ONNX checks",
    ),
    "--threads 0 for a checkpoint": (
        lambda f: ["fold", str(f / "g.pt"), "--threads", "0"],
        2,
        "--threads is for ONNX checks",
    ),
    "--optimization given its default": (
        lambda f: ["fold", str(f / "g.pt"), "--optimization", "default"],
        2,
        "--optimization is for ONNX checks",
    ),
    "--weight-norm-only for a checkpoint": (
        lambda f: ["fold", str(f / "g.pt"), "--weight-norm-only"],
        2,
        "--weight-norm-only is for ONNX models",
    ),
    "inspect --weight-norm-only for a checkpoint": (  # refused, not ignored (t143)
        lambda f: ["inspect", str(f / "g.pt"), "--weight-norm-only", "--strict"],
        2,
        "--weight-norm-only is for ONNX models: a checkpoint holds weight-norm pairs only",
    ),
    "inspect --include-type for a checkpoint": (
        lambda f: ["inspect", str(f / "g.pt"), "--include-type", "Conv1d"],
        2,
        "--include-type: for a model.py, not a checkpoint",
    ),
    "a NaN tolerance": (
        lambda f: ["fold", str(f / "g.pt"), "--model", str(f / "g.pt"), "--atol", "nan"],
        2,
        "--atol nan: a tolerance must be a finite number >= 0",
    ),
    "--keep-objects for a safetensors file": (  # taken without a word (t309)
        lambda f: ["fold", str(f / "g.safetensors"), "--keep-objects"],
        2,
        "--keep-objects is for torch.save files; {f}/g.safetensors is a safetensors "
        "checkpoint, which holds no objects",
    ),
    "convert --keep-objects for a safetensors file": (
        lambda f: ["convert", str(f / "g.safetensors"), "--to", "legacy", "--keep-objects"],
        2,
        "holds no objects",
    ),
    "inspect --keep-objects for a safetensors file": (
        lambda f: ["inspect", str(f / "g.safetensors"), "--keep-objects"],
        2,
        "--keep-objects is for torch checkpoints, not a safetensors checkpoint, which holds no "
        "objects",
    ),
    "an output named only its suffix": (  # said "must end with .pt", which it does (t309)
        lambda f: ["fold", str(f / "g.pt"), "-o", str(f / ".pt")],
        2,
        "-o {f}/.pt: a checkpoint needs a name before .pt",
    ),
    "an output named only another format's suffix": (  # a name missing was said (t313)
        lambda f: ["fold", str(f / "g.pt"), "-o", str(f / ".safetensors")],
        2,
        "-o {f}/.safetensors: the output has the input's format (torch): its name must end with",
    ),
    "a report named only its suffix": (
        lambda f: ["fold", str(f / "g.pt"), "--json", str(f / ".json")],
        2,
        "--json {f}/.json: a JSON report needs a name before .json",
    ),
    "unknown form": (
        lambda f: ["convert", str(f / "g.pt"), "--to", "plain"],
        2,
        "invalid choice: 'plain'",
    ),
    "model does not fit the checkpoint": (
        _model_does_not_fit,
        2,
        "--model {f}/m/model.py: the original checkpoint does not fit the model",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_cases_refuse_and_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    setup, code, message = CASES[case]
    folder = _folder(tmp_path)
    argv = setup(folder)
    before = {path: hashes(path) for path in [folder, *sorted(folder.glob("*/"))]}
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("wnpass: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert message.format(f=folder) in err, err
    assert {path: hashes(path) for path in before} == before  # unchanged, nothing new
    assert not (folder / "pwned").exists()


def test_a_malicious_pickle_from_a_shell_is_one_line(tmp_path: Path) -> None:
    """In a real process (warnings are not captured there): one stderr line, nothing run."""
    import subprocess

    path = _evil_pickle(tmp_path, zip_format=False, protocol=2)
    before = hashes(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "wnpass", "fold", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "it was not run" in result.stderr
    assert hashes(tmp_path) == before and not (tmp_path / "pwned").exists()


def test_model_check_tolerance_is_the_users(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """rtol=atol=0: the run-time float32 reference and the rounded-once fold differ by ulps."""
    ckpt, model_py = _checkpoint(tmp_path)
    before = hashes(tmp_path)
    argv = ["--plain", "fold", str(ckpt), "--model", str(model_py), "--rtol", "0", "--atol", "0"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "rtol=0 atol=0" in out and "outside tolerance" in out
    assert hashes(tmp_path) == before


@pytest.mark.parametrize("limit", [2048, 8192])  # the first write fails; a later one does
@pytest.mark.parametrize("name", ["g.safetensors", "g.pt"])
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path, name: str, limit: int) -> None:
    """Writes fail past RLIMIT_FSIZE (a full disk, as the process sees it)."""
    folder = _folder(tmp_path)
    before = hashes(folder)
    result = cli_with_file_limit(limit, "fold", str(folder / name))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"{folder / name.replace('.', '.folded.')}: cannot write (File too large)" in (
        result.stderr
    )
    assert hashes(folder) == before


def test_a_full_disk_names_the_shard_it_could_not_write(tmp_path: Path) -> None:
    """A shard named after -o's index is -o's shard, not -o (t44)."""
    folder = _folder(tmp_path)
    out = _m(folder)
    index = folder / "model.safetensors.index.json"
    result = cli_with_file_limit(
        2048, "fold", str(index), "-o", str(out / "o.safetensors.index.json")
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    expected = f"-o's shard {out / 'o-00001-of-00002.safetensors'}: cannot write (File too large)"
    assert expected in result.stderr
    assert list(out.iterdir()) == []


def test_a_failing_error_never_prints_as_its_tolerance() -> None:
    """``--model``'s table printed 3 significant digits: 1.0014e-05 outside an atol of
    1.0000001e-05 read 'max abs 1e-05 ... atol=1e-05 ... outside tolerance'."""
    import io

    from wnpass.checkpoint.report import CheckpointReport, ModelCheckReport, OutputRow
    from wnpass.cli.checkpoint import _print_check
    from wnpass.cli.output import Printer

    row = OutputRow("y", [4], "float32", 1.0014e-05, 1e-3, 1, 4, 1e-4, 1.0000001e-05)
    report = CheckpointReport("fold", "in.pt", "torch")
    report.check = ModelCheckReport("model.py", outputs=[row])
    stream = io.StringIO()
    _print_check(Printer(stream=stream, plain=True), report)
    (line,) = [line for line in stream.getvalue().splitlines() if line.startswith("y ")]
    assert "1.001e-05" in line and "rtol=0.0001 atol=1.0000001e-05" in line


def test_keep_objects_folds_a_trainer_file_and_says_what_it_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, _, _ = trainer_file(tmp_path)
    assert main(["fold", str(ckpt)]) == 2
    assert "--keep-objects, to keep them as they are, never built)" in capsys.readouterr().err
    assert main(["--plain", "fold", str(ckpt), "--keep-objects"]) == 0
    assert (
        "kept unbuilt: objects of datetime.datetime, fractions.Fraction, pathlib.PurePosixPath, "
        "trainer_config.Config, written back as it holds them"
    ) in capsys.readouterr().out
    assert main(["--plain", "inspect", str(ckpt), "--keep-objects"]) == 0
    assert "kept unbuilt: objects of datetime.datetime" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fold", "m.onnx"], "--keep-objects is for torch checkpoints; an ONNX model holds"),
        (["inspect", "m.onnx"], "--keep-objects is for torch checkpoints, not an ONNX model"),
        (["inspect", "model.py"], "--keep-objects is for torch checkpoints, not a model.py"),
        (["inspect", "folder.pt"], "--keep-objects is for torch checkpoints, not an ONNX model"),
    ],
)
def test_keep_objects_is_refused_where_no_torch_checkpoint_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    if argv[1] == "folder.pt":  # a folder of that name: its ONNX models (t299)
        (tmp_path / "folder.pt").mkdir()
        (tmp_path / "folder.pt" / "m.onnx").write_text("x")
    else:
        (tmp_path / argv[1]).write_text("")
    argv = [argv[0], str(tmp_path / argv[1]), "--keep-objects"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
