"""Every way of writing g * v / ||v|| folds to one initializer with the same outputs."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import onnx
import pytest

from tests.helpers import FP16_ATOL, FP16_RTOL, onnx_model, op_types, rand
from tests.onnx.helpers import HEADER17, HEADER18, G, V, X, assert_folds, gemm_model
from wnpass import fold_onnx, inspect_onnx

ASSOCIATIONS = {
    "(v/n)*g": "n = ReduceL2 <axes = [1]> (v)\n d = Div(v, n)\n w = Mul(d, g)",
    "g*(v/n)": "n = ReduceL2 <axes = [1]> (v)\n d = Div(v, n)\n w = Mul(g, d)",
    "v*(g/n)": "n = ReduceL2 <axes = [1]> (v)\n d = Div(g, n)\n w = Mul(v, d)",
    "(g/n)*v": "n = ReduceL2 <axes = [1]> (v)\n d = Div(g, n)\n w = Mul(d, v)",
    "(g*v)/n": "n = ReduceL2 <axes = [1]> (v)\n p = Mul(g, v)\n w = Div(p, n)",
    "(v*g)/n": "n = ReduceL2 <axes = [1]> (v)\n p = Mul(v, g)\n w = Div(p, n)",
    "g*v*(1/n)": "n = ReduceL2 <axes = [1]> (v)\n r = Reciprocal(n)\n"
    " p = Mul(g, v)\n w = Mul(p, r)",
    "v*(1/n)*g": "n = ReduceL2 <axes = [1]> (v)\n r = Reciprocal(n)\n"
    " p = Mul(v, r)\n w = Mul(p, g)",
    "v/(n/g)": "n = ReduceL2 <axes = [1]> (v)\n q = Div(n, g)\n w = Div(v, q)",
}


@pytest.mark.parametrize("form", ASSOCIATIONS)
def test_any_association_and_operand_order(form: str) -> None:
    """Every association and operand order of g, v and the norm folds."""
    folded, _ = assert_folds(gemm_model(ASSOCIATIONS[form]))
    assert op_types(folded) == ["Gemm"]
    assert [i.name for i in folded.graph.initializer] == ["v.folded"]


def test_torchscript_form_opset17_axes_attribute() -> None:
    """TorchScript exporter, opset < 18: axes are an attribute, keepdims=1."""
    body = "n = ReduceL2 <axes = [1], keepdims = 1> (v)\n d = Div(v, n)\n w = Mul(d, g)"
    assert_folds(gemm_model(body))


def test_torchscript_form_opset18_axes_from_constant_node() -> None:
    """TorchScript exporter, opset >= 18: axes come from a Constant node, which is removed."""
    body = (
        "a = Constant <value = int64[1] {1}> ()\n n = ReduceL2 <keepdims = 1> (v, a)\n"
        " d = Div(v, n)\n w = Mul(d, g)"
    )
    folded, report = assert_folds(gemm_model(body, HEADER18))
    assert op_types(folded) == ["Gemm"]
    assert report.sites[0].nodes_removed == 4


def test_dynamo_form_axes_initializer() -> None:
    """Dynamo exporter: ReduceL2(v, axes) -> Div(g, norm) -> Mul(v, div); the axes go too."""
    body = "n = ReduceL2 (v, axes)\n d = Div(g, n)\n w = Mul(v, d)"
    folded, _ = assert_folds(gemm_model(body, HEADER18, axes=np.array([1], np.int64)))
    assert [i.name for i in folded.graph.initializer] == ["v.folded"]


def test_dynamo_unoptimized_axes_computed_from_constants() -> None:
    """``dynamo=True, optimize=False`` writes the axes as ``Reshape(Constant, Constant)``: the
    evaluator computes them, so the site folds, named after its parameter, with its axes."""
    body = (
        "a0 = Constant <value = int64[1] {1}> ()\n s = Constant <value_ints = [-1]> ()\n"
        " a = Reshape(a0, s)\n n = ReduceL2 <keepdims = 1> (v, a)\n d = Div(g, n)\n"
        " w = Mul(v, d)"
    )
    model = gemm_model(body, HEADER18)
    for value in model.graph.initializer:
        value.name = {"v": "fc.weight_v", "g": "fc.weight_g"}[value.name]
    for node in model.graph.node:
        node.input[:] = [{"v": "fc.weight_v", "g": "fc.weight_g"}.get(i, i) for i in node.input]
    (found,) = inspect_onnx(model).sites
    assert (found.status, found.axes, found.name) == ("foldable", [1], "fc.weight")
    folded, _ = assert_folds(model)
    assert op_types(folded) == ["Gemm"]
    assert [i.name for i in folded.graph.initializer] == ["fc.weight"]


def test_axes_computed_from_a_graph_input_are_not_constant() -> None:
    text = f"""
        {HEADER18}
        agraph (float[2, 4] x, int64[1] k) => (float[2, 3] y) {{
            a = Reshape(k, s)
            n = ReduceL2 <keepdims = 1> (v, a)
            d = Div(g, n)
            w = Mul(v, d)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, v=V, g=G, s=np.array([-1], np.int64))
    (found,) = inspect_onnx(model).sites
    assert (found.status, found.reason) == ("declined", "reduction axes are not constant")


def test_keepdims_0_then_unsqueeze() -> None:
    body = (
        "n = ReduceL2 <axes = [1], keepdims = 0> (v)\n u = Unsqueeze <axes = [1]> (n)\n"
        " d = Div(v, u)\n w = Mul(d, g)"
    )
    assert_folds(gemm_model(body, '<ir_version: 8, opset_import: ["" : 12]>'))


def test_keepdims_0_broadcasting_on_the_last_axis() -> None:
    """MatMul weight [in, out]: norm over axis 0 with keepdims=0 broadcasts as [out]."""
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            n = ReduceL2 <axes = [0], keepdims = 0> (v)
            d = Div(v, n)
            w = Mul(d, g)
            y = MatMul(x, w)
        }}
    """
    assert_folds(onnx_model(text, v=rand(4, 3), g=rand(3)))


def test_whole_tensor_norm_empty_axes() -> None:
    """dim=None: no axes means the norm of the whole tensor, with one scalar g."""
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            n = ReduceL2 (v)
            d = Div(v, n)
            w = Mul(d, g)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, v=V, g=np.array(2.5, np.float32))
    _, report = assert_folds(model)
    assert report.sites[0].axes is None


NORM_SPELLINGS = {
    "Sqrt(ReduceSum(v*v))": "s = Mul(v, v)\n q = ReduceSum <keepdims = 1> (s, ax)\n n = Sqrt(q)",
    "Sqrt(ReduceSum(Pow(v,2)))": (
        "s = Pow(v, two)\n q = ReduceSum <keepdims = 1> (s, ax)\n n = Sqrt(q)"
    ),
    "Sqrt(ReduceSumSquare)": "q = ReduceSumSquare <axes = [1]> (v)\n n = Sqrt(q)",
    "Pow(ReduceSumSquare, 0.5)": "q = ReduceSumSquare <axes = [1]> (v)\n n = Pow(q, half)",
    "Max(ReduceL2, eps)": "m = ReduceL2 <axes = [1]> (v)\n n = Max(m, eps)",
    "Clip(ReduceL2, eps)": "m = ReduceL2 <axes = [1]> (v)\n n = Clip(m, eps)",
    "ReduceL2 + eps": "m = ReduceL2 <axes = [1]> (v)\n n = Add(m, eps)",
    "Cast(ReduceL2)": "m = ReduceL2 <axes = [1]> (v)\n n = Cast <to = 1> (m)",
}
CONSTANTS = {
    "ax": np.array([1], np.int64),
    "two": np.array(2.0, np.float32),
    "half": np.array(0.5, np.float32),
    "eps": np.array(1e-12, np.float32),
}


@pytest.mark.parametrize("spelling", NORM_SPELLINGS)
def test_norm_spellings(spelling: str) -> None:
    body = NORM_SPELLINGS[spelling] + "\n d = Div(v, n)\n w = Mul(d, g)"
    used: dict[str, Any] = {k: a for k, a in CONSTANTS.items() if re.search(rf"\b{k}\b", body)}
    folded, report = assert_folds(gemm_model(body, **used))
    assert op_types(folded) == ["Gemm"]
    assert [i.name for i in folded.graph.initializer] == ["v.folded"]
    assert report.sites[0].axes == [1]


def test_reciprocal_square_root_of_sum_of_squares() -> None:
    """rsqrt written as Pow(sumsq, -0.5): the norm sits in the numerator with exponent -1."""
    body = (
        "q = ReduceSumSquare <axes = [1]> (v)\n r = Pow(q, mhalf)\n p = Mul(v, r)\n w = Mul(p, g)"
    )
    assert_folds(gemm_model(body, mhalf=np.array(-0.5, np.float32)))


def test_reciprocal_of_sqrt() -> None:
    body = (
        "q = ReduceSumSquare <axes = [1]> (v)\n s = Sqrt(q)\n r = Reciprocal(s)\n"
        " p = Mul(v, r)\n w = Mul(p, g)"
    )
    assert_folds(gemm_model(body))


@pytest.mark.parametrize(
    ("one", "folds"),
    [
        (np.array(1.0, np.float32), True),
        (np.array([[1.0]], np.float32), True),
        (np.array(2.0, np.float32), False),  # a second gain: declined, as before
        (np.ones((3, 1), np.float32), False),  # three ones: a second gain's shape
    ],
    ids=["scalar", "1x1", "two", "3x1"],
)
def test_rsqrt_written_as_one_divided_by_the_norm(one: np.ndarray, folds: bool) -> None:
    """``g * v * torch.rsqrt((v * v).sum(...))`` without constant folding: TorchScript writes
    rsqrt as ``Div(1, Sqrt(...))``, and the 1 was taken for a second gain ("expected at most
    one gain", t316). A constant 1 of one element and no more dimensions than v is no factor;
    any other constant still is one."""
    body = (
        "a = Constant <value = int64[1] {1}> ()\n q = Mul(v, v)\n s = ReduceSum(q, a)\n"
        " r = Sqrt(s)\n d = Div(one, r)\n"
        " p = Mul(g, v)\n w = Mul(p, d)"
    )
    model = gemm_model(body, one=one)
    if folds:
        folded, report = assert_folds(model)
        assert op_types(folded) == ["Gemm"] and report.sites[0].axes == [1]
        v64, g64 = V.astype(np.float64), G.astype(np.float64)
        expected = (g64 * v64 / np.linalg.norm(v64, axis=1, keepdims=True)).astype(np.float32)
        np.testing.assert_array_equal(
            onnx.numpy_helper.to_array(folded.graph.initializer[0]), expected
        )
        return
    (site,) = inspect_onnx(model).sites
    assert site.status == "declined"


def test_a_one_of_more_dimensions_than_v_is_a_factor() -> None:
    """A 1 of shape [1, 1, 1] times a 2-D weight makes it 3-D: it is kept as a factor (the
    site declined), not dropped, which would write a weight of another rank."""
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[1, 2, 3] y) {{
            n = ReduceL2 <axes = [1]> (v)
            d = Div(one, n)
            p = Mul(g, v)
            w = Mul(p, d)
            t = Transpose <perm = [0, 2, 1]> (w)
            y = MatMul(x, t)
        }}
    """
    model = onnx_model(text, v=V, g=G, one=np.ones((1, 1, 1), np.float32))
    (site,) = inspect_onnx(model).sites
    assert site.status == "declined" and "at most one gain" in (site.reason or "")


@pytest.mark.parametrize(
    ("reshape", "square"),
    [
        ("Reshape(d, shape)", False),
        ("Reshape(d, shape)", True),
        ("Unsqueeze(d, axis)", True),
        ("Unsqueeze(d, axis)\n s = Squeeze(u, axis)\n r = Unsqueeze(s, axis)", True),
        ("Reshape(d, twos)\n r = Reshape(u, shape)", True),
    ],
    ids=["view", "view-square", "unsqueeze-square", "moves-in-a-row", "via-2x2"],
)
def test_a_units_gain_over_norm_viewed_as_units_folds(reshape: str, square: bool) -> None:
    """``v * (g / v.norm(dim=1)).view(-1, 1)``: the norm without keepdims, the quotient
    viewed as one value per row. The climb stopped at the Reshape, and the weight was left
    computed, "computed by ReduceL2" (t316). A reshape of a part of the product that only
    adds axes of size 1 is looked through, g and the norm laid out as it lays them out: a
    square v, whose unviewed [4] norm would broadcast along its rows, folds too."""
    v = rand(4, 4) if square else V
    g = np.abs(rand(v.shape[0])) + 0.5
    first = "u" if "\n" in reshape else "r"  # the first of several moves, or the one
    text = f"""
        {HEADER18}
        agraph (float[2, 4] x) => (float[2, {v.shape[0]}] y) {{
            n = ReduceL2 <keepdims = 0> (v, one)
            d = Div(g, n)
            {first} = {reshape}
            w = Mul(v, r)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    constants = {
        "one": np.array([1], np.int64),
        "shape": np.array([-1, 1], np.int64),
        "axis": np.array([1], np.int64),
        "twos": np.array([2, 2], np.int64),  # a step that alone is no unit move (t322)
    }
    used = {k: a for k, a in constants.items() if re.search(rf"\b{k}\b", text)}
    folded, report = assert_folds(onnx_model(text, None, True, v=v, g=g, **used))
    assert op_types(folded) == ["Gemm"] and report.sites[0].axes == [1]
    v64 = v.astype(np.float64)
    expected = (g[:, None] * v64 / np.linalg.norm(v64, axis=1, keepdims=True)).astype(np.float32)
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(folded.graph.initializer[0]), expected)


def test_a_gain_over_norm_viewed_along_the_other_axis_is_no_weight_norm() -> None:
    """The same quotient viewed as [1, 4] scales column j of a square v by row j's norm: no
    weight norm of v's units, as the unviewed quotient is not (t158), but a weight computed
    from constants."""
    v = rand(4, 4)
    text = f"""
        {HEADER18}
        agraph (float[2, 4] x) => (float[2, 4] y) {{
            n = ReduceL2 <keepdims = 0> (v, one)
            d = Div(g, n)
            r = Reshape(d, shape)
            w = Mul(v, r)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    arrays = {"one": np.array([1], np.int64), "shape": np.array([1, -1], np.int64)}
    model = onnx_model(text, None, True, v=v, g=np.abs(rand(4)) + 0.5, **arrays)
    report = inspect_onnx(model)  # a weight computed from constants, left as it is
    assert report.sites == [] and [c.status for c in report.cones] == ["declined"]


@pytest.mark.parametrize("moved", ["p", "d"], ids=["g-times-v", "v-over-norm"])
def test_moves_that_cancel_leave_the_product_as_it_was(moved: str) -> None:
    """``(v * g).unsqueeze(0).squeeze(0) / v.norm(dim=1, keepdim=True)`` folded (as ``g * v``
    premultiplied), then was declined once chains of moves were looked through, g and v
    differing in shape inside them (t321): moves that cancel change no factor's shape."""
    zero = np.array([0], np.int64)
    text = f"""
        {HEADER18}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            n = ReduceL2 (v, one)
            {moved} = {"Mul(v, g)" if moved == "p" else "Div(v, n)"}
            u = Unsqueeze({moved}, zero)
            s = Squeeze(u, zero)
            w = {"Div(s, n)" if moved == "p" else "Mul(s, g)"}
            y = Gemm <transB = 1> (x, w)
        }}
    """
    one = np.array([1], np.int64)
    folded, _ = assert_folds(onnx_model(text, None, True, v=V, g=G, one=one, zero=zero))
    assert op_types(folded) == ["Gemm"]


def test_a_move_read_by_many_moves_is_looked_through() -> None:
    """A squeezed ``g / ||v||`` read by 20 unsqueezes, one of them times v: the walk counted
    every value it saw against the chain's length, and declined it from 14 on (t322)."""
    unsqueezes = "".join(f" u{i} = Unsqueeze(s, one)\n z{i} = Identity(u{i})\n" for i in range(20))
    outputs = ", ".join(f"float[4, 1] z{i}" for i in range(20))
    text = f"""
        {HEADER18}
        agraph (float[2, 4] x) => (float[2, 4] y, {outputs}) {{
            n = ReduceL2 <keepdims = 1> (v, one)
            d = Div(g, n)
            s = Squeeze(d, one)
            {unsqueezes}
            w = Mul(v, u0)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    v, g = rand(4, 4), np.abs(rand(4, 1)) + 0.5
    model = onnx_model(text, None, True, v=v, g=g, one=np.array([1], np.int64))
    (site,) = inspect_onnx(model).sites
    assert (site.status, site.axes) == ("foldable", [1])


def test_a_long_chain_of_moves_is_read_in_bounded_time() -> None:
    """600 squeeze/unsqueeze pairs between ``g / ||v||`` and its product with v took cubic
    time to look through, then ended in a RecursionError (t321): at most 16 moves in a row are
    looked through, and the weight is a declined computed weight, found at once."""
    steps = "".join(
        f" u{i} = Unsqueeze({'d' if i == 0 else f's{i - 1}'}, one)\n s{i} = Squeeze(u{i}, one)\n"
        for i in range(600)
    )
    text = f"""
        {HEADER18}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            n = ReduceL2 (v, one)
            d = Div(g, n)
            {steps}
            w = Mul(v, s599)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, None, True, v=V, g=G, one=np.array([1], np.int64))
    report = inspect_onnx(model)
    assert report.sites == [] and [c.status for c in report.cones] == ["declined"]


def test_v_reshaped_apart_from_its_norm_is_no_weight_norm() -> None:
    """``Reshape(v * 1, [4, 4, 1]) * g / ReduceL2(v, axes=[1])``: the [4, 1] norm broadcast
    against the [4, 4, 1] product divides column j by row j's norm. It was a foldable site
    at axis 1, read in v's own layout (t319); a v reshaped apart from its norm is none."""
    v = rand(4, 4)
    text = f"""
        {HEADER17}
        agraph (float[4, 4, 1] x) => (float[4, 4, 1] y) {{
            n = ReduceL2 <axes = [1], keepdims = 1> (v)
            p = Mul(v, one)
            r = Reshape(p, shape)
            q = Mul(r, g)
            w = Div(q, n)
            y = Conv(x, w)
        }}
    """
    one, shape = np.array(1.0, np.float32), np.array([4, 4, 1], np.int64)
    model = onnx_model(text, None, True, v=v, g=np.abs(rand(4, 1)) + 0.5, one=one, shape=shape)
    report = inspect_onnx(model)  # a weight computed from constants, left as it is
    assert report.sites == [] and [c.status for c in report.cones] == ["declined"]


def test_a_view_of_a_quotient_that_broadcast_inside_it_is_declined() -> None:
    """Two gains per unit ([2, 3]) over a [3] norm, viewed as [2, 3, 1]: the norm did not
    have the shape the view reads, so where its values go is not the view's; declined."""
    text = f"""
        {HEADER18}
        agraph (float[2, 4] x) => (float[2, 2, 3] y) {{
            n = ReduceL2 <keepdims = 0> (v, one)
            d = Div(g, n)
            r = Reshape(d, shape)
            w = Mul(v, r)
            t = Transpose <perm = [0, 2, 1]> (w)
            y = MatMul(x, t)
        }}
    """
    arrays = {"one": np.array([1], np.int64), "shape": np.array([2, 3, 1], np.int64)}
    model = onnx_model(text, None, True, v=V, g=np.abs(rand(2, 3)) + 0.5, **arrays)
    (site,) = inspect_onnx(model).sites
    assert site.status == "declined"
    assert site.reason == (
        "unsupported form: a reshape of a part of the product whose factors differ in shape"
    )


def test_lp_normalization_times_g() -> None:
    body = "d = LpNormalization <axis = 1, p = 2> (v)\n w = Mul(d, g)"
    _, report = assert_folds(gemm_model(body))
    assert report.sites[0].form.startswith("LpNormalization")


def test_epsilon_value_is_honoured() -> None:
    """normalize() semantics: a unit whose norm is below eps is divided by eps, not its norm."""
    v = V.copy()
    v[0] = 1e-9  # norm 2e-9 < eps 1e-6
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            m = ReduceL2 <axes = [1]> (v)
            n = Max(m, eps)
            d = Div(v, n)
            w = Mul(d, g)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, v=v, g=G, eps=np.array(1e-6, np.float32))
    folded, _ = assert_folds(model)
    w = onnx.numpy_helper.to_array(folded.graph.initializer[0])
    np.testing.assert_allclose(w[0], G[0] * v[0] / 1e-6, rtol=1e-6)


def test_float16_weights_cast_around_the_norm() -> None:
    """fp16 v and g are cast to float32 for the norm and the product is cast back to fp16."""
    text = f"""
        {HEADER17}
        agraph (float16[2, 4] x) => (float16[2, 3] y) {{
            vf = Cast <to = 1> (v)
            gf = Cast <to = 1> (g)
            n = ReduceL2 <axes = [1]> (vf)
            d = Div(vf, n)
            wf = Mul(d, gf)
            w = Cast <to = 10> (wf)
            wt = Transpose <perm = [1, 0]> (w)
            y = MatMul(x, wt)
        }}
    """
    model = onnx_model(text, v=V.astype(np.float16), g=G.astype(np.float16))
    feeds = {"x": X.astype(np.float16)}
    folded, report = assert_folds(model, feeds=feeds, rtol=FP16_RTOL, atol=FP16_ATOL)
    assert op_types(folded) == ["MatMul"]
    (weight,) = folded.graph.initializer
    assert weight.data_type == onnx.TensorProto.FLOAT16 and list(weight.dims) == [4, 3]
    v64, g64 = V.astype(np.float16).astype(np.float64), G.astype(np.float16).astype(np.float64)
    expected = (g64 * v64 / np.linalg.norm(v64, axis=1, keepdims=True)).T.astype(np.float16)
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(weight), expected)
    assert report.sites[0].dtype == "float16"


def test_bfloat16_weights_are_rounded_once() -> None:
    """Weight norm computed in bfloat16: the weight is the float64 value rounded once. On these
    (seeded) values, rounding it through float32, as ml_dtypes' cast does, gives another."""
    import ml_dtypes

    from wnpass.rounding import round_once

    rng = np.random.default_rng(0)
    rows = 65536
    v = rng.standard_normal((rows, 4)).astype(ml_dtypes.bfloat16)
    g = (rng.random((rows, 1)) + 0.5).astype(ml_dtypes.bfloat16)
    text = f"""
        {HEADER17}
        agraph (bfloat16[1, 4] x) => (bfloat16[1, {rows}] y) {{
            n = ReduceL2 <axes = [1]> (v)
            d = Div(v, n)
            w = Mul(d, g)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    folded, report = fold_onnx(onnx_model(text, v=v, g=g))
    assert isinstance(folded, onnx.ModelProto) and report.folded == 1
    (weight,) = folded.graph.initializer
    assert weight.data_type == onnx.TensorProto.BFLOAT16
    v64, g64 = v.astype(np.float64), g.astype(np.float64)
    exact = v64 / np.sqrt(np.sum(np.square(v64), axis=1, keepdims=True)) * g64
    stored = onnx.numpy_helper.to_array(weight)
    expected = round_once(exact, v.dtype)
    np.testing.assert_array_equal(stored.view(np.uint16), expected.view(np.uint16))
    assert np.count_nonzero(stored != exact.astype(ml_dtypes.bfloat16)) > 0


def test_bfloat16_weights_cast_to_float() -> None:
    import ml_dtypes

    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            vf = Cast <to = 1> (v)
            gf = Cast <to = 1> (g)
            n = ReduceL2 <axes = [1]> (vf)
            d = Div(vf, n)
            w = Mul(d, gf)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, v=V.astype(ml_dtypes.bfloat16), g=G.astype(ml_dtypes.bfloat16))
    _, report = assert_folds(model)
    assert report.sites[0].dtype == "float"


GAINLESS = {
    # F.normalize(v, dim=1) as the TorchScript exporter writes it
    "normalize": (
        "n = ReduceL2 <axes = [1], keepdims = 1> (v)\n c = Clip(n, eps)\n"
        " s = Shape(v)\n e = Expand(c, s)\n w = Div(v, e)"
    ),
    "LpNormalization": "w = LpNormalization <axis = 1, p = 2> (v)",
    "rsqrt": "q = ReduceSumSquare <axes = [1]> (v)\n r = Pow(q, mhalf)\n w = Mul(v, r)",
    # F.normalize(v, dim=1) as the dynamo exporter writes it with optimize=False: the epsilon
    # cast to the norm's type (declared, as exporters declare it) by CastLike, whose second
    # input gives only a type
    "normalize, dynamo unoptimized": (
        "n = ReduceL2 <axes = [1], keepdims = 1> (v)\n e = CastLike(eps, n)\n c = Clip(n, e)\n"
        " e2 = Expand(c, shape)\n w = Div(v, e2)"
    ),
}


@pytest.mark.parametrize("form", GAINLESS)
def test_gainless_forms_fold_with_their_own_form_name(form: str) -> None:
    """w = v / ||v|| (F.normalize of a weight, normalized codebooks) folds like any site."""
    constants = {
        "eps": np.array(1e-12, np.float32),
        "mhalf": np.array(-0.5, np.float32),
        "shape": np.array(V.shape, np.int64),
    }
    used: dict[str, Any] = {
        k: a for k, a in constants.items() if re.search(rf"\b{k}\b", GAINLESS[form])
    }
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) <float[3, 1] n> {{
            {GAINLESS[form]}
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, v=V, **used)
    folded, report = assert_folds(model)
    (site,) = report.sites
    assert site.form.startswith("gain-less ") and site.status == "folded"
    assert op_types(folded) == ["Gemm"]
    v64 = V.astype(np.float64)
    expected = (v64 / np.linalg.norm(v64, axis=1, keepdims=True)).astype(np.float32)
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(folded.graph.initializer[0]), expected)


@pytest.mark.parametrize("copy", ["same", "one bit off"])
def test_a_norm_of_a_copy_of_v_s_elements_folds_as_v_s(copy: str) -> None:
    """``F.linear(x, w / w.norm())`` from TorchScript: its constant folding stores
    ``Reshape(w, [-1])`` as a second initializer, whose norm divides w. Declined as "the
    normalised tensor is not v itself", with that copy's shape and no gain-less form (t86);
    a copy that differs in one bit is no copy: the weight is a constant of as many elements
    over its norm, folded as ``g * v`` premultiplied (t316), not as gain-less."""
    flat = V.reshape(-1).copy()
    if copy == "one bit off":
        flat.view(np.uint32)[5] ^= 1
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            n = ReduceL2 (flat)
            w = Div(v, n)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, v=V, flat=flat)
    folded, report = assert_folds(model)
    (site,) = report.sites
    form = "gain-less ReduceL2" if copy == "same" else "g*v premultiplied ReduceL2"
    assert (site.form, site.shape, site.axes) == (form, [3, 4], None)
    assert op_types(folded) == ["Gemm"] and len(folded.graph.initializer) == 1
    v64 = V.astype(np.float64)
    expected = (v64 / np.linalg.norm(flat.astype(np.float64))).astype(np.float32)
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(folded.graph.initializer[0]), expected)


@pytest.mark.parametrize("elements", [12, 11])
def test_a_premultiplied_weight_over_the_norm_of_a_flat_copy_folds(elements: int) -> None:
    """``F.linear(x, g * v / v.norm())`` (a scalar gain) from TorchScript: its constant
    folding stores ``g * v`` and ``v``'s flattened copy as initializers; the premultiplied
    rule wanted v's shape, the copy rule v itself, and neither took both (t316). A norm over
    every element of a constant with as many elements as the product folds, the row showing
    the product's shape; a copy of another size is no copy of v."""
    flat = V.reshape(-1)[:elements].copy()
    premultiplied = (np.float32(2.5) * V).astype(np.float32)
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            n = ReduceL2 <keepdims = 0> (flat)
            w = Div(c, n)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, c=premultiplied, flat=flat)
    if elements != V.size:
        report = inspect_onnx(model)
        assert report.sites == [] and [c.status for c in report.cones] == ["declined"]
        return
    folded, report = assert_folds(model)
    (site,) = report.sites
    assert (site.form, site.shape, site.axes) == ("g*v premultiplied ReduceL2", [3, 4], None)
    c64 = premultiplied.astype(np.float64)
    expected = (c64 / np.linalg.norm(flat.astype(np.float64))).astype(np.float32)
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(folded.graph.initializer[0]), expected)


def test_normalizing_an_activation_is_not_a_site() -> None:
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            n = ReduceL2 <axes = [1], keepdims = 1> (x)
            u = Div(x, n)
            y = Gemm <transB = 1> (u, v)
        }}
    """
    model = onnx_model(text, v=V)
    assert inspect_onnx(model).sites == []
    _, report = fold_onnx(model)
    assert report.sites == [] and report.cones == []
    # a reshaped activation (DAC's quantizer normalizes its encodings this way)
    reshaped = f"""
        {HEADER17}
        agraph (float[1, 4, 2] x) => (float[2, 3] y) {{
            t = Transpose <perm = [0, 2, 1]> (x)
            r = Reshape(t, shape)
            n = ReduceL2 <axes = [1], keepdims = 1> (r)
            u = Div(r, n)
            y = Gemm <transB = 1> (u, v)
        }}
    """
    model = onnx_model(reshaped, v=V, shape=np.array([-1, 4], np.int64))
    assert inspect_onnx(model).sites == []


def test_a_global_response_normalization_of_activations_is_not_a_site() -> None:
    """ConvNeXt-V2's GRN, ``x * ||x|| / (mean(||x||) + eps)``: norms of activations in a form
    that is no weight norm's; not a site (it was reported as a declined one)."""
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            n = ReduceL2 <axes = [1], keepdims = 1> (x)
            m = ReduceMean <axes = [0], keepdims = 1> (n)
            d = Add(m, eps)
            r = Div(n, d)
            u = Mul(x, r)
            y = Gemm <transB = 1> (u, v)
        }}
    """
    model = onnx_model(text, v=V, eps=np.array(1e-6, np.float32))
    assert inspect_onnx(model).sites == []
    assert fold_onnx(model)[1].sites == []


SHARED_NORMS = {
    # F.normalize(W) and W / ||W|| of one W: the dynamo exporter keeps one ReduceL2
    "v/n and v/clip(n)": (
        "n = ReduceL2 <axes = [1], keepdims = 1> (v)\n c = Clip(n, eps)\n"
        " w1 = Div(v, c)\n w2 = Div(v, n)",
        False,
    ),
    # one v weight-normed with two gains (torch._weight_norm(v, g_i, 0) twice, dynamo)
    "v*(g1/n) and v*(g2/n)": (
        "n = ReduceL2 <axes = [1], keepdims = 1> (v)\n d1 = Div(g, n)\n w1 = Mul(v, d1)\n"
        " d2 = Div(g2, n)\n w2 = Mul(v, d2)",
        True,
    ),
}


@pytest.mark.parametrize("form", SHARED_NORMS)
def test_a_shared_norm_is_a_site_for_each_of_its_products(form: str) -> None:
    """One norm node feeding two products (the dynamo exporter merges identical norm nodes):
    each product is a site of its own, folded exactly; the shared nodes go with the last."""
    body, gained = SHARED_NORMS[form]
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            {body}
            y1 = Gemm <transB = 1> (x, w1)
            y2 = Gemm <transB = 1> (x, w2)
            y = Add(y1, y2)
        }}
    """
    g2 = np.abs(rand(3, 1)) + 0.5
    extra = {"g2": g2, "g": G} if gained else {"eps": np.array(1e-12, np.float32)}
    model = onnx_model(text, v=V, **extra)
    assert len(inspect_onnx(model).sites) == 2
    folded, _ = assert_folds(model, sites=2)
    assert op_types(folded) == ["Gemm", "Gemm", "Add"]
    v64 = V.astype(np.float64)
    unit = v64 / np.linalg.norm(v64, axis=1, keepdims=True)
    gains = (G, g2) if gained else (1.0, 1.0)
    expected = [(np.float64(1.0) * gain * unit).astype(np.float32) for gain in gains]
    stored = {i.name: onnx.numpy_helper.to_array(i) for i in folded.graph.initializer}
    by_consumer = [stored[n.input[1]] for n in folded.graph.node if n.op_type == "Gemm"]
    for got, want in zip(by_consumer, expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("read_as_is", [False, True], ids=["two-gains", "two-gains-and-as-is"])
def test_one_normalized_v_times_two_gains_is_a_site_for_each(read_as_is: bool) -> None:
    """``v / ||v||`` computed once and multiplied by two gains (and read as it is too): each
    product is a weight of its own, folded exactly; none is left computed at run time."""
    as_is = "\n y3 = Gemm <transB = 1> (x, d)\n y = Add(y12, y3)" if read_as_is else ""
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            n = ReduceL2 <axes = [1]> (v)
            d = Div(v, n)
            w1 = Mul(d, g)
            w2 = Mul(d, g2)
            y1 = Gemm <transB = 1> (x, w1)
            y2 = Gemm <transB = 1> (x, w2)
            {"y12" if read_as_is else "y"} = Add(y1, y2){as_is}
        }}
    """
    g2 = np.abs(rand(3, 1)) + 0.5
    model = onnx_model(text, v=V, g=G, g2=g2)
    count = 3 if read_as_is else 2
    inspected = inspect_onnx(model)
    assert [s.status for s in inspected.sites] == ["foldable"] * count
    assert all(s.consumers == ["Gemm(transB=1)"] for s in inspected.sites)
    folded, report = assert_folds(model, sites=count)
    assert [s.name for s in report.sites] == [s.name for s in inspected.sites]  # as inspected
    assert report.cones == [] and set(op_types(folded)) == {"Gemm", "Add"}
    v64 = V.astype(np.float64)
    unit = v64 / np.linalg.norm(v64, axis=1, keepdims=True)
    expected = [G * unit, g2 * unit, unit][:count]
    stored = {i.name: onnx.numpy_helper.to_array(i) for i in folded.graph.initializer}
    by_consumer = [stored[n.input[1]] for n in folded.graph.node if n.op_type == "Gemm"]
    for got, want in zip(by_consumer, expected, strict=True):
        np.testing.assert_array_equal(got, want.astype(np.float32))


def test_a_cast_of_a_normalized_v_read_as_is_and_times_a_gain_is_two_weights() -> None:
    """``Cast(v / ||v||)`` read by a Gemm and by a gain's product (fp16 models cast so): the
    Cast's value and the product are a site each; none is left computed."""
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            n = ReduceL2 <axes = [1]> (v)
            d = Div(v, n)
            c = Cast <to = 1> (d)
            w = Mul(c, g)
            y1 = Gemm <transB = 1> (x, w)
            y2 = Gemm <transB = 1> (x, c)
            y = Add(y1, y2)
        }}
    """
    model = onnx_model(text, v=V, g=G)
    assert [s.consumers for s in inspect_onnx(model).sites] == [["Gemm(transB=1)"]] * 2
    folded, report = assert_folds(model, sites=2)
    assert report.cones == [] and op_types(folded) == ["Gemm", "Gemm", "Add"]


@pytest.mark.parametrize("square", ["ReduceL2", "ReduceSumSquare"])
def test_a_norm_of_a_transposed_v_normalising_that_transpose_folds(square: str) -> None:
    """``g * T(v) / ||T(v)||``: the normalised tensor is the one the norm reduces, a site of
    T(v); its axes are given in terms of v (T(v)'s axis 1 is v's axis 0)."""
    norm = (
        "n = ReduceL2 <axes = [1]> (vt)"
        if square == "ReduceL2"
        else "q = ReduceSumSquare <axes = [1]> (vt)\n n = Sqrt(q)"
    )
    body = f"vt = Transpose <perm = [1, 0]> (v)\n {norm}\n d = Div(vt, n)\n w = Mul(d, g)"
    model = onnx_model(
        f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            {body}
            y = Gemm <transB = 1> (x, w)
        }}
        """,
        v=rand(4, 3),
        g=G,
    )
    folded, report = assert_folds(model)
    assert op_types(folded) == ["Gemm"]
    assert report.sites[0].axes == [0] and report.sites[0].shape == [4, 3]
