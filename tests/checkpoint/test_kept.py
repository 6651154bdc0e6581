"""keep_objects: a torch file's objects that the weights-only loader does not build are kept
unbuilt and written back as the file holds them; nothing of them runs."""

from __future__ import annotations

import argparse
import collections
import datetime
import decimal
import fractions
import functools
import importlib
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import textwrap
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.checkpoint.builders import state_dict
from wnpass.checkpoint import convert_checkpoint, fold_checkpoint, inspect_checkpoint
from wnpass.checkpoint import kept as kept_module
from wnpass.checkpoint.kept import Kept
from wnpass.errors import InvalidModelError

# a module of the training code whose classes the checkpoint holds; importing it leaves a
# mark, so a test can tell whether anything built them
TRAINING_CODE = textwrap.dedent(
    """
    import pathlib

    pathlib.Path(__file__).with_name("imported").touch()

    class Config:
        def __init__(self, **values):
            self.__dict__.update(values)

        def __eq__(self, other):
            return type(other) is Config and vars(self) == vars(other)
    """
)

# what the other Python process prints of the output's objects, built there
SHOW = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, sys.argv[2])
    out = torch.load(sys.argv[1], weights_only=False)
    extra = out["extra"]
    print(repr((extra["config"].__dict__, extra["when"], extra["ratio"], extra["path"],
                extra["kind"].__name__, extra["again"] is extra["config"])))
    """
)


def trainer_file(tmp_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    """A checkpoint holding, beside a weight-normed state dict, objects the weights-only loader
    refuses: a class of the training code (built with state), a datetime, a Fraction, a path,
    a class as a value, one object under two names. Its code's folder, and what its objects
    are (as text, to compare with another process's load)."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "trainer_config.py").write_text(TRAINING_CODE)
    sys.path.insert(0, str(code))
    try:
        import trainer_config

        config = trainer_config.Config(sampling_rate=22050, rates=[8, 8, 2, 2], name="hifigan")
        extra = {
            "config": config,
            "when": datetime.datetime(2026, 12, 7, 9, 30),
            "ratio": fractions.Fraction(3, 7),
            "path": pathlib.PurePosixPath("/runs/hifigan/last.ckpt"),
            "kind": trainer_config.Config,
            "again": config,
        }
        torch.save({"state_dict": state_dict("legacy"), "extra": extra}, tmp_path / "last.ckpt")
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("trainer_config", None)
    (code / "imported").unlink()
    shown = (
        vars(config),
        extra["when"],
        extra["ratio"],
        extra["path"],
        "Config",
        True,
    )
    return tmp_path / "last.ckpt", code, {"shown": repr(shown)}


def _built_elsewhere(path: Path, code: Path) -> str:
    """The objects of ``path`` as another Python process builds them, the training code
    importable there."""
    result = subprocess.run(
        [sys.executable, "-c", SHOW, str(path), str(code)],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_objects_are_kept_unbuilt_and_written_back_as_the_file_holds_them(tmp_path: Path) -> None:
    ckpt, code, expected = trainer_file(tmp_path)
    report = fold_checkpoint(ckpt, keep_objects=True)
    assert report.count("folded") == 5
    assert report.kept == [
        "datetime.datetime",
        "fractions.Fraction",
        "pathlib.PurePosixPath",
        "trainer_config.Config",
    ]
    assert not (code / "imported").exists()  # nothing of the training code was run
    folded = tmp_path / "last.folded.ckpt"
    assert _built_elsewhere(folded, code) == expected["shown"]
    # the weights are those of any fold: as without objects to keep
    torch.save({"state_dict": state_dict("legacy")}, tmp_path / "plain.ckpt")
    fold_checkpoint(tmp_path / "plain.ckpt")
    plain = torch.load(tmp_path / "plain.folded.ckpt", weights_only=True)["state_dict"]
    (code / "imported").unlink()  # the other process imported it
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(code))
        out = torch.load(folded, weights_only=False)
        sys.modules.pop("trainer_config", None)
    assert out["state_dict"].keys() == plain.keys()
    assert all(torch.equal(out["state_dict"][key], plain[key]) for key in plain)


def test_without_keep_objects_the_file_is_refused_naming_them(tmp_path: Path) -> None:
    ckpt, code, _ = trainer_file(tmp_path)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(InvalidModelError) as error:
        fold_checkpoint(ckpt)
    assert str(error.value) == (
        f"{ckpt}: refused: loading it would build objects of datetime.datetime, "
        "fractions.Fraction, pathlib.PurePosixPath, trainer_config.Config, which runs their "
        "code; it was not run (give keep_objects=True, --keep-objects, to keep them as they "
        "are, never built)"
    )
    assert sorted(tmp_path.iterdir()) == before and not (code / "imported").exists()


def test_inspect_and_convert_keep_objects_too(tmp_path: Path) -> None:
    ckpt, code, expected = trainer_file(tmp_path)
    inspected = inspect_checkpoint(ckpt, keep_objects=True)
    assert inspected.count("foldable") == 5 and "trainer_config.Config" in inspected.kept
    assert inspected.to_dict()["kept"] == inspected.kept
    convert_checkpoint(ckpt, "parametrize", keep_objects=True)
    assert _built_elsewhere(tmp_path / "last.parametrize.ckpt", code) == expected["shown"]


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_what_the_loader_never_allows_is_refused_even_kept(tmp_path: Path) -> None:
    """``os.system``: kept objects are of globals the loader could build if asked; a module it
    never allows (``os``, ``sys``) stays refused, and runs nothing."""
    torch.save({"w": torch.ones(2), "x": _Evil(tmp_path / "pwned")}, tmp_path / "evil.pt")
    with pytest.raises(InvalidModelError, match="refused: loading it would run code"):
        fold_checkpoint(tmp_path / "evil.pt", keep_objects=True)
    assert not (tmp_path / "pwned").exists()


class _Calls:
    """Unpickled, calls ``function`` with ``args``."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[object, tuple[Any, ...]]:
        return (self.function, self.args)


@pytest.mark.parametrize(
    "function",
    [exec, open, subprocess.Popen, shutil.copy, importlib.import_module],
    ids=["builtins.exec", "io.open", "subprocess.Popen", "shutil.copy", "importlib"],
)
def test_a_function_or_a_class_that_runs_code_is_never_kept(tmp_path: Path, function: Any) -> None:
    """t345: ``builtins.exec`` (and ``io.open``, ``shutil.copy``, ...) was kept as any
    global, the refusal without keeping suggested ``--keep-objects``, and the folded output
    held the payload, which a trainer's load (``weights_only=False``) runs. What runs code,
    opens files or imports modules is never kept, and neither refusal suggests keeping."""
    marker = tmp_path / "pwned"
    payload = _Calls(function, f"open({str(marker)!r}, 'w')" if function is exec else "x")
    torch.save({"w": torch.ones(2), "x": payload}, tmp_path / "evil.pt")
    for keep in (False, True):
        with pytest.raises(InvalidModelError) as error:
            fold_checkpoint(tmp_path / "evil.pt", keep_objects=keep)
        assert "cannot be kept (it runs code, opens files or imports modules" in str(error.value)
        assert "keep_objects" not in str(error.value)
    assert not marker.exists() and not (tmp_path / "evil.folded.pt").exists()


@pytest.mark.parametrize("function", ["cProfile.run", "pydoc.pipepager", "unimported.run"])
def test_a_function_no_list_names_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, function: str
) -> None:
    """t347: ``cProfile.run(code)``, ``pydoc.pipepager(text, command)`` ran what the output
    was loaded with: a list of what runs code has no end. A function is never kept: told by
    its module where this process imported it, else by its name (a class's is capitalized),
    never by importing one."""
    (tmp_path / "unimported.py").write_text("def run(code):\n    exec(code)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module, _, name = function.partition(".")
    payload = _Calls(getattr(importlib.import_module(module), name), "x")
    torch.save({"w": torch.ones(2), "x": payload}, tmp_path / "evil.pt")
    monkeypatch.delitem(sys.modules, "unimported", raising=False)
    why = "a function" if module == "unimported" else "of Python's standard library"
    with pytest.raises(InvalidModelError, match=rf"{function} cannot be kept \({why}"):
        fold_checkpoint(tmp_path / "evil.pt", keep_objects=True)
    assert "unimported" not in sys.modules


@pytest.mark.parametrize(
    ("maker", "why"),
    [
        ("imaplib.IMAP4_stream", "of Python's standard library"),  # runs a shell command
        ("zipfile.ZipFile", "of Python's standard library"),  # truncates its file
        ("logging.FileHandler", "of Python's standard library"),
        ("numpy.memmap", "of NumPy, arrays, scalars"),  # opens its file, mode w+
    ],
)
def test_a_class_that_acts_as_it_is_built_is_not_kept(tmp_path: Path, maker: str, why: str) -> None:
    """t348: classes outside the list of what runs code were kept, whatever they did as
    they were built where the output was loaded (``weights_only=False``): a shell command, a
    file truncated or created. Of Python's standard library and NumPy only what a
    checkpoint's objects are made of is kept; nothing runs, nothing is written."""
    module, _, name = maker.rpartition(".")
    target = tmp_path / "victim"
    target.write_text("kept")
    args: dict[str, tuple[Any, ...]] = {
        "imaplib.IMAP4_stream": (f"touch {target}.ran",),
        "zipfile.ZipFile": (str(target), "w"),
        "logging.FileHandler": (str(target), "w"),
        "numpy.memmap": (str(target), "uint8", "w+", 0, (1,)),
    }
    payload = _Calls(getattr(importlib.import_module(module), name), *args[maker])
    torch.save({"w": torch.ones(2), "x": payload}, tmp_path / "evil.pt")
    with pytest.raises(InvalidModelError, match=rf"{maker} cannot be kept \({why}"):
        fold_checkpoint(tmp_path / "evil.pt", keep_objects=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pt", "victim"]
    assert target.read_text() == "kept"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("builtins.license", kept_module.NOT_LISTED),  # an object; calling it waits on input
        ("antigravity.Xkcd", kept_module.NOT_LISTED),  # importing it opens a browser
        ("typing.get_type_hints", kept_module.NOT_A_CLASS),  # evaluates annotations
        ("numpy.random.bit_generator.print", kept_module.NOT_NUMPYS),
        ("pathlib.PosixPath", None),
        ("typing.Optional", None),
        ("numpy.random._pcg64.PCG64", None),
        ("trainer_config.Config", None),  # the training code's, not imported: capitalized
        ("torch.__builtins__", kept_module.NOT_A_CLASS),  # a dict: exec through getitem, t351
        ("wnpass.checkpoint.kept.subprocess_Popen", kept_module.NOT_LISTED),  # re-exported
        ("pathlib._local.PosixPath", None),  # as Python 3.13 pickles a path
        ("types.GenericAlias", None),  # list[int]
    ],
)
def test_what_is_kept_of_the_standard_library_and_numpy(
    name: str, why: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A class another module re-exports is judged where it is defined (t351: subprocess's
    Popen under a library's module); only classes are kept outside typing."""
    monkeypatch.setattr(kept_module, "subprocess_Popen", subprocess.Popen, raising=False)
    module, _, qualname = name.rpartition(".")
    assert kept_module.why_not_kept(name, (module, qualname)) == why
    assert "antigravity" not in sys.modules


def test_the_objects_of_training_configurations_are_kept(tmp_path: Path) -> None:
    """t346: a first version kept capitalized classes only, outside a list of modules, and
    refused LightningCLI's ``functools.partial`` of an optimizer, a ``SimpleNamespace``,
    ``type(None)``, ``typing.Optional[int]``, a NumPy scalar type: kept, and written back as
    the file holds them."""
    import typing

    import numpy as np

    objects = {
        "optimizer": functools.partial(torch.optim.Adam, lr=0.1),
        "namespace": types.SimpleNamespace(lr=0.1),
        "none_type": type(None),
        "optional": typing.Optional[int],  # noqa: UP045  # as a configuration holds it
        "dtype": np.float32,
    }
    # and NumPy's generators (refused through Cython's function, t348), the library's
    more: dict[str, Any] = {
        "rng": np.random.default_rng(0),
        "state": np.random.RandomState(0),
        "array": np.arange(3.0),
        "args": argparse.Namespace(lr=0.1),
        "path": pathlib.PurePosixPath("/data"),
        "every": datetime.timedelta(hours=1),
        "counts": collections.Counter("aab"),
        "exact": decimal.Decimal("0.1"),
        "id": uuid.UUID(int=7),
    }
    held = {"state_dict": {"w": torch.ones(2)}, "hyper_parameters": objects, "more": more}
    torch.save(held, tmp_path / "c.pt")
    fold_checkpoint(tmp_path / "c.pt", tmp_path / "o.pt", keep_objects=True)
    written = torch.load(tmp_path / "o.pt", weights_only=False)
    loaded = written["hyper_parameters"]
    back = written["more"]
    assert back["rng"].bit_generator.state == more["rng"].bit_generator.state
    assert np.array_equal(back["state"].get_state()[1], more["state"].get_state()[1])
    assert np.array_equal(back.pop("array"), more.pop("array"))
    assert {k: v for k, v in back.items() if k not in ("rng", "state")} == {
        k: v for k, v in more.items() if k not in ("rng", "state")
    }
    assert loaded["optimizer"].func is torch.optim.Adam and loaded["optimizer"].keywords == {
        "lr": 0.1
    }
    assert loaded["namespace"] == objects["namespace"]
    assert [loaded[k] for k in ("none_type", "optional", "dtype")] == [
        type(None), typing.Optional[int], np.float32,  # noqa: UP045
    ]  # fmt: skip


def test_an_object_filled_as_a_dict_is_refused_even_kept(tmp_path: Path) -> None:
    """A ``defaultdict`` with entries is filled by the pickle as a dict, which torch's loader
    does to dicts alone: refused, not half kept."""
    from collections import defaultdict

    counts: defaultdict[str, int] = defaultdict(int, {"steps": 3})
    torch.save({"w": torch.ones(2), "counts": counts}, tmp_path / "c.pt")
    with pytest.raises(InvalidModelError, match=r"refused: collections\.defaultdict is filled as"):
        inspect_checkpoint(tmp_path / "c.pt", keep_objects=True)


def test_a_legacy_format_file_says_objects_are_kept_in_zip_files_only(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save(
        {"w": torch.ones(2), "when": datetime.date(2020, 1, 1)},
        path,
        _use_new_zipfile_serialization=False,
    )
    with pytest.raises(InvalidModelError, match="objects are kept in zip-format files only"):
        inspect_checkpoint(path, keep_objects=True)


def test_a_kept_object_pickles_as_the_instructions_it_was_loaded_from() -> None:
    """A stand-in written back reads as the object it stands for: made by ``NEWOBJ`` with its
    state, or by calling its global (``REDUCE``); a class as a value as that class."""
    from wnpass.checkpoint.kept import PICKLER, kept_class

    made = kept_class("fractions.Fraction", "fractions", "Fraction")(3, 7)  # REDUCE
    namespace: Any = kept_class("argparse.Namespace", "argparse", "Namespace")
    config = namespace.__new__(namespace)
    config.__setstate__({"lr": 0.5})  # NEWOBJ, then BUILD
    stream = pytest.importorskip("io").BytesIO()
    PICKLER.Pickler(stream, protocol=2).dump(
        [made, config, kept_class("builtins.dict", "builtins", "dict")]
    )
    loaded = pickle.loads(stream.getvalue())
    assert loaded[0] == fractions.Fraction(3, 7) and vars(loaded[1]) == {"lr": 0.5}
    assert loaded[2] is dict and b"__builtin__\ndict" in stream.getvalue()  # protocol 2's name
    assert isinstance(made, Kept)
    with pytest.raises(AttributeError, match="kept as the file holds it"):
        made.numerator = 1


class Holder:
    """A class of the training code that holds a state dict (an EMA wrapper)."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self.state = state

    class Nested:
        """A class in a class: the pickle reaches it through ``builtins.getattr``."""


@pytest.mark.parametrize("first", ["state dict", "kept object"])
def test_a_state_dict_a_kept_object_holds_too_stays_shared_and_folded(
    tmp_path: Path, first: str
) -> None:
    """``{"state_dict": sd, "ema": Holder(sd)}``: the state dict was folded, and the kept
    object wrote the original pair again beside it, no longer shared (t293); with the kept
    object first, its copy took the state dict's place: the fold failed, and convert wrote the
    pairs unconverted, saying they were (t296)."""
    state = state_dict("legacy")
    entries = [("state_dict", state), ("ema", Holder(state))]
    torch.save(dict(entries if first == "state dict" else entries[::-1]), tmp_path / "h.pt")
    report = fold_checkpoint(tmp_path / "h.pt", keep_objects=True)
    assert report.count("folded") == 5 and report.kept == [f"{__name__}.Holder"]
    out = torch.load(tmp_path / "h.folded.pt", weights_only=False)
    assert out["ema"].state is out["state_dict"]
    assert not any(key.endswith("_g") for key in out["state_dict"])
    convert_checkpoint(tmp_path / "h.pt", "parametrize", keep_objects=True)
    converted = torch.load(tmp_path / "h.parametrize.pt", weights_only=False)
    assert converted["ema"].state is converted["state_dict"]
    assert sum(key.endswith("original0") for key in converted["state_dict"]) == 5


class _Pickled:
    """What a crafted pickle does with one object: built twice, or named by a dotted global."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Pickled, (self.how,), {"how": self.how})


_PythonPickler: Any = pickle._Pickler


class _Crafting(_PythonPickler):
    """Python's pickler, writing a second BUILD after a ``_Pickled("twice")``, and the global
    of a ``_Pickled`` as a dotted name (``Outer._Pickled``) for ``_Pickled("dotted")``."""

    dotted = False

    def save_reduce(self, func: Any, args: Any, state: Any = None, *rest: Any, obj: Any = None,
                    **options: Any) -> None:  # fmt: skip
        super().save_reduce(func, args, state, *rest, obj=obj, **options)
        if isinstance(obj, _Pickled) and obj.how == "twice":
            self.write(pickle.EMPTY_DICT + pickle.BUILD)

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is _Pickled and self.dotted:
            self.write(pickle.GLOBAL + f"{__name__}\nOuter._Pickled\n".encode())
            return
        super().save_global(obj, name)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("twice", "Can only keep an object the pickle builds once, with a state (BUILD)"),
        ("dotted", f"{__name__}.Outer._Pickled cannot be kept (a class nested in another"),
    ],
)
def test_what_a_kept_object_could_not_be_written_back_as_is_refused(
    tmp_path: Path, how: str, message: str
) -> None:
    """Two BUILDs of one object, or a dotted global (protocol 4's, in a protocol 2 pickle):
    kept, they were written back otherwise (one BUILD; ``module.Outer`` ``_Pickled``, which
    does not load), t293. Refused."""
    import types

    crafting = type("Crafting", (_Crafting,), {"dotted": how == "dotted"})
    module = types.SimpleNamespace(Pickler=crafting, __name__="crafting")
    path = tmp_path / "c.pt"
    torch.save({"w": torch.ones(2), "x": _Pickled(how)}, path, pickle_module=module)
    with pytest.raises(InvalidModelError) as error:
        inspect_checkpoint(path, keep_objects=True)
    assert message in str(error.value)


def test_a_compressed_zip_keeps_objects_and_a_nested_class_is_refused_saying_why(
    tmp_path: Path,
) -> None:
    """A checkpoint repacked with deflate (read into memory, not mapped) was said not to be of
    the zip format (t293). A class nested in another, which the pickle reaches through
    ``builtins.getattr``, cannot be kept: said so, not suggested."""
    import zipfile

    ckpt, _, _ = trainer_file(tmp_path)
    packed = tmp_path / "packed.ckpt"
    with zipfile.ZipFile(ckpt) as source, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as z:
        for item in source.infolist():
            z.writestr(item.filename, source.read(item.filename))
    assert inspect_checkpoint(packed, keep_objects=True).kept == [
        "datetime.datetime", "fractions.Fraction", "pathlib.PurePosixPath",
        "trainer_config.Config",
    ]  # fmt: skip
    torch.save({"w": torch.ones(2), "x": Holder.Nested()}, tmp_path / "n.pt")
    for keep in (False, True):
        with pytest.raises(InvalidModelError) as error:
            inspect_checkpoint(tmp_path / "n.pt", keep_objects=keep)
        assert "builtins.getattr cannot be kept (a class nested in another" in str(error.value)
        assert "--keep-objects" not in str(error.value)


def test_a_file_of_one_object_says_so_without_suggesting_to_keep_it(tmp_path: Path) -> None:
    """HF Trainer's ``training_args.bin`` holds one ``TrainingArguments``: the refusal said to
    give --keep-objects, after which it said the file holds no state dict (t295). It says
    that at once, having loaded it with its objects kept (which runs nothing)."""
    torch.save(Holder({}), tmp_path / "training_args.bin")
    for keep in (False, True):
        with pytest.raises(InvalidModelError) as error:
            fold_checkpoint(tmp_path / "training_args.bin", keep_objects=keep)
        assert (
            str(error.value)
            == f"{tmp_path / 'training_args.bin'}: holds a Holder, not a state dict"
        )


class AttrDict(dict[str, float]):
    """HiFi-GAN's hyperparameters: a dict subclass, which the pickle fills as a dict."""


class _Scaled(torch.Tensor):
    """A tensor subclass of the training code."""


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 1, 3)


@pytest.mark.parametrize(
    ("held", "says"),
    [
        (
            lambda: {"state_dict": state_dict("legacy"), "h": AttrDict(lr=2e-4)},
            f"refused: {__name__}.AttrDict is filled as a dict or a list (a subclass of one), "
            "which an object kept unbuilt cannot be; it was not run",
        ),
        (
            lambda: _Net(),
            "holds a _Net (a whole model, torch.save(model): save its state_dict()), not a "
            "state dict",
        ),
        (
            lambda: {"state_dict": state_dict("legacy"), "t": _Scaled(torch.ones(2))},
            "refused: it holds a tensor of a subclass of torch.Tensor, which needs its class "
            "built: it cannot be kept unbuilt; it was not run",
        ),
        (
            lambda: {"model": _Net()},
            "holds no state dict (no dict of named tensors); objects kept unbuilt are not "
            "looked into",
        ),
    ],
    ids=["dict subclass", "a whole model", "a tensor subclass", "a whole model in a dict"],
)
def test_what_keeping_would_meet_is_said_instead_of_suggesting_it(
    tmp_path: Path, held: Any, says: str
) -> None:
    """--keep-objects was suggested where it would not do: an object the pickle fills as a
    dict (HiFi-GAN's AttrDict) was then refused in torch's words, and a whole model then
    said to hold no state dict (t296); a tensor subclass was said to be no readable file
    (t297)."""
    torch.save(held(), path := tmp_path / "c.pt")
    for keep in (False, True):
        with pytest.raises(InvalidModelError) as error:
            fold_checkpoint(path, keep_objects=keep)
        assert str(error.value) == f"{path}: {says}"


def _dtensor_state_dict(path: Path) -> None:
    """Save a state dict of DTensors (what an FSDP2 model's ``state_dict()`` holds) to
    ``path``, from a process group of one made for it."""
    import torch.distributed as dist
    from torch.distributed.tensor import DeviceMesh, DTensor, Replicate

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        mesh = DeviceMesh("cpu", [0])
        state = {
            key: DTensor.from_local(value, mesh, [Replicate()])
            for key, value in state_dict("parametrize").items()
        }
        torch.save(state, path)
    finally:
        dist.destroy_process_group()


class DTensorConfig:
    """A class of the training code whose name holds "DTensor"."""


class DTensor(torch.Tensor):
    """A tensor subclass of the training code named as torch.distributed's is."""


def test_a_tensor_subclass_named_dtensor_elsewhere_is_no_dtensor(tmp_path: Path) -> None:
    """Only torch.distributed's class is said to be DTensors (its global's module), not one of
    the same name in the training code (t305)."""
    weight = torch.randn(4, 4).as_subclass(DTensor)
    torch.save({"weight": weight, "bias": torch.zeros(4)}, path := tmp_path / "sub.pt")
    with pytest.raises(InvalidModelError) as error:
        fold_checkpoint(path, keep_objects=True)
    assert "DTensors" not in str(error.value) and "a subclass of torch.Tensor" in str(error.value)


def test_a_class_named_like_a_dtensor_is_no_dtensor(tmp_path: Path) -> None:
    """A refused class whose name merely held "DTensor" was said to be DTensors, and
    --keep-objects, which folds the file, was not offered (t304)."""
    torch.save(
        {"state_dict": state_dict("legacy"), "cfg": DTensorConfig()}, path := tmp_path / "c.ckpt"
    )
    with pytest.raises(InvalidModelError) as error:
        fold_checkpoint(path)
    assert "DTensors" not in str(error.value) and "--keep-objects" in str(error.value)
    assert fold_checkpoint(path, keep_objects=True).published


def test_a_state_dict_of_dtensors_is_said_to_be_one(tmp_path: Path) -> None:
    """FSDP2's ``state_dict()`` saved as it is was refused in torch's advice to load it with
    weights_only=False (which no user of wnpass can take), torch's cause dropped; kept, as a
    tensor subclass (t302); where torch.distributed.tensor was imported (by a model.py; here
    by making the file), it is built, and was refused as an unreadable file. Each says it
    holds DTensors and how to save the whole weights."""
    _dtensor_state_dict(path := tmp_path / "fsdp.pt")
    fold = f"from wnpass.checkpoint import fold_checkpoint; fold_checkpoint({str(path)!r}, "
    for keep in (False, True):  # in a process that imports no torch.distributed.tensor
        done = subprocess.run(
            [sys.executable, "-c", fold + f"keep_objects={keep})"],
            capture_output=True,
            text=True,
            check=False,
        )
        said = done.stderr.strip().splitlines()[-1]
        assert said.startswith(f"wnpass.errors.InvalidModelError: {path}: refused: it holds DTe")
        assert "a distributed model's or optimizer's state" in said
        assert "full_state_dict=True" in said and "weights_only" not in said
    with pytest.raises(InvalidModelError, match=r"refused: it holds DTensors \(a distributed"):
        fold_checkpoint(path)  # torch.distributed.tensor imported: the DTensors are built
    built = subprocess.run(  # as a model.py that imports it makes them: no warning of torch's
        [sys.executable, "-c", f"import torch.distributed.tensor; {fold}keep_objects=False)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "refused: it holds DTensors" in built.stderr and "device_mesh" not in built.stderr
