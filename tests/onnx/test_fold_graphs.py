"""Folding across consumers, layout ops, shared weights, subgraphs and functions; and refusals."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from tests.helpers import assert_close, onnx_model, op_types, rand, run
from tests.onnx.helpers import (
    HEADER17,
    HEADER18,
    SHARED_V,
    assert_folds,
    ir3_linear,
    ir3_model,
)
from wnpass import fold_onnx, inspect_onnx

WN = "n = ReduceL2 <axes = {axes}, keepdims = 1> (v)\n d = Div(v, n)\n w = Mul(d, g)"


def wn(axes: list[int]) -> str:
    return WN.format(axes=str(axes))


def test_conv_and_names_from_the_parametrization_api() -> None:
    text = f"""
        {HEADER17}
        agraph (float[1, 4, 9] x) => (float[1, 6, 7] y) {{
            {wn([1, 2])}
            y = Conv(x, w)
        }}
    """
    v, g = rand(6, 4, 3), rand(6, 1, 1)
    names = {
        "v": "conv.parametrizations.weight.original1",
        "g": "conv.parametrizations.weight.original0",
    }
    model = onnx_model(text, names=names, v=v, g=g)
    folded, report = assert_folds(model, feeds={"x": rand(1, 4, 9)})
    assert [i.name for i in folded.graph.initializer] == ["conv.weight"]
    assert report.sites[0].consumers == ["Conv"] and report.sites[0].axes == [1, 2]


@pytest.mark.parametrize("dim", [0, 1])
def test_conv_transpose_either_axis_and_legacy_names(dim: int) -> None:
    """ConvTranspose weight [in, out, k]: PyTorch's dim=0 (per input channel) and the paper's 1."""
    axes = [1, 2] if dim == 0 else [0, 2]
    text = f"""
        {HEADER17}
        agraph (float[1, 4, 5] x) => (float[1, 3, 10] y) {{
            {wn(axes)}
            y = ConvTranspose <strides = [2]> (x, w)
        }}
    """
    g = rand(4, 1, 1) if dim == 0 else rand(1, 3, 1)
    names = {"v": "up.weight_v", "g": "up.weight_g"}
    model = onnx_model(text, names=names, v=rand(4, 3, 2), g=g)
    folded, _ = assert_folds(model, feeds={"x": rand(1, 4, 5)})
    assert [i.name for i in folded.graph.initializer] == ["up.weight"]


def test_wav2vec2_positional_conv_dim_2() -> None:
    """weight_norm(dim=2) on a grouped Conv1d: one g per kernel tap, g of shape [1, 1, k]."""
    text = f"""
        {HEADER17}
        agraph (float[1, 8, 12] x) => (float[1, 8, 13] y) {{
            {wn([0, 1])}
            y = Conv <group = 2, pads = [2, 2]> (x, w)
        }}
    """
    model = onnx_model(text, v=rand(8, 4, 4), g=rand(1, 1, 4))
    _, report = assert_folds(model, feeds={"x": rand(1, 8, 12)})
    assert report.sites[0].axes == [0, 1]


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_either_transposition(trans_b: int) -> None:
    v_shape, axes = ([3, 4], [1]) if trans_b else ([4, 3], [0])
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            {wn(axes)}
            y = Gemm <transB = {trans_b}> (x, w)
        }}
    """
    g_shape = [3, 1] if trans_b else [1, 3]
    model = onnx_model(text, v=rand(*v_shape), g=rand(*g_shape))
    _, report = assert_folds(model, feeds={"x": rand(2, 4)})
    assert report.sites[0].consumers == [f"Gemm(transB={trans_b})"]


def test_gather_embedding_rows() -> None:
    text = f"""
        {HEADER17}
        agraph (int64[5] ids) => (float[5, 4] y) {{
            {wn([1])}
            y = Gather(w, ids)
        }}
    """
    model = onnx_model(text, v=rand(10, 4), g=rand(10, 1))
    _, report = assert_folds(model, feeds={"ids": np.array([0, 3, 9, 3, 1])})
    assert report.sites[0].consumers == ["Gather"]


@pytest.mark.parametrize("layout", ["Transpose <perm = [1, 0]>", "Reshape", "Cast <to = 1>"])
def test_layout_op_between_product_and_consumer_is_folded_through(layout: str) -> None:
    shape = "wl = Reshape(w, shape)" if layout == "Reshape" else f"wl = {layout} (w)"
    perm_t = layout.startswith("Transpose")
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            {wn([1])}
            {shape}
            y = Gemm <transB = {0 if perm_t else 1}> (x, wl)
        }}
    """
    extra: dict[str, Any] = {"shape": np.array([3, 4], np.int64)} if layout == "Reshape" else {}
    model = onnx_model(text, v=rand(3, 4), g=rand(3, 1), **extra)
    folded, report = assert_folds(model, feeds={"x": rand(2, 4)})
    assert op_types(folded) == ["Gemm"]
    assert report.sites[0].form.endswith("->" + layout.split()[0])
    # the row's shape is v's, the shape its axes are of, in the fold's report and inspect's
    (done,), (seen,) = report.sites, inspect_onnx(model).sites
    assert (done.shape, done.axes) == (seen.shape, seen.axes) == ([3, 4], [1])


def test_shared_weight_feeds_several_consumers_one_initializer() -> None:
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y, float[2, 3] z) {{
            {wn([1])}
            y = Gemm <transB = 1> (x, w)
            t = Transpose <perm = [1, 0]> (w)
            z = MatMul(x, t)
        }}
    """
    model = onnx_model(text, v=rand(3, 4), g=rand(3, 1))
    narrow, report = fold_onnx(model, weight_norm_only=True)
    assert isinstance(narrow, onnx.ModelProto)
    assert op_types(narrow) == ["Gemm", "Transpose", "MatMul"]
    assert len(narrow.graph.initializer) == 1 and report.cones == []
    assert report.sites[0].consumers == ["Gemm(transB=1)", "MatMul"]
    # by default the transposed copy that MatMul reads becomes an initializer of its own
    folded, report = assert_folds(model, feeds={"x": rand(2, 4)})
    assert op_types(folded) == ["Gemm", "MatMul"]
    assert [i.name for i in folded.graph.initializer] == ["v.folded", "v.folded__1"]
    assert [(c.name, c.ops, c.sources) for c in report.cones] == [
        ("v.folded__1", ["Transpose"], ["v.folded"])
    ]


def test_v_shared_by_two_sites_gets_two_unique_names() -> None:
    text = SHARED_V
    model = onnx_model(text, a_v=rand(3, 4), a_g=rand(3, 1), b=rand(3, 1))
    folded, _ = assert_folds(model, sites=2, feeds={"x": rand(2, 4)})
    assert sorted(i.name for i in folded.graph.initializer) == ["a", "a__1"]


def _if_model(then_body: str, then_out: str) -> onnx.ModelProto:
    then_branch = onnx.parser.parse_graph(f"then_g () => ({then_out}) {{ {then_body} }}")
    else_branch = onnx.parser.parse_graph(
        "else_g () => (float[2, 3] y) { y = MatMul(x, b) }"
        if then_out.startswith("float[2")
        else "else_g () => (float[3, 4] w) { w = Identity(b) }"
    )
    if then_out.startswith("float[2"):
        main_text = "main (bool c, float[2, 4] x) => (float[2, 3] y) { y = If(c) }"
    else:
        main_text = (
            "main (bool c, float[2, 4] x) => (float[2, 3] y) "
            "{ w = If(c) \n y = Gemm <transB = 1> (x, w) }"
        )
    main = onnx.parser.parse_graph(main_text)
    main.node[0].attribute.extend(
        [
            onnx.helper.make_attribute("then_branch", then_branch),
            onnx.helper.make_attribute("else_branch", else_branch),
        ]
    )
    b = rand(4, 3) if then_out.startswith("float[2") else rand(3, 4)
    for name, array in {"v": rand(3, 4), "g": rand(3, 1), "b": b}.items():
        main.initializer.append(onnx.numpy_helper.from_array(array, name))
    opsets = [onnx.helper.make_opsetid("", 17)]
    model = onnx.helper.make_model(main, opset_imports=opsets, ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def test_site_inside_an_if_branch() -> None:
    """The site and its consumer live in a branch; v and g are outer-scope initializers."""
    body = wn([1]).replace("\n", " ") + " y = Gemm <transB = 1> (x, w)"
    model = _if_model(body, "float[2, 3] y")
    for cond in (True, False):
        folded, report = assert_folds(model, feeds={"c": np.array(cond), "x": rand(2, 4)})
    assert report.sites[0].graph == "subgraph then_g"
    branch = folded.graph.node[0].attribute[0].g
    assert [n.op_type for n in branch.node] == ["Gemm"]
    # made of the main graph's initializers: one of the main graph, which the branch reads
    assert [i.name for i in branch.initializer] == []
    assert [i.name for i in folded.graph.initializer] == ["b", "v.folded"]


def test_one_site_in_both_branches_is_one_tensor() -> None:
    """t158: the same ``g * v / ||v||`` of the main graph's v and g in both branches of an
    If was folded into each branch, two tensors of the same bytes (a computed weight, one of
    the main graph). It is one initializer of the main graph, read by both, both rows named
    after it; a site of a branch's own initializer stays in the branch."""
    body = wn([1]).replace("\n", " ") + " y = Gemm <transB = 1> (x, w)"
    model = _if_model(body, "float[2, 3] y")
    model.graph.node[0].attribute[1].g.CopyFrom(
        onnx.parser.parse_graph(f"else_g () => (float[2, 3] y) {{ {body} }}")
    )
    for cond in (True, False):
        folded, report = assert_folds(model, sites=2, feeds={"c": np.array(cond), "x": rand(2, 4)})
    assert [site.name for site in report.sites] == ["v.folded", "v.folded"]
    assert [i.name for i in folded.graph.initializer] == ["b", "v.folded"]
    assert all(not branch.g.initializer for branch in folded.graph.node[0].attribute)
    assert [site.name for site in inspect_onnx(model).sites] == ["v.folded", "v.folded"]
    own = body.replace("(v)", "(u)").replace("(v, n)", "(u, n)")  # the branch's own v, u
    else_branch = onnx.parser.parse_graph(f"else_g () => (float[2, 3] y) {{ {own} }}")
    else_branch.initializer.append(onnx.numpy_helper.from_array(rand(3, 4), "u"))
    model.graph.node[0].attribute[1].g.CopyFrom(else_branch)
    folded, _ = assert_folds(model, sites=2, feeds={"c": np.array(False), "x": rand(2, 4)})
    assert [i.name for i in folded.graph.node[0].attribute[1].g.initializer] == ["u.folded"]


def test_one_site_in_both_branches_takes_the_name_both_values_had() -> None:
    """t166: the same site in both branches, each branch's value named conv.weight (the
    parameter v stands for): the first fold could not take the name while the other branch
    had it, and the one tensor was conv.weight__1. Once the second branch's value is gone
    too, the weight takes it, in the fold and in inspect alike."""
    body = wn([1]).replace("\n", " ") + " y = Gemm <transB = 1> (x, w)"
    model = _if_model(body, "float[2, 3] y")
    model.graph.node[0].attribute[1].g.CopyFrom(
        onnx.parser.parse_graph(f"else_g () => (float[2, 3] y) {{ {body} }}")
    )
    _rename_values(model, {"v": "conv.weight_v", "g": "conv.weight_g", "w": "conv.weight"})
    onnx.checker.check_model(model, full_check=True)
    for cond in (True, False):
        folded, report = assert_folds(model, sites=2, feeds={"c": np.array(cond), "x": rand(2, 4)})
    assert [site.name for site in report.sites] == ["conv.weight", "conv.weight"]
    assert [i.name for i in folded.graph.initializer] == ["b", "conv.weight"]
    assert [site.name for site in inspect_onnx(model).sites] == ["conv.weight", "conv.weight"]


def _rename_values(model: onnx.ModelProto, renamed: dict[str, str]) -> None:
    """Rename values in the main graph and the If's branches (``model.graph.node[0]``)."""
    graphs = [model.graph, *(a.g for a in model.graph.node[0].attribute if a.g.name)]
    for graph in graphs:
        for tensor in graph.initializer:
            tensor.name = renamed.get(tensor.name, tensor.name)
        for node in graph.node:
            node.input[:] = [renamed.get(name, name) for name in node.input]
            node.output[:] = [renamed.get(name, name) for name in node.output]


@pytest.mark.parametrize("other", ["another gain", "a gain fed at run time"])
def test_a_weight_folded_into_the_main_graph_takes_no_name_a_branch_keeps(other: str) -> None:
    """t160: both branches compute a value named ``w``; the fold of one into an
    initializer of the main graph freed that name and took it, while the other branch's
    value still had it (folded after it with another gain: "already registered", exit 3;
    declined, a gain fed at run time: two values of one name, an invalid model)."""
    body = wn([1]).replace("\n", " ") + " y = Gemm <transB = 1> (x, w)"
    gain = "g2" if other == "another gain" else "gin"
    model = _if_model(body, "float[2, 3] y")
    else_body = body.replace("Mul(d, g)", f"Mul(d, {gain})")
    model.graph.node[0].attribute[1].g.CopyFrom(
        onnx.parser.parse_graph(f"else_g () => (float[2, 3] y) {{ {else_body} }}")
    )
    if gain == "g2":
        model.graph.initializer.append(onnx.numpy_helper.from_array(rand(3, 1), "g2"))
    else:
        model.graph.input.append(onnx.helper.make_tensor_value_info("gin", 1, [3, 1]))
    # the legacy names: v's parameter is conv.weight, the name each branch's value has
    _rename_values(model, {"v": "conv.weight_v", "w": "conv.weight"})
    onnx.checker.check_model(model, full_check=True)
    folded, report = fold_onnx(model)
    onnx.checker.check_model(folded, full_check=True)  # one value of each name
    names = [site.name for site in report.sites]
    assert len(set(names)) == 2 and [s.name for s in inspect_onnx(model).sites] == names
    feeds = {"x": rand(2, 4)} | ({"gin": rand(3, 1)} if gain == "gin" else {})
    for cond in (True, False):
        feeds["c"] = np.array(cond)
        assert_close(run(folded, feeds), run(model, feeds))


def test_a_weight_folded_in_its_own_scope_keeps_the_parameters_name() -> None:
    """t161: a name another value has anywhere was kept from every folded weight: each
    branch's own conv.weight, folded into its branch, and a main graph's beside a local
    function's value of that name became conv.weight__1, __2. Only a weight the fold moves
    into the main graph from a body keeps off a name a sibling body's value has."""
    make, info = onnx.helper.make_node, onnx.helper.make_tensor_value_info
    v, g, w = "conv.weight_v", "conv.weight_g", "conv.weight"

    def site(prefix: str) -> list[onnx.NodeProto]:
        return [
            make("ReduceL2", [v], [f"{prefix}n"], axes=[1], keepdims=1),
            make("Div", [v, f"{prefix}n"], [f"{prefix}d"]),
            make("Mul", [f"{prefix}d", g], [w]),
            make("Gemm", ["x", w], [f"{prefix}y"], transB=1),
        ]

    def own() -> list[onnx.TensorProto]:
        return [
            onnx.numpy_helper.from_array(rand(3, 4), v),
            onnx.numpy_helper.from_array(rand(3, 1), g),
        ]

    branches = [
        onnx.helper.make_graph(site(p), f"{p}_g", [], [info(f"{p}y", 1, [2, 3])], initializer=own())
        for p in ("t", "e")
    ]
    graph = onnx.helper.make_graph(
        [make("If", ["c"], ["y"], then_branch=branches[0], else_branch=branches[1])],
        "main",
        [info("c", onnx.TensorProto.BOOL, []), info("x", 1, [2, 4])],
        [info("y", 1, [2, 3])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    folded, report = fold_onnx(model)
    onnx.checker.check_model(folded, full_check=True)
    assert [site.name for site in report.sites] == [w, w]
    assert [site.name for site in inspect_onnx(model).sites] == [w, w]


def _folded_valid(graph: onnx.GraphProto) -> tuple[onnx.ModelProto, onnx.ModelProto, Any]:
    """The model of ``graph`` (opset 17, IR 8), valid, and its fold, valid too, with the
    fold's report."""
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    folded, report = fold_onnx(model)
    assert isinstance(folded, onnx.ModelProto)
    onnx.checker.check_model(folded, full_check=True)
    return model, folded, report


def _branches_defining(name: str) -> tuple[onnx.GraphProto, onnx.GraphProto]:
    """An If's branches of x (float[2, 4]): the then-branch defines a value ``name`` of its
    own (``Relu(x)``), the else-branch none."""
    make, info = onnx.helper.make_node, onnx.helper.make_tensor_value_info
    then_g = onnx.helper.make_graph(
        [make("Relu", ["x"], [name]), make("Identity", [name], ["ty"])],
        "then",
        [],
        [info("ty", 1, [2, 4])],
    )
    else_g = onnx.helper.make_graph(
        [make("Neg", ["x"], ["ey"])], "else", [], [info("ey", 1, [2, 4])]
    )
    return then_g, else_g


def test_a_weight_takes_no_name_a_body_nested_in_its_graph_has() -> None:
    """t163: a main graph's site whose value is named conv.weight, after an If whose branch
    defines a conv.weight of its own (valid: the main graph's is not yet in scope there),
    freed the name and took it: the branch then redefined a name of its enclosing graph, an
    invalid model (exit 3; in a branch or a function, written with exit 0)."""
    make, info = onnx.helper.make_node, onnx.helper.make_tensor_value_info
    then_g, else_g = _branches_defining("conv.weight")
    nodes = [
        make("If", ["c"], ["z"], then_branch=then_g, else_branch=else_g),
        make("ReduceL2", ["conv.weight_v"], ["n"], axes=[1], keepdims=1),
        make("Div", ["conv.weight_v", "n"], ["d"]),
        make("Mul", ["d", "conv.weight_g"], ["conv.weight"]),
        make("Gemm", ["z", "conv.weight"], ["y"], transB=1),
    ]
    graph = onnx.helper.make_graph(
        nodes,
        "main",
        [info("c", onnx.TensorProto.BOOL, []), info("x", 1, [2, 4])],
        [info("y", 1, [2, 3])],
        initializer=[
            onnx.numpy_helper.from_array(rand(3, 4), "conv.weight_v"),
            onnx.numpy_helper.from_array(rand(3, 1), "conv.weight_g"),
        ],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    folded, report = fold_onnx(model)
    onnx.checker.check_model(folded, full_check=True)
    assert [site.name for site in report.sites] == ["conv.weight__1"]
    assert [site.name for site in inspect_onnx(model).sites] == ["conv.weight__1"]
    for cond in (True, False):
        feeds = {"c": np.array(cond), "x": rand(2, 4)}
        assert_close(run(folded, feeds), run(model, feeds))


def test_a_weight_takes_no_name_a_sibling_fold_gave_up_where_a_value_in_reach_has_it() -> None:
    """t165: one branch folds its value conv.weight under another parameter's name and frees
    conv.weight; the other branch holds a conv.weight of its own, and its site's weight,
    preferred name conv.weight, took it: two values of one name in that branch, a model the
    checker and ONNX Runtime refuse, written with exit 0."""
    make, info = onnx.helper.make_node, onnx.helper.make_tensor_value_info

    def const(name: str, shape: tuple[int, ...]) -> onnx.NodeProto:
        return make("Constant", [], [name], value=onnx.numpy_helper.from_array(rand(*shape)))

    def site(v: str, g: str, target: str) -> list[onnx.NodeProto]:
        return [
            const(v, (3, 4)),
            const(g, (3, 1)),
            make("ReduceL2", [v], [f"{v}_n"], axes=[1], keepdims=1),
            make("Div", [v, f"{v}_n"], [f"{v}_d"]),
            make("Mul", [f"{v}_d", g], [target]),
        ]

    own = [make("Relu", ["x"], ["conv.weight"])]
    own += site("conv.weight_v", "conv.weight_g", "t")
    own.append(make("Gemm", ["conv.weight", "t"], ["ey"], transB=1))
    other = site("other.weight_v", "other.weight_g", "conv.weight")
    other.append(make("Gemm", ["x", "conv.weight"], ["ty"], transB=1))
    branches = {
        "then_branch": onnx.helper.make_graph(own, "then", [], [info("ey", 1, [2, 3])]),
        "else_branch": onnx.helper.make_graph(other, "else", [], [info("ty", 1, [2, 3])]),
    }
    graph = onnx.helper.make_graph(
        [make("If", ["c"], ["y"], **branches)],
        "main",
        [info("c", onnx.TensorProto.BOOL, []), info("x", 1, [2, 4])],
        [info("y", 1, [2, 3])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    folded, report = fold_onnx(model)
    onnx.checker.check_model(folded, full_check=True)
    names = [site.name for site in report.sites]
    assert "conv.weight" not in names and names == [s.name for s in inspect_onnx(model).sites]
    for cond in (True, False):
        feeds = {"c": np.array(cond), "x": rand(2, 4)}
        assert_close(run(folded, feeds), run(model, feeds))


def test_an_alias_keeps_its_initializers_name_where_a_body_has_the_alias_name() -> None:
    """t166: ``Wt = Identity(W)`` after an If whose branch defines a ``Wt`` of its own (valid:
    the main graph's is not yet in scope there). The fold renamed the initializer ``W`` to
    ``Wt``, which the branch then redefined: an invalid model, exit 3. The MatMul reads
    ``W``."""
    make, info = onnx.helper.make_node, onnx.helper.make_tensor_value_info
    then_g, else_g = _branches_defining("Wt")
    graph = onnx.helper.make_graph(
        [
            make("If", ["c"], ["z"], then_branch=then_g, else_branch=else_g),
            make("Identity", ["W"], ["Wt"]),
            make("MatMul", ["z", "Wt"], ["y"]),
        ],
        "main",
        [info("c", onnx.TensorProto.BOOL, []), info("x", 1, [2, 4])],
        [info("y", 1, [2, 3])],
        initializer=[onnx.numpy_helper.from_array(rand(4, 3), "W")],
    )
    model, folded, report = _folded_valid(graph)
    assert [i.name for i in folded.graph.initializer] == ["W"]
    assert [c.name for c in report.cones] == [c.name for c in inspect_onnx(model).cones] == ["W"]
    for cond in (True, False):
        feeds = {"c": np.array(cond), "x": rand(2, 4)}
        assert_close(run(folded, feeds), run(model, feeds))


def _legacy_site(v: str, g: str, target: str, *, local: bool) -> list[onnx.NodeProto]:
    """A weight-norm site of the parameter ``v`` stands for, ``target = g * v / ||v||``; with
    ``local``, its v and g are Constant nodes of its own graph."""
    make = onnx.helper.make_node
    constants = [
        make("Constant", [], [name], value=onnx.numpy_helper.from_array(rand(*shape)))
        for name, shape in ((v, (3, 4)), (g, (3, 1)))
    ]
    return [
        *(constants if local else []),
        make("ReduceL2", [v], [f"{v}_n"], axes=[1], keepdims=1),
        make("Div", [v, f"{v}_n"], [f"{v}_d"]),
        make("Mul", [f"{v}_d", g], [target]),
    ]


def test_a_name_a_fold_freed_is_free_to_the_weights_after_it_as_inspect_says() -> None:
    """t166: the main graph's site of a.weight computes a value named b.weight, and a branch's
    own site is b.weight's. The fold counted the branch's names after the first fold freed
    b.weight and named it b.weight, where inspect, which counts on the model as given, said
    b.weight__1; and a second main-graph site beside it became b.weight__1 although the
    first fold had removed the only b.weight."""
    make, info = onnx.helper.make_node, onnx.helper.make_tensor_value_info
    then_g = onnx.helper.make_graph(
        [
            *_legacy_site("b.weight_v", "b.weight_g", "bw", local=True),
            make("Gemm", ["x", "bw"], ["ty"], transB=1),
        ],
        "then",
        [],
        [info("ty", 1, [2, 3])],
    )
    else_g = onnx.helper.make_graph(
        [make("Gemm", ["x", "c.weight"], ["ey"], transB=1)], "else", [], [info("ey", 1, [2, 3])]
    )
    graph = onnx.helper.make_graph(
        [
            *_legacy_site("a.weight_v", "a.weight_g", "b.weight", local=False),
            *_legacy_site("c.weight_v", "c.weight_g", "c.weight", local=False),
            make("Gemm", ["x", "b.weight"], ["h"], transB=1),
            make("If", ["c"], ["z"], then_branch=then_g, else_branch=else_g),
            make("Add", ["h", "z"], ["y"]),
        ],
        "main",
        [info("c", onnx.TensorProto.BOOL, []), info("x", 1, [2, 4])],
        [info("y", 1, [2, 3])],
        initializer=[
            onnx.numpy_helper.from_array(rand(*shape), name)
            for name, shape in [
                ("a.weight_v", (3, 4)),
                ("a.weight_g", (3, 1)),
                ("c.weight_v", (3, 4)),
                ("c.weight_g", (3, 1)),
            ]
        ],
    )
    model, folded, report = _folded_valid(graph)
    names = sorted(site.name for site in report.sites)
    assert names == ["a.weight", "b.weight", "c.weight"]
    assert sorted(site.name for site in inspect_onnx(model).sites) == names
    for cond in (True, False):
        feeds = {"c": np.array(cond), "x": rand(2, 4)}
        assert_close(run(folded, feeds), run(model, feeds))


def test_folded_weight_that_is_a_branch_output_keeps_the_output_name() -> None:
    model = _if_model(wn([1]).replace("\n", " "), "float[3, 4] w")
    for cond in (True, False):
        folded, _ = assert_folds(model, feeds={"c": np.array(cond), "x": rand(2, 4)})
    branch = folded.graph.node[0].attribute[0].g
    assert [n.op_type for n in branch.node] == ["Identity"]
    assert [o.name for o in branch.output] == ["w"]


def test_site_inside_a_local_function_becomes_a_constant() -> None:
    text = f"""
        <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            y = local.WnLinear(x)
        }}
        <domain: "local", opset_import: ["" : 17]>
        WnLinear (x) => (y) {{
            v = Constant <value = float[3, 4] {{{", ".join(map(str, rand(3, 4).ravel()))}}}> ()
            g = Constant <value = float[3, 1] {{1.5, 0.5, 2.0}}> ()
            {wn([1])}
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text)
    folded, report = assert_folds(model, feeds={"x": rand(2, 4)})
    assert [n.op_type for n in folded.functions[0].node] == ["Constant", "Gemm"]
    assert report.sites[0].graph == "function local::WnLinear"


def test_a_gain_a_function_takes_as_input_is_declined_as_a_function_input() -> None:
    """The reason named it "a graph input": the graph's inputs are another list. (Called with
    an initializer, the function is inlined and the site folded: here the caller's own input.)"""
    text = f"""
        <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
        agraph (float[2, 4] x, float[3, 1] g) => (float[2, 3] y) {{
            y = local.WnLinear(x, g)
        }}
        <domain: "local", opset_import: ["" : 17]>
        WnLinear (x, g) => (y) {{
            v = Constant <value = float[3, 4] {{{", ".join(map(str, rand(3, 4).ravel()))}}}> ()
            {wn([1])}
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text)
    _, report = fold_onnx(model)
    assert (report.folded, report.declined, report.inlined) == (0, 1, [])
    assert report.sites[0].reason == "g 'g' is a function input"


@pytest.mark.parametrize("reads", ["x", "vb"])
def test_a_body_input_is_not_fed_at_run_time_an_outer_graph_input_is(reads: str) -> None:
    """A Loop carries the initializer ``v`` into its body as ``vb``: the site declined there
    said ``fed_by`` "vb", a name of no input of the file, and an export called the file
    deployable (t79). A body that normalizes the main graph's input ``x`` itself has it."""
    text = f"""
        {HEADER17}
        agraph (float[3, 4] x) => (float[2, 2, 3] ys) {{
            vf, ys = Loop (m, , v) <
                body = b (int64 i, bool ci, float[3, 4] vb) => (bool co, float[3, 4] vo, float[2, 3] yi) {{
                    co = Identity(ci)
                    vo = Identity(vb)
                    n = ReduceL2 <axes = [1]> ({reads})
                    d = Div({reads}, n)
                    w = Mul(d, g)
                    yi = Gemm <transB = 1> (a, w)
                }}
            >
        }}
    """  # noqa: E501
    model = onnx_model(text, v=rand(3, 4), g=rand(3, 1), a=rand(2, 4), m=np.array(2, np.int64))
    _, report = fold_onnx(model)
    (site,) = report.sites
    assert site.status == "declined" and site.fed_by == ("x" if reads == "x" else None)
    assert site.shape == [3, 4]  # its declared shape: the table said ? (t155)


def test_a_v_a_function_takes_as_input_is_not_fed_at_run_time() -> None:
    """A function's input is what its caller passes, here an initializer: no weight given at
    run time. The function is inlined and the site folded (tests/onnx/test_functions.py)."""
    text = f"""
        <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            y = local.WnLinear(x, v)
        }}
        <domain: "local", opset_import: ["" : 17]>
        WnLinear (x, v) => (y) {{
            g = Constant <value = float[3, 1] {{{", ".join(map(str, rand(3, 1).ravel()))}}}> ()
            {wn([1])}
            y = Gemm <transB = 1> (x, w)
        }}
    """
    _, report = fold_onnx(onnx_model(text, v=rand(3, 4)))
    (site,) = report.sites
    assert (site.status, site.fed_by, report.inlined) == ("folded", None, ["local::WnLinear"])


@pytest.mark.parametrize(
    ("graph_input", "reason"),
    [("v", "v 'v' is a graph input"), ("g", "g 'g' is a graph input")],
)
def test_graph_input_weights_are_declined_and_left_alone(graph_input: str, reason: str) -> None:
    """Negative case: a weight fed at run time is not a constant; nothing is rewritten. The
    row names the weight its consumer reads (with g fed at run time it named ``v / ||v||``,
    read by a Mul)."""
    other = "g" if graph_input == "v" else "v"
    shape = "[3, 4]" if graph_input == "v" else "[3, 1]"
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x, float{shape} {graph_input}) => (float[2, 3] y) {{
            {wn([1])}
            y = Gemm <transB = 1> (x, w)
        }}
    """
    arrays: dict[str, Any] = {other: rand(3, 4) if other == "v" else rand(3, 1)}
    model = onnx_model(text, **arrays)
    folded, report = fold_onnx(model)
    assert report.folded == 0 and report.declined == 1 and not report
    assert report.sites[0].reason == reason
    assert (report.sites[0].name, report.sites[0].consumers) == ("w", ["Gemm(transB=1)"])
    assert folded.SerializeToString() == model.SerializeToString()
    # a direction given at run time, which export does not hold against the file; a gain
    # given with a constant v is not (its direction is a weight of the file's)
    assert report.sites[0].fed_by == ("v" if graph_input == "v" else None)


@pytest.mark.parametrize("inputs", [["v"], ["g"], ["v", "g"]])
def test_overridable_initializer_counts_as_graph_input(inputs: list[str]) -> None:
    """A g that a graph input overrides was folded as a gain-less site (t74), as every model
    exported with keep_initializers_as_inputs=True showed its sites."""
    shapes = {"v": "float[3, 4] v", "g": "float[3, 1] g"}
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x, {", ".join(shapes[name] for name in inputs)}) => (float[2, 3] y) {{
            {wn([1])}
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, v=rand(3, 4), g=rand(3, 1))
    folded, report = fold_onnx(model)
    (site,) = report.sites
    assert site.status == "declined" and "graph input" in (site.reason or "")
    assert (site.name, site.consumers, site.form) == ("w", ["Gemm(transB=1)"], "ReduceL2")
    assert site.fed_by is None  # a weight with a value, which a feed may replace
    assert folded.SerializeToString() == model.SerializeToString()


def test_a_weights_norm_times_an_activation_is_declined() -> None:
    """``x * v / ||v||`` written left to right (TorchScript keeps ``(x * v) / ||v||``): the norm
    of a weight is computed at run time inside an activation's product, which no fold can
    take apart exactly; declined by the run-time factor, not dropped as an activation's norm
    (t74)."""
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 4] y) {{
            n = ReduceL2 <axes = [0, 1], keepdims = 1> (v)
            xv = Mul(x, v)
            y = Div(xv, n)
        }}
    """
    _, report = fold_onnx(onnx_model(text, v=rand(1, 4)))
    (site,) = report.sites
    assert site.status == "declined" and site.reason == "g 'x' is a graph input"


# A norm of an activation that an If or a Loop passes on (their inputs constants, their bodies
# reading x): no site (t74).
_PASSED_ON = {
    "if": """
        h = If (c) <
            then_branch = t () => (float[2, 4] a) { a = Relu(x) },
            else_branch = e () => (float[2, 4] b) { b = Neg(x) }
        >""",
    "loop": """
        h = Loop (m, c, start) <
            body = b (int64 i, bool ci, float[2, 4] acc) => (bool co, float[2, 4] out) {
                co = Identity(ci)
                out = Add(acc, x)
            }
        >""",
}


# A norm of a Loop's carried value or a Scan's state, started from a constant: after the first
# iteration it holds what the body computed from x, an activation (t76: a declined site).
_CARRIED = {
    "loop": """
        y = Loop (m, c, start) <
            body = b (int64 i, bool ci, float[2, 4] acc) => (bool co, float[2, 4] out) {
                co = Identity(ci)
                n = ReduceL2 <axes = [1]> (acc)
                d = Div(acc, n)
                gd = Mul(d, g)
                out = Add(gd, x)
            }
        >""",
    "scan": """
        last, ys = Scan (start, x) <
            num_scan_inputs = 1,
            body = b (float[4] st, float[4] xi) => (float[4] so, float[4] yo) {
                n = ReduceL2 <axes = [0]> (st)
                d = Div(st, n)
                gd = Mul(d, g)
                so = Add(gd, xi)
                yo = Identity(so)
            }
        >
        y = Identity(ys)""",
}


@pytest.mark.parametrize("node", sorted(_CARRIED))
def test_a_norm_of_a_carried_state_is_no_site(node: str) -> None:
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 4] y) {{
            {_CARRIED[node]}
        }}
    """
    start = np.ones((2, 4) if node == "loop" else 4, np.float32)
    arrays = {"c": np.array(True), "g": rand(1), "m": np.array(3, np.int64), "start": start}
    used: dict[str, Any] = {k: a for k, a in arrays.items() if re.search(rf"\b{k}\b", text)}
    model = onnx_model(text, **used)
    folded, report = fold_onnx(model)
    assert report.sites == [] and report
    assert folded.SerializeToString() == model.SerializeToString()


@pytest.mark.parametrize("node", sorted(_PASSED_ON))
def test_a_norm_of_an_activation_a_body_passes_on_is_no_site(node: str) -> None:
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 4] y) {{
            {_PASSED_ON[node]}
            n = ReduceL2 <axes = [1]> (h)
            d = Div(h, n)
            y = Mul(d, g)
        }}
    """
    start = np.zeros((2, 4), np.float32)
    arrays = {"c": np.array(True), "g": rand(1), "m": np.array(2, np.int64), "start": start}
    used: dict[str, Any] = {k: a for k, a in arrays.items() if k in text}
    model = onnx_model(text, **used)
    folded, report = fold_onnx(model)
    assert report.sites == [] and report
    assert folded.SerializeToString() == model.SerializeToString()


# Norms of activations times a constant: no weight, whatever reads the product. A site here
# made a ScaleNorm transformer, or an embedding's max_norm as the dynamo exporter writes it,
# "not deployable" (a declined weight-norm site).
_ACTIVATION_NORMS: dict[str, tuple[str, dict[str, Any]]] = {
    # ScaleNorm, g * x / ||x||, of the graph's input, read as MatMul's activation
    "scalenorm of the input": (
        """agraph (float[3, 4] x) => (float[3, 5] y) {
            n = ReduceL2 <axes = [1]> (x)
            d = Div(x, n)
            s = Mul(d, g)
            y = MatMul(s, w)
        }""",
        {"g": rand(), "w": rand(4, 5)},
    ),
    # the same, read as attention's values at MatMul's input B
    "scalenorm of the input as values": (
        """agraph (float[3, 4] x, float[3, 3] a) => (float[3, 4] y) {
            n = ReduceL2 <axes = [1]> (x)
            d = Div(x, n)
            s = Mul(d, g)
            y = MatMul(a, s)
        }""",
        {"g": rand()},
    ),
    # the same, of which a token is read (``h[:, 0]``: a Gather of the activation)
    "scalenorm of the input, indexed": (
        """agraph (float[2, 5, 4] x) => (float[2, 4] y) {
            n = ReduceL2 <axes = [2]> (x)
            d = Div(x, n)
            s = Mul(d, g)
            y = Gather <axis = 1> (s, zero)
        }""",
        {"g": rand(), "zero": np.array(0, np.int64)},
    ),
    # a p=1 norm of an activation, times a constant (a form no weight norm has)
    "p=1 norm of an activation": (
        """agraph (float[2, 4] x) => (float[2, 4] y) {
            r = Relu(x)
            n = LpNormalization <p = 1, axis = -1> (r)
            y = Mul(n, g)
        }""",
        {"g": rand()},
    ),
    # a norm of an activation over axes computed at run time, times a constant
    "norm over run-time axes": (
        """agraph (float[2, 4] x) => (float[2, 4] y) {
            r = Relu(x)
            shape = Shape(r)
            rank = Size(shape)
            last = Sub(rank, one)
            axes = Reshape(last, single)
            n = ReduceL2 <keepdims = 1> (r, axes)
            d = Div(r, n)
            y = Mul(d, g)
        }""",
        {"g": rand(), "one": np.array(1, np.int64), "single": np.array([1], np.int64)},
    ),
    # F.normalize(x) * g of the input, a graph output
    "normalized input times g": (
        """agraph (float[3, 4] v) => (float[3, 4] y) {
            n = ReduceL2 <axes = [1]> (v)
            d = Div(v, n)
            y = Mul(d, g)
        }""",
        {"g": rand(3, 1)},
    ),
    # ScaleNorm of a computed activation, read at MatMul's weight input
    "scalenorm of an activation": (
        """agraph (float[4, 3] x) => (float[3, 3] y) {
            h = Relu(x)
            n = ReduceL2 <axes = [0]> (h)
            d = Div(h, n)
            s = Mul(d, g)
            y = MatMul(w, s)
        }""",
        {"g": rand(), "w": rand(3, 4)},
    ),
    # nn.Embedding(max_norm=1.0) as the dynamo exporter writes it: the rows looked up are
    # scaled down to the max norm and scattered back into the table
    "embedding max_norm": (
        """agraph (int64[1, 4] ids) => (float[1, 4, 8] y) {
            u = Unique <sorted = 1> (ids)
            rows = Gather <axis = 0> (table, u)
            n = ReduceL2 <axes = [1], keepdims = 1> (rows)
            d = Add(n, eps)
            s = Div(most, d)
            scaled = Mul(rows, s)
            big = Greater(n, most)
            new = Where(big, scaled, rows)
            index = Unsqueeze(u, ax)
            renormed = ScatterND(table, index, new)
            y = Gather <axis = 0> (renormed, ids)
        }""",
        {
            "table": rand(20, 8),
            "ax": np.array([1], np.int64),
            "eps": np.float32(1e-7),
            "most": np.float32(1.0),
        },
    ),
}


@pytest.mark.parametrize("case", sorted(_ACTIVATION_NORMS))
def test_norms_of_activations_times_a_constant_are_no_sites(case: str) -> None:
    text, arrays = _ACTIVATION_NORMS[case]
    header = HEADER18 if "run-time axes" in case else HEADER17  # ReduceL2's axes input: 18
    model = onnx_model(f"{header}\n{text}", **arrays)
    folded, report = fold_onnx(model)
    assert report.sites == [] and report
    assert folded.SerializeToString() == model.SerializeToString()


def test_a_norm_of_an_activation_in_a_function_is_no_site() -> None:
    """Inside a local function (as TorchScript's ``export_modules_as_functions`` writes a
    module), F.normalize(relu(x)) * g was declined: the function's check of its cone's ops
    came first."""
    text = """
        <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
        agraph (float[2, 4] x) => (float[2, 4] y) {
            y = local.Head(x)
        }
        <domain: "local", opset_import: ["" : 17]>
        Head (x) => (y) {
            g = Constant <value = float {3.0}> ()
            r = Relu(x)
            n = ReduceL2 <axes = [1]> (r)
            d = Div(r, n)
            y = Mul(d, g)
        }
    """
    model = onnx_model(text)
    folded, report = fold_onnx(model)
    assert report.sites == [] and report
    assert folded.SerializeToString() == model.SerializeToString()


def test_a_weights_direction_times_an_activation_folds_the_direction() -> None:
    """``x * F.normalize(W)``: the direction is a gain-less site, folded; the product with the
    activation stays. It was declined as a gain fed at run time ("g 'x' is a graph input")."""
    text = f"""
        {HEADER17}
        agraph (float[2, 8] x) => (float[2, 8] y) {{
            n = ReduceL2 <axes = [0]> (w)
            d = Div(w, n)
            y = Mul(x, d)
        }}
    """
    w = rand(8)
    folded, report = assert_folds(onnx_model(text, w=w), feeds={"x": rand(2, 8)})
    assert report.sites[0].form.startswith("gain-less ")
    assert op_types(folded) == ["Mul"]
    w64 = w.astype(np.float64)
    expected = (w64 / np.linalg.norm(w64)).astype(np.float32)
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(folded.graph.initializer[0]), expected)


def test_a_premultiplied_gain_folds_as_the_graph_computes_it() -> None:
    """``g * v / ||v||`` whose ``g * v`` TorchScript's constant folding computed into one
    initializer ``C``: ``C / ||v||`` was declined ("the normalised tensor is not v itself")
    and the export called not deployable."""
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            n = ReduceL2 <axes = [1], keepdims = 1> (v)
            w = Div(c, n)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    v, g = rand(3, 4), rand(3, 1)
    c = g * v
    folded, report = assert_folds(onnx_model(text, v=v, c=c), feeds={"x": rand(2, 4)})
    (site,) = report.sites
    assert site.form == "g*v premultiplied ReduceL2" and site.axes == [1]
    v64 = v.astype(np.float64)
    expected = (c.astype(np.float64) / np.linalg.norm(v64, axis=1, keepdims=True)).astype(
        np.float32
    )
    (weight,) = [i for i in folded.graph.initializer if i.name != "x"]
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(weight), expected)


def test_a_weight_fed_at_run_time_through_a_transpose_is_declined() -> None:
    """A weight fed at run time that a Gemm reads through a Transpose: a site, declined by its
    name, unlike a norm of an activation."""
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x, float[4, 3] vt) => (float[2, 3] y) {{
            v = Transpose <perm = [1, 0]> (vt)
            n = ReduceL2 <axes = [1]> (v)
            d = Div(v, n)
            w = Mul(d, g)
            wt = Transpose <perm = [1, 0]> (w)
            y = Gemm(x, wt)
        }}
    """
    _, report = fold_onnx(onnx_model(text, g=rand(3, 1)))
    assert report.declined == 1 and report.sites[0].reason == "v 'vt' is a graph input"
    assert report.sites[0].fed_by == "vt"


def test_norm_of_another_tensor_is_not_weight_norm() -> None:
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            n = ReduceL2 <axes = [1]> (u)
            d = Div(v, n)
            w = Mul(d, g)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, u=rand(3, 4), v=rand(3, 4), g=rand(3, 1))
    folded, report = fold_onnx(model)
    assert report.sites == [] and [(c.name, c.status) for c in report.cones] == [
        ("w", "declined")  # a weight computed from constants, by ReduceL2: left as it is
    ]
    assert op_types(folded) == op_types(model)


def test_zero_norm_unit_is_left_exact_and_reported() -> None:
    v = rand(3, 4)
    v[1] = 0.0
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            {wn([1])}
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, v=v, g=rand(3, 1))
    folded, report = fold_onnx(model)
    assert report.folded == 0 and "zero-norm" in (report.sites[0].reason or "")
    assert folded.SerializeToString() == model.SerializeToString()


def test_nothing_else_changes_and_second_run_is_a_no_op() -> None:
    text = f"""
        {HEADER18}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            {wn([1]).replace("<axes = [1], keepdims = 1> (v)", "(v, ax)")}
            h = Gemm <transB = 1> (x, w)
            y = Relu(h)
        }}
    """
    model = onnx_model(text, v=rand(3, 4), g=rand(3, 1), ax=np.array([1], np.int64))
    model.doc_string = "doc"
    model.graph.node[-1].doc_string = "relu doc"
    onnx.helper.set_model_props(model, {"author": "me"})
    model.graph.value_info.append(onnx.helper.make_tensor_value_info("h", 1, [2, 3]))
    once, report = fold_onnx(model)
    assert report.folded == 1
    assert once.doc_string == "doc" and once.graph.node[-1].doc_string == "relu doc"
    assert [(p.key, p.value) for p in once.metadata_props] == [("author", "me")]
    assert [v.name for v in once.graph.value_info] == ["h"]
    assert once.opset_import == model.opset_import and once.ir_version == model.ir_version
    twice, second = fold_onnx(once)
    assert second.folded == 0 and not second.sites
    assert twice.SerializeToString() == once.SerializeToString()
    again, _ = fold_onnx(model)
    assert again.SerializeToString() == once.SerializeToString()


def test_ir_model_is_copied_unless_in_place() -> None:
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            {wn([1])}
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = ir.serde.deserialize_model(onnx_model(text, v=rand(3, 4), g=rand(3, 1)))
    folded, _ = fold_onnx(model)
    assert len(model.graph) == 4 and len(folded.graph) == 1
    same, _ = fold_onnx(model, in_place=True)
    assert same is model and len(model.graph) == 1
    assert len(inspect_onnx(model).sites) == 0
    assert_close(
        run(model, {"x": np.ones((2, 4), np.float32)}),
        run(folded, {"x": np.ones((2, 4), np.float32)}),
    )


def test_site_inside_a_loop_body() -> None:
    """A Loop whose body applies a weight-normed Gemm to its carried state, three times."""
    body = onnx.parser.parse_graph(
        "body (int64 i, bool c, float[2, 3] s) => (bool c_out, float[2, 3] s_out) {"
        + wn([1]).replace("\n", " ")
        + " s_out = Gemm <transB = 1> (s, w) c_out = Identity(c) }"
    )
    main = onnx.parser.parse_graph(
        "main (float[2, 3] x) => (float[2, 3] y) { y = Loop(trips, cond, x) }"
    )
    main.node[0].attribute.append(onnx.helper.make_attribute("body", body))
    arrays = {"v": rand(3, 3), "g": rand(3, 1) * 0.3, "trips": np.array(3), "cond": np.array(True)}
    for name, array in arrays.items():
        main.initializer.append(onnx.numpy_helper.from_array(array, name))
    opsets = [onnx.helper.make_opsetid("", 17)]
    model = onnx.helper.make_model(main, opset_imports=opsets, ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    folded, report = assert_folds(model, feeds={"x": rand(2, 3)})
    assert report.sites[0].graph == "subgraph body"
    assert [n.op_type for n in folded.graph.node[0].attribute[0].g.node] == ["Gemm", "Identity"]


def test_attribute_references_in_a_function_are_read_once_inlined() -> None:
    """keepdims taken from the caller cannot be read as a value inside the function: the
    function is inlined (each call binds it, t266), and the site folded."""
    text = f"""
        <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            y = local.WnLinear <kd = 1> (x)
        }}
        <domain: "local", opset_import: ["" : 17]>
        WnLinear <kd> (x) => (y) {{
            v = Constant <value = float[3, 4] {{{", ".join(map(str, rand(3, 4).ravel()))}}}> ()
            g = Constant <value = float[3, 1] {{1.5, 0.5, 2.0}}> ()
            n = ReduceL2 <axes = [1], keepdims: int = @kd> (v)
            d = Div(v, n)
            w = Mul(d, g)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text)
    folded, report = fold_onnx(model)
    assert report.folded == 1 and report.inlined == ["local::WnLinear"]
    assert [n.op_type for n in folded.graph.node] == ["Gemm"] and not folded.functions
    feeds = {"x": rand(2, 4)}
    assert_close(run(folded, feeds), run(model, feeds))


def test_flatten_with_a_negative_axis_after_the_product() -> None:
    text = f"""
        {HEADER17}
        agraph (float[2, 6] x) => (float[2, 5] y) {{
            {wn([1, 2])}
            f = Flatten <axis = -1> (w)
            y = MatMul(x, f)
        }}
    """
    model = onnx_model(text, v=rand(3, 2, 5), g=rand(3, 1, 1))
    folded, _ = assert_folds(model, feeds={"x": rand(2, 6)})
    assert list(folded.graph.initializer[0].dims) == [6, 5]


def test_weight_that_is_a_graph_output_named_like_its_parameter() -> None:
    """v named w_v folds to 'w', which is also the graph output's name: no clash."""
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[3, 4] w, float[2, 3] y) {{
            {wn([1])}
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, names={"v": "w_v"}, v=rand(3, 4), g=rand(3, 1))
    folded, _ = assert_folds(model, feeds={"x": rand(2, 4)})
    assert [o.name for o in folded.graph.output] == ["w", "y"]
    assert [i.name for i in folded.graph.initializer] == ["w__1"]


def test_zero_norm_in_the_rsqrt_form_gets_the_right_reason() -> None:
    v = rand(3, 4)
    v[2] = 0.0
    body = (
        "q = ReduceSumSquare <axes = [1]> (v)\n r = Pow(q, mhalf)\n p = Mul(v, r)\n w = Mul(p, g)"
    )
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            {body}
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, v=v, g=rand(3, 1), mhalf=np.array(-0.5, np.float32))
    _, report = fold_onnx(model)
    assert "zero-norm" in (report.sites[0].reason or "")


def test_lp_normalization_of_a_zero_unit_folds_to_zero_like_the_runtime() -> None:
    v = rand(3, 4)
    v[1] = 0.0
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            d = LpNormalization <axis = 1, p = 2> (v)
            w = Mul(d, g)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    assert_folds(onnx_model(text, v=v, g=rand(3, 1)), feeds={"x": rand(2, 4)})


@pytest.mark.parametrize(
    ("body", "arrays"),
    [
        (wn([1]), {"v": rand(3, 4), "g": rand(3, 1)}),  # a weight-norm site
        ("w = Identity(p)", {"p": rand(3, 4)}),  # a parameter passed on
        ("w = Transpose <perm = [1, 0]> (p)", {"p": rand(4, 3)}),  # a computed weight
    ],
    ids=["site", "identity", "transpose"],
)
def test_a_weight_that_is_a_graph_output_is_folded_once(body: str, arrays: Any) -> None:
    """The output keeps its name as Identity(weight), and the consumer reads the weight itself:
    nothing is left that a second fold would fold again, so ``inspect --strict`` passes."""
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y, float[3, 4] w) {{
            {body}
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, **arrays)
    folded, report = fold_onnx(model)
    assert report.folded + report.cones_folded == 1
    onnx.checker.check_model(folded, full_check=True)
    assert [o.name for o in folded.graph.output] == ["y", "w"]
    gemm = folded.graph.node[-1]
    assert gemm.input[1] in {i.name for i in folded.graph.initializer}
    feeds = {"x": rand(2, 4)}
    assert_close(run(folded, feeds), run(model, feeds))
    again, second = fold_onnx(folded)
    assert second.folded + second.cones_folded == 0
    assert again.SerializeToString() == folded.SerializeToString()
    assert inspect_onnx(folded).remaining == 0


def _assert_folds_ir3(model: onnx.ModelProto, sites: int, cones: int) -> onnx.ModelProto:
    """Folded into a model the checker accepts (every initializer a graph input), with the
    outputs of the input, which a second fold leaves as it is."""
    folded, report = fold_onnx(model)
    assert (report.folded, report.cones_folded) == (sites, cones)
    onnx.checker.check_model(folded, full_check=True)
    assert {i.name for i in folded.graph.initializer} <= {i.name for i in folded.graph.input}
    feeds = {"x": rand(2, 6)}
    assert_close(run(folded, feeds), run(model, feeds))
    again, second = fold_onnx(folded)
    assert second.folded + second.cones_folded == 0 and inspect_onnx(folded).remaining == 0
    assert again.SerializeToString() == folded.SerializeToString()
    return folded


def test_an_ir3_model_of_constant_nodes_folds_into_a_valid_model() -> None:
    """IR version 3 wants every initializer listed as a graph input: the weights written are."""
    folded = _assert_folds_ir3(ir3_linear(), 0, 2)
    assert [i.name for i in folded.graph.input] == ["x", "W", "b"]


def test_an_ir3_models_initializers_are_constants_its_sites_fold() -> None:
    """ONNX Runtime lets no feed override an initializer of an IR version 3 model (every one
    is listed as an input): a weight-norm site of initializers folds, and so does a weight
    computed from one; the model's inputs stay, less those the fold removed."""
    nodes = [
        onnx.helper.make_node("ReduceL2", ["fc.weight_v"], ["n"], axes=[1]),
        onnx.helper.make_node("Div", ["fc.weight_v", "n"], ["d"]),
        onnx.helper.make_node("Mul", ["d", "fc.weight_g"], ["w"]),
        onnx.helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
        onnx.helper.make_node("Transpose", ["p"], ["pt"]),
        onnx.helper.make_node("MatMul", ["h", "pt"], ["y"]),
    ]
    arrays = {"fc.weight_v": rand(4, 6), "fc.weight_g": rand(4, 1), "p": rand(6, 4)}
    model = ir3_model(nodes, {**arrays, "b": rand(4)})
    folded = _assert_folds_ir3(model, 1, 1)
    assert [i.name for i in folded.graph.input] == ["x", "b", "fc.weight", "p"]


def test_an_ir3_bodys_weights_are_folded_into_constant_nodes() -> None:
    """A body of an IR version 3 model can hold no initializer (it has no inputs to list one
    in): its folded weights are Constant nodes, as in a function."""
    make, array = onnx.helper.make_node, onnx.numpy_helper.from_array

    def body(name: str) -> onnx.GraphProto:
        nodes = [
            make("Constant", [], [f"{name}v"], value=array(rand(6, 6))),
            make("Constant", [], [f"{name}g"], value=array(rand(6, 1))),
            make("ReduceL2", [f"{name}v"], [f"{name}n"], axes=[1]),
            make("Div", [f"{name}v", f"{name}n"], [f"{name}d"]),
            make("Mul", [f"{name}d", f"{name}g"], [f"{name}w"]),
            make("Transpose", [f"{name}w"], [f"{name}wt"]),
            make("MatMul", ["x", f"{name}wt"], [f"{name}y"]),
        ]
        output = onnx.helper.make_tensor_value_info(f"{name}y", onnx.TensorProto.FLOAT, [2, 6])
        return onnx.helper.make_graph(nodes, name, [], [output])

    branches = make("If", ["c"], ["y"], then_branch=body("t"), else_branch=body("e"))
    model = ir3_model([branches], flag=True)
    folded, report = fold_onnx(model)
    assert [s.status for s in report.sites] == ["folded", "folded"]
    onnx.checker.check_model(folded, full_check=True)
    for branch in folded.graph.node[0].attribute:
        assert [n.op_type for n in branch.g.node] == ["Constant", "MatMul"]
    for c in (True, False):
        feeds = {"x": rand(2, 6), "c": np.array(c)}
        assert_close(run(folded, feeds), run(model, feeds))
    assert inspect_onnx(folded).remaining == 0


def test_overloads_of_a_function_are_told_apart_in_the_report() -> None:
    """Two overloads of ``local::Lin`` (IR version 10), each holding a site: both were
    reported ``function local::Lin``, so a reader could not tell which got which weight."""
    oh = onnx.helper
    functions = []
    for overload in ("a", "b"):
        nodes = [
            oh.make_node("Constant", [], ["v"], value=onnx.numpy_helper.from_array(rand(4, 4))),
            oh.make_node("Constant", [], ["g"], value=onnx.numpy_helper.from_array(rand(4, 1))),
            oh.make_node("ReduceL2", ["v"], ["n"], axes=[1], keepdims=1),
            oh.make_node("Div", ["v", "n"], ["d"]),
            oh.make_node("Mul", ["g", "d"], ["w"]),
            oh.make_node("Gemm", ["X", "w"], ["Y"], transB=1),
        ]
        function = oh.make_function("local", "Lin", ["X"], ["Y"], nodes, [oh.make_opsetid("", 17)])
        function.overload = overload
        functions.append(function)
    calls = [oh.make_node("Lin", ["x"], [f"y{o}"], domain="local") for o in ("a", "b")]
    for call, overload in zip(calls, ("a", "b"), strict=True):
        call.overload = overload
    square = [
        oh.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [4, 4]) for n in ("x", "ya", "yb")
    ]
    graph = oh.make_graph(calls, "m", square[:1], square[1:])
    model = oh.make_model(
        graph,
        opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("local", 1)],
        functions=functions,
        ir_version=10,
    )
    _, report = fold_onnx(model)
    assert sorted(site.graph for site in report.sites) == [
        "function local::Lin:a",
        "function local::Lin:b",
    ]
    assert report.folded == 2
