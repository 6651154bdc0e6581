"""open_checkpoint: names, shapes and dtypes without loading tensors; torch files memory-mapped
and read with weights_only; state dicts found inside wrappers."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from tests.checkpoint.builders import save_sharded, state_dict
from wnpass.checkpoint.reading import MAX_NESTING, Key, Place, open_checkpoint, place_name
from wnpass.errors import InvalidModelError


def test_torch_files_are_loaded_weights_only_and_mapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    real = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    torch.save(state_dict(), tmp_path / "zip.pt")
    torch.save(state_dict(), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    checkpoint = open_checkpoint(tmp_path / "zip.pt")  # loads, reads the keys, lets go
    checkpoint.tensor(checkpoint.groups[0].tensors[0])  # loads again, on demand
    open_checkpoint(tmp_path / "old.pt")
    assert all(call["weights_only"] is True for call in calls)
    assert [call["mmap"] for call in calls] == [True, True, False]


def test_a_legacy_file_ending_in_zip_bytes_is_read_as_legacy(tmp_path: Path) -> None:
    """torch.load tells the formats apart by the file's first bytes; a legacy file whose last
    tensor holds a zip archive looks like a zip from its end, and mapping it would fail."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("vocab.txt", "hello")
    blob = torch.frombuffer(bytearray(archive.getvalue()), dtype=torch.uint8)
    state = {**state_dict(), "blob": blob}
    torch.save(state, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert zipfile.is_zipfile(tmp_path / "old.pt")  # what the end of the file says
    checkpoint = open_checkpoint(tmp_path / "old.pt")
    assert [info.key for info in checkpoint.groups[0].tensors] == list(state)
    assert torch.equal(checkpoint.tensor(checkpoint.groups[0].tensors[-1]), blob)


def test_state_dicts_are_found_inside_wrappers(tmp_path: Path) -> None:
    state = state_dict()
    torch.save(
        {
            "model": state,
            "ema": {"shadow": state_dict(seed=1)},
            "optimizer": {"state": {0: {}}},
            "step": 1,
        },
        tmp_path / "w.pt",
    )
    checkpoint = open_checkpoint(tmp_path / "w.pt")
    assert [group.name for group in checkpoint.groups] == ["model", "ema/shadow"]
    assert [info.key for info in checkpoint.groups[0].tensors] == list(state)


def test_safetensors_headers_only(tmp_path: Path) -> None:
    save_file({"a": torch.zeros(2, 3, dtype=torch.bfloat16)}, str(tmp_path / "a.safetensors"))
    checkpoint = open_checkpoint(tmp_path / "a.safetensors")
    (info,) = checkpoint.groups[0].tensors
    assert (info.key, info.shape, info.dtype, info.nbytes) == ("a", (2, 3), "bfloat16", 12)


def test_an_index_gives_the_order_and_the_shards(tmp_path: Path) -> None:
    state = state_dict()
    keys = list(state)
    index = save_sharded(tmp_path, state, [keys[5:], keys[:5]])
    checkpoint = open_checkpoint(index)
    assert [info.key for info in checkpoint.groups[0].tensors] == keys  # the index's order
    assert checkpoint.shard_names == [
        "model-00002-of-00002.safetensors",
        "model-00001-of-00002.safetensors",
    ]  # first listed first
    assert {info.shard for info in checkpoint.groups[0].tensors[:5]} == {0}


def _nested(depth: int) -> list[object]:
    """A list nested ``depth`` deep (the innermost is empty)."""
    value: list[object] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_containers_nested_up_to_the_limit_are_read(tmp_path: Path) -> None:
    """The state dict is depth 1; the list beside it adds MAX_NESTING - 1 levels."""
    loop: list[object] = []
    loop.append(loop)  # a recursive list: pickled once, then referred to
    state = {"a.weight_g": torch.ones(2, 1), "deep": _nested(MAX_NESTING - 1), "loop": loop}
    torch.save(state, tmp_path / "ok.pt")
    checkpoint = open_checkpoint(tmp_path / "ok.pt")
    assert [info.key for info in checkpoint.groups[0].tensors] == ["a.weight_g"]
    assert checkpoint.groups[0].others == {"deep", "loop"}


def test_containers_nested_deeper_are_refused_naming_the_input(tmp_path: Path) -> None:
    torch.save({"a.weight_g": torch.ones(2, 1), "deep": _nested(MAX_NESTING)}, tmp_path / "x.pt")
    with pytest.raises(InvalidModelError, match=r"x\.pt: holds containers nested more than 100"):
        open_checkpoint(tmp_path / "x.pt")


@pytest.mark.parametrize("where", ["in itself", "in a list in itself", "in a nested dict"])
def test_a_dict_that_contains_itself_is_refused(tmp_path: Path, where: str) -> None:
    """torch.save writes a cycle once and refers back to it; wnpass copies the dicts it
    rewrites, which would unroll a cycle through one (each level another state dict, the
    innermost still the input's). No state dict holds itself: refused, naming the input."""
    state: dict[str, object] = dict(state_dict())
    if where == "in itself":
        state["self"] = state
    elif where == "in a list in itself":
        state["refs"] = [1, state]
    else:
        state["ema"] = {"owner": state}
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(InvalidModelError, match=r"c\.pt: holds a dict that contains itself"):
        open_checkpoint(tmp_path / "c.pt")


@pytest.mark.parametrize(
    ("layout", "said"),
    [
        (torch.strided, r"holds a nested tensor \(torch.nested\)"),
        (torch.jagged, r"not a readable torch.save file"),  # its storage is refused when mapped
    ],
)
def test_a_nested_tensor_is_refused_in_one_line(
    tmp_path: Path, layout: torch.layout, said: str
) -> None:
    """A nested tensor (which ``torch.load(weights_only=True)`` reads) has no one shape: reading
    its shape raised an internal error (exit 3) in inspect, fold and convert alike (t122)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the strided layout's "prototype stage" warning
        ragged = torch.nested.nested_tensor([torch.rand(2), torch.rand(3)], layout=layout)
    torch.save({**state_dict(), "ragged": ragged}, tmp_path / "n.pt")
    with pytest.raises(InvalidModelError, match=rf"n\.pt: {said}"):
        open_checkpoint(tmp_path / "n.pt")


def _wrapped(value: dict[str, Any], depth: int) -> dict[str, Any]:
    """``value`` under ``depth`` dicts: {"w": {"w": ... value}}."""
    for _ in range(depth):
        value = {"w": value}
    return value


def test_a_state_dict_at_any_depth_is_found(tmp_path: Path) -> None:
    """A state dict under 9 dicts was skipped: "holds no state dict", or, beside another one,
    left unfolded while the fold said all were folded. Every depth torch files are read to
    (MAX_NESTING levels, the state dict itself one of them) is searched."""
    pair = {"a.weight_g": torch.rand(3, 1), "a.weight_v": torch.randn(3, 4)}
    for depth in (9, MAX_NESTING - 1):
        torch.save(_wrapped(pair, depth), tmp_path / "deep.pt")
        (group,) = open_checkpoint(tmp_path / "deep.pt").groups
        assert group.path == ("w",) * depth and len(group.tensors) == 2


def test_a_dict_held_under_two_names_is_one_state_dict(tmp_path: Path) -> None:
    """torch.load shares what torch.save wrote once: ``{"model": sd, "ema": sd}`` is one state
    dict, at its first name; and dicts shared level after level (2**60 paths) are read once."""
    sd = {"a.weight_g": torch.rand(3, 1), "a.weight_v": torch.randn(3, 4)}
    torch.save({"model": sd, "ema": sd}, tmp_path / "two.pt")
    (group,) = open_checkpoint(tmp_path / "two.pt").groups
    assert group.path == ("model",)
    shared: dict[str, Any] = sd
    for _ in range(60):
        shared = {"a": shared, "b": shared}
    torch.save(shared, tmp_path / "dag.pt")
    (group,) = open_checkpoint(tmp_path / "dag.pt").groups
    assert group.path == ("a",) * 60


@pytest.mark.parametrize(
    ("place", "name"),
    [
        ((), None),
        (("generator",), "generator"),
        (("model", "ema"), "model/ema"),
        (("snapshots", 0), "snapshots[0]"),
        ((Key(1000, 0),), "[1000]"),
        (("by_step", Key(1000, 3), 2), "by_step[1000][2]"),
        (("by_step", "1000"), "by_step/1000"),
        (("ema[0]",), "['ema[0]']"),
        (("runs", "a/b"), "runs/['a/b']"),
        ((Key(None, 0), Key((1, "x"), 1)), "[None][(1, 'x')]"),
        (("a\nb",), "['a\\nb']"),  # a newline, escaped
        (("a\\nb",), "['a\\\\nb']"),  # a backslash and n: not the same name
        (("m ",), "['m ']"),
        (("",), "['']"),
    ],
)
def test_a_place_has_one_name(place: Place, name: str | None) -> None:
    assert place_name(place) == name


def _rezipped(source: Path, target: Path, record: str, edit: Any, compress: bool = False) -> None:
    """``source`` (a torch.save zip) written again with ``edit`` applied to the bytes of its
    storage record ``record`` (``data/0``)."""
    with zipfile.ZipFile(source) as read, zipfile.ZipFile(target, "w") as write:
        prefix = read.namelist()[0].split("/")[0]
        for info in read.infolist():
            data = read.read(info)
            named = info.filename == f"{prefix}/{record}"
            kind = zipfile.ZIP_DEFLATED if named and compress else zipfile.ZIP_STORED
            write.writestr(info.filename, edit(data) if named else data, compress_type=kind)


@pytest.mark.parametrize(
    ("record", "edit", "compress", "message"),
    [
        (
            "data/0",
            lambda data: data[:100],
            False,
            "data/0 holds 100 bytes where its tensors need 256",
        ),
        (
            "data/0",
            lambda data: data + b"\0" * 8,
            False,
            "data/0 holds 264 bytes where its tensors need 256",
        ),
        ("data/1", lambda data: data[:100], False, ""),  # the last: torch.load refuses it
    ],
    ids=["first-cut-short", "first-too-long", "second-cut-short"],
)
def test_a_storage_record_of_another_size_than_its_tensors_is_refused(
    tmp_path: Path, record: str, edit: Any, compress: bool, message: str
) -> None:
    """torch.load with mmap maps a storage at its record's offset, the pickle's size long, and
    does not compare that with the record's: the first record cut short was folded from the
    bytes after it (g of -8.6e17), exit 0. torch.load without mmap refuses it; so does wnpass."""
    good = tmp_path / "good.pt"
    torch.save({"a.weight_g": torch.rand(64, 1), "a.weight_v": torch.randn(64, 300)}, good)
    bad = tmp_path / "bad.pt"
    _rezipped(good, bad, record, edit, compress)
    with pytest.raises(
        InvalidModelError, match=f"bad.pt: not a readable torch.save file: .*{message}"
    ):
        open_checkpoint(bad).tensors()
    _rezipped(good, tmp_path / "same.pt", record, lambda data: data)
    assert [info.key for info in open_checkpoint(tmp_path / "same.pt").tensors()] == [
        "a.weight_g",
        "a.weight_v",
    ]


def test_a_file_whose_storage_records_are_compressed_is_read_into_memory(tmp_path: Path) -> None:
    """A torch.save file repacked by a zip tool (its records deflated): torch.load reads it,
    but mapped it gives the compressed bytes as the tensors' without a word; wnpass refused
    it as unreadable (t122). It is read without mapping, values as torch.load gives them."""
    from wnpass.checkpoint.api import fold_checkpoint

    good = tmp_path / "good.pt"
    state = {"a.weight_g": torch.rand(64, 1) + 0.5, "a.weight_v": torch.randn(64, 300)}
    torch.save(state, good)
    packed = tmp_path / "packed.pt"
    _rezipped(good, packed, "data/0", lambda data: data, compress=True)
    with zipfile.ZipFile(packed) as archive:
        assert any(info.compress_type == zipfile.ZIP_DEFLATED for info in archive.infolist())
    fold_checkpoint(good, tmp_path / "good.folded.pt")
    fold_checkpoint(packed, tmp_path / "packed.folded.pt")
    expected = torch.load(tmp_path / "good.folded.pt", weights_only=True)["a.weight"]
    folded = torch.load(tmp_path / "packed.folded.pt", weights_only=True)["a.weight"]
    assert folded.numpy().tobytes() == expected.numpy().tobytes()


def test_a_safetensors_shard_of_a_torch_index_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """torch.load reads any ``*.safetensors`` name as safetensors, so such a shard of a torch
    index was accepted, then written back as a torch.save zip under its safetensors name: an
    output nothing could load, wnpass included, from a fold that said it succeeded (t33)."""
    from wnpass.cli import main

    torch.save(
        {"a.weight_g": torch.rand(3, 1), "a.weight_v": torch.randn(3, 4)}, tmp_path / "x.bin"
    )
    save_file({"b.bias": torch.zeros(3)}, str(tmp_path / "y.safetensors"))
    index = tmp_path / "pytorch_model.bin.index.json"
    weight_map = {"a.weight_g": "x.bin", "a.weight_v": "x.bin", "b.bias": "y.safetensors"}
    index.write_text(json.dumps({"weight_map": weight_map}))
    before = sorted(tmp_path.iterdir())
    for command in (["fold", str(index)], ["convert", str(index), "--to", "parametrize"]):
        assert main(command) == 2
        assert capsys.readouterr().err == (
            f"wnpass: error: {tmp_path / 'y.safetensors'}: named as a safetensors file where a "
            "torch.save file is read (torch.load reads it as safetensors); refused\n"
        )
        assert sorted(tmp_path.iterdir()) == before


def test_a_safetensors_file_that_may_not_be_read_is_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safetensors library said "No such file or directory" of a file it may not read
    (t228). The denial is made by ``open`` here: the suite may run as root, whom no file mode
    stops."""
    from wnpass.checkpoint import reading

    path = tmp_path / "a.safetensors"
    save_file({"a": torch.zeros(2)}, str(path))

    def denied(file: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return open(file, *args, **kwargs)

    monkeypatch.setattr(reading, "open", denied, raising=False)
    with pytest.raises(
        InvalidModelError, match=r"a\.safetensors: cannot read \(Permission denied\)$"
    ):
        open_checkpoint(path)


class _Runs:
    """Pickled as a call of ``builtins.exec`` on ``code``."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (self.code,))


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # zipfile's, as it is built
@pytest.mark.parametrize("twice", ["data.pkl", "data/0", "DATA.PKL"])
@pytest.mark.parametrize("keep", [[], ["--keep-objects"]])
def test_a_zip_holding_a_record_twice_is_refused_unrun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], twice: str, keep: list[str]
) -> None:
    """Two ``data.pkl`` records, a harmless one first and one that runs code second: the
    scan of the globals read one, torch's reader the other; with `--keep-objects`, the file
    was refused saying the harmless class could not be kept, as a nested one (t345). A
    record twice, whichever, is refused saying so, before anything is loaded."""
    from wnpass.cli import main

    ran = tmp_path / "ran"
    harmless, harmful = io.BytesIO(), io.BytesIO()
    torch.save({"a.weight": torch.zeros(4), "p": PurePosixPath("/data")}, harmless)
    torch.save({"a.weight": torch.zeros(4), "p": _Runs(f"open({str(ran)!r}, 'w')")}, harmful)
    path = tmp_path / "twice.pt"
    with (
        zipfile.ZipFile(harmless) as first,
        zipfile.ZipFile(harmful) as second,
        zipfile.ZipFile(path, "w") as write,
    ):
        for info in first.infolist():
            write.writestr(info.filename, first.read(info))
            if info.filename.endswith(f"/{twice.lower()}"):  # a second, its case its own
                second_name = info.filename.removesuffix(twice.lower()) + twice
                write.writestr(second_name, second.read(info.filename))
    assert main(["inspect", str(path), *keep]) == 2
    named = f"'{first.namelist()[0].split('/')[0]}/{twice}'"
    assert f"refused: its zip archive holds two records named {named}" in capsys.readouterr().err
    assert not ran.exists()
