"""Adding weight norm to plain ONNX weights, and folding it back, is the identity (1 ulp)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from tests.helpers import assert_close, onnx_model, rand, run, sites_left
from tests.onnx.helpers import ir3_model
from wnpass import fold_onnx
from wnpass.onnx.add import AddWeightNormPass

PLAIN = """
    <ir_version: 8, opset_import: ["" : {opset}]>
    agraph (float[1, 4, 9] x) => (float[1, 3, 18] y) {{
        c = Conv <pads = [1, 1]> (x, conv_w)
        t = ConvTranspose <strides = [2]> (c, up_w)
        p = Transpose <perm = [0, 2, 1]> (t)
        m = MatMul(p, mm_w)
        r = Reshape(m, flat)
        h = Gemm <transB = 1> (r, gemm_w)
        y = Reshape(h, out_shape)
    }}
"""


def plain_model(opset: int) -> onnx.ModelProto:
    return onnx_model(
        PLAIN.format(opset=opset),
        conv_w=rand(6, 4, 3),
        up_w=rand(6, 5, 2),
        mm_w=rand(5, 7),
        gemm_w=rand(3, 7),
        flat=np.array([18, 7], np.int64),
        out_shape=np.array([1, 3, 18], np.int64),
    )


def ulps(a: np.ndarray, b: np.ndarray) -> int:
    """Largest distance between a and b in float32 units in the last place."""
    ia, ib = a.view(np.int32).astype(np.int64), b.view(np.int32).astype(np.int64)
    return int(np.abs(ia - ib).max())


@pytest.mark.parametrize("opset", [17, 18])
def test_add_then_fold_gives_back_the_weights_within_one_ulp(opset: int) -> None:
    model = plain_model(opset)
    # onnx-ir wraps the proto's tensors without copying; the pass renames them: work on a copy.
    ir_model = ir.serde.deserialize_model(onnx.load_from_string(model.SerializeToString()))
    result = AddWeightNormPass()(ir_model)
    assert result.modified
    added = {s.name: s for s in result.sites}  # type: ignore[attr-defined]
    assert {n: s.axis for n, s in added.items()} == {"conv_w": 0, "up_w": 1, "mm_w": 1, "gemm_w": 0}
    normed = ir.serde.serialize_model(ir_model)
    onnx.checker.check_model(normed, full_check=True)
    assert sites_left(normed) == 4
    feeds = {"x": rand(1, 4, 9)}
    assert_close(run(normed, feeds), run(model, feeds))
    folded, report = fold_onnx(normed)
    assert report.folded == 4 and sites_left(folded) == 0
    original = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    restored = {i.name: onnx.numpy_helper.to_array(i) for i in folded.graph.initializer}
    assert set(restored) == set(original)
    for name in ("conv_w", "up_w", "mm_w", "gemm_w"):
        assert ulps(restored[name], original[name]) <= 1, name


def test_grouped_conv_transpose_and_graph_input_weights_are_left_alone() -> None:
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[1, 4, 5] x, float[4, 2, 3] w) => (float[1, 4, 7] y, float[1, 4, 7] z) {
            y = ConvTranspose <group = 2> (x, up_w)
            z = ConvTranspose <group = 2> (x, w)
        }
    """
    model = ir.serde.deserialize_model(onnx_model(text, up_w=rand(4, 2, 3)))
    result = AddWeightNormPass()(model)
    assert not result.modified
    reasons = {s.name: s.reason for s in result.sites}  # type: ignore[attr-defined]
    assert "grouped ConvTranspose" in reasons["up_w"]
    assert reasons["w"] == "not an initializer"


def test_float16_round_trip_within_one_ulp_and_no_overflow() -> None:
    """g is computed in float64: a row norm above float16's range would overflow otherwise."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float16[2, 64] x) => (float16[2, 8] y) { y = Gemm <transB = 1> (x, w) }
    """
    weight = (rand(8, 64) * 40).astype(np.float16)  # row norms ~320: squares sum past 65504
    weight[0] *= np.float16(0.001)  # and a row of small values
    model = onnx_model(text, w=weight)
    ir_model = ir.serde.deserialize_model(onnx.load_from_string(model.SerializeToString()))
    assert AddWeightNormPass()(ir_model).modified
    g_tensor = ir_model.graph.initializers["w_g"].const_value
    assert g_tensor is not None
    g = g_tensor.numpy()
    assert np.all(np.isfinite(g))
    folded, report = fold_onnx(ir.serde.serialize_model(ir_model))
    assert report.folded == 1
    restored = onnx.numpy_helper.to_array(folded.graph.initializer[0])
    distance = np.abs(restored.view(np.int16).astype(np.int32) - weight.view(np.int16))
    assert int(distance.max()) <= 1


@pytest.mark.parametrize(
    ("weight", "reason"),
    [
        (np.full((4, 2), 1e19, np.float32), "the sum of squares overflows float"),
        (np.full((4, 2), 1e-25, np.float32), "the sum of squares is below the smallest normal"),
        (np.array([[np.inf, 1], [1, 1]], np.float32), "g holds NaN or Inf"),
        (np.full((64, 2), 30000, np.float16), "ReduceL2 'w_wn_norm' overflows float16"),
        (np.full((4, 2), 1e-6, np.float16), "the norm is below the smallest normal float16"),
    ],
    ids=["overflow", "underflow", "inf", "float16-norm-overflows", "float16-norm-subnormal"],
)
def test_weights_whose_norm_the_graph_cannot_compute_are_left_with_the_folds_reason(
    weight: np.ndarray, reason: str
) -> None:
    """g * v / ||v|| would not give W back in the graph (an inf or 0 norm, NaN): the fold
    declines such a site, and so the pass does not write it, by the fold's own checks."""
    dtype = "float16" if weight.dtype == np.float16 else "float"
    rows, cols = weight.shape
    text = f"""
        <ir_version: 8, opset_import: ["" : 18]>
        agraph ({dtype}[1, {rows}] x) => ({dtype}[1, {cols}] y) {{ y = MatMul(x, w) }}
    """
    model = ir.serde.deserialize_model(onnx_model(text, w=weight))
    result = AddWeightNormPass()(model)
    assert not result.modified
    (site,) = result.sites  # type: ignore[attr-defined]
    assert reason in (site.reason or "")
    assert [n.op_type for n in model.graph] == ["MatMul"]
    assert list(model.graph.initializers) == ["w"]


def test_an_ir3_models_weights_get_weight_norm_in_a_valid_model() -> None:
    """At IR version 3 every initializer is a graph input that no feed can override (ONNX
    Runtime's rule): a weight, not an input; g and v are listed as inputs too."""
    model = ir3_model([onnx.helper.make_node("MatMul", ["x", "w"], ["y"])], {"w": rand(6, 6)})
    ir_model = ir.serde.deserialize_model(onnx.load_from_string(model.SerializeToString()))
    result = AddWeightNormPass()(ir_model)
    assert [s.reason for s in result.sites] == [None]  # type: ignore[attr-defined]
    normed = ir.serde.serialize_model(ir_model)
    onnx.checker.check_model(normed, full_check=True)
    assert [i.name for i in normed.graph.input] == ["x", "w_v", "w_g"]
    feeds = {"x": rand(2, 6)}
    assert_close(run(normed, feeds), run(model, feeds))
