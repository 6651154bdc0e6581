"""The checkpoint API's own rules (the commands' behaviour is in test_fold/test_convert)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.checkpoint.builders import save_any, save_sharded, state_dict
from wnpass.checkpoint import api, reading
from wnpass.errors import InvalidArgumentError, InvalidModelError, UsageError, WnpassError


@pytest.mark.parametrize(
    ("name", "imports_torch"),
    [("m.pt", True), ("m.bin.index.json", True), ("m.safetensors", False), ("m.txt", False)],
)
def test_a_reports_clock_starts_once_the_reader_is_imported(name: str, imports_torch: bool) -> None:
    """A torch file's report times the work, not importing torch (about 1.5 s, paid by any
    file), as an ONNX fold's leaves out importing onnx; a safetensors file needs no torch."""
    code = (
        "import sys; from wnpass.checkpoint import api; "
        f"api._clock({name!r}); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, str(imports_torch))


@pytest.mark.parametrize("name", ["g.safetensors", "g.pt"])
@pytest.mark.parametrize("change", ["replaced", "written to"])
def test_an_input_changed_between_reads_is_refused_and_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, change: str
) -> None:
    """The pairs are planned and checked on a first read, and the values folded on a second:
    a checkpoint saved over the input in between (another seed's weights, or another axis)
    was folded with the first read's plan, reported "folded", and published."""
    source = save_any(state_dict(seed=0), tmp_path / name)
    newer = save_any(state_dict(seed=1), tmp_path / f"newer{source.suffix}")
    checked = api._check_values

    def then_changed(*args: Any, **kwargs: Any) -> None:
        checked(*args, **kwargs)
        if change == "replaced":
            os.replace(newer, source)  # as a trainer saving over its last checkpoint does
        else:
            with open(source, "r+b") as file:  # the same file, its bytes written again
                data = file.read()
                file.seek(0)
                file.write(data)

    monkeypatch.setattr(api, "_check_values", then_changed)
    output = tmp_path / f"out{source.suffix}"
    with pytest.raises(InvalidModelError, match=r"changed while it was read .*nothing written$"):
        api.fold_checkpoint(source, output)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        {source.name, newer.name} - ({newer.name} if change == "replaced" else set())
    )


@pytest.mark.parametrize("name", ["g.safetensors", "g.pt"])
def test_an_input_replaced_during_its_first_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """The file was taken as it was after the first read, so a checkpoint renamed onto the
    input while that read went on was folded with the plan made from the one before it."""
    source = save_any(state_dict(seed=0), tmp_path / name)
    newer = save_any(state_dict(seed=1), tmp_path / f"newer{source.suffix}")
    opener = "_safe_open" if source.suffix == ".safetensors" else "load_torch"
    read = getattr(reading, opener)

    def replaced_while_read(path: Path, *args: Any, **kwargs: Any) -> Any:
        opened = read(path, *args, **kwargs)
        if newer.exists():
            os.replace(newer, source)
        return opened

    monkeypatch.setattr(reading, opener, replaced_while_read)
    with pytest.raises(InvalidModelError, match=r"changed while it was read .*nothing written$"):
        api.fold_checkpoint(source, tmp_path / f"out{source.suffix}")
    assert [p.name for p in tmp_path.iterdir()] == [source.name]


def test_an_index_replaced_between_reads_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shards were checked before publishing, the index never: an index renamed onto the
    input (naming other shards, or the same ones) was folded from the first one's plan."""
    state = state_dict(seed=0)
    keys = list(state)
    index = save_sharded(tmp_path, state, [keys[:3], keys[3:]])
    newer = tmp_path / "newer.json"
    newer.write_bytes(index.read_bytes())
    checked = api._check_values

    def then_replaced(*args: Any, **kwargs: Any) -> None:
        checked(*args, **kwargs)
        os.replace(newer, index)

    monkeypatch.setattr(api, "_check_values", then_replaced)
    before = sorted(p.name for p in tmp_path.iterdir() if p != newer)
    with pytest.raises(InvalidModelError, match=r"index.json: changed while it was read"):
        api.fold_checkpoint(index, tmp_path / "out.safetensors.index.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_check_that_read_a_replaced_input_blames_the_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--model reads the input again for its reference: one replaced before that read was
    compared and the fold called "outside tolerance" (exit 1)."""
    from tests.checkpoint.test_verify import _checkpoint
    from wnpass.checkpoint import verify

    source, model_py = _checkpoint(tmp_path)
    other = save_any(state_dict(seed=1), tmp_path / "other.pt")
    check = verify.check_folded

    def replaced_first(*args: Any, **kwargs: Any) -> Any:
        os.replace(other, source)
        return check(*args, **kwargs)

    monkeypatch.setattr(verify, "check_folded", replaced_first)
    with pytest.raises(InvalidModelError, match=r"ckpt.pt: changed while it was read"):
        api.fold_checkpoint(source, tmp_path / "out.pt", check_model=model_py)
    assert not (tmp_path / "out.pt").exists()


def test_an_unchanged_input_is_folded_after_its_second_read(tmp_path: Path) -> None:
    source = save_any(state_dict(seed=0), tmp_path / "g.safetensors")
    report = api.fold_checkpoint(source, tmp_path / "out.safetensors")
    assert report.output == str(tmp_path / "out.safetensors")
    assert report.pairs and all(pair.status == "folded" for pair in report.pairs)


BAD: Any = {None: None, 5: 5, "list": ["legacy"]}  # values the signatures do not allow


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda p: api.fold_checkpoint(p, rtol=1e-3), UsageError, "rtol goes with check_model"),
        (lambda p: api.fold_checkpoint(p, factory="x"), UsageError, "factory goes with"),
        (lambda p: api.fold_checkpoint(BAD[None]), InvalidArgumentError, "path must be a path"),
        (lambda p: api.inspect_checkpoint(BAD[5]), InvalidArgumentError, "path must be a path"),
        (lambda p: api.fold_checkpoint(p, BAD[5]), InvalidArgumentError, "output must be a path"),
        (lambda p: api.convert_checkpoint(p, BAD["list"]), InvalidArgumentError, "to must be"),
        (lambda p: api.fold_checkpoint(p, check_model=p, factory=BAD[5]), WnpassError, "a str"),
        # an empty path was the current folder: "output .: the output has the input's format"
        (lambda p: api.fold_checkpoint(p, ""), InvalidArgumentError, "output is an empty path"),
        (lambda p: api.inspect_checkpoint(""), InvalidArgumentError, "path is an empty path"),
        # a plan that is no IOPlan was an AttributeError
        (lambda p: api.inspect_checkpoint(p, plan=BAD[5]), InvalidArgumentError, "plan must be an"),
        (lambda p: api.fold_checkpoint(p, plan=BAD[5]), InvalidArgumentError, "plan must be an"),
        (lambda p: api.convert_checkpoint(p, "legacy", plan=BAD[5]), WnpassError, "plan must"),
    ],
)  # fmt: skip
def test_a_bad_argument_is_refused_before_anything_is_written(
    tmp_path: Path, call: Any, error: type[Exception], message: str
) -> None:
    """A check option without the check was ignored while the output was written; a path
    that is no path was a TypeError (README: every error is a WnpassError)."""
    source = save_any(state_dict(), tmp_path / "g.safetensors")
    with pytest.raises(error, match=message):
        call(source)
    assert [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]


@pytest.mark.parametrize("written_to", [True, False])
def test_a_weight_that_fails_when_folded_is_an_input_that_changed_or_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written_to: bool
) -> None:
    """A pair checked finite whose weight is not when folded was read from a file written to
    meanwhile: it was an internal error (exit 3, "Declined: the folded weight is not
    finite"); it is the input that changed (exit 2). Where the input did not change, the
    checks let through what they should not: an internal error still."""
    from wnpass.checkpoint.fold import Declined

    source = save_any(state_dict(seed=0), tmp_path / "g.safetensors")

    def declined(*args: Any) -> Any:
        if written_to:
            with open(source, "r+b") as file:  # the same bytes: only the times move
                data = file.read()
                file.seek(0)
                file.write(data)
        raise Declined("the folded weight is not finite")

    monkeypatch.setattr(api, "fold_pair", declined)
    output = tmp_path / "out.safetensors"
    if written_to:
        with pytest.raises(InvalidModelError, match=r"g.safetensors: changed while it was read"):
            api.fold_checkpoint(source, output)
    else:
        with pytest.raises(Declined):
            api.fold_checkpoint(source, output)
    assert not output.exists()


def test_a_pair_too_large_for_memory_is_declined_not_an_internal_error(tmp_path: Path) -> None:
    """A 1.6 KB file whose ``v`` is one stored float expanded (stride 0) to 10**12 elements:
    its check asked numpy for 7.28 TiB and the MemoryError was an internal error (exit 3)
    in inspect and fold (t122). The pair is declined, as the ONNX fold declines a weight it
    cannot compute, and the rest is folded."""
    import torch

    state = state_dict()
    state["huge.weight_g"] = torch.tensor(1.0)
    state["huge.weight_v"] = torch.tensor([1.0]).expand(10**6, 10**6)
    source = tmp_path / "bomb.pt"
    torch.save(state, source)
    report = api.fold_checkpoint(source, tmp_path / "out.pt")
    rows = {row.weight: row for row in report.pairs}
    assert rows["huge.weight"].status == "declined"
    assert rows["huge.weight"].reason == "cannot be computed: out of memory"
    assert all(row.status == "folded" for name, row in rows.items() if name != "huge.weight")


def test_memory_running_out_while_folding_is_one_line_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The weights of one output file are held until it is written: memory that ran out
    while computing them was an internal error (exit 3)."""
    source = save_any(state_dict(), tmp_path / "g.safetensors")

    def out_of_memory(*args: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(api, "fold_pair", out_of_memory)
    output = tmp_path / "out.safetensors"
    with pytest.raises(WnpassError, match=r"out of memory computing its folded weight .*; nothing"):
        api.fold_checkpoint(source, output)
    assert [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]


def test_no_output_is_written_onto_a_shard_of_the_index_it_replaces(tmp_path: Path) -> None:
    """A sharded output folded again (from two shards where it had three) with ``--json``
    naming its old third shard, which no new shard replaces: the report was written over it,
    and a failed check left the old index naming a JSON file. A shard of the index a run
    replaces stays whole until the new one is in place, as an ONNX output's data file does."""
    from wnpass.cli import main

    state = state_dict()
    keys = list(state)
    three = save_sharded(tmp_path, state, [keys[:2], keys[2:4], keys[4:]], stem="three")
    two = save_sharded(tmp_path, state, [keys[:3], keys[3:]], stem="two")
    out = tmp_path / "out.safetensors.index.json"
    assert main(["fold", str(three), "-o", str(out)]) == 0
    stray = tmp_path / "out-00003-of-00003.safetensors"
    before = {path.name: path.read_bytes() for path in tmp_path.glob("out*")}
    assert main(["fold", str(two), "-o", str(out), "--json", str(stray)]) == 2
    assert {path.name: path.read_bytes() for path in tmp_path.glob("out*")} == before
    assert main(["fold", str(two), "-o", str(out)]) == 0  # without it, the refold is written


def test_a_replaced_indexs_shards_the_new_one_does_not_name_are_kept_and_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sharded output folded again from two shards where it had three: its old third shard
    is no longer named by any index, and was left without a word (t101). It is kept (the run
    did not write it) and said, in the report and on the command line, also with --quiet."""
    from wnpass.cli import main

    state = state_dict()
    keys = list(state)
    three = save_sharded(tmp_path, state, [keys[:2], keys[2:4], keys[4:]], stem="three")
    two = save_sharded(tmp_path, state, [keys[:3], keys[3:]], stem="two")
    out = tmp_path / "out.safetensors.index.json"
    first = api.fold_checkpoint(three, out)
    assert first.left == [] and len(first.shards) == 3
    again = api.fold_checkpoint(two, out)  # out-0000N-of-00002: no old name is reused
    why = f"kept (a shard of the replaced {out.name}; the new one does not name it)"
    assert again.left == [f"{shard}: {why}" for shard in first.shards]
    assert all(Path(shard).is_file() for shard in first.shards)
    assert again.to_dict()["left"] == again.left
    capsys.readouterr()
    assert main(["--quiet", "fold", str(two), "-o", str(out)]) == 0  # the same names: none left
    assert "left in place" not in capsys.readouterr().out
    # the three-shard names are files no index this run replaces names: refused (t153)
    assert main(["fold", str(three), "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"wnpass: error: -o's shard {first.shards[0]}: exists, and is no")
    for shard in first.shards:
        Path(shard).unlink()
    assert main(["fold", str(three), "-o", str(out)]) == 0
    for shard in again.shards:  # left in place by that run, unnamed: cleared for the next
        Path(shard).unlink()
    capsys.readouterr()
    assert main(["--quiet", "convert", str(two), "--to", "legacy", "-o", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3:] == [f"left in place: {shard}: {why}" for shard in first.shards]


def test_a_file_that_has_a_shards_derived_name_is_never_written_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """t153: a file of the name an output shard takes (the output's stem and the input
    shard's number), which no index the run replaces names, was replaced by the shard,
    said nowhere. It is refused, exit 2, nothing written; an older output's shard is still
    replaced."""
    from wnpass.cli import main

    state = state_dict()
    keys = list(state)
    index = save_sharded(tmp_path, state, [keys[:3], keys[3:]], stem="model")
    notes = tmp_path / "model.folded-00002-of-00002.safetensors"
    notes.write_text("my notes")
    before = sorted(tmp_path.iterdir())
    assert main(["fold", str(index)]) == 2
    error = capsys.readouterr().err
    assert error == (
        f"wnpass: error: output's shard {notes}: exists, and is no part of an output this run "
        "replaces: a name the run derives is written only where nothing is (move it away, or "
        "write elsewhere); refused\n"
    )
    assert notes.read_text() == "my notes" and sorted(tmp_path.iterdir()) == before
    notes.unlink()
    first = api.fold_checkpoint(index)
    assert notes.is_file() and api.fold_checkpoint(index).shards == first.shards
    Path(first.shards[1]).unlink()  # the older index names it still: the others are its (t154)
    assert api.fold_checkpoint(index).shards == first.shards and notes.is_file()


def test_a_file_put_at_a_gone_shards_name_meanwhile_is_never_written_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """t156: a shard the older output's index names, gone when the run planned, was planned
    as one to replace: a file another process put there meanwhile was renamed over. Such a
    name is written only where nothing is."""
    from wnpass.errors import OutputError
    from wnpass.plan import IOPlan

    state = state_dict()
    keys = list(state)
    index = save_sharded(tmp_path, state, [keys[:3], keys[3:]], stem="model")
    first = api.fold_checkpoint(index)
    gone = Path(first.shards[1])
    gone.unlink()
    publish = IOPlan.publish

    def meanwhile(plan: IOPlan, staged: Path, target: str | os.PathLike[str]) -> None:
        if not gone.exists():
            gone.write_text("another process's file")
        publish(plan, staged, target)

    monkeypatch.setattr(IOPlan, "publish", meanwhile)
    with pytest.raises(OutputError, match="another process put a file there"):
        api.fold_checkpoint(index)
    assert gone.read_text() == "another process's file"


def test_a_shard_that_cannot_be_put_in_place_takes_back_those_put_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """t242: another process put a file at the last shard's name while the run went on; the
    shards already renamed into place stayed, with no index naming them, and the next run
    refused to write over them ("no part of an output this run replaces"). They are removed
    again, and the next run writes the output."""
    from wnpass.errors import OutputError
    from wnpass.plan import IOPlan

    state = state_dict()
    keys = list(state)
    index = save_sharded(tmp_path, state, [keys[:2], keys[2:4], keys[4:]], stem="model")
    out = tmp_path / "o.safetensors.index.json"
    publish, put = IOPlan.publish, list[str | os.PathLike[str]]()

    def meanwhile(plan: IOPlan, staged: Path, target: str | os.PathLike[str]) -> None:
        if len(put) == 2:
            Path(target).write_text("another process's file")
        put.append(target)
        publish(plan, staged, target)

    monkeypatch.setattr(IOPlan, "publish", meanwhile)
    with pytest.raises(OutputError, match="another process put a file there") as error:
        api.fold_checkpoint(index, out)
    assert "; removed again: " in str(error.value) and "already written" not in str(error.value)
    last = Path(put[2])
    assert sorted(p.name for p in tmp_path.glob("o*")) == [last.name]
    assert last.read_text() == "another process's file"
    last.unlink()
    # a shard put in place that another process replaced meanwhile is its file, even where
    # the file system gave the new file the old one's inode (t243: that alone was compared)
    put.clear()

    def replaced(plan: IOPlan, staged: Path, target: str | os.PathLike[str]) -> None:
        if len(put) == 2:
            Path(put[0]).unlink()
            Path(put[0]).write_text("another process's shard")
            Path(target).write_text("another process's file")
        put.append(target)
        publish(plan, staged, target)

    monkeypatch.setattr(IOPlan, "publish", replaced)
    with pytest.raises(OutputError, match="another process put a file there"):
        api.fold_checkpoint(index, out)
    assert Path(put[0]).read_text() == "another process's shard"
    assert not Path(put[1]).exists()
    Path(put[0]).unlink()
    Path(put[2]).unlink()
    monkeypatch.setattr(IOPlan, "publish", publish)
    report = api.fold_checkpoint(index, out)
    assert report.output == str(out) and len(report.shards) == 3


def test_an_index_that_cannot_be_replaced_gets_the_shards_it_names_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """t328: a fold again onto an output whose index cannot be renamed over (immutable, a
    bind mount: EBUSY) replaced the shards first, then failed: the old index named new shards
    of another layout, a broken output. The shards replaced are put back as they were, and
    the old output reads as before; the error says so."""
    import errno

    from wnpass.errors import OutputError

    state = state_dict()
    keys = list(state)
    index = save_sharded(tmp_path, state, [keys[:3], keys[3:]], stem="model")
    out = tmp_path / "o.safetensors.index.json"
    api.fold_checkpoint(index, out)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("o*")}
    assert len(before) == 3
    replace = os.replace

    def busy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        if Path(target) == out:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        replace(source, target)

    monkeypatch.setattr(os, "replace", busy)
    changed = {key: value + 1 for key, value in state.items()}
    again = save_sharded(tmp_path, changed, [keys[:3], keys[3:]], stem="model")
    with pytest.raises(OutputError) as error:
        api.fold_checkpoint(again, out)
    shards = ", ".join(str(tmp_path / f"o-0000{i}-of-00002.safetensors") for i in (1, 2))
    assert str(error.value).endswith(f"; put back as they were: {shards}")
    assert {p.name: p.read_bytes() for p in tmp_path.glob("o*")} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".wnpass")]
    # a stop signal while they are put back: the stop line names none of them (t329: it
    # said "already written" of the shards put back)
    from wnpass.cli import main

    def stopped(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        if Path(source).name.startswith(".wnpass-replaced"):
            os.kill(os.getpid(), signal.SIGINT)
        busy(source, target)

    monkeypatch.setattr(os, "replace", stopped)
    assert main(["fold", str(again), "-o", str(out)]) == 130
    assert capsys.readouterr().err == "wnpass: interrupted; nothing more was written\n"
    assert {p.name: p.read_bytes() for p in tmp_path.glob("o*")} == before


def test_a_checkpoint_reports_json_never_replaces_the_files_it_is_about(tmp_path: Path) -> None:
    """``CheckpointReport.write_json`` without a plan wrote over the checkpoint it reported
    on: the input, its shards, the output or its shards."""
    from wnpass.errors import OutputError

    state = state_dict(seed=0)
    keys = list(state)
    index = save_sharded(tmp_path, state, [keys[:3], keys[3:]])
    report = api.fold_checkpoint(index, tmp_path / "out.safetensors.index.json")
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) >= 4 and report.shards
    for target in files:
        before = target.read_bytes()
        with pytest.raises(OutputError, match=r"which the report is about; refused$"):
            report.write_json(target)
        assert target.read_bytes() == before
    report.write_json(tmp_path / "r.json")


@pytest.mark.parametrize(
    "keys",
    [
        ("__metadata___g", "__metadata___v"),
        ("parametrizations.__metadata__.original0", "parametrizations.__metadata__.original1"),
    ],
)
def test_a_pair_whose_weight_is_safetensors_metadata_key_is_declined(
    tmp_path: Path, keys: tuple[str, str]
) -> None:
    """Its folded tensor took the header entry ``__metadata__``: the metadata was lost and
    the safetensors library could not open the file, written as ok (t103). The pair is
    declined, the others fold, and the file opens with its metadata."""
    import numpy as np
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    torch.manual_seed(0)
    g, v = torch.rand(4, 1) + 0.5, torch.randn(4, 3)
    state = {keys[0]: g, keys[1]: v, **state_dict()}
    path = tmp_path / "m.safetensors"
    save_file(state, path, metadata={"format": "pt"})
    inspected = api.inspect_checkpoint(path).pairs
    assert [p.status for p in inspected if p.weight == "__metadata__"] == ["declined"]
    report = api.fold_checkpoint(path, tmp_path / "o.safetensors")
    (row,) = [p for p in report.pairs if p.weight == "__metadata__"]
    assert row.status == "declined" and "keeps for the file's metadata" in (row.reason or "")
    assert report.count("folded") == len(report.pairs) - 1 >= 1
    with safe_open(tmp_path / "o.safetensors", "np") as opened:
        assert opened.metadata() == {"format": "pt"}
        assert np.array_equal(opened.get_tensor(keys[1]), v.numpy())
    torch.save(state, tmp_path / "m.pt")  # a torch file keeps no such entry: folded
    report = api.fold_checkpoint(tmp_path / "m.pt", tmp_path / "o.pt")
    assert report.count("declined") == 0


def test_a_pair_held_under_two_names_is_folded_into_one_tensor(tmp_path: Path) -> None:
    """A module registered twice, and an EMA dict of the same tensors: each name's pair was
    folded on its own, the tie lost and the file doubled (t204). One weight, under both."""
    import torch
    from torch.nn.utils.parametrizations import weight_norm

    layer = weight_norm(torch.nn.Linear(64, 64))
    model = torch.nn.ModuleDict({"a": layer, "b": layer})
    state = model.state_dict()
    torch.save({"model": state, "ema": dict(state)}, tmp_path / "tied.pt")
    report = api.fold_checkpoint(tmp_path / "tied.pt", tmp_path / "out.pt")
    assert [row.status for row in report.pairs] == ["folded"] * 4
    out = torch.load(tmp_path / "out.pt")
    weights = [out[group][f"{name}.weight"] for group in ("model", "ema") for name in "ab"]
    pointers = {w.untyped_storage().data_ptr() for w in weights}
    assert len(pointers) == 1
    torch.save(layer.state_dict(), tmp_path / "alone.pt")  # the same pair, held once
    api.fold_checkpoint(tmp_path / "alone.pt", tmp_path / "alone.folded.pt")
    assert torch.equal(weights[0], torch.load(tmp_path / "alone.folded.pt")["weight"])
    assert report.bytes_after is not None and report.bytes_before is not None
    assert report.bytes_after < report.bytes_before


def test_pairs_sharing_a_g_with_their_v_in_other_shards_are_each_folded(tmp_path: Path) -> None:
    """One g shared by six pairs, each v in a shard of its own, all of one layout: a shard
    released was mapped again at the same address, and pairs were given another pair's
    weight, reported folded (t205)."""
    import torch

    torch.manual_seed(0)
    g = torch.rand(64, 1) + 0.5
    names = "abcdef"
    state: dict[str, Any] = {f"{c}.weight_g": g for c in names}
    state |= {f"{c}.weight_v": torch.randn(64, 256) for c in names}
    shards = [[f"{c}.weight_g" for c in names], *([f"{c}.weight_v"] for c in names)]
    index = save_sharded(tmp_path, state, shards, kind="torch")
    report = api.fold_checkpoint(index, tmp_path / "out.bin.index.json")
    assert [row.status for row in report.pairs] == ["folded"] * 6
    folded: dict[str, Any] = {}
    for shard in report.shards:
        folded |= torch.load(shard)
    for c in names:
        expected = torch._weight_norm(state[f"{c}.weight_v"], g, 0)
        # the fold rounds once from float64, PyTorch computes in float32: within an ulp or
        # two (6e-8 each); another pair's weight is off by about 0.45
        assert torch.allclose(folded[f"{c}.weight"], expected, rtol=1e-6, atol=0), c


def test_a_shard_left_with_no_tensor_is_not_published(tmp_path: Path) -> None:
    """Every g in one shard, every v in the other: each weight is written where its pair's
    first key was, and the second shard was written empty, a 40-byte file no index named
    (t291). It is not published; where an older output's index named a shard of its name,
    that file is left and said, as any shard the new index does not name."""
    state = {k: v for k, v in state_dict("legacy").items() if k.endswith(("_g", "_v"))}
    gs, vs = [k for k in state if k.endswith("_g")], [k for k in state if k.endswith("_v")]
    index = save_sharded(tmp_path, state, [gs, vs])
    out = tmp_path / "out.safetensors.index.json"
    report = api.fold_checkpoint(index, out)
    shard = tmp_path / "out-00001-of-00002.safetensors"
    assert report.shards == [str(shard)] and report.left == []
    assert sorted(p.name for p in tmp_path.glob("out*")) == [shard.name, out.name]
    assert set(json.loads(out.read_text())["weight_map"].values()) == {shard.name}
    assert report.bytes_after == shard.stat().st_size + out.stat().st_size
    # an older output's second shard, at the name this run would have written
    both = save_sharded(tmp_path, state, [gs[:1] + vs[:1], gs[1:] + vs[1:]], stem="both")
    api.fold_checkpoint(both, out)
    old = tmp_path / "out-00002-of-00002.safetensors"
    assert old.is_file()
    again = api.fold_checkpoint(index, out)
    assert again.left == [
        f"{old}: kept (a shard of the replaced {out.name}; the new one does not name it)"
    ]
