"""The report helpers shared by every command's summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from tests.helpers import onnx_model, rand
from tests.hostile.builders import WN
from wnpass.cli import main
from wnpass.errors import OutputError
from wnpass.report import (
    ConeReport,
    SiteReport,
    cone_rows,
    counted,
    human_bytes,
    site_rows,
    write_json,
)


def _strict_load(path: Path) -> object:
    """Parse as strict JSON: NaN, Infinity and -Infinity are refused."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{path}: {constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, "0 weight-norm sites"), (1, "1 weight-norm site"), (2, "2 weight-norm sites")],
)
def test_counted_is_singular_for_one_only(count: int, expected: str) -> None:
    assert counted(count, "weight-norm site") == expected


def test_counted_takes_an_irregular_plural() -> None:
    singular, plural = "weight computed from constants", "weights computed from constants"
    assert counted(1, singular, plural) == "1 weight computed from constants"
    assert counted(3, singular, plural) == "3 weights computed from constants"


def test_human_bytes_switches_units_at_1024() -> None:
    assert [human_bytes(n) for n in (None, 1023, 1024, 5 * 2**20)] == [
        "-", "1023 B", "1.0 KiB", "5.0 MiB"
    ]  # fmt: skip


def test_write_json_writes_non_finite_numbers_as_null(tmp_path: Path) -> None:
    data = {"a": float("inf"), "b": [float("nan"), -float("inf"), 1.5], "c": {"d": (2.0,)}}
    write_json(tmp_path / "r.json", data)
    assert _strict_load(tmp_path / "r.json") == {
        "a": None,
        "b": [None, None, 1.5],
        "c": {"d": [2.0]},
    }


def test_write_json_writes_bytes_no_utf_8_decodes_as_printed_lines_do(tmp_path: Path) -> None:
    """t162: a file name of a byte no UTF-8 decodes, which Python holds as a lone surrogate,
    was written ``\\udcff``, and strict parsers refused the whole report; it is ``\\xff``."""
    write_json(tmp_path / "r.json", {"input": "bad\udcff.onnx", "ok": "modèle", "k\udcfe": 1})
    text = (tmp_path / "r.json").read_text()
    assert "udc" not in text.lower()
    from wnpass.errors import printable

    assert printable("bad\udcff.onnx") == "bad\\xff.onnx"  # as printed lines write it (t163)
    assert _strict_load(tmp_path / "r.json") == {
        "input": "bad\\xff.onnx",
        "ok": "modèle",
        "k\\xfe": 1,
    }


# y = 0 * x + k: the reference's output is all zeros, so the candidate's relative error is Inf.
ZERO_PLUS_K = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[4] x) => (float[4] y) { m = Mul(x, zero)  y = Add(m, k) }
"""


def _zero_plus(tmp_path: Path, k: float) -> str:
    path = tmp_path / f"plus{k:g}.onnx"
    onnx.save(
        onnx_model(ZERO_PLUS_K, zero=np.zeros(1, np.float32), k=np.full(1, k, np.float32)), path
    )
    return str(path)


@pytest.mark.parametrize("command", ["check", "fold", "inspect"])
def test_every_command_writes_strict_json(command: str, tmp_path: Path) -> None:
    model = tmp_path / "wn.onnx"
    onnx.save(onnx_model(WN, v=rand(3, 4), g=rand(3, 1)), model)
    report = tmp_path / "report.json"
    argv = {
        "check": ["check", _zero_plus(tmp_path, 0.0), _zero_plus(tmp_path, 1e10), "--runs", "1"],
        "fold": ["fold", str(model), "--verify", "--runs", "1"],
        "inspect": ["inspect", str(model)],
    }[command]
    main([*argv, "--json", str(report)])
    data = _strict_load(report)
    if command == "check":  # the relative error against zeros is not finite: null
        assert isinstance(data, dict)
        assert data["runs"][0]["comparisons"][0]["max_rel"] is None


def test_a_site_row_shows_the_shape_written_where_it_is_not_vs() -> None:
    def row(written: list[int] | None) -> str:
        site = SiteReport("w", "main", ["MatMul"], [4, 6], "float", [1], "ReduceL2", "folded")
        site.written_shape = written
        return site_rows([site])[0][2]

    assert [row([6, 4]), row([4, 6]), row(None)] == ["4x6 -> 6x4", "4x6", "4x6"]


def test_cones_that_read_the_same_are_one_row_with_their_count() -> None:
    """A TorchScript export feeds one zero bias to 14 Convs through an Identity each: 14
    identical rows, which hid the two cones that differ."""

    def cone(name: str, consumer: str, status: str = "foldable") -> ConeReport:
        return ConeReport(name, "main", [consumer], [4], "float32", ["Identity"], [name], status)

    cones = [cone("b", "Conv"), cone("w", "MatMul"), cone("b", "Conv"), cone("b", "Conv", "x")]
    assert cone_rows(cones) == [
        ("b", "Conv x2", "4", "Identity", "foldable"),
        ("w", "MatMul", "4", "Identity", "foldable"),
        ("b", "Conv", "4", "Identity", "x"),
    ]


def test_a_cone_read_under_another_name_shows_both_and_its_rows_other_aliases() -> None:
    """t320: TorchScript gives parameters of equal values (zero biases) as ``Identity`` of one
    initializer (a zero buffer ``m.mean``): rows named ``m.mean`` alone did not say which
    biases they were."""

    def alias(read_as: str | None, consumer: str = "Conv") -> ConeReport:
        report = ConeReport(
            "m.mean", "main", [consumer], [4], "float32", ["Identity"], ["m.mean"], "folded"
        )
        report.read_as = read_as
        return report

    cones = [
        alias("a.bias"),
        alias("b.bias"),
        alias("c.bias"),
        alias("a.bias", "Gemm"),
        alias(None, "MatMul"),
    ]
    assert [row[:2] for row in cone_rows(cones)] == [
        ("a.bias (+2) -> m.mean", "Conv x3"),
        ("a.bias -> m.mean", "Gemm"),
        ("m.mean", "MatMul"),
    ]


def test_an_empty_path_is_refused_by_every_function_that_takes_one(tmp_path: Path) -> None:
    """``Path("")`` is the current folder: ``fold_onnx(m, "")`` wrote the default output, as
    if no output had been given, and ``write_json("")`` said ".: is a directory". Each path
    parameter refuses an empty one, naming it, before anything is read or written."""
    import torch

    from wnpass import export, fold_onnx, load_model_py
    from wnpass.errors import InvalidArgumentError

    model = tmp_path / "m.onnx"
    onnx.save(onnx_model(WN, v=rand(3, 4), g=rand(3, 1)), model)
    calls = {
        "output": lambda: fold_onnx(model, ""),
        "model": lambda: fold_onnx(""),
        "json_path": lambda: write_json("", {}),
        "path": lambda: load_model_py(""),
    }
    for parameter, call in calls.items():
        with pytest.raises(InvalidArgumentError) as caught:
            call()
        assert (caught.value.parameter, caught.value.detail) == (parameter, "is an empty path")
    with pytest.raises(InvalidArgumentError, match=r"^path is an empty path$"):
        export(torch.nn.Linear(2, 2), torch.ones(1, 2), "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_a_fold_reports_json_never_replaces_the_models_it_is_about(tmp_path: Path) -> None:
    """``FoldReport.write_json`` without a plan wrote over the model it reported on (the
    input, the output, the output's data file), where ``CheckReport.write_json`` refuses."""
    from wnpass import fold_onnx
    from wnpass.errors import OutputError

    source, out = tmp_path / "m.onnx", tmp_path / "m.folded.onnx"
    model = onnx_model(WN.replace("[N, 4]", "[N, 100]"), v=rand(3, 100), g=rand(3, 1))
    onnx.save(model, source, save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    _, report = fold_onnx(source, out)
    data_files = sorted(p for p in tmp_path.iterdir() if p.suffix == ".data")
    assert len(data_files) == 2  # the input's and the output's
    for target in (source, out, *data_files):
        before = target.read_bytes()
        with pytest.raises(OutputError, match=r"which the report is about; refused$"):
            report.write_json(target)
        assert target.read_bytes() == before
    report.write_json(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["output"] == str(out)


@pytest.mark.parametrize("kind", ["fold", "export", "check", "checkpoint"])
def test_a_report_protects_its_files_after_the_caller_changes_directory(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made from relative paths, a report's write_json("../model.onnx") after os.chdir("sub")
    replaced that model with JSON: the paths it was about were read from the new directory
    (t78). They are read from the one the report was made in."""
    import torch
    from torch import nn
    from torch.nn.utils.parametrizations import weight_norm

    from tests.checkpoint.builders import save_sharded, state_dict
    from wnpass.checkpoint.api import fold_checkpoint
    from wnpass.deploy import export
    from wnpass.onnx.api import fold_onnx
    from wnpass.verify.check import check

    monkeypatch.chdir(tmp_path)
    onnx.save(onnx_model(WN, v=rand(3, 4), g=rand(3, 1)), "model.onnx")
    report: Any
    if kind == "fold":
        _, report = fold_onnx("model.onnx", "folded.onnx")
        about = ["model.onnx", "folded.onnx"]
    elif kind == "export":
        model = weight_norm(nn.Linear(64, 3))
        report = export(model, (torch.randn(2, 64),), "exported.onnx", verify=False)
        about = ["exported.onnx", "exported.onnx.data"]
        assert report.data_files == ["exported.onnx.data"]
    elif kind == "check":
        report = check("model.onnx", "model.onnx", runs=1, warmup=0)
        about = ["model.onnx"]
    else:  # sharded: its shards are named by its index
        state = state_dict(seed=0)
        keys = list(state)
        index = save_sharded(Path("."), state, [keys[:3], keys[3:]])
        (tmp_path / "out").mkdir()
        shards = sorted(path.name for path in tmp_path.glob("*-of-*"))
        report = fold_checkpoint(index.name, "out/o.safetensors.index.json")
        about = [index.name, *shards, "out/o.safetensors.index.json"]
        assert len(shards) == 2
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    for name in about:
        before = (tmp_path / name).read_bytes()
        with pytest.raises(OutputError, match=r"which the report is about; refused$"):
            report.write_json(f"../{name}")
        assert (tmp_path / name).read_bytes() == before
    report.write_json("../r.json")
    assert json.loads((tmp_path / "r.json").read_text())["ok"] in (True, False)
