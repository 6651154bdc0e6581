"""``wnpass train-rewrite`` and ``wnpass inspect model.py``: plan, check, atomic output, exits."""

from __future__ import annotations

import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.fx.helpers import PLAIN
from tests.helpers import cli_with_file_limit
from wnpass.cli import main

# Not reproducible: each call adds its count (random numbers would be drawn alike).
NOISY = """
import torch
from torch.nn.utils import parametrize
def build_model():
    class Noisy(torch.nn.Linear):
        def forward(self, x):  # changes its outputs once weight norm is on its weight
            return super().forward(x) * (2 if parametrize.is_parametrized(self) else 1)
    return Noisy(3, 3)
def example_inputs():
    return (torch.randn(2, 3),)
"""

# Sampling noise at inference (VITS-style) and dropout left on: random numbers in forward.
SAMPLING = """
import torch
import torch.nn.functional as F
def build_model():
    class Sampling(torch.nn.Linear):
        def forward(self, x):
            y = super().forward(x)
            return F.dropout(y + 0.01 * torch.randn_like(y), 0.5, training=True)
    return Sampling(8, 8)
def example_inputs():
    return (torch.randn(4, 8),)
"""

NAN_AFTER = """
import torch
from torch.nn.utils import parametrize
def build_model():
    class TurnsNaN(torch.nn.Linear):
        def forward(self, x):
            y = super().forward(x)
            return y * float("nan") if parametrize.is_parametrized(self) else y
    return TurnsNaN(3, 3)
def example_inputs():
    return (torch.randn(2, 3),)
"""


def _copy(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text((PLAIN / f"{name}.py").read_text())
    return path


def test_train_rewrite_prints_plan_checks_and_writes_state_dict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Default output <stem>.wn.pt with standard keys; plan, verdict and JSON report."""
    model_py = _copy(tmp_path, "vocoder")
    assert main(["train-rewrite", str(model_py), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "ups.0.weight" in out and "ConvTranspose1d" in out and "equivalent" in out
    state = torch.load(tmp_path / "vocoder.wn.pt", weights_only=True)
    assert "ups.0.parametrizations.weight.original0" in state
    assert state["ups.0.parametrizations.weight.original0"].shape == (1, 64, 1)  # axis 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["applied"] == 6 and report["ok"] is True and report["equivalent"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "vocoder.py", "vocoder.wn.pt"]


def test_checkpoint_exclude_and_data_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--checkpoint is loaded first, --exclude honoured, --init data with a --data batch,
    which the summary names (it said "a forward on the example inputs")."""
    model_py = _copy(tmp_path, "mlp")
    from wnpass import load_model_py

    model, _ = load_model_py(model_py)
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    torch.save(torch.rand(32, 64), tmp_path / "batch.pt")
    argv = ["train-rewrite", str(model_py), "--checkpoint", str(tmp_path / "ckpt.pt")]
    argv += ["--exclude", "4", "--init", "data", "--data", str(tmp_path / "batch.pt")]
    argv += ["-o", str(tmp_path / "out.pt"), "--json", str(tmp_path / "r.json")]
    assert main(argv) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    sites = {s["name"]: s for s in report["sites"]}
    assert sites["4.weight"]["reason"] == "excluded (4)"
    assert sites["0.weight"]["init"] == "data, v rescaled"
    assert "4.weight" in torch.load(tmp_path / "out.pt", weights_only=True)
    batch = tmp_path / "batch.pt"
    printed = capsys.readouterr().out
    assert f"uses observed in a forward on the batch in {batch}, " in printed
    # the checkpoint's values of the layers data init drew anew are not in the output (t71)
    assert f"of 2 layers: {tmp_path / 'ckpt.pt'}'s values of them are not kept" in printed


def test_a_checkpoint_weight_normed_at_another_axis_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint of wav2vec2 holds its positional conv weight-normed at the kernel axis (2);
    train-rewrite folded it as loaded and put weight norm on at the conv's output channels
    without a word (t291): the outputs are the same, the gains the training goes on with
    are not. A weight at the axis weight norm goes on at is not named."""
    from torch.nn.utils.parametrizations import weight_norm

    from wnpass import load_model_py

    model_py = _copy(tmp_path, "mlp")
    model, _ = load_model_py(model_py)
    weight_norm(model.get_submodule("0"), "weight", dim=1)
    weight_norm(model.get_submodule("4"), "weight", dim=0)
    # any name, as export reads it: HiFi-GAN's g_02500000 was loaded, then refused by the
    # note's second reading, "not a checkpoint name", exit 2 (t309)
    for name in ("ckpt.pt", "g_02500000"):
        torch.save(model.state_dict(), tmp_path / name)
        argv = ["train-rewrite", str(model_py), "--checkpoint", str(tmp_path / name)]
        assert main([*argv, "-o", str(tmp_path / "out.pt")]) == 0
        assert (
            f"note: {tmp_path / name} holds 0.weight (axis 1 -> axis 0) weight-normed at "
            "another axis than weight norm now goes on: folded as loaded"
        ) in capsys.readouterr().out


def test_a_checkpoints_pairs_at_the_same_axes_are_kept_as_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A weight-normed training checkpoint given to train-rewrite: each pair was folded on
    load, then split again as ``g = ||w||``, ``v = w``; a negative g came back positive and
    ``||v||`` became g, so a resumed optimizer's state no longer fit (t317). Pairs the model
    now holds at the same axes are written as stored; one at another axis is normalized
    again, as its note says."""
    from torch.nn.utils.parametrizations import weight_norm

    from wnpass import load_model_py

    model_py = tmp_path / "two.py"
    model_py.write_text(
        "import torch\nfrom torch import nn\n\n"
        "def build_model():\n    return nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))\n\n"
        "def example_inputs():\n    return (torch.rand(8, 4),)\n"
    )
    model, _ = load_model_py(model_py)
    weight_norm(model.get_submodule("0"), "weight", dim=0)
    weight_norm(model.get_submodule("1"), "weight", dim=1)  # another axis than the unit's
    trained = {k: t.clone() for k, t in model.state_dict().items()}
    g0, v0 = "0.parametrizations.weight.original0", "0.parametrizations.weight.original1"
    trained[g0][0] *= -1  # a gain training left negative
    trained[v0] *= 3  # ||v|| no longer g
    torch.save(trained, tmp_path / "ckpt.pt")
    out = tmp_path / "out.pt"
    from wnpass.fx import files

    reads: list[Path] = []  # the pairs put back are those loaded, not a second reading's
    read = files.read_state_dict

    def counted(path: Path, **options: Any) -> dict[str, Any]:
        reads.append(path)
        return read(path, **options)

    monkeypatch.setattr(files, "read_state_dict", counted)
    argv = ["train-rewrite", str(model_py), "--checkpoint", str(tmp_path / "ckpt.pt")]
    assert main([*argv, "-o", str(out)]) == 0
    assert reads == [tmp_path / "ckpt.pt"]
    said = capsys.readouterr().out
    assert f"1 weight-norm pair of {tmp_path / 'ckpt.pt'} kept as stored" in said
    assert "weight-normed at another axis" in said
    written = torch.load(out, weights_only=True)
    assert torch.equal(written[g0], trained[g0]) and torch.equal(written[v0], trained[v0])
    g1 = "1.parametrizations.weight.original0"
    assert written[g1].shape == (2, 1) and trained[g1].shape == (1, 3)


def test_pairs_of_another_dtype_are_split_again_and_shared_ones_counted_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bfloat16 pair put back into a float32 model computed another weight than the one
    loaded (rounded to bfloat16) and checked: 3e-3 of the outputs' scale off the reference
    said equivalent (t318). Such pairs stay as weight norm split the loaded weight, said in
    a note; one module under two names is one pair in the count, not two."""
    from torch.nn.utils.parametrizations import weight_norm

    from wnpass import load_model_py

    model_py = tmp_path / "shared.py"
    model_py.write_text(
        "import torch\nfrom torch import nn\n\n"
        "def build_model():\n"
        "    torch.manual_seed(0)\n"
        "    shared = nn.Linear(4, 4)\n"
        "    return nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(4, 2))\n\n"
        "def example_inputs():\n    return (torch.rand(8, 4),)\n"
    )
    model, _ = load_model_py(model_py)
    weight_norm(model.get_submodule("0"), "weight", dim=0)
    weight_norm(model.get_submodule("3"), "weight", dim=0)
    trained = dict(model.state_dict())
    g3, v3 = "3.parametrizations.weight.original0", "3.parametrizations.weight.original1"
    trained[g3], trained[v3] = trained[g3].bfloat16(), (3 * trained[v3]).bfloat16()
    torch.save(trained, tmp_path / "ckpt.pt")
    out = tmp_path / "out.pt"
    argv = ["train-rewrite", str(model_py), "--checkpoint", str(tmp_path / "ckpt.pt")]
    assert main([*argv, "-o", str(out)]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert f"1 weight-norm pair of {tmp_path / 'ckpt.pt'} kept as stored" in said
    assert f"{tmp_path / 'ckpt.pt'} holds 3.weight weight-normed in another dtype" in said
    written = torch.load(out, weights_only=True)
    g0 = "0.parametrizations.weight.original0"
    assert torch.equal(written[g0], trained[g0])
    assert written[g3].dtype == torch.float32 and not torch.equal(written[v3], trained[v3].float())


@pytest.mark.parametrize("case", ["one output unit", "data init"])
def test_no_axis_note_where_the_gains_are_the_checkpoints_or_drawn_anew(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """A layer of one output unit has one norm whatever the axis: its whole-tensor pair was
    said moved to axis 0. With --init data the gains are drawn anew, which a note of its own
    says: the axis note said the outputs are the same (t294)."""
    from torch.nn.utils.parametrizations import weight_norm

    from wnpass import load_model_py

    model_py = tmp_path / "one.py"
    model_py.write_text(
        "import torch\nfrom torch import nn\n\n"
        "def build_model():\n    return nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 1))\n\n"
        "def example_inputs():\n    return (torch.rand(8, 4),)\n"
    )
    model, _ = load_model_py(model_py)
    weight_norm(model.get_submodule("0"), "weight", dim=1 if case == "data init" else 0)
    weight_norm(model.get_submodule("1"), "weight", dim=None)  # type: ignore[arg-type]
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    argv = ["train-rewrite", str(model_py), "--checkpoint", str(tmp_path / "ckpt.pt")]
    argv += ["--init", "data"] if case == "data init" else []
    assert main([*argv, "-o", str(tmp_path / "out.pt")]) == 0
    assert "weight-normed at another axis" not in capsys.readouterr().out


def test_a_trainer_checkpoint_holding_objects_loads_with_keep_objects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Lightning checkpoint whose hyper-parameters hold a path was refused with no way out
    (t302): --keep-objects loads its state dict, the objects never built; it is suggested
    where it would do, and refused without --checkpoint."""
    import pathlib

    from wnpass import load_model_py

    model_py = _copy(tmp_path, "mlp")
    model, _ = load_model_py(model_py)
    state = {key: tensor.detach() + 1.0 for key, tensor in model.state_dict().items()}
    hyper = {"data_dir": pathlib.PurePosixPath("/data")}
    torch.save({"state_dict": state, "hyper_parameters": hyper}, ckpt := tmp_path / "last.ckpt")
    argv = ["train-rewrite", str(model_py), "-o", str(tmp_path / "o.pt"), "--keep-objects"]
    assert main(argv) == 2
    assert "--keep-objects goes with --checkpoint" in capsys.readouterr().err
    argv += ["--checkpoint", str(ckpt)]
    assert main(argv[:-3] + argv[-2:]) == 2
    err = capsys.readouterr().err
    assert "pathlib.PurePosixPath" in err and "--keep-objects" in err
    assert not (tmp_path / "o.pt").exists()
    assert main(argv) == 0
    written = torch.load(tmp_path / "o.pt", weights_only=True)
    torch.testing.assert_close(written["4.bias"], state["4.bias"], rtol=0, atol=0)
    # a safetensors file holds no objects: refused, as for an ONNX model, not taken (t309)
    from safetensors.torch import save_file

    save_file(state, tensors := tmp_path / "w.safetensors")
    assert main([*argv[:-1], str(tensors)]) == 2
    assert capsys.readouterr().err == (
        f"wnpass: error: --keep-objects is for torch.save files; {tensors} is a safetensors "
        "checkpoint, which holds no objects\n"
    )


def test_a_sharded_safetensors_checkpoint_is_loaded_and_its_shards_planned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--checkpoint takes a sharded index like the checkpoint commands; its shards are read,
    so --json naming one is refused before anything is written."""
    from tests.checkpoint.builders import save_sharded
    from wnpass import load_model_py

    model_py = _copy(tmp_path, "mlp")
    model, _ = load_model_py(model_py)
    state = {key: tensor.detach() + 1.0 for key, tensor in model.state_dict().items()}  # not init
    keys = list(state)
    index = save_sharded(tmp_path, state, [keys[:2], keys[2:]])
    shard = tmp_path / "model-00002-of-00002.safetensors"
    before = shard.read_bytes()
    argv = [
        "train-rewrite",
        str(model_py),
        "--checkpoint",
        str(index),
        "-o",
        str(tmp_path / "o.pt"),
    ]
    assert main([*argv, "--json", str(shard)]) == 2
    assert "a shard of the checkpoint" in capsys.readouterr().err
    assert shard.read_bytes() == before and not (tmp_path / "o.pt").exists()
    assert main(argv) == 0
    written = torch.load(tmp_path / "o.pt", weights_only=True)
    torch.testing.assert_close(written["4.bias"], state["4.bias"], rtol=0, atol=0)


def test_failed_equivalence_exits_1_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model whose outputs are not reproducible fails the check: exit 1, no output file."""
    model_py = tmp_path / "noisy.py"
    model_py.write_text(NOISY)
    assert main(["train-rewrite", str(model_py)]) == 1
    assert "NOT EQUIVALENT" in capsys.readouterr().out
    assert not (tmp_path / "noisy.wn.pt").exists()


def test_rtol_sets_the_outputs_tolerance_and_goes_with_init_keep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_py = tmp_path / "sampling.py"
    model_py.write_text(SAMPLING)
    report = tmp_path / "r.json"
    assert main(["train-rewrite", str(model_py), "--rtol", "2.6e-4", "--json", str(report)]) == 0
    assert "(tolerance 0.00026;" in capsys.readouterr().out  # as given: it printed 3e-04
    assert json.loads(report.read_text())["rtol"] == 2.6e-4
    for extra, message in (
        (["--rtol", "1e-3", "--init", "data"], "--rtol goes with --init keep"),
        (["--rtol", "-1"], "--rtol -1.0: a tolerance must be a finite number >= 0"),
        # in exponent form: argparse took it for an option, "expected one argument" (t211)
        (["--rtol", "-1e-9"], "--rtol -1e-09: a tolerance must be a finite number >= 0"),
    ):
        assert main(["train-rewrite", str(model_py), *extra]) == 2
        assert capsys.readouterr().err.startswith(f"wnpass: error: {message}")
    # a model.py without example_inputs() compares nothing: --rtol was ignored, exit 0
    no_inputs = tmp_path / "no_inputs.py"
    no_inputs.write_text(SAMPLING.split("def example_inputs")[0])
    assert main(["train-rewrite", str(no_inputs), "--rtol", "1e-3"]) == 2
    assert "has no example_inputs(), so nothing is compared" in capsys.readouterr().err


def test_a_model_drawing_random_numbers_is_compared_with_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both forwards draw the same random numbers: the rewrite is exact, not NOT EQUIVALENT."""
    model_py = tmp_path / "sampling.py"
    model_py.write_text(SAMPLING)
    assert main(["train-rewrite", str(model_py)]) == 0
    assert "equivalent: max output difference" in capsys.readouterr().out
    assert (tmp_path / "sampling.wn.pt").exists()


def test_outputs_turning_nan_fail_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """NaN where the model gave numbers is a changed output (never a 0.00 difference): exit 1,
    the reason in words and in strict JSON, no output file."""
    model_py = tmp_path / "nan.py"
    model_py.write_text(NAN_AFTER)
    assert main(["train-rewrite", str(model_py), "--json", str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out
    changed = "output (float32 2x3): NaN/Inf appeared or went away at 6 of 6 values"
    assert f"NOT EQUIVALENT: {changed}\n" in out and "0.00e+00" not in out
    assert not (tmp_path / "nan.wn.pt").exists()
    text = (tmp_path / "r.json").read_text()
    report = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert report["status"] == "outputs changed" and report["equivalent"] is False
    assert report["max_rel_error"] is None and report["changes"] == changed
    assert report["reason"] == f"the outputs changed: {changed}"


def test_inspect_model_py_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """inspect on a model.py prints the plan and writes no file."""
    model_py = _copy(tmp_path, "transformer")
    assert main(["inspect", str(model_py), "--json", str(tmp_path / "r.json")]) == 0
    assert "would apply weight norm to 5 of 14 parameters" in capsys.readouterr().out
    data = json.loads((tmp_path / "r.json").read_text())
    sites = {s["name"]: s for s in data["sites"]}
    assert sites["attn.in_proj_weight"]["status"] == "planned"
    # the summary's numbers are in the JSON (it had "applied": 0 and no count of the plan)
    assert (data["planned"], len(data["sites"]), data["applied"]) == (5, 14, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "transformer.py"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train-rewrite", "{tmp}/missing.py"], "missing.py: no such file"),
        (["train-rewrite", "{tmp}/broken.py"], "syntax error"),
        (["train-rewrite", "{model}", "--factory", "nope"], "no factory nope()"),
        (["inspect", "{tmp}/raises.py"], "build_model() raised RuntimeError: boom"),
        (  # an exception whose __str__ raises was an internal error, exit 3
            ["inspect", "{tmp}/unprintable.py"],
            "build_model() raised E: (its message could not be read: E.__str__ raised)",
        ),
        (["train-rewrite", "{model}", "-o", "{model}"], ".py: a state dict written with torch"),
        (["train-rewrite", "{model}", "--json", "{model}"], "would overwrite the model file"),
        (["train-rewrite", "{model}", "--checkpoint", "{tmp}/none.pt"], "none.pt: no such file"),
        # a missing input that is also the output: missing, not "would overwrite" (t225)
        (
            ["train-rewrite", "{model}", "--checkpoint", "{tmp}/none.pt", "-o", "{tmp}/none.pt"],
            "error: --checkpoint {tmp}/none.pt: no such file",
        ),
        (
            ["train-rewrite", "{model}", "--init", "data", "--data", "{tmp}/mlp.wn.pt"],
            "error: --data {tmp}/mlp.wn.pt: no such file",
        ),
        (
            ["train-rewrite", "{model}", "--checkpoint", "{tmp}/broken.py"],
            "broken.py: not a readable torch.save file",
        ),
        (["train-rewrite", "{model}", "--data", "{tmp}/x.pt"], "--data is the batch for"),
        (  # the flag as given: the library's include takes the types too
            ["train-rewrite", "{model}", "--include-type", "Conv2d"],
            "--include-type Conv2d selects no parameter",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Broken model.py, factory, output or checkpoint: one line on stderr, exit 2."""
    model = _copy(tmp_path, "mlp")
    (tmp_path / "broken.py").write_text("def build_model(:\n")
    (tmp_path / "raises.py").write_text("def build_model():\n    raise RuntimeError('boom')\n")
    (tmp_path / "unprintable.py").write_text(
        "class E(Exception):\n    def __str__(self):\n        raise RuntimeError('boom')\n\n"
        "def build_model():\n    raise E()\n"
    )
    argv = [a.format(tmp=tmp_path, model=model) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        message.format(tmp=tmp_path) in err
        and "Traceback" not in err
        and len(err.strip().splitlines()) == 1
    )


def test_layer_types_select_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--include-type / --exclude-type pick layers by class, in train-rewrite and inspect."""
    model_py = _copy(tmp_path, "vocoder")
    argv = ["inspect", str(model_py), "--exclude-type", "ConvTranspose1d"]
    assert main([*argv, "--json", str(tmp_path / "plan.json")]) == 0
    sites = json.loads((tmp_path / "plan.json").read_text())["sites"]
    planned = {s["name"] for s in sites if s["status"] == "planned"}
    assert "conv_pre.weight" in planned and "ups.0.weight" not in planned
    argv = ["train-rewrite", str(model_py), "--include-type", "ConvTranspose1d"]
    assert main([*argv, "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    applied = {s["name"] for s in report["sites"] if s["status"] == "applied"}
    assert applied == {"ups.0.weight", "ups.1.weight"}
    capsys.readouterr()
    assert main(["train-rewrite", str(model_py), "--include-type", "Conv9d"]) == 2
    assert "no layer type 'Conv9d'" in capsys.readouterr().err


def test_a_layer_type_on_the_command_line_takes_in_the_layers_inside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--exclude-type`` of a module holding layers (a ModuleList, a block) kept nothing out,
    exit 0 (t312): it keeps out every layer inside it. Its class name as a pattern selects
    nothing, and the refusal says what the type would select."""
    model_py = _copy(tmp_path, "vocoder")
    argv = ["inspect", str(model_py), "--exclude-type", "ModuleList"]
    assert main([*argv, "--json", str(tmp_path / "plan.json")]) == 0
    sites = json.loads((tmp_path / "plan.json").read_text())["sites"]
    planned = {s["name"] for s in sites if s["status"] == "planned"}
    assert planned == {"conv_pre.weight", "conv_post.weight"}
    assert {
        s["reason"]
        for s in sites
        if s["name"].endswith(".weight") and s["name"][:3] in ("ups", "res")
    } == {"excluded (ModuleList)"}
    capsys.readouterr()
    assert main(["inspect", str(model_py), "--include", "ModuleList"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.strip().endswith(
        "'ModuleList' names ModuleList, a class of modules holding layers: as a layer type "
        "(ModuleList), it selects the layers inside them"
    )


# A model whose only weight is weight-normed already.
NORMED_BEFORE = (
    "import torch\n"
    "from torch.nn.utils.parametrizations import weight_norm\n"
    "def build_model():\n    return weight_norm(torch.nn.Linear(4, 3))\n"
    "def example_inputs():\n    return (torch.randn(2, 4),)\n"
)


def test_applying_nothing_exits_1_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every weight already weight-normed: nothing applied, exit 1, nothing written."""
    model_py = tmp_path / "done.py"
    model_py.write_text(NORMED_BEFORE)
    assert main(["train-rewrite", str(model_py), "--json", str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] is False and report["status"] == "nothing applied"
    assert f"nothing written: {report['reason']}" in out
    assert not (tmp_path / "done.wn.pt").exists()


_EMBEDDED = (
    "import torch\n"
    "from torch import nn\n"
    "def build_model():\n"
    "    torch.manual_seed(0)\n"
    "    return nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3))\n"
    "def example_inputs():\n"
    "    return (torch.tensor([[1, 2, 3]]),)\n"
)


def test_including_only_what_weight_norm_cannot_go_on_applies_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--include-type Embedding`` said "nothing selected", exit 0, and wrote a checkpoint
    without weight norm (t145): the embedding was asked for and skipped (opt-in), the Linear
    left out by the include. Nothing applied, exit 1, nothing written, the reason naming
    the flag that asks for it; with ``--embeddings`` it goes on, at axis 0. A selection that
    leaves out on purpose every weight weight norm fits is still "nothing selected"."""
    model_py = tmp_path / "embedded.py"
    model_py.write_text(_EMBEDDED)
    out = tmp_path / "e.pt"
    argv = ["train-rewrite", str(model_py), "-o", str(out), "--include-type", "Embedding"]
    assert main([*argv, "--json", str(tmp_path / "r.json")]) == 1
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "nothing applied" and not out.exists()
    assert report["reason"] == (
        "no parameter of those included to apply weight norm to (1x embedding: opt-in "
        "(embeddings=True))"
    )
    assert "(1x embedding: opt-in (--embeddings))" in printed  # said as the flag
    assert main([*argv, "--embeddings", "--json", str(tmp_path / "r.json")]) == 0
    sites = json.loads((tmp_path / "r.json").read_text())["sites"]
    assert [(s["name"], s["axis"]) for s in sites if s["status"] == "applied"] == [("0.weight", 0)]
    argv = ["train-rewrite", str(model_py), "-o", str(out), "--exclude-type", "Linear"]
    assert main([*argv, "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "nothing selected"
    # a Linear included and excluded: its bias (1-D, never a candidate) was "asked for" (t147)
    argv = ["train-rewrite", str(model_py), "-o", str(out), "--include-type", "Linear"]
    assert main([*argv, "--exclude-type", "Linear", "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "nothing selected"
    # an include of biases alone asks for them: "nothing selected", exit 0 (t171)
    biases = tmp_path / "b.pt"
    argv = ["train-rewrite", str(model_py), "-o", str(biases), "--include", "*.bias"]
    assert main([*argv, "--json", str(tmp_path / "r.json")]) == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "nothing applied" and not biases.exists()
    assert report["reason"] == "no parameter of those included to apply weight norm to (1x bias)"


def test_an_include_of_weights_normed_before_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every Linear weight-normed before, ``--include-type Linear``: the reason blamed only
    the biases (t147); it says the weights are weight-normed already."""
    model_py = tmp_path / "done.py"
    model_py.write_text(NORMED_BEFORE)
    argv = ["train-rewrite", str(model_py), "--include-type", "Linear"]
    assert main([*argv, "--json", str(tmp_path / "r.json")]) == 1
    assert "already weight-normed" in json.loads((tmp_path / "r.json").read_text())["reason"]


def test_flags_replace_parameters_in_reasons_never_in_names() -> None:
    """A ModuleDict key ``proj_dim_policy=x`` was shown as ``proj_--dim-policy x`` (t147)."""
    from wnpass.cli.options import as_flags

    assert as_flags("embedding: opt-in (embeddings=True)") == "embedding: opt-in (--embeddings)"
    assert as_flags("use dim_policy='torch' for dim=0") == "use --dim-policy torch for dim=0"
    assert as_flags("blocks.proj_dim_policy=x.weight") == "blocks.proj_dim_policy=x.weight"
    assert as_flags("m.dim_policy='torch'.weight") == "m.dim_policy='torch'.weight"


def test_dim_policy_torch_goes_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A skip reason said "use dim_policy='torch'", which no flag was (t145): --dim-policy
    torch puts a ConvTranspose's weight norm at PyTorch's dim=0, in inspect and train-rewrite."""
    model_py = _copy(tmp_path, "vocoder")
    for command in ("inspect", "train-rewrite"):
        argv = [command, str(model_py), "--dim-policy", "torch"]
        assert main([*argv, "--json", str(tmp_path / "r.json")]) == 0
        sites = json.loads((tmp_path / "r.json").read_text())["sites"]
        axes = {s["name"]: s["axis"] for s in sites if s["status"] in ("planned", "applied")}
        assert axes["ups.0.weight"] == 0 and axes["conv_pre.weight"] == 0
        said = capsys.readouterr().out
        assert "--dim-policy torch" in said and "dim_policy=" not in said  # inspect's (t150)


@pytest.mark.parametrize("limit", [2048, 8192])
def test_a_failed_write_is_one_line_and_leaves_nothing(tmp_path: Path, limit: int) -> None:
    """Writes fail past RLIMIT_FSIZE (a full disk, as the process sees it): the OS's reason in
    one line, exit 2, no staged file left. Past 8 KiB (a buffer of the file written) torch's
    own writer said only "unexpected pos ..."."""
    model = _copy(tmp_path, "mlp")
    output = tmp_path / "mlp.wn.pt"
    result = cli_with_file_limit(limit, "-q", "train-rewrite", str(model))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"{output}: cannot write (File too large)" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_file()) == ["mlp.py"]


def _write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(source)
    return path


MLP_ONE_ROW = """
import torch
def build_model():
    return torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
def example_inputs():
    return (torch.randn(1, 8),)
"""


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (torch.full((4, 8), float("nan")), "--data {data} gives layer 0 (Linear) pre-activations"),
        (torch.randn(0, 8), "--data {data} gives layer 0 (Linear) 0 values per output unit"),
        (None, "{model}: example_inputs() gives layer 0 (Linear) 1 value per output unit"),
    ],
)
def test_data_init_on_a_batch_without_statistics_exits_2_and_writes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    batch: torch.Tensor | None,
    message: str,
) -> None:
    """A NaN, empty or one-row batch wrote NaN (or 1e6) weights with exit 0: now one line
    naming the batch the user gave (--data or example_inputs()) and the layer, exit 2."""
    model = _write(tmp_path, "mlp.py", MLP_ONE_ROW)
    data = tmp_path / "batch.pt"
    argv = ["train-rewrite", str(model), "--init", "data"]
    if batch is not None:
        torch.save(batch, data)
        argv += ["--data", str(data)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message.format(data=data, model=model) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "mlp.wn.pt").exists()


NAN_BIAS = """
import torch
def build_model():
    model = torch.nn.Linear(3, 3)
    torch.nn.init.constant_(model.bias, float("nan"))
    return model
def example_inputs():
    return (torch.randn(2, 3),)
"""


def test_outputs_nan_before_and_after_are_not_called_equivalent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """All-NaN outputs compared nothing, yet printed "equivalent: ... 0.00e+00" and wrote the
    file: now NOT COMPARED with the reason, exit 1, nothing written."""
    model = _write(tmp_path, "nan.py", NAN_BIAS)
    assert main(["train-rewrite", str(model), "--json", str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out
    assert "NOT COMPARED: no output element is finite" in out and "equivalent" not in out
    assert "nothing written: the outputs could not be compared" in out
    assert not (tmp_path / "nan.wn.pt").exists()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "nothing compared" and report["ok"] is False


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "def example_inputs():\n    return {'x': torch.randn(2, 8)}\n",
            "example_inputs() returned a dict; expected a tensor or a tuple of tensors",
        ),
        (
            "def build_model():\n    with torch.device('meta'):\n"
            "        return torch.nn.Linear(8, 6)\n",
            "Linear: parameters on the meta device hold no values (weight, bias): "
            "load or materialize them first",
        ),
    ],
)
def test_dict_inputs_and_a_meta_model_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, message: str
) -> None:
    """A dict from example_inputs() was "raised TypeError" (nothing raised); a meta-device
    model an internal error (exit 3) from aten::equal."""
    model = _write(tmp_path, "m.py", f"{(PLAIN / 'mlp.py').read_text()}\n{source}")
    assert main(["train-rewrite", str(model)]) == 2
    err = capsys.readouterr().err
    assert f"{model}: {message}" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.wn.pt").exists()


EMPTY_LAYER = """
import torch
def build_model():
    return torch.nn.Sequential(torch.nn.Linear(4, 0))
def example_inputs():
    return (torch.randn(2, 4),)
"""


def test_a_layer_without_output_units_is_skipped_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``nn.Linear(4, 0)`` was an internal error (exit 3) inside PyTorch's norm: now its
    weight is skipped, "no elements", and nothing is applied (exit 1, nothing written; the
    outputs, which have no elements, are not compared either)."""
    model = _write(tmp_path, "empty.py", EMPTY_LAYER)
    assert main(["train-rewrite", str(model), "--json", str(tmp_path / "r.json")]) == 1
    sites = json.loads((tmp_path / "r.json").read_text())["sites"]
    reasons = {site["name"]: site["reason"] for site in sites}
    assert reasons["0.weight"] == "weight with no elements (0x4): nothing to normalize"
    assert "nothing written" in capsys.readouterr().out
    assert not (tmp_path / "empty.wn.pt").exists()


SCRIPTED = """
import torch
def build_model():
    return torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 3)))
def example_inputs():
    return (torch.randn(2, 4),)
"""


@pytest.mark.parametrize("command", ["train-rewrite", "inspect"])
def test_a_torchscript_model_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """A factory returning a ScriptModule was an internal error (exit 3)."""
    model = _write(tmp_path, "scripted.py", SCRIPTED)
    assert main([command, str(model)]) == 2
    err = capsys.readouterr().err
    assert f"{model}: RecursiveScriptModule: a TorchScript module" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "scripted.wn.pt").exists()


def test_an_output_onto_a_module_the_model_py_imports_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``-o helper.py`` where model.py does ``from helper import make`` replaced helper.py by
    a torch zip (exit 0): it is read as much as the model.py; now exit 2, nothing written.
    An output named .py is refused by its name now, before the plan sees the module."""
    helper = f"wnpass_test_helper_{uuid.uuid4().hex}"
    source = "import torch\ndef make():\n    return torch.nn.Linear(4, 3)\n"
    (tmp_path / f"{helper}.py").write_text(source)
    model = _write(
        tmp_path,
        "model.py",
        f"import torch\nfrom {helper} import make\ndef build_model():\n    return make()\n"
        "def example_inputs():\n    return (torch.randn(2, 4),)\n",
    )
    try:
        assert main(["train-rewrite", str(model), "--json", str(tmp_path / f"{helper}.py")]) == 2
    finally:
        sys.modules.pop(helper, None)
    err = capsys.readouterr().err
    assert "py: a JSON report's name must end with .json" in err  # refused by its name first
    assert len(err.strip().splitlines()) == 1
    assert (tmp_path / f"{helper}.py").read_text() == source
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.py", f"{helper}.py"])


@pytest.mark.parametrize(
    ("name", "make", "raised"),
    [
        ("x.pt", lambda path: torch.save(torch.randn(4, 7), path), "RuntimeError: mat1 and mat2"),
        ("x.npz", lambda path: np.savez(path), "TypeError: Sequential.forward() missing"),
    ],
    ids=["wrong shape", "empty npz"],
)
def test_a_data_batch_the_model_cannot_run_names_the_data_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, make: Any, raised: str
) -> None:
    """A --data batch the forward fails on was blamed on the model.py's example inputs
    ("mlp.py: Sequential: the forward on the example inputs raised ..."): it names --data."""
    model = _copy(tmp_path, "mlp")
    data = tmp_path / name
    make(data)
    assert main(["train-rewrite", str(model), "--init", "data", "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"--data {data}: the model's forward on this batch raised {raised}" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "mlp.wn.pt").exists()


ALREADY = """
import torch
from torch.nn.utils.parametrizations import weight_norm
def build_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    weight_norm(model[0])
    return model
def example_inputs():
    return (torch.randn(32, 8, generator=torch.Generator().manual_seed(1)),)
"""


def test_data_init_leaves_an_excluded_weight_normed_layer_alone(tmp_path: Path) -> None:
    """``--exclude-type Linear --init data`` redrew the already weight-normed layer 0's g, v
    and bias: the state written is now the model's own, and the check compared it."""
    model = _write(tmp_path, "already.py", ALREADY)
    output, report_json = tmp_path / "a.pt", tmp_path / "r.json"
    argv = ["train-rewrite", str(model), "--init", "data", "--exclude-type", "Linear"]
    assert main([*argv, "-o", str(output), "--json", str(report_json)]) == 0
    namespace: dict[str, Any] = {}
    exec(ALREADY, namespace)
    expected = namespace["build_model"]().state_dict()
    written = torch.load(output, weights_only=True)
    assert list(written) == list(expected)
    assert all(torch.equal(written[key], value) for key, value in expected.items())
    report = json.loads(report_json.read_text())
    assert report["equivalent"] is True and report["status"] == "nothing selected"


ZEROS = """
import torch
def build_model():
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
def example_inputs():
    return (torch.zeros(4, 8),)
"""


def test_data_init_on_a_constant_batch_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A batch of zeros set every g to 1e6 with exit 0: now one line naming the layer, exit 2."""
    model = _write(tmp_path, "zeros.py", ZEROS)
    assert main(["train-rewrite", str(model), "--init", "data"]) == 2
    err = capsys.readouterr().err
    message = "example_inputs() gives layer 0 (Linear) pre-activations that are the same over"
    assert f"{model}: {message}" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "zeros.wn.pt").exists()


LSTM = """
import torch
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(4, 5, batch_first=True)
    def forward(self, x):
        return self.rnn(x)[0]
def build_model():
    return M()
def example_inputs():
    return (torch.randn(3, 6, 4),)
"""


def test_data_init_of_no_layer_is_said_and_the_outputs_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An LSTM's weights get no data init: the output said "outputs change by design ...:
    not compared" and "not a layer's weight"; now the reason, the note and the check."""
    model = _write(tmp_path, "lstm.py", LSTM)
    assert main(["train-rewrite", str(model), "--init", "data"]) == 0
    out = capsys.readouterr().out
    assert "keep: LSTM: its gates' pre-activations stay inside the op" in out
    assert "note: data init initialized no layer" in out and "not compared" not in out
    assert "\nequivalent: max output difference" in out


def test_data_init_of_a_model_weight_normed_before_is_written(tmp_path: Path) -> None:
    """Every layer weight-normed already: ``--init data`` initialized them, then said NOTHING
    APPLIED, exit 1, and wrote nothing; the init is the work done, so it is written."""
    model = _write(
        tmp_path,
        "all.py",
        ALREADY.replace("weight_norm(model[0])", "weight_norm(model[0]); weight_norm(model[2])"),
    )
    output, report_json = tmp_path / "a.pt", tmp_path / "r.json"
    argv = ["train-rewrite", str(model), "--init", "data", "-o", str(output)]
    assert main([*argv, "--json", str(report_json)]) == 0
    report = json.loads(report_json.read_text())
    assert (report["status"], report["ok"], report["applied"]) == ("ok", True, 0)
    inits = {site["name"]: site["init"] for site in report["sites"] if site["status"] == "already"}
    assert inits == {"0.weight": "data, v rescaled", "2.weight": "data, v rescaled"}
    namespace: dict[str, Any] = {}
    exec(model.read_text(), namespace)
    built = namespace["build_model"]().state_dict()
    written = torch.load(output, weights_only=True)
    assert list(written) == list(built)
    assert not torch.equal(
        written["0.parametrizations.weight.original0"], built["0.parametrizations.weight.original0"]
    )


COUNTING = """
import torch
def build_model():
    class Counting(torch.nn.Linear):
        def __init__(self):
            super().__init__(4, 3)
            self.register_buffer("steps", torch.tensor(0))
            self.register_buffer("ema", torch.zeros(3))
        def forward(self, x):
            y = super().forward(x)
            with torch.no_grad():
                self.steps += 1
                self.ema.mul_(0.9).add_(0.1 * y.mean(0))
            return y
    return Counting()
def example_inputs():
    return (torch.randn(2, 4),)
"""


@pytest.mark.parametrize("init", ["keep", "data"])
def test_buffers_the_forward_writes_are_saved_as_loaded(
    init: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A step counter and an EMA the forward updates in eval mode: the checkpoint's
    steps=1000 was saved as 1003, moved by wnpass's own forwards, without a word. Every forward
    of wnpass's gives them back, data init's too (which moved them, and a note said they were
    saved as loaded): nothing to note."""
    model_py = _write(tmp_path, "counting.py", COUNTING)
    checkpoint = tmp_path / "ck.pt"
    state = {"weight": torch.randn(3, 4), "bias": torch.zeros(3)}
    torch.save({**state, "steps": torch.tensor(1000), "ema": torch.tensor([1.0, 2.0, 3.0])},
               checkpoint)  # fmt: skip
    out = tmp_path / "out.pt"
    argv = ["train-rewrite", str(model_py), "--checkpoint", str(checkpoint), "-o", str(out)]
    assert main([*argv, "--init", init]) == 0
    saved = torch.load(out)
    assert int(saved["steps"]) == 1000 and saved["ema"].tolist() == [1.0, 2.0, 3.0]
    assert "saved as they were loaded" not in capsys.readouterr().out


def test_a_state_dict_the_model_fails_to_give_is_its_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An override of ``state_dict`` that raises was "internal error: RuntimeError", exit 3."""
    source = """
import torch
def build_model():
    class NoState(torch.nn.Linear):
        def state_dict(self, *args, **kwargs):
            raise RuntimeError("no state for you")
    return NoState(4, 3)
def example_inputs():
    return (torch.randn(2, 4),)
"""
    model_py = _write(tmp_path, "nostate.py", source)
    out = tmp_path / "out.pt"
    assert main(["train-rewrite", str(model_py), "-o", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"wnpass: error: {model_py}: the model's state_dict() raised RuntimeError: no state for you"
    )
    assert not out.exists()


_GROWS_MODEL_PY = """
import torch
from torch import nn

class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.register_buffer("pe", torch.zeros(4, 3))
        self.cached = 4

    def forward(self, x):
        if x.shape[0] > self.cached:
            self.register_buffer("pe", torch.zeros(x.shape[0], 3))
            self.cached = x.shape[0]
        return self.lin(x) + self.pe[: x.shape[0]]

def build_model():
    return M()

def example_inputs():
    return (torch.randn(10, 3),)
"""


def test_a_table_the_forward_grows_is_saved_as_loaded(tmp_path: Path) -> None:
    """wnpass's forwards grew the table: it was saved grown, and the file did not load into
    the model (t60)."""
    (tmp_path / "grows.py").write_text(_GROWS_MODEL_PY)
    out = tmp_path / "grows.wn.pt"
    assert main(["--quiet", "train-rewrite", str(tmp_path / "grows.py"), "-o", str(out)]) == 0
    assert torch.load(out, weights_only=True)["pe"].shape == (4, 3)


def test_the_help_gives_the_tolerances_the_check_holds_to(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--rtol``'s help said 1e-2 "at half precision" while bfloat16 is held to 5e-2 (t315):
    it writes out the library's values (the command line does not import torch to say them)."""
    from wnpass.fx.apply import KEEP_RTOL, KEEP_RTOL_BF16, KEEP_RTOL_HALF

    assert main(["train-rewrite", "--help"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    given = re.search(r"\(default (\S+); (\S+) where the model computes at float16, (\S+) at", said)
    assert given is not None and " at bfloat16)" in said[given.end() - 3 :]
    assert tuple(map(float, given.groups())) == (KEEP_RTOL, KEEP_RTOL_HALF, KEEP_RTOL_BF16)
