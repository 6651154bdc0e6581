"""``wnpass check`` on the command line: exit codes, the lines printed, and the JSON written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.helpers import onnx_model
from wnpass.cli import main
from wnpass.verify import providers

SCALE = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[N, 8] x) => (float[N, 8] y) { y = Mul(x, k) }
"""


def _scale(tmp_path: Path, name: str, k: float, text: str = SCALE) -> str:
    path = tmp_path / f"{name}.onnx"
    onnx.save(onnx_model(text, k=np.array([k], np.float32)), path)
    return str(path)


def _check(*argv: str) -> int:
    return main(["check", *argv, "--runs", "1", "--warmup", "0", "--provider", "cpu"])


@pytest.mark.parametrize(
    ("x", "why"),
    [
        (np.zeros((0, 8), np.float32), "the output has no elements"),
        (np.full((3, 8), np.nan, np.float32), "every element is NaN or Inf in both"),
    ],
)
def test_inputs_that_let_nothing_be_compared_fail(
    x: np.ndarray, why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """y = x against y = 2x: no finite element to compare is no evidence of equivalence."""
    np.savez(tmp_path / "in.npz", x=x)
    a, b = _scale(tmp_path, "a", 1.0), _scale(tmp_path, "b", 2.0)
    assert _check(a, b, "--inputs", str(tmp_path / "in.npz")) == 1
    out = capsys.readouterr().out
    assert f"cpu/default: nothing compared: y: {why}; try other inputs" in out
    assert f"not compared: {why}" in out and "NOTHING COMPARED in a run (below)" in out
    assert "equivalent:" not in out


TWO = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[N, 8] x) => (float[N, 8] y, float[N, 8] z) {
        y = Identity(x)
        a = Abs(x)
        n = Neg(a)
        m = Sub(n, one)
        r = Sqrt(m)
        z = Mul(r, k)
    }
"""


@pytest.mark.parametrize("quiet", [False, True])
def test_an_output_never_compared_is_named_in_the_verdict(
    quiet: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """t337: an output NaN in both on the inputs run (here on any input: z differs nowhere a
    value is finite) was said only in the table's row, which ``-q`` leaves out: the verdict
    said "equivalent" alone. It names the outputs not compared."""
    paths = []
    for name, k in (("a", 1.0), ("b", 2.0)):
        path = tmp_path / f"{name}.onnx"
        one = np.array([1], np.float32)
        onnx.save(onnx_model(TWO, one=one, k=np.array([k], np.float32)), path)
        paths.append(str(path))
    report = tmp_path / "r.json"
    assert _check(*paths, *(["-q"] if quiet else []), "--json", str(report)) == 0
    out = capsys.readouterr().out
    assert f"equivalent: {paths[1]} matches {paths[0]} (not compared: z)" in out
    assert json.loads(report.read_text())["uncompared"] == ["z"]


def test_a_model_whose_fixed_input_is_empty_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = SCALE.replace("N, 8", "0, 3")
    a, b = _scale(tmp_path, "a", 1.0, text), _scale(tmp_path, "b", 5.0, text)
    assert _check(a, b) == 1
    assert "nothing compared: y: the output has no elements" in capsys.readouterr().out


def test_an_integer_output_is_exact_whatever_the_tolerance_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[4] x) => (int64[4] y) { m = Mul(x, k)  y = Cast <to = 7> (m) }
    """
    a, b = _scale(tmp_path, "a", 10.0, text), _scale(tmp_path, "b", 13.0, text)
    assert _check(a, b, "--rtol", "1", "--atol", "100") == 1
    out = capsys.readouterr().out
    assert "rtol=1" not in out and "atol=100" not in out
    assert " exact " in out and "elements differ (max abs" in out


def test_a_model_that_fails_to_run_is_one_line_with_onnx_runtimes_reason(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """ONNX Runtime's own coloured log line stays out of stderr; its message is in ours."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[N] x) => (float[3] y) { y = Reshape(x, k) }
    """
    path = tmp_path / "reshape.onnx"
    onnx.save(onnx_model(text, k=np.array([3], np.int64)), path)
    assert _check(str(path), str(path)) == 2
    (line,) = capfd.readouterr().err.splitlines()
    assert line.startswith(f"wnpass: error: {path}: onnxruntime failed to run it: ")
    assert "Reshape" in line


def test_a_matmul_over_a_shared_symbol_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[B, K] x, float[K, 4] w) => (float[B, 4] y) { y = MatMul(x, w) }
    """
    path = tmp_path / "mm.onnx"
    onnx.save(onnx_model(text), path)
    assert _check(str(path), str(path)) == 0
    assert "w[0] (K) = 32, as x[1]" in capsys.readouterr().out


def test_an_empty_optional_beside_all_nan_outputs_compares_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """x*2 against x*3 where every output is an empty optional or all NaN: no evidence."""
    text = """
        <ir_version: 9, opset_import: ["" : 18]>
        agraph (float[4] x) => (optional(seq(float)) o, float[4] n) {
            o = Optional <type = seq(float)> ()
            m = Mul(x, k)
            n = Mul(m, nan)
        }
    """
    nan = np.array([np.nan], np.float32)
    paths = []
    for k in (2.0, 3.0):
        paths.append(tmp_path / f"opt{k:g}.onnx")
        onnx.save(onnx_model(text, k=np.array([k], np.float32), nan=nan), paths[-1])
    assert _check(str(paths[0]), str(paths[1])) == 1
    out = capsys.readouterr().out
    assert "not compared: the optional output is empty in both" in out
    assert "NOTHING COMPARED" in out and "equivalent:" not in out
    (row,) = [line.split() for line in out.splitlines() if line.startswith("cpu/default  o ")]
    assert row[6] == "-"  # tolerance: none, no dtype to take one from (it said "exact")


def test_a_string_input_from_an_inputs_file_is_checked(tmp_path: Path) -> None:
    """'give an inputs file' is advice that works: a numpy str array runs."""
    path = tmp_path / "strings.onnx"
    onnx.save(
        onnx_model(
            """
            <ir_version: 8, opset_import: ["" : 17]>
            agraph (string[2] x) => (string[2] y) { y = Identity(x) }
            """
        ),
        path,
    )
    assert _check(str(path), str(path)) == 2
    np.savez(tmp_path / "in.npz", x=np.array(["a", "b"]))
    assert _check(str(path), str(path), "--inputs", str(tmp_path / "in.npz")) == 0


def test_a_model_with_a_map_type_is_refused_when_read(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """As the README says: onnx-ir cannot hold map types, so ZipMap's output is refused."""
    helper = onnx.helper
    labels = helper.make_map_type_proto(
        onnx.TensorProto.INT64, helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, None)
    )
    graph = helper.make_graph(
        [helper.make_node("ZipMap", ["x"], ["y"], domain="ai.onnx.ml", classlabels_int64s=[0, 1])],
        "zipmap",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
        [helper.make_value_info("y", helper.make_sequence_type_proto(labels))],
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.ml", 3)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=9)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path := tmp_path / "zipmap.onnx")
    assert _check(str(path), str(path)) == 2
    (line,) = capfd.readouterr().err.splitlines()
    assert line.startswith(f"wnpass: error: {path}: 'y' has a map type")


SHARED = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[N] x, float[N] z) => (float[N] y) { y = Add(x, z) }
"""


def test_inputs_that_disagree_on_a_shared_dimension_blame_the_inputs_file(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "shared.onnx"
    onnx.save(onnx_model(SHARED), path)
    npz = tmp_path / "bad.npz"
    np.savez(npz, x=np.ones(3, np.float32), z=np.ones(4, np.float32))
    assert _check(str(path), str(path), "--inputs", str(npz)) == 2
    (line,) = capfd.readouterr().err.splitlines()
    assert line == f"wnpass: error: --inputs {npz}: z[0] = 4 but x[0] = 3, and both are N"


def test_an_input_given_twice_with_shape_is_refused(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "shared.onnx"
    onnx.save(onnx_model(SHARED), path)
    assert _check(str(path), str(path), "--shape", "x=3", "--shape", "x=5") == 2
    (line,) = capfd.readouterr().err.splitlines()
    assert line == "wnpass: error: --shape 'x=5': x is given twice; give each input once"


def test_a_sequence_input_is_refused_in_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (seq(float[2]) s) => (float[2] y) { y = SequenceAt(s, i) }
    """
    onnx.save(onnx_model(text, i=np.array(0, np.int64)), path := tmp_path / "seq.onnx")
    assert _check(str(path), str(path)) == 2
    (line,) = capfd.readouterr().err.splitlines()
    assert "input 's' is of type seq(tensor(float)): wnpass feeds tensor inputs only" in line


@pytest.mark.parametrize("threads", ["0", "1025", "2147483647", "2147483648"])
def test_threads_out_of_range_are_refused_naming_the_flag(
    threads: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    a = _scale(tmp_path, "a", 1.0)
    assert _check(a, a, "--threads", threads) == 2
    (line,) = capfd.readouterr().err.splitlines()
    assert line == f"wnpass: error: --threads {threads}: must be a whole number from 1 to 1024"


def test_a_json_path_ending_in_a_slash_names_a_folder(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Path('out/') is Path('out'): a file named out was written for a folder."""
    a = _scale(tmp_path, "a", 1.0)
    assert _check(a, a, "--json", f"{tmp_path / 'out'}/") == 2
    (line,) = capfd.readouterr().err.splitlines()
    assert "--json" in line and "out/: names a folder, not a file" in line
    assert not (tmp_path / "out").exists()


def test_a_name_holding_a_newline_prints_no_line_of_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An output (and an input) named "y\\nequivalent: ..." printed a fake verdict line
    with --quiet: every line holding a model's name is one line, the newline escaped."""
    helper = onnx.helper
    fake = "y\nequivalent: b.onnx matches a.onnx"
    x = "x\ninputs: none"
    paths = []
    for name, k in (("a", 1.0), ("b", 5.0)):
        graph = helper.make_graph(
            [helper.make_node("Mul", [x, "k"], [fake])],
            "g",
            [helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, [2])],
            [helper.make_tensor_value_info(fake, onnx.TensorProto.FLOAT, [2])],
            initializer=[onnx.numpy_helper.from_array(np.array([k], np.float32), "k")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, path := tmp_path / f"{name}.onnx")
        paths.append(str(path))
    assert main(["--quiet", "check", *paths, "--runs", "1", "--warmup", "0"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert not any(line.startswith("equivalent:") for line in lines)
    assert any(line.startswith("  cpu/default: y\\nequivalent: b.onnx") for line in lines)
    assert _check(*paths) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "inputs: x\\ninputs: none float32[2]" in lines
    assert not any(line.startswith(("equivalent:", "inputs: none")) for line in lines)


def test_a_candidate_that_fails_to_run_is_a_failed_check(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Exit 1 with the reason, not exit 2 'bad input' blaming the file being judged; a
    reference that fails to run is bad input (exit 2), nothing to judge against."""
    runs, fails = tmp_path / "relu.onnx", tmp_path / "reshape.onnx"
    relu = SCALE.replace("N, 8", "4").replace("Mul(x, k)", "Relu(x)")
    onnx.save(onnx_model(relu), runs)
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[4] x) => (float[4] y) { s = Shape(x)  t = Mul(s, k)  y = Reshape(x, t) }
    """
    onnx.save(onnx_model(text, check=False, k=np.array([2], np.int64)), fails)
    assert main(["--quiet", "check", str(runs), str(fails), "--runs", "1"]) == 1
    captured = capfd.readouterr()
    lines = captured.out.splitlines()
    if "cuda" not in providers.available():  # said under --quiet too: CUDA was not checked
        assert lines.pop(0) == "cuda: not available"
    verdict, reason = lines
    assert main(["--quiet", "check", str(runs), str(fails), "--runs", "1", "--provider", "cpu"])
    assert "not available" not in capfd.readouterr().out  # only CPU was asked for (t99)
    assert verdict == f"NOT EQUIVALENT: {fails} failed to run where {runs} ran"
    assert reason.startswith("  cpu/default: the candidate failed to run: ") and "Reshape" in reason
    assert captured.err == ""
    assert main(["--quiet", "check", str(fails), str(runs), "--runs", "1"]) == 2
    (line,) = capfd.readouterr().err.splitlines()
    assert line.startswith(f"wnpass: error: {fails}: onnxruntime failed to run it: ")


def test_json_onto_a_file_the_check_reads_names_what_it_is(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    a, b = _scale(tmp_path, "a", 1.0), _scale(tmp_path, "b", 1.0)
    assert _check(a, b, "--json", a) == 2
    (line,) = capfd.readouterr().err.splitlines()
    why = f"would overwrite the reference {a}, which this run reads; refused"
    assert line == f"wnpass: error: --json {a}: {why}"
