"""wnpass.plan: what a plan refuses, what it may delete, and that nothing unplanned is written."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import onnx
import pytest

from tests.helpers import native_open, onnx_model, rand, run, weight_normed
from tests.hostile.builders import WN, external_ok, snapshot
from wnpass import fold_onnx
from wnpass import plan as plan_module
from wnpass.cli import main
from wnpass.errors import OutputError
from wnpass.onnx.io import DATA_FILES_KEY
from wnpass.plan import IOPlan, own_code, user_code
from wnpass.watch import OpenWatch

LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify: Linux")


def test_a_target_must_be_planned_and_checked_before_it_is_written(tmp_path: Path) -> None:
    plan = IOPlan()
    plan.write(tmp_path / "a.txt", "output")
    with pytest.raises(AssertionError, match="check"), plan.replace(tmp_path / "a.txt"):
        pass
    plan.check()
    with (
        pytest.raises(AssertionError, match="not a planned target"),
        plan.replace(tmp_path / "b.txt"),
    ):
        pass
    with plan.replace(tmp_path / "a.txt") as staged:
        staged.write_text("done")
    assert (tmp_path / "a.txt").read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_a_failed_write_leaves_the_old_target_and_no_staging(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    plan = IOPlan()
    plan.write(target, "output")
    plan.check()
    with pytest.raises(RuntimeError), plan.replace(target) as staged:
        staged.write_text("half")
        raise RuntimeError("disk gone")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_a_folder_that_takes_no_files_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """``/proc`` passes every path rule (it is a folder) but takes no new file: refused when
    the plan is checked, not after the outputs before it were published."""
    plan = IOPlan()
    plan.write(tmp_path / "model.onnx", "output")
    plan.write("/proc/report.json", "json_path")
    with pytest.raises(OutputError, match=r"/proc/report.json: cannot write there \(") as error:
        plan.check()
    assert error.value.parameter == "json_path"
    assert list(tmp_path.iterdir()) == []  # the probe of the first folder left nothing


def test_a_failed_write_after_a_publish_says_what_was_written(tmp_path: Path) -> None:
    plan = IOPlan()
    plan.write(tmp_path / "model.onnx", "output")
    plan.write(tmp_path / "report.json", "json_path")
    plan.check()
    with plan.replace(tmp_path / "model.onnx") as staged:
        staged.write_text("model")
    with pytest.raises(OutputError) as error, plan.replace(tmp_path / "report.json"):
        raise OSError(28, "No space left on device")
    assert str(error.value) == (
        f"json_path {tmp_path / 'report.json'}: cannot write (No space left on device); "
        f"already written: {tmp_path / 'model.onnx'}"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


@pytest.mark.parametrize("existing", [False, True])
def test_a_replaced_file_gets_the_mode_of_a_new_file(tmp_path: Path, existing: bool) -> None:
    """Not the owner-only mode of the temporary file it was staged in."""
    target = tmp_path / "report.json"
    if existing:
        target.write_text("old")
        target.chmod(0o600)
    plan = IOPlan()
    plan.write(target, "json_path")
    plan.check()
    mask = os.umask(0o027)
    try:
        with plan.replace(target) as staged:
            staged.write_text("new")
    finally:
        os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("staged", [False, True], ids=["replaced", "published from staging"])
@pytest.mark.parametrize(("read_mode", "mode"), [(0o600, 0o600), (0o640, 0o640), (0o444, 0o644)])
def test_an_output_is_no_more_open_than_what_it_is_made_from(
    tmp_path: Path, staged: bool, read_mode: int, mode: int
) -> None:
    """t345: a 0600 checkpoint folded into a 0644 output (``cp`` keeps it 0600). What group
    and others may not do with a file the run reads, they may not do with its outputs; the
    owner's bits are a new file's."""
    read, target = tmp_path / "private.pt", tmp_path / "out.pt"
    read.write_text("in")
    read.chmod(read_mode)
    plan = IOPlan()
    plan.read(read, "checkpoint")
    plan.write(target, "output")
    plan.check()
    mask = os.umask(0o022)
    try:
        if staged:
            _publish(plan, tmp_path, ["out.pt"], "new")
        else:
            with plan.replace(target) as written:
                written.write_text("new")
    finally:
        os.umask(mask)
    assert target.stat().st_mode & 0o777 == mode


def test_a_target_turned_into_a_symlink_after_the_check_is_refused(tmp_path: Path) -> None:
    """The target is examined again at the moment it is replaced."""
    target = tmp_path / "a.txt"
    plan = IOPlan()
    plan.write(target, "output")
    plan.check()
    (tmp_path / "secret").write_text("keep")
    target.symlink_to(tmp_path / "secret")
    with pytest.raises(OutputError, match="symbolic link"), plan.replace(target):
        pass
    assert (tmp_path / "secret").read_text() == "keep"


def test_reads_are_matched_through_symlinked_folders(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "m.onnx").write_text("model")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    plan = IOPlan()
    plan.read(tmp_path / "real" / "m.onnx", "the input model")
    plan.write(tmp_path / "alias" / "m.onnx", "output")
    with pytest.raises(OutputError, match="would overwrite the input model"):
        plan.check()


def _old_output(
    folder: Path, location: str, record: list[str] | None = None, name: str = "out.onnx"
) -> Path:
    """An existing ``name`` whose weights are in ``location`` (which may point anywhere) and
    whose wnpass record lists ``record`` (by default ``location``, as if wnpass had written
    it; an empty list writes no record)."""
    model = onnx_model(WN, v=rand(3, 4), g=rand(3, 1))
    tensor = next(t for t in model.graph.initializer if t.name == "v")
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    record = [location] if record is None else record
    if record:
        model.metadata_props.add(key=DATA_FILES_KEY, value=json.dumps(record))
    out = folder / name
    out.write_bytes(model.SerializeToString())
    return out


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("../outside/secret.bin", "not beside the output"),
        ("/etc/hostname", "not beside the output"),
        ("other.onnx", "not a data-file name wnpass gives this output"),
        ("out.onnx.data", "read by this run"),
        ("out.onnx.data", "has other hard links"),
        ("out.onnx.data", "a FIFO"),
    ],
)
def test_an_old_output_s_data_is_deleted_only_when_it_is_wnpass_s_own(
    location: str, reason: str, tmp_path: Path
) -> None:
    """Replacing out.onnx never deletes what its old version pointed at unless the file is
    the output's own data (its name, beside it, one link, not read); else it is named."""
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.bin").write_bytes(b"secret")
    source = external_ok(work, "out.onnx.data" if reason == "read by this run" else "weights.bin")
    (work / "other.onnx").write_bytes(b"another model")
    if reason == "has other hard links":
        (work / "out.onnx.data").write_bytes(b"\0" * 48)
        os.link(work / "out.onnx.data", tmp_path / "outside" / "link.data")
    if reason == "a FIFO":
        os.mkfifo(work / "out.onnx.data")
    out = _old_output(work, location)
    before = snapshot(tmp_path)
    _, report = fold_onnx(source, out)
    after = snapshot(tmp_path)
    assert after["work/out.onnx"] != before["work/out.onnx"]
    kept = {k: v for k, v in before.items() if k != "work/out.onnx"}
    assert {k: after[k] for k in kept if k in after} == kept, "a file was changed or deleted"
    if not location.startswith("/"):
        assert any(reason in entry for entry in report.left), report.left


def test_a_data_file_wnpass_did_not_create_is_kept_though_it_has_wnpass_s_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """a.onnx.data written by onnx.save_model, and shared by b.onnx (a copy of a.onnx):
    folding another model onto a.onnx keeps it, and says why; b.onnx still loads."""
    model = onnx_model(WN, v=rand(3, 4), g=rand(3, 1))
    onnx.save(model, tmp_path / "c.onnx")
    a = tmp_path / "a.onnx"
    onnx.save_model(model, a, save_as_external_data=True, location="a.onnx.data", size_threshold=0)
    onnx.save(onnx.load(tmp_path / "a.onnx", load_external_data=False), tmp_path / "b.onnx")
    data = (tmp_path / "a.onnx.data").read_bytes()
    assert main(["fold", str(tmp_path / "c.onnx"), "-o", str(tmp_path / "a.onnx")]) == 0
    assert f"{tmp_path / 'a.onnx.data'}: kept (not created by wnpass)" in capsys.readouterr().out
    assert (tmp_path / "a.onnx.data").read_bytes() == data
    assert main(["inspect", str(tmp_path / "b.onnx")]) == 0
    assert run(tmp_path / "b.onnx", {"x": rand(2, 4)})[0].shape == (2, 3)


@pytest.mark.parametrize(
    ("referenced", "record", "reason"),
    [
        ("out.onnx.data", [], "not created by wnpass"),
        ("out.onnx.data", ["out.onnx.1.data"], "not created by wnpass"),
        ("out.onnx.data", "not json", "not created by wnpass"),
        ("out.onnx.data", "[" * 5000 + "]" * 5000, "not created by wnpass"),  # t202: deeper
        ("out.onnx.data", {"out.onnx.data": 1}, "not created by wnpass"),
        ("a.onnx.data", ["a.onnx.data"], "not a data-file name wnpass gives this output"),
    ],
)
def test_only_what_the_old_output_s_own_record_lists_is_deleted(
    referenced: str, record: object, reason: str, tmp_path: Path
) -> None:
    """The record must list the very file (a record naming another file, or unreadable, lists
    nothing), and a copy of a wnpass output (b.onnx pointing at a.onnx.data, its record
    copied along) does not make a.onnx.data b.onnx's own."""
    work = tmp_path / "work"
    work.mkdir()
    source = external_ok(work, "weights.bin")
    for name in ("out.onnx.data", "out.onnx.1.data", "a.onnx.data"):
        (work / name).write_bytes(b"\0" * 48)
    out = _old_output(work, referenced, name="out.onnx")
    if record != [referenced]:
        model = onnx.load(out, load_external_data=False)
        del model.metadata_props[:]
        if record:
            text = record if isinstance(record, str) else json.dumps(record)
            model.metadata_props.add(key=DATA_FILES_KEY, value=text)
        out.write_bytes(model.SerializeToString())
    before = snapshot(work)
    _, report = fold_onnx(source, out)
    after = snapshot(work)
    kept = {k: v for k, v in before.items() if k != "out.onnx"}
    assert {k: after.get(k) for k in kept} == kept, "a file was changed or deleted"
    assert report.left == [f"{work / referenced}: kept ({reason})"]


def test_an_output_records_the_data_files_wnpass_wrote_for_it(tmp_path: Path) -> None:
    """The record is in the file written, never in the model the caller holds, and a model
    written in one file has none (nor one copied from its input)."""
    source = weight_normed(tmp_path, external=True)
    model, _ = fold_onnx(source, tmp_path / "out.onnx")
    written = onnx.load(tmp_path / "out.onnx", load_external_data=False)
    assert {p.key: p.value for p in written.metadata_props} == {DATA_FILES_KEY: '["out.onnx.data"]'}
    assert DATA_FILES_KEY not in model.metadata_props
    fold_onnx(tmp_path / "out.onnx", tmp_path / "again.onnx")
    again = onnx.load(tmp_path / "again.onnx", load_external_data=False)
    assert [(p.key, p.value) for p in again.metadata_props] == [
        (DATA_FILES_KEY, '["again.onnx.data"]')
    ]
    fold_onnx(tmp_path / "out.onnx", tmp_path / "inline.onnx", external_data=False)
    assert not onnx.load(tmp_path / "inline.onnx").metadata_props


def test_an_old_output_s_own_data_file_is_deleted(tmp_path: Path) -> None:
    source = weight_normed(tmp_path, external=True)
    out = tmp_path / "out.onnx"
    fold_onnx(source, out)
    assert (tmp_path / "out.onnx.data").exists()
    _, report = fold_onnx(source, out)  # the new data goes to out.onnx.1.data, the old is removed
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.onnx",
        "out.onnx",
        "out.onnx.1.data",
        "weights.bin",
    ]
    assert report.left == []
    assert run(out, {"x": rand(2, 64)})[0].shape == (2, 32)


def test_an_old_output_whose_data_file_is_gone_is_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """t179: with out.onnx.data lost, folding again to out.onnx was refused ("belongs to
    out.onnx, which this run replaces"); the only way out was deleting out.onnx by hand. The
    new data takes a name the old output does not name, so that it never reads the new data
    as its own; a report given that name is refused, saying the file is gone."""
    source = weight_normed(tmp_path, external=True)
    out = tmp_path / "out.onnx"
    fold_onnx(source, out)
    (tmp_path / "out.onnx.data").unlink()
    gone = tmp_path / "out.onnx.data"
    assert main(["fold", str(source), "-o", str(out), "--json", str(gone)]) == 2
    assert capsys.readouterr().err == (
        f"wnpass: error: --json {gone}: {out}, which this run replaces, names it as a file it "
        "needs (none is there now): written, it would read as the old output's until the new "
        "one is in place; refused\n"
    )
    _, report = fold_onnx(source, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.onnx",
        "out.onnx",
        "out.onnx.1.data",
        "weights.bin",
    ]
    assert report.left == [] and report.removed == []
    assert run(out, {"x": rand(2, 64)})[0].shape == (2, 32)


def test_an_output_in_another_folder_carries_all_its_data(tmp_path: Path) -> None:
    """Constant nodes with external data are written inside the output: it never points back
    at the input's folder."""
    source_dir, target_dir = tmp_path / "src", tmp_path / "dst"
    source_dir.mkdir()
    target_dir.mkdir()
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[N, 4] x) => (float[N, 3] y) {
            v = Constant <value = float[3, 4] {0,1,2,3,4,5,6,7,8,9,10,11}> ()
            n = ReduceL2 <axes = [1]> (v)
            d = Div(v, n)
            w = Mul(d, g)
            z = Gemm <transB = 1> (x, w)
            c = Constant <value = float[3] {1, 2, 3}> ()
            y = Add(z, c)
        }
    """
    model = onnx_model(text, g=rand(3, 1))
    onnx.save(
        model,
        source_dir / "m.onnx",
        save_as_external_data=True,
        location="w.bin",
        size_threshold=0,
        convert_attribute=True,
    )
    feeds = {"x": rand(2, 4)}
    expected = run(source_dir / "m.onnx", feeds)
    fold_onnx(source_dir / "m.onnx", target_dir / "m.onnx")
    (source_dir / "w.bin").rename(tmp_path / "moved.bin")  # the input's data is gone
    np_result = run(target_dir / "m.onnx", feeds)
    assert np_result[0].shape == expected[0].shape
    assert abs(np_result[0] - expected[0]).max() < 1e-4


def test_an_old_output_s_data_reached_through_a_symlink_is_kept(tmp_path: Path) -> None:
    """out.onnx.data is a symbolic link to a file beside it: the link is what the old output
    names, and it is kept (and named), as is what it points at."""
    source = external_ok(tmp_path)
    (tmp_path / "out.onnx.7.data").write_bytes(b"\0" * 48)
    (tmp_path / "out.onnx.data").symlink_to(tmp_path / "out.onnx.7.data")
    out = _old_output(tmp_path, "out.onnx.data")
    _, report = fold_onnx(source, out)
    assert (tmp_path / "out.onnx.7.data").exists() and (tmp_path / "out.onnx.data").is_symlink()
    assert any("a symbolic link" in entry for entry in report.left), report.left


def test_the_same_target_planned_twice_is_a_collision(tmp_path: Path) -> None:
    """Two outputs that map to one name (two input shards, say) are refused, never written
    one over the other."""
    plan = IOPlan()
    plan.write(tmp_path / "a.bin", "output")
    plan.write(tmp_path / "a.bin", "output")
    with pytest.raises(OutputError, match="is also another output of this run"):
        plan.check()


def test_one_new_file_named_through_two_paths_to_its_folder_is_a_collision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """t309: ``-o out/o.safetensors.index.json --json bm/o.safetensors.index.json``, ``bm`` a
    bind mount of ``out``: neither file existed, the resolved paths differed, and the report
    was written over the index just written. A bind mount is two paths to one folder that no
    path resolution sees through; a symbolic link stands in for it here, with resolution
    turned off."""
    (tmp_path / "out").mkdir()
    (tmp_path / "bm").symlink_to(tmp_path / "out")
    monkeypatch.setattr(plan_module, "_where", lambda path: Path(os.path.abspath(path)))
    plan = IOPlan()
    plan.write(tmp_path / "out" / "o.safetensors.index.json", "output")
    plan.write(tmp_path / "bm" / "o.safetensors.index.json", "json_path")
    with pytest.raises(OutputError, match="is also another output of this run"):
        plan.check()


def test_a_collision_is_named_after_the_target_planned_first(tmp_path: Path) -> None:
    """``--json m.folded-00002-of-00002.safetensors``: the report was planned first, the shard
    the command derived from the input after; the error named the output (``-o``), which the
    user never gave. It names the one planned first: the caller's choice."""
    plan = IOPlan()
    plan.write(tmp_path / "m.folded-00002-of-00002.safetensors", "json_path")
    plan.write(tmp_path / "m.folded-00001-of-00002.safetensors", "output")
    plan.write(tmp_path / "m.folded-00002-of-00002.safetensors", "output")
    with pytest.raises(OutputError, match="is also another output of this run") as caught:
        plan.check()
    assert caught.value.parameter == "json_path"


def test_two_shards_the_plain_rule_names_alike_get_two_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from safetensors.torch import save_file

    g, v = torch.rand(4, 1) + 0.5, torch.randn(4, 3)
    keys = ("a.parametrizations.weight.original0", "a.parametrizations.weight.original1")
    save_file(dict(zip(keys, (g, v), strict=True)), tmp_path / "model-1.safetensors")
    save_file({"b.bias": torch.ones(3)}, tmp_path / "1.safetensors")  # also -> "...-1"
    weight_map = {keys[0]: "model-1.safetensors", keys[1]: "model-1.safetensors"}
    weight_map["b.bias"] = "1.safetensors"
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    before = snapshot(tmp_path)
    assert main(["fold", str(index)]) == 0, capsys.readouterr().err
    after = snapshot(tmp_path)
    assert {k: after[k] for k in before} == before  # the inputs are untouched
    written = sorted(set(after) - set(before))
    assert written == [
        "model.folded-1.safetensors",
        "model.folded-2-1.safetensors",
        "model.folded.safetensors.index.json",
    ]


def test_a_plan_records_the_files_user_code_reads_only(tmp_path: Path) -> None:
    """Inside ``user_code`` a file opened for reading is read by the run (checked before the
    first write); one opened for writing there, or read outside it, is not."""
    read_in, written_in, read_out = (tmp_path / name for name in ("a", "b", "c"))
    for path in (read_in, written_in, read_out):
        path.write_text("x")
    plan = IOPlan()
    plan.watch_user_code()
    with user_code():
        read_in.read_text()
        written_in.write_text("y")
    read_out.read_text()
    for path in (written_in, read_out):
        plan.write(path, "output")
    plan.check()
    for path in (written_in, read_out):
        with plan.replace(path) as staged:
            staged.write_text("z")
    refused = IOPlan()
    refused.watch_user_code()
    with user_code():
        read_in.read_text()
    refused.write(read_in, "output")
    refused.check()
    with (
        pytest.raises(OutputError, match=r"a file the model\.py's code read"),
        refused.replace(read_in),
    ):
        pass
    assert read_in.read_text() == "x"


@LINUX
@pytest.mark.parametrize("planned", ["before", "after"])
def test_a_target_that_native_user_code_opens_is_refused(planned: str, tmp_path: Path) -> None:
    """safetensors opens its file in Rust: no ``open`` audit event. The kernel's record of
    the watched targets opened inside ``user_code`` counts them as read (a target planned
    before the watch started, or after), and the write is refused; nothing is written."""
    target = tmp_path / "w.safetensors"
    target.write_bytes(b"weights")
    plan = IOPlan()
    if planned == "before":
        plan.write(target, "output")
    plan.watch_user_code()
    if planned == "after":
        plan.write(target, "output")
    plan.check()
    with user_code():
        native_open(target)
    with (
        pytest.raises(OutputError, match=r"would overwrite a file opened while the model\.py's"),
        plan.replace(target),
    ):
        pass
    assert target.read_bytes() == b"weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
    plan.close()


@LINUX
def test_only_opens_inside_user_code_count(tmp_path: Path) -> None:
    """wnpass's own opens of a target, between the blocks of user code or marked
    ``own_code`` inside one, are not the user's code's: the write goes ahead."""
    target = tmp_path / "out.json"
    target.write_text("old")
    plan = IOPlan()
    plan.write(target, "json_path")
    plan.watch_user_code()
    plan.check()
    native_open(target)
    with user_code():
        with own_code():
            native_open(target)
        target.stat()  # the user's code, opening nothing
    native_open(target)
    with plan.replace(target) as staged:
        staged.write_text("new")
    assert target.read_text() == "new"
    plan.close()


@LINUX
def test_an_old_data_file_user_code_opened_is_kept(tmp_path: Path) -> None:
    """A replaced output's old data file (``out.onnx.data``, wnpass's own) that the model's
    native code opened is read by this run: kept, never deleted."""
    out, data = tmp_path / "out.onnx", tmp_path / "out.onnx.data"
    out.write_bytes(b"model")
    data.write_bytes(b"data")
    plan = IOPlan()
    plan.watch_user_code()
    plan.write(out, "output")
    plan.check()
    with user_code():
        native_open(data)
    assert plan.delete_old_data([data], out, created=[data.name]) == []
    assert plan.left == [f"{data}: kept (read by this run)"]
    assert data.read_bytes() == b"data"
    plan.close()


def test_without_the_kernel_s_watch_the_audit_events_still_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where inotify is missing or refused, a plan watches with Python's audit events alone,
    without a word."""
    monkeypatch.setattr(OpenWatch, "start", classmethod(lambda cls: None))
    target = tmp_path / "w.txt"
    target.write_text("x")
    plan = IOPlan()
    plan.watch_user_code()
    plan.write(target, "output")
    plan.check()
    with user_code():
        target.read_text()
    with (
        pytest.raises(OutputError, match=r"a file the model\.py's code read"),
        plan.replace(target),
    ):
        pass
    plan.close()


def test_a_deleted_data_file_is_listed_as_removed(tmp_path: Path) -> None:
    """What the plan deletes is listed (the report names it), beside what it keeps."""
    out, data, kept = (tmp_path / name for name in ("o.onnx", "o.onnx.data", "o.onnx.1.data"))
    for path in (out, data, kept):
        path.write_bytes(b"x")
    plan = IOPlan()
    plan.write(out, "output")
    for path in (data, kept):  # as planned: the old output's data files, as they are now
        plan.keep(path, out)
    plan.check()
    assert plan.delete_old_data([data, kept], out, created=[data.name]) == [data]
    assert plan.removed == [data]
    assert plan.left == [f"{kept}: kept (not created by wnpass)"]
    assert not data.exists() and kept.exists()


def test_a_target_named_with_a_trailing_slash_names_a_folder(tmp_path: Path) -> None:
    """``Path("out/")`` is ``out``: a report asked for at ``out/`` became a file named out."""
    from wnpass.report import FoldReport

    with pytest.raises(OutputError, match=r"^json_path .*out/: names a folder, not a file$"):
        FoldReport().write_json(f"{tmp_path}/out/")
    assert not (tmp_path / "out").exists()


def test_each_file_read_is_resolved_once_across_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dynamo export records the thousands of files the exporter imports, and the plan is
    checked before every write: each check stat'ed every one of them again (0.5 s a check)."""
    from wnpass import plan as plan_module

    files = [tmp_path / f"read{i}.py" for i in range(50)]
    for file in files:
        file.write_text("")
    looked_at: list[Path] = []
    identity = plan_module.identity_of

    def counted(path: Path) -> tuple[int, int] | None:
        looked_at.append(path)
        return identity(path)

    monkeypatch.setattr(plan_module, "identity_of", counted)
    plan = IOPlan()
    plan.read_all(files, "a file")
    plan.read(tmp_path / "later.bin", "a file made later")
    plan.write(tmp_path / "out.json", "json_path")
    for _ in range(3):
        plan.check()
    reads = [p for p in looked_at if p.name != "out.json" and p != tmp_path]  # the output's
    assert sorted(set(reads)) == sorted([*files, tmp_path / "later.bin"])
    assert reads.count(files[0]) == 1
    assert reads.count(tmp_path / "later.bin") == 3  # not there yet: looked at each time
    (tmp_path / "later.bin").write_bytes(b"")
    (tmp_path / "out.json").hardlink_to(tmp_path / "later.bin")
    with pytest.raises(OutputError, match="would overwrite a file made later"):
        plan.check()


@LINUX
def test_another_thread_s_own_code_keeps_the_opens_of_user_code(tmp_path: Path) -> None:
    """The kernel's record is one queue for the process: a thread leaving an ``own_code``
    block while another runs user code threw that code's opens away (the target was then
    written over)."""
    import threading

    target = tmp_path / "w.safetensors"
    target.write_bytes(b"weights")
    plan = IOPlan()
    plan.write(target, "output")
    plan.watch_user_code()
    plan.check()
    opened, done = threading.Event(), threading.Event()

    def users() -> None:
        with user_code():
            native_open(target)
            opened.set()
            done.wait(5)

    thread = threading.Thread(target=users)
    thread.start()
    assert opened.wait(5)
    with own_code():
        pass
    done.set()
    thread.join()
    assert plan.record_user_reads()
    with pytest.raises(OutputError, match="would overwrite a file opened while"):
        plan.check()
    assert target.read_bytes() == b"weights"
    plan.close()


def test_the_user_s_working_directory_is_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model.py that calls ``os.chdir`` sent wnpass's relative outputs into its folder,
    past the plan's checks; its code keeps the directory it moved to, wnpass gets its own."""
    moved = tmp_path / "sub"
    moved.mkdir()
    monkeypatch.chdir(tmp_path)
    with user_code():
        os.chdir(moved)
    assert Path.cwd() == tmp_path
    with user_code():
        assert Path.cwd() == moved  # where the model's code left it
        with own_code(), user_code():
            assert Path.cwd() == moved  # nested blocks keep the outer block's
    assert Path.cwd() == tmp_path
    with user_code():
        os.chdir(tmp_path)  # the model's code comes back
    with user_code():
        assert Path.cwd() == tmp_path


def _planned(folder: Path, names: list[str]) -> IOPlan:
    plan = IOPlan()
    for name in names:
        plan.write(folder / name, "output")
    plan.check()
    return plan


def _publish(plan: IOPlan, folder: Path, names: list[str], text: str) -> None:
    with plan.staging(folder / names[-1]) as staging:
        for name in names:
            (staging / name).write_text(text)
            plan.publish(staging / name, folder / name)


def test_a_result_is_renamed_into_place_while_no_other_run_renames_into_its_folder(
    tmp_path: Path,
) -> None:
    """Two runs writing one sharded result at once interleaved their renames: the folder held
    shards of both. A run now holds an exclusive flock on the folder while it publishes."""
    names = ["model-1.safetensors", "model-2.safetensors", "model.safetensors.index.json"]
    plan = _planned(tmp_path, names)
    other = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(other, fcntl.LOCK_EX)  # another run, publishing its result
    publisher = threading.Thread(target=_publish, args=(plan, tmp_path, names, "new"))
    publisher.start()
    publisher.join(timeout=0.5)
    assert publisher.is_alive()  # waiting: nothing renamed into place
    assert not any((tmp_path / name).exists() for name in names)
    os.close(other)  # the other run is done: this one goes on
    publisher.join(timeout=30)
    assert not publisher.is_alive()
    assert [(tmp_path / name).read_text() for name in names] == ["new"] * 3
    probe = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released once published
    finally:
        os.close(probe)


def test_a_lock_held_past_the_wait_is_an_error_and_nothing_is_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`flock DIR wnpass fold ...` (the folder locked by the very command that runs wnpass)
    waited for ever: a lock is now waited for up to LOCK_WAIT_S, saying so, then refused."""
    monkeypatch.setattr(plan_module, "LOCK_WAIT_S", 0.2)
    names = ["model-1.safetensors", "model.safetensors.index.json"]
    plan = _planned(tmp_path, names)
    other = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        with pytest.raises(OutputError) as raised:
            _publish(plan, tmp_path, names, "new")
    finally:
        os.close(other)
    assert str(raised.value).endswith(
        f"cannot write (another process has held a lock on {tmp_path}/ for 0.2 s)"
    )
    assert list(tmp_path.iterdir()) == []  # nothing renamed, the staging folder removed
    assert "another process holds a lock on this folder; waiting up to 0.2 s" in caplog.text


def test_publishing_resolves_each_target_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each publish resolved every target's folder again: 800 shards took 16 s to rename."""
    names = [f"s-{i:03d}.bin" for i in range(60)]
    plan = _planned(tmp_path, names)
    calls = 0
    resolve = os.path.realpath

    def counted(path: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return resolve(path, *args, **kwargs)

    monkeypatch.setattr(os.path, "realpath", counted)
    _publish(plan, tmp_path, names, "x")
    assert calls <= 3 * len(names)
    assert sorted(p.name for p in tmp_path.iterdir()) == names


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_staging_path_is_removed_from_where_its_folder_was_moved(
    tmp_path: Path, kind: str
) -> None:
    """Another process moved the output's folder while a result was staged in it: the
    staging file or folder was removed by its old path, which led nowhere, and stayed behind
    in the moved folder."""
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "m.onnx"
    plan = IOPlan()
    plan.write(target, "output")
    plan.check()
    stage = plan.replace(target) if kind == "file" else plan.staging(target)
    with pytest.raises(RuntimeError), stage as staged:
        (staged if kind == "file" else staged / "m.onnx").write_text("folded")
        (tmp_path / "out").rename(tmp_path / "moved")
        raise RuntimeError("the run fails after the move")
    assert list((tmp_path / "moved").iterdir()) == []
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("swap", ["folder-link", "hard-link"])
def test_a_target_changed_into_what_is_read_after_the_check_is_refused_at_the_write(
    tmp_path: Path, swap: str
) -> None:
    """Another process swapped the output's folder for a link to the input's (``mv out
    out.real; ln -s . out``) after the plan was checked: the fold wrote over its own input,
    exit 0. Or put a hard link to the input where the output goes. The last-moment check
    before each write sees it now."""
    source = tmp_path / "m.onnx"
    source.write_text("the input")
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "m.onnx"
    plan = IOPlan()
    plan.read(source, "the input model")
    plan.write(target, "output")
    plan.check()
    if swap == "folder-link":
        (tmp_path / "out").rename(tmp_path / "out.real")
        (tmp_path / "out").symlink_to(".")
        message = "its folder changed while this run went on"
    else:
        os.link(source, target)
        message = "is now the input model"
    with pytest.raises(OutputError, match=message), plan.replace(target) as staged:
        staged.write_text("folded")
    assert source.read_text() == "the input"


def test_a_check_again_keeps_each_target_where_the_first_check_found_it(tmp_path: Path) -> None:
    """The plan is checked again whenever user code read files (a model.py, the exporter's
    imports): that check took the place a target's folder leads to now as the planned one,
    so ``export`` and ``train-rewrite`` wrote into the folder another process had put a
    link to in its place (``mv out old; ln -s protected out``), over a file there, exit 0
    (t124). The check again refuses it, and so does the write."""
    (tmp_path / "out").mkdir()
    (tmp_path / "protected").mkdir()
    precious = tmp_path / "protected" / "m.onnx"
    precious.write_text("precious")
    target = tmp_path / "out" / "m.onnx"
    plan = IOPlan()
    plan.write(target, "output")
    plan.check()
    (tmp_path / "out").rename(tmp_path / "old")
    (tmp_path / "out").symlink_to(tmp_path / "protected")
    message = "its folder changed while this run went on"
    with pytest.raises(OutputError, match=message):
        plan.check()
    with pytest.raises(OutputError, match=message), plan.replace(target) as staged:
        staged.write_text("model")
    assert precious.read_text() == "precious" and list((tmp_path / "old").iterdir()) == []


def test_a_target_planned_after_the_first_check_is_placed_by_the_check_after_it(
    tmp_path: Path,
) -> None:
    """A caller that plans in two steps: the second target is placed when it is first
    checked, and the first keeps its place."""
    plan = IOPlan()
    plan.write(tmp_path / "a.txt", "output")
    plan.check()
    plan.write(tmp_path / "b.txt", "report")
    plan.check()
    for name in ("a.txt", "b.txt"):
        with plan.replace(tmp_path / name) as staged:
            staged.write_text(name)
    assert (tmp_path / "b.txt").read_text() == "b.txt"


def test_a_target_through_a_link_and_up_is_written_where_it_leads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``link/../out`` with ``link -> ../real/inner`` is ``real/out``: staged as text
    (``os.path.abspath``), the staging folder went to ``work/`` and the write failed."""
    (tmp_path / "real" / "inner").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "link").symlink_to(tmp_path / "real" / "inner")
    monkeypatch.chdir(tmp_path / "work")
    plan = IOPlan()
    for name in ("link/../one.txt", "link/../two.txt"):
        plan.write(name, "output")
    plan.check()
    with plan.replace("link/../one.txt") as staged:
        staged.write_text("one")
    with plan.staging("link/../two.txt") as folder:
        (folder / "two.txt").write_text("two")
        plan.publish(folder / "two.txt", "link/../two.txt")
    assert (tmp_path / "real" / "one.txt").read_text() == "one"
    assert (tmp_path / "real" / "two.txt").read_text() == "two"
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["link"]


@pytest.mark.parametrize("errno_code", [errno.EACCES, errno.ENOSYS, errno.EPERM])
def test_a_name_chosen_free_is_put_in_place_where_no_hard_link_can_be_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, errno_code: int
) -> None:
    """A file system that makes no hard link (exFAT, some FUSE mounts) fails the link with
    EPERM, ENOSYS or EACCES: the file goes in place by a check and a rename (the review: the
    first version fell back on four errnos only, and failed the run on the others)."""

    def no_link(source: object, target: object) -> None:
        raise OSError(errno_code, os.strerror(errno_code))

    monkeypatch.setattr(plan_module.os, "link", no_link)
    target = tmp_path / "out.onnx.data"
    plan = IOPlan()
    plan.write(target, "output's external data", new=True)
    plan.check()
    with plan.staging(target) as staging:
        (staging / "x").write_bytes(b"data")
        plan.publish(staging / "x", target)
    assert target.read_bytes() == b"data" and plan.published == [target]


@pytest.mark.parametrize("how", ["renamed over", "written in place"])
def test_an_old_data_file_another_process_replaced_after_the_plan_is_kept(
    tmp_path: Path, how: str
) -> None:
    """t175: while a fold replaced out.onnx, another tool moved its own model in, whose data
    file had the name of the old output's (or wrote over that file): the fold deleted it,
    exit 0. Only the file that was there when the run planned may go."""
    data, out = tmp_path / "out.onnx.data", tmp_path / "out.onnx"
    data.write_bytes(b"\0" * 48)
    plan = IOPlan()
    plan.keep(data, out)
    assert plan.may_delete(data, out, created={"out.onnx.data"}) is None
    if how == "renamed over":
        (tmp_path / "theirs").write_bytes(b"\1" * 48)
        os.replace(tmp_path / "theirs", data)
    else:
        data.write_bytes(b"\1" * 64)
    reason = plan.may_delete(data, out, created={"out.onnx.data"})
    assert reason == "not the file there when this run planned"
    assert plan.delete_old_data([data], out, created={"out.onnx.data"}) == [] and data.exists()


def test_a_refusal_after_an_output_was_published_names_it(tmp_path: Path) -> None:
    """t175: a --json target swapped for a symbolic link after the model was put in place
    was refused as if nothing had been written: the error names what was."""
    model, report, victim = tmp_path / "out.onnx", tmp_path / "r.json", tmp_path / "victim"
    victim.write_text("theirs")
    plan = IOPlan()
    plan.write(model, "output")
    plan.write(report, "json_path")
    plan.check()
    with plan.replace(model) as staged:
        staged.write_bytes(b"model")
    report.symlink_to(victim)
    with pytest.raises(OutputError) as refused, plan.replace(report) as staged:
        staged.write_text("{}")
    assert str(refused.value) == (
        f"json_path {report}: exists and is a symbolic link; refused; already written: {model}"
    )
    assert victim.read_text() == "theirs" and model.read_bytes() == b"model"


def test_an_old_data_file_behind_a_linked_folder_and_dotdot_is_the_real_one(
    tmp_path: Path,
) -> None:
    """t177: ``-o deep/../o.onnx`` where deep links to A/B is A/o.onnx; its old data file
    was looked for at ./o.onnx.data (the path normalized as text), so refolding neither
    removed A/o.onnx.data nor named it."""
    source = weight_normed(tmp_path, external=True)
    (tmp_path / "A" / "B").mkdir(parents=True)
    (tmp_path / "deep").symlink_to(tmp_path / "A" / "B")
    out = tmp_path / "deep" / ".." / "o.onnx"
    fold_onnx(source, out)
    first = (tmp_path / "A" / "o.onnx.data").read_bytes()
    _, report = fold_onnx(source, out)
    assert report.removed == [str(tmp_path / "deep" / ".." / "o.onnx.data")]
    assert not (tmp_path / "A" / "o.onnx.data").exists()
    assert (tmp_path / "A" / "o.onnx.1.data").read_bytes() == first


def test_an_old_output_whose_data_location_holds_a_nul_byte_references_nothing(
    tmp_path: Path,
) -> None:
    """t178: an old output naming its data file ``sub\\0/out.onnx.data`` made the plan's check
    fail on the NUL byte, exit 3; no file has such a name: it references nothing."""
    source = external_ok(tmp_path, "weights.bin")
    out = _old_output(tmp_path, "sub\0/out.onnx.data", record=["out.onnx.data"])
    before = snapshot(tmp_path)
    _, report = fold_onnx(source, out)
    after = snapshot(tmp_path)
    assert report.removed == [] and report.left == []
    assert {k: v for k, v in after.items() if k != "out.onnx"} == {
        k: v for k, v in before.items() if k != "out.onnx"
    }


def test_os_exit_raises_on_the_thread_running_the_user_s_code_alone() -> None:
    """t202: ``os._exit`` in a model.py ended the process at exit 0, nothing written; t203:
    patched for the whole process, it swallowed another thread's exit (a watchdog's), and
    blocks ending out of order left it patched."""
    real = os._exit
    with plan_module.user_code():
        with pytest.raises(plan_module.ProcessExit) as raised:
            os._exit(3)
        assert raised.value.code == 3
    assert os._exit is real
    entered, release = threading.Event(), threading.Event()

    def second_block() -> None:
        with plan_module.user_code():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=second_block)
    block = plan_module.user_code()
    block.__enter__()  # this thread's block begins first and ends first
    thread.start()
    assert entered.wait(10)
    block.__exit__(None, None, None)
    release.set()
    thread.join(10)
    assert os._exit is real


def test_os_exit_of_another_thread_exits_the_process(tmp_path: Path) -> None:
    """A thread other than the one running the user's code (one it started, the caller's
    watchdog) exits as it would, with its code."""
    script = tmp_path / "exits.py"
    script.write_text(
        "import os, threading, time\n"
        "from wnpass.plan import user_code\n"
        "with user_code():\n"
        "    threading.Thread(target=lambda: os._exit(7)).start()\n"
        "    time.sleep(10)\n"
    )
    done = subprocess.run([sys.executable, str(script)], check=False, timeout=60)
    assert done.returncode == 7
