"""Weights computed from constants by layout, cast and exactly rounded arithmetic ops become
one exact initializer each, named after their source and reported per weight;
``weight_norm_only`` leaves them."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import onnx
import pytest

from tests.helpers import assert_close, onnx_model, op_types, rand, run, zero_unit
from tests.onnx.helpers import DECLINED_ON_VALUES, computed_by_runtime
from wnpass import fold_onnx, inspect_onnx
from wnpass.onnx import cones, io
from wnpass.report import ConeReport, FoldReport, SiteReport, fold_summary

HEADER = '<ir_version: 8, opset_import: ["" : 18]>'
X = rand(2, 4)
# w = g * v / ||v|| over axis 1 (the axes an input named one)
SITE = "n = ReduceL2 <keepdims = 1> (v, one)\n d = Div(v, n)\n w = Mul(d, g)"


def folded_model(
    model: onnx.ModelProto, weight_norm_only: bool = False
) -> tuple[onnx.ModelProto, FoldReport]:
    folded, report = fold_onnx(model, weight_norm_only=weight_norm_only)
    assert isinstance(folded, onnx.ModelProto)
    onnx.checker.check_model(folded, full_check=True)
    return folded, report


def weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}


def test_transpose_in_front_of_matmul_is_folded_bit_for_bit() -> None:
    """The dynamo exporter's ``Transpose(W) -> MatMul``: one initializer, W's name, W.T."""
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            t = Transpose <perm = [1, 0]> (fcw)
            y = MatMul(x, t)
        }}
    """
    w = rand(3, 4)
    model = onnx_model(text, names={"fcw": "fc.weight"}, fcw=w)
    folded, report = folded_model(model)
    assert op_types(folded) == ["MatMul"]
    assert weights(folded).keys() == {"fc.weight"}
    np.testing.assert_array_equal(weights(folded)["fc.weight"], w.T)
    (cone,) = report.cones
    assert (cone.name, cone.status, cone.ops, cone.sources, cone.consumers, cone.shape) == (
        "fc.weight", "folded", ["Transpose"], ["fc.weight"], ["MatMul"], [4, 3]
    )  # fmt: skip
    assert cone.form == "constant-cone" and cone.nodes_removed == 1
    assert run(folded, {"x": X})[0].tobytes() == run(model, {"x": X})[0].tobytes()


def lstm_model() -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """The dynamo exporter's LSTM: PyTorch's gates (i, f, g, o) reordered to ONNX's (i, o, f, c)
    with Slice/Concat/Unsqueeze; the biases concatenated."""
    hidden, inputs = 3, 4
    w, b_ih, b_hh = rand(4 * hidden, inputs), rand(4 * hidden), rand(4 * hidden)
    gates = "\n".join(f"g{k} = Slice(wih, s{k}, e{k}, zero)" for k in range(4))
    text = f"""
        {HEADER}
        agraph (float[5, 1, 4] x) => (float[5, 1, 1, 3] y) {{
            {gates}
            cat = Concat <axis = 0> (g0, g3, g1, g2)
            wi = Unsqueeze(cat, zero)
            r = Unsqueeze(rr, zero)
            bc = Concat <axis = 0> (bih, bhh)
            bias = Unsqueeze(bc, zero)
            y = LSTM <hidden_size = 3> (x, wi, r, bias)
        }}
    """
    bounds = {f"s{k}": np.array([k * hidden], np.int64) for k in range(4)}
    bounds |= {f"e{k}": np.array([(k + 1) * hidden], np.int64) for k in range(4)}
    named = {"wih": w, "bih": b_ih, "bhh": b_hh}
    arrays = {"zero": np.array([0], np.int64), "rr": rand(4 * hidden, hidden), **bounds, **named}
    names = {"wih": "lstm.weight_ih_l0", "bih": "lstm.bias_ih_l0", "bhh": "lstm.bias_hh_l0"}
    model = onnx_model(text, names, True, **arrays)
    order = np.concatenate([w[0:3], w[9:12], w[3:6], w[6:9]])[None]
    return model, order, np.concatenate([b_ih, b_hh])[None]


def test_dynamo_lstm_gate_reordering_folds_to_initializers_named_after_the_parameters() -> None:
    model, expected_w, expected_b = lstm_model()
    folded, report = folded_model(model)
    assert op_types(folded) == ["LSTM"]
    found = weights(folded)
    np.testing.assert_array_equal(found["lstm.weight_ih_l0"], expected_w)
    np.testing.assert_array_equal(found["lstm.bias_ih_l0+bias_hh_l0"], expected_b)
    assert {c.name for c in report.cones} == {
        "lstm.weight_ih_l0", "rr", "lstm.bias_ih_l0+bias_hh_l0"
    }  # fmt: skip
    feeds = {"x": rand(5, 1, 4)}
    assert run(folded, feeds)[0].tobytes() == run(model, feeds)[0].tobytes()


def test_inspect_lists_computed_weights_and_a_fold_leaves_none() -> None:
    model, _, _ = lstm_model()
    before = inspect_onnx(model)
    assert before.computed_weights == ["lstm.weight_ih_l0", "rr", "lstm.bias_ih_l0+bias_hh_l0"]
    assert before.remaining == 3 and before.foldable == 0
    assert inspect_onnx(model, weight_norm_only=True).cones == []
    folded, _ = folded_model(model)
    after = inspect_onnx(folded)
    assert after.computed_weights == [] and after.remaining == 0 and after.cones == []
    data = after.to_dict()
    assert data["computed_weights"] == [] and data["remaining"] == 0


def test_weight_norm_only_keeps_todays_behaviour() -> None:
    model, _, _ = lstm_model()
    folded, report = folded_model(model, weight_norm_only=True)
    assert report.cones == [] and report.cones_folded == 0
    assert folded.SerializeToString() == model.SerializeToString()


def test_a_weight_norm_site_feeding_a_cone_is_named_after_its_parameter() -> None:
    """The site folds first; the cone then folds its result and keeps the parameter's name."""
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            {SITE}
            t = Transpose <perm = [1, 0]> (w)
            s = Slice(t, zero, four, zero)
            y = MatMul(x, s)
        }}
    """
    v, g = rand(3, 4), np.abs(rand(3, 1)) + 0.5
    names = {"v": "fc.weight_v", "g": "fc.weight_g"}
    model = onnx_model(
        text,
        names=names,
        v=v,
        g=g,
        one=np.array([1], np.int64),
        zero=np.array([0], np.int64),
        four=np.array([4], np.int64),
    )
    assert inspect_onnx(model).computed_weights == ["fc.weight"]
    folded, report = folded_model(model)
    assert op_types(folded) == ["MatMul"] and weights(folded).keys() == {"fc.weight"}
    assert report.folded == 1 and report.cones_folded == 1
    assert_close(run(folded, {"x": X}), run(model, {"x": X}))


def test_a_scaled_weight_norm_site_is_named_after_its_parameter_by_inspect_and_fold() -> None:
    """``s * (g * v / ||v||)^T``: the cone reads the site's folded weight, which has no declared
    shape; it was named after the scale ``s`` (t112), and inspect must name it as the fold."""
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            {SITE}
            t = Transpose <perm = [1, 0]> (w)
            u = Mul(s, t)
            y = MatMul(x, u)
        }}
    """
    v, g, s = rand(3, 4), np.abs(rand(3, 1)) + 0.5, np.abs(rand(1, 3)) + 0.5
    names = {"v": "fc.weight_v", "g": "fc.weight_g", "s": "fc.scale"}
    model = onnx_model(text, names=names, v=v, g=g, s=s, one=np.array([1], np.int64))
    assert inspect_onnx(model).computed_weights == ["fc.weight.folded"]
    folded, report = folded_model(model)
    assert op_types(folded) == ["MatMul"] and weights(folded).keys() == {"fc.weight.folded"}
    assert [c.name for c in report.cones] == ["fc.weight.folded"]
    assert_close(run(folded, {"x": X}), run(model, {"x": X}))


@pytest.mark.parametrize("layout", [False, True], ids=["direct", "behind-a-transpose"])
def test_a_declined_weight_norm_site_is_reported_once_not_again_as_a_computed_weight(
    layout: bool,
) -> None:
    """A site the fold declines (a zero unit) is reported with its reason; the weight it
    computes, directly or through layout ops, is that site's and is not a second row."""
    use = (
        "t = Transpose <perm = [1, 0]> (w)\ny = MatMul(x, t)"
        if layout
        else "y = Gemm <transB = 1> (x, w)"
    )
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            {SITE}
            {use}
        }}
    """
    arrays = zero_unit(3, 4)
    names = {"v": "fc.weight_v", "g": "fc.weight_g"}
    model = onnx_model(text, names, True, one=np.array([1], np.int64), v=arrays["v"], g=arrays["g"])
    for report in (inspect_onnx(model), folded_model(model)[1]):
        (site,) = report.sites
        assert site.status == "declined" and "zero-norm units" in (site.reason or "")
        assert report.cones == [] and report.remaining == 0
    assert fold_summary(inspect_onnx(model), inspect=True) == [
        "1 weight-norm site: 0 foldable, 1 declined; 4 nodes."
        if not layout
        else "1 weight-norm site: 0 foldable, 1 declined; 5 nodes."
    ]


def test_a_shared_weight_stays_one_tensor() -> None:
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] y, float[2, 3] z) {{
            t = Transpose <perm = [1, 0]> (w)
            y = MatMul(x, t)
            z = MatMul(x, t)
        }}
    """
    folded, report = folded_model(onnx_model(text, w=rand(3, 4)))
    assert op_types(folded) == ["MatMul", "MatMul"] and len(folded.graph.initializer) == 1
    (cone,) = report.cones
    assert cone.consumers == ["MatMul"]


def _normalized_codebook(
    output: str, reader: str = ""
) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """The TorchScript exporter's ``F.normalize`` of a codebook below opset 18, ``Div(W,
    Expand(Clip(||W||)))`` with the norm computed, read transposed by a ``MatMul`` (``y``),
    and by ``reader`` making the second ``output``; the model, the codebook and its norm."""
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] y, {output}) {{
            c = Clip(n, eps)
            e = Expand(c, shape)
            d = Div(w, e)
            t = Transpose <perm = [1, 0]> (d)
            y = MatMul(x, t)
            {reader}
        }}
    """
    w = rand(3, 4)
    norm = np.linalg.norm(w, axis=1, keepdims=True).astype(np.float32)
    model = onnx_model(
        text, names={"w": "codebook.weight"}, w=w, n=norm,
        eps=np.array(1e-12, np.float32), shape=np.array([3, 4], np.int64),
    )  # fmt: skip
    return model, w, norm


def test_a_value_computed_in_a_cone_that_others_read_too_is_folded_once_for_all() -> None:
    """Below opset 18 the TorchScript exporter leaves DAC's normalized codebook as ``W /
    Expand(Clip(||W||))`` with the norm computed, read transposed by a ``MatMul`` and as it
    is by a ``Pow``. Only the ``MatMul``'s weight was folded: the graph went on computing the
    ``Div`` for the ``Pow`` from the codebook and its norm, kept for it, a third copy stored,
    and ``inspect --strict`` called the result clean (t253). The ``Div`` is folded first, one
    tensor both read (as a gain-less weight-norm site folds at opset 18)."""
    model, w, norm = _normalized_codebook("float[3, 4] p", "p = Mul(d, d)")
    folded, report = folded_model(model)
    assert op_types(folded) == ["MatMul", "Mul"]
    assert weights(folded).keys() == {"codebook.weight.folded", "codebook.weight.folded__1"}
    unit = weights(folded)["codebook.weight.folded"]
    assert unit.tobytes() == (w / norm).tobytes()
    assert weights(folded)["codebook.weight.folded__1"].tobytes() == unit.T.copy().tobytes()
    rows = [(c.name, c.consumers, c.ops, c.status) for c in report.cones]
    assert rows == [
        ("codebook.weight.folded", ["Mul", "Transpose"], ["Clip", "Expand", "Div"], "folded"),
        ("codebook.weight.folded__1", ["MatMul"], ["Transpose"], "folded"),
    ]
    assert [(c.name, c.status) for c in inspect_onnx(model).cones] == [
        ("codebook.weight.folded", "foldable"), ("codebook.weight.folded__1", "foldable")
    ]  # fmt: skip
    for new, old in zip(run(folded, {"x": X}), run(model, {"x": X}), strict=True):
        assert new.tobytes() == old.tobytes()


def test_a_value_computed_in_a_cone_that_is_an_output_too_is_folded_once_for_all() -> None:
    """The normalized codebook as an output of the model besides (t255): an output is a
    reader that no node is, so the graph went on computing it from the codebook and its
    norm, a third tensor stored, and ``inspect --strict`` passed."""
    model, _, _ = _normalized_codebook("float[3, 4] d")
    folded, report = folded_model(model)
    assert op_types(folded) == ["Identity", "MatMul"]  # the output keeps its name, ``d``
    assert weights(folded).keys() == {"codebook.weight.folded", "codebook.weight.folded__1"}
    assert [(c.name, c.status) for c in report.cones] == [
        ("codebook.weight.folded", "folded"), ("codebook.weight.folded__1", "folded")
    ]  # fmt: skip
    for new, old in zip(run(folded, {"x": X}), run(model, {"x": X}), strict=True):
        assert new.tobytes() == old.tobytes()


def test_a_value_a_body_s_cone_shares_with_the_main_graph_is_folded_there() -> None:
    """``Mul(w, 0.5)`` read by a ``MatMul`` of the main graph and, transposed, by one in an
    ``If`` branch: the shared value was looked up among the branch's nodes (KeyError, exit
    3; t266). It is folded in the main graph, which computes it."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 4] x, bool c) => (float[2, 4] z, float[2, 4] y) {
            half = Constant <value = float {0.5}> ()
            s = Mul(w, half)
            z = MatMul(x, s)
            y = If (c) <
                then_branch = g1 () => (float[2, 4] a) { st = Transpose(s)  a = MatMul(x, st) },
                else_branch = g2 () => (float[2, 4] b) { b = Identity(x) }
            >
        }
    """
    model = onnx_model(text, w=rand(4, 4))
    folded, report = folded_model(model)
    assert [c.status for c in report.cones] == ["folded", "folded"]
    assert op_types(folded) == ["MatMul", "If"]
    feeds = {"x": X, "c": np.array(True)}
    for new, old in zip(run(folded, feeds), run(model, feeds), strict=True):
        assert new.tobytes() == old.tobytes()


def test_a_shared_value_of_a_weight_the_fold_declines_is_left_with_it() -> None:
    """``Mul(w, k)`` read by a ``Neg`` and, through a float16 ``Div`` the fold declines, by a
    ``MatMul``: the ``Mul`` was folded on its own and the weight left computed, a copy of
    ``w`` stored besides (t255). A shared value is folded only with a weight that folds."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float16[2, 4] x) => (float16[2, 3] y, float[3, 4] p) {
            m = Mul(w, k)
            h = Cast <to = 10> (m)
            d = Div(h, hn)
            t = Transpose <perm = [1, 0]> (d)
            y = MatMul(x, t)
            p = Neg(m)
        }
    """
    model = onnx_model(
        text, w=rand(3, 4), k=np.array(1.5, np.float32), hn=np.array(3.0, np.float16)
    )
    folded, report = folded_model(model)
    assert op_types(folded) == op_types(model)
    assert [(c.name, c.status) for c in report.cones] == [("t", "declined")]


def test_a_bound_two_cones_compute_alike_is_no_weight_of_its_own() -> None:
    """A size computed by arithmetic that two cones' ``Slice``s read (the dynamo exporter
    bounds an LSTM's gates so) is no value of a weight's elements: it is folded inside each
    cone, not as a row of its own."""
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] y, float[2, 3] z) {{
            n = Shape <start = 0, end = 1> (w)
            h = Div(n, two)
            wa = Mul(w, sa)
            wc = Mul(w, sc)
            a = Slice(wa, zero, h, axis)
            c = Slice(wc, h, n, axis)
            ta = Transpose <perm = [1, 0]> (a)
            tc = Transpose <perm = [1, 0]> (c)
            y = MatMul(x, ta)
            z = MatMul(x, tc)
        }}
    """
    w, zero, two = rand(6, 4), np.array([0], np.int64), np.array([2], np.int64)
    sa, sc = np.array(0.5, np.float32), np.array(-2.0, np.float32)
    model = onnx_model(text, w=w, two=two, zero=zero, axis=zero, sa=sa, sc=sc)
    folded, report = folded_model(model)
    assert op_types(folded) == ["MatMul", "MatMul"]
    assert [(c.consumers, c.shape, c.status) for c in report.cones] == [
        (["MatMul"], [4, 3], "folded"), (["MatMul"], [4, 3], "folded")
    ]  # fmt: skip
    assert sorted(a.tobytes() for a in weights(folded).values()) == sorted(
        [(w[:3] * sa).T.copy().tobytes(), (w[3:] * sc).T.copy().tobytes()]
    )


def test_casts_round_exactly_and_bfloat16_is_kept() -> None:
    """float32 -> float16 -> float32 in front of a weight: the float16 rounding stays, and
    the weight is ``w.folded``: its values are not w's (it was named ``w``, t126)."""
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            h = Cast <to = 10> (w)
            f = Cast <to = 1> (h)
            y = MatMul(x, f)
        }}
    """
    w = rand(4, 3) * 100
    folded, _ = folded_model(onnx_model(text, w=w))
    np.testing.assert_array_equal(
        weights(folded)["w.folded"], w.astype(np.float16).astype(np.float32)
    )
    text16 = f"""
        {HEADER}
        agraph (bfloat16[2, 4] x) => (bfloat16[2, 3] y) {{
            t = Transpose <perm = [1, 0]> (w)
            y = MatMul(x, t)
        }}
    """
    wb = rand(3, 4).astype(ml_dtypes.bfloat16)
    folded, _ = folded_model(onnx_model(text16, w=wb))
    (init,) = folded.graph.initializer
    assert init.data_type == onnx.TensorProto.BFLOAT16
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(init), wb.T)


def test_a_bfloat16_layout_keeps_every_bit_of_its_nans() -> None:
    """A Transpose of bfloat16 NaNs with payloads (quiet and signaling) came out as the one
    standard NaN: the weight went to float64 and back through ml_dtypes (t55)."""
    text = f"""
        {HEADER}
        agraph (bfloat16[2, 2] x) => (bfloat16[2, 2] y) {{
            t = Transpose <perm = [1, 0]> (w)
            y = MatMul(x, t)
        }}
    """
    bits = np.array([[0x7FC1, 0x7F81], [0xFF81, 0x3F80]], np.uint16)
    folded, _ = folded_model(onnx_model(text, w=bits.view(ml_dtypes.bfloat16)))
    (init,) = folded.graph.initializer
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(init).view(np.uint16), bits.T)


def test_embedding_table_behind_a_reshape_is_folded() -> None:
    text = f"""
        {HEADER}
        agraph (int64[3] ids) => (float[3, 4] y) {{
            table = Reshape(flat, shape)
            y = Gather(table, ids)
        }}
    """
    flat = rand(40)
    model = onnx_model(text, flat=flat, shape=np.array([10, 4], np.int64))
    folded, _ = folded_model(model)
    assert op_types(folded) == ["Gather"]
    np.testing.assert_array_equal(weights(folded)["flat"], flat.reshape(10, 4))
    ids = {"ids": np.array([0, 9, 3])}
    assert run(folded, ids)[0].tobytes() == run(model, ids)[0].tobytes()


def test_gather_of_a_constant_with_constant_indices_is_part_of_a_cone() -> None:
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 2] y) {{
            w2 = Gather <axis = 1> (w, idx)
            y = MatMul(x, w2)
        }}
    """
    w = rand(4, 5)
    folded, _ = folded_model(onnx_model(text, w=w, idx=np.array([4, -5], np.int64)))
    assert op_types(folded) == ["MatMul"]
    np.testing.assert_array_equal(weights(folded)["w"], w[:, [4, 0]])


def test_a_matmul_of_constants_is_no_layer_whose_weight_is_folded() -> None:
    """A spectral norm in eval mode computes its sigma from constants, ``Reshape(W) @ v``,
    while its Conv reads ``W / sigma``: the Reshape was folded into a copy of W (a HiFi-GAN
    discriminator's file grew 14%, t301), and the MatMul still computed."""
    text = f"""
        {HEADER}
        agraph (float[1, 2, 8] x) => (float[1, 3, 6] y) {{
            wm = Reshape(w, flat)
            wv = MatMul(wm, v)
            sigma = ReduceSum <keepdims = 0> (wv)
            ws = Div(w, sigma)
            y = Conv(x, ws)
        }}
    """
    w, v = rand(3, 2, 3), rand(6, 1)
    model = onnx_model(text, w=w, v=v, flat=np.array([3, 6], np.int64))
    folded, report = folded_model(model)
    assert set(weights(folded)) == {"w", "v", "flat"}  # W stored once
    assert [cone.status for cone in report.cones] == ["declined"]  # the Conv's W / sigma
    assert "computed by ReduceSum" in (report.cones[0].reason or "")
    x = {"x": rand(1, 2, 8)}
    assert_close(run(folded, x), run(model, x))


def test_a_matmul_of_constants_reading_a_layers_twin_cone_reads_its_tensor() -> None:
    """SEW-D projects its relative-position table with the query's Linear, a ``MatMul`` of
    constants beside the layer's own: two ``Transpose`` of one W (the dynamo exporter without
    its optimizer, TorchScript). The constant MatMul's was left as a copy of W would be (t301)
    though the layer's, folded, was the same tensor: W stayed for it, stored twice, and a
    second fold folded it (t334). Both read one tensor; a second fold changes nothing."""
    text = f"""
        {HEADER}
        agraph (float[3, 4] x) => (float[3, 5] y, float[2, 5] p) {{
            t1 = Transpose(w)
            p = MatMul(table, t1)
            t2 = Transpose(w)
            y = MatMul(x, t2)
        }}
    """
    w, table = rand(5, 4), rand(2, 4)
    model = onnx_model(text, w=w, table=table)
    folded, report = folded_model(model)
    assert op_types(folded) == ["MatMul", "MatMul"] and set(weights(folded)) == {"w", "table"}
    np.testing.assert_array_equal(weights(folded)["w"], w.T)
    assert [cone.status for cone in report.cones] == ["folded", "folded"]
    x = {"x": rand(3, 4)}
    assert all(
        a.tobytes() == b.tobytes() for a, b in zip(run(folded, x), run(model, x), strict=True)
    )
    again, report = folded_model(folded)
    assert report.cones == [] and onnx.printer.to_text(again.graph) == onnx.printer.to_text(
        folded.graph
    )


@pytest.mark.parametrize("layer_in", ["branches", "main graph"])
def test_twin_cones_across_an_ifs_branches_fold_into_one_tensor(layer_in: str) -> None:
    """t338: the layer's ``Transpose(W)`` in both branches of an ``If``, the constant
    ``MatMul``'s in the main graph: the twins were looked for in one graph, and W was stored
    twice. The fold folds a body's cone of main-graph constants into the main graph: so are
    twins told. t340: the other way round, each branch's held back cone counted the other's
    read of W as a copy, both were held back, and W was stored twice (the layer's weight
    named ``w__1``): twins held back read W for the tensor, as the layer does."""
    main, branch = ("table", "x") if layer_in == "branches" else ("x", "table")
    rows = {"x": 3, "table": 2}[branch]
    outs = {"x": "y", "table": "p"}
    text = f"""
        {HEADER}
        agraph (float[3, 4] x, bool c) => (float[3, 5] y, float[2, 5] p) {{
            t1 = Transpose(w)
            {outs[main]} = MatMul({main}, t1)
            {outs[branch]} = If(c) <then_branch = g1 () => (float[{rows}, 5] b1) {{
                t2 = Transpose(w)
                b1 = MatMul({branch}, t2)
            }}, else_branch = g2 () => (float[{rows}, 5] b2) {{
                t3 = Transpose(w)
                b2 = MatMul({branch}, t3)
            }}>
        }}
    """
    w = rand(5, 4)
    model = onnx_model(text, w=w, table=rand(2, 4))
    folded, report = folded_model(model)
    assert set(weights(folded)) == {"w", "table"}
    np.testing.assert_array_equal(weights(folded)["w"], w.T)
    assert [cone.status for cone in report.cones] == ["folded"] * 3
    for c in (True, False):
        feeds = {"x": rand(3, 4), "c": np.array(c)}
        assert all(
            a.tobytes() == b.tobytes()
            for a, b in zip(run(folded, feeds), run(model, feeds), strict=True)
        )
    again, _ = folded_model(folded)
    assert onnx.printer.to_text(again.graph) == onnx.printer.to_text(folded.graph)


@pytest.mark.parametrize(
    ("graph", "ops"),
    [
        ("wt = Transpose(w)\n c0 = MatMul(c, wt)\n y = Add(x, c0)", ["MatMul", "Add"]),
        ("wi = Identity(w)\n c0 = MatMul(c, wi)\n y0 = MatMul(x, w)\n y = Add(y0, c0)",
         ["MatMul", "MatMul", "Add"]),
    ],
    ids=["its only reader", "passed on"],
)  # fmt: skip
def test_a_matmul_of_constants_whose_weight_would_be_no_copy_is_folded(
    graph: str, ops: list[str]
) -> None:
    """Only where the fold would store a copy (W read elsewhere too) is a constant MatMul's
    input left: a Transpose that is W's only reader, and an Identity that passes W on, fold as
    before (the first rule left every constant MatMul's input, t305)."""
    text = f"""
        {HEADER}
        agraph (float[4, 3] x) => (float[4, 3] y) {{
            {graph}
        }}
    """
    w = rand(3, 6) if "Transpose" in graph else rand(6, 3)
    model = onnx_model(text.replace("float[4, 3] x", "float[4, 6] x") if "y0" in graph else text,
                       w=w, c=rand(4, 6))  # fmt: skip
    folded, _ = folded_model(model)
    assert op_types(folded) == ops and set(weights(folded)) == {"c", "w"}


@pytest.mark.parametrize("case", DECLINED_ON_VALUES, ids=list(DECLINED_ON_VALUES))
def test_inspect_declines_a_computed_weight_as_the_fold_does(case: str) -> None:
    """Its ops alone look foldable; the fold declines it on computing it, and so does inspect,
    with the fold's reason: nothing is left to fold, before or after the fold."""
    text, arrays = DECLINED_ON_VALUES[case]
    model = onnx_model(text, None, True, **arrays)
    folded, report = folded_model(model)
    (done,) = report.cones
    assert done.status == "declined" and done.reason
    for inspected in (inspect_onnx(model), inspect_onnx(folded)):
        (cone,) = inspected.cones
        assert (cone.status, cone.reason) == (done.status, done.reason)
        assert inspected.remaining == 0


def test_inspect_computes_a_cone_over_a_weight_norm_site_from_the_folded_weight() -> None:
    """The fold folds the site first; the cone then slices its weight (up to 1e5) and casts
    it to float16, which overflows: the cone is declined, in the inspection too, with the
    fold's reason."""
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            {SITE}
            s = Slice(w, zero, three, zero)
            h = Cast <to = 10> (s)
            t = Cast <to = 1> (h)
            y = Gemm <transB = 1> (x, t)
        }}
    """
    ints = {k: np.array([n], np.int64) for k, n in (("zero", 0), ("one", 1), ("three", 3))}
    # unit 0 points along its first axis: its weight there is 1e5 whatever the draw (a random
    # v alone overflows only where some unit leans more than 0.66 along one axis)
    v = rand(3, 4)
    v[0] = [1, 0, 0, 0]
    arrays = {"v": v, "g": np.full((3, 1), 1e5, np.float32), **ints}
    model = onnx_model(text, {"v": "fc.weight_v"}, True, **arrays)
    _, report = folded_model(model)
    (done,) = report.cones
    assert report.folded == 1 and done.status == "declined" and "float16" in (done.reason or "")
    ir_model = io.from_proto(model)
    inspected = inspect_onnx(ir_model)
    (cone,) = inspected.cones
    assert (cone.name, cone.status, cone.reason) == (done.name, done.status, done.reason)
    assert inspected.remaining == 1  # the site alone
    # the site's weight it computed is not left in the model
    assert all(out.const_value is None for node in ir_model.graph for out in node.outputs)


# A weight-norm site's weight read by a Gemm and, transposed, by a MatMul: two layouts.
TWO_LAYOUTS = f"""
    {HEADER}
    agraph (float[2, 4] x) => (float[2, 3] y, float[2, 3] z) {{
        {SITE}
        y = Gemm <transB = 1> (x, w)
        t = Transpose <perm = [1, 0]> (w)
        z = MatMul(x, t)
    }}
"""


def test_inspect_names_and_shapes_a_weight_computed_from_a_sites_weight_as_the_fold_does() -> None:
    """A layer's weight-normed weight read by a Gemm and, transposed, by a MatMul: the fold
    writes the site's weight and its transpose as a second tensor, ``fc.weight__1`` (3x4).
    inspect says the same, row for row, not the site's name with an unknown shape."""
    names = {"v": "fc.weight_v", "g": "fc.weight_g"}
    arrays = {"v": rand(3, 4), "g": np.abs(rand(3, 1)) + 0.5, "one": np.array([1], np.int64)}
    model = onnx_model(TWO_LAYOUTS, names, True, **arrays)
    _, report = folded_model(model)
    inspected = inspect_onnx(model)
    assert [(c.name, c.shape, c.status) for c in report.cones] == [
        ("fc.weight__1", [4, 3], "folded")
    ]
    done_rows: list[SiteReport | ConeReport] = [*report.sites, *report.cones]
    seen_rows: list[SiteReport | ConeReport] = [*inspected.sites, *inspected.cones]
    for done, seen in zip(done_rows, seen_rows, strict=True):
        assert (seen.name, seen.shape, seen.dtype, seen.status) == (
            done.name, done.shape, done.dtype, "foldable"
        )  # fmt: skip
    assert inspected.nodes_before == inspected.nodes_after == 6
    assert fold_onnx(model)[1].cones_folded == 1  # inspecting changed nothing in the model


def test_an_inspection_by_folding_a_copy_logs_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The fold an inspection runs on a copy warned of each site it declined ("not folding
    w: ...", a name of the copy's graph); its rows say why, and inspect writes nothing."""
    arrays = {**zero_unit(3, 4), "one": np.array([1], np.int64)}
    model = onnx_model(TWO_LAYOUTS, {"v": "fc.weight_v", "g": "fc.weight_g"}, True, **arrays)
    with caplog.at_level(logging.DEBUG, logger="wnpass"):
        inspected = inspect_onnx(model)
    (site,) = inspected.sites
    assert site.status == "declined" and "zero-norm units" in (site.reason or "")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_weight_computed_by_other_ops_is_reported_declined_and_left() -> None:
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            s = Exp(w)
            t = Transpose <perm = [1, 0]> (s)
            y = MatMul(x, t)
        }}
    """
    model = onnx_model(text, w=rand(3, 4))
    folded, report = folded_model(model)
    assert op_types(folded) == ["Exp", "Transpose", "MatMul"]
    (cone,) = report.cones
    assert cone.status == "declined"
    assert cone.reason == "computed by Exp, not by layout, cast or exactly rounded arithmetic ops"
    assert inspect_onnx(model).computed_weights == []
    assert report.to_dict()["cones_declined"] == 1  # the summary's "1 declined", in the JSON
    # declined is not ok: "ok": true said otherwise, a gate reading it passed it (t78)
    assert not report and report.to_dict()["ok"] is False


def test_integer_arithmetic_on_slice_bounds_is_part_of_a_cone() -> None:
    """The dynamo exporter without its optimizer bounds an LSTM's gates by ``Mul(Shape(h),
    k)``: declined as computed by Mul (t72). Integer arithmetic on sizes and indices moves no
    element of the weight; a float Mul of its elements still declines (above)."""
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 6] y) {{
            full = Shape(w)
            rows = Gather(full, zero)
            half = Div(rows, two)
            end = Mul(half, two)
            start = Sub(end, half)
            a = Slice(w, start, end, axis)
            b = Slice(w, axis, half, axis)
            cat = Concat <axis = 0> (a, b)
            y = Gemm <transB = 1> (x, cat)
        }}
    """
    w = rand(6, 4)
    zero, two = np.array([0], np.int64), np.array(2, np.int64)
    model = onnx_model(text, w=w, axis=zero, zero=zero, two=two)
    folded, report = folded_model(model)
    assert op_types(folded) == ["Gemm"]
    (cone,) = report.cones
    assert cone.status == "folded" and "Mul" in cone.ops
    np.testing.assert_array_equal(weights(folded)[cone.name], np.concatenate([w[3:], w[:3]]))
    assert run(folded, {"x": X})[0].tobytes() == run(model, {"x": X})[0].tobytes()


@pytest.mark.parametrize("case", ["float bound", "pad value"])
def test_float_arithmetic_in_a_cone_is_folded_as_the_graph_rounds_it(case: str) -> None:
    """Float arithmetic in a cone, in a bound cast to an integer as in a Pad's constant value,
    which goes into the weight, is computed step by step in the graph's type: ``1 + 2**-24 +
    2**-24`` is 1.0 in float32 added twice, as ONNX Runtime adds it, where rounding once from
    float64 gives 1.0000001 (t74: that fold was declined instead)."""
    body = {
        "float bound": "h = Mul(f, f)\n k = Cast <to = 7> (h)\n p = Slice(w, zero, k, zero)",
        "pad value": "s = Add(f, e)\n pv = Add(s, e)\n p = Pad(w, pads, pv)",
    }[case]
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, ?] y) {{
            {body}
            y = Gemm <transB = 1> (x, p)
        }}
    """
    constants = {
        "f": np.array([2.0], np.float32) if case == "float bound" else np.array(1.0, np.float32),
        "e": np.array(2.0**-24, np.float32),
        "zero": np.array([0], np.int64),
        "pads": np.array([1, 0, 1, 0], np.int64),
    }
    used: dict[str, Any] = {k: a for k, a in constants.items() if k in body}
    w = rand(6, 4)
    model = onnx_model(text, w=w, **used)
    folded, report = folded_model(model)
    (cone,) = report.cones
    assert cone.status == "folded" and op_types(folded) == ["Gemm"]
    (weight,) = [a for name, a in weights(folded).items() if name == cone.name]
    assert weight.tobytes() == computed_by_runtime(model, "p", {"x": X}).tobytes()
    if case == "pad value":
        assert weight[0].tolist() == [1.0] * 4 and weight[1:-1].tobytes() == w.tobytes()
    assert run(folded, {"x": X})[0].tobytes() == run(model, {"x": X})[0].tobytes()


def test_a_chain_of_arithmetic_is_rounded_at_each_step() -> None:
    """``(W * a) * b`` in float32 is rounded after each Mul, as ONNX Runtime computes it: the
    folded weight is its weight bit for bit, where rounding the exact product once differs in
    some elements (a guard that the case tells the two apart)."""
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            s = Mul(w, a)
            t = Mul(s, b)
            y = MatMul(x, t)
        }}
    """
    w = rand(4, 3) * np.float32(7.0)
    a, b = np.array(0.1, np.float32), np.array(3.3, np.float32)
    model = onnx_model(text, w=w, a=a, b=b)
    folded, report = folded_model(model)
    (cone,) = report.cones
    assert (cone.name, cone.status, cone.ops, cone.sources) == (
        "w.folded", "folded", ["Mul", "Mul"], ["w", "a", "b"]
    )  # fmt: skip
    assert op_types(folded) == ["MatMul"]
    weight = weights(folded)["w.folded"]
    assert weight.tobytes() == computed_by_runtime(model, "t", {"x": X}).tobytes()
    once = (w.astype(np.float64) * float(a) * float(b)).astype(np.float32)
    assert (weight != once).any()
    assert run(folded, {"x": X})[0].tobytes() == run(model, {"x": X})[0].tobytes()


def _with(w: np.ndarray, at: tuple[int, int], value: float | int) -> np.ndarray:
    """``w`` with one element set (a NaN's bits where ``value`` is an int)."""
    w = w.copy()
    if isinstance(value, int):
        w.view(np.uint32)[at] = value
    else:
        w[at] = value
    return w


SNAN, NAN_A, NAN_B = 0x7F800001, 0x7FC12345, 0xFFC00077  # float32 bits
_W = rand(4, 3)
# Cones whose graph value ONNX Runtime's CPU kernels give otherwise (t112, t114): declined,
# each with its reason. (ONNX text, its constants, the reason's start.)
NOT_AS_ONNX_RUNTIME: dict[str, tuple[str, dict[str, np.ndarray], str]] = {
    # no float16 Mul kernel: Casts around each Mul, the pair between them removed, so the
    # chain is rounded once (a third of the elements an ulp off the graph's)
    "float16 arithmetic": (
        "s = Mul(w, a)\n t = Mul(s, a)\n c = Cast <to = 1> (t)",
        {"w": _W.astype(np.float16), "a": np.array(0.1, np.float16)},
        "Mul 's' on float16: ONNX Runtime computes float16 arithmetic in float32",
    ),
    # ONNX Runtime ignores a NaN bound; numpy's maximum propagates it
    "NaN bound": (
        "c = Clip(w, nan)",
        {"w": _W, "nan": np.array(np.nan, np.float32)},
        "Clip 'c': a NaN bound, which runtimes read differently",
    ),
    # ONNX Runtime refuses a bound that is not one value, or of more than one axis
    "bound of several values": (
        "c = Clip(w, low)",
        {"w": _W, "low": np.zeros(3, np.float32)},
        "Clip 'c': a bound of shape [3], not one value",
    ),
    "bound of two axes": (
        "c = Clip(w, low)",
        {"w": _W, "low": np.zeros((1, 1), np.float32)},
        "Clip 'c': a bound of shape [1, 1], not one value",
    ),
    # clamp(min=0) of a weight holding -0.0: ONNX Runtime keeps -0.0 here, +0.0 in Max(0, W)
    "+0 and -0": (
        "c = Clip(w, zero)",
        {"w": _with(_W, (0, 0), -0.0), "zero": np.array(0.0, np.float32)},
        "Clip 'c': +0 and -0 meet",
    ),
    # which NaN's bits ONNX Runtime keeps depends on the operand order and the length
    "two NaNs in Add": (
        "c = Add(w, s)",
        {"w": _with(_W, (1, 1), NAN_A), "s": np.array([NAN_B], np.uint32).view(np.float32)},
        "Add 'c': two NaNs meet",
    ),
    "two NaNs in Max": (
        "c = Max(s, w)",
        {"w": _with(_W, (1, 1), NAN_A), "s": np.array([NAN_B], np.uint32).view(np.float32)},
        "Max 'c': two NaNs meet",
    ),
    # numpy quiets a signalling NaN where it widens it; ONNX Runtime's Clip keeps it
    "signalling NaN": (
        "c = Clip(w, low)",
        {"w": _with(_W, (2, 0), SNAN), "low": np.array(-1.0, np.float32)},
        "Clip 'c' reads a signalling NaN",
    ),
}


@pytest.mark.parametrize("case", NOT_AS_ONNX_RUNTIME)
def test_a_cone_onnx_runtime_computes_otherwise_is_declined(case: str) -> None:
    body, constants, reason = NOT_AS_ONNX_RUNTIME[case]
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            {body}
            y = MatMul(x, c)
        }}
    """
    arrays: dict[str, Any] = dict(constants)
    model = onnx_model(text, None, "bound of" not in case, **arrays)
    folded, report = fold_onnx(model)
    (cone,) = report.cones
    assert cone.status == "declined" and (cone.reason or "").startswith(reason), cone.reason
    assert op_types(folded) == op_types(model)
    assert [c.status for c in inspect_onnx(model).cones] == ["declined"]


def test_a_clamp_with_castlike_bounds_folds_bit_for_bit() -> None:
    """The dynamo exporter without its optimizer writes ``W.clamp(-0.5, 0.5)`` with bounds cast
    by ``CastLike(bound, W)``: declined as computed by CastLike (t120), a cast like any."""
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            low = CastLike(lo, w)
            high = CastLike(hi, w)
            c = Clip(w, low, high)
            y = MatMul(x, c)
        }}
    """
    lo, hi = np.array(-0.5, np.float32), np.array(0.5, np.float32)
    model = onnx_model(text, w=rand(4, 3), lo=lo, hi=hi)
    folded, report = folded_model(model)
    (cone,) = report.cones
    assert cone.status == "folded" and "CastLike" in cone.ops, cone.reason
    assert (
        weights(folded)[cone.name].tobytes() == computed_by_runtime(model, "c", {"x": X}).tobytes()
    )


@pytest.mark.parametrize(
    ("dtype", "op", "opset"),
    [(np.float16, "Clip", 11), (ml_dtypes.bfloat16, "Max", 18)],
    ids=["float16 Clip-11", "bfloat16 Max"],
)
def test_a_selection_onnx_runtime_has_no_kernel_for_is_declined(
    dtype: type, op: str, opset: int
) -> None:
    """ONNX Runtime runs a float16 Clip below opset 12, or a bfloat16 selection, in float32
    between Casts it inserts and removes: the MatMul that reads it then ran in float32 on the
    original graph, in float16 on the folded one, an ulp apart in its output (t120)."""
    make = onnx.helper
    bound: np.ndarray
    if op == "Clip":
        node = make.make_node("Clip", ["w", "lo"], ["c"])
        bound = np.array(-0.5, dtype)
    else:
        node = make.make_node("Max", ["w", "lo"], ["c"])
        bound = np.array([-0.5], dtype)
    graph = make.make_graph(
        [
            node,
            make.make_node("Cast", ["c"], ["f"], to=1),
            make.make_node("MatMul", ["x", "f"], ["y"]),
        ],
        "g",
        [make.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4])],
        [make.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])],
        [
            onnx.numpy_helper.from_array(rand(4, 3).astype(dtype), "w"),
            onnx.numpy_helper.from_array(bound, "lo"),
        ],
    )
    model = make.make_model(graph, opset_imports=[make.make_opsetid("", opset)], ir_version=8)
    folded, report = fold_onnx(model)
    (cone,) = report.cones
    assert cone.status == "declined" and "has no kernel for it" in (cone.reason or "")
    assert op_types(folded) == op_types(model)


def test_a_signalling_nan_only_moved_keeps_its_bits_beside_arithmetic() -> None:
    """``Concat(W, Clip(V))``: the Clip's result was held in float64, so the Concat widened W
    too, which quieted W's signalling NaN (0x7f800001 became 0x7fc00001; ONNX Runtime keeps
    it, t114). Each result is held in its type."""
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            k = Clip(v, low)
            c = Concat <axis = 0> (w, k)
            y = MatMul(x, c)
        }}
    """
    w = _with(rand(2, 3), (0, 1), SNAN)
    model = onnx_model(text, w=w, v=rand(2, 3), low=np.array(-0.5, np.float32))
    folded, report = folded_model(model)
    (cone,) = report.cones
    assert cone.status == "folded", cone.reason
    weight = weights(folded)[cone.name]
    assert weight[:2].view(np.uint32).tolist() == w.view(np.uint32).tolist()
    assert weight.tobytes() == computed_by_runtime(model, "c", {"x": X}).tobytes()


@pytest.mark.parametrize(
    ("node", "reason"),
    [
        (
            onnx.helper.make_node("Add", ["w", "b"], ["c"], broadcast=1, axis=0),
            "Add with the broadcast attribute of opset 6 is not evaluated",
        ),
        (onnx.helper.make_node("Add", ["w", "b"], ["c"]), "Add 'c' broadcasts, which it does not"),
        (onnx.helper.make_node("Max", ["w", "b"], ["c"]), "Max 'c' broadcasts, which it does not"),
        (onnx.helper.make_node("Clip", ["w"], ["c"], min=2.0, max=-1.0), "Clip 'c': min above max"),
    ],
    ids=["Add broadcast=1 axis=0", "Add broadcasting", "Max broadcasting", "Clip min above max"],
)
def test_an_opset_6_op_evaluated_otherwise_or_refused_is_declined(
    node: onnx.NodeProto, reason: str
) -> None:
    """Add-6 with ``broadcast=1, axis=0`` aligns b with axis 0 (the fold aligned it with the
    last, as numpy does); Add-6 without it and Max-6 do not broadcast, and Clip-6 takes no min
    above its max (ONNX Runtime refuses them; the fold made them run): declined (t114, t116)."""
    make = onnx.helper
    graph = make.make_graph(
        [node, make.make_node("MatMul", ["x", "c"], ["y"])],
        "g",
        [make.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])],
        [make.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])],
        [
            onnx.numpy_helper.from_array(rand(3, 3), "w"),
            onnx.numpy_helper.from_array(rand(3), "b"),
        ],
    )
    model = make.make_model(graph, opset_imports=[make.make_opsetid("", 6)], ir_version=4)
    folded, report = fold_onnx(model)
    (cone,) = report.cones
    assert cone.status == "declined" and reason in (cone.reason or ""), cone.reason
    assert op_types(folded) == op_types(model)


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ("n = Clip(c, eps)\n m = Expand(n, shape)\n t = Div(fcw, m)", "fc.weight.folded"),
        ("t = Add(fcw, fcd)", "fc.weight+delta.folded"),
        ("t = Max(fcw, fcd)", "fc.weight+delta.folded"),
        ("s = Mul(fcw, two)\n t = Transpose <perm = [1, 0]> (s)", "fc.weight.folded"),
        ("t = Mul(two, fcw)", "fc.weight.folded"),
        ("t = Mul(fcf, two)", "fc.weight.folded"),
        ("i = Cast <to = 6> (fcw)\n t = Cast <to = 1> (i)", "fc.weight.folded"),
        ("h = Cast <to = 16> (fcw)\n t = Cast <to = 1> (h)", "fc.weight.folded"),
        ("d = Cast <to = 11> (fcw)\n t = Cast <to = 1> (d)", "fc.weight"),
    ],
    ids=[
        "normalized",
        "added",
        "max",
        "scaled",
        "scale first",
        "named folded",
        "through int32",
        "through bfloat16",
        "through double",
    ],
)
def test_a_weight_computed_by_arithmetic_is_named_after_its_largest_constants(
    body: str, name: str
) -> None:
    """A weight computed by arithmetic is named after its largest constants: ``W /
    Expand(Clip(||W||))`` (the TorchScript exporter's ``F.normalize`` of a weight below opset
    18), ``W * s`` and ``s * W`` are W's (``s * W`` was the scale's, t112), with ``.folded``
    (its values are not W's), once (a folded site's weight is named so already); ``W + D``
    and ``Max(W, D)`` are both's. So is a cast that changes W's values on the way (to int32
    or bfloat16 and back: it kept W's name, t126); one through double changes none."""
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 4] y) {{
            {body}
            y = MatMul(x, t)
        }}
    """
    arrays = {
        "fcw": rand(4, 4),
        "fcd": rand(4, 4),
        "fcf": rand(4, 4),
        "c": np.abs(rand(4, 1)) + 0.5,
        "eps": np.array(1e-12, np.float32),
        "shape": np.array([4, 4], np.int64),
        "two": np.array(2.0, np.float32),
    }
    used = {k: v for k, v in arrays.items() if k in re.findall(r"\w+", body)}
    renames = {"fcw": "fc.weight", "fcd": "fc.delta", "fcf": "fc.weight.folded"}
    model = onnx_model(text, names=renames, **used)
    folded, report = folded_model(model)
    (cone,) = report.cones
    assert (cone.status, cone.name) == ("folded", name)
    assert weights(folded).keys() == {name}
    assert run(folded, {"x": X})[0].tobytes() == run(model, {"x": X})[0].tobytes()


def test_activations_and_plain_initializers_are_not_cones() -> None:
    text = f"""
        {HEADER}
        agraph (float[4, 2] x) => (float[3, 2] y) {{
            t = Transpose <perm = [1, 0]> (w)
            y = MatMul(t, x)
        }}
    """
    plain = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            y = MatMul(x, w)
        }}
    """
    assert inspect_onnx(onnx_model(plain, w=rand(4, 3))).cones == []
    _, report = folded_model(onnx_model(text, w=rand(4, 3)))
    assert [c.name for c in report.cones] == ["w"]


def test_large_weights_are_computed_when_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above EAGER_BYTES the folded weight is a LazyTensor (one weight in memory at a time)."""
    import onnx_ir as ir

    from wnpass.onnx import io

    monkeypatch.setattr(cones, "EAGER_BYTES", 0)
    model, expected_w, _ = lstm_model()
    ir_model, _ = fold_onnx(io.from_proto(model), in_place=True)
    tensor = ir_model.graph.initializers["lstm.weight_ih_l0"].const_value
    assert isinstance(tensor, ir.LazyTensor)  # not computed until it is written
    folded, _ = folded_model(model)
    np.testing.assert_array_equal(weights(folded)["lstm.weight_ih_l0"], expected_w)


def test_cone_in_a_local_function_becomes_a_constant() -> None:
    text = f"""
        {HEADER.replace('"" : 18', '"" : 18, "local" : 1')}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            y = local.proj(x)
        }}
        <domain: "local", opset_import: ["" : 18]>
        proj (x) => (y) {{
            w = Constant <value = float[3, 4] {{1,2,3,4,5,6,7,8,9,10,11,12}}> ()
            t = Transpose <perm = [1, 0]> (w)
            y = MatMul(x, t)
        }}
    """
    model = onnx_model(text)
    folded, report = folded_model(model)
    body = [n.op_type for n in folded.functions[0].node]
    assert body == ["Constant", "MatMul"]
    (cone,) = report.cones
    assert cone.graph == "function local::proj" and cone.status == "folded"
    assert run(folded, {"x": X})[0].tobytes() == run(model, {"x": X})[0].tobytes()


def test_a_layer_used_twice_stays_one_tensor() -> None:
    """Two Transpose nodes of one W (the dynamo exporter, a layer called twice): one tensor."""
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] z) {{
            t1 = Transpose <perm = [1, 0]> (w)
            y = MatMul(x, t1)
            t2 = Transpose <perm = [1, 0]> (w)
            z0 = MatMul(x, t2)
            z = Add(y, z0)
        }}
    """
    w = rand(3, 4)
    model = onnx_model(text, w=w)
    folded, report = folded_model(model)
    assert op_types(folded) == ["MatMul", "MatMul", "Add"]
    assert list(weights(folded)) == ["w"]
    np.testing.assert_array_equal(weights(folded)["w"], w.T)
    assert [(c.name, c.status) for c in report.cones] == [("w", "folded"), ("w", "folded")]
    assert run(folded, {"x": X})[0].tobytes() == run(model, {"x": X})[0].tobytes()


def test_a_gather_with_initializer_indices_is_part_of_a_cone_and_sharing_stays_valid() -> None:
    """Gather(Transpose(W), idx) with idx an initializer is a cone (not an embedding lookup),
    and a second Transpose(W) folded after it never points at a removed initializer."""
    import onnx

    from tests.helpers import assert_close, onnx_model, rand, run
    from wnpass import fold_onnx

    text = """
        <ir_version: 8, opset_import: ["" : 18]>
        agraph (float[2, 4] x, float[2, 4] x2) => (float[2, 2] y, float[2, 3] z) {
            t1 = Transpose <perm = [1, 0]> (w)
            g = Gather <axis = 1> (t1, idx)
            y = MatMul(x, g)
            t2 = Transpose <perm = [1, 0]> (w)
            z = MatMul(x2, t2)
        }
    """
    import numpy as np

    model = onnx_model(text, w=rand(3, 4), idx=np.array([0, 2], np.int64))
    feeds = {"x": rand(2, 4), "x2": rand(2, 4)}
    folded, report = fold_onnx(model)
    onnx.checker.check_model(folded, full_check=True)
    assert [n.op_type for n in folded.graph.node] == ["MatMul", "MatMul"]
    assert [c.status for c in report.cones] == ["folded", "folded"]
    assert_close(run(folded, feeds), run(model, feeds), rtol=0, atol=0)


def test_an_identity_of_a_parameter_is_read_from_the_parameter_not_copied() -> None:
    """TorchScript keeps one initializer for parameters of equal values and gives the others as
    ``Identity(initializer)``: the consumer reads that initializer itself; no second copy. Its
    row says which parameter it was (``read_as``, t320: a zero bias named ``m.mean`` only)."""
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 4] y) {{
            b2 = Identity(b1)
            h = Gemm <transB = 1> (x, w1, b1)
            y = Gemm <transB = 1> (h, w2, b2)
        }}
    """
    model = onnx_model(
        text,
        names={"w1": "c1.weight", "b1": "c1.bias", "w2": "c2.weight"},
        w1=rand(4, 4),
        b1=rand(4),
        w2=rand(4, 4),
    )
    (inspected,) = inspect_onnx(model).cones
    folded, report = folded_model(model)
    assert list(weights(folded)) == ["c1.weight", "c1.bias", "c2.weight"]
    assert [list(n.input) for n in folded.graph.node][1] == ["h", "c2.weight", "c1.bias"]
    (cone,) = report.cones
    assert (cone.name, cone.status, cone.ops) == ("c1.bias", "folded", ["Identity"])
    assert (cone.read_as, inspected.name, inspected.read_as) == ("b2", "c1.bias", "b2")
    assert cone.shape == [4]
    assert folded.ByteSize() < model.ByteSize()
    assert run(folded, {"x": X})[0].tobytes() == run(model, {"x": X})[0].tobytes()


def test_an_identity_chain_that_is_a_constants_only_use_gives_it_the_consumers_name() -> None:
    """``Identity``/``Cast`` to its own dtype over a constant used nowhere else: the tensor is
    kept once, under the name its consumer read (the parameter the exporter named there)."""
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            a = Identity(src)
            w = Cast <to = 1> (a)
            y = MatMul(x, w)
        }}
    """
    w = rand(4, 3)
    model = onnx_model(text, names={"src": "onnx::MatMul_8", "w": "fc.weight"}, check=False, src=w)
    model.graph.node[1].output[0] = "fc.weight"  # the Cast's output, as the exporter names it
    onnx.checker.check_model(model, full_check=True)
    given = model.SerializeToString()
    folded, report = folded_model(model)
    assert model.SerializeToString() == given  # the caller's model is not renamed
    assert op_types(folded) == ["MatMul"] and list(weights(folded)) == ["fc.weight"]
    assert weights(folded)["fc.weight"].tobytes() == w.tobytes()
    assert [(c.name, c.read_as) for c in report.cones] == [("fc.weight", None)]
    assert [(c.name, c.read_as) for c in inspect_onnx(model).cones] == [("fc.weight", None)]
    assert run(folded, {"x": X})[0].tobytes() == run(model, {"x": X})[0].tobytes()


def test_the_same_transpose_of_a_tied_weight_is_stored_once() -> None:
    """A tied embedding: the table read by Gather and, transposed, by two MatMuls. The second
    layout is inherent (the table stays for the Gather), but it is stored once, not twice."""
    text = f"""
        {HEADER}
        agraph (int64[2] i, float[2, 4] x) => (float[2, 4] e, float[2, 3] y, float[2, 3] z) {{
            e = Gather(emb, i)
            t1 = Transpose <perm = [1, 0]> (emb)
            y = MatMul(x, t1)
            t2 = Transpose <perm = [1, 0]> (emb)
            z = MatMul(x, t2)
        }}
    """
    emb = rand(3, 4)
    model = onnx_model(text, names={"emb": "embed.weight"}, emb=emb)
    folded, report = folded_model(model)
    assert list(weights(folded)) == ["embed.weight", "embed.weight__1"]
    np.testing.assert_array_equal(weights(folded)["embed.weight__1"], emb.T)
    assert [c.name for c in report.cones] == ["embed.weight__1", "embed.weight__1"]
    feeds = {"i": np.array([0, 2], np.int64), "x": X}
    for ours, theirs in zip(run(folded, feeds), run(model, feeds), strict=True):
        assert ours.tobytes() == theirs.tobytes()


def test_a_constant_pad_in_front_of_a_weight_is_folded_bit_for_bit() -> None:
    """VITS' relative-position embeddings as TorchScript writes them: Slice(Pad(emb, pads))
    -> Transpose -> MatMul, the pads computed by ConstantOfShape/Concat/Reshape/Slice/
    Transpose/Cast. Pad moves elements and writes zeros: the folded weight is exact."""
    text = f"""
        {HEADER}
        agraph (float[1, 6, 4] x) => (float[1, 6, 6] y) {{
            zeros = ConstantOfShape <value = int64[1] {{0}}> (four)
            cat = Concat <axis = 0> (mid, zeros)
            r = Reshape(cat, shape)
            rev = Slice(r, start, stop, zero, step)
            tr = Transpose <perm = [1, 0]> (rev)
            flat = Reshape(tr, minus1)
            pads = Cast <to = 7> (flat)
            p = Pad(emb, pads, pv)
            s = Slice(p, s0, s1, one)
            w = Transpose <perm = [0, 2, 1]> (s)
            y = MatMul(x, w)
        }}
    """
    emb = rand(1, 5, 4)
    arrays: dict[str, np.ndarray] = {
        "four": np.array([2], np.int64),
        "mid": np.array([0, 0, 2, 2], np.int64),  # (axis 1 begin, end), (axis 2 ...) reversed
        "shape": np.array([-1, 2], np.int64),
        "start": np.array([-1], np.int64),
        "stop": np.array([-(2**62)], np.int64),
        "zero": np.array([0], np.int64),
        "step": np.array([-1], np.int64),
        "minus1": np.array([-1], np.int64),
        "pv": np.array(0.0, np.float32),
        "s0": np.array([1], np.int64),
        "s1": np.array([7], np.int64),
        "one": np.array([1], np.int64),
    }
    model = onnx_model(text, {"emb": "emb_rel_k"}, True, emb=emb, **arrays)
    xs = rand(1, 6, 4)
    expected = run(model, {"x": xs})[0]
    folded, report = folded_model(model)
    assert op_types(folded) == ["MatMul"] and list(weights(folded)) == ["emb_rel_k"]
    (cone,) = report.cones
    assert cone.status == "folded" and "Pad" in cone.ops and cone.shape == [1, 4, 6]
    assert run(folded, {"x": xs})[0].tobytes() == expected.tobytes()


@pytest.mark.parametrize("split", ["all-outside", "cast-outside", "all-inside"])
def test_a_weight_computed_outside_a_branch_that_reads_it_is_folded(split: str) -> None:
    """A weight computed from constants in the main graph and read by a MatMul in both
    branches of an ``If``: one exact initializer where the main graph computed it, reported
    once; computed partly there, partly in each branch, or wholly in each branch: reported in
    each, and one initializer of the main graph, which both read (it was one in each branch,
    the file twice the size, t86). None is left computed, and the outputs are the same bits."""
    make, info = onnx.helper.make_node, onnx.helper.make_tensor_value_info
    outside = {
        "all-outside": [make("Transpose", ["w"], ["t"])],
        "cast-outside": [make("Cast", ["w"], ["t0"], to=onnx.TensorProto.FLOAT)],
        "all-inside": [],
    }[split]

    def body(name: str) -> onnx.GraphProto:
        source = "t0" if split == "cast-outside" else "w"
        inside = [] if split == "all-outside" else [make("Transpose", [source], ["t"])]
        nodes = [*inside, make("MatMul", ["x", "t"], [f"y{name}"])]
        return onnx.helper.make_graph(nodes, name, [], [info(f"y{name}", 1, [2, 3])])

    branches = make("If", ["c"], ["y"], then_branch=body("t"), else_branch=body("e"))
    graph = onnx.helper.make_graph(
        [*outside, branches],
        "main",
        [info("c", onnx.TensorProto.BOOL, []), info("x", 1, [2, 4])],
        [info("y", 1, [2, 3])],
        [onnx.numpy_helper.from_array(rand(3, 4), "w")],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    model.ir_version = 8
    count = 1 if split == "all-outside" else 2
    inspected = inspect_onnx(model)
    assert [(c.name, c.status) for c in inspected.cones] == [("w", "foldable")] * count
    folded, report = folded_model(model)
    assert [c.status for c in report.cones] == ["folded"] * count
    assert inspect_onnx(folded).cones == []
    assert op_types(folded) == ["If"]
    np.testing.assert_array_equal(weights(folded)["w"], weights(model)["w"].T)
    (branches,) = folded.graph.node
    assert [len(a.g.initializer) for a in branches.attribute] == [0, 0]
    for c in (True, False):
        feeds = {"c": np.array(c), "x": X}
        assert run(folded, feeds)[0].tobytes() == run(model, feeds)[0].tobytes()


def _branches(
    then: list[onnx.NodeProto], other: list[onnx.NodeProto], **more: Any
) -> onnx.ModelProto:
    """``If(c)`` of two bodies, each ending in ``y<name>`` (2x3), the main graph holding
    ``W`` (3x4) and ``V`` (4x3); ``more``: the else body's initializers, the main graph's
    nodes and outputs."""
    info = onnx.helper.make_tensor_value_info

    def body(name: str, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> Any:
        return onnx.helper.make_graph(nodes, name, [], [info(f"y{name}", 1, [2, 3])], inits)

    branches = onnx.helper.make_node(
        "If", ["c"], ["y"], then_branch=body("t", then, []),
        else_branch=body("e", other, more.get("inits", [])),
    )  # fmt: skip
    graph = onnx.helper.make_graph(
        [branches, *more.get("nodes", [])],
        "main",
        [info("c", onnx.TensorProto.BOOL, []), info("x", 1, [2, 4])],
        [info("y", 1, [2, 3]), *more.get("outputs", [])],
        [
            onnx.numpy_helper.from_array(rand(3, 4), "W"),
            onnx.numpy_helper.from_array(rand(4, 3), "V"),
        ],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("case", ["sibling local", "shadowing initializer", "both branches"])
def test_a_weight_folded_into_the_main_graph_takes_a_name_no_body_uses(case: str) -> None:
    """The main graph's names reach every body (t90): a branch's own ``W__1`` and the weight
    given that name, once the other branch's ``W__1`` went away, made the file invalid; a
    branch's own initializer ``W``, once the main ``W`` went away, made the rename fail (exit
    3); and the rows of one weight read in two branches named one it no longer had."""
    make, info = onnx.helper.make_node, onnx.helper.make_tensor_value_info
    cone = [make("Transpose", ["W"], ["W__1"]), make("MatMul", ["x", "W__1"], ["yt"])]
    model = {
        "sibling local": _branches(
            cone, [make("Neg", ["x"], ["W__1"]), make("MatMul", ["W__1", "V"], ["ye"])],
            nodes=[make("Identity", ["W"], ["w"])], outputs=[info("w", 1, [3, 4])],
        ),
        "shadowing initializer": _branches(
            cone, [make("Transpose", ["W"], ["t"]), make("MatMul", ["x", "t"], ["ye"])],
            inits=[onnx.numpy_helper.from_array(rand(3, 4), "W")],
        ),
        "both branches": _branches(
            cone, [make("Transpose", ["W"], ["t"]), make("MatMul", ["x", "t"], ["ye"])]
        ),
    }[case]  # fmt: skip
    folded, report = folded_model(model)  # the full checker
    (branches,) = [node for node in folded.graph.node if node.op_type == "If"]
    held = {i.name for i in folded.graph.initializer} | {
        i.name for a in branches.attribute for i in a.g.initializer
    }
    assert {c.name for c in report.cones} <= held  # each row names a weight of the file
    if case == "both branches":  # one weight, under the name of W, which went away
        assert held == {"W", "V"} and {c.name for c in report.cones} == {"W"}
    for c in (True, False):
        feeds = {"c": np.array(c), "x": X}
        assert run(folded, feeds)[0].tobytes() == run(model, feeds)[0].tobytes()


@pytest.mark.parametrize("passed_on", [False, True], ids=["computed", "identity"])
def test_inspect_shows_the_shape_the_fold_shows(passed_on: bool) -> None:
    """A computed weight whose value the graph declares no shape for showed ``?`` in inspect
    and its shape in the fold's table (t19, GPT-2's shared biases): inspect takes it from the
    weight the fold's own steps compute (or from the constant a cone passes on)."""
    op = "Identity" if passed_on else "Transpose <perm = [1, 0]>"
    text = f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[N, 4] x) => (float[N, 3] y) {{
            wt = {op} (w)
            y = MatMul(x, wt)
        }}
    """
    weight = rand(3, 4) if not passed_on else rand(4, 3)
    model = onnx_model(text, w=weight)
    (inspected,) = inspect_onnx(model).cones
    (folded,) = fold_onnx(model)[1].cones
    assert inspected.shape == folded.shape == [4, 3]


@pytest.mark.parametrize("eager_bytes", [0, 16 << 20], ids=["lazy", "eager"])
def test_the_constants_a_cone_read_are_unmapped_after_its_run(
    eager_bytes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A float16 weight cast to float32 was read, then left mapped until the output was
    written: every cone's pages stayed resident (1.44 GB peak for a 1.1 GiB model, against
    300 MB as weight-norm sites)."""
    import onnx_ir as ir

    monkeypatch.setattr(cones, "EAGER_BYTES", eager_bytes)
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[N, 64] x) => (float[N, 64] y) {
            w = Cast <to = 1> (w16)
            y = MatMul(x, w)
        }
    """
    w16 = rand(64, 64).astype(np.float16)
    model = onnx_model(text, w16=w16)
    onnx.save(model, tmp_path / "m.onnx", save_as_external_data=True, location="w.bin",
              size_threshold=0)  # fmt: skip
    ir_model = io.load(tmp_path / "m.onnx")
    leaf = ir_model.graph.initializers["w16"].const_value
    assert isinstance(leaf, ir.ExternalTensor)
    fold_onnx(ir_model, in_place=True)
    assert leaf.raw is None  # unmapped
    (weight,) = ir_model.graph.initializers.values()
    assert weight.const_value is not None
    np.testing.assert_array_equal(weight.const_value.numpy(), w16.astype(np.float32))


QDQ = f"""
    {HEADER}
    agraph (float[2, 4] x) => (float[2, 3] y) {{
        one = Constant <value = int64[1] {{1}}> ()
        {SITE}
        wq = QuantizeLinear(w, s, z)
        wd = DequantizeLinear(wq, s, z)
        t = Transpose <perm = [1, 0]> (wd)
        h = MatMul(x, t)
        bd = DequantizeLinear(bq, bs)
        y = Add(h, bd)
    }}
"""


def _qdq(text: str = QDQ, units: int = 3) -> onnx.ModelProto:
    """:data:`QDQ`'s model (``text``: a variant of it) with a bias of ``units`` elements."""
    return onnx_model(
        text,
        v=rand(3, 4),
        g=rand(3, 1) + 0.5,
        s=np.array(0.01, np.float32),
        z=np.array(0, np.int8),
        bq=np.array([3, -2, 7, 1][:units], np.int32),
        bs=np.array(0.001, np.float32),
        e=rand(1, 4),
        st=np.array([0], np.int64),
        en=np.array([3], np.int64),
        ax=np.array([0], np.int64),
    )


def test_a_quantizer_behind_a_slice_or_concat_declines_the_site_too() -> None:
    """A QuantizeLinear that read the weight through a Slice or a Concat (which ONNX Runtime's
    QDQ quantizer quantizes too) was missed, and the fold moved an output by a step (t307)."""
    for between, units in (("ws = Slice(w, st, en, ax)", 3), ("ws = Concat <axis = 0> (e, w)", 4)):
        text = QDQ.replace(
            "wq = QuantizeLinear(w, s, z)", f"{between}\n wq = QuantizeLinear(ws, s, z)"
        ).replace("float[2, 3] y", f"float[2, {units}] y")
        _, report = folded_model(_qdq(text, units))
        (site,) = report.sites
        assert site.status == "declined", between
        assert (site.reason or "").startswith("QuantizeLinear quantizes it")


def test_a_weight_norm_site_a_quantizer_reads_is_declined() -> None:
    """A model quantized to QDQ before its weight norm was folded: the fold wrote the weight
    rounded once, an ulp from the graph's stepwise one, and QuantizeLinear put elements of it
    in another step (2-4.5% of an output's scale on real models, t306), exit 0. It is declined
    with the reason, by inspect as by the fold; the quantized weights and bias are no
    computed weights (they were each declined, ``ok`` false on every QDQ model)."""
    model = _qdq()
    folded, report = folded_model(model)
    (site,) = report.sites
    assert site.status == "declined"
    assert site.reason is not None and site.reason.startswith("QuantizeLinear quantizes it")
    assert report.cones == []
    assert op_types(folded) == op_types(model)
    inspected = inspect_onnx(model)
    assert [s.status for s in inspected.sites] == ["declined"] and inspected.cones == []


def test_a_cast_naming_its_type_by_a_string_is_declined_not_a_crash() -> None:
    """Opset 5's Cast names its type by a string ("FLOAT"): inspect and fold ended in an
    internal error (t329, ``int("FLOAT")``); a cone with one is declined, saying why."""
    helper = onnx.helper
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["w"], ["w0"], to="FLOAT"),
            helper.make_node("MatMul", ["x", "w0"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])],
        [onnx.numpy_helper.from_array(rand(4, 3), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 5)])
    reason = "a Cast naming its type by a string (opset 5) is not evaluated"
    for report in (inspect_onnx(model), folded_model(model)[1]):
        assert [(c.status, c.reason) for c in report.cones] == [("declined", reason)]


SCATTERED = f"""
    {HEADER}
    agraph (float[1, 3, 8] x) => (float[1, 3, 6] y) {{
        z = ConstantOfShape <value = float[1] {{0}}> (shape)
        w = ScatterND (z, places, kernel)
        y = Conv (x, w)
    }}
"""


@pytest.mark.parametrize("duplicate", [False, True])
def test_a_kernel_scattered_into_zeros_is_folded_exactly(duplicate: bool) -> None:
    """t327: diffusers' UNet1D builds its resampling kernels as ``weight[idx, idx] = kernel``,
    a ScatterND into zeros in a dynamo export: every fold declined the 4 of them, ``ok``
    false on a model with no weight norm. The elements move as they are: folded bit for bit;
    indices naming one place twice (ONNX leaves the last write undefined) are declined."""
    places = np.array([[0, 0], [1, 1], [2, 2]], np.int64)
    if duplicate:
        places[1] = places[0]
    shape = np.array([3, 3, 3], np.int64)
    model = onnx_model(SCATTERED, shape=shape, places=places, kernel=rand(3, 3))
    folded, report = folded_model(model)
    (cone,) = report.cones
    if duplicate:
        assert cone.status == "declined" and "names one place twice" in (cone.reason or "")
        return
    assert (cone.status, op_types(folded)) == ("folded", ["Conv"])
    x = {"x": rand(1, 3, 8)}
    assert run(folded, x)[0].tobytes() == run(model, x)[0].tobytes()


RANGED = f"""
    {HEADER}
    agraph (float[1, 3, 8] x) => (float[1, 3, 6] y) {{
        r = Range (start, limit, delta)
        c = Cast <to = 7> (r)
        u = Unsqueeze (c, one)
        places = Concat <axis = 1> (u, u)
        z = ConstantOfShape <value = float[1] {{0}}> (shape)
        w = ScatterND (z, places, kernel)
        y = Conv (x, w)
    }}
"""


@pytest.mark.parametrize(
    ("start", "limit", "delta", "declined"),
    [
        (0, 3, 1, None),
        (2, -1, -1, None),  # counting down: places 2, 1, 0
        (0.0, 3.0, 1.0, "a Range of float values"),  # summed in turn, each sum rounded
    ],
    ids=["up", "down", "float"],
)
def test_a_kernel_scattered_at_places_a_range_gives_is_folded_exactly(
    start: float, limit: float, delta: float, declined: str | None
) -> None:
    """t343: a UNet1D export whose ScatterND places come from a ``Range`` (its ``idx``,
    ``torch.arange``) was declined, `computed by Range`. An integer Range is exact: folded
    bit for bit; a float one is declined."""
    kind = np.int64 if declined is None else np.float32
    model = onnx_model(
        RANGED,
        shape=np.array([3, 3, 3], np.int64),
        one=np.array([1], np.int64),
        kernel=rand(3, 3),
        start=np.array(start, kind),
        limit=np.array(limit, kind),
        delta=np.array(delta, kind),
    )
    folded, report = folded_model(model)
    (cone,) = report.cones
    if declined is not None:
        assert cone.status == "declined" and declined in (cone.reason or ""), cone.reason
        return
    assert (cone.status, op_types(folded)) == ("folded", ["Conv"])
    x = {"x": rand(1, 3, 8)}
    assert run(folded, x)[0].tobytes() == run(model, x)[0].tobytes()
