"""ONNX Runtime against PyTorch: a graph it cannot load or run, at the example's sizes or the
doubled ones, fails the verification, said once and naming the output, not the staging folder;
and output shapes the graph declares otherwise than computed are said."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
import pytest
import torch

from tests.deploy.helpers import ROOT, FlatByLen, unused_first
from tests.helpers import onnx_model
from wnpass.deploy import export
from wnpass.errors import InvalidModelError
from wnpass.fx.loading import load_model_py
from wnpass.verify import providers
from wnpass.verify.options import DEFAULT_WARMUP


def test_an_output_axis_declared_fixed_at_another_size_is_said() -> None:
    """The dynamo exporter declares an LSTM's output ``[tokens_0, 16, 100]`` where ONNX Runtime
    computes 32 for axis 1 at the doubled size: the values matched and nothing said the file's
    shape info was wrong, which a runtime trusting it may fail on."""
    from wnpass.deploy import DynamicProbe, ExportReport
    from wnpass.deploy.compare import check_shape_info
    from wnpass.verify.compare import compare_outputs

    model = ir.from_proto(onnx_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[N, 4] x) => (float[N, 3] y) { y = Concat <axis = 1> (x, x) }
    """, check=False))  # fmt: skip
    y, wide, odd = (np.ones((n, w), np.float32) for n, w in ((2, 8), (4, 8), (5, 9)))
    report = ExportReport("m.onnx", "dynamo", None, None, False)  # type: ignore[arg-type]
    report.comparisons["cpu"] = compare_outputs(["y"], [y], ["y"], [y])
    report.dynamic = [DynamicProbe("doubled"), DynamicProbe("doubled plus one")]
    report.dynamic[0].comparisons["cpu"] = compare_outputs(["y"], [wide], ["y"], [wide])
    report.dynamic[1].comparisons["cpu"] = compare_outputs(["y"], [odd], ["y"], [odd])
    check_shape_info(report, model.graph, {"x": [2, 4]})
    assert report.shape_info_wrong == [  # each axis once, at the first run that shows it
        "the graph declares axis 1 of output y as 3, but it is 8 on the example inputs",
    ]


def test_inputs_the_graph_ties_to_one_size_fed_others_are_said() -> None:
    """``forward(x, bias)`` adding a 1x4 bias to a 2x4 x, both axes 0 dynamic: the dynamo
    exporter declared ``x[x_0, 4]`` and ``bias[x_0, 4]`` and the file was called deployable
    with nothing said (t138); a runtime that holds inputs to their declared sizes refuses the
    very inputs it was verified on. Said once, at the first run that shows it; a probe that
    compared nothing fed nothing."""
    from wnpass.deploy import DynamicProbe, ExportReport
    from wnpass.deploy.compare import check_shape_info

    model = ir.from_proto(onnx_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[N, 4] x, float[N, 4] bias, float[M] m) => (float[N, 4] y) { y = Add(x, bias) }
    """, check=False))  # fmt: skip
    report = ExportReport("m.onnx", "dynamo", None, None, False)  # type: ignore[arg-type]
    report.dynamic = [DynamicProbe("doubled", {"x": [4, 4], "bias": [2, 4], "m": [3]})]
    check_shape_info(report, model.graph, {"x": [2, 4], "bias": [2, 4], "m": [3]})
    assert report.shape_info_wrong == []  # no probe compared: nothing fed at other sizes
    report.dynamic[0].comparisons["cpu"] = []
    check_shape_info(report, model.graph, {"x": [2, 4], "bias": [1, 4], "m": [3]})
    assert report.shape_info_wrong == [
        "the graph declares axis 0 of input x and axis 0 of input bias one size, N, but they "
        "are 2 and 1 on the example inputs"
    ]


def test_output_axes_the_graph_ties_to_one_size_computed_at_others_are_said() -> None:
    """EnCodec's TorchScript export declares its output ``[Conv_dim_0, 1, Conv_dim_0]``: batch
    and time of one name, computed 2x1x1600 where doubled, and nothing was said (t146)."""
    from wnpass.deploy import DynamicProbe, ExportReport
    from wnpass.deploy.compare import check_shape_info
    from wnpass.verify.compare import compare_outputs

    model = ir.from_proto(onnx_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[B, 1, T] x) => (float[C, 1, C] y) { y = Identity(x) }
    """, check=False))  # fmt: skip
    same, wide = np.ones((1, 1, 1), np.float32), np.ones((2, 1, 1600), np.float32)
    report = ExportReport("m.onnx", "torchscript", None, None, False)  # type: ignore[arg-type]
    report.comparisons["cpu"] = compare_outputs(["y"], [same], ["y"], [same])
    report.dynamic = [DynamicProbe("doubled", {"x": [2, 1, 1600]})]
    report.dynamic[0].comparisons["cpu"] = compare_outputs(["y"], [wide], ["y"], [wide])
    check_shape_info(report, model.graph, {"x": [1, 1, 1]})
    assert report.shape_info_wrong == [
        "the graph declares axis 0 of output y and axis 2 of output y one size, C, but they "
        "are 2 and 1600 with every dynamic axis doubled"
    ]


@pytest.mark.parametrize("fails", ["load", "run", "timed run"])
def test_a_graph_onnx_runtime_cannot_load_or_run_fails_the_verification(
    fails: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dynamo exporter writes an LSTM with ``proj_size`` that ONNX Runtime cannot run
    (torch 2.13): that was exit 2, bad input, where the same failure at the doubled size
    fails the verification (exit 1). The exported graph is the exporter's, not the user's."""
    model, inputs = load_model_py(ROOT / "models" / "mlp.py")
    assert inputs is not None
    if fails == "load":

        def refuse(model: Path, *args: Any, **kwargs: Any) -> Any:
            raise providers.SessionError(model, "onnxruntime cannot load it: Type Error")

        monkeypatch.setattr(providers, "open_session", refuse)
    else:
        run, calls = providers.run, [0]

        def fail(session: Any, model: Path, feeds: Any) -> Any:
            calls[0] += 1
            if fails == "timed run" and calls[0] == 1:  # the compared run succeeds
                return run(session, model, feeds)
            raise providers.RunFailedError(model, "Input initial_c must have shape {1,2,6}")

        monkeypatch.setattr(providers, "run", fail)
    out = tmp_path / "mlp.onnx"
    report = export(model, inputs, out, exporter="torchscript", runs=1)
    assert not report and report.matches is False and not report.published
    said = {
        "load": "onnxruntime cannot load it: Type Error",
        "run": "onnxruntime failed to run it: Input initial_c must have shape {1,2,6}",
        "timed run": f"onnxruntime failed to run it on its timed run 1 of {DEFAULT_WARMUP + 1} "
        "(warm-up included), after the run compared had succeeded: Input initial_c must have "
        "shape {1,2,6}",
    }[fails]
    assert report.ort_failed == f"on cpu, {out}: {said}"
    assert report.to_dict()["ort_failed"] == report.ort_failed and not out.exists()


def test_ort_errors_name_the_output_not_the_staging_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(session: object, model: Path, feeds: object) -> list[object]:
        raise InvalidModelError(f"{model}: onnxruntime failed to run it: boom")

    monkeypatch.setattr(providers, "run", fail)
    model, inputs = unused_first()
    out = tmp_path / "m.onnx"
    with pytest.raises(InvalidModelError) as raised:
        export(model, inputs, out, exporter="torchscript", runs=1)
    assert str(raised.value) == f"{out}: onnxruntime failed to run it: boom"
    assert list(tmp_path.iterdir()) == []


def test_dynamic_axes_onnx_runtime_cannot_run_doubled_fail_the_verification(
    tmp_path: Path,
) -> None:
    """Where ONNX Runtime fails on the example inputs with every dynamic axis doubled and
    PyTorch runs, the graph is wrong at that size: the verification fails, saying why with
    ONNX Runtime's whole message, and nothing is written (it passed, verified at the
    example's size only)."""
    out = tmp_path / "m.onnx"
    report = export(
        FlatByLen(), (torch.randn(2, 4),), out, exporter="torchscript", dynamic={"x": {0: "b"}}
    )
    doubled, odd = report.dynamic
    said = doubled.not_verified or ""
    assert said.startswith(f"on cpu, {out}: onnxruntime failed to run it: ")
    assert said.endswith("requested shape:{6}")  # the whole reason, not cut at 240 characters
    assert doubled.inputs == {"x": [4, 4]} and doubled.comparisons == {}
    assert (odd.not_verified or "").endswith("requested shape:{6}")
    assert all(report.comparisons["cpu"]) and report.matches is False and not report.published
    assert list(tmp_path.iterdir()) == []


def test_what_the_report_says_failed_is_not_logged_as_a_warning_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The command line prints the report's failures as its summary: the same news logged as
    a warning came out twice, once as a raw log line, also with --quiet (t53)."""
    with caplog.at_level("INFO", logger="wnpass.deploy"):
        report = export(
            FlatByLen(), (torch.randn(2, 4),), tmp_path / "m.onnx", exporter="torchscript",
            dynamic={"x": {0: "b"}}, runs=1,
        )  # fmt: skip
    assert report.dynamic[0].not_verified is not None
    said = [r for r in caplog.records if "the dynamic axes failed" in r.getMessage()]
    assert said and all(r.levelname == "INFO" for r in said)
