"""Names of the report's rows: unique and true."""

from __future__ import annotations

from tests.helpers import onnx_model, rand
from tests.onnx.helpers import SHARED_NORM, SHARED_V
from wnpass import fold_onnx, inspect_onnx


def test_a_parameter_folded_and_declined_names_two_rows_apart() -> None:
    """One v (a PyTorch parameter) in a folded site and a declined one: the folded row is the
    parameter, the declined row the weight the model keeps computing (``k = u * s``, s fed at
    run time: the value its Gemm reads)."""
    text = SHARED_NORM
    names = {"v": "fc.weight_v", "g": "fc.weight_g"}
    model = onnx_model(text, names=names, v=rand(3, 4), g=rand(3, 1))
    _, report = fold_onnx(model)
    assert [(s.name, s.status) for s in report.sites] == [
        ("fc.weight", "folded"),
        ("k", "declined"),
    ]
    assert [s.name for s in inspect_onnx(model).sites] == ["fc.weight", "k"]


def test_inspect_names_as_the_fold_names() -> None:
    """Two sites of one v: inspect shows the unique names the fold writes."""
    text = SHARED_V
    model = onnx_model(text, a_v=rand(3, 4), a_g=rand(3, 1), b=rand(3, 1))
    names = [s.name for s in inspect_onnx(model).sites]
    assert names == [s.name for s in fold_onnx(model)[1].sites] == ["a", "a__1"]
