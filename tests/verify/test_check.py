"""check(): folded models pass, a perturbed weight fails and is named, providers are honest."""

from __future__ import annotations

import ctypes
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import onnx
import pytest

from tests.helpers import onnx_model, rand
from tests.verify.helpers import one_output_model, one_output_text
from wnpass import fold_onnx
from wnpass.errors import (
    InvalidArgumentError,
    InvalidModelError,
    OutputError,
    UsageError,
    WnpassError,
)
from wnpass.verify import providers, sensitivity
from wnpass.verify.check import check
from wnpass.verify.options import CheckOptions
from wnpass.verify.report import (
    CANDIDATE_FAILED,
    comparison_rows,
    failure_reason,
    shown_error,
)

WN_MODEL = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[N, 64] x) => (float[N, 32] y, float[N, 32] z) {
        n = ReduceL2 <axes = [1]> (v)
        d = Div(v, n)
        w = Mul(d, g)
        y = Gemm <transB = 1> (x, w)
        z = Relu(y)
    }
"""


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """A weight-normed model with a dynamic batch, and its folded copy."""
    reference = tmp_path / "ref.onnx"
    onnx.save(onnx_model(WN_MODEL, v=rand(32, 64), g=rand(32, 1)), reference)
    candidate = tmp_path / "folded.onnx"
    fold_onnx(reference, candidate)
    return reference, candidate


def test_folded_model_is_equivalent_and_latency_is_consistent(pair: tuple[Path, Path]) -> None:
    report = check(*pair, runs=5, warmup=1, optimizations=("default", "disabled"))
    assert report and not report.failures()
    assert [(r.provider, r.optimization) for r in report.runs] == [
        ("cpu", "default"),
        ("cpu", "disabled"),
    ]
    assert report.inputs == [{"name": "x", "shape": [1, 64], "dtype": "float32"}]
    assert report.notes[:2] == ["inputs synthesized (seed 0)", "x[0] (N) = 1"]
    for run in report.runs:
        assert {c.name for c in run.comparisons} == {"y", "z"}
        assert all(c.rtol == 1e-4 and c.atol == 1e-5 for c in run.comparisons)
        for stats in (run.reference, run.candidate):
            assert stats is not None and stats.runs == 5
            assert 0 < stats.min_ms <= stats.median_ms <= stats.p90_ms
        assert run.candidate is not None and run.reference is not None
        assert run.ratio == pytest.approx(run.candidate.median_ms / run.reference.median_ms)
        assert run.reference_session_s and run.candidate_session_s
    data = report.to_dict()
    assert data["ok"] is True and data["runs"][0]["ratio"] == report.runs[0].ratio


def test_a_single_perturbed_weight_fails_and_names_the_outputs(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    reference, candidate = pair
    model = onnx.load(candidate)
    weight = onnx.numpy_helper.to_array(model.graph.initializer[0]).copy()
    weight[3, 5] += 0.5
    model.graph.initializer[0].CopyFrom(
        onnx.numpy_helper.from_array(weight, weight_name := model.graph.initializer[0].name)
    )
    broken = tmp_path / "broken.onnx"
    onnx.save(model, broken)
    report = check(reference, broken, runs=1, warmup=0, shapes={"x": [8, 64]})
    assert not report
    (run,) = report.runs
    failed = {c.name: c for c in run.comparisons if not c.passed}
    assert "y" in failed and failed["y"].outside > 0 and failed["y"].max_abs > 1e-3
    assert any(line.startswith("cpu/default: y:") for line in report.failures())
    assert weight_name == "v.folded"
    # the reference with its weights moved by one ulp passes: more differs than rounding
    assert failed["y"].ulp_passed is True and failed["y"].ulp_max_abs is not None
    assert 0 < failed["y"].ulp_max_abs < failed["y"].atol  # type: ignore[operator]
    (line,) = [line for line in report.failures() if line.startswith("cpu/default: y:")]
    assert re.search(r"; the reference with each weight moved by one ulp stays within it "
                     r"\(max abs [0-9.e-]+\)$", line)  # fmt: skip
    assert report.to_dict()["runs"][0]["comparisons"][0]["ulp_passed"] is True


# y = k (x a - x b) + x c with a == b: the difference of two weights, amplified 10^4 times
AMPLIFIES = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[N, 16] x) => (float[N, 8] y) {
        p = MatMul(x, a)
        q = MatMul(x, b)
        d = Sub(p, q)
        e = Mul(d, k)
        r = MatMul(x, c)
        y = Add(e, r)
    }
"""


def test_a_model_that_amplifies_its_weights_rounding_is_said_to(tmp_path: Path) -> None:
    """A candidate with one weight rounded otherwise (one ulp) fails: so does the reference
    with each weight moved by one ulp, and the failure says so; the verdict stays a failure."""
    a, c = rand(16, 8), rand(16, 8)
    k = np.array(1e4, np.float32)
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    onnx.save(onnx_model(AMPLIFIES, a=a, b=a.copy(), c=c, k=k), reference)
    b = a.copy()
    b[2, 3] = np.nextafter(b[2, 3], np.float32(np.inf))
    onnx.save(onnx_model(AMPLIFIES, a=a, b=b, c=c, k=k), candidate)
    report = check(reference, candidate, runs=1, warmup=0, shapes={"x": [4, 16]})
    assert not report
    (y,) = report.runs[0].comparisons
    assert y.outside > 0 and y.ulp_passed is False
    assert y.ulp_max_abs is not None and y.ulp_max_abs > y.atol  # type: ignore[operator]
    (line,) = report.failures()
    assert line.endswith(
        f"; the reference with each weight moved by one ulp fails it too (max abs "
        f"{shown_error(y.ulp_max_abs, y.atol)}): this model moves beyond the tolerance wherever "
        "its weights are rounded otherwise"
    )
    data = report.to_dict()["runs"][0]["comparisons"][0]
    assert data["ulp_passed"] is False and data["ulp_max_abs"] == y.ulp_max_abs


def test_a_reference_over_the_bound_is_not_read_again_to_move_its_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its weights are read whole again to move them: a reference file over the bound is
    not, whatever it holds (a 2 GiB model would be parsed a third time)."""
    a, c = rand(16, 8), rand(16, 8)
    k = np.array(1e4, np.float32)
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    onnx.save(onnx_model(AMPLIFIES, a=a, b=a.copy(), c=c, k=k), reference)
    onnx.save(onnx_model(AMPLIFIES, a=a, b=a * np.float32(1.01), c=c, k=k), candidate)

    def refused(model: object) -> None:
        raise AssertionError("read the reference again")

    monkeypatch.setattr(sensitivity, "MOVED_BYTES", reference.stat().st_size - 1)
    monkeypatch.setattr(sensitivity, "moved_weights", refused)
    report = check(reference, candidate, runs=1, warmup=0, shapes={"x": [4, 16]})
    (y,) = report.runs[0].comparisons
    assert not y.passed and y.ulp_passed is None


def _two_weights(k: np.ndarray, w: np.ndarray) -> onnx.ModelProto:
    """y from a Constant node's weight ``k``, y2 from initializer ``w``."""
    values = ", ".join(map(repr, k.ravel().tolist()))
    text = (
        '<ir_version: 8, opset_import: ["" : 17]> agraph (float[N, 8] x) => '
        "(float[N, 4] y, float[N, 4] y2) { "
        f"k = Constant <value = float[8, 4] k {{{values}}}> () "
        "y = MatMul(x, k) y2 = MatMul(x, w) }"
    )
    return onnx_model(text, w=w)


def test_an_output_whose_weights_did_not_move_gets_no_note(tmp_path: Path) -> None:
    """t182: an output computed from a Constant node's weight (or a body's), which no
    initializer replaces, got "stays within it (max abs 0)": nothing was measured of it."""
    k, w = rand(8, 4), rand(8, 4)
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    onnx.save(_two_weights(k, w), reference)
    onnx.save(_two_weights(k * np.float32(1.01), w), candidate)
    report = check(reference, candidate, runs=1, warmup=0, shapes={"x": [2, 8]})
    y, y2 = report.runs[0].comparisons
    assert not y.passed and y2.passed
    assert y.ulp_passed is None and y.ulp_max_abs is None
    assert report.failures() == [f"cpu/default: y: {failure_reason(y)}"]


def test_a_check_that_passes_moves_no_weight(
    pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference runs once more only where a candidate failed on floats."""

    def refused(model: object) -> None:
        raise AssertionError("moved the weights of a check that passed")

    monkeypatch.setattr(sensitivity, "moved_weights", refused)
    report = check(*pair, runs=1, warmup=0)
    assert report
    assert all(c.ulp_passed is None for run in report.runs for c in run.comparisons)


def test_a_numpy_tolerance_is_used_and_written(pair: tuple[Path, Path], tmp_path: Path) -> None:
    report = check(*pair, rtol=np.float32(1e-3), runs=1, warmup=0)  # type: ignore[arg-type]
    assert report and all(c.rtol == float(np.float32(1e-3)) for c in report.runs[0].comparisons)
    report.write_json(tmp_path / "check.json")


def test_integer_and_bool_inputs_and_exact_integer_outputs(tmp_path: Path) -> None:
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (int64[N] ids, bool[N] keep) => (float[N, 4] y, int64[N] c) {
            e = Gather(table, ids)
            k = Cast <to = 1> (keep)
            ku = Unsqueeze(k, one)
            y = Mul(e, ku)
            c = Identity(ids)
        }
    """
    path = tmp_path / "m.onnx"
    onnx.save(onnx_model(text, table=rand(8, 4), one=np.array([1], np.int64)), path)
    report = check(path, path, runs=1, warmup=0)
    assert report
    c = next(c for c in report.runs[0].comparisons if c.name == "c")
    assert c.exact and (c.rtol, c.atol) == (None, None)


def test_float16_model_uses_the_float16_tolerance(tmp_path: Path) -> None:
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float16[2, 8] x) => (float16[2, 8] y) { y = MatMul(x, w) }
    """
    path = tmp_path / "h.onnx"
    onnx.save(onnx_model(text, w=rand(8, 8).astype(np.float16)), path)
    report = check(path, path, runs=1, warmup=0)
    (c,) = report.runs[0].comparisons
    assert report and (c.rtol, c.atol) == (1e-2, 1e-3) and c.dtype == "float16"


def test_tolerance_is_per_element_not_scaled_by_the_largest_output(tmp_path: Path) -> None:
    """One huge channel must not hide an error of 2 in a channel of size 1."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[1, 4] x) => (float[1, 4] y) { y = Mul(x, s) }
    """
    for name, scale in (("ref", [1e6, 1, 1, 1]), ("cand", [1e6, 3, 1, 1])):
        model = onnx_model(text, s=np.array(scale, np.float32))
        onnx.save(model, tmp_path / f"{name}.onnx")
    np.savez(tmp_path / "x.npz", x=np.ones((1, 4), np.float32))
    report = check(tmp_path / "ref.onnx", tmp_path / "cand.onnx", inputs=tmp_path / "x.npz", runs=1)
    assert not report and report.runs[0].comparisons[0].outside == 1


def test_npz_inputs_are_used(pair: tuple[Path, Path], tmp_path: Path) -> None:
    np.savez(tmp_path / "in.npz", x=np.ones((3, 64), np.float32))
    report = check(*pair, inputs=tmp_path / "in.npz", runs=1, warmup=0)
    assert report and report.inputs[0]["shape"] == [3, 64]
    assert report.notes == [f"inputs from {tmp_path / 'in.npz'}"]


@pytest.mark.skipif(
    "cuda" in providers.available(), reason="CUDA is available here: the error case cannot occur"
)
def test_asking_for_cuda_where_it_is_absent_is_a_clear_error(pair: tuple[Path, Path]) -> None:
    with pytest.raises(InvalidArgumentError, match="'cuda': not available") as error:
        check(*pair, providers=["cuda"])
    assert error.value.parameter == "providers"
    report = check(*pair, runs=1, warmup=0)
    assert [r.provider for r in report.runs] == ["cpu"] and report.not_available == ["cuda"]


@pytest.mark.skipif(
    "cuda" not in providers.available(),
    reason="no CUDA provider in this onnxruntime build (install wnpass[gpu] on a GPU machine)",
)
def test_cuda_runs_on_cuda_and_matches_cpu(pair: tuple[Path, Path]) -> None:
    report = check(*pair, providers=["cpu", "cuda"], runs=3, warmup=1)
    cuda = next(r for r in report.runs if r.provider == "cuda")
    assert cuda.status == "ok", cuda.status
    assert report.cross_provider and all(report.cross_provider)
    assert report


@pytest.fixture
def cuda_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA listed as available, and every session ONNX Runtime creates runs on the CPU (as
    when a CUDA library is missing): the silent fall-back, simulated."""
    ort = providers.onnxruntime()
    real_session = ort.InferenceSession

    def falls_back(model: object, sess_options: object = None, providers: list[str] | None = None):
        return real_session(model, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(providers, "available", lambda: ["cpu", "cuda"])
    monkeypatch.setattr(ort, "InferenceSession", falls_back)


FELL_BACK = "cuda/default: nothing compared: ONNX Runtime fell back to CPU (nothing ran on cuda)"


@pytest.mark.usefixtures("cuda_falls_back")
def test_a_silent_fall_back_to_cpu_is_reported_not_measured(pair: tuple[Path, Path]) -> None:
    """ONNX Runtime may accept CUDA and then run on the CPU: never label CPU numbers CUDA."""
    report = check(*pair, providers=["cuda"], runs=1, warmup=0)
    (run,) = report.runs
    assert run.provider == "cuda" and run.status == "fell back to CPU"
    assert run.reference is None and run.candidate is None and not run.comparisons
    assert not report, "nothing was compared: the check must not pass"
    assert report.failures() == [FELL_BACK]


@pytest.mark.usefixtures("cuda_falls_back")
@pytest.mark.parametrize("asked", [["cuda", "cpu"], None], ids=["by-name", "every-available"])
def test_a_provider_that_fell_back_fails_the_check_beside_one_that_matched(
    pair: tuple[Path, Path], asked: list[str] | None
) -> None:
    """CPU matched, CUDA ran nothing: the check does not say every provider matched."""
    report = check(*pair, providers=asked, runs=1, warmup=0)
    runs = {r.provider: r for r in report.runs}
    assert runs.keys() == {"cpu", "cuda"} and runs["cuda"].status == "fell back to CPU"
    assert runs["cpu"].passed and not report and report.compared_nothing()
    assert report.failures() == [FELL_BACK]
    why = FELL_BACK.removeprefix("cuda/default: ")
    assert ("cuda/default", *["-"] * 6, f"FAIL: {why}") in comparison_rows(report)
    data = report.to_dict()
    assert data["ok"] is False
    assert [r["nothing_compared"] for r in data["runs"] if r["provider"] == "cuda"] == [why]


def test_string_and_sequence_outputs_are_compared(tmp_path: Path) -> None:
    """Exactly for strings (no tolerance, no error size), item by item for a sequence."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2] x) => (string[1] s, seq(float[2]) q) {
            s = Constant <value = string[1] {"%s"}> ()
            z = Mul(x, x)
            q = SequenceConstruct(x, %s)
        }
    """
    paths = []
    for label, item in (("a", "z"), ("b", "x")):
        paths.append(tmp_path / f"{label}.onnx")
        onnx.save(onnx.parser.parse_model(text % (label, item)), paths[-1])
    assert check(paths[0], paths[0], runs=1, warmup=0)
    report = check(paths[0], paths[1], runs=1, warmup=0)
    s, q = report.runs[0].comparisons
    assert (s.numeric, s.outside, s.total) == (False, 1, 1)
    assert q.numeric and q.dtype == "sequence<float32>" and q.total == 4 and q.outside > 0
    assert not report


TWO_OUTPUTS = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[2] x) => (%s) {
        a = Neg(x)
        b = Abs(x)
    }
"""


def _listed(tmp_path: Path, *listings: str) -> list[Path]:
    """One model per listing of its outputs ``a = -x`` and ``b = |x|`` (``"float[2] b,
    float[2] a"``), in files named after the listing."""
    paths = []
    for listing in listings:
        path = tmp_path / ("".join(part.split()[-1] for part in listing.split(",")) + ".onnx")
        onnx.save(onnx.parser.parse_model(TWO_OUTPUTS % listing), path)
        paths.append(path)
    return paths


def test_outputs_in_another_order_are_compared_by_name_and_noted(tmp_path: Path) -> None:
    """The candidate lists the same outputs in another order: each is compared with the
    reference's of its name (equivalent), and a note says a caller reading them by position
    would get them mixed up."""
    paths = _listed(tmp_path, "float[2] a, float[2] b", "float[2] b, float[2] a")
    same = check(paths[0], paths[0], runs=1, warmup=0)
    assert not any("another order" in note for note in same.notes)
    report = check(*paths, runs=1, warmup=0)
    assert report and [c.name for c in report.runs[0].comparisons] == ["a", "b"]
    (note,) = [note for note in report.notes if "another order" in note]
    assert "(b, a; the reference's: a, b)" in note


def test_models_that_share_no_output_name_are_told_why_nothing_matched(tmp_path: Path) -> None:
    """Two exporters' files of one model name its output ``11`` and ``linear_2``: compared by
    name, the check failed on "missing in the candidate" with no word of why. A note says
    the models share no output name."""
    reference, candidate = tmp_path / "ts.onnx", tmp_path / "dynamo.onnx"
    onnx.save(onnx.parser.parse_model(TWO_OUTPUTS.replace("%s", "float[2] a")), reference)
    renamed = TWO_OUTPUTS.replace("%s", "float[2] c").replace("a = Neg", "c = Neg")
    onnx.save(onnx.parser.parse_model(renamed), candidate)
    report = check(reference, candidate, runs=1, warmup=0)
    assert not report and report.notes[-1] == (
        "the models share no output name (the reference's: a; the candidate's: c): outputs "
        "are compared by name, so give them the same names (the exporter's output_names)"
    )


def test_an_output_listed_twice_fails_the_check(tmp_path: Path) -> None:
    """The candidate lists ``a`` twice (``[a, a, b]`` against ``[a, b]``): compared by name,
    every output matched, "equivalent", while a caller reading outputs by position gets ``a``
    where the reference gives ``b``."""
    paths = _listed(tmp_path, "float[2] a, float[2] b", "float[2] a, float[2] a, float[2] b")
    report = check(*paths, runs=1, warmup=0)
    assert not report
    assert report.failures() == [
        "cpu/default: a: listed 2 times among the candidate's outputs, once among the reference's"
    ]
    assert check(paths[1], paths[1], runs=1, warmup=0)  # the same list on both sides


BFLOAT16 = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (bfloat16[N] x) => (bfloat16[N] y, float[N] f) {
        c = Cast <to = 1> (x)
        f = Mul(c, k)
        y = Cast <to = 16> (f)
    }
"""


def _bfloat16_model(tmp_path: Path, k: float) -> Path:
    path = tmp_path / f"bf16_{k:g}.onnx"
    onnx.save(onnx_model(BFLOAT16, k=np.array([k], np.float32)), path)
    return path


def test_bfloat16_inputs_and_outputs_are_fed_read_and_compared(tmp_path: Path) -> None:
    """ONNX Runtime's numpy binding knows no bfloat16: its bits cross as OrtValues."""
    a, b = _bfloat16_model(tmp_path, 3.0), _bfloat16_model(tmp_path, 4.5)
    x = rand(8).astype(ml_dtypes.bfloat16)
    session = providers.open_session(a, "cpu")
    y, f = session.run(providers.ort_feeds({"x": x}))
    expected = x.astype(np.float32) * np.float32(3.0)
    assert y.dtype == ml_dtypes.bfloat16 and np.array_equal(y, expected.astype(ml_dtypes.bfloat16))
    assert np.array_equal(f, expected)
    report = check(a, a, runs=2, warmup=1)
    y_row = report.runs[0].comparisons[0]
    assert report and (y_row.dtype, y_row.rtol, y_row.atol) == ("bfloat16", 5e-2, 1e-2)
    assert report.inputs == [{"name": "x", "shape": [1], "dtype": "bfloat16"}]
    assert not check(a, b, runs=1, warmup=0)


def test_an_empty_optional_output_beside_a_bfloat16_one_is_read_as_empty(tmp_path: Path) -> None:
    """A bfloat16 output makes the outputs cross as OrtValues; an empty optional one says it is
    a tensor, and asking its type crashed the process (exit 139, t111). Run as a process of
    its own, so that a crash fails this test alone."""
    make, tensor = onnx.helper, onnx.TensorProto
    graph = make.make_graph(
        [
            make.make_node("Cast", ["x"], ["y"], to=tensor.BFLOAT16),
            make.make_node("Optional", [], ["o"], type=make.make_tensor_type_proto(1, [4])),
        ],
        "g",
        [make.make_tensor_value_info("x", tensor.FLOAT, [4])],
        [
            make.make_tensor_value_info("y", tensor.BFLOAT16, [4]),
            make.make_value_info(
                "o", make.make_optional_type_proto(make.make_tensor_type_proto(1, [4]))
            ),
        ],
    )
    model = make.make_model(graph, opset_imports=[make.make_opsetid("", 18)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / "bf16_optional.onnx"
    onnx.save(model, path)
    done = subprocess.run(
        [sys.executable, "-m", "wnpass", "--plain", "check", str(path), str(path), "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "not compared: the optional output is empty in both" in done.stdout


def test_only_the_program_quiets_onnxruntimes_process_wide_logger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A library caller's own ONNX Runtime sessions keep their warnings; the program's errors
    are one line, so its check options make the default logger fatal only."""
    import argparse

    import onnxruntime

    from wnpass.cli.options import add_check_options, check_options

    calls: list[int] = []
    monkeypatch.setattr(onnxruntime, "set_default_logger_severity", calls.append)
    monkeypatch.setattr(providers, "_quiet_default_logger", False)
    providers.onnxruntime.cache_clear()
    providers.onnxruntime()
    assert calls == []
    parser = argparse.ArgumentParser()
    add_check_options(parser)
    check_options(parser.parse_args([]))
    assert calls == [providers.ORT_LOG_FATAL]
    providers.onnxruntime.cache_clear()
    providers.onnxruntime()
    assert calls == [providers.ORT_LOG_FATAL] * 2


NARROW = """
    <ir_version: 10, opset_import: ["" : 21]>
    agraph (float[N] x) => (%s[N] y) {
        m = Mul(x, k)
        y = Cast <to = %d> (m)
    }
"""


def _narrow(tmp_path: Path, dtype: int, k: float) -> Path:
    """``y = x * k`` cast to ``dtype``, a type numpy lacks."""
    name = onnx.helper.tensor_dtype_to_string(dtype).removeprefix("TensorProto.").lower()
    path = tmp_path / f"{name}_{k:g}.onnx"
    onnx.save(onnx_model(NARROW % (name, dtype), k=np.array([k], np.float32)), path)
    return path


@pytest.mark.parametrize(
    ("dtype", "name"),
    [
        (onnx.TensorProto.FLOAT8E4M3FN, "float8_e4m3fn"),  # ONNX Runtime gives its bits
        (onnx.TensorProto.FLOAT8E5M2, "float8_e5m2"),  # ONNX Runtime's run refuses it
    ],
)
def test_a_float8_output_is_compared_by_value(tmp_path: Path, dtype: int, name: str) -> None:
    """Not as bit patterns: x * 0 (-0 where x < 0) against x * -0 (+0 there) is equal; 3x
    against 4x differs by its values, exactly (0/0 by default), and says its dtype."""
    np.savez(tmp_path / "x.npz", x=np.array([1.0, -2.0, 0.5, 2.0], np.float32))
    x = tmp_path / "x.npz"
    report = check(_narrow(tmp_path, dtype, 0.0), _narrow(tmp_path, dtype, -0.0), inputs=x, runs=1)
    (y,) = report.runs[0].comparisons
    assert report and (y.dtype, y.rtol, y.atol, y.max_abs) == (name, 0.0, 0.0, 0.0)
    report = check(_narrow(tmp_path, dtype, 3.0), _narrow(tmp_path, dtype, 4.0), inputs=x, runs=1)
    (y,) = report.runs[0].comparisons  # [3, -6, 1.5, 6] against [4, -8, 2, 8]
    assert not report and (y.dtype, y.outside, y.max_abs, y.scale) == (name, 4, 2.0, 6.0)
    assert report.to_dict()["runs"][0]["comparisons"][0]["dtype"] == name


def _float4(path: Path, values: list[float]) -> Path:
    """A model whose output w is an initializer of float4e2m1 ``values`` (ONNX Runtime 1.32
    casts to no float4), beside z = x."""
    w = onnx.helper.make_tensor("w", onnx.TensorProto.FLOAT4E2M1, [2, 3], values)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["z"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [
            onnx.helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT4E2M1, [2, 3]),
            onnx.helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [2]),
        ],
        [w],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 21)])
    model.ir_version = 11
    onnx.save(model, path)
    return path


def test_a_float4_output_is_unpacked_and_compared_by_value(tmp_path: Path) -> None:
    """t200: ONNX Runtime gave a float4e2m1 output as its packed bytes, compared as uint8
    (+0 against -0 failed as 0 against 8). Unpacked, each is compared by its value."""
    values = [0.0, 1.0, 1.5, 2.0, 3.0, -6.0]
    plus = _float4(tmp_path / "plus.onnx", values)
    minus = _float4(tmp_path / "minus.onnx", [-0.0, *values[1:]])
    doubled = _float4(tmp_path / "doubled.onnx", [0.0, 2.0, 3.0, 4.0, 6.0, -6.0])
    report = check(plus, minus, runs=1)
    w = next(row for row in report.runs[0].comparisons if row.name == "w")
    assert report and (w.dtype, w.total, w.max_abs) == ("float4_e2m1fn", 6, 0.0)
    report = check(plus, doubled, runs=1)
    w = next(row for row in report.runs[0].comparisons if row.name == "w")
    assert not report and (w.outside, w.max_abs) == (4, 3.0)


def test_an_int4_output_is_unpacked_and_compared_exactly(tmp_path: Path) -> None:
    """ONNX packs two int4 to a byte, low half first (an odd count leaves half a byte); each
    is compared as its value."""
    np.savez(tmp_path / "x.npz", x=np.array([1.0, -2.0, 2.0, -1.0, 0.0], np.float32))
    x, dtype = tmp_path / "x.npz", onnx.TensorProto.INT4
    report = check(_narrow(tmp_path, dtype, 2.0), _narrow(tmp_path, dtype, 2.0), inputs=x, runs=1)
    (y,) = report.runs[0].comparisons
    assert report and y.dtype == "int4" and y.exact and y.total == 5
    report = check(_narrow(tmp_path, dtype, 2.0), _narrow(tmp_path, dtype, 3.0), inputs=x, runs=1)
    (y,) = report.runs[0].comparisons  # [2, -4, 4, -2, 0] against [3, -6, 6, -3, 0]
    assert not report and (y.outside, y.max_abs) == (4, 2.0)


def test_a_float8_input_is_fed_as_its_bits(tmp_path: Path) -> None:
    """Synthesized, or from an .npz of its bit patterns: ONNX Runtime takes it as an OrtValue."""
    text = """
        <ir_version: 10, opset_import: ["" : 21]>
        agraph (float8e4m3fn[3] x) => (float[3] y) { c = Cast <to = 1> (x)  y = Mul(c, k) }
    """
    paths = []
    for k in (1.0, 2.0):
        paths.append(tmp_path / f"in{k:g}.onnx")
        onnx.save(onnx_model(text, k=np.array([k], np.float32)), paths[-1])
    report = check(paths[0], paths[0], runs=1, warmup=0)
    assert report and report.inputs == [{"name": "x", "shape": [3], "dtype": "float8_e4m3fn"}]
    bits = np.array([1.5, -2.0, 0.25], ml_dtypes.float8_e4m3fn).view(np.uint8)
    np.savez(tmp_path / "x.npz", x=bits)
    report = check(*paths, inputs=tmp_path / "x.npz", runs=1, warmup=0)
    assert not report and report.runs[0].comparisons[0].max_abs == 2.0


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"inputs": 1}, "inputs must be a path (a str or os.PathLike), not int"),
        ({"optimizations": ()}, "optimizations is empty: give at least one of default, disabled"),
        ({"providers": "cpu"}, "providers 'cpu': must be a list of names, not str"),
        ({"progress": 3}, "progress must be a function (label, done, total) or None, not int"),
        ({"options": {"runs": 1}}, "options must be a CheckOptions, not dict"),
        (
            {"options": CheckOptions(), "runs": 3},
            "options and runs cannot be combined: options holds every check option",
        ),
        ({"plan": "plan"}, "plan must be an IOPlan or None, not str"),
        ({"reference_model": 1}, "reference_model must be an onnx_ir.Model or None, not int"),
    ],
)
def test_every_parameter_of_check_is_validated_first(
    pair: tuple[Path, Path], given: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        check(*pair, **given)  # type: ignore[arg-type]
    assert str(raised.value) == message
    with pytest.raises(InvalidArgumentError, match=r"^candidate must be a path"):
        check(pair[0], 1)  # type: ignore[arg-type]


def test_write_json_refuses_every_file_the_check_read(tmp_path: Path) -> None:
    """r.write_json("ref.onnx") replaced the reference with JSON; the CLI refused --json
    ref.onnx. The report knows what the check read, and the plan's rule refuses it."""
    reference = tmp_path / "ref.onnx"
    onnx.save(onnx_model(WN_MODEL, v=rand(32, 64), g=rand(32, 1)), reference)
    candidate = tmp_path / "cand.onnx"
    onnx.save(
        onnx.load(reference),
        candidate,
        save_as_external_data=True,
        location="cand.data",
        size_threshold=0,
    )
    np.savez(tmp_path / "in.npz", x=np.ones((2, 64), np.float32))
    report = check(reference, candidate, inputs=tmp_path / "in.npz", runs=1, warmup=0)
    assert report
    read = {
        reference: "the reference",
        candidate: "the candidate",
        tmp_path / "cand.data": "the candidate's external data",
        tmp_path / "in.npz": "the inputs file",
    }
    for path, what in read.items():
        before = path.read_bytes()
        with pytest.raises(OutputError) as raised:
            report.write_json(str(path))
        assert raised.value.parameter == "json_path"
        assert str(raised.value) == (
            f"json_path {path}: would overwrite {what} {path}, which the report is about; refused"
        )
        assert path.read_bytes() == before
    with pytest.raises(OutputError, match=r"^json_path .*/: names a folder, not a file$"):
        report.write_json(f"{tmp_path / 'out'}/")
    report.write_json(tmp_path / "check.json")
    assert json.loads((tmp_path / "check.json").read_text())["ok"] is True
    assert "files_read" not in report.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ref.onnx", "cand.onnx", "cand.data", "in.npz", "check.json"]
    )


RELU = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[4] x) => (float[4] y) { y = Relu(x) }
"""
# runs only where x has 8 elements: a Reshape to twice x's length, computed at run time
RESHAPE = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[4] x) => (float[4] y) {
        s = Shape(x)
        t = Mul(s, k)
        y = Reshape(x, t)
    }
"""


@pytest.fixture
def fails_to_run(tmp_path: Path) -> tuple[Path, Path]:
    """A model that runs, and one with its inputs that ONNX Runtime loads but cannot run."""
    runs, fails = tmp_path / "relu.onnx", tmp_path / "reshape.onnx"
    onnx.save(onnx_model(RELU), runs)
    onnx.save(onnx_model(RESHAPE, check=False, k=np.array([2], np.int64)), fails)
    return runs, fails


def test_a_fortran_ordered_bfloat16_input_is_fed_in_its_element_order() -> None:
    """An OrtValue made from a bfloat16 array's bits takes its buffer as it is: a Fortran-
    ordered ``[[0, 1, 2], [3, 4, 5]]`` was fed as ``[[0, 3, 1], [4, 2, 5]]``, so two models
    that differ only there were "equivalent"."""
    x = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)).astype(ml_dtypes.bfloat16)
    assert not x.flags.c_contiguous
    square = providers.ort_feeds({"x": x})["x"]
    assert square.shape() == [2, 3]
    as_bits = np.ascontiguousarray(x).view(np.uint16)
    fed = np.frombuffer(ctypes.string_at(square.data_ptr(), 12), np.uint16).reshape(2, 3)
    assert np.array_equal(fed, as_bits)


# y = x reshaped to a size drawn at random: 6 (runs) or 7 (fails), a new draw each run
FLAKY = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[2, 3] x) => (float[6] y) {
        r = RandomUniform <shape = [1], seed = %s> ()
        c = Less(r, half)
        s = Where(c, six, seven)
        y = Reshape(x, s)
    }
"""


def _flaky(tmp_path: Path) -> Path:
    """A model whose first two runs succeed and a later one of the next six fails."""
    feeds = {"x": np.zeros((2, 3), np.float32)}
    path = tmp_path / "flaky.onnx"
    for seed in range(100):
        model = onnx_model(
            FLAKY % f"{seed}.0",
            check=False,
            half=np.array([0.5], np.float32),
            six=np.array([6], np.int64),
            seven=np.array([7], np.int64),
        )
        onnx.save(model, path)
        session = providers.open_session(path, "cpu")
        ran = []
        for _ in range(8):
            try:
                session.run(feeds)
                ran.append(True)
            except Exception:
                ran.append(False)
        if ran[:2] == [True, True] and not all(ran):
            return path
    raise AssertionError("no seed gives a run that fails after two that succeed")


def test_a_candidate_that_fails_in_a_timed_run_fails_the_check(tmp_path: Path) -> None:
    """A candidate that ran once and failed in a later timed run was an internal error (exit 3,
    no report): it fails the check, as on its first run; the reference's is bad input."""
    reference = tmp_path / "reshape6.onnx"
    onnx.save(onnx_model(FLAKY_FREE, six=np.array([6], np.int64)), reference)
    candidate = _flaky(tmp_path)
    report = check(reference, candidate, runs=3, warmup=3)
    (run,) = report.runs
    assert run.status == CANDIDATE_FAILED and not report and run.candidate is None
    assert run.error is not None and run.error.startswith("on its timed run ")
    assert "(warm-up included), after the run compared had succeeded: [ONNXRuntime" in run.error
    with pytest.raises(providers.RunFailedError, match=r"flaky\.onnx: onnxruntime failed to run"):
        check(candidate, reference, runs=3, warmup=3)  # the reference's: bad input


FLAKY_FREE = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[2, 3] x) => (float[6] y) { y = Reshape(x, six) }
"""


def test_a_candidate_that_fails_to_run_fails_the_check(fails_to_run: tuple[Path, Path]) -> None:
    """The reference ran: the candidate failing is what the check found (exit 1), no bad
    input (it raised InvalidModelError, exit 2)."""
    reference, candidate = fails_to_run
    report = check(reference, candidate, runs=1, warmup=0)
    (run,) = report.runs
    assert run.status == CANDIDATE_FAILED and run.error and "Reshape" in run.error
    assert not run.comparisons and run.reference is None and run.nothing_compared is None
    assert not report and report.failed_to_run() and not report.compared_nothing()
    assert report.failures() == [f"cpu/default: the candidate failed to run: {run.error}"]
    assert comparison_rows(report) == [
        ("cpu/default", *["-"] * 6, f"FAIL: the candidate failed to run: {run.error}")
    ]
    data = report.to_dict()["runs"][0]
    assert (data["status"], data["error"]) == ("candidate failed to run", run.error)


def test_a_reference_that_fails_to_run_is_bad_input(fails_to_run: tuple[Path, Path]) -> None:
    """Nothing to compare the candidate with: the inputs do not fit the reference."""
    runs, fails = fails_to_run
    with pytest.raises(InvalidModelError, match=rf"^{re.escape(str(fails))}: onnxruntime failed"):
        check(fails, runs, runs=1, warmup=0)


def test_a_reference_too_short_for_the_synthesized_axis_says_what_it_ran_on(
    tmp_path: Path,
) -> None:
    """A model that needs 5 samples a row failed on the 32 a dynamic axis takes by default,
    and the error said only ONNX Runtime's reason (EnCodec's reflect padding, t174): it names
    the inputs it ran on and how to give others; with a size that fits, it runs."""
    model = tmp_path / "rows.onnx"
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[1, T] x) => (float[5, ?] y) {
            shape = Constant <value = int64[2] {5, -1}> ()
            y = Reshape(x, shape)
        }
    """
    onnx.save(onnx.parser.parse_model(text), model)
    with pytest.raises(providers.RunFailedError) as failed:
        check(model, model, runs=1, warmup=0)
    assert str(failed.value).endswith(
        "(on synthesized inputs, x float32[1, 32], a dynamic axis at its default size: give "
        "its size or the inputs, --shape, --inputs)"
    )
    assert check(model, model, runs=1, warmup=0, shapes={"x": [1, 10]})
    with pytest.raises(providers.RunFailedError) as failed:  # a size given: its own (t176)
        check(model, model, runs=1, warmup=0, shapes={"x": [1, 16]})
    assert "Input shape:{1,16}" in str(failed.value) and "synthesized" not in str(failed.value)


# audio as ``x[T]`` into a 5-tap filter without padding: no output at one sample
UNPADDED_FIR = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[T] x) => (float[?] y) {
        axes = Constant <value = int64[2] {0, 1}> ()
        x3 = Unsqueeze (x, axes)
        c = Conv (x3, k)
        flat = Constant <value = int64[1] {-1}> ()
        y = Reshape (c, flat)
    }
"""


def test_a_vector_that_runs_at_no_length_1_is_run_as_a_length(tmp_path: Path) -> None:
    """t340: a vector's only axis runs at a batch's size, 1, in the first run (per-sample
    lengths, t338); ``audio[T]`` into an unpadded filter failed there, and the check of the
    model against itself stopped (exit 2). The first run is tried again with it a length (32),
    said in a note; a candidate whose outer taps differ fails there."""
    k = rand(1, 1, 5)
    wrong = k.copy()
    wrong[..., 0] += 1.0
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    onnx.save(onnx_model(UNPADDED_FIR, k=k), reference)
    onnx.save(onnx_model(UNPADDED_FIR, k=wrong), candidate)
    report = check(reference, reference, runs=1, warmup=0)
    assert report and report.inputs == [{"name": "x", "shape": [32], "dtype": "float32"}]
    assert "x[0] (T) = 32" in report.notes
    assert any(
        note.startswith("x: the only axis sized as a length, not as a batch of 1, at which the "
                        "reference fails to run ([ONNXRuntimeError]")
        for note in report.notes
    )  # fmt: skip
    assert "x[0] (T) = 1" not in report.notes  # the first sizes' notes are replaced
    assert any("also matched at other sizes" in note for note in report.notes)
    failed = check(reference, candidate, runs=1, warmup=0)
    assert not failed and not failed.runs[0].passed


def test_a_vector_that_runs_at_no_length_keeps_the_first_runs_reason(tmp_path: Path) -> None:
    """Where the reference runs neither at 1 nor as a length, the error is the first run's,
    with the inputs it ran on and how to give others."""
    model = tmp_path / "rows.onnx"
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[T] x) => (float[5, 7] y) {
            shape = Constant <value = int64[2] {5, 7}> ()
            y = Reshape(x, shape)
        }
    """
    onnx.save(onnx.parser.parse_model(text), model)
    with pytest.raises(providers.RunFailedError) as failed:
        check(model, model, runs=1, warmup=0)
    said = str(failed.value)
    assert "Input shape:{1}" in said and said.endswith(
        "(on synthesized inputs, x float32[1], a dynamic axis at its default size: give its "
        "size or the inputs, --shape, --inputs)"
    )
    assert check(model, model, runs=1, warmup=0, shapes={"x": [35]})


def test_a_reference_indexed_beyond_its_table_by_synthesized_integers_says_so(
    tmp_path: Path,
) -> None:
    """t284: a table of 3 speakers, indexed with integers drawn from [0, 8), failed with ONNX
    Runtime's "indices element out of data bounds", as if the model were at fault (and
    ``fold --verify`` wrote nothing). Ids that only index tables whose rows are known are
    drawn from those rows; where the rows are not known (a table laid out by ops whose shapes
    are not read), the error names the integers it drew and how to give others; given ones in
    range, it runs."""
    model = tmp_path / "speakers.onnx"
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (int64[1, 16] ids) => (float[1, 16, 4] y) {
            y = Gather(table, ids)
        }
    """
    onnx.save(onnx_model(text, table=np.ones((3, 4), np.float32)), model)
    report = check(model, model, runs=1, warmup=0)
    assert report and "ids drawn from [0, 3): the rows of the table it indexes" in report.notes
    unread = "s = Transpose <perm = [1, 0]> (table)\n t = Transpose <perm = [1, 0]> (s)"
    text = text.replace("y = Gather(table, ids)", f"{unread}\n y = Gather(t, ids)")
    onnx.save(onnx_model(text, table=np.ones((3, 4), np.float32)), model)
    with pytest.raises(providers.RunFailedError) as failed:
        check(model, model, runs=1, warmup=0)
    assert "out of data bounds" in str(failed.value)
    assert str(failed.value).endswith(
        "(on synthesized inputs, ids int64[1, 16], integers drawn from [0, 8): give the "
        "inputs, --inputs)"
    )
    feeds = tmp_path / "ids.npz"
    np.savez(feeds, ids=np.zeros((1, 16), np.int64))
    assert check(model, model, runs=1, warmup=0, inputs=feeds)
    # a dynamic axis too: named once, with both (t285); its size given through another
    # input sharing the dimension, no default
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[1, T] x, int64[1, T] ids) => (float[1, T, 4] y) {
            s = Transpose <perm = [1, 0]> (table)
            t = Transpose <perm = [1, 0]> (s)
            e = Gather(t, ids)
            u = Unsqueeze(x, two)
            y = Add(e, u)
        }
    """
    onnx.save(onnx_model(text, table=np.ones((3, 4), np.float32), two=np.array([2])), model)
    with pytest.raises(providers.RunFailedError) as failed:
        check(model, model, runs=1, warmup=0)
    assert str(failed.value).endswith(
        "(on synthesized inputs, x float32[1, 32], a dynamic axis at its default size; ids "
        "int64[1, 32], a dynamic axis at its default size and integers drawn from [0, 8): "
        "give their sizes or the inputs, --shape, --inputs)"
    )
    with pytest.raises(providers.RunFailedError) as failed:
        check(model, model, runs=1, warmup=0, shapes={"x": [1, 16]})
    assert str(failed.value).endswith(
        "(on synthesized inputs, ids int64[1, 16], integers drawn from [0, 8): give the "
        "inputs, --inputs)"
    )


def test_rows_of_a_table_that_synthesized_ids_once_never_reached_are_compared(
    tmp_path: Path,
) -> None:
    """A candidate whose embedding rows 8 to 15 (of 16) are off by 1 was equivalent: ids were
    drawn from [0, 8) (t310). They are drawn from the table's rows, and the check fails."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (int64[B, T] ids) => (float[B, T, 4] y) {
            y = Gather(table, ids)
        }
    """
    table = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    off = table + (np.arange(16) >= 8)[:, None].astype(np.float32)
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    onnx.save(onnx_model(text, table=table), reference)
    onnx.save(onnx_model(text, table=off), candidate)
    report = check(reference, candidate, runs=1, warmup=0)
    assert not report and not report.runs[0].comparisons[0]


# a model the ONNX checker takes (an op of a domain it does not know) and ONNX Runtime cannot load
CUSTOM = """
    <ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
    agraph (float[4] x) => (float[4] y) { y = com.example.Relu(x) }
"""


def test_a_candidate_that_does_not_load_fails_the_check(tmp_path: Path) -> None:
    """The reference loaded: ONNX Runtime refusing the candidate is what the check found
    (exit 1, a report), as its failing to run is; it was bad input (exit 2, no report)."""
    reference, candidate = tmp_path / "relu.onnx", tmp_path / "custom.onnx"
    onnx.save(onnx_model(RELU), reference)
    onnx.save(onnx_model(CUSTOM, check=False), candidate)
    report = check(reference, candidate, runs=1, warmup=0)
    (run,) = report.runs
    assert run.status == CANDIDATE_FAILED and not report
    assert run.error is not None and run.error.startswith("onnxruntime cannot load it: ")
    with pytest.raises(providers.SessionError, match=r"custom\.onnx: onnxruntime cannot load"):
        check(candidate, reference, runs=1, warmup=0)  # the reference's own: bad input


class _Session:
    def __init__(self, message: str) -> None:
        self.message = message

    def run(self, feeds: dict[str, object]) -> list[object]:
        raise RuntimeError(self.message)


@pytest.mark.parametrize(
    "message",
    [
        "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while "
        "running Expand node. std::bad_alloc",
        "BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*) Failed to allocate "
        "memory for requested buffer of size 400000000",
        "CUDA failure 2: out of memory",
    ],
)
def test_running_out_of_memory_is_no_verdict_on_the_model(message: str) -> None:
    """Two identical models failed the check ('NOT EQUIVALENT', exit 1) when the second ran
    out of memory while the first one's session held it: an allocation failure is the
    machine's limit, said as such (exit 2), whole."""
    long = message + " " + "x" * 300
    with pytest.raises(providers.OutOfMemoryError, match="ran out of memory running it") as error:
        providers.run(_Session(long), Path("cand.onnx"), {})  # type: ignore[arg-type]
    assert error.value.reason == long and error.value.model == Path("cand.onnx")
    with pytest.raises(providers.RunFailedError) as failed:
        providers.run(_Session("Reshape: cannot reshape " + "y" * 300), Path("c.onnx"), {})  # type: ignore[arg-type]
    assert failed.value.reason.endswith("y" * 300)  # the report's error is whole
    # the line keeps the message's end, where ONNX Runtime says what was wrong (it was cut)
    said = "Reshape node. Status Message: " + "/src/reshape_helper.h:91 " * 20 + "requested {5,7}"
    with pytest.raises(providers.RunFailedError) as failed:
        providers.run(_Session(said), Path("c.onnx"), {})  # type: ignore[arg-type]
    line = str(failed.value)
    assert line.endswith("requested {5,7}") and " ... " in line and len(line) < 300
    # a word of an out-of-memory message in the model's own names is no allocation failure
    named = "running Reshape node. Name:'bad_alloc_here' Status Message: cannot reshape"
    with pytest.raises(providers.RunFailedError):
        providers.run(_Session(named), Path("c.onnx"), {})  # type: ignore[arg-type]
    # also one that holds quotes (t238: a candidate whose Reshape failed at a batch of 2 was
    # "out of memory", a note, and equivalent)
    quoted = "running Reshape node. Name:'r' out of memory '' Status Message: cannot reshape"
    with pytest.raises(providers.RunFailedError):
        providers.run(_Session(quoted), Path("c.onnx"), {})  # type: ignore[arg-type]
    # ONNX Runtime names inputs unquoted, and a wrong input's status is INVALID_ARGUMENT
    # (t43: an input named bad_alloc of the wrong size was "ran out of memory", exit 2)
    unquoted = "[ONNXRuntimeError] : 1 : FAIL : shape mismatch in input: out_of_memory_x"
    with pytest.raises(providers.RunFailedError):
        providers.run(_Session(unquoted), Path("c.onnx"), {})  # type: ignore[arg-type]
    invalid = (
        "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: bad_alloc"
    )
    with pytest.raises(providers.RunFailedError):
        providers.run(_Session(invalid), Path("c.onnx"), {})  # type: ignore[arg-type]
    # the model's names are not taken out of ONNX Runtime's own words (the reviews: an
    # output y, then a decoder's input memory, made "out of memory" a failed run, exit 1)
    for said in ("CUDA failure 2: out of memory", "std::bad_alloc", "Failed to allocate a y"):
        with pytest.raises(providers.OutOfMemoryError):
            providers.run(_Session(said), Path("c.onnx"), {})  # type: ignore[arg-type]


def test_a_comparison_out_of_memory_is_no_verdict(
    pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outputs too large to compare in memory (float64 temporaries) were an internal error,
    exit 3: like ONNX Runtime running out of memory, it is the machine's limit, exit 2."""
    from wnpass.verify import compare as compare_module  # where compare_within calls it
    from wnpass.verify.compare import compare_outputs

    def too_big(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(compare_module, "compare_outputs", too_big)
    with pytest.raises(WnpassError, match=r"ref.onnx: comparing two runs of its outputs needs"):
        check(*pair, runs=1, warmup=0)  # the reference's against itself, first
    calls: Iterator[Callable[..., Any]] = iter([compare_outputs, too_big])
    monkeypatch.setattr(compare_module, "compare_outputs", lambda *a, **k: next(calls)(*a, **k))
    with pytest.raises(WnpassError, match=r"comparing its outputs with the reference's needs") as e:
        check(*pair, runs=1, warmup=0)
    assert e.value.exit_code == 2

    def at_two(names: list[str], values: list[Any], *args: Any, **kwargs: Any) -> Any:
        if values[0].shape[0] == 2:
            raise MemoryError
        return compare_outputs(names, values, *args, **kwargs)

    # at other sizes, the message says so (t237: it read as the first sizes')
    monkeypatch.setattr(compare_module, "compare_outputs", at_two)
    with pytest.raises(WnpassError, match=r"two runs of its outputs at other sizes of the dyn"):
        check(*pair, runs=1, warmup=0)


def test_a_string_input_beside_a_bits_output_is_said_to_be_onnx_runtimes_limit(
    tmp_path: Path,
) -> None:
    """ONNX Runtime makes no OrtValue of strings, and reads bfloat16 outputs only as OrtValues:
    the error blamed the model ("onnxruntime failed to run it")."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (string[2] s, float[2] x) => (string[2] t, bfloat16[2] y) {
            t = Identity(s)
            y = Cast <to = 16> (x)
        }
    """
    path = tmp_path / "str_bf16.onnx"
    onnx.save(onnx_model(text), path)
    said = "a string input beside an output of a type numpy lacks .*; nothing compared$"
    message = rf"^{re.escape(str(path))}: {said}"
    feeds = tmp_path / "in.npz"
    np.savez(feeds, s=np.array(["a", "b"]), x=np.ones(2, np.float32))
    with pytest.raises(UsageError, match=message):
        check(path, path, inputs=feeds, runs=1, warmup=0)


def test_an_output_of_tiny_values_fails_when_it_is_wrong(tmp_path: Path) -> None:
    """y = x * 1e-7 against y = x * 0: every value is below float32's default atol, which a
    fixed atol would call equivalent; capped at rtol times the scale, the check fails and
    the table and the JSON say which atol it used."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[N, 8] x) => (float[N, 8] y) { y = Mul(x, k) }
    """
    paths = []
    for k in (1e-7, 0.0):
        paths.append(tmp_path / f"k{k:g}.onnx")
        onnx.save(onnx_model(text, k=np.array([k], np.float32)), paths[-1])
    report = check(*paths, runs=1, warmup=0)
    assert not report
    (row,) = report.runs[0].comparisons
    assert row.atol_scaled and row.atol is not None and row.atol < 1e-9
    assert comparison_rows(report)[0][6].endswith("(rtol x scale)")
    (data,) = report.to_dict()["runs"][0]["comparisons"]
    assert data["atol_scaled"] is True and data["atol"] == row.atol


def _with_default(tmp_path: Path, name: str, body: str) -> Path:
    """A model of one input ``x`` that has a default (an initializer of ones, IR version 8)
    and one output ``y = body``."""
    text = f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 3] x) => (float[2, 3] y) {{ y = {body} }}
    """
    path = tmp_path / f"{name}.onnx"
    onnx.save(onnx_model(text, x=np.ones((2, 3), np.float32)), path)
    return path


def test_an_input_with_a_default_fed_to_both_must_have_one_type(tmp_path: Path) -> None:
    """Fed from an inputs file, an input with a default of float32 in the reference and
    float16 in the candidate was given the reference's array: the candidate failed to run,
    "NOT EQUIVALENT", exit 1 (t49). The same mismatch on an ordinary input is bad input."""
    half = _with_default(tmp_path, "half", "Relu(x)")
    changed = onnx.load(half)
    changed.graph.initializer[0].CopyFrom(
        onnx.numpy_helper.from_array(np.ones((2, 3), np.float16), "x")
    )
    changed.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    changed.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    onnx.save(changed, half)
    feeds = tmp_path / "x.npz"
    np.savez(feeds, x=np.full((2, 3), 2.0, np.float32))
    reference = _with_default(tmp_path, "single", "Relu(x)")
    with pytest.raises(
        UsageError, match=r"half\.onnx: input x is float16, the reference's is float"
    ):
        check(reference, half, runs=1, warmup=0, inputs=feeds)
    assert not check(reference, half, runs=1, warmup=0)  # not fed: its own default, compared


def test_below_ir_version_4_an_initializer_listed_as_input_is_no_default(tmp_path: Path) -> None:
    """IR version 3 lists every initializer as an input, and ONNX Runtime lets none be fed:
    no note lists them, and an inputs file that gives one is refused as before."""
    text = """
        <ir_version: 3, opset_import: ["" : 8]>
        agraph (float[2, 3] x, float[2, 3] w) => (float[2, 3] y) { y = Mul(x, w) }
    """
    path = tmp_path / "ir3.onnx"
    onnx.save(onnx_model(text, w=np.ones((2, 3), np.float32)), path)
    report = check(path, path, runs=1, warmup=0)
    assert report and not any(n.startswith("not fed") for n in report.notes)
    feeds = tmp_path / "in.npz"
    np.savez(feeds, x=np.ones((2, 3), np.float32), w=np.ones((2, 3), np.float32))
    with pytest.raises(InvalidArgumentError, match="the model has no input 'w'"):
        check(path, path, runs=1, warmup=0, inputs=feeds)


def test_an_input_with_a_default_is_said_and_may_be_fed(tmp_path: Path) -> None:
    """``Relu(x)`` and ``x * x`` agree at their default x (ones). Check took x's default
    without a word, reported no inputs, and refused an inputs file that gave x (t43): two
    other functions were called equivalent with no way to say otherwise. Now a note says
    which inputs kept their defaults, and a file that gives x feeds it to both."""
    relu, square = (
        _with_default(tmp_path, "relu", "Relu(x)"),
        _with_default(tmp_path, "sq", "Mul(x, x)"),
    )
    at_default = check(relu, square, runs=1, warmup=0)
    assert at_default and at_default.inputs == []
    (note,) = [n for n in at_default.notes if n.startswith("not fed")]
    assert "initializer's value: x (inputs with a default" in note
    feeds = tmp_path / "x.npz"
    np.savez(feeds, x=np.full((2, 3), 2.0, np.float32))
    fed = check(relu, square, runs=1, warmup=0, inputs=feeds)
    assert not fed and [i["name"] for i in fed.inputs] == ["x"]
    assert fed.runs[0].comparisons[0].max_abs == 2.0  # 2 against 4
    assert not any(n.startswith("not fed") for n in fed.notes)


@pytest.mark.parametrize("seed", ["", "<seed = 3.0>"])
def test_a_reference_that_changes_from_run_to_run_compares_nothing(
    tmp_path: Path, seed: str
) -> None:
    """``x + RandomNormalLike(x)`` against itself was "ok": ONNX Runtime starts the draws of
    every session of a process alike, so the two first runs agreed by the seed alone, and a
    second run (or another process) draws other values (t43). No run of such a reference is a
    reference: the check compares nothing there and fails, saying why."""
    text = f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[64] x) => (float[64] y) {{
            r = RandomNormalLike {seed} (x)
            y = Add(x, r)
        }}
    """
    path, twin = tmp_path / "random.onnx", tmp_path / "twin.onnx"
    onnx.save(onnx_model(text), path)
    onnx.save(onnx_model(text), twin)
    report = check(path, twin, runs=1, warmup=0)
    (run,) = report.runs
    assert not report and report.compared_nothing() and run.status == "reference not deterministic"
    assert run.comparisons == [] and run.reference is None  # neither compared nor timed
    from wnpass.cli.output import Printer
    from wnpass.cli.render import print_check

    shown = io.StringIO()
    print_check(Printer(stream=shown, plain=True), report)
    summary = f"NOTHING COMPARED: {path} gave other values on a second run (below): no "
    summary += f"reference to compare {twin} with"
    assert summary in shown.getvalue() and "no element differed" not in shown.getvalue()
    assert "the reference gave other values of y on a second run" in (run.nothing_compared or "")


@pytest.mark.parametrize("which", ["candidate", "inputs"])
def test_a_file_replaced_while_the_check_runs_is_refused(
    pair: tuple[Path, Path], which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ONNX Runtime reads the models again for every session: a candidate replaced between
    `--optimization` levels (as a build step's `mv` does) gave one report on two files, one
    level failed and the other passed, without a word (t43)."""
    from wnpass.verify import check as check_module

    reference, candidate = pair
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=np.ones((2, 64), np.float32))
    one_run = check_module._check_one

    def then_replaced(*args: Any, **kwargs: Any) -> Any:
        done = one_run(*args, **kwargs)
        target = candidate if which == "candidate" else inputs
        staged = target.with_name("staged")
        staged.write_bytes(target.read_bytes() + (b"" if which == "candidate" else b"\0"))
        os.replace(staged, target)
        return done

    monkeypatch.setattr(check_module, "_check_one", then_replaced)
    with pytest.raises(InvalidModelError, match=r"changed while it was read") as error:
        check(reference, candidate, runs=1, warmup=0, inputs=inputs)
    assert str(error.value).startswith(str(candidate if which == "candidate" else inputs))


def test_a_bits_output_beside_a_sequence_is_refused_naming_the_model(tmp_path: Path) -> None:
    """ONNX Runtime's Python API gives a bfloat16 output only as an OrtValue, and then a
    sequence output not at all: refused, exit 2, with the model's name (t43: none was said)."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2] x) => (bfloat16[2] b, seq(float[2]) s) {
            b = Cast <to = 16> (x)
            s = SequenceConstruct(x)
        }
    """
    path = tmp_path / "m.onnx"
    onnx.save(onnx_model(text), path)
    with pytest.raises(UsageError) as error:
        check(path, path, runs=1, warmup=0)
    assert str(error.value).startswith(f"{path}: output s is a seq(tensor(float)): ONNX Runtime")
    assert error.value.exit_code == 2


@pytest.mark.parametrize(
    ("ours", "its", "said"),
    [
        ("N, 8", "1, 8", "axis 0 of input x is 1 in the candidate, dynamic (N) in the reference"),
        ("2, 8", "1, 8", "axis 0 of input x is 1 in the candidate, 2 in the reference"),
        ("2, 8", "N, 8", None),  # takes more: every input the reference takes
        ("N, 8", "B, 8", None),
    ],
)
def test_a_candidate_that_fixes_an_input_size_fails(
    ours: str, its: str, said: str | None, tmp_path: Path
) -> None:
    """A candidate that takes x[1, 8] where the reference takes x[N, 8] was called equivalent
    on the synthesized batch of 1 (t96): a caller's batch of 2 fails in it. A candidate that
    takes more passes."""
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    onnx.save(one_output_model(f"float[{ours}] x", "y = Identity(x)"), reference)
    onnx.save(one_output_model(f"float[{its}] x", "y = Identity(x)"), candidate)
    report = check(reference, candidate, runs=1, warmup=0)
    reason = ": the candidate refuses inputs the reference takes"
    assert report.differences == ([] if said is None else [said + reason])
    assert bool(report) is (said is None)


@pytest.mark.parametrize(
    ("ours", "its", "said"),
    [
        ("A, 8] x, float[B", "N, 8] x, float[N", "axis 0 of input x and axis 0 of input z"),
        ("A, 8] x, float[1", "N, 8] x, float[N", "axis 0 of input x and axis 0 of input z"),
        ("N, 8] x, float[N", "M, 8] x, float[M", None),  # tied in both
        ("2, 8] x, float[2", "N, 8] x, float[N", None),  # of one size in the reference
    ],
)
def test_a_candidate_that_ties_two_dynamic_axes_fails(
    ours: str, its: str, said: str | None, tmp_path: Path
) -> None:
    """A candidate that takes x[N, 8] and z[N, 8] where the reference takes x[A, 8] and z[B, 8]
    was called equivalent on inputs made up with every symbol of size 1 (t111): a caller's x
    of 2 rows and z of 3 is outside what it declares (ONNX Runtime runs it all the same: it
    was said to refuse it, t238). One symbol or one size in the reference too passes."""
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    body = """a = ReduceSum <keepdims = 1> (x, zero)
        b = ReduceSum <keepdims = 1> (z, zero)
        y = Add(a, b)"""
    zero = np.array([0], np.int64)
    onnx.save(one_output_model(f"float[{ours}, 8] z", body, zero=zero), reference)
    onnx.save(one_output_model(f"float[{its}, 8] z", body, zero=zero), candidate)
    report = check(reference, candidate, runs=1, warmup=0)
    reason = " are one dimension (N) in the candidate, which the reference declares apart: it "
    reason += "declares of one size inputs the reference declares it takes of other sizes"
    assert report.differences == ([] if said is None else [said + reason])
    assert bool(report) is (said is None)


def test_a_model_of_no_inputs_has_none_said_to_be_made_up(tmp_path: Path) -> None:
    """``inputs: none`` was followed by ``inputs synthesized (seed 0)`` (t111)."""
    path = tmp_path / "constant.onnx"
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph () => (float[2] y) { y = Identity(c) }
    """
    onnx.save(onnx_model(text, c=np.ones(2, np.float32)), path)
    report = check(path, path, runs=1, warmup=0)
    assert report and report.inputs == [] and report.notes == []


def _empty_outputs(path: Path, dtype: int) -> Path:
    """y = x, and an empty optional o and an empty sequence s of ``dtype``."""
    make = onnx.helper
    graph = make.make_graph(
        [
            make.make_node("Identity", ["x"], ["y"]),
            make.make_node("Optional", [], ["o"], type=make.make_tensor_type_proto(dtype, [4])),
            make.make_node("SequenceEmpty", [], ["s"], dtype=dtype),
        ],
        "g",
        [make.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4])],
        [
            make.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4]),
            make.make_value_info(
                "o", make.make_optional_type_proto(make.make_tensor_type_proto(dtype, [4]))
            ),
            make.make_tensor_sequence_value_info("s", dtype, None),
        ],
    )
    model = make.make_model(graph, opset_imports=[make.make_opsetid("", 18)], ir_version=8)
    onnx.save(model, path)
    return path


def test_empty_outputs_declared_of_other_types_fail(tmp_path: Path) -> None:
    """An optional and a sequence output, empty in both models, declared float in one and
    int64 in the other, were called equivalent (t111): no value shows a type. The declared
    types say it."""
    floats = _empty_outputs(tmp_path / "f.onnx", onnx.TensorProto.FLOAT)
    ints = _empty_outputs(tmp_path / "i.onnx", onnx.TensorProto.INT64)
    report = check(floats, ints, runs=1, warmup=0)
    assert not report
    assert report.differences == [
        "output o is declared optional(tensor(int64)) in the candidate, optional(tensor(float)) "
        "in the reference",
        "output s is declared seq(tensor(int64)) in the candidate, seq(tensor(float)) in the "
        "reference",
    ]
    assert check(floats, floats, runs=1, warmup=0)


def test_a_candidate_without_an_input_the_reference_takes_with_a_default_fails(
    tmp_path: Path,
) -> None:
    """The reference's w is an initializer listed as an input: a caller may feed it. The
    candidate holds w as a plain initializer: equal outputs on the defaults, but no drop-in
    replacement (t96)."""
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    w = np.ones((1, 8), np.float32)
    onnx.save(one_output_model("float[N, 8] x, float[1, 8] w", "y = Mul(x, w)", w=w), reference)
    onnx.save(one_output_model("float[N, 8] x", "y = Mul(x, w)", w=w), candidate)
    report = check(reference, candidate, runs=1, warmup=0)
    assert all(run.passed for run in report.runs) and not report
    assert report.differences == [
        "the candidate has no input w, which the reference takes with a default (a caller may "
        "feed it)"
    ]
    assert check(candidate, reference, runs=1, warmup=0)  # the other way round: it takes more
    # an inputs file giving w: no run feeds it to both (it said "the model has no input 'w'")
    given = tmp_path / "i.npz"
    np.savez(given, x=np.ones((2, 8), np.float32), w=w)
    for pair, model in (
        ((reference, candidate), "reference"),
        ((candidate, reference), "candidate"),
    ):
        said = rf"i\.npz: 'w' is an input \(with a default\) of the {model} only"
        with pytest.raises(InvalidArgumentError, match=said):
            check(*pair, inputs=given, runs=1, warmup=0)


def test_a_candidate_taking_an_input_with_a_default_as_another_dtype_fails(
    tmp_path: Path,
) -> None:
    """The reference's s is float32 with a default, the candidate's float64 (cast inside):
    equal outputs on the defaults, but the candidate refuses the float32 s a caller feeds the
    reference (t229: equivalent, exit 0)."""
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    s32, s64 = np.ones((1, 8), np.float32), np.ones((1, 8), np.float64)
    onnx.save(one_output_model("float[N, 8] x, float[1, 8] s", "y = Mul(x, s)", s=s32), reference)
    body = "t = Cast <to = 1> (s)\n y = Mul(x, t)"
    onnx.save(one_output_model("float[N, 8] x, double[1, 8] s", body, s=s64), candidate)
    report = check(reference, candidate, runs=1, warmup=0)
    assert all(run.passed for run in report.runs) and not report
    assert report.differences == [
        "input s (with a default) is double in the candidate, float in the reference: the "
        "candidate refuses it as a caller feeds the reference"
    ]
    # a shape for it: it is not synthesized (it said "the model has no input of that name")
    with pytest.raises(InvalidArgumentError, match=r"^shapes s: an input with a default"):
        check(reference, reference, shapes={"s": [1, 8]}, runs=1, warmup=0)


def test_a_candidate_taking_with_a_default_an_input_the_reference_requires_is_run(
    tmp_path: Path,
) -> None:
    """The candidate's x has a default, the reference's none: it takes every call the
    reference takes, fed as the reference is. The check refused it as "its inputs differ"
    (exit 2, t229)."""
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    x = np.full((2, 8), 7.0, np.float32)
    onnx.save(one_output_model("float[2, 8] x", "y = Relu(x)"), reference)
    onnx.save(one_output_model("float[2, 8] x", "y = Relu(x)", x=x), candidate)
    report = check(reference, candidate, runs=1, warmup=0)
    assert report and not report.differences
    assert [i["name"] for i in report.inputs] == ["x"] and "inputs synthesized (seed 0)" in (
        report.notes
    )
    # fed the candidate's default, which differs from what a caller feeds: no match
    onnx.save(one_output_model("float[2, 8] x", "y = Neg(x)", x=x), candidate)
    assert not check(reference, candidate, runs=1, warmup=0).runs[0].passed


def test_a_candidate_requiring_an_input_the_reference_takes_with_a_default_fails(
    tmp_path: Path,
) -> None:
    """The reference's s has a default, the candidate requires it (a tool that dropped the
    initializer and kept the input): it refuses a caller that does not feed s. Compared fed
    the reference's default, it matches, and differs (it was refused as "its inputs differ",
    exit 2, t229); an inputs file may give s."""
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    s = np.full((1, 8), 3.0, np.float32)
    onnx.save(one_output_model("float[N, 8] x, float[1, 8] s", "y = Mul(x, s)", s=s), reference)
    onnx.save(one_output_model("float[N, 8] x, float[1, 8] s", "y = Mul(x, s)"), candidate)
    report = check(reference, candidate, runs=1, warmup=0)
    assert all(run.passed for run in report.runs) and not report
    assert report.differences == [
        "the candidate requires input s, which the reference takes with a default: it "
        "refuses a caller that does not feed it (compared fed the reference's default)"
    ]
    assert "the reference's default fed to both: s" in report.notes
    given = tmp_path / "i.npz"
    np.savez(given, x=np.ones((2, 8), np.float32), s=np.full((1, 8), 5.0, np.float32))
    fed = check(reference, candidate, inputs=given, runs=1, warmup=0)
    assert fed.runs[0].passed and fed.runs[0].comparisons[0].max_abs == 0.0
    assert not any("default fed" in note for note in fed.notes) and not fed
    # said as fed (t241: "compared fed the reference's default" where the file gave it)
    assert fed.differences == [
        report.differences[0].replace("the reference's default)", "the inputs file's value)")
    ]


def test_a_candidate_that_varies_and_fails_its_first_run_says_it_varies(tmp_path: Path) -> None:
    """t151: a DropConnect's weight folded into an initializer: ONNX Runtime takes out the
    reference's training-mode Dropout of a computed weight but keeps the candidate's, of an
    initializer. Both hold the same draw; the candidate's first run failed as a plain
    difference (255 of 256 elements outside) with no word of its draws. Its two runs differ,
    and the run says so."""
    constants = {
        "w": np.full((8, 8), 0.5, np.float32),
        "ratio": np.array(0.5, np.float32),
        "on": np.array(True),
    }
    computed = "c = Relu(w)\n d = Dropout(c, ratio, on)\n y = MatMul(x, d)"
    folded = "d = Dropout(w, ratio, on)\n y = MatMul(x, d)"
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    onnx.save(one_output_model("float[N, 8] x", computed, **constants), reference)
    onnx.save(one_output_model("float[N, 8] x", folded, **constants), candidate)
    report = check(reference, candidate, runs=1, warmup=0, optimizations=("default",))
    (run,) = report.runs
    assert run.status == "candidate not deterministic" and report.differences == []
    assert run.error is not None and run.error.startswith("the candidate gave other values of y ")
    assert not report and not run.comparisons[0]
    added = tmp_path / "added.onnx"  # an output only the candidate gives varies: no such word
    text = one_output_text("float[N, 8] x", "y = Relu(x)\n z = RandomUniformLike(x)")
    text = text.replace("(float[N, 8] y)", "(float[N, 8] y, float[N, 8] z)")
    onnx.save(onnx.parser.parse_model(text), added)
    onnx.save(one_output_model("float[N, 8] x", "y = Relu(x)"), reference)
    (run,) = check(reference, added, runs=1, warmup=0, optimizations=("default",)).runs
    assert run.status == "ok" and [row.problem for row in run.comparisons] == [
        None,
        "not in the reference",
    ]


def test_a_candidate_whose_second_run_differs_fails(tmp_path: Path) -> None:
    """Both models hold one seeded RandomUniformLike, drawing alike (no random op added, the
    same threshold after it); the reference multiplies what it marks by 0, the candidate adds
    100 and more where the draw is above the largest value of its first draw: its first run
    matches, its second does not, and the check fails on it. (The scale multiplies the draw
    after an activation does, so it is the runs' to compare: a constant read by the draw alone
    makes another draw, ``test_draws``.)"""
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 8)).astype(np.float32)}
    draw = one_output_model("float[N, 8] x", "y = RandomUniformLike <seed = 1.0> (x)")
    draws_path = tmp_path / "draws.onnx"
    onnx.save(draw, draws_path)
    session = providers.open_session(draws_path, "cpu", optimization="default", threads=None)
    first, second = (providers.run(session, draws_path, feeds)[0] for _ in range(2))
    assert second.max() > first.max()  # ONNX Runtime's seeded draws: fixed, run by run
    body = """r = RandomUniformLike <seed = 1.0> (x)
            c = Greater(r, high)
            f = Cast <to = 1> (c)
            a = Abs(x)
            t = Mul(f, a)
            u = Add(t, f)
            s = Mul(u, scale)
            y = Add(x, s)"""
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    high = np.array(first.max(), np.float32)
    for path, scale in ((reference, 0.0), (candidate, 100.0)):
        onnx.save(
            one_output_model("float[N, 8] x", body, high=high, scale=np.array(scale, np.float32)),
            path,
        )
    np.savez(tmp_path / "in.npz", x=feeds["x"])
    report = check(reference, candidate, runs=1, warmup=0, inputs=tmp_path / "in.npz")
    (run,) = report.runs
    assert run.status == "candidate not deterministic" and report.differences == []
    assert not run.comparisons[0] and run.comparisons[0].max_abs > 99  # the second run's
    assert not report and not report.compared_nothing() and run.reference is None
    assert report.failures() == [
        f"cpu/default: {run.error}",
        f"cpu/default: y: {(second > high).sum()} of 8 elements outside rtol=0.0001 "
        f"atol=1e-05 (max abs {run.comparisons[0].max_abs:.3g}, "
        f"{run.comparisons[0].max_scaled:.3g} of scale)",
    ]
    assert run.error is not None and run.error.startswith("the candidate gave other values of y ")
