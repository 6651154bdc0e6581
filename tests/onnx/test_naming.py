"""Names of the report's rows: unique and true."""

from __future__ import annotations

from tests.helpers import onnx_model, rand
from tests.onnx.helpers import HEADER17
from wnpass import fold_onnx, inspect_onnx


def test_a_parameter_folded_and_declined_names_two_rows_apart() -> None:
    """One v (a PyTorch parameter) in a folded site and a declined one: the folded row is the
    parameter, the declined row the value the model keeps computing."""
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x, float[3, 1] s) => (float[2, 3] y) {{
            n = ReduceL2 <axes = [1]> (v)
            d = Div(v, n)
            w = Mul(d, g)
            u = Div(v, n)
            k = Mul(u, s)
            y1 = Gemm <transB = 1> (x, w)
            y2 = Gemm <transB = 1> (x, k)
            y = Add(y1, y2)
        }}
    """
    names = {"v": "fc.weight_v", "g": "fc.weight_g"}
    model = onnx_model(text, names=names, v=rand(3, 4), g=rand(3, 1))
    _, report = fold_onnx(model)
    assert [(s.name, s.status) for s in report.sites] == [
        ("fc.weight", "folded"),
        ("u", "declined"),
    ]
    assert [s.name for s in inspect_onnx(model).sites] == ["fc.weight", "u"]


def test_inspect_names_as_the_fold_names() -> None:
    """Two sites of one v: inspect shows the unique names the fold writes."""
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y, float[2, 3] z) {{
            n = ReduceL2 <axes = [1]> (a_v)
            d = Div(a_v, n)
            w = Mul(d, a_g)
            y = Gemm <transB = 1> (x, w)
            n2 = ReduceL2 <axes = [1]> (a_v)
            d2 = Div(a_v, n2)
            w2 = Mul(d2, b)
            z = Gemm <transB = 1> (x, w2)
        }}
    """
    model = onnx_model(text, a_v=rand(3, 4), a_g=rand(3, 1), b=rand(3, 1))
    names = [s.name for s in inspect_onnx(model).sites]
    assert names == [s.name for s in fold_onnx(model)[1].sites] == ["a", "a__1"]
