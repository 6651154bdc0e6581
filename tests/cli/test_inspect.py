"""``wnpass inspect``: the ``--strict`` gate for pipelines that guard a folder of exported models,
and several models in one process."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.helpers import inf_g, onnx_model, rand, zero_unit
from tests.hostile.builders import WN
from tests.onnx.helpers import DECLINED_ON_VALUES
from wnpass.cli import main

# A plain weight stored transposed: MatMul reads Transpose(W), a weight computed at run time.
TRANSPOSED = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[N, 4] x) => (float[N, 3] y) {
        wt = Transpose <perm = [1, 0]> (w)
        y = MatMul(x, wt)
    }
"""


def _save(tmp_path: Path, name: str, model: onnx.ModelProto) -> Path:
    path = tmp_path / name
    onnx.save(model, path)
    return path


def test_strict_fails_on_foldable_sites_and_passes_once_folded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _save(tmp_path, "model.onnx", onnx_model(WN, v=rand(3, 4), g=rand(3, 1)))
    assert main(["inspect", str(path), "--strict", "--json", str(tmp_path / "r.json")]) == 1
    assert "STRICT: 1 left to fold" in capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    # "ok" was true beside exit 1: a gate reading the JSON passed
    assert (report["remaining"], report["left_to_fold"], report["ok"]) == (1, 1, False)
    assert main(["inspect", str(path)]) == 0  # without --strict, an inspection only
    assert main(["fold", str(path)]) == 0
    folded = str(tmp_path / "model.folded.onnx")
    assert main(["inspect", folded, "--strict", "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["left_to_fold"], report["ok"]) == (0, True)


def test_a_report_that_cannot_be_written_keeps_the_gates_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk under ``--json`` made a gate that failed exit 2, bad input, and lost its
    STRICT line (t143): the verdict keeps its 1 and its lines, the error is said last; a run
    that passed exits 2, as for any file that cannot be written."""
    path = _save(tmp_path, "model.onnx", onnx_model(WN, v=rand(3, 4), g=rand(3, 1)))

    def full(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "r.json"))

    monkeypatch.setattr("wnpass.report.write_json", full)
    several = [str(path), str(path.with_name("m2.onnx"))]
    path.with_name("m2.onnx").write_bytes(path.read_bytes())
    assert main(["inspect", *several, "--strict", "--json", str(tmp_path / "r.json")]) == 1
    out, err = capsys.readouterr()
    assert out.endswith("STRICT: 2 of 2 models left to fold\n")
    assert err == f"wnpass: error: {tmp_path / 'r.json'}: No space left on device\n"
    assert main(["fold", str(path)]) == 0
    folded = str(tmp_path / "model.folded.onnx")
    capsys.readouterr()
    assert main(["inspect", folded, folded, "--strict", "--json", str(tmp_path / "r.json")]) == 2
    assert "No space left on device" in capsys.readouterr().err


def test_a_report_whose_folder_goes_away_keeps_the_scan_and_its_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """t162: the --json report's folder removed while a folder of models was inspected: the
    plan's check before the next model refused the report, the scan stopped after 97 of 400
    models without its last STRICT line, exit 2. Every model is inspected, the error is said
    last, the gate keeps its 1."""
    import wnpass.cli.inspect as cli_inspect

    path = _save(tmp_path, "m1.onnx", onnx_model(WN, v=rand(3, 4), g=rand(3, 1)))
    for name in ("m2.onnx", "m3.onnx"):
        path.with_name(name).write_bytes(path.read_bytes())
    (tmp_path / "out").mkdir()
    inspect_onnx = cli_inspect._inspect_onnx

    def then_the_folder_goes(*args: object, **kwargs: object) -> object:
        result = inspect_onnx(*args, **kwargs)  # type: ignore[arg-type]
        if (tmp_path / "out").exists():
            (tmp_path / "out").rmdir()
        return result

    monkeypatch.setattr(cli_inspect, "_inspect_onnx", then_the_folder_goes)
    models = [str(tmp_path / f"m{i}.onnx") for i in (1, 2, 3)]
    report = tmp_path / "out" / "r.json"
    assert main(["-q", "inspect", *models, "--strict", "--json", str(report)]) == 1
    out, err = capsys.readouterr()
    assert out.count("left to fold in") == 3 and out.endswith(
        "STRICT: 3 of 3 models left to fold\n"
    )
    assert err == f"wnpass: error: --json {report}: no such directory\n"


def test_a_report_naming_a_later_model_s_data_file_is_refused_before_any_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """t163: the --json report given up during a scan (a later model's data file has its
    name) and then a model that cannot be read: exit 2 named the model alone, and nothing
    said the report was not written. t271: it was refused only after the reports were
    printed (exit 1 with --strict); the data files the models name are planned first now,
    and the report is refused before any model is read: one line, exit 2."""
    good = _save(tmp_path, "a.onnx", onnx_model(WN, v=rand(3, 4), g=rand(3, 1)))
    external = onnx_model(WN, v=rand(3, 4), g=rand(3, 1))
    onnx.save_model(
        external,
        tmp_path / "b.onnx",
        save_as_external_data=True,
        location="r.json",
        size_threshold=0,
    )
    (tmp_path / "d.onnx").write_bytes(b"not a model")
    report = tmp_path / "r.json"
    models = [str(good), str(tmp_path / "b.onnx"), str(tmp_path / "d.onnx")]
    data = report.read_bytes()
    assert main(["-q", "inspect", *models, "--strict", "--json", str(report)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (err,) = captured.err.splitlines()
    assert "--json" in err and "would overwrite the input's external data" in err
    assert report.read_bytes() == data  # the data file, untouched


def _zero_unit() -> dict[str, np.ndarray]:
    return zero_unit(3, 4)


def _inf_g() -> dict[str, np.ndarray]:
    return inf_g(3, 4)


@pytest.mark.parametrize(
    ("arrays", "reason"),
    [(_zero_unit, "v has zero-norm units"), (_inf_g, "g holds NaN or Inf")],
    ids=["zero-norm", "inf-g"],
)
def test_strict_passes_when_the_fold_would_decline_every_site(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arrays, reason: str
) -> None:
    """A site the fold declines on its values is declined in the inspection, with the fold's
    reason: nothing is left to fold, so --strict passes, and its JSON says so."""
    path = _save(tmp_path, "model.onnx", onnx_model(WN, **arrays()))
    json_path = tmp_path / "r.json"
    assert main(["inspect", str(path), "--strict", "--json", str(json_path)]) == 0
    out = capsys.readouterr().out
    assert f"declined: {reason}" in out and "STRICT" not in out
    inspected = json.loads(json_path.read_text())
    # "ok" was false beside exit 0 (a declined site): a gate reading the JSON failed
    assert (inspected["left_to_fold"], inspected["ok"]) == (0, True)
    (site,) = inspected["sites"]
    assert main(["fold", str(path), "--json", str(tmp_path / "f.json")]) == 0
    (folded,) = json.loads((tmp_path / "f.json").read_text())["sites"]
    assert site["status"] == folded["status"] == "declined" and site["reason"] == folded["reason"]


def test_strict_fails_on_weights_computed_from_constants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _save(tmp_path, "t.onnx", onnx_model(TRANSPOSED, w=rand(3, 4)))
    assert main(["inspect", str(path), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "weights computed from constants" in out and "Transpose" in out
    assert main(["inspect", str(path), "--strict", "--weight-norm-only"]) == 0
    assert main(["fold", str(path)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "t.folded.onnx"), "--strict"]) == 0
    folded = onnx.load(tmp_path / "t.folded.onnx")
    assert [n.op_type for n in folded.graph.node] == ["MatMul"]


@pytest.mark.parametrize("case", DECLINED_ON_VALUES, ids=list(DECLINED_ON_VALUES))
def test_strict_passes_when_the_fold_would_decline_every_computed_weight(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """A computed weight the fold declines on computing it is declined in the inspection, with
    the fold's reason: --strict passes before the fold as after it."""
    text, arrays = DECLINED_ON_VALUES[case]
    path = _save(tmp_path, "c.onnx", onnx_model(text, None, True, **arrays))
    assert main(["fold", str(path), "--json", str(tmp_path / "f.json")]) == 0
    (folded,) = json.loads((tmp_path / "f.json").read_text())["cones"]
    assert folded["status"] == "declined"
    capsys.readouterr()
    for model in (path, tmp_path / "c.folded.onnx"):
        assert main(["inspect", str(model), "--strict", "--json", str(tmp_path / "i.json")]) == 0
        out = capsys.readouterr().out
        assert f"declined: {folded['reason']}" in out and "STRICT" not in out
        (cone,) = json.loads((tmp_path / "i.json").read_text())["cones"]
        assert (cone["status"], cone["reason"]) == (folded["status"], folded["reason"])


def test_fold_weight_norm_only_keeps_computed_weights(tmp_path: Path) -> None:
    path = _save(tmp_path, "t.onnx", onnx_model(TRANSPOSED, w=rand(3, 4)))
    assert main(["fold", str(path), "--weight-norm-only"]) == 0
    folded = onnx.load(tmp_path / "t.folded.onnx")
    assert [n.op_type for n in folded.graph.node] == ["Transpose", "MatMul"]


def test_strict_on_a_checkpoint_gates_on_weight_norm_pairs(tmp_path: Path) -> None:
    import torch

    state = {"conv.weight_g": torch.rand(4, 1, 1), "conv.weight_v": torch.randn(4, 2, 3)}
    torch.save(state, tmp_path / "g.pt")
    assert (
        main(["inspect", str(tmp_path / "g.pt"), "--strict", "--json", str(tmp_path / "r.json")])
        == 1
    )
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["left_to_fold"], report["ok"]) == (1, False)
    assert main(["fold", str(tmp_path / "g.pt")]) == 0
    assert main(["inspect", str(tmp_path / "g.folded.pt"), "--strict"]) == 0


@pytest.mark.parametrize("negated", [False, True], ids=["numpy", "torch"])
def test_strict_fails_on_a_pair_it_ran_out_of_memory_checking(
    negated: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pair whose check ran out of memory was declined, and declines are not left to fold:
    the gate passed on a file it failed on with more memory (t196). Undecided, it fails. A
    view with torch's negation bit ran out in torch's allocator, whose RuntimeError was an
    internal error (t199)."""
    import torch

    v = torch.ones(1).expand(10**6, 10**6)
    if negated:  # the imaginary part of a conjugate: a view with the negation bit
        v = torch.ones(1, dtype=torch.cfloat).expand(10**6, 10**6).conj().imag
    state = {"fc.weight_g": torch.tensor(1.0), "fc.weight_v": v}
    torch.save(state, tmp_path / "bomb.pt")  # 7.28 TiB of float32 to check: out of memory
    json_path = tmp_path / "r.json"
    assert main(["inspect", str(tmp_path / "bomb.pt"), "--strict", "--json", str(json_path)]) == 1
    out, err = capsys.readouterr()
    assert f"STRICT: 1 pair undecided in {tmp_path / 'bomb.pt'}: out of memory computing it" in out
    assert "1 weight-norm pair: 0 foldable, 1 declined; 2 tensors" in out  # no fold's wording,
    assert "not folded" not in err  # nor a warning that repeats the table's row (t196)
    report = json.loads(json_path.read_text())
    assert (report["undecided"], report["left_to_fold"], report["ok"]) == (1, 0, False)
    assert main(["inspect", str(tmp_path / "bomb.pt")]) == 0  # not a gate: an inspection


@pytest.mark.parametrize("error", [MemoryError(), OSError(errno.ENOMEM, "Cannot allocate memory")])
def test_strict_fails_on_a_weight_it_ran_out_of_memory_computing(
    error: BaseException,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same for an ONNX model's site (t196), beside another model left to fold; also
    where the system refused to map a weight's external data (ENOMEM: it was "error: Cannot
    allocate memory", naming no file)."""
    from wnpass.onnx import weights

    def out_of_memory(*args: object) -> object:
        raise error

    monkeypatch.setattr(weights, "_checked", out_of_memory)
    path = _save(tmp_path, "model.onnx", onnx_model(WN, v=rand(3, 4), g=rand(3, 1)))
    json_path = tmp_path / "r.json"
    assert main(["inspect", str(path), "--strict", "--json", str(json_path)]) == 1
    assert "STRICT: 1 weight undecided in" in capsys.readouterr().out
    report = json.loads(json_path.read_text())
    assert (report["undecided"], report["left_to_fold"], report["ok"]) == (1, 0, False)
    other = _save(tmp_path, "other.onnx", onnx_model(TRANSPOSED, w=rand(3, 4)))
    assert main(["-q", "inspect", str(path), str(other), "--strict"]) == 1
    assert "STRICT: 2 of 2 models left to fold or undecided" in capsys.readouterr().out


def test_strict_is_for_onnx_files_and_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m.py").write_text(
        "import torch\ndef build_model():\n    return torch.nn.Linear(2, 2)\n"
    )
    script = str(tmp_path / "m.py")
    assert main(["inspect", script, "--strict"]) == 2
    err = capsys.readouterr().err
    assert "--strict is for an ONNX file or a checkpoint, not a model.py" in err
    # each flag named as given: the message named --strict, not given, and a checkpoint
    # for --weight-norm-only, which refuses one too (t262)
    assert main(["inspect", script, "--weight-norm-only"]) == 2
    err = capsys.readouterr().err
    assert "--weight-norm-only is for ONNX models, not a model.py" in err
    assert "--strict" not in err


def _folder(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A folder a pipeline guards: one folded model, one with a site left, one checkpoint."""
    import torch

    left = _save(tmp_path, "left.onnx", onnx_model(WN, v=rand(3, 4), g=rand(3, 1)))
    done = _save(tmp_path, "done.onnx", onnx_model(WN, v=rand(3, 4), g=rand(3, 1)))
    assert main(["fold", str(done), "--in-place"]) == 0
    state = {"conv.weight_g": torch.rand(4, 1, 1), "conv.weight_v": torch.randn(4, 2, 3)}
    torch.save(state, tmp_path / "g.pt")
    return left, done, tmp_path / "g.pt"


def test_strict_over_several_models_fails_when_any_is_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    left, done, checkpoint = _folder(tmp_path)
    capsys.readouterr()
    assert main(["inspect", str(done), "--strict"]) == 0
    assert main(["inspect", str(left), str(done), "--strict"]) == 1  # not only the last one counts
    capsys.readouterr()
    assert main(["inspect", str(done), str(left), "--strict"]) == 1
    out = capsys.readouterr().out
    assert f"STRICT: 1 left to fold in {left}" in out
    assert out.rstrip().endswith("STRICT: 1 of 2 models left to fold")
    assert main(["inspect", str(done), str(checkpoint), "--strict"]) == 1
    assert "STRICT: 1 of 2 models left to fold" in capsys.readouterr().out
    assert main(["inspect", str(done), str(left), str(checkpoint)]) == 0  # no gate asked for


def test_quiet_summaries_of_several_models_name_their_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    left, done, checkpoint = _folder(tmp_path)
    capsys.readouterr()
    assert main(["--quiet", "inspect", str(left), str(done), str(checkpoint)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(left), str(done), str(checkpoint)]
    assert lines[0] == f"{left}: 1 weight-norm site: 1 foldable, 0 declined; 4 nodes."
    assert main(["--quiet", "inspect", str(left)]) == 0  # one model: the summary as it was
    assert capsys.readouterr().out.startswith("1 weight-norm site")


def test_json_of_several_models_is_a_list_in_their_order(tmp_path: Path) -> None:
    left, done, checkpoint = _folder(tmp_path)
    report = tmp_path / "r.json"
    assert main(["inspect", str(left), str(checkpoint), str(done), "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert [entry["input"] for entry in data] == [str(left), str(checkpoint), str(done)]
    assert [entry.get("remaining") for entry in data] == [1, None, 0]
    assert main(["inspect", str(left), "--json", str(report)]) == 0  # one model: one object
    assert json.loads(report.read_text())["input"] == str(left)


def test_several_models_are_planned_before_any_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    left, done, _ = _folder(tmp_path)
    before = done.read_bytes()
    capsys.readouterr()
    assert main(["inspect", str(left), str(done), "--json", str(done)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--json" in captured.err  # refused before the first table
    assert done.read_bytes() == before


def test_the_shards_of_every_index_are_planned_before_any_model_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--json`` naming a shard of the second input's index was refused only once that input
    was reached, after the first one's report was printed."""
    from tests.checkpoint.builders import save_sharded, state_dict

    _, done, checkpoint = _folder(tmp_path)
    state = state_dict("legacy")
    index = save_sharded(tmp_path, state, [list(state)[:7], list(state)[7:]])
    shard = tmp_path / "model-00002-of-00002.safetensors"
    before = shard.read_bytes()
    capsys.readouterr()
    for first in (done, checkpoint):
        assert main(["inspect", str(first), str(index), "--json", str(shard)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and "--json" in captured.err and shard.name in captured.err
    assert shard.read_bytes() == before


def test_a_model_py_is_inspected_on_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    left, _, _ = _folder(tmp_path)
    (tmp_path / "m.py").write_text(
        "import torch\ndef build_model():\n    return torch.nn.Linear(2, 2)\n"
    )
    capsys.readouterr()
    assert main(["inspect", str(left), str(tmp_path / "m.py")]) == 2
    assert "a model.py is inspected on its own" in capsys.readouterr().err


def test_a_bad_model_among_several_stops_with_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    left, done, _ = _folder(tmp_path)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    capsys.readouterr()
    assert main(["inspect", str(done), str(bad), str(left), "--strict"]) == 2
    captured = capsys.readouterr()
    assert str(bad) in captured.err and len(captured.err.splitlines()) == 1
    assert str(left) not in captured.out  # stopped at the bad one


def test_each_model_is_freed_before_the_next_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnx-ir models are reference cycles: without a collection between models, a folder's
    models would all stay in memory until the end (the collector is off here, so nothing but
    the command's own collection frees them)."""
    import gc
    import weakref

    import onnx_ir as ir

    from wnpass.onnx import io
    from wnpass.plan import IOPlan

    paths = [
        _save(tmp_path, f"m{i}.onnx", onnx_model(WN, v=rand(3, 4), g=rand(3, 1))) for i in range(3)
    ]
    loaded: list[weakref.ref[object]] = []
    alive_at_load: list[int] = []
    real_load = io.load

    def load(path: Path, plan: IOPlan | None = None) -> ir.Model:
        alive_at_load.append(sum(ref() is not None for ref in loaded))
        model = real_load(path, plan)
        loaded.append(weakref.ref(model.graph))
        return model

    monkeypatch.setattr(io, "load", load)
    frozen = gc.get_freeze_count()
    gc.disable()
    try:
        assert main(["inspect", *map(str, paths)]) == 0
    finally:
        gc.enable()
    assert alive_at_load == [0, 0, 0]
    assert gc.get_freeze_count() == frozen  # what the command froze, it unfroze


def test_a_folder_stands_for_the_onnx_files_under_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    left, done, _ = _folder(tmp_path)  # and a checkpoint, which a folder does not pick up
    nested = tmp_path / "sub" / "deeper"
    nested.mkdir(parents=True)
    deep = _save(nested, "deep.onnx", onnx_model(WN, v=rand(3, 4), g=rand(3, 1)))
    hidden = tmp_path / ".cache"
    hidden.mkdir()
    _save(hidden, "skipped.onnx", onnx_model(WN, v=rand(3, 4), g=rand(3, 1)))
    (tmp_path / "loop").symlink_to(tmp_path)  # a link to a folder: not followed
    (tmp_path / ".more").symlink_to(tmp_path / "sub")  # a hidden one: said too (t203)
    capsys.readouterr()
    assert main(["--quiet", "inspect", str(tmp_path), "--strict"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == (  # what the gate did not see, said (t196)
        f"{tmp_path}: skipped 1 checkpoint (name each one), 2 hidden entries (a name starting "
        "with '.'), 1 link to a folder (not followed)"
    )
    named = [line.split(": ")[0] for line in lines[1:] if not line.startswith("STRICT")]
    assert named == [str(done), str(left), str(deep)]  # in path order, each once
    assert out.rstrip().endswith("STRICT: 2 of 3 models left to fold")
    assert main(["fold", str(left), "--in-place"]) == main(["fold", str(deep), "--in-place"]) == 0
    assert main(["--quiet", "inspect", str(tmp_path), str(done), "--strict"]) == 0


def test_a_model_s_data_file_with_a_checkpoint_s_name_is_not_said_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder holding a model whose external data is ``weights.bin`` said "skipped 1
    checkpoint (name each one)" of it: it is read with its model. A checkpoint beside it is
    still said."""
    model = onnx_model(WN, v=rand(3, 4), g=rand(3, 1))
    path = tmp_path / "m.onnx"
    onnx.save(model, path, save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").is_file()
    assert main(["--quiet", "inspect", str(tmp_path)]) == 0
    assert "skipped" not in capsys.readouterr().out
    torch_file = tmp_path / "g.pt"
    torch_file.write_bytes(b"")
    assert main(["--quiet", "inspect", str(tmp_path)]) == 0
    assert f"{tmp_path}: skipped 1 checkpoint (name each one)" in capsys.readouterr().out


def test_a_model_s_data_file_named_onnx_is_read_with_its_model_not_as_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """t328: a model whose external data is ``weights.onnx`` (ONNX Runtime loads it): the
    folder's gate printed its verdict, then "weights.onnx: not a readable ONNX model", exit
    2. One model, inspected; a data file named so that no model names is still refused."""
    model = onnx_model(WN, v=rand(3, 4), g=rand(3, 1))
    path = tmp_path / "m.onnx"
    onnx.save(model, path, save_as_external_data=True, location="weights.onnx", size_threshold=0)
    report_path = tmp_path.parent / f"{tmp_path.name}.json"
    assert main(["inspect", str(tmp_path), "--strict", "--json", str(report_path)]) == 1
    (report,) = json.loads(report_path.read_text())  # one model, with a site left to fold
    assert report["input"] == str(path)
    path.unlink()
    assert main(["inspect", str(tmp_path)]) == 2
    assert "weights.onnx: not a readable ONNX model" in capsys.readouterr().err
    # a file named as data that reads as a model is one (t329: one naming itself as its data
    # made "a folder with no .onnx file in it")
    (tmp_path / "weights.onnx").unlink()
    model = onnx_model(WN, v=rand(3, 4), g=rand(3, 1))  # save() made the first one's external
    onnx.save(model, path, save_as_external_data=True, location="m.onnx", size_threshold=0)
    assert main(["inspect", str(tmp_path), "--json", str(report_path)]) == 0
    assert json.loads(report_path.read_text())[0]["input"] == str(path)


def test_a_folder_with_no_onnx_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "models").mkdir()
    assert main(["inspect", str(tmp_path / "models"), "--strict"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"wnpass: error: {tmp_path / 'models'}: a folder with no .onnx file in it"
    )
    (tmp_path / "models" / "weights.pt").write_bytes(b"")  # what it skipped is said (t206)
    assert main(["inspect", str(tmp_path / "models"), "--strict"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"wnpass: error: {tmp_path / 'models'}: a folder with no .onnx file in it; skipped 1 "
        "checkpoint (name each one)"
    )
    for name in ("optimizer.pt", "scheduler.pt"):  # a trainer's state: not said weights (t297)
        (tmp_path / "models" / name).write_bytes(b"")
    assert main(["inspect", str(tmp_path / "models"), "--strict"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("skipped 1 checkpoint (name each one), 2 files (a trainer's state, not weights)")
    )


def _left(folder: Path, name: str = "left.onnx") -> Path:
    """A model with a weight-norm site left to fold, in ``folder`` (made as needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    return _save(folder, name, onnx_model(WN, v=rand(3, 4), g=rand(3, 1)))


def test_a_folder_that_cannot_be_listed_fails_the_gate_not_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder inside is read by a path longer than the system's limit (as a folder a CI
    user may not list is): it was skipped unsaid, and the gate passed on the models it held."""
    top = tmp_path / "exported"
    _left(top / "ok", "a.onnx")
    assert main(["fold", str(top / "ok" / "a.onnx"), "--in-place"]) == 0
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(20):  # 20 x 251 bytes: past PATH_MAX (4096) as a path, but not by fd
            os.mkdir("d" * 250, dir_fd=fd)
            fd, parent = os.open("d" * 250, os.O_RDONLY, dir_fd=fd), fd
            os.close(parent)
        with os.fdopen(os.open("b.onnx", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "wb") as file:
            file.write(onnx_model(WN, v=rand(3, 4), g=rand(3, 1)).SerializeToString())
    finally:
        os.close(fd)
    capsys.readouterr()
    json_path = tmp_path / "r.json"
    assert main(["inspect", str(top), "--strict", "--json", str(json_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not json_path.exists()
    assert captured.err.startswith(f"wnpass: error: {top}/{'d' * 250}/")
    assert "cannot list it (File name too long); the models in it would go unread" in captured.err


def test_a_link_loop_in_a_folder_is_named_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model named by a link to itself: the folder, which lists, was said not to (t86)."""
    _left(tmp_path / "models")
    (tmp_path / "models" / "self.onnx").symlink_to("self.onnx")
    (tmp_path / "models" / "loop").symlink_to("loop")  # no model: not read
    assert main(["inspect", str(tmp_path / "models"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wnpass: error: {tmp_path / 'models' / 'self.onnx'}: ")
    assert "cannot list" not in err


def test_a_tree_of_any_depth_is_walked(tmp_path: Path) -> None:
    """1000 nested folders: the walk recursed once a level and crashed (exit 3)."""
    deep = tmp_path
    for _ in range(1000):  # one level at a time: Path.mkdir(parents=True) recurses too
        deep = deep / "d"
        deep.mkdir()
    try:
        _left(deep)
        json_path = tmp_path / "r.json"
        argv = ["--quiet", "inspect", str(tmp_path), "--strict", "--json", str(json_path)]
        assert main(argv) == 1
        (report,) = json.loads(json_path.read_text())
        assert report["input"] == str(deep / "left.onnx")
    finally:  # bottom up: pytest's own clean-up (shutil.rmtree) recurses as deep as the tree
        (deep / "left.onnx").unlink(missing_ok=True)
        while deep != tmp_path:
            deep.rmdir()
            deep = deep.parent


def test_a_folder_picks_up_onnx_files_in_any_case_and_each_file_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``A.ONNX`` was left out of a folder unsaid (the gate passed), and one file reached by a
    hard link, a link and a second spelling was inspected, and counted, three times. It is
    inspected once, and its other names said skipped (they were dropped unsaid, t298)."""
    upper = _left(tmp_path / "models", "A.ONNX")
    os.link(upper, tmp_path / "models" / "b.onnx")
    (tmp_path / "models" / "c.onnx").symlink_to(upper)
    capsys.readouterr()
    spelled = tmp_path / "models" / "sub" / ".." / "A.ONNX"
    (tmp_path / "models" / "sub").mkdir()
    assert main(["--quiet", "inspect", str(tmp_path / "models"), str(spelled), "--strict"]) == 1
    models = tmp_path / "models"
    others = f"{models / 'b.onnx'}, {models / 'c.onnx'}, {spelled}"
    assert capsys.readouterr().out.splitlines() == [
        f"skipped {others}: another name of {upper}, inspected once",
        f"{upper}: 1 weight-norm site: 1 foldable, 0 declined; 4 nodes.",
        f"STRICT: 1 left to fold in {upper}; run wnpass fold",
        "STRICT: 1 of 1 models left to fold",
    ]
    # two names of one file given: several models given, so a list, of one report
    json_path = tmp_path / "r.json"
    assert (
        main(["inspect", str(upper), str(tmp_path / "models" / "c.onnx"), "--json", str(json_path)])
        == 0
    )
    assert [r["input"] for r in json.loads(json_path.read_text())] == [str(upper)]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (lambda t: t / "missing.onnx", "no such file"),
        (lambda t: _loop(t / "loop.onnx"), "cannot read it (Too many levels of symbolic links)"),
        (lambda t: _dangling(t / "b.onnx"), "a link to {t}/sub/nowhere.onnx, which does not exist"),
        (lambda t: _empty(t / "e.onnx"), "empty file, not an ONNX model"),  # t298
        (lambda t: _empty(t / "e.pt"), "empty file, not a checkpoint"),
    ],
    ids=["missing", "link loop", "dangling link", "empty model", "empty checkpoint"],
)
def test_a_bad_path_is_refused_before_any_model_is_reported(
    bad: Callable[[Path], Path], reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The models before it were reported (and STRICT lines printed) before the bad path was
    reached; a link loop was called "no such file"."""
    _left(tmp_path / "f")
    path = bad(tmp_path)
    reason = reason.format(t=os.path.realpath(tmp_path))
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "f"), str(path), "--strict"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"wnpass: error: {path}: {reason}\n"
    assert main(["fold", str(path)]) == 2  # the fold's own reading says the same
    assert capsys.readouterr().err == f"wnpass: error: {path}: {reason}\n"


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _loop(path: Path) -> Path:
    path.symlink_to(path.name)
    return path


def _dangling(path: Path) -> Path:
    """A link ls shows, to a link to a file that is not there: it was "no such file" (t143),
    then named the link it points to, not the missing file at the end (t144)."""
    (path.parent / "sub").mkdir()
    (path.parent / "sub" / "last.onnx").symlink_to("nowhere.onnx")  # relative to sub/
    path.symlink_to("sub/last.onnx")
    (path.parent / "nowhere.onnx").write_bytes(b"")  # beside the first link: not it
    return path


@pytest.mark.parametrize("linked", [False, True])
def test_a_fifo_named_as_a_model_in_a_folder_is_refused_not_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], linked: bool
) -> None:
    """t350: a FIFO named ``z.onnx`` (or a link to one) in a folder given to ``inspect`` hung
    the gate forever: the scan for data files opened it to read it as a model. It is
    refused, exit 2, never opened for reading."""
    _save(tmp_path, "m.onnx", onnx_model(WN, v=rand(3, 4), g=rand(3, 1)))
    fifo = tmp_path / (".fifo" if linked else "z.onnx")
    os.mkfifo(fifo)
    if linked:
        (tmp_path / "z.onnx").symlink_to(fifo.name)
    assert main(["inspect", str(tmp_path), "--strict"]) == 2
    assert (
        capsys.readouterr().err
        == f"wnpass: error: {tmp_path / 'z.onnx'}: is a FIFO, not an ONNX file\n"
    )
