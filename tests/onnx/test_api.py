"""The ONNX entry points, on models given in memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as oh
from onnx import numpy_helper as nh

from tests.helpers import onnx_model, rand, weight_normed
from wnpass import fold_onnx, inspect_onnx
from wnpass.errors import InvalidModelError
from wnpass.verify.options import CheckOptions


def _site(prefix: str, v: str, g: str, x: str, out: str) -> list[onnx.NodeProto]:
    """A weight-norm site ``Mul(g, v / ||v||)`` feeding ``Gemm(x, w)``; values named ``prefix*``."""
    return [
        oh.make_node("ReduceL2", [v], [f"{prefix}n"], axes=[1]),
        oh.make_node("Div", [v, f"{prefix}n"], [f"{prefix}d"]),
        oh.make_node("Mul", [g, f"{prefix}d"], [f"{prefix}w"]),
        oh.make_node("Gemm", [x, f"{prefix}w"], [out], transB=1),
    ]


def _every_kind_of_constant() -> onnx.ModelProto:
    """Sites and cones that a fold folds, whose constants are ``Constant`` nodes (tensors named
    unlike their outputs), initializers (one only passed on by ``Identity``, whose name the fold
    gives it) and the initializers and ``Constant`` nodes of a subgraph."""
    floats = TensorProto.FLOAT

    def constant(name: str, array: np.ndarray) -> onnx.NodeProto:
        return oh.make_node("Constant", [], [name], value=nh.from_array(array, f"{name}_tensor"))

    branch = [constant("b_v", rand(4, 4)), *_site("b_", "b_v", "b_g", "x", "b_y")]
    then = oh.make_graph(
        branch, "then", [], [oh.make_tensor_value_info("b_y", floats, [2, 4])],
        initializer=[nh.from_array(rand(4, 1), "b_g")],
    )  # fmt: skip
    orelse = oh.make_graph(
        [oh.make_node("Identity", ["x"], ["e_y"])], "else", [],
        [oh.make_tensor_value_info("e_y", floats, [2, 4])],
    )  # fmt: skip
    nodes = [
        constant("v", rand(4, 4)),
        constant("g", rand(4, 1)),
        *_site("m_", "v", "g", "x", "y0"),
        oh.make_node("Identity", ["u"], ["u_alias"]),
        oh.make_node("Gemm", ["y0", "u_alias"], ["y1"]),
        oh.make_node("Transpose", ["t"], ["t_t"]),
        oh.make_node("Gemm", ["y1", "t_t"], ["y2"]),
        oh.make_node("If", ["c"], ["y"], then_branch=then, else_branch=orelse),
    ]
    graph = oh.make_graph(
        nodes, "main",
        [oh.make_tensor_value_info("x", floats, [2, 4]),
         oh.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [oh.make_tensor_value_info("y", floats, [2, 4]),
         oh.make_tensor_value_info("y2", floats, [2, 4])],
        initializer=[nh.from_array(rand(4, 4), "u"), nh.from_array(rand(4, 4), "t")],
    )  # fmt: skip
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


def test_a_model_proto_is_never_changed() -> None:
    model = _every_kind_of_constant()
    given = model.SerializeToString()
    report = inspect_onnx(model)
    assert [s.status for s in report.sites] == ["foldable", "foldable"]
    assert model.SerializeToString() == given
    _, report = fold_onnx(model)
    assert (report.folded, report.cones_folded) == (2, 2)
    assert model.SerializeToString() == given


def test_a_verified_fold_inside_a_branch_notes_that_a_branch_not_taken_is_not_compared(
    tmp_path: Path,
) -> None:
    """A fold inside both branches of an If was "equivalent" on one synthesized coin flip,
    which ran one branch (t310): the check says which bodies hold folded weights, compared
    only where the inputs run them; a fold in the main graph alone says nothing of it."""
    path, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    onnx.save(_every_kind_of_constant(), path)
    _, report = fold_onnx(path, out, verify=CheckOptions(runs=1, warmup=0))
    note = (
        "weights folded that only subgraph then read: compared only where the inputs run them "
        "(an If's branch they do not take is not); give --inputs with values that take each"
    )
    assert report.check and report.check.notes[-1] == note
    # the weight folded in the main graph, read only in the branch (t311)
    floats = TensorProto.FLOAT
    then = oh.make_graph(
        [oh.make_node("Gemm", ["x", "w"], ["t_y"], transB=1)], "then", [],
        [oh.make_tensor_value_info("t_y", floats, [2, 3])],
    )  # fmt: skip
    orelse = oh.make_graph(
        [oh.make_node("Neg", ["x"], ["n_x"]), oh.make_node("Gemm", ["n_x", "u"], ["e_y"])],
        "else", [], [oh.make_tensor_value_info("e_y", floats, [2, 3])],
    )  # fmt: skip
    graph = oh.make_graph(
        [*_site("", "v", "g", "x", "unused")[:3],
         oh.make_node("If", ["c"], ["y"], then_branch=then, else_branch=orelse)],
        "main",
        [oh.make_tensor_value_info("x", floats, [2, 4]),
         oh.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [oh.make_tensor_value_info("y", floats, [2, 3])],
        initializer=[nh.from_array(rand(3, 4), "v"), nh.from_array(rand(3, 1), "g"),
                     nh.from_array(rand(4, 3), "u")],
    )  # fmt: skip
    onnx.save(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]), path)
    _, report = fold_onnx(path, out, verify=CheckOptions(runs=1, warmup=0))
    assert report.folded == 1 and report.sites[0].graph == "main"
    assert report.check and report.check.notes[-1] == note
    plain = weight_normed(tmp_path)
    _, report = fold_onnx(plain, tmp_path / "plain.onnx", verify=CheckOptions(runs=1, warmup=0))
    assert report.check and not any("subgraph" in note for note in report.check.notes)


def test_a_malformed_model_proto_is_one_invalid_model_error() -> None:
    """A ``ModelProto`` given in memory is checked as a file is: a ``Constant`` whose
    ``value`` is a float, not a tensor, was a bare TypeError from onnx-ir."""
    nodes = [
        oh.make_node("Constant", [], ["g"], value_float=2.0),
        *_site("", "v", "g", "x", "y"),
    ]
    graph = oh.make_graph(
        nodes,
        "m",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [nh.from_array(rand(3, 4), "v")],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)])
    assert fold_onnx(model)[1].folded == 1  # the well-formed model folds
    model.graph.node[0].ClearField("attribute")
    model.graph.node[0].attribute.append(oh.make_attribute("value", 2.0))
    for entry in (fold_onnx, inspect_onnx):
        with pytest.raises(InvalidModelError, match="the ModelProto: rejected by the ONNX checker"):
            entry(model)


def test_the_library_report_names_the_old_data_file_a_refold_removed(tmp_path: Path) -> None:
    """``fold_onnx`` onto an output it wrote before deletes that output's data file (wnpass's
    own): its report says so, as the command's does."""
    source = weight_normed(tmp_path, external=True)
    out, data = tmp_path / "o.onnx", tmp_path / "o.onnx.data"
    assert fold_onnx(source, out)[1].removed == []
    assert data.exists()
    assert fold_onnx(source, out)[1].removed == [str(data)]
    assert not data.exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"model": None},
            "model must be a path, an onnx.ModelProto or an onnx_ir.Model, not NoneType",
        ),
        (
            {"model": b"m.onnx"},
            "model must be a path, an onnx.ModelProto or an onnx_ir.Model, not bytes",
        ),
        ({"verify": {"rtol": 1e-4}}, "verify must be a CheckOptions or None, not dict"),
        ({"weight_norm_only": "no"}, "weight_norm_only must be True or False, not 'no'"),
        ({"in_place": 1}, "in_place must be True or False, not 1"),
        ({"external_data": "yes"}, "external_data must be True or False, not 'yes'"),
        ({"progress": 3}, "progress must be callable or None"),
    ],
)
def test_a_bad_argument_is_refused_naming_it(
    arguments: dict[str, object], message: str, tmp_path: Path
) -> None:
    """Each was a TypeError or AttributeError, or (a flag of "no") read as true."""
    from wnpass.errors import InvalidArgumentError

    path = weight_normed(tmp_path)
    given: dict[str, object] = {"model": path, **arguments}
    with pytest.raises(InvalidArgumentError) as caught:
        fold_onnx(**given)  # type: ignore[call-overload]
    assert str(caught.value) == message
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("name", ["trained.pt", "train.py", "folded", "m.onnx.bak"])
def test_an_output_named_as_another_kind_of_file_is_refused(name: str, tmp_path: Path) -> None:
    """``output="trained.pt"`` replaced a checkpoint of that name with an ONNX model (t105):
    an ONNX output's name ends with .onnx (any case), and nothing is written otherwise."""
    from wnpass.errors import UsageError

    path = weight_normed(tmp_path)
    (tmp_path / name).write_bytes(b"kept")
    with pytest.raises(UsageError) as caught:
        fold_onnx(path, tmp_path / name)
    assert (
        str(caught.value) == f"output {tmp_path / name}: an ONNX output's name must end with .onnx"
    )
    assert (tmp_path / name).read_bytes() == b"kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, name])
    fold_onnx(path, tmp_path / "f.ONNX")  # any case
    assert (tmp_path / "f.ONNX").is_file()


CAST_WEIGHT = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[N, 64] x) => (float[N, 64] y) {
        w = Cast <to = 1> (w16)
        y = MatMul(x, w)
    }
"""


def test_weights_a_fold_makes_larger_go_to_a_data_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether weights go outside was decided by the input's size, before the fold: a float16
    model cast to float32 by its graph came out as one file past what protobuf can read (here
    the limit is lowered to a few KiB: 8 KiB of float16 weights become 16 KiB)."""
    from wnpass.onnx import io

    monkeypatch.setattr(io, "_INLINE_LIMIT", 12_000)
    path = tmp_path / "m.onnx"
    onnx.save(onnx_model(CAST_WEIGHT, w16=rand(64, 64).astype(np.float16)), path)
    _, report = fold_onnx(path)
    assert report.cones_folded == 1
    out = tmp_path / "m.folded.onnx"
    assert report.data_files == [str(tmp_path / "m.folded.onnx.data")]
    (weight,) = onnx.load(out, load_external_data=False).graph.initializer
    assert weight.data_location == TensorProto.EXTERNAL and weight.data_type == TensorProto.FLOAT


def test_a_model_too_large_for_one_file_is_refused_where_weights_must_stay_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With external_data=False the file was written past 2 GiB, exit 0, and nothing could load
    it (ONNX Runtime: "Protobuf parsing failed"); nothing is published now."""
    from wnpass.errors import OutputError
    from wnpass.onnx import io

    monkeypatch.setattr(io, "PROTOBUF_LIMIT", 12_000)
    path = tmp_path / "m.onnx"
    onnx.save(onnx_model(CAST_WEIGHT, w16=rand(64, 64).astype(np.float16)), path)
    with pytest.raises(OutputError, match=r"m\.folded\.onnx: would be tensors of \d+ bytes"):
        fold_onnx(path, external_data=False)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.parametrize("call", [fold_onnx, inspect_onnx])
def test_a_model_proto_whose_external_data_is_not_loaded_is_refused(
    call: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its locations were read against the working directory: another folder's weights.bin was
    folded without a word, and a missing one was a FileNotFoundError."""
    (tmp_path / "a").mkdir()
    path = weight_normed(tmp_path / "a", external=True)
    proto = onnx.load(path, load_external_data=False)
    decoy = tmp_path / "cwd"
    decoy.mkdir()
    weights = path.parent / "weights.bin"
    (decoy / "weights.bin").write_bytes(bytes(weights.stat().st_size))  # zeros, same size
    monkeypatch.chdir(decoy)
    with pytest.raises(InvalidModelError, match="is in an external data file not loaded"):
        call(proto)
    import onnx_ir as ir  # the same, deserialized: its tensors know no folder (t41)

    with pytest.raises(InvalidModelError, match="in an external data file with no folder"):
        call(ir.serde.deserialize_model(proto))
    assert call(onnx.load(path)) is not None  # loaded with its data: read as usual
    assert call(ir.load(path)) is not None


def test_a_data_file_changed_while_the_fold_is_checked_is_a_change_not_a_failed_fold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written to while --verify ran, the input made the check fail: "the folded model failed
    the check", exit 1, where the fold was right and the input changed (t213)."""
    import wnpass.verify.check as checking

    path = weight_normed(tmp_path, external=True)
    check, data = checking.check, tmp_path / "weights.bin"

    def written_to_first(*args: Any, **kwargs: Any) -> Any:
        with open(data, "r+b") as stream:
            first = stream.read(4)
            stream.seek(0)
            stream.write(bytes(b ^ 0xFF for b in first))
        return check(*args, **kwargs)

    monkeypatch.setattr(checking, "check", written_to_first)
    with pytest.raises(InvalidModelError, match=r"weights\.bin: changed while it was read"):
        fold_onnx(path, tmp_path / "out.onnx", verify=CheckOptions(runs=1, warmup=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "weights.bin"]


def test_a_data_file_cut_short_while_folding_is_a_change_not_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Truncated after the plan was checked, its tensors were mapped short: "internal error:
    ValueError: buffer is smaller than requested size", exit 3."""
    import wnpass.onnx.api as api

    path = weight_normed(tmp_path, external=True)
    fold, data = api._fold, tmp_path / "weights.bin"

    def truncated_first(*args: Any) -> Any:
        os.truncate(data, data.stat().st_size // 2)
        return fold(*args)

    monkeypatch.setattr(api, "_fold", truncated_first)
    with pytest.raises(InvalidModelError, match=r"weights\.bin: changed while it was read"):
        fold_onnx(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "weights.bin"]


def test_a_verified_fold_is_held_to_the_precision_the_input_computes_at(tmp_path: Path) -> None:
    """A float16 model ONNX Runtime saved computes its last Gemm, and that Gemm's weight norm,
    in float32 between the Casts it inserts: held to float16's tolerance, as `check` holds it.
    `fold --verify` read the folded model's graph, whose weight is a float32 initializer
    now, and held the fold to float32's: a correct fold of an ORT-saved ConvNeXt was refused,
    exit 1 (t348). The check's precision is the input's."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 4] x) => (float[2, 3] y) {
            h = Cast <to = 10> (x)
            a = Abs (h)
            r = Sqrt (a)
            rw = Cast <to = 1> (r)
            v = Cast <to = 1> (v16)
            g = Cast <to = 1> (g16)
            n = ReduceL2 <axes = [1]> (v)
            d = Div (v, n)
            w = Mul (d, g)
            y = Gemm <transB = 1> (rw, w)
        }
    """
    halves = {"v16": rand(3, 4).astype(np.float16), "g16": rand(3, 1).astype(np.float16)}
    model = onnx_model(text, None, True, **halves)
    for node in model.graph.node:
        if node.op_type == "Cast" and node.output[0] in ("rw", "v", "g"):
            node.name = f"InsertedPrecisionFreeCast_{node.output[0]}"
    path, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    onnx.save(model, path)
    _, report = fold_onnx(path, out, verify=CheckOptions(runs=1, warmup=0))
    assert report.folded == 1 and report.check
    said = "y: computed by ONNX Runtime in float32 from float16 values"
    assert any(note.startswith(said) for note in report.check.notes), report.check.notes
