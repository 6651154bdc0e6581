"""The constant a value holds is the one onnx-ir gives, for every form a Constant takes; a
subgraph initializer that shadows an outer value is none."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto
from onnx import helper as oh
from onnx import numpy_helper as nh
from onnx.reference import ReferenceEvaluator

from tests.helpers import onnx_model, rand, run
from tests.onnx.helpers import ir3_model
from wnpass import fold_onnx, inspect_onnx
from wnpass.onnx.graphs import const_tensor, constant_initializers, graphs_of

TEXT = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[3] x) => (float[3] y) {
        t = Constant <value = float[3] {1.0, 2.0, 3.0}> ()
        f = Constant <value_float = 2.5> ()
        fs = Constant <value_floats = [1.5, 2.5]> ()
        i = Constant <value_int = 7> ()
        s = Constant <value_string = "word"> ()
        a = Add(x, t)
        b = Mul(a, w)
        y = Identity(b)
    }
"""


PROTO = onnx_model(TEXT, w=rand(3))


def _values() -> dict[str, ir.Value]:
    model = ir.serde.deserialize_model(PROTO)
    found = {"x": model.graph.inputs[0], "w": model.graph.initializers["w"]}
    for node in model.graph:
        found.update((out.name, out) for out in node.outputs if out.name)
    return found


@pytest.mark.parametrize("name", ["x", "w", "t", "f", "fs", "i", "s", "a", "b"])
def test_the_same_constant_as_onnx_ir(name: str) -> None:
    mine, theirs = _values()[name], _values()[name]
    expected = ir.convenience.get_const_tensor(theirs)
    got = const_tensor(mine)
    if expected is None:
        assert got is None
        return
    assert got is not None
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_reading_a_constant_leaves_the_proto_it_came_from_as_it_was() -> None:
    # onnx-ir reads the proto's tensors without copying them: renaming one renames the
    # caller's (the Constant's tensor is named unlike its output here)
    proto = onnx.ModelProto()
    proto.CopyFrom(PROTO)
    (constant,) = [node for node in proto.graph.node if node.output[0] == "t"]
    constant.attribute[0].t.name = "t_tensor"
    given = proto.SerializeToString()
    model = ir.serde.deserialize_model(proto)
    values = [v for node in model.graph for v in node.outputs]
    for value in [*values, *model.graph.initializers.values()]:
        const_tensor(value)
    assert proto.SerializeToString() == given


def test_a_malformed_constant_is_refused_as_onnx_ir_refuses_it() -> None:
    value = _values()["t"]
    node = value.producer()
    assert node is not None
    node.attributes["extra"] = ir.AttrInt64("extra", 1)
    with pytest.raises(ValueError, match="exactly one attribute"):
        ir.convenience.get_const_tensor(value)
    with pytest.raises(ValueError, match="exactly one attribute"):
        const_tensor(value)


def _shadowed(depth: int) -> onnx.ModelProto:
    """``y = If(c)``: the then-branch (nested ``depth`` Ifs deep) holds a weight-norm site and a
    cone (``Transpose``, Gemm's C) whose gain is its own initializer ``g`` (3 times the outer
    one), named like the main graph's ``g`` that the else-branch reads. The checker accepts it;
    runtimes differ on which ``g`` the then-branch reads."""
    floats = TensorProto.FLOAT
    v, g = rand(6, 4), rand(6, 1)

    def out(name: str) -> onnx.ValueInfoProto:
        return oh.make_tensor_value_info(name, floats, [2, 6])

    def reads_outer_g(prefix: str) -> onnx.GraphProto:
        nodes = [
            oh.make_node("Gemm", ["x", "v"], [f"{prefix}y0"], transB=1),
            oh.make_node("Transpose", ["g"], [f"{prefix}g"]),
            oh.make_node("Mul", [f"{prefix}y0", f"{prefix}g"], [f"{prefix}y"]),
        ]
        return oh.make_graph(nodes, f"{prefix}else", [], [out(f"{prefix}y")])

    site = [
        oh.make_node("ReduceL2", ["v"], ["t_n"], axes=[1]),
        oh.make_node("Div", ["v", "t_n"], ["t_d"]),
        oh.make_node("Mul", ["g", "t_d"], ["t_w"]),
        oh.make_node("Transpose", ["g"], ["t_b"]),
        oh.make_node("Gemm", ["x", "t_w", "t_b"], ["t_y"], transB=1),
    ]
    body = oh.make_graph(site, "then", [], [out("t_y")], initializer=[nh.from_array(g * 3, "g")])
    for level in range(depth - 1):  # the shadowing body inside more Ifs
        name = f"l{level}_"
        nested = oh.make_node("If", ["c"], [f"{name}y"], then_branch=body,
                              else_branch=reads_outer_g(f"{name}e_"))  # fmt: skip
        body = oh.make_graph([nested], f"{name}then", [], [out(f"{name}y")])
    graph = oh.make_graph(
        [oh.make_node("If", ["c"], ["y"], then_branch=body, else_branch=reads_outer_g("e_"))],
        "main",
        [oh.make_tensor_value_info("x", floats, [2, 4]),
         oh.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [out("y")],
        initializer=[nh.from_array(v, "v"), nh.from_array(g, "g")],
    )  # fmt: skip
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _inner_and_outer_g(model: ir.Model) -> tuple[ir.Value, ir.Value]:
    bodies = [graph for graph in graphs_of(model) if isinstance(graph, ir.Graph)][1:]
    (inner,) = [body.initializers["g"] for body in bodies if "g" in body.initializers]
    return inner, model.graph.initializers["g"]


@pytest.mark.parametrize("depth", [1, 3])
def test_a_subgraph_initializer_that_shadows_an_outer_value_is_no_constant(
    depth: int, caplog: pytest.LogCaptureFixture
) -> None:
    model = ir.serde.deserialize_model(_shadowed(depth))
    inner, outer = _inner_and_outer_g(model)
    with caplog.at_level(logging.WARNING, logger="wnpass.onnx.graphs"):
        assert const_tensor(inner) is None
        assert const_tensor(inner) is None
    assert const_tensor(outer) is not None
    (record,) = caplog.records  # named once
    assert "'g'" in record.getMessage() and "'then'" in record.getMessage()


@pytest.mark.parametrize("depth", [1, 3])
def test_nothing_computed_from_a_shadowing_initializer_is_folded(depth: int) -> None:
    model = _shadowed(depth)
    folded, report = fold_onnx(model)
    assert [s.status for s in report.sites] == ["declined"]
    assert (
        report.sites[0].reason
    ) == "g 'g' is not a constant (an initializer named like a value of an enclosing scope)"
    assert report.cones_folded == 0
    for c in (True, False):
        feeds = {"x": rand(2, 4), "c": np.array(c)}
        (expected,) = ReferenceEvaluator(model).run(None, feeds)
        (got,) = ReferenceEvaluator(folded).run(None, feeds)
        np.testing.assert_array_equal(got, expected)


def test_an_outer_initializer_a_body_shadows_stays_when_its_site_is_folded() -> None:
    """The main graph's ``g`` feeds a foldable site only; a body has its own ``g`` and reads
    ``g``. Removing the outer ``g`` once folded would make runtimes that read the outer value
    in the body (``onnx.reference``) read the body's own: the outer ``g`` stays."""
    floats = TensorProto.FLOAT
    v, g = rand(6, 4), rand(6, 1)
    then = oh.make_graph(
        [oh.make_node("Mul", ["x6", "g"], ["t_y"])],
        "then",
        [],
        [oh.make_tensor_value_info("t_y", floats, [6, 1])],
        initializer=[nh.from_array(g * 3, "g")],
    )
    orelse = oh.make_graph(
        [oh.make_node("Identity", ["x6"], ["e_y"])],
        "else",
        [],
        [oh.make_tensor_value_info("e_y", floats, [6, 1])],
    )
    nodes = [
        oh.make_node("ReduceL2", ["v"], ["n"], axes=[1]),
        oh.make_node("Div", ["v", "n"], ["d"]),
        oh.make_node("Mul", ["g", "d"], ["w"]),
        oh.make_node("Gemm", ["x", "w"], ["y"], transB=1),
        oh.make_node("If", ["c"], ["z"], then_branch=then, else_branch=orelse),
    ]
    graph = oh.make_graph(
        nodes,
        "main",
        [oh.make_tensor_value_info("x", floats, [2, 4]),
         oh.make_tensor_value_info("x6", floats, [6, 1]),
         oh.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [oh.make_tensor_value_info("y", floats, [2, 6]),
         oh.make_tensor_value_info("z", floats, [6, 1])],
        initializer=[nh.from_array(v, "v"), nh.from_array(g, "g")],
    )  # fmt: skip
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)])
    onnx.checker.check_model(model, full_check=True)
    folded, report = fold_onnx(model)
    assert report.folded == 1
    assert "g" in {i.name for i in folded.graph.initializer}
    feeds = {"x": rand(2, 4), "x6": rand(6, 1), "c": np.array(True)}
    (_, expected), (_, got) = (ReferenceEvaluator(m).run(None, feeds) for m in (model, folded))
    np.testing.assert_array_equal(got, expected)


def _outer_site_named_like_a_body_initializer() -> onnx.ModelProto:
    """A site whose weight ``w0`` a Gemm reads, and a body with an initializer ``w0`` that it
    reads too: onnx.reference reads the outer ``w0`` there."""
    floats = TensorProto.FLOAT
    then = oh.make_graph(
        [
            oh.make_node("Gemm", ["x", "w0"], ["t0"], transB=1),
            oh.make_node("Add", ["t0", "h"], ["ty"]),
        ],
        "then",
        [],
        [oh.make_tensor_value_info("ty", floats, [2, 4])],
        [nh.from_array(rand(4, 6) * 100, "w0")],
    )
    orelse = oh.make_graph(
        [oh.make_node("Identity", ["h"], ["ey"])],
        "else",
        [],
        [oh.make_tensor_value_info("ey", floats, [2, 4])],
    )
    nodes = [
        oh.make_node("ReduceL2", ["v"], ["n0"], axes=[1]),
        oh.make_node("Div", ["g", "n0"], ["s0"]),
        oh.make_node("Mul", ["v", "s0"], ["w0"]),
        oh.make_node("Gemm", ["x", "w0"], ["h"], transB=1),
        oh.make_node("If", ["c"], ["y"], then_branch=then, else_branch=orelse),
    ]
    graph = oh.make_graph(
        nodes,
        "main",
        [oh.make_tensor_value_info("x", floats, [2, 6]),
         oh.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [oh.make_tensor_value_info("y", floats, [2, 4])],
        [nh.from_array(rand(4, 6), "v"), nh.from_array(rand(4, 1), "g")],
    )  # fmt: skip
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)])
    onnx.checker.check_model(model, full_check=True)
    return model


def test_a_site_whose_weight_a_body_initializer_shadows_is_declined() -> None:
    """Folding would remove the outer ``w0``: onnx.reference would then read the body's."""
    model = _outer_site_named_like_a_body_initializer()
    folded, report = fold_onnx(model)
    ((status, reason),) = [(s.status, s.reason or "") for s in report.sites]
    assert status == "declined" and reason.startswith("'w0' is named like an initializer")
    assert [s.status for s in inspect_onnx(model).sites] == ["declined"]
    feeds = {"x": rand(2, 6), "c": np.array(True)}
    (expected,), (got,) = (ReferenceEvaluator(m).run(None, feeds) for m in (model, folded))
    np.testing.assert_array_equal(got, expected)


def test_one_models_shadowing_changes_nothing_in_another() -> None:
    """Which names are shadowed is a model's own: a model with shadowing bodies, still alive,
    kept a plain model's dead ``v`` (they share the name) in its fold."""
    alive = _shadowed(1)
    fold_onnx(alive)  # its bodies are walked and recorded
    plain = onnx_model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 4] x) => (float[2, 6] y) {
            n = ReduceL2 <axes = [1]> (v)
            d = Div(v, n)
            w = Mul(g, d)
            y = Gemm <transB = 1> (x, w)
        }
        """,
        v=rand(6, 4),
        g=rand(6, 1),
    )
    folded, report = fold_onnx(plain)
    assert report.folded == 1 and [i.name for i in folded.graph.initializer] == ["v.folded"]
    del alive


def test_a_body_site_over_an_outer_value_a_sibling_body_shadows_is_declined() -> None:
    """``t = Identity(v0)`` in the main graph; one body folds ``g * t / ||t||``, the other has
    its own initializer ``t`` and reads ``t``: folding removed the main graph's ``t``, and
    onnx.reference read the other body's 100s there."""
    floats = TensorProto.FLOAT
    then = oh.make_graph(
        [
            oh.make_node("ReduceL2", ["t"], ["n"], axes=[1]),
            oh.make_node("Div", ["t", "n"], ["d"]),
            oh.make_node("Mul", ["g", "d"], ["w"]),
            oh.make_node("Gemm", ["x", "w"], ["yt"], transB=1),
        ],
        "then",
        [],
        [oh.make_tensor_value_info("yt", floats, [2, 3])],
    )
    orelse = oh.make_graph(
        [oh.make_node("Gemm", ["x", "t"], ["ye"], transB=1)],
        "else",
        [],
        [oh.make_tensor_value_info("ye", floats, [2, 3])],
        [nh.from_array(np.full((3, 4), 100.0, np.float32), "t")],
    )
    graph = oh.make_graph(
        [oh.make_node("Identity", ["v0"], ["t"]),
         oh.make_node("If", ["c"], ["y"], then_branch=then, else_branch=orelse)],
        "main",
        [oh.make_tensor_value_info("x", floats, [2, 4]),
         oh.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [oh.make_tensor_value_info("y", floats, [2, 3])],
        [nh.from_array(rand(3, 4), "v0"), nh.from_array(rand(3, 1), "g")],
    )  # fmt: skip
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)])
    onnx.checker.check_model(model, full_check=True)
    folded, report = fold_onnx(model)
    assert [s.status for s in report.sites] == ["declined"]
    assert (report.sites[0].reason or "").startswith("'t' is named like an initializer")
    for c in (True, False):
        feeds = {"x": rand(2, 4), "c": np.array(c)}
        (expected,), (got,) = (ReferenceEvaluator(m).run(None, feeds) for m in (model, folded))
        np.testing.assert_array_equal(got, expected)


def test_an_ir3_models_inputs_are_listed_again_with_only_the_initializers_added() -> None:
    """In the block the initializers are no inputs; after it, the inputs are those the model
    had and each initializer added in the block, not one it held unlisted already (an
    ``ir.Model`` a caller built, which no checker saw)."""
    model = ir.serde.deserialize_model(
        ir3_model([oh.make_node("MatMul", ["x", "w"], ["y"])], {"w": rand(6, 6)})
    )
    unlisted = ir.Value(name="u", const_value=ir.tensor(rand(2)))
    model.graph.register_initializer(unlisted)
    with constant_initializers(model):
        assert [value.name for value in model.graph.inputs] == ["x"]
        model.graph.register_initializer(ir.Value(name="n", const_value=ir.tensor(rand(3))))
    assert [value.name for value in model.graph.inputs] == ["x", "w", "n"]
    assert model.graph.inputs[-1].shape == ir.Shape([3])


def _ort_disabled(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """ONNX Runtime's outputs with its graph optimizations off (where it gives a node's
    bodies the outer values the node reads, over a body's initializer of the name)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return list(session.run(None, feeds))


@pytest.mark.parametrize("form", ["cone", "site"])
def test_a_body_reading_an_outer_weight_another_body_shadows_is_declined(form: str) -> None:
    """``then`` has its own initializer ``v``; ``else`` reads the main graph's ``v`` (through
    a Transpose, or a weight-norm site). ONNX Runtime, optimizations off, gives the ``If``'s
    bodies the outer ``v`` while one of them reads it, so ``then`` computed with the outer
    ``v``; folded, ``else`` read ``v__1`` and ``then`` its own ``v`` (twice the values), and
    ``fold --verify`` (optimizations on) said equivalent (t126). Declined, said why."""
    floats = TensorProto.FLOAT
    then = oh.make_graph(
        [oh.make_node("Gemm", ["x", "v"], ["ty"], transB=1)],
        "then",
        [],
        [oh.make_tensor_value_info("ty", floats, [2, 4])],
        [nh.from_array(rand(4, 3) * 2, "v")],
    )
    if form == "cone":
        reads = [oh.make_node("Transpose", ["v"], ["w"])]
        weight = "w"
    else:
        reads = [
            oh.make_node("ReduceL2", ["v"], ["n"], axes=[1]),
            oh.make_node("Div", ["v", "n"], ["d"]),
            oh.make_node("Mul", ["g", "d"], ["wn"]),
            oh.make_node("Transpose", ["wn"], ["w"]),
        ]
        weight = "w"
    orelse = oh.make_graph(
        [*reads, oh.make_node("MatMul", ["x", weight], ["ey"])],
        "else",
        [],
        [oh.make_tensor_value_info("ey", floats, [2, 4])],
    )
    graph = oh.make_graph(
        [oh.make_node("If", ["c"], ["y"], then_branch=then, else_branch=orelse)],
        "main",
        [oh.make_tensor_value_info("x", floats, [2, 3]),
         oh.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [oh.make_tensor_value_info("y", floats, [2, 4])],
        [nh.from_array(rand(4, 3), "v"), nh.from_array(rand(4, 1) + 0.5, "g")],
    )  # fmt: skip
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)])
    onnx.checker.check_model(model, full_check=True)
    folded, report = fold_onnx(model)
    rows = [(row.status, row.reason) for row in report.sites]
    rows += [(row.status, row.reason) for row in report.cones]
    reasons = [reason or "" for status, reason in rows if status == "declined"]
    assert any("is read by a subgraph from an enclosing graph" in r for r in reasons)
    assert report.folded == 0 and report.cones_folded == 0
    feeds = {"x": rand(2, 3), "c": np.array(True)}  # (``else`` fails there: "Missing Input")
    (expected,), (got,) = (_ort_disabled(m, feeds) for m in (model, folded))
    assert got.tobytes() == expected.tobytes()
    for c in (True, False):
        feeds = {"x": rand(2, 3), "c": np.array(c)}
        (expected,), (got,) = (run(m, feeds) for m in (model, folded))
        assert got.tobytes() == expected.tobytes()
