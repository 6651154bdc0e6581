"""wnpass fold on the command line: sites that cannot fold exactly are kept and reported, and
every opset from 9 on folds."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from tests.helpers import assert_close, onnx_model, op_types, rand, run, weight_normed
from tests.hostile.builders import WN, unchecked
from tests.onnx.helpers import ir3_linear
from wnpass.cli import main


@pytest.mark.parametrize(
    ("v", "reason"),
    [
        (np.array([[1, 2, 3, 4], [0, 0, 0, 0], [1, 1, 1, 1]], np.float32), "zero-norm"),
        (np.array([[1, 2, 3, np.nan], [1, 0, 0, 0], [1, 1, 1, 1]], np.float32), "NaN or Inf"),
        (np.array([[1, 2, 3, np.inf], [1, 0, 0, 0], [1, 1, 1, 1]], np.float32), "NaN or Inf"),
    ],
)
def test_weights_that_cannot_fold_exactly_are_kept_and_warned_about(
    v: np.ndarray, reason: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Never a silent NaN: the site stays exactly as it was, with a warning and the reason."""
    path = unchecked(tmp_path, onnx_model(WN, v=v, g=rand(3, 1)))
    assert main(["fold", str(path)]) == 0
    assert any(reason in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    folded = onnx.load(tmp_path / "model.folded.onnx")
    assert [n.op_type for n in folded.graph.node] == ["ReduceL2", "Div", "Mul", "Gemm"]


@pytest.mark.parametrize("opset", range(9, onnx.defs.onnx_opset_version() + 1))
def test_every_opset_from_9_to_the_newest_folds(opset: int, tmp_path: Path) -> None:
    """ReduceL2 takes axes as an attribute before opset 18 and as an input from 18 on."""
    axes = "<axes = [1]> (v)" if opset < 18 else "(v, ax)"
    text = (
        WN.replace('"" : 17', f'"" : {opset}')
        .replace("ir_version: 8", f"ir_version: {7 if opset < 14 else 8}")
        .replace("<axes = [1]> (v)", axes)
        .replace("(x, w)", "(x, w, c)")  # Gemm needs C before opset 11
    )
    extra: dict[str, Any] = {"ax": np.array([1], np.int64)} if opset >= 18 else {}
    model = onnx_model(text, v=rand(3, 4), g=rand(3, 1), c=np.zeros(3, np.float32), **extra)
    path = unchecked(tmp_path, model)
    assert main(["fold", str(path)]) == 0
    folded = tmp_path / "model.folded.onnx"
    assert [n.op_type for n in onnx.load(folded).graph.node] == ["Gemm"]
    feeds = {"x": rand(2, 4)}
    try:
        expected = run(path, feeds)
    except Exception as error:  # an onnxruntime older than this opset
        pytest.skip(f"onnxruntime cannot run opset {opset}: {str(error).splitlines()[0][:120]}")
    assert_close(run(folded, feeds), expected)


@pytest.mark.parametrize("command", ["fold", "inspect"])
def test_the_model_is_read_once_while_onnx_is_imported(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI reads the model ahead, and the loader takes those bytes instead of reading."""
    path = unchecked(tmp_path, onnx_model(WN, v=rand(3, 4), g=rand(3, 1)))

    def no_second_read(self: Path) -> bytes:
        raise AssertionError(f"{self} read again")

    monkeypatch.setattr(Path, "read_bytes", no_second_read)
    assert main([command, str(path)]) == 0
    if command == "fold":
        folded = onnx.load(tmp_path / "model.folded.onnx")
        assert [n.op_type for n in folded.graph.node] == ["Gemm"]


def test_fold_verify_of_an_ir3_model_passes(tmp_path: Path) -> None:
    """The output of an IR version 3 model is one the checker accepts (its new initializers
    listed as graph inputs), so the check of ``--verify`` can read it."""
    path = tmp_path / "ir3.onnx"
    onnx.save(ir3_linear(), path)
    assert main(["fold", str(path), "--verify"]) == 0
    onnx.checker.check_model(onnx.load(tmp_path / "ir3.folded.onnx"), full_check=True)


def test_fold_verify_reads_the_inputs_draws_as_check_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Bernoulli whose probabilities a folded layer computes: ``check`` says it draws
    otherwise, but ``fold --verify`` read the draws of the model already folded (in place) as
    the reference's, and passed (t201)."""
    text = """
        <ir_version: 9, opset_import: ["" : 17]>
        agraph (float[2, 4] x) => (float[2, 3] y, float[2, 3] b) {
            n = ReduceL2 <axes = [1]> (v)
            d = Div(v, n)
            w = Mul(g, d)
            y = Gemm <transB = 1> (x, w)
            z = Mul(y, zero)
            p = Add(z, one)
            b = Bernoulli <seed = 3.0> (p)
        }
    """
    zero, one = np.zeros(1, np.float32), np.ones(1, np.float32)
    path = tmp_path / "model.onnx"
    onnx.save(onnx_model(text, v=rand(3, 4), g=rand(3, 1) + 0.5, zero=zero, one=one), path)
    assert main(["fold", str(path), "--verify", "--runs", "1"]) == 1
    assert "the candidate holds random ops the reference does not" in capsys.readouterr().out
    assert not (tmp_path / "model.folded.onnx").exists()


def test_an_invalid_output_is_an_internal_error_not_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folded model the checker refuses is wnpass's fault: exit 3, never 2 blaming the
    staging file; nothing is written. (The IR version 3 rules left out to make one.)"""
    path = tmp_path / "ir3.onnx"
    onnx.save(ir3_linear(), path)
    monkeypatch.setattr("wnpass.onnx.fold.constant_initializers", lambda model: nullcontext())
    assert main(["fold", str(path), "--verify"]) == 3
    assert "internal error" in capsys.readouterr().err
    assert not (tmp_path / "ir3.folded.onnx").exists()


def test_an_invalid_output_is_never_written_verified_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --verify, a fold's bug that made the model invalid (two values of one name,
    t90) was written, exit 0, and --in-place replaced the valid input with it: the output is
    checked before anything is written."""
    path = tmp_path / "ir3.onnx"
    onnx.save(ir3_linear(), path)
    before = path.read_bytes()
    monkeypatch.setattr("wnpass.onnx.fold.constant_initializers", lambda model: nullcontext())
    assert main(["fold", str(path), "--in-place"]) == 3
    assert "the model to write is not valid" in capsys.readouterr().err
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "ir3.onnx"
    ]


def _external_small(tmp_path: Path, g_rows: int, unsqueeze: bool) -> Path:
    """A weight-normed Gemm (v 64x64, g ``g_rows`` x 1), every tensor in the data file,
    ``axes`` too; with ``unsqueeze``, its output unsqueezed at an axis held there too."""
    from onnx import helper as oh
    from onnx import numpy_helper

    v = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    g, axes = np.ones((g_rows, 1), np.float32), np.array([1], np.int64)
    arrays: list[tuple[np.ndarray, str]] = [(v, "v"), (g, "g"), (axes, "axes")]
    arrays.append((np.array([2], np.int64), "uaxes"))
    tensors = [numpy_helper.from_array(a, name) for a, name in arrays]
    nodes = [
        oh.make_node("ReduceL2", ["v", "axes"], ["n"], keepdims=1),
        oh.make_node("Div", ["v", "n"], ["d"]),
        oh.make_node("Mul", ["g", "d"], ["w"]),
        oh.make_node("Gemm", ["x", "w"], ["y0" if unsqueeze else "y"], transB=1),
    ]
    if unsqueeze:
        nodes.append(oh.make_node("Unsqueeze", ["y0", "uaxes"], ["y"]))
    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 64, 1][: 2 + unsqueeze])
    graph = oh.make_graph(nodes, "g", [x], [y], tensors)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)])
    model.ir_version = 9
    path = tmp_path / "m.onnx"
    onnx.save(model, path, save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    return path


def test_small_tensors_in_a_data_file_are_read_for_the_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """g of 32 rows against v's 64, every tensor in the data file, axes too: the input's
    check saw no axes value (a data file's tensor was checked by type and shape), the
    output's did, and the fold called the user's model an internal error, exit 3 (t101).
    The checks read small tensors from the data file: the input is refused on load, exit 2,
    nothing written; and a valid model whose Unsqueeze reads its axes there is folded (the
    output's check had taken them as zeros, t102)."""
    path = _external_small(tmp_path, 32, unsqueeze=False)
    assert main(["fold", str(path)]) == 2
    assert f"{path}: rejected by the ONNX checker: " in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]
    valid = tmp_path / "valid"
    valid.mkdir()
    path = _external_small(valid, 64, unsqueeze=True)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    assert main(["fold", str(path)]) == 0


def test_a_refold_names_the_old_data_file_it_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """o.onnx, written by wnpass with its weights in o.onnx.data, and deploy.onnx, a copy of
    it (``cp``: it points at o.onnx.data too). Folding onto o.onnx again deletes o.onnx.data,
    wnpass's own data file, and deploy.onnx loses its weights: it went without a word. The
    table and the JSON report name every file the run deleted."""
    source = weight_normed(tmp_path, external=True)
    out, data = tmp_path / "o.onnx", tmp_path / "o.onnx.data"
    assert main(["fold", str(source), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "removed" not in printed
    # the data file that must travel with the output is named (it was "wrote o.onnx" only)
    assert f"wrote {out} and its data file {data}\n" in printed
    shutil.copy(out, tmp_path / "deploy.onnx")
    report = tmp_path / "report.json"
    assert main(["fold", str(source), "-o", str(out), "--json", str(report)]) == 0
    assert not data.exists()
    assert f"removed: {data} (the replaced output's data file)" in capsys.readouterr().out
    assert json.loads(report.read_text())["removed"] == [str(data)]


def test_a_refold_keeps_the_old_data_file_of_an_output_with_another_hard_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """o.onnx, kept as release.onnx too by a hard link, then folded onto again: its data
    file was deleted, and release.onnx could no longer be loaded (t101). The replaced model
    lives on under its other name, so its data file stays, and a line says why."""
    source = weight_normed(tmp_path, external=True)
    out, data = tmp_path / "o.onnx", tmp_path / "o.onnx.data"
    assert main(["fold", str(source), "-o", str(out)]) == 0
    os.link(out, tmp_path / "release.onnx")
    capsys.readouterr()
    assert main(["fold", str(source), "-o", str(out)]) == 0
    assert data.exists() and "removed" not in (printed := capsys.readouterr().out)
    why = "the replaced output has other hard links, which still use it"
    assert f"left in place: {data}: kept ({why})" in printed
    assert main(["inspect", str(tmp_path / "release.onnx")]) == 0  # loads, weights and all


def test_fold_verify_of_an_input_onnx_runtime_cannot_run_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The input itself fails in ONNX Runtime (a Reshape to twice its length): exit 2 naming
    it, as check says of a reference; it was an internal error (exit 3) blaming the fold."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[4] x) => (float[4] y) { s = Shape(x)  t = Mul(s, k)  y = Reshape(x, t) }
    """
    path = tmp_path / "reshape.onnx"
    onnx.save(onnx_model(text, check=False, k=np.array([2], np.int64)), path)
    assert main(["fold", str(path), "--verify", "--runs", "1"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"wnpass: error: {path}: onnxruntime failed to run it")
        and len(err.splitlines()) == 1
    )
    assert not (tmp_path / "reshape.folded.onnx").exists()


def test_fold_in_place_verify_names_the_folded_model_and_the_input_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed "equivalent: ip.onnx matches ip.onnx", a file compared with itself."""
    path = tmp_path / "ip.onnx"
    onnx.save(ir3_linear(), path)
    assert main(["fold", str(path), "--in-place", "--verify"]) == 0
    assert f"equivalent: the folded {path} matches {path}\n" in capsys.readouterr().out
    before = path.stat()
    assert main(["fold", str(path), "--in-place", "--verify"]) == 0  # nothing left to fold
    out = capsys.readouterr().out
    assert f"nothing to fold: {path} is left as it is, not rewritten\n" in out
    assert "equivalent" not in out and "wrote" not in out  # nothing written, nothing checked
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_snapshot_folder_given_as_the_model_names_its_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Hugging Face snapshot folder given to fold said "is a directory, not an ONNX file"
    alone (t242): where it holds a checkpoint's index, the error names it."""
    snapshot = tmp_path / "snap"
    snapshot.mkdir()
    assert main(["fold", str(snapshot)]) == 2
    said = "is a directory, not an ONNX file or a checkpoint"
    assert capsys.readouterr().err.strip().endswith(said)
    (snapshot / "model.safetensors.index.json").write_text("{}")
    assert main(["fold", str(snapshot)]) == 2
    hint = f"(name the checkpoint's index: {snapshot / 'model.safetensors.index.json'})"
    assert capsys.readouterr().err.strip().endswith(hint)


def _folder_hint(folder: Path, names: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> str:
    """What fold says of a folder holding empty files of ``names``, given as the model."""
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(b"")
    assert main(["fold", str(folder)]) == 2
    return capsys.readouterr().err.strip()


def test_a_folder_of_checkpoints_given_as_the_model_names_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trainer's checkpoint folder given to fold said only "is a directory, not an ONNX
    file" (t295): the error names its weights (not its optimizer's state, t296); a folder of
    ONNX models, one of them, and that inspect takes the folder."""
    folder = tmp_path / "checkpoint-2"
    names = ("trainer_state.json", "optimizer.pt", "scheduler.pt", "model.safetensors")
    hint = f"(name its checkpoint, as {folder / 'model.safetensors'})"
    said = f"is a directory, not an ONNX file or a checkpoint {hint}"
    assert _folder_hint(folder, names, capsys).endswith(said)
    upscaler = tmp_path / "upscaler"  # weights whose names hold "optim", "scaler" (t299)
    named = upscaler / "upscaler.safetensors"
    assert _folder_hint(upscaler, ("optimizer.pt", "upscaler.safetensors"), capsys).endswith(
        f"(name its checkpoint, as {named})"
    )
    deepspeed = tmp_path / "global_step10"  # its optimizer's state sorts first (t297)
    shards = ("bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt", "mp_rank_00_model_states.pt")
    named = deepspeed / "mp_rank_00_model_states.pt"
    assert _folder_hint(deepspeed, shards, capsys).endswith(f"(name its checkpoint, as {named})")
    (folder / "model.onnx").write_bytes(b"")
    (folder / ".a.onnx").write_bytes(b"")  # hidden, as inspect of the folder skips it (t315)
    assert main(["fold", str(folder)]) == 2
    hint = f"(name one of its files, as {folder / 'model.onnx'}; inspect takes a folder)"
    assert capsys.readouterr().err.strip().endswith(hint)


@pytest.mark.parametrize(
    "command",
    [
        ["fold", "{folder}", "-o", "x.pt"],
        ["fold", "{folder}", "--model", "m.py"],
        ["fold", "{folder}", "--keep-objects"],
        ["convert", "{folder}", "--to", "legacy"],
    ],
)
def test_a_folder_is_named_as_a_folder_before_options_it_makes_moot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """A trainer's folder given with -o x.pt was refused as "an ONNX output's name must end
    with .onnx", with --model as "for ONNX use --verify", and to convert as "not a checkpoint
    name" (t297): each says it is a folder and names its weights."""
    folder = tmp_path / "checkpoint-2"
    folder.mkdir()
    for name in ("optimizer.pt", "pytorch_model.bin"):
        (folder / name).write_bytes(b"")
    assert main([part.format(folder=folder) for part in command]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"wnpass: error: {folder}: is a directory, not ")
    assert err.endswith(f"(name its checkpoint, as {folder / 'pytorch_model.bin'})")


def test_a_torch_distributed_checkpoint_is_named_with_how_to_make_one_file_of_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An FSDP run's torch.distributed.checkpoint folder was "a folder with no .onnx file in
    it" to inspect and "a directory" to fold, and its shard "a torch.save file: a link named
    X.pt will do", which then failed as a corrupted file (t302)."""
    folder = tmp_path / "step_100"
    folder.mkdir()
    (folder / ".metadata").write_bytes(b"\x80\x02}q\x00.")
    (folder / "__0_0.distcp").write_bytes(b"PK\x03\x04" + bytes(60))
    said = "torch.distributed.checkpoint's format, which wnpass does not read: make one file of"
    for command in (["fold", str(folder)], ["inspect", str(folder)]):
        assert main(command) == 2
        assert said in capsys.readouterr().err
    for command in (  # its files, to each command, before options only an ONNX fold takes
        ["fold", str(folder / "__0_0.distcp")],
        ["fold", str(folder / "__0_0.distcp"), "-o", "out.pt"],
        ["fold", str(folder / ".metadata"), "--keep-objects"],
        ["convert", str(folder / "__0_0.distcp"), "--to", "legacy"],
    ):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert f"{command[1]}: a file of a folder in {said}" in err and "X.pt" not in err
    (named := tmp_path / "dcp.pt").mkdir()  # saved with checkpoint_id="dcp.pt"
    for name in (".metadata", "__0_0.distcp"):
        (named / name).write_bytes((folder / name).read_bytes())
    for command in (["fold", str(named)], ["convert", str(named), "--to", "legacy"]):
        assert main(command) == 2
        assert said in capsys.readouterr().err


def test_a_folder_hint_names_only_a_file_the_command_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """convert named a folder's ONNX model, which it refuses, and check a checkpoint (t304); a
    folder named as a checkpoint (x.pt) got no hint."""
    (mixed := tmp_path / "mixed").mkdir()
    for name in ("model.onnx", "pytorch_model.bin"):
        (mixed / name).write_bytes(b"")
    (weights := tmp_path / "trainer").mkdir()
    (weights / "pytorch_model.bin").write_bytes(b"")
    (named := tmp_path / "x.pt").mkdir()
    (named / "model.safetensors").write_bytes(b"")
    onnx.save(ir3_linear(), model := tmp_path / "m.onnx")
    for command, hint in (
        (["convert", str(mixed), "--to", "legacy"], f"as {mixed / 'pytorch_model.bin'})"),
        (["check", str(mixed), str(model)], f"as {mixed / 'model.onnx'}; inspect takes a folder)"),
        (["check", str(weights), str(model)], "is a directory, not an ONNX file"),
        (["fold", str(named), "-o", "y.pt"], f"as {named / 'model.safetensors'})"),
        (["convert", str(named), "--to", "legacy"], f"as {named / 'model.safetensors'})"),
    ):
        assert main(command) == 2
        assert capsys.readouterr().err.strip().endswith(hint), command


def test_a_model_onnx_runtimes_transformers_optimizer_wrote_at_opset_14_folds(
    tmp_path: Path,
) -> None:
    """Its fused LayerNorm is ONNX Runtime's own LayerNormalization, before ONNX's at opset 17,
    which the ONNX checker has no schema for: the model was refused whole (exit 2, t336). It
    folds, computes what it computed, and checks equivalent."""
    text = WN.replace('"" : 17', '"" : 14').replace(
        "y = Gemm <transB = 1> (x, w)",
        "h = Gemm <transB = 1> (x, w)\n y = LayerNormalization <epsilon = 1e-5> (h, s, b)",
    )
    model = onnx_model(text, None, False, v=rand(3, 4), g=rand(3, 1), s=rand(3), b=rand(3))
    path, out = unchecked(tmp_path, model), tmp_path / "folded.onnx"
    assert main(["fold", str(path), "-o", str(out)]) == 0
    assert "ReduceL2" not in op_types(onnx.load(out))
    feeds = {"x": rand(2, 4)}
    assert_close(run(out, feeds), run(path, feeds))
    assert main(["check", str(path), str(out)]) == 0
